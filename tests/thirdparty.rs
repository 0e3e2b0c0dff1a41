//! Bring your own model: the bundled small model exported the way NVIDIA's CUDA-PointPillars tool
//! exports it (scripts/thirdparty_fixture.py: opset 11, PPScatterPlugin, PyTorch-style names,
//! Reshape/BatchNorm PFN, no metadata) with an OpenPCDet model YAML
//! (tests/fixtures/openpcdet/tools/cfgs/kitti_models/pointpillar_small.yaml, whose
//! _BASE_CONFIG_ sits two folders up), and an mmdetection3d-style 9-feature variant with a
//! pillarq-schema YAML. Every command that needs pre/post-processing runs on them with --config
//! or after `pillarq annotate`; bad configs are errors naming file and key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::pillarq_bin;

struct Fixture {
    _dir: tempfile::TempDir,
    nvidia: PathBuf,
    mmdet9: PathBuf,
    data: PathBuf,
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn yaml() -> PathBuf {
    common::repo().join("tests/fixtures/openpcdet/tools/cfgs/kitti_models/pointpillar_small.yaml")
}

fn yaml9() -> PathBuf {
    common::repo().join("tests/fixtures/openpcdet/tools/cfgs/kitti_models/pointpillar_mmdet9.yaml")
}

/// The exported models and a small synthetic KITTI set, made once for all tests.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(common::python())
            .arg(common::repo().join("scripts/thirdparty_fixture.py"))
            .args(["--out", s(dir.path())])
            .output()
            .expect("python");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let data = dir.path().join("data");
        let (code, _, err) = pillarq_bin(&["synth", "--out", s(&data), "--train", "3", "--val", "5", "--seed", "3"]);
        assert_eq!(code, 0, "{err}");
        Fixture {
            nvidia: dir.path().join("pointpillar_nvidia.onnx"),
            mmdet9: dir.path().join("pointpillar_mmdet9.onnx"),
            data,
            _dir: dir,
        }
    })
}

/// `pillarq calibrate` of the NVIDIA-style export on 2 frames (max), into `dir/calib`.
fn calibrate(dir: &Path, pow2: bool) -> PathBuf {
    let f = fixture();
    let cal = dir.join("calib");
    let mut args = vec!["calibrate", "--model", s(&f.nvidia), "--data", s(&f.data), "--frames", "2", "--method", "max"];
    args.extend(["--recipe", "none"]);
    args.extend(["--out", s(&cal), "-q"]);
    if pow2 {
        args.push("--pow2-scales");
    }
    let y = yaml();
    args.extend(["--config", s(&y)]);
    ok(&args);
    cal
}

fn ok(args: &[&str]) -> (String, String) {
    let (code, out, err) = pillarq_bin(args);
    assert_eq!(code, 0, "pillarq {}: {err}", args.join(" "));
    (out, err)
}

fn fails(args: &[&str]) -> String {
    let (code, out, err) = pillarq_bin(args);
    assert_ne!(code, 0, "pillarq {} should fail: {out}", args.join(" "));
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Per frame file: (class, score, box) of each detection.
type Frames = Vec<(String, Vec<(String, f64, Vec<f64>)>)>;

/// `{"class", "score", "box"}` of every detection of a detect output folder, frame by frame.
fn detections(dir: &Path) -> Frames {
    let mut frames: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| p.file_stem().is_some_and(|s| pillarq::kitti::is_frame_id(&s.to_string_lossy())))
        .collect();
    frames.sort();
    frames
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            let dets = v
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["class"].to_string(),
                        d["score"].as_f64().unwrap(),
                        d["box"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
                    )
                })
                .collect();
            (p.file_name().unwrap().to_string_lossy().into_owned(), dets)
        })
        .collect()
}

fn assert_same_detections(a: &Path, b: &Path) -> usize {
    let (da, db) = (detections(a), detections(b));
    assert_eq!(da.len(), db.len());
    let mut n = 0;
    for ((fa, xa), (fb, xb)) in da.iter().zip(&db) {
        assert_eq!(fa, fb);
        assert_eq!(xa.len(), xb.len(), "{fa}: detection counts differ");
        for (p, q) in xa.iter().zip(xb) {
            assert_eq!(p.0, q.0, "{fa}: class");
            assert!((p.1 - q.1).abs() <= 1e-4, "{fa}: score {} vs {}", p.1, q.1);
            for (u, v) in p.2.iter().zip(&q.2) {
                assert!((u - v).abs() <= 1e-3, "{fa}: box {:?} vs {:?}", p.2, q.2);
            }
            n += 1;
        }
    }
    n
}

#[test]
fn without_a_config_the_error_says_how_to_fix_it() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let e = fails(&["detect", "--model", s(&f.nvidia), "--data", s(&f.data), "--out", s(&tmp.path().join("p"))]);
    assert!(
        e.contains("no 'pointpillars' metadata") && e.contains("--config") && e.contains("pillarq annotate"),
        "{e}"
    );
}

#[test]
fn nvidia_export_detects_as_the_bundled_model() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (ours, theirs) = (tmp.path().join("bundled"), tmp.path().join("nvidia"));
    let bundled = common::bundled("pointpillars_small.onnx");
    ok(&["detect", "--model", s(&bundled), "--data", s(&f.data), "--out", s(&ours), "-q"]);
    let (_, err) = ok(&[
        "detect",
        "--model",
        s(&f.nvidia),
        "--config",
        s(&yaml()),
        "--data",
        s(&f.data),
        "--out",
        s(&theirs),
        "-q",
    ]);
    // MAX_NUMBER_OF_VOXELS test 40000 vs the model's 8000: the model wins, said once.
    assert_eq!(err.matches("40000 pillars").count(), 1, "{err}");
    assert!(err.contains("takes 8000"), "{err}");
    let n = assert_same_detections(&ours, &theirs);
    assert!(n > 20, "{n} detections");

    // eval --model and --preds agree with the bundled model's table.
    let map = |args: &[&str]| -> f64 {
        let (out, _) = ok(args);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["map"].as_f64().unwrap()
    };
    let a = map(&["eval", "--model", s(&bundled), "--data", s(&f.data), "--json", "-q"]);
    let b = map(&["eval", "--model", s(&f.nvidia), "--config", s(&yaml()), "--data", s(&f.data), "--json", "-q"]);
    assert!((a - b).abs() < 1e-9 && a > 0.0, "{a} vs {b}");
}

#[test]
fn annotate_round_trips() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let annotated = tmp.path().join("annotated.onnx");
    let (out, _) = ok(&["annotate", s(&f.nvidia), "--config", s(&yaml()), "--out", s(&annotated)]);
    assert!(out.contains("voxels") && out.contains("cls_preds"), "{out}");
    // The original bytes are a prefix: one metadata entry appended, nothing else re-encoded.
    let (orig, new) = (std::fs::read(&f.nvidia).unwrap(), std::fs::read(&annotated).unwrap());
    assert_eq!(&new[..orig.len()], &orig[..]);
    assert!(new.len() > orig.len());
    // Annotating again replaces the entry: same bytes.
    let again = tmp.path().join("again.onnx");
    ok(&["annotate", s(&annotated), "--config", s(&yaml()), "--out", s(&again)]);
    assert_eq!(std::fs::read(&again).unwrap(), new);
    // Later commands need no --config, and detect the same.
    let (p1, p2) = (tmp.path().join("p1"), tmp.path().join("p2"));
    ok(&["detect", "--model", s(&annotated), "--data", s(&f.data), "--out", s(&p1), "-q"]);
    ok(&["detect", "--model", s(&f.nvidia), "--config", s(&yaml()), "--data", s(&f.data), "--out", s(&p2), "-q"]);
    assert!(assert_same_detections(&p1, &p2) > 0);
    // The metadata holds the reconciled configuration (the model's 8000 pillars).
    let (json, _) = ok(&["inspect", s(&annotated), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let meta: serde_json::Value = serde_json::from_str(v["metadata"]["pointpillars"].as_str().unwrap()).unwrap();
    assert_eq!(meta["max_pillars"], 8000);
    assert_eq!(meta["grid_size"], serde_json::json!([216, 248, 1]));
    // Precedence: metadata < --config < flags.
    let p3 = tmp.path().join("p3");
    ok(&["detect", "--model", s(&annotated), "--score-threshold", "0.5", "--data", s(&f.data), "--out", s(&p3), "-q"]);
    let (all, high) = (detections(&p1), detections(&p3));
    let count = |d: &Frames| d.iter().map(|f| f.1.len()).sum::<usize>();
    assert!(count(&high) < count(&all) && high.iter().all(|f| f.1.iter().all(|d| d.1 >= 0.5)));
}

#[test]
fn quantization_commands_run_with_the_config() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (m, y, d) = (s(&f.nvidia), yaml(), s(&f.data));
    let cal = calibrate(tmp.path(), false);
    let calib = cal.join("pointpillar_nvidia-max-2.json");
    assert!(calib.exists());
    let cache = tmp.path().join("cache");
    let common = ["--config", s(&y), "--data", d, "--frames", "2", "--calib", s(&calib), "--cache", s(&cache), "-q"];
    let (out, _) = ok(&[&["sensitivity", "--model", m][..], &common].concat());
    assert!(out.contains("MatMul_1") && out.contains("Conv_8"), "{out}");
    let cands = tmp.path().join("candidates.json");
    let (out, _) = ok(&[&["search", "--model", m, "--top-k", "2", "--out", s(&cands)][..], &common].concat());
    assert!(cands.exists(), "{out}");
    ok(&[
        "calib-sweep",
        "--model",
        m,
        "--config",
        s(&y),
        "--data",
        d,
        "--frames",
        "2",
        "--max-n",
        "1",
        "--draws",
        "1",
        "--methods",
        "max",
        "--cache",
        s(&cache),
        "--out",
        s(&tmp.path().join("sweep.json")),
        "-q",
    ]);
}

#[test]
fn voxelize_takes_the_config() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let vox = tmp.path().join("vox");
    let scan = f.data.join("training/velodyne/000003.bin");
    let calib = f.data.join("training/calib/000003.txt");
    let (out, _) = ok(&[
        "voxelize",
        "--model",
        s(&f.nvidia),
        "--config",
        s(&yaml()),
        "--points",
        s(&scan),
        "--calib",
        s(&calib),
        "--out",
        s(&vox),
    ]);
    assert!(out.contains("[8000, 32, 10]"), "{out}");
}

#[test]
fn nine_feature_model_detects_through_its_config() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    // The voxels it gets: the ten-feature pillars without the z offset to the pillar centre.
    let (v9, v10) = (tmp.path().join("v9"), tmp.path().join("v10"));
    let scan = f.data.join("training/velodyne/000004.bin");
    ok(&["voxelize", "--model", s(&f.mmdet9), "--config", s(&yaml9()), "--points", s(&scan), "--out", s(&v9)]);
    ok(&["voxelize", "--model", s(&f.nvidia), "--config", s(&yaml()), "--points", s(&scan), "--out", s(&v10)]);
    let load = |p: &Path| pillarq::npy::read_npy(p).unwrap();
    let (a, b) = (load(&v9.join("voxels.npy")), load(&v10.join("voxels.npy")));
    assert_eq!(a.shape, [1, 8000, 32, 9]);
    let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    for (row9, row10) in a.chunks_exact(9).zip(b.chunks_exact(10)) {
        assert_eq!(row9, &row10[..9]);
    }
    assert_eq!(load(&v9.join("coors.npy")).dtype(), pillarq::tensor::DType::I64);
    let preds = tmp.path().join("p9");
    let (out, _) = ok(&[
        "detect",
        "--model",
        s(&f.mmdet9),
        "--config",
        s(&yaml9()),
        "--data",
        s(&f.data),
        "--out",
        s(&preds),
        "-q",
    ]);
    assert!(detections(&preds).iter().any(|f| !f.1.is_empty()), "{out}");
}

/// Writes `text` as a config file in `dir` and returns its path.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_configs_name_file_and_key() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(yaml()).unwrap();
    let run = |cfg: &Path| {
        fails(&[
            "detect",
            "--model",
            s(&f.nvidia),
            "--config",
            s(cfg),
            "--data",
            s(&f.data),
            "--out",
            s(&tmp.path().join("p")),
        ])
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        // The base file cannot be found and the range it would give is needed.
        (
            "nobase.yaml",
            good.replace("    POINT_CLOUD_RANGE: [0, -39.68, -3, 69.12, 39.68, 1]\n", ""),
            vec!["point_cloud_range", "DATA_CONFIG.POINT_CLOUD_RANGE", "_BASE_CONFIG_", "not found"],
        ),
        (
            "type.yaml",
            good.replace("VOXEL_SIZE: [0.32, 0.32, 4]", "VOXEL_SIZE: [0.32, 'wide', 4]"),
            vec!["type.yaml", "DATA_CONFIG.DATA_PROCESSOR[transform_points_to_voxels].VOXEL_SIZE", "number"],
        ),
        (
            "multi.yaml",
            good.replace("MULTI_CLASSES_NMS: False", "MULTI_CLASSES_NMS: True"),
            vec!["multi.yaml", "MODEL.POST_PROCESSING.NMS_CONFIG.MULTI_CLASSES_NMS", "not supported"],
        ),
        (
            "anchors.yaml",
            good.replacen(
                "'anchor_sizes': [[3.9, 1.6, 1.56]]",
                "'anchor_sizes': [[3.9, 1.6, 1.56], [4.5, 1.8, 1.6]]",
                1,
            ),
            vec!["anchors.yaml", "MODEL.DENSE_HEAD.ANCHOR_GENERATOR_CONFIG", "8 anchors per location", "24", "has 18"],
        ),
        (
            "heights.yaml",
            good.replacen("'anchor_bottom_heights': [-1.78]", "'anchor_bottom_heights': [-1.78, -1.0]", 1),
            vec!["ANCHOR_GENERATOR_CONFIG[0].anchor_bottom_heights", "one bottom height"],
        ),
        (
            "stride.yaml",
            good.replace("'feature_map_stride': 1", "'feature_map_stride': 2"),
            vec!["108", "feature_map_stride", "stride.yaml"],
        ),
        (
            "vfe.yaml",
            good.replace("WITH_DISTANCE: False", "WITH_DISTANCE: True"),
            vec!["11", "takes 10 features", "MODEL.VFE", "vfe.yaml"],
        ),
        ("syntax.yaml", "CLASS_NAMES: ['Car'\nMODEL: {".into(), vec!["syntax.yaml", "YAML"]),
        (
            "keys.yaml",
            "point_cloud_rang: [0, 0, 0, 1, 1, 1]\n".into(),
            vec!["keys.yaml", "point_cloud_rang", "unknown key"],
        ),
        (
            "missing.yaml",
            good.replace("    VFE:\n", "    VFE_OLD:\n").replace("CLASS_NAMES: ['Car', 'Pedestrian', 'Cyclist']\n", ""),
            vec!["class_names", "CLASS_NAMES", "missing.yaml"],
        ),
    ];
    // A folder without the base file: the include cannot be resolved there.
    let lone = tmp.path().join("lone");
    std::fs::create_dir_all(&lone).unwrap();
    for (name, text, want) in cases {
        let dir = if name == "nobase.yaml" { &lone } else { tmp.path() };
        let e = run(&write(dir, name, &text));
        for w in want {
            assert!(e.contains(w), "{name}: expected '{w}' in: {e}");
        }
    }
    // A missing base file is fine when the keys it would give are present.
    let p = write(&lone, "complete.yaml", &good);
    ok(&[
        "detect",
        "--model",
        s(&f.nvidia),
        "--config",
        s(&p),
        "--data",
        s(&f.data),
        "--out",
        s(&tmp.path().join("q")),
        "-q",
        "--frames",
        "1",
    ]);
}

/// `emit` works below opset 13 (the opset-11 export is upgraded) and onnxruntime on the emitted
/// full-INT8 model (the plugin scatter done in numpy) gives the simulation's numbers: to the bit
/// with power-of-two scales, as for the bundled model (tests/deploy.rs).
#[test]
fn emit_upgrades_the_opset_and_onnxruntime_agrees() {
    use pillarq::pointpillars::config::resolve;
    use pillarq::pointpillars::detect::Detector;
    use pillarq::quant::plan::PrecisionPlan;

    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (m, y, d) = (s(&f.nvidia), yaml(), s(&f.data));
    let cal = calibrate(tmp.path(), true);
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"default": "int8"}"#).unwrap();
    let dir = tmp.path().join("engine");
    ok(&[
        "emit",
        "--model",
        m,
        "--plan",
        s(&plan),
        "--calib",
        s(&cal.join("pointpillar_nvidia-max-pow2-2.json")),
        "--out",
        s(&dir),
    ]);
    let emitted = pillarq::onnx::load_model(&dir.join("model.onnx")).unwrap().model;
    let opset = emitted.opset_import.iter().find(|o| o.domain.as_deref().unwrap_or("").is_empty()).unwrap();
    assert_eq!(opset.version, Some(13));
    let ops: Vec<&str> = emitted.graph.as_ref().unwrap().node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert!(ops.contains(&"PPScatterPlugin") && ops.iter().filter(|o| **o == "QuantizeLinear").count() == 23);
    // Every BatchNormalization folded: the PFN's 2-D one into the MatMul (+ bias Add), the neck's
    // into the ConvTransposes.
    assert!(!ops.contains(&"BatchNormalization"), "{ops:?}");

    let model = pillarq::model::Model::load(&f.nvidia).unwrap();
    let det = Detector::with_config(&model, resolve(&model.graph, &f.nvidia, Some(&y), None).unwrap(), 2).unwrap();
    let data = pillarq::kitti::KittiDir::open(&f.data).unwrap();
    let (inputs, _) = det.frame_inputs(&data, "000004").unwrap();
    let resolved = PrecisionPlan::read(&dir.join("plan.json")).unwrap().resolve(&model.layers).unwrap();
    let exec = det.executor();
    let sim = exec.run_plan(&inputs, &exec.compile_plan(&resolved).unwrap()).unwrap();
    let ort = common::ort_run_with(&dir.join("model.onnx"), &inputs, 2, &["--no-optimize"]);
    for (name, t) in &sim {
        let r = common::rel_diff(t.as_f32().unwrap(), ort[name].as_f32().unwrap());
        println!("{name}: relative L2 {:.2e}, max |a-b|/max|b| {:.2e}", r.rel_l2, r.max_rel);
        assert!(r.rel_l2 <= 1e-5, "{name}: {}", r.rel_l2);
    }

    // bench (cpu): network and end-to-end timing through the config.
    let out = tmp.path().join("bench.json");
    let e = fails(&["bench", s(&dir), "--runs", "2", "--warmup", "1", "--data", d, "--out", s(&out)]);
    assert!(e.contains("--config"), "{e}");
    ok(&["bench", s(&dir), "--runs", "2", "--warmup", "1", "--data", d, "--config", s(&y), "--out", s(&out)]);
    let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let r = &b.as_array().map(|a| a[0].clone()).unwrap_or(b["results"][0].clone());
    assert!(r["median_ms"].as_f64().unwrap() > 0.0 && r["e2e_median_ms"].as_f64().unwrap() > 0.0, "{b}");
}

/// The operators whose signature changed between opsets 11 and 13, in an opset-11 model: the
/// emitted opset-13 model computes the same function in onnxruntime.
#[test]
fn opset_11_operators_keep_their_function_at_13() {
    use common::{attr_f, attr_i, attr_ints, build_model, init_f32, node, vi};
    let mut rng = pillarq::pointpillars::SplitMix64::new(3);
    let w = common::rand_f32(&mut rng, 6 * 3 * 3 * 3, -0.5, 0.5);
    let nodes = vec![
        node("Conv", "conv", &["x", "w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
        node("Unsqueeze", "unsq", &["c"], &["u"], vec![attr_ints("axes", &[0])]),
        node("Squeeze", "sq", &["u"], &["s"], vec![attr_ints("axes", &[0])]),
        node("Split", "split", &["s"], &["a", "b"], vec![attr_i("axis", 1), attr_ints("split", &[3, 3])]),
        // Softmax over axis 1 of a rank-4 tensor: before 13, over the flattened C*H*W.
        node("Softmax", "soft_c", &["b"], &["sb"], vec![attr_i("axis", 1)]),
        node("LogSoftmax", "logsoft_w", &["a"], &["la"], vec![attr_i("axis", 3)]),
        node("Dropout", "drop", &["la"], &["da"], vec![attr_f("ratio", 0.3)]),
        node("ReduceSum", "rsum", &["sb"], &["r"], vec![attr_ints("axes", &[2, 3]), attr_i("keepdims", 1)]),
        node("Mul", "mul", &["r", "da"], &["y"], vec![]),
    ];
    let mut model = build_model(
        nodes,
        vec![init_f32("w", &[6, 3, 3, 3], &w)],
        vec![vi("x", 1, Some(&[1, 3, 5, 7]))],
        vec![vi("y", 1, Some(&[1, 3, 5, 7]))],
    );
    model.opset_import[0].version = Some(11);
    model.ir_version = Some(6);
    let tmp = tempfile::tempdir().unwrap();
    let src = common::write_model(tmp.path(), "op11.onnx", &model);
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"default": "fp32"}"#).unwrap();
    let dir = tmp.path().join("engine");
    ok(&["emit", "--model", s(&src), "--plan", s(&plan), "--out", s(&dir)]);
    let x = common::rand_tensor(&mut rng, &[1, 3, 5, 7], -2.0, 2.0);
    let inputs = vec![("x".to_string(), x)];
    let before = common::ort_run_with(&src, &inputs, 1, &["--no-optimize"]);
    // --check: the emitted model passes onnx's full checker at opset 13.
    let after = common::ort_run_with(&dir.join("model.onnx"), &inputs, 1, &["--check", "--no-optimize"]);
    let r = common::rel_diff(before["y"].as_f32().unwrap(), after["y"].as_f32().unwrap());
    assert!(r.max_rel <= 1e-6, "max |a-b|/max|b| {}", r.max_rel);
    let emitted = pillarq::onnx::load_model(&dir.join("model.onnx")).unwrap().model;
    let ops: Vec<&str> = emitted.graph.as_ref().unwrap().node.iter().filter_map(|n| n.op_type.as_deref()).collect();
    assert!(ops.contains(&"Flatten") && ops.contains(&"Reshape"), "{ops:?}");
}

/// `emit --io cudapp`: the engine takes CUDA-PointPillars' runtime interface (FP16 voxels, int32
/// indices, the runtime's names and order) and its build scripts its I/O formats; onnxruntime on
/// it equals pillarq on FP16-rounded voxels. A 9-feature model is refused with the reason.
#[test]
fn emit_for_the_cuda_pointpillars_runtime() {
    use pillarq::pointpillars::config::resolve;
    use pillarq::pointpillars::detect::Detector;
    use pillarq::tensor::Tensor;

    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"default": "fp32"}"#).unwrap();
    let dir = tmp.path().join("engine");
    ok(&[
        "emit",
        "--model",
        s(&f.nvidia),
        "--config",
        s(&yaml()),
        "--io",
        "cudapp",
        "--plan",
        s(&plan),
        "--out",
        s(&dir),
    ]);
    for script in ["build-trt10.sh", "build-trt11.sh"] {
        let text = std::fs::read_to_string(dir.join(script)).unwrap();
        assert!(
            text.contains("--inputIOFormats=fp16:chw,int32:chw,int32:chw") && text.contains("--staticPlugins"),
            "{text}"
        );
    }
    let emitted = pillarq::model::Model::load(&dir.join("model.onnx")).unwrap();
    let io: Vec<(String, String, Vec<pillarq::graph::Dim>)> =
        emitted.graph.inputs.iter().map(|v| (v.name.clone(), v.dtype.to_string(), v.shape.clone().unwrap())).collect();
    let names: Vec<&str> = io.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(names, ["voxels", "voxel_idxs", "voxel_num"]);
    assert_eq!(io.iter().map(|v| v.1.as_str()).collect::<Vec<_>>(), ["float16", "int32", "int32"]);
    let outs: Vec<&str> = emitted.graph.outputs.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(outs, ["cls_preds", "box_preds", "dir_cls_preds"]);

    let model = pillarq::model::Model::load(&f.nvidia).unwrap();
    let det = Detector::with_config(&model, resolve(&model.graph, &f.nvidia, Some(&yaml()), None).unwrap(), 2).unwrap();
    let data = pillarq::kitti::KittiDir::open(&f.data).unwrap();
    let (mut inputs, _) = det.frame_inputs(&data, "000003").unwrap();
    let v = &mut inputs[0].1;
    *v = Tensor::f32(
        v.shape.clone(),
        v.as_f32().unwrap().iter().map(|&x| pillarq::exec::cpu::precision::round_f16(x)).collect(),
    );
    let sim = det.executor().run(&inputs).unwrap();
    let ort = common::ort_run_with(&dir.join("model.onnx"), &inputs, 2, &["--no-optimize"]);
    for (name, t) in &sim {
        let r = common::rel_diff(t.as_f32().unwrap(), ort[name].as_f32().unwrap());
        assert!(r.max_rel <= 1e-4, "{name}: {}", r.max_rel);
    }

    let e = fails(&[
        "emit",
        "--model",
        s(&f.mmdet9),
        "--config",
        s(&yaml9()),
        "--io",
        "cudapp",
        "--plan",
        s(&plan),
        "--out",
        s(&tmp.path().join("e9")),
    ]);
    assert!(e.contains("not a CUDA-PointPillars drop-in") && e.contains("9 features"), "{e}");
}

/// `inspect` sees NVIDIA's Reshape / MatMul / 2-D BatchNorm / Relu / Reshape / ReduceMax pillar net
/// as one fused layer with the FLOPs of the bundled model's pillar net, and the same total.
#[test]
fn inspect_fuses_the_nvidia_pillar_net() {
    let f = fixture();
    let layers = |m: &Path| -> serde_json::Value {
        let (out, _) = ok(&["inspect", s(m), "--json"]);
        serde_json::from_str(&out).unwrap()
    };
    let (theirs, ours) = (layers(&f.nvidia), layers(&common::bundled("pointpillars_small.onnx")));
    let (a, b) = (&theirs["quantizable_layers"][0], &ours["quantizable_layers"][0]);
    assert_eq!(a["name"], "MatMul_1");
    assert_eq!(a["fused"], serde_json::json!(["BatchNormalization", "Relu"]));
    assert_eq!(a["flops"], b["flops"]);
    assert!(a["flops"].as_u64().unwrap() > 100_000_000);
    assert_eq!(theirs["flops"], ours["flops"]);
}

/// Scales belong to a network: a calibration of another network is refused (naming the
/// calibration file) unless --allow-other-model; `annotate` keeps the network's identity.
#[test]
fn calibrations_belong_to_their_network() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let cal = calibrate(tmp.path(), false).join("pointpillar_nvidia-max-2.json");
    let annotated = tmp.path().join("annotated.onnx");
    ok(&["annotate", s(&f.nvidia), "--config", s(&yaml()), "--out", s(&annotated)]);
    let d = s(&f.data);
    let sens = |model: &Path, calib: &Path, extra: &[&str]| {
        let cache = tmp.path().join("cache");
        let args = [
            &[
                "sensitivity",
                "--model",
                s(model),
                "--data",
                d,
                "--frames",
                "1",
                "--calib",
                s(calib),
                "--cache",
                s(&cache),
                "-q",
            ][..],
            extra,
        ]
        .concat();
        pillarq_bin(&args)
    };
    // Calibrated on the raw export, used on the annotated one: the same network.
    let (code, _, err) = sens(&annotated, &cal, &[]);
    assert_eq!(code, 0, "{err}");
    // Another network's scales (its model_hash differs).
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&cal).unwrap()).unwrap();
    v["calibration"]["model_hash"] =
        serde_json::json!("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let other = tmp.path().join("other-network.json");
    std::fs::write(&other, v.to_string()).unwrap();
    let (code, _, err) = sens(&annotated, &other, &[]);
    assert!(code != 0 && err.contains("other-network.json") && err.contains("another network"), "{err}");
    let (code, _, err) = sens(&annotated, &other, &["--allow-other-model"]);
    assert_eq!(code, 0, "{err}");
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"default": "int8"}"#).unwrap();
    let e = fails(&[
        "emit",
        "--model",
        s(&annotated),
        "--plan",
        s(&plan),
        "--calib",
        s(&other),
        "--out",
        s(&tmp.path().join("e")),
    ]);
    assert!(e.contains("other-network.json") && e.contains("another network") && !e.contains("plan.json"), "{e}");
}

#[test]
fn run_takes_the_config() {
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let y = yaml();
    let args = [
        "run",
        "--model",
        s(&f.nvidia),
        "--config",
        s(&y),
        "--data",
        s(&f.data),
        "--out",
        s(&out),
        "--frames",
        "2",
        "--calib-frames",
        "2",
        "--top-k",
        "1",
    ];
    let (stdout, stderr) = ok(&args);
    assert!(stdout.contains("FP32 mAP") && stdout.contains("int8"), "{stdout}\n{stderr}");
    for f in ["sensitivity.json", "candidates.json", "engines/int8/model.onnx", "ap.json", "bench.json", "report.html"]
    {
        assert!(out.join(f).exists(), "{f}");
    }
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(r["provenance"]["config"].as_str(), Some(s(&y)));
    // A rerun with the same model and configuration computes nothing.
    let (_, again) = ok(&args);
    assert!(!again.contains("ran in") && again.contains("unchanged"), "{again}");
}
