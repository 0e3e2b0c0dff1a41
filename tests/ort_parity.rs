//! pillarq's CPU executor against onnxruntime (the independent peer): the bundled PointPillars
//! models on random pillar inputs, and small handcrafted graphs covering the supported op set.
//! Acceptance metric per output: max |pq - ort| / max |ort| <= 1e-4.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::*;
use pillarq::model::Model;
use pillarq::pointpillars::{random_pillar_inputs, PointPillarsConfig, SplitMix64};
use pillarq::tensor::Tensor;

const BOUND: f32 = 1e-4;
const SEED: u64 = 7;
const THREADS: usize = 2;

fn pillar_inputs(model: &str) -> Named {
    let m = Model::load(&bundled(model)).expect("load");
    let cfg = PointPillarsConfig::from_graph(&m.graph).expect("metadata");
    let inputs = random_pillar_inputs(&m.graph, cfg.as_ref(), SEED, 0.6).expect("inputs");
    let k = inputs[2].1.to_i64_vec().unwrap()[0];
    assert!(k > 0, "no valid pillars");
    inputs
}

#[test]
fn small_matches_onnxruntime() {
    let path = bundled("pointpillars_small.onnx");
    let inputs = pillar_inputs("pointpillars_small.onnx");
    let ort = ort_run(&path, &inputs, THREADS);
    let pq = pq_run(&path, &inputs, THREADS);
    assert_close("small", &pq, &ort, BOUND);
}

/// ORT's outputs for the standard kitti model (computed once, shared by two tests).
fn kitti_reference() -> &'static (Named, HashMap<String, Tensor>) {
    static REF: OnceLock<(Named, HashMap<String, Tensor>)> = OnceLock::new();
    REF.get_or_init(|| {
        let inputs = pillar_inputs("pointpillars_kitti.onnx");
        let ort = ort_run(&bundled("pointpillars_kitti.onnx"), &inputs, THREADS);
        (inputs, ort)
    })
}

#[test]
fn kitti_matches_onnxruntime() {
    let (inputs, ort) = kitti_reference();
    let pq = pq_run(&bundled("pointpillars_kitti.onnx"), inputs, THREADS);
    assert_close("kitti", &pq, ort, BOUND);
}

#[test]
fn kitti_cudapp_matches_onnxruntime_on_standard_kitti() {
    let (inputs, ort) = kitti_reference();
    let pq = pq_run(&bundled("pointpillars_kitti_cudapp.onnx"), inputs, THREADS);
    assert_close("kitti_cudapp vs ort(kitti)", &pq, ort, BOUND);
}

/// Writes `model` to a temp dir, runs it in both runtimes and compares.
fn check_handcrafted(label: &str, model: pillarq::onnx::proto::ModelProto, inputs: Named) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), &format!("{label}.onnx"), &model);
    let ort = ort_run(&path, &inputs, THREADS);
    let pq = pq_run(&path, &inputs, THREADS);
    assert_close(label, &pq, &ort, BOUND);
}

#[test]
fn conv_bias_asymmetric_pads_stride2_group2_bn_relu() {
    let mut rng = SplitMix64::new(11);
    let w = rand_f32(&mut rng, 6 * 2 * 9, -0.5, 0.5);
    let b = rand_f32(&mut rng, 6, -0.5, 0.5);
    let mut inits = vec![init_f32("W", &[6, 2, 3, 3], &w), init_f32("B", &[6], &b)];
    inits.extend(bn_inits(&mut rng, "bn", 6));
    let nodes = vec![
        node(
            "Conv",
            "/conv/Conv",
            &["x", "W", "B"],
            &["c"],
            vec![
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("strides", &[2, 2]),
                attr_ints("pads", &[0, 1, 2, 1]),
                attr_i("group", 2),
            ],
        ),
        bn_node("bn", "c", "n"),
        node("Relu", "/relu/Relu", &["n"], &["y"], vec![]),
    ];
    // H: (9 + 0 + 2 - 3) / 2 + 1 = 5; W: (10 + 1 + 1 - 3) / 2 + 1 = 5.
    let model = build_model(
        nodes,
        inits,
        vec![vi("x", FLOAT, Some(&[1, 4, 9, 10]))],
        vec![vi("y", FLOAT, Some(&[1, 6, 5, 5]))],
    );
    let x = rand_tensor(&mut rng, &[1, 4, 9, 10], -1.0, 1.0);
    check_handcrafted("conv_bn_relu", model, vec![("x".into(), x)]);
}

#[test]
fn pfn_matmul_transpose_bn_transpose_relu_reducemax() {
    let (p, m, f, c) = (50, 32, 10, 16);
    let mut rng = SplitMix64::new(12);
    let w = rand_f32(&mut rng, f * c, -0.5, 0.5);
    let mut inits = vec![init_f32("W", &[f, c], &w)];
    inits.extend(bn_inits(&mut rng, "bn", c));
    let nodes = vec![
        node("MatMul", "/pfn/linear/MatMul", &["x", "W"], &["mm"], vec![]),
        node("Transpose", "/pfn/Transpose", &["mm"], &["t1"], vec![attr_ints("perm", &[0, 2, 1])]),
        bn_node("bn", "t1", "n"),
        node("Transpose", "/pfn/Transpose_1", &["n"], &["t2"], vec![attr_ints("perm", &[0, 2, 1])]),
        node("Relu", "/pfn/Relu", &["t2"], &["r"], vec![]),
        node("ReduceMax", "/pfn/ReduceMax", &["r"], &["y"], vec![attr_ints("axes", &[1]), attr_i("keepdims", 0)]),
    ];
    let model = build_model(nodes, inits, vec![vi("x", FLOAT, Some(&[p, m, f]))], vec![vi("y", FLOAT, Some(&[p, c]))]);
    let x = rand_tensor(&mut rng, &[p, m, f], -2.0, 2.0);
    check_handcrafted("pfn", model, vec![("x".into(), x)]);
}

#[test]
fn conv_transpose_k3_s2_pads1_bn() {
    let mut rng = SplitMix64::new(13);
    let w = rand_f32(&mut rng, 8 * 4 * 9, -0.5, 0.5);
    let mut inits = vec![init_f32("W", &[8, 4, 3, 3], &w)];
    inits.extend(bn_inits(&mut rng, "bn", 4));
    let nodes = vec![
        node(
            "ConvTranspose",
            "/deconv/ConvTranspose",
            &["x", "W"],
            &["d"],
            vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])],
        ),
        bn_node("bn", "d", "y"),
    ];
    // (5 - 1) * 2 + 3 - 2 = 9, (6 - 1) * 2 + 3 - 2 = 11.
    let model = build_model(
        nodes,
        inits,
        vec![vi("x", FLOAT, Some(&[1, 8, 5, 6]))],
        vec![vi("y", FLOAT, Some(&[1, 4, 9, 11]))],
    );
    let x = rand_tensor(&mut rng, &[1, 8, 5, 6], -1.0, 1.0);
    check_handcrafted("conv_transpose_bn", model, vec![("x".into(), x)]);
}

#[test]
fn qdq_activation_per_tensor_and_weight_per_axis_conv() {
    let mut rng = SplitMix64::new(14);
    let (cin, cout) = (4, 6);
    let w = rand_f32(&mut rng, cout * cin * 9, -0.5, 0.5);
    // Per-output-channel weight scales: max |w| / 127 per channel.
    let wscale: Vec<f32> =
        (0..cout).map(|o| w[o * cin * 9..(o + 1) * cin * 9].iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0).collect();
    let b = rand_f32(&mut rng, cout, -0.1, 0.1);
    let inits = vec![
        init_f32("W", &[cout, cin, 3, 3], &w),
        init_f32("w_scale", &[cout], &wscale),
        init_i8("w_zp", &[cout], &vec![0; cout]),
        init_f32("B", &[cout], &b),
        init_f32("x_scale", &[], &[0.0173]),
        init_i8("x_zp", &[], &[3]),
    ];
    let nodes = vec![
        node("QuantizeLinear", "/x/QuantizeLinear", &["x", "x_scale", "x_zp"], &["xq"], vec![]),
        node("DequantizeLinear", "/x/DequantizeLinear", &["xq", "x_scale", "x_zp"], &["xdq"], vec![]),
        node("QuantizeLinear", "/w/QuantizeLinear", &["W", "w_scale", "w_zp"], &["wq"], vec![attr_i("axis", 0)]),
        node("DequantizeLinear", "/w/DequantizeLinear", &["wq", "w_scale", "w_zp"], &["wdq"], vec![attr_i("axis", 0)]),
        node(
            "Conv",
            "/conv/Conv",
            &["xdq", "wdq", "B"],
            &["y"],
            vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("pads", &[1, 1, 1, 1])],
        ),
    ];
    let model = build_model(
        nodes,
        inits,
        vec![vi("x", FLOAT, Some(&[1, cin, 7, 7]))],
        vec![
            vi("y", FLOAT, Some(&[1, cout, 7, 7])),
            vi("xdq", FLOAT, Some(&[1, cin, 7, 7])),
            vi("xq", INT8, Some(&[1, cin, 7, 7])),
        ],
    );
    // Range wide enough to saturate at both ends (x / 0.0173 + 3 beyond [-128, 127]).
    let x = rand_tensor(&mut rng, &[1, cin, 7, 7], -2.5, 2.5);
    let xs = x.as_f32().unwrap();
    assert!(xs.iter().any(|&v| v / 0.0173 + 3.0 > 127.5) && xs.iter().any(|&v| v / 0.0173 + 3.0 < -128.5));
    check_handcrafted("qdq_conv", model, vec![("x".into(), x)]);
}

#[test]
fn gemm_transb_bias_sigmoid() {
    let mut rng = SplitMix64::new(15);
    let (m, k, n) = (5, 12, 7);
    let inits = vec![
        init_f32("B", &[n, k], &rand_f32(&mut rng, n * k, -0.5, 0.5)),
        init_f32("C", &[n], &rand_f32(&mut rng, n, -0.5, 0.5)),
    ];
    let nodes = vec![
        node("Gemm", "/fc/Gemm", &["a", "B", "C"], &["g"], vec![attr_i("transB", 1)]),
        node("Sigmoid", "/fc/Sigmoid", &["g"], &["y"], vec![]),
    ];
    let model = build_model(
        nodes,
        inits,
        vec![vi("a", FLOAT, Some(&[m, k]))],
        vec![vi("y", FLOAT, Some(&[m, n])), vi("g", FLOAT, Some(&[m, n]))],
    );
    let a = rand_tensor(&mut rng, &[m, k], -2.0, 2.0);
    check_handcrafted("gemm_sigmoid", model, vec![("a".into(), a)]);
}

#[test]
fn gemm_alpha_beta_transa() {
    let mut rng = SplitMix64::new(16);
    let (m, k, n) = (4, 9, 6);
    let inits = vec![
        init_f32("B", &[k, n], &rand_f32(&mut rng, n * k, -0.5, 0.5)),
        init_f32("C", &[1, n], &rand_f32(&mut rng, n, -0.5, 0.5)),
    ];
    let nodes = vec![node(
        "Gemm",
        "/fc/Gemm",
        &["a", "B", "C"],
        &["y"],
        vec![attr_i("transA", 1), attr_f("alpha", 0.7), attr_f("beta", 1.3)],
    )];
    let model = build_model(nodes, inits, vec![vi("a", FLOAT, Some(&[k, m]))], vec![vi("y", FLOAT, Some(&[m, n]))]);
    let a = rand_tensor(&mut rng, &[k, m], -2.0, 2.0);
    check_handcrafted("gemm_alpha_beta", model, vec![("a".into(), a)]);
}

#[test]
fn shape_and_index_ops() {
    let mut rng = SplitMix64::new(17);
    let inits = vec![
        // Slice x[:, 1:5:2] -> [4, 2]
        init_i64("s_starts", &[1], &[1]),
        init_i64("s_ends", &[1], &[5]),
        init_i64("s_axes", &[1], &[1]),
        init_i64("s_steps", &[1], &[2]),
        // Gather rows 3, 0, -2 -> [3, 6]; then columns 4.. -> [3, 2]
        init_i64("g_idx", &[3], &[3, 0, -2]),
        init_i64("g2_starts", &[1], &[4]),
        init_i64("g2_ends", &[1], &[i64::MAX]),
        init_i64("g2_axes", &[1], &[1]),
        init_i64("axes0", &[1], &[0]),
        init_f32("zero", &[], &[0.0]),
        init_f32("ten", &[], &[10.0]),
        // ScatterND rows 1 and 4 of [7, 2] with x[0:2, 0:2]
        init_i64("nd_idx", &[2, 1], &[1, 4]),
        init_i64("u_starts", &[2], &[0, 0]),
        init_i64("u_ends", &[2], &[2, 2]),
        // ScatterElements along axis 0 with x[2:4, 4:6] (no duplicate targets per column)
        init_i64("se_idx", &[2, 2], &[0, 3, 6, 2]),
        init_i64("v_starts", &[2], &[2, 4]),
        init_i64("v_ends", &[2], &[4, 6]),
    ];
    let nodes = vec![
        node("Slice", "slice", &["x", "s_starts", "s_ends", "s_axes", "s_steps"], &["s"], vec![]),
        node("Gather", "gather", &["x", "g_idx"], &["g"], vec![attr_i("axis", 0)]),
        node("Slice", "slice_g", &["g", "g2_starts", "g2_ends", "g2_axes"], &["gs"], vec![]),
        node("Concat", "concat", &["s", "gs"], &["c"], vec![attr_i("axis", 0)]),
        node("Unsqueeze", "unsqueeze", &["c", "axes0"], &["u"], vec![]),
        node("Squeeze", "squeeze", &["u", "axes0"], &["sq"], vec![]),
        node("Greater", "greater", &["sq", "zero"], &["cond"], vec![]),
        node("Mul", "mul10", &["sq", "ten"], &["sq10"], vec![]),
        node("Cast", "cast_i", &["sq10"], &["ci"], vec![attr_i("to", INT32 as i64)]),
        node("Cast", "cast_f", &["ci"], &["cf"], vec![attr_i("to", FLOAT as i64)]),
        node("Where", "where", &["cond", "sq", "cf"], &["w"], vec![]),
        node("Slice", "slice_u", &["x", "u_starts", "u_ends"], &["upd"], vec![]),
        node("ScatterND", "scatter_nd", &["w", "nd_idx", "upd"], &["snd"], vec![]),
        node("Slice", "slice_v", &["x", "v_starts", "v_ends"], &["upd2"], vec![]),
        node("ScatterElements", "scatter_el", &["snd", "se_idx", "upd2"], &["y"], vec![attr_i("axis", 0)]),
    ];
    let model = build_model(
        nodes,
        inits,
        vec![vi("x", FLOAT, Some(&[4, 6]))],
        vec![vi("y", FLOAT, Some(&[7, 2])), vi("ci", INT32, Some(&[7, 2])), vi("cond", BOOL, Some(&[7, 2]))],
    );
    let x = rand_tensor(&mut rng, &[4, 6], -3.0, 3.0);
    // Both branches of Where must be taken.
    let xs = x.as_f32().unwrap();
    assert!(xs.iter().any(|&v| v > 0.0) && xs.iter().any(|&v| v < 0.0));
    check_handcrafted("shape_index_ops", model.clone(), vec![("x".into(), x.clone())]);

    // And the result is what the ops mean, not only what ORT says.
    let dir = tempfile::tempdir().unwrap();
    let path = write_model(dir.path(), "m.onnx", &model);
    let pq = pq_run(&path, &vec![("x".into(), x.clone())], 1);
    let y = pq[0].1.as_f32().unwrap();
    let at = |r: usize, c: usize| xs[r * 6 + c];
    assert_eq!(pq[0].1.shape, vec![7, 2]);
    // ScatterND: rows 1 and 4 are x[0, 0:2] and x[1, 0:2].
    assert_eq!(&y[2..4], &[at(0, 0), at(0, 1)]);
    assert_eq!(&y[8..10], &[at(1, 0), at(1, 1)]);
    // ScatterElements (axis 0): y[0,0] = x[2,4], y[3,1] = x[2,5], y[6,0] = x[3,4], y[2,1] = x[3,5].
    assert_eq!([y[0], y[7], y[12], y[5]], [at(2, 4), at(2, 5), at(3, 4), at(3, 5)]);
    // Row 5 comes from Gather row 0 (x[0, 4:6]) through Where: v if v > 0 else trunc(10 v).
    for (j, &v) in [at(0, 4), at(0, 5)].iter().enumerate() {
        let want = if v > 0.0 { v } else { ((v * 10.0) as i32) as f32 };
        assert_eq!(y[10 + j], want);
    }
}

/// The pillar scatter as PyTorch exports it (`ConstantOfShape` zeros, `ScatterND` into rows,
/// `Slice` off the dump row, `Transpose`, `Reshape` to the canvas) runs as one fused node
/// (`graph::fold::SCATTER_ROWS_T`): equal to onnxruntime, equal bit for bit to the unfused ops
/// when rows repeat (the last update wins), and an index outside the rows is an error either way.
#[test]
fn pillar_scatter_chain_fuses_and_matches() {
    use pillarq::exec::cpu::CpuExecutor;
    use pillarq::graph::fold::SCATTER_ROWS_T;
    let (p, c) = (6, 3);
    // `exposed`: the Slice's output is also a graph output, which keeps the chain unfused.
    let model = |exposed: bool| {
        let inits = vec![
            init_i64("zshape", &[2], &[10, c as i64]),
            init_i64("starts", &[1], &[2]),
            init_i64("ends", &[1], &[-1]),
            init_i64("axes", &[1], &[0]),
            init_i64("canvas", &[4], &[1, c as i64, 7, 1]),
        ];
        let nodes = vec![
            node("ConstantOfShape", "zeros", &["zshape"], &["z"], vec![]),
            node("ScatterND", "scatter", &["z", "idx", "feats"], &["s"], vec![]),
            node("Slice", "slice", &["s", "starts", "ends", "axes"], &["sl"], vec![]),
            node("Transpose", "transpose", &["sl"], &["t"], vec![attr_ints("perm", &[1, 0])]),
            node("Reshape", "reshape", &["t", "canvas"], &["y"], vec![]),
        ];
        let mut outputs = vec![vi("y", FLOAT, Some(&[1, c, 7, 1]))];
        if exposed {
            outputs.push(vi("sl", FLOAT, Some(&[7, c])));
        }
        build_model(nodes, inits, vec![vi("feats", FLOAT, Some(&[p, c])), vi("idx", INT64, Some(&[p, 1]))], outputs)
    };
    let inputs = |idx: &[i64]| -> Named {
        vec![
            ("feats".into(), rand_tensor(&mut SplitMix64::new(5), &[p, c], -2.0, 2.0)),
            ("idx".into(), Tensor::i64(vec![p, 1], idx.to_vec())),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    let run = |exposed: bool, idx: &[i64]| {
        let path = write_model(dir.path(), &format!("scatter-{exposed}.onnx"), &model(exposed));
        let m = Model::load(&path).unwrap();
        let exec = CpuExecutor::new(&m.graph, THREADS).unwrap();
        let fused = exec.graph().nodes.iter().any(|n| n.op_type == SCATTER_ROWS_T);
        assert_eq!(fused, !exposed, "fused only when the chain's edges have no other reader");
        exec.run(&inputs(idx)).map(|out| out.into_iter().find(|(n, _)| n == "y").unwrap().1)
    };
    // Rows 0-1 and 9 fall outside the slice [2, 9); -1 is row 9.
    let distinct = [8, 0, 2, -1, 5, 1];
    check_handcrafted("pillar_scatter", model(false), inputs(&distinct));
    let y = run(false, &distinct).unwrap();
    let f = inputs(&distinct)[0].1.as_f32().unwrap().to_vec();
    let yv = y.as_f32().unwrap();
    for ch in 0..c {
        let plane = &yv[ch * 7..ch * 7 + 7];
        assert_eq!(plane, &[f[2 * c + ch], 0.0, 0.0, f[4 * c + ch], 0.0, 0.0, f[ch]], "channel {ch}");
    }
    // Repeated rows: the same bits as ScatterND's last-wins order.
    let repeated = [5, 5, 3, -5, 5, 7];
    let (a, b) = (run(false, &repeated).unwrap(), run(true, &repeated).unwrap());
    assert_eq!(a.shape, b.shape);
    assert!(a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()).all(|(x, y)| x.to_bits() == y.to_bits()));
    // Out of range: both refuse.
    for exposed in [false, true] {
        let err = run(exposed, &[1, 2, 10, 3, 4, 5]).unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}
