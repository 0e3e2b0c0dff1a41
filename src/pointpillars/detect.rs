//! The detector: points -> pillars -> network (CPU executor) -> decoded, NMS-ed boxes -> KITTI
//! result objects. One `Detector` per model; frames are independent.

use std::path::Path;

use super::config::{resolve, ResolvedModel};
use super::interface::ModelIo;
use super::postprocess::{decode_heads, to_kitti_objects, Detection};
use super::voxelize::voxelize;
use super::PointPillarsConfig;
use crate::error::{Error, Result};
use crate::exec::cpu::{CompiledPlan, CpuExecutor};
use crate::exec::NamedTensors;
use crate::kitti::{Calib, KittiDir, Object};
use crate::model::Model;

pub struct Detector {
    pub cfg: PointPillarsConfig,
    pub io: ModelIo,
    /// Image size for every frame (`--image-size`) instead of each frame's `image_2` PNG.
    pub image_size: Option<[f32; 2]>,
    exec: CpuExecutor,
    plan: Option<CompiledPlan>,
}

/// One frame's detections in both frames of reference.
pub struct FrameDetections {
    pub id: String,
    /// Lidar-frame boxes at full precision (after NMS).
    pub lidar: Vec<Detection>,
    /// KITTI camera-frame result objects (boxes outside the image are dropped).
    pub objects: Vec<Object>,
}

impl Detector {
    /// Builds the detector from a model whose metadata holds its PointPillars configuration.
    pub fn new(model: &Model, threads: usize) -> Result<Detector> {
        Detector::with_config(model, resolve(&model.graph, &model.file.path, None, None)?, threads)
    }

    /// Builds the detector from a resolved configuration (see [`super::config::resolve`]).
    pub fn with_config(model: &Model, resolved: ResolvedModel, threads: usize) -> Result<Detector> {
        let ResolvedModel { cfg, io } = resolved;
        Ok(Detector { cfg, io, image_size: None, exec: CpuExecutor::new(&model.graph, threads)?, plan: None })
    }

    pub fn executor(&self) -> &CpuExecutor {
        &self.exec
    }

    /// Runs every frame under this plan (FP32 when none is set).
    pub fn with_plan(mut self, plan: Option<CompiledPlan>) -> Detector {
        self.plan = plan;
        self
    }

    /// Detects objects in one point cloud (lidar frame); with `calib`, only points in the
    /// camera's field of view are used, as for KITTI.
    pub fn detect(&self, points: &[[f32; 4]], calib: Option<&Calib>) -> Result<Vec<Detection>> {
        let outputs = self.network(&self.inputs(points, calib)?)?;
        self.decode(&outputs)
    }

    /// Loads frame `id` of a KITTI directory and detects.
    pub fn detect_frame(&self, data: &KittiDir, id: &str) -> Result<FrameDetections> {
        let (inputs, calib) = self.frame_inputs(data, id)?;
        self.decode_frame(id, &self.network(&inputs)?, &calib)
    }

    /// The network inputs of frame `id` (FOV-filtered and voxelized) and its calibration.
    pub fn frame_inputs(&self, data: &KittiDir, id: &str) -> Result<(NamedTensors, Calib)> {
        let (points, calib) = load_points_and_calib(data, id, self.image_size)?;
        Ok((self.inputs(&points, Some(&calib))?, calib))
    }

    /// The network inputs of a scene without points (every pillar empty): what calibration's
    /// sparse recipes compare each frame with.
    pub fn empty_scene_inputs(&self) -> Result<NamedTensors> {
        self.inputs(&[], None)
    }

    fn inputs(&self, points: &[[f32; 4]], calib: Option<&Calib>) -> Result<NamedTensors> {
        voxelize(points, &self.cfg, calib)?.to_inputs(&self.io)
    }

    /// Runs the network under the detector's plan (FP32 when none is set).
    fn network(&self, inputs: &NamedTensors) -> Result<NamedTensors> {
        match &self.plan {
            Some(p) => self.exec.run_plan(inputs, p),
            None => self.exec.run(inputs),
        }
    }

    /// Decodes network outputs of frame `id` into detections in both frames of reference.
    pub fn decode_frame(&self, id: &str, outputs: &NamedTensors, calib: &Calib) -> Result<FrameDetections> {
        let lidar = self.decode(outputs)?;
        Ok(self.frame_detections(id, lidar, calib))
    }

    /// Head maps to lidar-frame detections.
    pub fn decode(&self, outputs: &NamedTensors) -> Result<Vec<Detection>> {
        decode_heads(outputs, &self.cfg, [&self.io.cls, &self.io.boxes, &self.io.dir])
    }

    /// The head maps of one run, anchor by anchor (`postprocess::anchor_maps`).
    pub fn anchor_maps<'t>(&self, outputs: &'t NamedTensors) -> Result<[std::borrow::Cow<'t, [f32]>; 3]> {
        super::postprocess::anchor_maps(outputs, &self.cfg, [&self.io.cls, &self.io.boxes, &self.io.dir])
    }

    /// The reference of one frame for task-guided quantization (`quant::refine`): its FP32 head
    /// maps.
    pub fn head_reference(&self, fp32: &NamedTensors) -> Result<HeadReference> {
        let [cls, boxes, _] = self.anchor_maps(fp32)?;
        let t = self.cfg.score_threshold as f64;
        let logit_threshold = if t <= 0.0 {
            f32::NEG_INFINITY
        } else if t >= 1.0 {
            f32::INFINITY
        } else {
            (t / (1.0 - t)).ln() as f32
        };
        Ok(HeadReference {
            cls: cls.into_owned(),
            boxes: boxes.into_owned(),
            classes: self.cfg.class_names.len().max(1),
            logit_threshold,
        })
    }

    fn frame_detections(&self, id: &str, lidar: Vec<Detection>, calib: &Calib) -> FrameDetections {
        let objects = to_kitti_objects(&lidar, calib, &self.cfg.class_names);
        FrameDetections { id: id.to_string(), lidar, objects }
    }
}

fn load_points_and_calib(data: &KittiDir, id: &str, image_size: Option<[f32; 2]>) -> Result<(Vec<[f32; 4]>, Calib)> {
    let path = data.velodyne_path(id);
    let (points, dropped) = crate::kitti::velodyne::read_points_lossy(&path)?;
    if dropped > 0 {
        tracing::warn!("{}: dropped {dropped} non-finite points", path.display());
    }
    let calib = data.frame_calib(id, image_size)?;
    Ok((points, calib))
}

/// Writes `<dir>/<id>.txt` (KITTI results, 16 fields) and `<dir>/<id>.json` (full-precision
/// lidar boxes: `[{"class", "score", "box": [x, y, z, dx, dy, dz, yaw]}]`), each atomically.
pub fn write_frame_detections(dir: &Path, f: &FrameDetections) -> Result<()> {
    crate::kitti::label::write_labels(dir.join(format!("{}.txt", f.id)), &f.objects)?;
    let json: Vec<serde_json::Value> =
        f.lidar.iter().map(|d| serde_json::json!({"class": d.class, "score": d.score, "box": d.lidar_box})).collect();
    let bytes = serde_json::to_vec(&json).map_err(|e| Error::Other(e.to_string()))?;
    crate::files::write_atomic(&dir.join(format!("{}.json", f.id)), &bytes)
}

/// The record a results folder keeps of the run that wrote it, so that stale frames of an
/// earlier run are never scored together with new ones (`eval --preds` reads it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResultsManifest {
    pub model: String,
    pub model_sha256: String,
    pub data: String,
    pub split: String,
    /// The frames this run wrote `<id>.txt` / `<id>.json` for, in order.
    pub frames: Vec<String>,
}

/// The manifest file of a results folder.
pub const RESULTS_MANIFEST: &str = "pillarq-results.json";

impl ResultsManifest {
    /// The manifest of `dir`, if a pillarq run wrote one.
    pub fn read(dir: &Path) -> Result<Option<ResultsManifest>> {
        let path = dir.join(RESULTS_MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Plan {
                file: path,
                msg: format!("not a pillarq results manifest ({e}); delete it or the folder"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io { path, source }),
        }
    }

    /// Starts a run in `dir`: the result files an earlier run recorded are removed (with its
    /// manifest), so a folder never mixes runs. Files no manifest lists are left alone.
    pub fn begin(dir: &Path) -> Result<()> {
        if let Some(old) = ResultsManifest::read(dir)? {
            for id in &old.frames {
                for ext in ["txt", "json"] {
                    let p = dir.join(format!("{id}.{ext}"));
                    match std::fs::remove_file(&p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(Error::Io { path: p, source: e })
                        }
                        _ => {}
                    }
                }
            }
            let p = dir.join(RESULTS_MANIFEST);
            std::fs::remove_file(&p).map_err(|source| Error::Io { path: p, source })?;
        }
        Ok(())
    }

    /// Ends a run: writes the manifest (atomically) once every frame is written.
    pub fn finish(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Other(e.to_string()))?;
        crate::files::write_atomic(&dir.join(RESULTS_MANIFEST), &bytes)
    }
}

/// A frame's FP32 class and box maps (`Detector::head_reference`), against which a quantized
/// run's are measured.
pub struct HeadReference {
    cls: Vec<f32>,
    boxes: Vec<f32>,
    classes: usize,
    /// The detection threshold as a logit (scores are sigmoids of the class logits).
    logit_threshold: f32,
}

impl HeadReference {
    /// How far `quantized` (the outputs of a quantized run of the same frame) moves the heads
    /// where detections come from: over the anchors whose best class score reaches the detection
    /// threshold in FP32 or in the quantized run (kept detections, and would-be false positives),
    /// the squared differences of the class scores (sigmoids) plus those of the 7 box
    /// regression values. Direction logits are left out: KITTI's box overlap does not depend on
    /// heading sign.
    pub fn loss(&self, det: &Detector, quantized: &NamedTensors) -> Result<f64> {
        let [cls, boxes, _] = det.anchor_maps(quantized)?;
        if cls.len() != self.cls.len() || boxes.len() != self.boxes.len() {
            return Err(crate::Error::Other("the quantized run's head maps differ in size from FP32's".into()));
        }
        let nc = self.classes;
        let best = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sigmoid = |x: f32| 1.0 / (1.0 + (-(x as f64)).exp());
        let mut loss = 0.0f64;
        for (i, (f, q)) in self.cls.chunks_exact(nc).zip(cls.chunks_exact(nc)).enumerate() {
            if best(f) < self.logit_threshold && best(q) < self.logit_threshold {
                continue;
            }
            loss += f.iter().zip(q).map(|(&a, &b)| (sigmoid(a) - sigmoid(b)).powi(2)).sum::<f64>();
            let (bf, bq) = (&self.boxes[i * 7..i * 7 + 7], &boxes[i * 7..i * 7 + 7]);
            loss += bf.iter().zip(bq).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>();
        }
        Ok(loss)
    }
}
