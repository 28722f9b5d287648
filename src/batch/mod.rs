//! `manifold batch`: renders a whole library with one task (clean, stems,
//! convert, isolate). Resumable: a ledger in the output folder records each
//! input's content hash, the settings and the outputs' hashes, so running the
//! same command again skips what is done and retries what failed. Safe to
//! kill: every output is written under a temporary name and renamed when
//! complete. One bad input is recorded with its reason and never stops the
//! batch. Several files render at once on worker threads; the main thread
//! owns the ledger and the progress bar.

pub mod inputs;
pub mod ledger;

pub use inputs::{Job, Shard};
pub use ledger::{OutputFile, Record, Status};

use crate::offline::{self, PreparedConversion, RenderError};
use crate::plugins::clean::CleanModel;
use crate::plugins::stems::{SeparationMode, StemsModel};
use crate::runtime::onnx::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What every input goes through.
pub enum BatchTask {
    Clean { model: CleanModel, atten_limit_db: f32, device: Device },
    Stems { model: StemsModel, mode: SeparationMode, device: Device },
    Convert { prepared: Box<PreparedConversion>, settings: offline::ConvertSettings },
    Isolate { voice: PathBuf, embedding: Vec<f32>, device: Device },
}

fn device_name(device: Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda => "gpu-if-available",
    }
}

/// sha256 of each file, by name (a missing file reads "missing").
fn fingerprint(files: &[PathBuf]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = files
        .iter()
        .map(|f| {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (name, json!(ledger::sha256_file(f).unwrap_or_else(|_| "missing".into())))
        })
        .collect();
    serde_json::Value::Object(map)
}

impl BatchTask {
    pub fn cli_name(&self) -> &'static str {
        match self {
            BatchTask::Clean { .. } => "clean",
            BatchTask::Stems { .. } => "stems",
            BatchTask::Convert { .. } => "convert",
            BatchTask::Isolate { .. } => "isolate",
        }
    }

    /// Everything that changes the output: task, model and the sha256 of its
    /// files, settings, reference recordings' sha256, Manifold's version.
    /// Main thread (hashes the model files once per batch).
    pub fn settings(&self) -> serde_json::Value {
        let version = env!("CARGO_PKG_VERSION");
        match self {
            BatchTask::Clean { model, atten_limit_db, device } => {
                let files: Vec<PathBuf> = model.store_id().and_then(|id| crate::runtime::store::find_model(id).ok()).map(|m| vec![m.file_path()]).unwrap_or_default();
                json!({"task": "clean", "manifold": version, "model": model.cli_name(), "model_files": fingerprint(&files),
                       "atten_lim_db": atten_limit_db, "device": device_name(*device)})
            }
            BatchTask::Stems { model, mode, device } => {
                let quality = match mode {
                    SeparationMode::Offline => "full",
                    SeparationMode::Live(q) => q.cli_name(),
                };
                json!({"task": "stems", "manifold": version, "model": model.cli_name(), "model_files": fingerprint(&model.files()),
                       "stems": model.stems, "quality": quality, "device": device_name(*device)})
            }
            BatchTask::Convert { prepared, settings } => {
                let target = settings.target.as_ref().map(|t| ledger::sha256_file(t).unwrap_or_else(|_| "missing".into()));
                let live = match settings.mode {
                    crate::plugins::voice::ConversionMode::Offline => None,
                    crate::plugins::voice::ConversionMode::Live(l) => Some(l.cli_name()),
                };
                json!({"task": "convert", "manifold": version, "model": settings.model, "model_files": fingerprint(&prepared.model_files()),
                       "target_sha256": target, "strength": settings.controls.strength, "transpose": settings.controls.transpose_semitones,
                       "speaker": settings.controls.speaker_id, "mix": settings.wet, "live": live, "device": device_name(settings.device)})
            }
            BatchTask::Isolate { voice, device, .. } => {
                let files: Vec<PathBuf> = StemsModel::voice_isolation().files();
                json!({"task": "isolate", "manifold": version, "model": "voicefilter", "model_files": fingerprint(&files),
                       "voice_sha256": ledger::sha256_file(voice).unwrap_or_else(|_| "missing".into()), "device": device_name(*device)})
            }
        }
    }

    /// The files a job writes, relative to the output folder.
    pub fn outputs(&self, name: &str) -> Vec<String> {
        match self {
            BatchTask::Stems { model, .. } => model.stems.iter().map(|s| format!("{name}/{}", offline::stem_file_name(s))).collect(),
            _ => vec![format!("{name}.wav")],
        }
    }

    /// Renders `input` into `temp` (a file, or for stems a folder that gets
    /// one file per stem). Worker thread.
    fn render(&self, input: &Path, temp: &Path, progress: impl FnMut(u64, Option<u64>)) -> Result<offline::RenderReport, RenderError> {
        match self {
            BatchTask::Clean { model, atten_limit_db, device } => offline::render_clean_file(input, temp, *model, *atten_limit_db, *device, progress),
            BatchTask::Stems { model, mode, device } => offline::render_stems_to_dir(input, temp, model.clone(), *mode, *device, progress).map(|f| f.report),
            BatchTask::Convert { prepared, .. } => offline::render_converted_with(input, temp, prepared, progress),
            BatchTask::Isolate { embedding, device, .. } => offline::render_isolated_with(input, embedding, temp, *device, progress),
        }
    }
}

/// How a batch runs.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub out_dir: PathBuf,
    /// Files rendered at once.
    pub jobs: usize,
    /// Intra-op threads per file (0: the cores divided by `jobs`).
    pub threads: usize,
    /// Only this part of the inputs (a cluster run: one shard per task).
    pub shard: Option<Shard>,
    /// No progress bar and no per-input lines.
    pub quiet: bool,
}

/// What a batch did.
#[derive(Debug, Default)]
pub struct Summary {
    pub rendered: usize,
    pub skipped: usize,
    /// (input, reason).
    pub failed: Vec<(String, String)>,
    pub audio_seconds: f64,
    pub wall_seconds: f64,
    pub jobs: usize,
    pub threads: usize,
    pub ledger: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Input(#[from] inputs::InputError),
    #[error("cannot use the output folder {path}: {reason}")]
    OutDir { path: String, reason: String },
    #[error("cannot write the ledger {path}: {reason}")]
    Ledger { path: String, reason: String },
}

/// How one job ended.
enum Outcome {
    Skipped,
    Finished(Box<Record>),
}

/// This machine's name (temporary files carry it, so a process never
/// removes another machine's work in progress in a shared folder).
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(0);
    let name = if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() };
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    if clean.is_empty() { "host".into() } else { clean }
}

const TEMP_MARK: &str = ".manifold-tmp-";

/// Removes temporary files and folders a killed batch on this machine left
/// in `dir` (those of processes that are gone). Main thread.
fn remove_stale_temps(dir: &Path, host: &str) {
    let mut stack = vec![dir.to_path_buf()];
    let prefix = format!("{TEMP_MARK}{host}-");
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.filter_map(|e| e.ok()) {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if let Some(at) = name.find(&prefix) {
                let pid: Option<i32> = name[at + prefix.len()..].split('-').next().and_then(|p| p.parse().ok());
                // SAFETY: signal 0 only checks that the process exists.
                let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM));
                if !alive {
                    let _ = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                }
            } else if is_dir {
                stack.push(path);
            }
        }
    }
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
}

/// Everything a worker needs for a job.
struct Context<'a> {
    task: &'a BatchTask,
    settings: &'a serde_json::Value,
    previous: &'a std::collections::HashMap<String, Record>,
    out_dir: &'a Path,
    host: &'a str,
    temp_counter: &'a AtomicUsize,
}

impl Context<'_> {
    /// Hashes the input, skips it if the ledger says it is done, else renders
    /// it to temporary files and renames them into place. Worker thread.
    fn run_job(&self, job: &Job, in_flight_ms: &AtomicU64) -> Outcome {
        let started = Instant::now();
        let mut record = Record {
            name: job.name.clone(),
            input: job.input.display().to_string(),
            input_sha256: None,
            settings: self.settings.clone(),
            status: Status::Failed,
            outputs: Vec::new(),
            error: None,
            audio_seconds: 0.0,
            wall_seconds: 0.0,
            host: self.host.to_string(),
            pid: std::process::id(),
            finished_ms: 0,
        };
        let finish = |mut record: Record| {
            record.wall_seconds = started.elapsed().as_secs_f64();
            record.finished_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            Outcome::Finished(Box::new(record))
        };
        let input_sha = match ledger::sha256_file(&job.input) {
            Ok(h) => h,
            Err(e) => {
                record.error = Some(format!("cannot read {}: {e}", job.input.display()));
                return finish(record);
            }
        };
        record.input_sha256 = Some(input_sha.clone());
        if ledger::is_done(self.previous.get(&job.name), &input_sha, self.settings, self.out_dir) {
            return Outcome::Skipped;
        }
        match self.render_in_place(job, in_flight_ms) {
            Ok((outputs, audio_seconds)) => {
                record.status = Status::Done;
                record.outputs = outputs;
                record.audio_seconds = audio_seconds;
            }
            Err(e) => record.error = Some(e),
        }
        finish(record)
    }

    /// Renders to a temporary name beside the final one, syncs, renames,
    /// then hashes what was written.
    fn render_in_place(&self, job: &Job, in_flight_ms: &AtomicU64) -> Result<(Vec<OutputFile>, f64), String> {
        let finals = self.task.outputs(&job.name);
        let final_path = self.out_dir.join(&job.name);
        let parent = final_path.parent().unwrap_or(self.out_dir).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let base = final_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let seq = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = parent.join(format!(".{base}{TEMP_MARK}{}-{}-{seq}", self.host, std::process::id()));
        let stems = matches!(self.task, BatchTask::Stems { .. });
        let remove_temp = || {
            let _ = if stems { std::fs::remove_dir_all(&temp) } else { std::fs::remove_file(&temp) };
        };
        if std::fs::metadata(&job.input).is_ok_and(|m| m.len() == 0) {
            return Err("the file is empty (0 bytes)".into());
        }
        let header = crate::offline::AudioReader::open(&job.input).ok().map(|r| (r.sample_rate().max(1), r.total_frames()));
        let ms_per_frame = 1000.0 / header.map_or(48000, |h| h.0) as f64;
        let progress = |done: u64, _total: Option<u64>| in_flight_ms.store((done as f64 * ms_per_frame) as u64, Ordering::Relaxed);
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.task.render(&job.input, &temp, progress)));
        let report = match rendered {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                remove_temp();
                return Err(e.to_string());
            }
            Err(panic) => {
                remove_temp();
                return Err(format!("internal error (please report it): {}", panic_message(panic.as_ref())));
            }
        };
        // A file that ends long before its header says is damaged (or still
        // being copied): no output under its name, and the reason.
        if let Some((rate, Some(promised))) = header {
            let held = (report.audio_seconds * rate as f64).round() as u64;
            if (held as f64) < promised as f64 * 0.99 - rate as f64 * 0.05 {
                remove_temp();
                return Err(format!(
                    "the file ends early: its header promises {:.2} s, it holds {:.2} s (damaged, or still being copied)",
                    promised as f64 / rate as f64,
                    held as f64 / rate as f64
                ));
            }
        }
        // The files from the temporary place to their final names.
        let moves: Vec<(PathBuf, PathBuf)> = if stems {
            finals.iter().map(|f| (temp.join(Path::new(f).file_name().unwrap_or_default()), self.out_dir.join(f))).collect()
        } else {
            vec![(temp.clone(), self.out_dir.join(&finals[0]))]
        };
        for (from, to) in &moves {
            let placed = sync_file(from).and_then(|_| {
                if let Some(dir) = to.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::rename(from, to)
            });
            if let Err(e) = placed {
                remove_temp();
                return Err(format!("cannot write {}: {e}", to.display()));
            }
        }
        if stems {
            let _ = std::fs::remove_dir_all(&temp);
        }
        if let Some(dir) = final_path.parent() {
            let _ = sync_file(dir);
        }
        let mut outputs = Vec::new();
        for f in &finals {
            let path = self.out_dir.join(f);
            let bytes = std::fs::metadata(&path).map_err(|e| format!("cannot read back {}: {e}", path.display()))?.len();
            let sha256 = ledger::sha256_file(&path).map_err(|e| format!("cannot read back {}: {e}", path.display()))?;
            outputs.push(OutputFile { path: f.clone(), sha256, bytes });
        }
        Ok((outputs, report.audio_seconds))
    }
}

/// Length in milliseconds of each input, from its header (0 when unknown),
/// for the progress bar.
fn probe_ms(path: &Path) -> u64 {
    crate::offline::AudioReader::open(path).ok().and_then(|r| r.total_frames().map(|f| f * 1000 / r.sample_rate().max(1) as u64)).unwrap_or(0)
}

/// Runs a batch. Main thread; renders on `options.jobs` worker threads.
pub fn run(task: &BatchTask, inputs: &[PathBuf], options: &BatchOptions) -> Result<Summary, BatchError> {
    let started = Instant::now();
    let out_err = |e: std::io::Error| BatchError::OutDir { path: options.out_dir.display().to_string(), reason: e.to_string() };
    std::fs::create_dir_all(&options.out_dir).map_err(out_err)?;
    let out_dir = std::fs::canonicalize(&options.out_dir).map_err(out_err)?;
    let plan = inputs::plan(inputs, &out_dir, options.shard)?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = options.jobs.clamp(1, plan.jobs.len().max(1));
    let threads = if options.threads > 0 { options.threads } else { (cores / jobs).max(1) };
    crate::runtime::onnx::set_offline_threads(threads);

    let host = host_name();
    remove_stale_temps(&out_dir, &host);
    let settings = task.settings();
    let previous = ledger::read_all(&out_dir);
    let ledger_path = ledger::ledger_path(&out_dir, options.shard);
    let ledger_err = |e: std::io::Error| BatchError::Ledger { path: ledger_path.display().to_string(), reason: e.to_string() };
    let mut ledger = ledger::Ledger::open(&ledger_path).map_err(ledger_err)?;

    let mut summary = Summary { jobs, threads, ledger: ledger_path.clone(), ..Summary::default() };
    for (input, reason) in &plan.clashes {
        summary.failed.push((input.display().to_string(), reason.clone()));
    }

    let lengths: Vec<u64> = plan.jobs.iter().map(|j| probe_ms(&j.input)).collect();
    let bar = if options.quiet { ProgressBar::hidden() } else { ProgressBar::new(lengths.iter().sum::<u64>().max(1)) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent}% of the audio, {msg} ({eta} left)").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let total_jobs = plan.jobs.len();
    let message = |s: &Summary| format!("{} of {total_jobs} files", s.rendered + s.skipped + s.failed.len() - plan.clashes.len());
    bar.set_message(message(&summary));

    let next = AtomicUsize::new(0);
    let temp_counter = AtomicUsize::new(0);
    let in_flight: Vec<AtomicU64> = (0..jobs).map(|_| AtomicU64::new(0)).collect();
    let context = Context { task, settings: &settings, previous: &previous, out_dir: &out_dir, host: &host, temp_counter: &temp_counter };
    let (sender, receiver) = crossbeam_channel::unbounded::<(usize, Outcome)>();
    let mut ledger_failure = None;
    std::thread::scope(|scope| {
        for slot in &in_flight {
            let sender = sender.clone();
            let (next, context, plan) = (&next, &context, &plan);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = plan.jobs.get(i) else { break };
                let outcome = context.run_job(job, slot);
                slot.store(0, Ordering::Relaxed);
                if sender.send((i, outcome)).is_err() {
                    break;
                }
            });
        }
        drop(sender);
        let mut finished_ms = 0u64;
        loop {
            match receiver.recv_timeout(Duration::from_millis(250)) {
                Ok((i, Outcome::Skipped)) => {
                    summary.skipped += 1;
                    // Not work done now: out of the total, so the ETA holds.
                    bar.set_length(bar.length().unwrap_or(1).saturating_sub(lengths[i]).max(1));
                }
                Ok((i, Outcome::Finished(record))) => {
                    finished_ms += lengths[i];
                    if ledger_failure.is_none() {
                        if let Err(e) = ledger.append(&record) {
                            // Keep rendering nothing new: what is not in the
                            // ledger would be rendered again anyway.
                            next.store(usize::MAX / 2, Ordering::Relaxed);
                            ledger_failure = Some(ledger_err(e));
                        }
                    }
                    match record.status {
                        Status::Done => {
                            summary.rendered += 1;
                            summary.audio_seconds += record.audio_seconds;
                            if !options.quiet {
                                bar.println(format!("done    {}", record.name));
                            }
                        }
                        Status::Failed => {
                            let reason = record.error.clone().unwrap_or_default();
                            if !options.quiet {
                                bar.println(format!("FAILED  {}: {reason}", record.input));
                            }
                            summary.failed.push((record.input.clone(), reason));
                        }
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
            }
            let live: u64 = in_flight.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            bar.set_position(finished_ms + live);
            bar.set_message(message(&summary));
        }
    });
    bar.finish_and_clear();
    if let Some(e) = ledger_failure {
        return Err(e);
    }
    summary.wall_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

impl Summary {
    /// What the user reads at the end.
    pub fn describe(&self) -> String {
        let speed = if self.rendered == 0 {
            String::new()
        } else {
            format!(
                "; {:.1} s of audio in {:.1} s ({:.1}x real time; {} file(s) at once, {} thread(s) each)",
                self.audio_seconds,
                self.wall_seconds,
                self.audio_seconds / self.wall_seconds.max(1e-9),
                self.jobs,
                self.threads
            )
        };
        let mut s = format!("{} rendered, {} skipped (already done), {} failed{speed}; ledger {}", self.rendered, self.skipped, self.failed.len(), self.ledger.display());
        for (input, reason) in &self.failed {
            s.push_str(&format!("\n  failed: {input}: {reason}"));
        }
        s
    }
}
