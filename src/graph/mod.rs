//! The graph IR: nodes in topological order, a dtype and shape on every edge, initializers.
//!
//! Built from an ONNX `ModelProto`; the ONNX model itself is left untouched (round trips stay
//! byte-identical), passes work on this IR.

pub mod attrs;
pub mod fold;
pub mod layers;
pub mod opset;
pub mod shapes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use attrs::{AttrReader, AttrValue, Attrs};

use crate::error::{Error, Result};
use crate::onnx::proto::{type_proto, ModelProto, ValueInfoProto};
use crate::onnx::read_tensor_external;
use crate::tensor::{DType, Tensor};

/// One dimension: known size or a symbolic name (e.g. a dynamic batch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(usize),
    Sym(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(d) => write!(f, "{d}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

pub type Shape = Vec<Dim>;

pub fn fixed(shape: &[usize]) -> Shape {
    shape.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// The static sizes of a shape, if every dimension is known.
pub fn static_dims(shape: &Shape) -> Option<Vec<usize>> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => Some(*v),
            Dim::Sym(_) => None,
        })
        .collect()
}

pub fn shape_str(shape: &Shape) -> String {
    format!("[{}]", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// Facts about one tensor edge.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: DType,
    /// `None` when the rank is unknown.
    pub shape: Option<Shape>,
}

/// What the preparation passes fused into a node (TensorRT fuses the same into one layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    None,
    Relu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// ONNX node name (made unique and non-empty on import: `<op>_<index>` when missing).
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Input edge names; "" marks an omitted optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Attrs,
    /// Set by `fold::prepare_for_execution`: activation applied in the kernel's epilogue.
    pub activation: Activation,
    /// Names of the nodes folded into this one (BatchNormalization, Relu, Transpose pairs).
    pub fused: Vec<String>,
}

impl Node {
    /// The node as ONNX protobuf (name, op, domain, edges, attributes).
    pub fn to_proto(&self) -> crate::onnx::proto::NodeProto {
        crate::onnx::proto::NodeProto {
            name: Some(self.name.clone()),
            op_type: Some(self.op_type.clone()),
            domain: Some(self.domain.clone()),
            input: self.inputs.clone(),
            output: self.outputs.clone(),
            attribute: self.attrs.to_proto(),
            ..Default::default()
        }
    }

    pub fn attr(&self) -> AttrReader<'_> {
        AttrReader { node: &self.name, attrs: &self.attrs }
    }
    pub fn input(&self, i: usize) -> Option<&str> {
        self.inputs.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
}

#[derive(Debug, Clone)]
pub struct Graph {
    pub name: String,
    /// Nodes in topological order (stable: ties keep file order).
    pub nodes: Vec<Node>,
    /// Graph inputs that are not initializers, in declaration order.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub initializers: HashMap<String, Arc<Tensor>>,
    /// Facts for every edge (inputs, outputs, intermediates, initializers).
    pub values: HashMap<String, ValueInfo>,
    /// `metadata_props` of the model, in file order.
    pub metadata: BTreeMap<String, String>,
    pub opset: i64,
}

fn value_info(v: &ValueInfoProto) -> ValueInfo {
    let name = v.name.clone().unwrap_or_default();
    let mut dtype = DType::Other(0);
    let mut shape = None;
    if let Some(type_proto::Value::TensorType(tt)) = v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        dtype = DType::from_onnx(tt.elem_type.unwrap_or(0));
        shape = tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .enumerate()
                .map(|(i, d)| match &d.value {
                    Some(crate::onnx::proto::tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => {
                        Dim::Fixed(*v as usize)
                    }
                    Some(crate::onnx::proto::tensor_shape_proto::dimension::Value::DimParam(p)) => Dim::Sym(p.clone()),
                    _ => Dim::Sym(format!("?{i}")),
                })
                .collect()
        });
    }
    ValueInfo { name, dtype, shape }
}

impl Graph {
    /// Imports an ONNX model: initializers (external data relative to `model_dir`), nodes in
    /// topological order, declared edge facts; then checks that every edge has a producer and
    /// infers shapes. Unknown ops import fine; they fail only when executed.
    pub fn from_model(model: &ModelProto, model_dir: &Path) -> Result<Graph> {
        let g = model.graph.as_ref().ok_or_else(|| Error::Other("model has no graph".into()))?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.as_deref().unwrap_or("").is_empty() || o.domain.as_deref() == Some("ai.onnx"))
            .and_then(|o| o.version)
            .unwrap_or(1);

        let mut initializers = HashMap::new();
        let mut values = HashMap::new();
        for t in &g.initializer {
            let name = t.name.clone().unwrap_or_default();
            let external = read_tensor_external(t, model_dir)?;
            let tensor = Tensor::from_proto(t, external)?;
            values.insert(
                name.clone(),
                ValueInfo {
                    name: name.clone(),
                    dtype: DType::from_onnx(t.data_type.unwrap_or(0)),
                    shape: Some(fixed(&tensor.shape)),
                },
            );
            initializers.insert(name, Arc::new(tensor));
        }
        let inputs: Vec<ValueInfo> =
            g.input.iter().map(value_info).filter(|v| !initializers.contains_key(&v.name)).collect();
        for v in &inputs {
            values.insert(v.name.clone(), v.clone());
        }
        let outputs: Vec<ValueInfo> = g.output.iter().map(value_info).collect();
        if let Some((i, o)) = outputs.iter().enumerate().find(|(i, o)| outputs[..*i].iter().any(|p| p.name == o.name)) {
            return Err(Error::Other(format!(
                "graph output '{}' is listed twice (outputs {} and {}); each output name once",
                o.name,
                outputs.iter().position(|p| p.name == o.name).unwrap_or(0) + 1,
                i + 1
            )));
        }
        let declared: HashMap<String, ValueInfo> =
            g.value_info.iter().map(value_info).chain(outputs.iter().cloned()).map(|v| (v.name.clone(), v)).collect();

        let mut used_names = HashSet::new();
        let mut nodes = Vec::with_capacity(g.node.len());
        for (i, n) in g.node.iter().enumerate() {
            let op_type = n.op_type.clone().unwrap_or_default();
            let mut name = n.name.clone().unwrap_or_default();
            if name.is_empty() || used_names.contains(&name) {
                name = format!("{op_type}_{i}");
            }
            used_names.insert(name.clone());
            let attrs = Attrs::from_proto(&name, &n.attribute)?;
            nodes.push(Node {
                name,
                op_type,
                domain: n.domain.clone().unwrap_or_default(),
                inputs: n.input.clone(),
                outputs: n.output.clone(),
                attrs,
                activation: Activation::None,
                fused: vec![],
            });
        }
        let mut graph = Graph {
            name: g.name.clone().unwrap_or_default(),
            nodes,
            inputs,
            outputs,
            initializers,
            values,
            metadata: model
                .metadata_props
                .iter()
                .map(|kv| (kv.key.clone().unwrap_or_default(), kv.value.clone().unwrap_or_default()))
                .collect(),
            opset,
        };
        graph.toposort()?;
        shapes::infer(&mut graph, &declared)?;
        Ok(graph)
    }

    /// Sorts nodes topologically (Kahn, ties in file order); errors on a missing producer or a cycle.
    pub fn toposort(&mut self) -> Result<()> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                if producer.insert(o, i).is_some() {
                    return Err(Error::graph(&n.name, format!("output '{o}' is produced by more than one node")));
                }
            }
        }
        let available: HashSet<&str> =
            self.inputs.iter().map(|v| v.name.as_str()).chain(self.initializers.keys().map(String::as_str)).collect();
        let mut indeg = vec![0usize; self.nodes.len()];
        let mut users: Vec<Vec<usize>> = vec![vec![]; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
                if let Some(&p) = producer.get(inp.as_str()) {
                    indeg[i] += 1;
                    users[p].push(i);
                } else if !available.contains(inp.as_str()) {
                    return Err(Error::graph(
                        &n.name,
                        format!(
                            "input '{inp}' is not produced by any node, graph input or initializer \
                             (missing initializer?)"
                        ),
                    ));
                }
            }
        }
        for o in &self.outputs {
            if !producer.contains_key(o.name.as_str()) && !available.contains(o.name.as_str()) {
                return Err(Error::graph(&o.name, "graph output is not produced by any node".to_string()));
            }
        }
        let mut ready: std::collections::BTreeSet<usize> = (0..self.nodes.len()).filter(|&i| indeg[i] == 0).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                indeg[u] -= 1;
                if indeg[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck = (0..self.nodes.len()).find(|i| indeg[*i] > 0).unwrap_or(0);
            return Err(Error::graph(&self.nodes[stuck].name, "the graph has a cycle through this node"));
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().map(|i| old[i].take().unwrap()).collect();
        Ok(())
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Map from edge name to the indices of the nodes that consume it.
    pub fn consumers(&self) -> HashMap<&str, Vec<usize>> {
        let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for inp in n.inputs.iter().filter(|s| !s.is_empty()) {
                m.entry(inp.as_str()).or_default().push(i);
            }
        }
        m
    }

    pub fn shape_of(&self, edge: &str) -> Option<&Shape> {
        self.values.get(edge).and_then(|v| v.shape.as_ref())
    }

    pub fn static_shape_of(&self, edge: &str) -> Option<Vec<usize>> {
        self.shape_of(edge).and_then(static_dims)
    }

    pub fn is_output(&self, edge: &str) -> bool {
        self.outputs.iter().any(|o| o.name == edge)
    }

    /// Histogram of op types, sorted by op name.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut h = BTreeMap::new();
        for n in &self.nodes {
            *h.entry(n.op_type.clone()).or_insert(0) += 1;
        }
        h
    }
}
