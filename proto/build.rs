//! Compiles `phantom/v1/*.proto` without a system `protoc`: `protox` parses the files into a
//! descriptor set (with source info, so the comments reach grpcurl through reflection), and
//! `tonic-prost-build` generates messages, clients and servers from it.

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
        .build_client(true)
        .build_server(true)
        .compile_fds(generated)?;
    Ok(())
}
