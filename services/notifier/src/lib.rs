//! The notifier: durable, resumable notifications to subscribers.
//!
//! # Layout
//! - [`service`]: the `phantom.v1.Notifier` gRPC service (publish, subscribe with replay).
//! - [`hub`]: live fan-out to per-subscriber priority queues.
//! - [`fanout`]: fan-out across replicas through Redis.
//! - [`log`]: where notifications are kept (Redis Streams or the database).
//! - [`writer`]: the write path of `Publish`: batches, most urgent first, live delivery in
//!   commit order.
//! - [`repository`]: the notifications in the shared database (what [`log::StoreLog`] keeps),
//!   and their migrations.
//! - [`limits`]: how many subscriptions a caller and a replica may have open.
//! - [`memory`]: the memory a replica may use, which sizes its default caps.
//! - [`webhook`]: outbound webhooks, signed, retried, behind a breaker per destination.
//! - [`ws`]: the WebSocket gateway over the same feeds.
//! - [`settings`]: the `[notifier]` section and what the service runs with ([`Config`]).

pub mod fanout;
pub mod hub;
pub mod limits;
pub mod log;
pub mod memory;
pub mod repository;
mod secret_url;
pub mod service;
pub mod settings;
pub mod webhook;
pub mod writer;
pub mod ws;

use std::sync::Arc;

use phantom_kit::{CancellationToken, Context, Listeners, Ready, server};
use phantom_proto::pb::notifier_server::NotifierServer;
pub use settings::Config;

/// The service's name: in logs, spans, metrics and health reports.
pub const NAME: &str = "notifier";

/// Fully-qualified name of the gRPC service.
pub const GRPC_SERVICE: &str = "phantom.v1.Notifier";

/// Runs the notifier, gRPC on `listeners.grpc` and the WebSocket gateway on `listeners.http`
/// (if given), until `shutdown` fires.
pub async fn run(
    config: Config,
    listeners: Listeners,
    context: Context,
    shutdown: CancellationToken,
) -> Result<(), server::ServeError> {
    let core = Ready::new();
    let hub = Arc::new(hub::Hub::new(&context.registry));
    let n = &config.notifier;
    let memory = memory::available();
    let delivery = service::Delivery::from_config(n, memory);
    let ws_connections = ws::max_connections(&n.ws, memory);
    tracing::info!(
        memory,
        max_subscriptions = delivery.max_subscriptions,
        max_subscriptions_per_caller = delivery.max_subscriptions_per_caller,
        ws_max_connections = ws_connections,
        "Notifier limits"
    );
    let notifier =
        service::NotifierService::new(core.clone(), hub.clone(), delivery, shutdown.clone());
    let server = server::Server::new(NAME, &config.server, &context, &[GRPC_SERVICE])?
        .with_services(|router| router.add_service(NotifierServer::new(notifier.clone())));
    let database = server.database(&config.storage, &config.migrations, &shutdown);
    let init = async {
        let Some(store) = database.await else {
            return false;
        };
        let redis = &config.redis_url;
        let fanout = if n.redis_fanout && !redis.is_empty() {
            match fanout::RedisFanout::start(redis, hub.clone(), shutdown.clone()) {
                Ok(f) => Some(f),
                Err(err) => {
                    tracing::error!(error = %err, "Notification fan-out across replicas is off");
                    None
                }
            }
        } else {
            None
        };
        use crate::settings::NotificationLogKind;
        let log: Arc<dyn log::NotificationLog> = match n.log {
            NotificationLogKind::Redis | NotificationLogKind::Auto if !redis.is_empty() => {
                match log::RedisLog::connect(redis, n.retention_count) {
                    Ok(l) => {
                        if !l.ready(std::time::Duration::from_secs(5)).await {
                            tracing::warn!(
                                "Redis is not reachable yet: Publish answers UNAVAILABLE until it is"
                            );
                        }
                        Arc::new(l)
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "Cannot use Redis for notifications");
                        return false;
                    }
                }
            }
            _ => Arc::new(log::StoreLog(Arc::new(
                repository::SqlNotificationRepository::new(store),
            ))),
        };
        tracing::info!(log = log.backend(), "Notification log");
        tokio::spawn(prune(log.clone(), n.clone(), shutdown.clone()));
        let webhooks = webhook::Webhooks::start(
            &n.webhooks,
            &config.server.tenancy.default_tenant,
            &context.registry,
            &shutdown,
        );
        let writer = writer::Writer::start(
            log.clone(),
            &n.write,
            service::live_delivery(hub.clone(), webhooks),
            &context.registry,
        );
        core.set(service::Core {
            log,
            writer,
            fanout,
        });
        true
    };
    let grpc = server.serve(listeners.grpc, listeners.health, shutdown.clone(), init);
    // Within the `[http]` limits, as the health port: header and idle timeouts, a
    // connection cap (`notifier.ws` then bounds the sockets that upgraded).
    let ws_router = ws::router(
        notifier,
        config.server.tenancy.default_tenant.clone(),
        config.server.auth.as_ref().map(|a| a.authenticator.clone()),
        config.notifier.ws.clone(),
        ws_connections,
    );
    let ws = async {
        match listeners.http {
            Some(listener) => phantom_kit::http::serve(
                "notifier websocket (/ws)",
                listener,
                ws_router,
                &config.server.http,
                config.server.tls.as_ref(),
                &context.registry,
                shutdown.clone(),
            )
            .await
            .map_err(server::ServeError::Http),
            None => Ok(()),
        }
    };
    let (grpc, ws) = tokio::join!(grpc, ws);
    grpc.and(ws)
}

/// Applies retention (count per room, age) every `prune_every`, until `shutdown`.
async fn prune(
    log: Arc<dyn log::NotificationLog>,
    config: crate::settings::NotifierConfig,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.prune_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff = phantom_kit::time::now_micros()
            - i64::try_from(config.retention_age.as_micros()).unwrap_or(i64::MAX / 2);
        match log.prune(cutoff, config.retention_count).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "Notification retention applied"),
            Err(err) => tracing::warn!(error = %err, "Notification retention failed"),
        }
    }
}
