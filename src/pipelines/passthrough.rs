//! A model that changes nothing but frames audio exactly like a real
//! STFT-domain model: used when no model is selected and, in tests, to verify
//! latency through the complete wet path.

use super::HopModel;
use crate::dsp::stft::{StreamingStft, Window};
use realfft::num_complex::Complex32;

pub struct StftPassthrough {
    rate: u32,
    stft: StreamingStft,
    spec: Vec<Complex32>,
}

impl StftPassthrough {
    pub fn new(rate: u32, n_fft: usize, hop: usize, channels: usize) -> Self {
        let stft = StreamingStft::new(n_fft, hop, channels, Window::SqrtHannPeriodic);
        let spec = vec![Complex32::default(); stft.bins()];
        Self { rate, stft, spec }
    }
}

impl HopModel for StftPassthrough {
    fn name(&self) -> &str {
        "passthrough"
    }
    fn sample_rate(&self) -> u32 {
        self.rate
    }
    fn hop(&self) -> usize {
        self.stft.hop()
    }
    fn channels(&self) -> usize {
        self.stft.channels()
    }
    fn delay(&self) -> usize {
        self.stft.delay()
    }
    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let h = self.stft.hop();
        for ch in 0..self.stft.channels() {
            self.stft.analyze(ch, &input[ch * h..(ch + 1) * h], &mut self.spec);
            self.stft.synthesize(ch, &mut self.spec, &mut output[ch * h..(ch + 1) * h]);
        }
    }
    fn reset(&mut self) {
        self.stft.reset();
    }
}
