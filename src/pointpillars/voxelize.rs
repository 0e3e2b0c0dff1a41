//! Pre-processing: a point cloud (x, y, z, intensity in the lidar frame) to the model's pillar
//! inputs, as OpenPCDet / CUDA-PointPillars do it.
//!
//! - Points outside the range (`x in [x0, x1)`, same for y and z) or not finite are dropped;
//!   with a calibration, so are points outside the camera's field of view (OpenPCDet's
//!   `FOV_POINTS_ONLY`: rectified z > 0 and the P2 projection inside the frame's image, whose
//!   size comes from its `image_2` PNG; 1242 x 375 without one).
//!   A point in range whose cell index rounds up to the grid size in f32 (within ~1e-7 of an
//!   upper bound) is dropped too, as the spconv / CUDA-PointPillars grid check does.
//! - Pillars are numbered in order of first occurrence in the point order; a pillar keeps its
//!   first `max_points_per_pillar` points in file order; pillars beyond `max_pillars` are dropped.
//! - Each point's features are the configuration's `point_features`, in order, from: x, y, z,
//!   intensity (`x y z intensity`), offsets from the mean of the pillar's kept points (`xc yc zc`),
//!   offsets from the pillar centre (`xp yp zp`: `x0 + (ix + 0.5) vx`, `y0 + (iy + 0.5) vy`,
//!   `z0 + vz / 2`) and the distance from the sensor (`distance`, OpenPCDet's `WITH_DISTANCE`).
//!   OpenPCDet / CUDA-PointPillars use the first ten, mmdetection3d the first nine. Padded point
//!   slots and padded pillars are all zero.
//!
//! One pass over the points with a dense grid of pillar ids, then one pass over the pillars.

use crate::error::{Error, Result};
use crate::kitti::Calib;
use crate::pointpillars::interface::ModelIo;
use crate::pointpillars::PointPillarsConfig;
use crate::tensor::{DType, Data, Tensor};

/// The point features of OpenPCDet's and CUDA-PointPillars' PointPillars, in their order.
pub const POINT_FEATURES_10: [&str; 10] = ["x", "y", "z", "intensity", "xc", "yc", "zc", "xp", "yp", "zp"];

/// One feature of a point in a pillar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointFeature {
    /// Raw x, y, z, intensity (index into the point).
    Raw(usize),
    /// Offset from the mean of the pillar's kept points (axis).
    Cluster(usize),
    /// Offset from the pillar centre (axis).
    Center(usize),
    /// sqrt(x^2 + y^2 + z^2).
    Distance,
}

impl PointFeature {
    pub const NAMES: [&'static str; 11] = ["x", "y", "z", "intensity", "xc", "yc", "zc", "xp", "yp", "zp", "distance"];

    pub fn parse(name: &str) -> Option<PointFeature> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(match i {
            0..=3 => PointFeature::Raw(i),
            4..=6 => PointFeature::Cluster(i - 4),
            7..=9 => PointFeature::Center(i - 7),
            _ => PointFeature::Distance,
        })
    }
}

/// The pillars of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Pillars {
    /// `[max_pillars, max_points_per_pillar, features]`, row-major; rows `>= count` are zero.
    pub voxels: Vec<f32>,
    /// Features per point (the configuration's `point_features`).
    pub num_features: usize,
    /// Kept points of each valid pillar (`count` entries).
    pub point_counts: Vec<u32>,
    /// One `(batch 0, z 0, y, x)` per valid pillar (`count` entries, no padding).
    pub coords: Vec<[i32; 4]>,
    /// Number of valid pillars (`<= max_pillars`).
    pub count: usize,
    /// Points that passed the finite, range and field-of-view filters.
    pub points_in_range: usize,
    /// Points in a kept pillar that already held `max_points_per_pillar` points.
    pub points_dropped_full: usize,
    /// Non-empty pillars dropped because `max_pillars` were already taken.
    pub pillars_dropped: usize,
    /// Points in those dropped pillars.
    pub points_dropped_pillars: usize,
    /// `max_pillars` of the configuration (the padded first dimension of `voxels`).
    pub max_pillars: usize,
    /// `max_points_per_pillar` of the configuration.
    pub max_points: usize,
}

/// A calibration folded into one lidar -> rectified camera 3x4 matrix and P2 (f64).
struct Fov {
    velo_to_rect: [[f64; 4]; 3],
    p2: [[f64; 4]; 3],
    size: [f64; 2],
}

impl Fov {
    fn new(c: &Calib, size: [f32; 2]) -> Fov {
        let mut m = [[0f64; 4]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| f64::from(c.r0_rect[i][k]) * f64::from(c.tr_velo_to_cam[k][j])).sum();
            }
        }
        Fov { velo_to_rect: m, p2: c.p2.map(|r| r.map(f64::from)), size: size.map(f64::from) }
    }

    fn contains(&self, p: [f32; 4]) -> bool {
        let h = [f64::from(p[0]), f64::from(p[1]), f64::from(p[2]), 1.0];
        let dot4 = |r: &[f64; 4], v: &[f64; 4]| r[0] * v[0] + r[1] * v[1] + r[2] * v[2] + r[3] * v[3];
        let rect = [dot4(&self.velo_to_rect[0], &h), dot4(&self.velo_to_rect[1], &h), dot4(&self.velo_to_rect[2], &h)];
        if rect[2] <= 0.0 {
            return false;
        }
        let r = [rect[0], rect[1], rect[2], 1.0];
        let w = dot4(&self.p2[2], &r);
        let u = dot4(&self.p2[0], &r) / w;
        let v = dot4(&self.p2[1], &r) / w;
        (0.0..self.size[0]).contains(&u) && (0.0..self.size[1]).contains(&v)
    }
}

fn check_config(cfg: &PointPillarsConfig) -> Result<(usize, usize)> {
    let bad = |msg: String| Err(Error::Other(format!("PointPillars configuration: {msg}")));
    let [nx, ny, nz] = cfg.grid_size;
    if nx == 0 || ny == 0 || nz != 1 {
        return bad(format!("grid_size {:?} must be [nx > 0, ny > 0, 1]", cfg.grid_size));
    }
    if nx.checked_mul(ny).is_none_or(|c| c >= u32::MAX as usize - 2) {
        return bad(format!("grid_size {:?} is too large", cfg.grid_size));
    }
    if cfg.voxel_size.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return bad(format!("voxel_size {:?} must be positive", cfg.voxel_size));
    }
    let r = cfg.point_cloud_range;
    if (0..3).any(|d| !(r[d].is_finite() && r[d + 3].is_finite() && r[d] < r[d + 3])) {
        return bad(format!("point_cloud_range {r:?} must be [x0, y0, z0, x1, y1, z1] with x0 < x1 etc."));
    }
    if cfg.max_points_per_pillar == 0 || cfg.max_pillars == 0 {
        return bad("max_points_per_pillar and max_pillars must be positive".into());
    }
    if cfg.max_pillars >= u32::MAX as usize - 2 {
        return bad(format!("max_pillars {} is too large", cfg.max_pillars));
    }
    Ok((nx, ny))
}

fn features_of(cfg: &PointPillarsConfig) -> Result<Vec<PointFeature>> {
    let feats = cfg
        .point_features
        .iter()
        .map(|n| {
            PointFeature::parse(n).ok_or_else(|| {
                Error::Other(format!(
                    "PointPillars configuration: unknown point feature '{n}'; known: {}",
                    PointFeature::NAMES.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if feats.is_empty() {
        return Err(Error::Other("PointPillars configuration: point_features is empty".into()));
    }
    Ok(feats)
}

const EMPTY: u32 = u32::MAX;
const DROPPED: u32 = u32::MAX - 1;

/// Turns points `(x, y, z, intensity)` in the lidar frame into pillars (see the module docs).
/// With `calib`, only points in the camera's field of view are kept.
pub fn voxelize(points: &[[f32; 4]], cfg: &PointPillarsConfig, calib: Option<&Calib>) -> Result<Pillars> {
    let (nx, ny) = check_config(cfg)?;
    let feats = features_of(cfg)?;
    let (m, f, pmax) = (cfg.max_points_per_pillar, feats.len(), cfg.max_pillars);
    let r = cfg.point_cloud_range;
    let vs = cfg.voxel_size;
    let fov = calib.filter(|_| cfg.fov_points_only).map(|c| Fov::new(c, c.image_size));

    let mut grid = vec![EMPTY; nx * ny];
    // The kept raw points of each pillar, `m` slots per pillar.
    let mut raw: Vec<[f32; 4]> = Vec::new();
    let mut coords: Vec<[i32; 4]> = Vec::new();
    let mut npts: Vec<u32> = Vec::new();
    let mut sums: Vec<[f64; 3]> = Vec::new();
    let (mut in_range, mut dropped_full, mut pillars_dropped, mut points_dropped_pillars) = (0, 0, 0, 0);

    for &p in points {
        let [x, y, z, _] = p;
        // NaN fails every comparison, so non-finite points fall out here too (inf is out of range).
        if !(x >= r[0] && x < r[3] && y >= r[1] && y < r[4] && z >= r[2] && z < r[5] && p[3].is_finite()) {
            continue;
        }
        let ix = ((x - r[0]) / vs[0]).floor();
        let iy = ((y - r[1]) / vs[1]).floor();
        // Rounding can put a point just below the upper bound into cell n: drop it like the grid does.
        if !(ix >= 0.0 && (ix as usize) < nx && iy >= 0.0 && (iy as usize) < ny) {
            continue;
        }
        if let Some(fov) = &fov {
            if !fov.contains(p) {
                continue;
            }
        }
        in_range += 1;
        let (ix, iy) = (ix as usize, iy as usize);
        let cell = &mut grid[iy * nx + ix];
        if *cell == EMPTY {
            if coords.len() < pmax {
                *cell = coords.len() as u32;
                coords.push([0, 0, iy as i32, ix as i32]);
                raw.resize(raw.len() + m, [0.0; 4]);
                npts.push(0);
                sums.push([0.0; 3]);
            } else {
                *cell = DROPPED;
                pillars_dropped += 1;
            }
        }
        if *cell == DROPPED {
            points_dropped_pillars += 1;
            continue;
        }
        let id = *cell as usize;
        let k = npts[id] as usize;
        if k >= m {
            dropped_full += 1;
            continue;
        }
        npts[id] += 1;
        let s = &mut sums[id];
        s[0] += f64::from(x);
        s[1] += f64::from(y);
        s[2] += f64::from(z);
        raw[id * m + k] = p;
    }

    let mut voxels = vec![0f32; pmax * m * f];
    let cz = r[2] + 0.5 * vs[2];
    for (id, c) in coords.iter().enumerate() {
        let n = npts[id] as usize;
        let mean = sums[id].map(|s| (s / n as f64) as f32);
        let centre = [r[0] + (c[3] as f32 + 0.5) * vs[0], r[1] + (c[2] as f32 + 0.5) * vs[1], cz];
        for k in 0..n {
            let q = raw[id * m + k];
            let row = &mut voxels[(id * m + k) * f..(id * m + k + 1) * f];
            for (v, feat) in row.iter_mut().zip(&feats) {
                *v = match *feat {
                    PointFeature::Raw(i) => q[i],
                    PointFeature::Cluster(d) => q[d] - mean[d],
                    PointFeature::Center(d) => q[d] - centre[d],
                    PointFeature::Distance => (q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt(),
                };
            }
        }
    }

    Ok(Pillars {
        voxels,
        num_features: f,
        point_counts: npts,
        count: coords.len(),
        coords,
        points_in_range: in_range,
        points_dropped_full: dropped_full,
        pillars_dropped,
        points_dropped_pillars,
        max_pillars: pmax,
        max_points: m,
    })
}

fn int_tensor(dtype: DType, shape: Vec<usize>, v: Vec<i64>, name: &str) -> Result<Tensor> {
    match dtype {
        DType::I32 => Ok(Tensor { shape, data: Data::I32(v.into_iter().map(|x| x as i32).collect()) }),
        DType::I64 => Ok(Tensor { shape, data: Data::I64(v) }),
        other => Err(Error::Input {
            name: name.into(),
            msg: format!("the model declares element type {other}; pillar inputs support int32 or int64"),
        }),
    }
}

impl Pillars {
    /// The model inputs, as the model declares them (see [`ModelIo`]): pillar features
    /// `[P, M, F]` (or `[1, P, M, F]`; float16 inputs get f16-rounded values), coordinates
    /// `[P, 4]` (or `[1, P, 4]`) as (batch 0, z 0, y, x) with zero padding rows, and where the
    /// model takes them the valid-pillar count and the points per pillar, in the model's integer
    /// type. The model's P, M and F must be the pillars'.
    pub fn to_inputs(&self, io: &ModelIo) -> Result<Vec<(String, Tensor)>> {
        let want = [self.max_pillars, self.max_points, self.num_features];
        if [io.max_pillars, io.max_points, io.num_features] != want {
            return Err(Error::Input {
                name: io.voxels.name.clone(),
                msg: format!(
                    "the model takes {:?}, the pillars are {want:?} (max_pillars, points, features)",
                    io.voxels.shape
                ),
            });
        }
        let voxels = match io.voxels.dtype {
            DType::F16 => self.voxels.iter().map(|&v| crate::numerics::round_f16(v)).collect(),
            _ => self.voxels.clone(),
        };
        let mut idxs = vec![0i64; self.max_pillars * 4];
        for (row, c) in idxs.chunks_exact_mut(4).zip(&self.coords) {
            for (d, v) in row.iter_mut().zip(c) {
                *d = i64::from(*v);
            }
        }
        let mut inputs = vec![
            (io.voxels.name.clone(), Tensor::f32(io.voxels.shape.clone(), voxels)),
            (io.coords.name.clone(), int_tensor(io.coords.dtype, io.coords.shape.clone(), idxs, &io.coords.name)?),
        ];
        if let Some(c) = &io.count {
            inputs.push((c.name.clone(), int_tensor(c.dtype, c.shape.clone(), vec![self.count as i64], &c.name)?));
        }
        if let Some(c) = &io.point_counts {
            let mut n = vec![0i64; self.max_pillars];
            for (d, &k) in n.iter_mut().zip(&self.point_counts) {
                *d = i64::from(k);
            }
            inputs.push((c.name.clone(), int_tensor(c.dtype, c.shape.clone(), n, &c.name)?));
        }
        Ok(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x [0, 4), y [-4, 4), z [-3, 1); 1 m pillars: 4 x 8 cells; centre z = -1.
    fn cfg(max_pillars: usize) -> PointPillarsConfig {
        serde_json::from_value(serde_json::json!({
            "point_cloud_range": [0.0, -4.0, -3.0, 4.0, 4.0, 1.0], "voxel_size": [1.0, 1.0, 4.0],
            "grid_size": [4, 8, 1], "max_points_per_pillar": 32, "max_pillars": max_pillars,
            "class_names": ["Car"], "anchors": [],
        }))
        .unwrap()
    }

    fn feats(p: &Pillars, pillar: usize, point: usize) -> &[f32] {
        let i = (pillar * p.max_points + point) * p.num_features;
        &p.voxels[i..i + p.num_features]
    }

    #[test]
    fn pillar_order_and_exact_features() {
        // Cells: (ix 2, iy 4), (ix 0, iy 0), (ix 2, iy 4) again, (ix 3, iy 7).
        let pts = [[2.25, 0.25, -1.5, 0.1], [0.5, -3.5, -2.0, 0.2], [2.75, 0.75, -0.5, 0.3], [3.5, 3.5, 0.5, 0.4]];
        let p = voxelize(&pts, &cfg(10), None).unwrap();
        assert_eq!(p.count, 3);
        assert_eq!(p.coords, vec![[0, 0, 4, 2], [0, 0, 0, 0], [0, 0, 7, 3]]);
        assert_eq!(p.points_in_range, 4);
        assert_eq!(p.voxels.len(), 10 * 32 * 10);
        // Pillar 0: mean (2.5, 0.5, -1.0), centre (2.5, 0.5, -1.0).
        assert_eq!(feats(&p, 0, 0), &[2.25, 0.25, -1.5, 0.1, -0.25, -0.25, -0.5, -0.25, -0.25, -0.5]);
        assert_eq!(feats(&p, 0, 1), &[2.75, 0.75, -0.5, 0.3, 0.25, 0.25, 0.5, 0.25, 0.25, 0.5]);
        assert!(feats(&p, 0, 2).iter().all(|&v| v == 0.0));
        // Pillar 1: one point at the centre in x/y: mean offsets 0, centre (0.5, -3.5, -1).
        assert_eq!(feats(&p, 1, 0), &[0.5, -3.5, -2.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]);
        assert_eq!(feats(&p, 2, 0), &[3.5, 3.5, 0.5, 0.4, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5]);
        // Padded pillars are zero.
        assert!(p.voxels[3 * 32 * 10..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn full_pillar_keeps_first_32_points() {
        let pts: Vec<[f32; 4]> = (0..33).map(|i| [1.0 + i as f32 / 64.0, 0.5, -1.0, i as f32]).collect();
        let p = voxelize(&pts, &cfg(10), None).unwrap();
        assert_eq!((p.count, p.points_in_range, p.points_dropped_full), (1, 33, 1));
        for k in 0..32 {
            assert_eq!(feats(&p, 0, k)[3], k as f32);
        }
        // Mean over the 32 kept points: x = 1 + 15.5 / 64.
        let mean_x = 1.0 + 15.5 / 64.0;
        assert_eq!(feats(&p, 0, 0)[4], 1.0 - mean_x);
        assert_eq!(feats(&p, 0, 31)[4], (1.0 + 31.0 / 64.0) - mean_x);
    }

    #[test]
    fn out_of_range_and_non_finite_points_are_dropped() {
        let pts = [
            [0.0, -4.0, -3.0, 0.5], // lower bounds: inside
            [4.0, 0.0, 0.0, 0.5],   // x = x1: outside
            [1.0, 4.0, 0.0, 0.5],   // y = y1: outside
            [1.0, 0.0, 1.0, 0.5],   // z = z1: outside
            [-0.01, 0.0, 0.0, 0.5],
            [1.0, 0.0, -3.5, 0.5],
            [f32::NAN, 0.0, 0.0, 0.5],
            [1.0, f32::INFINITY, 0.0, 0.5],
            [1.0, 0.0, 0.0, f32::NAN],
            [3.999_999_8, 3.9, 0.999_999_9, 0.5], // just inside the upper bounds
            // In range, but (y - y0) / vy rounds up to ny in f32: out of the grid, dropped (as
            // the spconv / CUDA-PointPillars grid check does).
            [1.0, 3.999_999_8, 0.0, 0.5],
        ];
        let p = voxelize(&pts, &cfg(10), None).unwrap();
        assert_eq!(p.points_in_range, 2);
        assert_eq!(p.coords, vec![[0, 0, 0, 0], [0, 0, 7, 3]]);
    }

    #[test]
    fn max_pillars_is_respected() {
        let pts = [
            [0.5, 0.5, 0.0, 0.0],
            [1.5, 0.5, 0.0, 0.0],
            [2.5, 0.5, 0.0, 0.0],
            [2.6, 0.6, 0.0, 0.0],
            [3.5, 0.5, 0.0, 0.0],
        ];
        let p = voxelize(&pts, &cfg(2), None).unwrap();
        assert_eq!(p.count, 2);
        assert_eq!(p.coords, vec![[0, 0, 4, 0], [0, 0, 4, 1]]);
        assert_eq!((p.pillars_dropped, p.points_dropped_pillars, p.points_in_range), (2, 3, 5));
        assert_eq!(p.voxels.len(), 2 * 32 * 10);
    }

    #[test]
    fn camera_field_of_view_filter() {
        let mut c = cfg(10);
        c.point_cloud_range = [0.0, -40.0, -3.0, 40.0, 40.0, 1.0];
        c.voxel_size = [1.0, 1.0, 4.0];
        c.grid_size = [40, 80, 1];
        let calib = Calib::typical();
        // Ahead (in view), far to the left and to the right (out of the image), just ahead of the
        // lidar but behind the camera plane (the camera is ~0.27 m ahead of the lidar).
        let pts = [[10.0, 0.0, -1.0, 0.5], [5.0, 30.0, -1.0, 0.5], [5.0, -30.0, -1.0, 0.5], [0.1, 0.0, -1.0, 0.5]];
        let p = voxelize(&pts, &c, Some(&calib)).unwrap();
        assert_eq!(p.points_in_range, 1);
        assert_eq!(p.coords, vec![[0, 0, 40, 10]]);
        assert_eq!(voxelize(&pts, &c, None).unwrap().points_in_range, 4);
    }

    fn io(idt: DType, ndt: DType, p: usize) -> ModelIo {
        use crate::pointpillars::interface::{HeadPort, Port};
        let port = |n: &str, dtype, shape: Vec<usize>| Port { name: n.into(), dtype, shape };
        let head = |n: &str| HeadPort { name: n.into(), nchw: false, channels: 0 };
        ModelIo {
            voxels: port("voxels", DType::F32, vec![p, 32, 10]),
            coords: port("voxel_idxs", idt, vec![p, 4]),
            count: Some(port("voxel_num", ndt, vec![1])),
            point_counts: None,
            cls: head("cls_preds"),
            boxes: head("box_preds"),
            dir: head("dir_cls_preds"),
            max_pillars: p,
            max_points: 32,
            num_features: 10,
        }
    }

    #[test]
    fn inputs_in_the_declared_int_types() {
        let pts = [[2.5, 0.5, 0.0, 0.0], [0.5, -3.5, 0.0, 0.0]];
        let p = voxelize(&pts, &cfg(4), None).unwrap();
        let ins = p.to_inputs(&io(DType::I32, DType::I32, 4)).unwrap();
        assert_eq!(ins.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["voxels", "voxel_idxs", "voxel_num"]);
        assert_eq!(ins[0].1.shape, [4, 32, 10]);
        assert_eq!(ins[1].1.data, Data::I32(vec![0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(ins[2].1.data, Data::I32(vec![2]));
        let ins = p.to_inputs(&io(DType::I64, DType::I64, 4)).unwrap();
        assert_eq!(ins[1].1.data, Data::I64(vec![0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(ins[1].1.shape, [4, 4]);
        assert_eq!(ins[2].1.data, Data::I64(vec![2]));
        // Mixed, wrong P, wrong type.
        let ins = p.to_inputs(&io(DType::I64, DType::I32, 4)).unwrap();
        assert_eq!((ins[1].1.dtype(), ins[2].1.dtype()), (DType::I64, DType::I32));
        let e = p.to_inputs(&io(DType::I32, DType::I32, 5)).unwrap_err().to_string();
        assert!(e.contains("voxels") && e.contains("[5, 32, 10]"), "{e}");
        let e = p.to_inputs(&io(DType::F32, DType::I32, 4)).unwrap_err().to_string();
        assert!(e.contains("voxel_idxs") && e.contains("int32 or int64"), "{e}");
    }

    #[test]
    fn bundled_small_model_inputs() {
        let model = crate::model::Model::load(&crate::cli::bundled_model("pointpillars_small.onnx")).unwrap();
        let r = crate::pointpillars::config::resolve(&model.graph, &model.file.path, None, None).unwrap();
        let c = r.cfg;
        let p = voxelize(&[[10.0, 1.0, -1.0, 0.3]], &c, None).unwrap();
        let ins = p.to_inputs(&r.io).unwrap();
        assert_eq!(ins[0].1.shape, [c.max_pillars, 32, 10]);
        assert_eq!(ins[1].1.dtype(), DType::I32);
        // x 10 / 0.32 -> 31, y (1 + 39.68) / 0.32 -> 127.
        let Data::I32(idx) = &ins[1].1.data else { panic!("int32 expected") };
        assert_eq!(&idx[..4], &[0, 0, 127, 31]);
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let mut c = cfg(4);
        c.voxel_size[0] = 0.0;
        assert!(voxelize(&[], &c, None).unwrap_err().to_string().contains("voxel_size"));
        let mut c = cfg(4);
        c.grid_size = [4, 8, 2];
        assert!(voxelize(&[], &c, None).unwrap_err().to_string().contains("grid_size"));
    }

    #[test]
    fn feature_list_drives_the_features() {
        // One pillar (ix 2, iy 4: centre (2.5, 0.5, -1)) with two points; mean (2.5, 0.5, -1.0).
        let pts = [[2.25, 0.25, -1.5, 0.1], [2.75, 0.75, -0.5, 0.3]];
        let full = voxelize(&pts, &cfg(4), None).unwrap();
        // mmdetection3d's nine (no zp), a reordered list, and OpenPCDet's WITH_DISTANCE eleven.
        let mut c = cfg(4);
        c.point_features = ["x", "y", "z", "intensity", "xc", "yc", "zc", "xp", "yp"].map(String::from).to_vec();
        let nine = voxelize(&pts, &c, None).unwrap();
        assert_eq!(nine.num_features, 9);
        assert_eq!(feats(&nine, 0, 1), &feats(&full, 0, 1)[..9]);
        c.point_features = ["zp", "intensity", "x"].map(String::from).to_vec();
        let re = voxelize(&pts, &c, None).unwrap();
        assert_eq!(feats(&re, 0, 0), &[-0.5, 0.1, 2.25]);
        assert_eq!(feats(&re, 0, 1), &[0.5, 0.3, 2.75]);
        c.point_features = POINT_FEATURES_10.iter().chain(&["distance"]).map(|s| s.to_string()).collect();
        let eleven = voxelize(&pts, &c, None).unwrap();
        assert_eq!(&feats(&eleven, 0, 0)[..10], feats(&full, 0, 0));
        assert_eq!(feats(&eleven, 0, 0)[10], (2.25f32 * 2.25 + 0.25 * 0.25 + 1.5 * 1.5).sqrt());
        // Padding stays zero whatever the list.
        assert!(eleven.voxels[2 * 11..].iter().all(|&v| v == 0.0));
        c.point_features = vec!["x".into(), "speed".into()];
        let e = voxelize(&pts, &c, None).unwrap_err().to_string();
        assert!(e.contains("speed") && e.contains("distance"), "{e}");
    }

    #[test]
    fn fov_points_only_false_keeps_points_outside_the_image() {
        let mut c = cfg(10);
        c.point_cloud_range = [0.0, -40.0, -3.0, 40.0, 40.0, 1.0];
        c.grid_size = [40, 80, 1];
        let pts = [[10.0, 0.0, -1.0, 0.5], [5.0, 30.0, -1.0, 0.5]];
        assert_eq!(voxelize(&pts, &c, Some(&Calib::typical())).unwrap().points_in_range, 1);
        c.fov_points_only = false;
        assert_eq!(voxelize(&pts, &c, Some(&Calib::typical())).unwrap().points_in_range, 2);
    }

    #[test]
    fn float16_and_batched_inputs() {
        let pts = [[2.3, 0.5, 0.0, 0.1]];
        let p = voxelize(&pts, &cfg(4), None).unwrap();
        let mut io = io(DType::I64, DType::I32, 4);
        io.voxels.dtype = DType::F16;
        io.voxels.shape = vec![1, 4, 32, 10];
        io.coords.shape = vec![1, 4, 4];
        let ins = p.to_inputs(&io).unwrap();
        assert_eq!(ins[0].1.shape, [1, 4, 32, 10]);
        assert_eq!(ins[1].1.shape, [1, 4, 4]);
        // 2.3 is not an f16 value: the nearest is 2.30078125.
        assert_eq!(ins[0].1.as_f32().unwrap()[0], 2.300_781_3);
        io.point_counts =
            Some(crate::pointpillars::interface::Port { name: "num_points".into(), dtype: DType::I32, shape: vec![4] });
        let ins = p.to_inputs(&io).unwrap();
        assert_eq!(ins[3].1.data, Data::I32(vec![1, 0, 0, 0]));
    }
}
