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
//!    playback does) redraws that slider (the time it took is printed), filled to the new
//!    value;
//! 5. hide + destroy closes the editor's window and ends the threads it
//!    started (window thread, OpenGL driver); create + show again opens a
//!    working editor (a drag made while the plugin is inactive reaches the
//!    host through `clap.params.flush`).
//!
//! Threads: the test thread is the host's main thread (instance, `clap.gui`,
//! `clap.params`, `on_main_thread` whenever the plugin asks, `flush` while
//! the plugin is inactive); a host audio thread calls `process` at real-time
//! pace, passes the host's parameter events in and collects the plugin's
//! output events (where GUI changes arrive while processing); the editor
//! draws and handles input on baseview's own window thread. The plugins run
//! one after the other in one test: they share the X server's pointer. The host itself (Xvfb,
//! handlers, `Session`, the X side) is `common/editor_host.rs`, shared with
//! the editor bench (`benches/editor.rs`).
//!
//! Needs `Xvfb` (`cargo xtask test` installs it) and the debug bundle
//! (`cargo xtask bundle manifold`); a missing prerequisite fails loudly.

#[path = "common/editor_host.rs"]
mod editor_host;

use editor_host::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Blocks processed before the screenshot, so that meters show something.
const BLOCKS_BEFORE_SCREENSHOT: u64 = 300;
/// How far a slider is dragged, in pixels.
const DRAG_PX: i32 = 40;

/// What one control did when used.
struct Exercised {
    control: String,
    before: f64,
    after: f64,
    values_sent: usize,
}

// ---------------------------------------------------------------------------
// Using controls (the host side is in common/editor_host.rs)
// ---------------------------------------------------------------------------

impl Session {
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
    let display = x_server();
    let started = Instant::now();
    let entry = load_bundle(&default_bundle());
    let mut s = Session::new(&entry, plugin_id);
    let _ = std::fs::remove_file(s.layout_path());
    let _ = std::fs::remove_file(workspace_path("target/editor-screenshots").join(format!("{}-failure.png", s.stem)));

    // 1. The editor opens embedded in the host's window; audio runs.
    s.open_editor(display);
    s.start_audio();
    let opened_in = started.elapsed();

    // 2. A screenshot once meters have had audio to show.
    // The deadline only catches an audio thread that stopped: with both
    // cores busy, debug Voice's host thread managed 267 of these 300 blocks
    // (0.8 s of audio) in 30 s.
    let ran = s.wait_for(Duration::from_secs(300), |s| s.blocks_processed() >= BLOCKS_BEFORE_SCREENSHOT);
    assert!(ran, "{plugin_id}: the audio thread processed only {} blocks in 300 s", s.blocks_processed());
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
    // How soon is reported, not asserted: on a busy machine the editor's
    // next frame may come seconds late (2.7 s seen with both cores loaded).

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

/// One test for the three editors, run one after the other on this thread:
/// they share the X server's pointer, and the threads an editor starts are
/// told apart from the rest only because nothing else starts threads while
/// it opens (a test harness running tests side by side would). Every plugin
/// is tried; the failures are reported together.
#[test]
fn every_editor_opens_draws_and_responds() {
    let failed: Vec<String> = [CLEAN_ID, STEMS_ID, VOICE_ID]
        .into_iter()
        .filter_map(|id| {
            let outcome = std::panic::catch_unwind(|| editor_works(id));
            outcome.err().map(|panic| {
                let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                format!("{id}: {why}")
            })
        })
        .collect();
    assert!(failed.is_empty(), "{} editor(s) failed:\n{}", failed.len(), failed.join("\n"));
}
