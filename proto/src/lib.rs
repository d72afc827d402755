//! PHANTOM's v1 gRPC API.
//!
//! The `.proto` files under `proto/phantom/v1/` are the source of truth; this crate only
//! exposes what `build.rs` generates from them. Generated code is never edited: conversions to
//! domain types live at each service's gRPC edge.
//!
//! # Layout
//! - [`pb`]: messages, clients (`*_client`) and servers (`*_server`) of package `phantom.v1`.
//! - [`codec`]: how the servers decode requests (malformed bytes are INVALID_ARGUMENT).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.

pub mod codec;

/// Generated code for package `phantom.v1`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    // Messages and servers.
    tonic::include_proto!("phantom.v1");
    // Clients (generated apart, see build.rs).
    include!(concat!(env!("OUT_DIR"), "/clients/phantom.v1.rs"));
}

/// Encoded `FileDescriptorSet` of every PHANTOM proto (with comments), served by reflection
/// so that `grpcurl list` and `grpcurl describe` work against any PHANTOM service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/phantom_descriptor.bin"));

/// The path (`/package.Service/Method`) of every method of every service described in
/// `encoded`, an encoded `FileDescriptorSet` ([`FILE_DESCRIPTOR_SET`], or those tonic's
/// health and reflection services publish): what a server may be called at, and so the only
/// method names its metrics and limiters need.
pub fn method_paths(encoded: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(encoded)?;
    Ok(set
        .file
        .iter()
        .flat_map(|file| {
            let package = file.package();
            file.service.iter().flat_map(move |service| {
                let service_name = match package {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                service
                    .method
                    .iter()
                    .map(move |method| format!("/{service_name}/{}", method.name()))
            })
        })
        .collect())
}

/// The paths of the streaming methods (client or server streaming) of the services in
/// `encoded`: calls whose lifetime says nothing of the server's latency.
pub fn streaming_methods(encoded: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    use prost::Message as _;
    let set = prost_types::FileDescriptorSet::decode(encoded)?;
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let service_name = match file.package() {
                "" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            for method in &service.method {
                if method.client_streaming() || method.server_streaming() {
                    out.push(format!("/{service_name}/{}", method.name()));
                }
            }
        }
    }
    Ok(out)
}

/// Who may call each method of the API: the one table of method path → requirement, a scope
/// a user's key or token must hold, or `service` for the methods only PHANTOM's own services
/// call. Servers refuse a method this table does not list to everyone but services, and a
/// test checks that it lists every method of [`FILE_DESCRIPTOR_SET`], so a new RPC cannot
/// ship open by accident.
///
/// Notification rooms add one rule the method cannot express: system rooms (`scan/…`) take
/// publishes from services only (the notifier checks it).
pub const AUTHORIZATION: &[(&str, &str)] = &[
    ("/phantom.v1.ScanOrchestrator/CreateScan", "scans:write"),
    ("/phantom.v1.ScanOrchestrator/CancelScan", "scans:write"),
    ("/phantom.v1.ScanOrchestrator/GetScan", "scans:read"),
    ("/phantom.v1.ScanOrchestrator/ListScans", "scans:read"),
    ("/phantom.v1.ScanOrchestrator/WatchScan", "scans:read"),
    ("/phantom.v1.ScanOrchestrator/ListFindings", "findings:read"),
    // Assets are scans on a schedule: the same scopes as scans.
    ("/phantom.v1.ScanOrchestrator/CreateAsset", "scans:write"),
    ("/phantom.v1.ScanOrchestrator/SetAssetPaused", "scans:write"),
    ("/phantom.v1.ScanOrchestrator/DeleteAsset", "scans:write"),
    ("/phantom.v1.ScanOrchestrator/GetAsset", "scans:read"),
    ("/phantom.v1.ScanOrchestrator/ListAssets", "scans:read"),
    (
        "/phantom.v1.ScanOrchestrator/ListAssetFindings",
        "findings:read",
    ),
    // A person's verdict on a finding, which silences alerts: a scope of its own.
    ("/phantom.v1.ScanOrchestrator/SetTriage", "findings:triage"),
    // Alert rules decide what is pushed to the tenant's alerts room and webhooks.
    (
        "/phantom.v1.ScanOrchestrator/CreateAlertRule",
        "scans:write",
    ),
    (
        "/phantom.v1.ScanOrchestrator/DeleteAlertRule",
        "scans:write",
    ),
    ("/phantom.v1.ScanOrchestrator/ListAlertRules", "scans:read"),
    // Scores a vector given in the call: reads nothing, but it is the findings' view.
    ("/phantom.v1.VulnAnalyzer/ScoreCvss", "findings:read"),
    // Analyses and cache warming store scores: only the orchestrator sends findings.
    ("/phantom.v1.VulnAnalyzer/AnalyzeFindings", "service"),
    ("/phantom.v1.VulnAnalyzer/WarmScan", "service"),
    ("/phantom.v1.Notifier/Publish", "notify:publish"),
    ("/phantom.v1.Notifier/Subscribe", "notify:subscribe"),
    // The deployment's own state: for operators.
    ("/phantom.v1.HealthAggregator/GetSystemHealth", "admin"),
    ("/phantom.v1.HealthAggregator/WatchSystemHealth", "admin"),
    ("/phantom.v1.Metrics/GetMetrics", "admin"),
];

/// The unary methods of `encoded` (an encoded `FileDescriptorSet`) that their `.proto`
/// declares safe to call twice (`option idempotency_level = IDEMPOTENT` or
/// `NO_SIDE_EFFECTS`), by path: what a client may retry. The service that owns a method says
/// so in its contract; no client keeps a list. Streams are left out: one is never retried
/// once it began.
pub fn retryable_methods(encoded: &[u8]) -> Result<Vec<String>, prost::DecodeError> {
    use prost::Message as _;
    use prost_types::method_options::IdempotencyLevel;
    let set = prost_types::FileDescriptorSet::decode(encoded)?;
    let mut out = Vec::new();
    for file in &set.file {
        for service in &file.service {
            let service_name = match file.package() {
                "" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            for method in &service.method {
                let level = method
                    .options
                    .as_ref()
                    .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                        o.idempotency_level()
                    });
                let unary = !method.client_streaming() && !method.server_streaming();
                if unary && level != IdempotencyLevel::IdempotencyUnknown {
                    out.push(format!("/{service_name}/{}", method.name()));
                }
            }
        }
    }
    Ok(out)
}

/// The name of field `number` of message `message` (its short name, `AnalyzeFindingsRequest`),
/// from [`FILE_DESCRIPTOR_SET`]: how an error names a field it found by number.
pub fn field_name(message: &str, number: u32) -> Option<&'static str> {
    use std::{collections::HashMap, sync::OnceLock};
    static FIELDS: OnceLock<HashMap<(String, u32), String>> = OnceLock::new();
    let fields = FIELDS.get_or_init(|| {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptors built with this crate decode");
        set.file
            .iter()
            .flat_map(|file| &file.message_type)
            .flat_map(|m| {
                m.field.iter().map(move |f| {
                    (
                        (m.name().to_owned(), u32::try_from(f.number()).unwrap_or(0)),
                        f.name().to_owned(),
                    )
                })
            })
            .collect()
    });
    fields
        .get(&(message.to_owned(), number))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_authorization_table_lists_every_method_once() {
        let mut listed: Vec<&str> = super::AUTHORIZATION.iter().map(|(m, _)| *m).collect();
        listed.sort_unstable();
        let mut methods = super::method_paths(super::FILE_DESCRIPTOR_SET).unwrap();
        methods.sort();
        assert_eq!(listed, methods);
    }

    #[test]
    fn the_retryable_methods_are_the_unary_ones_the_protos_mark() {
        let mut got = super::retryable_methods(super::FILE_DESCRIPTOR_SET).unwrap();
        got.sort();
        assert_eq!(
            got,
            [
                "/phantom.v1.HealthAggregator/GetSystemHealth",
                "/phantom.v1.Metrics/GetMetrics",
                "/phantom.v1.ScanOrchestrator/CancelScan",
                "/phantom.v1.ScanOrchestrator/DeleteAlertRule",
                "/phantom.v1.ScanOrchestrator/DeleteAsset",
                "/phantom.v1.ScanOrchestrator/GetAsset",
                "/phantom.v1.ScanOrchestrator/GetScan",
                "/phantom.v1.ScanOrchestrator/ListAlertRules",
                "/phantom.v1.ScanOrchestrator/ListAssetFindings",
                "/phantom.v1.ScanOrchestrator/ListAssets",
                "/phantom.v1.ScanOrchestrator/ListFindings",
                "/phantom.v1.ScanOrchestrator/ListScans",
                "/phantom.v1.ScanOrchestrator/SetAssetPaused",
                "/phantom.v1.ScanOrchestrator/SetTriage",
                "/phantom.v1.VulnAnalyzer/AnalyzeFindings",
                "/phantom.v1.VulnAnalyzer/ScoreCvss",
                "/phantom.v1.VulnAnalyzer/WarmScan",
            ]
        );
    }

    #[test]
    fn fields_are_named_from_the_descriptors() {
        assert_eq!(
            super::field_name("AnalyzeFindingsRequest", 1),
            Some("findings")
        );
        assert_eq!(
            super::field_name("SubscribeRequest", 3),
            Some("after_sequence")
        );
        assert_eq!(super::field_name("SubscribeRequest", 99), None);
    }

    #[test]
    fn method_paths_lists_every_rpc_of_the_api() {
        let paths = super::method_paths(super::FILE_DESCRIPTOR_SET).unwrap();
        for path in [
            "/phantom.v1.ScanOrchestrator/CreateScan",
            "/phantom.v1.Notifier/Subscribe",
            "/phantom.v1.VulnAnalyzer/ScoreCvss",
            "/phantom.v1.HealthAggregator/WatchSystemHealth",
            "/phantom.v1.Metrics/GetMetrics",
        ] {
            assert!(
                paths.iter().any(|p| p == path),
                "{path} missing from {paths:?}"
            );
        }
    }
}
