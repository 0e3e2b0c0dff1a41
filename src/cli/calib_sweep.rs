use std::path::PathBuf;

use anyhow::{bail, Result};

use super::detect::SplitArgs;
use super::quant_common::{incomplete, load, write_json, SweepArgs};
use crate::kitti::KittiDir;
use crate::quant::calib::CalibMethod;
use crate::search::cache::ResultCache;
use crate::search::sweep::{calibration_sweep, SweepConfig};
use crate::search::EvalSet;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model with PointPillars metadata.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// Frames scored (full-INT8 mAP): --data, --split (default val), --frames.
    #[command(flatten)]
    pub split: SplitArgs,
    /// Calibration frames are drawn from this split of --data.
    #[arg(long, default_value = "train")]
    pub calib_split: String,
    /// Calibrators, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "max,percentile,entropy,mse")]
    pub methods: Vec<CalibMethod>,
    /// PTQ recipe of every calibration: none, all, or a comma list of steps (sparse,
    /// sparse-zeros, equalize, thresholds, bias; see `pillarq calibrate --help`). Refinement
    /// steps run on each draw's own frames.
    #[arg(long, default_value = crate::quant::recipe::DEFAULT_RECIPE)]
    pub recipe: crate::quant::recipe::Recipe,
    /// Largest drawn set size: N runs over 1, 2, 4, ... up to this.
    #[arg(long, default_value_t = 64)]
    pub max_n: usize,
    /// Seeded random draws per size.
    #[arg(long, default_value_t = 3)]
    pub draws: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also calibrate on every frame of the calibration split (one draw).
    #[arg(long)]
    pub all_frames: bool,
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[arg(long, default_value = "out/calib-sweep.json")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, short)]
    pub quiet: bool,
    #[arg(long)]
    pub json: bool,
    /// Set by `pillarq run`: write the files, print nothing.
    #[arg(skip)]
    pub silent: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.draws == 0 || a.max_n == 0 {
        bail!("--draws and --max-n must be at least 1");
    }
    let l = load(&a.model, &a.config, a.threads)?;
    let (data, ids) = a.split.open()?;
    let calib_data = KittiDir::open(&a.split.data)?;
    let pool = calib_data.split_ids(&a.calib_split)?;
    if pool.is_empty() {
        bail!("calibration split '{}' lists no frames", a.calib_split);
    }
    let set = EvalSet::load(data, &a.split.split, ids)?;
    let cache = ResultCache::new(&a.sweep.cache);
    let ev = a.sweep.evaluator(&l, &set, &cache, a.quiet)?;
    let sizes: Vec<usize> =
        std::iter::successors(Some(1usize), |n| Some(n * 2)).take_while(|&n| n <= a.max_n).collect();
    let cfg = SweepConfig {
        methods: a.methods.clone(),
        sizes,
        draws: a.draws,
        seed: a.seed,
        all_frames: a.all_frames,
        recipe: a.recipe,
    };
    let Some(report) =
        a.sweep.until_complete(|| calibration_sweep(&ev, &calib_data, &pool, &cfg, super::progress::bars(a.quiet)))?
    else {
        eprintln!("{}", incomplete("calibration sweep", &a.sweep));
        return Ok(());
    };
    write_json(&a.out, &report)?;
    if a.silent {
        return Ok(());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "full-INT8 mAP by calibrator and calibration-set size ({} draws, pool {} frames of '{}', scored on {} frames; FP32 {:.2})",
        report.draws, report.pool_frames, a.calib_split, report.eval_frames, report.fp32_map
    );
    println!("{:<18} {:>6} {:>8} {:>7} {:>8} {:>8}", "method", "N", "mean", "std", "min", "max");
    for c in &report.cells {
        println!("{:<18} {:>6} {:>8.2} {:>7.2} {:>8.2} {:>8.2}", c.method, c.n, c.mean, c.std, c.min, c.max);
    }
    for f in &report.findings {
        println!(
            "{}: best small set N={} mean {:.2} vs N={} mean {:.2} -> {}",
            f.method,
            f.best_small_n,
            f.best_small_mean,
            f.largest_n,
            f.largest_mean,
            if f.small_sets_better {
                "small sets better (the paper's finding holds)"
            } else {
                "small sets not better (does not hold)"
            }
        );
    }
    println!("report: {}", a.out.display());
    Ok(())
}
