//! The result cache: one file per (data set, plan, chunk of frames) holding that chunk's
//! detections and proxy sums. Written atomically when the chunk finishes, so a killed run loses
//! at most the chunks in flight, and a rerun (or another shard) picks up the rest. Keys:
//! `<root>/<eval key>/<plan key>/chunk-<k>.json`, where the eval key hashes the model file, the
//! data set, split, frame list and chunk size, and the plan key hashes the plan's canonical form
//! (precisions and activation thresholds).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::kitti::eval::EvalObject;
use crate::kitti::iou::CamBox;

/// One detection as cached (every field the evaluation reads).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CachedDet {
    pub class: String,
    pub bbox: [f64; 4],
    pub loc: [f64; 3],
    pub dims: [f64; 3],
    pub ry: f64,
    pub score: f64,
}

impl From<&EvalObject> for CachedDet {
    fn from(o: &EvalObject) -> Self {
        CachedDet {
            class: o.class.clone(),
            bbox: o.bbox,
            loc: o.cam.location,
            dims: o.cam.dims,
            ry: o.cam.ry,
            score: o.score,
        }
    }
}

impl CachedDet {
    pub fn to_eval(&self) -> EvalObject {
        EvalObject {
            class: self.class.clone(),
            truncated: 0.0,
            occluded: 0,
            bbox: self.bbox,
            cam: CamBox { location: self.loc, dims: self.dims, ry: self.ry },
            score: self.score,
        }
    }
}

/// Sums over a chunk's frames for the cheap sensitivity proxies.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ProxySums {
    /// Sum of squared FP32 head outputs, and of squared (plan - FP32) differences.
    pub head_signal: f64,
    pub head_noise: f64,
    /// Same at the output of the plan's single changed layer (0 when it changes several).
    pub layer_signal: f64,
    pub layer_noise: f64,
    pub layer_count: u64,
}

impl ProxySums {
    pub fn add(&mut self, o: &ProxySums) {
        self.head_signal += o.head_signal;
        self.head_noise += o.head_noise;
        self.layer_signal += o.layer_signal;
        self.layer_noise += o.layer_noise;
        self.layer_count += o.layer_count;
    }

    /// Signal-to-quantization-noise ratio of the head outputs, in dB (infinite when exact).
    pub fn head_sqnr_db(&self) -> f64 {
        10.0 * (self.head_signal / self.head_noise).log10()
    }

    /// Mean squared error at the changed layer's output.
    pub fn layer_mse(&self) -> Option<f64> {
        (self.layer_count > 0).then(|| self.layer_noise / self.layer_count as f64)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkResult {
    pub frames: Vec<String>,
    /// Detections per frame, in `frames` order.
    pub dets: Vec<Vec<CachedDet>>,
    pub proxy: ProxySums,
}

pub struct ResultCache {
    root: PathBuf,
}

impl ResultCache {
    pub fn new(root: impl Into<PathBuf>) -> ResultCache {
        ResultCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn chunk_path(&self, eval_key: &str, plan_key: &str, chunk: usize) -> PathBuf {
        self.root.join(&eval_key[..16]).join(&plan_key[..16]).join(format!("chunk-{chunk:05}.json"))
    }

    /// Where a chunk's frames done so far are kept while it runs (a killed run resumes from them).
    pub fn partial_path(&self, eval_key: &str, plan_key: &str, chunk: usize) -> PathBuf {
        self.root.join(&eval_key[..16]).join(&plan_key[..16]).join(format!("partial-{chunk:05}.json"))
    }

    /// The frames of a chunk done before an interruption; `None` when there are none, or the
    /// file is unreadable (the frames are then simply redone).
    pub fn read_partial(&self, eval_key: &str, plan_key: &str, chunk: usize) -> Option<ChunkResult> {
        let bytes = std::fs::read(self.partial_path(eval_key, plan_key, chunk)).ok()?;
        serde_json::from_slice::<ChunkResult>(&bytes).ok().filter(|r| r.dets.len() == r.frames.len())
    }

    pub fn write_partial(&self, eval_key: &str, plan_key: &str, chunk: usize, r: &ChunkResult) -> Result<()> {
        let path = self.partial_path(eval_key, plan_key, chunk);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        }
        let bytes = serde_json::to_vec(r).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&path, &bytes)
    }

    pub fn remove_partial(&self, eval_key: &str, plan_key: &str, chunk: usize) {
        let _ = std::fs::remove_file(self.partial_path(eval_key, plan_key, chunk));
    }

    pub fn has(&self, eval_key: &str, plan_key: &str, chunk: usize) -> bool {
        self.chunk_path(eval_key, plan_key, chunk).is_file()
    }

    pub fn read(&self, eval_key: &str, plan_key: &str, chunk: usize) -> Result<ChunkResult> {
        let path = self.chunk_path(eval_key, plan_key, chunk);
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Other(format!("{}: corrupt cache entry ({e}); delete it and rerun", path.display())))
    }

    pub fn write(&self, eval_key: &str, plan_key: &str, chunk: usize, r: &ChunkResult) -> Result<()> {
        let path = self.chunk_path(eval_key, plan_key, chunk);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        }
        let bytes = serde_json::to_vec(r).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&path, &bytes)
    }

    /// Copies every entry of `other` into this cache. Every entry is checked first (a corrupt or
    /// truncated one is an error naming it, and nothing is copied); an entry present in both must
    /// be identical (same key, same deterministic computation). Returns (copied, already present).
    pub fn merge_from(&self, other: &Path) -> Result<(usize, usize)> {
        let mut files = Vec::new();
        collect_files(other, &mut files)?;
        files.sort();
        let mut entries = Vec::new();
        for f in files {
            let Ok(rel) = f.strip_prefix(other) else { continue };
            if !rel.file_name().is_some_and(|n| n.to_string_lossy().starts_with("chunk-")) {
                continue;
            }
            let bytes = std::fs::read(&f).map_err(|source| Error::Io { path: f.clone(), source })?;
            let valid = serde_json::from_slice::<ChunkResult>(&bytes).map_err(|e| e.to_string()).and_then(|c| {
                if c.dets.len() != c.frames.len() {
                    Err(format!("{} frames but detections for {}", c.frames.len(), c.dets.len()))
                } else if let Some(id) = c.frames.iter().find(|id| !crate::kitti::is_frame_id(id)) {
                    Err(format!("'{id}' is not a frame id"))
                } else {
                    Ok(())
                }
            });
            if let Err(e) = valid {
                return Err(Error::Other(format!(
                    "{}: corrupt cache entry ({e}); nothing was merged. Delete it (its shard recomputes it) and merge again",
                    f.display()
                )));
            }
            entries.push((f.clone(), self.root.join(rel), bytes));
        }
        let (mut copied, mut same) = (0, 0);
        for (f, dest, bytes) in entries {
            if dest.is_file() {
                let mine = std::fs::read(&dest).map_err(|source| Error::Io { path: dest.clone(), source })?;
                if mine != bytes {
                    return Err(Error::Other(format!(
                        "{} and {} hold different results for the same key: were they made by different \
                         pillarq versions?",
                        f.display(),
                        dest.display()
                    )));
                }
                same += 1;
                continue;
            }
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
            }
            write_atomic(&dest, &bytes)?;
            copied += 1;
        }
        Ok((copied, same))
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for e in rd {
        let e = e.map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_checks_every_entry_before_copying() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (ResultCache::new(t.path().join("a")), ResultCache::new(t.path().join("b")));
        let (ek, pk) = ("e".repeat(64), "p".repeat(64));
        let r = ChunkResult { frames: vec!["000001".into()], dets: vec![vec![]], proxy: ProxySums::default() };
        a.write(&ek, &pk, 0, &r).unwrap();
        a.write(&ek, &pk, 1, &r).unwrap();
        // A truncated entry in the source: an error naming it, and nothing copied.
        let bad = a.chunk_path(&ek, &pk, 1);
        let text = std::fs::read(&bad).unwrap();
        std::fs::write(&bad, &text[..text.len() / 2]).unwrap();
        let e = b.merge_from(a.root()).unwrap_err().to_string();
        assert!(e.contains("chunk-00001.json") && e.contains("corrupt") && e.contains("nothing was merged"), "{e}");
        assert!(!b.has(&ek, &pk, 0));
        // Parses, but frames and detections disagree.
        let odd = ChunkResult {
            frames: vec!["000001".into(), "000002".into()],
            dets: vec![vec![]],
            proxy: ProxySums::default(),
        };
        a.write(&ek, &pk, 1, &odd).unwrap();
        let e = b.merge_from(a.root()).unwrap_err().to_string();
        assert!(e.contains("2 frames but detections for 1"), "{e}");
        a.write(&ek, &pk, 1, &r).unwrap();
        assert_eq!(b.merge_from(a.root()).unwrap(), (2, 0));
    }
}
