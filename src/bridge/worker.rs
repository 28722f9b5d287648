//! The worker thread: loads the model, then turns input-ring audio into
//! output-ring audio through a [`HostRateStream`]. May allocate and block;
//! never touches the audio thread's state except through the rings and
//! atomics in [`Shared`].

use super::telemetry::{Telemetry, WorkerState};
use crate::dsp::sanitize::flush_denormals_on_this_thread;
use crate::pipelines::stream::{HostRateStream, StreamLatency, MAX_FRAMES_PER_CALL};
use crate::pipelines::convert_voice::TargetVoice;
use crate::pipelines::HopModel;
use crate::runtime::RuntimeError;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Builds model number `index` of a plugin's model list. Runs on the worker
/// or a loader thread, never on the audio thread; may allocate and block.
pub type ModelCatalog = Arc<dyn Fn(usize) -> Result<Box<dyn HopModel>, RuntimeError> + Send + Sync>;

/// How long a newly loaded model runs silently beside the old one before it
/// is heard (on top of its own latency), and the crossfade between them.
const SWITCH_WARMUP_SECONDS: f64 = 0.25;
const SWITCH_FADE_SECONDS: f64 = 0.02;

/// The loaded models a plugin instance keeps between activations, so that
/// re-activating (a new sample rate or block size, a host's prepare before
/// every render) does not load them again: a model does not depend on the
/// host's rate, only its stream does. The worker puts its model here when it
/// stops and takes it back at the next start if it was built the same way
/// (`key`: channels, device, mode) and is the one wanted. The last
/// [`SHELF_SIZE`] models are kept. Main and worker threads; the audio thread
/// never touches it.
#[derive(Clone, Default)]
pub struct ModelShelf(Arc<parking_lot::Mutex<Vec<ShelvedModel>>>);

/// Models a shelf keeps (the most recently shelved first).
pub const SHELF_SIZE: usize = 3;

struct ShelvedModel {
    key: String,
    index: usize,
    model: Box<dyn HopModel>,
}

impl std::fmt::Debug for ModelShelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held: Vec<String> = self.0.lock().iter().map(|m| format!("{} #{}", m.key, m.index)).collect();
        f.debug_tuple("ModelShelf").field(&held).finish()
    }
}

impl ModelShelf {
    /// Worker thread: the kept model if it is model `index` built as `key`,
    /// reset to its initial state.
    fn take(&self, key: &str, index: usize) -> Option<Box<dyn HopModel>> {
        let mut shelf = self.0.lock();
        let at = shelf.iter().position(|m| m.key == key && m.index == index)?;
        let mut model = shelf.remove(at).model;
        model.reset();
        Some(model)
    }

    /// Worker thread: keep this model for the next activation.
    fn put(&self, key: String, index: usize, model: Box<dyn HopModel>) {
        let mut shelf = self.0.lock();
        shelf.insert(0, ShelvedModel { key, index, model });
        shelf.truncate(SHELF_SIZE);
    }
}

/// State shared by the audio thread and the worker.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    /// Bumped by the audio thread to ask for a reset.
    pub epoch_requested: AtomicU64,
    /// Set by the worker once it has dropped stale audio and reset its state.
    pub epoch_done: AtomicU64,
    pub stop: AtomicBool,
    /// The model the user chose (index into the catalog); written by the
    /// audio thread from the parameter, read by the worker.
    pub requested_model: AtomicUsize,
    /// Offline: the input frame (counted since the stream last started) at
    /// which a requested model switch begins, so it lands on the same sample
    /// every time. 0 = as soon as the model is loaded (live).
    pub switch_at_frame: AtomicU64,
    /// The model the worker is running or warming up (usize::MAX: none yet).
    pub ready_model: AtomicUsize,
    /// The last model that failed to load (usize::MAX: none).
    pub failed_model: AtomicUsize,
    /// The target speaker for models that follow one voice; set from the
    /// main or a capture thread, never from the audio thread. The worker
    /// picks it up when `target_version` changes.
    pub target_embedding: parking_lot::Mutex<Option<Arc<Vec<f32>>>>,
    /// The target voice for voice conversion (same rules, same version).
    pub target_voice: parking_lot::Mutex<Option<Arc<TargetVoice>>>,
    pub target_version: AtomicU64,
    /// Frames the worker has handed back since it started (tests use it to
    /// drive the worker deterministically instead of pacing by the clock).
    pub frames_out: AtomicU64,
}

impl Shared {
    pub fn new(telemetry: Arc<Telemetry>, initial_model: usize) -> Self {
        Self {
            telemetry,
            epoch_requested: AtomicU64::new(0),
            epoch_done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            requested_model: AtomicUsize::new(initial_model),
            switch_at_frame: AtomicU64::new(0),
            ready_model: AtomicUsize::new(usize::MAX),
            failed_model: AtomicUsize::new(usize::MAX),
            target_embedding: parking_lot::Mutex::new(None),
            target_voice: parking_lot::Mutex::new(None),
            target_version: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
        }
    }

    /// Main/capture thread: follow this speaker from now on.
    pub fn set_target_embedding(&self, embedding: Vec<f32>) {
        *self.target_embedding.lock() = Some(Arc::new(embedding));
        self.target_version.fetch_add(1, Ordering::AcqRel);
    }

    /// Main/loader thread: convert to this voice from now on.
    pub fn set_target_voice(&self, voice: Option<Arc<TargetVoice>>) {
        *self.target_voice.lock() = voice;
        self.target_version.fetch_add(1, Ordering::AcqRel);
    }

    fn current_target(&self) -> Option<Arc<Vec<f32>>> {
        self.target_embedding.lock().clone()
    }

    /// Worker thread: hands the current targets to a model.
    fn apply_targets(&self, model: &mut dyn HopModel) {
        if let Some(e) = self.current_target() {
            model.set_target_embedding(&e);
        }
        model.set_target_voice(self.target_voice.lock().clone());
    }
}

pub struct WorkerHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct WorkerSetup {
    pub shared: Arc<Shared>,
    pub input: rtrb::Consumer<f32>,
    pub output: rtrb::Producer<f32>,
    /// Channels into the worker (host input).
    pub channels: usize,
    /// Channels out of it (`channels`, or stems × channels for separators).
    pub out_channels: usize,
    pub host_rate: u32,
    /// The delay the host was told about; every model's stream is padded to it.
    pub planned: StreamLatency,
    pub catalog: ModelCatalog,
    pub label: String,
    /// Where the model is kept between activations, and how it was built.
    pub shelf: Option<(ModelShelf, String)>,
}

pub fn spawn(setup: WorkerSetup) -> WorkerHandle {
    let shared = setup.shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("manifold-worker-{}", setup.label))
        .spawn(move || run(setup))
        .ok();
    if thread.is_none() {
        shared.telemetry.set_state(WorkerState::Failed);
        shared.telemetry.set_status("could not start the worker thread; passing dry audio");
    }
    WorkerHandle { shared, thread }
}

/// Loads model `index` and wraps it in a stream with exactly the planned delay.
fn open_stream(catalog: &ModelCatalog, index: usize, host_rate: u32, planned: StreamLatency, out_channels: usize) -> Result<(HostRateStream, String), RuntimeError> {
    stream_for(catalog(index)?, host_rate, planned, out_channels)
}

fn stream_for(model: Box<dyn HopModel>, host_rate: u32, planned: StreamLatency, out_channels: usize) -> Result<(HostRateStream, String), RuntimeError> {
    if model.out_channels() != out_channels {
        return Err(RuntimeError::Inference(format!("{} has {} output channels, the plugin expects {out_channels}", model.name(), model.out_channels())));
    }
    let note = format!("{} on {}", model.name(), model.device_note());
    let mut stream = HostRateStream::new(model, host_rate).map_err(|e| RuntimeError::Inference(e.to_string()))?;
    stream.pad_to(planned.total).map_err(|e| RuntimeError::Inference(e.to_string()))?;
    Ok((stream, note))
}

/// A model being switched to: loading on its own thread, then running beside
/// the current one until its output is valid, then crossfaded in.
enum Switch {
    Loading { index: usize, start_at: u64, result: std::sync::mpsc::Receiver<Result<(HostRateStream, String), RuntimeError>> },
    /// `start_at`: the input frame from which the new stream is fed.
    Warming { index: usize, start_at: u64, stream: HostRateStream, note: String, warm_left: usize, faded: usize },
}

fn run(setup: WorkerSetup) {
    flush_denormals_on_this_thread();
    let WorkerSetup { shared, mut input, mut output, channels, out_channels, host_rate, planned, catalog, label, shelf } = setup;
    let tele = shared.telemetry.clone();
    tele.set_state(WorkerState::Loading);
    tele.set_status(format!("{label}: loading model"));

    let mut current_index = shared.requested_model.load(Ordering::Acquire);
    let kept = shelf.as_ref().and_then(|(s, key)| s.take(key, current_index));
    let opened = match kept {
        Some(model) => stream_for(model, host_rate, planned, out_channels),
        None => open_stream(&catalog, current_index, host_rate, planned, out_channels),
    };
    let (mut stream, note) = match opened {
        Ok(x) => x,
        Err(e) => {
            log::error!("{label}: {e}");
            tele.set_status(format!("{label}: {e}. Passing dry audio."));
            shared.failed_model.store(current_index, Ordering::Release);
            tele.set_state(WorkerState::Failed);
            return;
        }
    };
    tele.set_status(format!("{label}: {note}"));
    log::info!("{label}: {note}");
    let mut target_seen = shared.target_version.load(Ordering::Acquire);
    shared.apply_targets(stream.model_mut());
    shared.ready_model.store(current_index, Ordering::Release);
    tele.set_state(WorkerState::Running);

    let poll = Duration::from_secs_f64(super::latency::WORKER_POLL_SECONDS / 2.0);
    let fade_len = ((SWITCH_FADE_SECONDS * host_rate as f64) as usize).max(1);
    let mut planar_in = vec![0.0f32; MAX_FRAMES_PER_CALL * channels];
    let mut planar_out = vec![0.0f32; MAX_FRAMES_PER_CALL * out_channels];
    let mut planar_new = vec![0.0f32; MAX_FRAMES_PER_CALL * out_channels];
    let (mut busy, mut audio) = (0.0f64, 0.0f64);
    // The slowest call and the calls over 5 ms, logged when the worker stops
    // (what a late hop cost, next to the host's own lateness).
    let (mut slowest_call, mut calls, mut calls_over_5ms) = (0.0f64, 0u64, 0u64);
    let mut switch: Option<Switch> = None;
    // The thread loading the model being switched to.
    let mut loader: Option<std::thread::JoinHandle<()>> = None;
    let mut failed_index: Option<usize> = None;
    // Input frames consumed since the stream (re)started.
    let mut frames_in: u64 = 0;
    let mut planar_sub_in = vec![0.0f32; MAX_FRAMES_PER_CALL * channels];

    while !shared.stop.load(Ordering::Acquire) {
        let requested = shared.epoch_requested.load(Ordering::Acquire);
        if requested != shared.epoch_done.load(Ordering::Relaxed) {
            let stale = input.slots();
            if let Ok(chunk) = input.read_chunk(stale) {
                chunk.commit_all();
            }
            stream.reset();
            frames_in = 0;
            if let Some(Switch::Warming { stream: s, warm_left, faded, start_at, .. }) = switch.as_mut() {
                s.reset();
                *start_at = 0;
                *warm_left = s.latency().total + (SWITCH_WARMUP_SECONDS * host_rate as f64) as usize;
                *faded = 0;
            }
            shared.epoch_done.store(requested, Ordering::Release);
            continue;
        }

        // Model choice: start loading a new model off this thread.
        let wanted = shared.requested_model.load(Ordering::Acquire);
        let switching_to = match &switch {
            Some(Switch::Loading { index, .. }) | Some(Switch::Warming { index, .. }) => Some(*index),
            None => None,
        };
        // One loader at a time: a choice made while a model loads waits for
        // it (a host fuzzing the choice must not start a load per change).
        let loading = matches!(switch, Some(Switch::Loading { .. }));
        if wanted != current_index && switching_to != Some(wanted) && failed_index != Some(wanted) && !loading {
            let (tx, rx) = std::sync::mpsc::channel();
            let cat = catalog.clone();
            let spawned = std::thread::Builder::new().name(format!("manifold-loader-{label}")).spawn(move || {
                flush_denormals_on_this_thread();
                let _ = tx.send(open_stream(&cat, wanted, host_rate, planned, out_channels));
            });
            if let Ok(handle) = spawned {
                // The previous loader has sent its model already: this join is immediate.
                if let Some(done) = loader.replace(handle) {
                    let _ = done.join();
                }
                tele.set_status(format!("{label}: switching model…"));
                let start_at = shared.switch_at_frame.load(Ordering::Acquire);
                switch = Some(Switch::Loading { index: wanted, start_at, result: rx });
            }
        }
        if wanted != failed_index.unwrap_or(usize::MAX) {
            failed_index = None;
        }
        if let Some(Switch::Loading { index, start_at, result }) = &switch {
            let (index, start_at) = (*index, *start_at);
            match result.try_recv() {
                Ok(Ok((mut s, note))) => {
                    shared.apply_targets(s.model_mut());
                    shared.ready_model.store(index, Ordering::Release);
                    let warm_left = s.latency().total + (SWITCH_WARMUP_SECONDS * host_rate as f64) as usize;
                    switch = Some(Switch::Warming { index, start_at, stream: s, note, warm_left, faded: 0 });
                }
                Ok(Err(e)) => {
                    log::error!("{label}: {e}");
                    tele.set_status(format!("{label}: {e}. Keeping the previous model."));
                    failed_index = Some(index);
                    shared.failed_model.store(index, Ordering::Release);
                    switch = None;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => switch = None,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
        }

        let target_now = shared.target_version.load(Ordering::Acquire);
        if target_now != target_seen {
            target_seen = target_now;
            shared.apply_targets(stream.model_mut());
            if let Some(Switch::Warming { stream: s, .. }) = switch.as_mut() {
                shared.apply_targets(s.model_mut());
            }
        }

        let frames = (input.slots() / channels).min(MAX_FRAMES_PER_CALL);
        if frames == 0 {
            std::thread::sleep(poll);
            continue;
        }
        let started = Instant::now();
        let Ok(chunk) = input.read_chunk(frames * channels) else { continue };
        for (i, x) in chunk.into_iter().enumerate() {
            planar_in[(i % channels) * frames + i / channels] = x;
        }
        let n = frames * channels;
        let post_filter = tele.post_filter();
        let conversion = tele.conversion();
        stream.model_mut().set_post_filter(post_filter);
        stream.model_mut().set_conversion(&conversion);
        if let Some(Switch::Warming { stream: s, .. }) = switch.as_mut() {
            s.model_mut().set_post_filter(post_filter);
            s.model_mut().set_conversion(&conversion);
        }
        stream.process(&planar_in[..n], &mut planar_out[..frames * out_channels], frames);
        let mut finished_switch = false;
        if let Some(Switch::Warming { stream: new, warm_left, faded, start_at, .. }) = switch.as_mut() {
            // The new stream hears the input from frame `start_at` on.
            let offset = start_at.saturating_sub(frames_in).min(frames as u64) as usize;
            let m = frames - offset;
            if m > 0 {
                for ch in 0..channels {
                    planar_sub_in[ch * m..(ch + 1) * m].copy_from_slice(&planar_in[ch * frames + offset..(ch + 1) * frames]);
                }
                new.process(&planar_sub_in[..m * channels], &mut planar_new[..m * out_channels], m);
            }
            for i in 0..m {
                if *warm_left > 0 {
                    *warm_left -= 1;
                    continue;
                }
                let g = *faded as f32 / fade_len as f32;
                for ch in 0..out_channels {
                    let k = ch * frames + offset + i;
                    let fresh = planar_new[ch * m + i];
                    // Past the fade, exactly the new model (bit for bit, however the chunks fall).
                    planar_out[k] = if g >= 1.0 { fresh } else { planar_out[k] + g * (fresh - planar_out[k]) };
                }
                *faded += 1;
            }
            finished_switch = *faded >= fade_len;
        }
        frames_in += frames as u64;
        if finished_switch {
            if let Some(Switch::Warming { index, stream: new, note, .. }) = switch.take() {
                stream = new;
                current_index = index;
                tele.set_status(format!("{label}: {note}"));
                log::info!("{label}: switched to {note}");
            }
        }
        let call = started.elapsed().as_secs_f64();
        busy += call;
        audio += frames as f64 / host_rate as f64;
        slowest_call = slowest_call.max(call);
        calls += 1;
        calls_over_5ms += u64::from(call > 0.005);
        tele.set_model_faults(stream.model().faults());
        tele.set_speech_to_noise(stream.model().speech_to_noise_db());

        // Hand the frames back; wait (off the audio thread) if the ring is full.
        let mut written = 0;
        while written < frames && !shared.stop.load(Ordering::Acquire) {
            let room = (output.slots() / out_channels).min(frames - written);
            if room == 0 {
                std::thread::sleep(poll);
                continue;
            }
            if let Ok(w) = output.write_chunk_uninit(room * out_channels) {
                let iter = (0..room * out_channels).map(|k| planar_out[(k % out_channels) * frames + written + k / out_channels]);
                w.fill_from_iter(iter);
            }
            written += room;
        }
        shared.frames_out.fetch_add(written as u64, Ordering::Release);
        if audio >= 0.5 {
            tele.set_worker_rtf((busy / audio) as f32);
            busy = 0.0;
            audio = 0.0;
        }
    }
    nice_plug::nice_log!("{label}: {calls} worker calls, the slowest {:.1} ms, {calls_over_5ms} over 5 ms", slowest_call * 1000.0);
    // A loader still running would outlive the plugin (and its library, when
    // the host unloads it): wait for it.
    if let Some(handle) = loader.take() {
        let _ = handle.join();
    }
    if let Some((s, key)) = shelf {
        s.put(key, current_index, stream.into_model());
    }
    tele.set_state(WorkerState::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::passthrough::StftPassthrough;

    fn model(hop: usize) -> Box<dyn HopModel> {
        Box::new(StftPassthrough::new(16000, 2 * hop, hop, 1))
    }

    #[test]
    fn the_shelf_keeps_the_last_models_by_how_they_were_built() {
        let shelf = ModelShelf::default();
        for (i, hop) in [64usize, 128, 256, 512].into_iter().enumerate() {
            shelf.put(format!("k{i}"), i, model(hop));
        }
        // The oldest fell off; a model is found only under its own key and index.
        assert!(shelf.take("k0", 0).is_none());
        assert!(shelf.take("k1", 2).is_none());
        assert_eq!(shelf.take("k1", 1).map(|m| m.hop()), Some(128));
        assert!(shelf.take("k1", 1).is_none(), "taken models leave the shelf");
        assert_eq!(shelf.take("k3", 3).map(|m| m.hop()), Some(512));
    }
}
