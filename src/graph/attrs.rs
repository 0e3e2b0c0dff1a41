//! Typed node attributes. Op code asks for `attr_i64("group")` etc. and never digs in protobuf
//! structs; defaults live at the call site, errors name the node.

use crate::error::{Error, Result};
use crate::onnx::proto::{attribute_proto::AttributeType, AttributeProto};
use crate::tensor::Tensor;

#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Str(String),
    Strs(Vec<String>),
    /// The value, and the attribute as the file had it (so it is written back unchanged: f16
    /// and other element types the `Tensor` holds widened).
    Tensor(Tensor, Box<AttributeProto>),
    /// Graphs, sparse tensors, type protos: no supported op reads them; kept as they were.
    Opaque(Box<AttributeProto>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attrs(pub Vec<(String, AttrValue)>);

impl Attrs {
    pub fn from_proto(node: &str, attrs: &[AttributeProto]) -> Result<Attrs> {
        let mut out = Vec::with_capacity(attrs.len());
        for a in attrs {
            let name = a.name.clone().unwrap_or_default();
            let ty = a.r#type.and_then(|t| AttributeType::try_from(t).ok());
            let v = match ty {
                Some(AttributeType::Int) => AttrValue::Int(a.i.unwrap_or(0)),
                Some(AttributeType::Float) => AttrValue::Float(a.f.unwrap_or(0.0)),
                Some(AttributeType::Ints) => AttrValue::Ints(a.ints.clone()),
                Some(AttributeType::Floats) => AttrValue::Floats(a.floats.clone()),
                Some(AttributeType::String) => {
                    AttrValue::Str(String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into())
                }
                Some(AttributeType::Strings) => {
                    AttrValue::Strs(a.strings.iter().map(|s| String::from_utf8_lossy(s).into()).collect())
                }
                Some(AttributeType::Tensor) => match &a.t {
                    Some(t) => AttrValue::Tensor(
                        Tensor::from_proto(t, None)
                            .map_err(|e| Error::graph(node, format!("attribute '{name}': {e}")))?,
                        Box::new(a.clone()),
                    ),
                    None => return Err(Error::graph(node, format!("attribute '{name}' is a tensor but holds none"))),
                },
                _ => AttrValue::Opaque(Box::new(a.clone())),
            };
            out.push((name, v));
        }
        Ok(Attrs(out))
    }

    /// The attributes as ONNX protobuf, in order (what `from_proto` read, with any edits).
    pub fn to_proto(&self) -> Vec<AttributeProto> {
        use crate::onnx::build::{attr_f, attr_i, attr_ints, attr_s};
        self.0
            .iter()
            .map(|(name, v)| match v {
                AttrValue::Int(i) => attr_i(name, *i),
                AttrValue::Float(f) => attr_f(name, *f),
                AttrValue::Ints(v) => attr_ints(name, v),
                AttrValue::Floats(v) => AttributeProto {
                    name: Some(name.clone()),
                    r#type: Some(AttributeType::Floats as i32),
                    floats: v.clone(),
                    ..Default::default()
                },
                AttrValue::Str(s) => attr_s(name, s),
                AttrValue::Strs(v) => AttributeProto {
                    name: Some(name.clone()),
                    r#type: Some(AttributeType::Strings as i32),
                    strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
                    ..Default::default()
                },
                AttrValue::Tensor(_, proto) | AttrValue::Opaque(proto) => (**proto).clone(),
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&AttrValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn set(&mut self, name: &str, v: AttrValue) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = v,
            None => self.0.push((name.to_string(), v)),
        }
    }
}

/// Attribute access bound to a node, so errors can name it.
pub struct AttrReader<'a> {
    pub node: &'a str,
    pub attrs: &'a Attrs,
}

impl<'a> AttrReader<'a> {
    fn wrong(&self, name: &str, want: &str) -> Error {
        Error::graph(self.node, format!("attribute '{name}' should be {want}"))
    }
    pub fn i64_opt(&self, name: &str) -> Result<Option<i64>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(AttrValue::Int(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong(name, "an integer")),
        }
    }
    pub fn i64(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.i64_opt(name)?.unwrap_or(default))
    }
    pub fn f32(&self, name: &str, default: f32) -> Result<f32> {
        match self.attrs.get(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(AttrValue::Int(v)) => Ok(*v as f32),
            Some(_) => Err(self.wrong(name, "a float")),
        }
    }
    pub fn ints_opt(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Int(v)) => Ok(Some(vec![*v])),
            Some(_) => Err(self.wrong(name, "a list of integers")),
        }
    }
    pub fn string_opt(&self, name: &str) -> Result<Option<String>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(AttrValue::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }
    pub fn tensor_opt(&self, name: &str) -> Option<&'a Tensor> {
        match self.attrs.get(name) {
            Some(AttrValue::Tensor(t, _)) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Model;

    /// Every node of the bundled models written back from the IR reads in as the same node, and a
    /// tensor attribute keeps its file form (element type, raw bytes).
    #[test]
    fn nodes_round_trip_through_protobuf() {
        for name in ["pointpillars_small.onnx", "pointpillars_kitti_cudapp.onnx"] {
            let m = Model::load(&crate::cli::bundled_model(name)).unwrap();
            let by_name: std::collections::HashMap<&str, &crate::onnx::proto::NodeProto> = m
                .file
                .model
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| (n.name.as_deref().unwrap_or(""), n))
                .collect();
            for n in &m.graph.nodes {
                let p = n.to_proto();
                let back = super::Attrs::from_proto(&n.name, &p.attribute).unwrap();
                assert_eq!(back, n.attrs, "{}", n.name);
                let orig = by_name[n.name.as_str()];
                assert_eq!((&p.input, &p.output, &p.op_type), (&orig.input, &orig.output, &orig.op_type));
                for (a, b) in p.attribute.iter().zip(&orig.attribute) {
                    if a.t.is_some() {
                        assert_eq!(a, b, "{}: tensor attribute", n.name);
                    }
                }
            }
        }
    }
}
