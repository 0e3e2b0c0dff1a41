//! Per-layer sensitivity: the mAP with only one layer in INT8, its drop from FP32, the ranking,
//! and two cheap proxies (head-output SQNR, MSE at the layer's output) with their Spearman
//! correlation to the AP ranking.

use serde::Serialize;

use super::evaluate::{Evaluator, PlanResult};
use super::spearman;
use crate::error::Result;
use crate::quant::plan::{Calibration, Precision, PrecisionPlan};

#[derive(Debug, Clone, Serialize)]
pub struct LayerSensitivity {
    pub name: String,
    /// Position in graph order.
    pub index: usize,
    /// mAP with only this layer in INT8.
    pub map: f64,
    /// FP32 mAP minus `map` (positive: the layer loses AP in INT8).
    pub drop: f64,
    /// 1 = most sensitive.
    pub rank: usize,
    /// Proxies: SQNR of the three head outputs (dB) and the MSE (absolute, and relative to the
    /// FP32 signal power) at the layer's own output.
    pub head_sqnr_db: f64,
    pub layer_mse: Option<f64>,
    pub layer_rel_mse: Option<f64>,
    pub flops: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SensitivityReport {
    pub fp32_map: f64,
    /// Every layer in INT8 with the same calibration.
    pub int8_map: f64,
    pub calibration: String,
    pub frames: usize,
    /// In graph order.
    pub layers: Vec<LayerSensitivity>,
    /// Layer names, most sensitive first.
    pub ranking: Vec<String>,
    /// Spearman correlation of each proxy's ranking with the AP-drop ranking.
    pub spearman_head_sqnr: Option<f64>,
    pub spearman_layer_rel_mse: Option<f64>,
}

/// The plans of a sensitivity sweep: FP32, full INT8, then one per layer (only it in INT8).
pub fn sensitivity_plans(ev: &Evaluator, calib: &Calibration) -> Vec<PrecisionPlan> {
    let mut plans =
        vec![PrecisionPlan::uniform(Precision::Fp32), PrecisionPlan::uniform(Precision::Int8).with_calibration(calib)];
    plans.extend(ev.layers.iter().map(|l| PrecisionPlan::only_int8([l.name.as_str()]).with_calibration(calib)));
    plans
}

/// Runs (or reads from the cache) the sweep; `None` while other shards' chunks are missing.
pub fn sensitivity_sweep(ev: &Evaluator, calib: &Calibration) -> Result<Option<SensitivityReport>> {
    let plans = sensitivity_plans(ev, calib);
    let results = ev.evaluate(&plans, "sensitivity")?;
    let Some(results) = results.into_iter().collect::<Option<Vec<PlanResult>>>() else {
        return Ok(None);
    };
    let fp32 = results[0].map;
    let mut layers: Vec<LayerSensitivity> = ev
        .layers
        .iter()
        .zip(&results[2..])
        .map(|(l, r)| {
            let p = &r.proxy;
            LayerSensitivity {
                name: l.name.clone(),
                index: l.index,
                map: r.map,
                drop: fp32 - r.map,
                rank: 0,
                head_sqnr_db: p.head_sqnr_db(),
                layer_mse: p.layer_mse(),
                layer_rel_mse: (p.layer_signal > 0.0).then(|| p.layer_noise / p.layer_signal),
                flops: l.flops,
            }
        })
        .collect();
    let ranking = rank_by_drop(&layers);
    for (r, &i) in ranking.iter().enumerate() {
        layers[i].rank = r + 1;
    }
    let drops: Vec<f64> = layers.iter().map(|l| l.drop).collect();
    let neg_sqnr: Vec<f64> = layers.iter().map(|l| -l.head_sqnr_db).collect();
    let rel_mse: Option<Vec<f64>> = layers.iter().map(|l| l.layer_rel_mse).collect();
    Ok(Some(SensitivityReport {
        fp32_map: fp32,
        int8_map: results[1].map,
        calibration: calib.label(),
        frames: ev.set.ids.len(),
        ranking: ranking.iter().map(|&i| layers[i].name.clone()).collect(),
        spearman_head_sqnr: spearman(&drops, &neg_sqnr),
        spearman_layer_rel_mse: rel_mse.and_then(|m| spearman(&drops, &m)),
        layers,
    }))
}

/// Indices of `layers` by decreasing drop; ties go to the earlier layer.
pub fn rank_by_drop(layers: &[LayerSensitivity]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..layers.len()).collect();
    idx.sort_by(|&a, &b| layers[b].drop.total_cmp(&layers[a].drop).then(a.cmp(&b)));
    idx
}
