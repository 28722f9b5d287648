//! Voice isolation speed (issue 16): the streaming target-speaker model
//! (`TargetIsolator`, one ONNX thread, as the live worker runs it), stereo
//! linked, hop by hop at 16 kHz with a target set. Prints the real-time
//! factor (wall time / audio time, median and 99th percentile hop) and the
//! latency Stems reports with it at 48 kHz / 128.
//!
//! Run: `cargo bench --bench isolate` (after `cargo xtask models`).

use manifold::pipelines::isolate_target::{TargetIsolator, HOP, MODEL_ID, SAMPLE_RATE};
use manifold::pipelines::speaker_embedder::EMBEDDING_DIM;
use manifold::pipelines::HopModel;
use manifold::runtime::onnx::Device;
use std::time::Instant;

fn main() {
    manifold::dsp::sanitize::flush_denormals_on_this_thread();
    manifold::runtime::onnx::environment().expect("ONNX Runtime (cargo xtask models)");
    let seconds: f64 = std::env::var("MANIFOLD_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let hops = (seconds * SAMPLE_RATE as f64 / HOP as f64) as usize;
    let mut s = 5u32;
    let x: Vec<f32> = (0..hops * HOP)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let t = i as f32 / SAMPLE_RATE as f32;
            let f0 = 120.0 + 40.0 * (2.0 * std::f32::consts::PI * 0.4 * t).sin();
            let h: f32 = (1..20).map(|k| (2.0 * std::f32::consts::PI * f0 * k as f32 * t).sin() / k as f32).sum();
            0.1 * h * (2.0 * std::f32::consts::PI * 1.5 * t).sin().max(0.0) + ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.05
        })
        .collect();
    let installed = manifold::runtime::store::find_model(MODEL_ID).expect("isolate_target installed (cargo xtask models)");
    let mut m = TargetIsolator::load(&installed.dir, 2, Device::Cpu).expect("load");
    m.set_target_embedding(&vec![1.0 / (EMBEDDING_DIM as f32).sqrt(); EMBEDDING_DIM]);
    let mut input = vec![0.0f32; 2 * HOP];
    let mut out = vec![0.0f32; 4 * HOP];
    let mut times = Vec::with_capacity(hops);
    let started = Instant::now();
    for hop in x.chunks_exact(HOP) {
        input[..HOP].copy_from_slice(hop);
        for (d, v) in input[HOP..].iter_mut().zip(hop) {
            *d = 0.7 * v;
        }
        let t = Instant::now();
        m.process_hop(&input, &mut out);
        times.push(t.elapsed().as_secs_f64());
    }
    let wall = started.elapsed().as_secs_f64();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let hop_s = HOP as f64 / SAMPLE_RATE as f64;
    let model = manifold::plugins::stems::StemsModel::voice_isolation();
    let timing = model.timing(manifold::plugins::stems::SeparationMode::Live(manifold::plugins::stems::LiveQuality::Balanced));
    println!(
        "isolation, stereo linked, 1 thread, {seconds:.0} s: real-time factor {:.3} (median hop {:.3}, 99th percentile {:.3} of a hop); faults {}",
        wall / seconds,
        times[times.len() / 2] / hop_s,
        times[times.len() * 99 / 100] / hop_s,
        m.faults()
    );
    println!("model timing: {} Hz, hop {}, delay {} samples ({:.1} ms)", timing.sample_rate, timing.hop, timing.delay, timing.delay as f64 * 1000.0 / timing.sample_rate as f64);
    for (label, mode) in [("live", manifold::plugins::stems::SeparationMode::Live(manifold::plugins::stems::LiveQuality::Balanced)), ("offline", manifold::plugins::stems::SeparationMode::Offline)] {
        let setup = manifold::plugins::stems::StemsSetup {
            sample_rate: 48000.0,
            channels: 2,
            max_block: 128,
            mode,
            models: vec![model.clone()],
            initial_model: 0,
            device: Device::Cpu,
        };
        let plan = setup.latency_plan().expect("latency plan");
        println!("Stems with voice isolation, {label}, 48 kHz / 128: {}", plan.describe(48000.0));
    }
}
