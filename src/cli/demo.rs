use std::path::PathBuf;

use anyhow::{Context, Result};

use super::bundled_model;
use super::detect::SplitArgs;
use super::quant_common::{CalibArgs, SweepArgs};
use crate::quant::calib::CalibMethod;
use crate::quant::plan::Precision;
use crate::search::Shard;

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
    /// Frames in the generated validation set.
    #[arg(long, default_value_t = 100)]
    pub frames: usize,
    /// Validation frames the sensitivity sweep and the search score plans on.
    #[arg(long, default_value_t = 40)]
    pub search_frames: usize,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

const STEPS: usize = 8;

/// The pipeline end to end: inspect the model, generate a synthetic KITTI-format data set (a
/// seed the bundled models were not trained on), detect and print the FP32 KITTI AP table,
/// calibrate INT8 on 8 frames (max with the default PTQ recipe, docs/ptq.md), rank the layers by the mAP they lose in INT8, search the FP16
/// fallbacks, and run the network once on random pillars writing its tensors.
pub fn run(a: Args) -> Result<()> {
    let model_path = a.model.unwrap_or_else(|| bundled_model("pointpillars_small.onnx"));
    println!("== 1/{STEPS} model: {} ==\n", model_path.display());
    let model =
        crate::model::Model::load(&model_path).with_context(|| format!("cannot load {}", model_path.display()))?;
    print!("{}", super::inspect::render(&model));

    let data = a.out.join("data");
    println!(
        "\n== 2/{STEPS} synthetic data: 8 calibration + {} validation frames (seed 7) -> {} ==",
        a.frames,
        data.display()
    );
    super::synth::run(super::synth::Args {
        out: data.clone(),
        train: 8,
        val: a.frames,
        seed: 7,
        threads: a.threads,
        force: false,
    })?;
    let split = |frames: Option<usize>| SplitArgs { data: data.clone(), split: "val".into(), frames };

    println!("\n== 3/{STEPS} FP32: detect + KITTI evaluation ==");
    super::eval::run(super::eval::Args {
        config: a.config.clone(),
        model: Some(model_path.clone()),
        out: Some(a.out.join("preds")),
        threads: a.threads,
        quiet: false,
        preds: None,
        split: split(None),
        json: false,
        plan: None,
        calib: None,
    })?;

    let calib_dir = a.out.join("calib");
    println!(
        "\n== 4/{STEPS} INT8 calibration (max, recipe {}, 8 frames of the calibration split) -> {} ==",
        crate::quant::recipe::Recipe::default_recipe(),
        calib_dir.display()
    );
    super::calibrate::run(super::calibrate::Args {
        config: a.config.clone(),
        model: model_path.clone(),
        data: data.clone(),
        split: "train".into(),
        frames: 8,
        seed: None,
        method: vec![CalibMethod::Max],
        out: calib_dir.clone(),
        pow2_scales: false,
        recipe: crate::quant::recipe::Recipe::default_recipe(),
        trt_version: 100300,
        threads: a.threads,
        quiet: false,
        json: false,
    })?;
    let stem = model_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let calib = CalibArgs {
        calib: Some(
            calib_dir.join(format!("{stem}-max-{}-8.json", crate::quant::recipe::Recipe::default_recipe().file_tag())),
        ),
        method: CalibMethod::Max,
        calib_frames: 8,
        calib_seed: None,
        calib_split: "train".into(),
        pow2_scales: false,
        allow_other_model: false,
        recipe: None,
    };
    let sweep = SweepArgs { cache: a.out.join("cache"), chunk: 10, shard: Shard::ALL, wait: 0 };

    println!("\n== 5/{STEPS} per-layer sensitivity on {} validation frames ==", a.search_frames);
    super::sensitivity::run(super::sensitivity::Args {
        config: a.config.clone(),
        model: model_path.clone(),
        split: split(Some(a.search_frames)),
        calib: calib.clone(),
        sweep: sweep.clone(),
        out: a.out.join("sensitivity.json"),
        threads: a.threads,
        quiet: false,
        json: false,
    })?;

    println!("\n== 6/{STEPS} greedy FP16-fallback search over the top 3 layers (plus baselines) ==");
    super::search::run(super::search::Args {
        config: a.config.clone(),
        model: model_path.clone(),
        split: split(Some(a.search_frames)),
        calib,
        sweep,
        top_k: 3,
        tolerance: Some(1.0),
        fallback: Precision::Fp16,
        out: a.out.join("candidates.json"),
        threads: a.threads,
        quiet: false,
        json: false,
    })?;

    let engines = a.out.join("engines");
    println!(
        "\n== 7/{STEPS} TensorRT deployment files for every candidate (+ fp32, fp16, int8) -> {} ==",
        engines.display()
    );
    super::emit::run(super::emit::Args {
        io: super::emit::Io::Model,
        config: a.config.clone(),
        model: model_path.clone(),
        plan: None,
        calib: None,
        candidates: Some(a.out.join("candidates.json")),
        out: Some(engines.clone()),
        quiet: false,
        json: false,
    })?;
    println!(
        "build on a GPU machine: bash {}/<name>/build-trt11.sh (TensorRT 11) or build-trt10.sh (Jetson), \
         or `pillarq build {}/*`",
        engines.display(),
        engines.display()
    );

    println!("\n== 8/{STEPS} network on generated pillar inputs (seed 0) ==");
    super::infer::run(super::infer::Args {
        config: a.config.clone(),
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
    println!(
        "\nfiles under {}: data/, preds/ (detections), calib/ (scales + TensorRT cache), sensitivity.json, \
         candidates.json (plans), engines/ (ONNX + trtexec scripts per plan), cache/ (resumable results), tensors/",
        a.out.display()
    );
    Ok(())
}
