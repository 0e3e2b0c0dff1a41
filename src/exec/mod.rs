//! Execution backends. Each backend runs a prepared graph on named input tensors and says, in
//! words, what it is missing when it cannot run (`check`).

pub mod cpu;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The most worker threads a pool may have: more than any machine's cores, few enough to start
/// at once (a mistyped count would otherwise spend a minute starting threads before failing).
pub const MAX_THREADS: usize = 1024;

/// A rayon pool of `threads` workers (0 = one per core); more than `MAX_THREADS` is an error.
pub fn thread_pool(threads: usize) -> Result<rayon::ThreadPool> {
    if threads > MAX_THREADS {
        return Err(Error::Other(format!(
            "{threads} worker threads requested (--threads); at most {MAX_THREADS} are supported (0 = one per core)"
        )));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Other(format!("cannot start {threads} worker threads: {e}")))
}

/// The message of a caught panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".into(),
    }
}

/// Named tensors in graph order (inputs or outputs).
pub type NamedTensors = Vec<(String, Tensor)>;

pub trait Backend {
    fn name(&self) -> &'static str;
    /// `Ok(())` when the backend can run here, else what is missing (driver, library).
    fn check(&self) -> std::result::Result<(), String>;
    /// Runs the graph; outputs in the graph's output order.
    fn run(&self, inputs: &NamedTensors) -> Result<NamedTensors>;
}
