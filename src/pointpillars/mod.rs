//! PointPillars model facts: the configuration written in our models' ONNX metadata, layout
//! detection (standard ops or NVIDIA CUDA-PointPillars' custom scatter), synthetic inputs,
//! pre-processing (`voxelize`: points -> pillar inputs) and post-processing (`postprocess`:
//! output maps -> boxes -> KITTI results).

pub mod config;
pub mod detect;
pub mod interface;
pub mod openpcdet;
pub mod postprocess;
pub mod voxelize;

pub use postprocess::{decode_detections, to_kitti_object, Detection};
pub use voxelize::{voxelize, Pillars};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::tensor::{Data, Tensor};

/// The metadata key holding the JSON configuration in pillarq's own models.
pub const METADATA_KEY: &str = "pointpillars";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AnchorSpec {
    pub class: String,
    pub size: [f32; 3],
    pub bottom_z: f32,
    pub rotations: Vec<f32>,
    /// OpenPCDet's `align_center`: anchor centres at cell centres instead of spanning the range.
    #[serde(default)]
    pub align_center: bool,
}

/// Pre/post-processing parameters (OpenPCDet / CUDA-PointPillars conventions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PointPillarsConfig {
    #[serde(default)]
    pub config: String,
    pub point_cloud_range: [f32; 6],
    pub voxel_size: [f32; 3],
    /// Cells along x, y, z; `[0, 0, 0]` (absent): derived from the range and the voxel size.
    #[serde(default)]
    pub grid_size: [usize; 3],
    /// 0 (absent): the model's `voxels` shape decides; where both give one, the model wins.
    #[serde(default)]
    pub max_points_per_pillar: usize,
    #[serde(default)]
    pub max_pillars: usize,
    #[serde(default = "default_features")]
    pub num_point_features: usize,
    pub class_names: Vec<String>,
    pub anchors: Vec<AnchorSpec>,
    #[serde(default)]
    pub dir_offset: f32,
    #[serde(default)]
    pub dir_limit_offset: f32,
    #[serde(default = "default_score")]
    pub score_threshold: f32,
    #[serde(default)]
    pub nms_iou: f32,
    #[serde(default)]
    pub nms_pre_max: usize,
    #[serde(default)]
    pub nms_post_max: usize,
    #[serde(default)]
    pub feature_map_stride: usize,
    #[serde(default)]
    pub layout: String,
    /// The features of each point in the `voxels` input, in order (see `voxelize::PointFeature`).
    #[serde(default = "default_point_features")]
    pub point_features: Vec<String>,
    /// Keep only points in the camera's field of view (OpenPCDet's `FOV_POINTS_ONLY`).
    #[serde(default = "default_true")]
    pub fov_points_only: bool,
    #[serde(default = "default_dir_bins")]
    pub num_dir_bins: usize,
}

fn default_features() -> usize {
    10
}
fn default_point_features() -> Vec<String> {
    voxelize::POINT_FEATURES_10.iter().map(|s| s.to_string()).collect()
}
fn default_true() -> bool {
    true
}
fn default_dir_bins() -> usize {
    2
}
fn default_score() -> f32 {
    0.1
}

impl PointPillarsConfig {
    /// Reads the configuration from the model metadata, if present.
    pub fn from_graph(graph: &Graph) -> Result<Option<PointPillarsConfig>> {
        match graph.metadata.get(METADATA_KEY) {
            None => Ok(None),
            Some(s) => serde_json::from_str(s).map(Some).map_err(|e| {
                Error::Other(format!("metadata '{METADATA_KEY}' is not a valid PointPillars configuration: {e}"))
            }),
        }
    }
}

/// How the pillar features reach the BEV canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Standard ONNX ops only (ScatterND / ScatterElements): runs in onnxruntime and TensorRT.
    Standard,
    /// NVIDIA CUDA-PointPillars: custom `PPScatterPlugin` / `PillarScatterPlugin` op.
    Cudapp,
}

pub fn detect_layout(graph: &Graph) -> Layout {
    if graph
        .nodes
        .iter()
        .any(|n| matches!(n.op_type.as_str(), "PPScatterPlugin" | "PillarScatterPlugin" | "ScatterBEV"))
    {
        Layout::Cudapp
    } else {
        Layout::Standard
    }
}

/// A small deterministic generator (SplitMix64), so inputs are reproducible from a seed.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Plausible random pillar inputs for a PointPillars model with inputs `voxels` [P, 32, 10],
/// `voxel_idxs` [P, 4] (batch, z, y, x) and `voxel_num` [1]: `valid` pillars at distinct cells,
/// each with 1..=32 points whose 10 features are computed as the pre-processing would; padding
/// rows hold garbage (large values, out-of-grid coordinates) that a correct model must ignore.
pub fn random_pillar_inputs(
    graph: &Graph,
    cfg: Option<&PointPillarsConfig>,
    seed: u64,
    valid_fraction: f32,
) -> Result<Vec<(String, Tensor)>> {
    let need = |name: &str| {
        graph
            .inputs
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.shape.as_ref().and_then(crate::graph::static_dims).map(|s| (v.dtype, s)))
            .ok_or_else(|| Error::Input {
                name: name.into(),
                msg: "random pillar inputs need a statically shaped input of this name".into(),
            })
    };
    let (_, vs) = need("voxels")?;
    let (idt, _) = need("voxel_idxs")?;
    let (ndt, _) = need("voxel_num")?;
    let [p, m, f] = vs[..] else {
        return Err(Error::Input { name: "voxels".into(), msg: format!("expected [P, points, features], got {vs:?}") });
    };
    let (nx, ny, range, vsz) = match cfg {
        Some(c) => (c.grid_size[0], c.grid_size[1], c.point_cloud_range, c.voxel_size),
        None => {
            let dense =
                graph.nodes.iter().find_map(|n| n.attr().ints_opt("dense_shape").ok().flatten()).ok_or_else(|| {
                    Error::Other(
                        "the model has no PointPillars metadata and no dense_shape: cannot size the grid".into(),
                    )
                })?;
            let (ny, nx) = (dense[0] as usize, dense[1] as usize);
            (nx, ny, [0.0, -39.68, -3.0, 69.12, 39.68, 1.0], [69.12 / nx as f32, 79.36 / ny as f32, 4.0])
        }
    };
    let mut rng = SplitMix64::new(seed);
    let grid = nx.checked_mul(ny).ok_or_else(|| Error::Other(format!("grid {nx} x {ny} has too many cells")))?;
    let k = ((p as f32 * valid_fraction) as usize).min(p).min(grid);
    // Distinct cells: partial Fisher-Yates over the grid, with only the swapped positions stored
    // (the grid size comes from the model's metadata).
    let mut swapped: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let mut cells: Vec<usize> = Vec::with_capacity(k);
    for i in 0..k {
        let j = i + rng.below(grid - i);
        let (at_i, at_j) = (*swapped.get(&i).unwrap_or(&i), *swapped.get(&j).unwrap_or(&j));
        swapped.insert(j, at_i);
        cells.push(at_j);
    }
    let n = crate::memory::alloc_elements(&[p, m, f], 4).map_err(|msg| Error::Input { name: "voxels".into(), msg })?;
    let mut voxels = vec![0f32; n];
    let mut idxs = vec![0i64; p * 4];
    for i in 0..p {
        if i >= k {
            // Padding rows: garbage the model must ignore.
            for v in &mut voxels[i * m * f..(i + 1) * m * f] {
                *v = (rng.unit() - 0.5) * 2000.0;
            }
            idxs[i * 4..i * 4 + 4].copy_from_slice(&[0, 0, rng.below(ny + 50) as i64, rng.below(nx + 50) as i64]);
            continue;
        }
        let (y, x) = (cells[i] / nx, cells[i] % nx);
        idxs[i * 4..i * 4 + 4].copy_from_slice(&[0, 0, y as i64, x as i64]);
        let npts = 1 + rng.below(m);
        let cx = range[0] + (x as f32 + 0.5) * vsz[0];
        let cy = range[1] + (y as f32 + 0.5) * vsz[1];
        let cz = range[2] + 0.5 * vsz[2];
        let mut pts = Vec::with_capacity(npts);
        for _ in 0..npts {
            pts.push([
                cx + (rng.unit() - 0.5) * vsz[0],
                cy + (rng.unit() - 0.5) * vsz[1],
                range[2] + rng.unit() * vsz[2],
                rng.unit(),
            ]);
        }
        let mean: [f32; 3] = std::array::from_fn(|d| pts.iter().map(|q| q[d]).sum::<f32>() / npts as f32);
        for (j, q) in pts.iter().enumerate() {
            let row = &mut voxels[(i * m + j) * f..(i * m + j + 1) * f];
            let feats = [
                q[0],
                q[1],
                q[2],
                q[3],
                q[0] - mean[0],
                q[1] - mean[1],
                q[2] - mean[2],
                q[0] - cx,
                q[1] - cy,
                q[2] - cz,
            ];
            for (d, v) in row.iter_mut().enumerate() {
                *v = *feats.get(d).unwrap_or(&0.0);
            }
        }
    }
    let int_tensor = |dt: crate::tensor::DType, shape: Vec<usize>, v: Vec<i64>| -> Tensor {
        match dt {
            crate::tensor::DType::I32 => Tensor { shape, data: Data::I32(v.iter().map(|&x| x as i32).collect()) },
            _ => Tensor::i64(shape, v),
        }
    };
    Ok(vec![
        ("voxels".into(), Tensor::f32(vec![p, m, f], voxels)),
        ("voxel_idxs".into(), int_tensor(idt, vec![p, 4], idxs)),
        ("voxel_num".into(), int_tensor(ndt, vec![1], vec![k as i64])),
    ])
}
