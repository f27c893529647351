//! Webhooks: each `[[webhook]]` gets the events that match its filter as HTTP POSTs of their
//! JSON (the proto3 JSON mapping of `dom.v1.Event`), in log order, at least once.
//!
//! One replica delivers each webhook at a time: the one holding its lease in the store, which
//! it renews while it works; another takes over once a holder stops renewing (it died, or lost
//! the store). Where delivery got to is a cursor saved in the store after each event, only by
//! the holder, so a restart or a takeover goes on from there; the event in flight when a holder
//! died may come twice, with the same `X-Dom-Event-Key`.
//!
//! A POST that fails (no connection, a timeout, a 5xx, 408 or 429) is tried again with backoff
//! from 100 ms doubling to 30 s, for as long as it takes: later events wait, so each receiver
//! sees events in order. Any other 4xx is the receiver refusing that event: it is logged,
//! counted as `rejected` and passed over. A first start delivers from the newest event then
//! (nothing older); a cursor older than what the log keeps goes on from the oldest kept, and
//! says how that happened in the log.
//!
//! Each request carries `X-Dom-Signature: sha256=HEX`, the HMAC-SHA256 of the body under the
//! webhook's secret, and `X-Dom-Event-Id`, `X-Dom-Event-Key`, `X-Dom-Webhook`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::events::{event, event_json};
use crate::clock::Clock;
use crate::config::WebhookSettings;
use crate::events::{EventId, Filter};
use crate::store::{StockStore, StoreError};

/// How long a lease lasts unless renewed; a holder renews it every third of that.
const LEASE: Duration = Duration::from_secs(10);
/// Events read from the log at once.
const BATCH: usize = 256;
/// How often a holder with nothing to deliver looks at the log again.
const IDLE: Duration = Duration::from_millis(100);
const FIRST_RETRY: Duration = Duration::from_millis(100);
const LAST_RETRY: Duration = Duration::from_secs(30);

/// A webhook ready to run: its settings, its secret and its filter.
#[derive(Clone)]
pub struct Hook {
    settings: WebhookSettings,
    secret: String,
    filter: Filter,
}

impl Hook {
    /// The webhooks of the settings, their secrets read from `env`; an error names the
    /// webhook whose secret is missing.
    pub fn all(
        hooks: &[WebhookSettings],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Hook>, String> {
        hooks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let secret = h
                    .secret(&env)
                    .map_err(|e| format!("webhook[{i}].secret_env: {e}"))?;
                Ok(Hook {
                    settings: h.clone(),
                    secret,
                    filter: h.filter(),
                })
            })
            .collect()
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// What became of one POST.
enum Sent {
    Delivered,
    /// The receiver refused this event (a 4xx other than 408 and 429).
    Rejected(u16),
    /// Try again later.
    Failed(String),
}

/// An HTTP/1.1 client of one receiver, keeping its connection between requests.
struct Client {
    uri: http::Uri,
    host: String,
    port: u16,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(settings: &WebhookSettings) -> Result<Self, String> {
        let uri: http::Uri = settings
            .url
            .parse()
            .map_err(|e| format!("webhook {}: url: {e}", settings.name))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("webhook {}: tls: {e}", settings.name))?
            .with_root_certificates(roots)
            .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
        } else {
            None
        };
        Ok(Self {
            uri,
            host,
            port,
            tls,
            timeout: Duration::from_millis(settings.timeout_ms),
            conn: None,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => {
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| format!("http: {e}"))?;
                tokio::spawn(conn);
                Ok(send)
            }
            Some(tls) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("tls: {e}"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("http: {e}"))?;
                tokio::spawn(conn);
                Ok(send)
            }
        }
    }

    async fn post(&mut self, headers: &[(&str, String)], body: Bytes) -> Sent {
        match tokio::time::timeout(self.timeout, self.try_post(headers, body)).await {
            Ok(sent) => sent,
            Err(_) => {
                // whatever the connection was doing, it is not to be trusted again
                self.conn = None;
                Sent::Failed(format!("no answer within {} ms", self.timeout.as_millis()))
            }
        }
    }

    async fn try_post(&mut self, headers: &[(&str, String)], body: Bytes) -> Sent {
        let mut send = match self.conn.take() {
            Some(send) if !send.is_closed() => send,
            _ => match self.connect().await {
                Ok(send) => send,
                Err(e) => return Sent::Failed(e),
            },
        };
        if let Err(e) = send.ready().await {
            return Sent::Failed(format!("http: {e}"));
        }
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let authority = self
            .uri
            .authority()
            .map_or_else(|| self.host.clone(), |a| a.to_string());
        let mut request = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "dom-router");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match request.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Sent::Failed(format!("request: {e}")),
        };
        let response = match send.send_request(request).await {
            Ok(r) => r,
            Err(e) => return Sent::Failed(format!("http: {e}")),
        };
        let status = response.status();
        // read the answer whole, so the connection can carry the next request
        if response.into_body().collect().await.is_ok() {
            self.conn = Some(send);
        }
        if status.is_success() {
            Sent::Delivered
        } else if status.is_client_error()
            && status != http::StatusCode::REQUEST_TIMEOUT
            && status != http::StatusCode::TOO_MANY_REQUESTS
        {
            Sent::Rejected(status.as_u16())
        } else {
            Sent::Failed(format!("answered {status}"))
        }
    }
}

/// Delivers one webhook whenever this replica holds its lease, until `stop`.
pub async fn run(
    store: Arc<dyn StockStore>,
    clock: Arc<dyn Clock>,
    hook: Hook,
    mut stop: watch::Receiver<bool>,
) {
    let name = hook.settings.name.clone();
    let lease = format!("webhook:{name}");
    let holder = crate::store::unique_token();
    let mut client = match Client::new(&hook.settings) {
        Ok(c) => c,
        Err(e) => {
            warn!(webhook = %name, error = %e, "webhook not started");
            return;
        }
    };
    let mut delivery = Delivery {
        store,
        clock,
        hook,
        lease,
        holder,
        renewed: None,
    };
    loop {
        if *stop.borrow() {
            return;
        }
        match delivery.renew().await {
            Ok(true) => {
                info!(webhook = %name, "delivering this webhook from this replica");
                if let Err(e) = delivery.deliver(&mut client, &mut stop).await {
                    warn!(webhook = %name, error = %e, "webhook delivery paused");
                }
            }
            Ok(false) => {}
            Err(e) => warn!(webhook = %name, error = %e, "webhook lease not read"),
        }
        if *stop.borrow() {
            delivery.give_up().await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(LEASE / 5) => {}
            _ = stop.changed() => {
                delivery.give_up().await;
                return;
            }
        }
    }
}

struct Delivery {
    store: Arc<dyn StockStore>,
    clock: Arc<dyn Clock>,
    hook: Hook,
    lease: String,
    holder: String,
    /// When the lease was last taken or renewed.
    renewed: Option<Instant>,
}

impl Delivery {
    fn name(&self) -> &str {
        &self.hook.settings.name
    }

    /// Takes or renews the lease; false when another replica holds it.
    async fn renew(&mut self) -> Result<bool, StoreError> {
        let held = self
            .store
            .take_lease(
                &self.lease,
                &self.holder,
                LEASE.as_millis() as u64,
                self.clock.now_millis(),
            )
            .await?;
        self.renewed = held.then(Instant::now);
        Ok(held)
    }

    /// Lets the lease go at once (on a stop), so another replica takes over without waiting
    /// for it to expire.
    async fn give_up(&mut self) {
        if self.renewed.take().is_some() {
            let _ = self
                .store
                .take_lease(&self.lease, &self.holder, 0, self.clock.now_millis())
                .await;
        }
    }

    /// Renews the lease when a third of it has passed; false once it is lost.
    async fn keep(&mut self) -> Result<bool, StoreError> {
        if self.renewed.is_some_and(|at| at.elapsed() < LEASE / 3) {
            return Ok(true);
        }
        self.renew().await
    }

    /// Delivers while the lease holds; returns when it is lost or the server stops.
    async fn deliver(
        &mut self,
        client: &mut Client,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), StoreError> {
        let mut cursor = match self.store.cursor(&self.lease).await? {
            Some(c) => c,
            None => {
                // a new webhook starts from the newest event: nothing older is sent
                let start = self
                    .store
                    .read_events(None, 1)
                    .await?
                    .last
                    .unwrap_or(EventId::ZERO);
                if !self.save(start).await? {
                    return Ok(());
                }
                start
            }
        };
        loop {
            if *stop.borrow() || !self.keep().await? {
                return Ok(());
            }
            let page = match self.store.read_events(Some(cursor), BATCH).await {
                Ok(page) => page,
                Err(StoreError::Cursor(e)) => {
                    warn!(webhook = %self.name(), error = %e, "webhook cursor behind what the log keeps; going on from the oldest kept");
                    crate::metrics::webhook("lost", self.name());
                    self.store.read_events(None, BATCH).await?
                }
                Err(e) => return Err(e),
            };
            if page.events.is_empty() {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE) => {}
                    _ = stop.changed() => return Ok(()),
                }
                continue;
            }
            // the cursor is saved after each event delivered, so a takeover repeats at most
            // the one in flight, and once a page for the events passed over
            let mut unsaved = false;
            for e in page.events {
                let matches = self.hook.filter.matches(&e);
                if matches && !self.send(client, &e, stop).await? {
                    return Ok(());
                }
                cursor = e.id;
                unsaved = !matches;
                crate::metrics::webhook_lag(self.name(), self.clock.now_millis() - e.at);
                if matches && !self.save(cursor).await? {
                    return Ok(());
                }
            }
            if unsaved && !self.save(cursor).await? {
                return Ok(());
            }
        }
    }

    /// Saves the cursor; false when the lease is no longer this replica's.
    async fn save(&self, cursor: EventId) -> Result<bool, StoreError> {
        self.store
            .save_cursor(&self.lease, &self.holder, cursor, self.clock.now_millis())
            .await
    }

    /// POSTs one event until the receiver takes or refuses it; false when the lease is lost
    /// or the server stops first.
    async fn send(
        &mut self,
        client: &mut Client,
        e: &crate::events::Event,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool, StoreError> {
        let body = Bytes::from(event_json(&event(e)).to_string());
        let headers = [
            ("x-dom-signature", signature(&self.hook.secret, &body)),
            ("x-dom-event-id", e.id.to_string()),
            ("x-dom-event-key", e.key.clone()),
            ("x-dom-webhook", self.name().to_owned()),
        ];
        let mut wait = FIRST_RETRY;
        loop {
            match client.post(&headers, body.clone()).await {
                Sent::Delivered => {
                    crate::metrics::webhook("delivered", self.name());
                    return Ok(true);
                }
                Sent::Rejected(status) => {
                    crate::metrics::webhook("rejected", self.name());
                    warn!(webhook = %self.name(), event = %e.id, status, "the receiver refused this event; passed over");
                    return Ok(true);
                }
                Sent::Failed(why) => {
                    crate::metrics::webhook("failed", self.name());
                    warn!(webhook = %self.name(), event = %e.id, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook POST failed; trying again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return Ok(false),
            }
            wait = (wait * 2).min(LAST_RETRY);
            if !self.keep().await? {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_in_hex() {
        // RFC 4231, test case 2
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
