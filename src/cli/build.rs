use std::path::PathBuf;

use anyhow::{bail, Result};

use super::quant_common::write_json;
use crate::deploy::build::{build_dir, find_trtexec, trtexec_version, verify_dir, BuildReport};
use crate::deploy::trtexec::CheckStatus;

#[derive(clap::Args)]
pub struct Args {
    /// Engine directories written by `pillarq emit`.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The trtexec binary (default: $TRTEXEC, PATH, /usr/src/tensorrt/bin/trtexec).
    #[arg(long)]
    pub trtexec: Option<PathBuf>,
    /// Do not build: check each directory's layers.json (written by its build script on the
    /// target) against its plan.
    #[arg(long)]
    pub verify_only: bool,
    /// Exit 0 even when a layer's precision in the engine differs from the plan.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Use the TensorRT builder API (cargo feature `tensorrt`) instead of trtexec.
    #[arg(long)]
    pub native: bool,
    /// Stop a build script (and the trtexec it runs) after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::deploy::process::BUILD_TIMEOUT_S)]
    pub timeout: u64,
    #[arg(long)]
    pub json: bool,
    /// Set by `pillarq run`: write verify.json, print nothing.
    #[arg(skip)]
    pub silent: bool,
}

impl Args {
    /// `pillarq run`'s build before a trtexec benchmark: every directory, mismatches reported
    /// in verify.json (and the report) rather than failing the run.
    pub fn for_run(dirs: Vec<PathBuf>, trtexec: Option<PathBuf>, timeout: u64) -> Args {
        Args {
            dirs,
            trtexec,
            verify_only: false,
            allow_mismatch: true,
            native: false,
            timeout,
            json: false,
            silent: true,
        }
    }
}

fn print(r: &BuildReport) {
    let v = r.tensorrt.map(|v| format!("TensorRT {v}, ")).unwrap_or_default();
    let size = r.engine_bytes.map(|b| format!(", engine {:.2} MB", b as f64 / 1e6)).unwrap_or_default();
    println!(
        "{}: {v}{} layers as planned, {} mismatched, {} not found, {} unknown{size}",
        r.dir, r.ok, r.mismatches, r.not_found, r.unknown
    );
    for c in r.checks.iter().filter(|c| c.status != CheckStatus::Ok) {
        let actual = c.actual.as_ref().map_or("?".into(), |p| p.to_string());
        let layer = c.engine_layer.as_deref().unwrap_or("-");
        println!("  {:?}: {} planned {}, engine {} (layer '{}')", c.status, c.node, c.expected, actual, layer);
        if !c.related.is_empty() {
            println!("    related engine layers: {}", c.related.join("; "));
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    if a.native {
        return native(&a);
    }
    let tool = if a.verify_only {
        None
    } else {
        let t = find_trtexec(a.trtexec.as_deref())?;
        let v = trtexec_version(&t)?;
        if !a.silent {
            eprintln!("trtexec {} (TensorRT {v})", t.display());
        }
        Some((t, v))
    };
    let mut reports = vec![];
    for d in &a.dirs {
        let r = match &tool {
            Some((t, v)) => build_dir(d, t, *v, std::time::Duration::from_secs(a.timeout))?,
            None => verify_dir(d, &d.join("layers.json"))?,
        };
        write_json(&d.join("verify.json"), &r)?;
        reports.push(r);
    }
    if a.json && !a.silent {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else if !a.silent {
        reports.iter().for_each(print);
    }
    if a.allow_mismatch {
        return Ok(());
    }
    let bad: usize = reports.iter().map(|r| r.mismatches).sum();
    if bad > 0 {
        bail!("{bad} layer(s) run at another precision than planned (see verify.json); --allow-mismatch accepts that");
    }
    if let Some(r) = reports.iter().find(|r| r.not_found > 0) {
        bail!("{}", not_found_summary(r));
    }
    Ok(())
}

/// Why a verification with plan layers missing from the engine fails, with what was found.
fn not_found_summary(r: &BuildReport) -> String {
    let missing: Vec<_> = r.checks.iter().filter(|c| c.status == CheckStatus::NotFound).collect();
    let found = r.checks.len() - missing.len();
    let example = missing.iter().find(|c| !c.related.is_empty()).unwrap_or(&missing[0]);
    let related = if example.related.is_empty() {
        "no engine layer names a node like it".to_string()
    } else {
        format!("engine layers that look related: {}", example.related.join("; "))
    };
    format!(
        "{}: {} of {} plan layers not found among the engine's {} layers ({found} found; e.g. '{}': {related}). \
         Is layers.json from this directory's engine, exported with --profilingVerbosity=detailed? \
         --allow-mismatch accepts that",
        r.dir,
        missing.len(),
        r.checks.len(),
        r.engine_layers,
        example.node
    )
}

#[cfg(feature = "tensorrt")]
fn native(a: &Args) -> Result<()> {
    use crate::deploy::native::{build_engine, NativeOptions};
    use crate::deploy::package::read_manifest;
    for d in &a.dirs {
        let man = read_manifest(d)?;
        let layer_precisions = man
            .layers
            .iter()
            .filter(|l| l.precision.is_float())
            .map(|l| (l.name.clone(), l.precision.as_str().to_string()))
            .collect();
        let opts = NativeOptions {
            strongly_typed: false,
            fp16: man.layers.iter().any(|l| l.precision == crate::quant::plan::Precision::Fp16),
            int8: man.layers.iter().any(|l| l.precision == crate::quant::plan::Precision::Int8),
            obey: true,
            layer_precisions,
            workspace_mib: None,
        };
        let onnx = if d.join("model_trt10.onnx").is_file() { d.join("model_trt10.onnx") } else { d.join("model.onnx") };
        build_engine(&onnx, &d.join("engine.plan"), &opts)?;
    }
    Ok(())
}

#[cfg(not(feature = "tensorrt"))]
fn native(_: &Args) -> Result<()> {
    bail!("--native needs a build with `--features tensorrt`; without it use trtexec (the default)")
}
