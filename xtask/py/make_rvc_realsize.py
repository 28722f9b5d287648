"""Random-weight ONNX models with the architecture and size of what RVC
users load, to measure what such a model costs on a machine (benches/
rvc_size.rs). They make noise, not voices: only their speed means anything.

usage: python make_rvc_realsize.py OUT_DIR

Writes, with the names and layouts Manifold's RVC loader reads
(src/pipelines/convert_rvc.rs):

  vec-768-layer-12.onnx  HuBERT-base / ContentVec content encoder, as RVC v2
      uses it (the output of transformer layer 12, 768-dim, 50 Hz):
      source [1, 1, N] 16 kHz -> embed [1, 768, F].
      Feature encoder: 7 convolutions of 512 channels (kernels 10,3,3,3,3,2,2,
      strides 5,2,2,2,2,2,2; GELU; instance norm after the first, as
      HuBERT's group norm with one group per channel); layer norm and a
      512 -> 768 projection; convolutional positional embedding (kernel 128,
      16 groups); layer norm; 12 post-norm transformer layers (12 heads,
      feed-forward 3072, GELU). About 94 M parameters (378 MB).
  realsize_v2_40k.onnx  RVC v2 synthesizer at 40 kHz (SynthesizerTrnMs768NSFsid,
      its inference path), RVC's own export names:
      phone [1, T, 768], phone_lengths [1] int64, pitch [1, T] int64,
      pitchf [1, T], ds [1] int64, rnd [1, 192, T] -> audio [1, 1, 400 T].
      Text encoder: 768 -> 192 projection plus a 256-entry pitch embedding,
      6 layers of 2-head self-attention with relative-position key and
      value tables (window 10) and a kernel-3 feed-forward of 768;
      projection to mean and log-scale; prior sample with rnd. Flow: 4
      mean-only coupling layers (WaveNet of 3 layers, kernel 5, 192
      channels, 256-dim speaker conditioning) with channel flips, in
      reverse. Decoder: NSF-HiFi-GAN, 512 initial channels, upsampling
      10,10,2,2 (kernels 16,16,4,4), resblocks kernels 3,7,11 with
      dilations 1,3,5, the sine source of F0 added through a convolution
      at every stage, 256-dim speaker conditioning. About 27.5 M parameters
      (110 MB, the size of RVC v2 ONNX exports).
      One simplification, of no weight in the cost: the relative-position
      logits are computed at full size but added as a per-row bias instead
      of being re-indexed into the T x T score matrix.
  realsize_v2_40k.toml  its sidecar (sample rate, version, encoder).

Weights: normal, scaled by 1 / sqrt(fan-in), fixed seed. Needs numpy and onnx.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
RNG = np.random.default_rng(20261206)


class G:
    """A small ONNX graph builder."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def w(self, shape, fan_in=None, scale=1.0):
        fan = fan_in if fan_in is not None else int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        a = (RNG.standard_normal(shape) * scale / np.sqrt(max(fan, 1))).astype(np.float32)
        return self.const(a)

    def zeros(self, shape):
        return self.const(np.zeros(shape, np.float32))

    def ones(self, shape):
        return self.const(np.ones(shape, np.float32))

    def const(self, a):
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(a), name))
        return name

    def ints(self, values):
        return self.const(np.array(values, np.int64))

    def op(self, op_type, inputs, **attrs):
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def ops(self, op_type, inputs, n_out, **attrs):
        self.n += 1
        outs = [f"t{self.n}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=f"t{self.n}", **attrs))
        return outs

    # Layers -----------------------------------------------------------------

    def conv(self, x, c_in, c_out, k, stride=1, dilation=1, pad=None, groups=1, bias=True):
        p = (k - 1) * dilation // 2 if pad is None else pad
        ins = [x, self.w([c_out, c_in // groups, k])] + ([self.zeros([c_out])] if bias else [])
        return self.op("Conv", ins, kernel_shape=[k], strides=[stride], dilations=[dilation], pads=[p, p], group=groups)

    def linear(self, x, c_in, c_out):
        return self.op("Add", [self.op("MatMul", [x, self.w([c_in, c_out], fan_in=c_in)]), self.zeros([c_out])])

    def gelu(self, x):
        e = self.op("Erf", [self.op("Div", [x, self.const(np.array(np.sqrt(2.0), np.float32))])])
        return self.op("Mul", [self.op("Mul", [x, self.const(np.array(0.5, np.float32))]),
                               self.op("Add", [e, self.const(np.array(1.0, np.float32))])])

    def layer_norm(self, x, c):
        return self.op("LayerNormalization", [x, self.ones([c]), self.zeros([c])], axis=-1, epsilon=1e-5)

    def lrelu(self, x, slope):
        return self.op("LeakyRelu", [x], alpha=slope)

    def t(self, x, perm):
        return self.op("Transpose", [x], perm=perm)

    def attention(self, x, c, heads, rel_window=None):
        """Self-attention over x [1, T, c]."""
        d = c // heads

        def split(v):  # [1, T, c] -> [1, heads, T, d]
            return self.t(self.op("Reshape", [v, self.ints([1, -1, heads, d])]), [0, 2, 1, 3])

        q, k, v = (split(self.linear(x, c, c)) for _ in range(3))
        s = self.op("Mul", [self.op("MatMul", [q, self.t(k, [0, 1, 3, 2])]), self.const(np.array(1 / np.sqrt(d), np.float32))])
        rel_p = None
        if rel_window is not None:
            span = 2 * rel_window + 1
            rel_k = self.op("MatMul", [q, self.w([d, span], fan_in=d)])  # [1, h, T, span]
            s = self.op("Add", [s, self.op("ReduceMean", [rel_k], axes=[-1], keepdims=1)])
            rel_p = self.op("Softmax", [rel_k], axis=-1)
        p = self.op("Softmax", [s], axis=-1)
        o = self.op("MatMul", [p, v])
        if rel_p is not None:
            o = self.op("Add", [o, self.op("MatMul", [rel_p, self.w([2 * rel_window + 1, d], fan_in=2 * rel_window + 1)])])
        o = self.op("Reshape", [self.t(o, [0, 2, 1, 3]), self.ints([1, -1, c])])
        return self.linear(o, c, c)

    def resblock1(self, x, c, k):
        for dil in (1, 3, 5):
            t = self.conv(self.lrelu(x, 0.1), c, c, k, dilation=dil)
            t = self.conv(self.lrelu(t, 0.1), c, c, k)
            x = self.op("Add", [t, x])
        return x


def save(g, inputs, outputs, path, name):
    graph = helper.make_graph(g.nodes, name, inputs, outputs, initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="manifold-xtask make_rvc_realsize.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    with open(path + ".partial", "wb") as f:
        f.write(data)
    os.replace(path + ".partial", path)
    params = sum(int(np.prod(t.dims)) for t in g.inits)
    print(f"make_rvc_realsize: {path}: {len(g.nodes)} nodes, {params / 1e6:.1f} M parameters, {len(data) / 1e6:.0f} MB")


def hubert_base(path):
    g = G()
    x = g.conv("source", 1, 512, 10, stride=5, pad=0, bias=False)
    x = g.gelu(g.op("InstanceNormalization", [x, g.ones([512]), g.zeros([512])], epsilon=1e-5))
    for k in (3, 3, 3, 3, 2, 2):
        x = g.gelu(g.conv(x, 512, 512, k, stride=2, pad=0, bias=False))
    x = g.t(x, [0, 2, 1])  # [1, F, 512]
    x = g.linear(g.layer_norm(x, 512), 512, 768)
    pos = g.conv(g.t(x, [0, 2, 1]), 768, 768, 128, pad=64, groups=16)  # [1, 768, F + 1]
    pos = g.gelu(g.op("Slice", [pos, g.ints([0]), g.ints([-1]), g.ints([2])]))
    x = g.layer_norm(g.op("Add", [x, g.t(pos, [0, 2, 1])]), 768)
    for _ in range(12):
        x = g.layer_norm(g.op("Add", [x, g.attention(x, 768, 12)]), 768)
        f = g.linear(g.gelu(g.linear(x, 768, 3072)), 3072, 768)
        x = g.layer_norm(g.op("Add", [x, f]), 768)
    g.nodes.append(helper.make_node("Transpose", [x], ["embed"], perm=[0, 2, 1]))
    save(g, [helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 1, "N"])],
         [helper.make_tensor_value_info("embed", TensorProto.FLOAT, [1, 768, "F"])], path, "hubert_base_random")


def rvc_v2_40k(path):
    g = G()
    hidden, spk = 192, 256
    # Text encoder, [1, T, 192].
    x = g.linear("phone", 768, hidden)
    x = g.op("Add", [x, g.op("Gather", [g.w([256, hidden], fan_in=1, scale=0.1), "pitch"], axis=0)])
    x = g.lrelu(g.op("Mul", [x, g.const(np.array(np.sqrt(hidden), np.float32))]), 0.1)
    for _ in range(6):
        x = g.layer_norm(g.op("Add", [x, g.attention(x, hidden, 2, rel_window=10)]), hidden)
        f = g.t(x, [0, 2, 1])
        f = g.conv(g.op("Relu", [g.conv(f, hidden, 768, 3)]), 768, hidden, 3)
        x = g.layer_norm(g.op("Add", [x, g.t(f, [0, 2, 1])]), hidden)
    stats = g.t(g.linear(x, hidden, 2 * hidden), [0, 2, 1])  # [1, 384, T]
    m, logs = g.ops("Split", [stats, g.ints([hidden, hidden])], 2, axis=1)
    z = g.op("Add", [m, g.op("Mul", [g.op("Mul", [g.op("Exp", [logs]), "rnd"]), g.const(np.array(0.66666, np.float32))])])
    # Speaker embedding [1, 256, 1].
    sg = g.op("Unsqueeze", [g.op("Gather", [g.w([109, spk], fan_in=1, scale=0.1), "ds"], axis=0), g.ints([2])])
    # Flow, in reverse: (flip, coupling) four times.
    half = hidden // 2
    for _ in range(4):
        z = g.op("Slice", [z, g.ints([-1]), g.ints([-(2 ** 62)]), g.ints([1]), g.ints([-1])])
        x0, x1 = g.ops("Split", [z, g.ints([half, half])], 2, axis=1)
        h = g.conv(x0, half, hidden, 1)
        cond = g.conv(sg, spk, 2 * hidden * 3, 1)
        out = None
        for i in range(3):
            a = g.conv(h, hidden, 2 * hidden, 5)
            gl = g.op("Slice", [cond, g.ints([i * 2 * hidden]), g.ints([(i + 1) * 2 * hidden]), g.ints([1])])
            ta, sb = g.ops("Split", [g.op("Add", [a, gl]), g.ints([hidden, hidden])], 2, axis=1)
            acts = g.op("Mul", [g.op("Tanh", [ta]), g.op("Sigmoid", [sb])])
            if i < 2:
                res, skip = g.ops("Split", [g.conv(acts, hidden, 2 * hidden, 1), g.ints([hidden, hidden])], 2, axis=1)
                h = g.op("Add", [h, res])
            else:
                skip = g.conv(acts, hidden, hidden, 1)
            out = skip if out is None else g.op("Add", [out, skip])
        x1 = g.op("Sub", [x1, g.conv(out, hidden, half, 1)])
        z = g.op("Concat", [x0, x1], axis=1)
    # NSF source: a sine at F0, 400 samples per frame.
    f0 = g.op("Reshape", [g.op("Expand", [g.op("Unsqueeze", ["pitchf", g.ints([2])]), g.ints([1, 1, 400])]), g.ints([1, -1])])
    phase = g.op("CumSum", [g.op("Div", [f0, g.const(np.array(40000.0, np.float32))]), g.const(np.array(1, np.int32))])
    sine = g.op("Mul", [g.op("Sin", [g.op("Mul", [phase, g.const(np.array(2 * np.pi, np.float32))])]), g.const(np.array(0.1, np.float32))])
    voiced = g.op("Cast", [g.op("Greater", [f0, g.const(np.array(0.0, np.float32))])], to=TensorProto.FLOAT)
    har = g.op("Tanh", [g.op("Add", [g.op("Mul", [g.op("Mul", [sine, voiced]), g.const(np.array(0.5, np.float32))]),
                                      g.const(np.array(0.0, np.float32))])])
    har = g.op("Unsqueeze", [har, g.ints([1])])  # [1, 1, 400 T]
    # Decoder.
    x = g.op("Add", [g.conv(z, hidden, 512, 7), g.conv(sg, spk, 512, 1)])
    rates, kernels = [10, 10, 2, 2], [16, 16, 4, 4]
    for i, (u, k) in enumerate(zip(rates, kernels)):
        c_in, c = 512 >> i, 512 >> (i + 1)
        x = g.lrelu(x, 0.1)
        x = g.op("ConvTranspose", [x, g.w([c_in, c, k], fan_in=c_in), g.zeros([c])], kernel_shape=[k], strides=[u],
                 pads=[(k - u) // 2, (k - u) // 2])
        s = int(np.prod(rates[i + 1:]))
        noise = g.conv(har, 1, c, 2 * s, stride=s, pad=s // 2) if s > 1 else g.conv(har, 1, c, 1)
        x = g.op("Add", [x, noise])
        branches = [g.resblock1(x, c, rk) for rk in (3, 7, 11)]
        x = g.op("Mul", [g.op("Sum", branches), g.const(np.array(1 / 3, np.float32))])
    x = g.conv(g.lrelu(x, 0.01), 32, 1, 7, bias=False)
    g.nodes.append(helper.make_node("Tanh", [x], ["audio"]))
    save(g, [helper.make_tensor_value_info("phone", TensorProto.FLOAT, [1, "T", 768]),
             helper.make_tensor_value_info("phone_lengths", TensorProto.INT64, [1]),
             helper.make_tensor_value_info("pitch", TensorProto.INT64, [1, "T"]),
             helper.make_tensor_value_info("pitchf", TensorProto.FLOAT, [1, "T"]),
             helper.make_tensor_value_info("ds", TensorProto.INT64, [1]),
             helper.make_tensor_value_info("rnd", TensorProto.FLOAT, [1, hidden, "T"])],
         [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "S"])], path, "rvc_v2_40k_random")


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: make_rvc_realsize.py OUT_DIR")
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    hubert_base(os.path.join(out, "vec-768-layer-12.onnx"))
    rvc_v2_40k(os.path.join(out, "realsize_v2_40k.onnx"))
    with open(os.path.join(out, "realsize_v2_40k.toml"), "w") as f:
        f.write('name = "Real-size RVC v2 (random weights)"\nsample_rate = 40000\nversion = "v2"\nf0 = true\n'
                'encoder = "vec-768-layer-12.onnx"\nspeakers = 1\nlicense = "CC0-1.0"\n'
                'source = "xtask/py/make_rvc_realsize.py"\n')


if __name__ == "__main__":
    main(sys.argv)
