#!/usr/bin/env bash
# Renders a pillarq report.html in headless Chromium, as a person would open it, and fails on a
# console message (the page has no script, so any is an error: a blocked or failed load, a parse
# problem), on a page without its content, or on an empty (near-uniform) screenshot.
#
#   scripts/check_report.sh [REPORT.html [OUT.png]]
#
# Without REPORT.html it makes one: `pillarq run` on a small fresh synthetic split (BIN, default
# target/release/pillarq, built when missing). Needs Debian's chromium (apt-get install chromium;
# .ci/run installs it) or CHROMIUM=/path/to/chrome.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

report="${1:-}"
png="${2:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

chrome="${CHROMIUM:-}"
if [ -z "$chrome" ]; then
  for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then chrome="$(command -v "$c")"; break; fi
  done
fi
if [ -z "$chrome" ]; then
  echo "check_report: no chromium found; install Debian's package (apt-get install chromium) or set CHROMIUM" >&2
  exit 2
fi

if [ -z "$report" ]; then
  bin="${BIN:-target/release/pillarq}"
  [ -x "$bin" ] || cargo build --release --quiet
  "$bin" synth --out "$work/data" --train 3 --val 6 --seed 5 >/dev/null
  cat >"$work/pipeline.yaml" <<YAML
data: $work/data
out: $work/run
calibration:
  frames: 2
search:
  top_k: 2
bench:
  runs: 2
  warmup: 1
YAML
  "$bin" run "$work/pipeline.yaml" -q >"$work/summary.txt"
  report="$work/run/report.html"
fi
[ -f "$report" ] || { echo "check_report: $report does not exist" >&2; exit 1; }
[ -n "$png" ] || png="$work/report.png"
url="file://$(cd "$(dirname "$report")" && pwd)/$(basename "$report")"

flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run --disable-extensions
       --user-data-dir="$work/profile" --enable-logging=stderr --v=0)
timeout 120 "$chrome" "${flags[@]}" --window-size=1200,2400 --screenshot="$png" "$url" 2>"$work/shot.log" >/dev/null || {
  cat "$work/shot.log" >&2; echo "check_report: chromium failed" >&2; exit 1; }
timeout 120 "$chrome" "${flags[@]}" --dump-dom "$url" 2>"$work/dom.log" >"$work/dom.html" || {
  cat "$work/dom.log" >&2; echo "check_report: chromium --dump-dom failed" >&2; exit 1; }

# Console messages and failed loads (chromium logs them as CONSOLE(...) and net::ERR_ lines).
if grep -hE 'CONSOLE[:(]|net::ERR_|Uncaught' "$work/shot.log" "$work/dom.log"; then
  echo "check_report: the page logged the messages above" >&2
  exit 1
fi

python3 - "$work/dom.html" "$png" <<'PY'
import struct, sys, zlib

dom = open(sys.argv[1], encoding="utf-8").read()
svgs = dom.count("<svg")
need = ["pillarq report", 'id="provenance"']
missing = [n for n in need if n not in dom]
if missing or svgs < 1:
    sys.exit(f"check_report: rendered page lacks {missing or 'plots'} ({svgs} svg)")

def pixels(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and ctype in (2, 6), (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * bpp
    prev, rows, i = bytearray(stride), [], 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if f == 1: line[x] = (line[x] + a) & 255
            elif f == 2: line[x] = (line[x] + b) & 255
            elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line)); prev = line
    return w, h, bpp, rows

w, h, bpp, rows = pixels(sys.argv[2])
bg = rows[0][:3]
ink = sum(1 for r in rows[::4] for x in range(0, w * bpp, 4 * bpp) if r[x:x + 3] != bg)
share = ink / (len(rows[::4]) * len(range(0, w * bpp, 4 * bpp)))
if share < 0.02:
    sys.exit(f"check_report: the screenshot is empty ({share:.1%} of pixels differ from the background)")
print(f"check_report: ok: {svgs} plots, {w}x{h} screenshot, {share:.1%} of pixels drawn -> {sys.argv[2]}")
PY
