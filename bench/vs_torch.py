"""kiln on an NVIDIA GPU against PyTorch (cuBLAS and torch.compile), interleaved.

    .venv/bin/python bench/vs_torch.py [--kiln target/release/kiln] [--rounds 5]
                                       [--iters 20] [--size 4096] [--no-models]

Needs an NVIDIA GPU, its driver, and torch with CUDA plus onnx2torch in the
venv (bench/requirements-gpu.txt; scripts/gpu-check installs them).

Cases: an N x N x N matrix product (N = --size, 4096 by default) in bf16, f16
and f32, then the example models. Each round runs a block of kiln
(`kiln bench --target cuda`, whose `kernels_ms` is the median per run of the
time inside the kernels, without the input and output copies; each kernel is
timed on the host up to its synchronize, so a few microseconds of launch
latency per kernel count against kiln) and a block of each PyTorch variant on
device-resident inputs (medians of CUDA-event times): for the matrix
products `torch.matmul` (cuBLAS) and `torch.compile(torch.matmul)`, for the
models the ONNX graph converted by onnx2torch, eager and under torch.compile.
It prints per case the medians, TFLOP/s, and kiln's throughput as a share of
each PyTorch variant's (100%: as fast; heading for 100% of cuBLAS), and one
JSON line per case (prefix `json:`). f32 products let PyTorch use TF32
tensor cores unless --strict-f32 (kiln's f32 product is exact f32 SIMT).
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
MODELS = [("mlp", 64), ("gpt2_block", 1), ("gpt2_4layers", 1), ("resnet_block", 1), ("small_cnn", 8)]
DTYPES = {"bf16": TensorProto.BFLOAT16, "f16": TensorProto.FLOAT16, "f32": TensorProto.FLOAT}


def matmul_model(path: Path, n: int, dt: str) -> None:
    """`c = a @ b` on two n x n inputs of dtype `dt`."""
    t = DTYPES[dt]
    g = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"], name="matmul")],
        f"matmul_{n}_{dt}",
        [helper.make_tensor_value_info("a", t, [n, n]), helper.make_tensor_value_info("b", t, [n, n])],
        [helper.make_tensor_value_info("c", t, [n, n])],
    )
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def kiln_bench(kiln: str, model: str, dims: list, iters: int) -> dict:
    """`kiln bench --target cuda`'s JSON line."""
    cmd = [kiln, "bench", model, "--target", "cuda", "--iters", str(iters), "--warmup", "3"] + dims
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_ms(torch, f, args, iters: int) -> float:
    """Median of `iters` calls of `f(*args)`, each timed by CUDA events."""
    for _ in range(3):
        f(*args)
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f(*args)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return float(np.median(times))


def model_inputs(torch, path: str, batch: int):
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    g = torch.Generator(device="cuda").manual_seed(0)
    out = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in vi.type.tensor_type.shape.dim]
        out.append(torch.rand(shape, device="cuda", generator=g) * 2 - 1)
    return out


def row(name: str, flops: float, kiln: float, peers: dict) -> None:
    tf = lambda ms: flops / (ms * 1e9)  # noqa: E731 (TFLOP/s from ms)
    cells = "".join(f"{p:>14}{ms:>9.3f}{tf(ms):>8.1f}{100 * ms / kiln:>7.0f}%" for p, ms in peers.items())
    print(f"{name:<22}{kiln:>9.3f}{tf(kiln):>8.1f}{cells}")
    print("json: " + json.dumps({"case": name, "kiln_ms": kiln, "kiln_tflops": tf(kiln),
                                  **{f"{p}_ms": ms for p, ms in peers.items()}}))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default=str(ROOT / "target/release/kiln"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--no-models", action="store_true")
    ap.add_argument("--strict-f32", action="store_true")
    a = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("vs_torch: torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = not a.strict_f32
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    print(f"{'case':<22}{'kiln ms':>9}{'TFLOP/s':>8}" + "".join(
        f"{'peer':>14}{'ms':>9}{'TFLOP/s':>8}{'kiln %':>8}" for _ in range(2)))
    tmp = Path(tempfile.mkdtemp())
    n = a.size
    for dt, tdt in [("bf16", torch.bfloat16), ("f16", torch.float16), ("f32", torch.float32)]:
        path = tmp / f"matmul_{n}_{dt}.onnx"
        matmul_model(path, n, dt)
        x = torch.rand(n, n, device="cuda", dtype=tdt)
        y = torch.rand(n, n, device="cuda", dtype=tdt)
        compiled = torch.compile(torch.matmul)
        k, cublas, tc = [], [], []
        for _ in range(a.rounds):
            k.append(kiln_bench(a.kiln, str(path), [], a.iters)["kernels_ms"])
            cublas.append(torch_ms(torch, torch.matmul, (x, y), a.iters))
            tc.append(torch_ms(torch, compiled, (x, y), a.iters))
        row(f"matmul {n}^3 {dt}", 2.0 * n ** 3, float(np.median(k)),
            {"cuBLAS": float(np.median(cublas)), "compile": float(np.median(tc))})
    if a.no_models:
        return 0
    import onnx2torch

    for name, batch in MODELS:
        path = str(ROOT / "models" / f"{name}.onnx")
        net = onnx2torch.convert(onnx.load(path)).cuda().eval()
        ins = model_inputs(torch, path, batch)
        compiled = torch.compile(net)
        dims = ["--dim", f"batch={batch}"]
        k, eager, tc = [], [], []
        total = 0.0
        with torch.no_grad():
            for _ in range(a.rounds):
                j = kiln_bench(a.kiln, path, dims, a.iters)
                total = j["gflops"] * j["median_ms"] * 1e6
                k.append(j["kernels_ms"])
                eager.append(torch_ms(torch, net, ins, a.iters))
                tc.append(torch_ms(torch, compiled, ins, a.iters))
        row(name, total, float(np.median(k)),
            {"eager": float(np.median(eager)), "compile": float(np.median(tc))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
