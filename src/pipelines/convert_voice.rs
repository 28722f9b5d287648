//! Manifold Voice's default conversion: any source voice to a target voice
//! given a short reference recording, with no per-target training.
//!
//! Per 256-sample hop at 22050 Hz (one HiFi-GAN mel frame):
//! 1. **Content.** The project's phone-posterior model (`models/content`, an
//!    MLP over a few frames of HiFi-GAN log-mel, trained on synthetic
//!    phone-aligned speech by `cargo xtask train-content`) gives each source
//!    frame a speaker-independent description: which phone is being said.
//! 2. **Matching.** The `k` target-reference frames whose phone posteriors
//!    are nearest (Hellinger distance), with their envelope's shape close to
//!    the warped and equalised source's over a few frames either side (so
//!    transitions match, not only the frame), supply the spectral envelope:
//!    the target's vocal tract saying the source's phone.
//! 3. **Excitation and prosody.** The source's own fine structure (log-mel
//!    minus its cepstrally smoothed envelope) keeps timing, voicing and
//!    intonation; its harmonics move to the target's pitch range (log-F0
//!    mean and spread mapped from source to target; the project's streaming
//!    pitch tracker).
//! 4. **Strength.** The envelope is `(1 − s)·source + s·matched target`, the
//!    loudness contour stays the source's: `s = 0` keeps every word (only the
//!    pitch range moves), `s = 1` sounds most like the target.
//! 5. HiFi-GAN universal vocodes the converted mel, streaming with a fixed
//!    context ([`StreamingVocoder`]).
//!
//! Everything here runs on the worker thread (live) or the render thread
//! (offline), through the same [`HopModel`] code; offline is deterministic.
//! [`TargetVoice::analyse`] runs wherever the reference is loaded (a
//! background thread in the plugin, the main thread in the CLI).

use super::vocoder_hifigan::{HifiGan, StreamingConfig, StreamingVocoder};
use super::vocoder_light::LightVocoder;
use super::vocoder_source_filter::{Glide, SourceFilterVocoder};
use super::HopModel;
use crate::dsp::loudness::OutputLevel;
use crate::dsp::mel::{self, HifiGanMel, MelFrame, StreamingMel, N_MELS};
use crate::dsp::pitch::{self, PitchTracker};
use crate::runtime::onnx::{open_session_with_threads, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::Path;
use std::sync::Arc;

pub const SAMPLE_RATE: u32 = mel::SAMPLE_RATE;
pub const HOP: usize = mel::HOP;
/// Model id of the content model in the model store.
pub const CONTENT_MODEL_ID: &str = "content_phones";
pub const CONTENT_MODEL_FILE: &str = "content_phones.onnx";
/// Cepstral coefficients kept in the envelope (of 80).
pub const ENVELOPE_COEFFS: usize = 14;
/// An envelope's shape: DCT coefficients 1..ENVELOPE_COEFFS.
pub type Shape = [f32; ENVELOPE_COEFFS - 1];
/// Target frames averaged per source frame.
pub const NEIGHBOURS: usize = 8;
/// The strength curve. Up to [`BALANCED_STRENGTH`] every part of the
/// conversion grows together (vocal-tract warp and long-term equalisation to
/// full, phone offsets to [`PHONE_GAIN`], matched target frames to
/// [`BALANCED_MATCH_SHARE`] of the envelope); above it, the matched target
/// frames take over the envelope completely at strength 1 (most like the
/// target, fewest words kept).
pub const BALANCED_STRENGTH: f32 = 0.75;
/// Gain on the phone-dependent envelope offsets from the balanced point up.
pub const PHONE_GAIN: f32 = 1.5;
/// Share of the envelope taken from matched target frames at the balanced
/// point.
pub const BALANCED_MATCH_SHARE: f32 = 0.6;

/// `(warp and equalisation amount, phone-offset gain, matched share)` for a
/// strength.
pub fn strength_curve(strength: f32) -> (f32, f32, f32) {
    let s = strength.clamp(0.0, 1.0);
    if s <= BALANCED_STRENGTH {
        let t = s / BALANCED_STRENGTH;
        (t, PHONE_GAIN * t, BALANCED_MATCH_SHARE * t)
    } else {
        let t = (s - BALANCED_STRENGTH) / (1.0 - BALANCED_STRENGTH);
        (1.0, PHONE_GAIN, BALANCED_MATCH_SHARE + (1.0 - BALANCED_MATCH_SHARE) * t)
    }
}
/// Weight of the envelope-shape distance against the phone-posterior
/// distance when matching target frames: where the content model is unsure
/// or wrong, the target frames whose envelope looks like the (warped,
/// equalised) source's win, so fewer words change (voice bench, strength
/// 0.75, test split: WER rise 0.24 → 0.16 at weight 0.3 with no context).
const SHAPE_WEIGHT: f32 = 1.0;
/// Frames either side whose shapes count in the shape distance (the mean
/// over the `2·SHAPE_CONTEXT + 1` frames): a target frame wins when its
/// neighbours also look like the source frame's, i.e. in the middle of the
/// same transition (voice bench, development split, strength 0.75: WER rise
/// +0.187 → +0.159, 75 % → 76 % closer; 3 frames gave +0.175, 78 %).
const SHAPE_CONTEXT: usize = 2;
/// The source shapes compared when matching one frame.
type ShapeContext = [Shape; 2 * SHAPE_CONTEXT + 1];
/// Frames either side over which the phone offsets are averaged.
const OFFSET_SMOOTHING: usize = 3;
/// Source speech frames (about 0.23 s) over which the phone offsets fade in.
const OFFSET_WARMUP_FRAMES: f32 = 20.0;
/// Frames either side over which phone posteriors are averaged for matching.
const KEY_SMOOTHING: usize = 2;
/// Pseudo-frames of the overall mean in each phone's mean (shrinkage for
/// phones seldom heard).
const PHONE_PRIOR_FRAMES: f32 = 3.0;
/// A frame within this many nats of the loudest so far is speech (for the
/// long-term spectra).
const ACTIVE_NATS: f32 = 5.0;
/// Source statistics forget over about this many frames (30 s).
const SOURCE_MEMORY_FRAMES: f32 = 2600.0;
/// Vocal-tract warp factors searched.
const WARP_MIN: f32 = 0.8;
const WARP_MAX: f32 = 1.25;
const WARP_STEPS: usize = 46;
/// Default strength.
pub const DEFAULT_STRENGTH: f32 = BALANCED_STRENGTH;
/// HiFi-GAN context live: a block of 16 frames (186 ms) per call.
pub const LIVE_VOCODER: StreamingConfig = StreamingConfig { left: 12, new: 16, right: 12 };
/// Offline: longer blocks, same context (the output matches full-signal
/// vocoding as closely as live does).
pub const OFFLINE_VOCODER: StreamingConfig = StreamingConfig { left: 12, new: 64, right: 12 };
/// Shortest usable reference, seconds.
pub const MIN_REFERENCE_S: f32 = 3.0;

/// What turns the converted mel frames into audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocoderChoice {
    /// HiFi-GAN V1 on a sliding window (`vocoder_hifigan.rs`).
    HifiGan(StreamingConfig),
    /// Harmonics plus noise from the frame's envelope and the target F0
    /// (`vocoder_source_filter.rs`): no model, one frame per call.
    SourceFilter(Glide),
    /// Manifold's light causal vocoder (`vocoder_light.rs`), one frame per
    /// call.
    Light,
}

/// How the converter runs: its vocoder; whether it uses the phone
/// posteriors (the phone-dependent offsets and the matched target frames),
/// which cost the content model's look-ahead; how many frames the offsets and
/// posteriors are smoothed ahead (at most [`SMOOTHING_LAG`]; fewer make the
/// smoothing one-sided); the pitch tracker's decoding look-ahead (10 ms
/// hops, [`pitch::DEFAULT_LOOKAHEAD_HOPS`] at most); whether the mel front
/// end reads a shorter window one frame sooner
/// ([`StreamingMel::short_window`]); and how many 10 ms pitch frames
/// before a mel frame's centre its F0 is read (0 = the nearest frame; more
/// lets the output come sooner, with the F0 contour that much late).
/// `strength_exponent` maps the strength control onto the strength curve
/// (`strength ^ exponent`), so that a setting whose vocoder sounds more like
/// the target at the same strength does not convert further than offline
/// at the same control position (see [`LIVE_BALANCED_STRENGTH_EXPONENT`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConverterSettings {
    pub vocoder: VocoderChoice,
    pub phonetic: bool,
    pub smoothing_lag: usize,
    pub pitch_lookahead: usize,
    pub short_window: bool,
    pub pitch_early: usize,
    pub strength_exponent: f32,
}

/// Balanced's strength exponent. The source-filter vocoder renders each
/// frame's smooth envelope without the source's finer spectral detail, so
/// at the same strength it sounds more like the target than HiFi-GAN does
/// and keeps fewer words. On the real-voice set (all 20 test prompts, 140
/// outputs, 2026-12-07) Balanced at strength 0.6 was as close to the target
/// as offline at 0.744 (mean cosine margin −0.005 for both; closer 53 % and
/// 52 %) and kept as many words (WER 0.610 and 0.609): 0.744 ^ 1.73 = 0.60.
pub const LIVE_BALANCED_STRENGTH_EXPONENT: f32 = 1.73;

impl ConverterSettings {
    /// Offline renders (the CLI, a host's export).
    pub const OFFLINE: Self = Self {
        vocoder: VocoderChoice::HifiGan(OFFLINE_VOCODER),
        phonetic: true,
        smoothing_lag: SMOOTHING_LAG,
        pitch_lookahead: pitch::DEFAULT_LOOKAHEAD_HOPS,
        short_window: false,
        pitch_early: 0,
        strength_exponent: 1.0,
    };
    /// Live, as offline but HiFi-GAN in blocks of 16 frames: needs a fast
    /// machine (about 1.5 cores of a 2-core laptop-class CPU).
    pub const LIVE_QUALITY: Self = Self {
        vocoder: VocoderChoice::HifiGan(LIVE_VOCODER),
        ..Self::OFFLINE
    };
    /// Live default: every conversion step, smoothing one frame ahead,
    /// source–filter synthesis. (The pitch look-ahead costs nothing here:
    /// the content model's look-ahead is as long.)
    pub const LIVE_BALANCED: Self = Self {
        vocoder: VocoderChoice::SourceFilter(Glide::CentreToCentre),
        smoothing_lag: 1,
        strength_exponent: LIVE_BALANCED_STRENGTH_EXPONENT,
        ..Self::OFFLINE
    };
    /// Lowest latency: no phone look-ahead (warp, equalisation and pitch
    /// only), no pitch decoding look-ahead, the short mel window, F0 read
    /// 20 ms early (the tracker needs 30 ms past a frame, the short window
    /// 17 ms), source–filter synthesis with the half-hop glide.
    pub const LIVE_LOW_LATENCY: Self = Self {
        vocoder: VocoderChoice::SourceFilter(Glide::HalfHop),
        phonetic: false,
        smoothing_lag: 0,
        pitch_lookahead: 0,
        short_window: true,
        pitch_early: 2,
        strength_exponent: 1.0,
    };

    /// The strength the strength curve gets for the control's `strength`.
    pub fn curve_strength(&self, strength: f32) -> f32 {
        strength.clamp(0.0, 1.0).powf(self.strength_exponent)
    }

    /// Mel frames per call (the model's hop in frames).
    pub fn frames_per_call(&self) -> usize {
        match self.vocoder {
            VocoderChoice::HifiGan(cfg) => cfg.new,
            VocoderChoice::SourceFilter(_) | VocoderChoice::Light => 1,
        }
    }

    /// The vocoder's delay in samples.
    pub fn vocoder_delay(&self) -> usize {
        match self.vocoder {
            VocoderChoice::HifiGan(cfg) => cfg.right * HOP,
            VocoderChoice::SourceFilter(glide) => glide.delay_samples(),
            VocoderChoice::Light => super::vocoder_light::DELAY_SAMPLES,
        }
    }

    /// The mel front end.
    fn streaming_mel(&self) -> StreamingMel {
        if self.short_window {
            StreamingMel::short_window()
        } else {
            StreamingMel::new()
        }
    }

    /// Frames between a mel frame's hop and the frame's analysis: the
    /// content model's look-ahead `right` (when phonetic), the mel front
    /// end's delay, and waiting for the frame's F0.
    fn analysis_lag(&self, right: usize) -> usize {
        let right = if self.phonetic { right } else { 0 };
        conversion_lag(
            right,
            StreamingMel::delay_frames_for(self.short_window),
            self.pitch_tracker().delay_hops(),
            self.pitch_early,
        )
    }

    /// Frames of smoothing look-ahead after analysis.
    fn smoothing_lag(&self) -> usize {
        if self.phonetic {
            self.smoothing_lag.min(SMOOTHING_LAG)
        } else {
            0
        }
    }

    fn pitch_tracker(&self) -> PitchTracker {
        PitchTracker::with_lookahead(
            SAMPLE_RATE,
            self.pitch_lookahead.min(pitch::DEFAULT_LOOKAHEAD_HOPS),
        )
    }
}

/// The converter's vocoder, as chosen by [`VocoderChoice`]. Worker thread.
enum Vocoder {
    HifiGan(StreamingVocoder),
    SourceFilter(Box<SourceFilterVocoder>),
    Light(LightVocoder),
}

impl Vocoder {
    /// `frames.len()` frames (with their output F0, 0 = unvoiced) in,
    /// `256 · frames.len()` samples out.
    fn process(
        &mut self,
        frames: &[MelFrame],
        f0: &[f32],
        out: &mut [f32],
    ) -> Result<(), RuntimeError> {
        match self {
            Vocoder::HifiGan(v) => v.process(frames, out),
            Vocoder::Light(v) => v.process(frames, f0, out),
            Vocoder::SourceFilter(v) => {
                for ((frame, f), chunk) in frames.iter().zip(f0).zip(out.chunks_exact_mut(HOP)) {
                    v.process_frame(frame, *f, chunk);
                }
                Ok(())
            }
        }
    }

    fn reset(&mut self) {
        match self {
            Vocoder::HifiGan(v) => v.reset(),
            Vocoder::Light(v) => v.reset(),
            Vocoder::SourceFilter(v) => v.reset(),
        }
    }

    fn faults(&self) -> u64 {
        match self {
            Vocoder::HifiGan(v) => v.faults(),
            Vocoder::Light(v) => v.faults(),
            Vocoder::SourceFilter(_) => 0,
        }
    }
}

/// How the content model wants its input normalised per speaker
/// (`speaker_normalisation` in `content_phones.json`).
#[derive(Clone, Copy, Debug)]
pub struct SpeakerNormSettings {
    /// Where the running mean starts: the training speech frames' mean.
    pub prior_mean: MelFrame,
    /// A frame is speech when its mean log-mel is above this.
    pub speech_gate: f32,
    /// Weight of the prior, in frames.
    pub prior_frames: f32,
    /// Memory once past the start, in frames.
    pub tau_frames: f32,
}

/// One stream's running per-band mean of its speech frames, taken off every
/// frame before the content model sees it: a voice's own colouring (vocal
/// tract, channel) is not a phone. Causal, so live and offline agree.
/// Worker/render thread.
#[derive(Clone, Copy, Debug)]
pub struct SpeakerNorm {
    settings: SpeakerNormSettings,
    mean: MelFrame,
    speech_frames: f32,
}

impl SpeakerNorm {
    pub fn new(settings: SpeakerNormSettings) -> Self {
        Self { settings, mean: settings.prior_mean, speech_frames: 0.0 }
    }

    /// Takes the next frame of the stream into the mean and writes it
    /// normalised (minus the mean after it) to `out`.
    pub fn push(&mut self, frame: &MelFrame, out: &mut MelFrame) {
        if frame_level(frame) > self.settings.speech_gate {
            self.speech_frames += 1.0;
            let rate = (1.0 / (self.speech_frames + self.settings.prior_frames)).max(1.0 / self.settings.tau_frames);
            for (m, x) in self.mean.iter_mut().zip(frame) {
                *m += rate * (x - *m);
            }
        }
        for ((o, x), m) in out.iter_mut().zip(frame).zip(&self.mean) {
            *o = x - m;
        }
    }

    /// Digital silence (edge padding), normalised with the mean now.
    pub fn silence(&self) -> MelFrame {
        std::array::from_fn(|b| mel::LOG_SILENCE - self.mean[b])
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.settings);
    }
}

/// The phone-posterior content model. Worker/render thread.
pub struct ContentModel {
    session: Session,
    left: usize,
    right: usize,
    phones: usize,
    norm: SpeakerNormSettings,
    input: Vec<f32>,
}

/// What `content_phones.json` says about the model.
struct ContentDescription {
    left: usize,
    right: usize,
    phones: usize,
    norm: SpeakerNormSettings,
}

impl ContentModel {
    /// Opens `dir/content_phones.onnx` and its `content_phones.json`.
    pub fn load(dir: &Path, device: Device, threads: usize) -> Result<Self, RuntimeError> {
        let ContentDescription { left, right, phones, norm } = Self::read_description(dir)?;
        let loaded = open_session_with_threads(&dir.join(CONTENT_MODEL_FILE), device, threads)?;
        Ok(Self { session: loaded.session, left, right, phones, norm, input: vec![0.0; (left + 1 + right) * N_MELS] })
    }

    /// `(left, right)` context frames from `dir/content_phones.json`.
    pub fn read_context(dir: &Path) -> Result<(usize, usize), RuntimeError> {
        Self::read_description(dir).map(|d| (d.left, d.right))
    }

    fn read_description(dir: &Path) -> Result<ContentDescription, RuntimeError> {
        let json_path = dir.join("content_phones.json");
        let corrupt = |reason: String| RuntimeError::ModelCorrupt { path: json_path.clone(), reason };
        let text = std::fs::read_to_string(&json_path).map_err(|e| corrupt(e.to_string()))?;
        let info: serde_json::Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let get = |k: &str| info["context"][k].as_u64().map(|v| v as usize).ok_or_else(|| corrupt(format!("missing context.{k}")));
        let (left, right) = (get("left")?, get("right")?);
        let phones = info["phones"].as_array().map(|a| a.len()).ok_or_else(|| corrupt("missing phones".into()))?;
        let sn = &info["speaker_normalisation"];
        let number = |k: &str| sn[k].as_f64().map(|v| v as f32).ok_or_else(|| corrupt(format!("missing speaker_normalisation.{k}")));
        let prior: Vec<f32> = sn["prior_mean"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).map(|v| v as f32).collect()).unwrap_or_default();
        let prior_mean: MelFrame = prior.try_into().map_err(|_| corrupt(format!("speaker_normalisation.prior_mean must have {N_MELS} numbers")))?;
        let norm = SpeakerNormSettings { prior_mean, speech_gate: number("speech_gate")?, prior_frames: number("prior_frames")?, tau_frames: number("tau_frames")? };
        Ok(ContentDescription { left, right, phones, norm })
    }

    /// A fresh per-speaker normalisation for one stream.
    pub fn speaker_norm(&self) -> SpeakerNorm {
        SpeakerNorm::new(self.norm)
    }

    /// Frames of context before / after the frame being described.
    pub fn context(&self) -> (usize, usize) {
        (self.left, self.right)
    }

    pub fn phones(&self) -> usize {
        self.phones
    }

    /// Posteriors of the centre frame of `frames` (`left + 1 + right`
    /// frames, each normalised by the stream's [`SpeakerNorm`]), written as
    /// square roots (ready for Hellinger distance).
    pub fn describe(&mut self, frames: &[&MelFrame], out: &mut [f32]) -> Result<(), RuntimeError> {
        debug_assert_eq!(frames.len(), self.left + 1 + self.right);
        for (i, f) in frames.iter().enumerate() {
            self.input[i * N_MELS..(i + 1) * N_MELS].copy_from_slice(&f[..]);
        }
        let shape = [1usize, self.input.len()];
        let t = TensorRef::from_array_view((shape, &self.input[..])).map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let outputs = self.session.run(ort::inputs!["mel_context" => t]).map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let (_, logp) = outputs["phone_logp"].try_extract_tensor::<f32>().map_err(|e| RuntimeError::Inference(e.to_string()))?;
        for (o, l) in out.iter_mut().zip(logp.iter()) {
            *o = (0.5 * l).exp();
        }
        Ok(())
    }

    /// Square-root posteriors for every frame of a whole signal's mel,
    /// normalised as one stream (edges repeat the first/last frame).
    pub fn describe_all(&mut self, raw: &[MelFrame]) -> Result<Vec<f32>, RuntimeError> {
        let mut norm = self.speaker_norm();
        let mel: Vec<MelFrame> = raw
            .iter()
            .map(|f| {
                let mut o = [0.0; N_MELS];
                norm.push(f, &mut o);
                o
            })
            .collect();
        let mut out = vec![0.0; mel.len() * self.phones];
        let n = mel.len() as isize;
        let mut ctx: Vec<&MelFrame> = Vec::with_capacity(self.left + 1 + self.right);
        for t in 0..mel.len() {
            ctx.clear();
            for d in -(self.left as isize)..=(self.right as isize) {
                ctx.push(&mel[(t as isize + d).clamp(0, n - 1) as usize]);
            }
            let p = self.phones;
            let mut row = vec![0.0; p];
            self.describe(&ctx, &mut row)?;
            out[t * p..(t + 1) * p].copy_from_slice(&row);
        }
        Ok(out)
    }
}

/// Splits a log-mel frame into a smooth envelope and fine structure (low
/// cepstral coefficients). Any thread.
pub struct EnvelopeSplitter {
    /// Projection onto the first `ENVELOPE_COEFFS` orthonormal DCT-II basis
    /// vectors, `[N_MELS][N_MELS]`.
    projection: Vec<f32>,
    /// DCT-II basis vectors 1..`ENVELOPE_COEFFS`, `[ENVELOPE_COEFFS − 1][N_MELS]`
    /// (for [`EnvelopeSplitter::shape`]).
    shape_basis: Vec<f32>,
}

impl Default for EnvelopeSplitter {
    fn default() -> Self {
        Self::new(ENVELOPE_COEFFS)
    }
}

impl EnvelopeSplitter {
    pub fn new(coeffs: usize) -> Self {
        let n = N_MELS;
        let basis = |k: usize, i: usize| {
            let scale = if k == 0 { (1.0 / n as f64).sqrt() } else { (2.0 / n as f64).sqrt() };
            scale * (std::f64::consts::PI * k as f64 * (i as f64 + 0.5) / n as f64).cos()
        };
        let mut projection = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                projection[i * n + j] = (0..coeffs).map(|k| basis(k, i) * basis(k, j)).sum::<f64>() as f32;
            }
        }
        let shape_basis = (1..ENVELOPE_COEFFS).flat_map(|k| (0..n).map(move |i| basis(k, i) as f32)).collect();
        Self { projection, shape_basis }
    }

    /// Shape coefficients of an envelope: its orthonormal DCT-II coefficients
    /// 1..[`ENVELOPE_COEFFS`] (coefficient 0, the level, is left out), so the
    /// squared distance between two shapes is the squared distance between
    /// the level-free envelopes.
    pub fn shape(&self, env: &MelFrame, out: &mut Shape) {
        for (o, row) in out.iter_mut().zip(self.shape_basis.chunks_exact(N_MELS)) {
            *o = row.iter().zip(env.iter()).map(|(a, b)| a * b).sum();
        }
    }

    pub fn envelope(&self, frame: &MelFrame, env: &mut MelFrame) {
        for (i, e) in env.iter_mut().enumerate() {
            let row = &self.projection[i * N_MELS..(i + 1) * N_MELS];
            *e = row.iter().zip(frame.iter()).map(|(a, b)| a * b).sum();
        }
    }
}

/// Log-mel fine structure of an ideal harmonic sound (flat envelope) for
/// F0 from [`pitch::F0_MIN_HZ`] to [`pitch::F0_MAX_HZ`] in eighth-semitone
/// steps: what the voice's harmonics look like in HiFi-GAN's mel at each
/// pitch. Re-pitching a frame swaps the source's pattern for the target
/// pitch's, at the strength the source frame shows it (its voicing), so the
/// vocoder hears exactly the wanted F0. Built once (any thread).
pub struct HarmonicPatterns {
    /// `[step][N_MELS]`.
    table: Vec<MelFrame>,
}

/// Steps per octave of the pattern table.
const PATTERN_STEPS_PER_OCTAVE: f32 = 96.0;
/// Bands whose centre is below this carry resolved harmonics: the voicing
/// strength is measured there.
const RESOLVED_HZ: f32 = 3000.0;

impl HarmonicPatterns {
    pub fn new(splitter: &EnvelopeSplitter) -> Self {
        let basis = mel::mel_basis();
        let steps = (PATTERN_STEPS_PER_OCTAVE * (pitch::F0_MAX_HZ / pitch::F0_MIN_HZ).log2()).ceil() as usize + 1;
        let n = mel::N_FFT;
        let mut planner = realfft::RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n);
        let mut frame = vec![0.0f32; n];
        let mut spectrum = fft.make_output_vec();
        let window: Vec<f32> = (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos()).collect();
        let mut table = Vec::with_capacity(steps);
        for step in 0..steps {
            let f0 = pitch::F0_MIN_HZ * (step as f32 / PATTERN_STEPS_PER_OCTAVE).exp2();
            let harmonics = (mel::FMAX_HZ as f32 / f0).floor().max(1.0) as usize;
            for (i, x) in frame.iter_mut().enumerate() {
                let t = i as f32 / SAMPLE_RATE as f32;
                let mut v = 0.0;
                for k in 1..=harmonics {
                    v += (2.0 * std::f32::consts::PI * k as f32 * f0 * t).cos();
                }
                *x = v * window[i];
            }
            let _ = fft.process(&mut frame, &mut spectrum);
            let mut logmel = [0.0f32; N_MELS];
            for (b, row) in basis.iter().enumerate() {
                let e: f32 = row.iter().zip(&spectrum).map(|(w, c)| w * (c.norm_sqr() + mel::MAG_EPS).sqrt()).sum();
                logmel[b] = e.max(mel::LOG_FLOOR).ln();
            }
            let mut env = [0.0f32; N_MELS];
            splitter.envelope(&logmel, &mut env);
            let mut pattern = [0.0f32; N_MELS];
            for b in 0..N_MELS {
                pattern[b] = logmel[b] - env[b];
            }
            table.push(pattern);
        }
        Self { table }
    }

    /// The pattern for `f0` (linear between table steps).
    pub fn pattern(&self, f0: f32, out: &mut MelFrame) {
        let pos = (PATTERN_STEPS_PER_OCTAVE * (f0.clamp(pitch::F0_MIN_HZ, pitch::F0_MAX_HZ) / pitch::F0_MIN_HZ).log2()).max(0.0);
        let i = (pos as usize).min(self.table.len() - 2);
        let t = (pos - i as f32).min(1.0);
        for b in 0..N_MELS {
            out[b] = self.table[i][b] + t * (self.table[i + 1][b] - self.table[i][b]);
        }
    }

    /// The patterns, built once per process (any thread; the first call
    /// takes a moment, so constructors call it, not the audio path).
    pub fn shared() -> &'static Self {
        static PATTERNS: std::sync::OnceLock<HarmonicPatterns> = std::sync::OnceLock::new();
        PATTERNS.get_or_init(|| Self::new(&EnvelopeSplitter::default()))
    }

    /// How strongly a frame's fine structure (`fine`: the frame less its
    /// envelope) shows the pattern of `hz` over the resolved bands: 1 for
    /// an ideal steady harmonic sound, 0 for noise (least squares, in
    /// 0..=1.5).
    pub fn depth(&self, fine: &MelFrame, hz: f32, resolved_bands: usize) -> f32 {
        let mut a = [0.0f32; N_MELS];
        self.pattern(hz, &mut a);
        let (mut num, mut den) = (0.0f32, 0.0f32);
        for k in 0..resolved_bands {
            num += fine[k] * a[k];
            den += a[k] * a[k];
        }
        if den > 1e-6 {
            (num / den).clamp(0.0, 1.5)
        } else {
            0.0
        }
    }

    /// Moves a voiced frame's harmonics from `from_hz` to `to_hz`: the
    /// source's pattern, scaled by how strongly the frame shows it, is
    /// replaced by the target pitch's; everything else in `fine` (noise,
    /// unresolved detail) stays.
    pub fn repitch(&self, fine: &mut MelFrame, from_hz: f32, to_hz: f32, resolved_bands: usize) {
        let (mut a, mut b) = ([0.0f32; N_MELS], [0.0f32; N_MELS]);
        self.pattern(from_hz, &mut a);
        self.pattern(to_hz, &mut b);
        let g = self.depth(fine, from_hz, resolved_bands);
        for k in 0..N_MELS {
            fine[k] += g * (b[k] - a[k]);
        }
    }
}

/// Bands whose centre lies below [`RESOLVED_HZ`].
pub(crate) fn resolved_bands() -> usize {
    mel::band_centres_hz()
        .iter()
        .take_while(|&&c| c < RESOLVED_HZ)
        .count()
}

/// Log-F0 mean and spread of a voice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PitchStats {
    pub mean_log_hz: f32,
    pub std_log: f32,
}

impl PitchStats {
    pub const NEUTRAL: Self = Self { mean_log_hz: 5.0106, std_log: 0.15 }; // 150 Hz

    fn from_f0(f0: impl Iterator<Item = f32>) -> Option<Self> {
        let logs: Vec<f64> = f0.filter(|f| *f > 0.0).map(|f| (f as f64).ln()).collect();
        if logs.len() < 20 {
            return None;
        }
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / logs.len() as f64;
        Some(Self { mean_log_hz: mean as f32, std_log: (var.sqrt() as f32).max(0.02) })
    }

    pub fn mean_hz(&self) -> f32 {
        self.mean_log_hz.exp()
    }
}

/// Why a reference cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    #[error("the target recording is {0:.1} s long; at least {MIN_REFERENCE_S} s of speech is needed")]
    TooShort(f32),
    #[error("the target recording has too little voiced speech to learn its pitch range")]
    NoVoice,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A target voice learnt from a reference recording. Immutable; shared
/// with the worker through an `Arc`.
///
/// - `phone_means`: the target's mean spectral envelope for each phone
///   (posterior-weighted, shrunk towards its overall mean);
/// - `ltas`: its long-term envelope over speech frames;
/// - `envelopes`/`keys`: its speech frames, indexed by phone posteriors, for
///   matching.
pub struct TargetVoice {
    envelopes: Vec<MelFrame>,
    /// Shape of every frame's envelope ([`EnvelopeSplitter::shape`]), speech
    /// or not (the context of the speech frames).
    frame_shapes: Vec<Shape>,
    /// Index in `frame_shapes` of each speech frame.
    speech_frames: Vec<usize>,
    /// Square-root phone posteriors per speech frame, `[frame][phones]`.
    keys: Vec<f32>,
    phones: usize,
    phone_means: Vec<MelFrame>,
    ltas: MelFrame,
    pub pitch: PitchStats,
    /// Reference length, seconds.
    pub seconds: f32,
}

impl TargetVoice {
    /// Analyses `audio` (mono, any rate). Main or background thread.
    pub fn analyse(audio: &[f32], rate: u32, content: &mut ContentModel) -> Result<Self, TargetError> {
        let seconds = audio.len() as f32 / rate as f32;
        if seconds < MIN_REFERENCE_S {
            return Err(TargetError::TooShort(seconds));
        }
        let x = crate::dsp::resample::resample_whole(audio, rate, SAMPLE_RATE).map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let mels = HifiGanMel::new().batch(&x);
        let f0 = frame_pitch(&x, mels.len());
        let pitch = PitchStats::from_f0(f0.iter().copied()).ok_or(TargetError::NoVoice)?;
        let all_keys = content.describe_all(&mels)?;
        let phones = content.phones();
        let splitter = EnvelopeSplitter::default();
        let loudest = mels.iter().map(frame_level).fold(f32::MIN, f32::max);
        let mut stats = PhoneStats::new(phones);
        let mut envelopes = Vec::new();
        let mut frame_shapes = Vec::with_capacity(mels.len());
        let mut speech_frames = Vec::new();
        let mut keys = Vec::new();
        let mut ltas = [0.0f32; N_MELS];
        for (t, m) in mels.iter().enumerate() {
            let mut e = [0.0; N_MELS];
            splitter.envelope(m, &mut e);
            let mut shape = [0.0; ENVELOPE_COEFFS - 1];
            splitter.shape(&e, &mut shape);
            frame_shapes.push(shape);
            let key = &all_keys[t * phones..(t + 1) * phones];
            if frame_level(m) < loudest - ACTIVE_NATS {
                continue;
            }
            // Phone means over speech frames only, as for the source.
            stats.add(key, &e, 1.0);
            for b in 0..N_MELS {
                ltas[b] += e[b];
            }
            speech_frames.push(t);
            envelopes.push(e);
            keys.extend_from_slice(key);
        }
        let n = envelopes.len().max(1) as f32;
        ltas.iter_mut().for_each(|v| *v /= n);
        let phone_means = (0..phones).map(|p| stats.mean(p)).collect();
        Ok(Self { envelopes, frame_shapes, speech_frames, keys, phones, phone_means, ltas, pitch, seconds })
    }

    /// Speech frames available for matching.
    pub fn frames(&self) -> usize {
        self.envelopes.len()
    }

    /// Mean envelope of the `NEIGHBOURS` speech frames nearest to `key`
    /// (squared Hellinger distance of the phone posteriors) plus
    /// [`SHAPE_WEIGHT`] times the mean squared distance of their shapes and
    /// their neighbours' to `shapes` (the source's, centred on the frame
    /// being matched). No allocation.
    fn match_envelope(&self, key: &[f32], shapes: &ShapeContext, best: &mut [(f32, usize); NEIGHBOURS], out: &mut MelFrame) {
        for b in best.iter_mut() {
            *b = (f32::INFINITY, 0);
        }
        let last = self.frame_shapes.len() - 1;
        for (i, k) in self.keys.chunks_exact(self.phones).enumerate() {
            let phone: f32 = k.iter().zip(key).map(|(a, b)| (a - b) * (a - b)).sum();
            let centre = self.speech_frames[i];
            let mut look = 0.0f32;
            for (j, source) in shapes.iter().enumerate() {
                let t = (centre + j).saturating_sub(SHAPE_CONTEXT).min(last);
                look += self.frame_shapes[t].iter().zip(source).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
            }
            let d = phone + SHAPE_WEIGHT * look / shapes.len() as f32;
            if d < best[NEIGHBOURS - 1].0 {
                let mut j = NEIGHBOURS - 1;
                while j > 0 && best[j - 1].0 > d {
                    best[j] = best[j - 1];
                    j -= 1;
                }
                best[j] = (d, i);
            }
        }
        out.fill(0.0);
        let mut n = 0.0;
        for &(d, i) in best.iter() {
            if d.is_finite() {
                for (o, e) in out.iter_mut().zip(self.envelopes[i].iter()) {
                    *o += e;
                }
                n += 1.0;
            }
        }
        if n > 0.0 {
            for o in out.iter_mut() {
                *o /= n;
            }
        }
    }
}

/// Posterior-weighted envelope sums per phone, and the overall mean.
struct PhoneStats {
    sums: Vec<MelFrame>,
    weights: Vec<f32>,
    total: MelFrame,
    count: f32,
}

impl PhoneStats {
    fn new(phones: usize) -> Self {
        Self { sums: vec![[0.0; N_MELS]; phones], weights: vec![0.0; phones], total: [0.0; N_MELS], count: 0.0 }
    }

    /// Adds a frame (`key`: square-root posteriors); `keep` < 1 forgets.
    fn add(&mut self, key: &[f32], env: &MelFrame, keep: f32) {
        for (p, k) in key.iter().enumerate() {
            let w = k * k;
            self.weights[p] = self.weights[p] * keep + w;
            for b in 0..N_MELS {
                self.sums[p][b] = self.sums[p][b] * keep + w * env[b];
            }
        }
        for b in 0..N_MELS {
            self.total[b] = self.total[b] * keep + env[b];
        }
        self.count = self.count * keep + 1.0;
    }

    fn mean(&self, p: usize) -> MelFrame {
        let mut out = [0.0; N_MELS];
        let c = self.count.max(1e-6);
        for b in 0..N_MELS {
            let overall = self.total[b] / c;
            out[b] = (self.sums[p][b] + PHONE_PRIOR_FRAMES * overall) / (self.weights[p] + PHONE_PRIOR_FRAMES);
        }
        out
    }

    fn reset(&mut self) {
        self.sums.iter_mut().for_each(|s| *s = [0.0; N_MELS]);
        self.weights.fill(0.0);
        self.total = [0.0; N_MELS];
        self.count = 0.0;
    }
}

/// Frequency warp of a log-mel envelope: reads `env` at `centre / alpha`
/// (alpha > 1 moves formants up: a shorter vocal tract).
fn warp_envelope(env: &MelFrame, centres: &[f32; N_MELS], alpha: f32, out: &mut MelFrame) {
    let mut j = 0usize;
    for (b, o) in out.iter_mut().enumerate() {
        let f = centres[b] / alpha;
        if f <= centres[0] {
            *o = env[0];
            continue;
        }
        if f >= centres[N_MELS - 1] {
            *o = env[N_MELS - 1];
            continue;
        }
        while centres[j + 1] < f {
            j += 1;
        }
        while j > 0 && centres[j] > f {
            j -= 1;
        }
        let t = (f - centres[j]) / (centres[j + 1] - centres[j]);
        *o = env[j] + t * (env[j + 1] - env[j]);
    }
}

/// Centre frequency of each mel band (the filter's centroid), Hz.

/// The warp that best maps the source's long-term envelope onto the
/// target's (shape only: a level offset is free), over bands 5..70.
fn best_warp(source: &MelFrame, target: &MelFrame, centres: &[f32; N_MELS]) -> f32 {
    let mut best = (f32::INFINITY, 1.0);
    let mut w = [0.0; N_MELS];
    for i in 0..WARP_STEPS {
        let alpha = WARP_MIN + (WARP_MAX - WARP_MIN) * i as f32 / (WARP_STEPS - 1) as f32;
        warp_envelope(source, centres, alpha, &mut w);
        let mean = (0..N_MELS).map(|b| w[b] - target[b]).sum::<f32>() / N_MELS as f32;
        let err: f32 = (5..70).map(|b| (w[b] - target[b] - mean).powi(2)).sum();
        if err < best.0 {
            best = (err, alpha);
        }
    }
    best.1
}

/// Mean log-mel level of a frame (natural-log units).
fn frame_level(m: &MelFrame) -> f32 {
    m.iter().sum::<f32>() / N_MELS as f32
}

/// A log-mel frame's energy as a log magnitude: ln √(Σ_b exp(2·m_b)),
/// computed stably.
pub(crate) fn energy_level(m: &MelFrame) -> f32 {
    let top = m.iter().copied().fold(f32::MIN, f32::max);
    top + 0.5 * m.iter().map(|v| (2.0 * (v - top)).exp()).sum::<f32>().ln()
}

/// F0 per mel frame (0 = unvoiced) of a 22050 Hz signal: the pitch tracker's
/// 10 ms frames read at each mel frame's centre (`256·t + 128`).
pub(crate) fn frame_pitch(x: &[f32], frames: usize) -> Vec<f32> {
    let p = pitch::track(x, SAMPLE_RATE);
    (0..frames)
        .map(|t| {
            let centre_s = (t * HOP + HOP / 2) as f64 / SAMPLE_RATE as f64;
            let k = (centre_s * 100.0).round() as usize;
            p.get(k).map_or(0.0, |f| if f.voiced { f.f0_hz } else { 0.0 })
        })
        .collect()
}

/// Strength, transpose and the like, as the plugin or the CLI sets them.
pub use super::ConversionControls;

/// Running log-F0 statistics of the source voice: exact over the first
/// voiced frames, then a moving window of about [`SOURCE_STATS_FRAMES`].
#[derive(Debug, Clone, Copy)]
struct RunningPitch {
    n: f32,
    mean: f32,
    var: f32,
}

/// Voiced frames (about 11.6 ms each) the source statistics average over.
const SOURCE_STATS_FRAMES: f32 = 600.0;

impl RunningPitch {
    const EMPTY: Self = Self { n: 0.0, mean: 0.0, var: 0.0 };

    fn push(&mut self, log_f0: f32) {
        self.n = (self.n + 1.0).min(SOURCE_STATS_FRAMES);
        let d = log_f0 - self.mean;
        self.mean += d / self.n;
        self.var += (d * (log_f0 - self.mean) - self.var) / self.n;
    }

    fn stats(&self) -> Option<PitchStats> {
        (self.n >= 1.0).then(|| PitchStats { mean_log_hz: self.mean, std_log: self.var.max(0.0).sqrt().max(0.02) })
    }
}

/// The default converter as a [`HopModel`]: 22050 Hz, hop = the vocoder's
/// block (`StreamingConfig::new` frames of 256 samples), mono conversion of
/// the channels' mean written to every channel. Worker/render thread.
pub struct DefaultVoiceConverter {
    channels: usize,
    content: ContentModel,
    settings: ConverterSettings,
    vocoder: Vocoder,
    splitter: EnvelopeSplitter,
    patterns: &'static HarmonicPatterns,
    resolved: usize,
    centres: [f32; N_MELS],
    mel: StreamingMel,
    pitch: PitchTracker,
    target: Option<Arc<TargetVoice>>,
    controls: ConversionControls,
    /// Frames between the newest input hop and the frame being analysed.
    analysis_lag: usize,
    /// Recent mel frames by index (`ring[j % len]`).
    mel_ring: Vec<MelFrame>,
    /// The same frames normalised for the content model, and the stream's
    /// normalisation (with the padding before frame 0).
    norm_ring: Vec<MelFrame>,
    speaker_norm: SpeakerNorm,
    pad_before: MelFrame,
    /// Recent pitch-tracker frames (F0 Hz, 0 = unvoiced) by index.
    pitch_ring: Vec<f32>,
    pitch_fifo: Vec<f32>,
    pitch_fill: usize,
    /// Input hops seen (256 samples each).
    hops: u64,
    /// Pitch frames produced (the next frame's index).
    pitch_frames: u64,
    source_pitch: RunningPitch,
    /// The source's long-term envelope (speech frames) and phone means.
    source_ltas: MelFrame,
    source_ltas_frames: f32,
    loudest: f32,
    source_phones: PhoneStats,
    /// Analysed frames by index (`analysed[a % len]`), waiting for the
    /// frames after them (offset and key smoothing).
    analysed: Vec<AnalysedFrame>,
    /// Converted frames waiting for the vocoder (one block) and their F0.
    stage: Vec<MelFrame>,
    stage_f0: Vec<f32>,
    mid: Vec<f32>,
    voiced_out: Vec<f32>,
    /// Dry mid delayed by the conversion's delay, the fallback when a model
    /// fails.
    dry: Vec<f32>,
    /// Loudness match to the input and true-peak limiter (last stage).
    level: OutputLevel,
    dry_pos: usize,
    best: [(f32, usize); NEIGHBOURS],
    shapes: ShapeContext,
    context: Vec<MelFrame>,
    key: Vec<f32>,
    faults: u64,
    device_note: String,
}

/// One source frame after analysis.
#[derive(Clone)]
struct AnalysedFrame {
    /// Envelope after warp and equalisation.
    envelope: MelFrame,
    fine: MelFrame,
    f0: f32,
    /// The source frame's energy ([`energy_level`]).
    energy: f32,
    /// Phone-dependent offset towards the target (before smoothing).
    offset: MelFrame,
    /// Square-root phone posteriors.
    key: Vec<f32>,
    /// Shape of `envelope` (the context when neighbours are matched).
    shape: Shape,
}

/// Frames between analysis and output (the smoothing look-ahead).
const SMOOTHING_LAG: usize = if OFFSET_SMOOTHING > KEY_SMOOTHING { OFFSET_SMOOTHING } else { KEY_SMOOTHING };
// Matching reads the shapes of frames already analysed.
const _: () = assert!(SHAPE_CONTEXT <= SMOOTHING_LAG);

impl DefaultVoiceConverter {
    /// `content_dir`: the content model's folder; `vocoder_dir`: HiFi-GAN's
    /// (not read for the source–filter vocoder).
    /// `threads`: ONNX intra-op threads (1 live, all cores offline).
    pub fn load(
        content_dir: &Path,
        vocoder_dir: &Path,
        channels: usize,
        device: Device,
        threads: usize,
        settings: ConverterSettings,
    ) -> Result<Self, RuntimeError> {
        let content = ContentModel::load(content_dir, Device::Cpu, 1)?;
        let (vocoder, device_note) = match settings.vocoder {
            VocoderChoice::HifiGan(cfg) => {
                let v = StreamingVocoder::new(
                    HifiGan::load_with_threads(vocoder_dir, device, threads)?,
                    cfg,
                );
                let note = v.device_note().to_string();
                (Vocoder::HifiGan(v), note)
            }
            VocoderChoice::SourceFilter(glide) => (
                Vocoder::SourceFilter(Box::new(SourceFilterVocoder::new(glide))),
                "CPU (source-filter synthesis, no vocoder model)".to_string(),
            ),
            VocoderChoice::Light => {
                let v = LightVocoder::load(vocoder_dir, device, threads)?;
                let note = format!("{} (light vocoder)", v.device_note());
                (Vocoder::Light(v), note)
            }
        };
        let (left, content_right) = content.context();
        let pitch = settings.pitch_tracker();
        let analysis_lag = settings.analysis_lag(content_right);
        let ring = (left + content_right + analysis_lag + 8).next_power_of_two();
        let phones = content.phones();
        let frames_per_call = settings.frames_per_call();
        let blank = AnalysedFrame {
            envelope: [mel::LOG_SILENCE; N_MELS],
            fine: [0.0; N_MELS],
            f0: 0.0,
            energy: mel::LOG_SILENCE,
            offset: [0.0; N_MELS],
            key: vec![0.0; phones],
            shape: [0.0; ENVELOPE_COEFFS - 1],
        };
        let mut m = Self {
            channels,
            splitter: EnvelopeSplitter::default(),
            patterns: HarmonicPatterns::shared(),
            resolved: resolved_bands(),
            centres: mel::band_centres_hz(),
            mel: settings.streaming_mel(),
            target: None,
            controls: ConversionControls::default(),
            analysis_lag,
            mel_ring: vec![[mel::LOG_SILENCE; N_MELS]; ring],
            norm_ring: vec![[0.0; N_MELS]; ring],
            speaker_norm: content.speaker_norm(),
            pad_before: content.speaker_norm().silence(),
            pitch_ring: vec![0.0; 4 * ring],
            pitch_fifo: vec![0.0; 512],
            pitch_fill: 0,
            hops: 0,
            pitch_frames: 0,
            source_pitch: RunningPitch::EMPTY,
            source_ltas: [0.0; N_MELS],
            source_ltas_frames: 0.0,
            loudest: f32::MIN,
            source_phones: PhoneStats::new(phones),
            analysed: vec![blank; 2 * SMOOTHING_LAG + 2],
            stage: vec![[mel::LOG_SILENCE; N_MELS]; frames_per_call],
            stage_f0: vec![0.0; frames_per_call],
            mid: vec![0.0; frames_per_call * HOP],
            voiced_out: vec![0.0; frames_per_call * HOP],
            dry: Vec::new(),
            dry_pos: 0,
            level: OutputLevel::new(SAMPLE_RATE, channels, 0),
            best: [(f32::INFINITY, 0); NEIGHBOURS],
            shapes: [[0.0; ENVELOPE_COEFFS - 1]; 2 * SHAPE_CONTEXT + 1],
            context: vec![[mel::LOG_SILENCE; N_MELS]; left + 1 + content_right],
            key: vec![0.0; phones],
            faults: 0,
            device_note,
            content,
            settings,
            vocoder,
            pitch,
        };
        // One inference before the first live hop: ONNX Runtime's first
        // run of a session allocates and is several times slower.
        m.describe_context()?;
        m.dry = vec![0.0; m.conversion_delay()];
        m.level = OutputLevel::new(SAMPLE_RATE, channels, m.conversion_delay());
        Ok(m)
    }

    /// Where the models are installed (model store).
    pub fn load_installed(
        channels: usize,
        device: Device,
        threads: usize,
        settings: ConverterSettings,
    ) -> Result<Self, RuntimeError> {
        let content = crate::runtime::store::find_model(CONTENT_MODEL_ID)?;
        let vocoder_dir = match settings.vocoder {
            VocoderChoice::HifiGan(_) => {
                crate::runtime::store::find_model(super::vocoder_hifigan::MODEL_ID)?.dir
            }
            VocoderChoice::Light => {
                crate::runtime::store::find_model(super::vocoder_light::MODEL_ID)?.dir
            }
            VocoderChoice::SourceFilter(_) => content.dir.clone(),
        };
        Self::load(
            &content.dir,
            &vocoder_dir,
            channels,
            device,
            threads,
            settings,
        )
    }

    pub fn content_model(&mut self) -> &mut ContentModel {
        &mut self.content
    }

    pub fn set_target(&mut self, target: Option<Arc<TargetVoice>>) {
        self.target = target;
        // The source's phone means are taken after the warp towards the
        // target, so they start again.
        self.source_phones.reset();
    }

    pub fn set_controls(&mut self, controls: ConversionControls) {
        self.controls = controls;
    }

    /// Frames between input and the converted frame (before the vocoder).
    pub fn lag_frames(&self) -> usize {
        self.analysis_lag + self.settings.smoothing_lag()
    }

    /// Samples from input to vocoded output (before the output level stage).
    fn conversion_delay(&self) -> usize {
        self.lag_frames() * HOP + self.settings.vocoder_delay()
    }

    /// One 256-sample hop of mono input: updates mel and pitch history,
    /// analyses frame `hops − analysis_lag` and writes the converted frame
    /// `hops − lag_frames()` into `out`; returns its F0 (Hz, 0 = unvoiced).
    fn convert_hop(&mut self, x: &[f32], out: &mut MelFrame) -> Result<f32, RuntimeError> {
        let k = self.hops;
        self.hops += 1;
        let ring = self.mel_ring.len() as u64;
        // Mel frame k − the front end's delay (2 frames, or 1 with the short window).
        let mut frame = [0.0; N_MELS];
        self.mel.push_hop(x, &mut frame);
        if let Some(j) = k.checked_sub(self.mel.delay_frames() as u64) {
            let slot = (j % ring) as usize;
            self.mel_ring[slot] = frame;
            self.speaker_norm.push(&frame, &mut self.norm_ring[slot]);
            if j == 0 {
                self.pad_before = self.speaker_norm.silence();
            }
        }
        // Pitch frames (10 ms hops of 220/221 samples).
        for &s in x {
            self.pitch_fifo[self.pitch_fill] = s;
            self.pitch_fill += 1;
            let need = self.pitch.hop();
            if self.pitch_fill >= need {
                let f = self.pitch.process_hop(&self.pitch_fifo[..need]);
                self.pitch_fill = 0;
                let hop_index = self.pitch_frames;
                self.pitch_frames += 1;
                if let Some(n) = hop_index.checked_sub(self.pitch.delay_hops() as u64) {
                    let len = self.pitch_ring.len() as u64;
                    self.pitch_ring[(n % len) as usize] = if f.voiced { f.f0_hz } else { 0.0 };
                }
            }
        }
        if let Some(a) = k.checked_sub(self.analysis_lag as u64) {
            self.analyse_frame(a)?;
        }
        Ok(match k.checked_sub(self.lag_frames() as u64) {
            Some(c) => self.assemble_frame(c, out),
            None => {
                *out = [mel::LOG_SILENCE; N_MELS];
                0.0
            }
        })
    }

    /// Analysis of source frame `a`: envelope, fine structure, pitch, phone
    /// posteriors; updates the source statistics and computes the frame's
    /// phone-dependent offset towards the target.
    fn analyse_frame(&mut self, a: u64) -> Result<(), RuntimeError> {
        let ring = self.mel_ring.len() as u64;
        let (left, _) = self.content.context();
        let newest = self.hops as i64 - 1 - self.mel.delay_frames() as i64;
        let pad_after = self.speaker_norm.silence();
        for (i, slot) in self.context.iter_mut().enumerate() {
            let j = a as i64 - left as i64 + i as i64;
            *slot = if j < 0 {
                self.pad_before
            } else if j > newest {
                pad_after
            } else {
                self.norm_ring[(j as u64 % ring) as usize]
            };
        }
        let source = if a as i64 > newest {
            [mel::LOG_SILENCE; N_MELS]
        } else {
            self.mel_ring[(a % ring) as usize]
        };
        if self.settings.phonetic {
            self.describe_context()?;
        } else {
            self.key.fill(0.0);
        }
        let f0 = match pitch_frame_of(a).checked_sub(self.settings.pitch_early as u64) {
            Some(n) => self.pitch_ring[(n % self.pitch_ring.len() as u64) as usize],
            None => 0.0,
        };
        if f0 > 0.0 {
            self.source_pitch.push(f0.ln());
        }
        let mut env = [0.0; N_MELS];
        self.splitter.envelope(&source, &mut env);
        let mut fine = [0.0; N_MELS];
        for b in 0..N_MELS {
            fine[b] = source[b] - env[b];
        }
        // Long-term envelope of the source's speech frames.
        let level = frame_level(&source);
        self.loudest = self.loudest.max(level);
        let speech = level >= self.loudest - ACTIVE_NATS && level > mel::LOG_SILENCE + 1.0;
        if speech {
            self.source_ltas_frames = (self.source_ltas_frames + 1.0).min(SOURCE_MEMORY_FRAMES);
            for b in 0..N_MELS {
                self.source_ltas[b] += (env[b] - self.source_ltas[b]) / self.source_ltas_frames;
            }
        }
        let slot = (a % self.analysed.len() as u64) as usize;
        let (s, _, _) = strength_curve(self.settings.curve_strength(self.controls.strength));
        let mut offset = [0.0; N_MELS];
        if let Some(target) = self.target.clone().filter(|_| s > 0.0) {
            // Vocal-tract warp and long-term equalisation towards the target.
            if self.source_ltas_frames >= 20.0 {
                let alpha = 1.0 + s * (best_warp(&self.source_ltas, &target.ltas, &self.centres) - 1.0);
                let mut warped_ltas = [0.0; N_MELS];
                warp_envelope(&self.source_ltas, &self.centres, alpha, &mut warped_ltas);
                let mut warped = [0.0; N_MELS];
                warp_envelope(&env, &self.centres, alpha, &mut warped);
                let mean = (0..N_MELS).map(|b| target.ltas[b] - warped_ltas[b]).sum::<f32>() / N_MELS as f32;
                for b in 0..N_MELS {
                    env[b] = warped[b] + s * (target.ltas[b] - warped_ltas[b] - mean);
                }
            }
            // Phone-dependent offset: the target's mean envelope for the
            // phones being said minus the source's.
            // Both voices' phone means come from speech frames only; the
            // offset changes the envelope's shape, never its level (the
            // loudness contour stays the source's), and it fades in over the
            // source's first OFFSET_WARMUP_FRAMES speech frames (before that
            // its phone means are a few frames' guess: at the start of a
            // stream they made a burst of up to +14 dB).
            if speech {
                let keep = 1.0 - 1.0 / SOURCE_MEMORY_FRAMES;
                self.source_phones.add(&self.key, &env, keep);
            }
            if self.source_phones.count > 0.0 {
                for (p, kp) in self.key.iter().enumerate() {
                    let w = kp * kp;
                    if w < 1e-4 {
                        continue;
                    }
                    let mu_s = self.source_phones.mean(p);
                    for b in 0..N_MELS {
                        offset[b] += w * (target.phone_means[p][b] - mu_s[b]);
                    }
                }
                let warm = (self.source_ltas_frames / OFFSET_WARMUP_FRAMES).min(1.0);
                let mean = frame_level(&offset);
                offset.iter_mut().for_each(|o| *o = warm * (*o - mean));
            }
        }
        let rec = &mut self.analysed[slot];
        rec.envelope = env;
        rec.fine = fine;
        rec.f0 = f0;
        rec.energy = energy_level(&source);
        rec.offset = offset;
        rec.key.copy_from_slice(&self.key);
        self.splitter.shape(&env, &mut rec.shape);
        Ok(())
    }

    /// The converted mel frame `c` (analysed `smoothing_lag()` frames ago);
    /// returns its output F0 (Hz, 0 = unvoiced).
    fn assemble_frame(&mut self, c: u64, out: &mut MelFrame) -> f32 {
        let len = self.analysed.len() as u64;
        let at = |i: i64| ((i.max(0) as u64) % len) as usize;
        let newest = c as i64 + self.settings.smoothing_lag() as i64;
        let here = &self.analysed[at(c as i64)];
        let (mut env, mut fine, f0, here_energy) = (here.envelope, here.fine, here.f0, here.energy);
        let (s, phone_gain, share) = strength_curve(self.settings.curve_strength(self.controls.strength));
        let transpose = (self.controls.transpose_semitones / 12.0).exp2();
        let mut ratio = transpose;
        if let Some(target) = self.target.clone().filter(|_| s > 0.0) {
            // Offsets averaged over ±OFFSET_SMOOTHING frames.
            let mut off = [0.0; N_MELS];
            let span = OFFSET_SMOOTHING as i64;
            for d in -span..=span {
                let i = (c as i64 + d).clamp(0, newest);
                for b in 0..N_MELS {
                    off[b] += self.analysed[at(i)].offset[b];
                }
            }
            let gain = phone_gain / (2 * span + 1) as f32;
            for b in 0..N_MELS {
                env[b] += gain * off[b];
            }
            // Blend in the target's own frames for the same phones.
            if share > 0.0 && target.frames() > 0 && self.settings.phonetic {
                self.key.fill(0.0);
                let span = KEY_SMOOTHING as i64;
                for d in -span..=span {
                    let i = (c as i64 + d).clamp(0, newest);
                    for (k, v) in self.key.iter_mut().zip(&self.analysed[at(i)].key) {
                        *k += v / (2 * span + 1) as f32;
                    }
                }
                // The frame's own shape with its phone offsets; its
                // neighbours' as analysed (warped and equalised).
                for (j, slot) in self.shapes.iter_mut().enumerate() {
                    let i = (c as i64 + j as i64 - SHAPE_CONTEXT as i64).clamp(0, newest);
                    *slot = self.analysed[at(i)].shape;
                }
                self.splitter.shape(&env, &mut self.shapes[SHAPE_CONTEXT]);
                let mut matched = [0.0; N_MELS];
                target.match_envelope(&self.key, &self.shapes, &mut self.best, &mut matched);
                let shift = frame_level(&env) - frame_level(&matched);
                for b in 0..N_MELS {
                    env[b] = (1.0 - share) * env[b] + share * (matched[b] + shift);
                }
            }
        }
        if f0 > 0.0 {
            if let (Some(target), Some(src)) = (self.target.as_ref(), self.source_pitch.stats()) {
                let spread = (target.pitch.std_log / src.std_log).clamp(0.5, 2.0);
                let want = target.pitch.mean_log_hz + (f0.ln() - src.mean_log_hz) * spread;
                ratio *= (want - f0.ln()).exp();
            }
            if (ratio - 1.0).abs() > 1e-4 {
                self.patterns.repitch(&mut fine, f0, f0 * ratio, self.resolved);
            }
        }
        // The frame keeps the source's energy (the loudness contour stays
        // the source's): a matched envelope of the same mean log level can
        // hold 10 dB more energy when its shape differs.
        for b in 0..N_MELS {
            out[b] = env[b] + fine[b];
        }
        let shift = here_energy - energy_level(out);
        for v in out.iter_mut() {
            *v = (*v + shift).max(mel::LOG_SILENCE);
        }
        if f0 > 0.0 {
            f0 * ratio
        } else {
            0.0
        }
    }

    fn describe_context(&mut self) -> Result<(), RuntimeError> {
        let refs: [&MelFrame; 16] = std::array::from_fn(|i| &self.context[i.min(self.context.len() - 1)]);
        self.content.describe(&refs[..self.context.len()], &mut self.key)
    }
}

/// The converter's timing for `settings`, from the installed content
/// model's description (no model is loaded). Main thread.
pub fn installed_timing(
    settings: ConverterSettings,
) -> Result<crate::pipelines::stream::ModelTiming, RuntimeError> {
    let installed = crate::runtime::store::find_model(CONTENT_MODEL_ID)?;
    let (_, right) = ContentModel::read_context(&installed.dir)?;
    Ok(timing(right, settings))
}

/// Timing for a content model with `right` frames of lookahead.
pub fn timing(right: usize, settings: ConverterSettings) -> crate::pipelines::stream::ModelTiming {
    let lag = settings.analysis_lag(right) + settings.smoothing_lag();
    crate::pipelines::stream::ModelTiming {
        sample_rate: SAMPLE_RATE,
        hop: settings.frames_per_call() * HOP,
        delay: lag * HOP + settings.vocoder_delay() + OutputLevel::delay_at(SAMPLE_RATE),
    }
}

/// Pitch-tracker frame nearest to mel frame `c`'s centre (`256·c + 128`).
fn pitch_frame_of(c: u64) -> u64 {
    ((c * HOP as u64 + HOP as u64 / 2) * 100 + SAMPLE_RATE as u64 / 2) / SAMPLE_RATE as u64
}

/// Smallest lag (frames) at which mel frame `c`'s right context
/// (`right` frames, from a front end `mel_delay` frames behind) and its
/// pitch frame (`pitch_early` before the nearest) are both available after
/// input hop `c + lag`, for every `c`.
fn conversion_lag(right: usize, mel_delay: usize, pitch_delay_hops: usize, pitch_early: usize) -> usize {
    let mut lag = right + mel_delay;
    for c in 0..4096u64 {
        // The first frames of a stream have no pitch frame that early:
        // they are unvoiced (see `analyse_frame`).
        let Some(n) = pitch_frame_of(c).checked_sub(pitch_early as u64) else {
            continue;
        };
        // Pitch frame n is out once hop n + delay (220/221 samples) is in.
        let need = ((n + pitch_delay_hops as u64 + 1) * SAMPLE_RATE as u64 / 100) as usize;
        while (c as usize + lag + 1) * HOP < need {
            lag += 1;
        }
    }
    lag
}

impl HopModel for DefaultVoiceConverter {
    fn name(&self) -> &str {
        "Voice conversion (default)"
    }

    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }

    fn hop(&self) -> usize {
        self.settings.frames_per_call() * HOP
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn delay(&self) -> usize {
        self.conversion_delay() + self.level.delay()
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let hop = self.hop();
        self.level.measure_input(input, hop);
        let inv = 1.0 / self.channels as f32;
        for i in 0..hop {
            self.mid[i] = (0..self.channels).map(|ch| input[ch * hop + i]).sum::<f32>() * inv;
        }
        let mut ok = true;
        for f in 0..self.stage.len() {
            let mut frame = [0.0; N_MELS];
            let x: [f32; HOP] = std::array::from_fn(|i| self.mid[f * HOP + i]);
            match self.convert_hop(&x, &mut frame) {
                Ok(f0) => self.stage_f0[f] = f0,
                Err(_) => {
                    ok = false;
                    frame = [mel::LOG_SILENCE; N_MELS];
                    self.stage_f0[f] = 0.0;
                }
            }
            self.stage[f] = frame;
        }
        let vocoded = self
            .vocoder
            .process(&self.stage, &self.stage_f0, &mut self.voiced_out);
        ok &= vocoded.is_ok();
        // Dry mid delayed by exactly delay(): the fallback.
        let d = self.dry.len();
        for i in 0..hop {
            let delayed = if d == 0 { self.mid[i] } else { std::mem::replace(&mut self.dry[self.dry_pos], self.mid[i]) };
            if d > 0 {
                self.dry_pos = (self.dry_pos + 1) % d;
            }
            if !ok {
                self.voiced_out[i] = delayed;
            }
        }
        if !ok {
            self.faults += 1;
            self.vocoder.reset();
        }
        for ch in 0..self.channels {
            output[ch * hop..(ch + 1) * hop].copy_from_slice(&self.voiced_out[..hop]);
        }
        self.level.process(output, hop);
    }

    fn reset(&mut self) {
        self.mel.reset();
        self.pitch.reset();
        self.vocoder.reset();
        for f in &mut self.mel_ring {
            *f = [mel::LOG_SILENCE; N_MELS];
        }
        self.speaker_norm.reset();
        self.pad_before = self.speaker_norm.silence();
        self.pitch_ring.fill(0.0);
        self.pitch_fill = 0;
        self.hops = 0;
        self.pitch_frames = 0;
        self.source_pitch = RunningPitch::EMPTY;
        self.source_ltas = [0.0; N_MELS];
        self.source_ltas_frames = 0.0;
        self.loudest = f32::MIN;
        self.source_phones.reset();
        for r in &mut self.analysed {
            r.envelope = [mel::LOG_SILENCE; N_MELS];
            r.fine = [0.0; N_MELS];
            r.f0 = 0.0;
            r.energy = mel::LOG_SILENCE;
            r.offset = [0.0; N_MELS];
            r.key.fill(0.0);
        }
        self.dry.fill(0.0);
        self.dry_pos = 0;
        self.level.reset();
    }

    fn faults(&self) -> u64 {
        self.faults + self.vocoder.faults()
    }

    fn set_conversion(&mut self, controls: &ConversionControls) {
        self.controls = *controls;
    }

    fn set_target_voice(&mut self, target: Option<Arc<TargetVoice>>) {
        self.set_target(target);
    }

    fn device_note(&self) -> &str {
        &self.device_note
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offline passes the control straight to the strength curve; Balanced
    /// maps the default control position to the strength it was calibrated
    /// at, keeps both ends, and stays monotonic.
    #[test]
    fn balanced_strength_is_calibrated_to_offline() {
        let (offline, balanced) = (ConverterSettings::OFFLINE, ConverterSettings::LIVE_BALANCED);
        for s in [0.0, 0.3, 0.744, 1.0] {
            assert_eq!(offline.curve_strength(s), s);
        }
        assert!((balanced.curve_strength(0.744) - 0.60).abs() < 0.005, "{}", balanced.curve_strength(0.744));
        assert_eq!(balanced.curve_strength(0.0), 0.0);
        assert_eq!(balanced.curve_strength(1.0), 1.0);
        assert_eq!(balanced.curve_strength(1.5), 1.0);
        let mut last = -1.0;
        for i in 0..=100 {
            let v = balanced.curve_strength(i as f32 / 100.0);
            assert!(v > last, "not increasing at {i}");
            last = v;
        }
    }

    /// The same speech through two channels that differ by a fixed
    /// colouring per band reaches the content model nearly the same once
    /// the running mean has settled; silence leaves the mean alone.
    #[test]
    fn speaker_norm_takes_out_a_fixed_colouring_and_ignores_silence() {
        let settings = SpeakerNormSettings { prior_mean: [-5.0; N_MELS], speech_gate: -9.0, prior_frames: 10.0, tau_frames: 200.0 };
        let colouring: MelFrame = std::array::from_fn(|b| 1.5 - 0.04 * b as f32);
        let speech = |t: usize| -> MelFrame { std::array::from_fn(|b| -4.0 + 2.0 * ((t as f32 * 0.37 + b as f32 * 0.21).sin())) };
        let (mut plain, mut coloured) = (SpeakerNorm::new(settings), SpeakerNorm::new(settings));
        let (mut a, mut b) = ([0.0; N_MELS], [0.0; N_MELS]);
        let max_gap = |a: &MelFrame, b: &MelFrame| a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        let mut first_gap = 0.0f32;
        for t in 0..2000 {
            let x = speech(t);
            let y: MelFrame = std::array::from_fn(|k| x[k] + colouring[k]);
            plain.push(&x, &mut a);
            coloured.push(&y, &mut b);
            if t == 0 {
                first_gap = max_gap(&a, &b);
            }
        }
        let gap = max_gap(&a, &b);
        assert!(first_gap > 1.0, "the colouring should show at first ({first_gap})");
        assert!(gap < 0.02, "after 2000 frames the coloured stream is still {gap} away");
        // Digital silence is below the gate: the mean stays where it was.
        let before = plain.silence();
        let mut out = [0.0; N_MELS];
        for _ in 0..500 {
            plain.push(&[mel::LOG_SILENCE; N_MELS], &mut out);
        }
        assert_eq!(plain.silence(), before);
        plain.reset();
        assert_eq!(plain.silence(), SpeakerNorm::new(settings).silence());
    }

    /// Shape distance is the level-free envelope distance: a level offset
    /// changes nothing, a change of tilt does.
    #[test]
    fn shape_ignores_level_and_sees_tilt() {
        let splitter = EnvelopeSplitter::default();
        let raw: MelFrame = std::array::from_fn(|b| -3.0 + (b as f32 * 0.3).sin() - 0.02 * b as f32);
        let mut env = [0.0; N_MELS];
        splitter.envelope(&raw, &mut env);
        let louder: MelFrame = std::array::from_fn(|b| env[b] + 2.5);
        let tilted: MelFrame = std::array::from_fn(|b| env[b] + 0.01 * b as f32);
        let (mut a, mut b, mut c) = ([0.0; ENVELOPE_COEFFS - 1], [0.0; ENVELOPE_COEFFS - 1], [0.0; ENVELOPE_COEFFS - 1]);
        splitter.shape(&env, &mut a);
        splitter.shape(&louder, &mut b);
        splitter.shape(&tilted, &mut c);
        let dist = |x: &Shape, y: &Shape| x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum::<f32>();
        assert!(dist(&a, &b) < 1e-6, "level moved the shape by {}", dist(&a, &b));
        // The tilt's own energy without its mean, nearly all in coefficients 1..14.
        let ramp: Vec<f32> = (0..N_MELS).map(|b| 0.01 * b as f32).collect();
        let mean = ramp.iter().sum::<f32>() / N_MELS as f32;
        let energy: f32 = ramp.iter().map(|r| (r - mean).powi(2)).sum();
        let d = dist(&a, &c);
        assert!(d > 0.9 * energy && d <= energy * 1.001, "tilt distance {d}, energy {energy}");
    }

    /// Two target frames with the same phone posteriors and the same shape:
    /// the one whose neighbours look like the source frame's neighbours is
    /// matched first, and its envelope weighs in the result.
    #[test]
    fn matching_prefers_the_frame_in_the_same_transition() {
        let flat = [0.0f32; ENVELOPE_COEFFS - 1];
        let rising: Shape = std::array::from_fn(|k| if k == 0 { 1.0 } else { 0.0 });
        let falling: Shape = std::array::from_fn(|k| if k == 0 { -1.0 } else { 0.0 });
        // Frames 0..10: frame 3 sits between rising and falling shapes (as
        // in the source), frame 7 between falling and rising.
        let mut frame_shapes = vec![flat; 10];
        frame_shapes[1] = rising;
        frame_shapes[2] = rising;
        frame_shapes[4] = falling;
        frame_shapes[5] = falling;
        frame_shapes[6] = falling;
        frame_shapes[8] = rising;
        frame_shapes[9] = rising;
        let phones = 2;
        let target = TargetVoice {
            envelopes: vec![[1.0; N_MELS], [2.0; N_MELS]],
            frame_shapes,
            speech_frames: vec![3, 7],
            keys: vec![1.0, 0.0, 1.0, 0.0],
            phones,
            phone_means: vec![[0.0; N_MELS]; phones],
            ltas: [0.0; N_MELS],
            pitch: PitchStats::NEUTRAL,
            seconds: 1.0,
        };
        let source: ShapeContext = [rising, rising, flat, falling, falling];
        let mut best = [(f32::INFINITY, 0); NEIGHBOURS];
        let mut out = [0.0; N_MELS];
        target.match_envelope(&[1.0, 0.0], &source, &mut best, &mut out);
        assert_eq!(best[0].1, 0, "matched order {best:?}");
        assert!(best[0].0 < 1e-6 && best[1].0 > 0.5, "distances {best:?}");
        // Both frames are among the neighbours, so the result is their mean.
        assert!((out[0] - 1.5).abs() < 1e-6);
    }
}
