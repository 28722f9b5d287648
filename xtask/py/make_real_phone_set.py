"""Phone-labelled frames of REAL recorded speech for Manifold's content model.

Source: the Asterisk core sound prompts installed by Debian's
asterisk-core-sounds-{en,es,fr,it,ru}-g722 packages (G.722, 16 kHz), five
professional speakers:
  en  en_US_f_Allison     (female, US English)
  es  es_MX_f_Allison     (the same speaker, Mexican Spanish)
  fr  fr_CA_f_June        (female, Canadian French)
  it  it_IT_m_Carlo       (male, Italian)
  ru  ru_RU_f_IvrvoiceRU  (female, Russian)
Transcripts: /usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt.gz
("name: text" per line). Debian ships es and fr transcripts only in the
asterisk-core-sounds-es / -fr packages; when those are not installed they are
fetched with `apt-get download` and unpacked under OUT_DIR/_docs.
Never used: the asterisk-prompt-* packages (sounds/es = es-co, sounds/fr =
armelle, it_IT_f_Menardi) -- those speakers are evaluation-only elsewhere.

Labels (same PHONES set as make_phone_set.py):
  en  forced alignment of the transcript with pocketsphinx 5 (its US English
      acoustic model and dictionary; CMU ARPAbet = PHONES). Used here only to
      make training labels. Prompts whose base name sorts before "m" are
      training data, the others (from "m" on) evaluation only (real_eval).
  es fr it ru  no pocketsphinx model: the transcript is synthesised with
      eSpeak NG in that language (phoneme events give the synthetic phone
      boundaries, mapped to PHONES by FOREIGN_MAP / ESPEAK_MAP), both log-mels
      are normalised per utterance and DCT'd (cepstra 1..CEPS), and a banded DTW
      in which every real frame takes one synthetic frame (the synthetic
      index advances 0..3 per real frame) carries the labels over. The DTW
      cost mixes the cepstral distance (share 1 - w) with -log P(real frame
      has the synthetic frame's phone) under the content model in
      --ppg-model (default: the committed models/content; share w =
      --ppg-weight 0.8): cepstra alone agreed with pocketsphinx on only 45 %
      of English frames, with the posteriors 68 %.
      Utterances whose mean path cost is an outlier for their language are
      dropped. The method is checked on English against pocketsphinx
      (frame agreement, in summary.json).
Features are make_phone_set's HiFi-GAN log-mel at 22050 Hz (the 16 kHz audio is
resampled). Training utterances are written once clean plus --aug-copies
augmented copies (formant / pitch shifts reaching male ranges, since four of
the five speakers are female; speed; 4 kHz band limit as for 8 kHz telephone
speech; EQ tilt; gain; noise). real_eval is clean.

usage: python make_real_phone_set.py OUT_DIR [--jobs 2] [--aug-copies 1] [--limit N]
                                         [--ppg-model DIR] [--ppg-weight 0.8]
Writes OUT_DIR/real_train.npz, OUT_DIR/real_eval.npz (mel float16 [T,80],
label uint8 [T], utt_start int64, utt_voice, utt_engine="real", utt_text)
and OUT_DIR/real_summary.json. Deterministic: every utterance has its own
seed (from its language and file name), whatever --jobs is.
"""
import argparse
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import time
import zlib

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.fft import dct
from scipy.signal import resample_poly

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_phone_set as M  # noqa: E402

SR = M.SR
HOP = M.HOP
SOUNDS = "/usr/share/asterisk/sounds"
# lang -> (sound dir, speaker id, eSpeak voice)
LANGS = {
    "en": ("en_US_f_Allison", "asterisk:en_US_f_Allison", "en-us"),
    "es": ("es_MX_f_Allison", "asterisk:es_MX_f_Allison", "es-419"),
    "fr": ("fr_CA_f_June", "asterisk:fr_CA_f_June", "fr"),
    "it": ("it_IT_m_Carlo", "asterisk:it_IT_m_Carlo", "it"),
    "ru": ("ru_RU_f_IvrvoiceRU", "asterisk:ru_RU_f_IvrvoiceRU", "ru"),
}
MALE = {"it"}
FORBIDDEN = ("Menardi", "/es/", "/fr/", "es-co", "armelle")
EVAL_FROM = "m"  # English prompts whose base name sorts from "m" on are evaluation only

# eSpeak NG phoneme mnemonics of es / fr / it / ru (after stripping stress,
# palatalisation ';' and the modifiers - # ~ " ^ _) -> PHONES, approximated by
# sound; whatever is not here goes through make_phone_set.ESPEAK_MAP.
FOREIGN_MAP = {
    "a": "aa", "A": "aa", "e": "ey", "E": "eh", "i": "iy", "I": "ih", "o": "ow", "O": "ao",
    "u": "uw", "U": "uh", "V": "ah", "@": "ah", "y": "uw", "Y": "uh", "W": "ah", "8": "ow",
    "ja": "aa", "ju": "uw", "aa": "aa",
    "B": "v", "D": "dh", "Q": "g", "x": "hh", "*": "r", "**": "r", "R": "r", "R2": "r",
    "J": "n", "n": "n", "l": "l", "ts": "s", "dz": "z", "ss": "s", "z2": "z", "w2": "w",
    "tS": "ch", "dZ": "jh", "S": "sh", "Z": "zh", "t2": "t", "N": "ng", ";": "y", "j": "y",
}
RU_MAP = {"y": "ih", "o": "ao", "e": "eh"}  # Russian y is [ɨ]; stressed o, e are open
SKIP_EVENT = re.compile(r"^\(\w+\)$")  # language-switch markers such as "(en)"
FOREIGN_FALLBACKS = {}


def map_foreign(ph, lang):
    p = ph.lstrip("',%=")
    if p.startswith("_") or p in ("||", "|"):
        return "sil"
    if lang == "ru" and p in RU_MAP:
        return RU_MAP[p]
    for cand in (p, p.rstrip(";") or p, re.sub(r"[-#~\"^_;:]+$", "", p) or p):
        if cand in FOREIGN_MAP:
            return FOREIGN_MAP[cand]
        if cand in M.ESPEAK_MAP:
            return M.ESPEAK_MAP[cand]
    for k in range(len(p) - 1, 0, -1):
        for table in (FOREIGN_MAP, M.ESPEAK_MAP):
            if p[:k] in table:
                FOREIGN_FALLBACKS[f"{lang}:{ph}"] = FOREIGN_FALLBACKS.get(f"{lang}:{ph}", 0) + 1
                return table[p[:k]]
    FOREIGN_FALLBACKS[f"{lang}:{ph}"] = FOREIGN_FALLBACKS.get(f"{lang}:{ph}", 0) + 1
    return "ah"


def speak_lang(text, lang):
    """eSpeak NG at default settings -> (wave 22050, segs over PHONES)."""
    voice = LANGS[lang][2]
    if lang == "en":
        return M.speak_espeak(text, voice, 175, 50, 50)
    lib = M._espeak()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"unknown eSpeak voice {voice}")
    lib.espeak_SetParameter(1, 175, 0)
    lib.espeak_SetParameter(3, 50, 0)
    lib.espeak_SetParameter(4, 50, 0)
    M._chunks.clear()
    M._events.clear()
    data = text.encode() + b"\0"
    lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    x = np.concatenate(M._chunks).astype(np.float64) / 32768.0
    segs = [(0, "sil")] + [(s, map_foreign(p, lang)) for s, p in M._events if not SKIP_EVENT.match(p)]
    return x, segs


# ---------------------------------------------------------------- sources


def transcript_path(lang, out_dir):
    name = f"asterisk-core-sounds-{lang}"
    rel = f"usr/share/doc/{name}/core-sounds-{lang}.txt.gz"
    for p in (os.path.join("/", rel), os.path.join(out_dir, "_docs", "x", rel)):
        if os.path.isfile(p):
            return p
    d = os.path.join(out_dir, "_docs")
    os.makedirs(d, exist_ok=True)
    subprocess.run(["apt-get", "download", name], cwd=d, check=True, capture_output=True)
    for deb in glob.glob(os.path.join(d, f"{name}_*.deb")):
        subprocess.run(["dpkg", "-x", deb, os.path.join(d, "x")], check=True)
    p = os.path.join(d, "x", rel)
    if not os.path.isfile(p):
        raise FileNotFoundError(p)
    return p


def read_transcripts(path):
    out = {}
    for line in gzip.open(path, "rt", encoding="utf-8-sig", errors="replace"):
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        text = text.strip()
        if not text or "[" in text:  # tones, beeps, silence
            continue
        out[name.strip()] = text
    return out


def list_utterances(lang, out_dir):
    sdir = os.path.join(SOUNDS, LANGS[lang][0])
    texts = read_transcripts(transcript_path(lang, out_dir))
    utts, missing = [], 0
    for name in sorted(texts):
        path = os.path.join(sdir, name + ".g722")
        if any(f in path for f in FORBIDDEN):
            raise RuntimeError(f"evaluation-only speaker: {path}")
        if not os.path.isfile(path):
            missing += 1
            continue
        utts.append((lang, name, path, texts[name]))
    return utts, missing


def decode_16k(path):
    raw = subprocess.run(["ffmpeg", "-v", "error", "-f", "g722", "-i", path, "-ar", "16000", "-ac", "1", "-f", "s16le", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float64) / 32768.0


def to_22k(x16):
    return resample_poly(x16, 441, 320)


# ---------------------------------------------------------------- pocketsphinx (English labels only)

_PS = None
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _num_words(n):
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _num_words(n % 100))
    return " ".join(ONES[int(d)] for d in str(n))


def ps_words(text):
    t = text.lower().replace("&", " and ").replace("-", " ").replace("/", " ").replace("#", " pound ")
    t = re.sub(r"\d+", lambda m: " " + _num_words(int(m.group())) + " ", t)
    return [w.strip("'") for w in re.findall(r"[a-z']+", t) if w.strip("'")]


def ps_align(x16, text):
    """-> segs [(start sample at 22050, phone)] or raises."""
    global _PS
    from pocketsphinx import Decoder

    if _PS is None:
        _PS = Decoder(lm=None, loglevel="FATAL")
    words = ps_words(text)
    oov = [w for w in words if _PS.lookup_word(w) is None]
    if not words or oov:
        raise ValueError(f"oov {oov}")
    raw = (np.clip(x16, -1, 1) * 32767).astype(np.int16).tobytes()
    _PS.set_align_text(" ".join(words))
    _PS.start_utt()
    _PS.process_raw(raw, full_utt=True)
    _PS.end_utt()
    if _PS.hyp() is None:
        raise ValueError("no word alignment")
    _PS.set_alignment()
    _PS.start_utt()
    _PS.process_raw(raw, full_utt=True)
    _PS.end_utt()
    al = _PS.get_alignment()
    phones = list(al.phones()) if al is not None else []
    if not phones:
        raise ValueError("no phone alignment")
    frate = 100.0
    segs = [(0, "sil")]
    for p in phones:
        name = p.name.lower()
        ph = "sil" if name in ("sil", "+nsn+", "+spn+") or name.startswith("+") else name
        if ph not in M.PHONE_ID:
            raise ValueError(f"unknown phone {p.name}")
        segs.append((int(round(p.start / frate * SR)), ph))
    end = phones[-1].start + phones[-1].duration
    segs.append((int(round(end / frate * SR)), "sil"))
    # a segment list must be sorted; drop zero-length duplicates
    segs.sort(key=lambda s: s[0])
    return segs


# ---------------------------------------------------------------- DTW label transfer

CEPS = 24
MAX_STEP = 3


def dtw_features(mel):
    z = (mel - mel.mean(0)) / (mel.std(0) + 1e-3)
    c = dct(z, type=2, norm="ortho", axis=1)[:, 1 : CEPS + 1]
    return c


_PPG = None


def ppg_logp(mel):
    """log phone posteriors of the committed content model (models/content, run in
    numpy) for one utterance's log-mel [T,80] -> [T,P] (an acoustic distance for
    the DTW that is far less speaker-dependent than cepstra)."""
    global _PPG
    import train_content as TC

    if _PPG is None:
        import onnx
        from onnx import numpy_helper

        root = PPG_MODEL
        g = onnx.load(os.path.join(root, "content_phones.onnx")).graph
        w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in g.initializer}
        info = json.load(open(os.path.join(root, "content_phones.json")))
        _PPG = (w, np.array(info["speaker_normalisation"]["prior_mean"]))
    w, prior = _PPG
    normed, pl, pr = TC.speaker_normalise(mel, np.array([0]), prior)
    return TC.mlp_log_posteriors(w, TC.stack(normed, np.array([0]), padl=pl, padr=pr).astype(np.float64))


PPG_WEIGHT = 0.8
PPG_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "content")


def dtw_labels(mel_real, mel_syn, lab_syn, band=0.25):
    """Each real frame j takes one synthetic frame i(j), i non-decreasing with steps
    0..MAX_STEP, i(0) = 0, i(-1) = last, |i/Ts - j/Tr| <= band.
    -> (labels for the real frames, mean path cost per frame)."""
    a, b = dtw_features(mel_real), dtw_features(mel_syn)
    Tr, Ts = len(a), len(b)
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    C = np.sqrt(np.maximum(d2, 0)) / np.sqrt(CEPS)
    if PPG_WEIGHT > 0:
        lp = ppg_logp(mel_real)  # -log P(real frame j is the synthetic frame i's phone)
        C = (1 - PPG_WEIGHT) * C + PPG_WEIGHT * np.minimum(-lp[:, lab_syn], 12.0) / 4.0
    jj = np.arange(Tr)[:, None] / max(1, Tr - 1)
    ii = np.arange(Ts)[None, :] / max(1, Ts - 1)
    C[np.abs(jj - ii) > band] = np.inf
    D = np.full(Ts, np.inf)
    D[0] = C[0, 0]
    back = np.zeros((Tr, Ts), dtype=np.int8)
    for j in range(1, Tr):
        best = D.copy()
        arg = np.zeros(Ts, dtype=np.int8)
        for s in range(1, MAX_STEP + 1):
            cand = np.full(Ts, np.inf)
            cand[s:] = D[:-s]
            better = cand < best
            best[better] = cand[better]
            arg[better] = s
        D = C[j] + best
        back[j] = arg
    if not np.isfinite(D[-1]):
        raise ValueError("no DTW path in band")
    path = np.empty(Tr, dtype=np.int64)
    i = Ts - 1
    for j in range(Tr - 1, -1, -1):
        path[j] = i
        i -= int(back[j, i])
    return lab_syn[path], float(D[-1] / Tr)


def segs_from_frames(lab):
    """frame labels -> segs whose frame_labels() give the same labels back."""
    segs = [(0, M.PHONES[lab[0]])]
    for t in range(1, len(lab)):
        if lab[t] != lab[t - 1]:
            segs.append((HOP * t, M.PHONES[lab[t]]))
    return segs


# ---------------------------------------------------------------- augmentation


def augment_real(x, segs, rng, male):
    """Real 16 kHz-band speech -> augmented (log-mel, labels). Speed s moves pitch and
    formants by s; the filterbank warp w = s / phi then puts the formants at phi times
    the original: phi < 1 and s down to 0.7 make a female speaker male-like (lower
    pitch, longer tract), phi > 1 the male speaker female-like."""
    lead = np.zeros(int(rng.uniform(0.02, 0.25) * SR))
    tail = np.zeros(int(rng.uniform(0.05, 0.25) * SR))
    x = np.concatenate([lead, x, tail])
    segs = [(0, "sil")] + [(s + len(lead), p) for s, p in segs] + [(len(x) - len(tail), "sil")]
    if male:
        s, phi = rng.uniform(0.9, 1.35), rng.uniform(0.95, 1.2)
    elif rng.random() < 0.6:  # towards male
        s, phi = rng.uniform(0.7, 1.0), rng.uniform(0.8, 0.98)
    else:
        s, phi = rng.uniform(0.9, 1.12), rng.uniform(0.92, 1.1)
    up = 200
    down = int(round(up * s))
    x = resample_poly(x, up, down)  # played s times faster: frequencies x s, duration / s
    scale = up / down
    fb = M.mel_filterbank(float(np.clip(s / phi, 0.65, 1.5)))
    f = np.linspace(0, SR / 2, 1 + M.N_FFT // 2)
    eq = (np.maximum(f, 100.0) / 1000.0) ** rng.uniform(-0.6, 0.6)
    r = rng.random()
    if r < 0.4:  # 8 kHz telephone speech
        eq = eq / np.sqrt(1 + (f / rng.uniform(3400, 4000)) ** 12) / np.sqrt(1 + (rng.uniform(150, 300) / np.maximum(f, 1.0)) ** 4)
    elif r < 0.6:
        eq = eq / np.sqrt(1 + (f / rng.uniform(4000, 7000)) ** 8)
    x = x * rng.uniform(0.03, 0.95) / (np.max(np.abs(x)) + 1e-9)
    if rng.random() < 0.6:
        x = M.add_noise(x, rng, rng.uniform(12, 45))
    mel = M.log_mel(x, fb, eq)
    return mel.astype(np.float32), M.frame_labels(segs, len(mel), scale)


def clean_features(x, segs, rng):
    x = x * rng.uniform(0.2, 0.9) / (np.max(np.abs(x)) + 1e-9)
    mel = M.log_mel(x)
    return mel.astype(np.float32), M.frame_labels(segs, len(mel))


# ---------------------------------------------------------------- jobs


def utt_seed(lang, name):
    return zlib.crc32(f"{lang}/{name}".encode())


def is_eval(lang, name):
    return lang == "en" and os.path.basename(name).lower() >= EVAL_FROM


def job(args):
    """-> dict with status, labels, features."""
    lang, name, path, text, n_aug, validate = args
    rng = np.random.default_rng(utt_seed(lang, name))
    res = {"lang": lang, "name": name, "text": text, "eval": is_eval(lang, name)}
    try:
        x16 = decode_16k(path)
        x = to_22k(x16)
        mel_real = M.log_mel(x)
        if lang == "en":
            segs = ps_align(x16, text)
            res["cost"] = None
            if validate:
                xs, ss = speak_lang(text, lang)
                ms = M.log_mel(xs)
                lab_dtw, cost = dtw_labels(mel_real, ms, M.frame_labels(ss, len(ms)))
                lab_ps = M.frame_labels(segs, len(mel_real))
                res["dtw_agree"] = (int(np.sum(lab_dtw == lab_ps)), len(lab_ps), cost)
        else:
            xs, ss = speak_lang(text, lang)
            ms = M.log_mel(xs)
            lab, cost = dtw_labels(mel_real, ms, M.frame_labels(ss, len(ms)))
            segs = segs_from_frames(lab)
            res["cost"] = cost
    except Exception as e:  # noqa: BLE001 -- counted and reported
        res["error"] = f"{type(e).__name__}: {e}"[:200]
        return res
    items = [clean_features(x, segs, rng)]
    if not res["eval"]:
        items += [augment_real(x, segs, rng, lang in MALE) for _ in range(n_aug)]
    res["items"] = items
    res["seconds"] = len(x16) / 16000
    res["fallbacks"] = dict(FOREIGN_FALLBACKS)
    FOREIGN_FALLBACKS.clear()
    return res


def pack(results, speaker):
    mels, labs, voices, texts = [], [], [], []
    for r in results:
        for mel, lab in r["items"]:
            mels.append(mel)
            labs.append(lab)
            voices.append(speaker[r["lang"]])
            texts.append(r["text"])
    starts = np.cumsum([0] + [len(l) for l in labs])[:-1]
    return dict(
        mel=np.concatenate(mels).astype(np.float16), label=np.concatenate(labs).astype(np.uint8),
        utt_start=starts.astype(np.int64), utt_voice=np.array(voices), utt_engine=np.array(["real"] * len(labs)),
        utt_text=np.array(texts),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--aug-copies", type=int, default=1, help="augmented copies per training utterance (besides the clean one)")
    ap.add_argument("--langs", default="en,es,fr,it,ru")
    ap.add_argument("--validate", type=int, default=120, help="English training files also DTW-labelled to check DTW against pocketsphinx")
    ap.add_argument("--limit", type=int, default=0, help="at most N files per language (testing)")
    ap.add_argument("--ppg-weight", type=float, default=0.8, help="share of the committed content model's phone log-posterior in the DTW cost")
    ap.add_argument("--ppg-model", default=PPG_MODEL, help="content model (onnx + json) whose posteriors guide the DTW")
    ap.add_argument("--outlier-mads", type=float, default=3.0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    globals()["PPG_WEIGHT"] = a.ppg_weight
    globals()["PPG_MODEL"] = a.ppg_model
    t0 = time.time()
    langs = a.langs.split(",")
    speaker = {l: LANGS[l][1] for l in LANGS}
    args, summary = [], {"phones": M.PHONES, "languages": {}, "eval_rule": f"English prompts with base name >= '{EVAL_FROM}' are real_eval only"}
    for lang in langs:
        utts, missing = list_utterances(lang, a.out)
        if a.limit:
            utts = utts[: a.limit]
        summary["languages"][lang] = {"speaker": speaker[lang], "transcribed_files": len(utts), "transcript_without_audio": missing}
        nval = 0
        for lang_, name, path, text in utts:
            validate = lang == "en" and not is_eval(lang, name) and nval < a.validate and utt_seed(lang, name) % 2 == 0
            nval += validate
            args.append((lang, name, path, text, a.aug_copies, validate))
    if a.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(a.jobs) as pool:
            results = pool.map(job, args, chunksize=4)
    else:
        results = [job(x) for x in args]
    print(f"aligned {len(results)} files in {time.time() - t0:.0f}s", flush=True)

    keep_train, keep_eval = [], []
    for lang in langs:
        rs = [r for r in results if r["lang"] == lang]
        ok = [r for r in rs if "error" not in r]
        errors = [r for r in rs if "error" in r]
        info = summary["languages"][lang]
        info["alignment_failures"] = len(errors)
        info["failure_examples"] = [f"{r['name']}: {r['error']}" for r in errors[:8]]
        dropped = []
        if lang != "en" and ok:
            costs = np.array([r["cost"] for r in ok])
            med = float(np.median(costs))
            mad = float(np.median(np.abs(costs - med))) * 1.4826
            thr = med + a.outlier_mads * mad
            dropped = [r for r in ok if r["cost"] > thr]
            ok = [r for r in ok if r["cost"] <= thr]
            info["dtw_cost_median"], info["dtw_cost_threshold"] = round(med, 4), round(thr, 4)
            info["dtw_outliers_dropped"] = len(dropped)
        tr = [r for r in ok if not r["eval"]]
        ev = [r for r in ok if r["eval"]]
        info["train_files"], info["eval_files"] = len(tr), len(ev)
        info["train_seconds"] = round(sum(r["seconds"] for r in tr), 1)
        info["eval_seconds"] = round(sum(r["seconds"] for r in ev), 1)
        info["train_frames"] = int(sum(len(l) for r in tr for _, l in r["items"]))
        info["train_frames_clean"] = int(sum(len(r["items"][0][1]) for r in tr))
        info["eval_frames"] = int(sum(len(r["items"][0][1]) for r in ev))
        if lang == "en":
            v = [r["dtw_agree"] for r in ok if "dtw_agree" in r]
            if v:
                agree = sum(x[0] for x in v) / sum(x[1] for x in v)
                info["dtw_vs_pocketsphinx"] = {"files": len(v), "frames": sum(x[1] for x in v), "frame_agreement": round(agree, 4),
                                              "median_cost": round(float(np.median([x[2] for x in v])), 4)}
                print("DTW vs pocketsphinx on English:", info["dtw_vs_pocketsphinx"], flush=True)
        print(lang, {k: v for k, v in info.items() if k != "failure_examples"}, flush=True)
        keep_train += tr
        keep_eval += ev
    d = pack(keep_train, speaker)
    np.savez(os.path.join(a.out, "real_train.npz"), **d)
    summary["real_train"] = {"utterances": len(d["utt_start"]), "frames": len(d["label"]), "hours": round(len(d["label"]) * HOP / SR / 3600, 3)}
    if keep_eval:
        d = pack(keep_eval, speaker)
        np.savez(os.path.join(a.out, "real_eval.npz"), **d)
        summary["real_eval"] = {"utterances": len(d["utt_start"]), "frames": len(d["label"]), "hours": round(len(d["label"]) * HOP / SR / 3600, 3)}
    fb = {}
    for r in results:
        for k, v in r.get("fallbacks", {}).items():
            fb[k] = fb.get(k, 0) + v
    summary["foreign_phoneme_fallbacks"] = fb
    summary["aug_copies"] = a.aug_copies
    summary["dtw"] = {"ppg_model": os.path.relpath(a.ppg_model), "ppg_weight": a.ppg_weight, "cepstra": CEPS, "max_step": MAX_STEP, "band": 0.25}
    summary["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(a.out, "real_summary.json"), "w") as f:
        json.dump(summary, f, indent=1, ensure_ascii=False)
    print("done", summary.get("real_train"), summary.get("real_eval"), f"{summary['seconds']}s")


if __name__ == "__main__":
    main()
