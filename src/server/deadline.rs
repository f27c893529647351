//! The server's request timeout as a tower layer: a call still running after
//! `server.request_timeout_ms` ends with DEADLINE_EXCEEDED, the status gRPC gives a deadline
//! (tonic's own timeout answers CANCELLED, which tells a caller nothing about whether to retry).
//! A caller's own shorter `grpc-timeout` is the caller's to report: its client gives up then.
//!
//! A call cut off this way may or may not have made its change: a Reserve may have held its
//! stock. Every write of the API is idempotent, so the caller sends the same call again.

use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tower::{Layer, Service};

/// Bounds every call by the server's request timeout.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Service<http::Request<Body>> for Deadline<S>
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
        let timeout = self.timeout;
        // the service that was made ready goes to this call; a fresh clone waits for the next
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        Box::pin(async move {
            match tokio::time::timeout(timeout, inner.call(request)).await {
                Ok(response) => response,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "the call did not finish within {} ms; it may or may not have taken \
                     effect: send the same call again (every write is idempotent)",
                    timeout.as_millis()
                ))
                .into_http()),
            }
        })
    }
}
