//! Pieces every Manifold plugin shares: the status display, dry/wet and
//! bypass handling, and the device choice.

use crate::bridge::Telemetry;
use crate::runtime::onnx::Device;
use nice_plug::prelude::*;
use std::sync::Arc;

pub const VENDOR: &str = "Manifold";
pub const URL: &str = "https://example.invalid/manifold";
pub const EMAIL: &str = "team@example.invalid";

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    #[id = "cpu"]
    #[name = "CPU"]
    Cpu,
    #[id = "cuda"]
    #[name = "GPU (CUDA, falls back to CPU)"]
    Cuda,
}

impl From<DeviceChoice> for Device {
    fn from(d: DeviceChoice) -> Self {
        match d {
            DeviceChoice::Cpu => Device::Cpu,
            DeviceChoice::Cuda => Device::Cuda,
        }
    }
}

/// Mix in percent, smoothed so that automation never clicks.
pub fn mix_param() -> FloatParam {
    FloatParam::new("Mix", 100.0, FloatRange::Linear { min: 0.0, max: 100.0 })
        .with_unit(" %")
        .with_step_size(0.1)
        .with_smoother(SmoothingStyle::Linear(20.0))
}

/// Bypass that keeps the latency (dry output stays aligned), crossfaded.
pub fn bypass_param() -> BoolParam {
    BoolParam::new("Bypass", false).make_bypass()
}

/// A read-only parameter whose text is the plugin's status line, so that any
/// host's generic editor shows it (main thread reads it).
pub fn status_param(telemetry: Arc<Telemetry>) -> IntParam {
    meter_param("Status", telemetry, Telemetry::status_line)
}

/// A read-only parameter that displays a live value from the telemetry
/// (hosts show it in their generic editors; main thread reads it).
pub fn meter_param(name: &str, telemetry: Arc<Telemetry>, show: fn(&Telemetry) -> String) -> IntParam {
    // Read-only (hosts show it, e.g. Ardour's generic editor, and never
    // write it); its text does not depend on the value, so any text reads
    // back as 0 (hosts and validators check that text and value round-trip).
    IntParam::new(name, 0, IntRange::Linear { min: 0, max: 1 })
        .read_only()
        .with_value_to_string(Arc::new(move |_| show(&telemetry)))
        .with_string_to_value(Arc::new(|_| Some(0)))
}

/// The model choice: an index into `names` (the models installed when the
/// plugin was created), shown and typed as the model's name. Indices past
/// the list show the last name (a range needs two values even with one
/// model). Not automatable: a switch loads a model.
pub fn model_param(names: Vec<String>, max_index: i32) -> IntParam {
    let typed = names.clone();
    IntParam::new("Model", 0, IntRange::Linear { min: 0, max: max_index })
        .with_value_to_string(Arc::new(move |i| names.get(i as usize).or(names.last()).cloned().unwrap_or_else(|| format!("model {i}"))))
        .with_string_to_value(Arc::new(move |text| {
            let text = text.trim();
            typed.iter().position(|n| n == text).map(|i| i as i32).or_else(|| text.strip_prefix("model ")?.parse().ok())
        }))
        .non_automatable()
}

/// Linear smoother for the bypass crossfade (audio thread).
pub struct BypassFade {
    value: f32,
    step: f32,
}

impl BypassFade {
    pub fn new(sample_rate: f32) -> Self {
        Self { value: 0.0, step: 1.0 / (0.01 * sample_rate).max(1.0) }
    }
    pub fn set_immediately(&mut self, bypassed: bool) {
        self.value = if bypassed { 1.0 } else { 0.0 };
    }
    #[inline]
    pub fn next(&mut self, bypassed: bool) -> f32 {
        let target = if bypassed { 1.0 } else { 0.0 };
        if self.value < target {
            self.value = (self.value + self.step).min(target);
        } else if self.value > target {
            self.value = (self.value - self.step).max(target);
        }
        self.value
    }
}

/// Parameters of a plugin whose processing is not wired in yet: bypass and
/// the status line that says so.
#[derive(Params)]
pub struct PlaceholderParams {
    #[id = "bypass"]
    pub bypass: BoolParam,
    #[id = "status"]
    pub status: IntParam,
}

impl PlaceholderParams {
    pub fn new(status: &str) -> Self {
        let telemetry = Arc::new(Telemetry::default());
        telemetry.set_status(status);
        Self { bypass: bypass_param(), status: status_param(telemetry) }
    }
}
