//! Quantization: observers and calibrators (`calib`), precision plans (`plan`).

pub mod calib;
pub mod calibrate;
pub mod plan;
pub mod recipe;
pub mod refine;
