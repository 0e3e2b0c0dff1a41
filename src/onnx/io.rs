//! Loading and saving ONNX files. Decoding keeps every field that onnx.proto defines, in proto2
//! presence semantics, so an unmodified model encodes back to the same bytes.

use std::path::{Path, PathBuf};

use prost::Message;

use super::proto::{tensor_proto::DataLocation, ModelProto, TensorProto};
use crate::error::{Error, Result};

/// A decoded model together with where it came from (external data is relative to `dir`).
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub model: ModelProto,
    /// Size of the file on disk, in bytes (without external data).
    pub file_bytes: u64,
}

/// Decodes an ONNX model from bytes; `origin` names the source in errors.
pub fn decode_model(bytes: &[u8], origin: &Path) -> Result<ModelProto> {
    if bytes.is_empty() {
        return Err(Error::Model {
            file: origin.to_path_buf(),
            msg: "file is empty; expected an ONNX model (protobuf ModelProto)".into(),
        });
    }
    let model = ModelProto::decode(bytes).map_err(|e| Error::Model {
        file: origin.to_path_buf(),
        msg: format!("not a valid ONNX protobuf ({e}); the file may be truncated or not an ONNX model"),
    })?;
    // Protobuf accepts many byte strings; an ONNX model has at least an IR version and a graph.
    if model.graph.is_none() || model.ir_version.unwrap_or(0) <= 0 {
        return Err(Error::Model {
            file: origin.to_path_buf(),
            msg: "decoded, but it has no graph or no ir_version: not an ONNX model".into(),
        });
    }
    Ok(model)
}

pub fn encode_model(model: &ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Reads and decodes `path`. External-data initializers stay as references; they are read
/// (relative to the model's folder) when the graph is built.
pub fn load_model(path: &Path) -> Result<ModelFile> {
    let bytes = crate::files::read_regular(path)?;
    let model = decode_model(&bytes, path)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    Ok(ModelFile { path: path.to_path_buf(), dir, model, file_bytes: bytes.len() as u64 })
}

/// Encodes and writes atomically (temp file + rename), so a failed save never leaves a half file.
pub fn save_model(model: &ModelProto, path: &Path) -> Result<()> {
    crate::files::write_atomic(path, &encode_model(model))
}

/// Returns the raw bytes of a tensor stored as external data (`location`, `offset`, `length`).
pub fn read_tensor_external(t: &TensorProto, model_dir: &Path) -> Result<Option<Vec<u8>>> {
    if t.data_location != Some(DataLocation::External as i32) {
        return Ok(None);
    }
    let name = t.name.clone().unwrap_or_default();
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for kv in &t.external_data {
        let key = kv.key.as_deref().unwrap_or("");
        let value = kv.value.as_deref().unwrap_or("");
        let parse = |what: &str| -> Result<u64> {
            value.parse::<u64>().map_err(|_| Error::Graph {
                node: name.clone(),
                msg: format!("external data {what} '{value}' is not a number"),
            })
        };
        match key {
            "location" => location = Some(value.to_string()),
            "offset" => offset = parse("offset")?,
            "length" => length = Some(parse("length")?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| Error::Graph {
        node: name.clone(),
        msg: "initializer uses external data but names no 'location'".into(),
    })?;
    if Path::new(&location).is_absolute() || location.split(['/', '\\']).any(|c| c == "..") {
        return Err(Error::Graph {
            node: name,
            msg: format!("external data location '{location}' must be a relative path inside the model's folder"),
        });
    }
    let file = model_dir.join(&location);
    let bytes = std::fs::read(&file).map_err(|e| Error::Io { path: file.clone(), source: e })?;
    let start = offset as usize;
    let end = match length {
        Some(l) => start.saturating_add(l as usize),
        None => bytes.len(),
    };
    if start > bytes.len() || end > bytes.len() {
        return Err(Error::Graph {
            node: name,
            msg: format!("external data range {start}..{end} lies outside {} ({} bytes)", file.display(), bytes.len()),
        });
    }
    Ok(Some(bytes[start..end].to_vec()))
}
