//! `pillarq run`: the whole pipeline in one resumable command.
//!
//! calibrate -> calib-sweep (off by default) -> sensitivity -> search -> emit -> evaluate ->
//! bench -> report, on any model and KITTI-format data set. Each stage writes its files under the
//! output folder and records a key of everything it read (settings, the content hashes of its
//! input files, the model file's hash, the resolved pre/post-processing configuration, and the
//! size and modification time of every data frame it uses) in `run-state.json`. A rerun skips a
//! stage whose key and output files are unchanged; the sweeps resume from the result cache
//! (`<out>/cache`) inside a stage, so a killed run loses at most the frames in flight.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::detect::SplitArgs;
use super::progress::StageLine;
use super::quant_common::{calibration_ids, load, write_json, CalibArgs, Loaded, SweepArgs};
use crate::kitti::KittiDir;
use crate::quant::calib::CalibMethod;
use crate::quant::plan::{Precision, PrecisionPlan};
use crate::quant::recipe::Recipe;
use crate::search::cache::ResultCache;
use crate::search::{file_sha256, sha256_hex, EvalSet, Shard};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, clap::ValueEnum)]
pub enum Stage {
    Calibrate,
    CalibSweep,
    Sensitivity,
    Search,
    Emit,
    Evaluate,
    Bench,
    Report,
}

const STAGES: [Stage; 8] = [
    Stage::Calibrate,
    Stage::CalibSweep,
    Stage::Sensitivity,
    Stage::Search,
    Stage::Emit,
    Stage::Evaluate,
    Stage::Bench,
    Stage::Report,
];

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Calibrate => "calibrate",
            Stage::CalibSweep => "calib-sweep",
            Stage::Sensitivity => "sensitivity",
            Stage::Search => "search",
            Stage::Emit => "emit",
            Stage::Evaluate => "evaluate",
            Stage::Bench => "bench",
            Stage::Report => "report",
        }
    }

    /// Rough share of a run's time, for the ETA of the stage line.
    fn weight(self) -> u64 {
        match self {
            Stage::Calibrate => 20,
            Stage::CalibSweep => 40,
            Stage::Sensitivity => 40,
            Stage::Search => 25,
            Stage::Emit => 3,
            Stage::Evaluate => 5,
            Stage::Bench => 5,
            Stage::Report => 1,
        }
    }
}

/// The pipeline file (`pillarq run --print-config` writes it with every default). Relative
/// paths are relative to the working directory, as on the command line.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct Pipeline {
    /// The FP32 ONNX model.
    pub model: PathBuf,
    /// Its pre/post-processing configuration (OpenPCDet YAML or pillarq's keys), for a model
    /// without pillarq metadata.
    pub config: Option<PathBuf>,
    /// KITTI-format data directory.
    pub data: Option<PathBuf>,
    /// Output folder: every stage's files, the result cache and the report.
    pub out: PathBuf,
    /// Split the plans are scored on, and its first N frames (null: all).
    pub split: String,
    pub frames: Option<usize>,
    /// Worker threads (0: all cores).
    pub threads: usize,
    pub calibration: CalibrationSettings,
    pub calib_sweep: CalibSweepSettings,
    pub sensitivity: SensitivitySettings,
    pub search: SearchSettings,
    pub emit: EmitSettings,
    pub bench: BenchSettings,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct CalibrationSettings {
    /// max, percentile[:P], entropy or mse.
    pub method: String,
    /// The first N frames of `split` (or N drawn with `seed`).
    pub frames: usize,
    pub seed: Option<u64>,
    pub split: String,
    /// PTQ recipe: none, all, or a comma list of sparse, sparse-zeros, equalize, thresholds,
    /// rounding, bias (docs/ptq.md).
    pub recipe: String,
    pub pow2_scales: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct CalibSweepSettings {
    /// Full-INT8 mAP over calibration-set sizes 1, 2, 4, ... max_n (the report's sweep plot).
    pub enabled: bool,
    pub methods: Vec<String>,
    pub max_n: usize,
    pub draws: usize,
    pub seed: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct SensitivitySettings {
    /// Frames per result-cache chunk.
    pub chunk: usize,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSettings {
    pub top_k: usize,
    /// Stop once within this many mAP of FP32 (null: all top_k steps).
    pub tolerance: Option<f64>,
    /// fp16 or fp32.
    pub fallback: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct EmitSettings {
    /// Engine directories to write: empty for all (fp32, fp16, int8, greedy-NN), else names
    /// and/or `best`.
    pub engines: Vec<String>,
    /// model or cudapp (CUDA-PointPillars' runtime interface).
    pub io: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(default, deny_unknown_fields)]
pub struct BenchSettings {
    /// cpu (pillarq's executor), trtexec (builds each engine, checks its layer precisions, then
    /// times it) or none.
    pub backend: String,
    pub runs: usize,
    pub warmup: u64,
    pub trtexec: Option<PathBuf>,
    /// Seconds before a trtexec build or benchmark is stopped.
    pub timeout: u64,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            model: super::bundled_model("pointpillars_small.onnx"),
            config: None,
            data: None,
            out: PathBuf::from("out/run"),
            split: "val".into(),
            frames: None,
            threads: 0,
            calibration: CalibrationSettings::default(),
            calib_sweep: CalibSweepSettings::default(),
            sensitivity: SensitivitySettings::default(),
            search: SearchSettings::default(),
            emit: EmitSettings::default(),
            bench: BenchSettings::default(),
        }
    }
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        CalibrationSettings {
            method: "max".into(),
            frames: 16,
            seed: None,
            split: "train".into(),
            recipe: crate::quant::recipe::DEFAULT_RECIPE.into(),
            pow2_scales: false,
        }
    }
}

impl Default for CalibSweepSettings {
    fn default() -> Self {
        CalibSweepSettings {
            enabled: false,
            methods: vec!["max".into(), "entropy".into()],
            max_n: 16,
            draws: 3,
            seed: 0,
        }
    }
}

impl Default for SensitivitySettings {
    fn default() -> Self {
        SensitivitySettings { chunk: 25 }
    }
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings { top_k: 5, tolerance: Some(1.0), fallback: "fp16".into() }
    }
}

impl Default for EmitSettings {
    fn default() -> Self {
        EmitSettings { engines: vec![], io: "model".into() }
    }
}

impl Default for BenchSettings {
    fn default() -> Self {
        BenchSettings {
            backend: "cpu".into(),
            runs: 20,
            warmup: 3,
            trtexec: None,
            timeout: crate::deploy::process::BENCH_TIMEOUT_S,
        }
    }
}

/// The pipeline's settings parsed into pillarq's types (errors name the key).
struct Parsed {
    method: CalibMethod,
    recipe: Recipe,
    sweep_methods: Vec<CalibMethod>,
    fallback: Precision,
    io: super::emit::Io,
    bench: Option<super::bench::Backend>,
}

impl Pipeline {
    fn parse(&self, file: &str) -> Result<Parsed> {
        let bad = |key: &str, e: String| anyhow::anyhow!("{file}: {key}: {e}");
        let method: CalibMethod = self.calibration.method.parse().map_err(|e| bad("calibration.method", e))?;
        let recipe: Recipe = self.calibration.recipe.parse().map_err(|e| bad("calibration.recipe", e))?;
        let sweep_methods = self
            .calib_sweep
            .methods
            .iter()
            .map(|m| m.parse::<CalibMethod>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| bad("calib_sweep.methods", e))?;
        let fallback: Precision = self.search.fallback.parse().map_err(|e| bad("search.fallback", e))?;
        if fallback == Precision::Int8 {
            return Err(bad("search.fallback", "fp16 or fp32".into()));
        }
        let io = match self.emit.io.as_str() {
            "model" => super::emit::Io::Model,
            "cudapp" => super::emit::Io::Cudapp,
            other => return Err(bad("emit.io", format!("'{other}': model or cudapp"))),
        };
        let bench = match self.bench.backend.as_str() {
            "cpu" => Some(super::bench::Backend::Cpu),
            "trtexec" => Some(super::bench::Backend::Trtexec),
            "none" => None,
            other => return Err(bad("bench.backend", format!("'{other}': cpu, trtexec or none"))),
        };
        for (key, v) in [
            ("calibration.frames", self.calibration.frames),
            ("sensitivity.chunk", self.sensitivity.chunk),
            ("search.top_k", self.search.top_k),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1".into()));
            }
        }
        if self.calib_sweep.enabled && (self.calib_sweep.draws == 0 || self.calib_sweep.max_n == 0) {
            return Err(bad("calib_sweep", "draws and max_n must be at least 1".into()));
        }
        if self.frames == Some(0) {
            return Err(bad("frames", "must be at least 1 (null: every frame of the split)".into()));
        }
        Ok(Parsed { method, recipe, sweep_methods, fallback, io, bench })
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Pipeline file (YAML): every setting of every stage. The flags below override it.
    pub pipeline: Option<PathBuf>,
    /// ONNX model (default: the bundled small model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The model's pre/post-processing configuration (OpenPCDet YAML or pillarq's keys).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// KITTI-format data directory (calibration split `train`, scored split `val` by default).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder (default out/run).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Score plans on the first N frames of the split.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Calibration frames.
    #[arg(long)]
    pub calib_frames: Option<usize>,
    /// Search the K most sensitive layers.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Bench backend: cpu, trtexec or none.
    #[arg(long)]
    pub bench: Option<String>,
    /// Start at this stage (the earlier ones must have run).
    #[arg(long, value_enum)]
    pub from: Option<Stage>,
    /// Stop after this stage.
    #[arg(long, value_enum)]
    pub until: Option<Stage>,
    /// Rerun the stages even when their inputs have not changed (the result cache still applies).
    #[arg(long)]
    pub force: bool,
    /// Print the pipeline file (every setting, defaults filled in) and exit.
    #[arg(long)]
    pub print_config: bool,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the final summary (results.json) as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Args {
    /// The pipeline file with the flags applied.
    fn pipeline(&self) -> Result<(Pipeline, String)> {
        let (mut p, source) = match &self.pipeline {
            Some(f) => {
                let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
                let p: Pipeline = serde_saphyr::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{}: {e}\n(`pillarq run --print-config` shows every key)", f.display())
                })?;
                (p, f.display().to_string())
            }
            None => (Pipeline::default(), "the command line".to_string()),
        };
        if let Some(m) = &self.model {
            p.model = m.clone();
        }
        if let Some(c) = &self.config {
            p.config = Some(c.clone());
        }
        if let Some(d) = &self.data {
            p.data = Some(d.clone());
        }
        if let Some(o) = &self.out {
            p.out = o.clone();
        }
        if let Some(n) = self.frames {
            p.frames = Some(n);
        }
        if let Some(n) = self.calib_frames {
            p.calibration.frames = n;
        }
        if let Some(k) = self.top_k {
            p.search.top_k = k;
        }
        if let Some(b) = &self.bench {
            p.bench.backend = b.clone();
        }
        if let Some(t) = self.threads {
            p.threads = t;
        }
        Ok((p, source))
    }
}

/// What a finished stage read (its key) and wrote (paths relative to the output folder, with
/// their SHA-256).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct Record {
    key: String,
    outputs: BTreeMap<String, String>,
    seconds: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct State {
    stages: BTreeMap<String, Record>,
}

const STATE: &str = "run-state.json";

impl State {
    fn read(dir: &Path) -> State {
        std::fs::read_to_string(dir.join(STATE)).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }
}

fn sha_of(path: &Path) -> Option<String> {
    file_sha256(path).ok()
}

/// Size and modification time of every file a frame is read from: an edited or replaced frame
/// changes the key without hashing the whole data set on every run.
fn data_fingerprint(data: &KittiDir, split: &str, ids: &[String]) -> String {
    let mut s =
        format!("{}|{split}", std::fs::canonicalize(data.root()).unwrap_or_else(|_| data.root().into()).display());
    for id in ids {
        s.push('|');
        s.push_str(id);
        for p in [data.velodyne_path(id), data.label_path(id), data.calib_path(id)] {
            match std::fs::metadata(&p) {
                Ok(m) => {
                    let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                    s.push_str(&format!(":{}@{}", m.len(), t.map_or(0, |d| d.as_nanos())));
                }
                Err(_) => s.push_str(":-"),
            }
        }
    }
    sha256_hex(s.as_bytes())
}

/// Everything the stages share.
struct Ctx {
    p: Pipeline,
    parsed: Parsed,
    dir: PathBuf,
    data_dir: PathBuf,
    loaded: Loaded,
    /// Key parts every stage includes: pillarq's version and numerics revision, the model file's
    /// hash, the resolved configuration.
    base: String,
    eval_fp: String,
    calib_fp: String,
    calib_ids: Vec<String>,
    calib_file: PathBuf,
}

impl Ctx {
    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.dir).unwrap_or(p).display().to_string()
    }

    fn split_args(&self) -> SplitArgs {
        SplitArgs { data: self.data_dir.clone(), split: self.p.split.clone(), frames: self.p.frames }
    }

    fn config_args(&self) -> super::model_config::ConfigArgs {
        super::model_config::ConfigArgs { config: self.p.config.clone(), ..Default::default() }
    }

    fn sweep_args(&self) -> SweepArgs {
        SweepArgs { cache: self.dir.join("cache"), chunk: self.p.sensitivity.chunk, shard: Shard::ALL, wait: 0 }
    }

    fn calib_args(&self) -> CalibArgs {
        CalibArgs {
            calib: Some(self.calib_file.clone()),
            method: self.parsed.method,
            calib_frames: self.p.calibration.frames,
            calib_seed: self.p.calibration.seed,
            calib_split: self.p.calibration.split.clone(),
            pow2_scales: false,
            allow_other_model: false,
            recipe: None,
        }
    }

    fn hash(&self, rel: &str) -> String {
        sha_of(&self.dir.join(rel)).unwrap_or_else(|| "-".into())
    }

    fn engines(&self) -> Result<Vec<String>> {
        let engines = self.dir.join("engines");
        let index = crate::report::read_index(&engines)?
            .ok_or_else(|| anyhow::anyhow!("{}: no index.json; run the emit stage", engines.display()))?;
        Ok(index.into_iter().map(|e| e.name).collect())
    }

    /// The calibration file's content that the later stages use: its `calibration` (scales and
    /// refinements), not the timings of its refinement report.
    fn calib_hash(&self) -> String {
        std::fs::read_to_string(&self.calib_file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|v| sha256_hex(v["calibration"].to_string().as_bytes()))
            .unwrap_or_else(|| "-".into())
    }

    /// The stage's key: what it reads.
    fn key(&self, s: Stage) -> Result<String> {
        let p = &self.p;
        let k = match s {
            Stage::Calibrate => format!("{:?}|{}", p.calibration, self.calib_fp),
            Stage::CalibSweep => {
                let data = KittiDir::open(&self.data_dir)?;
                let pool = data.split_ids(&p.calibration.split)?;
                format!(
                    "{:?}|{}|{}|{}|{}",
                    p.calib_sweep,
                    p.calibration.recipe,
                    data_fingerprint(&data, &p.calibration.split, &pool),
                    self.eval_fp,
                    p.sensitivity.chunk
                )
            }
            Stage::Sensitivity => {
                format!("{}|{}|{}", self.eval_fp, self.calib_hash(), p.sensitivity.chunk)
            }
            // The search recomputes the sensitivity ranking from the result cache, not the file.
            Stage::Search => format!(
                "{}|{}|{:?}|{}",
                self.key(Stage::Sensitivity)?,
                p.search.top_k,
                p.search.tolerance,
                p.search.fallback
            ),
            Stage::Emit => format!("{}|{:?}|{}", self.hash("candidates.json"), p.emit.engines, p.emit.io),
            Stage::Evaluate | Stage::Bench => {
                let mut k = format!("{}|{}", self.eval_fp, self.hash("engines/index.json"));
                for e in self.engines().unwrap_or_default() {
                    k.push_str(&format!("|{e}:{}", self.hash(&format!("engines/{e}/emit.json"))));
                }
                if s == Stage::Evaluate {
                    k.push_str(&format!("|{}", p.sensitivity.chunk));
                } else {
                    k.push_str(&format!("|{:?}", p.bench));
                }
                k
            }
            Stage::Report => {
                let mut k = String::new();
                for f in [
                    "pipeline.yaml",
                    "provenance.json",
                    "sensitivity.json",
                    "candidates.json",
                    "engines/index.json",
                    "ap.json",
                    "bench.json",
                    "calib-sweep.json",
                ] {
                    k.push_str(&format!("|{f}:{}", self.hash(f)));
                }
                for e in self.engines().unwrap_or_default() {
                    for f in ["emit.json", "verify.json"] {
                        k.push_str(&format!("|{e}/{f}:{}", self.hash(&format!("engines/{e}/{f}"))));
                    }
                }
                k
            }
        };
        Ok(sha256_hex(format!("{}|{}|{k}", self.base, s.name()).as_bytes()))
    }

    /// The files a stage writes (relative to the output folder).
    fn outputs(&self, s: Stage) -> Vec<String> {
        match s {
            Stage::Calibrate => {
                let json = self.rel(&self.calib_file);
                vec![json.clone(), json.trim_end_matches(".json").to_string() + ".cache"]
            }
            Stage::CalibSweep => vec!["calib-sweep.json".into()],
            Stage::Sensitivity => vec!["sensitivity.json".into()],
            Stage::Search => vec!["candidates.json".into()],
            Stage::Emit => {
                let mut v = vec!["engines/index.json".to_string()];
                for e in self.engines().unwrap_or_default() {
                    v.push(format!("engines/{e}/emit.json"));
                    v.push(format!("engines/{e}/plan.json"));
                }
                v
            }
            Stage::Evaluate => vec!["ap.json".into()],
            Stage::Bench => vec!["bench.json".into()],
            Stage::Report => vec!["report.html".into(), "report.md".into(), "results.json".into()],
        }
    }

    /// Every output file is there with the hash recorded (and, for emit, every file each
    /// emit.json lists, at its size).
    fn intact(&self, s: Stage, r: &Record) -> bool {
        let recorded = r.outputs.iter().all(|(f, h)| sha_of(&self.dir.join(f)).as_deref() == Some(h.as_str()));
        if !recorded || r.outputs.is_empty() {
            return false;
        }
        if s == Stage::Emit {
            for e in self.engines().unwrap_or_default() {
                let d = self.dir.join("engines").join(&e);
                let Ok(text) = std::fs::read_to_string(d.join("emit.json")) else { return false };
                let Ok(m) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
                let files = m["files"].as_object().cloned().unwrap_or_default();
                for (name, info) in files {
                    let len = std::fs::metadata(d.join(&name)).map(|m| m.len()).ok();
                    if len != info["bytes"].as_u64() {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// The machine the run is on (provenance).
fn machine() -> serde_json::Value {
    let cpu = crate::deploy::bench::cpu_name();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l["PRETTY_NAME=".len()..].trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    serde_json::json!({"cpu": cpu, "cores": cores, "os": os, "arch": std::env::consts::ARCH})
}

/// Writes `bytes` to `path` unless it already holds them (keeps its hash and time stable).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() != Some(bytes) {
        crate::files::write_atomic(path, bytes)?;
    }
    Ok(())
}

pub fn print_config(p: &Pipeline) -> Result<String> {
    let yaml = serde_saphyr::to_string(p).map_err(|e| anyhow::anyhow!("pipeline as YAML: {e}"))?;
    Ok(format!(
        "# pillarq run pipeline: `pillarq run THIS.yaml` (flags override it). Stages: calibrate ->\n\
         # calib-sweep (when enabled) -> sensitivity -> search -> emit -> evaluate -> bench -> report.\n\
         # Relative paths are relative to the working directory. README.md, \"pillarq run\", has every key.\n{yaml}"
    ))
}

pub fn run(a: Args) -> Result<()> {
    let (p, source) = a.pipeline()?;
    let parsed = p.parse(&source)?;
    if a.print_config {
        print!("{}", print_config(&p)?);
        return Ok(());
    }
    let Some(data_dir) = p.data.clone() else {
        bail!(
            "no data: give --data DIR (KITTI layout: training/velodyne, label_2, calib, ImageSets/<split>.txt) or \
             `data:` in the pipeline file; `pillarq synth --out data/synth` makes a synthetic one"
        );
    };
    let dir = p.out.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let t_load = Instant::now();
    let cfg = super::model_config::ConfigArgs { config: p.config.clone(), ..Default::default() };
    let loaded = load(&p.model, &cfg, p.threads)?;
    let data = KittiDir::open(&data_dir)?;
    let (_, eval_ids) = SplitArgs { data: data_dir.clone(), split: p.split.clone(), frames: p.frames }.open()?;
    let calib_ids = calibration_ids(&data, &p.calibration.split, p.calibration.frames, p.calibration.seed)?;
    let model_sha = file_sha256(&p.model)?;
    let config_json = crate::pointpillars::config::to_metadata_json(&loaded.detector.cfg);
    let stem = p.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let calib_file = dir.join("calib").join(super::calibrate::file_name(
        &stem,
        &parsed.method,
        parsed.recipe,
        p.calibration.pow2_scales,
        calib_ids.len(),
    ));
    let ctx = Ctx {
        base: format!(
            "pillarq {} numerics {}|{model_sha}|{config_json}",
            env!("CARGO_PKG_VERSION"),
            crate::numerics::REVISION
        ),
        eval_fp: data_fingerprint(&data, &p.split, &eval_ids),
        calib_fp: data_fingerprint(&data, &p.calibration.split, &calib_ids),
        calib_ids,
        calib_file,
        data_dir: data_dir.clone(),
        dir: dir.clone(),
        loaded,
        parsed,
        p: p.clone(),
    };
    tracing::info!("loaded and keyed in {:.1} s", t_load.elapsed().as_secs_f64());

    // The run's settings and provenance, beside its results.
    write_if_changed(&dir.join("pipeline.yaml"), print_config(&p)?.as_bytes())?;
    let provenance = serde_json::json!({
        "model": {"file": p.model.display().to_string(), "sha256": model_sha, "network_sha256": ctx.loaded.hash},
        "config": p.config.as_ref().map(|c| c.display().to_string()),
        "config_resolved_sha256": sha256_hex(config_json.as_bytes()),
        "data": {"root": data_dir.display().to_string(), "split": p.split, "frames": eval_ids.len(),
                 "calibration_split": p.calibration.split, "calibration_frames": ctx.calib_ids},
        "pillarq_version": env!("CARGO_PKG_VERSION"),
        "machine": machine(),
    });
    write_if_changed(&dir.join("provenance.json"), &serde_json::to_vec_pretty(&provenance)?)?;

    let enabled = |s: Stage| match s {
        Stage::CalibSweep => p.calib_sweep.enabled,
        Stage::Bench => ctx.parsed.bench.is_some(),
        _ => true,
    };
    let from = a.from.unwrap_or(Stage::Calibrate);
    let until = a.until.unwrap_or(Stage::Report);
    if from > until {
        bail!("--from {} comes after --until {}: nothing to run", from.name(), until.name());
    }
    let plan: Vec<Stage> = STAGES.iter().copied().filter(|&s| s >= from && s <= until && enabled(s)).collect();
    let mut state = State::read(&dir);
    for s in STAGES.iter().copied().filter(|&s| s < from && enabled(s)) {
        match state.stages.get(s.name()) {
            None => bail!(
                "--from {}: stage {} has not run in {}; run without --from first",
                from.name(),
                s.name(),
                dir.display()
            ),
            Some(r) if r.key != ctx.key(s)? || !ctx.intact(s, r) => bail!(
                "--from {}: stage {}'s inputs or files changed since it ran in {}; run without --from (the \
                 unchanged stages are reused)",
                from.name(),
                s.name(),
                dir.display()
            ),
            Some(_) => {}
        }
    }
    // A stage switched off leaves no earlier result behind for the report to show as current.
    for (s, file) in [(Stage::CalibSweep, "calib-sweep.json"), (Stage::Bench, "bench.json")] {
        let path = dir.join(file);
        if !enabled(s) && path.exists() {
            let stale = dir.join(format!("{file}.stale"));
            std::fs::rename(&path, &stale).with_context(|| format!("cannot move {}", path.display()))?;
            state.stages.remove(s.name());
            if !a.quiet {
                eprintln!("{} is off: moved the earlier {file} to {}", s.name(), stale.display());
            }
        }
    }
    let mut line = StageLine::start(plan.iter().map(|s| s.weight()).collect(), a.quiet);
    let mut statuses = Vec::new();
    for (k, &s) in plan.iter().enumerate() {
        let key = ctx.key(s)?;
        if !a.force && state.stages.get(s.name()).is_some_and(|r| r.key == key && ctx.intact(s, r)) {
            line.stage(k, s.name(), "unchanged");
            line.println(&format!("{:<12} unchanged, reused ({})", s.name(), ctx.outputs(s)[0]));
            statuses.push(serde_json::json!({"stage": s.name(), "status": "reused"}));
            continue;
        }
        line.stage(k, s.name(), "");
        let t = Instant::now();
        run_stage(&ctx, s, a.quiet || a.json).with_context(|| format!("stage {}", s.name()))?;
        let secs = t.elapsed().as_secs_f64();
        if let Some(f) = ctx.outputs(s).iter().find(|f| !dir.join(f).exists()) {
            bail!("stage {} finished without writing {}", s.name(), dir.join(f).display());
        }
        let outputs = ctx.outputs(s).into_iter().map(|f| {
            let h = ctx.hash(&f);
            (f, h)
        });
        // The key is what the stage read, taken before it ran.
        let record = Record { key, outputs: outputs.collect(), seconds: secs };
        line.println(&format!("{:<12} ran in {secs:.1} s -> {}", s.name(), ctx.outputs(s)[0]));
        statuses.push(serde_json::json!({"stage": s.name(), "status": "ran", "seconds": secs}));
        state.stages.insert(s.name().to_string(), record);
        write_json(&dir.join(STATE), &state)?;
    }
    drop(line); // the stage line ends before the summary prints
    let results = dir.join("results.json");
    if !plan.contains(&Stage::Report) || !results.exists() {
        if a.json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"stages": statuses}))?);
        }
        return Ok(());
    }
    let text = std::fs::read_to_string(&results).with_context(|| format!("cannot read {}", results.display()))?;
    if a.json {
        println!("{text}");
        return Ok(());
    }
    let r: serde_json::Value = serde_json::from_str(&text)?;
    print!("{}", summary(&r, &dir));
    Ok(())
}

/// The closing summary, from results.json (so a rerun that computes nothing prints the same).
fn summary(r: &serde_json::Value, dir: &Path) -> String {
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".into(), |x| format!("{x:.2}"));
    let mut out = format!(
        "FP32 mAP {}, full INT8 {} ({} frames)\n",
        f(&r["fp32_map"]),
        f(&r["int8_map"]),
        r["frames"].as_u64().map_or("?".into(), |n| n.to_string())
    );
    out.push_str(&format!(
        "{:<12} {:>7} {:>9} {:>10} {:>11}  floating-point layers\n",
        "engine", "mAP", "INT8 MACs", "weights", "latency"
    ));
    for e in r["engines"].as_array().into_iter().flatten() {
        let lat = e["latency"]["median_ms"].as_f64().map_or("-".into(), |m| format!("{m:.2} ms"));
        let fp: Vec<String> = e["fp_layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str())
            .map(crate::report::short)
            .collect();
        out.push_str(&format!(
            "{:<12} {:>7} {:>8.1}% {:>7.2} MB {:>11}  {}{}\n",
            e["name"].as_str().unwrap_or("?"),
            f(&e["map"]),
            100.0 * e["int8_mac_fraction"].as_f64().unwrap_or(0.0),
            e["weight_bytes"].as_f64().unwrap_or(0.0) / 1e6,
            lat,
            if fp.is_empty() {
                "-".to_string()
            } else if e["int8_mac_fraction"].as_f64() == Some(0.0) {
                "every layer".to_string()
            } else {
                fp.join(", ")
            },
            if e["best"].as_bool() == Some(true) { "  <- best" } else { "" }
        ));
    }
    out.push_str(&format!("report: {}\n", dir.join("report.html").display()));
    out
}

fn run_stage(c: &Ctx, s: Stage, quiet: bool) -> Result<()> {
    let p = &c.p;
    match s {
        Stage::Calibrate => super::calibrate::run(super::calibrate::Args {
            config: c.config_args(),
            model: p.model.clone(),
            data: c.data_dir.clone(),
            split: p.calibration.split.clone(),
            frames: p.calibration.frames,
            seed: p.calibration.seed,
            method: vec![c.parsed.method],
            out: c.dir.join("calib"),
            pow2_scales: p.calibration.pow2_scales,
            recipe: c.parsed.recipe,
            trt_version: 100300,
            threads: p.threads,
            quiet,
            json: false,
            silent: true,
        }),
        Stage::CalibSweep => super::calib_sweep::run(super::calib_sweep::Args {
            model: p.model.clone(),
            config: c.config_args(),
            split: c.split_args(),
            calib_split: p.calibration.split.clone(),
            methods: c.parsed.sweep_methods.clone(),
            recipe: c.parsed.recipe,
            max_n: p.calib_sweep.max_n,
            draws: p.calib_sweep.draws,
            seed: p.calib_sweep.seed,
            all_frames: false,
            sweep: c.sweep_args(),
            out: c.dir.join("calib-sweep.json"),
            threads: p.threads,
            quiet,
            json: false,
            silent: true,
        }),
        Stage::Sensitivity => super::sensitivity::run(super::sensitivity::Args {
            model: p.model.clone(),
            config: c.config_args(),
            split: c.split_args(),
            calib: c.calib_args(),
            sweep: c.sweep_args(),
            out: c.dir.join("sensitivity.json"),
            threads: p.threads,
            quiet,
            json: false,
            silent: true,
        }),
        Stage::Search => super::search::run(super::search::Args {
            model: p.model.clone(),
            config: c.config_args(),
            split: c.split_args(),
            calib: c.calib_args(),
            sweep: c.sweep_args(),
            top_k: p.search.top_k,
            tolerance: p.search.tolerance,
            fallback: c.parsed.fallback,
            out: c.dir.join("candidates.json"),
            threads: p.threads,
            quiet,
            json: false,
            silent: true,
        }),
        Stage::Emit => {
            let engines = c.dir.join("engines");
            // The earlier emit's directories go: their build results (verify.json, layers.json,
            // engines) and plans no longer belong to what this emit writes.
            if engines.join("index.json").exists() {
                for e in c.engines()? {
                    let d = engines.join(&e);
                    if d.is_dir() {
                        std::fs::remove_dir_all(&d).with_context(|| format!("cannot remove {}", d.display()))?;
                    }
                }
            }
            super::emit::run(super::emit::Args {
                model: p.model.clone(),
                plan: None,
                calib: None,
                candidates: Some(c.dir.join("candidates.json")),
                out: Some(engines),
                io: c.parsed.io,
                config: c.config_args(),
                only: p.emit.engines.clone(),
                quiet,
                json: false,
                silent: true,
            })
        }
        Stage::Evaluate => evaluate(c, quiet),
        Stage::Bench => {
            let Some(backend) = c.parsed.bench else { return Ok(()) };
            let dirs: Vec<PathBuf> = c.engines()?.iter().map(|e| c.dir.join("engines").join(e)).collect();
            if backend == super::bench::Backend::Trtexec {
                super::build::run(super::build::Args::for_run(dirs.clone(), p.bench.trtexec.clone(), p.bench.timeout))?;
            }
            super::bench::run(super::bench::Args {
                dirs,
                backend,
                runs: p.bench.runs,
                warmup: p.bench.warmup,
                data: Some(c.data_dir.clone()),
                split: p.split.clone(),
                model: Some(p.model.clone()),
                config: p.config.clone(),
                trtexec: p.bench.trtexec.clone(),
                timeout: p.bench.timeout,
                threads: p.threads,
                out: c.dir.join("bench.json"),
                json: false,
                silent: true,
            })
        }
        Stage::Report => crate::report::write(&c.dir).map(|_| ()).map_err(Into::into),
    }
}

/// Per-class AP of every emitted engine's plan (plan.json as emitted), on the scored frames:
/// the result cache already holds the search's plans, so mostly fp16 is computed here.
fn evaluate(c: &Ctx, quiet: bool) -> Result<()> {
    let split = c.split_args();
    let (data, ids) = split.open()?;
    let set = EvalSet::load(data, &split.split, ids)?;
    let cache = ResultCache::new(c.dir.join("cache"));
    let sweep = c.sweep_args();
    let ev = sweep.evaluator(&c.loaded, &set, &cache, quiet)?;
    let names = c.engines()?;
    let plans = names
        .iter()
        .map(|n| {
            let path = c.dir.join("engines").join(n).join("plan.json");
            PrecisionPlan::read(&path).with_context(|| format!("engine {n}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let results = ev.evaluate(&plans, "evaluate")?;
    let mut engines = serde_json::Map::new();
    for (n, r) in names.iter().zip(results) {
        let r = r.ok_or_else(|| anyhow::anyhow!("engine {n}: not every chunk was scored"))?;
        engines.insert(n.clone(), r.table.to_json());
    }
    write_json(
        &c.dir.join("ap.json"),
        &serde_json::json!({"frames": set.ids.len(), "split": set.split, "data": c.data_dir.display().to_string(), "engines": engines}),
    )
}
