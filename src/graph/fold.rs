//! Preparation passes: find what TensorRT fuses into a layer (BatchNormalization, Relu) and,
//! for execution, fold BatchNormalization into the layer's weights and the Relu into its kernel.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Activation, Graph, Node};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub const LAYER_OPS: &[&str] = &["Conv", "ConvTranspose", "MatMul", "Gemm"];

/// What follows a layer node and would be fused into it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fusion {
    /// Index of the BatchNormalization node.
    pub bn: Option<usize>,
    /// For MatMul: the Transpose pair around the BatchNormalization (OpenPCDet's PFN layout).
    pub transposes: Option<(usize, usize)>,
    pub relu: Option<usize>,
    /// The edge the fused layer produces.
    pub output: String,
}

impl Fusion {
    pub fn fused_nodes(&self) -> Vec<usize> {
        let mut v = vec![];
        if let Some((a, _)) = self.transposes {
            v.push(a);
        }
        v.extend(self.bn);
        if let Some((_, b)) = self.transposes {
            v.push(b);
        }
        v.extend(self.relu);
        v
    }
}

/// Whether `node` is a quantizable layer: a Conv/ConvTranspose/MatMul/Gemm with constant weights,
/// an activation input and an output (a node without them is left for the executor to refuse).
pub fn is_layer(graph: &Graph, node: &Node) -> bool {
    (node.domain.is_empty() || node.domain == "ai.onnx")
        && node.input(0).is_some()
        && node.outputs.first().is_some_and(|o| !o.is_empty())
        && LAYER_OPS.contains(&node.op_type.as_str())
        && node.input(1).is_some_and(|w| graph.initializers.contains_key(w))
        && (node.op_type != "MatMul"
            || node.input(1).and_then(|w| graph.initializers.get(w)).is_some_and(|w| w.shape.len() == 2))
}

fn perm(node: &Node) -> Option<Vec<i64>> {
    node.attr().ints_opt("perm").ok().flatten()
}

/// Finds the BN / Transpose-BN-Transpose / Relu chain after layer `idx`.
pub fn fusion_of(graph: &Graph, idx: usize, consumers: &Consumers) -> Fusion {
    let node = &graph.nodes[idx];
    let mut out = node.outputs[0].clone();
    let mut fusion = Fusion::default();
    // The only consumer of `edge`, if the edge is not also a graph output.
    let sole = |edge: &str| -> Option<usize> {
        if graph.is_output(edge) {
            return None;
        }
        match consumers.get(edge).map(Vec::as_slice) {
            Some([c]) if graph.nodes[*c].input(0) == Some(edge) => Some(*c),
            _ => None,
        }
    };
    let bn_ok = |n: &Node| {
        n.op_type == "BatchNormalization"
            && n.outputs.iter().skip(1).all(|o| o.is_empty())
            && (1..5).all(|i| n.input(i).is_some_and(|p| graph.initializers.contains_key(p)))
    };
    let rank = graph.shape_of(&out).map(|s| s.len());
    if let Some(c) = sole(&out) {
        let n = &graph.nodes[c];
        let channel_is_axis1 = matches!(node.op_type.as_str(), "Conv" | "ConvTranspose") || rank == Some(2);
        if bn_ok(n) && channel_is_axis1 {
            fusion.bn = Some(c);
            out = n.outputs[0].clone();
        } else if node.op_type == "MatMul"
            && n.op_type == "Transpose"
            && rank == Some(3)
            && perm(n) == Some(vec![0, 2, 1])
        {
            // MatMul -> Transpose(0,2,1) -> BN -> Transpose(0,2,1): BN acts on the MatMul's last axis.
            if let Some(b) = sole(&n.outputs[0]).filter(|&b| bn_ok(&graph.nodes[b])) {
                if let Some(t2) = sole(&graph.nodes[b].outputs[0])
                    .filter(|&t| graph.nodes[t].op_type == "Transpose" && perm(&graph.nodes[t]) == Some(vec![0, 2, 1]))
                {
                    fusion.bn = Some(b);
                    fusion.transposes = Some((c, t2));
                    out = graph.nodes[t2].outputs[0].clone();
                }
            }
        }
    }
    if let Some(c) = sole(&out) {
        if graph.nodes[c].op_type == "Relu" {
            fusion.relu = Some(c);
            out = graph.nodes[c].outputs[0].clone();
        }
    }
    fusion.output = out;
    fusion
}

fn init(graph: &Graph, node: &Node, i: usize) -> Result<Arc<Tensor>> {
    let name = node.input(i).unwrap_or_default();
    graph
        .initializers
        .get(name)
        .cloned()
        .ok_or_else(|| Error::graph(&node.name, format!("expected a constant initializer for input {i} ('{name}')")))
}

/// The float32 values of a layer's parameter tensor; the error names the layer.
pub(crate) fn f32s<'a>(t: &'a Tensor, layer: &str) -> Result<&'a [f32]> {
    t.as_f32().ok_or_else(|| Error::graph(layer, format!("expected float32 parameters, got {}", t.dtype())))
}

/// One local graph edit, computed by a rewrite rule against the graph as it was before the pass:
/// nodes replaced in place (by one node or a sequence), nodes removed, initializers added.
#[derive(Debug, Default)]
pub struct Patch {
    pub replace: Vec<(usize, Vec<Node>)>,
    pub remove: Vec<usize>,
    pub initializers: Vec<(String, Arc<Tensor>)>,
}

impl Patch {
    fn touches(&self) -> impl Iterator<Item = usize> + '_ {
        self.replace.iter().map(|(i, _)| *i).chain(self.remove.iter().copied())
    }
}

/// Node index -> the nodes reading each edge (`Graph::consumers`).
pub type Consumers<'a> = HashMap<&'a str, Vec<usize>>;

/// A rewrite rule: looks at node `i` and returns the patch it wants, if any.
pub type Rule = fn(&Graph, usize, &Consumers) -> Result<Option<Patch>>;

/// The one way passes edit a graph: `rule` is asked at every node of `graph` in order, each patch
/// is computed on the unchanged graph, a patch touching a node an earlier patch touched is
/// dropped, then all patches are applied at once (replacements, initializers, removals).
pub fn rewrite(graph: &Graph, rule: Rule) -> Result<Graph> {
    let consumers = graph.consumers();
    let mut patches: Vec<Patch> = Vec::new();
    let mut touched: HashSet<usize> = HashSet::new();
    for i in 0..graph.nodes.len() {
        if touched.contains(&i) {
            continue;
        }
        if let Some(p) = rule(graph, i, &consumers)? {
            if p.touches().any(|t| touched.contains(&t)) {
                continue;
            }
            touched.extend(p.touches());
            patches.push(p);
        }
    }
    let mut g = graph.clone();
    let mut removed: HashSet<usize> = HashSet::new();
    let mut replaced: HashMap<usize, Vec<Node>> = HashMap::new();
    for p in patches {
        replaced.extend(p.replace);
        g.initializers.extend(p.initializers);
        removed.extend(p.remove);
    }
    if !removed.is_empty() || !replaced.is_empty() {
        let nodes = std::mem::take(&mut g.nodes);
        for (i, n) in nodes.into_iter().enumerate() {
            if removed.contains(&i) {
                continue;
            }
            match replaced.remove(&i) {
                Some(seq) => g.nodes.extend(seq),
                None => g.nodes.push(n),
            }
        }
    }
    Ok(g)
}

/// Returns a copy of `graph` with BatchNormalization folded into the preceding layer and Relu
/// fused into its kernel (following `fusion_of`), zero Pads folded into Convs, and pillar-net
/// MatMul + ReduceMax pairs fused. Other nodes are unchanged.
pub fn prepare_for_execution(graph: &Graph) -> Result<Graph> {
    let g = rewrite(graph, fold_layer)?;
    let g = rewrite(&g, fuse_zero_pad)?;
    let g = rewrite(&g, fuse_scatter_rows)?;
    rewrite(&g, fuse_pillar_max)
}

/// Rule: a layer absorbs its BatchNormalization (folded into weight and bias) and Relu
/// (its kernel's epilogue).
fn fold_layer(graph: &Graph, idx: usize, consumers: &Consumers) -> Result<Option<Patch>> {
    let node = &graph.nodes[idx];
    if !is_layer(graph, node) {
        return Ok(None);
    }
    let f = fusion_of(graph, idx, consumers);
    if f.bn.is_none() && f.relu.is_none() {
        return Ok(None);
    }
    let mut patch = Patch::default();
    {
        let mut new = node.clone();
        if let Some(b) = f.bn {
            let bn = &graph.nodes[b];
            let param = |i: usize| -> Result<Arc<Tensor>> {
                bn.input(i)
                    .and_then(|p| graph.initializers.get(p))
                    .cloned()
                    .ok_or_else(|| Error::graph(&bn.name, format!("input {i} is not a constant")))
            };
            let (g, b, m, v) = (param(1)?, param(2)?, param(3)?, param(4)?);
            let eps = bn.attr().f32("epsilon", 1e-5)?;
            let (scale, shift) = crate::numerics::bn_scale_shift(
                f32s(&g, &bn.name)?,
                f32s(&b, &bn.name)?,
                f32s(&m, &bn.name)?,
                f32s(&v, &bn.name)?,
                eps,
            )
            .map_err(|e| Error::graph(&bn.name, e))?;
            let w = init(graph, node, 1)?;
            let wv = f32s(&w, &node.name)?;
            let c = scale.len();
            let old_bias: Option<Vec<f32>> = match node.input(2) {
                Some(_) => {
                    let b = init(graph, node, 2)?;
                    Some(f32s(&b, &node.name)?.to_vec())
                }
                None => None,
            };
            // Output channel of each weight element.
            let channel_of: Box<dyn Fn(usize) -> usize> = match node.op_type.as_str() {
                "Conv" => {
                    let per = wv.len() / w.shape[0].max(1);
                    Box::new(move |i| i / per)
                }
                "ConvTranspose" => {
                    let group = node.attr().i64("group", 1)?.max(1) as usize;
                    let (cin, cog) = (w.shape[0], w.shape[1]);
                    let inner: usize = w.shape[2..].iter().product();
                    let cin_g = cin / group;
                    Box::new(move |i| {
                        let ci = i / (cog * inner);
                        (ci / cin_g) * cog + (i / inner) % cog
                    })
                }
                "MatMul" => {
                    let n = w.shape[1];
                    Box::new(move |i| i % n)
                }
                _ => {
                    // Gemm: output column n; B is [K, N] or [N, K] with transB.
                    let a = node.attr();
                    if a.f32("alpha", 1.0)? != 1.0 || a.f32("beta", 1.0)? != 1.0 {
                        return Ok(None);
                    }
                    let tb = a.i64("transB", 0)? != 0;
                    let (r, cc) = (w.shape[0], w.shape[1]);
                    let _ = r;
                    Box::new(move |i| if tb { i / cc } else { i % cc })
                }
            };
            let out_channels = match node.op_type.as_str() {
                "Conv" => w.shape[0],
                "ConvTranspose" => w.shape[1] * node.attr().i64("group", 1)?.max(1) as usize,
                "MatMul" => w.shape[1],
                _ => {
                    if node.attr().i64("transB", 0)? != 0 {
                        w.shape[0]
                    } else {
                        w.shape[1]
                    }
                }
            };
            if out_channels != c {
                return Err(Error::graph(
                    &bn.name,
                    format!("BatchNormalization has {c} channels but '{}' produces {out_channels}", node.name),
                ));
            }
            let wf: Vec<f32> = wv.iter().enumerate().map(|(i, &v)| v * scale[channel_of(i)]).collect();
            let bf: Vec<f32> = (0..c).map(|k| old_bias.as_ref().map_or(0.0, |b| b[k]) * scale[k] + shift[k]).collect();
            let wname = format!("{}::folded_weight", node.name);
            let bname = format!("{}::folded_bias", node.name);
            patch.initializers.push((wname.clone(), Arc::new(Tensor::f32(w.shape.clone(), wf))));
            patch.initializers.push((bname.clone(), Arc::new(Tensor::f32(vec![c], bf))));
            new.inputs = vec![node.inputs[0].clone(), wname, bname];
        }
        if f.relu.is_some() {
            new.activation = Activation::Relu;
        }
        for i in f.fused_nodes() {
            new.fused.push(graph.nodes[i].name.clone());
            patch.remove.push(i);
        }
        new.outputs = vec![f.output.clone()];
        patch.replace.push((idx, vec![new]));
    }
    Ok(Some(patch))
}

/// Internal op: a pillar feature net layer `max over points of act(x @ W + b)` in one pass, so
/// the [pillars, points, channels] intermediate is never written (TensorRT fuses the same).
pub const PILLAR_MAX_MATMUL: &str = "PillarMaxMatMul";

/// Rule: a (BN-folded) MatMul over [P, M, K] whose only reader is a ReduceMax over axis 1
/// becomes one `PillarMaxMatMul` node that keeps the MatMul's name (its layer name).
fn fuse_pillar_max(g: &Graph, i: usize, consumers: &Consumers) -> Result<Option<Patch>> {
    let mm = &g.nodes[i];
    if mm.op_type != "MatMul" || !is_layer(g, mm) || g.is_output(&mm.outputs[0]) {
        return Ok(None);
    }
    if g.static_shape_of(&mm.inputs[0]).is_none_or(|s| s.len() != 3) {
        return Ok(None);
    }
    let Some(&[r]) = consumers.get(mm.outputs[0].as_str()).map(Vec::as_slice) else { return Ok(None) };
    let red = &g.nodes[r];
    if red.op_type != "ReduceMax" || red.input(0) != Some(mm.outputs[0].as_str()) {
        return Ok(None);
    }
    let axes = match red.input(1) {
        Some(a) => g.initializers.get(a).and_then(|t| t.to_i64_vec()),
        None => red.attr().ints_opt("axes").ok().flatten(),
    };
    if !matches!(axes.as_deref(), Some([1]) | Some([-2])) {
        return Ok(None);
    }
    let keep = red.attr().i64("keepdims", 1).unwrap_or(1);
    let mut node = mm.clone();
    node.op_type = PILLAR_MAX_MATMUL.to_string();
    node.domain = "pillarq".to_string();
    node.attrs.set("keepdims", super::AttrValue::Int(keep));
    node.outputs = vec![red.outputs[0].clone()];
    node.fused.push(red.name.clone());
    Ok(Some(Patch { replace: vec![(i, vec![node])], remove: vec![r], initializers: vec![] }))
}

/// Internal op: the pillar scatter as PyTorch exporters write it (`ConstantOfShape` zeros
/// `[R, C]`, `ScatterND` of the pillar features into rows, `Slice` of rows `[start, start +
/// count)`, `Transpose` to `[C, count]`) in one pass: the canvas is written once, channel-major,
/// instead of zeroed, copied, scattered, sliced and transposed. Inputs `[indices, updates]`,
/// attributes `rows`, `cols`, `start`, `count`. Same values, same errors (an index outside
/// `[-R, R)`), and the last update of a row wins, as in the executor's ScatterND.
pub const SCATTER_ROWS_T: &str = "ScatterRowsTransposed";

/// Rule: `ConstantOfShape(0) -> ScatterND -> Slice (axis 0, step 1) -> Transpose [1, 0]`, each
/// the only reader of the one before and none a graph output, becomes one `SCATTER_ROWS_T` node
/// named after the ScatterND.
fn fuse_scatter_rows(g: &Graph, i: usize, consumers: &Consumers) -> Result<Option<Patch>> {
    let scatter = &g.nodes[i];
    if scatter.op_type != "ScatterND" || !scatter.domain.is_empty() && scatter.domain != "ai.onnx" {
        return Ok(None);
    }
    if scatter.attr().string_opt("reduction").ok().flatten().is_some_and(|r| r != "none") {
        return Ok(None);
    }
    let (Some(data), Some(indices), Some(updates)) = (scatter.input(0), scatter.input(1), scatter.input(2)) else {
        return Ok(None);
    };
    // The reader of `edge` when it is its only one (as input 0) and `edge` is not a graph output.
    let sole = |edge: &str| -> Option<usize> {
        match consumers.get(edge).map(Vec::as_slice) {
            Some(&[c]) if !g.is_output(edge) && g.nodes[c].input(0) == Some(edge) => Some(c),
            _ => None,
        }
    };
    // The zeros: a ConstantOfShape of a constant 2-D shape with value +0.0 (float32) or none.
    let Some(z) = g.nodes.iter().position(|n| n.outputs.iter().any(|o| o == data)) else { return Ok(None) };
    let zeros = &g.nodes[z];
    if zeros.op_type != "ConstantOfShape" || sole(data) != Some(i) {
        return Ok(None);
    }
    let positive_zero = match zeros.attr().tensor_opt("value") {
        None => true,
        Some(v) => v.as_f32().is_some_and(|v| v.len() == 1 && v[0].to_bits() == 0),
    };
    let Some(shape) = zeros.input(0).and_then(|s| g.initializers.get(s)).and_then(|t| t.to_i64_vec()) else {
        return Ok(None);
    };
    let &[rows, cols] = shape.as_slice() else { return Ok(None) };
    if !positive_zero || rows <= 0 || cols <= 0 {
        return Ok(None);
    }
    let Some(sl) = sole(&scatter.outputs[0]) else { return Ok(None) };
    let slice = &g.nodes[sl];
    let Some(tr) = slice.outputs.first().and_then(|o| sole(o)) else { return Ok(None) };
    let transpose = &g.nodes[tr];
    if slice.op_type != "Slice" || transpose.op_type != "Transpose" || perm(transpose) != Some(vec![1, 0]) {
        return Ok(None);
    }
    let konst = |k: usize| -> Option<Option<Vec<i64>>> {
        match slice.input(k) {
            None => Some(None),
            Some(e) => g.initializers.get(e).and_then(|t| t.to_i64_vec()).map(Some),
        }
    };
    let (Some(Some(starts)), Some(Some(ends)), Some(axes), Some(steps)) = (konst(1), konst(2), konst(3), konst(4))
    else {
        return Ok(None);
    };
    let dims = [rows as usize, cols as usize];
    let Ok(plan) = crate::exec::cpu::slice_plan(&dims, &starts, &ends, axes.as_deref(), steps.as_deref()) else {
        return Ok(None);
    };
    if plan[0].1 != 1 || plan[1] != (0, 1, dims[1]) {
        return Ok(None);
    }
    let mut node = scatter.clone();
    node.op_type = SCATTER_ROWS_T.to_string();
    node.domain = "pillarq".to_string();
    node.inputs = vec![indices.to_string(), updates.to_string()];
    node.outputs = vec![transpose.outputs[0].clone()];
    for (k, v) in [("rows", rows), ("cols", cols), ("start", plan[0].0), ("count", plan[0].2 as i64)] {
        node.attrs.set(k, super::AttrValue::Int(v));
    }
    node.fused.extend([zeros.name.clone(), slice.name.clone(), transpose.name.clone()]);
    Ok(Some(Patch { replace: vec![(i, vec![node])], remove: vec![z, sl, tr], initializers: vec![] }))
}

/// Whether `node` is a `Pad` in constant mode whose value is absent or a constant 0: its output
/// holds the input's values and zeros (the same INT8 threshold, the same fusion into a Conv).
pub fn is_zero_pad(g: &Graph, node: &Node) -> bool {
    node.op_type == "Pad"
        && node.attr().string_opt("mode").ok().flatten().is_none_or(|m| m == "constant")
        && match node.input(2) {
            None => true,
            Some(v) => {
                g.initializers.get(v).and_then(|t| t.as_f32().map(|v| v.iter().all(|&x| x == 0.0))) == Some(true)
            }
        }
}

/// Rule: a constant zero `Pad` on the spatial axes of a 4-D tensor folds into the `Conv` that
/// reads it (exporters write `nn.ZeroPad2d` + `Conv` this way). Same function, one copy fewer.
fn fuse_zero_pad(g: &Graph, i: usize, consumers: &Consumers) -> Result<Option<Patch>> {
    let pad = &g.nodes[i];
    if !is_zero_pad(g, pad) || pad.input(3).is_some() {
        return Ok(None);
    }
    let Some(pads) = pad.input(1).and_then(|n| g.initializers.get(n)).and_then(|t| t.to_i64_vec()) else {
        return Ok(None);
    };
    if pads.len() != 8 || pads.iter().any(|&p| p < 0) {
        return Ok(None);
    }
    if pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || g.is_output(&pad.outputs[0]) {
        return Ok(None);
    }
    let Some(&[c]) = consumers.get(pad.outputs[0].as_str()).map(Vec::as_slice) else { return Ok(None) };
    let conv = &g.nodes[c];
    if conv.op_type != "Conv" || conv.input(0) != Some(pad.outputs[0].as_str()) {
        return Ok(None);
    }
    if conv.attr().string_opt("auto_pad").ok().flatten().is_some_and(|p| p != "NOTSET") {
        return Ok(None);
    }
    let old = conv.attr().ints_opt("pads").ok().flatten().unwrap_or(vec![0; 4]);
    if old.len() != 4 {
        return Ok(None);
    }
    // ONNX Pad order: [x1_begin, x2_begin, x3_begin, x4_begin, x1_end, ...]; Conv: [h_b, w_b, h_e, w_e].
    let new = vec![old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]];
    let mut conv = conv.clone();
    conv.attrs.set("pads", super::AttrValue::Ints(new));
    conv.inputs[0] = pad.inputs[0].clone();
    conv.fused.insert(0, pad.name.clone());
    Ok(Some(Patch { replace: vec![(c, vec![conv])], remove: vec![i], initializers: vec![] }))
}
