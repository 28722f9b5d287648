//! DSP building blocks. Pure code: no threads, no files, no allocation after
//! construction. Each block that delays audio says by how much.

pub mod delay;
pub mod fifo;
pub mod loudness;
pub mod mel;
pub mod pitch;
pub mod resample;
pub mod sanitize;
pub mod stft;

/// Touches every memory page of `buf` now (main thread), so the audio thread
/// never takes a page fault on first use of freshly allocated, zeroed memory.
pub fn prefault(buf: &mut [f32]) {
    const PER_PAGE: usize = 4096 / std::mem::size_of::<f32>();
    for i in (0..buf.len()).step_by(PER_PAGE) {
        // Volatile, so the write is not optimised away on zeroed memory.
        unsafe { std::ptr::write_volatile(&mut buf[i], 0.0) };
    }
}
