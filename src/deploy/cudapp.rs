//! A pillarq engine as a drop-in for NVIDIA CUDA-PointPillars' runtime.
//!
//! That runtime binds its engine by name: inputs `voxels` (float16, `[P, 32, 10]`: its
//! pre-processing kernel writes FP16 features), `voxel_idxs` (int32 `[P, 4]`, batch z y x),
//! `voxel_num` (int32 `[1]`); outputs `cls_preds`, `box_preds`, `dir_cls_preds` (NHWC float32),
//! and NVIDIA builds the engine with `--inputIOFormats=fp16:chw,int32:chw,int32:chw` and the
//! plugin library for the scatter. [`adapt`] rewrites an emitted model's interface to exactly
//! that: the graph inputs and outputs renamed and in that order, `voxels` declared float16 and
//! cast to float32 inside (so a strongly typed TensorRT 11 build accepts FP16 input), int64
//! coordinates or counts declared int32 and cast inside, NCHW heads transposed to NHWC.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::onnx::build::{attr_i, attr_ints, node};
use crate::onnx::proto::tensor_proto::DataType;
use crate::onnx::proto::{type_proto, ModelProto, ValueInfoProto};
use crate::pointpillars::interface::ModelIo;
use crate::tensor::DType;

pub const INPUTS: [&str; 3] = ["voxels", "voxel_idxs", "voxel_num"];
pub const OUTPUTS: [&str; 3] = ["cls_preds", "box_preds", "dir_cls_preds"];
/// trtexec's `--inputIOFormats` for those three inputs.
pub const IO_FORMATS: &str = "fp16:chw,int32:chw,int32:chw";

/// Whether the model can serve CUDA-PointPillars' runtime (its pre-processing is fixed).
pub fn check(io: &ModelIo) -> Result<()> {
    let why = if io.num_features != 10 {
        Some(format!("its pillars have {} features per point; the runtime writes 10", io.num_features))
    } else if io.voxels.shape.len() != 3 {
        Some(format!("its '{}' input is {:?}; the runtime feeds [P, 32, 10]", io.voxels.name, io.voxels.shape))
    } else if io.coords.shape.len() != 2 {
        Some(format!("its '{}' input is {:?}; the runtime feeds [P, 4]", io.coords.name, io.coords.shape))
    } else if io.count.is_none() {
        Some("it takes no valid-pillar count; the runtime feeds voxel_num".into())
    } else if io.point_counts.is_some() {
        Some("it takes points per pillar, which the runtime does not feed".into())
    } else {
        None
    };
    match why {
        Some(w) => Err(Error::Other(format!("not a CUDA-PointPillars drop-in: {w}"))),
        None => Ok(()),
    }
}

fn set_elem_type(v: &mut ValueInfoProto, t: DataType) {
    if let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        tt.elem_type = Some(t as i32);
    }
}

/// Rewrites the emitted model `m` (of a model with interface `io`) to CUDA-PointPillars' I/O.
pub fn adapt(m: &mut ModelProto, io: &ModelIo) -> Result<()> {
    check(io)?;
    let g = m.graph.as_mut().ok_or_else(|| Error::Other("emitted model has no graph".into()))?;
    let count = io.count.as_ref().expect("checked");
    // Interface renames: old name -> runtime name.
    let mut rename: HashMap<String, String> = HashMap::new();
    for (old, new) in [&io.voxels.name, &io.coords.name, &count.name].into_iter().zip(INPUTS) {
        rename.insert(old.clone(), new.to_string());
    }
    for (old, new) in [&io.cls.name, &io.boxes.name, &io.dir.name].into_iter().zip(OUTPUTS) {
        rename.insert(old.clone(), new.to_string());
    }
    let taken: std::collections::HashSet<String> =
        g.node.iter().flat_map(|n| n.input.iter().chain(&n.output).cloned()).collect();
    for (old, new) in &rename {
        if old != new && taken.contains(new) {
            return Err(Error::graph(new, "the model already has an edge of the runtime's name for another tensor"));
        }
    }
    let edge = |s: &str| rename.get(s).cloned().unwrap_or_else(|| s.to_string());
    for n in &mut g.node {
        for e in n.input.iter_mut().chain(n.output.iter_mut()) {
            *e = edge(e);
        }
    }
    for v in g.input.iter_mut().chain(g.output.iter_mut()).chain(g.value_info.iter_mut()) {
        if let Some(n) = v.name.as_mut() {
            *n = edge(n);
        }
    }

    // Inputs whose declared type changes: the graph input takes the runtime's type, a Cast inside
    // gives the model what it was exported with.
    let mut front = vec![];
    let casts = [
        (INPUTS[0], io.voxels.dtype != DType::F16, DataType::Float16, DataType::Float),
        (INPUTS[1], io.coords.dtype == DType::I64, DataType::Int32, DataType::Int64),
        (INPUTS[2], count.dtype == DType::I64, DataType::Int32, DataType::Int64),
    ];
    for (name, needed, outer, inner) in casts {
        if !needed {
            continue;
        }
        let inside = format!("{name}/cast_output");
        for n in &mut g.node {
            for e in n.input.iter_mut().filter(|e| e.as_str() == name) {
                *e = inside.clone();
            }
        }
        front.push(node(
            "Cast",
            &format!("{name}/cast"),
            &[name],
            &[inside.as_str()],
            vec![attr_i("to", inner as i64)],
        ));
        if let Some(v) = g.input.iter_mut().find(|v| v.name.as_deref() == Some(name)) {
            set_elem_type(v, outer);
        }
    }
    // NCHW heads: the head writes `<name>/nchw`, a Transpose gives the NHWC output.
    let mut back = vec![];
    for (port, name) in [&io.cls, &io.boxes, &io.dir].into_iter().zip(OUTPUTS) {
        if !port.nchw {
            continue;
        }
        let inner = format!("{name}/nchw");
        for n in &mut g.node {
            for e in n.output.iter_mut().filter(|e| e.as_str() == name) {
                *e = inner.clone();
            }
            for e in n.input.iter_mut().filter(|e| e.as_str() == name) {
                *e = inner.clone();
            }
        }
        back.push(node(
            "Transpose",
            &format!("{name}/to_nhwc"),
            &[inner.as_str()],
            &[name],
            vec![attr_ints("perm", &[0, 2, 3, 1])],
        ));
        if let Some(type_proto::Value::TensorType(tt)) = g
            .output
            .iter_mut()
            .find(|v| v.name.as_deref() == Some(name))
            .and_then(|v| v.r#type.as_mut())
            .and_then(|t| t.value.as_mut())
        {
            if let Some(s) = tt.shape.as_mut().filter(|s| s.dim.len() == 4) {
                let d = s.dim.clone();
                s.dim = vec![d[0].clone(), d[2].clone(), d[3].clone(), d[1].clone()];
            }
        }
    }
    g.value_info.retain(|v| v.name.as_deref().is_none_or(|n| !OUTPUTS.contains(&n) && !INPUTS.contains(&n)));
    let mut nodes = front;
    nodes.append(&mut g.node);
    nodes.extend(back);
    g.node = nodes;
    // Runtime order: voxels, voxel_idxs, voxel_num, then anything else.
    g.input.sort_by_key(|v| INPUTS.iter().position(|n| v.name.as_deref() == Some(n)).unwrap_or(INPUTS.len()));
    g.output.sort_by_key(|v| OUTPUTS.iter().position(|n| v.name.as_deref() == Some(n)).unwrap_or(OUTPUTS.len()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{type_proto, GraphProto, TensorShapeProto, TypeProto};
    use crate::pointpillars::interface::{HeadPort, Port};

    fn vi(name: &str, t: DataType, dims: &[i64]) -> ValueInfoProto {
        use crate::onnx::proto::tensor_shape_proto::{dimension::Value, Dimension};
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(t as i32),
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|&d| Dimension { value: Some(Value::DimValue(d)), ..Default::default() })
                            .collect(),
                    }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn elem(v: &ValueInfoProto) -> i32 {
        match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t.elem_type.unwrap_or(0),
            _ => 0,
        }
    }

    /// An mmdetection3d-like interface (other names, int64 indices, NCHW heads) becomes the
    /// runtime's: renamed, re-typed with Casts inside, heads transposed, inputs in order.
    #[test]
    fn interface_is_rewritten_to_the_runtime() {
        let port = |n: &str, dtype, shape: Vec<usize>| Port { name: n.into(), dtype, shape };
        let head = |n: &str, c| HeadPort { name: n.into(), nchw: true, channels: c };
        let io = ModelIo {
            voxels: port("feats", DType::F32, vec![8, 32, 10]),
            coords: port("coors", DType::I64, vec![8, 4]),
            count: Some(port("n", DType::I64, vec![1])),
            point_counts: None,
            cls: head("cls_score", 18),
            boxes: head("bbox_pred", 42),
            dir: head("dir_cls_pred", 12),
            max_pillars: 8,
            max_points: 32,
            num_features: 10,
        };
        let nodes = vec![
            node("Net", "net", &["feats", "coors", "n"], &["cls_score", "bbox_pred", "dir_cls_pred"], vec![]),
            node("Identity", "reader", &["coors"], &["unused"], vec![]),
        ];
        let mut m = ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                input: vec![
                    vi("n", DataType::Int64, &[1]),
                    vi("coors", DataType::Int64, &[8, 4]),
                    vi("feats", DataType::Float, &[8, 32, 10]),
                ],
                output: vec![
                    vi("cls_score", DataType::Float, &[1, 18, 4, 5]),
                    vi("bbox_pred", DataType::Float, &[1, 42, 4, 5]),
                    vi("dir_cls_pred", DataType::Float, &[1, 12, 4, 5]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        adapt(&mut m, &io).unwrap();
        let g = m.graph.unwrap();
        let ins: Vec<(&str, i32)> = g.input.iter().map(|v| (v.name.as_deref().unwrap(), elem(v))).collect();
        assert_eq!(
            ins,
            [
                ("voxels", DataType::Float16 as i32),
                ("voxel_idxs", DataType::Int32 as i32),
                ("voxel_num", DataType::Int32 as i32)
            ]
        );
        let ops: Vec<(&str, Vec<&str>, Vec<&str>)> = g
            .node
            .iter()
            .map(|n| {
                (
                    n.op_type.as_deref().unwrap(),
                    n.input.iter().map(String::as_str).collect(),
                    n.output.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(ops[0], ("Cast", vec!["voxels"], vec!["voxels/cast_output"]));
        assert_eq!(ops[3].1, ["voxels/cast_output", "voxel_idxs/cast_output", "voxel_num/cast_output"]);
        assert_eq!(ops[3].2, ["cls_preds/nchw", "box_preds/nchw", "dir_cls_preds/nchw"]);
        assert_eq!(ops[4], ("Identity", vec!["voxel_idxs/cast_output"], vec!["unused"]));
        assert_eq!(ops[5], ("Transpose", vec!["cls_preds/nchw"], vec!["cls_preds"]));
        let out: Vec<&str> = g.output.iter().map(|v| v.name.as_deref().unwrap()).collect();
        assert_eq!(out, OUTPUTS);
        let dims = match g.output[1].r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(type_proto::Value::TensorType(t)) => t.shape.as_ref().unwrap().dim.len(),
            _ => 0,
        };
        assert_eq!(dims, 4);
    }

    #[test]
    fn models_the_runtime_cannot_feed_are_refused() {
        let port = |n: &str, shape: Vec<usize>| Port { name: n.into(), dtype: DType::F32, shape };
        let head = |n: &str| HeadPort { name: n.into(), nchw: false, channels: 0 };
        let mut io = ModelIo {
            voxels: port("voxels", vec![1, 8, 32, 10]),
            coords: port("voxel_idxs", vec![8, 4]),
            count: Some(port("voxel_num", vec![1])),
            point_counts: None,
            cls: head("c"),
            boxes: head("b"),
            dir: head("d"),
            max_pillars: 8,
            max_points: 32,
            num_features: 10,
        };
        assert!(check(&io).unwrap_err().to_string().contains("[1, 8, 32, 10]"));
        io.voxels.shape = vec![8, 32, 10];
        io.count = None;
        assert!(check(&io).unwrap_err().to_string().contains("voxel_num"));
    }
}
