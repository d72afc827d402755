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
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    fs::write(
        out_dir.join("phantom_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
