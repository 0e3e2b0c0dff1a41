use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::kitti::KittiDir;
use crate::model::Model;
use crate::pointpillars::detect::{write_frame_detections, ResultsManifest};

/// Which frames of which KITTI-format data set (shared by detect and eval).
#[derive(clap::Args, Clone)]
pub struct SplitArgs {
    /// KITTI-format data directory (training/{velodyne,label_2,calib}, ImageSets/<split>.txt).
    #[arg(long)]
    pub data: PathBuf,
    /// Split listed in ImageSets/<split>.txt.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Only the first N frames of the split.
    #[arg(long)]
    pub frames: Option<usize>,
}

impl SplitArgs {
    pub fn open(&self) -> Result<(KittiDir, Vec<String>)> {
        let data = KittiDir::open(&self.data)?;
        let mut ids = data.split_ids(&self.split)?;
        if let Some(n) = self.frames {
            ids.truncate(n);
        }
        if ids.is_empty() {
            bail!("split '{}' of {} lists no frames", self.split, self.data.display());
        }
        Ok((data, ids))
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model with PointPillars metadata (e.g. onnx/pointpillars_small.onnx).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    #[command(flatten)]
    pub split: SplitArgs,
    /// Output folder: <id>.txt (KITTI results) and <id>.json (full-precision lidar boxes).
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(a: Args) -> Result<()> {
    let model = Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let detector = a.config.detector(&model, a.threads)?;
    let (data, ids) = a.split.open()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    ResultsManifest::begin(&a.out)?;
    let pb = super::progress::bar(ids.len(), "detect", a.quiet);
    let mut boxes = 0;
    for id in &ids {
        let f = detector.detect_frame(&data, id).with_context(|| format!("frame {id}"))?;
        boxes += f.objects.len();
        write_frame_detections(&a.out, &f)?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    results_manifest(&a.model, &a.split, &ids)?.finish(&a.out)?;
    println!("{} frames, {boxes} detections -> {}", ids.len(), a.out.display());
    Ok(())
}

/// The manifest of a run of `model` over `ids` of a split.
pub fn results_manifest(model: &std::path::Path, split: &SplitArgs, ids: &[String]) -> Result<ResultsManifest> {
    Ok(ResultsManifest {
        model: model.display().to_string(),
        model_sha256: crate::search::file_sha256(model)?,
        data: split.data.display().to_string(),
        split: split.split.clone(),
        frames: ids.to_vec(),
    })
}
