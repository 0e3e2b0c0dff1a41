//! Setting one `metadata_props` entry of a model file without re-encoding anything else.
//!
//! A ModelProto is a sequence of top-level fields; protobuf lets them come in any order and
//! repeat. So the entry is set by copying every top-level field as it is, leaving out the
//! `metadata_props` entries (field 14) with that key, and appending one new entry: the rest of the
//! file stays byte-identical, whichever program wrote it.

use std::path::Path;

use prost::Message;

use super::proto::StringStringEntryProto;
use crate::error::{Error, Result};

const METADATA_PROPS: u64 = 14;

fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `bytes` (an ONNX file) with metadata entry `key` set to `value`; `origin` names the file in errors.
pub fn with_metadata_entry(bytes: &[u8], key: &str, value: &str, origin: &Path) -> Result<Vec<u8>> {
    let mut out = without_metadata_entry(bytes, key, origin)?;
    let entry = StringStringEntryProto { key: Some(key.to_string()), value: Some(value.to_string()) }.encode_to_vec();
    put_varint(&mut out, (METADATA_PROPS << 3) | 2);
    put_varint(&mut out, entry.len() as u64);
    out.extend_from_slice(&entry);
    Ok(out)
}

/// SHA-256 (hex) of an ONNX file without its metadata entry `key` (pillarq's configuration): the
/// identity of the network itself, unchanged by `pillarq annotate`.
pub fn network_sha256(path: &Path, key: &str) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
    let net = without_metadata_entry(&bytes, key, path)?;
    Ok(sha2::Sha256::digest(&net).iter().map(|b| format!("{b:02x}")).collect())
}

/// `bytes` (an ONNX file) without the metadata entries of key `key`, everything else as it was.
fn without_metadata_entry(bytes: &[u8], key: &str, origin: &Path) -> Result<Vec<u8>> {
    let bad =
        |msg: &str| Error::Model { file: origin.to_path_buf(), msg: format!("not a well-formed ONNX protobuf: {msg}") };
    let mut out = Vec::with_capacity(bytes.len());
    let mut pos = 0;
    while pos < bytes.len() {
        let start = pos;
        let tag = varint(bytes, &mut pos).ok_or_else(|| bad("truncated field tag"))?;
        let (field, wire) = (tag >> 3, tag & 7);
        let body = pos;
        match wire {
            0 => {
                varint(bytes, &mut pos).ok_or_else(|| bad("truncated varint"))?;
            }
            1 => pos = pos.checked_add(8).filter(|&p| p <= bytes.len()).ok_or_else(|| bad("truncated fixed64"))?,
            5 => pos = pos.checked_add(4).filter(|&p| p <= bytes.len()).ok_or_else(|| bad("truncated fixed32"))?,
            2 => {
                let len = varint(bytes, &mut pos).ok_or_else(|| bad("truncated length"))?;
                pos = usize::try_from(len)
                    .ok()
                    .and_then(|l| pos.checked_add(l))
                    .filter(|&p| p <= bytes.len())
                    .ok_or_else(|| bad("a field runs past the end of the file"))?;
            }
            _ => return Err(bad(&format!("wire type {wire} of field {field}"))),
        }
        if field == METADATA_PROPS && wire == 2 {
            let mut p = body;
            let len = varint(bytes, &mut p).unwrap_or(0) as usize;
            let entry = StringStringEntryProto::decode(&bytes[p..p + len]).map_err(|e| bad(&e.to_string()))?;
            if entry.key.as_deref() == Some(key) {
                continue;
            }
        }
        out.extend_from_slice(&bytes[start..pos]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::ModelProto;
    use crate::onnx::{decode_model, encode_model};

    fn model_with(meta: &[(&str, &str)]) -> Vec<u8> {
        let m = ModelProto {
            ir_version: Some(8),
            producer_name: Some("t".into()),
            graph: Some(Default::default()),
            metadata_props: meta
                .iter()
                .map(|(k, v)| StringStringEntryProto { key: Some(k.to_string()), value: Some(v.to_string()) })
                .collect(),
            ..Default::default()
        };
        encode_model(&m)
    }

    #[test]
    fn sets_replaces_and_keeps_the_rest() {
        let p = Path::new("m.onnx");
        let plain = model_with(&[]);
        let once = with_metadata_entry(&plain, "pointpillars", "{\"a\":1}", p).unwrap();
        // Appended: the original bytes are a prefix.
        assert_eq!(&once[..plain.len()], &plain[..]);
        let m = decode_model(&once, p).unwrap();
        assert_eq!(m.metadata_props.len(), 1);
        assert_eq!(m.metadata_props[0].value.as_deref(), Some("{\"a\":1}"));
        // Set again: replaced, not duplicated; other keys stay where they were.
        let two = model_with(&[("author", "x"), ("pointpillars", "old")]);
        let set = with_metadata_entry(&two, "pointpillars", "new", p).unwrap();
        let m = decode_model(&set, p).unwrap();
        let kv: Vec<(String, String)> =
            m.metadata_props.iter().map(|e| (e.key.clone().unwrap(), e.value.clone().unwrap())).collect();
        assert_eq!(kv, [("author".to_string(), "x".to_string()), ("pointpillars".to_string(), "new".to_string())]);
        assert_eq!(with_metadata_entry(&set, "pointpillars", "new", p).unwrap(), set);
    }

    #[test]
    fn malformed_bytes_are_an_error() {
        let p = Path::new("bad.onnx");
        let good = model_with(&[]);
        let e = with_metadata_entry(&good[..good.len() - 1], "k", "v", p).unwrap_err().to_string();
        assert!(e.contains("bad.onnx") && e.contains("protobuf"), "{e}");
        assert!(with_metadata_entry(&[0x0f], "k", "v", p).is_err());
    }
}
