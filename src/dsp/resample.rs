//! Fixed-ratio resampling with an exact, integer delay (rubato's FFT resampler
//! with both chunk sizes fixed).
//!
//! Worker thread. Allocates only in `new`.

use rubato::audioadapter_buffers::direct::SequentialSlice;
use rubato::{Fft, FixedSync, Resampler};

#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("cannot build a {from} Hz -> {to} Hz resampler: {reason}")]
    Construction { from: u32, to: u32, reason: String },
}

/// A synchronous resampler that consumes exactly `chunk_in` frames and produces
/// exactly `chunk_out` frames per call. Output sample `m` corresponds to input
/// time `(m - delay) / ratio`, where `delay` is in output frames.
pub struct ChunkResampler {
    inner: Fft<f32>,
    channels: usize,
    chunk_in: usize,
    chunk_out: usize,
}

pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl ChunkResampler {
    /// `target_chunk_in`: wished-for input chunk; the real one is the nearest
    /// multiple (rounded up) of the smallest block the rate pair allows.
    pub fn new(from: u32, to: u32, target_chunk_in: usize, channels: usize) -> Result<Self, ResampleError> {
        let inner = Fft::<f32>::new(from as usize, to as usize, target_chunk_in.max(1), channels, FixedSync::Both)
            .map_err(|e| ResampleError::Construction { from, to, reason: e.to_string() })?;
        let chunk_in = inner.input_frames_next();
        let chunk_out = inner.output_frames_next();
        Ok(Self { inner, channels, chunk_in, chunk_out })
    }

    pub fn chunk_in(&self) -> usize {
        self.chunk_in
    }

    pub fn chunk_out(&self) -> usize {
        self.chunk_out
    }

    /// Delay in output frames.
    pub fn delay(&self) -> usize {
        self.inner.output_delay()
    }

    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// `input`: planar `channels * chunk_in`; `output`: planar `channels * chunk_out`.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        let (Ok(inp), Ok(mut out)) = (
            SequentialSlice::new(input, self.channels, self.chunk_in),
            SequentialSlice::new_mut(output, self.channels, self.chunk_out),
        ) else {
            output.fill(0.0);
            return;
        };
        if self.inner.process_into_buffer(&inp, &mut out, None).is_err() {
            output.fill(0.0);
        }
    }
}

/// A whole mono signal resampled from `from` to `to` Hz, aligned (the
/// resampler's delay removed) and of the same duration. Main/background
/// thread (allocates).
pub fn resample_whole(audio: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    let clean: Vec<f32> = audio.iter().map(|x| crate::dsp::sanitize::sanitize_sample(*x)).collect();
    if from == to {
        return Ok(clean);
    }
    let mut r = ChunkResampler::new(from, to, 4096, 1)?;
    let (ci, co) = (r.chunk_in(), r.chunk_out());
    let want = (clean.len() as u64 * to as u64 / from as u64) as usize;
    let delay = r.delay();
    let chunks = (want + delay).div_ceil(co);
    let mut out = vec![0.0f32; chunks * co];
    let mut chunk = vec![0.0f32; ci];
    for (k, o) in out.chunks_exact_mut(co).enumerate() {
        chunk.fill(0.0);
        let start = (k * ci).min(clean.len());
        let end = ((k + 1) * ci).min(clean.len());
        chunk[..end - start].copy_from_slice(&clean[start..end]);
        r.process(&chunk, o);
    }
    out.truncate(delay + want);
    out.drain(..delay);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented delay is the true delay: a band-limited pulse comes out
    /// centred where `delay` says, for the rate pairs the plugins meet.
    #[test]
    fn reported_delay_matches_impulse_position() {
        for (from, to) in [(48000u32, 16000u32), (16000, 48000), (44100, 16000), (16000, 44100), (192000, 16000), (16000, 88200)] {
            let mut r = ChunkResampler::new(from, to, 256 * from as usize / 16000, 1).unwrap();
            let (ci, co) = (r.chunk_in(), r.chunk_out());
            let chunks = 40;
            // a smooth pulse (Gaussian, well inside both Nyquists) centred on input sample c
            let c = 10.0 * ci as f64 + 0.0;
            let sigma = from as f64 / 2000.0;
            let x: Vec<f32> = (0..ci * chunks).map(|i| (-(((i as f64 - c) / sigma).powi(2)) / 2.0).exp() as f32).collect();
            let mut y = vec![0.0f32; co * chunks];
            for k in 0..chunks {
                r.process(&x[k * ci..(k + 1) * ci], &mut y[k * co..(k + 1) * co]);
            }
            // centroid of the output pulse, in output samples
            let (mut num, mut den) = (0.0f64, 0.0f64);
            for (i, v) in y.iter().enumerate() {
                let w = (*v as f64).max(0.0).powi(2);
                num += w * i as f64;
                den += w;
            }
            let centre_out = num / den;
            let expected = c * to as f64 / from as f64 + r.delay() as f64;
            assert!((centre_out - expected).abs() < 0.05, "{from}->{to}: centre {centre_out} expected {expected}");
        }
    }
}
