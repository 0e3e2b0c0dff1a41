"""PointPillars (OpenPCDet-style) in PyTorch, for pillarq's export scripts.

Two configs share one structure (23 quantizable layers: 1 PFN MatMul + 16 backbone convs +
3 ConvTranspose + 3 head convs):

  kitti : OpenPCDet/CUDA-PointPillars KITTI config (voxel 0.16 m, 432x496 grid, PFN 64,
          filters [64,128,256], upsample [128,128,128], 10000 pillars).
  small : voxel 0.32 m (216x248 grid), 8000 pillars, PFN 32, filters [32,64,128],
          upsample strides [2,4,8] to [32,32,32] (stride-1 head: anchors 0.32 m apart);
          5.37 GFLOP per frame. (The bundled small ONNX predates this: upsample [1,2,4] to
          [64,64,64], stride-2 head, 4.62 GFLOP.)

Inputs (both layouts): voxels f32 [P,32,10], voxel_idxs i32 [P,4] (batch, z, y, x),
voxel_num i32 [1]; rows >= voxel_num are padding (garbage allowed).
Outputs (NHWC; map = grid / feature_map_stride: 2 for kitti, 1 for small): cls_preds [1,H,W,18], box_preds [1,H,W,42], dir_cls_preds [1,H,W,12].

Weights are random (seeded) but made "realistic": default init, every layer's weight is scaled
with one scalar so that its pre-BN output has unit std on a sample input (keeps activations sane
across ~20 layers), BN has running_mean ~ N(0,0.1), running_var ~ U(0.5,1.5),
weight ~ U(0.5,1.5), bias ~ N(0,0.1).
"""
import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CLASS_NAMES = ["Car", "Pedestrian", "Cyclist"]
ANCHORS = [  # REFERENCE.md, OpenPCDet pointpillar.yaml
    {"class": "Car", "size": [3.9, 1.6, 1.56], "bottom_z": -1.78, "rotations": [0.0, 1.5707963]},
    {"class": "Pedestrian", "size": [0.8, 0.6, 1.73], "bottom_z": -0.6, "rotations": [0.0, 1.5707963]},
    {"class": "Cyclist", "size": [1.76, 0.6, 1.73], "bottom_z": -0.6, "rotations": [0.0, 1.5707963]},
]
POINT_FEATURES = ["x", "y", "z", "intensity", "xc", "yc", "zc", "xp", "yp", "zp"]

_BASE = {
    "point_cloud_range": [0.0, -39.68, -3.0, 69.12, 39.68, 1.0],
    "max_points_per_pillar": 32,
    "num_point_features": 10,
    "layer_nums": [3, 5, 5],
    "layer_strides": [2, 2, 2],
    "upsample_strides": [1, 2, 4],
    "num_classes": 3,
    "num_anchors": 6,
}
CONFIGS = {
    "kitti": dict(_BASE, name="kitti", voxel_size=[0.16, 0.16, 4.0], max_pillars=10000,
                  pfn_filters=64, num_filters=[64, 128, 256], upsample_filters=[128, 128, 128]),
    "small": dict(_BASE, name="small", voxel_size=[0.32, 0.32, 4.0], max_pillars=8000,
                  pfn_filters=32, num_filters=[32, 64, 128], upsample_strides=[2, 4, 8],
                  upsample_filters=[32, 32, 32]),
}


def feature_map_stride(cfg):
    """Stride of the head's map in grid cells: the first block's stride over its upsampling."""
    return cfg["layer_strides"][0] // cfg["upsample_strides"][0]


def grid_size(cfg):
    pcr, vs = cfg["point_cloud_range"], cfg["voxel_size"]
    nx = int(round((pcr[3] - pcr[0]) / vs[0]))
    ny = int(round((pcr[4] - pcr[1]) / vs[1]))
    nz = int(round((pcr[5] - pcr[2]) / vs[2]))
    return nx, ny, nz


class PillarVFE(nn.Module):
    """Linear(10->C, no bias) + BN1d(eps 1e-3) + ReLU + max over points -> [P, C]."""

    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=False)
        self.norm = nn.BatchNorm1d(cout, eps=1e-3, momentum=0.01)

    def forward(self, voxels):
        x = self.linear(voxels)                                  # [P, 32, C]  (MatMul)
        x = self.norm(x.permute(0, 2, 1)).permute(0, 2, 1)       # BatchNormalization on [P, C, 32]
        x = F.relu(x)
        return torch.amax(x, dim=1)                              # [P, C]      (ReduceMax)


class PillarScatter(nn.Module):
    """Standard-op scatter to the BEV canvas; padded rows go to a dump slot with zero features."""

    def __init__(self, nx, ny):
        super().__init__()
        self.nx, self.ny = nx, ny

    def forward(self, features, voxel_idxs, voxel_num):
        P, C = features.shape
        valid = torch.arange(P, dtype=torch.int32, device=features.device) < voxel_num  # [P] bool
        flat = voxel_idxs[:, 2].long() * self.nx + voxel_idxs[:, 3].long()
        dump = torch.full_like(flat, self.ny * self.nx)
        flat = torch.where(valid, flat, dump)
        features = features * valid.unsqueeze(1).to(features.dtype)
        canvas = torch.zeros(self.ny * self.nx + 1, C, dtype=features.dtype, device=features.device)
        canvas[flat] = features                                  # ScatterND
        canvas = canvas[: self.ny * self.nx]
        return canvas.t().reshape(1, C, self.ny, self.nx)


class Backbone2D(nn.Module):
    """OpenPCDet BaseBEVBackbone: blocks (ZeroPad + strided conv + n convs) and deblocks, concat."""

    def __init__(self, cin, layer_nums, layer_strides, num_filters, upsample_strides, upsample_filters):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.deblocks = nn.ModuleList()
        c = cin
        for n, s, f, us, uf in zip(layer_nums, layer_strides, num_filters, upsample_strides, upsample_filters):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c, f, 3, stride=s, padding=0, bias=False),
                      nn.BatchNorm2d(f, eps=1e-3, momentum=0.01), nn.ReLU()]
            for _ in range(n):
                layers += [nn.Conv2d(f, f, 3, padding=1, bias=False),
                           nn.BatchNorm2d(f, eps=1e-3, momentum=0.01), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            self.deblocks.append(nn.Sequential(
                nn.ConvTranspose2d(f, uf, us, stride=us, bias=False),
                nn.BatchNorm2d(uf, eps=1e-3, momentum=0.01), nn.ReLU()))
            c = f

    def forward(self, x):
        ups = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            ups.append(deblock(x))
        return torch.cat(ups, dim=1)


class AnchorHead(nn.Module):
    """Three 1x1 convs with bias; outputs permuted to NHWC."""

    def __init__(self, cin, num_anchors, num_classes):
        super().__init__()
        self.conv_cls = nn.Conv2d(cin, num_anchors * num_classes, 1)
        self.conv_box = nn.Conv2d(cin, num_anchors * 7, 1)
        self.conv_dir_cls = nn.Conv2d(cin, num_anchors * 2, 1)

    def forward(self, x):
        cls = self.conv_cls(x).permute(0, 2, 3, 1)
        box = self.conv_box(x).permute(0, 2, 3, 1)
        dir_cls = self.conv_dir_cls(x).permute(0, 2, 3, 1)
        return cls, box, dir_cls


class DenseNet(nn.Module):
    """Backbone + neck + head: canvas [1,C,ny,nx] -> (cls, box, dir). Attribute names match
    PointPillars so that ONNX node/initializer names are identical in both layouts."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, canvas):
        return self.head(self.backbone(canvas))


class PFNOnly(nn.Module):
    def __init__(self, pfn):
        super().__init__()
        self.pfn = pfn

    def forward(self, voxels):
        return self.pfn(voxels)


class PointPillars(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        nx, ny, _ = grid_size(cfg)
        self.pfn = PillarVFE(cfg["num_point_features"], cfg["pfn_filters"])
        self.scatter = PillarScatter(nx, ny)
        self.backbone = Backbone2D(cfg["pfn_filters"], cfg["layer_nums"], cfg["layer_strides"],
                                   cfg["num_filters"], cfg["upsample_strides"], cfg["upsample_filters"])
        self.head = AnchorHead(sum(cfg["upsample_filters"]), cfg["num_anchors"], cfg["num_classes"])

    def forward(self, voxels, voxel_idxs, voxel_num):
        feats = self.pfn(voxels)
        canvas = self.scatter(feats, voxel_idxs, voxel_num)
        return self.head(self.backbone(canvas))

    def quantizable_modules(self):
        """The 23 quantizable layers in graph order."""
        mods = [("pfn.linear", self.pfn.linear)]
        for bi, (block, deblock) in enumerate(zip(self.backbone.blocks, self.backbone.deblocks)):
            for li, m in enumerate(block):
                if isinstance(m, nn.Conv2d):
                    mods.append((f"backbone.blocks.{bi}.{li}", m))
            mods.append((f"backbone.deblocks.{bi}.0", deblock[0]))
        mods += [("head.conv_cls", self.head.conv_cls), ("head.conv_box", self.head.conv_box),
                 ("head.conv_dir_cls", self.head.conv_dir_cls)]
        return mods


def count_flops(model):
    """2 * MACs of the PFN MatMul, convs, deconvs and head convs, for a full P-pillar input."""
    cfg = model.cfg
    nx, ny, _ = grid_size(cfg)
    P, N = cfg["max_pillars"], cfg["max_points_per_pillar"]
    macs = P * N * cfg["num_point_features"] * cfg["pfn_filters"]
    h, w = ny, nx
    for bi, (block, deblock) in enumerate(zip(model.backbone.blocks, model.backbone.deblocks)):
        for m in block:
            if isinstance(m, nn.Conv2d):
                if m.stride[0] == 2:
                    h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
                macs += h * w * m.in_channels * m.out_channels * 9
        us = deblock[0].stride[0]
        macs += (h * us) * (w * us) * deblock[0].in_channels * deblock[0].out_channels  # k==stride
    ho, wo = ny // feature_map_stride(cfg), nx // feature_map_stride(cfg)
    for conv in (model.head.conv_cls, model.head.conv_box, model.head.conv_dir_cls):
        macs += ho * wo * conv.in_channels * conv.out_channels
    return 2 * macs


def _sample_inputs(cfg, seed, frac=0.6):
    import numpy as np  # noqa: F401
    from make_random_inputs import make_pillar_inputs

    P = cfg["max_pillars"]
    v, i, n = make_pillar_inputs(cfg, P, int(round(frac * P)), seed)
    return torch.from_numpy(v), torch.from_numpy(i), torch.from_numpy(n)


@torch.no_grad()
def build_model(name, seed=0):
    """Deterministic random model (eval mode)."""
    cfg = copy.deepcopy(CONFIGS[name])
    torch.manual_seed(seed)
    model = PointPillars(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    # Prior-probability bias for the classifier (OpenPCDet uses pi = 0.01); -3.2 leaves about one
    # percent of the anchors above the 0.1 score threshold with random weights.
    model.head.conv_cls.bias.add_(-3.2)
    model.eval()

    # Data-dependent scalar weight scaling (LSUV-like): each layer's output gets unit std.
    voxels, idxs, num = _sample_inputs(cfg, seed + 12345)
    feats = {}
    hooks = []
    layers = model.quantizable_modules()
    for lname, mod in layers[:-3]:  # keep head at default scale (1x1 conv, outputs ~unit)
        def hook(m, inp, out, lname=lname):
            feats[lname] = out
        hooks.append(mod.register_forward_hook(hook))
    for lname, mod in layers[:-3]:
        feats.clear()
        model(voxels, idxs, num)
        out = feats[lname]
        if lname == "pfn.linear":
            out = out[: int(num[0])]  # valid pillars only
            n_pts = (voxels[: int(num[0])].abs().sum(-1) > 0)
            out = out[n_pts]
        std = float(out.float().std())
        if std > 0 and math.isfinite(std):
            mod.weight.mul_(1.0 / std)
    for h in hooks:
        h.remove()
    return model


def activation_report(model, seed=777):
    """Max |activation| per quantizable layer output on a sample input (sanity check)."""
    voxels, idxs, num = _sample_inputs(model.cfg, seed)
    rep = {}
    hooks = [mod.register_forward_hook(lambda m, i, o, n=n: rep.__setitem__(n, float(o.abs().max())))
             for n, mod in model.quantizable_modules()]
    with torch.no_grad():
        outs = model(voxels, idxs, num)
    for h in hooks:
        h.remove()
    return rep, outs


def metadata(cfg, layout, seed):
    """The ONNX metadata_props["pointpillars"] JSON of a model of config cfg (docs/models.md)."""
    nx, ny, nz = grid_size(cfg)
    return {
        "config": cfg["name"],
        "point_cloud_range": cfg["point_cloud_range"],
        "voxel_size": cfg["voxel_size"],
        "grid_size": [nx, ny, nz],
        "max_points_per_pillar": cfg["max_points_per_pillar"],
        "max_pillars": cfg["max_pillars"],
        "num_point_features": cfg["num_point_features"],
        "point_features": POINT_FEATURES,
        "class_names": CLASS_NAMES,
        "anchors": ANCHORS,
        "anchor_order": "class*2+rotation",
        "box_coder": "residual7",
        "dir_offset": 0.78539,
        "dir_limit_offset": 0.0,
        "num_dir_bins": 2,
        "score_threshold": 0.1,
        "nms_iou": 0.01,
        "nms_pre_max": 4096,
        "nms_post_max": 500,
        "feature_map_stride": feature_map_stride(cfg),
        "layout": layout,
        "seed": seed,
    }
