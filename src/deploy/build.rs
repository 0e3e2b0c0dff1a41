//! Building an engine directory with trtexec and checking every layer's precision in the engine
//! against the plan.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use super::package::read_manifest;
use super::process::{absolute, run_with_timeout, Output, VERSION_TIMEOUT_S};
use super::trtexec::{
    parse_layer_info, parse_version, verify_precisions, CheckStatus, Prec, PrecisionCheck, TrtVersion,
};
use crate::error::{Error, Result};
use crate::quant::plan::Precision;

/// Where trtexec is looked for, in order, after `--trtexec` and `$TRTEXEC`.
pub const TRTEXEC_PLACES: &[&str] =
    &["/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec"];

/// Finds trtexec: `explicit`, then `$TRTEXEC`, then `PATH`, then the usual install folders, as
/// an absolute path (build scripts change directory before they run it). The error says where it
/// looked and what to do instead.
pub fn find_trtexec(explicit: Option<&Path>) -> Result<PathBuf> {
    absolute(&search_trtexec(explicit)?)
}

fn search_trtexec(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(Error::TensorRt(format!("--trtexec {}: no such file", p.display())))
        };
    }
    let mut looked = vec![];
    if let Some(p) = std::env::var_os("TRTEXEC").map(PathBuf::from) {
        if p.is_file() {
            return Ok(p);
        }
        looked.push(format!("$TRTEXEC={}", p.display()));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("trtexec");
            if p.is_file() {
                return Ok(p);
            }
        }
        looked.push("PATH".into());
    }
    for p in TRTEXEC_PLACES {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
        looked.push((*p).into());
    }
    Err(Error::TensorRt(format!(
        "trtexec not found (looked in {}): TensorRT is not installed on this machine. Copy the engine \
         directory to the target and run its build-trt10.sh (Jetson, TensorRT 8.6/10) or build-trt11.sh \
         (TensorRT 11) there, then `pillarq build --verify-only DIR` checks the layers.json it writes; \
         or pass --trtexec PATH",
        looked.join(", ")
    )))
}

/// The TensorRT version of a trtexec binary, from the banner it prints for `--help` (stopped
/// after [`VERSION_TIMEOUT_S`]).
pub fn trtexec_version(trtexec: &Path) -> Result<TrtVersion> {
    let mut cmd = Command::new(trtexec);
    cmd.arg("--help");
    let what = format!("{} --help", trtexec.display());
    let out = run_with_timeout(cmd, Duration::from_secs(VERSION_TIMEOUT_S), Output::Capture, &what, None)?;
    parse_version(&out.text).ok_or_else(|| {
        Error::TensorRt(format!(
            "{} --help printed no '[TensorRT vNNNN]' banner: is it NVIDIA's trtexec?",
            trtexec.display()
        ))
    })
}

/// The result of building (or verifying) one engine directory: `verify.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tensorrt: Option<TrtVersion>,
    /// The script that was run (none with --verify-only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_bytes: Option<u64>,
    pub checks: Vec<PrecisionCheck>,
    /// Layers in the engine's layer file (reformat layers included).
    pub engine_layers: usize,
    pub ok: usize,
    pub mismatches: usize,
    pub not_found: usize,
    pub unknown: usize,
}

fn prec(p: Precision) -> Prec {
    match p {
        Precision::Int8 => Prec::Int8,
        Precision::Fp16 => Prec::Fp16,
        Precision::Fp32 => Prec::Fp32,
    }
}

/// Checks `layers_json` (trtexec --exportLayerInfo) against the plan of engine directory `dir`.
pub fn verify_dir(dir: &Path, layers_json: &Path) -> Result<BuildReport> {
    let manifest = read_manifest(dir)?;
    let text =
        std::fs::read_to_string(layers_json).map_err(|e| Error::Io { path: layers_json.to_path_buf(), source: e })?;
    let layers = parse_layer_info(&text).map_err(|e| Error::Other(format!("{}: {e}", layers_json.display())))?;
    let expected: Vec<(String, Prec)> = manifest.layers.iter().map(|l| (l.name.clone(), prec(l.precision))).collect();
    let checks = verify_precisions(&layers, &expected);
    let count = |s: CheckStatus| checks.iter().filter(|c| c.status == s).count();
    Ok(BuildReport {
        dir: dir.display().to_string(),
        tensorrt: None,
        script: None,
        engine_bytes: std::fs::metadata(dir.join("engine.plan")).ok().map(|m| m.len()),
        ok: count(CheckStatus::Ok),
        mismatches: count(CheckStatus::Mismatch),
        not_found: count(CheckStatus::NotFound),
        unknown: count(CheckStatus::Unknown),
        engine_layers: layers.len(),
        checks,
    })
}

/// Runs the build script that fits `version` in `dir` with `trtexec` (stopped after `timeout`),
/// its output on stderr and in `build.log`, then verifies the engine's fresh layers.json.
pub fn build_dir(dir: &Path, trtexec: &Path, version: TrtVersion, timeout: Duration) -> Result<BuildReport> {
    if !version.has_layer_controls() {
        return Err(Error::TensorRt(format!(
            "TensorRT {version}: its trtexec has no --exportLayerInfo and no precision constraints \
             (--precisionConstraints, --layerPrecisions, --layerOutputTypes; all added in 8.4), which \
             build-trt10.sh passes. With it pillarq can neither pin the plan's FP16/FP32 layers nor verify \
             the engine's precisions. Use TensorRT 8.4 or later (JetPack 5 or 6 on Jetson); or build \
             {} by hand with `trtexec --onnx=model_trt10.onnx --int8 --fp16 --saveEngine=engine.plan`, \
             knowing that the floating-point layers' precisions are then TensorRT's choice and unverified",
            dir.display()
        )));
    }
    let script = if version.strongly_typed_only() { "build-trt11.sh" } else { "build-trt10.sh" };
    let path = dir.join(script);
    if !path.is_file() {
        return Err(Error::Other(format!(
            "{}: no {script}; run `pillarq emit` for this directory first",
            dir.display()
        )));
    }
    // A layers.json left by an earlier build must never be verified in place of this one's.
    let layers_json = dir.join("layers.json");
    match std::fs::remove_file(&layers_json) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { path: layers_json, source: e }),
    }
    let mut cmd = Command::new("bash");
    cmd.arg(&path).env("TRTEXEC", trtexec);
    let what = format!("bash {}", path.display());
    let out = run_with_timeout(cmd, timeout, Output::ToStderr, &what, Some("--timeout"))?;
    if !out.status.success() {
        return Err(Error::TensorRt(format!(
            "{} failed ({}); trtexec's output is in {}",
            path.display(),
            out.status,
            dir.join("build.log").display()
        )));
    }
    if !layers_json.is_file() {
        return Err(Error::TensorRt(format!(
            "{} exited 0 but wrote no {}: trtexec did not export the engine's layers, so its \
             precisions cannot be verified; see {}",
            path.display(),
            layers_json.display(),
            dir.join("build.log").display()
        )));
    }
    let mut report = verify_dir(dir, &layers_json)?;
    report.tensorrt = Some(version);
    report.script = Some(script.into());
    Ok(report)
}
