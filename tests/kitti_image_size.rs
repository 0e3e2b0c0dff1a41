//! Per-frame image sizes: a KITTI directory whose `image_2` PNGs have KITTI's different sizes
//! (and one frame without an image) gives each frame's calibration its own size, and the
//! field-of-view crop and the 2D box clipping follow it.

mod common;

use std::path::Path;

use pillarq::kitti::{Calib, KittiDir};
use pillarq::model::Model;
use pillarq::pointpillars::{to_kitti_object, voxelize, Detection, PointPillarsConfig};

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

/// A complete black 8-bit grayscale PNG (IHDR, one IDAT of stored deflate blocks, IEND), written
/// here independently of pillarq's header reader.
fn black_png(w: u32, h: u32) -> Vec<u8> {
    let raw = vec![0u8; (1 + w as usize) * h as usize]; // each row: filter byte 0, then w pixels
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        zlib.extend((b.len() as u16).to_le_bytes());
        zlib.extend((!(b.len() as u16)).to_le_bytes());
        zlib.extend(*b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend(((b << 16) | a).to_be_bytes());
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 0, 0, 0, 0]].concat();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], ihdr), (b"IDAT", zlib), (b"IEND", vec![])] {
        png.extend((data.len() as u32).to_be_bytes());
        let body = [kind, &data].concat();
        png.extend(&body);
        png.extend(crc32(&body).to_be_bytes());
    }
    png
}

/// The lidar point that P2 projects to pixel (u, v), 8 m in front of the camera.
fn point_at_pixel(c: &Calib, u: f64, v: f64) -> [f32; 4] {
    let p = c.p2.map(|r| r.map(f64::from));
    let z = 8.0;
    let w = p[2][2] * z + p[2][3];
    let x = (u * w - p[0][2] * z - p[0][3]) / p[0][0];
    let y = (v * w - p[1][2] * z - p[1][3]) / p[1][1];
    let [lx, ly, lz] = c.rect_to_velo([x as f32, y as f32, z as f32]);
    let [pu, pv] = c.project_velo_to_image([lx, ly, lz]);
    assert!((f64::from(pu) - u).abs() < 0.01 && (f64::from(pv) - v).abs() < 0.01, "({u}, {v}) -> ({pu}, {pv})");
    [lx, ly, lz, 0.3]
}

/// Pixels probed: the image centre, then columns and rows just inside the narrowest (1224 x 370),
/// the default (1242 x 375) and the tallest (1242 x 376) image.
const PROBES: [(f64, f64); 7] =
    [(600.0, 200.0), (1223.5, 200.0), (1230.5, 200.0), (1241.5, 200.0), (600.0, 369.5), (600.0, 374.5), (600.0, 375.5)];

#[test]
fn image_size_per_frame_sets_fov_crop_and_2d_clipping() {
    let tmp = tempfile::tempdir().unwrap();
    let data = KittiDir::create(tmp.path()).unwrap();
    std::fs::create_dir_all(tmp.path().join("training/image_2")).unwrap();
    let frames: [(&str, Option<[u32; 2]>); 4] =
        [("000000", Some([1224, 370])), ("000001", Some([1242, 375])), ("000002", Some([1242, 376])), ("000003", None)];
    for (id, size) in frames {
        pillarq::kitti::calib::write_calib(data.calib_path(id), &Calib::typical()).unwrap();
        if let Some([w, h]) = size {
            std::fs::write(data.image_path(id), black_png(w, h)).unwrap();
        }
    }

    let model = Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/pointpillars_kitti.onnx")).unwrap();
    let cfg = PointPillarsConfig::from_graph(&model.graph).unwrap().expect("PointPillars metadata");
    let typical = Calib::typical();
    let points: Vec<[f32; 4]> = PROBES.iter().map(|&(u, v)| point_at_pixel(&typical, u, v)).collect();
    assert_eq!(voxelize(&points, &cfg, None).unwrap().points_in_range, 7, "every probe is in the lidar range");
    // A car to the front right whose projection runs past the right and bottom edges of every image.
    let det = Detection { class: 0, score: 0.8, lidar_box: [5.0, -4.0, -1.0, 3.9, 1.6, 1.56, 0.0] };
    let names = vec!["Car".to_string()];
    let unclipped = to_kitti_object(&det, &Calib { image_size: [1e5, 1e5], ..typical.clone() }, &names).unwrap().bbox;
    assert!(unclipped[2] > 1300.0 && unclipped[3] > 400.0, "{unclipped:?}");

    let mut kept = Vec::new();
    for (id, _) in frames {
        let calib = data.frame_calib(id, None).unwrap();
        let n = voxelize(&points, &cfg, Some(&calib)).unwrap().points_in_range;
        let bbox = to_kitti_object(&det, &calib, &names).unwrap().bbox;
        let [w, h] = calib.image_size;
        eprintln!(
            "frame {id}: image {w} x {h}{}, FOV keeps {n} of 7 probe points, 2D box clipped to \
             [{:.2}, {:.2}, {:.2}, {:.2}] (unclipped right {:.2}, bottom {:.2})",
            if id == "000003" { " (no PNG: default)" } else { "" },
            bbox[0],
            bbox[1],
            bbox[2],
            bbox[3],
            unclipped[2],
            unclipped[3],
        );
        assert_eq!([bbox[0], bbox[1]], [unclipped[0], unclipped[1]], "left and top are inside every image");
        assert_eq!([bbox[2], bbox[3]], [f64::from(w) - 1.0, f64::from(h) - 1.0]);
        kept.push(([w, h], n));
    }
    assert_eq!(
        kept,
        [([1224.0, 370.0], 3), ([1242.0, 375.0], 6), ([1242.0, 376.0], 7), ([1242.0, 375.0], 6)],
        "1224 x 370 drops columns 1230.5, 1241.5 and rows 374.5, 375.5; 1242 x 375 drops row 375.5"
    );
    // --image-size overrides the PNG.
    let forced = data.frame_calib("000000", Some([1242.0, 376.0])).unwrap();
    assert_eq!(voxelize(&points, &cfg, Some(&forced)).unwrap().points_in_range, 7);
}

/// `pillarq detect` over synthetic frames given PNGs of KITTI's sizes: each frame's 2D boxes stay
/// inside its own image, and `--image-size` overrides them all.
#[test]
fn detect_clips_each_frame_to_its_image() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let (code, _, err) = common::pillarq_bin(&["synth", "--out", d, "--train", "1", "--val", "4", "--seed", "5"]);
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir_all(data.join("training/image_2")).unwrap();
    let sizes: [(&str, Option<[u32; 2]>); 4] =
        [("000001", Some([1224, 370])), ("000002", Some([1242, 375])), ("000003", Some([1242, 376])), ("000004", None)];
    for (id, size) in sizes {
        if let Some([w, h]) = size {
            std::fs::write(data.join(format!("training/image_2/{id}.png")), black_png(w, h)).unwrap();
        }
    }
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("onnx/pointpillars_small.onnx");
    let run = |out: &Path, extra: &[&str]| {
        let args = [
            &["detect", "--model", model.to_str().unwrap(), "--data", d, "--out", out.to_str().unwrap(), "-q"][..],
            extra,
        ]
        .concat();
        let (code, _, err) = common::pillarq_bin(&args);
        assert_eq!(code, 0, "{err}");
    };
    // Largest right and bottom edge of each frame's 2D boxes.
    let edges = |out: &Path, id: &str| -> (f64, f64, usize) {
        let objs = pillarq::kitti::label::read_labels(out.join(format!("{id}.txt"))).unwrap();
        let r = objs.iter().map(|o| o.bbox[2]).fold(0.0, f64::max);
        let b = objs.iter().map(|o| o.bbox[3]).fold(0.0, f64::max);
        (r, b, objs.len())
    };
    let own = tmp.path().join("own");
    run(&own, &[]);
    for (id, size) in sizes {
        let [w, h] = size.unwrap_or([1242, 375]);
        let (r, b, n) = edges(&own, id);
        eprintln!(
            "frame {id} ({w} x {h}{}): {n} boxes, right edge <= {r:.2}, bottom <= {b:.2}",
            if size.is_none() { ", no PNG" } else { "" }
        );
        assert!(n > 0 && r <= f64::from(w) - 1.0 && b <= f64::from(h) - 1.0, "{id}: {r} {b} in {w} x {h}");
    }
    let forced = tmp.path().join("forced");
    run(&forced, &["--image-size", "1224x370"]);
    for (id, _) in sizes {
        let (r, b, _) = edges(&forced, id);
        assert!(r <= 1223.0 && b <= 369.0, "{id}: {r} {b}");
    }
    let (code, _, err) = common::pillarq_bin(&[
        "detect",
        "--model",
        model.to_str().unwrap(),
        "--data",
        d,
        "--out",
        forced.to_str().unwrap(),
        "--image-size",
        "1224",
    ]);
    assert!(code != 0 && err.contains("WIDTHxHEIGHT"), "{err}");
}
