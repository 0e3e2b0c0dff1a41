//! The calibration-set sweep: for sizes N in {1, 2, 4, ..., Nmax} (and, optionally, the whole
//! calibration split), R seeded random draws of N frames, each calibrator: the full-INT8 mAP.
//! Tests the paper's claim that very small calibration sets avoid outliers.

use serde::Serialize;

use super::evaluate::Evaluator;
use crate::error::{Error, Result};
use crate::exec::NamedTensors;
use crate::graph::layers::Layer;
use crate::kitti::KittiDir;
use crate::pointpillars::detect::Detector;
use crate::pointpillars::SplitMix64;
use crate::progress::{Progress, Task};
use crate::quant::calib::CalibMethod;
use crate::quant::calibrate::{LayerHistograms, Observers};
use crate::quant::plan::{Calibration, Precision, PrecisionPlan};
use crate::quant::recipe::Recipe;
use crate::quant::refine::{FrameLoss, Refine, RefineReport, TaskLoss};

pub struct SweepConfig {
    pub methods: Vec<CalibMethod>,
    pub sizes: Vec<usize>,
    pub draws: usize,
    pub seed: u64,
    /// Also calibrate on every frame of the pool (one draw).
    pub all_frames: bool,
    /// The PTQ recipe of every calibration (its name joins the method's in the report).
    pub recipe: crate::quant::recipe::Recipe,
}

impl SweepConfig {
    fn label(&self, method: &CalibMethod) -> String {
        if self.recipe.is_none() {
            method.to_string()
        } else {
            format!("{method} {}", self.recipe)
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepCell {
    pub method: String,
    pub n: usize,
    /// mAP of each draw, in draw order.
    pub maps: Vec<f64>,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub fp32_map: f64,
    pub pool_frames: usize,
    pub eval_frames: usize,
    pub draws: usize,
    pub seed: u64,
    pub cells: Vec<SweepCell>,
    /// Per method: the best mean over N <= 8 (below the largest N) against the largest N's mean.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub method: String,
    pub best_small_n: usize,
    pub best_small_mean: f64,
    pub largest_n: usize,
    pub largest_mean: f64,
    /// True when the best small set beats the largest one.
    pub small_sets_better: bool,
}

/// Deterministic draw of `n` distinct indices below `len` (partial Fisher-Yates, splitmix64).
pub fn draw(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    let mut rng = SplitMix64::new(seed);
    let n = n.min(len);
    for i in 0..n {
        let j = i + (rng.next_u64() % (len - i) as u64) as usize;
        idx.swap(i, j);
    }
    idx.truncate(n);
    idx
}

/// The seed of draw `r` of size `n`.
pub fn draw_seed(seed: u64, n: usize, r: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add((n as u64) << 20).wrapping_add(r as u64)
}

/// Histograms of frames `ids` merged in order (the definition of a set's histogram);
/// `on_frame` runs after each frame (progress).
pub fn histograms_of(
    detector: &Detector,
    obs: &Observers,
    data: &KittiDir,
    ids: &[String],
    on_frame: &mut dyn FnMut(),
) -> Result<LayerHistograms> {
    let mut acc: Option<LayerHistograms> = None;
    for id in ids {
        let (inputs, _) = detector.frame_inputs(data, id)?;
        let h = obs.observe(detector.executor(), &inputs).map_err(|e| Error::Other(format!("frame {id}: {e}")))?;
        match &mut acc {
            Some(a) => a.merge(&h),
            None => acc = Some(h),
        }
        on_frame();
    }
    acc.ok_or_else(|| Error::Other("no calibration frames".into()))
}

/// The task refinement preserves: the detector's head maps (`Detector::head_reference`).
struct DetectorTask<'a>(&'a Detector);

impl TaskLoss for DetectorTask<'_> {
    fn reference<'s>(&'s self, fp32: &NamedTensors) -> Result<FrameLoss<'s>> {
        let r = self.0.head_reference(fp32)?;
        let d = self.0;
        Ok(Box::new(move |q| r.loss(d, q)))
    }
}

/// `cal` (made from `h`, the histograms of frames `ids` of `data`) refined by the recipe's
/// refinement steps on the same frames (`quant::refine`); unchanged, with an empty report, when
/// the recipe has none. Each pass is a task of `progress`.
#[allow(clippy::too_many_arguments)]
pub fn refine_calibration(
    detector: &Detector,
    layers: &[Layer],
    obs: &Observers,
    h: &LayerHistograms,
    data: &KittiDir,
    ids: &[String],
    method: &CalibMethod,
    recipe: Recipe,
    cal: Calibration,
    progress: &dyn Progress,
) -> Result<(Calibration, RefineReport)> {
    if !recipe.refines() {
        return Ok((cal, RefineReport::default()));
    }
    let bar: std::cell::RefCell<Option<(String, Box<dyn Task + '_>)>> = Default::default();
    let on_pass = |pass: &str, i: usize, n: usize| {
        let mut b = bar.borrow_mut();
        if b.as_ref().is_none_or(|(p, _)| p != pass) {
            b.take(); // the previous pass's task ends
            *b = Some((pass.to_string(), progress.start(pass, n as u64)));
        }
        if let Some((_, t)) = b.as_ref() {
            t.set_position(i as u64);
        }
    };
    let frame = |i: usize| -> Result<NamedTensors> {
        let id = &ids[i];
        detector.frame_inputs(data, id).map(|(inputs, _)| inputs).map_err(|e| Error::Other(format!("frame {id}: {e}")))
    };
    let task = DetectorTask(detector);
    let empty = detector.empty_scene_inputs()?;
    let refine = Refine {
        empty: Some(&empty),
        exec: detector.executor(),
        layers,
        observers: obs,
        histograms: h,
        method: *method,
        task: &task,
        frame: &frame,
        frames: ids.len(),
        progress: &on_pass,
    };
    let out = refine.run(cal, recipe)?;
    bar.borrow_mut().take();
    Ok(out)
}

pub fn calibration_sweep(
    ev: &Evaluator,
    calib_data: &KittiDir,
    pool: &[String],
    cfg: &SweepConfig,
    progress: &dyn Progress,
) -> Result<Option<SweepReport>> {
    let exec = ev.detector.executor();
    let obs = Observers::new(exec, ev.layers)?.with_recipe(exec, cfg.recipe, &ev.detector.empty_scene_inputs()?)?;
    let mut sizes: Vec<usize> = cfg.sizes.iter().copied().filter(|&n| n <= pool.len()).collect();
    if cfg.all_frames && !sizes.contains(&pool.len()) {
        sizes.push(pool.len());
    }
    // (method index, n, draw) -> plan index
    let mut plans = vec![PrecisionPlan::uniform(Precision::Fp32)];
    let mut cells_idx: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    let total_draws: usize = sizes.iter().map(|&n| if n == pool.len() { 1 } else { cfg.draws }).sum();
    let pb = progress.start("calibrate", total_draws as u64);
    let mut per_method: Vec<Vec<(usize, Vec<usize>)>> = vec![Vec::new(); cfg.methods.len()];
    for &n in &sizes {
        let draws = if n == pool.len() { 1 } else { cfg.draws };
        let mut idx_per_method: Vec<Vec<usize>> = vec![Vec::new(); cfg.methods.len()];
        for r in 0..draws {
            let ids: Vec<String> = if n == pool.len() {
                pool.to_vec()
            } else {
                draw(pool.len(), n, draw_seed(cfg.seed, n, r)).into_iter().map(|i| pool[i].clone()).collect()
            };
            let h = histograms_of(ev.detector, &obs, calib_data, &ids, &mut || {})?;
            for (m, method) in cfg.methods.iter().enumerate() {
                let seed = (n != pool.len()).then(|| draw_seed(cfg.seed, n, r));
                let c = h.calibration(method, seed, ev.model_hash);
                let (c, _) = refine_calibration(
                    ev.detector,
                    ev.layers,
                    &obs,
                    &h,
                    calib_data,
                    &ids,
                    method,
                    cfg.recipe,
                    c,
                    &crate::progress::Silent,
                )?;
                idx_per_method[m].push(plans.len());
                plans.push(PrecisionPlan::uniform(Precision::Int8).with_calibration(&c));
            }
            pb.inc(1);
        }
        for (m, v) in idx_per_method.into_iter().enumerate() {
            per_method[m].push((n, v));
        }
    }
    drop(pb);
    for (m, v) in per_method.into_iter().enumerate() {
        for (n, idx) in v {
            cells_idx.push((m, n, idx));
        }
    }
    let Some(results) = ev.evaluate(&plans, "sweep")?.into_iter().collect::<Option<Vec<_>>>() else {
        return Ok(None);
    };
    let cells: Vec<SweepCell> = cells_idx
        .iter()
        .map(|(m, n, idx)| {
            let maps: Vec<f64> = idx.iter().map(|&i| results[i].map).collect();
            let k = maps.len() as f64;
            let mean = maps.iter().sum::<f64>() / k;
            let var =
                if maps.len() > 1 { maps.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0) } else { 0.0 };
            SweepCell {
                method: cfg.label(&cfg.methods[*m]),
                n: *n,
                mean,
                std: var.sqrt(),
                min: maps.iter().copied().fold(f64::INFINITY, f64::min),
                max: maps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                maps,
            }
        })
        .collect();
    let findings = cfg
        .methods
        .iter()
        .filter_map(|method| {
            let name = cfg.label(method);
            let mine: Vec<&SweepCell> = cells.iter().filter(|c| c.method == name).collect();
            let largest = mine.iter().max_by_key(|c| c.n)?;
            let small = mine.iter().filter(|c| c.n <= 8 && c.n < largest.n).max_by(|a, b| a.mean.total_cmp(&b.mean))?;
            Some(Finding {
                method: name.clone(),
                best_small_n: small.n,
                best_small_mean: small.mean,
                largest_n: largest.n,
                largest_mean: largest.mean,
                small_sets_better: small.mean > largest.mean,
            })
        })
        .collect();
    Ok(Some(SweepReport {
        fp32_map: results[0].map,
        pool_frames: pool.len(),
        eval_frames: ev.set.ids.len(),
        draws: cfg.draws,
        seed: cfg.seed,
        cells,
        findings,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_distinct_deterministic_and_seeded() {
        let a = draw(100, 10, 7);
        assert_eq!(a, draw(100, 10, 7));
        assert_ne!(a, draw(100, 10, 8));
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert!(a.iter().all(|&i| i < 100));
        assert_eq!(draw(5, 9, 1).len(), 5);
    }
}
