//! OpenPCDet model YAML (`tools/cfgs/kitti_models/pointpillar.yaml`, and NVIDIA
//! CUDA-PointPillars' copy of it) translated into pillarq's configuration keys.
//!
//! - `_BASE_CONFIG_` (at the top or inside `DATA_CONFIG`) is merged as OpenPCDet's
//!   `merge_new_config` does: the base file first, then the including mapping's keys on top,
//!   mappings merged recursively, everything else (lists too) replaced. The path is tried relative
//!   to the including file's folder and then to each of its parent folders (OpenPCDet resolves it
//!   from `tools/`). A base file that cannot be found is only a problem when a key it would have
//!   given is needed: the translation then names the key and the file it looked for.
//! - Only what pre/post-processing needs is read; training keys are ignored. A setting pillarq does
//!   not implement (multi-class NMS, several bottom heights, a head other than AnchorHeadSingle,
//!   another box coder or VFE) is an error naming its key.
//! - The result holds only the keys the file gives, so it can sit on top of a model's metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

/// Where a value came from, for error messages: the dotted key path in the YAML.
type Keys = BTreeMap<String, String>;

/// True when a parsed config file looks like OpenPCDet's format (upper-case top-level sections).
pub fn is_openpcdet(top: &Map<String, Value>) -> bool {
    ["CLASS_NAMES", "DATA_CONFIG", "MODEL"].iter().any(|k| top.contains_key(*k))
}

/// Parses a YAML (or JSON) file into a JSON value; errors name the file.
pub fn read_yaml(path: &Path) -> Result<Value> {
    let text = crate::files::read_regular_text(path)?;
    let is_json = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let parsed: std::result::Result<Value, String> = if is_json {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    } else {
        // YAML 1.2 booleans only (true/True/TRUE, false/...): a feature named `y` stays a name.
        serde_saphyr::from_str_with_options(&text, serde_saphyr::options! { strict_booleans: true })
            .map_err(|e| e.to_string())
    };
    parsed
        .map_err(|e| Error::config(path, "(file)", format!("not valid {}: {e}", if is_json { "JSON" } else { "YAML" })))
}

/// The folders a `_BASE_CONFIG_` path is tried in: the including file's folder, then its parents.
fn base_candidates(including: &Path, rel: &str) -> Vec<PathBuf> {
    let rel = Path::new(rel);
    if rel.is_absolute() {
        return vec![rel.to_path_buf()];
    }
    let dir = including.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
    dir.ancestors().map(|d| d.join(rel)).collect()
}

/// The state of the `_BASE_CONFIG_` merges: the file each was looked for from, and the ones that
/// could not be found (reported when a needed key is missing).
#[derive(Default)]
struct Bases {
    missing: Vec<(String, PathBuf)>,
}

/// OpenPCDet's `merge_new_config`: `base` (from `_BASE_CONFIG_`) under `new`, mappings merged.
fn merge_into(config: &mut Map<String, Value>, new: &Map<String, Value>, file: &Path, bases: &mut Bases) -> Result<()> {
    if let Some(b) = new.get("_BASE_CONFIG_") {
        let rel = b.as_str().ok_or_else(|| Error::config(file, "_BASE_CONFIG_", "expected a file path"))?;
        match base_candidates(file, rel).into_iter().find(|p| p.is_file()) {
            Some(p) => {
                let base = read_yaml(&p)?;
                let Value::Object(base) = base else {
                    return Err(Error::config(&p, "(file)", "expected a mapping at the top"));
                };
                // The base file may itself include another.
                let mut resolved = Map::new();
                merge_into(&mut resolved, &base, &p, bases)?;
                for (k, v) in resolved {
                    config.insert(k, v);
                }
            }
            None => bases.missing.push((rel.to_string(), file.to_path_buf())),
        }
    }
    for (k, v) in new {
        match v {
            Value::Object(sub) => {
                let entry = config.entry(k.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                let Value::Object(dst) = entry else { unreachable!("made an object above") };
                merge_into(dst, sub, file, bases)?;
            }
            other => {
                config.insert(k.clone(), other.clone());
            }
        }
    }
    Ok(())
}

/// A typed view of the merged YAML that names keys in its errors.
struct Yaml<'a> {
    file: &'a Path,
    root: &'a Value,
    bases: &'a Bases,
}

impl Yaml<'_> {
    fn err(&self, key: &str, msg: impl Into<String>) -> Error {
        Error::config(self.file, key, msg)
    }

    fn at<'v>(&self, v: &'v Value, key: &str) -> Option<&'v Value> {
        let mut cur = v;
        for part in key.split('.') {
            cur = cur.as_object()?.get(part)?;
        }
        (!cur.is_null()).then_some(cur)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.at(self.root, key)
    }

    /// A missing key that the configuration needs: names the base files that were not found.
    fn missing(&self, key: &str) -> Error {
        let mut msg = "missing; pillarq needs it for the pre/post-processing".to_string();
        for (rel, from) in &self.bases.missing {
            msg.push_str(&format!(
                " (the _BASE_CONFIG_ '{rel}' it may come from was not found next to {} or in its parent folders)",
                from.display()
            ));
        }
        self.err(key, msg)
    }

    fn f64_of(&self, v: &Value, key: &str) -> Result<f64> {
        v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| self.err(key, format!("expected a number, found {v}")))
    }

    fn f32s_of(&self, v: &Value, key: &str, len: Option<usize>) -> Result<Vec<f32>> {
        let items = v.as_array().ok_or_else(|| self.err(key, format!("expected a list of numbers, found {v}")))?;
        if let Some(n) = len {
            if items.len() != n {
                return Err(self.err(key, format!("expected {n} numbers, found {}", items.len())));
            }
        }
        items.iter().map(|x| self.f64_of(x, key).map(|x| x as f32)).collect()
    }

    fn usize_of(&self, v: &Value, key: &str) -> Result<usize> {
        v.as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| self.err(key, format!("expected a non-negative integer, found {v}")))
    }

    fn bool_of(&self, v: &Value, key: &str) -> Result<bool> {
        v.as_bool().ok_or_else(|| self.err(key, format!("expected True or False, found {v}")))
    }

    fn str_of<'v>(&self, v: &'v Value, key: &str) -> Result<&'v str> {
        v.as_str().ok_or_else(|| self.err(key, format!("expected a string, found {v}")))
    }

    fn strings_of(&self, v: &Value, key: &str) -> Result<Vec<String>> {
        let items = v.as_array().ok_or_else(|| self.err(key, format!("expected a list of names, found {v}")))?;
        items.iter().map(|x| self.str_of(x, key).map(str::to_string)).collect()
    }
}

/// A translated OpenPCDet file: pillarq keys -> values, and pillarq key -> the YAML key it came from.
pub struct Translated {
    pub values: Map<String, Value>,
    pub keys: Keys,
    /// `_BASE_CONFIG_` files that were not found, said when a key they might give is missing.
    pub missing_bases: Vec<String>,
}

/// Reads an OpenPCDet model YAML (with its `_BASE_CONFIG_`s) into pillarq configuration keys.
pub fn translate(file: &Path, top: &Map<String, Value>) -> Result<Translated> {
    let mut bases = Bases::default();
    let mut merged = Map::new();
    merge_into(&mut merged, top, file, &mut bases)?;
    let root = Value::Object(merged);
    let y = Yaml { file, root: &root, bases: &bases };
    let missing_bases = bases
        .missing
        .iter()
        .map(|(rel, from)| {
            format!("_BASE_CONFIG_ '{rel}' was not found next to {} or in its parent folders", from.display())
        })
        .collect();
    let mut out = Translated { values: Map::new(), keys: Keys::new(), missing_bases };
    let mut put = |field: &str, key: &str, v: Value| {
        out.values.insert(field.to_string(), v);
        out.keys.insert(field.to_string(), key.to_string());
    };

    put("config", "(file)", json!(file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    if let Some(v) = y.get("CLASS_NAMES") {
        put("class_names", "CLASS_NAMES", json!(y.strings_of(v, "CLASS_NAMES")?));
    }

    // DATA_CONFIG: range, field of view, voxelization, point features.
    let range = match y.get("DATA_CONFIG.POINT_CLOUD_RANGE") {
        Some(v) => {
            let r = y.f32s_of(v, "DATA_CONFIG.POINT_CLOUD_RANGE", Some(6))?;
            put("point_cloud_range", "DATA_CONFIG.POINT_CLOUD_RANGE", json!(r));
            Some(r)
        }
        None => None,
    };
    if let Some(v) = y.get("DATA_CONFIG.FOV_POINTS_ONLY") {
        put("fov_points_only", "DATA_CONFIG.FOV_POINTS_ONLY", json!(y.bool_of(v, "DATA_CONFIG.FOV_POINTS_ONLY")?));
    }
    if let Some(procs) = y.get("DATA_CONFIG.DATA_PROCESSOR") {
        let key = "DATA_CONFIG.DATA_PROCESSOR";
        let list = procs.as_array().ok_or_else(|| y.err(key, "expected a list of processors"))?;
        let vox = list.iter().find(|p| p.get("NAME").and_then(Value::as_str) == Some("transform_points_to_voxels"));
        let Some(vox) = vox else {
            return Err(y.err(key, "has no 'NAME: transform_points_to_voxels' entry: the voxelization is unknown"));
        };
        let k = |name: &str| format!("{key}[transform_points_to_voxels].{name}");
        match y.at(vox, "VOXEL_SIZE") {
            Some(v) => {
                let vs = y.f32s_of(v, &k("VOXEL_SIZE"), Some(3))?;
                if let Some(r) = &range {
                    let grid: Vec<i64> = (0..3).map(|d| ((r[d + 3] - r[d]) / vs[d]).round() as i64).collect();
                    if grid.iter().any(|&g| g <= 0) {
                        return Err(y.err(
                            &k("VOXEL_SIZE"),
                            format!("with POINT_CLOUD_RANGE {r:?} gives grid {grid:?}: not positive"),
                        ));
                    }
                    put("grid_size", &k("VOXEL_SIZE"), json!(grid));
                }
                put("voxel_size", &k("VOXEL_SIZE"), json!(vs));
            }
            None => return Err(y.missing(&k("VOXEL_SIZE"))),
        }
        if let Some(v) = y.at(vox, "MAX_POINTS_PER_VOXEL") {
            put("max_points_per_pillar", &k("MAX_POINTS_PER_VOXEL"), json!(y.usize_of(v, &k("MAX_POINTS_PER_VOXEL"))?));
        }
        if let Some(v) = y.at(vox, "MAX_NUMBER_OF_VOXELS") {
            // A number, or OpenPCDet's {'train': N, 'test': M} map: inference uses 'test'.
            let (v, key) = match v.as_object() {
                Some(m) => (
                    m.get("test").ok_or_else(|| y.err(&k("MAX_NUMBER_OF_VOXELS"), "has no 'test' entry"))?,
                    k("MAX_NUMBER_OF_VOXELS.test"),
                ),
                None => (v, k("MAX_NUMBER_OF_VOXELS")),
            };
            put("max_pillars", &key, json!(y.usize_of(v, &key)?));
        }
    }
    let used = match y.get("DATA_CONFIG.POINT_FEATURE_ENCODING") {
        Some(enc) => Some(point_encoding(&y, enc)?),
        None => None,
    };

    // MODEL.VFE: which point features the pillar net takes.
    if let Some(vfe) = y.get("MODEL.VFE") {
        if let Some(name) = y.at(vfe, "NAME") {
            let name = y.str_of(name, "MODEL.VFE.NAME")?;
            if name != "PillarVFE" {
                return Err(y.err(
                    "MODEL.VFE.NAME",
                    format!("'{name}' is not supported; pillarq builds PillarVFE's point features"),
                ));
            }
        }
        let flag = |name: &str, default: bool| -> Result<bool> {
            match y.at(vfe, name) {
                Some(v) => y.bool_of(v, &format!("MODEL.VFE.{name}")),
                None => Ok(default),
            }
        };
        let (with_distance, absolute) = (flag("WITH_DISTANCE", false)?, flag("USE_ABSLOTE_XYZ", true)?);
        flag("USE_NORM", true)?; // a network setting (BatchNorm); no effect on pre-processing
        let used = used.unwrap_or_else(|| ["x", "y", "z", "intensity"].map(String::from).to_vec());
        let mut feats: Vec<String> = if absolute { used } else { used[3..].to_vec() };
        feats.extend(["xc", "yc", "zc", "xp", "yp", "zp"].map(String::from));
        if with_distance {
            feats.push("distance".into());
        }
        put("num_point_features", "MODEL.VFE", json!(feats.len()));
        put("point_features", "MODEL.VFE", json!(feats));
    }

    if let Some(head) = y.get("MODEL.DENSE_HEAD") {
        dense_head(&y, head, &mut put)?;
    }
    if let Some(post) = y.get("MODEL.POST_PROCESSING") {
        post_processing(&y, post, &mut put)?;
    }
    Ok(out)
}

/// `POINT_FEATURE_ENCODING`: the raw point features used, which must come from KITTI's x, y, z,
/// intensity and start with x, y, z (the pillar offsets are computed from them).
fn point_encoding(y: &Yaml, enc: &Value) -> Result<Vec<String>> {
    let key = "DATA_CONFIG.POINT_FEATURE_ENCODING";
    if let Some(t) = y.at(enc, "encoding_type") {
        let t = y.str_of(t, &format!("{key}.encoding_type"))?;
        if t != "absolute_coordinates_encoding" {
            return Err(y.err(
                &format!("{key}.encoding_type"),
                format!("'{t}' is not supported (absolute_coordinates_encoding is)"),
            ));
        }
    }
    let src = match y.at(enc, "src_feature_list") {
        Some(v) => y.strings_of(v, &format!("{key}.src_feature_list"))?,
        None => ["x", "y", "z", "intensity"].map(String::from).to_vec(),
    };
    if src.len() > 4 || src.iter().zip(["x", "y", "z", "intensity"]).any(|(a, b)| a != b) {
        return Err(y.err(
            &format!("{key}.src_feature_list"),
            format!("{src:?}: pillarq reads KITTI scans of x, y, z, intensity"),
        ));
    }
    let used = match y.at(enc, "used_feature_list") {
        Some(v) => y.strings_of(v, &format!("{key}.used_feature_list"))?,
        None => src.clone(),
    };
    if used.len() < 3 || used[..3] != ["x", "y", "z"] || used.iter().any(|f| !src.contains(f)) {
        return Err(y.err(
            &format!("{key}.used_feature_list"),
            format!("{used:?}: must be x, y, z [, intensity] out of src_feature_list {src:?}"),
        ));
    }
    Ok(used)
}

fn dense_head(y: &Yaml, head: &Value, put: &mut impl FnMut(&str, &str, Value)) -> Result<()> {
    let k = |name: &str| format!("MODEL.DENSE_HEAD.{name}");
    if let Some(v) = y.at(head, "NAME") {
        let name = y.str_of(v, &k("NAME"))?;
        if name != "AnchorHeadSingle" {
            return Err(
                y.err(&k("NAME"), format!("'{name}' is not supported; pillarq decodes AnchorHeadSingle outputs"))
            );
        }
    }
    if let Some(v) = y.at(head, "CLASS_AGNOSTIC") {
        if y.bool_of(v, &k("CLASS_AGNOSTIC"))? {
            return Err(y.err(&k("CLASS_AGNOSTIC"), "True is not supported (one score per class is)"));
        }
    }
    if let Some(v) = y.at(head, "USE_DIRECTION_CLASSIFIER") {
        if !y.bool_of(v, &k("USE_DIRECTION_CLASSIFIER"))? {
            return Err(y.err(&k("USE_DIRECTION_CLASSIFIER"), "False is not supported: pillarq decodes dir_cls_preds"));
        }
    }
    if let Some(v) = y.at(head, "TARGET_ASSIGNER_CONFIG.BOX_CODER") {
        let c = y.str_of(v, &k("TARGET_ASSIGNER_CONFIG.BOX_CODER"))?;
        if c != "ResidualCoder" {
            return Err(
                y.err(&k("TARGET_ASSIGNER_CONFIG.BOX_CODER"), format!("'{c}' is not supported (ResidualCoder is)"))
            );
        }
    }
    for (name, field) in [("DIR_OFFSET", "dir_offset"), ("DIR_LIMIT_OFFSET", "dir_limit_offset")] {
        if let Some(v) = y.at(head, name) {
            put(field, &k(name), json!(y.f64_of(v, &k(name))? as f32));
        }
    }
    if let Some(v) = y.at(head, "NUM_DIR_BINS") {
        put("num_dir_bins", &k("NUM_DIR_BINS"), json!(y.usize_of(v, &k("NUM_DIR_BINS"))?));
    }
    let Some(gens) = y.at(head, "ANCHOR_GENERATOR_CONFIG") else { return Ok(()) };
    let gkey = k("ANCHOR_GENERATOR_CONFIG");
    let list = gens.as_array().filter(|l| !l.is_empty()).ok_or_else(|| y.err(&gkey, "expected a non-empty list"))?;
    let mut anchors = Vec::new();
    let mut stride: Option<usize> = None;
    for (i, g) in list.iter().enumerate() {
        let gk = |name: &str| format!("{gkey}[{i}].{name}");
        let need = |name: &str| y.at(g, name).ok_or_else(|| y.err(&gk(name), "missing"));
        let class = y.str_of(need("class_name")?, &gk("class_name"))?;
        let sizes = need("anchor_sizes")?
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| y.err(&gk("anchor_sizes"), "expected a list of [dx, dy, dz]"))?;
        let rotations = y.f32s_of(need("anchor_rotations")?, &gk("anchor_rotations"), None)?;
        if rotations.is_empty() {
            return Err(y.err(&gk("anchor_rotations"), "is empty"));
        }
        let heights = y.f32s_of(need("anchor_bottom_heights")?, &gk("anchor_bottom_heights"), None)?;
        if heights.len() != 1 {
            return Err(y.err(
                &gk("anchor_bottom_heights"),
                format!("{} heights: pillarq supports exactly one bottom height per class", heights.len()),
            ));
        }
        let align = match y.at(g, "align_center") {
            Some(v) => y.bool_of(v, &gk("align_center"))?,
            None => false,
        };
        let s = y.usize_of(need("feature_map_stride")?, &gk("feature_map_stride"))?;
        match stride {
            Some(prev) if prev != s => {
                return Err(y.err(
                    &gk("feature_map_stride"),
                    format!("{s} differs from the first class's {prev}: one head, one map"),
                ));
            }
            _ => stride = Some(s),
        }
        // Per location OpenPCDet orders anchors by class, then size, then rotation.
        for (j, size) in sizes.iter().enumerate() {
            let size = y.f32s_of(size, &format!("{}[{j}]", gk("anchor_sizes")), Some(3))?;
            anchors.push(json!({"class": class, "size": size, "bottom_z": heights[0],
                                "rotations": rotations, "align_center": align}));
        }
    }
    put("anchors", &gkey, Value::Array(anchors));
    if let Some(s) = stride {
        put("feature_map_stride", &format!("{gkey}[0].feature_map_stride"), json!(s));
    }
    Ok(())
}

fn post_processing(y: &Yaml, post: &Value, put: &mut impl FnMut(&str, &str, Value)) -> Result<()> {
    let k = |name: &str| format!("MODEL.POST_PROCESSING.{name}");
    if let Some(v) = y.at(post, "SCORE_THRESH") {
        put("score_threshold", &k("SCORE_THRESH"), json!(y.f64_of(v, &k("SCORE_THRESH"))? as f32));
    }
    let Some(nms) = y.at(post, "NMS_CONFIG") else { return Ok(()) };
    if let Some(v) = y.at(nms, "MULTI_CLASSES_NMS") {
        if y.bool_of(v, &k("NMS_CONFIG.MULTI_CLASSES_NMS"))? {
            return Err(y.err(
                &k("NMS_CONFIG.MULTI_CLASSES_NMS"),
                "True is not supported: pillarq runs one class-agnostic NMS (set False)",
            ));
        }
    }
    if let Some(v) = y.at(nms, "NMS_TYPE") {
        let t = y.str_of(v, &k("NMS_CONFIG.NMS_TYPE"))?;
        if t != "nms_gpu" {
            return Err(
                y.err(&k("NMS_CONFIG.NMS_TYPE"), format!("'{t}' is not supported (nms_gpu: rotated BEV IoU is)"))
            );
        }
    }
    if let Some(v) = y.at(nms, "NMS_THRESH") {
        put("nms_iou", &k("NMS_CONFIG.NMS_THRESH"), json!(y.f64_of(v, &k("NMS_CONFIG.NMS_THRESH"))? as f32));
    }
    for (name, field) in [("NMS_PRE_MAXSIZE", "nms_pre_max"), ("NMS_POST_MAXSIZE", "nms_post_max")] {
        if let Some(v) = y.at(nms, name) {
            put(field, &k(&format!("NMS_CONFIG.{name}")), json!(y.usize_of(v, &k(&format!("NMS_CONFIG.{name}")))?));
        }
    }
    Ok(())
}

/// The OpenPCDet key that gives a pillarq configuration field (for "missing" messages).
pub fn openpcdet_key(field: &str) -> &'static str {
    match field {
        "class_names" => "CLASS_NAMES",
        "point_cloud_range" => "DATA_CONFIG.POINT_CLOUD_RANGE",
        "voxel_size" | "grid_size" => "DATA_CONFIG.DATA_PROCESSOR[transform_points_to_voxels].VOXEL_SIZE",
        "max_points_per_pillar" => "DATA_CONFIG.DATA_PROCESSOR[transform_points_to_voxels].MAX_POINTS_PER_VOXEL",
        "max_pillars" => "DATA_CONFIG.DATA_PROCESSOR[transform_points_to_voxels].MAX_NUMBER_OF_VOXELS",
        "anchors" | "feature_map_stride" => "MODEL.DENSE_HEAD.ANCHOR_GENERATOR_CONFIG",
        "point_features" | "num_point_features" => "MODEL.VFE",
        "dir_offset" => "MODEL.DENSE_HEAD.DIR_OFFSET",
        "dir_limit_offset" => "MODEL.DENSE_HEAD.DIR_LIMIT_OFFSET",
        "score_threshold" => "MODEL.POST_PROCESSING.SCORE_THRESH",
        "nms_iou" => "MODEL.POST_PROCESSING.NMS_CONFIG.NMS_THRESH",
        _ => "",
    }
}
