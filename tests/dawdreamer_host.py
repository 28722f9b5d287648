"""A host that renders faster than real time without saying so: dawdreamer
(PyPI, JUCE-based) prepares the plugin in real-time mode and renders as fast
as it can. Manifold must notice (the bridge's HostPace) and wait for its
worker, so the render is processed and equals the CLI's offline render.

dawdreamer loads only the first class of a multi-plugin VST3 bundle (Manifold
Clean) and does not compensate latency: its output is the plugin's, delayed
by the reported latency.

usage: python tests/dawdreamer_host.py Manifold.vst3 path/to/manifold path/to/testdata
Prints one line per check and closes with 'N passed, M failed'.
"""
import os
import subprocess
import sys
import tempfile
import traceback

import dawdreamer
import numpy as np
from scipy.io import wavfile

BUNDLE, CLI, DATA = sys.argv[1], sys.argv[2], sys.argv[3]
RATE, BLOCK = 48000, 512
results = []


def check(name):
    def wrap(fn):
        try:
            detail = fn()
            results.append((name, True))
            print(f"ok   {name}: {detail}")
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            results.append((name, False))
            print(f"FAIL {name}: {e}")
            traceback.print_exc()
        return fn
    return wrap


def read(path):
    rate, x = wavfile.read(path)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    return rate, (x[:, None] if x.ndim == 1 else x).T


def cli_clean(x, rate):
    """Manifold's offline render of `x` (channels, n): aligned, same length."""
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.wav"), os.path.join(d, "out.wav")
        wavfile.write(src, rate, x.T.copy())
        subprocess.run([CLI, "clean", "-q", src, "-o", dst], check=True)
        return read(dst)[1]


def render(x, rate):
    engine = dawdreamer.RenderEngine(rate, BLOCK)
    player = engine.make_playback_processor("input", x)
    plugin = engine.make_plugin_processor("clean", BUNDLE)
    # get_name() is the name given above; the parameters say which plugin it is.
    names = [plugin.get_parameter_name(i) for i in range(plugin.get_plugin_parameter_size())]
    assert "Attenuation limit" in names, names
    engine.load_graph([(player, []), (plugin, ["input"])])
    latency = plugin.get_latency_samples()
    engine.render((x.shape[1] + latency + BLOCK) / rate)
    return engine.get_audio(), latency


def snr_db(est, ref):
    return 10 * np.log10(np.sum(ref**2) / max(np.sum((est - ref) ** 2), 1e-20))


@check("Clean in dawdreamer (renders flat out, never says offline): processed, equal to the CLI render, delayed by exactly the reported latency")
def _():
    rate, x = read(os.path.join(DATA, "noisy_0_babble_5.wav"))
    assert rate == RATE, rate
    x = np.vstack([x[0], x[0]]) if x.shape[0] == 1 else x
    x = np.ascontiguousarray(x[:, : 6 * rate])
    want = cli_clean(x, rate)
    got, latency = render(x, rate)
    n = x.shape[1]
    # Lag by cross-correlation against the CLI render (in blocks of samples).
    lags = range(0, latency + 2 * BLOCK)
    corr = [float(np.dot(got[0, k : k + n - latency - 2 * BLOCK], want[0, : n - latency - 2 * BLOCK])) for k in lags]
    lag = int(np.argmax(corr))
    assert lag == latency, f"output delayed by {lag}, reported latency {latency}"
    aligned = got[:, latency : latency + n]
    snr = min(snr_db(aligned[c], want[c]) for c in range(2))
    dry = min(snr_db(aligned[c], x[c]) for c in range(2))
    assert snr >= 30.0, f"SNR against the CLI render {snr:.1f} dB (against the dry input {dry:.1f} dB)"
    assert dry < 20.0, f"the output is the dry input ({dry:.1f} dB)"
    return f"latency {latency}, lag {lag}; SNR vs CLI {snr:.1f} dB, vs dry input {dry:.1f} dB"


passed = sum(ok for _, ok in results)
print(f"dawdreamer: {passed} passed, {len(results) - passed} failed")
sys.exit(0 if passed == len(results) else 1)
