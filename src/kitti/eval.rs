//! The KITTI object detection evaluation (2D, BEV and 3D AP; R11 and R40), with the semantics of
//! the official devkit as reimplemented in OpenPCDet's `kitti_object_eval_python`:
//! difficulty filters, ignored classes (Van for Car, Person_sitting for Pedestrian), DontCare
//! regions (2D metric only), too-small detections ignored, strict `IoU > threshold` matching,
//! 41-point recall sampling with monotone precision.

use serde::Serialize;

use std::path::Path;

use super::iou::{iou_2d, iou_3d, iou_bev, CamBox, Overlap};
use super::label::{read_labels, Object};
use super::KittiDir;
use crate::error::{Error, Result};

/// Classes evaluated, in report order, with their IoU thresholds (2D, BEV, 3D are equal).
pub const CLASSES: [&str; 3] = ["Car", "Pedestrian", "Cyclist"];
pub const MIN_OVERLAP: [f64; 3] = [0.7, 0.5, 0.5];
pub const DIFFICULTIES: [&str; 3] = ["easy", "moderate", "hard"];
const MIN_HEIGHT: [f64; 3] = [40.0, 25.0, 25.0];
const MAX_OCCLUSION: [i32; 3] = [0, 1, 2];
const MAX_TRUNCATION: [f64; 3] = [0.15, 0.3, 0.5];
const SAMPLE_POINTS: usize = 41;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Image2d,
    Bev,
    Box3d,
}

pub const METRICS: [Metric; 3] = [Metric::Box3d, Metric::Bev, Metric::Image2d];

impl Metric {
    pub fn key(self) -> &'static str {
        match self {
            Metric::Image2d => "2d",
            Metric::Bev => "bev",
            Metric::Box3d => "3d",
        }
    }
}

/// One labelled or detected object, as the evaluation needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalObject {
    pub class: String,
    pub truncated: f64,
    pub occluded: i32,
    /// Image box [left, top, right, bottom].
    pub bbox: [f64; 4],
    pub cam: CamBox,
    /// Detection score (ground truth: unused).
    pub score: f64,
}

impl From<&Object> for EvalObject {
    fn from(o: &Object) -> Self {
        let f = |v: [f32; 3]| v.map(f64::from);
        EvalObject {
            class: o.class.clone(),
            truncated: o.truncated,
            occluded: o.occluded,
            bbox: o.bbox,
            cam: CamBox { location: f(o.location), dims: f(o.dimensions), ry: o.rotation_y as f64 },
            score: o.score.unwrap_or(1.0) as f64,
        }
    }
}

/// Ground truth and detections of one frame.
#[derive(Debug, Clone, Default)]
pub struct FrameEval {
    pub gt: Vec<EvalObject>,
    pub dt: Vec<EvalObject>,
}

/// Role of an object for one (class, difficulty): counted, ignored (neither TP nor FP), or
/// not part of this evaluation at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Valid,
    Ignored,
    Excluded,
}

fn gt_roles(gt: &[EvalObject], class: &str, d: usize) -> (Vec<Role>, Vec<[f64; 4]>, usize) {
    let cls = class.to_lowercase();
    let mut roles = Vec::with_capacity(gt.len());
    let mut dontcare = Vec::new();
    let mut valid = 0;
    for g in gt {
        let name = g.class.to_lowercase();
        let height = g.bbox[3] - g.bbox[1];
        let same = name == cls;
        let neighbour = (cls == "pedestrian" && name == "person_sitting") || (cls == "car" && name == "van");
        let hard = g.occluded > MAX_OCCLUSION[d] || g.truncated > MAX_TRUNCATION[d] || height <= MIN_HEIGHT[d];
        let role = if same && !hard {
            valid += 1;
            Role::Valid
        } else if neighbour || (same && hard) {
            Role::Ignored
        } else {
            Role::Excluded
        };
        roles.push(role);
        if g.class == "DontCare" {
            dontcare.push(g.bbox);
        }
    }
    (roles, dontcare, valid)
}

fn dt_roles(dt: &[EvalObject], class: &str, d: usize) -> Vec<Role> {
    let cls = class.to_lowercase();
    dt.iter()
        .map(|o| {
            let height = (o.bbox[3] - o.bbox[1]).abs();
            if height < MIN_HEIGHT[d] {
                Role::Ignored
            } else if o.class.to_lowercase() == cls {
                Role::Valid
            } else {
                Role::Excluded
            }
        })
        .collect()
}

/// Overlaps `[dt][gt]` of one frame for one metric.
fn overlaps(f: &FrameEval, metric: Metric) -> Vec<Vec<f64>> {
    f.dt.iter()
        .map(|d| {
            f.gt.iter()
                .map(|g| match metric {
                    Metric::Image2d => iou_2d(d.bbox, g.bbox, Overlap::Union),
                    Metric::Bev | Metric::Box3d => {
                        // Quick reject on the BEV circumscribed circles.
                        let r = |b: &CamBox| 0.5 * (b.dims[1].hypot(b.dims[2]));
                        let dx = d.cam.location[0] - g.cam.location[0];
                        let dz = d.cam.location[2] - g.cam.location[2];
                        if dx.hypot(dz) > r(&d.cam) + r(&g.cam) {
                            0.0
                        } else if metric == Metric::Bev {
                            iou_bev(&d.cam, &g.cam, Overlap::Union)
                        } else {
                            iou_3d(&d.cam, &g.cam, Overlap::Union)
                        }
                    }
                })
                .collect()
        })
        .collect()
}

struct Prepared<'a> {
    frame: &'a FrameEval,
    ov: Vec<Vec<f64>>,
    gt: Vec<Role>,
    dt: Vec<Role>,
    dontcare: Vec<[f64; 4]>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

/// The devkit's matching for one frame. Without `thresh`, returns the scores of true positives
/// (used to pick the recall thresholds); with it, counts TP/FP/FN for detections >= thresh.
fn statistics(p: &Prepared, metric: Metric, min_overlap: f64, thresh: Option<f64>, tp_scores: &mut Vec<f64>) -> Counts {
    let dts = &p.frame.dt;
    let compute_fp = thresh.is_some();
    let below: Vec<bool> = dts.iter().map(|d| thresh.is_some_and(|t| d.score < t)).collect();
    let mut assigned = vec![false; dts.len()];
    let mut c = Counts::default();
    for (i, &gr) in p.gt.iter().enumerate() {
        if gr == Role::Excluded {
            continue;
        }
        let mut det: Option<usize> = None;
        let mut best_score = f64::NEG_INFINITY;
        let mut max_overlap = 0.0;
        let mut assigned_ignored = false;
        for j in 0..dts.len() {
            if p.dt[j] == Role::Excluded || assigned[j] || below[j] {
                continue;
            }
            let o = p.ov[j][i];
            if o <= min_overlap {
                continue;
            }
            if !compute_fp {
                if dts[j].score > best_score {
                    det = Some(j);
                    best_score = dts[j].score;
                }
            } else if (o > max_overlap || assigned_ignored) && p.dt[j] == Role::Valid {
                max_overlap = o;
                det = Some(j);
                assigned_ignored = false;
            } else if det.is_none() && p.dt[j] == Role::Ignored {
                det = Some(j);
                assigned_ignored = true;
            }
        }
        match det {
            None => {
                if gr == Role::Valid {
                    c.fn_ += 1;
                }
            }
            Some(j) if gr == Role::Ignored || p.dt[j] == Role::Ignored => assigned[j] = true,
            Some(j) => {
                c.tp += 1;
                tp_scores.push(dts[j].score);
                assigned[j] = true;
            }
        }
    }
    if compute_fp {
        c.fp = (0..dts.len()).filter(|&j| !(assigned[j] || p.dt[j] != Role::Valid || below[j])).count();
        if metric == Metric::Image2d {
            // Unmatched detections inside DontCare regions are not false positives.
            let mut stuff = 0;
            for dc in &p.dontcare {
                for j in 0..dts.len() {
                    if assigned[j] || p.dt[j] != Role::Valid || below[j] {
                        continue;
                    }
                    if iou_2d(dts[j].bbox, *dc, Overlap::First) > min_overlap {
                        assigned[j] = true;
                        stuff += 1;
                    }
                }
            }
            c.fp -= stuff;
        }
    }
    c
}

/// Score thresholds at (approximately) evenly spaced recall levels, as the devkit picks them.
fn recall_thresholds(mut scores: Vec<f64>, num_gt: usize) -> Vec<f64> {
    scores.sort_by(|a, b| b.total_cmp(a));
    let mut out = Vec::new();
    let mut current = 0.0;
    let n = scores.len();
    for (i, &s) in scores.iter().enumerate() {
        let l = (i + 1) as f64 / num_gt as f64;
        let r = if i + 1 < n { (i + 2) as f64 / num_gt as f64 } else { l };
        if (r - current) < (current - l) && i + 1 < n {
            continue;
        }
        out.push(s);
        current += 1.0 / (SAMPLE_POINTS as f64 - 1.0);
    }
    out
}

/// AP of one (metric, class, difficulty): (R40, R11) in percent, and the valid GT count.
fn average_precision(
    frames: &[FrameEval],
    ovs: &[Vec<Vec<f64>>],
    metric: Metric,
    class_idx: usize,
    d: usize,
) -> (f64, f64, usize) {
    let class = CLASSES[class_idx];
    let min_overlap = MIN_OVERLAP[class_idx];
    let mut total_valid = 0;
    let prepared: Vec<Prepared> = frames
        .iter()
        .zip(ovs)
        .map(|(f, ov)| {
            let (gt, dontcare, valid) = gt_roles(&f.gt, class, d);
            total_valid += valid;
            Prepared { frame: f, ov: ov.clone(), gt, dt: dt_roles(&f.dt, class, d), dontcare }
        })
        .collect();
    if total_valid == 0 {
        return (0.0, 0.0, 0);
    }
    let mut scores = Vec::new();
    for p in &prepared {
        statistics(p, metric, min_overlap, None, &mut scores);
    }
    let thresholds = recall_thresholds(scores, total_valid);
    let mut precision = vec![0.0f64; SAMPLE_POINTS];
    let mut sink = Vec::new();
    for (t, &th) in thresholds.iter().enumerate().take(SAMPLE_POINTS) {
        let mut c = Counts::default();
        for p in &prepared {
            let s = statistics(p, metric, min_overlap, Some(th), &mut sink);
            c.tp += s.tp;
            c.fp += s.fp;
            c.fn_ += s.fn_;
        }
        sink.clear();
        precision[t] = if c.tp + c.fp > 0 { c.tp as f64 / (c.tp + c.fp) as f64 } else { 0.0 };
    }
    // Monotone: precision at a recall level is the best at that level or beyond.
    for t in (0..SAMPLE_POINTS.saturating_sub(1)).rev() {
        precision[t] = precision[t].max(precision[t + 1]);
    }
    let r11 = (0..SAMPLE_POINTS).step_by(4).map(|i| precision[i]).sum::<f64>() / 11.0 * 100.0;
    let r40 = (1..SAMPLE_POINTS).map(|i| precision[i]).sum::<f64>() / 40.0 * 100.0;
    (r40, r11, total_valid)
}

/// The most R40 AP (percent) can reach with `num_gt` counted ground-truth objects: the devkit
/// samples precision once per true positive, up to 41 recall points, so with fewer than 41
/// objects even perfect predictions fill only `num_gt` of them (point 0 not summed):
/// `100 (num_gt - 1) / 40`, 0 without ground truth.
pub fn max_r40(num_gt: usize) -> f64 {
    100.0 * (num_gt.clamp(1, SAMPLE_POINTS) - 1) as f64 / (SAMPLE_POINTS - 1) as f64
}

/// A class and difficulty with too few counted ground-truth objects for R40 to reach 100.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FewGt {
    pub class: &'static str,
    pub difficulty: &'static str,
    pub num_gt: usize,
    /// [`max_r40`] of `num_gt`.
    pub max_r40: f64,
}

/// AP in percent: `ap[metric][class][difficulty]` for R40 and R11 (metric order `METRICS`).
#[derive(Debug, Clone, Serialize)]
pub struct ApTable {
    pub r40: [[[f64; 3]; 3]; 3],
    pub r11: [[[f64; 3]; 3]; 3],
    /// Valid (not ignored) ground-truth objects per class and difficulty.
    pub num_gt: [[usize; 3]; 3],
    pub frames: usize,
}

impl ApTable {
    /// The headline number: mean over the three classes of moderate 3D AP (R40).
    pub fn map(&self) -> f64 {
        (0..3).map(|c| self.r40[0][c][1]).sum::<f64>() / 3.0
    }

    /// The classes and difficulties with fewer than 41 counted ground-truth objects (see
    /// [`max_r40`]), in report order.
    pub fn few_gt(&self) -> Vec<FewGt> {
        let mut out = Vec::new();
        for (ci, class) in CLASSES.iter().enumerate() {
            for (di, difficulty) in DIFFICULTIES.iter().enumerate() {
                let n = self.num_gt[ci][di];
                if n < SAMPLE_POINTS {
                    out.push(FewGt { class, difficulty, num_gt: n, max_r40: max_r40(n) });
                }
            }
        }
        out
    }

    /// `{"map": .., "ap": {metric: {"R40"|"R11": {class: {easy, moderate, hard}}}}, "num_gt": ..,
    /// "frames": .., "few_gt": [{"class", "difficulty", "num_gt", "max_r40"}]}`; `few_gt` lists
    /// [`ApTable::few_gt`] (empty when every class and difficulty has 41 or more).
    pub fn to_json(&self) -> serde_json::Value {
        let mut ap = serde_json::Map::new();
        for (mi, m) in METRICS.iter().enumerate() {
            let mut per = serde_json::Map::new();
            for (key, table) in [("R40", &self.r40), ("R11", &self.r11)] {
                let mut classes = serde_json::Map::new();
                for (ci, c) in CLASSES.iter().enumerate() {
                    let mut diffs = serde_json::Map::new();
                    for (di, d) in DIFFICULTIES.iter().enumerate() {
                        diffs.insert((*d).into(), serde_json::json!(table[mi][ci][di]));
                    }
                    classes.insert((*c).into(), diffs.into());
                }
                per.insert(key.into(), classes.into());
            }
            ap.insert(m.key().into(), per.into());
        }
        let mut num_gt = serde_json::Map::new();
        for (ci, c) in CLASSES.iter().enumerate() {
            num_gt.insert((*c).into(), serde_json::json!({"easy": self.num_gt[ci][0], "moderate": self.num_gt[ci][1], "hard": self.num_gt[ci][2]}));
        }
        serde_json::json!({"map": self.map(), "ap": ap, "num_gt": num_gt, "frames": self.frames, "few_gt": self.few_gt()})
    }

    /// The table as text: one row per (metric, class), R40 and R11 easy/moderate/hard, then the
    /// mAP and, when some class and difficulty counts fewer than 41 ground-truth objects, a note
    /// with their counts and R40 ceilings.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{:<5} {:<11} {:>8} {:>8} {:>8}   {:>8} {:>8} {:>8}   {:>6}\n",
            "", "", "R40 easy", "moderate", "hard", "R11 easy", "moderate", "hard", "gt(m)"
        );
        for (mi, m) in METRICS.iter().enumerate() {
            for (ci, c) in CLASSES.iter().enumerate() {
                let a = self.r40[mi][ci];
                let b = self.r11[mi][ci];
                s += &format!(
                    "{:<5} {:<11} {:>8.2} {:>8.2} {:>8.2}   {:>8.2} {:>8.2} {:>8.2}   {:>6}\n",
                    m.key(),
                    c,
                    a[0],
                    a[1],
                    a[2],
                    b[0],
                    b[1],
                    b[2],
                    self.num_gt[ci][1]
                );
            }
        }
        s += &format!("mAP (3D R40 moderate, mean of 3 classes): {:.2}  over {} frames\n", self.map(), self.frames);
        let few = self.few_gt();
        if !few.is_empty() {
            s += "note: fewer than 41 counted ground-truth objects; R40 is then at most 100 (n - 1) / 40:\n";
            for class in CLASSES {
                let parts: Vec<String> = few
                    .iter()
                    .filter(|f| f.class == class)
                    .map(|f| format!("{} n = {} (R40 <= {:.2})", f.difficulty, f.num_gt, f.max_r40))
                    .collect();
                if !parts.is_empty() {
                    s += &format!("  {class:<11} {}\n", parts.join(", "));
                }
            }
        }
        s
    }
}

/// Reads the ground truth of `ids` from a KITTI directory and the detections from KITTI result
/// files `<preds>/<id>.txt` (16 fields with score), and evaluates them. A missing result file is
/// an error naming it (write an empty file for a frame without detections).
pub fn evaluate_result_files(data: &KittiDir, ids: &[String], preds: &Path) -> Result<ApTable> {
    let mut frames = Vec::with_capacity(ids.len());
    for id in ids {
        let gt = read_labels(data.label_path(id))?;
        let file = preds.join(format!("{id}.txt"));
        if !file.exists() {
            return Err(Error::kitti(&file, None, "no result file for this frame (an empty file means no detections)"));
        }
        let dt = read_labels(&file)?;
        if let Some(o) = dt.iter().find(|o| o.score.is_none()) {
            return Err(Error::kitti(&file, None, format!("the {} detection has no score (16th field)", o.class)));
        }
        frames.push(FrameEval {
            gt: gt.iter().map(EvalObject::from).collect(),
            dt: dt.iter().map(EvalObject::from).collect(),
        });
    }
    Ok(evaluate(&frames))
}

/// Evaluates detections against ground truth over a set of frames.
pub fn evaluate(frames: &[FrameEval]) -> ApTable {
    let mut t = ApTable { r40: [[[0.0; 3]; 3]; 3], r11: [[[0.0; 3]; 3]; 3], num_gt: [[0; 3]; 3], frames: frames.len() };
    for (mi, &m) in METRICS.iter().enumerate() {
        let ovs: Vec<Vec<Vec<f64>>> = frames.iter().map(|f| overlaps(f, m)).collect();
        for ci in 0..3 {
            for d in 0..3 {
                let (r40, r11, n) = average_precision(frames, &ovs, m, ci, d);
                t.r40[mi][ci][d] = r40;
                t.r11[mi][ci][d] = r11;
                t.num_gt[ci][d] = n;
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A car 20 m ahead, easy (tall 2D box, unoccluded, untruncated).
    fn car(x: f64, z: f64, score: f64) -> EvalObject {
        EvalObject {
            class: "Car".into(),
            truncated: 0.0,
            occluded: 0,
            bbox: [500.0, 150.0, 600.0, 230.0],
            cam: CamBox { location: [x, 1.6, z], dims: [1.5, 1.6, 3.9], ry: 0.0 },
            score,
        }
    }

    fn frame(gt: Vec<EvalObject>, dt: Vec<EvalObject>) -> FrameEval {
        FrameEval { gt, dt }
    }

    /// The devkit samples precision at one threshold per TP until 41 recall levels are reached,
    /// so exact AP values need at least 40 ground-truth objects: repeat a frame `n` times.
    fn many(n: usize, f: impl Fn(usize) -> FrameEval) -> Vec<FrameEval> {
        (0..n).map(f).collect()
    }

    #[test]
    fn perfect_predictions_give_100() {
        let frames = many(45, |i| frame(vec![car(i as f64 * 0.1, 20.0, 1.0)], vec![car(i as f64 * 0.1, 20.0, 0.9)]));
        let t = evaluate(&frames);
        for mi in 0..3 {
            for d in 0..3 {
                assert!((t.r40[mi][0][d] - 100.0).abs() < 1e-9, "metric {mi} diff {d}: {}", t.r40[mi][0][d]);
                assert!((t.r11[mi][0][d] - 100.0).abs() < 1e-9);
            }
        }
        assert_eq!(t.num_gt[0], [45, 45, 45]);
        // No pedestrians: AP 0 and no ground truth counted.
        assert_eq!(t.num_gt[1], [0, 0, 0]);
        assert!((t.map() - 100.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn few_objects_follow_the_devkit_sampling() {
        // 5 objects, all found: the devkit keeps one threshold per TP (5 of 41 sample points),
        // so R40 = 4/40 and R11 = 2/11 (points 0 and 4), not 100.
        let frames = many(5, |_| frame(vec![car(0.0, 20.0, 1.0)], vec![car(0.0, 20.0, 0.9)]));
        let t = evaluate(&frames);
        assert!((t.r40[0][0][1] - 10.0).abs() < 1e-9, "{}", t.r40[0][0][1]);
        assert!((t.r11[0][0][1] - 200.0 / 11.0).abs() < 1e-9, "{}", t.r11[0][0][1]);
    }

    #[test]
    fn shifted_box_below_threshold_is_missed_in_3d_but_found_in_2d() {
        // Shift 1.2 m along the 3.9 m length: BEV IoU = 2.7 / 5.1 = 0.529 < 0.7 -> FN + FP in 3D/BEV;
        // the 2D box is identical -> TP.
        let bev_iou = iou_bev(&car(0.0, 20.0, 1.0).cam, &car(1.2, 20.0, 0.9).cam, Overlap::Union);
        assert!((bev_iou - 2.7 / 5.1).abs() < 1e-9);
        let t = evaluate(&many(45, |_| frame(vec![car(0.0, 20.0, 1.0)], vec![car(1.2, 20.0, 0.9)])));
        assert_eq!(t.r40[0][0][1], 0.0);
        assert_eq!(t.r40[1][0][1], 0.0);
        assert!((t.r40[2][0][1] - 100.0).abs() < 1e-9);
    }

    #[test]
    fn half_found_gives_known_ap() {
        // 40 cars, the first 20 detected: one threshold per recall step of 1/40, 20 thresholds at
        // precision 1. R40 sums points 1..=19 -> 19/40; R11 points 0, 4, 8, 12, 16 -> 5/11.
        let frames =
            many(40, |i| frame(vec![car(0.0, 20.0, 1.0)], if i < 20 { vec![car(0.0, 20.0, 0.8)] } else { vec![] }));
        let t = evaluate(&frames);
        assert!((t.r40[0][0][1] - 47.5).abs() < 1e-9, "{}", t.r40[0][0][1]);
        assert!((t.r11[0][0][1] - 500.0 / 11.0).abs() < 1e-9, "{}", t.r11[0][0][1]);
    }

    #[test]
    fn false_positive_ranked_first_halves_precision() {
        // Each frame: a wrong detection with a higher score, then the right one: at every recall
        // level precision is 1/2 -> AP 50.
        let frames = many(45, |_| frame(vec![car(0.0, 20.0, 1.0)], vec![car(10.0, 40.0, 0.9), car(0.0, 20.0, 0.5)]));
        let t = evaluate(&frames);
        assert!((t.r40[0][0][1] - 50.0).abs() < 1e-9, "{}", t.r40[0][0][1]);
        assert!((t.r11[0][0][1] - 50.0).abs() < 1e-9, "{}", t.r11[0][0][1]);
    }

    #[test]
    fn ignored_ground_truth_and_small_detections_do_not_count() {
        // A Van matched by a Car detection: neither TP nor FP. A heavily occluded car is not
        // counted for moderate (occluded 2 > 1) but is for hard.
        let mut van = car(8.0, 25.0, 1.0);
        van.class = "Van".into();
        let mut occluded = car(-6.0, 30.0, 1.0);
        occluded.occluded = 2;
        let frames = many(45, |_| {
            frame(
                vec![car(0.0, 20.0, 1.0), van.clone(), occluded.clone()],
                vec![car(0.0, 20.0, 0.9), car(8.0, 25.0, 0.8), car(-6.0, 30.0, 0.7)],
            )
        });
        let t = evaluate(&frames);
        assert_eq!(t.num_gt[0], [45, 45, 90]);
        for d in 0..3 {
            assert!((t.r40[0][0][d] - 100.0).abs() < 1e-9, "difficulty {d}: {}", t.r40[0][0][d]);
        }
        // A detection whose 2D box is shorter than 25 px is ignored (not a false positive).
        let mut tiny = car(20.0, 60.0, 0.95);
        tiny.bbox = [100.0, 100.0, 110.0, 110.0];
        let t = evaluate(&many(45, |_| frame(vec![car(0.0, 20.0, 1.0)], vec![tiny.clone(), car(0.0, 20.0, 0.5)])));
        assert!((t.r40[0][0][1] - 100.0).abs() < 1e-9);
    }

    #[test]
    fn dontcare_absorbs_false_positives_in_2d_only() {
        let mut dc = car(0.0, 0.0, 0.0);
        dc.class = "DontCare".into();
        dc.bbox = [800.0, 100.0, 900.0, 200.0];
        let mut fp = car(15.0, 50.0, 0.9);
        fp.bbox = [810.0, 110.0, 890.0, 190.0];
        let frames = many(45, |_| frame(vec![car(0.0, 20.0, 1.0), dc.clone()], vec![fp.clone(), car(0.0, 20.0, 0.5)]));
        let t = evaluate(&frames);
        assert!((t.r40[2][0][1] - 100.0).abs() < 1e-9, "2D: {}", t.r40[2][0][1]);
        assert!((t.r40[0][0][1] - 50.0).abs() < 1e-9, "3D: {}", t.r40[0][0][1]);
    }

    #[test]
    fn score_ties_and_duplicates() {
        // Two detections on one car with equal scores: one TP, one FP at the same threshold;
        // precision 1/2 -> AP 50.
        let frames = many(45, |_| frame(vec![car(0.0, 20.0, 1.0)], vec![car(0.0, 20.0, 0.7), car(0.1, 20.0, 0.7)]));
        let t = evaluate(&frames);
        assert!((t.r40[0][0][1] - 50.0).abs() < 1e-9, "{}", t.r40[0][0][1]);
    }
    /// Label text of a Car `k` m-slots along x (well apart in 3D and in the image) with the given
    /// truncation, occlusion and 2D box top / bottom, as they appear in a label file.
    fn limit_car(k: usize, truncated: &str, occluded: i32, top: &str, bottom: &str, score: &str) -> String {
        let (left, right, x) = (50 + 130 * k, 150 + 130 * k, -20.0 + 5.0 * k as f64);
        let (bbox, dims_loc) =
            (format!("{left}.00 {top} {right}.00 {bottom}"), format!("1.50 1.60 3.90 {x:.2} 1.60 25.00"));
        format!("Car {truncated} {occluded} 0.00 {bbox} {dims_loc} 0.00{score}")
    }

    #[test]
    fn difficulty_limits_are_compared_in_f64_as_the_devkit_does() {
        // Ground truth exactly at each limit. Heights: 140.07 - 100.07 and 128.07 - 103.07 are
        // exactly 40 and 25 in f64 (the devkit's numpy) but 40.0000076 and 25.0000076 from f32;
        // truncation 0.15 and 0.30 are 0.1500000060 and 0.3000000119 in f32.
        let gt_cases: [(&str, &str, i32, &str, &str); 8] = [
            ("truncated 0.15", "0.15", 0, "150.00", "200.00"),
            ("truncated 0.30", "0.30", 0, "150.00", "200.00"),
            ("truncated 0.50", "0.50", 0, "150.00", "200.00"),
            ("occluded 0", "0.00", 0, "150.00", "200.00"),
            ("occluded 1", "0.00", 1, "150.00", "200.00"),
            ("occluded 2", "0.00", 2, "150.00", "200.00"),
            ("height 40 px", "0.00", 0, "100.07", "140.07"),
            ("height 25 px", "0.00", 0, "103.07", "128.07"),
        ];
        let parse = |lines: Vec<String>| -> Vec<EvalObject> {
            let objs = super::super::label::parse_labels(&lines.join("\n"), Path::new("limits.txt")).unwrap();
            objs.iter().map(EvalObject::from).collect()
        };
        let gt = parse(gt_cases.iter().enumerate().map(|(k, c)| limit_car(k, c.1, c.2, c.3, c.4, "")).collect());
        // Each object's role per difficulty (V counted, I ignored), as the devkit assigns them:
        // truncation <= limit, occlusion <= limit and height > limit are counted.
        let roles: Vec<String> = (0..3)
            .map(|d| gt_roles(&gt, "Car", d).0.iter().map(|r| if *r == Role::Valid { 'V' } else { 'I' }).collect())
            .collect();
        for (k, c) in gt_cases.iter().enumerate() {
            let r: String = roles.iter().map(|s| s.as_bytes()[k] as char).collect();
            eprintln!("{:<16} easy/moderate/hard: {r}", c.0);
        }

        // 45 frames: each object detected exactly, plus one false positive whose 2D box is
        // exactly 25 px high (128.12 - 103.12; 24.9999924 from f32): not ignored for moderate
        // and hard (`height < 25` is false), ignored for easy. All scores equal, so precision is
        // the same at every recall point: AP = counted / (counted + false positives).
        let mut dt_lines: Vec<String> =
            gt_cases.iter().enumerate().map(|(k, c)| limit_car(k, c.1, c.2, c.3, c.4, " 0.90")).collect();
        dt_lines.push(limit_car(8, "-1", -1, "103.12", "128.12", " 0.90"));
        let dt = parse(dt_lines);
        let t = evaluate(&many(45, |_| frame(gt.clone(), dt.clone())));
        for (m, metric) in METRICS.iter().enumerate() {
            let [r40, r11] = [t.r40[m][0], t.r11[m][0]];
            eprintln!(
                "{:<3} Car R40 easy/moderate/hard {:.4} {:.4} {:.4}, R11 {:.4} {:.4} {:.4}, counted gt {:?}",
                metric.key(),
                r40[0],
                r40[1],
                r40[2],
                r11[0],
                r11[1],
                r11[2],
                t.num_gt[0]
            );
        }
        assert_eq!(roles, ["VIIVIIII", "VVIVVIVI", "VVVVVVVI"]);
        assert_eq!(t.num_gt[0], [90, 225, 315]);
        let want = [100.0, 100.0 * 225.0 / 270.0, 100.0 * 315.0 / 360.0];
        for m in 0..3 {
            for (d, want) in want.iter().enumerate() {
                assert!((t.r40[m][0][d] - want).abs() < 1e-9, "metric {m} difficulty {d}: {}", t.r40[m][0][d]);
                assert!((t.r11[m][0][d] - want).abs() < 1e-9, "metric {m} difficulty {d}: {}", t.r11[m][0][d]);
            }
        }
    }

    #[test]
    fn fewer_than_41_ground_truth_objects_are_noted() {
        assert_eq!([0, 1, 2, 6, 40, 41, 500].map(max_r40), [0.0, 0.0, 2.5, 12.5, 97.5, 100.0, 100.0]);
        // Two frames, one car each, found exactly: R40 2.5 (the ceiling), R11 1/11 (point 0 only).
        let t = evaluate(&many(2, |i| frame(vec![car(i as f64, 20.0, 1.0)], vec![car(i as f64, 20.0, 0.9)])));
        assert!(
            (t.r40[0][0][1] - 2.5).abs() < 1e-9 && (t.r11[0][0][1] - 100.0 / 11.0).abs() < 1e-9,
            "{:?}",
            t.r40[0][0]
        );
        let few = t.few_gt();
        assert_eq!(few.len(), 9);
        assert_eq!(few[1], FewGt { class: "Car", difficulty: "moderate", num_gt: 2, max_r40: 2.5 });
        assert_eq!((few[3].class, few[3].num_gt, few[3].max_r40), ("Pedestrian", 0, 0.0));
        let text = t.render();
        eprintln!("{text}");
        assert!(
            text.contains("note: fewer than 41 counted ground-truth objects; R40 is then at most 100 (n - 1) / 40:\n")
        );
        assert!(
            text.contains(
                "\n  Car         easy n = 2 (R40 <= 2.50), moderate n = 2 (R40 <= 2.50), hard n = 2 (R40 <= 2.50)\n"
            ),
            "{text}"
        );
        assert!(text.contains("\n  Cyclist     easy n = 0 (R40 <= 0.00),"), "{text}");
        let j = t.to_json();
        assert_eq!(
            j["few_gt"][1],
            serde_json::json!({"class": "Car", "difficulty": "moderate", "num_gt": 2, "max_r40": 2.5})
        );
        assert_eq!(j["num_gt"]["Car"]["moderate"], 2);

        // 41 cars: Car is no longer listed; 40 cars: still listed, at 97.5 for perfect predictions.
        let t = evaluate(&many(41, |i| frame(vec![car(i as f64, 20.0, 1.0)], vec![car(i as f64, 20.0, 0.9)])));
        assert!(t.few_gt().iter().all(|f| f.class != "Car") && t.few_gt().len() == 6);
        assert!(!t.render().contains("\n  Car ") && t.render().contains("\n  Pedestrian  easy n = 0"));
        let t = evaluate(&many(40, |i| frame(vec![car(i as f64, 20.0, 1.0)], vec![car(i as f64, 20.0, 0.9)])));
        assert!((t.r40[0][0][2] - 97.5).abs() < 1e-9, "{}", t.r40[0][0][2]);
        assert_eq!(t.few_gt()[2], FewGt { class: "Car", difficulty: "hard", num_gt: 40, max_r40: 97.5 });
    }
}
