//! Regenerates `src/onnx/onnx.rs` from `proto/onnx.proto` (ONNX 1.23.2, proto2).
//! Needs `protoc` on PATH (Debian: protobuf-compiler). The output is committed so that
//! building pillarq needs no protoc.
fn main() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = here.join("../../src/onnx");
    let mut cfg = prost_build::Config::new();
    cfg.out_dir(&out);
    cfg.compile_protos(&[here.join("proto/onnx.proto")], &[here.join("proto")])
        .expect("protoc failed");
    println!("wrote {}", out.join("onnx.rs").display());
}
