#!/usr/bin/env python3
"""Compare pillarq's detections with PyTorch + numpy (kitti_data.py) on the same KITTI frames.

    parity.py --model ONNX --data DIR [--frames 10] [--split val] [--pillarq target/release/pillarq]
              [--preds DIR (reuse an existing `pillarq detect` output)] [--ort] [--keep]

1. runs `pillarq detect --model M --data DIR --split S --frames N --out PREDS`;
2. for each frame: kitti_data.voxelize (with the frame's calib = FOV filter) -> the PyTorch model
   (scripts/pointpillars.py, weights loaded from the ONNX initializers; --ort: onnxruntime instead)
   -> kitti_data.decode_detections -> lidar boxes, and kitti_data.lidar_to_kitti -> camera objects;
3. compares per frame: with PREDS/<id>.json (full precision: [{"class", "score", "box"[7]}]) the
   lidar boxes must agree within 1e-3 (yaw modulo 2 pi) and the scores within 1e-4; the KITTI text
   files PREDS/<id>.txt are compared on their 2-decimal numbers with tolerance 0.01 (+ rounding).
   Detections are matched greedily (same class, nearest box, sorted by score). A detection
   missing on one side only counts as a mismatch when its score is not within 1e-4 of the threshold.

Prints the max differences; exit 0 = parity, 1 = mismatch, 2 = could not run.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kitti_data as kd  # noqa: E402

BOX_TOL, SCORE_TOL, TXT_TOL = 1e-3, 1e-4, 0.01 + 0.005 + 1e-6


def fail(msg, code=2):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(code)


def run_pillarq(exe, model, data, split, frames, out):
    if not os.path.isfile(exe):
        fail(f"{exe} not found: build it first (cargo build --release)")
    cmd = [exe, "detect", "--model", model, "--data", data, "--split", split, "--frames", str(frames),
           "--out", out, "--quiet"]
    print("$ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"`pillarq detect` failed (exit {p.returncode}); does this build have the detect command?\n"
             + p.stdout[-2000:] + p.stderr[-4000:])
    print(p.stdout.strip(), flush=True)


def check_voxels(exe, model, vel, cal, v, i, n, tmp):
    """`pillarq voxelize` must give bit-identical inputs (the pre-processing contract)."""
    out = os.path.join(tmp, "vox")
    p = subprocess.run([exe, "voxelize", "--model", model, "--points", vel, "--calib", cal, "--out", out],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return f"`pillarq voxelize` failed: {p.stderr[-500:]}"
    errs = []
    for name, ours in (("voxels", v), ("voxel_idxs", i), ("voxel_num", n)):
        theirs = np.load(os.path.join(out, f"{name}.npy"))
        if theirs.shape != ours.shape or not np.array_equal(theirs.astype(ours.dtype), ours):
            errs.append(name)
    return f"voxelization differs: {errs}" if errs else None


def torch_runner(model_path, meta, threads):
    import onnx
    import torch
    from onnx import numpy_helper
    import pointpillars as pp

    torch.set_num_threads(threads)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(model_path).graph.initializer}
    model = pp.PointPillars(dict(pp.CONFIGS[meta["config"]]))
    sd = model.state_dict()
    missing = []
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        if k == "pfn.linear.weight":
            src = inits.get("pfn.linear.weight_t")
            src = None if src is None else src.T
        else:
            src = inits.get(k)
        if src is None or tuple(src.shape) != tuple(sd[k].shape):
            missing.append(k)
            continue
        sd[k] = torch.from_numpy(np.array(src, copy=True))
    if missing:
        fail(f"{model_path}: cannot load these weights into the PyTorch model: {missing[:6]}")
    model.load_state_dict(sd)
    model.eval()

    def run(v, i, n):
        with torch.no_grad():
            return [o.numpy() for o in model(torch.from_numpy(v), torch.from_numpy(i), torch.from_numpy(n))]
    return run


def ort_runner(model_path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])

    def run(v, i, n):
        return sess.run(["cls_preds", "box_preds", "dir_cls_preds"], {"voxels": v, "voxel_idxs": i, "voxel_num": n})
    return run


def angle_diff(a, b):
    d = (a - b) % (2 * math.pi)
    return min(d, 2 * math.pi - d)


def match(ours, theirs, dist):
    """Greedy: for each of `theirs` (by descending score) the nearest unmatched of `ours` of the same
    class. Returns pairs (i_ours, i_theirs) and the unmatched indices of both."""
    used, pairs = set(), []
    for j in sorted(range(len(theirs)), key=lambda j: -theirs[j][1]):
        best, bd = None, float("inf")
        for i in range(len(ours)):
            if i in used or ours[i][0] != theirs[j][0]:
                continue
            d = dist(ours[i], theirs[j])
            if d < bd:
                best, bd = i, d
        if best is not None and bd < 1.0:
            used.add(best)
            pairs.append((best, j))
    mt = {j for _, j in pairs}
    return pairs, [i for i in range(len(ours)) if i not in used], [j for j in range(len(theirs)) if j not in mt]


def read_txt(path, names):
    out = []
    for o in kd.read_labels(path):
        nums = [o["alpha"], *o["bbox"], *o["dims"], *o["loc"], o["ry"]]
        out.append((names.index(o["class"]) if o["class"] in names else -1, o["score"], nums))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--split", default="val")
    ap.add_argument("--pillarq", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "target", "release", "pillarq"))
    ap.add_argument("--preds", help="use this existing `pillarq detect` output instead of running it")
    ap.add_argument("--ort", action="store_true", help="run the network with onnxruntime, not PyTorch")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary PREDS folder")
    ap.add_argument("--no-voxel-check", action="store_true",
                    help="skip the bit-exact comparison with `pillarq voxelize`")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.model):
        fail(f"model not found: {a.model}")
    meta = kd.read_onnx_meta(a.model)
    names = meta["class_names"]
    ids = kd.split_ids(a.data, a.split)[: a.frames]
    tmp = None
    exe = os.path.normpath(a.pillarq)
    vtmp = tempfile.mkdtemp(prefix="pillarq_parity_vox_")
    n_vox_ok = 0
    if a.preds:
        preds = a.preds
    else:
        tmp = tempfile.mkdtemp(prefix="pillarq_parity_")
        preds = os.path.join(tmp, "preds")
        run_pillarq(exe, a.model, a.data, a.split, a.frames, preds)
    run = ort_runner(a.model, a.threads) if a.ort else torch_runner(a.model, meta, a.threads)
    anchors, _ = kd.generate_anchors(meta)
    thr = float(meta.get("score_threshold", 0.1))

    worst = {"box": 0.0, "score": 0.0, "txt": 0.0}
    bad, n_ours, n_theirs, n_json = [], 0, 0, 0
    for fid in ids:
        vel, _, cal = kd.frame_paths(a.data, fid)
        calib = kd.read_calib(cal)
        v, i, n = kd.voxelize(kd.read_points(vel), meta, calib)
        if not a.no_voxel_check:
            err = check_voxels(exe, a.model, vel, cal, v, i, n, vtmp)
            if err:
                bad.append(f"{fid}: {err}")
            else:
                n_vox_ok += 1
        dets = kd.decode_detections(*run(v, i, n), meta, anchors)
        n_ours += len(dets)
        jpath, tpath = os.path.join(preds, f"{fid}.json"), os.path.join(preds, f"{fid}.txt")
        if os.path.isfile(jpath):
            n_json += 1
            with open(jpath) as f:
                theirs = [(int(d["class"]), float(d["score"]), np.array(d["box"], np.float64)) for d in json.load(f)]
            n_theirs += len(theirs)

            def dist(o, t):
                return float(np.max(np.abs(np.asarray(o[2], np.float64)[:6] - t[2][:6]))) + angle_diff(o[2][6], t[2][6])
            pairs, only_o, only_t = match(dets, theirs, dist)
            for io, it in pairs:
                o, t = dets[io], theirs[it]
                db = max(float(np.max(np.abs(np.asarray(o[2], np.float64)[:6] - t[2][:6]))),
                         angle_diff(float(o[2][6]), float(t[2][6])))
                ds = abs(o[1] - t[1])
                worst["box"], worst["score"] = max(worst["box"], db), max(worst["score"], ds)
                if db > BOX_TOL or ds > SCORE_TOL:
                    bad.append(f"{fid}: class {o[0]} score {o[1]:.5f} vs {t[1]:.5f}, box diff {db:.2e}")
            for lst, side, src in ((only_o, "only in PyTorch", dets), (only_t, "only in pillarq", theirs)):
                for k in lst:
                    d = src[k]
                    msg = f"{fid}: {side}: class {d[0]} score {d[1]:.5f} box {np.round(np.asarray(d[2], float), 3).tolist()}"
                    if abs(d[1] - thr) <= SCORE_TOL:
                        print("note (score at the threshold): " + msg)
                    else:
                        bad.append(msg)
        if os.path.isfile(tpath):
            ours_txt = []
            for d in dets:
                o = kd.lidar_to_kitti(d, calib, names)
                if o is not None:
                    ours_txt.append((d[0], round(o["score"], 4),
                                     [o["alpha"], *o["bbox"], *o["dims"], *o["loc"], o["ry"]]))
            theirs_txt = read_txt(tpath, names)

            def tdist(o, t):
                return float(np.max(np.abs(np.array(o[2][5:11]) - np.array(t[2][5:11]))))
            pairs, only_o, only_t = match(ours_txt, theirs_txt, tdist)
            for io, it in pairs:
                o, t = ours_txt[io], theirs_txt[it]
                diffs = [angle_diff(o[2][0], t[2][0]), *np.abs(np.array(o[2][1:10]) - np.array(t[2][1:10])),
                         angle_diff(o[2][10], t[2][10])]
                dt = max(float(max(diffs)), abs(o[1] - t[1]))
                # bbox pixels: 2D box from projected corners amplifies 1e-3 m differences
                dt_geom = max(float(max(diffs[5:])), diffs[0], float(max(diffs[1:5])) / 100.0)
                worst["txt"] = max(worst["txt"], dt_geom)
                if dt_geom > TXT_TOL or abs(o[1] - t[1]) > SCORE_TOL + 5e-5:
                    bad.append(f"{fid}: txt line differs by {dt:.3f}: {o} vs {t}")
            for lst, side, src in ((only_o, "only in PyTorch (txt)", ours_txt), (only_t, "only in pillarq (txt)", theirs_txt)):
                for k in lst:
                    if abs(src[k][1] - thr) > SCORE_TOL + 5e-5:
                        bad.append(f"{fid}: {side}: {src[k]}")
        if not os.path.isfile(jpath) and not os.path.isfile(tpath):
            bad.append(f"{fid}: pillarq wrote neither {jpath} nor {tpath}")
    print(f"{len(ids)} frames ({n_json} with JSON): {n_ours} detections (PyTorch{'/ORT' if a.ort else ''} + numpy), "
          f"{n_theirs} (pillarq JSON)")
    print(f"max |box diff| {worst['box']:.3e} (tol {BOX_TOL}), max |score diff| {worst['score']:.3e} (tol {SCORE_TOL}), "
          f"max txt diff {worst['txt']:.3e} (tol {TXT_TOL:.3f})")
    if not a.no_voxel_check:
        print(f"voxelization bit-identical to `pillarq voxelize` on {n_vox_ok}/{len(ids)} frames")
    shutil.rmtree(vtmp, ignore_errors=True)
    if tmp and not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp:
        print(f"pillarq output kept in {preds}")
    if bad:
        print(f"MISMATCH ({len(bad)}):")
        for b in bad[:30]:
            print("  " + b)
        sys.exit(1)
    print("parity ok")


if __name__ == "__main__":
    main()
