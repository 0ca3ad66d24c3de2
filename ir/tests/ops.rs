//! Interpreter tests of every op in the op table, independent of the ONNX
//! conformance data: each op's `infer` and `eval` are checked against a naive
//! reference written here from the ONNX operator semantics (loops over f64, no
//! helpers of the crate), on deterministic pseudo-random inputs with awkward
//! shapes (odd sizes, size-1 dims, numpy broadcasting, rank-0 scalars), integer,
//! bool and half-precision dtypes. Bad operands must be refused by `infer` with a
//! message that names the problem, and runtime faults must make `eval` return `Err`.
//!
//! A case is one line in the op's text form: the mnemonic, `name=value` attributes
//! (built through `Op::parse`; `ALIASES` shortens a few, `DEFAULTS` fills some in),
//! operand types such as `f32[3,1,5]`, optionally `range=[lo,hi]` for the float
//! operands or the tag `small` (integers in -2..=2). `= [..] [..] -> [..]` gives
//! operand values and the expected result; `=> text` a refusal's message.

use kiln_ir::DType::{self, Bool, BF16, F16, F32, F64};
use kiln_ir::{Attr, Attrs, Op, Tensor, TensorType};

// ---------------------------------------------------------------- harness

/// SplitMix64: the only source of test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn int(&mut self, lo: i64, hi: i64) -> f64 {
        (lo + (self.next() % (hi - lo + 1) as u64) as i64) as f64
    }
}

fn list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, T::Err> {
    let s = s.trim_start_matches('[').trim_end_matches(']');
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::parse)
        .collect()
}

fn ty(t: &str) -> TensorType {
    let (d, s) = t.split_once('[').unwrap();
    TensorType::new(DType::from_name(d).unwrap(), list(s).unwrap()).unwrap()
}

const ALIASES: [(&str, &str); 8] = [
    ("k", "kernel"),
    ("s", "strides"),
    ("p", "pads"),
    ("d", "dilations"),
    ("g", "group"),
    ("op", "output_padding"),
    ("ceil", "ceil_mode=1"),
    ("incl", "count_include_pad=1"),
];
const DEFAULTS: [(&str, &str); 7] = [
    ("conv", "group=1"),
    ("conv_transpose", "group=1"),
    ("max_pool", "ceil_mode=0 count_include_pad=0"),
    ("avg_pool", "ceil_mode=0 count_include_pad=0"),
    ("pad", "value=0"),
    ("resize", "coord=half_pixel nearest=floor roi=[]"),
    ("resize", "cubic_a=-0.75 exclude_outside=0 extrapolation=0"),
];

/// A case: its words (mnemonic first, then attributes and tags) and operand types.
struct Case {
    line: String,
    words: Vec<String>,
    tys: Vec<TensorType>,
}

fn case(line: &str) -> Case {
    let spec = line.split(" =").next().unwrap();
    let is_ty = |w: &&str| w.contains('[') && !w.contains('=');
    let (t, w): (Vec<&str>, Vec<&str>) = spec.split_whitespace().partition(is_ty);
    let alias = |w: &&str| {
        let (k, v) = w.split_once('=').map_or((*w, None), |(k, v)| (k, Some(v)));
        let full = ALIASES.iter().find(|a| a.0 == k).map_or(k, |a| a.1);
        v.map_or(full.to_string(), |v| format!("{full}={v}"))
    };
    let mut words: Vec<String> = w.iter().take(1).map(|m| m.to_string()).collect();
    words.extend(w.iter().skip(1).map(alias));
    let defaults = DEFAULTS.iter().filter(|d| Some(&d.0) == w.first());
    words.extend(defaults.flat_map(|d| d.1.split(' ')).map(String::from));
    let tys: Vec<TensorType> = t.into_iter().map(ty).collect();
    // Resize scales default to output / input sizes.
    if let (Some(sizes), Some(x)) = (spec.split("sizes=").nth(1), tys.first()) {
        let sizes: Vec<f64> = list(sizes.split(' ').next().unwrap()).unwrap();
        let scale = |(o, i): (&f64, &usize)| format!("{:?}", o / *i as f64);
        let scales: Vec<String> = sizes.iter().zip(&x.shape).map(scale).collect();
        words.push(format!("scales=[{}]", scales.join(",")));
    }
    let line = line.to_string();
    Case { line, words, tys }
}

impl Case {
    fn get(&self, key: &str) -> Option<&str> {
        self.words
            .iter()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
    /// A list (or single value) attribute.
    fn v<T: std::str::FromStr>(&self, key: &str) -> Vec<T> {
        let v = self
            .get(key)
            .unwrap_or_else(|| panic!("{}: no {key}", self.line));
        list(v).unwrap_or_else(|_| panic!("{}: bad {key}", self.line))
    }
    fn n(&self, key: &str) -> usize {
        self.v(key)[0]
    }
    /// A bare tag, or an attribute other than 0.
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some_and(|v| v != "0") || self.words.iter().any(|w| w == key)
    }
    /// The op, through the text form's attribute parser.
    fn op(&self) -> Op {
        let attr = |v: &str| match (list(v), list(v), v.parse(), v.parse()) {
            (Ok(i), _, _, _) if v.starts_with('[') => Attr::Ints(i),
            (_, Ok(f), _, _) if v.starts_with('[') => Attr::Floats(f),
            (_, _, Ok(i), _) => Attr::Int(i),
            (_, _, _, Ok(f)) => Attr::Float(f),
            _ => DType::from_name(v).map_or(Attr::Str(v.into()), Attr::Type),
        };
        let kv = self.words.iter().filter_map(|w| w.split_once('='));
        let attrs = kv.fold(Attrs::default(), |a, (k, v)| a.with(k, attr(v)));
        let op = Op::parse(&self.words[0], &attrs);
        op.unwrap_or_else(|e| panic!("{}: {e}", self.line))
    }
    /// Random operands: floats uniform in `range` (default [-2, 2)), integers in
    /// -9..=9 (-2..=2 when `small`), bools.
    fn inputs(&self, rng: &mut Rng) -> Vec<Tensor> {
        let r: Vec<f64> = list(self.get("range").unwrap_or("-2,2")).unwrap();
        let mut draw = |d: DType| match d {
            Bool => rng.int(0, 1),
            _ if self.has("small") => rng.int(-2, 2),
            _ if d.is_float() => rng.uniform(r[0], r[1]),
            _ => rng.int(-9, 9),
        };
        let mut gen =
            |t: &TensorType| -> Vec<f64> { (0..t.numel()).map(|_| draw(t.dtype)).collect() };
        self.tys.iter().map(|t| tensor(t, &gen(t))).collect()
    }
}

fn tensor(t: &TensorType, v: &[f64]) -> Tensor {
    Tensor::from_f64(t.dtype, t.shape.clone(), v)
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

fn unravel(mut i: usize, s: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; s.len()];
    for d in (0..s.len()).rev() {
        idx[d] = i % s[d];
        i /= s[d];
    }
    idx
}

fn ravel(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(s).fold(0, |acc, (&i, &n)| acc * n + i)
}

/// The elements of `shape` in row-major order, from a function of the multi-index.
fn build(shape: &[usize], mut f: impl FnMut(&[usize]) -> f64) -> Vec<f64> {
    (0..numel(shape)).map(|i| f(&unravel(i, shape))).collect()
}

/// The numpy broadcast of compatible shapes.
fn bshape(shapes: &[&[usize]]) -> Vec<usize> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let dim = |s: &&[usize], i: usize| s.get((i + s.len()).wrapping_sub(r)).copied();
    let max = |i: usize| shapes.iter().filter_map(|s| dim(s, i)).max().unwrap();
    (0..r).map(max).collect()
}

/// The index of a tensor of shape `s` that numpy broadcasting reads for the result
/// index `idx`.
fn bidx(s: &[usize], idx: &[usize]) -> Vec<usize> {
    let off = idx.len() - s.len();
    (0..s.len())
        .map(|d| if s[d] == 1 { 0 } else { idx[off + d] })
        .collect()
}

fn bread(t: &Tensor, idx: &[usize]) -> f64 {
    t.to_f64_vec()[ravel(&bidx(t.shape(), idx), t.shape())]
}

/// The position `o * stride + k * dilation - pad_begin` of a window tap if it lies
/// inside `dims`; `c` holds the `strides` and `dilations`.
fn tap(o: &[usize], k: &[usize], c: &Case, pads: &[i64], dims: &[usize]) -> Option<Vec<usize>> {
    let (s, d) = (c.v::<usize>("strides"), c.v::<usize>("dilations"));
    let at = |e: usize| {
        let q = (o[e] * s[e] + k[e] * d[e]) as i64 - pads[e];
        (0..dims[e] as i64).contains(&q).then_some(q as usize)
    };
    (0..o.len()).map(at).collect()
}

/// (rtol, atol): f32 as asked; f16/bf16 one unit in the last place, since the op and
/// the reference each round an f64 result once.
fn tol(d: DType) -> (f64, f64) {
    match d {
        F64 => (1e-12, 1e-12),
        F32 => (1e-5, 1e-6),
        F16 => (2f64.powi(-10), 1e-6),
        BF16 => (2f64.powi(-7), 1e-6),
        _ => (0.0, 0.0),
    }
}

/// Expected results: the shape and elements of each.
type Out = Vec<(Vec<usize>, Vec<f64>)>;

/// Evaluates the case's op on `t`, checks the results have the inferred types, and
/// compares them with `want` (rounded to the result dtype first): exact for integers
/// and bools, within `tol` for floats; NaN matches NaN.
fn check(c: &Case, t: &[Tensor], want: Out) {
    let (op, tys, at) = (
        c.op(),
        t.iter().map(Tensor::ty).collect::<Vec<_>>(),
        &c.line,
    );
    let inferred = op.def().infer(&tys.iter().collect::<Vec<_>>());
    let inferred = inferred.unwrap_or_else(|e| panic!("{at}: {e}"));
    let outs = op.def().eval(&t.iter().collect::<Vec<_>>());
    let outs = outs.unwrap_or_else(|e| panic!("{at}: {e}"));
    let got: Vec<TensorType> = outs.iter().map(Tensor::ty).collect();
    assert_eq!(
        (got, outs.len()),
        (inferred, want.len()),
        "{at}: result types"
    );
    for (got, (shape, want)) in outs.iter().zip(want) {
        let sizes = (got.shape(), got.numel());
        assert_eq!(sizes, (&shape[..], want.len()), "{at}: shape");
        let want = Tensor::from_f64(got.dtype(), shape.to_vec(), &want).to_f64_vec();
        let (rtol, atol) = tol(got.dtype());
        for (i, (g, w)) in got.to_f64_vec().iter().zip(&want).enumerate() {
            let ok = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= atol + rtol * w.abs();
            let i = unravel(i, &shape);
            assert!(ok, "{at}: at {i:?}: got {g}, want {w}");
        }
    }
}

/// A reference: the expected results of a case's op on operands.
type Ref = fn(&Case, &[Tensor]) -> Out;

/// Runs each case's op on random operands and compares the results with the
/// reference of its mnemonic. A line may hold several cases, split by `|`.
fn check_cases(seed: u64, lines: &[impl AsRef<str>]) {
    let mut rng = Rng(seed);
    for line in lines.iter().flat_map(|l| l.as_ref().split(" | ")) {
        let c = case(line);
        let t = c.inputs(&mut rng);
        check(&c, &t, reference(&c)(&c, &t));
    }
}

/// Checks cases that give their operand values and expected result
/// (`= [..] [..] -> [..]`, shaped as the reference says) or, for `-> !text`, that
/// `eval` fails with that text.
fn check_values(lines: &[&str]) {
    for line in lines {
        let c = case(line);
        let values = line.split_once(" = ").unwrap().1;
        let (ins, want) = values.split_once(" -> ").unwrap();
        let vals = ins.split(' ').map(|v| list(v).unwrap());
        let t: Vec<Tensor> = c.tys.iter().zip(vals).map(|(t, v)| tensor(t, &v)).collect();
        if let Some(msg) = want.strip_prefix('!') {
            let err = c
                .op()
                .def()
                .eval(&t.iter().collect::<Vec<_>>())
                .unwrap_err();
            assert!(err.contains(msg), "{line}: got '{err}'");
            continue;
        }
        let shape = reference(&c)(&c, &t).remove(0).0;
        check(&c, &t, vec![(shape, list(want).unwrap())]);
    }
}

fn reference(c: &Case) -> Ref {
    match c.words[0].as_str() {
        "add" | "sub" | "mul" | "div" | "pow" | "max" | "min" => binary_ref,
        "eq" | "lt" | "gt" | "le" | "ge" | "and" | "or" => binary_ref,
        "where" => where_ref,
        "cast" => |_, t| vec![(t[0].shape().to_vec(), t[0].to_f64_vec())],
        "matmul" => matmul_ref,
        "conv" => conv_ref,
        "conv_transpose" => conv_t_ref,
        "max_pool" | "avg_pool" => pool_ref,
        "batch_norm" => batch_norm_ref,
        "layer_norm" | "rms_norm" => layer_norm_ref,
        "softmax" | "log_softmax" => softmax_ref,
        "attention" => attention_ref,
        m if m.starts_with("reduce_") => reduce_ref,
        "concat" => concat_ref,
        "gather" => gather_ref,
        "reshape" | "transpose" | "expand" | "tile" | "slice" | "pad" => movement_ref,
        "resize" => resize_ref,
        _ => unary_ref,
    }
}

// ---------------------------------------------------------------- elementwise

fn unary_ref(c: &Case, t: &[Tensor]) -> Out {
    let f: fn(f64) -> f64 = match c.words[0].as_str() {
        "neg" => |x| -x,
        "abs" => f64::abs,
        "relu" => |x| x.max(0.0),
        "not" => |x| (x == 0.0) as u8 as f64,
        "sqrt" => f64::sqrt,
        "exp" => f64::exp,
        "log" => f64::ln,
        "tanh" => f64::tanh,
        "erf" => libm::erf,
        "sigmoid" => |x| 1.0 / (1.0 + (-x).exp()),
        "reciprocal" => |x| 1.0 / x,
        "floor" => f64::floor,
        "ceil" => f64::ceil,
        "leaky_relu" => |x| x.min(0.0) * 0.1 + x.max(0.0),
        "hard_sigmoid" => |x| (0.3 * x + 0.6).clamp(0.0, 1.0),
        "hard_swish" => |x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        "silu" => |x| x / (1.0 + (-x).exp()),
        "gelu" if c.has("approximate") => gelu_tanh,
        _ => |x| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())),
    };
    vec![(
        t[0].shape().to_vec(),
        t[0].to_f64_vec().into_iter().map(f).collect(),
    )]
}

fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh())
}

#[test]
fn unary_every_kind_matches_reference() {
    let kinds = "neg|abs|relu|sqrt|exp|log|tanh|erf|sigmoid|reciprocal|floor|ceil|\
                 leaky_relu alpha=0.1|hard_sigmoid alpha=0.3 beta=0.6|hard_swish|silu|\
                 gelu|gelu approximate=tanh";
    // Neg, abs and relu take integers too.
    let types = "f32[3,1,5] f64[7] f16[2,3] bf16[] i64[2,5] i32[7] i8[]";
    let mut lines = vec!["not bool[4,1]".to_string(), "not bool[]".into()];
    for (i, m) in kinds.split('|').enumerate() {
        let positive = matches!(m, "sqrt" | "log" | "reciprocal");
        let range = if positive { "[0.05,4]" } else { "[-4,4]" };
        let types = types.split(' ').take(if i < 3 { 7 } else { 4 });
        lines.extend(types.map(|t| format!("{m} range={range} {t}")));
    }
    check_cases(1, &lines);
    // Values independent of libm.
    check_values(&[
        "erf f64[3] = [0.5,1,-2] -> [0.5204998778130465,0.8427007929497149,-0.9953222650189527]",
        "gelu f64[3] = [0.5,1,-2] -> [0.34573123063700656,0.8413447460685429,-0.04550026389635842]",
    ]);
}

fn binary_ref(c: &Case, t: &[Tensor]) -> Out {
    let nan_or = |a: f64, b: f64, v: f64| [v, f64::NAN][(a.is_nan() || b.is_nan()) as usize];
    let f = |a: f64, b: f64| match c.words[0].as_str() {
        "add" => a + b,
        "sub" => a - b,
        "mul" => a * b,
        "div" => a / b,
        "pow" => a.powf(b),
        "max" => nan_or(a, b, a.max(b)),
        "min" => nan_or(a, b, a.min(b)),
        "eq" => (a == b) as u8 as f64,
        "lt" => (a < b) as u8 as f64,
        "gt" => (a > b) as u8 as f64,
        "le" => (a <= b) as u8 as f64,
        "ge" => (a >= b) as u8 as f64,
        "and" => (a != 0.0 && b != 0.0) as u8 as f64,
        _ => (a != 0.0 || b != 0.0) as u8 as f64,
    };
    let shape = bshape(&[t[0].shape(), t[1].shape()]);
    let y = build(&shape, |i| f(bread(&t[0], i), bread(&t[1], i)));
    vec![(shape, y)]
}

#[test]
fn binary_every_kind_broadcasts() {
    // The dtypes each takes, and the operands: comparisons get small integers (so
    // that they tie), pow positive bases.
    let kinds = [
        ("add sub mul", "f32 f16 bf16 i64 i32", ""),
        ("div", "f32 f16 bf16", ""),
        ("pow", "f32 f16 f64", "range=[0.1,3]"),
        ("max min lt gt le ge", "f32 bf16 i64 i32", "small"),
        ("eq", "f32 i64 bool", "small"),
        ("and or", "bool", ""),
    ];
    let pairs = "[3,1,5] [4,1]|[] [2,3]|[6] [1]|[2,1,1,3] [1,4,3]|[1] []";
    let mut lines = vec![];
    for (ms, ds, tag) in kinds {
        for (m, d) in ms
            .split(' ')
            .flat_map(|m| ds.split(' ').map(move |d| (m, d)))
        {
            let pairs = pairs.split('|').map(|p| p.replace('[', &format!("{d}[")));
            lines.extend(pairs.map(|p| format!("{m} {tag} {p}")));
        }
    }
    check_cases(3, &lines);
}

#[test]
fn binary_integer_and_nan_semantics() {
    // Division truncates toward zero; arithmetic wraps; integer powers are exact;
    // a float base with an integer exponent stays float; max and min keep NaN.
    check_values(&[
        "div i64[5] i64[5] = [7,-7,7,-7,0] [2,2,-2,-2,3] -> [3,-3,-3,3,0]",
        "add i64[2] i64[] = [9223372036854775807,3] [1] -> [-9223372036854775808,4]",
        "mul i64[1] i64[1] = [4611686018427387904] [4] -> [0]",
        "pow i32[4] i32[4] = [3,-2,5,0] [4,3,0,0] -> [81,-8,1,1]",
        "pow f32[3] i32[3] = [1.5,-2,0.5] [2,3,-1] -> [2.25,-8,2]",
        "max f32[3] f32[3] = [nan,1,2] [1,nan,3] -> [nan,nan,3]",
        "min f32[3] f32[3] = [nan,1,2] [1,nan,3] -> [nan,nan,2]",
        "div i64[2] i64[2] = [5,3] [1,0] -> !integer division by zero",
    ]);
}

fn where_ref(_: &Case, t: &[Tensor]) -> Out {
    let shape = bshape(&[t[0].shape(), t[1].shape(), t[2].shape()]);
    let pick = |i: &[usize]| bread(&t[(bread(&t[0], i) == 0.0) as usize + 1], i);
    vec![(shape.clone(), build(&shape, pick))]
}

#[test]
fn where_and_cast() {
    let shapes = ["[3,1,1] d[1,4,1] d[5]", "[] d[2,3] d[3]", "[2,1] d[1] d[]"];
    let dtypes = ["f32", "i64", "bool", "f16"];
    let lines = dtypes.map(|d| shapes.map(|s| format!("where bool{}", s.replace('d', d))));
    check_cases(5, lines.as_flattened());
    // Float to integer truncates toward zero and saturates (NaN is 0); integers wrap.
    check_values(&[
        "cast to=i64 f32[7] = [2.7,-2.7,300.5,-1000,nan,1e10,-0.4] -> [2,-2,300,-1000,0,1e10,0]",
        "cast to=i8 f32[7] = [2.7,-2.7,300.5,-1000,nan,1e10,-0.4] -> [2,-2,127,-128,0,127,0]",
        "cast to=bool f32[4] = [2.7,nan,0,-0.4] -> [1,1,0,1]",
        "cast to=f16 f32[4] = [2.7,-1000,nan,1e10] -> [2.7,-1000,nan,1e10]",
        "cast to=bf16 f32[3] = [2.7,300.5,-0.4] -> [2.7,300.5,-0.4]",
        "cast to=i8 i64[2,2] = [300,-129,1099511627776,-3] -> [44,127,0,-3]",
        "cast to=f64 i64[2] = [1099511627777,-3] -> [1099511627777,-3]",
        "cast to=bool i64[3] = [0,-129,2] -> [0,1,1]",
        "cast to=f32 bool[3,1] = [1,0,1] -> [1,0,1]",
        "cast to=i32 f64[] = [-7.9] -> [-7]",
    ]);
}

// ---------------------------------------------------------------- matmul

/// The operand's elements and shape, read with its last two dims swapped when `tr`.
fn logical(t: &Tensor, tr: bool) -> (Vec<f64>, Vec<usize>) {
    let (v, s) = (t.to_f64_vec(), t.shape());
    let r = s.len();
    let swap = |i: &[usize]| {
        let mut j = i.to_vec();
        if tr {
            j.swap(r - 2, r - 1);
        }
        j
    };
    (build(&swap(s), |i| v[ravel(&swap(i), s)]), swap(s))
}

/// numpy matmul: rank-1 operands are promoted, batch dims broadcast.
fn matmul_ref(c: &Case, t: &[Tensor]) -> Out {
    let (va, sa) = logical(&t[0], c.has("trans_a"));
    let (vb, sb) = logical(&t[1], c.has("trans_b"));
    let sa2 = [&[1][..], &sa].concat()[sa.len().min(2) - 1..].to_vec();
    let sb2 = [&sb[..], &[1]].concat()[..sb.len().max(2)].to_vec();
    let (ra, rb) = (sa2.len() - 2, sb2.len() - 2);
    let (m, k, n) = (sa2[ra], sa2[ra + 1], sb2[rb + 1]);
    let mut full = bshape(&[&sa2[..ra], &sb2[..rb]]);
    let nb = full.len();
    full.extend([m, n]);
    let want = build(&full, |i| {
        let (ia, ib) = (bidx(&sa2[..ra], &i[..nb]), bidx(&sb2[..rb], &i[..nb]));
        let a = |p: usize| va[ravel(&[&ia[..], &[i[nb], p]].concat(), &sa2)];
        let b = |p: usize| vb[ravel(&[&ib[..], &[p, i[nb + 1]]].concat(), &sb2)];
        (0..k).map(|p| a(p) * b(p)).sum()
    });
    full.truncate(nb);
    full.extend(sa.len().gt(&1).then_some(m));
    full.extend(sb.len().gt(&1).then_some(n));
    vec![(full, want)]
}

#[test]
fn matmul_matches_reference() {
    let lines = [
        "matmul f32[2,1,3,5] f32[4,5,7] | matmul f32[3,7,2] f32[1,2,9] | matmul f64[1,6] f64[6,1]",
        "matmul f32[5] f32[5,3] | matmul f32[2,3,5] f32[5] | matmul f32[5] f32[5]",
        "matmul trans_a=1 f32[4,5,3] f32[5,2] | matmul trans_b=1 f32[2,3] f32[4,3]",
        "matmul trans_a=1 trans_b=1 f32[2,1,5,3] f32[4,6,5] | matmul i64[3,4] i64[4,2]",
        "matmul trans_b=1 f16[3,13] f16[2,13]",
    ];
    check_cases(6, &lines);
}

// ---------------------------------------------------------------- conv and pooling

/// ONNX Conv: y[n, m, o] = b[m] + Σ_{c in m's group, k} x[n, c, o*s + k*d - pad] w[m, c, k].
fn conv_ref(c: &Case, t: &[Tensor]) -> Out {
    let (xs, ws, p) = (t[0].shape(), t[1].shape(), c.v::<i64>("pads"));
    let (x, w, nsp) = (t[0].to_f64_vec(), t[1].to_f64_vec(), xs.len() - 2);
    let (s, d) = (c.v::<i64>("strides"), c.v::<i64>("dilations"));
    let out = |i: usize| {
        let span = xs[2 + i] as i64 + p[i] + p[nsp + i] - (ws[2 + i] as i64 - 1) * d[i] - 1;
        (span / s[i] + 1) as usize
    };
    let shape: Vec<usize> = [xs[0], ws[0]]
        .into_iter()
        .chain((0..nsp).map(out))
        .collect();
    let (cg, mg, ksp) = (xs[1] / c.n("group"), ws[0] / c.n("group"), &ws[2..]);
    let want = build(&shape, |i| {
        let mut acc = t.get(2).map_or(0.0, |b| b.to_f64_vec()[i[1]]);
        for j in 0..cg * numel(ksp) {
            let (cl, k) = (j / numel(ksp), unravel(j % numel(ksp), ksp));
            if let Some(pos) = tap(&i[2..], &k, c, &p, &xs[2..]) {
                let xi = [&[i[0], i[1] / mg * cg + cl][..], &pos].concat();
                acc += x[ravel(&xi, xs)] * w[ravel(&[&[i[1], cl][..], &k].concat(), ws)];
            }
        }
        acc
    });
    vec![(shape, want)]
}

/// ONNX ConvTranspose: each x[n, c, i] adds x * w[c, m, k] to y[n, m, i*s + k*d - pad].
fn conv_t_ref(c: &Case, t: &[Tensor]) -> Out {
    let (xs, ws, p) = (t[0].shape(), t[1].shape(), c.v::<i64>("pads"));
    let (x, w, nsp) = (t[0].to_f64_vec(), t[1].to_f64_vec(), xs.len() - 2);
    let [s, d, op] = ["strides", "dilations", "output_padding"].map(|k| c.v::<i64>(k));
    let out = |i: usize| {
        let full = s[i] * (xs[2 + i] as i64 - 1) + op[i] + (ws[2 + i] as i64 - 1) * d[i] + 1;
        (full - p[i] - p[nsp + i]) as usize
    };
    let (cg, mg, ksp) = (xs[1] / c.n("group"), ws[1], &ws[2..]);
    let m = mg * c.n("group");
    let shape: Vec<usize> = [xs[0], m].into_iter().chain((0..nsp).map(out)).collect();
    let mut y = build(&shape, |i| t.get(2).map_or(0.0, |b| b.to_f64_vec()[i[1]]));
    for j in 0..x.len() * mg * numel(ksp) {
        let (xi, ml, kk) = (j / (mg * numel(ksp)), j / numel(ksp) % mg, j % numel(ksp));
        let (i, k) = (unravel(xi, xs), unravel(kk, ksp));
        if let Some(pos) = tap(&i[2..], &k, c, &p, &shape[2..]) {
            let yi = [&[i[0], i[1] / cg * mg + ml][..], &pos].concat();
            y[ravel(&yi, &shape)] += x[xi] * w[ravel(&[&[i[1], ml][..], &k].concat(), ws)];
        }
    }
    vec![(shape, y)]
}

#[test]
fn conv_and_conv_transpose_match_reference() {
    let lines = [
        // grouped, strided, dilated, asymmetric pads, bias; 1-D; depthwise; 1x1; 3-D
        "conv s=[2,1] p=[1,0,2,1] d=[1,2] g=2 f32[2,4,7,6] f32[6,2,3,2] f32[6]",
        "conv s=[2,1] p=[1,0,2,1] d=[1,2] g=2 bf16[2,4,7,6] bf16[6,2,3,2]",
        "conv s=[3] p=[2,1] d=[2] f32[1,3,10] f32[5,3,4]",
        "conv s=[1,1] p=[1,1,1,1] d=[1,1] g=3 f16[1,3,5,5] f16[3,1,3,3] f16[3]",
        "conv s=[1,1] p=[0,0,0,0] d=[1,1] f32[3,1,1,1] f32[2,1,1,1] f32[2]",
        "conv s=[1,2,2] p=[0,1,1,0,0,1] d=[1,1,1] g=2 f32[1,2,4,3,5] f32[4,1,2,2,3]",
        "conv s=[4] p=[0,3] d=[1] f16[2,2,9] f16[3,2,2]",
        // Weights are [C, M/group, k..]; `op` is output_padding.
        "conv_transpose s=[2,3] p=[1,0,0,1] d=[1,2] g=2 op=[1,0] f32[1,4,3,4] f32[4,3,3,2] f32[6]",
        "conv_transpose s=[2] p=[0,0] d=[1] op=[1] bf16[2,2,5] bf16[2,3,4]",
        "conv_transpose s=[1,1] p=[1,1,1,1] d=[1,1] g=3 op=[0,0] f32[1,3,2,2] f32[3,1,3,3]",
        "conv_transpose s=[3] p=[2,1] d=[2] op=[2] f32[1,1,3] f32[1,2,2] f32[2]",
    ];
    check_cases(7, &lines);
}

/// ONNX MaxPool / AveragePool, with the PyTorch ceil-mode rule: a last window that
/// would start in the end padding is dropped.
fn pool_ref(c: &Case, t: &[Tensor]) -> Out {
    let (x, xs, nsp) = (t[0].to_f64_vec(), t[0].shape(), t[0].shape().len() - 2);
    let [k, s, d, p] = ["kernel", "strides", "dilations", "pads"].map(|k| c.v::<usize>(k));
    let padded: Vec<usize> = (0..nsp).map(|i| xs[2 + i] + p[i] + p[nsp + i]).collect();
    let ceil = c.has("ceil_mode");
    let out = |i: usize| {
        let span = (padded[i] - (k[i] - 1) * d[i] - 1) as f64 / s[i] as f64;
        let o = if ceil { span.ceil() } else { span.floor() } as usize + 1;
        o - usize::from(ceil && (o - 1) * s[i] >= xs[2 + i] + p[i])
    };
    let shape: Vec<usize> = xs[..2].iter().copied().chain((0..nsp).map(out)).collect();
    let pi: Vec<i64> = p.iter().map(|&v| v as i64).collect();
    let want = build(&shape, |i| {
        let (mut vals, mut in_padded) = (vec![], 0.0);
        for kx in (0..numel(&k)).map(|kk| unravel(kk, &k)) {
            in_padded += tap(&i[2..], &kx, c, &[0; 3], &padded).is_some() as u8 as f64;
            if let Some(pos) = tap(&i[2..], &kx, c, &pi, &xs[2..]) {
                vals.push(x[ravel(&[&i[..2], &pos[..]].concat(), xs)]);
            }
        }
        let sum: f64 = vals.iter().sum();
        match c.words[0].as_str() {
            "max_pool" => vals.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v)),
            _ if c.has("count_include_pad") => sum / in_padded,
            _ => sum / vals.len() as f64,
        }
    });
    vec![(shape, want)]
}

#[test]
fn pool_matches_reference() {
    let lines = [
        "max_pool k=[3,2] s=[2,3] p=[1,0,1,1] d=[1,1] ceil f32[2,3,7,8]",
        "avg_pool k=[3,2] s=[2,3] p=[1,0,1,1] d=[1,1] ceil f32[2,3,7,8]",
        "avg_pool k=[3,2] s=[2,3] p=[1,0,1,1] d=[1,1] ceil incl f32[2,3,7,8]",
        "avg_pool k=[3,3] s=[2,2] p=[1,1,1,1] d=[1,1] incl f16[1,2,6,5]",
        "avg_pool k=[3] s=[2] p=[1,1] d=[2] incl f32[1,2,9]",
        // The last window overhangs the end pad: only taps inside the padding count.
        "avg_pool k=[3] s=[2] p=[1,0] d=[1] ceil incl f32[1,2,5]",
        "max_pool k=[2] s=[3] p=[0,1] d=[2] ceil f32[1,2,9]",
        "avg_pool k=[5,5] s=[1,1] p=[0,0,0,0] d=[1,1] f32[1,3,5,5]",
        "max_pool k=[2,2,2] s=[1,2,1] p=[0,1,1,1,0,0] d=[1,1,2] f32[1,1,3,4,5]",
        "max_pool k=[2,3] s=[1,2] p=[0,1,1,0] d=[1,1] ceil i64[2,1,4,5]",
    ];
    check_cases(9, &lines);
    // Ceil mode drops the last window, which would start in the end pad: 2, not 3.
    check_values(&[
        "max_pool k=[1] s=[2] p=[0,1] d=[1] ceil f32[1,2,3] = [1,2,3,4,5,6] -> [1,3,4,6]",
    ]);
}

// ---------------------------------------------------------------- normalization

fn batch_norm_ref(c: &Case, t: &[Tensor]) -> Out {
    let [x, scale, bias, mean, var] = [0, 1, 2, 3, 4].map(|i| t[i].to_f64_vec());
    let (xs, eps) = (t[0].shape(), c.v::<f64>("epsilon")[0]);
    let norm = |i: &[usize]| {
        let (v, ch) = (x[ravel(i, xs)], i[1]);
        (v - mean[ch]) / (var[ch] + eps).sqrt() * scale[ch] + bias[ch]
    };
    vec![(xs.to_vec(), build(xs, norm))]
}

/// Layer norm (y, mean, inverse std) or, for `rms_norm`, RMS norm over dims `axis..`.
fn layer_norm_ref(c: &Case, t: &[Tensor]) -> Out {
    let (x, xs, axis) = (t[0].to_f64_vec(), t[0].shape(), c.n("axis"));
    let (n, rms, eps) = (
        numel(&xs[axis..]),
        c.words[0] == "rms_norm",
        c.v::<f64>("epsilon")[0],
    );
    let stats: Vec<(f64, f64)> = x
        .chunks(n)
        .map(|row| {
            let mean = row.iter().sum::<f64>() / n as f64 * (!rms as u8 as f64);
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            (mean, 1.0 / (var + eps).sqrt())
        })
        .collect();
    let y = build(xs, |i| {
        let (mean, inv) = stats[ravel(&i[..axis], &xs[..axis])];
        let shift = t.get(2).map_or(0.0, |b| bread(b, &i[axis..]));
        (x[ravel(i, xs)] - mean) * inv * bread(&t[1], &i[axis..]) + shift
    });
    let stat: Vec<usize> = (0..xs.len())
        .map(|d| [xs[d], 1][(d >= axis) as usize])
        .collect();
    let (means, invs) = stats.into_iter().unzip();
    let stats = [(stat.clone(), means), (stat, invs)]
        .into_iter()
        .filter(|_| !rms);
    [(xs.to_vec(), y)].into_iter().chain(stats).collect()
}

/// Softmax (or log-softmax) along `axis`, with the maximum subtracted so that large
/// logits do not overflow.
fn softmax_ref(c: &Case, t: &[Tensor]) -> Out {
    let (v, s, axis) = (t[0].to_f64_vec(), t[0].shape(), c.n("axis"));
    let y = build(s, |i| {
        let at = |k: usize| v[ravel(&[&i[..axis], &[k], &i[axis + 1..]].concat(), s)];
        let max = (0..s[axis]).map(at).fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = (0..s[axis]).map(|k| (at(k) - max).exp()).sum();
        let e = at(i[axis]) - max;
        [e.exp() / sum, e - sum.ln()][(c.words[0] == "log_softmax") as usize]
    });
    vec![(s.to_vec(), y)]
}

/// softmax(scale * q kᵀ, with the keys after the query masked when causal) v.
fn attention_ref(c: &Case, t: &[Tensor]) -> Out {
    let [q, k, v] = [0, 1, 2].map(|i| t[i].to_f64_vec());
    let [qs, ks, vs] = [0, 1, 2].map(|i| t[i].shape());
    let (r, scale) = (qs.len(), c.v::<f64>("scale")[0]);
    let out = [&qs[..r - 1], &vs[r - 1..]].concat();
    let y = build(&out, |i| {
        let at = |s: &[usize], a: usize, b: usize| ravel(&[&i[..r - 2], &[a, b][..]].concat(), s);
        let qk = |j: usize, e: usize| q[at(qs, i[r - 2], e)] * k[at(ks, j, e)];
        let dot = |j: usize| (0..qs[r - 1]).map(|e| qk(j, e)).sum::<f64>();
        let seen = [ks[r - 2], i[r - 2] + 1][c.has("causal") as usize].min(ks[r - 2]);
        let logits: Vec<f64> = (0..seen).map(|j| scale * dot(j)).collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let p: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = p.iter().sum();
        (0..seen).map(|j| p[j] / sum * v[at(vs, j, i[r - 1])]).sum()
    });
    vec![(out, y)]
}

#[test]
fn normalizations_match_reference() {
    let mut lines = [
        "batch_norm epsilon=0.001 range=[0.1,2] f32[2,3,4,1] f32[3] f32[3] f32[3] f32[3]",
        "batch_norm epsilon=0.001 range=[0.1,2] f32[5,3] f32[3] f32[3] f32[3] f32[3]",
        "batch_norm epsilon=0.001 range=[0.1,2] f16[1,2,3,2,2] f16[2] f16[2] f16[2] f16[2]",
        "layer_norm axis=1 epsilon=0.0001 stash=f32 f32[3,4,5] f32[5] f32[4,5]",
        "layer_norm axis=2 epsilon=0.0001 stash=f32 f32[2,3,7] f32[7]",
        "layer_norm axis=0 epsilon=0.0001 stash=f32 f16[6] f16[1] f16[6]",
        "layer_norm axis=1 epsilon=0.0001 stash=f64 bf16[2,1,3] bf16[1,3] bf16[1]",
        "rms_norm axis=1 epsilon=0.0001 f32[3,4,5] f32[5]",
        "rms_norm axis=0 epsilon=0.0001 f16[7] f16[1]",
        "attention scale=0.7 causal=0 f32[2,3,5] f32[2,4,5] f32[2,4,3]",
        "attention scale=0.7 causal=1 f32[1,2,5,3] f32[1,2,4,3] f32[1,2,4,2]",
        "attention scale=1.5 causal=1 f16[3,2] f16[3,2] f16[3,1]",
    ]
    .map(String::from)
    .to_vec();
    // Logits up to ±100: a naive exp would overflow f32.
    let softmax = "f32[3,4,5] axis=0|f32[3,4,5] axis=1|f64[3,4,5] axis=2|f32[7] axis=0|\
                   f32[2,1,3] axis=1|bf16[2,9] axis=1";
    for (m, s) in ["softmax", "log_softmax"]
        .iter()
        .flat_map(|m| softmax.split('|').map(move |s| (m, s)))
    {
        lines.push(format!("{m} range=[-100,100] {s}"));
    }
    check_cases(10, &lines);
}

// ---------------------------------------------------------------- reductions

fn reduce_ref(c: &Case, t: &[Tensor]) -> Out {
    let (x, xs, axes) = (t[0].to_f64_vec(), t[0].shape(), c.v::<usize>("axes"));
    let kept: Vec<usize> = (0..xs.len())
        .map(|d| [xs[d], 1][axes.contains(&d) as usize])
        .collect();
    let want = build(&kept, |o| {
        let group = (0..x.len()).filter(|&i| bidx(&kept, &unravel(i, xs)) == o);
        let g: Vec<f64> = group.map(|i| x[i]).collect();
        match c.words[0].as_str() {
            "reduce_sum" => g.iter().sum(),
            "reduce_mean" => g.iter().sum::<f64>() / g.len() as f64,
            "reduce_max" => g.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b)),
            _ => g.iter().fold(f64::INFINITY, |a, &b| a.min(b)),
        }
    });
    let keep = c.has("keepdims");
    let shape = (0..xs.len()).filter(|d| keep || !axes.contains(d));
    vec![(shape.map(|d| kept[d]).collect(), want)]
}

#[test]
fn reduce_matches_reference() {
    let axes = "[0,2] keepdims=1|[0,2] keepdims=0|[1] keepdims=0|[] keepdims=0|\
                [0,1,2] keepdims=0|[0,1,2] keepdims=1|[2] keepdims=1";
    let kinds = "sum f32 f16 i64 i8|mean f32 f16 f64|max f32 i64 i8 bool|min f16 i32 bool";
    let mut lines = vec![];
    for kind in kinds.split('|') {
        let (m, types) = kind.split_once(' ').unwrap();
        for (a, d) in axes
            .split('|')
            .flat_map(|a| types.split(' ').map(move |d| (a, d)))
        {
            lines.push(format!("reduce_{m} axes={a} {d}[3,4,5]"));
        }
    }
    check_cases(14, &lines);
}

// ---------------------------------------------------------------- data movement

/// The shape a data-movement case gives an operand of shape `s`. A slice takes
/// element k while start + k * step has not reached end.
fn moved_shape(c: &Case, s: &[usize]) -> Vec<usize> {
    let r = s.len();
    let dims = |f: &dyn Fn(usize) -> usize| (0..r).map(f).collect();
    match c.words[0].as_str() {
        "reshape" | "expand" => c.v("shape"),
        "transpose" => c.v::<usize>("perm").iter().map(|&p| s[p]).collect(),
        "tile" => dims(&|d| s[d] * c.v::<usize>("repeats")[d]),
        "slice" => {
            let [st, en, sp] = ["starts", "ends", "steps"].map(|k| c.v::<i64>(k));
            dims(&|d| {
                (0..=s[d] as i64)
                    .filter(|k| (st[d] + k * sp[d] - en[d]) * sp[d] < 0)
                    .count()
            })
        }
        _ => dims(&|d| (s[d] as i64 + c.v::<i64>("pads")[d] + c.v::<i64>("pads")[r + d]) as usize),
    }
}

/// The operand index a data-movement result index `i` reads; `None` for padding.
/// Reflect mirrors about the edge element (the pads here stay below the dim size).
fn moved_src(c: &Case, s: &[usize], i: &[usize]) -> Option<Vec<usize>> {
    let per_dim =
        |f: &dyn Fn(usize) -> Option<i64>| (0..s.len()).map(|d| Some(f(d)? as usize)).collect();
    let int = |k: &str, d: usize| c.v::<i64>(k)[d];
    match c.words[0].as_str() {
        "reshape" => Some(unravel(ravel(i, &c.v::<usize>("shape")), s)),
        "expand" => Some(bidx(s, i)),
        "transpose" => {
            per_dim(&|d| Some(i[c.v::<usize>("perm").iter().position(|&p| p == d)?] as i64))
        }
        "tile" => per_dim(&|d| Some((i[d] % s[d]) as i64)),
        "slice" => per_dim(&|d| Some(int("starts", d) + i[d] as i64 * int("steps", d))),
        _ => per_dim(&|d| {
            let (j, n) = (i[d] as i64 - int("pads", d), s[d] as i64);
            match c.get("mode").unwrap() {
                _ if (0..n).contains(&j) => Some(j),
                "constant" => None,
                "edge" => Some(j.clamp(0, n - 1)),
                "wrap" => Some((j + n) % n),
                _ => Some(if j < 0 { -j } else { 2 * (n - 1) - j }),
            }
        }),
    }
}

fn movement_ref(c: &Case, t: &[Tensor]) -> Out {
    let (x, s, shape) = (
        t[0].to_f64_vec(),
        t[0].shape(),
        moved_shape(c, t[0].shape()),
    );
    let fill = c.get("value").map_or(0.0, |v| v.parse().unwrap());
    let y = build(&shape, |i| {
        moved_src(c, s, i).map_or(fill, |j| x[ravel(&j, s)])
    });
    vec![(shape, y)]
}

fn concat_ref(c: &Case, t: &[Tensor]) -> Out {
    let axis = c.n("axis");
    let mut shape = t[0].shape().to_vec();
    shape[axis] = t.iter().map(|t| t.shape()[axis]).sum();
    let y = build(&shape, |i| {
        let (mut j, mut k) = (i.to_vec(), 0);
        while j[axis] >= t[k].shape()[axis] {
            j[axis] -= t[k].shape()[axis];
            k += 1;
        }
        t[k].to_f64_vec()[ravel(&j, t[k].shape())]
    });
    vec![(shape, y)]
}

/// ONNX Gather: result index = data index before `axis` ++ index into the indices ++
/// data index after `axis`; negative indices count from the end.
fn gather_ref(c: &Case, t: &[Tensor]) -> Out {
    let (ds, is, axis) = (t[0].shape(), t[1].shape(), c.n("axis"));
    let (v, idx, n) = (t[0].to_f64_vec(), t[1].to_i64_vec(), ds[axis] as i64);
    let shape = [&ds[..axis], is, &ds[axis + 1..]].concat();
    let y = build(&shape, |o| {
        let k = idx[ravel(&o[axis..axis + is.len()], is)];
        let k = (k + n * (k < 0) as i64) as usize;
        v[ravel(&[&o[..axis], &[k], &o[axis + is.len()..]].concat(), ds)]
    });
    vec![(shape, y)]
}

#[test]
fn data_movement_matches_reference() {
    let mut lines = vec![
        "reshape shape=[4,1,6] f32[2,3,4] | reshape shape=[1,1] i64[] | reshape shape=[] i8[1,1]",
        "reshape shape=[0,3] f16[5,0] | transpose perm=[2,0,1] f32[2,3,5] | transpose perm=[] u8[]",
        "transpose perm=[1,0] bool[4,1] | transpose perm=[3,1,0,2] i8[2,3,1,2]",
        "expand shape=[2,3,4] f32[3,1] | expand shape=[2,2] i64[] | expand shape=[3,4] bool[1,4]",
        "expand shape=[1,5] bf16[5] | tile repeats=[2,3,1] f32[2,1,3] | tile repeats=[0] i64[3]",
        "tile repeats=[1,3] bool[2,2] | tile repeats=[] f32[] | concat axis=0 f16[3]",
        "concat axis=1 i64[2,1,3] i64[2,4,3] i64[2,2,3] | concat axis=0 bool[1,2] bool[4,2]",
        "concat axis=2 f32[2,2,1] f32[2,2,3] | slice starts=[3] ends=[1] steps=[1] f32[7]",
        "slice starts=[4,1] ends=[-1,6] steps=[-2,2] f32[5,6]",
        "slice starts=[6] ends=[-1] steps=[-1] i64[7] | slice starts=[] ends=[] steps=[] f16[]",
        "slice starts=[0,3] ends=[3,-1] steps=[1,-3] bool[3,4]",
        // The gathered dims hold 10 or more, so indices in -9..=9 are in range.
        "gather axis=0 f32[10,4,3] i64[2,3] | gather axis=1 i64[3,11,2] i64[]",
        "gather axis=2 bool[2,1,10] i32[1] | gather axis=0 f16[12] i8[4,1,2]",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    // Negative pads crop.
    let pads = "f32[3,4] pads=[2,1,1,3]|i64[2,3,1] pads=[1,2,0,0,1,0]|bool[4] pads=[-1,2]|\
                f16[5] pads=[-2,-1]|f32[] pads=[]";
    let modes = ["constant value=1", "reflect", "edge", "wrap"];
    for (p, m) in pads.split('|').flat_map(|p| modes.map(|m| (p, m))) {
        lines.push(format!("pad mode={m} {p}"));
    }
    check_cases(15, &lines);
    check_values(&[
        "gather axis=1 f32[1,4] i64[1] = [1,2,3,4] [4] -> !index 4 is out of range for axis 1",
        "gather axis=0 f32[4] i32[2,1] = [1,2,3,4] [-1,-5] -> !index -5 is out of range",
        "gather axis=0 f32[4] i8[2] = [1,2,3,4] [-1,-4] -> [4,1]",
    ]);
}

// ---------------------------------------------------------------- resize

/// ONNX Resize (nearest and linear): the input coordinate of output index `o` along
/// dim `d` follows `coord`, using the scale and, as the ONNX reference does, the
/// resized length `scale * input length`; it is clamped into the input.
fn resize_ref(c: &Case, t: &[Tensor]) -> Out {
    let (x, xs) = (t[0].to_f64_vec(), t[0].shape());
    let (sizes, scales) = (c.v("sizes"), c.v::<f64>("scales"));
    let coord = |d: usize, o: usize| {
        let (o, n, s) = (o as f64, xs[d] as f64, scales[d]);
        let c = match c.get("coord").unwrap() {
            "half_pixel" => (o + 0.5) / s - 0.5,
            "pytorch_half_pixel" if s * n > 1.0 => (o + 0.5) / s - 0.5,
            "align_corners" if s * n > 1.0 => o * (n - 1.0) / (s * n - 1.0),
            "asymmetric" => o / s,
            _ => 0.0,
        };
        c.clamp(0.0, n - 1.0)
    };
    let y = build(&sizes, |o| {
        let p: Vec<f64> = (0..xs.len()).map(|d| coord(d, o[d])).collect();
        if c.get("mode") == Some("nearest") {
            let i: Vec<usize> = p.iter().map(|&v| near(c, v) as usize).collect();
            return x[ravel(&i, xs)];
        }
        // Multilinear: a weighted sum over the 2^rank corners of the cell.
        let corner = |bits: usize| {
            let hi = |d: usize| bits >> d & 1;
            let i: Vec<usize> = (0..xs.len())
                .map(|d| (p[d] as usize + hi(d)).min(xs[d] - 1))
                .collect();
            let w = |d: usize| [1.0 - p[d].fract(), p[d].fract()][hi(d)];
            (0..xs.len()).map(w).product::<f64>() * x[ravel(&i, xs)]
        };
        (0..1usize << xs.len()).map(corner).sum()
    });
    vec![(sizes, y)]
}

/// Rounds a nearest-mode coordinate as the case's `nearest` asks.
fn near(c: &Case, v: f64) -> f64 {
    match c.get("nearest").unwrap() {
        "round_prefer_floor" => (v - 0.5).ceil(),
        "round_prefer_ceil" => (v + 0.5).floor(),
        "ceil" => v.ceil(),
        _ => v.floor(),
    }
}

#[test]
fn resize_nearest_and_linear() {
    let lines = [
        "resize mode=linear sizes=[1,2,3,7] f32[1,2,5,4]",
        "resize mode=linear coord=align_corners sizes=[2,5,7] f32[2,3,4]",
        "resize mode=linear coord=pytorch_half_pixel sizes=[1,1,1,5] f32[1,1,4,6]",
        "resize mode=linear coord=asymmetric sizes=[4,2] f16[3,5]",
        "resize mode=nearest coord=asymmetric sizes=[1,1,6,10] f32[1,1,3,4]",
        // Halving with half_pixel puts source coordinates exactly on .5: the ties.
        "resize mode=nearest nearest=round_prefer_floor sizes=[1,2,3,10] f32[1,2,6,5]",
        "resize mode=nearest nearest=round_prefer_ceil sizes=[1,2,3,10] bf16[1,2,6,5]",
        "resize mode=nearest coord=align_corners nearest=ceil sizes=[3,7] f32[2,4]",
    ];
    check_cases(23, &lines);
}

// ---------------------------------------------------------------- refusals

#[test]
fn infer_rejects_bad_operands() {
    let lines = [
        "exp i64[2] => exp does not accept i64[2] | not f32[2] => not does not accept",
        "neg bool[2] => neg does not accept | neg f32[2] f32[2] => expects 1 operands, got 2",
        "add f32[2] f64[2] => add: operand dtypes differ | mul f32[2] => expects 2 operands, got 1",
        "sub f32[3,1,5] f32[4,2] => do not broadcast | and f32[2] f32[2] => and does not accept",
        "lt bool[2] bool[2] => lt does not accept | pow bool[2] f32[2] => pow needs numeric",
        "where f32[2] f32[2] f32[2] => condition must be bool",
        "where bool[2] f32[2] i64[2] => dtypes differ | where bool[3] f32[2] f32[2] => broadcast",
        "cast to=f32 => expects 1 operands, got 0 | matmul f32[] f32[3] => rank >= 1",
        "matmul f32[2,3] f32[4,5] => contracting dims differ: [2, 3] x [4, 5] (3 vs 4)",
        "matmul f32[3] f32[4] => contracting dims differ | matmul f32[2,3] f16[3,2] => differ",
        "matmul f32[2,3,4] f32[3,4,5] => batch dims [2] and [3] do not broadcast",
        "matmul trans_a=1 f32[3] f32[3,2] => trans_a needs an operand of rank >= 2",
        "conv s=[1] p=[0,0] d=[1] f32[1,4,5] f32[6,2,3] => group 1: input channels 4",
        "conv s=[1] p=[0,0] d=[1] g=2 f32[1,4,5] f32[6,2,3] f32[5] => must have 6 elements",
        "conv s=[1] p=[0,1] d=[1] g=2 f32[1,4,5] f32[6,2,7] => extent 7 exceeds padded input 6",
        "conv s=[1] p=[0,0] d=[1] g=2 i64[1,4,5] i64[6,2,3] => input must be a float",
        "conv s=[1,1] p=[0,0] d=[1] g=2 f32[1,4,5] f32[6,2,3] => 1 spatial dims need 1 strides",
        "conv s=[1] p=[0,0] d=[0] g=2 f32[1,4,5] f32[6,2,3] => must be >= 1",
        "conv s=[] p=[] d=[] g=2 f32[4,5] f32[6,2] => N x C x spatial",
        "conv s=[1] p=[0,0] d=[1] g=2 f32[1,4,5] => expects 2 to 3 operands, got 1",
        "conv_transpose s=[1] p=[0,0] d=[1] op=[0] f32[1,4,5] f32[3,2,3] => input channels",
        "conv_transpose s=[1] p=[4,3] d=[1] op=[0] f32[1,4,5] f32[4,2,3] => remove the whole",
        "avg_pool k=[2] s=[1] p=[0,0] d=[1] i64[1,1,4] => input must be a float",
        "max_pool k=[2] s=[1] p=[0,0] d=[1] f32[4] => N x C x spatial",
        "avg_pool k=[2] s=[1] p=[0,0] d=[1] f32[1,1,4,4] => spatial dims need",
        "avg_pool k=[5] s=[1] p=[0,0] d=[1] f32[1,1,4] => extent 5 exceeds padded input 4",
        "batch_norm epsilon=0 f32[2,3,4] f32[3] f32[4] f32[3] f32[3] => bias must have shape [3]",
        "batch_norm epsilon=0 f32[2,3] f32[3] f32[3] f32[3] => expects 5 operands, got 4",
        "layer_norm axis=3 epsilon=0 stash=f32 f32[2,3,4] f32[4] => axis 3 is out of range",
        "layer_norm axis=1 epsilon=0 stash=f32 f32[2,3,4] f32[3] => does not broadcast",
        "layer_norm axis=1 epsilon=0 stash=i64 f32[2,3] f32[3] => stash dtype must be a float",
        "rms_norm axis=1 epsilon=0 f32[2,3] f32[2] => does not broadcast",
        "softmax axis=2 f32[3,4] => out of range for rank 2 | log_softmax axis=0 i64[3] => float",
        "attention scale=1 causal=0 f32[2,3,5] f32[2,4,6] f32[2,4,3] => do not fit",
        "attention scale=1 causal=0 f32[2,3,5] f32[1,4,5] f32[1,4,3] => batch dims differ",
        "reduce_sum axes=[2,0] keepdims=0 f32[3,4,5] => must be sorted",
        "reduce_max axes=[3] keepdims=0 f32[3,4,5] => < rank 3",
        "reduce_mean axes=[0] keepdims=0 i64[3] => reduce_mean needs a float tensor",
        "reduce_sum axes=[0] keepdims=0 bool[3] => reduce_sum needs a numeric tensor",
        "reshape shape=[4,2] f32[3,3] => cannot reshape f32[3, 3] (9 elements)",
        "transpose perm=[0,0,1] f32[2,3,4] => not a permutation",
        "expand shape=[3] f32[3,1] => not broadcast | tile repeats=[2] f32[2,3] => needs 2 repeats",
        "concat axis=1 f32[2,3] f32[3,3] => differ outside axis 1",
        "concat axis=0 f32[2] i64[2] => differ | concat axis=2 f32[2,3] => axis 2 is out of range",
        "slice starts=[7] ends=[5] steps=[1] f32[5] => not a normalized range",
        "slice starts=[0] ends=[5] steps=[0] f32[5] => not a normalized range",
        "slice starts=[0] ends=[1] steps=[1] f32[5,2] => needs 2 starts",
        "pad mode=constant pads=[-2,-1] f32[2] => below zero",
        "pad mode=edge pads=[1,0] f32[0] => empty dim",
        "pad mode=constant pads=[9223372036854775807,9223372036854775807] f32[4] => overflow",
        "conv s=[1] p=[0,0] d=[1] f32[1,1,3] f32[1,1,0] => kernel) dim is 0",
        "conv s=[1] p=[0,0] d=[9223372036854775807] f32[1,1,3] f32[1,1,4] => overflows",
        "conv_transpose s=[1] p=[0,0] d=[1] op=[0] f32[1,1,3] f32[1,1,0] => is 0",
        "conv_transpose s=[1] p=[0,0] d=[1] op=[0] f32[1,1,0] f32[1,1,2] => is 0",
        "concat axis=0 => expects at least 1 operands, got 0",
        "gather axis=0 f32[3] f32[2] => indices must be integers",
        "gather axis=2 f32[3,4] i64[2] => axis 2 is out of range",
        "resize mode=linear sizes=[2,4] i64[2,2] => must be a float",
        "resize mode=linear sizes=[2,4] scales=[1,0] f32[2,2] => must be positive",
        "resize mode=linear coord=tf_crop_and_resize sizes=[2,4] f32[2,2] => roi",
    ];
    for line in lines.iter().flat_map(|l| l.split(" | ")) {
        let (c, needle) = (case(line), line.split_once(" => ").unwrap().1);
        match c.op().def().infer(&c.tys.iter().collect::<Vec<_>>()) {
            Ok(t) => panic!("{line}: accepted, giving {t:?}"),
            Err(e) => assert!(e.contains(needle), "{line}: got '{e}'"),
        }
    }
}
