//! The headless CLAP host with an X11 parent window that the editor test
//! (`tests/editor.rs`) and the editor bench (`benches/editor.rs`, which
//! includes this file with `#[path]`) share: Xvfb, the host's handlers, one
//! plugin instance (`Session`) with its parameters, audio ports, editor
//! (`clap.gui` create / set_parent / show / hide / destroy) and a paced host
//! audio thread, main-thread servicing, the editor's layout file, and the X
//! side (host window, XTest input, screenshots).
//!
//! Threads: the caller's thread is the host's main thread (instance,
//! `clap.gui`, `clap.params`, `on_main_thread` whenever the plugin asks,
//! `flush` while the plugin is inactive); a host audio thread calls
//! `process` at real-time pace, passes the host's parameter events in and
//! collects the plugin's output events; the editor draws and handles input on
//! baseview's own window thread.

// Each user (test, bench) uses a different part of this module.
#![allow(dead_code)]

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::gui::{GuiApiType, GuiConfiguration, GuiSize, HostGui, HostGuiImpl, PluginGui, Window as ClapWindow};
use clack_extensions::latency::{HostLatency, HostLatencyImpl};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer, ParamRescanFlags, PluginParams,
};
use clack_host::events::event_types::{ParamGestureBeginEvent, ParamGestureEndEvent, ParamValueEvent};
use clack_host::prelude::*;
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::xproto::{self, ConnectionExt as _, CreateWindowAux, EventMask, ImageFormat, ImageOrder, MapState, WindowClass};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;


pub const CLEAN_ID: &str = "com.manifold.clean";
pub const STEMS_ID: &str = "com.manifold.stems";
pub const VOICE_ID: &str = "com.manifold.voice";

/// Where the host's window sits on the X screen.
pub const WINDOW_POS: (i16, i16) = (16, 16);
/// Generous deadline for anything the editor has to do (llvmpipe on a
/// small, busy machine, debug build).
pub const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Prerequisites: the bundle, the X server, the layout folder
// ---------------------------------------------------------------------------

pub fn workspace_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The bundle the tests load (the debug build `cargo xtask bundle manifold`
/// makes; `--release` writes the same path).
pub fn default_bundle() -> PathBuf {
    workspace_path("target/bundled/Manifold.clap")
}

pub fn load_bundle(path: &Path) -> PluginEntry {
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask bundle manifold` (or run everything with `cargo xtask test`)",
        path.display()
    );
    // SAFETY: loading a CLAP library runs its initialisation code; this is the
    // project's own bundle, which is exactly what is under test.
    unsafe { PluginEntry::load(path) }.unwrap_or_else(|e| panic!("cannot load CLAP entry {}: {e}", path.display()))
}

static LAYOUT_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Where the editors write their layout files (and Xvfb its log):
/// `target/editor-layout` unless [`use_layout_dir`] chose another folder
/// (the bench does, so it can run beside the test).
pub fn layout_dir() -> PathBuf {
    LAYOUT_DIR.get_or_init(|| workspace_path("target/editor-layout")).clone()
}

/// Chooses the layout folder; call before [`x_server`]. Panics if another
/// folder is already in use.
pub fn use_layout_dir(dir: PathBuf) {
    let now = LAYOUT_DIR.get_or_init(|| dir.clone());
    assert_eq!(now, &dir, "the layout folder is already {}", now.display());
}

/// Starts Xvfb once per process and points `DISPLAY` (and the editors'
/// layout files, `MANIFOLD_EDITOR_LAYOUT`) at it, before any plugin is
/// loaded. Returns the display name.
pub fn x_server() -> &'static str {
    static DISPLAY: OnceLock<String> = OnceLock::new();
    DISPLAY.get_or_init(|| {
        let dir = layout_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        std::env::set_var("MANIFOLD_EDITOR_LAYOUT", &dir);
        // Xvfb is started with PR_SET_PDEATHSIG, which fires when the
        // *thread* that started it ends: a thread that lives as long as the
        // test process owns it, so Xvfb ends with the process.
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("xvfb-owner".into())
            .spawn(move || match start_xvfb() {
                Ok((child, display)) => {
                    tx.send(Ok(display)).ok();
                    let _keep = child;
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    tx.send(Err(e)).ok();
                }
            })
            .expect("spawn the Xvfb owner thread");
        let display = rx.recv().expect("Xvfb owner thread").unwrap_or_else(|e| panic!("{e}"));
        std::env::set_var("DISPLAY", &display);
        eprintln!("editor host: Xvfb on DISPLAY={display}");
        display
    })
}

/// The ids of this process's threads now (Linux: `/proc/self/task`).
pub fn thread_ids() -> Vec<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
    tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// A thread's name as the kernel keeps it (at most 15 bytes; a thread that
/// was never named has its creator's).
pub fn thread_name(tid: u64) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).map(|n| n.trim_end().to_string()).unwrap_or_default()
}

pub fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

pub fn start_xvfb() -> Result<(std::process::Child, String), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let xvfb = on_path("Xvfb").ok_or("Xvfb is not installed (or not on PATH): run `cargo xtask test`, which installs it (apt package xvfb)")?;
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe for Xvfb -displayfd: {e}"))?;
    let fd = writer.as_raw_fd();
    let log_path = layout_dir().join("xvfb.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut cmd = std::process::Command::new(&xvfb);
    cmd.args(["-displayfd", &fd.to_string(), "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-noreset"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec: keep the
    // write end of the pipe open across exec, and ask for SIGTERM when the
    // owning thread (which lives as long as this process) goes away.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", xvfb.display()))?;
    drop(writer);
    let mut line = String::new();
    BufReader::new(reader).read_line(&mut line).map_err(|e| format!("reading Xvfb's display number: {e}"))?;
    let number: u32 = match line.trim().parse() {
        Ok(n) => n,
        Err(_) => {
            let status = child.try_wait().ok().flatten();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(format!("Xvfb did not report a display (status {status:?}); its log {}:\n{log}", log_path.display()));
        }
    };
    Ok((child, format!(":{number}")))
}

// ---------------------------------------------------------------------------
// The host side: what the plugin can call back into
// ---------------------------------------------------------------------------

pub struct EditorHost;

/// Callbacks that may come from any thread (audio, baseview's window
/// thread): flags only, the main thread acts on them.
#[derive(Default)]
pub struct HostShared {
    pub restart_requested: AtomicBool,
    pub callback_requested: AtomicBool,
    pub flush_requested: AtomicBool,
    pub resize_requested: Mutex<Option<GuiSize>>,
    pub closed: AtomicBool,
}

impl<'a> SharedHandler<'a> for HostShared {
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

impl HostParamsImplShared for HostShared {
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::SeqCst);
    }
}

impl HostGuiImpl for HostShared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, new_size: GuiSize) -> Result<(), HostError> {
        *self.resize_requested.lock().unwrap() = Some(new_size);
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
pub struct HostMainThread;

impl<'a> MainThreadHandler<'a> for HostMainThread {}

impl HostLatencyImpl for HostMainThread {
    fn changed(&self) {}
}

impl HostParamsImplMainThread for HostMainThread {
    fn rescan(&self, _flags: ParamRescanFlags) {}
    fn clear(&self, _param_id: ClapId, _flags: ParamClearFlags) {}
}

impl HostHandlers for EditorHost {
    type Shared<'a> = HostShared;
    type MainThread<'a> = HostMainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostLatency>().register::<HostParams>().register::<HostGui>();
    }
}

/// A parameter event the plugin sent to the host (from `process` or `flush`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sent {
    Begin(u32),
    Value(u32, f64),
    End(u32),
}

/// Everything the plugin sent, in order.
pub type SentLog = Arc<Mutex<Vec<Sent>>>;

pub fn log_output_events(events: &EventBuffer, log: &SentLog) {
    let mut log = log.lock().unwrap();
    for event in events {
        if let Some(e) = event.as_event::<ParamGestureBeginEvent>() {
            log.push(Sent::Begin(e.param_id().map_or(u32::MAX, |id| id.get())));
        } else if let Some(e) = event.as_event::<ParamValueEvent>() {
            log.push(Sent::Value(e.param_id().map_or(u32::MAX, |id| id.get()), e.value()));
        } else if let Some(e) = event.as_event::<ParamGestureEndEvent>() {
            log.push(Sent::End(e.param_id().map_or(u32::MAX, |id| id.get())));
        }
    }
}

// ---------------------------------------------------------------------------
// The audio thread
// ---------------------------------------------------------------------------

/// Shared between the main thread and the host's audio thread.
#[derive(Default)]
pub struct AudioShared {
    pub stop: AtomicBool,
    pub blocks: AtomicU64,
    /// Parameter events (id, CLAP value) to send with the next block.
    pub to_send: Mutex<Vec<(u32, f64)>>,
    /// Times the thread fell more than a block behind its schedule and
    /// restarted it from now (a sound card's xrun).
    pub xruns: AtomicU64,
    /// Whether the thread runs with real-time priority (SCHED_FIFO), when
    /// [`AudioSettings::realtime`] asked for it and the system allowed it.
    pub realtime: AtomicBool,
}

pub struct AudioRun {
    pub shared: Arc<AudioShared>,
    pub thread: JoinHandle<StoppedPluginAudioProcessor<EditorHost>>,
}

/// Channel counts of each input and output port, main port first.
#[derive(Debug, Clone)]
pub struct PortLayout {
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

/// What the host's audio thread feeds every input channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signal {
    /// A 220 Hz tone (1 % higher per channel) with some noise.
    ToneWithNoise,
    /// Speech-like: a 120 Hz voice (harmonics, vibrato-like pitch drift) in
    /// syllables of about 4 Hz with pauses, over a noise floor.
    SpeechLike,
}

impl Signal {
    /// Sample `pos` of channel `channel`; `noise` is the generator's state.
    fn sample(self, pos: u64, channel: usize, sample_rate: f64, noise: &mut u32) -> f32 {
        use std::f64::consts::TAU;
        *noise ^= *noise << 13;
        *noise ^= *noise >> 17;
        *noise ^= *noise << 5;
        let white = *noise as f64 / u32::MAX as f64 - 0.5;
        let t = pos as f64 / sample_rate;
        match self {
            Signal::ToneWithNoise => (0.3 * (TAU * 220.0 * (1.0 + 0.01 * channel as f64) * t).sin() + 0.1 * white) as f32,
            Signal::SpeechLike => {
                // Pitch 120 Hz ± 10 % at 0.7 Hz: the phase is its integral.
                let (f0, depth, rate) = (120.0 * (1.0 + 0.03 * channel as f64), 0.1, 0.7);
                let phase = TAU * f0 * (t - depth / (TAU * rate) * (TAU * rate * t).cos());
                let voice: f64 = (1..=8).map(|k| (k as f64 * phase).sin() / k as f64).sum();
                // Syllables at 4 Hz, a pause of 0.5 s every 2.5 s.
                let syllable = (TAU * 2.0 * t).sin().abs().powi(2);
                let talking = if t % 2.5 < 2.0 { 1.0 } else { 0.0 };
                (0.15 * voice * syllable * talking + 0.01 * white) as f32
            }
        }
    }
}

/// How one `process` call went, measured on the host's audio thread.
#[derive(Debug, Clone, Copy)]
pub struct BlockTiming {
    /// The block's number since processing started.
    pub index: u64,
    /// CPU time the audio thread spent inside `process` (CLOCK_THREAD_CPUTIME_ID).
    pub cpu_ns: u64,
    /// Wall-clock time `process` took.
    pub wall_ns: u64,
    /// How long after its deadline the block started (0 when on time).
    pub late_ns: u64,
}

/// Called on the host's audio thread after every block, outside the timed
/// region.
pub type TimingSink = Box<dyn FnMut(BlockTiming) + Send>;

/// How the host's audio thread runs.
pub struct AudioSettings {
    pub sample_rate: f64,
    /// Frames per `process` call (also the activation's maximum).
    pub block: usize,
    pub signal: Signal,
    /// Ask for SCHED_FIFO, as audio hosts do (granted only with the right
    /// privileges; [`AudioShared::realtime`] says whether it was).
    pub realtime: bool,
    pub on_block: Option<TimingSink>,
}

impl Default for AudioSettings {
    /// The editor test's: 48 kHz, 512 frames, tone with noise.
    fn default() -> Self {
        Self { sample_rate: 48000.0, block: 512, signal: Signal::ToneWithNoise, realtime: false, on_block: None }
    }
}

/// The calling thread's CPU time, in ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to write to; this clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Asks for SCHED_FIFO on the calling thread; `true` if granted.
fn make_realtime() -> bool {
    let param = libc::sched_param { sched_priority: 70 };
    // SAFETY: plain syscall wrapper on the current thread with a valid param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0 }
}

/// Processes blocks of `settings.block` frames at real-time pace (one block
/// per block period, sleeping until the next deadline) until told to stop,
/// with `settings.signal` on every input channel (so meters move and a
/// capture has something to record). When the thread falls more than a
/// block behind, it restarts the schedule from now (counted in
/// [`AudioShared::xruns`]) instead of catching up in a burst.
pub fn audio_thread(processor: StoppedPluginAudioProcessor<EditorHost>, layout: PortLayout, shared: Arc<AudioShared>, log: SentLog, mut settings: AudioSettings) -> StoppedPluginAudioProcessor<EditorHost> {
    let block = settings.block;
    let rate = settings.sample_rate;
    if settings.realtime {
        shared.realtime.store(make_realtime(), Ordering::SeqCst);
    }
    let mut input_blocks: Vec<Vec<Vec<f32>>> = layout.inputs.iter().map(|&c| vec![vec![0.0; block]; c]).collect();
    let mut output_blocks: Vec<Vec<Vec<f32>>> = layout.outputs.iter().map(|&c| vec![vec![0.0; block]; c]).collect();
    let mut input_ports = AudioPorts::with_capacity(layout.inputs.iter().sum(), layout.inputs.len());
    let mut output_ports = AudioPorts::with_capacity(layout.outputs.iter().sum(), layout.outputs.len());
    let mut input_events = EventBuffer::with_capacity(16);
    let mut output_events = EventBuffer::with_capacity(256);
    let mut noise_state = 0x1234_5678u32;
    let period = Duration::from_secs_f64(block as f64 / rate);

    let mut processor = processor.start_processing().expect("start_processing failed");
    // The schedule: block `index - first` is due at `started + (index - first) · period`.
    let mut started = Instant::now();
    let mut first: u64 = 0;
    let mut index: u64 = 0;
    let mut pos: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let mut due = started + period.mul_f64((index - first) as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > period {
            shared.xruns.fetch_add(1, Ordering::Relaxed);
            started = now;
            first = index;
            due = now;
        }
        let port_channels = input_blocks.iter_mut().flat_map(|port| port.iter_mut()).enumerate();
        for (c, channel) in port_channels {
            for (i, s) in channel.iter_mut().enumerate() {
                *s = settings.signal.sample(pos + i as u64, c, rate, &mut noise_state);
            }
        }
        input_events.clear();
        if let Ok(mut pending) = shared.to_send.try_lock() {
            for (id, value) in pending.drain(..) {
                input_events.push(&ParamValueEvent::new(0, ClapId::new(id), Pckn::match_all(), value));
            }
        }
        output_events.clear();
        let timing;
        {
            let input_audio = input_ports.with_input_buffers(input_blocks.iter_mut().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(port.iter_mut().map(|c| InputChannel::variable(&mut c[..]))),
            }));
            let mut output_audio = output_ports.with_output_buffers(output_blocks.iter_mut().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[..])),
            }));
            let (wall0, cpu0) = (Instant::now(), thread_cpu_ns());
            let result = processor.process(&input_audio, &mut output_audio, &input_events.as_input(), &mut output_events.as_output(), Some(pos), None);
            let (cpu1, wall1) = (thread_cpu_ns(), Instant::now());
            result.unwrap_or_else(|e| panic!("process failed at frame {pos}: {e}"));
            timing = BlockTiming {
                index,
                cpu_ns: cpu1.saturating_sub(cpu0),
                wall_ns: (wall1 - wall0).as_nanos() as u64,
                late_ns: wall0.saturating_duration_since(due).as_nanos() as u64,
            };
        }
        if let Some(sink) = settings.on_block.as_mut() {
            sink(timing);
        }
        if !output_events.is_empty() {
            log_output_events(&output_events, &log);
        }
        pos += block as u64;
        index += 1;
        shared.blocks.fetch_add(1, Ordering::SeqCst);
    }
    processor.stop_processing()
}

// ---------------------------------------------------------------------------
// The editor's layout file
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
pub struct Layout {
    pub frame: u64,
    pub size: [f32; 2],
    #[allow(dead_code)]
    pub pixels_per_point: f32,
    pub controls: Vec<LayoutControl>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LayoutControl {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub normalized: Option<f64>,
    pub rect: [f32; 4],
}

impl LayoutControl {
    pub fn centre(&self) -> (i32, i32) {
        (((self.rect[0] + self.rect[2]) / 2.0).round() as i32, ((self.rect[1] + self.rect[3]) / 2.0).round() as i32)
    }
    pub fn inside(&self, size: [f32; 2]) -> bool {
        let [x0, y0, x1, y1] = self.rect;
        x1 > x0 && y1 > y0 && x0 >= 0.0 && y0 >= 0.0 && x1 <= size[0] && y1 <= size[1]
    }
    pub fn describe(&self) -> String {
        format!("{} {:?} ({}) at {:?}", self.kind, self.name, self.id, self.rect.map(|v| v.round() as i32))
    }
}

pub fn read_layout(path: &Path) -> Option<Layout> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

// ---------------------------------------------------------------------------
// The X side: the host's window, input, screenshots
// ---------------------------------------------------------------------------

pub struct X {
    pub conn: RustConnection,
    pub root: xproto::Window,
    /// The host's window, the editor's parent.
    pub parent: xproto::Window,
}

/// An RGB image.
#[derive(Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Image {
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.width + x);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// (distinct colours, share of pixels that differ from the most common one)
    pub fn variety(&self) -> (usize, f64) {
        let mut counts: HashMap<[u8; 3], usize> = HashMap::new();
        for p in self.rgb.chunks_exact(3) {
            *counts.entry([p[0], p[1], p[2]]).or_default() += 1;
        }
        let most = counts.values().copied().max().unwrap_or(0);
        let total = self.width * self.height;
        (counts.len(), 1.0 - most as f64 / total.max(1) as f64)
    }

    /// How far a nice-plug-egui `ParamSlider` bar (this image) is filled
    /// from the left: the run of the fill colour along the middle row.
    pub fn fill_fraction(&self) -> f64 {
        let y = self.height / 2;
        let (first, last) = (2usize.min(self.width), self.width.saturating_sub(2));
        if first >= last {
            return 0.0;
        }
        let fill = self.pixel(first, y);
        let same = |p: [u8; 3]| p.iter().zip(fill).all(|(&a, b)| (a as i32 - b as i32).abs() <= 6);
        let run = (first..last).take_while(|&x| same(self.pixel(x, y))).count();
        (first + run) as f64 / self.width as f64
    }

    pub fn write_png(&self, path: &Path) {
        let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header");
        writer.write_image_data(&self.rgb).expect("PNG data");
    }
}

impl X {
    pub fn connect(display: &str, size: GuiSize) -> Self {
        let (conn, screen_num) = x11rb::connect(Some(display)).unwrap_or_else(|e| panic!("cannot connect to Xvfb at {display}: {e}"));
        conn.prefetch_extension_information(x11rb::protocol::xtest::X11_EXTENSION_NAME).ok();
        assert!(
            conn.extension_information(x11rb::protocol::xtest::X11_EXTENSION_NAME).ok().flatten().is_some(),
            "the X server at {display} has no XTEST extension"
        );
        let screen = &conn.setup().roots[screen_num];
        let root = screen.root;
        let black = screen.black_pixel;
        let parent = conn.generate_id().expect("X id");
        let aux = CreateWindowAux::new().background_pixel(black).override_redirect(1).event_mask(EventMask::STRUCTURE_NOTIFY);
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            parent,
            root,
            WINDOW_POS.0,
            WINDOW_POS.1,
            size.width as u16,
            size.height as u16,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &aux,
        )
        .expect("create the host window");
        conn.map_window(parent).expect("map the host window");
        conn.flush().expect("X flush");
        let x = X { conn, root, parent };
        let deadline = Instant::now() + PATIENCE;
        while x.conn.get_window_attributes(parent).unwrap().reply().unwrap().map_state != MapState::VIEWABLE {
            assert!(Instant::now() < deadline, "the host window never became viewable");
            std::thread::sleep(Duration::from_millis(10));
        }
        x
    }

    /// The editor's window: the parent's only child, once it is mapped.
    pub fn editor_window(&self) -> Option<xproto::Window> {
        let tree = self.conn.query_tree(self.parent).ok()?.reply().ok()?;
        tree.children.into_iter().find(|&w| {
            self.conn.get_window_attributes(w).ok().and_then(|c| c.reply().ok()).is_some_and(|a| a.map_state == MapState::VIEWABLE)
        })
    }

    /// Windows inside the host window (0 if the server cannot say).
    pub fn children(&self) -> usize {
        self.conn.query_tree(self.parent).ok().and_then(|c| c.reply().ok()).map_or(0, |t| t.children.len())
    }

    pub fn resize_parent(&self, size: GuiSize) {
        let aux = xproto::ConfigureWindowAux::new().width(size.width).height(size.height);
        self.conn.configure_window(self.parent, &aux).expect("resize the host window");
        self.conn.flush().unwrap();
    }

    /// Root coordinates of a point of `window`.
    pub fn to_root(&self, window: xproto::Window, (x, y): (i32, i32)) -> (i16, i16) {
        let r = self.conn.translate_coordinates(window, self.root, x as i16, y as i16).unwrap().reply().unwrap();
        (r.dst_x, r.dst_y)
    }

    pub fn motion(&self, (x, y): (i16, i16)) {
        self.conn.xtest_fake_input(xproto::MOTION_NOTIFY_EVENT, 0, x11rb::CURRENT_TIME, self.root, x, y, 0).unwrap();
        self.conn.sync().unwrap();
    }

    pub fn button(&self, press: bool) {
        let kind = if press { xproto::BUTTON_PRESS_EVENT } else { xproto::BUTTON_RELEASE_EVENT };
        self.conn.xtest_fake_input(kind, 1, x11rb::CURRENT_TIME, self.root, 0, 0, 0).unwrap();
        self.conn.sync().unwrap();
    }

    /// Moves the pointer off the editor (so no control is hovered).
    pub fn pointer_away(&self) {
        self.motion((1270, 1010));
    }

    /// A screenshot of `window` (GetImage, ZPixmap), as RGB: all of it, or
    /// the pixels inside `rect` (window coordinates, as in the layout file).
    pub fn capture(&self, window: xproto::Window, rect: Option<[f32; 4]>) -> Image {
        let geometry = self.conn.get_geometry(window).unwrap().reply().unwrap();
        let attributes = self.conn.get_window_attributes(window).unwrap().reply().unwrap();
        let (gw, gh) = (geometry.width as f32, geometry.height as f32);
        let [x0, y0, x1, y1] = rect.unwrap_or([0.0, 0.0, gw, gh]);
        let (x0, y0) = (x0.ceil().clamp(0.0, gw) as usize, y0.ceil().clamp(0.0, gh) as usize);
        let (x1, y1) = (x1.floor().clamp(x0 as f32, gw) as usize, y1.floor().clamp(y0 as f32, gh) as usize);
        let (w, h) = (x1 - x0, y1 - y0);
        assert!(w > 0 && h > 0, "nothing to capture in {rect:?} of a {gw}x{gh} window");
        let reply = self
            .conn
            .get_image(ImageFormat::Z_PIXMAP, window, x0 as i16, y0 as i16, w as u16, h as u16, !0)
            .unwrap()
            .reply()
            .unwrap_or_else(|e| panic!("GetImage of window {window:#x} failed: {e:?}"));
        let setup = self.conn.setup();
        let visual = setup
            .roots
            .iter()
            .flat_map(|s| &s.allowed_depths)
            .flat_map(|d| &d.visuals)
            .find(|v| v.visual_id == attributes.visual)
            .unwrap_or_else(|| panic!("unknown visual {:#x}", attributes.visual));
        let bpp = setup.pixmap_formats.iter().find(|f| f.depth == reply.depth).map_or(32, |f| f.bits_per_pixel) as usize;
        assert_eq!(bpp, 32, "expected 32 bits per pixel for depth {}", reply.depth);
        let stride = reply.data.len() / h.max(1);
        let little = setup.image_byte_order == ImageOrder::LSB_FIRST;
        let channel = |pixel: u32, mask: u32| -> u8 {
            let shift = mask.trailing_zeros();
            let max = mask >> shift;
            (((pixel & mask) >> shift) * 255 / max.max(1)) as u8
        };
        let mut rgb = Vec::with_capacity(3 * w * h);
        for y in 0..h {
            for x in 0..w {
                let b: [u8; 4] = reply.data[y * stride + 4 * x..y * stride + 4 * x + 4].try_into().unwrap();
                let pixel = if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) };
                rgb.extend([channel(pixel, visual.red_mask), channel(pixel, visual.green_mask), channel(pixel, visual.blue_mask)]);
            }
        }
        Image { width: w, height: h, rgb }
    }
}

impl Drop for X {
    fn drop(&mut self) {
        let _ = self.conn.destroy_window(self.parent);
        let _ = self.conn.flush();
    }
}

// ---------------------------------------------------------------------------
// One plugin with its editor, driven by the test host
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ParamDesc {
    pub id: u32,
    pub name: String,
    pub min: f64,
    pub max: f64,
}

impl ParamDesc {
    pub fn normalized(&self, value: f64) -> f64 {
        (value - self.min) / (self.max - self.min).max(1e-12)
    }
    pub fn value(&self, normalized: f64) -> f64 {
        self.min + normalized * (self.max - self.min)
    }
}

pub struct Session {
    pub plugin_id: String,
    pub stem: String,
    pub instance: PluginInstance<EditorHost>,
    pub params_ext: PluginParams,
    pub gui: PluginGui,
    pub audio_ports: PluginAudioPorts,
    pub params: Vec<ParamDesc>,
    pub audio: Option<AudioRun>,
    pub log: SentLog,
    pub x: Option<X>,
    pub size: GuiSize,
    /// Threads the open editor started (its window thread, the OpenGL
    /// driver's): those that appeared while it opened, so nothing else in
    /// the process may start threads meanwhile; see
    /// [`Session::wait_for_editor_threads`].
    editor_threads: Vec<u64>,
}

impl Session {
    pub fn new(entry: &PluginEntry, plugin_id: &str) -> Self {
        let c_id = CString::new(plugin_id).unwrap();
        let host_info = HostInfo::new("Manifold editor test host", "Manifold", "https://example.invalid/manifold", "0.1.0").unwrap();
        let mut instance = PluginInstance::<EditorHost>::new(|_| HostShared::default(), |_| HostMainThread, entry, &c_id, &host_info)
            .unwrap_or_else(|e| panic!("cannot instantiate {plugin_id}: {e}"));
        let handle = instance.plugin_handle();
        let gui: PluginGui = handle
            .get_extension()
            .unwrap_or_else(|| panic!("{plugin_id} has no clap.gui extension: its editor is missing (Plugin::editor returned None or type Editor = ())"));
        let params_ext: PluginParams = handle.get_extension().unwrap_or_else(|| panic!("{plugin_id} has no clap.params"));
        let audio_ports: PluginAudioPorts = handle.get_extension().unwrap_or_else(|| panic!("{plugin_id} has no clap.audio-ports"));
        let stem = plugin_id.rsplit('.').next().unwrap().to_string();
        let mut session = Self {
            plugin_id: plugin_id.into(),
            stem,
            instance,
            params_ext,
            gui,
            audio_ports,
            params: Vec::new(),
            audio: None,
            log: Arc::new(Mutex::new(Vec::new())),
            x: None,
            size: GuiSize { width: 0, height: 0 },
            editor_threads: Vec::new(),
        };
        session.params = session.read_params();
        session
    }

    pub fn read_params(&mut self) -> Vec<ParamDesc> {
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..self.params_ext.count(&handle))
            .map(|i| {
                let info = self.params_ext.get_info(&handle, i, &mut buffer).expect("param info");
                ParamDesc { id: info.id.get(), name: String::from_utf8_lossy(info.name).into_owned(), min: info.min_value, max: info.max_value }
            })
            .collect()
    }

    pub fn param_named(&self, name: &str) -> ParamDesc {
        self.params.iter().find(|p| p.name == name).cloned().unwrap_or_else(|| {
            let names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
            panic!("{}: the editor's control {name:?} names no CLAP parameter (has {names:?})", self.plugin_id)
        })
    }

    pub fn value(&mut self, id: u32) -> f64 {
        let handle = self.instance.plugin_handle();
        self.params_ext.get_value(&handle, ClapId::new(id)).unwrap_or_else(|| panic!("no value for parameter {id}"))
    }

    pub fn layout_path(&self) -> PathBuf {
        layout_dir().join(format!("{}.json", self.stem))
    }

    pub fn layout(&self) -> Option<Layout> {
        read_layout(&self.layout_path())
    }

    pub fn x(&self) -> &X {
        self.x.as_ref().expect("the host window is open")
    }

    pub fn shared<R>(&self, f: impl FnOnce(&HostShared) -> R) -> R {
        self.instance.access_shared_handler(f)
    }

    /// Does what the plugin asked of the main thread: `on_main_thread`,
    /// `flush` while inactive (while processing, the audio thread's
    /// `process` calls carry the plugin's events), a resize of the host
    /// window.
    pub fn pump(&mut self) {
        if self.shared(|s| s.callback_requested.swap(false, Ordering::SeqCst)) {
            self.instance.call_on_main_thread_callback();
        }
        if self.audio.is_some() {
            self.shared(|s| s.flush_requested.store(false, Ordering::SeqCst));
        } else if self.shared(|s| s.flush_requested.swap(false, Ordering::SeqCst)) {
            let input = EventBuffer::new();
            let mut output = EventBuffer::with_capacity(64);
            let mut handle = self.instance.inactive_plugin_handle().expect("inactive");
            self.params_ext.flush(&mut handle, &input.as_input(), &mut output.as_output());
            log_output_events(&output, &self.log);
        }
        if let Some(size) = self.shared(|s| s.resize_requested.lock().unwrap().take()) {
            if let Some(x) = &self.x {
                x.resize_parent(size);
            }
            self.size = size;
        }
    }

    /// Pumps the main thread until `done` holds; `false` at the deadline.
    pub fn wait_for(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits `n` fresh layout files (the editor writes one every 4 frames).
    pub fn wait_frames(&mut self, n: u64) -> Layout {
        let start = self.layout().map_or(0, |l| l.frame);
        let mut last = None;
        let ok = self.wait_for(PATIENCE, |s| {
            last = s.layout();
            last.as_ref().is_some_and(|l| l.frame >= start + 4 * n)
        });
        assert!(
            ok,
            "{}: the editor drew no frame for {PATIENCE:?} (layout frame stuck at {start}): its GUI thread is blocked or it stopped repainting",
            self.plugin_id
        );
        last.unwrap()
    }

    pub fn sent_since(&self, mark: usize) -> Vec<Sent> {
        self.log.lock().unwrap()[mark..].to_vec()
    }

    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    // -- editor ------------------------------------------------------------

    /// create (X11, embedded), get_size, host window, set_parent, show; waits
    /// for the editor's window and its first layout file.
    pub fn open_editor(&mut self, display: &str) {
        let id = self.plugin_id.clone();
        let threads_before = thread_ids();
        let handle = self.instance.plugin_handle();
        let embedded = GuiConfiguration { api_type: GuiApiType::X11, is_floating: false };
        assert!(self.gui.is_api_supported(&handle, embedded), "{id}: clap.gui does not support embedded X11 windows");
        self.gui.create(&handle, embedded).unwrap_or_else(|e| panic!("{id}: clap.gui create failed: {e:?}"));
        let _ = self.gui.set_scale(&handle, 1.0);
        let size = self.gui.get_size(&handle).unwrap_or_else(|| panic!("{id}: clap.gui get_size failed"));
        assert!(size.width >= 200 && size.height >= 150, "{id}: editor size {}x{} is implausible", size.width, size.height);
        self.size = size;
        if self.x.is_none() {
            self.x = Some(X::connect(display, size));
        } else {
            self.x().resize_parent(size);
        }
        let parent = self.x().parent;
        // SAFETY: the host window stays alive until after `destroy`.
        unsafe { self.gui.set_parent(&self.instance.plugin_handle(), ClapWindow::from_x11_handle(parent as _)) }
            .unwrap_or_else(|e| panic!("{id}: clap.gui set_parent failed: {e:?}"));
        self.gui.show(&self.instance.plugin_handle()).unwrap_or_else(|e| panic!("{id}: clap.gui show failed: {e:?}"));
        let opened = self.wait_for(PATIENCE, |s| s.x().editor_window().is_some());
        assert!(opened, "{id}: no editor window appeared inside the host window within {PATIENCE:?}");
        let drawn = self.wait_for(PATIENCE, |s| s.layout().is_some_and(|l| l.frame >= 2));
        assert!(
            drawn,
            "{id}: the editor wrote no layout file {} within {PATIENCE:?} (is the window drawing? does the editor use ControlMap?)",
            self.layout_path().display()
        );
        // nice-plug's background task thread lives as long as the instance.
        self.editor_threads = thread_ids().into_iter().filter(|t| !threads_before.contains(t) && thread_name(*t) != "bg-worker").collect();
    }

    /// Waits until the threads the editor started have ended; returns the
    /// names of those still running after `PATIENCE`. baseview's window
    /// handle can return from `destroy` while its window thread is still
    /// tearing down OpenGL: a test that ended (or a process that exited)
    /// then would pull the driver out from under that thread.
    pub fn wait_for_editor_threads(&mut self) -> Vec<String> {
        let threads = std::mem::take(&mut self.editor_threads);
        let alive = || thread_ids().into_iter().filter(|t| threads.contains(t)).collect::<Vec<_>>();
        self.wait_for(PATIENCE, |_| alive().is_empty());
        alive().into_iter().map(thread_name).collect()
    }

    /// hide + destroy; the editor's window must go away and the threads it
    /// started must end.
    pub fn close_editor(&mut self) {
        let id = self.plugin_id.clone();
        self.gui.hide(&self.instance.plugin_handle()).unwrap_or_else(|e| panic!("{id}: clap.gui hide failed: {e:?}"));
        self.gui.destroy(&self.instance.plugin_handle());
        let gone = self.wait_for(PATIENCE, |s| s.x().children() == 0);
        assert!(gone, "{id}: the editor's X window is still there after hide + destroy");
        let running = self.wait_for_editor_threads();
        assert!(running.is_empty(), "{id}: the editor's threads {running:?} still run {PATIENCE:?} after its window closed");
    }

    /// The editor window's pixels: all of them, or those inside `rect`.
    pub fn screenshot(&self, rect: Option<[f32; 4]>) -> Image {
        let window = self.x().editor_window().unwrap_or_else(|| panic!("{}: the editor window is gone", self.plugin_id));
        self.x().capture(window, rect)
    }

    /// Writes the editor as it is now to `<plugin>-failure.png`; returns a
    /// note naming it, for a failure message.
    pub fn failure_screenshot(&self) -> String {
        let Some(window) = self.x.as_ref().and_then(|x| x.editor_window()) else { return String::new() };
        let path = workspace_path("target/editor-screenshots").join(format!("{}-failure.png", self.stem));
        self.x().capture(window, None).write_png(&path);
        format!(" (the editor at that moment: {})", path.display())
    }

    /// Root coordinates of a point in the editor window.
    pub fn at(&self, point: (i32, i32)) -> (i16, i16) {
        let window = self.x().editor_window().unwrap_or_else(|| panic!("{}: the editor window is gone", self.plugin_id));
        self.x().to_root(window, point)
    }

    // -- audio -------------------------------------------------------------

    pub fn port_layout(&mut self) -> PortLayout {
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        let ext = self.audio_ports;
        let mut channels = |is_input: bool| -> Vec<usize> {
            (0..ext.count(&handle, is_input)).map(|i| ext.get(&handle, i, is_input, &mut buffer).expect("audio port info").channel_count as usize).collect()
        };
        PortLayout { inputs: channels(true), outputs: channels(false) }
    }

    /// Activates at 48 kHz / 512 and starts the audio thread (the test's
    /// settings, [`AudioSettings::default`]).
    pub fn start_audio(&mut self) {
        self.start_audio_with(AudioSettings::default());
    }

    /// Activates at `settings`' rate and block size (honouring the restart
    /// nice-plug asks for when the latency changes) and starts the host's
    /// audio thread.
    pub fn start_audio_with(&mut self, settings: AudioSettings) {
        let config = PluginAudioConfiguration { sample_rate: settings.sample_rate, min_frames_count: 1, max_frames_count: settings.block as u32 };
        let mut processor = self.instance.activate(|_, _| (), config).unwrap_or_else(|e| panic!("{}: activate failed: {e}", self.plugin_id));
        for _ in 0..2 {
            if !self.shared(|s| s.restart_requested.swap(false, Ordering::SeqCst)) {
                break;
            }
            self.instance.deactivate(processor);
            self.pump();
            processor = self.instance.activate(|_, _| (), config).unwrap_or_else(|e| panic!("{}: re-activate failed: {e}", self.plugin_id));
        }
        let layout = self.port_layout();
        let shared = Arc::new(AudioShared::default());
        let thread = {
            let (shared, log) = (shared.clone(), self.log.clone());
            std::thread::Builder::new().name("host-audio".into()).spawn(move || audio_thread(processor, layout, shared, log, settings)).expect("spawn audio thread")
        };
        self.audio = Some(AudioRun { shared, thread });
    }

    pub fn blocks_processed(&self) -> u64 {
        self.audio.as_ref().map_or(0, |a| a.shared.blocks.load(Ordering::SeqCst))
    }

    /// Stops the audio thread and deactivates.
    pub fn stop_audio(&mut self) {
        if let Some(run) = self.audio.take() {
            run.shared.stop.store(true, Ordering::SeqCst);
            let processor = run.thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            self.instance.deactivate(processor);
        }
        self.pump();
    }

    /// Sends a parameter value with the next processed block (host automation).
    pub fn automate(&self, id: u32, value: f64) {
        let run = self.audio.as_ref().expect("automation needs the audio thread");
        run.shared.to_send.lock().unwrap().push((id, value));
    }

}


impl Drop for Session {
    fn drop(&mut self) {
        if let Some(run) = self.audio.take() {
            run.shared.stop.store(true, Ordering::SeqCst);
            if let Ok(processor) = run.thread.join() {
                self.instance.deactivate(processor);
            }
        }
        if self.x.as_ref().is_some_and(|x| x.children() > 0) {
            let _ = self.gui.hide(&self.instance.plugin_handle());
            self.gui.destroy(&self.instance.plugin_handle());
            // (baseview may finish closing its window after destroy returns;
            // the host window must outlive it.)
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.x.as_ref().is_some_and(|x| x.children() > 0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.wait_for_editor_threads();
        }
    }
}
