//! Safe wrapper over the `gemm` crate for row-major f32 matrices, always single-threaded: the
//! callers split work into fixed-size tiles, so every output element is computed by the same
//! sequence of operations whatever the thread count (determinism).

/// A row-major matrix view: element (r, c) at `data[r * rs + c * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    pub fn rows(data: &'a [f32], ld: usize) -> Self {
        MatRef { data, rs: ld, cs: 1 }
    }
    pub fn transposed(data: &'a [f32], ld: usize) -> Self {
        MatRef { data, rs: 1, cs: ld }
    }
}

/// `dst[m x n] (row stride ldd) = a[m x k] * b[k x n]` (+ dst if `accumulate`).
///
/// # Safety contract (checked)
/// Every index the product touches lies inside the given slices.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(m: usize, n: usize, k: usize, a: MatRef, b: MatRef, dst: &mut [f32], ldd: usize, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: usize, c: usize, rs: usize, cs: usize| (r.saturating_sub(1)) * rs + (c.saturating_sub(1)) * cs;
    assert!(k == 0 || (a.data.len() > last(m, k, a.rs, a.cs) && b.data.len() > last(k, n, b.rs, b.cs)));
    assert!(dst.len() > last(m, n, ldd, 1));
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * ldd..r * ldd + n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the asserts above bound every element the kernel reads or writes.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A raw pointer that tiles of one output can share across threads; each tile writes a
/// disjoint set of elements.
#[derive(Clone, Copy)]
pub struct SharedMut(pub *mut f32, pub usize);
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    pub fn new(v: &mut [f32]) -> Self {
        SharedMut(v.as_mut_ptr(), v.len())
    }
    /// # Safety
    /// Callers must guarantee that concurrent users touch disjoint elements.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self) -> &mut [f32] {
        std::slice::from_raw_parts_mut(self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_strides() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32 * 0.5 - 2.0).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32 - 1.0).collect(); // b stored transposed
        let mut c = vec![1.0f32; m * (n + 2)];
        sgemm(m, n, k, MatRef::rows(&a, k), MatRef::transposed(&bt, k), &mut c, n + 2, true);
        for r in 0..m {
            for col in 0..n {
                let want: f32 = 1.0 + (0..k).map(|i| a[r * k + i] * bt[col * k + i]).sum::<f32>();
                assert!((c[r * (n + 2) + col] - want).abs() < 1e-5);
            }
            assert_eq!(c[r * (n + 2) + n], 1.0, "padding column untouched");
        }
    }
}
