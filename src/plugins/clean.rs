//! Manifold Clean: speech enhancement (noise removal).
//!
//! Main thread: construction, `activate` (plans latency, starts the worker,
//! which loads the model). Audio thread: `process`, `reset`.

use super::common::{self, BypassFade, DeviceChoice};
use crate::bridge::worker::ModelCatalog;
use crate::bridge::{BridgeConfig, RealtimeBridge, ModelShelf, Telemetry};
use crate::pipelines::enhance_dfn3::{self, Dfn3Enhancer};
use crate::pipelines::enhance_gtcrn::{self, GtcrnEnhancer};
use crate::pipelines::enhance_nsnet2::{self, Nsnet2Enhancer};
use crate::pipelines::enhance_rnnoise::{self, RnnoiseEnhancer};
use crate::runtime::RuntimeError;
use crate::pipelines::stream::{HostRateStream, ModelTiming};
use crate::pipelines::HopModel;
use crate::runtime::onnx::Device;
use crate::runtime::store;
use nice_plug::prelude::*;
use nice_plug_egui::{EguiEditor, EguiEditorState};
use std::sync::Arc;

#[derive(Params)]
pub struct CleanParams {
    #[id = "mix"]
    pub mix: FloatParam,
    /// How much noise to remove at most, in dB (100 = no limit).
    #[id = "atten"]
    pub atten_limit: FloatParam,
    #[id = "bypass"]
    pub bypass: BoolParam,
    /// Post-filter strength (models that have one: DeepFilterNet3).
    #[id = "postfilter"]
    pub post_filter: FloatParam,
    /// Read-only meter: the model's speech-to-noise estimate.
    #[id = "snrmeter"]
    pub speech_to_noise: IntParam,
    #[id = "model"]
    pub model: EnumParam<CleanModel>,
    #[id = "device"]
    pub device: EnumParam<DeviceChoice>,
    #[id = "status"]
    pub status: IntParam,
}

pub struct Clean {
    params: Arc<CleanParams>,
    /// The editor window's size and whether it is open (GUI thread).
    editor_state: Arc<EguiEditorState>,
    telemetry: Arc<Telemetry>,
    bridge: Option<RealtimeBridge>,
    /// The loaded model, kept while the plugin is deactivated (main/worker).
    shelf: ModelShelf,
    bypass_fade: BypassFade,
}

impl Default for Clean {
    fn default() -> Self {
        let telemetry = Arc::new(Telemetry::default());
        telemetry.set_status("Clean: not active yet");
        Self {
            params: Arc::new(CleanParams {
                mix: common::mix_param(),
                atten_limit: FloatParam::new("Attenuation limit", 100.0, FloatRange::Linear { min: 0.0, max: 100.0 })
                    .with_unit(" dB")
                    .with_step_size(0.5)
                    .with_smoother(SmoothingStyle::Linear(20.0)),
                bypass: common::bypass_param(),
                post_filter: FloatParam::new("Post-filter", 0.0, FloatRange::Linear { min: 0.0, max: 100.0 }).with_unit(" %").with_step_size(1.0),
                speech_to_noise: common::meter_param("Speech/noise", telemetry.clone(), |t| match t.speech_to_noise() {
                    Some(db) => format!("{db:.1} dB"),
                    None => "n/a for this model".into(),
                }),
                model: EnumParam::new("Model", CleanModel::Dfn3),
                device: EnumParam::new("Device", DeviceChoice::Cpu).non_automatable(),
                status: common::status_param(telemetry.clone()),
            }),
            editor_state: crate::editor::clean::default_state(),
            telemetry,
            bridge: None,
            shelf: ModelShelf::default(),
            bypass_fade: BypassFade::new(48000.0),
        }
    }
}

/// The enhancement models Clean can run. Every one has the same latency
/// at a given rate and block size (the largest of them), so switching never
/// changes what the host was told.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanModel {
    #[id = "dfn3"]
    #[name = "DeepFilterNet3 (48 kHz, best)"]
    Dfn3,
    #[id = "gtcrn"]
    #[name = "GTCRN (16 kHz, light)"]
    Gtcrn,
    #[id = "nsnet2"]
    #[name = "NSNet2 (48 kHz)"]
    Nsnet2,
    #[id = "rnnoise"]
    #[name = "RNNoise (lightest, no ONNX)"]
    Rnnoise,
}

impl CleanModel {
    pub const ALL: [CleanModel; 4] = [CleanModel::Dfn3, CleanModel::Gtcrn, CleanModel::Nsnet2, CleanModel::Rnnoise];

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }

    /// The model's id in the model store (`None`: built in).
    pub fn store_id(self) -> Option<&'static str> {
        match self {
            CleanModel::Dfn3 => Some("deepfilternet3"),
            CleanModel::Gtcrn => Some("gtcrn"),
            CleanModel::Nsnet2 => Some("nsnet2_48k"),
            CleanModel::Rnnoise => None,
        }
    }

    /// Name on the command line.
    pub fn cli_name(self) -> &'static str {
        match self {
            CleanModel::Dfn3 => "dfn3",
            CleanModel::Gtcrn => "gtcrn",
            CleanModel::Nsnet2 => "nsnet2",
            CleanModel::Rnnoise => "rnnoise",
        }
    }

    pub fn timing(self) -> ModelTiming {
        match self {
            CleanModel::Dfn3 => ModelTiming { sample_rate: enhance_dfn3::SAMPLE_RATE, hop: enhance_dfn3::HOP, delay: enhance_dfn3::DELAY },
            CleanModel::Gtcrn => ModelTiming { sample_rate: enhance_gtcrn::SAMPLE_RATE, hop: enhance_gtcrn::HOP, delay: enhance_gtcrn::N_FFT - enhance_gtcrn::HOP },
            CleanModel::Nsnet2 => ModelTiming { sample_rate: enhance_nsnet2::SAMPLE_RATE, hop: enhance_nsnet2::HOP, delay: enhance_nsnet2::DELAY },
            CleanModel::Rnnoise => ModelTiming { sample_rate: enhance_rnnoise::SAMPLE_RATE, hop: enhance_rnnoise::HOP, delay: enhance_rnnoise::DELAY },
        }
    }

    /// Loads the model (worker or loader thread).
    pub fn load(self, channels: usize, device: Device) -> Result<Box<dyn HopModel>, RuntimeError> {
        match self {
            CleanModel::Dfn3 => {
                crate::runtime::onnx::environment()?;
                let installed = store::find_model("deepfilternet3")?;
                // The generic attenuation limit (an aligned dry floor) applies to every model.
                Ok(Box::new(Dfn3Enhancer::load(&installed.dir, channels, device, 100.0)?))
            }
            CleanModel::Gtcrn => {
                crate::runtime::onnx::environment()?;
                let installed = store::find_model("gtcrn")?;
                Ok(Box::new(GtcrnEnhancer::load(&installed.file_path(), channels, device)?))
            }
            CleanModel::Nsnet2 => {
                crate::runtime::onnx::environment()?;
                let installed = store::find_model("nsnet2_48k")?;
                Ok(Box::new(Nsnet2Enhancer::load(&installed.file_path(), channels, device)?))
            }
            CleanModel::Rnnoise => Ok(Box::new(RnnoiseEnhancer::new(channels))),
        }
    }
}

fn catalog(channels: usize, device: Device) -> ModelCatalog {
    Arc::new(move |index| CleanModel::ALL.get(index).copied().unwrap_or(CleanModel::Dfn3).load(channels, device))
}

fn bridge_config(sample_rate: f32, channels: usize, max_block: usize, offline: bool, model: CleanModel) -> Result<BridgeConfig, String> {
    // The common latency: the largest stream delay of all models.
    let timings = CleanModel::ALL.iter().map(|m| m.timing());
    let (stream_latency, hop_host) = HostRateStream::common_latency(timings, sample_rate as u32, channels).map_err(|e| e.to_string())?.unwrap_or_default();
    Ok(BridgeConfig {
        sample_rate,
        channels,
        out_channels: channels,
        fallback_share: 1.0,
        max_block,
        offline,
        stream_latency,
        // Clean's models cost a small share of a hop: half a hop of allowance.
        inference_allowance: hop_host.div_ceil(2),
        label: "Clean".into(),
        initial_model: model.index(),
        shelf: None,
    })
}

/// The latency Clean reports for this configuration (main thread).
pub fn latency_plan(sample_rate: f32, channels: usize, max_block: usize) -> Result<crate::bridge::LatencyPlan, String> {
    Ok(bridge_config(sample_rate, channels, max_block, false, CleanModel::Dfn3)?.latency_plan())
}

/// Builds the bridge Clean uses; shared by the plugin and the CLI so both run
/// the same code. Main thread.
pub fn build_bridge(sample_rate: f32, channels: usize, max_block: usize, offline: bool, model: CleanModel, device: Device, telemetry: Arc<Telemetry>) -> Result<RealtimeBridge, String> {
    build_bridge_keeping(sample_rate, channels, max_block, offline, model, device, telemetry, None)
}

/// [`build_bridge`], keeping the loaded model in `shelf` between
/// activations (the plugin). Main thread.
#[allow(clippy::too_many_arguments)]
pub fn build_bridge_keeping(sample_rate: f32, channels: usize, max_block: usize, offline: bool, model: CleanModel, device: Device, telemetry: Arc<Telemetry>, shelf: Option<&ModelShelf>) -> Result<RealtimeBridge, String> {
    let mut config = bridge_config(sample_rate, channels, max_block, offline, model)?;
    config.shelf = shelf.map(|s| (s.clone(), format!("clean/{channels}/{device:?}")));
    Ok(RealtimeBridge::new(config, telemetry, catalog(channels, device)))
}

impl Plugin for Clean {
    const NAME: &'static str = "Manifold Clean";
    const VENDOR: &'static str = common::VENDOR;
    const URL: &'static str = common::URL;
    const EMAIL: &'static str = common::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(2),
            main_output_channels: NonZeroU32::new(2),
            ..AudioIOLayout::const_default()
        },
        AudioIOLayout {
            main_input_channels: NonZeroU32::new(1),
            main_output_channels: NonZeroU32::new(1),
            ..AudioIOLayout::const_default()
        },
    ];

    type Editor = EguiEditor<crate::editor::clean::CleanEditor>;
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        crate::editor::clean::create(self.params.clone(), self.telemetry.clone(), self.editor_state.clone())
    }

    fn activate(&mut self, layout: &AudioIOLayout, config: &BufferConfig, context: &mut impl ActivateContext<Self>) -> bool {
        let channels = layout.main_output_channels.map_or(2, |c| c.get() as usize);
        let offline = config.process_mode == ProcessMode::Offline;
        // Drop the old bridge (and its worker) before starting a new one.
        self.bridge = None;
        match build_bridge_keeping(config.sample_rate, channels, config.max_buffer_size as usize, offline, self.params.model.value(), self.params.device.value().into(), self.telemetry.clone(), Some(&self.shelf)) {
            Ok(bridge) => {
                let plan = bridge.latency();
                nice_log!("Clean: {}", plan.describe(config.sample_rate));
                context.set_latency_samples(plan.total as u32);
                self.bridge = Some(bridge);
            }
            Err(e) => {
                self.telemetry.set_status(format!("Clean: cannot run at {} Hz: {e}", config.sample_rate));
                context.set_latency_samples(0);
            }
        }
        self.bypass_fade = BypassFade::new(config.sample_rate);
        self.bypass_fade.set_immediately(self.params.bypass.value());
        true
    }

    fn reset(&mut self) {
        if let Some(b) = self.bridge.as_mut() {
            b.reset();
        }
        self.params.mix.smoothed.reset(self.params.mix.value());
        self.params.atten_limit.smoothed.reset(self.params.atten_limit.value());
    }

    fn deactivate(&mut self) {
        self.bridge = None;
    }

    fn process(&mut self, buffer: &mut Buffer, _aux: &mut AuxiliaryBuffers, context: &mut impl ProcessContext<Self>) -> ProcessStatus {
        let Some(bridge) = self.bridge.as_mut() else {
            return ProcessStatus::Normal;
        };
        // A host that marks this call as part of an offline render (VST3
        // per-call mode, CLAP render extension) is waited for; its render
        // starts afresh at its first call and where the transport starts.
        bridge.set_host_state(context.process_mode() == ProcessMode::Offline, context.transport().playing);
        bridge.request_model(self.params.model.value().index());
        self.telemetry.set_post_filter(self.params.post_filter.value() / 100.0);
        let mix = &self.params.mix.smoothed;
        let atten = &self.params.atten_limit.smoothed;
        let bypassed = self.params.bypass.value();
        let fade = &mut self.bypass_fade;
        // The attenuation limit keeps a floor of aligned dry signal, which is
        // the same as mixing less wet: wet share = mix * (1 - 10^(-limit/20)).
        let wet_share = || mix.next() / 100.0 * (1.0 - util::db_to_gain(-atten.next()));
        let audio = buffer.as_slice();
        bridge.process(audio, wet_share, || fade.next(bypassed));
        bridge.meter_output(audio);
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Clean {
    const CLAP_ID: &'static str = "com.manifold.clean";
    const CLAP_DESCRIPTION: Option<&'static str> = Some("Neural speech enhancement");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Mono, ClapFeature::Restoration];
}

impl Vst3Plugin for Clean {
    const VST3_CLASS_ID: [u8; 16] = *b"ManifoldClean001";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::Restoration];
}
