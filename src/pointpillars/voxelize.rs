//! Pre-processing: a point cloud (x, y, z, intensity in the lidar frame) to the model's pillar
//! inputs, as OpenPCDet / CUDA-PointPillars do it.
//!
//! - Points outside the range (`x in [x0, x1)`, same for y and z) or not finite are dropped;
//!   with a calibration, so are points outside the camera's field of view (OpenPCDet's
//!   `FOV_POINTS_ONLY`: rectified z > 0 and the P2 projection inside the 1242 x 375 image).
//!   A point in range whose cell index rounds up to the grid size in f32 (within ~1e-7 of an
//!   upper bound) is dropped too, as the spconv / CUDA-PointPillars grid check does.
//! - Pillars are numbered in order of first occurrence in the point order; a pillar keeps its
//!   first `max_points_per_pillar` points in file order; pillars beyond `max_pillars` are dropped.
//! - 10 features per point: x, y, z, intensity, offsets from the mean of the pillar's kept points,
//!   offsets from the pillar centre (`x0 + (ix + 0.5) vx`, `y0 + (iy + 0.5) vy`, `z0 + vz / 2`).
//!   Padded point slots and padded pillars are all zero.
//!
//! One pass over the points with a dense grid of pillar ids, then one pass over the pillars.

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::kitti::Calib;
use crate::pointpillars::PointPillarsConfig;
use crate::tensor::{DType, Data, Tensor};

/// KITTI's image size (width, height) used for the field-of-view filter and the 2D boxes.
pub const KITTI_IMAGE_SIZE: [f32; 2] = crate::kitti::IMAGE_SIZE;

/// Number of features per point the pre-processing produces.
pub const NUM_FEATURES: usize = 10;

/// The pillars of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Pillars {
    /// `[max_pillars, max_points_per_pillar, 10]`, row-major; rows `>= count` are zero.
    pub voxels: Vec<f32>,
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
    if nx * ny >= u32::MAX as usize - 2 {
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
    if cfg.num_point_features != NUM_FEATURES {
        return bad(format!(
            "num_point_features is {}, the pre-processing makes {NUM_FEATURES}",
            cfg.num_point_features
        ));
    }
    Ok((nx, ny))
}

const EMPTY: u32 = u32::MAX;
const DROPPED: u32 = u32::MAX - 1;

/// Turns points `(x, y, z, intensity)` in the lidar frame into pillars (see the module docs).
/// With `calib`, only points in the camera's field of view are kept.
pub fn voxelize(points: &[[f32; 4]], cfg: &PointPillarsConfig, calib: Option<&Calib>) -> Result<Pillars> {
    let (nx, ny) = check_config(cfg)?;
    let (m, f, pmax) = (cfg.max_points_per_pillar, NUM_FEATURES, cfg.max_pillars);
    let r = cfg.point_cloud_range;
    let vs = cfg.voxel_size;
    let fov = calib.map(|c| Fov::new(c, c.image_size));

    let mut grid = vec![EMPTY; nx * ny];
    let mut voxels = vec![0f32; pmax * m * f];
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
        voxels[(id * m + k) * f..(id * m + k) * f + 4].copy_from_slice(&p);
    }

    let cz = r[2] + 0.5 * vs[2];
    for (id, c) in coords.iter().enumerate() {
        let n = npts[id] as usize;
        let mean = sums[id].map(|s| (s / n as f64) as f32);
        let cx = r[0] + (c[3] as f32 + 0.5) * vs[0];
        let cy = r[1] + (c[2] as f32 + 0.5) * vs[1];
        for k in 0..n {
            let row = &mut voxels[(id * m + k) * f..(id * m + k + 1) * f];
            let (x, y, z) = (row[0], row[1], row[2]);
            row[4..10].copy_from_slice(&[x - mean[0], y - mean[1], z - mean[2], x - cx, y - cy, z - cz]);
        }
    }

    Ok(Pillars {
        voxels,
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
    /// The model inputs `voxels` f32 `[P, M, 10]`, `voxel_idxs` `[P, 4]` and `voxel_num` `[1]`, the
    /// integer inputs in the element type the model declares (int32 or int64). Padding rows of
    /// `voxel_idxs` are zero. The model's P and M must be the configuration's.
    pub fn to_inputs(&self, graph: &Graph) -> Result<Vec<(String, Tensor)>> {
        let input = |name: &str| {
            let v = graph.inputs.iter().find(|v| v.name == name).ok_or_else(|| {
                let names: Vec<&str> = graph.inputs.iter().map(|v| v.name.as_str()).collect();
                Error::Input {
                    name: name.into(),
                    msg: format!("the model has no such input; its inputs are {names:?}"),
                }
            })?;
            let dims = v
                .shape
                .as_ref()
                .and_then(crate::graph::static_dims)
                .ok_or_else(|| Error::Input { name: name.into(), msg: "pillar inputs need a static shape".into() })?;
            Ok::<_, Error>((v.dtype, dims))
        };
        let (vdt, vdims) = input("voxels")?;
        let want = vec![self.max_pillars, self.max_points, NUM_FEATURES];
        if vdt != DType::F32 {
            return Err(Error::Input { name: "voxels".into(), msg: format!("expected float32, the model has {vdt}") });
        }
        if vdims != want {
            return Err(Error::Input {
                name: "voxels".into(),
                msg: format!("the model takes {vdims:?}, the pillars are {want:?} (max_pillars, points, features)"),
            });
        }
        let (idt, idims) = input("voxel_idxs")?;
        if idims != [self.max_pillars, 4] {
            return Err(Error::Input {
                name: "voxel_idxs".into(),
                msg: format!("the model takes {idims:?}, expected [{}, 4]", self.max_pillars),
            });
        }
        let (ndt, ndims) = input("voxel_num")?;
        if ndims.iter().product::<usize>() != 1 {
            return Err(Error::Input { name: "voxel_num".into(), msg: format!("expected one element, got {ndims:?}") });
        }
        let mut idxs = vec![0i64; self.max_pillars * 4];
        for (row, c) in idxs.chunks_exact_mut(4).zip(&self.coords) {
            for (d, v) in row.iter_mut().zip(c) {
                *d = i64::from(*v);
            }
        }
        Ok(vec![
            ("voxels".into(), Tensor::f32(want, self.voxels.clone())),
            ("voxel_idxs".into(), int_tensor(idt, idims, idxs, "voxel_idxs")?),
            ("voxel_num".into(), int_tensor(ndt, ndims, vec![self.count as i64], "voxel_num")?),
        ])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::graph::{fixed, ValueInfo};

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
        let i = (pillar * p.max_points + point) * NUM_FEATURES;
        &p.voxels[i..i + NUM_FEATURES]
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

    fn graph(idt: DType, ndt: DType, p: usize) -> Graph {
        let vi = |n: &str, dtype, s: &[usize]| ValueInfo { name: n.into(), dtype, shape: Some(fixed(s)) };
        Graph {
            name: "t".into(),
            nodes: vec![],
            inputs: vec![
                vi("voxels", DType::F32, &[p, 32, 10]),
                vi("voxel_idxs", idt, &[p, 4]),
                vi("voxel_num", ndt, &[1]),
            ],
            outputs: vec![],
            initializers: HashMap::new(),
            values: HashMap::new(),
            metadata: BTreeMap::new(),
            opset: 17,
        }
    }

    #[test]
    fn inputs_in_the_declared_int_types() {
        let pts = [[2.5, 0.5, 0.0, 0.0], [0.5, -3.5, 0.0, 0.0]];
        let p = voxelize(&pts, &cfg(4), None).unwrap();
        let ins = p.to_inputs(&graph(DType::I32, DType::I32, 4)).unwrap();
        assert_eq!(ins.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(), ["voxels", "voxel_idxs", "voxel_num"]);
        assert_eq!(ins[0].1.shape, [4, 32, 10]);
        assert_eq!(ins[1].1.data, Data::I32(vec![0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(ins[2].1.data, Data::I32(vec![2]));
        let ins = p.to_inputs(&graph(DType::I64, DType::I64, 4)).unwrap();
        assert_eq!(ins[1].1.data, Data::I64(vec![0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(ins[1].1.shape, [4, 4]);
        assert_eq!(ins[2].1.data, Data::I64(vec![2]));
        // Mixed, wrong P, wrong type.
        let ins = p.to_inputs(&graph(DType::I64, DType::I32, 4)).unwrap();
        assert_eq!((ins[1].1.dtype(), ins[2].1.dtype()), (DType::I64, DType::I32));
        let e = p.to_inputs(&graph(DType::I32, DType::I32, 5)).unwrap_err().to_string();
        assert!(e.contains("voxels") && e.contains("[5, 32, 10]"), "{e}");
        let e = p.to_inputs(&graph(DType::F32, DType::I32, 4)).unwrap_err().to_string();
        assert!(e.contains("voxel_idxs") && e.contains("int32 or int64"), "{e}");
    }

    #[test]
    fn bundled_small_model_inputs() {
        let model = crate::model::Model::load(&crate::cli::bundled_model("pointpillars_small.onnx")).unwrap();
        let c = PointPillarsConfig::from_graph(&model.graph).unwrap().unwrap();
        let p = voxelize(&[[10.0, 1.0, -1.0, 0.3]], &c, None).unwrap();
        let ins = p.to_inputs(&model.graph).unwrap();
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
}
