"""Materializes the onnx package's backend node test cases into a cache folder.

onnx 1.23 builds these cases in memory (`load_model_tests(kind="node")`); each one is
written as DIR/<name>/model.onnx plus test_data_set_<k>/input_<i>.pb and output_<i>.pb
(TensorProto files, named after the graph's inputs/outputs), the layout onnx itself
used to ship. Cases whose data are not plain tensors (sequences, optionals, maps) are
written without data sets; the Rust harness counts them as skipped.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests


def write_case(case, root: Path) -> None:
    d = root / case.name
    d.mkdir(parents=True, exist_ok=True)
    onnx.save_model(case.model, str(d / "model.onnx"))
    graph = case.model.graph
    for k, (inputs, outputs) in enumerate(case.data_sets or []):
        if not all(isinstance(a, (np.ndarray, np.generic)) for a in list(inputs) + list(outputs)):
            continue
        ds = d / f"test_data_set_{k}"
        ds.mkdir(exist_ok=True)
        for i, (a, vi) in enumerate(zip(inputs, graph.input)):
            (ds / f"input_{i}.pb").write_bytes(numpy_helper.from_array(np.asarray(a), vi.name).SerializeToString())
        for i, (a, vi) in enumerate(zip(outputs, graph.output)):
            (ds / f"output_{i}.pb").write_bytes(numpy_helper.from_array(np.asarray(a), vi.name).SerializeToString())


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cases = load_model_tests(kind="node")
    for case in cases:
        try:
            write_case(case, out)
        except Exception as e:  # a case onnx cannot serialize stays without data
            print(f"note: {case.name}: {e}", file=sys.stderr)
    print(f"materialized {len(cases)} node test cases into {out}")


if __name__ == "__main__":
    main()
