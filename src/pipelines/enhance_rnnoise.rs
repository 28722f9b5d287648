//! RNNoise (through the `nnnoiseless` crate): the lightweight option, no ONNX
//! Runtime needed. 48 kHz, 480-sample hops. Worker thread.
//!
//! Stereo runs one RNNoise per channel (RNNoise does not expose its band
//! gains, so it cannot be linked the way the ONNX models are).

use super::HopModel;
use crate::dsp::sanitize::all_finite;
use nnnoiseless::DenoiseState;

pub const SAMPLE_RATE: u32 = 48000;
pub const HOP: usize = DenoiseState::FRAME_SIZE;
/// RNNoise's output hop is the input hop before last (one frame of overlap).
pub const DELAY: usize = DenoiseState::FRAME_SIZE;

pub struct RnnoiseEnhancer {
    states: Vec<Box<DenoiseState<'static>>>,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
    /// The last input hop per channel, for the dry fallback (same delay).
    previous: Vec<f32>,
    faults: u64,
}

impl RnnoiseEnhancer {
    pub fn new(channels: usize) -> Self {
        Self {
            states: (0..channels).map(|_| DenoiseState::new()).collect(),
            scratch_in: vec![0.0; HOP],
            scratch_out: vec![0.0; HOP],
            previous: vec![0.0; HOP * channels],
            faults: 0,
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
        self.states.len()
    }
    fn delay(&self) -> usize {
        DELAY
    }
    fn faults(&self) -> u64 {
        self.faults
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        for (ch, state) in self.states.iter_mut().enumerate() {
            let inp = &input[ch * HOP..(ch + 1) * HOP];
            // RNNoise works on 16-bit-scaled samples.
            for (d, s) in self.scratch_in.iter_mut().zip(inp) {
                *d = s * 32768.0;
            }
            state.process_frame(&mut self.scratch_out, &self.scratch_in);
            let out = &mut output[ch * HOP..(ch + 1) * HOP];
            if all_finite(&self.scratch_out) {
                for (o, s) in out.iter_mut().zip(&self.scratch_out) {
                    *o = s / 32768.0;
                }
            } else {
                self.faults += 1;
                **state = *DenoiseState::new();
                out.copy_from_slice(&self.previous[ch * HOP..(ch + 1) * HOP]);
            }
            self.previous[ch * HOP..(ch + 1) * HOP].copy_from_slice(inp);
        }
    }

    fn reset(&mut self) {
        for s in self.states.iter_mut() {
            **s = *DenoiseState::new();
        }
        self.previous.fill(0.0);
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
}
