#!/usr/bin/env python3
"""Quantization-aware fine-tuning of a pillarq precision plan, back to pillarq's own artefacts.

    qat.py --model MODEL.onnx --plan PLAN.json --calib CALIB.json --data DIR --out DIR
           [--epochs E | --time-budget S] [--frames N] [--fixed-amax] [--lr LR] [--device cuda]
    qat.py --model M --candidates candidates.json --candidate best|int8|greedy-NN --calib C ...
    qat.py --smoke                      # the whole path on a fake 6-frame KITTI set, in about a minute

Starts from a model trained by scripts/train.py (its ONNX weights, or --checkpoint) and a plan
with its calibration (pillarq calibrate / search / emit). At the plan's INT8 layers it inserts
fake quantization with pillarq's INT8 semantics: the layer input, times the calibration's
equalization multipliers where it has them, quantized per tensor with amax initialised from the
calibration (learned LSQ-style, or --fixed-amax); weights folded with their BatchNorm
(running statistics, frozen), divided by the multipliers, quantized per output channel
(symmetric max); round half to even, saturation to [-128, 127], straight-through gradients.
FP16 layers round their input, weights, bias and output to float16. It fine-tunes with
train.py's data pipeline and losses, then writes to --out:

  <model stem>-qat.onnx          the fine-tuned model, exported as train.py does (same node
                                 names, metadata, BN kept), metadata "qat" added
  <model stem>-qat-calib.json    a pillarq calibration file: the learned thresholds (method
                                 "qat", provenance in "qat"); the GPTQ levels and corrected
                                 biases of the PTQ recipe are dropped (fitted to the old weights)
  plan.json                      the plan, without an embedded calibration
  qat.json                       summary: losses, epochs, wall time, parity

and checks parity: pillarq's simulation of the plan on the fine-tuned model (`pillarq infer
--plan`) against this script's fake-quantized forward on validation frames (relative L2 of the
head outputs, the bounds of tests/qdq_parity.rs). The pillarq binary is $PILLARQ_BIN, else
target/release/pillarq (built with cargo when missing).
"""
import argparse
import copy
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kitti_data as kd  # noqa: E402
import pointpillars as pp  # noqa: E402
import train as tr  # noqa: E402

ROOT = os.path.dirname(HERE)
META_KEY = "pointpillars"
# tests/qdq_parity.rs: relative L2 of each head output, simulation vs an independent build.
PARITY_REL_L2 = 5e-3


# ============================================================================ pillarq
def pillarq_bin():
    b = os.environ.get("PILLARQ_BIN") or os.path.join(ROOT, "target", "release", "pillarq")
    if not os.path.exists(b):
        print("building pillarq (cargo build --release)", flush=True)
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return b


def pillarq(*args, capture=True):
    r = subprocess.run([pillarq_bin(), *args], capture_output=capture, text=True)
    if r.returncode != 0:
        raise SystemExit(f"error: pillarq {' '.join(args)}:\n{r.stderr}")
    return r.stdout


# ============================================================================ model
def node_name(path):
    """ONNX node name of a quantizable module path (pointpillars.quantizable_modules)."""
    parts = path.split(".")
    if path == "pfn.linear":
        return "/pfn/linear/MatMul"
    if parts[0] == "backbone":
        kind, i, j = parts[1], parts[2], parts[3]
        op = "ConvTranspose" if kind == "deblocks" else "Conv"
        return f"/backbone/{kind}.{i}/{kind}.{i}.{j}/{op}"
    if parts[0] == "head":
        return f"/head/{parts[1]}/Conv"
    raise ValueError(path)


def config_of(model_path):
    import onnx
    m = onnx.load(model_path)
    meta = next((json.loads(p.value) for p in m.metadata_props if p.key == META_KEY), None)
    if meta is None:
        raise SystemExit(f"error: {model_path} has no '{META_KEY}' metadata (a model from scripts/train.py)")
    name = meta.get("config", {}).get("name") if isinstance(meta.get("config"), dict) else meta.get("name")
    for key, cfg in pp.CONFIGS.items():
        if name in (key, cfg["name"]):
            return key, m
    # Match by grid and channels when the name is absent.
    for key, cfg in pp.CONFIGS.items():
        if meta.get("voxel_size") == cfg["voxel_size"] and meta.get("max_pillars", cfg["max_pillars"]) == cfg["max_pillars"]:
            return key, m
    raise SystemExit(f"error: {model_path}: not one of scripts/pointpillars.py's configurations {sorted(pp.CONFIGS)}")


def load_onnx_weights(model, onnx_model):
    """The PyTorch model's state from the ONNX initializers (train.py's export keeps the names;
    the PFN's MatMul weight is the transposed Linear weight)."""
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in onnx_model.graph.initializer}
    matmul = next(n for n in onnx_model.graph.node if n.name == "/pfn/linear/MatMul")
    state = model.state_dict()
    new = {}
    for k, v in state.items():
        if k == "pfn.linear.weight":
            new[k] = torch.from_numpy(inits[matmul.input[1]].T.copy())
        elif k.endswith("num_batches_tracked"):
            new[k] = v
        elif k in inits:
            new[k] = torch.from_numpy(inits[k].copy()).reshape(v.shape)
        else:
            raise SystemExit(f"error: the model has no initializer '{k}' (not exported by scripts/train.py?)")
    model.load_state_dict(new)


# ============================================================================ fake quantization
class RoundSTE(torch.autograd.Function):
    """Round half to even (torch.round), gradient passed straight through."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def fq(x, scale):
    """pillarq's fake_quant: clamp(round_half_even(x / scale), -128, 127) * scale. The gradient
    reaches x inside the range (straight through) and the scale as in LSQ."""
    return torch.clamp(RoundSTE.apply(x / scale), -128.0, 127.0) * scale


def f16(x):
    return x + (x.half().float() - x).detach()


def fold(w, bn, out_axis):
    """w and bias folded with BatchNorm bn (running statistics)."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = [1] * w.dim()
    shape[out_axis] = -1
    return w * s.reshape(shape), bn.bias - bn.running_mean * s


class Spec:
    """Per layer: precision, learned amax, equalization multipliers."""

    def __init__(self, model, plan, calibration, learn_amax):
        self.prec, self.amax, self.mul = {}, torch.nn.ParameterDict(), {}
        default = plan.get("default", "fp32")
        names = [node_name(p) for p, _ in model.quantizable_modules()]
        unknown = sorted(set(plan.get("layers", {})) - set(names))
        if unknown:
            raise SystemExit(f"error: the plan names layers this model does not have: {unknown[:3]}")
        for n in names:
            p = plan.get("layers", {}).get(n, default)
            self.prec[n] = p
            if p == "int8":
                act = calibration["activations"].get(n)
                if act is None:
                    raise SystemExit(f"error: the calibration has no threshold for INT8 layer {n}")
                self.amax[self.key(n)] = torch.nn.Parameter(torch.tensor(float(act["amax"])), requires_grad=learn_amax)
                m = calibration.get("layers", {}).get(n, {}).get("input_mul")
                if m:
                    self.mul[n] = torch.tensor(m, dtype=torch.float32)

    @staticmethod
    def key(n):
        """A ParameterDict key for a node name (which holds '.' and '/')."""
        return n.replace("/", "|").replace(".", ":")

    def amax_of(self, n):
        return self.amax[self.key(n)]

    def layer(self, n, x, w, b, op, in_axis_w, chan_axis_x, out_axis_w):
        """One fused layer (conv/matmul + folded BN) at its plan precision; ReLU is applied by the caller."""
        p = self.prec[n]
        if p == "int8":
            m = self.mul.get(n)
            if m is not None:
                m = m.to(x.device)
                sx = [1] * x.dim()
                sx[chan_axis_x] = -1
                sw = [1] * w.dim()
                sw[in_axis_w] = -1
                x = x * m.reshape(sx)
                w = w / m.reshape(sw)
            amax = self.amax_of(n)
            x = fq(x, amax.clamp(min=1e-8) / 127.0)
            dims = [d for d in range(w.dim()) if d != out_axis_w]
            ws = (w.detach().abs().amax(dim=dims, keepdim=True) / 127.0).clamp(min=1e-30)
            w = fq(w, ws)
            return op(x, w, b)
        if p == "fp16":
            y = op(f16(x), f16(w), None if b is None else f16(b))
            return y  # rounded after the ReLU by the caller (relu commutes with rounding)
        return op(x, w, b)


def q_pfn(model, spec, voxels):
    n = "/pfn/linear/MatMul"
    w, b = fold(model.pfn.linear.weight, model.pfn.norm, 0)          # [C, 10]
    y = spec.layer(n, voxels, w, b, lambda x, w, b: F.linear(x, w, b), 1, voxels.dim() - 1, 0)
    y = F.relu(y)
    if spec.prec[n] == "fp16":
        y = f16(y)
    return torch.amax(y, dim=1)


def q_dense(model, spec, canvas):
    x = canvas
    ups = []
    for bi, (block, deblock) in enumerate(zip(model.backbone.blocks, model.backbone.deblocks)):
        mods = list(block)
        k = 0
        while k < len(mods):
            m = mods[k]
            if isinstance(m, torch.nn.ZeroPad2d):
                x = F.pad(x, [1, 1, 1, 1])
                k += 1
                continue
            conv, bn = m, mods[k + 1]
            n = node_name(f"backbone.blocks.{bi}.{k}")
            w, b = fold(conv.weight, bn, 0)
            op = (lambda c: lambda x, w, b: F.conv2d(x, w, b, stride=c.stride, padding=c.padding))(conv)
            x = F.relu(spec.layer(n, x, w, b, op, 1, 1, 0))
            if spec.prec[n] == "fp16":
                x = f16(x)
            k += 3
        dc, dbn = deblock[0], deblock[1]
        n = node_name(f"backbone.deblocks.{bi}.0")
        w, b = fold(dc.weight, dbn, 1)
        op = (lambda c: lambda x, w, b: F.conv_transpose2d(x, w, b, stride=c.stride))(dc)
        u = F.relu(spec.layer(n, x, w, b, op, 0, 1, 1))
        if spec.prec[n] == "fp16":
            u = f16(u)
        ups.append(u)
    x = torch.cat(ups, dim=1)
    outs = []
    for name in ("conv_cls", "conv_box", "conv_dir_cls"):
        c = getattr(model.head, name)
        n = node_name(f"head.{name}")
        y = spec.layer(n, x, c.weight, c.bias, lambda x, w, b: F.conv2d(x, w, b), 1, 1, 0)
        if spec.prec[n] == "fp16":
            y = f16(y)
        outs.append(y.permute(0, 2, 3, 1))
    return tuple(outs)


def q_forward_batch(model, spec, voxels, coords, B):
    """train.forward_batch with the plan's precisions."""
    nx, ny, _ = pp.grid_size(model.cfg)
    feats = q_pfn(model, spec, voxels)
    C = feats.shape[1]
    canvas = feats.new_zeros(B * ny * nx, C)
    canvas[coords[:, 0] * (ny * nx) + coords[:, 1]] = feats
    canvas = canvas.view(B, ny, nx, C).permute(0, 3, 1, 2).contiguous()
    return q_dense(model, spec, canvas)


def q_forward_model(model, spec, voxels, voxel_idxs, voxel_num):
    """The exported model's interface (padded pillars, scatter), with the plan's precisions."""
    feats = q_pfn(model, spec, voxels)
    canvas = model.scatter(feats, voxel_idxs, voxel_num)
    return q_dense(model, spec, canvas)


# ============================================================================ files
def network_sha256(path):
    """pillarq's model hash: the file without its top-level metadata entries of key META_KEY
    (ModelProto field 14), everything else byte for byte (src/onnx/metadata.rs)."""
    data = open(path, "rb").read()

    def varint(pos):
        v, shift = 0, 0
        while True:
            b = data[pos]
            pos += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v, pos
            shift += 7

    out, pos = bytearray(), 0
    while pos < len(data):
        start = pos
        tag, pos = varint(pos)
        field, wire = tag >> 3, tag & 7
        body = pos
        if wire == 0:
            _, pos = varint(pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            n, pos = varint(pos)
            body, pos = pos, pos + n
        else:
            raise ValueError(f"wire type {wire}")
        if field == 14 and wire == 2 and is_meta_entry(data[body:pos]):
            continue
        out += data[start:pos]
    return hashlib.sha256(bytes(out)).hexdigest()


def is_meta_entry(entry):
    """A StringStringEntryProto whose key (field 1) is META_KEY."""
    from onnx import StringStringEntryProto
    e = StringStringEntryProto()
    e.ParseFromString(bytes(entry))
    return e.key == META_KEY


def export_qat(model, src_onnx, out, qat_meta, seed):
    """train.py's exporter, then the source model's metadata with a "qat" entry."""
    import onnx
    import export_models
    model.eval()
    with torch.no_grad():
        m, args = export_models.export_standard(model, out, seed)
    meta = next(json.loads(p.value) for p in src_onnx.metadata_props if p.key == META_KEY)
    meta["qat"] = qat_meta
    for p in m.metadata_props:
        if p.key == META_KEY:
            p.value = json.dumps(meta)
    m.doc_string = (src_onnx.doc_string + "; fine-tuned with quantization-aware training by pillarq "
                    f"scripts/qat.py ({qat_meta['epochs']:.2f} epochs on {qat_meta['frames']} frames)")
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, out)
    with torch.no_grad():
        export_models.check_ort(out, model, args)


def weight_scales(model):
    """Per-output-channel weight amax of every layer (BN folded), as pillarq's calibration files list them."""
    out = {}
    with torch.no_grad():
        for path, mod in model.quantizable_modules():
            n = node_name(path)
            if path == "pfn.linear":
                w, _ = fold(mod.weight, model.pfn.norm, 0)
                amax = w.abs().amax(dim=1)
            elif path.startswith("head."):
                amax = mod.weight.abs().amax(dim=(1, 2, 3))
            else:
                parent = dict(model.named_modules())[path.rsplit(".", 1)[0]]
                idx = int(path.rsplit(".", 1)[1])
                bn = parent[idx + 1]
                axis = 1 if isinstance(mod, torch.nn.ConvTranspose2d) else 0
                w, _ = fold(mod.weight, bn, axis)
                dims = tuple(d for d in range(4) if d != axis)
                amax = w.abs().amax(dim=dims)
            out[n] = amax.tolist()
    return out


# ============================================================================ parity
def parity(model_path, plan_path, calib_path, model, spec, meta, data, split, n_frames, work):
    """pillarq's simulation (infer --plan) vs the fake-quantized forward on n validation frames."""
    ids = kd.split_ids(data, split)[:n_frames]
    worst = {}
    model.eval()
    for fid in ids:
        vel, _, cal = kd.frame_paths(data, fid)
        v, i, n = kd.voxelize(kd.read_points(vel), meta, kd.read_calib(cal))
        d = os.path.join(work, f"parity-{fid}")
        os.makedirs(d, exist_ok=True)
        for name, arr in (("voxels", v), ("voxel_idxs", i), ("voxel_num", n)):
            np.save(os.path.join(d, f"{name}.npy"), arr)
        pillarq("infer", model_path, "--plan", plan_path, "--calib", calib_path, "--out", os.path.join(d, "out"),
                *sum((["--input", f"{k}={os.path.join(d, k + '.npy')}"] for k in ("voxels", "voxel_idxs", "voxel_num")), []))
        with torch.no_grad():
            outs = q_forward_model(model, spec, torch.from_numpy(v), torch.from_numpy(i), torch.from_numpy(n))
        for name, t in zip(("cls_preds", "box_preds", "dir_cls_preds"), outs):
            ref = np.load(os.path.join(d, "out", f"{name}.npy")).astype(np.float64)
            got = t.numpy().astype(np.float64).reshape(ref.shape)
            rel = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))
            worst[name] = max(worst.get(name, 0.0), rel)
    ok = all(v <= PARITY_REL_L2 for v in worst.values())
    return {"frames": len(ids), "rel_l2": worst, "bound": PARITY_REL_L2, "ok": ok}


# ============================================================================ main
def read_plan(a):
    if a.plan:
        with open(a.plan) as f:
            plan = json.load(f)
        return {"default": plan.get("default", "fp32"), "layers": plan.get("layers", {})}, os.path.basename(a.plan)
    with open(a.candidates) as f:
        c = json.load(f)
    if a.candidate == "int8":
        return {"default": "int8", "layers": {}}, "int8"
    if a.candidate == "best":
        k = c.get("best")
        if k is None:
            raise SystemExit(f"error: {a.candidates} has no best candidate")
    elif a.candidate.startswith("greedy-"):
        i = int(a.candidate.split("-")[1]) - 1
        if not 0 <= i < len(c["candidates"]):
            raise SystemExit(f"error: {a.candidates} has {len(c['candidates'])} greedy candidates")
        k = c["candidates"][i]
    else:
        raise SystemExit("error: --candidate is best, int8 or greedy-NN")
    p = k["plan"]
    return {"default": p.get("default", "fp32"), "layers": p.get("layers", {})}, a.candidate


def qat(a):
    t0 = time.time()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    dev = tr.setup_device(a.device)
    config, src = config_of(a.model)
    cfg = dict(pp.CONFIGS[config])
    model = pp.PointPillars(cfg)
    if a.checkpoint:
        ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
    else:
        load_onnx_weights(model, src)
    meta = next(json.loads(p.value) for p in src.metadata_props if p.key == META_KEY)
    plan, plan_name = read_plan(a)
    with open(a.calib) as f:
        calib_file = json.load(f)
    cal = calib_file["calibration"]
    spec = Spec(model, plan, cal, learn_amax=not a.fixed_amax)
    n_int8 = sum(p == "int8" for p in spec.prec.values())
    n_fp16 = sum(p == "fp16" for p in spec.prec.values())
    print(f"plan {plan_name}: {n_int8} INT8, {n_fp16} FP16 layers; calibration {cal.get('method')} "
          f"(recipe {cal.get('recipe') or 'none'}); {'learned' if not a.fixed_amax else 'fixed'} thresholds", flush=True)

    tmeta = tr.meta_for(cfg, a.seed)
    frames = tr.Frames(a.data, a.split, a.frames)
    assigner = tr.TargetAssigner(tmeta)
    model = model.to(dev)
    spec.amax.to(dev)
    model.eval()  # BN statistics frozen: the folded weights are what INT8 sees
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": params, "lr": a.lr, "weight_decay": 1e-4}]
    if not a.fixed_amax:
        groups.append({"params": list(spec.amax.parameters()), "lr": a.lr_amax, "weight_decay": 0.0})
    opt = torch.optim.Adam(groups)
    n = len(frames.ids)
    spe = max(1, n // a.batch)
    total = max(1, int(round(spe * a.epochs)))
    if a.max_iters:
        total = min(total, a.max_iters)
    print(f"fine-tuning {total} iterations ({a.epochs:g} epochs of {n} frames, batch {a.batch}), lr {a.lr:g}"
          + (f", amax lr {a.lr_amax:g}" if not a.fixed_amax else "")
          + (f", time budget {a.time_budget:g} s" if a.time_budget else ""), flush=True)
    base_lrs = [g["lr"] for g in opt.param_groups]
    history, sums, cnt = [], np.zeros(4), 0
    t_train = time.time()
    step = 0
    while step < total:
        frac = (time.time() - t_train) / a.time_budget if a.time_budget else step / total
        if a.time_budget and frac >= 1.0:
            break
        for g, lr in zip(opt.param_groups, base_lrs):
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
        epoch, it = divmod(step, spe)
        order = np.random.default_rng([a.seed, epoch]).permutation(n)
        ids = order[it * a.batch:(it + 1) * a.batch]
        rng = np.random.default_rng([a.seed, epoch, it])
        vox, coords, labels, box_t, dir_t, _ = tr.make_batch(frames, ids, tmeta, assigner, rng)
        outs = q_forward_batch(model, spec, vox.to(dev), coords.to(dev), len(labels))
        loss, parts = tr.compute_loss(outs, labels.to(dev), box_t.to(dev), dir_t.to(dev))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        step += 1
        sums += [loss.item(), *parts]
        cnt += 1
        if step % a.log_every == 0 or step == total:
            mean = sums / cnt
            history.append({"step": step, "loss": mean[0], "cls": mean[1], "loc": mean[2], "dir": mean[3]})
            print(f"step {step}/{total} loss {mean[0]:.4f} (cls {mean[1]:.4f} loc {mean[2]:.4f} dir {mean[3]:.4f}) "
                  f"{time.time() - t_train:.0f} s", flush=True)
            sums, cnt = np.zeros(4), 0
    train_s = time.time() - t_train
    epochs_done = step / spe
    model = model.cpu()
    spec.amax.cpu()

    os.makedirs(a.out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(a.model))[0]
    out_model = os.path.join(a.out, f"{stem}-qat.onnx")
    out_calib = os.path.join(a.out, f"{stem}-qat-calib.json")
    out_plan = os.path.join(a.out, "plan.json")
    qmeta = {"epochs": epochs_done, "iterations": step, "frames": n, "data": os.path.basename(os.path.normpath(a.data)),
             "split": a.split, "plan": plan_name, "learned_amax": not a.fixed_amax, "seconds": round(train_s, 1)}
    export_qat(model, src, out_model, qmeta, a.seed)

    new = copy.deepcopy(calib_file)
    c = new["calibration"]
    c["method"] = "qat"
    # The recipe steps whose results remain: GPTQ levels and bias corrections are dropped below.
    c["recipe"] = ",".join(x for x in c.get("recipe", "").split(",") if x and x not in ("rounding", "bias"))
    c["model_hash"] = network_sha256(out_model)
    for name in list(c["activations"]):
        if name in spec.prec and spec.prec[name] == "int8":
            c["activations"][name]["amax"] = float(spec.amax_of(name).detach())
    for name, lr in list(c.get("layers", {}).items()):  # GPTQ levels and bias corrections were fitted to the old weights
        lr.pop("weights", None)
        lr.pop("bias", None)
        if not lr:
            del c["layers"][name]
    new["model"] = os.path.basename(out_model)
    # Per-channel weight thresholds of the fine-tuned weights (BN folded), same entries otherwise.
    ws = weight_scales(model)
    new["weights"] = {k: dict(v, amax=ws[k]) for k, v in calib_file.get("weights", {}).items() if k in ws}
    new.pop("refinement", None)
    new["qat"] = dict(qmeta, source_calibration=os.path.basename(a.calib), source_method=cal.get("method"),
                      source_recipe=cal.get("recipe", ""), source_model=os.path.basename(a.model))
    with open(out_calib, "w") as f:
        json.dump(new, f, indent=1)
    with open(out_plan, "w") as f:
        json.dump(plan, f, indent=1)
    print(f"wrote {out_model}, {out_calib}, {out_plan}", flush=True)

    check = parity(out_model, out_plan, out_calib, model, spec, meta, a.data, a.parity_split, a.parity_frames, a.out)
    print(f"parity on {check['frames']} {a.parity_split} frames, relative L2 pillarq simulation vs PyTorch "
          + ", ".join(f"{k} {v:.2e}" for k, v in check["rel_l2"].items()) + f" (bound {PARITY_REL_L2:g}): "
          + ("ok" if check["ok"] else "FAILED"), flush=True)
    summary = {**qmeta, "trained_plan": plan_name, "model": out_model, "calibration": out_calib, "plan": out_plan,
               "history": history,
               "parity": check, "wall_seconds": round(time.time() - t0, 1)}
    with open(os.path.join(a.out, "qat.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if not check["ok"]:
        raise SystemExit("error: parity check failed")
    return summary


def smoke(a):
    """The whole path on a fake KITTI set: calibrate with pillarq, fine-tune a few iterations,
    export, parity against pillarq's simulation, and `pillarq eval --plan` on the result."""
    t0 = time.time()
    with tempfile.TemporaryDirectory() as td:
        data = os.path.join(td, "kitti")
        kd.make_fake_kitti(data, 6, seed=a.seed, n_val=2)
        model = os.path.join(ROOT, "onnx", "pointpillars_small.onnx")
        pillarq("calibrate", "--model", model, "--data", data, "--split", "train", "--frames", "2",
                "--recipe", "sparse,equalize", "--out", os.path.join(td, "calib"), "-q")
        calib = os.path.join(td, "calib", "pointpillars_small-max-sparse+equalize-2.json")
        a.model, a.calib, a.data, a.split = model, calib, data, "train"
        a.plan, a.candidates, a.candidate = None, None, None
        plan = os.path.join(td, "int8.json")
        with open(plan, "w") as f:
            json.dump({"default": "int8"}, f)
        a.plan = plan
        a.out = a.out or os.path.join(td, "qat")
        a.max_iters = a.max_iters or 2
        a.parity_split, a.parity_frames = "val", 1
        s = qat(a)
        out = pillarq("eval", "--model", s["model"], "--data", data, "--split", "val", "--plan", s["plan"],
                      "--calib", s["calibration"], "--json")
        m = json.loads(out)["map"]
        print(f"pillarq eval --plan on the QAT model: mAP {m:.2f} (2 fake frames)")
        print(f"smoke ok in {time.time() - t0:.1f}s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="ONNX model from scripts/train.py (weights and configuration)")
    ap.add_argument("--checkpoint", help="train.py checkpoint (.ckpt.pt) for the weights instead of the ONNX's")
    ap.add_argument("--plan", help="a PrecisionPlan (plan.json of an engine directory, or any plan file)")
    ap.add_argument("--candidates", help="candidates.json of pillarq search (with --candidate)")
    ap.add_argument("--candidate", default="best", help="best, int8 or greedy-NN (with --candidates)")
    ap.add_argument("--calib", help="pillarq calibration file of the plan")
    ap.add_argument("--data", help="KITTI-format directory")
    ap.add_argument("--split", default="train")
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of the split")
    ap.add_argument("--epochs", type=float, default=2.0)
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds of fine-tuning (cosine schedule over it)")
    ap.add_argument("--max-iters", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lr-amax", type=float, default=1e-3)
    ap.add_argument("--fixed-amax", action="store_true", help="keep the calibration's thresholds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--parity-split", default="val")
    ap.add_argument("--parity-frames", type=int, default=4)
    ap.add_argument("--out")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.smoke:
        a.log_every = 1
        return smoke(a)
    if not (a.model and a.calib and a.data and a.out and (a.plan or a.candidates)):
        ap.error("--model, --calib, --data, --out and --plan (or --candidates) are required (or --smoke)")
    qat(a)


if __name__ == "__main__":
    main()
