//! The KITTI 3D object dataset on disk: velodyne scans, labels, calibrations and split lists.
//!
//! Layout under a root directory:
//! `training/velodyne/<id>.bin`, `training/label_2/<id>.txt`, `training/calib/<id>.txt`,
//! `ImageSets/{train,val}.txt` (one 6-digit frame id per line), and optionally
//! `training/image_2/<id>.png`, of which only the size is read (from the PNG header).

pub mod calib;
pub mod eval;
pub mod image;
pub mod iou;
pub mod label;
pub mod velodyne;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
pub(crate) use crate::files::write_atomic;

/// Size of KITTI's image 2 (camera of P2) in pixels, width and height, for frames without an
/// image: the most common size (the images range from 1224 x 370 to 1242 x 376).
pub const IMAGE_SIZE: [f32; 2] = [1242.0, 375.0];

pub use calib::Calib;
pub use image::parse_image_size;
pub use label::Object;

/// A KITTI object dataset root.
#[derive(Debug, Clone)]
pub struct KittiDir {
    root: PathBuf,
}

/// One training frame: its id, scan, labels and calibration.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: String,
    pub points: Vec<[f32; 4]>,
    pub labels: Vec<Object>,
    pub calib: Calib,
}

const SUBDIRS: [&str; 3] = ["training/velodyne", "training/label_2", "training/calib"];

/// True for a KITTI frame id: exactly six ASCII digits.
pub fn is_frame_id(id: &str) -> bool {
    id.len() == 6 && id.bytes().all(|b| b.is_ascii_digit())
}

impl KittiDir {
    /// Opens a dataset root; `training/velodyne`, `training/label_2` and `training/calib` must be
    /// directories (ImageSets is checked when a split is read).
    pub fn open(root: impl AsRef<Path>) -> Result<KittiDir> {
        let root = root.as_ref().to_path_buf();
        for sub in SUBDIRS {
            let dir = root.join(sub);
            if !dir.is_dir() {
                return Err(Error::kitti(&dir, None, "not a directory (expected a KITTI object dataset root)"));
            }
        }
        Ok(KittiDir { root })
    }

    /// Creates the directory layout (training subdirectories and ImageSets) under `root` and opens
    /// it; for writers such as the synthetic generator.
    pub fn create(root: impl AsRef<Path>) -> Result<KittiDir> {
        let root = root.as_ref().to_path_buf();
        for sub in SUBDIRS.iter().chain(&["ImageSets"]) {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir, source })?;
        }
        Ok(KittiDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn velodyne_path(&self, id: &str) -> PathBuf {
        self.root.join("training/velodyne").join(format!("{id}.bin"))
    }

    pub fn label_path(&self, id: &str) -> PathBuf {
        self.root.join("training/label_2").join(format!("{id}.txt"))
    }

    pub fn calib_path(&self, id: &str) -> PathBuf {
        self.root.join("training/calib").join(format!("{id}.txt"))
    }

    /// `training/image_2/<id>.png`, the left colour camera (P2); optional.
    pub fn image_path(&self, id: &str) -> PathBuf {
        self.root.join("training/image_2").join(format!("{id}.png"))
    }

    /// Width and height of frame `id`'s image 2, from its PNG header; [`IMAGE_SIZE`] when the
    /// frame has no image. A PNG that exists but cannot be read is an error naming it.
    pub fn image_size(&self, id: &str) -> Result<[f32; 2]> {
        let path = self.image_path(id);
        match image::png_size(&path) {
            Ok([w, h]) => Ok([w as f32, h as f32]),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(IMAGE_SIZE),
            Err(e) => Err(e),
        }
    }

    /// Frame `id`'s calibration with the size of its image 2: `image_size` when given (the CLI's
    /// `--image-size`), else the size from `training/image_2/<id>.png` (see
    /// [`KittiDir::image_size`]).
    pub fn frame_calib(&self, id: &str, image_size: Option<[f32; 2]>) -> Result<Calib> {
        let mut calib = calib::read_calib(self.calib_path(id))?;
        calib.image_size = match image_size {
            Some(size) => size,
            None => self.image_size(id)?,
        };
        Ok(calib)
    }

    /// `ImageSets/<split>.txt`.
    pub fn split_path(&self, split: &str) -> PathBuf {
        self.root.join("ImageSets").join(format!("{split}.txt"))
    }

    /// The frame ids of a split (`train`, `val`, ...), in file order. Blank lines are ignored;
    /// anything other than a 6-digit id is an error with the file and line.
    pub fn split_ids(&self, split: &str) -> Result<Vec<String>> {
        let path = self.split_path(split);
        let text = crate::files::read_regular_text(&path)?;
        parse_split(&text, &path)
    }

    /// Writes `ImageSets/<split>.txt` (atomically), one id per line.
    pub fn write_split(&self, split: &str, ids: &[String]) -> Result<()> {
        let path = self.split_path(split);
        if let Some(bad) = ids.iter().find(|id| !is_frame_id(id)) {
            return Err(Error::kitti(&path, None, format!("'{bad}' is not a 6-digit frame id")));
        }
        let mut text = ids.join("\n");
        text.push('\n');
        write_atomic(&path, text.as_bytes())
    }

    /// Reads a frame's scan (non-finite points are an error), labels and calibration (with the
    /// size of its image, see [`KittiDir::frame_calib`]).
    pub fn load_frame(&self, id: &str) -> Result<Frame> {
        Ok(Frame {
            id: id.to_string(),
            points: velodyne::read_points(self.velodyne_path(id))?,
            labels: label::read_labels(self.label_path(id))?,
            calib: self.frame_calib(id, None)?,
        })
    }

    /// Writes a frame's scan, labels and calibration (each atomically).
    pub fn write_frame(&self, frame: &Frame) -> Result<()> {
        if !is_frame_id(&frame.id) {
            return Err(Error::Other(format!("KITTI frame id '{}' is not 6 digits", frame.id)));
        }
        velodyne::write_points(self.velodyne_path(&frame.id), &frame.points)?;
        label::write_labels(self.label_path(&frame.id), &frame.labels)?;
        calib::write_calib(self.calib_path(&frame.id), &frame.calib)
    }
}

fn parse_split(text: &str, path: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    // id -> line of its first mention
    let mut seen = std::collections::HashMap::new();
    for (idx, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        if !is_frame_id(id) {
            return Err(Error::kitti(path, Some(idx + 1), format!("expected a 6-digit frame id, found '{id}'")));
        }
        if let Some(first) = seen.insert(id.to_string(), idx + 1) {
            return Err(Error::kitti(
                path,
                Some(idx + 1),
                format!("frame {id} is listed twice (first on line {first}): it would be scored twice"),
            ));
        }
        ids.push(id.to_string());
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kitti_dir_open_requires_layout() {
        let dir = tempfile::tempdir().unwrap();
        let e = KittiDir::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("training/velodyne") && e.contains("not a directory"), "{e}");
        KittiDir::create(dir.path()).unwrap();
        let k = KittiDir::open(dir.path()).unwrap();
        assert_eq!(k.velodyne_path("000007"), dir.path().join("training/velodyne/000007.bin"));
        assert_eq!(k.label_path("000007"), dir.path().join("training/label_2/000007.txt"));
        assert_eq!(k.calib_path("000007"), dir.path().join("training/calib/000007.txt"));
        assert_eq!(k.split_path("val"), dir.path().join("ImageSets/val.txt"));
    }

    #[test]
    fn kitti_split_ids() {
        let dir = tempfile::tempdir().unwrap();
        let k = KittiDir::create(dir.path()).unwrap();
        std::fs::write(k.split_path("train"), "000000\n000003\r\n\n  000007  \n").unwrap();
        assert_eq!(k.split_ids("train").unwrap(), ["000000", "000003", "000007"]);
        std::fs::write(k.split_path("val"), "000001\n\n00002\n").unwrap();
        let e = k.split_ids("val").unwrap_err();
        assert!(matches!(e, Error::Kitti { line: Some(3), .. }));
        let msg = e.to_string();
        assert!(msg.contains("ImageSets/val.txt:3: expected a 6-digit frame id, found '00002'"), "{msg}");
        assert!(matches!(k.split_ids("test").unwrap_err(), Error::Io { .. }));
        k.write_split("val", &["000004".into(), "000005".into()]).unwrap();
        assert_eq!(k.split_ids("val").unwrap(), ["000004", "000005"]);
        assert!(k.write_split("val", &["4".into()]).is_err());
    }

    #[test]
    fn kitti_frame_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let k = KittiDir::create(dir.path()).unwrap();
        let text = "Car 0.00 0 -1.58 587.01 173.33 614.12 200.12 1.65 1.67 3.64 -0.65 1.71 46.70 -1.59\n";
        let frame = Frame {
            id: "000042".into(),
            points: vec![[10.0, 0.5, -1.2, 0.25], [46.0, 0.7, -0.5, 0.4]],
            labels: label::parse_labels(text, Path::new("t")).unwrap(),
            calib: Calib::typical(),
        };
        k.write_frame(&frame).unwrap();
        let back = k.load_frame("000042").unwrap();
        assert_eq!(back.id, frame.id);
        assert_eq!(back.points, frame.points);
        assert_eq!(back.labels, frame.labels);
        assert_eq!(back.calib, frame.calib);
        // No temporary files left behind.
        let names: Vec<_> =
            std::fs::read_dir(k.root().join("training/label_2")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["000042.txt"]);
    }

    #[test]
    fn kitti_frame_calib_takes_the_png_size() {
        let dir = tempfile::tempdir().unwrap();
        let k = KittiDir::create(dir.path()).unwrap();
        for id in ["000000", "000001", "000002"] {
            calib::write_calib(k.calib_path(id), &Calib::typical()).unwrap();
        }
        assert_eq!(k.image_path("000001"), dir.path().join("training/image_2/000001.png"));
        // No image_2 directory at all: the default size.
        assert_eq!(k.frame_calib("000000", None).unwrap().image_size, [1242.0, 375.0]);
        std::fs::create_dir_all(dir.path().join("training/image_2")).unwrap();
        std::fs::write(k.image_path("000001"), image::png_header_only(1224, 370)).unwrap();
        std::fs::write(k.image_path("000002"), &image::png_header_only(1242, 376)[..30]).unwrap();
        let c = k.frame_calib("000001", None).unwrap();
        assert_eq!(c.image_size, [1224.0, 370.0]);
        assert_eq!(Calib { image_size: IMAGE_SIZE, ..c }, Calib::typical());
        assert_eq!(k.frame_calib("000000", None).unwrap().image_size, IMAGE_SIZE);
        // The override wins, and a given size does not read the PNG at all.
        assert_eq!(k.frame_calib("000001", Some([1241.0, 374.0])).unwrap().image_size, [1241.0, 374.0]);
        assert_eq!(k.frame_calib("000002", Some([1242.0, 376.0])).unwrap().image_size, [1242.0, 376.0]);
        let e = k.frame_calib("000002", None).unwrap_err().to_string();
        assert!(e.ends_with("training/image_2/000002.png: truncated PNG: 30 bytes, the header needs 33"), "{e}");
    }

    #[test]
    fn duplicate_split_ids_are_errors() {
        let e = parse_split("000001\n000002\n\n000001\n", Path::new("val.txt")).unwrap_err().to_string();
        assert!(e.contains("val.txt:4") && e.contains("000001") && e.contains("line 1"), "{e}");
        assert_eq!(parse_split("000001\n000002\n", Path::new("val.txt")).unwrap(), ["000001", "000002"]);
    }
}
