use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;

use crate::graph::{layers::total_params, shape_str, ValueInfo};
use crate::model::Model;
use crate::pointpillars::detect_layout;

#[derive(clap::Args)]
pub struct Args {
    /// ONNX model file.
    pub model: PathBuf,
    /// Print one JSON object (a stable interface for scripts) instead of tables.
    #[arg(long)]
    pub json: bool,
}

fn io_json(v: &[ValueInfo]) -> serde_json::Value {
    v.iter()
        .map(|v| {
            json!({
                "name": v.name,
                "dtype": v.dtype.name(),
                "shape": v.shape.as_ref().map(|s| s.iter().map(|d| match d {
                    crate::graph::Dim::Fixed(x) => json!(x),
                    crate::graph::Dim::Sym(s) => json!(s),
                }).collect::<Vec<_>>()),
            })
        })
        .collect()
}

/// The inspect report as JSON: `inputs`, `outputs`, `layout`, `params`, `flops`,
/// `quantizable_layers` (each with `name`, `op`, `params`, `flops`, ...), plus ops and metadata.
pub fn report(model: &Model) -> serde_json::Value {
    let g = &model.graph;
    let layer_flops: u64 = model.layers.iter().map(|l| l.flops).sum();
    json!({
        "model": model.file.path.display().to_string(),
        "file_bytes": model.file.file_bytes,
        "ir_version": model.file.model.ir_version,
        "opset": g.opset,
        "producer": model.file.model.producer_name,
        "layout": detect_layout(g),
        "inputs": io_json(&g.inputs),
        "outputs": io_json(&g.outputs),
        "ops": g.op_histogram(),
        "nodes": g.nodes.len(),
        "metadata": g.metadata,
        "params": total_params(g),
        "flops": layer_flops,
        "quantizable_layers": model.layers,
    })
}

pub fn run(a: Args) -> Result<()> {
    let model = Model::load(&a.model).with_context(|| format!("cannot inspect {}", a.model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report(&model))?);
        return Ok(());
    }
    print!("{}", render(&model));
    Ok(())
}

pub fn render(model: &Model) -> String {
    use std::fmt::Write;
    let g = &model.graph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model    {} ({} bytes, opset {}, {} nodes)",
        model.file.path.display(),
        model.file.file_bytes,
        g.opset,
        g.nodes.len()
    );
    let _ = writeln!(s, "layout   {:?}", detect_layout(g));
    for (title, vs) in [("input ", &g.inputs), ("output", &g.outputs)] {
        for v in vs.iter() {
            let _ = writeln!(
                s,
                "{title}   {:<16} {:<8} {}",
                v.name,
                v.dtype.name(),
                v.shape.as_ref().map(shape_str).unwrap_or("?".into())
            );
        }
    }
    let ops: Vec<String> = g.op_histogram().iter().map(|(k, v)| format!("{k} x{v}")).collect();
    let _ = writeln!(s, "ops      {}", ops.join(", "));
    for (k, v) in &g.metadata {
        let short: String = v.chars().take(100).collect();
        let _ = writeln!(s, "meta     {k} = {short}{}", if v.len() > 100 { " ..." } else { "" });
    }
    let _ = writeln!(s, "\nquantizable layers ({}):", model.layers.len());
    let _ = writeln!(
        s,
        "{:>3}  {:<44} {:<13} {:>5} {:>5} {:>6} {:>6} {:<24} {:>9} {:>8}",
        "#", "name", "op", "cin", "cout", "kernel", "stride", "fused", "params", "MFLOP"
    );
    for l in &model.layers {
        let dims = |v: &[usize]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("x")
            }
        };
        let _ = writeln!(
            s,
            "{:>3}  {:<44} {:<13} {:>5} {:>5} {:>6} {:>6} {:<24} {:>9} {:>8.1}",
            l.index,
            l.name,
            l.op,
            l.in_channels,
            l.out_channels,
            dims(&l.kernel),
            dims(&l.stride),
            if l.fused.is_empty() { "-".into() } else { l.fused.join("+") },
            l.params,
            l.flops as f64 / 1e6
        );
    }
    let lp: usize = model.layers.iter().map(|l| l.params).sum();
    let lf: u64 = model.layers.iter().map(|l| l.flops).sum();
    let _ = writeln!(
        s,
        "\ntotal    {} params ({} in quantizable layers), {:.2} GFLOP per run in quantizable layers",
        total_params(g),
        lp,
        lf as f64 / 1e9
    );
    s
}
