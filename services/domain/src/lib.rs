//! PHANTOM's domain types: what travels from the gRPC edge to the store.
//!
//! A request's strings and wire enums become these types once, at the edge (the service's
//! gRPC handlers); repositories and service internals take them, and never parse a tenant, a
//! scan id or a severity again. Wire enums stay in `phantom_proto::pb` and at the edge: the
//! conversions between the two live here, beside the types (`From`/`TryFrom`).
//!
//! # Layout
//! - [`tenant`]: [`Tenant`], who a call acts for (resolved by `phantom_layers::TenantLayer`).
//! - [`scan_id`]: [`ScanId`], the identifier of a scan (a UUID).
//! - [`fingerprint`]: [`Fingerprint`], the stable identity of a finding across scans, and
//!   its computation.
//! - [`severity`]: [`Severity`], the severity band of a finding or an analysis.
//! - [`analysis`]: [`Analysis`], the vuln-analyzer's verdict on a fingerprint, as the
//!   analyzer stores it and the scan-orchestrator keeps it with a finding.
//! - [`time`]: stored times (microseconds since the Unix epoch) to and from wire timestamps.

pub mod analysis;
pub mod fingerprint;
pub mod scan_id;
pub mod severity;
pub mod tenant;
pub mod time;

pub use analysis::{Analysis, CvssScores};
pub use fingerprint::Fingerprint;
pub use scan_id::ScanId;
pub use severity::Severity;
pub use tenant::Tenant;
