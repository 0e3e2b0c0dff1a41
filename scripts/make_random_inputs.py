#!/usr/bin/env python3
"""Write plausible random pillar inputs for a pillarq PointPillars ONNX model.

    make_random_inputs.py MODEL.onnx --out DIR [--seed S] [--valid K]

Writes DIR/voxels.npy (float32 [P,32,10]), DIR/voxel_idxs.npy (int32 [P,4], (batch, z, y, x))
and DIR/voxel_num.npy (int32 [1] = [K]).

Rows 0..K-1 are valid pillars at distinct random BEV cells (batch 0, z 0), each with 1..32
points whose 10 features are (x, y, z, intensity, cluster offsets xc yc zc, pillar-centre
offsets xp yp zp), padded points all zero, like OpenPCDet's PillarVFE input.
Rows K..P-1 are padding filled with GARBAGE (large random features, random in-grid
coordinates, many duplicating valid cells, random batch/z) so that masking by voxel_num is
exercised: a correct consumer must ignore them entirely.

Needs numpy and onnx only (no torch), so it runs in the test venv.
"""
import argparse
import json
import os
import sys

import numpy as np

DEFAULT_META = {
    "point_cloud_range": [0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
    "voxel_size": [0.16, 0.16, 4.0],
    "max_points_per_pillar": 32,
}


def make_pillar_inputs(meta, num_pillars, num_valid, seed):
    """numpy-only generator shared with the exporter (used there for weight scaling)."""
    rng = np.random.default_rng(seed)
    pcr = [float(v) for v in meta["point_cloud_range"]]
    vs = [float(v) for v in meta["voxel_size"]]
    npts = int(meta.get("max_points_per_pillar", 32))
    nx = int(round((pcr[3] - pcr[0]) / vs[0]))
    ny = int(round((pcr[4] - pcr[1]) / vs[1]))
    P, K = int(num_pillars), int(num_valid)
    if not 0 <= K <= P:
        raise ValueError(f"--valid {K} outside [0, {P}]")
    if K > nx * ny:
        raise ValueError(f"--valid {K} exceeds the {nx}x{ny} grid")

    voxels = np.zeros((P, npts, 10), np.float32)
    idxs = np.zeros((P, 4), np.int32)

    cells = rng.choice(nx * ny, size=K, replace=False)
    ys, xs = cells // nx, cells % nx
    idxs[:K, 2] = ys
    idxs[:K, 3] = xs
    # points per pillar: mostly few points, some full pillars (real KITTI median 2-4)
    counts = np.minimum(rng.geometric(0.2, size=K), npts)  # >= 1
    counts[rng.random(K) < 0.05] = npts
    counts = np.clip(counts, 1, npts)

    z_centre = pcr[2] + vs[2] / 2.0
    for i in range(K):
        n = int(counts[i])
        x = pcr[0] + (xs[i] + rng.random(n)) * vs[0]
        y = pcr[1] + (ys[i] + rng.random(n)) * vs[1]
        z = rng.uniform(pcr[2] + 0.2, pcr[2] + 0.2 + 2.5, n) + rng.normal(0, 0.1)
        z = np.clip(z, pcr[2], pcr[5] - 1e-3)
        r = np.clip(rng.gamma(2.0, 0.13, n), 0.0, 0.99)
        pts = np.stack([x, y, z, r], axis=1)
        mean = pts[:, :3].mean(axis=0)
        feats = np.zeros((n, 10))
        feats[:, :4] = pts
        feats[:, 4:7] = pts[:, :3] - mean
        feats[:, 7] = x - (xs[i] * vs[0] + vs[0] / 2.0 + pcr[0])
        feats[:, 8] = y - (ys[i] * vs[1] + vs[1] / 2.0 + pcr[1])
        feats[:, 9] = z - z_centre
        voxels[i, :n] = feats.astype(np.float32)

    G = P - K
    if G > 0:
        # garbage padding: huge values, random cells, duplicates of valid cells, odd batch/z
        voxels[K:] = rng.normal(0.0, 1000.0, size=(G, npts, 10)).astype(np.float32)
        gy = rng.integers(0, ny, G)
        gx = rng.integers(0, nx, G)
        if K > 0:
            dup = rng.random(G) < 0.5
            pick = rng.integers(0, K, G)
            gy = np.where(dup, ys[pick], gy)
            gx = np.where(dup, xs[pick], gx)
        idxs[K:, 0] = rng.integers(0, 4, G)
        idxs[K:, 1] = rng.integers(0, 4, G)
        idxs[K:, 2] = gy
        idxs[K:, 3] = gx
    return voxels, idxs, np.array([K], np.int32)


def read_model_info(path):
    import onnx

    m = onnx.load(path, load_external_data=False)
    meta = dict(DEFAULT_META)
    for p in m.metadata_props:
        if p.key == "pointpillars":
            meta.update(json.loads(p.value))
    P = None
    for inp in m.graph.input:
        if inp.name == "voxels":
            d = inp.type.tensor_type.shape.dim
            if d and d[0].HasField("dim_value"):
                P = d[0].dim_value
            if len(d) > 1 and d[1].HasField("dim_value"):
                meta["max_points_per_pillar"] = d[1].dim_value
    if P is None:
        P = int(meta.get("max_pillars", 10000))
    return meta, P


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--valid", type=int, default=None, help="valid pillars K (default 60%% of P)")
    a = ap.parse_args(argv)
    if not os.path.isfile(a.model):
        sys.exit(f"error: model file not found: {a.model}")
    meta, P = read_model_info(a.model)
    K = a.valid if a.valid is not None else int(round(0.6 * P))
    try:
        v, i, n = make_pillar_inputs(meta, P, K, a.seed)
    except ValueError as e:
        sys.exit(f"error: {e}")
    os.makedirs(a.out, exist_ok=True)
    np.save(os.path.join(a.out, "voxels.npy"), v)
    np.save(os.path.join(a.out, "voxel_idxs.npy"), i)
    np.save(os.path.join(a.out, "voxel_num.npy"), n)
    print(f"wrote {a.out}/voxels.npy {list(v.shape)}, voxel_idxs.npy {list(i.shape)}, "
          f"voxel_num.npy {n.tolist()} (P={P}, K={K}, seed={a.seed})")


if __name__ == "__main__":
    main()
