//! Execution backends. Each backend runs a prepared graph on named input tensors and says, in
//! words, what it is missing when it cannot run (`check`).

pub mod cpu;

use crate::error::Result;
use crate::tensor::Tensor;

/// Named tensors in graph order (inputs or outputs).
pub type NamedTensors = Vec<(String, Tensor)>;

pub trait Backend {
    fn name(&self) -> &'static str;
    /// `Ok(())` when the backend can run here, else what is missing (driver, library).
    fn check(&self) -> std::result::Result<(), String>;
    /// Runs the graph; outputs in the graph's output order.
    fn run(&self, inputs: &NamedTensors) -> Result<NamedTensors>;
}
