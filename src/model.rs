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
        Self::from_file(load_model(path)?)
    }

    /// A model from the bytes of an ONNX file; `path` names it in errors and places its external
    /// data.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Model> {
        let model = crate::onnx::decode_model(bytes, path)?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self::from_file(ModelFile { path: path.to_path_buf(), dir, model, file_bytes: bytes.len() as u64 })
    }

    fn from_file(file: ModelFile) -> Result<Model> {
        let path = &file.path;
        let graph = Graph::from_model(&file.model, &file.dir).map_err(|e| match e {
            e @ (Error::Model { .. } | Error::Io { .. }) => e,
            other => Error::Model { file: path.to_path_buf(), msg: other.to_string() },
        })?;
        let layers = quantizable_layers(&graph);
        check_parameters(&graph, &layers).map_err(|msg| Error::Model { file: path.to_path_buf(), msg })?;
        Ok(Model { file, graph, layers })
    }
}

/// Every layer's weight and bias and every BatchNormalization parameter must be finite: a NaN
/// weight silently turns every score into NaN (no detections, exit 0).
fn check_parameters(graph: &Graph, layers: &[Layer]) -> std::result::Result<(), String> {
    let bn = graph.nodes.iter().filter(|n| n.op_type == "BatchNormalization");
    let params = layers
        .iter()
        .flat_map(|l| {
            let node = graph.nodes.iter().find(|n| n.name == l.name);
            let bias = node.and_then(|n| n.input(2)).map(str::to_string);
            [Some(l.weight.clone()), bias].into_iter().flatten().map(move |p| (l.name.clone(), p))
        })
        .chain(bn.flat_map(|n| n.inputs.iter().skip(1).map(move |p| (n.name.clone(), p.clone()))));
    for (node, p) in params {
        let Some(v) = graph.initializers.get(&p).and_then(|t| t.as_f32()) else { continue };
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "node '{node}': parameter '{p}' holds {} at element {i}; the model's weights are broken",
                v[i]
            ));
        }
    }
    Ok(())
}
