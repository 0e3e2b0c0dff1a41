//! Reading what NVIDIA's `trtexec` prints and writes, in the formats of TensorRT 8.6 and 10.x:
//!
//! * [`parse_version`]: the TensorRT version, from the `&&&& RUNNING TensorRT.trtexec [TensorRT v100300]`
//!   banner or the `TensorRT version: 10.3.0` line.
//! * [`parse_performance`]: the `=== Performance summary ===` block (and the device it ran on);
//!   also the `Host Latency` / `GPU Compute` blocks of TensorRT 7.x and 8.0.
//! * [`parse_layer_info`]: the engine layer file of `--exportLayerInfo=FILE` (detailed with
//!   `--profilingVerbosity=detailed`, names only otherwise), and [`verify_precisions`], which checks
//!   that ONNX nodes ran at the precision a plan asked for.
//! * [`parse_profile`]: the per-layer timing file of `--exportProfile=FILE`.
//!
//! Where the formats come from (the tests' samples cite the same sources per sample):
//! * the log lines: trtexec's own source, `samples/common/sampleReporting.cpp` (`printEpilog`) and
//!   `samples/common/sampleDevice.cpp` (`setCudaDevice`) in github.com/NVIDIA/TensorRT;
//! * the layer file: TensorRT's engine inspector as written by trtexec, e.g.
//!   https://github.com/NVIDIA/TensorRT/issues/4020 and https://github.com/NVIDIA/TensorRT/issues/3737,
//!   read the way NVIDIA's own TREx tool reads it (`tools/experimental/trt-engine-explorer/trex/`
//!   `parser.py`, `layer.py`, `activations.py`).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

fn err(msg: impl Into<String>) -> Error {
    Error::Other(msg.into())
}

/// One log line without trtexec's `[11/22/2026-10:00:00] ` time stamp and `[I] ` severity tag
/// (`I`, `W`, `E`, `V` or `F`); lines without them come back unchanged (less a trailing `\r`).
/// Further tags such as `[TRT] ` are kept.
pub fn strip_log_prefix(line: &str) -> &str {
    let mut s = line.trim_end_matches(['\r', '\n']);
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let tag = &rest[..end];
            if tag.contains('/') && tag.contains(':') {
                let rest = &rest[end + 1..];
                s = rest.strip_prefix(' ').unwrap_or(rest);
            }
        }
    }
    if let Some(rest) = s.strip_prefix('[') {
        let b = rest.as_bytes();
        if b.len() >= 2 && b[1] == b']' && matches!(b[0], b'I' | b'W' | b'E' | b'V' | b'F') {
            let rest = &rest[2..];
            s = rest.strip_prefix(' ').unwrap_or(rest);
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Version
// ---------------------------------------------------------------------------------------------

/// A TensorRT version; displays as `10.3.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrtVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl TrtVersion {
    /// From `NV_TENSORRT_VERSION` as the banner prints it: `major*10000 + minor*100 + patch` from
    /// TensorRT 10 on (`100300` is 10.3.0, `101303` is 10.13.3), `major*1000 + minor*100 + patch`
    /// before (`8601` is 8.6.1). Five or more digits take the first form, four the second.
    pub fn from_code(code: u32) -> Option<TrtVersion> {
        if code >= 10_000 {
            Some(TrtVersion { major: code / 10_000, minor: code / 100 % 100, patch: code % 100 })
        } else if code >= 1_000 {
            Some(TrtVersion { major: code / 1_000, minor: code / 100 % 10, patch: code % 100 })
        } else {
            None
        }
    }

    /// Whether this TensorRT builds only strongly typed networks (precision taken from the ONNX
    /// types and Q/DQ nodes; no `--fp16`/`--int8` builder flags): major version 11 and later.
    pub fn strongly_typed_only(&self) -> bool {
        self.major >= 11
    }

    /// Whether this trtexec has `--exportLayerInfo` and the precision constraint flags
    /// (`--precisionConstraints`, `--layerPrecisions`, `--layerOutputTypes`): 8.4 and later.
    pub fn has_layer_controls(&self) -> bool {
        (self.major, self.minor) >= (8, 4)
    }
}

impl fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `10.3.0` or `10.3.0.26` (the build number is dropped); `10.3` reads as 10.3.0.
fn parse_dotted_version(s: &str) -> Option<TrtVersion> {
    let mut parts = s.trim().split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.trim().parse().ok()?,
        None => 0,
    };
    Some(TrtVersion { major, minor, patch })
}

/// The TensorRT version trtexec reports: from its banner, `&&&& RUNNING TensorRT.trtexec
/// [TensorRT v100300] # trtexec ...` (also the `&&&& PASSED`/`FAILED` lines, and with a build tag
/// after it as in 10.13's `[TensorRT v101303] [b9]`), else from the `[I] TensorRT version: 10.3.0`
/// line that follows the device information.
pub fn parse_version(text: &str) -> Option<TrtVersion> {
    const BANNER: &str = "[TensorRT v";
    let from_banner = text.lines().find_map(|line| {
        let at = line.find(BANNER)?;
        let rest = &line[at + BANNER.len()..];
        let digits = &rest[..rest.find(']')?];
        TrtVersion::from_code(digits.trim().parse().ok()?)
    });
    from_banner.or_else(|| {
        text.lines().find_map(|line| {
            let rest = strip_log_prefix(line).trim().strip_prefix("TensorRT version:")?;
            parse_dotted_version(rest)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Performance summary
// ---------------------------------------------------------------------------------------------

/// One timing line of the summary, in milliseconds: `min = 0.8 ms, max = 1.1 ms, mean = 0.9 ms,
/// median = 0.9 ms, percentile(90%) = 1 ms, percentile(95%) = 1 ms, percentile(99%) = 1.1 ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingStats {
    pub min_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub median_ms: f64,
    /// `(percent, ms)` for every `percentile(P%)` printed, in printed order (`--percentile`,
    /// default 90, 95, 99 in 8.6 and 10.x; one value, 99, in 8.2 and before).
    pub percentiles_ms: Vec<(f64, f64)>,
}

impl TimingStats {
    /// The value printed for `percentile(p%)`, if it was.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        self.percentiles_ms.iter().find(|(q, _)| (q - p).abs() < 1e-9).map(|&(_, v)| v)
    }
}

/// What trtexec's `=== Performance summary ===` reports, with the version and device found in
/// the same log. Items the log lacks are `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PerfSummary {
    pub version: Option<TrtVersion>,
    /// `Selected Device: NVIDIA H100 80GB HBM3`.
    pub device_name: Option<String>,
    /// `Compute Capability: 9.0`.
    pub compute_capability: Option<String>,
    /// `Throughput: 234.19 qps`: queries (inferences) per second.
    pub throughput_qps: f64,
    /// H2D + GPU compute + D2H for one query.
    pub latency: Option<TimingStats>,
    /// Printed only by TensorRT 8.2 and before.
    pub end_to_end_host_latency: Option<TimingStats>,
    pub enqueue_time: Option<TimingStats>,
    pub h2d_latency: Option<TimingStats>,
    pub gpu_compute_time: Option<TimingStats>,
    pub d2h_latency: Option<TimingStats>,
    /// `Total Host Walltime: 3.00082 s`, in seconds.
    pub total_host_walltime_s: Option<f64>,
    /// `Total GPU Compute Time: 2.96536 s`, in seconds.
    pub total_gpu_compute_time_s: Option<f64>,
    /// From the warning `* GPU compute time is unstable, with coefficient of variance = 5.5%.`,
    /// printed when it exceeds 1%.
    pub gpu_compute_cv_percent: Option<f64>,
    /// Summary lines that did not read as trtexec writes them and were left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

const SUMMARY_HEADER: &str = "=== Performance summary ===";

fn parse_number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// Parses the part after `Latency: `; `Err` names what is malformed.
fn parse_timing_stats(s: &str) -> std::result::Result<TimingStats, String> {
    let (mut min, mut max, mut mean, mut median) = (None, None, None, None);
    let mut percentiles = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let item = item.strip_suffix("ms").unwrap_or(item).trim_end();
        // `key = value`; tolerate a missing `=` (`max 6.19 ms`), as hand-copied logs show.
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => item.rsplit_once(' ').map(|(k, v)| (k.trim(), v.trim())).ok_or(format!("'{item}'"))?,
        };
        let v = parse_number(value).ok_or(format!("'{item}' (value is not a number)"))?;
        match key {
            "min" => min = Some(v),
            "max" => max = Some(v),
            "mean" => mean = Some(v),
            "median" => median = Some(v),
            _ => {
                let p = key
                    .strip_prefix("percentile(")
                    .and_then(|k| k.strip_suffix(')'))
                    .and_then(|k| k.trim().strip_suffix('%'))
                    .and_then(parse_number)
                    .ok_or(format!("'{item}' (unknown item '{key}')"))?;
                percentiles.push((p, v));
            }
        }
    }
    match (min, max, mean, median) {
        (Some(min_ms), Some(max_ms), Some(mean_ms), Some(median_ms)) => {
            Ok(TimingStats { min_ms, max_ms, mean_ms, median_ms, percentiles_ms: percentiles })
        }
        _ => Err("min, max, mean and median are not all there".into()),
    }
}

/// `3.00082 s` -> 3.00082.
fn parse_seconds(s: &str) -> Option<f64> {
    parse_number(s.trim().strip_suffix('s')?)
}

/// The first value of a `Key: value` line anywhere in the log.
fn find_value<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| l.trim().strip_prefix(key)).map(str::trim).filter(|v| !v.is_empty())
}

/// Parses the performance summary of a trtexec log (the last one when the log holds several),
/// with the TensorRT version and the selected device when the log has them: the
/// `=== Performance summary ===` block of TensorRT 8.2 and later, or the `Host Latency` /
/// `GPU Compute` blocks of 7.x and 8.0 ([`parse_legacy_summary`]). Lines may carry trtexec's
/// `[date] [I] ` prefixes or not. A line that does not read as trtexec writes it (a log pasted
/// through markdown merges lines) is left out with a note in [`PerfSummary::warnings`]. Errors when
/// there is no summary (trtexec failed, or only built the engine) or no throughput.
pub fn parse_performance(text: &str) -> Result<PerfSummary> {
    let lines: Vec<&str> = text.lines().map(strip_log_prefix).collect();
    let mut s = PerfSummary {
        version: parse_version(text),
        device_name: find_value(&lines, "Selected Device:").map(str::to_string),
        compute_capability: find_value(&lines, "Compute Capability:").map(str::to_string),
        ..PerfSummary::default()
    };
    let Some(start) = lines.iter().rposition(|l| l.trim() == SUMMARY_HEADER) else {
        if let Some(start) = lines.iter().rposition(|l| l.trim() == LEGACY_HEADER) {
            parse_legacy_summary(&lines[start + 1..], &mut s)?;
            return Ok(s);
        }
        let failed = text.lines().find(|l| l.starts_with("&&&& FAILED"));
        let why = match failed {
            Some(l) => format!("trtexec failed ({})", l.trim()),
            None => "did it run inference? --skipInference and build-only runs print none".into(),
        };
        return Err(err(format!("trtexec output has no '{SUMMARY_HEADER}' block: {why}")));
    };
    let mut throughput = None;
    for line in &lines[start + 1..] {
        let line = line.trim();
        // The block ends with an empty log line; the verbose explanations that follow it
        // ("Throughput: the observed throughput ...") must not be read as values.
        if line.is_empty() || line.starts_with("===") {
            break;
        }
        if let Some(rest) = line.strip_prefix("* GPU compute time is unstable, with coefficient of variance =") {
            s.gpu_compute_cv_percent = parse_number(rest.trim().trim_end_matches('.').trim_end_matches('%'));
            continue;
        }
        let Some((key, value)) = line.split_once(": ") else { continue };
        if let Err(w) = read_summary_line(key, value, &mut s, &mut throughput) {
            s.warnings.push(format!("malformed '{key}' line left out ({w}): {line}"));
        }
    }
    s.throughput_qps = throughput.ok_or_else(|| {
        let notes = if s.warnings.is_empty() { String::new() } else { format!(" ({})", s.warnings.join("; ")) };
        err(format!("trtexec output: the '{SUMMARY_HEADER}' block has no 'Throughput: N qps' line{notes}"))
    })?;
    Ok(s)
}

/// One `Key: value` line of the summary block into `s`; `Err` says what is malformed.
fn read_summary_line(
    key: &str,
    value: &str,
    s: &mut PerfSummary,
    throughput: &mut Option<f64>,
) -> std::result::Result<(), String> {
    let stats = |v: &str| parse_timing_stats(v).map(Some);
    let seconds = |v: &str| parse_seconds(v).map(Some).ok_or_else(|| "not 'N s'".to_string());
    match key {
        "Throughput" => {
            let v = value.trim().strip_suffix("qps").ok_or("no 'qps'")?;
            *throughput = Some(parse_number(v).ok_or("not a number")?);
        }
        "Latency" => s.latency = stats(value)?,
        "End-to-End Host Latency" => s.end_to_end_host_latency = stats(value)?,
        "Enqueue Time" => s.enqueue_time = stats(value)?,
        "H2D Latency" => s.h2d_latency = stats(value)?,
        "GPU Compute Time" => s.gpu_compute_time = stats(value)?,
        "D2H Latency" => s.d2h_latency = stats(value)?,
        "Total Host Walltime" => s.total_host_walltime_s = seconds(value)?,
        "Total GPU Compute Time" => s.total_gpu_compute_time_s = seconds(value)?,
        _ => {}
    }
    Ok(())
}

/// The first line of TensorRT 7.x and 8.0's summary.
const LEGACY_HEADER: &str = "Host Latency";

/// min/max/mean/median/percentiles as they are found, line by line.
#[derive(Default)]
struct StatsBuilder {
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    median: Option<f64>,
    percentiles: Vec<(f64, f64)>,
}

impl StatsBuilder {
    fn set(&mut self, key: &str, v: f64, percent: Option<f64>) {
        match (key, percent) {
            ("min", _) => self.min = Some(v),
            ("max", _) => self.max = Some(v),
            ("mean", _) => self.mean = Some(v),
            ("median", _) => self.median = Some(v),
            (_, Some(p)) => self.percentiles.push((p, v)),
            _ => {}
        }
    }

    fn build(self) -> Option<TimingStats> {
        Some(TimingStats {
            min_ms: self.min?,
            max_ms: self.max?,
            mean_ms: self.mean?,
            median_ms: self.median?,
            percentiles_ms: self.percentiles,
        })
    }
}

/// `55.1414 ms` or `56.2 ms at 99%` -> (55.1414, None) or (56.2, Some(99)).
fn legacy_value(s: &str) -> Option<(f64, Option<f64>)> {
    let (v, rest) = s.trim().split_once(" ms")?;
    let percent = match rest.trim().strip_prefix("at ") {
        Some(p) => Some(parse_number(p.trim().strip_suffix('%')?)?),
        None => None,
    };
    Some((parse_number(v)?, percent))
}

/// The summary of TensorRT 7.x and 8.0 (`printEpilog` before the `=== Performance summary ===`
/// block), from the line after `Host Latency`:
///
/// ```text
/// min: 55.1414 ms (end to end 55.1486 ms)
/// ...
/// percentile: 56.9 ms at 99% (end to end 56.95 ms at 99%)
/// throughput: 18.0652 qps
/// walltime: 3.04456 s
/// Enqueue Time
/// min: 0.9 ms
/// ...
/// GPU Compute
/// min: 54.9 ms
/// ...
/// total compute time: 2.98 s
/// ```
fn parse_legacy_summary(lines: &[&str], s: &mut PerfSummary) -> Result<()> {
    #[derive(PartialEq)]
    enum Section {
        Host,
        Enqueue,
        Gpu,
    }
    let mut section = Section::Host;
    let (mut host, mut e2e, mut enqueue, mut gpu) =
        (StatsBuilder::default(), StatsBuilder::default(), StatsBuilder::default(), StatsBuilder::default());
    let mut throughput = None;
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with("&&&&") {
            break;
        }
        match line {
            "Enqueue Time" => section = Section::Enqueue,
            "GPU Compute" => section = Section::Gpu,
            _ => {}
        }
        let Some((key, value)) = line.split_once(": ") else { continue };
        match key {
            "throughput" => throughput = value.trim().strip_suffix("qps").and_then(parse_number),
            "walltime" => s.total_host_walltime_s = parse_seconds(value),
            "total compute time" => s.total_gpu_compute_time_s = parse_seconds(value),
            "min" | "max" | "mean" | "median" | "percentile" => {
                let (main, end_to_end) = match value.split_once("(end to end ") {
                    Some((m, e)) => (m, Some(e.trim_end_matches(')'))),
                    None => (value, None),
                };
                let Some((v, percent)) = legacy_value(main) else {
                    s.warnings.push(format!("malformed line left out: {line}"));
                    continue;
                };
                let target = match section {
                    Section::Host => &mut host,
                    Section::Enqueue => &mut enqueue,
                    Section::Gpu => &mut gpu,
                };
                target.set(key, v, percent);
                if let Some((v, percent)) = end_to_end.and_then(legacy_value) {
                    if section == Section::Host {
                        e2e.set(key, v, percent);
                    }
                }
            }
            _ => {}
        }
    }
    s.latency = host.build();
    s.end_to_end_host_latency = e2e.build();
    s.enqueue_time = enqueue.build();
    s.gpu_compute_time = gpu.build();
    if s.latency.is_none() && s.gpu_compute_time.is_none() {
        return Err(err(
            "trtexec output: a TensorRT 7.x/8.0 summary ('Host Latency' block) without min, max, mean and \
             median",
        ));
    }
    s.throughput_qps = throughput.ok_or_else(|| {
        err("trtexec output: a TensorRT 7.x/8.0 summary ('Host Latency' block) without 'throughput: N qps'")
    })?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Engine layer information (--exportLayerInfo)
// ---------------------------------------------------------------------------------------------

/// A tensor or weight precision as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Prec {
    Int8,
    Fp16,
    Fp32,
    /// Any other type, as TensorRT names it: `Int32`, `BFloat16`, `FP8`, `Bool`, ...
    Other(String),
}

impl fmt::Display for Prec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prec::Int8 => f.write_str("INT8"),
            Prec::Fp16 => f.write_str("FP16"),
            Prec::Fp32 => f.write_str("FP32"),
            Prec::Other(s) => f.write_str(s),
        }
    }
}

impl Prec {
    /// The data type in a layer file `Format/Datatype` (`Row major linear FP32`, `Channel major
    /// FP16 format where channel % 8 == 0`, `Thirty-two wide channel vectorized row major Int8
    /// format`, `Channel major INT8 format where channel % 16 == 0`, TensorRT 10's bare `Half` /
    /// `Int8` / `Float`) or a `Weights`/`Bias` `Type` (`Int8`, `Half`, `Float`; `FP16`/`FP32` in
    /// older files). `None` for `Unknown format`, `None` and anything without a type name.
    pub fn from_trt(s: &str) -> Option<Prec> {
        const OTHERS: [&str; 14] = [
            "int32", "int64", "int16", "int4", "uint8", "uint16", "uint32", "uint64", "bool", "bfloat16", "fp8", "fp4",
            "double", "e8m0",
        ];
        s.trim().trim_end_matches('.').split_whitespace().find_map(|tok| match tok.to_ascii_lowercase().as_str() {
            "int8" => Some(Prec::Int8),
            "fp16" | "half" => Some(Prec::Fp16),
            "fp32" | "float" => Some(Prec::Fp32),
            t if OTHERS.contains(&t) => Some(Prec::Other(tok.to_string())),
            _ => None,
        })
    }
}

/// One layer of a built engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineLayer {
    /// The engine's name for it; fused layers join their parts with ` + ` (`/a/Conv + /a/Relu`),
    /// horizontally merged ones with ` || `.
    pub name: String,
    /// The parts of `name`: split on ` + ` and ` || `, `PWN(a, b)` opened into `a` and `b`,
    /// `{ForeignNode[first...last]}` into its two ends, a ` [profile N]` suffix dropped. Empty for
    /// a reformat layer, whose name quotes the layer it feeds (`Reformatting CopyNode for Input
    /// Tensor 0 to /a/Conv + /a/Relu`).
    pub sub_names: Vec<String>,
    /// The ONNX nodes named by `Metadata` (`[ONNX Layer: /a/Conv]`, one per fused node, separated
    /// by U+001E), which TensorRT 8.6 and later write in detailed files.
    pub onnx_nodes: Vec<String>,
    /// `LayerType` (`CaskConvolution`, `Reformat`, `PointWiseV2`, `Myelin`, ...); `None` in a
    /// names-only file.
    pub layer_type: Option<String>,
    /// The optimization profile of an engine built with several (`[profile N]` names); `None` for
    /// the first.
    pub profile: Option<u32>,
    /// The type of the first input (`Inputs[0]`); `None` when unknown.
    pub input_precision: Option<Prec>,
    /// The type of the first output.
    pub output_precision: Option<Prec>,
    /// `Weights.Type` when the layer has weights (a non-zero `Count`).
    pub weight_precision: Option<Prec>,
    pub tactic_name: Option<String>,
    pub origin: Option<String>,
}

impl EngineLayer {
    fn names_only(name: &str) -> EngineLayer {
        let (sub_names, profile) = split_layer_name(name);
        EngineLayer {
            name: name.to_string(),
            sub_names,
            onnx_nodes: Vec::new(),
            layer_type: None,
            profile,
            input_precision: None,
            output_precision: None,
            weight_precision: None,
            tactic_name: None,
            origin: None,
        }
    }

    /// A layer TensorRT inserted to convert a tensor's format or type.
    pub fn is_reformat(&self) -> bool {
        self.layer_type.as_deref() == Some("Reformat")
            || self.name.starts_with("Reformatting CopyNode")
            || self.origin.as_deref() == Some("REFORMAT")
    }

    /// Whether this layer implements ONNX node `node`: one of its `sub_names` or Metadata ONNX
    /// nodes is `node` (reformat layers implement none).
    pub fn implements(&self, node: &str) -> bool {
        !self.is_reformat() && (self.sub_names.iter().any(|n| n == node) || self.onnx_nodes.iter().any(|n| n == node))
    }

    /// The precision the layer computes in: INT8 when its weights or its input are INT8 (a
    /// Q/DQ-fused convolution reads INT8 and holds `Int8` weights, whatever type it outputs),
    /// else FP16 when either is FP16, else FP32 when either is FP32, else the other type given;
    /// `None` when the file gives neither (names-only files).
    pub fn compute_precision(&self) -> Option<Prec> {
        let both = [&self.weight_precision, &self.input_precision];
        for p in [Prec::Int8, Prec::Fp16, Prec::Fp32] {
            if both.iter().any(|q| q.as_ref() == Some(&p)) {
                return Some(p);
            }
        }
        both.into_iter().find_map(|q| q.clone())
    }
}

/// Splits `s` at each top-level (outside `()`, `[]`, `{}`) occurrence of any of `seps`.
fn split_top_level<'a>(s: &'a str, seps: &[&str]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let (mut depth, mut start, mut i) = (0i32, 0, 0);
    let bytes = s.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            if let Some(sep) = seps.iter().find(|sep| bytes[i..].starts_with(sep.as_bytes())) {
                parts.push(&s[start..i]);
                i += sep.len();
                start = i;
                continue;
            }
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

/// `name [profile 2]` -> (`name`, Some(2)).
fn strip_profile(s: &str) -> (&str, Option<u32>) {
    if let Some(body) = s.strip_suffix(']') {
        if let Some(at) = body.rfind("[profile ") {
            if let Ok(p) = body[at + "[profile ".len()..].trim().parse() {
                return (body[..at].trim_end(), Some(p));
            }
        }
    }
    (s, None)
}

fn push_parts(piece: &str, out: &mut Vec<String>, profile: &mut Option<u32>) {
    let (piece, p) = strip_profile(piece.trim());
    if p.is_some() {
        *profile = p;
    }
    if piece.is_empty() {
        return;
    }
    if let Some(inner) = piece.strip_prefix("PWN(").and_then(|s| s.strip_suffix(')')) {
        for part in split_top_level(inner, &[", ", " + "]) {
            push_parts(part, out, profile);
        }
    } else if let Some(inner) = piece.strip_prefix("{ForeignNode[").and_then(|s| s.strip_suffix("]}")) {
        // `{ForeignNode[a + b.../c]}`: https://github.com/NVIDIA/TensorRT/issues/2308, ptlflow#65.
        for part in inner.split("...").flat_map(|end| split_top_level(end, &[" + "])) {
            push_parts(part, out, profile);
        }
    } else if !out.iter().any(|o| o == piece) {
        out.push(piece.to_string());
    }
}

/// The parts of an engine layer name (see [`EngineLayer::sub_names`]) and its profile.
pub fn split_layer_name(name: &str) -> (Vec<String>, Option<u32>) {
    let mut out = Vec::new();
    let mut profile = None;
    if name.starts_with("Reformatting CopyNode") {
        return (out, strip_profile(name).1);
    }
    // TensorRT 8.6 and 10 may put U+001E/U+001F separators in names (TREx `fix_unicode`).
    let name = name.replace(['\u{1e}', '\u{1f}'], " + ");
    for piece in split_top_level(&name, &[" + ", " || "]) {
        push_parts(piece, &mut out, &mut profile);
    }
    (out, profile)
}

/// The ONNX node names in a layer's `Metadata`: `[ONNX Layer: /a/Conv]\u001e[ONNX Layer: /a/Relu]`.
fn metadata_onnx_nodes(meta: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in meta.split(['\u{1e}', '\u{1f}']) {
        let Some(node) = part.trim().strip_prefix("[ONNX Layer:").and_then(|s| s.strip_suffix(']')) else {
            continue;
        };
        let node = node.trim();
        if !node.is_empty() && !out.iter().any(|o| o == node) {
            out.push(node.to_string());
        }
    }
    out
}

fn tensor_precision(layer: &Value, key: &str) -> Option<Prec> {
    layer.get(key)?.as_array()?.first()?.get("Format/Datatype")?.as_str().and_then(Prec::from_trt)
}

fn weight_precision(layer: &Value) -> Option<Prec> {
    let w = layer.get("Weights")?;
    if w.get("Count").and_then(Value::as_u64) == Some(0) {
        return None;
    }
    w.get("Type")?.as_str().and_then(Prec::from_trt)
}

fn detailed_layer(i: usize, layer: &Value) -> Result<EngineLayer> {
    let text = |key: &str| layer.get(key).and_then(Value::as_str).map(str::to_string);
    let name = text("Name").ok_or_else(|| err(format!("trtexec layer info: layer {i} has no \"Name\" string")))?;
    let mut l = EngineLayer::names_only(&name);
    l.onnx_nodes = layer.get("Metadata").and_then(Value::as_str).map(metadata_onnx_nodes).unwrap_or_default();
    l.layer_type = text("LayerType");
    l.input_precision = tensor_precision(layer, "Inputs");
    l.output_precision = tensor_precision(layer, "Outputs");
    l.weight_precision = weight_precision(layer);
    l.tactic_name = text("TacticName");
    l.origin = text("Origin");
    Ok(l)
}

/// `json` with every control character but tab, LF and CR written as a `\\u00XX` escape.
fn escape_control_chars(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c < ' ' && !matches!(c, '\t' | '\n' | '\r') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the file `trtexec --exportLayerInfo=FILE` writes: `{"Layers": [...], "Bindings": [...]}`
/// where each layer is an object (`--profilingVerbosity=detailed`: `Name`, `LayerType`, `Inputs`
/// and `Outputs` with `Format/Datatype`, `Weights`/`Bias` with `Type` and `Count`, `TacticName`,
/// `Origin`, `Metadata`, ...) or just its name (the default `layer_names_only`; the precisions are
/// then `None`). `signal`/`wait` layers (multi-stream synchronization) are left out.
pub fn parse_layer_info(json: &str) -> Result<Vec<EngineLayer>> {
    let v: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        // TensorRT 8.6 EA wrote the U+001E between Metadata entries raw, which JSON forbids in a
        // string. Control characters other than tab, LF and CR are never valid outside strings
        // either, so escaping them everywhere changes nothing else.
        Err(e) => serde_json::from_str(&escape_control_chars(json))
            .map_err(|_| err(format!("trtexec layer info is not JSON: {e}")))?,
    };
    let layers = v
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or_else(|| err("trtexec layer info has no \"Layers\" list (is this an --exportLayerInfo file?)"))?;
    let mut out = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        match layer {
            Value::String(name) => out.push(EngineLayer::names_only(name)),
            Value::Object(_) => {
                let l = detailed_layer(i, layer)?;
                if !matches!(l.layer_type.as_deref(), Some("signal" | "wait")) {
                    out.push(l);
                }
            }
            _ => return Err(err(format!("trtexec layer info: layer {i} is neither a name nor an object"))),
        }
    }
    Ok(out)
}

/// Whether an ONNX node ran at the precision asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckStatus {
    Ok,
    Mismatch,
    /// Found, but the file does not say its precision (a names-only file).
    Unknown,
    /// No engine layer implements the node (fused into a layer under another name, e.g. inside
    /// a Myelin region without Metadata, or removed by the optimizer).
    NotFound,
}

/// The result of checking one ONNX node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionCheck {
    pub node: String,
    pub expected: Prec,
    /// The name of the engine layer that implements the node.
    pub engine_layer: Option<String>,
    /// That layer's [`EngineLayer::compute_precision`].
    pub actual: Option<Prec>,
    pub status: CheckStatus,
    /// For a node not found: engine layers whose names look related ([`related_layers`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
}

/// Engine layers that look related to ONNX node `node` when none implements it: those naming a
/// node under its parent path (`/backbone/blocks.1/blocks.1.3/Conv` for
/// `/backbone/blocks.1/blocks.1.4/Conv`), else under the grandparent and so on up to two levels
/// below the root, else those naming a node of the same op type (`Conv` for `/a/Conv` or
/// `Conv_118`); at most `max`, reformat layers left out.
pub fn related_layers(layers: &[EngineLayer], node: &str, max: usize) -> Vec<String> {
    let op_of = |n: &str| -> String {
        let last = n.rsplit('/').next().unwrap_or(n);
        last.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_').to_string()
    };
    let names = |l: &EngineLayer| l.sub_names.clone().into_iter().chain(l.onnx_nodes.clone());
    let pick = |hit: &dyn Fn(&str) -> bool| -> Vec<String> {
        layers
            .iter()
            .filter(|l| !l.is_reformat() && names(l).any(|n| hit(&n)))
            .map(|l| l.name.clone())
            .take(max)
            .collect()
    };
    let mut path = node;
    while let Some((parent, _)) = path.rsplit_once('/') {
        if parent.matches('/').count() < 2 {
            break;
        }
        let prefix = format!("{parent}/");
        let found = pick(&|n: &str| n.starts_with(&prefix));
        if !found.is_empty() {
            return found;
        }
        path = parent;
    }
    let op = op_of(node);
    if op.is_empty() {
        return vec![];
    }
    pick(&|n: &str| op_of(n) == op)
}

/// Checks each `(ONNX node name, expected precision)` against the engine: finds the layer that
/// implements the node ([`EngineLayer::implements`]: TensorRT's ONNX parser names layers after
/// the ONNX nodes and fusion joins the names, e.g. `/a/Conv + /a/Relu`, or with Q/DQ in 8.x
/// `conv.weight + QuantizeLinear_7 + Conv_9 + Relu_11`; Metadata names them in 8.6 and later),
/// preferring the first optimization profile, and compares its compute precision.
pub fn verify_precisions(layers: &[EngineLayer], expected: &[(String, Prec)]) -> Vec<PrecisionCheck> {
    expected
        .iter()
        .map(|(node, want)| {
            // The first of the lowest profile (`min_by_key` keeps the first of equals).
            let layer = layers.iter().filter(|l| l.implements(node)).min_by_key(|l| l.profile.unwrap_or(0));
            let actual = layer.and_then(EngineLayer::compute_precision);
            let status = match (layer, &actual) {
                (None, _) => CheckStatus::NotFound,
                (Some(_), None) => CheckStatus::Unknown,
                (Some(_), Some(p)) if p == want => CheckStatus::Ok,
                (Some(_), Some(_)) => CheckStatus::Mismatch,
            };
            PrecisionCheck {
                node: node.clone(),
                expected: want.clone(),
                engine_layer: layer.map(|l| l.name.clone()),
                actual,
                related: if layer.is_none() { related_layers(layers, node, 3) } else { vec![] },
                status,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Layer profile (--exportProfile)
// ---------------------------------------------------------------------------------------------

/// One layer's timing over the profiled iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTime {
    pub name: String,
    /// Summed over all iterations.
    pub time_ms: f64,
    pub average_ms: f64,
    /// Written by TensorRT 8.5 and later.
    pub median_ms: Option<f64>,
    /// Share of the total time, in percent.
    pub percentage: Option<f64>,
}

/// The file `trtexec --exportProfile=FILE` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerProfile {
    /// The leading `{ "count" : N }`: the number of profiled iterations.
    pub iterations: Option<u64>,
    pub layers: Vec<LayerTime>,
}

/// Parses `[ { "count" : 1329 }, { "name" : "...", "timeMs" : 115.1, "averageMs" : 0.0866,
/// "medianMs" : 0.087, "percentage" : 1.09 }, ... ]`. trtexec writes layer names without JSON
/// escaping, so a name with a `"` or `\` makes the file unreadable (an error here).
pub fn parse_profile(json: &str) -> Result<LayerProfile> {
    let v: Value = serde_json::from_str(json).map_err(|e| err(format!("trtexec profile is not JSON: {e}")))?;
    let items = v.as_array().ok_or_else(|| err("trtexec profile is not a JSON list"))?;
    let mut out = LayerProfile { iterations: None, layers: Vec::new() };
    for (i, item) in items.iter().enumerate() {
        let num = |key: &str| item.get(key).and_then(Value::as_f64);
        if let Some(name) = item.get("name").and_then(Value::as_str) {
            let need = |key: &str| {
                num(key).ok_or_else(|| err(format!("trtexec profile: entry {i} ('{name}') has no number \"{key}\"")))
            };
            out.layers.push(LayerTime {
                name: name.to_string(),
                time_ms: need("timeMs")?,
                average_ms: need("averageMs")?,
                median_ms: num("medianMs"),
                percentage: num("percentage"),
            });
        } else if let Some(c) = item.get("count").and_then(Value::as_u64) {
            out.iterations = Some(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- Samples -----------------------------------------------------------------------------
    // Written for these tests (numbers and model names invented), line for line in the formats
    // trtexec prints; the source of each format is given above each sample.

    /// TensorRT 8.6: banner as in https://github.com/NVIDIA/TensorRT/issues/2875 (`[TensorRT v8600]`);
    /// 8.6's device block (no "Available Devices" list) and `TensorRT version: 8.6.3` line as in
    /// https://github.com/NVIDIA/TensorRT/issues/3747; trace and summary lines as in
    /// https://github.com/NVIDIA/TensorRT/issues/3083 and `printEpilog` in
    /// NVIDIA/TensorRT samples/common/sampleReporting.cpp (release/8.6).
    const LOG_8_6: &str = "\
&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --loadEngine=pointpillars.plan
[11/22/2026-10:00:00] [I] === Device Information ===
[11/22/2026-10:00:00] [I] Selected Device: NVIDIA GeForce RTX 3090
[11/22/2026-10:00:00] [I] Compute Capability: 8.6
[11/22/2026-10:00:00] [I] SMs: 82
[11/22/2026-10:00:00] [I] Device Global Memory: 24259 MiB
[11/22/2026-10:00:00] [I] Shared Memory per SM: 100 KiB
[11/22/2026-10:00:00] [I] Memory Bus Width: 384 bits (ECC disabled)
[11/22/2026-10:00:00] [I] Application Compute Clock Rate: 1.695 GHz
[11/22/2026-10:00:00] [I] Application Memory Clock Rate: 9.751 GHz
[11/22/2026-10:00:00] [I] 
[11/22/2026-10:00:00] [I] Note: The application clock rates do not reflect the actual clock rates that the GPU is currently running at.
[11/22/2026-10:00:00] [I] 
[11/22/2026-10:00:00] [I] TensorRT version: 8.6.1
[11/22/2026-10:00:03] [I] === Trace details ===
[11/22/2026-10:00:03] [I] Trace averages of 10 runs:
[11/22/2026-10:00:03] [I] Average on 10 runs - GPU latency: 4.24171 ms - Host latency: 4.29793 ms (enqueue 1.81771 ms)
[11/22/2026-10:00:03] [I] 
[11/22/2026-10:00:03] [I] === Performance summary ===
[11/22/2026-10:00:03] [I] Throughput: 234.19 qps
[11/22/2026-10:00:03] [I] Latency: min = 4.27838 ms, max = 5.82495 ms, mean = 4.29966 ms, median = 4.29718 ms, percentile(90%) = 4.30725 ms, percentile(95%) = 4.31128 ms, percentile(99%) = 4.32874 ms
[11/22/2026-10:00:03] [I] Enqueue Time: min = 1.29205 ms, max = 9.09888 ms, mean = 1.81459 ms, median = 1.8 ms, percentile(90%) = 1.9 ms, percentile(95%) = 2.1 ms, percentile(99%) = 2.5 ms
[11/22/2026-10:00:03] [I] H2D Latency: min = 0.0288086 ms, max = 0.0412598 ms, mean = 0.0301 ms, median = 0.03 ms, percentile(90%) = 0.031 ms, percentile(95%) = 0.032 ms, percentile(99%) = 0.035 ms
[11/22/2026-10:00:03] [I] GPU Compute Time: min = 4.2207 ms, max = 5.76514 ms, mean = 4.24237 ms, median = 4.2406 ms, percentile(90%) = 4.25 ms, percentile(95%) = 4.2541 ms, percentile(99%) = 4.27 ms
[11/22/2026-10:00:03] [I] D2H Latency: min = 0.0224609 ms, max = 0.0299072 ms, mean = 0.0271 ms, median = 0.027 ms, percentile(90%) = 0.028 ms, percentile(95%) = 0.029 ms, percentile(99%) = 0.0299 ms
[11/22/2026-10:00:03] [I] Total Host Walltime: 3.00611 s
[11/22/2026-10:00:03] [I] Total GPU Compute Time: 2.98663 s
[11/22/2026-10:00:03] [W] * Throughput may be bound by Enqueue Time rather than GPU Compute and the GPU may be under-utilized.
[11/22/2026-10:00:03] [W]   If not already in use, --useCudaGraph (utilize CUDA graphs where possible) may increase the throughput.
[11/22/2026-10:00:03] [I] Explanations of the performance metrics are printed in the verbose logs.
[11/22/2026-10:00:03] [V] 
[11/22/2026-10:00:03] [V] === Explanations of the performance metrics ===
[11/22/2026-10:00:03] [V] Total Host Walltime: the host walltime from when the first query (after warmups) is enqueued to when the last query is completed.
[11/22/2026-10:00:03] [V] Throughput: the observed throughput computed by dividing the number of queries by the Total Host Walltime.
[11/22/2026-10:00:03] [I] 
&&&& PASSED TensorRT.trtexec [TensorRT v8601] # trtexec --loadEngine=pointpillars.plan
";

    /// TensorRT 10.x: banner as in https://github.com/NVIDIA/TensorRT/issues/4036 (`[TensorRT v100200]`);
    /// device block with the "Available Devices" list and UUIDs from `setCudaDevice` in
    /// NVIDIA/TensorRT samples/common/sampleDevice.cpp (10.x); summary lines as in
    /// https://github.com/NVIDIA/TensorRT/issues/4177 (2024-10); the unstable-compute warning as
    /// printed by 10.x `printEpilog` (also quoted in https://github.com/beyondli/Yolo_on_Jetson/issues/4).
    const LOG_10: &str = "\
&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=pointpillars.plan --useCudaGraph
[11/22/2026-10:00:00] [I] === Device Information ===
[11/22/2026-10:00:00] [I] Available Devices: 
[11/22/2026-10:00:00] [I]   Device 0: \"NVIDIA H100 80GB HBM3\" UUID: GPU-0a1b2c3d-0000-1111-2222-333344445555
[11/22/2026-10:00:00] [I] Selected Device: NVIDIA H100 80GB HBM3
[11/22/2026-10:00:00] [I] Selected Device ID: 0
[11/22/2026-10:00:00] [I] Selected Device UUID: GPU-0a1b2c3d-0000-1111-2222-333344445555
[11/22/2026-10:00:00] [I] Compute Capability: 9.0
[11/22/2026-10:00:00] [I] SMs: 132
[11/22/2026-10:00:00] [I] Device Global Memory: 81004 MiB
[11/22/2026-10:00:00] [I] Shared Memory per SM: 228 KiB
[11/22/2026-10:00:00] [I] Memory Bus Width: 5120 bits (ECC enabled)
[11/22/2026-10:00:00] [I] Application Compute Clock Rate: 1.98 GHz
[11/22/2026-10:00:00] [I] Application Memory Clock Rate: 2.619 GHz
[11/22/2026-10:00:00] [I] 
[11/22/2026-10:00:00] [I] TensorRT version: 10.3.0
[11/22/2026-10:00:04] [I] 
[11/22/2026-10:00:04] [I] === Performance summary ===
[11/22/2026-10:00:04] [I] Throughput: 1530.42 qps
[11/22/2026-10:00:04] [I] Latency: min = 0.6521 ms, max = 1.10913 ms, mean = 0.68131 ms, median = 0.67749 ms, percentile(90%) = 0.69458 ms, percentile(95%) = 0.70215 ms, percentile(99%) = 0.75 ms
[11/22/2026-10:00:04] [I] Enqueue Time: min = 0.00195312 ms, max = 0.0249023 ms, mean = 0.0036 ms, median = 0.00341797 ms, percentile(90%) = 0.00439453 ms, percentile(95%) = 0.0048 ms, percentile(99%) = 0.0078125 ms
[11/22/2026-10:00:04] [I] H2D Latency: min = 0.0065918 ms, max = 0.0698242 ms, mean = 0.0122212 ms, median = 0.00814819 ms, percentile(90%) = 0.0253906 ms, percentile(95%) = 0.0270996 ms, percentile(99%) = 0.0515137 ms
[11/22/2026-10:00:04] [I] GPU Compute Time: min = 0.631836 ms, max = 1.07031 ms, mean = 0.65308 ms, median = 0.650146 ms, percentile(90%) = 0.663574 ms, percentile(95%) = 0.668701 ms, percentile(99%) = 0.711 ms
[11/22/2026-10:00:04] [I] D2H Latency: min = 0.00390625 ms, max = 0.110596 ms, mean = 0.0100141 ms, median = 0.00439453 ms, percentile(90%) = 0.0254517 ms, percentile(95%) = 0.0319824 ms, percentile(99%) = 0.0994873 ms
[11/22/2026-10:00:04] [I] Total Host Walltime: 3.00179 s
[11/22/2026-10:00:04] [I] Total GPU Compute Time: 2.99996 s
[11/22/2026-10:00:04] [W] * GPU compute time is unstable, with coefficient of variance = 5.55763%.
[11/22/2026-10:00:04] [W]   If not already in use, locking GPU clock frequency or adding --useSpinWait may improve the stability.
[11/22/2026-10:00:04] [I] Explanations of the performance metrics are printed in the verbose logs.
[11/22/2026-10:00:04] [I] 
&&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=pointpillars.plan --useCudaGraph
";

    /// TensorRT 8.2 and before: `End-to-End Host Latency` and one percentile, from `printEpilog`
    /// in NVIDIA/TensorRT samples/common/sampleReporting.cpp before 8.4; no prefixes (as piped).
    const LOG_8_2: &str = "\
&&&& RUNNING TensorRT.trtexec [TensorRT v8205] # trtexec --loadEngine=a.plan
=== Performance summary ===
Throughput: 169.352 qps
Latency: min = 5.38959 ms, max = 6.19507 ms, mean = 5.93288 ms, median = 6.02185 ms, percentile(99%) = 6.17407 ms
End-to-End Host Latency: min = 9.1 ms, max = 12.2 ms, mean = 11.1 ms, median = 11.5 ms, percentile(99%) = 12.1 ms
Enqueue Time: min = 0.596436 ms, max = 0.805542 ms, mean = 0.628294 ms, median = 0.625488 ms, percentile(99%) = 0.697754 ms
H2D Latency: min = 0.800781 ms, max = 0.900391 ms, mean = 0.82323 ms, median = 0.817383 ms, percentile(99%) = 0.895874 ms
GPU Compute Time: min = 3.17834 ms, max = 3.88306 ms, mean = 3.63242 ms, median = 3.71753 ms, percentile(99%) = 3.87793 ms
D2H Latency: min = 1.30469 ms, max = 1.56445 ms, mean = 1.47722 ms, median = 1.48657 ms, percentile(99%) = 1.50879 ms
Total Host Walltime: 3.05281 s
Total GPU Compute Time: 1.87796 s
Explanations of the performance metrics are printed in the verbose logs.

";

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(1.0)
    }

    #[test]
    fn strips_time_stamp_and_severity() {
        assert_eq!(strip_log_prefix("[11/22/2026-10:00:00] [I] Throughput: 1 qps\r"), "Throughput: 1 qps");
        assert_eq!(strip_log_prefix("[11/22/2026-10:00:00] [W] [TRT] x"), "[TRT] x");
        assert_eq!(strip_log_prefix("[I] TensorRT version: 10.3.0"), "TensorRT version: 10.3.0");
        assert_eq!(strip_log_prefix("[11/22/2026-10:00:00] [I]"), "");
        assert_eq!(strip_log_prefix("[11/22/2026-10:00:00] [I]   Device 0: x"), "  Device 0: x");
        assert_eq!(strip_log_prefix("(Unnamed Layer* 3) [Shuffle]"), "(Unnamed Layer* 3) [Shuffle]");
        assert_eq!(strip_log_prefix("[ONNX Layer: a]"), "[ONNX Layer: a]");
    }

    #[test]
    fn version_codes_of_both_eras() {
        let v = |major, minor, patch| TrtVersion { major, minor, patch };
        assert_eq!(TrtVersion::from_code(8601), Some(v(8, 6, 1)));
        assert_eq!(TrtVersion::from_code(8205), Some(v(8, 2, 5)));
        assert_eq!(TrtVersion::from_code(100300), Some(v(10, 3, 0)));
        assert_eq!(TrtVersion::from_code(101303), Some(v(10, 13, 3)));
        assert_eq!(TrtVersion::from_code(110000), Some(v(11, 0, 0)));
        assert_eq!(TrtVersion::from_code(42), None);
        assert_eq!(v(10, 3, 0).to_string(), "10.3.0");
        assert!(!v(10, 13, 3).strongly_typed_only());
        assert!(v(11, 0, 0).strongly_typed_only());
        assert!(v(8, 6, 1) < v(10, 0, 0));
    }

    #[test]
    fn version_from_banner_or_version_line() {
        assert_eq!(parse_version(LOG_8_6).map(|v| v.to_string()).as_deref(), Some("8.6.1"));
        assert_eq!(parse_version(LOG_10).map(|v| v.to_string()).as_deref(), Some("10.3.0"));
        // 10.13 adds a build tag after the version: https://github.com/NVIDIA/TensorRT/issues/4587
        let banner = "&&&& RUNNING TensorRT.trtexec [TensorRT v101303] [b9] # ./trtexec --onnx=m.onnx";
        assert_eq!(parse_version(banner).map(|v| v.to_string()).as_deref(), Some("10.13.3"));
        // No banner (log cut): the device block's version line.
        let cut = "[03/28/2024-07:10:12] [I] \n[03/28/2024-07:10:12] [I] TensorRT version: 8.6.3\n";
        assert_eq!(parse_version(cut).map(|v| v.to_string()).as_deref(), Some("8.6.3"));
        assert_eq!(
            parse_version("[I] TensorRT version: 10.3.0.26"),
            Some(TrtVersion { major: 10, minor: 3, patch: 0 })
        );
        assert_eq!(parse_version("no version here"), None);
    }

    #[test]
    fn performance_summary_8_6() {
        let s = parse_performance(LOG_8_6).unwrap();
        assert_eq!(s.version, Some(TrtVersion { major: 8, minor: 6, patch: 1 }));
        assert_eq!(s.device_name.as_deref(), Some("NVIDIA GeForce RTX 3090"));
        assert_eq!(s.compute_capability.as_deref(), Some("8.6"));
        assert!(close(s.throughput_qps, 234.19));
        let lat = s.latency.as_ref().unwrap();
        assert!(close(lat.min_ms, 4.27838) && close(lat.max_ms, 5.82495));
        assert!(close(lat.mean_ms, 4.29966) && close(lat.median_ms, 4.29718));
        assert_eq!(lat.percentiles_ms.len(), 3);
        assert_eq!(lat.percentiles_ms.iter().map(|p| p.0).collect::<Vec<_>>(), vec![90.0, 95.0, 99.0]);
        assert!(close(lat.percentile(99.0).unwrap(), 4.32874));
        assert_eq!(lat.percentile(50.0), None);
        let gpu = s.gpu_compute_time.as_ref().unwrap();
        assert!(close(gpu.median_ms, 4.2406) && close(gpu.percentile(95.0).unwrap(), 4.2541));
        assert!(close(s.enqueue_time.unwrap().min_ms, 1.29205));
        assert!(close(s.h2d_latency.unwrap().max_ms, 0.0412598));
        assert!(close(s.d2h_latency.unwrap().mean_ms, 0.0271));
        assert!(close(s.total_host_walltime_s.unwrap(), 3.00611));
        assert!(close(s.total_gpu_compute_time_s.unwrap(), 2.98663));
        assert_eq!(s.end_to_end_host_latency, None);
        assert_eq!(s.gpu_compute_cv_percent, None);
    }

    #[test]
    fn performance_summary_10() {
        let s = parse_performance(LOG_10).unwrap();
        assert_eq!(s.version.unwrap().to_string(), "10.3.0");
        assert_eq!(s.device_name.as_deref(), Some("NVIDIA H100 80GB HBM3"));
        assert_eq!(s.compute_capability.as_deref(), Some("9.0"));
        assert!(close(s.throughput_qps, 1530.42));
        let gpu = s.gpu_compute_time.unwrap();
        assert!(close(gpu.min_ms, 0.631836) && close(gpu.percentile(99.0).unwrap(), 0.711));
        assert!(close(s.enqueue_time.unwrap().min_ms, 0.00195312));
        assert!(close(s.gpu_compute_cv_percent.unwrap(), 5.55763));
        assert!(close(s.total_gpu_compute_time_s.unwrap(), 2.99996));
    }

    #[test]
    fn performance_summary_8_2_without_prefixes() {
        let s = parse_performance(LOG_8_2).unwrap();
        assert_eq!(s.version.unwrap().to_string(), "8.2.5");
        assert_eq!(s.device_name, None);
        let e2e = s.end_to_end_host_latency.unwrap();
        assert_eq!(e2e.percentiles_ms, vec![(99.0, 12.1)]);
        assert!(close(s.gpu_compute_time.unwrap().mean_ms, 3.63242));
    }

    #[test]
    fn performance_summary_edge_cases() {
        // Windows line ends, a custom --percentile=99.9 and an empty timing set ("inf").
        let text =
            "[I] === Performance summary ===\r\n[I] Throughput: 12.5 qps\r\n[I] GPU Compute Time: min = 1e-05 ms, \
                    max = inf ms, mean = 2 ms, median = 2 ms, percentile(99.9%) = 3 ms\r\n";
        let s = parse_performance(text).unwrap();
        let gpu = s.gpu_compute_time.unwrap();
        assert!(close(gpu.min_ms, 1e-5) && gpu.max_ms.is_infinite());
        assert_eq!(gpu.percentiles_ms, vec![(99.9, 3.0)]);
        assert_eq!(s.latency, None);
        assert_eq!(s.total_host_walltime_s, None);
        // Only the last block counts.
        let twice = format!("{LOG_8_2}\n{LOG_10}");
        assert!(close(parse_performance(&twice).unwrap().throughput_qps, 1530.42));
    }

    #[test]
    fn performance_summary_errors() {
        let build_only = "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx --skipInference\n\
                          &&&& PASSED TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx --skipInference\n";
        let e = parse_performance(build_only).unwrap_err().to_string();
        assert!(e.contains("no '=== Performance summary ===' block"), "{e}");
        let failed = "&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=m.onnx\n\
                      [11/22/2026-10:00:00] [E] Error[4]: [network.cpp::validate::2997] Error Code 4\n\
                      &&&& FAILED TensorRT.trtexec [TensorRT v8601] # trtexec --onnx=m.onnx\n";
        let e = parse_performance(failed).unwrap_err().to_string();
        assert!(e.contains("trtexec failed (&&&& FAILED"), "{e}");
        let no_tput = "=== Performance summary ===\nLatency: min = 1 ms, max = 1 ms, mean = 1 ms, median = 1 ms\n";
        assert!(parse_performance(no_tput).unwrap_err().to_string().contains("Throughput"));
        // A malformed timing line is left out with a note, not fatal.
        let bad = "=== Performance summary ===\nThroughput: 1 qps\nLatency: min = 1 ms, max = x ms, mean = 1 ms\n";
        let s = parse_performance(bad).unwrap();
        assert_eq!(s.latency, None);
        assert!(s.warnings.len() == 1 && s.warnings[0].contains("malformed 'Latency' line"), "{:?}", s.warnings);
        let bad = "=== Performance summary ===\nThroughput: 1 qps\nLatency: min = 1 ms, max = 2 ms\n";
        assert_eq!(parse_performance(bad).unwrap().warnings.len(), 1);
        // Without a throughput the notes are in the error.
        let bad = "=== Performance summary ===\nThroughput: fast\n";
        let e = parse_performance(bad).unwrap_err().to_string();
        assert!(e.contains("no 'Throughput: N qps'") && e.contains("malformed 'Throughput' line"), "{e}");
    }

    #[test]
    fn performance_summary_with_lines_merged_by_markdown() {
        // The 8.6 log pasted through markdown: the D2H line, the walltime line and the unstable
        // warning ran into one line.
        let merged = LOG_8_6.replace(
            "percentile(99%) = 0.0299 ms\n[11/22/2026-10:00:03] [I] Total Host Walltime: 3.00611 s\n",
            "percentile(99%) = 0.0299 ms Total Host Walltime: 3.00611 s * GPU compute time is unstable, with \
             coefficient of variance = 2.1%.\n",
        );
        assert_ne!(merged, LOG_8_6);
        let s = parse_performance(&merged).unwrap();
        assert!(close(s.throughput_qps, 234.19));
        assert!(close(s.latency.as_ref().unwrap().median_ms, 4.29718));
        assert!(close(s.gpu_compute_time.as_ref().unwrap().median_ms, 4.2406));
        assert!(close(s.total_gpu_compute_time_s.unwrap(), 2.98663));
        assert_eq!(s.d2h_latency, None);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("malformed 'D2H Latency' line"), "{:?}", s.warnings);
    }

    /// TensorRT 7.x / 8.0: `printEpilog` before the `=== Performance summary ===` block prints
    /// `Host Latency`, `Enqueue Time` and `GPU Compute` blocks of `key: value ms` lines, the host
    /// latency with the end-to-end latency in parentheses and the percentile as `X ms at 99%`.
    /// Numbers invented.
    const LOG_7: &str = "\
&&&& RUNNING TensorRT.trtexec # trtexec --loadEngine=pointpillars.plan
[11/22/2026-10:00:00] [I] === Device Information ===
[11/22/2026-10:00:00] [I] Selected Device: Xavier
[11/22/2026-10:00:00] [I] Compute Capability: 7.2
[11/22/2026-10:00:03] [I] Host Latency
[11/22/2026-10:00:03] [I] min: 55.1414 ms (end to end 55.1486 ms)
[11/22/2026-10:00:03] [I] max: 58.0273 ms (end to end 58.0361 ms)
[11/22/2026-10:00:03] [I] mean: 55.6124 ms (end to end 55.6203 ms)
[11/22/2026-10:00:03] [I] median: 55.5293 ms (end to end 55.5376 ms)
[11/22/2026-10:00:03] [I] percentile: 57.4121 ms at 99% (end to end 57.4199 ms at 99%)
[11/22/2026-10:00:03] [I] throughput: 17.9645 qps
[11/22/2026-10:00:03] [I] walltime: 3.00593 s
[11/22/2026-10:00:03] [I] Enqueue Time
[11/22/2026-10:00:03] [I] min: 1.95312 ms
[11/22/2026-10:00:03] [I] max: 3.12109 ms
[11/22/2026-10:00:03] [I] median: 2.07446 ms
[11/22/2026-10:00:03] [I] GPU Compute
[11/22/2026-10:00:03] [I] min: 54.9863 ms
[11/22/2026-10:00:03] [I] max: 57.8691 ms
[11/22/2026-10:00:03] [I] mean: 55.4564 ms
[11/22/2026-10:00:03] [I] median: 55.3738 ms
[11/22/2026-10:00:03] [I] percentile: 57.2578 ms at 99%
[11/22/2026-10:00:03] [I] total compute time: 2.99465 s
&&&& PASSED TensorRT.trtexec # trtexec --loadEngine=pointpillars.plan
";

    #[test]
    fn performance_summary_7() {
        let s = parse_performance(LOG_7).unwrap();
        assert_eq!(s.device_name.as_deref(), Some("Xavier"));
        assert!(close(s.throughput_qps, 17.9645));
        let lat = s.latency.as_ref().unwrap();
        assert!(close(lat.min_ms, 55.1414) && close(lat.max_ms, 58.0273));
        assert!(close(lat.mean_ms, 55.6124) && close(lat.median_ms, 55.5293));
        assert_eq!(lat.percentiles_ms, vec![(99.0, 57.4121)]);
        let e2e = s.end_to_end_host_latency.as_ref().unwrap();
        assert!(close(e2e.min_ms, 55.1486) && close(e2e.median_ms, 55.5376));
        assert_eq!(e2e.percentiles_ms, vec![(99.0, 57.4199)]);
        let gpu = s.gpu_compute_time.as_ref().unwrap();
        assert!(close(gpu.median_ms, 55.3738) && close(gpu.percentile(99.0).unwrap(), 57.2578));
        // No mean printed for the enqueue time: not a full set.
        assert_eq!(s.enqueue_time, None);
        assert!(close(s.total_host_walltime_s.unwrap(), 3.00593));
        assert!(close(s.total_gpu_compute_time_s.unwrap(), 2.99465));
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // Without its throughput line it says which format it read.
        let cut = LOG_7.replace("[11/22/2026-10:00:03] [I] throughput: 17.9645 qps\n", "");
        let e = parse_performance(&cut).unwrap_err().to_string();
        assert!(e.contains("TensorRT 7.x/8.0") && e.contains("throughput"), "{e}");
    }

    // ---- Layer info ----------------------------------------------------------------------------

    /// TensorRT 10.x, `--exportLayerInfo --profilingVerbosity=detailed`, field for field as in
    /// https://github.com/NVIDIA/TensorRT/issues/4020 (10.x: `StreamId`, `Metadata` with
    /// `[ONNX Layer: ...]` joined by U+001E) and https://github.com/NVIDIA/TensorRT/issues/3737
    /// (` || ` horizontal fusion, `Weights` `Int8` for an INT8 conv); the ONNX names are those a
    /// Q/DQ PointPillars export would have. The FP16 conv and the PWN layer follow the same
    /// fields with FP16 formats from TREx's `activations.py` format table.
    const LAYERS_10: &str = r#"{"Layers": [{
  "Name": "Reformatting CopyNode for Input Tensor 0 to /backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu",
  "LayerType": "Reformat",
  "Inputs": [
  {
    "Name": "spatial_features",
    "Location": "Device",
    "Dimensions": [1,64,496,432],
    "Format/Datatype": "Row major linear FP32"
  }],
  "Outputs": [
  {
    "Name": "Reformatted Input Tensor 0 to /backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu",
    "Location": "Device",
    "Dimensions": [1,64,496,432],
    "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"
  }],
  "ParameterType": "Reformat",
  "Origin": "REFORMAT",
  "TacticValue": "0x00000000000003e8",
  "StreamId": 0,
  "Metadata": ""
},{
  "Name": "/backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu",
  "LayerType": "CaskConvolution",
  "Inputs": [
  {
    "Name": "Reformatted Input Tensor 0 to /backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu",
    "Location": "Device",
    "Dimensions": [1,64,496,432],
    "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"
  }],
  "Outputs": [
  {
    "Name": "/backbone/blocks.0/blocks.0.2/Relu_output_0",
    "Location": "Device",
    "Dimensions": [1,64,248,216],
    "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"
  }],
  "ParameterType": "Convolution",
  "Kernel": [3,3],
  "PaddingMode": "kEXPLICIT_ROUND_DOWN",
  "PrePadding": [1,1],
  "PostPadding": [1,1],
  "Stride": [2,2],
  "Dilation": [1,1],
  "OutMaps": 64,
  "Groups": 1,
  "Weights": {"Type": "Int8", "Count": 36864},
  "Bias": {"Type": "Float", "Count": 64},
  "HasBias": 1,
  "HasReLU": 1,
  "HasSparseWeights": 0,
  "HasDynamicFilter": 0,
  "HasDynamicBias": 0,
  "HasResidual": 0,
  "ConvXAsActInputIdx": -1,
  "BiasAsActInputIdx": -1,
  "ResAsActInputIdx": -1,
  "Activation": "RELU",
  "TacticName": "sm90_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32_nchw_vect_c_32_tilesize128x64x64_stage4_warpsize2x2x1_g1_tensor16x8x32_t1r3s3",
  "TacticValue": "0x3a6d0f5fdd45ba1b",
  "StreamId": 0,
  "Metadata": "[ONNX Layer: /backbone/blocks.0/blocks.0.0/Conv]\u001e[ONNX Layer: /backbone/blocks.0/blocks.0.2/Relu]"
},{
  "Name": "/backbone/deblocks.0/deblocks.0.0/ConvTranspose + /backbone/deblocks.0/deblocks.0.2/Relu",
  "LayerType": "CaskDeconvolutionV2",
  "Inputs": [
  {
    "Name": "/backbone/blocks.0/blocks.0.2/Relu_output_0",
    "Location": "Device",
    "Dimensions": [1,64,248,216],
    "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"
  }],
  "Outputs": [
  {
    "Name": "/backbone/deblocks.0/deblocks.0.2/Relu_output_0",
    "Location": "Device",
    "Dimensions": [1,128,248,216],
    "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"
  }],
  "ParameterType": "Convolution",
  "Weights": {"Type": "Half", "Count": 8192},
  "Bias": {"Type": "Half", "Count": 128},
  "TacticName": "sm90_xmma_dgrad_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize64x64x64_stage1_warpsize2x2x1_g1_tensor16x8x16",
  "StreamId": 0,
  "Metadata": "[ONNX Layer: /backbone/deblocks.0/deblocks.0.0/ConvTranspose]\u001e[ONNX Layer: /backbone/deblocks.0/deblocks.0.2/Relu]"
},{
  "Name": "/dense_head/conv_cls/Conv || /dense_head/conv_box/Conv",
  "LayerType": "CaskConvolution",
  "Inputs": [
  {
    "Name": "/backbone/Concat_output_0",
    "Location": "Device",
    "Dimensions": [1,384,248,216],
    "Format/Datatype": "Row major linear FP32"
  }],
  "Outputs": [
  {
    "Name": "/dense_head/conv_cls/Conv || /dense_head/conv_box/Conv",
    "Location": "Device",
    "Dimensions": [1,60,248,216],
    "Format/Datatype": "Row major linear FP32"
  }],
  "ParameterType": "Convolution",
  "Weights": {"Type": "Float", "Count": 23040},
  "Bias": {"Type": "Float", "Count": 60},
  "TacticName": "sm80_xmma_fprop_implicit_gemm_tf32f32_tf32f32_f32_nhwckrsc_nchw_tilesize128x64x32_stage3_warpsize2x2x1_g1_tensor16x8x8",
  "StreamId": 0,
  "Metadata": "[ONNX Layer: /dense_head/conv_cls/Conv]\u001e[ONNX Layer: /dense_head/conv_box/Conv]"
},{
  "Name": "PWN(/vfe/Sigmoid, /vfe/Mul) [profile 1]",
  "LayerType": "PointWiseV2",
  "Inputs": [
  {
    "Name": "/vfe/Add_output_0 [profile 1]",
    "Location": "Device",
    "Dimensions": [1,64,12000,32],
    "Format/Datatype": "Half"
  }],
  "Outputs": [
  {
    "Name": "/vfe/Mul_output_0 [profile 1]",
    "Location": "Device",
    "Dimensions": [1,64,12000,32],
    "Format/Datatype": "Half"
  }],
  "ParameterType": "PointWise",
  "StreamId": 0,
  "Metadata": "[ONNX Layer: /vfe/Sigmoid]\u001e[ONNX Layer: /vfe/Mul]"
},{
  "Name": "sync",
  "LayerType": "signal",
  "Inputs": [],
  "Outputs": []
}],
"Bindings": ["voxels"
,"voxel_num_points"
,"cls_preds"
]}"#;

    /// TensorRT 8.x with an explicitly quantized (Q/DQ) ONNX model: the weight initializer and
    /// the weight QuantizeLinear node are fused into the convolution's name, the activation
    /// QuantizeLinear stays a layer of its own (DequantizeLinear names vanish), names as in the
    /// 8.x profile of https://github.com/NVIDIA/TensorRT/issues/2823 (8.0 appended
    /// `_quantize_scale_node`, https://github.com/NVIDIA/TensorRT/issues/1293); fields as in
    /// https://github.com/NVIDIA/TensorRT/issues/3737 (2024, 8.6), which has no `Metadata` on
    /// these layers.
    const LAYERS_8_6_QDQ: &str = r#"{"Layers": [{
  "Name": "QuantizeLinear_111",
  "LayerType": "Scale",
  "Inputs": [{"Name": "spatial_features", "Location": "Device", "Dimensions": [1,64,496,432], "Format/Datatype": "Row major linear FP32"}],
  "Outputs": [{"Name": "QuantizeLinear_111_output", "Location": "Device", "Dimensions": [1,64,496,432], "Format/Datatype": "Four wide channel vectorized row major Int8 format"}],
  "ParameterType": "Scale",
  "Mode": "UNIFORM",
  "Shift": {"Type": "Float", "Count": 1},
  "Scale": {"Type": "Float", "Count": 1},
  "Power": {"Type": "Float", "Count": 0},
  "Activation": "NONE",
  "HasBias": 0,
  "TacticValue": "0x0000000000000000"
},{
  "Name": "backbone.blocks.0.0.weight + QuantizeLinear_116 + Conv_118 + Relu_119",
  "LayerType": "CaskConvolution",
  "Inputs": [{"Name": "QuantizeLinear_111_output", "Location": "Device", "Dimensions": [1,64,496,432], "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format"}],
  "Outputs": [{"Name": "Relu_119_output", "Location": "Device", "Dimensions": [1,64,248,216], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
  "ParameterType": "Convolution",
  "Weights": {"Type": "Int8", "Count": 36864},
  "Bias": {"Type": "Float", "Count": 64},
  "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32_nchw_vect_c_32_tilesize128x128x64_stage4_warpsize2x2x1_g1_tensor16x8x32",
  "TacticValue": "0xd5a2f2e5e1a2b3c4"
},{
  "Name": "Conv_131 + Relu_132",
  "LayerType": "CaskConvolution",
  "Inputs": [{"Name": "Relu_119_output", "Location": "Device", "Dimensions": [1,64,248,216], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
  "Outputs": [{"Name": "Relu_132_output", "Location": "Device", "Dimensions": [1,64,248,216], "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
  "ParameterType": "Convolution",
  "Weights": {"Type": "Half", "Count": 36864},
  "Bias": {"Type": "Half", "Count": 64},
  "TacticName": "sm80_xmma_fprop_implicit_gemm_f16f16_f16f16_f16_nhwckrsc_nhwc_tilesize64x128x32_stage5_warpsize2x2x1_g1_tensor16x8x16"
}],
"Bindings": ["spatial_features", "cls_preds"]}"#;

    /// `--profilingVerbosity=layer_names_only` (the default): plain names, as in
    /// https://github.com/NVIDIA/TensorRT/issues/3737 (first comment); the Myelin
    /// `{ForeignNode[first...last]}` form as in https://github.com/NVIDIA/TensorRT/issues/2308.
    const LAYERS_NAMES_ONLY: &str = r#"{"Layers": ["/backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu"
,"Reformatting CopyNode for Input Tensor 0 to /backbone/blocks.0/blocks.0.3/Conv + /backbone/blocks.0/blocks.0.5/Relu"
,"/backbone/blocks.0/blocks.0.3/Conv + /backbone/blocks.0/blocks.0.5/Relu"
,"PWN(/backbone/blocks.1/Add)"
,"/backbone/Concat_output_0 copy"
,"{ForeignNode[/dense_head/Transpose.../dense_head/Reshape_2]}"
],
"Bindings": ["spatial_features"
,"cls_preds"
]}"#;

    #[test]
    fn precision_of_trt_format_strings() {
        let p = Prec::from_trt;
        assert_eq!(p("Row major linear FP32"), Some(Prec::Fp32));
        assert_eq!(p("Channel major FP16 format where channel % 8 == 0"), Some(Prec::Fp16));
        assert_eq!(p("Two wide channel vectorized row major FP16 format"), Some(Prec::Fp16));
        assert_eq!(p("Thirty-two wide channel vectorized row major Int8 format"), Some(Prec::Int8));
        assert_eq!(p("Channel major INT8 format where channel % 16 == 0"), Some(Prec::Int8));
        assert_eq!(p("Row major Int8 format"), Some(Prec::Int8));
        assert_eq!(p("Row major linear FP16 format."), Some(Prec::Fp16));
        assert_eq!(p("Row major linear Int32"), Some(Prec::Other("Int32".into())));
        assert_eq!(p("Row major linear BFloat16 format"), Some(Prec::Other("BFloat16".into())));
        assert_eq!(p("Row major linear BOOL"), Some(Prec::Other("BOOL".into())));
        // Weights/Bias types, and TensorRT 10's bare kgen types.
        assert_eq!(p("Int8"), Some(Prec::Int8));
        assert_eq!(p("Half"), Some(Prec::Fp16));
        assert_eq!(p("Float"), Some(Prec::Fp32));
        assert_eq!(p("FP16"), Some(Prec::Fp16));
        assert_eq!(p("Unknown format"), None);
        assert_eq!(p("None"), None);
        assert_eq!(Prec::Int8.to_string(), "INT8");
        assert_eq!(Prec::Other("FP8".into()).to_string(), "FP8");
    }

    #[test]
    fn layer_names_split_into_onnx_nodes() {
        let (n, p) = split_layer_name("conv1.weight + QuantizeLinear_7_quantize_scale_node + Conv_9 + Relu_11");
        assert_eq!(n, ["conv1.weight", "QuantizeLinear_7_quantize_scale_node", "Conv_9", "Relu_11"]);
        assert_eq!(p, None);
        let (n, _) = split_layer_name("/m/cv2/conv/Conv + /m/cv2/act/Relu + PWN(/m/Add)");
        assert_eq!(n, ["/m/cv2/conv/Conv", "/m/cv2/act/Relu", "/m/Add"]);
        let (n, _) = split_layer_name("/a/Conv + /a/Relu || /b/Conv + /b/Relu");
        assert_eq!(n, ["/a/Conv", "/a/Relu", "/b/Conv", "/b/Relu"]);
        let (n, _) = split_layer_name("PWN(PWN(/act/Sigmoid), /act/Mul)");
        assert_eq!(n, ["/act/Sigmoid", "/act/Mul"]);
        let (n, p) = split_layer_name("/a/Conv + /a/Relu [profile 2]");
        assert_eq!((n, p), (vec!["/a/Conv".to_string(), "/a/Relu".to_string()], Some(2)));
        let (n, _) = split_layer_name("{ForeignNode[/h/Transpose.../h/Reshape_2]}");
        assert_eq!(n, ["/h/Transpose", "/h/Reshape_2"]);
        let (n, _) = split_layer_name("{ForeignNode[(Unnamed Layer* 7) [Constant] + /h/Shuffle.../h/Transpose_5]}");
        assert_eq!(n, ["(Unnamed Layer* 7) [Constant]", "/h/Shuffle", "/h/Transpose_5"]);
        let (n, _) = split_layer_name("(Unnamed Layer* 12) [Shuffle] + Conv_3");
        assert_eq!(n, ["(Unnamed Layer* 12) [Shuffle]", "Conv_3"]);
        let (n, _) = split_layer_name("/a/Conv\u{1e}/a/Relu");
        assert_eq!(n, ["/a/Conv", "/a/Relu"]);
        let (n, _) = split_layer_name("Reformatting CopyNode for Input Tensor 0 to /a/Conv + /a/Relu");
        assert!(n.is_empty());
    }

    #[test]
    fn layer_info_10_detailed() {
        let layers = parse_layer_info(LAYERS_10).unwrap();
        assert_eq!(layers.len(), 5, "the signal layer is left out");
        let re = &layers[0];
        assert!(re.is_reformat() && re.sub_names.is_empty());
        assert_eq!(re.input_precision, Some(Prec::Fp32));
        assert_eq!(re.output_precision, Some(Prec::Int8));
        assert_eq!(re.weight_precision, None);
        assert_eq!(re.origin.as_deref(), Some("REFORMAT"));

        let conv = &layers[1];
        assert_eq!(conv.layer_type.as_deref(), Some("CaskConvolution"));
        assert_eq!(conv.sub_names, ["/backbone/blocks.0/blocks.0.0/Conv", "/backbone/blocks.0/blocks.0.2/Relu"]);
        assert_eq!(conv.onnx_nodes, conv.sub_names);
        assert_eq!(
            (&conv.input_precision, &conv.output_precision, &conv.weight_precision),
            (&Some(Prec::Int8), &Some(Prec::Int8), &Some(Prec::Int8))
        );
        assert_eq!(conv.compute_precision(), Some(Prec::Int8));
        assert!(conv.tactic_name.as_deref().unwrap().contains("i8i8"));

        assert_eq!(layers[2].compute_precision(), Some(Prec::Fp16));
        assert_eq!(layers[3].sub_names, ["/dense_head/conv_cls/Conv", "/dense_head/conv_box/Conv"]);
        assert_eq!(layers[3].compute_precision(), Some(Prec::Fp32));
        let pwn = &layers[4];
        assert_eq!(pwn.sub_names, ["/vfe/Sigmoid", "/vfe/Mul"]);
        assert_eq!(pwn.profile, Some(1));
        assert_eq!(pwn.weight_precision, None);
        assert_eq!(pwn.compute_precision(), Some(Prec::Fp16));
    }

    #[test]
    fn verify_10_detailed() {
        let layers = parse_layer_info(LAYERS_10).unwrap();
        let want = |n: &str, p: Prec| (n.to_string(), p);
        let checks = verify_precisions(
            &layers,
            &[
                want("/backbone/blocks.0/blocks.0.0/Conv", Prec::Int8),
                want("/backbone/deblocks.0/deblocks.0.0/ConvTranspose", Prec::Int8),
                want("/dense_head/conv_box/Conv", Prec::Fp32),
                want("/vfe/Mul", Prec::Fp16),
                want("/backbone/blocks.9/Conv", Prec::Int8),
            ],
        );
        let status: Vec<CheckStatus> = checks.iter().map(|c| c.status).collect();
        use CheckStatus::*;
        assert_eq!(status, [Ok, Mismatch, Ok, Ok, NotFound]);
        // The reformat layer, which quotes the conv's name, is not the match.
        assert_eq!(
            checks[0].engine_layer.as_deref(),
            Some("/backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu")
        );
        assert_eq!(checks[1].actual, Some(Prec::Fp16));
        assert_eq!(checks[1].expected, Prec::Int8);
        assert_eq!(checks[4].engine_layer, None);
        assert_eq!(checks[4].actual, None);
    }

    #[test]
    fn metadata_alone_finds_a_myelin_layer() {
        // TensorRT 10 Myelin layers can carry generated names; Metadata still names the nodes.
        let json = r#"{"Layers": [{"Name": "__myl_ConvAddRelu_myl3_7", "LayerType": "kgen",
            "Inputs": [{"Name": "x", "Location": "Device", "Dimensions": [1,64,8,8], "Format/Datatype": "Int8"}],
            "Outputs": [{"Name": "y", "Location": "Device", "Dimensions": [1,64,8,8], "Format/Datatype": "Half"}],
            "Metadata": "[ONNX Layer: /neck/Conv]\u001e[ONNX Layer: /neck/Add]\u001f[ONNX Layer: /neck/Relu]"}],
            "Bindings": []}"#;
        let layers = parse_layer_info(json).unwrap();
        assert_eq!(layers[0].onnx_nodes, ["/neck/Conv", "/neck/Add", "/neck/Relu"]);
        let c = verify_precisions(&layers, &[("/neck/Relu".into(), Prec::Int8)]);
        assert_eq!(c[0].status, CheckStatus::Ok);
    }

    #[test]
    fn layer_info_8_6_qdq() {
        let layers = parse_layer_info(LAYERS_8_6_QDQ).unwrap();
        assert_eq!(layers.len(), 3);
        assert!(layers.iter().all(|l| l.onnx_nodes.is_empty()));
        // The standalone quantize layer reads FP32 and writes INT8.
        assert_eq!(layers[0].input_precision, Some(Prec::Fp32));
        assert_eq!(layers[0].output_precision, Some(Prec::Int8));
        assert_eq!(layers[0].compute_precision(), Some(Prec::Fp32));
        assert_eq!(layers[1].sub_names, ["backbone.blocks.0.0.weight", "QuantizeLinear_116", "Conv_118", "Relu_119"]);
        // INT8 in, INT8 weights, FP16 out (the next conv is not quantized): an INT8 conv.
        assert_eq!(layers[1].output_precision, Some(Prec::Fp16));
        assert_eq!(layers[1].compute_precision(), Some(Prec::Int8));
        let checks = verify_precisions(
            &layers,
            &[
                ("Conv_118".into(), Prec::Int8),
                ("Relu_119".into(), Prec::Int8),
                ("Conv_131".into(), Prec::Fp16),
                ("Conv_131".into(), Prec::Int8),
                ("DequantizeLinear_117".into(), Prec::Int8),
            ],
        );
        let status: Vec<CheckStatus> = checks.iter().map(|c| c.status).collect();
        use CheckStatus::*;
        assert_eq!(status, [Ok, Ok, Ok, Mismatch, NotFound]);
        assert_eq!(
            checks[0].engine_layer.as_deref(),
            Some("backbone.blocks.0.0.weight + QuantizeLinear_116 + Conv_118 + Relu_119")
        );
    }

    #[test]
    fn layer_info_names_only() {
        let layers = parse_layer_info(LAYERS_NAMES_ONLY).unwrap();
        assert_eq!(layers.len(), 6);
        assert!(layers.iter().all(|l| l.layer_type.is_none() && l.compute_precision().is_none()));
        assert!(layers[1].is_reformat());
        assert_eq!(layers[3].sub_names, ["/backbone/blocks.1/Add"]);
        assert_eq!(layers[5].sub_names, ["/dense_head/Transpose", "/dense_head/Reshape_2"]);
        let checks = verify_precisions(
            &layers,
            &[
                ("/backbone/blocks.0/blocks.0.3/Conv".into(), Prec::Int8),
                ("/backbone/blocks.1/Conv".into(), Prec::Int8),
            ],
        );
        assert_eq!(checks[0].status, CheckStatus::Unknown);
        assert_eq!(
            checks[0].engine_layer.as_deref(),
            Some("/backbone/blocks.0/blocks.0.3/Conv + /backbone/blocks.0/blocks.0.5/Relu")
        );
        assert_eq!(checks[1].status, CheckStatus::NotFound);
    }

    #[test]
    fn verify_prefers_the_first_profile() {
        let json = r#"{"Layers": [
            {"Name": "/a/Conv [profile 1]", "LayerType": "CaskConvolution", "Weights": {"Type": "Half", "Count": 9}},
            {"Name": "/a/Conv", "LayerType": "CaskConvolution", "Weights": {"Type": "Int8", "Count": 9}},
            {"Name": "/b/Conv", "LayerType": "CaskConvolution", "Weights": {"Type": "Int8", "Count": 0},
             "Inputs": [{"Name": "t", "Format/Datatype": "Row major linear FP32"}]}
        ]}"#;
        let layers = parse_layer_info(json).unwrap();
        let c = verify_precisions(&layers, &[("/a/Conv".into(), Prec::Int8), ("/b/Conv".into(), Prec::Fp32)]);
        assert_eq!(c[0].engine_layer.as_deref(), Some("/a/Conv"));
        assert_eq!(c[0].status, CheckStatus::Ok);
        // Zero-count weights say nothing: the FP32 input decides.
        assert_eq!(c[1].status, CheckStatus::Ok);
    }

    #[test]
    fn layer_info_with_raw_control_characters() {
        // TensorRT 8.6 EA wrote the Metadata separator U+001E unescaped.
        let raw = LAYERS_10.replace("\\u001e", "\u{1e}");
        assert!(raw.contains('\u{1e}') && serde_json::from_str::<Value>(&raw).is_err());
        let layers = parse_layer_info(&raw).unwrap();
        assert_eq!(layers, parse_layer_info(LAYERS_10).unwrap());
        assert_eq!(layers[1].onnx_nodes, ["/backbone/blocks.0/blocks.0.0/Conv", "/backbone/blocks.0/blocks.0.2/Relu"]);
        // Still an error when it is not JSON for another reason.
        let e = parse_layer_info("{\"Layers\": [\"a\u{1e}b\"").unwrap_err().to_string();
        assert!(e.contains("not JSON"), "{e}");
    }

    #[test]
    fn related_layers_of_a_missing_node() {
        let layers = parse_layer_info(LAYERS_10).unwrap();
        // Same parent path.
        assert_eq!(
            related_layers(&layers, "/backbone/blocks.0/blocks.0.1/BatchNormalization", 3),
            ["/backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu"]
        );
        // No layer under its parent: same op type (the reformat layer is left out).
        assert_eq!(
            related_layers(&layers, "/backbone/blocks.9/Conv", 3),
            [
                "/backbone/blocks.0/blocks.0.0/Conv + /backbone/blocks.0/blocks.0.2/Relu",
                "/dense_head/conv_cls/Conv || /dense_head/conv_box/Conv"
            ]
        );
        assert_eq!(related_layers(&layers, "/backbone/blocks.9/Conv", 1).len(), 1);
        // 8.x numbered names.
        let qdq = parse_layer_info(LAYERS_8_6_QDQ).unwrap();
        assert_eq!(
            related_layers(&qdq, "Relu_140", 3),
            ["backbone.blocks.0.0.weight + QuantizeLinear_116 + Conv_118 + Relu_119", "Conv_131 + Relu_132"]
        );
        assert!(related_layers(&qdq, "/x/Softmax", 3).is_empty());
        let c = verify_precisions(&qdq, &[("Relu_140".into(), Prec::Fp16), ("Conv_131".into(), Prec::Fp16)]);
        assert_eq!(c[0].status, CheckStatus::NotFound);
        assert_eq!(c[0].related.len(), 2);
        assert!(c[1].related.is_empty());
    }

    #[test]
    fn layer_controls_from_8_4() {
        let v = |major, minor| TrtVersion { major, minor, patch: 0 };
        assert!(!v(7, 1).has_layer_controls() && !v(8, 2).has_layer_controls());
        assert!(v(8, 4).has_layer_controls() && v(8, 6).has_layer_controls() && v(10, 0).has_layer_controls());
    }

    #[test]
    fn layer_info_errors() {
        assert!(parse_layer_info("not json").unwrap_err().to_string().contains("not JSON"));
        assert!(parse_layer_info(r#"{"Bindings": []}"#).unwrap_err().to_string().contains("\"Layers\""));
        assert!(parse_layer_info(r#"{"Layers": [3]}"#).unwrap_err().to_string().contains("layer 0"));
        assert!(parse_layer_info(r#"{"Layers": [{"LayerType": "Reformat"}]}"#)
            .unwrap_err()
            .to_string()
            .contains("Name"));
        assert!(parse_layer_info(r#"{"Layers": []}"#).unwrap().is_empty());
    }

    // ---- Profile -------------------------------------------------------------------------------

    /// `--exportProfile`, as written by `Profiler::exportJSONProfile` in NVIDIA/TensorRT
    /// samples/common/sampleReporting.cpp (8.5+, with `medianMs`), cf. the file quoted in
    /// https://github.com/NVIDIA/TensorRT/issues/2823.
    const PROFILE: &str = r#"[
  { "count" : 1329 }
, { "name" : "QuantizeLinear_111", "timeMs" : 115.151, "averageMs" : 0.0866452, "medianMs" : 0.08704, "percentage" : 1.09893 }
, { "name" : "backbone.blocks.0.0.weight + QuantizeLinear_116 + Conv_118 + Relu_119", "timeMs" : 364.868, "averageMs" : 0.274543, "medianMs" : 0.270336, "percentage" : 3.48206 }
]
"#;

    #[test]
    fn profile() {
        let p = parse_profile(PROFILE).unwrap();
        assert_eq!(p.iterations, Some(1329));
        assert_eq!(p.layers.len(), 2);
        assert_eq!(p.layers[1].name, "backbone.blocks.0.0.weight + QuantizeLinear_116 + Conv_118 + Relu_119");
        assert!(close(p.layers[1].time_ms, 364.868) && close(p.layers[1].average_ms, 0.274543));
        assert_eq!(p.layers[0].median_ms, Some(0.08704));
        // Before 8.5: no medianMs.
        let old =
            r#"[ { "count" : 10 }, { "name" : "Conv_0", "timeMs" : 1.5, "averageMs" : 0.15, "percentage" : 100 } ]"#;
        assert_eq!(parse_profile(old).unwrap().layers[0].median_ms, None);
        assert!(parse_profile(r#"[ { "name" : "x" } ]"#).unwrap_err().to_string().contains("timeMs"));
        assert!(parse_profile("{}").is_err());
    }
}
