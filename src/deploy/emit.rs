//! The mixed-precision ONNX of a PrecisionPlan: what TensorRT (and onnxruntime) consume.
//!
//! Built from the model's graph IR (`Model::graph`), node by node: the IR's node names (the
//! names every plan uses), its opset and its fusion facts (`graph::fold`) are the one source of
//! truth; other nodes are written back from the IR as they were, and the graph inputs, outputs,
//! initializers and metadata come from the file. For each quantizable layer:
//!
//! - BatchNormalization (and OpenPCDet's Transpose pair around it) is folded into the layer's
//!   weights and bias, with the same float32 arithmetic the CPU executor uses
//!   (`graph::fold::prepare_for_execution`), whatever the layer's precision. The fused Relu stays a
//!   node (TensorRT fuses it again). A MatMul's folded bias becomes an `Add` after it.
//! - INT8: `QuantizeLinear -> DequantizeLinear` on the layer's activation input (per tensor, scale
//!   = amax / 127, int8 zero point 0) and the weight stored as INT8 with a per-output-channel
//!   `DequantizeLinear` (symmetric max of the folded weight). The bias stays float32. This is
//!   TensorRT's explicit quantization and exactly what the CPU simulation computes. With a PTQ
//!   recipe (`quant::refine`): an equalized layer gets a `Mul` by its per-channel multipliers in
//!   front of the QuantizeLinear and its weight divided by them before quantization; a corrected
//!   bias replaces the folded one.
//! - FP16, [`Fp16Form::Typed`] (strongly typed: TensorRT 11, onnxruntime): `Cast` to float16 on
//!   the activation input, float16 weight and bias, the layer (and its bias Add) in float16, then
//!   `Cast` back to float32 on its output.
//! - FP16, [`Fp16Form::Float32`] (TensorRT 8.6/10 weak typing): the layer stays float32 and its
//!   precision is requested with `--layerPrecisions` (see `deploy::scripts`).
//! - FP32: the folded float32 weights.
//!
//! The layer node keeps its name, so TensorRT's ONNX parser gives the layer the plan's name.
//! Inserted nodes are named after the layer (`<layer>/act_q`, `<layer>/w_dq`, `<layer>/cast_in`,
//! ...), and graph inputs and outputs stay float32.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::exec::cpu::precision::{int8_weight, weight_channel_axis};
use crate::graph::fold::{f32s, fusion_of, prepare_for_execution};
use crate::graph::opset::upgrade_to_13;
use crate::graph::Node;
use crate::model::Model;
use crate::onnx::build::{attr_i, init_f16, init_f32, init_i8, init_tensor, node};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::{ModelProto, NodeProto, StringStringEntryProto, TensorProto};
use crate::quant::plan::{LayerPrecision, Precision};
use crate::tensor::Tensor;

/// How FP16 layers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fp16Form {
    /// float16 tensors and Casts: the precision is in the model (strongly typed).
    Typed,
    /// float32 like FP32 layers: the precision is requested from the builder per layer.
    Float32,
}

/// One layer of an emitted model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EmittedLayer {
    pub name: String,
    pub op: String,
    pub precision: Precision,
    /// Per-tensor activation scale (INT8 layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act_scale: Option<f32>,
    /// Per-output-channel weight scales (INT8 layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_scales: Vec<f32>,
    /// Bytes of the stored weight and bias (INT8 weight: 1 byte an element; float32 bias).
    pub weight_bytes: u64,
    /// Names of the nodes of the emitted model that compute this layer (the layer node first, then
    /// its bias Add and the fused Relu): the names TensorRT's ONNX parser gives their layers.
    pub nodes: Vec<String>,
    /// Names of the original model's nodes this layer covers (the layer, its BatchNormalization
    /// and Relu; not the PFN's Transposes): their layer names when TensorRT parses the FP32 model.
    pub original_nodes: Vec<String>,
}

pub struct Emitted {
    pub model: ModelProto,
    pub layers: Vec<EmittedLayer>,
}

/// Folded float32 weight and bias of each layer, and the nodes folded into it.
struct Folded {
    weight: Arc<Tensor>,
    bias: Option<Arc<Tensor>>,
    node: Node,
    /// Original nodes removed (BN, Transposes).
    removed: Vec<String>,
    relu: Option<String>,
    bn: Option<String>,
    /// The edge after the BN chain (before the Relu): what the emitted layer writes.
    out: String,
}

fn folded_layers(model: &Model) -> Result<HashMap<String, Folded>> {
    let g = &model.graph;
    let prepared = prepare_for_execution(g)?;
    let consumers = g.consumers();
    let mut out = HashMap::new();
    for l in &model.layers {
        let idx =
            g.nodes.iter().position(|n| n.name == l.name).ok_or_else(|| Error::graph(&l.name, "layer not found"))?;
        let f = fusion_of(g, idx, &consumers);
        let pn = prepared
            .nodes
            .iter()
            .find(|n| n.name == l.name)
            .ok_or_else(|| Error::graph(&l.name, "layer missing after BatchNormalization folding"))?;
        let constant =
            |k: usize| -> Option<Arc<Tensor>> { pn.input(k).and_then(|e| prepared.initializers.get(e)).cloned() };
        let weight = constant(1).ok_or_else(|| Error::graph(&l.name, "the layer's weight is not a constant"))?;
        if pn.input(2).is_some() && constant(2).is_none() {
            return Err(Error::graph(&l.name, "the layer's bias is not a constant"));
        }
        let mut removed = vec![];
        let mut after = g.nodes[idx].outputs[0].clone();
        if let Some((t1, t2)) = f.transposes {
            removed.push(g.nodes[t1].name.clone());
            removed.push(g.nodes[t2].name.clone());
            after = g.nodes[t2].outputs[0].clone();
        }
        if let Some(b) = f.bn {
            removed.push(g.nodes[b].name.clone());
            if f.transposes.is_none() {
                after = g.nodes[b].outputs[0].clone();
            }
        }
        out.insert(
            l.name.clone(),
            Folded {
                weight,
                bias: constant(2),
                node: g.nodes[idx].clone(),
                removed,
                relu: f.relu.map(|r| g.nodes[r].name.clone()),
                bn: f.bn.map(|b| g.nodes[b].name.clone()),
                out: after,
            },
        );
    }
    Ok(out)
}

/// Builds the model of a resolved plan (`PrecisionPlan::resolve`).
pub fn emit_model(model: &Model, plan: &[LayerPrecision], form: Fp16Form) -> Result<Emitted> {
    let mut m = model.file.model.clone();
    // Per-channel DequantizeLinear needs opset 13: older graphs are upgraded (graph::opset).
    let ir =
        upgrade_to_13(&model.graph).map_err(|e| Error::Model { file: model.file.path.clone(), msg: e.to_string() })?;
    let upgraded = ir.opset != model.graph.opset;
    let folded = folded_layers(model)?;
    let precision: HashMap<&str, &LayerPrecision> = plan.iter().map(|p| (p.name.as_str(), p)).collect();
    let removed: HashSet<&str> = folded.values().flat_map(|f| f.removed.iter().map(String::as_str)).collect();
    let g = m.graph.as_mut().expect("decode_model checks the graph");

    let ir = &ir;
    // Every name in use, so inserted names never clash.
    let mut taken: HashSet<String> = HashSet::new();
    for n in &ir.nodes {
        taken.insert(n.name.clone());
        taken.extend(n.inputs.iter().cloned());
        taken.extend(n.outputs.iter().cloned());
    }
    taken.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
    let mut em = Emitter { taken, inits: vec![] };

    let mut nodes = Vec::with_capacity(ir.nodes.len() + 4 * plan.len());
    let mut layers = Vec::with_capacity(plan.len());
    for n in &ir.nodes {
        if removed.contains(n.name.as_str()) {
            continue;
        }
        let (Some(f), Some(lp)) = (folded.get(&n.name), precision.get(n.name.as_str())) else {
            nodes.push(n.to_proto());
            continue;
        };
        let (seq, layer) = em.layer(n, f, lp, form)?;
        nodes.extend(seq);
        layers.push(layer);
    }
    if layers.len() != plan.len() {
        let found: HashSet<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        let missing: Vec<&str> = plan.iter().map(|p| p.name.as_str()).filter(|n| !found.contains(n)).collect();
        return Err(Error::graph(missing.join(", "), "plan layer not found in the ONNX file's nodes"));
    }
    g.node = nodes;
    g.initializer.extend(em.inits);
    if upgraded {
        // The upgrade's new constants (axes, split sizes) and the opset import.
        let have: HashSet<String> = g.initializer.iter().filter_map(|t| t.name.clone()).collect();
        for (name, t) in &ir.initializers {
            if !have.contains(name) && !model.graph.initializers.contains_key(name) {
                g.initializer.push(init_tensor(name, t).map_err(|msg| Error::graph(name, msg))?);
            }
        }
        for o in m.opset_import.iter_mut().filter(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        {
            o.version = Some(ir.opset);
        }
        // IR version 7 is the first to know opset 13.
        if m.ir_version.is_some_and(|v| v < 7) {
            m.ir_version = Some(7);
        }
    }
    // Drop what no node reads any more (the original weights, BN parameters) and facts about
    // edges that no longer exist.
    let read: HashSet<&str> = g.node.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let outputs: HashSet<&str> = g.output.iter().filter_map(|o| o.name.as_deref()).collect();
    let before: HashSet<String> = g.initializer.iter().filter_map(|t| t.name.clone()).collect();
    g.initializer.retain(|t| t.name.as_deref().is_some_and(|n| read.contains(n) || outputs.contains(n)));
    // Old-IR models (and exports with keep_initializers_as_inputs) also list initializers as graph
    // inputs: the emitted model's inputs are the real ones only (TensorRT and onnxruntime would
    // otherwise take the weights as overridable inputs).
    g.input.retain(|v| v.name.as_ref().is_none_or(|n| !before.contains(n)));
    let produced: HashSet<String> = g.node.iter().flat_map(|n| n.output.iter().cloned()).collect();
    g.value_info.retain(|v| v.name.as_ref().is_some_and(|n| produced.contains(n)));

    let counts = |p: Precision| layers.iter().filter(|l| l.precision == p).count();
    m.doc_string = Some(format!(
        "pillarq emit: {} int8, {} fp16, {} fp32 layers ({})",
        counts(Precision::Int8),
        counts(Precision::Fp16),
        counts(Precision::Fp32),
        match form {
            Fp16Form::Typed => "strongly typed",
            Fp16Form::Float32 => "fp16 layers as float32, precision set by the builder",
        }
    ));
    m.producer_name = Some("pillarq".into());
    m.producer_version = Some(env!("CARGO_PKG_VERSION").into());
    let summary: String =
        layers.iter().map(|l| format!("{}={}", l.name, l.precision.as_str())).collect::<Vec<_>>().join(",");
    m.metadata_props.retain(|kv| kv.key.as_deref() != Some("pillarq_plan"));
    m.metadata_props.push(StringStringEntryProto { key: Some("pillarq_plan".into()), value: Some(summary) });
    Ok(Emitted { model: m, layers })
}

struct Emitter {
    taken: HashSet<String>,
    inits: Vec<TensorProto>,
}

impl Emitter {
    fn fresh(&mut self, name: String) -> Result<String> {
        if !self.taken.insert(name.clone()) {
            return Err(Error::graph(
                &name,
                "name clash: the model already has a node, edge or initializer of this name",
            ));
        }
        Ok(name)
    }

    fn add(&mut self, t: TensorProto) -> Result<String> {
        let name = self.fresh(t.name.clone().unwrap_or_default())?;
        self.inits.push(t);
        Ok(name)
    }

    /// The replacement nodes of one layer, in order.
    fn layer(
        &mut self,
        orig: &Node,
        f: &Folded,
        lp: &LayerPrecision,
        form: Fp16Form,
    ) -> Result<(Vec<NodeProto>, EmittedLayer)> {
        let l = lp.name.as_str();
        let is_mm = f.node.op_type == "MatMul";
        let w = &f.weight;
        let wdims = w.shape.clone();
        let wv = f32s(w, l)?;
        let bias: Option<Vec<f32>> = match (&lp.bias, lp.precision) {
            // Bias correction (INT8 only): the plan's bias replaces the folded one.
            (Some(b), Precision::Int8) => {
                let len = f.bias.as_ref().map(|t| t.len());
                if len != Some(b.len()) {
                    return Err(Error::graph(
                        l,
                        format!("the plan's corrected bias has {} values; the layer's bias has {len:?}", b.len()),
                    ));
                }
                Some(b.to_vec())
            }
            _ => f.bias.as_ref().map(|b| f32s(b, l).map(<[f32]>::to_vec)).transpose()?,
        };
        let bias_len = bias.as_ref().map_or(0, Vec::len);
        let x = orig.inputs.first().cloned().unwrap_or_default();
        let mut seq = vec![];
        let mut act_scale = None;
        let mut weight_scales = vec![];
        let typed16 = lp.precision == Precision::Fp16 && form == Fp16Form::Typed;

        let (layer_in, layer_w, bias_name, weight_bytes) = match lp.precision {
            Precision::Int8 => {
                let amax = lp.act_amax.ok_or_else(|| Error::graph(l, "int8 layer without an activation scale"))?;
                let s = amax / 127.0;
                act_scale = Some(s);
                let s_name = self.add(init_f32(&format!("{l}/act_scale"), &[], &[s]))?;
                let zp_name = self.add(init_i8(&format!("{l}/act_zero_point"), &[], &[0]))?;
                let q_out = self.fresh(format!("{l}/act_q_output"))?;
                let dq_out = self.fresh(format!("{l}/act_dq_output"))?;
                let (qn, dqn) = (self.fresh(format!("{l}/act_q"))?, self.fresh(format!("{l}/act_dq"))?);
                // Input equalization: x * m per input channel in front of the QuantizeLinear
                // (TensorRT quantizes activations per tensor; a user's own pre-processing kernel
                // can apply m instead, see the README).
                let q_in = match &lp.input_mul {
                    Some(m) => {
                        let conv = matches!(f.node.op_type.as_str(), "Conv" | "ConvTranspose");
                        let dims: Vec<usize> = if conv { vec![m.len(), 1, 1] } else { vec![m.len()] };
                        let m_name = self.add(init_f32(&format!("{l}/input_mul"), &dims, m))?;
                        let mul_out = self.fresh(format!("{l}/input_mul_output"))?;
                        let mn = self.fresh(format!("{l}/input_mul_node"))?;
                        seq.push(node("Mul", &mn, &[&x, &m_name], &[&mul_out], vec![]));
                        mul_out
                    }
                    None => x.clone(),
                };
                seq.push(node("QuantizeLinear", &qn, &[&q_in, &s_name, &zp_name], &[&q_out], vec![]));
                seq.push(node("DequantizeLinear", &dqn, &[&q_out, &s_name, &zp_name], &[&dq_out], vec![]));
                let axis = weight_channel_axis(&f.node);
                let (q, scales) = int8_weight(&f.node, w, lp).map_err(|e| Error::graph(l, e.to_string()))?;
                let c = scales.len();
                let wq = self.add(init_i8(&format!("{l}/weight_int8"), &wdims, &q))?;
                let ws = self.add(init_f32(&format!("{l}/weight_scale"), &[c], &scales))?;
                let wz = self.add(init_i8(&format!("{l}/weight_zero_point"), &[c], &vec![0; c]))?;
                let w_dq = self.fresh(format!("{l}/weight_dq_output"))?;
                let wdqn = self.fresh(format!("{l}/weight_dq"))?;
                seq.push(node(
                    "DequantizeLinear",
                    &wdqn,
                    &[&wq, &ws, &wz],
                    &[&w_dq],
                    vec![attr_i("axis", axis as i64)],
                ));
                weight_scales = scales;
                let b = match &bias {
                    Some(b) => Some(self.add(init_f32(&format!("{l}/bias"), &[b.len()], b))?),
                    None => None,
                };
                (dq_out, w_dq, b, wv.len() as u64 + 4 * bias_len as u64)
            }
            Precision::Fp16 if typed16 => {
                let c_out = self.fresh(format!("{l}/cast_in_output"))?;
                let cn = self.fresh(format!("{l}/cast_in"))?;
                seq.push(node("Cast", &cn, &[&x], &[&c_out], vec![attr_i("to", DataType::Float16 as i64)]));
                let wn = self.add(init_f16(&format!("{l}/weight_fp16"), &wdims, wv))?;
                let b = match &bias {
                    Some(b) => Some(self.add(init_f16(&format!("{l}/bias_fp16"), &[b.len()], b))?),
                    None => None,
                };
                (c_out, wn, b, 2 * (wv.len() + bias_len) as u64)
            }
            p => {
                let wn = self.add(init_f32(&format!("{l}/weight"), &wdims, wv))?;
                let b = match &bias {
                    Some(b) => Some(self.add(init_f32(&format!("{l}/bias"), &[b.len()], b))?),
                    None => None,
                };
                let bytes = if p == Precision::Fp16 { 2 } else { 4 } * (wv.len() + bias_len) as u64;
                (x.clone(), wn, b, bytes)
            }
        };

        // The layer node (same name, op, domain and attributes), then the MatMul bias Add, then
        // the Cast back to float32.
        let mut tail: Vec<(&str, String, Vec<String>, Vec<_>)> = vec![];
        let mut trt_nodes = vec![l.to_string()];
        if let (true, Some(b)) = (is_mm, &bias_name) {
            tail.push(("Add", format!("{l}/bias_add"), vec![b.clone()], vec![]));
        }
        if typed16 {
            tail.push(("Cast", format!("{l}/cast_out"), vec![], vec![attr_i("to", DataType::Float as i64)]));
        }
        let core_out = if tail.is_empty() { f.out.clone() } else { self.fresh(format!("{l}/layer_output"))? };
        let mut ins = vec![layer_in, layer_w];
        if let (false, Some(b)) = (is_mm, &bias_name) {
            ins.push(b.clone());
        }
        let mut core = orig.to_proto();
        core.input = ins;
        core.output = vec![core_out.clone()];
        seq.push(core);
        let mut prev = core_out;
        let last = tail.len().saturating_sub(1);
        for (k, (op, nm, extra, attrs)) in tail.into_iter().enumerate() {
            let name = self.fresh(nm)?;
            let o = if k == last { f.out.clone() } else { self.fresh(format!("{name}_output"))? };
            let mut ins = vec![prev];
            ins.extend(extra);
            if op == "Add" {
                trt_nodes.push(name.clone());
            }
            seq.push(node(op, &name, &ins, std::slice::from_ref(&o), attrs));
            prev = o;
        }
        trt_nodes.extend(f.relu.iter().cloned());
        let mut original = vec![l.to_string()];
        original.extend(f.bn.iter().cloned());
        original.extend(f.relu.iter().cloned());
        Ok((
            seq,
            EmittedLayer {
                name: l.to_string(),
                op: f.node.op_type.clone(),
                precision: lp.precision,
                act_scale,
                weight_scales,
                weight_bytes,
                nodes: trt_nodes,
                original_nodes: original,
            },
        ))
    }
}
