"""More real-sounding training voices for voice isolation (issue 16), made
from the four real core-sounds speakers by WORLD resynthesis (pyworld):
each new voice is one of the four with its pitch scaled by a factor drawn
from [0.65, 1.5] and its spectral envelope stretched along frequency by one
from [0.85, 1.18] (formants up or down, as a shorter or longer vocal tract),
both log-uniform and fixed per voice; the aperiodicity is kept. The words,
timing and articulation stay those of a real person. An experiment to see
whether the four real people the rules allow to train on can stand in for
more (the held-out asterisk-prompt-* voices are never touched).

Reads the pool of make_isolation_set.py (its real, training, unscaled
speakers), writes OUT_DIR/<voice>/<k>.wav and OUT_DIR/index.json in the
same format (group "real", split "train").

usage: python augment_real_voices.py SET_DIR OUT_DIR [--voices-per-speaker 12] [--utterances 40] [--jobs 2]
"""
import argparse
import json
import os
import sys
from multiprocessing import Pool

import numpy as np
import pyworld
from scipy.io import wavfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_isolation_set import RATE, write  # noqa: E402


def resynthesise(job):
    path, f0_scale, stretch = job
    _, x = wavfile.read(path)
    x = x.astype(np.float64) / 32768.0
    f0, t = pyworld.dio(x, RATE, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, t, RATE)
    sp = pyworld.cheaptrick(x, f0, t, RATE)
    ap = pyworld.d4c(x, f0, t, RATE)
    bins = np.arange(sp.shape[1], dtype=np.float64)
    # New envelope at bin k = old envelope at k / stretch (formants move by stretch).
    src = np.clip(bins / stretch, 0, sp.shape[1] - 1)
    sp2 = np.stack([np.interp(src, bins, frame) for frame in sp])
    y = pyworld.synthesize(f0 * f0_scale, np.ascontiguousarray(sp2), ap, RATE, frame_period=5.0)
    y = y[: len(x)]
    return (y * (np.sqrt(np.mean(x**2)) / (np.sqrt(np.mean(y**2)) + 1e-9))).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("set_dir")
    ap.add_argument("out")
    ap.add_argument("--voices-per-speaker", type=int, default=12)
    ap.add_argument("--utterances", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    index = json.load(open(os.path.join(a.set_dir, "index.json")))
    rng = np.random.default_rng(16)
    speakers, jobs = [], []
    for s in index["speakers"]:
        if s["group"] != "real" or s["split"] != "train" or "_x" in s["name"]:
            continue
        for v in range(a.voices_per_speaker):
            f0_scale = float(np.exp(rng.uniform(np.log(0.65), np.log(1.5))))
            stretch = float(np.exp(rng.uniform(np.log(0.85), np.log(1.18))))
            picks = sorted(rng.choice(len(s["files"]), size=min(a.utterances, len(s["files"])), replace=False))
            name = f"{s['name']}_w{v:02d}"
            files = [f"{name}/{k:04d}.wav" for k in range(len(picks))]
            speakers.append({"name": name, "group": "real", "split": "train", "sex": "?", "band": s["band"], "files": files,
                             "f0_scale": round(f0_scale, 3), "stretch": round(stretch, 3)})
            jobs += [(os.path.join(a.set_dir, s["files"][i]), f0_scale, stretch, os.path.join(a.out, f)) for i, f in zip(picks, files)]
    with Pool(a.jobs) as pool:
        for (_, _, _, dst), y in zip(jobs, pool.imap(resynthesise, [j[:3] for j in jobs], chunksize=8)):
            write(dst, y)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump({"rate": RATE, "speakers": speakers}, f, indent=1)
    print(f"augment_real_voices: {len(speakers)} voices, {len(jobs)} utterances")


if __name__ == "__main__":
    main()
