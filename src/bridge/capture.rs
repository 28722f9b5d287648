//! Recording a target voice from a sidechain input, off the audio thread.
//!
//! The audio thread only pushes samples into a lock-free ring while the
//! user's "capture" switch is on ([`SidechainCapture::process`]). A capture
//! thread collects them; when the switch goes off it hands the recording to
//! the plugin's [`RecordingSink`] (Stems computes a speaker embedding, Voice
//! learns a target voice), which passes the result to the worker and to
//! whoever persists it.

use super::Telemetry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Uses a finished recording: mono audio at a rate (capture thread).
/// Returns a short description for the status line, or why it was refused.
pub type RecordingSink = Arc<dyn Fn(&[f32], u32) -> Result<String, String> + Send + Sync>;

/// The longest recording kept; later audio is ignored.
pub const MAX_CAPTURE_SECONDS: f64 = 60.0;
/// Shorter recordings are refused (the embedding would not be reliable).
pub const MIN_CAPTURE_SECONDS: f64 = 2.0;

pub struct SidechainCapture {
    to_capture: rtrb::Producer<f32>,
    recording: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    was_on: bool,
    thread: Option<JoinHandle<()>>,
}

impl SidechainCapture {
    /// Main thread (activate): starts the capture thread.
    pub fn start(sample_rate: u32, telemetry: Arc<Telemetry>, sink: RecordingSink) -> Self {
        // Two seconds of slack between the audio thread and the collector.
        let (mut to_capture, mut from_audio) = rtrb::RingBuffer::<f32>::new(2 * sample_rate as usize);
        if let Ok(w) = to_capture.write_chunk_uninit(to_capture.slots()) {
            w.fill_from_iter(std::iter::repeat(0.0f32));
        }
        if let Ok(r) = from_audio.read_chunk(from_audio.slots()) {
            r.commit_all();
        }
        let recording = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, stp) = (recording.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("manifold-capture".into())
            .spawn(move || collect(sample_rate, telemetry, sink, from_audio, rec, stp))
            .ok();
        Self { to_capture, recording, stop, was_on: false, thread }
    }

    /// Audio thread: while `on`, records the mono sum of `sidechain`.
    /// Never blocks; audio that does not fit is dropped.
    #[inline]
    pub fn process(&mut self, on: bool, sidechain: &[&[f32]]) {
        if on != self.was_on {
            self.recording.store(on, Ordering::Release);
            self.was_on = on;
        }
        if !on || sidechain.is_empty() {
            return;
        }
        let n = sidechain[0].len();
        let gain = 1.0 / sidechain.len() as f32;
        let room = self.to_capture.slots().min(n);
        if let Ok(w) = self.to_capture.write_chunk_uninit(room) {
            w.fill_from_iter((0..room).map(|i| sidechain.iter().map(|c| c[i]).sum::<f32>() * gain));
        }
    }
}

impl Drop for SidechainCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The capture thread.
fn collect(sample_rate: u32, tele: Arc<Telemetry>, sink: RecordingSink, mut from_audio: rtrb::Consumer<f32>, recording: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let max = (MAX_CAPTURE_SECONDS * sample_rate as f64) as usize;
    let mut audio: Vec<f32> = Vec::new();
    let mut was_recording = false;
    let mut last_report = 0usize;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20));
        let now_recording = recording.load(Ordering::Acquire);
        if now_recording && !was_recording {
            audio.clear();
            last_report = 0;
        }
        let n = from_audio.slots();
        if let Ok(chunk) = from_audio.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            let take = |s: &[f32], audio: &mut Vec<f32>| {
                let room = max.saturating_sub(audio.len());
                audio.extend_from_slice(&s[..s.len().min(room)]);
            };
            take(a, &mut audio);
            take(b, &mut audio);
            chunk.commit_all();
        }
        if now_recording {
            if audio.len() >= last_report + sample_rate as usize / 2 {
                last_report = audio.len();
                tele.set_status(format!("Recording the target voice from the sidechain: {:.1} s (switch capture off to use it)", audio.len() as f64 / sample_rate as f64));
            }
        } else if was_recording {
            let seconds = audio.len() as f64 / sample_rate as f64;
            let peak = audio.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if seconds < MIN_CAPTURE_SECONDS || peak < 1e-4 {
                tele.set_status(format!("Target voice not set: {seconds:.1} s recorded (peak {peak:.4}); record at least {MIN_CAPTURE_SECONDS} s of the voice alone on the sidechain"));
            } else {
                match sink(&audio, sample_rate) {
                    Ok(what) => tele.set_status(format!("Target voice captured from the sidechain ({seconds:.1} s){what}")),
                    Err(e) => tele.set_status(format!("Target voice not set: {e}")),
                }
            }
            audio.clear();
        }
        was_recording = now_recording;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::Telemetry;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn switching_capture_off_enrols_what_was_recorded() {
        let telemetry = Arc::new(Telemetry::default());
        let seen_len = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let (seen, n) = (seen_len.clone(), calls.clone());
        let saved = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let s2 = saved.clone();
        let sink: RecordingSink = Arc::new(move |audio, rate| {
            seen.store(audio.len(), Ordering::SeqCst);
            assert_eq!(rate, 8000);
            *s2.lock() = vec![audio.iter().sum::<f32>() / audio.len() as f32; 4];
            n.fetch_add(1, Ordering::SeqCst);
            Ok(String::new())
        });
        let mut capture = SidechainCapture::start(8000, telemetry.clone(), sink);
        let left = vec![0.5f32; 100];
        let right = vec![0.1f32; 100];
        // Too short first: refused, nothing enrolled.
        capture.process(true, &[&left, &right]);
        std::thread::sleep(Duration::from_millis(60));
        capture.process(false, &[&left, &right]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(telemetry.status_line().contains("not set"), "{}", telemetry.status_line());
        // 3 s at 8 kHz, fed in blocks the collector keeps up with.
        for _ in 0..240 {
            capture.process(true, &[&left, &right]);
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(60));
        capture.process(false, &[]);
        for _ in 0..100 {
            if calls.load(Ordering::SeqCst) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(seen_len.load(Ordering::SeqCst), 24000);
        assert!(saved.lock().iter().all(|v| (v - 0.3).abs() < 1e-3), "{:?}", saved.lock());
        assert!(telemetry.status_line().contains("captured"));
    }
}
