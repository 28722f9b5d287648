"""What the host rings (tests/ardour_host.py, tests/dawdreamer_host.py) share:
WAV files without extra packages, the test signals, and the measures (lag by
cross-correlation, SNR)."""
import struct

import numpy as np

RATE = 48000


def read_wav(path):
    """(frames x channels float64, rate, info) for PCM 16/24/32 and float 32/64 WAV/BWF/RF64."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] not in (b"RIFF", b"RF64") or raw[8:12] != b"WAVE":
        raise SystemExit(f"{path}: not a RIFF/WAVE file")
    pos, fmt, data_off, data_len, ds64 = 12, None, None, None, None
    while pos + 8 <= len(raw):
        cid, clen = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"ds64":
            ds64 = struct.unpack("<Q", raw[body + 8:body + 16])[0]
        elif cid == b"fmt ":
            tag, ch, sr, _, balign, bits = struct.unpack("<HHIIHH", raw[body:body + 16])
            if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: the sub-format GUID starts with the tag
                tag = struct.unpack("<H", raw[body + 24:body + 26])[0]
            fmt = (tag, ch, sr, balign, bits)
        elif cid == b"data":
            data_off = body
            data_len = min(ds64 if (clen == 0xFFFFFFFF and ds64) else clen, len(raw) - body)
            break
        pos = body + clen + (clen & 1)
    if fmt is None or data_off is None:
        raise SystemExit(f"{path}: no fmt/data chunk")
    tag, ch, sr, balign, bits = fmt
    nfr = data_len // balign
    buf = raw[data_off:data_off + nfr * balign]
    if tag == 3 and bits == 32:
        x = np.frombuffer(buf, "<f4").astype(np.float64)
    elif tag == 3 and bits == 64:
        x = np.frombuffer(buf, "<f8").copy()
    elif tag == 1 and bits == 16:
        x = np.frombuffer(buf, "<i2") / 32768.0
    elif tag == 1 and bits == 24:
        b = np.frombuffer(buf, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v & 0x800000, v - 0x1000000, v) / 8388608.0
    elif tag == 1 and bits == 32:
        x = np.frombuffer(buf, "<i4") / 2147483648.0
    else:
        raise SystemExit(f"{path}: unsupported WAV format tag {tag}, {bits} bits")
    return x.reshape(nfr, ch), sr, dict(tag=tag, bits=bits, data_off=data_off, frames=nfr)


def write_wav(path, data, sr):
    """32-bit float WAV; data: frames x channels (or 1-D)."""
    data = np.asarray(data, dtype="<f4")
    if data.ndim == 1:
        data = data[:, None]
    payload = data.tobytes()
    ch = data.shape[1]
    hdr = b"RIFF" + struct.pack("<I", 36 + len(payload)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 3, ch, sr, sr * ch * 4, ch * 4, 32)
    hdr += b"data" + struct.pack("<I", len(payload))
    with open(path, "wb") as f:
        f.write(hdr + payload)


def decimate3(x):
    """48 kHz -> 16 kHz: windowed-sinc low-pass (cut-off 7.2 kHz), every 3rd sample."""
    taps = np.arange(-192, 193)
    h = 0.3 * np.sinc(0.3 * taps) * np.blackman(len(taps))
    return np.convolve(x, h / h.sum(), mode="same")[::3]


def stereo(x):
    """A stereo test input from a mono one, with unequal channels, so that
    a swapped or dropped channel shows."""
    return np.stack([x, 0.8 * x], axis=1)


def saved_target(reference):
    """A target voice as Manifold Voice saves it in its state (persistent
    field "target-reference"): 16 kHz, 16-bit samples, from a 48 kHz recording."""
    x = decimate3(reference)
    return np.round(np.clip(x / max(1.0, np.max(np.abs(x))), -1, 1) * 32767).astype(np.int16)


def vst3_preset(class_id, component, controller=b""):
    """A VST3 preset (.vstpreset, and the layout hosts save a plugin's state
    in): "VST3", version 1, the class id as 32 ASCII hex digits, the offset
    of the chunk list; the component state (nice-plug's JSON) and the
    controller state; "List" of chunk id, offset and size."""
    body = component + controller
    chunks = b"List" + struct.pack("<i", 2) + b"Comp" + struct.pack("<qq", 48, len(component))
    chunks += b"Cont" + struct.pack("<qq", 48 + len(component), len(controller))
    return b"VST3" + struct.pack("<i", 1) + class_id + struct.pack("<q", 48 + len(body)) + body + chunks


def music(voice, seed=7):
    """A song-like test signal for Stems: `voice` (speech) over a synthetic
    accompaniment (chord pad, bass, kick and hi-hat at 120 bpm), deterministic."""
    n = len(voice)
    t = np.arange(n) / RATE
    rng = np.random.default_rng(seed)
    acc = np.zeros(n)
    beat = RATE // 2
    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66), (164.81, 207.65, 246.94)]
    for k in range(0, n, 4 * beat):  # one chord a bar
        seg = slice(k, min(n, k + 4 * beat))
        tt = t[seg] - t[k]
        env = np.minimum(1.0, tt / 0.05) * np.exp(-tt / 3.0)
        for f in chords[(k // (4 * beat)) % len(chords)]:
            for h, a in ((1, 1.0), (2, 0.5), (3, 0.25), (4, 0.12)):
                acc[seg] += 0.02 * a * env * np.sin(2 * np.pi * f * h * tt)
        acc[seg] += 0.05 * env * np.sin(2 * np.pi * chords[(k // (4 * beat)) % len(chords)][0] / 2 * tt)
    for k in range(0, n, beat):  # kick on every beat, hi-hat on the off-beats
        m = min(n - k, RATE // 4)
        tt = np.arange(m) / RATE
        acc[k:k + m] += 0.15 * np.exp(-tt / 0.08) * np.sin(2 * np.pi * (50 + 60 * np.exp(-tt / 0.03)) * tt)
        h = k + beat // 2
        if h < n:
            m = min(n - h, RATE // 20)
            acc[h:h + m] += 0.03 * np.exp(-np.arange(m) / (0.01 * RATE)) * rng.standard_normal(m)
    return voice + acc


# ---------------------------------------------------------------- measures
def lag_of(ref, out):
    """Lag (samples) at which out best matches ref: out[n] ~ ref[n - lag]."""
    n = len(ref) + len(out)
    nfft = 1 << (n - 1).bit_length()
    r = np.fft.irfft(np.fft.rfft(out, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    k = int(np.argmax(np.abs(r)))
    return k if k < nfft // 2 else k - nfft


def envelope_lag(ref, out, window=240, hop=24, search=4800):
    """Lag (samples, in steps of `hop`) at which out's short-time energy
    envelope (RMS over `window` samples) best matches ref's, searched within
    +-`search`, and the envelopes' correlation there. For outputs whose
    waveform is not reproducible but whose timing is: Voice's source-filter
    vocoder starts its harmonic phases and noise where the stream started,
    so a real-time roll has the CLI's envelope, not its waveform."""
    def env(x):
        c = np.concatenate([[0.0], np.cumsum(np.asarray(x, dtype=np.float64) ** 2)])
        starts = np.arange(0, len(x) - window, hop)
        return np.sqrt((c[starts + window] - c[starts]) / window)
    a, b = env(ref), env(out)
    best = (-2.0, 0)
    for k in range(-(search // hop), search // hop + 1):
        p, q = (a[:len(a) - k], b[k:]) if k >= 0 else (a[-k:], b[:len(b) + k])
        if len(p) > 2 and np.std(p) > 0 and np.std(q) > 0:
            best = max(best, (float(np.corrcoef(p, q)[0, 1]), k))
    return best[1] * hop, best[0]


def snr_db(ref, out):
    """Energy of ref over the energy of out - ref, in dB (both aligned, same shape)."""
    err = float(np.sum((out - ref) ** 2))
    sig = float(np.sum(ref ** 2))
    if sig == 0.0:
        return float("-inf")
    return float("inf") if err == 0.0 else 10.0 * np.log10(sig / err)


def compare(out, ref, dry):
    """Lag (channel 0 and 1 must agree), SNR against ref and against the dry input."""
    lags = {lag_of(ref[:, c], out[:, c]) for c in range(out.shape[1]) if np.any(ref[:, c]) and np.any(out[:, c])}
    lag = lags.pop() if len(lags) == 1 else (None if not lags else f"{sorted(lags)}")
    return dict(lag=lag, snr=snr_db(ref, out), dry=snr_db(dry, out), peak=float(np.max(np.abs(out))))
