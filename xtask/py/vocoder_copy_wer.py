"""What a vocoder alone costs in words: copy synthesis (`manifold
copy-synthesis`: each recording's log-mel and F0 straight into the vocoder,
no conversion), then pocketsphinx's WER (asr_wer.py) of the untouched
recordings and of each vocoder's copies.

Two sets of Allison's recorded prompts (asterisk-core-sounds-en-g722):
- `test`: the real-voice set's 20 held-out test prompts (SET_DIR, made by
  `cargo bench --bench voice` with MANIFOLD_VOICE_SET=real);
- `dev`: N other prompts, with names before "m" (never in the voice bench's
  tests), for tuning a vocoder without looking at the test prompts. Same
  selection rules and preparation as make_real_voice_set.py.

Beside the WER, for each vocoder: the log-mel distance of the copies to
the recordings (mean |difference| of HiFi-GAN's natural-log mel over each
prompt's loudest 40 % of frames, in dB) and where the copies' energy
envelope sits against the recording's (lag of the best match of 5 ms log
energy envelopes within ±68 ms, in samples; + = the copy is late).

usage: python vocoder_copy_wer.py MANIFOLD_BIN SET_DIR OUT_DIR [--dev N] [VOCODER ...]
VOCODER: hifigan, light, source-filter (default: hifigan, source-filter), or
source-filter+harvest: the source-filter vocoder given WORLD's F0 (pyworld's
Harvest, `pip install pyworld`) at the frames Manifold's tracker calls voiced,
and the tracker's voicing: what the tracker's F0 values cost the vocoder.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asr_wer  # noqa: E402
import make_phone_set as mps  # noqa: E402  (HiFi-GAN's mel front end)
import make_real_voice_set as real  # noqa: E402
import make_voice_set as mvs  # noqa: E402
import numpy as np  # noqa: E402
from scipy.io import wavfile  # noqa: E402


def to_pcm16(path):
    """Manifold writes float WAV; the recogniser reads 16-bit PCM."""
    rate, x = wavfile.read(path)
    wavfile.write(path, rate, (np.clip(x, -1, 1) * 32767).astype(np.int16))
    return path


def read_float(path):
    rate, x = wavfile.read(path)
    x = x.astype(np.float64)
    return x / 32768.0 if np.abs(x).max() > 2 else x


def mel_distance_db(x, y):
    """Mean |log-mel difference| over x's loudest 40 % of frames, in dB."""
    mx, my = mps.log_mel(x), mps.log_mel(y[: len(x)])
    n = min(len(mx), len(my))
    mx, my = mx[:n], my[:n]
    e = mx.mean(axis=1)
    loud = e > np.percentile(e, 60)
    return float(np.mean(np.abs(mx - my)[loud]) * 20 / np.log(10))


def envelope_lag(x, y, reach=1500, step=5):
    """Lag (samples, + = y late) of the best match of 5 ms log-energy envelopes."""
    n = min(len(x), len(y))
    if n <= 2 * reach + 1:
        return 0
    def env(s):
        e = np.log(np.convolve(s[:n] ** 2, np.ones(110) / 110, mode="same") + 1e-9)
        return e - e.mean()
    ex, ey = env(x), env(y)
    lags = range(-reach, reach, step)
    return lags[int(np.argmax([np.dot(ex[reach:n - reach], ey[reach + k:n - reach + k]) for k in lags]))]


def harvest_f0(manifold, listing, out_dir):
    """OUT_DIR/f0-harvest/<k>.f0 for each file of `listing`: pyworld's Harvest
    F0 at each mel frame's centre (256 k + 128 at 22050 Hz) where Manifold's
    tracker (`manifold frame-pitch`) calls the frame voiced, else 0."""
    import pyworld
    from scipy.signal import resample_poly
    ours, wavs, out = (os.path.join(out_dir, d) for d in ("f0-tracker", "f0-input", "f0-harvest"))
    for d in (ours, wavs, out):
        os.makedirs(d, exist_ok=True)
    files = [line.strip() for line in open(listing) if line.strip()]
    signals = []
    for k, path in enumerate(files):
        rate, x = wavfile.read(path)
        x = (x.astype(np.float64) / (32768.0 if x.dtype == np.int16 else 1.0))
        x = x.mean(axis=1) if x.ndim > 1 else x
        if rate != 22050:
            g = np.gcd(rate, 22050)
            x = resample_poly(x, 22050 // g, rate // g)
        wavfile.write(os.path.join(wavs, f"{k}.wav"), 22050, x.astype(np.float32))
        signals.append(x)
    with open(os.path.join(wavs, "list.txt"), "w") as f:
        f.write("".join(f"{k}.wav\n" for k in range(len(files))))
    subprocess.run([manifold, "frame-pitch", os.path.join(wavs, "list.txt"), "-o", ours], check=True)
    period_ms = 256 / 22050 * 1000
    for k, x in enumerate(signals):
        tracker = np.fromfile(os.path.join(ours, f"{k}.f0"), "<f4")
        f0, t = pyworld.harvest(x, 22050, f0_floor=60.0, f0_ceil=500.0, frame_period=period_ms)
        centres = (256 * np.arange(len(tracker)) + 128) / 22050
        values = np.interp(centres, t, f0)
        both = (tracker > 0) & (values > 0)
        np.where(both, values, tracker).astype("<f4").tofile(os.path.join(out, f"{k}.f0"))
    return out


def dev_set(out, n):
    """`n` of Allison's ordinary-text prompts named before "m", evenly spaced."""
    folder, ext, through = real.SOURCE[1], real.SOURCE[2], real.SOURCE[5]
    tx, words = real.transcripts(), real.dictionary()
    eligible = [(p, t) for p, t in ((p, tx.get(name)) for name, p in real.prompt_files(folder, ext)
                                    if name < real.HELD_OUT_FROM) if t and real.ordinary(t, words)]
    tests = []
    for k in range(n):
        p, t = eligible[k * len(eligible) // n]
        rel = f"dev_{k}.wav"
        real.write(out, rel, mvs.normalize_loudness(mvs.pad(real.trim(real.decode(p, through)))))
        tests.append({"path": rel, "text": t})
    return tests


def main(argv):
    manifold, set_dir, out_dir = argv[1:4]
    rest = argv[4:]
    os.makedirs(out_dir, exist_ok=True)
    if rest[:1] == ["--dev"]:
        set_dir, rest = os.path.join(out_dir, "dev-set"), rest[2:]
        os.makedirs(set_dir, exist_ok=True)
        tests = dev_set(set_dir, int(argv[5])) if not os.path.exists(os.path.join(set_dir, "tests.json")) \
            else json.load(open(os.path.join(set_dir, "tests.json")))
        json.dump(tests, open(os.path.join(set_dir, "tests.json"), "w"), indent=1)
    else:
        index = json.load(open(os.path.join(set_dir, "index.json")))
        tests = [t for v in index["voices"] for t in v["tests"]]
    vocoders = rest or ["hifigan", "source-filter"]
    listing = os.path.join(out_dir, "sources.txt")
    with open(listing, "w") as f:
        f.write("".join(os.path.abspath(os.path.join(set_dir, t["path"])) + "\n" for t in tests))
    rows = [("untouched", asr_wer.wer_of([{"path": os.path.join(set_dir, t["path"]), "text": t["text"]} for t in tests]))]
    for name in vocoders:
        d = os.path.join(out_dir, name)
        vocoder, _, f0_from = name.partition("+")
        extra = ["--f0", harvest_f0(manifold, listing, out_dir)] if f0_from == "harvest" else []
        subprocess.run([manifold, "copy-synthesis", listing, "-o", d, "--vocoder", vocoder] + extra, check=True)
        rows.append((name, asr_wer.wer_of([{"path": to_pcm16(os.path.join(d, f"{k}.wav")), "text": t["text"]}
                                           for k, t in enumerate(tests)])))
    for name, r in rows:
        words = sum(f["words"] for f in r["files"])
        print(f"{name:16s} WER {r['total_wer']:.3f} ({sum(f['errors'] for f in r['files'])} errors / {words} words, "
              f"{len(r['files'])} files)")
    for name in vocoders:
        dist, lags = [], []
        for k, t in enumerate(tests):
            x = read_float(os.path.join(set_dir, t["path"]))
            y = read_float(os.path.join(out_dir, name, f"{k}.wav"))
            dist.append(mel_distance_db(x, y))
            lags.append(envelope_lag(x, y))
        print(f"{name:16s} log-mel distance (loud frames) {np.mean(dist):.2f} dB; envelope lag median {np.median(lags):+.0f} "
              f"samples, range {min(lags):+d} to {max(lags):+d}")
    json.dump({name: r for name, r in rows}, open(os.path.join(out_dir, "copy_wer.json"), "w"), indent=1)


if __name__ == "__main__":
    main(sys.argv)
