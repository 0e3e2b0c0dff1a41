//! An engine directory: everything needed to build and check one plan's TensorRT engine.
//!
//! ```text
//! engines/<name>/
//!   model.onnx            strongly typed mixed-precision model (TensorRT 11, onnxruntime)
//!   model_trt10.onnx      only when the plan has FP16 layers: those layers in float32, for
//!                         TensorRT 8.6/10 weak typing with --layerPrecisions (else model.onnx)
//!   model_fp32.onnx       the original model, for the implicit-calibration variant (INT8 plans)
//!   calib.cache           TensorRT calibration cache of the plan's activation scales (INT8 plans)
//!   build-trt11.sh        trtexec, TensorRT 11
//!   build-trt10.sh        trtexec, TensorRT 8.6 / 10 (Jetson): Q/DQ model + precision constraints
//!   build-trt10-calib.sh  trtexec, TensorRT 8.6 / 10: FP32 model + calib.cache (INT8 plans)
//!   plan.json             the PrecisionPlan (precisions, scales, calibration provenance, model hash)
//!   emit.json             what was written: layers, names TensorRT sees, sizes, hashes
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::emit::{emit_model, EmittedLayer, Fp16Form};
use super::scripts::{build_scripts, ScriptSet};
use crate::error::{Error, Result};
use crate::files::sha256_hex;
use crate::files::write_atomic;
use crate::model::Model;
use crate::onnx::encode_model;
use crate::pointpillars::interface::ModelIo;
use crate::quant::calib::{trt_cache_header, trt_cache_text};
use crate::quant::calibrate::cache_entries;
use crate::quant::plan::{Precision, PrecisionPlan};

/// TensorRT version written into the calibration cache header (Jetson JetPack 6.1/6.2).
pub const CACHE_TRT_VERSION: (u32, u32, u32) = (10, 3, 0);

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WeightBytes {
    pub int8: u64,
    pub fp16: u64,
    pub fp32: u64,
    pub total: u64,
    /// The same layers all in FP32.
    pub fp32_reference: u64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub bytes: u64,
    pub sha256: String,
}

/// `emit.json`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub name: String,
    pub source_model: String,
    pub source_sha256: String,
    pub counts: BTreeMap<String, usize>,
    pub weight_bytes: WeightBytes,
    /// Files written, by name.
    pub files: BTreeMap<String, FileInfo>,
    pub layers: Vec<EmittedLayer>,
    /// The trtexec precision specs the TensorRT 10 scripts use.
    pub trt10_layer_precisions: String,
    pub trt10_calib_layer_precisions: String,
    /// The engine's I/O follows CUDA-PointPillars' runtime (`emit --io cudapp`).
    #[serde(default)]
    pub cudapp_io: bool,
    pub pillarq_version: String,
}

fn write(dir: &Path, name: &str, bytes: &[u8], files: &mut BTreeMap<String, FileInfo>) -> Result<()> {
    write_atomic(&dir.join(name), bytes)?;
    files.insert(name.to_string(), FileInfo { bytes: bytes.len() as u64, sha256: sha256_hex(bytes) });
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> Result<()> {
    Ok(())
}

/// Options of an engine directory beyond the plan.
#[derive(Debug, Clone, Default)]
pub struct EmitOptions {
    /// Give the engine CUDA-PointPillars' runtime interface (see `deploy::cudapp`); the model's
    /// interface as discovered with its configuration.
    pub cudapp_io: Option<ModelIo>,
}

/// Writes the engine directory of `plan` (named `name`) under `dir`. `plan_file` names the plan
/// in errors. Returns the manifest (also written as `emit.json`).
pub fn write_engine_dir(
    model: &Model,
    plan: &PrecisionPlan,
    plan_file: &Path,
    name: &str,
    dir: &Path,
) -> Result<Manifest> {
    write_engine_dir_with(model, plan, plan_file, name, dir, &EmitOptions::default())
}

/// [`write_engine_dir`] with options.
pub fn write_engine_dir_with(
    model: &Model,
    plan: &PrecisionPlan,
    plan_file: &Path,
    name: &str,
    dir: &Path,
    opts: &EmitOptions,
) -> Result<Manifest> {
    let resolved = plan.resolve(&model.layers).map_err(|msg| Error::Plan { file: plan_file.to_path_buf(), msg })?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
    let source_bytes =
        std::fs::read(&model.file.path).map_err(|e| Error::Io { path: model.file.path.clone(), source: e })?;
    let mut files = BTreeMap::new();

    let emit = |form| -> Result<_> {
        let mut e = emit_model(model, &resolved, form)?;
        if let Some(io) = &opts.cudapp_io {
            crate::deploy::cudapp::adapt(&mut e.model, io)?;
        }
        Ok(e)
    };
    let typed = emit(Fp16Form::Typed)?;
    write(dir, "model.onnx", &encode_model(&typed.model), &mut files)?;
    let has = |p: Precision| resolved.iter().any(|l| l.precision == p);
    let trt10_model = if has(Precision::Fp16) {
        let weak = emit(Fp16Form::Float32)?;
        write(dir, "model_trt10.onnx", &encode_model(&weak.model), &mut files)?;
        "model_trt10.onnx"
    } else {
        "model.onnx"
    };
    let mut calib_cache = false;
    if has(Precision::Int8) {
        write(dir, "model_fp32.onnx", &source_bytes, &mut files)?;
        let (a, b, c) = CACHE_TRT_VERSION;
        write(
            dir,
            "calib.cache",
            cache_text(model, plan, &typed.layers, trt_cache_header(a, b, c)).as_bytes(),
            &mut files,
        )?;
        calib_cache = true;
    }
    let ScriptSet { trt11, trt10, trt10_calib, trt10_spec, calib_spec } =
        build_scripts(&typed.layers, trt10_model, calib_cache.then_some("model_fp32.onnx"), opts.cudapp_io.is_some());
    for (file, text) in
        [("build-trt11.sh", Some(trt11)), ("build-trt10.sh", Some(trt10)), ("build-trt10-calib.sh", trt10_calib)]
    {
        let path = dir.join(file);
        match text {
            Some(t) => {
                write(dir, file, t.as_bytes(), &mut files)?;
                make_executable(&path)?;
            }
            None => {
                // A stale script from an earlier plan in the same directory would mislead.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let mut plan_out = plan.clone();
    if let Some(c) = plan_out.calibration.as_mut() {
        if c.model_hash.is_empty() {
            c.model_hash = crate::onnx::metadata::network_sha256(&model.file.path, crate::pointpillars::METADATA_KEY)?;
        }
    }
    let plan_json = serde_json::to_vec_pretty(&plan_out).map_err(|e| Error::Other(e.to_string()))?;
    write(dir, "plan.json", &plan_json, &mut files)?;

    let sum = |p: Precision| typed.layers.iter().filter(|l| l.precision == p).map(|l| l.weight_bytes).sum::<u64>();
    let fp32_reference: u64 = model.layers.iter().map(|l| 4 * l.params as u64).sum();
    let counts = [Precision::Int8, Precision::Fp16, Precision::Fp32]
        .iter()
        .map(|&p| (p.as_str().to_string(), typed.layers.iter().filter(|l| l.precision == p).count()))
        .collect();
    let manifest = Manifest {
        name: name.to_string(),
        source_model: model.file.path.display().to_string(),
        source_sha256: sha256_hex(&source_bytes),
        counts,
        weight_bytes: WeightBytes {
            int8: sum(Precision::Int8),
            fp16: sum(Precision::Fp16),
            fp32: sum(Precision::Fp32),
            total: typed.layers.iter().map(|l| l.weight_bytes).sum(),
            fp32_reference,
        },
        files,
        layers: typed.layers,
        trt10_layer_precisions: trt10_spec,
        trt10_calib_layer_precisions: calib_spec,
        cudapp_io: opts.cudapp_io.is_some(),
        pillarq_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(&dir.join("emit.json"), &text)?;
    Ok(manifest)
}

/// The calibration cache for the FP32 model (`build-trt10-calib.sh`): for every INT8 layer, the
/// tensors TensorRT needs a scale for (`quant::calibrate::cache_entries`): what it reads, under
/// the names of the ONNX edges (the Pad output before a stride-2 conv and the edge before the Pad,
/// at the layer's threshold), and what its chain writes (the PFN's BatchNormalization path, the
/// heads' outputs), at the calibration's `outputs`. A calibration without them (made before they
/// were recorded) is warned about: TensorRT may run those layers in FP32.
fn cache_text(model: &Model, plan: &PrecisionPlan, layers: &[EmittedLayer], header: String) -> String {
    let entries = match &plan.calibration {
        Some(cal) => {
            let int8 = |name: &str| layers.iter().any(|l| l.name == name && l.precision == Precision::Int8);
            let (entries, missing) = cache_entries(&model.graph, &model.layers, cal, &int8);
            if !missing.is_empty() {
                tracing::warn!(
                    "calib.cache: no threshold for {} tensor(s) INT8 layers write ({}{}): the calibration predates \
                     them, so TensorRT's implicit INT8 may run those layers in FP32; rerun `pillarq calibrate` and \
                     emit with its --calib file",
                    missing.len(),
                    missing.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
                    if missing.len() > 3 { ", ..." } else { "" }
                );
            }
            let refined: Vec<&String> = cal.layers.keys().filter(|l| int8(l)).collect();
            if !refined.is_empty() {
                tracing::warn!(
                    "calib.cache: {} INT8 layer(s) have PTQ-recipe adjustments a calibration cache cannot carry \
                     (input equalization, rounded weights, corrected bias; e.g. {}): TensorRT's implicit INT8 would \
                     compute another function. Build from the Q/DQ model (model.onnx) for the recipe's accuracy",
                    refined.len(),
                    refined[0]
                );
            }
            entries.into_iter().map(|(t, amax)| (t, amax / 127.0)).collect()
        }
        None => vec![],
    };
    trt_cache_text(&header, &entries)
}

/// Default name of an engine directory for a plan file: its stem.
pub fn default_name(plan_file: &Path) -> String {
    plan_file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plan".into())
}

/// `engines/<name>` under `root`.
pub fn engine_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Reads `emit.json` of an engine directory.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join("emit.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Other(format!("{}: not an emit.json written by `pillarq emit` ({e})", path.display())))
}
