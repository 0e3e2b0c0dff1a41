use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::model::Model;
use crate::onnx::metadata::with_metadata_entry;
use crate::pointpillars::config::to_metadata_json;
use crate::pointpillars::METADATA_KEY;

#[derive(clap::Args)]
pub struct Args {
    /// The ONNX model (any PointPillars export: OpenPCDet, CUDA-PointPillars, mmdetection3d).
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// The annotated model to write (the input's bytes with one metadata entry set).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the configuration written, as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Resolves the configuration against the model (so what is written already fits it) and writes
/// it as the model's `pointpillars` metadata; everything else in the file stays byte-identical.
pub fn run(a: Args) -> Result<()> {
    if a.config.config.is_none() && a.config.score_threshold.is_none() && a.config.nms_iou.is_none() {
        bail!("give the configuration to write: --config FILE (OpenPCDet model YAML or pillarq's keys)");
    }
    let model = Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let resolved = a.config.resolve(&model)?;
    let json = to_metadata_json(&resolved.cfg);
    let bytes = std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let out = with_metadata_entry(&bytes, METADATA_KEY, &json, &a.model)?;
    if let Some(d) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    crate::files::write_atomic(&a.out, &out)?;
    if a.json {
        println!("{json}");
    } else {
        let io = &resolved.io;
        println!(
            "{} -> {} ({} bytes; metadata '{METADATA_KEY}' set, the rest unchanged)\n  inputs: {} {:?}, {} {:?}{}\n  heads: {} / {} / {} ({})\n  {} classes {:?}, {} anchors per location, features {:?}",
            a.model.display(),
            a.out.display(),
            out.len(),
            io.voxels.name,
            io.voxels.shape,
            io.coords.name,
            io.coords.shape,
            io.count.as_ref().map(|c| format!(", {} {:?}", c.name, c.shape)).unwrap_or_default(),
            io.cls.name,
            io.boxes.name,
            io.dir.name,
            if io.cls.nchw { "NCHW" } else { "NHWC" },
            resolved.cfg.class_names.len(),
            resolved.cfg.class_names,
            io.cls.channels / resolved.cfg.class_names.len().max(1),
            resolved.cfg.point_features,
        );
    }
    Ok(())
}
