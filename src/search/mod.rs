//! The searches over precision plans: plan evaluation with FP32 reuse and a result cache
//! (`evaluate`), the per-layer sensitivity sweep (`sensitivity`), the greedy fallback search with
//! its baselines (`greedy`) and the calibration-set sweep (`sweep`).

pub mod cache;
pub mod evaluate;
pub mod greedy;
pub mod sensitivity;
pub mod sweep;

use std::path::Path;

use crate::error::{Error, Result};
use crate::kitti::eval::EvalObject;
use crate::kitti::label::read_labels;
use crate::kitti::KittiDir;

/// The frames a plan is scored on, with their ground truth.
pub struct EvalSet {
    pub data: KittiDir,
    pub split: String,
    pub ids: Vec<String>,
    pub gt: Vec<Vec<EvalObject>>,
}

impl EvalSet {
    pub fn load(data: KittiDir, split: &str, ids: Vec<String>) -> Result<EvalSet> {
        let gt = ids
            .iter()
            .map(|id| Ok(read_labels(data.label_path(id))?.iter().map(EvalObject::from).collect()))
            .collect::<Result<Vec<_>>>()?;
        Ok(EvalSet { data, split: split.to_string(), ids, gt })
    }

    /// Identifies the data: the dataset's canonical path, the split and the frame ids.
    pub fn key(&self) -> String {
        let root = std::fs::canonicalize(self.data.root()).unwrap_or_else(|_| self.data.root().to_path_buf());
        sha256_hex(format!("{}|{}|{}", root.display(), self.split, self.ids.join(",")).as_bytes())
    }
}
pub use crate::files::sha256_hex;

/// SHA-256 of a file's bytes (the model hash of cache keys and calibration provenance).
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    Ok(sha256_hex(&bytes))
}

/// `--shard i/n`: this process does the work units whose index is `i` modulo `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn owns(&self, unit: usize) -> bool {
        unit % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("--shard '{s}': expected i/n with 0 <= i < n (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// Spearman rank correlation (average ranks for ties); None for fewer than 2 values or a
/// constant series.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let ranks = |v: &[f64]| -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut k = 0;
        while k < idx.len() {
            let mut e = k;
            while e + 1 < idx.len() && v[idx[e + 1]] == v[idx[k]] {
                e += 1;
            }
            let avg = (k + e) as f64 / 2.0 + 1.0;
            for &i in &idx[k..=e] {
                r[i] = avg;
            }
            k = e + 1;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return None;
    }
    Some(cov / (va * vb).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_known_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // ranks a = 1,2,3,4; b = 2,1,4,3: d^2 = 4, rho = 1 - 6*4/(4*15) = 0.6
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[2.0, 1.0, 4.0, 3.0]).unwrap() - 0.6).abs() < 1e-12);
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), None);
    }

    #[test]
    fn shard_parsing() {
        assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
        assert!("4/4".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().unwrap_err().contains("i/n"));
        let s = Shard { index: 1, count: 3 };
        assert_eq!((0..7).filter(|&u| s.owns(u)).collect::<Vec<_>>(), vec![1, 4]);
    }
}
