//! GTCRN speech enhancement (16 kHz, 512-point FFT, 256 hop, explicit caches).
//! Worker thread.
//!
//! Mono runs the model's complex spectrum directly. Stereo is linked: the
//! model sees the mid signal and its complex gain (output / input, at most
//! unity magnitude) is applied to both channels, so a panned voice stays put.

use super::HopModel;
use crate::dsp::sanitize::all_finite;
use crate::dsp::stft::{StreamingStft, Window};
use crate::runtime::onnx::{open_session, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex32;
use std::path::Path;

pub const SAMPLE_RATE: u32 = 16000;
pub const N_FFT: usize = 512;
pub const HOP: usize = 256;
const BINS: usize = N_FFT / 2 + 1;
const CONV_CACHE: [usize; 5] = [2, 1, 16, 16, 33];
const TRA_CACHE: [usize; 5] = [2, 3, 1, 1, 16];
const INTER_CACHE: [usize; 4] = [2, 1, 33, 16];
const INPUTS: [&str; 4] = ["mix", "conv_cache", "tra_cache", "inter_cache"];
const OUTPUTS: [&str; 4] = ["enh", "conv_cache_out", "tra_cache_out", "inter_cache_out"];

pub struct GtcrnEnhancer {
    session: Session,
    device_note: String,
    stft: StreamingStft,
    channels: usize,
    /// `[channel][bin]` input spectra.
    spectra: Vec<Complex32>,
    mix: Vec<Complex32>,
    enhanced: Vec<Complex32>,
    conv_cache: Vec<f32>,
    tra_cache: Vec<f32>,
    inter_cache: Vec<f32>,
    faults: u64,
}

fn as_floats(c: &[Complex32]) -> &[f32] {
    // Complex32 is #[repr(C)] { re, im }: exactly the model's (real, imag) pairs.
    unsafe { std::slice::from_raw_parts(c.as_ptr() as *const f32, c.len() * 2) }
}

impl GtcrnEnhancer {
    pub fn load(model: &Path, channels: usize, device: Device) -> Result<Self, RuntimeError> {
        let loaded = open_session(model, device)?;
        let session = loaded.session;
        let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if INPUTS.iter().any(|n| !names_in.contains(n)) || OUTPUTS.iter().any(|n| !names_out.contains(n)) {
            return Err(RuntimeError::ModelSignature {
                path: model.to_path_buf(),
                reason: format!("inputs {names_in:?}, outputs {names_out:?}; GTCRN needs {INPUTS:?} -> {OUTPUTS:?}"),
            });
        }
        let mut s = Self {
            session,
            device_note: loaded.device_note,
            stft: StreamingStft::new(N_FFT, HOP, channels, Window::SqrtHannSymmetric),
            channels,
            spectra: vec![Complex32::default(); channels * BINS],
            mix: vec![Complex32::default(); BINS],
            enhanced: vec![Complex32::default(); BINS],
            conv_cache: vec![0.0; CONV_CACHE.iter().product()],
            tra_cache: vec![0.0; TRA_CACHE.iter().product()],
            inter_cache: vec![0.0; INTER_CACHE.iter().product()],
            faults: 0,
        };
        // One silent hop proves the graph really runs with these shapes.
        s.run_model().map_err(|e| RuntimeError::ModelSignature { path: model.to_path_buf(), reason: e })?;
        s.reset();
        Ok(s)
    }

    /// Runs one frame: `self.mix` -> `self.enhanced`, caches updated.
    fn run_model(&mut self) -> Result<(), String> {
        let e = |e: ort::Error| e.to_string();
        let mix = TensorRef::from_array_view(([1usize, BINS, 1, 2], as_floats(&self.mix))).map_err(e)?;
        let conv = TensorRef::from_array_view((CONV_CACHE, &self.conv_cache[..])).map_err(e)?;
        let tra = TensorRef::from_array_view((TRA_CACHE, &self.tra_cache[..])).map_err(e)?;
        let inter = TensorRef::from_array_view((INTER_CACHE, &self.inter_cache[..])).map_err(e)?;
        let outputs = self
            .session
            .run(ort::inputs!["mix" => mix, "conv_cache" => conv, "tra_cache" => tra, "inter_cache" => inter])
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
        let mut enh = [0.0f32; BINS * 2];
        take("enh", &mut enh)?;
        take("conv_cache_out", &mut self.conv_cache)?;
        take("tra_cache_out", &mut self.tra_cache)?;
        take("inter_cache_out", &mut self.inter_cache)?;
        for (k, c) in self.enhanced.iter_mut().enumerate() {
            *c = Complex32::new(enh[2 * k], enh[2 * k + 1]);
        }
        Ok(())
    }

    fn clear_caches(&mut self) {
        self.conv_cache.fill(0.0);
        self.tra_cache.fill(0.0);
        self.inter_cache.fill(0.0);
    }
}

impl HopModel for GtcrnEnhancer {
    fn name(&self) -> &str {
        "GTCRN"
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
        if let Err(reason) = self.run_model() {
            // Fall back to the unprocessed (but identically delayed) spectrum
            // and start the recurrent state afresh.
            self.faults += 1;
            if self.faults <= 3 {
                log::warn!("GTCRN hop failed ({reason}); passing dry and resetting state");
            }
            self.clear_caches();
            self.enhanced.copy_from_slice(&self.mix);
        }
        let mut out_spec = [Complex32::default(); BINS];
        for ch in 0..c {
            if c == 1 {
                out_spec.copy_from_slice(&self.enhanced);
            } else {
                for k in 0..BINS {
                    let m = self.mix[k];
                    let power = m.norm_sqr();
                    let mut gain = if power > 1e-12 { self.enhanced[k] * m.conj() / power } else { Complex32::default() };
                    let mag = gain.norm();
                    if mag > 1.0 {
                        gain /= mag;
                    }
                    out_spec[k] = self.spectra[ch * BINS + k] * gain;
                }
            }
            self.stft.synthesize(ch, &mut out_spec, &mut output[ch * HOP..(ch + 1) * HOP]);
        }
    }

    fn reset(&mut self) {
        self.stft.reset();
        self.clear_caches();
    }
}
