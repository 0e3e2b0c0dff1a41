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
