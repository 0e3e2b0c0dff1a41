//! What each fuzz target does with one input, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`) and the regression test that replays every saved crash and seed
//! (`tests/fuzz_regressions.rs`). Every reader under test must return `Ok` or `Err` for any bytes:
//! a panic, an abort, a hang or an allocation beyond the memory budget is a finding.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The largest tensor a fuzzed model may allocate: far below libFuzzer's malloc limit, so a
/// too-large shape must be caught by pillarq's budget check, not by the fuzzer.
pub const MAX_MEMORY: u64 = 256 << 20;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// (target name, function), in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[(&str, Target)] = &[
    ("onnx_model", onnx_model),
    ("npy", npy),
    ("kitti_label", kitti_label),
    ("kitti_calib", kitti_calib),
    ("velodyne", velodyne),
    ("plan_json", plan_json),
    ("calibration_json", calibration_json),
    ("trt_cache", trt_cache),
    ("trtexec_log", trtexec_log),
    ("trtexec_layers", trtexec_layers),
    ("model_config", model_config),
    ("png_header", png_header),
    ("onnx_metadata", onnx_metadata),
];

pub fn init() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| pillarq::memory::set_max_memory(MAX_MEMORY));
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A private scratch folder for targets that read files by path.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join("pillarq-fuzz-scratch");
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}

/// ONNX load (protobuf decode, graph import, shape inference, parameter checks), `inspect`'s text
/// and JSON reports, the configuration in its metadata with input discovery, the calibration
/// cache tensors, and the executor: preparation, constant folding and one run on zero inputs
/// (when every input has a static shape of at most 1 MiB).
pub fn onnx_model(data: &[u8]) {
    init();
    let path = Path::new("/nonexistent/fuzz.onnx");
    let Some(model) = no_bug(pillarq::model::Model::from_bytes(data, path)) else { return };
    let _ = pillarq::cli::inspect::render(&model);
    let _ = pillarq::cli::inspect::report(&model);
    let _ = pillarq::pointpillars::config::resolve(&model.graph, path, None, None);
    let _ = pillarq::quant::calib::cache_tensors(&model.graph, &model.layers);
    let Some(exec) = no_bug(pillarq::exec::cpu::CpuExecutor::new(&model.graph, 1)) else { return };
    if let Some(inputs) = zero_inputs(&model.graph) {
        no_bug(exec.run(&inputs));
    }
}

/// The value of `r`, or `None` for an error, which must not be a kernel panic the executor caught
/// ("internal error (a bug in pillarq)"): the fuzzer counts those as crashes too.
fn no_bug<T>(r: pillarq::Result<T>) -> Option<T> {
    match r {
        Ok(t) => Some(t),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains("a bug in pillarq"), "{msg}");
            None
        }
    }
}

/// Zeros for every graph input, when all have static shapes and fit in 1 MiB together.
fn zero_inputs(g: &pillarq::graph::Graph) -> Option<Vec<(String, pillarq::tensor::Tensor)>> {
    use pillarq::tensor::{DType, Data, Tensor};
    let mut total = 0usize;
    g.inputs
        .iter()
        .map(|v| {
            let shape = pillarq::graph::static_dims(v.shape.as_ref()?)?;
            let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
            total = total.checked_add(n.checked_mul(8)?)?;
            if total > 1 << 20 {
                return None;
            }
            let data = match v.dtype {
                DType::F32 | DType::F16 | DType::F64 => Data::F32(vec![0.0; n]),
                DType::I64 => Data::I64(vec![0; n]),
                DType::I32 => Data::I32(vec![0; n]),
                DType::Bool => Data::Bool(vec![false; n]),
                _ => return None,
            };
            Some((v.name.clone(), Tensor { shape, data }))
        })
        .collect()
}

pub fn npy(data: &[u8]) {
    init();
    if let Ok(t) = pillarq::npy::decode_npy(data, Path::new("fuzz.npy")) {
        // What decodes must encode back to a file that decodes to the same tensor.
        let again = pillarq::npy::decode_npy(&pillarq::npy::encode_npy(&t), Path::new("again.npy"))
            .expect("an encoded tensor decodes");
        assert_eq!(again.shape, t.shape);
    }
}

pub fn kitti_label(data: &[u8]) {
    if let Ok(objects) = pillarq::kitti::label::parse_labels(&text(data), Path::new("000000.txt")) {
        for o in &objects {
            let _ = pillarq::kitti::label::format_object(o);
        }
    }
}

pub fn kitti_calib(data: &[u8]) {
    if let Ok(c) = pillarq::kitti::calib::parse_calib(&text(data), Path::new("000000.txt")) {
        let _ = c.project_velo_to_image([10.0, 1.0, -1.0]);
        let _ = pillarq::kitti::calib::format_calib(&c);
    }
}

pub fn velodyne(data: &[u8]) {
    let _ = pillarq::kitti::velodyne::parse_points(data, Path::new("000000.bin"));
}

pub fn plan_json(data: &[u8]) {
    if let Ok(plan) = pillarq::quant::plan::PrecisionPlan::parse(&text(data)) {
        if let Some(c) = &plan.calibration {
            let _ = c.validate();
        }
        let _ = plan.resolve(&[]);
        let _ = plan.canonical(&[]);
    }
}

pub fn calibration_json(data: &[u8]) {
    use pillarq::quant::calibrate::CalibrationFile;
    if let Ok(f) = serde_json::from_str::<CalibrationFile>(&text(data)) {
        if f.validate().is_ok() {
            let _ = f.clone().with_pow2_scales();
            let _ = f.trt_cache(100300);
        }
    }
}

pub fn trt_cache(data: &[u8]) {
    if let Ok((header, entries)) = pillarq::quant::calib::parse_trt_cache(&text(data)) {
        // Only names without line breaks can be written back.
        if !entries.iter().any(|(n, _)| n.contains(['\n', '\r'])) {
            let again = pillarq::quant::calib::trt_cache_text(&header, &entries);
            assert!(pillarq::quant::calib::parse_trt_cache(&again).is_ok(), "written cache does not parse");
        }
    }
}

pub fn trtexec_log(data: &[u8]) {
    let t = text(data);
    let _ = pillarq::deploy::trtexec::parse_version(&t);
    let _ = pillarq::deploy::trtexec::parse_performance(&t);
}

pub fn trtexec_layers(data: &[u8]) {
    use pillarq::deploy::trtexec::{parse_layer_info, parse_profile, related_layers, verify_precisions, Prec};
    let t = text(data);
    if let Ok(layers) = parse_layer_info(&t) {
        let expected = [("/backbone/blocks.0/blocks.0.1/Conv".to_string(), Prec::Int8)];
        let _ = verify_precisions(&layers, &expected);
        let _ = related_layers(&layers, "/pfn/linear/MatMul", 5);
    }
    let _ = parse_profile(&t);
}

/// A configuration file (OpenPCDet YAML or pillarq keys as YAML/JSON) resolved against the bundled
/// small model: reading, `_BASE_CONFIG_` merging, translation, checks, input discovery.
pub fn model_config(data: &[u8]) {
    init();
    static MODEL: OnceLock<pillarq::model::Model> = OnceLock::new();
    // CARGO_MANIFEST_DIR is fuzz/ for the fuzzers, the repository for tests/fuzz_regressions.rs.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = if dir.ends_with("fuzz") { dir.join("..") } else { dir.to_path_buf() };
    let root = repo.join("onnx/pointpillars_small.onnx");
    let model = MODEL.get_or_init(|| pillarq::model::Model::load(&root).expect("bundled small model"));
    let ext = if data.first() == Some(&b'{') { "json" } else { "yaml" };
    let file = scratch().join(format!("config.{ext}"));
    std::fs::write(&file, data).expect("scratch write");
    let _ = pillarq::pointpillars::config::resolve(&model.graph, &root, Some(&file), None);
}

pub fn png_header(data: &[u8]) {
    let _ = pillarq::kitti::image::parse_png_size(data, Path::new("000000.png"));
}

/// The metadata scanner `annotate` and the network hash use: an entry set on any bytes that
/// decode is found again, and the original bytes stay a prefix.
pub fn onnx_metadata(data: &[u8]) {
    let origin = Path::new("fuzz.onnx");
    if let Ok(out) = pillarq::onnx::metadata::with_metadata_entry(data, "pointpillars", "{}", origin) {
        let again = pillarq::onnx::metadata::with_metadata_entry(&out, "pointpillars", "{}", origin)
            .expect("annotated bytes scan again");
        assert_eq!(again, out, "setting the same entry twice changed the bytes");
    }
}
