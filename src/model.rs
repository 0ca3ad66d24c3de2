//! A loaded model: the imported, cleaned-up graph plus what the CLI needs to name
//! its outputs and make its inputs.

use crate::{random, Error, Summary, Target};
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

    /// Runs on a target; outputs are in graph order.
    pub fn run(
        &self,
        target: Target,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Vec<Tensor>, Error> {
        let exe = target.backend().compile(&self.graph)?;
        Ok(exe.run(inputs)?)
    }

    /// Optimizes the graph in place for a device's cost model and returns what
    /// the optimizer did.
    pub fn optimize(&mut self, device: &kiln_ir::Target) -> Result<kiln_passes::Optimized, Error> {
        let opt = kiln_passes::optimize(&self.graph, device, &kiln_passes::Options::default())?;
        self.graph = opt.graph.clone();
        Ok(opt)
    }

    /// Sizes, op histogram and cost estimates.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.graph, &self.output_names)
    }
}
