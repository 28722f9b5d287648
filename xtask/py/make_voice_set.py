"""Generates Manifold Voice's voice-conversion test set with project code only.

Five synthetic speakers, held out from the content model's training:
festival cmu_us_slt_arctic_hts (female, HTS, 32 kHz) and ked_diphone (male,
diphone, 16 kHz) -- Debian packages festival, festvox-us-slt-hts,
festvox-kdlpc16k (festvox-kallpc16k is installed too but not used here),
driven through /usr/bin/text2wave -- and eSpeak NG en-us+f2, en-gb-x-rp+m1,
en-gb-scotland+f4 (libespeak-ng from the `espeakng-loader` wheel; both
engines through make_speech_set.speak / speak_festival).

Per voice, three disjoint sets of Harvard sentences (IEEE 1969 lists 2-10,
public domain; list 1, whose sentences make_speech_set.py uses, is avoided):
- reference: that voice's own sentences (shared with no other voice and used
  nowhere else), concatenated with 0.35 s pauses until the file is >= 20 s:
  the target recording a conversion is given;
- judge: JUDGE_SENTENCES, one file each, to build the speaker's identity
  centroid for the similarity test (same text for every voice);
- tests: TEST_SENTENCES, one file each, with transcripts: what gets converted
  (same text for every voice, so content is comparable across pairs).
Each file: 0.3 s silence, speech, 0.3 s silence, 22050 Hz mono 16-bit,
loudness-normalised to -23 dBFS RMS over its active 20 ms frames (those
within 40 dB of the loudest), peaks kept below -1 dBFS. Deterministic:
festival is; eSpeak's noise generator is reseeded before every utterance
(its echo/filter state still carries from one utterance to the next, so
outputs are reproducible for this script's fixed synthesis order).

A development split (--split dev) swaps the test sentences for
DEV_TEST_SENTENCES and keeps everything else: settings are tuned on it so
that the test split, which the closing figures come from, stays unseen.

usage: python make_voice_set.py OUT_DIR [--split test|dev] [--espeak-voices en-us+f2,...]
Writes OUT_DIR/<name>/{reference,judge_<k>,test_<k>[,dev_<k>]}.wav and OUT_DIR/index.json:
{"rate": 22050,
 "voices": [{"name", "engine", "voice", "sex", "reference", "reference_text",
             "reference_s", "judge": [path], "judge_text": [text],
             "tests": [{"path", "text"}]}],
 "pairs": [{"source", "target"}] (all ordered pairs of distinct voices)}
Paths are relative to OUT_DIR. --espeak-voices replaces the three eSpeak
voices (for trying alternatives; names become es_<voice>).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_speech_set as mss  # noqa: E402

RATE = 22050
TARGET_DBFS = -23.0
PEAK_MAX = 10 ** (-1 / 20)
REFERENCE_MIN_S = 20.0
SEED = 20261126

# (name, engine, engine voice, sex)
VOICES = [
    ("slt", "festival", "cmu_us_slt_arctic_hts", "f"),
    ("ked", "festival", "ked_diphone", "m"),
    ("us_f2", "espeak", "en-us+f2", "f"),
    ("rp_m1", "espeak", "en-gb-x-rp+m1", "m"),
    ("scot_f4", "espeak", "en-gb-scotland+f4", "f"),
]

TEST_SENTENCES = [
    "The boy was there when the sun rose.",
    "The source of the huge river is the clear spring.",
    "Help the woman get back to her feet.",
    "The set of china hit the floor with a crash.",
]

# The development split's test sentences: settings are tuned on these, and
# the test split (TEST_SENTENCES) judges them (same voices, references and
# judge sentences).
DEV_TEST_SENTENCES = [
    "Lift the square stone over the fence.",
    "The rope will bind the seven books at once.",
    "The crooked maze failed to fool the mouse.",
    "Those words were the cue for the actor to leave.",
]

JUDGE_SENTENCES = [
    "The salt breeze came across from the sea.",
    "The wide road shimmered in the hot sun.",
    "We talked of the side show in the circus.",
    "The frosty air passed through the coat.",
]

# One pool per voice (in VOICES order), used in order until >= 20 s.
REFERENCE_POOLS = [
    [
        "The small pup gnawed a hole in the sock.",
        "The fish twisted and turned on the bent hook.",
        "Press the pants and sew a button on the vest.",
        "The swan dive was far short of perfect.",
        "The beauty of the view stunned the young boy.",
        "Two blue fish swam in the tank.",
        "Her purse was full of useless trash.",
        "The colt reared and threw the tall rider.",
        "It snowed, rained, and hailed the same morning.",
        "Read verse out loud for pleasure.",
        "A rod is used to catch pink salmon.",
        "Kick the ball straight and follow through.",
    ],
    [
        "Hoist the load to your left shoulder.",
        "Take the winding path to reach the lake.",
        "Note closely the size of the gas tank.",
        "Wipe the grease off his dirty face.",
        "Mend the coat before you go out.",
        "The wrist was badly strained and hung limp.",
        "The stray cat gave birth to kittens.",
        "The young girl gave no clear response.",
        "The meal was cooked before the bell rang.",
        "What joy there is in living.",
        "A pot of tea helps to pass the evening.",
        "Smoky fires lack flame and heat.",
    ],
    [
        "A yacht slid around the point into the bay.",
        "The two met while playing on the sand.",
        "The ink stain dried on the finished page.",
        "The walled town was seized without a fight.",
        "The lease ran out in sixteen weeks.",
        "A tame squirrel makes a nice pet.",
        "The horn of the car woke the sleeping cop.",
        "The heart beat strongly and with firm strokes.",
        "The pearl was worn in a thin silver ring.",
        "The fruit peel was cut in thick slices.",
        "The soft cushion broke the man's fall.",
        "The girl at the booth sold fifty bonds.",
    ],
    [
        "The Navy attacked the big task force.",
        "See the cat glaring at the scared mouse.",
        "There are more than two factors here.",
        "The hat brim was wide and too droopy.",
        "The lawyer tried to lose his case.",
        "The grass curled around the fence post.",
        "Cut the pie into large parts.",
        "Men strive but seldom get rich.",
        "Always close the barn door tight.",
        "He lay prone and hardly moved a limb.",
        "A king ruled the state in the early days.",
        "The ship was torn apart on the sharp reef.",
    ],
    [
        "The slush lay deep along the street.",
        "A wisp of cloud hung in the blue air.",
        "A pound of sugar costs more than eggs.",
        "The fin was sharp and cut the clear water.",
        "The play seems dull and quite stupid.",
        "Bail the boat to stop it from sinking.",
        "The term ended in late June that year.",
        "A tusk is used to make costly gifts.",
        "Ten pins were set in order.",
        "The bill was paid every third week.",
        "Sickness kept him home the third week.",
        "The lazy cow lay in the cool grass.",
    ],
]


def check_disjoint():
    """Every sentence is used in one role only, and never in make_speech_set.py."""
    every = TEST_SENTENCES + DEV_TEST_SENTENCES + JUDGE_SENTENCES + [s for pool in REFERENCE_POOLS for s in pool]
    keys = [" ".join(s.lower().replace(",", "").rstrip(".").split()) for s in every + mss.SENTENCES]
    assert len(set(keys)) == len(keys), "a sentence is used twice"


def speak(text, engine, voice):
    if engine == "festival":
        return mss.speak_festival(text, voice, RATE)
    mss.TTS = "espeak"
    # Variants with "breath" (f2) draw noise from eSpeak's RNG, which is
    # seeded from the clock unless set: fix it before every utterance.
    mss._espeak().espeak_ng_SetRandSeed(SEED)
    return mss.speak(text, voice, RATE)


def normalize_loudness(x):
    """Scale to TARGET_DBFS RMS over active 20 ms frames; keep peaks < -1 dBFS."""
    n = int(0.02 * RATE)
    frames = x[: len(x) // n * n].reshape(-1, n)
    power = np.mean(frames**2, axis=1)
    active = power >= power.max() * 1e-4
    rms = np.sqrt(np.mean(power[active]))
    y = x * (10 ** (TARGET_DBFS / 20) / rms)
    peak = np.max(np.abs(y))
    return y * (PEAK_MAX / peak) if peak > PEAK_MAX else y


def pad(x):
    z = np.zeros(int(0.3 * RATE))
    return np.concatenate([z, x, z])


def make_reference(pool, engine, voice):
    gap = np.zeros(int(0.35 * RATE))
    parts, used, n = [], [], 2 * int(0.3 * RATE)
    for s in pool:
        if n >= REFERENCE_MIN_S * RATE:
            break
        if parts:
            parts.append(gap)
            n += len(gap)
        y = speak(s, engine, voice)
        parts.append(y)
        used.append(s)
        n += len(y)
    return normalize_loudness(pad(np.concatenate(parts))), used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--espeak-voices", help="comma-separated eSpeak voices replacing the default three")
    ap.add_argument("--split", choices=["test", "dev"], default="test", help="which test sentences (dev: for tuning)")
    a = ap.parse_args()
    voices = VOICES
    if a.espeak_voices:
        es = a.espeak_voices.split(",")
        if len(es) != 3:
            ap.error("--espeak-voices needs exactly three voices")
        voices = VOICES[:2] + [("es_" + v.replace("+", "_"), "espeak", v, "?") for v in es]
    check_disjoint()
    os.makedirs(a.out, exist_ok=True)
    entries = []
    for (name, engine, voice, sex), pool in zip(voices, REFERENCE_POOLS):
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        ref, ref_text = make_reference(pool, engine, voice)
        mss.write_wav(os.path.join(d, "reference.wav"), ref, RATE)
        judge = []
        for k, s in enumerate(JUDGE_SENTENCES):
            judge.append(f"{name}/judge_{k}.wav")
            mss.write_wav(os.path.join(a.out, judge[-1]), normalize_loudness(pad(speak(s, engine, voice))), RATE)
        tests = []
        for k, s in enumerate(TEST_SENTENCES):
            tests.append({"path": f"{name}/test_{k}.wav", "text": s})
            mss.write_wav(os.path.join(a.out, tests[-1]["path"]), normalize_loudness(pad(speak(s, engine, voice))), RATE)
        entries.append({
            "name": name,
            "engine": engine,
            "voice": voice,
            "sex": sex,
            "reference": f"{name}/reference.wav",
            "reference_text": ref_text,
            "reference_s": round(len(ref) / RATE, 3),
            "judge": judge,
            "judge_text": list(JUDGE_SENTENCES),
            "tests": tests,
        })
        print(f"{name}: reference {len(ref) / RATE:.1f} s ({len(ref_text)} sentences)", flush=True)
    if a.split == "dev":
        # A second pass, after every voice's test split: eSpeak's state
        # carries between utterances, so this keeps the references and judge
        # files sample-identical to the test split's.
        for (name, engine, voice, _), e in zip(voices, entries):
            e["tests"] = []
            for k, s in enumerate(DEV_TEST_SENTENCES):
                e["tests"].append({"path": f"{name}/dev_{k}.wav", "text": s})
                mss.write_wav(os.path.join(a.out, e["tests"][-1]["path"]), normalize_loudness(pad(speak(s, engine, voice))), RATE)
    names = [e["name"] for e in entries]
    index = {
        "rate": RATE,
        "split": a.split,
        "voices": entries,
        "pairs": [{"source": s, "target": t} for s in names for t in names if s != t],
    }
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()
