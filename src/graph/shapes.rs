//! Shape and type inference for the supported ops, with constant folding of the small
//! shape-computing subgraphs exporters emit. Separate from evaluation: it only looks at facts,
//! except that nodes whose inputs are all constant are evaluated once (by the CPU kernels).
//!
//! Each op's rule is a `shape_*` function here; the op table (`exec::cpu::op_table`) says which
//! op uses which.

use std::collections::HashMap;
use std::sync::Arc;

use super::{fixed, shape_str, static_dims, Dim, Graph, Node, Shape, ValueInfo};
use crate::error::{Error, Result};
use crate::exec::cpu::op_table::op_def_for;
use crate::exec::cpu::{
    expand_plan, flatten_shape, gather_shape, pad_plan, reshape_target, slice_plan, squeeze_shape, unsqueeze_shape,
    OpError,
};
use crate::tensor::{DType, Tensor};

/// Element type and shape (`None`: unknown rank) of one edge.
pub type Fact = (DType, Option<Shape>);

fn bad(node: &Node, msg: impl Into<String>) -> Error {
    Error::graph(&node.name, format!("{} : {}", node.op_type, msg.into()))
}

/// Numpy-style broadcast of two shapes; `None` if they cannot broadcast.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n { Some(&a[i + a.len() - n]) } else { None };
        let db = if i + b.len() >= n { Some(&b[i + b.len() - n]) } else { None };
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(Dim::Fixed(1)), Some(y)) | (Some(y), Some(Dim::Fixed(1))) => y.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Fixed(_)), Some(Dim::Fixed(_))) => return None,
            (Some(Dim::Sym(_)), Some(y)) | (Some(y), Some(Dim::Sym(_))) => y.clone(),
            (None, None) => unreachable!(),
        });
    }
    Some(out)
}

fn norm_axis(node: &Node, axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(bad(node, format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

/// Output spatial size of a convolution-like window.
/// `None` when the kernel does not fit or the geometry (from the model's attributes) overflows.
fn conv_out(inp: usize, k: usize, s: usize, d: usize, pads: usize) -> Option<usize> {
    let eff = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    Some(inp.checked_add(pads)?.checked_sub(eff)? / s.max(1) + 1)
}

/// What a shape rule sees of a node's inputs: their facts, and the values of constant ones.
pub struct InputFacts<'a> {
    facts: &'a [Option<Fact>],
    consts: &'a HashMap<String, Arc<Tensor>>,
}

impl InputFacts<'_> {
    fn fact(&self, i: usize) -> Option<Fact> {
        self.facts.get(i).cloned().flatten()
    }
    fn shape(&self, i: usize) -> Option<Shape> {
        self.fact(i).and_then(|f| f.1)
    }
    /// The element type of input 0 (float32 when unknown): the output type of most ops.
    fn dtype0(&self) -> DType {
        self.fact(0).map(|f| f.0).unwrap_or(DType::F32)
    }
    /// Input `i` as integers, when it is a constant.
    fn ints(&self, node: &Node, i: usize) -> Option<Vec<i64>> {
        node.input(i).and_then(|n| self.consts.get(n)).and_then(|t| t.to_i64_vec())
    }
}

/// An op's shape rule: the facts of its outputs from those of its inputs (`exec::cpu::op_table`).
pub type ShapeRule = fn(&Node, &InputFacts) -> Result<Vec<Fact>>;

/// Ops whose output shape depends on input values: `infer` folds them when those are constant
/// (by running them); otherwise the outputs have unknown shapes.
pub fn shape_unknown(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    Ok(vec![(x.dtype0(), None); node.outputs.len().max(1)])
}

/// Output like input 0 (elementwise ops, in-place scatters).
pub fn shape_same(_: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    Ok(vec![(x.dtype0(), x.shape(0))])
}

/// The numpy broadcast of all input shapes.
fn broadcast_inputs(node: &Node, x: &InputFacts) -> Result<Option<Shape>> {
    let mut out: Option<Shape> = x.shape(0);
    for i in 1..node.inputs.len() {
        out = match (out, x.shape(i)) {
            (Some(p), Some(q)) => Some(broadcast(&p, &q).ok_or_else(|| {
                bad(node, format!("input shapes {} and {} cannot be broadcast together", shape_str(&p), shape_str(&q)))
            })?),
            _ => None,
        };
    }
    Ok(out)
}

/// Broadcasting arithmetic: the element type of input 0.
pub fn shape_broadcast(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    Ok(vec![(x.dtype0(), broadcast_inputs(node, x)?)])
}

/// Broadcasting comparison and logic: bool.
pub fn shape_compare(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    Ok(vec![(DType::Bool, broadcast_inputs(node, x)?)])
}

pub fn shape_where(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let out = match (x.shape(0), x.shape(1), x.shape(2)) {
        (Some(c), Some(p), Some(q)) => broadcast(&c, &p)
            .and_then(|s| broadcast(&s, &q))
            .map(Some)
            .ok_or_else(|| bad(node, "condition, X and Y cannot be broadcast together"))?,
        _ => None,
    };
    Ok(vec![(x.fact(1).map(|f| f.0).unwrap_or(DType::F32), out)])
}

pub fn shape_cast(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let to = node.attr().i64("to", 1)? as i32;
    Ok(vec![(DType::from_onnx(to), x.shape(0))])
}

pub fn shape_conv(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    conv_like(node, x, false)
}

pub fn shape_conv_transpose(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    conv_like(node, x, true)
}

fn conv_like(node: &Node, facts: &InputFacts, transposed: bool) -> Result<Vec<Fact>> {
    let a = node.attr();
    let dtype0 = facts.dtype0();
    if let Some(w) = facts.shape(1).filter(|w| w.len() < 3) {
        return Err(bad(node, format!("weight {} must have rank >= 3", shape_str(&w))));
    }
    let (Some(x), Some(w)) = (facts.shape(0), facts.shape(1)) else {
        return Ok(vec![(dtype0, None)]);
    };
    if x.len() < 3 || w.len() != x.len() {
        return Err(bad(node, format!("input {} and weight {} ranks do not fit", shape_str(&x), shape_str(&w))));
    }
    let sp = x.len() - 2;
    let group = a.i64("group", 1)?;
    if group < 1 {
        return Err(bad(node, format!("group {group} must be at least 1")));
    }
    let group = group as usize;
    let k: Vec<usize> = match a.ints_opt("kernel_shape")? {
        Some(k) => k.iter().map(|&v| v as usize).collect(),
        None => static_dims(&w.to_vec()).map(|w| w[2..].to_vec()).unwrap_or_default(),
    };
    let strides = a.ints_opt("strides")?.unwrap_or(vec![1; sp]);
    let dil = a.ints_opt("dilations")?.unwrap_or(vec![1; sp]);
    let pads = a.ints_opt("pads")?.unwrap_or(vec![0; 2 * sp]);
    if strides.len() != sp || dil.len() != sp || pads.len() != 2 * sp {
        return Err(bad(
            node,
            format!("strides {strides:?}, dilations {dil:?} and pads {pads:?} do not fit {sp} spatial axes"),
        ));
    }
    if a.string_opt("auto_pad")?.is_some_and(|p| p != "NOTSET") {
        return Err(bad(node, "auto_pad is not supported; export with explicit pads"));
    }
    let (cin_w, cout) = match (&w[0], &w[1]) {
        (Dim::Fixed(a0), Dim::Fixed(a1)) => {
            if transposed {
                (Some(*a0), Dim::Fixed(*a1 * group))
            } else {
                (Some(*a1 * group), Dim::Fixed(*a0))
            }
        }
        _ => (None, Dim::Sym("C".into())),
    };
    if let (Some(cw), Dim::Fixed(cx)) = (cin_w, &x[1]) {
        if cw != *cx {
            return Err(bad(node, format!("input has {cx} channels but the weight {} expects {cw}", shape_str(&w))));
        }
    }
    let mut out = vec![x[0].clone(), cout];
    for i in 0..sp {
        let Dim::Fixed(inp) = x[2 + i] else {
            out.push(Dim::Sym(format!("s{i}")));
            continue;
        };
        let (kk, s, d) = (*k.get(i).unwrap_or(&1), strides[i].max(1) as usize, dil[i].max(1) as usize);
        let ptot = pads[i].checked_add(pads[i + sp]).unwrap_or(i64::MAX).max(0) as usize;
        let o = if !transposed {
            conv_out(inp, kk, s, d, ptot)
                .ok_or_else(|| bad(node, format!("kernel {kk} with pads {pads:?} does not fit the input size {inp}")))?
        } else {
            let op = a.ints_opt("output_padding")?.and_then(|v| v.get(i).copied()).unwrap_or(0).max(0) as usize;
            let span = d.checked_mul(kk.saturating_sub(1));
            s.checked_mul(inp.saturating_sub(1))
                .zip(span)
                .and_then(|(a, b)| a.checked_add(op)?.checked_add(b)?.checked_add(1)?.checked_sub(ptot))
                .ok_or_else(|| bad(node, format!("pads {pads:?} exceed the output size or the geometry overflows")))?
        };
        out.push(Dim::Fixed(o));
    }
    Ok(vec![(dtype0, Some(out))])
}

pub fn shape_matmul(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let dtype0 = facts.dtype0();
    let (Some(x), Some(w)) = (facts.shape(0), facts.shape(1)) else {
        return Ok(vec![(dtype0, None)]);
    };
    if x.is_empty() || w.is_empty() {
        return Err(bad(node, "MatMul of a scalar"));
    }
    let (xk, wk) = (x[x.len() - 1].clone(), w[if w.len() == 1 { 0 } else { w.len() - 2 }].clone());
    if let (Dim::Fixed(p), Dim::Fixed(q)) = (&xk, &wk) {
        if p != q {
            return Err(bad(node, format!("inner dimensions differ: {} x {}", shape_str(&x), shape_str(&w))));
        }
    }
    let bx: Shape = x[..x.len().saturating_sub(2)].to_vec();
    let bw: Shape = if w.len() > 2 { w[..w.len() - 2].to_vec() } else { vec![] };
    let mut out = broadcast(&bx, &bw).ok_or_else(|| bad(node, "batch dims do not broadcast"))?;
    if x.len() >= 2 {
        out.push(x[x.len() - 2].clone());
    }
    if w.len() >= 2 {
        out.push(w[w.len() - 1].clone());
    }
    Ok(vec![(dtype0, Some(out))])
}

pub fn shape_gemm(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let a = node.attr();
    let dtype0 = facts.dtype0();
    if let Some(w) = facts.shape(1).filter(|w| w.len() != 2) {
        return Err(bad(node, format!("input B {} must be 2-D", shape_str(&w))));
    }
    let (Some(x), Some(w)) = (facts.shape(0), facts.shape(1)) else {
        return Ok(vec![(dtype0, None)]);
    };
    if x.len() != 2 || w.len() != 2 {
        return Err(bad(node, "Gemm needs 2-D inputs"));
    }
    let ta = a.i64("transA", 0)? != 0;
    let tb = a.i64("transB", 0)? != 0;
    let (m, k1) = if ta { (&x[1], &x[0]) } else { (&x[0], &x[1]) };
    let (k2, n) = if tb { (&w[1], &w[0]) } else { (&w[0], &w[1]) };
    if let (Dim::Fixed(p), Dim::Fixed(q)) = (k1, k2) {
        if p != q {
            return Err(bad(node, format!("inner dimensions differ: {p} vs {q}")));
        }
    }
    Ok(vec![(dtype0, Some(vec![m.clone(), n.clone()]))])
}

pub fn shape_transpose(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let Some(x) = facts.shape(0) else { return shape_same(node, facts) };
    let perm: Vec<i64> = node.attr().ints_opt("perm")?.unwrap_or_else(|| (0..x.len() as i64).rev().collect());
    if perm.len() != x.len() {
        return Err(bad(node, format!("perm {perm:?} does not fit rank {}", x.len())));
    }
    let out = perm.iter().map(|&p| norm_axis(node, p, x.len()).map(|p| x[p].clone())).collect::<Result<Shape>>()?;
    Ok(vec![(facts.dtype0(), Some(out))])
}

/// ReduceMax/Min/Sum/Mean: axes from input 1 when given (opset 13/18 on), else the attribute.
pub fn shape_reduce(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let a = node.attr();
    let Some(x) = facts.shape(0) else { return shape_same(node, facts) };
    let Some(axes) = input_or_attr(node, facts, 1, "axes")? else {
        return Ok(vec![(facts.dtype0(), None)]);
    };
    let keep = a.i64("keepdims", 1)? != 0;
    let axes: Vec<usize> = match axes {
        Some(ax) => ax.iter().map(|&v| norm_axis(node, v, x.len())).collect::<Result<_>>()?,
        None => (0..x.len()).collect(),
    };
    let out = x
        .iter()
        .enumerate()
        .filter_map(|(i, d)| if axes.contains(&i) { keep.then_some(Dim::Fixed(1)) } else { Some(d.clone()) })
        .collect();
    Ok(vec![(facts.dtype0(), Some(out))])
}

pub fn shape_concat(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let dtype0 = facts.dtype0();
    let shapes: Option<Vec<Shape>> = (0..node.inputs.len()).map(|i| facts.shape(i)).collect();
    let Some(shapes) = shapes else {
        return Ok(vec![(dtype0, None)]);
    };
    let rank = shapes[0].len();
    let axis = norm_axis(node, node.attr().i64("axis", 0)?, rank)?;
    let mut out = shapes[0].clone();
    let mut total = Some(0usize);
    for s in &shapes {
        if s.len() != rank {
            return Err(bad(node, "inputs have different ranks"));
        }
        for (i, (d, e)) in s.iter().zip(&shapes[0]).enumerate() {
            if i != axis {
                if let (Dim::Fixed(p), Dim::Fixed(q)) = (d, e) {
                    if p != q {
                        return Err(bad(
                            node,
                            format!("inputs {} and {} differ outside axis {axis}", shape_str(s), shape_str(&shapes[0])),
                        ));
                    }
                }
            }
        }
        total = match (&s[axis], total) {
            (Dim::Fixed(v), Some(t)) => Some(t + v),
            _ => None,
        };
    }
    out[axis] = total.map(Dim::Fixed).unwrap_or(Dim::Sym("concat".into()));
    Ok(vec![(dtype0, Some(out))])
}

/// The pillar scatter plugins: a [1, C, H, W] float canvas with `dense_shape` = [H, W].
pub fn shape_pillar_scatter(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let dense = node.attr().ints_opt("dense_shape")?;
    let c = facts.shape(0).and_then(|s| s.last().cloned());
    match (dense, c) {
        (Some(d), Some(c)) if d.len() == 2 => {
            Ok(vec![(DType::F32, Some(vec![Dim::Fixed(1), c, Dim::Fixed(d[0] as usize), Dim::Fixed(d[1] as usize)]))])
        }
        _ => Ok(vec![(DType::F32, None)]),
    }
}

/// `fold::SCATTER_ROWS_T`: float32 `[cols, count]` from its attributes.
pub fn shape_scatter_rows(node: &Node, _: &InputFacts) -> Result<Vec<Fact>> {
    let a = node.attr();
    let dims = (a.i64_opt("cols")?, a.i64_opt("count")?);
    let shape = match dims {
        (Some(c), Some(n)) if c >= 0 && n >= 0 => Some(vec![Dim::Fixed(c as usize), Dim::Fixed(n as usize)]),
        _ => None,
    };
    Ok(vec![(DType::F32, shape)])
}

pub fn shape_quantize(node: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    let zp = facts.fact(2).map(|f| f.0).unwrap_or(DType::U8);
    let out = node.attr().i64_opt("output_dtype")?.map(|t| DType::from_onnx(t as i32)).unwrap_or(zp);
    Ok(vec![(out, facts.shape(0))])
}

pub fn shape_dequantize(_: &Node, facts: &InputFacts) -> Result<Vec<Fact>> {
    Ok(vec![(DType::F32, facts.shape(0))])
}

/// Input `i` when the node has it: `Some(Some(v))` when it is a constant, `None` (not known
/// before running) when it is not; `Some(None)` when the node omits it.
fn optional_const(node: &Node, x: &InputFacts, i: usize) -> Option<Option<Vec<i64>>> {
    match node.input(i) {
        Some(_) => x.ints(node, i).map(Some),
        None => Some(None),
    }
}

/// Integers an op reads from input `i` or, without that input, from attribute `name` (where
/// older opsets keep them: Squeeze/Unsqueeze axes before 13, Pad's pads before 11, ReduceX axes
/// before 13/18). Read in that order, as the executor does; `None` when the input is not a constant.
fn input_or_attr(node: &Node, x: &InputFacts, i: usize, name: &str) -> Result<Option<Option<Vec<i64>>>> {
    match node.input(i) {
        Some(_) => Ok(x.ints(node, i).map(Some)),
        None => Ok(Some(node.attr().ints_opt(name)?)),
    }
}

/// The output of a data-movement op: `out` computes it from input 0's static shape with the
/// executor's own shape function, or gives `None` when a shape-giving input is not a constant.
/// Unknown when input 0's shape is not static.
fn moved(
    node: &Node,
    x: &InputFacts,
    out: impl FnOnce(&[usize]) -> Option<std::result::Result<Vec<usize>, OpError>>,
) -> Result<Vec<Fact>> {
    let shape = match x.shape(0).as_ref().and_then(static_dims) {
        Some(s) => out(&s).transpose().map_err(|e| bad(node, e.0))?.map(|s| fixed(&s)),
        None => None,
    };
    Ok(vec![(x.dtype0(), shape)])
}

/// Reshape to a constant shape (0 copies the input dim unless `allowzero`, -1 is inferred).
pub fn shape_reshape(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let allowzero = node.attr().i64("allowzero", 0)? != 0;
    let spec = x.ints(node, 1);
    moved(node, x, |s| Some(reshape_target(s, &spec?, allowzero)))
}

pub fn shape_squeeze(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let axes = input_or_attr(node, x, 1, "axes")?;
    moved(node, x, |s| Some(squeeze_shape(s, axes?.as_deref())))
}

pub fn shape_unsqueeze(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let axes = input_or_attr(node, x, 1, "axes")?;
    moved(node, x, |s| {
        Some(axes?.ok_or_else(|| OpError("Unsqueeze needs axes".into())).and_then(|a| unsqueeze_shape(s, &a)))
    })
}

pub fn shape_flatten(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let axis = node.attr().i64("axis", 1)?;
    moved(node, x, |s| Some(flatten_shape(s, axis)))
}

/// Slice with constant starts, ends and (optional) axes and steps.
pub fn shape_slice(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let (starts, ends) = (x.ints(node, 1), x.ints(node, 2));
    let (axes, steps) = (optional_const(node, x, 3), optional_const(node, x, 4));
    moved(node, x, |s| {
        let (axes, steps) = (axes?, steps?);
        let plan = slice_plan(s, &starts?, &ends?, axes.as_deref(), steps.as_deref());
        Some(plan.map(|p| p.iter().map(|d| d.2).collect()))
    })
}

/// Gather: the indices' shape replaces the gathered axis (their values do not matter here).
pub fn shape_gather(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let axis = node.attr().i64("axis", 0)?;
    let indices = x.shape(1).as_ref().and_then(static_dims);
    moved(node, x, |s| Some(gather_shape(s, &indices?, axis)))
}

/// Pad with constant pads (input 1, or the attribute before opset 11) and optional constant
/// axes (input 3).
pub fn shape_pad(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let pads = input_or_attr(node, x, 1, "pads")?;
    let axes = optional_const(node, x, 3);
    moved(node, x, |s| {
        let pads = match pads? {
            Some(p) => p,
            None => return Some(Err(OpError("missing pads".into()))),
        };
        Some(pad_plan(s, &pads, axes?.as_deref()).map(|p| p.1))
    })
}

pub fn shape_expand(node: &Node, x: &InputFacts) -> Result<Vec<Fact>> {
    let target = x.ints(node, 1);
    moved(node, x, |s| Some(expand_plan(s, &target?).map(|p| p.0)))
}

/// The table's shape rule for the node's op; ops the table does not know have unknown shapes.
fn infer_node(node: &Node, facts: &[Option<Fact>], consts: &HashMap<String, Arc<Tensor>>) -> Result<Vec<Fact>> {
    let rule = op_def_for(node).map_or(shape_unknown as ShapeRule, |d| d.shape);
    rule(node, &InputFacts { facts, consts })
}

fn shape_from_tensor(t: &Tensor) -> Shape {
    fixed(&t.shape)
}

fn dtype_of_tensor(t: &Tensor, declared: Option<DType>) -> DType {
    // f16 and f64 are held as f32 in memory; keep the declared element type for the edge.
    match (t.dtype(), declared) {
        (DType::F32, Some(d @ (DType::F16 | DType::F64))) => d,
        (d, _) => d,
    }
}

/// Fills `graph.values` for every node output. Declared shapes in the file are checked
/// against what the ops imply.
pub fn infer(graph: &mut Graph, declared: &HashMap<String, ValueInfo>) -> Result<()> {
    let mut consts: HashMap<String, Arc<Tensor>> = graph.initializers.clone();
    let mut values = std::mem::take(&mut graph.values);
    for node in &graph.nodes {
        let facts: Vec<Option<Fact>> =
            node.inputs.iter().map(|i| values.get(i).map(|v: &ValueInfo| (v.dtype, v.shape.clone()))).collect();
        let all_const = !node.inputs.iter().filter(|i| !i.is_empty()).any(|i| !consts.contains_key(i))
            && crate::exec::cpu::can_run(node)
            && node.op_type != "PPScatterPlugin";
        let mut out_facts: Vec<Fact> = Vec::new();
        let mut folded = false;
        // Shape of a statically shaped input is a constant.
        if node.op_type == "Shape" {
            if let Some(s) = facts.first().cloned().flatten().and_then(|f| f.1).and_then(|s| static_dims(&s)) {
                let t = Tensor::i64(vec![s.len()], s.iter().map(|&v| v as i64).collect());
                let t = crate::exec::cpu::slice_shape_output(node, t)?;
                out_facts.push((DType::I64, Some(shape_from_tensor(&t))));
                consts.insert(node.outputs[0].clone(), Arc::new(t));
                folded = true;
            }
        }
        if !folded && all_const {
            let ins: Vec<Option<Arc<Tensor>>> =
                node.inputs.iter().map(|i| if i.is_empty() { None } else { consts.get(i).cloned() }).collect();
            let outs = crate::exec::cpu::eval_node(node, ins)?;
            for (name, t) in node.outputs.iter().zip(outs) {
                let dt = dtype_of_tensor(&t, declared.get(name).map(|v| v.dtype));
                out_facts.push((dt, Some(shape_from_tensor(&t))));
                consts.insert(name.clone(), Arc::new(t));
            }
            folded = true;
        }
        if !folded {
            out_facts = infer_node(node, &facts, &consts)?;
        }
        for (i, name) in node.outputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let (mut dt, mut shape) = out_facts.get(i).cloned().unwrap_or((DType::Other(0), None));
            if let Some(d) = declared.get(name) {
                match (&shape, &d.shape) {
                    (Some(s), Some(ds)) if s.len() == ds.len() => {
                        for (x, y) in s.iter().zip(ds) {
                            if let (Dim::Fixed(p), Dim::Fixed(q)) = (x, y) {
                                if p != q {
                                    return Err(Error::graph(
                                        &node.name,
                                        format!(
                                            "inconsistent shapes: output '{name}' is declared {} but the op gives {}",
                                            shape_str(ds),
                                            shape_str(s)
                                        ),
                                    ));
                                }
                            }
                        }
                    }
                    (Some(s), Some(ds)) => {
                        return Err(Error::graph(
                            &node.name,
                            format!(
                                "inconsistent shapes: output '{name}' is declared {} but the op gives {}",
                                shape_str(ds),
                                shape_str(s)
                            ),
                        ))
                    }
                    (None, Some(_)) => shape = d.shape.clone(),
                    _ => {}
                }
                if matches!(dt, DType::Other(0)) {
                    dt = d.dtype;
                }
            }
            if let Some(dims) = shape.as_ref().and_then(static_dims) {
                crate::memory::alloc_elements(&dims, dt.width())
                    .map_err(|e| Error::graph(&node.name, format!("{} output '{name}': {e}", node.op_type)))?;
            }
            values.insert(name.clone(), ValueInfo { name: name.clone(), dtype: dt, shape });
        }
    }
    graph.values = values;
    // Graph outputs take the inferred facts.
    for o in &mut graph.outputs {
        if let Some(v) = graph.values.get(&o.name) {
            if v.shape.is_some() {
                o.shape = v.shape.clone();
            }
            o.dtype = v.dtype;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::graph::layers::quantizable_layers;
    use crate::onnx::build::{attr_i, attr_ints, init_f32, init_i64, node};
    use crate::onnx::proto::tensor_shape_proto::{dimension, Dimension};
    use crate::onnx::proto::{
        type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
        ValueInfoProto,
    };

    /// A float input with fixed dims, or a symbolic one where `dims` has 0.
    fn input(name: &str, dims: &[usize]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| Dimension {
                value: Some(if d == 0 {
                    dimension::Value::DimParam("P".into())
                } else {
                    dimension::Value::DimValue(d as i64)
                }),
                ..Default::default()
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(1),
                    shape: Some(TensorShapeProto { dim }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Imports a model without any value_info (outputs declared by name only).
    fn import(
        opset: i64,
        nodes: Vec<NodeProto>,
        inits: Vec<TensorProto>,
        inputs: Vec<ValueInfoProto>,
    ) -> Result<Graph> {
        let outputs = nodes.last().map(|n| n.output.clone()).unwrap_or_default();
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
            graph: Some(GraphProto {
                name: Some("t".into()),
                node: nodes,
                initializer: inits,
                input: inputs,
                output: outputs.into_iter().map(|o| ValueInfoProto { name: Some(o), ..Default::default() }).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        Graph::from_model(&model, Path::new("."))
    }

    /// PFN-style pillar features (Reshape -> MatMul -> Reshape -> ReduceMax), a Pad before a Conv,
    /// then the other data ops, with axes as attributes (opset 11) or inputs (opset 13).
    fn data_ops_model(opset: i64, pillars: &[usize]) -> Result<Graph> {
        let axes = |name: &str, out: &str, inp: &str| {
            if opset < 13 {
                node(name, name, &[inp], &[out], vec![attr_ints("axes", &[0])])
            } else {
                node(name, name, &[inp, "axes0"], &[out], vec![])
            }
        };
        let nodes = vec![
            node("Reshape", "flatten_points", &["pillars", "to_rows"], &["rows"], vec![]),
            node("MatMul", "pfn", &["rows", "w_pfn"], &["features"], vec![]),
            node("Reshape", "group_points", &["features", "to_groups"], &["grouped"], vec![]),
            node(
                "ReduceMax",
                "max_points",
                &["grouped"],
                &["pooled"],
                vec![attr_ints("axes", &[1]), attr_i("keepdims", 0)],
            ),
            node("Pad", "pad", &["image", "pads"], &["padded"], vec![]),
            node("Conv", "conv", &["padded", "w_conv"], &["conv_out"], vec![]),
            axes("Unsqueeze", "unsqueezed", "pooled"),
            axes("Squeeze", "squeezed", "unsqueezed"),
            node("Slice", "slice", &["squeezed", "starts", "ends", "slice_axes"], &["sliced"], vec![]),
            node("Gather", "gather", &["sliced", "indices"], &["gathered"], vec![attr_i("axis", 1)]),
            node("Expand", "expand", &["gathered", "expand_to"], &["expanded"], vec![]),
            node("Flatten", "flatten", &["expanded"], &["flat"], vec![attr_i("axis", 2)]),
            node("Identity", "identity", &["flat"], &["out"], vec![]),
        ];
        let inits = vec![
            init_i64("to_rows", &[2], &[-1, 10]),
            init_f32("w_pfn", &[10, 16], &[0.5; 160]),
            init_i64("to_groups", &[3], &[6, 32, -1]),
            init_i64("pads", &[8], &[0, 0, 1, 1, 0, 0, 1, 1]),
            init_f32("w_conv", &[5, 4, 3, 3], &[0.5; 180]),
            init_i64("axes0", &[1], &[0]),
            init_i64("starts", &[1], &[1]),
            init_i64("ends", &[1], &[-1]),
            init_i64("slice_axes", &[1], &[1]),
            init_i64("indices", &[2], &[0, 2]),
            init_i64("expand_to", &[3], &[2, 1, 1]),
        ];
        import(opset, nodes, inits, vec![input("pillars", pillars), input("image", &[1, 4, 8, 8])])
    }

    #[test]
    fn data_ops_without_value_info_get_shapes_from_input_shapes_and_constants() {
        for opset in [11, 13] {
            let g = data_ops_model(opset, &[6, 32, 10]).unwrap();
            let expect: &[(&str, &[usize])] = &[
                ("rows", &[192, 10]),
                ("features", &[192, 16]),
                ("grouped", &[6, 32, 16]),
                ("pooled", &[6, 16]),
                ("padded", &[1, 4, 10, 10]),
                ("conv_out", &[1, 5, 8, 8]),
                ("unsqueezed", &[1, 6, 16]),
                ("squeezed", &[6, 16]),
                ("sliced", &[6, 14]),
                ("gathered", &[6, 2]),
                ("expanded", &[2, 6, 2]),
                ("flat", &[12, 2]),
                ("out", &[12, 2]),
            ];
            for (edge, shape) in expect {
                assert_eq!(g.static_shape_of(edge).as_deref(), Some(*shape), "opset {opset}, {edge}");
            }
            // The layers' FLOPs follow from those shapes: 2 x 192 x 16 x 10 and 2 x (5 x 8 x 8) x (4 x 3 x 3).
            let flops: Vec<(String, u64)> = quantizable_layers(&g).into_iter().map(|l| (l.name, l.flops)).collect();
            assert_eq!(flops, vec![("pfn".to_string(), 61_440), ("conv".to_string(), 23_040)], "opset {opset}");
        }
    }

    #[test]
    fn data_ops_on_symbolic_shapes_stay_unknown_and_bad_reshapes_fail_on_import() {
        let g = data_ops_model(13, &[0, 32, 10]).unwrap();
        assert_eq!(g.shape_of("rows"), None);
        assert_eq!(g.static_shape_of("conv_out"), Some(vec![1, 5, 8, 8]));

        let nodes = vec![node("Reshape", "bad_reshape", &["pillars", "to"], &["y"], vec![])];
        let err = import(13, nodes, vec![init_i64("to", &[2], &[7, -1])], vec![input("pillars", &[6, 32, 10])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad_reshape") && err.contains("cannot reshape [6, 32, 10]"), "{err}");
    }
}
