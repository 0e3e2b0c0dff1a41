"""Writes the seed inputs of the fuzz targets into fuzz/seeds/<target>/ (committed; rerun only to
change them). Needs the test venv (numpy, onnx): .venv/bin/python fuzz/make_seeds.py

Seeds are small valid inputs of each format, so the fuzzer starts from the interesting parts:
tiny PointPillars-shaped ONNX graphs with pillarq metadata, .npy arrays, KITTI files, plans,
calibrations, TensorRT caches, the trtexec logs and layer-info samples of the unit tests
(src/deploy/trtexec.rs), configuration files (tests/fixtures/openpcdet) and a PNG header.
"""
import io
import json
import os
import re
import struct
import sys
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data, root=OUT):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def metadata():
    m = onnx.load(os.path.join(ROOT, "onnx", "pointpillars_small.onnx"), load_external_data=False)
    cfg = json.loads(m.metadata_props[0].value)
    cfg.update(grid_size=[8, 8, 1], max_pillars=16, max_points_per_pillar=4, num_point_features=4,
               point_features=["x", "y", "z", "intensity"], voxel_size=[8.64, 9.92, 4.0])
    cfg.pop("trained", None)
    return json.dumps(cfg)


def model(nodes, inputs, outputs, inits, meta=True, opset=17):
    g = helper.make_graph(nodes, "seed", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if meta:
        m.metadata_props.add(key="pointpillars", value=metadata())
    return m.SerializeToString()


def onnx_seeds():
    rng = np.random.default_rng(0)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
    bn = lambda p, c: {f"{p}.w": f32(c), f"{p}.b": f32(c), f"{p}.m": f32(c), f"{p}.v": np.abs(f32(c)) + 1}
    vi = helper.make_tensor_value_info
    # A PointPillars in miniature: PFN, scatter by ScatterND, Pad + stride-2 conv, BN, Relu, head.
    P, M, F, C = 16, 4, 4, 8
    inits = {"pfn.w": f32(F, C), "conv.w": f32(C, C, 3, 3), "head.w": f32(14, C, 1, 1),
             "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "zero": np.zeros((), np.float32),
             "axes": np.array([1], np.int64), "shape": np.array([1, C, 8, 8], np.int64),
             "canvas_shape": np.array([64, C], np.int64)}
    inits.update(bn("pbn", C))
    inits.update(bn("cbn", C))
    nodes = [
        helper.make_node("MatMul", ["voxels", "pfn.w"], ["mm"], name="/pfn/linear/MatMul"),
        helper.make_node("Transpose", ["mm"], ["t0"], perm=[0, 2, 1]),
        helper.make_node("BatchNormalization", ["t0", "pbn.w", "pbn.b", "pbn.m", "pbn.v"], ["bnp"]),
        helper.make_node("Transpose", ["bnp"], ["t1"], perm=[0, 2, 1]),
        helper.make_node("Relu", ["t1"], ["r0"]),
        helper.make_node("ReduceMax", ["r0", "axes"], ["feat"], keepdims=0),
        helper.make_node("ConstantOfShape", ["canvas_shape"], ["canvas"]),
        helper.make_node("Unsqueeze", ["voxel_idxs", "axes"], ["idx"]),
        helper.make_node("ScatterND", ["canvas", "voxel_idxs", "feat"], ["sc"]),
        helper.make_node("Transpose", ["sc"], ["sct"], perm=[1, 0]),
        helper.make_node("Reshape", ["sct", "shape"], ["bev"]),
        helper.make_node("Pad", ["bev", "pads", "zero"], ["padded"]),
        helper.make_node("Conv", ["padded", "conv.w"], ["c0"], name="/backbone/Conv", strides=[2, 2]),
        helper.make_node("BatchNormalization", ["c0", "cbn.w", "cbn.b", "cbn.m", "cbn.v"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["c2"]),
        helper.make_node("Conv", ["c2", "head.w"], ["preds"], name="/head/Conv"),
    ]
    ins = [vi("voxels", TensorProto.FLOAT, [P, M, F]), vi("voxel_idxs", TensorProto.INT64, [P, 1]),
           vi("voxel_num", TensorProto.INT64, [1])]
    outs = [vi("preds", TensorProto.FLOAT, None)]
    put("onnx_model", "pointpillars_tiny.onnx", model(nodes, ins, outs, inits))
    # Shapes computed at load time: Shape -> Gather -> Concat -> Reshape / Expand / Tile / Range.
    inits2 = {"i0": np.array([0], np.int64), "two": np.array([2], np.int64), "one": np.array(1, np.int64),
              "n": np.array(6, np.int64), "rep": np.array([1, 2], np.int64)}
    nodes2 = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["s0"], axis=0),
        helper.make_node("Concat", ["s0", "two"], ["s1"], axis=0),
        helper.make_node("Reshape", ["x", "s1"], ["y"]),
        helper.make_node("Expand", ["y", "s1"], ["e"]),
        helper.make_node("Tile", ["e", "rep"], ["t"]),
        helper.make_node("Range", ["one", "n", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=TensorProto.FLOAT),
        helper.make_node("Slice", ["t", "i0", "two", "i0"], ["sl"]),
    ]
    put("onnx_model", "shapes.onnx", model(nodes2, [vi("x", TensorProto.FLOAT, [3, 2])],
                                           [vi("sl", TensorProto.FLOAT, None), vi("rf", TensorProto.FLOAT, None)],
                                           inits2, meta=False, opset=13))
    for name in os.listdir(os.path.join(OUT, "onnx_model")):
        with open(os.path.join(OUT, "onnx_model", name), "rb") as f:
            put("onnx_metadata", name, f.read())


def npy_seeds():
    for name, a in [("f32.npy", np.arange(12, dtype=np.float32).reshape(3, 4)),
                    ("i32.npy", np.array([[0, 1, 2, 3]], np.int32)), ("i64.npy", np.array([7], np.int64)),
                    ("f16.npy", np.ones((2, 2), np.float16)), ("fortran.npy", np.asfortranarray(np.ones((2, 3), np.float32))),
                    ("scalar.npy", np.array(1.5, np.float32)), ("bool.npy", np.array([True, False]))]:
        b = io.BytesIO()
        np.save(b, a)
        put("npy", name, b.getvalue())


def kitti_seeds():
    put("kitti_label", "000000.txt",
        "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n"
        "Pedestrian 0.00 0 0.21 423.17 173.67 433.17 224.03 1.60 0.38 0.30 -5.47 1.64 30.60 0.04\n"
        "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10\n")
    put("kitti_label", "result.txt", "Car -1 -1 -1.5 100 100 200 200 1.5 1.6 3.9 1 1.7 20 -1.4 0.87\n")
    put("kitti_calib", "000000.txt",
        "P0: 707.05 0 604.08 0 0 707.05 180.51 0 0 0 1 0\n"
        "P1: 707.05 0 604.08 -379.78 0 707.05 180.51 0 0 0 1 0\n"
        "P2: 707.05 0 604.08 45.76 0 707.05 180.51 -0.34 0 0 1 0.0027\n"
        "P3: 707.05 0 604.08 -334.10 0 707.05 180.51 2.33 0 0 1 0.0049\n"
        "R0_rect: 0.9999 0.0098 -0.0074 -0.0098 0.9999 -0.0043 0.0074 0.0042 0.9999\n"
        "Tr_velo_to_cam: 0.0075 -0.9999 -0.0006 -0.0040 0.0148 0.0007 -0.9999 -0.0763 0.9998 0.0075 0.0148 -0.2718\n"
        "Tr_imu_to_velo: 0.9999 0.0008 -0.0020 -0.8087 -0.0008 0.9999 -0.0148 0.3196 0.0020 0.0148 0.9999 -0.7997\n")
    pts = np.array([[10, 1, -1, 0.5], [20, -3, -1.5, 0.1], [5, 0, 0, 0]], np.float32)
    put("velodyne", "000000.bin", pts.tobytes())


def plan_seeds():
    cal = {"method": "max", "frames": 2, "seed": None, "model_hash": "ab" * 32,
           "activations": {"/backbone/Conv": {"tensor": "bev", "amax": 3.5}, "/pfn/linear/MatMul": {"tensor": "voxels", "amax": 40.0}},
           "outputs": {"c2": 2.0, "mm": 30.0}}
    put("plan_json", "mixed.json", json.dumps({"default": "int8", "layers": {"/head/Conv": "fp16"}, "calibration": cal}))
    put("plan_json", "fp32.json", '{"default": "fp32"}')
    put("calibration_json", "calib.json", json.dumps({
        "model": "m.onnx", "data": "data", "split": "train", "frame_ids": ["000000"], "calibration": cal,
        "weights": {"/backbone/Conv": {"tensor": "conv.w", "axis": 0, "amax": [0.5, 0.25]}},
        "tensors": {"bev": 3.5, "padded": 3.5, "voxels": 40.0}}))
    put("trt_cache", "calib.cache", "TRT-100300-EntropyCalibration2\nvoxels: 3ea14de0\n/pfn/ReduceMax_output_0: 3d7dc7ea\ninput_1:0: 0\n")


def rust_consts(path):
    """The string constants of a Rust file: `const NAME: &str = "..."` (with line continuations)
    and `r#"..."#` raw strings."""
    src = open(path).read()
    out = {}
    for m in re.finditer(r'const ([A-Z0-9_]+): &str = r#"(.*?)"#;', src, re.S):
        out[m.group(1)] = m.group(2)
    for m in re.finditer(r'const ([A-Z0-9_]+): &str = "((?:[^"\\]|\\.)*)";', src, re.S):
        s = re.sub(r"\\\n\s*", "", m.group(2))
        out[m.group(1)] = s.encode().decode("unicode_escape")
    return out


def trtexec_seeds():
    consts = rust_consts(os.path.join(ROOT, "src", "deploy", "trtexec.rs"))
    for name, text in consts.items():
        if name.startswith("LOG_"):
            put("trtexec_log", name.lower() + ".txt", text)
        elif name.startswith("LAYERS_") or name == "PROFILE":
            put("trtexec_layers", name.lower() + ".json", text)


def config_seeds():
    base = os.path.join(ROOT, "tests", "fixtures", "openpcdet", "tools", "cfgs")
    for sub in ["kitti_models", "dataset_configs"]:
        for name in os.listdir(os.path.join(base, sub)):
            with open(os.path.join(base, sub, name), "rb") as f:
                put("model_config", name, f.read())
    put("model_config", "pillarq.json", metadata())
    put("model_config", "pillarq.yaml", "score_threshold: 0.3\nnms_iou: 0.5\nclass_names: [Car, Pedestrian, Cyclist]\n")


def png_seeds():
    raw = b"\x00\x00\x00\x00"
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1242, 375, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    put("png_header", "1242x375.png", png)


def regressions():
    """The byte-level reproducers of issue 13, as inputs of the fuzz targets (fuzz/regressions/)."""
    def reg(target, name, data):
        put(target, name, data, root=os.path.join(ROOT, "fuzz", "regressions"))

    vi = helper.make_tensor_value_info
    # An initializer with dims [2^62, 4] and no data (its element count wrapped to 0).
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 62, 4])
    g = helper.make_graph([helper.make_node("Relu", ["w"], ["y"])], "r", [], [vi("y", TensorProto.FLOAT, None)], [t])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    reg("onnx_model", "initializer_dims_overflow.onnx", m.SerializeToString())
    # ConstantOfShape [53569, 2^63 - 1] and [2^40, 32]; [2^20, 1] + [1, 2^20]; Range past int64.
    for name, dims in [("constant_of_shape_wrap", [53569, (1 << 63) - 1]), ("constant_of_shape_huge", [1 << 40, 32])]:
        g = helper.make_graph([helper.make_node("ConstantOfShape", ["d"], ["y"])], "c", [],
                              [vi("y", TensorProto.FLOAT, None)], [numpy_helper.from_array(np.array(dims, np.int64), "d")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        reg("onnx_model", name + ".onnx", m.SerializeToString())
    g = helper.make_graph(
        [helper.make_node("ConstantOfShape", ["da"], ["a"]), helper.make_node("ConstantOfShape", ["db"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["y"])], "b", [], [vi("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1 << 20, 1], np.int64), "da"),
         numpy_helper.from_array(np.array([1, 1 << 20], np.int64), "db")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    reg("onnx_model", "broadcast_huge.onnx", m.SerializeToString())
    g = helper.make_graph(
        [helper.make_node("Range", ["s", "l", "d"], ["y"])], "g", [], [vi("y", TensorProto.INT64, None)],
        [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
         [("s", (1 << 63) - 2000), ("l", (1 << 63) - 1), ("d", 1000)]])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    reg("onnx_model", "range_past_int64.onnx", m.SerializeToString())
    # pads[4] = 2^62 (a worker-thread panic), and 100000 on every spatial side (1.28 TB), in front
    # of a Conv (as tests/bad_input.rs::pads_that_overflow_or_exceed_the_budget).
    for name, pads in [("pad_2pow62", [0, 0, 0, 0, 1 << 62, 0, 0, 0]),
                       ("pad_100000", [0, 0, 100000, 100000, 0, 0, 100000, 100000])]:
        g = helper.make_graph(
            [helper.make_node("Pad", ["x", "pads"], ["p"]), helper.make_node("Conv", ["p", "w"], ["y"])], "p",
            [vi("x", TensorProto.FLOAT, [1, 4, 8, 8])], [vi("y", TensorProto.FLOAT, None)],
            [numpy_helper.from_array(np.array(pads, np.int64), "pads"),
             numpy_helper.from_array(np.full((6, 4, 3, 3), 0.1, np.float32), "w")])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        reg("onnx_model", name + ".onnx", m.SerializeToString())
    # A .npy of shape (2^62 + 1,) with 4 data bytes.
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }" % ((1 << 62) + 1)
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    reg("npy", "shape_overflow.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 4)
    # KITTI: NaN in a calibration matrix, a negative size in a label; a cache scale of NaN.
    reg("kitti_calib", "nan.txt", "P2: nan 0 604 45 0 707 180 -0.3 0 0 1 0.003\nR0_rect: 1 0 0 0 1 0 0 0 1\n"
        "Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n")
    reg("kitti_label", "negative_size.txt", "Car 0 0 -1.5 100 100 200 200 -1.5 1.6 3.9 1 1.7 20 -1.4\n")
    reg("calibration_json", "amax_tiny.json", json.dumps({
        "model": "m.onnx", "data": "d", "split": "train", "frame_ids": [], "weights": {}, "tensors": {},
        "calibration": {"method": "max", "frames": 1, "activations": {"/c": {"tensor": "x", "amax": 1e-45}}}}))
    reg("trt_cache", "nan_scale.cache", "TRT-8601-EntropyCalibration2\nx: 7fc00000\n")
    # trtexec: a summary line merged by markdown, a layers JSON with a raw U+001E.
    reg("trtexec_log", "merged_lines.txt", "=== Performance summary ===\nThroughput: 12.5 qps\n"
        "Latency: min = 1 ms, max = 2 ms, mean = 1.5 ms, median = 1.5 ms, percentile(90%) = 2 ms\n"
        "D2H Latency: min = 0.01 ms, max = 0.02 ms Total Host Walltime: 3.0 s GPU compute time is unstable\n")
    reg("trtexec_layers", "control_char.json", '{"Layers": [{"Name": "/a/Conv\x1e", "LayerType": "CaskConvolution"}]}')


if __name__ == "__main__":
    regressions()
    onnx_seeds()
    npy_seeds()
    kitti_seeds()
    plan_seeds()
    trtexec_seeds()
    config_seeds()
    png_seeds()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))), file=sys.stderr)
