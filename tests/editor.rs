//! Ring 2: each plugin's editor (egui, drawn with OpenGL through baseview)
//! opened inside a real X server (Xvfb), in-process through the built CLAP
//! bundle (`target/bundled/Manifold.clap`), by a small host written with
//! `clack-host` (the plugin side) and `x11rb` (the host's window, XTest
//! input, screenshots).
//!
//! What is checked, for Clean, Stems and Voice alike; where each control was
//! drawn comes from the editor's own layout file (`MANIFOLD_EDITOR_LAYOUT`,
//! see `src/editor/mod.rs`), controls are matched to CLAP parameters by name:
//! 1. the plugin offers `clap.gui`, and its editor opens embedded (X11, not
//!    floating) in a window of the host;
//! 2. once the plugin has processed a few hundred blocks (48 kHz / 512, a
//!    tone with noise on every input port), a screenshot of the editor is
//!    written to `target/editor-screenshots/<plugin>.png` and is not blank;
//! 3. real X input (XTest) on every control drawn fully inside the window
//!    changes its parameter: a slider is dragged (dragging right increases
//!    it), a toggle flips, an option sets its value; the host receives
//!    gesture begin, the value and gesture end for each change (so a DAW
//!    records it as automation and can undo it);
//! 4. a value the host sends in `process` (a parameter event, as automation
//!    playback does) redraws that slider within a second, filled to the new
//!    value;
//! 5. hide + destroy closes the editor's window; create + show again opens a
//!    working editor (a drag made while the plugin is inactive reaches the
//!    host through `clap.params.flush`).
//!
//! Threads: the test thread is the host's main thread (instance, `clap.gui`,
//! `clap.params`, `on_main_thread` whenever the plugin asks, `flush` while
//! the plugin is inactive); a host audio thread calls `process` at real-time
//! pace, passes the host's parameter events in and collects the plugin's
//! output events (where GUI changes arrive while processing); the editor
//! draws and handles input on baseview's own window thread. The plugins run
//! one at a time: they share the X server's pointer.
//!
//! Needs `Xvfb` (`cargo xtask test` installs it) and the debug bundle
//! (`cargo xtask bundle manifold`); a missing prerequisite fails loudly.

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::gui::{GuiApiType, GuiConfiguration, GuiSize, HostGui, HostGuiImpl, PluginGui, Window as ClapWindow};
use clack_extensions::latency::{HostLatency, HostLatencyImpl};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer, ParamRescanFlags, PluginParams,
};
use clack_host::events::event_types::{ParamGestureBeginEvent, ParamGestureEndEvent, ParamValueEvent};
use clack_host::prelude::*;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
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

const CLEAN_ID: &str = "com.manifold.clean";
const STEMS_ID: &str = "com.manifold.stems";
const VOICE_ID: &str = "com.manifold.voice";

const SAMPLE_RATE: f64 = 48000.0;
const BLOCK: usize = 512;
/// Blocks processed before the screenshot, so that meters show something.
const BLOCKS_BEFORE_SCREENSHOT: u64 = 300;
/// Where the host's window sits on the X screen.
const WINDOW_POS: (i16, i16) = (16, 16);
/// How far a slider is dragged, in pixels.
const DRAG_PX: i32 = 40;
/// Host automation must show in the editor within this time.
const AUTOMATION_REDRAW: Duration = Duration::from_secs(1);
/// Generous deadline for anything the editor has to do (llvmpipe on a
/// small, busy machine, debug build).
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Prerequisites: the bundle, the X server, the layout folder
// ---------------------------------------------------------------------------

fn workspace_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn load_bundle() -> PluginEntry {
    let path = workspace_path("target/bundled/Manifold.clap");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask bundle manifold` (or run everything with `cargo xtask test`)",
        path.display()
    );
    // SAFETY: loading a CLAP library runs its initialisation code; this is the
    // project's own bundle, which is exactly what is under test.
    unsafe { PluginEntry::load(&path) }.unwrap_or_else(|e| panic!("cannot load CLAP entry {}: {e}", path.display()))
}

fn layout_dir() -> PathBuf {
    workspace_path("target/editor-layout")
}

/// The plugins share the X pointer: one editor test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Starts Xvfb once per test process and points `DISPLAY` (and the editors'
/// layout files, `MANIFOLD_EDITOR_LAYOUT`) at it, before any plugin is
/// loaded. Returns the display name.
fn x_server() -> &'static str {
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
        eprintln!("editor test: Xvfb on DISPLAY={display}");
        display
    })
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(program)).find(|p| p.is_file()))
}

fn start_xvfb() -> Result<(std::process::Child, String), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let xvfb = on_path("Xvfb").ok_or("Xvfb is not installed (or not on PATH): run `cargo xtask test`, which installs it (apt package xvfb)")?;
    let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe for Xvfb -displayfd: {e}"))?;
    let fd = writer.as_raw_fd();
    let log_path = workspace_path("target/editor-layout/xvfb.log");
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

struct EditorHost;

/// Callbacks that may come from any thread (audio, baseview's window
/// thread): flags only, the main thread acts on them.
#[derive(Default)]
struct HostShared {
    restart_requested: AtomicBool,
    callback_requested: AtomicBool,
    flush_requested: AtomicBool,
    resize_requested: Mutex<Option<GuiSize>>,
    closed: AtomicBool,
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
struct HostMainThread;

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
enum Sent {
    Begin(u32),
    Value(u32, f64),
    End(u32),
}

/// Everything the plugin sent, in order.
type SentLog = Arc<Mutex<Vec<Sent>>>;

fn log_output_events(events: &EventBuffer, log: &SentLog) {
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
struct AudioShared {
    stop: AtomicBool,
    blocks: AtomicU64,
    /// Parameter events (id, CLAP value) to send with the next block.
    to_send: Mutex<Vec<(u32, f64)>>,
}

struct AudioRun {
    shared: Arc<AudioShared>,
    thread: JoinHandle<StoppedPluginAudioProcessor<EditorHost>>,
}

/// Channel counts of each input and output port, main port first.
#[derive(Debug, Clone)]
struct PortLayout {
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// Processes blocks of `BLOCK` frames at real-time pace until told to stop:
/// a 220 Hz tone with some noise on every input channel (so meters move and
/// a capture has something to record).
fn audio_thread(processor: StoppedPluginAudioProcessor<EditorHost>, layout: PortLayout, shared: Arc<AudioShared>, log: SentLog) -> StoppedPluginAudioProcessor<EditorHost> {
    let mut input_blocks: Vec<Vec<Vec<f32>>> = layout.inputs.iter().map(|&c| vec![vec![0.0; BLOCK]; c]).collect();
    let mut output_blocks: Vec<Vec<Vec<f32>>> = layout.outputs.iter().map(|&c| vec![vec![0.0; BLOCK]; c]).collect();
    let mut input_ports = AudioPorts::with_capacity(layout.inputs.iter().sum(), layout.inputs.len());
    let mut output_ports = AudioPorts::with_capacity(layout.outputs.iter().sum(), layout.outputs.len());
    let mut input_events = EventBuffer::with_capacity(16);
    let mut output_events = EventBuffer::with_capacity(256);
    let mut noise_state = 0x1234_5678u32;

    let mut processor = processor.start_processing().expect("start_processing failed");
    let started = Instant::now();
    let mut pos: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let due = started + Duration::from_secs_f64(pos as f64 / SAMPLE_RATE);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        for port in input_blocks.iter_mut() {
            for (c, channel) in port.iter_mut().enumerate() {
                for (i, s) in channel.iter_mut().enumerate() {
                    let t = (pos + i as u64) as f64 / SAMPLE_RATE;
                    noise_state ^= noise_state << 13;
                    noise_state ^= noise_state >> 17;
                    noise_state ^= noise_state << 5;
                    let noise = (noise_state as f64 / u32::MAX as f64 - 0.5) * 0.1;
                    *s = (0.3 * (2.0 * std::f64::consts::PI * 220.0 * (1.0 + 0.01 * c as f64) * t).sin() + noise) as f32;
                }
            }
        }
        input_events.clear();
        if let Ok(mut pending) = shared.to_send.try_lock() {
            for (id, value) in pending.drain(..) {
                input_events.push(&ParamValueEvent::new(0, ClapId::new(id), Pckn::match_all(), value));
            }
        }
        output_events.clear();
        {
            let input_audio = input_ports.with_input_buffers(input_blocks.iter_mut().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(port.iter_mut().map(|c| InputChannel::variable(&mut c[..]))),
            }));
            let mut output_audio = output_ports.with_output_buffers(output_blocks.iter_mut().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[..])),
            }));
            processor
                .process(&input_audio, &mut output_audio, &input_events.as_input(), &mut output_events.as_output(), Some(pos), None)
                .unwrap_or_else(|e| panic!("process failed at frame {pos}: {e}"));
        }
        if !output_events.is_empty() {
            log_output_events(&output_events, &log);
        }
        pos += BLOCK as u64;
        shared.blocks.fetch_add(1, Ordering::SeqCst);
    }
    processor.stop_processing()
}

// ---------------------------------------------------------------------------
// The editor's layout file
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Deserialize)]
struct Layout {
    frame: u64,
    size: [f32; 2],
    #[allow(dead_code)]
    pixels_per_point: f32,
    controls: Vec<LayoutControl>,
}

#[derive(Debug, Clone, Deserialize)]
struct LayoutControl {
    id: String,
    name: String,
    kind: String,
    normalized: Option<f64>,
    rect: [f32; 4],
}

impl LayoutControl {
    fn centre(&self) -> (i32, i32) {
        (((self.rect[0] + self.rect[2]) / 2.0).round() as i32, ((self.rect[1] + self.rect[3]) / 2.0).round() as i32)
    }
    fn inside(&self, size: [f32; 2]) -> bool {
        let [x0, y0, x1, y1] = self.rect;
        x1 > x0 && y1 > y0 && x0 >= 0.0 && y0 >= 0.0 && x1 <= size[0] && y1 <= size[1]
    }
    fn describe(&self) -> String {
        format!("{} {:?} ({}) at {:?}", self.kind, self.name, self.id, self.rect.map(|v| v.round() as i32))
    }
}

fn read_layout(path: &Path) -> Option<Layout> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

// ---------------------------------------------------------------------------
// The X side: the host's window, input, screenshots
// ---------------------------------------------------------------------------

struct X {
    conn: RustConnection,
    root: xproto::Window,
    /// The host's window, the editor's parent.
    parent: xproto::Window,
}

/// An RGB image.
#[derive(Clone, PartialEq)]
struct Image {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Image {
    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.width + x);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// (distinct colours, share of pixels that differ from the most common one)
    fn variety(&self) -> (usize, f64) {
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
    fn fill_fraction(&self) -> f64 {
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

    fn write_png(&self, path: &Path) {
        let file = std::fs::File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().expect("PNG header");
        writer.write_image_data(&self.rgb).expect("PNG data");
    }
}

impl X {
    fn connect(display: &str, size: GuiSize) -> Self {
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
    fn editor_window(&self) -> Option<xproto::Window> {
        let tree = self.conn.query_tree(self.parent).ok()?.reply().ok()?;
        tree.children.into_iter().find(|&w| {
            self.conn.get_window_attributes(w).ok().and_then(|c| c.reply().ok()).is_some_and(|a| a.map_state == MapState::VIEWABLE)
        })
    }

    /// Windows inside the host window (0 if the server cannot say).
    fn children(&self) -> usize {
        self.conn.query_tree(self.parent).ok().and_then(|c| c.reply().ok()).map_or(0, |t| t.children.len())
    }

    fn resize_parent(&self, size: GuiSize) {
        let aux = xproto::ConfigureWindowAux::new().width(size.width).height(size.height);
        self.conn.configure_window(self.parent, &aux).expect("resize the host window");
        self.conn.flush().unwrap();
    }

    /// Root coordinates of a point of `window`.
    fn to_root(&self, window: xproto::Window, (x, y): (i32, i32)) -> (i16, i16) {
        let r = self.conn.translate_coordinates(window, self.root, x as i16, y as i16).unwrap().reply().unwrap();
        (r.dst_x, r.dst_y)
    }

    fn motion(&self, (x, y): (i16, i16)) {
        self.conn.xtest_fake_input(xproto::MOTION_NOTIFY_EVENT, 0, x11rb::CURRENT_TIME, self.root, x, y, 0).unwrap();
        self.conn.sync().unwrap();
    }

    fn button(&self, press: bool) {
        let kind = if press { xproto::BUTTON_PRESS_EVENT } else { xproto::BUTTON_RELEASE_EVENT };
        self.conn.xtest_fake_input(kind, 1, x11rb::CURRENT_TIME, self.root, 0, 0, 0).unwrap();
        self.conn.sync().unwrap();
    }

    /// Moves the pointer off the editor (so no control is hovered).
    fn pointer_away(&self) {
        self.motion((1270, 1010));
    }

    /// A screenshot of `window` (GetImage, ZPixmap), as RGB: all of it, or
    /// the pixels inside `rect` (window coordinates, as in the layout file).
    fn capture(&self, window: xproto::Window, rect: Option<[f32; 4]>) -> Image {
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
struct ParamDesc {
    id: u32,
    name: String,
    min: f64,
    max: f64,
}

impl ParamDesc {
    fn normalized(&self, value: f64) -> f64 {
        (value - self.min) / (self.max - self.min).max(1e-12)
    }
    fn value(&self, normalized: f64) -> f64 {
        self.min + normalized * (self.max - self.min)
    }
}

/// What one control did when used.
struct Exercised {
    control: String,
    before: f64,
    after: f64,
    values_sent: usize,
}

struct Session {
    plugin_id: String,
    stem: String,
    instance: PluginInstance<EditorHost>,
    params_ext: PluginParams,
    gui: PluginGui,
    audio_ports: PluginAudioPorts,
    params: Vec<ParamDesc>,
    audio: Option<AudioRun>,
    log: SentLog,
    x: Option<X>,
    size: GuiSize,
}

impl Session {
    fn new(entry: &PluginEntry, plugin_id: &str) -> Self {
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
        };
        session.params = session.read_params();
        session
    }

    fn read_params(&mut self) -> Vec<ParamDesc> {
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..self.params_ext.count(&handle))
            .map(|i| {
                let info = self.params_ext.get_info(&handle, i, &mut buffer).expect("param info");
                ParamDesc { id: info.id.get(), name: String::from_utf8_lossy(info.name).into_owned(), min: info.min_value, max: info.max_value }
            })
            .collect()
    }

    fn param_named(&self, name: &str) -> ParamDesc {
        self.params.iter().find(|p| p.name == name).cloned().unwrap_or_else(|| {
            let names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
            panic!("{}: the editor's control {name:?} names no CLAP parameter (has {names:?})", self.plugin_id)
        })
    }

    fn value(&mut self, id: u32) -> f64 {
        let handle = self.instance.plugin_handle();
        self.params_ext.get_value(&handle, ClapId::new(id)).unwrap_or_else(|| panic!("no value for parameter {id}"))
    }

    fn layout_path(&self) -> PathBuf {
        layout_dir().join(format!("{}.json", self.stem))
    }

    fn layout(&self) -> Option<Layout> {
        read_layout(&self.layout_path())
    }

    fn x(&self) -> &X {
        self.x.as_ref().expect("the host window is open")
    }

    fn shared<R>(&self, f: impl FnOnce(&HostShared) -> R) -> R {
        self.instance.access_shared_handler(f)
    }

    /// Does what the plugin asked of the main thread: `on_main_thread`,
    /// `flush` while inactive (while processing, the audio thread's
    /// `process` calls carry the plugin's events), a resize of the host
    /// window.
    fn pump(&mut self) {
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
    fn wait_for(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
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
    fn wait_frames(&mut self, n: u64) -> Layout {
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

    fn sent_since(&self, mark: usize) -> Vec<Sent> {
        self.log.lock().unwrap()[mark..].to_vec()
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    // -- editor ------------------------------------------------------------

    /// create (X11, embedded), get_size, host window, set_parent, show; waits
    /// for the editor's window and its first layout file.
    fn open_editor(&mut self, display: &str) {
        let id = self.plugin_id.clone();
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
    }

    /// hide + destroy; the editor's window must go away.
    fn close_editor(&mut self) {
        let id = self.plugin_id.clone();
        self.gui.hide(&self.instance.plugin_handle()).unwrap_or_else(|e| panic!("{id}: clap.gui hide failed: {e:?}"));
        self.gui.destroy(&self.instance.plugin_handle());
        let gone = self.wait_for(PATIENCE, |s| s.x().children() == 0);
        assert!(gone, "{id}: the editor's X window is still there after hide + destroy");
    }

    /// The editor window's pixels: all of them, or those inside `rect`.
    fn screenshot(&self, rect: Option<[f32; 4]>) -> Image {
        let window = self.x().editor_window().unwrap_or_else(|| panic!("{}: the editor window is gone", self.plugin_id));
        self.x().capture(window, rect)
    }

    /// Writes the editor as it is now to `<plugin>-failure.png`; returns a
    /// note naming it, for a failure message.
    fn failure_screenshot(&self) -> String {
        let Some(window) = self.x.as_ref().and_then(|x| x.editor_window()) else { return String::new() };
        let path = workspace_path("target/editor-screenshots").join(format!("{}-failure.png", self.stem));
        self.x().capture(window, None).write_png(&path);
        format!(" (the editor at that moment: {})", path.display())
    }

    /// Root coordinates of a point in the editor window.
    fn at(&self, point: (i32, i32)) -> (i16, i16) {
        let window = self.x().editor_window().unwrap_or_else(|| panic!("{}: the editor window is gone", self.plugin_id));
        self.x().to_root(window, point)
    }

    // -- audio -------------------------------------------------------------

    fn port_layout(&mut self) -> PortLayout {
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        let ext = self.audio_ports;
        let mut channels = |is_input: bool| -> Vec<usize> {
            (0..ext.count(&handle, is_input)).map(|i| ext.get(&handle, i, is_input, &mut buffer).expect("audio port info").channel_count as usize).collect()
        };
        PortLayout { inputs: channels(true), outputs: channels(false) }
    }

    /// Activates at 48 kHz / 512 (honouring the restart nice-plug asks for
    /// when the latency changes) and starts the audio thread.
    fn start_audio(&mut self) {
        let config = PluginAudioConfiguration { sample_rate: SAMPLE_RATE, min_frames_count: 1, max_frames_count: BLOCK as u32 };
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
            std::thread::Builder::new().name("test-host-audio".into()).spawn(move || audio_thread(processor, layout, shared, log)).expect("spawn audio thread")
        };
        self.audio = Some(AudioRun { shared, thread });
    }

    fn blocks_processed(&self) -> u64 {
        self.audio.as_ref().map_or(0, |a| a.shared.blocks.load(Ordering::SeqCst))
    }

    /// Stops the audio thread and deactivates.
    fn stop_audio(&mut self) {
        if let Some(run) = self.audio.take() {
            run.shared.stop.store(true, Ordering::SeqCst);
            let processor = run.thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            self.instance.deactivate(processor);
        }
        self.pump();
    }

    /// Sends a parameter value with the next processed block (host automation).
    fn automate(&self, id: u32, value: f64) {
        let run = self.audio.as_ref().expect("automation needs the audio thread");
        run.shared.to_send.lock().unwrap().push((id, value));
    }

    // -- using controls ----------------------------------------------------

    /// The gesture for `id` in what the plugin sent since `mark`: the values
    /// between Begin and End (`None` until End has arrived).
    fn gesture_values(&self, mark: usize, id: u32) -> Option<Vec<f64>> {
        let sent = self.sent_since(mark);
        let begin = sent.iter().position(|e| *e == Sent::Begin(id))?;
        let end = begin + sent[begin..].iter().position(|e| *e == Sent::End(id))?;
        Some(sent[begin..end].iter().filter_map(|e| if let Sent::Value(i, v) = e { (*i == id).then_some(*v) } else { None }).collect())
    }

    /// Where `control` (same kind, parameter and option value) is drawn
    /// now, if it is fully inside the window.
    fn where_now(&mut self, control: &LayoutControl) -> Option<LayoutControl> {
        let layout = self.wait_frames(1);
        let size = layout.size;
        layout.controls.into_iter().find(|c| c.kind == control.kind && c.id == control.id && c.normalized == control.normalized).filter(|c| c.inside(size))
    }

    /// Puts the pointer on the centre of `key` where it is drawn now, and
    /// returns it once it stays there (text above it that changes, such as
    /// the status line, can move it); `None` if it left the window.
    fn aim(&mut self, key: &LayoutControl) -> Option<LayoutControl> {
        for _ in 0..5 {
            let now = self.where_now(key)?;
            let at = self.at(now.centre());
            self.x().motion(at);
            if self.where_now(key)?.rect == now.rect {
                return Some(now);
            }
        }
        panic!("{}: {} keeps moving", self.plugin_id, key.describe());
    }

    /// Drags a slider from its centre `DRAG_PX` to the right; checks the
    /// gesture and that the value rose while dragging right.
    fn drag_slider(&mut self, key: &LayoutControl) -> Option<Exercised> {
        let param = self.param_named(&key.name);
        let before = self.value(param.id);
        let control = self.aim(key)?;
        let (cx, cy) = control.centre();
        let mark = self.log_len();
        self.x().button(true);
        // Pressing sets the value under the pointer (nice-plug-egui's
        // ParamSlider): wait for the gesture to begin and that value to land.
        let began = self.wait_for(PATIENCE, |s| s.sent_since(mark).contains(&Sent::Begin(param.id)));
        if !began {
            self.x().button(false);
            panic!("{}: pressing {} sent no gesture begin{}", self.plugin_id, control.describe(), self.failure_screenshot());
        }
        self.wait_frames(1);
        let pressed = self.value(param.id);
        let steps = 8;
        for k in 1..=steps {
            let at = self.at((cx + DRAG_PX * k / steps, cy));
            self.x().motion(at);
            self.wait_for(Duration::from_millis(30), |_| false);
        }
        self.wait_frames(1);
        self.x().button(false);
        let ended = self.wait_for(PATIENCE, |s| s.gesture_values(mark, param.id).is_some());
        let values = self.gesture_values(mark, param.id).unwrap_or_default();
        if !ended {
            panic!("{}: dragging {} sent no gesture end (sent {:?}){}", self.plugin_id, control.describe(), self.sent_since(mark), self.failure_screenshot());
        }
        assert!(!values.is_empty(), "{}: dragging {} sent a gesture without a value", self.plugin_id, control.describe());
        let after = self.value(param.id);
        let last = *values.last().unwrap();
        assert!((after - last).abs() <= 1e-6 * (param.max - param.min).max(1.0), "{}: {}: the host reads {after}, the last value sent was {last}", self.plugin_id, control.describe());
        assert_ne!(after, before, "{}: dragging {} did not change {:?}", self.plugin_id, control.describe(), param.name);
        if pressed < param.max {
            assert!(
                after > pressed,
                "{}: dragging {} right by {DRAG_PX} px took {:?} from {pressed} (after the press) to {after}: it should increase",
                self.plugin_id,
                control.describe(),
                param.name
            );
        }
        Some(Exercised { control: control.describe(), before, after, values_sent: values.len() })
    }

    /// Clicks a toggle or an option; checks the gesture and the new value.
    fn click(&mut self, key: &LayoutControl) -> Option<Exercised> {
        let param = self.param_named(&key.name);
        let before = self.value(param.id);
        let control = self.aim(key)?;
        let mark = self.log_len();
        self.x().button(true);
        self.wait_for(Duration::from_millis(60), |_| false);
        self.x().button(false);
        let ended = self.wait_for(PATIENCE, |s| s.gesture_values(mark, param.id).is_some());
        if !ended {
            panic!(
                "{}: clicking {} sent no complete gesture (sent {:?}); is something else drawn over it?{}",
                self.plugin_id,
                control.describe(),
                self.sent_since(mark),
                self.failure_screenshot()
            );
        }
        let values = self.gesture_values(mark, param.id).unwrap();
        assert!(!values.is_empty(), "{}: clicking {} sent a gesture without a value", self.plugin_id, control.describe());
        let after = self.value(param.id);
        match control.kind.as_str() {
            "toggle" => {
                let flipped = if param.normalized(before) < 0.5 { param.max } else { param.min };
                assert_eq!(after, flipped, "{}: clicking {} left {:?} at {after} (was {before})", self.plugin_id, control.describe(), param.name);
            }
            _ => {
                let wanted = param.value(control.normalized.expect("an option has its normalized value"));
                assert!(
                    (after - wanted).abs() <= 1e-4 * (param.max - param.min).max(1.0),
                    "{}: clicking {} set {:?} to {after}, the option stands for {wanted}",
                    self.plugin_id,
                    control.describe(),
                    param.name
                );
            }
        }
        Some(Exercised { control: control.describe(), before, after, values_sent: values.len() })
    }

    /// Sends a value for the slider's parameter through `process` (host
    /// automation) and waits until the slider, where it is drawn now, is
    /// filled to that value. Returns the time it took, the value
    /// (normalized) and the fill drawn.
    fn automation_redraws(&mut self, key: &LayoutControl) -> (Duration, f64, f64) {
        let param = self.param_named(&key.name);
        self.x().pointer_away();
        let current = param.normalized(self.value(param.id));
        // The measure of the fill must see the current value first (and no
        // hover colour: the pointer is away).
        let mut shown = f64::NAN;
        let matches_now = self.wait_for(PATIENCE, |s| {
            shown = s.slider_fill(key);
            (shown - current).abs() < 0.08
        });
        assert!(
            matches_now,
            "{}: {} is drawn {:.0} % filled, but {:?} is at {:.0} %",
            self.plugin_id,
            key.describe(),
            100.0 * shown,
            param.name,
            100.0 * current
        );
        let target = if current > 0.5 { 0.15 } else { 0.85 };
        let value = param.value(target);
        let started = Instant::now();
        self.automate(param.id, value);
        let shows = self.wait_for(PATIENCE, |s| {
            shown = s.slider_fill(key);
            (shown - target).abs() < 0.08
        });
        let elapsed = started.elapsed();
        let host_value = self.value(param.id);
        assert!(
            (param.normalized(host_value) - target).abs() < 0.01,
            "{}: the plugin did not take the host's value {value} for {:?} (has {host_value})",
            self.plugin_id,
            param.name
        );
        if !shows {
            panic!(
                "{}: {PATIENCE:?} after the host set {:?} to {:.0} %, {} is drawn {:.0} % filled{}",
                self.plugin_id,
                param.name,
                100.0 * target,
                key.describe(),
                100.0 * shown,
                self.failure_screenshot()
            );
        }
        (elapsed, target, shown)
    }

    /// How far the slider `key` is filled, where the layout file last
    /// placed it (NaN when it is not inside the window).
    fn slider_fill(&mut self, key: &LayoutControl) -> f64 {
        let Some(layout) = self.layout() else { return f64::NAN };
        let size = layout.size;
        match layout.controls.into_iter().find(|c| c.kind == key.kind && c.id == key.id).filter(|c| c.inside(size)) {
            Some(c) => self.screenshot(Some(c.rect)).fill_fraction(),
            None => f64::NAN,
        }
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
        }
    }
}

/// Checks a screenshot is not blank: at least 16 colours, and at least 5 %
/// of the pixels differ from the most common colour.
fn assert_not_blank(plugin_id: &str, image: &Image, what: &str) -> (usize, f64) {
    let (colours, other) = image.variety();
    assert!(
        colours >= 16 && other >= 0.05,
        "{plugin_id}: {what} looks blank: {colours} distinct colours, {:.1} % of pixels differ from the most common one",
        100.0 * other
    );
    (colours, other)
}

// ---------------------------------------------------------------------------
// The test every plugin runs
// ---------------------------------------------------------------------------

fn editor_works(plugin_id: &str) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let display = x_server();
    let started = Instant::now();
    let entry = load_bundle();
    let mut s = Session::new(&entry, plugin_id);
    let _ = std::fs::remove_file(s.layout_path());
    let _ = std::fs::remove_file(workspace_path("target/editor-screenshots").join(format!("{}-failure.png", s.stem)));

    // 1. The editor opens embedded in the host's window; audio runs.
    s.open_editor(display);
    s.start_audio();
    let opened_in = started.elapsed();

    // 2. A screenshot once meters have had audio to show.
    let ran = s.wait_for(Duration::from_secs(30), |s| s.blocks_processed() >= BLOCKS_BEFORE_SCREENSHOT);
    assert!(ran, "{plugin_id}: the audio thread processed only {} blocks in 30 s", s.blocks_processed());
    s.x().pointer_away();
    let layout = s.wait_frames(2);
    let image = s.screenshot(None);
    let dir = workspace_path("target/editor-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png_path = dir.join(format!("{}.png", s.stem));
    image.write_png(&png_path);
    let (colours, other) = assert_not_blank(plugin_id, &image, &format!("the screenshot {}", png_path.display()));
    let [lw, lh] = layout.size;
    assert!(
        (lw - image.width as f32).abs() <= 2.0 && (lh - image.height as f32).abs() <= 2.0,
        "{plugin_id}: the layout file says the window is {lw}x{lh} px, the editor's X window is {}x{}: control positions would be wrong",
        image.width,
        image.height
    );
    println!(
        "{plugin_id}: editor {}x{} opened in {:.1} s; screenshot {} ({colours} colours, {:.0} % off the background)",
        image.width,
        image.height,
        opened_in.as_secs_f64(),
        png_path.display(),
        100.0 * other
    );

    // 3. Every control drawn fully inside the window, used with real input.
    let size = layout.size;
    assert!(size[0] >= 100.0 && size[1] >= 100.0, "{plugin_id}: the layout's window size {size:?} is implausible");
    let visible: Vec<LayoutControl> = layout.controls.iter().filter(|c| c.inside(size)).cloned().collect();
    let hidden: Vec<String> = layout.controls.iter().filter(|c| !c.inside(size)).map(|c| c.describe()).collect();
    for c in &visible {
        assert!(["slider", "toggle", "option", "action"].contains(&c.kind.as_str()), "{plugin_id}: unknown control kind in {}", c.describe());
        if c.kind != "action" {
            s.param_named(&c.name);
        }
    }
    let sliders: Vec<LayoutControl> = visible.iter().filter(|c| c.kind == "slider").cloned().collect();
    let toggles: Vec<LayoutControl> = visible.iter().filter(|c| c.kind == "toggle").cloned().collect();
    let actions = visible.iter().filter(|c| c.kind == "action").count();
    assert!(!sliders.is_empty(), "{plugin_id}: the editor shows no slider inside its window (controls: {:?})", layout.controls.iter().map(|c| c.describe()).collect::<Vec<_>>());

    // The layout can change as controls are used (a toggle shows or hides a
    // line): each control is looked up again, where it is drawn now.
    let mut exercised = Vec::new();
    let mut moved_away = Vec::new();
    for c in sliders.iter().chain(&toggles) {
        let used = if c.kind == "slider" { s.drag_slider(c) } else { s.click(c) };
        match used {
            Some(e) => exercised.push(e),
            None => moved_away.push(c.describe()),
        }
    }

    // 4. Host automation shows in the editor.
    let slider = &sliders[0];
    let (redraw, target, shown) = s.automation_redraws(slider);
    println!(
        "{plugin_id}: host automation of {:?} to {:.0} % redrew its slider in {} ms (drawn {:.0} % filled)",
        slider.name,
        100.0 * target,
        redraw.as_millis(),
        100.0 * shown
    );
    assert!(redraw <= AUTOMATION_REDRAW, "{plugin_id}: host automation took {} ms to show in the editor (at most {} ms)", redraw.as_millis(), AUTOMATION_REDRAW.as_millis());

    // Options last (a model option may start a model load): per parameter,
    // one option that is not selected now.
    let mut option_ids = HashSet::new();
    for c in visible.iter().filter(|c| c.kind == "option") {
        if option_ids.contains(&c.id) {
            continue;
        }
        let param = s.param_named(&c.name);
        let now = s.value(param.id);
        let wanted = param.value(c.normalized.unwrap_or_else(|| panic!("{plugin_id}: option {} has no normalized value", c.describe())));
        if (now - wanted).abs() <= 1e-6 * (param.max - param.min).max(1.0) {
            continue;
        }
        match s.click(c) {
            Some(e) => {
                option_ids.insert(c.id.clone());
                exercised.push(e);
            }
            None => moved_away.push(c.describe()),
        }
    }
    let (begun, ended) = {
        let log = s.log.lock().unwrap();
        (log.iter().filter(|e| matches!(e, Sent::Begin(_))).count(), log.iter().filter(|e| matches!(e, Sent::End(_))).count())
    };
    for e in &exercised {
        println!("{plugin_id}:   {} : {} -> {} ({} value(s) in one gesture)", e.control, e.before, e.after, e.values_sent);
    }
    println!(
        "{plugin_id}: {} controls used ({} sliders, {} toggles, {} options); the host saw {begun} gesture begins and {ended} ends; {actions} action(s) inside the window; not fully visible (scrolled): {hidden:?}; moved out of view while testing: {moved_away:?}",
        exercised.len(),
        sliders.len(),
        toggles.len(),
        option_ids.len()
    );
    assert!(!exercised.is_empty(), "{plugin_id}: no control changed a parameter");

    // 5. Close and re-open; the re-opened editor works, here with the plugin
    //    inactive (the change reaches the host through `flush`).
    s.close_editor();
    s.stop_audio();
    let _ = std::fs::remove_file(s.layout_path());
    s.open_editor(display);
    s.x().pointer_away();
    s.wait_frames(2);
    assert_not_blank(plugin_id, &s.screenshot(None), "the re-opened editor");
    let layout = s.layout().unwrap();
    let again = layout.controls.iter().find(|c| c.kind == "slider" && c.inside(layout.size)).cloned().unwrap_or_else(|| panic!("{plugin_id}: the re-opened editor shows no slider"));
    let e = s.drag_slider(&again).unwrap_or_else(|| panic!("{plugin_id}: {} left the re-opened window", again.describe()));
    println!("{plugin_id}: re-opened; {} : {} -> {} while inactive (through flush)", e.control, e.before, e.after);
    s.close_editor();
    drop(s);
    println!("{plugin_id}: editor test took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn clean_editor_opens_draws_and_responds() {
    editor_works(CLEAN_ID);
}

#[test]
fn stems_editor_opens_draws_and_responds() {
    editor_works(STEMS_ID);
}

#[test]
fn voice_editor_opens_draws_and_responds() {
    editor_works(VOICE_ID);
}
