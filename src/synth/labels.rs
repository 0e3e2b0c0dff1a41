//! KITTI labels computed from a scene and its scan, as the KITTI annotation defines them:
//! only objects in front of the camera whose projected 3D box (8 corners through P2, clipped to
//! the 1242 x 375 image) is non-empty and that the lidar saw; truncation from the clipped share
//! of the 2D box; occlusion level from the share of the object's rays that reach it; far, small
//! objects become `DontCare` (2D box only).

use std::f32::consts::PI;

use super::lidar::Scan;
use super::scene::{wrap_angle, Actor, Scene};
use crate::kitti::{Calib, Object};

pub const IMAGE_W: f32 = crate::kitti::IMAGE_SIZE[0];
pub const IMAGE_H: f32 = crate::kitti::IMAGE_SIZE[1];
/// Objects farther than this (horizontal, m) with a 2D box lower than [`DONTCARE_PX`] are
/// `DontCare`.
pub const DONTCARE_RANGE: f32 = 60.0;
pub const DONTCARE_PX: f32 = 25.0;

/// KITTI occlusion level from rays that reached the object (`seen`) out of those that would
/// without other objects (`rays`): 0 (>= 80 %), 1 (>= 40 %), 2 (less), 3 unknown (no rays).
pub fn occlusion_level(seen: u32, rays: u32) -> i32 {
    if rays == 0 {
        return 3;
    }
    let f = seen as f32 / rays as f32;
    if f >= 0.8 {
        0
    } else if f >= 0.4 {
        1
    } else {
        2
    }
}

/// Unclipped and clipped 2D boxes of an actor in image 2; None when its centre is not in front
/// of the camera.
pub fn image_box(a: &Actor, calib: &Calib) -> Option<([f32; 4], [f32; 4])> {
    let centre = calib.velo_to_rect([a.x, a.y, a.z + a.h / 2.0]);
    if centre[2] <= 0.1 {
        return None;
    }
    let mut b = [f32::INFINITY, f32::INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY];
    for c in a.corners() {
        let mut r = calib.velo_to_rect(c);
        // Corners behind the image plane: pull them just in front (they land far outside the
        // image, which the clip turns into truncation).
        r[2] = r[2].max(0.1);
        let [u, v] = calib.project_rect_to_image(r);
        b = [b[0].min(u), b[1].min(v), b[2].max(u), b[3].max(v)];
    }
    let clipped = [b[0].max(0.0), b[1].max(0.0), b[2].min(IMAGE_W - 1.0), b[3].min(IMAGE_H - 1.0)];
    Some((b, clipped))
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// The label of actor `i`, or None when KITTI would not label it.
pub fn label_actor(scene: &Scene, scan: &Scan, calib: &Calib, i: usize) -> Option<Object> {
    let a = &scene.actors[i];
    let (full, clipped) = image_box(a, calib)?;
    if clipped[2] <= clipped[0] || clipped[3] <= clipped[1] || scan.actor_points[i] == 0 {
        return None;
    }
    let dist = a.x.hypot(a.y);
    if dist > DONTCARE_RANGE && clipped[3] - clipped[1] < DONTCARE_PX {
        return Some(Object {
            class: "DontCare".into(),
            truncated: -1.0,
            occluded: -1,
            alpha: -10.0,
            bbox: clipped.map(f64::from),
            dimensions: [-1.0; 3],
            location: [-1000.0; 3],
            rotation_y: -10.0,
            score: None,
        });
    }
    let truncated = (1.0 - area(&clipped) / area(&full).max(1e-6)).clamp(0.0, 1.0);
    let location = calib.velo_to_rect([a.x, a.y, a.z]);
    let rotation_y = wrap_angle(-a.yaw - PI / 2.0);
    let alpha = wrap_angle(-(-a.y).atan2(a.x) + rotation_y);
    Some(Object {
        class: a.class.name().into(),
        truncated: truncated.into(),
        occluded: occlusion_level(scan.actor_seen[i], scan.actor_rays[i]),
        alpha,
        bbox: clipped.map(f64::from),
        dimensions: [a.h, a.w, a.l],
        location,
        rotation_y,
        score: None,
    })
}

/// All labels of a frame: objects first (in scene order), `DontCare` regions last.
pub fn label_scene(scene: &Scene, scan: &Scan, calib: &Calib) -> Vec<Object> {
    let mut objects = Vec::new();
    let mut dontcare = Vec::new();
    for i in 0..scene.actors.len() {
        if let Some(o) = label_actor(scene, scan, calib, i) {
            if o.class == "DontCare" {
                dontcare.push(o);
            } else {
                objects.push(o);
            }
        }
    }
    objects.extend(dontcare);
    objects
}
