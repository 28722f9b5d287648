//! Manifold's light live vocoder: log-mel frames (src/dsp/mel.rs, HiFi-GAN's
//! front end) → 22050 Hz audio, one frame per call, for live Voice on a
//! 2-core CPU. Worker thread (or CLI / tests): every call runs ONNX
//! inference on the calling thread; never the audio thread.
//!
//! The model (`models/vocoder_light`) is HiFi-GAN's generator layout at a
//! quarter of V1's width (128 channels), causal (no convolution looks
//! ahead; only the transposed convolutions do, by half a step each), trained
//! by `cargo xtask train-vocoder` (`xtask/py/train_vocoder.py`) on the
//! core-sounds recordings and exported as a streaming graph by
//! `xtask/py/prepare_hifigan_stream.py`: `mel [1, 80, N]` + `state_in [S]`
//! → `audio [1, 1, 256·N]` + `state_out [S]`. Every convolution keeps its
//! own past in the state, so nothing is recomputed and the output is the
//! whole-file render delayed by [`DELAY_SAMPLES`].
//!
//! The graph may also take a harmonic source, `source [1, H, 256·N]`: sines
//! at the first H multiples of the frame's F0 (the converter's output F0),
//! as in NSF vocoders, added inside the last two upsampling stages. It gives
//! the net the pitch it would otherwise have to find in the mel, and the
//! conversion's F0 reaches the output exactly. [`HarmonicSource`] makes it
//! by the rule `train_vocoder.py`'s `harmonic_source` trains with.
//!
//! A stream starts from the state that silence leaves (computed once at
//! load), not from zeros: a zero mel frame is a loud one.

use crate::dsp::mel::{MelFrame, HOP, LOG_SILENCE, N_MELS};
use crate::runtime::onnx::{open_session_with_threads, Device};
use crate::runtime::RuntimeError;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::Path;

pub const MODEL_ID: &str = "vocoder_light";
pub const MODEL_FILE: &str = "vocoder_light.onnx";
/// The graph's delay at 22050 Hz: the four transposed convolutions' half
/// steps (128 + 16 + 2 + 1). Checked against the graph's metadata at load.
pub const DELAY_SAMPLES: usize = 147;
/// Harmonics in the source, and where they fade out (train_vocoder.py's
/// HARMONICS, SOURCE_TOP_HZ, SOURCE_FADE_HZ).
pub const HARMONICS: usize = 8;
const SOURCE_TOP_HZ: f64 = 5000.0;
const SOURCE_FADE_HZ: f64 = 500.0;
const SAMPLE_RATE: f64 = 22050.0;

/// The harmonic source, one hop per frame: over a frame's hop, F0 and
/// voicing glide from the previous frame's values to this frame's, reached
/// at the hop's last sample (F0 0 = unvoiced). Worker thread.
#[derive(Debug, Clone, Default)]
pub struct HarmonicSource {
    /// In cycles, in [0, 1).
    phase: f64,
    prev_f0: f32,
}

impl HarmonicSource {
    /// Writes `[HARMONICS][HOP]` (planar) for a frame with F0 `f0`.
    pub fn hop(&mut self, f0: f32, out: &mut [f32]) {
        debug_assert_eq!(out.len(), HARMONICS * HOP);
        let f0 = if f0.is_finite() && f0 > 0.0 { f0 as f64 } else { 0.0 };
        let prev = self.prev_f0 as f64;
        let (vp, vc) = (prev > 0.0, f0 > 0.0);
        for n in 0..HOP {
            let a = (n + 1) as f64 / HOP as f64;
            let f = match (vp, vc) {
                (true, true) => prev + (f0 - prev) * a,
                (false, true) => f0,
                (true, false) => prev,
                (false, false) => 0.0,
            };
            let amp = if vp { 1.0 - a } else { 0.0 } + if vc { a } else { 0.0 };
            self.phase = (self.phase + f / SAMPLE_RATE).fract();
            for h in 0..HARMONICS {
                let k = (h + 1) as f64;
                let fade = ((SOURCE_TOP_HZ - k * f) / SOURCE_FADE_HZ).clamp(0.0, 1.0);
                out[h * HOP + n] = (amp * fade * (std::f64::consts::TAU * k * self.phase).sin()) as f32;
            }
        }
        self.prev_f0 = f0 as f32;
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Silent frames run at load to find the state a stream starts from (more
/// than the net's memory of about 23 frames).
const WARM_UP_FRAMES: usize = 32;

/// The light vocoder's session and stream state. Worker thread.
pub struct LightVocoder {
    session: Session,
    device_note: String,
    /// `[80]` input of one frame.
    input: Vec<f32>,
    /// The harmonic source, when the graph takes one.
    source: Option<(HarmonicSource, Vec<f32>)>,
    state: Vec<f32>,
    /// The state after silence: where every stream starts.
    initial_state: Vec<f32>,
    faults: u64,
}

impl LightVocoder {
    /// Opens `dir/vocoder_light.onnx` with `threads` intra-op threads.
    pub fn load(dir: &Path, device: Device, threads: usize) -> Result<Self, RuntimeError> {
        let model = dir.join(MODEL_FILE);
        if !model.is_file() {
            return Err(RuntimeError::ModelMissing { id: MODEL_ID.into(), searched: dir.display().to_string() });
        }
        let loaded = open_session_with_threads(&model, device, threads)?;
        let session = loaded.session;
        let bad = |reason: String| RuntimeError::ModelSignature { path: model.clone(), reason };
        let names_in: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let names_out: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let with_source = names_in == ["mel", "source", "state_in"];
        if !(with_source || names_in == ["mel", "state_in"]) || names_out != ["audio", "state_out"] {
            return Err(bad(format!(
                "inputs {names_in:?}, outputs {names_out:?}; the light vocoder needs [\"mel\", (\"source\",) \"state_in\"] -> [\"audio\", \"state_out\"]"
            )));
        }
        let meta = session.metadata().map_err(|e| bad(e.to_string()))?;
        let number = |key: &str| -> Result<usize, RuntimeError> {
            meta.custom(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(format!("metadata {key:?} missing or not a number")))
        };
        let state_size = number("state_size")?;
        let delay = number("delay_samples")?;
        drop(meta);
        if delay != DELAY_SAMPLES {
            return Err(bad(format!("delay {delay} samples; Manifold's light vocoder has {DELAY_SAMPLES}")));
        }
        let mut v = Self {
            session,
            device_note: loaded.device_note,
            input: vec![LOG_SILENCE; N_MELS],
            source: with_source.then(|| (HarmonicSource::default(), vec![0.0; HARMONICS * HOP])),
            state: vec![0.0; state_size],
            initial_state: Vec::new(),
            faults: 0,
        };
        let silence = [LOG_SILENCE; N_MELS];
        let mut scratch = [0.0f32; HOP];
        for _ in 0..WARM_UP_FRAMES {
            v.run_frame(&silence, 0.0, &mut scratch).map_err(bad)?;
        }
        v.initial_state = v.state.clone();
        Ok(v)
    }

    /// Where inference runs, in plain words.
    pub fn device_note(&self) -> &str {
        &self.device_note
    }

    /// Frames that failed (non-finite or failed inference): each gave a
    /// silent hop and restarted the stream state.
    pub fn faults(&self) -> u64 {
        self.faults
    }

    /// Back to the start of a stream.
    pub fn reset(&mut self) {
        self.state.copy_from_slice(&self.initial_state);
        if let Some((source, _)) = self.source.as_mut() {
            source.reset();
        }
    }

    /// Whether the graph takes the harmonic source (then `f0` matters).
    pub fn uses_f0(&self) -> bool {
        self.source.is_some()
    }

    /// `frames.len()` frames with their F0 (Hz, 0 = unvoiced) in,
    /// `256 · frames.len()` samples out, one call of the graph per frame.
    pub fn process(&mut self, frames: &[MelFrame], f0: &[f32], out: &mut [f32]) -> Result<(), RuntimeError> {
        if out.len() != frames.len() * HOP {
            return Err(RuntimeError::Inference(format!(
                "light vocoder: {} output samples for {} frames",
                out.len(),
                frames.len()
            )));
        }
        if f0.len() != frames.len() {
            return Err(RuntimeError::Inference(format!("light vocoder: {} F0 values for {} frames", f0.len(), frames.len())));
        }
        for ((frame, f), chunk) in frames.iter().zip(f0).zip(out.chunks_exact_mut(HOP)) {
            if let Err(reason) = self.run_frame(frame, *f, chunk) {
                self.faults += 1;
                if self.faults <= 3 {
                    log::warn!("light vocoder frame failed ({reason}); a silent hop, stream state restarted");
                }
                chunk.fill(0.0);
                self.reset();
            }
        }
        Ok(())
    }

    /// One frame through the graph; the state moves on only when the whole
    /// output is finite.
    fn run_frame(&mut self, frame: &MelFrame, f0: f32, out: &mut [f32]) -> Result<(), String> {
        for (i, v) in self.input.iter_mut().zip(frame) {
            *i = if v.is_finite() { v.max(LOG_SILENCE) } else { LOG_SILENCE };
        }
        let e = |e: ort::Error| e.to_string();
        let mel = TensorRef::from_array_view(([1usize, N_MELS, 1], &self.input[..])).map_err(e)?;
        let state = TensorRef::from_array_view(([self.state.len()], &self.state[..])).map_err(e)?;
        let outputs = match self.source.as_mut() {
            Some((source, buffer)) => {
                source.hop(f0, buffer);
                let src = TensorRef::from_array_view(([1usize, HARMONICS, HOP], &buffer[..])).map_err(e)?;
                self.session.run(ort::inputs!["mel" => mel, "source" => src, "state_in" => state]).map_err(e)?
            }
            None => self.session.run(ort::inputs!["mel" => mel, "state_in" => state]).map_err(e)?,
        };
        let (_, audio) = outputs["audio"].try_extract_tensor::<f32>().map_err(e)?;
        let (_, next) = outputs["state_out"].try_extract_tensor::<f32>().map_err(e)?;
        if audio.len() != HOP || next.len() != self.state.len() {
            return Err(format!("{} samples and {} state values, expected {HOP} and {}", audio.len(), next.len(), self.state.len()));
        }
        if !audio.iter().chain(next).all(|v| v.is_finite()) {
            return Err("non-finite output".into());
        }
        out.copy_from_slice(audio);
        self.state.copy_from_slice(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::mel;
    use std::path::PathBuf;

    fn model_dir() -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data/models").join(MODEL_ID);
        assert!(dir.join(MODEL_FILE).is_file(), "{} missing: run `cargo xtask models vocoder_light`", dir.display());
        dir
    }

    /// Mel frames of a 150 Hz buzz falling 6 dB per octave, 1 s.
    fn voiced_frames() -> Vec<MelFrame> {
        let x: Vec<f32> = (0..22050)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                (1..40).map(|h| (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32).sum::<f32>() * 0.05
            })
            .collect();
        mel::log_mel(&x)
    }
    const SAMPLE_RATE: u32 = 22050;

    /// At 150 Hz where a frame is loud, unvoiced where it is silent.
    fn render(v: &mut LightVocoder, frames: &[MelFrame]) -> Vec<f32> {
        let mut y = vec![0.0; frames.len() * HOP];
        let f0: Vec<f32> = frames.iter().map(|f| if f[10] > -6.0 { 150.0 } else { 0.0 }).collect();
        v.process(frames, &f0, &mut y).unwrap();
        y
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    #[test]
    fn the_harmonic_source_glides_between_frames() {
        let mut s = HarmonicSource::default();
        let mut buf = vec![0.0; HARMONICS * HOP];
        s.hop(0.0, &mut buf);
        assert!(buf.iter().all(|v| *v == 0.0), "unvoiced is silent");
        s.hop(200.0, &mut buf);
        // Voicing fades in over the hop: quiet at its start, full at its end.
        let head = buf[..16].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(head < 0.07, "{head}");
        s.hop(200.0, &mut buf);
        // A steady 200 Hz: harmonic 1 completes 200 / 22050 cycles a sample,
        // harmonics past 5 kHz are silent (25 · 200 Hz; only 8 are made, all under).
        let crossings = buf[..HOP].windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((2..=3).contains(&crossings), "{crossings} upward crossings in 256 samples at 200 Hz");
        s.hop(4900.0, &mut buf);
        s.hop(4900.0, &mut buf);
        assert!(buf[HOP..].iter().all(|v| *v == 0.0), "harmonics above 5 kHz are faded out");
        assert!(buf[..HOP].iter().any(|v| v.abs() > 0.1), "the fundamental stays (4.9 kHz < 5 kHz, fade 0.2)");
    }

    #[test]
    fn silence_in_is_silence_out_and_reset_restarts_the_stream() {
        let mut v = LightVocoder::load(&model_dir(), Device::Cpu, 1).unwrap();
        let silence = vec![[LOG_SILENCE; N_MELS]; 20];
        let quiet = render(&mut v, &silence);
        assert!(rms(&quiet) < 1e-3, "silence renders at rms {}", rms(&quiet));
        let frames = voiced_frames();
        let first = render(&mut v, &frames);
        v.reset();
        let _ = render(&mut v, &silence);
        let again = render(&mut v, &frames);
        assert_eq!(first, again, "a reset stream must render the same frames the same way");
        // Speech-like input comes out at speech level.
        let level = rms(&first[first.len() / 2..]);
        assert!(level > 0.005 && level < 0.5, "voiced frames render at rms {level}");
    }

    #[test]
    fn a_non_finite_frame_does_not_poison_the_stream() {
        let mut v = LightVocoder::load(&model_dir(), Device::Cpu, 1).unwrap();
        let mut frames = voiced_frames();
        let clean = render(&mut v, &frames);
        frames[10] = [f32::NAN; N_MELS];
        frames[11][3] = f32::INFINITY;
        v.reset();
        let dirty = render(&mut v, &frames);
        assert!(dirty.iter().all(|s| s.is_finite()));
        assert_eq!(v.faults(), 0, "bad values are sanitised, not faults");
        // Well after the bad frames the stream is back to the clean one.
        let tail = 50 * HOP..clean.len();
        let diff: f32 = clean[tail.clone()].iter().zip(&dirty[tail.clone()]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 0.05 * clean[tail].iter().fold(0.0f32, |m, v| m.max(v.abs())), "still off by {diff} 38 frames later");
    }
}
