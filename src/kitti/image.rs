//! The size of a KITTI camera image (`image_2/*.png`) from its PNG header, without decoding it:
//! the 8-byte signature, then the IHDR chunk (length 13, type `IHDR`, width and height as
//! big-endian u32, five more bytes, CRC-32 of type and data).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
/// Signature, chunk length and type, 13 bytes of IHDR data, CRC.
const HEADER_LEN: usize = 8 + 8 + 13 + 4;

/// CRC-32 (ISO 3309, as PNG chunks use it), bit by bit: 17 bytes per image do not need a table.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// Width and height from the first bytes of a PNG file (at least the first 33); `file` is used
/// in error messages only.
pub fn parse_png_size(head: &[u8], file: &Path) -> Result<[u32; 2]> {
    let bad = |msg: String| Error::kitti(file, None, msg);
    if head.len() < SIGNATURE.len() || head[..8] != SIGNATURE {
        return Err(bad("not a PNG file (no PNG signature)".into()));
    }
    if head.len() < HEADER_LEN {
        return Err(bad(format!("truncated PNG: {} bytes, the header needs {HEADER_LEN}", head.len())));
    }
    let be = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    let (len, kind) = (be(8), &head[12..16]);
    if kind != b"IHDR" || len != 13 {
        return Err(bad(format!(
            "PNG: the first chunk is '{}' of {len} bytes, expected IHDR of 13",
            String::from_utf8_lossy(kind)
        )));
    }
    let (crc, want) = (crc32(&head[12..29]), be(29));
    if crc != want {
        return Err(bad(format!("PNG: IHDR checksum {want:08x} does not match its contents ({crc:08x})")));
    }
    let (w, h) = (be(16), be(20));
    if w == 0 || h == 0 || w > i32::MAX as u32 || h > i32::MAX as u32 {
        return Err(bad(format!("PNG: invalid image size {w} x {h}")));
    }
    Ok([w, h])
}

/// Width and height of a PNG image, reading only its header.
pub fn png_size(path: impl AsRef<Path>) -> Result<[u32; 2]> {
    let path = path.as_ref();
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    crate::files::check_regular(path)?;
    let mut head = Vec::with_capacity(HEADER_LEN);
    std::fs::File::open(path).map_err(io)?.take(HEADER_LEN as u64).read_to_end(&mut head).map_err(io)?;
    parse_png_size(&head, path)
}

/// Parses an image size given as `WxH` (e.g. `1242x375`), both positive integers.
pub fn parse_image_size(s: &str) -> Result<[f32; 2]> {
    let bad = || Error::Other(format!("image size '{s}': expected WIDTHxHEIGHT in pixels, e.g. 1242x375"));
    let (w, h) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 || w > 1 << 24 || h > 1 << 24 {
        return Err(bad());
    }
    Ok([w as f32, h as f32])
}

/// A PNG of the given size with only the signature, IHDR (8-bit grayscale) and IEND chunks: what
/// [`png_size`] reads, for tests. Not a decodable image (no IDAT).
#[cfg(test)]
pub(crate) fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    for (kind, data) in
        [(&b"IHDR"[..], [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 0, 0, 0, 0]].concat()), (b"IEND", vec![])]
    {
        out.extend((data.len() as u32).to_be_bytes());
        let body = [kind, &data].concat();
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_crc32_known_values() {
        // The CRC of an IEND chunk (type only) is in every PNG file: ae 42 60 82.
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn png_size_of_header() {
        let png = png_header_only(1242, 375);
        assert_eq!(png.len(), HEADER_LEN + 12);
        assert_eq!(parse_png_size(&png, Path::new("a.png")).unwrap(), [1242, 375]);
        assert_eq!(parse_png_size(&png_header_only(1224, 370), Path::new("a.png")).unwrap(), [1224, 370]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000003.png");
        std::fs::write(&path, png_header_only(1241, 376)).unwrap();
        assert_eq!(png_size(&path).unwrap(), [1241, 376]);
    }

    #[test]
    fn png_bad_headers_are_errors_naming_the_file() {
        let f = Path::new("image_2/000001.png");
        let png = png_header_only(1242, 375);
        let msg = |b: &[u8]| parse_png_size(b, f).unwrap_err().to_string();
        assert_eq!(msg(&png[..20]), "image_2/000001.png: truncated PNG: 20 bytes, the header needs 33");
        assert_eq!(msg(b""), "image_2/000001.png: not a PNG file (no PNG signature)");
        assert_eq!(
            msg(b"\xff\xd8\xff\xe0 JFIF jpeg......................"),
            "image_2/000001.png: not a PNG file (no PNG signature)"
        );
        let mut corrupt = png.clone();
        corrupt[17] ^= 1; // width 1242 -> 1242 + 2^16: the checksum no longer matches
        assert!(msg(&corrupt).starts_with("image_2/000001.png: PNG: IHDR checksum"), "{}", msg(&corrupt));
        let mut other = png.clone();
        other[12..16].copy_from_slice(b"gAMA");
        assert_eq!(msg(&other), "image_2/000001.png: PNG: the first chunk is 'gAMA' of 13 bytes, expected IHDR of 13");
        assert_eq!(msg(&png_header_only(0, 375)), "image_2/000001.png: PNG: invalid image size 0 x 375");
        let dir = tempfile::tempdir().unwrap();
        let e = png_size(dir.path().join("missing.png")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
    }

    #[test]
    fn image_size_flag_values() {
        assert_eq!(parse_image_size("1224x370").unwrap(), [1224.0, 370.0]);
        assert_eq!(parse_image_size(" 1242X376 ").unwrap(), [1242.0, 376.0]);
        for bad in ["1242", "1242x", "x375", "0x375", "1242x-1", "12.5x375", "axb"] {
            let e = parse_image_size(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")) && e.contains("WIDTHxHEIGHT"), "{e}");
        }
    }
}
