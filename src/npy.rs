//! NumPy `.npy` reading and writing (format versions 1-3, C order, little-endian), so that any
//! other runtime can be fed exactly what pillarq is fed and compared with what it produces.

use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor};

const MAGIC: &[u8] = b"\x93NUMPY";

fn err(file: &Path, msg: impl Into<String>) -> Error {
    Error::Npy { file: file.to_path_buf(), msg: msg.into() }
}

/// Parses the python-dict header, e.g. `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(h: &str, file: &Path) -> Result<(String, bool, Vec<usize>)> {
    let field = |key: &str| -> Result<&str> {
        let pat = format!("'{key}':");
        let at = h.find(&pat).ok_or_else(|| err(file, format!("npy header lacks '{key}': {h}")))?;
        Ok(h[at + pat.len()..].trim_start())
    };
    let descr = field("descr")?;
    let descr = descr
        .strip_prefix('\'')
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| err(file, format!("npy header has a malformed 'descr': {h}")))?
        .to_string();
    let fortran = field("fortran_order")?.starts_with("True");
    let shape_s = field("shape")?;
    let close = shape_s.find(')').ok_or_else(|| err(file, format!("npy header has a malformed 'shape': {h}")))?;
    let inner = shape_s.get(1..close).ok_or_else(|| err(file, format!("npy header has a malformed 'shape': {h}")))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| err(file, format!("npy shape entry '{s}' is not a size")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((descr, fortran, shape))
}

pub fn decode_npy(bytes: &[u8], file: &Path) -> Result<Tensor> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err(file, "not a .npy file (missing the \\x93NUMPY magic)"));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err(file, "truncated .npy header"));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(err(file, format!("unsupported .npy format version {v}"))),
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| err(file, "truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err(file, "npy header is not text"))?;
    let (descr, fortran, shape) = parse_header(header, file)?;
    if fortran {
        return Err(err(file, "Fortran-order arrays are not supported; save with np.ascontiguousarray"));
    }
    let payload = &bytes[start + hlen..];
    let width = match descr.as_str() {
        "<f4" | "<i4" => 4,
        "<f8" | "<i8" => 8,
        "<f2" => 2,
        "|i1" | "|u1" | "|b1" => 1,
        d => {
            return Err(err(
                file,
                format!("dtype '{d}' is not supported (use float32, float16, float64, int64, int32, int8, uint8 or bool, little-endian)"),
            ))
        }
    };
    // The header is untrusted: a count that overflows matches no payload.
    match crate::memory::checked_numel(&shape).and_then(|n| n.checked_mul(width)) {
        Some(need) if need == payload.len() => {}
        Some(need) => {
            return Err(err(
                file,
                format!(
                    "shape {shape:?} of {descr} needs {need} data bytes, the file has {} (truncated?)",
                    payload.len()
                ),
            ))
        }
        None => {
            return Err(err(
                file,
                format!(
                    "shape {shape:?} of {descr} is too large (its byte size overflows); the file has {} data bytes",
                    payload.len()
                ),
            ))
        }
    }
    let c = |w: usize| payload.chunks_exact(w);
    let data = match descr.as_str() {
        "<f4" => Data::F32(c(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()),
        "<f8" => Data::F32(c(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect()),
        "<f2" => Data::F32(c(2).map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32()).collect()),
        "<i8" => Data::I64(c(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect()),
        "<i4" => Data::I32(c(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()),
        "|i1" => Data::I8(payload.iter().map(|&b| b as i8).collect()),
        "|u1" => Data::U8(payload.to_vec()),
        _ => Data::Bool(payload.iter().map(|&b| b != 0).collect()),
    };
    Ok(Tensor { shape, data })
}

pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = crate::files::read_regular(path)?;
    decode_npy(&bytes, path)
}

/// The original ONNX element type of a tensor is not tracked in `Tensor` (f16 is held as f32),
/// so writers choose from the storage type.
pub fn encode_npy(t: &Tensor) -> Vec<u8> {
    let (descr, payload): (&str, Vec<u8>) = match &t.data {
        Data::F32(v) => ("<f4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Data::I64(v) => ("<i8", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Data::I32(v) => ("<i4", v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Data::I8(v) => ("|i1", v.iter().map(|&x| x as u8).collect()),
        Data::U8(v) => ("|u1", v.clone()),
        Data::Bool(v) => ("|b1", v.iter().map(|&x| x as u8).collect()),
    };
    let shape = match t.shape.len() {
        0 => "()".to_string(),
        1 => format!("({},)", t.shape[0]),
        _ => format!("({})", t.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so that magic + version + length + header + '\n' is a multiple of 64.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&payload);
    out
}

pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, encode_npy(t)).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_shape_type_and_values() {
        let t = Tensor::f32(vec![2, 3], vec![1.0, -2.5, 3.0, 0.0, 1e-7, f32::MAX]);
        let bytes = encode_npy(&t);
        assert_eq!((bytes.len() - 24) % 64, 0, "header is 64-byte aligned");
        let back = decode_npy(&bytes, Path::new("x.npy")).unwrap();
        assert_eq!(back, t);
        let s = Tensor::i64(vec![], vec![-7]);
        assert_eq!(decode_npy(&encode_npy(&s), Path::new("s.npy")).unwrap(), s);
    }

    #[test]
    fn truncated_payload_is_an_error_naming_the_file() {
        let t = Tensor::f32(vec![4], vec![1.0; 4]);
        let bytes = encode_npy(&t);
        let e = decode_npy(&bytes[..bytes.len() - 3], Path::new("cut.npy")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("cut.npy") && msg.contains("truncated"), "{msg}");
    }

    #[test]
    fn a_shape_whose_size_overflows_is_refused() {
        // (2^62 + 1,) float32 wraps to 4 bytes: exactly the payload.
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387905,), }\n";
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0]);
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&1f32.to_le_bytes());
        let msg = decode_npy(&bytes, Path::new("huge.npy")).unwrap_err().to_string();
        assert!(msg.contains("huge.npy") && msg.contains("4611686018427387905") && msg.contains("overflows"), "{msg}");
    }
}
