"""Word error rate of speech files, with pocketsphinx as the recogniser.

Manifold Voice must keep the words intelligible: a converted utterance may
have a WER at most 0.15 above its untouched source. This measures it with a
small, deterministic, CPU-only recogniser: pocketsphinx 5 (PyPI
`pocketsphinx==5.1.1`, pinned in xtask/src/venv.rs) with its bundled
US-English acoustic model, default language model (en-us.lm.bin) and
dictionary (cmudict-en-us.dict). Each file is read (16-bit PCM WAV, any rate,
channels averaged), resampled to 16 kHz (scipy resample_poly) and decoded
as one utterance by a fresh decoder, so results do not depend on file order
(the live cepstral-mean estimate would otherwise carry over).

Text normalisation, same for reference and hypothesis: lowercase; digits
spelled out as words (integers, e.g. "16" -> "sixteen"); hyphens and slashes
become spaces; other punctuation removed (apostrophes inside words kept,
"man's"); pocketsphinx fillers (<s>, [NOISE], ...) and alternate-pronunciation
marks ("the(2)") dropped. WER = word-level Levenshtein distance
(substitutions + deletions + insertions, unit costs) / reference words;
total_wer pools errors and words over all files.

usage: python asr_wer.py [LIST.json] [-o OUT.json]
       python asr_wer.py --voice-set INDEX.json [-o OUT.json]
LIST.json (stdin when absent or "-") is a list of {"path", "text"}; relative
paths are taken from the list file's folder. Prints (or writes to OUT.json)
{"files": [{"path", "hyp", "ref", "wer", "errors", "words"}], "total_wer"}.
--voice-set takes make_voice_set.py's index.json, scores every voice's
"tests" (the untouched sources) and adds "voices": {name: {"wer", "errors",
"words"}} (the source baseline), with a table on stderr.
As a module: wer_of([{"path", "text"}, ...]) -> the same dict; also
normalize(text) -> [words] and edit_distance(ref_words, hyp_words) -> int.
"""
import argparse
import json
import os
import re
import sys
import wave
from math import gcd

import numpy as np
from scipy.signal import resample_poly

ASR_RATE = 16000

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n):
    """Non-negative integer -> English words ("105" -> one hundred five)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            rest = number_words(n % size) if n % size else []
            return number_words(n // size) + [name] + rest
    raise AssertionError


def normalize(text):
    """Text -> list of lowercase words (see the module docstring)."""
    text = text.lower()
    text = re.sub(r"\(\d+\)", "", text)  # pocketsphinx alternate pronunciations
    text = re.sub(r"<[^>]*>|\[[^\]]*\]", " ", text)  # fillers
    text = re.sub(r"\d+", lambda m: " " + " ".join(number_words(int(m.group()))) + " ", text)
    text = re.sub(r"[-/]", " ", text)
    text = re.sub(r"[^a-z' ]", " ", text)
    words = []
    for w in text.split():
        w = w.strip("'")
        if w:
            words.append(w)
    return words


def edit_distance(ref, hyp):
    """Word-level Levenshtein distance (unit substitution/insertion/deletion)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def read_wav(path):
    """16-bit PCM WAV -> (float64 mono samples in [-1, 1), rate)."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    return x.reshape(-1, ch).mean(axis=1), rate


def _decoder():
    from pocketsphinx import Config, Decoder

    # Defaults: bundled en-us acoustic model, en-us.lm.bin, cmudict-en-us.dict.
    return Decoder(Config(samprate=ASR_RATE, loglevel="FATAL"))


def transcribe(path):
    """Pocketsphinx hypothesis for one file (a fresh decoder each time)."""
    x, rate = read_wav(path)
    if rate != ASR_RATE:
        g = gcd(ASR_RATE, rate)
        x = resample_poly(x, ASR_RATE // g, rate // g)
    pcm = (np.clip(x, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    dec = _decoder()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr if hyp is not None else ""


def wer_of(paths_texts, base_dir=None):
    """[{"path", "text"}] -> {"files": [...], "total_wer"} (see module docstring)."""
    files, errors, words = [], 0, 0
    for item in paths_texts:
        path = item["path"]
        full = path if base_dir is None or os.path.isabs(path) else os.path.join(base_dir, path)
        hyp = transcribe(full)
        ref_w, hyp_w = normalize(item["text"]), normalize(hyp)
        e = edit_distance(ref_w, hyp_w)
        files.append({
            "path": path,
            "hyp": " ".join(hyp_w),
            "ref": " ".join(ref_w),
            "wer": e / max(len(ref_w), 1),
            "errors": e,
            "words": len(ref_w),
        })
        errors += e
        words += len(ref_w)
    return {"files": files, "total_wer": errors / max(words, 1)}


def voice_set_baseline(index_path):
    """WER of every voice's tests in a make_voice_set.py index (per voice + pooled)."""
    with open(index_path) as f:
        index = json.load(f)
    base = os.path.dirname(os.path.abspath(index_path))
    result = wer_of([t for v in index["voices"] for t in v["tests"]], base)
    by_path = {r["path"]: r for r in result["files"]}
    result["voices"] = {}
    for v in index["voices"]:
        rows = [by_path[t["path"]] for t in v["tests"]]
        e, w = sum(r["errors"] for r in rows), sum(r["words"] for r in rows)
        result["voices"][v["name"]] = {"wer": e / max(w, 1), "errors": e, "words": w}
        print(f"{v['name']:<12} {v.get('voice', ''):<24} WER {e / max(w, 1):.3f} ({e}/{w})", file=sys.stderr)
    print(f"{'all':<12} {'':<24} WER {result['total_wer']:.3f}", file=sys.stderr)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("list", nargs="?", default="-", help="JSON list of {path, text}; stdin when '-'")
    ap.add_argument("-o", "--out", help="write the result here instead of stdout")
    ap.add_argument("--voice-set", help="make_voice_set.py index.json: score every voice's tests")
    a = ap.parse_args()
    if a.voice_set:
        result = voice_set_baseline(a.voice_set)
    else:
        if a.list == "-":
            items, base = json.load(sys.stdin), None
        else:
            with open(a.list) as f:
                items = json.load(f)
            base = os.path.dirname(os.path.abspath(a.list))
        result = wer_of(items, base)
    text = json.dumps(result, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
