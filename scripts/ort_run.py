#!/usr/bin/env python3
"""Run an ONNX model in onnxruntime (CPU) on .npy inputs; the peer check for pillarq.

    ort_run.py MODEL --input NAME=FILE.npy [--input ...] --out DIR
               [--threads N] [--repeat R --warmup W]

Writes DIR/<output name>.npy for every model output. A float32 array given for a float16 input
is converted (rounded to nearest) to float16. With --repeat R, also times R runs
after W warm-ups and prints one JSON line {"median_ms", "p90_ms", "runs", "threads"}.
Session: CPU provider, intra_op_num_threads=N, inter_op_num_threads=1, sequential execution,
all graph optimizations.

A model in CUDA-PointPillars layout (one custom `PPScatterPlugin` node) is run in two ORT
sessions (the part before the plugin, the part after) with the plugin done in numpy:
canvas = 0; for i < voxel_num: canvas[0, :, idx[i,2], idx[i,3]] = features[i].
"""
import argparse
import json
import os
import sys
import time

import numpy as np

ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_,
}


PLUGIN = "PPScatterPlugin"


def has_plugin(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    return any(n.op_type == PLUGIN for n in m.graph.node)


class _Info:
    def __init__(self, vi):
        import onnx
        t = vi.type.tensor_type
        self.name = vi.name
        self.type = "tensor(%s)" % {1: "float", 6: "int32", 7: "int64", 10: "float16"}.get(t.elem_type, "?")
        self.shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]


class SplitSession:
    """Runs a graph with one PPScatterPlugin node as ORT(part A) -> numpy scatter -> ORT(part B)."""

    def __init__(self, path, so):
        import onnx
        import onnxruntime as ort
        from onnx import helper

        m = onnx.load(path)
        g = m.graph
        nodes = list(g.node)
        k = [i for i, n in enumerate(nodes) if n.op_type == PLUGIN]
        if len(k) != 1:
            raise ValueError(f"expected one {PLUGIN} node, found {len(k)}")
        plug = nodes[k[0]]
        self.feat_name, self.idx_name, self.num_name = plug.input[:3]
        self.canvas_name = plug.output[0]
        self.dense_shape = [a.ints for a in plug.attribute if a.name == "dense_shape"][0]
        inits = {i.name: i for i in g.initializer}
        vis = {v.name: v for v in list(g.value_info) + list(g.input) + list(g.output)}

        def sub(part, ins, outs):
            used = {i for n in part for i in n.input}
            gi = [vis[n] if n in vis else helper.make_tensor_value_info(n, 1, None) for n in ins]
            go = [vis[n] if n in vis else helper.make_tensor_value_info(n, 1, None) for n in outs]
            sg = helper.make_graph(part, "part", gi, go, [inits[n] for n in used if n in inits])
            sm = helper.make_model(sg, opset_imports=list(m.opset_import))
            sm.ir_version = m.ir_version
            return ort.InferenceSession(sm.SerializeToString(), so, providers=["CPUExecutionProvider"])

        before, after = nodes[: k[0]], nodes[k[0] + 1:]
        produced = {o for n in before for o in n.output}
        self.a_inputs = [i.name for i in g.input if any(i.name in n.input for n in before)]
        self.a = sub(before, self.a_inputs, [self.feat_name])
        self.b = sub(after, [self.canvas_name], [o.name for o in g.output])
        assert self.feat_name in produced
        self._inputs = [_Info(i) for i in g.input]
        self._outputs = [_Info(o) for o in g.output]

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def run(self, out_names, feeds):
        feats = self.a.run([self.feat_name], {n: feeds[n] for n in self.a_inputs})[0]
        idx, num = feeds[self.idx_name], int(feeds[self.num_name].reshape(-1)[0])
        ny, nx = self.dense_shape
        canvas = np.zeros((1, feats.shape[1], ny, nx), np.float32)
        canvas[0, :, idx[:num, 2], idx[:num, 3]] = feats[:num]  # advanced index -> [num, C]
        return self.b.run(out_names, {self.canvas_name: canvas})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-optimize", action="store_true",
                    help="graph optimizations off (Q/DQ models: no fusion into QLinearConv, whose "
                         "requantization rounds differently from TensorRT's explicit quantization)")
    ap.add_argument("--check", action="store_true",
                    help="first run onnx.checker.check_model(full_check=True) on the model")
    a = ap.parse_args(argv)

    if not os.path.isfile(a.model):
        sys.exit(f"error: model file not found: {a.model}")
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if a.no_optimize
                                   else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    if a.check:
        import onnx
        try:
            onnx.checker.check_model(onnx.load(a.model), full_check=True)
        except Exception as e:
            sys.exit(f"error: {a.model} fails onnx.checker.check_model(full_check=True): {e}")
        print(f"{a.model}: onnx.checker full_check OK", file=sys.stderr)
    try:
        if has_plugin(a.model):
            sess = SplitSession(a.model, so)
        else:
            sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # e.g. an unknown custom op
        sys.exit(f"error: onnxruntime cannot load {a.model}: {e}")

    model_inputs = {i.name: i for i in sess.get_inputs()}
    feeds = {}
    for spec in a.input:
        if "=" not in spec:
            sys.exit(f"error: --input wants NAME=FILE.npy, got {spec!r}")
        name, path = spec.split("=", 1)
        if name not in model_inputs:
            sys.exit(f"error: model has no input {name!r}; inputs are {sorted(model_inputs)}")
        if not os.path.isfile(path):
            sys.exit(f"error: input file not found: {path}")
        arr = np.load(path)
        want = ORT_TYPES.get(model_inputs[name].type)
        if want == np.float16 and arr.dtype == np.float32:
            arr = arr.astype(np.float16)  # pillarq writes no float16 .npy; its values are f16-rounded
        if want is not None and arr.dtype != want:
            sys.exit(f"error: input {name!r} from {path} has dtype {arr.dtype}, "
                     f"model wants {model_inputs[name].type}")
        shape = model_inputs[name].shape
        if len(shape) != arr.ndim or any(isinstance(d, int) and d != s for d, s in zip(shape, arr.shape)):
            sys.exit(f"error: input {name!r} from {path} has shape {list(arr.shape)}, model wants {shape}")
        feeds[name] = arr
    missing = sorted(set(model_inputs) - set(feeds))
    if missing:
        sys.exit(f"error: missing --input for {missing}")

    out_names = [o.name for o in sess.get_outputs()]
    outs = sess.run(out_names, feeds)
    os.makedirs(a.out, exist_ok=True)
    for name, val in zip(out_names, outs):
        np.save(os.path.join(a.out, f"{name}.npy"), val)
        print(f"{name}: {list(val.shape)} {val.dtype}", file=sys.stderr)

    if a.repeat > 0:
        for _ in range(a.warmup):
            sess.run(out_names, feeds)
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            sess.run(out_names, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({
            "median_ms": round(float(np.median(times)), 4),
            "p90_ms": round(float(np.percentile(times, 90)), 4),
            "runs": a.repeat, "threads": a.threads,
        }))


if __name__ == "__main__":
    main()
