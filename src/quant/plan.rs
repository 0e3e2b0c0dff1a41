//! PrecisionPlan: which precision every quantizable layer runs in, and the calibration (activation
//! scales) its INT8 layers use. Layers are named by ONNX node name (DESIGN.md).
//!
//! JSON form (`default` is required, the rest optional):
//!
//! ```json
//! {"default": "int8",
//!  "layers": {"/pfn/linear/MatMul": "fp16", "/head/conv_cls/Conv": "fp32"},
//!  "calibration": {"method": "entropy", "frames": 16, "seed": 0, "model_hash": "…",
//!                  "activations": {"/pfn/linear/MatMul": {"tensor": "voxels", "amax": 41.2}}}}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::layers::Layer;

pub use crate::precision::{LayerPrecision, Precision};

/// The per-tensor activation threshold of one layer's input (scale = amax / 127).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationScale {
    /// The layer's activation input edge.
    pub tensor: String,
    pub amax: f32,
}

impl ActivationScale {
    pub fn scale(&self) -> f32 {
        self.amax / 127.0
    }
}

/// Why an activation threshold cannot be used, if it cannot: it must be finite and positive,
/// and its scale `amax / 127` a normal float32 (a subnormal or zero scale makes QuantizeLinear
/// divide by almost nothing: every value saturates, and TensorRT rejects it).
pub fn amax_problem(amax: f32) -> Option<String> {
    if !amax.is_finite() || amax <= 0.0 {
        Some(format!("amax {amax} must be a positive finite number"))
    } else if (amax / 127.0) < f32::MIN_POSITIVE {
        Some(format!("amax {amax:e} gives scale {:e}, below the smallest normal float32", amax / 127.0))
    } else {
        None
    }
}

/// Where a plan's activation scales came from, and the scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Calibrator: max, percentile:P, entropy or mse.
    pub method: String,
    /// Number of calibration frames.
    pub frames: usize,
    /// Seed of the frame draw (None: the first frames of the split).
    #[serde(default)]
    pub seed: Option<u64>,
    /// SHA-256 of the ONNX file the scales were computed on.
    #[serde(default)]
    pub model_hash: String,
    /// Layer name -> threshold of its activation input.
    pub activations: BTreeMap<String, ActivationScale>,
    /// Every scale is a power of two: the activation thresholds here are `127 * 2^k`, and INT8
    /// layers round their per-channel weight scales up to a power of two too
    /// (`Calibration::with_pow2_scales`, `pillarq calibrate --pow2-scales`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pow2_scales: bool,
    /// Threshold of each tensor the layers' chains write, by ONNX edge (see
    /// `quant::calib::cache_tensors`): what TensorRT calibration caches need besides the inputs.
    /// pillarq's own INT8 simulation does not use them. Empty in calibrations before 0.1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, f32>,
    /// The PTQ recipe the thresholds were made under (`quant::recipe`; empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recipe: String,
    /// What the recipe's refinement steps changed in each INT8 layer besides its threshold
    /// (`quant::refine`), by layer name. Empty without those steps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, LayerRefinement>,
}

/// The recipe's adjustments of one INT8 layer (used only when the layer runs in INT8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerRefinement {
    /// Input equalization: the activation is multiplied by `input_mul[c]` per input channel
    /// before it is quantized, and the weight's input channel `c` divided by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_mul: Vec<f32>,
    /// Bias correction: the layer's float32 bias (BN folded), per output channel, with the mean
    /// error INT8 adds over the calibration frames taken out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bias: Vec<f32>,
    /// Weight rounding: the layer's INT8 weight levels, in the layout of its (BN-folded,
    /// equalized) float weight, as base64 of the int8 bytes. The per-channel scales stay the
    /// symmetric max of that weight.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub weights: String,
}

impl LayerRefinement {
    /// Sets what this refinement changes in an INT8 layer's `lp`.
    pub fn apply(&self, lp: &mut LayerPrecision) -> std::result::Result<(), String> {
        lp.input_mul = (!self.input_mul.is_empty()).then(|| self.input_mul.as_slice().into());
        lp.bias = (!self.bias.is_empty()).then(|| self.bias.as_slice().into());
        lp.weight_levels = self.weight_levels()?.map(Into::into);
        Ok(())
    }

    /// The weight levels of `weights`, if any.
    pub fn weight_levels(&self) -> std::result::Result<Option<Vec<i8>>, String> {
        use base64::Engine;
        if self.weights.is_empty() {
            return Ok(None);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.weights.as_bytes())
            .map_err(|e| format!("weights: not base64 ({e})"))?;
        Ok(Some(bytes.into_iter().map(|b| b as i8).collect()))
    }

    pub fn set_weight_levels(&mut self, levels: &[i8]) {
        use base64::Engine;
        let bytes: Vec<u8> = levels.iter().map(|&l| l as u8).collect();
        self.weights = base64::engine::general_purpose::STANDARD.encode(bytes);
    }
}

impl LayerRefinement {
    fn problem(&self) -> Option<String> {
        if let Some((c, m)) =
            self.input_mul.iter().enumerate().find(|(_, m)| !(m.is_finite() && **m >= f32::MIN_POSITIVE))
        {
            return Some(format!("input_mul[{c}] = {m} must be a positive normal float32"));
        }
        if let Some((c, b)) = self.bias.iter().enumerate().find(|(_, b)| !b.is_finite()) {
            return Some(format!("bias[{c}] = {b} must be finite"));
        }
        self.weight_levels().err()
    }
}

impl Calibration {
    /// The calibrator, with the recipe and " pow2" for power-of-two scales (for reports).
    pub fn label(&self) -> String {
        let mut s = self.method.clone();
        if !self.recipe.is_empty() {
            s.push_str(&format!(" {}", self.recipe));
        }
        if self.pow2_scales {
            s.push_str(" pow2");
        }
        s
    }

    /// Checks every activation threshold (see [`amax_problem`]); the message names the layer.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (layer, a) in &self.activations {
            if let Some(p) = amax_problem(a.amax) {
                return Err(format!("calibration.activations['{layer}']: {p}"));
            }
        }
        for (tensor, a) in &self.outputs {
            if let Some(p) = amax_problem(*a) {
                return Err(format!("calibration.outputs['{tensor}']: {p}"));
            }
        }
        for (layer, r) in &self.layers {
            if let Some(p) = r.problem() {
                return Err(format!("calibration.layers['{layer}']: {p}"));
            }
        }
        Ok(())
    }

    /// Whether the recipe fitted something to the exact weight scales (rounded weights, a
    /// corrected bias): power-of-two scales made afterwards would not match it.
    pub fn has_scale_fitted_refinements(&self) -> bool {
        self.layers.values().any(|r| !r.weights.is_empty() || !r.bias.is_empty())
    }

    /// The same calibration with every activation scale rounded up to a power of two, and
    /// weight scales to follow (`crate::quant::calib::pow2_ceil`). Idempotent. Rounded weights
    /// and corrected biases fitted to other scales are dropped (calibrate with power-of-two
    /// scales to have them fitted to those); equalization stays.
    pub fn with_pow2_scales(mut self) -> Calibration {
        if !self.pow2_scales {
            for r in self.layers.values_mut() {
                r.weights.clear();
                r.bias.clear();
            }
            self.layers.retain(|_, r| *r != LayerRefinement::default());
        }
        for a in self.activations.values_mut() {
            a.amax = crate::quant::calib::pow2_amax(a.amax);
        }
        self.outputs.values_mut().for_each(|a| *a = crate::quant::calib::pow2_amax(*a));
        self.pow2_scales = true;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrecisionPlan {
    /// Precision of every layer not named in `layers`.
    pub default: Precision,
    /// Per-layer overrides, by ONNX node name.
    #[serde(default)]
    pub layers: BTreeMap<String, Precision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

impl PrecisionPlan {
    /// Every layer in `precision`.
    pub fn uniform(precision: Precision) -> PrecisionPlan {
        PrecisionPlan { default: precision, layers: BTreeMap::new(), calibration: None }
    }

    /// All INT8 except `float_layers`, which run in `fallback`.
    pub fn int8_except<'a>(float_layers: impl IntoIterator<Item = &'a str>, fallback: Precision) -> PrecisionPlan {
        PrecisionPlan {
            default: Precision::Int8,
            layers: float_layers.into_iter().map(|l| (l.to_string(), fallback)).collect(),
            calibration: None,
        }
    }

    /// Only `layers` in INT8, everything else FP32 (a sensitivity probe).
    pub fn only_int8<'a>(layers: impl IntoIterator<Item = &'a str>) -> PrecisionPlan {
        PrecisionPlan {
            default: Precision::Fp32,
            layers: layers.into_iter().map(|l| (l.to_string(), Precision::Int8)).collect(),
            calibration: None,
        }
    }

    pub fn with_calibration(mut self, c: &Calibration) -> PrecisionPlan {
        self.calibration = Some(c.clone());
        self
    }

    pub fn precision_of(&self, layer: &str) -> Precision {
        self.layers.get(layer).copied().unwrap_or(self.default)
    }

    /// Reads a plan from JSON; errors name the file, line and column.
    pub fn read(path: &Path) -> Result<PrecisionPlan> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        let plan = Self::parse(&text).map_err(|msg| Error::Plan { file: path.to_path_buf(), msg })?;
        if let Some(c) = &plan.calibration {
            c.validate().map_err(|msg| Error::Plan { file: path.to_path_buf(), msg })?;
        }
        Ok(plan)
    }

    pub fn parse(text: &str) -> std::result::Result<PrecisionPlan, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// The precisions in canonical form (the key of cached results): every layer's precision in
    /// graph order, plus the activation thresholds of its INT8 layers.
    pub fn canonical(&self, layers: &[Layer]) -> String {
        let mut s = String::new();
        if self.calibration.as_ref().is_some_and(|c| c.pow2_scales) {
            s.push_str("pow2;");
        }
        for l in layers {
            let p = self.precision_of(&l.name);
            s.push_str(&l.name);
            s.push('=');
            s.push_str(p.as_str());
            if p == Precision::Int8 {
                if let Some(a) = self.calibration.as_ref().and_then(|c| c.activations.get(&l.name)) {
                    s.push_str(&format!("@{:08x}", a.amax.to_bits()));
                }
                // A recipe's refinements change what the layer computes: part of the key (the
                // hash of their JSON, so plans without any keep their keys).
                if let Some(r) = self.calibration.as_ref().and_then(|c| c.layers.get(&l.name)) {
                    let json = serde_json::to_vec(r).unwrap_or_default();
                    s.push_str(&format!("+{}", &crate::files::sha256_hex(&json)[..16]));
                }
            }
            s.push(';');
        }
        s
    }

    /// Checks the plan against a model's layers: every named layer exists, every INT8 layer has
    /// a positive finite activation threshold. Returns the precision of each layer, in order.
    pub fn resolve(&self, layers: &[Layer]) -> std::result::Result<Vec<LayerPrecision>, String> {
        for name in self.layers.keys() {
            if !layers.iter().any(|l| &l.name == name) {
                let close: Vec<&str> = layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .filter(|n| n.contains(name.trim_start_matches('/').split('/').next().unwrap_or("")))
                    .take(5)
                    .collect();
                let hint = if close.is_empty() { String::new() } else { format!(" (did you mean one of {close:?}?)") };
                return Err(format!(
                    "layers: '{name}' is not a quantizable layer of this model{hint}; `pillarq inspect MODEL` lists them"
                ));
            }
        }
        let mut out = Vec::with_capacity(layers.len());
        for l in layers {
            let precision = self.precision_of(&l.name);
            let act_amax = if precision == Precision::Int8 {
                let cal = self.calibration.as_ref().ok_or_else(|| {
                    format!(
                        "layer '{}' is int8 but the plan has no calibration: run `pillarq calibrate` and \
                         pass --calib, or add a \"calibration\" object",
                        l.name
                    )
                })?;
                let a = cal.activations.get(&l.name).ok_or_else(|| {
                    format!("calibration.activations: no scale for int8 layer '{}' (method {})", l.name, cal.method)
                })?;
                if let Some(p) = amax_problem(a.amax) {
                    return Err(format!("calibration.activations['{}']: {p}", l.name));
                }
                Some(a.amax)
            } else {
                None
            };
            let pow2_weights = act_amax.is_some() && self.calibration.as_ref().is_some_and(|c| c.pow2_scales);
            let mut lp = LayerPrecision::plain(&l.name, precision, act_amax, pow2_weights);
            if let Some(r) = act_amax.and(self.calibration.as_ref()).and_then(|c| c.layers.get(&l.name)) {
                if let Some(p) = r.problem() {
                    return Err(format!("calibration.layers['{}']: {p}", l.name));
                }
                r.apply(&mut lp).map_err(|e| format!("calibration.layers['{}']: {e}", l.name))?;
            }
            out.push(lp);
        }
        Ok(out)
    }
}

/// Share of the quantizable layers' multiply-accumulates that run in INT8.
pub fn int8_mac_fraction(plan: &PrecisionPlan, layers: &[Layer]) -> f64 {
    let total: u64 = layers.iter().map(|l| l.flops).sum();
    let int8: u64 = layers.iter().filter(|l| plan.precision_of(&l.name) == Precision::Int8).map(|l| l.flops).sum();
    if total == 0 {
        0.0
    } else {
        int8 as f64 / total as f64
    }
}

/// Bytes of the layers' weights and biases under the plan (INT8: 1 byte per weight plus a f32
/// scale per output channel, bias f32; FP16: 2 bytes; FP32: 4 bytes).
pub fn weight_bytes(plan: &PrecisionPlan, layers: &[Layer]) -> u64 {
    layers
        .iter()
        .map(|l| {
            let p = l.params as u64;
            match plan.precision_of(&l.name) {
                Precision::Int8 => {
                    let bias = l.out_channels as u64;
                    (p - bias.min(p)) + 4 * bias + 4 * l.out_channels as u64
                }
                Precision::Fp16 => 2 * p,
                Precision::Fp32 => 4 * p,
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(name: &str, flops: u64) -> Layer {
        Layer {
            index: 0,
            name: name.into(),
            op: "Conv".into(),
            in_channels: 2,
            out_channels: 4,
            kernel: vec![3, 3],
            stride: vec![1, 1],
            fused: vec![],
            fused_nodes: vec![],
            params: 2 * 4 * 9 + 4,
            flops,
            input: format!("{name}_in"),
            weight: format!("{name}_w"),
            output: format!("{name}_out"),
        }
    }

    fn calib(names: &[&str]) -> Calibration {
        Calibration {
            method: "max".into(),
            frames: 1,
            seed: None,
            model_hash: String::new(),
            activations: names
                .iter()
                .map(|n| (n.to_string(), ActivationScale { tensor: format!("{n}_in"), amax: 2.0 }))
                .collect(),
            pow2_scales: false,
            outputs: Default::default(),
            recipe: String::new(),
            layers: Default::default(),
        }
    }

    #[test]
    fn resolve_checks_names_precisions_and_scales() {
        let layers = vec![layer("/a/Conv", 100), layer("/b/Conv", 300)];
        let p = PrecisionPlan::parse(r#"{"default": "int8", "layers": {"/b/Conv": "fp16"}}"#).unwrap();
        assert_eq!(p.precision_of("/a/Conv"), Precision::Int8);
        let e = p.resolve(&layers).unwrap_err();
        assert!(e.contains("'/a/Conv' is int8 but the plan has no calibration"), "{e}");
        let r = p.clone().with_calibration(&calib(&["/a/Conv"])).resolve(&layers).unwrap();
        assert_eq!(r[0].act_amax, Some(2.0));
        assert_eq!(r[1].precision, Precision::Fp16);
        assert!((int8_mac_fraction(&p, &layers) - 0.25).abs() < 1e-12);

        let e = PrecisionPlan::parse(r#"{"default": "int8", "layers": {"/b/Conv": "int4"}}"#).unwrap_err();
        assert!(e.contains("int4") && e.contains("line 1"), "{e}");
        let unknown = PrecisionPlan::parse(r#"{"default": "fp32", "layers": {"/c/Conv": "int8"}}"#).unwrap();
        let e = unknown.resolve(&layers).unwrap_err();
        assert!(e.contains("'/c/Conv' is not a quantizable layer"), "{e}");
        let mut c = calib(&["/a/Conv", "/b/Conv"]);
        c.activations.get_mut("/b/Conv").unwrap().amax = 0.0;
        let e = PrecisionPlan::uniform(Precision::Int8).with_calibration(&c).resolve(&layers).unwrap_err();
        assert!(e.contains("/b/Conv") && e.contains("must be a positive finite number"), "{e}");
        assert!(PrecisionPlan::parse(r#"{"default": "int8", "layer": {}}"#).unwrap_err().contains("unknown field"));
    }

    #[test]
    fn canonical_form_distinguishes_refinements() {
        let layers = vec![layer("a", 10), layer("b", 10)];
        let cal = calib(&["a", "b"]);
        let plain = PrecisionPlan::uniform(Precision::Int8).with_calibration(&cal);
        let mut refined_cal = cal.clone();
        refined_cal.layers.entry("b".into()).or_default().bias = vec![0.5];
        let refined = PrecisionPlan::uniform(Precision::Int8).with_calibration(&refined_cal);
        assert_ne!(plain.canonical(&layers), refined.canonical(&layers));
        // Only INT8 layers use them: with b in FP16 the plans compute the same.
        let mut a = plain.clone();
        a.layers.insert("b".into(), Precision::Fp16);
        let mut b = refined.clone();
        b.layers.insert("b".into(), Precision::Fp16);
        assert_eq!(a.canonical(&layers), b.canonical(&layers));
        // Plans without refinements keep their keys.
        assert!(!plain.canonical(&layers).contains('+'));
    }

    #[test]
    fn canonical_form_distinguishes_plans_and_scales() {
        let layers = vec![layer("/a/Conv", 100), layer("/b/Conv", 300)];
        let c = calib(&["/a/Conv", "/b/Conv"]);
        let a = PrecisionPlan::uniform(Precision::Int8).with_calibration(&c);
        let b = PrecisionPlan::int8_except(["/b/Conv"], Precision::Fp16).with_calibration(&c);
        assert_ne!(a.canonical(&layers), b.canonical(&layers));
        let mut c2 = c.clone();
        c2.activations.get_mut("/a/Conv").unwrap().amax = 2.5;
        assert_ne!(a.canonical(&layers), a.clone().with_calibration(&c2).canonical(&layers));
        // Explicit overrides equal to the default do not change the key.
        let mut d = a.clone();
        d.layers.insert("/a/Conv".into(), Precision::Int8);
        assert_eq!(a.canonical(&layers), d.canonical(&layers));
        assert_eq!(weight_bytes(&PrecisionPlan::uniform(Precision::Fp32), &layers), 2 * 4 * 76);
        // int8: 72 weights x 1 byte + 4 biases x 4 + 4 scales x 4
        assert_eq!(weight_bytes(&a, &layers), 2 * (72 + 16 + 16));
    }

    #[test]
    fn unusable_activation_thresholds_are_named() {
        assert_eq!(amax_problem(2.0), None);
        assert!(amax_problem(1e-45).unwrap().contains("smallest normal"));
        assert!(amax_problem(-1.0).unwrap().contains("positive finite"));
        assert!(amax_problem(f32::NAN).unwrap().contains("positive finite"));
        assert!(amax_problem(f32::INFINITY).unwrap().contains("positive finite"));
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("plan.json");
        std::fs::write(
            &p,
            r#"{"default": "int8", "calibration": {"method": "max", "frames": 1,
                "activations": {"/a/Conv": {"tensor": "x", "amax": 1e-45}}}}"#,
        )
        .unwrap();
        let e = PrecisionPlan::read(&p).unwrap_err().to_string();
        assert!(e.contains("plan.json") && e.contains("/a/Conv") && e.contains("smallest normal"), "{e}");
    }
}
