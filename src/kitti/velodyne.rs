//! KITTI velodyne scans: `.bin` files of little-endian f32 records (x, y, z, intensity), 16 bytes
//! a point, lidar frame (x forward, y left, z up). An empty file is a scan with zero points.

use std::path::Path;

use super::write_atomic;
use crate::error::{Error, Result};

/// Bytes per point: four little-endian f32.
pub const POINT_BYTES: usize = 16;

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let bytes = crate::files::read_regular(path)?;
    check_size(&bytes, path)?;
    Ok(bytes)
}

fn check_size(bytes: &[u8], path: &Path) -> Result<()> {
    if !bytes.len().is_multiple_of(POINT_BYTES) {
        return Err(Error::kitti(
            path,
            None,
            format!("truncated: {} bytes is not a multiple of {POINT_BYTES}", bytes.len()),
        ));
    }
    Ok(())
}

fn decode(bytes: &[u8]) -> impl Iterator<Item = [f32; 4]> + '_ {
    bytes.chunks_exact(POINT_BYTES).map(|c| {
        let f = |i: usize| f32::from_le_bytes([c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]]);
        [f(0), f(1), f(2), f(3)]
    })
}

fn is_finite(p: &[f32; 4]) -> bool {
    p.iter().all(|v| v.is_finite())
}

/// Reads a scan. A size that is not a multiple of 16 bytes, or any NaN/infinite value, is an
/// error naming the file (and the index of the first bad point).
pub fn read_points(path: impl AsRef<Path>) -> Result<Vec<[f32; 4]>> {
    let path = path.as_ref();
    parse_points(&read_bytes(path)?, path)
}

/// `read_points` of bytes already read; `path` names the file in errors.
pub fn parse_points(bytes: &[u8], path: &Path) -> Result<Vec<[f32; 4]>> {
    check_size(bytes, path)?;
    let mut points = Vec::with_capacity(bytes.len() / POINT_BYTES);
    for (i, p) in decode(bytes).enumerate() {
        if !is_finite(&p) {
            return Err(Error::kitti(
                path,
                None,
                format!("point {i} is not finite ({}, {}, {}, {})", p[0], p[1], p[2], p[3]),
            ));
        }
        points.push(p);
    }
    Ok(points)
}

/// Reads a scan, dropping points with any NaN/infinite value; returns the points kept and how
/// many were dropped. A truncated file is still an error.
pub fn read_points_lossy(path: impl AsRef<Path>) -> Result<(Vec<[f32; 4]>, usize)> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let total = bytes.len() / POINT_BYTES;
    let points: Vec<[f32; 4]> = decode(&bytes).filter(is_finite).collect();
    let dropped = total - points.len();
    Ok((points, dropped))
}

/// Writes a scan in the `.bin` format (atomically: temporary file, then rename).
pub fn write_points(path: impl AsRef<Path>, points: &[[f32; 4]]) -> Result<()> {
    let mut bytes = Vec::with_capacity(points.len() * POINT_BYTES);
    for p in points {
        for v in p {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    write_atomic(path.as_ref(), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn velodyne_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.bin");
        let pts = vec![[1.5, -2.25, -1.73, 0.3], [69.0, 39.0, 0.9, 0.0], [0.0, 0.0, 0.0, 0.99]];
        write_points(&path, &pts).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 48);
        assert_eq!(read_points(&path).unwrap(), pts);
        assert_eq!(read_points_lossy(&path).unwrap(), (pts, 0));
    }

    #[test]
    fn velodyne_empty_file_is_zero_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.bin");
        write_points(&path, &[]).unwrap();
        assert!(read_points(&path).unwrap().is_empty());
    }

    #[test]
    fn velodyne_truncated_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.bin");
        std::fs::write(&path, [0u8; 20]).unwrap();
        let e = read_points(&path).unwrap_err().to_string();
        assert!(e.contains("t.bin"), "{e}");
        assert!(e.contains("truncated: 20 bytes is not a multiple of 16"), "{e}");
        assert!(read_points_lossy(&path).is_err());
    }

    #[test]
    fn velodyne_nan_point_is_error_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.bin");
        let pts =
            vec![[1.0, 2.0, 3.0, 0.1], [4.0, 5.0, 6.0, 0.2], [f32::NAN, 0.0, 0.0, 0.0], [0.0, 0.0, f32::INFINITY, 0.0]];
        write_points(&path, &pts).unwrap();
        let e = read_points(&path).unwrap_err().to_string();
        assert!(e.contains("n.bin") && e.contains("point 2 is not finite"), "{e}");
        let (kept, dropped) = read_points_lossy(&path).unwrap();
        assert_eq!(dropped, 2);
        assert_eq!(kept, pts[..2].to_vec());
    }

    #[test]
    fn velodyne_missing_file_is_io_error() {
        let e = read_points("/nonexistent/kitti/000000.bin").unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
    }
}
