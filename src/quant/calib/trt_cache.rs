//! TensorRT's calibration cache text (what `trtexec --calib=<file>` reads on TensorRT 8.x/10.x):
//!
//! ```text
//! TRT-8601-EntropyCalibration2
//! input: 3c010a14
//! /backbone/conv1/Conv_output_0: 3d0b7086
//! ```
//!
//! The first line names the TensorRT version and calibrator; each further line is
//! `<tensor name>: <hex>`, the hex being the IEEE-754 bits of the f32 scale (`amax / 127`) as one
//! big-endian number (1.0 is `3f800000`). TensorRT itself writes the hex without leading zeros
//! (a zero scale is `0`), and tensor names may contain `:` (`input_1:0: 3c010a14`), so the value
//! is what follows the last colon.

use std::collections::HashMap;

use crate::graph::fold::is_zero_pad;
use crate::graph::layers::Layer;
use crate::graph::Graph;

/// The tensors of the ONNX graph a calibration cache must give a scale for when one layer runs
/// in INT8 under TensorRT's implicit quantization. TensorRT falls back to a non-INT8 kernel for
/// any layer consuming or producing a tensor without a scale, so the cache needs:
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTensors {
    /// The quantizable layer (ONNX node name).
    pub layer: String,
    /// The edge the layer reads, then each edge before it that holds the same values: the inputs
    /// of zero `Pad`s and shuffles (Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Identity),
    /// which TensorRT runs in INT8 on the way to the layer. All share the layer's input threshold.
    pub reads: Vec<String>,
    /// The edges the layer's chain writes (the layer, then the BatchNormalization, activation,
    /// Transpose and ReduceMax nodes that only it feeds), leaving out the edges TensorRT's
    /// documented fusions remove (Convolution + Scale, Convolution/Scale + activation). For the
    /// PFN's MatMul -> Transpose -> BatchNormalization -> Transpose -> Relu -> ReduceMax every
    /// edge stays: no fusion joins a MatMul to a Scale across a shuffle.
    pub writes: Vec<String>,
}

/// Ops whose output holds exactly the values of their first input (rearranged).
const SHUFFLES: &[&str] = &["Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"];
/// Ops that continue a layer's chain when the layer (or the chain so far) is their only reader.
const CHAIN: &[&str] = &["BatchNormalization", "Relu", "LeakyRelu", "Clip", "Transpose", "ReduceMax"];
const ACTIVATIONS: &[&str] = &["Relu", "LeakyRelu", "Clip"];

/// The cache tensors of every layer of `layers` (quantizable layers of `graph`, the original
/// graph as the ONNX file has it), in layer order.
pub fn cache_tensors(graph: &Graph, layers: &[Layer]) -> Vec<CacheTensors> {
    let consumers = graph.consumers();
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            producer.insert(o.as_str(), i);
        }
    }
    let sole_reader = |edge: &str| -> Option<usize> {
        match consumers.get(edge).map(Vec::as_slice) {
            Some([c]) if !graph.is_output(edge) && graph.nodes[*c].input(0) == Some(edge) => Some(*c),
            _ => None,
        }
    };
    layers
        .iter()
        .filter_map(|layer| {
            let node = graph.node(&layer.name)?;
            let mut reads = vec![node.inputs.first()?.clone()];
            while let Some(&p) = producer.get(reads.last().map(String::as_str).unwrap_or_default()) {
                let n = &graph.nodes[p];
                let same_values = SHUFFLES.contains(&n.op_type.as_str()) || is_zero_pad(graph, n);
                match n.inputs.first() {
                    Some(i) if same_values && !i.is_empty() && !reads.contains(i) && reads.len() < 64 => {
                        reads.push(i.clone())
                    }
                    _ => break,
                }
            }
            let mut writes = Vec::new();
            let mut edge = node.outputs.first()?.clone();
            let mut op = node.op_type.as_str();
            loop {
                let next = sole_reader(&edge).map(|c| &graph.nodes[c]);
                let fused_away = next.is_some_and(|n| {
                    let (p, c) = (op, n.op_type.as_str());
                    (matches!(p, "Conv" | "ConvTranspose") && c == "BatchNormalization")
                        || (matches!(p, "Conv" | "ConvTranspose" | "BatchNormalization") && ACTIVATIONS.contains(&c))
                });
                if !fused_away {
                    writes.push(edge.clone());
                }
                match next {
                    Some(n) if CHAIN.contains(&n.op_type.as_str()) && writes.len() < 64 => {
                        let Some(o) = n.outputs.first().filter(|o| !o.is_empty()) else { break };
                        op = &n.op_type;
                        edge = o.clone();
                    }
                    _ => break,
                }
            }
            Some(CacheTensors { layer: layer.name.clone(), reads, writes })
        })
        .collect()
}

/// The first line TensorRT expects for version `major.minor.patch` with trtexec's built-in
/// entropy calibrator (`--calib`): `TRT-<NV_TENSORRT_VERSION>-EntropyCalibration2`, the version
/// number being `major*1000 + minor*100 + patch` before TensorRT 10 (8.6.1 -> 8601) and
/// `major*10000 + minor*100 + patch` from 10 on (10.3.0 -> 100300). TensorRT rejects a cache
/// whose header names another version, so write the version that will build the engine.
pub fn trt_cache_header(major: u32, minor: u32, patch: u32) -> String {
    let code = if major >= 10 { major * 10_000 } else { major * 1_000 } + minor * 100 + patch;
    format!("TRT-{code}-EntropyCalibration2")
}

/// The cache text: `header`, then one `name: <8 lowercase hex digits>` line per entry (the f32 is
/// the scale), every line ending in a newline. Names must not contain line breaks.
pub fn trt_cache_text(header: &str, entries: &[(String, f32)]) -> String {
    let mut text = String::with_capacity(header.len() + 1 + entries.iter().map(|(n, _)| n.len() + 11).sum::<usize>());
    text.push_str(header);
    text.push('\n');
    for (name, scale) in entries {
        text.push_str(&format!("{name}: {:08x}\n", scale.to_bits()));
    }
    text
}

/// Parses cache text into its header and `(tensor name, scale)` entries, in file order. Blank
/// lines are skipped and `\r\n` line ends accepted. Errors name the 1-based line: a header not
/// starting with `TRT-`, a line without `: <hex>`, more than 8 hex digits, a scale that is
/// negative, infinite or NaN, or a tensor named twice.
pub fn parse_trt_cache(text: &str) -> Result<(String, Vec<(String, f32)>), String> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)));
    let header = match lines.next() {
        Some((_, h)) if h.starts_with("TRT-") => h.to_string(),
        Some((_, h)) => {
            return Err(format!(
                "line 1: expected a TensorRT calibration cache header like 'TRT-8601-EntropyCalibration2', found '{h}'"
            ))
        }
        None => return Err("line 1: empty calibration cache, expected a 'TRT-<version>-<calibrator>' header".into()),
    };
    let mut entries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (n, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let (name, hex) =
            line.rsplit_once(':').ok_or_else(|| format!("line {n}: expected 'name: <hex>', found '{line}'"))?;
        let hex = hex.trim();
        if name.is_empty() {
            return Err(format!("line {n}: missing tensor name before ':'"));
        }
        if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("line {n}: tensor '{name}': expected 1 to 8 hex digits after ':', found '{hex}'"));
        }
        let bits = u32::from_str_radix(hex, 16).map_err(|e| format!("line {n}: tensor '{name}': {e}"))?;
        let scale = f32::from_bits(bits);
        if !(scale.is_finite() && scale.is_sign_positive()) {
            return Err(format!(
                "line {n}: tensor '{name}': scale {scale} (0x{hex}) is not a finite non-negative number"
            ));
        }
        if let Some(first) = seen.insert(name.to_string(), n) {
            return Err(format!("line {n}: tensor '{name}' already has a scale on line {first}"));
        }
        entries.push((name.to_string(), scale));
    }
    Ok((header, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_for_tensorrt_8_and_10() {
        assert_eq!(trt_cache_header(8, 6, 1), "TRT-8601-EntropyCalibration2");
        assert_eq!(trt_cache_header(10, 3, 0), "TRT-100300-EntropyCalibration2");
    }

    #[test]
    fn text_has_big_endian_hex_bits_and_round_trips() {
        let entries = vec![
            ("voxels".to_string(), 1.0f32),
            ("/pfn/MatMul_output_0".to_string(), 2.0 / 127.0),
            ("tiny".to_string(), 1e-30),
        ];
        let text = trt_cache_text("TRT-8601-EntropyCalibration2", &entries);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("TRT-8601-EntropyCalibration2"));
        assert_eq!(lines.next(), Some("voxels: 3f800000"));
        // 2/127 = 0.015748031: sign 0, biased exponent 121 (2^-6), mantissa 0x010204.
        assert_eq!(lines.next(), Some("/pfn/MatMul_output_0: 3c810204"));
        // 1e-30 has bits 0x0da24260: the leading zero is written.
        assert_eq!(lines.next(), Some("tiny: 0da24260"));
        assert!(text.ends_with('\n'));
        let (header, parsed) = parse_trt_cache(&text).unwrap();
        assert_eq!(header, "TRT-8601-EntropyCalibration2");
        assert_eq!(parsed.len(), 3);
        for ((n0, s0), (n1, s1)) in entries.iter().zip(&parsed) {
            assert_eq!((n0, s0.to_bits()), (n1, s1.to_bits()));
        }
        assert_eq!(trt_cache_text(&header, &parsed), text);
    }

    #[test]
    fn parses_what_tensorrt_writes() {
        // Unpadded hex (a zero scale is "0"), a name containing ':', CRLF line ends, no final
        // newline.
        let text = "TRT-100300-EntropyCalibration2\r\ninput_1:0: 3c010a14\r\n366: 0\r\n\r\n(Unnamed Layer* 4) [Shuffle]_output: 800000";
        let (header, entries) = parse_trt_cache(text).unwrap();
        assert_eq!(header, "TRT-100300-EntropyCalibration2");
        assert_eq!(entries[0].0, "input_1:0");
        assert_eq!(entries[0].1.to_bits(), 0x3c010a14);
        assert_eq!(entries[1], ("366".to_string(), 0.0));
        assert_eq!(entries[2], ("(Unnamed Layer* 4) [Shuffle]_output".to_string(), f32::MIN_POSITIVE));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = parse_trt_cache("TRT-8601-EntropyCalibration2\na: 3f800000\nb 3f800000\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        let err = parse_trt_cache("TRT-8601-EntropyCalibration2\na: 3f80000g\n").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("3f80000g"), "{err}");
        let err = parse_trt_cache("TRT-8601-EntropyCalibration2\na: 13f800000\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = parse_trt_cache("TRT-8601-EntropyCalibration2\na: bf800000\n").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("-1"), "{err}");
        let err = parse_trt_cache("TRT-8601-EntropyCalibration2\na: 1\n\na: 2\n").unwrap_err();
        assert!(err.starts_with("line 4:") && err.contains("line 2"), "{err}");
        assert!(parse_trt_cache("input: 3f800000\n").unwrap_err().starts_with("line 1:"));
        assert!(parse_trt_cache("").unwrap_err().starts_with("line 1:"));
    }
}
