"""Trains Manifold's content model: frame-wise phone posteriors (a PPG) from
HiFi-GAN log-mel frames, on the set written by make_phone_set.py plus, when
DATA_DIR holds them, the real recorded speech of make_real_phone_set.py
(real_train.npz is mixed into training, --real-weight times; real_eval.npz,
held-out real English, is reported separately and never trained on).

Model: scikit-learn MLPClassifier on stacked context frames (L left + current
+ R right, 80 bands each), two ReLU hidden layers, softmax over the phones.
Two normalisations:
  1. per speaker, outside the graph (the caller does it, see
     speaker_means): every frame minus a causal running mean of the speech
     frames so far (frame t included), started from the training frames'
     mean, so a voice's own colouring (vocal tract, channel) is taken out;
  2. per band with fixed global mean/std of the speaker-normalised training
     frames, inside the graph (Sub, Mul).
Exported by hand to ONNX:
  input  mel_context float32 [B, 80*(L+1+R)]  speaker-normalised frames
         t-L .. t+R, frame-major (element [b, 80*j + m] = band m of frame t-L+j)
  output phone_logp  float32 [B, P]           log posteriors, PHONES order
Frames before the first / after the last one are the log-mel of digital
silence, ln(1e-5) in every band (what the feature gives for zeros), minus the
running mean of the first / last frame, so streaming and offline agree.

usage: python train_content.py DATA_DIR OUT_DIR [--hidden 384] [--minutes 16] [--real-weight 1]
                                  [--compare OLD_MODEL_DIR] [--threads 2]
Writes OUT_DIR/content_phones.onnx and OUT_DIR/content_phones.json.
--compare scores an existing content_phones.onnx/.json (its own speaker
prior) on the same evaluation data, in numpy, before anything is written.
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import numpy as np

L_CTX, R_CTX = 5, 4
N_MELS = 80
PAD_VALUE = float(np.log(1e-5))


# Speaker normalisation: a frame is "speech" when its mean log-mel is above
# SPEECH_GATE; the running mean moves by max(1/(n + PRIOR_FRAMES), 1/TAU) of
# the difference on the n-th speech frame (an average of the frames so far,
# then an exponential one over ~TAU frames = 2.3 s); other frames keep it.
NORM_TAU = 200.0
NORM_SPEECH_GATE = -9.0
NORM_PRIOR_FRAMES = 10.0


def speaker_means(x, prior):
    """x [T,80] one stream of frames -> m [T,80], the running mean after each frame."""
    speech = x.mean(1) > NORM_SPEECH_GATE
    m = np.empty(x.shape, dtype=np.float64)
    cur, n = prior.astype(np.float64).copy(), 0
    for t in range(len(x)):
        if speech[t]:
            n += 1
            cur += max(1.0 / (n + NORM_PRIOR_FRAMES), 1.0 / NORM_TAU) * (x[t] - cur)
        m[t] = cur
    return m


def speaker_normalise(mel, starts, prior, streams=None):
    """Utterances concatenated [T,80] -> (normalised [T,80], left pad [U,80], right pad [U,80]).
    Each utterance starts from `prior`, unless `streams` (one id per utterance) groups
    utterances into one recording each (in order), whose running mean carries on."""
    T = len(mel)
    bounds = np.append(starts, T)
    out = np.empty((T, N_MELS), np.float32)
    padl = np.empty((len(starts), N_MELS), np.float32)
    padr = np.empty((len(starts), N_MELS), np.float32)
    carried = {}
    for u in range(len(starts)):
        stream = u if streams is None else streams[u]
        x = mel[bounds[u] : bounds[u + 1]].astype(np.float64)
        m = speaker_means(x, carried.get(stream, prior))
        carried[stream] = m[-1]
        out[bounds[u] : bounds[u + 1]] = x - m
        padl[u], padr[u] = PAD_VALUE - m[0], PAD_VALUE - m[-1]
    return out, padl, padr


def stack(mel, starts, L=L_CTX, R=R_CTX, idx=None, padl=None, padr=None):
    """[T,80] utterances concatenated -> [T or len(idx), 80*(L+1+R)] with silence padding
    at utterance edges (per utterance `padl` / `padr` [U,80] if given)."""
    T = len(mel)
    bounds = np.append(starts, T)
    utt = np.repeat(np.arange(len(starts)), np.diff(bounds))
    if idx is None:
        idx = np.arange(T)
    out = np.empty((len(idx), (L + 1 + R) * N_MELS), dtype=np.float32)
    lo, hi = bounds[utt[idx]], bounds[utt[idx] + 1]
    for j, off in enumerate(range(-L, R + 1)):
        src = idx + off
        ok = (src >= lo) & (src < hi)
        if padl is None:
            block = np.full((len(idx), N_MELS), PAD_VALUE, dtype=np.float32)
        else:
            block = np.where((src < lo)[:, None], padl[utt[idx]], padr[utt[idx]]).astype(np.float32)
        block[ok] = mel[src[ok]]
        out[:, j * N_MELS : (j + 1) * N_MELS] = block
    return out


def load(path):
    d = np.load(path)
    return {k: d[k] for k in d.files}


def export_onnx(clf, mean, std, path, n_in, phones):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [
        numpy_helper.from_array(np.tile(mean, n_in // N_MELS).astype(np.float32)[None, :], "norm_mean"),
        numpy_helper.from_array((1.0 / np.tile(std, n_in // N_MELS)).astype(np.float32)[None, :], "norm_inv_std"),
    ]
    nodes = [
        helper.make_node("Sub", ["mel_context", "norm_mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "norm_inv_std"], ["h0"]),
    ]
    n_layers = len(clf.coefs_)
    for i, (W, b) in enumerate(zip(clf.coefs_, clf.intercepts_)):
        inits += [numpy_helper.from_array(W.astype(np.float32), f"W{i + 1}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i + 1}")]
        out = f"z{i + 1}" if i < n_layers - 1 else "logits"
        nodes.append(helper.make_node("Gemm", [f"h{i}", f"W{i + 1}", f"b{i + 1}"], [out]))
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i + 1}"]))
    nodes.append(helper.make_node("LogSoftmax", ["logits"], ["phone_logp"], axis=1))
    graph = helper.make_graph(
        nodes, "content_phones",
        [helper.make_tensor_value_info("mel_context", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("phone_logp", TensorProto.FLOAT, ["batch", len(phones)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="manifold-train-content")
    model.ir_version = 8
    model.doc_string = "Manifold content model: phone log-posteriors from stacked HiFi-GAN log-mel frames. Phones: " + " ".join(phones)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def onnx_mlp(path):
    """Loads a content_phones.onnx (Sub, Mul, Gemm/Relu..., LogSoftmax) as numpy
    weights -> f(context [N, 800]) -> log posteriors [N, P]."""
    import onnx
    from onnx import numpy_helper

    w = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in onnx.load(path).graph.initializer}

    def run(x):
        return np.concatenate([mlp_log_posteriors(w, x[k : k + 65536]) for k in range(0, len(x), 65536)])

    return run


def mlp_log_posteriors(w, x):
    """The exported graph in numpy: w = its initializers (norm_mean,
    norm_inv_std, W1, b1, ...), x = stacked contexts [N, 800] -> log
    posteriors [N, P]."""
    h = (x - w["norm_mean"]) * w["norm_inv_std"]
    i = 1
    while f"W{i}" in w:
        h = h @ w[f"W{i}"] + w[f"b{i}"]
        if f"W{i + 1}" in w:
            h = np.maximum(h, 0)
        i += 1
    h = h - h.max(1, keepdims=True)
    return h - np.log(np.exp(h).sum(1, keepdims=True))


def accuracy(pred, lab):
    return float(np.mean(pred == lab)) if len(lab) else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--minutes", type=float, default=16.0, help="training wall-time budget")
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-weight", type=int, default=1, help="times real_train.npz is repeated in the training set")
    ap.add_argument("--no-real", action="store_true", help="ignore real_train.npz (synthetic only, as before)")
    ap.add_argument("--compare", default=None, help="directory of an existing content_phones.onnx/.json to score on the same data")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", default=None, help="start from the weights of this directory's content_phones.onnx (same data dir, same hidden sizes)")
    ap.add_argument("--start-epoch", type=int, default=0, help="epochs already run (with --init): continues the learning-rate schedule")
    a = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(a.threads)
    from sklearn.neural_network import MLPClassifier

    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    summary = json.load(open(os.path.join(a.data, "summary.json")))
    phones = summary["phones"]
    P = len(phones)
    tr, va, ev = (load(os.path.join(a.data, f"{s}.npz")) for s in ("train", "val", "eval"))
    real_summary = None
    rtr_path, rev_path = os.path.join(a.data, "real_train.npz"), os.path.join(a.data, "real_eval.npz")
    re_ = load(rev_path) if os.path.isfile(rev_path) else None
    if os.path.isfile(rtr_path) and not a.no_real and a.real_weight > 0:
        rtr = load(rtr_path)
        real_summary = json.load(open(os.path.join(a.data, "real_summary.json")))
        parts = [tr] + [rtr] * a.real_weight
        offs = np.cumsum([0] + [len(p["label"]) for p in parts])[:-1]
        tr = {k: np.concatenate([p[k] + o for p, o in zip(parts, offs)]) if k == "utt_start" else np.concatenate([p[k] for p in parts])
              for k in tr}
        print(f"real speech: {len(rtr['label'])} frames x {a.real_weight} mixed into training", flush=True)
        del rtr, parts
    mel_tr = tr["mel"].astype(np.float32)
    prior = mel_tr[mel_tr.mean(1) > NORM_SPEECH_GATE].mean(0).astype(np.float64)
    del mel_tr
    normed = {k: speaker_normalise(d["mel"], d["utt_start"], prior) for k, d in (("train", tr), ("val", va), ("eval", ev))}
    # The evaluation voices as Manifold meets them: each voice's utterances
    # one after the other, its running mean carried on.
    normed["eval_carried"] = speaker_normalise(ev["mel"], ev["utt_start"], prior, streams=ev["utt_voice"])
    if re_ is not None:
        normed["real_eval"] = speaker_normalise(re_["mel"], re_["utt_start"], prior)
        normed["real_eval_carried"] = speaker_normalise(re_["mel"], re_["utt_start"], prior, streams=re_["utt_voice"])
    mean = normed["train"][0].mean(0).astype(np.float64)
    std = normed["train"][0].std(0).astype(np.float64) + 1e-3
    n_in = N_MELS * (L_CTX + 1 + R_CTX)
    tile_m, tile_s = np.tile(mean, L_CTX + 1 + R_CTX).astype(np.float32), np.tile(std, L_CTX + 1 + R_CTX).astype(np.float32)

    def features(name, d):
        mel, padl, padr = normed[name]
        x = stack(mel, d["utt_start"], padl=padl, padr=padr)
        x -= tile_m
        x /= tile_s
        return x

    Xtr, ytr = features("train", tr), tr["label"].astype(np.int64)
    Xva, yva = features("val", va), va["label"].astype(np.int64)
    Xev, yev = features("eval", ev), ev["label"].astype(np.int64)
    Xec = features("eval_carried", ev)
    if re_ is not None:
        Xre, yre = features("real_eval", re_), re_["label"].astype(np.int64)
        Xrc = features("real_eval_carried", re_)
    print(f"train {Xtr.shape} val {Xva.shape} eval {Xev.shape}  ({time.time() - t0:.0f}s)", flush=True)

    compare = None
    if a.compare:
        # the old model with its own speaker prior on the same utterances
        old_info = json.load(open(os.path.join(a.compare, "content_phones.json")))
        old_prior = np.array(old_info["speaker_normalisation"]["prior_mean"], dtype=np.float64)
        old = onnx_mlp(os.path.join(a.compare, "content_phones.onnx"))
        sets = [("validation", va), ("evaluation", ev)] + ([("real_eval", re_)] if re_ is not None else [])
        compare = {"model": a.compare}
        for name, d in sets:
            n, pl, pr = speaker_normalise(d["mel"], d["utt_start"], old_prior)
            pred = old(stack(n, d["utt_start"], padl=pl, padr=pr)).argmax(1)
            y = d["label"].astype(np.int64)
            bounds = np.append(d["utt_start"], len(y))
            res = {"all": round(accuracy(pred, y), 4)}
            for key in ("utt_engine", "utt_voice"):
                g = np.repeat(d[key], np.diff(bounds))
                res["by_" + key[4:]] = {str(v): round(accuracy(pred[g == v], y[g == v]), 4) for v in np.unique(g)}
            compare[name] = res
        print("old model:", json.dumps({k: (v["all"] if isinstance(v, dict) else v) for k, v in compare.items()}), flush=True)

    clf = MLPClassifier(hidden_layer_sizes=(a.hidden, a.hidden), activation="relu", solver="adam", alpha=1e-4,
                        batch_size=512, learning_rate_init=1e-3, random_state=a.seed, shuffle=True)
    classes = np.arange(P)
    best = (-1.0, None, 0)
    history = []
    t_train = time.time()
    epoch_s = 0.0
    if a.init:
        # initialise the network and Adam, then put the saved weights in
        clf.partial_fit(Xtr[:512], ytr[:512], classes=classes)
        import onnx
        from onnx import numpy_helper

        w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in onnx.load(os.path.join(a.init, "content_phones.onnx")).graph.initializer}
        if not np.allclose(w["norm_mean"][0], np.tile(mean, L_CTX + 1 + R_CTX), atol=1e-4):
            raise SystemExit("--init model was trained on other data (normalisation differs)")
        clf.coefs_ = [w[f"W{i + 1}"].copy() for i in range(len(clf.coefs_))]
        clf.intercepts_ = [w[f"b{i + 1}"].copy() for i in range(len(clf.intercepts_))]
        history = json.load(open(os.path.join(a.init, "content_phones.json")))["network"]["history"][: a.start_epoch]
        best = (history[-1]["val_acc"], ([c.copy() for c in clf.coefs_], [b.copy() for b in clf.intercepts_]), a.start_epoch) if history else best
    for epoch in range(a.start_epoch, a.max_epochs):
        te = time.time()
        lr = 1e-3 * (0.7 ** max(0, epoch - 2))
        if epoch > 0 or a.init:
            clf._optimizer.learning_rate_init = lr
        clf.partial_fit(Xtr, ytr, classes=classes)
        acc_va = accuracy(clf.predict(Xva), yva)
        acc_ev = accuracy(clf.predict(Xev), yev)
        acc_ec = accuracy(clf.predict(Xec), yev)
        acc_re = accuracy(clf.predict(Xre), yre) if re_ is not None else None
        epoch_s = time.time() - te
        history.append({"epoch": epoch + 1, "lr": lr, "loss": float(clf.loss_), "val_acc": acc_va, "eval_acc": acc_ev, "eval_carried_acc": acc_ec,
                        "real_eval_acc": acc_re, "s": round(epoch_s, 1)})
        print(history[-1], flush=True)
        if acc_va > best[0]:
            best = (acc_va, ([w.copy() for w in clf.coefs_], [b.copy() for b in clf.intercepts_]), epoch + 1)
        if time.time() - t_train + epoch_s > a.minutes * 60:
            break
    clf.coefs_, clf.intercepts_ = best[1]
    train_s = time.time() - t_train

    # ---- report
    def per_group(d, X, y, key):
        pred = clf.predict(X)
        bounds = np.append(d["utt_start"], len(y))
        frame_group = np.repeat(d[key], np.diff(bounds))
        return {str(g): round(accuracy(pred[frame_group == g], y[frame_group == g]), 4) for g in np.unique(frame_group)}, pred

    va_eng, pva = per_group(va, Xva, yva, "utt_engine")
    ev_voice, pev = per_group(ev, Xev, yev, "utt_voice")
    ev_eng, _ = per_group(ev, Xev, yev, "utt_engine")
    ec_voice, pec = per_group(ev, Xec, yev, "utt_voice")
    ec_eng, _ = per_group(ev, Xec, yev, "utt_engine")
    real_acc = {}
    if re_ is not None:
        re_voice, pre = per_group(re_, Xre, yre, "utt_voice")
        _, prc = per_group(re_, Xrc, yre, "utt_voice")
        real_acc = {"real_eval": round(accuracy(pre, yre), 4), "real_eval_by_voice": re_voice, "real_eval_carried": round(accuracy(prc, yre), 4)}
    sub = np.random.default_rng(0).choice(len(Xtr), size=min(200_000, len(Xtr)), replace=False)
    acc_tr = accuracy(clf.predict(Xtr[sub]), ytr[sub])
    conf = np.zeros((P, P), dtype=np.int64)
    np.add.at(conf, (yev, pev), 1)
    pairs = [(int(conf[i, j]), phones[i], phones[j]) for i in range(P) for j in range(P) if i != j]
    pairs.sort(reverse=True)
    per_phone = {phones[i]: round(float(conf[i, i] / max(1, conf[i].sum())), 3) for i in range(P)}
    confusions = [{"true": t, "pred": p, "frames": n, "share_of_true": round(n / max(1, conf[phones.index(t)].sum()), 3)} for n, t, p in pairs[:15]]

    # ---- export + verify
    onnx_path = os.path.join(a.out, "content_phones.onnx")
    raw_ev = Xev * tile_s + tile_m  # un-normalised context = what the graph takes
    export_onnx(clf, mean, std, onnx_path, n_in, phones)
    ref = clf.predict_log_proba(Xev)
    max_diff = None
    try:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        got = sess.run(["phone_logp"], {"mel_context": raw_ev.astype(np.float32)})[0]
        fin = np.isfinite(ref)
        max_diff = float(np.max(np.abs(got[fin] - ref[fin])))
        argmax_agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
        print(f"onnx vs sklearn predict_log_proba: max |diff| {max_diff:.3g}, argmax agreement {argmax_agree:.5f}")
    except ImportError:
        # no onnxruntime: run the exported graph with onnx's reference evaluator
        from onnx.reference import ReferenceEvaluator

        sess = ReferenceEvaluator(onnx_path)
        got = np.concatenate([sess.run(["phone_logp"], {"mel_context": raw_ev[k : k + 4096].astype(np.float32)})[0]
                              for k in range(0, len(raw_ev), 4096)])
        fin = np.isfinite(ref)
        max_diff = float(np.max(np.abs(got[fin] - ref[fin])))
        argmax_agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
        print(f"onnx (reference evaluator) vs sklearn predict_log_proba: max |diff| {max_diff:.3g}, argmax agreement {argmax_agree:.5f}")

    info = {
        "model": "content_phones",
        "description": "Frame-wise phone log-posteriors (PPG) from HiFi-GAN log-mel frames; Manifold Voice content features.",
        "phones": phones,
        "silence": "sil",
        "context": {"left": L_CTX, "right": R_CTX, "frames": L_CTX + 1 + R_CTX, "lookahead_hops": R_CTX,
                    "edge_pad_value": PAD_VALUE,
                    "edge_padding": "frames before the first / after the last are ln(1e-5) in every band (digital silence), speaker-normalised like the others"},
        "input": {"name": "mel_context", "shape": ["batch", n_in], "dtype": "float32",
                  "layout": "frame-major: element [b, 80*j + m] is log-mel band m of frame t-L+j, j = 0..L+R"},
        "output": {"name": "phone_logp", "shape": ["batch", P], "dtype": "float32", "meaning": "natural-log posteriors over phones"},
        "normalisation": "inside the graph: (x - mean[band]) * inv_std[band], fixed global statistics of the speaker-normalised training frames",
        "speaker_normalisation": {
            "description": "before the graph, by the caller: every frame (edge padding included) minus the running mean m after that frame; "
                           "a frame is speech when its mean log-mel > speech_gate; on the n-th speech frame of a stream "
                           "m += max(1/(n + prior_frames), 1/tau_frames) * (x - m); m starts at prior_mean; other frames keep m; "
                           "left / right padding use m after the first / last frame",
            "prior_mean": [round(float(v), 6) for v in prior], "speech_gate": NORM_SPEECH_GATE,
            "prior_frames": NORM_PRIOR_FRAMES, "tau_frames": NORM_TAU},
        "features": {"sample_rate": 22050, "channels": 1, "n_fft": 1024, "win_length": 1024, "window": "periodic Hann",
                     "hop": 256, "padding": "reflect, 384 samples both sides, no centering (frame t = padded samples [256t, 256t+1024))",
                     "magnitude": "sqrt(re^2 + im^2 + 1e-9)", "n_mels": 80, "mel": "Slaney (librosa htk=False, norm='slaney')",
                     "fmin": 0, "fmax": 8000, "log": "ln(max(x, 1e-5))",
                     "label_alignment": "frame t labelled with the phone at original sample 256t + 128 (window centre)"},
        "network": {"type": "MLP", "hidden": [a.hidden, a.hidden], "activation": "relu",
                    "trainer": "scikit-learn MLPClassifier (adam, batch 512, alpha 1e-4), partial_fit epochs with lr decay 0.7/epoch after 3, best epoch on validation voices",
                    "epochs_run": len(history), "best_epoch": best[2], "history": history},
        "data": {k: summary[k] for k in ("train", "val", "eval", "espeak_val_voices", "eval_voices", "festival_train_voices") if k in summary}
                | {"espeak_train_voice_count": len(summary.get("espeak_train_voices", [])),
                   "generator": "xtask/py/make_phone_set.py", "generation_seconds": summary.get("seconds")}
                | ({"real_speech": {"generator": "xtask/py/make_real_phone_set.py", "weight": a.real_weight,
                                    "languages": {k: {kk: vv for kk, vv in v.items() if kk != "failure_examples"} for k, v in real_summary["languages"].items()},
                                    "real_train": real_summary.get("real_train"), "real_eval": real_summary.get("real_eval"),
                                    "aug_copies": real_summary.get("aug_copies"), "generation_seconds": real_summary.get("seconds")}}
                   if real_summary else {}),
        "accuracy": {
            "train_frames_subset": round(acc_tr, 4),
            "validation_voices": round(accuracy(pva, yva), 4),
            "validation_by_engine": va_eng,
            "evaluation_voices": round(accuracy(pev, yev), 4),
            "evaluation_by_engine": ev_eng,
            "evaluation_by_voice": ev_voice,
            "evaluation_per_phone": per_phone,
            "evaluation_top_confusions": confusions,
            "evaluation_voices_carried": round(accuracy(pec, yev), 4),
            "evaluation_carried_by_engine": ec_eng,
            "evaluation_carried_by_voice": ec_voice,
        } | real_acc,
        "previous_model_same_data": compare,
        "onnx_vs_sklearn_max_abs_diff": max_diff,
        "onnx_vs_sklearn_argmax_agreement": argmax_agree,
        "training_seconds": round(train_s, 1),
        "total_seconds": round(time.time() - t0, 1),
        "licence": ("trained by project code on project-generated data and on the Asterisk core sound prompts "
                    "(asterisk-core-sounds-{en,es,fr}: CC-BY-SA-3.0, Allison Smith / June Wallack; -{it,ru}: CC-BY-3.0, Carlo Flora / Maxim Topal); "
                    "see models/content/README.md") if real_summary else "Manifold project's own (trained by project code on project-generated data)",
    }
    with open(os.path.join(a.out, "content_phones.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info["accuracy"] | {"onnx_bytes": os.path.getsize(onnx_path)}, indent=1)[:3000])
    print(f"total {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
