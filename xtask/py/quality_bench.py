"""Speech-enhancement quality bench for Manifold Clean.

Generates a noisy-speech set with project code (make_speech_set.py: 3 eSpeak
voices, 6 noise types incl. babble, SNR -5..15 dB), renders every file with
`manifold clean --model M` for each model, and prints PESQ (wide-band, at
16 kHz), STOI and SI-SDR per SNR as a markdown table. Optional: DeepFilterNet's
own runtime (libdeepfilter.so) as a reference row when --dfn-reference is given.

usage: python quality_bench.py MANIFOLD_EXE OUT_DIR --models gtcrn,rnnoise [--dfn-reference LIB TARBALL]
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys

import numpy as np
from pesq import pesq
from pystoi import stoi
from scipy.io import wavfile
from scipy.signal import resample_poly

HERE = os.path.dirname(os.path.abspath(__file__))


def read(path):
    rate, x = wavfile.read(path)
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    x = x.astype(np.float64)
    return rate, (x[:, 0] if x.ndim > 1 else x)


def si_sdr(est, ref):
    est = est - est.mean()
    ref = ref - ref.mean()
    a = np.dot(est, ref) / np.dot(ref, ref)
    t = a * ref
    return 10 * np.log10(np.sum(t**2) / np.sum((est - t) ** 2))


def metrics(est, ref, rate):
    e16 = resample_poly(est, 1, rate // 16000)
    r16 = resample_poly(ref, 1, rate // 16000)
    return {
        "pesq": pesq(16000, r16, e16, "wb"),
        "stoi": stoi(ref, est, rate, extended=False),
        "si_sdr": si_sdr(est, ref),
    }


def dfn_reference(lib_path, tarball, noisy_path, out_path):
    lib = ctypes.CDLL(lib_path)
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    st = lib.df_create(tarball.encode(), 100.0, None)
    hop = lib.df_get_frame_length(st)
    rate, x = read(noisy_path)
    delay = 960 - hop + 2 * hop  # DeepFilterNet's documented algorithmic delay
    xp = np.concatenate([x, np.zeros(delay + hop)]).astype(np.float32)
    y = np.zeros_like(xp)
    for k in range(len(xp) // hop):
        inp = np.ascontiguousarray(xp[k * hop:(k + 1) * hop])
        out = np.zeros(hop, np.float32)
        lib.df_process_frame(st, inp.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        y[k * hop:(k + 1) * hop] = out
    y = y[delay:delay + len(x)]
    wavfile.write(out_path, rate, y.astype(np.float32))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("out")
    ap.add_argument("--models", default="gtcrn,rnnoise")
    ap.add_argument("--dfn-reference", nargs=2, metavar=("LIB", "TARBALL"))
    ap.add_argument("--tts", choices=["espeak", "festival"], default="espeak")
    a = ap.parse_args()
    data = os.path.join(a.out, f"set-{a.tts}")
    subprocess.run([sys.executable, os.path.join(HERE, "make_speech_set.py"), data, f"--tts={a.tts}",
                    "--noises", "white,pink,brown,hum,babble,cafe", "--snrs=-5,0,5,10,15"], check=True)
    index = json.load(open(os.path.join(data, "index.json")))
    systems = ["unprocessed"] + a.models.split(",") + (["dfn3-reference"] if a.dfn_reference else [])
    rows = {}  # (system, snr) -> list of metric dicts
    for item in index:
        rate, clean = read(os.path.join(data, item["clean"]))
        noisy_path = os.path.join(data, item["noisy"])
        _, noisy = read(noisy_path)
        for system in systems:
            if system == "unprocessed":
                est = noisy
            else:
                out = os.path.join(a.out, f"out-{a.tts}", system, item["noisy"])
                os.makedirs(os.path.dirname(out), exist_ok=True)
                if system == "dfn3-reference":
                    dfn_reference(a.dfn_reference[0], a.dfn_reference[1], noisy_path, out)
                else:
                    subprocess.run([a.exe, "clean", "-q", "--model", system, noisy_path, "-o", out], check=True)
                _, est = read(out)
            rows.setdefault((system, item["snr_db"]), []).append(metrics(est, clean, rate))
    snrs = sorted({k[1] for k in rows})
    print(f"\nSpeech: {a.tts}. Quality over {len(index)} noisy files ({len({i['voice'] for i in index})} voices, "
          f"{len({i['noise'] for i in index})} noise types), mean per input SNR\n")
    for metric, fmt in [("pesq", "{:.2f}"), ("stoi", "{:.3f}"), ("si_sdr", "{:+.1f}")]:
        print(f"{metric.upper().replace('_', '-')}\n")
        print("| system | " + " | ".join(f"{s:+.0f} dB" for s in snrs) + " |")
        print("|---|" + "---|" * len(snrs))
        for system in systems:
            vals = [fmt.format(np.mean([m[metric] for m in rows[(system, s)]])) for s in snrs]
            print(f"| {system} | " + " | ".join(vals) + " |")
        print()


if __name__ == "__main__":
    main()
