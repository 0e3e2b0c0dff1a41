#!/usr/bin/env python3
"""Build an explicitly quantized Q/DQ ONNX model from a pillarq PrecisionPlan (independent reference).

    qdq_reference.py MODEL.onnx PLAN.json OUT.onnx [--check INPUT_DIR --out-dir DIR]
                     [--fp16 native|emulate]

The reference for pillarq's CPU simulation of a plan (src/exec/cpu/precision.rs): the Q/DQ model
written here, run by onnxruntime, must give the same outputs as `pillarq infer --plan PLAN.json`
up to float summation order (and, for FP16 layers, ORT's float16 kernels).

What it builds, with numpy + onnx only (no pillarq code):

1. BatchNormalization is folded into the layer before it, for EVERY quantizable layer with one
   (whatever its precision), so all plans share one float graph:
   Conv -> BN (weight [Cout, Cin, kh, kw], channel axis 0), ConvTranspose -> BN (weight
   [Cin, Cout/g, kh, kw], channel axis 1), MatMul -> BN on a 2-D output, and OpenPCDet's PFN
   pattern MatMul -> Transpose(0,2,1) -> BN -> Transpose(0,2,1) (weight [K, N], channel axis 1;
   the folded bias becomes an Add after the MatMul). With s = gamma / sqrt(var + eps) and
   t = beta - mean * s, all in float32 as pillarq does: w' = w * s[c], b' = (b or 0) * s + t.
   The BN node (and the two Transposes) are removed; consumers read the same tensor names.
   A BN is only folded when it (and each Transpose) is the sole reader of the edge before it and
   that edge is no graph output, as in pillarq's graph/fold.rs.
2. Per layer (Conv, ConvTranspose, MatMul with a constant 2-D weight; named by ONNX node name),
   precision = plan.layers.get(name, plan.default):
   - int8: input 0 of the layer node -> QuantizeLinear(scale = amax / 127, zero point int8 0)
     -> DequantizeLinear, amax = plan.calibration.activations[name].amax. (For the backbone's
     stride-2 convs, input 0 is the ZeroPad (Pad) output: quantizing after a zero pad equals
     quantizing before it, since 0 maps to 0.) The folded weight is quantized per output channel,
     symmetric: amax_c = max|w'_c| (1.0 for an all-zero channel), scale_c = amax_c / 127
     (rounded up to a power of two when plan.calibration.pow2_scales is true),
     q = clip(round_half_even(w' / scale_c), -128, 127), stored as an INT8 initializer and read
     through DequantizeLinear(q, scale, zeros, axis = 0 Conv / 1 ConvTranspose and MatMul).
     All of it in float32, like Rust's `(x / scale).round_ties_even()`. The bias stays float32.
   - fp16 (--fp16 native, the default): Cast(float16) on input 0, weights and bias as float16
     initializers, the layer (and the PFN's bias Add) in float16, then Cast back to float32 on
     the layer's output. ORT's CPU float16 kernels do not give the f32-accumulated result
     rounded once to f16: the MatMul output is an f16 tensor (rounded before the bias Add), and
     its float16 MatMul differs from that too (on the small model's PFN output: 5e-4 of max).
     --fp16 emulate instead writes pillarq's simulation exactly: Cast(f16) -> Cast(f32) on the
     input, f16-rounded weights and bias stored as float32, the layer (and Add) in float32,
     then Cast(f16) -> Cast(f32) on the output.
   - fp32: the folded float32 weights, nothing else.
   Inserted nodes are named after the layer: <layer>/act_q, <layer>/act_dq, <layer>/w_dq,
   <layer>/cast_in, <layer>/cast_out, <layer>/bias_add (emulate: also
   <layer>/cast_in_back, <layer>/cast_out_back). The layer node keeps its name.
   The opset stays 17 (per-axis DequantizeLinear needs 13+). The result passes
   onnx.checker.check_model(full_check=True).

--check INPUT_DIR --out-dir DIR runs the built model in onnxruntime on INPUT_DIR/{voxels,
voxel_idxs,voxel_num}.npy and writes DIR/<output>.npy (cls_preds, box_preds, dir_cls_preds).

Plan errors (unknown layer names, an int8 layer with no activation amax, an unknown precision
word, unknown top-level keys) exit with status 1 and name the layer or key.
"""
import argparse
import base64
import copy
import json
import os
import sys

import numpy as np

PRECISIONS = ("int8", "fp16", "fp32")
PLAN_KEYS = {"default", "layers", "calibration"}
LAYER_OPS = ("Conv", "ConvTranspose", "MatMul")
INPUT_NAMES = ("voxels", "voxel_idxs", "voxel_num")
F32 = np.float32


class RefError(Exception):
    """A problem with the model or the plan; printed as `error: ...`, exit status 1."""


# ---------------------------------------------------------------------------------------------
# plan


def load_plan(path):
    """Returns (default, {layer: precision}, {layer: amax float32}, pow2 weight scales?,
    {layer: {"input_mul": float32 array, "bias": float32 array, "weights": int8 levels}}) from a
    PrecisionPlan JSON. The last are a PTQ recipe's refinements (calibration.layers): input
    equalization, corrected biases and rounded weight levels, used by INT8 layers only."""
    try:
        with open(path) as f:
            plan = json.load(f)
    except FileNotFoundError:
        raise RefError(f"plan file not found: {path}")
    except json.JSONDecodeError as e:
        raise RefError(f"plan {path} is not valid JSON: {e}")
    if not isinstance(plan, dict):
        raise RefError(f"plan {path}: expected a JSON object")
    unknown = sorted(set(plan) - PLAN_KEYS)
    if unknown:
        raise RefError(f"plan {path}: unknown key(s) {unknown}; allowed: {sorted(PLAN_KEYS)}")
    if "default" not in plan:
        raise RefError(f"plan {path}: missing 'default' precision")

    def word(w, where):
        # pillarq's serde form: exactly the lowercase words
        if w not in PRECISIONS:
            raise RefError(f"plan {path}: bad precision {w!r} for {where}: use int8, fp16 or fp32")
        return w

    default = word(plan["default"], "'default'")
    layers = plan.get("layers") or {}
    if not isinstance(layers, dict):
        raise RefError(f"plan {path}: 'layers' must be an object {{layer name: precision}}")
    layers = {name: word(p, f"layer {name!r}") for name, p in layers.items()}

    amax = {}
    pow2 = False
    refined = {}
    calib = plan.get("calibration")
    if calib is not None:
        acts = calib.get("activations") if isinstance(calib, dict) else None
        if not isinstance(acts, dict):
            raise RefError(f"plan {path}: 'calibration' must hold an 'activations' object")
        for name, a in acts.items():
            v = a.get("amax") if isinstance(a, dict) else None
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise RefError(f"plan {path}: calibration.activations[{name!r}] has no numeric 'amax'")
            # serde_json reads the number as f64 and narrows it to f32, as here
            amax[name] = F32(float(v))
        pow2 = calib.get("pow2_scales", False)
        if not isinstance(pow2, bool):
            raise RefError(f"plan {path}: calibration.pow2_scales must be true or false")
        for name, r in (calib.get("layers") or {}).items():
            if not isinstance(r, dict):
                raise RefError(f"plan {path}: calibration.layers[{name!r}] must be an object")
            refined[name] = {k: np.array(r[k], dtype=F32) for k in ("input_mul", "bias") if k in r}
            if "weights" in r:
                # INT8 levels of the (folded, equalized) weight, base64 of the int8 bytes
                refined[name]["weights"] = np.frombuffer(base64.b64decode(r["weights"]), dtype=np.int8)
    return default, layers, amax, pow2, refined


# ---------------------------------------------------------------------------------------------
# graph helpers


def attr(node, name, default=None):
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def find_layers(graph, inits):
    """Quantizable layers in graph order: Conv / ConvTranspose / MatMul with a constant weight
    (MatMul: 2-D). Gemm is a pillarq layer op too but is not supported by this reference."""
    out = []
    for i, n in enumerate(graph.node):
        if n.op_type == "Gemm" and len(n.input) > 1 and n.input[1] in inits:
            raise RefError(f"layer {n.name!r}: Gemm layers are not supported by this reference")
        if n.op_type not in LAYER_OPS or len(n.input) < 2 or n.input[1] not in inits:
            continue
        if n.op_type == "MatMul" and inits[n.input[1]].ndim != 2:
            continue
        if not n.name:
            raise RefError(f"a {n.op_type} node reading {n.input[1]!r} has no name (layers are named by node name)")
        out.append(i)
    return out


def fusion_of(graph, idx, inits, consumers, outputs, ranks):
    """(bn index, (transpose1, transpose2) or None, fused output edge) after layer `idx`."""
    nodes = graph.node
    node = nodes[idx]

    def sole(edge):
        if edge in outputs:
            return None
        c = consumers.get(edge, [])
        if len(c) == 1 and nodes[c[0]].input[0] == edge:
            return c[0]
        return None

    def bn_ok(n):
        return (n.op_type == "BatchNormalization"
                and all(o == "" for o in n.output[1:])
                and len(n.input) >= 5
                and all(n.input[k] in inits for k in range(1, 5))
                and not attr(n, "training_mode", 0))

    out = node.output[0]
    c = sole(out)
    if c is None:
        return None, None, out
    n = nodes[c]
    rank = ranks.get(out)
    if bn_ok(n) and (node.op_type in ("Conv", "ConvTranspose") or rank == 2):
        return c, None, n.output[0]
    if (node.op_type == "MatMul" and n.op_type == "Transpose" and rank == 3
            and list(attr(n, "perm", [])) == [0, 2, 1]):
        b = sole(n.output[0])
        if b is not None and bn_ok(nodes[b]):
            t2 = sole(nodes[b].output[0])
            if t2 is not None and nodes[t2].op_type == "Transpose" and list(attr(nodes[t2], "perm", [])) == [0, 2, 1]:
                return b, (c, t2), nodes[t2].output[0]
    return None, None, out


def bn_scale_shift(bn, inits):
    """pillarq's ops_math::bn_scale_shift, in float32."""
    eps = F32(attr(bn, "epsilon", 1e-5))
    g, b, m, v = (inits[bn.input[k]].astype(F32) for k in range(1, 5))
    scale = (g / np.sqrt(v + eps)).astype(F32)
    shift = (b - m * scale).astype(F32)
    return scale, shift


def out_channels(node, w):
    if node.op_type == "Conv":
        return w.shape[0]
    if node.op_type == "ConvTranspose":
        return w.shape[1] * max(int(attr(node, "group", 1)), 1)
    return w.shape[1]  # MatMul [K, N]


def fold_bn(node, w, b, bn, inits):
    """Returns (w', b') with `bn` folded into layer `node`, in float32."""
    scale, shift = bn_scale_shift(bn, inits)
    c = scale.shape[0]
    if out_channels(node, w) != c:
        raise RefError(f"BatchNormalization {bn.name!r} has {c} channels but {node.name!r} "
                       f"produces {out_channels(node, w)}")
    if node.op_type == "Conv":
        s = scale.reshape((c,) + (1,) * (w.ndim - 1))
    elif node.op_type == "ConvTranspose":
        g = max(int(attr(node, "group", 1)), 1)
        cin, cog = w.shape[0], w.shape[1]
        # output channel of weight row (ci, co) = (ci // (cin/g)) * cog + co
        ch = (np.arange(cin)[:, None] // (cin // g)) * cog + np.arange(cog)[None, :]
        s = scale[ch].reshape((cin, cog) + (1,) * (w.ndim - 2))
    else:
        s = scale.reshape(1, c)
    wf = (w * s).astype(F32)
    bf = ((b if b is not None else np.zeros(c, F32)) * scale + shift).astype(F32)
    return wf, bf


def weight_axis(node):
    return 0 if node.op_type == "Conv" else 1


def pow2_ceil(s):
    """Smallest power of two >= each (positive, normal) float32 scale: s = m * 2^e, m in [0.5, 1)."""
    m, e = np.frexp(s.astype(F32))
    return np.where(m == 0.5, s, np.ldexp(F32(1.0), e)).astype(F32)


def quantize_weight(w, axis, pow2=False):
    """Per-output-channel symmetric INT8: (q int8, scale float32 [C]); pow2: scales rounded up to
    powers of two (a calibration with "pow2_scales": true)."""
    red = tuple(k for k in range(w.ndim) if k != axis)
    amax = np.abs(w).max(axis=red).astype(F32)
    amax = np.where(amax > 0, amax, F32(1.0)).astype(F32)
    scale = (amax / F32(127)).astype(F32)
    if pow2:
        scale = pow2_ceil(scale)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.round((w / scale.reshape(shape)).astype(F32))  # numpy rounds half to even
    q = np.clip(q, -128, 127).astype(np.int8)
    return q, scale


# ---------------------------------------------------------------------------------------------
# build


def input_axis(node):
    """The weight axis over input channels: Conv [Cout, Cin, ...] 1; ConvTranspose [Cin, ...] and
    MatMul [K, N] 0."""
    return 1 if node.op_type == "Conv" else 0


def build(model, default, overrides, amax, fp16_mode="native", pow2=False, refined=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    m = copy.deepcopy(model)
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    layer_idx = find_layers(g, inits)
    layer_names = [g.node[i].name for i in layer_idx]
    if len(set(layer_names)) != len(layer_names):
        raise RefError("the model has two quantizable layers with the same node name")
    unknown = sorted(set(overrides) - set(layer_names))
    if unknown:
        raise RefError(f"plan names unknown layer(s) {unknown}; the model's layers are {layer_names}")
    prec = {n: overrides.get(n, default) for n in layer_names}
    for n in layer_names:
        if prec[n] == "int8" and n not in amax:
            raise RefError(f"int8 layer {n!r} has no activation scale (calibration.activations[{n!r}].amax)")

    consumers = {}
    for i, n in enumerate(g.node):
        for e in n.input:
            if e:
                consumers.setdefault(e, []).append(i)
    outputs = {o.name for o in g.output}
    inferred = shape_inference.infer_shapes(model)
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim)
             for vi in list(inferred.graph.value_info) + list(inferred.graph.output)
             if vi.type.tensor_type.HasField("shape")}

    new_inits = []
    replaced = {}  # layer node index -> list of replacement nodes
    removed = set()
    taken = {n.name for n in g.node} | {e for n in g.node for e in list(n.input) + list(n.output)} | set(inits)

    def fresh(name):
        if name in taken:
            raise RefError(f"name clash: {name!r} already exists in the model")
        taken.add(name)
        return name

    def add_init(name, arr):
        new_inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), fresh(name)))
        return name

    for i in layer_idx:
        node = g.node[i]
        L = node.name
        w = inits[node.input[1]].astype(F32)
        b = inits[node.input[2]].astype(F32) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
            raise RefError(f"layer {L!r}: bias {node.input[2]!r} is not a constant")
        bn_i, trans, final_out = fusion_of(g, i, inits, consumers, outputs, ranks)
        if bn_i is not None:
            w, b = fold_bn(node, w, b, g.node[bn_i], inits)
            removed.add(bn_i)
            if trans:
                removed.update(trans)
        p = prec[L]
        x = node.input[0]
        seq = []
        is_mm = node.op_type == "MatMul"

        if p == "int8":
            r = (refined or {}).get(L, {})
            if "bias" in r:
                if b is None or r["bias"].shape != b.shape:
                    raise RefError(f"layer {L!r}: corrected bias of shape {r['bias'].shape} for bias {b}")
                b = r["bias"]
            q_in = x
            if "input_mul" in r:
                # x * m per input channel before the QuantizeLinear; weight input channel c / m[c]
                mul = r["input_mul"]
                conv = node.op_type in ("Conv", "ConvTranspose")
                mname = add_init(f"{L}/input_mul", mul.reshape(-1, 1, 1) if conv else mul)
                q_in = fresh(f"{L}/input_mul_output")
                seq.append(helper.make_node("Mul", [x, mname], [q_in], name=fresh(f"{L}/input_mul_node")))
                shape = [1] * w.ndim
                shape[input_axis(node)] = -1
                w = (w / mul.reshape(shape)).astype(F32)
            s_act = add_init(f"{L}/act_scale", np.array(amax[L] / F32(127), F32))
            zp_act = add_init(f"{L}/act_zero_point", np.array(0, np.int8))
            q_out, dq_out = fresh(f"{L}/act_q_output"), fresh(f"{L}/act_dq_output")
            seq.append(helper.make_node("QuantizeLinear", [q_in, s_act, zp_act], [q_out], name=fresh(f"{L}/act_q")))
            seq.append(helper.make_node("DequantizeLinear", [q_out, s_act, zp_act], [dq_out], name=fresh(f"{L}/act_dq")))
            ax = weight_axis(node)
            q, ws = quantize_weight(w, ax, pow2)
            if "weights" in r:
                # rounded levels (GPTQ) instead of round-to-nearest; the scales stay the max's
                if r["weights"].size != q.size:
                    raise RefError(f"layer {L!r}: {r['weights'].size} weight levels for a weight of {q.size}")
                q = r["weights"].reshape(q.shape)
            wq = add_init(f"{L}/w_int8", q)
            wsn = add_init(f"{L}/w_scale", ws)
            wzp = add_init(f"{L}/w_zero_point", np.zeros(ws.shape, np.int8))
            w_dq = fresh(f"{L}/w_dq_output")
            seq.append(helper.make_node("DequantizeLinear", [wq, wsn, wzp], [w_dq], name=fresh(f"{L}/w_dq"), axis=ax))
            layer_in, layer_w = dq_out, w_dq
            bias = add_init(f"{L}/bias", b) if b is not None else None
        elif p == "fp16" and fp16_mode == "native":
            cin = fresh(f"{L}/cast_in_output")
            seq.append(helper.make_node("Cast", [x], [cin], name=fresh(f"{L}/cast_in"), to=TensorProto.FLOAT16))
            layer_in = cin
            layer_w = add_init(f"{L}/weight_fp16", w.astype(np.float16))
            bias = add_init(f"{L}/bias_fp16", b.astype(np.float16)) if b is not None else None
        elif p == "fp16":  # emulate: f16-rounded values, float32 arithmetic (pillarq's simulation)
            c16, c32 = fresh(f"{L}/cast_in_output"), fresh(f"{L}/cast_in_back_output")
            seq.append(helper.make_node("Cast", [x], [c16], name=fresh(f"{L}/cast_in"), to=TensorProto.FLOAT16))
            seq.append(helper.make_node("Cast", [c16], [c32], name=fresh(f"{L}/cast_in_back"), to=TensorProto.FLOAT))
            layer_in = c32
            layer_w = add_init(f"{L}/weight_f16_rounded", w.astype(np.float16).astype(F32))
            bias = add_init(f"{L}/bias_f16_rounded", b.astype(np.float16).astype(F32)) if b is not None else None
        else:
            layer_in = x
            layer_w = add_init(f"{L}/weight", w)
            bias = add_init(f"{L}/bias", b) if b is not None else None

        # the layer node (same name, op and attributes), then the MatMul bias Add, then the Cast(s)
        # back to float32: (op, node name, extra inputs, attributes)
        tail = []
        if is_mm and bias is not None:
            tail.append(("Add", f"{L}/bias_add", [bias], {}))
        if p == "fp16" and fp16_mode == "native":
            tail.append(("Cast", f"{L}/cast_out", [], {"to": TensorProto.FLOAT}))
        elif p == "fp16":  # float32 result -> f16 -> float32
            tail.append(("Cast", f"{L}/cast_out", [], {"to": TensorProto.FLOAT16}))
            tail.append(("Cast", f"{L}/cast_out_back", [], {"to": TensorProto.FLOAT}))
        core_out = final_out if not tail else fresh(f"{L}/layer_output")
        ins = [layer_in, layer_w] + ([bias] if bias is not None and not is_mm else [])
        core = helper.make_node(node.op_type, ins, [core_out], name=L, domain=node.domain or None)
        core.attribute.extend(node.attribute)
        seq.append(core)
        prev = core_out
        for k, (op, nm, extra, kw) in enumerate(tail):
            o = final_out if k == len(tail) - 1 else fresh(f"{nm}_output")
            seq.append(helper.make_node(op, [prev] + extra, [o], name=fresh(nm), **kw))
            prev = o
        replaced[i] = seq

    nodes = []
    for i, n in enumerate(g.node):
        if i in removed:
            continue
        nodes.extend(replaced.get(i, [n]))
    del g.node[:]
    g.node.extend(nodes)

    used = {e for n in g.node for e in n.input}
    keep = [t for t in g.initializer if t.name in used] + [t for t in new_inits if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    produced = {e for n in g.node for e in n.output}
    vis = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(vis)

    opset = next((o for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset.version < 13:
        raise RefError("the model's default opset is below 13 (per-axis DequantizeLinear needs 13)")
    summary = {p: sum(1 for n in layer_names if prec[n] == p) for p in PRECISIONS}
    m.doc_string = f"pillarq qdq_reference: {summary}"
    try:
        onnx.checker.check_model(m, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise RefError(f"the built model fails onnx.checker (full_check): {e}")
    return m, prec


# ---------------------------------------------------------------------------------------------
# check run


def run_ort(model_bytes, input_dir, out_dir):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # No graph optimizations: with them ORT fuses DequantizeLinear -> Conv/MatMul and
    # QuantizeLinear into integer kernels (QLinearConv, ...), whose rounding and requantization
    # differ from the plain fake-quantized float computation pillarq simulates.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        path = os.path.join(input_dir, f"{inp.name}.npy")
        if not os.path.isfile(path):
            raise RefError(f"input file not found: {path} (model input {inp.name!r})")
        feeds[inp.name] = np.load(path)
    names = [o.name for o in sess.get_outputs()]
    outs = sess.run(names, feeds)
    os.makedirs(out_dir, exist_ok=True)
    for name, v in zip(names, outs):
        np.save(os.path.join(out_dir, f"{name}.npy"), v)
        print(f"{name}: {list(v.shape)} {v.dtype} -> {os.path.join(out_dir, name + '.npy')}", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="float ONNX model (BatchNormalization not yet folded)")
    ap.add_argument("plan", help="pillarq PrecisionPlan JSON")
    ap.add_argument("out", help="where to write the Q/DQ ONNX model")
    ap.add_argument("--check", metavar="INPUT_DIR",
                    help="run the built model in onnxruntime on INPUT_DIR/{voxels,voxel_idxs,voxel_num}.npy")
    ap.add_argument("--out-dir", metavar="DIR", help="with --check: where to write <output>.npy")
    ap.add_argument("--fp16", choices=("native", "emulate"), default="native",
                    help="FP16 layers: 'native' = float16 tensors and ORT's float16 kernels (default); "
                         "'emulate' = f16-rounded input/weights/bias/output around a float32 layer, "
                         "which is exactly pillarq's simulation (ORT's CPU float16 MatMul/Conv round "
                         "differently, see the module doc)")
    a = ap.parse_args(argv)
    if a.check and not a.out_dir:
        ap.error("--check needs --out-dir")
    if a.out_dir and not a.check:
        ap.error("--out-dir needs --check")

    try:
        if not os.path.isfile(a.model):
            raise RefError(f"model file not found: {a.model}")
        import onnx

        default, overrides, amax, pow2, refined = load_plan(a.plan)
        model = onnx.load(a.model)
        qm, prec = build(model, default, overrides, amax, a.fp16, pow2, refined)
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        onnx.save(qm, a.out)
        counts = {p: sum(1 for v in prec.values() if v == p) for p in PRECISIONS}
        print(f"wrote {a.out}: {len(prec)} layers ({counts['int8']} int8, {counts['fp16']} fp16, "
              f"{counts['fp32']} fp32), {len(qm.graph.node)} nodes", file=sys.stderr)
        if a.check:
            run_ort(qm.SerializeToString(), a.check, a.out_dir)
    except RefError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
