"""Generates Manifold Voice's real-voice conversion test set from recorded prompts.

Recorded speakers from Debian's Asterisk prompt packages (all read from
/usr/share/asterisk/sounds, decoded with ffmpeg):

- Source: Allison (asterisk-core-sounds-en-g722, en_US_f_Allison, G.722,
  16 kHz band), English, with transcripts from
  /usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz. Only the
  top-level prompts whose base name sorts from "m" on (case-sensitive,
  name >= "m") are used here: those before "m" are training data for the
  content model. Tests: prompts with >= 5 words of ordinary text (no digits,
  no brackets or "...", no spelled letters or acronyms, every word in
  pocketsphinx's cmudict-en-us.dict), --tests of them (default 20) taken
  evenly spaced from the sorted eligible list. Judge utterances and the
  reference: the other "m"-on prompts (not tests, no bracketed sound
  descriptions), see below.
  Allison herself is a speaker the content model has heard (her prompts
  before "m"; make_real_phone_set.py), these utterances are not.
- Targets (language does not matter for a target): the asterisk-prompt-*
  speakers, never in any training data, all recorded in the 8 kHz telephone
  band -- `esco` (asterisk-prompt-es-co, July E. Jimenez, Colombian Spanish,
  GSM 8 kHz, female), `armelle` (asterisk-prompt-fr-armelle, Armelle
  Desjardins, French, GSM 8 kHz, female), `menardi`
  (asterisk-prompt-it-menardi-wav, Italian, PCM 8 kHz, female) -- and the
  core-sounds G.722 16 kHz speakers `june` (fr_CA_f_June, female), `carlo`
  (it_IT_m_Carlo, male), `ivr_ru` (ru_RU_f_IvrvoiceRU, female); plus
  `carlo8k`: Carlo's 16 kHz recordings resampled down to 8 kHz (scipy
  resample_poly, so band-limited below 4 kHz) and back up, for a male voice
  in the telephone band (same recordings as `carlo`, so the two are not
  independent speakers). June, Carlo and the Russian voice are in the content
  model's training data (all their prompts, make_real_phone_set.py), so the
  index marks each voice's "content_training": "no" (never heard),
  "speaker" (other utterances of the speaker were) or "yes" (these very
  utterances may have been).
  Per speaker, from its top-level prompt files in sorted name order
  (skipping beeps, tones and silence files, and utterances whose trimmed
  length is not within 1.5-7 s): every third accepted file goes to the judge
  set until it has JUDGE_N, the others to the reference until it is
  >= 20 s (concatenated with 0.35 s pauses). Judge and reference files are
  disjoint. The source (Allison) gets a reference and judge set the same
  way from her "m"-on non-test prompts.

Each utterance is decoded at its band's rate (16000 or 8000 Hz), resampled to
22050 Hz (scipy resample_poly), trimmed of leading/trailing silence (20 ms
frames more than 45 dB below the loudest, keeping 40 ms), then, like
make_voice_set.py (whose normalize_loudness and pad this uses): 0.3 s
silence, speech, 0.3 s silence, 22050 Hz mono 16-bit, loudness-normalised to
-23 dBFS RMS over its active 20 ms frames, peaks kept below -1 dBFS.
Deterministic: sorted file lists, no randomness.

usage: python make_real_voice_set.py OUT_DIR [--tests N]
Writes OUT_DIR/<name>/{reference,judge_<k>,test_<k>}.wav and OUT_DIR/index.json
in make_voice_set.py's layout:
{"rate": 22050, "split": "real",
 "voices": [{"name", "engine": "real", "voice" (the sounds folder), "sex",
             "band": "16k"|"8k", "content_training", "reference", "reference_text" (prompt names),
             "reference_s", "judge": [path], "judge_text": [prompt name],
             "tests": [{"path", "text", "prompt"}] (the source only; [] for targets)}],
 "pairs": [{"source": "allison", "target": t}] for every target}
Paths are relative to OUT_DIR.
"""
import argparse
import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
from scipy.signal import resample_poly

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_speech_set as mss  # noqa: E402
import make_voice_set as mvs  # noqa: E402

RATE = mvs.RATE
SOUNDS = "/usr/share/asterisk/sounds"
TRANSCRIPTS = "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
JUDGE_N = 4
REFERENCE_MIN_S = 20.0
UTTERANCE_S = (1.5, 7.0)
TEST_MIN_WORDS = 5
# Content-model training uses the English prompts before this name.
HELD_OUT_FROM = "m"
NOT_SPEECH = re.compile(r"beep|tone|silence|music|monkeys|ring|click")

SOURCE = ("allison", "en_US_f_Allison", "g722", "16k", "f", None)
# (name, folder, extension, band, sex, resample-through rate or None)
TARGETS = [
    ("esco", "es", "gsm", "8k", "f", None),
    ("armelle", "fr", "gsm", "8k", "f", None),
    ("menardi", "it_IT_f_Menardi", "wav", "8k", "f", None),
    ("june", "fr_CA_f_June", "g722", "16k", "f", None),
    ("carlo", "it_IT_m_Carlo", "g722", "16k", "m", None),
    ("ivr_ru", "ru_RU_f_IvrvoiceRU", "g722", "16k", "f", None),
    ("carlo8k", "it_IT_m_Carlo", "g722", "8k", "m", 8000),
]
# What the content model has heard (make_real_phone_set.py's sources).
CONTENT_TRAINING = {"allison": "speaker", "june": "yes", "carlo": "yes", "ivr_ru": "yes", "carlo8k": "yes"}


def decode(path, through=None):
    """A prompt file -> float64 mono at RATE (ffmpeg at the file's own rate: G.722 16 kHz, GSM/PCM 8 kHz)."""
    rate = 16000 if path.endswith(".g722") else 8000
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", path, "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(rate), "-"],
        check=True, capture_output=True).stdout
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0
    if through is not None:
        g = np.gcd(rate, through)
        x = resample_poly(x, through // g, rate // g)
        rate = through
    g = np.gcd(RATE, rate)
    return resample_poly(x, RATE // g, rate // g)


def trim(x):
    """Drops leading/trailing 20 ms frames more than 45 dB below the loudest (keeps 40 ms)."""
    n = int(0.02 * RATE)
    frames = x[: len(x) // n * n].reshape(-1, n)
    power = np.mean(frames**2, axis=1)
    if len(power) == 0 or power.max() <= 0:
        return x[:0]
    idx = np.nonzero(power >= power.max() * 10 ** -4.5)[0]
    a, b = max(idx[0] - 2, 0), min(idx[-1] + 3, len(power))
    return x[a * n: b * n]


def prompt_files(folder, ext):
    """Top-level prompt files of a sounds folder, sorted by name."""
    d = os.path.join(SOUNDS, folder)
    names = sorted(f for f in os.listdir(d) if f.endswith("." + ext) and os.path.isfile(os.path.join(d, f)))
    return [(f[: -len(ext) - 1], os.path.join(d, f)) for f in names]


def judge_and_reference(files, band, through):
    """Walks (name, path) in order: every third accepted utterance -> judge until JUDGE_N, others -> reference until >= 20 s."""
    judge, ref, ref_len, accepted = [], [], 2 * int(0.3 * RATE), 0
    gap = int(0.35 * RATE)
    for name, path in files:
        if len(judge) >= JUDGE_N and ref_len >= REFERENCE_MIN_S * RATE:
            break
        if NOT_SPEECH.search(name):
            continue
        y = trim(decode(path, through))
        if not UTTERANCE_S[0] * RATE <= len(y) <= UTTERANCE_S[1] * RATE:
            continue
        if accepted % 3 == 0 and len(judge) < JUDGE_N:
            judge.append((name, y))
        elif ref_len < REFERENCE_MIN_S * RATE:
            ref_len += len(y) + (gap if ref else 0)
            ref.append((name, y))
        accepted += 1
    assert len(judge) == JUDGE_N and ref_len >= REFERENCE_MIN_S * RATE, "not enough prompts"
    parts = []
    for i, (_, y) in enumerate(ref):
        if i:
            parts.append(np.zeros(gap))
        parts.append(y)
    return judge, mvs.normalize_loudness(mvs.pad(np.concatenate(parts))), [n for n, _ in ref]


def transcripts():
    tx = {}
    with gzip.open(TRANSCRIPTS, "rt", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            k, t = line.split(":", 1)
            tx[k.strip()] = t.strip()
    return tx


def dictionary():
    """pocketsphinx's cmudict-en-us words (alternates folded)."""
    import pocketsphinx

    words = set()
    with open(os.path.join(pocketsphinx.get_model_path(), "en-us", "cmudict-en-us.dict")) as f:
        for line in f:
            if line.strip():
                words.add(re.sub(r"\(\d+\)$", "", line.split()[0]))
    return words


def ordinary(text, words):
    """>= TEST_MIN_WORDS words of ordinary text, all in the recogniser's dictionary."""
    if re.search(r"[0-9\[\]()\"]|\.\.\.|\b[A-Z]\b(?!')|\b[A-Z]{2,}\b", text):
        return False
    ws = [w.strip("'") for w in re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()]
    ws = [w for w in ws if w]
    return len(ws) >= TEST_MIN_WORDS and all(w in words for w in ws)


def write(out, rel, x):
    mss.write_wav(os.path.join(out, rel), x, RATE)


def entry(name, folder, band, sex, ref, ref_names, judge, out):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    write(out, f"{name}/reference.wav", ref)
    paths = []
    for k, (_, y) in enumerate(judge):
        paths.append(f"{name}/judge_{k}.wav")
        write(out, paths[-1], mvs.normalize_loudness(mvs.pad(y)))
    print(f"{name}: {band}, reference {len(ref) / RATE:.1f} s ({len(ref_names)} prompts), judge {[n for n, _ in judge]}", flush=True)
    return {
        "name": name,
        "engine": "real",
        "voice": folder,
        "sex": sex,
        "band": band,
        "content_training": CONTENT_TRAINING.get(name, "no"),
        "reference": f"{name}/reference.wav",
        "reference_text": ref_names,
        "reference_s": round(len(ref) / RATE, 3),
        "judge": paths,
        "judge_text": [n for n, _ in judge],
        "tests": [],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--tests", type=int, default=20, help="Allison test prompts (default 20)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    # Source: Allison, held-out ("m"-on) prompts only.
    name, folder, ext, band, sex, through = SOURCE
    tx, words = transcripts(), dictionary()
    held_out = [(n, p) for n, p in prompt_files(folder, ext) if n >= HELD_OUT_FROM and n in tx]
    eligible = [(n, p) for n, p in held_out if ordinary(tx[n], words)]
    if not 1 <= a.tests <= len(eligible) - JUDGE_N:
        ap.error(f"--tests must be 1..{len(eligible) - JUDGE_N}")
    tests = [eligible[i * len(eligible) // a.tests] for i in range(a.tests)]
    test_names = {n for n, _ in tests}
    rest = [(n, p) for n, p in held_out if n not in test_names and "[" not in tx[n]]
    judge, ref, ref_names = judge_and_reference(rest, band, through)
    src = entry(name, folder, band, sex, ref, ref_names, judge, a.out)
    src["judge_text"] = [tx[n] for n, _ in judge]
    for k, (n, p) in enumerate(tests):
        src["tests"].append({"path": f"{name}/test_{k}.wav", "text": tx[n], "prompt": n})
        write(a.out, src["tests"][-1]["path"], mvs.normalize_loudness(mvs.pad(trim(decode(p, through)))))
    used = test_names | set(ref_names) | {n for n, _ in judge}
    assert all(n >= HELD_OUT_FROM for n in used) and len(used) == len(tests) + len(ref_names) + len(judge)
    entries = [src]

    for name, folder, ext, band, sex, through in TARGETS:
        judge, ref, ref_names = judge_and_reference(prompt_files(folder, ext), band, through)
        entries.append(entry(name, folder, band, sex, ref, ref_names, judge, a.out))

    index = {
        "rate": RATE,
        "split": "real",
        "voices": entries,
        "pairs": [{"source": SOURCE[0], "target": t[0]} for t in TARGETS],
    }
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()
