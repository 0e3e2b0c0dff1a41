use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::synth::{write_dataset, SynthOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Output dataset root (KITTI object layout: training/{velodyne,label_2,calib}, ImageSets).
    #[arg(long)]
    pub out: PathBuf,
    /// Training frames (ids 0..N-1).
    #[arg(long, default_value_t = 1500)]
    pub train: usize,
    /// Validation frames (ids N..N+M-1).
    #[arg(long, default_value_t = 500)]
    pub val: usize,
    /// Dataset seed: frame i depends only on (seed, i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (0 = all cores). The files are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Regenerate every frame, even where --out holds frames of another seed or settings.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> Result<()> {
    let opts = SynthOptions {
        train: a.train,
        val: a.val,
        seed: a.seed,
        threads: a.threads,
        force: a.force,
        ..SynthOptions::default()
    };
    let t0 = Instant::now();
    let last = Mutex::new(Instant::now());
    let progress = |done: usize, total: usize| {
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if done == total || l.elapsed().as_secs_f64() >= 2.0 {
            *l = Instant::now();
            let s = t0.elapsed().as_secs_f64();
            eprintln!("synth: {done}/{total} frames, {s:.1} s, {:.1} frames/s", done as f64 / s.max(1e-9));
        }
    };
    let s = write_dataset(&a.out, &opts, &progress).with_context(|| format!("writing {}", a.out.display()))?;
    let rate = if s.written > 0 { s.written as f64 / s.seconds.max(1e-9) } else { 0.0 };
    println!(
        "wrote {} frames ({} already there) to {} in {:.1} s: {:.1} frames/s; train {} val {} seed {}",
        s.written,
        s.skipped,
        a.out.display(),
        s.seconds,
        rate,
        a.train,
        a.val,
        a.seed
    );
    Ok(())
}
