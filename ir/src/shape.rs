//! Shape arithmetic shared by the ops: strides, numpy broadcasting and the
//! index maps the interpreter uses to read broadcast operands.

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The numpy broadcast of two shapes, or `None` when they are incompatible.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// For every element of `out_shape` (row-major), the linear index of the element of
/// `in_shape` it reads under numpy broadcasting. `in_shape` must broadcast to it.
pub fn broadcast_map(in_shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let n = out_shape.len();
    let off = n - in_shape.len();
    let in_strides = strides(in_shape);
    // Stride of each output dim in the input (0 where broadcast).
    let bs: Vec<usize> = (0..n)
        .map(|i| {
            if i < off || in_shape[i - off] == 1 {
                0
            } else {
                in_strides[i - off]
            }
        })
        .collect();
    let total: usize = out_shape.iter().product();
    let mut map = Vec::with_capacity(total);
    let mut idx = vec![0usize; n];
    let mut lin = 0usize;
    for _ in 0..total {
        map.push(lin);
        for d in (0..n).rev() {
            idx[d] += 1;
            lin += bs[d];
            if idx[d] < out_shape[d] {
                break;
            }
            lin -= bs[d] * idx[d];
            idx[d] = 0;
        }
    }
    map
}

/// Resolves a possibly negative axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Visits every multi-index of `shape` in row-major order.
pub fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let total: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..total {
        f(&idx);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}
