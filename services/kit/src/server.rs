//! What every PHANTOM gRPC server has: the shared layer stack, `grpc.health.v1`, reflection
//! (v1 and v1alpha, so grpcurl 1.8 works), HTTP/2 limits on every connection, and a graceful
//! shutdown that reports NOT_SERVING before it stops accepting calls.
//!
//! # Limits of one connection
//! Whatever a client does on one connection is bounded by what the server advertises and
//! enforces: at most [`MAX_CONCURRENT_STREAMS`] calls at once (`SETTINGS_MAX_CONCURRENT_STREAMS`;
//! a client queues the others), request headers of at most [`MAX_HEADER_LIST_SIZE`], a ping
//! every [`HTTP2_KEEPALIVE_INTERVAL`] answered within [`HTTP2_KEEPALIVE_TIMEOUT`] or the
//! connection is closed, and at most [`MAX_PENDING_ACCEPT_RESET_STREAMS`] streams opened and
//! reset before they are served (the "rapid reset" attack) before the connection is closed.

use std::{net::SocketAddr, time::Duration};

use phantom_layers::{
    RequestIdLayer, ServerSpanLayer, Tenant, TenantLayer,
    adaptive::{AdaptiveConcurrencyLayer, ConcurrencyLimiter},
    auth::{AuthLayer, AuthSettings, Policy, Refusals},
    bulkhead::{Bulkhead, BulkheadLayer},
    gate::{Gate, GateLayer},
    methods::{Exempt, KnownMethods},
    metrics::GrpcMetricsLayer,
    rate_limit::{RateLimitLayer, RateLimiter},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::{
    layer::util::{Identity, Stack},
    util::Either,
};

use crate::{
    config::{ServerAuth, ServerSettings, ShutdownConfig},
    tls::Tls,
};

/// The server-side layer stack shared by every PHANTOM server (innermost first, as tower
/// nests them; see [`router`] for the order and the reasons).
pub type ServerLayers = Stack<
    AdaptiveConcurrencyLayer,
    Stack<
        RateLimitLayer,
        Stack<
            BulkheadLayer,
            Stack<
                GateLayer,
                Stack<
                    Either<AuthLayer, TenantLayer>,
                    Stack<
                        GrpcMetricsLayer,
                        Stack<RequestIdLayer, Stack<ServerSpanLayer, Identity>>,
                    >,
                >,
            >,
        >,
    >,
>;

/// Calls one HTTP/2 connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
/// Twice the default client bulkhead (64), so PHANTOM's own clients, one connection per
/// dependency, never wait on it; a client that opens more has the rest queued on its side.
/// Without it (tonic's default) one connection opened 3,000 non-reading streams.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;

/// Bytes of request headers a call may send (`SETTINGS_MAX_HEADER_LIST_SIZE`): hyper's
/// default, made explicit. PHANTOM's metadata (trace context, correlation id, tenant,
/// deadline) is well under 1 KiB.
pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;

/// How often the server pings an HTTP/2 connection: finds dead peers (a scanner host that
/// vanished) without waiting on TCP.
pub const HTTP2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How long a ping may go unanswered before the connection is closed.
pub const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams a client may open and reset before the server has served them, at once, before
/// the connection is closed (CVE-2023-44487, "rapid reset"): h2's default, made explicit.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;

pub use crate::tls::TCP_KEEPALIVE;

/// A gRPC server builder with the limits every PHANTOM server has (see the
/// [module docs](self)): the API port and the probes' port alike.
fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .http2_max_header_list_size(MAX_HEADER_LIST_SIZE)
        .http2_keepalive_interval(Some(HTTP2_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(HTTP2_KEEPALIVE_TIMEOUT))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESET_STREAMS))
}

/// `listener`'s connections, plaintext, with `TCP_NODELAY` (calls are small; Nagle would
/// delay them) and TCP keep-alive. tonic applies its own TCP settings only to listeners it
/// binds itself. Only the probe port is served so: the API port goes through
/// [`crate::tls::incoming`], TLS or not, so that every call carries its
/// [`phantom_layers::auth::Peer`].
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE))
}

/// Services every server has beside its own: health, reflection (both versions) and metrics.
const COMMON_SERVICES: [&str; 4] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "phantom.v1.Metrics",
];

/// The methods a server serving `services` (and [`COMMON_SERVICES`]) answers, from the
/// descriptors reflection serves: every label and limiter key is one of them, or `unknown`.
fn known_methods(services: &[&str]) -> KnownMethods {
    let sets = [
        phantom_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let served = |path: &str| {
        services.iter().chain(&COMMON_SERVICES).any(|s| {
            path.strip_prefix('/')
                .and_then(|p| p.strip_prefix(s))
                .is_some_and(|m| m.starts_with('/'))
        })
    };
    KnownMethods::new(
        sets.iter()
            // Compiled-in descriptors: they decode, or no test of this crate would pass.
            .flat_map(|set| {
                phantom_proto::method_paths(set).expect("compiled-in descriptors decode")
            })
            .filter(|path| served(path)),
    )
}

/// The `grpc.health.v1` name that answers liveness: SERVING as long as the process serves
/// at all, whatever its dependencies. Kubernetes' liveness probe asks it; restarting a pod
/// because its database is down would not bring the database back.
pub const LIVENESS: &str = "liveness";

/// The `grpc.health.v1` name that answers readiness (as does the empty name and each
/// service's own name): SERVING once the service's dependencies answered, NOT_SERVING while
/// starting and from the moment shutdown begins.
pub const READINESS: &str = "readiness";

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed.
    #[error("gRPC server error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptors.
    #[error("reflection error: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The HTTP server failed.
    #[error("HTTP server error: {0}")]
    Http(#[from] std::io::Error),
    /// The probes' port could not be served on its own thread.
    #[error("probe port error: {0}")]
    ProbePort(std::io::Error),
    /// A channel to a peer could not be made.
    #[error("client: {0}")]
    Client(Box<dyn std::error::Error + Send + Sync>),
    /// The shared rate limit's Redis client could not be built.
    #[error("distributed rate limit: {0}")]
    Redis(#[from] fred::error::Error),
}

/// Serves `router` (health NOT_SERVING) while `init` brings the service's dependencies up,
/// then reports SERVING. `init` returns false when shutdown came first.
///
/// `listener` is served over TLS when `tls` is given (see [`serve`]). `probe_port`, if
/// given, serves the same health statuses plaintext until the API server has drained: what
/// Kubernetes probes ask, without a certificate or a token.
#[allow(clippy::too_many_arguments)]
pub async fn serve_when_ready(
    name: &'static str,
    router: Router<ServerLayers>,
    listener: TcpListener,
    tls: Option<Tls>,
    probe_port: Option<TcpListener>,
    health: HealthHandle,
    config: &ShutdownConfig,
    shutdown: CancellationToken,
    init: impl std::future::Future<Output = bool>,
) -> Result<(), ServeError> {
    // tonic-health starts every reporter at SERVING for the empty name: say the truth first.
    health.set_not_serving().await;
    let probe_stop = CancellationToken::new();
    let probes = health.serve_probe_port(name, probe_port, probe_stop.clone());
    let serve = async {
        let served = serve(
            name,
            router,
            listener,
            tls,
            health.clone(),
            config,
            shutdown,
        )
        .await;
        probe_stop.cancel();
        served
    };
    let ready = async {
        if init.await {
            health.set_serving().await;
            tracing::info!(event = crate::telemetry::event::SYSTEM, service = %name, "Ready");
        }
    };
    let (served, probed, ()) = tokio::join!(serve, probes, ready);
    served.and(probed)
}

/// Reports a server's health through `grpc.health.v1`, for the empty name (the whole server,
/// what Kubernetes' gRPC probes ask by default) and for each of its services.
#[derive(Clone)]
pub struct HealthHandle {
    reporter: HealthReporter,
    services: Vec<String>,
    gate: Gate,
}

impl std::fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHandle")
            .field("services", &self.services)
            .finish()
    }
}

impl HealthHandle {
    /// The server's [`Gate`]: closed, it answers every call but probes and reflection at once
    /// with UNAVAILABLE (what whoever follows a dependency does while it is down).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// Keeps readiness following a dependency the service cannot work without, once it is
    /// ready: every `every`, `check` runs (within `timeout`); a failure reports NOT_SERVING
    /// (readiness, the empty name, the service names; liveness is untouched), the next
    /// success SERVING again. Stops when `shutdown` fires, so it never undoes the shutdown's
    /// NOT_SERVING.
    pub fn follow<F, Fut>(
        &self,
        what: &'static str,
        every: Duration,
        timeout: Duration,
        shutdown: CancellationToken,
        check: F,
    ) where
        F: Fn() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let health = self.clone();
        tokio::spawn(async move {
            let mut down = false;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
                let ok = tokio::time::timeout(timeout, check())
                    .await
                    .unwrap_or(false);
                if shutdown.is_cancelled() {
                    return;
                }
                if ok == down {
                    down = !ok;
                    if ok {
                        tracing::info!(dependency = what, "Dependency back: ready again");
                        health.set_serving().await;
                    } else {
                        tracing::warn!(
                            dependency = what,
                            "Dependency lost: not ready until it answers"
                        );
                        health.set_not_serving().await;
                    }
                }
            }
        });
    }

    /// Serves this server's `grpc.health.v1` (the same statuses) on `listener`, plaintext and
    /// without credentials, until `stop`: the probes' port, apart from the API port. The
    /// kubelet sends neither a client certificate nor a token, so this port serves health
    /// and nothing else: metrics are read on the API port, with credentials.
    pub async fn serve_probe_port(
        &self,
        name: &'static str,
        listener: Option<TcpListener>,
        stop: CancellationToken,
    ) -> Result<(), ServeError> {
        let Some(listener) = listener else {
            return Ok(());
        };
        tracing::info!(service = %name, addr = ?listener.local_addr().ok(), "Health port listening");
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(self.reporter.clone()),
        );
        // Its own thread and runtime: a saturated API port (every worker busy, a run queue
        // thousands of tasks long) must not make the kubelet's liveness probe wait behind it
        // and restart a pod that is only busy. The statuses it serves are the reporter's,
        // shared across runtimes.
        let listener = listener.into_std().map_err(ServeError::ProbePort)?;
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("{name}-probes"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(ServeError::ProbePort)
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener =
                                TcpListener::from_std(listener).map_err(ServeError::ProbePort)?;
                            grpc_server()
                                .add_service(health)
                                .serve_with_incoming_shutdown(
                                    incoming(listener),
                                    stop.cancelled_owned(),
                                )
                                .await?;
                            Ok(())
                        })
                    });
                let _ = done.send(served);
            })
            .map_err(ServeError::ProbePort)?;
        finished.await.unwrap_or(Ok(()))
    }

    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        self.reporter.set_service_status(READINESS, status).await;
        for s in &self.services {
            self.reporter.set_service_status(s, status).await;
        }
    }

    /// Reports SERVING: dependencies are ready.
    pub async fn set_serving(&self) {
        self.set(ServingStatus::Serving).await;
    }

    /// Reports NOT_SERVING: starting, or shutting down.
    pub async fn set_not_serving(&self) {
        self.set(ServingStatus::NotServing).await;
    }
}

/// What a server never limits nor sheds, and a client's bulkhead never holds: health probes
/// (Kubernetes must see the server as it is) and reflection (an operator's grpcurl).
pub fn probes() -> Exempt {
    Exempt::prefixes([HEALTH_PREFIX, REFLECTION_PREFIX])
}

const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";
const REFLECTION_PREFIX: &str = "/grpc.reflection.";

/// Who may call what on `name`'s server: [`phantom_proto::AUTHORIZATION`], the one table.
fn policy() -> Policy {
    // Compiled in and checked by phantom-proto's tests: it parses, or no test passes.
    Policy::new(phantom_proto::AUTHORIZATION.iter().copied())
        .expect("the authorization table parses")
}

/// The layer that says who a call is from and which tenant it acts for: authentication when
/// the server has it, else the deployment's tenant (or a trusted peer's header).
fn edge_layer(
    name: &str,
    settings: &ServerSettings,
    context: &crate::Context,
) -> Either<AuthLayer, TenantLayer> {
    let tenant = settings.tenancy.default_tenant.clone();
    let Some(ServerAuth {
        authenticator,
        reflection_requires_auth,
        unauthenticated,
    }) = settings.auth.clone()
    else {
        return Either::Right(if settings.tenancy.trust_tenant_header {
            TenantLayer::trusted_header(tenant)
        } else {
            TenantLayer::fixed(tenant)
        });
    };
    let exempt = if reflection_requires_auth {
        Exempt::prefixes([HEALTH_PREFIX])
    } else {
        probes()
    };
    let limiter_name = format!("{name}/unauthenticated");
    let unauthenticated = RateLimiter::new(
        &limiter_name,
        &phantom_layers::rate_limit::RateLimitConfig {
            enabled: true,
            default: unauthenticated,
            ..Default::default()
        },
    );
    context.registry.limiter(&limiter_name, &unauthenticated);
    Either::Left(AuthLayer::new(AuthSettings {
        policy: policy(),
        authenticator,
        default_tenant: tenant,
        exempt,
        unauthenticated,
        refusals: Refusals::registered(&context.registry, name),
    }))
}

/// Builds a router with the shared layers, health and reflection; the caller adds its own
/// service(s) with `add_service` and passes the router to [`serve`].
///
/// `services` are the fully-qualified names of the services the caller adds
/// (`phantom.v1.Notifier`): health reports on them, and their methods (with those of health,
/// reflection and metrics) are the only ones metrics and rate limits tell apart.
/// Its breakers, limiters and gRPC metrics are registered in `context`'s registry.
pub fn router(
    name: &'static str,
    settings: &ServerSettings,
    context: &crate::Context,
    services: &[&str],
) -> Result<(Router<ServerLayers>, HealthHandle), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    // Liveness is SERVING from the start and stays so, through the shutdown drain too.
    let live = reporter.clone();
    tokio::spawn(async move {
        live.set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
    });
    let metrics = crate::metrics::MetricsService::new(
        name,
        context.registry.clone(),
        context.process.clone(),
    );
    let health = HealthHandle {
        reporter,
        services: services.iter().map(|s| (*s).to_owned()).collect(),
        gate: Gate::new(),
    };
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(phantom_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let edge = edge_layer(name, settings, context);
    let load_shed = Bulkhead::new(&format!("{name}/server"), settings.resilience.load_shed);
    // Metric labels and limiter keys are made of these, never of the paths callers send.
    let methods = known_methods(services);
    let limiter = RateLimiter::new(&format!("{name}/server"), &settings.resilience.rate_limit)
        .with_methods(methods.clone())
        .with_exempt(probes());
    context
        .registry
        .bulkhead(&format!("{name}/server"), &load_shed);
    context
        .registry
        .limiter(&format!("{name}/server"), &limiter);
    let adaptive = ConcurrencyLimiter::new(
        &format!("{name}/server"),
        &settings.resilience.adaptive_concurrency,
    );
    context
        .registry
        .adaptive_concurrency(&format!("{name}/server"), &adaptive);
    // Streams are not counted: their lifetime says nothing of the server's latency.
    let unary_only = Exempt::prefixes(
        [HEALTH_PREFIX, REFLECTION_PREFIX]
            .into_iter()
            .map(str::to_owned)
            .chain(
                phantom_proto::streaming_methods(phantom_proto::FILE_DESCRIPTOR_SET)
                    .expect("compiled-in descriptors decode"),
            ),
    );
    let router = grpc_server()
        // Outermost: every call gets its span (a child of the caller's, from `traceparent`)
        // before anything can fail, so even a call refused below is traced with its status.
        .layer(ServerSpanLayer::new(name))
        // Then its correlation id, recorded on that span so every log line of the call has it.
        .layer(RequestIdLayer::new(name))
        // Then it is counted and timed (grpc_server_*), whatever happens to it below, under
        // its method's name if this server has that method, `unknown` otherwise.
        .layer(GrpcMetricsLayer::new(methods, context.registry.clone()))
        // Then who it is from, whether it may call this method, and the tenant it acts for
        // (from its identity, never from what a user sends), so every handler and every
        // outgoing call knows; refused calls stop here, before any limit or work.
        .layer(edge)
        // A server whose database is down answers at once (UNAVAILABLE, RetryInfo) rather
        // than have each call wait for a connection the pool cannot open.
        .layer(GateLayer::new(health.gate.clone(), probes()))
        // Shed load before doing any work for it: a saturated server answers at once with
        // RESOURCE_EXHAUSTED rather than queueing calls into their timeouts. A stream holds
        // its slot until its body ends.
        .layer(BulkheadLayer::new(load_shed).with_exempt(probes()))
        // Then the per-caller, per-method limits (keyed by the principal resolved above).
        .layer(RateLimitLayer::new(limiter))
        // Last, the adaptive bound on unary calls in flight, which follows the server's
        // latency: below the rate limits, so one caller's excess is not read as overload.
        .layer(AdaptiveConcurrencyLayer::new(adaptive).with_exempt(unary_only))
        .add_service(health_service)
        .add_service(phantom_proto::pb::metrics_server::MetricsServer::new(
            metrics,
        ))
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    Ok((router, health))
}

/// A service's gRPC server being assembled: the router with the shared layers, health and
/// reflection ([`router`]), what serving it needs, and the database it may follow. What
/// every service's `run` does, in one place:
///
/// ```ignore
/// let server = Server::new(NAME, &config.server, &context, &[GRPC_SERVICE])?
///     .with_services(|router| router.add_service(MyServer::new(service)));
/// let database = server.database(&config.storage, &config.migrations, &shutdown);
/// let init = async { let Some(db) = database.await else { return false }; /* ... */ true };
/// server.serve(listeners.grpc, listeners.health, shutdown, init).await
/// ```
#[derive(Debug)]
pub struct Server {
    name: &'static str,
    router: Router<ServerLayers>,
    health: HealthHandle,
    shutdown: ShutdownConfig,
    probe_timeout: Duration,
    context: crate::Context,
    tls: Option<Tls>,
}

impl Server {
    /// The server of service `name` (see [`router`] for `services`).
    pub fn new(
        name: &'static str,
        settings: &ServerSettings,
        context: &crate::Context,
        services: &[&str],
    ) -> Result<Self, ServeError> {
        let (router, health) = router(name, settings, context, services)?;
        Ok(Self {
            name,
            router,
            health,
            shutdown: settings.shutdown.clone(),
            probe_timeout: settings.probe_timeout,
            context: context.clone(),
            tls: settings.tls.clone(),
        })
    }

    /// Adds the service's own gRPC services to the router.
    #[must_use]
    pub fn with_services(
        mut self,
        add: impl FnOnce(Router<ServerLayers>) -> Router<ServerLayers>,
    ) -> Self {
        self.router = add(self.router);
        self
    }

    /// The server's health: what follows a dependency ([`HealthHandle::follow`]).
    pub fn health(&self) -> &HealthHandle {
        &self.health
    }

    /// Opens the service's database with `migrations` applied, its pool's gauge kept, and
    /// this server's readiness following it (see [`crate::connect_store_for`]); `None` when
    /// `shutdown` came first. The future does not borrow the server: it runs in the `init`
    /// that [`Server::serve`] is given.
    pub fn database<'a>(
        &self,
        storage: &'a crate::config::StorageConfig,
        migrations: &'a [&'static phantom_storage::Migrator],
        shutdown: &'a CancellationToken,
    ) -> impl std::future::Future<Output = Option<phantom_storage::Database>> + use<'a> {
        let (name, probe_timeout) = (self.name, self.probe_timeout);
        let (context, health) = (self.context.clone(), self.health.clone());
        async move {
            crate::connect_store_for(
                name,
                storage,
                probe_timeout,
                &context,
                migrations,
                &health,
                shutdown,
            )
            .await
        }
    }

    /// Serves on `listener` (over TLS if the settings had it; the probes on `probe_port`
    /// plaintext), SERVING once `init` returned true, until `shutdown` (see
    /// [`serve_when_ready`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        probe_port: Option<TcpListener>,
        shutdown: CancellationToken,
        init: impl std::future::Future<Output = bool>,
    ) -> Result<(), ServeError> {
        serve_when_ready(
            self.name,
            self.router,
            listener,
            self.tls,
            probe_port,
            self.health,
            &self.shutdown,
            shutdown,
            init,
        )
        .await
    }
}

/// Serves `router` on `listener` until `shutdown` fires; then reports NOT_SERVING, waits
/// `drain_delay` for load balancers to notice, stops accepting, and gives in-flight calls
/// `grace_period` to finish.
///
/// Over TLS when `tls` is given (client certificates verified, a service's naming it in
/// each call's [`phantom_layers::auth::Peer`]), plaintext otherwise; either way every call
/// carries its `Peer` (see [`crate::tls::incoming`]).
pub async fn serve(
    name: &'static str,
    router: Router<ServerLayers>,
    listener: TcpListener,
    tls: Option<Tls>,
    health: HealthHandle,
    config: &ShutdownConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().ok();
    tracing::info!(event = crate::telemetry::event::SYSTEM, service = %name, addr = ?addr, tls = tls.is_some(), "gRPC server listening");
    let drain_delay = config.drain_delay;
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            health.set_not_serving().await;
            tracing::info!(event = crate::telemetry::event::SYSTEM, service = %name, "Shutting down: NOT_SERVING, draining");
            tokio::time::sleep(drain_delay).await;
        }
    };
    let server = router.serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), signal);
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain_delay + config.grace_period).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => {
            tracing::warn!(service = %name, "Grace period over: abandoning in-flight calls");
        }
    }
    tracing::info!(event = crate::telemetry::event::SYSTEM, service = %name, "gRPC server stopped");
    // The spans of the last calls go out before the process does (a blocking wait of a few
    // seconds at most, off the async workers).
    let _ = tokio::task::spawn_blocking(crate::telemetry::flush).await;
    Ok(())
}

/// Binds `addr`, logging the address actually chosen when the port is 0.
pub async fn bind(name: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} for {name}: {e}"))
    })?;
    tracing::debug!(listener = name, addr = %listener.local_addr()?, "Bound");
    Ok(listener)
}

/// Waits for the process's SIGINT or SIGTERM and then cancels `token`.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler installs");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("Signal received: shutting down");
        token.cancel();
    });
}

/// The tenant [`phantom_layers::TenantLayer`] resolved for this call.
pub fn tenant_of<T>(req: &tonic::Request<T>) -> Result<Tenant, tonic::Status> {
    req.extensions().get::<Tenant>().cloned().ok_or_else(|| {
        // Only reachable if a server was assembled without the shared stack.
        phantom_layers::Error::internal("no tenant resolved for this call").into()
    })
}

/// The address a call comes from: from the [`phantom_layers::auth::Peer`] PHANTOM's
/// listeners set ([`crate::tls::incoming`]), or tonic's own connect-info (a server built
/// without them, a test). `tonic::Request::remote_addr` knows only the latter.
pub fn remote_addr_of<T>(req: &tonic::Request<T>) -> Option<SocketAddr> {
    req.extensions()
        .get::<phantom_layers::auth::Peer>()
        .and_then(|peer| peer.remote_addr)
        .or_else(|| req.remote_addr())
}
