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
    /// Regenerate every frame, whatever the folder holds.
    pub force: bool,
}

/// What a synthetic data set was generated with (`<root>/synth.json`): a rerun into the same
/// folder must use the same settings, or frames of two data sets would mix.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthRecord {
    pub seed: u64,
    /// SHA-256 of the scene and sensor parameters.
    pub settings: String,
}

/// The record file of a synthetic data set.
pub const RECORD: &str = "synth.json";

impl SynthOptions {
    fn record(&self) -> SynthRecord {
        let settings = crate::files::sha256_hex(format!("{:?}|{:?}", self.scene, self.lidar).as_bytes());
        SynthRecord { seed: self.seed, settings }
    }
}

/// Whether frame `id`'s three files are all there and whole (a scan cut short by a kill, a
/// label or calib file that does not parse are redone).
fn frame_complete(dir: &KittiDir, id: &str) -> bool {
    let scan_ok = std::fs::metadata(dir.velodyne_path(id)).is_ok_and(|m| m.is_file() && m.len() % 16 == 0);
    scan_ok
        && crate::kitti::label::read_labels(dir.label_path(id)).is_ok()
        && crate::kitti::calib::read_calib(dir.calib_path(id)).is_ok()
}

/// Checks that `out` holds (if anything) frames of these settings; writes the record.
fn check_record(out: &Path, dir: &KittiDir, opts: &SynthOptions, total: usize) -> Result<()> {
    let path = out.join(RECORD);
    let want = opts.record();
    let mismatch = |what: String| {
        Error::Other(format!(
            "{}: {what}; the frames there belong to another data set. Use another --out, or --force to \
             regenerate every frame with seed {}",
            out.display(),
            opts.seed
        ))
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let have: SynthRecord = serde_json::from_slice(&bytes).map_err(|e| Error::Plan {
                file: path.clone(),
                msg: format!("not a pillarq synth record ({e}); delete it and rerun with --force"),
            })?;
            if !opts.force && have != want {
                return Err(mismatch(if have.seed != want.seed {
                    format!("generated with seed {}, asked for seed {}", have.seed, want.seed)
                } else {
                    "generated with other scene or sensor settings (another pillarq version?)".into()
                }));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A folder from before the record: its first whole frame must be what these settings make.
            let first = (0..total).map(frame_id).find(|id| frame_complete(dir, id));
            if let (Some(id), false) = (first, opts.force) {
                let i: u64 = id.parse().unwrap_or(0);
                let f = generate_frame(opts.seed, i, &opts.scene, &opts.lidar);
                let mine: Vec<u8> = f.scan.points.iter().flatten().flat_map(|v| v.to_le_bytes()).collect();
                let theirs = std::fs::read(dir.velodyne_path(&id))
                    .map_err(|source| Error::Io { path: dir.velodyne_path(&id), source })?;
                if mine != theirs {
                    return Err(mismatch(format!("frame {id} is not frame {id} of seed {}", opts.seed)));
                }
            }
        }
        Err(source) => return Err(Error::Io { path, source }),
    }
    let bytes = serde_json::to_vec_pretty(&want).map_err(|e| Error::Other(e.to_string()))?;
    crate::files::write_atomic(&path, &bytes)
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
            force: false,
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
/// `ImageSets/train.txt` (ids 0..train) and `ImageSets/val.txt` (the rest), and the record of its
/// settings (`synth.json`; a folder of other settings is refused unless `force`). Whole frames
/// already there are skipped; partial ones are redone. `progress(done, total)` is called after each frame (from any
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
    check_record(out, &dir, opts, total)?;
    let done = AtomicUsize::new(0);
    let skipped = AtomicUsize::new(0);
    let pool = crate::exec::thread_pool(opts.threads)?;
    pool.install(|| {
        (0..total).into_par_iter().with_min_len(1).with_max_len(1).try_for_each(|i| -> Result<()> {
            let id = frame_id(i);
            if !opts.force && frame_complete(&dir, &id) {
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
