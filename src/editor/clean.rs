//! Manifold Clean's editor (GUI thread): model, attenuation limit, mix,
//! post-filter, device, and a live trace of how much the plugin removes.

use super::{EditorCommon, ModelRow};
use crate::bridge::Telemetry;
use crate::plugins::clean::{CleanModel, CleanParams};
use crate::plugins::common::DeviceChoice;
use nice_plug::context::gui::GuiContext;
use nice_plug::prelude::*;
use egui::{self, RichText};
use nice_plug_egui::{create_egui_editor, EguiEditor, EguiEditorState, NiceEguiApp, RepaintNotifier};
use std::sync::Arc;

pub struct CleanEditor {
    params: Arc<CleanParams>,
    common: EditorCommon,
    models: Vec<ModelRow>,
}

/// The rows of Clean's model table, in parameter order (GUI thread; reads
/// the installed manifests).
pub fn model_rows() -> Vec<ModelRow> {
    CleanModel::ALL
        .iter()
        .map(|m| match m.store_id() {
            Some(id) => ModelRow::from_store(CleanModel::variants()[m.index()], "speech enhancement", id),
            None => {
                let t = m.timing();
                ModelRow {
                    name: CleanModel::variants()[m.index()].into(),
                    task: "speech enhancement".into(),
                    sample_rate: Some(t.sample_rate),
                    latency_ms: Some(t.delay as f64 * 1000.0 / t.sample_rate as f64),
                    licence: "BSD-3-Clause".into(),
                    source: "built in (nnnoiseless crate, RNNoise weights)".into(),
                    problem: None,
                }
            }
        })
        .collect()
}

/// Main thread: the editor for one Clean instance.
pub fn create(params: Arc<CleanParams>, telemetry: Arc<Telemetry>, state: Arc<EguiEditorState>) -> Option<EguiEditor<CleanEditor>> {
    let common = EditorCommon::new(telemetry, params.as_ref(), "clean");
    let app = CleanEditor { params, common, models: model_rows() };
    create_egui_editor(state, RepaintNotifier::new(), super::settings("Manifold Clean"), app)
}

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(super::DEFAULT_SIZE.0 as f32, super::DEFAULT_SIZE.1 as f32), 1.0)
}

impl NiceEguiApp for CleanEditor {
    fn build(&mut self, _egui_ctx: egui::Context, gui: GuiContext, _frame: &mut nice_plug_egui::Frame) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.common.set_gui(gui);
        // Models may have been installed since the plugin was created.
        self.models = model_rows();
        Ok(())
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        let params = self.params.clone();
        let models = self.models.clone();
        self.common.frame(ui, |ui, setter, c| {
            c.header(ui, "Manifold Clean", "speech enhancement");
            ui.separator();
            ui.columns(2, |cols| {
                let ui = &mut cols[0];
                ui.label(RichText::new("Controls").strong());
                egui::Grid::new("clean-controls").num_columns(2).spacing([10.0, 6.0]).show(ui, |ui| {
                    c.slider(ui, setter, &params.atten_limit);
                    ui.end_row();
                    c.slider(ui, setter, &params.mix);
                    ui.end_row();
                    c.slider(ui, setter, &params.post_filter);
                    ui.end_row();
                });
                ui.horizontal(|ui| {
                    c.toggle(ui, setter, &params.bypass, "Bypass");
                });
                ui.add_space(4.0);
                ui.label("Run on");
                c.choices(ui, setter, &params.device, &[DeviceChoice::Cpu, DeviceChoice::Cuda]);

                let ui = &mut cols[1];
                ui.label(RichText::new("Noise removed").strong());
                let last = c.removed_trace.back().copied();
                super::trace(ui, &c.removed_trace, -3.0, 40.0, super::ACCENT)
                    .on_hover_text("How far below the (latency-aligned) input the output is, every 30 ms");
                ui.horizontal(|ui| {
                    ui.label(match last {
                        Some(db) => format!("now {db:.1} dB"),
                        None => "no signal".into(),
                    });
                    if let Some(snr) = c.telemetry.speech_to_noise() {
                        ui.label(format!("| model's speech/noise estimate {snr:.1} dB"));
                    }
                });
                c.meters(ui);
            });
            let selected = params.model.value().index();
            c.model_and_latency(ui, setter, &params.model, &models, selected, |i| CleanModel::ALL.get(i).copied());
        });
    }
}
