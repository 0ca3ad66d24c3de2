//! The importer: walks an ONNX graph in order, keeps every tensor either as a known
//! constant or as an IR value, folds nodes whose operands are all known (this is
//! how exporters' shape arithmetic becomes static), and lowers the rest to IR nodes.

use crate::attrs::NodeCx;
use crate::proto::{type_proto, GraphProto, ModelProto, ValueInfoProto};
use crate::tensor::{dtype_of, tensor_from_proto};
use crate::{ops, ImportError};
use kiln_ir::{DType, Graph, Op, Tensor, TensorType, ValueId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Outputs of a fold larger than this many elements stay as nodes.
const FOLD_LIMIT: usize = 1 << 16;
/// Largest constant the importer creates itself (ConstantOfShape, Range, ...).
pub(crate) const MAX_CREATED_BYTES: u64 = 256 << 20;

/// What the user binds before compilation.
#[derive(Clone, Debug, Default)]
pub struct Bindings {
    /// Full shapes of named inputs (`--shape x=1x3x224x224`).
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// Values of symbolic dims (`--dim batch=4`).
    pub dims: BTreeMap<String, usize>,
    /// Known input values; they also bind their inputs' shapes. Inputs that decide
    /// a shape are frozen to these; the others stay graph inputs.
    pub values: BTreeMap<String, Tensor>,
}

/// An imported model.
#[derive(Debug)]
pub struct Imported {
    pub graph: Graph,
    /// The ONNX names of the graph outputs, in order. The IR value of an output can
    /// carry another name where the output is an alias (Identity) of another tensor.
    pub output_names: Vec<String>,
    /// Inputs that were frozen to given values because they decide shapes.
    pub frozen: Vec<String>,
}

/// An operand during import: a known constant or an IR value.
#[derive(Clone, Debug)]
pub enum Operand {
    Const(Tensor),
    Value(ValueId),
}

/// Identifies a constant by its storage, dtype and shape.
type ConstKey = (usize, usize, DType, Vec<usize>);

fn const_key(t: &Tensor) -> ConstKey {
    (
        t.bytes().as_ptr() as usize,
        t.bytes().len(),
        t.dtype(),
        t.shape().to_vec(),
    )
}

pub(crate) struct Importer<'m> {
    pub g: Graph,
    slots: HashMap<String, Operand>,
    /// Materialized constants, keyed by their storage, so a weight is added once.
    const_ids: HashMap<ConstKey, ValueId>,
    /// The model's name for a constant (initializer or node output), by storage.
    const_names: HashMap<ConstKey, String>,
    names: HashSet<String>,
    auto_named: HashSet<ValueId>,
    counter: usize,
    producers: HashMap<&'m str, usize>,
    graph: &'m GraphProto,
    graph_inputs: HashSet<&'m str>,
}

/// Imports a model file.
pub fn import_file(path: &Path, b: &Bindings) -> Result<Imported, ImportError> {
    let m = crate::load::read_model(path)?;
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    import_model(&m, dir, b)
}

fn opset_of(m: &ModelProto) -> Result<i64, ImportError> {
    let mut v = None;
    for o in &m.opset_import {
        if o.domain().is_empty() || o.domain() == "ai.onnx" {
            v = Some(o.version());
        }
    }
    // Models without an opset_import entry predate opsets; treat as the oldest.
    let v = v.unwrap_or(1);
    if !(1..=28).contains(&v) {
        return Err(ImportError::Opset {
            domain: "ai.onnx".into(),
            version: v,
        });
    }
    Ok(v)
}

/// Imports a decoded model; `dir` is the folder external data may be read from.
pub fn import_model(
    m: &ModelProto,
    dir: Option<&Path>,
    b: &Bindings,
) -> Result<Imported, ImportError> {
    let opset = opset_of(m)?;
    let gp = m
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Graph("the model has no graph".into()))?;
    let mut imp = Importer::new(gp);
    let initializers: HashSet<&str> = gp.initializer.iter().map(|t| t.name()).collect();
    for t in &gp.initializer {
        let tensor = tensor_from_proto(t, dir)?;
        imp.name_const(&tensor, t.name());
        imp.slots
            .insert(t.name().to_string(), Operand::Const(tensor));
    }
    let needed = imp.shape_deciding_inputs(opset);
    let mut frozen = Vec::new();
    for (name, flag) in b
        .shapes
        .keys()
        .map(|n| (n, "--shape"))
        .chain(b.values.keys().map(|n| (n, "--input")))
    {
        if !gp.input.iter().any(|i| i.name() == name) || initializers.contains(name.as_str()) {
            return Err(ImportError::Binding(format!(
                "{flag} names '{name}', which is not an input of the model (inputs: {})",
                input_list(gp)
            )));
        }
    }
    for vi in &gp.input {
        let name = vi.name();
        if initializers.contains(name) {
            continue;
        }
        let ty = input_type(vi, b)?;
        if needed.contains(name) {
            if let Some(t) = b.values.get(name) {
                if t.dtype() != ty.dtype || t.shape() != ty.shape {
                    return Err(ImportError::Binding(format!(
                        "the value given for input '{name}' is {}, the model declares {ty}",
                        t.ty()
                    )));
                }
                imp.slots
                    .insert(name.to_string(), Operand::Const(t.clone()));
                frozen.push(name.to_string());
                continue;
            }
        }
        let id = imp.g.add_input(name, ty);
        imp.slots.insert(name.to_string(), Operand::Value(id));
    }
    for node in &gp.node {
        imp.node(node, opset)?;
    }
    let mut output_names = Vec::new();
    for o in &gp.output {
        let name = o.name();
        let operand = imp.slots.get(name).cloned().ok_or_else(|| {
            ImportError::Graph(format!("graph output '{name}' is never computed"))
        })?;
        let id = match operand {
            Operand::Value(id) => id,
            Operand::Const(t) => {
                let vname = if imp.g.find(name).is_none() {
                    name.to_string()
                } else {
                    imp.fresh(name)
                };
                imp.g.add_const(&vname, t)
            }
        };
        imp.g.outputs.push(id);
        output_names.push(name.to_string());
    }
    imp.g.name = gp.name().to_string();
    imp.g.verify()?;
    Ok(Imported {
        graph: imp.g,
        output_names,
        frozen,
    })
}

fn input_list(gp: &GraphProto) -> String {
    let inits: HashSet<&str> = gp.initializer.iter().map(|t| t.name()).collect();
    gp.input
        .iter()
        .map(|i| i.name())
        .filter(|n| !inits.contains(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The static type of a graph input after applying the bindings.
fn input_type(vi: &ValueInfoProto, b: &Bindings) -> Result<TensorType, ImportError> {
    let name = vi.name();
    let tt = match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t,
        _ => {
            return Err(ImportError::Binding(format!(
                "input '{name}' is not a tensor; kiln supports tensor inputs only"
            )))
        }
    };
    let dtype = dtype_of(tt.elem_type())
        .map_err(|m| ImportError::Binding(format!("input '{name}': {m}")))?;
    let declared = tt.shape.as_ref().map(|s| s.dim.as_slice());
    // A given value binds its input's shape unless --shape says otherwise.
    let bound = b
        .shapes
        .get(name)
        .cloned()
        .or_else(|| b.values.get(name).map(|t| t.shape().to_vec()));
    let shape = if let Some(s) = &bound {
        if let Some(dims) = declared {
            if dims.len() != s.len() {
                return Err(ImportError::Binding(format!(
                    "--shape {name}: the model declares rank {}, got {} dims",
                    dims.len(),
                    s.len()
                )));
            }
            for (i, (d, &v)) in dims.iter().zip(s).enumerate() {
                if let Some(crate::proto::tensor_shape_proto::dimension::Value::DimValue(x)) =
                    &d.value
                {
                    if *x >= 0 && *x as usize != v {
                        return Err(ImportError::Binding(format!(
                            "--shape {name}: dim {i} is fixed to {x} by the model, got {v}"
                        )));
                    }
                }
            }
        }
        s.clone()
    } else {
        let dims = declared.ok_or_else(|| ImportError::Unbound {
            input: name.into(),
            dim: 0,
            symbol: "?".into(),
            hint: format!("--shape {name}=D1xD2x... (the model gives no shape)"),
        })?;
        let mut shape = Vec::with_capacity(dims.len());
        for (i, d) in dims.iter().enumerate() {
            use crate::proto::tensor_shape_proto::dimension::Value as V;
            shape.push(match &d.value {
                Some(V::DimValue(x)) if *x >= 0 => *x as usize,
                Some(V::DimParam(p)) if !p.is_empty() => {
                    *b.dims.get(p).ok_or_else(|| ImportError::Unbound {
                        input: name.into(),
                        dim: i,
                        symbol: p.clone(),
                        hint: format!("--dim {p}=N or --shape {name}=D1xD2x..."),
                    })?
                }
                _ => {
                    return Err(ImportError::Unbound {
                        input: name.into(),
                        dim: i,
                        symbol: "?".into(),
                        hint: format!("--shape {name}=D1xD2x..."),
                    })
                }
            });
        }
        shape
    };
    TensorType::new(dtype, shape).map_err(|m| ImportError::Binding(format!("input '{name}': {m}")))
}

impl<'m> Importer<'m> {
    fn new(gp: &'m GraphProto) -> Self {
        let mut names = HashSet::new();
        let mut producers = HashMap::new();
        for (i, n) in gp.node.iter().enumerate() {
            for o in &n.output {
                names.insert(o.clone());
                producers.insert(o.as_str(), i);
            }
        }
        for i in &gp.input {
            names.insert(i.name().to_string());
        }
        for t in &gp.initializer {
            names.insert(t.name().to_string());
        }
        let graph_inputs = gp.input.iter().map(|i| i.name()).collect();
        Importer {
            g: Graph::new(""),
            slots: HashMap::new(),
            const_ids: HashMap::new(),
            const_names: HashMap::new(),
            names,
            auto_named: HashSet::new(),
            counter: 0,
            producers,
            graph: gp,
            graph_inputs,
        }
    }

    /// Graph inputs whose values decide a shape somewhere (reached backwards from
    /// an operand that must be constant, not crossing `Shape`).
    fn shape_deciding_inputs(&self, opset: i64) -> HashSet<String> {
        let mut out = HashSet::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<&str> = Vec::new();
        for n in &self.graph.node {
            for &i in ops::const_operands(n.op_type(), opset) {
                if let Some(name) = n.input.get(i).filter(|s| !s.is_empty()) {
                    stack.push(name);
                }
            }
        }
        while let Some(name) = stack.pop() {
            if !seen.insert(name) {
                continue;
            }
            if let Some(&p) = self.producers.get(name) {
                let n = &self.graph.node[p];
                if n.op_type() != "Shape" && n.op_type() != "Size" {
                    stack.extend(n.input.iter().filter(|s| !s.is_empty()).map(|s| s.as_str()));
                }
            } else if self.graph_inputs.contains(name)
                && !matches!(self.slots.get(name), Some(Operand::Const(_)))
            {
                out.insert(name.to_string());
            }
        }
        out
    }

    /// Graph inputs that `name` is computed from (for error messages).
    fn upstream_inputs(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![name];
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            if let Some(&p) = self.producers.get(n) {
                stack.extend(
                    self.graph.node[p]
                        .input
                        .iter()
                        .filter(|s| !s.is_empty())
                        .map(|s| s.as_str()),
                );
            } else if self.graph_inputs.contains(n) {
                out.push(format!("'{n}'"));
            }
        }
        out.sort();
        out
    }

    fn fresh(&mut self, base: &str) -> String {
        if self.names.insert(base.to_string()) {
            return base.to_string();
        }
        loop {
            self.counter += 1;
            let n = format!("{base}#{}", self.counter);
            if self.names.insert(n.clone()) {
                return n;
            }
        }
    }

    fn node(&mut self, node: &'m crate::proto::NodeProto, opset: i64) -> Result<(), ImportError> {
        let op = node.op_type();
        let name = if node.name().is_empty() {
            format!(
                "{op}({})",
                node.output.first().map(|s| s.as_str()).unwrap_or("")
            )
        } else {
            node.name().to_string()
        };
        let domain = node.domain();
        if !(domain.is_empty() || domain == "ai.onnx") || !ops::SUPPORTED.contains(&op) {
            return Err(ImportError::UnsupportedOp {
                node: name,
                op: op.into(),
                domain: if domain.is_empty() {
                    "ai.onnx".into()
                } else {
                    domain.into()
                },
                opset,
                supported: ops::SUPPORTED.join(" "),
            });
        }
        let cx = NodeCx {
            node,
            name,
            op,
            opset,
        };
        let results = ops::convert(self, &cx)?;
        for (k, out) in node.output.iter().enumerate() {
            if out.is_empty() {
                continue;
            }
            let Some(r) = results.get(k) else {
                return Err(cx.err(format!("output {k} ('{out}') is not supported by kiln")));
            };
            match r {
                Operand::Value(id) => {
                    if self.auto_named.remove(id) {
                        self.g.values[id.0 as usize].name = out.clone();
                    }
                }
                Operand::Const(t) => self.name_const(t, out),
            }
            self.slots.insert(out.clone(), r.clone());
        }
        Ok(())
    }

    /// Operand `i` of the node, if present.
    pub fn input(&self, cx: &NodeCx, i: usize) -> Result<Option<Operand>, ImportError> {
        match cx.node.input.get(i) {
            None => Ok(None),
            Some(n) if n.is_empty() => Ok(None),
            Some(n) => self.slots.get(n.as_str()).cloned().map(Some).ok_or_else(|| {
                cx.err(format!(
                    "input {i} ('{n}') is not defined before this node (the graph is not topologically sorted, or an initializer is missing)"
                ))
            }),
        }
    }

    /// Operand `i`, which must be present.
    pub fn req(&self, cx: &NodeCx, i: usize) -> Result<Operand, ImportError> {
        self.input(cx, i)?
            .ok_or_else(|| cx.err(format!("needs input {i}, which is missing")))
    }

    /// Operand `i` as a compile-time constant, if present.
    pub fn konst(&self, cx: &NodeCx, i: usize) -> Result<Option<Tensor>, ImportError> {
        match self.input(cx, i)? {
            None => Ok(None),
            Some(Operand::Const(t)) => Ok(Some(t)),
            Some(Operand::Value(_)) => {
                let up = self.upstream_inputs(&cx.node.input[i]);
                Err(ImportError::NeedsValue {
                    node: cx.name.clone(),
                    op: cx.op.into(),
                    index: i,
                    inputs: if up.is_empty() {
                        "(none found)".into()
                    } else {
                        up.join(", ")
                    },
                })
            }
        }
    }

    /// The type of an operand.
    pub fn ty(&self, o: &Operand) -> TensorType {
        match o {
            Operand::Const(t) => t.ty(),
            Operand::Value(id) => self.g.value(*id).ty.clone(),
        }
    }

    /// Remembers the model's name for a constant (the first name wins).
    fn name_const(&mut self, t: &Tensor, name: &str) {
        self.const_names
            .entry(const_key(t))
            .or_insert_with(|| name.to_string());
    }

    fn materialize(&mut self, o: &Operand, cx: &NodeCx) -> ValueId {
        match o {
            Operand::Value(id) => *id,
            Operand::Const(t) => {
                let key = const_key(t);
                if let Some(&id) = self.const_ids.get(&key) {
                    return id;
                }
                let name = match self.const_names.get(&key) {
                    Some(n) if self.g.find(n).is_none() => n.clone(),
                    _ => self.fresh(&format!("{}/const", cx.name)),
                };
                let id = self.g.add_const(&name, t.clone());
                self.const_ids.insert(key, id);
                id
            }
        }
    }

    /// Applies `op` to operands: folds when every operand is constant and the
    /// results are small, else adds an IR node.
    pub fn emit(
        &mut self,
        cx: &NodeCx,
        op: Op,
        ins: &[Operand],
    ) -> Result<Vec<Operand>, ImportError> {
        let tys: Vec<TensorType> = ins.iter().map(|o| self.ty(o)).collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let outs = op.def().infer(&refs).map_err(|m| {
            let shapes: Vec<String> = tys.iter().map(|t| t.to_string()).collect();
            cx.err(format!("{} ({}): {m}", op.mnemonic(), shapes.join(", ")))
        })?;
        let consts: Option<Vec<&Tensor>> = ins
            .iter()
            .map(|o| match o {
                Operand::Const(t) => Some(t),
                Operand::Value(_) => None,
            })
            .collect();
        if let Some(ts) = consts {
            if outs.iter().all(|t| t.numel() <= FOLD_LIMIT) {
                let r = op
                    .def()
                    .eval(&ts)
                    .map_err(|m| cx.err(format!("{}: {m}", op.mnemonic())))?;
                return Ok(r.into_iter().map(Operand::Const).collect());
            }
        }
        let ids: Vec<ValueId> = ins.iter().map(|o| self.materialize(o, cx)).collect();
        let names: Vec<String> = (0..outs.len())
            .map(|k| self.fresh(&format!("{}:{k}", cx.name)))
            .collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let ids = self.g.add_node(&cx.name, op, ids, &refs)?;
        self.auto_named.extend(ids.iter().copied());
        Ok(ids.into_iter().map(Operand::Value).collect())
    }

    /// [`Importer::emit`] for single-result ops.
    pub fn emit1(
        &mut self,
        cx: &NodeCx,
        op: impl Into<Op>,
        ins: &[Operand],
    ) -> Result<Operand, ImportError> {
        Ok(self.emit(cx, op.into(), ins)?.remove(0))
    }
}
