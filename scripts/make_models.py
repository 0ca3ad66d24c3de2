"""Builds kiln's example and benchmark models with onnx's helpers and fixed seeds.

    python scripts/make_models.py OUT_DIR

Writes mlp.onnx, gpt2_block.onnx, gpt2_4layers.onnx (+ external data file),
resnet_block.onnx and small_cnn.onnx. Weights are N(0, 0.02) (conv weights scaled
by fan-in) from numpy's default generator seeded per model, so every run writes the
same bytes.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Builder:
    """Collects nodes and initializers with unique names."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def weight(self, base, shape, std=0.02):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array((self.rng.standard_normal(shape) * std).astype(np.float32), n))
        return n

    def const(self, base, array):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def op(self, op_type, inputs, n_out=1, **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def model(self, name, inputs, outputs, opset=OPSET):
        g = helper.make_graph(self.nodes, name, inputs, outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-make-models")
        onnx.checker.check_model(m)
        return m


def linear(b, x, d_in, d_out):
    return b.op("Add", [b.op("MatMul", [x, b.weight("w", (d_in, d_out))]), b.weight("bias", (d_out,))])


def erf_gelu(b, x):
    inner = b.op("Erf", [b.op("Div", [x, b.const("sqrt2", np.float32(np.sqrt(2.0)))])])
    return b.op("Mul", [b.op("Mul", [x, b.const("half", np.float32(0.5))]), b.op("Add", [inner, b.const("one", np.float32(1.0))])])


def tanh_gelu(b, x):
    cube = b.op("Pow", [x, b.const("three", np.float32(3.0))])
    inner = b.op("Add", [x, b.op("Mul", [cube, b.const("c", np.float32(0.044715))])])
    t = b.op("Tanh", [b.op("Mul", [inner, b.const("k", np.float32(np.sqrt(2.0 / np.pi)))])])
    return b.op("Mul", [b.op("Mul", [x, b.const("half", np.float32(0.5))]), b.op("Add", [t, b.const("one", np.float32(1.0))])])


def mlp():
    b = Builder(1)
    h = "x"
    for d_in, d_out, act in [(1024, 4096, True), (4096, 4096, True), (4096, 1024, False)]:
        h = linear(b, h, d_in, d_out)
        if act:
            h = erf_gelu(b, h)
    h = b.op("Identity", [h])
    return b.model("mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 1024])],
                   [helper.make_tensor_value_info(h, TensorProto.FLOAT, [64, 1024])])


def layer_norm(b, x, d):
    scale = b.const("ln_scale", (1.0 + b.rng.standard_normal(d) * 0.1).astype(np.float32))
    bias = b.const("ln_bias", (b.rng.standard_normal(d) * 0.1).astype(np.float32))
    return b.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=1e-5)


def gpt2_block(b, x, seq=128, d=768, heads=12):
    hd = d // heads
    h = layer_norm(b, x, d)
    qkv = linear(b, h, d, 3 * d)
    q, k, v = b.op("Split", [qkv, b.const("split", np.array([d, d, d], np.int64))], n_out=3, axis=-1)
    shape4 = b.const("heads_shape", np.array([1, seq, heads, hd], np.int64))
    q = b.op("Transpose", [b.op("Reshape", [q, shape4])], perm=[0, 2, 1, 3])
    k = b.op("Transpose", [b.op("Reshape", [k, shape4])], perm=[0, 2, 3, 1])
    v = b.op("Transpose", [b.op("Reshape", [v, shape4])], perm=[0, 2, 1, 3])
    scores = b.op("Div", [b.op("MatMul", [q, k]), b.const("scale", np.float32(np.sqrt(hd)))])
    causal = np.tril(np.ones((seq, seq), dtype=bool)).reshape(1, 1, seq, seq)
    masked = b.op("Where", [b.const("causal_mask", causal), scores, b.const("neg", np.float32(-1e9))])
    probs = b.op("Softmax", [masked], axis=-1)
    ctx = b.op("Transpose", [b.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, b.const("merge_shape", np.array([1, seq, d], np.int64))])
    x = b.op("Add", [x, linear(b, ctx, d, d)])
    h = tanh_gelu(b, linear(b, layer_norm(b, x, d), d, 4 * d))
    h = b.op("Dropout", [h])
    return b.op("Add", [x, linear(b, h, 4 * d, d)])


def gpt2(layers, seed):
    b = Builder(seed)
    h = "x"
    for _ in range(layers):
        h = gpt2_block(b, h)
    if layers > 1:
        h = layer_norm(b, h, 768)
    name = "gpt2_block" if layers == 1 else f"gpt2_{layers}layers"
    return b.model(name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128, 768])],
                   [helper.make_tensor_value_info(h, TensorProto.FLOAT, [1, 128, 768])])


def conv_bn_relu(b, x, c, relu=True):
    w = b.weight("conv_w", (c, c, 3, 3), std=np.sqrt(2.0 / (9 * c)))
    y = b.op("Conv", [x, w], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    bn = [b.const(n, v.astype(np.float32)) for n, v in [
        ("bn_scale", 1.0 + b.rng.standard_normal(c) * 0.1), ("bn_bias", b.rng.standard_normal(c) * 0.1),
        ("bn_mean", b.rng.standard_normal(c) * 0.1), ("bn_var", 1.0 + np.abs(b.rng.standard_normal(c)) * 0.1)]]
    y = b.op("BatchNormalization", [y, *bn], epsilon=1e-5)
    return b.op("Relu", [y]) if relu else y


def resnet_block():
    b = Builder(4)
    h = conv_bn_relu(b, "x", 64)
    h = conv_bn_relu(b, h, 64, relu=False)
    y = b.op("Relu", [b.op("Add", [h, "x"])])
    return b.model("resnet_block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 56, 56])],
                   [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 64, 56, 56])])


def small_cnn():
    """A CNN as exporters write it: symbolic batch, shape arithmetic, Resize."""
    b = Builder(5)
    h = b.op("Conv", ["input", b.weight("w", (8, 3, 3, 3), std=0.2), b.weight("b", (8,))], pads=[1, 1, 1, 1])
    h = b.op("MaxPool", [b.op("Relu", [h])], kernel_shape=[2, 2], strides=[2, 2])
    h = b.op("Conv", [h, b.weight("w", (16, 8, 3, 3), std=0.1)], pads=[1, 1, 1, 1], strides=[2, 2])
    h = b.op("Clip", [h, b.const("lo", np.float32(0.0)), b.const("hi", np.float32(6.0))])
    # Upsample by 2 with sizes computed from the runtime shape, as exporters do.
    shape = b.op("Shape", [h])
    nc = b.op("Slice", [shape, b.const("s0", np.array([0], np.int64)), b.const("s2", np.array([2], np.int64))])
    hw = b.op("Slice", [shape, b.const("s2b", np.array([2], np.int64)), b.const("s4", np.array([4], np.int64))])
    hw2 = b.op("Mul", [hw, b.const("two", np.array([2], np.int64))])
    sizes = b.op("Concat", [nc, hw2], axis=0)
    h = b.op("Resize", [h, "", "", sizes], mode="nearest")
    h = b.op("AveragePool", [h], kernel_shape=[2, 2], strides=[2, 2])
    # Flatten via Shape -> Gather -> Unsqueeze -> Concat -> Reshape.
    batch = b.op("Unsqueeze", [b.op("Gather", [b.op("Shape", [h]), b.const("zero", np.array(0, np.int64))], axis=0),
                               b.const("ax0", np.array([0], np.int64))])
    flat = b.op("Reshape", [h, b.op("Concat", [batch, b.const("minus1", np.array([-1], np.int64))], axis=0)])
    logits = b.op("Gemm", [flat, b.weight("fc", (10, 16 * 8 * 8), std=0.05), b.weight("fcb", (10,))], transB=1)
    probs = b.op("Softmax", [logits], axis=-1)
    return b.model("small_cnn", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])],
                   [helper.make_tensor_value_info(probs, TensorProto.FLOAT, ["batch", 10])])


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(mlp(), str(out / "mlp.onnx"))
    onnx.save_model(gpt2(1, 2), str(out / "gpt2_block.onnx"))
    onnx.save_model(gpt2(4, 3), str(out / "gpt2_4layers.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="gpt2_4layers.onnx.data", size_threshold=1024)
    onnx.save_model(resnet_block(), str(out / "resnet_block.onnx"))
    onnx.save_model(small_cnn(), str(out / "small_cnn.onnx"))
    print(f"wrote mlp, gpt2_block, gpt2_4layers, resnet_block, small_cnn to {out}")


if __name__ == "__main__":
    main()
