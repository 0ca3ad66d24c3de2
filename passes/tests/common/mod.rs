//! Shared helpers of the optimizer tests: a small graph builder with seeded
//! random constants, and the check that an optimized graph computes what the
//! original does on the reference interpreter.

#![allow(dead_code)]

use kiln_ir::{interp, DType, Graph, Op, Target, Tensor, TensorType, ValueId};
use kiln_passes::{optimize, Optimized, Options};
use std::collections::HashMap;

/// SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// An awkward dimension: 1, or a size that is not a multiple of vector widths.
    pub fn dim(&mut self) -> usize {
        [1, 3, 5, 7, 17][self.below(5)]
    }
}

/// A graph under construction.
pub struct B {
    pub g: Graph,
    pub rng: Rng,
    n: usize,
}

impl B {
    pub fn new(seed: u64) -> B {
        B {
            g: Graph::new("t"),
            rng: Rng(seed),
            n: 0,
        }
    }
    pub fn input(&mut self, shape: &[usize]) -> ValueId {
        let name = format!("in{}", self.g.inputs.len());
        self.g
            .add_input(&name, TensorType::new(DType::F32, shape.to_vec()).unwrap())
    }
    pub fn input_of(&mut self, dtype: DType, shape: &[usize]) -> ValueId {
        let name = format!("in{}", self.g.inputs.len());
        self.g
            .add_input(&name, TensorType::new(dtype, shape.to_vec()).unwrap())
    }
    pub fn konst(&mut self, shape: &[usize]) -> ValueId {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| self.rng.f()).collect();
        self.tensor(Tensor::from_f64(DType::F32, shape.to_vec(), &v))
    }
    pub fn splat(&mut self, shape: &[usize], v: f64) -> ValueId {
        let n: usize = shape.iter().product();
        self.tensor(Tensor::from_f64(DType::F32, shape.to_vec(), &vec![v; n]))
    }
    pub fn tensor(&mut self, t: Tensor) -> ValueId {
        self.n += 1;
        let name = format!("c{}", self.n);
        self.g.add_const(&name, t)
    }
    pub fn op(&mut self, op: impl Into<Op>, args: &[ValueId]) -> ValueId {
        self.n += 1;
        let name = format!("v{}", self.n);
        self.g
            .add_node(&name, op.into(), args.to_vec(), &[&name])
            .unwrap_or_else(|e| panic!("fixture does not type: {e}"))[0]
    }
    pub fn finish(mut self, outs: &[ValueId]) -> Graph {
        self.g.outputs = outs.to_vec();
        self.g.verify().unwrap();
        self.g
    }
}

/// Seeded random values for a graph's inputs (floats in [-1, 1), ints in [0, 10)).
pub fn random_inputs(g: &Graph, seed: u64) -> HashMap<String, Tensor> {
    let mut r = Rng(seed);
    g.inputs
        .iter()
        .map(|&i| {
            let v = g.value(i);
            let n = v.ty.numel();
            let t = if v.ty.dtype.is_float() {
                let x: Vec<f64> = (0..n).map(|_| 2.0 * r.f()).collect();
                Tensor::from_f64(v.ty.dtype, v.ty.shape.clone(), &x)
            } else {
                let x: Vec<i64> = (0..n).map(|_| r.below(10) as i64).collect();
                Tensor::from_i64(v.ty.dtype, v.ty.shape.clone(), &x)
            };
            (v.name.clone(), t)
        })
        .collect()
}

/// Largest difference relative to the largest magnitude of the reference.
pub fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = x.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
    x.iter().zip(&y).fold(0.0f64, |m, (p, q)| {
        if p.is_nan() && q.is_nan() {
            m
        } else {
            m.max((p - q).abs() / scale)
        }
    })
}

/// Optimizes `g` and checks on random inputs that the result agrees with `g`
/// (relative error <= `tol`, same types, names of inputs and outputs kept).
pub fn optimized_agrees(g: &Graph, tol: f64, seeds: u64) -> Optimized {
    let opt = optimize(g, &Target::cpu_default(), &Options::default())
        .unwrap_or_else(|e| panic!("optimize failed: {e}\n{g}"));
    let o = &opt.graph;
    o.verify().unwrap();
    let names = |g: &Graph, ids: &[ValueId]| {
        ids.iter()
            .map(|&i| g.value(i).name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(g, &g.inputs), names(o, &o.inputs));
    assert_eq!(names(g, &g.outputs), names(o, &o.outputs));
    for seed in 0..seeds {
        let ins = random_inputs(g, seed);
        let want = interp::run(g, &ins).unwrap();
        let got = interp::run(o, &ins).unwrap_or_else(|e| panic!("{e}\n{o}"));
        for (w, h) in want.iter().zip(&got) {
            assert_eq!(w.ty(), h.ty());
            let e = max_rel(w, h);
            assert!(
                e <= tol,
                "relative error {e} > {tol}\nbefore:\n{g}\nafter:\n{o}"
            );
        }
    }
    opt
}
