"""Speech-like test material with a *known* F0, for the pitch tracker.

eSpeak NG utterances (through make_speech_set.speak) give a realistic
spectral envelope, loudness and voiced/unvoiced/silent timing, but their
exact F0 is unknown. So each utterance is analysed at 16 kHz, 10 ms hop:

- envelope: 18th-order LPC per frame (25 ms Hann window, pre-emphasis 0.9,
  Gaussian lag window), with the frame's residual power as gain;
- voicing: a frame is voiced when it is loud (within 35 dB of the loudest
  frame) and periodic (normalised autocorrelation peak over 60..500 Hz lags
  above 0.5); voiced runs shorter than 50 ms are dropped, loud gaps
  shorter than 30 ms filled; frames 50 dB below the loudest are silent.

and resynthesised with a source whose F0 we choose: a speech-like contour
(per-speaker base F0, declination over each phrase, 3-5 random accents per
phrase, slow 2 % wobble), drawn as a band-limited glottal-like harmonic
series (harmonic k at 1/k, the derivative of a -12 dB/octave flow; 0.5 %
jitter and 5 % shimmer per period) with light aspiration noise where the
original is voiced, white noise where it is unvoiced, nothing where it is
silent; 5 ms cross-fades between them. The source goes through each
frame's all-pole filter (overlap-added, 20 ms Hann), then de-emphasis.

Ground truth: the contour at each frame time k * 10 ms where the frame is
voiced, else 0. The voices' F0 ranges: 68..388 Hz (speech), then one
high voice at about 430..850 Hz.

usage: python make_pitch_set.py OUT_DIR [--rates 16000,44100,48000] [--snr 10]
Writes OUT_DIR/utt<i>_<cond>_<rate>.wav (cond: clean, white<snr>, pink<snr>;
noise mixed at 16 kHz over the whole file, then resampled), OUT_DIR/truth<i>.json
({"hop_s", "voice", "f0_hz": [...]}) and OUT_DIR/index.json. Deterministic.
"""
import argparse
import ctypes
import json
import os
import sys
from math import gcd

import numpy as np
from scipy.signal import lfilter, resample_poly

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_speech_set as mss  # noqa: E402

FS = 16000
HOP = 160
WIN = 400
ORDER = 18
PRE = 0.9

# (voice, base F0 Hz, sentence indices)
SPEAKERS = [
    ("en-us+m3", 105.0, (0, 1)),
    ("en+f3", 215.0, (2, 3)),
    ("en-gb-x-rp+m1", 125.0, (4, 5)),
    ("en-us+f2", 270.0, (6, 7)),
    ("en+m5", 85.0, (1, 4)),
    # a high, singing-range voice (about 430..850 Hz)
    ("en+f3", 520.0, (3, 5)),
]


def utterance(sents, voice):
    parts = [np.zeros(int(0.3 * FS))]
    lib = mss._espeak()
    for s in sents:
        # eSpeak's breathy variants draw random noise: seed it, so the set
        # is the same every run.
        lib.espeak_ng_SetRandSeed(ctypes.c_long(1000 + s))
        parts += [mss.speak(mss.SENTENCES[s], voice, FS), np.zeros(int(0.3 * FS))]
    x = np.concatenate(parts)
    return 0.5 * x / np.max(np.abs(x))


def frames_of(x):
    """Frame k centred on sample k*HOP, zero-padded at the ends."""
    n = len(x) // HOP + 1
    pad = np.concatenate([np.zeros(WIN), x, np.zeros(WIN)])
    idx = np.arange(n)[:, None] * HOP + WIN - WIN // 2 + np.arange(WIN)[None, :]
    return pad[idx]


def levinson(r, order):
    a = np.zeros(order + 1)
    a[0] = 1.0
    err = r[0]
    for i in range(1, order + 1):
        acc = r[i] + np.dot(a[1:i], r[i - 1 : 0 : -1])
        k = -acc / err
        a[1 : i + 1] = a[1 : i + 1] + k * a[i - 1 :: -1][: i]
        err *= 1.0 - k * k
    return a, err


def analyse(x):
    pre = lfilter([1.0, -PRE], [1.0], x)
    fr = frames_of(pre)
    w = np.hanning(WIN)
    lagwin = np.exp(-0.5 * (2 * np.pi * 60.0 * np.arange(ORDER + 1) / FS) ** 2)
    lpc, gain = [], []
    for f in fr:
        fw = f * w
        r = np.array([np.dot(fw[: WIN - i], fw[i:]) for i in range(ORDER + 1)])
        if r[0] < 1e-10:
            lpc.append(np.r_[1.0, np.zeros(ORDER)])
            gain.append(0.0)
            continue
        r = r * lagwin
        r[0] *= 1.003  # -25 dB noise floor: no needle-sharp resonances
        a, err = levinson(r, ORDER)
        lpc.append(a)
        gain.append(np.sqrt(max(err, 0.0) / np.sum(w * w)))
    # voicing and loudness from the original (not pre-emphasised), 40 ms window
    n = len(fr)
    padx = np.concatenate([np.zeros(640), x, np.zeros(640)])
    energy = np.zeros(n)
    period = np.zeros(n)
    lo, hi = FS // 500, FS // 60
    for k in range(n):
        seg = padx[k * HOP + 640 - 320 : k * HOP + 640 + 320]
        seg = seg - seg.mean()
        energy[k] = np.mean(seg**2)
        if energy[k] <= 0:
            continue
        a = seg[:-hi]
        best = 0.0
        for lag in range(lo, hi + 1):
            b = seg[lag : lag + len(a)]
            den = np.sqrt(np.dot(a, a) * np.dot(b, b)) + 1e-20
            best = max(best, np.dot(a, b) / den)
        period[k] = best
    emax = energy.max()
    loud = energy > emax * 10 ** (-35 / 10)
    silent = energy < emax * 10 ** (-50 / 10)
    voiced = loud & (period > 0.5)
    voiced = clean_runs(voiced, min_run=5, min_gap=3) & loud
    return np.array(lpc), np.array(gain), voiced, silent


def clean_runs(v, min_run, min_gap):
    v = v.copy()
    # fill short gaps between voiced runs
    k = 0
    while k < len(v):
        if not v[k]:
            j = k
            while j < len(v) and not v[j]:
                j += 1
            if k > 0 and j < len(v) and j - k < min_gap:
                v[k:j] = True
            k = j
        else:
            k += 1
    # drop short voiced runs
    k = 0
    while k < len(v):
        if v[k]:
            j = k
            while j < len(v) and v[j]:
                j += 1
            if j - k < min_run:
                v[k:j] = False
            k = j
        else:
            k += 1
    return v


def contour(n_samples, base, voiced, rng):
    """Speech-like F0 per sample: declination per phrase (a phrase = stretch
    between silences of >= 200 ms), accents, slow wobble."""
    t = np.arange(n_samples) / FS
    f = np.full(n_samples, base)
    # phrases from the voiced frames: group voiced frames separated by < 20 frames
    vk = np.flatnonzero(voiced)
    phrases = []
    if len(vk):
        start = prev = vk[0]
        for k in vk[1:]:
            if k - prev > 20:
                phrases.append((start, prev))
                start = k
            prev = k
        phrases.append((start, prev))
    log_f = np.zeros(n_samples)
    for a, b in phrases:
        ta, tb = a * 0.01, b * 0.01
        m = (t >= ta - 0.2) & (t <= tb + 0.2)
        u = np.clip((t[m] - ta) / max(tb - ta, 1e-3), 0, 1)
        log_f[m] += 0.25 - 0.5 * u  # +0.25 to -0.25 octave declination
        for _ in range(rng.integers(3, 6)):
            c = rng.uniform(ta, tb)
            width = rng.uniform(0.06, 0.15)
            height = rng.uniform(0.1, 0.45) * rng.choice([1.0, 1.0, -0.5])
            log_f += height * np.exp(-0.5 * ((t - c) / width) ** 2)
    wob = sum(0.02 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 6.28)) for _ in range(2))
    return f * 2.0**log_f * (1.0 + wob)


def jittered_phase(f0, rng, jitter=0.005, shimmer=0.05):
    """Phase (radians) of a source whose every period is 0.5 % (std) off the
    contour, and a per-period amplitude off by 5 % (std): both average out,
    so the contour stays the truth."""
    n_periods = int(np.sum(f0) / FS) + 2
    jit = 1.0 + jitter * rng.standard_normal(n_periods)
    shim = 1.0 + shimmer * rng.standard_normal(n_periods)
    phase = np.zeros(len(f0))
    amp = np.ones(len(f0))
    p = 0.0
    for i in range(len(f0)):
        k = int(p)
        phase[i] = p
        amp[i] = shim[k]
        p += f0[i] * jit[k] / FS
    return 2 * np.pi * phase, amp


def glottal(f0, rng):
    """Band-limited harmonic series with harmonic k at 1/k, unit power, with
    jitter and shimmer."""
    phase, shim = jittered_phase(f0, rng)
    nyq = 0.45 * FS
    out = np.zeros(len(f0))
    power = np.zeros(len(f0))
    kmax = int(nyq / f0.min()) + 1
    for k in range(1, kmax + 1):
        fade = np.clip((nyq - k * f0) / (0.05 * FS), 0.0, 1.0)
        if not fade.any():
            break
        amp = fade / k
        out += amp * np.sin(k * phase)
        power += 0.5 * amp**2
    return shim * out / np.sqrt(power + 1e-12)


def synthesise(x, base, rng):
    lpc, gain, voiced, silent = analyse(x)
    n = len(x)
    nfr = len(voiced)
    f0 = contour(n, base, voiced, rng)
    # per-sample voiced / noise weights with 5 ms cross-fades
    fk = np.clip(np.round(np.arange(n) / HOP).astype(int), 0, nfr - 1)
    wv = voiced[fk].astype(float)
    wn = (~voiced[fk] & ~silent[fk]).astype(float)
    ramp = np.ones(80) / 80
    wv = np.convolve(wv, ramp, mode="same")
    wn = np.convolve(wn, ramp, mode="same")
    src = wv * (glottal(f0, rng) + 0.05 * rng.standard_normal(n)) + wn * rng.standard_normal(n)
    # Overlap-add of each frame's filter applied to the same source (20 ms
    # periodic Hann, 50 % overlap; each filter starts 50 ms early from rest),
    # which interpolates smoothly between frames without the transients of
    # switching a recursive filter's coefficients.
    warm = 800
    w = np.hanning(2 * HOP + 1)[:-1]
    padded = np.concatenate([np.zeros(warm + HOP), src, np.zeros(2 * HOP)])
    y = np.zeros(n + 2 * HOP)
    for k in range(nfr):
        if gain[k] == 0.0:
            continue
        a = k * HOP  # frame start in y (y is offset by HOP)
        seg = padded[a : a + warm + 2 * HOP]
        y[a : a + 2 * HOP] += w * lfilter([gain[k]], lpc[k], seg)[warm:]
    y = y[HOP : HOP + n]
    y = lfilter([1.0], [1.0, -PRE], y)
    truth = np.where(voiced, f0[np.minimum(np.arange(nfr) * HOP, n - 1)], 0.0)
    return 0.5 * y / np.max(np.abs(y)), truth


def to_rate(x, rate):
    if rate == FS:
        return x
    g = gcd(rate, FS)
    return resample_poly(x, rate // g, FS // g)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rates", default="16000,44100,48000")
    ap.add_argument("--snr", type=float, default=10.0)
    ap.add_argument("--speakers", type=int, default=len(SPEAKERS))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rates = [int(r) for r in a.rates.split(",")]
    index = []
    for i, (voice, base, sents) in enumerate(SPEAKERS[: a.speakers]):
        rng = np.random.default_rng(4242 + i)
        y, truth = synthesise(utterance(sents, voice), base, rng)
        tname = f"truth{i}.json"
        with open(os.path.join(a.out, tname), "w") as f:
            json.dump({"hop_s": 0.01, "voice": voice, "base_hz": base, "f0_hz": [round(float(v), 3) for v in truth]}, f)
        snr = int(round(a.snr))
        conds = {"clean": y}
        for kind in ["white", "pink"]:
            nz = mss.noise(kind, len(y), FS, rng, None)
            mix = mss.mix_at_snr(y, nz, a.snr)
            conds[f"{kind}{snr}"] = mix * 0.5 / np.max(np.abs(mix))
        for cond, sig in conds.items():
            for rate in rates:
                name = f"utt{i}_{cond}_{rate}.wav"
                mss.write_wav(os.path.join(a.out, name), to_rate(sig, rate), rate)
                index.append({"wav": name, "truth": tname, "rate": rate, "condition": cond, "voice": voice})
        vfrac = float(np.mean(truth > 0))
        fv = truth[truth > 0]
        print(f"utt{i} {voice}: {len(truth)} frames, {100 * vfrac:.0f}% voiced, F0 {fv.min():.0f}..{fv.max():.0f} Hz", file=sys.stderr)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()
