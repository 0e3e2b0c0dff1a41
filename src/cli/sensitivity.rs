use std::path::PathBuf;

use anyhow::Result;

use super::detect::SplitArgs;
use super::quant_common::{incomplete, load, write_json, CalibArgs, SweepArgs};
use crate::search::cache::ResultCache;
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
    /// Write the report here.
    #[arg(long, default_value = "out/sensitivity.json")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the report as JSON (`fp32_map`, `int8_map`, `layers`: name, map, drop, rank, proxies).
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
    let Some(report) = a.sweep.until_complete(|| sensitivity_sweep(&ev, &calib))? else {
        eprintln!("{}", incomplete("sensitivity sweep", &a.sweep));
        return Ok(());
    };
    let cost = ev.cost.get();
    let mut v = serde_json::to_value(&report)?;
    v["cost"] = serde_json::json!({
        "plan_runs": cost.plan_runs, "base_runs": cost.base_runs,
        "time_ratio_vs_full_passes": cost.time_ratio(),
        "step_ratio_vs_full_passes": (cost.steps_full > 0).then(|| cost.steps_run as f64 / cost.steps_full as f64),
    });
    write_json(&a.out, &v)?;
    if a.silent {
        return Ok(());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "FP32 mAP {:.2}, full INT8 ({}) {:.2}, {} frames; report: {}",
        report.fp32_map,
        report.calibration,
        report.int8_map,
        report.frames,
        a.out.display()
    );
    println!(
        "{:>4}  {:<50} {:>7} {:>7} {:>10} {:>12}",
        "rank", "layer (INT8 alone)", "mAP", "drop", "SQNR dB", "rel MSE"
    );
    for name in &report.ranking {
        let s = report.layers.iter().find(|x| &x.name == name).expect("ranked layer");
        println!(
            "{:>4}  {:<50} {:>7.2} {:>7.2} {:>10.2} {:>12.3e}",
            s.rank,
            s.name,
            s.map,
            s.drop,
            s.head_sqnr_db,
            s.layer_rel_mse.unwrap_or(f64::NAN)
        );
    }
    let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.3}"));
    println!(
        "Spearman vs AP-drop ranking: head SQNR {}, layer relative MSE {}",
        f(report.spearman_head_sqnr),
        f(report.spearman_layer_rel_mse)
    );
    if let Some(r) = cost.time_ratio() {
        println!(
            "cost: {:.2}x the time of {} full passes (steps computed: {:.1}%)",
            r,
            cost.plan_runs,
            100.0 * cost.steps_run as f64 / cost.steps_full.max(1) as f64
        );
    }
    Ok(())
}
