//! pillarq: PointPillars ONNX models to fast, accurate mixed-precision TensorRT deployments.
//!
//! Stages (each a library function; the CLI is a thin layer): `onnx` (load/save), `graph`
//! (IR, shape inference, BN folding, quantizable layers), `exec` (backends: the CPU executor),
//! `pointpillars` (model config and layout), `quant` (calibration, plans, INT8 numerics), `search`
//! (sensitivity, greedy search, calibration sweep, result cache).

pub mod cli;
pub mod deploy;
pub mod error;
pub mod exec;
mod files;
pub mod graph;
pub mod kitti;
pub mod memory;
pub mod model;
pub mod npy;
pub mod numerics;
pub mod onnx;
pub mod pointpillars;
pub mod precision;
pub mod progress;
pub mod quant;
pub mod report;
pub mod search;
pub mod synth;
pub mod tensor;

pub use error::{Error, Result};
