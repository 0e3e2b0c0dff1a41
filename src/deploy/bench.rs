//! Latency and size of engine directories: on the CPU executor (the plan's simulation; always
//! available) or through trtexec (`--loadEngine`, where TensorRT is installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::package::{read_manifest, Manifest, WeightBytes};
use super::process::{run_with_timeout, Output};
use super::trtexec::{parse_performance, PerfSummary, TrtVersion};
use crate::error::{Error, Result};
use crate::kitti::KittiDir;
use crate::model::Model;
use crate::pointpillars::detect::Detector;
use crate::pointpillars::random_pillar_inputs;
use crate::quant::plan::PrecisionPlan;

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub engine: String,
    pub backend: String,
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorrt: Option<TrtVersion>,
    /// Network alone: median, 99th percentile, mean and min over `runs` runs after warm-up.
    pub median_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub runs: usize,
    /// Voxelization + network + decoding and NMS, per frame (CPU backend with --data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub e2e_p99_ms: Option<f64>,
    /// trtexec: GPU compute time median and throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_compute_median_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput_qps: Option<f64>,
    /// The engine file where built, else model.onnx.
    pub size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_bytes: Option<u64>,
    pub onnx_bytes: u64,
    pub weight_bytes: WeightBytes,
    /// Jetson power mode (`nvpmodel -q`) where the tool exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_mode: Option<String>,
    pub note: String,
}

/// Median, p99 (nearest rank), mean and min of `v` (ms).
pub fn stats(v: &[f64]) -> (f64, f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { 0.5 * (s[n / 2 - 1] + s[n / 2]) };
    let rank = ((0.99 * n as f64).ceil() as usize).clamp(1, n) - 1;
    (median, s[rank], s.iter().sum::<f64>() / n as f64, s[0])
}

/// Sizes of an engine directory: (size, engine bytes, onnx bytes).
fn sizes(dir: &Path) -> (u64, Option<u64>, u64) {
    let len = |f: &str| std::fs::metadata(dir.join(f)).ok().map(|m| m.len());
    let engine = len("engine.plan");
    let onnx = len("model.onnx").unwrap_or(0);
    (engine.unwrap_or(onnx), engine, onnx)
}

/// The Jetson power mode, when `nvpmodel` is installed.
pub fn power_mode() -> Option<String> {
    let out = Command::new("nvpmodel").arg("-q").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().find(|l| l.contains("Power Mode")).map(|l| l.trim().to_string())
}

/// The CPU's model name (/proc/cpuinfo), else the architecture.
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The FP32 model a directory's plan runs on: `model`, else the manifest's source model when it
/// still has the recorded hash, else the directory's copy `model_fp32.onnx`.
fn source_model(dir: &Path, man: &Manifest, model: Option<&Path>) -> Result<PathBuf> {
    if let Some(m) = model {
        return Ok(m.to_path_buf());
    }
    let src = PathBuf::from(&man.source_model);
    if src.is_file() && crate::search::file_sha256(&src).is_ok_and(|h| h == man.source_sha256) {
        return Ok(src);
    }
    let copy = dir.join("model_fp32.onnx");
    if copy.is_file() {
        return Ok(copy);
    }
    Err(Error::Other(format!(
        "{}: the FP32 model {} is not here (or changed); pass --model",
        dir.display(),
        man.source_model
    )))
}

pub struct CpuBench<'a> {
    pub model: Option<&'a Path>,
    /// The model's pre/post-processing configuration file (`--config`), over its metadata.
    pub config: Option<&'a Path>,
    pub data: Option<(&'a KittiDir, &'a [String])>,
    pub runs: usize,
    pub warmup: usize,
    pub threads: usize,
}

/// CPU backend: the plan's simulation on pillarq's executor (INT8 is fake-quantized in f32, so
/// this measures the simulation, not INT8 speed).
pub fn bench_cpu(dir: &Path, b: &CpuBench) -> Result<BenchResult> {
    let man = read_manifest(dir)?;
    let model_path = source_model(dir, &man, b.model)?;
    let model = Model::load(&model_path)?;
    let plan = PrecisionPlan::read(&dir.join("plan.json"))?;
    let resolved = plan.resolve(&model.layers).map_err(|msg| Error::Plan { file: dir.join("plan.json"), msg })?;
    let setup = crate::pointpillars::config::resolve(&model.graph, &model_path, b.config, None)?;
    let detector = Detector::with_config(&model, setup, b.threads)?;
    let compiled = detector.executor().compile_plan(&resolved)?;
    let exec = detector.executor();
    let inputs = match b.data {
        Some((data, ids)) => detector.frame_inputs(data, &ids[0])?.0,
        None => random_pillar_inputs(&model.graph, Some(&detector.cfg), 0, 0.6)?,
    };
    let mut times = Vec::with_capacity(b.runs);
    for i in 0..b.warmup + b.runs {
        let t = Instant::now();
        exec.run_plan(&inputs, &compiled)?;
        if i >= b.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (median, p99, mean, min) = stats(&times);
    let (mut e2e_median, mut e2e_p99) = (None, None);
    if let Some((data, ids)) = b.data {
        let det = detector.with_plan(Some(compiled));
        let mut e2e = Vec::with_capacity(b.runs);
        for i in 0..b.warmup + b.runs {
            let id = &ids[i % ids.len()];
            let t = Instant::now();
            det.detect_frame(data, id)?;
            if i >= b.warmup {
                e2e.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let (m, p, _, _) = stats(&e2e);
        (e2e_median, e2e_p99) = (Some(m), Some(p));
    }
    let (size, engine_bytes, onnx_bytes) = sizes(dir);
    let threads = if b.threads == 0 { rayon::current_num_threads() } else { b.threads };
    Ok(BenchResult {
        engine: man.name.clone(),
        backend: "cpu".into(),
        device: format!("{} ({threads} threads)", cpu_name()),
        tensorrt: None,
        median_ms: median,
        p99_ms: p99,
        mean_ms: mean,
        min_ms: min,
        runs: b.runs,
        e2e_median_ms: e2e_median,
        e2e_p99_ms: e2e_p99,
        gpu_compute_median_ms: None,
        throughput_qps: None,
        size_bytes: size,
        engine_bytes,
        onnx_bytes,
        weight_bytes: man.weight_bytes,
        power_mode: None,
        note: "pillarq CPU executor running the plan's simulation (INT8 fake-quantized in f32): \
               a check of the plan, not deployed INT8 speed"
            .into(),
    })
}

/// trtexec backend: `--loadEngine=engine.plan`, timing parsed from its performance summary;
/// trtexec is stopped after `timeout`.
pub fn bench_trtexec(
    dir: &Path,
    trtexec: &Path,
    runs: usize,
    warmup_ms: u64,
    timeout: Duration,
) -> Result<BenchResult> {
    let man = read_manifest(dir)?;
    let engine = dir.join("engine.plan");
    if !engine.is_file() {
        return Err(Error::Other(format!(
            "{}: no engine.plan; run `pillarq build {}` first",
            dir.display(),
            dir.display()
        )));
    }
    let mut cmd = Command::new(trtexec);
    cmd.arg(format!("--loadEngine={}", engine.display()))
        .arg(format!("--iterations={runs}"))
        .arg("--duration=0")
        .arg(format!("--warmUp={warmup_ms}"));
    let what = format!("{} --loadEngine={}", trtexec.display(), engine.display());
    let out = run_with_timeout(cmd, timeout, Output::Capture, &what, Some("--timeout"))?;
    let log = dir.join("bench-trtexec.log");
    let _ = std::fs::write(&log, &out.text);
    if !out.status.success() {
        return Err(Error::TensorRt(format!(
            "trtexec --loadEngine failed ({}); its output is in {}",
            out.status,
            log.display()
        )));
    }
    let perf = parse_performance(&out.text).map_err(|e| Error::TensorRt(format!("{}: {e}", log.display())))?;
    for w in &perf.warnings {
        tracing::warn!("{}: {w}", log.display());
    }
    from_perf(dir, &man, &perf, runs)
}

/// A result from a parsed trtexec performance summary.
pub fn from_perf(dir: &Path, man: &Manifest, p: &PerfSummary, runs: usize) -> Result<BenchResult> {
    let lat =
        p.latency.as_ref().or(p.gpu_compute_time.as_ref()).ok_or_else(|| {
            Error::TensorRt(format!("{}: trtexec printed no Latency or GPU Compute Time", dir.display()))
        })?;
    let (size, engine_bytes, onnx_bytes) = sizes(dir);
    Ok(BenchResult {
        engine: man.name.clone(),
        backend: "trtexec".into(),
        device: p.device_name.clone().unwrap_or_else(|| "unknown GPU".into()),
        tensorrt: p.version,
        median_ms: lat.median_ms,
        p99_ms: lat.percentile(99.0).unwrap_or(lat.max_ms),
        mean_ms: lat.mean_ms,
        min_ms: lat.min_ms,
        runs,
        e2e_median_ms: None,
        e2e_p99_ms: None,
        gpu_compute_median_ms: p.gpu_compute_time.as_ref().map(|g| g.median_ms),
        throughput_qps: Some(p.throughput_qps),
        size_bytes: size,
        engine_bytes,
        onnx_bytes,
        weight_bytes: man.weight_bytes.clone(),
        power_mode: power_mode(),
        note: "trtexec latency (H2D + GPU compute + D2H) of the network alone".into(),
    })
}
