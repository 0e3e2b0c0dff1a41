//! Dense tensors: the values that flow along graph edges.

use std::fmt;

use crate::error::{Error, Result};
use crate::onnx::proto::{tensor_proto::DataType as OnnxType, TensorProto};

/// Element type of a tensor edge (ONNX `TensorProto.DataType`, restricted to what pillarq runs;
/// other types are kept as `Other(code)` so models using them still load).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    F64,
    I8,
    U8,
    I32,
    I64,
    Bool,
    Other(i32),
}

impl DType {
    pub fn from_onnx(code: i32) -> DType {
        match OnnxType::try_from(code) {
            Ok(OnnxType::Float) => DType::F32,
            Ok(OnnxType::Float16) => DType::F16,
            Ok(OnnxType::Double) => DType::F64,
            Ok(OnnxType::Int8) => DType::I8,
            Ok(OnnxType::Uint8) => DType::U8,
            Ok(OnnxType::Int32) => DType::I32,
            Ok(OnnxType::Int64) => DType::I64,
            Ok(OnnxType::Bool) => DType::Bool,
            _ => DType::Other(code),
        }
    }

    pub fn to_onnx(self) -> i32 {
        match self {
            DType::F32 => OnnxType::Float as i32,
            DType::F16 => OnnxType::Float16 as i32,
            DType::F64 => OnnxType::Double as i32,
            DType::I8 => OnnxType::Int8 as i32,
            DType::U8 => OnnxType::Uint8 as i32,
            DType::I32 => OnnxType::Int32 as i32,
            DType::I64 => OnnxType::Int64 as i32,
            DType::Bool => OnnxType::Bool as i32,
            DType::Other(c) => c,
        }
    }

    /// Bytes per element as pillarq holds it in memory (f16 and f64 as f32).
    pub fn width(self) -> usize {
        match self {
            DType::I64 => 8,
            DType::I8 | DType::U8 | DType::Bool => 1,
            _ => 4,
        }
    }

    pub fn name(self) -> String {
        match self {
            DType::F32 => "float32".into(),
            DType::F16 => "float16".into(),
            DType::F64 => "float64".into(),
            DType::I8 => "int8".into(),
            DType::U8 => "uint8".into(),
            DType::I32 => "int32".into(),
            DType::I64 => "int64".into(),
            DType::Bool => "bool".into(),
            DType::Other(c) => format!("onnx-type-{c}"),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Typed storage. f16 and f64 are converted to f32 on load (pillarq computes in f32).
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Tensor> {
        let t = Tensor { shape, data };
        if t.len() != numel(&t.shape) {
            return Err(Error::Other(format!(
                "tensor of shape {:?} needs {} elements, got {}",
                t.shape,
                numel(&t.shape),
                t.len()
            )));
        }
        Ok(t)
    }
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        debug_assert_eq!(numel(&shape), v.len());
        Tensor { shape, data: Data::F32(v) }
    }
    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> Tensor {
        debug_assert_eq!(numel(&shape), v.len());
        Tensor { shape, data: Data::I64(v) }
    }
    pub fn scalar_i64(v: i64) -> Tensor {
        Tensor::i64(vec![], vec![v])
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match &self.data {
            Data::F32(_) => DType::F32,
            Data::I64(_) => DType::I64,
            Data::I32(_) => DType::I32,
            Data::I8(_) => DType::I8,
            Data::U8(_) => DType::U8,
            Data::Bool(_) => DType::Bool,
        }
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Integer view of an index-like tensor (i64, i32, i8, u8, bool).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            Data::F32(_) => return None,
        })
    }

    /// Reads an ONNX TensorProto whose payload is inline or given as `external` raw bytes.
    pub fn from_proto(t: &TensorProto, external: Option<Vec<u8>>) -> Result<Tensor> {
        let name = t.name.clone().unwrap_or_default();
        let bad = |msg: String| Error::graph(name.clone(), msg);
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
            .collect::<Result<_>>()?;
        let dt = t.data_type.unwrap_or(0);
        // The payload is already in memory, so only the count is checked (it must not wrap).
        let n = crate::memory::checked_numel(&shape);
        let raw: Option<&[u8]> = match &external {
            Some(b) => Some(b),
            None => t.raw_data.as_deref().filter(|_| t.raw_data.is_some()),
        };
        let check = |got: usize| -> Result<()> {
            match n {
                Some(n) if n == got => Ok(()),
                Some(n) => Err(bad(format!("tensor of shape {shape:?} needs {n} elements but holds {got}"))),
                None => Err(bad(format!(
                    "tensor of shape {shape:?} has more elements than fit in memory (the count overflows) but holds {got}"
                ))),
            }
        };
        fn chunks<const W: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; W]> + '_ {
            raw.chunks_exact(W).map(|c| {
                let mut a = [0u8; W];
                a.copy_from_slice(c);
                a
            })
        }
        let data = match DType::from_onnx(dt) {
            DType::F32 => {
                let v: Vec<f32> = match raw {
                    Some(r) => chunks::<4>(r).map(f32::from_le_bytes).collect(),
                    None => t.float_data.clone(),
                };
                check(v.len())?;
                Data::F32(v)
            }
            DType::F16 => {
                let v: Vec<f32> = match raw {
                    Some(r) => chunks::<2>(r).map(|b| half::f16::from_le_bytes(b).to_f32()).collect(),
                    None => t.int32_data.iter().map(|&b| half::f16::from_bits(b as u16).to_f32()).collect(),
                };
                check(v.len())?;
                Data::F32(v)
            }
            DType::F64 => {
                let v: Vec<f32> = match raw {
                    Some(r) => chunks::<8>(r).map(|b| f64::from_le_bytes(b) as f32).collect(),
                    None => t.double_data.iter().map(|&x| x as f32).collect(),
                };
                check(v.len())?;
                Data::F32(v)
            }
            DType::I64 => {
                let v: Vec<i64> = match raw {
                    Some(r) => chunks::<8>(r).map(i64::from_le_bytes).collect(),
                    None => t.int64_data.clone(),
                };
                check(v.len())?;
                Data::I64(v)
            }
            DType::I32 => {
                let v: Vec<i32> = match raw {
                    Some(r) => chunks::<4>(r).map(i32::from_le_bytes).collect(),
                    None => t.int32_data.clone(),
                };
                check(v.len())?;
                Data::I32(v)
            }
            DType::I8 => {
                let v: Vec<i8> = match raw {
                    Some(r) => r.iter().map(|&b| b as i8).collect(),
                    None => t.int32_data.iter().map(|&b| b as i8).collect(),
                };
                check(v.len())?;
                Data::I8(v)
            }
            DType::U8 => {
                let v: Vec<u8> = match raw {
                    Some(r) => r.to_vec(),
                    None => t.int32_data.iter().map(|&b| b as u8).collect(),
                };
                check(v.len())?;
                Data::U8(v)
            }
            DType::Bool => {
                let v: Vec<bool> = match raw {
                    Some(r) => r.iter().map(|&b| b != 0).collect(),
                    None => t.int32_data.iter().map(|&b| b != 0).collect(),
                };
                check(v.len())?;
                Data::Bool(v)
            }
            DType::Other(c) => {
                return Err(bad(format!(
                    "tensor element type {c} ({}) is not supported",
                    OnnxType::try_from(c).map(|t| t.as_str_name()).unwrap_or("unknown")
                )))
            }
        };
        Ok(Tensor { shape, data })
    }
}
