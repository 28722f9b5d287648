"""A JUCE host that renders as fast as it can: dawdreamer (PyPI). Its first
prepare of a plugin is real-time; then it calls JUCE's setNonRealtime(true),
so its later prepares (VST3 setupProcessing) and every process call say
offline. Each plugin must take the offline plan it is given at the later
prepare (and report that plan's latency), wait for its worker, and render
what the CLI renders with its default (offline) settings, delayed by exactly
the latency it reports (dawdreamer does not compensate latency). Hosts that
never say offline are HostPace's case (src/bridge/pace.rs, its unit tests).

Picking a plugin: dawdreamer creates the first class its JUCE scanner lists
for a bundle (DawDreamer issue #90), which for Manifold.vst3 is always
Manifold Clean. JUCE lists the classes of a bundle's moduleinfo.json when it
has one (VST3 SDK 3.7.5 module info), so each check runs a bundle whose
moduleinfo.json names one class and whose library is a link to the real one.

Voice's target goes in as a saved state (`load_vst3_preset` hands the file
to the plugin's IComponent::setState: nice-plug's JSON, field
"target-reference"), and to the CLI as the same 16 kHz samples.

usage: python tests/dawdreamer_host.py Manifold.vst3 path/to/manifold path/to/testdata
Prints one line per check and closes with 'dawdreamer: N passed, M failed'.
"""
import functools
import json
import os
import subprocess
import sys
import tempfile
import traceback

import dawdreamer
import numpy as np

from hostkit import RATE, compare, music, read_wav, saved_target, stereo, vst3_preset, write_wav

BUNDLE, CLI, DATA = (os.path.abspath(a) for a in sys.argv[1:4])
BLOCK = 512
# The plugins' VST3 class ids (src/plugins/*.rs, `VST3_CLASS_ID`) as the
# module info writes them: 32 hex digits.
CLASS_IDS = {
    "Manifold Clean": b"ManifoldClean001".hex().upper(),
    "Manifold Stems": b"ManifoldStems001".hex().upper(),
    "Manifold Stems Remix": b"ManifoldStemsRmx".hex().upper(),
    "Manifold Voice": b"ManifoldVoice001".hex().upper(),
}
# An output closer than this to the dry input is not processed; a render at
# least this close to the CLI's equals it.
MAX_DRY_SNR, MIN_SNR = 20.0, 30.0
# Stem 2's gain in the Stems remix (dB; the parameter runs linearly from -60
# to +12 dB), so the remix differs from the dry input.
STEM2_DB = -12.0
results = []
work = tempfile.mkdtemp(prefix="manifold-dawdreamer-")


def check(name):
    def wrap(fn):
        try:
            detail = fn()
            results.append((name, True))
            print(f"ok   {name}: {detail}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, keep going
            results.append((name, False))
            print(f"FAIL {name}: {e}", flush=True)
            traceback.print_exc()
        return fn
    return wrap


def one_class_bundle(plugin):
    """A VST3 bundle that lists only `plugin` and loads Manifold's library."""
    bundle = os.path.join(work, plugin.replace(" ", "") + ".vst3")
    if os.path.isdir(bundle):  # made by an earlier check
        return bundle
    lib = os.path.join(bundle, "Contents", "x86_64-linux")
    os.makedirs(lib)
    os.makedirs(os.path.join(bundle, "Contents", "Resources"))
    os.symlink(os.path.join(BUNDLE, "Contents", "x86_64-linux", "Manifold.so"), os.path.join(lib, plugin.replace(" ", "") + ".so"))
    info = {
        "Name": "Manifold",
        "Version": "0.1.0",
        "Factory Info": {"Vendor": "Manifold", "URL": "", "E-Mail": "",
                         "Flags": {"Unicode": True, "Classes Discardable": False, "Component Non Discardable": False}},
        # JUCE finds the class in the library by this name and id.
        "Classes": [{"CID": CLASS_IDS[plugin], "Category": "Audio Module Class", "Name": plugin, "Vendor": "Manifold",
                     "Version": "0.1.0", "SDKVersion": "VST 3.7.2", "Sub Categories": ["Fx"], "Class Flags": 1,
                     "Cardinality": 2147483647}],
    }
    with open(os.path.join(bundle, "Contents", "Resources", "moduleinfo.json"), "w") as f:
        json.dump(info, f, indent=1)
    return bundle


def cli(args):
    """Runs `manifold ARGS` (quiet)."""
    subprocess.run([CLI, *args[:1], "-q", *args[1:]], check=True)


def render(plugin, x, params=None, state=None):
    """dawdreamer's render of `x` (frames x channels) through `plugin`, long
    enough to hold all of the delayed output: (frames x outputs, latency)."""
    engine = dawdreamer.RenderEngine(RATE, BLOCK)
    player = engine.make_playback_processor("input", np.ascontiguousarray(x.T, dtype=np.float32))
    p = engine.make_plugin_processor("plugin", one_class_bundle(plugin))
    names = [p.get_parameter_name(i) for i in range(p.get_plugin_parameter_size())]
    if state is not None:
        path = os.path.join(work, plugin.replace(" ", "") + ".vstpreset")
        with open(path, "wb") as f:
            f.write(vst3_preset(CLASS_IDS[plugin].encode(), json.dumps(state, separators=(",", ":")).encode()))
        assert p.load_vst3_preset(path), "the plugin refused the state"
    for name, value in (params or {}).items():
        p.set_parameter(names.index(name), value)
    engine.load_graph([(player, []), (p, ["input"])])
    latency = p.get_latency_samples()
    engine.render((x.shape[0] + latency + BLOCK) / RATE)
    return engine.get_audio().T.astype(np.float64), latency, names


def judge(out, latency, want, x):
    """The render delayed by exactly `latency`, processed, equal to `want`."""
    n = len(x)
    # Lag: the whole render against the CLI's, delayed by the reported latency.
    delayed = np.vstack([np.zeros((latency, want.shape[1])), want[:n]])
    lag = compare(out[: n + latency], delayed, delayed)["lag"]
    m = dict(compare(out[latency: latency + n], want[:n], x), lag=lag)
    detail = f"latency {latency}, lag {m['lag']}; SNR vs CLI {m['snr']:.1f} dB (>= {MIN_SNR:.0f}), vs dry input {m['dry']:.1f} dB (< {MAX_DRY_SNR:.0f})"
    assert m["lag"] == 0, f"output not where the reported latency says: {detail}"
    assert m["dry"] < MAX_DRY_SNR, f"the output is the dry input: {detail}"
    assert m["snr"] >= MIN_SNR, f"not the CLI's render: {detail}"
    return detail


def speech(name, seconds):
    return read_wav(os.path.join(DATA, name))[0][: int(seconds * RATE), 0]


@check("Clean: processed, equal to the CLI render, delayed by exactly the reported latency")
def _():
    x = stereo(speech("noisy_0_babble_5.wav", 6.0))
    src, dst = os.path.join(work, "clean_in.wav"), os.path.join(work, "clean_cli.wav")
    write_wav(src, x, RATE)
    cli(["clean", src, "-o", dst])
    out, latency, names = render("Manifold Clean", x)
    assert "Attenuation limit" in names, names
    return judge(out, latency, read_wav(dst)[0], x)


def stems_cli(x):
    """The CLI's stems of `x` (default settings, the plan the plugin runs
    offline), and the remix the plugin's mixer makes of them."""
    src, dst = os.path.join(work, "song.wav"), os.path.join(work, "stems_cli")
    write_wav(src, x, RATE)
    cli(["stems", "--cpu", src, "-o", dst])
    vocals, accompaniment = (read_wav(os.path.join(dst, f))[0] for f in ("vocals.wav", "accompaniment.wav"))
    return vocals, accompaniment, vocals + 10 ** (STEM2_DB / 20) * accompaniment


@functools.cache
def song():
    """The Stems input and the CLI's stems of it (shared by both Stems checks)."""
    x = stereo(music(speech("clean_2.wav", 3.5)))
    return x, stems_cli(x)


STEM2_GAIN = {"Stem 2 gain": (STEM2_DB + 60.0) / 72.0}


@check("Stems: remix and both stem outputs processed, equal to the CLI's stems, delayed by exactly the reported latency")
def _():
    x, (vocals, accompaniment, remix) = song()
    out, latency, _ = render("Manifold Stems", x, params=STEM2_GAIN)
    assert out.shape[1] == 6, f"{out.shape[1]} outputs, want 6 (remix, stem 1, stem 2)"
    return "; ".join(f"{name}: {judge(out[:, 2 * k: 2 * k + 2], latency, want, x)}"
                     for k, (name, want) in enumerate((("remix", remix), ("stem 1", vocals), ("stem 2", accompaniment))))


@check("Stems Remix: processed, equal to the CLI's remix, delayed by exactly the reported latency")
def _():
    x, (_, _, remix) = song()
    out, latency, _ = render("Manifold Stems Remix", x, params=STEM2_GAIN)
    return judge(out[:, :2], latency, remix, x)


@check("Voice with a target from its saved state: processed, equal to the CLI's conversion, delayed by exactly the reported latency")
def _():
    x = stereo(speech("clean_0.wav", 1.5))
    target = saved_target(read_wav(os.path.join(DATA, "clean_1.wav"))[0][:, 0])
    ref, src, dst = (os.path.join(work, f) for f in ("target16k.wav", "speech.wav", "voice_cli.wav"))
    write_wav(ref, target.astype(np.float64) / 32767.0, 16000)
    write_wav(src, x, RATE)
    cli(["convert", "--cpu", "--target", ref, src, "-o", dst])
    state = {"params": {}, "fields": {"target-reference": json.dumps(target.tolist(), separators=(",", ":"))}}
    out, latency, _ = render("Manifold Voice", x, state=state)
    return judge(out[:, :2], latency, read_wav(dst)[0], x)


@check("Stems voice isolation with a target from its saved state: stem 1 processed, equal to `manifold isolate`, delayed by exactly the reported latency")
def _():
    from scipy.signal import resample_poly

    fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "voicefilter")
    mix16, rate, _ = read_wav(os.path.join(fixture, "mixture.wav"))
    assert rate == 16000, rate
    x = stereo(resample_poly(mix16[:, 0], RATE // 16000, 1))
    ref = os.path.join(fixture, "reference.wav")
    src, dst, lst, emb = (os.path.join(work, f) for f in ("iso_mix.wav", "iso_cli.wav", "iso_ref.txt", "iso_ref.f32"))
    write_wav(src, x, RATE)
    cli(["isolate", "--cpu", "--voice", ref, src, "-o", dst])
    # The enrolment the plugin saves: the same embedding the CLI computes.
    with open(lst, "w") as f:
        f.write(ref + "\n")
    subprocess.run([CLI, "speaker-embeddings", lst, "-o", emb], check=True)
    embedding = np.fromfile(emb, dtype="<f4")
    assert embedding.shape == (256,), embedding.shape
    # A project saved with voice isolation selected (model 1 of [Spleeter,
    # Voice isolation]: no user models here) and a target enrolled. The model
    # goes in the state, not through set_parameter: dawdreamer applies
    # parameters as automation while rendering, after the plugin has been
    # prepared, and a switch between Stems' latency classes waits for the next
    # activation.
    state = {"params": {"model": {"i32": 1}},
             "fields": {"target-voice": json.dumps([float(v) for v in embedding], separators=(",", ":"))}}
    out, latency, _ = render("Manifold Stems", x, state=state)
    assert out.shape[1] == 6, f"{out.shape[1]} outputs, want 6 (remix, stem 1, stem 2)"
    return judge(out[:, 2:4], latency, read_wav(dst)[0], x)


passed = sum(ok for _, ok in results)
print(f"dawdreamer: {passed} passed, {len(results) - passed} failed")
sys.exit(0 if passed == len(results) else 1)
