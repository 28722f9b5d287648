//! Latency arithmetic: what the host is told, and why.
//!
//! `total = stream.total + block + margin`, fixed at activation:
//! - `stream.total` (algorithmic + resampling + chunking): the worker-side
//!   [`HostRateStream`](crate::pipelines::stream::HostRateStream) delay,
//!   exact by construction;
//! - `block`: the host's maximum block size. A block's output is needed in
//!   the same callback its input arrives, so results of earlier blocks are
//!   played while this one is processed;
//! - `margin`: time the worker may take beyond one block: a crossfade
//!   reserve (so a late worker fades out instead of clicking), the worker's
//!   wake-up interval and an inference allowance (how late a hop's work may
//!   come: half a hop for Clean's light models, a whole hop for Stems' and
//!   Voice's, chosen by each plugin).

use crate::pipelines::stream::StreamLatency;

/// How often the worker looks for new audio.
pub const WORKER_POLL_SECONDS: f64 = 0.001;
/// Length of every dry/wet crossfade.
pub const CROSSFADE_SECONDS: f64 = 0.003;

/// The fixed latency of one activation, in host samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyPlan {
    pub stream: StreamLatency,
    pub block: usize,
    pub margin: usize,
    /// Samples of the margin reserved for the fade-out when the worker is late.
    pub crossfade: usize,
    pub total: usize,
}

impl LatencyPlan {
    /// `inference_allowance`: host samples a hop's work may come late.
    pub fn new(stream: StreamLatency, sample_rate: f32, max_block: usize, inference_allowance: usize) -> Self {
        let sr = sample_rate as f64;
        let crossfade = (CROSSFADE_SECONDS * sr).ceil() as usize;
        let poll = (WORKER_POLL_SECONDS * sr).ceil() as usize;
        let margin = crossfade + poll + inference_allowance;
        let block = max_block.max(1);
        Self { stream, block, margin, crossfade, total: stream.total + block + margin }
    }

    /// Frames of output that must already exist when a block starts
    /// (the virtual silence the output ring starts with).
    pub fn prefill(&self) -> usize {
        self.block + self.margin
    }

    pub fn millis(samples: usize, sample_rate: f32) -> f64 {
        samples as f64 * 1000.0 / sample_rate as f64
    }

    /// One line for logs and the status display.
    pub fn describe(&self, sample_rate: f32) -> String {
        let ms = |s| Self::millis(s, sample_rate);
        format!(
            "latency {} samples ({:.1} ms) = algorithm {} + resampling {} + chunking {} + model alignment {} + block {} + margin {}",
            self.total,
            ms(self.total),
            self.stream.algorithmic,
            self.stream.resampling,
            self.stream.chunking,
            self.stream.model_alignment,
            self.block,
            self.margin
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up() {
        let stream = StreamLatency { algorithmic: 768, resampling: 384, chunking: 383, model_alignment: 0, total: 1535 };
        let p = LatencyPlan::new(stream, 48000.0, 128, 384);
        assert_eq!(p.crossfade, 144);
        assert_eq!(p.margin, 144 + 48 + 384);
        assert_eq!(p.total, 1535 + 128 + p.margin);
        assert_eq!(p.prefill() + stream.total, p.total);
        assert!(p.prefill() >= p.block + p.crossfade);
    }
}
