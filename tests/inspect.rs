//! `pillarq inspect` facts for the bundled models, through the library and the CLI's JSON.

mod common;

use std::process::Command;

use common::*;
use pillarq::graph::layers::total_params;
use pillarq::model::Model;
use pillarq::pointpillars::{detect_layout, Layout};

fn inspect_json(model: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pillarq"))
        .args(["inspect", "--json"])
        .arg(bundled(model))
        .output()
        .expect("run pillarq");
    assert!(out.status.success(), "inspect --json failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints one JSON object")
}

#[test]
fn small_model_layers() {
    let m = Model::load(&bundled("pointpillars_small.onnx")).unwrap();
    let l = &m.layers;
    assert_eq!(l.len(), 23, "quantizable layers");
    assert_eq!(l[0].name, "/pfn/linear/MatMul");
    assert_eq!(l[0].op, "MatMul");
    assert_eq!(l[0].fused, vec!["BatchNormalization", "Relu"]);
    let heads = ["/head/conv_cls/Conv", "/head/conv_box/Conv", "/head/conv_dir_cls/Conv"];
    for (layer, name) in l[20..].iter().zip(heads) {
        assert_eq!(layer.name, name);
        assert!(layer.fused.is_empty(), "{name} fuses {:?}", layer.fused);
    }
    // Every backbone conv and deconv fuses BN + ReLU.
    for layer in &l[1..20] {
        assert_eq!(layer.fused, vec!["BatchNormalization", "Relu"], "{}", layer.name);
    }
    assert_eq!(l.iter().filter(|x| x.op == "ConvTranspose").count(), 3, "deblocks");
    let flops: u64 = l.iter().map(|x| x.flops).sum();
    println!("small: {:.3} GFLOP, {} params", flops as f64 / 1e9, total_params(&m.graph));
    // docs/models.md: the stride-1 head (upsample [2, 4, 8] to 32 channels each): 5.37 GFLOP.
    assert!(flops > 5_000_000_000 && flops <= 5_500_000_000, "{flops}");
    // docs/models.md: 1,359,752 parameters (layer weights and biases, BN scale and shift).
    let params = total_params(&m.graph) as f64;
    assert!((params / 1_359_752.0 - 1.0).abs() <= 0.01, "{params}");
    assert_eq!(detect_layout(&m.graph), Layout::Standard);
}

#[test]
fn kitti_flops_and_params() {
    let j = inspect_json("pointpillars_kitti.onnx");
    let flops = j["flops"].as_u64().unwrap() as f64;
    let params = j["params"].as_u64().unwrap() as f64;
    println!("kitti: {:.3} GFLOP, {params} params", flops / 1e9);
    assert!((60e9..=75e9).contains(&flops), "{flops}");
    assert!((params / 4.83e6 - 1.0).abs() <= 0.01, "{params}");
    assert_eq!(j["layout"], "standard");
    assert_eq!(j["quantizable_layers"].as_array().unwrap().len(), 23);
}

#[test]
fn json_report_has_the_documented_keys() {
    let j = inspect_json("pointpillars_small.onnx");
    for k in ["inputs", "outputs", "layout", "params", "flops", "quantizable_layers"] {
        assert!(j.get(k).is_some(), "missing key {k}");
    }
    let inputs: Vec<&str> = j["inputs"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(inputs, ["voxels", "voxel_idxs", "voxel_num"]);
    let outputs: Vec<&str> = j["outputs"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(outputs, ["cls_preds", "box_preds", "dir_cls_preds"]);
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([8000, 32, 10]));
    let layers = j["quantizable_layers"].as_array().unwrap();
    assert_eq!(layers.len(), 23);
    let mut sum = 0u64;
    for l in layers {
        for k in ["name", "op", "params", "flops"] {
            assert!(l.get(k).is_some(), "layer lacks {k}: {l}");
        }
        assert!(l["params"].as_u64().unwrap() > 0);
        assert!(l["flops"].as_u64().unwrap() > 0, "{l}");
        sum += l["flops"].as_u64().unwrap();
    }
    assert_eq!(sum, j["flops"].as_u64().unwrap());
    assert_eq!(layers[0]["name"], "/pfn/linear/MatMul");
    assert_eq!(j["layout"], "standard");
}

#[test]
fn cudapp_layout_is_detected() {
    let j = inspect_json("pointpillars_kitti_cudapp.onnx");
    assert_eq!(j["layout"], "cudapp");
    let std = inspect_json("pointpillars_kitti.onnx");
    // Same weights, same layers, same FLOPs.
    assert_eq!(j["params"], std["params"]);
    assert_eq!(j["flops"], std["flops"]);
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["quantizable_layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&j), names(&std));
}
