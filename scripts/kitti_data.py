"""KITTI object data, PointPillars pre- and post-processing in numpy (no torch).

This module is the Python side of the contract with pillarq's Rust code
(src/pointpillars/voxelize.rs, src/pointpillars/postprocess.rs): `voxelize`, `generate_anchors`,
`decode_detections` and `lidar_to_kitti` compute the same numbers as the Rust functions, with the
same float widths (float32 arithmetic where Rust uses f32, float64 where it uses f64).

KITTI layout under a root: training/velodyne/<id>.bin (float32 x, y, z, intensity),
training/label_2/<id>.txt (15 fields), training/calib/<id>.txt (P2, R0_rect, Tr_velo_to_cam),
ImageSets/{train,val}.txt (6-digit ids).

Lidar boxes are (x, y, z centre, dx = l, dy = w, dz = h, yaw); a camera label (bottom centre
location, h w l, ry) becomes location_lidar = rect_to_velo(location), z += h / 2,
yaw = wrap(-ry - pi/2).
"""
import json
import math
import os

import numpy as np

IMAGE_SIZE = (1242.0, 375.0)
CLASS_NAMES = ["Car", "Pedestrian", "Cyclist"]
# KITTI classes that count as "ignore" for a trained class (the devkit treats Van as ignored for
# Car and Person_sitting for Pedestrian).
IGNORE_CLASSES = {"Van": "Car", "Person_sitting": "Pedestrian"}
F32 = np.float32
PI32 = np.float32(np.pi)


# ============================================================================ reading
def read_points(path):
    """float32 [N, 4] (x, y, z, intensity); a trailing partial point is an error."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % 4:
        raise ValueError(f"{path}: size {raw.size * 4} bytes is not a multiple of 16")
    return raw.reshape(-1, 4)


def read_calib(path):
    """{'P2': f32 [3,4], 'R0_rect': f32 [3,3], 'Tr_velo_to_cam': f32 [3,4]} (numbers parsed as f32
    like the Rust reader; aliases R_rect / Tr_velo_cam accepted)."""
    alias = {"R_rect": "R0_rect", "Tr_velo_cam": "Tr_velo_to_cam"}
    shapes = {"P2": (3, 4), "R0_rect": (3, 3), "Tr_velo_to_cam": (3, 4)}
    out = {}
    with open(path) as f:
        for line in f:
            if ":" not in line:
                continue
            k, v = line.split(":", 1)
            k = alias.get(k.strip(), k.strip())
            if k in shapes:
                out[k] = np.array(v.split(), dtype=F32).reshape(shapes[k])
    missing = [k for k in shapes if k not in out]
    if missing:
        raise ValueError(f"{path}: missing {missing}")
    return out


def read_labels(path):
    """List of dicts: class, truncated, occluded, alpha, bbox[4], dims (h, w, l), loc[3], ry, score?"""
    objs = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            t = line.split()
            if not t:
                continue
            if len(t) not in (15, 16):
                raise ValueError(f"{path}:{ln}: expected 15 or 16 fields, found {len(t)}")
            v = [float(s) for s in t[1:]]
            objs.append({"class": t[0], "truncated": v[0], "occluded": int(v[1]), "alpha": v[2],
                         "bbox": v[3:7], "dims": v[7:10], "loc": v[10:13], "ry": v[13],
                         "score": v[14] if len(t) == 16 else None})
    return objs


def split_ids(root, split):
    with open(os.path.join(root, "ImageSets", f"{split}.txt")) as f:
        return [s.strip() for s in f if s.strip()]


def frame_paths(root, fid):
    t = os.path.join(root, "training")
    return (os.path.join(t, "velodyne", f"{fid}.bin"), os.path.join(t, "label_2", f"{fid}.txt"),
            os.path.join(t, "calib", f"{fid}.txt"))


# ============================================================================ geometry
def velo_to_rect(calib, p):
    """[N,3] lidar -> rectified camera (f64: R0 (R p + t)), like Calib::velo_to_rect."""
    p = np.asarray(p, np.float64).reshape(-1, 3)
    tr = calib["Tr_velo_to_cam"].astype(np.float64)
    cam = p @ tr[:, :3].T + tr[:, 3]
    return cam @ calib["R0_rect"].astype(np.float64).T


def rect_to_velo(calib, p):
    """Exact inverse of velo_to_rect (general 3x3 inverses, f64)."""
    p = np.asarray(p, np.float64).reshape(-1, 3)
    tr = calib["Tr_velo_to_cam"].astype(np.float64)
    cam = p @ np.linalg.inv(calib["R0_rect"].astype(np.float64)).T
    return (cam - tr[:, 3]) @ np.linalg.inv(tr[:, :3]).T


def project_rect(calib, p):
    p = np.asarray(p, np.float64).reshape(-1, 3)
    h = np.concatenate([p, np.ones((len(p), 1))], 1) @ calib["P2"].astype(np.float64).T
    return h[:, :2] / h[:, 2:3]


def fov_mask(points, calib, image_size=IMAGE_SIZE):
    """OpenPCDet FOV_POINTS_ONLY, computed exactly as voxelize.rs's Fov (f64; M = R0 * Tr
    folded first, sums in index order): rect z > 0 and 0 <= u < 1242, 0 <= v < 375."""
    r0 = calib["R0_rect"].astype(np.float64)
    tr = calib["Tr_velo_to_cam"].astype(np.float64)
    m = np.zeros((3, 4))
    for i in range(3):
        for j in range(4):
            s = 0.0
            for k in range(3):
                s = s + r0[i, k] * tr[k, j]
            m[i, j] = s
    p2 = calib["P2"].astype(np.float64)
    x, y, z = (points[:, k].astype(np.float64) for k in range(3))

    def dot4(r, a, b, c, d):
        return r[0] * a + r[1] * b + r[2] * c + r[3] * d

    rect = [dot4(m[i], x, y, z, 1.0) for i in range(3)]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = dot4(p2[2], rect[0], rect[1], rect[2], 1.0)
        u = dot4(p2[0], rect[0], rect[1], rect[2], 1.0) / w
        v = dot4(p2[1], rect[0], rect[1], rect[2], 1.0) / w
        return (rect[2] > 0.0) & (u >= 0.0) & (u < image_size[0]) & (v >= 0.0) & (v < image_size[1])


def limit_period(v, offset, period):
    return v - np.floor(v / period + offset) * period


def wrap_angle(a):
    """To [-pi, pi) (f64)."""
    a = np.asarray(a, np.float64)
    return a - np.floor(a / (2 * np.pi) + 0.5) * (2 * np.pi)


def labels_to_lidar(objs, calib, class_names=CLASS_NAMES, keep_ignore=True):
    """Camera labels -> (boxes f32 [N,7] lidar, classes int [N] index into class_names), and the
    ignore boxes (Van -> Car, Person_sitting -> Pedestrian) as (boxes, classes). DontCare and other
    classes are dropped."""
    gt, ign = [], []
    for o in objs:
        if o["class"] in class_names:
            dst, c = gt, class_names.index(o["class"])
        elif keep_ignore and IGNORE_CLASSES.get(o["class"]) in class_names:
            dst, c = ign, class_names.index(IGNORE_CLASSES[o["class"]])
        else:
            continue
        h, w, l = o["dims"]
        loc = rect_to_velo(calib, [o["loc"]])[0]
        yaw = float(wrap_angle(-o["ry"] - np.pi / 2))
        dst.append(([loc[0], loc[1], loc[2] + h / 2.0, l, w, h, yaw], c))

    def pack(lst):
        if not lst:
            return np.zeros((0, 7), F32), np.zeros((0,), np.int64)
        return np.array([b for b, _ in lst], F32), np.array([c for _, c in lst], np.int64)
    return pack(gt), pack(ign)


# ============================================================================ configuration
def grid_of(meta):
    pcr, vs = meta["point_cloud_range"], meta["voxel_size"]
    if "grid_size" in meta:
        return int(meta["grid_size"][0]), int(meta["grid_size"][1])
    return int(round((pcr[3] - pcr[0]) / vs[0])), int(round((pcr[4] - pcr[1]) / vs[1]))


def read_onnx_meta(path):
    import onnx
    m = onnx.load(path, load_external_data=False)
    for p in m.metadata_props:
        if p.key == "pointpillars":
            return json.loads(p.value)
    raise ValueError(f"{path}: no 'pointpillars' metadata")


# ============================================================================ voxelization
def voxelize(points, meta, calib=None):
    """Points [N,4] f32 -> (voxels f32 [P,M,10], voxel_idxs i32 [P,4], voxel_num i32 [1]).

    The contract (== voxelize.rs): keep finite points with x in [x0,x1), y in [y0,y1), z in
    [z0,z1) (f32 comparisons), ix = floor((x - x0) / vx) and iy likewise in f32 (a point whose
    cell rounds to nx / ny is dropped), and with `calib` only points inside the camera FOV;
    pillars numbered by first occurrence; first M points of a pillar in file order; first P
    pillars; features x y z i, offsets from the mean of the kept points (sum in f64 in point
    order, mean cast to f32), offsets from the pillar centre (x0 + (ix + 0.5) vx, y0 + (iy + 0.5)
    vy, z0 + 0.5 vz, f32). Padding is zero."""
    pcr = np.asarray(meta["point_cloud_range"], F32)
    vs = np.asarray(meta["voxel_size"], F32)
    nx, ny = grid_of(meta)
    P, M = int(meta["max_pillars"]), int(meta["max_points_per_pillar"])
    pts = np.ascontiguousarray(np.asarray(points, F32).reshape(-1, 4))
    x, y, z, r = pts[:, 0], pts[:, 1], pts[:, 2], pts[:, 3]
    with np.errstate(invalid="ignore", over="ignore"):
        m = ((x >= pcr[0]) & (x < pcr[3]) & (y >= pcr[1]) & (y < pcr[4]) & (z >= pcr[2]) & (z < pcr[5])
             & np.isfinite(r))
        fx = np.floor((x - pcr[0]) / vs[0])
        fy = np.floor((y - pcr[1]) / vs[1])
        m &= (fx >= 0) & (fx < nx) & (fy >= 0) & (fy < ny)
    if calib is not None:
        m &= fov_mask(pts, calib)
    pts, fx, fy = pts[m], fx[m], fy[m]
    voxels = np.zeros((P, M, 10), F32)
    idxs = np.zeros((P, 4), np.int32)
    if len(pts) == 0:
        return voxels, idxs, np.array([0], np.int32)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    cell = iy * nx + ix
    uniq, first, inv = np.unique(cell, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")          # pillars by first occurrence
    pid_of = np.empty(len(uniq), np.int64)
    pid_of[order] = np.arange(len(uniq))
    pid = pid_of[inv.reshape(-1)]
    srt = np.argsort(pid, kind="stable")               # stable: file order within a pillar
    counts = np.bincount(pid)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(pid), np.int64)
    rank[srt] = np.arange(len(pid)) - starts[pid[srt]]
    keep = (pid < P) & (rank < M)
    pts, pid, rank, ix, iy = pts[keep], pid[keep], rank[keep], ix[keep], iy[keep]
    K = min(len(uniq), P)
    n = np.bincount(pid, minlength=K).astype(np.float64)
    mean = np.stack([(np.bincount(pid, weights=pts[:, k].astype(np.float64), minlength=K) / n).astype(F32)
                     for k in range(3)], 1)
    cz = pcr[2] + F32(0.5) * vs[2]
    cx = pcr[0] + (ix.astype(F32) + F32(0.5)) * vs[0]
    cy = pcr[1] + (iy.astype(F32) + F32(0.5)) * vs[1]
    feats = np.empty((len(pts), 10), F32)
    feats[:, :4] = pts
    feats[:, 4:7] = pts[:, :3] - mean[pid]
    feats[:, 7] = pts[:, 0] - cx
    feats[:, 8] = pts[:, 1] - cy
    feats[:, 9] = pts[:, 2] - cz
    voxels[pid, rank] = feats
    first_pt = rank == 0
    idxs[pid[first_pt], 2] = iy[first_pt]
    idxs[pid[first_pt], 3] = ix[first_pt]
    return voxels, idxs, np.array([K], np.int32)


def voxelize_reference(points, meta, calib=None):
    """Straight per-point loop of the same contract (slow; for tests of `voxelize`)."""
    pcr = np.asarray(meta["point_cloud_range"], F32)
    vs = np.asarray(meta["voxel_size"], F32)
    nx, ny = grid_of(meta)
    P, M = int(meta["max_pillars"]), int(meta["max_points_per_pillar"])
    pts = np.asarray(points, F32).reshape(-1, 4)
    fov = fov_mask(pts, calib) if calib is not None else np.ones(len(pts), bool)
    cells, plist = {}, []
    for k, p in enumerate(pts):
        x, y, z, r = p
        with np.errstate(invalid="ignore", over="ignore"):
            if not (x >= pcr[0] and x < pcr[3] and y >= pcr[1] and y < pcr[4] and z >= pcr[2]
                    and z < pcr[5] and np.isfinite(r)):
                continue
            fx, fy = np.floor((x - pcr[0]) / vs[0]), np.floor((y - pcr[1]) / vs[1])
        if not (0 <= fx < nx and 0 <= fy < ny) or not fov[k]:
            continue
        c = (int(fy), int(fx))
        if c not in cells:
            cells[c] = len(plist) if len(plist) < P else -1
            if cells[c] >= 0:
                plist.append((c, []))
        i = cells[c]
        if i >= 0 and len(plist[i][1]) < M:
            plist[i][1].append(p)
    voxels = np.zeros((P, M, 10), F32)
    idxs = np.zeros((P, 4), np.int32)
    for i, ((cy_, cx_), ps) in enumerate(plist):
        s = [0.0, 0.0, 0.0]
        for p in ps:
            for k in range(3):
                s[k] += float(p[k])
        mean = [F32(v / len(ps)) for v in s]
        centre = [pcr[0] + (F32(cx_) + F32(0.5)) * vs[0], pcr[1] + (F32(cy_) + F32(0.5)) * vs[1],
                  pcr[2] + F32(0.5) * vs[2]]
        for j, p in enumerate(ps):
            voxels[i, j, :4] = p
            voxels[i, j, 4:7] = [p[k] - mean[k] for k in range(3)]
            voxels[i, j, 7:10] = [p[k] - centre[k] for k in range(3)]
        idxs[i] = (0, 0, cy_, cx_)
    return voxels, idxs, np.array([len(plist)], np.int32)


# ============================================================================ anchors / coder
def generate_anchors(meta):
    """f32 [H, W, A, 7] (x, y, z centre, dx, dy, dz, yaw) and class_of [A] (== postprocess.rs)."""
    nx, ny = grid_of(meta)
    s = int(meta.get("feature_map_stride", 2))
    W, H = nx // s, ny // s
    pcr = np.asarray(meta["point_cloud_range"], F32)
    names = meta["class_names"]
    per_loc, class_of = [], []
    for spec in meta["anchors"]:
        dx, dy, dz = (F32(v) for v in spec["size"])
        for rot in spec["rotations"]:
            per_loc.append([F32(0), F32(0), F32(spec["bottom_z"]) + dz / F32(2), dx, dy, dz, F32(rot)])
            class_of.append(names.index(spec["class"]))
    A = len(per_loc)
    sx = (pcr[3] - pcr[0]) / F32(W - 1)
    sy = (pcr[4] - pcr[1]) / F32(H - 1)
    xs = pcr[0] + np.arange(W).astype(F32) * sx
    ys = pcr[1] + np.arange(H).astype(F32) * sy
    anchors = np.tile(np.array(per_loc, F32)[None, None], (H, W, 1, 1))
    anchors[..., 0] = xs[None, :, None]
    anchors[..., 1] = ys[:, None, None]
    return anchors, np.array(class_of, np.int64)


def encode_boxes(gt, anchors):
    """Residual targets (f32/f64 numpy): gt, anchors [N,7] -> [N,7]."""
    gt = gt.astype(np.float64)
    a = anchors.astype(np.float64)
    d = np.sqrt(a[:, 3] ** 2 + a[:, 4] ** 2)
    return np.stack([(gt[:, 0] - a[:, 0]) / d, (gt[:, 1] - a[:, 1]) / d, (gt[:, 2] - a[:, 2]) / a[:, 5],
                     np.log(gt[:, 3] / a[:, 3]), np.log(gt[:, 4] / a[:, 4]), np.log(gt[:, 5] / a[:, 5]),
                     gt[:, 6] - a[:, 6]], 1).astype(F32)


def decode_boxes(t, anchors):
    """f32 decode, same operation order as postprocess.rs::decode_box."""
    t = t.astype(F32)
    a = anchors.astype(F32)
    d = np.sqrt(a[:, 3] * a[:, 3] + a[:, 4] * a[:, 4])
    with np.errstate(over="ignore", invalid="ignore"):
        return np.stack([t[:, 0] * d + a[:, 0], t[:, 1] * d + a[:, 1], t[:, 2] * a[:, 5] + a[:, 2],
                         np.exp(t[:, 3]) * a[:, 3], np.exp(t[:, 4]) * a[:, 4], np.exp(t[:, 5]) * a[:, 5],
                         t[:, 6] + a[:, 6]], 1)


def apply_direction(yaw, dir_logits, dir_offset, dir_limit_offset):
    """yaw = limit_period(yaw - off, lim, pi) + off + pi * argmax (ties -> 0), in f32."""
    label = (dir_logits[:, 1] > dir_logits[:, 0]).astype(F32)
    off, lim = F32(dir_offset), F32(dir_limit_offset)
    v = yaw.astype(F32) - off
    return (v - np.floor(v / PI32 + lim) * PI32) + off + PI32 * label


# ============================================================================ rotated BEV IoU / NMS
def bev_corners(b):
    """4 CCW corners (f64) of a lidar box, like postprocess.rs::bev_corners."""
    x, y, hx, hy = float(b[0]), float(b[1]), float(b[3]) / 2.0, float(b[4]) / 2.0
    s, c = math.sin(float(b[6])), math.cos(float(b[6]))
    return [(x + c * u - s * v, y + s * u + c * v) for u, v in ((hx, hy), (-hx, hy), (-hx, -hy), (hx, -hy))]


def _area(poly):
    a = 0.0
    for i in range(len(poly)):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % len(poly)]
        a += x1 * y2 - x2 * y1
    return 0.5 * a


def convex_intersection_area(subject, clip):
    """Area of the intersection of two convex CCW polygons (Sutherland-Hodgman clipping)."""
    out = list(subject)
    n = len(clip)
    for i in range(n):
        if not out:
            return 0.0
        ax, ay = clip[i]
        bx, by = clip[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        inp, out = out, []
        for j in range(len(inp)):
            px, py = inp[j]
            qx, qy = inp[(j + 1) % len(inp)]
            sp = ex * (py - ay) - ey * (px - ax)
            sq = ex * (qy - ay) - ey * (qx - ax)
            if sp >= 0:
                out.append((px, py))
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                out.append((px + t * (qx - px), py + t * (qy - py)))
    return abs(_area(out)) if len(out) >= 3 else 0.0


def bev_iou(a, b):
    ra = math.hypot(float(a[3]), float(a[4])) / 2.0
    rb = math.hypot(float(b[3]), float(b[4])) / 2.0
    if math.hypot(float(a[0]) - float(b[0]), float(a[1]) - float(b[1])) > ra + rb:
        return 0.0
    inter = convex_intersection_area(bev_corners(a), bev_corners(b))
    union = float(a[3]) * float(a[4]) + float(b[3]) * float(b[4]) - inter
    return inter / union if union > 0 else 0.0


def nms_bev(boxes, iou, max_keep):
    """Greedy NMS over boxes sorted by descending score: a box is dropped when its IoU with a kept
    box is > iou. Returns kept indices (at most max_keep; 0 = no limit)."""
    kept = []
    if len(boxes) == 0:
        return kept
    b = np.asarray(boxes, np.float64)
    rad = np.hypot(b[:, 3], b[:, 4]) / 2.0
    for i in range(len(b)):
        if max_keep and len(kept) >= max_keep:
            break
        if kept:
            k = np.array(kept)
            near = np.hypot(b[k, 0] - b[i, 0], b[k, 1] - b[i, 1]) <= rad[k] + rad[i]
            if any(bev_iou(boxes[j], boxes[i]) > iou for j in k[near]):
                continue
        kept.append(i)
    return kept


def sigmoid32(x):
    x = x.astype(F32)
    with np.errstate(over="ignore"):
        return F32(1) / (F32(1) + np.exp(-x))


def decode_detections(cls, box, dirc, meta, anchors=None):
    """NHWC maps ([1,H,W,A*C], [1,H,W,A*7], [1,H,W,A*2]) -> list of (class, score, box[7] f32),
    sorted by descending score, exactly as postprocess.rs::decode_detections."""
    if anchors is None:
        anchors, _ = generate_anchors(meta)
    nc = len(meta["class_names"])
    a = anchors.reshape(-1, 7)
    logits = np.asarray(cls, F32).reshape(-1, nc)
    t = np.asarray(box, F32).reshape(-1, 7)
    d = np.asarray(dirc, F32).reshape(-1, 2)
    best = np.argmax(logits, 1)                      # first max: ties keep the lower class
    score = sigmoid32(logits[np.arange(len(logits)), best])
    cand = np.nonzero(score >= F32(meta.get("score_threshold", 0.1)))[0]
    cand = cand[np.argsort(-score[cand], kind="stable")]
    pre = int(meta.get("nms_pre_max", 0))
    if pre:
        cand = cand[:pre]
    b = decode_boxes(t[cand], a[cand])
    b[:, 6] = apply_direction(b[:, 6], d[cand], meta.get("dir_offset", 0.0), meta.get("dir_limit_offset", 0.0))
    fin = np.all(np.isfinite(b), 1)
    cand, b = cand[fin], b[fin]
    keep = nms_bev(b, float(F32(meta.get("nms_iou", 0.0))), int(meta.get("nms_post_max", 0)))
    return [(int(best[cand[i]]), float(score[cand[i]]), b[i].astype(F32)) for i in keep]


# ============================================================================ KITTI results
def lidar_to_kitti(det, calib, class_names):
    """(class, score, box) -> KITTI result dict (camera frame) or None, like
    postprocess.rs::to_kitti_object (f64 here; the text has 2 decimals)."""
    c, score, b = det
    x, y, z, dx, dy, dz, yaw = (float(v) for v in b)
    loc = velo_to_rect(calib, [x, y, z - dz / 2.0])[0]
    centre = velo_to_rect(calib, [x, y, z])[0]
    if not centre[2] > 0:
        return None
    ry = float(wrap_angle(-yaw - np.pi / 2))
    alpha = float(wrap_angle(-math.atan2(-y, x) + ry))
    h, w, l = dz, dy, dx
    s, co = math.sin(ry), math.cos(ry)
    corners = []
    for i in range(8):
        u = l / 2 if i & 1 == 0 else -l / 2
        v = w / 2 if i & 2 == 0 else -w / 2
        yy = 0.0 if i & 4 == 0 else -h
        corners.append([loc[0] + co * u + s * v, loc[1] + yy, loc[2] - s * u + co * v])
    uv = project_rect(calib, corners)
    lo, hi = uv.min(0), uv.max(0)
    bbox = [min(max(lo[0], 0), IMAGE_SIZE[0] - 1), min(max(lo[1], 0), IMAGE_SIZE[1] - 1),
            min(max(hi[0], 0), IMAGE_SIZE[0] - 1), min(max(hi[1], 0), IMAGE_SIZE[1] - 1)]
    if not all(math.isfinite(v) for v in bbox) or not (bbox[2] > bbox[0] and bbox[3] > bbox[1]):
        return None
    name = class_names[c] if c < len(class_names) else f"class{c}"
    return {"class": name, "truncated": -1.0, "occluded": -1, "alpha": alpha, "bbox": bbox,
            "dims": [h, w, l], "loc": list(loc), "ry": ry, "score": score}


def format_kitti(o):
    s = f"{o['class']} {o['truncated']:.2f} {o['occluded']} {o['alpha']:.2f} "
    s += " ".join(f"{v:.2f}" for v in list(o["bbox"]) + list(o["dims"]) + list(o["loc"]) + [o["ry"]])
    if o.get("score") is not None:
        s += f" {o['score']:.4f}"
    return s


# ============================================================================ fake data (tests)
TYPICAL_CALIB = {
    "P2": np.array([[707.0493, 0.0, 604.0814, 45.75831], [0.0, 707.0493, 180.5066, -0.3454157],
                    [0.0, 0.0, 1.0, 0.004981016]], F32),
    "R0_rect": np.array([[0.9999128, 0.01009263, -0.008511932], [-0.01012729, 0.9999406, -0.004037671],
                         [0.008470675, 0.004123522, 0.9999556]], F32),
    "Tr_velo_to_cam": np.array([[0.006927964, -0.9999722, -0.002757829, -0.02457729],
                                [-0.001162982, 0.002749836, -0.9999955, -0.06127237],
                                [0.9999753, 0.006931141, -0.001143899, -0.3321029]], F32),
}


def _calib_text(c):
    p2 = " ".join(f"{v:.12e}" for v in c["P2"].ravel())
    rows = [f"P0: {p2}", f"P1: {p2}", f"P2: {p2}", f"P3: {p2}",
            "R0_rect: " + " ".join(f"{v:.12e}" for v in c["R0_rect"].ravel()),
            "Tr_velo_to_cam: " + " ".join(f"{v:.12e}" for v in c["Tr_velo_to_cam"].ravel()),
            "Tr_imu_to_velo: " + " ".join(["1 0 0 0 0 1 0 0 0 0 1 0"])]
    return "\n".join(rows) + "\n"


def make_fake_kitti(root, n_frames, seed=0, points_per_frame=60000, n_val=None):
    """A tiny KITTI-format directory: ground points in front of the car, a few box-shaped point
    clusters (Car / Pedestrian / Cyclist) with matching camera labels; ids 000000.. split into
    train (all but n_val) and val (n_val, default half)."""
    rng = np.random.default_rng(seed)
    calib = TYPICAL_CALIB
    for d in ("velodyne", "label_2", "calib"):
        os.makedirs(os.path.join(root, "training", d), exist_ok=True)
    os.makedirs(os.path.join(root, "ImageSets"), exist_ok=True)
    sizes = {"Car": (3.9, 1.6, 1.56), "Pedestrian": (0.8, 0.6, 1.73), "Cyclist": (1.76, 0.6, 1.73)}
    ids = [f"{i:06d}" for i in range(n_frames)]
    for fid in ids:
        rng_r = rng.uniform(2, 70, points_per_frame) ** 1.0
        ang = rng.uniform(-0.8, 0.8, points_per_frame)
        g = np.stack([rng_r * np.cos(ang), rng_r * np.sin(ang), rng.normal(-1.73, 0.05, points_per_frame),
                      rng.uniform(0, 0.6, points_per_frame)], 1)
        pts, labels = [g], []
        for k in range(int(rng.integers(2, 6))):
            cname = ["Car", "Car", "Pedestrian", "Cyclist"][int(rng.integers(0, 4))]
            l, w, h = (s * rng.uniform(0.9, 1.1) for s in sizes[cname])
            x, y = rng.uniform(6, 45), rng.uniform(-0.5, 0.5) * rng.uniform(6, 30)
            yaw = rng.uniform(-np.pi, np.pi)
            zb = -1.73
            n = int(rng.integers(200, 1200))
            u = rng.uniform(-l / 2, l / 2, n)
            v = rng.uniform(-w / 2, w / 2, n)
            zz = rng.uniform(zb, zb + h, n)
            c, s = np.cos(yaw), np.sin(yaw)
            pts.append(np.stack([x + c * u - s * v, y + s * u + c * v, zz, rng.uniform(0.2, 0.9, n)], 1))
            loc = velo_to_rect(calib, [x, y, zb])[0]
            ry = float(wrap_angle(-yaw - np.pi / 2))
            labels.append(f"{cname} 0.00 0 {ry:.2f} 100.00 100.00 200.00 200.00 {h:.2f} {w:.2f} {l:.2f} "
                          f"{loc[0]:.2f} {loc[1]:.2f} {loc[2]:.2f} {ry:.2f}")
        labels.append("DontCare -1 -1 -10 500.00 150.00 520.00 170.00 -1 -1 -1 -1000 -1000 -1000 -10")
        allp = np.concatenate(pts).astype(F32)
        allp = allp[rng.permutation(len(allp))]
        vel, lab, cal = frame_paths(root, fid)
        allp.tofile(vel)
        with open(lab, "w") as f:
            f.write("\n".join(labels) + "\n")
        with open(cal, "w") as f:
            f.write(_calib_text(calib))
    n_val = n_frames // 2 if n_val is None else n_val
    with open(os.path.join(root, "ImageSets", "train.txt"), "w") as f:
        f.write("\n".join(ids[: n_frames - n_val]) + "\n")
    with open(os.path.join(root, "ImageSets", "val.txt"), "w") as f:
        f.write("\n".join(ids[n_frames - n_val:]) + "\n")
    return ids


def self_test(seed=0):
    """Vectorized voxelize == per-point reference (with NaN, out of range, full pillars, P cap,
    FOV); anchor/coder round trip; NMS sanity. Raises on failure."""
    rng = np.random.default_rng(seed)
    meta = {"point_cloud_range": [0.0, -39.68, -3.0, 69.12, 39.68, 1.0], "voxel_size": [0.32, 0.32, 4.0],
            "max_pillars": 300, "max_points_per_pillar": 32}
    n = 20000
    pts = np.stack([rng.uniform(-5, 75, n), rng.uniform(-45, 45, n), rng.uniform(-4, 2, n),
                    rng.uniform(0, 1, n)], 1).astype(F32)
    pts[:3000, :2] = (rng.uniform(10, 12, (3000, 2)) * [1, 0.1]).astype(F32)  # dense: full pillars
    pts[5, 0] = np.nan
    pts[6, 3] = np.inf
    pts[7, 0] = np.float32(69.12)
    for calib in (None, TYPICAL_CALIB):
        for P in (300, 20000):
            meta["max_pillars"] = P
            a = voxelize(pts, meta, calib)
            b = voxelize_reference(pts, meta, calib)
            for u, v, name in zip(a, b, ("voxels", "voxel_idxs", "voxel_num")):
                if not np.array_equal(u, v):
                    raise AssertionError(f"voxelize != reference ({name}, P={P}, calib={calib is not None})")
    meta.update(class_names=CLASS_NAMES, anchors=[
        {"class": "Car", "size": [3.9, 1.6, 1.56], "bottom_z": -1.78, "rotations": [0.0, 1.5707963]},
        {"class": "Pedestrian", "size": [0.8, 0.6, 1.73], "bottom_z": -0.6, "rotations": [0.0, 1.5707963]},
        {"class": "Cyclist", "size": [1.76, 0.6, 1.73], "bottom_z": -0.6, "rotations": [0.0, 1.5707963]}],
        grid_size=[216, 248, 1], feature_map_stride=2)
    anc, cof = generate_anchors(meta)
    assert anc.shape == (124, 108, 6, 7) and list(cof) == [0, 0, 1, 1, 2, 2]
    assert abs(anc[0, -1, 0, 0] - 69.12) < 1e-4 and abs(anc[-1, 0, 0, 1] - 39.68) < 1e-4
    g = np.array([[20.0, 3.0, -1.0, 4.1, 1.7, 1.5, 0.3]], F32)
    t = encode_boxes(g, anc[10, 20, :1])
    assert np.allclose(decode_boxes(t, anc[10, 20, :1]), g, atol=1e-5)
    b1 = np.array([0, 0, 0, 2, 2, 1, 0], F32)
    assert abs(bev_iou(b1, np.array([1, 0, 0, 2, 2, 1, 0], F32)) - 1 / 3) < 1e-12
    assert abs(bev_iou(b1, np.array([0, 0, 0, 2, 2, 1, np.pi / 4], F32)) - (8 * (math.sqrt(2) - 1)) /
               (8 - 8 * (math.sqrt(2) - 1))) < 1e-9
    return True


if __name__ == "__main__":
    self_test()
    print("kitti_data self-test ok")
