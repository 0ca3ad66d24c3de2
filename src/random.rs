//! Deterministic random inputs for `kiln run`.
//!
//! Distribution (documented in `kiln run --help`): floats are uniform in [-1, 1);
//! integer inputs used as Gather indices are uniform in [0, size of the gathered
//! axis); other integers are uniform in [0, 10) (clamped to the dtype); bools are
//! true or false with equal chance. The generator is SplitMix64 seeded by `--seed`
//! and the input's position, so the same seed gives the same bytes everywhere.

use kiln_ir::op::Op;
use kiln_ir::{DType, Graph, Tensor, ValueId};

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Exclusive upper bound for an integer input: the smallest gathered axis it
/// indexes, else 10.
fn int_bound(g: &Graph, id: ValueId) -> u64 {
    let mut bound = 10u64;
    let mut gathered = None::<u64>;
    for n in &g.nodes {
        if let Op::Gather(ga) = &n.op {
            if n.inputs.get(1) == Some(&id) {
                let d = g.value(n.inputs[0]).ty.shape[ga.axis] as u64;
                gathered = Some(gathered.map_or(d, |x| x.min(d)));
            }
        }
    }
    if let Some(d) = gathered {
        bound = d.max(1);
    }
    bound
}

/// A random tensor for graph input `index` (`id`) from `seed`.
pub fn input(g: &Graph, id: ValueId, index: usize, seed: u64) -> Tensor {
    let ty = &g.value(id).ty;
    let mut rng = SplitMix(seed ^ (index as u64).wrapping_mul(0xA076_1D64_78BD_642F));
    let n = ty.numel();
    match ty.dtype {
        d if d.is_float() => {
            let v: Vec<f64> = (0..n).map(|_| rng.unit() * 2.0 - 1.0).collect();
            Tensor::from_f64(d, ty.shape.clone(), &v)
        }
        DType::Bool => {
            let v: Vec<i64> = (0..n).map(|_| (rng.next() >> 63) as i64).collect();
            Tensor::from_i64(DType::Bool, ty.shape.clone(), &v)
        }
        d => {
            let max = match d {
                DType::I8 => 128,
                DType::U8 => 256,
                _ => u64::MAX,
            };
            let b = int_bound(g, id).min(max);
            let v: Vec<i64> = (0..n).map(|_| (rng.next() % b) as i64).collect();
            Tensor::from_i64(d, ty.shape.clone(), &v)
        }
    }
}
