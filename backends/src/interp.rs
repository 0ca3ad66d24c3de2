//! The interpreter backend: "compiling" keeps the graph; running interprets it.

use crate::{Backend, Executable, TargetError};
use kiln_ir::{interp, Graph, Tensor};
use std::collections::HashMap;

/// Runs graphs on the reference interpreter.
pub struct InterpBackend;

struct Interpreted(Graph);

impl Backend for InterpBackend {
    fn compile(&self, graph: &Graph) -> Result<Box<dyn Executable>, TargetError> {
        graph.verify()?;
        Ok(Box::new(Interpreted(graph.clone())))
    }
}

impl Executable for Interpreted {
    fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>, TargetError> {
        Ok(interp::run(&self.0, inputs)?)
    }
}
