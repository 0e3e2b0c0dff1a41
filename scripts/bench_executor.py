#!/usr/bin/env python3
"""Benchmark: pillarq's CPU executor against onnxruntime on the same model, the same random
pillar inputs and the same thread counts. Prints a markdown table of median ms per frame and
the ratio ort/pillarq (> 1 means pillarq is faster).

    .venv/bin/python scripts/bench_executor.py [--models small kitti] [--threads 1 2] [--repeat 20]

Needs target/release/pillarq (cargo build --release) and the test venv (scripts/setup_venv.sh).
Both runtimes time the network alone (no model loading, no file I/O), after warm-up runs.
The two are run alternately, twice each, and the best median of each is kept, so a burst of
load on the machine does not decide the comparison.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PILLARQ = os.path.join(ROOT, "target", "release", "pillarq")
ORT_RUN = os.path.join(ROOT, "scripts", "ort_run.py")


def last_json(out):
    for line in reversed(out.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON timing line in:\n" + out)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("command failed: %s\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
    return last_json(r.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["small", "kitti"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    # Alternations of pillarq and onnxruntime; each side's best median is kept (the same for both).
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    if not os.path.exists(PILLARQ):
        sys.exit("build first: cargo build --release")
    import onnxruntime
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.models:
            model = os.path.join(ROOT, "onnx", "pointpillars_%s.onnx" % name)
            inp = os.path.join(tmp, name)
            # pillarq writes the random inputs it generates, so onnxruntime gets the same bytes.
            subprocess.run([PILLARQ, "infer", model, "--random", str(a.seed), "--out", inp, "--threads", "1"],
                           check=True, capture_output=True)
            feeds = []
            for n in ("voxels", "voxel_idxs", "voxel_num"):
                feeds += ["--input", "%s=%s" % (n, os.path.join(inp, n + ".npy"))]
            for t in a.threads:
                pq, ort = [], []
                for _ in range(a.rounds):
                    pq.append(run([PILLARQ, "infer", model] + feeds + ["--out", os.path.join(tmp, "o"),
                                  "--threads", str(t), "--repeat", str(a.repeat), "--json"])["median_ms"])
                    ort.append(run([sys.executable, ORT_RUN, model] + feeds + ["--out", os.path.join(tmp, "o"),
                                   "--threads", str(t), "--repeat", str(a.repeat), "--warmup", "2"])["median_ms"])
                p, o = min(pq), min(ort)
                rows.append((name, t, p, o, o / p))
                print("%-6s threads=%d pillarq %.1f ms, onnxruntime %.1f ms" % (name, t, p, o), file=sys.stderr)
    print("machine: %s, %d cores; onnxruntime %s; %d timed runs per measurement (median), best of %d"
          % (platform.processor() or platform.machine(), os.cpu_count(), onnxruntime.__version__, a.repeat,
             a.rounds))
    print()
    print("| model | threads | pillarq ms | onnxruntime ms | ratio ort/pillarq |")
    print("|---|---:|---:|---:|---:|")
    for name, t, p, o, r in rows:
        print("| %s | %d | %.1f | %.1f | %.2f |" % (name, t, p, o, r))


if __name__ == "__main__":
    main()
