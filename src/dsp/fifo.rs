//! A planar, multi-channel FIFO with a fixed capacity allocated up front.
//!
//! Used by the worker-side stream to chain stages that work in different chunk
//! sizes. Never reallocates: pushing past capacity is a logic error reported by
//! the return value.

/// Planar FIFO: one contiguous region per channel, compacted lazily.
pub struct PlanarFifo {
    channels: usize,
    capacity: usize,
    /// `channels * capacity` samples; channel `c` lives in `[c*capacity, (c+1)*capacity)`.
    data: Vec<f32>,
    start: usize,
    end: usize,
}

impl PlanarFifo {
    pub fn new(channels: usize, capacity: usize) -> Self {
        Self { channels, capacity, data: vec![0.0; channels * capacity], start: 0, end: 0 }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    fn make_room(&mut self, frames: usize) -> bool {
        if self.end + frames <= self.capacity {
            return true;
        }
        if self.len() + frames > self.capacity {
            return false;
        }
        let (s, e) = (self.start, self.end);
        for ch in 0..self.channels {
            let base = ch * self.capacity;
            self.data.copy_within(base + s..base + e, base);
        }
        self.end -= s;
        self.start = 0;
        true
    }

    /// Appends `frames` frames of silence. Returns false when it does not fit.
    pub fn push_silence(&mut self, frames: usize) -> bool {
        if !self.make_room(frames) {
            return false;
        }
        for ch in 0..self.channels {
            let base = ch * self.capacity;
            self.data[base + self.end..base + self.end + frames].fill(0.0);
        }
        self.end += frames;
        true
    }

    /// Appends a planar block (`channels * frames` samples, channel-major).
    pub fn push_planar(&mut self, block: &[f32], frames: usize) -> bool {
        debug_assert_eq!(block.len(), self.channels * frames);
        if !self.make_room(frames) {
            return false;
        }
        for ch in 0..self.channels {
            let base = ch * self.capacity;
            self.data[base + self.end..base + self.end + frames]
                .copy_from_slice(&block[ch * frames..(ch + 1) * frames]);
        }
        self.end += frames;
        true
    }

    /// Removes `frames` frames into a planar block (`channels * frames`).
    pub fn pop_planar(&mut self, out: &mut [f32], frames: usize) -> bool {
        debug_assert_eq!(out.len(), self.channels * frames);
        if self.len() < frames {
            return false;
        }
        for ch in 0..self.channels {
            let base = ch * self.capacity + self.start;
            out[ch * frames..(ch + 1) * frames].copy_from_slice(&self.data[base..base + frames]);
        }
        self.start += frames;
        if self.start == self.end {
            self.clear();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_compaction() {
        let mut f = PlanarFifo::new(2, 8);
        let mut next = 0.0f32;
        let mut expect = 0.0f32;
        let mut out = vec![0.0; 2 * 3];
        for _ in 0..50 {
            let block: Vec<f32> = (0..3).map(|i| next + i as f32).chain((0..3).map(|i| -(next + i as f32))).collect();
            assert!(f.push_planar(&block, 3));
            next += 3.0;
            assert!(f.pop_planar(&mut out, 3));
            for i in 0..3 {
                assert_eq!(out[i], expect + i as f32);
                assert_eq!(out[3 + i], -(expect + i as f32));
            }
            expect += 3.0;
        }
    }

    #[test]
    fn refuses_overflow_and_underflow() {
        let mut f = PlanarFifo::new(1, 4);
        assert!(f.push_silence(4));
        assert!(!f.push_silence(1));
        let mut out = [0.0; 5];
        assert!(!f.pop_planar(&mut out, 5));
        assert!(f.pop_planar(&mut out[..4], 4));
        assert!(f.is_empty());
    }
}
