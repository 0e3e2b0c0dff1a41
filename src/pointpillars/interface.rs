//! The model's side of pre/post-processing: which inputs take the pillars and which outputs are
//! the head maps, found by name first, else by shape and element type.
//!
//! - Pillar features: `voxels` `[P, M, F]` or `[1, P, M, F]`, float32 or float16, F = the
//!   configuration's point features (9: mmdetection3d, 10: OpenPCDet / CUDA-PointPillars, 11:
//!   `WITH_DISTANCE`).
//! - Pillar coordinates: `[P, 4]` or `[1, P, 4]` int32/int64 in (batch, z, y, x) order.
//! - Valid-pillar count (`voxel_num`, one element) and per-pillar point counts (`[P]`), both
//!   optional.
//! - Head maps `cls`, `box`, `dir`: `[1, H, W, C]` (NHWC) or `[1, C, H, W]` (NCHW) with H x W the
//!   configuration's feature map and C = anchors per location x (classes, 7, 2).
//!
//! The model's shapes win over the configuration where both fix something (P, M): pillarq says
//! so once. Where it cannot tell, the error lists what it found and what it expected.

use super::postprocess::generate_anchors;
use super::PointPillarsConfig;
use crate::error::{Error, Result};
use crate::graph::{static_dims, Graph, ValueInfo};
use crate::tensor::DType;

/// One model input the pre-processing fills.
#[derive(Debug, Clone, PartialEq)]
pub struct Port {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// One head output.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadPort {
    pub name: String,
    /// `[1, C, H, W]` rather than `[1, H, W, C]`.
    pub nchw: bool,
    pub channels: usize,
}

/// Where pillars go in and head maps come out.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIo {
    pub voxels: Port,
    pub coords: Port,
    /// The valid-pillar count, when the model takes one.
    pub count: Option<Port>,
    /// Points per pillar `[P]`, when the model takes them (mmdetection3d's `num_points`).
    pub point_counts: Option<Port>,
    pub cls: HeadPort,
    pub boxes: HeadPort,
    pub dir: HeadPort,
    pub max_pillars: usize,
    pub max_points: usize,
    pub num_features: usize,
}

const VOXEL_NAMES: &[&str] = &["voxels", "voxel_features", "pillar_features", "features"];
const COORD_NAMES: &[&str] = &["voxel_idxs", "coords", "coors", "voxel_coords", "coordinates", "indices"];
const COUNT_NAMES: &[&str] = &["voxel_num", "num_voxels", "valid_num", "pillar_num"];
const POINT_COUNT_NAMES: &[&str] = &["num_points", "voxel_num_points", "num_points_per_voxel"];
const CLS_NAMES: &[&str] = &["cls_preds", "cls_score", "cls_scores", "batch_cls_preds"];
const BOX_NAMES: &[&str] = &["box_preds", "bbox_pred", "bbox_preds", "batch_box_preds"];
const DIR_NAMES: &[&str] = &["dir_cls_preds", "dir_cls_pred", "dir_preds"];

fn describe(v: &[ValueInfo]) -> String {
    v.iter()
        .map(|x| {
            format!("{} {} {}", x.name, x.dtype, x.shape.as_ref().map(crate::graph::shape_str).unwrap_or("[?]".into()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn dims(v: &ValueInfo) -> Option<Vec<usize>> {
    v.shape.as_ref().and_then(static_dims)
}

/// `[P, a, b]` or `[1, P, a, b]` -> `[P, a, b]` (for voxels); `[P, 4]` or `[1, P, 4]` -> `[P, 4]`.
fn drop_batch(d: &[usize], rank: usize) -> Option<Vec<usize>> {
    match d.len() {
        n if n == rank => Some(d.to_vec()),
        n if n == rank + 1 && d[0] == 1 => Some(d[1..].to_vec()),
        _ => None,
    }
}

fn is_float(t: DType) -> bool {
    matches!(t, DType::F32 | DType::F16)
}
fn is_int(t: DType) -> bool {
    matches!(t, DType::I32 | DType::I64)
}

/// Finds the model's pillar inputs and head outputs for `cfg` (see the module docs).
/// `origin(key)` says where a configuration key came from ("FILE: KEY"), for messages.
pub fn discover(graph: &Graph, cfg: &PointPillarsConfig, origin: &dyn Fn(&str) -> String) -> Result<ModelIo> {
    let nf = cfg.point_features.len();
    let inputs = &graph.inputs;
    let mut used: Vec<&str> = Vec::new();
    let unfound = |what: &str, expected: String| {
        Error::Other(format!(
            "cannot tell which model input is {what}: expected {expected}; the model's inputs are: {}",
            describe(inputs)
        ))
    };

    // Pillar features.
    let voxel_ok = |v: &ValueInfo| is_float(v.dtype) && dims(v).and_then(|d| drop_batch(&d, 3)).is_some();
    let voxels = inputs
        .iter()
        .find(|v| VOXEL_NAMES.contains(&v.name.as_str()))
        .or_else(|| {
            let c: Vec<&ValueInfo> = inputs
                .iter()
                .filter(|v| {
                    voxel_ok(v)
                        && dims(v).and_then(|d| d.last().copied()).is_some_and(|f| f == nf || (9..=11).contains(&f))
                })
                .collect();
            (c.len() == 1).then(|| c[0])
        })
        .ok_or_else(|| {
            unfound(
                "the pillar features",
                format!("a float32/float16 input [P, M, {nf}] or [1, P, M, {nf}] (e.g. 'voxels')"),
            )
        })?;
    let vd = dims(voxels).and_then(|d| drop_batch(&d, 3)).filter(|_| is_float(voxels.dtype)).ok_or_else(|| {
        Error::Input {
            name: voxels.name.clone(),
            msg: format!(
                "pillar features must be a statically shaped float32/float16 [P, M, F] or [1, P, M, F]; the model has {} {}",
                voxels.dtype,
                voxels.shape.as_ref().map(crate::graph::shape_str).unwrap_or("[?]".into())
            ),
        }
    })?;
    let (p, m, f) = (vd[0], vd[1], vd[2]);
    used.push(&voxels.name);

    let coords = inputs
        .iter()
        .find(|v| COORD_NAMES.contains(&v.name.as_str()))
        .or_else(|| {
            inputs.iter().find(|v| {
                !used.contains(&v.name.as_str())
                    && is_int(v.dtype)
                    && dims(v).and_then(|d| drop_batch(&d, 2)) == Some(vec![p, 4])
            })
        })
        .ok_or_else(|| {
            unfound("the pillar coordinates", format!("an int32/int64 input [{p}, 4] or [1, {p}, 4] (batch, z, y, x)"))
        })?;
    if !is_int(coords.dtype) || dims(coords).and_then(|d| drop_batch(&d, 2)) != Some(vec![p, 4]) {
        return Err(Error::Input {
            name: coords.name.clone(),
            msg: format!(
                "pillar coordinates must be int32/int64 [{p}, 4] or [1, {p}, 4] (batch, z, y, x); the model has {} {}",
                coords.dtype,
                coords.shape.as_ref().map(crate::graph::shape_str).unwrap_or("[?]".into())
            ),
        });
    }
    used.push(&coords.name);

    let mut count = None;
    let mut point_counts = None;
    for v in inputs.iter().filter(|v| !used.contains(&v.name.as_str())) {
        let d = dims(v);
        let port = || Port { name: v.name.clone(), dtype: v.dtype, shape: d.clone().unwrap_or_default() };
        let one = d.as_ref().is_some_and(|d| d.iter().product::<usize>() == 1);
        let per_pillar = d.as_ref().and_then(|d| drop_batch(d, 1)) == Some(vec![p]);
        if is_int(v.dtype) && one && count.is_none() && !POINT_COUNT_NAMES.contains(&v.name.as_str()) {
            count = Some(port());
        } else if is_int(v.dtype) && per_pillar && point_counts.is_none() && !COUNT_NAMES.contains(&v.name.as_str()) {
            point_counts = Some(port());
        } else {
            return Err(Error::Input {
                name: v.name.clone(),
                msg: format!(
                    "pillarq does not know what to feed this input ({} {}); it fills the pillar features ({}), \
                     coordinates ({}), an int valid-pillar count of one element and int points per pillar [{p}]",
                    v.dtype,
                    v.shape.as_ref().map(crate::graph::shape_str).unwrap_or("[?]".into()),
                    voxels.name,
                    coords.name
                ),
            });
        }
    }

    let anchors = generate_anchors(cfg)?;
    let (h, w, a) = (anchors.h, anchors.w, anchors.per_location);
    let nc = cfg.class_names.len();
    let heads = [
        ("class scores", CLS_NAMES, a * nc),
        ("box regression", BOX_NAMES, a * 7),
        ("direction", DIR_NAMES, a * cfg.num_dir_bins),
    ];
    // Each output as a map of the configuration's H x W: (name, nchw, channels).
    let maps: Vec<(&str, bool, usize)> = graph
        .outputs
        .iter()
        .filter_map(|o| {
            let d = dims(o)?;
            match d[..] {
                [1, hh, ww, c] if (hh, ww) == (h, w) => Some((o.name.as_str(), false, c)),
                [1, c, hh, ww] if (hh, ww) == (h, w) => Some((o.name.as_str(), true, c)),
                _ => None,
            }
        })
        .collect();
    let mut ports = Vec::new();
    for (what, names, want) in heads {
        let by_name = graph.outputs.iter().find(|o| names.contains(&o.name.as_str()));
        let port = match by_name {
            Some(o) => match maps.iter().find(|m| m.0 == o.name) {
                Some(&(name, nchw, c)) if c == want => HeadPort { name: name.into(), nchw, channels: c },
                Some(&(name, _, c)) => {
                    return Err(Error::Other(format!(
                        "the configuration's anchors disagree with the model: {a} anchors per location give {want} \
                         {what} channels, output '{name}' has {c} (anchors: {}; from {})",
                        anchor_summary(cfg),
                        origin("anchors")
                    )))
                }
                None => {
                    return Err(Error::Other(format!(
                        "output '{}' is not a {h} x {w} map (the configuration's grid {:?} / feature_map_stride {}); \
                         the model's outputs are: {} (feature_map_stride from {})",
                        o.name,
                        cfg.grid_size,
                        cfg.feature_map_stride,
                        describe(&graph.outputs),
                        origin("feature_map_stride")
                    )))
                }
            },
            None => {
                let c: Vec<_> = maps.iter().filter(|m| m.2 == want).collect();
                match c[..] {
                    [&(name, nchw, ch)] => HeadPort { name: name.into(), nchw, channels: ch },
                    _ => {
                        return Err(Error::Other(format!(
                            "cannot tell which output holds the {what}: expected one [1, {h}, {w}, {want}] (NHWC) or \
                             [1, {want}, {h}, {w}] (NCHW) map ({a} anchors per location: {}); the model's outputs are: {}",
                            anchor_summary(cfg),
                            describe(&graph.outputs)
                        )))
                    }
                }
            }
        };
        ports.push(port);
    }
    let [cls, boxes, dir]: [HeadPort; 3] = ports.try_into().expect("three heads");

    if f != nf {
        return Err(Error::Input {
            name: voxels.name.clone(),
            msg: format!(
                "the model takes {f} features per point, the configuration's point features are {nf} ({:?}); \
                 check {} (OpenPCDet: MODEL.VFE USE_ABSLOTE_XYZ, WITH_DISTANCE; pillarq: point_features)",
                cfg.point_features,
                origin("point_features")
            ),
        });
    }
    Ok(ModelIo {
        voxels: Port { name: voxels.name.clone(), dtype: voxels.dtype, shape: dims(voxels).unwrap_or_default() },
        coords: Port { name: coords.name.clone(), dtype: coords.dtype, shape: dims(coords).unwrap_or_default() },
        count,
        point_counts,
        cls,
        boxes,
        dir,
        max_pillars: p,
        max_points: m,
        num_features: f,
    })
}

fn anchor_summary(cfg: &PointPillarsConfig) -> String {
    cfg.anchors
        .iter()
        .map(|a| format!("{} {:?} x {} rotations", a.class, a.size, a.rotations.len()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Makes the configuration agree with the model where the model's shapes decide (pillars per
/// frame, points per pillar), saying so once when they differed.
pub fn reconcile(cfg: &mut PointPillarsConfig, io: &ModelIo, model_name: &str) {
    let fields = [
        (&mut cfg.max_pillars, io.max_pillars, "allows", "pillars"),
        (&mut cfg.max_points_per_pillar, io.max_points, "keeps", "points per pillar"),
    ];
    for (value, model, verb, what) in fields {
        // 0: the configuration leaves it to the model.
        if *value != 0 && *value != model {
            tracing::warn!(
                "{model_name}: the configuration {verb} {} {what}, the model's '{}' input takes {model}: using {model}",
                *value,
                io.voxels.name,
            );
        }
        *value = model;
    }
}

impl ModelIo {
    /// Checks pillar inputs given from outside (e.g. `.npy` files): the valid-pillar count fits
    /// the pillar rows, and each valid pillar's (y, x) lies in the `nx x ny` grid. Errors name
    /// the input and the row (the scatter would otherwise fail deep inside the graph).
    pub fn check_inputs(&self, inputs: &[(String, crate::tensor::Tensor)], grid: [usize; 2]) -> Result<()> {
        let get = |name: &str| inputs.iter().find(|(n, _)| n == name).and_then(|(_, t)| t.to_i64_vec());
        let count = match &self.count {
            // A count the model takes but that was not given: the executor names it.
            Some(c) => match get(&c.name) {
                Some(v) => Some((c, v)),
                None => return Ok(()),
            },
            None => None,
        };
        let valid = match count {
            Some((c, v)) => {
                let n = v.first().copied().unwrap_or(0);
                if n < 0 || n as usize > self.max_pillars {
                    return Err(Error::Input {
                        name: c.name.clone(),
                        msg: format!(
                            "{n} valid pillars, but '{}' has {} pillar rows",
                            self.voxels.name, self.max_pillars
                        ),
                    });
                }
                n as usize
            }
            None => self.max_pillars,
        };
        let Some(idx) = get(&self.coords.name) else { return Ok(()) };
        let [nx, ny] = grid;
        for (row, c) in idx.chunks_exact(4).take(valid).enumerate() {
            let (y, x) = (c[2], c[3]);
            if !(0..ny as i64).contains(&y) || !(0..nx as i64).contains(&x) || c[0] != 0 {
                return Err(Error::Input {
                    name: self.coords.name.clone(),
                    msg: format!(
                        "row {row} (batch, z, y, x) = {c:?} is outside the {ny} x {nx} grid (batch 0) of the {valid} valid pillars"
                    ),
                });
            }
        }
        Ok(())
    }
}
