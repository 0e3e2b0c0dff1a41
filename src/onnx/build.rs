//! Small constructors for ONNX protobuf values (nodes, attributes, raw-data initializers), used by
//! the emitter and by tests that build models by hand.

use super::proto::attribute_proto::AttributeType;
use super::proto::tensor_proto::DataType;
use super::proto::{AttributeProto, NodeProto, TensorProto};

pub fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Int as i32),
        i: Some(v),
        ..Default::default()
    }
}

pub fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Float as i32),
        f: Some(v),
        ..Default::default()
    }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

pub fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec()),
        ..Default::default()
    }
}

/// A node of the default domain.
pub fn node<S: AsRef<str>>(op: &str, name: &str, inputs: &[S], outputs: &[S], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(name.into()),
        domain: Some(String::new()),
        input: inputs.iter().map(|s| s.as_ref().to_string()).collect(),
        output: outputs.iter().map(|s| s.as_ref().to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// An initializer of type `dt` whose little-endian bytes are `raw`.
pub fn init_raw(name: &str, dims: &[usize], dt: DataType, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(dt as i32),
        raw_data: Some(raw),
        ..Default::default()
    }
}

pub fn init_f32(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    init_raw(name, dims, DataType::Float, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// A float16 initializer from f32 values (rounded to nearest, ties to even).
pub fn init_f16(name: &str, dims: &[usize], v: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    init_raw(name, dims, DataType::Float16, v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect())
}

pub fn init_i8(name: &str, dims: &[usize], v: &[i8]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    init_raw(name, dims, DataType::Int8, v.iter().map(|&x| x as u8).collect())
}

pub fn init_i64(name: &str, dims: &[usize], v: &[i64]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    init_raw(name, dims, DataType::Int64, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

pub fn init_i32(name: &str, dims: &[usize], v: &[i32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<usize>(), v.len(), "{name}");
    init_raw(name, dims, DataType::Int32, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// An initializer holding `t` (float32, int64 or int32 values).
pub fn init_tensor(name: &str, t: &crate::tensor::Tensor) -> Result<TensorProto, String> {
    use crate::tensor::Data;
    match &t.data {
        Data::F32(v) => Ok(init_f32(name, &t.shape, v)),
        Data::I64(v) => Ok(init_i64(name, &t.shape, v)),
        Data::I32(v) => Ok(init_i32(name, &t.shape, v)),
        _ => Err(format!("cannot write a {} constant", t.dtype())),
    }
}
