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
    Tensor(Tensor),
    /// Graphs, sparse tensors, type protos: kept by name only (no supported op needs them).
    Unsupported(i32),
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
                    ),
                    None => return Err(Error::graph(node, format!("attribute '{name}' is a tensor but holds none"))),
                },
                _ => AttrValue::Unsupported(a.r#type.unwrap_or(0)),
            };
            out.push((name, v));
        }
        Ok(Attrs(out))
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
            Some(AttrValue::Tensor(t)) => Some(t),
            _ => None,
        }
    }
}
