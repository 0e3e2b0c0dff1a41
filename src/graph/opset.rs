//! Upgrading a graph's default-domain opset from 11 or 12 to 13, which per-channel
//! `DequantizeLinear` (the INT8 weights `pillarq emit` writes) needs. NVIDIA's CUDA-PointPillars
//! exporter and many PyTorch exports write opset 11.
//!
//! Between 11 and 13 only a few operators changed their signature; each is rewritten to the
//! opset-13 form of the same function (one rewrite rule, `graph::fold::rewrite`):
//! - `Squeeze`, `Unsqueeze`, `ReduceSum`: the `axes` attribute becomes the second input;
//! - `Split`: the `split` attribute becomes the second input;
//! - `Softmax`, `LogSoftmax`, `Hardmax`: before 13 the input is flattened to 2-D at `axis`
//!   (default 1) and normalized over the second dimension; from 13 over `axis` alone (default
//!   -1). The last axis keeps its meaning; any other becomes `Flatten(axis)` -> op(axis = 1) ->
//!   `Reshape` back to the input's shape;
//! - `Dropout` (opset 11): the `ratio` attribute becomes the second input.
//!
//! Other default-domain operators only gained element types. Nodes of other domains (custom
//! plugins such as `PPScatterPlugin`) are kept as they are. Opsets below 11 are not upgraded
//! (Pad, Slice and Resize changed their form before 11): the error says to re-export.

use std::sync::Arc;

use super::fold::{rewrite, Consumers, Patch};
use super::{AttrValue, Attrs, Graph, Node};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The opset this module upgrades to.
pub const TARGET_OPSET: i64 = 13;

fn default_domain(n: &Node) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

/// `graph` in default-domain opset 13 (unchanged when it already is 13 or later).
pub fn upgrade_to_13(graph: &Graph) -> Result<Graph> {
    if graph.opset >= TARGET_OPSET {
        return Ok(graph.clone());
    }
    if graph.opset < 11 {
        return Err(Error::Other(format!(
            "the model's default opset is {}; pillarq upgrades opset 11 and 12 to 13 (per-channel \
             DequantizeLinear needs 13): re-export the model with opset 11 or later",
            graph.opset
        )));
    }
    let mut g = rewrite(graph, upgrade_node)?;
    g.opset = TARGET_OPSET;
    Ok(g)
}

fn without(attrs: &Attrs, name: &str) -> Attrs {
    Attrs(attrs.0.iter().filter(|(n, _)| n != name).cloned().collect())
}

/// Rule: one node in its opset-13 form, where its signature changed.
fn upgrade_node(g: &Graph, i: usize, _: &Consumers) -> Result<Option<Patch>> {
    let n = &g.nodes[i];
    if !default_domain(n) {
        return Ok(None);
    }
    match n.op_type.as_str() {
        "Squeeze" | "Unsqueeze" | "ReduceSum" => Ok(attr_to_input(n, i, "axes", |v| match v {
            AttrValue::Ints(v) => Some(Tensor::i64(vec![v.len()], v.clone())),
            _ => None,
        })),
        "Split" => Ok(attr_to_input(n, i, "split", |v| match v {
            AttrValue::Ints(v) => Some(Tensor::i64(vec![v.len()], v.clone())),
            _ => None,
        })),
        "Dropout" if g.opset < 12 => Ok(attr_to_input(n, i, "ratio", |v| match v {
            AttrValue::Float(r) => Some(Tensor::f32(vec![], vec![*r])),
            _ => None,
        })),
        "Softmax" | "LogSoftmax" | "Hardmax" => softmax(g, n, i).map(Some),
        _ => Ok(None),
    }
}

/// Moves attribute `attr` to the node's second input (a new initializer `<node>/<attr>`).
fn attr_to_input(n: &Node, i: usize, attr: &str, value: impl Fn(&AttrValue) -> Option<Tensor>) -> Option<Patch> {
    let t = n.attrs.get(attr).and_then(value)?;
    let name = format!("{}/{attr}", n.name);
    let mut new = n.clone();
    new.attrs = without(&n.attrs, attr);
    new.inputs.truncate(1);
    new.inputs.push(name.clone());
    Some(Patch { replace: vec![(i, vec![new])], remove: vec![], initializers: vec![(name, Arc::new(t))] })
}

/// The softmax family: the last axis keeps its meaning; another axis `k` (the old 2-D coercion)
/// becomes Flatten(k) -> op(axis 1) -> Reshape to the input's shape.
fn softmax(g: &Graph, n: &Node, i: usize) -> Result<Patch> {
    let axis = n.attr().i64("axis", 1)?;
    let rank = g.shape_of(&n.inputs[0]).map(|s| s.len() as i64);
    let last = match rank {
        Some(r) => axis == -1 || axis == r - 1,
        None => axis == -1,
    };
    let mut core = n.clone();
    core.attrs = without(&n.attrs, "axis");
    if last {
        core.attrs.set("axis", AttrValue::Int(-1));
        return Ok(Patch { replace: vec![(i, vec![core])], ..Default::default() });
    }
    let edge = |s: &str| format!("{}/{s}_output", n.name);
    let node = |op: &str, suffix: &str, inputs: Vec<String>, outputs: Vec<String>, attrs: Attrs| Node {
        name: format!("{}/{suffix}", n.name),
        op_type: op.into(),
        domain: String::new(),
        inputs,
        outputs,
        attrs,
        activation: Default::default(),
        fused: vec![],
    };
    let x = n.inputs[0].clone();
    let flatten = node(
        "Flatten",
        "flatten",
        vec![x.clone()],
        vec![edge("flatten")],
        Attrs(vec![("axis".into(), AttrValue::Int(axis))]),
    );
    core.inputs = vec![edge("flatten")];
    core.outputs = vec![edge("core")];
    core.attrs.set("axis", AttrValue::Int(1));
    let shape = node("Shape", "shape", vec![x], vec![edge("shape")], Attrs::default());
    let reshape = node("Reshape", "reshape", vec![edge("core"), edge("shape")], n.outputs.clone(), Attrs::default());
    Ok(Patch { replace: vec![(i, vec![flatten, core, shape, reshape])], ..Default::default() })
}
