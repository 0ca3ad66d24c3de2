//! The row structure of a matrix product over a flattened grid (a
//! convolution's output as `OH x Wp` columns of which each row's first
//! `valid` are stored): recognizing its mask, and rewriting its epilogue in
//! grid rows and columns so that a backend loops over the valid columns of
//! each row without division or branch.

use super::{BinOp, Expr, Gemm};

/// The variable holding the grid row in a split epilogue.
pub const ROW: &str = "n.row";
/// The variable holding the column within the grid row.
pub const COL: &str = "n.col";

/// A row-split epilogue: the grid's row width and valid prefix, and the
/// store's index and value in [`ROW`] and [`COL`], which hold for
/// `0 <= COL < valid` only (a column clamp that is the identity there is
/// dropped).
#[derive(Clone, Debug, PartialEq)]
pub struct RowSplit {
    pub width: i64,
    pub valid: i64,
    pub index: Vec<Expr>,
    pub value: Expr,
}

impl Gemm {
    /// The split epilogue when the mask has the form `n % w < valid`.
    pub fn row_split(&self) -> Option<RowSplit> {
        let Some(Expr::Bin(BinOp::Lt, a, v)) = &self.mask else {
            return None;
        };
        let (Expr::Bin(BinOp::Rem, n, w), Expr::Int(valid)) = (&**a, &**v) else {
            return None;
        };
        let width = match (&**n, &**w) {
            (Expr::Var(n), Expr::Int(w))
                if *n == self.n.0 && *w > 0 && (0..=*w).contains(valid) =>
            {
                *w
            }
            _ => return None,
        };
        let split = |e: &Expr| unclamp(&split_n(e, &self.n.0, width), *valid);
        Some(RowSplit {
            width,
            valid: *valid,
            index: self.index.iter().map(split).collect(),
            value: split(&self.value),
        })
    }
}

/// `e` with `n / w` and `n % w` replaced by [`ROW`] and [`COL`].
fn split_n(e: &Expr, n: &str, w: i64) -> Expr {
    e.rewrite(&|x| match x {
        Expr::Bin(op @ (BinOp::Div | BinOp::Rem), a, b)
            if matches!((&**a, &**b), (Expr::Var(v), Expr::Int(d)) if v == n && *d == w) =>
        {
            Some(Expr::Var(if *op == BinOp::Div { ROW } else { COL }.into()))
        }
        _ => None,
    })
}

/// `e` with `min(COL, c)` for `c >= valid - 1` replaced by `COL`: the clamp
/// that keeps masked-off columns in bounds is the identity on valid ones.
fn unclamp(e: &Expr, valid: i64) -> Expr {
    e.rewrite(&|x| match x {
        Expr::Bin(BinOp::Min, a, b)
            if matches!((&**a, &**b), (Expr::Var(v), Expr::Int(c)) if v == COL && *c >= valid - 1) =>
        {
            Some(Expr::Var(COL.into()))
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{BufId, Operand};

    fn gemm(mask: Option<Expr>, index: Vec<Expr>) -> Gemm {
        Gemm {
            batch: Vec::new(),
            m: ("m".into(), 4),
            n: ("n".into(), 3248),
            k: ("k".into(), 9),
            a: Operand::Packed(BufId(0)),
            b: Operand::Packed(BufId(1)),
            acc: "acc".into(),
            out: BufId(2),
            index,
            value: Expr::local("acc"),
            mask,
        }
    }

    fn n_by(op: BinOp, w: i64) -> Expr {
        Expr::Bin(op, Box::new(Expr::var("n")), Box::new(Expr::Int(w)))
    }

    /// `n % w < valid`.
    fn grid(w: i64, valid: i64) -> Expr {
        Expr::Bin(
            BinOp::Lt,
            Box::new(n_by(BinOp::Rem, w)),
            Box::new(Expr::Int(valid)),
        )
    }

    /// `min(n % w, c)`.
    fn clamp(w: i64, c: i64) -> Expr {
        Expr::Bin(
            BinOp::Min,
            Box::new(n_by(BinOp::Rem, w)),
            Box::new(Expr::Int(c)),
        )
    }

    #[test]
    fn splits_a_grid_mask_and_drops_the_column_clamp() {
        let index = vec![Expr::var("m"), n_by(BinOp::Div, 58), clamp(58, 55)];
        let s = gemm(Some(grid(58, 56)), index)
            .row_split()
            .expect("a grid mask");
        assert_eq!((s.width, s.valid), (58, 56));
        assert_eq!(
            s.index,
            vec![Expr::var("m"), Expr::var(ROW), Expr::var(COL)]
        );
    }

    #[test]
    fn keeps_a_clamp_that_cuts_valid_columns() {
        let s = gemm(Some(grid(58, 56)), vec![clamp(58, 40)])
            .row_split()
            .expect("a grid mask");
        assert!(matches!(&s.index[0], Expr::Bin(BinOp::Min, ..)));
    }

    #[test]
    fn other_masks_are_not_rows() {
        assert_eq!(gemm(Some(grid(58, 59)), Vec::new()).row_split(), None);
        let plain = Expr::Bin(BinOp::Lt, Box::new(Expr::var("n")), Box::new(Expr::Int(56)));
        assert_eq!(gemm(Some(plain), Vec::new()).row_split(), None);
        assert_eq!(gemm(None, Vec::new()).row_split(), None);
        let m_rem = Expr::Bin(
            BinOp::Rem,
            Box::new(Expr::var("m")),
            Box::new(Expr::Int(58)),
        );
        let other = Expr::Bin(BinOp::Lt, Box::new(m_rem), Box::new(Expr::Int(56)));
        assert_eq!(gemm(Some(other), Vec::new()).row_split(), None);
    }
}
