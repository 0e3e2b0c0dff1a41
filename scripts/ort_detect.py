#!/usr/bin/env python3
"""Detect with onnxruntime on a KITTI split and write KITTI result files: the independent check
of an emitted model (`pillarq emit`), scored by `pillarq eval --preds`.

    ort_detect.py MODEL.onnx --data DIR [--split val] [--frames N] --out PREDS
                  [--meta-from FP32.onnx] [--threads T] [--optimize]

Everything here is independent of pillarq's Rust code: numpy voxelization and decoding
(scripts/kitti_data.py, the numpy twin of the Rust pre/post-processing), onnxruntime for the
network. The pointpillars metadata (ranges, anchors, NMS) is read from MODEL (emitted models
keep it) or from --meta-from.

By default onnxruntime runs with graph optimizations off: with them it fuses
DequantizeLinear -> Conv into integer kernels (QLinearConv) whose requantization rounds
differently from TensorRT's explicit quantization. --optimize turns them on.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kitti_data as kd  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="val")
    ap.add_argument("--frames", type=int, default=0, help="only the first N frames of the split")
    ap.add_argument("--out", required=True, help="folder for <frame id>.txt result files")
    ap.add_argument("--meta-from", help="read the pointpillars metadata from this ONNX file instead")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--optimize", action="store_true", help="onnxruntime graph optimizations on")
    a = ap.parse_args(argv)

    import onnxruntime as ort

    if not os.path.isfile(a.model):
        sys.exit(f"error: model not found: {a.model}")
    try:
        meta = kd.read_onnx_meta(a.meta_from or a.model)
    except ValueError as e:
        sys.exit(f"error: {e} (pass --meta-from the FP32 model)")
    ids = kd.split_ids(a.data, a.split)
    if a.frames:
        ids = ids[: a.frames]
    if not ids:
        sys.exit(f"error: {a.data}: split '{a.split}' is empty")
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    if not a.optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    anchors, _ = kd.generate_anchors(meta)
    names = meta["class_names"]
    os.makedirs(a.out, exist_ok=True)
    t0, n_det = time.time(), 0
    for k, fid in enumerate(ids):
        vel, _, cal = kd.frame_paths(a.data, fid)
        calib = kd.read_calib(cal)
        v, i, n = kd.voxelize(kd.read_points(vel), meta, calib)
        outs = sess.run(["cls_preds", "box_preds", "dir_cls_preds"], {"voxels": v, "voxel_idxs": i, "voxel_num": n})
        lines = []
        for d in kd.decode_detections(*outs, meta, anchors):
            o = kd.lidar_to_kitti(d, calib, names)
            if o is not None:
                lines.append(kd.format_kitti(o))
        n_det += len(lines)
        tmp = os.path.join(a.out, f".{fid}.txt.tmp")
        with open(tmp, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, os.path.join(a.out, f"{fid}.txt"))
        if (k + 1) % 50 == 0 or k + 1 == len(ids):
            print(f"{k + 1}/{len(ids)} frames, {n_det} detections, {time.time() - t0:.0f} s", file=sys.stderr)
    print(f"wrote {len(ids)} result files to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
