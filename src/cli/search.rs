use std::path::PathBuf;

use anyhow::Result;

use super::detect::SplitArgs;
use super::quant_common::{incomplete, load, write_json, CalibArgs, SweepArgs};
use crate::quant::plan::Precision;
use crate::search::cache::ResultCache;
use crate::search::greedy::{search, SearchConfig};
use crate::search::sensitivity::sensitivity_sweep;
use crate::search::EvalSet;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model with PointPillars metadata.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    #[command(flatten)]
    pub calib: CalibArgs,
    #[command(flatten)]
    pub sweep: SweepArgs,
    /// Candidates: the K most sensitive layers.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// Stop once within T mAP of FP32 (default: run all K steps; "best" uses 1.0).
    #[arg(long)]
    pub tolerance: Option<f64>,
    /// Precision of the layers moved out of INT8.
    #[arg(long, default_value = "fp16")]
    pub fallback: Precision,
    /// candidates.json: every candidate as a PrecisionPlan, plus the baselines.
    #[arg(long, default_value = "out/candidates.json")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as JSON (`fp32_map`, `int8_map`, `candidates`, `prefix`, `bisect`, `best`).
    #[arg(long)]
    pub json: bool,
    /// Set by `pillarq run`: write the files, print nothing.
    #[arg(skip)]
    pub silent: bool,
}

pub fn run(a: Args) -> Result<()> {
    let l = load(&a.model, &a.config, a.threads)?;
    let (data, ids) = a.split.open()?;
    let set = EvalSet::load(data, &a.split.split, ids)?;
    let calib = a.calib.resolve(&l, &a.split.data)?;
    let cache = ResultCache::new(&a.sweep.cache);
    let ev = a.sweep.evaluator(&l, &set, &cache, a.quiet)?;
    let Some(sens) = a.sweep.until_complete(|| sensitivity_sweep(&ev, &calib))? else {
        eprintln!("{}", incomplete("sensitivity sweep the search starts from", &a.sweep));
        return Ok(());
    };
    let cfg = SearchConfig { top_k: a.top_k, tolerance: a.tolerance, fallback: a.fallback };
    let Some(report) = a.sweep.until_complete(|| search(&ev, &calib, &sens.ranking, &cfg))? else {
        eprintln!("{}", incomplete("search", &a.sweep));
        return Ok(());
    };
    let mut v = serde_json::to_value(&report)?;
    v["sensitivity_ranking"] = serde_json::to_value(&sens.ranking[..a.top_k.min(sens.ranking.len())])?;
    v["calibration"] = serde_json::json!({"method": calib.method, "frames": calib.frames, "seed": calib.seed, "pow2_scales": calib.pow2_scales});
    write_json(&a.out, &v)?;
    if a.silent {
        return Ok(());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "FP32 mAP {:.2}, full INT8 {:.2} ({} calibration, {} frames); top-{} by sensitivity, fallback {}",
        report.fp32_map,
        report.int8_map,
        calib.label(),
        calib.frames,
        report.top_k,
        report.fallback
    );
    let row = |c: &crate::search::greedy::Candidate| {
        println!(
            "  {:>7.2} {:>7.2} {:>9.1}% {:>10.2} MB  {}",
            c.map,
            c.drop,
            100.0 * c.int8_mac_fraction,
            c.weight_bytes as f64 / 1e6,
            c.fp_layers.last().map_or("(none)", String::as_str)
        );
    };
    println!("greedy ({} evaluations):    mAP    drop  INT8 MACs      weights  + layer", report.greedy_evaluations);
    report.candidates.iter().for_each(row);
    println!("prefix baseline ({} evaluations):", report.prefix.evaluations);
    report.prefix.candidates.iter().for_each(row);
    println!("bisect baseline ({} evaluations; last = answer, leading layers in FP):", report.bisect.evaluations);
    for c in &report.bisect.candidates {
        println!(
            "  {:>7.2} {:>7.2} {:>9.1}%  first {} layers",
            c.map,
            c.drop,
            100.0 * c.int8_mac_fraction,
            c.fp_layers.len()
        );
    }
    match &report.best {
        Some(b) if b.fp_layers.is_empty() => println!(
            "best within {:.1} mAP of FP32: full INT8 (no layer in {}): mAP {:.2}, weights {:.2} MB vs FP32 {:.2} MB",
            a.tolerance.unwrap_or(1.0),
            report.fallback,
            b.map,
            b.weight_bytes as f64 / 1e6,
            report.fp32_weight_bytes as f64 / 1e6
        ),
        Some(b) => println!(
            "best within {:.1} mAP of FP32: {} layer(s) in {} {:?}: mAP {:.2}, INT8 MAC share {:.1}%, weights {:.2} MB vs FP32 {:.2} MB",
            a.tolerance.unwrap_or(1.0),
            b.fp_layers.len(),
            report.fallback,
            b.fp_layers,
            b.map,
            100.0 * b.int8_mac_fraction,
            b.weight_bytes as f64 / 1e6,
            report.fp32_weight_bytes as f64 / 1e6
        ),
        None => println!("no greedy candidate is within {:.1} mAP of FP32", a.tolerance.unwrap_or(1.0)),
    }
    println!("candidates: {}", a.out.display());
    Ok(())
}
