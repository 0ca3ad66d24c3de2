"""kiln against onnxruntime, interleaved, at the same thread counts.

    .venv/bin/python bench/vs_ort.py [--kiln target/release/kiln] [--target cpu-llvm]
                                     [--threads 1,2] [--rounds 5] [--iters 10] [MODEL...]

For each model and thread count it alternates rounds: a block of onnxruntime
runs (intra-op threads = N, inter-op 1, sequential execution), then a block of
`kiln bench --threads N` runs, and reports the median over all runs of each,
the ratio kiln/ort (below 1: kiln is faster), and kiln's GFLOP/s as a share of
this machine's peak (`kiln calibrate`, scaled to N of its cores). With no
MODEL it runs the example models plus a 1024x4096x4096 f32 matrix product.
Prints one table row per case and one JSON line per case (prefix `json:`).
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MODELS = ["mlp", "gpt2_block", "gpt2_4layers", "resnet_block"]


def matmul_model(path: Path) -> None:
    """A single 1024x4096 by 4096x4096 f32 MatMul with constant weights."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.uniform(-1, 1, (4096, 4096)).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")],
        "matmul_1024x4096x4096",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1024, 4096])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1024, 4096])],
        [w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, str(path))


def feeds_for(model: str) -> dict:
    m = onnx.load(model, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    rng = np.random.default_rng(0)
    feeds = {}
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else 1 for d in tt.shape.dim]
        dt = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dt, np.floating):
            feeds[vi.name] = rng.uniform(-1, 1, shape).astype(dt)
        else:
            feeds[vi.name] = rng.integers(0, 10, shape).astype(dt)
    return feeds


def dim_args(model: str) -> list:
    m = onnx.load(model, load_external_data=False)
    syms = set()
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                syms.add(d.dim_param)
    return [a for s in sorted(syms) for a in ("--dim", f"{s}=1")]


def peak_per_core(kiln: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "cpu.json"
        subprocess.run([kiln, "calibrate", "--out", str(out)], check=True, capture_output=True)
        t = json.loads(out.read_text())
        return t["peak_f32"] / t["cores"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--kiln", default=str(ROOT / "target/release/kiln"))
    ap.add_argument("--target", default="cpu-llvm")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    models = a.models or [str(ROOT / "models" / f"{m}.onnx") for m in MODELS]
    if not a.models:
        mm = tmp / "matmul_1024x4096x4096.onnx"
        matmul_model(mm)
        models.append(str(mm))
    peak = peak_per_core(a.kiln)
    print(f"peak per core (kiln calibrate): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':<28}{'thr':>4}{'ort ms':>10}{'kiln ms':>10}{'ratio':>8}{'GFLOP/s':>10}{'% peak':>8}")
    worst = 0.0
    for model in models:
        feeds = feeds_for(model)
        for n in [int(t) for t in a.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = n
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
            for _ in range(3):
                sess.run(None, feeds)
            ort_ms, kiln_ms, gflops = [], [], []
            cmd = [a.kiln, "bench", model, "--target", a.target, "--threads", str(n),
                   "--iters", str(a.iters), "--warmup", "2"] + dim_args(model)
            for _ in range(a.rounds):
                for _ in range(a.iters):
                    t0 = time.perf_counter()
                    sess.run(None, feeds)
                    ort_ms.append((time.perf_counter() - t0) * 1e3)
                r = subprocess.run(cmd, check=True, capture_output=True, text=True)
                j = json.loads(r.stdout.strip().splitlines()[-1])
                kiln_ms.append(j["median_ms"])
                gflops.append(j["gflops"])
            o, k = float(np.median(ort_ms)), float(np.median(kiln_ms))
            g = float(np.median(gflops))
            pct = 100 * g * 1e9 / (peak * n)
            name = Path(model).stem
            print(f"{name:<28}{n:>4}{o:>10.2f}{k:>10.2f}{k / o:>8.2f}{g:>10.1f}{pct:>7.0f}%")
            print("json: " + json.dumps({"model": name, "threads": n, "ort_ms": o, "kiln_ms": k,
                                          "ratio": k / o, "gflops": g, "pct_peak": pct}))
            worst = max(worst, k / o)
    print(f"worst ratio kiln/ort: {worst:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
