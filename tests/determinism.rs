//! The CPU executor's results do not depend on the thread count.

mod common;

use common::*;
use pillarq::exec::cpu::CpuExecutor;
use pillarq::model::Model;
use pillarq::pointpillars::{random_pillar_inputs, PointPillarsConfig};
use pillarq::tensor::Data;

#[test]
fn small_model_is_bit_identical_for_1_2_and_all_threads() {
    let m = Model::load(&bundled("pointpillars_small.onnx")).unwrap();
    let cfg = PointPillarsConfig::from_graph(&m.graph).unwrap();
    let inputs = random_pillar_inputs(&m.graph, cfg.as_ref(), 3, 0.6).unwrap();
    let run = |threads: usize| {
        let e = CpuExecutor::new(&m.graph, threads).unwrap();
        (e.threads(), e.run(&inputs).unwrap())
    };
    let (t1, one) = run(1);
    let (t2, two) = run(2);
    let (tall, all) = run(0);
    assert_eq!((t1, t2), (1, 2));
    assert!(tall >= 1);
    let bits = |o: &[(String, pillarq::tensor::Tensor)]| -> Vec<Vec<u32>> {
        o.iter()
            .map(|(_, t)| match &t.data {
                Data::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
                _ => panic!("float outputs expected"),
            })
            .collect()
    };
    assert_eq!(one.len(), 3);
    assert!(one[0].1.as_f32().unwrap().iter().any(|&v| v != 0.0));
    assert!(bits(&one) == bits(&two), "1 vs 2 threads differ");
    assert!(bits(&one) == bits(&all), "1 vs {tall} threads differ");
    // And a second run on the same executor gives the same bits.
    let e = CpuExecutor::new(&m.graph, 2).unwrap();
    assert!(bits(&e.run(&inputs).unwrap()) == bits(&two), "rerun differs");
}
