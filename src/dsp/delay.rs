//! A fixed, integer-sample delay line per channel (the latency-aligned dry path).
//! Audio thread: `process` never allocates.

pub struct DelayLine {
    channels: usize,
    len: usize,
    buf: Vec<f32>,
    pos: usize,
}

impl DelayLine {
    /// A delay of `delay` samples for `channels` channels (allocates; main thread).
    pub fn new(channels: usize, delay: usize) -> Self {
        let mut buf = vec![0.0; channels * delay.max(1)];
        super::prefault(&mut buf);
        Self { channels, len: delay, buf, pos: 0 }
    }

    pub fn delay(&self) -> usize {
        self.len
    }

    pub fn reset(&mut self) {
        self.buf.fill(0.0);
        self.pos = 0;
    }

    /// Sample `channel` of the `frame`-th frame pushed since the last reset;
    /// valid while no more than `delay` frames have been pushed since (so
    /// none has been overwritten).
    #[inline]
    pub fn since_reset(&self, frame: usize, channel: usize) -> f32 {
        self.buf.get(frame * self.channels + channel).copied().unwrap_or(0.0)
    }

    /// Pushes one frame (one sample per channel) and writes the frame from
    /// `delay` samples ago into `out`.
    #[inline]
    pub fn tick(&mut self, input: &[f32], out: &mut [f32]) {
        if self.len == 0 {
            out[..self.channels].copy_from_slice(&input[..self.channels]);
            return;
        }
        let base = self.pos * self.channels;
        for ch in 0..self.channels {
            out[ch] = self.buf[base + ch];
            self.buf[base + ch] = input[ch];
        }
        self.pos += 1;
        if self.pos == self.len {
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_by_exactly_n() {
        for n in [0usize, 1, 7, 480] {
            let mut d = DelayLine::new(2, n);
            let mut out = [0.0f32; 2];
            for t in 0..1000usize {
                let x = [t as f32 + 1.0, -(t as f32) - 1.0];
                d.tick(&x, &mut out);
                let want = if t >= n { (t - n) as f32 + 1.0 } else { 0.0 };
                assert_eq!(out[0], want);
                assert_eq!(out[1], -want);
            }
        }
    }
}
