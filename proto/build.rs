//! Generates the tonic/prost code for the engine contract with a vendored
//! protoc, so a fresh machine needs no system protobuf compiler.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; this only informs prost-build.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["velostream/engine/v1/engine.proto"], &["."])?;
    println!("cargo:rerun-if-changed=velostream/engine/v1/engine.proto");
    Ok(())
}
