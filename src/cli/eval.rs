use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::kitti::eval::evaluate_result_files;
use crate::kitti::KittiDir;

#[derive(clap::Args)]
pub struct Args {
    /// KITTI result files (<id>.txt with a score) from any detector.
    #[arg(long)]
    pub preds: Option<PathBuf>,
    /// KITTI-format data directory (training/label_2, ImageSets/<split>.txt, ...).
    #[arg(long)]
    pub data: PathBuf,
    /// Split listed in ImageSets/<split>.txt.
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Only the first N frames of the split.
    #[arg(long)]
    pub frames: Option<usize>,
    /// Print one JSON object: `map`, `ap` (metric -> R40/R11 -> class -> easy/moderate/hard), `num_gt`.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let data = KittiDir::open(&a.data)?;
    let mut ids = data.split_ids(&a.split)?;
    if let Some(n) = a.frames {
        ids.truncate(n);
    }
    if ids.is_empty() {
        bail!("split '{}' of {} lists no frames", a.split, a.data.display());
    }
    let Some(preds) = &a.preds else {
        bail!("give --preds DIR (KITTI result files to evaluate)");
    };
    let table = evaluate_result_files(&data, &ids, preds)
        .with_context(|| format!("evaluating {} against {}", preds.display(), a.data.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&table.to_json())?);
    } else {
        print!("{}", table.render());
    }
    Ok(())
}
