//! Generates the gRPC code from `../proto` at build time with protox (a pure-Rust
//! protobuf compiler), so no `protoc` binary is needed on the machine.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "batcher/v1/batcher.proto",
    "index/v1/index.proto",
    "cache/v1/cache.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a compiled build script can be reused for another checkout
    // sharing the target directory, and `env!` would point it at the old one.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    for file in PROTOS {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let fds = protox::compile(PROTOS, [&proto_root])?;
    // Server reflection serves this descriptor set, so grpcurl works without .proto files.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("skyvault_descriptor.bin"), fds.encode_to_vec())?;
    // `bytes` fields as `Bytes`: values pass from request to file without copies.
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
