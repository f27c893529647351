//! Running it for real: metrics that name what operators watch and move with the calls, tokens
//! and roles, TLS with client certificates, the plaintext health port for probes, and rules
//! that change while the server is serving.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use dom_router::api::pb;
use dom_router::config::{AuthMode, Config, ConfigSource, StoreKind};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn quote_request(order: pb::Order) -> pb::QuoteRequest {
    pb::QuoteRequest {
        order: Some(order),
        strategy: 0,
    }
}

/// Look-ahead's four metrics: how long a refresh took, and the version, computed-at time and
/// size of the table in use. No other test of this file turns look-ahead on, so the process's
/// recorder holds this server's table alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_ahead_s_price_table_shows_in_the_metrics() {
    let mut config = demo_config();
    config.lookahead.enabled = true;
    config.lookahead.refresh_secs = 1;
    let (server, ports) = TestServer::serve(config, None).await;
    server
        .stock(&[("wh-getafe", "LA-M", 2, 0), ("wh-zaragoza", "LA-M", 40, 0)])
        .await;
    madrid_demand(server.sourcing(), "LA-M", "m-", 6).await;
    // a table that prices Getafe's units is computed and taken up within seconds
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(ports.metrics).await;
        if sample(&text, "dom_router_lookahead_priced", &[]) >= 1.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no table prices anything: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        sample(&text, "dom_router_lookahead_prices_version", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "dom_router_lookahead_refresh_seconds_count", &[]) >= 1.0,
        "{text}"
    );
    // computed at the server's time (its clock stands still in tests)
    assert_eq!(
        sample(
            &text,
            "dom_router_lookahead_prices_computed_at_seconds",
            &[]
        ),
        START_MILLIS as f64 / 1000.0,
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_name_what_operators_watch_and_move_with_the_calls() {
    let (server, ports) = TestServer::serve(demo_config(), None).await;
    server
        .stock(&[
            ("wh-getafe", "MET-1", 10, 0),
            ("wh-sabadell", "MET-1", 10, 0),
        ])
        .await;
    let before = scrape(ports.metrics).await;
    let mut sourcing = server.sourcing();
    sourcing
        .quote(quote_request(order(
            "met-q",
            "standard",
            vec![line("l1", "MET-1", 2)],
        )))
        .await
        .unwrap();
    sourcing
        .reserve(reserve_request(order(
            "met-r",
            "standard",
            vec![line("l1", "MET-1", 3)],
        )))
        .await
        .unwrap();
    sourcing
        .commit(pb::CommitRequest {
            order_id: "met-r".into(),
        })
        .await
        .unwrap();
    let refused = sourcing
        .reserve(reserve_request(order(
            "met-bad",
            "no-such-segment",
            vec![line("l1", "MET-1", 1)],
        )))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let mut short = reserve_request(order("met-h", "standard", vec![line("l1", "MET-1", 1)]));
    short.hold_ttl_seconds = 1;
    sourcing.reserve(short).await.unwrap();
    // a repeated feed update is stale
    let update = pb::StockUpdate {
        node_id: "wh-getafe".into(),
        sku: "MET-2".into(),
        kind: pb::StockUpdateKind::Snapshot as i32,
        quantity: 4,
        sequence: 7,
        order_id: String::new(),
        safety_stock: None,
        reorder_point: None,
        ..Default::default()
    };
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![update.clone(), update],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.applied, summary.stale), (1, 1));
    let malformed = pb::StockUpdate {
        node_id: String::new(),
        sku: "MET-2".into(),
        kind: pb::StockUpdateKind::Snapshot as i32,
        quantity: 1,
        sequence: 8,
        order_id: String::new(),
        safety_stock: None,
        reorder_point: None,
        ..Default::default()
    };
    let summary = server
        .inventory()
        .set_stock(pb::SetStockRequest {
            updates: vec![malformed],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.rejected, 1);
    // a streamed answer is counted by how it ends: this watch is dropped by its client
    let mut watch = HealthClient::new(server.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(watch.message().await.unwrap().is_some());
    drop(watch);
    server.clock.advance_secs(2);

    // the sweep runs every 20 ms; wait for it to find the expired hold
    let deadline = Instant::now() + Duration::from_secs(10);
    let watch_ended = [("method", "HealthWatch"), ("code", "CANCELLED")];
    let after = loop {
        let text = scrape(ports.metrics).await;
        if (sample(&text, "dom_router_holds_expired_total", &[])
            > sample(&before, "dom_router_holds_expired_total", &[])
            && sample(&text, "dom_router_requests_total", &watch_ended)
                > sample(&before, "dom_router_requests_total", &watch_ended))
            || Instant::now() > deadline
        {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    let ok = [("code", "OK")];
    assert!(moved("dom_router_requests_total", &[("method", "Quote"), ok[0]]) >= 1.0);
    assert!(moved("dom_router_requests_total", &[("method", "Reserve"), ok[0]]) >= 2.0);
    assert!(moved("dom_router_requests_total", &[("method", "Commit"), ok[0]]) >= 1.0);
    assert!(
        moved(
            "dom_router_requests_total",
            &[("method", "Reserve"), ("code", "INVALID_ARGUMENT")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        moved(
            "dom_router_request_duration_seconds_count",
            &[("method", "Reserve")]
        ) >= 3.0
    );
    assert!(
        moved("dom_router_requests_total", &watch_ended) >= 1.0,
        "{after}"
    );
    assert_eq!(
        moved(
            "dom_router_requests_total",
            &[("method", "HealthWatch"), ("code", "OK")]
        ),
        0.0
    );
    assert!(moved("dom_router_solve_duration_seconds_count", &[]) >= 3.0);
    assert!(moved("dom_router_decision_candidates_count", &[]) >= 3.0);
    assert!(moved("dom_router_decision_shipments_count", &[]) >= 3.0);
    assert!(moved("dom_router_decisions_total", &[]) >= 3.0);
    assert!(
        after.contains("dom_router_decisions_split_total"),
        "{after}"
    );
    assert!(moved("dom_router_feed_updates_total", &[("result", "applied")]) >= 1.0);
    assert!(moved("dom_router_feed_updates_total", &[("result", "stale")]) >= 1.0);
    assert!(moved("dom_router_feed_updates_total", &[("result", "rejected")]) >= 1.0);
    assert!(
        moved("dom_router_holds_expired_total", &[]) >= 1.0,
        "{after}"
    );
    assert!(after.contains("dom_router_holds_active "), "{after}");
    assert!(
        after.contains("# TYPE dom_router_request_duration_seconds histogram"),
        "{after}"
    );
    let version = server
        .sourcing()
        .quote(quote_request(order(
            "met-q2",
            "standard",
            vec![line("l1", "MET-1", 1)],
        )))
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap()
        .rules_version;
    assert_eq!(version.len(), 16);
    // other tests in this process swap rules too, so the gauge's value may have moved on;
    // the series for the version that decided must exist
    assert!(
        after.contains(&format!("dom_router_rules_info{{version=\"{version}\"}}")),
        "{after}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn redis_round_trips_and_errors_are_measured() {
    let redis = common::redis::RedisServer::start();
    let mut config = demo_config();
    config.settings.store.kind = StoreKind::Redis;
    config.settings.store.redis.urls = vec![redis.url()];
    config.settings.store.redis.key_prefix = "metrics".into();
    config.settings.store.redis.op_timeout_ms = 300;
    config.settings.store.redis.connect_timeout_ms = 200;
    let (server, ports) = TestServer::serve(config, None).await;
    let before = scrape(ports.metrics).await;
    server.stock(&[("wh-getafe", "RED-1", 5, 0)]).await;
    server
        .sourcing()
        .reserve(reserve_request(order(
            "red-1",
            "standard",
            vec![line("l1", "RED-1", 2)],
        )))
        .await
        .unwrap();
    redis.stop();
    let down = server
        .sourcing()
        .reserve(reserve_request(order(
            "red-2",
            "standard",
            vec![line("l1", "RED-1", 1)],
        )))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
    let after = scrape(ports.metrics).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        sample(&after, name, labels) - sample(&before, name, labels)
    };
    assert!(moved("dom_router_redis_duration_seconds_count", &[("op", "feed")]) >= 1.0);
    assert!(
        moved(
            "dom_router_redis_duration_seconds_count",
            &[("op", "reserve_whole")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        moved("dom_router_redis_errors_total", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        moved(
            "dom_router_requests_total",
            &[("method", "Reserve"), ("code", "UNAVAILABLE")]
        ) >= 1.0
    );
    server.shutdown().await;
}

const TOKENS: &str = r#"
[[client]]
name = "web-checkout"
role = "checkout"
token = "checkout-0123456789abcdef"

[[client]]
name = "wms"
role = "feed"
token = "feed-0123456789abcdef"

[[client]]
name = "planning"
role = "planner"
token = "planner-0123456789abcdef"

[[client]]
name = "storefront"
role = "watcher"
token = "watcher-0123456789abcdef"
"#;

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn tokens_config(dir: &Path) -> Config {
    std::fs::write(dir.join("tokens.toml"), TOKENS).unwrap();
    let mut config = demo_config();
    config.settings.auth.mode = AuthMode::Tokens;
    config.settings.auth.tokens_file = Some(dir.join("tokens.toml"));
    config
}

fn snapshot(node: &str, sku: &str, quantity: i64, sequence: u64) -> pb::SetStockRequest {
    pb::SetStockRequest {
        updates: vec![pb::StockUpdate {
            node_id: node.into(),
            sku: sku.into(),
            kind: pb::StockUpdateKind::Snapshot as i32,
            quantity,
            sequence,
            order_id: String::new(),
            safety_stock: Some(0),
            reorder_point: None,
            ..Default::default()
        }],
    }
}

fn availability(sku: &str) -> pb::GetAvailabilityRequest {
    pb::GetAvailabilityRequest {
        skus: vec![sku.into()],
        segment: String::new(),
    }
}

#[tokio::test]
async fn each_role_may_call_its_methods_and_nothing_else_changes_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = TestServer::serve(tokens_config(dir.path()), None).await;
    let (checkout, feed, planner) = (
        "checkout-0123456789abcdef",
        "feed-0123456789abcdef",
        "planner-0123456789abcdef",
    );
    let mut inventory = server.inventory();
    let mut sourcing = server.sourcing();

    // no token, a malformed header, an unknown token: UNAUTHENTICATED, nothing written
    let none = inventory
        .set_stock(snapshot("wh-getafe", "AUTH-1", 9, 1))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated, "{none:?}");
    let mut malformed = tonic::Request::new(snapshot("wh-getafe", "AUTH-1", 9, 1));
    malformed
        .metadata_mut()
        .insert("authorization", "Basic abc".parse().unwrap());
    assert_eq!(
        inventory.set_stock(malformed).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let unknown = inventory
        .set_stock(with_token(
            snapshot("wh-getafe", "AUTH-1", 9, 1),
            "nobody-0123456789abcdef",
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    // the wrong role: PERMISSION_DENIED, nothing written
    let denied = inventory
        .set_stock(with_token(snapshot("wh-getafe", "AUTH-1", 9, 1), checkout))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(!denied.message().contains(checkout), "{denied:?}");
    let stock = inventory
        .get_availability(with_token(availability("AUTH-1"), planner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stock.skus[0].on_hand, 0, "a refused call wrote stock");

    // the feed role pushes stock, and may not read it or reserve
    inventory
        .set_stock(with_token(snapshot("wh-getafe", "AUTH-1", 9, 2), feed))
        .await
        .unwrap();
    assert_eq!(
        inventory
            .get_availability(with_token(availability("AUTH-1"), feed))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let reserve = || reserve_request(order("auth-o1", "standard", vec![line("l1", "AUTH-1", 4)]));
    assert_eq!(
        sourcing
            .reserve(with_token(reserve(), feed))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        sourcing
            .reserve(with_token(reserve(), planner))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let nothing_held = sourcing
        .get_reservation(with_token(
            pb::GetReservationRequest {
                order_id: "auth-o1".into(),
            },
            checkout,
        ))
        .await
        .unwrap_err();
    assert_eq!(nothing_held.code(), Code::NotFound);

    // checkout reserves and commits; the planner reads the result and lists nodes
    sourcing
        .reserve(with_token(reserve(), checkout))
        .await
        .unwrap();
    sourcing
        .commit(with_token(
            pb::CommitRequest {
                order_id: "auth-o1".into(),
            },
            checkout,
        ))
        .await
        .unwrap();
    let stock = inventory
        .get_availability(with_token(availability("AUTH-1"), planner))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stock.skus[0].on_hand, stock.skus[0].reserved), (9, 4));
    // the node's side reroutes what it cannot ship; checkout may not
    let reroute = || pb::RerouteRequest {
        order_id: "auth-o1".into(),
        node_id: "wh-getafe".into(),
        lines: Vec::new(),
        reason: pb::RerouteReason::Damaged as i32,
        reroute_id: "auth-r1".into(),
    };
    assert_eq!(
        sourcing
            .reroute(with_token(reroute(), checkout))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let rerouted = sourcing
        .reroute(with_token(reroute(), feed))
        .await
        .unwrap()
        .into_inner();
    assert!(rerouted.rerouted);
    let nodes = server
        .network()
        .list_nodes(with_token(pb::ListNodesRequest { kind: 0 }, planner))
        .await
        .unwrap()
        .into_inner();
    assert!(!nodes.nodes.is_empty());
    assert_eq!(
        server
            .network()
            .list_nodes(with_token(pb::ListNodesRequest { kind: 0 }, checkout))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // health needs no token
    let health = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert!(health.into_inner().status >= ServingStatus::Serving as i32);
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotated_tokens_file_takes_effect_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = demo_config_dir(dir.path());
    let mut config = tokens_config(dir.path());
    config.settings.server.reload_interval_ms = 50;
    let (server, _) = TestServer::serve(config, Some(ConfigSource::Dir(config_dir))).await;
    let mut network = server.network();
    let list = || pb::ListNodesRequest { kind: 0 };
    network
        .list_nodes(with_token(list(), "planner-0123456789abcdef"))
        .await
        .unwrap();
    std::fs::write(
        dir.path().join("tokens.toml"),
        "[[client]]\nname = \"planning\"\nrole = \"planner\"\ntoken = \"planner-rotated-0123456789\"\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let old = network
            .list_nodes(with_token(list(), "planner-0123456789abcdef"))
            .await;
        if old.is_err() || Instant::now() > deadline {
            assert_eq!(old.unwrap_err().code(), Code::Unauthenticated);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    network
        .list_nodes(with_token(list(), "planner-rotated-0123456789"))
        .await
        .unwrap();
    server.shutdown().await;
}

/// A copy of the shipped config directory inside `dir`.
fn demo_config_dir(dir: &Path) -> std::path::PathBuf {
    let target = dir.join("config");
    std::fs::create_dir_all(&target).unwrap();
    for file in ["network.toml", "segments.toml"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("config")
                .join(file),
            target.join(file),
        )
        .unwrap();
    }
    target
}

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    stranger_cert: String,
    stranger_key: String,
}

/// A CA with a server certificate for localhost and a client certificate, and a client
/// certificate from another CA.
fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    let ca = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let leaf = |issuer: &CertifiedIssuer<'_, KeyPair>, name: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let root = ca("dom-router test CA");
    let other = ca("another CA");
    let (server_cert, server_key) = leaf(&root, "localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert, client_key) = leaf(&root, "checkout", ExtendedKeyUsagePurpose::ClientAuth);
    let (stranger_cert, stranger_key) =
        leaf(&other, "stranger", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca: root.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
        stranger_cert,
        stranger_key,
    }
}

/// `text` written to `dir/name`; its path.
fn written(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `config` serving TLS with the server certificate of `pki`, its files in `dir`.
fn with_tls(mut config: Config, pki: &Pki, dir: &Path) -> Config {
    config.settings.tls.cert_file = Some(written(dir, "tls.crt", &pki.server_cert));
    config.settings.tls.key_file = Some(written(dir, "tls.key", &pki.server_key));
    config
}

async fn tls_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<(&str, &str)>,
) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn list_nodes(channel: Channel) -> Result<usize, tonic::Status> {
    Ok(NetworkClient::new(channel)
        .list_nodes(pb::ListNodesRequest { kind: 0 })
        .await?
        .into_inner()
        .nodes
        .len())
}

#[tokio::test]
async fn tls_with_client_certificates_admits_only_clients_the_ca_signed() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let mut config = with_tls(demo_config(), &pki, dir.path());
    config.settings.tls.client_ca_file = Some(written(dir.path(), "ca.crt", &pki.ca));
    let (server, ports) = TestServer::serve(config, None).await;

    let admitted = tls_channel(
        server.addr,
        &pki.ca,
        Some((&pki.client_cert, &pki.client_key)),
    )
    .await
    .unwrap();
    assert!(list_nodes(admitted).await.unwrap() > 0);

    // without a client certificate, or with one another CA signed, no call goes through
    for identity in [
        None,
        Some((pki.stranger_cert.as_str(), pki.stranger_key.as_str())),
    ] {
        let refused = match tls_channel(server.addr, &pki.ca, identity).await {
            Ok(channel) => list_nodes(channel).await.is_err(),
            Err(_) => true,
        };
        assert!(
            refused,
            "a client without a CA-signed certificate got an answer"
        );
    }
    // plaintext gets nothing from the TLS port
    assert!(list_nodes(server.channel.clone()).await.is_err());

    // probes still reach health, in plaintext, on the health port
    let health = Channel::from_shared(format!("http://{}", ports.health))
        .unwrap()
        .connect()
        .await
        .unwrap();
    for service in ["", "liveness"] {
        let status = HealthClient::new(health.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    // and nothing else is served there
    assert!(list_nodes(health).await.is_err());
    server.shutdown().await;
}

#[tokio::test]
async fn watching_needs_a_watcher_token_and_goes_over_tls_like_every_call() {
    use pb::events_client::EventsClient;
    use tokio_stream::StreamExt;
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let config = with_tls(tokens_config(dir.path()), &pki, dir.path());
    let (server, _) = TestServer::serve(config, None).await;
    let channel = tls_channel(server.addr, &pki.ca, None).await.unwrap();
    let watch = || pb::WatchRequest {
        skus: vec!["TLS-1".into()],
        ..Default::default()
    };
    let mut events = EventsClient::new(channel.clone());
    let mut stream = events
        .watch(with_token(watch(), "watcher-0123456789abcdef"))
        .await
        .unwrap()
        .into_inner();
    InventoryClient::new(channel.clone())
        .set_stock(with_token(
            snapshot("wh-getafe", "TLS-1", 7, 1),
            "feed-0123456789abcdef",
        ))
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(event.kind, pb::EventKind::StockChanged as i32);
    // other roles may not watch, and a watcher may do nothing else
    let denied = events
        .watch(with_token(watch(), "checkout-0123456789abcdef"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let denied = NetworkClient::new(channel)
        .list_nodes(with_token(
            pb::ListNodesRequest { kind: 0 },
            "watcher-0123456789abcdef",
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // and nothing is served in plaintext
    assert!(
        EventsClient::new(server.channel.clone())
            .watch(with_token(watch(), "watcher-0123456789abcdef"))
            .await
            .is_err()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn liveness_stays_serving_while_the_store_is_down() {
    let mut config = demo_config();
    config.settings.store.kind = StoreKind::Redis;
    config.settings.store.redis.urls =
        vec![format!("redis://127.0.0.1:{}", common::redis::free_port())];
    config.settings.store.redis.connect_timeout_ms = 100;
    config.settings.store.redis.op_timeout_ms = 100;
    let (server, ports) = TestServer::serve(config, None).await;
    let health = Channel::from_shared(format!("http://{}", ports.health))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = |service: &'static str| {
        let health = health.clone();
        async move {
            HealthClient::new(health)
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status
        }
    };
    assert_eq!(status("").await, ServingStatus::NotServing as i32);
    assert_eq!(status("liveness").await, ServingStatus::Serving as i32);
    server.shutdown().await;
}

/// The rules version and the nodes of a quote for `sku` to Valencia.
async fn quote(
    server: &TestServer,
    id: &str,
    sku: &str,
) -> Result<(String, Vec<String>), tonic::Status> {
    let plan = server
        .sourcing()
        .quote(quote_request(order(
            id,
            "standard",
            vec![line("l1", sku, 1)],
        )))
        .await?
        .into_inner()
        .plan
        .unwrap();
    Ok(version_and_nodes(plan))
}

async fn until<F, Fut, T>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn rule_changes_take_effect_live_and_a_bad_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = demo_config_dir(dir.path());
    let mut config =
        Config::load(ConfigSource::Dir(config_dir.clone()), std::iter::empty()).unwrap();
    config.settings.store.seed_stock = false;
    // no polling: file events alone must bring the changes in
    config.settings.server.reload_interval_ms = 0;
    let first_version = config.rules_version.clone();
    let (server, _) = TestServer::serve(config, Some(ConfigSource::Dir(config_dir.clone()))).await;
    server
        .stock(&[
            ("wh-zaragoza", "LIVE-1", 50, 0),
            ("wh-getafe", "LIVE-1", 50, 0),
        ])
        .await;
    let (version, nodes) = quote(&server, "live-1", "LIVE-1").await.unwrap();
    assert_eq!(version, first_version);
    assert_eq!(nodes.len(), 1);
    let (chosen, other) = if nodes[0] == "wh-getafe" {
        ("wh-getafe", "wh-zaragoza")
    } else {
        ("wh-zaragoza", "wh-getafe")
    };
    assert_eq!(nodes, [chosen]);

    // calls keep flowing while the rules change under them: none fails, each is decided by
    // one version or the other
    let network = std::fs::read_to_string(config_dir.join("network.toml")).unwrap();
    let changed = disable_node(&network, chosen);
    let second_version = dom_router::config::rules_version(
        &changed,
        &std::fs::read_to_string(config_dir.join("segments.toml")).unwrap(),
        &std::fs::read_to_string(config_dir.join("alerts.toml")).unwrap_or_default(),
    );
    let callers: Vec<_> = (0..8)
        .map(|c| {
            let sourcing = server.sourcing();
            let second = second_version.clone();
            tokio::spawn(async move {
                let mut sourcing = sourcing;
                let mut versions: Vec<String> = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(15);
                // at least 40 calls, and on until the new rules decided one
                for i in 0.. {
                    if (i >= 40 && versions.contains(&second)) || Instant::now() > deadline {
                        break;
                    }
                    let plan = sourcing
                        .quote(quote_request(order(
                            &format!("live-c{c}-{i}"),
                            "standard",
                            vec![line("l1", "LIVE-1", 1)],
                        )))
                        .await
                        .expect("no call fails while the rules change")
                        .into_inner()
                        .plan
                        .unwrap();
                    versions.push(plan.rules_version);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                versions
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(config_dir.join("network.toml"), &changed).unwrap();
    for caller in callers {
        for v in caller.await.unwrap() {
            assert!(
                v == first_version || v == second_version,
                "unknown version {v}"
            );
        }
    }
    let nodes = until("the change to take effect", || async {
        let (v, nodes) = quote(&server, "live-2", "LIVE-1").await.unwrap();
        (v == second_version).then_some(nodes)
    })
    .await;
    assert_eq!(nodes, [other], "a disabled node still ships");

    // a change that does not validate is refused; the rules in force stay
    std::fs::write(
        config_dir.join("segments.toml"),
        "[segment.standard]\nmax_shipments = -1\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (version, nodes) = quote(&server, "live-3", "LIVE-1").await.unwrap();
    assert_eq!(version, second_version);
    assert_eq!(nodes, [other]);

    // putting the original files back brings back the original version
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/segments.toml"),
        config_dir.join("segments.toml"),
    )
    .unwrap();
    std::fs::write(config_dir.join("network.toml"), &network).unwrap();
    until("the original rules", || async {
        let (v, nodes) = quote(&server, "live-4", "LIVE-1").await.unwrap();
        (v == first_version && nodes == [chosen]).then_some(())
    })
    .await;
    server.shutdown().await;
}

#[tokio::test]
async fn probes_and_metrics_answer_while_the_grpc_port_drains() {
    let (server, ports) = TestServer::serve(demo_config(), None).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::StockUpdate>(8);
    let mut inventory = server.inventory();
    let call = tokio::spawn(async move {
        inventory
            .push_stock(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let update = |sequence| plus_one("wh-getafe", "DRAIN-2", sequence);
    tx.send(update(1)).await.unwrap();
    let health = Channel::from_shared(format!("http://{}", ports.health))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = |service: &'static str| {
        let health = health.clone();
        async move {
            HealthClient::new(health)
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .map(|r| r.into_inner().status)
        }
    };
    until("the server to be ready", || async {
        (status("").await.ok() == Some(ServingStatus::Serving as i32)).then_some(())
    })
    .await;

    let mut server = server;
    server.begin_shutdown();
    // draining, with a stream still open: not ready, still alive, metrics still served
    until("readiness to turn NOT_SERVING", || async {
        (status("").await.ok() == Some(ServingStatus::NotServing as i32)).then_some(())
    })
    .await;
    assert_eq!(
        status("liveness").await.unwrap(),
        ServingStatus::Serving as i32
    );
    assert!(
        scrape(ports.metrics)
            .await
            .contains("dom_router_requests_total")
    );
    tx.send(update(2)).await.unwrap();
    drop(tx);
    assert_eq!(call.await.unwrap().unwrap().into_inner().applied, 2);
    let handle = server.handle.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("server stops after draining")
        .unwrap()
        .unwrap();
    // once stopped, the probe port is closed too
    assert!(status("liveness").await.is_err());
}
