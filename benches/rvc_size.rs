//! What a real-size RVC model costs on this machine: random-weight models
//! with the architecture and size of a HuBERT-base / ContentVec encoder and
//! an RVC v2 40 kHz synthesizer (`xtask/py/make_rvc_realsize.py`, generated
//! into `target/rvc-realsize` when missing), run through Manifold's own RVC
//! pipeline (`convert_rvc::RvcVoice`, the code the plugin and the CLI use).
//!
//! Prints, for the live settings (10-frame hops, 20 frames of context, what
//! the plugin runs) and the offline ones (50 + 50), with 1 and 2 ONNX
//! threads: the real-time factor over 10 s of a voiced test signal and the
//! slowest hop against the hop's duration; then the latency the plugin
//! reports at 48 kHz / 128-sample blocks. The weights are random, so the
//! output is noise: only the times mean anything.
//!
//! `cargo bench --bench rvc_size`

use manifold::pipelines::convert_rvc::{discover_voice_models_in, RvcOptions, RvcVoice};
use manifold::pipelines::separate_mdx::USER_MODELS_ENV;
use manifold::pipelines::HopModel;
use manifold::plugins::voice::{ConversionMode, LiveVoice, VoiceModel, VoiceSetup};
use manifold::runtime::onnx::Device;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const SECONDS: usize = 10;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("target/rvc-realsize");
    if !dir.join("realsize_v2_40k.onnx").is_file() || !dir.join("vec-768-layer-12.onnx").is_file() {
        let py = root.join("target/venv/bin/python");
        let status = Command::new(&py).arg(root.join("xtask/py/make_rvc_realsize.py")).arg(&dir).status().expect("run the venv's python (cargo xtask test makes it)");
        assert!(status.success(), "make_rvc_realsize.py failed");
    }
    let entry = discover_voice_models_in(&[dir.clone()]).into_iter().find(|e| e.onnx.ends_with("realsize_v2_40k.onnx")).expect("the real-size model is discovered");
    if let Some(why) = entry.error() {
        panic!("the real-size model is unusable: {why}");
    }
    println!("## Real-size RVC v2 40 kHz (random weights) through Manifold's RVC pipeline, {SECONDS} s of a voiced test signal\n");
    println!("| setting | ONNX threads | real-time factor | slowest hop / hop duration |");
    println!("|---|---|---|---|");
    let live = RvcOptions::default();
    let offline = RvcOptions { block: 50, context: 50, ..RvcOptions::default() };
    for (label, options) in [("live", live), ("offline", offline)] {
        for threads in [1, 2] {
            let mut voice = RvcVoice::load(&entry, RvcOptions { threads, ..options }, 1, Device::Cpu).expect("load the real-size model");
            let rate = voice.sample_rate() as usize;
            let hop = voice.hop();
            // A voiced test signal: 180 Hz with vibrato and a few harmonics.
            let x: Vec<f32> = (0..SECONDS * rate)
                .map(|i| {
                    let t = i as f32 / rate as f32;
                    let phase = 2.0 * std::f32::consts::PI * (180.0 * t + 3.0 * (2.0 * std::f32::consts::PI * 5.0 * t).sin() / (2.0 * std::f32::consts::PI * 5.0));
                    0.1 * (phase.sin() + 0.5 * (2.0 * phase).sin() + 0.25 * (3.0 * phase).sin())
                })
                .collect();
            let mut out = vec![0.0f32; hop];
            let mut slowest = 0.0f64;
            let start = Instant::now();
            for chunk in x.chunks_exact(hop) {
                let t = Instant::now();
                voice.process_hop(chunk, &mut out);
                slowest = slowest.max(t.elapsed().as_secs_f64());
            }
            let rtf = start.elapsed().as_secs_f64() / SECONDS as f64;
            let hop_s = hop as f64 / rate as f64;
            println!(
                "| {label} (hop {} frames, context {}) | {threads} | {rtf:.2} | {:.2} ({:.0} ms of {:.0} ms) |",
                options.block,
                options.context,
                slowest / hop_s,
                slowest * 1000.0,
                hop_s * 1000.0
            );
        }
    }
    // The latency a host is told (the same code as the plugin's), with this
    // model as the only one: the plugin reports the longest latency of the
    // models it offers, so that switching models never changes it.
    std::env::set_var(USER_MODELS_ENV, &dir);
    let models: Vec<VoiceModel> = VoiceModel::available().into_iter().filter(|m| m.cli_name() == entry.name).collect();
    assert_eq!(models.len(), 1, "the model among the plugin's voice models");
    let setup = VoiceSetup {
        sample_rate: 48000.0,
        channels: 2,
        max_block: 128,
        mode: ConversionMode::Live(LiveVoice::Balanced),
        models,
        initial_model: 0,
        device: Device::Cpu,
    };
    let plan = setup.latency_plan().expect("latency plan");
    println!("\n## Live latency at 48 kHz, 128-sample blocks: {} samples = {:.3} s ({})", plan.total, plan.total as f64 / 48000.0, plan.describe(48000.0));
}
