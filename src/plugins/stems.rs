//! Manifold Stems: source separation. This release declares the final I/O
//! (main stereo remix out plus one stereo aux out per stem); separation
//! itself is not wired in yet, so the main output passes the input through
//! and the stem outputs are silent. The status line says so.

use super::common::{self, PlaceholderParams};
use nice_plug::prelude::*;
use std::sync::Arc;

/// Stem names in aux-output order.
pub const STEMS: [&str; 2] = ["Vocals", "Accompaniment"];

pub struct Stems {
    params: Arc<PlaceholderParams>,
}

impl Default for Stems {
    fn default() -> Self {
        Self { params: Arc::new(PlaceholderParams::new("Stems: separation is not available in this build; passing audio through, stem outputs silent")) }
    }
}

impl Plugin for Stems {
    const NAME: &'static str = "Manifold Stems";
    const VENDOR: &'static str = common::VENDOR;
    const URL: &'static str = common::URL;
    const EMAIL: &'static str = common::EMAIL;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: NonZeroU32::new(2),
        main_output_channels: NonZeroU32::new(2),
        aux_output_ports: &[new_nonzero_u32(2), new_nonzero_u32(2)],
        names: PortNames {
            layout: Some("Stereo mix + stems"),
            main_input: Some("Input"),
            main_output: Some("Remix"),
            aux_inputs: &[],
            aux_outputs: &["Vocals", "Accompaniment"],
        },
        ..AudioIOLayout::const_default()
    }];

    type Editor = ();
    type SysExMessage = ();
    type BackgroundTask = ();

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn process(&mut self, _buffer: &mut Buffer, aux: &mut AuxiliaryBuffers, _context: &mut impl ProcessContext<Self>) -> ProcessStatus {
        for out in aux.outputs.iter_mut() {
            for ch in out.as_slice() {
                ch.fill(0.0);
            }
        }
        ProcessStatus::Normal
    }
}

impl ClapPlugin for Stems {
    const CLAP_ID: &'static str = "com.manifold.stems";
    const CLAP_DESCRIPTION: Option<&'static str> = Some("Neural source separation");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[ClapFeature::AudioEffect, ClapFeature::Stereo, ClapFeature::Mixing];
}

impl Vst3Plugin for Stems {
    const VST3_CLASS_ID: [u8; 16] = *b"ManifoldStems001";
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] = &[Vst3SubCategory::Fx, Vst3SubCategory::Tools];
}
