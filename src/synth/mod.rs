//! Synthetic KITTI-format lidar data: procedurally generated street scenes (`scene`), ray cast
//! (`raycast`) by an HDL-64E-like sensor model (`lidar`), labelled as KITTI does (`labels`), and
//! written in the KITTI object layout. Frame i depends only on (seed, i): any thread count gives
//! identical files, and an interrupted run resumes by skipping finished frames.
//! `stats` computes the dataset statistics `pillarq data-stats` prints.

mod actors;
pub mod labels;
pub mod lidar;
pub mod raycast;
pub mod scene;
pub mod stats;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kitti::{Calib, Frame, KittiDir, Object};
use lidar::{Lidar, Scan};
use scene::{Rng, Scene, SceneParams};

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    pub train: usize,
    pub val: usize,
    pub seed: u64,
    /// Worker threads (0 = all cores); never changes the output.
    pub threads: usize,
    pub scene: SceneParams,
    pub lidar: Lidar,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            train: 1500,
            val: 500,
            seed: 0,
            threads: 0,
            scene: SceneParams::default(),
            lidar: Lidar::default(),
        }
    }
}

/// One generated frame with its ground truth scene.
pub struct SynthFrame {
    pub scene: Scene,
    pub scan: Scan,
    pub labels: Vec<Object>,
    pub calib: Calib,
}

/// Generates frame `index` of dataset `seed`.
pub fn generate_frame(seed: u64, index: u64, params: &SceneParams, lidar: &Lidar) -> SynthFrame {
    let mut rng = Rng::for_frame(seed, index, 0);
    let scene = scene::generate(&mut rng, params);
    let mut noise = Rng::for_frame(seed, index, 1);
    let scan = lidar.scan(&scene, &mut noise);
    let calib = Calib::typical();
    let labels = labels::label_scene(&scene, &scan, &calib);
    SynthFrame { scene, scan, labels, calib }
}

/// KITTI frame id of index i.
pub fn frame_id(i: usize) -> String {
    format!("{i:06}")
}

/// The most frames a dataset holds: KITTI frame ids have six digits.
pub const MAX_FRAMES: usize = 1_000_000;

/// What a dataset run did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub written: usize,
    pub skipped: usize,
    pub seconds: f64,
}

/// Writes `opts.train + opts.val` frames under `out` (KITTI object layout) plus
/// `ImageSets/train.txt` (ids 0..train) and `ImageSets/val.txt` (the rest). Frames whose three
/// files exist are skipped. `progress(done, total)` is called after each frame (from any
/// worker thread).
pub fn write_dataset(out: &Path, opts: &SynthOptions, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<Summary> {
    let t0 = std::time::Instant::now();
    let total = opts.train.checked_add(opts.val).filter(|&t| t <= MAX_FRAMES).ok_or_else(|| {
        Error::Other(format!(
            "--train {} + --val {} frames: at most {MAX_FRAMES} fit KITTI's six-digit frame ids",
            opts.train, opts.val
        ))
    })?;
    let dir = KittiDir::create(out)?;
    let done = AtomicUsize::new(0);
    let skipped = AtomicUsize::new(0);
    let pool = crate::exec::thread_pool(opts.threads)?;
    pool.install(|| {
        (0..total).into_par_iter().with_min_len(1).with_max_len(1).try_for_each(|i| -> Result<()> {
            let id = frame_id(i);
            let exists =
                dir.velodyne_path(&id).is_file() && dir.label_path(&id).is_file() && dir.calib_path(&id).is_file();
            if exists {
                skipped.fetch_add(1, Ordering::Relaxed);
            } else {
                let f = generate_frame(opts.seed, i as u64, &opts.scene, &opts.lidar);
                dir.write_frame(&Frame { id, points: f.scan.points, labels: f.labels, calib: f.calib })?;
            }
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            Ok(())
        })
    })?;
    let train: Vec<String> = (0..opts.train).map(frame_id).collect();
    let val: Vec<String> = (opts.train..total).map(frame_id).collect();
    dir.write_split("train", &train)?;
    dir.write_split("val", &val)?;
    let skipped = skipped.into_inner();
    Ok(Summary { written: total - skipped, skipped, seconds: t0.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests;
