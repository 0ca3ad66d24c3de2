//! Memory planning: every intermediate gets a 64-byte-aligned offset in one
//! arena. Lifetimes run from the producing step to the last reading step (views
//! extend their root; graph outputs live to the end); slots whose lifetimes do
//! not overlap share bytes (best fit from a free list). An elementwise kernel
//! writes in place over an operand that dies at that step, when every read of
//! that operand is at the element being written.

use super::{Program, SlotId, SlotKind, Step};
use kiln_ir::kernel::{Expr, Kernel, Role, Stmt};

/// Arena offsets of every slot that lives in the arena.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Byte offset per slot (roots of `Temp` slots only).
    pub offsets: Vec<Option<usize>>,
    pub arena_bytes: usize,
    /// What the arena would need without reuse.
    pub naive_bytes: usize,
    /// `(result, operand)` pairs computed in place.
    pub in_place: Vec<(SlotId, SlotId)>,
}

const ALIGN: usize = 64;

fn size_of(p: &Program, s: SlotId) -> usize {
    p.slots[s].ty.bytes().div_ceil(ALIGN).max(1) * ALIGN
}

fn reads(st: &Step) -> Vec<SlotId> {
    match st {
        Step::Kernel { kernel, args } => kernel
            .bufs
            .iter()
            .zip(args)
            .filter(|(b, _)| b.role == Role::In)
            .filter_map(|(_, a)| *a)
            .collect(),
        Step::Host { inputs, .. } => inputs.clone(),
    }
}

fn writes(st: &Step) -> Vec<SlotId> {
    match st {
        Step::Kernel { kernel, args } => kernel
            .bufs
            .iter()
            .zip(args)
            .filter(|(b, _)| b.role == Role::Out)
            .filter_map(|(_, a)| *a)
            .collect(),
        Step::Host { outputs, .. } => outputs.clone(),
    }
}

/// Plans the arena of a program.
pub fn plan_memory(p: &Program) -> Plan {
    let n = p.slots.len();
    let end = p.steps.len();
    let mut last = vec![0usize; n];
    for (i, st) in p.steps.iter().enumerate() {
        for s in reads(st) {
            let r = p.root(s);
            last[r] = last[r].max(i);
        }
    }
    for &o in &p.outputs {
        last[p.root(o)] = end;
    }
    let mut plan = Plan {
        offsets: vec![None; n],
        ..Plan::default()
    };
    let mut free: Vec<(usize, usize)> = Vec::new();
    let mut live: Vec<SlotId> = Vec::new();
    for (i, st) in p.steps.iter().enumerate() {
        let inplace = in_place_pair(p, st, &last, i);
        for w in writes(st) {
            let r = p.root(w);
            if !matches!(p.slots[r].kind, SlotKind::Temp) || plan.offsets[r].is_some() {
                continue;
            }
            let size = size_of(p, r);
            plan.naive_bytes += size;
            if let Some((out, src)) = inplace {
                if out == r {
                    plan.offsets[r] = plan.offsets[src];
                    live.retain(|&l| l != src);
                    live.push(r);
                    plan.in_place.push((r, src));
                    continue;
                }
            }
            let at = take(&mut free, size).unwrap_or_else(|| {
                let at = plan.arena_bytes;
                plan.arena_bytes += size;
                at
            });
            plan.offsets[r] = Some(at);
            live.push(r);
        }
        let (dead, keep): (Vec<SlotId>, Vec<SlotId>) = live.iter().partition(|&&l| last[l] <= i);
        live = keep;
        for d in dead {
            if let Some(at) = plan.offsets[d] {
                give(&mut free, at, size_of(p, d));
            }
        }
    }
    plan
}

/// Best fit: the smallest free block that holds `size`, split.
fn take(free: &mut Vec<(usize, usize)>, size: usize) -> Option<usize> {
    let (i, _) = free
        .iter()
        .enumerate()
        .filter(|(_, b)| b.1 >= size)
        .min_by_key(|(_, b)| (b.1, b.0))?;
    let (at, len) = free[i];
    if len == size {
        free.remove(i);
    } else {
        free[i] = (at + size, len - size);
    }
    Some(at)
}

/// Returns a block, merging it with free neighbours.
fn give(free: &mut Vec<(usize, usize)>, at: usize, size: usize) {
    free.push((at, size));
    free.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for &(a, l) in free.iter() {
        match merged.last_mut() {
            Some(m) if m.0 + m.1 == a => m.1 += l,
            _ => merged.push((a, l)),
        }
    }
    *free = merged;
}

/// The `(result root, operand root)` an elementwise kernel can compute in
/// place: same size, the operand is an arena temp that dies here, and every
/// load of it reads the element the single store writes.
fn in_place_pair(p: &Program, st: &Step, last: &[usize], i: usize) -> Option<(SlotId, SlotId)> {
    let Step::Kernel { kernel, args } = st else {
        return None;
    };
    let (store_buf, index) = single_store(kernel)?;
    let out = p.root(args[store_buf]?);
    for (b, a) in kernel.bufs.iter().zip(args) {
        let Some(a) = *a else { continue };
        let src = p.root(a);
        if b.role != Role::In
            || src == out
            || !matches!(p.slots[src].kind, SlotKind::Temp)
            || last[src] != i
            || p.slots[src].ty.bytes() != p.slots[out].ty.bytes()
            || kernel.bufs[store_buf].dtype != b.dtype
            || b.shape != kernel.bufs[store_buf].shape
        {
            continue;
        }
        // No other argument of this kernel may alias the operand.
        let id = kernel.bufs.iter().position(|x| std::ptr::eq(x, b))?;
        let aliased = args
            .iter()
            .enumerate()
            .any(|(j, o)| j != id && o.map(|o| p.root(o)) == Some(src));
        if !aliased && loads_only_at(kernel, id as u32, index) {
            return Some((out, src));
        }
    }
    None
}

/// The single store of a kernel made of loops around one store.
fn single_store(k: &Kernel) -> Option<(usize, &[Expr])> {
    let mut body = &k.body;
    loop {
        match body.as_slice() {
            [Stmt::For { body: b, .. }] => body = b,
            stmts => {
                let mut found = None;
                for s in stmts {
                    match s {
                        Stmt::Let { .. } => {}
                        Stmt::Store { buf, index, .. } if found.is_none() => {
                            found = Some((buf.0 as usize, index.as_slice()))
                        }
                        _ => return None,
                    }
                }
                return found;
            }
        }
    }
}

/// True if every load of buffer `b` in the kernel uses exactly `index`.
fn loads_only_at(k: &Kernel, b: u32, index: &[Expr]) -> bool {
    let mut ok = true;
    let mut check = |e: &Expr| {
        e.walk(&mut |x| {
            if let Expr::Load(id, ix) = x {
                if id.0 == b && ix.as_slice() != index {
                    ok = false;
                }
            }
        })
    };
    Stmt::each_expr(&k.body, &mut check);
    ok
}
