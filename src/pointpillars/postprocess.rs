//! Post-processing: the head's output maps to boxes in the lidar frame (anchors, residual box
//! decoding, direction classifier, score threshold, class-agnostic rotated BEV NMS), and boxes to
//! KITTI result objects in the camera frame.
//!
//! Conventions (OpenPCDet `AnchorHeadSingle` with the KITTI pointpillar config):
//! - feature map `H x W = ny / stride x nx / stride`; anchor centres with `align_center = False`:
//!   `x = x0 + ix (x1 - x0) / (W - 1)`, `y = y0 + iy (y1 - y0) / (H - 1)`, `z = bottom_z + dz / 2`;
//! - per location, anchor `a = class * R + rotation` (R = 2 rotations: 0 and pi/2); the global
//!   anchor index is `(iy * W + ix) * A + a`, matching the NHWC maps `[1, H, W, C]` whose channel
//!   is `a * num_classes + class` (cls), `a * 7 + k` (box) and `a * 2 + k` (dir).

use std::borrow::Cow;
use std::f32::consts::PI;

use crate::error::{Error, Result};
use crate::kitti::iou::convex_intersection_area;
use crate::kitti::{Calib, Object};
use crate::pointpillars::interface::HeadPort;
use crate::pointpillars::PointPillarsConfig;
use crate::tensor::Tensor;

/// One detected box in the lidar frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Index into the configuration's `class_names`.
    pub class: usize,
    /// sigmoid(logit) of that class.
    pub score: f32,
    /// Centre x, y, z, sizes dx, dy, dz and yaw (around lidar z, 0 = along +x).
    pub lidar_box: [f32; 7],
}

/// The anchor grid of a configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Anchors {
    /// Feature map height (y cells) and width (x cells).
    pub h: usize,
    pub w: usize,
    /// Anchors per location (`sum of rotations over the anchor specs`).
    pub per_location: usize,
    /// Class of each per-location anchor.
    pub class_of: Vec<usize>,
    /// `(x, y, z centre, dx, dy, dz, yaw)`, index `(iy * w + ix) * per_location + a`.
    pub boxes: Vec<[f32; 7]>,
}

/// OpenPCDet's `limit_period`: `v - floor(v / period + offset) * period`.
pub fn limit_period(v: f32, offset: f32, period: f32) -> f32 {
    v - (v / period + offset).floor() * period
}

/// Wraps an angle to `[-pi, pi)`.
pub fn wrap_angle(a: f32) -> f32 {
    let w = limit_period(a, 0.5, 2.0 * PI);
    if w >= PI {
        w - 2.0 * PI
    } else if w < -PI {
        w + 2.0 * PI
    } else {
        w
    }
}

fn cfg_err(msg: String) -> Error {
    Error::Other(format!("PointPillars configuration: {msg}"))
}

/// `generate_anchors` for the configuration of the last call, kept: every frame of a run decodes
/// with the same anchors (107,136 boxes for a KITTI grid), and rebuilding them per frame cost
/// about 2 % of a sensitivity sweep.
fn anchors_of(cfg: &PointPillarsConfig) -> Result<std::sync::Arc<Anchors>> {
    use std::sync::{Arc, Mutex};
    static LAST: Mutex<Option<(PointPillarsConfig, Arc<Anchors>)>> = Mutex::new(None);
    if let Some((c, a)) = LAST.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if c == cfg {
            return Ok(a.clone());
        }
    }
    let a = Arc::new(generate_anchors(cfg)?);
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((cfg.clone(), a.clone()));
    Ok(a)
}

/// The anchors of `cfg` (see the module docs for the order).
pub fn generate_anchors(cfg: &PointPillarsConfig) -> Result<Anchors> {
    let stride = cfg.feature_map_stride;
    if stride == 0 || !cfg.grid_size[0].is_multiple_of(stride) || !cfg.grid_size[1].is_multiple_of(stride) {
        return Err(cfg_err(format!("feature_map_stride {stride} does not divide grid_size {:?}", cfg.grid_size)));
    }
    let (w, h) = (cfg.grid_size[0] / stride, cfg.grid_size[1] / stride);
    if w < 2 || h < 2 {
        return Err(cfg_err(format!("feature map {h} x {w} is too small for anchors")));
    }
    if cfg.anchors.is_empty() {
        return Err(cfg_err("no anchors".into()));
    }
    // (box at the origin, class, align_center)
    let mut per_loc: Vec<([f32; 7], usize, bool)> = Vec::new();
    for spec in &cfg.anchors {
        let class = cfg.class_names.iter().position(|c| c == &spec.class).ok_or_else(|| {
            cfg_err(format!("anchor class '{}' is not in class_names {:?}", spec.class, cfg.class_names))
        })?;
        let [dx, dy, dz] = spec.size;
        for &rot in &spec.rotations {
            per_loc.push(([0.0, 0.0, spec.bottom_z + dz / 2.0, dx, dy, dz, rot], class, spec.align_center));
        }
    }
    let r = cfg.point_cloud_range;
    // align_center = False spans the range end to end; True puts anchors at cell centres.
    let centre = |align: bool, ix: usize, iy: usize| {
        if align {
            let (sx, sy) = ((r[3] - r[0]) / w as f32, (r[4] - r[1]) / h as f32);
            (r[0] + (ix as f32 + 0.5) * sx, r[1] + (iy as f32 + 0.5) * sy)
        } else {
            let (sx, sy) = ((r[3] - r[0]) / (w - 1) as f32, (r[4] - r[1]) / (h - 1) as f32);
            (r[0] + ix as f32 * sx, r[1] + iy as f32 * sy)
        }
    };
    let a = per_loc.len();
    let mut boxes = Vec::with_capacity(h * w * a);
    for iy in 0..h {
        for ix in 0..w {
            for (b, _, align) in &per_loc {
                let mut b = *b;
                (b[0], b[1]) = centre(*align, ix, iy);
                boxes.push(b);
            }
        }
    }
    Ok(Anchors { h, w, per_location: a, class_of: per_loc.iter().map(|p| p.1).collect(), boxes })
}

/// Residual decoding of one box against its anchor (before the direction classifier).
pub fn decode_box(t: &[f32], anchor: &[f32; 7]) -> [f32; 7] {
    let [xa, ya, za, dxa, dya, dza, ra] = *anchor;
    let d = (dxa * dxa + dya * dya).sqrt();
    [t[0] * d + xa, t[1] * d + ya, t[2] * dza + za, t[3].exp() * dxa, t[4].exp() * dya, t[5].exp() * dza, t[6] + ra]
}

/// The direction classifier's correction: `dir_label = argmax(dir logits)` (ties: 0),
/// `yaw = limit_period(yaw - dir_offset, dir_limit_offset, pi) + dir_offset + pi * dir_label`.
pub fn apply_direction(yaw: f32, dir_logits: [f32; 2], dir_offset: f32, dir_limit_offset: f32) -> f32 {
    let label = if dir_logits[1] > dir_logits[0] { 1.0 } else { 0.0 };
    let period = PI;
    limit_period(yaw - dir_offset, dir_limit_offset, period) + dir_offset + period * label
}

/// The four BEV corners of a lidar box `(x, y, ., dx, dy, ., yaw)`, counter-clockwise.
pub fn bev_corners(b: &[f32; 7]) -> [[f64; 2]; 4] {
    let (x, y) = (f64::from(b[0]), f64::from(b[1]));
    let (hx, hy) = (f64::from(b[3]) / 2.0, f64::from(b[4]) / 2.0);
    let (s, c) = f64::from(b[6]).sin_cos();
    [[hx, hy], [-hx, hy], [-hx, -hy], [hx, -hy]].map(|[u, v]| [x + c * u - s * v, y + s * u + c * v])
}

/// Rotated bird's-eye-view IoU of two lidar boxes.
pub fn bev_iou(a: &[f32; 7], b: &[f32; 7]) -> f64 {
    let (ca, cb) = (bev_corners(a), bev_corners(b));
    // Quick reject on the bounding circles.
    let (ra, rb) = (f64::from(a[3]).hypot(f64::from(a[4])) / 2.0, f64::from(b[3]).hypot(f64::from(b[4])) / 2.0);
    if f64::from(a[0] - b[0]).hypot(f64::from(a[1] - b[1])) > ra + rb {
        return 0.0;
    }
    let inter = convex_intersection_area(&ca, &cb);
    let union = f64::from(a[3]) * f64::from(a[4]) + f64::from(b[3]) * f64::from(b[4]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy NMS over detections sorted by descending score: a box is suppressed when its BEV IoU
/// with a kept box is `> iou`. Keeps at most `max_keep` (0 = no limit).
pub fn nms_bev(sorted: &[Detection], iou: f32, max_keep: usize) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in sorted {
        if max_keep > 0 && kept.len() >= max_keep {
            break;
        }
        if kept.iter().all(|k| bev_iou(&k.lidar_box, &d.lidar_box) <= f64::from(iou)) {
            kept.push(*d);
        }
    }
    kept
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// A logit below which `sigmoid(x) >= threshold` is false: the threshold's logit less a margin
/// far above f32 rounding; no floor for thresholds outside (0, 1).
fn logit_floor(threshold: f32) -> f64 {
    let t = threshold as f64;
    if t > 0.0 && t < 1.0 {
        (t / (1.0 - t)).ln() - 1e-3
    } else {
        f64::NEG_INFINITY
    }
}

/// Output maps to detections with the standard head names (`cls_preds`, `box_preds`,
/// `dir_cls_preds`, NHWC); see [`decode_heads`].
pub fn decode_detections(outputs: &[(String, Tensor)], cfg: &PointPillarsConfig) -> Result<Vec<Detection>> {
    let port = |name: &str| HeadPort { name: name.into(), nchw: false, channels: 0 };
    decode_heads(outputs, cfg, [&port("cls_preds"), &port("box_preds"), &port("dir_cls_preds")])
}

/// One head map in NHWC order (transposed when the model writes NCHW).
fn head_map<'t>(
    outputs: &'t [(String, Tensor)],
    port: &HeadPort,
    h: usize,
    w: usize,
    ch: usize,
    a: usize,
) -> Result<Cow<'t, [f32]>> {
    let name = port.name.as_str();
    let (_, t) = outputs.iter().find(|(n, _)| n == name).ok_or_else(|| {
        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        Error::Other(format!("output '{name}' is missing; the outputs are {names:?}"))
    })?;
    let (want, layout) = if port.nchw { ([1, ch, h, w], "NCHW") } else { ([1, h, w, ch], "NHWC") };
    if t.shape != want {
        return Err(Error::Other(format!(
            "output '{name}' has shape {:?}; the configuration needs {want:?} ({layout}, {a} anchors)",
            t.shape
        )));
    }
    let v = t.as_f32().ok_or_else(|| Error::Other(format!("output '{name}' is {}, expected float32", t.dtype())))?;
    if !port.nchw {
        return Ok(Cow::Borrowed(v));
    }
    let mut out = vec![0f32; v.len()];
    for c in 0..ch {
        for p in 0..h * w {
            out[p * ch + c] = v[c * h * w + p];
        }
    }
    Ok(Cow::Owned(out))
}

/// The class, box and direction maps of one run in the order `decode_heads` reads them
/// (anchor `i`'s class logits at `[i * C..]`, its 7 box values at `[i * 7..]`, its 2 direction
/// logits at `[i * 2..]`), transposed from NCHW where the model writes that.
pub fn anchor_maps<'t>(
    outputs: &'t [(String, Tensor)],
    cfg: &PointPillarsConfig,
    heads: [&HeadPort; 3],
) -> Result<[Cow<'t, [f32]>; 3]> {
    let anchors = anchors_of(cfg)?;
    let (h, w, a) = (anchors.h, anchors.w, anchors.per_location);
    let nc = cfg.class_names.len();
    Ok([
        head_map(outputs, heads[0], h, w, a * nc, a)?,
        head_map(outputs, heads[1], h, w, a * 7, a)?,
        head_map(outputs, heads[2], h, w, a * 2, a)?,
    ])
}

/// Output maps to detections: decode, score threshold (`>=`), top `nms_pre_max` by score (ties
/// by anchor index; 0 = all), class-agnostic BEV NMS at `nms_iou`, at most `nms_post_max` (0 = all).
/// Boxes that decode to non-finite values are dropped. The result is sorted by descending score.
/// `heads` names the class, box and direction outputs and their layout.
pub fn decode_heads(
    outputs: &[(String, Tensor)],
    cfg: &PointPillarsConfig,
    heads: [&HeadPort; 3],
) -> Result<Vec<Detection>> {
    let anchors = anchors_of(cfg)?;
    let (h, w, a) = (anchors.h, anchors.w, anchors.per_location);
    let nc = cfg.class_names.len();
    let cls = head_map(outputs, heads[0], h, w, a * nc, a)?;
    let boxes = head_map(outputs, heads[1], h, w, a * 7, a)?;
    let dirs = head_map(outputs, heads[2], h, w, a * 2, a)?;

    // Best class per anchor on the logits (sigmoid is monotone); ties keep the lower class.
    // Logits a margin below the threshold's logit cannot reach it: their sigmoid is skipped
    // (most anchors), the rest are decided by the same `sigmoid(l) >= threshold` as before.
    let floor = logit_floor(cfg.score_threshold);
    let mut cands: Vec<(usize, usize, f32)> = Vec::new();
    for (i, logits) in cls.chunks_exact(nc).enumerate() {
        let (mut best, mut bl) = (0, logits[0]);
        for (c, &l) in logits.iter().enumerate().skip(1) {
            if l > bl {
                best = c;
                bl = l;
            }
        }
        if (bl as f64) < floor {
            continue;
        }
        let s = sigmoid(bl);
        if s >= cfg.score_threshold {
            cands.push((i, best, s));
        }
    }
    // Stable: equal scores keep anchor order.
    cands.sort_by(|x, y| y.2.total_cmp(&x.2));
    if cfg.nms_pre_max > 0 {
        cands.truncate(cfg.nms_pre_max);
    }
    let mut dets = Vec::with_capacity(cands.len());
    for (i, class, score) in cands {
        let mut b = decode_box(&boxes[i * 7..i * 7 + 7], &anchors.boxes[i]);
        b[6] = apply_direction(b[6], [dirs[i * 2], dirs[i * 2 + 1]], cfg.dir_offset, cfg.dir_limit_offset);
        if b.iter().all(|v| v.is_finite()) {
            dets.push(Detection { class, score, lidar_box: b });
        }
    }
    Ok(nms_bev(&dets, cfg.nms_iou, cfg.nms_post_max))
}

/// The 8 corners of a KITTI camera box (bottom centre `loc`, dims `(h, w, l)`, `ry`).
pub fn camera_box_corners(loc: [f32; 3], dims: [f32; 3], ry: f32) -> [[f32; 3]; 8] {
    let [h, w, l] = dims;
    let (s, c) = ry.sin_cos();
    let mut out = [[0f32; 3]; 8];
    for (i, o) in out.iter_mut().enumerate() {
        let u = if i & 1 == 0 { l / 2.0 } else { -l / 2.0 };
        let v = if i & 2 == 0 { w / 2.0 } else { -w / 2.0 };
        let y = if i & 4 == 0 { 0.0 } else { -h };
        // Rotation about the camera y axis: x' = c x + s z, z' = -s x + c z.
        *o = [loc[0] + c * u + s * v, loc[1] + y, loc[2] - s * u + c * v];
    }
    out
}

/// A lidar detection as a KITTI result object (camera frame): location = bottom centre,
/// dimensions (h, w, l) = (dz, dy, dx), `rotation_y = -yaw - pi/2` and
/// `alpha = -atan2(-y, x) + rotation_y`, both wrapped to [-pi, pi); bbox from the 8 corners
/// projected with P2, clipped to the frame's image (`calib.image_size`, W x H: `[0, W - 1] x
/// [0, H - 1]`; 1242 x 375 when the frame has no image); truncated and
/// occluded -1. `None` when the box centre is not in front of the camera or the clipped 2D box
/// is empty (or not finite). Unknown class indices are named `class<N>`.
pub fn to_kitti_object(det: &Detection, calib: &Calib, class_names: &[String]) -> Option<Object> {
    let [x, y, z, dx, dy, dz, yaw] = det.lidar_box;
    let location = calib.velo_to_rect([x, y, z - dz / 2.0]);
    let centre = calib.velo_to_rect([x, y, z]);
    if centre[2].is_nan() || centre[2] <= 0.0 {
        return None;
    }
    let dims = [dz, dy, dx];
    let ry = wrap_angle(-yaw - PI / 2.0);
    let alpha = wrap_angle(-(-y).atan2(x) + ry);
    let (mut lo, mut hi) = ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]);
    for c in camera_box_corners(location, dims, ry) {
        let uv = calib.project_rect_to_image(c);
        for k in 0..2 {
            lo[k] = lo[k].min(uv[k]);
            hi[k] = hi[k].max(uv[k]);
        }
    }
    let [iw, ih] = calib.image_size;
    let bbox = [
        lo[0].clamp(0.0, iw - 1.0),
        lo[1].clamp(0.0, ih - 1.0),
        hi[0].clamp(0.0, iw - 1.0),
        hi[1].clamp(0.0, ih - 1.0),
    ];
    if !(bbox.iter().all(|v| v.is_finite()) && bbox[2] > bbox[0] && bbox[3] > bbox[1]) {
        return None;
    }
    let class = class_names.get(det.class).cloned().unwrap_or_else(|| format!("class{}", det.class));
    Some(Object {
        class,
        truncated: -1.0,
        occluded: -1,
        alpha,
        bbox: bbox.map(f64::from),
        dimensions: dims,
        location,
        rotation_y: ry,
        score: Some(det.score),
    })
}

/// [`to_kitti_object`] over a frame's detections, dropping those it rejects.
pub fn to_kitti_objects(dets: &[Detection], calib: &Calib, class_names: &[String]) -> Vec<Object> {
    dets.iter().filter_map(|d| to_kitti_object(d, calib, class_names)).collect()
}

#[cfg(test)]
#[allow(clippy::approx_constant)] // 1.5707963 and 0.78539 are the models' metadata values, on purpose
mod tests {
    use std::f32::consts::FRAC_PI_2;

    use super::*;

    /// KITTI anchors and post-processing on a 16 x 16 grid of 0.5 m cells, stride 2: 8 x 8 map,
    /// anchor centres x = ix * 8/7, y = -4 + iy * 8/7.
    fn cfg() -> PointPillarsConfig {
        serde_json::from_value(serde_json::json!({
            "point_cloud_range": [0.0, -4.0, -3.0, 8.0, 4.0, 1.0], "voxel_size": [0.5, 0.5, 4.0],
            "grid_size": [16, 16, 1], "max_points_per_pillar": 32, "max_pillars": 100,
            "class_names": ["Car", "Pedestrian", "Cyclist"],
            "anchors": [
                {"class": "Car", "size": [3.9, 1.6, 1.56], "bottom_z": -1.78, "rotations": [0.0, 1.5707963]},
                {"class": "Pedestrian", "size": [0.8, 0.6, 1.73], "bottom_z": -0.6, "rotations": [0.0, 1.5707963]},
                {"class": "Cyclist", "size": [1.76, 0.6, 1.73], "bottom_z": -0.6, "rotations": [0.0, 1.5707963]}],
            "dir_offset": 0.78539, "dir_limit_offset": 0.0, "score_threshold": 0.1, "nms_iou": 0.01,
            "nms_pre_max": 4096, "nms_post_max": 500, "feature_map_stride": 2,
        }))
        .unwrap()
    }

    const A: usize = 6;

    /// Zero maps (all cls logits -10, so every score is below the threshold).
    fn maps() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        (vec![-10.0; 64 * A * 3], vec![0.0; 64 * A * 7], vec![0.0; 64 * A * 2])
    }

    fn outputs(m: (Vec<f32>, Vec<f32>, Vec<f32>)) -> Vec<(String, Tensor)> {
        vec![
            ("cls_preds".into(), Tensor::f32(vec![1, 8, 8, A * 3], m.0)),
            ("box_preds".into(), Tensor::f32(vec![1, 8, 8, A * 7], m.1)),
            ("dir_cls_preds".into(), Tensor::f32(vec![1, 8, 8, A * 2], m.2)),
        ]
    }

    fn anchor_index(iy: usize, ix: usize, a: usize) -> usize {
        (iy * 8 + ix) * A + a
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    #[test]
    fn anchors_follow_openpcdet_order() {
        let an = generate_anchors(&cfg()).unwrap();
        assert_eq!((an.h, an.w, an.per_location, an.boxes.len()), (8, 8, 6, 384));
        assert_eq!(an.class_of, [0, 0, 1, 1, 2, 2]);
        assert_eq!(an.boxes[0], [0.0, -4.0, -1.78 + 0.78, 3.9, 1.6, 1.56, 0.0]);
        let b = an.boxes[anchor_index(2, 3, 3)];
        assert!(close(&b, &[3.0 * 8.0 / 7.0, -4.0 + 2.0 * 8.0 / 7.0, -0.6 + 0.865, 0.8, 0.6, 1.73, FRAC_PI_2], 1e-6));
        // The last centre is exactly the range's upper corner (align_center = False).
        let last = an.boxes[anchor_index(7, 7, 5)];
        assert!(close(&last[..2], &[8.0, 4.0], 1e-5), "{last:?}");
    }

    #[test]
    fn align_center_anchors_sit_at_cell_centres() {
        // OpenPCDet's align_center = True: x = x0 + (ix + 0.5) (x1 - x0) / W, per class.
        let mut c = cfg();
        c.anchors[1].align_center = true;
        let an = generate_anchors(&c).unwrap();
        let ped = an.boxes[anchor_index(2, 3, 2)];
        assert!(close(&ped[..2], &[3.5 * 1.0, -4.0 + 2.5 * 1.0], 1e-6), "{ped:?}");
        let car = an.boxes[anchor_index(2, 3, 0)];
        assert!(close(&car[..2], &[3.0 * 8.0 / 7.0, -4.0 + 2.0 * 8.0 / 7.0], 1e-6), "{car:?}");
    }

    #[test]
    fn nchw_heads_decode_as_nhwc() {
        let i = anchor_index(2, 3, 1);
        let mut m = maps();
        m.0[i * 3] = 2.0;
        let nhwc = decode_detections(&outputs(m.clone()), &cfg()).unwrap();
        let to_nchw = |v: &[f32], ch: usize| {
            let mut o = vec![0f32; v.len()];
            for p in 0..64 {
                for c in 0..ch {
                    o[c * 64 + p] = v[p * ch + c];
                }
            }
            o
        };
        let outs = vec![
            ("c".to_string(), Tensor::f32(vec![1, A * 3, 8, 8], to_nchw(&m.0, A * 3))),
            ("b".to_string(), Tensor::f32(vec![1, A * 7, 8, 8], to_nchw(&m.1, A * 7))),
            ("d".to_string(), Tensor::f32(vec![1, A * 2, 8, 8], to_nchw(&m.2, A * 2))),
        ];
        let port = |n: &str| HeadPort { name: n.into(), nchw: true, channels: 0 };
        let nchw = decode_heads(&outs, &cfg(), [&port("c"), &port("b"), &port("d")]).unwrap();
        assert_eq!(nhwc.len(), 1);
        assert_eq!(nhwc, nchw);
        // An NCHW port given NHWC maps is a shape error naming the layout.
        let e = decode_heads(&outputs(m), &cfg(), [&port("cls_preds"), &port("box_preds"), &port("dir_cls_preds")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("NCHW") && e.contains("cls_preds"), "{e}");
    }

    #[test]
    fn one_anchor_decodes_to_its_box() {
        let i = anchor_index(2, 3, 1); // Car, yaw pi/2
        let mut m = maps();
        m.0[i * 3] = 2.0;
        let dets = decode_detections(&outputs(m), &cfg()).unwrap();
        assert_eq!(dets.len(), 1);
        let d = dets[0];
        assert_eq!(d.class, 0);
        assert_eq!(d.score, 1.0 / (1.0 + (-2f32).exp()));
        let anchor = generate_anchors(&cfg()).unwrap().boxes[i];
        assert!(close(&d.lidar_box, &anchor, 1e-6), "{:?} vs {anchor:?}", d.lidar_box);
    }

    #[test]
    fn residuals_best_class_and_direction_flip() {
        let i = anchor_index(5, 6, 1); // Car, yaw pi/2
        let anchor = generate_anchors(&cfg()).unwrap().boxes[i];
        let mut m = maps();
        m.0[i * 3..i * 3 + 3].copy_from_slice(&[1.0, -1.0, 1.5]); // best: class 2 (Cyclist logit)
        m.1[i * 7..i * 7 + 7].copy_from_slice(&[0.1, -0.2, 0.5, 2f32.ln(), 0.0, 0.5f32.ln(), 0.2]);
        let d = (anchor[3].powi(2) + anchor[4].powi(2)).sqrt();
        let want = [
            anchor[0] + 0.1 * d,
            anchor[1] - 0.2 * d,
            anchor[2] + 0.5 * 1.56,
            2.0 * 3.9,
            1.6,
            0.5 * 1.56,
            FRAC_PI_2 + 0.2,
        ];
        let dets = decode_detections(&outputs(m.clone()), &cfg()).unwrap();
        assert_eq!((dets.len(), dets[0].class), (1, 2));
        assert_eq!(dets[0].score, 1.0 / (1.0 + (-1.5f32).exp()));
        assert!(close(&dets[0].lidar_box, &want, 1e-5), "{:?} vs {want:?}", dets[0].lidar_box);
        // The direction classifier says "the other way": yaw + pi.
        m.2[i * 2 + 1] = 1.0;
        let dets = decode_detections(&outputs(m), &cfg()).unwrap();
        assert!((dets[0].lidar_box[6] - (FRAC_PI_2 + 0.2 + PI)).abs() < 1e-5, "{:?}", dets[0].lidar_box);
        // limit_period by hand: yaw 0 (label 0) lands in [dir_offset, dir_offset + pi): pi.
        assert!((apply_direction(0.0, [0.0, 0.0], 0.78539, 0.0) - PI).abs() < 1e-6);
        assert!((apply_direction(0.0, [0.0, 1.0], 0.78539, 0.0) - 2.0 * PI).abs() < 1e-6);
        assert!((apply_direction(3.0, [1.0, 0.0], 0.78539, 0.0) - 3.0).abs() < 1e-6);
    }

    #[test]
    fn nms_keeps_the_higher_of_overlapping_and_both_disjoint() {
        // Car anchors (3.9 m long, yaw 0) 8/7 m apart overlap; the one at ix 0 is far from ix 7.
        let (a, b, c) = (anchor_index(4, 3, 0), anchor_index(4, 4, 0), anchor_index(0, 7, 0));
        let mut m = maps();
        m.0[a * 3] = 1.0;
        m.0[b * 3] = 2.0;
        m.0[c * 3] = 0.5;
        let dets = decode_detections(&outputs(m.clone()), &cfg()).unwrap();
        assert_eq!(dets.len(), 2, "{dets:?}");
        let an = generate_anchors(&cfg()).unwrap();
        assert_eq!(dets[0].lidar_box[..2], an.boxes[b][..2]);
        assert_eq!(dets[1].lidar_box[..2], an.boxes[c][..2]);
        // nms_post_max and nms_pre_max cut by score; the threshold is inclusive-above.
        let mut k = cfg();
        k.nms_post_max = 1;
        assert_eq!(decode_detections(&outputs(m.clone()), &k).unwrap().len(), 1);
        let mut k = cfg();
        k.nms_pre_max = 1;
        assert_eq!(decode_detections(&outputs(m.clone()), &k).unwrap().len(), 1);
        let mut k = cfg();
        k.score_threshold = 1.0 / (1.0 + (-1.0f32).exp());
        let dets = decode_detections(&outputs(m), &k).unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].lidar_box[..2], an.boxes[b][..2]);
    }

    #[test]
    fn rotated_bev_iou_known_answers() {
        let bx = |x: f32, y: f32, dx: f32, dy: f32, yaw: f32| [x, y, 0.0, dx, dy, 1.0, yaw];
        assert!((bev_iou(&bx(0.0, 0.0, 2.0, 2.0, 0.0), &bx(1.0, 0.0, 2.0, 2.0, 0.0)) - 1.0 / 3.0).abs() < 1e-9);
        // A 4 x 2 box turned by 90 degrees is the 2 x 4 box.
        assert!((bev_iou(&bx(1.0, 2.0, 4.0, 2.0, FRAC_PI_2), &bx(1.0, 2.0, 2.0, 4.0, 0.0)) - 1.0).abs() < 1e-6);
        // A square turned 45 degrees inside a 2 x 2 square: octagon area 8 (sqrt 2 - 1).
        let oct = 8.0 * (2f64.sqrt() - 1.0);
        let iou = bev_iou(&bx(0.0, 0.0, 2.0, 2.0, PI / 4.0), &bx(0.0, 0.0, 2.0, 2.0, 0.0));
        assert!((iou - oct / (8.0 - oct)).abs() < 1e-6, "{iou}");
        assert_eq!(bev_iou(&bx(0.0, 0.0, 2.0, 2.0, 0.3), &bx(5.0, 0.0, 2.0, 2.0, 0.0)), 0.0);
        let det = |s: f32, b| Detection { class: 0, score: s, lidar_box: b };
        let kept = nms_bev(&[det(0.9, bx(0.0, 0.0, 2.0, 2.0, 0.0)), det(0.8, bx(1.9, 0.0, 2.0, 2.0, 0.0))], 0.01, 0);
        assert_eq!(kept.len(), 1);
        let kept = nms_bev(&[det(0.9, bx(0.0, 0.0, 2.0, 2.0, 0.0)), det(0.8, bx(2.1, 0.0, 2.0, 2.0, 0.0))], 0.01, 0);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn shape_and_name_errors_are_clear() {
        let mut o = outputs(maps());
        o[1].1 = Tensor::f32(vec![1, 42, 8, 8], vec![0.0; 64 * 42]);
        let e = decode_detections(&o, &cfg()).unwrap_err().to_string();
        assert!(e.contains("box_preds") && e.contains("[1, 8, 8, 42]"), "{e}");
        o.remove(2);
        let e = decode_detections(&outputs(maps())[..2], &cfg()).unwrap_err().to_string();
        assert!(e.contains("dir_cls_preds") && e.contains("missing"), "{e}");
        let mut c = cfg();
        c.feature_map_stride = 3;
        assert!(decode_detections(&outputs(maps()), &c).unwrap_err().to_string().contains("feature_map_stride"));
    }

    fn names() -> Vec<String> {
        ["Car", "Pedestrian", "Cyclist"].map(String::from).to_vec()
    }

    #[test]
    fn lidar_box_ten_metres_ahead_to_kitti_camera() {
        let calib = Calib::typical();
        let b = [10.0, 0.0, -1.0, 3.9, 1.6, 1.56, 0.0];
        let o = to_kitti_object(&Detection { class: 0, score: 0.75, lidar_box: b }, &calib, &names()).unwrap();
        assert_eq!(o.class, "Car");
        assert_eq!((o.truncated, o.occluded, o.score), (-1.0, -1, Some(0.75)));
        assert_eq!(o.dimensions, [1.56, 1.6, 3.9]);
        assert_eq!(o.location, calib.velo_to_rect([10.0, 0.0, -1.78]));
        // The camera is ~0.27 m ahead of the lidar and ~0.08 m below it; y points down.
        assert!(close(&o.location, &[-0.015, 1.667, 9.677], 0.002), "{:?}", o.location);
        assert!((o.rotation_y + FRAC_PI_2).abs() < 1e-6);
        assert!((o.alpha + FRAC_PI_2).abs() < 1e-6);
        // 2D box: the lidar-frame corners projected directly agree to 3 px (the camera box is
        // upright in the rectified frame, the lidar box in the lidar frame: ~0.5 degree apart).
        let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
        for i in 0..8 {
            let c = [
                b[0] + if i & 1 == 0 { 1.95 } else { -1.95 },
                b[1] + if i & 2 == 0 { 0.8 } else { -0.8 },
                b[2] + if i & 4 == 0 { 0.78 } else { -0.78 },
            ];
            let uv = calib.project_velo_to_image(c);
            for k in 0..2 {
                lo[k] = lo[k].min(uv[k]);
                hi[k] = hi[k].max(uv[k]);
            }
        }
        assert!(close(&o.bbox.map(|v| v as f32), &[lo[0], lo[1], hi[0], hi[1]], 3.0), "{:?} vs {lo:?} {hi:?}", o.bbox);
        assert!(o.bbox[0] < 604.0 && o.bbox[2] > 604.0 && o.bbox[1] > 180.0 && o.bbox[3] < 375.0, "{:?}", o.bbox);
    }

    #[test]
    fn rotation_y_and_alpha_conventions() {
        let calib = Calib::typical();
        let conv = |x: f32, y: f32, yaw: f32| {
            let d = Detection { class: 1, score: 0.5, lidar_box: [x, y, -1.0, 0.8, 0.6, 1.73, yaw] };
            to_kitti_object(&d, &calib, &names())
        };
        let o = conv(10.0, 0.0, FRAC_PI_2).unwrap(); // facing lidar +y (left): ry = -pi
        assert_eq!(o.class, "Pedestrian");
        assert!((o.rotation_y + PI).abs() < 1e-6 && o.rotation_y < PI);
        assert!((conv(10.0, 0.0, -FRAC_PI_2).unwrap().rotation_y).abs() < 1e-6);
        assert!((conv(10.0, 0.0, PI).unwrap().rotation_y - FRAC_PI_2).abs() < 1e-6);
        // atan(1/2) to the left, heading forward: alpha = atan(1/2) - pi/2.
        let o = conv(10.0, 5.0, 0.0).unwrap();
        assert!((o.alpha - (0.5f32.atan() - FRAC_PI_2)).abs() < 1e-6, "{}", o.alpha);
        // Wrapping: alpha = -atan2(-y, x) + ry folded into [-pi, pi).
        let o = conv(10.0, -5.0, -3.0).unwrap();
        let want = wrap_angle(-(5f32.atan2(10.0)) + (3.0 - FRAC_PI_2));
        assert!((o.alpha - want).abs() < 1e-6 && (-PI..PI).contains(&o.alpha));
        // Behind the camera, and out of the image to the side: no object.
        assert!(conv(-5.0, 0.0, 0.0).is_none());
        assert!(conv(5.0, 30.0, 0.0).is_none());
        assert_eq!(wrap_angle(PI), -PI);
        let w = wrap_angle(3.0 * PI);
        assert!((w.abs() - PI).abs() < 1e-5 && (-PI..PI).contains(&w));
        assert!((wrap_angle(-2.5 * PI) + FRAC_PI_2).abs() < 1e-5);
    }

    /// Not a unit test: the whole chain on the bundled small model with a synthetic frame
    /// (ground plane + a car-sized cluster). Weights are random, so only "no panic, sane types".
    /// `cargo test --release --lib e2e_small_model -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn e2e_small_model_synthetic_frame() {
        use crate::pointpillars::{voxelize::voxelize, SplitMix64};
        use std::time::Instant;
        let mut rng = SplitMix64::new(7);
        let mut pts: Vec<[f32; 4]> = (0..110_000)
            .map(|_| [rng.unit() * 80.0 - 5.0, rng.unit() * 90.0 - 45.0, -1.7 + 0.02 * rng.unit(), rng.unit() * 0.5])
            .collect();
        for _ in 0..10_000 {
            // Surface of a 3.9 x 1.6 x 1.5 box centred at (15, 3).
            let (u, v, w) = (rng.unit() - 0.5, rng.unit() - 0.5, rng.unit());
            let face = rng.below(3);
            let (x, y) = match face {
                0 => (15.0 + u * 3.9, 3.0 + if v < 0.0 { -0.8 } else { 0.8 }),
                1 => (15.0 + if u < 0.0 { -1.95 } else { 1.95 }, 3.0 + v * 1.6),
                _ => (15.0 + u * 3.9, 3.0 + v * 1.6),
            };
            let z = if face == 2 { -0.2 } else { -1.7 + 1.5 * w };
            pts.push([x, y, z, 0.6]);
        }
        let calib = Calib::typical();
        for name in ["pointpillars_small.onnx", "pointpillars_kitti.onnx"] {
            let model = crate::model::Model::load(&crate::cli::bundled_model(name)).unwrap();
            let resolved = crate::pointpillars::config::resolve(&model.graph, &model.file.path, None, None).unwrap();
            let cfg = resolved.cfg.clone();
            for c in [None, Some(&calib)] {
                let t0 = Instant::now();
                let p = voxelize(&pts, &cfg, c).unwrap();
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                println!(
                    "{name} fov={}: {} points, {} in range, {} pillars, {} dropped (full), {} pillars over max; {ms:.2} ms",
                    c.is_some(),
                    pts.len(),
                    p.points_in_range,
                    p.count,
                    p.points_dropped_full,
                    p.pillars_dropped
                );
            }
            if name != "pointpillars_small.onnx" {
                continue;
            }
            let p = voxelize(&pts, &cfg, Some(&calib)).unwrap();
            let exec = crate::exec::cpu::CpuExecutor::new(&model.graph, 0).unwrap();
            let t0 = Instant::now();
            let out = exec.run(&p.to_inputs(&resolved.io).unwrap()).unwrap();
            let net = t0.elapsed().as_secs_f64() * 1e3;
            let t0 = Instant::now();
            let dets = decode_detections(&out, &cfg).unwrap();
            let post = t0.elapsed().as_secs_f64() * 1e3;
            let objs = to_kitti_objects(&dets, &calib, &cfg.class_names);
            println!(
                "network {net:.1} ms, decode+nms {post:.2} ms: {} detections, {} KITTI objects",
                dets.len(),
                objs.len()
            );
            for o in objs.iter().take(3) {
                println!("  {}", crate::kitti::label::format_object(o));
            }
            assert!(dets.len() <= cfg.nms_post_max);
            assert!(dets.iter().all(|d| d.lidar_box.iter().all(|v| v.is_finite()) && d.class < 3));
            assert!(dets.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }

    /// The decode's shortcut never drops an anchor that passes the threshold: below the floor,
    /// the sigmoid is below the threshold for every f32 near it.
    #[test]
    fn logit_floor_is_below_every_passing_logit() {
        for t in [1e-4f32, 0.05, 0.1, 0.3, 0.5, 0.9, 0.999] {
            let floor = logit_floor(t);
            let l = ((t / (1.0 - t)) as f64).ln() as f32;
            let mut below = 0;
            for i in -20_000..20_000 {
                let x = l + i as f32 * 5e-7;
                if (x as f64) < floor {
                    assert!(sigmoid(x) < t, "threshold {t}: logit {x} below the floor passes");
                    below += 1;
                }
            }
            assert!(below > 0, "threshold {t}: the floor skipped nothing");
        }
        assert_eq!(logit_floor(0.0), f64::NEG_INFINITY);
        assert_eq!(logit_floor(1.0), f64::NEG_INFINITY);
    }
}
