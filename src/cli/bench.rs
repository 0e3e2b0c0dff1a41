use std::path::PathBuf;

use anyhow::{Context, Result};

use super::quant_common::write_json;
use crate::deploy::bench::{bench_cpu, bench_trtexec, BenchResult, CpuBench};
use crate::deploy::build::find_trtexec;
use crate::kitti::KittiDir;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Cpu,
    Trtexec,
}

#[derive(clap::Args)]
pub struct Args {
    /// Engine directories written by `pillarq emit` (and built by `pillarq build` for trtexec).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// Timed runs after warm-up.
    #[arg(long, default_value_t = 50)]
    pub runs: usize,
    /// Warm-up runs (cpu) or milliseconds (trtexec).
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// KITTI-format data: network inputs from its first frame, and end-to-end timing (voxelize,
    /// network, decode + NMS) over its frames (cpu). Without it: random pillar inputs, network only.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "val")]
    pub split: String,
    /// The FP32 model the plans were made for (default: the one emit.json names, else the
    /// directory's model_fp32.onnx).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The FP32 model's pre/post-processing configuration (OpenPCDet YAML or pillarq's keys),
    /// for a model without metadata.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub trtexec: Option<PathBuf>,
    /// Stop trtexec (and every process it started) after this many seconds (trtexec backend).
    #[arg(long, value_name = "SECONDS", default_value_t = crate::deploy::process::BENCH_TIMEOUT_S)]
    pub timeout: u64,
    /// Worker threads of the cpu backend (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Where to write the results.
    #[arg(long, default_value = "out/bench.json")]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// Set by `pillarq run`: write the files, print nothing.
    #[arg(skip)]
    pub silent: bool,
}

pub fn run(a: Args) -> Result<()> {
    let data = a.data.as_ref().map(KittiDir::open).transpose()?;
    let ids = match &data {
        Some(d) => d.split_ids(&a.split)?,
        None => vec![],
    };
    let trtexec = match a.backend {
        Backend::Trtexec => Some(find_trtexec(a.trtexec.as_deref())?),
        Backend::Cpu => None,
    };
    let mut results: Vec<BenchResult> = vec![];
    for d in &a.dirs {
        let r = match &trtexec {
            Some(t) => bench_trtexec(d, t, a.runs, a.warmup, std::time::Duration::from_secs(a.timeout))?,
            None => {
                let cfg = CpuBench {
                    model: a.model.as_deref(),
                    config: a.config.as_deref(),
                    data: data.as_ref().filter(|_| !ids.is_empty()).map(|d| (d, ids.as_slice())),
                    runs: a.runs,
                    warmup: a.warmup as usize,
                    threads: a.threads,
                };
                bench_cpu(d, &cfg).with_context(|| format!("bench {}", d.display()))?
            }
        };
        if !a.json && !a.silent {
            eprintln!("{}: median {:.2} ms", r.engine, r.median_ms);
        }
        results.push(r);
    }
    let v = serde_json::json!({ "results": results });
    write_json(&a.out, &v)?;
    if a.silent {
        return Ok(());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>8} {:>10} {:>9} {:>9} {:>10} {:>10} {:>9}  device",
        "engine", "backend", "median ms", "p99 ms", "e2e ms", "size MB", "weights MB", "vs FP32"
    );
    for r in &results {
        let e2e = r.e2e_median_ms.map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "{:<12} {:>8} {:>10.2} {:>9.2} {:>9} {:>10.2} {:>10.2} {:>8.2}x  {}",
            r.engine,
            r.backend,
            r.median_ms,
            r.p99_ms,
            e2e,
            r.size_bytes as f64 / 1e6,
            r.weight_bytes.total as f64 / 1e6,
            r.weight_bytes.fp32_reference as f64 / r.weight_bytes.total.max(1) as f64,
            r.device
        );
    }
    println!("-> {}", a.out.display());
    Ok(())
}
