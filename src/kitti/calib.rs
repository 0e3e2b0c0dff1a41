//! KITTI object calibration (`calib/*.txt`): `KEY: v v v ...` lines with the projection matrices
//! P0-P3 (3x4, rectified camera frame to image i), R0_rect (3x3 rectifying rotation),
//! Tr_velo_to_cam (3x4, lidar to reference camera) and Tr_imu_to_velo (3x4, optional).
//! Unknown keys are ignored; aliases `R_rect`, `Tr_velo_cam`, `Tr_imu_velo` are accepted.
//! The file does not give the size of image 2; [`Calib::image_size`] starts at
//! [`super::IMAGE_SIZE`] and [`super::KittiDir::frame_calib`] sets it from the frame's PNG.

use std::path::Path;

use super::write_atomic;
use crate::error::{Error, Result};

/// One frame's calibration. Points go lidar -> rectified camera as
/// `x_rect = R0_rect * Tr_velo_to_cam * [x y z 1]`, and to image 2 through `P2`.
#[derive(Debug, Clone, PartialEq)]
pub struct Calib {
    pub p0: [[f32; 4]; 3],
    pub p1: [[f32; 4]; 3],
    pub p2: [[f32; 4]; 3],
    pub p3: [[f32; 4]; 3],
    pub r0_rect: [[f32; 3]; 3],
    pub tr_velo_to_cam: [[f32; 4]; 3],
    pub tr_imu_to_velo: Option<[[f32; 4]; 3]>,
    /// Width and height (pixels) of image 2, which bound the field of view and clip 2D boxes.
    /// Not part of the calibration file: [`super::IMAGE_SIZE`] unless set from the frame's image
    /// (KITTI's range from 1224 x 370 to 1242 x 376).
    pub image_size: [f32; 2],
}

type M3 = [[f64; 3]; 3];

fn to64_3x3(m: &[[f32; 3]; 3]) -> M3 {
    m.map(|r| r.map(f64::from))
}

fn rot_of(m: &[[f32; 4]; 3]) -> (M3, [f64; 3]) {
    let r = [0, 1, 2].map(|i| [0, 1, 2].map(|j| f64::from(m[i][j])));
    let t = [0, 1, 2].map(|i| f64::from(m[i][3]));
    (r, t)
}

fn mul3(m: &M3, v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

/// General 3x3 inverse (adjugate / determinant). For an orthonormal matrix this is the
/// transpose; KITTI's stored rotations are orthonormal only to ~1e-7, so the exact inverse keeps
/// `rect_to_velo(velo_to_rect(p)) == p` to rounding.
fn inv3(m: &M3) -> M3 {
    let c = |i: usize, j: usize| {
        let (i1, i2) = ((i + 1) % 3, (i + 2) % 3);
        let (j1, j2) = ((j + 1) % 3, (j + 2) % 3);
        m[i1][j1] * m[i2][j2] - m[i1][j2] * m[i2][j1]
    };
    let det = m[0][0] * c(0, 0) + m[0][1] * c(0, 1) + m[0][2] * c(0, 2);
    // inverse[j][i] = cofactor(i, j) / det
    [0, 1, 2].map(|r| [0, 1, 2].map(|col| c(col, r) / det))
}

impl Calib {
    /// Lidar point -> rectified camera frame (x right, y down, z forward).
    pub fn velo_to_rect(&self, p: [f32; 3]) -> [f32; 3] {
        let (r, t) = rot_of(&self.tr_velo_to_cam);
        let c = mul3(&r, p.map(f64::from));
        let cam = [c[0] + t[0], c[1] + t[1], c[2] + t[2]];
        mul3(&to64_3x3(&self.r0_rect), cam).map(|v| v as f32)
    }

    /// Rectified camera point -> lidar frame: the exact inverse of [`Calib::velo_to_rect`]
    /// (`x = Rv^-1 (R0^-1 x_rect - t)`).
    pub fn rect_to_velo(&self, p: [f32; 3]) -> [f32; 3] {
        let cam = mul3(&inv3(&to64_3x3(&self.r0_rect)), p.map(f64::from));
        let (r, t) = rot_of(&self.tr_velo_to_cam);
        mul3(&inv3(&r), [cam[0] - t[0], cam[1] - t[1], cam[2] - t[2]]).map(|v| v as f32)
    }

    /// Rectified camera point -> pixel (u, v) in image 2 through P2. Points behind the camera
    /// (z <= 0) give meaningless (mirrored or infinite) pixels; callers filter them.
    pub fn project_rect_to_image(&self, p: [f32; 3]) -> [f32; 2] {
        let h = [f64::from(p[0]), f64::from(p[1]), f64::from(p[2]), 1.0];
        let row = |i: usize| (0..4).map(|j| f64::from(self.p2[i][j]) * h[j]).sum::<f64>();
        let w = row(2);
        [(row(0) / w) as f32, (row(1) / w) as f32]
    }

    /// Lidar point -> pixel in image 2.
    pub fn project_velo_to_image(&self, p: [f32; 3]) -> [f32; 2] {
        self.project_rect_to_image(self.velo_to_rect(p))
    }

    /// The calibration of KITTI training frame 000000 (P2, R0_rect, Tr_velo_to_cam as measured,
    /// see REFERENCE.md). P0, P1, P3 are not measured values: they share P2's intrinsics, with
    /// P0 = K [I | 0], P1 = P0 shifted by the 0.54 m stereo baseline (tx = -0.54 fx) and P3 = P2
    /// shifted by the same baseline. `tr_imu_to_velo` is None.
    pub fn typical() -> Calib {
        let p2 =
            [[707.0493, 0.0, 604.0814, 45.75831], [0.0, 707.0493, 180.5066, -0.3454157], [0.0, 0.0, 1.0, 0.004981016]];
        let mut p0 = p2;
        for row in &mut p0 {
            row[3] = 0.0;
        }
        let baseline_px = -0.54 * p2[0][0];
        let mut p1 = p0;
        p1[0][3] = baseline_px;
        let mut p3 = p2;
        p3[0][3] += baseline_px;
        Calib {
            p0,
            p1,
            p2,
            p3,
            r0_rect: [
                [0.9999128, 0.01009263, -0.008511932],
                [-0.01012729, 0.9999406, -0.004037671],
                [0.008470675, 0.004123522, 0.9999556],
            ],
            tr_velo_to_cam: [
                [0.006927964, -0.9999722, -0.002757829, -0.02457729],
                [-0.001162982, 0.002749836, -0.9999955, -0.06127237],
                [0.9999753, 0.006931141, -0.001143899, -0.3321029],
            ],
            tr_imu_to_velo: None,
            image_size: super::IMAGE_SIZE,
        }
    }
}

/// Which field a key fills, and how many numbers it takes.
#[derive(Clone, Copy, PartialEq)]
enum Key {
    P(usize),
    R0,
    VeloToCam,
    ImuToVelo,
}

impl Key {
    fn lookup(name: &str) -> Option<Key> {
        Some(match name {
            "P0" => Key::P(0),
            "P1" => Key::P(1),
            "P2" => Key::P(2),
            "P3" => Key::P(3),
            "R0_rect" | "R_rect" => Key::R0,
            "Tr_velo_to_cam" | "Tr_velo_cam" => Key::VeloToCam,
            "Tr_imu_to_velo" | "Tr_imu_velo" => Key::ImuToVelo,
            _ => return None,
        })
    }
    fn count(self) -> usize {
        if self == Key::R0 {
            9
        } else {
            12
        }
    }
}

fn to3x4(v: &[f32]) -> [[f32; 4]; 3] {
    [0, 1, 2].map(|i| [0, 1, 2, 3].map(|j| v[4 * i + j]))
}

/// Parses the text of a calibration file; `file` is used in error messages only. P2, R0_rect and
/// Tr_velo_to_cam are required; a missing P0, P1 or P3 is filled with a copy of P2 (only P2 is
/// used for projection here). A key given twice is an error.
pub fn parse_calib(text: &str, file: &Path) -> Result<Calib> {
    let mut p: [Option<Vec<f32>>; 4] = Default::default();
    let mut r0 = None;
    let mut velo = None;
    let mut imu = None;
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((name, rest)) = line.split_once(':') else {
            return Err(Error::kitti(file, Some(lineno), format!("expected 'KEY: values', found '{line}'")));
        };
        let name = name.trim();
        let Some(key) = Key::lookup(name) else { continue };
        let mut values = Vec::with_capacity(12);
        for tok in rest.split_whitespace() {
            let v = tok
                .parse::<f32>()
                .map_err(|_| Error::kitti(file, Some(lineno), format!("{name}: cannot parse '{tok}' as a number")))?;
            if !v.is_finite() {
                return Err(Error::kitti(file, Some(lineno), format!("{name}: '{tok}' is not a finite number")));
            }
            values.push(v);
        }
        if values.len() != key.count() {
            return Err(Error::kitti(
                file,
                Some(lineno),
                format!("{name}: expected {} numbers, found {}", key.count(), values.len()),
            ));
        }
        let slot = match key {
            Key::P(i) => &mut p[i],
            Key::R0 => &mut r0,
            Key::VeloToCam => &mut velo,
            Key::ImuToVelo => &mut imu,
        };
        if slot.is_some() {
            return Err(Error::kitti(file, Some(lineno), format!("{name}: given twice")));
        }
        *slot = Some(values);
    }
    let missing = |k: &str| Error::kitti(file, None, format!("missing required key {k}"));
    let p2 = to3x4(p[2].as_deref().ok_or_else(|| missing("P2"))?);
    let r0 = r0.ok_or_else(|| missing("R0_rect"))?;
    let velo = velo.ok_or_else(|| missing("Tr_velo_to_cam"))?;
    let pi = |i: usize| p[i].as_deref().map(to3x4).unwrap_or(p2);
    Ok(Calib {
        p0: pi(0),
        p1: pi(1),
        p2,
        p3: pi(3),
        r0_rect: [0, 1, 2].map(|i| [0, 1, 2].map(|j| r0[3 * i + j])),
        tr_velo_to_cam: to3x4(&velo),
        tr_imu_to_velo: imu.as_deref().map(to3x4),
        image_size: super::IMAGE_SIZE,
    })
}

/// Reads and parses a calibration file.
pub fn read_calib(path: impl AsRef<Path>) -> Result<Calib> {
    let path = path.as_ref();
    let text = crate::files::read_regular_text(path)?;
    parse_calib(&text, path)
}

/// C's `%.12e` layout (e.g. `7.070493000000e+02`), the number format of KITTI calibration files.
/// The digits are f32's shortest round-trip decimal (at most 9 significant), zero-padded, so the
/// file shows `7.070493000000e+02` rather than the f64 expansion of the f32, and reads back exactly.
fn sci(v: f32) -> String {
    let s = format!("{v:e}");
    let Some((mant, exp)) = s.split_once('e') else { return s }; // inf / NaN
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let e: i32 = exp.parse().unwrap_or(0);
    format!("{int}.{frac:0<12}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

fn line(key: &str, values: impl IntoIterator<Item = f32>) -> String {
    let nums: Vec<String> = values.into_iter().map(sci).collect();
    format!("{key}: {}\n", nums.join(" "))
}

/// The KITTI object calibration text: P0-P3, R0_rect, Tr_velo_to_cam, then Tr_imu_to_velo when
/// present.
pub fn format_calib(c: &Calib) -> String {
    let flat = |m: &[[f32; 4]; 3]| m.iter().flatten().copied().collect::<Vec<f32>>();
    let mut s = String::new();
    for (i, p) in [&c.p0, &c.p1, &c.p2, &c.p3].into_iter().enumerate() {
        s.push_str(&line(&format!("P{i}"), flat(p)));
    }
    s.push_str(&line("R0_rect", c.r0_rect.iter().flatten().copied()));
    s.push_str(&line("Tr_velo_to_cam", flat(&c.tr_velo_to_cam)));
    if let Some(imu) = &c.tr_imu_to_velo {
        s.push_str(&line("Tr_imu_to_velo", flat(imu)));
    }
    s
}

/// Writes a calibration file (atomically: temporary file, then rename).
pub fn write_calib(path: impl AsRef<Path>, c: &Calib) -> Result<()> {
    write_atomic(path.as_ref(), format_calib(c).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calib_format_parse_round_trip() {
        let mut c = Calib::typical();
        let text = format_calib(&c);
        assert!(text.starts_with("P0: 7.070493000000e+02 0.000000000000e+00 6.040814000000e+02"), "{text}");
        assert!(text.contains("\nR0_rect: 9.999128000000e-01 "), "{text}");
        assert!(text.contains(" -3.454157000000e-01 "), "{text}");
        assert_eq!(parse_calib(&text, Path::new("c.txt")).unwrap(), c);
        c.tr_imu_to_velo = Some([[1.0, 0.0, 0.0, -0.8086759], [0.0, 1.0, 0.0, 0.3195559], [0.0, 0.0, 1.0, -0.7997231]]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.txt");
        write_calib(&path, &c).unwrap();
        assert_eq!(read_calib(&path).unwrap(), c);
    }

    #[test]
    fn calib_aliases_unknown_keys_and_p2_fallback() {
        let c = Calib::typical();
        let text = format_calib(&c);
        let only: String = text
            .lines()
            .filter(|l| l.starts_with("P2") || l.starts_with("R0") || l.starts_with("Tr_velo"))
            .map(|l| l.replace("R0_rect:", "R_rect:").replace("Tr_velo_to_cam:", "Tr_velo_cam:") + "\n")
            .collect();
        let text = format!("calib_time: 09-Jan-2012 13:57:47\n\n{only}");
        let parsed = parse_calib(&text, Path::new("c.txt")).unwrap();
        assert_eq!(parsed.p2, c.p2);
        assert_eq!(parsed.p0, c.p2);
        assert_eq!(parsed.r0_rect, c.r0_rect);
        assert_eq!(parsed.tr_velo_to_cam, c.tr_velo_to_cam);
    }

    #[test]
    fn calib_missing_tr_velo_to_cam_is_error() {
        let text: String = format_calib(&Calib::typical())
            .lines()
            .filter(|l| !l.starts_with("Tr_velo"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = parse_calib(&text, Path::new("calib/000003.txt")).unwrap_err().to_string();
        assert_eq!(e, "calib/000003.txt: missing required key Tr_velo_to_cam");
    }

    #[test]
    fn calib_wrong_count_and_bad_number() {
        let text = "P2: 1 2 3 4 5 6 7 8 9 10 11 12\nR0_rect: 1 0 0 0 1 0 0 0\n";
        let e = parse_calib(text, Path::new("c.txt")).unwrap_err().to_string();
        assert_eq!(e, "c.txt:2: R0_rect: expected 9 numbers, found 8");
        let text = "P2: 1 2 3 4 5 6 7 8 9 10 11 x\n";
        let e = parse_calib(text, Path::new("c.txt")).unwrap_err().to_string();
        assert_eq!(e, "c.txt:1: P2: cannot parse 'x' as a number");
    }

    #[test]
    fn calib_velo_rect_round_trip() {
        let c = Calib::typical();
        for p in [[10.0f32, 0.0, 0.0], [35.2, -12.7, -1.6], [68.9, 39.5, 0.9], [0.5, -0.3, -2.9]] {
            let r = c.velo_to_rect(p);
            let back = c.rect_to_velo(r);
            for k in 0..3 {
                assert!((back[k] - p[k]).abs() < 1e-4, "{p:?} -> {r:?} -> {back:?}");
            }
        }
        // Lidar forward is camera +z, lidar left is camera -x, lidar up is camera -y.
        let r = c.velo_to_rect([10.0, 0.0, 0.0]);
        assert!(r[2] > 9.6 && r[0].abs() < 0.1 && r[1].abs() < 0.2, "{r:?}");
    }

    #[test]
    fn calib_project_10m_ahead_near_image_centre() {
        let c = Calib::typical();
        let r = c.velo_to_rect([10.0, 0.0, 0.0]);
        // Worked by hand (f64): Tr * [10 0 0 1] = (0.04470235, -0.07290219, 9.6676501);
        // R0 * that = (-0.0383277, -0.1123854, 9.6672989).
        let expect_rect = [-0.038_327_7_f32, -0.112_385_36, 9.667_299];
        for k in 0..3 {
            assert!((r[k] - expect_rect[k]).abs() < 1e-5, "{r:?}");
        }
        // P2 * [x y z 1]: u = 605.69940, v = 172.16250.
        let [u, v] = c.project_rect_to_image(r);
        assert!((u - 605.6994).abs() < 1e-2, "u = {u}");
        assert!((v - 172.1625).abs() < 1e-2, "v = {v}");
        assert!((600.0..610.0).contains(&u));
        assert_eq!(c.project_velo_to_image([10.0, 0.0, 0.0]), [u, v]);
    }

    #[test]
    fn non_finite_calibration_numbers_are_errors() {
        let text = format_calib(&Calib::typical());
        let line = text.lines().position(|l| l.starts_with("R0_rect")).unwrap() + 1;
        for bad in ["nan", "inf", "-inf"] {
            let t = text.replacen("R0_rect: 9.999", &format!("R0_rect: {bad} 9.999"), 1);
            let t = {
                // keep 9 numbers: drop the last one of the line
                let mut lines: Vec<String> = t.lines().map(String::from).collect();
                let l = &mut lines[line - 1];
                let cut = l.rfind(' ').unwrap();
                l.truncate(cut);
                lines.join("\n")
            };
            let e = parse_calib(&t, Path::new("c.txt")).unwrap_err().to_string();
            assert!(e.contains(&format!("c.txt:{line}")) && e.contains("R0_rect") && e.contains("not a finite"), "{e}");
        }
    }
}
