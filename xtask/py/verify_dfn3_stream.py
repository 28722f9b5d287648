"""Checks the streaming DeepFilterNet3 graphs against the shipped sequence graphs.

usage: python verify_dfn3_stream.py TARBALL OUT_DIR [--frames 200] [--seed 0]
                                    [--tol 1e-4] [--timing-passes 10]

OUT_DIR is what prepare_dfn3.py wrote (three *_stream.onnx + dfn3_stream.json).
Needs numpy, onnx and onnxruntime.

1. Graph-level check: runs enc -> erb_dec / df_dec over T frames of random but
   plausible features (feat_erb in [-1, 0], feat_spec in [-0.5, 0.5]) with the
   sequence graphs in one call each, and with the streaming graphs one frame per
   call (states carried from outputs to inputs as dfn3_stream.json says). Each
   streaming output at step t is compared with the sequence output at frame
   t - output_delay_frames (from the JSON) and the max abs difference is printed.
2. Model-level check: applies the JSON's conv_lookahead recipe (skip the first
   conv_lookahead feature frames, flush with zero frames) and compares it with
   the sequence graphs fed DeepFilterNet's shifted features
   (ConstantPad2d((0, 0, -la, la)) on the time axis).
3. Timing: mean microseconds per frame for the three streaming sessions together,
   intra_op_num_threads=1 (and inter_op_num_threads=1).

Exit status 1 if any difference exceeds --tol.
"""
import argparse
import json
import os
import sys
import tarfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

GRAPHS = ("enc", "erb_dec", "df_dec")


def read_sequence_models(tarball):
    models = {}
    with tarfile.open(tarball, "r:*") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if member.isfile() and base in {f"{g}.onnx" for g in GRAPHS}:
                models[base[:-5]] = tar.extractfile(member).read()
    return models


def session(model, threads=None):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def plausible_features(rng, frames, nb_erb, nb_df):
    """Smooth-in-time random features in the ranges DeepFilterNet's
    normalisation produces: ERB dB-normalised ~[-1, 0], unit-normalised spec
    ~[-0.5, 0.5]."""
    def smooth(x, a):
        y = np.empty_like(x)
        acc = x[0]
        for t in range(len(x)):
            acc = a * acc + (1 - a) * x[t]
            y[t] = acc
        return y

    erb = smooth(rng.uniform(-1.0, 0.0, (frames, nb_erb)), 0.6)
    erb = erb + 0.15 * rng.standard_normal((frames, nb_erb))
    erb = np.clip(erb, -1.0, 0.0).astype(np.float32)
    spec = 0.2 * rng.standard_normal((frames, 2, nb_df))
    spec = np.clip(spec, -0.5, 0.5).astype(np.float32)
    feat_erb = erb[None, None]                     # [1, 1, T, nb_erb]
    feat_spec = spec.transpose(1, 0, 2)[None]      # [1, 2, T, nb_df]
    return feat_erb, feat_spec


def run_sequence(sessions, feat_erb, feat_spec):
    """enc -> erb_dec, df_dec over the whole sequence; returns {graph: {out: array}}."""
    out = {}
    enc = sessions["enc"]
    vals = enc.run(None, {"feat_erb": feat_erb, "feat_spec": feat_spec})
    out["enc"] = dict(zip([o.name for o in enc.get_outputs()], vals))
    for name in ("erb_dec", "df_dec"):
        sess = sessions[name]
        feeds = {i.name: out["enc"][i.name] for i in sess.get_inputs()}
        out[name] = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    return out


class Streamer:
    """Runs the three streaming graphs one frame at a time, carrying the states."""

    def __init__(self, out_dir, spec, threads=None):
        self.spec = spec
        self.sessions, self.states, self.out_names = {}, {}, {}
        for name in GRAPHS:
            g = spec["graphs"][name]
            path = os.path.join(out_dir, g["file"])
            self.sessions[name] = session(path, threads)
            self.out_names[name] = [o["name"] for o in g["outputs"]]
            defaults = None
            for st in g["states"]:
                if st["init"] == "zeros":
                    value = np.zeros(st["shape"], np.dtype(st["dtype"]))
                else:  # graph_default: the initializer with the input's name
                    if defaults is None:
                        defaults = {t.name: numpy_helper.to_array(t)
                                    for t in onnx.load(path).graph.initializer}
                    value = defaults[st["input"]]
                self.states[(name, st["input"])] = value
        self.data_inputs = {name: [i["name"] for i in spec["graphs"][name]["inputs"]
                                   if i["kind"] == "data"] for name in GRAPHS}

    def step(self, feat_erb_t, feat_spec_t):
        """One hop. Inputs are single frames; returns {graph: {out: array}}."""
        results = {}
        available = {"feat_erb": feat_erb_t, "feat_spec": feat_spec_t}
        for name in GRAPHS:
            g = self.spec["graphs"][name]
            feeds = {n: available[n] for n in self.data_inputs[name]}
            for st in g["states"]:
                feeds[st["input"]] = self.states[(name, st["input"])]
            vals = dict(zip(self.out_names[name], self.sessions[name].run(self.out_names[name], feeds)))
            for st in g["states"]:
                self.states[(name, st["input"])] = vals[st["output"]]
            results[name] = vals
            if name == "enc":
                available.update(vals)  # emb, e0..e3, c0 feed the decoders
        return results


def take(x, axis, t):
    return np.take(x, [t], axis=axis)


def compare(spec, seq, stream_steps, label):
    """Max abs difference per data output, stream step t vs sequence frame t - delay."""
    worst = 0.0
    for name in GRAPHS:
        g = spec["graphs"][name]
        delay = g["output_delay_frames"]
        for o in g["outputs"]:
            if o["kind"] != "data":
                continue
            ax, ref = o["time_axis"], seq[name][o["name"]]
            frames = ref.shape[ax]
            diffs = [np.max(np.abs(stream_steps[t][name][o["name"]] - take(ref, ax, t - delay)))
                     for t in range(delay, frames + delay) if t < len(stream_steps)]
            d = float(max(diffs))
            worst = max(worst, d)
            print(f"  [{label}] {name:8s} {o['name']:5s} max|stream-seq| = {d:.3e}  "
                  f"(max|seq| = {float(np.max(np.abs(ref))):.3g}, delay {delay}, {len(diffs)} frames)")
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tarball")
    ap.add_argument("out_dir")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--timing-passes", type=int, default=10)
    args = ap.parse_args()

    with open(os.path.join(args.out_dir, "dfn3_stream.json")) as f:
        spec = json.load(f)
    cfg = spec["config"]
    la = spec["alignment"]["conv_lookahead_frames"]
    T = args.frames
    print(f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, T = {T} frames")

    seq_sessions = {k: session(v) for k, v in read_sequence_models(args.tarball).items()}
    rng = np.random.default_rng(args.seed)
    feat_erb, feat_spec = plausible_features(rng, T, cfg["nb_erb"], cfg["nb_df"])

    # 1. Graph level: same frames, in order.
    seq = run_sequence(seq_sessions, feat_erb, feat_spec)
    streamer = Streamer(args.out_dir, spec)
    steps = [streamer.step(take(feat_erb, 2, t), take(feat_spec, 2, t)) for t in range(T)]
    worst1 = compare(spec, seq, steps, "graph")

    # 2. Model level: DfNet's pad_feat on the sequence side; on the streaming side
    #    skip the first `la` feature frames and flush with `la` zero frames.
    def pad_feat(x):
        zeros = np.zeros(x.shape[:2] + (la,) + x.shape[3:], x.dtype)
        return np.concatenate([x[:, :, la:], zeros], axis=2)

    seq2 = run_sequence(seq_sessions, pad_feat(feat_erb), pad_feat(feat_spec))
    streamer = Streamer(args.out_dir, spec)
    steps2 = []
    for n in range(la, T + la):  # feature frame n -> outputs for spectrum frame n - la
        if n < T:
            e, s = take(feat_erb, 2, n), take(feat_spec, 2, n)
        else:
            e, s = np.zeros_like(take(feat_erb, 2, 0)), np.zeros_like(take(feat_spec, 2, 0))
        steps2.append(streamer.step(e, s))
    worst2 = compare(spec, seq2, steps2, "model")

    # 3. Timing, single thread: the three streaming sessions per frame.
    streamer = Streamer(args.out_dir, spec, threads=1)
    frames = [(take(feat_erb, 2, t), take(feat_spec, 2, t)) for t in range(T)]
    for e, s in frames[:50]:  # warm-up
        streamer.step(e, s)
    per_pass = []
    for _ in range(args.timing_passes):
        t0 = time.perf_counter()
        for e, s in frames:
            streamer.step(e, s)
        per_pass.append((time.perf_counter() - t0) / T * 1e6)
    per_graph = {}
    for name in GRAPHS:  # per-session breakdown with captured feeds
        g = spec["graphs"][name]
        feeds = {i["name"]: np.zeros(i["shape"], np.dtype(i["dtype"])) for i in g["inputs"]}
        sess = streamer.sessions[name]
        for _ in range(50):
            sess.run(None, feeds)
        t0 = time.perf_counter()
        for _ in range(T):
            sess.run(None, feeds)
        per_graph[name] = (time.perf_counter() - t0) / T * 1e6
    seq1 = {k: session(v, threads=1) for k, v in read_sequence_models(args.tarball).items()}
    run_sequence(seq1, feat_erb, feat_spec)
    t0 = time.perf_counter()
    for _ in range(3):
        run_sequence(seq1, feat_erb, feat_spec)
    seq_us = (time.perf_counter() - t0) / 3 / T * 1e6

    print(f"max abs diff: graph-level {worst1:.3e}, model-level {worst2:.3e} (tol {args.tol:g})")
    print(f"streaming, 1 thread: mean {np.mean(per_pass):.1f} us/frame for enc+erb_dec+df_dec "
          f"(min pass {np.min(per_pass):.1f}, max pass {np.max(per_pass):.1f}; hop = "
          f"{cfg['hop_size'] / cfg['sr'] * 1e6:.0f} us)")
    print("  per session: " + ", ".join(f"{k} {v:.1f} us" for k, v in per_graph.items()))
    print(f"  (sequence graphs, 1 thread, whole {T}-frame sequence: {seq_us:.1f} us/frame)")
    ok = worst1 <= args.tol and worst2 <= args.tol
    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
