//! Manifold Voice's default converter (`DefaultVoiceConverter`): timing,
//! pitch mapping, strength, seams between vocoder blocks, determinism, and
//! the reference checks. The signals are generated here: vowel sequences
//! from a glottal pulse train through formant resonators, one "speaker" per
//! pitch range and vocal-tract length.
//!
//! Needs `target/manifold-data/models/{hifigan_universal,content_phones}`
//! (`cargo xtask models`); without them every test says so and passes.
//! The conversion-quality table (speaker similarity, word error rate) is a
//! bench: `cargo xtask bench-voice`.

use manifold::dsp::loudness::RunningLoudness;
use manifold::dsp::pitch;
use manifold::pipelines::convert_voice::{
    self, ContentModel, ConverterSettings, DefaultVoiceConverter, TargetError, TargetVoice,
    SAMPLE_RATE,
};
use manifold::pipelines::stream::HostRateStream;
use manifold::pipelines::{ConversionControls, HopModel};
use manifold::runtime::onnx::Device;
use std::path::PathBuf;
use std::sync::Arc;

fn model_dirs() -> Option<(PathBuf, PathBuf)> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data");
    let content = data.join("models").join(convert_voice::CONTENT_MODEL_ID);
    let vocoder = data.join("models/hifigan_universal");
    let lib = data.join("runtime").join(manifold::runtime::store::RUNTIME_LIB_NAME);
    if content.join(convert_voice::CONTENT_MODEL_FILE).is_file() && vocoder.join("hifigan_universal.onnx").is_file() && lib.is_file() {
        Some((content, vocoder))
    } else {
        eprintln!("skipping: the voice models are not installed (run `cargo xtask models`)");
        None
    }
}

/// A synthetic speaker: pitch range and vocal-tract scale.
#[derive(Clone, Copy)]
struct Speaker {
    f0: f32,
    tract: f32,
}

const LOW: Speaker = Speaker { f0: 110.0, tract: 1.0 };
const HIGH: Speaker = Speaker { f0: 220.0, tract: 1.18 };

/// `seconds` of vowels (a, i, u, e, o; 250 ms each, with 40 ms gaps of
/// breath noise) at `rate`; F0 drifts ±8 % over 1.3 s so intonation exists.
fn speak(s: Speaker, seconds: f32, rate: u32, seed: u32) -> Vec<f32> {
    const VOWELS: [[f32; 3]; 5] = [[730.0, 1090.0, 2440.0], [270.0, 2290.0, 3010.0], [300.0, 870.0, 2240.0], [530.0, 1840.0, 2480.0], [570.0, 840.0, 2410.0]];
    let n = (seconds * rate as f32) as usize;
    let dt = 1.0 / rate as f32;
    let mut out = vec![0.0f32; n];
    let mut phase = 0.0f32;
    let mut state = [[0.0f32; 2]; 3];
    let mut rng = 0x1234_5678u32 ^ seed;
    let seg = (0.29 * rate as f32) as usize;
    let voiced_len = (0.25 * rate as f32) as usize;
    for (i, o) in out.iter_mut().enumerate() {
        let t = i as f32 * dt;
        let k = i / seg;
        let in_seg = i % seg;
        let vowel = VOWELS[(k + seed as usize) % VOWELS.len()];
        rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (rng >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
        let excitation = if in_seg < voiced_len {
            let f0 = s.f0 * (1.0 + 0.08 * (2.0 * std::f32::consts::PI * t / 1.3).sin());
            phase += f0 * dt;
            let pulse = if phase >= 1.0 {
                phase -= 1.0;
                1.0
            } else {
                0.0
            };
            let env = (in_seg as f32 / (0.02 * rate as f32)).min(1.0) * ((voiced_len - in_seg) as f32 / (0.02 * rate as f32)).min(1.0);
            pulse * env + 0.01 * noise
        } else {
            0.05 * noise
        };
        let mut y = excitation;
        for (f, st) in vowel.iter().zip(state.iter_mut()) {
            let fc = f * s.tract;
            let r = (-std::f32::consts::PI * 80.0 * dt).exp();
            let c = 2.0 * r * (2.0 * std::f32::consts::PI * fc * dt).cos();
            let v = (1.0 - r) * y + c * st[0] - r * r * st[1];
            st[1] = st[0];
            st[0] = v;
            y = v;
        }
        *o = y;
    }
    let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-9);
    out.iter_mut().for_each(|v| *v *= 0.5 / peak);
    out
}

fn target(dirs: &(PathBuf, PathBuf), audio: &[f32], rate: u32) -> Arc<TargetVoice> {
    let mut content = ContentModel::load(&dirs.0, Device::Cpu, 1).expect("content model");
    Arc::new(TargetVoice::analyse(audio, rate, &mut content).expect("target analysis"))
}

const LIVE_QUALITY: ConverterSettings = ConverterSettings::LIVE_QUALITY;
const LIVE_BALANCED: ConverterSettings = ConverterSettings::LIVE_BALANCED;
const LIVE_LOW_LATENCY: ConverterSettings = ConverterSettings::LIVE_LOW_LATENCY;
const OFFLINE: ConverterSettings = ConverterSettings::OFFLINE;

fn converter(dirs: &(PathBuf, PathBuf), settings: ConverterSettings) -> DefaultVoiceConverter {
    DefaultVoiceConverter::load(&dirs.0, &dirs.1, 1, Device::Cpu, 1, settings).expect("converter")
}

/// Runs a HopModel at its own rate over `x` (mono), output aligned by the
/// reported delay and trimmed to `x.len()`.
fn run_aligned(m: &mut dyn HopModel, x: &[f32]) -> Vec<f32> {
    let hop = m.hop();
    let d = m.delay();
    let total = (x.len() + d).div_ceil(hop) * hop;
    let mut out = Vec::with_capacity(total);
    let mut buf = vec![0.0f32; hop];
    for k in 0..total / hop {
        let input: Vec<f32> = (0..hop).map(|i| x.get(k * hop + i).copied().unwrap_or(0.0)).collect();
        m.process_hop(&input, &mut buf);
        out.extend_from_slice(&buf);
    }
    out[d..d + x.len()].to_vec()
}

/// Median F0 of the voiced frames.
fn median_f0(x: &[f32], rate: u32) -> f32 {
    let mut f: Vec<f32> = pitch::track(x, rate).iter().filter(|p| p.voiced).map(|p| p.f0_hz).collect();
    assert!(f.len() > 20, "too few voiced frames ({})", f.len());
    f.sort_by(f32::total_cmp);
    f[f.len() / 2]
}

/// RMS envelope over 5 ms (centred). A vocoder makes its own waveform (its
/// own phase), so timing is judged on the energy envelope.
fn envelope(x: &[f32], rate: u32) -> Vec<f32> {
    let w = (rate / 200) as usize;
    let mut out = vec![0.0; x.len()];
    let mut acc = 0.0f64;
    for i in 0..x.len() + w / 2 {
        if i < x.len() {
            acc += (x[i] as f64).powi(2);
        }
        if i >= w && i - w < x.len() {
            acc -= (x[i - w] as f64).powi(2);
        }
        if i >= w / 2 {
            out[i - w / 2] = (acc.max(0.0) / w as f64).sqrt() as f32;
        }
    }
    out
}

/// The lag (samples) maximising the correlation of the two envelopes.
fn envelope_lag(reference: &[f32], delayed: &[f32], max_lag: usize) -> isize {
    let (a, b) = (envelope(reference, SAMPLE_RATE), envelope(delayed, SAMPLE_RATE));
    let ma = a.iter().sum::<f32>() / a.len() as f32;
    let mb = b.iter().sum::<f32>() / b.len() as f32;
    let mut best = (f64::MIN, 0isize);
    for lag in -(max_lag as isize)..=(max_lag as isize) {
        let mut s = 0.0f64;
        for i in max_lag..a.len().saturating_sub(max_lag) {
            let j = i as isize + lag;
            s += ((a[i] - ma) * (b[j as usize] - mb)) as f64;
        }
        if s > best.0 {
            best = (s, lag);
        }
    }
    best.1
}

#[test]
fn reported_delay_is_where_the_voice_comes_out() {
    let Some(dirs) = model_dirs() else { return };
    let mut x = speak(LOW, 4.0, SAMPLE_RATE, 1);
    if let Ok(p) = std::env::var("MANIFOLD_VOICE_DELAY_WAV") {
        let mut r = hound::WavReader::open(p).unwrap();
        x = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
    }
    // Every live setting and offline: HiFi-GAN and the source-filter vocoder,
    // with and without the phone look-ahead.
    for cfg in [LIVE_LOW_LATENCY, LIVE_BALANCED, LIVE_QUALITY, OFFLINE] {
        let mut m = converter(&dirs, cfg);
        m.set_conversion(&ConversionControls { strength: 0.0, transpose_semitones: 0.0, speaker_id: 0 });
        let y = run_aligned(&mut m, &x);
        let lag = envelope_lag(&x, &y, 2048);
        eprintln!("{cfg:?}: delay {} samples, residual envelope lag {lag} samples", m.delay());
        // Within a quarter of a mel hop (2.9 ms): a vocoder makes its own
        // waveform, so timing is only defined by the energy envelope.
        assert!(lag.abs() <= 64, "output is {lag} samples away from the reported delay ({})", m.delay());
    }
}

#[test]
fn converts_pitch_range_to_the_target_and_transposes() {
    let Some(dirs) = model_dirs() else { return };
    let t = target(&dirs, &speak(HIGH, 12.0, 44100, 7), 44100);
    eprintln!("target: {} frames, pitch {:.1} Hz", t.frames(), t.pitch.mean_hz());
    assert!((t.pitch.mean_hz() / 220.0 - 1.0).abs() < 0.06, "target pitch {}", t.pitch.mean_hz());
    let x = speak(LOW, 5.0, SAMPLE_RATE, 3);
    let src = median_f0(&x, SAMPLE_RATE);
    for cfg in [LIVE_QUALITY, LIVE_BALANCED, LIVE_LOW_LATENCY] {
        let mut m = converter(&dirs, cfg);
        m.set_target(Some(t.clone()));
        let y = run_aligned(&mut m, &x);
        let got = median_f0(&y[SAMPLE_RATE as usize..], SAMPLE_RATE);
        eprintln!("{cfg:?}: source {src:.1} Hz -> converted {got:.1} Hz");
        assert!(
            (got / 220.0 - 1.0).abs() < 0.06,
            "{cfg:?}: converted median F0 {got} Hz, target 220 Hz"
        );
        // Transpose one octave down on top of the target's range.
        let mut m = converter(&dirs, cfg);
        m.set_target(Some(t.clone()));
        m.set_conversion(&ConversionControls {
            strength: 1.0,
            transpose_semitones: -12.0,
            speaker_id: 0,
        });
        let y = run_aligned(&mut m, &x);
        let got = median_f0(&y[SAMPLE_RATE as usize..], SAMPLE_RATE);
        eprintln!("{cfg:?}: transposed -12: {got:.1} Hz");
        assert!(
            (got / 110.0 - 1.0).abs() < 0.06,
            "{cfg:?}: transposed median F0 {got} Hz, want 110 Hz"
        );
    }
}

/// Strength moves the spectral envelope from the source's towards the
/// target's: with any strength the output's long-term log-mel spectrum is
/// clearly closer to the target's than at strength 0.
#[test]
fn strength_moves_the_envelope_towards_the_target() {
    let Some(dirs) = model_dirs() else { return };
    let reference = speak(HIGH, 12.0, SAMPLE_RATE, 7);
    let t = target(&dirs, &reference, SAMPLE_RATE);
    let x = speak(LOW, 5.0, SAMPLE_RATE, 3);
    let long_term = |s: &[f32]| {
        let m = manifold::dsp::mel::log_mel(s);
        let mut avg = [0.0f32; 80];
        for f in &m {
            for (a, v) in avg.iter_mut().zip(f) {
                *a += v / m.len() as f32;
            }
        }
        avg
    };
    let tgt = long_term(&reference);
    for cfg in [LIVE_QUALITY, LIVE_BALANCED, LIVE_LOW_LATENCY] {
        let mut at_zero = None;
        for strength in [0.0, 0.5, 0.75, 1.0] {
            let mut m = converter(&dirs, cfg);
            m.set_target(Some(t.clone()));
            m.set_conversion(&ConversionControls {
                strength,
                transpose_semitones: 0.0,
                speaker_id: 0,
            });
            let y = run_aligned(&mut m, &x);
            let lt = long_term(&y);
            let d = (0..80)
                .map(|b| (lt[b] - tgt[b]).powi(2))
                .sum::<f32>()
                .sqrt();
            eprintln!(
                "{cfg:?}, strength {strength}: distance to the target's long-term spectrum {d:.2}"
            );
            match at_zero {
                None => at_zero = Some(d),
                Some(d0) => assert!(d < 0.8 * d0, "{cfg:?}: strength {strength} is not closer to the target ({d} vs {d0} at strength 0)"),
            }
        }
    }
}

/// Live blocks (16 frames) and offline blocks (64) give the same audio, so
/// there is nothing at a block seam that full context does not have; and no
/// sample-to-sample jump at seams stands out from the rest.
#[test]
fn no_clicks_at_block_seams_and_live_matches_offline() {
    let Some(dirs) = model_dirs() else { return };
    let t = target(&dirs, &speak(HIGH, 12.0, SAMPLE_RATE, 7), SAMPLE_RATE);
    let x = speak(LOW, 6.0, SAMPLE_RATE, 5);
    let mut outs = Vec::new();
    for cfg in [LIVE_QUALITY, OFFLINE] {
        let mut m = converter(&dirs, cfg);
        m.set_target(Some(t.clone()));
        outs.push((cfg, run_aligned(&mut m, &x), m.hop(), m.delay()));
    }
    let (live, offline) = (&outs[0].1, &outs[1].1);
    let err: f64 = live.iter().zip(offline).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let sig: f64 = offline.iter().map(|a| (*a as f64).powi(2)).sum();
    let snr = 10.0 * (sig / err.max(1e-30)).log10();
    eprintln!("live vs offline: {snr:.1} dB");
    assert!(snr > 35.0, "live and offline differ: {snr:.1} dB");
    // Second differences at seams vs everywhere.
    let (hop, delay) = (outs[0].2, outs[0].3);
    let d2: Vec<f32> = live.windows(3).map(|w| (w[2] - 2.0 * w[1] + w[0]).abs()).collect();
    let mut sorted = d2.clone();
    sorted.sort_by(f32::total_cmp);
    let p999 = sorted[sorted.len() * 999 / 1000];
    let mut worst = 0.0f32;
    let mut seam = (hop - delay % hop) % hop;
    while seam + 2 < d2.len() {
        for i in seam.saturating_sub(2)..(seam + 2).min(d2.len()) {
            worst = worst.max(d2[i]);
        }
        seam += hop;
    }
    eprintln!("largest second difference at seams {worst:.5}, 99.9th percentile overall {p999:.5}");
    assert!(worst <= p999 * 1.5, "a seam jumps: {worst} vs {p999}");
}

/// Integrated loudness (BS.1770, gated) of a mono signal, LUFS.
fn lufs(x: &[f32]) -> f64 {
    let mut m = RunningLoudness::new(SAMPLE_RATE, 1);
    x.iter().for_each(|&v| m.push_frame(&[v]));
    m.lufs().expect("some speech")
}

/// Peak of the 4× oversampled signal (BS.1770's true-peak meter), dBFS.
fn true_peak_db(x: &[f32]) -> f32 {
    let up = manifold::dsp::resample::resample_whole(x, SAMPLE_RATE, 4 * SAMPLE_RATE).expect("resample");
    20.0 * up.iter().chain(x).fold(0.0f32, |m, v| m.max(v.abs())).max(1e-9).log10()
}

/// Loudest 50 ms RMS in `x[..until]`, dBFS.
fn loudest_frame_db(x: &[f32], until: usize) -> f32 {
    let n = SAMPLE_RATE as usize / 20;
    x[..until.min(x.len())].chunks(n).map(|c| 10.0 * (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32).max(1e-12).log10()).fold(f32::MIN, f32::max)
}

/// The output is as loud as the input (±1 LU) and its true peak stays at
/// or under −1 dBFS, from the first sample: offline, live, and after a
/// reset (the state a host reset leaves). A quiet source converted to a
/// loud target used to come out 4–5 LU louder, clip, and start with a
/// burst 10+ dB above the input where speech begins.
#[test]
fn output_is_as_loud_as_the_input_and_never_clips_from_the_first_sample() {
    let Some(dirs) = model_dirs() else { return };
    let loud_target: Vec<f32> = speak(HIGH, 12.0, SAMPLE_RATE, 7).iter().map(|v| v * 1.9).collect();
    let t = target(&dirs, &loud_target, SAMPLE_RATE);
    // 0.1 s of digital silence, then a quiet voice (peak −18 dBFS) or a
    // loud one (peak −0.5 dBFS, which the conversion pushes over full scale).
    let voice = |gain: f32| -> Vec<f32> { std::iter::repeat(0.0).take(SAMPLE_RATE as usize / 10).chain(speak(LOW, 6.0, SAMPLE_RATE, 5).iter().map(|v| v * gain)).collect() };
    let (quiet, loud) = (voice(0.25), voice(1.89));
    for (label, x, cfg, reset_first) in [
        ("offline", &quiet, OFFLINE, false),
        ("live quality", &quiet, LIVE_QUALITY, false),
        ("live quality after a reset", &quiet, LIVE_QUALITY, true),
        ("live balanced", &quiet, LIVE_BALANCED, false),
        ("live balanced after a reset", &quiet, LIVE_BALANCED, true),
        ("live low latency, loud", &loud, LIVE_LOW_LATENCY, false),
        ("offline, loud", &loud, OFFLINE, false),
    ] {
        let (lin, start_in) = (lufs(x), loudest_frame_db(x, SAMPLE_RATE as usize / 2));
        let mut m = converter(&dirs, cfg);
        m.set_target(Some(t.clone()));
        if reset_first {
            let _ = run_aligned(&mut m, &speak(HIGH, 2.0, SAMPLE_RATE, 3));
            m.reset();
        }
        let y = run_aligned(&mut m, x);
        let (lout, peak, start_out) = (lufs(&y), true_peak_db(&y), loudest_frame_db(&y, SAMPLE_RATE as usize / 2));
        eprintln!("{label}: input {lin:.2} LUFS, output {lout:.2} LUFS, true peak {peak:.2} dBFS, loudest 50 ms in the first 0.5 s: input {start_in:.1}, output {start_out:.1} dBFS");
        assert!((lout - lin).abs() <= 1.0, "{label}: output {lout:.2} LUFS for an input of {lin:.2}");
        assert!(peak <= -1.0, "{label}: true peak {peak:.2} dBFS");
        assert!(start_out <= start_in + 3.0, "{label}: a burst at the start ({start_out:.1} dBFS vs the input's {start_in:.1})");
    }
}

#[test]
fn offline_render_is_deterministic_and_runs_through_the_host_rate_stream() {
    let Some(dirs) = model_dirs() else { return };
    let t = target(&dirs, &speak(HIGH, 12.0, SAMPLE_RATE, 7), SAMPLE_RATE);
    let x = speak(LOW, 3.0, 48000, 2);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut m = converter(&dirs, OFFLINE);
        m.set_target(Some(t.clone()));
        let mut s = HostRateStream::new(Box::new(m), 48000).expect("stream");
        let d = s.latency().total;
        let mut out = vec![0.0f32; x.len() + d];
        let padded: Vec<f32> = x.iter().copied().chain(std::iter::repeat(0.0).take(d)).collect();
        for (i, o) in padded.chunks(480).zip(out.chunks_mut(480)) {
            s.process(i, o, i.len());
        }
        assert!(out.iter().all(|v| v.is_finite()));
        runs.push(out);
    }
    assert_eq!(runs[0], runs[1], "two offline renders differ");
    let energy: f32 = runs[0].iter().map(|v| v * v).sum();
    assert!(energy > 1.0, "the render is silent");
}

#[test]
fn unusable_references_are_refused_with_a_reason() {
    let Some(dirs) = model_dirs() else { return };
    let mut content = ContentModel::load(&dirs.0, Device::Cpu, 1).expect("content model");
    let short = speak(HIGH, 1.5, 22050, 1);
    let e = TargetVoice::analyse(&short, 22050, &mut content).err().expect("1.5 s accepted");
    assert!(matches!(e, TargetError::TooShort(_)), "{e}");
    assert!(e.to_string().contains("at least"), "{e}");
    let mut rng = 0x2545_f491u32;
    let noise: Vec<f32> = (0..22050 * 5)
        .map(|_| {
            rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((rng >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    let e = TargetVoice::analyse(&noise, 22050, &mut content).err().expect("noise accepted");
    assert!(matches!(e, TargetError::NoVoice), "{e}");
}

/// The editor's "Load" path: a stereo 44.1 kHz recording is learnt on the
/// loader thread and saved as the plugin's 16 kHz reference; a file that
/// cannot be read leaves the reference alone and says why.
#[test]
fn target_loader_learns_a_file_and_keeps_it_for_the_project() {
    use manifold::bridge::Telemetry;
    use manifold::plugins::voice::{TargetLoader, SAVED_REFERENCE_RATE};
    use std::sync::RwLock;
    if model_dirs().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reference.wav");
    let voice = speak(HIGH, 4.0, 44100, 7);
    let spec = hound::WavSpec { channels: 2, sample_rate: 44100, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for v in &voice {
        w.write_sample(*v).unwrap();
        w.write_sample(*v * 0.5).unwrap();
    }
    w.finalize().unwrap();

    let persist = Arc::new(RwLock::new(Vec::new()));
    let telemetry = Arc::new(Telemetry::default());
    let loader = TargetLoader::new(persist.clone(), Arc::new(parking_lot::Mutex::new(None)), telemetry.clone());
    let wait = |loader: &TargetLoader| {
        let start = std::time::Instant::now();
        while loader.busy() {
            assert!(start.elapsed().as_secs() < 60, "the loader thread never finished");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    loader.load(dir.path().join("missing.wav"));
    wait(&loader);
    assert!(telemetry.status_line().contains("Target voice not set"), "{}", telemetry.status_line());
    assert!(persist.read().unwrap().is_empty());

    loader.load(path);
    wait(&loader);
    let status = telemetry.status_line();
    assert!(status.contains("Target voice loaded"), "{status}");
    let saved = persist.read().unwrap().len() as f64 / SAVED_REFERENCE_RATE as f64;
    assert!((saved - 4.0).abs() < 0.05, "saved {saved:.2} s of reference");
    println!("target loader: {status}");
}
