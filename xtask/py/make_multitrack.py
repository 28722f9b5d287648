"""A multitrack test set with ground truth for music separation, made with
project code only: a synthesised band (bass, chords, drums) plus a vocal
line (eSpeak NG speech, pitch-shifted per phrase so it moves like a melody).

usage: python make_multitrack.py OUT_DIR [--count 6] [--seconds 20]

Writes OUT_DIR/mix_<i>.wav, vocals_<i>.wav, accompaniment_<i>.wav (44.1 kHz
stereo, 32-bit float; mix = vocals + accompaniment exactly) and index.json.
Deterministic for a given seed, apart from eSpeak voices that add their own
random breath noise.
"""
import argparse
import json
import os

import numpy as np
from scipy.signal import butter, lfilter, resample_poly

import make_speech_set as speech

RATE = 44100


def note_hz(midi):
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def saw(freq, n, rate, rng):
    # Band-limited enough for a test: sum of the first harmonics.
    t = np.arange(n) / rate
    phase = rng.uniform(0, 2 * np.pi)
    out = np.zeros(n)
    for k in range(1, 12):
        if k * freq > rate / 2.5:
            break
        out += np.sin(2 * np.pi * k * freq * t + k * phase) / k
    return out


def envelope(n, rate, attack=0.01, release=0.1):
    env = np.ones(n)
    a, r = min(int(attack * rate), n // 2), min(int(release * rate), n // 2)
    env[:a] = np.linspace(0, 1, a)
    env[n - r:] *= np.linspace(1, 0, r)
    return env


def band(seconds, rng):
    n = int(seconds * RATE)
    bpm = rng.uniform(90, 130)
    beat = int(60.0 / bpm * RATE)
    root = int(rng.integers(40, 48))
    progression = [0, 5, 7, 3] if rng.random() < 0.5 else [0, 8, 3, 10]
    bass = np.zeros(n)
    chords = np.zeros((2, n))
    drums = np.zeros(n)
    bar = 4 * beat
    for b0 in range(0, n, bar):
        degree = progression[(b0 // bar) % len(progression)]
        for step in range(8):
            s = b0 + step * beat // 2
            if s >= n:
                break
            m = min(beat // 2, n - s)
            bass[s:s + m] += 0.5 * saw(note_hz(root + degree), m, RATE, rng) * envelope(m, RATE, 0.005, 0.05)
        m = min(bar, n - b0)
        for j, interval in enumerate([12, 16 if degree in (0, 5, 7) else 15, 19]):
            tone = saw(note_hz(root + degree + interval), m, RATE, rng) * envelope(m, RATE, 0.05, 0.2)
            pan = 0.3 + 0.2 * j
            chords[0, b0:b0 + m] += 0.12 * tone * (1 - pan)
            chords[1, b0:b0 + m] += 0.12 * tone * pan
        for k in range(4):
            s = b0 + k * beat
            if s >= n:
                break
            m = min(int(0.25 * RATE), n - s)
            t = np.arange(m) / RATE
            if k % 2 == 0:  # kick
                drums[s:s + m] += 0.9 * np.sin(2 * np.pi * (50 + 80 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
            else:  # snare
                drums[s:s + m] += 0.4 * rng.standard_normal(m) * np.exp(-t * 25)
            h = b0 + k * beat + beat // 2
            if h < n:
                mh = min(int(0.05 * RATE), n - h)
                hb, ha = butter(2, 7000 / (RATE / 2), "high")
                drums[h:h + mh] += 0.15 * lfilter(hb, ha, rng.standard_normal(mh)) * np.exp(-np.arange(mh) / RATE * 80)
    lb, la = butter(2, 300 / (RATE / 2))
    bass = lfilter(lb, la, bass)
    mono = bass + drums
    return np.stack([mono + chords[0], mono + chords[1]])


def vocal_line(seconds, rng, voices, index):
    n = int(seconds * RATE)
    out = np.zeros(n)
    pos = int(rng.uniform(0.3, 1.0) * RATE)
    k = 0
    while pos < n - RATE:
        text = speech.SENTENCES[(index * 5 + k) % len(speech.SENTENCES)]
        voice = voices[index % len(voices)]
        x = speech.speak(text, voice, 22050)
        # Shift the phrase by a few semitones (resampling), like a melody.
        semis = int(rng.integers(-3, 4))
        up, down = 100, int(round(100 * 2 ** (semis / 12)))
        x = resample_poly(x, 2 * up, down)  # 22050 -> 44100, pitch-shifted
        m = min(len(x), n - pos)
        out[pos:pos + m] += x[:m]
        pos += m + int(rng.uniform(0.4, 1.5) * RATE)
        k += 1
    out /= max(np.max(np.abs(out)), 1e-9)
    return np.stack([0.55 * out, 0.45 * out])


def write(path, x):
    # 32-bit float WAV (format 3), written by hand to avoid extra packages.
    data = np.ascontiguousarray(x.T.astype("<f4")).tobytes()
    with open(path, "wb") as f:
        ch = x.shape[0]
        f.write(b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVE")
        f.write(b"fmt " + (16).to_bytes(4, "little") + (3).to_bytes(2, "little") + ch.to_bytes(2, "little"))
        f.write(RATE.to_bytes(4, "little") + (RATE * 4 * ch).to_bytes(4, "little") + (4 * ch).to_bytes(2, "little") + (32).to_bytes(2, "little"))
        f.write(b"data" + len(data).to_bytes(4, "little") + data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    voices = speech.voice_list()
    index = []
    for i in range(args.count):
        acc = band(args.seconds, rng)
        voc = vocal_line(args.seconds, rng, voices, i)
        acc *= 0.5 / max(np.max(np.abs(acc)), 1e-9)
        # Vocals 3 dB above the band (RMS), as in a typical pop mix.
        gain = np.sqrt(np.mean(acc ** 2) / max(np.mean(voc ** 2), 1e-12)) * 10 ** (3 / 20)
        voc *= gain
        mix = voc + acc
        peak = np.max(np.abs(mix))
        if peak > 0.95:
            voc *= 0.95 / peak
            acc *= 0.95 / peak
            mix = voc + acc
        for name, x in (("mix", mix), ("vocals", voc), ("accompaniment", acc)):
            write(os.path.join(args.out, f"{name}_{i}.wav"), x)
        index.append({"mix": f"mix_{i}.wav", "vocals": f"vocals_{i}.wav", "accompaniment": f"accompaniment_{i}.wav"})
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump({"rate": RATE, "seconds": args.seconds, "tracks": index}, f, indent=1)
    print(f"make_multitrack: {args.count} tracks of {args.seconds} s in {args.out}")


if __name__ == "__main__":
    main()
