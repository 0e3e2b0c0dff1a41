use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::exec::cpu::CpuExecutor;
use crate::model::Model;
use crate::npy::{read_npy, write_npy};
use crate::pointpillars::random_pillar_inputs;
use crate::tensor::Tensor;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model file.
    pub model: PathBuf,
    #[command(flatten)]
    pub config: super::model_config::ConfigArgs,
    /// An input as NAME=FILE.npy (repeat for every model input).
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    pub inputs: Vec<String>,
    /// Instead of --input: plausible random pillar inputs from this seed (also written to --out).
    #[arg(long, value_name = "SEED", conflicts_with = "inputs")]
    pub random: Option<u64>,
    /// Output folder: one <output name>.npy per model output.
    #[arg(long)]
    pub out: PathBuf,
    /// Worker threads (0 = all cores). Results are identical for any count.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Run this many times and report the median network time (after one warm-up run).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Print the timing as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Print where the time goes: per node of the last run, sorted, to stderr.
    #[arg(long)]
    pub profile: bool,
    /// Run this PrecisionPlan (JSON: INT8 fake-quant / FP16 rounding per layer).
    #[arg(long)]
    pub plan: Option<PathBuf>,
    /// Calibration file (`pillarq calibrate`) for a plan without a "calibration" object.
    #[arg(long, requires = "plan")]
    pub calib: Option<PathBuf>,
}

/// File name for an edge name (ONNX names may hold '/', ':').
pub fn npy_name(edge: &str) -> String {
    let s: String =
        edge.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    format!("{s}.npy")
}

pub fn load_inputs(specs: &[String]) -> Result<Vec<(String, Tensor)>> {
    specs
        .iter()
        .map(|s| {
            let (name, file) = s.split_once('=').with_context(|| format!("--input '{s}' should be NAME=FILE.npy"))?;
            if name.is_empty() || file.is_empty() {
                anyhow::bail!(
                    "--input '{s}' should be NAME=FILE.npy (the {} is empty)",
                    if name.is_empty() { "name" } else { "file" }
                );
            }
            let t = read_npy(Path::new(file)).with_context(|| format!("cannot read input '{name}'"))?;
            Ok((name.to_string(), t))
        })
        .collect()
}

pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn print_profile(per_node: &mut [(String, String, f64)]) {
    let total: f64 = per_node.iter().map(|p| p.2).sum();
    let mut by_op: std::collections::BTreeMap<&str, f64> = Default::default();
    for (_, op, ms) in per_node.iter() {
        *by_op.entry(op.as_str()).or_default() += ms;
    }
    eprintln!("time by op type ({total:.2} ms in nodes):");
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (op, ms) in ops {
        eprintln!("  {op:<20} {ms:>9.2} ms {:>5.1} %", 100.0 * ms / total.max(1e-9));
    }
    per_node.sort_by(|a, b| b.2.total_cmp(&a.2));
    eprintln!("slowest nodes:");
    for (name, op, ms) in per_node.iter().take(15) {
        eprintln!("  {name:<52} {op:<16} {ms:>8.2} ms");
    }
}

pub fn run(a: Args) -> Result<()> {
    let model = Model::load(&a.model).with_context(|| format!("cannot load {}", a.model.display()))?;
    let inputs = match a.random {
        Some(seed) => {
            let cfg = a.config.optional(&model)?.map(|r| r.cfg);
            random_pillar_inputs(&model.graph, cfg.as_ref(), seed, 0.6)?
        }
        None if a.inputs.is_empty() => {
            bail!("give every model input as --input NAME=FILE.npy, or --random SEED")
        }
        None => {
            let inputs = load_inputs(&a.inputs)?;
            // Pillar inputs from files: check them against the model's grid where it is known.
            if let Some(r) = a.config.optional(&model).ok().flatten() {
                let [nx, ny, _] = r.cfg.grid_size;
                r.io.check_inputs(&inputs, [nx, ny])?;
            }
            inputs
        }
    };
    let exec = CpuExecutor::new(&model.graph, a.threads)?;
    let plan = match &a.plan {
        Some(p) => Some(super::quant_common::compile_plan(&exec, &model, p, a.calib.as_deref())?),
        None => None,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    if a.random.is_some() {
        for (name, t) in &inputs {
            write_npy(&a.out.join(npy_name(name)), t)?;
        }
    }
    let mut times = Vec::new();
    let mut outputs = Vec::new();
    let runs = if a.repeat > 1 { a.repeat + 1 } else { 1 };
    for i in 0..runs {
        let t0 = Instant::now();
        let mut last = Instant::now();
        let mut per_node: Vec<(String, String, f64)> = Vec::new();
        outputs = exec
            .run_with(&inputs, plan.as_ref(), &mut |node, _| {
                let now = Instant::now();
                per_node.push((node.name.clone(), node.op_type.clone(), (now - last).as_secs_f64() * 1e3));
                last = now;
            })
            .with_context(|| format!("running {}", a.model.display()))?;
        if a.profile && i + 1 == runs {
            print_profile(&mut per_node);
        }
        if i > 0 || runs == 1 {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    for (name, t) in &outputs {
        let path = a.out.join(npy_name(name));
        write_npy(&path, t)?;
        if !a.json {
            println!("{name:<16} {:?} -> {}", t.shape, path.display());
        }
    }
    let med = median(&mut times);
    if a.json {
        println!("{}", serde_json::json!({"median_ms": med, "runs": times.len(), "threads": exec.threads()}));
    } else {
        println!("network time: median {med:.2} ms over {} run(s), {} thread(s)", times.len(), exec.threads());
    }
    Ok(())
}
