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
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
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
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let mut cmd = Command::new(python());
    cmd.arg(repo().join("scripts/ort_run.py")).arg(model);
    for (i, (name, t)) in inputs.iter().enumerate() {
        let f = dir.path().join(format!("in{i}.npy"));
        write_npy(&f, t).expect("write npy");
        cmd.arg("--input").arg(format!("{name}={}", f.display()));
    }
    cmd.arg("--out").arg(&out).arg("--threads").arg(threads.to_string());
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

pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

pub fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        domain: Some(String::new()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn raw_init(name: &str, dims: &[usize], dt: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(dt),
        raw_data: Some(raw),
        ..Default::default()
    }
}

/// A float32 initializer stored as `raw_data`.
pub fn init_f32(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    raw_init(name, dims, FLOAT, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

pub fn init_i64(name: &str, dims: &[usize], v: &[i64]) -> TensorProto {
    assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    raw_init(name, dims, INT64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

pub fn init_i8(name: &str, dims: &[usize], v: &[i8]) -> TensorProto {
    assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    raw_init(name, dims, INT8, v.iter().map(|&x| x as u8).collect())
}

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
