//! Streaming STFT: one hop in, one spectrum out; one spectrum in, one hop out.
//!
//! Worker thread. Allocates only in `new`. Delay (hop-synchronous) is
//! `n_fft - hop`: the hop returned by `synthesize` after the k-th `analyze`
//! holds input samples from `n_fft - hop` samples earlier.

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// Which analysis window a model was trained with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    /// `sqrt(hann)`, the symmetric Hann of numpy's `np.hanning(n)`.
    SqrtHannSymmetric,
    /// `sqrt(hann)`, periodic.
    SqrtHannPeriodic,
    /// Periodic Hann.
    HannPeriodic,
    /// `sqrt(hann)`, periodic, `len` samples long, placed at the end of the
    /// `n`-sample frame after `n - len` zeros: a window shorter than the FFT
    /// (zero-padded FFT) that covers the newest `len` samples.
    SqrtHannPeriodicPadded { len: usize },
}

impl Window {
    pub fn build(self, n: usize) -> Vec<f32> {
        let pi = std::f64::consts::PI;
        if let Window::SqrtHannPeriodicPadded { len } = self {
            assert!(len > 0 && len <= n, "window length must be in 1..=n");
            let mut w = vec![0.0f32; n - len];
            w.extend(Window::SqrtHannPeriodic.build(len));
            return w;
        }
        (0..n)
            .map(|i| {
                let hann = match self {
                    Window::SqrtHannSymmetric => 0.5 - 0.5 * (2.0 * pi * i as f64 / (n - 1) as f64).cos(),
                    _ => 0.5 - 0.5 * (2.0 * pi * i as f64 / n as f64).cos(),
                };
                match self {
                    Window::HannPeriodic => hann as f32,
                    _ => hann.sqrt() as f32,
                }
            })
            .collect()
    }
}

/// Per-channel streaming STFT with weighted overlap-add synthesis that
/// reconstructs perfectly for any analysis/synthesis window pair whose
/// overlapped product has no zeros.
pub struct StreamingStft {
    n_fft: usize,
    hop: usize,
    channels: usize,
    analysis: Vec<f32>,
    /// Synthesis window already divided by the overlap-added window product.
    synthesis: Vec<f32>,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    /// `[channel][n_fft]` most recent input samples.
    history: Vec<f32>,
    /// `[channel][n_fft]` overlap-add accumulator.
    ola: Vec<f32>,
    time_scratch: Vec<f32>,
    fft_scratch: Vec<Complex32>,
}

impl StreamingStft {
    pub fn new(n_fft: usize, hop: usize, channels: usize, window: Window) -> Self {
        assert!(hop > 0 && hop <= n_fft, "hop must be in 1..=n_fft");
        let analysis = window.build(n_fft);
        let synth_base = analysis.clone();
        // norm[i] = sum over frames overlapping position i of wa * ws
        let mut norm = vec![0.0f64; hop];
        for (i, (a, s)) in analysis.iter().zip(&synth_base).enumerate() {
            norm[i % hop] += (*a as f64) * (*s as f64);
        }
        let synthesis = synth_base
            .iter()
            .enumerate()
            .map(|(i, s)| (*s as f64 / norm[i % hop].max(1e-9)) as f32)
            .collect();
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(n_fft);
        let inv = planner.plan_fft_inverse(n_fft);
        let scratch_len = fwd.get_scratch_len().max(inv.get_scratch_len());
        Self {
            n_fft,
            hop,
            channels,
            analysis,
            synthesis,
            fwd,
            inv,
            history: vec![0.0; channels * n_fft],
            ola: vec![0.0; channels * n_fft],
            time_scratch: vec![0.0; n_fft],
            fft_scratch: vec![Complex32::default(); scratch_len],
        }
    }

    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    pub fn hop(&self) -> usize {
        self.hop
    }

    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Hop-synchronous delay in samples.
    pub fn delay(&self) -> usize {
        self.n_fft - self.hop
    }

    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.ola.fill(0.0);
    }

    /// Shifts one hop of channel `ch` into the analysis history and writes the
    /// windowed spectrum (unnormalised forward FFT, `n_fft/2+1` bins).
    pub fn analyze(&mut self, ch: usize, hop_in: &[f32], spectrum: &mut [Complex32]) {
        let (n, h) = (self.n_fft, self.hop);
        let hist = &mut self.history[ch * n..(ch + 1) * n];
        hist.copy_within(h.., 0);
        hist[n - h..].copy_from_slice(&hop_in[..h]);
        for ((t, x), w) in self.time_scratch.iter_mut().zip(hist.iter()).zip(&self.analysis) {
            *t = x * w;
        }
        // realfft only fails on wrong lengths, which `new` rules out.
        let _ = self.fwd.process_with_scratch(&mut self.time_scratch, spectrum, &mut self.fft_scratch);
    }

    /// Inverse-transforms `spectrum` (destroyed), overlap-adds it and writes the
    /// hop of channel `ch` that is now complete.
    pub fn synthesize(&mut self, ch: usize, spectrum: &mut [Complex32], hop_out: &mut [f32]) {
        let (n, h) = (self.n_fft, self.hop);
        // The inverse real FFT needs purely real DC and Nyquist bins.
        spectrum[0].im = 0.0;
        if n % 2 == 0 {
            spectrum[n / 2].im = 0.0;
        }
        let _ = self.inv.process_with_scratch(spectrum, &mut self.time_scratch, &mut self.fft_scratch);
        let scale = 1.0 / n as f32;
        let ola = &mut self.ola[ch * n..(ch + 1) * n];
        for ((o, t), w) in ola.iter_mut().zip(&self.time_scratch).zip(&self.synthesis) {
            *o += t * w * scale;
        }
        hop_out[..h].copy_from_slice(&ola[..h]);
        ola.copy_within(h.., 0);
        ola[n - h..].fill(0.0);
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_a_pure_delay() {
        for (n, h, w) in [
            (512, 256, Window::SqrtHannSymmetric),
            (960, 480, Window::SqrtHannPeriodic),
            (1024, 256, Window::HannPeriodic),
            (1024, 512, Window::SqrtHannPeriodicPadded { len: 960 }),
        ] {
            let mut stft = StreamingStft::new(n, h, 1, w);
            let total = h * 40;
            let x: Vec<f32> = (0..total).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
            let mut y = vec![0.0f32; total];
            let mut spec = vec![Complex32::default(); stft.bins()];
            for k in 0..total / h {
                stft.analyze(0, &x[k * h..(k + 1) * h], &mut spec);
                stft.synthesize(0, &mut spec, &mut y[k * h..(k + 1) * h]);
            }
            let d = stft.delay();
            for i in n..total {
                assert!((y[i] - x[i - d]).abs() < 1e-4, "n={n} i={i} {} vs {}", y[i], x[i - d]);
            }
        }
    }
}
