"""Tiny RVC-shaped ONNX models for tests/rvc_user_models.rs.

usage: python make_rvc_fixtures.py OUT_DIR

Every graph has the input and output names, types and ranks of the real
models (RVC's own ONNX export, w-okada voice-changer's export, the MoeSS
content encoders, w-okada's RMVPE export), and simple math that lets a test
see that the right data arrived:

Content encoders (16 kHz waveform in, 50 Hz frames out, HuBERT framing:
window 400, stride 320, so N samples give floor((N - 400) / 320) + 1 frames):
  frame j, channel c = w[c] * mean(x[320 j .. 320 j + 320]^2)
  with mean over c of w[c] = 1, so the mean of a frame's features is the
  mean square of its 20 ms of input.
  vec-768-layer-12.onnx   input 'source' [1, 1, N]  output 'embed' [1, 768, F]
  vec-256-layer-9.onnx    input 'audio'  [1, N]     output 'units' [1, F, 256]

Voice models (100 Hz frames in, R / 100 samples per frame out):
  amplitude of frame i = sqrt(2 * mean(features of frame i)) * gain[speaker]
  (a sine in gives its own amplitude back).
  tiny_v2_40k.onnx   RVC's names: phone [1,T,768], phone_lengths [1],
                     pitch int64 [1,T], pitchf [1,T], ds [1], rnd [1,192,T]
                     -> audio [1,1,400 T]. A sine at pitchf Hz (phase summed
                     from the window start), silent where pitchf = 0 or where
                     `pitch` is not RVC's coarse pitch of `pitchf` (within 1).
                     Speaker gains [1.0, 0.5, 0.25]. Sidecar tiny_v2_40k.toml.
  tiny_v1_48k.onnx   w-okada's names, no pitch: feats [1,T,256], p_len [1],
                     sid [1] -> audio [1,1,480 T]. A 300 Hz sine. Speaker gains
                     [1.0, 0.6]. No sidecar: w-okada's JSON in metadata_props
                     (key "metadata").
RMVPE (w-okada's export): waveform [1, N] 16 kHz, threshold [1] -> pitchf
  [1, floor(N / 160) + 1]: 150 Hz where the 10 ms frame centred on 160 j has
  an RMS above `threshold` / 100, else 0. File rmvpe.onnx.

Unusable entries discovery and loading must explain:
  no_rate.onnx      the v2 graph, no sidecar, no metadata (sample rate unknown)
  bad_rate.onnx     sidecar bad_rate.json: "sample_rate": "forty"
  wrong_dims.onnx   the v2 graph, sidecar says version = "v1"
  lost_encoder.onnx the v2 graph, sidecar names an encoder that is not there
Needs numpy and onnx only.
"""
import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
F0_MIN, F0_MAX = 50.0, 1100.0
MEL_MIN = 1127.0 * math.log(1.0 + F0_MIN / 700.0)
MEL_MAX = 1127.0 * math.log(1.0 + F0_MAX / 700.0)


def const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def save(graph, path, metadata=None):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="manifold make_rvc_fixtures")
    model.ir_version = 8
    if metadata is not None:
        entry = model.metadata_props.add()
        entry.key = "metadata"
        entry.value = json.dumps(metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def channel_weights(c):
    w = 1.0 + 0.5 * np.cos(2.0 * np.pi * np.arange(c) / c)
    return (w / w.mean()).astype(np.float32)


def encoder(channels, in_name, out_name, channels_first, rank3_input):
    kernel = np.zeros((1, 1, 400), dtype=np.float32)
    kernel[0, 0, :320] = 1.0 / 320.0
    nodes = []
    x = in_name
    if not rank3_input:
        nodes.append(helper.make_node("Unsqueeze", [in_name, "axis1"], ["x3"]))
        x = "x3"
    nodes += [
        helper.make_node("Mul", [x, x], ["sq"]),
        helper.make_node("Conv", ["sq", "kernel"], ["ms"], strides=[320]),  # [1, 1, F]
        helper.make_node("Mul", ["ms", "w"], ["cf" if not channels_first else out_name]),  # [1, C, F]
    ]
    if not channels_first:
        nodes.append(helper.make_node("Transpose", ["cf"], [out_name], perm=[0, 2, 1]))
    in_shape = [1, 1, "samples"] if rank3_input else [1, "samples"]
    out_shape = [1, channels, "frames"] if channels_first else [1, "frames", channels]
    return helper.make_graph(
        nodes,
        "tiny_content_encoder",
        [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        initializer=[const("kernel", kernel), const("w", channel_weights(channels).reshape(1, channels, 1)), const("axis1", [1], np.int64)],
    )


def upsample(src, dst, per_frame, nodes):
    """[1, T] -> [1, 1, T * per_frame], each frame repeated."""
    nodes += [
        helper.make_node("Unsqueeze", [src, "axis2"], [src + "_u"]),
        helper.make_node("Expand", [src + "_u", "expand_shape"], [src + "_e"]),
        helper.make_node("Reshape", [src + "_e", "flat_shape"], [dst]),
    ]


def voice(rate, channels, gains, with_pitch, names):
    per_frame = rate // 100
    feats, lengths, sid = names["feats"], names["lengths"], names["sid"]
    nodes = [
        helper.make_node("ReduceMean", [feats], ["mean_feat"], axes=[2], keepdims=0),  # [1, T]
        helper.make_node("Mul", ["mean_feat", "two"], ["twice"]),
        helper.make_node("Max", ["twice", "zero"], ["nonneg"]),
        helper.make_node("Sqrt", ["nonneg"], ["amp0"]),
        helper.make_node("Gather", ["gains", sid], ["gain"], axis=0),  # [1]
        helper.make_node("Cast", [lengths], ["len_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["len_f", "zero"], ["len_zero"]),
    ]
    inputs = [
        helper.make_tensor_value_info(feats, TensorProto.FLOAT, [1, "frames", channels]),
        helper.make_tensor_value_info(lengths, TensorProto.INT64, [1]),
    ]
    inits = [
        const("two", 2.0), const("zero", 0.0), const("gains", gains),
        const("axis2", [2], np.int64), const("expand_shape", [1, 1, per_frame], np.int64),
        const("flat_shape", [1, 1, -1], np.int64), const("step", 2.0 * math.pi / rate),
    ]
    if with_pitch:
        inputs += [
            helper.make_tensor_value_info("pitch", TensorProto.INT64, [1, "frames"]),
            helper.make_tensor_value_info("pitchf", TensorProto.FLOAT, [1, "frames"]),
        ]
        nodes += [
            # RVC's coarse pitch of pitchf, compared with the `pitch` input
            helper.make_node("Div", ["pitchf", "c700"], ["f_rel"]),
            helper.make_node("Add", ["f_rel", "one"], ["f_rel1"]),
            helper.make_node("Log", ["f_rel1"], ["ln"]),
            helper.make_node("Mul", ["ln", "c1127"], ["mel"]),
            helper.make_node("Sub", ["mel", "mel_min"], ["mel0"]),
            helper.make_node("Mul", ["mel0", "mel_scale"], ["mel1"]),
            helper.make_node("Add", ["mel1", "one"], ["coarse_raw"]),
            helper.make_node("Clip", ["coarse_raw", "one", "c255"], ["coarse"]),
            helper.make_node("Cast", ["pitch"], ["pitch_f"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["pitch_f", "coarse"], ["pdiff"]),
            helper.make_node("Abs", ["pdiff"], ["pabs"]),
            helper.make_node("Less", ["pabs", "tolerance"], ["pitch_ok_b"]),
            helper.make_node("Cast", ["pitch_ok_b"], ["pitch_ok"], to=TensorProto.FLOAT),
            helper.make_node("Greater", ["pitchf", "zero"], ["voiced_b"]),
            helper.make_node("Cast", ["voiced_b"], ["voiced"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["amp0", "pitch_ok"], ["amp1"]),
            helper.make_node("Mul", ["amp1", "voiced"], ["amp2"]),
            helper.make_node("Mul", ["amp2", "gain"], ["amp"]),
            helper.make_node("Identity", ["pitchf"], ["freq"]),
        ]
        inits += [const("c700", 700.0), const("one", 1.0), const("c1127", 1127.0), const("mel_min", MEL_MIN),
                  const("mel_scale", 254.0 / (MEL_MAX - MEL_MIN)), const("c255", 255.0), const("tolerance", 1.01)]
    else:
        nodes += [
            helper.make_node("Mul", ["amp0", "gain"], ["amp"]),
            helper.make_node("Mul", ["mean_feat", "zero"], ["freq0"]),
            helper.make_node("Add", ["freq0", "fixed_freq"], ["freq"]),
        ]
        inits += [const("fixed_freq", 300.0)]
    inputs.append(helper.make_tensor_value_info(sid, TensorProto.INT64, [1]))
    extra = ["len_zero"]
    if "rnd" in names:
        inputs.append(helper.make_tensor_value_info(names["rnd"], TensorProto.FLOAT, [1, 192, "frames"]))
        nodes += [
            helper.make_node("ReduceMean", [names["rnd"]], ["rnd_mean"], keepdims=0),
            helper.make_node("Mul", ["rnd_mean", "zero"], ["rnd_zero"]),
        ]
        extra.append("rnd_zero")
    upsample("amp", "amp_up", per_frame, nodes)
    upsample("freq", "freq_up", per_frame, nodes)
    nodes += [
        helper.make_node("Mul", ["freq_up", "step"], ["dphase"]),
        helper.make_node("CumSum", ["dphase", "cum_axis"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Mul", ["wave", "amp_up"], ["shaped"]),
        helper.make_node("Add", ["shaped", extra[0]], ["audio" if len(extra) == 1 else "shaped1"]),
    ]
    if len(extra) == 2:
        nodes.append(helper.make_node("Add", ["shaped1", extra[1]], ["audio"]))
    inits.append(const("cum_axis", 2, np.int64))
    return helper.make_graph(nodes, "tiny_rvc_voice", inputs,
                             [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "samples"])], initializer=inits)


def rmvpe():
    kernel = np.full((1, 1, 160), 1.0 / 160.0, dtype=np.float32)
    nodes = [
        helper.make_node("Unsqueeze", ["waveform", "axis1"], ["x3"]),
        helper.make_node("Pad", ["x3", "pads"], ["padded"]),
        helper.make_node("Mul", ["padded", "padded"], ["sq"]),
        helper.make_node("Conv", ["sq", "kernel"], ["ms"], strides=[160]),  # [1, 1, F]
        helper.make_node("Squeeze", ["ms", "axis1"], ["ms2"]),  # [1, F]
        helper.make_node("Sqrt", ["ms2"], ["rms"]),
        helper.make_node("Div", ["threshold", "hundred"], ["gate"]),
        helper.make_node("Greater", ["rms", "gate"], ["on_b"]),
        helper.make_node("Cast", ["on_b"], ["on"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["on", "f0"], ["pitchf"]),
    ]
    return helper.make_graph(
        nodes,
        "tiny_rmvpe",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, "samples"]),
         helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("pitchf", TensorProto.FLOAT, [1, "frames"])],
        initializer=[const("kernel", kernel), const("axis1", [1], np.int64), const("pads", [0, 0, 80, 0, 0, 80], np.int64),
                     const("hundred", 100.0), const("f0", 150.0)],
    )


RVC_NAMES = {"feats": "phone", "lengths": "phone_lengths", "sid": "ds", "rnd": "rnd"}
WOKADA_NAMES = {"feats": "feats", "lengths": "p_len", "sid": "sid"}


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    p = lambda name: os.path.join(out, name)

    save(encoder(768, "source", "embed", channels_first=True, rank3_input=True), p("vec-768-layer-12.onnx"))
    save(encoder(256, "audio", "units", channels_first=False, rank3_input=False), p("vec-256-layer-9.onnx"))
    save(rmvpe(), p("rmvpe.onnx"))

    v2 = voice(40000, 768, [1.0, 0.5, 0.25], True, RVC_NAMES)
    save(v2, p("tiny_v2_40k.onnx"))
    with open(p("tiny_v2_40k.toml"), "w") as f:
        f.write('name = "Tiny V2"\nsample_rate = 40000\nversion = "v2"\nf0 = true\nencoder = "vec-768-layer-12.onnx"\n'
                'speakers = 3\nlicense = "CC0-1.0"\nsource = "xtask/py/make_rvc_fixtures.py"\n')

    v1 = voice(48000, 256, [1.0, 0.6], False, WOKADA_NAMES)
    save(v1, p("tiny_v1_48k.onnx"), metadata={
        "application": "VC_CLIENT", "version": "2.1", "modelType": "pyTorchRVCNono", "samplingRate": 48000,
        "f0": False, "embChannels": 256, "embedder": "hubert_base", "embOutputLayer": 9, "useFinalProj": True,
    })

    save(v2, p("no_rate.onnx"))
    save(v2, p("bad_rate.onnx"))
    with open(p("bad_rate.json"), "w") as f:
        json.dump({"sample_rate": "forty", "version": "v2"}, f)
    save(v2, p("wrong_dims.onnx"))
    with open(p("wrong_dims.toml"), "w") as f:
        f.write('sample_rate = 40000\nversion = "v1"\n')
    save(v2, p("lost_encoder.onnx"))
    with open(p("lost_encoder.toml"), "w") as f:
        f.write('sample_rate = 40000\nencoder = "hubert_missing.onnx"\n')


if __name__ == "__main__":
    main()
