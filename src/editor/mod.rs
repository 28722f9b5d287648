//! Plugin editors: one egui window per plugin, drawn by the plugin itself
//! (OpenGL through `nice-plug-egui`, no web view).
//!
//! Everything here runs on the editor's (GUI) thread. It only *reads* what
//! the audio and worker threads publish (atomics in [`Telemetry`]) and
//! changes parameters through nice-plug's [`ParamSetter`] with begin / set /
//! end, so hosts record the change as automation and can undo it. The audio
//! thread never waits for, or even knows about, an open editor.
//!
//! The pieces every editor shares live here: the status line with advice,
//! level / load meters, the latency split, the model table with licences,
//! and parameter widgets that remember where they were drawn
//! ([`ControlMap`], which the headless editor test uses to click them).

pub mod clean;
pub mod stems;
pub mod voice;

use crate::bridge::{Levels, Telemetry, WorkerState};
use nice_plug::context::gui::GuiContext;
use nice_plug::prelude::*;
use egui::{self, Color32, RichText, Sense, Stroke, Vec2};
use nice_plug_egui::resizable_window::ResizableWindow;
use nice_plug_egui::widgets::ParamSlider;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// When set to a folder, every editor writes `<plugin>.json` there: the
/// window size and where each control was drawn, in physical pixels
/// (used by the headless editor test to click them). GUI thread only.
pub const LAYOUT_ENV: &str = "MANIFOLD_EDITOR_LAYOUT";

/// How often meters refresh while the window is open.
pub const METER_REFRESH: Duration = Duration::from_millis(50);

/// Default logical window size; the window is resizable.
pub const DEFAULT_SIZE: (u32, u32) = (800, 640);
pub const MIN_SIZE: Vec2 = Vec2::new(560.0, 420.0);

pub const ACCENT: Color32 = Color32::from_rgb(90, 170, 255);
pub const GOOD: Color32 = Color32::from_rgb(110, 200, 120);
pub const WARN: Color32 = Color32::from_rgb(235, 180, 70);
pub const BAD: Color32 = Color32::from_rgb(235, 90, 80);

/// One row of the model picker: what a user needs to know before using a
/// model (commercially or not).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub name: String,
    pub task: String,
    /// The rate the model runs at (the plugin resamples to it).
    pub sample_rate: Option<u32>,
    /// The model's own algorithmic delay, in ms.
    pub latency_ms: Option<f64>,
    pub licence: String,
    pub source: String,
    /// Why it cannot be used now (not installed, bad sidecar), if so.
    pub problem: Option<String>,
}

impl ModelRow {
    /// A row for a model from the model store (`id` in `models.toml`);
    /// `delay` is the model's algorithmic delay at its own rate.
    pub fn from_store(name: &str, task: &str, id: &str) -> Self {
        match crate::runtime::store::find_model(id) {
            Ok(m) => Self {
                name: name.into(),
                task: task.into(),
                sample_rate: Some(m.manifest.sample_rate),
                latency_ms: Some(m.manifest.latency_samples as f64 * 1000.0 / m.manifest.sample_rate.max(1) as f64),
                licence: m.manifest.license.clone(),
                source: m.manifest.source.clone(),
                problem: None,
            },
            Err(e) => Self {
                name: name.into(),
                task: task.into(),
                sample_rate: None,
                latency_ms: None,
                licence: "?".into(),
                source: "not installed".into(),
                problem: Some(e.to_string()),
            },
        }
    }

    /// A model the user dropped into the user models folder.
    pub fn user(name: &str, task: &str, path: &std::path::Path, sample_rate: Option<u32>, latency_ms: Option<f64>, problem: Option<String>) -> Self {
        Self {
            name: name.into(),
            task: task.into(),
            sample_rate,
            latency_ms,
            licence: "yours to check (user model)".into(),
            source: path.display().to_string(),
            problem,
        }
    }
}

/// Where each control was drawn this frame, by parameter id (GUI thread).
pub struct ControlMap {
    ids: HashMap<ParamPtr, String>,
    controls: Vec<Control>,
    dump_to: Option<PathBuf>,
    frames: u64,
}

struct Control {
    id: String,
    /// The parameter's display name (what a host lists), empty for actions.
    name: String,
    kind: &'static str,
    /// For "option" controls: the normalized value a click selects.
    normalized: Option<f32>,
    rect: egui::Rect,
}

impl ControlMap {
    /// `file_stem`: the name of the layout file (`clean`, `stems`, `voice`).
    pub fn new(params: &dyn Params, file_stem: &str) -> Self {
        let ids = params.param_map().into_iter().map(|(id, ptr, _)| (ptr, id)).collect();
        let dump_to = std::env::var_os(LAYOUT_ENV).map(|d| PathBuf::from(d).join(format!("{file_stem}.json")));
        Self { ids, controls: Vec::new(), dump_to, frames: 0 }
    }

    fn id_of<P: Param>(&self, param: &P) -> String {
        self.ids.get(&param.as_ptr()).cloned().unwrap_or_default()
    }

    fn record<P: Param>(&mut self, param: &P, kind: &'static str, normalized: Option<f32>, rect: egui::Rect) {
        let id = self.id_of(param);
        self.controls.push(Control { id, name: param.name().to_string(), kind, normalized, rect });
    }

    /// Records a control that is not a parameter (a button), by name.
    pub fn record_action(&mut self, name: &str, rect: egui::Rect) {
        self.controls.push(Control { id: name.into(), name: String::new(), kind: "action", normalized: None, rect });
    }

    fn begin_frame(&mut self) {
        self.controls.clear();
        self.frames += 1;
    }

    /// Writes the layout file (a few times a second at most) when asked to.
    fn end_frame(&mut self, ctx: &egui::Context) {
        let Some(path) = self.dump_to.as_ref() else { return };
        if self.frames % 4 != 1 {
            return;
        }
        let ppp = ctx.pixels_per_point();
        let screen = ctx.content_rect();
        let controls: Vec<serde_json::Value> = self
            .controls
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "kind": c.kind,
                    "normalized": c.normalized,
                    "rect": [c.rect.min.x * ppp, c.rect.min.y * ppp, c.rect.max.x * ppp, c.rect.max.y * ppp],
                })
            })
            .collect();
        let doc = serde_json::json!({
            "frame": self.frames,
            "size": [screen.width() * ppp, screen.height() * ppp],
            "pixels_per_point": ppp,
            "controls": controls,
        });
        let tmp = path.with_extension("json.tmp");
        if std::fs::write(&tmp, doc.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// State every editor keeps between frames: meter ballistics and the GUI
/// context to set parameters with.
pub struct EditorCommon {
    pub telemetry: Arc<Telemetry>,
    pub map: ControlMap,
    gui: Option<GuiContext>,
    meter: MeterState,
    /// What the plugin removed, dB per meter window (newest last).
    pub removed_trace: VecDeque<f32>,
}

#[derive(Default)]
struct MeterState {
    input_db: f32,
    output_db: f32,
    last_window: u64,
    idle_frames: u32,
}

/// Points in the "removed" trace.
pub const TRACE_LEN: usize = 240;

impl EditorCommon {
    pub fn new(telemetry: Arc<Telemetry>, params: &dyn Params, file_stem: &str) -> Self {
        Self { telemetry, map: ControlMap::new(params, file_stem), gui: None, meter: MeterState { input_db: -90.0, output_db: -90.0, ..Default::default() }, removed_trace: VecDeque::with_capacity(TRACE_LEN) }
    }

    pub fn set_gui(&mut self, gui: GuiContext) {
        self.gui = Some(gui);
    }

    /// Runs one frame: a resizable, scrollable page with `body` inside.
    pub fn frame(&mut self, ui: &mut egui::Ui, body: impl FnOnce(&mut egui::Ui, &ParamSetter, &mut EditorCommon)) {
        let Some(gui) = self.gui.clone() else { return };
        let setter = gui.param_setter();
        self.map.begin_frame();
        self.update_meters();
        let ctx = ui.ctx().clone();
        ResizableWindow::new("manifold-editor").min_size(MIN_SIZE).show(ui, |ui| {
            egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| body(ui, &setter, self));
        });
        self.map.end_frame(&ctx);
        ctx.request_repaint_after(METER_REFRESH);
    }

    fn update_meters(&mut self) {
        let (levels, windows) = self.telemetry.levels();
        let m = &mut self.meter;
        let fresh = windows != m.last_window;
        m.last_window = windows;
        m.idle_frames = if fresh { 0 } else { m.idle_frames.saturating_add(1) };
        // Peak meters fall at about 20 dB/s, jump up at once.
        let fall = 20.0 * METER_REFRESH.as_secs_f32();
        let (inp, out) = if m.idle_frames > 10 { (-90.0, -90.0) } else { (to_db(levels.input_peak), to_db(levels.output_peak)) };
        m.input_db = inp.max(m.input_db - fall);
        m.output_db = out.max(m.output_db - fall);
        if fresh {
            if let Some(removed) = removed_db(&levels) {
                if self.removed_trace.len() == TRACE_LEN {
                    self.removed_trace.pop_front();
                }
                self.removed_trace.push_back(removed);
            }
        }
    }

    // -- common panels ---------------------------------------------------

    /// Title, then the status line with what to do about it.
    pub fn header(&mut self, ui: &mut egui::Ui, title: &str, what: &str) {
        ui.horizontal(|ui| {
            ui.heading(RichText::new(title).strong());
            ui.label(RichText::new(what).weak());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), zoom_buttons);
        });
        let line = self.telemetry.status_line();
        let state = self.telemetry.state();
        let (colour, advice) = advice(state, &line);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(format!("Status: {line}")).color(colour));
            if let Some(a) = advice {
                ui.label(RichText::new(a).italics());
            }
        });
    }

    /// Input / output level, worker load, underruns and faults.
    pub fn meters(&mut self, ui: &mut egui::Ui) {
        let t = &self.telemetry;
        egui::Grid::new("meters").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
            ui.label("Input");
            level_bar(ui, self.meter.input_db);
            ui.end_row();
            ui.label("Output");
            level_bar(ui, self.meter.output_db);
            ui.end_row();
            ui.label("Worker load");
            let rtf = t.worker_rtf();
            let (text, colour) = if t.state() != WorkerState::Running || rtf <= 0.0 {
                ("not running".to_string(), Color32::GRAY)
            } else {
                (format!("RTF {rtf:.2}: {}", if rtf < 0.7 { "fine" } else if rtf <= 1.0 { "tight" } else { "cannot keep up" }), if rtf < 0.7 { GOOD } else if rtf <= 1.0 { WARN } else { BAD })
            };
            ui.add(egui::ProgressBar::new((rtf / 1.5).clamp(0.0, 1.0)).fill(colour).text(text).desired_width(ui.available_width().min(420.0)))
                .on_hover_text("Worker time per second of audio (real-time factor); above 1 the model cannot keep up live");
            ui.end_row();
            ui.label("Underruns");
            let u = t.underrun_events();
            let line = match (u, t.underrun_frames()) {
                (0, _) => "none".to_string(),
                (u, 0) => format!("{u} late, all within the fade reserve (no dry frames)"),
                (u, f) => format!("{u} ({f} frames of aligned dry)"),
            };
            ui.label(RichText::new(line).color(if u == 0 { GOOD } else { WARN }));
            ui.end_row();
            let (faults, fixed) = (t.model_faults(), t.sanitized_samples());
            if faults > 0 || fixed > 0 {
                ui.label("Repairs");
                ui.label(format!("{faults} model resets, {fixed} bad input samples replaced"));
                ui.end_row();
            }
        });
    }

    /// The latency the host was told, and where it comes from.
    pub fn latency_split(&mut self, ui: &mut egui::Ui) {
        let Some((plan, rate)) = self.telemetry.latency_plan() else {
            ui.label("Latency: known once the host activates the plugin.");
            return;
        };
        let ms = |s: usize| s as f64 * 1000.0 / rate.max(1.0) as f64;
        let s = plan.stream;
        let buffering = s.resampling + s.chunking + s.model_alignment + plan.block;
        egui::Grid::new("latency").num_columns(3).spacing([16.0, 2.0]).striped(true).show(ui, |ui| {
            for (name, samples, why) in [
                ("Algorithm", s.algorithmic, "the model's window and lookahead"),
                ("Buffering", buffering, "resampling, model hops, the host block, equal latency for every model"),
                ("Inference margin", plan.margin, "time the worker may take, plus the fade reserve"),
            ] {
                ui.label(name).on_hover_text(why);
                ui.label(format!("{:.1} ms", ms(samples)));
                ui.label(format!("{samples} samples"));
                ui.end_row();
            }
            ui.label(RichText::new("Reported to the host").strong());
            ui.label(RichText::new(format!("{:.1} ms", ms(plan.total))).strong());
            ui.label(RichText::new(format!("{} samples at {} Hz", plan.total, rate as u32)).strong());
            ui.end_row();
        });
    }

    /// The model table. Returns the row that was clicked and where each
    /// row's name was drawn (the caller records them as controls of its
    /// model parameter).
    pub fn model_table(&mut self, ui: &mut egui::Ui, rows: &[ModelRow], selected: usize) -> (Option<usize>, Vec<egui::Rect>) {
        let mut clicked = None;
        let mut rects = Vec::with_capacity(rows.len());
        egui::Grid::new("models").num_columns(5).spacing([12.0, 4.0]).striped(true).show(ui, |ui| {
            for h in ["Model", "Task", "Rate", "Latency", "Licence"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for (i, row) in rows.iter().enumerate() {
                let text = if row.problem.is_some() { RichText::new(&row.name).color(Color32::GRAY) } else { RichText::new(&row.name) };
                let hover = match &row.problem {
                    Some(p) => format!("{p}\nSource: {}", row.source),
                    None => format!("Source: {}", row.source),
                };
                let r = ui.selectable_label(i == selected, text).on_hover_text(hover);
                if r.clicked() {
                    clicked = Some(i);
                }
                rects.push(r.rect);
                ui.label(&row.task);
                ui.label(row.sample_rate.map_or("-".into(), |r| format!("{:.1} kHz", r as f64 / 1000.0)));
                ui.label(row.latency_ms.map_or("-".into(), |l| format!("{l:.0} ms")));
                ui.label(RichText::new(&row.licence).small());
                ui.end_row();
            }
        });
        if let Some(row) = rows.get(selected) {
            ui.label(RichText::new(format!("Source of the selected model: {}", row.source)).small().weak());
        }
        for row in rows.iter().filter(|r| r.problem.is_some()) {
            ui.label(RichText::new(format!("{}: {}", row.name, row.problem.as_deref().unwrap_or(""))).small().color(WARN));
        }
        (clicked, rects)
    }

    /// The "Model" and "Latency" sections every editor ends with. Row `i`
    /// of `rows` selects `value_of(i)` of the model parameter (`None`: a
    /// model listed only to say why it cannot be used).
    pub fn model_and_latency<P: Param>(&mut self, ui: &mut egui::Ui, setter: &ParamSetter, param: &P, rows: &[ModelRow], selected: usize, value_of: impl Fn(usize) -> Option<P::Plain>) {
        ui.separator();
        ui.label(RichText::new("Model").strong());
        let (clicked, rects) = self.model_table(ui, rows, selected);
        if let Some(v) = clicked.and_then(&value_of) {
            set_once(setter, param, v);
        }
        for (i, rect) in rects.into_iter().enumerate() {
            if let Some(v) = value_of(i) {
                self.record_option(param, v, rect);
            }
        }
        ui.separator();
        ui.label(RichText::new("Latency").strong());
        self.latency_split(ui);
    }

    // -- parameter widgets -------------------------------------------------

    /// A labelled slider (drag, double-click for default, ctrl-click to type).
    pub fn slider<P: Param>(&mut self, ui: &mut egui::Ui, setter: &ParamSetter, param: &P) {
        ui.label(param.name());
        let r = ui.add(ParamSlider::for_param(param, setter).with_width(170.0));
        self.map.record(param, "slider", None, r.rect);
    }

    /// Records a slider drawn by the caller.
    pub fn map_slider<P: Param>(&mut self, param: &P, rect: egui::Rect) {
        self.map.record(param, "slider", None, rect);
    }

    /// Asks the host to re-activate the plugin (a setting that changes the
    /// latency takes effect then).
    pub fn request_restart(&self) {
        if let Some(gui) = &self.gui {
            gui.request_restart();
        }
    }

    /// A switch: one click toggles, as one undoable gesture.
    pub fn toggle(&mut self, ui: &mut egui::Ui, setter: &ParamSetter, param: &BoolParam, label: &str) {
        let on = param.value();
        let r = ui.selectable_label(on, label);
        if r.clicked() {
            setter.begin_set_parameter(param);
            setter.set_parameter(param, !on);
            setter.end_set_parameter(param);
        }
        self.map.record(param, "toggle", None, r.rect);
    }

    /// One button per choice of an enum parameter.
    pub fn choices<E: Enum + PartialEq + Copy + 'static>(&mut self, ui: &mut egui::Ui, setter: &ParamSetter, param: &EnumParam<E>, options: &[E]) {
        ui.horizontal_wrapped(|ui| {
            for &option in options {
                let name = E::variants()[option.to_index()];
                let r = ui.selectable_label(param.value() == option, name);
                if r.clicked() && param.value() != option {
                    set_once(setter, param, option);
                }
                self.map.record(param, "option", Some(param.preview_normalized(option)), r.rect);
            }
        });
    }

    /// Records a control that sets `param` to the plain value `value`.
    pub fn record_option<P: Param>(&mut self, param: &P, value: P::Plain, rect: egui::Rect) {
        let normalized = param.preview_normalized(value);
        self.map.record(param, "option", Some(normalized), rect);
    }
}

/// One complete, undoable parameter change.
pub fn set_once<P: Param>(setter: &ParamSetter, param: &P, value: P::Plain) {
    setter.begin_set_parameter(param);
    setter.set_parameter(param, value);
    setter.end_set_parameter(param);
}

fn to_db(x: f32) -> f32 {
    if x > 1e-5 {
        20.0 * x.log10()
    } else {
        -100.0
    }
}

/// dB the plugin took away from the aligned dry signal in one window
/// (`None` while there is no signal to speak of).
pub fn removed_db(l: &Levels) -> Option<f32> {
    if l.aligned_dry_rms < 1e-4 {
        return None;
    }
    Some((20.0 * (l.aligned_dry_rms / l.output_rms.max(1e-6)).log10()).clamp(-12.0, 60.0))
}

fn level_bar(ui: &mut egui::Ui, db: f32) {
    let frac = ((db + 60.0) / 60.0).clamp(0.0, 1.0);
    let colour = if db > -1.0 { BAD } else if db > -12.0 { WARN } else { GOOD };
    let text = if db <= -60.0 { "-inf dBFS".to_string() } else { format!("{db:.1} dBFS") };
    ui.add(egui::ProgressBar::new(frac).fill(colour).text(text).desired_width(ui.available_width().min(420.0)));
}

/// Zoom on top of the host's scale factor.
fn zoom_buttons(ui: &mut egui::Ui) {
    let zoom = ui.ctx().zoom_factor();
    for z in [1.5f32, 1.25, 1.0] {
        if ui.selectable_label((zoom - z).abs() < 0.01, format!("{:.0}%", z * 100.0)).clicked() {
            ui.ctx().set_zoom_factor(z);
        }
    }
    ui.label(RichText::new("Zoom").weak());
}

/// Colour of the status line, and what the user can do about it.
pub fn advice(state: WorkerState, line: &str) -> (Color32, Option<&'static str>) {
    let l = line.to_ascii_lowercase();
    if l.contains("runtime library not found") || l.contains("could not be loaded") {
        return (BAD, Some("The ONNX Runtime library is missing or unusable: install it with the models (`cargo xtask models`, or copy a manifold-data folder next to the plugin), then reload the plugin."));
    }
    if l.contains("is not installed") {
        return (BAD, Some("This model is not installed: `cargo xtask models` installs every model; or pick another model below."));
    }
    if l.contains("corrupt") || l.contains("unreadable") || l.contains("expected inputs") {
        return (BAD, Some("The model file is damaged or not the expected model: reinstall it (`cargo xtask models` checks every file's sha256)."));
    }
    if l.contains("cannot keep up") {
        return (WARN, Some("This machine is too slow for this model live: you hear the aligned dry signal. Try a lighter model or the GPU, close other work, or render offline (the host's offline render or the `manifold` CLI)."));
    }
    if l.contains("underrun") || l.contains("late hops") {
        return (WARN, Some("The model was late a few times and the output faded to dry for a moment; a larger host buffer or a lighter model helps."));
    }
    if l.contains("target voice not set") || l.contains("needs a target") {
        return (WARN, Some("Record the voice alone on the sidechain (switch Capture on, play 3 s or more, switch it off) or load a reference file."));
    }
    match state {
        WorkerState::Failed => (BAD, Some("The model could not run; the plugin passes the aligned dry signal.")),
        WorkerState::Loading => (WARN, None),
        _ => (Color32::LIGHT_GRAY, None),
    }
}

/// A small trace of the last values (newest at the right), `min..max` dB.
pub fn trace(ui: &mut egui::Ui, values: &VecDeque<f32>, min: f32, max: f32, colour: Color32) -> egui::Response {
    let size = Vec2::new(ui.available_width().min(520.0), 70.0);
    let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 3.0, Color32::from_gray(24));
    for db in [0.0f32, 10.0, 20.0, 30.0] {
        if db > min && db < max {
            let y = rect.bottom() - (db - min) / (max - min) * rect.height();
            painter.line_segment([egui::pos2(rect.left(), y), egui::pos2(rect.right(), y)], Stroke::new(1.0, Color32::from_gray(45)));
            painter.text(egui::pos2(rect.left() + 2.0, y - 1.0), egui::Align2::LEFT_BOTTOM, format!("{db:.0} dB"), egui::FontId::proportional(9.0), Color32::GRAY);
        }
    }
    if values.len() >= 2 {
        let step = rect.width() / (TRACE_LEN - 1) as f32;
        let start = TRACE_LEN - values.len();
        let points: Vec<egui::Pos2> = values
            .iter()
            .enumerate()
            .map(|(i, v)| egui::pos2(rect.left() + (start + i) as f32 * step, rect.bottom() - ((v - min) / (max - min)).clamp(0.0, 1.0) * rect.height()))
            .collect();
        painter.add(egui::Shape::line(points, Stroke::new(1.5, colour)));
    }
    response
}

/// The editor window settings every plugin uses: resizable, titled.
pub fn settings(title: &str) -> nice_plug_egui::EguiNiceSettings {
    use nice_plug::editor::dpi::LogicalSize;
    let hint = ResizeHint::RESIZABLE.with_min_logical_size(LogicalSize::new(MIN_SIZE.x, MIN_SIZE.y));
    nice_plug_egui::EguiNiceSettings::new().with_tile(title).with_resize_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_db_reads_the_level_ratio() {
        let l = Levels { input_peak: 0.5, output_peak: 0.1, aligned_dry_rms: 0.1, output_rms: 0.01 };
        assert!((removed_db(&l).unwrap() - 20.0).abs() < 1e-4);
        assert_eq!(removed_db(&Levels::default()), None);
    }

    #[test]
    fn advice_names_the_fix_for_every_runtime_error() {
        use crate::runtime::RuntimeError as E;
        let p = std::path::PathBuf::from("/x/model.onnx");
        let cases = [
            (E::LibraryMissing { searched: "/a".into() }, "cargo xtask models"),
            (E::LibraryLoad { path: p.clone(), reason: "bad ELF".into() }, "ONNX Runtime"),
            (E::ModelMissing { id: "gtcrn".into(), searched: "/a".into() }, "not installed"),
            (E::ManifestInvalid { id: "gtcrn".into(), path: p.clone(), reason: "x".into() }, "reinstall"),
            (E::ModelCorrupt { path: p.clone(), reason: "x".into() }, "reinstall"),
            (E::ModelSignature { path: p.clone(), reason: "x".into() }, "reinstall"),
        ];
        for (error, fix) in cases {
            // The worker's status line: "<Plugin>: <error>".
            let (colour, a) = advice(WorkerState::Failed, &format!("Clean: {error}"));
            assert_eq!(colour, BAD, "{error}");
            assert!(a.is_some_and(|a| a.contains(fix)), "{error}: {a:?}");
        }
        let (c, a) = advice(WorkerState::Running, "Voice running | cannot keep up on this machine: real-time factor 1.39");
        assert_eq!(c, WARN);
        assert!(a.unwrap().contains("offline"));
        assert_eq!(advice(WorkerState::Running, "Clean: DeepFilterNet3 running").1, None);
    }
}
