//! DeepFilterNet3 speech enhancement, 48 kHz, 960-point FFT, 480 hop.
//! Worker thread.
//!
//! Runs the three streaming graphs made by `xtask/py/prepare_dfn3.py`
//! (`enc_stream.onnx`, `erb_dec_stream.onnx`, `df_dec_stream.onnx`: one frame
//! per call, GRU hidden states and causal-convolution buffers as explicit
//! inputs/outputs) and reproduces, hop for hop, the signal processing of
//! DeepFilterNet's own real-time runtime (`libDF`, `DfTract::process`, as
//! built into `libdeepfilter.so`):
//!
//! * **STFT**: the Vorbis window `sin(π/2 · sin²(π (i + ½) / (N/2)))`, analysis
//!   frame = previous hop + current hop, the forward FFT scaled by
//!   `2·hop / N²`; synthesis is the plain inverse FFT, the same window and
//!   overlap-add (the window is power-complementary at 50 % overlap, so the
//!   pair reconstructs exactly with `n_fft - hop` = 480 samples of delay).
//! * **Features** of the newest frame `t`: ERB band powers (32 bands of the
//!   DeepFilterNet ERB scale, at least 2 bins each, mean of `|X|²` over the
//!   band) in dB, minus an exponential running mean (α = 0.99, from
//!   `norm_tau` = 1 s), divided by 40; and the 96 lowest bins divided by the
//!   square root of an exponential running mean of `|X|` (same α).
//! * **Model**: the encoder gives the local SNR, the ERB decoder 32 band
//!   gains, the DF decoder 5 complex taps per low bin. Because the features
//!   reach the encoder with the model's `conv_lookahead` of 2 frames, the
//!   results at step `t` belong to spectrum frame `t - 2`.
//! * **Enhancement** of frame `t - 2`: every bin times its ERB band's gain;
//!   then the 96 lowest bins are replaced by the deep filter
//!   `Σ_{i=0..4} X[t-4+i] · C_i` over the *noisy* frames `t-4 .. t`
//!   (order 5, lookahead 2).
//! * **Local-SNR gating** (the thresholds `libdeepfilter.so` uses: -15, 35,
//!   35 dB): below `min` the gains are zero and no deep filter; above
//!   `max_erb` nothing is applied; above `max_df` only the ERB gains. A
//!   decoder whose stage is gated off does not advance its recurrent state
//!   (exactly as the reference, which does not run it); here it still runs,
//!   so every hop costs the same, and its result and new state are dropped.
//! * **Post-filter** (off by default, as in the reference): a per-bin gain
//!   `(1 + β) / (1 + β / sin²(π/2 · g))` with `g = |enhanced| / |noisy|`,
//!   over the first 480 bins (the reference's 4-bin blocks leave the
//!   Nyquist bin out), only when the ERB stage ran.
//! * **Attenuation limit**: `enhanced · (1 - l) + noisy · l`,
//!   `l = 10^(-limit/20)`; a limit of 100 dB or more means none. (A limit
//!   under 0.01 dB passes the dry signal; the reference then also skips the
//!   model and passes its input *undelayed*; here the delay stays and the
//!   model keeps running, so changing the limit later is seamless.)
//! * **Digital silence**: when the mean square of the input hop stays below
//!   1e-7 for more than 5 hops, the reference outputs zeros and freezes all
//!   its state (STFT memories, normalisation, model) until the signal comes
//!   back; so does this port (it still runs the graphs on those hops, with
//!   the results dropped, to keep the cost per hop constant).
//!
//! The total hop-synchronous delay is `n_fft - hop + 2 · hop` = 1440 samples
//! (30 ms): 480 from the STFT, 960 from the two frames of lookahead.
//!
//! Mono runs directly. Stereo is linked: the model runs on the mid signal
//! `(L + R) / 2` and its result, as a per-bin complex ratio
//! `enhanced / noisy mid` limited to unit magnitude, is applied to both
//! channels (then the attenuation limit mixes each channel's own noisy
//! spectrum back in), so a panned voice stays put.
//!
//! A hop whose inference fails or produces non-finite values passes the
//! delayed dry spectrum of that hop (frame `t - 2`, same delay) and all
//! recurrent model state starts afresh.

use super::HopModel;
use crate::dsp::sanitize::all_finite;
use crate::runtime::onnx::{open_session, Device};
use crate::runtime::RuntimeError;
use ort::session::{Session, SessionInputValue};
use ort::value::TensorRef;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SAMPLE_RATE: u32 = 48000;
pub const N_FFT: usize = 960;
pub const HOP: usize = 480;
pub const BINS: usize = N_FFT / 2 + 1;
pub const NB_ERB: usize = 32;
/// Bins (from DC) that the deep filter replaces.
pub const NB_DF: usize = 96;
pub const DF_ORDER: usize = 5;
pub const DF_LOOKAHEAD: usize = 2;
pub const CONV_LOOKAHEAD: usize = 2;
/// Frames between the newest spectrum and the one being enhanced.
pub const LOOKAHEAD: usize = if CONV_LOOKAHEAD > DF_LOOKAHEAD { CONV_LOOKAHEAD } else { DF_LOOKAHEAD };
/// Hop-synchronous algorithmic delay in samples (1440).
pub const DELAY: usize = N_FFT - HOP + LOOKAHEAD * HOP;
const MIN_NB_ERB_FREQS: usize = 2;
/// `norm_tau` of the model's config, in seconds.
const NORM_TAU: f32 = 1.0;
/// The model's local-SNR range (sigmoid scaled to it inside the encoder).
pub const LSNR_MIN: f32 = -15.0;
pub const LSNR_MAX: f32 = 35.0;
/// Stage gating thresholds (dB) as `libdeepfilter.so` sets them.
const MIN_DB_THRESH: f32 = -15.0;
const MAX_DB_ERB_THRESH: f32 = 35.0;
const MAX_DB_DF_THRESH: f32 = 35.0;
/// The strongest post-filter offered ([`HopModel::set_post_filter`] at 1):
/// the top of DeepFilterNet's suggested beta range (0..0.05; its own
/// command line uses 0.02 when the post-filter is on).
pub const POST_FILTER_BETA_MAX: f32 = 0.05;
/// Mean-square level below which a hop counts as silent, and how many silent
/// hops in a row pass before the output is muted (reference behaviour).
const SILENCE_MEAN_SQUARE: f32 = 1e-7;
const SILENT_HOPS_BEFORE_MUTE: usize = 5;
/// Initial values of the exponential means (reference: linear ramps).
const MEAN_NORM_INIT: (f32, f32) = (-60.0, -90.0);
const UNIT_NORM_INIT: (f32, f32) = (0.001, 0.0001);
/// Spectra kept for the deep filter: frames `t - 4 .. t`.
const RING: usize = if DF_ORDER > LOOKAHEAD + 1 { DF_ORDER } else { LOOKAHEAD + 1 };
/// Power of the noisy mid below which the stereo ratio is taken as zero.
const RATIO_FLOOR: f32 = 1e-24;

pub const ENC_FILE: &str = "enc_stream.onnx";
pub const ERB_DEC_FILE: &str = "erb_dec_stream.onnx";
pub const DF_DEC_FILE: &str = "df_dec_stream.onnx";
pub const CONFIG_FILE: &str = "config.ini";

const HIDDEN: usize = 256;
const CONV_CH: usize = 64;
const EMB: usize = 512;

/// One recurrent input/output pair of a streaming graph.
struct StateSpec {
    input: &'static str,
    output: &'static str,
    shape: &'static [usize],
}

const ENC_STATES: [StateSpec; 3] = [
    StateSpec { input: "h_in_emb_gru_GRU", output: "h_out_emb_gru_GRU", shape: &[1, 1, HIDDEN] },
    StateSpec { input: "buf_in_erb_conv0_0_Pad", output: "buf_out_erb_conv0_0_Pad", shape: &[1, 1, 2, NB_ERB] },
    StateSpec { input: "buf_in_df_conv0_0_Pad", output: "buf_out_df_conv0_0_Pad", shape: &[1, 2, 2, NB_DF] },
];
const ERB_DEC_STATES: [StateSpec; 2] = [
    StateSpec { input: "h_in_emb_gru_GRU", output: "h_out_emb_gru_GRU", shape: &[1, 1, HIDDEN] },
    StateSpec { input: "h_in_emb_gru_GRU_1", output: "h_out_emb_gru_GRU_1", shape: &[1, 1, HIDDEN] },
];
const DF_DEC_STATES: [StateSpec; 3] = [
    StateSpec { input: "h_in_df_gru_gru_GRU", output: "h_out_df_gru_gru_GRU", shape: &[1, 1, HIDDEN] },
    StateSpec { input: "h_in_df_gru_gru_GRU_1", output: "h_out_df_gru_gru_GRU_1", shape: &[1, 1, HIDDEN] },
    StateSpec { input: "buf_in_df_convp_df_convp_0_Pad", output: "buf_out_df_convp_df_convp_0_Pad", shape: &[1, CONV_CH, 4, NB_DF] },
];

const SHAPE_FEAT_ERB: [usize; 4] = [1, 1, 1, NB_ERB];
const SHAPE_FEAT_SPEC: [usize; 4] = [1, 2, 1, NB_DF];
const SHAPE_E0: [usize; 4] = [1, CONV_CH, 1, NB_ERB];
const SHAPE_E1: [usize; 4] = [1, CONV_CH, 1, NB_ERB / 2];
const SHAPE_E2: [usize; 4] = [1, CONV_CH, 1, NB_ERB / 4];
const SHAPE_E3: [usize; 4] = [1, CONV_CH, 1, NB_ERB / 4];
const SHAPE_EMB: [usize; 3] = [1, 1, EMB];
const SHAPE_C0: [usize; 4] = [1, CONV_CH, 1, NB_DF];

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

// ---------------------------------------------------------------------------
// DSP building blocks (no model)
// ---------------------------------------------------------------------------

/// Hz -> ERB number on DeepFilterNet's scale.
fn hz_to_erb(hz: f32) -> f32 {
    9.265 * (hz / (24.7 * 9.265)).ln_1p()
}

/// ERB number -> Hz (inverse of [`hz_to_erb`]).
fn erb_to_hz(erb: f32) -> f32 {
    24.7 * 9.265 * ((erb / 9.265).exp() - 1.0)
}

/// Widths (in bins) of the `bands` ERB bands covering the `fft_size/2 + 1`
/// bins: equal steps on the ERB scale from 0 Hz to Nyquist, each band at
/// least `min_width` bins (a band widened to the minimum takes its extra
/// bins from the next band's share); the last band ends at Nyquist.
pub fn erb_band_widths(sample_rate: usize, fft_size: usize, bands: usize, min_width: usize) -> Vec<usize> {
    let bins = fft_size / 2 + 1;
    let bin_hz = sample_rate as f32 / fft_size as f32;
    let lo = hz_to_erb(0.0);
    let hi = hz_to_erb((sample_rate / 2) as f32);
    let step = (hi - lo) / bands as f32;
    let min_width = min_width as i64;
    let mut widths = Vec::with_capacity(bands);
    let (mut prev_edge, mut borrowed) = (0i64, 0i64);
    for b in 1..=bands {
        let edge = (erb_to_hz(lo + b as f32 * step) / bin_hz).round() as i64;
        let mut width = edge - prev_edge - borrowed;
        if width < min_width {
            borrowed = min_width - width;
            width = min_width;
        } else {
            borrowed = 0;
        }
        widths.push(width.max(0) as usize);
        prev_edge = edge;
    }
    // The edges count bins up to (not including) Nyquist; the last band
    // takes it, then gives back whatever the minimum widths overshot.
    widths[bands - 1] += 1;
    let total: usize = widths.iter().sum();
    if total > bins {
        widths[bands - 1] -= total - bins;
    }
    widths
}

/// The exponential-mean coefficient for `tau` seconds at one frame per hop,
/// rounded (as DeepFilterNet does) to the fewest decimals, from 3 on, that
/// keep it below 1.
pub fn norm_alpha(sample_rate: u32, hop: usize, tau: f32) -> f32 {
    let exact = (-(hop as f32 / sample_rate as f32) / tau).exp();
    let mut decimals = 3;
    loop {
        let scale = 10i32.pow(decimals) as f32;
        let a = (exact * scale).round() / scale;
        if a < 1.0 {
            return a;
        }
        decimals += 1;
    }
}

/// DeepFilterNet's framing: Vorbis window over (previous hop, current hop),
/// forward FFT scaled by `2·hop/N²`, inverse FFT unscaled, windowed
/// overlap-add. Per channel; allocates only in `new`.
struct VorbisStft {
    window: Vec<f32>,
    scale: f32,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
    /// `[channel][N_FFT - HOP]` previous input.
    analysis_mem: Vec<f32>,
    /// `[channel][N_FFT - HOP]` overlap-add tail.
    synthesis_mem: Vec<f32>,
    time: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl VorbisStft {
    fn new(channels: usize) -> Self {
        let half = (N_FFT / 2) as f64;
        let pi = std::f64::consts::PI;
        let window = (0..N_FFT)
            .map(|i| {
                let s = (0.5 * pi * (i as f64 + 0.5) / half).sin();
                (0.5 * pi * s * s).sin() as f32
            })
            .collect();
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(N_FFT);
        let inv = planner.plan_fft_inverse(N_FFT);
        let scratch = vec![Complex32::default(); fwd.get_scratch_len().max(inv.get_scratch_len())];
        Self {
            window,
            scale: 1.0 / ((N_FFT * N_FFT) as f32 / (2 * HOP) as f32),
            fwd,
            inv,
            analysis_mem: vec![0.0; channels * (N_FFT - HOP)],
            synthesis_mem: vec![0.0; channels * (N_FFT - HOP)],
            time: vec![0.0; N_FFT],
            scratch,
        }
    }

    fn reset(&mut self) {
        self.analysis_mem.fill(0.0);
        self.synthesis_mem.fill(0.0);
    }

    fn analyze(&mut self, ch: usize, hop_in: &[f32], spectrum: &mut [Complex32]) {
        const M: usize = N_FFT - HOP;
        let mem = &mut self.analysis_mem[ch * M..(ch + 1) * M];
        for ((t, x), w) in self.time[..M].iter_mut().zip(mem.iter()).zip(&self.window[..M]) {
            *t = x * w;
        }
        for ((t, x), w) in self.time[M..].iter_mut().zip(&hop_in[..HOP]).zip(&self.window[M..]) {
            *t = x * w;
        }
        // The newest `N_FFT - HOP` samples (here: the whole hop).
        mem.copy_from_slice(&hop_in[HOP - M..HOP]);
        // realfft only fails on wrong lengths, which `new` rules out.
        let _ = self.fwd.process_with_scratch(&mut self.time, spectrum, &mut self.scratch);
        for c in spectrum.iter_mut() {
            *c *= self.scale;
        }
    }

    /// `spectrum` is destroyed.
    fn synthesize(&mut self, ch: usize, spectrum: &mut [Complex32], hop_out: &mut [f32]) {
        const M: usize = N_FFT - HOP;
        // Errors only flag non-real DC/Nyquist bins, whose imaginary parts
        // the inverse transform ignores.
        let _ = self.inv.process_with_scratch(spectrum, &mut self.time, &mut self.scratch);
        for (t, w) in self.time.iter_mut().zip(&self.window) {
            *t *= w;
        }
        let mem = &mut self.synthesis_mem[ch * M..(ch + 1) * M];
        for ((o, t), m) in hop_out[..HOP].iter_mut().zip(&self.time[..HOP]).zip(mem.iter()) {
            *o = t + m;
        }
        mem.copy_from_slice(&self.time[HOP..]);
    }
}

/// The model's input features with their running normalisation.
struct FeatureNorm {
    widths: Vec<usize>,
    alpha: f32,
    /// Running mean of the ERB band levels (dB).
    mean: [f32; NB_ERB],
    /// Running mean of the low bins' magnitudes.
    unit: [f32; NB_DF],
}

impl FeatureNorm {
    fn new() -> Self {
        let mut s = Self {
            widths: erb_band_widths(SAMPLE_RATE as usize, N_FFT, NB_ERB, MIN_NB_ERB_FREQS),
            alpha: norm_alpha(SAMPLE_RATE, HOP, NORM_TAU),
            mean: [0.0; NB_ERB],
            unit: [0.0; NB_DF],
        };
        s.reset();
        s
    }

    fn reset(&mut self) {
        let ramp = |(a, b): (f32, f32), i: usize, n: usize| a + i as f32 * ((b - a) / (n - 1) as f32);
        for (i, m) in self.mean.iter_mut().enumerate() {
            *m = ramp(MEAN_NORM_INIT, i, NB_ERB);
        }
        for (i, u) in self.unit.iter_mut().enumerate() {
            *u = ramp(UNIT_NORM_INIT, i, NB_DF);
        }
    }

    fn is_finite(&self) -> bool {
        all_finite(&self.mean) && all_finite(&self.unit)
    }

    /// `feat_erb`: `[NB_ERB]`; `feat_spec`: `[2][NB_DF]` (real parts, then
    /// imaginary parts).
    fn compute(&mut self, spec: &[Complex32], feat_erb: &mut [f32], feat_spec: &mut [f32]) {
        let a = self.alpha;
        let mut start = 0;
        for ((&w, f), m) in self.widths.iter().zip(feat_erb.iter_mut()).zip(self.mean.iter_mut()) {
            let k = 1.0 / w as f32;
            let mut power = 0.0f32;
            for x in &spec[start..start + w] {
                power += (x.re * x.re + x.im * x.im) * k;
            }
            start += w;
            let db = (power + 1e-10).log10() * 10.0;
            *m = db * (1.0 - a) + *m * a;
            *f = (db - *m) / 40.0;
        }
        let (re, im) = feat_spec.split_at_mut(NB_DF);
        for (((x, u), r), i) in spec[..NB_DF].iter().zip(self.unit.iter_mut()).zip(re.iter_mut()).zip(im.iter_mut()) {
            *u = x.norm() * (1.0 - a) + *u * a;
            let d = u.sqrt();
            *r = x.re / d;
            *i = x.im / d;
        }
    }
}

/// Which stages the local SNR asks for: (ERB gains, zero gains, deep filter).
fn stages(lsnr: f32) -> (bool, bool, bool) {
    if lsnr < MIN_DB_THRESH {
        (false, true, false)
    } else if lsnr > MAX_DB_ERB_THRESH {
        (false, false, false)
    } else if lsnr > MAX_DB_DF_THRESH {
        (true, false, false)
    } else {
        (true, false, true)
    }
}

/// DeepFilterNet's post-filter on `enh` against `noisy`, bins in blocks of
/// four (a trailing partial block is left alone, as in the reference).
fn post_filter(noisy: &[Complex32], enh: &mut [Complex32], beta: f32) {
    const EPS: f32 = 1e-12;
    let half_pi = std::f32::consts::PI / 2.0;
    let n = noisy.len().min(enh.len()) / 4 * 4;
    for (x, e) in noisy[..n].iter().zip(enh[..n].iter_mut()) {
        let g = (e.norm() / (x.norm() + EPS)).clamp(EPS, 1.0);
        let g_sin = g * (g * half_pi).sin();
        let pf = ((1.0 + beta) * g / (1.0 + beta * (g / g_sin).powi(2))) / g;
        *e *= pf;
    }
}

fn atten_lim_factor(db: f32) -> Option<f32> {
    let db = db.abs();
    if db >= 100.0 {
        None
    } else if db < 0.01 {
        Some(1.0)
    } else {
        Some(10f32.powf(-db / 20.0))
    }
}

// ---------------------------------------------------------------------------
// Streaming graphs
// ---------------------------------------------------------------------------

struct State {
    spec: &'static StateSpec,
    /// Value fed to the next call.
    cur: Vec<f32>,
    /// Value the last call produced (committed by [`Graph::commit`]).
    next: Vec<f32>,
}

struct Graph {
    session: Session,
    path: PathBuf,
    states: Vec<State>,
}

impl Graph {
    fn open(path: &Path, device: Device, states: &'static [StateSpec], inputs: &[&str], outputs: &[&str]) -> Result<(Self, String), RuntimeError> {
        let loaded = open_session(path, device)?;
        let session = loaded.session;
        let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let want_in: Vec<&str> = inputs.iter().copied().chain(states.iter().map(|s| s.input)).collect();
        let want_out: Vec<&str> = outputs.iter().copied().chain(states.iter().map(|s| s.output)).collect();
        if want_in.iter().any(|n| !names_in.contains(n)) || want_out.iter().any(|n| !names_out.contains(n)) {
            return Err(RuntimeError::ModelSignature {
                path: path.to_path_buf(),
                reason: format!(
                    "inputs {names_in:?}, outputs {names_out:?}; DeepFilterNet3 needs {want_in:?} -> {want_out:?} (the graphs made by prepare_dfn3.py)"
                ),
            });
        }
        let states = states.iter().map(|spec| State { spec, cur: vec![0.0; numel(spec.shape)], next: vec![0.0; numel(spec.shape)] }).collect();
        Ok((Self { session, path: path.to_path_buf(), states }, loaded.device_note))
    }

    /// Runs one frame. `data_in`: (name, shape, values); `data_out`: (name,
    /// destination). States are read from `cur`, written to `next`.
    fn run(&mut self, data_in: &[(&'static str, &[usize], &[f32])], data_out: &mut [(&'static str, &mut [f32])]) -> Result<(), String> {
        let e = |e: ort::Error| e.to_string();
        let mut feeds: Vec<(Cow<'static, str>, SessionInputValue<'_>)> = Vec::with_capacity(data_in.len() + self.states.len());
        for (name, shape, values) in data_in {
            feeds.push((Cow::Borrowed(*name), TensorRef::from_array_view((*shape, *values)).map_err(e)?.into()));
        }
        for s in &self.states {
            feeds.push((Cow::Borrowed(s.spec.input), TensorRef::from_array_view((s.spec.shape, &s.cur[..])).map_err(e)?.into()));
        }
        let outputs = self.session.run(feeds).map_err(e)?;
        let take = |name: &str, dst: &mut [f32]| -> Result<(), String> {
            let value = outputs.get(name).ok_or_else(|| format!("{name}: missing output"))?;
            let (_, data) = value.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            if data.len() != dst.len() {
                return Err(format!("{name}: {} values, expected {}", data.len(), dst.len()));
            }
            if !all_finite(data) {
                return Err(format!("{name}: non-finite values"));
            }
            dst.copy_from_slice(data);
            Ok(())
        };
        for (name, dst) in data_out.iter_mut() {
            take(name, dst)?;
        }
        for s in self.states.iter_mut() {
            take(s.spec.output, &mut s.next)?;
        }
        Ok(())
    }

    /// Makes the states of the last run the input of the next.
    fn commit(&mut self) {
        for s in self.states.iter_mut() {
            std::mem::swap(&mut s.cur, &mut s.next);
        }
    }

    fn clear(&mut self) {
        for s in self.states.iter_mut() {
            s.cur.fill(0.0);
            s.next.fill(0.0);
        }
    }
}

/// What one frame of the three graphs produced.
struct ModelOut {
    lsnr: [f32; 1],
    e0: Vec<f32>,
    e1: Vec<f32>,
    e2: Vec<f32>,
    e3: Vec<f32>,
    emb: Vec<f32>,
    c0: Vec<f32>,
    /// ERB gains `[NB_ERB]`.
    gains: Vec<f32>,
    /// DF taps `[NB_DF][DF_ORDER][re, im]`.
    coefs: Vec<f32>,
}

impl ModelOut {
    fn new() -> Self {
        Self {
            lsnr: [0.0],
            e0: vec![0.0; numel(&SHAPE_E0)],
            e1: vec![0.0; numel(&SHAPE_E1)],
            e2: vec![0.0; numel(&SHAPE_E2)],
            e3: vec![0.0; numel(&SHAPE_E3)],
            emb: vec![0.0; numel(&SHAPE_EMB)],
            c0: vec![0.0; numel(&SHAPE_C0)],
            gains: vec![0.0; NB_ERB],
            coefs: vec![0.0; NB_DF * DF_ORDER * 2],
        }
    }
}

// ---------------------------------------------------------------------------
// The enhancer
// ---------------------------------------------------------------------------

pub struct Dfn3Enhancer {
    enc: Graph,
    erb_dec: Graph,
    df_dec: Graph,
    device_note: String,
    channels: usize,
    stft: VorbisStft,
    norm: FeatureNorm,
    /// `[channel][RING][BINS]` noisy spectra, frame `t - k` in slot
    /// `(head + RING - k) % RING`.
    ring: Vec<Complex32>,
    /// `[RING][BINS]` noisy mid spectra (stereo only; mono uses `ring`).
    ring_mid: Vec<Complex32>,
    head: usize,
    /// Sanitised copy of the input hop (only used when it had non-finite values).
    clean_in: Vec<f32>,
    feat_erb: Vec<f32>,
    feat_spec: Vec<f32>,
    out: ModelOut,
    /// The enhanced spectrum of the model signal (frame `t - 2`).
    enh: Vec<Complex32>,
    /// Per-bin complex ratio (stereo).
    ratio: Vec<Complex32>,
    out_spec: Vec<Complex32>,
    lsnr: f32,
    atten_lim: Option<f32>,
    post_filter_beta: f32,
    silent_hops: usize,
    faults: u64,
}

/// Reads `key = value` pairs of one section of an INI file.
fn ini_value<'a>(text: &'a str, section: &str, key: &str) -> Option<&'a str> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_section = &line[1..line.len() - 1] == section;
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == key {
                    return Some(v.trim());
                }
            }
        }
    }
    None
}

/// Checks that the model's config.ini describes the model this code was
/// written for.
fn check_config(path: &Path) -> Result<(), RuntimeError> {
    let bad = |reason: String| RuntimeError::ModelSignature { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::ModelCorrupt { path: path.to_path_buf(), reason: e.to_string() })?;
    let expect: [(&str, &str, f64); 12] = [
        ("df", "sr", SAMPLE_RATE as f64),
        ("df", "fft_size", N_FFT as f64),
        ("df", "hop_size", HOP as f64),
        ("df", "nb_erb", NB_ERB as f64),
        ("df", "nb_df", NB_DF as f64),
        ("df", "df_order", DF_ORDER as f64),
        ("df", "df_lookahead", DF_LOOKAHEAD as f64),
        ("df", "min_nb_erb_freqs", MIN_NB_ERB_FREQS as f64),
        ("df", "norm_tau", NORM_TAU as f64),
        ("df", "lsnr_min", LSNR_MIN as f64),
        ("df", "lsnr_max", LSNR_MAX as f64),
        ("deepfilternet", "conv_lookahead", CONV_LOOKAHEAD as f64),
    ];
    for (section, key, want) in expect {
        let got = ini_value(&text, section, key).ok_or_else(|| bad(format!("[{section}] {key} missing")))?;
        let v: f64 = got.parse().map_err(|_| bad(format!("[{section}] {key} = {got} is not a number")))?;
        if v != want {
            return Err(bad(format!("[{section}] {key} = {got}, this build supports {want}")));
        }
    }
    match ini_value(&text, "train", "model") {
        Some("deepfilternet3") => Ok(()),
        other => Err(bad(format!("[train] model = {other:?}, expected deepfilternet3"))),
    }
}

impl Dfn3Enhancer {
    /// `dir`: the folder with the prepared streaming graphs ([`ENC_FILE`],
    /// [`ERB_DEC_FILE`], [`DF_DEC_FILE`]) and [`CONFIG_FILE`], or a model
    /// folder holding them in `stream/`. `atten_lim_db`: the most the noise
    /// may be attenuated, in dB (100 or more: no limit).
    pub fn load(dir: &Path, channels: usize, device: Device, atten_lim_db: f32) -> Result<Self, RuntimeError> {
        assert!(channels > 0, "at least one channel");
        let dir = if !dir.join(ENC_FILE).is_file() && dir.join("stream").join(ENC_FILE).is_file() { dir.join("stream") } else { dir.to_path_buf() };
        if !dir.join(ENC_FILE).is_file() {
            return Err(RuntimeError::ModelCorrupt {
                path: dir.join(ENC_FILE),
                reason: "the DeepFilterNet3 streaming graphs are missing (made by xtask/py/prepare_dfn3.py)".into(),
            });
        }
        check_config(&dir.join(CONFIG_FILE))?;
        let (enc, note) = Graph::open(&dir.join(ENC_FILE), device, &ENC_STATES, &["feat_erb", "feat_spec"], &["e0", "e1", "e2", "e3", "emb", "c0", "lsnr"])?;
        let (erb_dec, _) = Graph::open(&dir.join(ERB_DEC_FILE), device, &ERB_DEC_STATES, &["emb", "e3", "e2", "e1", "e0"], &["m"])?;
        let (df_dec, _) = Graph::open(&dir.join(DF_DEC_FILE), device, &DF_DEC_STATES, &["emb", "c0"], &["coefs"])?;
        let mut s = Self {
            enc,
            erb_dec,
            df_dec,
            device_note: note,
            channels,
            stft: VorbisStft::new(channels),
            norm: FeatureNorm::new(),
            ring: vec![Complex32::default(); channels * RING * BINS],
            ring_mid: vec![Complex32::default(); if channels > 1 { RING * BINS } else { 0 }],
            head: 0,
            clean_in: vec![0.0; channels * HOP],
            feat_erb: vec![0.0; NB_ERB],
            feat_spec: vec![0.0; 2 * NB_DF],
            out: ModelOut::new(),
            enh: vec![Complex32::default(); BINS],
            ratio: vec![Complex32::default(); BINS],
            out_spec: vec![Complex32::default(); BINS],
            lsnr: LSNR_MIN,
            atten_lim: atten_lim_factor(atten_lim_db),
            post_filter_beta: 0.0,
            silent_hops: 0,
            faults: 0,
        };
        // One frame proves the graphs really run with these shapes.
        if let Err(reason) = s.infer() {
            let path = [&s.enc, &s.erb_dec, &s.df_dec].iter().map(|g| g.path.display().to_string()).collect::<Vec<_>>().join(", ");
            return Err(RuntimeError::ModelSignature { path: PathBuf::from(path), reason });
        }
        s.reset();
        Ok(s)
    }

    /// The local SNR (dB, -15..35) the model estimated for the last hop.
    pub fn lsnr(&self) -> f32 {
        self.lsnr
    }

    /// Sets the attenuation limit in dB (100 or more: none; 0: no reduction).
    pub fn set_atten_lim_db(&mut self, db: f32) {
        self.atten_lim = atten_lim_factor(db);
    }

    /// Post-filter strength (DeepFilterNet suggests 0..0.05); 0 turns it off.
    pub fn set_post_filter_beta(&mut self, beta: f32) {
        self.post_filter_beta = if beta.is_finite() { beta.max(0.0) } else { 0.0 };
    }

    /// Runs the three graphs on the current features into `self.out`
    /// (states go to `next`, not committed).
    fn infer(&mut self) -> Result<(), String> {
        let o = &mut self.out;
        self.enc.run(
            &[("feat_erb", &SHAPE_FEAT_ERB, &self.feat_erb), ("feat_spec", &SHAPE_FEAT_SPEC, &self.feat_spec)],
            &mut [
                ("e0", &mut o.e0),
                ("e1", &mut o.e1),
                ("e2", &mut o.e2),
                ("e3", &mut o.e3),
                ("emb", &mut o.emb),
                ("c0", &mut o.c0),
                ("lsnr", &mut o.lsnr),
            ],
        )?;
        self.erb_dec.run(
            &[("emb", &SHAPE_EMB, &o.emb), ("e3", &SHAPE_E3, &o.e3), ("e2", &SHAPE_E2, &o.e2), ("e1", &SHAPE_E1, &o.e1), ("e0", &SHAPE_E0, &o.e0)],
            &mut [("m", &mut o.gains)],
        )?;
        self.df_dec.run(&[("emb", &SHAPE_EMB, &o.emb), ("c0", &SHAPE_C0, &o.c0)], &mut [("coefs", &mut o.coefs)])?;
        Ok(())
    }

    fn clear_model_state(&mut self) {
        self.enc.clear();
        self.erb_dec.clear();
        self.df_dec.clear();
    }

    fn slot(&self, frames_ago: usize) -> usize {
        (self.head + RING - frames_ago) % RING
    }

    /// The model signal's noisy spectrum `frames_ago` frames back.
    fn model_frame(&self, frames_ago: usize) -> &[Complex32] {
        let s = self.slot(frames_ago);
        if self.channels == 1 {
            &self.ring[s * BINS..(s + 1) * BINS]
        } else {
            &self.ring_mid[s * BINS..(s + 1) * BINS]
        }
    }

    /// Writes the enhanced model spectrum of frame `t - LOOKAHEAD` into
    /// `self.enh` (before the attenuation limit).
    fn enhance(&mut self, apply_gains: bool, zero_gains: bool, apply_df: bool) {
        let mut enh = std::mem::take(&mut self.enh);
        enh.copy_from_slice(self.model_frame(LOOKAHEAD));
        if apply_gains || zero_gains {
            let mut start = 0;
            for (b, &w) in self.norm.widths.iter().enumerate() {
                let g = if apply_gains { self.out.gains[b] } else { 0.0 };
                for c in &mut enh[start..start + w] {
                    *c *= g;
                }
                start += w;
            }
        }
        if apply_df {
            enh[..NB_DF].fill(Complex32::default());
            for i in 0..DF_ORDER {
                // Tap i looks at frame t - (DF_ORDER - 1) + i.
                let x = self.model_frame(DF_ORDER - 1 - i);
                for (f, (o, s)) in enh[..NB_DF].iter_mut().zip(&x[..NB_DF]).enumerate() {
                    let k = (f * DF_ORDER + i) * 2;
                    *o += s * Complex32::new(self.out.coefs[k], self.out.coefs[k + 1]);
                }
            }
        }
        if apply_gains && self.post_filter_beta > 0.0 {
            post_filter(self.model_frame(LOOKAHEAD), &mut enh, self.post_filter_beta);
        }
        self.enh = enh;
    }

    /// Writes the output hop of every channel from `self.enh` (or, when
    /// `dry`, the noisy frame `t - LOOKAHEAD`).
    fn synthesize(&mut self, output: &mut [f32], dry: bool) {
        let c = self.channels;
        let lim = if dry { Some(1.0) } else { self.atten_lim };
        let s = self.slot(LOOKAHEAD);
        if c > 1 && !dry {
            let mid = &self.ring_mid[s * BINS..(s + 1) * BINS];
            for ((r, e), m) in self.ratio.iter_mut().zip(&self.enh).zip(mid) {
                let p = m.norm_sqr();
                *r = if p > RATIO_FLOOR { e * m.conj() / p } else { Complex32::default() };
                let mag = r.norm();
                if mag > 1.0 {
                    *r /= mag;
                }
            }
        }
        for ch in 0..c {
            let noisy = &self.ring[(ch * RING + s) * BINS..(ch * RING + s + 1) * BINS];
            if c == 1 {
                self.out_spec.copy_from_slice(&self.enh);
            } else if !dry {
                for ((o, x), r) in self.out_spec.iter_mut().zip(noisy).zip(&self.ratio) {
                    *o = x * r;
                }
            }
            match lim {
                Some(l) if l >= 1.0 => self.out_spec.copy_from_slice(noisy),
                Some(l) => {
                    for (o, x) in self.out_spec.iter_mut().zip(noisy) {
                        *o = *o * (1.0 - l) + x * l;
                    }
                }
                None => {}
            }
            self.stft.synthesize(ch, &mut self.out_spec, &mut output[ch * HOP..(ch + 1) * HOP]);
        }
    }
}

impl HopModel for Dfn3Enhancer {
    fn name(&self) -> &str {
        "DeepFilterNet3"
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
    fn device_note(&self) -> &str {
        &self.device_note
    }
    fn speech_to_noise_db(&self) -> Option<f32> {
        Some(self.lsnr)
    }
    /// 0..1 maps linearly to the post-filter's beta 0..[`POST_FILTER_BETA_MAX`].
    fn set_post_filter(&mut self, strength: f32) {
        let s = if strength.is_finite() { strength.clamp(0.0, 1.0) } else { 0.0 };
        self.set_post_filter_beta(s * POST_FILTER_BETA_MAX);
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let c = self.channels;
        let input = if all_finite(&input[..c * HOP]) {
            input
        } else {
            for (d, s) in self.clean_in.iter_mut().zip(input) {
                *d = if s.is_finite() { *s } else { 0.0 };
            }
            &self.clean_in[..]
        };

        // Digital silence: after a few silent hops, mute and freeze.
        let mut sum_sq = 0.0f32;
        for i in 0..HOP {
            let mut m = 0.0f32;
            for ch in 0..c {
                m += input[ch * HOP + i];
            }
            let m = m / c as f32;
            sum_sq += m * m;
        }
        if sum_sq / (HOP as f32) < SILENCE_MEAN_SQUARE {
            self.silent_hops += 1;
        } else {
            self.silent_hops = 0;
        }
        if self.silent_hops > SILENT_HOPS_BEFORE_MUTE {
            // Same work as any hop, nothing kept.
            let _ = self.infer();
            output[..c * HOP].fill(0.0);
            self.lsnr = LSNR_MIN;
            return;
        }

        // Newest spectra into the rings.
        self.head = (self.head + 1) % RING;
        let h = self.head;
        for ch in 0..c {
            let spec = &mut self.ring[(ch * RING + h) * BINS..(ch * RING + h + 1) * BINS];
            self.stft.analyze(ch, &input[ch * HOP..(ch + 1) * HOP], spec);
        }
        if c > 1 {
            let inv_c = 1.0 / c as f32;
            let (ring, mid) = (&self.ring, &mut self.ring_mid[h * BINS..(h + 1) * BINS]);
            for (k, m) in mid.iter_mut().enumerate() {
                let mut sum = Complex32::default();
                for ch in 0..c {
                    sum += ring[(ch * RING + h) * BINS + k];
                }
                *m = sum * inv_c;
            }
        }

        let spec = if c == 1 { &self.ring[h * BINS..(h + 1) * BINS] } else { &self.ring_mid[h * BINS..(h + 1) * BINS] };
        self.norm.compute(spec, &mut self.feat_erb, &mut self.feat_spec);

        let result = if all_finite(&self.feat_erb) && all_finite(&self.feat_spec) { self.infer() } else { Err("non-finite features".to_string()) };
        match result {
            Ok(()) => {
                let lsnr = self.out.lsnr[0];
                let (apply_gains, zero_gains, apply_df) = stages(lsnr);
                // A stage the reference does not run keeps its old state.
                self.enc.commit();
                if apply_gains {
                    self.erb_dec.commit();
                }
                if apply_df {
                    self.df_dec.commit();
                }
                if apply_gains || zero_gains {
                    self.silent_hops = 0;
                } else {
                    self.silent_hops += 1;
                }
                self.lsnr = lsnr;
                self.enhance(apply_gains, zero_gains, apply_df);
                self.synthesize(output, false);
            }
            Err(reason) => {
                self.faults += 1;
                if self.faults <= 3 {
                    log::warn!("DeepFilterNet3 hop failed ({reason}); passing dry and resetting state");
                }
                self.clear_model_state();
                if !self.norm.is_finite() {
                    self.norm.reset();
                }
                self.synthesize(output, true);
            }
        }
    }

    fn reset(&mut self) {
        self.stft.reset();
        self.norm.reset();
        self.ring.fill(Complex32::default());
        self.ring_mid.fill(Complex32::default());
        self.head = 0;
        self.clear_model_state();
        self.lsnr = LSNR_MIN;
        self.silent_hops = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erb_bands_cover_every_bin_once() {
        let w = erb_band_widths(48000, 960, 32, 2);
        assert_eq!(w.len(), 32);
        assert_eq!(w.iter().sum::<usize>(), BINS);
        assert!(w.iter().all(|&x| x >= 2), "{w:?}");
        // Band widths never shrink going up in frequency.
        assert!(w.windows(2).all(|p| p[0] <= p[1]), "{w:?}");
    }

    #[test]
    fn norm_alpha_for_one_second() {
        assert_eq!(norm_alpha(48000, 480, 1.0), 0.99);
    }

    #[test]
    fn vorbis_stft_round_trip_is_a_pure_delay() {
        let mut stft = VorbisStft::new(1);
        let total = HOP * 30;
        let x: Vec<f32> = (0..total).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let mut y = vec![0.0f32; total];
        let mut spec = vec![Complex32::default(); BINS];
        for k in 0..total / HOP {
            stft.analyze(0, &x[k * HOP..(k + 1) * HOP], &mut spec);
            stft.synthesize(0, &mut spec, &mut y[k * HOP..(k + 1) * HOP]);
        }
        let d = N_FFT - HOP;
        for i in N_FFT..total {
            assert!((y[i] - x[i - d]).abs() < 1e-5, "i={i} {} vs {}", y[i], x[i - d]);
        }
    }

    #[test]
    fn post_filter_only_attenuates_and_leaves_unit_gain_alone() {
        let noisy = vec![Complex32::new(1.0, 0.0); 9];
        let mut enh: Vec<Complex32> = (0..9).map(|k| Complex32::new(k as f32 / 8.0, 0.0)).collect();
        enh[8] = Complex32::new(0.5, 0.0);
        let before = enh.clone();
        post_filter(&noisy, &mut enh, 0.02);
        for k in 1..7 {
            assert!(enh[k].norm() < before[k].norm(), "bin {k}");
        }
        assert!((enh[7].norm() - before[7].norm()).abs() < 1e-3, "near unit gain it is almost transparent");
        assert_eq!(enh[8], before[8], "the trailing partial block is untouched");
    }

    #[test]
    fn stage_gating_follows_the_thresholds() {
        assert_eq!(stages(-20.0), (false, true, false));
        assert_eq!(stages(0.0), (true, false, true));
        assert_eq!(stages(36.0), (false, false, false));
        assert_eq!(DELAY, 1440);
    }
}
