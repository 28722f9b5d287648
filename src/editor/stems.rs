//! Manifold Stems' editor (GUI thread): a small mixer (gain / solo / mute
//! per stem and which aux output carries it), the live quality setting with
//! the latency each one costs, the model table, device and target capture.

use super::{set_once, EditorCommon, ModelRow};
use crate::bridge::Telemetry;
use crate::plugins::common::DeviceChoice;
use crate::plugins::stems::{LiveQuality, SeparationMode, StemsModel, StemsParams, StemsSetup, STEM_COUNT};
use crate::runtime::onnx::Device;
use egui::RichText;
use nice_plug::context::gui::GuiContext;
use nice_plug::prelude::*;
use nice_plug_egui::{create_egui_editor, EguiEditor, EguiEditorState, NiceEguiApp, RepaintNotifier};
use std::sync::Arc;

pub struct StemsEditor {
    params: Arc<StemsParams>,
    common: EditorCommon,
    models: Vec<StemsModel>,
    rows: Vec<ModelRow>,
    /// Names of the aux outputs, one per stem (empty: remix only).
    aux_outputs: &'static [&'static str],
    /// Latency of each live setting and of offline rendering at the
    /// current rate and block, in samples; computed on a helper thread
    /// (planning a setting takes a while) and `None` until known.
    latencies: Arc<parking_lot::Mutex<Option<LatencyTable>>>,
    /// The (rate, block) the table was last asked for.
    latencies_for: Option<(f32, usize)>,
    /// The helper thread computing the table; joined before the next one
    /// starts and when the editor is dropped, so it never outlives the
    /// editor (nor the plugin library its code is in).
    latency_job: Option<std::thread::JoinHandle<()>>,
    plugin_name: &'static str,
}

#[derive(Clone, Copy, PartialEq)]
struct LatencyTable {
    rate: f32,
    block: usize,
    live: [Option<usize>; 3],
    offline: Option<usize>,
}

/// Main thread: the editor for one Stems instance.
pub fn create(plugin_name: &'static str, params: Arc<StemsParams>, telemetry: Arc<Telemetry>, models: Vec<StemsModel>, aux_outputs: &'static [&'static str], state: Arc<EguiEditorState>) -> Option<EguiEditor<StemsEditor>> {
    let common = EditorCommon::new(telemetry, params.as_ref(), "stems");
    let rows = model_rows(&models);
    let app = StemsEditor { params, common, models, rows, aux_outputs, latencies: Arc::default(), latencies_for: None, latency_job: None, plugin_name };
    create_egui_editor(state, RepaintNotifier::new(), super::settings(plugin_name), app)
}

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(super::DEFAULT_SIZE.0 as f32, super::DEFAULT_SIZE.1 as f32 + 80.0), 1.0)
}

/// The plugin's models in parameter order, then user models that cannot be
/// used (with the reason).
pub fn model_rows(models: &[StemsModel]) -> Vec<ModelRow> {
    let mut rows: Vec<ModelRow> = models.iter().map(StemsModel::model_row).collect();
    rows.extend(StemsModel::unusable_user_rows());
    rows
}

impl StemsEditor {
    /// Starts computing the latency table when the activation changed
    /// (GUI thread; the work runs on its own thread).
    fn update_latencies(&mut self) {
        let Some((plan, rate)) = self.common.telemetry.latency_plan() else { return };
        if self.latencies_for == Some((rate, plan.block)) {
            return;
        }
        self.latencies_for = Some((rate, plan.block));
        let (models, slot, block) = (self.models.clone(), self.latencies.clone(), plan.block);
        self.finish_latency_job();
        self.latency_job = std::thread::Builder::new().name("manifold-stems-latencies".into()).spawn(move || {
            let total = |mode| {
                StemsSetup { sample_rate: rate, channels: 2, max_block: block, mode, models: models.clone(), initial_model: 0, device: Device::Cpu }
                    .latency_plan()
                    .ok()
                    .map(|p| p.total)
            };
            let table = LatencyTable { rate, block, live: LiveQuality::ALL.map(|q| total(SeparationMode::Live(q))), offline: total(SeparationMode::Offline) };
            *slot.lock() = Some(table);
        })
        .ok();
    }

    /// Waits for the latency helper thread, if one was started (a fraction
    /// of a second in a release build).
    fn finish_latency_job(&mut self) {
        if let Some(job) = self.latency_job.take() {
            let _ = job.join();
        }
    }
}

impl Drop for StemsEditor {
    fn drop(&mut self) {
        self.finish_latency_job();
    }
}

impl NiceEguiApp for StemsEditor {
    fn build(&mut self, _egui_ctx: egui::Context, gui: GuiContext, _frame: &mut nice_plug_egui::Frame) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.common.set_gui(gui);
        self.rows = model_rows(&self.models);
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        self.update_latencies();
        let params = self.params.clone();
        let rows = self.rows.clone();
        let lat = *self.latencies.lock();
        let lat = lat.filter(|l| Some((l.rate, l.block)) == self.latencies_for);
        let (aux, name) = (self.aux_outputs, self.plugin_name);
        let selected = (params.model.value().max(0) as usize).min(self.models.len().saturating_sub(1));
        let stem_names: [String; STEM_COUNT] = self.models.get(selected).map(|m| m.stems.clone()).unwrap_or_else(|| std::array::from_fn(|s| format!("Stem {}", s + 1)));
        let needs_target = self.models.get(selected).is_some_and(StemsModel::needs_target);
        let usable = self.models.len();
        self.common.frame(ui, |ui, setter, c| {
            c.header(ui, name, "source separation");
            ui.separator();
            ui.label(RichText::new("Mixer").strong());
            egui::Grid::new("mixer").num_columns(5).spacing([10.0, 6.0]).show(ui, |ui| {
                for (s, stem) in params.stems.iter().enumerate() {
                    ui.label(RichText::new(&stem_names[s]).strong());
                    let r = ui.add(nice_plug_egui::widgets::ParamSlider::for_param(&stem.gain, setter).with_width(160.0));
                    c.map_slider(&stem.gain, r.rect);
                    c.toggle(ui, setter, &stem.solo, "Solo");
                    c.toggle(ui, setter, &stem.mute, "Mute");
                    ui.label(RichText::new(match aux.get(s) {
                        Some(out) => format!("aux out {}: {out}", s + 1),
                        None => "remix only".into(),
                    }).small());
                    ui.end_row();
                }
            });
            ui.label(RichText::new("The main output is the remix; the aux outputs carry each stem as separated (before the mixer).").small().weak());
            ui.separator();
            ui.columns(2, |cols| {
                let ui = &mut cols[0];
                egui::Grid::new("stems-controls").num_columns(2).spacing([10.0, 6.0]).show(ui, |ui| {
                    c.slider(ui, setter, &params.mix);
                    ui.end_row();
                });
                c.toggle(ui, setter, &params.bypass, "Bypass");
                ui.add_space(4.0);
                ui.label("Run on");
                c.choices(ui, setter, &params.device, &[DeviceChoice::Cpu, DeviceChoice::Cuda]);

                let ui = &mut cols[1];
                c.meters(ui);
            });
            ui.separator();
            ui.label(RichText::new("Live quality").strong());
            ui.horizontal_wrapped(|ui| {
                for (i, q) in LiveQuality::ALL.into_iter().enumerate() {
                    let text = match lat.and_then(|l| l.live[i].map(|s| (s, l.rate))) {
                        Some((s, rate)) => format!("{} — {:.0} ms", LiveQuality::variants()[q.to_index()].split(" (").next().unwrap_or(""), s as f64 * 1000.0 / rate as f64),
                        None => LiveQuality::variants()[q.to_index()].to_string(),
                    };
                    let r = ui.selectable_label(params.quality.value() == q, text);
                    if r.clicked() && params.quality.value() != q {
                        set_once(setter, &params.quality, q);
                        // The latency changes: the host must re-activate.
                        c.request_restart();
                    }
                    c.record_option(&params.quality, q, r.rect);
                }
            });
            let offline = lat.and_then(|l| l.offline.map(|s| s as f64 * 1000.0 / l.rate as f64));
            ui.label(RichText::new(match offline {
                Some(ms) => format!("Offline renders (the host's offline mode, `manifold stems`) always use full context: {ms:.0} ms, the same stems as the reference model."),
                None => "Offline renders always use full context.".into(),
            }).small());
            if needs_target {
                ui.separator();
                ui.label(RichText::new("Target voice").strong());
                ui.horizontal(|ui| {
                    c.toggle(ui, setter, &params.capture, "Capture from sidechain");
                    let enrolled = params.target_voice.read().map(|v| !v.is_empty()).unwrap_or(false);
                    ui.label(if enrolled { "a target voice is enrolled" } else { "no target voice yet: play 3 s or more of the voice alone into the sidechain while Capture is on" });
                });
            }
            // Rows past the plugin's models are user models it cannot use.
            let before = params.model.value().max(0) as usize;
            c.model_and_latency(ui, setter, &params.model, &rows, selected, |i| (i < usable).then_some(i as i32));
            // Voice isolation and the music separators have different
            // latencies: a switch between them applies at re-activation.
            let after = params.model.value().max(0) as usize;
            let class = |i: usize| self.models.get(i).is_some_and(StemsModel::needs_target);
            if after != before && class(after) != class(before) {
                c.request_restart();
            }
        });
    }
}
