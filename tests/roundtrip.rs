//! ONNX I/O: decode + encode gives back the same bytes; external-data initializers load and
//! run exactly like embedded ones.

mod common;

use std::path::Path;

use common::*;
use pillarq::model::Model;
use pillarq::onnx::proto::{tensor_proto::DataLocation, StringStringEntryProto};
use pillarq::onnx::{decode_model, encode_model, load_model, save_model};
use pillarq::pointpillars::{random_pillar_inputs, PointPillarsConfig};

const MODELS: [&str; 3] = ["pointpillars_small.onnx", "pointpillars_kitti.onnx", "pointpillars_kitti_cudapp.onnx"];

#[test]
fn bundled_models_round_trip_byte_identical() {
    for name in MODELS {
        let path = bundled(name);
        let bytes = std::fs::read(&path).unwrap();
        let model = decode_model(&bytes, &path).unwrap();
        let again = encode_model(&model);
        assert!(again == bytes, "{name}: encode(decode(bytes)) differs");

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(name);
        save_model(&model, &out).unwrap();
        let saved = std::fs::read(&out).unwrap();
        assert!(saved == bytes, "{name}: save_model wrote different bytes");
        // No temp file left behind by the atomic save.
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1);
        let reloaded = load_model(&out).unwrap();
        assert_eq!(reloaded.model, model);
        assert_eq!(reloaded.file_bytes, bytes.len() as u64);
    }
}

fn kv(k: &str, v: String) -> StringStringEntryProto {
    StringStringEntryProto { key: Some(k.into()), value: Some(v) }
}

#[test]
fn external_data_runs_identically() {
    let src = bundled("pointpillars_small.onnx");
    let embedded = Model::load(&src).unwrap();
    let mut model = embedded.file.model.clone();
    let mut blob: Vec<u8> = Vec::new();
    let mut moved = 0;
    for t in &mut model.graph.as_mut().unwrap().initializer {
        let raw = t.raw_data.take().expect("bundled initializers are stored as raw_data");
        // 64-byte aligned offsets, like onnx's external-data writer.
        while !blob.len().is_multiple_of(64) {
            blob.push(0);
        }
        t.data_location = Some(DataLocation::External as i32);
        t.external_data = vec![
            kv("location", "weights.bin".into()),
            kv("offset", blob.len().to_string()),
            kv("length", raw.len().to_string()),
        ];
        blob.extend_from_slice(&raw);
        moved += 1;
    }
    assert!(moved > 100);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weights.bin"), &blob).unwrap();
    let path = dir.path().join("external.onnx");
    save_model(&model, &path).unwrap();
    let onnx_bytes = std::fs::metadata(&path).unwrap().len();
    assert!(onnx_bytes < 200_000, "weights were not moved out: {onnx_bytes} bytes");

    let ext = Model::load(&path).unwrap();
    assert_eq!(ext.layers, embedded.layers);
    let cfg = PointPillarsConfig::from_graph(&embedded.graph).unwrap();
    let inputs = random_pillar_inputs(&embedded.graph, cfg.as_ref(), 5, 0.6).unwrap();
    let a = pq_run(&src, &inputs, 2);
    let b = pq_run(&path, &inputs, 2);
    assert_eq!(a.len(), 3);
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        let (x, y) = (ta.as_f32().unwrap(), tb.as_f32().unwrap());
        assert!(
            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "output {na} differs between embedded and external weights"
        );
    }

    // A model whose external file is missing fails with an error naming that file.
    std::fs::remove_file(dir.path().join("weights.bin")).unwrap();
    let err = Model::load(&path).err().expect("missing weights.bin must fail");
    assert!(err.to_string().contains("weights.bin"), "{err}");
    // And one pointing outside its folder is refused.
    let mut evil = model.clone();
    evil.graph.as_mut().unwrap().initializer[0].external_data[0] = kv("location", "../weights.bin".into());
    let evil_path = dir.path().join("evil.onnx");
    save_model(&evil, &evil_path).unwrap();
    let err = Model::load(Path::new(&evil_path)).err().expect("must fail");
    assert!(err.to_string().contains("relative path"), "{err}");
}
