"""Runs a model through `kiln run` and onnxruntime on the same inputs and prints,
per output, the max absolute error and the max relative error (max|kiln - ort| /
max|ort|, so values near zero do not dominate).

    python scripts/compare.py MODEL [--dim SYM=N]... [--kiln PATH] [--target T] [--tol 1e-4]

Inputs are drawn with numpy from a fixed seed (floats uniform in [-1, 1)); the
exit status is non-zero when any f32 output exceeds --tol relative error.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--dim", action="append", default=[])
    ap.add_argument("--kiln", default="target/debug/kiln")
    ap.add_argument("--target", default="interp")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dims = dict(d.split("=") for d in a.dim)
    m = onnx.load(a.model, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    rng = np.random.default_rng(a.seed)
    feeds = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else int(dims[d.dim_param]) for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.uniform(-1, 1, shape).astype(dtype)
        else:
            feeds[vi.name] = rng.integers(0, 10, shape).astype(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        args = [a.kiln, "run", a.model, "--target", a.target, "--out-dir", f"{tmp}/out"]
        for d in a.dim:
            args += ["--dim", d]
        for i, (name, arr) in enumerate(feeds.items()):
            p = f"{tmp}/in{i}.npy"
            np.save(p, arr)
            args += ["--input", f"{name}={p}"]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        index = json.loads(Path(f"{tmp}/out/outputs.json").read_text())
        kiln_out = {k: np.load(f"{tmp}/out/{v}") for k, v in index.items()}
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ort_out = dict(zip(names, sess.run(names, feeds)))
    worst = 0.0
    print(f"{Path(a.model).name}:")
    for n in names:
        k, o = kiln_out[n].astype(np.float64), ort_out[n].astype(np.float64)
        if k.shape != o.shape:
            print(f"  {n}: shape mismatch kiln {k.shape} vs ort {o.shape}")
            return 1
        abs_err = float(np.max(np.abs(k - o))) if k.size else 0.0
        scale = float(np.max(np.abs(o))) if o.size else 0.0
        rel = abs_err / scale if scale > 0 else abs_err
        if ort_out[n].dtype == np.float32:
            worst = max(worst, rel)
        print(f"  {n}: {list(o.shape)} {ort_out[n].dtype} max_abs_err={abs_err:.3e} max_rel_err={rel:.3e}")
    ok = worst <= a.tol
    print(f"  {'OK' if ok else 'FAIL'}: worst f32 relative error {worst:.3e} (tolerance {a.tol:.0e})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
