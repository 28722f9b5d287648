//! Input hygiene shared by every pipeline: NaN/Inf become silence, huge values
//! are clamped, denormals are flushed. Safe on the audio thread.

/// Largest magnitude passed on (+18 dBFS). Hosts legitimately exceed 1.0.
pub const MAX_ABS: f32 = 8.0;
/// Values below this are treated as zero (well above the f32 denormal range).
pub const TINY: f32 = 1.0e-30;

#[inline]
pub fn sanitize_sample(x: f32) -> f32 {
    if !x.is_finite() || x.abs() < TINY {
        0.0
    } else {
        x.clamp(-MAX_ABS, MAX_ABS)
    }
}

/// Sanitizes in place; returns how many samples had to be changed because
/// they were non-finite or out of range (denormal flushing is not counted).
pub fn sanitize(buf: &mut [f32]) -> usize {
    let mut fixed = 0;
    for x in buf.iter_mut() {
        let y = sanitize_sample(*x);
        if y != *x && !(x.is_finite() && x.abs() < TINY) {
            fixed += 1;
        }
        *x = y;
    }
    fixed
}

/// True when every sample is finite.
pub fn all_finite(buf: &[f32]) -> bool {
    buf.iter().all(|x| x.is_finite())
}

/// Sets the FTZ and DAZ bits of the calling thread's MXCSR (x86_64), so that
/// denormals never slow a model or filter down. Call at the start of every
/// worker thread; nice-plug already does this around `process`.
pub fn flush_denormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        // FTZ = bit 15, DAZ = bit 6
        _mm_setcsr(_mm_getcsr() | (1 << 15) | (1 << 6));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_become_safe() {
        let mut b = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e6, -1e6, 1e-40, 0.5];
        let n = sanitize(&mut b);
        assert_eq!(n, 5);
        assert_eq!(b, [0.0, 0.0, 0.0, MAX_ABS, -MAX_ABS, 0.0, 0.5]);
        assert!(all_finite(&b));
    }
}
