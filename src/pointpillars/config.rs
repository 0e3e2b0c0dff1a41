//! Where a model's pre/post-processing configuration comes from, in increasing precedence:
//!
//! 1. the model's metadata (`pointpillars` key, pillarq's own models and `pillarq annotate`);
//! 2. a config file (`--config`): an OpenPCDet / CUDA-PointPillars model YAML (see
//!    [`super::openpcdet`]) or pillarq's own schema (the metadata's keys) as YAML or JSON;
//! 3. explicit command-line flags.
//!
//! Each layer holds only the keys it gives; a key of a higher layer replaces the same key below.
//! The merged keys become a [`PointPillarsConfig`]; a key that fails is reported with the file and
//! the key path it came from. The model itself then has the last word on what its shapes fix
//! (see [`super::interface`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::interface::{discover, reconcile, ModelIo};
use super::openpcdet;
use super::voxelize::PointFeature;
use super::{PointPillarsConfig, METADATA_KEY};
use crate::error::{Error, Result};
use crate::graph::Graph;

/// One source of configuration keys.
#[derive(Debug, Clone)]
pub struct ConfigLayer {
    /// The file the keys came from (the model for metadata); empty for command-line flags.
    pub origin: PathBuf,
    /// What kind of source it is, for messages: "metadata", "config", "flags".
    pub kind: &'static str,
    /// pillarq configuration keys.
    pub values: Map<String, Value>,
    /// pillarq key -> the key path in the origin (OpenPCDet's names for an OpenPCDet file).
    pub keys: BTreeMap<String, String>,
    /// Things worth saying when a key is missing (base files not found).
    pub notes: Vec<String>,
}

impl ConfigLayer {
    /// The `pointpillars` metadata of a model, if it has one.
    pub fn from_metadata(graph: &Graph, model_path: &Path) -> Result<Option<ConfigLayer>> {
        let Some(text) = graph.metadata.get(METADATA_KEY) else { return Ok(None) };
        let values = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(Error::config(model_path, format!("metadata '{METADATA_KEY}'"), "is not a JSON object"))
            }
            Err(e) => {
                return Err(Error::config(
                    model_path,
                    format!("metadata '{METADATA_KEY}'"),
                    format!("not valid JSON: {e}"),
                ))
            }
        };
        let keys = values.keys().map(|k| (k.clone(), format!("metadata '{METADATA_KEY}'.{k}"))).collect();
        Ok(Some(ConfigLayer { origin: model_path.to_path_buf(), kind: "metadata", values, keys, notes: vec![] }))
    }

    /// A config file: OpenPCDet model YAML, or pillarq's schema as YAML or JSON (at the top, or
    /// under a `pointpillars` key).
    pub fn read_file(path: &Path) -> Result<ConfigLayer> {
        let Value::Object(top) = openpcdet::read_yaml(path)? else {
            return Err(Error::config(path, "(file)", "expected a mapping of keys at the top"));
        };
        if openpcdet::is_openpcdet(&top) {
            let t = openpcdet::translate(path, &top)?;
            return Ok(ConfigLayer {
                origin: path.to_path_buf(),
                kind: "config",
                values: t.values,
                keys: t.keys,
                notes: t.missing_bases,
            });
        }
        let values = match top.get(METADATA_KEY) {
            Some(Value::Object(inner)) => inner.clone(),
            Some(_) => return Err(Error::config(path, METADATA_KEY, "expected a mapping of configuration keys")),
            None => top,
        };
        let unknown: Vec<&String> = values.keys().filter(|k| !KNOWN_KEYS.contains(&k.as_str())).collect();
        if !unknown.is_empty() {
            return Err(Error::config(
                path,
                unknown[0].as_str(),
                format!(
                    "unknown key{} {unknown:?}: neither OpenPCDet's format (CLASS_NAMES, DATA_CONFIG, MODEL) nor \
                     pillarq's keys ({})",
                    if unknown.len() > 1 { "s" } else { "" },
                    KNOWN_KEYS.join(", ")
                ),
            ));
        }
        let keys = values.keys().map(|k| (k.clone(), k.clone())).collect();
        Ok(ConfigLayer { origin: path.to_path_buf(), kind: "config", values, keys, notes: vec![] })
    }

    /// Keys given on the command line (`key` -> the flag that set it).
    pub fn flags(values: Vec<(&str, &str, Value)>) -> ConfigLayer {
        let mut layer = ConfigLayer {
            origin: PathBuf::new(),
            kind: "flags",
            values: Map::new(),
            keys: BTreeMap::new(),
            notes: vec![],
        };
        for (key, flag, v) in values {
            layer.values.insert(key.to_string(), v);
            layer.keys.insert(key.to_string(), flag.to_string());
        }
        layer
    }

    fn error(&self, field: &str, msg: impl Into<String>) -> Error {
        let key = self.keys.get(field).cloned().unwrap_or_else(|| field.to_string());
        if self.kind == "flags" {
            return Error::Other(format!("{key}: {}", msg.into()));
        }
        Error::config(&self.origin, key, msg)
    }
}

/// pillarq's configuration keys (the metadata schema; informational keys included).
pub const KNOWN_KEYS: &[&str] = &[
    "config",
    "point_cloud_range",
    "voxel_size",
    "grid_size",
    "max_points_per_pillar",
    "max_pillars",
    "num_point_features",
    "point_features",
    "class_names",
    "anchors",
    "anchor_order",
    "box_coder",
    "dir_offset",
    "dir_limit_offset",
    "num_dir_bins",
    "score_threshold",
    "nms_iou",
    "nms_pre_max",
    "nms_post_max",
    "feature_map_stride",
    "fov_points_only",
    "layout",
    "seed",
];

/// The layers of a model: its metadata (if any), then `config`, then `flags`.
pub fn layers_for(
    graph: &Graph,
    model_path: &Path,
    config: Option<&Path>,
    flags: Option<ConfigLayer>,
) -> Result<Vec<ConfigLayer>> {
    let mut layers = Vec::new();
    layers.extend(ConfigLayer::from_metadata(graph, model_path)?);
    if let Some(c) = config {
        layers.push(ConfigLayer::read_file(c)?);
    }
    layers.extend(flags.filter(|f| !f.values.is_empty()));
    Ok(layers)
}

/// The message for a model with no configuration at all.
pub fn no_config_message(model_path: &Path) -> String {
    format!(
        "{}: no PointPillars configuration: the model has no '{METADATA_KEY}' metadata, so its pre/post-processing \
         (range, voxel size, anchors, NMS) is unknown. Give the model's config with --config FILE (an OpenPCDet / \
         CUDA-PointPillars model YAML, or pillarq's own keys as YAML/JSON), or write it into the model once: \
         pillarq annotate {} --config FILE --out MODEL2.onnx",
        model_path.display(),
        model_path.display()
    )
}

/// Merges the layers (later wins, key by key) into a checked configuration.
pub fn merge_layers(layers: &[ConfigLayer], model_path: &Path) -> Result<PointPillarsConfig> {
    if layers.iter().all(|l| l.kind == "flags") {
        return Err(Error::Other(no_config_message(model_path)));
    }
    let mut merged = Map::new();
    for l in layers {
        for (k, v) in &l.values {
            merged.insert(k.clone(), v.clone());
        }
    }
    let owner = |field: &str| layers.iter().rev().find(|l| l.values.contains_key(field));
    let cfg: PointPillarsConfig = serde_path_to_error::deserialize(Value::Object(merged)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if let Some(field) = inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            return missing_field(layers, field, model_path);
        }
        let field = path.split(['.', '[']).next().unwrap_or("").to_string();
        match owner(&field) {
            Some(l) => l.error(&field, format!("{inner} (at {path})")),
            None => Error::Other(format!("PointPillars configuration: {path}: {inner}")),
        }
    })?;
    let mut cfg = cfg;
    if cfg.grid_size == [0, 0, 0] {
        let r = cfg.point_cloud_range;
        let g: Vec<f32> = (0..3).map(|d| ((r[d + 3] - r[d]) / cfg.voxel_size[d]).round()).collect();
        if g.iter().all(|v| v.is_finite() && *v >= 1.0 && *v < 1e7) {
            cfg.grid_size = [g[0] as usize, g[1] as usize, g[2] as usize];
        }
    }
    validate(&cfg, &|field, msg| match owner(field) {
        Some(l) => l.error(field, msg),
        None => Error::Other(format!("PointPillars configuration: {field}: {msg}")),
    })?;
    Ok(cfg)
}

fn missing_field(layers: &[ConfigLayer], field: &str, model_path: &Path) -> Error {
    let files: Vec<String> =
        layers.iter().filter(|l| l.kind != "flags").map(|l| format!("{} ({})", l.origin.display(), l.kind)).collect();
    let key = openpcdet::openpcdet_key(field);
    let mut msg = format!(
        "the PointPillars configuration has no '{field}'{}: none of {} gives it",
        if key.is_empty() { String::new() } else { format!(" (OpenPCDet: {key})") },
        files.join(", ")
    );
    for l in layers {
        for n in &l.notes {
            msg.push_str(&format!("; {}: {n}", l.origin.display()));
        }
    }
    if !layers.iter().any(|l| l.kind == "metadata") {
        msg.push_str(&format!(" ({} has no '{METADATA_KEY}' metadata)", model_path.display()));
    }
    Error::Other(msg)
}

/// Checks what serde cannot: names, counts and supported values.
fn validate(cfg: &PointPillarsConfig, err: &dyn Fn(&str, String) -> Error) -> Result<()> {
    for f in &cfg.point_features {
        if PointFeature::parse(f).is_none() {
            return Err(err(
                "point_features",
                format!("unknown point feature '{f}'; known: {}", PointFeature::NAMES.join(", ")),
            ));
        }
    }
    if cfg.point_features.len() != cfg.num_point_features {
        return Err(err(
            "num_point_features",
            format!(
                "is {} but point_features names {} ({:?})",
                cfg.num_point_features,
                cfg.point_features.len(),
                cfg.point_features
            ),
        ));
    }
    if cfg.voxel_size.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(err("voxel_size", format!("{:?}: every size must be positive", cfg.voxel_size)));
    }
    let r = cfg.point_cloud_range;
    if (0..3).any(|d| !(r[d].is_finite() && r[d + 3].is_finite() && r[d] < r[d + 3])) {
        return Err(err(
            "point_cloud_range",
            format!("{r:?} must be [x0, y0, z0, x1, y1, z1] with x0 < x1, y0 < y1, z0 < z1"),
        ));
    }
    // Pillar indices are u32 (as in CUDA-PointPillars); the grid is untrusted metadata.
    let [nx, ny, nz] = cfg.grid_size;
    let cells = nx.checked_mul(ny).and_then(|c| c.checked_mul(nz));
    if cells.is_none_or(|c| c >= u32::MAX as usize - 2) {
        return Err(err(
            "grid_size",
            format!("{:?} has too many cells (at most {} are supported)", cfg.grid_size, u32::MAX - 3),
        ));
    }
    if cfg.num_dir_bins != 2 {
        return Err(err("num_dir_bins", format!("{}: pillarq decodes 2 direction bins", cfg.num_dir_bins)));
    }
    if cfg.class_names.is_empty() {
        return Err(err("class_names", "is empty".into()));
    }
    if cfg.anchors.is_empty() {
        return Err(err("anchors", "no anchors".into()));
    }
    for a in &cfg.anchors {
        if !cfg.class_names.contains(&a.class) {
            return Err(err(
                "anchors",
                format!("anchor class '{}' is not in class_names {:?}", a.class, cfg.class_names),
            ));
        }
        if a.rotations.is_empty() || a.size.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(err(
                "anchors",
                format!("anchor of '{}': sizes {:?} must be positive and rotations non-empty", a.class, a.size),
            ));
        }
    }
    if !(cfg.score_threshold.is_finite() && (0.0..=1.0).contains(&cfg.score_threshold)) {
        return Err(err("score_threshold", format!("{} is not in [0, 1]", cfg.score_threshold)));
    }
    if !(cfg.nms_iou.is_finite() && (0.0..=1.0).contains(&cfg.nms_iou)) {
        return Err(err("nms_iou", format!("{} is not in [0, 1]", cfg.nms_iou)));
    }
    Ok(())
}

/// A model's configuration reconciled with its inputs and outputs.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub cfg: PointPillarsConfig,
    pub io: ModelIo,
}

/// The configuration of a model (metadata < `config` < `flags`), checked and reconciled with the
/// model's inputs and outputs (see [`super::interface`]).
pub fn resolve(
    graph: &Graph,
    model_path: &Path,
    config: Option<&Path>,
    flags: Option<ConfigLayer>,
) -> Result<ResolvedModel> {
    let layers = layers_for(graph, model_path, config, flags)?;
    let mut cfg = merge_layers(&layers, model_path)?;
    let origin = |field: &str| match layers.iter().rev().find(|l| l.values.contains_key(field)) {
        Some(l) if l.kind == "flags" => l.keys.get(field).cloned().unwrap_or_default(),
        Some(l) => format!("{}: {}", l.origin.display(), l.keys.get(field).map(String::as_str).unwrap_or(field)),
        None => "defaults".into(),
    };
    let io = discover(graph, &cfg, &origin).map_err(|e| match e {
        Error::Other(msg) => Error::Model { file: model_path.to_path_buf(), msg },
        Error::Input { name, msg } => {
            Error::Model { file: model_path.to_path_buf(), msg: format!("input '{name}': {msg}") }
        }
        other => other,
    })?;
    let name = model_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    reconcile(&mut cfg, &io, &name);
    Ok(ResolvedModel { cfg, io })
}

/// The configuration as metadata JSON (what `pillarq annotate` writes).
pub fn to_metadata_json(cfg: &PointPillarsConfig) -> String {
    serde_json::to_string(cfg).expect("a configuration always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    /// OpenPCDet's KITTI pointpillar.yaml (the keys pillarq reads) and its dataset base config,
    /// laid out as in an OpenPCDet checkout: tools/cfgs/{kitti_models,dataset_configs}.
    fn openpcdet_tree(rotations: &str) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let cfgs = t.path().join("tools/cfgs");
        std::fs::create_dir_all(cfgs.join("kitti_models")).unwrap();
        std::fs::create_dir_all(cfgs.join("dataset_configs")).unwrap();
        std::fs::write(
            cfgs.join("dataset_configs/kitti_dataset.yaml"),
            "POINT_CLOUD_RANGE: [0, -40, -3, 70.4, 40, 1]\nFOV_POINTS_ONLY: True\n\
             POINT_FEATURE_ENCODING: {encoding_type: absolute_coordinates_encoding,\n  \
             used_feature_list: ['x', 'y', 'z', 'intensity'], src_feature_list: ['x', 'y', 'z', 'intensity']}\n",
        )
        .unwrap();
        let anchor = |c: &str, s: &str, z: f32| {
            format!(
                "{{'class_name': '{c}', 'anchor_sizes': [{s}], 'anchor_rotations': {rotations}, \
                 'anchor_bottom_heights': [{z}], 'align_center': False, 'feature_map_stride': 2}}"
            )
        };
        let model = format!(
            "CLASS_NAMES: ['Car', 'Pedestrian', 'Cyclist']\nDATA_CONFIG:\n  _BASE_CONFIG_: cfgs/dataset_configs/kitti_dataset.yaml\n  \
             POINT_CLOUD_RANGE: [0, -39.68, -3, 69.12, 39.68, 1]\n  DATA_PROCESSOR:\n    - NAME: transform_points_to_voxels\n      \
             VOXEL_SIZE: [0.16, 0.16, 4]\n      MAX_POINTS_PER_VOXEL: 32\n      MAX_NUMBER_OF_VOXELS: {{'train': 16000, 'test': 40000}}\n\
             MODEL:\n  VFE: {{NAME: PillarVFE, WITH_DISTANCE: False, USE_ABSLOTE_XYZ: True, USE_NORM: True}}\n  DENSE_HEAD:\n    \
             NAME: AnchorHeadSingle\n    DIR_OFFSET: 0.78539\n    DIR_LIMIT_OFFSET: 0.0\n    NUM_DIR_BINS: 2\n    \
             ANCHOR_GENERATOR_CONFIG: [{}, {}, {}]\n  POST_PROCESSING:\n    SCORE_THRESH: 0.1\n    NMS_CONFIG: {{MULTI_CLASSES_NMS: False, \
             NMS_TYPE: nms_gpu, NMS_THRESH: 0.01, NMS_PRE_MAXSIZE: 4096, NMS_POST_MAXSIZE: 500}}\n",
            anchor("Car", "[3.9, 1.6, 1.56]", -1.78),
            anchor("Pedestrian", "[0.8, 0.6, 1.73]", -0.6),
            anchor("Cyclist", "[1.76, 0.6, 1.73]", -0.6)
        );
        let path = cfgs.join("kitti_models/pointpillar.yaml");
        std::fs::write(&path, model).unwrap();
        (t, path)
    }

    #[test]
    fn openpcdet_kitti_yaml_equals_the_kitti_models_metadata() {
        let (_t, yaml) = openpcdet_tree("[0, 1.5707963]");
        let model = Model::load(&crate::cli::bundled_model("pointpillars_kitti.onnx")).unwrap();
        let from_meta = resolve(&model.graph, &model.file.path, None, None).unwrap();
        // The YAML alone (metadata dropped) describes the same pre/post-processing.
        let mut g = model.graph.clone();
        g.metadata.clear();
        let from_yaml = resolve(&g, &model.file.path, Some(&yaml), None).unwrap();
        let (mut a, b) = (from_yaml.cfg, from_meta.cfg);
        assert_eq!(a.config, "pointpillar.yaml");
        a.config = b.config.clone();
        a.layout = b.layout.clone();
        assert_eq!(a, b);
        assert_eq!(from_yaml.io, from_meta.io);
    }

    #[test]
    fn cuda_pointpillars_rotations_and_base_resolution() {
        // CUDA-PointPillars writes the rotations as [0, 1.57]; the base file is two folders up.
        let (_t, yaml) = openpcdet_tree("[0, 1.57]");
        let layer = ConfigLayer::read_file(&yaml).unwrap();
        assert!(layer.notes.is_empty(), "{:?}", layer.notes);
        assert_eq!(layer.values["fov_points_only"], true);
        assert_eq!(layer.values["grid_size"], serde_json::json!([432, 496, 1]));
        assert_eq!(layer.values["max_pillars"], 40000);
        assert_eq!(
            layer.keys["max_pillars"],
            "DATA_CONFIG.DATA_PROCESSOR[transform_points_to_voxels].MAX_NUMBER_OF_VOXELS.test"
        );
        assert_eq!(layer.values["anchors"][0]["rotations"], serde_json::json!([0.0, 1.57f32 as f64]));
        assert_eq!(
            layer.values["point_features"],
            serde_json::json!(["x", "y", "z", "intensity", "xc", "yc", "zc", "xp", "yp", "zp"])
        );
    }

    #[test]
    fn vfe_flags_and_several_anchor_sizes() {
        let (t, yaml) = openpcdet_tree("[0, 1.57]");
        let text = std::fs::read_to_string(&yaml)
            .unwrap()
            .replace("WITH_DISTANCE: False, USE_ABSLOTE_XYZ: True", "WITH_DISTANCE: True, USE_ABSLOTE_XYZ: False")
            .replace("'anchor_sizes': [[3.9, 1.6, 1.56]]", "'anchor_sizes': [[3.9, 1.6, 1.56], [4.7, 2.1, 1.7]]")
            .replace("'align_center': False", "'align_center': True");
        let p = t.path().join("tools/cfgs/kitti_models/variant.yaml");
        std::fs::write(&p, text).unwrap();
        let l = ConfigLayer::read_file(&p).unwrap();
        assert_eq!(
            l.values["point_features"],
            serde_json::json!(["intensity", "xc", "yc", "zc", "xp", "yp", "zp", "distance"])
        );
        assert_eq!(l.values["num_point_features"], 8);
        // Per location: class, then size, then rotation.
        let a = l.values["anchors"].as_array().unwrap();
        let sizes: Vec<(&str, f64)> =
            a.iter().map(|x| (x["class"].as_str().unwrap(), x["size"][0].as_f64().unwrap())).collect();
        assert_eq!(
            sizes,
            [
                ("Car", 3.9f32 as f64),
                ("Car", 4.7f32 as f64),
                ("Pedestrian", 0.8f32 as f64),
                ("Cyclist", 1.76f32 as f64)
            ]
        );
        assert!(a.iter().all(|x| x["align_center"] == true));
    }

    #[test]
    fn pillarq_schema_json_and_precedence() {
        let model = Model::load(&crate::cli::bundled_model("pointpillars_small.onnx")).unwrap();
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("over.json");
        std::fs::write(&p, r#"{"pointpillars": {"score_threshold": 0.3, "nms_iou": 0.2}}"#).unwrap();
        let flags = ConfigLayer::flags(vec![("nms_iou", "--nms-iou", serde_json::json!(0.5))]);
        let r = resolve(&model.graph, &model.file.path, Some(&p), Some(flags)).unwrap();
        // metadata < config < flags
        assert_eq!((r.cfg.score_threshold, r.cfg.nms_iou, r.cfg.max_pillars), (0.3, 0.5, 8000));
        std::fs::write(&p, r#"{"score_threshold": "high"}"#).unwrap();
        let e = resolve(&model.graph, &model.file.path, Some(&p), None).unwrap_err().to_string();
        assert!(e.contains("over.json") && e.contains("score_threshold") && e.contains("string"), "{e}");
        let flags = ConfigLayer::flags(vec![("score_threshold", "--score-threshold", serde_json::json!(7.0))]);
        let e = resolve(&model.graph, &model.file.path, None, Some(flags)).unwrap_err().to_string();
        assert!(e.contains("--score-threshold") && e.contains("[0, 1]"), "{e}");
    }
}
