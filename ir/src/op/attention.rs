//! `attention`: scaled dot-product attention, `softmax(scale * q·kᵀ [causal]) · v`,
//! the composite the optimizer recognizes so backends can run it blocked with an
//! online softmax (no [Sq × Sk] buffer). Statistics accumulate in f64.

use super::{arity, out, same_dtype, want_float, OpDef};
use crate::{Attr, Attrs, Tensor, TensorType};

/// Attention over operands q `[.., Sq, D]`, k `[.., Sk, D]`, v `[.., Sk, Dv]` with
/// equal batch dims; result `[.., Sq, Dv]`. With `causal`, query `i` sees keys
/// `j <= i` (top-left aligned, as PyTorch's `is_causal`).
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub scale: f64,
    pub causal: bool,
}

impl Attention {
    pub(crate) const MNEMONICS: &'static [&'static str] = &["attention"];

    pub(crate) fn parse(_: &str, a: &Attrs) -> Result<Self, String> {
        Ok(Attention {
            scale: a.float("scale")?,
            causal: a.flag("causal")?,
        })
    }
}

impl OpDef for Attention {
    fn mnemonic(&self) -> &'static str {
        "attention"
    }

    fn attrs(&self) -> Attrs {
        Attrs::default()
            .with("scale", Attr::Float(self.scale))
            .with("causal", Attr::Int(self.causal as i64))
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        arity(inputs, 3, 3)?;
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        want_float(q, "q")?;
        same_dtype(q, k, "attention q/k")?;
        same_dtype(q, v, "attention q/v")?;
        let r = q.rank();
        if r < 2 || k.rank() != r || v.rank() != r {
            return Err(format!(
                "q, k, v must have one rank >= 2, got {q}, {k}, {v}"
            ));
        }
        let batch = &q.shape[..r - 2];
        if &k.shape[..r - 2] != batch || &v.shape[..r - 2] != batch {
            return Err(format!("batch dims differ: {q}, {k}, {v}"));
        }
        if k.shape[r - 1] != q.shape[r - 1] || v.shape[r - 2] != k.shape[r - 2] {
            return Err(format!(
                "q [.., Sq, D], k [.., Sk, D], v [.., Sk, Dv] do not fit: {q}, {k}, {v}"
            ));
        }
        let mut o = q.shape.clone();
        o[r - 1] = v.shape[r - 1];
        Ok(vec![out(q.dtype, o)?])
    }

    fn eval(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let (q, k, v) = (inputs[0], inputs[1], inputs[2]);
        let r = q.shape().len();
        let (sq, d) = (q.shape()[r - 2], q.shape()[r - 1]);
        let (sk, dv) = (k.shape()[r - 2], v.shape()[r - 1]);
        let batch: usize = q.shape()[..r - 2].iter().product();
        let (vq, vk, vv) = (q.to_f64_vec(), k.to_f64_vec(), v.to_f64_vec());
        let mut o = vec![0.0; batch * sq * dv];
        let mut s = vec![0.0; sk];
        for b in 0..batch {
            for i in 0..sq {
                let qi = &vq[(b * sq + i) * d..][..d];
                let visible = if self.causal { (i + 1).min(sk) } else { sk };
                for (j, sj) in s.iter_mut().enumerate().take(visible) {
                    let kj = &vk[(b * sk + j) * d..][..d];
                    *sj = self.scale * qi.iter().zip(kj).map(|(x, y)| x * y).sum::<f64>();
                }
                let max = s[..visible]
                    .iter()
                    .cloned()
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for sj in &mut s[..visible] {
                    *sj = (*sj - max).exp();
                    sum += *sj;
                }
                let oi = &mut o[(b * sq + i) * dv..][..dv];
                for (j, &p) in s[..visible].iter().enumerate() {
                    let vj = &vv[(b * sk + j) * dv..][..dv];
                    for (x, y) in oi.iter_mut().zip(vj) {
                        *x += p / sum * y;
                    }
                }
            }
        }
        let mut shape = q.shape().to_vec();
        shape[r - 1] = dv;
        Ok(vec![Tensor::from_f64(q.dtype(), shape, &o)])
    }

    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType]) -> u64 {
        let (q, k) = (inputs[0], inputs[1]);
        let r = q.rank();
        let sk = k.shape[r - 2] as u64;
        let per_row = 2 * sk * q.shape[r - 1] as u64 + 2 * sk * outputs[0].shape[r - 1] as u64;
        let rows = (q.numel() / q.shape[r - 1].max(1)) as u64;
        let work = rows * (per_row + 5 * sk);
        if self.causal {
            work / 2
        } else {
            work
        }
    }
}
