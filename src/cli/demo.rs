use std::path::PathBuf;

use anyhow::{Context, Result};

use super::bundled_model;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder for the demo's files (data set, detections, tensors).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Model to run (default: the bundled small model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Frames in the generated validation set.
    #[arg(long, default_value_t = 100)]
    pub frames: usize,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// The pipeline so far, end to end: inspect the model, generate a synthetic KITTI-format
/// validation set (a seed the bundled models were not trained on), detect and print the KITTI
/// AP table, then run the network once on random pillars and write its tensors.
pub fn run(a: Args) -> Result<()> {
    let model_path = a.model.unwrap_or_else(|| bundled_model("pointpillars_small.onnx"));
    println!("== 1/4 model: {} ==\n", model_path.display());
    let model =
        crate::model::Model::load(&model_path).with_context(|| format!("cannot load {}", model_path.display()))?;
    print!("{}", super::inspect::render(&model));

    let data = a.out.join("data");
    println!("\n== 2/4 synthetic validation set: {} frames (seed 7) -> {} ==", a.frames, data.display());
    super::synth::run(super::synth::Args { out: data.clone(), train: 0, val: a.frames, seed: 7, threads: a.threads })?;

    println!("\n== 3/4 detect + KITTI evaluation ==");
    super::eval::run(super::eval::Args {
        model: Some(model_path.clone()),
        out: Some(a.out.join("preds")),
        threads: a.threads,
        quiet: false,
        preds: None,
        split: super::detect::SplitArgs { data, split: "val".into(), frames: None },
        json: false,
        plan: None,
        calib: None,
    })?;

    println!("\n== 4/4 network on generated pillar inputs (seed 0) ==");
    super::infer::run(super::infer::Args {
        model: model_path,
        inputs: vec![],
        random: Some(0),
        out: a.out.join("tensors"),
        threads: a.threads,
        repeat: 3,
        json: false,
        profile: false,
        plan: None,
        calib: None,
    })?;
    println!("\nfiles under {} (detections in preds/, tensors in tensors/ for any other runtime)", a.out.display());
    Ok(())
}
