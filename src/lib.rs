//! Manifold: neural audio plugins (VST3 + CLAP) and an offline CLI.
//!
//! Layers (see ARCHITECTURE.md):
//! - [`plugins`]: plugin definitions (parameters, I/O, status);
//! - [`editor`]: the plugins' windows (egui, GUI thread only);
//! - [`bridge`]: the real-time bridge between the audio thread and a worker;
//! - [`dsp`]: building blocks (STFT, resampling, FIFOs, delay, sanitizing);
//! - [`pipelines`]: model pipelines, pure frames-in/frames-out code;
//! - [`runtime`]: ONNX Runtime and the model store;
//! - [`offline`]: file rendering shared by the CLI and tests.
//! - [`batch`]: `manifold batch`, whole libraries with a resumable ledger.

pub mod batch;
pub mod bridge;
pub mod dsp;
pub mod editor;
pub mod offline;
pub mod pipelines;
pub mod plugins;
pub mod runtime;

use nice_plug::prelude::*;
use plugins::{clean::Clean, stems::Stems, stems::StemsRemix, voice::Voice};

nice_export_clap!(Clean, Stems, StemsRemix, Voice);
nice_export_vst3!(Clean, Stems, StemsRemix, Voice);
