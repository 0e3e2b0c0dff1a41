//! TensorRT calibration caches (issue 13, part 5): the cache `calibrate` writes and the one `emit`
//! writes give a scale for every tensor an INT8 layer reads or writes, under the ONNX edge names
//! TensorRT sees (the Pad outputs before the stride-2 convs, the PFN's BatchNormalization path),
//! and each scale is the threshold of that tensor's values as onnxruntime computes them.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pillarq::graph::{Graph, Node};
use pillarq::model::Model;
use pillarq::quant::calib::parse_trt_cache;

/// The tensors a cache must list for `int8` layers, derived here from the graph: what each layer
/// reads (and, through zero Pads and shuffles, the edge before), and each edge of the chain it
/// alone feeds (BatchNormalization, Transpose, Relu, ReduceMax) except the two TensorRT fusions
/// remove: a Conv's output into its BatchNormalization, a Conv's or BN's output into its Relu.
fn required(g: &Graph, int8: &[&str]) -> BTreeSet<String> {
    let producer = |e: &str| g.nodes.iter().find(|n| n.outputs.iter().any(|o| o == e));
    let readers = |e: &str| g.nodes.iter().filter(|n| n.inputs.iter().any(|i| i == e)).collect::<Vec<&Node>>();
    let mut out = BTreeSet::new();
    for name in int8 {
        let q = g.node(name).unwrap();
        let mut x = q.inputs[0].clone();
        out.insert(x.clone());
        while let Some(p) = producer(&x) {
            let zero_pad = p.op_type == "Pad"
                && p.inputs
                    .get(2)
                    .is_none_or(|v| v.is_empty() || g.initializers[v].as_f32().unwrap().iter().all(|&z| z == 0.0));
            if !(zero_pad || p.op_type == "Transpose" || p.op_type == "Reshape") {
                break;
            }
            x = p.inputs[0].clone();
            out.insert(x.clone());
        }
        let (mut y, mut prev) = (q.outputs[0].clone(), q.op_type.clone());
        loop {
            let r = readers(&y);
            let next = if r.len() == 1 && !g.is_output(&y) { Some(r[0]) } else { None };
            let op = next.map_or("", |n| n.op_type.as_str());
            let conv = prev == "Conv" || prev == "ConvTranspose";
            let fused =
                (conv && op == "BatchNormalization") || ((conv || prev == "BatchNormalization") && op == "Relu");
            if !fused {
                out.insert(y.clone());
            }
            match next {
                Some(n) if ["BatchNormalization", "Transpose", "Relu", "ReduceMax"].contains(&op) => {
                    prev = n.op_type.clone();
                    y = n.outputs[0].clone();
                }
                _ => break,
            }
        }
    }
    out
}

fn cache_of(path: &Path) -> BTreeMap<String, f32> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_trt_cache(&text).unwrap().1.into_iter().collect()
}

/// max |x| of each named tensor over the frames, as onnxruntime computes it on the pillar inputs
/// `pillarq voxelize` writes for the frame (field-of-view crop included, as calibration does).
fn ort_amax(model: &Path, data: &Path, ids: &[&str], tensors: &[String], tmp: &Path) -> HashMap<String, f64> {
    let mut dirs = Vec::new();
    for id in ids {
        let out = tmp.join(format!("vox-{id}"));
        let points = data.join(format!("training/velodyne/{id}.bin"));
        let calib = data.join(format!("training/calib/{id}.txt"));
        let (code, _, err) = pillarq_bin(&[
            "voxelize",
            "--model",
            model.to_str().unwrap(),
            "--points",
            points.to_str().unwrap(),
            "--calib",
            calib.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        dirs.push(out.to_str().unwrap().to_string());
    }
    let script = r#"
import json, sys
import numpy as np, onnx, onnxruntime as ort
model, names, dirs = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3:]
m = onnx.load(model)
known = {o.name for o in m.graph.output}
for n in names:
    if n not in known:
        m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
amax = {n: 0.0 for n in names}
for d in dirs:
    feed = {i.name: np.load(f"{d}/{i.name}.npy") for i in s.get_inputs()}
    for n, v in zip(names, s.run(names, feed)):
        amax[n] = max(amax[n], float(np.abs(v).max()))
print(json.dumps(amax))
"#;
    let res = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(model)
        .arg(serde_json::to_string(tensors).unwrap())
        .args(&dirs)
        .output()
        .unwrap();
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    serde_json::from_slice(&res.stdout).unwrap()
}

fn calibrate(model: &Path, data: &Path, out: &Path) -> PathBuf {
    calibrate_2_frames(model, data, out, "max", &[]);
    out.join("pointpillars_small-max-2.json")
}

fn emit(model: &Path, plan: &str, calib: &Path, out: &Path) -> (BTreeMap<String, f32>, String) {
    let plan_file = out.with_extension("plan.json");
    std::fs::write(&plan_file, plan).unwrap();
    let (code, _, err) = pillarq_bin(&[
        "emit",
        "--model",
        model.to_str().unwrap(),
        "--plan",
        plan_file.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    (cache_of(&out.join("calib.cache")), err)
}

#[test]
fn both_caches_scale_every_tensor_an_int8_layer_reads_or_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, _, err) =
        pillarq_bin(&["synth", "--out", data.to_str().unwrap(), "--train", "2", "--val", "1", "--seed", "5"]);
    assert_eq!(code, 0, "{err}");
    let model = bundled("pointpillars_small.onnx");
    let m = Model::load(&model).unwrap();
    let all: Vec<&str> = m.layers.iter().map(|l| l.name.as_str()).collect();
    let need = required(&m.graph, &all);
    // What the issue names: the Pad outputs before the stride-2 convs, the PFN's BN path.
    for t in [
        "/backbone/blocks.0/blocks.0.0/Pad_output_0",
        "/backbone/blocks.1/blocks.1.0/Pad_output_0",
        "/backbone/blocks.2/blocks.2.0/Pad_output_0",
        "/pfn/linear/MatMul_output_0",
        "/pfn/Transpose_output_0",
        "/pfn/norm/BatchNormalization_output_0",
        "/pfn/Transpose_1_output_0",
        "/pfn/Relu_output_0",
        "/head/conv_cls/Conv_output_0",
    ] {
        assert!(need.contains(t), "the derivation misses {t}");
    }

    let calib = calibrate(&model, &data, &tmp.path().join("calib"));
    let cache = cache_of(&calib.with_extension("cache"));
    let missing: Vec<&String> = need.iter().filter(|t| !cache.contains_key(*t)).collect();
    assert!(missing.is_empty(), "calibrate's cache lacks {missing:?}");

    // Each scale is max|x| / 127 of the tensor over the two calibration frames (method max).
    let names: Vec<String> = need.iter().cloned().collect();
    let amax = ort_amax(&model, &data, &["000000", "000001"], &names, tmp.path());
    for t in &names {
        let (got, want) = (cache[t] as f64 * 127.0, amax[t]);
        assert!((got - want).abs() <= 1e-4 * want.max(1e-3), "{t}: cache amax {got}, onnxruntime max|x| {want}");
    }
    // The PFN's tensors are recomputed, not copied from a neighbour: the MatMul's differs.
    assert_ne!(cache["/pfn/linear/MatMul_output_0"], cache["/pfn/norm/BatchNormalization_output_0"]);

    // emit: all INT8 gives the same cache; the PFN in FP16 drops exactly its tensors.
    let (all_int8, _) = emit(&model, r#"{"default": "int8"}"#, &calib, &tmp.path().join("e1"));
    assert_eq!(all_int8.keys().collect::<BTreeSet<_>>(), cache.keys().collect::<BTreeSet<_>>());
    for (t, s) in &all_int8 {
        assert_eq!(s.to_bits(), cache[t].to_bits(), "{t}");
    }
    let plan = r#"{"default": "int8", "layers": {"/pfn/linear/MatMul": "fp16"}}"#;
    let (mixed, _) = emit(&model, plan, &calib, &tmp.path().join("e2"));
    let rest: Vec<&str> = all.iter().copied().filter(|l| *l != "/pfn/linear/MatMul").collect();
    assert_eq!(mixed.keys().cloned().collect::<BTreeSet<_>>(), required(&m.graph, &rest));
    assert!(!mixed.contains_key("/pfn/norm/BatchNormalization_output_0") && !mixed.contains_key("voxels"));

    // A calibration from before output thresholds were kept: emit says what the cache lacks.
    let mut old: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&calib).unwrap()).unwrap();
    old["calibration"].as_object_mut().unwrap().remove("outputs").unwrap();
    let old_file = tmp.path().join("old.json");
    std::fs::write(&old_file, serde_json::to_string(&old).unwrap()).unwrap();
    let (partial, err) = emit(&model, r#"{"default": "int8"}"#, &old_file, &tmp.path().join("e3"));
    assert!(err.contains("no threshold for") && err.contains("/pfn/linear/MatMul_output_0"), "{err}");
    assert!(partial.contains_key("/backbone/blocks.1/blocks.1.0/Pad_output_0"));
    assert!(!partial.contains_key("/pfn/norm/BatchNormalization_output_0"));
}
