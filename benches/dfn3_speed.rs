//! DeepFilterNet3 speed: Manifold's streaming pipeline (ONNX Runtime, one
//! thread) against DeepFilterNet's own real-time runtime (libdeepfilter.so)
//! in the same process, on the same input, hop by hop, interleaved so both
//! see the same machine conditions. Prints per-hop times and the ratio.
//!
//! Run: `cargo bench --bench dfn3_speed` (after `cargo xtask models`).

#[path = "../tests/common/dfn_reference.rs"]
mod dfn_reference;

use dfn_reference::{model_dir, Reference};
use manifold::pipelines::enhance_dfn3::{Dfn3Enhancer, HOP};
use manifold::pipelines::HopModel;
use manifold::runtime::onnx::Device;
use std::time::Instant;

fn main() {
    manifold::dsp::sanitize::flush_denormals_on_this_thread();
    let seconds: f64 = std::env::var("MANIFOLD_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let hops = (seconds * 48000.0 / HOP as f64) as usize;
    // Speech-like input: harmonic bursts over noise.
    let mut s = 9u32;
    let x: Vec<f32> = (0..hops * HOP)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let t = i as f32 / 48000.0;
            let voiced = (2.0 * std::f32::consts::PI * 2.0 * t).sin().max(0.0);
            let f0 = 130.0 + 30.0 * (2.0 * std::f32::consts::PI * 0.5 * t).sin();
            let h: f32 = (1..20).map(|k| (2.0 * std::f32::consts::PI * f0 * k as f32 * t).sin() / k as f32).sum();
            0.1 * voiced * h + ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.05
        })
        .collect();
    let mut reference = Reference::new(100.0);
    let mut ours = Dfn3Enhancer::load(&model_dir(), 1, Device::Cpu, 100.0).expect("DeepFilterNet3 installed");
    let mut out = vec![0.0f32; HOP];
    let (mut t_ref, mut t_ours) = (Vec::with_capacity(hops), Vec::with_capacity(hops));
    for (k, hop) in x.chunks_exact(HOP).enumerate() {
        // Alternate which goes first, so neither always gets the warmer cache.
        let mut run_ref = |out: &mut [f32]| {
            let t = Instant::now();
            reference.process_hop(hop, out);
            t.elapsed().as_secs_f64()
        };
        if k % 2 == 0 {
            t_ref.push(run_ref(&mut out));
            let t = Instant::now();
            ours.process_hop(hop, &mut out);
            t_ours.push(t.elapsed().as_secs_f64());
        } else {
            let t = Instant::now();
            ours.process_hop(hop, &mut out);
            t_ours.push(t.elapsed().as_secs_f64());
            t_ref.push(run_ref(&mut out));
        }
    }
    let summary = |v: &mut Vec<f64>| {
        v.drain(..10.min(v.len()));
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean * 1e6, v[v.len() / 2] * 1e6, v[v.len() * 99 / 100] * 1e6)
    };
    let (rm, r50, r99) = summary(&mut t_ref);
    let (om, o50, o99) = summary(&mut t_ours);
    println!("== DeepFilterNet3 per 10 ms hop, {hops} hops, one thread each, same process and input ==");
    println!("| runtime | mean us | p50 us | p99 us |");
    println!("|---|---|---|---|");
    println!("| libdeepfilter.so (DeepFilterNet's own) | {rm:.1} | {r50:.1} | {r99:.1} |");
    println!("| Manifold (ONNX Runtime 1.31.1) | {om:.1} | {o50:.1} | {o99:.1} |");
    println!("ratio Manifold / reference: mean {:.3}, p50 {:.3}", om / rm, o50 / r50);
}
