use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::cli::infer::npy_name;
use crate::kitti::calib::read_calib;
use crate::kitti::velodyne::read_points;
use crate::model::Model;
use crate::npy::write_npy;
use crate::pointpillars::voxelize;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model whose metadata gives the pre-processing (range, voxel size, max pillars).
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// KITTI velodyne scan (float32 x, y, z, intensity).
    #[arg(long)]
    pub points: PathBuf,
    /// KITTI calibration: keep only points in the camera's field of view.
    #[arg(long)]
    pub calib: Option<PathBuf>,
    /// Output folder: one <input name>.npy per model input.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let model = Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let crate::pointpillars::config::ResolvedModel { cfg, io } = a.config.resolve(&model)?;
    let points = read_points(&a.points)?;
    let calib = a.calib.as_ref().map(read_calib).transpose()?;
    let t0 = Instant::now();
    let pillars = voxelize(&points, &cfg, calib.as_ref())?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let inputs = pillars.to_inputs(&io).with_context(|| format!("inputs for {}", a.model.display()))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    for (name, t) in &inputs {
        let path = a.out.join(npy_name(name));
        write_npy(&path, t)?;
        println!("{name:<12} {} {:?} -> {}", t.dtype(), t.shape, path.display());
    }
    println!(
        "points: {} read, {} in range{}; pillars: {} of max {}, {} dropped over max ({} points); \
         {} points dropped from full pillars (> {} points); {ms:.2} ms",
        points.len(),
        pillars.points_in_range,
        if calib.is_some() { " and camera view" } else { "" },
        pillars.count,
        pillars.max_pillars,
        pillars.pillars_dropped,
        pillars.points_dropped_pillars,
        pillars.points_dropped_full,
        pillars.max_points,
    );
    Ok(())
}
