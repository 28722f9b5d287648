"""Held-out figures of Manifold's voice isolation (issue 16), through the
shipped pipeline: `manifold batch isolate --voice REF` (the same code as the
plugin and `manifold isolate`) and, for (d), `manifold batch clean`
(DeepFilterNet3) on the same items.

Speakers: the evaluation split of make_isolation_set.py only -- real:
esco, armelle, menardi (asterisk-prompt-*, 8 kHz band, never trained on);
synthetic: Festival cmu_us_slt_arctic_hts and ked_diphone. Each target
speaker is enrolled from one reference: REF_UTTERANCES of its utterances
(never used as items) joined with 0.3 s pauses. Items use the speaker's other
utterances; interferers come from the other held-out speakers of the same
group. Mixtures are 16 kHz mono, seeded.

Conditions, per group (real / synthetic), ITEMS items each:
  a_m5 / a_0 / a_p5   target + 1 interferer at SIR -5 / 0 / +5 dB:
                      SI-SDR improvement (output vs mixture, against the target)
  b_clean             target alone: SI-SDR of the output against the input
  b_noise             target + light noise (pink, 25 dB SNR): SI-SDR(out) - SI-SDR(in)
  c_others            1 interferer alone: attenuation, 10 log10(E_in / E_out)
  d_noise             target + interferer (0 dB) + pink or brown noise at
                      10 dB SNR to the speech: SI-SDR of isolation and of
                      DFN3 against the target, and their difference
  embedder            no isolation: the speaker embedder's cosine of the
                      (b_clean) and (c_others) items to the target's
                      reference, and the AUC of target against interferer
Each figure is the mean with a 95 % bootstrap interval (2000 resamples).

usage: python eval_isolation.py SET_DIR WORK_DIR MANIFOLD_BIN [--items 30] [--json OUT.json]
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from scipy.io import wavfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_isolation_set import RATE, write  # noqa: E402

REF_UTTERANCES = 5
SEG_PAD = 0.25


def read(path):
    r, x = wavfile.read(path)
    if x.dtype == np.int16:
        x = x.astype(np.float64) / 32768.0
    x = x.astype(np.float64)
    return x if x.ndim == 1 else x.mean(1)


def rms(x):
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def si_sdr(ref, est):
    n = min(len(ref), len(est))
    ref, est = ref[:n] - ref[:n].mean(), est[:n] - est[:n].mean()
    a = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    t = a * ref
    return 10 * np.log10(np.sum(t**2) / (np.sum((est - t) ** 2) + 1e-12) + 1e-12)


def pink(n, rng, brown=False):
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.arange(len(spec)), 1.0)
    spec /= f if brown else np.sqrt(f)
    return np.fft.irfft(spec, n)


def ci(values, rng):
    v = np.asarray(values, np.float64)
    boots = [np.mean(v[rng.integers(0, len(v), len(v))]) for _ in range(2000)]
    return [round(float(np.mean(v)), 2), round(float(np.percentile(boots, 2.5)), 2), round(float(np.percentile(boots, 97.5)), 2)]


def overlay(target, other, rng):
    """Both padded to a common length, the interferer at a random offset (overlap >= half the target)."""
    n = max(len(target), len(other))
    t = np.zeros(n)
    o = np.zeros(n)
    ot = rng.integers(0, n - len(target) + 1)
    t[ot: ot + len(target)] = target
    oo = rng.integers(0, n - len(other) + 1)
    o[oo: oo + len(other)] = other
    return t, o


def make_items(speakers, group, items, rng, work):
    """Writes WORK/<group>/<speaker>/{ref.wav, in/<cond>_<k>.wav, truth/...}; returns the item list."""
    pool = [s for s in speakers if s["split"] == "eval" and s["group"] == group]
    out = []
    for s in pool:
        d = os.path.join(work, group, s["name"])
        utts = s["_audio"]
        ref = np.concatenate([np.concatenate([u, np.zeros(int(0.3 * RATE))]) for u in utts[:REF_UTTERANCES]])
        write(os.path.join(d, "ref.wav"), ref)
        s["_ref"] = os.path.join(d, "ref.wav")
    for cond in ["a_m5", "a_0", "a_p5", "b_clean", "b_noise", "c_others", "d_noise"]:
        for k in range(items):
            s = pool[k % len(pool)]
            others = [o for o in pool if o["name"] != s["name"]]
            o = others[rng.integers(len(others))]
            u = s["_audio"][REF_UTTERANCES + rng.integers(len(s["_audio"]) - REF_UTTERANCES)]
            v = o["_audio"][REF_UTTERANCES + rng.integers(len(o["_audio"]) - REF_UTTERANCES)]
            t, i = overlay(u, v, rng)
            pad = np.zeros(int(SEG_PAD * RATE))
            t, i = np.concatenate([pad, t, pad]), np.concatenate([pad, i, pad])
            if cond.startswith("a_"):
                sir = {"a_m5": -5, "a_0": 0, "a_p5": 5}[cond]
                i = i * rms(t) / rms(i) * 10 ** (-sir / 20)
                mix = t + i
            elif cond == "b_clean":
                mix = t.copy()
            elif cond == "b_noise":
                nz = pink(len(t), rng)
                mix = t + nz * rms(t) / rms(nz) * 10 ** (-25 / 20)
            elif cond == "c_others":
                t = np.zeros_like(i)
                mix = i.copy()
            else:
                i = i * rms(t) / rms(i)
                sp = t + i
                nz = pink(len(t), rng, brown=bool(rng.integers(2)))
                mix = sp + nz * rms(sp) / rms(nz) * 10 ** (-10 / 20)
            g = 10 ** (rng.uniform(-30, -20) / 20) / rms(mix)
            mix, t = mix * g, t * g
            name = f"{cond}_{k:03d}"
            write(os.path.join(work, group, s["name"], "in", name + ".wav"), mix)
            np.save(os.path.join(work, group, s["name"], "in", name + ".target.npy"), t)
            out.append({"group": group, "speaker": s["name"], "cond": cond, "name": name})
    return out


def embedder_check(a, speakers, items, crng):
    """How well the speaker embedder alone tells each target from its interferers:
    the cosine of every (b_clean) item (the target alone, a whole utterance) and
    every (c_others) item (an interferer alone) to the target's reference
    embedding; AUC = how often a target item scores above an interferer item.
    An isolation model conditioned on this embedding cannot choose the voice
    more reliably than this."""
    picked = [it for it in items if it["cond"] in ("b_clean", "c_others")]
    paths = [os.path.join(a.work, it["group"], it["speaker"], "in", it["name"] + ".wav") for it in picked]
    paths += [s["_ref"] for s in speakers]
    listing = os.path.join(a.work, "embed-list.txt")
    with open(listing, "w") as f:
        f.write("".join(os.path.abspath(p) + "\n" for p in paths))
    out = os.path.join(a.work, "embeddings.f32")
    subprocess.run([a.manifold, "speaker-embeddings", listing, "-o", out], check=True)
    emb = np.fromfile(out, "<f4").reshape(len(paths), -1)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
    ref = {s["name"]: emb[len(picked) + k] for k, s in enumerate(speakers)}
    rows = []
    for group in ("real", "synthetic"):
        cos = {c: [float(emb[i] @ ref[it["speaker"]]) for i, it in enumerate(picked) if it["group"] == group and it["cond"] == c]
               for c in ("b_clean", "c_others")}
        t, o = np.asarray(cos["b_clean"]), np.asarray(cos["c_others"])
        auc = float(np.mean(t[:, None] > o[None, :]))
        rows.append({"group": group, "condition": "embedder", "metric": "cosine_target", "n": len(t), "mean_ci95": ci(t, crng)})
        rows.append({"group": group, "condition": "embedder", "metric": "cosine_interferer", "n": len(o), "mean_ci95": ci(o, crng)})
        rows.append({"group": group, "condition": "embedder", "metric": "auc_target_vs_interf", "n": len(t) * len(o),
                     "mean_ci95": [round(auc, 3)] * 3})
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("set_dir")
    ap.add_argument("work")
    ap.add_argument("manifold")
    ap.add_argument("--items", type=int, default=30)
    ap.add_argument("--json")
    a = ap.parse_args()
    index = json.load(open(os.path.join(a.set_dir, "index.json")))
    speakers = [s for s in index["speakers"] if s["split"] == "eval"]
    for s in speakers:
        s["_audio"] = [read(os.path.join(a.set_dir, f)) for f in s["files"]]
    rng = np.random.default_rng(2016)
    items = []
    for group in ("real", "synthetic"):
        items += make_items(speakers, group, a.items, rng, a.work)
    # The shipped pipeline: one batch per target speaker (its reference), and DFN3 over the (d) items.
    for s in speakers:
        d = os.path.join(a.work, s["group"], s["name"])
        subprocess.run([a.manifold, "batch", "isolate", "--voice", s["_ref"], "--cpu", "--quiet", os.path.join(d, "in"),
                        "-o", os.path.join(d, "isolated")], check=True)
        dfn_in = os.path.join(d, "in_d")
        os.makedirs(dfn_in, exist_ok=True)
        for it in items:
            if it["speaker"] == s["name"] and it["cond"] == "d_noise":
                src = os.path.join(d, "in", it["name"] + ".wav")
                dst = os.path.join(dfn_in, it["name"] + ".wav")
                if not os.path.exists(dst):
                    os.symlink(os.path.abspath(src), dst)
        subprocess.run([a.manifold, "batch", "clean", "--quiet", dfn_in, "-o", os.path.join(d, "dfn3")], check=True)
    rows = {}
    for it in items:
        d = os.path.join(a.work, it["group"], it["speaker"])
        mix = read(os.path.join(d, "in", it["name"] + ".wav"))
        t = np.load(os.path.join(d, "in", it["name"] + ".target.npy"))
        y = read(os.path.join(d, "isolated", it["name"] + ".wav"))[: len(mix)]
        c = it["cond"]
        if c.startswith("a_"):
            v = {"si_sdri": si_sdr(t, y) - si_sdr(t, mix)}
        elif c == "b_clean":
            v = {"si_sdr_vs_input": si_sdr(mix, y)}
        elif c == "b_noise":
            v = {"si_sdr_change": si_sdr(t, y) - si_sdr(t, mix)}
        elif c == "c_others":
            v = {"attenuation_db": 10 * np.log10(np.sum(mix**2) / (np.sum(y**2) + 1e-12))}
        else:
            z = read(os.path.join(d, "dfn3", it["name"] + ".wav"))[: len(mix)]
            v = {"isolation_si_sdr": si_sdr(t, y), "dfn3_si_sdr": si_sdr(t, z), "isolation_minus_dfn3": si_sdr(t, y) - si_sdr(t, z)}
        for k, val in v.items():
            rows.setdefault((it["group"], c, k), []).append(float(val))
    crng = np.random.default_rng(7)
    table = [{"group": g, "condition": c, "metric": k, "n": len(v), "mean_ci95": ci(v, crng)} for (g, c, k), v in sorted(rows.items())]
    table += embedder_check(a, speakers, items, crng)
    print(f"{'group':10} {'condition':9} {'metric':22} {'n':>3}  mean [95 % interval]")
    for r in table:
        m, lo, hi = r["mean_ci95"]
        print(f"{r['group']:10} {r['condition']:9} {r['metric']:22} {r['n']:3}  {m:+7.2f} [{lo:+.2f}, {hi:+.2f}]")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"items_per_condition": a.items, "table": table}, f, indent=1)


if __name__ == "__main__":
    main()
