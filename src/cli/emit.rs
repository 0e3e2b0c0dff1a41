use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::quant_common::{read_plan, write_json};
use crate::deploy::package::{default_name, write_engine_dir_with, EmitOptions, Manifest};
use crate::model::Model;
use crate::quant::plan::{Calibration, Precision, PrecisionPlan};

#[derive(clap::Args)]
pub struct Args {
    /// The FP32 ONNX model the plan was made for.
    #[arg(long)]
    pub model: PathBuf,
    /// One PrecisionPlan (JSON): writes one engine directory.
    #[arg(long, conflicts_with = "candidates", required_unless_present = "candidates")]
    pub plan: Option<PathBuf>,
    /// With --plan: take the activation scales from this calibration file.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// candidates.json from `pillarq search`: every candidate, plus fp32, fp16 and int8 references.
    #[arg(long)]
    pub candidates: Option<PathBuf>,
    /// Output: the engine directory (--plan; default engines/<plan name>) or the directory that
    /// receives one directory per candidate (--candidates; default engines).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Engine interface: `model` (the model's own inputs and outputs) or `cudapp` (NVIDIA
    /// CUDA-PointPillars' runtime: FP16 `voxels`, int32 `voxel_idxs` / `voxel_num`, NHWC
    /// `cls_preds` / `box_preds` / `dir_cls_preds`, built with its --inputIOFormats).
    #[arg(long, value_enum, default_value = "model")]
    pub io: Io,
    /// With --io cudapp: the model's configuration (to find its inputs and heads), for a model
    /// without metadata.
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// With --candidates: emit only these (fp32, fp16, int8, greedy-NN; `best`: the search's best).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    #[arg(long, short)]
    pub quiet: bool,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
    /// Set by `pillarq run`: write the files, print nothing.
    #[arg(skip)]
    pub silent: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    Model,
    Cudapp,
}

/// One emitted directory, as listed in `engines/index.json`.
#[derive(Serialize)]
pub struct Entry {
    pub name: String,
    pub dir: String,
    /// mAP the search measured for this plan (pillarq's simulation), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub int8_mac_fraction: Option<f64>,
    pub fp_layers: Vec<String>,
    pub weight_bytes: u64,
    pub fp32_weight_bytes: u64,
    pub best: bool,
}

fn entry(m: &Manifest, dir: &Path, map: Option<f64>, mac: Option<f64>, best: bool) -> Entry {
    Entry {
        name: m.name.clone(),
        dir: dir.display().to_string(),
        map,
        int8_mac_fraction: mac,
        fp_layers: m.layers.iter().filter(|l| l.precision.is_float()).map(|l| l.name.clone()).collect(),
        weight_bytes: m.weight_bytes.total,
        fp32_weight_bytes: m.weight_bytes.fp32_reference,
        best,
    }
}

pub fn run(a: Args) -> Result<()> {
    let model = Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let opts = EmitOptions {
        cudapp_io: match a.io {
            Io::Model => None,
            Io::Cudapp => {
                let io = a.config.resolve(&model)?.io;
                crate::deploy::cudapp::check(&io).with_context(|| format!("--io cudapp for {}", a.model.display()))?;
                Some(io)
            }
        },
    };
    let entries = match (&a.plan, &a.candidates) {
        (Some(p), _) => {
            let plan = read_plan(p, a.calib.as_deref())?;
            if let Some(c) = &plan.calibration {
                let net = crate::onnx::metadata::network_sha256(&a.model, crate::pointpillars::METADATA_KEY)?;
                super::quant_common::check_model_hash(c, &net, a.calib.as_deref().unwrap_or(p))?;
            }
            let name = default_name(p);
            let dir = a.out.clone().unwrap_or_else(|| PathBuf::from("engines").join(&name));
            let m = write_engine_dir_with(&model, &plan, p, &name, &dir, &opts)?;
            vec![entry(&m, &dir, None, None, false)]
        }
        (None, Some(c)) => {
            let root = a.out.clone().unwrap_or_else(|| PathBuf::from("engines"));
            emit_candidates(&model, c, &root, a.quiet, &opts, &a.only)?
        }
        (None, None) => bail!("give --plan PLAN or --candidates candidates.json"),
    };
    if a.silent {
        return Ok(());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!("{:<12} {:>8} {:>9} {:>10}  dir / floating-point layers", "name", "mAP", "INT8 MAC", "weights");
    for e in &entries {
        let map = e.map.map_or("-".into(), |m| format!("{m:.2}"));
        let mac = e.int8_mac_fraction.map_or("-".into(), |m| format!("{:.1}%", 100.0 * m));
        let ratio = e.fp32_weight_bytes as f64 / e.weight_bytes.max(1) as f64;
        let vs = if ratio > 1.001 { format!(" ({ratio:.2}x smaller than FP32)") } else { String::new() };
        println!(
            "{:<12} {map:>8} {mac:>9} {:>7.2} MB  {}{vs}{}",
            e.name,
            e.weight_bytes as f64 / 1e6,
            e.dir,
            if e.best { "  <- best within tolerance" } else { "" }
        );
        if !e.fp_layers.is_empty() && e.fp_layers.len() < 8 {
            println!("{:<12} {}", "", e.fp_layers.join(", "));
        }
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct CandidateIn {
    fp_layers: Vec<String>,
    map: f64,
    int8_mac_fraction: f64,
    plan: PrecisionPlan,
}

#[derive(serde::Deserialize)]
struct CandidatesIn {
    fp32_map: f64,
    int8_map: f64,
    fallback: Precision,
    candidates: Vec<CandidateIn>,
    #[serde(default)]
    best: Option<CandidateIn>,
}

fn calibration_of(c: &CandidatesIn) -> Option<Calibration> {
    c.candidates.iter().chain(c.best.iter()).find_map(|k| k.plan.calibration.clone())
}

/// One directory to write: name, plan, measured mAP, INT8 MAC share, best within tolerance.
struct Job {
    name: String,
    plan: PrecisionPlan,
    map: Option<f64>,
    mac: Option<f64>,
    best: bool,
}

fn emit_candidates(
    model: &Model,
    path: &Path,
    root: &Path,
    quiet: bool,
    opts: &EmitOptions,
    only: &[String],
) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let c: CandidatesIn = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a candidates.json written by `pillarq search`", path.display()))?;
    let cal = calibration_of(&c);
    let job = |name: &str, plan, map, mac, best| Job { name: name.into(), plan, map, mac: Some(mac), best };
    let mut jobs = vec![
        job("fp32", PrecisionPlan::uniform(Precision::Fp32), Some(c.fp32_map), 0.0, false),
        job("fp16", PrecisionPlan::uniform(Precision::Fp16), None, 0.0, false),
    ];
    match &cal {
        Some(cal) => jobs.push(job(
            "int8",
            PrecisionPlan::uniform(Precision::Int8).with_calibration(cal),
            Some(c.int8_map),
            1.0,
            // Full INT8 within the tolerance already is the search's best.
            c.best.as_ref().is_some_and(|b| b.fp_layers.is_empty()),
        )),
        None => tracing::warn!("{}: no calibration in any candidate; no int8 reference", path.display()),
    }
    let best_layers = c.best.as_ref().map(|b| b.fp_layers.clone());
    for (i, k) in c.candidates.iter().enumerate() {
        let best = best_layers.as_ref() == Some(&k.fp_layers);
        jobs.push(job(&format!("greedy-{:02}", i + 1), k.plan.clone(), Some(k.map), k.int8_mac_fraction, best));
    }
    let _ = c.fallback;
    if !only.is_empty() {
        let known: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        if let Some(bad) = only.iter().find(|o| *o != "best" && !known.contains(o)) {
            bail!("--only {bad}: {} has {} (or `best`)", path.display(), known.join(", "));
        }
        jobs.retain(|j| only.contains(&j.name) || (j.best && only.iter().any(|o| o == "best")));
    }
    let bar = super::progress::bar(jobs.len(), "emit", quiet);
    let mut out = vec![];
    for Job { name, plan, map, mac, best } in jobs {
        let dir = root.join(&name);
        let m = write_engine_dir_with(model, &plan, path, &name, &dir, opts)
            .with_context(|| format!("candidate {name}"))?;
        out.push(entry(&m, &dir, map, mac, best));
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_json(&root.join("index.json"), &out)?;
    Ok(out)
}
