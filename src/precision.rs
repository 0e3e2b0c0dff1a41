//! The precision vocabulary shared by plans (`quant::plan`), the executor's mixed-precision
//! simulation (`exec::cpu::precision`) and deployment, below all of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A layer's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Int8,
    Fp16,
    Fp32,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::Fp16 => "fp16",
            Precision::Fp32 => "fp32",
        }
    }

    /// True for the floating-point precisions (the "fallback" of a mixed plan).
    pub fn is_float(self) -> bool {
        self != Precision::Int8
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "int8" => Ok(Precision::Int8),
            "fp16" => Ok(Precision::Fp16),
            "fp32" => Ok(Precision::Fp32),
            other => Err(format!("unknown precision '{other}': use int8, fp16 or fp32")),
        }
    }
}

/// One layer of a resolved plan.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPrecision {
    pub name: String,
    pub precision: Precision,
    /// INT8 layers: the activation threshold (scale = amax / 127).
    pub act_amax: Option<f32>,
    /// INT8 layers: round the per-channel weight scales up to powers of two.
    pub pow2_weights: bool,
    /// INT8 layers, PTQ recipe: the per-input-channel multipliers `m` of input equalization. The
    /// activation is multiplied by `m[c]` before it is quantized and the weight's input channel
    /// `c` divided by it, so in real arithmetic the layer computes the same function.
    pub input_mul: Option<std::sync::Arc<[f32]>>,
    /// INT8 layers, PTQ recipe: the float32 bias to use instead of the model's (bias correction).
    pub bias: Option<std::sync::Arc<[f32]>>,
    /// INT8 layers, PTQ recipe: the weight's INT8 levels (weight rounding) instead of
    /// round-to-nearest; the per-channel scales stay the symmetric max.
    pub weight_levels: Option<std::sync::Arc<[i8]>>,
}

impl LayerPrecision {
    /// A layer without recipe adjustments.
    pub fn plain(name: &str, precision: Precision, act_amax: Option<f32>, pow2_weights: bool) -> LayerPrecision {
        LayerPrecision {
            name: name.to_string(),
            precision,
            act_amax,
            pow2_weights,
            input_mul: None,
            bias: None,
            weight_levels: None,
        }
    }
}
