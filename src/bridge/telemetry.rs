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
    /// Levels of the last meter window (f32 bits), published by the audio
    /// thread ([`LevelMeter`]) and read by editors.
    levels: [AtomicU32; 4],
    level_windows: AtomicU64,
    /// The latency plan of the current activation and its sample rate
    /// (main thread writes at activation, editors read).
    latency_plan: Mutex<Option<(crate::bridge::LatencyPlan, f32)>>,
    /// Speaker-embedding cosine of the recent output to the target voice,
    /// and of the recent input to it (f32 bits, read only when `_known`).
    similarity: [AtomicU32; 2],
    similarity_known: [AtomicBool; 2],
}

/// One window of levels, linear (not dB).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    pub input_peak: f32,
    pub output_peak: f32,
    /// RMS of the latency-aligned dry input and of the output: their ratio
    /// is what the plugin removed (or added) at this moment.
    pub aligned_dry_rms: f32,
    pub output_rms: f32,
}

/// Audio thread: accumulates levels over windows of about 30 ms and
/// publishes each finished window to the telemetry (a few atomic stores;
/// no allocation, no lock).
#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    window: usize,
    frames: usize,
    out_frames: usize,
    input_peak: f32,
    output_peak: f32,
    dry_energy: f64,
    output_energy: f64,
}

impl LevelMeter {
    pub fn new(sample_rate: f32) -> Self {
        Self { window: ((sample_rate * 0.03) as usize).max(1), ..Default::default() }
    }

    /// One frame of input (raw) and aligned dry, any number of channels.
    #[inline]
    pub fn input_sample(&mut self, raw: f32, aligned_dry: f32) {
        self.input_peak = self.input_peak.max(raw.abs());
        self.dry_energy += (aligned_dry * aligned_dry) as f64;
    }

    #[inline]
    pub fn input_frames(&mut self, frames: usize) {
        self.frames += frames;
    }

    /// What finally leaves the plugin (after every gain stage).
    pub fn output(&mut self, audio: &[&mut [f32]]) {
        let mut frames = 0;
        for ch in audio {
            frames = frames.max(ch.len());
            for &x in ch.iter() {
                self.output_peak = self.output_peak.max(x.abs());
                self.output_energy += (x * x) as f64;
            }
        }
        self.out_frames += frames;
    }

    /// Publishes the window once it is full (call after `output`).
    pub fn publish(&mut self, telemetry: &Telemetry, channels: usize) {
        if self.frames < self.window || self.out_frames < self.window {
            return;
        }
        let n = (self.frames.max(1) * channels.max(1)) as f64;
        let m = (self.out_frames.max(1) * channels.max(1)) as f64;
        let levels = Levels {
            input_peak: self.input_peak,
            output_peak: self.output_peak,
            aligned_dry_rms: (self.dry_energy / n).sqrt() as f32,
            output_rms: (self.output_energy / m).sqrt() as f32,
        };
        telemetry.publish_levels(levels);
        *self = Self { window: self.window, ..Default::default() };
    }
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
    /// Audio thread (through [`LevelMeter`]).
    pub fn publish_levels(&self, l: Levels) {
        for (slot, v) in self.levels.iter().zip([l.input_peak, l.output_peak, l.aligned_dry_rms, l.output_rms]) {
            slot.store(v.to_bits(), Ordering::Relaxed);
        }
        self.level_windows.fetch_add(1, Ordering::Release);
    }

    /// The last published window, and how many have been published (an
    /// editor sees whether audio is flowing at all).
    pub fn levels(&self) -> (Levels, u64) {
        let n = self.level_windows.load(Ordering::Acquire);
        let v = |i: usize| f32::from_bits(self.levels[i].load(Ordering::Relaxed));
        (Levels { input_peak: v(0), output_peak: v(1), aligned_dry_rms: v(2), output_rms: v(3) }, n)
    }

    /// Main thread (activation).
    pub fn set_latency_plan(&self, plan: crate::bridge::LatencyPlan, sample_rate: f32) {
        *self.latency_plan.lock() = Some((plan, sample_rate));
    }

    /// GUI/main thread: the plan of the current activation, with its rate.
    pub fn latency_plan(&self) -> Option<(crate::bridge::LatencyPlan, f32)> {
        *self.latency_plan.lock()
    }

    /// Similarity thread: cosine of the recent output (and input) to the
    /// target voice; `None` = not measured.
    pub fn set_similarity(&self, output: Option<f32>, input: Option<f32>) {
        for (i, v) in [output, input].into_iter().enumerate() {
            self.similarity[i].store(v.unwrap_or(0.0).to_bits(), Ordering::Relaxed);
            self.similarity_known[i].store(v.is_some_and(f32::is_finite), Ordering::Release);
        }
    }

    pub fn similarity(&self) -> (Option<f32>, Option<f32>) {
        let v = |i: usize| self.similarity_known[i].load(Ordering::Acquire).then(|| f32::from_bits(self.similarity[i].load(Ordering::Relaxed)));
        (v(0), v(1))
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
        match (u, self.underrun_frames()) {
            (0, _) => {}
            (u, 0) => line.push_str(&format!(" | {u} late hops, all within the fade reserve")),
            (u, f) => line.push_str(&format!(" | {u} underruns ({f} frames dry)")),
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_meter_publishes_whole_windows() {
        let t = Telemetry::default();
        let mut m = LevelMeter::new(1000.0); // 30-frame windows
        let mut out_l = vec![0.25f32; 20];
        let mut out_r = vec![-0.25f32; 20];
        for block in 0..2 {
            for i in 0..20 {
                m.input_sample(if i == 3 { -0.9 } else { 0.5 }, 0.5);
                m.input_sample(0.1, 0.5);
            }
            m.input_frames(20);
            m.output(&[&mut out_l[..], &mut out_r[..]]);
            m.publish(&t, 2);
            let (l, windows) = t.levels();
            if block == 0 {
                assert_eq!(windows, 0, "20 of 30 frames: nothing yet");
            } else {
                assert_eq!(windows, 1);
                assert_eq!(l.input_peak, 0.9);
                assert_eq!(l.output_peak, 0.25);
                assert!((l.aligned_dry_rms - 0.5).abs() < 1e-6 && (l.output_rms - 0.25).abs() < 1e-6, "{l:?}");
            }
        }
        // The next window starts from zero.
        m.input_frames(40);
        m.output(&[&mut vec![0.0f32; 40][..]]);
        m.publish(&t, 1);
        assert_eq!(t.levels().0.output_peak, 0.0);
    }

    #[test]
    fn similarity_is_unknown_until_measured() {
        let t = Telemetry::default();
        assert_eq!(t.similarity(), (None, None));
        t.set_similarity(Some(0.8), None);
        assert_eq!(t.similarity(), (Some(0.8), None));
        t.set_similarity(Some(f32::NAN), Some(0.1));
        assert_eq!(t.similarity(), (None, Some(0.1)));
    }
}
