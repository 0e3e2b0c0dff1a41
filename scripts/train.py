#!/usr/bin/env python3
"""Train pillarq's PointPillars (scripts/pointpillars.py) on a KITTI-format directory, on CPU or a
CUDA GPU, then export it with scripts/export_models.py (same node names, metadata, BN kept).

    train.py --data DIR --config small|kitti --epochs E --out onnx/pointpillars_<config>.onnx
             [--seed S] [--frames N] [--batch B] [--threads T] [--resume CKPT] [--max-iters K]
             [--init CKPT] [--gt-sample "Pedestrian:8,Cyclist:4"] [--cls-weight "Pedestrian:2.0"]
             [--device cuda --workers W --time-budget SECONDS] [--no-export]
    train.py --export-only RUN.ckpt.pt --out MODEL.onnx   # export a finished --no-export run
    train.py --smoke [--out PATH] [--max-iters K]    # fake 4-frame KITTI dir, 2 iterations, export, ORT check

OpenPCDet-style training: AxisAlignedTargetAssigner (nearest-BEV IoU with yaw snapped to 0/90 deg,
Car 0.6/0.45, Ped/Cyc 0.5/0.35, best anchor per GT forced positive; Van / Person_sitting boxes
make their class's anchors "ignore"), sigmoid focal loss (0.25, 2) / #pos, smooth-L1 (beta 1/9)
on the residuals with the sin-difference trick x 2.0, direction CE x 0.2; AdamW + one-cycle,
weight decay 0.01, grad-norm clip 10; augmentation: random flip of y, rotation U(-pi/4, pi/4),
scaling U(0.95, 1.05); optional OpenPCDet-style GT database sampling (--gt-sample, before the
augmentation) and per-class focal-loss weights (--cls-weight). --init starts from a checkpoint's
weights with a fresh optimizer / one-cycle schedule (--resume continues a run). Points are FOV-filtered at load (cached in memory), augmented and
voxelized per iteration with kitti_data.voxelize (the Rust contract). A batch of B frames is one
forward pass: the PFN runs on the valid pillars of all frames, scattered per frame.

Writes <out> (ONNX), <out minus .onnx>.json (summary), <out minus .onnx>.ckpt.pt (each epoch).
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kitti_data as kd  # noqa: E402
import pointpillars as pp  # noqa: E402

MATCHED = {"Car": 0.6, "Pedestrian": 0.5, "Cyclist": 0.5}
UNMATCHED = {"Car": 0.45, "Pedestrian": 0.35, "Cyclist": 0.35}
DIR_OFFSET, DIR_LIMIT_OFFSET = 0.78539, 0.0
LR = {"small": 3e-3, "kitti": 3e-3}
CHANNELS_LAST = False  # NHWC convolutions (set by --channels-last)
TIME_RESERVE_S = 30.0  # of --time-budget, for BN re-estimation and the final checkpoint


def meta_for(cfg, seed=0):
    return pp.metadata(cfg, "standard", seed)


# ============================================================================ data
class Frames:
    """FOV-filtered points + lidar GT boxes of a split, in memory."""

    def __init__(self, root, split, limit=None, class_names=kd.CLASS_NAMES):
        ids = kd.split_ids(root, split)
        if limit:
            ids = ids[:limit]
        if not ids:
            raise SystemExit(f"error: {root}: split '{split}' is empty")
        self.ids, self.points, self.gt, self.ign = ids, [], [], []
        t0 = time.time()
        for fid in ids:
            vel, lab, cal = kd.frame_paths(root, fid)
            calib = kd.read_calib(cal)
            pts = kd.read_points(vel)
            pts = pts[np.all(np.isfinite(pts), 1)]
            pts = pts[kd.fov_mask(pts, calib)]
            (gb, gc), (ib, ic) = kd.labels_to_lidar(kd.read_labels(lab), calib, class_names)
            self.points.append(np.ascontiguousarray(pts))
            self.gt.append((gb, gc))
            self.ign.append((ib, ic))
        n_obj = np.bincount(np.concatenate([g[1] for g in self.gt]), minlength=len(class_names))
        print(f"loaded {len(ids)} {split} frames in {time.time() - t0:.1f}s; "
              f"{np.mean([len(p) for p in self.points]):.0f} FOV points/frame; objects "
              + ", ".join(f"{c} {n}" for c, n in zip(class_names, n_obj)), flush=True)


def augment(pts, boxes, ign, rng):
    """Global flip of y, rotation U(-pi/4, pi/4) about z, scaling U(0.95, 1.05)."""
    pts, boxes, ign = pts.copy(), boxes.copy(), ign.copy()
    if rng.random() < 0.5:
        for b in (boxes, ign):
            b[:, 1] = -b[:, 1]
            b[:, 6] = -b[:, 6]
        pts[:, 1] = -pts[:, 1]
    a = rng.uniform(-np.pi / 4, np.pi / 4)
    c, s = np.float32(np.cos(a)), np.float32(np.sin(a))
    x, y = pts[:, 0].copy(), pts[:, 1].copy()
    pts[:, 0], pts[:, 1] = c * x - s * y, s * x + c * y
    for b in (boxes, ign):
        x, y = b[:, 0].copy(), b[:, 1].copy()
        b[:, 0], b[:, 1] = c * x - s * y, s * x + c * y
        b[:, 6] = kd.wrap_angle(b[:, 6] + a)
    sc = np.float32(rng.uniform(0.95, 1.05))
    pts[:, :3] *= sc
    boxes[:, :6] *= sc
    ign[:, :6] *= sc
    return pts, boxes, ign


def box_aabb(boxes, extra=(0.0, 0.0)):
    """BEV axis-aligned rectangles [N,4] (x1, y1, x2, y2) enclosing rotated boxes (+ extra on dx, dy)."""
    b = boxes.astype(np.float64)
    c, s = np.abs(np.cos(b[:, 6])), np.abs(np.sin(b[:, 6]))
    dx, dy = (b[:, 3] + extra[0]) / 2, (b[:, 4] + extra[1]) / 2
    hx, hy = c * dx + s * dy, s * dx + c * dy
    return np.stack([b[:, 0] - hx, b[:, 1] - hy, b[:, 0] + hx, b[:, 1] + hy], 1)


def aabb_overlap(a, b):
    """[Na, Nb] bool: BEV rectangles a and b intersect."""
    return ((a[:, None, 0] < b[None, :, 2]) & (b[None, :, 0] < a[:, None, 2])
            & (a[:, None, 1] < b[None, :, 3]) & (b[None, :, 1] < a[:, None, 3]))


def points_in_boxes(pts, boxes, extra=(0.0, 0.0, 0.0)):
    """[N, K] bool: point inside rotated 3D box (z = gravity centre), each dim enlarged by extra."""
    b = boxes.astype(np.float32)
    d = pts[:, None, :3] - b[None, :, :3]                           # [N, K, 3]
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    u = d[..., 0] * c + d[..., 1] * s
    v = -d[..., 0] * s + d[..., 1] * c
    e = np.asarray(extra, np.float32)
    return ((np.abs(u) <= (b[:, 3] + e[0]) / 2) & (np.abs(v) <= (b[:, 4] + e[1]) / 2)
            & (np.abs(d[..., 2]) <= (b[:, 5] + e[2]) / 2))


class GTSampler:
    """OpenPCDet-style ground-truth database sampling. The database holds, for each GT box of the
    sampled classes in the loaded training frames, the points inside the box enlarged by EXTRA
    (boxes with < MIN_POINTS points are skipped). Per frame, up to N objects of each class are drawn
    (without replacement) and pasted at their original, sensor-relative positions, rejecting those
    whose BEV footprint (enclosing rectangle of the enlarged box) overlaps an existing GT / ignore box
    or an already accepted sample; the frame's points inside the pasted (enlarged) boxes are removed
    and the object's points are put first (as OpenPCDet does)."""
    EXTRA = (0.2, 0.2, 0.1)   # m added to dx, dy, dz (half on each side)
    MIN_POINTS = 5

    def __init__(self, frames, counts, class_names=kd.CLASS_NAMES):
        self.counts = [(class_names.index(c), int(n)) for c, n in counts.items() if int(n) > 0]
        self.boxes = {c: [] for c, _ in self.counts}
        self.pts = {c: [] for c, _ in self.counts}
        t0 = time.time()
        for fi, (pts, (gb, gc)) in enumerate(zip(frames.points, frames.gt)):
            sel = np.nonzero(np.isin(gc, list(self.boxes)))[0]
            if not len(sel):
                continue
            inside = points_in_boxes(pts, gb[sel], self.EXTRA)
            for j, g in enumerate(sel):
                m = inside[:, j]
                if m.sum() >= self.MIN_POINTS:
                    self.boxes[int(gc[g])].append(gb[g])
                    self.pts[int(gc[g])].append(np.ascontiguousarray(pts[m]))
        for c in self.boxes:
            self.boxes[c] = np.array(self.boxes[c], np.float32).reshape(-1, 7)
        self.aabbs = {c: box_aabb(self.boxes[c], self.EXTRA[:2]) for c in self.boxes}
        print(f"GT database from {len(frames.ids)} frames in {time.time() - t0:.1f}s: "
              + ", ".join(f"{class_names[c]} {len(self.boxes[c])} (paste up to {n}, "
                          f"{np.mean([len(p) for p in self.pts[c]]) if self.pts[c] else 0:.0f} pts/obj)"
                          for c, n in self.counts), flush=True)
        self.stats = np.zeros(2)  # pasted, frames

    def __call__(self, pts, gt, gc, ig, rng):
        cand_c, cand_i = [], []
        for c, n in self.counts:
            k = min(n, len(self.boxes[c]))
            if k:
                cand_c += [c] * k
                cand_i += list(rng.choice(len(self.boxes[c]), k, replace=False))
        if not cand_c:
            return pts, gt, gc
        rect = np.stack([self.aabbs[c][i] for c, i in zip(cand_c, cand_i)])
        exist = np.concatenate([gt, ig])
        free = ~aabb_overlap(rect, box_aabb(exist)).any(1) if len(exist) else np.ones(len(rect), bool)
        mutual = aabb_overlap(rect, rect)
        acc = []
        for k in np.nonzero(free)[0]:
            if not mutual[k, acc].any():
                acc.append(k)
        self.stats += [len(acc), 1]
        if not acc:
            return pts, gt, gc
        nb = np.stack([self.boxes[cand_c[k]][cand_i[k]] for k in acc])
        ncls = np.array([cand_c[k] for k in acc], np.int64)
        # drop the frame's points inside the pasted boxes (only those near them need testing)
        r = box_aabb(nb, self.EXTRA[:2])
        near = np.nonzero((pts[:, 0] >= r[:, 0].min()) & (pts[:, 0] <= r[:, 2].max())
                          & (pts[:, 1] >= r[:, 1].min()) & (pts[:, 1] <= r[:, 3].max()))[0]
        keep = np.ones(len(pts), bool)
        if len(near):
            keep[near[points_in_boxes(pts[near], nb, self.EXTRA).any(1)]] = False
        pts = np.concatenate([self.pts[cand_c[k]][cand_i[k]] for k in acc] + [pts[keep]])
        return pts, np.concatenate([gt, nb]), np.concatenate([gc, ncls])


def parse_class_map(text, what):
    out = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, val = part.partition(":")
        name = name.strip()
        if name not in kd.CLASS_NAMES or not val:
            raise SystemExit(f"error: {what}: expected 'Class:value,...' with classes {kd.CLASS_NAMES}, got {part!r}")
        out[name] = float(val)
    return out


def in_range(boxes, pcr):
    return ((boxes[:, 0] >= pcr[0]) & (boxes[:, 0] < pcr[3]) & (boxes[:, 1] >= pcr[1]) & (boxes[:, 1] < pcr[4]))


# ============================================================================ targets
def nearest_bev(boxes):
    """Axis-aligned BEV [N,4] (x1, y1, x2, y2) after snapping yaw to the nearest of 0 / 90 deg."""
    rot = np.abs(kd.limit_period(boxes[:, 6].astype(np.float64), 0.5, np.pi))
    swap = rot > np.pi / 4
    dx = np.where(swap, boxes[:, 4], boxes[:, 3])
    dy = np.where(swap, boxes[:, 3], boxes[:, 4])
    return np.stack([boxes[:, 0] - dx / 2, boxes[:, 1] - dy / 2, boxes[:, 0] + dx / 2, boxes[:, 1] + dy / 2], 1)


def iou_aligned(a, b):
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(aa[:, None] + ab[None, :] - inter, 1e-6)


class TargetAssigner:
    def __init__(self, meta):
        anchors, class_of = kd.generate_anchors(meta)
        self.H, self.W, self.A = anchors.shape[:3]
        self.anchors = anchors.reshape(-1, 7)
        self.cls = np.tile(class_of, self.H * self.W)          # class of each flat anchor
        self.names = meta["class_names"]
        self.idx = [np.nonzero(self.cls == c)[0] for c in range(len(self.names))]
        self.bev = [nearest_bev(self.anchors[i]) for i in self.idx]
        # anchor grid (for the sparse IoU: only anchors whose BEV rectangle can touch a box are scored)
        grid = anchors[:, :, 0, :2]
        self.xs, self.ys = grid[0, :, 0].astype(np.float64), grid[:, 0, 1].astype(np.float64)
        self.per_loc = [len(i) // (self.H * self.W) for i in self.idx]
        self.margin = [float(np.max(np.abs(b[:, 2:] - b[:, :2]))) / 2 + 1e-3 for b in self.bev]

    def near(self, c, rects):
        """Indices (into self.idx[c]) of the anchors of class c whose centre lies within the class's
        maximal anchor half-extent of one of the BEV rectangles [G,4]: all anchors with IoU > 0."""
        m = self.margin[c]
        w0 = np.searchsorted(self.xs, rects[:, 0] - m, "left")
        w1 = np.searchsorted(self.xs, rects[:, 2] + m, "right")
        h0 = np.searchsorted(self.ys, rects[:, 1] - m, "left")
        h1 = np.searchsorted(self.ys, rects[:, 3] + m, "right")
        locs = [(np.arange(a, b)[:, None] * self.W + np.arange(x, y)[None, :]).ravel()
                for a, b, x, y in zip(h0, h1, w0, w1)]
        locs = np.unique(np.concatenate(locs)) if locs else np.zeros(0, np.int64)
        k = self.per_loc[c]
        return (locs[:, None] * k + np.arange(k)[None, :]).ravel()

    def __call__(self, gt, gcls, ign, icls):
        N = len(self.anchors)
        labels = np.full(N, -1, np.int64)           # -1 ignore, 0 background, 1.. class + 1
        gt_of = np.full(N, -1, np.int64)
        for c, name in enumerate(self.names):
            ai = self.idx[c]
            lab = np.full(len(ai), -1, np.int64)
            gid = np.full(len(ai), -1, np.int64)
            sel = np.nonzero(gcls == c)[0]
            forced = np.zeros(0, np.int64)
            lab[:] = 0   # anchors away from every box: IoU 0 -> background
            if len(sel):
                rects = nearest_bev(gt[sel])
                nb = self.near(c, rects)                        # all anchors with IoU > 0 are in nb
                iou = iou_aligned(self.bev[c][nb], rects)
                a2g = iou.argmax(1)
                a2g_max = iou[np.arange(len(nb)), a2g]
                g2a_max = iou.max(0) if len(nb) else np.zeros(len(sel))
                g2a_max[g2a_max == 0] = -1
                forced = np.nonzero((iou == g2a_max[None, :]).any(1))[0]
                pos = a2g_max >= MATCHED[name]
                lab[nb[pos]] = c + 1
                gid[nb[pos]] = sel[a2g[pos]]
                mid = ~pos & (a2g_max >= UNMATCHED[name])
                lab[nb[mid]] = -1
                if len(forced):
                    lab[nb[forced]] = c + 1
                    gid[nb[forced]] = sel[a2g[forced]]
            isel = np.nonzero(icls == c)[0]
            if len(isel):
                rects = nearest_bev(ign[isel])
                nb = self.near(c, rects)
                iou_i = iou_aligned(self.bev[c][nb], rects).max(1)
                sub = lab[nb]
                sub[(sub == 0) & (iou_i >= UNMATCHED[name])] = -1
                lab[nb] = sub
            labels[ai] = lab
            gt_of[ai] = gid
        fg = labels > 0
        box_t = np.zeros((N, 7), np.float32)
        dir_t = np.zeros(N, np.int64)
        if fg.any():
            g = gt[gt_of[fg]]
            box_t[fg] = kd.encode_boxes(g, self.anchors[fg])
            rot = g[:, 6].astype(np.float64)
            off = kd.limit_period(rot - DIR_OFFSET, 0.0, 2 * np.pi)
            dir_t[fg] = np.clip(np.floor(off / np.pi), 0, 1).astype(np.int64)
        return labels, box_t, dir_t


# ============================================================================ model pieces
def init_head(model):
    with torch.no_grad():
        model.head.conv_cls.bias.fill_(-math.log((1 - 0.01) / 0.01))
        torch.nn.init.normal_(model.head.conv_box.weight, mean=0.0, std=0.001)


def forward_batch(model, voxels, coords, B):
    """voxels [sumK, M, 10] (valid pillars of all frames), coords [sumK, 2] (batch, flat cell)."""
    nx, ny, _ = pp.grid_size(model.cfg)
    feats = model.pfn(voxels)                                     # [sumK, C]
    C = feats.shape[1]
    canvas = feats.new_zeros(B * ny * nx, C)
    canvas[coords[:, 0] * (ny * nx) + coords[:, 1]] = feats
    canvas = canvas.view(B, ny, nx, C).permute(0, 3, 1, 2)  # NCHW view of an NHWC buffer
    canvas = canvas.contiguous(memory_format=torch.channels_last if CHANNELS_LAST else torch.contiguous_format)
    return model.head(model.backbone(canvas))                     # NHWC each


def focal_loss(logits, targets, weights, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(logits)
    alpha_w = targets * alpha + (1 - targets) * (1 - alpha)
    pt = targets * (1 - p) + (1 - targets) * p
    bce = torch.clamp(logits, min=0) - logits * targets + torch.log1p(torch.exp(-torch.abs(logits)))
    return (alpha_w * pt.pow(gamma) * bce * weights.unsqueeze(-1)).sum()


def smooth_l1(diff, beta=1.0 / 9.0):
    n = diff.abs()
    return torch.where(n < beta, 0.5 * n * n / beta, n - 0.5 * beta)


def compute_loss(outs, labels, box_t, dir_t, anchor_w=None):
    cls, box, dirc = outs
    B = cls.shape[0]
    nc = 3
    cls = cls.reshape(B, -1, nc)
    box = box.reshape(B, -1, 7)
    dirc = dirc.reshape(B, -1, 2)
    pos = (labels > 0).float()
    neg = (labels == 0).float()
    norm = pos.sum(1, keepdim=True).clamp(min=1.0)
    cls_w = (pos + neg) / norm
    if anchor_w is not None:  # --cls-weight: per anchor (by the anchor's class), positive and negative
        cls_w = cls_w * anchor_w[None, :]
    reg_w = pos / norm
    onehot = F.one_hot(labels.clamp(min=0), nc + 1)[..., 1:].float()
    loss_cls = focal_loss(cls, onehot, cls_w) / B
    # sin-difference on the yaw residual
    p6, t6 = box[..., 6:7], box_t[..., 6:7]
    bp = torch.cat([box[..., :6], torch.sin(p6) * torch.cos(t6)], -1)
    bt = torch.cat([box_t[..., :6], torch.cos(p6) * torch.sin(t6)], -1)
    loss_loc = (smooth_l1(bp - bt).sum(-1) * reg_w).sum() / B * 2.0
    ce = F.cross_entropy(dirc.reshape(-1, 2), dir_t.reshape(-1), reduction="none").view(B, -1)
    loss_dir = (ce * reg_w).sum() / B * 0.2
    return loss_cls + loss_loc + loss_dir, (loss_cls.item(), loss_loc.item(), loss_dir.item())


def make_batch(frames, ids, meta, assigner, rng, augment_on=True, sampler=None):
    """One batch: (voxels, coords, labels, box targets, dir targets, objects pasted by the sampler)."""
    pcr = np.asarray(meta["point_cloud_range"], np.float32)
    nx, ny = kd.grid_of(meta)
    vox, coords, labs, boxes, dirs = [], [], [], [], []
    pasted = 0
    for b, i in enumerate(ids):
        pts = frames.points[i]
        gt, gc = frames.gt[i]
        ig, ic = frames.ign[i]
        if augment_on and sampler is not None:
            n0 = len(gt)
            pts, gt, gc = sampler(pts, gt, gc, ig, rng)
            pasted += len(gt) - n0
        if augment_on:
            pts, gt, ig = augment(pts, gt, ig, rng)
        keep = in_range(gt, pcr)
        gt, gc = gt[keep], gc[keep]
        v, idx, n = kd.voxelize(pts, meta)
        k = int(n[0])
        vox.append(v[:k])
        coords.append(np.stack([np.full(k, b), idx[:k, 2].astype(np.int64) * nx + idx[:k, 3]], 1))
        lab, bt, dt = assigner(gt, gc, ig, ic)
        labs.append(lab)
        boxes.append(bt)
        dirs.append(dt)
    return (torch.from_numpy(np.concatenate(vox)), torch.from_numpy(np.concatenate(coords)),
            torch.from_numpy(np.stack(labs)), torch.from_numpy(np.stack(boxes)), torch.from_numpy(np.stack(dirs)),
            pasted)


class BatchStream(torch.utils.data.Dataset):
    """Training batches start..stop of a run. Batch i is iteration i % steps_per_epoch of epoch
    i // steps_per_epoch: frames in a per-epoch seeded order, augmentation and GT sampling from a
    per-batch seeded generator. So the batches depend neither on --workers nor on where a run was
    resumed."""

    def __init__(self, frames, meta, assigner, sampler, batch, seed, steps_per_epoch, start, stop):
        self.frames, self.meta, self.assigner, self.sampler = frames, meta, assigner, sampler
        self.batch, self.seed, self.spe, self.start, self.stop = batch, seed, steps_per_epoch, start, stop
        self._order = (None, None)

    def __len__(self):
        return max(0, self.stop - self.start)

    def __getitem__(self, k):
        epoch, it = divmod(self.start + k, self.spe)
        if self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.frames.ids)))
        ids = self._order[1][it * self.batch:(it + 1) * self.batch]
        rng = np.random.default_rng([self.seed, epoch, it])
        return make_batch(self.frames, ids, self.meta, self.assigner, rng, sampler=self.sampler)


def one_cycle(frac, max_lr, div=10.0, final_div=1e4, pct=0.4, m_low=0.85, m_high=0.95):
    """(lr, beta1) of a one-cycle schedule with cosine phases (as torch's OneCycleLR) at fraction
    frac of the run: lr max_lr/div -> max_lr over the first pct, then -> max_lr/(div*final_div);
    beta1 moves the opposite way."""
    def cos(a, b, t):
        return b + (a - b) / 2 * (math.cos(math.pi * t) + 1)
    frac = min(max(frac, 0.0), 1.0)
    if frac < pct:
        t = frac / pct
        return cos(max_lr / div, max_lr, t), cos(m_high, m_low, t)
    t = (frac - pct) / (1 - pct)
    return cos(max_lr, max_lr / (div * final_div), t), cos(m_low, m_high, t)


@torch.no_grad()
def recalibrate_bn(model, frames, meta, assigner, n_frames, batch, seed, dev):
    """Re-estimates the BN running statistics with the final weights: cumulative averages over
    n_frames training frames (no augmentation), forward only. With BN momentum 0.01 the running
    statistics trail the weights by ~100 iterations, which ruins short runs."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    moms = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    order = np.random.default_rng(seed).permutation(len(frames.ids))[:n_frames]
    for k in range(0, len(order), batch):
        vox, coords, labels, _, _, _ = make_batch(frames, order[k:k + batch], meta, assigner, None, augment_on=False)
        forward_batch(model, vox.to(dev), coords.to(dev), len(labels))
    for m, mom in zip(bns, moms):
        m.momentum = mom
    model.eval()


# ============================================================================ export
def mark_trained(m, cfg, meta_extra, layout_note):
    """Adds the "trained" entry to the model's metadata JSON and says so in its doc string."""
    meta = json.loads(m.metadata_props[0].value)
    meta["trained"] = meta_extra
    m.metadata_props[0].value = json.dumps(meta)
    nx, ny, _ = pp.grid_size(cfg)
    m.doc_string = (f"PointPillars ({cfg['name']}, {nx}x{ny} grid), trained by pillarq scripts/train.py "
                    f"({meta_extra.get('epochs')} epochs on {meta_extra.get('frames')} frames of "
                    f"{meta_extra.get('data')}); {layout_note}")


def export(model, out, meta_extra, seed, cudapp=None):
    """Standard-layout ONNX at out (checked, compared with onnxruntime); with cudapp, also the
    CUDA-PointPillars layout (PPScatterPlugin) with the same weights at that path."""
    import onnx
    import export_models
    model.eval()
    with torch.no_grad():
        m, args = export_models.export_standard(model, out, seed)
    mark_trained(m, model.cfg, meta_extra, "standard ONNX ops, masked ScatterND scatter")
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, out)
    with torch.no_grad():
        export_models.report(out, m, model)
        export_models.check_ort(out, model, args)
    if cudapp:
        with tempfile.TemporaryDirectory() as td, torch.no_grad():
            cm, _ = export_models.export_cudapp(model, cudapp, seed, td)
        mark_trained(cm, model.cfg, meta_extra, "CUDA-PointPillars layout: PFN -> PPScatterPlugin -> "
                     "backbone/neck/head")
        onnx.save(cm, cudapp)  # no checker: PPScatterPlugin is not a standard op
        export_models.report(cudapp, cm, model, standard=False)


# ============================================================================ main
def setup_device(name):
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda, but this PyTorch sees no CUDA device "
                             f"(torch {torch.__version__}); use --device cpu")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        print(f"device {torch.cuda.get_device_name(dev)} (torch {torch.__version__}, TF32 on)", flush=True)
    return dev


def train(a):
    global CHANNELS_LAST
    CHANNELS_LAST = a.channels_last
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if a.time_budget and a.resume:
        raise SystemExit("error: --time-budget and --resume are exclusive (a time-budget schedule cannot be resumed)")
    dev = setup_device(a.device)
    torch.manual_seed(a.seed)
    cfg = dict(pp.CONFIGS[a.config])
    meta = meta_for(cfg, a.seed)
    frames = Frames(a.data, a.split, a.frames)
    assigner = TargetAssigner(meta)
    model = pp.PointPillars(cfg)
    init_head(model)
    if a.init:
        if a.resume:
            raise SystemExit("error: --init and --resume are exclusive")
        ck = torch.load(a.init, map_location="cpu", weights_only=False)
        if ck.get("config", a.config) != a.config:
            raise SystemExit(f"error: {a.init} is a '{ck.get('config')}' checkpoint, not '{a.config}'")
        model.load_state_dict(ck["model"])
        print(f"initialised weights from {a.init} (epoch {ck.get('epoch', -1) + 1}, step {ck.get('step')}); "
              f"fresh optimizer and schedule", flush=True)
    sampler = GTSampler(frames, parse_class_map(a.gt_sample, "--gt-sample")) if a.gt_sample else None
    cls_weight = parse_class_map(a.cls_weight, "--cls-weight")
    anchor_w = None
    if cls_weight:
        per_class = np.array([cls_weight.get(c, 1.0) for c in meta["class_names"]], np.float32)
        anchor_w = torch.from_numpy(per_class[assigner.cls]).to(dev)
        print(f"focal-loss class weights (by anchor class): {dict(zip(meta['class_names'], per_class.tolist()))}",
              flush=True)
    model = model.to(dev)
    if CHANNELS_LAST:
        model = model.to(memory_format=torch.channels_last)
    n = len(frames.ids)
    steps_per_epoch = max(1, n // a.batch)  # drop the last partial batch
    total = steps_per_epoch * a.epochs
    if a.max_iters:
        total = min(total, a.max_iters)
    max_lr = a.lr or LR[a.config]
    opt = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=0.01, betas=(0.95, 0.99))
    stem = os.path.splitext(a.out)[0]
    ckpt_path = stem + ".ckpt.pt"
    step, wall_before = 0, 0.0
    history = []
    if a.resume:
        ck = torch.load(a.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, wall_before = ck["step"], ck.get("wall", 0.0)
        history = ck.get("history", [])
        print(f"resumed from {a.resume}: step {step}", flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    stream = BatchStream(frames, meta, assigner, sampler, a.batch, a.seed, steps_per_epoch, step, total)
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, shuffle=False, num_workers=a.workers, pin_memory=dev.type == "cuda",
        multiprocessing_context="fork" if a.workers else None, prefetch_factor=4 if a.workers else None)
    t_start = time.time()
    budget = None
    if a.time_budget:  # the schedule runs on wall-clock time; keep TIME_RESERVE s for BN and saving
        budget = a.time_budget - (t_start - a.t0) - TIME_RESERVE_S
        if budget <= 0:
            raise SystemExit(f"error: --time-budget {a.time_budget:g} s is used up by loading "
                             f"({t_start - a.t0:.0f} s)")
    print(f"config {a.config}: {n} frames, batch {a.batch}, {steps_per_epoch} it/epoch, up to {a.epochs} epochs "
          f"({total} it)" + (f" or {budget:.0f} s of training" if budget else "")
          + f", device {dev}, {a.workers} data workers, threads {a.threads}, seed {a.seed}", flush=True)
    t_data = t_step = 0.0
    done_iters = 0
    sums, cnt = np.zeros(4), 0
    pasted = frames_seen = 0
    stopped_by = "epochs"

    def save_checkpoint(wall, **extra):
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": (step - 1) // steps_per_epoch,
                    "step": step, "wall": wall, "history": history, "config": a.config, "seed": a.seed, **extra},
                   ckpt_path)

    def end_epoch():
        nonlocal sums, cnt
        epoch = (step - 1) // steps_per_epoch
        mean = (sums / max(cnt, 1)).tolist()
        history.append({"epoch": epoch + 1, "step": step, "loss": mean[0], "cls": mean[1], "loc": mean[2],
                        "dir": mean[3]})
        save_checkpoint(wall_before + time.time() - t_start)
        print(f"epoch {epoch + 1} mean loss {mean[0]:.4f} (cls {mean[1]:.4f} loc {mean[2]:.4f} dir {mean[3]:.4f}); "
              f"checkpoint {ckpt_path}", flush=True)
        sums, cnt = np.zeros(4), 0

    model.train()
    t_prev = time.time()
    for batch in loader:
        t1 = time.time()
        frac = (t1 - t_start) / budget if budget else step / total
        if frac >= 1.0:
            stopped_by = "time"
            break
        lr, beta1 = one_cycle(frac, max_lr)
        for g in opt.param_groups:
            g["lr"], g["betas"] = lr, (beta1, g["betas"][1])
        vox, coords, labels, box_t, dir_t = (x.to(dev, non_blocking=True) for x in batch[:5])
        pasted += batch[5]
        frames_seen += len(labels)
        outs = forward_batch(model, vox, coords, len(labels))
        loss, parts = compute_loss(outs, labels, box_t, dir_t, anchor_w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        loss_v = loss.item()  # synchronises the device, so t2 is the step's real end
        t2 = time.time()
        step += 1
        done_iters += 1
        if done_iters > 1:  # first iteration: warm-up, not timed
            t_data += t1 - t_prev
            t_step += t2 - t1
        t_prev = t2
        sums += [loss_v, *parts]
        cnt += 1
        if step % a.log_every == 0 or step == total or step == 1:
            timed = max(done_iters - 1, 1)
            sec_it = (t_data + t_step) / timed if done_iters > 1 else (t2 - t1)
            eta = budget - (t2 - t_start) if budget else sec_it * (total - step)
            print(f"ep {(step - 1) // steps_per_epoch + 1}/{a.epochs} it {step}/{total} loss {loss_v:.4f} "
                  f"(cls {parts[0]:.4f} loc {parts[1]:.4f} dir {parts[2]:.4f}) "
                  f"pos {(labels > 0).sum().item()} lr {lr:.2e} "
                  f"{1 / max(sec_it, 1e-9):.2f} it/s (data {t_data / timed:.3f}s + step {t_step / timed:.3f}s) "
                  f"ETA {eta / 60:.1f} min"
                  + (f" pasted/frame {pasted / max(frames_seen, 1):.1f}" if sampler else ""),
                  flush=True)
        if step % steps_per_epoch == 0 or step >= total:
            end_epoch()
        if step >= total:
            break
    if cnt:
        end_epoch()
    del loader
    if a.bn_recalib > 0:
        t0 = time.time()
        recalibrate_bn(model, frames, meta, assigner, a.bn_recalib, a.batch, a.seed, dev)
        print(f"BN statistics re-estimated on {min(a.bn_recalib, n)} frames ({time.time() - t0:.1f}s)", flush=True)
    wall = wall_before + time.time() - t_start
    timed = max(done_iters - 1, 1)
    summary = {"config": a.config, "data": os.path.abspath(a.data), "split": a.split, "frames": n,
               "epochs": round(step / steps_per_epoch, 2), "max_epochs": a.epochs, "iterations": step,
               "batch": a.batch, "seed": a.seed, "threads": a.threads, "device": str(dev),
               "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
               "workers": a.workers, "time_budget_s": a.time_budget, "stopped_by": stopped_by,
               "lr": max_lr, "bn_recalib_frames": min(a.bn_recalib, n), "wall_time_s": round(wall, 1),
               "sec_per_iter": round((t_data + t_step) / timed, 4), "data_sec_per_iter": round(t_data / timed, 4),
               "final_losses": history[-1] if history else None, "history": history,
               "init": a.init, "gt_sample": a.gt_sample, "cls_weight": a.cls_weight,
               "torch": torch.__version__}
    model = model.cpu()
    # the final checkpoint holds the re-estimated BN statistics and the summary (--export-only reads it)
    save_checkpoint(wall, summary=summary)
    with open(stem + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    if a.no_export:
        print(f"wrote {ckpt_path} and {stem}.json (wall {wall / 60:.1f} min); export with "
              f"train.py --export-only {ckpt_path} --out {a.out}", flush=True)
    else:
        export(model, a.out, trained_meta(summary), a.seed)
        print(f"wrote {a.out} and {stem}.json (wall {wall / 60:.1f} min)", flush=True)
    return summary


def trained_meta(summary):
    """The "trained" entry of the exported model's metadata."""
    extra = {k: summary[k] for k in ("epochs", "frames", "batch", "seed", "iterations")}
    extra["data"] = os.path.basename(os.path.normpath(summary["data"]))
    return extra


def export_only(a):
    """Exports the final checkpoint of a finished run (e.g. one trained with --no-export on a machine
    without the onnx package)."""
    ck = torch.load(a.export_only, map_location="cpu", weights_only=False)
    summary = ck.get("summary")
    if summary is None:
        raise SystemExit(f"error: {a.export_only} is a per-epoch checkpoint of an unfinished run (no summary); "
                         "finish it with --resume, or train again")
    model = pp.PointPillars(dict(pp.CONFIGS[ck["config"]]))
    model.load_state_dict(ck["model"])
    export(model, a.out, trained_meta(summary), ck["seed"], cudapp=a.cudapp)
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {a.out} from {a.export_only}", flush=True)


def smoke(a):
    import onnxruntime as ort
    t0 = time.time()
    kd.self_test()
    print(f"kitti_data self-test ok ({time.time() - t0:.1f}s)", flush=True)
    with tempfile.TemporaryDirectory() as td:
        data = os.path.join(td, "kitti")
        kd.make_fake_kitti(data, 4, seed=a.seed, n_val=2)
        with open(os.path.join(data, "ImageSets", "train.txt"), "w") as f:  # train on all 4
            f.write("000000\n000001\n000002\n000003\n")
        a.data, a.split, a.frames, a.epochs = data, "train", None, 1
        a.max_iters = a.max_iters or 2
        a.out = a.out or os.path.join(td, "out", f"pointpillars_{a.config}.onnx")
        summary = train(a)
        meta = kd.read_onnx_meta(a.out)
        assert meta["trained"]["iterations"] == summary["iterations"], meta
        sess = ort.InferenceSession(a.out, providers=["CPUExecutionProvider"])
        vel, _, cal = kd.frame_paths(data, "000003")
        v, i, n = kd.voxelize(kd.read_points(vel), meta, kd.read_calib(cal))
        outs = sess.run(["cls_preds", "box_preds", "dir_cls_preds"], {"voxels": v, "voxel_idxs": i, "voxel_num": n})
        dets = kd.decode_detections(*outs, meta)
        print(f"ORT ok: outputs {[o.shape for o in outs]}, {int(n[0])} pillars, {len(dets)} detections", flush=True)
        print(f"smoke ok in {time.time() - t0:.1f}s; {summary['sec_per_iter']:.3f} s/it "
              f"(data {summary['data_sec_per_iter']:.3f}) at batch {a.batch}, {a.threads} threads", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data")
    ap.add_argument("--config", choices=sorted(pp.CONFIGS), default="small")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of the split")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on the 2-vCPU box)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--resume")
    ap.add_argument("--init", help="initialise the weights from a .ckpt.pt; fresh optimizer / one-cycle "
                    "schedule over --epochs (unlike --resume)")
    ap.add_argument("--gt-sample", default=None, help="GT database sampling, e.g. 'Pedestrian:8,Cyclist:4' "
                    "(paste up to N objects of each class per frame; default off)")
    ap.add_argument("--cls-weight", default=None, help="focal-loss multiplier for the anchors (positive and "
                    "negative) of a class, e.g. 'Pedestrian:2.0' (default 1)")
    ap.add_argument("--max-iters", type=int, default=0, help="stop after K iterations in total")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--bn-recalib", type=int, default=64,
                    help="re-estimate BN statistics on N training frames before export (0 = off)")
    ap.add_argument("--channels-last", action="store_true", help="NHWC convolutions (not faster on the 2-core box)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    ap.add_argument("--workers", type=int, default=0,
                    help="data-loading processes (0: in the training process); results do not depend on it")
    ap.add_argument("--time-budget", type=float, default=0.0,
                    help="seconds for the whole run: the one-cycle schedule follows wall-clock time and "
                    "training stops when it is spent (or after --epochs); not resumable")
    ap.add_argument("--no-export", action="store_true",
                    help="write the final checkpoint and summary only (for machines without onnx)")
    ap.add_argument("--export-only", metavar="CKPT", help="export a finished run's final checkpoint to --out")
    ap.add_argument("--cudapp", metavar="PATH", help="with --export-only: also write the CUDA-PointPillars "
                    "layout (PPScatterPlugin) with the same weights")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(argv)
    a.t0 = time.time()
    if a.export_only:
        if not a.out:
            ap.error("--export-only needs --out")
        return export_only(a)
    if a.smoke:
        a.log_every = 1
        return smoke(a)
    if not a.data or not a.out:
        ap.error("--data and --out are required (or --smoke)")
    if not os.path.isdir(os.path.join(a.data, "training")):
        ap.error(f"{a.data} is not a KITTI directory (no training/)")
    train(a)


if __name__ == "__main__":
    main()
