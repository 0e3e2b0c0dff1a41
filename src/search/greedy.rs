//! Choosing which layers fall back to floating point.
//!
//! - Greedy forward selection over the K most sensitive layers: start from all-INT8; each step
//!   moves to floating point the candidate whose move gives the best mAP; every step is a
//!   candidate plan; stop after K layers or once within the tolerance of FP32.
//! - Baseline "prefix" (Neural Compressor's order): the top-1, top-2, ... layers by sensitivity.
//! - Baseline "bisect" (Polygraphy `debug precision`, forward direction): binary search over graph
//!   order for the shortest run of leading layers in floating point that is within tolerance.

use serde::Serialize;

use super::evaluate::{Evaluator, PlanResult};
use crate::error::{Error, Result};
use crate::graph::layers::Layer;
use crate::quant::plan::{int8_mac_fraction, weight_bytes, Calibration, Precision, PrecisionPlan};

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// Layers in floating point, in the order they were chosen.
    pub fp_layers: Vec<String>,
    pub map: f64,
    /// FP32 mAP minus this candidate's.
    pub drop: f64,
    pub int8_mac_fraction: f64,
    pub weight_bytes: u64,
    pub plan: PrecisionPlan,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub candidates: Vec<Candidate>,
    /// Plans scored to get there.
    pub evaluations: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchReport {
    pub fp32_map: f64,
    pub int8_map: f64,
    pub fp32_weight_bytes: u64,
    pub fallback: Precision,
    pub top_k: usize,
    pub tolerance: Option<f64>,
    /// The greedy path: step i has i + 1 floating-point layers.
    pub candidates: Vec<Candidate>,
    pub greedy_evaluations: usize,
    pub prefix: Baseline,
    /// Every bisection probe in order; the last is its answer.
    pub bisect: Baseline,
    /// The smallest greedy candidate within the tolerance (1 mAP when none was given); full INT8
    /// (no layer in floating point) when it is within already.
    pub best: Option<Candidate>,
}

pub struct SearchConfig {
    pub top_k: usize,
    pub tolerance: Option<f64>,
    pub fallback: Precision,
}

fn candidate(fp: &[String], r: &PlanResult, fp32: f64, plan: PrecisionPlan, layers: &[Layer]) -> Candidate {
    Candidate {
        fp_layers: fp.to_vec(),
        map: r.map,
        drop: fp32 - r.map,
        int8_mac_fraction: int8_mac_fraction(&plan, layers),
        weight_bytes: weight_bytes(&plan, layers),
        plan,
    }
}

/// Scores plans; `Ok(None)` when another shard's results are still missing.
fn score(ev: &Evaluator, plans: &[PrecisionPlan], what: &str) -> Result<Option<Vec<PlanResult>>> {
    Ok(ev.evaluate(plans, what)?.into_iter().collect())
}

/// Runs the search. `ranking` is the sensitivity ranking (most sensitive first).
pub fn search(
    ev: &Evaluator,
    calib: &Calibration,
    ranking: &[String],
    cfg: &SearchConfig,
) -> Result<Option<SearchReport>> {
    let layers = ev.layers;
    let fb = cfg.fallback;
    if !fb.is_float() {
        return Err(Error::Other("--fallback must be fp16 or fp32".into()));
    }
    let plan_for =
        |fp: &[String]| PrecisionPlan::int8_except(fp.iter().map(String::as_str), fb).with_calibration(calib);
    let refs = [PrecisionPlan::uniform(Precision::Fp32), plan_for(&[])];
    let Some(r) = score(ev, &refs, "references")? else { return Ok(None) };
    let (fp32, int8) = (r[0].map, r[1].map);
    let k = cfg.top_k.min(ranking.len());
    let pool: Vec<String> = ranking[..k].to_vec();
    let within = |m: f64| cfg.tolerance.is_some_and(|t| m >= fp32 - t);

    // Greedy forward selection.
    let mut chosen: Vec<String> = Vec::new();
    let mut path = Vec::new();
    let mut greedy_evals = 0;
    let mut current = int8;
    while chosen.len() < k && !within(current) {
        let rest: Vec<&String> = pool.iter().filter(|l| !chosen.contains(l)).collect();
        let trial: Vec<Vec<String>> = rest
            .iter()
            .map(|l| {
                let mut s = chosen.clone();
                s.push((*l).clone());
                s
            })
            .collect();
        let plans: Vec<PrecisionPlan> = trial.iter().map(|s| plan_for(s)).collect();
        let what = format!("greedy {}", chosen.len() + 1);
        let Some(res) = score(ev, &plans, &what)? else { return Ok(None) };
        greedy_evals += plans.len();
        // Best mAP; ties go to the more sensitive layer (earlier in `rest`).
        let best = (0..res.len()).fold(0, |b, i| if res[i].map > res[b].map { i } else { b });
        chosen = trial[best].clone();
        current = res[best].map;
        path.push(candidate(&chosen, &res[best], fp32, plans[best].clone(), layers));
    }

    // Baseline: sorted prefix.
    let prefixes: Vec<Vec<String>> = (1..=k).map(|n| pool[..n].to_vec()).collect();
    let plans: Vec<PrecisionPlan> = prefixes.iter().map(|s| plan_for(s)).collect();
    let Some(res) = score(ev, &plans, "prefix")? else { return Ok(None) };
    let prefix = Baseline {
        candidates: prefixes.iter().zip(&res).zip(plans).map(|((s, r), p)| candidate(s, r, fp32, p, layers)).collect(),
        evaluations: res.len(),
    };

    // Baseline: bisection over graph order (leading layers in floating point).
    let tol = cfg.tolerance.unwrap_or(1.0);
    let order: Vec<String> = layers.iter().map(|l| l.name.clone()).collect();
    let (mut lo, mut hi) = (0usize, order.len()); // invariant: hi passes (all-FP is FP32), lo unknown
    let mut steps = Vec::new();
    let mut bisect_evals = 0;
    if int8 >= fp32 - tol {
        hi = 0;
    } else {
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            let fp = order[..mid].to_vec();
            let plan = plan_for(&fp);
            let Some(res) = score(ev, std::slice::from_ref(&plan), &format!("bisect {mid}"))? else {
                return Ok(None);
            };
            bisect_evals += 1;
            let c = candidate(&fp, &res[0], fp32, plan, layers);
            if c.map >= fp32 - tol {
                hi = mid;
            } else {
                lo = mid;
            }
            steps.push(c);
        }
    }
    // The answer goes last.
    let final_fp = order[..hi].to_vec();
    if let Some(i) = steps.iter().position(|c| c.fp_layers == final_fp) {
        let answer = steps.remove(i);
        steps.push(answer);
    } else {
        let plan = plan_for(&final_fp);
        let Some(res) = score(ev, std::slice::from_ref(&plan), "bisect")? else { return Ok(None) };
        bisect_evals += 1;
        steps.push(candidate(&final_fp, &res[0], fp32, plan, layers));
    }
    let bisect = Baseline { candidates: steps, evaluations: bisect_evals };

    // Full INT8 already within the tolerance: it is the smallest candidate (no layer in FP).
    let best = if int8 >= fp32 - tol {
        Some(candidate(&[], &r[1], fp32, plan_for(&[]), layers))
    } else {
        path.iter().find(|c| c.map >= fp32 - tol).cloned()
    };
    let fp32_plan = PrecisionPlan::uniform(Precision::Fp32);
    Ok(Some(SearchReport {
        fp32_map: fp32,
        int8_map: int8,
        fp32_weight_bytes: weight_bytes(&fp32_plan, layers),
        fallback: fb,
        top_k: k,
        tolerance: cfg.tolerance,
        candidates: path,
        greedy_evaluations: greedy_evals,
        prefix,
        bisect,
        best,
    }))
}
