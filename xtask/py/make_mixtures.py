"""Two-speaker mixtures for target-voice isolation, made with project code only.

Each mixture is a target utterance (one eSpeak NG voice) plus an interfering
utterance (a different voice, different text) at a given target-to-interferer
ratio, together with a separate enrolment utterance of the target voice (text
not used in the mixture). Speech comes from make_speech_set.py (libespeak-ng
from the `espeakng-loader` wheel). Texts, voices, levels and offsets are fixed
by the seed; some eSpeak voice variants add their own random breath noise, so
the samples differ slightly from run to run (not the measured results).

usage: python make_mixtures.py OUT_DIR [--count 12] [--rate 16000] [--sirs 0,5,-5]

Writes OUT_DIR/mixture_<i>.wav, target_<i>.wav, interferer_<i>.wav,
reference_<i>.wav (enrolment) and OUT_DIR/index.json. The mixture is exactly
target + interferer before 16-bit quantisation; all files are mono.
"""
import argparse
import json
import os

import numpy as np

import make_speech_set as speech

# Sentences for the mixtures and the enrolment; the enrolment of a target
# never shares a sentence with that target's mixture utterance.
SENTENCES = speech.SENTENCES + [
    "Open the window and let the fresh morning air fill the whole room.",
    "The old clock on the wall struck nine as the guests began to arrive.",
    "She packed two sandwiches, an apple and a bottle of cold water.",
    "Turn left at the second light and park behind the red brick library.",
]


def say(text, voice, rate):
    return np.asarray(speech.speak(text, voice, rate), dtype=np.float64)


def fit(x, n, offset):
    """`x` placed at `offset` in `n` samples (cut at the end)."""
    out = np.zeros(n)
    m = min(len(x), n - offset)
    if m > 0:
        out[offset : offset + m] = x[:m]
    return out


def make_one(i, rate, sir_db, rng, voices):
    nv = len(voices)
    target_voice = voices[i % nv]
    # A different voice, cycling through all the others.
    interferer_voice = voices[(i + 1 + (i // nv) % (nv - 1)) % nv]
    ns = len(SENTENCES)
    t_text = SENTENCES[i % ns]
    n_text = SENTENCES[(i + 5) % ns]
    enrol_texts = [SENTENCES[(i + 2) % ns], SENTENCES[(i + 3) % ns]]
    assert t_text not in enrol_texts and n_text != t_text

    lead = int(0.3 * rate)
    target_speech = say(t_text, target_voice, rate)
    n = lead + len(target_speech) + int(0.3 * rate)
    target = fit(target_speech, n, lead)
    interferer_speech = say(n_text, interferer_voice, rate)
    # The interferer starts somewhere in the first half second and overlaps most of the target.
    interferer = fit(interferer_speech, n, int(rng.integers(0, max(1, rate // 2))))
    p_t = np.mean(target**2)
    p_i = np.mean(interferer**2) + 1e-20
    interferer *= np.sqrt(p_t / (p_i * 10 ** (sir_db / 10)))
    mixture = target + interferer
    scale = 0.5 / max(np.max(np.abs(mixture)), 1e-9)

    gap = np.zeros(int(0.25 * rate))
    enrol = np.concatenate([gap] + [np.concatenate([say(t, target_voice, rate), gap]) for t in enrol_texts])
    enrol *= 0.4 / max(np.max(np.abs(enrol)), 1e-9)
    return {
        "target_voice": target_voice,
        "interferer_voice": interferer_voice,
        "target_text": t_text,
        "interferer_text": n_text,
        "reference_texts": enrol_texts,
    }, mixture * scale, target * scale, interferer * scale, enrol


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--rate", type=int, default=16000)
    ap.add_argument("--sirs", default="0,5,-5", help="target-to-interferer ratios in dB, cycled")
    ap.add_argument("--seed", type=int, default=20261127)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    sirs = [float(s) for s in a.sirs.split(",")]
    voices = speech.voice_list()
    index = []
    for i in range(a.count):
        sir = sirs[i % len(sirs)]
        info, mixture, target, interferer, enrol = make_one(i, a.rate, sir, rng, voices)
        names = {k: f"{k}_{i}.wav" for k in ("mixture", "target", "interferer", "reference")}
        for k, x in zip(("mixture", "target", "interferer", "reference"), (mixture, target, interferer, enrol)):
            speech.write_wav(os.path.join(a.out, names[k]), x, a.rate)
        index.append({**names, **info, "sir_db": sir, "rate": a.rate})
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()
