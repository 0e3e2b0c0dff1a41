//! A loaded model: the ONNX file, its graph IR and its quantizable layers.

use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::layers::{quantizable_layers, Layer};
use crate::graph::Graph;
use crate::onnx::{load_model, ModelFile};

pub struct Model {
    pub file: ModelFile,
    pub graph: Graph,
    pub layers: Vec<Layer>,
}

impl Model {
    /// Loads and imports `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Model> {
        let file = load_model(path)?;
        let graph = Graph::from_model(&file.model, &file.dir).map_err(|e| match e {
            e @ (Error::Model { .. } | Error::Io { .. }) => e,
            other => Error::Model { file: path.to_path_buf(), msg: other.to_string() },
        })?;
        let layers = quantizable_layers(&graph);
        Ok(Model { file, graph, layers })
    }
}
