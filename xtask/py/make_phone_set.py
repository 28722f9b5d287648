"""Generates Manifold's phone-aligned speech set for the content (PPG) model.

Project code only: sentences come from a seeded generator over a word list
written here; speech comes from eSpeak NG (libespeak-ng from the
`espeakng-loader` wheel, driven through its C API with ctypes, phoneme events
on) and Festival (`festival` binary, Segment relation end times). Both phone
inventories are mapped to one ARPAbet-like set (PHONES, 39 phones + `sil`);
the maps are ESPEAK_MAP and FESTIVAL_MAP below.

Features are HiFi-GAN's log-mel (22050 Hz, n_fft 1024, periodic Hann 1024,
hop 256, reflect pad 384 both sides, no centering, magnitude
sqrt(re^2 + im^2 + 1e-9), 80 Slaney mel bands 0..8000 Hz, ln(max(x, 1e-5))).
Frame t covers original samples [256t - 384, 256t + 640); its label is the
phone at its centre sample 256t + 128.

Splits:
  train  every eSpeak English language x variant in TRAIN_VARIANTS (minus the
         evaluation voices and the validation voices) plus festival
         kal_diphone, with augmentation (espeak rate/pitch/range, festival
         duration/F0, resample speed perturbation, vocal-tract-length warp of
         the mel filterbank, gain, noise, EQ tilt, low-pass);
  val    eSpeak voices whose variant never occurs in train (VAL_VARIANTS, all
         languages) plus held-back kal_diphone utterances; same augmentation;
  eval   the five evaluation voices (EVAL_VOICES), clean, never in train/val.
Texts of eval utterances are generated too (different seed) and all texts
are checked disjoint (no shared 4-word sequence) from the evaluation sentences
(every *SENTENCES* / *POOL* list in make_speech_set.py, make_mixtures.py and
make_voice_set.py).

usage: python make_phone_set.py OUT_DIR [--train N] [--val N] [--eval N] [--jobs 2]
Writes OUT_DIR/{train,val,eval}.npz (mel float16 [T,80], label uint8 [T],
utt_start int64, utt_voice, utt_engine, utt_text) and OUT_DIR/summary.json.
Deterministic: every utterance has its own seed, so the result does not
depend on --jobs.
"""
import argparse
import ast
import ctypes
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from math import gcd

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from scipy.signal import resample_poly

SR = 22050
N_FFT = 1024
HOP = 256
N_MELS = 80
FMIN, FMAX = 0.0, 8000.0
PAD = (N_FFT - HOP) // 2

PHONES = [
    "sil", "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g",
    "hh", "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t",
    "th", "uh", "uw", "v", "w", "y", "z", "zh",
]
PHONE_ID = {p: i for i, p in enumerate(PHONES)}

# eSpeak NG English phoneme mnemonics (stress marks ' , % = stripped) -> PHONES.
# Diphthong+schwa/r sequences collapse to their nucleus; syllabic consonants
# to the consonant; reduced vowels to ah; the flap to d; glottal stop to t;
# ";" (the linking glide eSpeak inserts after i before a vowel) to y.
ESPEAK_MAP = {
    "_": "sil", "_:": "sil", "_!": "sil", "_|": "sil", "_^_": "sil", "||": "sil", "|": "sil",
    "@": "ah", "@2": "ah", "@5": "ah", "@-": "ah", "V": "ah", "a#": "ah", "@#": "ah", "U#": "uh",
    "3": "er", "3:": "er", "@r": "er", "3r": "er", "VR": "er",
    "a": "ae", "aa": "ae", "a2": "ae", "&": "ae",
    "A:": "aa", "A@": "aa", "A": "aa", "0": "aa", "A#": "aa", "Ar": "aa", "0#": "aa",
    "aI": "ay", "aI@": "ay", "aI3": "ay", "aI@3": "ay", "aI2": "ay",
    "aU": "aw", "aU@": "aw",
    "e": "eh", "E": "eh", "e@": "eh", "E2": "eh", "E#": "eh", "e#": "eh",
    "eI": "ey", "eI#": "ey",
    "i": "iy", "i:": "iy", "i@": "iy", "i@3": "iy", "i#": "iy", "iA": "iy",
    "I": "ih", "I#": "ih", "I2": "ih", "I2#": "ih", "y": "ih",
    "O": "ao", "O:": "ao", "O@": "ao", "o@": "ao", "O#": "ao", "Q": "aa", "O2": "ao", "o": "ow",
    "oU": "ow", "oU#": "ow", "o:": "ow", "@U": "ow",
    "OI": "oy",
    "u:": "uw", "u": "uw", "u@": "uw", "U:": "uw", "Uu": "uw",
    "U": "uh", "U@": "uh",
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "g": "g", "f": "f", "v": "v",
    "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "zh", "h": "hh",
    "tS": "ch", "dZ": "jh", "m": "m", "n": "n", "N": "ng", "l": "l", "r": "r", "w": "w",
    "j": "y", "t#": "d", "d#": "d", "*": "d", "?": "t", "x": "k", "l/": "l", "l/2": "l",
    "@L": "l", "L": "l", "n-": "n", "m-": "m", "r-": "r", "w#": "w", "W": "w", "h#": "hh",
    "z#": "z", "s#": "s", "t2": "t", "d2": "d", "k#": "k", "n#": "n", "C": "hh", "X": "k",
    "r/": "r", "R": "r", ";": "y", "IR": "er", "t[": "t", "d[": "d", "n[": "n", "l[": "l", "j#": "y", "z/2": "z", "@L2": "l", "ts": "s", "tl#": "t",
}
# Festival radio/CMU phone sets -> PHONES.
FESTIVAL_MAP = {
    "pau": "sil", "h#": "sil", "brth": "sil", "#": "sil", "ssil": "sil",
    "ax": "ah", "ix": "ih", "axr": "er", "el": "l", "em": "m", "en": "n", "nx": "n", "dx": "d",
    "hv": "hh", "ux": "uw", "ax-h": "ah",
}
FESTIVAL_MAP.update({p: p for p in PHONES if p != "sil"})

ESPEAK_LANGS = ["en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
TRAIN_VARIANTS = [
    "", "m1", "m2", "m3", "m4", "m5", "m7", "m8", "f2", "f3", "f4", "klatt", "klatt2",
    "klatt4", "klatt5", "Alex", "Andy", "Alicia", "adam", "aunty", "belinda", "benjamin", "caleb", "david",
    "ed", "edward", "grandma", "grandpa", "iven", "john", "linda", "max", "michel", "norbert", "paul",
    "quincy", "rob", "robert", "steph", "travis", "victor", "zac", "Lee", "Gene", "Storm",
]
VAL_VARIANTS = ["m6", "f1", "f5", "klatt3", "Annie", "shelby"]
EVAL_VOICES = [
    ("festival", "cmu_us_slt_arctic_hts"), ("festival", "ked_diphone"),
    ("espeak", "en-us+f2"), ("espeak", "en-gb-x-rp+m1"), ("espeak", "en-gb-scotland+f4"),
]
EVAL_ESPEAK = {v for e, v in EVAL_VOICES if e == "espeak"}
FESTIVAL_TRAIN = "kal_diphone"
# Flite's clustergen voices (statistical parametric, each built from one real
# speaker's recordings: awb Scottish male, rms US male). Flite's own kal is
# Festival's kal again and its slt is an evaluation speaker, so neither is used.
FLITE_TRAIN = ["flite:awb", "flite:rms"]
# The recorded-speaker training voices (kal_diphone, awb, rms) are all
# male: their F0 and vocal-tract warp ranges reach up into the female range.
FESTIVAL_F0 = (80, 260)
FESTIVAL_WARP = (0.85, 1.25)


def espeak_voice(lang, variant):
    return lang if not variant else f"{lang}+{variant}"


TRAIN_ESPEAK = [v for v in (espeak_voice(l, x) for l in ESPEAK_LANGS for x in TRAIN_VARIANTS) if v not in EVAL_ESPEAK]
VAL_ESPEAK = [espeak_voice(l, x) for l in ESPEAK_LANGS for x in VAL_VARIANTS]

# ---------------------------------------------------------------- texts

WORDS = {
    "adj": """red blue green yellow purple orange golden silver quiet loud heavy light bright dark
        warm cold cool hot fresh stale smooth rough sharp gentle proud brave lazy busy happy
        angry hungry thirsty tired sleepy noisy shiny rusty dusty muddy sandy foggy windy
        cloudy sunny rainy frozen broken hidden wooden woolen leather plastic ancient modern
        tiny huge narrow wide deep shallow thick thin young old new strange usual curious
        careful clever foolish polite rude eager calm joyful awkward loyal royal noble humble
        cheap precious measured visual casual pleasant oily thorough vivid""".split(),
    "noun": """cat dog horse mouse bird fish sheep goat cow pig duck goose fox wolf bear lion tiger
        monkey rabbit squirrel turtle frog snake spider beetle teacher farmer doctor nurse
        sailor soldier pilot driver painter singer dancer baker butcher judge lawyer king queen
        prince child baby uncle aunt cousin neighbour stranger village city town river lake
        ocean mountain valley forest garden kitchen bedroom garage bridge tower castle church
        school market station airport harbour island desert jungle meadow window door table
        chair bottle basket bucket hammer shovel ladder rope chain wheel engine rocket boat
        ship train truck bicycle guitar piano violin trumpet drum candle lamp mirror picture
        letter envelope treasure pleasure vision measure voyage cabbage orange sandwich cheese
        butter honey coffee juice cookie pepper onion tomato potato pumpkin mushroom feather
        pillow blanket jacket shirt shoe boot glove scarf umbrella wallet coin noise voice
        choice joy toy oyster thumb thread throat thunder youth month path truth mouth cloud
        crowd flower tower shower power owl cow book wood hook foot wool sugar cushion""".split(),
    "verb": """found carried pushed pulled watched chased caught dropped lifted painted cleaned
        fixed opened closed washed cooked bought sold brought taught fought built buried
        borrowed followed visited measured treasured enjoyed destroyed annoyed employed
        joined pointed counted shouted wondered ordered answered gathered scattered shared
        thanked thought threw grabbed hugged judged changed charged touched reached fetched
        stretched climbed explored ignored admired admitted allowed avoided""".split(),
    "verb_i": """slept laughed cried waited jumped danced sang smiled shivered whispered vanished
        appeared returned wandered travelled hurried paused listened worked played rested
        struggled giggled yawned sneezed coughed""".split(),
    "adv": """quickly slowly quietly loudly gently happily sadly suddenly carefully eagerly
        calmly badly rarely always never often together again already today yesterday
        tonight outside inside upstairs downstairs somewhere everywhere anyway""".split(),
    "prep": """near under over behind beside across through along around between beyond inside
        toward against without""".split(),
    "name": """Maria John Peter Sarah George Helen Thomas Judy Oliver Zoe Victor Yvonne Charles
        Joseph Ruth Hugh Edgar Agnes Walter Rachel Martin Irene Howard Beatrice""".split(),
    "num": """two three four five six seven eight nine ten eleven twelve thirty forty fifty
        hundred thousand""".split(),
    "plural": """apples boxes stones coins letters pencils bottles candles keys cups plates
        shells horses chairs boots gloves jewels pearls oysters feathers""".split(),
    "time": """this morning last night at noon in the evening on Sunday in winter before dawn
        after lunch every summer at midnight""".split("  "),
}
WORDS["time"] = ["this morning", "last night", "at noon", "in the evening", "on Sunday", "in winter",
                 "before dawn", "after lunch", "every summer", "at midnight", "next Thursday", "in June"]
TEMPLATES = [
    "The {adj} {noun} {verb} the {adj} {noun} {prep} the {noun}.",
    "{name} {verb} {num} {plural} {time}.",
    "Why did the {noun} {verb_i} so {adv}?",
    "A {adj} {noun} {verb_i} {prep} the {adj} {noun}.",
    "{name} and {name} {verb} the {noun} {adv}.",
    "Did you see the {adj} {noun} {prep} the {noun} {time}?",
    "The {noun} {verb_i} {adv}, and then the {noun} {verb} it.",
    "We {verb} {num} {adj} {plural} {prep} the {noun}.",
    "Her {noun} was {adj} but the {noun} was {adj}.",
    "{time}, the {adj} {noun} {verb_i} {prep} the {noun}.",
    "My {noun} {verb} your {adj} {noun}, {name} said.",
    "If the {noun} is {adj}, the {noun} will be {adj} too.",
    "There were {num} {plural} in the {adj} {noun}.",
    "{name} {verb_i} while the {noun} {verb} a {noun}.",
    "How {adj} is the {noun} {prep} the {noun}?",
    "They {verb} the {noun} and {verb_i} {adv}.",
]


def _eval_sentences():
    here = os.path.dirname(os.path.abspath(__file__))
    out = set()
    for path in glob.glob(os.path.join(here, "*.py")):
        base = os.path.basename(path)
        if base not in ("make_speech_set.py", "make_mixtures.py", "make_voice_set.py"):
            continue
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and ("SENTENCES" in t.id or "POOL" in t.id) for t in node.targets
            ):
                for sub in ast.walk(node.value):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        out.add(_norm(sub.value))
    return out


def _norm(s):
    return " ".join(re.findall(r"[a-z']+", s.lower()))


def _ngrams(s, n=4):
    w = s.split()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


class TextGen:
    def __init__(self):
        self.banned = _eval_sentences()
        self.banned_grams = set().union(*[_ngrams(s) for s in self.banned]) if self.banned else set()

    def sentence(self, rng):
        while True:
            t = TEMPLATES[rng.integers(len(TEMPLATES))]
            s = re.sub(r"\{(\w+)\}", lambda m: WORDS[m.group(1)][rng.integers(len(WORDS[m.group(1)]))], t)
            s = s[0].upper() + s[1:]
            n = _norm(s)
            if n not in self.banned and not (_ngrams(n) & self.banned_grams):
                return s

    def text(self, rng):
        return " ".join(self.sentence(rng) for _ in range(1 + (rng.random() < 0.4)))


# ---------------------------------------------------------------- eSpeak


class _ID(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
        ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p), ("id", _ID),
    ]


_EV_PHONEME = 7
_lib = None
_chunks, _events = [], []
UNMAPPED = {}


def _espeak():
    global _lib
    if _lib is None:
        import espeakng_loader

        _lib = ctypes.CDLL(espeakng_loader.get_library_path())
        # AUDIO_OUTPUT_SYNCHRONOUS, options espeakINITIALIZE_PHONEME_EVENTS
        rate = _lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0x0001)
        if rate != SR:
            raise RuntimeError(f"espeak_Initialize gave rate {rate}")
        cb_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

        def callback(wav, n, events):
            i = 0
            while events[i].type != 0:
                e = events[i]
                if e.type == _EV_PHONEME:
                    _events.append((e.sample, e.id.string.decode("utf-8", "replace")))
                i += 1
            if n > 0:
                _chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        _lib._cb = cb_type(callback)
        _lib.espeak_SetSynthCallback(_lib._cb)
    return _lib


def map_espeak(ph):
    p = ph.lstrip("',%=")
    if p in ESPEAK_MAP:
        return ESPEAK_MAP[p]
    # fall back on the longest mapped prefix (e.g. an unseen 'aI@2')
    for k in range(len(p) - 1, 0, -1):
        if p[:k] in ESPEAK_MAP:
            UNMAPPED[ph] = UNMAPPED.get(ph, 0) + 1
            return ESPEAK_MAP[p[:k]]
    raise KeyError(f"unmapped eSpeak phoneme {ph!r}")


def speak_espeak(text, voice, rate_wpm, pitch, prange):
    """-> (float64 waveform at 22050 Hz, [(start_sample, phone)])"""
    lib = _espeak()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"unknown eSpeak voice {voice}")
    lib.espeak_SetParameter(1, int(rate_wpm), 0)  # espeakRATE
    lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH
    lib.espeak_SetParameter(4, int(prange), 0)  # espeakRANGE
    _chunks.clear()
    _events.clear()
    data = text.encode() + b"\0"
    lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
    lib.espeak_Synchronize()
    x = np.concatenate(_chunks).astype(np.float64) / 32768.0
    segs = [(0, "sil")] + [(s, map_espeak(p)) for s, p in _events]
    return x, segs


# ---------------------------------------------------------------- Festival


def _scheme_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def speak_festival_batch(jobs):
    """jobs: [(text, voice, dur_stretch or None, f0_mean or None)] -> [(wave 22050, segs)]"""
    out = []
    with tempfile.TemporaryDirectory() as d:
        lines = []
        for i, (text, voice, stretch, f0) in enumerate(jobs):
            lines.append(f"(voice_{voice})")
            lines.append(f"(Parameter.set 'Duration_Stretch {stretch if stretch else 1.0:.4f})")
            if f0:
                lines.append(
                    f"(set! int_lr_params '((target_f0_mean {f0:.1f}) (target_f0_std {0.14 * f0:.1f}) "
                    "(model_f0_mean 170) (model_f0_std 34)))"
                )
            lines.append(f"(set! u (SynthText {_scheme_str(text)}))")
            lines.append(f'(utt.save.segs u "{d}/{i}.segs")')
            lines.append(f'(utt.save.wave u "{d}/{i}.wav" \'riff)')
        scm = os.path.join(d, "run.scm")
        with open(scm, "w") as f:
            f.write("\n".join(lines) + "\n")
        subprocess.run(["festival", "-b", scm], check=True, capture_output=True)
        from scipy.io import wavfile

        for i in range(len(jobs)):
            src, x = wavfile.read(f"{d}/{i}.wav")
            x = x.astype(np.float64) / 32768.0
            g = gcd(SR, src)
            x = resample_poly(x, SR // g, src // g)
            segs, start = [], 0.0
            in_body = False
            for line in open(f"{d}/{i}.segs"):
                if line.strip() == "#":
                    in_body = True
                    continue
                parts = line.split()
                if len(parts) != 3 or not in_body:
                    continue
                end, ph = float(parts[0]), parts[2]
                segs.append((int(round(start * SR)), FESTIVAL_MAP[ph]))
                start = end
            out.append((x, segs))
    return out


def speak_flite(text, voice, stretch, f0):
    """Debian's `flite` binary; -psdur prints `phone:end_seconds` per segment.
    -> (float64 waveform at 22050 Hz, [(start_sample, phone)])"""
    from scipy.io import wavfile

    with tempfile.TemporaryDirectory() as d:
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch if stretch else 1.0:.4f}"]
        if f0:
            cmd += ["--setf", f"int_f0_target_mean={f0:.1f}"]
        cmd += ["-psdur", "-t", text, "-o", f"{d}/u.wav"]
        printed = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        src, x = wavfile.read(f"{d}/u.wav")
    x = x.astype(np.float64) / 32768.0
    g = gcd(SR, src)
    x = resample_poly(x, SR // g, src // g)
    segs, start = [], 0.0
    for item in printed.split():
        ph, end = item.rsplit(":", 1)
        segs.append((int(round(start * SR)), FESTIVAL_MAP[ph]))
        start = float(end)
    return x, segs


# ---------------------------------------------------------------- features


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mel = f / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(warp=1.0):
    """Slaney-style (librosa htk=False, norm='slaney') [80, 513]; warp != 1 evaluates the
    filters at warp * f (vocal-tract-length perturbation)."""
    fft_f = np.linspace(0, SR / 2, 1 + N_FFT // 2) * warp
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), N_MELS + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_f[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    w = np.maximum(0, np.minimum(lower, upper))
    return w * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
MEL_FB = mel_filterbank()


def magnitude(x):
    xp = np.pad(np.asarray(x, dtype=np.float64), PAD, mode="reflect")
    n = 1 + (len(xp) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spec = np.fft.rfft(xp[idx] * WINDOW, axis=1)
    return np.sqrt(spec.real**2 + spec.imag**2 + 1e-9)  # [T, 513]


def log_mel(x, fb=MEL_FB, eq=None):
    mag = magnitude(x)
    if eq is not None:
        mag = mag * eq
    return np.log(np.maximum(mag @ fb.T, 1e-5))  # [T, 80]


def frame_labels(segs, n_frames, scale=1.0):
    starts = np.array([s for s, _ in segs], dtype=np.float64) * scale
    ids = np.array([PHONE_ID[p] for _, p in segs])
    centres = HOP * np.arange(n_frames) + HOP // 2
    k = np.searchsorted(starts, centres, side="right") - 1
    return ids[np.clip(k, 0, len(ids) - 1)].astype(np.uint8)


# ---------------------------------------------------------------- utterances


def add_noise(x, rng, snr):
    """x plus white or (half the time) pink-ish noise at snr dB, drawn from rng."""
    nz = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink-ish
        spec = np.fft.rfft(nz)
        spec[1:] /= np.sqrt(np.arange(1, len(spec)))
        spec[0] = 0
        nz = np.fft.irfft(spec, len(nz))
    nz *= np.sqrt(np.mean(x**2) / (np.mean(nz**2) * 10 ** (snr / 10)))
    return x + nz


def augment(x, segs, rng, aug, warp=(0.85, 1.15)):
    """-> (log-mel [T,80], labels [T]). aug False: clean features."""
    lead = np.zeros(int(rng.uniform(0.05, 0.35) * SR))
    tail = np.zeros(int(rng.uniform(0.1, 0.3) * SR))
    x = np.concatenate([lead, x, tail])
    segs = [(0, "sil")] + [(s + len(lead), p) for s, p in segs] + [(len(x) - len(tail), "sil")]
    scale = 1.0
    fb, eq = MEL_FB, None
    if aug and rng.random() > 0.2:
        if rng.random() < 0.6:  # speed perturbation: duration, pitch and formants together
            speed = rng.uniform(0.88, 1.12)
            up = 200
            down = int(round(up * speed))
            x = resample_poly(x, up, down)
            scale = up / down
        if rng.random() < 0.8:  # vocal tract length: warp the filterbank +-15 %
            fb = mel_filterbank(rng.uniform(*warp))
        f = np.linspace(0, SR / 2, 1 + N_FFT // 2)
        tilt = rng.uniform(-0.6, 0.6)  # about +-3.6 dB per octave around 1 kHz
        eq = (np.maximum(f, 100.0) / 1000.0) ** tilt
        if rng.random() < 0.3:  # band limit
            fc = rng.uniform(4000, 8000)
            eq = eq / np.sqrt(1 + (f / fc) ** 8)
        peak = rng.uniform(0.03, 0.95)
        x = x * peak / (np.max(np.abs(x)) + 1e-9)
        if rng.random() < 0.7:
            x = add_noise(x, rng, rng.uniform(15, 50))
    else:
        x = x * rng.uniform(0.1, 0.9) / (np.max(np.abs(x)) + 1e-9)
    mel = log_mel(x, fb, eq)
    return mel.astype(np.float32), frame_labels(segs, len(mel), scale)


def espeak_job(args):
    idx, seed, voice, aug = args
    rng = np.random.default_rng(seed)
    text = _TEXTS.text(rng)
    if aug:
        rate, pitch, prange = rng.uniform(120, 240), rng.uniform(15, 85), rng.uniform(20, 90)
    else:
        rate, pitch, prange = 175, 50, 50  # eSpeak defaults
    x, segs = speak_espeak(text, voice, rate, pitch, prange)
    mel, lab = augment(x, segs, rng, aug)
    return idx, mel, lab, voice, "espeak", text


def festival_job(args):
    idx0, seeds, voice, aug = args
    rngs = [np.random.default_rng(s) for s in seeds]
    texts = [_TEXTS.text(r) for r in rngs]
    jobs = []
    for r, t in zip(rngs, texts):
        if aug:
            jobs.append((t, voice, r.uniform(0.8, 1.3), r.uniform(*FESTIVAL_F0)))
        else:
            jobs.append((t, voice, None, None))
    engine = "flite" if voice.startswith("flite:") else "festival"
    if engine == "flite":
        res = [speak_flite(t, voice.split(":", 1)[1], st, f0) for t, _, st, f0 in jobs]
    else:
        res = speak_festival_batch(jobs)
    out = []
    for k, ((x, segs), r, t) in enumerate(zip(res, rngs, texts)):
        mel, lab = augment(x, segs, r, aug, FESTIVAL_WARP)
        out.append((idx0 + k, mel, lab, voice, engine, t))
    return out


_TEXTS = None


def _init_worker():
    global _TEXTS
    _TEXTS = TextGen()


def build_split(name, espeak_voices, n_espeak, festival_voices, n_festival, seed, aug, jobs):
    es = [(i, seed * 1_000_003 + i, espeak_voices[i % len(espeak_voices)], aug) for i in range(n_espeak)]
    batch = 25
    fs = []
    for b in range(0, n_festival, batch):
        ids = list(range(b, min(b + batch, n_festival)))
        voice = festival_voices[(b // batch) % len(festival_voices)]
        fs.append((n_espeak + b, [seed * 1_000_003 + 500_000 + i for i in ids], voice, aug))
    results = []
    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs, initializer=_init_worker) as pool:
            fr = pool.map_async(festival_job, fs, chunksize=1)
            results += pool.map(espeak_job, es, chunksize=16)
            for r in fr.get():
                results += r
    else:
        _init_worker()
        results += [espeak_job(a) for a in es]
        for a in fs:
            results += festival_job(a)
    results.sort(key=lambda r: r[0])
    mel = np.concatenate([r[1] for r in results]).astype(np.float16)
    lab = np.concatenate([r[2] for r in results])
    starts = np.cumsum([0] + [len(r[2]) for r in results])[:-1]
    return dict(
        mel=mel, label=lab, utt_start=starts.astype(np.int64),
        utt_voice=np.array([r[3] for r in results]), utt_engine=np.array([r[4] for r in results]),
        utt_text=np.array([r[5] for r in results]),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=2400, help="eSpeak training utterances")
    ap.add_argument("--train-festival", type=int, default=1050, help="kal_diphone, awb and rms training utterances (batches of 25 take turns)")
    ap.add_argument("--val", type=int, default=240)
    ap.add_argument("--val-festival", type=int, default=75)
    ap.add_argument("--eval", type=int, default=12, help="utterances per evaluation voice")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    summary = {"phones": PHONES, "espeak_train_voices": TRAIN_ESPEAK, "espeak_val_voices": VAL_ESPEAK,
               "festival_train_voices": [FESTIVAL_TRAIN] + FLITE_TRAIN, "eval_voices": [f"{e}:{v}" for e, v in EVAL_VOICES]}
    splits = {
        "train": (TRAIN_ESPEAK, a.train, [FESTIVAL_TRAIN] + FLITE_TRAIN, a.train_festival, 1, True),
        "val": (VAL_ESPEAK, a.val, [FESTIVAL_TRAIN] + FLITE_TRAIN, a.val_festival, 2, True),
    }
    for name, (ev, ne, fv, nf, seed, aug) in splits.items():
        d = build_split(name, ev, ne, fv, nf, seed, aug, a.jobs)
        np.savez(os.path.join(a.out, f"{name}.npz"), **d)
        summary[name] = {"utterances": len(d["utt_start"]), "frames": len(d["label"]),
                         "hours": round(len(d["label"]) * HOP / SR / 3600, 3)}
        print(name, summary[name], f"{time.time() - t0:.0f}s", flush=True)
    # evaluation voices: clean, defaults, own seed
    ev = [v for e, v in EVAL_VOICES if e == "espeak"]
    fv = [v for e, v in EVAL_VOICES if e == "festival"]
    d = build_split("eval", ev, a.eval * len(ev), fv, 0, 3, False, a.jobs)
    parts = [d]
    for k, v in enumerate(fv):  # one festival batch per voice
        parts.append(build_split("eval", [], 0, [v], a.eval, 4 + k, False, 1))
    off = 0
    merged = {}
    for key in parts[0]:
        if key == "utt_start":
            vals = []
            for p in parts:
                vals.append(p["utt_start"] + off)
                off += len(p["label"])
            merged[key] = np.concatenate(vals)
        else:
            merged[key] = np.concatenate([p[key] for p in parts])
    np.savez(os.path.join(a.out, "eval.npz"), **merged)
    summary["eval"] = {"utterances": len(merged["utt_start"]), "frames": len(merged["label"])}
    summary["seconds"] = round(time.time() - t0, 1)
    summary["unmapped_fallbacks"] = UNMAPPED
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("done", summary["eval"], f"{summary['seconds']}s")


if __name__ == "__main__":
    main()
