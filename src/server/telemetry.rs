//! Structured logs and traces with `tracing`: a `RUST_LOG` filter (default `info`), logs as
//! text for people or JSON lines for log pipelines, and, in binaries built with the `otel`
//! feature, spans exported to an OpenTelemetry collector over OTLP/gRPC.
//!
//! Every gRPC call is a span (`quote`, `reserve`, ... with `order_id` and `segment`), with
//! child spans `plan` (candidates), `solve` and `store` (the operation), so a trace shows
//! where a slow call spent its time.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TracingSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What must outlive the server so that spans still buffered are sent; see [`Telemetry::shutdown`].
#[derive(Debug, Default)]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still buffered, waiting a bounded time.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("span export did not shut down cleanly: {e}");
        }
    }
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Logs only, for commands that do not serve; a second call does nothing.
pub fn init(format: LogFormat) {
    let _ = install(format, None::<tracing_subscriber::layer::Identity>);
}

/// Logs, and spans exported as `tracing` says; a second call does nothing.
pub fn init_with(format: LogFormat, tracing: &TracingSettings) -> Result<Telemetry, String> {
    match &tracing.otlp_endpoint {
        None => {
            init(format);
            Ok(Telemetry::default())
        }
        #[cfg(feature = "otel")]
        Some(endpoint) => {
            let (provider, layer) = otel::pipeline(endpoint, tracing)?;
            let _ = install(format, Some(layer));
            Ok(Telemetry {
                provider: Some(provider),
            })
        }
        #[cfg(not(feature = "otel"))]
        Some(_) => Err(
            "tracing.otlp_endpoint is set, but this binary was built without the `otel` feature"
                .into(),
        ),
    }
}

/// Logs go through `RUST_LOG`; exported spans have a filter of their own (this crate's spans
/// at info), so quieter logs do not thin the traces.
fn install<L>(format: LogFormat, extra: Option<L>) -> Result<(), String>
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync,
{
    use tracing_subscriber::Layer;
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_filter(filter())
            .boxed(),
    };
    let spans = extra.map(|layer| {
        layer.with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("dom_router", tracing::Level::INFO),
        )
    });
    tracing_subscriber::registry()
        .with(spans)
        .with(logs)
        .try_init()
        .map_err(|e| e.to_string())
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

    use crate::config::TracingSettings;

    /// A batch exporter to `endpoint`, and the layer that feeds it spans.
    pub fn pipeline<S>(
        endpoint: &str,
        settings: &TracingSettings,
    ) -> Result<
        (
            SdkTracerProvider,
            tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        ),
        String,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| format!("tracing.otlp_endpoint {endpoint:?}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("dom-router");
        Ok((provider, tracing_opentelemetry::layer().with_tracer(tracer)))
    }
}
