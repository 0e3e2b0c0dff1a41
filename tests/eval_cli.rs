//! `pillarq eval --preds`: the KITTI AP evaluator through the command line, on hand-made
//! KITTI directories with known answers.

use std::path::Path;
use std::process::Command;

use pillarq::kitti::label::{write_labels, Object};
use pillarq::kitti::KittiDir;

fn object(class: &str, i: usize) -> Object {
    let x = -8.0 + (i % 9) as f32 * 2.0;
    let z = 12.0 + (i % 7) as f32 * 3.0;
    let (dims, top) = match class {
        "Car" => ([1.5, 1.6, 3.9], 150.0f64),
        "Pedestrian" => ([1.75, 0.6, 0.8], 140.0),
        _ => ([1.7, 0.6, 1.76], 145.0),
    };
    let left = 100.0 + (i % 11) as f64 * 90.0;
    Object {
        class: class.into(),
        truncated: 0.0,
        occluded: 0,
        alpha: 0.1,
        bbox: [left, top, left + 60.0, top + 70.0],
        dimensions: dims,
        location: [x, 1.65, z],
        rotation_y: 0.2 * (i % 5) as f32,
        score: None,
    }
}

/// 45 frames, each with a car, a pedestrian and a cyclist (well apart), plus a DontCare.
fn dataset(root: &Path) -> KittiDir {
    let d = KittiDir::create(root).unwrap();
    let ids: Vec<String> = (0..45).map(|i| format!("{i:06}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let mut ped = object("Pedestrian", i + 3);
        ped.location[0] += 20.0;
        let mut cyc = object("Cyclist", i + 5);
        cyc.location[0] -= 20.0;
        let mut dc = object("Car", i);
        dc.class = "DontCare".into();
        write_labels(d.label_path(id), &[object("Car", i), ped, cyc, dc]).unwrap();
    }
    d.write_split("val", &ids).unwrap();
    d
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pillarq")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn ground_truth_as_predictions_gives_100() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dataset(&tmp.path().join("data"));
    let preds = perfect_preds(&d, tmp.path());
    let (code, out, err) =
        run(&["eval", "--preds", preds.to_str().unwrap(), "--data", d.root().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!((j["map"].as_f64().unwrap() - 100.0).abs() < 1e-6, "{out}");
    for metric in ["3d", "bev", "2d"] {
        for table in ["R40", "R11"] {
            for class in ["Car", "Pedestrian", "Cyclist"] {
                for diff in ["easy", "moderate", "hard"] {
                    let v = j["ap"][metric][table][class][diff].as_f64().unwrap();
                    assert!((v - 100.0).abs() < 1e-6, "{metric} {table} {class} {diff}: {v}");
                }
            }
        }
    }
    assert_eq!(j["num_gt"]["Car"]["moderate"], 45);
    assert_eq!(j["few_gt"], serde_json::json!([]), "45 objects per class and difficulty: no R40 ceiling");

    // Dropping every pedestrian detection: Pedestrian AP 0, the others still 100.
    for id in d.split_ids("val").unwrap() {
        let f = preds.join(format!("{id}.txt"));
        let kept: Vec<Object> =
            pillarq::kitti::label::read_labels(&f).unwrap().into_iter().filter(|o| o.class != "Pedestrian").collect();
        write_labels(&f, &kept).unwrap();
    }
    let (code, out, _) =
        run(&["eval", "--preds", preds.to_str().unwrap(), "--data", d.root().to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["ap"]["3d"]["R40"]["Pedestrian"]["moderate"].as_f64().unwrap(), 0.0);
    assert!((j["ap"]["3d"]["R40"]["Car"]["moderate"].as_f64().unwrap() - 100.0).abs() < 1e-6);
    assert!((j["map"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-6);
}

/// Ground truth of each frame as its predictions (score 0.9), written to `<tmp>/preds`.
fn perfect_preds(d: &KittiDir, tmp: &Path) -> std::path::PathBuf {
    let preds = tmp.join("preds");
    std::fs::create_dir_all(&preds).unwrap();
    for id in d.split_ids("val").unwrap() {
        let gt = pillarq::kitti::label::read_labels(d.label_path(&id)).unwrap();
        let dets: Vec<Object> =
            gt.into_iter().filter(|o| o.class != "DontCare").map(|o| Object { score: Some(0.9), ..o }).collect();
        write_labels(preds.join(format!("{id}.txt")), &dets).unwrap();
    }
    preds
}

#[test]
fn fewer_than_41_objects_show_the_r40_ceiling() {
    // Six frames, perfect predictions: 6 objects per class, R40 = 100 * 5/40 = 12.5 at most.
    let tmp = tempfile::tempdir().unwrap();
    let d = dataset(&tmp.path().join("data"));
    let preds = perfect_preds(&d, tmp.path());
    let args = ["eval", "--preds", preds.to_str().unwrap(), "--data", d.root().to_str().unwrap(), "--frames", "6"];
    let (code, out, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3d    Car            12.50    12.50    12.50"), "{out}");
    assert!(
        out.contains("note: fewer than 41 counted ground-truth objects; R40 is then at most 100 (n - 1) / 40:"),
        "{out}"
    );
    for class in ["Car        ", "Pedestrian ", "Cyclist    "] {
        let line = format!(
            "\n  {class} easy n = 6 (R40 <= 12.50), moderate n = 6 (R40 <= 12.50), hard n = 6 (R40 <= 12.50)\n"
        );
        assert!(out.contains(&line), "{out}");
    }
    let (code, out, _) = run(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["few_gt"].as_array().unwrap().len(), 9);
    assert_eq!(
        j["few_gt"][4],
        serde_json::json!({"class": "Pedestrian", "difficulty": "moderate", "num_gt": 6, "max_r40": 12.5})
    );
    assert!((j["ap"]["3d"]["R40"]["Pedestrian"]["moderate"].as_f64().unwrap() - 12.5).abs() < 1e-9, "{out}");
}

#[test]
fn malformed_result_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dataset(&tmp.path().join("data"));
    let preds = tmp.path().join("preds");
    std::fs::create_dir_all(&preds).unwrap();
    // Frame 0 has a 14-field line; the error names the file and the line.
    std::fs::write(preds.join("000000.txt"), "Car 0.00 0 0.1 10 10 50 50 1.5 1.6 3.9 1 1.6 20\n").unwrap();
    let (code, _, err) = run(&["eval", "--preds", preds.to_str().unwrap(), "--data", d.root().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("000000.txt:1") && err.contains("expected 15 or 16 fields, found 14"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A result file missing for a frame is named.
    std::fs::write(preds.join("000000.txt"), "").unwrap();
    let (code, _, err) = run(&["eval", "--preds", preds.to_str().unwrap(), "--data", d.root().to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("000001.txt") && err.contains("no result file"), "{err}");
}

#[test]
fn missing_calib_file_is_one_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dataset(&tmp.path().join("data"));
    pillarq::kitti::velodyne::write_points(d.velodyne_path("000000"), &[[10.0, 0.0, -1.0, 0.3]]).unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/pointpillars_small.onnx");
    let (code, _, err) = run(&["eval", "--model", model.to_str().unwrap(), "--data", d.root().to_str().unwrap(), "-q"]);
    assert_ne!(code, 0);
    let calib = d.calib_path("000000");
    let os = std::io::Error::from_raw_os_error(2).to_string(); // ENOENT, as the OS words it
    assert_eq!(err, format!("error: frame 000000: {}: {os}\n", calib.display()));
}
