//! The worker thread: loads the model, then turns input-ring audio into
//! output-ring audio through a [`HostRateStream`]. May allocate and block;
//! never touches the audio thread's state except through the rings and
//! atomics in [`Shared`].

use super::telemetry::{Telemetry, WorkerState};
use crate::dsp::sanitize::flush_denormals_on_this_thread;
use crate::pipelines::stream::{HostRateStream, StreamLatency, MAX_FRAMES_PER_CALL};
use crate::pipelines::HopModel;
use crate::runtime::RuntimeError;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Builds the model on the worker thread (model loading never happens on the
/// audio thread, nor blocks activation).
pub type ModelLoader = Box<dyn FnOnce() -> Result<Box<dyn HopModel>, RuntimeError> + Send>;

/// State shared by the audio thread and the worker.
pub struct Shared {
    pub telemetry: Arc<Telemetry>,
    /// Bumped by the audio thread to ask for a reset.
    pub epoch_requested: AtomicU64,
    /// Set by the worker once it has dropped stale audio and reset its state.
    pub epoch_done: AtomicU64,
    pub stop: AtomicBool,
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
    pub channels: usize,
    pub host_rate: u32,
    /// The delay the host was told about; the stream must match it exactly.
    pub planned: StreamLatency,
    pub loader: ModelLoader,
    pub label: String,
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

fn run(setup: WorkerSetup) {
    flush_denormals_on_this_thread();
    let WorkerSetup { shared, mut input, mut output, channels, host_rate, planned, loader, label } = setup;
    let tele = shared.telemetry.clone();
    tele.set_state(WorkerState::Loading);
    tele.set_status(format!("{label}: loading model"));

    let loaded = loader().and_then(|model| {
        let name = model.name().to_string();
        let device = model.device_note().to_string();
        let stream = HostRateStream::new(model, host_rate).map_err(|e| RuntimeError::Inference(e.to_string()))?;
        if stream.latency() != planned {
            return Err(RuntimeError::Inference(format!(
                "model latency {:?} differs from the reported {:?}",
                stream.latency(),
                planned
            )));
        }
        Ok((stream, name, device))
    });
    let (mut stream, name, device) = match loaded {
        Ok(x) => x,
        Err(e) => {
            log::error!("{label}: {e}");
            tele.set_status(format!("{label}: {e}. Passing dry audio."));
            tele.set_state(WorkerState::Failed);
            return;
        }
    };
    tele.set_status(format!("{label}: {name} on {device}"));
    log::info!("{label}: {name} running on {device}");
    tele.set_state(WorkerState::Running);

    let poll = Duration::from_secs_f64(super::latency::WORKER_POLL_SECONDS / 2.0);
    let mut planar_in = vec![0.0f32; MAX_FRAMES_PER_CALL * channels];
    let mut planar_out = vec![0.0f32; MAX_FRAMES_PER_CALL * channels];
    let (mut busy, mut audio) = (0.0f64, 0.0f64);

    while !shared.stop.load(Ordering::Acquire) {
        let requested = shared.epoch_requested.load(Ordering::Acquire);
        if requested != shared.epoch_done.load(Ordering::Relaxed) {
            let stale = input.slots();
            if let Ok(chunk) = input.read_chunk(stale) {
                chunk.commit_all();
            }
            stream.reset();
            shared.epoch_done.store(requested, Ordering::Release);
            continue;
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
        stream.process(&planar_in[..frames * channels], &mut planar_out[..frames * channels], frames);
        busy += started.elapsed().as_secs_f64();
        audio += frames as f64 / host_rate as f64;
        tele.set_model_faults(stream.model().faults());

        // Hand the frames back; wait (off the audio thread) if the ring is full.
        let mut written = 0;
        while written < frames && !shared.stop.load(Ordering::Acquire) {
            let room = (output.slots() / channels).min(frames - written);
            if room == 0 {
                std::thread::sleep(poll);
                continue;
            }
            if let Ok(w) = output.write_chunk_uninit(room * channels) {
                let iter = (0..room * channels).map(|k| planar_out[(k % channels) * frames + written + k / channels]);
                w.fill_from_iter(iter);
            }
            written += room;
        }
        if audio >= 0.5 {
            tele.set_worker_rtf((busy / audio) as f32);
            busy = 0.0;
            audio = 0.0;
        }
    }
    tele.set_state(WorkerState::Stopped);
}
