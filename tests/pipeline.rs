//! The data and detection pipeline through the command line: synth -> detect -> eval, and the
//! bad inputs of the KITTI format (truncated scans, short label lines, calibration without
//! Tr_velo_to_cam, NaN points, empty frames, frames without objects).

mod common;

use std::path::Path;

use common::pillarq_bin;

fn small_model() -> String {
    format!("{}/onnx/pointpillars_small.onnx", env!("CARGO_MANIFEST_DIR"))
}

fn synth(dir: &Path, train: usize, val: usize) {
    let (code, _, err) = pillarq_bin(&[
        "synth",
        "--out",
        dir.to_str().unwrap(),
        "--train",
        &train.to_string(),
        "--val",
        &val.to_string(),
        "--seed",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn synth_detect_eval_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 4);
    let val: Vec<String> =
        std::fs::read_to_string(data.join("ImageSets/val.txt")).unwrap().lines().map(String::from).collect();
    assert_eq!(val, ["000002", "000003", "000004", "000005"]);
    // Real KITTI sizes: 16 bytes a point, about 100k+ points a frame.
    let bytes = std::fs::metadata(data.join("training/velodyne/000002.bin")).unwrap().len();
    assert!(bytes.is_multiple_of(16) && bytes / 16 > 80_000, "{bytes} bytes");

    let preds = tmp.path().join("preds");
    let (code, out, err) = pillarq_bin(&[
        "detect",
        "--model",
        &small_model(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("4 frames"), "{out}");
    for id in &val {
        assert!(preds.join(format!("{id}.txt")).exists() && preds.join(format!("{id}.json")).exists());
        // Every result line has 16 fields (with score).
        for line in std::fs::read_to_string(preds.join(format!("{id}.txt"))).unwrap().lines() {
            assert_eq!(line.split_whitespace().count(), 16, "{line}");
        }
    }
    // Evaluating the written files equals evaluating in memory.
    let (c1, by_files, e1) =
        pillarq_bin(&["eval", "--preds", preds.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"]);
    let (c2, in_memory, e2) =
        pillarq_bin(&["eval", "--model", &small_model(), "--data", data.to_str().unwrap(), "--json", "--quiet"]);
    assert_eq!((c1, c2), (0, 0), "{e1}{e2}");
    let a: serde_json::Value = serde_json::from_str(&by_files).unwrap();
    let b: serde_json::Value = serde_json::from_str(&in_memory).unwrap();
    assert_eq!(a["num_gt"], b["num_gt"]);
    assert!(a["num_gt"]["Car"]["hard"].as_u64().unwrap() > 0);
    // Ground truth evaluated as predictions: 100 wherever there are enough objects is checked in
    // eval_cli.rs; here the result files of a real detector must at least be well formed.
    assert!(a["map"].as_f64().unwrap() >= 0.0);

    // voxelize writes the model's inputs named after them.
    let vox = tmp.path().join("vox");
    let bin = data.join("training/velodyne/000002.bin");
    let calib = data.join("training/calib/000002.txt");
    let (code, _, err) = pillarq_bin(&[
        "voxelize",
        "--model",
        &small_model(),
        "--points",
        bin.to_str().unwrap(),
        "--calib",
        calib.to_str().unwrap(),
        "--out",
        vox.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for n in ["voxels", "voxel_idxs", "voxel_num"] {
        assert!(vox.join(format!("{n}.npy")).exists());
    }
    let num = pillarq::npy::read_npy(&vox.join("voxel_num.npy")).unwrap().to_i64_vec().unwrap();
    assert!(num[0] > 1000, "pillars in view: {}", num[0]);
}

#[test]
fn bad_kitti_files_are_clear_errors_or_handled() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 0, 3);
    let d = data.to_str().unwrap();
    let detect = |out: &str| pillarq_bin(&["detect", "--model", &small_model(), "--data", d, "--out", out, "--quiet"]);
    let out = tmp.path().join("p").to_str().unwrap().to_string();

    // Empty scan (0 points) and a frame without objects: fine, no detections, AP still computed.
    std::fs::write(data.join("training/velodyne/000001.bin"), b"").unwrap();
    std::fs::write(data.join("training/label_2/000001.txt"), b"").unwrap();
    let (code, _, err) = detect(&out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(Path::new(&out).join("000001.txt")).unwrap(), "");
    let (code, _, err) = pillarq_bin(&["eval", "--preds", &out, "--data", d]);
    assert_eq!(code, 0, "{err}");

    // NaN points are dropped with a warning, as OpenPCDet's range filter drops them.
    let mut bytes = std::fs::read(data.join("training/velodyne/000002.bin")).unwrap();
    bytes[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(data.join("training/velodyne/000002.bin"), &bytes).unwrap();
    let (code, _, err) = detect(&out);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("non-finite"), "{err}");

    // A truncated scan: the file and the problem are named.
    std::fs::write(data.join("training/velodyne/000002.bin"), &bytes[..bytes.len() - 5]).unwrap();
    let (code, _, err) = detect(&out);
    assert_ne!(code, 0);
    assert!(err.contains("000002.bin") && err.contains("not a multiple of 16"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::write(data.join("training/velodyne/000002.bin"), &bytes[..bytes.len() - 16]).unwrap();

    // Calibration without Tr_velo_to_cam.
    let calib = data.join("training/calib/000000.txt");
    let text = std::fs::read_to_string(&calib).unwrap();
    let cut: String = text.lines().filter(|l| !l.starts_with("Tr_velo_to_cam")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&calib, cut).unwrap();
    let (code, _, err) = detect(&out);
    assert_ne!(code, 0);
    assert!(err.contains("000000.txt") && err.contains("Tr_velo_to_cam"), "{err}");
    std::fs::write(&calib, text).unwrap();

    // A ground-truth label line with 14 fields: file and line named by eval.
    let label = data.join("training/label_2/000002.txt");
    std::fs::write(&label, "Car 0.00 0 -1.58 587.0 173.3 614.1 200.1 1.65 1.67 3.64 -0.65 1.71 46.70\n").unwrap();
    let (code, _, err) = pillarq_bin(&["eval", "--preds", &out, "--data", d]);
    assert_ne!(code, 0);
    assert!(err.contains("000002.txt:1") && err.contains("found 14"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A results folder reused with fewer frames holds no stale frames: detect removes what its
/// earlier run wrote, and `eval --preds` refuses to score frames the last run did not detect.
#[test]
fn reused_results_folder_is_not_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 0, 4);
    let (d, out, model) = (data.to_str().unwrap(), tmp.path().join("preds"), small_model());
    let o = out.to_str().unwrap();
    let detect = |extra: &[&str]| {
        let args = [&["detect", "--model", model.as_str(), "--data", d, "--out", o, "--quiet"][..], extra].concat();
        let (code, _, err) = pillarq_bin(&args);
        assert_eq!(code, 0, "{err}");
    };
    detect(&[]);
    // A file of another tool in the folder is left alone.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    detect(&["--frames", "2"]);
    let mut files: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["000000.json", "000000.txt", "000001.json", "000001.txt", "notes.txt", "pillarq-results.json"]);
    let (code, _, err) = pillarq_bin(&["eval", "--preds", o, "--data", d]);
    assert_ne!(code, 0);
    assert!(err.contains("did not detect 2 of the 4 frames") && err.contains("000002"), "{err}");
    let (code, out2, err) = pillarq_bin(&["eval", "--preds", o, "--data", d, "--frames", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out2.contains("\"map\""));
}

/// `synth` into a folder of another data set is refused (with or without its record), a scan cut
/// short is redone, and --force regenerates everything.
#[test]
fn synth_never_mixes_data_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("d");
    let o = out.to_str().unwrap();
    let synth = |seed: &str, extra: &[&str]| {
        let args = [&["synth", "--out", o, "--train", "1", "--val", "2", "--seed", seed][..], extra].concat();
        pillarq_bin(&args)
    };
    let (code, _, err) = synth("1", &[]);
    assert_eq!(code, 0, "{err}");
    let scan = out.join("training/velodyne/000001.bin");
    let whole = std::fs::read(&scan).unwrap();
    let (code, _, err) = synth("2", &[]);
    assert!(code != 0 && err.contains("seed 1, asked for seed 2") && err.contains("--force"), "{err}");
    // Cut short: redone, to the same bytes.
    std::fs::write(&scan, &whole[..whole.len() - 7]).unwrap();
    let (code, stdout, err) = synth("1", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("wrote 1 frames (2 already there)"), "{stdout}");
    assert_eq!(std::fs::read(&scan).unwrap(), whole);
    // Without the record (a folder from an older pillarq), the frames themselves are checked.
    std::fs::remove_file(out.join("synth.json")).unwrap();
    let (code, _, err) = synth("3", &[]);
    assert!(code != 0 && err.contains("is not frame 000000 of seed 3"), "{err}");
    let (code, stdout, err) = synth("3", &["--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("wrote 3 frames (0 already there)"), "{stdout}");
    assert_ne!(std::fs::read(&scan).unwrap(), whole);
}
