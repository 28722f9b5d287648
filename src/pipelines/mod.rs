//! Model pipelines: pure code, frames in, frames out. No threads, no plugin
//! formats; the plugin, the CLI and the tests drive them the same way.
//!
//! A [`HopModel`] works at the model's own sample rate, one hop at a time. A
//! [`stream::HostRateStream`] wraps it for any host rate and any block size,
//! with an exact, fixed delay.

pub mod convert_rvc;
pub mod convert_voice;
pub mod enhance_dfn3;
pub mod enhance_gtcrn;
pub mod enhance_nsnet2;
pub mod enhance_rnnoise;
pub mod isolate_target;
pub mod passthrough;
pub mod separate_mdx;
pub mod separate_spleeter;
pub mod separate_window;
pub mod speaker_embedder;
pub mod stream;
pub mod vocoder_hifigan;
pub mod vocoder_light;
pub mod vocoder_source_filter;

use crate::runtime::RuntimeError;

/// A streaming model at its own rate. Worker thread.
///
/// Contract: after the k-th call to [`process_hop`](HopModel::process_hop),
/// the output hop holds the processed input from exactly `delay()` samples
/// earlier (hop-synchronous delay). Output must always be finite; a model
/// that fails or goes non-finite must fall back to its dry (delayed) signal
/// and reset its state, so one bad hop never poisons the next.
pub trait HopModel: Send {
    /// Short name shown to the user.
    fn name(&self) -> &str;
    fn sample_rate(&self) -> u32;
    fn hop(&self) -> usize;
    /// Input channels.
    fn channels(&self) -> usize;
    /// Output channels: `channels()` for effects; for separators, stem-major
    /// planes (`[stem][channel]`, so `stems * channels`).
    fn out_channels(&self) -> usize {
        self.channels()
    }
    /// Hop-synchronous algorithmic delay in model samples.
    fn delay(&self) -> usize;
    /// `input`: planar, `channels * hop` samples; `output`: planar,
    /// `out_channels * hop` samples.
    fn process_hop(&mut self, input: &[f32], output: &mut [f32]);
    /// Forget all streaming state (recurrent caches, STFT history).
    fn reset(&mut self);
    /// How many hops fell back to dry because the model failed or produced
    /// non-finite values.
    fn faults(&self) -> u64 {
        0
    }
    /// The model's own speech-to-noise estimate in dB, if it has one
    /// (DeepFilterNet's local SNR), for a meter.
    fn speech_to_noise_db(&self) -> Option<f32> {
        None
    }
    /// Post-filter strength, 0 (off) to 1 (strongest), for models that have
    /// one; others ignore it.
    fn set_post_filter(&mut self, _strength: f32) {}
    /// A target speaker's embedding (d-vector) for models that follow one
    /// voice; others ignore it. Worker thread.
    fn set_target_embedding(&mut self, _embedding: &[f32]) {}
    /// A target voice learnt from a reference recording, for the default
    /// voice converter; others ignore it. Worker thread.
    fn set_target_voice(&mut self, _target: Option<std::sync::Arc<convert_voice::TargetVoice>>) {}
    /// Voice-conversion controls (strength, transpose, speaker); models that
    /// do not convert voices ignore them. Worker thread.
    fn set_conversion(&mut self, _controls: &ConversionControls) {}
    /// Where inference runs, in plain words ("CPU", "GPU (CUDA)", ...).
    fn device_note(&self) -> &str {
        "CPU"
    }
}

/// Voice-conversion controls, as the plugin's parameters or the CLI's
/// options set them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConversionControls {
    /// 0 keeps the source's envelope (every word), 1 the target's.
    pub strength: f32,
    /// Pitch shift on top of the target's pitch range, semitones.
    pub transpose_semitones: f32,
    /// Speaker index for multi-speaker models (RVC `sid`).
    pub speaker_id: i64,
}

impl Default for ConversionControls {
    fn default() -> Self {
        Self { strength: convert_voice::DEFAULT_STRENGTH, transpose_semitones: 0.0, speaker_id: 0 }
    }
}

/// Builds a model for a given channel count. Worker/main thread.
pub type ModelFactory = Box<dyn Fn(usize) -> Result<Box<dyn HopModel>, RuntimeError> + Send + Sync>;

/// The spectrum of the mid signal: the mean of the channels' spectra
/// (`spectra` is `[channel][bin]`, `mid` one channel of `bins`).
pub(crate) fn mid_spectrum(spectra: &[realfft::num_complex::Complex32], mid: &mut [realfft::num_complex::Complex32]) {
    let bins = mid.len();
    let channels = spectra.len() / bins;
    let inv = 1.0 / channels as f32;
    for (k, m) in mid.iter_mut().enumerate() {
        let sum: realfft::num_complex::Complex32 = (0..channels).map(|ch| spectra[ch * bins + k]).sum();
        *m = if channels == 1 { sum } else { sum * inv };
    }
}
