use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::kitti::eval::{evaluate, evaluate_result_files, EvalObject, FrameEval};
use crate::kitti::label::read_labels;
use crate::model::Model;
use crate::pointpillars::detect::{write_frame_detections, ResultsManifest};

#[derive(clap::Args)]
pub struct Args {
    /// Run this model on the split and evaluate its detections.
    #[arg(long, conflicts_with = "preds")]
    pub model: Option<PathBuf>,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// With --model: also write the detections here (<id>.txt, <id>.json).
    #[arg(long, requires = "model")]
    pub out: Option<PathBuf>,
    /// Worker threads for --model (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// KITTI result files (<id>.txt with a score) from any detector.
    #[arg(long)]
    pub preds: Option<PathBuf>,
    #[command(flatten)]
    pub split: super::detect::SplitArgs,
    /// Print one JSON object: `map`, `ap` (metric -> R40/R11 -> class -> easy/moderate/hard), `num_gt`.
    #[arg(long)]
    pub json: bool,
    /// With --model: run this PrecisionPlan (INT8 / FP16 simulation per layer).
    #[arg(long, requires = "model")]
    pub plan: Option<PathBuf>,
    /// Calibration file for a plan without a "calibration" object.
    #[arg(long, requires = "plan")]
    pub calib: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let (data, ids) = a.split.open()?;
    let table = match (&a.model, &a.preds) {
        (Some(m), _) => {
            let model = Model::load(m).with_context(|| format!("cannot load {}", m.display()))?;
            let mut detector = a.config.detector(&model, a.threads)?;
            if let Some(p) = &a.plan {
                let plan = super::quant_common::compile_plan(detector.executor(), &model, p, a.calib.as_deref())?;
                detector = detector.with_plan(Some(plan));
            }
            if let Some(out) = &a.out {
                std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
                ResultsManifest::begin(out)?;
            }
            let pb = super::progress::bar(ids.len(), "detect", a.quiet);
            let mut frames = Vec::with_capacity(ids.len());
            for id in &ids {
                let f = detector.detect_frame(&data, id).with_context(|| format!("frame {id}"))?;
                if let Some(out) = &a.out {
                    write_frame_detections(out, &f)?;
                }
                let gt = read_labels(data.label_path(id))?;
                frames.push(FrameEval {
                    gt: gt.iter().map(EvalObject::from).collect(),
                    dt: f.objects.iter().map(EvalObject::from).collect(),
                });
                pb.inc(1);
            }
            pb.finish_and_clear();
            if let Some(out) = &a.out {
                super::detect::results_manifest(m, &a.split, &ids)?.finish(out)?;
            }
            evaluate(&frames)
        }
        (None, Some(preds)) => {
            check_results_manifest(preds, &a.split, &ids)?;
            evaluate_result_files(&data, &ids, preds)
        }
        .with_context(|| format!("evaluating {} against {}", preds.display(), a.split.data.display()))?,
        (None, None) => bail!("give --model MODEL (detect, then evaluate) or --preds DIR (evaluate result files)"),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&table.to_json())?);
    } else {
        print!("{}", table.render());
    }
    Ok(())
}

/// Result files written by pillarq carry a manifest: the frames scored must be the ones that run
/// wrote (a folder reused with fewer frames keeps no stale files, see `ResultsManifest::begin`),
/// and a run over another split or data set is said so.
fn check_results_manifest(preds: &std::path::Path, split: &super::detect::SplitArgs, ids: &[String]) -> Result<()> {
    let Some(m) = ResultsManifest::read(preds)? else { return Ok(()) };
    let missing: Vec<&String> = ids.iter().filter(|id| !m.frames.contains(id)).collect();
    if !missing.is_empty() {
        bail!(
            "{}: the run that wrote these results ({} on {} split {}, {} frames) did not detect {} of the {} frames \
             scored here (first: {}); rerun detect on them, or pass --frames",
            preds.display(),
            m.model,
            m.data,
            m.split,
            m.frames.len(),
            missing.len(),
            ids.len(),
            missing[0]
        );
    }
    let same_data = std::fs::canonicalize(&m.data).ok() == std::fs::canonicalize(&split.data).ok();
    if !same_data || m.split != split.split {
        tracing::warn!(
            "{}: these results were detected on {} split {}, scored here against {} split {}",
            preds.display(),
            m.data,
            m.split,
            split.data.display(),
            split.split
        );
    }
    Ok(())
}
