//! PHANTOM's v1 gRPC API.
//!
//! The `.proto` files under `proto/phantom/v1/` are the source of truth; this crate only
//! exposes what `build.rs` generates from them. Generated code is never edited: conversions to
//! domain types live at each service's gRPC edge.
//!
//! # Layout
//! - [`pb`]: messages, clients (`*_client`) and servers (`*_server`) of package `phantom.v1`.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.

/// Generated code for package `phantom.v1`.
pub mod pb {
    #![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("phantom.v1");
}

/// Encoded `FileDescriptorSet` of every PHANTOM proto (with comments), served by reflection
/// so that `grpcurl list` and `grpcurl describe` work against any PHANTOM service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/phantom_descriptor.bin"));
