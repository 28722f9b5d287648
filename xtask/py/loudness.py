"""Integrated loudness (ITU-R BS.1770-4) and true peak of WAV files.

Manifold Voice's outputs must keep the input's loudness (within +-1 LU) and
stay at or below -1 dBTP; the Voice bench measures both with this.

- Loudness: K-weighting at the file's own rate (the two biquads of
  BS.1770-4 -- a +4 dB high shelf near 1.7 kHz and the RLB high-pass near
  38 Hz -- designed from their analogue parameters, so that at 48 kHz they
  reproduce the standard's coefficients; see k_weighting), mean square over
  400 ms blocks with 75 % overlap, summed over channels (weight 1 each:
  mono, stereo), block loudness -0.691 + 10 log10(z); absolute gate
  -70 LUFS, relative gate 10 LU below the loudness of the blocks that pass
  the absolute gate; integrated loudness over the blocks that pass both.
  A file shorter than one block, or all below the gates, has no loudness
  (null).
- True peak: 4x oversampling (scipy resample_poly with a Kaiser window of
  beta 8: within 0.02 dB on steady sines up to 19 kHz at 48 kHz), maximum
  absolute sample over all channels, in dBTP.
Files: 16-bit PCM or 32-bit float WAV, any rate and channel count.

usage: python loudness.py LIST.json [-o OUT.json]
       python loudness.py --check
LIST.json (stdin when absent or "-") is a list of {"path", "source"} (as
asr_wer.py's lists, "source" optional: the file it was made from); relative
paths are taken from the list file's folder. Prints (or writes to OUT.json)
{"files": [{"path", "lufs", "true_peak_dbtp", "source", "source_lufs",
"source_true_peak_dbtp"}]} (null where there is no value).
--check prints the unit checks (sines with known loudness and true peak) and
fails if one is off.
As a module: integrated_loudness(x, rate) with x of shape (n,) or (n, ch),
true_peak_dbtp(x), read_wav(path) -> (x (n, ch), rate).
"""
import argparse
import json
import math
import os
import sys
import wave

import numpy as np
from scipy.signal import lfilter, resample_poly

BLOCK_S = 0.4
STEP_S = 0.1
ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
OVERSAMPLE = 4


def k_weighting(rate):
    """[(b, a), (b, a)]: BS.1770-4's pre-filter (high shelf) and RLB high-pass at `rate`."""
    # Stage 1: the high shelf, from its analogue parameters (gain, centre,
    # Q); at 48 kHz: b = [1.53512486, -2.69169619, 1.19839281],
    # a = [1, -1.69065929, 0.73248077] as in the standard.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = ([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
             [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    # Stage 2: the high-pass; at 48 kHz a = [1, -1.99004745, 0.99007225].
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / rate)
    a0 = 1 + k / q + k * k
    highpass = ([1.0, -2.0, 1.0], [1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0])
    return [shelf, highpass]


def _channels(x):
    x = np.asarray(x, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def integrated_loudness(x, rate):
    """Integrated loudness in LUFS, or None (shorter than a block, or gated out)."""
    x = _channels(x)
    for b, a in k_weighting(rate):
        x = lfilter(b, a, x, axis=0)
    block, step = int(round(BLOCK_S * rate)), int(round(STEP_S * rate))
    if len(x) < block:
        return None
    n_blocks = 1 + (len(x) - block) // step
    # Mean square per block and channel, from a running sum of squares.
    c = np.concatenate([np.zeros((1, x.shape[1])), np.cumsum(x * x, axis=0)])
    starts = np.arange(n_blocks) * step
    z = ((c[starts + block] - c[starts]) / block).sum(axis=1)
    with np.errstate(divide="ignore"):
        l = -0.691 + 10 * np.log10(z)
    gated = z[l > ABSOLUTE_GATE]
    if len(gated) == 0:
        return None
    relative = -0.691 + 10 * np.log10(gated.mean()) + RELATIVE_GATE
    gated = z[(l > ABSOLUTE_GATE) & (l > relative)]
    return float(-0.691 + 10 * np.log10(gated.mean())) if len(gated) else None


def true_peak_dbtp(x):
    """True peak in dBTP (4x oversampled), or None for digital silence."""
    x = _channels(x)
    peak = float(np.max(np.abs(resample_poly(x, OVERSAMPLE, 1, axis=0, window=("kaiser", 8.0))))) if len(x) else 0.0
    return 20 * math.log10(peak) if peak > 0 else None


def read_wav(path):
    """16-bit PCM or 32-bit float WAV -> (float64 samples (n, ch), rate)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head[:4] == b"RIFF" and head[20:22] == b"\x03\x00":  # IEEE float: wave can't read it
        return _read_float_wav(path)
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM or 32-bit float WAV is supported")
        rate, ch = w.getframerate(), w.getnchannels()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0
    return x.reshape(-1, ch), rate


def _read_float_wav(path):
    data = open(path, "rb").read()
    pos, rate, ch, bits, samples = 12, None, None, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            ch, rate, bits = int.from_bytes(body[2:4], "little"), int.from_bytes(body[4:8], "little"), int.from_bytes(body[14:16], "little")
        elif cid == b"data":
            samples = body
        pos += 8 + size + (size & 1)
    if bits != 32 or samples is None:
        raise ValueError(f"{path}: unsupported float WAV")
    return np.frombuffer(samples[: len(samples) // 4 * 4], dtype="<f4").astype(np.float64).reshape(-1, ch), rate


def measure(path):
    x, rate = read_wav(path)
    return integrated_loudness(x, rate), true_peak_dbtp(x)


def measure_list(items, base_dir=None):
    """[{"path", "source"?}] -> {"files": [...]} (see the module docstring)."""
    cache, files = {}, []

    def get(p):
        full = p if base_dir is None or os.path.isabs(p) else os.path.join(base_dir, p)
        if full not in cache:
            cache[full] = measure(full)
        return cache[full]

    for item in items:
        lufs, tp = get(item["path"])
        row = {"path": item["path"], "lufs": lufs, "true_peak_dbtp": tp}
        if item.get("source"):
            s_lufs, s_tp = get(item["source"])
            row.update({"source": item["source"], "source_lufs": s_lufs, "source_true_peak_dbtp": s_tp})
        files.append(row)
    return {"files": files}


def check():
    """Unit checks on sines; prints them, raises if one is off."""
    rows = []

    def sine(freq, rate, peak_dbfs, seconds=5.0, phase=0.0):
        t = np.arange(int(seconds * rate)) / rate
        return 10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * freq * t + phase)

    # Below 44.1 kHz the bilinear transform bends the shelf a little (a few
    # hundredths of a dB at 1 kHz), hence the wider tolerance there.
    for rate in (48000, 44100, 22050, 16000):
        rows.append((f"997 Hz sine, 0 dBFS peak, {rate} Hz: LUFS", integrated_loudness(sine(997, rate, 0.0), rate), -3.01, 0.02 if rate >= 44100 else 0.05))
    rows.append(("1 kHz sine, -20 dBFS peak, 48000 Hz: LUFS", integrated_loudness(sine(1000, 48000, -20.0), 48000), -23.0, 0.05))
    rows.append(("1 kHz sine, -20 dBFS peak, 22050 Hz: LUFS", integrated_loudness(sine(1000, 22050, -20.0), 22050), -23.0, 0.05))
    st = np.stack([sine(1000, 48000, -20.0)] * 2, axis=1)
    rows.append(("1 kHz sine, -20 dBFS peak, stereo (both channels), 48000 Hz: LUFS", integrated_loudness(st, 48000), -20.0, 0.05))
    # Gating: 10 s at -20 dBFS peak then 10 s at -80 dBFS: the quiet blocks
    # fall below the absolute gate; of the three blocks straddling the step,
    # those with 3/4 and 2/4 of their length loud pass the relative gate
    # and the 1/4 one too (-6 dB), so the mean square is (97 + 1.5) / 100 of
    # the loud blocks': -23.00 - 0.066 = -23.07 LUFS (a 10 s file is 97 blocks).
    gated = np.concatenate([sine(1000, 48000, -20.0, 10.0), sine(1000, 48000, -80.0, 10.0)])
    rows.append(("1 kHz, 10 s at -20 dBFS + 10 s at -80 dBFS: LUFS (gated)", integrated_loudness(gated, 48000), -23.07, 0.02))
    rows.append(("1 kHz, 10 s at -80 dBFS alone: LUFS (none, all gated: nan)", integrated_loudness(sine(1000, 48000, -80.0, 10.0), 48000) or float("nan"), float("nan"), 0))
    # True peak: a sine at fs/4 sampled 45 degrees off its crests has sample
    # peaks 3.01 dB below its true peak of 0 dBFS.
    # (10 ms raised-cosine fades: an abrupt start would overshoot for real.)
    x = sine(12000, 48000, 0.0, 1.0, np.pi / 4)
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(480) / 480)
    x[:480] *= fade
    x[-480:] *= fade[::-1]
    rows.append(("12 kHz sine at 48 kHz, 45 deg phase: sample peak dBFS", 20 * math.log10(np.max(np.abs(x))), -3.01, 0.02))
    rows.append(("same: true peak dBTP", true_peak_dbtp(x), 0.0, 0.05))
    bad = False
    for label, got, want, tol in rows:
        ok = got is not None and (abs(got - want) <= tol or (math.isnan(want) and math.isnan(got)))
        bad |= not ok
        print(f"{label:<66} {got:+8.3f} (expected {want:+.2f} +- {tol})  {'ok' if ok else 'FAIL'}")
    if bad:
        raise SystemExit("loudness check failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("list", nargs="?", default="-", help="JSON list of {path, source}; stdin when '-'")
    ap.add_argument("-o", "--out", help="write the result here instead of stdout")
    ap.add_argument("--check", action="store_true", help="run the unit checks")
    a = ap.parse_args()
    if a.check:
        check()
        return
    if a.list == "-":
        items, base = json.load(sys.stdin), None
    else:
        with open(a.list) as f:
            items = json.load(f)
        base = os.path.dirname(os.path.abspath(a.list))
    text = json.dumps(measure_list(items, base), indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
