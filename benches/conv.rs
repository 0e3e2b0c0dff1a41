//! The measured rule behind `exec::cpu::winograd::tile_for`: every 3x3 stride-1 convolution
//! shape of the bundled models (and the stride-2 ones for reference), timed through im2col +
//! GEMM and through Winograd F(4x4), single-threaded, best of several runs.
//!
//! ```sh
//! cargo bench --bench conv            # all shapes
//! cargo bench --bench conv -- 256     # shapes whose line contains "256"
//! ```

use std::time::Instant;

use pillarq::exec::cpu::conv::{
    conv2d, conv2d_pointwise_group, conv_transpose2d, Conv2dParams, ConvTranspose2dParams, PointwiseMember,
};
use pillarq::exec::cpu::gemm::{sgemm, MatRef};
use pillarq::exec::cpu::int8conv::{conv2d_int8, Int8Conv};
use pillarq::exec::cpu::winograd::{conv2d_winograd, WinogradFilter};
use pillarq::graph::Activation;
use pillarq::pointpillars::SplitMix64;

// The binary's allocator and setting (src/main.rs): freed outputs are reused, not faulted in anew.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn best_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    // SAFETY: a process-wide allocator option set before any work; no pointers involved.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    // (model, cin, cout, output h, output w)
    let shapes = [
        ("small", 32, 32, 124, 108),
        ("small", 64, 64, 62, 54),
        ("small", 128, 128, 31, 27),
        ("kitti", 64, 64, 248, 216),
        ("kitti", 128, 128, 124, 108),
        ("kitti", 256, 256, 62, 54),
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread pool");
    println!("| model | cin -> cout | output | im2col ms | F(4x4) ms | im2col / F(4x4) |");
    println!("|---|---|---|---:|---:|---:|");
    for (model, cin, cout, oh, ow) in shapes {
        let line = format!("| {model} | {cin} -> {cout} | {oh}x{ow} |");
        if filter.as_deref().is_some_and(|f| !line.contains(f)) {
            continue;
        }
        let mut rng = SplitMix64::new(1);
        let xs = [1, cin, oh, ow];
        let x: Vec<f32> = (0..cin * oh * ow).map(|_| rng.unit() - 0.5).collect();
        let w: Vec<f32> = (0..cout * cin * 9).map(|_| rng.unit() - 0.5).collect();
        let b: Vec<f32> = (0..cout).map(|_| rng.unit() - 0.5).collect();
        let p = Conv2dParams { group: 1, kernel: [3, 3], strides: [1, 1], dilations: [1, 1], pads: [1; 4] };
        let runs = 7;
        let im2col = pool.install(|| {
            best_ms(runs, || {
                std::hint::black_box(conv2d(&x, xs, &w, cout, Some(&b), &p, Activation::Relu, None));
            })
        });
        let wino = || {
            let f = WinogradFilter::new(&w, cout, cin).expect("a 3x3 filter");
            pool.install(|| {
                best_ms(runs, || {
                    std::hint::black_box(conv2d_winograd(&x, xs, &f, Some(&b), [1; 4], Activation::Relu, None));
                })
            })
        };
        let f4 = wino();
        println!("{line} {im2col:.2} | {f4:.2} | {:.2} |", im2col / f4);
    }
    int8(&pool, filter.as_deref());
    heads(&pool, filter.as_deref());
    deconvs(&pool, filter.as_deref());
}

/// The necks' kernel = stride transposed convolutions, against the GEMM of their columns alone
/// (what they cost without placing the columns in the output).
fn deconvs(pool: &rayon::ThreadPool, filter: Option<&str>) {
    // (name, cin, cout, kernel = stride, input h, w)
    let shapes = [
        ("small deblocks.0", 32, 32, 2, 124, 108),
        ("small deblocks.1", 64, 32, 4, 62, 54),
        ("small deblocks.2", 128, 32, 8, 31, 27),
        ("kitti deblocks.0", 64, 128, 1, 248, 216),
        ("kitti deblocks.1", 128, 128, 2, 124, 108),
        ("kitti deblocks.2", 256, 128, 4, 62, 54),
    ];
    println!();
    println!("| deconvolution | ms | columns' GEMM alone ms | ratio |");
    println!("|---|---:|---:|---:|");
    for (name, cin, cout, k, h, w) in shapes {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let mut rng = SplitMix64::new(4);
        let xs = [1, cin, h, w];
        let x: Vec<f32> = (0..cin * h * w).map(|_| rng.unit() - 0.5).collect();
        let wt: Vec<f32> = (0..cin * cout * k * k).map(|_| rng.unit() - 0.5).collect();
        let b: Vec<f32> = (0..cout).map(|_| rng.unit() - 0.5).collect();
        let p = ConvTranspose2dParams {
            group: 1,
            kernel: [k, k],
            strides: [k, k],
            dilations: [1, 1],
            pads: [0; 4],
            output_padding: [0, 0],
        };
        let rows = cout * k * k;
        let mut col = vec![0f32; rows * h * w];
        let (deconv, gemm) = pool.install(|| {
            let deconv = best_ms(9, || {
                std::hint::black_box(conv_transpose2d(&x, xs, &wt, cout, Some(&b), &p, Activation::Relu, None));
            });
            let gemm = best_ms(9, || {
                sgemm(rows, h * w, cin, MatRef::transposed(&wt, rows), MatRef::rows(&x, h * w), &mut col, h * w, false);
                std::hint::black_box(&col);
            });
            (deconv, gemm)
        });
        println!("| {name} ({cin} -> {cout}, {k}x{k}) | {deconv:.2} | {gemm:.2} | {:.2} |", deconv / gemm);
    }
}

/// A detection head's three pointwise convolutions of one map: one by one, and grouped
/// (`conv2d_pointwise_group`: each pixel tile read once for the three).
fn heads(pool: &rayon::ThreadPool, filter: Option<&str>) {
    println!();
    println!("| heads | one by one ms | grouped ms | ratio |");
    println!("|---|---:|---:|---:|");
    for (name, cin) in [("kitti heads", 384), ("small heads", 96)] {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let (h, w) = (248, 216);
        let mut rng = SplitMix64::new(3);
        let xs = [1, cin, h, w];
        let x: Vec<f32> = (0..cin * h * w).map(|_| rng.unit() - 0.5).collect();
        let heads: Vec<(Vec<f32>, usize, Vec<f32>)> = [18, 42, 12]
            .iter()
            .map(|&cout| {
                let wt = (0..cout * cin).map(|_| rng.unit() - 0.5).collect();
                (wt, cout, (0..cout).map(|_| rng.unit() - 0.5).collect())
            })
            .collect();
        let p = Conv2dParams { group: 1, kernel: [1, 1], strides: [1, 1], dilations: [1, 1], pads: [0; 4] };
        let members: Vec<PointwiseMember> = heads
            .iter()
            .map(|(wt, cout, b)| PointwiseMember { w: wt, cout: *cout, bias: Some(b), act: Activation::None })
            .collect();
        let (separate, grouped) = pool.install(|| {
            let separate = best_ms(9, || {
                for (wt, cout, b) in &heads {
                    std::hint::black_box(conv2d(&x, xs, wt, *cout, Some(b), &p, Activation::None, None));
                }
            });
            let grouped = best_ms(9, || {
                std::hint::black_box(conv2d_pointwise_group(&x, xs, &members));
            });
            (separate, grouped)
        });
        println!("| {name} ({cin} -> 18 + 42 + 12) | {separate:.2} | {grouped:.2} | {:.2} |", separate / grouped);
    }
}

/// INT8 layers in integers (`int8conv`) against the FP32 kernels of the same shape.
fn int8(pool: &rayon::ThreadPool, filter: Option<&str>) {
    // (name, cin, cout, kernel, stride, pads, input h, w)
    let shapes = [
        ("kitti blocks.0.1", 64, 64, 3, 2, [0, 0, 1, 1], 496, 432),
        ("kitti blocks.0.4", 64, 64, 3, 1, [1; 4], 248, 216),
        ("kitti blocks.2.4", 256, 256, 3, 1, [1; 4], 62, 54),
        ("kitti head box", 384, 42, 1, 1, [0; 4], 248, 216),
        ("small head box", 96, 42, 1, 1, [0; 4], 248, 216),
    ];
    println!();
    println!("| layer | FP32 ms | INT8 ms | FP32 / INT8 |");
    println!("|---|---:|---:|---:|");
    for (name, cin, cout, k, s, pads, h, w) in shapes {
        if filter.is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let mut rng = SplitMix64::new(2);
        let xs = [1, cin, h, w];
        let x: Vec<f32> = (0..cin * h * w).map(|_| rng.unit() - 0.5).collect();
        let wt: Vec<f32> = (0..cout * cin * k * k).map(|_| rng.unit() - 0.5).collect();
        let q: Vec<i8> = wt.iter().map(|v| (v * 254.0) as i8).collect();
        let b: Vec<f32> = (0..cout).map(|_| rng.unit() - 0.5).collect();
        let p = Conv2dParams { group: 1, kernel: [k, k], strides: [s, s], dilations: [1, 1], pads };
        let layer = Int8Conv::new(&q, &[cout, cin, k, k], &vec![0.004; cout], 0.01, None).expect("a layer");
        let fp32 = if k == 3 && s == 1 && cin >= 64 && cout >= 64 {
            let f = WinogradFilter::new(&wt, cout, cin).expect("a 3x3 filter");
            pool.install(|| {
                best_ms(5, || {
                    std::hint::black_box(conv2d_winograd(&x, xs, &f, Some(&b), pads, Activation::Relu, None));
                })
            })
        } else {
            pool.install(|| {
                best_ms(5, || {
                    std::hint::black_box(conv2d(&x, xs, &wt, cout, Some(&b), &p, Activation::Relu, None));
                })
            })
        };
        let i8ms = pool.install(|| {
            best_ms(5, || {
                std::hint::black_box(conv2d_int8(&x, xs, &layer, Some(&b), &p, Activation::Relu, None));
            })
        });
        println!("| {name} | {fp32:.2} | {i8ms:.2} | {:.2} |", fp32 / i8ms);
    }
}
