//! What a results folder holds, read leniently: a missing file is a section left out (with the
//! reason); a file that is there but unreadable is an error naming it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{ClassAp, Missing};
use crate::error::{Error, Result};
use crate::kitti::eval::{CLASSES, DIFFICULTIES};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LayerIn {
    pub name: String,
    pub index: usize,
    pub map: f64,
    pub drop: f64,
    pub rank: usize,
    pub head_sqnr_db: Option<f64>,
    pub layer_rel_mse: Option<f64>,
    pub flops: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SensitivityIn {
    pub fp32_map: f64,
    pub int8_map: f64,
    pub calibration: String,
    pub frames: usize,
    pub layers: Vec<LayerIn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CandidateIn {
    pub fp_layers: Vec<String>,
    pub map: f64,
    pub int8_mac_fraction: f64,
    pub weight_bytes: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BaselineIn {
    pub candidates: Vec<CandidateIn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CandidatesIn {
    pub fp32_map: f64,
    pub int8_map: f64,
    pub fallback: String,
    pub tolerance: Option<f64>,
    pub candidates: Vec<CandidateIn>,
    pub prefix: BaselineIn,
    pub bisect: BaselineIn,
    pub calibration: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IndexEntry {
    pub name: String,
    pub dir: String,
    pub map: Option<f64>,
    pub int8_mac_fraction: Option<f64>,
    pub fp_layers: Vec<String>,
    pub weight_bytes: u64,
    pub best: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EmittedLayerIn {
    pub name: String,
    pub op: String,
    pub precision: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EmitIn {
    pub source_model: String,
    pub source_sha256: String,
    pub layers: Vec<EmittedLayerIn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VerifyIn {
    pub tensorrt: Option<serde_json::Value>,
    pub ok: usize,
    pub mismatches: usize,
    pub not_found: usize,
    pub unknown: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BenchIn {
    pub engine: String,
    pub backend: String,
    pub device: String,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub e2e_median_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
struct BenchFile {
    results: Vec<BenchIn>,
}

/// One engine's AP as `ApTable::to_json` writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApIn {
    pub map: f64,
    pub ap: serde_json::Value,
}

impl ApIn {
    pub fn class_ap_3d_r40(&self) -> ClassAp {
        CLASSES
            .iter()
            .map(|c| {
                let per = DIFFICULTIES
                    .iter()
                    .map(|d| (d.to_string(), self.ap["3d"]["R40"][c][d].as_f64().unwrap_or(f64::NAN)))
                    .collect();
                (c.to_string(), per)
            })
            .collect()
    }
}

/// ap.json (written by `pillarq run`'s evaluate stage).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ApFile {
    pub frames: usize,
    pub split: String,
    pub engines: BTreeMap<String, ApIn>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SweepCellIn {
    pub method: String,
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SweepIn {
    pub fp32_map: f64,
    pub cells: Vec<SweepCellIn>,
}

/// `engines/index.json` of an emit (None when there is none), its names checked to be plain
/// directory names: they are joined onto paths to read, and by `pillarq run`, to remove.
pub fn read_index(engines: &Path) -> Result<Option<Vec<IndexEntry>>> {
    let path = engines.join("index.json");
    let Some(index) = read_opt::<Vec<IndexEntry>>(&path)? else { return Ok(None) };
    if let Some(bad) =
        index.iter().find(|e| e.name.is_empty() || e.name.contains(['/', '\\']) || e.name.starts_with('.'))
    {
        return Err(Error::Other(format!(
            "{}: engine name '{}' is not a directory name; rerun the emit stage",
            path.display(),
            bad.name
        )));
    }
    Ok(Some(index))
}

/// Everything found in a results folder.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub pipeline: Option<serde_json::Value>,
    pub provenance: Option<serde_json::Value>,
    pub sensitivity: Option<SensitivityIn>,
    pub candidates: Option<CandidatesIn>,
    pub index: Vec<IndexEntry>,
    /// emit.json and verify.json per engine name.
    pub emits: BTreeMap<String, EmitIn>,
    pub verify: BTreeMap<String, VerifyIn>,
    pub ap: Option<ApFile>,
    pub bench: BTreeMap<String, BenchIn>,
    pub sweep: Option<SweepIn>,
    pub missing: Vec<Missing>,
}

fn read_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Other(format!("{}: {e} (rerun the stage that writes it)", path.display())))
}

impl Inputs {
    pub fn read(dir: &Path) -> Result<Inputs> {
        if !dir.is_dir() {
            return Err(Error::Other(format!("{}: not a directory of results", dir.display())));
        }
        let mut i = Inputs {
            provenance: read_opt(&dir.join("provenance.json"))?,
            sensitivity: read_opt(&dir.join("sensitivity.json"))?,
            candidates: read_opt(&dir.join("candidates.json"))?,
            ap: read_opt(&dir.join("ap.json"))?,
            sweep: read_opt(&dir.join("calib-sweep.json"))?,
            ..Default::default()
        };
        let pipeline = dir.join("pipeline.yaml");
        if let Ok(text) = std::fs::read_to_string(&pipeline) {
            let v: serde_json::Value =
                serde_saphyr::from_str(&text).map_err(|e| Error::Other(format!("{}: {e}", pipeline.display())))?;
            i.pipeline = Some(v);
        }
        let engines = dir.join("engines");
        match read_index(&engines)? {
            Some(index) => {
                for e in &index {
                    let d = engines.join(&e.name);
                    if let Some(m) = read_opt::<EmitIn>(&d.join("emit.json"))? {
                        i.emits.insert(e.name.clone(), m);
                    }
                    if let Some(v) = read_opt::<VerifyIn>(&d.join("verify.json"))? {
                        i.verify.insert(e.name.clone(), v);
                    }
                }
                i.index = index;
            }
            None => i.missing.push(Missing {
                section: "engines".into(),
                why: "engines/index.json is missing: the emit stage did not run".into(),
            }),
        }
        if let Some(b) = read_opt::<BenchFile>(&dir.join("bench.json"))? {
            i.bench = b.results.into_iter().map(|r| (r.engine.clone(), r)).collect();
        }
        Ok(i)
    }

    /// Where the results come from: the run's provenance.json (model hash, data, machine,
    /// versions) and settings, else what the engines' emit.json and the calibration say.
    pub fn provenance(&self) -> serde_json::Value {
        let mut v = self.provenance.clone().unwrap_or_else(|| serde_json::json!({}));
        if v.get("model").is_none() {
            if let Some(m) = self.emits.values().next() {
                v["model"] = serde_json::json!({"file": m.source_model, "sha256": m.source_sha256});
            }
        }
        if let Some(c) = &self.candidates {
            v["calibration"] = c.calibration.clone();
        }
        if let Some(p) = &self.pipeline {
            v["pipeline"] = p.clone();
        }
        v
    }
}
