"""What a trimmed vocoder lookahead costs in words: copy synthesis of the
real-voice set's 20 held-out Allison prompts (target/bench-voice-real/set,
made by `cargo bench --bench voice` with MANIFOLD_VOICE_SET=real) through
the whole-file HiFi-GAN graph and through streaming graphs
(prepare_hifigan_stream.py; 4 frames per call, states carried, the output
shifted back by the graph's delay), then pocketsphinx's WER of each set
of outputs (xtask/py/asr_wer.py) beside the untouched prompts'.

usage: python hifigan_stream_wer.py OUT_DIR STREAM.onnx ...
Needs numpy, scipy, onnx, onnxruntime and pocketsphinx.
"""
import collections
import json
import os
import sys
import wave

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asr_wer  # noqa: E402
import verify_hifigan_stream as v  # noqa: E402

SET = "target/bench-voice-real/set"
WHOLE = "target/manifold-data/models/hifigan_universal/hifigan_universal.onnx"


def stream(session, path, mel):
    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    delay, state = int(props["delay_samples"]), np.zeros(int(props["state_size"]), np.float32)
    tail = np.full((1, 80, (delay + 255) // 256 + 4), np.log(1e-5), np.float32)  # silence after the prompt
    padded, out = np.concatenate([mel, tail], axis=2), []
    for i in range(0, padded.shape[2] - 3, 4):
        audio, state = session.run(None, {"mel": padded[:, :, i:i + 4], "state_in": state})
        out.append(audio.reshape(-1))
    return np.concatenate(out)[delay:delay + mel.shape[2] * 256]


def main(argv):
    out_dir, streams = argv[1], argv[2:]
    os.makedirs(out_dir, exist_ok=True)
    index = json.load(open(os.path.join(SET, "index.json")))
    tests = [x for x in index["voices"] if x["name"] == "allison"][0]["tests"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    items = [{"path": os.path.join(SET, t["path"]), "text": t["text"], "graph": "untouched prompts"} for t in tests]
    for name, path in [("whole-file", WHOLE)] + [(os.path.basename(p), p) for p in streams]:
        session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        for k, t in enumerate(tests):
            mel = v.log_mel(v.read_wav(os.path.join(SET, t["path"])))[None]
            y = session.run(None, {"mel": mel})[0].reshape(-1) if path == WHOLE else stream(session, path, mel)
            wav = os.path.join(out_dir, f"{name}_{k}.wav")
            with wave.open(wav, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(22050)
                w.writeframes((np.clip(y, -1, 1) * 32767).astype(np.int16).tobytes())
            items.append({"path": wav, "text": t["text"], "graph": name})
    totals = collections.OrderedDict()
    for item in items:
        r = asr_wer.wer_of([item])["files"][0]
        e, w = totals.get(item["graph"], (0, 0))
        totals[item["graph"]] = (e + r["errors"], w + r["words"])
    for name, (e, w) in totals.items():
        print(f"{name}: WER {e / w:.3f} ({e}/{w} words)")


if __name__ == "__main__":
    main(sys.argv)
