//! Who may call what, and how each call went: one tower layer in front of every gRPC service
//! checks the caller's bearer token against the roles allowed for the method, and counts the
//! call by method and status, rejected calls included.
//!
//! Tokens come from a TOML file (mounted from a Secret) and are kept only as SHA-256 digests,
//! so a token never sits in memory in the clear after loading and never reaches a log. The file
//! is read again when it changes, so tokens rotate without a restart.
//!
//! The file passes 600 lines only by its unit tests; the code before them reads in one sitting.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

use crate::config::{AuthMode, AuthSettings, ConfigError};

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Quote, Reserve, Commit, Release, GetReservation.
    Checkout,
    /// PushStock, SetStock, Reroute: the systems of the nodes (WMS, stores, 3PLs).
    Feed,
    /// GetAvailability, ListNodes.
    Planner,
    /// Events.Watch: storefronts, order management and planning systems that follow changes.
    Watcher,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Checkout => "checkout",
            Role::Feed => "feed",
            Role::Planner => "planner",
            Role::Watcher => "watcher",
        })
    }
}

/// Who may call a method when tokens are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Anyone, token or not: health and reflection.
    Anyone,
    /// Any client with a valid token: paths outside the API.
    AnyClient,
    /// A client with this role.
    WithRole(Role),
}

/// A gRPC method as the layer sees it: its metric label, and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub label: &'static str,
    pub caller: Caller,
}

const METHODS: &[(&str, Method)] = &[
    ("/dom.v1.Sourcing/Quote", needs("Quote", Role::Checkout)),
    ("/dom.v1.Sourcing/Reserve", needs("Reserve", Role::Checkout)),
    ("/dom.v1.Sourcing/Commit", needs("Commit", Role::Checkout)),
    ("/dom.v1.Sourcing/Release", needs("Release", Role::Checkout)),
    (
        "/dom.v1.Sourcing/GetReservation",
        needs("GetReservation", Role::Checkout),
    ),
    (
        "/dom.v1.Inventory/PushStock",
        needs("PushStock", Role::Feed),
    ),
    ("/dom.v1.Inventory/SetStock", needs("SetStock", Role::Feed)),
    ("/dom.v1.Sourcing/Reroute", needs("Reroute", Role::Feed)),
    (
        "/dom.v1.Inventory/GetAvailability",
        needs("GetAvailability", Role::Planner),
    ),
    (
        "/dom.v1.Network/ListNodes",
        needs("ListNodes", Role::Planner),
    ),
    ("/dom.v1.Events/Watch", needs("Watch", Role::Watcher)),
    ("/grpc.health.v1.Health/Check", open("HealthCheck")),
    ("/grpc.health.v1.Health/Watch", open("HealthWatch")),
];

const fn needs(label: &'static str, role: Role) -> Method {
    Method {
        label,
        caller: Caller::WithRole(role),
    }
}

const fn open(label: &'static str) -> Method {
    Method {
        label,
        caller: Caller::Anyone,
    }
}

/// The method a request path names. Paths outside the API share one label, so a caller
/// cannot grow the metrics without bound; they need a valid token of any role.
pub fn method(path: &str) -> Method {
    if let Some((_, m)) = METHODS.iter().find(|(p, _)| *p == path) {
        return *m;
    }
    if path.starts_with("/grpc.reflection.") {
        return open("Reflection");
    }
    Method {
        label: "other",
        caller: Caller::AnyClient,
    }
}

#[derive(Debug, Clone)]
struct Client {
    name: String,
    role: Role,
}

/// The clients of a tokens file, by the digest of their token.
#[derive(Debug, Default)]
struct Tokens {
    by_digest: HashMap<[u8; 32], Client>,
    /// Digest of the file's bytes, to tell a change from a re-read.
    file_digest: [u8; 32],
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    client: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    name: String,
    role: Role,
    token: String,
}

/// Shortest token accepted: anything shorter can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn parse_tokens(path: &Path, text: &str) -> Result<Tokens, ConfigError> {
    let file = path.display().to_string();
    // The parser's messages quote the offending value, which may be a token: say where the
    // problem is and what was expected, never what was found.
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
        ConfigError::new(&file, "", format!("line {line}: not valid TOML"))
    })?;
    let mut track = serde_path_to_error::Track::new();
    let parsed = TokensFile::deserialize(serde_path_to_error::Deserializer::new(
        toml::Value::Table(table),
        &mut track,
    ))
    .map_err(|_| {
        let field = track.path().to_string();
        let expected = match field.rsplit('.').next() {
            Some("role") => "must be checkout, feed or planner",
            Some("name" | "token") => "must be a string",
            _ => "is not expected here (a [[client]] has name, role and token)",
        };
        ConfigError::new(&file, field, expected)
    })?;
    if parsed.client.is_empty() {
        return Err(ConfigError::new(
            &file,
            "client",
            "names no client, so no call could be made",
        ));
    }
    let mut by_digest = HashMap::new();
    let mut names = std::collections::HashSet::new();
    for (i, c) in parsed.client.into_iter().enumerate() {
        let field = |f: &str| format!("client[{i}].{f}");
        if c.name.trim().is_empty() {
            return Err(ConfigError::new(&file, field("name"), "must not be empty"));
        }
        if !names.insert(c.name.clone()) {
            return Err(ConfigError::new(
                &file,
                field("name"),
                format!("{:?} is named twice", c.name),
            ));
        }
        if c.token.chars().count() < MIN_TOKEN_CHARS {
            return Err(ConfigError::new(
                &file,
                field("token"),
                format!("shorter than {MIN_TOKEN_CHARS} characters"),
            ));
        }
        if !c.token.chars().all(|ch| ch.is_ascii_graphic()) {
            return Err(ConfigError::new(
                &file,
                field("token"),
                "must be visible ASCII characters only, which is what a header can carry",
            ));
        }
        let key = digest(c.token.as_bytes());
        if by_digest.contains_key(&key) {
            return Err(ConfigError::new(
                &file,
                field("token"),
                "is the token of another client",
            ));
        }
        by_digest.insert(
            key,
            Client {
                name: c.name,
                role: c.role,
            },
        );
    }
    Ok(Tokens {
        by_digest,
        file_digest: digest(text.as_bytes()),
    })
}

/// The access rules in force: open, or the clients of a tokens file.
#[derive(Debug)]
pub struct Access {
    mode: AuthMode,
    tokens_file: Option<PathBuf>,
    tokens: RwLock<Arc<Tokens>>,
}

impl Access {
    /// Open to anyone.
    #[cfg(test)]
    pub fn open() -> Self {
        Self {
            mode: AuthMode::Open,
            tokens_file: None,
            tokens: RwLock::new(Arc::default()),
        }
    }

    /// As the settings say; in token mode, the tokens file must load.
    pub fn load(settings: &AuthSettings) -> Result<Self, ConfigError> {
        let access = Self {
            mode: settings.mode,
            tokens_file: settings.tokens_file.clone(),
            tokens: RwLock::new(Arc::default()),
        };
        if access.mode == AuthMode::Tokens {
            access.reload_tokens()?;
        }
        Ok(access)
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// How many clients hold tokens.
    pub fn clients(&self) -> usize {
        self.tokens.read().by_digest.len()
    }

    /// Reads the tokens file again: `Ok(true)` when it changed and the new clients are in
    /// force, `Ok(false)` when it is unchanged, an error (and the old clients stay) when it
    /// does not load.
    pub fn reload_tokens(&self) -> Result<bool, ConfigError> {
        let Some(path) = &self.tokens_file else {
            return Ok(false);
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(&path.display().to_string(), "", format!("cannot read: {e}"))
        })?;
        if self.tokens.read().file_digest == digest(text.as_bytes()) {
            return Ok(false);
        }
        let tokens = parse_tokens(path, &text)?;
        *self.tokens.write() = Arc::new(tokens);
        Ok(true)
    }

    /// Whether a call to `method` with these headers may go ahead.
    fn check(&self, method: Method, headers: &http::HeaderMap) -> Result<(), Status> {
        if self.mode == AuthMode::Open || method.caller == Caller::Anyone {
            return Ok(());
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "no authorization header; send \"authorization: Bearer <token>\"",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header is not \"Bearer <token>\"")
            })?;
        let tokens = self.tokens.read().clone();
        let Some(client) = tokens.by_digest.get(&digest(token.as_bytes())) else {
            return Err(Status::unauthenticated("unknown token"));
        };
        match method.caller {
            Caller::WithRole(role) if role != client.role => {
                Err(Status::permission_denied(format!(
                    "client {:?} has role {}; {} needs role {role}",
                    client.name, client.role, method.label
                )))
            }
            _ => Ok(()),
        }
    }
}

/// The layer in front of the gRPC services.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    access: Arc<Access>,
}

impl AccessLayer {
    pub fn new(access: Arc<Access>) -> Self {
        Self { access }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            access: self.access.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AccessService<S> {
    inner: S,
    access: Arc<Access>,
}

/// Records a call when it ends; a call dropped before its status (the client went away, or
/// the server's request timeout fired) counts as CANCELLED.
struct CallRecord {
    label: &'static str,
    started: Instant,
    code: Option<tonic::Code>,
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        crate::metrics::request(self.label, code, self.started.elapsed());
    }
}

/// The `grpc-status` in a header map, if there is one.
fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
}

/// A response body that records its call when the status arrives in the trailers (or the
/// body ends): answers that stream (Health/Watch, reflection) and errors met while sending a
/// message are counted by how they end, and latency runs to the last byte.
struct Recorded {
    inner: Body,
    record: Option<CallRecord>,
}

impl Recorded {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(mut record) = self.record.take() {
            record.code = Some(code);
        }
    }
}

impl http_body::Body for Recorded {
    type Data = hyper::body::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    self.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => {
                let code = status.code();
                self.finish(code);
            }
            Poll::Ready(None) => self.finish(tonic::Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S> Service<http::Request<Body>> for AccessService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = method(request.uri().path());
        let record = CallRecord {
            label: method.label,
            started: Instant::now(),
            code: None,
        };
        let verdict = self.access.check(method, request.headers());
        #[cfg(feature = "otel")]
        let headers = request.headers().clone();
        // the service that was made ready goes to this call; a fresh clone waits for the next
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let call = async move {
            // the whole record moves in, so its drop marks the end of the call (or it moves on
            // into the body)
            let mut record = record;
            let response = match verdict {
                Ok(()) => inner.call(request).await?,
                Err(status) => status.into_http(),
            };
            // an error comes in the headers alone; otherwise the status is in the trailers
            if let Some(code) = grpc_status(response.headers()) {
                record.code = Some(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(Recorded {
                    inner: body,
                    record: Some(record),
                })
            }))
        };
        #[cfg(feature = "otel")]
        let call = {
            use tracing::Instrument;
            call.instrument(trace::call_span(method.label, &headers))
        };
        Box::pin(call)
    }
}

/// A caller's trace continued: W3C `traceparent` and `tracestate` read from the request.
#[cfg(feature = "otel")]
mod trace {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Headers<'a>(&'a http::HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    /// The span of one call, a child of the caller's span when the request names one, so the
    /// caller's sampling decision holds and the traces join up.
    pub fn call_span(method: &'static str, headers: &http::HeaderMap) -> tracing::Span {
        let span = tracing::info_span!("grpc", rpc.method = method);
        if headers.contains_key("traceparent") {
            let parent = TraceContextPropagator::new().extract(&Headers(headers));
            let _ = span.set_parent(parent);
        }
        span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens_file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn access(text: &str) -> Result<Access, ConfigError> {
        let (_dir, path) = tokens_file(text);
        Access::load(&AuthSettings {
            mode: AuthMode::Tokens,
            tokens_file: Some(path),
        })
    }

    fn bearer(token: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    const TWO: &str = r#"
        [[client]]
        name = "web"
        role = "checkout"
        token = "checkout-token-0123456789"
        [[client]]
        name = "wms"
        role = "feed"
        token = "feed-token-0123456789abc"
    "#;

    #[test]
    fn roles_allow_their_methods_only() {
        let a = access(TWO).unwrap();
        let reserve = method("/dom.v1.Sourcing/Reserve");
        let push = method("/dom.v1.Inventory/PushStock");
        let web = bearer("checkout-token-0123456789");
        let wms = bearer("feed-token-0123456789abc");
        assert!(a.check(reserve, &web).is_ok());
        assert!(a.check(push, &wms).is_ok());
        let denied = a.check(push, &web).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("\"web\""), "{denied:?}");
        assert!(!denied.message().contains("checkout-token"), "{denied:?}");
        let unknown = a
            .check(reserve, &bearer("not-a-token-at-all-x"))
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
        let none = a.check(reserve, &http::HeaderMap::new()).unwrap_err();
        assert_eq!(none.code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn health_and_reflection_stay_open_and_unknown_paths_need_a_token() {
        let a = access(TWO).unwrap();
        let empty = http::HeaderMap::new();
        let health = method("/grpc.health.v1.Health/Check");
        assert!(a.check(health, &empty).is_ok());
        let reflection = method("/grpc.reflection.v1.ServerReflection/Info");
        assert!(a.check(reflection, &empty).is_ok());
        let other = method("/x.Y/Z");
        assert_eq!(other.label, "other");
        assert!(a.check(other, &empty).is_err());
        assert!(a.check(other, &bearer("feed-token-0123456789abc")).is_ok());
    }

    #[test]
    fn open_mode_lets_anyone_call_anything() {
        let a = Access::open();
        let push = method("/dom.v1.Inventory/PushStock");
        assert!(a.check(push, &http::HeaderMap::new()).is_ok());
    }

    #[test]
    fn a_bad_tokens_file_names_the_field_and_never_the_token() {
        let short = access(
            r#"[[client]]
name = "a"
role = "feed"
token = "short-secret""#,
        )
        .unwrap_err();
        assert_eq!(short.field, "client[0].token");
        assert!(!short.to_string().contains("short-secret"), "{short}");
        let role = access(
            r#"[[client]]
name = "a"
role = "admin"
token = "a-long-enough-secret-value""#,
        )
        .unwrap_err();
        assert_eq!(role.field, "client[0].role");
        assert!(!role.to_string().contains("admin"), "{role}");
        assert!(!role.to_string().contains("a-long-enough"), "{role}");
        let number =
            access("[[client]]\nname = \"a\"\nrole = \"feed\"\ntoken = 1234567890123456789\n")
                .unwrap_err();
        assert_eq!(number.field, "client[0].token");
        assert!(
            !number.to_string().contains("1234567890123456789"),
            "{number}"
        );
        let broken =
            access("[[client]]\nname = \"a\"\ntoken = \"secret-secret-secret\n").unwrap_err();
        assert!(!broken.to_string().contains("secret-secret"), "{broken}");
        assert!(broken.problem.contains("line 3"), "{broken}");
        let accented = access(
            "[[client]]\nname = \"a\"\nrole = \"feed\"\ntoken = \"contraseña-muy-larga-1\"\n",
        )
        .unwrap_err();
        assert_eq!(accented.field, "client[0].token");
        let twice = access(&format!(
            "{TWO}\n[[client]]\nname = \"other\"\nrole = \"planner\"\ntoken = \"feed-token-0123456789abc\""
        ))
        .unwrap_err();
        assert_eq!(twice.field, "client[2].token");
        assert!(access("").is_err());
    }

    #[test]
    fn a_changed_tokens_file_replaces_the_clients_and_a_broken_one_keeps_them() {
        let (_dir, path) = tokens_file(TWO);
        let a = Access::load(&AuthSettings {
            mode: AuthMode::Tokens,
            tokens_file: Some(path.clone()),
        })
        .unwrap();
        assert_eq!(a.clients(), 2);
        assert!(!a.reload_tokens().unwrap());
        std::fs::write(
            &path,
            "[[client]]\nname = \"x\"\nrole = \"planner\"\ntoken = \"planner-token-0123456789\"\n",
        )
        .unwrap();
        assert!(a.reload_tokens().unwrap());
        assert_eq!(a.clients(), 1);
        let list = method("/dom.v1.Network/ListNodes");
        assert!(a.check(list, &bearer("planner-token-0123456789")).is_ok());
        assert!(a.check(list, &bearer("checkout-token-0123456789")).is_err());
        std::fs::write(&path, "[[client]]\nname = \"\"").unwrap();
        assert!(a.reload_tokens().is_err());
        assert_eq!(a.clients(), 1);
    }
}
