"""Checks the streaming HiFi-GAN graphs (prepare_hifigan_stream.py) against
the whole-file graph (prepare_hifigan.py) and measures what each lookahead
setting costs.

usage: python verify_hifigan_stream.py WHOLE.onnx WAV [STREAM.onnx ...]
                                       [--chunk 4] [--threads 1] [--tol 1e-3]

WAV: speech at 22050 Hz (mono, 16-bit). Its HiFi-GAN mel (make_phone_set.py's
front end: n_fft 1024, hop 256, Hann window, reflect padding, magnitude,
Slaney mel 80 bands 0-8000 Hz, ln(max(., 1e-5))) is vocoded once by WHOLE.onnx in one
call and once per STREAM.onnx, `--chunk` frames per call, states carried.
Each streaming output is shifted back by its `delay_samples` and compared
with the whole-file output over the samples both have:

  - max |difference| (the exact graph, all fractions 1, must stay within
    --tol: exit status 1 if not),
  - SNR in dB of the whole-file output against the difference,
  - log-mel distance: mean |difference| of the two outputs' log-mel
    spectra in dB, over frames within 5 nats of the loudest (phase apart:
    what the ear and the Voice bench's judges compare; the same distance
    of the whole-file output to the recording is printed first, for scale),
  - real-time factor of the streaming calls and of the whole-file call,
    with --threads intra-op threads (the same process, one after another).

Needs numpy, scipy, onnx and onnxruntime.
"""
import argparse
import os
import sys
import time
import wave

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_phone_set  # noqa: E402  (its HiFi-GAN mel front end)

SR, HOP = 22050, 256


def log_mel(x):
    """[80, T] HiFi-GAN log-mel frames (the content model's feature)."""
    return make_phone_set.log_mel(x).T.astype(np.float32)


def read_wav(path):
    with wave.open(path) as w:
        if w.getframerate() != SR or w.getsampwidth() != 2:
            sys.exit(f"{path}: need 16-bit audio at {SR} Hz")
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        return x.reshape(-1, w.getnchannels()).mean(axis=1)


def session(path, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("whole")
    ap.add_argument("wav")
    ap.add_argument("streams", nargs="*")
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tol", type=float, default=1e-3)
    a = ap.parse_args()
    source = read_wav(a.wav)
    mel = log_mel(source)[None]
    frames = mel.shape[2] - mel.shape[2] % a.chunk
    mel = mel[:, :, :frames]
    seconds = frames * HOP / SR
    whole = session(a.whole, a.threads)
    t0 = time.perf_counter()
    ref = whole.run(None, {"mel": mel})[0].reshape(-1)
    whole_rtf = (time.perf_counter() - t0) / seconds
    print(f"{a.wav}: {frames} frames ({seconds:.1f} s); whole-file graph RTF {whole_rtf:.3f} "
          f"({a.threads} thread{'s' if a.threads > 1 else ''})")
    # Scale for the distances below: the whole-file vocoder against the
    # recording it was given (copy synthesis).
    ms, mw = log_mel(source[:len(ref)]), log_mel(ref[:len(source)])
    n = min(ms.shape[1], mw.shape[1])
    loud = ms[:, :n].mean(axis=0) > ms[:, :n].mean(axis=0).max() - 5
    copy_db = float(np.mean(np.abs(mw[:, :n] - ms[:, :n])[:, loud])) * 20 / np.log(10)
    print(f"log-mel distance of the whole-file output to the recording (copy synthesis): {copy_db:.2f} dB")
    print("| graph | lookahead fractions | delay (ms) | max abs diff | SNR vs whole-file (dB) | "
          f"log-mel distance (dB) | RTF, {a.chunk} frames per call |")
    print("|---|---|---|---|---|---|---|")
    failed = False
    for path in a.streams:
        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        delay, size = int(props["delay_samples"]), int(props["state_size"])
        s = session(path, a.threads)
        state = np.zeros(size, np.float32)
        out = []
        t0 = time.perf_counter()
        for i in range(0, frames, a.chunk):
            audio, state = s.run(None, {"mel": mel[:, :, i:i + a.chunk], "state_in": state})
            out.append(audio.reshape(-1))
        rtf = (time.perf_counter() - t0) / seconds
        y = np.concatenate(out)[delay:]
        r = ref[:len(y)]
        diff = y - r
        snr = 10 * np.log10(np.sum(r ** 2) / max(np.sum(diff ** 2), 1e-20))
        err = float(np.max(np.abs(diff)))
        # Log-mel distance: what a listener (and the Voice bench's judges)
        # compare; the waveform SNR also counts phase.
        my, mr = log_mel(y), log_mel(r)
        loud = mr.mean(axis=0) > mr.mean(axis=0).max() - 5
        mel_db = float(np.mean(np.abs(my - mr)[:, loud])) * 20 / np.log(10)
        exact = all(float(v) == 1.0 for v in props["lookahead_fractions"].split(","))
        if exact and err > a.tol:
            failed = True
        print(f"| {path} | {props['lookahead_fractions']} | {1000 * delay / SR:.1f} | {err:.2e} | {snr:.1f} | {mel_db:.2f} | {rtf:.3f} |")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
