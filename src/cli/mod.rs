//! The command-line layer: parse arguments, call library stages, print results.

mod annotate;
mod bench;
mod build;
mod calib_sweep;
mod calibrate;
mod data_stats;
mod demo;
mod detect;
mod emit;
mod eval;
mod infer;
pub mod inspect;
mod merge;
mod model_config;
pub mod progress;
mod quant_common;
mod report;
mod run;
mod search;
mod sensitivity;
mod synth;
mod voxelize;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pillarq",
    version,
    about = "PointPillars ONNX -> fast, accurate mixed-precision TensorRT deployments"
)]
struct Cli {
    /// Log more (repeat for debug output); logs go to stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// The largest tensor any step may allocate, e.g. 8G or 512M (default: the machine's physical
    /// memory; also PILLARQ_MAX_MEMORY). Bigger shapes in a model or input file are an error.
    #[arg(long, global = true, value_name = "SIZE", value_parser = crate::memory::parse_size)]
    max_memory: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a model's inputs, outputs, ops, layout, metadata and quantizable layers.
    ///
    /// Example: pillarq inspect onnx/pointpillars_small.onnx --json
    Inspect(inspect::Args),
    /// Run a model on .npy inputs and write one .npy per output.
    ///
    /// Example: pillarq infer onnx/pointpillars_small.onnx --random 0 --out out/infer
    Infer(infer::Args),
    /// Write a model's pre/post-processing configuration (OpenPCDet YAML or pillarq's keys) into
    /// its metadata, so later commands need no --config; the rest of the file stays byte-identical.
    ///
    /// Example: pillarq annotate pointpillar.onnx --config pointpillar.yaml --out pointpillar_pq.onnx
    Annotate(annotate::Args),
    /// Run the pipeline end to end on the bundled small model: inspect, synthetic data, detect, KITTI AP.
    Demo(demo::Args),
    /// Detect objects in a KITTI split and write KITTI result files.
    ///
    /// Example: pillarq detect --model onnx/pointpillars_small.onnx --data data/synth --out out/preds
    Detect(detect::Args),
    /// KITTI AP (2D, BEV, 3D; R11 and R40; Car/Pedestrian/Cyclist x easy/moderate/hard).
    ///
    /// Examples: pillarq eval --model onnx/pointpillars_small.onnx --data data/synth --frames 50
    ///           pillarq eval --preds out/preds --data data/kitti --split val --json
    Eval(eval::Args),
    /// Generate a synthetic KITTI-format dataset by ray casting street scenes (64-beam lidar).
    ///
    /// Example: pillarq synth --out data/synth --train 1500 --val 500 --seed 0
    Synth(synth::Args),
    /// Point cloud and label statistics of a KITTI-format dataset (real or synthetic).
    ///
    /// Example: pillarq data-stats data/synth --split val --frames 100
    DataStats(data_stats::Args),
    /// Turn a velodyne scan into a model's pillar inputs (.npy per input) and print pillar counts.
    ///
    /// Example: pillarq voxelize --model onnx/pointpillars_small.onnx --points 000000.bin --out out/vox
    Voxelize(voxelize::Args),
    /// Calibrate INT8 activation thresholds (max, percentile, entropy, mse) on a few frames.
    ///
    /// Writes calib/<model>-<method>-<frames>.json and the TensorRT calibration cache.
    /// Example: pillarq calibrate --model onnx/pointpillars_small.onnx --data data/synth --frames 16 --method entropy,max
    Calibrate(calibrate::Args),
    /// Full-INT8 mAP over calibration-set sizes N = 1, 2, 4, ... x seeded draws x calibrators.
    ///
    /// Example: pillarq calib-sweep --model onnx/pointpillars_small.onnx --data data/synth --max-n 16 --draws 3
    CalibSweep(calib_sweep::Args),
    /// Per-layer sensitivity: mAP with only that layer in INT8, drop from FP32, ranking, proxies.
    ///
    /// Example: pillarq sensitivity --model onnx/pointpillars_small.onnx --data data/synth --frames 100
    Sensitivity(sensitivity::Args),
    /// Greedy top-k FP-fallback search (plus sorted-prefix and bisection baselines) -> candidates.json.
    ///
    /// Example: pillarq search --model onnx/pointpillars_small.onnx --data data/synth --top-k 5 --tolerance 1
    Search(search::Args),
    /// Merge result caches of `--shard i/n` runs into one.
    ///
    /// Example: pillarq merge --into out/cache out/cache-0 out/cache-1
    Merge(merge::Args),
    /// Write a plan's TensorRT deployment: mixed-precision ONNX, trtexec scripts (TensorRT 10
    /// and 11), calibration cache, plan.json.
    ///
    /// Examples: pillarq emit --model onnx/pointpillars_small.onnx --plan plan.json --out engines/mine
    ///           pillarq emit --model onnx/pointpillars_small.onnx --candidates out/candidates.json
    Emit(emit::Args),
    /// Build engine directories with trtexec (TensorRT 10 or 11, detected) and check every
    /// layer's precision in the engine against the plan; --verify-only checks a layers.json.
    ///
    /// Example: pillarq build engines/greedy-04 --trtexec /usr/src/tensorrt/bin/trtexec
    Build(build::Args),
    /// Latency (median, p99; network and end to end) and size of engine directories.
    ///
    /// Example: pillarq bench engines/*/ --backend trtexec --json
    Bench(bench::Args),
    /// The whole pipeline, resumable: calibrate, sensitivity, search, emit, evaluate, bench,
    /// report (stages whose inputs did not change are reused).
    ///
    /// Examples: pillarq run --model onnx/pointpillars_small.onnx --data data/synth --out out/run
    ///           pillarq run --print-config > pipeline.yaml; pillarq run pipeline.yaml
    Run(run::Args),
    /// Write report.html (self-contained, with plots), report.md (+ plots/*.svg) and results.json
    /// for a folder of results.
    ///
    /// Example: pillarq report out/run
    Report(report::Args),
}

/// The bundled models live in `onnx/` of the source tree; found relative to the working
/// directory first, then to the crate.
pub fn bundled_model(name: &str) -> PathBuf {
    let local = PathBuf::from("onnx").join(name);
    if local.exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("onnx").join(name)
}

/// A panic is a bug; the executor turns one in a kernel into an error naming the node. Print its
/// message and place once, in one line (a panic in a parallel loop repeats in every worker),
/// with a backtrace only when RUST_BACKTRACE asks for one.
fn quiet_panics() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static SEEN: AtomicBool = AtomicBool::new(false);
    let backtrace = std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0");
    std::panic::set_hook(Box::new(move |info| {
        // `pillarq ... | head`: the reader left; stop quietly, as command-line tools do
        // (`println!` panics on a closed stdout because Rust ignores SIGPIPE).
        let msg = crate::exec::panic_message(info.payload());
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        if SEEN.swap(true, Ordering::Relaxed) {
            return;
        }
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("internal error{at}: {}", crate::exec::panic_message(info.payload()));
        if backtrace {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .try_init();
    quiet_panics();
    let budget = match (cli.max_memory, std::env::var("PILLARQ_MAX_MEMORY")) {
        (Some(b), _) => Ok(Some(b)),
        (None, Ok(v)) => crate::memory::parse_size(&v).map(Some).map_err(|e| format!("PILLARQ_MAX_MEMORY: {e}")),
        (None, Err(_)) => Ok(None),
    };
    match budget {
        Ok(b) => crate::memory::set_max_memory(b.unwrap_or(0)),
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    }
    let r = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Annotate(a) => annotate::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Detect(a) => detect::run(a),
        Command::Synth(a) => synth::run(a),
        Command::DataStats(a) => data_stats::run(a),
        Command::Voxelize(a) => voxelize::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::CalibSweep(a) => calib_sweep::run(a),
        Command::Sensitivity(a) => sensitivity::run(a),
        Command::Search(a) => search::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Emit(a) => emit::run(a),
        Command::Build(a) => build::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Report(a) => report::run(a),
        Command::Run(a) => run::run(a),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
