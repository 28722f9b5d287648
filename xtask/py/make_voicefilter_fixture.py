"""Makes tests/fixtures/voicefilter/: a two-speaker mixture, an enrolment
recording of the target voice, and what the open-voicefilter-lite 0.2.0
wheel's own streaming API makes of them.

Run by hand, never by the tests, in a throw-away environment OUTSIDE the
project that has the wheel and its runtime dependencies, e.g.

    python3 -m venv /tmp/vflvenv
    /tmp/vflvenv/bin/pip install onnxruntime==1.31.1 numpy soundfile librosa onnx pyyaml \\
        scipy espeakng-loader==0.2.4
    /tmp/vflvenv/bin/pip install --no-deps open_voicefilter_lite-0.2.0-py3-none-any.whl
    /tmp/vflvenv/bin/python xtask/py/make_voicefilter_fixture.py tests/fixtures/voicefilter

Writes reference.wav and mixture.wav (16 kHz, 16-bit: the wheel is run on
exactly these quantised samples), wheel_output.wav (32-bit float, the
wheel's `StreamingVoiceFilter.step` output, one 160-sample hop per call, the
mixture followed by zeros so that its 1040-sample delay is flushed) and
wheel.json (the wheel's d-vector, delay, mask statistics, versions).
"""
import argparse
import json
import os
import sys

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_mixtures  # noqa: E402 (project code: eSpeak NG speech)
import make_speech_set as speech  # noqa: E402

RATE = 16000
HOP = 160
WHEEL_DELAY = 1040  # n_fft - hop: the wheel's output lags its input this much


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--index", type=int, default=0, help="which make_mixtures.py mixture")
    ap.add_argument("--sir", type=float, default=0.0)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    import onnxruntime
    import voicefilter_lite
    from voicefilter_lite import StreamingVoiceFilter

    rng = np.random.default_rng(20261128)
    info, mixture, _target, _interferer, enrol = make_mixtures.make_one(a.index, RATE, a.sir, rng, speech.voice_list())
    n = len(mixture) // HOP * HOP
    speech.write_wav(os.path.join(a.out, "mixture.wav"), mixture[:n], RATE)
    speech.write_wav(os.path.join(a.out, "reference.wav"), enrol, RATE)
    # Read back: the wheel sees exactly the samples the tests read.
    mix, sr1 = sf.read(os.path.join(a.out, "mixture.wav"), dtype="float32")
    ref, sr2 = sf.read(os.path.join(a.out, "reference.wav"), dtype="float32")
    assert sr1 == sr2 == RATE

    vf = StreamingVoiceFilter()
    assert (vf.hp.sample_rate, vf.hp.hop_length, vf.hp.n_fft, vf.hp.win_length) == (RATE, HOP, 1200, 640)
    vf.set_enrollment(ref)
    dvec = vf._dvec.copy()

    # Record the mask predictor's outputs on the way (statistics only).
    masks, f_adapt = [], []
    session = vf._mask_sess

    class Recorder:
        def run(self, names, feed):
            out = session.run(names, feed)
            masks.append(np.asarray(out[0]).reshape(-1).copy())
            f_adapt.append(float(np.asarray(out[1]).reshape(-1)[0]))
            return out

    vf._mask_sess = Recorder()
    total = (len(mix) + WHEEL_DELAY + HOP - 1) // HOP * HOP
    x = np.zeros(total, dtype=np.float32)
    x[: len(mix)] = mix
    y = np.concatenate([vf.step(x[i : i + HOP]) for i in range(0, total, HOP)]).astype(np.float32)
    sf.write(os.path.join(a.out, "wheel_output.wav"), y, RATE, subtype="FLOAT")

    m = np.array(masks)
    meta = {
        "wheel": f"open-voicefilter-lite {getattr(voicefilter_lite, '__version__', '0.2.0')}",
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "mixture": {**info, "sir_db": a.sir, "index": a.index},
        "wheel_delay": WHEEL_DELAY,
        "hop": HOP,
        "rate": RATE,
        "dvec": [float(v) for v in dvec],
        "mask_mean": float(m.mean()),
        "mask_std": float(m.std()),
        "mask_min": float(m.min()),
        "mask_max": float(m.max()),
        "f_adapt_mean": float(np.mean(f_adapt)),
        "final_w": float(vf._w),
    }
    with open(os.path.join(a.out, "wheel.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({k: v for k, v in meta.items() if k != "dvec"}, indent=1))


if __name__ == "__main__":
    main()
