//! Runs a [`HopModel`] at any host rate and any block size with a fixed,
//! exact, integer delay. Worker thread (allocates only in `new`).
//!
//! Stages, each with its own chunk size:
//! ```text
//! host in ─▶ down-resampler ─▶ model hops ─▶ (alignment pad) ─▶ up-resampler ─▶ host out
//!   (chunk_in host)      (hop, model rate)                  (chunk model)     (prefill Z)
//! ```
//! The stream is sample-count preserving: every call returns exactly as many
//! frames as it was given. The host-side output FIFO starts with `Z` frames of
//! silence, the smallest number that lets every call return immediately; `Z`
//! is found by simulating the stage counts over one full period.
//!
//! Delay, in host samples (see [`StreamLatency`]):
//! `Z + d_up + (d_down + model_delay + pad) * host_rate / model_rate`
//! where `pad` (model samples of silence) makes the last term an integer.

use super::HopModel;
use crate::dsp::fifo::PlanarFifo;
use crate::dsp::resample::{gcd, ChunkResampler, ResampleError};

/// The largest block one `process` call accepts; callers split larger ones.
pub const MAX_FRAMES_PER_CALL: usize = 8192;

/// Where the stream's delay comes from, in host samples (they add up to `total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamLatency {
    /// The model's own algorithmic delay (window minus hop, plus lookahead).
    pub algorithmic: usize,
    /// Down- plus up-resampler filter delay, plus the alignment pad.
    pub resampling: usize,
    /// Waiting for full resampler chunks and model hops (`Z`).
    pub chunking: usize,
    /// Extra delay so that every model a plugin can switch to has the same
    /// latency (see [`HostRateStream::pad_to`]).
    pub model_alignment: usize,
    pub total: usize,
}

pub struct HostRateStream {
    host_rate: u32,
    channels: usize,
    out_channels: usize,
    model: Box<dyn HopModel>,
    down: Option<ChunkResampler>,
    up: Option<ChunkResampler>,
    host_in: PlanarFifo,
    model_in: PlanarFifo,
    model_out: PlanarFifo,
    host_out: PlanarFifo,
    scratch_a: Vec<f32>,
    scratch_b: Vec<f32>,
    pad: usize,
    prefill: usize,
    host_out_capacity: usize,
    latency: StreamLatency,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Resample(#[from] ResampleError),
    #[error("cannot pad a stream of {natural} samples delay to {wanted}")]
    TooShort { wanted: usize, natural: usize },
    #[error("{host} Hz is not supported with a model at {model} Hz (their ratio needs resampling chunks far too long); use a common rate such as 44.1, 48 or 96 kHz")]
    UnsupportedRate { host: u32, model: u32 },
}

/// Largest numerator or denominator of the reduced host/model rate ratio
/// (768 kHz against a 22.05 kHz model is 5120/147; an odd rate such as
/// 1234567 Hz would need chunks of a million samples and hours of planning).
const MAX_RATIO_TERM: u64 = 8192;
/// Most down-sampler chunks `min_output_prefill` simulates (well under a
/// second; Stems' full-context plan at 48 kHz needs a few million).
const MAX_SIMULATED_CHUNKS: usize = 50_000_000;

/// Chunk sizes of one stage: `consume` frames in give `produce` frames out.
#[derive(Clone, Copy)]
struct Stage {
    consume: usize,
    produce: usize,
}

/// The timing of a model, known before it is loaded (from its manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelTiming {
    pub sample_rate: u32,
    pub hop: usize,
    /// Hop-synchronous algorithmic delay at the model rate.
    pub delay: usize,
}

struct Parts {
    down: Option<ChunkResampler>,
    up: Option<ChunkResampler>,
    down_stage: Stage,
    up_stage: Stage,
    pad: usize,
    prefill: usize,
    latency: StreamLatency,
}

fn build_parts(timing: ModelTiming, host_rate: u32, channels: usize, out_channels: usize) -> Result<Parts, StreamError> {
    let ModelTiming { sample_rate: model_rate, hop, delay } = timing;
    let unsupported = StreamError::UnsupportedRate { host: host_rate, model: model_rate };
    let g = gcd(host_rate.max(1) as u64, model_rate.max(1) as u64);
    if host_rate == 0 || host_rate as u64 / g > MAX_RATIO_TERM || model_rate as u64 / g > MAX_RATIO_TERM {
        return Err(unsupported);
    }
    let (down, up) = if host_rate == model_rate {
        (None, None)
    } else {
        // Resampler chunks of about half a hop keep their filter delay low.
        // (at most 1024 samples, so long separator hops do not inflate it).
        let target_model_chunk = (hop / 2).clamp(1, 1024);
        let target_host_chunk = (target_model_chunk as u64 * host_rate as u64 / model_rate as u64) as usize;
        (
            Some(ChunkResampler::new(host_rate, model_rate, target_host_chunk, channels)?),
            Some(ChunkResampler::new(model_rate, host_rate, target_model_chunk, out_channels)?),
        )
    };
    let d_down = down.as_ref().map_or(0, |r| r.delay());
    let d_up = up.as_ref().map_or(0, |r| r.delay());
    // Make (d_down + model delay + pad) * host / model an integer.
    let g = gcd(host_rate as u64, model_rate as u64);
    let unit = (model_rate as u64 / g) as usize;
    let before_pad = d_down + delay;
    let pad = (unit - before_pad % unit) % unit;
    let to_host = |m: usize| (m as u64 * host_rate as u64 / model_rate as u64) as usize;

    let stage = |r: &Option<ChunkResampler>| r.as_ref().map_or(Stage { consume: 1, produce: 1 }, |r| Stage { consume: r.chunk_in(), produce: r.chunk_out() });
    let (down_stage, up_stage) = (stage(&down), stage(&up));
    let prefill = min_output_prefill(down_stage, hop, pad, up_stage).ok_or(unsupported)?;
    let latency = StreamLatency {
        algorithmic: to_host(delay),
        resampling: d_up + to_host(before_pad + pad) - to_host(delay),
        chunking: prefill,
        model_alignment: 0,
        total: prefill + d_up + to_host(before_pad + pad),
    };
    Ok(Parts { down, up, down_stage, up_stage, pad, prefill, latency })
}

impl HostRateStream {
    /// The delay a model with this timing will have at `host_rate`, without
    /// loading it (main thread, at activation).
    pub fn latency_for(timing: ModelTiming, host_rate: u32, channels: usize) -> Result<StreamLatency, StreamError> {
        Ok(build_parts(timing, host_rate, channels, channels)?.latency)
    }

    /// One latency for a plugin that can switch between models with these
    /// timings: the largest stream delay of them all (so switching never
    /// changes what the host was told), and the longest model hop in host
    /// samples (rounded up). `None` when there are no timings. Main thread.
    pub fn common_latency(timings: impl IntoIterator<Item = ModelTiming>, host_rate: u32, channels: usize) -> Result<Option<(StreamLatency, usize)>, StreamError> {
        let mut common: Option<(StreamLatency, usize)> = None;
        for t in timings {
            let l = Self::latency_for(t, host_rate, channels)?;
            let hop = (t.hop as u64 * host_rate as u64).div_ceil(t.sample_rate as u64) as usize;
            common = Some(match common {
                Some((s, h)) => (if l.total > s.total { l } else { s }, h.max(hop)),
                None => (l, hop),
            });
        }
        Ok(common)
    }

    pub fn new(model: Box<dyn HopModel>, host_rate: u32) -> Result<Self, StreamError> {
        let channels = model.channels();
        let out_channels = model.out_channels();
        let model_rate = model.sample_rate();
        let hop = model.hop();
        let timing = ModelTiming { sample_rate: model_rate, hop, delay: model.delay() };
        let Parts { down, up, down_stage, up_stage, pad, prefill, latency } = build_parts(timing, host_rate, channels, out_channels)?;
        let host_cap = MAX_FRAMES_PER_CALL + prefill + 4 * (down_stage.consume + up_stage.produce) + 16;
        let model_cap = to_model_ceil(host_cap, host_rate, model_rate) + pad + 4 * (hop + down_stage.produce + up_stage.consume) + 16;
        let scratch = channels.max(out_channels) * (host_cap.max(model_cap));
        let mut s = Self {
            host_rate,
            channels,
            out_channels,
            model,
            down,
            up,
            host_in: PlanarFifo::new(channels, host_cap),
            model_in: PlanarFifo::new(channels, model_cap),
            model_out: PlanarFifo::new(out_channels, model_cap),
            host_out: PlanarFifo::new(out_channels, host_cap),
            scratch_a: vec![0.0; scratch],
            scratch_b: vec![0.0; scratch],
            pad,
            prefill,
            host_out_capacity: host_cap,
            latency,
        };
        s.reset();
        Ok(s)
    }

    pub fn latency(&self) -> StreamLatency {
        self.latency
    }

    /// Delays the output further so the total delay is exactly `total`
    /// (used to give every selectable model the same latency). Main/worker.
    pub fn pad_to(&mut self, total: usize) -> Result<(), StreamError> {
        if total < self.latency.total {
            return Err(StreamError::TooShort { wanted: total, natural: self.latency.total });
        }
        let extra = total - self.latency.total;
        self.prefill += extra;
        self.latency.model_alignment += extra;
        self.latency.total = total;
        self.host_out = PlanarFifo::new(self.out_channels, self.host_out_capacity + extra);
        self.reset();
        Ok(())
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Output channels (stems × channels for separators).
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    pub fn host_rate(&self) -> u32 {
        self.host_rate
    }

    pub fn model(&self) -> &dyn HopModel {
        self.model.as_ref()
    }

    pub fn model_mut(&mut self) -> &mut dyn HopModel {
        self.model.as_mut()
    }

    /// The model back, for another stream (another host rate).
    pub fn into_model(self) -> Box<dyn HopModel> {
        self.model
    }

    /// Back to the state right after construction.
    pub fn reset(&mut self) {
        self.model.reset();
        if let Some(r) = self.down.as_mut() {
            r.reset();
        }
        if let Some(r) = self.up.as_mut() {
            r.reset();
        }
        self.host_in.clear();
        self.model_in.clear();
        self.model_out.clear();
        self.host_out.clear();
        self.model_out.push_silence(self.pad);
        self.host_out.push_silence(self.prefill);
    }

    /// Processes `frames` frames (planar: `channels * frames` in,
    /// `out_channels * frames` out).
    /// `frames` must not exceed [`MAX_FRAMES_PER_CALL`].
    pub fn process(&mut self, input: &[f32], output: &mut [f32], frames: usize) {
        debug_assert!(frames <= MAX_FRAMES_PER_CALL);
        let c = self.channels;
        self.host_in.push_planar(&input[..c * frames], frames);

        // host -> model rate, model hops, model -> host rate
        resample_stage(self.down.as_mut(), &mut self.host_in, &mut self.model_in, &mut self.scratch_a, &mut self.scratch_b);
        let hop = self.model.hop();
        let oc = self.out_channels;
        while self.model_in.len() >= hop {
            self.model_in.pop_planar(&mut self.scratch_a[..c * hop], hop);
            self.model.process_hop(&self.scratch_a[..c * hop], &mut self.scratch_b[..oc * hop]);
            self.model_out.push_planar(&self.scratch_b[..oc * hop], hop);
        }
        resample_stage(self.up.as_mut(), &mut self.model_out, &mut self.host_out, &mut self.scratch_a, &mut self.scratch_b);

        if !self.host_out.pop_planar(&mut output[..oc * frames], frames) {
            // Cannot happen when `prefill` is right; never hand out stale data.
            output[..oc * frames].fill(0.0);
        }
    }
}

/// Moves every complete resampler chunk from `from` to `to` (everything,
/// unchanged, when there is no resampler).
fn resample_stage(resampler: Option<&mut ChunkResampler>, from: &mut PlanarFifo, to: &mut PlanarFifo, scratch_in: &mut [f32], scratch_out: &mut [f32]) {
    let c = from.channels();
    match resampler {
        None => {
            let n = from.len();
            from.pop_planar(&mut scratch_in[..c * n], n);
            to.push_planar(&scratch_in[..c * n], n);
        }
        Some(r) => {
            let (ci, co) = (r.chunk_in(), r.chunk_out());
            while from.len() >= ci {
                from.pop_planar(&mut scratch_in[..c * ci], ci);
                r.process(&scratch_in[..c * ci], &mut scratch_out[..c * co]);
                to.push_planar(&scratch_out[..c * co], co);
            }
        }
    }
}

fn to_model_ceil(host_frames: usize, host_rate: u32, model_rate: u32) -> usize {
    (host_frames as u64 * model_rate as u64).div_ceil(host_rate as u64) as usize
}

/// Smallest silence prefill of the host-side output FIFO such that feeding
/// the stream one frame at a time always finds an output frame ready;
/// `None` when the chain's period is too long to simulate. Simulated a whole
/// down-sampler chunk at a time: between chunks nothing new is produced, so
/// the largest shortfall of a stretch is at its last frame.
fn min_output_prefill(down: Stage, hop: usize, pad: usize, up: Stage) -> Option<usize> {
    // One period of the whole chain, in host frames.
    let model_period = lcm(lcm(down.produce, hop), up.consume);
    let host_period = model_period / down.produce * down.consume;
    let steps = 3 * host_period + 2 * (down.consume + up.produce + pad + hop);
    let chunk = down.consume.max(1);
    if steps / chunk > MAX_SIMULATED_CHUNKS {
        return None;
    }
    let (mut model_in, mut model_out) = (0usize, pad);
    let (mut produced, mut need, mut t) = (0usize, 0usize, 0usize);
    while t < steps {
        // Frames t+1 .. t+chunk-1 produce nothing new.
        need = need.max((t + chunk - 1).saturating_sub(produced));
        // Frame t+chunk completes a chunk.
        t += chunk;
        model_in += down.produce;
        while model_in >= hop {
            model_in -= hop;
            model_out += hop;
        }
        while model_out >= up.consume {
            model_out -= up.consume;
            produced += up.produce;
        }
        need = need.max(t.saturating_sub(produced));
    }
    Some(need)
}

fn lcm(a: usize, b: usize) -> usize {
    a / gcd(a as u64, b as u64) as usize * b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::passthrough::StftPassthrough;

    #[test]
    fn common_latency_is_the_largest_delay_and_longest_hop() {
        let slow = ModelTiming { sample_rate: 16000, hop: 256, delay: 512 };
        let fast = ModelTiming { sample_rate: 48000, hop: 480, delay: 960 };
        let (l, hop) = HostRateStream::common_latency([fast, slow], 48000, 2).unwrap().unwrap();
        let each = [HostRateStream::latency_for(slow, 48000, 2).unwrap(), HostRateStream::latency_for(fast, 48000, 2).unwrap()];
        assert_eq!(l.total, each.iter().map(|e| e.total).max().unwrap());
        assert_eq!(hop, 768);
        assert!(HostRateStream::common_latency([], 48000, 2).unwrap().is_none());
    }

    /// Feed a band-limited pulse through the passthrough model at every host
    /// rate with random block sizes; the pulse must come out exactly
    /// `latency().total` samples later.
    #[test]
    fn delay_is_exact_for_every_rate_and_block_size() {
        let mut seed = 12345u64;
        let mut rand = move |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for host in [16000u32, 22050, 44100, 48000, 88200, 96000, 192000] {
            for channels in [1usize, 2] {
                let model = Box::new(StftPassthrough::new(16000, 512, 256, channels));
                let mut s = HostRateStream::new(model, host).unwrap();
                let lat = s.latency().total;
                let total = lat + host as usize / 2;
                let centre = host as usize / 10;
                let sigma = host as f64 / 4000.0; // well below 8 kHz
                let mut x = vec![0.0f32; total * channels];
                for i in 0..total {
                    let v = (-(((i as f64 - centre as f64) / sigma).powi(2)) / 2.0).exp() as f32;
                    for ch in 0..channels {
                        x[ch * total + i] = v * (1.0 - 0.5 * ch as f32);
                    }
                }
                let mut y = vec![0.0f32; total * channels];
                let mut pos = 0;
                let mut inb = vec![0.0f32; MAX_FRAMES_PER_CALL * channels];
                let mut outb = vec![0.0f32; MAX_FRAMES_PER_CALL * channels];
                while pos < total {
                    let range = if rand(4) == 0 { 8192 } else { 700 };
                    let n = (1 + rand(range)).min(total - pos);
                    for ch in 0..channels {
                        inb[ch * n..(ch + 1) * n].copy_from_slice(&x[ch * total + pos..ch * total + pos + n]);
                    }
                    s.process(&inb[..n * channels], &mut outb[..n * channels], n);
                    for ch in 0..channels {
                        y[ch * total + pos..ch * total + pos + n].copy_from_slice(&outb[ch * n..(ch + 1) * n]);
                    }
                    pos += n;
                }
                for ch in 0..channels {
                    let yc = &y[ch * total..(ch + 1) * total];
                    let (mut num, mut den) = (0.0f64, 0.0f64);
                    for (i, v) in yc.iter().enumerate() {
                        let w = (*v as f64).max(0.0).powi(2);
                        num += w * i as f64;
                        den += w;
                    }
                    let got = num / den;
                    let want = (centre + lat) as f64;
                    assert!((got - want).abs() < 0.1, "host {host} ch {ch}: pulse at {got}, latency says {want}");
                    let peak = yc.iter().cloned().fold(0.0f32, f32::max);
                    assert!((peak - (1.0 - 0.5 * ch as f32)).abs() < 0.02, "host {host}: peak {peak}");
                }
            }
        }
    }

    #[test]
    fn prefill_is_minimal_and_sufficient() {
        // 48k -> 16k with chunk = hop: one output chunk per 768 inputs.
        let z = min_output_prefill(Stage { consume: 768, produce: 256 }, 256, 0, Stage { consume: 256, produce: 768 }).unwrap();
        assert_eq!(z, 767);
        // Identity everything: no waiting at all.
        assert_eq!(min_output_prefill(Stage { consume: 1, produce: 1 }, 1, 0, Stage { consume: 1, produce: 1 }), Some(0));
    }

    /// Every rate a host may ask for is answered at once: common rates work
    /// for every model rate the project uses, odd ones (the validators try
    /// 1234567.8 Hz) are refused with a reason instead of planning for hours.
    #[test]
    fn any_host_rate_is_answered_quickly() {
        let started = std::time::Instant::now();
        for model_rate in [16000u32, 22050, 44100, 48000] {
            let timing = ModelTiming { sample_rate: model_rate, hop: 256, delay: 256 };
            for host in [8000u32, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 176400, 192000, 384000, 768000] {
                let l = HostRateStream::latency_for(timing, host, 2);
                assert!(l.is_ok(), "{host} Hz with a {model_rate} Hz model: {l:?}");
            }
            for host in [1234567u32] {
                match HostRateStream::latency_for(timing, host, 2) {
                    Err(StreamError::UnsupportedRate { .. }) => {}
                    other => panic!("{host} Hz with a {model_rate} Hz model: {other:?}"),
                }
            }
            // The validators' fractional rates, truncated: either way, at once.
            for host in [1234u32, 12345, 45678, 123456] {
                let _ = HostRateStream::latency_for(timing, host, 2);
            }
        }
        // Generous: the point is seconds, not hours, on any machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
    }
}