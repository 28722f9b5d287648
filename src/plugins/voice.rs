//! Manifold Voice: voice conversion.
//!
//! Models: the built-in converter (any target voice from a reference
//! recording; `pipelines::convert_voice`) and RVC voice models the user
//! drops into the user models folder (`pipelines::convert_rvc`).
//!
//! Main thread: construction, `activate` (plans latency, starts the worker
//! and the sidechain capture thread). Audio thread: `process`, `reset`.
//! Capture thread: learns the target voice when the capture switch goes off.

use super::common::{self, BypassFade, DeviceChoice};
use crate::bridge::capture::{RecordingSink, SidechainCapture};
use crate::bridge::similarity::SimilarityMonitor;
use crate::bridge::worker::{ModelCatalog, Shared};
use crate::bridge::{BridgeConfig, LatencyPlan, RealtimeBridge, ModelShelf, Telemetry};
use crate::pipelines::convert_rvc;
use crate::pipelines::convert_voice::{
    self, ConverterSettings, DefaultVoiceConverter, TargetVoice,
};
use crate::pipelines::stream::{HostRateStream, ModelTiming};
use crate::pipelines::{ConversionControls, HopModel};
use crate::runtime::onnx::Device;
use crate::runtime::RuntimeError;
use nice_plug::params::persist::PersistentField;
use nice_plug::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Rate of the target reference kept in the plugin state.
pub const SAVED_REFERENCE_RATE: u32 = 16_000;
/// Longest reference kept in the plugin state, seconds.
pub const SAVED_REFERENCE_SECONDS: usize = 30;

/// The latency/quality trade-off of live conversion with the built-in
/// converter (user RVC models have one live plan). Offline renders (host
/// offline mode and the CLI) always use the full converter with HiFi-GAN.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveVoice {
    /// No phone look-ahead (warp, equalisation, pitch), pitch 20 ms late,
    /// a shorter mel window, source–filter synthesis holding each frame.
    #[id = "low"]
    #[name = "Low latency (≈56 ms)"]
    LowLatency,
    /// The whole converter, source–filter synthesis; its strength control
    /// is mapped so it converts as far as offline at the same position
    /// (`ConverterSettings::strength_exponent`).
    #[id = "balanced"]
    #[name = "Balanced (≈135 ms)"]
    Balanced,
    /// The whole converter with HiFi-GAN, as offline: needs a fast CPU or a GPU.
    #[id = "quality"]
    #[name = "Quality, HiFi-GAN (≈0.7 s, fast CPU or GPU)"]
    Quality,
}

impl LiveVoice {
    pub const ALL: [LiveVoice; 3] = [
        LiveVoice::LowLatency,
        LiveVoice::Balanced,
        LiveVoice::Quality,
    ];

    pub fn cli_name(self) -> &'static str {
        match self {
            LiveVoice::LowLatency => "low",
            LiveVoice::Balanced => "balanced",
            LiveVoice::Quality => "quality",
        }
    }

    pub fn from_cli_name(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|q| q.cli_name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown live setting '{name}' (choose from: {})",
                    Self::ALL.map(|q| q.cli_name()).join(", ")
                )
            })
    }
}

/// Live (with its setting) or offline: how the built-in converter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversionMode {
    Live(LiveVoice),
    Offline,
}

impl ConversionMode {
    pub fn for_host(offline: bool, live: LiveVoice) -> Self {
        if offline {
            ConversionMode::Offline
        } else {
            ConversionMode::Live(live)
        }
    }

    /// The built-in converter's settings for this mode.
    pub fn converter(self) -> ConverterSettings {
        match self {
            ConversionMode::Live(LiveVoice::LowLatency) => ConverterSettings::LIVE_LOW_LATENCY,
            ConversionMode::Live(LiveVoice::Balanced) => ConverterSettings::LIVE_BALANCED,
            ConversionMode::Live(LiveVoice::Quality) => ConverterSettings::LIVE_QUALITY,
            ConversionMode::Offline => ConverterSettings::OFFLINE,
        }
    }
}

/// One conversion model the plugin can switch to.
#[derive(Debug, Clone)]
pub struct VoiceModel {
    pub name: String,
    kind: VoiceModelKind,
}

#[derive(Debug, Clone)]
enum VoiceModelKind {
    /// Any target voice from a reference recording.
    Default,
    /// A user's RVC voice model (ONNX) with its content encoder.
    UserRvc(Box<convert_rvc::RvcModelEntry>),
}

impl VoiceModel {
    pub fn default_converter() -> Self {
        Self { name: "Any voice from a reference (built-in)".into(), kind: VoiceModelKind::Default }
    }

    /// The files this model's output depends on (weights, sidecar, content
    /// encoder), for `manifold batch`'s ledger. Main thread.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let installed = |id: &str| crate::runtime::store::find_model(id).map(|m| m.file_path()).ok();
        match &self.kind {
            VoiceModelKind::Default => [convert_voice::CONTENT_MODEL_ID, crate::pipelines::vocoder_hifigan::MODEL_ID].into_iter().filter_map(installed).collect(),
            VoiceModelKind::UserRvc(m) => {
                let mut files = vec![m.onnx.clone(), m.sidecar_path.clone()];
                if let Ok(s) = &m.settings {
                    files.push(s.encoder.clone());
                    files.extend(s.pitch_model.clone());
                }
                files
            }
        }
    }

    /// Name on the command line.
    pub fn cli_name(&self) -> String {
        match &self.kind {
            VoiceModelKind::Default => "default".into(),
            VoiceModelKind::UserRvc(m) => m.name.clone(),
        }
    }

    /// Whether the model needs a target reference recording.
    pub fn needs_target(&self) -> bool {
        matches!(self.kind, VoiceModelKind::Default)
    }

    /// Every model this installation offers, in parameter order (main
    /// thread): the built-in converter, then usable user RVC models.
    pub fn available() -> Vec<VoiceModel> {
        let mut models = vec![VoiceModel::default_converter()];
        models.extend(
            convert_rvc::discover_voice_models()
                .into_iter()
                .filter(|m| m.is_usable())
                .map(|m| VoiceModel { name: format!("{} (user RVC)", m.name), kind: VoiceModelKind::UserRvc(Box::new(m)) }),
        );
        models
    }

    /// One line per user voice model that cannot be used, with the reason.
    pub fn user_model_problems() -> Vec<String> {
        convert_rvc::discover_voice_models().iter().filter_map(|m| m.error().map(|why| format!("{}: {why}", m.name))).collect()
    }

    /// The model's row in the editor's model table (main/GUI thread).
    pub fn model_row(&self) -> crate::editor::ModelRow {
        let live_ms = |t: Result<ModelTiming, RuntimeError>| t.ok().map(|t| t.delay as f64 * 1000.0 / t.sample_rate.max(1) as f64);
        match &self.kind {
            VoiceModelKind::Default => {
                let mut row = crate::editor::ModelRow::from_store(&self.name, "voice conversion", crate::pipelines::vocoder_hifigan::MODEL_ID);
                if row.problem.is_none() {
                    row.latency_ms =
                        live_ms(self.timing(ConversionMode::Live(LiveVoice::Balanced)));
                    row.licence = format!(
                        "{} (vocoder) + GPL-3.0-or-later (content model, Manifold's own)",
                        row.licence
                    );
                    row.source = format!("HiFi-GAN {}; models/content", row.source);
                }
                row
            }
            VoiceModelKind::UserRvc(m) => {
                let rate = m.settings.as_ref().ok().map(|s| s.sample_rate);
                crate::editor::ModelRow::user(
                    &self.name,
                    "voice conversion (user RVC)",
                    &m.onnx,
                    rate,
                    live_ms(self.timing(ConversionMode::Live(LiveVoice::Balanced))),
                    None,
                )
            }
        }
    }

    /// Rows for user voice models that cannot be used, with the reason.
    pub fn unusable_user_rows() -> Vec<crate::editor::ModelRow> {
        convert_rvc::discover_voice_models()
            .iter()
            .filter_map(|m| m.error().map(|why| crate::editor::ModelRow::user(&m.name, "voice conversion (user RVC)", &m.onnx, None, None, Some(why))))
            .collect()
    }

    /// Timing known without loading the model.
    pub fn timing(&self, mode: ConversionMode) -> Result<ModelTiming, RuntimeError> {
        match &self.kind {
            VoiceModelKind::Default => convert_voice::installed_timing(mode.converter()),
            VoiceModelKind::UserRvc(m) => m.timing(rvc_options(mode)),
        }
    }

    /// Loads the model (worker or loader thread).
    pub fn load(&self, mode: ConversionMode, channels: usize, device: Device) -> Result<Box<dyn HopModel>, RuntimeError> {
        crate::runtime::onnx::environment()?;
        let threads = match mode {
            ConversionMode::Live(_) => 1,
            ConversionMode::Offline => crate::runtime::onnx::offline_threads(),
        };
        match &self.kind {
            VoiceModelKind::Default => Ok(Box::new(DefaultVoiceConverter::load_installed(
                channels,
                device,
                threads,
                mode.converter(),
            )?)),
            VoiceModelKind::UserRvc(m) => Ok(Box::new(convert_rvc::RvcVoice::load(
                m,
                convert_rvc::RvcOptions {
                    threads,
                    ..rvc_options(mode)
                },
                channels,
                device,
            )?)),
        }
    }
}

/// RVC streaming settings for a mode (offline: longer blocks, more context).
fn rvc_options(mode: ConversionMode) -> convert_rvc::RvcOptions {
    match mode {
        ConversionMode::Live(_) => convert_rvc::RvcOptions::default(),
        ConversionMode::Offline => convert_rvc::RvcOptions {
            block: 50,
            context: 50,
            ..Default::default()
        },
    }
}

/// Everything that decides Voice's bridge; shared by the plugin, the CLI
/// and the tests.
pub struct VoiceSetup {
    pub sample_rate: f32,
    pub channels: usize,
    pub max_block: usize,
    pub mode: ConversionMode,
    pub models: Vec<VoiceModel>,
    pub initial_model: usize,
    pub device: Device,
}

impl VoiceSetup {
    fn bridge_config(&self) -> Result<BridgeConfig, String> {
        // One latency for every model (the largest), so switching never
        // changes what the host was told. Models whose timing is unknown
        // (not installed) are left out.
        let timings = self.models.iter().filter_map(|m| m.timing(self.mode).ok());
        let (stream_latency, hop_host) = HostRateStream::common_latency(timings, self.sample_rate as u32, self.channels)
            .map_err(|e| e.to_string())?
            .ok_or("no voice model is installed (run `cargo xtask models`)")?;
        Ok(BridgeConfig {
            sample_rate: self.sample_rate,
            channels: self.channels,
            out_channels: self.channels,
            fallback_share: 1.0,
            max_block: self.max_block,
            offline: self.mode == ConversionMode::Offline,
            stream_latency,
            // A hop's work may come late by up to a whole hop: a HiFi-GAN
            // block or an RVC window is computed per hop, and Balanced's
            // one-frame hop is short enough that scheduling jitter is a
            // large share of it. Low latency with only the built-in
            // converter trades that reserve for delay: half a hop (5.8 ms
            // at 48 kHz), as Clean's light models have; its frame costs
            // about 1 % of the hop. (A user RVC model keeps a whole hop.)
            inference_allowance: match self.mode {
                ConversionMode::Offline => 0,
                ConversionMode::Live(LiveVoice::LowLatency) if self.only_built_in() => hop_host.div_ceil(2),
                ConversionMode::Live(_) => hop_host,
            },
            label: "Voice".into(),
            initial_model: self.initial_model,
            shelf: None,
        })
    }

    /// Whether every model the plugin can switch to is the built-in
    /// converter (no user RVC model).
    fn only_built_in(&self) -> bool {
        self.models.iter().all(|m| matches!(m.kind, VoiceModelKind::Default))
    }

    /// The latency this setup reports (main thread).
    pub fn latency_plan(&self) -> Result<LatencyPlan, String> {
        Ok(self.bridge_config()?.latency_plan())
    }

    /// Builds the bridge; main thread.
    pub fn build_bridge(&self, telemetry: Arc<Telemetry>) -> Result<RealtimeBridge, String> {
        self.build_bridge_keeping(telemetry, None)
    }

    /// [`Self::build_bridge`], keeping the loaded model in `shelf` between
    /// activations (the plugin). Main thread.
    pub fn build_bridge_keeping(&self, telemetry: Arc<Telemetry>, shelf: Option<&ModelShelf>) -> Result<RealtimeBridge, String> {
        let mut config = self.bridge_config()?;
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        config.shelf = shelf.map(|s| (s.clone(), format!("voice/{}/{:?}/{:?}/{}", self.channels, self.device, self.mode, names.join("|"))));
        let models = self.models.clone();
        let (mode, channels, device) = (self.mode, self.channels, self.device);
        let catalog: ModelCatalog = Arc::new(move |index| {
            let m = models.get(index).or(models.first()).ok_or_else(|| RuntimeError::Inference("no voice model installed".into()))?;
            m.load(mode, channels, device)
        });
        Ok(RealtimeBridge::new(config, telemetry, catalog))
    }
}

#[derive(Params)]
pub struct VoiceParams {
    /// Dry/wet.
    #[id = "mix"]
    pub mix: FloatParam,
    #[id = "gain"]
    pub output_gain: FloatParam,
    /// 0 % keeps every word (only the pitch range moves), 100 % sounds most
    /// like the target.
    #[id = "strength"]
    pub strength: FloatParam,
    #[id = "transpose"]
    pub transpose: FloatParam,
    /// Speaker index of multi-speaker RVC models.
    #[id = "speaker"]
    pub speaker: IntParam,
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// Index into [`VoiceModel::available`].
    #[id = "model"]
    pub model: IntParam,
    #[id = "device"]
    pub device: EnumParam<DeviceChoice>,
    /// Latency against quality live (applies on re-activation).
    #[id = "live"]
    pub live: EnumParam<LiveVoice>,
    /// While on, the sidechain input is recorded; switching it off makes
    /// that voice the target.
    #[id = "capture"]
    pub capture: BoolParam,
    /// The target reference (16 kHz, 16-bit, up to 30 s), saved with the
    /// project so the target survives reloading.
    #[persist = "target-reference"]
    pub target_reference: SavedTarget,
    #[id = "status"]
    pub status: IntParam,
}

pub struct Voice {
    params: Arc<VoiceParams>,
    /// The editor window's size and whether it is open (GUI thread).
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
    /// Set by the editor while its window is open (the similarity readout
    /// only measures then).
    editor_open: Arc<AtomicBool>,
    /// The running bridge's shared state, for targets loaded by the editor.
    shared: Arc<parking_lot::Mutex<Option<Arc<Shared>>>>,
    telemetry: Arc<Telemetry>,
    models: Vec<VoiceModel>,
    bridge: Option<RealtimeBridge>,
    /// The loaded model, kept while the plugin is deactivated (main/worker).
    shelf: ModelShelf,
    capture: Option<SidechainCapture>,
    /// Measures how close the output sounds to the target while the editor
    /// is open.
    similarity: Option<SimilarityMonitor>,
    bypass_fade: BypassFade,
    /// The same fade, for the output gain (bypass leaves the gain out too).
    gain_bypass_fade: BypassFade,
}

impl Default for Voice {
    fn default() -> Self {
        let telemetry = Arc::new(Telemetry::default());
        telemetry.set_status("Voice: not active yet");
        let models = VoiceModel::available();
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        let max_index = models.len().saturating_sub(1) as i32;
        let shared: Arc<parking_lot::Mutex<Option<Arc<Shared>>>> = Arc::new(parking_lot::Mutex::new(None));
        Self {
            params: Arc::new(VoiceParams {
                // (`shared` is the same handle as the plugin's, cloned below.)
                mix: common::mix_param(),
                output_gain: FloatParam::new("Output gain", 0.0, FloatRange::Linear { min: -24.0, max: 12.0 })
                    .with_unit(" dB")
                    .with_step_size(0.1)
                    .with_smoother(SmoothingStyle::Linear(20.0)),
                strength: FloatParam::new("Strength", convert_voice::DEFAULT_STRENGTH * 100.0, FloatRange::Linear { min: 0.0, max: 100.0 }).with_unit(" %").with_step_size(1.0),
                transpose: FloatParam::new("Transpose", 0.0, FloatRange::Linear { min: -24.0, max: 24.0 }).with_unit(" st").with_step_size(0.1),
                speaker: IntParam::new("Speaker id", 0, IntRange::Linear { min: 0, max: 255 }),
                bypass: common::bypass_param(),
                // (A range needs two values even with one model installed;
                // an index past the list means the last model.)
                model: common::model_param(names, max_index.max(1)),
                device: EnumParam::new("Device", DeviceChoice::Cpu).non_automatable(),
                live: EnumParam::new(
                    "Live setting (applies on re-activation)",
                    LiveVoice::Balanced,
                )
                .non_automatable(),
                capture: BoolParam::new("Capture target voice (sidechain)", false)
                    .non_automatable(),
                target_reference: SavedTarget {
                    samples: Arc::new(RwLock::new(Vec::new())),
                    running: shared.clone(),
                    telemetry: telemetry.clone(),
                },
                status: common::status_param(telemetry.clone()),
            }),
            editor_state: crate::editor::voice::default_state(),
            editor_open: Arc::new(AtomicBool::new(false)),
            shared,
            telemetry,
            models,
            bridge: None,
            shelf: ModelShelf::default(),
            capture: None,
            similarity: None,
            bypass_fade: BypassFade::new(48000.0),
            gain_bypass_fade: BypassFade::new(48000.0),
        }
    }
}

/// The target reference as saved in the plugin state, and what restoring it
/// does. The wrapper does not activate the plugin again after the host loads
/// a state (a DAW restoring a session often activates first and sets the
/// state after), so a restored reference is learnt here, at once, and handed
/// to the running worker: the next render converts to that voice, not to
/// whatever was set before. (Measured in Ardour: without this, the first
/// export after opening a session converted to no target at all.)
pub struct SavedTarget {
    /// 16 kHz, 16-bit, up to [`SAVED_REFERENCE_SECONDS`].
    pub samples: Arc<RwLock<Vec<i16>>>,
    /// The running bridge's shared state, while active.
    running: Arc<parking_lot::Mutex<Option<Arc<Shared>>>>,
    telemetry: Arc<Telemetry>,
}

impl<'a> PersistentField<'a, Vec<i16>> for SavedTarget {
    /// Main thread (the host's state load).
    fn set(&self, new_value: Vec<i16>) {
        let changed = self.samples.read().map_or(true, |v| *v != new_value);
        if let Ok(mut v) = self.samples.write() {
            *v = new_value.clone();
        }
        let running = self.running.lock().clone();
        if let (true, Some(shared)) = (changed, running) {
            if new_value.is_empty() {
                shared.set_target_voice(None);
                return;
            }
            match learn_target(&from_saved(&new_value), SAVED_REFERENCE_RATE) {
                Ok(t) => shared.set_target_voice(Some(t)),
                Err(e) => self.telemetry.set_status(format!("Voice: the saved target voice cannot be used: {e}")),
            }
        }
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&Vec<i16>) -> R,
    {
        match self.samples.read() {
            Ok(v) => f(&v),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

/// Learns a target voice from mono audio with the installed content model
/// (main, loader or capture thread).
pub fn learn_target(audio: &[f32], rate: u32) -> Result<Arc<TargetVoice>, String> {
    let load = || -> Result<convert_voice::ContentModel, RuntimeError> {
        crate::runtime::onnx::environment()?;
        let installed = crate::runtime::store::find_model(convert_voice::CONTENT_MODEL_ID)?;
        convert_voice::ContentModel::load(&installed.dir, Device::Cpu, 1)
    };
    let mut content = load().map_err(|e| e.to_string())?;
    TargetVoice::analyse(audio, rate, &mut content).map(Arc::new).map_err(|e| e.to_string())
}

/// Reads a reference recording and learns the target voice from it
/// (loader or main thread). Returns the target and the reference as saved
/// in the plugin state.
pub fn learn_target_file(path: &std::path::Path) -> Result<(Arc<TargetVoice>, Vec<i16>), String> {
    let audio = crate::offline::read_audio(path).map_err(|e| e.to_string())?;
    let channels = audio.channels.len().max(1) as f32;
    let mono: Vec<f32> = (0..audio.frames()).map(|i| audio.channels.iter().map(|c| c[i]).sum::<f32>() / channels).collect();
    let target = learn_target(&mono, audio.sample_rate)?;
    Ok((target, to_saved(&mono, audio.sample_rate)))
}

/// Loads a target reference file for the editor on a loader thread, so the
/// GUI never waits. The result goes where a sidechain capture goes: the
/// plugin state and, while active, the worker.
#[derive(Clone)]
pub struct TargetLoader {
    busy: Arc<AtomicBool>,
    persist: Arc<RwLock<Vec<i16>>>,
    /// The running bridge's shared state (set at activation).
    shared: Arc<parking_lot::Mutex<Option<Arc<Shared>>>>,
    telemetry: Arc<Telemetry>,
}

impl TargetLoader {
    /// `persist`: the plugin's saved reference; `shared`: the running
    /// bridge's shared state, when active (main thread).
    pub fn new(persist: Arc<RwLock<Vec<i16>>>, shared: Arc<parking_lot::Mutex<Option<Arc<Shared>>>>, telemetry: Arc<Telemetry>) -> Self {
        Self { busy: Arc::new(AtomicBool::new(false)), persist, shared, telemetry }
    }

    /// GUI thread: whether a file is being learnt now.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// GUI thread: starts learning `path`; ignored while busy.
    pub fn load(&self, path: std::path::PathBuf) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let spawned = std::thread::Builder::new().name("manifold-target-loader".into()).spawn(move || {
            this.telemetry.set_status(format!("Learning the target voice from {} …", path.display()));
            match learn_target_file(&path) {
                Ok((target, saved)) => {
                    let seconds = saved.len() as f64 / SAVED_REFERENCE_RATE as f64;
                    let pitch = target.pitch.mean_hz();
                    if let Ok(mut v) = this.persist.write() {
                        *v = saved;
                    }
                    if let Some(shared) = this.shared.lock().as_ref() {
                        shared.set_target_voice(Some(target));
                    }
                    this.telemetry.set_status(format!("Target voice loaded from {} ({seconds:.1} s, median pitch {pitch:.0} Hz)", path.display()));
                }
                Err(e) => this.telemetry.set_status(format!("Target voice not set: {}: {e}", path.display())),
            }
            this.busy.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.busy.store(false, Ordering::Release);
        }
    }
}

/// The reference as saved in the plugin state: 16 kHz, 16-bit, at most
/// [`SAVED_REFERENCE_SECONDS`].
pub fn to_saved(audio: &[f32], rate: u32) -> Vec<i16> {
    let x =
        crate::dsp::resample::resample_whole(audio, rate, SAVED_REFERENCE_RATE).unwrap_or_default();
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-9);
    let scale = if peak > 1.0 { 1.0 / peak } else { 1.0 };
    x.iter().take(SAVED_REFERENCE_SECONDS * SAVED_REFERENCE_RATE as usize).map(|v| (v * scale * 32767.0).round() as i16).collect()
}

fn from_saved(saved: &[i16]) -> Vec<f32> {
    saved.iter().map(|v| *v as f32 / 32767.0).collect()
}

/// Starts the capture thread: learns the target from the recording.
fn start_capture(sample_rate: u32, shared: Arc<crate::bridge::worker::Shared>, persist: Arc<RwLock<Vec<i16>>>) -> SidechainCapture {
    let telemetry = shared.telemetry.clone();
    let sink: RecordingSink = Arc::new(move |audio, rate| {
        let target = learn_target(audio, rate)?;
        if let Ok(mut v) = persist.write() {
            *v = to_saved(audio, rate);
        }
        let note = format!(", median pitch {:.0} Hz", target.pitch.mean_hz());
        shared.set_target_voice(Some(target));
        Ok(note)
    });
    SidechainCapture::start(sample_rate, telemetry, sink)
}

impl Voice {
    /// The chosen model's index into `models` (the last one past the end).
    fn model_index(&self) -> usize {
        (self.params.model.value().max(0) as usize).min(self.models.len().saturating_sub(1))
    }
}

impl Plugin for Voice {
    const NAME: &'static str = "Manifold Voice";
    const VENDOR: &'static str = common::VENDOR;
    const URL: &'static str = common::URL;
    const EMAIL: &'static str = common::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            aux_input_ports: &[new_nonzero_u32(2)],
            names: PortNames {
                layout: Some("Stereo + target voice sidechain"),
                main_input: Some("Input"),
                main_output: Some("Output"),
                aux_inputs: &["Target voice"],
                aux_outputs: &[],
            },
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            aux_input_ports: &[new_nonzero_u32(1)],
            names: PortNames {
                layout: Some("Mono + target voice sidechain"),
                main_input: Some("Input"),
                main_output: Some("Output"),
                aux_inputs: &["Target voice"],
                aux_outputs: &[],
            },
            ..AudioIOLayout::const_default()
        },
    ];

    type Editor = nice_plug_egui::EguiEditor<crate::editor::voice::VoiceEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        let loader = TargetLoader::new(self.params.target_reference.samples.clone(), self.shared.clone(), self.telemetry.clone());
        crate::editor::voice::create(self.params.clone(), self.telemetry.clone(), self.models.clone(), loader, self.editor_open.clone(), self.editor_state.clone())
    }

    fn activate(&mut self, layout: &AudioIOLayout, config: &BufferConfig, context: &mut impl ActivateContext<Self>) -> bool {
        let channels = layout.main_output_channels.map_or(2, |c| c.get() as usize);
        let offline = config.process_mode == ProcessMode::Offline;
        *self.shared.lock() = None;
        self.similarity = None;
        self.bridge = None;
        self.capture = None;
        let setup = VoiceSetup {
            sample_rate: config.sample_rate,
            channels,
            max_block: config.max_buffer_size as usize,
            mode: ConversionMode::for_host(offline, self.params.live.value()),
            models: self.models.clone(),
            initial_model: self.model_index(),
            device: self.params.device.value().into(),
        };
        match setup.build_bridge_keeping(self.telemetry.clone(), Some(&self.shelf)) {
            Ok(bridge) => {
                let plan = bridge.latency();
                nice_log!("Voice: {}", plan.describe(config.sample_rate));
                context.set_latency_samples(plan.total as u32);
                let saved = self.params.target_reference.samples.read().map(|v| v.clone()).unwrap_or_default();
                if !saved.is_empty() {
                    // A saved target: learn it again (well under a second).
                    match learn_target(&from_saved(&saved), SAVED_REFERENCE_RATE) {
                        Ok(t) => bridge.shared().set_target_voice(Some(t)),
                        Err(e) => self.telemetry.set_status(format!("Voice: the saved target voice cannot be used: {e}")),
                    }
                }
                self.capture = Some(start_capture(config.sample_rate as u32, bridge.shared().clone(), self.params.target_reference.samples.clone()));
                *self.shared.lock() = Some(bridge.shared().clone());
                self.similarity = Some(SimilarityMonitor::start(config.sample_rate as u32, self.telemetry.clone(), self.params.target_reference.samples.clone(), self.editor_open.clone()));
                self.bridge = Some(bridge);
            }
            Err(e) => {
                self.telemetry.set_status(format!("Voice: cannot run at {} Hz: {e}", config.sample_rate));
                context.set_latency_samples(0);
            }
        }
        self.bypass_fade = BypassFade::new(config.sample_rate);
        self.bypass_fade.set_immediately(self.params.bypass.value());
        self.gain_bypass_fade = BypassFade::new(config.sample_rate);
        self.gain_bypass_fade.set_immediately(self.params.bypass.value());
        true
    }

    fn reset(&mut self) {
        if let Some(b) = self.bridge.as_mut() {
            b.reset();
        }
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.output_gain.smoothed.reset(self.params.output_gain.value());
    }

    fn deactivate(&mut self) {
        *self.shared.lock() = None;
        self.similarity = None;
        self.capture = None;
        self.bridge = None;
    }

    fn process(&mut self, buffer: &mut Buffer, aux: &mut AuxiliaryBuffers, context: &mut impl ProcessContext<Self>) -> ProcessStatus {
        let n = buffer.samples();
        let Some(bridge) = self.bridge.as_mut() else {
            return ProcessStatus::Normal;
        };
        // A host that marks this call as part of an offline render (VST3
        // per-call mode, CLAP render extension) is waited for; its render
        // starts afresh at its first call and where the transport starts.
        bridge.set_host_state(context.process_mode() == ProcessMode::Offline, context.transport().playing);
        let model = (self.params.model.value().max(0) as usize).min(self.models.len().saturating_sub(1));
        bridge.request_model(model);
        self.telemetry.set_conversion(ConversionControls {
            strength: self.params.strength.value() / 100.0,
            transpose_semitones: self.params.transpose.value(),
            speaker_id: self.params.speaker.value() as i64,
        });
        if let (Some(capture), Some(side)) = (self.capture.as_mut(), aux.inputs.first_mut()) {
            let side = side.as_slice_immutable();
            let mut chans: [&[f32]; 2] = [&[], &[]];
            for (slot, ch) in chans.iter_mut().zip(side.iter()) {
                *slot = &ch[..n.min(ch.len())];
            }
            capture.process(self.params.capture.value(), &chans[..side.len().min(2)]);
        }
        let mix = &self.params.mix.smoothed;
        let bypassed = self.params.bypass.value();
        let fade = &mut self.bypass_fade;
        let audio = buffer.as_slice();
        if let Some(m) = self.similarity.as_mut() {
            m.push_input(audio);
        }
        bridge.process(audio, || mix.next() / 100.0, || fade.next(bypassed));
        // Output gain on what leaves the plugin (not while bypassed).
        let gain = &self.params.output_gain.smoothed;
        let channels = audio.len();
        for i in 0..n {
            let g = util::db_to_gain(gain.next());
            let g = g + self.gain_bypass_fade.next(bypassed) * (1.0 - g);
            for ch in audio.iter_mut().take(channels) {
                ch[i] *= g;
            }
        }
        bridge.meter_output(audio);
        if let Some(m) = self.similarity.as_mut() {
            m.push_output(audio);
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Voice {
    const CLAP_ID: &'static str = "com.manifold.voice";
    const CLAP_DESCRIPTION: Option<&'static str> = Some("Neural voice conversion");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Mono];
}

impl Vst3Plugin for Voice {
    const VST3_CLASS_ID: [u8; 16] = *b"ManifoldVoice001";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::PitchShift];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that activates the plugin first and loads the saved state
    /// after (Ardour opening a session): the restored reference reaches the
    /// running worker at once, without another activation.
    #[test]
    fn a_state_restored_while_active_sets_the_target() {
        if crate::runtime::store::find_model(convert_voice::CONTENT_MODEL_ID).is_err() || crate::runtime::onnx::environment().is_err() {
            eprintln!("skipping: the voice models are not installed (run `cargo xtask models`)");
            return;
        }
        let plugin = Voice::default();
        let shared = Arc::new(Shared::new(plugin.telemetry.clone(), 0));
        *plugin.shared.lock() = Some(shared.clone());
        // A recorded voice (the speech set `cargo xtask test` generates).
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testdata/clean_1.wav");
        let Ok(reference) = crate::offline::read_audio(&path) else {
            eprintln!("skipping: {} missing (run `cargo xtask test`)", path.display());
            return;
        };
        let saved = to_saved(&reference.channels[0], reference.sample_rate);
        let before = shared.target_version.load(Ordering::Acquire);
        plugin.params.target_reference.set(saved.clone());
        assert!(shared.target_voice.lock().is_some(), "the restored target did not reach the worker: {}", plugin.telemetry.status_line());
        assert_eq!(*plugin.params.target_reference.samples.read().unwrap(), saved);
        let after = shared.target_version.load(Ordering::Acquire);
        assert!(after > before);
        // The same state again (hosts restore more than once) learns nothing new.
        plugin.params.target_reference.set(saved);
        assert_eq!(shared.target_version.load(Ordering::Acquire), after);
        // An empty reference clears the target.
        plugin.params.target_reference.set(Vec::new());
        assert!(shared.target_voice.lock().is_none());
    }
}
