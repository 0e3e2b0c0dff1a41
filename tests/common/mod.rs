//! Shared helpers for the integration tests: paths, the onnxruntime peer (through
//! `scripts/ort_run.py`), running pillarq, and building small ONNX models from prost types.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pillarq::exec::cpu::{max_rel_diff, CpuExecutor};
use pillarq::model::Model;
use pillarq::npy::{read_npy, write_npy};
use pillarq::onnx::proto::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use pillarq::onnx::save_model;
use pillarq::pointpillars::SplitMix64;
use pillarq::tensor::{Data, Tensor};

pub type Named = Vec<(String, Tensor)>;

/// The repository root (where `onnx/` and `scripts/` live).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bundled(name: &str) -> PathBuf {
    repo().join("onnx").join(name)
}

/// The Python of the onnxruntime venv: `$PILLARQ_PYTHON`, else `.venv/bin/python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("PILLARQ_PYTHON") {
        let p = PathBuf::from(p);
        if p.exists() {
            return p;
        }
        panic!(
            "PILLARQ_PYTHON={} does not exist; run `bash scripts/test.sh` (it creates the onnxruntime venv)",
            p.display()
        );
    }
    let p = repo().join(".venv/bin/python");
    if !p.exists() {
        panic!("run `bash scripts/test.sh` (it creates the onnxruntime venv)");
    }
    p
}

/// Runs onnxruntime (CPU, `threads` intra-op threads) on `model` with the given named inputs and
/// returns every output, keyed by output name.
pub fn ort_run(model: &Path, inputs: &[(String, Tensor)], threads: usize) -> HashMap<String, Tensor> {
    ort_run_with(model, inputs, threads, &[])
}

/// `ort_run` with extra arguments for scripts/ort_run.py (`--no-optimize`, `--check`).
pub fn ort_run_with(
    model: &Path,
    inputs: &[(String, Tensor)],
    threads: usize,
    extra: &[&str],
) -> HashMap<String, Tensor> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("scripts/ort_run.py")).arg(model);
    for (i, (name, t)) in inputs.iter().enumerate() {
        let f = dir.path().join(format!("in{i}.npy"));
        write_npy(&f, t).expect("write npy");
        cmd.arg("--input").arg(format!("{name}={}", f.display()));
    }
    cmd.arg("--out").arg(&out).arg("--threads").arg(threads.to_string()).args(extra);
    let res = cmd.output().expect("cannot start python for ort_run.py");
    assert!(
        res.status.success(),
        "ort_run.py failed on {}:\n{}",
        model.display(),
        String::from_utf8_lossy(&res.stderr)
    );
    let mut outs = HashMap::new();
    for e in std::fs::read_dir(&out).expect("ort output dir") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "npy") {
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            outs.insert(name, read_npy(&p).expect("read ort output"));
        }
    }
    outs
}

/// Loads `model` and runs it in pillarq's CPU executor.
pub fn pq_run(model: &Path, inputs: &Named, threads: usize) -> Named {
    let m = Model::load(model).unwrap_or_else(|e| panic!("load {}: {e}", model.display()));
    let exec = CpuExecutor::new(&m.graph, threads).expect("executor");
    exec.run(inputs).unwrap_or_else(|e| panic!("run {}: {e}", model.display()))
}

/// Compares pillarq outputs with onnxruntime outputs: float outputs by max |pq - ort| / max |ort|
/// (<= `bound`), other outputs exactly. Prints one line per output; returns the worst ratio.
pub fn assert_close(label: &str, pq: &Named, ort: &HashMap<String, Tensor>, bound: f32) -> f32 {
    assert_eq!(pq.len(), ort.len(), "{label}: output count differs");
    let mut worst = 0f32;
    for (name, t) in pq {
        let o = ort.get(name).unwrap_or_else(|| panic!("{label}: onnxruntime has no output '{name}'"));
        assert_eq!(t.shape, o.shape, "{label}: shape of '{name}'");
        match (&t.data, &o.data) {
            (Data::F32(_), Data::F32(ov)) => {
                let r = max_rel_diff(t, o).unwrap();
                let peak = ov.iter().fold(0f32, |m, v| m.max(v.abs()));
                println!("{label}: {name:<16} max|pq-ort|/max|ort| = {r:.3e} (max|ort| = {peak:.4})");
                assert!(peak > 0.0, "{label}: output '{name}' is all zeros (test is vacuous)");
                assert!(r <= bound, "{label}: output '{name}' differs: {r:e} > {bound:e}");
                worst = worst.max(r);
            }
            _ => {
                assert_eq!(t.to_i64_vec(), o.to_i64_vec(), "{label}: integer output '{name}' differs");
                println!("{label}: {name:<16} (integer output) identical");
            }
        }
    }
    worst
}

/// How far `a` is from the reference `b`: relative L2, max |a-b| / max |b|, and the fraction of
/// elements off by more than 1e-3 of max |b|.
pub struct RelDiff {
    pub rel_l2: f64,
    pub max_rel: f64,
    pub frac_over_1e3: f64,
}

pub fn rel_diff(a: &[f32], b: &[f32]) -> RelDiff {
    let max_b = b.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let (mut num, mut den, mut worst, mut over) = (0f64, 0f64, 0f64, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        let d = (x - y).abs() as f64;
        num += d * d;
        den += (y as f64) * (y as f64);
        worst = worst.max(d);
        if d > 1e-3 * max_b {
            over += 1;
        }
    }
    RelDiff { rel_l2: (num / den).sqrt(), max_rel: worst / max_b, frac_over_1e3: over as f64 / a.len() as f64 }
}

/// Runs the pillarq binary: (exit code, stdout, stderr). Fails the test if it panicked.
pub fn pillarq_bin(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pillarq")).args(args).output().expect("run pillarq");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "pillarq {args:?} panicked:\n{err}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

// ---------------------------------------------------------------------------------------------
// Random data

pub fn rand_f32(rng: &mut SplitMix64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| lo + (hi - lo) * rng.unit()).collect()
}

pub fn rand_tensor(rng: &mut SplitMix64, shape: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(shape.to_vec(), rand_f32(rng, n, lo, hi))
}

// ---------------------------------------------------------------------------------------------
// Building ONNX models from prost types (opset 17, IR 8).

pub const FLOAT: i32 = DataType::Float as i32;
pub const INT64: i32 = DataType::Int64 as i32;
pub const INT32: i32 = DataType::Int32 as i32;
pub const INT8: i32 = DataType::Int8 as i32;
pub const BOOL: i32 = DataType::Bool as i32;

#[allow(unused_imports)]
pub use pillarq::onnx::build::{attr_f, attr_i, attr_ints, attr_s, init_f32, init_i64, init_i8, node};

/// A tensor value info with static dims (`None` dims: no shape at all).
pub fn vi(name: &str, elem_type: i32, dims: Option<&[usize]>) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type),
                shape: dims.map(|d| TensorShapeProto {
                    dim: d
                        .iter()
                        .map(|&x| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(x as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn build_model(
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        producer_name: Some("pillarq-tests".into()),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(GraphProto {
            name: Some("test".into()),
            node: nodes,
            initializer: initializers,
            input: inputs,
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Saves `model` as `dir/name` and returns the path.
pub fn write_model(dir: &Path, name: &str, model: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    save_model(model, &p).expect("save model");
    p
}

/// A BatchNormalization's four parameter initializers `{p}_scale/_bias/_mean/_var` for `c`
/// channels (gamma ~ U(0.5, 1.5), beta ~ U(-0.2, 0.2), mean ~ U(-0.2, 0.2), var ~ U(0.5, 1.5)).
pub fn bn_inits(rng: &mut SplitMix64, p: &str, c: usize) -> Vec<TensorProto> {
    vec![
        init_f32(&format!("{p}_scale"), &[c], &rand_f32(rng, c, 0.5, 1.5)),
        init_f32(&format!("{p}_bias"), &[c], &rand_f32(rng, c, -0.2, 0.2)),
        init_f32(&format!("{p}_mean"), &[c], &rand_f32(rng, c, -0.2, 0.2)),
        init_f32(&format!("{p}_var"), &[c], &rand_f32(rng, c, 0.5, 1.5)),
    ]
}

pub fn bn_node(p: &str, x: &str, y: &str) -> NodeProto {
    node(
        "BatchNormalization",
        &format!("/{p}/BatchNormalization"),
        &[x, &format!("{p}_scale"), &format!("{p}_bias"), &format!("{p}_mean"), &format!("{p}_var")],
        &[y],
        vec![attr_f("epsilon", 1e-3)],
    )
}

/// `pillarq calibrate` of `model` on the first 2 frames of `data`'s train split into `out`, with
/// `--method methods` and any further arguments; panics with stderr unless it exits 0.
pub fn calibrate_2_frames(model: &Path, data: &Path, out: &Path, methods: &str, extra: &[&str]) {
    let mut args = vec!["calibrate", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap()];
    args.extend(["--frames", "2", "--method", methods, "--out", out.to_str().unwrap(), "--quiet"]);
    args.extend(extra);
    // Plain statistics unless the test asks for a recipe (the default recipe runs the frames
    // again to refine; file names then carry the recipe).
    if !extra.contains(&"--recipe") {
        args.extend(["--recipe", "none"]);
    }
    let (code, _, err) = pillarq_bin(&args);
    assert_eq!(code, 0, "{err}");
}

/// `cal` with every kind of PTQ-recipe refinement a plan can carry (issue 14), for the parity
/// tests: the pillar net's input equalized per feature (alpha 1, from `inputs`' per-feature
/// max, its threshold recomputed for the equalized input), rounded weight levels on a backbone
/// conv, and every layer's bias moved per channel (as bias correction would). The values are arbitrary but realistic; what is tested
/// is that pillarq, `emit` and an independent Q/DQ model compute the same function from them.
pub fn with_refinement(
    cal: &pillarq::quant::plan::Calibration,
    m: &Model,
    exec: &CpuExecutor,
    inputs: &Named,
) -> pillarq::quant::plan::Calibration {
    let mut cal = cal.clone();
    let pfn = &m.layers[0].name;
    let (edge, _) = exec.layer_edges(pfn).unwrap();
    let x = &inputs.iter().find(|(n, _)| n == edge).expect("the pillar net reads a graph input").1;
    let c = *x.shape.last().unwrap();
    let mut amax = vec![0f32; c];
    for row in x.as_f32().unwrap().chunks_exact(c) {
        for (a, v) in amax.iter_mut().zip(row) {
            *a = a.max(v.abs());
        }
    }
    let top = amax.iter().copied().fold(0f32, f32::max);
    let mul: Vec<f32> = amax.iter().map(|&a| if a > 0.0 { top / a } else { 1.0 }).collect();
    let scaled_max = x.as_f32().unwrap().iter().enumerate().map(|(i, v)| (v * mul[i % c]).abs()).fold(0f32, f32::max);
    cal.activations.get_mut(pfn).unwrap().amax =
        if cal.pow2_scales { pillarq::quant::calib::pow2_amax(scaled_max) } else { scaled_max };
    cal.layers.entry(pfn.clone()).or_default().input_mul = mul;
    // Rounded weights: round-to-nearest's levels moved by one step here and there (as GPTQ
    // moves them) on a backbone conv.
    let conv = &m.layers[2].name;
    let (node, w) = exec.layer_weight(conv).unwrap();
    let axis = pillarq::exec::cpu::precision::weight_channel_axis(node);
    let (mut levels, _) = pillarq::exec::cpu::precision::quantize_weight(&w, axis, cal.pow2_scales).unwrap();
    for (i, l) in levels.iter_mut().enumerate() {
        let step = if i % 7 == 0 {
            1
        } else if i % 11 == 0 {
            -1
        } else {
            0
        };
        *l = (*l as i32 + step).clamp(-127, 127) as i8;
    }
    cal.layers.entry(conv.clone()).or_default().set_weight_levels(&levels);
    for l in &m.layers {
        let b = exec.layer_bias(&l.name).unwrap();
        let moved = b.as_f32().unwrap().iter().enumerate().map(|(k, v)| v + 0.01 * ((k % 5) as f32 - 2.0)).collect();
        cal.layers.entry(l.name.clone()).or_default().bias = moved;
    }
    cal
}
