//! Source–filter vocoder: the converter's mel frames and target F0 → 22050 Hz
//! audio with no neural net, for live conversion on machines where HiFi-GAN
//! cannot keep up (HiFi-GAN V1 needs about one core and a half per second of
//! audio on a 2-core laptop-class CPU; this needs about 2 % of one).
//! Worker thread (or CLI / tests); no allocation after [`SourceFilterVocoder::new`].
//!
//! A voiced frame is a sum of harmonics of its F0 plus noise; an unvoiced
//! frame is noise. Both follow the frame's smooth envelope (the cepstrally
//! smoothed log-mel, [`EnvelopeSplitter`]), so the audio's mel envelope is the
//! frame's:
//! - **harmonics**: additive synthesis, one phase accumulator for F0 and
//!   each harmonic at `h·θ + φ_h` (fixed chirp phases keep the crest factor
//!   low), F0 and amplitudes gliding linearly from one frame's values to
//!   the next's (the [`Glide`]);
//! - **noise**: random-phase spectra, one grain per frame, overlap-added:
//!   the grain rises over its frame's glide, is flat while the frame is
//!   held and falls under the next grain's rise (sine and cosine
//!   quarter-waves, so noise power stays constant);
//!   in voiced frames its share rises from −20 dB at 1 kHz to −3 dB at 8 kHz.
//!
//! Both stop at 7.9 kHz (HiFi-GAN's mel ends at 8 kHz). Levels are
//! calibrated once per process by analysing the synthesiser's own unit
//! output with the same mel front end ([`Calibration`]), so an envelope in,
//! the same envelope out, whatever the F0; the frame's overall level then
//! follows its energy (summed band powers, [`PowerSmoother`]), not the mean
//! of its log bands, which reads real voices' shallow harmonic valleys as
//! loudness. How much of a voiced frame is harmonics follows how deeply the
//! frame shows its F0's harmonic pattern ([`FULLY_VOICED_DEPTH`]); the rest
//! is noise.
//!
//! Delay: half the glide. Frame `j`'s centre is sample `256·j + 128`, as
//! in HiFi-GAN's output. The glide from frame `c − 1`'s values reaches frame
//! `c`'s at its centre, and call `c` writes 256 samples from the glide's
//! start: with [`Glide::CentreToCentre`] (the whole hop) samples
//! `256·c − 128 .. 256·c + 128`, nothing held; with [`Glide::HalfHop`]
//! frame `c`'s own hop, the last half held at frame `c`'s values (the next
//! frame is not known yet). Frame `c` thus weighs the output as a
//! trapezoid (rising over its glide, flat while held, falling over the next
//! glide) whose middle is half a glide after the call's first sample
//! would be without delay: 128 and 64 samples.
//! Offline and live give the same samples (seeded noise, no timing).

use super::convert_voice::{energy_level, EnvelopeSplitter, HarmonicPatterns};
use crate::dsp::mel::{self, MelFrame, HOP, LOG_SILENCE, N_MELS, SAMPLE_RATE};
use crate::dsp::pitch;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner};
use std::sync::{Arc, OnceLock};

/// Harmonics and noise stop below this (Hz).
const TOP_HZ: f32 = 7900.0;
/// Noise grain buffer (two hops; a grain with a short glide is shorter).
const GRAIN: usize = 2 * HOP;

/// How a frame's values take over from the previous frame's: linearly,
/// ending at the new frame's centre.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Glide {
    /// Over the whole hop, from the previous frame's centre: each frame's
    /// sound is centred on its frame; half a frame (128 samples) of delay.
    CentreToCentre,
    /// Over the half hop before the new frame's centre, then held to the
    /// hop's end: sharper changes, a quarter frame (64 samples) of delay.
    HalfHop,
}

impl Glide {
    /// Samples of the glide.
    pub const fn samples(self) -> usize {
        match self {
            Glide::CentreToCentre => HOP,
            Glide::HalfHop => HOP / 2,
        }
    }

    /// The vocoder's delay with this glide (see the module's "Delay").
    pub const fn delay_samples(self) -> usize {
        self.samples() / 2
    }
}
const GRAIN_BINS: usize = GRAIN / 2 + 1;
/// Harmonics below [`TOP_HZ`] at the lowest F0 the tracker reports.
const MAX_HARMONICS: usize = (TOP_HZ / pitch::F0_MIN_HZ) as usize + 1;
/// Calibration F0s per octave (log-spaced from the tracker's lowest F0).
const CAL_STEPS_PER_OCTAVE: f32 = 24.0;
/// An envelope more than this far below the calibration's loudest band is
/// not boosted further (bands below F0 carry no harmonic).
const MAX_BOOST_NATS: f32 = 6.0;
/// Depth of the harmonic pattern ([`HarmonicPatterns::depth`]) from which a
/// frame counts as fully voiced; shallower frames mix in noise in
/// proportion. Voiced frames of recorded speech (80 of Allison's prompts,
/// names before "m") show a median depth of 0.45, 90 % below 0.67.
const FULLY_VOICED_DEPTH: f32 = 0.5;
/// Noise share (power) of voiced frames: −20 dB up to 1 kHz, −3 dB at 8 kHz.
fn voiced_noise_share(hz: f32) -> f32 {
    let (lo, hi) = (1000.0f32, 8000.0f32);
    let t = ((hz.max(lo).min(hi) / lo).ln() / (hi / lo).ln()).clamp(0.0, 1.0);
    10f32.powf((-20.0 + 17.0 * t) / 10.0)
}

/// Fixed phase of harmonic `h` (a chirp: low crest factor, no buzz).
fn harmonic_phase(h: usize) -> f32 {
    std::f32::consts::PI * (h * h) as f32 / 40.0
}

/// What the mel front end reads from the synthesiser's unit output: the
/// smooth log-mel envelope of voiced frames of unit envelope (harmonics with
/// their noise share) for F0s on a log grid, and of unit noise. Built once per process (any thread).
struct Calibration {
    /// `ln F0` of each row of `voiced`.
    log_f0: Vec<f32>,
    voiced: Vec<MelFrame>,
    noise: MelFrame,
    /// The same, power-smoothed ([`PowerSmoother`]): where the output's
    /// energy is read.
    voiced_power: Vec<MelFrame>,
    noise_power: MelFrame,
}

fn calibration() -> &'static Calibration {
    static CAL: OnceLock<Calibration> = OnceLock::new();
    CAL.get_or_init(Calibration::measure)
}

impl Calibration {
    fn measure() -> Self {
        let splitter = EnvelopeSplitter::default();
        // Leave out the frames that see the padded ends.
        let smoother = PowerSmoother::new();
        let smooth_mean = |signal: &[f32]| mean_envelope(signal, 4, &splitter, None);
        let power_mean = |signal: &[f32]| mean_envelope(signal, 4, &splitter, Some(&smoother));
        let len = 48 * HOP;
        let steps = (CAL_STEPS_PER_OCTAVE * (pitch::F0_MAX_HZ / pitch::F0_MIN_HZ).log2()).ceil()
            as usize
            + 1;
        let mut log_f0 = Vec::with_capacity(steps);
        let mut harmonic = Vec::with_capacity(steps);
        let mut harmonic_power = Vec::with_capacity(steps);
        let tables = PhaseTables::new();
        let mut signal = vec![0.0f32; len];
        // (Steady frames: the glide does not matter.)
        let mut grains = NoiseGrains::new(HOP);
        let bin_hz = |k: usize| k as f32 * SAMPLE_RATE as f32 / GRAIN as f32;
        // A voiced frame of unit envelope: harmonics and their noise share.
        let voiced_noise: [f32; GRAIN_BINS] = std::array::from_fn(|k| {
            if bin_hz(k) < TOP_HZ {
                voiced_noise_share(bin_hz(k)).sqrt()
            } else {
                0.0
            }
        });
        for step in 0..steps {
            let f0 = pitch::F0_MIN_HZ * (step as f32 / CAL_STEPS_PER_OCTAVE).exp2();
            let amps: Vec<f32> = (1..=harmonic_count(f0))
                .map(|h| (1.0 - voiced_noise_share(h as f32 * f0)).sqrt())
                .collect();
            let mut theta = 0.0f64;
            let mut rng = NOISE_SEED;
            grains.reset();
            signal.fill(0.0);
            for chunk in signal.chunks_mut(HOP) {
                render_harmonics(&tables, &mut theta, (f0, f0), (&amps, &amps), chunk);
                grains.add(&voiced_noise, &mut rng);
                grains.take(chunk);
            }
            log_f0.push(f0.ln());
            harmonic.push(smooth_mean(&signal));
            harmonic_power.push(power_mean(&signal));
        }
        let mut noise_signal = vec![0.0f32; 4 * len];
        let unit: [f32; GRAIN_BINS] =
            std::array::from_fn(|k| if bin_hz(k) < TOP_HZ { 1.0 } else { 0.0 });
        let mut rng = NOISE_SEED;
        grains.reset();
        for chunk in noise_signal.chunks_mut(HOP) {
            grains.add(&unit, &mut rng);
            grains.take(chunk);
        }
        Self {
            log_f0,
            voiced: harmonic,
            voiced_power: harmonic_power,
            noise: smooth_mean(&noise_signal),
            noise_power: power_mean(&noise_signal),
        }
    }

    /// The voiced calibration at `f0` (linear in `ln F0` between rows),
    /// floored at [`MAX_BOOST_NATS`] below its loudest band.
    fn voiced_at(&self, f0: f32, out: &mut MelFrame, power: &mut MelFrame) {
        let x = f0.max(pitch::F0_MIN_HZ).ln();
        let last = self.log_f0.len() - 1;
        let i = self
            .log_f0
            .iter()
            .rposition(|&g| g <= x)
            .unwrap_or(0)
            .min(last - 1);
        let t = ((x - self.log_f0[i]) / (self.log_f0[i + 1] - self.log_f0[i])).clamp(0.0, 1.0);
        for b in 0..N_MELS {
            out[b] = self.voiced[i][b] + t * (self.voiced[i + 1][b] - self.voiced[i][b]);
            power[b] = self.voiced_power[i][b] + t * (self.voiced_power[i + 1][b] - self.voiced_power[i][b]);
        }
        let top = out.iter().copied().fold(f32::MIN, f32::max);
        out.iter_mut()
            .for_each(|v| *v = v.max(top - MAX_BOOST_NATS));
    }
}

/// The smooth envelope of the mean log-mel frame of `signal`, leaving out
/// `skip` frames at each end; with `power`, of the mean power-smoothed
/// frame ([`PowerSmoother`]).
fn mean_envelope(signal: &[f32], skip: usize, splitter: &EnvelopeSplitter, power: Option<&PowerSmoother>) -> MelFrame {
    let frames = mel::log_mel(signal);
    let inner = &frames[skip..frames.len() - skip];
    let mut mean = [0.0f32; N_MELS];
    let mut f = [0.0f32; N_MELS];
    for frame in inner {
        match power {
            Some(p) => p.smooth(frame, &mut f),
            None => f = *frame,
        }
        for b in 0..N_MELS {
            mean[b] += f[b] / inner.len() as f32;
        }
    }
    let mut env = [0.0; N_MELS];
    splitter.envelope(&mean, &mut env);
    env
}

/// Narrowest spread (Gaussian σ, Hz) of [`PowerSmoother`]: wide enough that
/// a band always sees a harmonic of the highest F0s in the speech range.
const POWER_SMOOTHING_HZ: f32 = 160.0;

/// Averages a log-mel frame's band *powers* over neighbouring bands (a
/// Gaussian of at least [`POWER_SMOOTHING_HZ`]), then takes the log again:
/// its level is the frame's energy whatever the fine structure.
struct PowerSmoother {
    /// `[N_MELS][N_MELS]`, columns sum to 1: the smoothed frame holds the
    /// same total power.
    kernel: Vec<f32>,
}

impl PowerSmoother {
    fn new() -> Self {
        let c = mel::band_centres_hz();
        let mut kernel = vec![0.0f32; N_MELS * N_MELS];
        // Column k spreads band k's power over its neighbours.
        for k in 0..N_MELS {
            let spacing = 0.5 * (c[(k + 1).min(N_MELS - 1)] - c[k.saturating_sub(1)]);
            let sigma = POWER_SMOOTHING_HZ.max(spacing);
            let weights: Vec<f32> = (0..N_MELS).map(|b| (-0.5 * ((c[b] - c[k]) / sigma).powi(2)).exp()).collect();
            let sum: f32 = weights.iter().sum();
            for (b, w) in weights.iter().enumerate() {
                kernel[b * N_MELS + k] = w / sum;
            }
        }
        Self { kernel }
    }

    fn smooth(&self, frame: &MelFrame, out: &mut MelFrame) {
        let top = frame.iter().copied().fold(f32::MIN, f32::max);
        let mut power = [0.0f32; N_MELS];
        for (p, m) in power.iter_mut().zip(frame) {
            *p = (2.0 * (m - top)).exp();
        }
        for (b, o) in out.iter_mut().enumerate() {
            let row = &self.kernel[b * N_MELS..(b + 1) * N_MELS];
            let s: f32 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
            *o = top + 0.5 * s.max(1e-30).ln();
        }
    }
}

/// Harmonics of `f0` below [`TOP_HZ`].
fn harmonic_count(f0: f32) -> usize {
    if f0 <= 0.0 {
        0
    } else {
        ((TOP_HZ / f0).ceil() as usize)
            .saturating_sub(1)
            .clamp(1, MAX_HARMONICS)
    }
}

/// `cos φ_h`, `sin φ_h` for every harmonic.
struct PhaseTables {
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl PhaseTables {
    fn new() -> Self {
        let phases: Vec<f64> = (1..=MAX_HARMONICS)
            .map(|h| harmonic_phase(h) as f64)
            .collect();
        Self {
            cos: phases.iter().map(|p| p.cos()).collect(),
            sin: phases.iter().map(|p| p.sin()).collect(),
        }
    }
}

/// Adds `out.len()` samples of harmonics: F0 from `f0.0` to `f0.1` and
/// harmonic `h`'s amplitude from `amps.0[h−1]` to `amps.1[h−1]` (missing =
/// 0), linearly over the span; `theta` is the running F0 phase.
fn render_harmonics(
    tables: &PhaseTables,
    theta: &mut f64,
    f0: (f32, f32),
    amps: (&[f32], &[f32]),
    out: &mut [f32],
) {
    let n = out.len();
    let count = amps.0.len().max(amps.1.len()).min(MAX_HARMONICS);
    let two_pi = 2.0 * std::f64::consts::PI;
    for (i, o) in out.iter_mut().enumerate() {
        let t = (i as f64 + 0.5) / n as f64;
        let f = f0.0 as f64 + (f0.1 as f64 - f0.0 as f64) * t;
        *theta = (*theta + two_pi * f / SAMPLE_RATE as f64) % two_pi;
        let (s1, c1) = theta.sin_cos();
        let (mut zr, mut zi) = (c1, s1);
        let mut acc = 0.0f64;
        for h in 0..count {
            let a0 = amps.0.get(h).copied().unwrap_or(0.0) as f64;
            let a1 = amps.1.get(h).copied().unwrap_or(0.0) as f64;
            let a = a0 + (a1 - a0) * t;
            // sin(hθ + φ) = sin hθ · cos φ + cos hθ · sin φ
            acc += a * (zi * tables.cos[h] + zr * tables.sin[h]);
            let r = zr * c1 - zi * s1;
            zi = zr * s1 + zi * c1;
            zr = r;
        }
        *o += acc as f32;
    }
}

const NOISE_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// xorshift64*: a uniform value in [0, 1).
fn next_uniform(state: &mut u64) -> f32 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
}

/// The noise grain's window at sample `i` (from the grain's start) for a
/// glide of `glide` samples: the rising half of a sine half-wave over the
/// glide, flat to the hop's end, then the falling half over the next
/// grain's glide (with the whole-hop glide: the 512-sample sine window).
/// Each sample is covered by one flat part or by one rise and one fall
/// whose squares sum to 1, so overlap-added random-phase grains keep a
/// constant noise power.
fn grain_window(i: usize, glide: usize) -> f32 {
    let half_wave = |j: usize| (std::f32::consts::PI * (j as f32 + 0.5) / (2 * glide) as f32).sin();
    if i < glide {
        half_wave(i)
    } else if i < HOP {
        1.0
    } else if i < HOP + glide {
        half_wave(i - HOP + glide)
    } else {
        0.0
    }
}

/// Overlap-added noise grains (one per hop, see [`grain_window`]).
struct NoiseGrains {
    ifft: Arc<dyn ComplexToReal<f32>>,
    spectrum: Vec<Complex32>,
    grain: Vec<f32>,
    scratch: Vec<Complex32>,
    window: Vec<f32>,
    /// Samples from the oldest not yet played: `[0, HOP)` is played next,
    /// and a new grain starts there (its flat part one glide later).
    acc: Vec<f32>,
}

impl NoiseGrains {
    /// Grains for frames that glide over `glide` samples.
    fn new(glide: usize) -> Self {
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(GRAIN);
        Self {
            spectrum: ifft.make_input_vec(),
            grain: ifft.make_output_vec(),
            scratch: ifft.make_scratch_vec(),
            window: (0..GRAIN).map(|i| grain_window(i, glide)).collect(),
            acc: vec![0.0; GRAIN],
            ifft,
        }
    }

    /// Adds a grain with magnitudes `mags` (per bin of a 512-point FFT) and
    /// random phases.
    fn add(&mut self, mags: &[f32; GRAIN_BINS], rng: &mut u64) {
        for (k, (c, m)) in self.spectrum.iter_mut().zip(mags).enumerate() {
            let phase = 2.0 * std::f32::consts::PI * next_uniform(rng);
            *c = if k == 0 || k == GRAIN_BINS - 1 {
                Complex32::new(0.0, 0.0)
            } else {
                Complex32::from_polar(*m, phase)
            };
        }
        // realfft only fails on wrong lengths, which `new` rules out.
        let _ =
            self.ifft
                .process_with_scratch(&mut self.spectrum, &mut self.grain, &mut self.scratch);
        let scale = 1.0 / (GRAIN as f32).sqrt();
        for i in 0..GRAIN {
            self.acc[i] += self.grain[i] * self.window[i] * scale;
        }
    }

    /// Adds the next `HOP` samples to `out` and moves on.
    fn take(&mut self, out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(&self.acc[..HOP]) {
            *o += *a;
        }
        self.acc.copy_within(HOP.., 0);
        let n = self.acc.len();
        self.acc[n - HOP..].fill(0.0);
    }

    fn reset(&mut self) {
        self.acc.fill(0.0);
    }
}

/// The streaming synthesiser. Worker thread.
pub struct SourceFilterVocoder {
    cal: &'static Calibration,
    splitter: EnvelopeSplitter,
    smoother: PowerSmoother,
    patterns: &'static HarmonicPatterns,
    resolved: usize,
    tables: PhaseTables,
    /// Mel band centres (Hz), ascending.
    centres: [f32; N_MELS],
    /// The previous frame's F0 (0 = unvoiced) and harmonic amplitudes.
    prev_f0: f32,
    prev_amps: Vec<f32>,
    amps: Vec<f32>,
    theta: f64,
    span: [f32; HOP],
    glide: Glide,
    grains: NoiseGrains,
    rng: u64,
}

impl Default for SourceFilterVocoder {
    fn default() -> Self {
        Self::new(Glide::CentreToCentre)
    }
}

impl SourceFilterVocoder {
    pub fn new(glide: Glide) -> Self {
        Self {
            cal: calibration(),
            splitter: EnvelopeSplitter::default(),
            smoother: PowerSmoother::new(),
            patterns: HarmonicPatterns::shared(),
            resolved: super::convert_voice::resolved_bands(),
            tables: PhaseTables::new(),
            centres: mel::band_centres_hz(),
            prev_f0: 0.0,
            prev_amps: Vec::with_capacity(MAX_HARMONICS),
            amps: Vec::with_capacity(MAX_HARMONICS),
            theta: 0.0,
            span: [0.0; HOP],
            glide,
            grains: NoiseGrains::new(glide.samples()),
            rng: NOISE_SEED,
        }
    }

    /// Delay of [`process_frame`](Self::process_frame) in samples.
    pub fn delay_samples(&self) -> usize {
        self.glide.delay_samples()
    }

    pub fn reset(&mut self) {
        self.prev_f0 = 0.0;
        self.prev_amps.clear();
        self.theta = 0.0;
        self.grains.reset();
        self.rng = NOISE_SEED;
    }

    /// One mel frame and its F0 (Hz, 0 or less = unvoiced) in, 256 samples
    /// out: the glide from frame `c − 1`'s values to frame `c`'s, then
    /// frame `c` held (see the module's "Delay").
    pub fn process_frame(&mut self, frame: &MelFrame, f0: f32, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            HOP,
            "SourceFilterVocoder::process_frame writes {HOP} samples"
        );
        let f0 = if f0.is_finite() && f0 > 0.0 {
            f0.clamp(pitch::F0_MIN_HZ, pitch::F0_MAX_HZ)
        } else {
            0.0
        };
        let mut clean = *frame;
        clean.iter_mut().for_each(|v| {
            *v = if v.is_finite() {
                v.clamp(LOG_SILENCE, 10.0)
            } else {
                LOG_SILENCE
            }
        });
        let mut env = [0.0; N_MELS];
        self.splitter.envelope(&clean, &mut env);
        // How voiced: how deeply the frame shows the harmonic pattern of
        // its F0 (a whisper or a weakly voiced consonant, hardly at all).
        let voicing = if f0 > 0.0 {
            let mut fine = [0.0; N_MELS];
            for b in 0..N_MELS {
                fine[b] = clean[b] - env[b];
            }
            (self.patterns.depth(&fine, f0, self.resolved) / FULLY_VOICED_DEPTH).clamp(0.0, 1.0)
        } else {
            0.0
        };

        // Gain per band against the calibration: a voiced frame's harmonics
        // and noise share one, an unvoiced frame's noise has its own.
        let mut gain = [0.0; N_MELS];
        let mut unit_power = [0.0; N_MELS];
        if f0 > 0.0 {
            self.cal.voiced_at(f0, &mut gain, &mut unit_power);
            if voicing < 1.0 {
                // Part harmonics, part noise: the calibrations mixed.
                for b in 0..N_MELS {
                    gain[b] = voicing * gain[b] + (1.0 - voicing) * self.cal.noise[b];
                    let (a, n) = (unit_power[b], self.cal.noise_power[b]);
                    let top = a.max(n);
                    unit_power[b] = top + 0.5 * (voicing * (2.0 * (a - top)).exp() + (1.0 - voicing) * (2.0 * (n - top)).exp()).max(1e-30).ln();
                }
            }
        } else {
            gain = self.cal.noise;
            unit_power = self.cal.noise_power;
        }
        for b in 0..N_MELS {
            gain[b] = env[b] - gain[b];
        }
        // The shape follows the mean-of-logs envelope; the level follows the
        // frame's energy, which that envelope misreads by the depth of the
        // valleys between harmonics (real voices' are shallower than the
        // calibration's steady tones: up to 1 nat at onsets).
        let mut wanted = [0.0; N_MELS];
        self.smoother.smooth(&clean, &mut wanted);
        let mut predicted = [0.0; N_MELS];
        for b in 0..N_MELS {
            predicted[b] = unit_power[b] + gain[b];
        }
        let correction = energy_level(&wanted) - energy_level(&predicted);
        if correction.is_finite() {
            gain.iter_mut().for_each(|g| *g += correction);
        }
        // Harmonic amplitudes at this frame's centre.
        self.amps.clear();
        for h in 1..=harmonic_count(f0) {
            let hz = h as f32 * f0;
            self.amps.push(
                interpolate(&self.centres, &gain, hz).exp() * ((1.0 - voiced_noise_share(hz)) * voicing).sqrt(),
            );
        }
        // The glide to this frame's centre (F0 held across a voicing change,
        // the silent side's amplitudes 0), then this frame held.
        self.span = [0.0; HOP];
        if self.prev_f0 > 0.0 || f0 > 0.0 {
            let (f_a, f_b) = match (self.prev_f0 > 0.0, f0 > 0.0) {
                (true, true) => (self.prev_f0, f0),
                (true, false) => (self.prev_f0, self.prev_f0),
                _ => (f0, f0),
            };
            let (glide, hold) = self.span.split_at_mut(self.glide.samples());
            render_harmonics(
                &self.tables,
                &mut self.theta,
                (f_a, f_b),
                (&self.prev_amps, &self.amps),
                glide,
            );
            if f0 > 0.0 {
                render_harmonics(&self.tables, &mut self.theta, (f0, f0), (&self.amps, &self.amps), hold);
            }
        }
        out.copy_from_slice(&self.span);
        std::mem::swap(&mut self.prev_amps, &mut self.amps);
        self.prev_f0 = f0;

        // This frame's noise grain.
        let mut mags = [0.0f32; GRAIN_BINS];
        for (k, m) in mags.iter_mut().enumerate() {
            let hz = k as f32 * SAMPLE_RATE as f32 / GRAIN as f32;
            if hz >= TOP_HZ {
                break;
            }
            let share = if f0 > 0.0 {
                1.0 - (1.0 - voiced_noise_share(hz)) * voicing
            } else {
                1.0
            };
            *m = interpolate(&self.centres, &gain, hz).exp() * share.sqrt();
        }
        self.grains.add(&mags, &mut self.rng);
        self.grains.take(out);
        for v in out.iter_mut() {
            if !v.is_finite() {
                *v = 0.0;
            }
        }
    }
}

/// `values` (per band, at `centres`) read at `hz`, linear between centres,
/// held beyond the ends.
fn interpolate(centres: &[f32; N_MELS], values: &MelFrame, hz: f32) -> f32 {
    if hz <= centres[0] {
        return values[0];
    }
    if hz >= centres[N_MELS - 1] {
        return values[N_MELS - 1];
    }
    let i = centres.partition_point(|&c| c <= hz) - 1;
    let t = (hz - centres[i]) / (centres[i + 1] - centres[i]);
    values[i] + t * (values[i + 1] - values[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(frames: &[MelFrame], f0: &[f32]) -> Vec<f32> {
        let mut v = SourceFilterVocoder::default();
        let mut out = vec![0.0; frames.len() * HOP];
        for (i, (m, f)) in frames.iter().zip(f0).enumerate() {
            v.process_frame(m, *f, &mut out[i * HOP..(i + 1) * HOP]);
        }
        out
    }

    /// A frame as a steady voice at `f0` shows it: the envelope plus the
    /// harmonic pattern at full depth (none when unvoiced).
    fn voiced(env: &MelFrame, f0: f32) -> MelFrame {
        let mut frame = *env;
        if f0 > 0.0 {
            let mut pattern = [0.0; N_MELS];
            HarmonicPatterns::shared().pattern(f0, &mut pattern);
            for b in 0..N_MELS {
                frame[b] += pattern[b];
            }
        }
        frame
    }

    /// Mean smooth envelope of the frames of `audio` away from its ends.
    fn analysed_envelope(audio: &[f32]) -> MelFrame {
        mean_envelope(audio, 8, &EnvelopeSplitter::default(), None)
    }

    /// The whole-hop glide's grain is the 512-sample sine window, bit for
    /// bit; every glide's grains keep the noise power (squares of the
    /// overlapping windows sum to 1).
    #[test]
    fn grain_windows_keep_the_noise_power() {
        for i in 0..GRAIN {
            assert_eq!(grain_window(i, HOP), (std::f32::consts::PI * (i as f32 + 0.5) / GRAIN as f32).sin(), "sample {i}");
        }
        for glide in [Glide::CentreToCentre, Glide::HalfHop] {
            let g = glide.samples();
            for i in 0..HOP {
                let sum = grain_window(i, g).powi(2) + grain_window(i + HOP, g).powi(2);
                assert!((sum - 1.0).abs() < 1e-6, "{glide:?} sample {i}: {sum}");
            }
        }
    }

    /// A frame's sound sits where the reported delay says, with either
    /// glide: loud frames among quiet ones (voiced and unvoiced), the
    /// centroid of each one's output power on average within 8 samples of
    /// the frame's centre plus the delay (call `c` writes samples
    /// `256·c ..`; the two glides' delays differ by 64; the noise grains
    /// move a centroid by a few samples). The half-hop glide's sound is 64
    /// samples past its frame's centre although its values are reached
    /// there: the hold.
    #[test]
    fn a_frames_sound_is_centred_at_its_delay() {
        let env: MelFrame = std::array::from_fn(|b| -1.0 - 0.03 * b as f32);
        let quiet = [LOG_SILENCE; N_MELS];
        let loud_frames = [10usize, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120];
        for glide in [Glide::CentreToCentre, Glide::HalfHop] {
            for f0 in [0.0f32, 143.0] {
                let mut v = SourceFilterVocoder::new(glide);
                let mut out = vec![0.0; 130 * HOP];
                for (c, chunk) in out.chunks_exact_mut(HOP).enumerate() {
                    let loud = loud_frames.contains(&c);
                    let frame = if loud { voiced(&env, f0) } else { quiet };
                    v.process_frame(&frame, if loud { f0 } else { 0.0 }, chunk);
                }
                let mut mean_offset = 0.0;
                for k in loud_frames {
                    let expected = (k * HOP + HOP / 2 + v.delay_samples()) as f64;
                    let (from, to) = (k * HOP - 2 * HOP, k * HOP + 3 * HOP);
                    let power: f64 = out[from..to].iter().map(|x| (*x as f64).powi(2)).sum();
                    let centroid: f64 = out[from..to].iter().enumerate().map(|(i, x)| (from + i) as f64 * (*x as f64).powi(2)).sum::<f64>() / power;
                    mean_offset += (centroid - expected) / loud_frames.len() as f64;
                }
                assert!(mean_offset.abs() < 8.0, "{glide:?} glide, F0 {f0}: a frame's sound is {mean_offset:.1} samples from its reported place");
            }
        }
    }

    /// The envelope in is the envelope out, voiced (at F0s between the
    /// calibration's grid points) and unvoiced: its shape within 0.9 dB
    /// (0.1 nats) on average over the bands from 200 Hz to 7 kHz.
    #[test]
    fn output_has_the_envelope_shape_it_was_given() {
        let splitter = EnvelopeSplitter::default();
        let centres = mel::band_centres_hz();
        let raw: MelFrame =
            std::array::from_fn(|b| -2.0 - 0.04 * b as f32 + 0.8 * (b as f32 * 0.15).sin());
        let mut env = [0.0; N_MELS];
        splitter.envelope(&raw, &mut env);
        for f0 in [0.0f32, 97.0, 143.0, 231.0] {
            let frame = voiced(&env, f0);
            let audio = render(&vec![frame; 60], &vec![f0; 60]);
            let got = analysed_envelope(&audio);
            let bands: Vec<usize> = (0..N_MELS)
                .filter(|&b| centres[b] > 200.0f32.max(1.5 * f0) && centres[b] < 7000.0)
                .collect();
            let offset = bands.iter().map(|&b| got[b] - env[b]).sum::<f32>() / bands.len() as f32;
            let err = bands.iter().map(|&b| (got[b] - env[b] - offset).abs()).sum::<f32>()
                / bands.len() as f32;
            assert!(err < 0.1, "F0 {f0}: mean envelope shape error {err} nats");
        }
    }

    /// Copy synthesis keeps a voice's energy: a band-limited sawtooth with
    /// a little noise (what a voiced frame of speech looks like to the mel
    /// front end, valleys between harmonics included) analysed into frames,
    /// rendered, analysed again: its mean frame energy within 0.05 nats
    /// (0.4 dB) from 97 to 320 Hz. Reading the level from the mean of the
    /// logs instead, as before, comes out up to 1 nat loud on real speech.
    #[test]
    fn copy_synthesis_keeps_the_energy() {
        for f0 in [97.0f32, 143.0, 231.0, 320.0] {
            let mut rng = 1u64;
            let x: Vec<f32> = (0..80 * HOP)
                .map(|i| {
                    let t = i as f32 / SAMPLE_RATE as f32;
                    let saw: f32 = (1..)
                        .take_while(|&h| h as f32 * f0 < 7500.0)
                        .map(|h| (2.0 * std::f32::consts::PI * h as f32 * f0 * t).sin() / h as f32)
                        .sum();
                    0.1 * saw + 0.03 * (next_uniform(&mut rng) - 0.5)
                })
                .collect();
            let frames = mel::log_mel(&x);
            let audio = render(&frames, &vec![f0; frames.len()]);
            let energy = |frames: &[MelFrame]| {
                let inner = &frames[10..frames.len() - 10];
                let power = inner.iter().map(|f| (2.0 * energy_level(f)).exp()).sum::<f32>();
                0.5 * (power / inner.len() as f32).ln()
            };
            let err = energy(&mel::log_mel(&audio)) - energy(&frames);
            assert!(err.abs() < 0.05, "F0 {f0}: energy off by {err:+.3} nats");
        }
    }

    const TAIL: usize = 4096;

    /// Spectrum of the last [`TAIL`] samples of `audio`, Hann-windowed.
    fn tail_spectrum(audio: &[f32]) -> Vec<Complex32> {
        let seg = &audio[audio.len() - TAIL..];
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(TAIL);
        let mut x: Vec<f32> = seg
            .iter()
            .enumerate()
            .map(|(i, v)| v * (0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / TAIL as f32).cos()))
            .collect();
        let mut spec = fft.make_output_vec();
        fft.process(&mut x, &mut spec).unwrap();
        spec
    }

    /// A voiced frame's harmonics sit at its F0: the output's strongest
    /// spectral peak below 400 Hz is within one FFT bin of F0.
    #[test]
    fn voiced_frames_sound_at_their_f0() {
        let env = [-3.0f32; N_MELS];
        for f0 in [110.0f32, 180.0, 260.0] {
            let audio = render(&vec![voiced(&env, f0); 40], &vec![f0; 40]);
            let spec = tail_spectrum(&audio);
            let bin_hz = SAMPLE_RATE as f32 / TAIL as f32;
            let lo = (60.0 / bin_hz) as usize;
            let hi = (400.0 / bin_hz) as usize;
            let peak = (lo..hi)
                .max_by(|&a, &b| spec[a].norm().total_cmp(&spec[b].norm()))
                .unwrap();
            assert!(
                (peak as f32 * bin_hz - f0).abs() <= 1.5 * bin_hz,
                "F0 {f0}: peak at {} Hz",
                peak as f32 * bin_hz
            );
        }
    }

    /// A frame that shows no harmonics is noise, whatever F0 the tracker
    /// gave it (a whispered or weakly voiced sound): no peak at F0 stands
    /// out, where the same envelope with its harmonic pattern has one.
    #[test]
    fn frames_without_harmonics_are_noise() {
        let env = [-3.0f32; N_MELS];
        let f0 = 150.0f32;
        let peak_over_floor = |frame: MelFrame| {
            let spec = tail_spectrum(&render(&vec![frame; 40], &vec![f0; 40]));
            let bin_hz = SAMPLE_RATE as f32 / TAIL as f32;
            let at = (f0 / bin_hz).round() as usize;
            let peak = spec[at - 1..=at + 1].iter().map(|c| c.norm_sqr()).fold(0.0f32, f32::max);
            let lo = (300.0 / bin_hz) as usize;
            let floor = spec[lo..lo + 200].iter().map(|c| c.norm_sqr()).sum::<f32>() / 200.0;
            10.0 * (peak / floor).log10()
        };
        let harmonic = peak_over_floor(voiced(&env, f0));
        let smooth = peak_over_floor(env);
        assert!(harmonic > 20.0, "voiced frame: F0 only {harmonic:.1} dB over the floor");
        assert!(smooth < 10.0, "frame without harmonics: F0 {smooth:.1} dB over the floor");
    }

    /// Same frames, same samples (seeded noise), also after a reset; a frame
    /// of NaN neither escapes nor poisons what follows.
    #[test]
    fn deterministic_and_survives_bad_frames() {
        let env: MelFrame = std::array::from_fn(|b| -3.0 - 0.03 * b as f32);
        let f0: Vec<f32> = (0..30)
            .map(|i| if i % 10 < 6 { 120.0 + i as f32 } else { 0.0 })
            .collect();
        let a = render(&vec![env; 30], &f0);
        let mut v = SourceFilterVocoder::default();
        let mut b = vec![0.0; a.len()];
        v.process_frame(&[1.0; N_MELS], 200.0, &mut b[..HOP]);
        v.reset();
        for (i, f) in f0.iter().enumerate() {
            v.process_frame(&env, *f, &mut b[i * HOP..(i + 1) * HOP]);
        }
        assert_eq!(a, b);
        assert!(
            a.iter().map(|v| v.abs()).fold(0.0f32, f32::max) > 1e-3,
            "silent output"
        );
        let mut bad = [env; 20];
        bad[5] = [f32::NAN; N_MELS];
        let mut f0s = [150.0f32; 20];
        f0s[7] = f32::INFINITY;
        let out = render(&bad, &f0s);
        assert!(out.iter().all(|v| v.is_finite()));
        let tail = &out[15 * HOP..];
        assert!(
            tail.iter().map(|v| v * v).sum::<f32>() > 1e-6,
            "the stream stayed silent after a bad frame"
        );
    }
}
