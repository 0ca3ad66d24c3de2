//! Compiles the vendored onnx.proto with protox (pure Rust, no protoc) and prost.

fn main() {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    let fds = protox::compile(["proto/onnx.proto"], ["proto"]).expect("onnx.proto compiles");
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(fds)
        .expect("prost generates the ONNX types");
}
