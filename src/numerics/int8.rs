//! INT8 numerics of ONNX QuantizeLinear as TensorRT and onnxruntime compute them: symmetric,
//! zero point 0, `q = saturate(round_half_to_even(x / scale))` to [-128, 127]. The CPU
//! executor's QuantizeLinear kernel and the fake-quant simulation both use these functions, so
//! they cannot drift apart.

/// 2^23: from here on every f32 is an integer, and below it adding 2^23 leaves no fraction bits.
const TWO_POW_23: f32 = 8_388_608.0;

/// Rounds to the nearest integer, ties to even (what `f32::round_ties_even` does, and
/// QuantizeLinear's rounding). Written with an add and a subtract so that loops over slices
/// vectorize on every target: `round_ties_even` becomes a libm call where SSE4.1 is not
/// enabled (the default x86-64 target). Exact for every f32; NaN and infinities pass through.
#[inline(always)]
pub fn round_half_even(y: f32) -> f32 {
    let a = y.abs();
    // For |y| < 2^23, |y| + 2^23 lies in [2^23, 2^24) where the spacing is 1, so the add rounds
    // |y| to an integer under the default rounding mode (nearest, ties to even); the subtract
    // is exact.
    let r = if a < TWO_POW_23 { (a + TWO_POW_23) - TWO_POW_23 } else { a };
    r.copysign(y)
}

/// `saturate(round_half_even(x / scale) + zp)` into [lo, hi], as ONNX QuantizeLinear (any zero
/// point and integer range). NaN maps to the zero point (onnxruntime's result for NaN differs by
/// platform; no real tensor should hold one).
pub fn quantize_value(x: f32, scale: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    (round_half_even(x / scale) as i64 + zp as i64).clamp(lo as i64, hi as i64) as i32
}

/// The INT8 level of `x` as an f32 in [-128, 127] (NaN gives 0). One definition for the scalar and
/// slice paths below. Division, not multiplication by a reciprocal: `x * (1 / scale)` rounds
/// differently from `x / scale` for some inputs, and onnxruntime divides.
#[inline(always)]
fn level_i8(x: f32, scale: f32) -> f32 {
    let r = round_half_even(x / scale);
    if r.is_nan() {
        0.0
    } else {
        r.clamp(-128.0, 127.0)
    }
}

/// Symmetric INT8 quantization (zero point 0) of one value: ONNX QuantizeLinear with an int8
/// zero point of 0.
pub fn quantize_i8(x: f32, scale: f32) -> i8 {
    level_i8(x, scale) as i8
}

/// Quantize then dequantize one value: `quantize_i8(x, scale) as f32 * scale`, what a
/// QuantizeLinear -> DequantizeLinear pair computes.
#[inline]
pub fn fake_quant(x: f32, scale: f32) -> f32 {
    level_i8(x, scale) * scale
}

/// `fake_quant` over a slice, in place. Same bits as calling `fake_quant` per element; the loop
/// vectorizes (no libm calls, no branches).
pub fn fake_quant_slice(data: &mut [f32], scale: f32) {
    for v in data.iter_mut() {
        *v = level_i8(*v, scale) * scale;
    }
}

/// `amax` if it gives a usable scale (finite, `amax / 127` a normal f32), else 1.0.
pub(crate) fn usable_amax(amax: f32) -> f32 {
    if amax.is_finite() && amax / 127.0 >= f32::MIN_POSITIVE {
        amax
    } else {
        1.0
    }
}

/// The smallest power of two at or above `scale` (a positive, normal, finite f32; anything else
/// is returned unchanged). With power-of-two scales every dequantized value `q * 2^k` is exact in
/// f32, and so is every product and partial sum of a quantized layer below 2^24 in integer units:
/// the result no longer depends on summation order, so two implementations must agree bit for
/// bit (shift-only requantization hardware also wants such scales).
pub fn pow2_ceil(scale: f32) -> f32 {
    if !(scale.is_finite() && scale >= f32::MIN_POSITIVE) {
        return scale;
    }
    let b = scale.to_bits();
    if b & 0x007f_ffff == 0 {
        return scale;
    }
    let up = f32::from_bits((b & 0x7f80_0000) + 0x0080_0000);
    if up.is_finite() {
        up
    } else {
        scale
    }
}

/// `amax` moved up so that `amax / 127` is a power of two (exactly: `127 * 2^k` is an f32 and
/// the division is then exact).
pub fn pow2_amax(amax: f32) -> f32 {
    127.0 * pow2_ceil(amax / 127.0)
}

/// Symmetric per-channel weight amax: max |w| over every element with index `c` along `axis`.
/// Conv weights are [Cout, Cin, kh, kw] (axis 0), ConvTranspose [Cin, Cout, kh, kw] (axis 1),
/// MatMul's right operand [K, N] (axis 1). A channel of zeros (or one too small for a normal
/// scale) gets 1.0 (`usable_amax`). Errors (for the caller to prefix with the node name)
/// when the shape does not match the data, the axis is out of range or a weight is not finite.
pub fn per_channel_amax(w: &[f32], shape: &[usize], axis: usize) -> Result<Vec<f32>, String> {
    if axis >= shape.len() {
        return Err(format!("weight of shape {shape:?} has no axis {axis}"));
    }
    let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if numel != Some(w.len()) {
        return Err(format!("weight of shape {shape:?} cannot hold {} values", w.len()));
    }
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut amax = vec![0.0f32; channels];
    if inner > 0 {
        for (i, block) in w.chunks_exact(inner).enumerate() {
            let c = i % channels;
            let m = block.iter().fold(0.0f32, |m, &v| if v.abs() > m { v.abs() } else { m });
            if let Some(bad) = block.iter().find(|v| !v.is_finite()) {
                return Err(format!("channel {c} along axis {axis} holds a non-finite weight ({bad})"));
            }
            amax[c] = amax[c].max(m);
        }
    }
    Ok(amax.into_iter().map(usable_amax).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_even_matches_std_on_ties_and_edges() {
        let mut cases = vec![
            0.0f32,
            -0.0,
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.5,
            0.49999997,
            0.50000006,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            16_777_217.0,
            1e-45,
            -1e-40,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        // Every half-integer from -300.5 to 300.5 and a spread of other values.
        cases.extend((-601..=601).map(|k| k as f32 * 0.5));
        cases.extend((0..10_000).map(|k| (k as f32 * 0.7331).sin() * 1000.0));
        for &y in &cases {
            assert_eq!(round_half_even(y).to_bits(), y.round_ties_even().to_bits(), "y = {y:e}");
        }
        assert!(round_half_even(f32::NAN).is_nan());
    }

    #[test]
    fn quantize_i8_rounds_half_to_even_and_saturates() {
        assert_eq!(quantize_i8(0.5, 1.0), 0);
        assert_eq!(quantize_i8(1.5, 1.0), 2);
        assert_eq!(quantize_i8(2.5, 1.0), 2);
        assert_eq!(quantize_i8(-2.5, 1.0), -2);
        assert_eq!(quantize_i8(-0.5, 1.0), 0);
        assert_eq!(quantize_i8(0.75, 0.5), 2); // 1.5 -> 2
        assert_eq!(quantize_i8(1000.0, 1.0), 127);
        assert_eq!(quantize_i8(-1000.0, 1.0), -128);
        assert_eq!(quantize_i8(127.5, 1.0), 127);
        assert_eq!(quantize_i8(-128.5, 1.0), -128);
        assert_eq!(quantize_i8(f32::INFINITY, 1.0), 127);
        assert_eq!(quantize_i8(f32::NAN, 1.0), 0);
        assert_eq!(fake_quant(2.5, 0.5), 2.5); // 5 * 0.5
        assert_eq!(fake_quant(100.0, 0.5), 63.5); // saturates at 127 * 0.5
    }

    #[test]
    fn quantize_i8_divides_rather_than_multiplying_by_the_reciprocal() {
        // With this scale, x = 1.5 * scale divides back to exactly 1.5 (a tie, rounding to 2),
        // while x * (1 / scale) is 1.4999999 (rounding to 1).
        let scale = f32::from_bits(0x3d92cf5f); // 0.07168459
        let x = 1.5 * scale;
        assert_eq!(x / scale, 1.5);
        assert_eq!((x * (1.0 / scale)).round_ties_even(), 1.0);
        assert_eq!(quantize_i8(x, scale), 2);
    }

    #[test]
    fn slice_scalar_and_generic_paths_agree() {
        let scale = 0.037f32;
        let mut data: Vec<f32> = (0..20_000).map(|k| (k as f32 * 0.377).sin() * 6.0).collect();
        data.extend([f32::NAN, f32::INFINITY, -f32::INFINITY, 0.0, -0.0, 4.6, -4.7, 127.5 * scale]);
        let mut sliced = data.clone();
        fake_quant_slice(&mut sliced, scale);
        for (&x, &y) in data.iter().zip(&sliced) {
            let q = quantize_i8(x, scale);
            assert_eq!(y.to_bits(), fake_quant(x, scale).to_bits(), "x = {x}");
            assert_eq!(q as i32, quantize_value(x, scale, 0, -128, 127), "x = {x}");
            // The reference formula written with std's rounding.
            let reference = if x.is_nan() { 0 } else { ((x / scale).round_ties_even() as i64).clamp(-128, 127) };
            assert_eq!(q as i64, reference, "x = {x}");
        }
    }

    #[test]
    fn quantize_value_applies_zero_point_then_saturates() {
        // uint8 with zero point 128: 1.5 -> 2 + 128.
        assert_eq!(quantize_value(1.5, 1.0, 128, 0, 255), 130);
        assert_eq!(quantize_value(-200.0, 1.0, 128, 0, 255), 0);
        assert_eq!(quantize_value(200.0, 1.0, 128, 0, 255), 255);
        assert_eq!(quantize_value(f32::NAN, 1.0, 3, -128, 127), 3);
    }
}
