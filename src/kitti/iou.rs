//! Box overlaps as the KITTI protocol measures them: axis-aligned image boxes (2D), rotated
//! bird's-eye-view rectangles by convex polygon clipping (BEV), and BEV overlap times vertical
//! overlap (3D), all in the camera frame (x right, y down, z forward).

/// A 3-D box in KITTI camera coordinates: `location` is the bottom centre, `dims` are
/// (h, w, l) as in label files, `ry` the rotation around the camera y axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CamBox {
    pub location: [f64; 3],
    pub dims: [f64; 3],
    pub ry: f64,
}

/// How the overlap area is normalized (the devkit's `criterion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union.
    Union,
    /// Intersection over the area of the first box (DontCare regions in the 2D metric).
    First,
}

/// `inter` over the union of sizes `a` and `b`, or over `a` alone; 0 when nothing overlaps.
fn ratio(inter: f64, a: f64, b: f64, how: Overlap) -> f64 {
    let den = match how {
        Overlap::Union => a + b - inter,
        Overlap::First => a,
    };
    if den > 0.0 && inter > 0.0 {
        inter / den
    } else {
        0.0
    }
}

/// 2D image boxes `[left, top, right, bottom]` in pixels.
pub fn iou_2d(a: [f64; 4], b: [f64; 4], how: Overlap) -> f64 {
    let iw = a[2].min(b[2]) - a[0].max(b[0]);
    let ih = a[3].min(b[3]) - a[1].max(b[1]);
    if iw <= 0.0 || ih <= 0.0 {
        return 0.0;
    }
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    ratio(iw * ih, area(a), area(b), how)
}

/// The BEV rectangle's corners in the (x, z) plane, counter-clockwise.
pub fn bev_corners(b: &CamBox) -> [[f64; 2]; 4] {
    let (l, w) = (b.dims[2], b.dims[1]);
    // The length axis is the object's x axis rotated by ry about y: (cos ry, -sin ry) in (x, z).
    let (c, s) = (b.ry.cos(), b.ry.sin());
    let ax = [c * l / 2.0, -s * l / 2.0];
    let aw = [s * w / 2.0, c * w / 2.0];
    let (x, z) = (b.location[0], b.location[2]);
    let mut pts = [
        [x + ax[0] + aw[0], z + ax[1] + aw[1]],
        [x - ax[0] + aw[0], z - ax[1] + aw[1]],
        [x - ax[0] - aw[0], z - ax[1] - aw[1]],
        [x + ax[0] - aw[0], z + ax[1] - aw[1]],
    ];
    if polygon_area_signed(&pts) < 0.0 {
        pts.reverse();
    }
    pts
}

fn polygon_area_signed(p: &[[f64; 2]]) -> f64 {
    let n = p.len();
    (0..n).map(|i| p[i][0] * p[(i + 1) % n][1] - p[(i + 1) % n][0] * p[i][1]).sum::<f64>() / 2.0
}

/// Area of the intersection of two convex counter-clockwise polygons (Sutherland-Hodgman).
pub fn convex_intersection_area(subject: &[[f64; 2]], clip: &[[f64; 2]]) -> f64 {
    let mut out: Vec<[f64; 2]> = subject.to_vec();
    let n = clip.len();
    for i in 0..n {
        if out.is_empty() {
            return 0.0;
        }
        let (a, b) = (clip[i], clip[(i + 1) % n]);
        // Inside = on the left of a->b (or on it).
        let side = |p: [f64; 2]| (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        let input = std::mem::take(&mut out);
        for j in 0..input.len() {
            let (p, q) = (input[j], input[(j + 1) % input.len()]);
            let (sp, sq) = (side(p), side(q));
            if sp >= 0.0 {
                out.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
            }
        }
    }
    if out.len() < 3 {
        return 0.0;
    }
    polygon_area_signed(&out).max(0.0)
}

/// Bird's-eye-view overlap of two boxes on (x, z, l, w, ry).
pub fn iou_bev(a: &CamBox, b: &CamBox, how: Overlap) -> f64 {
    let inter = convex_intersection_area(&bev_corners(a), &bev_corners(b));
    let area = |x: &CamBox| x.dims[1] * x.dims[2];
    ratio(inter, area(a), area(b), how)
}

/// 3D overlap: BEV intersection times the overlap of the vertical extents `[y - h, y]`.
pub fn iou_3d(a: &CamBox, b: &CamBox, how: Overlap) -> f64 {
    let top = (a.location[1] - a.dims[0]).max(b.location[1] - b.dims[0]);
    let bottom = a.location[1].min(b.location[1]);
    let ih = bottom - top;
    if ih <= 0.0 {
        return 0.0;
    }
    let inter = convex_intersection_area(&bev_corners(a), &bev_corners(b)) * ih;
    let vol = |x: &CamBox| x.dims[0] * x.dims[1] * x.dims[2];
    ratio(inter, vol(a), vol(b), how)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4};

    fn cb(x: f64, y: f64, z: f64, h: f64, w: f64, l: f64, ry: f64) -> CamBox {
        CamBox { location: [x, y, z], dims: [h, w, l], ry }
    }

    #[test]
    fn identical_boxes_overlap_fully() {
        let a = cb(1.0, 1.6, 20.0, 1.5, 1.6, 3.9, 0.3);
        assert!((iou_bev(&a, &a, Overlap::Union) - 1.0).abs() < 1e-12);
        assert!((iou_3d(&a, &a, Overlap::Union) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn shift_along_length_gives_known_iou() {
        // l = 4, w = 2, ry = 0: the length runs along x. Shift by 2 m: inter 2x2 = 4, union 12.
        let a = cb(0.0, 0.0, 10.0, 1.0, 2.0, 4.0, 0.0);
        let b = cb(2.0, 0.0, 10.0, 1.0, 2.0, 4.0, 0.0);
        assert!((iou_bev(&a, &b, Overlap::Union) - 1.0 / 3.0).abs() < 1e-12);
        // Same ry = pi/2: the length runs along z, so the shift must be along z.
        let c = cb(0.0, 0.0, 10.0, 1.0, 2.0, 4.0, FRAC_PI_2);
        let d = cb(0.0, 0.0, 12.0, 1.0, 2.0, 4.0, FRAC_PI_2);
        assert!((iou_bev(&c, &d, Overlap::Union) - 1.0 / 3.0).abs() < 1e-9);
        // Overlap over the first box's area: 4 / 8.
        assert!((iou_bev(&a, &b, Overlap::First) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn rotated_square_octagon() {
        // A unit square and the same square turned 45 degrees: the intersection is a regular
        // octagon of area 2 (sqrt 2 - 1); IoU = that / (2 - that).
        let a = cb(0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0);
        let b = cb(0.0, 0.0, 0.0, 1.0, 1.0, 1.0, FRAC_PI_4);
        let inter = 2.0 * (2f64.sqrt() - 1.0);
        assert!((iou_bev(&a, &b, Overlap::Union) - inter / (2.0 - inter)).abs() < 1e-9);
        // A square rotated by 90 degrees is itself.
        let c = cb(0.0, 0.0, 0.0, 1.0, 1.0, 1.0, FRAC_PI_2);
        assert!((iou_bev(&a, &c, Overlap::Union) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn vertical_overlap_scales_3d_iou() {
        // Same footprint, heights [0, 2] and [1, 3] (y down: bottoms at 2 and 3): inter = half of each.
        let a = cb(0.0, 2.0, 5.0, 2.0, 1.0, 2.0, 0.0);
        let b = cb(0.0, 3.0, 5.0, 2.0, 1.0, 2.0, 0.0);
        assert!((iou_3d(&a, &b, Overlap::Union) - 1.0 / 3.0).abs() < 1e-12);
        let far = cb(0.0, 10.0, 5.0, 2.0, 1.0, 2.0, 0.0);
        assert_eq!(iou_3d(&a, &far, Overlap::Union), 0.0);
        assert!((iou_bev(&a, &far, Overlap::Union) - 1.0).abs() < 1e-12, "BEV ignores height");
    }

    #[test]
    fn disjoint_and_touching_boxes_do_not_overlap() {
        let a = cb(0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 0.0);
        let b = cb(4.0, 0.0, 0.0, 1.0, 2.0, 4.0, 0.0);
        assert_eq!(iou_bev(&a, &b, Overlap::Union), 0.0);
        let c = cb(50.0, 0.0, 0.0, 1.0, 2.0, 4.0, 1.0);
        assert_eq!(iou_3d(&a, &c, Overlap::Union), 0.0);
    }

    #[test]
    fn image_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!((iou_2d(a, b, Overlap::Union) - 50.0 / 150.0).abs() < 1e-12);
        assert!((iou_2d(a, b, Overlap::First) - 0.5).abs() < 1e-12);
        assert_eq!(iou_2d(a, [10.0, 0.0, 20.0, 10.0], Overlap::Union), 0.0);
    }
}
