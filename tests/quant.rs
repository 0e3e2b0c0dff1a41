//! Mixed-precision simulation and the PTQ commands: restarting from FP32 values gives the bits of
//! a full run, plans are checked, and a sensitivity sweep killed with SIGKILL resumes to the same
//! numbers without redoing finished chunks.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use pillarq::exec::cpu::CpuExecutor;
use pillarq::model::Model;
use pillarq::pointpillars::{random_pillar_inputs, PointPillarsConfig};
use pillarq::quant::plan::{ActivationScale, Calibration, Precision, PrecisionPlan};
use pillarq::tensor::Tensor;

fn bits(o: &[(String, Tensor)]) -> Vec<Vec<u32>> {
    o.iter().map(|(_, t)| t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect()).collect()
}

fn calibration(m: &Model, amax: f32) -> Calibration {
    Calibration {
        method: "test".into(),
        frames: 0,
        seed: None,
        model_hash: String::new(),
        activations: m
            .layers
            .iter()
            .map(|l| (l.name.clone(), ActivationScale { tensor: l.input.clone(), amax }))
            .collect(),
        pow2_scales: false,
        outputs: Default::default(),
        recipe: String::new(),
        layers: Default::default(),
    }
}

#[test]
fn restarting_from_fp32_values_gives_the_bits_of_a_full_run() {
    let m = Model::load(&bundled("pointpillars_small.onnx")).unwrap();
    let cfg = PointPillarsConfig::from_graph(&m.graph).unwrap();
    let inputs = random_pillar_inputs(&m.graph, cfg.as_ref(), 5, 0.6).unwrap();
    let e = CpuExecutor::new(&m.graph, 2).unwrap();
    let fp32 = e.run(&inputs).unwrap();
    let base = e.run_keep(&inputs).unwrap();
    let cal = calibration(&m, 8.0);
    let names: Vec<&str> = m.layers.iter().map(|l| l.name.as_str()).collect();
    let plans = [
        PrecisionPlan::uniform(Precision::Fp32),
        PrecisionPlan::only_int8([names[5]]).with_calibration(&cal),
        PrecisionPlan::only_int8([names[22]]).with_calibration(&cal),
        PrecisionPlan::int8_except([names[0], names[20]], Precision::Fp16).with_calibration(&cal),
        PrecisionPlan::uniform(Precision::Fp16),
        PrecisionPlan::uniform(Precision::Int8).with_calibration(&cal),
    ];
    let mut seen = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let cp = e.compile_plan(&p.resolve(&m.layers).unwrap()).unwrap();
        // A full run quantizes INT8 readers' inputs in the epilogue of the Conv or ConvTranspose
        // producing them (also through the neck's Concat); a restart does not (its base holds
        // unquantized values). Same bits either way. Full INT8: all 16 backbone convs and the
        // 3 deconvolutions (whose concat the three heads read).
        if i == 5 {
            assert_eq!(cp.epilogue_quantizations(), 19, "plan {i}");
        } else if i == 3 {
            assert!(cp.epilogue_quantizations() >= 10, "plan {i}: {}", cp.epilogue_quantizations());
        }
        let full = e.run_plan(&inputs, &cp).unwrap();
        let from = e.run_from(&base, &cp, false).unwrap();
        let steps = from.steps_run;
        let restarted = e.outputs(from).unwrap();
        assert!(bits(&full) == bits(&restarted), "plan {i}: restart differs from a full run");
        if i == 0 {
            assert!(bits(&full) == bits(&fp32), "the FP32 plan must equal a plain run");
            assert_eq!(steps, 0, "an FP32 plan recomputes nothing");
        } else {
            assert!(bits(&full) != bits(&fp32), "plan {i} must change the outputs");
            assert!(steps > 0 && steps <= base.steps_run, "{steps}");
        }
        if i == 2 {
            assert_eq!(steps, 2, "a head layer in INT8 recomputes itself and its output transpose only");
        }
        seen.push(bits(&full));
    }
    assert!(seen[1] != seen[2] && seen[3] != seen[4]);
}

#[test]
fn malformed_plans_name_the_offending_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let model = bundled("pointpillars_small.onnx");
    let model = model.to_str().unwrap();
    let out = tmp.path().join("o");
    let cases = [
        (r#"{"default": "fp32", "layers": {"/pfn/linear/MatMulX": "fp16"}}"#, "/pfn/linear/MatMulX"),
        (r#"{"default": "fp32", "layers": {"/pfn/linear/MatMul": "int4"}}"#, "int4"),
        (r#"{"default": "int8"}"#, "no calibration"),
        (
            r#"{"default": "fp32", "layers": {"/head/conv_cls/Conv": "int8"},
                "calibration": {"method": "max", "frames": 1, "activations": {}}}"#,
            "no scale for int8 layer '/head/conv_cls/Conv'",
        ),
        (r#"{"default": "fp32", "layerz": {}}"#, "unknown field"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let plan = tmp.path().join(format!("plan{i}.json"));
        std::fs::write(&plan, text).unwrap();
        let (code, _, err) = pillarq_bin(&[
            "infer",
            model,
            "--random",
            "0",
            "--out",
            out.to_str().unwrap(),
            "--plan",
            plan.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "case {i}: {err}");
        assert!(err.contains(needle) && err.contains(&format!("plan{i}.json")), "case {i}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

fn synth(dir: &Path, train: usize, val: usize) {
    let d = dir.to_str().unwrap();
    let (code, _, err) =
        pillarq_bin(&["synth", "--out", d, "--train", &train.to_string(), "--val", &val.to_string(), "--seed", "5"]);
    assert_eq!(code, 0, "{err}");
}

fn chunk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    files_named(dir, "chunk-")
}

/// Files under `dir` (recursively) whose names start with `prefix`, sorted.
fn files_named(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().starts_with(prefix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The report without the timing fields (cost), which differ between runs.
fn numbers(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("cost");
    v
}

/// `pillarq sensitivity` on `data` (max calibration of 2 frames), results cached in `cache`.
fn sensitivity_args(model: &Path, data: &Path, cache: &Path, out: &Path, chunk: usize, threads: usize) -> Vec<String> {
    let (chunk, threads) = (chunk.to_string(), threads.to_string());
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let mut a: Vec<String> = ["sensitivity", "--model"].map(String::from).to_vec();
    a.extend([p(model), "--data".into(), p(data)]);
    a.extend(
        [
            "--calib-frames",
            "2",
            "--method",
            "max",
            "--recipe",
            "none",
            "--chunk",
            &chunk,
            "--threads",
            &threads,
            "--quiet",
        ]
        .map(String::from),
    );
    a.extend(["--cache".into(), p(cache), "--out".into(), p(out)]);
    a
}

#[test]
fn sensitivity_resumes_after_sigkill_and_shards_merge_to_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 6);
    let model = bundled("pointpillars_small.onnx");
    let base_args = |cache: &Path, out: &Path| sensitivity_args(&model, &data, cache, out, 2, 2);
    // Uninterrupted reference.
    let (ref_cache, ref_out) = (tmp.path().join("cache-ref"), tmp.path().join("ref.json"));
    let a = base_args(&ref_cache, &ref_out);
    let (code, _, err) = pillarq_bin(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    let reference = numbers(&ref_out);
    assert_eq!(reference["layers"].as_array().unwrap().len(), 23);
    assert!(reference["fp32_map"].as_f64().unwrap() >= 0.0);
    let total = chunk_files(&ref_cache).len();
    assert_eq!(total, 25 * 3, "25 plans x 3 chunks");

    // Killed once the first chunk files appear, then resumed.
    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("resumed.json"));
    let a = base_args(&cache, &out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pillarq")).args(&a).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while chunk_files(&cache).is_empty() && t0.elapsed().as_secs() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done = chunk_files(&cache).len();
    assert!(done > 0 && done < total, "{done} of {total} chunk files before the kill");
    assert!(!out.exists());
    let before: Vec<_> =
        chunk_files(&cache).iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    let (code, _, err) = pillarq_bin(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    assert_eq!(numbers(&out), reference, "resumed run differs from the uninterrupted one");
    // Finished chunks were not redone.
    let files = chunk_files(&cache);
    let kept = files.iter().take(before.len()).count();
    assert_eq!(files.len(), total);
    assert!(kept == before.len());
    let after_first: Vec<_> =
        chunk_files(&cache).iter().map(|p| std::fs::metadata(p).unwrap().modified().unwrap()).collect();
    let unchanged = before.iter().filter(|t| after_first.contains(t)).count();
    assert_eq!(unchanged, before.len(), "finished chunks were rewritten");

    // Two shards into separate caches, merged: same numbers.
    let mut shard_caches = Vec::new();
    for i in 0..2 {
        let c = tmp.path().join(format!("cache-{i}"));
        let mut a = base_args(&c, &tmp.path().join(format!("shard{i}.json")));
        a.extend(["--shard".to_string(), format!("{i}/2")]);
        let (code, _, err) = pillarq_bin(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("pillarq merge"), "{err}");
        shard_caches.push(c);
    }
    let merged = tmp.path().join("cache-merged");
    let mut m = vec!["merge", "--into", merged.to_str().unwrap()];
    m.extend(shard_caches.iter().map(|c| c.to_str().unwrap()));
    let (code, _, err) = pillarq_bin(&m);
    assert_eq!(code, 0, "{err}");
    let out = tmp.path().join("merged.json");
    let a = base_args(&merged, &out);
    let (code, _, err) = pillarq_bin(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    assert_eq!(numbers(&out), reference, "merged shards differ from one run");
}

fn is_pow2(s: f32) -> bool {
    s > 0.0 && s.is_finite() && s.to_bits() & 0x007f_ffff == 0
}

#[test]
fn calibrate_pow2_scales_writes_power_of_two_scales_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 0);
    let model = bundled("pointpillars_small.onnx");
    let out = tmp.path().join("calib");
    calibrate_2_frames(&model, &data, &out, "max,mse", &["--pow2-scales"]);
    let file = out.join("pointpillars_small-max-pow2-2.json");
    let f = pillarq::quant::calibrate::CalibrationFile::read(&file).unwrap();
    assert!(f.calibration.pow2_scales);
    assert!(!f.calibration.activations.is_empty());
    for (name, a) in &f.calibration.activations {
        assert!(is_pow2(a.scale()), "{name}: activation scale {} (amax {})", a.scale(), a.amax);
    }
    for (name, w) in &f.weights {
        for a in &w.amax {
            assert!(is_pow2(a / 127.0), "{name}: weight amax {a}");
        }
    }
    let cache = std::fs::read_to_string(file.with_extension("cache")).unwrap();
    let (_, entries) = pillarq::quant::calib::parse_trt_cache(&cache).unwrap();
    assert!(entries.len() >= f.calibration.activations.len());
    for (t, s) in entries {
        assert!(is_pow2(s), "cache {t}: {s}");
    }
    // A plan with this calibration reads it back with the flag, and keys its results apart.
    let plan = PrecisionPlan::uniform(Precision::Int8).with_calibration(&f.calibration);
    let back = PrecisionPlan::parse(&serde_json::to_string(&plan).unwrap()).unwrap();
    assert_eq!(back, plan);
    let m = Model::load(&model).unwrap();
    let mut plain = plan.clone();
    plain.calibration.as_mut().unwrap().pow2_scales = false;
    assert_ne!(plan.canonical(&m.layers), plain.canonical(&m.layers));
    assert!(out.join("pointpillars_small-mse-pow2-2.json").is_file());
}

/// A run killed inside its first chunk keeps the frames it finished (checkpoints every ~2 s) and
/// the resumed run gives the numbers of an uninterrupted one.
#[test]
fn a_kill_inside_the_first_chunk_keeps_its_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 8);
    let model = bundled("pointpillars_small.onnx");
    let args = |cache: &Path, out: &Path| sensitivity_args(&model, &data, cache, out, 8, 1);
    let (ref_cache, ref_out) = (tmp.path().join("cache-ref"), tmp.path().join("ref.json"));
    let a = args(&ref_cache, &ref_out);
    let (code, _, err) = pillarq_bin(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    let partials = |dir: &Path| files_named(dir, "partial-");
    assert!(partials(&ref_cache).is_empty(), "a finished run leaves no partial chunks");

    let (cache, out) = (tmp.path().join("cache"), tmp.path().join("resumed.json"));
    let a = args(&cache, &out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pillarq")).args(&a).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while partials(&cache).is_empty() && t0.elapsed().as_secs() < 300 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, before any chunk is complete
    child.wait().unwrap();
    assert!(chunk_files(&cache).is_empty(), "the kill came after the whole chunk");
    let kept: usize = partials(&cache)
        .iter()
        .filter_map(|p| serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).ok()?).ok())
        .map(|v| v["frames"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap_or(0);
    assert!(kept > 0, "no frame was kept");
    let (code, _, err) = pillarq_bin(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{err}");
    assert_eq!(numbers(&out), numbers(&ref_out), "resumed run differs from the uninterrupted one");
    assert!(partials(&cache).is_empty());
}

/// `--recipe sparse` (issue 14, step 1): each layer input's histogram leaves out what an empty
/// scene gives it (the empty pillars on the canvas, bias and padding alone further down). Zeros
/// never set a maximum, and entropy ignores the zero bin, but percentile thresholds rise on the
/// canvas and the entropy thresholds of the maps after it stop collapsing. The recipe is in the
/// file names and the provenance; a --calib file of another recipe is refused.
#[test]
fn sparse_recipes_leave_the_empty_scene_out() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 1);
    let model = bundled("pointpillars_small.onnx");
    let out = tmp.path().join("calib");
    let read = |recipe: &str| {
        calibrate_2_frames(&model, &data, &out, "entropy,max,percentile", &["--recipe", recipe]);
        let tag = if recipe == "none" { String::new() } else { format!("-{recipe}") };
        let f = |m: &str| {
            let file = out.join(format!("pointpillars_small-{m}{tag}-2.json"));
            pillarq::quant::calibrate::CalibrationFile::read(&file).unwrap().calibration
        };
        [f("entropy"), f("max"), f("percentile99.99")]
    };
    let [entropy, max, percentile] = read("none");
    let [s_entropy, s_max, s_percentile] = read("sparse");
    let [z_entropy, ..] = read("sparse-zeros");
    assert_eq!((entropy.recipe.as_str(), s_entropy.recipe.as_str()), ("", "sparse"));
    assert_eq!(z_entropy.recipe, "sparse-zeros");
    let amax = |c: &Calibration, l: &str| c.activations[l].amax;
    let (canvas, after) = ("/backbone/blocks.0/blocks.0.1/Conv", "/backbone/blocks.0/blocks.0.4/Conv");
    for l in max.activations.keys() {
        assert_eq!(amax(&max, l), amax(&s_max, l), "{l}: the empty scene moved a maximum");
    }
    assert!(amax(&s_percentile, canvas) > 1.2 * amax(&percentile, canvas));
    assert!(amax(&s_entropy, after) > 5.0 * amax(&entropy, after), "{}", amax(&s_entropy, after));
    // A file made without the recipe is not used as if it had it.
    let file = out.join("pointpillars_small-entropy-2.json");
    let (code, _, err) = pillarq_bin(&[
        "sensitivity",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--calib",
        file.to_str().unwrap(),
        "--recipe",
        "sparse",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--recipe sparse applies when calibrating now") && err.contains("recipe none"), "{err}");
}

/// `--recipe all` (issue 14, steps 2 to 5): the pillar net's input is equalized per feature,
/// thresholds are chosen by the head error they cause, weights are rounded by GPTQ, biases are
/// corrected. The choices are in
/// the calibration (and the file's `refinement` report), and a full-INT8 plan of it stays closer
/// to FP32 on the calibration frames than the statistics-only (`sparse`) calibration's.
#[test]
fn refinement_steps_bring_full_int8_closer_to_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 1);
    let model = bundled("pointpillars_small.onnx");
    let out = tmp.path().join("calib");
    calibrate_2_frames(&model, &data, &out, "entropy", &["--recipe", "sparse"]);
    calibrate_2_frames(&model, &data, &out, "entropy", &["--recipe", "all"]);
    let read = |name: &str| pillarq::quant::calibrate::CalibrationFile::read(&out.join(name)).unwrap();
    let sparse = read("pointpillars_small-entropy-sparse-2.json");
    let all = read("pointpillars_small-entropy-sparse+equalize+thresholds+rounding+bias-2.json");
    assert_eq!(all.calibration.recipe, "sparse,equalize,thresholds,rounding,bias");
    let m = Model::load(&model).unwrap();
    let exec = CpuExecutor::new(&m.graph, 2).unwrap();
    let pfn = &m.layers[0].name;
    let eq = &all.calibration.layers[pfn].input_mul;
    assert_eq!(eq.len(), 10, "{eq:?}");
    assert!(eq.iter().all(|&v| v >= 1.0) && eq.iter().any(|&v| v > 10.0), "{eq:?}");
    let report = all.refinement.as_ref().unwrap();
    let pfn_choice = &report.layers[pfn];
    assert!(pfn_choice.loss_after.unwrap() < 0.5 * pfn_choice.loss_before.unwrap(), "{pfn_choice:?}");
    for l in &m.layers {
        let c = &report.layers[&l.name];
        assert!(c.loss_after.unwrap() <= c.loss_before.unwrap(), "{}: {c:?}", l.name);
        let bias = &all.calibration.layers[&l.name].bias;
        let model_bias = exec.layer_bias(&l.name).unwrap();
        assert_eq!(bias.len(), model_bias.shape[0], "{}", l.name);
        assert_ne!(bias.as_slice(), model_bias.as_f32().unwrap(), "{}: bias not corrected", l.name);
    }
    for step in ["equalize+thresholds", "rounding", "bias"] {
        assert!(report.seconds.contains_key(step), "{step}: {:?}", report.seconds);
    }
    // GPTQ rounding: held-out output error below round-to-nearest's for most layers, and those
    // layers carry their levels (as many as the weight has elements).
    let rounded: Vec<&String> =
        report.layers.iter().filter(|(_, c)| c.rounding_error_ratio.unwrap() < 1.0).map(|(l, _)| l).collect();
    assert!(rounded.len() > m.layers.len() / 2, "{rounded:?}");
    for l in &rounded {
        let levels = all.calibration.layers[*l].weight_levels().unwrap().unwrap();
        assert_eq!(levels.len(), exec.layer_weight(l).unwrap().1.len(), "{l}");
    }

    // Full INT8 on the calibration frames: the task loss (head scores and boxes where FP32 or the
    // plan detects) against FP32.
    let det = pillarq::pointpillars::detect::Detector::new(&m, 2).unwrap();
    let kitti = pillarq::kitti::KittiDir::open(&data).unwrap();
    let distance = |cal: &Calibration| {
        let plan = PrecisionPlan::uniform(Precision::Int8).with_calibration(cal);
        let compiled = exec.compile_plan(&plan.resolve(&m.layers).unwrap()).unwrap();
        let mut d = 0.0;
        for id in &all.frame_ids {
            let (inputs, _) = det.frame_inputs(&kitti, id).unwrap();
            let (f, q) = (exec.run(&inputs).unwrap(), exec.run_plan(&inputs, &compiled).unwrap());
            d += det.head_reference(&f).unwrap().loss(&det, &q).unwrap();
        }
        d
    };
    let (d_sparse, d_all) = (distance(&sparse.calibration), distance(&all.calibration));
    println!("full INT8 vs FP32, task loss: sparse {d_sparse:.4}, all {d_all:.4}");
    assert!(d_all < 0.7 * d_sparse, "sparse {d_sparse} vs all {d_all}");

    // An unknown step is refused by name, with the list.
    let (code, _, err) =
        pillarq_bin(&["calibrate", "--model", model.to_str().unwrap(), "--data", "x", "--recipe", "sparse,round"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown recipe step 'round'") && err.contains("rounding, bias"), "{err}");
}

/// When full INT8 is already within the tolerance, the search's best candidate is full INT8 (no
/// layer in floating point; it used to report "no candidate"), and `emit` marks the int8 engine
/// as the best.
#[test]
fn full_int8_within_tolerance_is_the_best_candidate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth(&data, 2, 2);
    let model = bundled("pointpillars_small.onnx");
    let out = tmp.path().join("calib");
    calibrate_2_frames(&model, &data, &out, "max", &[]);
    let calib = out.join("pointpillars_small-max-2.json");
    let cands = tmp.path().join("candidates.json");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (code, stdout, err) = pillarq_bin(&[
        "search",
        "--model",
        &s(&model),
        "--data",
        &s(&data),
        "--calib",
        &s(&calib),
        "--top-k",
        "2",
        "--tolerance",
        "100",
        "--cache",
        &s(&tmp.path().join("cache")),
        "--out",
        &s(&cands),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("best within 100.0 mAP of FP32: full INT8"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cands).unwrap()).unwrap();
    assert_eq!(v["best"]["fp_layers"], serde_json::json!([]), "{}", v["best"]);
    assert_eq!(v["best"]["map"], v["int8_map"]);
    let engines = tmp.path().join("engines");
    let (code, _, err) =
        pillarq_bin(&["emit", "--model", &s(&model), "--candidates", &s(&cands), "--out", &s(&engines), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(engines.join("index.json")).unwrap()).unwrap();
    let best: Vec<&str> =
        index.as_array().unwrap().iter().filter(|e| e["best"] == true).map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(best, ["int8"]);
}
