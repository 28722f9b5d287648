//! Is the host playing in real time, or rendering as fast as it can?
//!
//! Hosts that export ("bounce", "freewheel") without saying so call
//! `process` back to back, far faster than real time. A real-time bridge
//! would then fall behind and fade to dry audio, which is right for a sound
//! card that cannot wait and wrong for a render, whose output must be
//! processed. [`HostPace`] tells the two apart from the host's own timing:
//! the wall-clock time from one call to the next, less the time the plugin
//! spent waiting for its worker, per second of audio the host hands over.
//!
//! - A real-time host calls once per period of its sound card, so the ratio
//!   is close to 1 however much of the period the plugin itself uses, and
//!   above 1 when the machine is too busy to keep up. (Counting only the
//!   time outside the plugin, as a first version did, would take a busy
//!   machine's real-time host for a render as soon as the plugin used half
//!   the period, and the plugin would then wait for its worker on the
//!   audio thread.)
//! - A rendering host calls again at once: the ratio is the host's and the
//!   plugin's own work per second of audio, close to 0 (waiting for the
//!   worker is left out, so it does not make the host look slower).
//!
//! The ratio is judged over at least one maximum block of audio, so a
//! real-time host that splits its period into several calls (at automation
//! points, say) is not mistaken for a render: the audio of one period never
//! exceeds the maximum block the host announced. Until a window is complete
//! the host counts as real-time (never wait without evidence).
//!
//! Audio thread: no allocation, no syscall (the monotonic clock is read
//! through the vDSO).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Below this share of outside time per audio time the host is rendering.
pub const FAST_BELOW: f64 = 0.5;
/// Above this share it is playing in real time again (hysteresis between).
pub const REALTIME_ABOVE: f64 = 0.8;

/// Monotonic time in nanoseconds, read on the audio thread.
#[derive(Clone, Debug)]
pub enum HostClock {
    /// The system's monotonic clock, counted from this origin.
    System(Instant),
    /// A clock a test sets by hand (nanoseconds), so pacing tests do not
    /// depend on how busy the machine is.
    Manual(Arc<AtomicU64>),
}

impl HostClock {
    pub fn system() -> Self {
        HostClock::System(Instant::now())
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self {
            HostClock::System(origin) => origin.elapsed().as_nanos() as u64,
            HostClock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

/// Audio thread: the host's pace, from the timing of its calls.
#[derive(Debug, Clone)]
pub struct HostPace {
    sample_rate: f64,
    /// Audio frames a judgement needs (the host's maximum block).
    window_needed: usize,
    window_frames: usize,
    /// The host's time in the window: call to call, less the waits.
    window_host_ns: u64,
    /// Frames of the last call, when it arrived, and how long it waited
    /// for the worker.
    last_frames: usize,
    last_arrive_ns: Option<u64>,
    last_waited_ns: u64,
    fast: bool,
}

impl HostPace {
    pub fn new(sample_rate: f32, max_block: usize) -> Self {
        Self {
            sample_rate: f64::from(sample_rate.max(1.0)),
            window_needed: max_block.max(1),
            window_frames: 0,
            window_host_ns: 0,
            last_frames: 0,
            last_arrive_ns: None,
            last_waited_ns: 0,
            fast: false,
        }
    }

    /// Start of a process call at `now_ns`; returns whether the host renders
    /// faster than real time.
    #[inline]
    pub fn arrive(&mut self, now_ns: u64) -> bool {
        if let Some(before) = self.last_arrive_ns {
            self.window_host_ns += now_ns.saturating_sub(before).saturating_sub(self.last_waited_ns);
            self.window_frames += self.last_frames;
            if self.window_frames >= self.window_needed {
                let audio_ns = self.window_frames as f64 * 1e9 / self.sample_rate;
                let ratio = self.window_host_ns as f64 / audio_ns;
                if ratio < FAST_BELOW {
                    self.fast = true;
                } else if ratio > REALTIME_ABOVE {
                    self.fast = false;
                }
                self.window_frames = 0;
                self.window_host_ns = 0;
            }
        }
        self.last_arrive_ns = Some(now_ns);
        self.last_waited_ns = 0;
        self.fast
    }

    /// The plugin waited `ns` for its worker during the current call.
    #[inline]
    pub fn waited(&mut self, ns: u64) {
        self.last_waited_ns += ns;
    }

    /// End of a process call of `frames` frames.
    #[inline]
    pub fn leave(&mut self, frames: usize) {
        self.last_frames = frames;
    }

    pub fn is_fast(&self) -> bool {
        self.fast
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f32 = 48000.0;

    /// Feeds calls of `frames` frames, each taking `inside_ns` in the plugin
    /// and arriving `period_ns` after the previous one arrived; returns the
    /// judgement after each call.
    fn run(pace: &mut HostPace, t: &mut u64, calls: &[(usize, u64, u64)]) -> Vec<bool> {
        run_waiting(pace, t, &calls.iter().map(|&(f, p, i)| (f, p, i, 0)).collect::<Vec<_>>())
    }

    /// As [`run`], with `waited_ns` of each call's inside time spent waiting
    /// for the worker.
    fn run_waiting(pace: &mut HostPace, t: &mut u64, calls: &[(usize, u64, u64, u64)]) -> Vec<bool> {
        calls
            .iter()
            .map(|&(frames, period_ns, inside_ns, waited_ns)| {
                let fast = pace.arrive(*t);
                pace.waited(waited_ns);
                pace.leave(frames);
                *t += period_ns.max(inside_ns);
                fast
            })
            .collect()
    }

    fn block_ns(frames: usize) -> u64 {
        (frames as f64 * 1e9 / RATE as f64) as u64
    }

    #[test]
    fn a_sound_card_pace_is_real_time_even_with_a_busy_plugin() {
        let mut pace = HostPace::new(RATE, 128);
        let mut t = 0;
        // The plugin itself takes 40 % of every period.
        let calls = vec![(128, block_ns(128), block_ns(128) * 2 / 5); 500];
        assert!(run(&mut pace, &mut t, &calls).iter().all(|f| !f));
    }

    /// A busy machine: the plugin takes 90 % of the period, or more than the
    /// period (the host falls behind and calls again at once). Still real
    /// time: the host is not faster than real time, so waiting would only
    /// make it later.
    #[test]
    fn an_overloaded_real_time_host_is_not_a_render() {
        let mut pace = HostPace::new(RATE, 128);
        let mut t = 0;
        let p = block_ns(128);
        let calls: Vec<_> = (0..500).map(|k| (128, p, if k % 3 == 0 { p * 3 / 2 } else { p * 9 / 10 })).collect();
        assert!(run(&mut pace, &mut t, &calls).iter().all(|f| !f));
    }

    #[test]
    fn a_period_split_into_several_calls_is_still_real_time() {
        // Period 1024, announced maximum 1024, split 300 + 500 + 224 back to back.
        let mut pace = HostPace::new(RATE, 1024);
        let mut t = 0;
        let mut calls = Vec::new();
        for _ in 0..200 {
            calls.push((300, 1000, 500));
            calls.push((500, 1000, 500));
            calls.push((224, block_ns(1024) - 2000, 500));
        }
        assert!(run(&mut pace, &mut t, &calls).iter().all(|f| !f));
    }

    #[test]
    fn back_to_back_calls_are_a_render_from_the_second_call_on() {
        let mut pace = HostPace::new(RATE, 512);
        let mut t = 0;
        // 20 µs of the host's own work between calls; the plugin waits
        // 5 ms for its worker inside each.
        let judged = run_waiting(&mut pace, &mut t, &vec![(512, 5_020_000, 5_000_000, 5_000_000); 50]);
        assert!(!judged[0], "no evidence on the first call");
        assert!(judged[1..].iter().all(|&f| f), "{judged:?}");
    }

    #[test]
    fn a_render_that_stops_returns_to_real_time() {
        let mut pace = HostPace::new(RATE, 256);
        let mut t = 0;
        let fast = run(&mut pace, &mut t, &vec![(256, 10_000, 10_000); 20]);
        assert!(fast[19]);
        let real = run(&mut pace, &mut t, &vec![(256, block_ns(256), 10_000); 5]);
        assert!(!real[4], "{real:?}");
    }
}
