//! DSP building blocks. Pure code: no threads, no files, no allocation after
//! construction. Each block that delays audio says by how much.

pub mod delay;
pub mod fifo;
pub mod resample;
pub mod sanitize;
pub mod stft;
