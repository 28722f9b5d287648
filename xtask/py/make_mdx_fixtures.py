"""Tiny MDX-Net-shaped ONNX models for tests/mdx_user_models.rs.

usage: python make_mdx_fixtures.py OUT_DIR

Each graph takes and returns [batch, 4, dim_f, dim_t] float32 (left real,
left imaginary, right real, right imaginary), like UVR's MDX-Net models, and
multiplies every bin by a fixed complex gain per channel and bin:

    out_re = g * in_re - h * in_im
    out_im = g * in_im + h * in_re

i.e. (in_re + i in_im) * (g + i h). The gains are constant over four equal
bands of the dim_f bins, so a sine in the middle of a band comes out scaled
by |g + i h| and phase-shifted by arg(g + i h), exactly.

Writes into OUT_DIR (the test's user models folder):
  tiny_vocals.onnx  + tiny_vocals.json   UVR's keys, n_fft 2048, dim_f 256, dim_t 2^5
  tiny_instr.onnx   + tiny_instr.toml    our keys, n_fft 3072, dim_f 384, dim_t 16
                                         (dynamic frame count in the graph)
  tiny_broken.onnx  + tiny_broken.json   sidecar says dim_f 512, graph has 256
  orphan.onnx                            no sidecar
  nonsense.onnx     + nonsense.toml      dim_t = "lots"
and OUT_DIR/expected/<model>.json: the gains, for the test to compute the
expected stems ({"gain_re": [[left bins], [right bins]], "gain_im": ...}).
Needs numpy and onnx only.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def band_gains(dim_f, bands):
    """bands: per channel, four complex gains; returns [2, dim_f] complex."""
    width = dim_f // 4
    g = np.zeros((2, dim_f), dtype=np.complex128)
    for ch in range(2):
        for i, z in enumerate(bands[ch]):
            hi = dim_f if i == 3 else (i + 1) * width
            g[ch, i * width:hi] = z
    return g


def polar(r, degrees):
    return r * np.exp(1j * np.deg2rad(degrees))


def make_graph(dim_f, frames, batch, gains):
    """frames/batch: int or a symbolic name (dynamic)."""
    re = gains.real.astype(np.float32)
    im = gains.imag.astype(np.float32)
    # A multiplies (L re, L im, R re, R im) by g; B multiplies the re/im
    # swapped planes (L im, L re, R im, R re) by (-h, h, -h, h).
    a = np.stack([re[0], re[0], re[1], re[1]])[None, :, :, None]
    b = np.stack([-im[0], im[0], -im[1], im[1]])[None, :, :, None]
    shape = [batch, 4, dim_f, frames]
    nodes = [
        helper.make_node("Gather", ["input", "swap"], ["swapped"], axis=1),
        helper.make_node("Mul", ["input", "gain_a"], ["direct"]),
        helper.make_node("Mul", ["swapped", "gain_b"], ["crossed"]),
        helper.make_node("Add", ["direct", "crossed"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mdx",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
        initializer=[
            numpy_helper.from_array(np.array([1, 0, 3, 2], dtype=np.int64), "swap"),
            numpy_helper.from_array(a.astype(np.float32), "gain_a"),
            numpy_helper.from_array(b.astype(np.float32), "gain_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="manifold make_mdx_fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_expected(out_dir, name, gains):
    os.makedirs(os.path.join(out_dir, "expected"), exist_ok=True)
    with open(os.path.join(out_dir, "expected", name + ".json"), "w") as f:
        json.dump({"gain_re": gains.real.tolist(), "gain_im": gains.imag.tolist()}, f)


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)

    # Vocals: UVR keys in JSON, dynamic batch.
    vocals = band_gains(256, [
        [0.5, polar(1.5, 60), 0.25, polar(1.0, -90)],
        [1.0, 0.75, polar(2.0, 30), 0.0],
    ])
    onnx.save(make_graph(256, 32, "batch", vocals), os.path.join(out, "tiny_vocals.onnx"))
    with open(os.path.join(out, "tiny_vocals.json"), "w") as f:
        json.dump({"compensate": 1.05, "mdx_dim_f_set": 256, "mdx_dim_t_set": 5, "mdx_n_fft_scale_set": 2048, "primary_stem": "Vocals"}, f, indent=2)
    write_expected(out, "tiny_vocals", vocals)

    # Instrumental: our keys in TOML, a non-power-of-two FFT, dynamic frames.
    instr = band_gains(384, [
        [polar(1.0, 45), 0.3, 1.7, polar(0.6, 180)],
        [0.2, polar(1.25, -120), 1.0, 0.9],
    ])
    onnx.save(make_graph(384, "frames", 1, instr), os.path.join(out, "tiny_instr.onnx"))
    with open(os.path.join(out, "tiny_instr.toml"), "w") as f:
        f.write(
            'name = "Tiny Instrumental"\n'
            'primary_stem = "Instrumental"\n'
            "n_fft = 3072\n"
            "dim_f = 384\n"
            "dim_t = 16\n"
            "compensate = 0.9\n"
            "sample_rate = 44100\n"
            "hop = 1024\n"
            'license = "CC0-1.0"\n'
            'source = "xtask/py/make_mdx_fixtures.py"\n'
        )
    write_expected(out, "tiny_instr", instr)

    # Broken: the sidecar does not match the graph.
    onnx.save(make_graph(256, 32, "batch", vocals), os.path.join(out, "tiny_broken.onnx"))
    with open(os.path.join(out, "tiny_broken.json"), "w") as f:
        json.dump({"compensate": 1.0, "mdx_dim_f_set": 512, "mdx_dim_t_set": 5, "mdx_n_fft_scale_set": 2048, "primary_stem": "Vocals"}, f, indent=2)

    # Unusable entries discovery must explain.
    onnx.save(make_graph(256, 32, "batch", vocals), os.path.join(out, "orphan.onnx"))
    onnx.save(make_graph(256, 32, "batch", vocals), os.path.join(out, "nonsense.onnx"))
    with open(os.path.join(out, "nonsense.toml"), "w") as f:
        f.write('primary_stem = "Vocals"\nn_fft = 2048\ndim_f = 256\ndim_t = "lots"\n')


if __name__ == "__main__":
    main()
