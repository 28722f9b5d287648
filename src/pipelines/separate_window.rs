//! Sliding-window spectrogram separation: the one pipeline behind every
//! music separator (Spleeter, user MDX-Net models), live and offline.
//! Worker thread; allocates only in `new`.
//!
//! Separation networks see many spectrogram frames at once (Spleeter a
//! multiple of 64, MDX-Net `dim_t`). Each hop of this model is `advance`
//! STFT frames. After it arrives, the net runs on the newest `window` frames
//! and the stems are synthesised for the `advance` frames that sit
//! `lookahead` frames before the newest one:
//!
//! ```text
//! window:  [ past context ........ | output (advance) | lookahead ]
//!           frame j_new-window+1                        frame j_new
//! ```
//!
//! More lookahead and a longer window give the net more context (better
//! quality) at more latency and cost. `phase` frames of silence are put in
//! front of the input so that offline the windows fall exactly where the
//! reference implementation puts its segments (see [`WindowPlan::reference`]).
//!
//! Delay (model samples): `(phase + lookahead) * hop + n_fft - hop`.

use super::HopModel;
use crate::dsp::delay::DelayLine;
use crate::dsp::sanitize::all_finite;
use crate::dsp::stft::{StreamingStft, Window};
use realfft::num_complex::Complex32;

/// Frames the net sees, frames per hop, frames of lookahead, phase frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPlan {
    pub window: usize,
    pub advance: usize,
    pub lookahead: usize,
    pub phase: usize,
}

impl WindowPlan {
    /// Non-overlapping segments of `window` frames aligned so that segment
    /// `s` holds the frames centred on samples `s * window * hop ..`: exactly
    /// what `center=True` STFT + segmenting reference code does.
    pub const fn reference(window: usize) -> Self {
        Self { window, advance: window, lookahead: 0, phase: window - 1 }
    }

    pub fn is_valid(&self) -> bool {
        self.advance > 0 && self.window >= self.advance + self.lookahead
    }

    /// Hop-synchronous delay in model samples.
    pub fn delay(&self, n_fft: usize, hop: usize) -> usize {
        (self.phase + self.lookahead) * hop + n_fft - hop
    }
}

/// A network that maps a window of complex spectra to stem spectra.
/// Worker thread.
pub trait SpectrogramNet: Send {
    fn name(&self) -> &str;
    /// Stem names, in output order.
    fn stem_names(&self) -> &[String];
    fn sample_rate(&self) -> u32;
    fn n_fft(&self) -> usize;
    fn hop(&self) -> usize;
    fn device_note(&self) -> &str {
        "CPU"
    }
    /// `spectra`: the window, `[channel][frame][bin]` for 2 channels,
    /// `frames` frames, `n_fft/2+1` bins, oldest frame first. Writes the
    /// stems' spectra for frames `first..first + count` into `out`,
    /// `[stem][channel][count][bin]`.
    fn separate(&mut self, spectra: &[Complex32], frames: usize, first: usize, count: usize, out: &mut [Complex32]) -> Result<(), String>;
}

/// Channels every separation net works in (stereo; mono input is doubled).
const NET_CHANNELS: usize = 2;

pub struct WindowedSeparator<N: SpectrogramNet> {
    net: N,
    plan: WindowPlan,
    channels: usize,
    stems: usize,
    bins: usize,
    phase_delay: DelayLine,
    analysis: StreamingStft,
    /// One synthesis state per `[stem][net channel]`.
    synthesis: StreamingStft,
    /// `[net channel][frame][bin]`, oldest frame first.
    ring: Vec<Complex32>,
    /// `[stem][net channel][advance][bin]`.
    stem_spectra: Vec<Complex32>,
    spectrum: Vec<Complex32>,
    hop_in: Vec<f32>,
    hop_out: Vec<f32>,
    faults: u64,
}

impl<N: SpectrogramNet> WindowedSeparator<N> {
    /// `channels`: host channels, 1 or 2.
    pub fn new(net: N, plan: WindowPlan, channels: usize) -> Self {
        assert!(plan.is_valid(), "invalid window plan {plan:?}");
        let (n_fft, hop) = (net.n_fft(), net.hop());
        let stems = net.stem_names().len();
        let bins = n_fft / 2 + 1;
        let channels = channels.clamp(1, NET_CHANNELS);
        Self {
            plan,
            channels,
            stems,
            bins,
            phase_delay: DelayLine::new(channels, plan.phase * hop),
            analysis: StreamingStft::new(n_fft, hop, NET_CHANNELS, Window::HannPeriodic),
            synthesis: StreamingStft::new(n_fft, hop, stems * NET_CHANNELS, Window::HannPeriodic),
            ring: vec![Complex32::default(); NET_CHANNELS * plan.window * bins],
            stem_spectra: vec![Complex32::default(); stems * NET_CHANNELS * plan.advance * bins],
            spectrum: vec![Complex32::default(); bins],
            hop_in: vec![0.0; NET_CHANNELS * hop],
            hop_out: vec![0.0; hop],
            faults: 0,
            net,
        }
    }

    pub fn plan(&self) -> WindowPlan {
        self.plan
    }

    pub fn net(&self) -> &N {
        &self.net
    }

    pub fn stem_names(&self) -> &[String] {
        self.net.stem_names()
    }

    /// Each stem gets an equal share of the input: what a failed window
    /// falls back to, so the stems still add up to the mix.
    fn fallback(&mut self, first: usize) {
        let (w, a, bins) = (self.plan.window, self.plan.advance, self.bins);
        let share = 1.0 / self.stems as f32;
        for s in 0..self.stems {
            for ch in 0..NET_CHANNELS {
                for k in 0..a {
                    let src = &self.ring[(ch * w + first + k) * bins..(ch * w + first + k + 1) * bins];
                    let dst = &mut self.stem_spectra[((s * NET_CHANNELS + ch) * a + k) * bins..((s * NET_CHANNELS + ch) * a + k + 1) * bins];
                    for (d, x) in dst.iter_mut().zip(src) {
                        *d = x * share;
                    }
                }
            }
        }
    }
}

impl<N: SpectrogramNet> HopModel for WindowedSeparator<N> {
    fn name(&self) -> &str {
        self.net.name()
    }
    fn sample_rate(&self) -> u32 {
        self.net.sample_rate()
    }
    fn hop(&self) -> usize {
        self.plan.advance * self.net.hop()
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn out_channels(&self) -> usize {
        self.stems * self.channels
    }
    fn delay(&self) -> usize {
        self.plan.delay(self.net.n_fft(), self.net.hop())
    }
    fn faults(&self) -> u64 {
        self.faults
    }
    fn device_note(&self) -> &str {
        self.net.device_note()
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let (w, a, bins, c) = (self.plan.window, self.plan.advance, self.bins, self.channels);
        let hop = self.net.hop();
        let big_hop = a * hop;

        // 1. Analyse `advance` new frames into the end of the window.
        for ch in 0..NET_CHANNELS {
            self.ring.copy_within((ch * w + a) * bins..(ch + 1) * w * bins, ch * w * bins);
        }
        let mut frame_in = [0.0f32; NET_CHANNELS];
        let mut frame_out = [0.0f32; NET_CHANNELS];
        for k in 0..a {
            for i in 0..hop {
                for ch in 0..c {
                    frame_in[ch] = input[ch * big_hop + k * hop + i];
                }
                self.phase_delay.tick(&frame_in[..c], &mut frame_out);
                for ch in 0..NET_CHANNELS {
                    self.hop_in[ch * hop + i] = frame_out[ch.min(c - 1)];
                }
            }
            for ch in 0..NET_CHANNELS {
                let pos = (ch * w + w - a + k) * bins;
                self.analysis.analyze(ch, &self.hop_in[ch * hop..(ch + 1) * hop], &mut self.ring[pos..pos + bins]);
            }
        }

        // 2. Separate the output frames.
        let first = w - self.plan.lookahead - a;
        let ok = match self.net.separate(&self.ring, w, first, a, &mut self.stem_spectra) {
            Ok(()) if all_finite(bytes_of(&self.stem_spectra)) => true,
            Ok(()) => {
                log_fault(self.faults, self.net.name(), "non-finite stems");
                false
            }
            Err(e) => {
                log_fault(self.faults, self.net.name(), &e);
                false
            }
        };
        if !ok {
            self.faults += 1;
            self.fallback(first);
        }

        // 3. Synthesise every stem.
        output[..self.stems * c * big_hop].fill(0.0);
        let mono_gain = if c == 1 { 0.5 } else { 1.0 };
        for k in 0..a {
            for s in 0..self.stems {
                for ch in 0..NET_CHANNELS {
                    let src = ((s * NET_CHANNELS + ch) * a + k) * bins;
                    self.spectrum.copy_from_slice(&self.stem_spectra[src..src + bins]);
                    self.synthesis.synthesize(s * NET_CHANNELS + ch, &mut self.spectrum, &mut self.hop_out);
                    let out_ch = s * c + ch.min(c - 1);
                    let dst = &mut output[out_ch * big_hop + k * hop..out_ch * big_hop + (k + 1) * hop];
                    for (d, y) in dst.iter_mut().zip(&self.hop_out) {
                        *d += y * mono_gain;
                    }
                }
            }
        }
    }

    fn reset(&mut self) {
        self.phase_delay.reset();
        self.analysis.reset();
        self.synthesis.reset();
        self.ring.fill(Complex32::default());
    }
}

fn bytes_of(c: &[Complex32]) -> &[f32] {
    // Complex32 is #[repr(C)] { re, im }.
    unsafe { std::slice::from_raw_parts(c.as_ptr() as *const f32, c.len() * 2) }
}

fn log_fault(faults: u64, name: &str, why: &str) {
    if faults < 3 {
        log::warn!("{name}: window failed ({why}); stems fall back to equal shares of the mix");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stem 0 = the mix delayed by nothing, stem 1 = minus the mix, taken
    /// from the window at the output frames: tests the framing and delay.
    struct SplitNet {
        names: Vec<String>,
        gain: f32,
    }

    impl SpectrogramNet for SplitNet {
        fn name(&self) -> &str {
            "split test net"
        }
        fn stem_names(&self) -> &[String] {
            &self.names
        }
        fn sample_rate(&self) -> u32 {
            44100
        }
        fn n_fft(&self) -> usize {
            64
        }
        fn hop(&self) -> usize {
            16
        }
        fn separate(&mut self, spectra: &[Complex32], frames: usize, first: usize, count: usize, out: &mut [Complex32]) -> Result<(), String> {
            if self.gain.is_nan() {
                return Err("asked to fail".into());
            }
            let bins = 33;
            for s in 0..2 {
                let g = if s == 0 { self.gain } else { 1.0 - self.gain };
                for ch in 0..2 {
                    for k in 0..count {
                        for b in 0..bins {
                            out[((s * 2 + ch) * count + k) * bins + b] = spectra[(ch * frames + first + k) * bins + b] * g;
                        }
                    }
                }
            }
            Ok(())
        }
    }

    fn run(plan: WindowPlan, channels: usize, gain: f32) -> (Vec<f32>, Vec<f32>, usize) {
        let net = SplitNet { names: vec!["a".into(), "b".into()], gain };
        let mut sep = WindowedSeparator::new(net, plan, channels);
        let hop = sep.hop();
        let hops = 40;
        let n = hop * hops;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1009) as f32 / 1009.0 - 0.5).collect();
        let mut y = vec![0.0f32; 2 * channels * n];
        let mut inb = vec![0.0f32; channels * hop];
        let mut outb = vec![0.0f32; 2 * channels * hop];
        for h in 0..hops {
            for ch in 0..channels {
                let g = 1.0 - 0.5 * ch as f32;
                for i in 0..hop {
                    inb[ch * hop + i] = x[h * hop + i] * g;
                }
            }
            sep.process_hop(&inb, &mut outb);
            for o in 0..2 * channels {
                y[o * n + h * hop..o * n + (h + 1) * hop].copy_from_slice(&outb[o * hop..(o + 1) * hop]);
            }
        }
        (x, y, sep.delay())
    }

    #[test]
    fn stems_are_the_delayed_input_split_exactly() {
        for plan in [
            WindowPlan { window: 8, advance: 2, lookahead: 3, phase: 0 },
            WindowPlan { window: 4, advance: 4, lookahead: 0, phase: 3 },
            WindowPlan::reference(8),
        ] {
            for channels in [1, 2] {
                let (x, y, d) = run(plan, channels, 0.25);
                let n = x.len();
                assert_eq!(d, plan.delay(64, 16));
                for i in d + 64..n {
                    for ch in 0..channels {
                        let g = 1.0 - 0.5 * ch as f32;
                        let a = y[ch * n + i];
                        let b = y[(channels + ch) * n + i];
                        assert!((a - 0.25 * g * x[i - d]).abs() < 1e-4, "{plan:?} ch{ch} i{i}: {a}");
                        assert!((b - 0.75 * g * x[i - d]).abs() < 1e-4, "{plan:?} ch{ch} i{i}: {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_failing_net_falls_back_to_equal_shares() {
        let plan = WindowPlan { window: 8, advance: 2, lookahead: 3, phase: 0 };
        let (x, y, d) = run(plan, 1, f32::NAN);
        let n = x.len();
        for i in d + 64..n {
            assert!((y[i] - 0.5 * x[i - d]).abs() < 1e-4);
            assert!((y[n + i] - 0.5 * x[i - d]).abs() < 1e-4);
        }
    }
}
