//! Compiles `phantom/v1/*.proto` without a system `protoc`: `protox` parses the files into a
//! descriptor set (with source info, so the comments reach grpcurl through reflection), and
//! `tonic-prost-build` generates messages, clients and servers from it.
//!
//! Servers and clients are generated apart because they decode with different codecs:
//! servers with `crate::codec::ServerCodec` (a request that does not decode is the caller's
//! INVALID_ARGUMENT), clients with tonic's prost codec (a response that does not decode is
//! INTERNAL). The messages are generated once, with the servers; the clients' pass refers to
//! them as `crate::pb::…` and writes under `OUT_DIR/clients/`.

use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "phantom/v1/common.proto",
    "phantom/v1/scan_orchestrator.proto",
    "phantom/v1/vuln_analyzer.proto",
    "phantom/v1/notifier.proto",
    "phantom/v1/health_aggregator.proto",
    "phantom/v1/metrics.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS.iter().chain(&["google/rpc/error_details.proto"]) {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    // The error details are described for reflection only: their Rust types come from
    // tonic-types, so they are added after code generation's descriptor set is taken.
    let generated = compiler.file_descriptor_set();
    compiler.open_file("google/rpc/error_details.proto")?;
    fs::write(
        out_dir.join("phantom_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::codec::ServerCodec")
        .compile_fds(generated.clone())?;
    let clients = out_dir.join("clients");
    fs::create_dir_all(&clients)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .extern_path(".phantom.v1", "crate::pb")
        .out_dir(&clients)
        .compile_fds(generated)?;
    Ok(())
}
