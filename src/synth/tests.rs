use std::f32::consts::PI;
use std::path::Path;

use super::labels::label_scene;
use super::lidar::Lidar;
use super::scene::{Actor, Builder, Class, Ground, Mat, Rng, Scene, SceneParams};
use super::*;
use crate::kitti::label::{format_object, parse_labels};

fn flat_ground() -> Ground {
    Ground {
        sx: 0.0,
        sy: 0.0,
        dc: 1.0,
        ds: 0.0,
        v_ego: 0.0,
        road_half: 500.0,
        curb: 0.15,
        refl_road: 0.25,
        refl_walk: 0.3,
        lane_w: 3.5,
        lanes_per_side: 1,
        parking: 0.0,
    }
}

fn quiet_lidar() -> Lidar {
    Lidar { outliers: 0.0, ..Lidar::default() }
}

/// The label's 3D box back in the lidar frame.
fn label_box(o: &crate::kitti::Object, calib: &Calib) -> Actor {
    let [x, y, z] = calib.rect_to_velo(o.location);
    let [h, w, l] = o.dimensions;
    Actor { class: Class::Car, x, y, z, l, w, h, yaw: -o.rotation_y - PI / 2.0 }
}

#[test]
fn synth_same_seed_same_frame() {
    let p = SceneParams::default();
    let l = Lidar::default();
    let a = generate_frame(7, 3, &p, &l);
    let b = generate_frame(7, 3, &p, &l);
    assert!(a.scan.points.len() > 50_000);
    assert_eq!(a.scan.points, b.scan.points);
    assert_eq!(a.labels, b.labels);
    let c = generate_frame(7, 4, &p, &l);
    assert_ne!(a.scan.points, c.scan.points);
    let d = generate_frame(8, 3, &p, &l);
    assert_ne!(a.scan.points, d.scan.points);
}

fn read_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["training/velodyne", "training/label_2", "training/calib", "ImageSets"] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(sub)).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for p in names {
            out.push((p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    out
}

#[test]
fn synth_thread_count_and_resume_give_identical_files() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let opts = |threads| SynthOptions { train: 3, val: 2, seed: 11, threads, ..SynthOptions::default() };
    let s = write_dataset(d1.path(), &opts(1), &|_, _| {}).unwrap();
    assert_eq!((s.written, s.skipped), (5, 0));
    write_dataset(d2.path(), &opts(2), &|_, _| {}).unwrap();
    let t1 = read_tree(d1.path());
    assert_eq!(t1.len(), 5 * 3 + 2);
    assert_eq!(t1, read_tree(d2.path()));
    let sets: Vec<_> = t1.iter().filter(|(n, _)| n.starts_with("ImageSets")).collect();
    assert_eq!(sets[0].1, b"000000\n000001\n000002\n");
    assert_eq!(sets[1].1, b"000003\n000004\n");
    // Resume: a missing label is regenerated, finished frames are skipped.
    std::fs::remove_file(d2.path().join("training/label_2/000004.txt")).unwrap();
    let s = write_dataset(d2.path(), &opts(2), &|_, _| {}).unwrap();
    assert_eq!((s.written, s.skipped), (1, 4));
    assert_eq!(t1, read_tree(d2.path()));
}

#[test]
fn synth_single_car_points_inside_its_label() {
    let mut rng = Rng::for_frame(1, 1, 0);
    let mut b = Builder::new(flat_ground(), &mut rng);
    assert!(b.car(Class::Car, 12.0, -1.0, 0.4));
    let scene = b.finish();
    let scan = quiet_lidar().scan(&scene, &mut Rng::for_frame(1, 1, 1));
    let calib = Calib::typical();
    let labels = label_scene(&scene, &scan, &calib);
    assert_eq!(labels.len(), 1, "{labels:?}");
    let o = &labels[0];
    assert_eq!(o.class, "Car");
    assert_eq!(o.occluded, 0);
    assert_eq!(o.truncated, 0.0);
    // Format, parse back, and check every non-ground point lies in the parsed label's box.
    let line = format_object(o);
    let back = parse_labels(&line, Path::new("t.txt")).unwrap();
    assert_eq!(back.len(), 1);
    let bx = label_box(&back[0], &calib);
    let a = &scene.actors[0];
    assert!((bx.x - a.x).abs() < 0.02 && (bx.y - a.y).abs() < 0.02 && (bx.l - a.l).abs() < 0.01);
    let on_car: Vec<_> = scan.points.iter().filter(|p| p[2] > -1.73 + 0.1).collect();
    assert!(on_car.len() > 300, "{} points on the car", on_car.len());
    assert!(on_car.len() as u32 <= scan.actor_points[0]);
    for p in &on_car {
        assert!(bx.contains([p[0], p[1], p[2]], 0.1), "point {p:?} outside {bx:?}");
        // On the surface of one of the car's boxes (within range noise).
        let near = scene.prims.iter().any(|q| {
            let (dx, dy) = (p[0] - q.cx, p[1] - q.cy);
            let (lx, ly) = (q.c * dx + q.s * dy, -q.s * dx + q.c * dy);
            lx.abs() <= q.hx + 0.1 && ly.abs() <= q.hy + 0.1 && p[2] >= q.z0 - 0.1 && p[2] <= q.z1 + 0.1
        });
        assert!(near, "point {p:?} off the car's surfaces");
    }
    // Licence plates are bright.
    assert!(on_car.iter().any(|p| p[3] > 0.8));
}

#[test]
fn synth_object_behind_wall_is_hidden() {
    let mut rng = Rng::for_frame(2, 2, 0);
    let mut b = Builder::new(flat_ground(), &mut rng);
    // A pedestrian fully behind a 4 m wall.
    b.street_box(8.0, 0.0, 0.0, 0.4, 6.0, 0.0, 4.0, 0.3, Mat::Diffuse);
    assert!(b.pedestrian(15.0, 0.5, 0.0));
    // A car behind a 1 m wall across the line of sight: partly visible.
    let los = (-12.0f32).atan2(25.0);
    b.street_box(20.0, -9.6, los, 0.3, 6.0, 0.0, 1.0, 0.3, Mat::Diffuse);
    assert!(b.car(Class::Car, 25.0, -12.0, 0.0));
    let scene: Scene = b.finish();
    let scan = quiet_lidar().scan(&scene, &mut Rng::for_frame(2, 2, 1));
    assert_eq!(scan.actor_points[0], 0);
    assert_eq!(scan.actor_seen[0], 0);
    assert!(scan.actor_rays[0] > 50, "{}", scan.actor_rays[0]);
    assert!(scan.actor_points[1] > 0);
    let labels = label_scene(&scene, &scan, &Calib::typical());
    assert!(labels.iter().all(|o| o.class != "Pedestrian"), "{labels:?}");
    assert_eq!(labels.len(), 1, "{labels:?}");
    assert_eq!(labels[0].class, "Car");
    assert!(labels[0].occluded >= 1, "{:?}: {} of {} rays", labels[0], scan.actor_seen[1], scan.actor_rays[1]);
}

#[test]
fn synth_far_object_is_dontcare() {
    let mut rng = Rng::for_frame(3, 3, 0);
    let mut b = Builder::new(flat_ground(), &mut rng);
    assert!(b.pedestrian(66.0, 0.0, 0.0));
    let scene = b.finish();
    let scan = quiet_lidar().scan(&scene, &mut Rng::for_frame(3, 3, 1));
    let labels = label_scene(&scene, &scan, &Calib::typical());
    assert_eq!(labels.len(), 1);
    let line = format_object(&labels[0]);
    assert!(line.starts_with("DontCare -1.00 -1 -10.00 "), "{line}");
    assert!(line.ends_with(" -1.00 -1.00 -1.00 -1000.00 -1000.00 -1000.00 -10.00"), "{line}");
    assert_eq!(format_object(&parse_labels(&line, Path::new("t")).unwrap()[0]), line);
}

#[test]
fn synth_frames_hold_pedestrians_and_cyclists() {
    let p = SceneParams::default();
    let l = Lidar::default();
    let (mut ped, mut cyc, mut car) = (0, 0, 0);
    let n = 24;
    for i in 0..n {
        let f = generate_frame(0, 1500 + i, &p, &l);
        for o in &f.labels {
            assert!(o.bbox[0] >= 0.0 && o.bbox[2] <= 1241.0 && o.bbox[1] >= 0.0 && o.bbox[3] <= 374.0);
            match o.class.as_str() {
                "Pedestrian" => ped += 1,
                "Cyclist" => cyc += 1,
                "Car" => car += 1,
                _ => {}
            }
        }
    }
    assert!(ped as f32 >= 0.6 * n as f32 && cyc as f32 >= 0.6 * n as f32, "ped {ped} cyc {cyc} car {car}");
    assert!(car as f32 >= 1.5 * n as f32, "car {car}");
}
