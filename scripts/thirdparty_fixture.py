#!/usr/bin/env python3
"""Write third-party-style exports of a pillarq model, for the "bring your own model" tests.

    thirdparty_fixture.py [--model onnx/pointpillars_small.onnx] --out DIR

Writes, from the bundled model's weights (numpy + onnx only; the test venv has both):

- DIR/pointpillar_nvidia.onnx: the model as NVIDIA CUDA-PointPillars' exporter (torch.onnx.export
  at opset 11 in eval mode, keep_initializers_as_inputs, then onnx-graphsurgeon) writes it:
  opset 11, IR version 6; PyTorch-1.x node names (`MatMul_1`, `Conv_12`) and numbered tensors;
  the pillar net as Reshape [P*32, 10] -> MatMul -> 2-D BatchNormalization -> Relu -> Reshape
  [P, 32, C] -> ReduceMax; the scatter as one custom node `PPScatter_0` (op PPScatterPlugin,
  attribute dense_shape [ny, nx]); every Conv + BatchNormalization of the backbone folded into
  the Conv (what torch's eval-mode export does), the ConvTranspose + BatchNormalization of the neck
  left as they are; weights listed as graph inputs too; inputs voxels f32 [P, 32, 10], voxel_idxs
  i32 [P, 4], voxel_num i32 [1]; NHWC outputs cls_preds, box_preds, dir_cls_preds; no metadata.
- DIR/pointpillar_mmdet9.onnx: an mmdetection3d-style variant: 9 point features (x, y, z,
  intensity, 3 offsets to the points' mean, 2 offsets to the pillar centre: the PFN weight row of
  the z offset to the centre dropped), inputs `voxels` [1, P, 32, 9], `coors` int64 [1, P, 4],
  `num_voxels` int64 [1], NCHW outputs `cls_score`, `bbox_pred`, `dir_cls_pred`; no metadata.

Both compute the bundled model's function (the first exactly up to float rounding of the folded
BatchNorms; the second without the dropped feature).
"""
import argparse
import json
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    """PyTorch-1.x-style names: nodes `<Op>_<n>`, intermediate tensors numbered."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def tensor(self):
        self.n += 1
        return str(self.n + 100)

    def init(self, arr, prefix="onnx::"):
        name = f"{prefix}{self.tensor()}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op, inputs, out=None, name=None, **attrs):
        out = out or self.tensor()
        name = name or f"{op}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out


def attrs_of(node, drop=()):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name not in drop}


def rewrite(model, variant):
    g = model.graph
    meta = json.loads({p.key: p.value for p in model.metadata_props}["pointpillars"])
    nx, ny, _ = meta["grid_size"]
    w = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    P, M, F = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]
    b = Builder()
    mm9 = variant == "mmdet9"

    wt = w["pfn.linear.weight_t"]  # [10, C]
    if mm9:
        wt = wt[:9]  # drop zp (offset of z to the pillar centre)
        F = 9
    C = wt.shape[1]
    vox_name, idx_name, num_name = ("voxels", "coors", "num_voxels") if mm9 else ("voxels", "voxel_idxs", "voxel_num")
    flat = b.node("Reshape", [vox_name, b.init(np.array([P * M, F], np.int64))])
    x = b.node("MatMul", [flat, b.init(wt.astype(np.float32))])
    bn = [b.init(w[f"pfn.norm.{k}"]) for k in ("weight", "bias", "running_mean", "running_var")]
    x = b.node("BatchNormalization", [x] + bn, epsilon=1e-3, momentum=0.99)
    x = b.node("Relu", [x])
    x = b.node("Reshape", [x, b.init(np.array([P, M, C], np.int64))])
    pillar = b.node("ReduceMax", [x], axes=[1], keepdims=0)
    idx, num = idx_name, num_name
    if mm9:
        idx = b.node("Reshape", [idx_name, b.init(np.array([P, 4], np.int64))])
        idx = b.node("Cast", [idx], to=TensorProto.INT32)
        num = b.node("Cast", [num_name], to=TensorProto.INT32)
    canvas = b.node("PPScatterPlugin", [pillar, idx, num], name="PPScatter_0", dense_shape=[ny, nx])

    # The dense part: copy from the first Pad on, folding Conv + BatchNormalization.
    nodes = list(g.node)
    start = next(i for i, n in enumerate(nodes) if n.op_type == "Pad")
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    rename = {nodes[start].input[0]: canvas}
    skip = set()
    outputs = {o.name for o in g.output}
    for n in nodes[start:]:
        if n.name in skip:
            continue
        ins = [rename.get(i, i) for i in n.input]
        out = n.output[0]
        keep_name = None
        if n.op_type == "Transpose" and out in outputs:
            if mm9:  # NCHW outputs: no transpose
                rename[out] = rename[n.input[0]]
                continue
            keep_name = out
        if n.op_type == "Conv":
            nxt = consumers.get(out, [])
            wk, bias = w[n.input[1]], (w[n.input[2]] if len(n.input) > 2 else None)
            if len(nxt) == 1 and nxt[0].op_type == "BatchNormalization":
                bnn = nxt[0]
                g_, b_, m_, v_ = (w[i] for i in bnn.input[1:])
                eps = attrs_of(bnn)["epsilon"]
                s = g_ / np.sqrt(v_ + eps)
                wk = wk * s[:, None, None, None]
                bias = b_ - m_ * s + (bias * s if bias is not None else 0)
                skip.add(bnn.name)
                out = bnn.output[0]
            conv_ins = [ins[0], b.init(wk.astype(np.float32))]
            if bias is not None:
                conv_ins.append(b.init(np.asarray(bias, np.float32)))
            rename[out] = b.node("Conv", conv_ins, **attrs_of(n))
            continue
        new_ins = []
        for i in ins:
            new_ins.append(b.init(w[i]) if i in w else i)
        if n.op_type == "Pad":
            new_ins = [new_ins[0], b.init(w[n.input[1]].astype(np.int64)), b.init(np.array(0.0, np.float32))]
        drop = ("training_mode",) if n.op_type == "BatchNormalization" else ()
        rename[out] = b.node(n.op_type, new_ins, out=keep_name, **attrs_of(n, drop))

    if mm9:
        heads = ("cls_score", "bbox_pred", "dir_cls_pred")
        renamed = {rename[o.name]: h for o, h in zip(g.output, heads)}
        for nd in b.nodes:
            nd.output[:] = [renamed.get(o, o) for o in nd.output]
        h, wd = ny // meta["feature_map_stride"], nx // meta["feature_map_stride"]
        outs = [helper.make_tensor_value_info(hn, TensorProto.FLOAT, [1, c, h, wd])
                for hn, c in zip(heads, (18, 42, 12))]
        ins = [helper.make_tensor_value_info("voxels", TensorProto.FLOAT, [1, P, M, F]),
               helper.make_tensor_value_info("coors", TensorProto.INT64, [1, P, 4]),
               helper.make_tensor_value_info("num_voxels", TensorProto.INT64, [1])]
    else:
        outs = list(g.output)
        ins = [helper.make_tensor_value_info("voxels", TensorProto.FLOAT, [P, M, F]),
               helper.make_tensor_value_info("voxel_idxs", TensorProto.INT32, [P, 4]),
               helper.make_tensor_value_info("voxel_num", TensorProto.INT32, [1])]
        # keep_initializers_as_inputs=True: the weights are graph inputs too.
        ins += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.inits]
    graph = helper.make_graph(b.nodes, "torch-jit-export", ins, outs, b.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="pytorch",
                          producer_version="1.10")
    m.ir_version = 6
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--model", default=os.path.join(root, "onnx", "pointpillars_small.onnx"))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    src = onnx.load(a.model)
    for variant, name in (("nvidia", "pointpillar_nvidia.onnx"), ("mmdet9", "pointpillar_mmdet9.onnx")):
        m = rewrite(src, variant)
        onnx.save(m, os.path.join(a.out, name))  # no checker: PPScatterPlugin is not a standard op
        print(os.path.join(a.out, name))


if __name__ == "__main__":
    main()
