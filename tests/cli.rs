//! The `dom-router` binary as a process: config checking, and serving until SIGTERM.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_dom-router");

#[test]
fn check_config_accepts_the_shipped_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let out = Command::new(BIN)
        .args(["check-config", dir])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nodes: 31"), "{stdout}");
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn check_config_names_the_file_and_field_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let network =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/network.toml"))
            .unwrap()
            .replacen("kind = \"store\"", "kind = \"shop\"", 1);
    std::fs::write(dir.path().join("network.toml"), network).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/segments.toml"),
        dir.path().join("segments.toml"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("network.toml"), "{stderr}");
    assert!(stderr.contains("unknown variant `shop`"), "{stderr}");
}

#[test]
fn check_config_refuses_a_bad_environment_override() {
    let out = Command::new(BIN)
        .arg("check-config")
        .env("DOM_ROUTER__HOLDS__MAX_TTL_SECS", "-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DOM_ROUTER__HOLDS__MAX_TTL_SECS"),
        "{stderr}"
    );
    assert!(stderr.contains("holds.max_ttl_secs"), "{stderr}");
}

#[tokio::test]
async fn serve_answers_and_stops_cleanly_on_sigterm() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DOM_ROUTER__METRICS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        let attempt = async {
            let channel =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
            let mut health = HealthClient::new(channel);
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            Some(r.into_inner().status())
        };
        match attempt.await {
            Some(ServingStatus::Serving) => break ServingStatus::Serving,
            _ if started.elapsed() > Duration::from_secs(30) => break ServingStatus::Unknown,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert_eq!(status, ServingStatus::Serving);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break Some(exit);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exit = exit.expect("server exits after SIGTERM");
    assert!(exit.success(), "{exit:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const CHECKOUT_TOKEN: &str = "cli-checkout-0123456789abcdef";
const FEED_TOKEN: &str = "cli-feed-0123456789abcdef";

/// A quote for one unit of a demo sku, with the checkout token: the rules version and nodes.
async fn quote_version(port: u16, token: &str) -> Result<(String, Vec<String>), tonic::Status> {
    use dom_router::api::pb;
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut request = tonic::Request::new(pb::QuoteRequest {
        order: Some(pb::Order {
            order_id: "cli-quote".into(),
            segment: "standard".into(),
            destination: Some(pb::Destination {
                location: Some(pb::GeoPoint {
                    lat: 39.4699,
                    lon: -0.3763,
                }),
                country: "ES".into(),
            }),
            lines: vec![pb::OrderLine {
                line_id: "l1".into(),
                sku: "APP-0001".into(),
                quantity: 1,
                group: String::new(),
            }],
            delivery_mode: pb::DeliveryMode::Ship as i32,
            pickup_node_id: String::new(),
            ship_complete: false,
            deliver_by: String::new(),
        }),
        strategy: 0,
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let plan = pb::sourcing_client::SourcingClient::new(channel)
        .quote(request)
        .await?
        .into_inner()
        .plan
        .unwrap();
    Ok((
        plan.rules_version,
        plan.shipments.into_iter().map(|s| s.node_id).collect(),
    ))
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: m\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[tokio::test]
async fn sighup_reloads_the_rules_and_metrics_and_logs_show_it_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for file in ["network.toml", "segments.toml", "stock.csv"] {
        std::fs::copy(root.join(file), dir.path().join(file)).unwrap();
    }
    let (port, metrics) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("server.toml"),
        format!(
            "[server]\nreload_interval_ms = 0\nwatch_config = false\n\n\
             [metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n\
             [auth]\nmode = \"tokens\"\ntokens_file = \"tokens.toml\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tokens.toml"),
        format!(
            "[[client]]\nname = \"web\"\nrole = \"checkout\"\ntoken = \"{CHECKOUT_TOKEN}\"\n\n\
             [[client]]\nname = \"wms\"\nrole = \"feed\"\ntoken = \"{FEED_TOKEN}\"\n"
        ),
    )
    .unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();

    let started = Instant::now();
    let (first, nodes) = loop {
        match quote_version(port, CHECKOUT_TOKEN).await {
            Ok(answer) => break answer,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                let _ = child.kill();
                panic!("no answer: {e}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let denied = quote_version(port, FEED_TOKEN).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert_eq!(nodes.len(), 1);

    // take the chosen node out; with polling and file events off, only SIGHUP reloads
    let network = std::fs::read_to_string(dir.path().join("network.toml")).unwrap();
    let anchor = format!("id = \"{}\"\n", nodes[0]);
    std::fs::write(
        dir.path().join("network.toml"),
        network.replacen(&anchor, &format!("{anchor}enabled = false\n"), 1),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(quote_version(port, CHECKOUT_TOKEN).await.unwrap().0, first);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let (second, moved) = loop {
        let answer = quote_version(port, CHECKOUT_TOKEN).await.unwrap();
        if answer.0 != first || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(second, first, "SIGHUP did not reload the rules");
    assert!(!moved.contains(&nodes[0]), "the disabled node still ships");

    let scraped = http_get(&format!("127.0.0.1:{metrics}"), "/metrics");
    assert!(
        scraped.starts_with("HTTP/1.1 200") || scraped.starts_with("HTTP/1.0 200"),
        "{scraped}"
    );
    assert!(
        scraped.contains("dom_router_rules_reloads_total{result=\"applied\"} 1"),
        "{scraped}"
    );
    assert!(
        scraped.contains(&format!("dom_router_rules_info{{version=\"{second}\"}} 1")),
        "{scraped}"
    );
    assert!(
        scraped
            .contains("dom_router_requests_total{method=\"Quote\",code=\"PERMISSION_DENIED\"} 1"),
        "{scraped}"
    );
    assert!(http_get(&format!("127.0.0.1:{metrics}"), "/other").contains(" 404 "));

    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("rules changed"), "{logs}");
    assert!(logs.contains("SIGHUP"), "{logs}");
    assert!(logs.contains("calls need a client token"), "{logs}");
    for token in [CHECKOUT_TOKEN, FEED_TOKEN] {
        assert!(!logs.contains(token), "a token reached the logs");
    }
}
