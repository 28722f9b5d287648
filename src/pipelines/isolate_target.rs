//! Target-speaker isolation ("keep this voice, remove the others"), 16 kHz,
//! with Manifold's own model (`models/isolate_target`, trained by
//! `cargo xtask train-isolation`, see `xtask/py/train_isolation.py`).
//! Worker thread (loading: main/worker thread).
//!
//! # Signal path
//! Every hop of [`HOP`] = 160 samples (10 ms): the newest [`WINDOW`] = 480
//! samples times a periodic sqrt-Hann window, a 480-point real FFT (241
//! bins). The model reads the magnitudes of the mid signal and the target's
//! speaker embedding (from [`super::speaker_embedder`]) and gives a mask in
//! [0, 1] per bin; its two GRU layers carry their state from frame to frame
//! (`state` -> `state_out`), so it is causal and never looks ahead. Each
//! channel's spectrum is multiplied by the mask, inverted, windowed again and
//! overlap-added; the squared windows of the 3 frames over a sample sum to
//! exactly 1.5, which the synthesis divides out. Unmasked frames therefore
//! rebuild the input exactly, so switching the model in or out (no target,
//! a failed frame) cross-fades over 3 hops on its own.
//!
//! # Delay
//! [`DELAY`] = WINDOW - HOP = 320 samples (20 ms): a sample leaves once the
//! last frame that covers it has been added.
//!
//! # Stems and channels
//! Output planes are stem-major: `[target L.., target R..][others L.., others R..]`,
//! `others` = the input delayed by [`DELAY`] minus `target`. Stereo is linked:
//! the model hears the mid signal and its mask applies to both channels, so a
//! panned voice stays where it is.
//!
//! # Without a target
//! Until [`HopModel::set_target_embedding`] gets an embedding (and after it
//! gets an empty slice), `target` is the input delayed by [`DELAY`], exactly,
//! and `others` is zero; the model does not run. A new embedding restarts the
//! model's state but keeps the audio history, so the output stays continuous.

use super::speaker_embedder::EMBEDDING_DIM;
use super::HopModel;
use crate::dsp::sanitize::{all_finite, sanitize_sample};
use crate::runtime::onnx::{open_session, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::path::Path;
use std::sync::Arc;

/// The model's sample rate.
pub const SAMPLE_RATE: u32 = 16000;
/// Samples per hop (10 ms).
pub const HOP: usize = 160;
/// Analysis/synthesis window and FFT length (30 ms).
pub const WINDOW: usize = 480;
/// Frequency bins.
pub const BINS: usize = WINDOW / 2 + 1;
/// Hop-synchronous delay, in model samples.
pub const DELAY: usize = WINDOW - HOP;
/// The model id in the store, and its file.
pub const MODEL_ID: &str = "isolate_target";
pub const MODEL_FILE: &str = "isolate_target.onnx";
/// Units per GRU layer of the committed model.
pub const HIDDEN: usize = 256;
const LAYERS: usize = 2;
/// Frames that overlap each output sample.
const OVERLAP: usize = WINDOW / HOP;
/// Sum of the squared synthesis x analysis windows over the frames covering a sample.
const OLA_GAIN: f32 = 1.5;
const INPUTS: [&str; 3] = ["magnitude", "embedding", "state"];
const OUTPUTS: [&str; 2] = ["mask", "state_out"];

// ---------------------------------------------------------------- mask model I/O

/// Everything the mask model reads and writes for one frame.
struct MaskIo {
    magnitude: Vec<f32>,
    embedding: Vec<f32>,
    state: Vec<f32>,
    mask: Vec<f32>,
}

impl MaskIo {
    fn new() -> Self {
        Self {
            magnitude: vec![0.0; BINS],
            embedding: vec![0.0; EMBEDDING_DIM],
            state: vec![0.0; LAYERS * HIDDEN],
            mask: vec![1.0; BINS],
        }
    }
}

/// Runs one frame: `magnitude`, `embedding`, `state` in; `mask`, `state`
/// out (all finite, or an error).
trait MaskModel: Send {
    fn run(&mut self, io: &mut MaskIo) -> Result<(), String>;
}

struct OrtMask {
    session: Session,
}

impl MaskModel for OrtMask {
    fn run(&mut self, io: &mut MaskIo) -> Result<(), String> {
        let e = |e: ort::Error| e.to_string();
        let magnitude = TensorRef::from_array_view(([1usize, BINS], &io.magnitude[..])).map_err(e)?;
        let embedding = TensorRef::from_array_view(([1usize, EMBEDDING_DIM], &io.embedding[..])).map_err(e)?;
        let state = TensorRef::from_array_view(([LAYERS, 1, HIDDEN], &io.state[..])).map_err(e)?;
        let outputs = self.session.run(ort::inputs!["magnitude" => magnitude, "embedding" => embedding, "state" => state]).map_err(e)?;
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
        take("mask", &mut io.mask)?;
        take("state_out", &mut io.state)
    }
}

// ---------------------------------------------------------------- the isolator's DSP

/// Everything but the ONNX session: framing, mask application, overlap-add,
/// states. Allocates only in `new`.
struct Core {
    channels: usize,
    /// Periodic sqrt-Hann (analysis and synthesis).
    window: Vec<f32>,
    /// `window^2 / OLA_GAIN`: an unmodified frame as the synthesis sees it.
    dry_weight: Vec<f32>,
    fwd: Arc<dyn RealToComplex<f32>>,
    inv: Arc<dyn ComplexToReal<f32>>,
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
    io: MaskIo,
    has_target: bool,
    /// Hops until the accumulator holds only unmodified frames again.
    dirty: usize,
    faults: u64,
}

impl Core {
    fn new(channels: usize) -> Self {
        assert!(channels > 0, "at least one channel");
        let window: Vec<f32> =
            (0..WINDOW).map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / WINDOW as f64).cos()).sqrt() as f32).collect();
        let dry_weight = window.iter().map(|w| w * w / OLA_GAIN).collect();
        let mut planner = RealFftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(WINDOW);
        let inv = planner.plan_fft_inverse(WINDOW);
        let scratch = fwd.get_scratch_len().max(inv.get_scratch_len());
        Self {
            channels,
            window,
            dry_weight,
            fwd,
            inv,
            history: vec![0.0; channels * WINDOW],
            ola: vec![0.0; channels * WINDOW],
            spectra: vec![Complex32::default(); channels * BINS],
            mid: vec![Complex32::default(); BINS],
            time: vec![0.0; WINDOW],
            spec: vec![Complex32::default(); BINS],
            fft_scratch: vec![Complex32::default(); scratch],
            io: MaskIo::new(),
            has_target: false,
            dirty: 0,
            faults: 0,
        }
    }

    fn reset_model_state(&mut self) {
        self.io.state.fill(0.0);
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
            log::warn!("isolation: ignoring a target embedding of {} values (needs {EMBEDDING_DIM} finite values)", embedding.len());
        } else {
            self.io.embedding.copy_from_slice(embedding);
            self.has_target = true;
            self.reset_model_state();
        }
    }

    /// Windowed spectrum of channel `ch`'s newest `WINDOW` samples into `spectra`.
    fn analyze(&mut self, ch: usize) {
        let hist = &self.history[ch * WINDOW..(ch + 1) * WINDOW];
        for ((t, x), w) in self.time.iter_mut().zip(hist).zip(&self.window) {
            *t = x * w;
        }
        let spec = &mut self.spectra[ch * BINS..(ch + 1) * BINS];
        // realfft only fails on wrong lengths, which `new` rules out.
        let _ = self.fwd.process_with_scratch(&mut self.time, spec, &mut self.fft_scratch);
    }

    /// Adds channel `ch`'s unmodified frame to the overlap-add.
    fn add_dry_frame(&mut self, ch: usize) {
        let hist = &self.history[ch * WINDOW..(ch + 1) * WINDOW];
        for ((o, x), w) in self.ola[ch * WINDOW..(ch + 1) * WINDOW].iter_mut().zip(hist).zip(&self.dry_weight) {
            *o += x * w;
        }
    }

    /// Channel `ch`'s spectrum times the mask, inverted, into its overlap-add.
    fn add_masked_frame(&mut self, ch: usize) {
        for ((y, x), m) in self.spec.iter_mut().zip(&self.spectra[ch * BINS..(ch + 1) * BINS]).zip(&self.io.mask) {
            *y = x * *m;
        }
        self.spec[0].im = 0.0;
        self.spec[BINS - 1].im = 0.0;
        let _ = self.inv.process_with_scratch(&mut self.spec, &mut self.time, &mut self.fft_scratch);
        let scale = 1.0 / (WINDOW as f32 * OLA_GAIN);
        for ((o, t), w) in self.ola[ch * WINDOW..(ch + 1) * WINDOW].iter_mut().zip(&self.time).zip(&self.window) {
            *o += t * scale * w;
        }
    }

    /// The accumulator as if it held only unmodified frames (after a bad hop).
    fn rebuild_dry_ola(&mut self) {
        for ch in 0..self.channels {
            let hist = &self.history[ch * WINDOW..(ch + 1) * WINDOW];
            let ola = &mut self.ola[ch * WINDOW..(ch + 1) * WINDOW];
            // After the shift, position i holds sample hist[HOP + i] under the
            // frames that started 0 and 1 hops ago (offsets HOP+i, 2HOP+i).
            for (i, o) in ola.iter_mut().enumerate() {
                *o = (1..OVERLAP).filter(|m| m * HOP + i < WINDOW).map(|m| self.dry_weight[m * HOP + i]).sum::<f32>()
                    * if HOP + i < WINDOW { hist[HOP + i] } else { 0.0 };
            }
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
            for (m, x) in self.io.magnitude.iter_mut().zip(&self.mid) {
                *m = x.norm();
            }
            let ran = model.run(&mut self.io).and_then(|()| if all_finite(&self.io.mask) { Ok(()) } else { Err("non-finite mask".to_string()) });
            match ran {
                Ok(()) => {
                    for m in self.io.mask.iter_mut() {
                        *m = m.clamp(0.0, 1.0);
                    }
                    for ch in 0..c {
                        self.add_masked_frame(ch);
                    }
                    filtered = true;
                }
                Err(reason) => {
                    self.faults += 1;
                    if self.faults <= 3 {
                        log::warn!("isolation hop failed ({reason}); passing dry and resetting state");
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
                t.copy_from_slice(&ola[..HOP]);
            } else {
                // Only unmodified frames: the input itself, bit for bit.
                t.copy_from_slice(dry);
            }
            ola.copy_within(HOP.., 0);
            ola[WINDOW - HOP..].fill(0.0);
        }
        if !all_finite(targets) {
            self.faults += 1;
            log::warn!("isolation produced non-finite audio; passing dry and resetting state");
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

/// Keeps one voice, given its speaker embedding
/// ([`super::speaker_embedder::speaker_embedding`]); see the module
/// documentation for stems, delay and behaviour without a target.
pub struct TargetIsolator {
    core: Core,
    model: OrtMask,
    device_note: String,
}

impl TargetIsolator {
    /// `model_dir`: the installed [`MODEL_ID`] folder (holds [`MODEL_FILE`]).
    /// `channels`: 1 or 2 (more are linked the same way).
    pub fn load(model_dir: &Path, channels: usize, device: Device) -> Result<Self, RuntimeError> {
        assert!(channels > 0, "at least one channel");
        let path = model_dir.join(MODEL_FILE);
        let loaded = open_session(&path, device)?;
        let names_in: Vec<&str> = loaded.session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = loaded.session.outputs().iter().map(|o| o.name()).collect();
        if INPUTS.iter().any(|n| !names_in.contains(n)) || OUTPUTS.iter().any(|n| !names_out.contains(n)) {
            return Err(RuntimeError::ModelSignature {
                path,
                reason: format!("inputs {names_in:?}, outputs {names_out:?}; isolation needs {INPUTS:?} -> {OUTPUTS:?}"),
            });
        }
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

impl HopModel for TargetIsolator {
    fn name(&self) -> &str {
        "Voice isolation"
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
    /// `embedding`: [`EMBEDDING_DIM`] values from the speaker embedder; an
    /// empty slice clears the target (pass-through). Anything else is ignored
    /// with a warning. Does not allocate.
    fn set_target_embedding(&mut self, embedding: &[f32]) {
        self.core.set_target(embedding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A stand-in mask model: a constant mask, or a failure.
    struct FakeMask {
        mask: f32,
        fail_at: Option<usize>,
        nan_at: Option<usize>,
        calls: usize,
    }

    impl FakeMask {
        fn constant(mask: f32) -> Self {
            Self { mask, fail_at: None, nan_at: None, calls: 0 }
        }
    }

    impl MaskModel for FakeMask {
        fn run(&mut self, io: &mut MaskIo) -> Result<(), String> {
            self.calls += 1;
            if Some(self.calls) == self.fail_at {
                return Err("injected failure".into());
            }
            io.mask.fill(self.mask);
            // Something state-like, so a reset is visible.
            io.state.iter_mut().for_each(|v| *v += 1.0);
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

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn a_mask_of_ones_is_a_pure_delay_and_a_half_mask_halves() {
        let n = HOP * 40;
        let x = noise(n, 3);
        for (mask, gain) in [(1.0f32, 1.0f32), (0.5, 0.5), (0.0, 0.0)] {
            let mut core = Core::new(1);
            core.set_target(&unit_embedding());
            let y = run(&mut core, &mut FakeMask::constant(mask), &x);
            let want: Vec<f32> = x[..n - DELAY].iter().map(|v| v * gain).collect();
            // The first frames see the zeros before the input: skip one window.
            let d = max_diff(&y[DELAY + WINDOW..n], &want[WINDOW..]);
            assert!(d < 1e-5, "mask {mask}: max diff {d}");
            // others = delayed input - target
            let others: Vec<f32> = x[WINDOW..n - DELAY].iter().map(|v| v * (1.0 - gain)).collect();
            let d = max_diff(&y[n + DELAY + WINDOW..2 * n], &others);
            assert!(d < 1e-5, "others, mask {mask}: max diff {d}");
        }
    }

    #[test]
    fn without_a_target_the_input_passes_bit_exact_and_the_model_is_idle() {
        let n = HOP * 20;
        let x = noise(2 * n, 5);
        let mut core = Core::new(2);
        let mut model = FakeMask::constant(0.0);
        let y = run(&mut core, &mut model, &x);
        assert_eq!(model.calls, 0);
        for ch in 0..2 {
            assert_eq!(&y[ch * n + DELAY..(ch + 1) * n], &x[ch * n..(ch + 1) * n - DELAY]);
            assert!(y[(2 + ch) * n..(3 + ch) * n].iter().all(|v| *v == 0.0));
        }
        // Setting, then clearing, the target: back to bit-exact after OVERLAP hops.
        core.set_target(&unit_embedding());
        let _ = run(&mut core, &mut FakeMask::constant(0.3), &x);
        core.set_target(&[]);
        let y = run(&mut core, &mut model, &x);
        let start = (OVERLAP + 1) * HOP;
        assert_eq!(&y[start + DELAY..n], &x[start..n - DELAY]);
    }

    #[test]
    fn stereo_is_linked() {
        let n = HOP * 30;
        let mono = noise(n, 9);
        let mut stereo = mono.clone();
        stereo.extend(mono.iter().map(|v| v * 0.5));
        let mut c1 = Core::new(1);
        let mut c2 = Core::new(2);
        c1.set_target(&unit_embedding());
        c2.set_target(&unit_embedding());
        let y1 = run(&mut c1, &mut FakeMask::constant(0.4), &mono);
        let y2 = run(&mut c2, &mut FakeMask::constant(0.4), &stereo);
        assert!(max_diff(&y1[..n], &y2[..n]) < 1e-6);
        let half: Vec<f32> = y1[..n].iter().map(|v| v * 0.5).collect();
        assert!(max_diff(&half, &y2[n..2 * n]) < 1e-6);
    }

    #[test]
    fn faults_pass_dry_and_reset() {
        let n = HOP * 30;
        let x = noise(n, 11);
        for inject in [FakeMask { fail_at: Some(10), ..FakeMask::constant(1.0) }, FakeMask { nan_at: Some(10), ..FakeMask::constant(1.0) }] {
            let mut core = Core::new(1);
            core.set_target(&unit_embedding());
            let mut model = inject;
            let y = run(&mut core, &mut model, &x);
            assert_eq!(core.faults, 1);
            // A mask of ones and a dry frame both rebuild the input: no click.
            let d = max_diff(&y[DELAY + WINDOW..n], &x[WINDOW..n - DELAY]);
            assert!(d < 1e-5, "max diff {d}");
            // The state was reset at the fault: it counts the frames since.
            assert_eq!(core.io.state[0], (30 - 10) as f32);
        }
    }

    #[test]
    fn rebuilt_accumulator_is_the_dry_one() {
        let n = HOP * 12;
        let x = noise(n, 13);
        let mut a = Core::new(1);
        let _ = run(&mut a, &mut FakeMask::constant(1.0), &x);
        let kept = a.ola.clone();
        a.rebuild_dry_ola();
        assert!(max_diff(&kept, &a.ola) < 1e-6);
    }

    #[test]
    fn embeddings_are_checked() {
        let mut core = Core::new(1);
        core.set_target(&[0.1; 3]);
        assert!(!core.has_target);
        let mut bad = unit_embedding();
        bad[4] = f32::NAN;
        core.set_target(&bad);
        assert!(!core.has_target);
        core.set_target(&unit_embedding());
        assert!(core.has_target);
    }

    #[test]
    fn hostile_input_stays_finite() {
        let mut core = Core::new(1);
        core.set_target(&unit_embedding());
        let mut x = noise(HOP * 20, 17);
        x[100] = f32::NAN;
        x[900] = f32::INFINITY;
        x[2000] = 1e30;
        let y = run(&mut core, &mut FakeMask::constant(0.7), &x);
        assert!(y.iter().all(|v| v.is_finite()));
    }

    /// The installed model folder, or `None` (with a message) when
    /// `cargo xtask models isolate_target` has not run.
    fn model_dir() -> Option<PathBuf> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data");
        let dir = data.join("models").join(MODEL_ID);
        let lib = data.join("runtime").join(crate::runtime::store::RUNTIME_LIB_NAME);
        if dir.join(MODEL_FILE).is_file() && lib.is_file() {
            Some(dir)
        } else {
            eprintln!("skipping: {} not installed (run `cargo xtask models isolate_target`)", dir.display());
            None
        }
    }

    #[test]
    fn model_loads_and_passes_through_without_a_target() {
        let Some(dir) = model_dir() else { return };
        let mut m = TargetIsolator::load(&dir, 2, Device::Cpu).unwrap();
        assert_eq!((m.sample_rate(), m.hop(), m.delay(), m.channels(), m.out_channels()), (16000, 160, 320, 2, 4));
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
}
