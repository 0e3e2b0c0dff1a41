use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::kitti::{label, velodyne, KittiDir};
use crate::synth::stats::{frame_stats, DatasetStats};

#[derive(clap::Args)]
pub struct Args {
    /// KITTI object dataset root (real or synthetic).
    pub dir: PathBuf,
    /// Which frames: train, val, or all (both lists; every scan when there are no lists).
    #[arg(long, default_value = "all", value_parser = ["train", "val", "all"])]
    pub split: String,
    /// Use only the first N frames of the split (0 = all).
    #[arg(long, default_value_t = 0)]
    pub frames: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn frame_ids(dir: &KittiDir, split: &str) -> Result<Vec<String>> {
    if split != "all" {
        return Ok(dir.split_ids(split)?);
    }
    let mut ids = BTreeSet::new();
    for s in ["train", "val"] {
        if dir.split_path(s).exists() {
            ids.extend(dir.split_ids(s)?);
        }
    }
    if ids.is_empty() {
        let vdir = dir.root().join("training/velodyne");
        for e in std::fs::read_dir(&vdir).with_context(|| format!("cannot list {}", vdir.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".bin") {
                if crate::kitti::is_frame_id(id) {
                    ids.insert(id.to_string());
                }
            }
        }
    }
    Ok(ids.into_iter().collect())
}

pub fn run(a: Args) -> Result<()> {
    let dir = KittiDir::open(&a.dir)?;
    let mut ids = frame_ids(&dir, &a.split)?;
    if a.frames > 0 {
        ids.truncate(a.frames);
    }
    if ids.is_empty() {
        bail!("{}: no frames in split '{}'", a.dir.display(), a.split);
    }
    let per_frame: Vec<_> = ids
        .par_iter()
        .map(|id| -> Result<_> {
            let points = velodyne::read_points(dir.velodyne_path(id))?;
            let lpath = dir.label_path(id);
            let classes: Vec<String> = if lpath.exists() {
                label::read_labels(&lpath)?.into_iter().map(|o| o.class).collect()
            } else {
                Vec::new()
            };
            Ok((frame_stats(&points), classes))
        })
        .collect::<Result<_>>()?;
    let mut stats = DatasetStats::default();
    for (f, classes) in per_frame {
        stats.frames.push(f);
        stats.add_labels(classes.iter().map(String::as_str));
    }
    if a.json {
        let mut j = stats.to_json();
        j["split"] = a.split.clone().into();
        j["dir"] = a.dir.display().to_string().into();
        println!("{j}");
    } else {
        println!(
            "{} ({} split, {} frames): per-frame statistics, min / median / max over frames",
            a.dir.display(),
            a.split,
            ids.len()
        );
        print!("{}", stats.table());
    }
    Ok(())
}
