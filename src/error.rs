//! Library error type. Every variant names where the problem is (file, node, input) and says
//! what is wrong; the CLI adds what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {msg}", file.display())]
    Model { file: PathBuf, msg: String },
    #[error("node '{node}': {msg}")]
    Graph { node: String, msg: String },
    #[error("node '{node}' ({op}): {msg}")]
    Exec { node: String, op: String, msg: String },
    #[error("input '{name}': {msg}")]
    Input { name: String, msg: String },
    #[error("{}: {msg}", file.display())]
    Npy { file: PathBuf, msg: String },
    /// A KITTI dataset file (label, calib, velodyne, split list) is malformed.
    #[error("{}{}: {msg}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Kitti { file: PathBuf, line: Option<usize>, msg: String },
    /// A precision plan or calibration file is malformed or does not fit the model.
    #[error("{}: {msg}", file.display())]
    Plan { file: PathBuf, msg: String },
    /// A model configuration file (OpenPCDet YAML, pillarq YAML/JSON) is malformed, incomplete or
    /// asks for something pillarq does not implement; `key` is the dotted key path in that file.
    #[error("{}: {key}: {msg}", file.display())]
    Config { file: PathBuf, key: String, msg: String },
    /// TensorRT is missing, its libraries do not match, or it cannot do the work (feature `tensorrt`).
    #[error("TensorRT: {0}")]
    TensorRt(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn graph(node: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Graph { node: node.into(), msg: msg.into() }
    }

    /// A configuration error at `key` of `file`.
    pub fn config(file: impl Into<PathBuf>, key: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { file: file.into(), key: key.into(), msg: msg.into() }
    }

    /// A KITTI format error at `file` (and `line`, 1-based, when known).
    pub fn kitti(file: impl Into<PathBuf>, line: Option<usize>, msg: impl Into<String>) -> Self {
        Error::Kitti { file: file.into(), line, msg: msg.into() }
    }
}
