"""Trains Manifold's light live vocoder (issue 15): HiFi-GAN's generator
layout at V2's width (128 channels instead of V1's 512, same upsampling
8 x 8 x 2 x 2, same multi-receptive-field resblocks 3 / 7 / 11 with
dilations 1, 3, 5), made causal so that it streams with no lookahead, and
trained here from the HiFi-GAN log-mel of real recordings.

With --manifold, the net also gets a harmonic source, as NSF vocoders do:
sines at the first 8 multiples of the frame's F0 (faded out from 4.5 to
5 kHz), F0 and voicing gliding over each hop from the previous frame's
values to this frame's, added through 1 x 1 convolutions after the last two
upsampling stages (at 11025 and 22050 Hz). The F0 is the converter's own
pitch tracker's (`manifold frame-pitch`), so training and live use see the
same F0; live, it is the conversion's output F0. Those layers start at
zero, so a run with --init from a run without the source starts where that
one ended.

Causal: every convolution's taps after its centre are held at zero (the
whole-file layout, the streaming builder prepare_hifigan_stream.py and
the trained weights then agree exactly with lookahead fraction 0: the
future that builder repeats is multiplied by zeros). Only the transposed
convolutions look ahead, by half a step each: 147 samples (6.7 ms) in all.

Data (real voices, the core-sounds packages only, as ../shared/FACTS.md
allows for training): every prompt of June (fr_CA), Carlo (it_IT, male)
and IvrvoiceRU (ru_RU), and Allison's (en_US) digits / letters / phonetic
/ followme / dictate folders. Allison's top-level prompts (the Voice
bench's real test prompts and the copy-synthesis tuning prompts) and the
asterisk-prompt-* speakers are never used. G.722 16 kHz, so the band is at
most 7 kHz (the mel above it is near its floor and so is the output).

Loss (no discriminator, so it trains on two CPU cores in about an hour):
the L1 distance of the output's and the recording's log-mel (HiFi-GAN's
own front end, natural log) plus a multi-resolution STFT loss (FFT 512 /
1024 / 2048, hop a quarter: spectral convergence + L1 of log magnitudes).
Segments of 32 frames (8192 samples) with 16 frames of earlier context
(the loss skips the context, so a segment's start is like mid-stream).
Adam, batches of 8, cosine-decayed learning rate, fixed seeds.

usage: python train_vocoder.py OUT_DIR [--steps 3000] [--stop K] [--lr 5e-4] [--channels 128]
                               [--manifold MANIFOLD_BIN] [--init WEIGHTS.npz]
Writes OUT_DIR/vocoder_light.npz (weights in the generator's parameter
names, no weight norm), OUT_DIR/vocoder_light.json (settings, loss log).
Needs numpy, scipy, jax, optax and ffmpeg.
"""
import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from scipy.io import wavfile  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_phone_set as mps  # noqa: E402  (HiFi-GAN's mel front end)
import make_real_voice_set as real  # noqa: E402  (G.722 decoding, trimming)
import prepare_hifigan as ph  # noqa: E402  (the generator's layout)

SOUNDS = real.SOUNDS
TRAIN_FOLDERS = ["fr_CA_f_June", "it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"]
ALLISON_SUBFOLDERS = ["digits", "letters", "phonetic", "followme", "dictate"]
SEG_FRAMES, CONTEXT_FRAMES = 32, 16
HOP = ph.HOP
SR = 22050
# The harmonic source (what src/pipelines/vocoder_light.rs makes live from
# the converter's F0): sines at the first HARMONICS multiples of F0, each
# faded out between SOURCE_TOP_HZ - SOURCE_FADE_HZ and SOURCE_TOP_HZ.
HARMONICS = 8
SOURCE_TOP_HZ, SOURCE_FADE_HZ = 5000.0, 500.0


def training_files():
    files = []
    for folder in TRAIN_FOLDERS:
        for root, _, names in sorted(os.walk(os.path.join(SOUNDS, folder))):
            files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".g722")]
    for sub in ALLISON_SUBFOLDERS:
        d = os.path.join(SOUNDS, "en_US_f_Allison", sub)
        for root, _, names in sorted(os.walk(d)):
            files += [os.path.join(root, n) for n in sorted(names) if n.endswith(".g722")]
    return files


def load_corpus(files, manifold=None, work=None):
    """(audio at 22050 Hz, log-mel [T, 80], F0 per frame or None) per file,
    each at a drawn level. With `manifold` (the release CLI) the F0 is the
    converter's own pitch tracker's (`manifold frame-pitch`), via WAV files
    in `work`."""
    rng = np.random.default_rng(7)
    corpus = []
    for p in files:
        x = real.trim(real.decode(p))
        if len(x) < (SEG_FRAMES + CONTEXT_FRAMES + 2) * HOP:
            continue
        x = x / (np.max(np.abs(x)) + 1e-9) * 10 ** (rng.uniform(-12, -1) / 20)
        n = len(x) // HOP * HOP
        x = x[:n]
        mel = mps.log_mel(x).astype(np.float32)[: n // HOP]
        corpus.append([x.astype(np.float32), mel, None])
    if manifold is not None:
        os.makedirs(work, exist_ok=True)
        with open(os.path.join(work, "list.txt"), "w") as f:
            for k, (x, _, _) in enumerate(corpus):
                wavfile.write(os.path.join(work, f"{k}.wav"), SR, x)
                f.write(f"{k}.wav\n")
        subprocess.run([manifold, "frame-pitch", os.path.join(work, "list.txt"), "-o", os.path.join(work, "f0")], check=True)
        for k, item in enumerate(corpus):
            f0 = np.fromfile(os.path.join(work, "f0", f"{k}.f0"), dtype="<f4")
            item[2] = np.pad(f0, (0, max(0, len(item[1]) - len(f0))))[: len(item[1])]
    return corpus


def harmonic_source(f0, phase0=0.0):
    """[HARMONICS, 256 * len(f0)] for the hops of frames f0[1:], f0[0] being
    the frame before (the live vocoder's rule: over hop j, F0 and voicing
    glide from frame j - 1's values to frame j's, reached at the hop's last
    sample; a frame with F0 0 is unvoiced)."""
    prev, cur = f0[:-1], f0[1:]
    a = (np.arange(HOP) + 1) / HOP
    vp, vc = (prev > 0)[:, None], (cur > 0)[:, None]
    both = prev[:, None] + (cur - prev)[:, None] * a
    f = np.where(vp & vc, both, np.where(vc, cur[:, None], np.where(vp, prev[:, None], 0.0))).reshape(-1)
    amp = (vp * (1 - a) + vc * a).reshape(-1)
    phase = phase0 + np.cumsum(f / SR)
    h = np.arange(1, HARMONICS + 1)[:, None]
    fade = np.clip((SOURCE_TOP_HZ - h * f[None, :]) / SOURCE_FADE_HZ, 0.0, 1.0)
    return (amp[None, :] * fade * np.sin(2 * np.pi * h * (phase[None, :] % 1.0))).astype(np.float32)


def batch(corpus, rng, size):
    mels, audio, sources = [], [], []
    lengths = np.array([len(m) for _, m, _ in corpus], np.float64)
    pick = rng.choice(len(corpus), size=size, p=lengths / lengths.sum())
    for i in pick:
        x, mel, f0 = corpus[i]
        t0 = rng.integers(0, len(mel) - SEG_FRAMES + 1)
        lead = max(CONTEXT_FRAMES - t0, 0)  # the file's start: silence before it
        m = mel[t0 - CONTEXT_FRAMES + lead: t0 + SEG_FRAMES]
        m = np.concatenate([np.full((lead, ph.N_MELS), np.log(1e-5), np.float32), m])
        mels.append(m.T)
        audio.append(x[t0 * HOP:(t0 + SEG_FRAMES) * HOP])
        if f0 is not None:
            idx = np.arange(t0 - CONTEXT_FRAMES - 1, t0 + SEG_FRAMES)  # the frame before, then each hop's
            g = np.where(idx >= 0, f0[np.clip(idx, 0, None)], 0.0)
            sources.append(harmonic_source(g, rng.random()))
    src = jnp.asarray(np.stack(sources)) if sources else None
    return jnp.asarray(np.stack(mels)), jnp.asarray(np.stack(audio)), src


# ------------------------------------------------------------------ the model

def layer_list(channels):
    """(name, weight shape, dilation, kind) in graph order, PyTorch layouts."""
    out = [("conv_pre", (channels, ph.N_MELS, 7), 1, "conv")]
    for i, k in enumerate(ph.UPSAMPLE_KERNELS):
        cin, cout = channels >> i, channels >> (i + 1)
        out.append((f"ups.{i}", (cin, cout, k), 1, "up"))
        for j, rk in enumerate(ph.RES_KERNELS):
            r = i * len(ph.RES_KERNELS) + j
            for m, d in enumerate(ph.RES_DILATIONS):
                out.append((f"resblocks.{r}.convs1.{m}", (cout, cout, rk), d, "conv"))
                out.append((f"resblocks.{r}.convs2.{m}", (cout, cout, rk), 1, "conv"))
    out.append(("conv_post", (1, channels >> len(ph.UPSAMPLE_RATES), 7), 1, "conv"))
    return out


# Stages whose input (after the upsampling) gets the harmonic source added
# through a 1 x 1 convolution, and the source's decimation there.
SOURCE_STAGES = {2: 2, 3: 1}


def source_layers(channels):
    return [(f"source.{i}", (channels >> (i + 1), HARMONICS, 1)) for i in SOURCE_STAGES]


def causal_mask(k):
    """1 for a 'same' convolution's taps at or before its centre."""
    return (np.arange(k) <= (k - 1) // 2).astype(np.float32)


def init_params(key, channels):
    params = {}
    for name, shape, _, kind in layer_list(channels):
        key, sub = jax.random.split(key)
        w = 0.01 * jax.random.normal(sub, shape, jnp.float32)  # HiFi-GAN's init_weights
        if kind == "conv":
            w = w * causal_mask(shape[2])
        params[name + ".weight"] = w
        params[name + ".bias"] = jnp.zeros((shape[1] if kind == "up" else shape[0],), jnp.float32)
    return params


def conv(x, w, b, dilation=1):
    k = w.shape[2]
    w = w * causal_mask(k)  # the future taps stay zero
    pad = (k - 1) * dilation // 2
    y = jax.lax.conv_general_dilated(x, w, (1,), [(pad, pad)], rhs_dilation=(dilation,),
                                     dimension_numbers=("NCH", "OIH", "NCH"))
    return y + b[None, :, None]


def conv_transpose(x, w, b, u):
    """ONNX / PyTorch ConvTranspose1d, kernel k, stride u, pads (k - u) / 2."""
    k = w.shape[2]
    p = (k - u) // 2
    wf = jnp.flip(jnp.transpose(w, (1, 0, 2)), axis=2)  # [out, in, k], flipped
    y = jax.lax.conv_general_dilated(x, wf, (1,), [(k - 1 - p, k - 1 - p)], lhs_dilation=(u,),
                                     dimension_numbers=("NCH", "OIH", "NCH"))
    return y + b[None, :, None]


def lrelu(x, s):
    return jnp.where(x >= 0, x, s * x)


def generator(p, mel, source=None):
    """[B, 80, T] (+ the harmonic source [B, HARMONICS, T * 256]) ->
    [B, T * 256], the layout prepare_hifigan.build writes (plus the source
    convolutions when the parameters have them)."""
    x = conv(mel, p["conv_pre.weight"], p["conv_pre.bias"])
    for i, u in enumerate(ph.UPSAMPLE_RATES):
        x = conv_transpose(lrelu(x, ph.LEAK), p[f"ups.{i}.weight"], p[f"ups.{i}.bias"], u)
        if source is not None and f"source.{i}.weight" in p:
            s = source[:, :, ::SOURCE_STAGES[i]]
            x = x + jnp.einsum("oh,bht->bot", p[f"source.{i}.weight"][:, :, 0], s) + p[f"source.{i}.bias"][None, :, None]
        branches = []
        for j, _ in enumerate(ph.RES_KERNELS):
            r = i * len(ph.RES_KERNELS) + j
            h = x
            for m, d in enumerate(ph.RES_DILATIONS):
                t = conv(lrelu(h, ph.LEAK), p[f"resblocks.{r}.convs1.{m}.weight"], p[f"resblocks.{r}.convs1.{m}.bias"], d)
                t = conv(lrelu(t, ph.LEAK), p[f"resblocks.{r}.convs2.{m}.weight"], p[f"resblocks.{r}.convs2.{m}.bias"])
                h = t + h
            branches.append(h)
        x = sum(branches) / len(ph.RES_KERNELS)
    x = conv(lrelu(x, ph.LEAK_FINAL), p["conv_post.weight"], p["conv_post.bias"])
    return jnp.tanh(x[:, 0, :])


# ------------------------------------------------------------------ the loss

MEL_FB = jnp.asarray(mps.MEL_FB.astype(np.float32))  # [80, 513]


def stft_mag(x, n_fft, hop):
    win = jnp.asarray(np.hanning(n_fft + 1)[:-1].astype(np.float32))
    n = 1 + (x.shape[1] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    spec = jnp.fft.rfft(x[:, idx] * win, axis=-1)
    return jnp.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-7)


def loss_fn(p, mel, audio, source):
    y = generator(p, mel, source)[:, CONTEXT_FRAMES * HOP:]
    total = 0.0
    for n_fft in (512, 1024, 2048):
        a, b = stft_mag(y, n_fft, n_fft // 4), stft_mag(audio, n_fft, n_fft // 4)
        sc = jnp.sqrt(jnp.sum((a - b) ** 2)) / jnp.sqrt(jnp.sum(b ** 2))
        total = total + sc + jnp.mean(jnp.abs(jnp.log(a) - jnp.log(b)))
    ma, mb = stft_mag(y, 1024, 256), stft_mag(audio, 1024, 256)
    mel_l1 = jnp.mean(jnp.abs(jnp.log(jnp.maximum(ma @ MEL_FB.T, 1e-5)) - jnp.log(jnp.maximum(mb @ MEL_FB.T, 1e-5))))
    return total / 3 + 2.0 * mel_l1, mel_l1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--stop", type=int, help="stop after this step (the schedule still spans --steps)")
    ap.add_argument("--manifold", help="the release CLI: adds the harmonic source from its pitch tracker's F0")
    ap.add_argument("--init", help="start from these weights (a vocoder_light.npz); new layers start at zero")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    files = training_files()
    corpus = load_corpus(files, a.manifold, os.path.join(a.out, "corpus"))
    seconds = sum(len(x) for x, _, _ in corpus) / SR
    print(f"train_vocoder: {len(corpus)} recordings, {seconds / 60:.1f} min, loaded in {time.time() - t0:.0f} s", flush=True)

    rng = np.random.default_rng(1)
    params = init_params(jax.random.PRNGKey(1), a.channels)
    if a.manifold:
        for name, shape in source_layers(a.channels):
            params[name + ".weight"] = jnp.zeros(shape, jnp.float32)
            params[name + ".bias"] = jnp.zeros((shape[0],), jnp.float32)
    if a.init:
        for name, v in np.load(a.init).items():
            assert params[name].shape == v.shape, name
            params[name] = jnp.asarray(v)
    schedule = optax.cosine_decay_schedule(a.lr, a.steps, alpha=0.05)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule, b1=0.8, b2=0.99))
    state = opt.init(params)

    @jax.jit
    def step(params, state, mel, audio, source):
        (loss, mel_l1), g = jax.value_and_grad(loss_fn, has_aux=True)(params, mel, audio, source)
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, loss, mel_l1

    log, t1, acc = [], time.time(), []
    last = min(a.stop or a.steps, a.steps)
    for k in range(1, last + 1):
        mel, audio, source = batch(corpus, rng, a.batch)
        params, state, loss, mel_l1 = step(params, state, mel, audio, source)
        acc.append((float(loss), float(mel_l1)))
        if k % 50 == 0 or k == last:
            l, m = np.mean(acc, axis=0)
            acc = []
            log.append({"step": k, "loss": round(float(l), 4), "mel_l1_nats": round(float(m), 4),
                        "seconds": round(time.time() - t1, 1)})
            print(f"step {k}: loss {l:.4f}, mel L1 {m:.4f} nats ({m * 20 / np.log(10):.2f} dB), "
                  f"{time.time() - t1:.0f} s", flush=True)
        if k % 500 == 0 or k == last:
            np.savez(os.path.join(a.out, "vocoder_light.npz"), **{n: np.asarray(v) for n, v in params.items()})
    json.dump({"channels": a.channels, "steps": a.steps, "stopped_at": last, "batch": a.batch, "lr": a.lr,
               "harmonic_source": bool(a.manifold), "init": a.init,
               "recordings": len(corpus), "minutes": seconds / 60, "log": log},
              open(os.path.join(a.out, "vocoder_light.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
