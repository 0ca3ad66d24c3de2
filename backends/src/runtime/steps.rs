//! What every compiled executable does the same way around its steps: the
//! graph inputs in program order from a map by name, and per-step times
//! summed over runs.

use kiln_ir::Tensor;
use kiln_passes::lower::{Program, Step};
use std::collections::HashMap;
use std::sync::Mutex;

/// The program's inputs, in order, from `inputs` by name.
pub fn ordered_inputs<'a>(
    p: &Program,
    inputs: &'a HashMap<String, Tensor>,
) -> Result<Vec<&'a Tensor>, String> {
    p.inputs
        .iter()
        .map(|&s| {
            let name = &p.slots[s].name;
            inputs
                .get(name)
                .ok_or_else(|| format!("missing input '{name}'"))
        })
        .collect()
}

/// Seconds per step, summed over runs.
#[derive(Default)]
pub struct StepTimes(Mutex<Vec<f64>>);

impl StepTimes {
    /// Adds one run's times.
    pub fn add(&self, times: &[f64]) {
        let mut acc = self.0.lock().unwrap_or_else(|e| e.into_inner());
        acc.resize(times.len(), 0.0);
        acc.iter_mut().zip(times).for_each(|(a, t)| *a += t);
    }

    /// The sums with each step's name (`host NAME` for host steps), and
    /// resets them.
    pub fn take(&self, p: &Program) -> Vec<(String, f64)> {
        let mut acc = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let out = p
            .steps
            .iter()
            .zip(acc.iter())
            .map(|(s, t)| {
                let name = match s {
                    Step::Kernel { kernel, .. } => kernel.name.clone(),
                    Step::Host { name, .. } => format!("host {name}"),
                };
                (name, *t)
            })
            .collect();
        acc.clear();
        out
    }
}
