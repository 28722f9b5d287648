//! ONNX Runtime: one process-wide environment, sessions configured for real
//! time. Main/worker threads.
//!
//! The environment is created once per process and shared by every plugin
//! instance and activation: ONNX Runtime allows only one, and `ort`'s dynamic
//! loader succeeds only the first time it is called.
//!
//! Telemetry: official ONNX Runtime builds for Linux (1.31) start a usage
//! telemetry uploader when the runtime initialises: a background thread, a
//! device id and an SQLite cache under `~/.cache/Microsoft/DeveloperTools`.
//! Manifold turns it off before the library is loaded (see
//! [`opt_out_of_runtime_telemetry`]): an audio plugin must not phone home
//! from a user's studio, and that thread, still running while the process
//! exits, is a crash risk in every host.

use super::{store, RuntimeError};
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use std::path::Path;
use std::sync::OnceLock;

/// Where inference should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// CUDA execution provider; falls back to CPU (and says so) when absent.
    Cuda,
}

/// A session plus a plain-words note on where it runs.
pub struct LoadedSession {
    pub session: Session,
    pub device_note: String,
}

static ENVIRONMENT: OnceLock<Result<Environment, RuntimeError>> = OnceLock::new();

/// Loads the runtime library (once per process) from the model store.
pub fn environment() -> Result<&'static Environment, RuntimeError> {
    ENVIRONMENT
        .get_or_init(|| {
            let lib = store::find_runtime_library()?;
            load_environment(&lib)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The runtime's own opt-out switch, read once when it initialises: with it
/// set, no uploader thread, device id or offline cache is created.
/// (`DisableTelemetryEvents`, which `ort`'s `with_telemetry(false)` calls,
/// only silences events after the uploader has already started.)
pub const TELEMETRY_OPT_OUT_VAR: &str = "ORT_DISABLE_TELEMETRY";

/// Sets [`TELEMETRY_OPT_OUT_VAR`] to 1 unless the user has set it. Called
/// once, just before the runtime library is loaded.
fn opt_out_of_runtime_telemetry() {
    if std::env::var_os(TELEMETRY_OPT_OUT_VAR).is_none() {
        // Changing the environment races with another thread reading it
        // (glibc may free an outgrown `environ` array). This runs once per
        // process, at the first model load, and the runtime's only switch is
        // this variable: the risk is a one-time read by a host thread at that
        // instant, against an uploader thread in every session.
        std::env::set_var(TELEMETRY_OPT_OUT_VAR, "1");
    }
}

fn load_environment(lib: &Path) -> Result<Environment, RuntimeError> {
    opt_out_of_runtime_telemetry();
    let err = |reason: String| RuntimeError::LibraryLoad { path: lib.to_path_buf(), reason };
    // ort's loader may panic on a broken library; keep that inside this call.
    let lib_owned = lib.to_path_buf();
    let built = std::panic::catch_unwind(move || {
        ort::init_from(&lib_owned)
            .map_err(|e| e.to_string())?
            .with_name("manifold")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    })
    .map_err(|_| err("the loader panicked".into()))?;
    let env = built.map_err(err)?;
    log::info!("ONNX Runtime loaded from {}", lib.display());
    Ok(env)
}

/// Intra-op threads an offline render gives one model; 0: every core.
static OFFLINE_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Intra-op threads for offline renders: every core the process may use,
/// unless [`set_offline_threads`] chose fewer (`manifold batch` renders
/// several files at once, each on its share of the cores). Any thread.
pub fn offline_threads() -> usize {
    match OFFLINE_THREADS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Sets the intra-op threads of offline renders opened from now on (0: every
/// core). Main thread, before rendering.
pub fn set_offline_threads(threads: usize) {
    OFFLINE_THREADS.store(threads, std::sync::atomic::Ordering::Relaxed);
}

/// Opens `model` for real-time use: one intra-op thread (operators run on the
/// calling worker thread, which has flush-to-zero set), no spinning,
/// sequential execution, denormals as zero.
pub fn open_session(model: &Path, device: Device) -> Result<LoadedSession, RuntimeError> {
    open_session_with_threads(model, device, 1)
}

/// As [`open_session`], with `threads` intra-op threads: for offline renders,
/// where one model may use every core.
pub fn open_session_with_threads(model: &Path, device: Device, threads: usize) -> Result<LoadedSession, RuntimeError> {
    let env = environment()?;
    if !model.is_file() {
        return Err(RuntimeError::ModelCorrupt { path: model.to_path_buf(), reason: "file not found".into() });
    }
    let corrupt = |reason: String| RuntimeError::ModelCorrupt { path: model.to_path_buf(), reason };
    let opt = |e: ort::Error<ort::session::builder::SessionBuilder>| corrupt(format!("session options rejected: {e}"));
    let builder = Session::builder(env).map_err(|e| corrupt(e.to_string()))?;
    let builder = builder.with_optimization_level(GraphOptimizationLevel::Level3).map_err(opt)?;
    let builder = builder.with_intra_threads(threads.max(1)).map_err(opt)?;
    let builder = builder.with_inter_threads(1).map_err(opt)?;
    let builder = builder.with_parallel_execution(false).map_err(opt)?;
    let builder = builder.with_intra_op_spinning(false).map_err(opt)?;
    let builder = builder.with_inter_op_spinning(false).map_err(opt)?;
    let mut builder = builder.with_config_entry("session.set_denormal_as_zero", "1").map_err(opt)?;
    let mut device_note = "CPU".to_string();
    if device == Device::Cuda {
        let cuda = ort::ep::CUDA::default().build().error_on_failure();
        match builder.clone().with_execution_providers([cuda]) {
            Ok(b) => {
                builder = b;
                device_note = "GPU (CUDA)".into();
            }
            Err(e) => {
                device_note = format!("CPU (CUDA unavailable: {e})");
                log::warn!("{device_note}");
            }
        }
    }
    let session = builder.commit_from_file(model).map_err(|e| corrupt(e.to_string()))?;
    Ok(LoadedSession { session, device_note })
}
