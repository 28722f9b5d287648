//! Manifold Voice: voice conversion. This release declares the final I/O
//! (stereo in/out plus a stereo sidechain for the target-voice reference);
//! conversion itself is not wired in yet, so audio passes through and the
//! status line says so.

use super::common::{self, PlaceholderParams};
use nice_plug::prelude::*;
use std::sync::Arc;

pub struct Voice {
    params: Arc<PlaceholderParams>,
}

impl Default for Voice {
    fn default() -> Self {
        Self { params: Arc::new(PlaceholderParams::new("Voice: conversion is not available in this build; passing audio through")) }
    }
}

impl Plugin for Voice {
    const NAME: &'static str = "Manifold Voice";
    const VENDOR: &'static str = common::VENDOR;
    const URL: &'static str = common::URL;
    const EMAIL: &'static str = common::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
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
    }];

    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn process(&mut self, _buffer: &mut Buffer, _aux: &mut AuxiliaryBuffers, _context: &mut impl ProcessContext<Self>) -> ProcessStatus {
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Voice {
    const CLAP_ID: &'static str = "com.manifold.voice";
    const CLAP_DESCRIPTION: Option<&'static str> = Some("Neural voice conversion");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::AudioEffect, ClapFeature::Stereo];
}

impl Vst3Plugin for Voice {
    const VST3_CLASS_ID: [u8; 16] = *b"ManifoldVoice001";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::PitchShift];
}
