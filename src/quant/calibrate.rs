//! Calibration: FP32 runs with observers on the activation tensors of every quantizable layer,
//! histograms merged across frames, a calibrator turning each histogram into a threshold.

use std::collections::BTreeMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::calib::{cache_tensors, calibrate_amax, per_channel_amax, CalibMethod, Histogram};
use super::plan::{ActivationScale, Calibration};
use crate::error::{Error, Result};
use crate::exec::cpu::precision::weight_channel_axis;
use crate::exec::cpu::CpuExecutor;
use crate::exec::NamedTensors;
use crate::graph::layers::Layer;
use crate::graph::Graph;
use crate::quant::recipe::{Recipe, Zeros};

/// The observed tensors of a model: each layer's activation input (what its INT8 plan uses)
/// and its fused output (for TensorRT's implicit-calibration cache), in layer order.
pub struct Observers {
    /// (layer name, input edge, output edge).
    edges: Vec<(String, String, String)>,
    /// Further edges of the source graph to histogram (`with_cache_tensors`), and that graph.
    extra: Vec<String>,
    source: Option<Graph>,
    /// The recipe (`with_recipe`) and, per layer input, what an empty scene gives it.
    recipe: Recipe,
    background: Vec<Option<Background>>,
}

/// The values an empty scene (no point) gives one tensor, per channel (axis 1 of a 4-D tensor;
/// one set otherwise), as sorted f32 bit patterns: the interior constant and the few values the
/// zero padding makes along the borders.
struct Background {
    channels: Vec<Vec<u32>>,
    /// Elements per channel block (H * W for NCHW).
    inner: usize,
}

/// The bits compared: -0.0 as +0.0 (the same value, whichever sign a kernel left).
pub(crate) fn bits(x: f32) -> u32 {
    if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

impl Background {
    fn of(t: &crate::tensor::Tensor) -> Option<Background> {
        let v = t.as_f32()?;
        let (c, inner) = if t.shape.len() == 4 { (t.shape[1].max(1), t.shape[2] * t.shape[3]) } else { (1, v.len()) };
        let mut channels = vec![Vec::new(); c];
        if inner > 0 {
            for (i, block) in v.chunks(inner).enumerate() {
                channels[i % c].extend(block.iter().map(|&x| bits(x)));
            }
        }
        for ch in &mut channels {
            ch.sort_unstable();
            ch.dedup();
        }
        Some(Background { channels, inner })
    }

    /// The values of `t` at positions some point reaches: those differing from every empty-scene
    /// value of their channel; with `zeros`, exact zeros are left out too. A tensor of another
    /// layout than the background's only loses (with `zeros`) its zeros.
    fn occupied(&self, t: &crate::tensor::Tensor, v: &[f32], zeros: bool) -> Vec<f32> {
        let c = self.channels.len();
        let (same, inner) = if t.shape.len() == 4 {
            (t.shape[1] == c && t.shape[2] * t.shape[3] == self.inner, self.inner)
        } else {
            (c == 1, v.len())
        };
        if !same || inner == 0 {
            return v.iter().copied().filter(|&x| !(zeros && x == 0.0)).collect();
        }
        v.par_chunks(inner)
            .enumerate()
            .flat_map_iter(|(i, block)| {
                let bg = &self.channels[i % c];
                block.iter().copied().filter(move |&x| {
                    !(zeros && x == 0.0)
                        && match bg.as_slice() {
                            [only] => bits(x) != *only,
                            many => many.binary_search(&bits(x)).is_err(),
                        }
                })
            })
            .collect()
    }
}

/// Histograms of one or more frames: per layer, (input, output).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerHistograms {
    pub layers: Vec<LayerHistogram>,
    pub frames: usize,
    /// The further tensors of `Observers::with_cache_tensors`, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TensorHistogram>,
    /// The recipe the histograms were observed under (`none` when empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recipe: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerHistogram {
    pub layer: String,
    pub input: String,
    pub output: String,
    pub input_hist: Histogram,
    pub output_hist: Histogram,
}

/// The histogram of one further tensor (a cache tensor no layer reads or fuses into its output).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TensorHistogram {
    pub tensor: String,
    pub hist: Histogram,
}

impl Observers {
    pub fn new(exec: &CpuExecutor, layers: &[Layer]) -> Result<Observers> {
        let edges = layers
            .iter()
            .map(|l| {
                let (i, o) = exec
                    .layer_edges(&l.name)
                    .ok_or_else(|| Error::graph(&l.name, "quantizable layer not found in the prepared graph"))?;
                Ok((l.name.clone(), i.to_string(), o.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Observers { edges, extra: vec![], source: None, recipe: Recipe::none(), background: vec![] })
    }

    /// Observes under `recipe`. For the sparse steps, `empty` are the inputs of an empty scene
    /// (no point: `Detector::empty_scene_inputs`): one FP32 run of it gives each layer input's
    /// background values, which the histograms then leave out.
    pub fn with_recipe(mut self, exec: &CpuExecutor, recipe: Recipe, empty: &NamedTensors) -> Result<Observers> {
        self.recipe = recipe;
        self.background = Vec::new();
        if recipe.zeros == Zeros::Keep {
            return Ok(self);
        }
        let state = exec.run_keep(empty)?;
        self.background =
            self.edges.iter().map(|(_, input, _)| exec.value(&state, input).and_then(Background::of)).collect();
        Ok(self)
    }

    /// Also observes every tensor a TensorRT calibration cache needs for `layers`
    /// (`cache_tensors` of `source`, the graph the executor was prepared from) that is not a
    /// layer's observed input or output; the ones preparation fused away are recomputed from the
    /// source nodes each frame.
    pub fn with_cache_tensors(mut self, source: &Graph, layers: &[Layer]) -> Observers {
        let observed: std::collections::HashSet<&str> =
            self.edges.iter().flat_map(|(_, i, o)| [i.as_str(), o.as_str()]).collect();
        let mut extra: Vec<String> = Vec::new();
        for t in cache_tensors(source, layers) {
            for w in t.writes {
                if !observed.contains(w.as_str()) && !extra.contains(&w) {
                    extra.push(w);
                }
            }
        }
        self.extra = extra;
        self.source = Some(source.clone());
        self
    }

    /// Runs one frame in FP32 and histograms every observed tensor.
    /// The histogram layer `k`'s input would have if its value were `t` (a transformed input,
    /// e.g. equalized): the recipe's filter is applied to `t` itself, which is exact where what
    /// the filter leaves out is zeros (the pillar input of an empty scene is all zeros).
    pub fn input_histogram(&self, k: usize, t: &crate::tensor::Tensor) -> Result<Histogram> {
        let edge = self.edges.get(k).map_or("", |e| e.1.as_str());
        let v = t.as_f32().ok_or_else(|| Error::graph(edge, format!("observed edge is {}", t.dtype())))?;
        let zeros = self.recipe.zeros == Zeros::BackgroundAndZeros;
        let mut h = Histogram::new();
        match self.background.get(k).and_then(Option::as_ref) {
            Some(bg) => h.observe(&bg.occupied(t, v, zeros)),
            None => h.observe(v),
        }
        Ok(h)
    }

    pub fn observe(&self, exec: &CpuExecutor, inputs: &NamedTensors) -> Result<LayerHistograms> {
        let state = exec.run_keep(inputs)?;
        let zeros = self.recipe.zeros == Zeros::BackgroundAndZeros;
        let hist = |edge: &str, t: &crate::tensor::Tensor, bg: Option<&Background>| -> Result<Histogram> {
            let v = t.as_f32().ok_or_else(|| Error::graph(edge, format!("observed edge is {}", t.dtype())))?;
            let mut h = Histogram::new();
            match bg {
                Some(bg) => h.observe(&bg.occupied(t, v, zeros)),
                None => h.observe(v),
            }
            Ok(h)
        };
        let hist_of = |edge: &str, bg: Option<&Background>| -> Result<Histogram> {
            let t = exec.value(&state, edge).ok_or_else(|| Error::graph(edge, "observed edge has no value"))?;
            hist(edge, t, bg)
        };
        let mut tensors = Vec::with_capacity(self.extra.len());
        if let Some(source) = &self.source {
            let mut memo = std::collections::HashMap::new();
            for e in &self.extra {
                let t = exec.source_value(source, &state, e, &mut memo)?;
                tensors.push(TensorHistogram { tensor: e.clone(), hist: hist(e, &t, None)? });
            }
        }
        let layers = self
            .edges
            .iter()
            .enumerate()
            .map(|(k, (l, i, o))| {
                Ok(LayerHistogram {
                    layer: l.clone(),
                    input: i.clone(),
                    output: o.clone(),
                    input_hist: hist_of(i, self.background.get(k).and_then(Option::as_ref))?,
                    output_hist: hist_of(o, None)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let recipe = if self.recipe.is_none() { String::new() } else { self.recipe.to_string() };
        Ok(LayerHistograms { layers, frames: 1, tensors, recipe })
    }
}

impl LayerHistograms {
    /// Adds another set (same model) into this one.
    pub fn merge(&mut self, other: &LayerHistograms) {
        for (a, b) in self.layers.iter_mut().zip(&other.layers) {
            a.input_hist.merge(&b.input_hist);
            a.output_hist.merge(&b.output_hist);
        }
        for (a, b) in self.tensors.iter_mut().zip(&other.tensors) {
            a.hist.merge(&b.hist);
        }
        self.frames += other.frames;
    }

    /// The activation thresholds of `method` for every layer input.
    pub fn calibration(&self, method: &CalibMethod, seed: Option<u64>, model_hash: &str) -> Calibration {
        let activations: BTreeMap<String, ActivationScale> = self
            .layers
            .iter()
            .map(|l| {
                let amax = calibrate_amax(&l.input_hist, method);
                (l.layer.clone(), ActivationScale { tensor: l.input.clone(), amax })
            })
            .collect();
        Calibration {
            method: method.to_string(),
            frames: self.frames,
            seed,
            model_hash: model_hash.to_string(),
            activations,
            pow2_scales: false,
            outputs: self.output_amax(method),
            recipe: self.recipe.clone(),
            layers: Default::default(),
        }
    }

    /// Thresholds of what the layers write: each layer's fused output and every further tensor.
    fn output_amax(&self, method: &CalibMethod) -> BTreeMap<String, f32> {
        let mut out = BTreeMap::new();
        let outputs = self.layers.iter().map(|l| (&l.output, &l.output_hist));
        for (edge, h) in outputs.chain(self.tensors.iter().map(|t| (&t.tensor, &t.hist))) {
            out.entry(edge.clone()).or_insert_with(|| calibrate_amax(h, method));
        }
        out
    }
}

/// The TensorRT calibration cache of the layers `int8` selects, as (tensor, amax) in name order:
/// each layer's `cache_tensors` reads at its activation threshold (the one pillarq simulates), and
/// its writes at the threshold of a layer that reads them, else the calibration's `outputs`. The
/// second list names the writes with neither (a calibration made before `outputs` existed).
pub fn cache_entries(
    graph: &Graph,
    layers: &[Layer],
    cal: &Calibration,
    int8: &dyn Fn(&str) -> bool,
) -> (Vec<(String, f32)>, Vec<String>) {
    let tensors = cache_tensors(graph, layers);
    let mut read_amax: BTreeMap<&str, f32> = BTreeMap::new();
    for t in &tensors {
        if let Some(a) = cal.activations.get(&t.layer) {
            for r in &t.reads {
                read_amax.entry(r.as_str()).or_insert(a.amax);
            }
        }
    }
    let mut entries: BTreeMap<String, f32> = BTreeMap::new();
    let mut missing = Vec::new();
    for t in tensors.iter().filter(|t| int8(&t.layer)) {
        for r in &t.reads {
            if let Some(&a) = read_amax.get(r.as_str()) {
                entries.insert(r.clone(), a);
            }
        }
        for w in &t.writes {
            match read_amax.get(w.as_str()).or_else(|| cal.outputs.get(w)) {
                Some(&a) => {
                    entries.insert(w.clone(), a);
                }
                None if !missing.contains(w) => missing.push(w.clone()),
                None => {}
            }
        }
    }
    (entries.into_iter().collect(), missing)
}

/// Per-output-channel weight thresholds of every layer (of the BN-folded weights the executor
/// and the emitted model use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WeightScales {
    /// The layer's weight initializer in the ONNX file (before BN folding).
    pub tensor: String,
    pub axis: usize,
    pub amax: Vec<f32>,
}

pub fn weight_scales(exec: &CpuExecutor, layers: &[Layer]) -> Result<BTreeMap<String, WeightScales>> {
    layers
        .iter()
        .map(|l| {
            let (node, w) =
                exec.layer_weight(&l.name).ok_or_else(|| Error::graph(&l.name, "layer weight is not a constant"))?;
            let axis = weight_channel_axis(node);
            let v = w.as_f32().ok_or_else(|| Error::graph(&l.name, "layer weight is not float32"))?;
            let amax = per_channel_amax(v, &w.shape, axis).map_err(|e| Error::graph(&l.name, e))?;
            Ok((l.name.clone(), WeightScales { tensor: l.weight.clone(), axis, amax }))
        })
        .collect()
}

/// `calib/<model>-<method>-<frames>.json`: the activation thresholds with their provenance, the
/// per-channel weight thresholds, and the threshold of every observed tensor (for TensorRT's
/// implicit-calibration cache).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationFile {
    /// The ONNX file name the scales belong to.
    pub model: String,
    pub data: String,
    pub split: String,
    pub frame_ids: Vec<String>,
    pub calibration: Calibration,
    pub weights: BTreeMap<String, WeightScales>,
    /// amax of every tensor of the TensorRT cache (`cache_entries`: what each layer reads and
    /// writes), by the source graph's edge names. From the statistics alone: a PTQ recipe's
    /// refinement (`quant::refine`) is in `calibration` only (a cache cannot carry it).
    pub tensors: BTreeMap<String, f32>,
    /// What the recipe's refinement steps chose, and their wall time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refinement: Option<super::refine::RefineReport>,
    /// Thresholds learned by quantization-aware training (scripts/qat.py; `calibration.method`
    /// is then "qat"): how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qat: Option<QatProvenance>,
}

/// How scripts/qat.py learned a calibration's thresholds (and the weights of its model).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QatProvenance {
    /// Epochs of fine-tuning (fractional when a time budget or an iteration cap stopped it).
    pub epochs: f64,
    pub iterations: u64,
    /// Training frames and their data set and split.
    pub frames: usize,
    pub data: String,
    pub split: String,
    /// The plan trained for (file name, or the candidate's name).
    pub plan: String,
    /// Thresholds learned (LSQ) rather than kept at the calibration's.
    pub learned_amax: bool,
    pub seconds: f64,
    /// Where it started: the PTQ calibration file, its method and recipe, and the model.
    #[serde(default)]
    pub source_calibration: String,
    #[serde(default)]
    pub source_method: String,
    #[serde(default)]
    pub source_recipe: String,
    #[serde(default)]
    pub source_model: String,
}

impl CalibrationFile {
    pub fn read(path: &std::path::Path) -> Result<CalibrationFile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        let f: CalibrationFile = serde_json::from_str(&text).map_err(|e| Error::Plan {
            file: path.to_path_buf(),
            msg: format!("not a pillarq calibration file: {e}"),
        })?;
        f.validate().map_err(|msg| Error::Plan { file: path.to_path_buf(), msg })?;
        Ok(f)
    }

    /// Checks every threshold: activations as plans need them (`plan::amax_problem`); per-channel
    /// weight and cache thresholds finite and not negative (an all-zero channel has amax 0).
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.calibration.validate()?;
        for (layer, w) in &self.weights {
            if let Some(a) = w.amax.iter().find(|a| !(a.is_finite() && **a >= 0.0)) {
                return Err(format!("weights['{layer}']: amax {a} must be a finite number >= 0"));
            }
        }
        for (tensor, a) in &self.tensors {
            if let Some(p) = super::plan::amax_problem(*a) {
                return Err(format!("tensors['{tensor}']: {p}"));
            }
        }
        Ok(())
    }

    /// Every threshold moved up to `127 * 2^k` (activations, per-channel weights, the cache's
    /// tensors), and the calibration marked so INT8 layers use power-of-two weight scales.
    pub fn with_pow2_scales(mut self) -> CalibrationFile {
        use super::calib::pow2_amax;
        self.calibration = self.calibration.with_pow2_scales();
        for w in self.weights.values_mut() {
            w.amax.iter_mut().for_each(|a| *a = pow2_amax(*a));
        }
        self.tensors.values_mut().for_each(|a| *a = pow2_amax(*a));
        self
    }

    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        crate::files::write_atomic(path, &bytes)
    }

    /// TensorRT's calibration cache text (`TRT-<version>-EntropyCalibration2`, then one
    /// `tensor: <hex of the f32 scale>` line per tensor). trtexec's calibrator is the entropy one
    /// whatever method made the scales; the header must name it for the cache to be accepted.
    pub fn trt_cache(&self, trt_version: u32) -> String {
        let entries: Vec<(String, f32)> = self.tensors.iter().map(|(k, &a)| (k.clone(), a / 127.0)).collect();
        super::calib::trt_cache_text(&format!("TRT-{trt_version}-EntropyCalibration2"), &entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn occupied_values_are_those_the_empty_scene_never_takes_in_their_channel() {
        // Channel 0 of the empty scene is 1.0 everywhere, channel 1 is 0.0 inside and 2.0 on the border.
        let empty = Tensor::f32(vec![1, 2, 2, 2], vec![1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 0.0]);
        let bg = Background::of(&empty).unwrap();
        let frame = Tensor::f32(vec![1, 2, 2, 2], vec![1.0, 3.0, 0.0, 1.0, 2.0, 1.0, 0.0, 5.0]);
        let v = frame.as_f32().unwrap();
        // 1.0 is background only in channel 0; 2.0 and 0.0 only in channel 1.
        assert_eq!(bg.occupied(&frame, v, false), vec![3.0, 0.0, 1.0, 5.0]);
        assert_eq!(bg.occupied(&frame, v, true), vec![3.0, 1.0, 5.0]);
        // Another layout keeps everything but, with `zeros`, the zeros.
        let other = Tensor::f32(vec![1, 1, 2, 2], vec![1.0, 0.0, 2.0, 3.0]);
        assert_eq!(bg.occupied(&other, other.as_f32().unwrap(), true), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_learned_calibration_keeps_its_provenance() {
        let text = r#"{"model": "m-qat.onnx", "data": "d", "split": "train", "frame_ids": ["000000"],
            "calibration": {"method": "qat", "frames": 1, "model_hash": "",
                "activations": {"/pfn/linear/MatMul": {"tensor": "voxels", "amax": 2.5}}},
            "weights": {}, "tensors": {},
            "qat": {"epochs": 1.5, "iterations": 300, "frames": 600, "data": "synth", "split": "train",
                "plan": "int8", "learned_amax": true, "seconds": 312.0, "source_method": "max"}}"#;
        let f: CalibrationFile = serde_json::from_str(text).unwrap();
        assert!(f.validate().is_ok());
        let q = f.qat.as_ref().unwrap();
        assert_eq!((q.iterations, q.frames, q.learned_amax, q.source_method.as_str()), (300, 600, true, "max"));
        assert_eq!(f.calibration.method, "qat");
        let back: CalibrationFile = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back.qat, f.qat);
        // A PTQ file has none and writes none.
        let ptq = CalibrationFile { qat: None, ..f };
        assert!(!serde_json::to_string(&ptq).unwrap().contains("\"qat\":"));
    }
}
