//! Scoring precision plans by KITTI mAP, fast and resumably.
//!
//! Frame by frame, the network runs once in FP32 keeping every value; each plan then restarts
//! from that state and recomputes only what it changes (`CpuExecutor::run_from`). Frames are
//! grouped in chunks; a chunk's detections per plan go to the result cache when it finishes, and
//! a plan's AP is computed once all its chunks exist. `--shard i/n` owns the chunks whose index
//! is i modulo n, for every plan (so the FP32 reuse stays within a process).

use std::time::Instant;

use super::cache::{CachedDet, ChunkResult, ProxySums, ResultCache};
use super::{sha256_hex, EvalSet, Shard};
use crate::error::{Error, Result};
use crate::exec::cpu::CompiledPlan;
use crate::graph::layers::Layer;
use crate::kitti::eval::{evaluate, ApTable, EvalObject, FrameEval};
use crate::pointpillars::detect::Detector;
use crate::progress::{Progress, Task};
use crate::quant::plan::{Precision, PrecisionPlan};
use crate::tensor::Tensor;

/// A plan's score.
#[derive(Debug, Clone)]
pub struct PlanResult {
    pub map: f64,
    pub table: ApTable,
    pub proxy: ProxySums,
}

/// Work counters of one process (for the sweep-cost report).
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// FP32 base runs (one per frame and chunk with work) and their time.
    pub base_runs: usize,
    pub base_seconds: f64,
    /// Plan runs restarted from a base, and their time.
    pub plan_runs: usize,
    pub plan_seconds: f64,
    /// Executor steps computed by plan runs, and what full runs would have computed.
    pub steps_run: usize,
    pub steps_full: usize,
}

impl Cost {
    /// Time spent over the time of running every plan in full (base run time as a full pass).
    pub fn time_ratio(&self) -> Option<f64> {
        if self.base_runs == 0 || self.plan_runs == 0 {
            return None;
        }
        let full_pass = self.base_seconds / self.base_runs as f64;
        Some((self.base_seconds + self.plan_seconds) / (self.plan_runs as f64 * full_pass))
    }
}

pub struct Evaluator<'a> {
    pub detector: &'a Detector,
    pub layers: &'a [Layer],
    pub set: &'a EvalSet,
    pub cache: &'a ResultCache,
    pub model_hash: &'a str,
    /// Frames per cache chunk.
    pub chunk: usize,
    pub shard: Shard,
    /// Where the frames' progress goes (`progress::Silent` for none).
    pub progress: &'a dyn Progress,
    pub cost: std::cell::Cell<Cost>,
}

/// How often a running chunk saves the frames it has done (see `ResultCache::write_partial`).
const CHECKPOINT_SECONDS: f64 = 2.0;

impl<'a> Evaluator<'a> {
    /// The executor's numerics revision, the model, its pre/post-processing configuration (a
    /// `--config` changes the results), the frames and the chunking.
    fn eval_key(&self) -> String {
        let cfg = crate::pointpillars::config::to_metadata_json(&self.detector.cfg);
        let image = self.detector.image_size.map(|[w, h]| format!("|image {w}x{h}")).unwrap_or_default();
        sha256_hex(
            format!(
                "pillarq-eval-v2|numerics {}|{}|{cfg}{image}|{}|{}",
                crate::numerics::REVISION,
                self.model_hash,
                self.set.key(),
                self.chunk
            )
            .as_bytes(),
        )
    }

    pub fn plan_key(&self, plan: &PrecisionPlan) -> String {
        sha256_hex(plan.canonical(self.layers).as_bytes())
    }

    fn chunks(&self) -> usize {
        self.set.ids.len().div_ceil(self.chunk)
    }

    /// Scores `plans`: `Some` for every plan whose chunks are all in the cache after this
    /// process did its share, `None` for plans still waiting on other shards.
    pub fn evaluate(&self, plans: &[PrecisionPlan], what: &str) -> Result<Vec<Option<PlanResult>>> {
        let ek = self.eval_key();
        let keys: Vec<String> = plans.iter().map(|p| self.plan_key(p)).collect();
        let nchunks = self.chunks();
        let todo: Vec<(usize, Vec<usize>)> = (0..nchunks)
            .filter(|&c| self.shard.owns(c))
            .map(|c| (c, (0..plans.len()).filter(|&p| !self.cache.has(&ek, &keys[p], c)).collect::<Vec<_>>()))
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        if !todo.is_empty() {
            let frames: usize = todo.iter().map(|(c, _)| self.chunk_ids(*c).len()).sum();
            let pb = self.progress.start(what, frames as u64);
            let mut compiled: Vec<Option<CompiledPlan>> = vec![None; plans.len()];
            for (c, ps) in &todo {
                for &p in ps {
                    if compiled[p].is_none() {
                        compiled[p] = Some(self.compile(&plans[p])?);
                    }
                }
                let pkeys: Vec<&str> = ps.iter().map(|&p| keys[p].as_str()).collect();
                let results = self.run_chunk(*c, ps, plans, &compiled, pb.as_ref(), (&ek, &pkeys))?;
                for (&p, r) in ps.iter().zip(&results) {
                    self.cache.write(&ek, &keys[p], *c, r)?;
                    self.cache.remove_partial(&ek, &keys[p], *c);
                }
            }
        }
        keys.iter().map(|k| self.collect(&ek, k, nchunks)).collect()
    }

    fn chunk_ids(&self, c: usize) -> &[String] {
        let end = ((c + 1) * self.chunk).min(self.set.ids.len());
        &self.set.ids[c * self.chunk..end]
    }

    fn compile(&self, plan: &PrecisionPlan) -> Result<CompiledPlan> {
        let resolved = plan.resolve(self.layers).map_err(Error::Other)?;
        self.detector.executor().compile_plan(&resolved)
    }

    fn run_chunk(
        &self,
        c: usize,
        ps: &[usize],
        plans: &[PrecisionPlan],
        compiled: &[Option<CompiledPlan>],
        pb: &dyn Task,
        (ek, pkeys): (&str, &[&str]),
    ) -> Result<Vec<ChunkResult>> {
        let exec = self.detector.executor();
        let ids = self.chunk_ids(c);
        // Frames an interrupted run finished (a prefix of the chunk), per plan: resumed, not redone.
        let mut out: Vec<ChunkResult> = pkeys
            .iter()
            .map(|k| {
                self.cache.read_partial(ek, k, c).filter(|r| ids.starts_with(&r.frames)).unwrap_or(ChunkResult {
                    frames: Vec::new(),
                    dets: Vec::new(),
                    proxy: ProxySums::default(),
                })
            })
            .collect();
        let start = out.iter().map(|r| r.frames.len()).min().unwrap_or(0);
        pb.inc(start as u64);
        let mut checkpoint = Instant::now();
        let probes: Vec<Option<String>> = ps
            .iter()
            .map(|&p| {
                let changed: Vec<&Layer> =
                    self.layers.iter().filter(|l| plans[p].precision_of(&l.name) != Precision::Fp32).collect();
                match changed.as_slice() {
                    [one] => exec.layer_edges(&one.name).map(|(_, o)| o.to_string()),
                    _ => None,
                }
            })
            .collect();
        let mut cost = self.cost.get();
        for (i, id) in ids.iter().enumerate().skip(start) {
            let t0 = Instant::now();
            let (inputs, calib) = self.detector.frame_inputs(&self.set.data, id)?;
            let base = exec.run_keep(&inputs)?;
            let base_out = exec.outputs_of(&base)?;
            cost.base_runs += 1;
            cost.base_seconds += t0.elapsed().as_secs_f64();
            for (k, &p) in ps.iter().enumerate() {
                if out[k].frames.len() > i {
                    continue; // this plan did frame i before the interruption
                }
                let t1 = Instant::now();
                let plan = compiled[p].as_ref().ok_or_else(|| Error::Other("plan not compiled".into()))?;
                let state = exec.run_from(&base, plan, false)?;
                cost.plan_runs += 1;
                cost.steps_run += state.steps_run;
                cost.steps_full += base.steps_run;
                let mut proxy = ProxySums::default();
                if let Some(edge) = &probes[k] {
                    if let (Some(a), Some(b)) = (exec.value(&state, edge), exec.value(&base, edge)) {
                        let (s, n) = exec.install(|| signal_noise(b, a));
                        proxy.layer_signal += s;
                        proxy.layer_noise += n;
                        proxy.layer_count += b.len() as u64;
                    }
                }
                // The state's outputs moved out, not copied (the run computed them afresh).
                let outs = exec.outputs(state)?;
                for ((_, a), (_, b)) in outs.iter().zip(&base_out) {
                    let (s, n) = exec.install(|| signal_noise(b, a));
                    proxy.head_signal += s;
                    proxy.head_noise += n;
                }
                let dets = self.detector.decode_frame(id, &outs, &calib)?;
                out[k].dets.push(dets.objects.iter().map(|o| CachedDet::from(&EvalObject::from(o))).collect());
                out[k].frames.push(id.clone());
                out[k].proxy.add(&proxy);
                cost.plan_seconds += t1.elapsed().as_secs_f64();
            }
            pb.inc(1);
            // Every ~2 s, the frames so far: a run killed in its first chunk still makes progress.
            if i + 1 < ids.len() && checkpoint.elapsed().as_secs_f64() >= CHECKPOINT_SECONDS {
                for (r, k) in out.iter().zip(pkeys) {
                    self.cache.write_partial(ek, k, c, r)?;
                }
                checkpoint = Instant::now();
            }
        }
        self.cost.set(cost);
        Ok(out)
    }

    fn collect(&self, ek: &str, key: &str, nchunks: usize) -> Result<Option<PlanResult>> {
        if (0..nchunks).any(|c| !self.cache.has(ek, key, c)) {
            return Ok(None);
        }
        let mut frames = Vec::with_capacity(self.set.ids.len());
        let mut proxy = ProxySums::default();
        for c in 0..nchunks {
            let r = self.cache.read(ek, key, c)?;
            if r.frames != self.chunk_ids(c) {
                return Err(Error::Other(format!(
                    "{}: cached chunk lists other frames; delete the cache directory",
                    self.cache.chunk_path(ek, key, c).display()
                )));
            }
            proxy.add(&r.proxy);
            let base = c * self.chunk;
            for (i, d) in r.dets.iter().enumerate() {
                frames.push(FrameEval {
                    gt: self.set.gt[base + i].clone(),
                    dt: d.iter().map(CachedDet::to_eval).collect(),
                });
            }
        }
        let table = evaluate(&frames);
        Ok(Some(PlanResult { map: table.map(), table, proxy }))
    }
}

/// (sum of reference^2, sum of (value - reference)^2) over two same-shaped f32 tensors.
fn signal_noise(reference: &Tensor, value: &Tensor) -> (f64, f64) {
    use rayon::prelude::*;
    // Fixed chunks summed in order: the same bits for any thread count.
    const CHUNK: usize = 1 << 16;
    match (reference.as_f32(), value.as_f32()) {
        (Some(r), Some(v)) if r.len() == v.len() => {
            let parts: Vec<(f64, f64)> = r
                .par_chunks(CHUNK)
                .zip(v.par_chunks(CHUNK))
                .map(|(rc, vc)| {
                    // Eight interleaved sums per chunk, added in order at the end: independent
                    // chains instead of one f64 add waiting on the last (this was a tenth of a
                    // sensitivity sweep's time).
                    const LANES: usize = 8;
                    let (mut s, mut n) = ([0f64; LANES], [0f64; LANES]);
                    let (ra, rr) = rc.as_chunks::<LANES>();
                    let (va, vr) = vc.as_chunks::<LANES>();
                    for (a8, b8) in ra.iter().zip(va) {
                        for j in 0..LANES {
                            let d = (b8[j] - a8[j]) as f64;
                            s[j] += (a8[j] as f64) * (a8[j] as f64);
                            n[j] += d * d;
                        }
                    }
                    for (j, (&a, &b)) in rr.iter().zip(vr).enumerate() {
                        let d = (b - a) as f64;
                        s[j] += (a as f64) * (a as f64);
                        n[j] += d * d;
                    }
                    (s.iter().sum::<f64>(), n.iter().sum::<f64>())
                })
                .collect();
            parts.iter().fold((0.0, 0.0), |(s, n), (ps, pn)| (s + ps, n + pn))
        }
        _ => (0.0, 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane sums agree with one long sum, for lengths across chunks and not a multiple of
    /// the lanes, the same bits for any thread count, and (0, 0) for tensors that differ in size.
    #[test]
    fn signal_noise_sums_squares_and_squared_differences() {
        for len in [1usize, 7, 8, 9, 100, (1 << 16) + 13, 3 * (1 << 16) + 5] {
            let r: Vec<f32> = (0..len).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
            let v: Vec<f32> = r.iter().enumerate().map(|(i, x)| x + ((i % 7) as f32 - 3.0) * 1e-3).collect();
            let (rt, vt) = (Tensor::f32(vec![len], r.clone()), Tensor::f32(vec![len], v.clone()));
            let want_s: f64 = r.iter().map(|&a| (a as f64) * (a as f64)).sum();
            let want_n: f64 = r.iter().zip(&v).map(|(&a, &b)| ((b - a) as f64).powi(2)).sum();
            let one = crate::exec::thread_pool(1).unwrap().install(|| signal_noise(&rt, &vt));
            let two = crate::exec::thread_pool(2).unwrap().install(|| signal_noise(&rt, &vt));
            assert_eq!((one.0.to_bits(), one.1.to_bits()), (two.0.to_bits(), two.1.to_bits()), "{len}");
            assert!((one.0 - want_s).abs() <= 1e-12 * want_s && (one.1 - want_n).abs() <= 1e-9 * want_n.max(1e-30));
        }
        let short = Tensor::f32(vec![3], vec![1.0; 3]);
        assert_eq!(signal_noise(&short, &Tensor::f32(vec![4], vec![1.0; 4])), (0.0, 0.0));
    }
}
