use std::path::PathBuf;

use anyhow::{Context, Result};

use super::bundled_model;

#[derive(clap::Args)]
pub struct Args {
    /// Output folder for the demo's files (data set, detections, calibration, reports, tensors).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Model to run (default: the bundled small model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// With --model: its pre/post-processing configuration (OpenPCDet YAML or pillarq's keys).
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// Frames in the generated validation set (every plan is scored on all of them).
    #[arg(long, default_value_t = 40)]
    pub frames: usize,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// The demo: inspect the model, generate a synthetic KITTI-format data set (a seed the bundled
/// models were not trained on), then `pillarq run` on it with the bundled defaults (8
/// calibration frames, max with the default PTQ recipe, top 3 layers, CPU benchmark) and its
/// report.
pub fn run(a: Args) -> Result<()> {
    let model_path = a.model.unwrap_or_else(|| bundled_model("pointpillars_small.onnx"));
    println!("== model: {} ==\n", model_path.display());
    let model =
        crate::model::Model::load(&model_path).with_context(|| format!("cannot load {}", model_path.display()))?;
    print!("{}", super::inspect::render(&model));

    let data = a.out.join("data");
    println!("\n== synthetic data: 8 calibration + {} validation frames (seed 7) -> {} ==", a.frames, data.display());
    super::synth::run(super::synth::Args {
        out: data.clone(),
        train: 8,
        val: a.frames,
        seed: 7,
        threads: a.threads,
        force: false,
    })?;
    println!(
        "\n== pillarq run --model {} --data {} --out {} --calib-frames 8 --top-k 3 ==",
        model_path.display(),
        data.display(),
        a.out.display()
    );
    super::run::run(super::run::Args {
        pipeline: None,
        model: Some(model_path),
        config: a.config.config.clone(),
        data: Some(data),
        out: Some(a.out.clone()),
        frames: None,
        calib_frames: Some(8),
        top_k: Some(3),
        bench: None,
        from: None,
        until: None,
        force: false,
        print_config: false,
        threads: Some(a.threads),
        quiet: false,
        json: false,
    })?;
    println!(
        "\nfiles under {}: data/, calib/, sensitivity.json, candidates.json, engines/ (ONNX + trtexec scripts per \
         plan: bash engines/<name>/build-trt11.sh, or build-trt10.sh on Jetson), ap.json, bench.json, report.html, \
         report.md, results.json, cache/ (resumable results)",
        a.out.display()
    );
    Ok(())
}
