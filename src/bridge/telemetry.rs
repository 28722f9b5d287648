//! What the bridge tells the rest of the plugin: state, underruns, worker
//! load and a status line. Atomics are written by the audio and worker
//! threads and read anywhere; the status text is only touched off the audio
//! thread.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WorkerState {
    /// Loading the model; the audio thread passes latency-aligned dry audio.
    Loading = 0,
    /// Processing.
    Running = 1,
    /// The model could not be loaded; dry audio, status says why.
    Failed = 2,
    /// Shut down.
    Stopped = 3,
}

#[derive(Default)]
pub struct Telemetry {
    state: AtomicU8,
    /// Times the worker was late and the output faded to dry.
    underrun_events: AtomicU64,
    /// Output frames that were dry because the worker was late.
    underrun_frames: AtomicU64,
    /// Worker real-time factor (processing time / audio time), f32 bits.
    worker_rtf: AtomicU32,
    /// Hops where the model failed or went non-finite and was reset.
    model_faults: AtomicU64,
    /// Input samples that were NaN/Inf/huge and were sanitized.
    sanitized_samples: AtomicU64,
    latency_samples: AtomicU32,
    /// The model's speech-to-noise estimate in dB (f32 bits; NaN = none).
    speech_to_noise: AtomicU32,
    /// Post-filter strength asked for by the user (f32 bits), read by the worker.
    post_filter: AtomicU32,
    /// Voice-conversion controls (f32 bits of strength and transpose, the
    /// speaker id), read by the worker; unset until the first write.
    conversion: [AtomicU32; 3],
    conversion_set: AtomicBool,
    status: Mutex<String>,
    /// Offline renders wait for the worker, so a slow one is never "late".
    offline: AtomicBool,
}

impl Telemetry {
    pub fn state(&self) -> WorkerState {
        match self.state.load(Ordering::Acquire) {
            1 => WorkerState::Running,
            2 => WorkerState::Failed,
            3 => WorkerState::Stopped,
            _ => WorkerState::Loading,
        }
    }
    pub fn set_state(&self, s: WorkerState) {
        self.state.store(s as u8, Ordering::Release);
    }
    pub fn add_underrun(&self, frames: u64, new_event: bool) {
        if new_event {
            self.underrun_events.fetch_add(1, Ordering::Relaxed);
        }
        self.underrun_frames.fetch_add(frames, Ordering::Relaxed);
    }
    pub fn underrun_events(&self) -> u64 {
        self.underrun_events.load(Ordering::Relaxed)
    }
    pub fn underrun_frames(&self) -> u64 {
        self.underrun_frames.load(Ordering::Relaxed)
    }
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::Relaxed);
    }
    pub fn set_worker_rtf(&self, rtf: f32) {
        self.worker_rtf.store(rtf.to_bits(), Ordering::Relaxed);
    }
    pub fn worker_rtf(&self) -> f32 {
        f32::from_bits(self.worker_rtf.load(Ordering::Relaxed))
    }
    pub fn set_model_faults(&self, n: u64) {
        self.model_faults.store(n, Ordering::Relaxed);
    }
    pub fn model_faults(&self) -> u64 {
        self.model_faults.load(Ordering::Relaxed)
    }
    pub fn add_sanitized(&self, n: u64) {
        if n > 0 {
            self.sanitized_samples.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub fn sanitized_samples(&self) -> u64 {
        self.sanitized_samples.load(Ordering::Relaxed)
    }
    pub fn set_speech_to_noise(&self, db: Option<f32>) {
        self.speech_to_noise.store(db.unwrap_or(f32::NAN).to_bits(), Ordering::Relaxed);
    }
    pub fn speech_to_noise(&self) -> Option<f32> {
        let v = f32::from_bits(self.speech_to_noise.load(Ordering::Relaxed));
        (!v.is_nan()).then_some(v)
    }
    /// Audio thread (from the parameter) or main thread.
    pub fn set_post_filter(&self, strength: f32) {
        self.post_filter.store(strength.to_bits(), Ordering::Relaxed);
    }
    pub fn post_filter(&self) -> f32 {
        f32::from_bits(self.post_filter.load(Ordering::Relaxed))
    }
    /// Audio thread (from the parameters) or main thread.
    pub fn set_conversion(&self, c: crate::pipelines::ConversionControls) {
        self.conversion[0].store(c.strength.to_bits(), Ordering::Relaxed);
        self.conversion[1].store(c.transpose_semitones.to_bits(), Ordering::Relaxed);
        self.conversion[2].store(c.speaker_id.clamp(0, u32::MAX as i64) as u32, Ordering::Relaxed);
        self.conversion_set.store(true, Ordering::Release);
    }
    pub fn conversion(&self) -> crate::pipelines::ConversionControls {
        if !self.conversion_set.load(Ordering::Acquire) {
            return Default::default();
        }
        crate::pipelines::ConversionControls {
            strength: f32::from_bits(self.conversion[0].load(Ordering::Relaxed)),
            transpose_semitones: f32::from_bits(self.conversion[1].load(Ordering::Relaxed)),
            speaker_id: self.conversion[2].load(Ordering::Relaxed) as i64,
        }
    }
    pub fn set_latency(&self, samples: u32) {
        self.latency_samples.store(samples, Ordering::Relaxed);
    }
    pub fn latency(&self) -> u32 {
        self.latency_samples.load(Ordering::Relaxed)
    }
    /// Main/worker thread only.
    pub fn set_status(&self, text: impl Into<String>) {
        *self.status.lock() = text.into();
    }
    /// Main/worker thread only: a line a host or the CLI can show.
    pub fn status_line(&self) -> String {
        let mut line = self.status.lock().clone();
        // A worker slower than real time can never catch up: say so, even
        // before any underrun has been counted (the output is aligned dry).
        let rtf = self.worker_rtf();
        if rtf > 1.0 && self.state() == WorkerState::Running && !self.offline.load(Ordering::Relaxed) {
            line.push_str(&format!(" | cannot keep up on this machine: real-time factor {rtf:.2}, passing aligned dry audio"));
        }
        let u = self.underrun_events();
        if u > 0 {
            line.push_str(&format!(" | {u} underruns ({} frames dry)", self.underrun_frames()));
        }
        line
    }
}
