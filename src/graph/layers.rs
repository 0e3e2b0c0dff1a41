//! Quantizable layers: the Conv, ConvTranspose, MatMul and Gemm nodes with constant weights,
//! together with what TensorRT fuses into them. Named by ONNX node name, in graph order.

use serde::Serialize;

use super::fold::{fusion_of, is_layer};
use super::Graph;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Layer {
    /// Position among quantizable layers (graph order).
    pub index: usize,
    /// ONNX node name: the name every plan, report and trtexec flag uses.
    pub name: String,
    pub op: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    /// Op types fused into this layer, in order (e.g. ["BatchNormalization", "Relu"]).
    pub fused: Vec<String>,
    /// Names of the fused nodes.
    pub fused_nodes: Vec<String>,
    /// Weight (and bias) elements of the layer itself; fused BN parameters fold into these.
    pub params: usize,
    /// 2 x multiply-accumulates for one run at the graph's static shapes (0 if unknown).
    pub flops: u64,
    /// The layer's activation input edge (what INT8 quantizes per tensor).
    pub input: String,
    pub weight: String,
    /// The edge the fused layer produces.
    pub output: String,
}

pub fn quantizable_layers(graph: &Graph) -> Vec<Layer> {
    let consumers = graph.consumers();
    let mut out = Vec::new();
    for (idx, node) in graph.nodes.iter().enumerate() {
        if !is_layer(graph, node) {
            continue;
        }
        let w = &graph.initializers[node.input(1).unwrap_or_default()];
        let f = fusion_of(graph, idx, &consumers);
        let fused_idx = f.fused_nodes();
        let fused: Vec<String> =
            fused_idx.iter().map(|&i| graph.nodes[i].op_type.clone()).filter(|op| op != "Transpose").collect();
        let bias = node.input(2).and_then(|b| graph.initializers.get(b)).map_or(0, |b| b.len());
        let ws = &w.shape;
        let attr_pair = |name: &str, default: Vec<usize>| -> Vec<usize> {
            node.attr()
                .ints_opt(name)
                .ok()
                .flatten()
                .map(|v| v.iter().map(|&x| x as usize).collect())
                .unwrap_or(default)
        };
        let group = node.attr().i64("group", 1).unwrap_or(1).max(1) as usize;
        let in_shape = graph.static_shape_of(&node.inputs[0]);
        let out_shape = graph.static_shape_of(&node.outputs[0]);
        let (cin, cout, kernel, stride, macs) = match node.op_type.as_str() {
            "Conv" => {
                let k = ws[2..].to_vec();
                let macs =
                    out_shape.as_ref().map_or(0, |o| o.iter().product::<usize>() * ws[1] * k.iter().product::<usize>());
                (ws[1] * group, ws[0], k.clone(), attr_pair("strides", vec![1; k.len()]), macs)
            }
            "ConvTranspose" => {
                let k = ws[2..].to_vec();
                let macs =
                    in_shape.as_ref().map_or(0, |i| i.iter().product::<usize>() * ws[1] * k.iter().product::<usize>());
                (ws[0], ws[1] * group, k.clone(), attr_pair("strides", vec![1; k.len()]), macs)
            }
            "MatMul" => {
                let macs = out_shape.as_ref().map_or(0, |o| o.iter().product::<usize>() * ws[0]);
                (ws[0], ws[1], vec![], vec![], macs)
            }
            _ => {
                let tb = node.attr().i64("transB", 0).unwrap_or(0) != 0;
                let (k, n) = if tb { (ws[1], ws[0]) } else { (ws[0], ws[1]) };
                let macs = out_shape.as_ref().map_or(0, |o| o.iter().product::<usize>() * k);
                (k, n, vec![], vec![], macs)
            }
        };
        out.push(Layer {
            index: out.len(),
            name: node.name.clone(),
            op: node.op_type.clone(),
            in_channels: cin,
            out_channels: cout,
            kernel,
            stride,
            fused,
            fused_nodes: fused_idx.iter().map(|&i| graph.nodes[i].name.clone()).collect(),
            params: w.len() + bias,
            flops: 2 * macs as u64,
            input: node.inputs[0].clone(),
            weight: node.inputs[1].clone(),
            output: f.output,
        });
    }
    out
}

/// Learned parameters, counted as PyTorch counts them: the weights and biases of the
/// quantizable layers plus the scale and shift of every BatchNormalization (running statistics
/// and other constants are not parameters).
pub fn total_params(graph: &Graph) -> usize {
    let layers: usize = quantizable_layers(graph).iter().map(|l| l.params).sum();
    let bn: usize = graph
        .nodes
        .iter()
        .filter(|n| n.op_type == "BatchNormalization")
        .flat_map(|n| [n.input(1), n.input(2)])
        .flatten()
        .filter_map(|p| graph.initializers.get(p))
        .map(|t| t.len())
        .sum();
    layers + bn
}
