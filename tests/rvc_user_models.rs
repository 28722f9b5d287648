//! Users' RVC voice models: tiny generated ONNX models with the real
//! signatures (xtask/py/make_rvc_fixtures.py) are discovered, explained when
//! unusable, and converted through `HostRateStream` at 48 kHz and at the
//! model rate: output F0 follows input F0 × 2^(transpose/12), the speaker id
//! picks the gain, v1 without pitch works, the delay is as reported, and the
//! chunk seams are smooth.
//!
//! Needs target/venv (numpy, onnx) and the ONNX Runtime in
//! target/manifold-data; without them every test says SKIPPED and passes.

use manifold::dsp::pitch::track;
use manifold::pipelines::convert_rvc::{coarse_pitch, discover_voice_models, PitchSource, RvcModelEntry, RvcOptions, RvcVoice};
use manifold::pipelines::separate_mdx::USER_MODELS_ENV;
use manifold::pipelines::stream::{HostRateStream, MAX_FRAMES_PER_CALL};
use manifold::pipelines::HopModel;
use manifold::runtime::onnx::{environment, Device};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static FIXTURES: OnceLock<Option<PathBuf>> = OnceLock::new();

fn fixtures() -> Option<&'static Path> {
    FIXTURES
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rvc_user_models");
            std::env::set_var(USER_MODELS_ENV, &dir);
            let py = root.join("target/venv/bin/python");
            if !py.is_file() {
                eprintln!("SKIPPED: {} is missing; run `cargo xtask test` to create the Python environment", py.display());
                return None;
            }
            let tools = Command::new(&py).args(["-c", "import numpy, onnx"]).output();
            if !tools.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("SKIPPED: {} cannot import numpy and onnx; run `cargo xtask test`", py.display());
                return None;
            }
            if let Err(e) = environment() {
                eprintln!("SKIPPED: {e}");
                return None;
            }
            let _ = std::fs::remove_dir_all(&dir);
            let out = Command::new(&py).arg(root.join("xtask/py/make_rvc_fixtures.py")).arg(&dir).output().expect("python runs");
            assert!(out.status.success(), "make_rvc_fixtures.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
            Some(dir)
        })
        .as_deref()
}

macro_rules! fixtures_or_skip {
    () => {
        match fixtures() {
            Some(dir) => dir,
            None => return,
        }
    };
}

fn discovered(dir: &Path) -> Vec<RvcModelEntry> {
    discover_voice_models().into_iter().filter(|e| e.onnx.starts_with(dir)).collect()
}

fn entry(dir: &Path, stem: &str) -> RvcModelEntry {
    discovered(dir).into_iter().find(|e| e.onnx.file_stem().unwrap() == stem).unwrap_or_else(|| panic!("{stem} not discovered"))
}

fn sine(n: usize, rate: u32, f: f64, amp: f64) -> Vec<f32> {
    (0..n).map(|i| (amp * (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin()) as f32).collect()
}

/// Runs `x` (planar channels) through the stream in irregular blocks.
fn run_stream(stream: &mut HostRateStream, x: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let (c, n) = (x.len(), x[0].len());
    let mut y = vec![vec![0.0f32; n]; c];
    let (mut inb, mut outb) = (vec![0.0f32; c * MAX_FRAMES_PER_CALL], vec![0.0f32; c * MAX_FRAMES_PER_CALL]);
    let (mut pos, mut block) = (0usize, 1usize);
    while pos < n {
        block = (block * 7 + 300) % 1500 + 1;
        let b = block.min(n - pos);
        for ch in 0..c {
            inb[ch * b..(ch + 1) * b].copy_from_slice(&x[ch][pos..pos + b]);
        }
        stream.process(&inb[..c * b], &mut outb[..c * b], b);
        for ch in 0..c {
            y[ch][pos..pos + b].copy_from_slice(&outb[ch * b..(ch + 1) * b]);
        }
        pos += b;
    }
    y
}

fn median_f0(y: &[f32], rate: u32) -> f32 {
    let mut f: Vec<f32> = track(y, rate).iter().filter(|p| p.voiced).map(|p| p.f0_hz).collect();
    assert!(f.len() > 20, "output is (nearly) unvoiced");
    f.sort_by(|a, b| a.partial_cmp(b).unwrap());
    f[f.len() / 2]
}

fn peak(y: &[f32]) -> f32 {
    y.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn max_jump(y: &[f32]) -> f32 {
    y.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
}

#[test]
fn discovery_lists_voice_models_and_explains_unusable_ones() {
    let dir = fixtures_or_skip!();
    let found = discovered(dir);
    let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
    // Encoders and the pitch model are not voice models.
    assert_eq!(names, ["bad_rate", "lost_encoder", "no_rate", "Tiny V2", "tiny_v1_48k", "wrong_dims"]);
    let v2 = found[3].settings.as_ref().unwrap();
    assert_eq!((v2.sample_rate, v2.emb_channels, v2.f0, v2.speakers), (40000, Some(768), true, Some(3)));
    assert_eq!(v2.encoder, dir.join("vec-768-layer-12.onnx"));
    assert_eq!(v2.pitch_model.as_deref(), Some(dir.join("rmvpe.onnx").as_path()));
    // From w-okada's metadata alone, with the default v1 encoder.
    let v1 = found[4].settings.as_ref().unwrap();
    assert_eq!((v1.sample_rate, v1.emb_channels, v1.f0), (48000, Some(256), false));
    assert_eq!(v1.encoder, dir.join("vec-256-layer-9.onnx"));
    assert!(v1.sidecar.is_none());

    let bad = found[0].error().unwrap();
    assert!(bad.contains("bad_rate.json") && bad.contains("key `sample_rate`") && bad.contains("\"forty\""), "{bad}");
    let lost = found[1].error().unwrap();
    assert!(lost.contains("lost_encoder.toml") && lost.contains("key `encoder`") && lost.contains("hubert_missing.onnx"), "{lost}");
    let no_rate = found[2].error().unwrap();
    assert!(no_rate.contains("missing key `sample_rate`") && no_rate.contains("no_rate.toml"), "{no_rate}");
    eprintln!("{bad}\n{lost}\n{no_rate}");

    // A sidecar that disagrees with the graph is refused at load, naming the key.
    let err = RvcVoice::load(&entry(dir, "wrong_dims"), RvcOptions::default(), 1, Device::Cpu).err().expect("768 features vs version v1");
    let m = err.to_string();
    assert!(m.contains("768 features") && m.contains("`version`") && m.contains("version = \"v2\"") && m.contains("wrong_dims.toml"), "{m}");
    eprintln!("{m}");
    // Unusable entries refuse to load with the discovery message.
    let err = RvcVoice::load(&found[2], RvcOptions::default(), 1, Device::Cpu).err().unwrap();
    assert_eq!(err.to_string(), no_rate);
}

/// v2 with pitch: transpose moves the output F0 by 2^(t/12), speaker ids pick
/// their gains, at the model rate and at 48 kHz, stereo and mono; no clicks.
#[test]
fn v2_follows_pitch_transpose_and_speaker_at_any_rate() {
    let dir = fixtures_or_skip!();
    let e = entry(dir, "tiny_v2_40k");
    let (f_in, amp) = (200.0f64, 0.5f64); // whole periods per 20 ms encoder frame: a steady level
    for (host, channels) in [(40000u32, 1usize), (48000, 2)] {
        for (transpose, speaker, gain) in [(0.0f32, 0u32, 1.0f32), (7.0, 1, 0.5), (-12.0, 2, 0.25)] {
            let mut voice = RvcVoice::load(&e, RvcOptions::default(), channels, Device::Cpu).unwrap();
            voice.set_transpose(transpose);
            voice.set_speaker(speaker).unwrap();
            assert!(voice.set_speaker(3).is_err(), "the sidecar says 3 speakers");
            let mut stream = HostRateStream::new(Box::new(voice), host).unwrap();
            let n = host as usize * 3;
            let x: Vec<Vec<f32>> = (0..channels).map(|_| sine(n, host, f_in, amp)).collect();
            let y = run_stream(&mut stream, &x);
            assert_eq!(stream.model().faults(), 0);
            let steady = &y[0][n / 2..];
            let f0 = median_f0(steady, host);
            let want = f_in as f32 * 2f32.powf(transpose / 12.0);
            let level = peak(steady);
            // A sine's largest step between samples, plus 25 % for the crossfade.
            let smooth = (amp as f32 * gain) * 2.0 * std::f32::consts::PI * want / host as f32;
            let jump = max_jump(steady);
            eprintln!("{host} Hz {channels} ch, transpose {transpose:+}, speaker {speaker}: F0 {f0:.1} Hz (want {want:.1}), peak {level:.3} (want {:.3}), max step {jump:.4} (sine {smooth:.4})", amp as f32 * gain);
            assert!((f0 / want - 1.0).abs() < 0.01, "F0 {f0} instead of {want}");
            assert!((level / (amp as f32 * gain) - 1.0).abs() < 0.08, "peak {level}, want {}", amp as f32 * gain);
            assert!(jump < 1.25 * smooth, "a click at a seam: step {jump} vs {smooth}");
            if channels == 2 {
                assert_eq!(y[0], y[1], "the converted mid goes to both channels");
            }
        }
    }
}

/// The delay `delay()` reports is where an amplitude envelope comes out
/// (within SOLA's ±search/2), at the model rate and through a 48 kHz stream.
#[test]
fn reported_delay_is_measured_delay() {
    let dir = fixtures_or_skip!();
    let e = entry(dir, "tiny_v2_40k");
    for host in [40000u32, 48000] {
        let voice = RvcVoice::load(&e, RvcOptions::default(), 1, Device::Cpu).unwrap();
        let (d_model, search, xfade, window) = (voice.delay(), voice.sola_search(), voice.crossfade(), voice.window_frames());
        let (d16, pitch_delay) = voice.front_end_delays();
        let hop = voice.hop();
        let mut stream = HostRateStream::new(Box::new(voice), host).unwrap();
        let reported = stream.latency().total;
        let n = host as usize * 4;
        let env = |t: f64| 0.3 + 0.2 * (2.0 * std::f64::consts::PI * 1.5 * t).sin();
        let x: Vec<f32> = (0..n).map(|i| {
            let t = i as f64 / host as f64;
            (env(t) * (2.0 * std::f64::consts::PI * 200.0 * t).sin()) as f32
        }).collect();
        let y = run_stream(&mut stream, &[x]).remove(0);
        // Output amplitude: sliding RMS over one 20 ms period block × √2, centred.
        let half = host as usize / 100;
        let mut sq = vec![0.0f64; n + 1];
        for i in 0..n {
            sq[i + 1] = sq[i] + (y[i] as f64).powi(2);
        }
        let from = host as usize + reported;
        let to = n - half - 1;
        let step = host as usize / 4000;
        let (mut best, mut best_err) = (0usize, f64::INFINITY);
        for lag in (reported.saturating_sub(host as usize / 25)..reported + host as usize / 25).step_by(step.max(1)) {
            let mut err = 0.0;
            for i in (from..to).step_by(37) {
                let a = ((sq[i + half] - sq[i - half]) / (2 * half) as f64 * 2.0).sqrt();
                err += (a - env((i - lag) as f64 / host as f64)).powi(2);
            }
            if err < best_err {
                best_err = err;
                best = lag;
            }
        }
        let tolerance = (search as f64 / 2.0 * host as f64 / 40000.0) as usize + 2 * step.max(1);
        eprintln!(
            "{host} Hz: model delay {d_model} (hop {hop}, window {window} frames, search {search}, crossfade {xfade}, 16k resampler {d16}, pitch {pitch_delay} frames); stream reports {reported}, measured {best} (±{tolerance})"
        );
        assert!(best.abs_diff(reported) <= tolerance, "reported {reported}, measured {best}");
    }
}

/// v1 without pitch (w-okada's names, metadata only): a 300 Hz voice whose
/// level follows the input and the speaker's gain.
#[test]
fn v1_without_pitch_converts() {
    let dir = fixtures_or_skip!();
    let e = entry(dir, "tiny_v1_48k");
    for (speaker, gain) in [(0u32, 1.0f32), (1, 0.6)] {
        let mut voice = RvcVoice::load(&e, RvcOptions::default(), 2, Device::Cpu).unwrap();
        assert!(!voice.takes_pitch());
        assert_eq!((voice.sample_rate(), voice.emb_channels()), (48000, 256));
        assert!(voice.set_pitch_source(PitchSource::Rmvpe).is_err());
        voice.set_speaker(speaker).unwrap();
        voice.set_transpose(5.0); // no effect without pitch
        let mut stream = HostRateStream::new(Box::new(voice), 44100).unwrap();
        let n = 44100 * 3;
        let x = vec![sine(n, 44100, 200.0, 0.4), sine(n, 44100, 200.0, 0.2)];
        let y = run_stream(&mut stream, &x);
        assert_eq!(stream.model().faults(), 0);
        let steady = &y[0][n / 2..];
        let f0 = median_f0(steady, 44100);
        let level = peak(steady);
        eprintln!("v1 speaker {speaker}: F0 {f0:.1} Hz, peak {level:.3} (want {:.3})", 0.3 * gain);
        assert!((f0 / 300.0 - 1.0).abs() < 0.01, "{f0}");
        // The mid of 0.4 and 0.2 in phase is 0.3.
        assert!((level / (0.3 * gain) - 1.0).abs() < 0.08, "{level}");
    }
}

/// With RMVPE as the pitch source the fixture's 150 Hz replaces the input's F0.
#[test]
fn rmvpe_pitch_source() {
    let dir = fixtures_or_skip!();
    let e = entry(dir, "tiny_v2_40k");
    let mut voice = RvcVoice::load(&e, RvcOptions::default(), 1, Device::Cpu).unwrap();
    assert!(voice.has_rmvpe());
    voice.set_pitch_source(PitchSource::Rmvpe).unwrap();
    voice.set_transpose(12.0);
    let mut stream = HostRateStream::new(Box::new(voice), 48000).unwrap();
    let n = 48000 * 3;
    let y = run_stream(&mut stream, &[sine(n, 48000, 220.0, 0.5)]).remove(0);
    assert_eq!(stream.model().faults(), 0);
    let f0 = median_f0(&y[n / 2..], 48000);
    eprintln!("RMVPE, +12: F0 {f0:.1} Hz (want 300)");
    assert!((f0 / 300.0 - 1.0).abs() < 0.01, "{f0}");
}

#[test]
fn coarse_pitch_matches_rvc() {
    // RVC: 1127 ln(1 + f/700) mapped from [mel(50), mel(1100)] onto [1, 255], rounded; 1 when unvoiced.
    assert_eq!(coarse_pitch(0.0), 1);
    assert_eq!(coarse_pitch(50.0), 1);
    assert_eq!(coarse_pitch(1100.0), 255);
    assert_eq!(coarse_pitch(5000.0), 255);
    let mel = |f: f64| 1127.0 * (1.0 + f / 700.0).ln();
    for f in [80.0f64, 220.0, 440.0, 700.0] {
        let want = ((mel(f) - mel(50.0)) * 254.0 / (mel(1100.0) - mel(50.0)) + 1.0).round() as i64;
        assert_eq!(coarse_pitch(f as f32), want, "{f}");
    }
}
