//! Model pipelines: pure code, frames in, frames out. No threads, no plugin
//! formats; the plugin, the CLI and the tests drive them the same way.
//!
//! A [`HopModel`] works at the model's own sample rate, one hop at a time. A
//! [`stream::HostRateStream`] wraps it for any host rate and any block size,
//! with an exact, fixed delay.

pub mod enhance_dfn3;
pub mod enhance_gtcrn;
pub mod enhance_nsnet2;
pub mod enhance_rnnoise;
pub mod isolate_voicefilter;
pub mod passthrough;
pub mod separate_mdx;
pub mod separate_spleeter;
pub mod separate_window;
pub mod stream;

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
    /// Where inference runs, in plain words ("CPU", "GPU (CUDA)", ...).
    fn device_note(&self) -> &str {
        "CPU"
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
