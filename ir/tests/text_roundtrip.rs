//! The text form round-trips: random well-typed graphs (every op family, awkward
//! names, shardings, literal and dense constants with special values) print, parse
//! back to an equal graph and print to the same bytes; every op's attributes parse
//! back to the same op; malformed texts are refused with a message that says what
//! is wrong and where.

use kiln_ir::{Attr, Attrs, ConstStyle, DType, Graph, Op, Sharding, Tensor, TensorType, ValueId};
use proptest::prelude::*;

/// SplitMix64: the graph generator's only source of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    /// A float that stresses printing: specials, tiny, huge, negative zero.
    fn float(&mut self) -> f64 {
        match self.below(8) {
            0 => *self.pick(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN, -0.0, 0.0]),
            1 => *self.pick(&[1e-300, 5e-324, 1.7976931348623157e308, 0.1, 1.0 / 3.0]),
            2 => self.below(9) as f64 - 4.0,
            _ => f64::from_bits(self.next() >> 2) * if self.chance(50) { -1.0 } else { 1.0 },
        }
    }
    fn int(&mut self) -> i64 {
        match self.below(4) {
            0 => *self.pick(&[i64::MIN, i64::MAX, 0, -1]),
            _ => self.below(21) as i64 - 10,
        }
    }
    fn shape(&mut self, max_rank: usize) -> Vec<usize> {
        (0..self.below(max_rank + 1))
            .map(|_| *self.pick(&[1, 2, 3, 5]))
            .collect()
    }
    fn name(&mut self, stem: &str, i: usize) -> String {
        let flavour = *self.pick(&[
            "",
            ".out",
            "/layer.0/attn",
            " with space",
            "quote\"d",
            "back\\slash",
            "tab\tnl\n",
            "ünïcode-名",
            "%pct",
        ]);
        format!("{stem}{i}{flavour}")
    }
}

const DTYPES: [DType; 9] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I8,
    DType::U8,
    DType::I32,
    DType::I64,
    DType::Bool,
];

fn random_dtype(r: &mut Rng) -> DType {
    if r.chance(60) {
        DType::F32
    } else {
        *r.pick(&DTYPES)
    }
}

/// A constant: small ones print as literals (values that stress the printer),
/// larger ones as hex of arbitrary bytes (NaN payloads included).
fn random_const(r: &mut Rng, dtype: DType, shape: Vec<usize>) -> Tensor {
    let n: usize = shape.iter().product();
    if n > 16 {
        let bytes: Vec<u8> = (0..n * dtype.size())
            .map(|_| {
                let b = r.next() as u8;
                if dtype == DType::Bool {
                    b & 1
                } else {
                    b
                }
            })
            .collect();
        return Tensor::from_bytes(dtype, shape, bytes.into()).expect("sized to fit");
    }
    if dtype.is_float() {
        let vals: Vec<f64> = (0..n).map(|_| r.float()).collect();
        Tensor::from_f64(dtype, shape, &vals)
    } else {
        let vals: Vec<i64> = (0..n).map(|_| r.int()).collect();
        Tensor::from_i64(dtype, shape, &vals)
    }
}

fn random_sharding(r: &mut Rng, rank: usize) -> Sharding {
    let axes = ["x", "y", "data", "model"];
    Sharding {
        dims: (0..rank)
            .map(|_| (0..r.below(3)).map(|_| r.pick(&axes).to_string()).collect())
            .collect(),
        partial: (0..r.below(2)).map(|_| r.pick(&axes).to_string()).collect(),
    }
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

fn axis(r: &mut Rng, rank: usize) -> Attr {
    Attr::Int(r.below(rank.max(1)) as i64)
}

/// One candidate op (mnemonic and attributes) for operand `x` of rank `rank`;
/// it may be ill-typed, in which case the generator drops it.
fn random_op(r: &mut Rng, rank: usize) -> (String, Attrs, usize) {
    let a = Attrs::default();
    let mnems = Op::mnemonics();
    let m = r.pick(&mnems).to_string();
    let n2 = 2 * rank.saturating_sub(2);
    let sp = rank.saturating_sub(2);
    let spatial =
        |r: &mut Rng, lo: i64| -> Vec<i64> { (0..sp).map(|_| lo + r.below(2) as i64).collect() };
    let (attrs, operands) = match m.as_str() {
        "leaky_relu" => (a.with("alpha", Attr::Float(r.float())), 1),
        "hard_sigmoid" => (
            a.with("alpha", Attr::Float(r.float()))
                .with("beta", Attr::Float(r.float())),
            1,
        ),
        "add" | "sub" | "mul" | "div" | "pow" | "max" | "min" | "eq" | "lt" | "gt" | "le"
        | "ge" | "and" | "or" => (a, 2),
        "matmul" => {
            let a = if r.chance(30) {
                a.with("trans_a", Attr::Int(1))
            } else {
                a
            };
            let a = if r.chance(30) {
                a.with("trans_b", Attr::Int(1))
            } else {
                a
            };
            (a, 2)
        }
        "gelu" if r.chance(50) => (a.with("approximate", Attr::Str("tanh".into())), 1),
        "rms_norm" => (
            a.with("axis", axis(r, rank))
                .with("epsilon", Attr::Float(1e-6)),
            2,
        ),
        "attention" => (
            a.with("scale", Attr::Float(r.float()))
                .with("causal", Attr::Int(r.below(2) as i64)),
            3,
        ),
        "where" => (a, 3),
        "cast" => (a.with("to", Attr::Type(*r.pick(&DTYPES))), 1),
        "conv" => (
            a.with("strides", ints(&spatial(r, 1)))
                .with(
                    "pads",
                    ints(&(0..n2).map(|_| r.below(2) as i64).collect::<Vec<_>>()),
                )
                .with("dilations", ints(&spatial(r, 1)))
                .with("group", Attr::Int(1)),
            2 + r.below(2),
        ),
        "conv_transpose" => (
            a.with("strides", ints(&spatial(r, 1)))
                .with("pads", ints(&vec![0; n2]))
                .with("dilations", ints(&spatial(r, 1)))
                .with("group", Attr::Int(1))
                .with("output_padding", ints(&vec![0; sp])),
            2,
        ),
        "max_pool" | "avg_pool" => (
            a.with("kernel", ints(&spatial(r, 1)))
                .with("strides", ints(&spatial(r, 1)))
                .with("pads", ints(&vec![0; n2]))
                .with("dilations", ints(&vec![1; sp]))
                .with("ceil_mode", Attr::Int(r.below(2) as i64))
                .with("count_include_pad", Attr::Int(r.below(2) as i64)),
            1,
        ),
        "batch_norm" => (a.with("epsilon", Attr::Float(1e-5)), 5),
        "layer_norm" => (
            a.with("axis", axis(r, rank))
                .with("epsilon", Attr::Float(r.float().abs()))
                .with("stash", Attr::Type(DType::F32)),
            1 + r.below(3),
        ),
        "softmax" | "log_softmax" | "concat" | "gather" => (
            a.with("axis", axis(r, rank)),
            1 + usize::from(m != "softmax" && m != "log_softmax"),
        ),
        "reduce_sum" | "reduce_mean" | "reduce_max" | "reduce_min" => {
            let axes: Vec<i64> = (0..rank as i64).filter(|_| r.chance(50)).collect();
            (
                a.with("axes", ints(&axes))
                    .with("keepdims", Attr::Int(r.below(2) as i64)),
                1,
            )
        }
        "reshape" => (a.with("shape", ints(&[])), 1),
        "transpose" => {
            let mut perm: Vec<i64> = (0..rank as i64).collect();
            for i in (1..perm.len()).rev() {
                perm.swap(i, r.below(i + 1));
            }
            (a.with("perm", ints(&perm)), 1)
        }
        "slice" => {
            let pick =
                |r: &mut Rng| -> Vec<i64> { (0..rank).map(|_| r.below(4) as i64 - 1).collect() };
            let (starts, ends) = (pick(r), pick(r));
            let steps: Vec<i64> = (0..rank).map(|_| *r.pick(&[1, 2, -1])).collect();
            (
                a.with("starts", ints(&starts))
                    .with("ends", ints(&ends))
                    .with("steps", ints(&steps)),
                1,
            )
        }
        "expand" | "tile" => {
            let v: Vec<i64> = (0..rank).map(|_| r.below(3) as i64 + 1).collect();
            let key = if m == "expand" { "shape" } else { "repeats" };
            (a.with(key, ints(&v)), 1)
        }
        "pad" => {
            let pads: Vec<i64> = (0..2 * rank).map(|_| r.below(3) as i64 - 1).collect();
            let mode = *r.pick(&["constant", "reflect", "edge", "wrap"]);
            (
                a.with("pads", ints(&pads))
                    .with("mode", Attr::Str(mode.into()))
                    .with("value", Attr::Float(r.float())),
                1,
            )
        }
        "resize" => {
            let sizes: Vec<i64> = (0..rank).map(|_| r.below(4) as i64 + 1).collect();
            (
                a.with(
                    "mode",
                    Attr::Str((*r.pick(&["nearest", "linear", "cubic"])).into()),
                )
                .with(
                    "coord",
                    Attr::Str((*r.pick(&["half_pixel", "align_corners", "asymmetric"])).into()),
                )
                .with(
                    "nearest",
                    Attr::Str((*r.pick(&["floor", "round_prefer_ceil"])).into()),
                )
                .with("sizes", ints(&sizes))
                .with(
                    "scales",
                    Attr::Floats(sizes.iter().map(|&s| s as f64 / 2.0).collect()),
                )
                .with("roi", Attr::Floats(vec![]))
                .with("cubic_a", Attr::Float(-0.75))
                .with("exclude_outside", Attr::Int(r.below(2) as i64))
                .with("extrapolation", Attr::Float(r.float())),
                1,
            )
        }
        _ => (a, 1),
    };
    (m, attrs, operands)
}

/// A random well-typed graph: inputs first, then constants, then nodes, so that
/// parsing the printed form rebuilds the values in the same order.
fn random_graph(seed: u64) -> Graph {
    let mut r = Rng(seed);
    let mut g = Graph::new(&r.name("g", 0));
    let mut vals: Vec<ValueId> = Vec::new();
    for i in 0..1 + r.below(3) {
        let ty = TensorType::new(random_dtype(&mut r), r.shape(4)).expect("small");
        let name = r.name("in", i);
        vals.push(g.add_input(&name, ty));
    }
    for i in 0..r.below(6) {
        let dtype = random_dtype(&mut r);
        let shape = if r.chance(20) { vec![5, 5] } else { r.shape(4) };
        let t = random_const(&mut r, dtype, shape);
        let name = r.name("c", i);
        vals.push(g.add_const(&name, t));
    }
    let mut nodes = 0;
    for attempt in 0..200 {
        if nodes == 12 {
            break;
        }
        let x = *r.pick(&vals);
        let rank = g.value(x).ty.rank();
        let (m, mut attrs, k) = random_op(&mut r, rank);
        if m == "reshape" {
            let n = g.value(x).ty.numel() as i64;
            attrs = Attrs::default().with(
                "shape",
                ints(&[vec![n], vec![1, n], vec![n, 1]][r.below(3)]),
            );
        }
        let Ok(op) = Op::parse(&m, &attrs) else {
            continue;
        };
        let operands: Vec<ValueId> = std::iter::once(x)
            .chain((1..k).map(|_| *r.pick(&vals)))
            .collect();
        let name = r.name("n", attempt);
        let unnamed = r.chance(30);
        let out_name = if unnamed {
            name.clone()
        } else {
            r.name("v", attempt)
        };
        let Ok(outs) = g.add_node(&name, op, operands, &[&out_name]) else {
            continue;
        };
        nodes += 1;
        vals.extend(&outs);
    }
    for v in &mut g.values {
        if r.chance(15) {
            v.ty.sharding = Some(random_sharding(&mut r, v.ty.rank()));
        }
    }
    let n_out = 1 + r.below(3);
    g.outputs = (0..n_out).map(|_| *r.pick(&vals)).collect();
    g
}

/// Checks the round trip of one graph and returns its text.
fn assert_round_trip(g: &Graph) -> String {
    g.verify().expect("generated graphs are valid");
    let text = g.to_text(ConstStyle::Full);
    let back = Graph::parse(&text).unwrap_or_else(|e| panic!("{e}\n--- text ---\n{text}"));
    back.verify().expect("parsed graphs are valid");
    let again = back.to_text(ConstStyle::Full);
    assert_eq!(text, again, "printing the parsed graph changed the text");
    // NaN never equals itself, so nodes (whose attributes may be NaN) compare
    // through their exact debug form, and NaN literal constants (whose payload the
    // text does not keep) through the text above.
    assert_eq!(format!("{:?}", g.nodes), format!("{:?}", back.nodes));
    assert_eq!(g.inputs, back.inputs);
    assert_eq!(g.outputs, back.outputs);
    for (a, b) in g.values.iter().zip(&back.values) {
        assert_eq!((&a.name, &a.ty), (&b.name, &b.ty));
        match (&a.def, &b.def) {
            (kiln_ir::ValueDef::Const(x), kiln_ir::ValueDef::Const(y)) => {
                let nan_free = x.to_f64_vec().iter().all(|v| !v.is_nan()) || x.numel() > 16;
                if nan_free {
                    assert_eq!(x, y, "constant {} changed", a.name);
                }
            }
            (x, y) => assert_eq!(x, y),
        }
    }
    assert_eq!(g.values.len(), back.values.len());
    text
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_graphs_round_trip(seed in any::<u64>()) {
        assert_round_trip(&random_graph(seed));
    }
}

/// The generator really produces the variety the property claims to cover.
#[test]
fn generator_covers_ops_names_and_shardings() {
    let mut mnemonics = std::collections::BTreeSet::new();
    let (mut quoted, mut sharded, mut dense, mut literal) = (0, 0, 0, 0);
    for seed in 0..300 {
        let g = random_graph(seed);
        let text = assert_round_trip(&g);
        mnemonics.extend(g.nodes.iter().map(|n| n.op.mnemonic()));
        quoted += text.matches("%\"").count();
        sharded += text.matches("@[").count();
        dense += text.matches("dense<").count();
        literal += text.matches("= const [").count();
    }
    let missing: Vec<&str> = Op::mnemonics()
        .into_iter()
        .filter(|m| !mnemonics.contains(m))
        .collect();
    // These need several operands of matching shapes, which random picks rarely
    // give; `op_attributes_round_trip` covers their attributes and
    // `fused_bodies_round_trip` the fused op.
    assert!(
        missing
            .iter()
            .all(|m| ["conv_transpose", "batch_norm", "attention", "fused"].contains(m)),
        "ops never generated: {missing:?} (generated {mnemonics:?})"
    );
    assert!(quoted > 100 && sharded > 50 && dense > 20 && literal > 100);
}

/// Every op's attributes parse back to the same op, for ops of every family.
#[test]
fn op_attributes_round_trip() {
    let mut seen = 0;
    for seed in 0..2000 {
        let mut r = Rng(seed);
        let rank = r.below(5);
        let (m, attrs, _) = random_op(&mut r, rank);
        let Ok(op) = Op::parse(&m, &attrs) else {
            continue;
        };
        let back = Op::parse(op.mnemonic(), &op.def().attrs()).expect("printed attrs parse");
        // NaN attributes never compare equal; compare their printed forms instead.
        assert_eq!(
            format!("{}", op.def().attrs()),
            format!("{}", back.def().attrs())
        );
        if !format!("{}", op.def().attrs()).contains("nan") {
            assert_eq!(op, back);
        }
        seen += 1;
    }
    assert!(seen > 1500);
}

fn parse_err(text: &str) -> String {
    match Graph::parse(text) {
        Ok(_) => panic!("parsed:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_texts_are_refused_with_the_problem_named() {
    let cases: &[(&str, &str)] = &[
        ("graph \"g\"(%x: f32[2]) {\n  return %y\n}", "undefined value %y"),
        ("graph \"g\"(%x: f32[2]) {\n  %x: f32[2] = neg(%x)\n  return %x\n}", "defined twice"),
        ("graph \"g\"(%x: f32[2]) {\n  %y: f32[3] = neg(%x)\n  return %y\n}", "written as f32[3]"),
        ("graph \"g\"(%x: f32[2]) {\n  %y: f32[2] = frob(%x)\n  return %y\n}", "unknown op 'frob'"),
        ("graph \"g\"(%x: f32[2], %w: f32[3, 4]) {\n  %y: f32[2] = matmul(%x, %w)\n  return %y\n}", "matmul"),
        ("graph \"g\"() {\n  %c: f32[3] = const [1.0, 2.0]\n  return %c\n}", "needs 3 values, got 2"),
        ("graph \"g\"() {\n  %c: f32[2] = const dense<\"0000\">\n  return %c\n}", "bytes"),
        ("graph \"g\"() {\n  %c: f32[2] = const dense<\"zz\">\n  return %c\n}", "hex digits"),
        ("graph \"g\"() {\n  %c: f32[64] = const elided<256 bytes>\n  return %c\n}", "elided"),
        ("graph \"g\"(%x: f32[2]) {\n  %y: f32[2] = leaky_relu(%x)\n  return %y\n}", "missing attribute 'alpha'"),
        ("graph \"g\"(%x: f32[2]) {\n  %y: f32[2] = neg(%x)\n  return %y\n", "expected"),
        ("graph \"g\"(%x: f32[2]) {\n  return %x\n} trailing", "unexpected text after the graph"),
        ("graph \"g(%x: f32[2]) {}", "unterminated string"),
        ("graph \"g\"(%x: q7[2]) {\n  return %x\n}", "q7"),
        ("graph \"g\"(%x: f32[99999999, 99999999, 99999999]) {\n  return %x\n}", "99999999"),
        ("graph \"g\"() {\n  %c: i64[1] = const [99999999999999999999]\n  return %c\n}", "bad integer"),
    ];
    for (text, want) in cases {
        let msg = parse_err(text);
        assert!(
            msg.contains(want),
            "error for\n{text}\nwas '{msg}', expected it to mention '{want}'"
        );
        assert!(
            msg.contains("line") || msg.contains(':'),
            "no position in '{msg}'"
        );
    }
}

#[test]
fn elided_display_form_is_smaller_and_named() {
    let mut g = Graph::new("big");
    let t = Tensor::from_f64(DType::F32, vec![64], &[0.5; 64]);
    let c = g.add_const("w", t);
    g.outputs = vec![c];
    let text = g.to_text(ConstStyle::Elide(64));
    assert!(text.contains("elided<256 bytes>"), "{text}");
    assert!(parse_err(&text).contains("elided"));
    assert_round_trip(&g);
}

/// A fused op prints its body inline (with names that shadow the outer graph's)
/// and parses back to the same graph.
#[test]
fn fused_bodies_round_trip() {
    use kiln_ir::op::{Binary, BinaryKind, Fused, Unary, UnaryKind};
    let ty = TensorType::new(DType::F32, vec![2, 3]).expect("small");
    let mut body = Graph::new("kernel");
    let a = body.add_input("x", ty.clone());
    let b = body.add_input("b", ty.clone());
    let s = body
        .add_node(
            "s",
            Binary {
                kind: BinaryKind::Add,
            }
            .into(),
            vec![a, b],
            &["s"],
        )
        .expect("typed")[0];
    let y = body
        .add_node(
            "y",
            Unary {
                kind: UnaryKind::Gelu { tanh: true },
            }
            .into(),
            vec![s],
            &["y"],
        )
        .expect("typed")[0];
    body.outputs = vec![y];
    let mut g = Graph::new("outer");
    let x = g.add_input("x", ty.clone());
    let c = g.add_const("c", Tensor::from_f64(DType::F32, vec![2, 3], &[0.5; 6]));
    let op = Op::Fused(Fused {
        body: std::sync::Arc::new(body),
    });
    let out = g.add_node("k0", op, vec![x, c], &["y"]).expect("typed")[0];
    g.outputs = vec![out];
    let text = assert_round_trip(&g);
    assert!(
        text.contains("= fused(%x, %c) graph \"kernel\"(%x: f32[2, 3], %b: f32[2, 3]) {"),
        "{text}"
    );
    assert!(text.contains("gelu(%s) {approximate = \"tanh\"}"), "{text}");
}
