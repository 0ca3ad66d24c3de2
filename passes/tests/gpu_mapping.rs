//! GPU mappings of hand-written CPU kernels against the kernels they come
//! from, both run by the reference evaluator (a GPU kernel through
//! `simt::to_cpu`): edge cases of the key-tiled (attention) mapping.

use kiln_ir::kernel::Kernel;

fn bufs_for(k: &Kernel, inputs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut bufs: Vec<Vec<f64>> = k.bufs.iter().map(|b| vec![0.0; b.numel()]).collect();
    for (b, x) in bufs.iter_mut().zip(inputs) {
        b.clone_from(x);
    }
    bufs
}

/// Maps `text`, runs both forms, compares buffer `out`; returns the GPU
/// kernel's text.
fn cpu_vs_gpu(text: &str, inputs: &[Vec<f64>], out: usize) -> String {
    let k = Kernel::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let g = kiln_passes::gpu::map_kernel(&k).unwrap();
    let mut want = bufs_for(&k, inputs);
    k.eval(&mut want).unwrap();
    let mut got = bufs_for(&g, inputs);
    g.eval(&mut got).unwrap_or_else(|e| panic!("{e}\n{g}"));
    for (i, (w, o)) in want[out].iter().zip(&got[out]).enumerate() {
        assert!(
            (w - o).abs() <= 1e-4 * w.abs().max(1.0),
            "element {i}: {w} vs {o}\n{g}"
        );
    }
    g.to_string()
}

fn data(n: usize, s: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i * 7 + s) % 23) as f64 - 11.0) / 16.0)
        .collect()
}

/// K is the first 16 columns of `%x`, V all 64: one buffer, one base, two
/// widths, so two tiles.
#[test]
fn one_input_read_at_two_widths() {
    let text = "kernel \"att\"(%q: in f32[64, 16], %x: in f32[80, 64], %o: out f32[64, 64], %row: scratch f32[64]) {\n\
      for i in 0..64 {\n\
        let $m: f32 = f32:-inf\n\
        let $l: f32 = f32:0.0\n\
        for c in 0..64 {\n %row[c] = f32:0.0\n }\n\
        for j in 0..80 {\n\
          let $s: f32 = f32:0.0\n\
          for d in 0..16 {\n $s = (add $s (mul %q[i, d] %x[j, d]))\n }\n\
          let $mx: f32 = (max $m $s)\n\
          let $corr: f32 = (exp (sub $m $mx))\n\
          let $p: f32 = (exp (sub $s $mx))\n\
          $l = (add (mul $l $corr) $p)\n\
          for c1 in 0..64 {\n %row[c1] = (add (mul %row[c1] $corr) (mul $p %x[j, c1]))\n }\n\
          $m = $mx\n\
        }\n\
        for c2 in 0..64 {\n %o[i, c2] = (div %row[c2] $l)\n }\n\
      }\n}\nschedule {\n}\n";
    let g = cpu_vs_gpu(text, &[data(64 * 16, 1), data(80 * 64, 2)], 2);
    assert!(
        g.contains("%x_tile: shared") && g.contains("%x_tile2: shared"),
        "{g}"
    );
}

/// A key loop whose extent falls as the query grows stays one thread per
/// query (its tiles would not be the block's last query's).
#[test]
fn falling_key_extent_is_not_tiled() {
    let text = "kernel \"nm\"(%w: in f32[40], %o: out f32[64]) {\n\
      for i in 0..64 {\n\
        let $s: f32 = f32:0.0\n\
        for j in 0..(sub 100 i) {\n\
          $s = (add $s f32:1.0)\n\
          if (lt j 40) {\n $s = (add $s %w[j])\n }\n\
        }\n\
        %o[i] = $s\n\
      }\n}\nschedule {\n}\n";
    let g = cpu_vs_gpu(text, &[data(40, 3)], 1);
    assert!(!g.contains("shared"), "{g}");
}

/// An empty inner loop over a key-indexed input is no window to stage.
#[test]
fn empty_window_is_not_staged() {
    let text = "kernel \"z\"(%x: in f32[64, 16], %o: out f32[64]) {\n\
      for i in 0..64 {\n\
        let $s: f32 = f32:0.0\n\
        for j in 0..64 {\n\
          for d in 0..0 {\n $s = (add $s %x[j, d])\n }\n\
          $s = (add $s %x[j, 0])\n\
        }\n\
        %o[i] = $s\n\
      }\n}\nschedule {\n}\n";
    let g = cpu_vs_gpu(text, &[data(64 * 16, 3)], 1);
    assert!(g.contains("%x_tile: shared f32[64, 1]"), "{g}");
}
