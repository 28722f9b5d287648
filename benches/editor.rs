//! Does an open, redrawing editor show up in the audio thread's cost?
//! (`cargo bench --bench editor`, or `cargo xtask bench`, which builds the
//! release bundle first.) Not a test: it prints, and writes the table to
//! `target/bench-editor/results.md`.
//!
//! For each plugin (Clean, Stems, Voice), in one run, through the release
//! CLAP bundle and the editor test's headless host
//! (`tests/common/editor_host.rs`: Xvfb, a host window, `clap.gui`):
//! - activate at 48 kHz, 128-frame blocks, all ports (stereo main plus the
//!   plugin's aux ports); a host audio thread paced like a sound card (one
//!   block every 128 / 48000 s, sleeping until the next deadline) feeds a
//!   speech-like signal, so meters and the editor have something to show;
//! - every `process` call's CPU time on the audio thread
//!   (CLOCK_THREAD_CPUTIME_ID, i.e. not counting time the thread was
//!   preempted) and its wall time are recorded;
//! - phases alternate editor closed / open (created, shown and repainting:
//!   the meters ask for a frame every 50 ms, and the pointer moves over the
//!   window, which makes egui redraw on every motion), three of each, so
//!   slow drifts of a shared machine fall on both conditions alike; the
//!   first second after each transition is discarded;
//! - reported per condition: mean, median, p99 and max CPU per block (µs
//!   and % of the 2.667 ms block period), open / closed ratios of mean and
//!   p99, blocks whose wall time exceeded the period, the frames the editor
//!   drew (the layout file's frame counter, `MANIFOLD_EDITOR_LAYOUT`) and the
//!   whole process's CPU use (which does include the editor's drawing).
//!
//! Voice and Stems cannot keep up live on a small machine: their worker falls
//! back to aligned dry audio. That is irrelevant here: only the audio
//! thread is measured.
//!
//! Environment:
//! - `MANIFOLD_BENCH_BUNDLE`: the CLAP bundle (default
//!   `target/bundled/Manifold.clap`). A debug build (nice-plug's allocation
//!   checks on the audio thread, unoptimised code) is refused. The bundle is
//!   copied to `target/bench-editor/` and loaded from there, so rebuilding
//!   `target/bundled` meanwhile (the editor test's debug bundle) is harmless;
//!   the copy finds its models in `target/manifold-data`.
//! - `MANIFOLD_BENCH_EDITOR_SECONDS`: length of one phase (default 8).
//! - `MANIFOLD_BENCH_EDITOR_MOUSE=0`: don't move the pointer over the editor
//!   (meter repaints only).
//! - Arguments: plugin ids or their last part (`clean`, `stems`, `voice`) to
//!   run only those.
//!
//! Needs Xvfb (`cargo xtask test` or `cargo xtask bench` install it).

#[path = "../tests/common/editor_host.rs"]
mod editor_host;

use editor_host::*;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SAMPLE_RATE: f64 = 48000.0;
const BLOCK: usize = 128;
/// Discarded after every transition.
const SETTLE: Duration = Duration::from_secs(1);
/// Processing before the first phase (the worker loads its model).
const WARM_UP: Duration = Duration::from_secs(3);
/// How often the main thread services the plugin (and moves the pointer).
const TICK: Duration = Duration::from_millis(20);
const PLUGINS: [&str; 3] = [CLEAN_ID, STEMS_ID, VOICE_ID];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Editor {
    Closed,
    Open,
}

impl Editor {
    fn name(self) -> &'static str {
        match self {
            Editor::Closed => "closed",
            Editor::Open => "open",
        }
    }
}

const PHASES: [Editor; 6] = [Editor::Closed, Editor::Open, Editor::Closed, Editor::Open, Editor::Closed, Editor::Open];
/// The audio thread records nothing while the phase is this.
const NOT_MEASURING: usize = usize::MAX;

fn period_ns() -> f64 {
    BLOCK as f64 / SAMPLE_RATE * 1e9
}

/// One measured block.
#[derive(Clone, Copy)]
struct Record {
    phase: u8,
    cpu_ns: u64,
    wall_ns: u64,
}

/// One phase, as the main thread saw it.
struct Phase {
    editor: Editor,
    seconds: f64,
    /// Frames the editor drew during the measured part (open phases).
    frames: Option<u64>,
    /// CPU time of the whole process (all threads) during the measured part.
    process_cpu_s: f64,
    xruns: u64,
}

struct Stats {
    blocks: usize,
    mean_us: f64,
    median_us: f64,
    p99_us: f64,
    max_us: f64,
    over_period: usize,
}

impl Stats {
    fn of(records: &[Record]) -> Stats {
        let mut cpu: Vec<u64> = records.iter().map(|r| r.cpu_ns).collect();
        cpu.sort_unstable();
        let n = cpu.len();
        let rank = |q: f64| cpu[((q * n as f64).ceil() as usize).clamp(1, n) - 1] as f64 / 1e3;
        Stats {
            blocks: n,
            mean_us: cpu.iter().sum::<u64>() as f64 / n.max(1) as f64 / 1e3,
            median_us: if n > 0 { rank(0.5) } else { f64::NAN },
            p99_us: if n > 0 { rank(0.99) } else { f64::NAN },
            max_us: cpu.last().map_or(f64::NAN, |&m| m as f64 / 1e3),
            over_period: records.iter().filter(|r| r.wall_ns as f64 > period_ns()).count(),
        }
    }
}

fn pct(us: f64) -> f64 {
    100.0 * us * 1e3 / period_ns()
}

/// CPU time of the whole process (user + system), in seconds.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct PluginResult {
    plugin_id: String,
    phases: Vec<Phase>,
    records: Vec<Record>,
    realtime: bool,
    ports: String,
}

// ---------------------------------------------------------------------------
// The bundle
// ---------------------------------------------------------------------------

/// Checks the bundle is not a debug build and copies it where the run
/// loads it from. Returns (the copy, a description for the report).
fn prepare_bundle() -> (PathBuf, String) {
    let source = std::env::var_os("MANIFOLD_BENCH_BUNDLE").map(PathBuf::from).unwrap_or_else(default_bundle);
    let bytes = std::fs::read(&source).unwrap_or_else(|e| {
        panic!("cannot read the bundle {}: {e}; build it with `cargo xtask bundle manifold --release` (or set MANIFOLD_BENCH_BUNDLE)", source.display())
    });
    // nice-plug's `assert_process_allocs` (on in this project) wraps the
    // allocator in debug builds only: its name in the library marks a debug
    // build, whose audio thread also pays for allocation checks.
    let marker = b"assert_no_alloc";
    if bytes.windows(marker.len()).any(|w| w == marker) {
        panic!(
            "{} is a debug build (it contains nice-plug's assert_no_alloc checks): build the release bundle with `cargo xtask bundle manifold --release`, or point MANIFOLD_BENCH_BUNDLE at one",
            source.display()
        );
    }
    let modified = std::fs::metadata(&source).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    let dir = workspace_path("target/bench-editor");
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("Manifold.clap");
    std::fs::write(&copy, &bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", copy.display()));
    let about = format!(
        "{} ({:.1} MB, release: no assert_no_alloc, built {} ago), run from a copy in {}",
        source.display(),
        bytes.len() as f64 / 1e6,
        modified.map_or("?".into(), |d| format!("{:.0} min", d.as_secs_f64() / 60.0)),
        dir.display()
    );
    (copy, about)
}

// ---------------------------------------------------------------------------
// One plugin
// ---------------------------------------------------------------------------

fn run_plugin(entry: &clack_host::prelude::PluginEntry, display: &str, plugin_id: &str, phase_len: Duration, mouse: bool) -> PluginResult {
    let mut s = Session::new(entry, plugin_id);
    let _ = std::fs::remove_file(s.layout_path());
    let ports = s.port_layout();
    let ports = format!("in {:?}, out {:?}", ports.inputs, ports.outputs);

    let phase = Arc::new(AtomicUsize::new(NOT_MEASURING));
    let blocks_per_s = SAMPLE_RATE / BLOCK as f64;
    let capacity = (PHASES.len() as f64 * phase_len.as_secs_f64() * blocks_per_s * 1.2) as usize + 1000;
    let records = Arc::new(Mutex::new(Vec::<Record>::with_capacity(capacity)));
    let sink: TimingSink = {
        let (phase, records) = (phase.clone(), records.clone());
        Box::new(move |t: BlockTiming| {
            let p = phase.load(Ordering::Relaxed);
            if p == NOT_MEASURING {
                return;
            }
            let mut r = records.lock().unwrap();
            if r.len() < r.capacity() {
                r.push(Record { phase: p as u8, cpu_ns: t.cpu_ns, wall_ns: t.wall_ns });
            }
        })
    };
    s.start_audio_with(AudioSettings { sample_rate: SAMPLE_RATE, block: BLOCK, signal: Signal::SpeechLike, realtime: true, on_block: Some(sink) });
    let shared = s.audio.as_ref().unwrap().shared.clone();
    s.wait_for(WARM_UP, |_| false);

    let mut open = false;
    let mut phases = Vec::new();
    let mut tick: u64 = 0;
    for (i, &editor) in PHASES.iter().enumerate() {
        phase.store(NOT_MEASURING, Ordering::SeqCst);
        match editor {
            Editor::Open => {
                let _ = std::fs::remove_file(s.layout_path());
                s.open_editor(display);
                open = true;
            }
            Editor::Closed => {
                if open {
                    s.x().pointer_away();
                    s.close_editor();
                    open = false;
                }
            }
        }
        // Services the plugin for `d`, moving the pointer over the editor.
        let mut serve = |s: &mut Session, d: Duration| {
            let until = Instant::now() + d;
            while Instant::now() < until {
                s.pump();
                if open && mouse {
                    // A Lissajous path over the whole window (no clicks).
                    let (w, h) = (s.size.width.max(40) as f64 - 20.0, s.size.height.max(40) as f64 - 20.0);
                    let t = tick as f64 * 0.05;
                    let point = ((10.0 + w * (0.5 + 0.5 * (1.3 * t).sin())) as i32, (10.0 + h * (0.5 + 0.5 * (0.7 * t).sin())) as i32);
                    let at = s.at(point);
                    s.x().motion(at);
                    tick += 1;
                }
                std::thread::sleep(TICK);
            }
        };
        serve(&mut s, SETTLE);
        let frames0 = if open { s.layout().map(|l| l.frame) } else { None };
        let (cpu0, xruns0, t0) = (process_cpu_s(), shared.xruns.load(Ordering::SeqCst), Instant::now());
        phase.store(i, Ordering::SeqCst);
        serve(&mut s, phase_len.saturating_sub(SETTLE));
        phase.store(NOT_MEASURING, Ordering::SeqCst);
        let seconds = t0.elapsed().as_secs_f64();
        let process_cpu = process_cpu_s() - cpu0;
        let xruns = shared.xruns.load(Ordering::SeqCst) - xruns0;
        let frames = if open { s.layout().map(|l| l.frame).zip(frames0).map(|(b, a)| b.saturating_sub(a)) } else { None };
        let measured: Vec<Record> = records.lock().unwrap().iter().filter(|r| r.phase as usize == i).copied().collect();
        let st = Stats::of(&measured);
        eprintln!(
            "editor bench: {plugin_id} phase {} ({}): {} blocks, CPU mean {:.1} µs, p99 {:.1} µs, max {:.1} µs, wall > period {}, xruns {xruns}, process CPU {:.0} %{}",
            i + 1,
            editor.name(),
            st.blocks,
            st.mean_us,
            st.p99_us,
            st.max_us,
            st.over_period,
            100.0 * process_cpu / seconds,
            frames.map_or(String::new(), |f| format!(", editor drew {f} frames ({:.0} fps)", f as f64 / seconds))
        );
        phases.push(Phase { editor, seconds, frames, process_cpu_s: process_cpu, xruns });
    }
    if open {
        s.x().pointer_away();
        s.close_editor();
    }
    let realtime = shared.realtime.load(Ordering::SeqCst);
    s.stop_audio();
    drop(s);
    let records = std::mem::take(&mut *records.lock().unwrap());
    PluginResult { plugin_id: plugin_id.into(), phases, records, realtime, ports }
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

fn condition(result: &PluginResult, editor: Editor) -> (Stats, Option<u64>, f64, f64, u64) {
    let ids: Vec<usize> = result.phases.iter().enumerate().filter(|(_, p)| p.editor == editor).map(|(i, _)| i).collect();
    let records: Vec<Record> = result.records.iter().filter(|r| ids.contains(&(r.phase as usize))).copied().collect();
    let phases = ids.iter().map(|&i| &result.phases[i]);
    let seconds: f64 = phases.clone().map(|p| p.seconds).sum();
    let frames = phases.clone().map(|p| p.frames).sum::<Option<u64>>();
    let cpu: f64 = phases.clone().map(|p| p.process_cpu_s).sum();
    let xruns = phases.map(|p| p.xruns).sum();
    (Stats::of(&records), frames, seconds, cpu, xruns)
}

fn report(results: &[PluginResult], about: &str, phase_len: Duration, mouse: bool, wall: Duration, load: (String, String)) -> String {
    let period_ms = period_ns() / 1e6;
    let mut md = String::new();
    let _ = writeln!(md, "# Editor open vs closed: the audio thread's cost per block\n");
    let _ = writeln!(md, "- Command: `cargo bench --bench editor` (after `cargo xtask bundle manifold --release`; `cargo xtask bench` does both)");
    let _ = writeln!(md, "- Bundle: {about}");
    let commit = std::process::Command::new("git").args(["describe", "--always", "--dirty"]).current_dir(workspace_path(".")).output().ok();
    let commit = commit.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
    let _ = writeln!(md, "- Tree: `{commit}` (the bundle may have been built from another state)");
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()));
    let _ = writeln!(
        md,
        "- Machine: {} cores ({}), load average {} at the start, {} at the end; editor drawn by Mesa (llvmpipe) into Xvfb",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu.unwrap_or_default(),
        load.0,
        load.1
    );
    let _ = writeln!(
        md,
        "- 48 kHz, {BLOCK}-frame blocks (period {period_ms:.3} ms), speech-like input on every input port, paced host audio thread ({}); phases of {} s alternating closed/open ×3, first {:.0} s after each transition discarded; pointer {}; whole run {:.0} s",
        if results.iter().all(|r| r.realtime) { "SCHED_FIFO granted" } else { "normal priority: SCHED_FIFO was refused" },
        phase_len.as_secs_f64(),
        SETTLE.as_secs_f64(),
        if mouse { "moving over the open editor every 20 ms" } else { "still (meter repaints only)" },
        wall.as_secs_f64()
    );
    let _ = writeln!(md, "- CPU = the audio thread's CPU time inside `process` (CLOCK_THREAD_CPUTIME_ID); % = of the block period. \"Wall > period\" = `process` calls whose wall time exceeded {period_ms:.3} ms (preemption included). \"Process CPU\" = all threads of the host process (plugin worker, editor, llvmpipe; not Xvfb), in cores. \"xruns\" = times the audio thread started a block more than a period late and restarted its schedule.\n");
    let _ = writeln!(
        md,
        "| Plugin | Editor | Blocks | CPU mean µs (%) | median µs | p99 µs (%) | max µs | mean open/closed | p99 open/closed | wall > period | editor frames (fps) | process CPU (cores) |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let short = r.plugin_id.rsplit('.').next().unwrap();
        let (closed, ..) = condition(r, Editor::Closed);
        for editor in [Editor::Closed, Editor::Open] {
            let (st, frames, seconds, cpu, _) = condition(r, editor);
            let ratios = if editor == Editor::Open { (format!("{:.3}", st.mean_us / closed.mean_us), format!("{:.3}", st.p99_us / closed.p99_us)) } else { ("—".into(), "—".into()) };
            let _ = writeln!(
                md,
                "| {short} | {} | {} | {:.1} ({:.2} %) | {:.1} | {:.1} ({:.2} %) | {:.1} | {} | {} | {} ({:.3} %) | {} | {:.2} |",
                editor.name(),
                st.blocks,
                st.mean_us,
                pct(st.mean_us),
                st.median_us,
                st.p99_us,
                pct(st.p99_us),
                st.max_us,
                ratios.0,
                ratios.1,
                st.over_period,
                100.0 * st.over_period as f64 / st.blocks.max(1) as f64,
                frames.map_or("—".into(), |f| format!("{f} ({:.0})", f as f64 / seconds)),
                cpu / seconds
            );
        }
    }
    let _ = writeln!(md, "\nPer phase (in the order run):\n");
    let _ = writeln!(md, "| Plugin | Phase | Editor | Blocks | CPU mean µs | p99 µs | max µs | wall > period | xruns | editor fps | process CPU (cores) |");
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let short = r.plugin_id.rsplit('.').next().unwrap();
        for (i, p) in r.phases.iter().enumerate() {
            let records: Vec<Record> = r.records.iter().filter(|x| x.phase as usize == i).copied().collect();
            let st = Stats::of(&records);
            let _ = writeln!(
                md,
                "| {short} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {:.2} |",
                i + 1,
                p.editor.name(),
                st.blocks,
                st.mean_us,
                st.p99_us,
                st.max_us,
                st.over_period,
                p.xruns,
                p.frames.map_or("—".into(), |f| format!("{:.0}", f as f64 / p.seconds)),
                p.process_cpu_s / p.seconds
            );
        }
    }
    let _ = writeln!(md, "\nPorts (channels per port): {}", results.iter().map(|r| format!("{}: {}", r.plugin_id, r.ports)).collect::<Vec<_>>().join("; "));
    md
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn main() {
    let started = Instant::now();
    let load_start = loadavg();
    let phase_len = Duration::from_secs_f64(std::env::var("MANIFOLD_BENCH_EDITOR_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(8.0));
    assert!(phase_len > SETTLE + Duration::from_millis(500), "MANIFOLD_BENCH_EDITOR_SECONDS must exceed {:.1} s", SETTLE.as_secs_f64() + 0.5);
    let mouse = std::env::var("MANIFOLD_BENCH_EDITOR_MOUSE").map_or(true, |v| v != "0");
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let plugins: Vec<&str> = PLUGINS.iter().copied().filter(|id| wanted.is_empty() || wanted.iter().any(|w| id == w || id.ends_with(&format!(".{w}")))).collect();
    assert!(!plugins.is_empty(), "no plugin matches {wanted:?} (have {PLUGINS:?})");

    let (bundle, about) = prepare_bundle();
    eprintln!("editor bench: {about}");
    // The layout files go to the bench's own folder, so the editor test can
    // run meanwhile.
    use_layout_dir(workspace_path("target/bench-editor/layout"));
    let display = x_server();
    let entry = load_bundle(&bundle);
    let results: Vec<PluginResult> = plugins.iter().map(|id| run_plugin(&entry, display, id, phase_len, mouse)).collect();

    let md = report(&results, &about, phase_len, mouse, started.elapsed(), (load_start, loadavg()));
    println!("\n{md}");
    let path = workspace_path("target/bench-editor/results.md");
    std::fs::write(&path, &md).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    eprintln!("editor bench: written {} ({:.0} s)", path.display(), started.elapsed().as_secs_f64());
    if results.iter().any(|r| !r.realtime) {
        eprintln!("editor bench: the audio thread ran at normal priority (SCHED_FIFO refused): wall-time overruns include ordinary preemption");
    }
}
