//! Numerics shared by graph preparation, the CPU executor, quantization and deployment, below
//! all of them (they import this module; it imports none of them): INT8 quantization
//! (`int8`), f16 rounding, BatchNormalization's per-channel affine.

pub mod int8;

/// The revision of the executor's numerics: raised whenever a change makes the same model, plan
/// and inputs give other bits (a new kernel, another summation order). Result caches and `run`'s
/// stage keys include it, so results of an earlier build are not reused as this build's.
/// 2: Winograd for 3x3 stride-1 convolutions, INT8 Conv/ConvTranspose in integers (issue 17).
/// 3: the sweeps' signal and noise sums (`search::evaluate`) in eight interleaved lanes.
pub const REVISION: u32 = 3;

/// The nearest f16 value (ties to even) of `x`, as f32: what a TensorRT FP16 layer stores.
/// Branch-free (selects), so the slice loop vectorizes.
#[inline]
pub fn round_f16(x: f32) -> f32 {
    let a = x.abs();
    let b = x.to_bits();
    // Normal f16: keep 10 of the 23 mantissa bits, ties to even.
    let normal = f32::from_bits(b.wrapping_add(0x0FFF + ((b >> 13) & 1)) & !0x1FFF);
    // f16 subnormals: multiples of 2^-24; 0.75 has an f32 ulp of 2^-24.
    let sub = ((a + 0.75) - 0.75).copysign(x);
    let r = if a < 6.103_515_6e-5 { sub } else { normal };
    let r = if a >= 65_520.0 { f32::INFINITY.copysign(x) } else { r };
    if a.is_nan() {
        x
    } else {
        r
    }
}

/// Rounds every element to the nearest f16 (as a TensorRT FP16 layer stores it).
pub fn round_f16_slice(v: &mut [f32]) {
    for x in v {
        *x = round_f16(*x);
    }
}

/// BatchNormalization in inference mode as a per-channel affine `y = x * scale + shift`:
/// `scale = gamma / sqrt(var + eps)`, `shift = beta - mean * scale`. Every parameter must have the
/// channel count.
pub fn bn_scale_shift(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<(Vec<f32>, Vec<f32>), String> {
    let c = gamma.len();
    if beta.len() != c || mean.len() != c || var.len() != c {
        return Err("scale, B, mean and var must all have the channel count".into());
    }
    let scale: Vec<f32> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
    Ok((scale, shift))
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn round_f16_matches_half_everywhere_that_matters() {
        let mut rng = crate::pointpillars::SplitMix64::new(3);
        let mut vals: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            65504.0,
            65519.99,
            65520.0,
            -65520.0,
            1e-8,
            2.98e-8,
            5.96e-8,
            6.1e-5,
            6.1035156e-5,
            1.0009766,
            1.0004883,
            1.0014648,
            2049.0,
            2051.0,
            f32::INFINITY,
            f32::MAX,
            -3.0e38,
        ];
        for _ in 0..200_000 {
            let e = (rng.next_u64() % 60) as i32 - 40;
            let m = (rng.next_u64() % 1_000_000) as f32 / 1e6 + 1.0;
            let s = if rng.next_u64().is_multiple_of(2) { 1.0 } else { -1.0 };
            vals.push(s * m * 2f32.powi(e));
            vals.push(f32::from_bits(rng.next_u64() as u32));
        }
        for v in vals {
            if v.is_nan() {
                assert!(round_f16(v).is_nan());
                continue;
            }
            let want = f16::from_f32(v).to_f32();
            assert_eq!(round_f16(v).to_bits(), want.to_bits(), "{v:e}: {} vs {want}", round_f16(v));
        }
    }
}
