#!/usr/bin/env python3
"""Export pillarq's PointPillars test models to ONNX (opset 17, static shapes, BN kept).

    export_models.py [--which small|kitti|all] [--seed N] [--out onnx/] [--cudapp]

Writes <out>/pointpillars_small.onnx and/or <out>/pointpillars_kitti.onnx (standard ONNX ops
only; the scatter is a masked ScatterND into a canvas with a dump slot), and with --cudapp
also <out>/pointpillars_kitti_cudapp.onnx: the same kitti weights in NVIDIA CUDA-PointPillars'
layout, i.e. PFN -> one custom node `PPScatterPlugin` -> backbone/neck/head.

PPScatterPlugin semantics (the consumer, e.g. pillarq's Rust side, implements it):
    inputs  : pillar features f32 [P, C], voxel_idxs i32 [P, 4] (batch, z, y, x), voxel_num i32 [1]
    attr    : dense_shape = ints [ny, nx]
    output  : canvas f32 [1, C, ny, nx]
    canvas = 0; for i in 0..voxel_num: canvas[0, :, y_i, x_i] = features[i, :]
    with (y_i, x_i) = (voxel_idxs[i, 2], voxel_idxs[i, 3]); rows >= voxel_num are ignored.

Needs the export venv (torch); see scripts/setup_venv.sh export.
"""
import argparse
import collections
import json
import os
import sys
import warnings

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pointpillars as pp  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

OPSET = 17
INPUT_NAMES = ["voxels", "voxel_idxs", "voxel_num"]
OUTPUT_NAMES = ["cls_preds", "box_preds", "dir_cls_preds"]
ALLOWED_OPS = set("""MatMul BatchNormalization Relu Reshape ReduceMax Conv ConvTranspose Concat
Transpose Pad Slice Gather Unsqueeze Squeeze Cast Shape Constant Add Sub Mul Div Sigmoid Gemm
ScatterND ScatterElements Where Less Equal Greater Range ConstantOfShape Expand Flatten
Identity""".split())
FOLD_MAX_ELEMS = 4096  # never materialise big constants (e.g. the zero canvas)
PFN_WEIGHT_NAME = "pfn.linear.weight_t"  # [10, C], the Linear weight transposed for MatMul


# ----------------------------------------------------------------------------- graph cleanup
def _const_value(node):
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
    return None


def simplify(model):
    """Constant-fold small subgraphs (pad vectors, shapes), turn Constant nodes into
    initializers, replace a big all-zero constant by ConstantOfShape, name the PFN weight."""
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    model = shape_inference.infer_shapes(model)
    g = model.graph
    static_shapes = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            static_shapes[vi.name] = [d.dim_value for d in dims]

    new_nodes = []
    zero_fills = []  # (name, shape, dtype) for big all-zero constants
    for node in g.node:
        if node.op_type == "Constant":
            val = _const_value(node)
            if val is not None and val.size > FOLD_MAX_ELEMS and not np.any(val):
                zero_fills.append((node.output[0], val.shape, val.dtype, node.name))
            else:
                consts[node.output[0]] = val
            continue
        if node.op_type == "Shape" and node.input[0] in static_shapes and not node.attribute:
            consts[node.output[0]] = np.array(static_shapes[node.input[0]], np.int64)
            continue
        if all((i in consts) or i == "" for i in node.input) and node.input:
            outs = ReferenceEvaluator(node).run(None, {i: consts[i] for i in node.input if i})
            if all(np.asarray(o).size <= FOLD_MAX_ELEMS for o in outs):
                for name, o in zip(node.output, outs):
                    consts[name] = np.asarray(o)
                continue
        new_nodes.append(node)

    # initializers: everything still referenced
    used = {i for n in new_nodes for i in n.input}
    used |= {o.name for o in g.output}
    zf_nodes = []
    for name, shape, dtype, nname in zero_fills:
        shp = name + "_shape"
        consts[shp] = np.array(shape, np.int64)
        zf_nodes.append(helper.make_node(
            "ConstantOfShape", [shp], [name], name=nname.replace("Constant", "ConstantOfShape"),
            value=numpy_helper.from_array(np.zeros(1, dtype))))
        used.add(shp)
    nodes = zf_nodes + new_nodes

    # readable PFN weight name
    rename = {}
    for n in nodes:
        if n.op_type == "MatMul" and n.name == "/pfn/linear/MatMul" and n.input[1].startswith("onnx::"):
            rename[n.input[1]] = PFN_WEIGHT_NAME
    for n in nodes:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]

    inits = []
    for name, val in consts.items():
        if name in used:
            inits.append(numpy_helper.from_array(np.array(val, order="C"), rename.get(name, name)))

    graph = helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits)
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    out.ir_version = model.ir_version
    out = _topo_sort(out)
    return shape_inference.infer_shapes(out)


def _topo_sort(model):
    g = model.graph
    avail = {i.name for i in g.input} | {i.name for i in g.initializer} | {""}
    pending, order = list(g.node), []
    while pending:
        rest = []
        for n in pending:
            if all(i in avail for i in n.input):
                order.append(n)
                avail.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError("graph has a cycle or dangling input: %s" % rest[0].name)
        pending = rest
    del g.node[:]
    g.node.extend(order)
    return model


# ----------------------------------------------------------------------------- export
def torch_export(module, args, path, input_names, output_names):
    kw = dict(opset_version=OPSET, do_constant_folding=True, input_names=input_names,
              output_names=output_names, training=torch.onnx.TrainingMode.PRESERVE)
    try:
        torch.onnx.export(module, args, path, dynamo=False, **kw)
    except TypeError:  # torch without the dynamo switch: TorchScript exporter is the only one
        torch.onnx.export(module, args, path, **kw)
    m = onnx.load(path)  # weights are embedded (TorchScript exporter, < 2 GB)
    return simplify(m)


def finish(model, cfg, layout, seed, doc):
    model.producer_name = "pillarq-export"
    model.producer_version = torch.__version__
    model.doc_string = doc
    del model.metadata_props[:]
    p = model.metadata_props.add()
    p.key = "pointpillars"
    p.value = json.dumps(pp.metadata(cfg, layout, seed))
    return model


def sample_args(cfg, seed):
    from make_random_inputs import make_pillar_inputs
    v, i, n = make_pillar_inputs(cfg, cfg["max_pillars"], int(0.6 * cfg["max_pillars"]), seed)
    return torch.from_numpy(v), torch.from_numpy(i), torch.from_numpy(n)


def export_standard(model, path, seed):
    cfg = model.cfg
    args = sample_args(cfg, seed + 99)
    m = torch_export(model, args, path, INPUT_NAMES, OUTPUT_NAMES)
    nx, ny, _ = pp.grid_size(cfg)
    m = finish(m, cfg, "standard", seed,
               f"PointPillars ({cfg['name']}, {nx}x{ny} grid, random seeded weights), standard ONNX "
               f"ops, masked ScatterND scatter; made by pillarq scripts/export_models.py")
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, path)
    return m, args


def export_cudapp(model, path, seed, tmpdir):
    """Same weights as the standard model; PFN -> PPScatterPlugin -> dense part."""
    cfg = model.cfg
    nx, ny, _ = pp.grid_size(cfg)
    C = cfg["pfn_filters"]
    voxels, idxs, num = sample_args(cfg, seed + 99)
    pfn = torch_export(pp.PFNOnly(model.pfn).eval(), (voxels,), os.path.join(tmpdir, "pfn.onnx"),
                       ["voxels"], ["pillar_features"])
    canvas = torch.zeros(1, C, ny, nx)
    dense = torch_export(pp.DenseNet(model.backbone, model.head).eval(), (canvas,),
                         os.path.join(tmpdir, "dense.onnx"), ["spatial_features"], OUTPUT_NAMES)

    # names must not clash between the two parts (apart from the connecting tensors)
    def names(g):
        s = {i.name for i in g.initializer} | {i.name for i in g.input}
        for n in g.node:
            s.update(n.output)
        return s
    clash = (names(pfn.graph) & names(dense.graph)) - {"voxels"}
    if clash:
        raise RuntimeError(f"name clash while stitching: {sorted(clash)[:5]}")

    scatter = helper.make_node(
        "PPScatterPlugin", ["pillar_features", "voxel_idxs", "voxel_num"], ["spatial_features"],
        name="/scatter/PPScatterPlugin", dense_shape=[ny, nx])
    pg, dg = pfn.graph, dense.graph
    inputs = [pg.input[0],
              helper.make_tensor_value_info("voxel_idxs", onnx.TensorProto.INT32, [cfg["max_pillars"], 4]),
              helper.make_tensor_value_info("voxel_num", onnx.TensorProto.INT32, [1])]
    value_info = list(pg.value_info) + list(pg.output) + list(dg.value_info) + [
        helper.make_tensor_value_info("spatial_features", onnx.TensorProto.FLOAT, [1, C, ny, nx])]
    graph = helper.make_graph(list(pg.node) + [scatter] + list(dg.node), "pointpillars_cudapp",
                              inputs, list(dg.output), list(pg.initializer) + list(dg.initializer),
                              value_info=value_info)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = pfn.ir_version
    m = finish(m, cfg, "cudapp", seed,
               "PointPillars (kitti, random seeded weights) in NVIDIA CUDA-PointPillars layout: "
               "PFN -> PPScatterPlugin(dense_shape=[ny,nx]) -> backbone/neck/head")
    onnx.save(m, path)  # no checker: PPScatterPlugin is not a standard op
    return m, (voxels, idxs, num)


# ----------------------------------------------------------------------------- reporting
def op_histogram(m):
    return dict(sorted(collections.Counter(n.op_type for n in m.graph.node).items()))


def report(path, m, model, standard=True):
    hist = op_histogram(m)
    params = sum(p.numel() for p in model.parameters())
    n_init = sum(int(np.prod(i.dims)) for i in m.graph.initializer)
    print(f"== {path}")
    print(f"   size {os.path.getsize(path) / 1e6:.2f} MB, params {params} (torch; {n_init} initializer "
          f"elements incl. BN stats), FLOPs {pp.count_flops(model) / 1e9:.3f} G (2*MACs)")
    print(f"   ops {json.dumps(hist)}")
    bad = sorted(set(hist) - ALLOWED_OPS - ({"PPScatterPlugin"} if not standard else set()))
    if bad:
        raise RuntimeError(f"{path}: ops outside the allowed set: {bad}")
    if hist.get("BatchNormalization", 0) != 20:
        raise RuntimeError(f"{path}: expected 20 BatchNormalization nodes, got {hist.get('BatchNormalization')}")
    q = [n.name for n in m.graph.node if n.op_type in ("MatMul", "Conv", "ConvTranspose")]
    if len(q) != 23:
        raise RuntimeError(f"{path}: expected 23 quantizable layers, got {len(q)}")
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        print(f"   {'in ' if vi in m.graph.input else 'out'} {vi.name} "
              f"{onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type)} {dims}")


def check_ort(path, model, args):
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = dict(zip(INPUT_NAMES, [a.numpy() for a in args]))
    outs = sess.run(OUTPUT_NAMES, feeds)
    with torch.no_grad():
        ref = model(*args)
    for name, o, r in zip(OUTPUT_NAMES, outs, ref):
        err = float(np.abs(o - r.numpy()).max())
        print(f"   ORT vs torch {name}: max abs err {err:.2e}")
        if err > 1e-3:
            raise RuntimeError(f"{path}: ORT disagrees with torch on {name} ({err})")
    # padding rows must not matter: zero them (and their coordinates) and expect identical outputs
    k = int(feeds["voxel_num"][0])
    clean = {n: v.copy() for n, v in feeds.items()}
    clean["voxels"][k:] = 0
    clean["voxel_idxs"][k:] = 0
    outs2 = sess.run(OUTPUT_NAMES, clean)
    same = all(np.array_equal(a, b) for a, b in zip(outs, outs2))
    print(f"   garbage padding rows ignored: {same}")
    if not same:
        raise RuntimeError(f"{path}: padding rows leak into the outputs")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--which", choices=["small", "kitti", "all"], default="all")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx")))
    ap.add_argument("--cudapp", action="store_true", help="also write pointpillars_kitti_cudapp.onnx")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    import tempfile

    names = ["small", "kitti"] if a.which == "all" else [a.which]
    if a.cudapp and "kitti" not in names:
        names.append("kitti")
    for name in names:
        model = pp.build_model(name, a.seed)
        path = os.path.join(a.out, f"pointpillars_{name}.onnx")
        m, args = export_standard(model, path, a.seed)
        report(path, m, model)
        check_ort(path, model, args)
        if name == "small":
            q = [n.name for n in m.graph.node if n.op_type in ("MatMul", "Conv", "ConvTranspose")]
            print("   quantizable layers: " + ", ".join(q))
        if name == "kitti" and a.cudapp:
            cpath = os.path.join(a.out, "pointpillars_kitti_cudapp.onnx")
            with tempfile.TemporaryDirectory() as td:
                cm, _ = export_cudapp(model, cpath, a.seed, td)
            report(cpath, cm, model, standard=False)
            # same weights, bit for bit, under the same names
            std = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
            cud = {i.name: numpy_helper.to_array(i) for i in cm.graph.initializer}
            wnames = [k for k in std if k.endswith(("weight", "bias", "running_mean", "running_var",
                                                    "weight_t"))]
            diff = [k for k in wnames if k not in cud or cud[k].tobytes() != std[k].tobytes()]
            if diff:
                raise RuntimeError(f"cudapp weights differ from the standard model: {diff[:5]}")
            print(f"   {len(wnames)} weight tensors identical to {os.path.basename(path)}")


if __name__ == "__main__":
    main()
