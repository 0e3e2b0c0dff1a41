//! Bad files and bad inputs through the CLI: a non-zero exit, an error that names the problem,
//! and never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use pillarq::npy::write_npy;
use pillarq::tensor::Tensor;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn pillarq(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_pillarq")).args(args).output().expect("run pillarq");
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    assert!(!r.stderr.contains("panicked"), "pillarq {args:?} panicked:\n{}", r.stderr);
    r
}

/// Runs pillarq, expects failure and that stderr mentions every one of `needles`.
fn fails(args: &[&str], needles: &[&str]) -> Run {
    let r = pillarq(args);
    assert!(r.code != 0, "pillarq {args:?} should fail but exited 0:\n{}", r.stdout);
    assert_ne!(r.code, 101, "exit code 101 is a Rust panic");
    for n in needles {
        assert!(r.stderr.contains(n), "pillarq {args:?}: stderr does not mention {n:?}:\n{}", r.stderr);
    }
    r
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn small() -> PathBuf {
    bundled("pointpillars_small.onnx")
}

#[test]
fn truncated_onnx() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.onnx");
    std::fs::write(&p, &std::fs::read(small()).unwrap()[..1000]).unwrap();
    for cmd in ["inspect", "infer"] {
        let mut args = vec![cmd, s(&p)];
        if cmd == "infer" {
            args.extend(["--random", "0", "--out", s(dir.path())]);
        }
        fails(&args, &["cut.onnx", "truncated"]);
    }
}

#[test]
fn not_an_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.onnx");
    std::fs::write(&p, "These are my notes about PointPillars.\nNothing to see here.\n").unwrap();
    fails(&["inspect", s(&p)], &["notes.onnx", "ONNX"]);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.onnx");
    std::fs::write(&p, b"").unwrap();
    fails(&["inspect", s(&p)], &["empty.onnx", "empty"]);
}

#[test]
fn missing_model_file() {
    fails(&["inspect", "/nonexistent/dir/model.onnx"], &["/nonexistent/dir/model.onnx"]);
}

fn conv_model(w_dims: &[usize], with_w: bool, out_dims: &[usize]) -> pillarq::onnx::proto::ModelProto {
    let n: usize = w_dims.iter().product();
    let inits = if with_w { vec![init_f32("conv_w", w_dims, &vec![0.1; n])] } else { vec![] };
    build_model(
        vec![
            node("Conv", "/backbone/conv0/Conv", &["x", "conv_w"], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])]),
            node("Relu", "/backbone/relu0", &["c"], &["y"], vec![]),
        ],
        inits,
        vec![vi("x", FLOAT, Some(&[1, 4, 8, 8]))],
        vec![vi("y", FLOAT, Some(out_dims))],
    )
}

#[test]
fn missing_initializer() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(dir.path(), "noweight.onnx", &conv_model(&[6, 4, 3, 3], false, &[1, 6, 8, 8]));
    fails(&["inspect", s(&p)], &["noweight.onnx", "/backbone/conv0/Conv", "conv_w"]);
}

#[test]
fn inconsistent_conv_channels() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(dir.path(), "channels.onnx", &conv_model(&[6, 3, 3, 3], true, &[1, 6, 8, 8]));
    let r = fails(&["inspect", s(&p)], &["channels.onnx", "/backbone/conv0/Conv"]);
    assert!(r.stderr.contains("channels") && r.stderr.contains('4') && r.stderr.contains('3'), "{}", r.stderr);
}

#[test]
fn declared_output_shape_disagrees() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_model(dir.path(), "outshape.onnx", &conv_model(&[6, 4, 3, 3], true, &[1, 6, 9, 8]));
    fails(&["inspect", s(&p)], &["outshape.onnx", "/backbone/relu0", "'y'", "[1, 6, 9, 8]", "[1, 6, 8, 8]"]);
}

/// Writes valid random inputs of the small model into `dir` (via `infer --random`).
fn small_inputs(dir: &Path) {
    let r = pillarq(&["infer", s(&small()), "--random", "3", "--out", s(dir), "--threads", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for f in ["voxels.npy", "voxel_idxs.npy", "voxel_num.npy", "cls_preds.npy"] {
        assert!(dir.join(f).exists(), "{f}");
    }
}

fn infer_with(out: &Path, inputs: &[(&str, PathBuf)]) -> Vec<String> {
    let mut args: Vec<String> = vec!["infer".into(), s(&small()).into()];
    for (n, p) in inputs {
        args.push("--input".into());
        args.push(format!("{n}={}", p.display()));
    }
    args.extend(["--out".into(), out.display().to_string()]);
    args
}

/// Runs infer with the given inputs (others from `dir`), expects failure mentioning
/// `needles`, and that no output .npy was written.
fn infer_fails(dir: &Path, replace: (&str, PathBuf), needles: &[&str]) {
    let mut inputs: Vec<(&str, PathBuf)> =
        ["voxels", "voxel_idxs", "voxel_num"].iter().map(|n| (*n, dir.join(format!("{n}.npy")))).collect();
    match inputs.iter_mut().find(|(n, _)| *n == replace.0) {
        Some(slot) => slot.1 = replace.1,
        None => inputs[0] = replace,
    }
    let out = dir.join(format!("out_{}", needles[0].replace(['/', ' ', '\''], "_")));
    let args = infer_with(&out, &inputs);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, needles);
    for o in ["cls_preds.npy", "box_preds.npy", "dir_cls_preds.npy"] {
        assert!(!out.join(o).exists(), "a failed infer left {o} behind");
    }
}

#[test]
fn wrong_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_inputs(d);

    // Wrong input name (replaces `voxels`).
    infer_fails(d, ("points", d.join("voxels.npy")), &["points", "voxels"]);

    // Wrong shape: voxels [10, 32, 10] instead of [8000, 32, 10].
    let p = d.join("short.npy");
    write_npy(&p, &Tensor::f32(vec![10, 32, 10], vec![0.5; 3200])).unwrap();
    infer_fails(d, ("voxels", p), &["voxels", "8000", "10, 32, 10"]);

    // Wrong dtype: float64 voxel_idxs.
    let p = d.join("idx_f64.npy");
    std::fs::write(&p, npy_f64(&[8000, 4], &vec![1.0; 32000])).unwrap();
    infer_fails(d, ("voxel_idxs", p), &["voxel_idxs", "int32"]);

    // Garbage bytes, a truncated npy and a missing file.
    let p = d.join("garbage.npy");
    std::fs::write(&p, (0..4000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>()).unwrap();
    infer_fails(d, ("voxels", p), &["garbage.npy", "voxels", "npy"]);

    let p = d.join("cut.npy");
    let full = std::fs::read(d.join("voxels.npy")).unwrap();
    std::fs::write(&p, &full[..full.len() / 2]).unwrap();
    infer_fails(d, ("voxels", p), &["cut.npy", "truncated"]);

    let p = d.join("cut_header.npy");
    std::fs::write(&p, &full[..40]).unwrap();
    infer_fails(d, ("voxels", p), &["cut_header.npy"]);

    infer_fails(d, ("voxel_num", d.join("does_not_exist.npy")), &["does_not_exist.npy", "voxel_num"]);

    // Pillar inputs that do not fit the model: more valid pillars than rows, a pillar off the grid.
    let p = d.join("num_9000.npy");
    pillarq::npy::write_npy(
        &p,
        &pillarq::tensor::Tensor { shape: vec![1], data: pillarq::tensor::Data::I32(vec![9000]) },
    )
    .unwrap();
    infer_fails(d, ("voxel_num", p), &["voxel_num", "9000 valid pillars", "8000 pillar rows"]);
    let mut idx = pillarq::npy::read_npy(&d.join("voxel_idxs.npy")).unwrap();
    if let pillarq::tensor::Data::I32(v) = &mut idx.data {
        v[2] = 1000;
    }
    let p = d.join("idx_off_grid.npy");
    pillarq::npy::write_npy(&p, &idx).unwrap();
    infer_fails(d, ("voxel_idxs", p), &["voxel_idxs", "row 0", "1000", "248 x 216 grid"]);

    // A missing input altogether.
    let out = d.join("out_missing");
    let args = infer_with(&out, &[("voxels", d.join("voxels.npy")), ("voxel_idxs", d.join("voxel_idxs.npy"))]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&args, &["voxel_num"]);

    // Bad --input syntax.
    fails(&["infer", s(&small()), "--input", "voxels", "--out", s(&out)], &["NAME=FILE.npy"]);
    let r = fails(&["infer", s(&small()), "--input", "voxels=", "--out", s(&out)], &["'voxels='", "the file is empty"]);
    assert!(!r.stderr.contains("': :"), "{}", r.stderr);
}

/// A float64 .npy written by hand (pillarq only writes f32).
fn npy_f64(shape: &[usize], v: &[f64]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({}), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

#[test]
fn unknown_op_inspects_but_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = build_model(
        vec![
            node("Relu", "/pre/Relu", &["x"], &["r"], vec![]),
            node("FancyOp", "/custom/FancyOp_0", &["r"], &["y"], vec![attr_i("level", 3)]),
        ],
        vec![],
        vec![vi("x", FLOAT, Some(&[2, 3]))],
        vec![vi("y", FLOAT, Some(&[2, 3]))],
    );
    let p = write_model(dir.path(), "fancy.onnx", &model);
    let r = pillarq(&["inspect", s(&p)]);
    assert_eq!(r.code, 0, "inspect must accept unknown ops: {}", r.stderr);
    assert!(r.stdout.contains("FancyOp"), "{}", r.stdout);

    let x = dir.path().join("x.npy");
    write_npy(&x, &Tensor::f32(vec![2, 3], vec![1.0, -2.0, 3.0, -4.0, 5.0, -6.0])).unwrap();
    let out = dir.path().join("out");
    fails(
        &["infer", s(&p), "--input", &format!("x={}", x.display()), "--out", s(&out)],
        &["/custom/FancyOp_0", "FancyOp", "not supported"],
    );
    assert!(!out.join("y.npy").exists());
}

#[test]
fn malformed_weight_ranks_are_errors_not_panics() {
    // The input has no declared shape, so only the weight's own rank can be checked.
    let dir = tempfile::tempdir().unwrap();
    for (op, name) in [("Conv", "/odd/Conv"), ("ConvTranspose", "/odd/ConvTranspose"), ("Gemm", "/odd/Gemm")] {
        let model = build_model(
            vec![node(op, name, &["x", "w"], &["y"], vec![])],
            vec![init_f32("w", &[4], &[0.5; 4])],
            vec![vi("x", FLOAT, None)],
            vec![vi("y", FLOAT, None)],
        );
        let p = write_model(dir.path(), &format!("{op}.onnx"), &model);
        fails(&["inspect", s(&p)], &[name, "[4]"]);
    }
}

/// A calibration whose threshold is unusable (scale rounds below a normal float32, negative,
/// overflowing) is an error naming the calibration file, not the plan that came with it.
#[test]
fn unusable_calibration_names_the_calibration_file() {
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.json");
    std::fs::write(&plan, r#"{"default": "int8"}"#).unwrap();
    for (name, amax, why) in [
        ("tiny.json", "1e-45", "smallest normal"),
        ("negative.json", "-3.5", "positive finite"),
        // Beyond f32: the JSON reader says so, with line and column.
        ("huge.json", "1e39", "out of range at line 3"),
    ] {
        let calib = tmp.path().join(name);
        std::fs::write(
            &calib,
            format!(
                r#"{{"model": "m.onnx", "data": "d", "split": "train", "frame_ids": [],
                   "calibration": {{"method": "max", "frames": 1,
                     "activations": {{"/pfn/linear/MatMul": {{"tensor": "voxels", "amax": {amax}}}}}}},
                   "weights": {{}}, "tensors": {{}}}}"#
            ),
        )
        .unwrap();
        let out = tmp.path().join("engine");
        let r = fails(
            &["emit", "--model", s(&small()), "--plan", s(&plan), "--calib", s(&calib), "--out", s(&out)],
            &[name, why],
        );
        assert!(!r.stderr.contains("plan.json"), "{}", r.stderr);
        assert!(name == "huge.json" || r.stderr.contains("/pfn/linear/MatMul"), "{}", r.stderr);
        assert!(!out.join("model.onnx").exists());
    }
}

/// Models whose values are wrong though their structure is fine: NaN/Inf weights, Conv group 0,
/// a standard op name in another domain, an output listed twice.
#[test]
fn bad_model_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = conv_model(&[6, 4, 3, 3], true, &[1, 6, 8, 8]);
    let w = &mut m.graph.as_mut().unwrap().initializer[0];
    let mut raw = w.raw_data.clone().unwrap();
    raw[20..24].copy_from_slice(&f32::NAN.to_le_bytes());
    w.raw_data = Some(raw);
    let p = write_model(dir.path(), "nan.onnx", &m);
    fails(&["inspect", s(&p)], &["nan.onnx", "/backbone/conv0/Conv", "conv_w", "NaN", "element 5"]);

    let mut m = conv_model(&[6, 4, 3, 3], true, &[1, 6, 8, 8]);
    m.graph.as_mut().unwrap().node[0].attribute.push(pillarq::onnx::build::attr_i("group", 0));
    let p = write_model(dir.path(), "group0.onnx", &m);
    fails(&["inspect", s(&p)], &["group0.onnx", "/backbone/conv0/Conv", "group 0"]);

    let mut m = conv_model(&[6, 4, 3, 3], true, &[1, 6, 8, 8]);
    let g = m.graph.as_mut().unwrap();
    let y = g.output[0].clone();
    g.output.push(y);
    let p = write_model(dir.path(), "twice.onnx", &m);
    fails(&["inspect", s(&p)], &["twice.onnx", "'y'", "listed twice"]);

    // A Conv of domain com.example is not ONNX's Conv: it imports, is no quantizable layer, and
    // running it fails naming the node and the domain.
    let mut m = conv_model(&[6, 4, 3, 3], true, &[1, 6, 8, 8]);
    m.graph.as_mut().unwrap().node[0].domain = Some("com.example".into());
    let p = write_model(dir.path(), "domain.onnx", &m);
    let r = pillarq(&["inspect", s(&p), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["quantizable_layers"].as_array().unwrap().len(), 0);
    let x = dir.path().join("x.npy");
    pillarq::npy::write_npy(&x, &pillarq::tensor::Tensor::f32(vec![1, 4, 8, 8], vec![0.5; 256])).unwrap();
    fails(
        &["infer", s(&p), "--input", &format!("x={}", s(&x)), "--out", s(&dir.path().join("o"))],
        &["/backbone/conv0/Conv", "com.example", "not supported"],
    );
}

/// Broken metadata is the model's fault: the error names the model file and the key, not the
/// first data frame.
#[test]
fn bad_metadata_names_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = pillarq::onnx::load_model(&small()).unwrap().model;
    let meta = m.metadata_props.iter_mut().find(|p| p.key.as_deref() == Some("pointpillars")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(meta.value.as_deref().unwrap()).unwrap();
    v["voxel_size"] = serde_json::json!([0.0, 0.32, 4.0]);
    meta.value = Some(v.to_string());
    let p = write_model(dir.path(), "badmeta.onnx", &m);
    let data = dir.path().join("data");
    let r = pillarq(&["synth", "--out", s(&data), "--train", "0", "--val", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = fails(
        &["detect", "--model", s(&p), "--data", s(&data), "--out", s(&dir.path().join("o"))],
        &["badmeta.onnx", "voxel_size", "positive"],
    );
    assert!(!r.stderr.contains("frame 000000"), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// Sizes from files (issue 13): counts that overflow, tensors over the memory budget, worker
// threads, files that are not regular files. Each command must end promptly.

/// Runs pillarq with a deadline: (exit code, stderr). Fails the test on a panic, a signal or
/// a command still running after `secs`.
fn pillarq_within(secs: u64, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pillarq"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run pillarq");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed().as_secs() > secs {
            child.kill().ok();
            child.wait().ok();
            panic!("pillarq {args:?} still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let err = reader.join().unwrap();
    assert!(!err.contains("panicked"), "pillarq {args:?} panicked:\n{err}");
    let code = status.code().unwrap_or_else(|| panic!("pillarq {args:?} ended by a signal: {status:?}\n{err}"));
    (code, err)
}

/// `pillarq_within` expecting failure, with stderr naming every one of `needles`.
fn fails_within(secs: u64, args: &[&str], needles: &[&str]) -> String {
    let (code, err) = pillarq_within(secs, args);
    assert!(code != 0 && code != 101, "pillarq {args:?} exited {code}:\n{err}");
    for n in needles {
        assert!(err.contains(n), "pillarq {args:?}: stderr does not mention {n:?}:\n{err}");
    }
    err
}

#[test]
fn initializer_whose_element_count_overflows() {
    // [2^62, 4] with no data: the count wraps to 0, which "matched" the empty payload.
    let dir = tempfile::tempdir().unwrap();
    let model = build_model(
        vec![node("Gather", "/pick/Gather", &["table", "idx"], &["y"], vec![])],
        vec![init_f32("table", &[1 << 62, 4], &[]), init_i64("idx", &[1], &[5])],
        vec![],
        vec![vi("y", FLOAT, None)],
    );
    let p = write_model(dir.path(), "wrap.onnx", &model);
    fails_within(60, &["inspect", s(&p)], &["wrap.onnx", "table", "[4611686018427387904, 4]", "overflows"]);
}

#[test]
fn npy_whose_byte_size_overflows() {
    // (2^62 + 1,) float32 "needs" 4 bytes after wrapping: exactly what the file holds.
    let dir = tempfile::tempdir().unwrap();
    let model = build_model(
        vec![node("Relu", "/act/Relu", &["x"], &["y"], vec![])],
        vec![],
        vec![vi("x", FLOAT, None)],
        vec![vi("y", FLOAT, None)],
    );
    let p = write_model(dir.path(), "relu.onnx", &model);
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387905,), }\n";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1f32.to_le_bytes());
    let x = dir.path().join("huge.npy");
    std::fs::write(&x, bytes).unwrap();
    let out = dir.path().join("out");
    let input = format!("x={}", x.display());
    fails_within(60, &["infer", s(&p), "--input", &input, "--out", s(&out)], &["huge.npy", "overflows"]);
    assert!(!out.join("y.npy").exists());
}

fn constant_of_shape_model(dims: &[i64]) -> pillarq::onnx::proto::ModelProto {
    build_model(
        vec![node("ConstantOfShape", "/grid/ConstantOfShape", &["dims"], &["y"], vec![])],
        vec![init_i64("dims", &[dims.len()], dims)],
        vec![],
        vec![vi("y", FLOAT, None)],
    )
}

#[test]
fn constant_of_shape_over_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    // The count overflows: was "capacity overflow".
    let p = write_model(dir.path(), "wrap.onnx", &constant_of_shape_model(&[53569, i64::MAX]));
    fails_within(60, &["inspect", s(&p)], &["/grid/ConstantOfShape", "[53569, 9223372036854775807]", "memory budget"]);
    // 2^40 x 32 float32 = 140.74 TB: was SIGABRT "memory allocation of ... bytes failed".
    let p = write_model(dir.path(), "big.onnx", &constant_of_shape_model(&[1 << 40, 32]));
    fails_within(60, &["inspect", s(&p)], &["/grid/ConstantOfShape", "140.74 TB", "memory budget"]);
    // The budget is settable: 4 MB passes under the default and fails under --max-memory 1M.
    let p = write_model(dir.path(), "small.onnx", &constant_of_shape_model(&[1024, 1024]));
    let (code, err) = pillarq_within(60, &["inspect", s(&p)]);
    assert_eq!(code, 0, "{err}");
    fails_within(60, &["inspect", s(&p), "--max-memory", "1M"], &["/grid/ConstantOfShape", "4.19 MB", "1.05 MB"]);
    let (code, err) = pillarq_within(60, &["inspect", s(&p), "--max-memory", "lots"]);
    assert!(code != 0 && err.contains("'lots' is not a memory size"), "{err}");
}

/// x [1, 4, 8, 8] -> Pad (constant pads, or the graph input `pads` when `None`) -> Conv 3x3 -> y.
fn pad_conv_model(pads: Option<&[i64]>) -> pillarq::onnx::proto::ModelProto {
    let mut inits = vec![init_f32("conv_w", &[6, 4, 3, 3], &[0.1; 6 * 4 * 9])];
    let mut inputs = vec![vi("x", FLOAT, Some(&[1, 4, 8, 8]))];
    match pads {
        Some(p) => inits.push(init_i64("pads", &[8], p)),
        None => inputs.push(vi("pads", INT64, Some(&[8]))),
    }
    build_model(
        vec![
            node("Pad", "/neck/Pad", &["x", "pads"], &["padded"], vec![]),
            node("Conv", "/neck/Conv", &["padded", "conv_w"], &["y"], vec![]),
        ],
        inits,
        inputs,
        vec![vi("y", FLOAT, None)],
    )
}

#[test]
fn pads_that_overflow_or_exceed_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = d.join("x.npy");
    write_npy(&x, &Tensor::f32(vec![1, 4, 8, 8], vec![0.5; 256])).unwrap();
    let xin = format!("x={}", x.display());
    // pads[4] = 2^62 (after the batch axis): was a panic in the conv workers, repeated for ever.
    let p = write_model(d, "pad62.onnx", &pad_conv_model(Some(&[0, 0, 0, 0, 1 << 62, 0, 0, 0])));
    fails_within(60, &["inspect", s(&p)], &["pad62.onnx", "/neck/Pad", "overflows"]);
    for threads in ["1", "2"] {
        let args = ["infer", s(&p), "--input", &xin, "--out", s(d), "--threads", threads];
        fails_within(60, &args, &["/neck/Pad", "overflows"]);
    }
    // 100000 on each side of H and W: 4 x 200008 x 200008 float32 = 640.05 GB.
    let p = write_model(d, "pad1e5.onnx", &pad_conv_model(Some(&[0, 0, 100000, 100000, 0, 0, 100000, 100000])));
    fails_within(60, &["inspect", s(&p), "--max-memory", "64G"], &["/neck/Pad", "640.05 GB", "memory budget"]);
    // The same pads from a .npy, known only when the model runs.
    let p = write_model(d, "pad_input.onnx", &pad_conv_model(None));
    let pads = d.join("pads.npy");
    write_npy(&pads, &Tensor::i64(vec![8], vec![0, 0, 100000, 100000, 0, 0, 100000, 100000])).unwrap();
    let pin = format!("pads={}", pads.display());
    let out = d.join("out");
    let args = ["infer", s(&p), "--input", &xin, "--input", &pin, "--out", s(&out), "--max-memory", "64G"];
    fails_within(60, &args, &["/neck/Pad", "640.05 GB", "memory budget"]);
    assert!(!out.join("y.npy").exists());
    // Within the budget, the run-time pads work.
    write_npy(&pads, &Tensor::i64(vec![8], vec![0, 0, 1, 1, 0, 0, 1, 1])).unwrap();
    let (code, err) = pillarq_within(60, &["infer", s(&p), "--input", &xin, "--input", &pin, "--out", s(&out)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(pillarq::npy::read_npy(&out.join("y.npy")).unwrap().shape, vec![1, 6, 8, 8]);
}

#[test]
fn metadata_grid_too_large_for_random_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(small()).unwrap();
    let model = pillarq::onnx::decode_model(&bytes, &small()).unwrap();
    let meta = model.metadata_props.iter().find(|kv| kv.key.as_deref() == Some("pointpillars")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(meta.value.as_deref().unwrap()).unwrap();
    cfg["grid_size"] = serde_json::json!([100000, 100000, 1]);
    let p = dir.path().join("grid.onnx");
    let edited = pillarq::onnx::metadata::with_metadata_entry(&bytes, "pointpillars", &cfg.to_string(), &p).unwrap();
    std::fs::write(&p, edited).unwrap();
    let out = dir.path().join("out");
    fails_within(
        60,
        &["infer", s(&p), "--random", "0", "--out", s(&out)],
        &["grid.onnx", "grid_size", "too many cells"],
    );
}

#[test]
fn synth_frame_counts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("kitti");
    fails_within(60, &["synth", "--out", s(&out), "--train", "18446744073709551615"], &["at most 1000000"]);
    fails_within(60, &["synth", "--out", s(&out), "--train", "999999", "--val", "2"], &["at most 1000000"]);
}

#[test]
fn thread_counts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = small();
    let args = ["infer", s(&model), "--random", "0", "--out", s(&out), "--threads", "100000"];
    fails_within(30, &args, &["100000 worker threads", "at most 1024"]);
    let args = ["synth", "--out", s(&out), "--train", "1", "--val", "0", "--threads", "100000"];
    fails_within(30, &args, &["at most 1024"]);
}

#[test]
fn a_fifo_in_the_dataset_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("kitti");
    let (code, err) = pillarq_within(120, &["synth", "--out", s(&data), "--train", "1", "--val", "1"]);
    assert_eq!(code, 0, "{err}");
    let bin = data.join("training/velodyne/000001.bin");
    std::fs::remove_file(&bin).unwrap();
    let made = Command::new("mkfifo").arg(&bin).status().expect("mkfifo");
    assert!(made.success());
    let model = small();
    let args = ["eval", "--model", s(&model), "--data", s(&data), "--split", "val"];
    fails_within(60, &args, &["000001.bin", "not a regular file"]);
    let npy = dir.path().join("fifo.npy");
    assert!(Command::new("mkfifo").arg(&npy).status().unwrap().success());
    let input = format!("voxels={}", npy.display());
    fails_within(
        60,
        &["infer", s(&small()), "--input", &input, "--out", s(dir.path())],
        &["fifo.npy", "not a regular file"],
    );
}

/// Two small constants that broadcast to a huge output ([2^20, 1] + [1, 2^20] = 2^40 elements), and
/// a Range whose values would leave int64: errors naming the node, not an abort or a wrap.
#[test]
fn broadcasts_and_ranges_beyond_the_budget_or_int64() {
    let dir = tempfile::tempdir().unwrap();
    let m = build_model(
        vec![
            node("ConstantOfShape", "/a/ConstantOfShape", &["da"], &["a"], vec![]),
            node("ConstantOfShape", "/b/ConstantOfShape", &["db"], &["b"], vec![]),
            node("Add", "/grid/Add", &["a", "b"], &["y"], vec![]),
        ],
        vec![init_i64("da", &[2], &[1 << 20, 1]), init_i64("db", &[2], &[1, 1 << 20])],
        vec![],
        vec![vi("y", FLOAT, None)],
    );
    let p = write_model(dir.path(), "broadcast.onnx", &m);
    fails_within(60, &["inspect", s(&p)], &["/grid/Add", "[1048576, 1048576]", "memory budget"]);

    // start i64::MAX - 1999, limit i64::MAX, delta 1000: 2 values (the count went through f64,
    // which rounded the start down and made it 3, the third wrapping past int64 to its minimum).
    let m = build_model(
        vec![node("Range", "/r/Range", &["start", "limit", "delta"], &["y"], vec![])],
        vec![
            init_i64("start", &[], &[i64::MAX - 1999]),
            init_i64("limit", &[], &[i64::MAX]),
            init_i64("delta", &[], &[1000]),
        ],
        vec![],
        vec![vi("y", INT64, None)],
    );
    let p = write_model(dir.path(), "range.onnx", &m);
    let out = Command::new(env!("CARGO_BIN_EXE_pillarq")).args(["inspect", s(&p), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["outputs"][0]["shape"], serde_json::json!([2]), "{j}");
}
