"""An upper bound for Manifold's target-speaker isolation (issue 16) at this
machine's training budget: the same network as train_isolation.py (two GRU
layers over the same causal 16 kHz STFT), but speaker-independent -- no
embedding; it gives two masks, one per voice, trained with
permutation-invariant SNR (whichever assignment of outputs to voices is
better counts). Scored with the *oracle* assignment: of its two outputs, the
one closer to the target. A target-speaker model of the same size and
training cannot separate better than this: it has to solve the same
separation and also pick the voice from an embedding.

Training examples: two training speakers (any two, real or synthetic, half
the targets real), 3 s, SIR drawn from [-5, +5] dB, 30 % of them in the
telephone band (as the held-out real voices are), level -40 to -12 dBFS;
nothing else (no noise or rooms: the bound is for condition (a), two clean
voices). Held-out monitor: the same 24 equal-level held-out
pairs as train_isolation.py's monitor (real: esco, armelle, menardi;
synthetic: Festival slt, ked), plus the same number from training speakers.

usage: python separation_bound.py SET_DIR OUT_DIR --embeddings EMB.f32 [--steps 3000] [--hidden 256]
Writes OUT_DIR/separation_bound.json (the monitor per 250 steps) and
OUT_DIR/separation_bound.npz (the weights; train_isolation.py --init can
start from them).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_isolation as T  # noqa: E402

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from scipy.signal import resample_poly  # noqa: E402


def pair(speakers, rng, group=None):
    group = group or ("real" if rng.random() < 0.5 else "synthetic")
    pool = [i for i, s in enumerate(speakers) if s["group"] == group]
    t = speakers[pool[rng.integers(len(pool))]]
    others = [s for s in speakers if s["name"].split("_x")[0] != t["name"].split("_x")[0]]
    o = others[rng.integers(len(others))]
    s1 = T.place(t["audio"][rng.integers(len(t["audio"]))], rng)
    s2 = T.place(o["audio"][rng.integers(len(o["audio"]))], rng)
    s2 = s2 * (T.rms(s1) / T.rms(s2) * 10 ** (-rng.uniform(-5, 5) / 20))
    src = np.stack([s1, s2])
    if rng.random() < 0.3:
        # The telephone band (the held-out real voices are 8 kHz recordings).
        src = resample_poly(resample_poly(src, 1, 2, axis=1), 2, 1, axis=1)
    g = 10 ** (rng.uniform(-40, -12) / 20) / T.rms(src.sum(0))
    return src.astype(np.float32) * g


def init_params(key, hidden):
    p = T.init_params(key, hidden)
    for k in ("g1", "c1", "g2", "c2"):
        p.pop(f"{k}_w"), p.pop(f"{k}_b")
    k = jax.random.split(key, 2)[1]
    p["w_out"] = jax.random.normal(k, (2 * T.BINS, 2 * hidden)) * np.sqrt(1.0 / (2 * hidden)) * 0.1
    p["b_out"] = jnp.zeros(2 * T.BINS)
    return p


def masks_of(p, mag):
    """mag [B, T, BINS] -> two masks [B, 2, T, BINS] that sum to 1 per bin."""
    B = mag.shape[0]
    H = p["b_in"].shape[0]
    a = jax.nn.relu(T.features(mag) @ p["w_in"].T + p["b_in"])
    h0 = jnp.zeros((B, H))
    h1 = T.gru(p, 0, jnp.swapaxes(a, 0, 1), h0)
    h2 = jnp.swapaxes(T.gru(p, 1, h1, h0), 0, 1)
    z = (jnp.concatenate([h2, a], -1) @ p["w_out"].T + p["b_out"]).reshape(B, -1, 2, T.BINS)
    return jnp.moveaxis(jax.nn.softmax(z, axis=2), 2, 1)


def outputs(p, mix):
    spec = T.stft(mix)
    m = masks_of(p, jnp.abs(spec))
    return jnp.stack([T.istft(spec * m[:, k], mix.shape[1]) for k in range(2)], 1)[:, :, T.DELAY:]


def neg_snr(s, y):
    es = jnp.sum(s**2, -1)
    return -10 * jnp.log10(es / (jnp.sum((s - y) ** 2, -1) + 1e-3 * es + 1e-9) + 1e-9)


def loss_fn(p, src):
    mix = src.sum(1)
    y = outputs(p, mix)
    s = src[:, :, : y.shape[2]]
    keep = neg_snr(s[:, 0], y[:, 0]) + neg_snr(s[:, 1], y[:, 1])
    swap = neg_snr(s[:, 0], y[:, 1]) + neg_snr(s[:, 1], y[:, 0])
    return jnp.mean(jnp.minimum(keep, swap)) / 2


def score(p, pairs, sep):
    gains = {}
    for group, m, s in pairs:
        y = np.asarray(sep(p, m[None]))[0]
        n = y.shape[1]
        best = max(T.si_sdr(s[:n], y[k]) for k in range(2))
        gains.setdefault(group, []).append(best - T.si_sdr(s[:n], m[:n]))
    return {g: round(float(np.mean(v)), 2) for g, v in gains.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("set_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=0, help="stop early after this long (0: no limit)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--extra", help="a folder of further training voices (augment_real_voices.py)")
    a = ap.parse_args()
    speakers = T.load_set(a.set_dir, a.embeddings)
    train = [s for s in speakers if s["split"] == "train"]
    if a.extra:
        # More training voices (augment_real_voices.py); the separator needs no embeddings.
        index = json.load(open(os.path.join(a.extra, "index.json")))
        for s in index["speakers"]:
            train.append(dict(s, audio=[T.wavfile.read(os.path.join(a.extra, f))[1].astype(np.float32) / 32768.0 for f in s["files"]]))
        print(f"separation_bound: {len(train)} training speakers ({sum(s['group'] == 'real' for s in train)} real)", flush=True)
    held = [(g, m, s) for g, m, s, _ in T.monitor_set(speakers, 1234, 24)]
    # The same kind of pairs from training speakers: what the network learned at all.
    trng = np.random.default_rng(99)
    seen = []
    for k in range(24):
        group = "real" if k % 2 == 0 else "synthetic"
        x = pair(train, trng, group)
        x[1] *= T.rms(x[0]) / T.rms(x[1])
        g = 0.05 / T.rms(x.sum(0))
        seen.append(("train_" + group, x.sum(0) * g, x[0] * g))
    rng = np.random.default_rng(a.seed)
    params = init_params(jax.random.PRNGKey(a.seed), a.hidden)
    opt = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(1e-3))
    state = opt.init(params)

    @jax.jit
    def step_fn(params, state, src, lr_scale):
        loss, grads = jax.value_and_grad(loss_fn)(params, src)
        updates, state = opt.update(grads, state, params)
        updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
        return optax.apply_updates(params, updates), state, loss

    sep = jax.jit(outputs)
    t0 = time.time()
    deadline = t0 + 60 * a.minutes if a.minutes > 0 else float("inf")
    history, losses, step = [], [], 0
    while step < a.steps and time.time() < deadline:
        src = np.stack([pair(train, rng) for _ in range(a.batch)])
        lr_scale = 0.5 * (1 + np.cos(np.pi * step / a.steps)) * min(1.0, (step + 1) / 200)
        params, state, loss = step_fn(params, state, src, np.float32(lr_scale))
        losses.append(float(loss))
        step += 1
        if step % 250 == 0 or step == a.steps or time.time() >= deadline:
            row = {"step": step, "minutes": round((time.time() - t0) / 60, 1), "loss": round(float(np.mean(losses[-100:])), 2),
                   **{f"oracle_si_sdri_{g}": v for g, v in {**score(params, held, sep), **score(params, seen, sep)}.items()}}
            history.append(row)
            print("separation_bound:", json.dumps(row), flush=True)
            os.makedirs(a.out_dir, exist_ok=True)
            np.savez(os.path.join(a.out_dir, "separation_bound.npz"), **{k: np.asarray(v) for k, v in params.items()})
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "separation_bound.json"), "w") as f:
        json.dump({"hidden": a.hidden, "batch": a.batch, "seed": a.seed, "schedule_steps": a.steps, "monitor": history}, f, indent=1)


if __name__ == "__main__":
    main()
