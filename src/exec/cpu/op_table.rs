//! Every op pillarq knows, once: its CPU evaluation, its shape rule (`graph::shapes`) and its
//! properties. The executor dispatches through this table, shape inference looks its rules up
//! here, and `is_supported` is "has an evaluation here".

use std::sync::Arc;

use super::{input, ops_math as m, ops_quant as q, ops_scatter as sc, ops_shape as s, KernelArgs, OpResult};
use crate::graph::fold::{PILLAR_MAX_MATMUL, SCATTER_ROWS_T};
use crate::graph::shapes::{self as sh, ShapeRule};
use crate::graph::Node;
use crate::tensor::Tensor;

/// Evaluates a node on its inputs (`None` for omitted optional inputs; a kernel may take an input
/// it reads for the last time). The `KernelArgs` carry what the executor prepared for the step:
/// the output quantization scale a Conv or ConvTranspose applies in its epilogue
/// (`CompiledPlan::out_quant`) and a Conv's prepared weights; other ops ignore them.
pub type Eval = fn(&Node, &mut [Option<Arc<Tensor>>], &KernelArgs) -> OpResult;

/// Which inputs an op only moves: its outputs are on the f16 grid when those inputs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F16Move {
    None,
    /// The data input (the others give shapes or indices).
    First,
    All,
}

/// One op family: the op types sharing an evaluation and a shape rule.
pub struct OpDef {
    pub op_types: &'static [&'static str],
    /// `None` for ops that shape inference understands but the CPU executor cannot run.
    pub eval: Option<Eval>,
    pub shape: ShapeRule,
    pub f16_data_inputs: F16Move,
    /// The output has the broadcast shape of the inputs (checked against the memory budget before
    /// the kernel runs: two small inputs can broadcast to a huge output).
    pub broadcasts: bool,
}

const fn op(op_types: &'static [&'static str], eval: Eval, shape: ShapeRule) -> OpDef {
    OpDef { op_types, eval: Some(eval), shape, f16_data_inputs: F16Move::None, broadcasts: false }
}

/// An op that imports with known output shapes but fails when executed.
const fn shape_only(op_types: &'static [&'static str], shape: ShapeRule) -> OpDef {
    OpDef { op_types, eval: None, shape, f16_data_inputs: F16Move::None, broadcasts: false }
}

impl OpDef {
    const fn moves_f16(self, inputs: F16Move) -> OpDef {
        OpDef { f16_data_inputs: inputs, ..self }
    }
    const fn broadcasting(self) -> OpDef {
        OpDef { broadcasts: true, ..self }
    }
}

/// The op families. Those with `shape_unknown` compute output shapes from input values; shape
/// inference folds them when those inputs are constant.
static OPS: &[OpDef] = &[
    op(&["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"], |n, x, _| m::binary(n, x), sh::shape_broadcast)
        .broadcasting(),
    op(
        &["Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "And", "Or"],
        |n, x, _| m::binary(n, x),
        sh::shape_compare,
    )
    .broadcasting(),
    op(
        &["Relu", "Sigmoid", "Exp", "Sqrt", "Tanh", "Abs", "Neg", "Floor", "Ceil", "Round", "LeakyRelu", "Clip", "Not"],
        |n, x, _| m::unary(n, x),
        sh::shape_same,
    ),
    op(&["Cast"], |n, x, _| m::cast_op(n, x), sh::shape_cast),
    op(&["Where"], |_, x, _| m::where_op(x), sh::shape_where).broadcasting(),
    op(&["BatchNormalization"], |n, x, _| m::batch_norm(n, x), sh::shape_same),
    op(&["MatMul"], |n, x, _| m::matmul(n, x), sh::shape_matmul),
    op(&[PILLAR_MAX_MATMUL], |n, x, _| m::pillar_max_matmul(n, x), sh::shape_unknown),
    op(&["Gemm"], |n, x, _| m::gemm_op(n, x), sh::shape_gemm),
    op(&["Conv"], |n, x, k| m::conv_quantized(n, x, k), sh::shape_conv),
    op(&["ConvTranspose"], |n, x, k| m::conv_transpose(n, x, k), sh::shape_conv_transpose),
    op(&["ReduceMax", "ReduceMin", "ReduceSum", "ReduceMean"], |n, x, _| m::reduce(n, x), sh::shape_reduce),
    // Ops that only change the shape reuse the input's storage when this node is its last reader.
    op(&["Reshape"], |n, x, _| s::reshape(n, x).map(|shape| vec![s::retarget(x, shape)]), sh::shape_reshape)
        .moves_f16(F16Move::First),
    op(&["Squeeze"], |n, x, _| s::squeeze(n, x).map(|shape| vec![s::retarget(x, shape)]), sh::shape_squeeze)
        .moves_f16(F16Move::First),
    op(&["Unsqueeze"], |n, x, _| s::unsqueeze(n, x).map(|shape| vec![s::retarget(x, shape)]), sh::shape_unsqueeze)
        .moves_f16(F16Move::First),
    op(&["Flatten"], |n, x, _| s::flatten(n, x).map(|shape| vec![s::retarget(x, shape)]), sh::shape_flatten)
        .moves_f16(F16Move::First),
    op(
        &["Identity"],
        |_, x, _| input(x, 0).map(|t| t.shape.clone()).map(|shape| vec![s::retarget(x, shape)]),
        sh::shape_same,
    )
    .moves_f16(F16Move::First),
    op(&["Transpose"], |n, x, _| s::transpose(n, x), sh::shape_transpose).moves_f16(F16Move::First),
    op(&["Concat"], |n, x, _| s::concat(n, x), sh::shape_concat).moves_f16(F16Move::All),
    op(&["Slice"], |_, x, _| s::slice(x), sh::shape_slice).moves_f16(F16Move::First),
    op(&["Gather"], |n, x, _| s::gather(n, x), sh::shape_gather),
    op(&["Pad"], |n, x, _| s::pad(n, x), sh::shape_pad),
    op(&["Expand"], |_, x, _| s::expand(x), sh::shape_expand),
    op(&["Range"], |_, x, _| s::range(x), sh::shape_unknown),
    op(&["ConstantOfShape"], |n, x, _| s::constant_of_shape(n, x), sh::shape_unknown),
    op(&["Shape"], |n, x, _| s::shape_op(n, x), sh::shape_unknown),
    op(&["Constant"], |n, _, _| s::constant(n), sh::shape_unknown),
    op(&["ScatterND"], |n, x, _| sc::scatter_nd(n, x), sh::shape_same),
    op(&["ScatterElements"], |n, x, _| sc::scatter_elements(n, x), sh::shape_same),
    op(&["PPScatterPlugin", "PillarScatterPlugin"], |n, x, _| sc::pp_scatter(n, x), sh::shape_pillar_scatter),
    op(&[SCATTER_ROWS_T], |n, x, _| sc::scatter_rows_transposed(n, x), sh::shape_scatter_rows),
    op(&["QuantizeLinear"], |n, x, _| q::quantize_linear(n, x), sh::shape_quantize),
    op(&["DequantizeLinear"], |n, x, _| q::dequantize_linear(n, x), sh::shape_dequantize),
    // Known to shape inference (so `inspect` shows shapes past them), not to the executor.
    shape_only(&["Softmax"], sh::shape_same),
    shape_only(&["ScatterBEV"], sh::shape_pillar_scatter),
];

/// The table entry of an op type (of any domain), if pillarq knows it.
pub fn op_def(op_type: &str) -> Option<&'static OpDef> {
    OPS.iter().find(|d| d.op_types.contains(&op_type))
}

/// Plugin and internal ops: known by name whatever domain the exporter gave them.
const ANY_DOMAIN: &[&str] =
    &["PPScatterPlugin", "PillarScatterPlugin", "ScatterBEV", PILLAR_MAX_MATMUL, SCATTER_ROWS_T];

/// The entry for `node`: ONNX's ops only for nodes of the default domain (a `com.example` Conv is
/// not ONNX's Conv, and runs as an unknown op), plugin and internal ops in any domain.
pub fn op_def_for(node: &Node) -> Option<&'static OpDef> {
    let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
    op_def(&node.op_type).filter(|_| default_domain || ANY_DOMAIN.contains(&node.op_type.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_type_is_listed_once() {
        let mut all: Vec<&str> = OPS.iter().flat_map(|d| d.op_types.iter().copied()).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an op type appears in two families");
    }

    #[test]
    fn shape_only_and_unknown_ops_fail_to_execute_with_their_name() {
        for (op, domain, msg) in [
            ("Softmax", "", "op type 'Softmax' is not supported by the CPU executor"),
            ("ScatterBEV", "mmdeploy", "op type 'ScatterBEV' (domain 'mmdeploy') is not supported by the CPU executor"),
            ("NoSuchOp", "", "op type 'NoSuchOp' is not supported by the CPU executor"),
        ] {
            let node = Node {
                name: "n".into(),
                op_type: op.into(),
                domain: domain.into(),
                inputs: vec!["x".into()],
                outputs: vec!["y".into()],
                attrs: Default::default(),
                activation: Default::default(),
                fused: vec![],
            };
            let x = Arc::new(Tensor::f32(vec![2], vec![1.0, 2.0]));
            let err = super::super::eval_node(&node, vec![Some(x)]).unwrap_err().to_string();
            assert!(err.contains(msg), "{err}");
            assert!(!super::super::is_supported(op));
        }
        assert!(super::super::is_supported(PILLAR_MAX_MATMUL) && super::super::is_supported("Relu"));
    }
}
