"""Generates Manifold's noisy-speech material with project code only.

Speech: English sentences spoken by several eSpeak NG voices (libespeak-ng
from the `espeakng-loader` wheel, driven through its C API with ctypes).
Noise: generated here (white, pink, brown, hum, babble made of other
eSpeak voices, and a cafe-like mix). Everything is deterministic (fixed seeds).

usage: python make_speech_set.py OUT_DIR [--rate 48000] [--demo]
Writes OUT_DIR/clean_<i>.wav, OUT_DIR/noisy_<i>_<noise>_<snr>.wav and
OUT_DIR/index.json; with --demo a single OUT_DIR/noisy_speech.wav instead,
plus voice_source.wav and voice_target.wav (two voices) for the Voice demo.
"""
import argparse
import ctypes
import json
import os
import wave

import numpy as np
from scipy.signal import resample_poly
from math import gcd

import espeakng_loader

SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things from the store.",
    "A large size in stockings is hard to sell, but we will try again tomorrow.",
    "The birch canoe slid on the smooth planks while the wind kept blowing.",
    "Glue the sheet to the dark blue background and let it dry overnight.",
    "It is easy to tell the depth of a well when you drop a stone into it.",
    "Four hours of steady work faced us before the end of the day.",
    "Rice is often served in round bowls with a little salt and pepper.",
]
VOICES = ["en-us+m3", "en+f3", "en-gb-x-rp+m1", "en-us+f2", "en+m5", "en-gb-scotland+f4"]
# Festival voices (Debian packages festvox-us-slt-hts, festvox-kallpc16k,
# festvox-kdlpc16k): built from recordings of real speakers, closer to real
# speech than eSpeak's formant synthesis. Used with --tts festival.
FESTIVAL_VOICES = ["cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"]
TTS = "espeak"

_lib = None
_chunks = []


def _espeak():
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(espeakng_loader.get_library_path())
        _lib.espeak_Initialize.restype = ctypes.c_int
        rate = _lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # AUDIO_OUTPUT_SYNCHRONOUS
        if rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        _lib.rate = rate
        cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def callback(wav, n, events):
            if n > 0:
                _chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        _lib._cb = cb_type(callback)
        _lib.espeak_SetSynthCallback(_lib._cb)
    return _lib


def speak_festival(text, voice, rate):
    import subprocess
    import tempfile

    from scipy.io import wavfile

    with tempfile.TemporaryDirectory() as d:
        txt, wav = os.path.join(d, "t.txt"), os.path.join(d, "o.wav")
        with open(txt, "w") as f:
            f.write(text)
        subprocess.run(["text2wave", "-eval", f"(voice_{voice})", txt, "-o", wav], check=True, capture_output=True)
        src, x = wavfile.read(wav)
    x = x.astype(np.float64) / 32768.0
    g = gcd(rate, src)
    return resample_poly(x, rate // g, src // g)


def speak(text, voice, rate):
    if TTS == "festival":
        return speak_festival(text, voice, rate)
    lib = _espeak()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"unknown eSpeak voice {voice}")
    _chunks.clear()
    data = text.encode() + b"\0"
    lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    x = np.concatenate(_chunks).astype(np.float64) / 32768.0
    g = gcd(rate, lib.rate)
    return resample_poly(x, rate // g, lib.rate // g)


def pink(n, rng):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    return np.fft.irfft(spec, n)


def brown(n, rng):
    x = np.cumsum(rng.standard_normal(n))
    x -= np.convolve(x, np.ones(2001) / 2001, mode="same")
    return x


def hum(n, rate, rng):
    t = np.arange(n) / rate
    x = sum(np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.28)) / k for k in range(1, 12))
    return x + 0.2 * rng.standard_normal(n)


def babble(n, rate, rng, exclude):
    out = np.zeros(n)
    voices = [v for v in voice_list() if v != exclude]
    for k in range(4):
        s = np.concatenate([speak(SENTENCES[(k * 3 + j) % len(SENTENCES)], voices[(k + j) % len(voices)], rate) for j in range(4)])
        s = np.tile(s, int(np.ceil(n / len(s))) + 1)
        off = rng.integers(0, len(s) - n)
        out += s[off : off + n] / (np.std(s) + 1e-9)
    return out


def cafe(n, rate, rng, exclude):
    clicks = np.zeros(n)
    for pos in rng.integers(0, n - 400, size=max(1, n // rate * 3)):
        clicks[pos : pos + 400] += np.exp(-np.arange(400) / 60.0) * rng.standard_normal(400)
    return 0.5 * babble(n, rate, rng, exclude) / 2 + pink(n, rng) / np.std(pink(n, rng)) * 0.5 + clicks


def noise(kind, n, rate, rng, exclude):
    x = {
        "white": lambda: rng.standard_normal(n),
        "pink": lambda: pink(n, rng),
        "brown": lambda: brown(n, rng),
        "hum": lambda: hum(n, rate, rng),
        "babble": lambda: babble(n, rate, rng, exclude),
        "cafe": lambda: cafe(n, rate, rng, exclude),
    }[kind]()
    return x / (np.std(x) + 1e-12)


def mix_at_snr(clean, noise_sig, snr_db):
    p_s = np.mean(clean**2)
    p_n = np.mean(noise_sig**2)
    return clean + noise_sig * np.sqrt(p_s / (p_n * 10 ** (snr_db / 10)))


def write_wav(path, x, rate):
    x = np.clip(x, -1.0, 1.0)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())


def voice_list():
    return FESTIVAL_VOICES if TTS == "festival" else VOICES


def utterance(i, rate):
    voices = voice_list()
    voice = voices[i % len(voices)]
    lead = np.zeros(int(0.3 * rate))
    parts = [lead]
    for j in range(2):
        parts += [speak(SENTENCES[(2 * i + j) % len(SENTENCES)], voice, rate), np.zeros(int(0.25 * rate))]
    x = np.concatenate(parts)
    return 0.25 * x / np.max(np.abs(x)), voice


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--speakers", type=int, default=3)
    ap.add_argument("--noises", default="white,pink,babble,hum")
    ap.add_argument("--snrs", default="0,5,10")
    ap.add_argument("--demo", action="store_true")
    ap.add_argument("--tts", choices=["espeak", "festival"], default="espeak")
    a = ap.parse_args()
    global TTS
    TTS = a.tts
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(20261126)
    if a.demo:
        parts, speakers = [], []
        for i in range(3):
            x, v = utterance(i, a.rate)
            parts.append(x)
            speakers.append(v)
        clean = np.concatenate(parts)
        n = len(clean)
        nz = 0.6 * noise("pink", n, a.rate, rng, None) + 0.8 * noise("babble", n, a.rate, rng, speakers[0])
        write_wav(os.path.join(a.out, "clean_speech.wav"), clean, a.rate)
        write_wav(os.path.join(a.out, "noisy_speech.wav"), mix_at_snr(clean, nz, 5.0), a.rate)
        # Voice: a source sentence pair by one voice, and a reference of
        # another voice (six other sentences, about 24 s) to convert it to.
        gap = np.zeros(int(0.3 * a.rate))
        src = np.concatenate([gap] + [p for t in SENTENCES[6:8] for p in (speak(t, VOICES[0], a.rate), gap)])
        ref = np.concatenate([gap] + [p for t in SENTENCES[0:6] for p in (speak(t, VOICES[3], a.rate), gap)])
        write_wav(os.path.join(a.out, "voice_source.wav"), 0.25 * src / np.max(np.abs(src)), a.rate)
        write_wav(os.path.join(a.out, "voice_target.wav"), 0.25 * ref / np.max(np.abs(ref)), a.rate)
        return
    index = []
    for i in range(a.speakers):
        clean, voice = utterance(i, a.rate)
        cpath = f"clean_{i}.wav"
        write_wav(os.path.join(a.out, cpath), clean, a.rate)
        for kind in a.noises.split(","):
            nz = noise(kind, len(clean), a.rate, rng, voice)
            for snr in [float(s) for s in a.snrs.split(",")]:
                npath = f"noisy_{i}_{kind}_{int(snr)}.wav"
                write_wav(os.path.join(a.out, npath), mix_at_snr(clean, nz, snr), a.rate)
                index.append({"clean": cpath, "noisy": npath, "voice": voice, "noise": kind, "snr_db": snr, "rate": a.rate})
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()
