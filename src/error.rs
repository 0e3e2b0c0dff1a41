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
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn graph(node: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Graph { node: node.into(), msg: msg.into() }
    }
}
