//! `manifold stems --quality low|balanced|quality` and `manifold convert
//! --live`: the CLI renders with a plugin's live settings, which is what a
//! host exports when it activated the plugin in real time (the Ardour ring,
//! tests/ardour_host.py, compares such exports with these renders).

use manifold::offline::read_audio;
use std::path::{Path, PathBuf};
use std::process::Command;

fn manifold(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_manifold")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The first `seconds` of the Spleeter parity fixture (a real song excerpt,
/// 44.1 kHz stereo) as a 32-bit float WAV.
fn song_excerpt(dir: &Path, seconds: f32) -> PathBuf {
    let song = read_audio(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spleeter/input.flac")).unwrap();
    let n = ((seconds * song.sample_rate as f32) as usize).min(song.frames());
    let path = dir.join("song.wav");
    let spec = hound::WavSpec { channels: song.channels.len() as u16, sample_rate: song.sample_rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..n {
        for c in &song.channels {
            w.write_sample(c[i]).unwrap();
        }
    }
    w.finalize().unwrap();
    path
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (r, t) in reference.iter().zip(test) {
        sig += (*r as f64).powi(2);
        err += (*r as f64 - *t as f64).powi(2);
    }
    10.0 * (sig / err.max(1e-30)).log10()
}

/// A live plan rendered by the CLI waits for the model on every block: two
/// renders are identical, aligned to the input and of its length, and (the
/// separation masks add up to one) the stems add up to the input.
#[test]
fn stems_with_a_live_plan_are_aligned_and_repeatable() {
    let dir = tempfile::tempdir().unwrap();
    let input = song_excerpt(dir.path(), 3.0);
    let x = read_audio(&input).unwrap();
    let mut renders = Vec::new();
    for run in ["a", "b"] {
        let out = dir.path().join(run);
        let (ok, err) = manifold(&["stems", "-q", "--cpu", "--quality", "balanced", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(ok, "manifold stems --quality balanced failed: {err}");
        let v = read_audio(&out.join("vocals.wav")).unwrap();
        let a = read_audio(&out.join("accompaniment.wav")).unwrap();
        assert_eq!((v.frames(), a.frames()), (x.frames(), x.frames()), "stems must have the input's length");
        renders.push((v, a));
    }
    assert_eq!(renders[0].0.channels, renders[1].0.channels, "vocals differ between two live-plan renders");
    assert_eq!(renders[0].1.channels, renders[1].1.channels, "accompaniment differs between two live-plan renders");
    // Aligned: the stems' sum is closest to the input at shift 0 (it is not
    // the input exactly: Spleeter's masks cover the band below 11 kHz).
    let (v, a) = &renders[0];
    for c in 0..x.channels.len() {
        let sum: Vec<f32> = v.channels[c].iter().zip(&a.channels[c]).map(|(p, q)| p + q).collect();
        let at = |shift: usize| snr_db(&x.channels[c][..x.frames() - shift], &sum[shift..]).max(snr_db(&sum[..x.frames() - shift], &x.channels[c][shift..]));
        let aligned = snr_db(&x.channels[c], &sum);
        assert!(aligned > 12.0, "channel {c}: vocals + accompaniment vs input {aligned:.1} dB");
        for shift in 1..=16 {
            assert!(at(shift) < aligned, "channel {c}: the stems match the input better {shift} samples off ({:.1} vs {aligned:.1} dB)", at(shift));
        }
    }
    let vocals_share = snr_db(&x.channels[0], &v.channels[0]);
    assert!(vocals_share < 20.0, "the vocals are the input ({vocals_share:.1} dB): nothing was separated");
}

#[test]
fn unknown_live_quality_is_refused() {
    let (ok, err) = manifold(&["stems", "--quality", "best", "in.wav", "-o", "out"]);
    assert!(!ok);
    assert!(err.contains("full, low, balanced, quality"), "{err}");
}

/// `--live` is accepted; the default voice model still needs a target.
#[test]
fn convert_live_still_needs_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let input = song_excerpt(dir.path(), 0.5);
    let out = dir.path().join("out.wav");
    let (ok, err) = manifold(&["convert", "-q", "--cpu", "--live", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("needs a target voice"), "{err}");
}
