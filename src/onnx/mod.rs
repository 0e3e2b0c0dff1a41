//! ONNX protobuf types (generated from onnx.proto 1.23.2 by tools/gen-onnx-proto, committed so that
//! the build needs no protoc) and model load/save.

#[allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
pub mod proto {
    include!("onnx.rs");
}

mod io;
pub mod metadata;

pub mod build;

pub use io::{decode_model, encode_model, load_model, read_tensor_external, save_model, ModelFile};
