"""Writes the utterance pool that Manifold's target-speaker isolation model is
trained and evaluated on (issue 16): 16 kHz mono speech, one folder per
speaker, plus an index. Mixtures are made from it later (train_isolation.py
mixes training examples on the fly; its --make-eval writes the fixed
evaluation mixtures).

Speakers
- real, training: the Debian core-sounds speakers, G.722 16 kHz --
  Allison (en_US_f_Allison), June (fr_CA_f_June), Carlo (it_IT_m_Carlo, the
  only male), IvrvoiceRU (ru_RU_f_IvrvoiceRU) -- each also sped up and down
  (x0.88 and x1.12: duration, pitch and formants together) as two further
  pseudo-speakers per speed (x0.85, x0.92, x1.08, x1.16; each gets half the
  prompts), so 20 in all;
- real, evaluation only: the asterisk-prompt-* speakers, never trained on --
  esco (es, GSM 8 kHz), armelle (fr, GSM 8 kHz), menardi (it_IT_f_Menardi,
  PCM 8 kHz), all female and in the telephone band;
- synthetic, training: 300 eSpeak NG speakers (a language/variant of
  make_phone_set.TRAIN_ESPEAK with a fixed pitch and pitch range each),
  Festival kal_diphone at 8 and Flite awb / rms at 6 fixed F0 means, 8
  utterances each. Many speakers matter more than many utterances: a first
  run with 70 training speakers (24 utterances each) learned them but not
  voices it had not heard (held-out SI-SDR improvement below 0 dB);
- synthetic, evaluation only: Festival cmu_us_slt_arctic_hts (female) and
  ked_diphone (male), which are in no training list here.

Utterances: real prompts are decoded with ffmpeg at their own rate,
resampled to 16 kHz (scipy resample_poly) and trimmed of silence (20 ms frames
more than 45 dB below the loudest, 40 ms kept); files shorter than 1 s are
dropped. Synthetic ones are sentences from make_phone_set.TextGen (which
avoids every evaluation sentence of the project). Every utterance is scaled to
-23 dBFS RMS over its active frames. Deterministic (fixed seeds, sorted file
lists).

usage: python make_isolation_set.py OUT_DIR [--espeak-speakers 300] [--per-synthetic 8] [--jobs 2]
Writes OUT_DIR/<speaker>/<k>.wav, OUT_DIR/embed-list.txt (every file, one per
line, in index order: what `manifold speaker-embeddings` embeds) and
OUT_DIR/index.json:
{"rate": 16000, "speakers": [{"name", "group": "real"|"synthetic",
  "split": "train"|"eval", "sex", "band": "16k"|"8k", "files": [path]}]}
"""
import argparse
import json
import os
import subprocess
import sys
import time
import wave
from multiprocessing import Pool

import numpy as np
from scipy.signal import resample_poly

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_phone_set as M  # noqa: E402

RATE = 16000
SOUNDS = "/usr/share/asterisk/sounds"
# (name, folder, extension, band, sex, split)
REAL = [
    ("allison", "en_US_f_Allison", "g722", "16k", "f", "train"),
    ("june", "fr_CA_f_June", "g722", "16k", "f", "train"),
    ("carlo", "it_IT_m_Carlo", "g722", "16k", "m", "train"),
    ("ivr_ru", "ru_RU_f_IvrvoiceRU", "g722", "16k", "f", "train"),
    ("esco", "es", "gsm", "8k", "f", "eval"),
    ("armelle", "fr", "gsm", "8k", "f", "eval"),
    ("menardi", "it_IT_f_Menardi", "wav", "8k", "f", "eval"),
]
SPEEDS = [0.85, 0.92, 1.08, 1.16]
EVAL_SYNTHETIC = [("festival", "cmu_us_slt_arctic_hts", "f"), ("festival", "ked_diphone", "m")]
NOT_SPEECH = ("beep", "tone", "silence", "music", "monkeys", "ring", "click")
MIN_S = 1.0


def decode(path):
    rate = 16000 if path.endswith(".g722") else 8000
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1",
                          "-ar", str(rate), "-"], check=True, capture_output=True).stdout
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    return x if rate == RATE else resample_poly(x, RATE // rate, 1)


def trim(x):
    n = int(0.02 * RATE)
    frames = x[: len(x) // n * n].reshape(-1, n)
    power = np.mean(frames**2, axis=1)
    if len(power) == 0 or power.max() <= 0:
        return x[:0]
    idx = np.nonzero(power >= power.max() * 10 ** -4.5)[0]
    return x[max(idx[0] - 2, 0) * n: min(idx[-1] + 3, len(power)) * n]


def normalise(x):
    n = int(0.02 * RATE)
    frames = x[: len(x) // n * n].reshape(-1, n)
    p = np.mean(frames**2, axis=1)
    active = p[p >= p.max() * 1e-4] if len(p) else p
    rms = np.sqrt(np.mean(active)) if len(active) else 0.0
    if rms <= 0:
        return x
    y = x * (10 ** (-23 / 20) / rms)
    peak = np.max(np.abs(y))
    return y * (0.89 / peak) if peak > 0.89 else y


def write(path, x):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = np.clip(np.round(x * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def real_files(folder, ext):
    d = os.path.join(SOUNDS, folder)
    names = sorted(f for f in os.listdir(d) if f.endswith("." + ext) and os.path.isfile(os.path.join(d, f)))
    return [os.path.join(d, f) for f in names if not any(s in f for s in NOT_SPEECH)]


def real_job(path):
    try:
        return trim(decode(path))
    except subprocess.CalledProcessError:  # a few prompt files do not decode (es/vm-first.gsm)
        return np.zeros(0)


def synth_job(args):
    engine, voice, f0, prange, seed = args
    rng = np.random.default_rng(seed)
    text = M._TEXTS.text(rng)
    if engine == "espeak":
        x, _ = M.speak_espeak(text, voice, rng.uniform(150, 200), f0, prange)
    elif engine == "flite":
        x, _ = M.speak_flite(text, voice, rng.uniform(0.9, 1.15), f0)
    else:
        ((x, _),) = M.speak_festival_batch([(text, voice, rng.uniform(0.9, 1.15) if f0 else None, f0)])
    return trim(resample_poly(x, 320, 441))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--espeak-speakers", type=int, default=300)
    ap.add_argument("--per-synthetic", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    t0 = time.time()
    speakers = []
    with Pool(a.jobs, initializer=M._init_worker) as pool:
        for name, folder, ext, band, sex, split in REAL:
            files = real_files(folder, ext)
            utts = [normalise(x) for x in pool.map(real_job, files, chunksize=8) if len(x) >= MIN_S * RATE]
            variants = [(name, 1.0)] + ([(f"{name}_x{s:.2f}", s) for s in SPEEDS] if split == "train" else [])
            for vname, speed in variants:
                paths = []
                for k, x in enumerate(utts):
                    if speed != 1.0 and k % 2 != SPEEDS.index(speed) % 2:
                        continue  # each sped-up voice gets half the prompts
                    if speed != 1.0:
                        x = normalise(resample_poly(x, 100, int(round(100 * speed))))
                    rel = f"{vname}/{k:04d}.wav"
                    write(os.path.join(a.out, rel), x)
                    paths.append(rel)
                speakers.append({"name": vname, "group": "real", "split": split, "sex": sex, "band": band,
                                 "files": paths})
            print(f"make_isolation_set: {name}: {len(utts)} utterances ({time.time() - t0:.0f} s)", flush=True)

        rng = np.random.default_rng(16)
        voices = list(M.TRAIN_ESPEAK)
        picks = rng.choice(len(voices), size=a.espeak_speakers, replace=a.espeak_speakers > len(voices))
        synth = [("espeak", voices[i], float(rng.uniform(15, 85)), float(rng.uniform(20, 90)), "train")
                 for i in picks]
        for f0 in (85, 100, 115, 130, 150, 175, 200, 230):
            synth.append(("festival", M.FESTIVAL_TRAIN, float(f0), 0.0, "train"))
        for v in ("awb", "rms"):
            for f0 in (90, 110, 135, 160, 190, 220):
                synth.append(("flite", v, float(f0), 0.0, "train"))
        for engine, voice, _sex in EVAL_SYNTHETIC:
            synth.append((engine, voice, None, 0.0, "eval"))
        for si, (engine, voice, f0, prange, split) in enumerate(synth):
            n = 48 if split == "eval" else a.per_synthetic
            jobs = [(engine, voice, f0, prange, 1_000_000 * (si + 1) + k) for k in range(n)]
            utts = [normalise(x) for x in pool.map(synth_job, jobs) if len(x) >= MIN_S * RATE]
            name = f"{engine}_{voice}".replace("+", "_").replace("-", "_") + (f"_f{int(f0)}" if f0 else "")
            paths = []
            for k, x in enumerate(utts):
                rel = f"{name}/{k:04d}.wav"
                write(os.path.join(a.out, rel), x)
                paths.append(rel)
            sex = dict((v, s) for _, v, s in EVAL_SYNTHETIC).get(voice, "?")
            speakers.append({"name": name, "group": "synthetic", "split": split, "sex": sex, "band": "16k",
                             "files": paths})
        print(f"make_isolation_set: {len(synth)} synthetic speakers ({time.time() - t0:.0f} s)", flush=True)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump({"rate": RATE, "speakers": speakers}, f, indent=1)
    # The files to embed, in index order (train_isolation.py reads the
    # embeddings back in this order).
    with open(os.path.join(a.out, "embed-list.txt"), "w") as f:
        f.write("".join(rel + "\n" for s in speakers for rel in s["files"]))
    n = sum(len(s["files"]) for s in speakers)
    print(f"make_isolation_set: {len(speakers)} speakers, {n} utterances in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
