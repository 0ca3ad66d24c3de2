//! A loaded model: the imported, cleaned-up graph plus what the CLI needs to name
//! its outputs and make its inputs.

use crate::{random, Error, Summary, Target};
use kiln_backends::Executable;
use kiln_frontend::{import_file, Bindings};
use kiln_ir::{Graph, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// A model ready to inspect or run.
#[derive(Debug)]
pub struct Model {
    pub graph: Graph,
    /// The model's names for the graph outputs, in order.
    pub output_names: Vec<String>,
    /// Inputs frozen to given values because they decide shapes.
    pub frozen: Vec<String>,
    /// True once `optimize` has run.
    pub optimized: bool,
}

impl Model {
    /// Imports an ONNX file with the given bindings and removes dead code.
    pub fn load(path: &Path, bindings: &Bindings) -> Result<Model, Error> {
        let imported = import_file(path, bindings)?;
        let graph = kiln_passes::dce(&imported.graph);
        graph.verify()?;
        Ok(Model {
            graph,
            output_names: imported.output_names,
            frozen: imported.frozen,
            optimized: false,
        })
    }

    /// Deterministic random values for every graph input (see `random`).
    pub fn random_inputs(&self, seed: u64) -> HashMap<String, Tensor> {
        self.graph
            .inputs
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                (
                    self.graph.value(id).name.clone(),
                    random::input(&self.graph, id, i, seed),
                )
            })
            .collect()
    }

    /// Runs on a target with one thread per core; outputs are in graph order.
    pub fn run(
        &self,
        target: Target,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Vec<Tensor>, Error> {
        Ok(self.compile(target, 0)?.run(inputs)?)
    }

    /// Compiles for a target whose code runs on `threads` threads (0: one per
    /// core). Compiled targets get the graph optimized for this CPU first
    /// (unless `optimize` already ran).
    pub fn compile(&self, target: Target, threads: usize) -> Result<Box<dyn Executable>, Error> {
        let backend = target.backend(threads)?;
        if target.compiles() && !self.optimized {
            let opt = kiln_passes::optimize(
                &self.graph,
                &crate::calibrate::cpu_target()?,
                &kiln_passes::Options::default(),
            )?;
            return Ok(backend.compile(&opt.graph)?);
        }
        Ok(backend.compile(&self.graph)?)
    }

    /// Optimizes the graph in place for a device's cost model and returns what
    /// the optimizer did.
    pub fn optimize(&mut self, device: &kiln_ir::Target) -> Result<kiln_passes::Optimized, Error> {
        let opt = kiln_passes::optimize(&self.graph, device, &kiln_passes::Options::default())?;
        self.graph = opt.graph.clone();
        self.optimized = true;
        Ok(opt)
    }

    /// Sizes, op histogram and cost estimates.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.graph, &self.output_names)
    }
}
