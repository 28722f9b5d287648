//! HiFi-GAN universal vocoder: copy synthesis (mel → audio → mel), streaming
//! against offline vocoding, output length and finiteness. Needs the
//! installed model (`cargo xtask models hifigan_universal`); skipped without.
//!
//! The speed measurement is `#[ignore]`d:
//! `cargo test --release --test hifigan -- --ignored --nocapture`.

use manifold::dsp::mel::{log_mel, MelFrame, HOP, LOG_SILENCE, N_MELS};
use manifold::pipelines::vocoder_hifigan::{HifiGan, StreamingConfig, StreamingVocoder, MODEL_FILE, SAMPLE_RATE};
use manifold::runtime::onnx::Device;
use std::path::PathBuf;
use std::time::Instant;

/// Streaming must match offline vocoding at least this well (the measured
/// value with the default context is far higher; see vocoder_hifigan.rs).
const MIN_STREAM_SNR_DB: f64 = 45.0;

fn model_dir() -> Option<PathBuf> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data");
    let dir = data.join("models/hifigan_universal");
    let lib = data.join("runtime").join(manifold::runtime::store::RUNTIME_LIB_NAME);
    if dir.join(MODEL_FILE).is_file() && lib.is_file() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is not installed (run `cargo xtask models hifigan_universal`)", dir.display());
        None
    }
}

/// A voiced-speech-like test signal: a harmonic tone whose pitch glides
/// 110..220 Hz, with a syllable-rate envelope and a little noise.
fn test_signal(seconds: f32) -> Vec<f32> {
    let sr = SAMPLE_RATE as f32;
    let n = (seconds * sr) as usize;
    let mut phase = 0f32;
    let mut seed = 0x1234_5678u32;
    (0..n)
        .map(|i| {
            let t = i as f32 / sr;
            let f0 = 110.0 + 110.0 * (0.5 - 0.5 * (2.0 * std::f32::consts::PI * 0.3 * t).cos());
            phase += 2.0 * std::f32::consts::PI * f0 / sr;
            let tone: f32 = (1..30).map(|k| (k as f32 * phase).sin() / k as f32).sum::<f32>() * 0.15;
            let env = 0.2 + 0.8 * (std::f32::consts::PI * 3.0 * t).sin().powi(2);
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let noise = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            tone * env + 0.01 * noise
        })
        .collect()
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (r, t) in reference.iter().zip(test) {
        sig += (*r as f64).powi(2);
        err += (*r as f64 - *t as f64).powi(2);
    }
    10.0 * (sig / err.max(1e-30)).log10()
}

/// Streams `mel` through `v` in calls of N frames (flushing with silence
/// frames) and returns the output aligned to the offline one.
fn stream_all(v: &mut StreamingVocoder, mel: &[MelFrame]) -> Vec<f32> {
    let n = v.frames_per_call();
    let d = v.delay_frames();
    let total = (mel.len() + d).div_ceil(n) * n;
    let mut frames: Vec<MelFrame> = mel.to_vec();
    frames.resize(total, [LOG_SILENCE; N_MELS]);
    let mut out = vec![0f32; total * HOP];
    for (c, block) in frames.chunks_exact(n).enumerate() {
        v.process(block, &mut out[c * n * HOP..(c + 1) * n * HOP]).expect("streaming call");
    }
    out.drain(..d * HOP);
    out.truncate(mel.len() * HOP);
    out
}

#[test]
fn copy_synthesis_keeps_the_mel_spectrum() {
    let Some(dir) = model_dir() else { return };
    let x = test_signal(3.0);
    let mel = log_mel(&x);
    let mut net = HifiGan::load(&dir, Device::Cpu).expect("load");
    let y = net.vocode(&mel).expect("vocode");
    assert_eq!(y.len(), mel.len() * HOP);
    assert!(y.iter().all(|v| v.is_finite() && v.abs() <= 1.0));
    let mel2 = log_mel(&y);
    assert_eq!(mel2.len(), mel.len());
    // Mean |Δ ln mel| over the bands and frames away from the edges.
    let (mut sum, mut count) = (0f64, 0usize);
    for (a, b) in mel[4..mel.len() - 4].iter().zip(&mel2[4..mel.len() - 4]) {
        for (p, q) in a.iter().zip(b) {
            sum += (p - q).abs() as f64;
            count += 1;
        }
    }
    let mean = sum / count as f64;
    let rms_in = (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
    let rms_out = (y.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
    eprintln!("copy synthesis: mean |Δ log-mel| {mean:.3} nats over {} frames; rms in {rms_in:.4}, out {rms_out:.4}", mel.len() - 8);
    assert!(mean < 0.8, "log-mel distance {mean}");
    assert!((rms_out / rms_in).log10().abs() < 0.3, "level {rms_in} -> {rms_out}");
}

#[test]
fn streaming_matches_offline_vocoding() {
    let Some(dir) = model_dir() else { return };
    let x = test_signal(2.0);
    let mel = log_mel(&x);
    let mut net = HifiGan::load(&dir, Device::Cpu).expect("load");
    let offline = net.vocode(&mel).expect("vocode");
    let cfg = StreamingConfig::DEFAULT;
    let mut v = StreamingVocoder::load(&dir, Device::Cpu, cfg).expect("load streaming");
    assert_eq!(v.delay_samples(), cfg.right * HOP);
    let streamed = stream_all(&mut v, &mel);
    assert_eq!(streamed.len(), offline.len());
    assert!(streamed.iter().all(|v| v.is_finite()));
    // The file edges differ by construction (offline: the net's zero padding
    // of the mel; streaming: silence frames), so compare the interior.
    let edge = (cfg.left.max(cfg.right) + 2) * HOP;
    let snr = snr_db(&offline[edge..offline.len() - edge], &streamed[edge..streamed.len() - edge]);
    eprintln!("streaming {cfg:?} vs offline: SNR {snr:.1} dB, delay {} samples", v.delay_samples());
    assert!(snr > MIN_STREAM_SNR_DB, "streaming SNR {snr:.1} dB");
    assert_eq!(v.faults(), 0);
}

#[test]
fn push_frame_is_process_with_a_fixed_extra_delay() {
    let Some(dir) = model_dir() else { return };
    let x = test_signal(0.6);
    let mel = log_mel(&x);
    let cfg = StreamingConfig { left: 12, new: 3, right: 12 };
    let mut a = StreamingVocoder::load(&dir, Device::Cpu, cfg).expect("load");
    let mut b = StreamingVocoder::load(&dir, Device::Cpu, cfg).expect("load");
    let frames = mel.len() / cfg.new * cfg.new;
    let mut blocks = vec![0f32; frames * HOP];
    for (c, block) in mel[..frames].chunks_exact(cfg.new).enumerate() {
        a.process(block, &mut blocks[c * cfg.new * HOP..(c + 1) * cfg.new * HOP]).unwrap();
    }
    let mut pushed = vec![0f32; frames * HOP];
    for (f, frame) in mel[..frames].iter().enumerate() {
        b.push_frame(frame, &mut pushed[f * HOP..(f + 1) * HOP]).unwrap();
    }
    // push_frame is N − 1 frames later than process.
    let extra = (b.push_delay_frames() - a.delay_frames()) * HOP;
    assert_eq!(extra, (cfg.new - 1) * HOP);
    let diff = blocks[..frames * HOP - extra].iter().zip(&pushed[extra..]).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-6, "max diff {diff}");
}

/// Real-time factors (seconds of compute per second of audio); prints.
#[test]
#[ignore]
fn speed() {
    let Some(dir) = model_dir() else { return };
    let x = test_signal(10.0);
    let mel = log_mel(&x);
    let seconds = (mel.len() * HOP) as f64 / SAMPLE_RATE as f64;
    for threads in [1, 2] {
        let mut net = HifiGan::load_with_threads(&dir, Device::Cpu, threads).expect("load");
        net.vocode(&mel[..32]).unwrap();
        let mut best = f64::MAX;
        for _ in 0..2 {
            let t = Instant::now();
            net.vocode(&mel).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
        }
        eprintln!("offline, {threads} thread(s): {best:.3} s for {seconds:.2} s, RTF {:.4}", best / seconds);
    }
    let frames = &mel[..mel.len().min(344)]; // 4 s
    let secs = (frames.len() * HOP) as f64 / SAMPLE_RATE as f64;
    for cfg in [StreamingConfig::DEFAULT, StreamingConfig { left: 12, new: 1, right: 12 }, StreamingConfig { left: 12, new: 8, right: 12 }] {
        let mut v = StreamingVocoder::load(&dir, Device::Cpu, cfg).expect("load");
        let t = Instant::now();
        let _ = stream_all(&mut v, frames);
        let el = t.elapsed().as_secs_f64();
        eprintln!("streaming {cfg:?}, 1 thread: RTF {:.4} ({:.2} ms per call)", el / secs, 1e3 * el / (frames.len() / cfg.new) as f64);
    }
}
