//! Compiles the public gRPC contract in `proto/` with a vendored `protoc`, so the build needs no
//! protobuf compiler on the system, and writes the descriptor set that gRPC reflection serves.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A system protoc named in PROTOC wins; otherwise use the one shipped in the crate.
    if env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment here.
        unsafe { env::set_var("PROTOC", protoc) };
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protos = [
        "proto/dom/v1/common.proto",
        "proto/dom/v1/sourcing.proto",
        "proto/dom/v1/inventory.proto",
        "proto/dom/v1/network.proto",
        "proto/dom/v1/events.proto",
    ];
    tonic_prost_build::configure()
        // prost's codec, but an undecodable request is INVALID_ARGUMENT (src/api/codec.rs)
        .codec_path("crate::api::codec::ApiCodec")
        .file_descriptor_set_path(out_dir.join("dom_v1_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
