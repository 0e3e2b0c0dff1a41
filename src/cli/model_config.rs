//! `--config` and the explicit pre/post-processing flags shared by every command that runs a
//! model on point clouds (precedence: model metadata < --config < these flags).

use std::path::PathBuf;

use anyhow::Result;
use serde_json::json;

use crate::model::Model;
use crate::pointpillars::config::{resolve, ConfigLayer, ResolvedModel};
use crate::pointpillars::detect::Detector;

#[derive(clap::Args, Clone, Default)]
pub struct ConfigArgs {
    /// The model's pre/post-processing configuration: an OpenPCDet / CUDA-PointPillars model YAML
    /// (tools/cfgs/kitti_models/pointpillar.yaml, with its _BASE_CONFIG_), or pillarq's own keys
    /// (the metadata schema) as YAML or JSON. Overrides the model's metadata key by key; needed
    /// for a model without metadata (or write it in once with `pillarq annotate`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Score threshold (overrides the config and the metadata).
    #[arg(long, value_name = "S")]
    pub score_threshold: Option<f32>,
    /// NMS IoU threshold (overrides the config and the metadata).
    #[arg(long, value_name = "IOU")]
    pub nms_iou: Option<f32>,
    /// Camera image size WxH for every frame (field-of-view crop, 2D boxes), instead of each
    /// frame's training/image_2/<id>.png (1242x375 where a frame has none).
    #[arg(long, value_name = "WxH", value_parser = crate::kitti::parse_image_size)]
    pub image_size: Option<[f32; 2]>,
}

impl ConfigArgs {
    fn flags(&self) -> ConfigLayer {
        let mut v = Vec::new();
        if let Some(s) = self.score_threshold {
            v.push(("score_threshold", "--score-threshold", json!(s)));
        }
        if let Some(s) = self.nms_iou {
            v.push(("nms_iou", "--nms-iou", json!(s)));
        }
        ConfigLayer::flags(v)
    }

    /// The model's configuration, reconciled with its inputs and outputs.
    pub fn resolve(&self, model: &Model) -> Result<ResolvedModel> {
        Ok(resolve(&model.graph, &model.file.path, self.config.as_deref(), Some(self.flags()))?)
    }

    /// A detector for the model with this configuration.
    pub fn detector(&self, model: &Model, threads: usize) -> Result<Detector> {
        let mut d = Detector::with_config(model, self.resolve(model)?, threads)?;
        d.image_size = self.image_size;
        Ok(d)
    }

    /// Only the configuration when the model has one (metadata or --config), else `None`.
    pub fn optional(&self, model: &Model) -> Result<Option<ResolvedModel>> {
        let has_metadata = model.graph.metadata.contains_key(crate::pointpillars::METADATA_KEY);
        if self.config.is_none() && !has_metadata {
            return Ok(None);
        }
        self.resolve(model).map(Some)
    }
}
