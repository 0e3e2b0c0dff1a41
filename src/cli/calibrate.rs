use std::path::PathBuf;

use anyhow::{Context, Result};

use super::quant_common::{calibration_ids, load, Loaded};
use crate::kitti::KittiDir;
use crate::quant::calib::CalibMethod;
use crate::quant::calibrate::Observers;
use crate::quant::recipe::Recipe;
use crate::search::sweep::histograms_of;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model with PointPillars metadata.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// KITTI-format data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// Calibration frames come from this split.
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Number of calibration frames (the first N of the split, or N drawn with --seed).
    #[arg(long, default_value_t = 16)]
    pub frames: usize,
    /// Draw the frames at random with this seed instead of taking the first N.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Calibrators, comma-separated: max, percentile[:P] (default 99.99), entropy, mse. The
    /// default, max, is the best under the default recipe on both bundled models (docs/ptq.md).
    #[arg(long, value_delimiter = ',', default_value = "max")]
    pub method: Vec<CalibMethod>,
    /// Output directory: <model>-<method>-<frames>.json and .cache (TensorRT calibration cache).
    #[arg(long, default_value = "calib")]
    pub out: PathBuf,
    /// Round every scale up to a power of two (written as <model>-<method>-pow2-<frames>.json):
    /// summation-order-free arithmetic, and shift-only requantization hardware.
    #[arg(long)]
    pub pow2_scales: bool,
    /// PTQ recipe (docs/ptq.md): none, all (sparse,equalize,thresholds,rounding,bias), or a comma
    /// list of steps. sparse: the positions no point reaches leave the histograms, the empty
    /// pillars and what bias and padding alone make of them; sparse-zeros: every exact zero too;
    /// equalize: per-feature equalization of the pillar net's input; thresholds: each layer's
    /// threshold chosen by the head error it causes; rounding: GPTQ weight rounding; bias: bias
    /// correction. Not `none`: the recipe is part of the file names
    /// (<model>-<method>-<recipe>-<frames>.json, steps joined by '+').
    #[arg(long, default_value = crate::quant::recipe::DEFAULT_RECIPE)]
    pub recipe: crate::quant::recipe::Recipe,
    /// TensorRT version in the cache header (e.g. 100300 for 10.3, 8601 for 8.6.1).
    #[arg(long, default_value_t = 100300)]
    pub trt_version: u32,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[arg(long, short)]
    pub quiet: bool,
    /// Print a JSON summary (written files and thresholds).
    #[arg(long)]
    pub json: bool,
    /// Set by `pillarq run`: write the files, print nothing.
    #[arg(skip)]
    pub silent: bool,
}

/// The calibration file's name: <model>-<method>[-<recipe>][-pow2]-<frames>.json.
pub fn file_name(stem: &str, m: &CalibMethod, recipe: Recipe, pow2: bool, frames: usize) -> String {
    let mut tag = m.to_string().replace(':', "");
    if !recipe.is_none() {
        tag.push_str(&format!("-{}", recipe.file_tag()));
    }
    if pow2 {
        tag.push_str("-pow2");
    }
    format!("{stem}-{tag}-{frames}.json")
}

pub fn run(a: Args) -> Result<()> {
    let l: Loaded = load(&a.model, &a.config, a.threads)?;
    let data = KittiDir::open(&a.data)?;
    let ids = calibration_ids(&data, &a.split, a.frames, a.seed)?;
    let exec = l.detector.executor();
    let obs = Observers::new(exec, &l.model.layers)?.with_cache_tensors(&l.model.graph, &l.model.layers).with_recipe(
        exec,
        a.recipe,
        &l.detector.empty_scene_inputs()?,
    )?;
    let pb = super::progress::bar(ids.len(), "observe", a.quiet);
    let hist = histograms_of(&l.detector, &obs, &data, &ids, &mut || pb.inc(1))?;
    pb.finish_and_clear();
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let stem = a.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut summary = Vec::new();
    for m in &a.method {
        let mut f = super::quant_common::file_from(&l, &data, &a.split, &ids, &hist, m, a.seed)?;
        if a.pow2_scales {
            f = f.with_pow2_scales();
        }
        let f = super::quant_common::refine_file(&l, &data, &ids, &obs, &hist, m, a.recipe, f, a.quiet)?;
        if let Some(r) = f.refinement.as_ref().filter(|_| !a.json && !a.silent) {
            for (step, secs) in &r.seconds {
                println!("{m}: {step} took {secs:.1} s");
            }
        }
        let json_path = a.out.join(file_name(&stem, m, a.recipe, a.pow2_scales, ids.len()));
        let cache_path = json_path.with_extension("cache");
        f.write(&json_path)?;
        crate::files::write_atomic(&cache_path, f.trt_cache(a.trt_version).as_bytes())?;
        if !a.json && !a.silent {
            println!("{m}: {} and {}", json_path.display(), cache_path.display());
            for (layer, s) in &f.calibration.activations {
                let mut extra = String::new();
                if let Some(c) = f.refinement.as_ref().and_then(|r| r.layers.get(layer)) {
                    if let Some(alpha) = c.alpha {
                        extra.push_str(&format!("  equalized (alpha {alpha})"));
                    }
                    if let Some(fa) = c.factor.filter(|&x| x != 1.0) {
                        extra.push_str(&format!("  x{fa} of the calibrator's"));
                    }
                    if let Some(b) = c.bias_shift {
                        extra.push_str(&format!("  bias moved up to {b:.4}"));
                    }
                }
                println!("  {layer:<50} {:<40} amax {:>10.4}{extra}", s.tensor, s.amax);
            }
        }
        summary.push(serde_json::json!({
            "method": m.to_string(), "file": json_path, "cache": cache_path,
            "activations": f.calibration.activations,
        }));
    }
    if a.json && !a.silent {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"frames": ids, "calibrations": summary}))?);
    }
    Ok(())
}
