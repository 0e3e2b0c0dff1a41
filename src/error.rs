//! Library error type. Every variant names where the problem is (file, node, input) and says
//! what is wrong; the CLI adds what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing `path` failed. The message is the path only: the OS error is the
    /// source, which error chains (`{:#}` of anyhow, `Error::source`) print after it once.
    #[error("{}", path.display())]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_chain_names_the_os_error_once() {
        let path = std::path::Path::new("/nonexistent/training/calib/000000.txt");
        let source = std::fs::read_to_string(path).unwrap_err();
        let os = source.to_string();
        let e = Error::Io { path: path.to_path_buf(), source };
        assert_eq!(e.to_string(), "/nonexistent/training/calib/000000.txt");
        assert_eq!(std::error::Error::source(&e).map(|s| s.to_string()), Some(os.clone()));
        // As the CLI prints it: context, path, OS error, each once.
        let chain = format!("{:#}", anyhow::Error::from(e).context("frame 000000"));
        assert_eq!(chain, format!("frame 000000: /nonexistent/training/calib/000000.txt: {os}"));
    }
}
