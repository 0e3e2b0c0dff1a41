//! The reference CPU executor: f32, multithreaded (rayon), deterministic for any thread count.
//!
//! Dispatch is one readable table of op families (`op_table`); speed lives in the kernels behind
//! it (conv, gemm).

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod int8conv;
pub mod kernels;
pub mod op_table;
mod ops_math;
mod ops_quant;
mod ops_scatter;
mod ops_shape;
pub mod precision;
pub mod winograd;

use std::collections::HashMap;
use std::sync::Arc;

use super::{Backend, NamedTensors};
use crate::error::{Error, Result};
use crate::graph::{fold, Dim, Graph, Node};
use crate::tensor::{DType, Data, Tensor};
use op_table::F16Move;

pub use crate::numerics::int8::quantize_value;
pub use ops_shape::{
    expand_plan, flatten_shape, gather_shape, pad_plan, reshape_target, slice_plan, slice_shape_output, squeeze_shape,
    unsqueeze_shape,
};
use precision::StepPrecision;
pub use precision::{weight_channel_axis, CompiledPlan};

/// What the executor hands a kernel beside its inputs.
#[derive(Clone, Copy, Default)]
pub struct KernelArgs<'a> {
    /// Fake-quantize the output at this scale in the epilogue (a Conv or ConvTranspose read only
    /// by INT8 layers: `CompiledPlan::out_quant`).
    pub quant: Option<f32>,
    /// A Conv's prepared weights (`conv::ConvPrep`), made for the weight the step is given.
    pub prep: Option<&'a conv::ConvPrep>,
}

/// A kernel's failure; the dispatcher adds node name and op type.
#[derive(Debug)]
pub struct OpError(pub String);

impl From<Error> for OpError {
    fn from(e: Error) -> Self {
        OpError(match e {
            Error::Graph { msg, .. } => msg,
            other => other.to_string(),
        })
    }
}

pub type OpResult = std::result::Result<Vec<Tensor>, OpError>;

/// The element count of an output of `shape` and `dtype` a kernel is about to allocate: shapes
/// decided by input values or attributes are checked against overflow and the memory budget.
pub(crate) fn out_elements(shape: &[usize], dtype: DType) -> std::result::Result<usize, OpError> {
    crate::memory::alloc_elements(shape, dtype.width()).map_err(OpError)
}

pub(crate) fn input(ins: &[Option<Arc<Tensor>>], i: usize) -> std::result::Result<&Tensor, OpError> {
    ins.get(i).and_then(|t| t.as_deref()).ok_or_else(|| OpError(format!("missing input {i}")))
}

pub(crate) fn f32_in(ins: &[Option<Arc<Tensor>>], i: usize) -> std::result::Result<&[f32], OpError> {
    let t = input(ins, i)?;
    t.as_f32().ok_or_else(|| OpError(format!("input {i} must be float32, got {}", t.dtype())))
}

/// Whether the CPU executor can run `op_type` (an op table entry with an evaluation; domain ""
/// / ai.onnx, the pillar-scatter plugins and `graph::fold`'s internal ops).
pub fn is_supported(op_type: &str) -> bool {
    op_table::op_def(op_type).is_some_and(|d| d.eval.is_some())
}

/// Whether the executor can run `node` (its op, in its domain).
pub fn can_run(node: &Node) -> bool {
    op_table::op_def_for(node).is_some_and(|d| d.eval.is_some())
}

/// Evaluates one node on its inputs (`None` for omitted optional inputs).
pub fn eval_node(node: &Node, ins: Vec<Option<Arc<Tensor>>>) -> Result<Vec<Tensor>> {
    eval_node_with(node, ins, &KernelArgs::default())
}

/// `eval_node` with what the executor prepared for the step (`KernelArgs`): with `quant`, a Conv
/// or ConvTranspose fake-quantizes its output at that scale in its epilogue (for INT8 readers);
/// with `prep`, a Conv runs from its prepared weights. A kernel that panics (here or in its worker threads: rayon passes the panic on) is a bug,
/// but ends the run with an error naming the node instead of taking the process down.
fn eval_node_with(node: &Node, mut ins: Vec<Option<Arc<Tensor>>>, args: &KernelArgs) -> Result<Vec<Tensor>> {
    let def = op_table::op_def_for(node);
    let r = match def.and_then(|d| d.eval) {
        Some(eval) => {
            broadcast_budget(def.is_some_and(|d| d.broadcasts), &ins).and_then(|_| guard(|| eval(node, &mut ins, args)))
        }
        None => Err(OpError(format!(
            "op type '{}'{} is not supported by the CPU executor",
            node.op_type,
            if node.domain.is_empty() { String::new() } else { format!(" (domain '{}')", node.domain) }
        ))),
    };
    r.map_err(|e| Error::Exec { node: node.name.clone(), op: node.op_type.clone(), msg: e.0 })
}

/// For a broadcasting op: its output (the broadcast of the input shapes, at the widest input
/// element type) fits the memory budget. Incompatible shapes are left to the kernel to report.
fn broadcast_budget(broadcasts: bool, ins: &[Option<Arc<Tensor>>]) -> std::result::Result<(), OpError> {
    if !broadcasts {
        return Ok(());
    }
    let present: Vec<&Tensor> = ins.iter().flatten().map(|t| t.as_ref()).collect();
    let shapes: Vec<&[usize]> = present.iter().map(|t| t.shape.as_slice()).collect();
    let width = present.iter().map(|t| t.dtype().width()).max().unwrap_or(1);
    match elementwise::broadcast_shapes(&shapes) {
        Some((shape, _)) => crate::memory::alloc_elements(&shape, width).map(|_| ()).map_err(OpError),
        None => Ok(()),
    }
}

/// Runs a kernel; a panic in it or in its worker threads becomes an `OpError`.
fn guard(kernel: impl FnOnce() -> OpResult) -> OpResult {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(kernel))
        .unwrap_or_else(|p| Err(OpError(format!("internal error (a bug in pillarq): {}", super::panic_message(&*p)))))
}

/// One compiled step: a node with its input and output slots.
struct Step {
    node: Node,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
    /// Slots whose last reader is this step (freed after it runs).
    frees: Vec<usize>,
    /// Weights prepared for the FP32 kernel (a Winograd filter), when the rule picks one.
    prep: Option<Arc<conv::ConvPrep>>,
    /// For the first of several pointwise Convs reading one input: the later ones. When all run
    /// in FP32 they run together, here (`ops_math::conv_pointwise_group`).
    siblings: Vec<usize>,
    /// For a ConvTranspose read only by a Concat: (the Concat's step, its input index). In a
    /// plain FP32 run it writes straight into its region of the Concat's output.
    into: Option<(usize, usize)>,
    /// For a Concat some of whose inputs can be written in place: its output's layout.
    concat: Option<ConcatPlan>,
}

/// A Concat whose output is one block per input (nothing before the axis but size-1 dims):
/// the static shapes of its output and inputs, and each input's offset in the output.
struct ConcatPlan {
    shape: Vec<usize>,
    parts: Vec<(Vec<usize>, usize)>,
}

/// The most source nodes `CpuExecutor::source_value` runs for one edge.
pub const MAX_REPLAYED_NODES: usize = 32;

/// The compiled CPU executor for one graph.
pub struct CpuExecutor {
    graph: Graph,
    steps: Vec<Step>,
    slot_count: usize,
    /// Slot contents known before any input arrives (initializers, folded constants).
    constants: Vec<(usize, Arc<Tensor>)>,
    input_slots: Vec<usize>,
    output_slots: Vec<usize>,
    /// Edge name -> slot.
    slot_of: HashMap<String, usize>,
    pool: rayon::ThreadPool,
    threads: usize,
    /// Per step: a Concat's last output written in place, to be reused when nothing holds it.
    recycled: std::sync::Mutex<Vec<Option<Arc<Tensor>>>>,
}

/// Marks the Concats whose inputs are ConvTranspose outputs read by nothing else (the neck's
/// upsampled maps), so that those write their regions of the Concat's output in place
/// (`CpuExecutor::execute`). Needs static shapes for the Concat and those inputs.
fn plan_concats(graph: &Graph, steps: &mut [Step], output_slots: &[usize]) {
    let mut producer: HashMap<usize, usize> = HashMap::new();
    let mut readers: HashMap<usize, usize> = HashMap::new();
    for (i, st) in steps.iter().enumerate() {
        for &o in &st.outputs {
            producer.insert(o, i);
        }
        for s in st.inputs.iter().flatten() {
            *readers.entry(*s).or_default() += 1;
        }
    }
    for c in 0..steps.len() {
        let node = &steps[c].node;
        if node.op_type != "Concat" || !(node.domain.is_empty() || node.domain == "ai.onnx") {
            continue;
        }
        let Some(shape) = node.outputs.first().and_then(|o| graph.static_shape_of(o)) else { continue };
        let Ok(axis) = node.attr().i64("axis", 0) else { continue };
        let rank = shape.len() as i64;
        if !(-rank..rank).contains(&axis) {
            continue;
        }
        let axis = axis.rem_euclid(rank) as usize;
        if shape[..axis].iter().any(|&d| d != 1) {
            continue;
        }
        let inner: usize = shape[axis + 1..].iter().product();
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut fused = Vec::new();
        for (k, input) in node.inputs.iter().enumerate() {
            let Some(dims) = graph.static_shape_of(input) else { break };
            let len = dims.get(axis).copied().unwrap_or(0) * inner;
            parts.push((dims, offset));
            offset += len;
            let slot = steps[c].inputs[k];
            let p = slot.and_then(|s| producer.get(&s).copied());
            let only_reader = slot.is_some_and(|s| readers.get(&s) == Some(&1) && !output_slots.contains(&s));
            if let (Some(p), true) = (p, only_reader) {
                let pn = &steps[p].node;
                if pn.op_type == "ConvTranspose" && pn.outputs.len() == 1 && steps[p].into.is_none() {
                    fused.push((p, k));
                }
            }
        }
        let complete = parts.len() == node.inputs.len() && offset == shape.iter().product::<usize>();
        if !complete || fused.is_empty() {
            continue;
        }
        for (p, k) in fused {
            steps[p].into = Some((c, k));
        }
        steps[c].concat = Some(ConcatPlan { shape, parts });
    }
}

impl CpuExecutor {
    /// Prepares `graph` for execution (BatchNormalization folding, Relu fusion, constant folding)
    /// and compiles it for `threads` worker threads (0 = all cores).
    pub fn new(graph: &Graph, threads: usize) -> Result<CpuExecutor> {
        let graph = fold::prepare_for_execution(graph)?;
        let pool = super::thread_pool(threads)?;
        let threads = pool.current_num_threads();
        let mut slots: HashMap<String, usize> = HashMap::new();
        let slot = |name: &str, slots: &mut HashMap<String, usize>| {
            let n = slots.len();
            *slots.entry(name.to_string()).or_insert(n)
        };
        let mut constants: HashMap<usize, Arc<Tensor>> = HashMap::new();
        for (name, t) in &graph.initializers {
            let s = slot(name, &mut slots);
            constants.insert(s, t.clone());
        }
        let input_slots: Vec<usize> = graph.inputs.iter().map(|v| slot(&v.name, &mut slots)).collect();
        let mut steps = Vec::new();
        for node in &graph.nodes {
            let inputs: Vec<Option<usize>> =
                node.inputs.iter().map(|i| if i.is_empty() { None } else { Some(slot(i, &mut slots)) }).collect();
            let outputs: Vec<usize> = node.outputs.iter().map(|o| slot(o, &mut slots)).collect();
            // Fold nodes whose inputs are all constant once, here.
            let all_const = can_run(node) && inputs.iter().flatten().all(|s| constants.contains_key(s));
            if all_const {
                let ins: Vec<Option<Arc<Tensor>>> =
                    inputs.iter().map(|s| s.and_then(|s| constants.get(&s).cloned())).collect();
                let outs = eval_node(node, ins)?;
                for (s, t) in outputs.iter().zip(outs) {
                    constants.insert(*s, Arc::new(t));
                }
                continue;
            }
            let prep = match inputs.get(1).copied().flatten().and_then(|s| constants.get(&s)) {
                Some(w) if node.op_type == "Conv" => ops_math::conv_prep_fp32(node, w).map(Arc::new),
                _ => None,
            };
            steps.push(Step {
                node: node.clone(),
                inputs,
                outputs,
                frees: vec![],
                prep,
                siblings: vec![],
                into: None,
                concat: None,
            });
        }
        // Pointwise Convs sharing an input (a detection head's three): grouped under the first.
        let pointwise = |st: &Step| {
            st.inputs
                .get(1)
                .copied()
                .flatten()
                .and_then(|s| constants.get(&s))
                .is_some_and(|w| st.prep.is_none() && ops_math::is_pointwise_conv(&st.node, w))
        };
        let mut grouped = vec![false; steps.len()];
        for i in 0..steps.len() {
            if grouped[i] || !pointwise(&steps[i]) {
                continue;
            }
            let x = steps[i].inputs.first().copied().flatten();
            let later: Vec<usize> = (i + 1..steps.len())
                .filter(|&j| !grouped[j] && steps[j].inputs.first().copied().flatten() == x && pointwise(&steps[j]))
                .collect();
            for &j in &later {
                grouped[j] = true;
            }
            steps[i].siblings = later;
        }
        let output_slots: Vec<usize> = graph.outputs.iter().map(|o| slot(&o.name, &mut slots)).collect();
        plan_concats(&graph, &mut steps, &output_slots);
        let step_count = steps.len();
        // Liveness: free a non-constant, non-output slot after its last reader.
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (i, st) in steps.iter().enumerate() {
            for s in st.inputs.iter().flatten() {
                last.insert(*s, i);
            }
        }
        for (s, i) in last {
            if !constants.contains_key(&s) && !output_slots.contains(&s) {
                steps[i].frees.push(s);
            }
        }
        Ok(CpuExecutor {
            graph,
            steps,
            slot_count: slots.len(),
            constants: constants.into_iter().collect(),
            input_slots,
            output_slots,
            slot_of: slots,
            pool,
            threads,
            recycled: std::sync::Mutex::new(vec![None; step_count]),
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on this executor's worker threads (its `--threads`), for work beside the graph
    /// (the sweeps' per-plan proxies).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// The prepared graph (BN folded, activations fused).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Checks names, element types and static dimensions of the given inputs.
    fn bind_inputs(&self, inputs: &NamedTensors, slots: &mut [Option<Arc<Tensor>>]) -> Result<()> {
        for (name, _) in inputs {
            if !self.graph.inputs.iter().any(|v| &v.name == name) {
                let names: Vec<&str> = self.graph.inputs.iter().map(|v| v.name.as_str()).collect();
                return Err(Error::Input {
                    name: name.clone(),
                    msg: format!("the model has no such input; its inputs are {names:?}"),
                });
            }
        }
        for (v, &s) in self.graph.inputs.iter().zip(&self.input_slots) {
            let Some((_, t)) = inputs.iter().find(|(n, _)| n == &v.name) else {
                return Err(Error::Input { name: v.name.clone(), msg: "no tensor given for this model input".into() });
            };
            let want = v.dtype;
            let got = t.dtype();
            let ok = want == got || (matches!(want, DType::F16 | DType::F64) && got == DType::F32);
            if !ok {
                let hint = if got == DType::F32 && want != DType::F32 {
                    " (float16/float64 .npy files are read as float32): save the array with the model's type"
                } else {
                    ""
                };
                return Err(Error::Input {
                    name: v.name.clone(),
                    msg: format!("expected element type {want}, got {got}{hint}"),
                });
            }
            if let Some(shape) = &v.shape {
                let fits = shape.len() == t.shape.len()
                    && shape.iter().zip(&t.shape).all(|(d, &g)| match d {
                        Dim::Fixed(x) => *x == g,
                        Dim::Sym(_) => true,
                    });
                if !fits {
                    return Err(Error::Input {
                        name: v.name.clone(),
                        msg: format!("expected shape {}, got {:?}", crate::graph::shape_str(shape), t.shape),
                    });
                }
            }
            slots[s] = Some(Arc::new(t.clone()));
        }
        Ok(())
    }

    /// Runs the graph with an observer called after every step with the node and its outputs
    /// (for profiling and debugging); `run` is this without an observer.
    pub fn run_observed(
        &self,
        inputs: &NamedTensors,
        observe: &mut (dyn FnMut(&Node, &[Arc<Tensor>]) + Send),
    ) -> Result<NamedTensors> {
        self.run_with(inputs, None, observe)
    }

    /// Runs under an optional plan, with an observer after every step.
    pub fn run_with(
        &self,
        inputs: &NamedTensors,
        plan: Option<&CompiledPlan>,
        observe: &mut (dyn FnMut(&Node, &[Arc<Tensor>]) + Send),
    ) -> Result<NamedTensors> {
        let state = self.execute(Some(inputs), &RunOptions { plan, ..Default::default() }, observe)?;
        self.outputs(state)
    }

    pub fn run(&self, inputs: &NamedTensors) -> Result<NamedTensors> {
        self.run_observed(inputs, &mut |_, _| {})
    }

    /// Runs under a mixed-precision plan.
    pub fn run_plan(&self, inputs: &NamedTensors, plan: &CompiledPlan) -> Result<NamedTensors> {
        let state =
            self.execute(Some(inputs), &RunOptions { plan: Some(plan), ..Default::default() }, &mut |_, _| {})?;
        self.outputs(state)
    }

    /// Runs in FP32 and keeps every intermediate value: for calibration observers, and as the
    /// base that `run_from` restarts from.
    pub fn run_keep(&self, inputs: &NamedTensors) -> Result<FrameState> {
        self.execute(Some(inputs), &RunOptions { keep_all: true, ..Default::default() }, &mut |_, _| {})
    }

    /// Runs `plan` on the inputs that produced `base` (a `run_keep` state), recomputing only the
    /// steps the plan changes and those reading a value that changed: everything upstream of the
    /// first changed layer, and every branch it does not reach, is reused. Same bits as a full
    /// `run_plan`. With `keep_all`, the returned state holds every value.
    pub fn run_from(&self, base: &FrameState, plan: &CompiledPlan, keep_all: bool) -> Result<FrameState> {
        self.execute(None, &RunOptions { plan: Some(plan), base: Some(base), keep_all }, &mut |_, _| {})
    }

    /// The value of edge `name` in a kept state.
    pub fn value<'s>(&self, state: &'s FrameState, name: &str) -> Option<&'s Tensor> {
        self.slot_of.get(name).and_then(|&s| state.slots[s].as_deref())
    }

    /// The value of edge `name` of `source`, the graph this executor was prepared from, in a kept
    /// state. Preparation keeps edge names with their meaning, so an edge it kept is read from the
    /// state; one it fused away (a BatchNormalization output, a Transpose around it, a Pad folded
    /// into a Conv) is recomputed by running the source nodes that produce it, at most
    /// `MAX_REPLAYED_NODES` of them. `memo` keeps recomputed values between calls for one state.
    pub fn source_value(
        &self,
        source: &Graph,
        state: &FrameState,
        name: &str,
        memo: &mut HashMap<String, Arc<Tensor>>,
    ) -> Result<Arc<Tensor>> {
        let mut budget = MAX_REPLAYED_NODES;
        self.pool.install(|| self.replay(source, state, name, memo, &mut budget))
    }

    fn replay(
        &self,
        source: &Graph,
        state: &FrameState,
        name: &str,
        memo: &mut HashMap<String, Arc<Tensor>>,
        budget: &mut usize,
    ) -> Result<Arc<Tensor>> {
        if let Some(t) = memo.get(name) {
            return Ok(t.clone());
        }
        if let Some(t) = self.slot_of.get(name).and_then(|&s| state.slots.get(s)).and_then(|t| t.clone()) {
            return Ok(t);
        }
        if let Some(t) = source.initializers.get(name) {
            return Ok(t.clone());
        }
        let node = source
            .nodes
            .iter()
            .find(|n| n.outputs.iter().any(|o| o == name))
            .ok_or_else(|| Error::graph(name, "edge has no value in this run and no node produces it"))?;
        if *budget == 0 {
            return Err(Error::graph(
                name,
                format!("recomputing this edge needs more than {MAX_REPLAYED_NODES} nodes the prepared graph removed"),
            ));
        }
        *budget -= 1;
        let ins = node
            .inputs
            .iter()
            .map(|i| if i.is_empty() { Ok(None) } else { self.replay(source, state, i, memo, budget).map(Some) })
            .collect::<Result<Vec<_>>>()?;
        for (o, t) in node.outputs.iter().zip(eval_node(node, ins)?) {
            memo.insert(o.clone(), Arc::new(t));
        }
        memo.get(name).cloned().ok_or_else(|| Error::graph(&node.name, format!("did not produce '{name}'")))
    }

    /// The graph outputs of a finished run.
    pub fn outputs(&self, mut state: FrameState) -> Result<NamedTensors> {
        self.graph
            .outputs
            .iter()
            .zip(&self.output_slots)
            .map(|(o, &s)| {
                let t = state.slots[s].take().ok_or_else(|| Error::graph(&o.name, "graph output was not computed"))?;
                Ok((o.name.clone(), Arc::try_unwrap(t).unwrap_or_else(|a| (*a).clone())))
            })
            .collect()
    }

    /// Graph outputs of a state without consuming it.
    pub fn outputs_of(&self, state: &FrameState) -> Result<NamedTensors> {
        self.graph
            .outputs
            .iter()
            .zip(&self.output_slots)
            .map(|(o, &s)| {
                let t =
                    state.slots[s].as_deref().ok_or_else(|| Error::graph(&o.name, "graph output was not computed"))?;
                Ok((o.name.clone(), t.clone()))
            })
            .collect()
    }

    /// Finishes Concat step `i` whose output `buf` some inputs wrote in place (`written`):
    /// copies in the others.
    fn concat_in_place(
        &self,
        i: usize,
        ins: &[Option<Arc<Tensor>>],
        mut buf: Vec<f32>,
        written: &[bool],
    ) -> Result<Tensor> {
        let st = &self.steps[i];
        let plan = st.concat.as_ref().expect("a planned Concat");
        for (k, ((dims, offset), done)) in plan.parts.iter().zip(written).enumerate() {
            if *done {
                continue;
            }
            let t = ins
                .get(k)
                .cloned()
                .flatten()
                .ok_or_else(|| Error::graph(&st.node.name, format!("input {k} missing")))?;
            match t.as_f32() {
                Some(v) if t.shape == *dims => buf[*offset..*offset + v.len()].copy_from_slice(v),
                _ => {
                    return Err(Error::graph(
                        &st.node.name,
                        format!(
                            "Concat input {k} is {} {:?}, but the model declares float32 {dims:?}",
                            t.dtype(),
                            t.shape
                        ),
                    ))
                }
            }
        }
        Ok(Tensor::f32(plan.shape.clone(), buf))
    }

    fn execute(
        &self,
        inputs: Option<&NamedTensors>,
        opt: &RunOptions,
        observe: &mut (dyn FnMut(&Node, &[Arc<Tensor>]) + Send),
    ) -> Result<FrameState> {
        let mut slots: Vec<Option<Arc<Tensor>>>;
        let mut dirty = vec![false; self.slot_count];
        match (opt.base, inputs) {
            (Some(base), _) => {
                if base.slots.len() != self.slot_count {
                    return Err(Error::Other("run_from: the base state comes from another executor".into()));
                }
                slots = base.slots.clone();
            }
            (None, Some(inputs)) => {
                slots = vec![None; self.slot_count];
                for (s, t) in &self.constants {
                    slots[*s] = Some(t.clone());
                }
                self.bind_inputs(inputs, &mut slots)?;
            }
            (None, None) => return Err(Error::Other("execute: no inputs and no base state".into())),
        }
        let free = !opt.keep_all && opt.base.is_none();
        // Transformed activations shared by several readers: (slot, transform key, value).
        let mut memo: Vec<(usize, u64, Arc<Tensor>)> = Vec::new();
        // Slots holding values an FP16 layer wrote (already on the f16 grid).
        let mut f16_exact = vec![false; self.slot_count];
        // Slots already quantized for their INT8 readers (bits of the scale): written by a Conv or
        // ConvTranspose epilogue, or concatenated from such. Only in plain runs: a kept or
        // restarted state must hold the unquantized values.
        let mut quantized: Vec<Option<u32>> = vec![None; self.slot_count];
        let fuse = free && opt.plan.is_some();
        let mut steps_run = 0;
        // Step j runs as FP32 from the executor's weights, with no output quantization.
        let plain = |j: usize| {
            let changed = opt.plan.is_some_and(|p| !matches!(p.steps[j], StepPrecision::Fp32));
            let q = if fuse { opt.plan.and_then(|p| p.out_quant[j]) } else { None };
            !changed && q.is_none()
        };
        // Outputs a grouped step computed for its later siblings.
        let mut pending: Vec<Option<Vec<Tensor>>> = vec![None; self.steps.len()];
        // A Concat's output while its inputs write into it (`Step::into`), and which did.
        let mut concat_bufs: Vec<Option<(Vec<f32>, Vec<bool>)>> = vec![None; self.steps.len()];
        self.pool.install(|| -> Result<()> {
            for (i, st) in self.steps.iter().enumerate() {
                let precision = opt.plan.map(|p| &p.steps[i]);
                let changed = precision.is_some_and(|p| !matches!(p, StepPrecision::Fp32));
                if opt.base.is_some() && !changed && !st.inputs.iter().flatten().any(|&s| dirty[s]) {
                    continue;
                }
                // Inputs read for the last time are moved, not shared, so kernels may reuse them.
                let mut ins: Vec<Option<Arc<Tensor>>> = st
                    .inputs
                    .iter()
                    .map(|s| {
                        s.and_then(|s| {
                            let once = st.inputs.iter().filter(|x| **x == Some(s)).count() == 1;
                            if free && once && st.frees.contains(&s) {
                                slots[s].take()
                            } else {
                                slots[s].clone()
                            }
                        })
                    })
                    .collect();
                let epilogue_q = if fuse { opt.plan.and_then(|p| p.out_quant[i]) } else { None };
                // A changed layer runs from the plan's prepared weights (its own weight), an
                // unchanged one from the executor's.
                let prep = match opt.plan {
                    Some(p) if changed => p.prep[i].as_deref(),
                    _ => st.prep.as_deref(),
                };
                let args = KernelArgs { quant: epilogue_q, prep };
                let group = if !st.siblings.is_empty() && plain(i) && st.siblings.iter().all(|&j| plain(j)) {
                    let nodes: Vec<&Node> =
                        std::iter::once(&st.node).chain(st.siblings.iter().map(|&j| &self.steps[j].node)).collect();
                    let group_ins: Vec<Vec<Option<Arc<Tensor>>>> =
                        std::iter::once(ins.clone())
                            .chain(st.siblings.iter().map(|&j| {
                                self.steps[j].inputs.iter().map(|s| s.and_then(|s| slots[s].clone())).collect()
                            }))
                            .collect();
                    ops_math::conv_pointwise_group(&nodes, &group_ins)
                } else {
                    None
                };
                // A plain ConvTranspose read only by a Concat writes its region of the output.
                let mut in_place = false;
                if let Some((c, k)) = st.into.filter(|&(c, _)| free && plain(i) && plain(c)) {
                    let plan = self.steps[c].concat.as_ref().expect("planned with its Concat");
                    let total = plan.shape.iter().product();
                    let (buf, written) = concat_bufs[c].get_or_insert_with(|| {
                        // The last run's output, when nothing holds it any more: every element
                        // is written again, so it needs no zeroing (tens of megabytes).
                        let last = self.recycled.lock().unwrap_or_else(|e| e.into_inner())[c].take();
                        let buf = match last.map(Arc::try_unwrap) {
                            Some(Ok(Tensor { data: Data::F32(v), .. })) if v.len() == total => v,
                            _ => vec![0f32; total],
                        };
                        (buf, vec![false; plan.parts.len()])
                    });
                    let (dims, offset) = &plan.parts[k];
                    let dst = &mut buf[*offset..*offset + dims.iter().product::<usize>()];
                    guard(|| {
                        in_place = ops_math::conv_transpose_into(&st.node, &ins, &args, dims, dst)?;
                        Ok(vec![])
                    })
                    .map_err(|e| Error::Exec {
                        node: st.node.name.clone(),
                        op: st.node.op_type.clone(),
                        msg: e.0,
                    })?;
                    written[k] = in_place;
                }
                let written_in_place = concat_bufs[i].is_some();
                let mut outs = match (group, pending[i].take()) {
                    _ if in_place => Vec::new(),
                    (None, None) if written_in_place => {
                        let (buf, written) = concat_bufs[i].take().expect("checked");
                        vec![self.concat_in_place(i, &ins, buf, &written)?]
                    }
                    (Some(r), _) => {
                        let mut all = r.map_err(|e| Error::Exec {
                            node: st.node.name.clone(),
                            op: st.node.op_type.clone(),
                            msg: e.0,
                        })?;
                        for (&j, t) in st.siblings.iter().zip(all.drain(1..)) {
                            pending[j] = Some(vec![t]);
                        }
                        all
                    }
                    (None, Some(outs)) => outs,
                    (None, None) => match precision {
                        Some(p) if changed => {
                            let key = precision::activation_key(p);
                            let s0 = st.inputs.first().copied().flatten();
                            // An integer kernel quantizes its input itself (from the raw value).
                            let kernel_quantizes = matches!(prep, Some(conv::ConvPrep::Int8(_)));
                            let mut act_done = kernel_quantizes;
                            if let (Some(k), Some(s0), false) = (key, s0, kernel_quantizes) {
                                // Already on the grid: an FP16 layer's output, or quantized for
                                // this reader by its producer's epilogue.
                                let on_grid = match p {
                                    StepPrecision::Fp16 { .. } => f16_exact[s0],
                                    StepPrecision::Int8 { act_scale, input_mul: None, .. } => {
                                        quantized[s0] == Some(act_scale.to_bits())
                                    }
                                    StepPrecision::Int8 { .. } => false,
                                    StepPrecision::Fp32 => false,
                                };
                                if on_grid {
                                    act_done = true;
                                } else if let Some((_, _, t)) = memo.iter().find(|(s, kk, _)| *s == s0 && *kk == k) {
                                    ins[0] = Some(t.clone());
                                    act_done = true;
                                }
                            }
                            precision::transform_inputs(p, &mut ins, act_done)
                                .map_err(|e| Error::graph(&st.node.name, e.to_string()))?;
                            // Keep the transformed value for later readers of the same slot.
                            if let (Some(k), Some(s0), false) = (key, s0, act_done) {
                                let read_later =
                                    self.steps[i + 1..].iter().any(|later| later.inputs.contains(&Some(s0)));
                                if read_later {
                                    if let Some(t) = &ins[0] {
                                        memo.push((s0, k, t.clone()));
                                    }
                                }
                            }
                            let mut outs = eval_node_with(&st.node, ins, &args)?;
                            precision::transform_outputs(p, &mut outs);
                            outs
                        }
                        _ => eval_node_with(&st.node, ins, &args)?,
                    },
                };
                // Values on the f16 grid stay there through pure data movement.
                let data_inputs = match op_table::op_def_for(&st.node).map(|d| d.f16_data_inputs) {
                    Some(F16Move::All) => st.inputs.len(),
                    Some(F16Move::First) => 1,
                    Some(F16Move::None) | None => 0,
                };
                let outs_f16 = matches!(precision, Some(StepPrecision::Fp16 { .. }))
                    || (data_inputs > 0 && st.inputs[..data_inputs].iter().flatten().all(|&s| f16_exact[s]));
                steps_run += 1;
                let outs: Vec<Arc<Tensor>> = outs.drain(..).map(Arc::new).collect();
                if written_in_place {
                    self.recycled.lock().unwrap_or_else(|e| e.into_inner())[i] = outs.first().cloned();
                }
                observe(&st.node, &outs);
                // Quantized for the readers: by this step's epilogue, or a Concat of inputs all
                // quantized at one scale (the operation only moves values).
                let outs_quantized = epilogue_q.map(f32::to_bits).or_else(|| {
                    let first = st.inputs.first().copied().flatten().and_then(|s| quantized[s]);
                    let all = st.inputs.iter().all(|s| s.is_some_and(|s| quantized[s] == first));
                    (st.node.op_type == "Concat" && all).then_some(first).flatten()
                });
                for (s, t) in st.outputs.iter().zip(outs) {
                    slots[*s] = Some(t);
                    dirty[*s] = true;
                    f16_exact[*s] = outs_f16;
                    quantized[*s] = outs_quantized;
                }
                memo.retain(|(s, _, _)| !st.frees.contains(s) || !free);
                if free {
                    for s in &st.frees {
                        slots[*s] = None;
                    }
                }
            }
            Ok(())
        })?;
        Ok(FrameState { slots, steps_run })
    }
}

/// How `execute` runs.
#[derive(Default)]
struct RunOptions<'a> {
    plan: Option<&'a CompiledPlan>,
    base: Option<&'a FrameState>,
    keep_all: bool,
}

/// Every value of one run (from `run_keep` / `run_from`).
pub struct FrameState {
    slots: Vec<Option<Arc<Tensor>>>,
    /// Steps this run computed (the rest were reused from its base).
    pub steps_run: usize,
}

impl Backend for CpuExecutor {
    fn name(&self) -> &'static str {
        "cpu"
    }
    fn check(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    fn run(&self, inputs: &NamedTensors) -> Result<NamedTensors> {
        CpuExecutor::run(self, inputs)
    }
}

/// Largest |a - b| over the largest |b| (the acceptance metric against onnxruntime).
pub fn max_rel_diff(a: &Tensor, b: &Tensor) -> Option<f32> {
    match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) if x.len() == y.len() => {
            let num = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            let den = y.iter().map(|v| v.abs()).fold(0f32, f32::max);
            Some(if den > 0.0 { num / den } else { num })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::*;

    /// In a plain run the neck's three deconvolutions write into the Concat's output: planned
    /// for the bundled model, with the bits of a run that keeps every value (which does not),
    /// also on the next frame, which reuses the buffer holding the last frame's values.
    #[test]
    fn deconvolutions_write_into_the_concat_with_the_same_bits() {
        let m = crate::model::Model::load(&crate::cli::bundled_model("pointpillars_small.onnx")).unwrap();
        let cfg = crate::pointpillars::PointPillarsConfig::from_graph(&m.graph).unwrap();
        let e = CpuExecutor::new(&m.graph, 2).unwrap();
        assert_eq!(e.steps.iter().filter(|s| s.into.is_some()).count(), 3);
        let bits = |o: &NamedTensors| -> Vec<Vec<u32>> {
            o.iter().map(|(_, t)| t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()).collect()
        };
        for seed in [1, 2] {
            let inputs = crate::pointpillars::random_pillar_inputs(&m.graph, cfg.as_ref(), seed, 0.6).unwrap();
            let plain = e.run(&inputs).unwrap();
            let kept = e.outputs(e.run_keep(&inputs).unwrap()).unwrap();
            assert!(bits(&plain) == bits(&kept), "frame {seed}");
            let kept = e.recycled.lock().unwrap().iter().flatten().map(Arc::strong_count).collect::<Vec<_>>();
            assert_eq!(kept, [1], "the Concat's buffer is kept for the next run, and nothing else holds it");
        }
    }

    #[test]
    fn a_panic_in_a_worker_thread_becomes_an_error() {
        let pool = crate::exec::thread_pool(2).unwrap();
        let r = pool.install(|| {
            guard(|| {
                (0..64usize).into_par_iter().for_each(|i| assert!(i != 37, "pixel {i} out of range"));
                Ok(vec![])
            })
        });
        let msg = r.unwrap_err().0;
        assert!(msg.contains("internal error") && msg.contains("pixel 37 out of range"), "{msg}");
        assert!(guard(|| Ok(vec![Tensor::scalar_i64(3)])).is_ok());
    }

    #[test]
    fn thread_counts_are_bounded() {
        assert!(crate::exec::thread_pool(crate::exec::MAX_THREADS + 1)
            .unwrap_err()
            .to_string()
            .contains("at most 1024"));
        assert_eq!(crate::exec::thread_pool(3).unwrap().current_num_threads(), 3);
    }
}
