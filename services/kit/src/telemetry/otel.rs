//! The OpenTelemetry tracer provider.
//!
//! - **Propagation**: W3C `traceparent` / `tracestate`, installed as the global propagator
//!   that `phantom_layers::trace` reads and writes.
//! - **Sampling**: `ParentBased(TraceIdRatioBased(sampling_ratio))`: a new trace is recorded
//!   with that probability, and every call then follows its caller's decision, so a trace is
//!   whole or absent, never partial. One exception ([`RootSampler`]): a database or cache
//!   operation that would start a trace by itself (a background loop polling for work every
//!   second) is not recorded; inside a call or a scan, it is.
//! - **Export**: a batch processor on its own thread sends spans every `export_interval`;
//!   a request only ever pushes a span into a bounded queue, so a collector that is slow or
//!   down costs dropped spans (beyond `export_queue`), never a blocked or failed request.
//! - **`service.name`** is a resource attribute, one per exporter, but `phantom up` runs the
//!   four services in one process. So the spans carry it instead: server, client and scan
//!   spans name their service in a `service` field, every other span inherits its parent's
//!   ([`ServiceTagger`]), and [`ByService`] sends each span through the exporter whose
//!   resource has that `service.name` (all of them sharing one channel to the collector).
//!   `phantom serve` works the same way with one service. Spans of no service (none so far)
//!   go out as `phantom`, or as `OTEL_SERVICE_NAME`.

use phantom_layers::registry::Registry;
use std::{
    collections::HashMap,
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    Context, KeyValue, Value,
    trace::{Link, SpanId, SpanKind, TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, Sampler, SamplingDecision, SamplingResult,
        SdkTracer, SdkTracerProvider, ShouldSample, Span, SpanData, SpanExporter, SpanProcessor,
    },
};

use crate::config::TelemetryConfig;

/// The span attribute (a `tracing` field) naming the PHANTOM service a span belongs to.
pub const SERVICE_FIELD: &str = "service";

/// `service.name` of spans that belong to no PHANTOM service.
const PROCESS_NAME: &str = "phantom";

/// Longest wait for the collector to take one batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

static PROVIDER: OnceLock<(SdkTracerProvider, Registry)> = OnceLock::new();

/// Installs the W3C propagator and the provider of `config` (once per process: the first
/// call wins), and returns its tracer.
/// The tracer, and the registry its exporter counts in (the first installation's: the
/// provider is the process's, like the subscriber it feeds).
pub(super) fn install(
    config: &TelemetryConfig,
    services: &[&'static str],
) -> (SdkTracer, Registry) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, registry) = PROVIDER.get_or_init(|| {
        let registry = Registry::default();
        (provider(config, services, &registry), registry)
    });
    (provider.tracer("phantom"), registry.clone())
}

/// Exports what is queued, for [`super::flush`]. Servers stopping together (`phantom up`)
/// share one flush rather than queueing four behind a slow collector.
pub(super) fn flush() {
    static FLUSHING: AtomicBool = AtomicBool::new(false);
    if let Some((provider, _)) = PROVIDER.get()
        && !FLUSHING.swap(true, Ordering::AcqRel)
    {
        let _ = provider.force_flush();
        FLUSHING.store(false, Ordering::Release);
    }
}

fn provider(
    config: &TelemetryConfig,
    services: &[&'static str],
    process: &Registry,
) -> SdkTracerProvider {
    let sampler = Sampler::ParentBased(Box::new(RootSampler {
        ratio: Sampler::TraceIdRatioBased(config.sampling_ratio),
    }));
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(PROCESS_NAME);
    }
    let builder = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_resource(resource.build());
    if config.otlp_endpoint.is_empty() {
        // Spans still get ids (propagated, logged); they are just not sent anywhere.
        return builder.build();
    }
    match exporter(config, services, process) {
        Ok(exporter) => {
            let batch = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_scheduled_delay(config.export_interval)
                        .with_max_queue_size(config.export_queue)
                        .with_max_export_batch_size(config.export_queue.min(512))
                        .build(),
                )
                .build();
            builder
                .with_span_processor(ServiceTagger::new(batch))
                .build()
        }
        Err(err) => {
            tracing::warn!(
                endpoint = %crate::config::redact(&config.otlp_endpoint),
                error = %err,
                "Traces are not exported: the OTLP exporter could not be built"
            );
            builder.build()
        }
    }
}

fn exporter(
    config: &TelemetryConfig,
    services: &[&'static str],
    process: &Registry,
) -> Result<ByService<opentelemetry_otlp::SpanExporter>, String> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err("no Tokio runtime to run the exporter's channel on".to_owned());
    }
    let channel = tonic::transport::Endpoint::from_shared(config.otlp_endpoint.clone())
        .map_err(|e| e.to_string())?
        .connect_timeout(EXPORT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT)
        .connect_lazy();
    let build = || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())
    };
    let mut exporters = Vec::new();
    for service in services {
        exporters.push((*service, build()?));
    }
    Ok(ByService {
        services: exporters,
        fallback: build()?,
        registry: process.clone(),
    })
}

/// Decides on spans that start a trace: storage operations alone are background polling,
/// not worth a trace each; anything else is sampled at the configured ratio.
#[derive(Debug, Clone)]
struct RootSampler {
    ratio: Sampler,
}

impl ShouldSample for RootSampler {
    fn should_sample(
        &self,
        parent: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        let storage = attributes
            .iter()
            .any(|kv| matches!(kv.key.as_str(), "db.operation.name" | "cache.operation"));
        if storage {
            return SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: Default::default(),
            };
        }
        self.ratio
            .should_sample(parent, trace_id, name, kind, attributes, links)
    }
}

/// Gives every span the `service` of its parent when it names none itself, so database,
/// cache and other inner spans are exported as their service's.
#[derive(Debug)]
struct ServiceTagger<P> {
    inner: P,
    /// The service of every span started and not yet ended.
    live: Mutex<HashMap<SpanId, Value>>,
}

impl<P> ServiceTagger<P> {
    fn new(inner: P) -> Self {
        Self {
            inner,
            live: Mutex::new(HashMap::new()),
        }
    }
}

impl<P: SpanProcessor> SpanProcessor for ServiceTagger<P> {
    fn on_start(&self, span: &mut Span, parent: &Context) {
        use opentelemetry::trace::Span as _;

        let own = span.exported_data().and_then(|data| {
            data.attributes
                .into_iter()
                .find(|kv| kv.key.as_str() == SERVICE_FIELD)
                .map(|kv| kv.value)
        });
        let id = span.span_context().span_id();
        let mut live = self.live.lock().expect("service tags lock");
        let service = match own {
            Some(service) => Some(service),
            None => {
                let inherited = live.get(&parent.span().span_context().span_id()).cloned();
                if let Some(service) = &inherited {
                    span.set_attribute(KeyValue::new(SERVICE_FIELD, service.clone()));
                }
                inherited
            }
        };
        if let Some(service) = service {
            live.insert(id, service);
        }
        drop(live);
        self.inner.on_start(span, parent);
    }

    fn on_end(&self, span: SpanData) {
        self.live
            .lock()
            .expect("service tags lock")
            .remove(&span.span_context.span_id());
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Exports each span with the `service.name` its `service` attribute names.
#[derive(Debug)]
struct ByService<E> {
    services: Vec<(&'static str, E)>,
    fallback: E,
    /// Where the spans sent are counted: the process's registry.
    registry: Registry,
}

impl<E: SpanExporter> SpanExporter for ByService<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut groups: Vec<Vec<SpanData>> =
            (0..=self.services.len()).map(|_| Vec::new()).collect();
        let fallback = self.services.len();
        for mut span in batch {
            let at = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == SERVICE_FIELD);
            let group = at
                .map(|at| span.attributes.remove(at).value)
                .and_then(|service| {
                    let service = service.as_str();
                    self.services.iter().position(|(name, _)| *name == service)
                })
                .unwrap_or(fallback);
            groups[group].push(span);
        }
        let exporters = self
            .services
            .iter()
            .map(|(_, e)| e)
            .chain(std::iter::once(&self.fallback));
        let r = &self.registry;
        let mut result = Ok(());
        for (spans, exporter) in groups.into_iter().zip(exporters) {
            if spans.is_empty() {
                continue;
            }
            let n = spans.len() as u64;
            let outcome = if let Err(err) = exporter.export(spans).await {
                result = Err(err);
                "failed"
            } else {
                "exported"
            };
            // What the collector got, and what was lost on the way (it was down, or refused).
            r.counter(
                "phantom_trace_spans_total",
                "Spans sent to the OTLP collector, by outcome (exported, failed).",
                &[("outcome", outcome)],
            )
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        for (_, exporter) in &self.services {
            let _ = exporter.shutdown_with_timeout(timeout);
        }
        self.fallback.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        for (_, exporter) in &self.services {
            exporter.force_flush()?;
        }
        self.fallback.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        for (name, exporter) in &mut self.services {
            let named = Resource::builder_empty()
                .with_attributes(
                    resource
                        .iter()
                        .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
                )
                .with_service_name(*name)
                .build();
            exporter.set_resource(&named);
        }
        self.fallback.set_resource(resource);
    }
}
