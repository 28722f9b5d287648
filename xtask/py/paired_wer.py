"""Paired WER comparison of two Voice bench runs over the same outputs.

    python xtask/py/paired_wer.py A/asr_wer.json B/asr_wer.json

Each file is the `asr_wer.json` the Voice bench writes into its output folder
(`target/bench-voice-real` by default; `MANIFOLD_VOICE_OUT` picks another, so
two configurations can be kept side by side). The converted outputs
(`out/s<strength>_…`, not the untouched `out/source_…`) that both runs hold
are compared file by file, per strength: the WER of each run over them,
B − A with a 95 % interval from resampling outputs (4000 draws, fixed
seed), and on how many outputs B did better and worse. Measurement only;
nothing in Manifold reads it.
"""
import json
import os
import re
import sys

import numpy as np


def converted(path):
    """{output file name: (errors, words)} for the converted outputs of one run."""
    files = json.load(open(path))["files"]
    return {os.path.basename(f["path"]): (f["errors"], f["words"]) for f in files
            if os.path.basename(os.path.dirname(f["path"])) == "out" and re.match(r"s\d", os.path.basename(f["path"]))}


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    a, b = converted(argv[1]), converted(argv[2])
    names = sorted(set(a) & set(b))
    if not names:
        sys.exit("no converted outputs in common")
    for strength in sorted({n.split("_")[0] for n in names}):
        compare(strength, [n for n in names if n.split("_")[0] == strength], a, b)


def compare(strength, names, a, b):
    err_a = np.array([a[n][0] for n in names])
    err_b = np.array([b[n][0] for n in names])
    words = np.array([a[n][1] for n in names])
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(4000):
        i = rng.integers(0, len(names), len(names))
        draws.append((err_b[i].sum() - err_a[i].sum()) / words[i].sum())
    lo, hi = np.percentile(draws, [2.5, 97.5])
    print(f"strength {strength[1:]}: {len(names)} outputs, {words.sum()} words: WER A {err_a.sum() / words.sum():.3f}, "
          f"B {err_b.sum() / words.sum():.3f}, B − A {(err_b.sum() - err_a.sum()) / words.sum():+.3f} [{lo:+.3f}, {hi:+.3f}] "
          f"(95 %); B better on {int(np.sum(err_b < err_a))}, worse on {int(np.sum(err_b > err_a))}")


if __name__ == "__main__":
    main(sys.argv)
