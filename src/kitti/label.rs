//! KITTI object labels (`label_2/*.txt`) and detection results: one object per line,
//! `type truncated occluded alpha left top right bottom h w l x y z rotation_y [score]`
//! (15 fields for ground truth, 16 with a score for results). Location is the bottom centre of
//! the box in the rectified camera frame (x right, y down, z forward), dimensions in metres.
//! Truncation and the 2D box are read as f64, as the devkit reads them (its difficulty limits are
//! compared in f64); the 3D box, angles and score as f32.

use std::path::Path;

use super::write_atomic;
use crate::error::{Error, Result};

/// One labelled (or detected) object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `Car`, `Pedestrian`, `Cyclist`, `Van`, `DontCare`, ...
    pub class: String,
    /// 0 (not truncated) to 1 (fully truncated); -1 for results and `DontCare`. f64, as the
    /// devkit reads it: the difficulty limits 0.15 / 0.30 / 0.50 are compared in f64, and 0.15 read
    /// as f32 is 0.1500000060 > 0.15.
    pub truncated: f64,
    /// 0 visible, 1 partly occluded, 2 largely occluded, 3 unknown; -1 for results.
    pub occluded: i32,
    /// Observation angle in [-pi, pi].
    pub alpha: f32,
    /// 2D box in the image (pixels): left, top, right, bottom. f64, as the devkit reads it: the
    /// box height is compared with the 40 / 25 px difficulty limits.
    pub bbox: [f64; 4],
    /// Height, width, length (metres).
    pub dimensions: [f32; 3],
    /// Bottom centre x, y, z in the rectified camera frame (metres).
    pub location: [f32; 3],
    /// Rotation around the camera y axis in [-pi, pi].
    pub rotation_y: f32,
    /// Detection confidence (results only).
    pub score: Option<f32>,
}

const FIELD_NAMES: [&str; 16] = [
    "type",
    "truncated",
    "occluded",
    "alpha",
    "bbox_left",
    "bbox_top",
    "bbox_right",
    "bbox_bottom",
    "height",
    "width",
    "length",
    "x",
    "y",
    "z",
    "rotation_y",
    "score",
];

/// Parses the text of a label or result file; `file` is used in error messages only.
/// Blank lines are skipped; lines have 15 fields, or 16 with a score.
pub fn parse_labels(text: &str, file: &Path) -> Result<Vec<Object>> {
    let mut objects = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let lineno = idx + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        if fields.len() != 15 && fields.len() != 16 {
            return Err(Error::kitti(file, Some(lineno), format!("expected 15 or 16 fields, found {}", fields.len())));
        }
        let bad = |i: usize| {
            Error::kitti(
                file,
                Some(lineno),
                format!("field {} ({}): cannot parse '{}'", i + 1, FIELD_NAMES[i], fields[i]),
            )
        };
        // Rust parses "nan" and "inf": a label or result holds finite numbers only.
        let single = |i: usize| fields[i].parse::<f32>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad(i));
        let double = |i: usize| fields[i].parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| bad(i));
        let occluded = fields[2].parse::<i32>().map_err(|_| bad(2))?;
        let dimensions = [single(8)?, single(9)?, single(10)?];
        // KITTI writes -1 sizes for DontCare regions; any other object has a box of positive size.
        if fields[0] != "DontCare" {
            if let Some(k) = dimensions.iter().position(|&d| d < 0.0) {
                return Err(Error::kitti(
                    file,
                    Some(lineno),
                    format!("field {} ({}): size {} is negative", k + 9, FIELD_NAMES[k + 8], fields[k + 8]),
                ));
            }
        }
        objects.push(Object {
            class: fields[0].to_string(),
            truncated: double(1)?,
            occluded,
            alpha: single(3)?,
            bbox: [double(4)?, double(5)?, double(6)?, double(7)?],
            dimensions,
            location: [single(11)?, single(12)?, single(13)?],
            rotation_y: single(14)?,
            score: if fields.len() == 16 { Some(single(15)?) } else { None },
        });
    }
    Ok(objects)
}

/// Reads and parses a label or result file.
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<Object>> {
    let path = path.as_ref();
    let text = crate::files::read_regular_text(path)?;
    parse_labels(&text, path)
}

/// One KITTI line (no newline): two decimals for every number, occlusion as an integer, score
/// (when present) with four decimals.
pub fn format_object(o: &Object) -> String {
    let [l, t, r, b] = o.bbox;
    let [h, w, len] = o.dimensions;
    let [x, y, z] = o.location;
    let mut s = format!(
        "{} {:.2} {} {:.2} {l:.2} {t:.2} {r:.2} {b:.2} {h:.2} {w:.2} {len:.2} {x:.2} {y:.2} {z:.2} {:.2}",
        o.class, o.truncated, o.occluded, o.alpha, o.rotation_y
    );
    if let Some(score) = o.score {
        s.push_str(&format!(" {score:.4}"));
    }
    s
}

/// Writes objects one per line (atomically: temporary file, then rename). An empty slice writes
/// an empty file, which KITTI reads as a frame with no objects.
pub fn write_labels(path: impl AsRef<Path>, objects: &[Object]) -> Result<()> {
    let mut text = String::new();
    for o in objects {
        text.push_str(&format_object(o));
        text.push('\n');
    }
    write_atomic(path.as_ref(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PED: &str = "Pedestrian 0.00 0 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01";

    #[test]
    fn label_real_kitti_line_field_by_field() {
        let objs = parse_labels(PED, Path::new("000000.txt")).unwrap();
        assert_eq!(objs.len(), 1);
        let o = &objs[0];
        assert_eq!(o.class, "Pedestrian");
        assert_eq!(o.truncated, 0.0);
        assert_eq!(o.occluded, 0);
        assert_eq!(o.alpha, -0.20);
        assert_eq!(o.bbox, [712.40, 143.00, 810.73, 307.92]);
        assert_eq!(o.dimensions, [1.89, 0.48, 1.20]);
        assert_eq!(o.location, [1.84, 1.47, 8.41]);
        assert_eq!(o.rotation_y, 0.01);
        assert_eq!(o.score, None);
    }

    #[test]
    fn label_format_parse_round_trip() {
        let text = format!(
            "{PED}\n\nDontCare -1 -1 -10.00 503.89 169.71 590.61 190.13 -1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00\n"
        );
        let gt = parse_labels(&text, Path::new("gt.txt")).unwrap();
        assert_eq!(gt.len(), 2);
        assert_eq!(format_object(&gt[0]), PED);
        assert_eq!(gt[1].occluded, -1);
        let mut det = gt[0].clone();
        det.class = "Car".into();
        det.truncated = -1.0;
        det.occluded = -1;
        det.score = Some(0.8765);
        let line = format_object(&det);
        assert_eq!(line, "Car -1.00 -1 -0.20 712.40 143.00 810.73 307.92 1.89 0.48 1.20 1.84 1.47 8.41 0.01 0.8765");
        assert_eq!(parse_labels(&line, Path::new("r.txt")).unwrap(), vec![det.clone()]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.txt");
        let all = vec![gt[0].clone(), gt[1].clone(), det];
        write_labels(&path, &all).unwrap();
        assert_eq!(read_labels(&path).unwrap(), all);
        write_labels(&path, &[]).unwrap();
        assert!(read_labels(&path).unwrap().is_empty());
    }

    #[test]
    fn label_14_fields_error_has_file_and_line() {
        let text = format!("{PED}\n\nCar 0.00 0 1.0 1 2 3 4 1.5 1.6 3.9 1 2 3\n");
        let e = parse_labels(&text, Path::new("label_2/000007.txt")).unwrap_err();
        assert!(matches!(e, Error::Kitti { line: Some(3), .. }));
        assert_eq!(e.to_string(), "label_2/000007.txt:3: expected 15 or 16 fields, found 14");
    }

    #[test]
    fn label_bad_number_names_field() {
        let text = PED.replace("1.89", "tall");
        let e = parse_labels(&text, Path::new("x.txt")).unwrap_err().to_string();
        assert_eq!(e, "x.txt:1: field 9 (height): cannot parse 'tall'");
        let text = PED.replace("Pedestrian 0.00 0", "Pedestrian 0.00 0.5");
        let e = parse_labels(&text, Path::new("x.txt")).unwrap_err().to_string();
        assert!(e.contains("x.txt:1: field 3 (occluded)"), "{e}");
    }

    #[test]
    fn non_finite_numbers_and_negative_sizes_are_errors() {
        let p = Path::new("000007.txt");
        let good = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59";
        assert_eq!(parse_labels(good, p).unwrap().len(), 1);
        for (bad, want) in [
            (good.replace("3.64", "nan"), "field 11 (length)"),
            (good.replace("46.70", "inf"), "field 14 (z)"),
            (good.replace("0.00 0", "NaN 0"), "field 2 (truncated)"),
            (format!("{good} -inf"), "field 16 (score)"),
            (good.replace("1.67", "-1.67"), "field 10 (width): size -1.67 is negative"),
        ] {
            let e = parse_labels(&format!("{good}\n{bad}\n"), p).unwrap_err().to_string();
            assert!(e.starts_with("000007.txt:2:") && e.contains(want), "{e}");
        }
        // KITTI's DontCare regions carry -1 sizes and -1000 locations.
        let dc = "DontCare -1 -1 -10 503.89 169.71 590.61 190.13 -1 -1 -1 -1000 -1000 -1000 -10";
        assert_eq!(parse_labels(dc, p).unwrap()[0].dimensions, [-1.0; 3]);
    }
}
