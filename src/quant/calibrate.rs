//! Calibration: FP32 runs with observers on the activation tensors of every quantizable layer,
//! histograms merged across frames, a calibrator turning each histogram into a threshold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calib::{cache_tensors, calibrate_amax, per_channel_amax, CalibMethod, Histogram};
use super::plan::{ActivationScale, Calibration};
use crate::error::{Error, Result};
use crate::exec::cpu::precision::weight_channel_axis;
use crate::exec::cpu::CpuExecutor;
use crate::exec::NamedTensors;
use crate::graph::layers::Layer;
use crate::graph::Graph;

/// The observed tensors of a model: each layer's activation input (what its INT8 plan uses)
/// and its fused output (for TensorRT's implicit-calibration cache), in layer order.
pub struct Observers {
    /// (layer name, input edge, output edge).
    edges: Vec<(String, String, String)>,
    /// Further edges of the source graph to histogram (`with_cache_tensors`), and that graph.
    extra: Vec<String>,
    source: Option<Graph>,
}

/// Histograms of one or more frames: per layer, (input, output).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerHistograms {
    pub layers: Vec<LayerHistogram>,
    pub frames: usize,
    /// The further tensors of `Observers::with_cache_tensors`, in its order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tensors: Vec<TensorHistogram>,
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
        Ok(Observers { edges, extra: vec![], source: None })
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
    pub fn observe(&self, exec: &CpuExecutor, inputs: &NamedTensors) -> Result<LayerHistograms> {
        let state = exec.run_keep(inputs)?;
        let hist = |edge: &str, t: &crate::tensor::Tensor| -> Result<Histogram> {
            let v = t.as_f32().ok_or_else(|| Error::graph(edge, format!("observed edge is {}", t.dtype())))?;
            let mut h = Histogram::new();
            h.observe(v);
            Ok(h)
        };
        let hist_of = |edge: &str| -> Result<Histogram> {
            hist(edge, exec.value(&state, edge).ok_or_else(|| Error::graph(edge, "observed edge has no value"))?)
        };
        let mut tensors = Vec::with_capacity(self.extra.len());
        if let Some(source) = &self.source {
            let mut memo = std::collections::HashMap::new();
            for e in &self.extra {
                let t = exec.source_value(source, &state, e, &mut memo)?;
                tensors.push(TensorHistogram { tensor: e.clone(), hist: hist(e, &t)? });
            }
        }
        let layers = self
            .edges
            .iter()
            .map(|(l, i, o)| {
                Ok(LayerHistogram {
                    layer: l.clone(),
                    input: i.clone(),
                    output: o.clone(),
                    input_hist: hist_of(i)?,
                    output_hist: hist_of(o)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LayerHistograms { layers, frames: 1, tensors })
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
    /// amax of every observed tensor (layer inputs and fused outputs), by ONNX edge name.
    pub tensors: BTreeMap<String, f32>,
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
            if !(a.is_finite() && *a >= 0.0) {
                return Err(format!("tensors['{tensor}']: amax {a} must be a finite number >= 0"));
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
