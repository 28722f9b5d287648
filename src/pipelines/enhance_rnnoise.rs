//! RNNoise (through the `nnnoiseless` crate): the lightweight option, no ONNX
//! Runtime needed. 48 kHz, 480-sample hops. Worker thread.
//!
//! Stereo is linked: RNNoise runs once, on the mid signal, and the per-bin
//! gain it applied (|output| / |input| in a 960-point STFT, at most 1) is
//! applied to every channel, so a panned voice stays put. That STFT adds one
//! hop of delay; mono is delayed by the same hop so the model has one delay.

use super::HopModel;
use crate::dsp::sanitize::all_finite;
use crate::dsp::stft::{StreamingStft, Window};
use nnnoiseless::DenoiseState;
use realfft::num_complex::Complex32;

pub const SAMPLE_RATE: u32 = 48000;
pub const HOP: usize = DenoiseState::FRAME_SIZE;
/// RNNoise's own delay (its output hop is the input hop before last).
const RNNOISE_DELAY: usize = DenoiseState::FRAME_SIZE;
/// RNNoise plus one hop (the linking STFT for stereo, a plain hop delay for mono).
pub const DELAY: usize = RNNOISE_DELAY + HOP;

pub struct RnnoiseEnhancer {
    channels: usize,
    state: Box<DenoiseState<'static>>,
    mid: Vec<f32>,
    denoised: Vec<f32>,
    /// `[channel][hop]` the previous input hop (input delayed like RNNoise).
    previous: Vec<f32>,
    /// Mono: RNNoise's previous output hop (the extra hop of delay).
    previous_out: Vec<f32>,
    /// Stereo linking: STFT channels 0 = delayed mid, 1 = RNNoise output,
    /// 2.. = each delayed input channel.
    link: Option<(StreamingStft, Vec<Complex32>, Vec<Complex32>, Vec<Complex32>)>,
    faults: u64,
}

impl RnnoiseEnhancer {
    pub fn new(channels: usize) -> Self {
        let link = (channels > 1).then(|| {
            let stft = StreamingStft::new(2 * HOP, HOP, channels + 2, Window::SqrtHannPeriodic);
            let bins = stft.bins();
            (stft, vec![Complex32::default(); bins], vec![Complex32::default(); bins], vec![Complex32::default(); bins])
        });
        Self {
            channels,
            state: DenoiseState::new(),
            mid: vec![0.0; HOP],
            denoised: vec![0.0; HOP],
            previous: vec![0.0; HOP * channels],
            previous_out: vec![0.0; HOP],
            link,
            faults: 0,
        }
    }

    /// RNNoise on `self.mid` into `self.denoised` (16-bit scaling), falling
    /// back to the delayed mid and a fresh state if it goes non-finite.
    fn denoise_mid(&mut self, delayed_mid: &[f32]) {
        let mut scaled = [0.0f32; HOP];
        for (d, s) in scaled.iter_mut().zip(&self.mid) {
            *d = s * 32768.0;
        }
        self.state.process_frame(&mut self.denoised, &scaled);
        if all_finite(&self.denoised) {
            self.denoised.iter_mut().for_each(|x| *x /= 32768.0);
        } else {
            self.faults += 1;
            *self.state = *DenoiseState::new();
            self.denoised.copy_from_slice(delayed_mid);
        }
    }
}

impl HopModel for RnnoiseEnhancer {
    fn name(&self) -> &str {
        "RNNoise"
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
        DELAY
    }
    fn faults(&self) -> u64 {
        self.faults
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let c = self.channels;
        let inv = 1.0 / c as f32;
        let mut delayed_mid = [0.0f32; HOP];
        for i in 0..HOP {
            self.mid[i] = (0..c).map(|ch| input[ch * HOP + i]).sum::<f32>() * inv;
            delayed_mid[i] = (0..c).map(|ch| self.previous[ch * HOP + i]).sum::<f32>() * inv;
        }
        self.denoise_mid(&delayed_mid);
        match self.link.as_mut() {
            None => {
                // Mono: one more hop of delay so mono and stereo agree.
                output[..HOP].copy_from_slice(&self.previous_out);
                self.previous_out.copy_from_slice(&self.denoised);
            }
            Some((stft, noisy, clean, spec)) => {
                stft.analyze(0, &delayed_mid, noisy);
                stft.analyze(1, &self.denoised, clean);
                for ch in 0..c {
                    stft.analyze(ch + 2, &self.previous[ch * HOP..(ch + 1) * HOP], spec);
                    for ((x, n), d) in spec.iter_mut().zip(noisy.iter()).zip(clean.iter()) {
                        let gain = if n.norm_sqr() > 1e-20 { (d.norm() / n.norm()).min(1.0) } else { 0.0 };
                        *x *= gain;
                    }
                    stft.synthesize(ch + 2, spec, &mut output[ch * HOP..(ch + 1) * HOP]);
                }
            }
        }
        self.previous.copy_from_slice(&input[..c * HOP]);
    }

    fn reset(&mut self) {
        *self.state = *DenoiseState::new();
        self.previous.fill(0.0);
        self.previous_out.fill(0.0);
        if let Some((stft, ..)) = self.link.as_mut() {
            stft.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented delay is the real one: a voiced, speech-like signal
    /// (which RNNoise keeps) comes out `DELAY` samples later.
    #[test]
    fn delay_matches_cross_correlation() {
        let mut m = RnnoiseEnhancer::new(1);
        let n = HOP * 200;
        let x: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / 48000.0;
                let f0 = 140.0 + 20.0 * (2.0 * std::f32::consts::PI * 0.7 * t).sin();
                (1..12).map(|k| (2.0 * std::f32::consts::PI * f0 * k as f32 * t).sin() / k as f32).sum::<f32>() * 0.1
            })
            .collect();
        let mut y = vec![0.0f32; n];
        for k in 0..n / HOP {
            m.process_hop(&x[k * HOP..(k + 1) * HOP], &mut y[k * HOP..(k + 1) * HOP]);
        }
        // RNNoise's pitch filter smears the peak by a sample on harmonic
        // input: the documented delay must be (within 1%) the best lag.
        let corr = |lag: usize| (HOP * 20..n).map(|i| y[i] * x[i - lag]).sum::<f32>();
        let best = (0..2 * HOP).max_by(|&a, &b| corr(a).partial_cmp(&corr(b)).unwrap()).unwrap();
        assert!(best.abs_diff(DELAY) <= 1, "best lag {best}");
        assert!(corr(DELAY) >= 0.99 * corr(best), "{} vs {}", corr(DELAY), corr(best));
        assert!(y.iter().all(|v| v.is_finite()));
    }

    /// Stereo is linked: a source at two levels comes out at the same two
    /// levels, sample for sample.
    #[test]
    fn stereo_gains_are_linked() {
        let mut m = RnnoiseEnhancer::new(2);
        let hops = 200;
        let mut s = 3u32;
        let mut y = vec![0.0f32; 2 * HOP];
        let (mut el, mut er) = (0.0f64, 0.0f64);
        for k in 0..hops {
            let mut x = vec![0.0f32; 2 * HOP];
            for i in 0..HOP {
                let t = (k * HOP + i) as f32 / 48000.0;
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                let v = 0.1 * (2.0 * std::f32::consts::PI * 150.0 * t).sin() + ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.02;
                x[i] = v;
                x[HOP + i] = 0.25 * v;
            }
            m.process_hop(&x, &mut y);
            for i in 0..HOP {
                assert!((y[HOP + i] - 0.25 * y[i]).abs() < 1e-6);
                el += (y[i] as f64).powi(2);
                er += (y[HOP + i] as f64).powi(2);
            }
        }
        assert!(el > 0.0 && (10.0 * (el / er).log10() - 12.04).abs() < 0.01);
    }
}
