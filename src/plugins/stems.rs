//! Manifold Stems: source separation, live and offline.
//!
//! Main thread: construction, `activate` (lists the models, plans one latency
//! for all of them, starts the worker). Audio thread: `process`, `reset`.
//!
//! Outputs: the main stereo output is the remix (per-stem gain, solo, mute,
//! then dry/wet); aux output 1 carries the first stem and aux output 2 the
//! second, as separated (before the mixer), so they can be routed to tracks.

use super::common::{self, BypassFade, DeviceChoice};
use crate::bridge::capture::{RecordingSink, SidechainCapture};
use crate::bridge::worker::ModelCatalog;
use crate::bridge::{BridgeConfig, LatencyPlan, RealtimeBridge, ModelShelf, Telemetry};
use crate::pipelines::{isolate_target, separate_mdx, separate_spleeter, speaker_embedder};
use crate::pipelines::separate_window::WindowPlan;
use crate::pipelines::stream::{HostRateStream, ModelTiming};
use crate::pipelines::HopModel;
use crate::runtime::onnx::Device;
use crate::runtime::store;
use crate::runtime::RuntimeError;
use nice_plug::prelude::*;
use std::sync::Arc;

/// Every model here returns two stereo stems.
pub const STEM_COUNT: usize = 2;

/// The latency/quality trade-off of live separation. Offline renders
/// (host offline mode and the CLI) always use the full-context setting.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveQuality {
    #[id = "low"]
    #[name = "Low latency (≈0.4 s)"]
    LowLatency,
    #[id = "balanced"]
    #[name = "Balanced (≈0.85 s)"]
    Balanced,
    #[id = "quality"]
    #[name = "Quality (≈2 s)"]
    Quality,
}

impl LiveQuality {
    pub const ALL: [LiveQuality; 3] = [LiveQuality::LowLatency, LiveQuality::Balanced, LiveQuality::Quality];

    pub fn cli_name(self) -> &'static str {
        match self {
            LiveQuality::LowLatency => "low",
            LiveQuality::Balanced => "balanced",
            LiveQuality::Quality => "quality",
        }
    }

    /// (window, advance, lookahead) in STFT frames.
    fn frames(self) -> (usize, usize, usize) {
        match self {
            LiveQuality::LowLatency => (64, 4, 4),
            LiveQuality::Balanced => (128, 8, 16),
            LiveQuality::Quality => (256, 16, 48),
        }
    }
}

/// How a separator runs: a live setting, or offline with full context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeparationMode {
    Live(LiveQuality),
    Offline,
}

impl SeparationMode {
    pub fn for_host(offline: bool, quality: LiveQuality) -> Self {
        if offline {
            SeparationMode::Offline
        } else {
            SeparationMode::Live(quality)
        }
    }

    /// The window plan for a net that wants windows in multiples of
    /// `multiple` frames, `segment` frames offline.
    pub fn plan(self, segment: usize) -> WindowPlan {
        match self {
            SeparationMode::Offline => WindowPlan::reference(segment),
            SeparationMode::Live(q) => {
                let (window, advance, lookahead) = q.frames();
                WindowPlan { window, advance, lookahead, phase: 0 }
            }
        }
    }

    /// Intra-op threads: every core offline, one live (several instances
    /// share the machine and the audio thread must keep a core).
    pub fn threads(self) -> usize {
        match self {
            SeparationMode::Offline => crate::runtime::onnx::offline_threads(),
            SeparationMode::Live(_) => 1,
        }
    }
}

/// One separation model the plugin can switch to.
#[derive(Debug, Clone)]
pub struct StemsModel {
    pub name: String,
    pub stems: [String; STEM_COUNT],
    kind: StemsModelKind,
}

#[derive(Debug, Clone)]
enum StemsModelKind {
    Spleeter,
    /// Manifold's target-speaker model: keeps the enrolled speaker (stem 1),
    /// the rest is stem 2. Runs at 16 kHz, so the target stem is band-limited
    /// to 8 kHz (the others stem keeps the full band: input minus target).
    VoiceIsolation,
    /// A user's MDX-Net ONNX model with its sidecar (stem 1 = its primary stem).
    UserMdx(Box<separate_mdx::UserModelEntry>),
}

impl StemsModel {
    pub fn spleeter() -> Self {
        Self { name: "Spleeter 2-stem (vocals / accompaniment)".into(), stems: ["Vocals".into(), "Accompaniment".into()], kind: StemsModelKind::Spleeter }
    }

    /// Manifold's own target-speaker model (`models/isolate_target`). On
    /// real voices it was not trained on it does not separate yet (held-out
    /// SI-SDR change −0.6 dB real, +3.3 dB synthetic at 0 dB, +8 asked;
    /// `cargo xtask eval-isolation`): the name says so until it does (issue 16).
    pub fn voice_isolation() -> Self {
        Self { name: "Voice isolation (does not work yet on new voices)".into(), stems: ["Target voice".into(), "Others".into()], kind: StemsModelKind::VoiceIsolation }
    }

    pub fn user_mdx(entry: separate_mdx::UserModelEntry) -> Option<Self> {
        let sidecar = entry.sidecar.as_ref().ok()?;
        let stems = [sidecar.primary_stem.clone(), sidecar.other_stem()];
        Some(Self { name: format!("{} (user MDX-Net)", entry.name), stems, kind: StemsModelKind::UserMdx(Box::new(entry)) })
    }

    /// The files this model's output depends on (weights, sidecar), for
    /// `manifold batch`'s ledger: a changed file means a new render. Main thread.
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        let installed = |id: &str| store::find_model(id).map(|m| vec![m.file_path()]).unwrap_or_default();
        match &self.kind {
            StemsModelKind::Spleeter => installed("spleeter_2stems"),
            StemsModelKind::VoiceIsolation => [installed(isolate_target::MODEL_ID), installed(speaker_embedder::EMBEDDER_MODEL_ID)].concat(),
            StemsModelKind::UserMdx(e) => vec![e.onnx.clone(), e.sidecar_path.clone()],
        }
    }

    /// Name on the command line.
    pub fn cli_name(&self) -> String {
        match &self.kind {
            StemsModelKind::Spleeter => "spleeter".into(),
            StemsModelKind::VoiceIsolation => "voicefilter".into(),
            StemsModelKind::UserMdx(e) => e.name.clone(),
        }
    }

    /// MDX-Net plans: the window is the model's `dim_t`; live uses the
    /// setting's hop and lookahead, offline half-overlapping windows with a
    /// quarter window of lookahead.
    fn mdx_plan(mode: SeparationMode, dim_t: usize) -> WindowPlan {
        match mode {
            SeparationMode::Offline => separate_mdx::plan_for(dim_t, (dim_t / 2).max(1), dim_t / 4),
            SeparationMode::Live(q) => {
                let (_, advance, lookahead) = q.frames();
                separate_mdx::plan_for(dim_t, advance, lookahead)
            }
        }
    }

    /// The model's row in the editor's model table (main/GUI thread).
    pub fn model_row(&self) -> crate::editor::ModelRow {
        use crate::editor::ModelRow;
        match &self.kind {
            StemsModelKind::Spleeter => ModelRow::from_store(&self.name, "separation: vocals / accompaniment", "spleeter_2stems"),
            StemsModelKind::VoiceIsolation => ModelRow::from_store(&self.name, "separation: one voice / the rest", isolate_target::MODEL_ID),
            StemsModelKind::UserMdx(e) => {
                let t = self.timing(SeparationMode::Offline);
                ModelRow::user(&self.name, "separation (user MDX-Net)", &e.onnx, Some(t.sample_rate), Some(t.delay as f64 * 1000.0 / t.sample_rate.max(1) as f64), None)
            }
        }
    }

    /// Rows for user models in the user models folder that cannot be used,
    /// with the reason (main/GUI thread).
    pub fn unusable_user_rows() -> Vec<crate::editor::ModelRow> {
        separate_mdx::discover_user_models()
            .iter()
            .filter_map(|e| e.error().map(|why| crate::editor::ModelRow::user(&e.name, "separation (user MDX-Net)", &e.onnx, None, None, Some(why))))
            .collect()
    }

    /// Whether the model follows an enrolled speaker.
    pub fn needs_target(&self) -> bool {
        matches!(self.kind, StemsModelKind::VoiceIsolation)
    }

    /// Every model this installation offers, in parameter order (main thread).
    /// User models in the user models folder whose sidecar is valid come
    /// last; [`StemsModel::user_model_problems`] says why others are not listed.
    pub fn available() -> Vec<StemsModel> {
        let mut models = vec![StemsModel::spleeter(), StemsModel::voice_isolation()];
        models.extend(separate_mdx::discover_user_models().into_iter().filter_map(StemsModel::user_mdx));
        models
    }

    /// One line per user model that cannot be used, with the reason.
    pub fn user_model_problems() -> Vec<String> {
        separate_mdx::discover_user_models().iter().filter_map(|e| e.error().map(|why| format!("{}: {why}", e.name))).collect()
    }

    /// Timing known without loading the model.
    pub fn timing(&self, mode: SeparationMode) -> ModelTiming {
        match &self.kind {
            StemsModelKind::Spleeter => {
                let plan = mode.plan(separate_spleeter::SEGMENT);
                ModelTiming {
                    sample_rate: separate_spleeter::SAMPLE_RATE,
                    hop: plan.advance * separate_spleeter::HOP,
                    delay: plan.delay(separate_spleeter::N_FFT, separate_spleeter::HOP),
                }
            }
            StemsModelKind::VoiceIsolation => {
                ModelTiming { sample_rate: isolate_target::SAMPLE_RATE, hop: isolate_target::HOP, delay: isolate_target::DELAY }
            }
            StemsModelKind::UserMdx(e) => match &e.sidecar {
                Ok(sc) => sc.timing(Self::mdx_plan(mode, sc.dim_t)),
                Err(_) => ModelTiming { sample_rate: 44100, hop: 1024, delay: 0 },
            },
        }
    }

    /// Loads the model (worker or loader thread).
    pub fn load(&self, mode: SeparationMode, channels: usize, device: Device) -> Result<Box<dyn HopModel>, RuntimeError> {
        crate::runtime::onnx::environment()?;
        match &self.kind {
            StemsModelKind::Spleeter => {
                let installed = store::find_model("spleeter_2stems")?;
                let plan = mode.plan(separate_spleeter::SEGMENT);
                Ok(Box::new(separate_spleeter::load(&installed.file_path(), plan, channels, device, mode.threads())?))
            }
            StemsModelKind::VoiceIsolation => {
                let installed = store::find_model(isolate_target::MODEL_ID)?;
                Ok(Box::new(isolate_target::TargetIsolator::load(&installed.dir, channels, device)?))
            }
            StemsModelKind::UserMdx(e) => Ok(Box::new(separate_mdx::load(e, |t| Self::mdx_plan(mode, t), channels, device, mode.threads())?)),
        }
    }
}

/// Everything needed to build a Stems bridge (shared by plugin and CLI).
#[derive(Debug, Clone)]
pub struct StemsSetup {
    pub sample_rate: f32,
    pub channels: usize,
    pub max_block: usize,
    pub mode: SeparationMode,
    pub models: Vec<StemsModel>,
    pub initial_model: usize,
    pub device: Device,
}

impl StemsSetup {
    /// Whether model `index` shares the latency of the model selected at
    /// activation. Voice isolation (20 ms of algorithmic delay) and the music
    /// separators (0.3-1.6 s live) are two latency classes: Stems reports
    /// the longest delay within the selected model's class only, so a switch
    /// within the class never changes the latency, and a switch across takes
    /// effect at the next activation (the editor asks the host for one).
    pub fn same_latency_class(&self, index: usize) -> bool {
        let class = |i: usize| self.models.get(i).is_some_and(StemsModel::needs_target);
        class(index) == class(self.initial_model)
    }

    fn bridge_config(&self) -> Result<BridgeConfig, String> {
        let timings = self.models.iter().enumerate().filter(|(i, _)| self.same_latency_class(*i)).map(|(_, m)| m.timing(self.mode));
        let (stream_latency, hop_host) = HostRateStream::common_latency(timings, self.sample_rate as u32, self.channels).map_err(|e| e.to_string())?.unwrap_or_default();
        Ok(BridgeConfig {
            sample_rate: self.sample_rate,
            channels: self.channels,
            out_channels: STEM_COUNT * self.channels,
            fallback_share: 1.0 / STEM_COUNT as f32,
            max_block: self.max_block,
            offline: self.mode == SeparationMode::Offline,
            stream_latency,
            // A separator computes a whole window per hop: allow it a full
            // hop live. Offline the host waits for the worker, so nothing is
            // reserved.
            inference_allowance: if self.mode == SeparationMode::Offline { 0 } else { hop_host },
            label: "Stems".into(),
            initial_model: self.initial_model,
            shelf: None,
        })
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
        config.shelf = shelf.map(|s| (s.clone(), format!("stems/{}/{:?}/{:?}/{}", self.channels, self.device, self.mode, names.join("|"))));
        let models = self.models.clone();
        let (mode, channels, device) = (self.mode, self.channels, self.device);
        let catalog: ModelCatalog = Arc::new(move |index| {
            let m = models.get(index).or(models.first()).ok_or_else(|| RuntimeError::Inference("no separation model installed".into()))?;
            m.load(mode, channels, device)
        });
        Ok(RealtimeBridge::new(config, telemetry, catalog))
    }
}

#[derive(Params)]
pub struct StemsParams {
    #[id = "mix"]
    pub mix: FloatParam,
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// Index into [`StemsModel::available`].
    #[id = "model"]
    pub model: IntParam,
    /// Applies at the next activation (it changes the latency).
    #[id = "quality"]
    pub quality: EnumParam<LiveQuality>,
    #[id = "device"]
    pub device: EnumParam<DeviceChoice>,
    #[nested(array, group = "Stem")]
    pub stems: [StemMixerParams; STEM_COUNT],
    /// While on, the sidechain input is recorded; switching it off enrols
    /// that voice as the target for voice isolation.
    #[id = "capture"]
    pub capture: BoolParam,
    /// The enrolled target speaker (saved with the project).
    #[persist = "target-voice"]
    pub target_voice: Arc<std::sync::RwLock<Vec<f32>>>,
    #[id = "status"]
    pub status: IntParam,
}

#[derive(Params)]
pub struct StemMixerParams {
    #[id = "gain"]
    pub gain: FloatParam,
    #[id = "solo"]
    pub solo: BoolParam,
    #[id = "mute"]
    pub mute: BoolParam,
}

impl StemMixerParams {
    fn new(name: &str) -> Self {
        Self {
            gain: FloatParam::new(format!("{name} gain"), 0.0, FloatRange::Linear { min: -60.0, max: 12.0 })
                .with_unit(" dB")
                .with_step_size(0.1)
                .with_smoother(SmoothingStyle::Linear(20.0)),
            solo: BoolParam::new(format!("{name} solo"), false),
            mute: BoolParam::new(format!("{name} mute"), false),
        }
    }
}

/// Linear gain ramps for solo/mute so toggling never clicks (audio thread).
struct StemGates {
    value: [f32; STEM_COUNT],
    step: f32,
}

impl StemGates {
    fn new(sample_rate: f32) -> Self {
        Self { value: [1.0; STEM_COUNT], step: 1.0 / (0.01 * sample_rate).max(1.0) }
    }
    #[inline]
    fn next(&mut self, s: usize, open: bool) -> f32 {
        let target = if open { 1.0 } else { 0.0 };
        let v = &mut self.value[s];
        *v = if *v < target { (*v + self.step).min(target) } else { (*v - self.step).max(target) };
        *v
    }
}

pub struct StemsPlugin<V: StemsVariant> {
    params: Arc<StemsParams>,
    /// The editor window's size and whether it is open (GUI thread).
    editor_state: Arc<nice_plug_egui::EguiEditorState>,
    telemetry: Arc<Telemetry>,
    models: Vec<StemsModel>,
    bridge: Option<RealtimeBridge>,
    /// The loaded model, kept while the plugin is deactivated (main/worker).
    shelf: ModelShelf,
    capture: Option<SidechainCapture>,
    /// Per model index: whether it can run in this activation (same latency
    /// class as the model selected at activation). Built in `activate`.
    runnable: Vec<bool>,
    bypass_fade: BypassFade,
    gates: StemGates,
    /// Scratch for the stems and the aligned dry (allocated at activation).
    stem_buf: Vec<Vec<f32>>,
    dry_buf: Vec<Vec<f32>>,
    variant: std::marker::PhantomData<V>,
}

impl<V: StemsVariant> Default for StemsPlugin<V> {
    fn default() -> Self {
        let telemetry = Arc::new(Telemetry::default());
        telemetry.set_status("Stems: not active yet");
        let models = StemsModel::available();
        let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
        let max_index = models.len().saturating_sub(1) as i32;
        Self {
            params: Arc::new(StemsParams {
                mix: common::mix_param(),
                bypass: common::bypass_param(),
                model: common::model_param(names, max_index.max(0)),
                quality: EnumParam::new("Live quality (applies on re-activation)", LiveQuality::Balanced).non_automatable(),
                device: EnumParam::new("Device", DeviceChoice::Cpu).non_automatable(),
                stems: [StemMixerParams::new("Stem 1"), StemMixerParams::new("Stem 2")],
                capture: BoolParam::new("Capture target voice (sidechain)", false).non_automatable(),
                target_voice: Arc::new(std::sync::RwLock::new(Vec::new())),
                status: common::status_param(telemetry.clone()),
            }),
            editor_state: crate::editor::stems::default_state(),
            telemetry,
            models,
            bridge: None,
            shelf: ModelShelf::default(),
            capture: None,
            runnable: Vec::new(),
            bypass_fade: BypassFade::new(48000.0),
            gates: StemGates::new(48000.0),
            stem_buf: Vec::new(),
            dry_buf: Vec::new(),
            variant: std::marker::PhantomData,
        }
    }
}

impl<V: StemsVariant> Plugin for StemsPlugin<V> {
    const NAME: &'static str = V::NAME;
    const VENDOR: &'static str = common::VENDOR;
    const URL: &'static str = common::URL;
    const EMAIL: &'static str = common::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = V::LAYOUTS;

    type Editor = nice_plug_egui::EguiEditor<crate::editor::stems::StemsEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        let aux = V::LAYOUTS.first().map_or(&[][..], |l| l.names.aux_outputs);
        crate::editor::stems::create(V::NAME, self.params.clone(), self.telemetry.clone(), self.models.clone(), aux, self.editor_state.clone())
    }

    fn activate(&mut self, layout: &AudioIOLayout, config: &BufferConfig, context: &mut impl ActivateContext<Self>) -> bool {
        let channels = layout.main_output_channels.map_or(2, |c| c.get() as usize);
        let offline = config.process_mode == ProcessMode::Offline;
        self.bridge = None;
        self.capture = None;
        let setup = StemsSetup {
            sample_rate: config.sample_rate,
            channels,
            max_block: config.max_buffer_size as usize,
            mode: SeparationMode::for_host(offline, self.params.quality.value()),
            models: self.models.clone(),
            initial_model: self.params.model.value().max(0) as usize,
            device: self.params.device.value().into(),
        };
        self.runnable = (0..self.models.len()).map(|i| setup.same_latency_class(i)).collect();
        match setup.build_bridge_keeping(self.telemetry.clone(), Some(&self.shelf)) {
            Ok(bridge) => {
                let plan = bridge.latency();
                nice_log!("Stems: {}", plan.describe(config.sample_rate));
                context.set_latency_samples(plan.total as u32);
                let saved = self.params.target_voice.read().map(|v| v.clone()).unwrap_or_default();
                if !saved.is_empty() {
                    bridge.shared().set_target_embedding(saved);
                }
                self.capture = Some(start_capture(config.sample_rate as u32, bridge.shared().clone(), self.params.target_voice.clone(), self.params.device.value().into()));
                self.bridge = Some(bridge);
            }
            Err(e) => {
                self.telemetry.set_status(format!("Stems: cannot run at {} Hz: {e}", config.sample_rate));
                context.set_latency_samples(0);
            }
        }
        let block = config.max_buffer_size as usize;
        self.stem_buf = (0..STEM_COUNT * channels).map(|_| prefaulted(block)).collect();
        self.dry_buf = (0..channels).map(|_| prefaulted(block)).collect();
        self.bypass_fade = BypassFade::new(config.sample_rate);
        self.bypass_fade.set_immediately(self.params.bypass.value());
        self.gates = StemGates::new(config.sample_rate);
        true
    }

    fn reset(&mut self) {
        if let Some(b) = self.bridge.as_mut() {
            b.reset();
        }
        self.params.mix.smoothed.reset(self.params.mix.value());
        for s in &self.params.stems {
            s.gain.smoothed.reset(s.gain.value());
        }
    }

    fn deactivate(&mut self) {
        self.capture = None;
        self.bridge = None;
    }

    fn process(&mut self, buffer: &mut Buffer, aux: &mut AuxiliaryBuffers, context: &mut impl ProcessContext<Self>) -> ProcessStatus {
        let n = buffer.samples();
        let Some(bridge) = self.bridge.as_mut() else {
            for out in aux.outputs.iter_mut() {
                for ch in out.as_slice() {
                    ch.fill(0.0);
                }
            }
            return ProcessStatus::Normal;
        };
        // A host that marks this call as part of an offline render (VST3
        // per-call mode, CLAP render extension) is waited for; its render
        // starts afresh at its first call and where the transport starts.
        bridge.set_host_state(context.process_mode() == ProcessMode::Offline, context.transport().playing);
        // A model of the other latency class waits for the next activation.
        let wanted = self.params.model.value().max(0) as usize;
        if self.runnable.get(wanted).copied().unwrap_or(false) {
            bridge.request_model(wanted);
        }
        if let (Some(capture), Some(side)) = (self.capture.as_mut(), aux.inputs.first_mut()) {
            let side = side.as_slice_immutable();
            let mut chans: [&[f32]; 2] = [&[], &[]];
            for (slot, ch) in chans.iter_mut().zip(side.iter()) {
                *slot = &ch[..n.min(ch.len())];
            }
            capture.process(self.params.capture.value(), &chans[..side.len().min(2)]);
        }
        let main = buffer.as_slice();
        let c = main.len().min(self.dry_buf.len());
        if c == 0 || n > self.dry_buf[0].len() {
            return ProcessStatus::Normal;
        }
        {
            let mut inputs: [&[f32]; 2] = [&[], &[]];
            for (slot, ch) in inputs.iter_mut().zip(main.iter()) {
                *slot = &ch[..n];
            }
            let mut stems: [&mut [f32]; STEM_COUNT * 2] = Default::default();
            for (slot, b) in stems.iter_mut().zip(self.stem_buf.iter_mut()) {
                *slot = &mut b[..n];
            }
            let mut dry: [&mut [f32]; 2] = Default::default();
            for (slot, b) in dry.iter_mut().zip(self.dry_buf.iter_mut()) {
                *slot = &mut b[..n];
            }
            bridge.process_stems(&inputs[..c], &mut stems[..STEM_COUNT * c], &mut dry[..c]);
        }

        // Aux outputs: the stems as separated.
        for (s, out) in aux.outputs.iter_mut().enumerate().take(STEM_COUNT) {
            for (ch, dst) in out.as_slice().iter_mut().enumerate() {
                let src = &self.stem_buf[s * c + ch.min(c - 1)];
                dst[..n].copy_from_slice(&src[..n]);
            }
        }

        // Main output: the remix, then dry/wet and bypass.
        let any_solo = self.params.stems.iter().any(|s| s.solo.value());
        let open: [bool; STEM_COUNT] = std::array::from_fn(|s| {
            let p = &self.params.stems[s];
            !p.mute.value() && (!any_solo || p.solo.value())
        });
        let bypassed = self.params.bypass.value();
        for i in 0..n {
            let m = self.params.mix.smoothed.next() / 100.0;
            let byp = self.bypass_fade.next(bypassed);
            let mut g = [0.0f32; STEM_COUNT];
            for (s, gs) in g.iter_mut().enumerate() {
                *gs = util::db_to_gain(self.params.stems[s].gain.smoothed.next()) * self.gates.next(s, open[s]);
            }
            for ch in 0..c {
                let d = self.dry_buf[ch][i];
                let remix: f32 = (0..STEM_COUNT).map(|s| g[s] * self.stem_buf[s * c + ch][i]).sum();
                let mixed = d + m * (remix - d);
                main[ch][i] = mixed + byp * (d - mixed);
            }
        }
        bridge.meter_output(&main[..c]);
        ProcessStatus::Normal
    }
}

/// Starts the capture thread: enrolment with the shared speaker embedder,
/// loaded on first use (main thread).
fn start_capture(sample_rate: u32, shared: Arc<crate::bridge::worker::Shared>, persist: Arc<std::sync::RwLock<Vec<f32>>>, device: Device) -> SidechainCapture {
    let embedder: Arc<parking_lot::Mutex<Option<speaker_embedder::SpeakerEmbedder>>> = Arc::new(parking_lot::Mutex::new(None));
    let telemetry = shared.telemetry.clone();
    let sink: RecordingSink = Arc::new(move |audio, rate| {
        let mut slot = embedder.lock();
        if slot.is_none() {
            let load = || -> Result<_, crate::runtime::RuntimeError> {
                crate::runtime::onnx::environment()?;
                let installed = store::find_model(speaker_embedder::EMBEDDER_MODEL_ID)?;
                speaker_embedder::SpeakerEmbedder::load(&installed.dir, device)
            };
            *slot = Some(load().map_err(|e| e.to_string())?);
        }
        let e = slot.as_mut().expect("just loaded").embed(audio, rate).map_err(|e| e.to_string())?;
        if let Ok(mut v) = persist.write() {
            *v = e.clone();
        }
        shared.set_target_embedding(e);
        Ok(String::new())
    });
    SidechainCapture::start(sample_rate, telemetry, sink)
}

fn prefaulted(len: usize) -> Vec<f32> {
    let mut v = vec![0.0; len];
    crate::dsp::prefault(&mut v);
    v
}

impl<V: StemsVariant> ClapPlugin for StemsPlugin<V> {
    const CLAP_ID: &'static str = V::CLAP_ID;
    const CLAP_DESCRIPTION: Option<&'static str> = Some(V::DESCRIPTION);
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Mixing];
}

impl<V: StemsVariant> Vst3Plugin for StemsPlugin<V> {
    const VST3_CLASS_ID: [u8; 16] = V::VST3_CLASS_ID;
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}

/// What differs between the two Stems plugins: name, ids and I/O.
pub trait StemsVariant: Send + 'static {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const CLAP_ID: &'static str;
    const VST3_CLASS_ID: [u8; 16];
    const LAYOUTS: &'static [AudioIOLayout];
}

/// Stems with one aux output per stem (route them to tracks).
pub struct WithStemOutputs;
/// The remix only, for hosts that switch aux outputs off: nice-plug 0.4.2's
/// VST3 wrapper skips `process` entirely when a host deactivates an aux
/// output bus (JUCE-based hosts such as pedalboard do), so the plugin with
/// stem outputs would be silent there.
pub struct RemixOnly;

pub type Stems = StemsPlugin<WithStemOutputs>;
pub type StemsRemix = StemsPlugin<RemixOnly>;

impl StemsVariant for WithStemOutputs {
    const NAME: &'static str = "Manifold Stems";
    const DESCRIPTION: &'static str = "Neural source separation with one output per stem";
    const CLAP_ID: &'static str = "com.manifold.stems";
    const VST3_CLASS_ID: [u8; 16] = *b"ManifoldStems001";
    const LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: NonZeroU32::new(2),
        main_output_channels: NonZeroU32::new(2),
        aux_input_ports: &[new_nonzero_u32(2)],
        aux_output_ports: &[new_nonzero_u32(2), new_nonzero_u32(2)],
        names: PortNames {
            layout: Some("Stereo mix + stems, target voice sidechain"),
            main_input: Some("Input"),
            main_output: Some("Remix"),
            aux_inputs: &["Target voice (for capture)"],
            aux_outputs: &["Stem 1 (vocals / target voice)", "Stem 2 (accompaniment / others)"],
        },
        ..AudioIOLayout::const_default()
    }];
}

impl StemsVariant for RemixOnly {
    const NAME: &'static str = "Manifold Stems Remix";
    const DESCRIPTION: &'static str = "Neural source separation: remix stems (gain, solo, mute)";
    const CLAP_ID: &'static str = "com.manifold.stems-remix";
    const VST3_CLASS_ID: [u8; 16] = *b"ManifoldStemsRmx";
    const LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: NonZeroU32::new(2),
        main_output_channels: NonZeroU32::new(2),
        aux_input_ports: &[new_nonzero_u32(2)],
        names: PortNames {
            layout: Some("Stereo remix, target voice sidechain"),
            main_input: Some("Input"),
            main_output: Some("Remix"),
            aux_inputs: &["Target voice (for capture)"],
            aux_outputs: &[],
        },
        ..AudioIOLayout::const_default()
    }];
}
