//! Output level for generators (voice conversion): the output's loudness
//! follows the input's, and its true peak never passes a ceiling.
//!
//! - [`RunningLoudness`]: ITU-R BS.1770 loudness, K-weighted and gated, as
//!   a running (causal) measure: 400 ms windows every 100 ms, the −70 LUFS
//!   absolute gate and the −10 LU relative gate against the running mean,
//!   which forgets over about [`LOUDNESS_MEMORY_S`].
//! - [`TruePeakLimiter`]: 4× oversampled peak detection (as BS.1770's
//!   true-peak meter), a look-ahead gain that is already down when the peak
//!   leaves, release afterwards; one gain for all channels (the image stays).
//! - [`OutputLevel`]: both, as the last stage of a model: gain = input
//!   loudness / output loudness (each gated on its own, as BS.1770 does), then
//!   the limiter. Delays the output by [`OutputLevel::delay`] samples.
//!
//! Worker/render thread; no allocation after `new`. Per sample and per fixed
//! 100 ms step, so the result does not depend on how the signal is cut into
//! blocks (live and offline agree).

/// The running loudness forgets over about this long.
pub const LOUDNESS_MEMORY_S: f32 = 30.0;
/// Ceiling for the 4× oversampled peak: 1.5 dB below full scale, so the true
/// peak stays under −1 dBTP after the host-rate resampler's small ripple.
pub const PEAK_CEILING_DB: f32 = -1.5;
/// Limiter look-ahead, seconds.
pub const LIMITER_LOOKAHEAD_S: f32 = 0.003;
/// Limiter release time constant, seconds.
pub const LIMITER_RELEASE_S: f32 = 0.08;
/// 100 ms steps of input loudness kept for the output to catch up with: a
/// model's hop may be up to this long (12.8 s).
const INPUT_STEPS: usize = 128;
/// Largest gain the loudness match applies either way, dB.
pub const MAX_MATCH_DB: f32 = 18.0;

/// One biquad section (transposed direct form II).
#[derive(Clone, Copy, Debug, Default)]
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    fn tick(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// BS.1770's K-weighting (high shelf, then high pass) at any sample rate,
/// from the analogue prototypes by the bilinear transform (matches the
/// standard's 48 kHz coefficients to 1e-6).
#[derive(Clone, Copy, Debug)]
struct KWeighting {
    shelf: Biquad,
    high_pass: Biquad,
}

impl KWeighting {
    fn new(rate: f64) -> Self {
        // Shelf: f0 1681.97 Hz, +4.0 dB, Q 0.7072.
        let (f0, gain_db, q) = (1681.974_450_955_533, 3.999_843_853_973_347, 0.707_175_236_955_419_6);
        let k = (std::f64::consts::PI * f0 / rate).tan();
        let vh = 10f64.powf(gain_db / 20.0);
        let vb = vh.powf(0.499_666_774_154_541_6);
        let a0 = 1.0 + k / q + k * k;
        let shelf = Biquad {
            b: [(vh + vb * k / q + k * k) / a0, 2.0 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0],
            a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0],
            z: [0.0; 2],
        };
        // High pass: f0 38.14 Hz, Q 0.5003.
        let (f0, q) = (38.135_470_876_024_44, 0.500_327_037_323_877_3);
        let k = (std::f64::consts::PI * f0 / rate).tan();
        let a0 = 1.0 + k / q + k * k;
        let high_pass = Biquad { b: [1.0, -2.0, 1.0], a: [2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0], z: [0.0; 2] };
        Self { shelf, high_pass }
    }

    fn tick(&mut self, x: f32) -> f64 {
        self.high_pass.tick(self.shelf.tick(x as f64))
    }

    fn reset(&mut self) {
        self.shelf.z = [0.0; 2];
        self.high_pass.z = [0.0; 2];
    }
}

/// Mean-square power of a 400 ms window at −70 LUFS (the absolute gate).
const ABSOLUTE_GATE: f64 = 1.169_499_8e-7; // 10^((−70 + 0.691) / 10)

/// Running, gated BS.1770 loudness of a multichannel stream (channels
/// weighted 1, as for left/right). Worker/render thread.
#[derive(Clone, Debug)]
pub struct RunningLoudness {
    filters: Vec<KWeighting>,
    /// Samples per 100 ms step.
    step: usize,
    /// Summed K-weighted power of the current step, and its samples so far.
    step_power: f64,
    step_fill: usize,
    /// The last four steps' powers (a 400 ms window).
    steps: [f64; 4],
    steps_seen: usize,
    /// Running mean of the windows above the absolute gate, and of those
    /// above both gates, with their (capped) counts.
    absolute_mean: f64,
    absolute_count: f64,
    gated_mean: f64,
    gated_count: f64,
    memory_windows: f64,
}

impl RunningLoudness {
    /// Allocates; main or worker thread.
    pub fn new(rate: u32, channels: usize) -> Self {
        let step = (rate as usize / 10).max(1);
        Self {
            filters: vec![KWeighting::new(rate as f64); channels.max(1)],
            step,
            step_power: 0.0,
            step_fill: 0,
            steps: [0.0; 4],
            steps_seen: 0,
            absolute_mean: 0.0,
            absolute_count: 0.0,
            gated_mean: 0.0,
            gated_count: 0.0,
            memory_windows: (LOUDNESS_MEMORY_S * 10.0) as f64,
        }
    }

    /// Takes one frame (one sample per channel).
    #[inline]
    pub fn push_frame(&mut self, frame: &[f32]) {
        for (f, &x) in self.filters.iter_mut().zip(frame) {
            let y = f.tick(x);
            self.step_power += y * y;
        }
        self.step_fill += 1;
        if self.step_fill == self.step {
            self.end_step();
        }
    }

    fn end_step(&mut self) {
        self.steps.rotate_left(1);
        self.steps[3] = self.step_power / self.step as f64;
        self.step_power = 0.0;
        self.step_fill = 0;
        self.steps_seen += 1;
        if self.steps_seen < 4 {
            return;
        }
        let z = self.steps.iter().sum::<f64>() / 4.0;
        if z <= ABSOLUTE_GATE {
            return;
        }
        self.absolute_count = (self.absolute_count + 1.0).min(self.memory_windows);
        self.absolute_mean += (z - self.absolute_mean) / self.absolute_count;
        if z > 0.1 * self.absolute_mean {
            self.gated_count = (self.gated_count + 1.0).min(self.memory_windows);
            self.gated_mean += (z - self.gated_mean) / self.gated_count;
        }
    }

    /// Gated mean power so far (None before the first window above the
    /// gates).
    pub fn power(&self) -> Option<f64> {
        (self.gated_count > 0.0).then_some(self.gated_mean)
    }

    /// Loudness in LUFS so far.
    pub fn lufs(&self) -> Option<f64> {
        self.power().map(|p| -0.691 + 10.0 * p.log10())
    }

    pub fn reset(&mut self) {
        self.filters.iter_mut().for_each(KWeighting::reset);
        self.step_power = 0.0;
        self.step_fill = 0;
        self.steps = [0.0; 4];
        self.steps_seen = 0;
        self.absolute_mean = 0.0;
        self.absolute_count = 0.0;
        self.gated_mean = 0.0;
        self.gated_count = 0.0;
    }
}

/// Taps either side of the interpolation point in the 4× peak detector.
const HALF_TAPS: usize = 8;
const TAPS: usize = 2 * HALF_TAPS;

/// Look-ahead peak limiter on the 4× oversampled peak. Worker/render thread.
#[derive(Clone, Debug)]
pub struct TruePeakLimiter {
    channels: usize,
    ceiling: f32,
    /// Interpolation filters for the points 1/4, 2/4 and 3/4 between two
    /// samples: `phase[k][j]` weighs sample `n − HALF_TAPS + 1 + j` for the
    /// point `n + (k + 1)/4`.
    phases: [[f32; TAPS]; 3],
    /// The last TAPS input frames (`history[c * TAPS + j]`), oldest first
    /// once rotated by `history_pos`.
    history: Vec<f32>,
    history_pos: usize,
    /// Input delayed by `delay()` (per channel ring).
    delayed: Vec<f32>,
    delayed_pos: usize,
    delay: usize,
    /// Gain each of the last `lookahead + 1` samples needs (sliding minimum).
    needed: Vec<f32>,
    /// The minimum after release, over the last `lookahead + 1` samples
    /// (their mean is the gain).
    held: Vec<f32>,
    ring_pos: usize,
    release: f32,
    last_held: f32,
}

impl TruePeakLimiter {
    /// Allocates; main or worker thread.
    pub fn new(rate: u32, channels: usize, ceiling_db: f32) -> Self {
        let lookahead = ((LIMITER_LOOKAHEAD_S * rate as f32).round() as usize).max(1);
        let mut phases = [[0.0f32; TAPS]; 3];
        for (k, phase) in phases.iter_mut().enumerate() {
            let frac = (k + 1) as f64 / 4.0;
            let mut sum = 0.0;
            for (j, tap) in phase.iter_mut().enumerate() {
                // Distance from the point to sample n − HALF_TAPS + 1 + j.
                let t = frac + HALF_TAPS as f64 - 1.0 - j as f64;
                let sinc = if t.abs() < 1e-12 { 1.0 } else { (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t) };
                // Hann window over |t| < HALF_TAPS.
                let w = 0.5 + 0.5 * (std::f64::consts::PI * t / HALF_TAPS as f64).cos();
                *tap = (sinc * w) as f32;
                sum += sinc * w;
            }
            phase.iter_mut().for_each(|t| *t = (*t as f64 / sum) as f32);
        }
        let channels = channels.max(1);
        let delay = HALF_TAPS + lookahead;
        let mut s = Self {
            channels,
            ceiling: 10f32.powf(ceiling_db / 20.0),
            phases,
            history: vec![0.0; channels * TAPS],
            history_pos: 0,
            delayed: vec![0.0; channels * (delay + 1)],
            delayed_pos: 0,
            delay,
            needed: vec![1.0; lookahead + 1],
            held: vec![1.0; lookahead + 1],
            ring_pos: 0,
            release: (-1.0 / (LIMITER_RELEASE_S * rate as f32)).exp(),
            last_held: 1.0,
        };
        s.reset();
        s
    }

    /// Samples between a frame in and the same frame out.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// One frame in place: `frame` in, the frame from `delay()` ago out,
    /// limited.
    #[inline]
    pub fn tick(&mut self, frame: &mut [f32]) {
        let c = self.channels;
        // Peak of the interval after the sample HALF_TAPS − 1 frames back.
        self.history_pos = (self.history_pos + 1) % TAPS;
        let mut peak = 0.0f32;
        for ch in 0..c {
            let h = &mut self.history[ch * TAPS..(ch + 1) * TAPS];
            h[(self.history_pos + TAPS - 1) % TAPS] = frame[ch];
            let centre = h[(self.history_pos + HALF_TAPS - 1) % TAPS];
            peak = peak.max(centre.abs());
            for phase in &self.phases {
                let mut y = 0.0;
                for (j, w) in phase.iter().enumerate() {
                    y += w * h[(self.history_pos + j) % TAPS];
                }
                peak = peak.max(y.abs());
            }
        }
        let need = if peak > self.ceiling { self.ceiling / peak } else { 1.0 };
        let n = self.needed.len();
        self.needed[self.ring_pos] = need;
        let lowest = self.needed.iter().copied().fold(1.0f32, f32::min);
        let held = lowest.min(1.0 - (1.0 - self.last_held) * self.release);
        self.last_held = held;
        self.held[self.ring_pos] = held;
        self.ring_pos = (self.ring_pos + 1) % n;
        let gain = self.held.iter().sum::<f32>() / n as f32;
        // The frame from `delay` samples ago (the one the gain was made for).
        let d = self.delay + 1;
        for ch in 0..c {
            let ring = &mut self.delayed[ch * d..(ch + 1) * d];
            ring[self.delayed_pos] = frame[ch];
            frame[ch] = ring[(self.delayed_pos + 1) % d] * gain;
        }
        self.delayed_pos = (self.delayed_pos + 1) % d;
    }

    pub fn reset(&mut self) {
        self.history.fill(0.0);
        self.history_pos = 0;
        self.delayed.fill(0.0);
        self.delayed_pos = 0;
        self.needed.fill(1.0);
        self.held.fill(1.0);
        self.ring_pos = 0;
        self.last_held = 1.0;
    }
}

/// Loudness match to the input, then the true-peak limiter: the last stage
/// of a voice converter. Worker/render thread.
#[derive(Clone, Debug)]
pub struct OutputLevel {
    channels: usize,
    input: RunningLoudness,
    output: RunningLoudness,
    limiter: TruePeakLimiter,
    /// The input's gated power at the end of each 100 ms step
    /// (`input_steps[k % len]`, step k counted from the reset), so that the
    /// output's step k is matched to the input heard up to the same sample
    /// whatever the block size.
    input_steps: [Option<f64>; INPUT_STEPS],
    input_fill: usize,
    input_step_count: usize,
    output_step_count: usize,
    /// 100 ms steps the model's output lags its input by (rounded): the
    /// output is matched to the input it was made from.
    lag_steps: usize,
    /// Off: only the limiter works (a model whose own level is meant).
    match_loudness: bool,
    /// Gain now and the gain it moves to over one 100 ms step.
    gain: f32,
    gain_step: f32,
    step_left: usize,
    step: usize,
    frame: Vec<f32>,
}

impl OutputLevel {
    /// Allocates; main or worker thread. `model_delay`: samples from the
    /// model's input to its output.
    pub fn new(rate: u32, channels: usize, model_delay: usize) -> Self {
        let channels = channels.max(1);
        let step = (rate as usize / 10).max(1);
        Self {
            lag_steps: (model_delay + step / 2) / step,
            match_loudness: true,
            channels,
            input: RunningLoudness::new(rate, channels),
            output: RunningLoudness::new(rate, channels),
            limiter: TruePeakLimiter::new(rate, channels, PEAK_CEILING_DB),
            input_steps: [None; INPUT_STEPS],
            input_fill: 0,
            input_step_count: 0,
            output_step_count: 0,
            gain: 1.0,
            gain_step: 0.0,
            step_left: 0,
            step,
            frame: vec![0.0; channels],
        }
    }

    /// Only the limiter: the model's own level is kept (user RVC models,
    /// whose level is part of the voice), never above the ceiling.
    pub fn limiter_only(rate: u32, channels: usize) -> Self {
        Self { match_loudness: false, ..Self::new(rate, channels, 0) }
    }

    /// Samples the stage delays the output by (the limiter's look-ahead).
    pub fn delay(&self) -> usize {
        self.limiter.delay()
    }

    /// Samples it delays by at `rate` (known before one is built).
    pub fn delay_at(rate: u32) -> usize {
        HALF_TAPS + ((LIMITER_LOOKAHEAD_S * rate as f32).round() as usize).max(1)
    }

    /// The model's input, planar (`channels * len`).
    pub fn measure_input(&mut self, planar: &[f32], len: usize) {
        for i in 0..len {
            for ch in 0..self.channels {
                self.frame[ch] = planar.get(ch * len + i).copied().unwrap_or(0.0);
            }
            self.input.push_frame(&self.frame);
            self.input_fill += 1;
            if self.input_fill == self.step {
                self.input_fill = 0;
                self.input_steps[self.input_step_count % INPUT_STEPS] = self.input.power();
                self.input_step_count += 1;
            }
        }
    }

    /// The model's output, planar, in place: measured, matched, limited.
    /// Non-finite samples become silence first.
    pub fn process(&mut self, planar: &mut [f32], len: usize) {
        for i in 0..len {
            for ch in 0..self.channels {
                let x = planar[ch * len + i];
                self.frame[ch] = if x.is_finite() { x } else { 0.0 };
            }
            self.output.push_frame(&self.frame);
            if self.step_left == 0 {
                let target = self.target_gain();
                self.output_step_count += 1;
                self.gain_step = (target - self.gain) / self.step as f32;
                self.step_left = self.step;
            }
            self.gain += self.gain_step;
            self.step_left -= 1;
            for x in self.frame.iter_mut() {
                *x *= self.gain;
            }
            self.limiter.tick(&mut self.frame);
            for ch in 0..self.channels {
                planar[ch * len + i] = self.frame[ch];
            }
        }
    }

    /// Input loudness over output loudness (before gain), as an amplitude;
    /// 1 until both have been heard.
    fn target_gain(&self) -> f32 {
        if !self.match_loudness {
            return 1.0;
        }
        // Input up to the end of the step before this output step, less
        // the model's lag (the input always runs at least as far as the
        // output).
        let heard = match self.output_step_count.checked_sub(1 + self.lag_steps) {
            Some(k) if k < self.input_step_count && self.input_step_count - k <= INPUT_STEPS => self.input_steps[k % INPUT_STEPS],
            _ => None,
        };
        match (heard, self.output.power()) {
            (Some(i), Some(o)) if o > 0.0 => {
                let limit = 10f64.powf(MAX_MATCH_DB as f64 / 20.0);
                (i / o).sqrt().clamp(1.0 / limit, limit) as f32
            }
            _ => 1.0,
        }
    }

    pub fn reset(&mut self) {
        self.input.reset();
        self.output.reset();
        self.limiter.reset();
        self.input_steps = [None; INPUT_STEPS];
        self.input_fill = 0;
        self.input_step_count = 0;
        self.output_step_count = 0;
        self.gain = 1.0;
        self.gain_step = 0.0;
        self.step_left = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, amp: f32, seconds: f32) -> Vec<f32> {
        (0..(rate as f32 * seconds) as usize).map(|i| amp * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin()).collect()
    }

    /// BS.1770's own check: a full-scale 997 Hz sine on one channel reads
    /// −3.01 LUFS, at 48 kHz and at Voice's 22050 Hz.
    #[test]
    fn full_scale_997_hz_reads_minus_3_lufs() {
        for rate in [48000, 22050] {
            let mut m = RunningLoudness::new(rate, 1);
            for x in sine(rate, 997.0, 1.0, 5.0) {
                m.push_frame(&[x]);
            }
            let l = m.lufs().unwrap();
            assert!((l + 3.01).abs() < 0.05, "{rate} Hz: {l} LUFS");
        }
    }

    /// Silence never opens the gates; quiet pauses between loud parts do
    /// not pull the loudness down (the relative gate).
    #[test]
    fn gates_ignore_silence_and_pauses() {
        let rate = 22050;
        let mut m = RunningLoudness::new(rate, 1);
        for _ in 0..rate * 2 {
            m.push_frame(&[0.0]);
        }
        assert!(m.lufs().is_none());
        let tone = sine(rate, 997.0, 0.1, 2.0);
        for round in 0..4 {
            for &x in &tone {
                m.push_frame(&[x]);
            }
            for i in 0..rate as usize * 2 {
                m.push_frame(&[if round % 2 == 0 { 0.0 } else { 0.0005 * (i as f32 * 0.1).sin() }]);
            }
        }
        // Ungated, the pauses (half the time) would make it −26; the windows
        // that straddle a tone's edges pull it a little below the tone's own.
        let l = m.lufs().unwrap();
        assert!((l + 23.01).abs() < 0.8, "{l} LUFS (the tone alone is −23.0)");
    }

    /// 4× oversampled peak of a signal, as a meter would read it.
    fn true_peak(x: &[f32]) -> f32 {
        let up = crate::dsp::resample::resample_whole(x, 22050, 88200).unwrap();
        up.iter().chain(x).fold(0.0f32, |m, v| m.max(v.abs()))
    }

    /// A tone 6 dB over full scale, a quarter-rate tone whose samples miss
    /// its peaks, and a click: none leaves the limiter above the ceiling,
    /// and quiet audio passes untouched, exactly delayed.
    #[test]
    fn limiter_holds_the_ceiling_and_leaves_quiet_audio_alone() {
        let rate = 22050;
        let ceiling = 10f32.powf(PEAK_CEILING_DB / 20.0);
        let mut loud = sine(rate, 440.0, 2.0, 1.0);
        // Samples at ±0.707 of a peak of 1.0 (fs/4 with a 45° phase).
        loud.extend((0..rate).map(|i| (std::f32::consts::FRAC_PI_2 * i as f32 + std::f32::consts::FRAC_PI_4).sin()));
        loud.extend(std::iter::repeat(0.0).take(500));
        loud.push(1.8);
        loud.extend(std::iter::repeat(0.0).take(2000));
        let mut lim = TruePeakLimiter::new(rate, 1, PEAK_CEILING_DB);
        let out: Vec<f32> = loud.iter().map(|&x| {
            let mut f = [x];
            lim.tick(&mut f);
            f[0]
        }).collect();
        let tp = true_peak(&out);
        assert!(tp <= ceiling * 1.02, "true peak {} dBFS", 20.0 * tp.log10());

        let quiet = sine(rate, 300.0, 0.3, 1.0);
        let mut lim = TruePeakLimiter::new(rate, 1, PEAK_CEILING_DB);
        let d = lim.delay();
        for (i, &x) in quiet.iter().enumerate() {
            let mut f = [x];
            lim.tick(&mut f);
            let want = if i >= d { quiet[i - d] } else { 0.0 };
            assert_eq!(f[0], want, "sample {i}");
        }
        assert_eq!(OutputLevel::delay_at(rate), d);
    }

    /// An output 12 dB louder than the input, and one 12 dB quieter, end up
    /// within 0.5 LU of the input; the result is the same whatever the
    /// block size; a reset starts over at unity gain.
    #[test]
    fn output_loudness_follows_the_input_whatever_the_blocks() {
        let rate = 22050;
        let input = sine(rate, 250.0, 0.05, 12.0);
        for factor in [4.0f32, 0.25] {
            let mut outs = Vec::new();
            for block in [256usize, 4096, 1000] {
                let mut level = OutputLevel::new(rate, 1, 0);
                let mut out = Vec::new();
                for chunk in input.chunks(block) {
                    level.measure_input(chunk, chunk.len());
                    let mut y: Vec<f32> = chunk.iter().map(|x| x * factor).collect();
                    level.process(&mut y, chunk.len());
                    out.extend(y);
                }
                outs.push(out);
            }
            assert!(outs.iter().all(|o| o == &outs[0]), "block size changed the output");
            let loudness = |x: &[f32]| {
                let mut m = RunningLoudness::new(rate, 1);
                x.iter().for_each(|&v| m.push_frame(&[v]));
                m.lufs().unwrap()
            };
            // The last 6 s, after the match has settled.
            let tail = 6 * rate as usize;
            let (li, lo) = (loudness(&input[input.len() - tail..]), loudness(&outs[0][outs[0].len() - tail..]));
            assert!((li - lo).abs() < 0.5, "×{factor}: input {li:.2} LUFS, output {lo:.2} LUFS");
        }
        let mut level = OutputLevel::new(rate, 1, 0);
        level.measure_input(&input, input.len());
        let mut y = input.clone();
        level.process(&mut y, input.len());
        level.reset();
        assert_eq!(level.target_gain(), 1.0);
    }
}
