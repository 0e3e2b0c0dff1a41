//! Deployment: the mixed-precision ONNX of a plan, TensorRT build scripts for TensorRT 10 and 11,
//! engine builds and their verification, benchmarks.

pub mod bench;
pub mod build;
pub mod cudapp;
pub mod emit;
/// Native TensorRT (cargo feature `tensorrt`): opens libnvinfer at run time; see the module doc
/// for what it can and cannot do without C++ bindings.
#[cfg(feature = "tensorrt")]
pub mod native;
pub mod package;
pub mod process;
pub mod scripts;
pub mod trtexec;
