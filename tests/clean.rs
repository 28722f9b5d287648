//! Manifold Clean rendered offline: linked stereo, the attenuation limit, each model.

use manifold::offline::{read_audio, render_clean, AudioData};
use manifold::plugins::clean::CleanModel;
use manifold::runtime::onnx::Device;
use std::path::PathBuf;

fn testdata(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testdata").join(file);
    assert!(p.is_file(), "{} missing: run `cargo xtask test` (it generates the speech set)", p.display());
    p
}

fn energy_db(x: &[f32]) -> f64 {
    10.0 * (x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() + 1e-20).log10()
}

#[test]
fn panned_voice_keeps_its_left_right_balance() {
    let clean = read_audio(&testdata("clean_0.wav")).unwrap();
    let noisy = read_audio(&testdata("noisy_0_white_10.wav")).unwrap();
    let speech = &clean.channels[0];
    let noise: Vec<f32> = noisy.channels[0].iter().zip(speech).map(|(n, s)| n - s).collect();
    // Voice panned left (-12 dB on the right), noise in the centre.
    let (gl, gr) = (1.0f32, 0.25f32);
    let left: Vec<f32> = speech.iter().zip(&noise).map(|(s, n)| gl * s + 0.5 * n).collect();
    let right: Vec<f32> = speech.iter().zip(&noise).map(|(s, n)| gr * s + 0.5 * n).collect();
    let input = AudioData { sample_rate: clean.sample_rate, channels: vec![left, right] };
    let want = 20.0 * (gl / gr).log10() as f64;
    for model in CleanModel::ALL {
        let (out, report) = render_clean(&input, model, 100.0, Device::Cpu, |_, _| {}).unwrap();
        assert_eq!(report.underruns, 0);
        let got = energy_db(&out.channels[0]) - energy_db(&out.channels[1]);
        assert!((got - want).abs() <= 1.0, "{model:?}: left/right {got:.2} dB, the voice is at {want:.2} dB");
        eprintln!("{model:?}: voice panned {want:.2} dB, output {got:.2} dB");
    }
}

/// The attenuation limit keeps an aligned floor of the input: at L dB the
/// output is exactly `a * input + (1 - a) * enhanced` with `a = 10^(-L/20)`.
#[test]
fn attenuation_limit_is_an_aligned_dry_floor() {
    let noisy = read_audio(&testdata("noisy_1_pink_5.wav")).unwrap();
    let (full, _) = render_clean(&noisy, CleanModel::Gtcrn, 100.0, Device::Cpu, |_, _| {}).unwrap();
    let (limited, _) = render_clean(&noisy, CleanModel::Gtcrn, 6.0, Device::Cpu, |_, _| {}).unwrap();
    let a = 10f32.powf(-6.0 / 20.0);
    let err = noisy.channels[0]
        .iter()
        .zip(&full.channels[0])
        .zip(&limited.channels[0])
        .map(|((x, f), l)| (l - (a * x + (1.0 - a) * f)).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-4, "limited output is not the aligned blend: {err}");
    let removed = energy_db(&noisy.channels[0]) - energy_db(&limited.channels[0]);
    assert!(removed < 6.5, "removed {removed:.1} dB despite a 6 dB limit");
}

/// Every model runs offline at 44.1 kHz, output finite and aligned with the
/// clean speech (cross-correlation peak at lag 0).
#[test]
fn every_model_renders_aligned() {
    let clean = read_audio(&testdata("clean_2.wav")).unwrap();
    let noisy = read_audio(&testdata("noisy_2_white_10.wav")).unwrap();
    // Relabel the 48 kHz material as 44.1 kHz: a different host rate for the pipeline.
    let input = AudioData { sample_rate: 44100, channels: noisy.channels.clone() };
    for model in CleanModel::ALL {
        let (out, report) = render_clean(&input, model, 100.0, Device::Cpu, |_, _| {}).unwrap();
        assert_eq!(report.underruns, 0);
        let y = &out.channels[0];
        assert!(y.iter().all(|v| v.is_finite()));
        let s = &clean.channels[0];
        let corr = |lag: i64| -> f64 { (100..s.len() - 100).map(|i| y[(i as i64 + lag) as usize] as f64 * s[i] as f64).sum() };
        let best = (-50i64..=50).max_by(|a, b| corr(*a).partial_cmp(&corr(*b)).unwrap()).unwrap();
        assert!(best.abs() <= 1, "{model:?}: output is {best} samples off");
    }
}
