//! `pillarq run` end to end on a fresh synthetic split, its resumption, and the report's numbers
//! against the files they come from.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::pillarq_bin;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// 4 calibration and 10 validation frames, made once.
fn data() -> &'static Path {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let (code, _, err) =
            pillarq_bin(&["synth", "--out", s(&d.path().join("data")), "--train", "4", "--val", "10", "--seed", "11"]);
        assert_eq!(code, 0, "{err}");
        d
    })
    .path()
}

/// The pipeline file of these tests: 2 calibration frames, top 2, a short CPU benchmark.
fn pipeline(dir: &Path, out: &Path, frames: usize) -> PathBuf {
    let text = format!(
        "model: {}\ndata: {}\nout: {}\nframes: {frames}\ncalibration:\n  frames: 2\nsearch:\n  top_k: 2\n\
         sensitivity:\n  chunk: 3\nbench:\n  runs: 2\n  warmup: 1\n",
        s(&common::bundled("pointpillars_small.onnx")),
        s(&data().join("data")),
        s(out)
    );
    let p = dir.join(format!("pipeline-{frames}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// One uninterrupted run (6 frames), shared by the tests that read its results.
fn full_run() -> &'static (tempfile::TempDir, String, String) {
    static R: OnceLock<(tempfile::TempDir, String, String)> = OnceLock::new();
    R.get_or_init(|| {
        let t = tempfile::tempdir().unwrap();
        let p = pipeline(t.path(), &t.path().join("out"), 6);
        let (code, out, err) = pillarq_bin(&["run", s(&p)]);
        assert_eq!(code, 0, "{err}");
        (t, out, err)
    })
}

fn out_dir() -> PathBuf {
    full_run().0.path().join("out")
}

#[test]
fn every_stage_writes_its_file_and_a_rerun_computes_nothing() {
    let (t, first, err) = full_run();
    let o = out_dir();
    for f in [
        "pipeline.yaml",
        "provenance.json",
        "calib/pointpillars_small-max-sparse+equalize+rounding-2.json",
        "calib/pointpillars_small-max-sparse+equalize+rounding-2.cache",
        "sensitivity.json",
        "candidates.json",
        "engines/index.json",
        "engines/int8/model.onnx",
        "engines/int8/build-trt11.sh",
        "ap.json",
        "bench.json",
        "report.html",
        "report.md",
        "results.json",
        "plots/layer_drop.svg",
        "plots/greedy_path.svg",
        "plots/pareto_size.svg",
        "plots/pareto_latency.svg",
        "run-state.json",
    ] {
        assert!(o.join(f).exists(), "{f} missing; stderr:\n{err}");
    }
    for stage in ["calibrate", "sensitivity", "search", "emit", "evaluate", "bench", "report"] {
        assert!(err.lines().any(|l| l.starts_with(stage) && l.contains("ran in")), "{stage}: {err}");
    }
    assert!(first.contains("FP32 mAP") && first.contains("int8") && first.contains("report.html"), "{first}");
    let state_before = std::fs::read(o.join("run-state.json")).unwrap();

    let p = t.path().join("pipeline-6.yaml");
    let (code, again, err2) = pillarq_bin(&["run", s(&p)]);
    assert_eq!(code, 0, "{err2}");
    assert_eq!(&again, first, "a rerun prints the same summary");
    assert!(!err2.contains("ran in"), "a rerun computed something:\n{err2}");
    assert_eq!(err2.matches("unchanged, reused").count(), 7, "{err2}");
    assert_eq!(std::fs::read(o.join("run-state.json")).unwrap(), state_before);
}

#[test]
fn parts_of_the_pipeline_and_edited_settings() {
    full_run();
    // On a copy: the other tests read the shared run's files.
    let t = tempfile::tempdir().unwrap();
    let o = t.path().join("out");
    let st = Command::new("cp").args(["-r", s(&out_dir()), s(&o)]).status().unwrap();
    assert!(st.success());
    let p = pipeline(t.path(), &o, 6);
    // --json prints results.json; --from/--until run part of it.
    let ran = |err: &str| -> Vec<String> {
        err.lines().filter(|l| l.contains("ran in")).map(|l| l.split(' ').next().unwrap().to_string()).collect()
    };
    // A copied folder is reused; only the report changes (its settings name the new folder).
    let (code, _, err) = pillarq_bin(&["run", s(&p)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ran(&err), ["report"], "{err}");
    let (code, j, err3) = pillarq_bin(&["run", s(&p), "--json"]);
    assert_eq!(code, 0, "{err3}");
    assert!(ran(&err3).is_empty(), "{err3}");
    assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), json(&o.join("results.json")));
    let (code, _, err4) = pillarq_bin(&["run", s(&p), "--from", "evaluate", "--until", "bench", "--force"]);
    assert_eq!(code, 0, "{err4}");
    assert_eq!(ran(&err4), ["evaluate", "bench"], "{err4}");

    // An edited setting reruns what depends on it: the search and what follows, not before.
    let edited = std::fs::read_to_string(&p).unwrap().replace("top_k: 2", "top_k: 1");
    let p1 = t.path().join("pipeline-edited.yaml");
    std::fs::write(&p1, edited).unwrap();
    let (code, _, err5) = pillarq_bin(&["run", s(&p1), "--until", "search"]);
    assert_eq!(code, 0, "{err5}");
    assert_eq!(ran(&err5), ["search"], "{err5}");
    assert_eq!(json(&o.join("candidates.json"))["top_k"], 1);
    // A stage switched off leaves no stale result in the report.
    let (code, _, err7) = pillarq_bin(&["run", s(&p), "--bench", "none"]);
    assert_eq!(code, 0, "{err7}");
    assert!(err7.contains("moved the earlier bench.json"), "{err7}");
    assert!(o.join("bench.json.stale").exists() && !o.join("bench.json").exists());
    let r = json(&o.join("results.json"));
    assert!(r["missing"].as_array().unwrap().iter().any(|m| m["section"] == "latency"), "{r}");
    assert!(!o.join("plots/pareto_latency.svg").exists(), "the stale plot is removed");
    let (code, _, err8) = pillarq_bin(&["run", s(&p), "--from", "bench", "--until", "emit"]);
    assert_ne!(code, 0);
    assert!(err8.contains("comes after"), "{err8}");
    // --from a stage whose predecessors never ran is refused.
    let (code, _, err6) = pillarq_bin(&["run", s(&p1), "--from", "search", "--out", s(&t.path().join("fresh"))]);
    assert_ne!(code, 0);
    assert!(err6.contains("has not run"), "{err6}");
}

#[test]
fn print_config_round_trips_and_bad_keys_are_named() {
    let t = tempfile::tempdir().unwrap();
    let (code, yaml, err) = pillarq_bin(&["run", "--print-config", "--data", "d", "--top-k", "7"]);
    assert_eq!(code, 0, "{err}");
    for key in
        ["calibration:", "recipe: sparse,equalize,rounding", "top_k: 7", "backend: cpu", "calib_sweep:", "tolerance:"]
    {
        assert!(yaml.contains(key), "{key} not in:\n{yaml}");
    }
    let f = t.path().join("p.yaml");
    std::fs::write(&f, &yaml).unwrap();
    let (code, again, err) = pillarq_bin(&["run", s(&f), "--print-config"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, yaml);

    std::fs::write(&f, "data: d\nsearch:\n  top_kk: 3\n").unwrap();
    let (code, _, err) = pillarq_bin(&["run", s(&f)]);
    assert_ne!(code, 0);
    assert!(err.contains("p.yaml") && err.contains("top_kk"), "{err}");
    std::fs::write(&f, "data: d\ncalibration:\n  method: maxx\n").unwrap();
    let (_, _, err) = pillarq_bin(&["run", s(&f)]);
    assert!(err.contains("calibration.method") && err.contains("maxx"), "{err}");
    let (code, _, err) = pillarq_bin(&["run", "--model", s(&common::bundled("pointpillars_small.onnx"))]);
    assert_ne!(code, 0);
    assert!(err.contains("--data"), "{err}");
}

#[test]
fn killed_mid_sensitivity_a_rerun_gives_identical_results() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let p = pipeline(t.path(), &out, 6);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pillarq"))
        .args(["run", s(&p), "--until", "evaluate", "-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Calibration is recorded, then the sensitivity sweep's first chunk is written: kill there.
    let start = Instant::now();
    let mut killed_mid = false;
    while start.elapsed() < Duration::from_secs(300) {
        let state = std::fs::read_to_string(out.join("run-state.json")).unwrap_or_default();
        let chunks = walk(&out.join("cache")).iter().filter(|f| f.ends_with(".json")).count();
        if state.contains("\"calibrate\"") && chunks >= 1 {
            child.kill().unwrap();
            killed_mid = !out.join("sensitivity.json").exists();
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait().unwrap();
    assert!(killed_mid, "the run finished its sensitivity sweep before it could be killed");
    let (code, _, err) = pillarq_bin(&["run", s(&p), "--until", "evaluate"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("calibrate    unchanged"), "{err}");
    let strip = |mut v: Value| {
        v.as_object_mut().unwrap().remove("cost");
        v
    };
    let o = out_dir();
    assert_eq!(strip(json(&out.join("sensitivity.json"))), strip(json(&o.join("sensitivity.json"))));
    for f in ["candidates.json", "ap.json"] {
        let (a, b) = (json(&out.join(f)), json(&o.join(f)));
        assert_eq!(a.get("engines").or(a.get("candidates")), b.get("engines").or(b.get("candidates")), "{f}");
    }
}

fn walk(d: &Path) -> Vec<String> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(d) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

fn points(fig: &Value, series: &str) -> Vec<(f64, f64)> {
    fig["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == series)
        .unwrap_or_else(|| panic!("no series {series} in {}", fig["id"]))["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap()))
        .collect()
}

#[test]
fn the_report_plots_the_numbers_of_its_files() {
    full_run();
    let o = out_dir();
    let r = json(&o.join("results.json"));
    let sens = json(&o.join("sensitivity.json"));
    let cands = json(&o.join("candidates.json"));
    let ap = json(&o.join("ap.json"));
    let bench = json(&o.join("bench.json"));
    let index = json(&o.join("engines/index.json"));
    let fig = |id: &str| r["figures"].as_array().unwrap().iter().find(|f| f["id"] == id).unwrap().clone();

    // Per-layer AP drop, in graph order.
    let mut layers: Vec<&Value> = sens["layers"].as_array().unwrap().iter().collect();
    layers.sort_by_key(|l| l["index"].as_u64());
    let want: Vec<(f64, f64)> =
        layers.iter().map(|l| (l["index"].as_f64().unwrap(), l["drop"].as_f64().unwrap())).collect();
    assert_eq!(points(&fig("layer_drop"), "AP drop"), want);

    // The greedy path starts at full INT8 and adds the search's candidates in order.
    let mut want = vec![(100.0, cands["int8_map"].as_f64().unwrap())];
    for c in cands["candidates"].as_array().unwrap() {
        want.push((100.0 * c["int8_mac_fraction"].as_f64().unwrap(), c["map"].as_f64().unwrap()));
    }
    assert_eq!(points(&fig("greedy_path"), "greedy"), want);
    assert_eq!(points(&fig("greedy_path"), "bisect").len(), cands["bisect"]["candidates"].as_array().unwrap().len());

    // Pareto plots: every engine at (weight MB, mAP of ap.json) and (bench median, mAP).
    let engines = index.as_array().unwrap();
    let size = points(&fig("pareto_size"), "engines");
    let lat = points(&fig("pareto_latency"), "engines");
    assert_eq!(size.len(), engines.len());
    for (k, e) in engines.iter().enumerate() {
        let name = e["name"].as_str().unwrap();
        let map = ap["engines"][name]["map"].as_f64().unwrap();
        assert_eq!(size[k], (e["weight_bytes"].as_f64().unwrap() / 1e6, map), "{name}");
        let b = bench["results"].as_array().unwrap().iter().find(|b| b["engine"] == name).unwrap();
        assert_eq!(lat[k], (b["median_ms"].as_f64().unwrap(), map), "{name}");
        let row = r["engines"].as_array().unwrap().iter().find(|x| x["name"] == name).unwrap();
        assert_eq!(row["ap_3d_r40"]["Car"]["moderate"], ap["engines"][name]["ap"]["3d"]["R40"]["Car"]["moderate"]);
    }
    assert_eq!(r["fp32_map"], ap["engines"]["fp32"]["map"]);

    // Every candidate is in both reports; every plot has one marker per plotted point.
    let html = std::fs::read_to_string(o.join("report.html")).unwrap();
    let md = std::fs::read_to_string(o.join("report.md")).unwrap();
    for e in engines {
        let name = e["name"].as_str().unwrap();
        assert!(html.contains(&format!(">{name}")) && md.contains(&format!("| {name}")), "{name}");
    }
    // Self-contained: no script, nothing fetched (the SVG namespace URI is a name, not a fetch).
    for bad in ["<script", "src=\"http", "href=\"http", "url(", "@import", "<link"] {
        assert!(!html.contains(bad), "{bad}");
    }
    for f in r["figures"].as_array().unwrap() {
        let id = f["id"].as_str().unwrap();
        let svg = std::fs::read_to_string(o.join(format!("plots/{id}.svg"))).unwrap();
        let markers: usize = f["series"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] != "bars")
            .map(|s| s["points"].as_array().unwrap().len())
            .sum();
        assert_eq!(svg.matches("<circle").count(), markers, "{id}");
        assert!(html.contains(&format!("id=\"fig-{id}\"")), "{id}");
        assert!(md.contains(&format!("plots/{id}.svg")), "{id}");
    }
    // No calibration sweep ran: its section says so.
    assert!(r["missing"].as_array().unwrap().iter().any(|m| m["section"] == "calibration-set sweep"));
    assert!(html.contains("Not in this report") && html.contains("calib-sweep.json is missing"));
}

#[test]
fn a_report_of_some_results_leaves_the_rest_out_and_says_why() {
    full_run();
    let t = tempfile::tempdir().unwrap();
    std::fs::copy(out_dir().join("sensitivity.json"), t.path().join("sensitivity.json")).unwrap();
    let (code, out, err) = pillarq_bin(&["report", s(t.path())]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("report.html"), "{out}");
    let r = json(&t.path().join("results.json"));
    let missing: Vec<&str> = r["missing"].as_array().unwrap().iter().map(|m| m["section"].as_str().unwrap()).collect();
    for m in ["engines", "greedy search", "Pareto fronts", "calibration-set sweep"] {
        assert!(missing.contains(&m), "{m} not in {missing:?}");
    }
    let ids: Vec<&str> = r["figures"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["layer_drop", "layer_proxies"]);
    let html = std::fs::read_to_string(t.path().join("report.html")).unwrap();
    assert!(!html.contains("id=\"ap\"") && html.contains("candidates.json is missing"));
    assert!(r["engines"].as_array().unwrap().is_empty());

    // One engine, built and verified on a target (its verify.json): the report says so.
    let eng = t.path().join("engines/int8");
    std::fs::create_dir_all(&eng).unwrap();
    let index: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out_dir().join("engines/index.json")).unwrap()).unwrap();
    let int8: Vec<&Value> = index.iter().filter(|e| e["name"] == "int8").collect();
    std::fs::write(t.path().join("engines/index.json"), serde_json::to_string(&int8).unwrap()).unwrap();
    std::fs::copy(out_dir().join("engines/int8/emit.json"), eng.join("emit.json")).unwrap();
    let verify = r#"{"dir": "int8", "tensorrt": {"major": 10, "minor": 3, "patch": 0}, "checks": [], "engine_layers": 40,
        "ok": 23, "mismatches": 0, "not_found": 0, "unknown": 0}"#;
    std::fs::write(eng.join("verify.json"), verify).unwrap();
    let (code, _, err) = pillarq_bin(&["report", s(t.path())]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(t.path().join("report.html")).unwrap();
    assert!(
        html.contains("built and verified with TensorRT 10.3.0: 23 layers at the planned precision"),
        "build status"
    );
    assert!(html.contains("bash int8/build-trt10.sh") && html.contains("bash int8/build-trt11.sh"));
    let r = json(&t.path().join("results.json"));
    assert_eq!(r["engines"][0]["build"]["ok"], 23);
    assert_eq!(r["layers"].as_array().unwrap().len(), 23);
    assert!(r["layers"].as_array().unwrap().iter().all(|l| l["precision"]["int8"] == "int8" && l["op"] != ""));

    // An index naming a path outside engines/ is refused, not followed.
    let good = std::fs::read(t.path().join("engines/index.json")).unwrap();
    std::fs::write(t.path().join("engines/index.json"), r#"[{"name": "../../etc"}]"#).unwrap();
    let (code, _, err) = pillarq_bin(&["report", s(t.path())]);
    assert_ne!(code, 0);
    assert!(err.contains("index.json") && err.contains("not a directory name"), "{err}");
    std::fs::write(t.path().join("engines/index.json"), good).unwrap();

    std::fs::write(t.path().join("candidates.json"), "{not json").unwrap();
    let (code, _, err) = pillarq_bin(&["report", s(t.path())]);
    assert_ne!(code, 0);
    assert!(err.contains("candidates.json"), "{err}");
}

#[test]
fn the_calibration_sweep_is_plotted_with_its_band() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let p = pipeline(t.path(), &out, 3);
    // Recipe `sparse` (no refinement passes) keeps the 8 calibrations quick.
    let mut text = std::fs::read_to_string(&p).unwrap().replace("  frames: 2\n", "  frames: 2\n  recipe: sparse\n");
    text.push_str("calib_sweep:\n  enabled: true\n  methods: [max, entropy]\n  max_n: 2\n  draws: 2\n");
    std::fs::write(&p, text).unwrap();
    let (code, _, err) = pillarq_bin(&["run", s(&p), "--until", "calib-sweep"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.lines().any(|l| l.starts_with("calib-sweep") && l.contains("ran in")), "{err}");
    let (code, _, err) = pillarq_bin(&["report", s(&out)]);
    assert_eq!(code, 0, "{err}");
    let sweep = json(&out.join("calib-sweep.json"));
    let r = json(&out.join("results.json"));
    let fig = r["figures"].as_array().unwrap().iter().find(|f| f["id"] == "calib_sweep").expect("sweep plot").clone();
    assert_eq!(fig["x_log"], true);
    let mut labels: Vec<&str> =
        sweep["cells"].as_array().unwrap().iter().map(|c| c["method"].as_str().unwrap()).collect();
    labels.dedup();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels[0].starts_with("max") && labels[1].starts_with("entropy"), "{labels:?}");
    for method in labels {
        let cells: Vec<&Value> = sweep["cells"].as_array().unwrap().iter().filter(|c| c["method"] == method).collect();
        assert_eq!(cells.len(), 2, "N = 1 and 2");
        let series = fig["series"].as_array().unwrap().iter().find(|x| x["name"] == method).unwrap();
        let want: Vec<(f64, f64)> =
            cells.iter().map(|c| (c["n"].as_f64().unwrap(), c["mean"].as_f64().unwrap())).collect();
        assert_eq!(points(&fig, method), want);
        let band: Vec<Vec<f64>> = cells
            .iter()
            .map(|c| vec![c["n"].as_f64().unwrap(), c["min"].as_f64().unwrap(), c["max"].as_f64().unwrap()])
            .collect();
        assert_eq!(serde_json::from_value::<Vec<Vec<f64>>>(series["band"].clone()).unwrap(), band);
    }
    let svg = std::fs::read_to_string(out.join("plots/calib_sweep.svg")).unwrap();
    assert!(svg.contains("<polygon"), "min-max bands are drawn");
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("id=\"fig-calib_sweep\""));
}
