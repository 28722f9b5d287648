//! Load bench: how many Manifold Clean instances run at once on this machine
//! at 48 kHz / 128-sample blocks with zero underruns. One audio thread (like
//! a DAW's) processes every instance each block, paced like a sound card;
//! each instance has its own worker. Counts grow until underruns appear.
//!
//! `MANIFOLD_LOAD_SECONDS` (default 60) per count, `MANIFOLD_LOAD_MODEL`
//! (default the first model of Clean's list, e.g. `dfn3`).
//! Run: `cargo bench --bench load`.

use manifold::bridge::{RealtimeBridge, Telemetry, WorkerState};
use manifold::plugins::clean::{build_bridge, CleanModel};
use manifold::runtime::onnx::Device;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn run(count: usize, model: CleanModel, seconds: f64) -> (u64, u64, f32) {
    let rate = 48000u32;
    let block = 128usize;
    let mut bridges: Vec<(RealtimeBridge, Arc<Telemetry>)> = (0..count)
        .map(|_| {
            let t = Arc::new(Telemetry::default());
            (build_bridge(rate as f32, 2, block, false, model, Device::Cpu, t.clone()).unwrap(), t)
        })
        .collect();
    let wait = Instant::now();
    while bridges.iter().any(|(_, t)| t.state() == WorkerState::Loading) && wait.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let every worker warm up before counting.
    let warmup_blocks = (rate as usize / block) * 2;
    let blocks = (seconds * rate as f64 / block as f64) as usize + warmup_blocks;
    let mut l = vec![0.0f32; block];
    let mut r = vec![0.0f32; block];
    let mut s = 1u32;
    let period = Duration::from_secs_f64(block as f64 / rate as f64);
    let start = Instant::now();
    let mut base = vec![0u64; count];
    for k in 0..blocks {
        if k == warmup_blocks {
            for (i, (_, t)) in bridges.iter().enumerate() {
                base[i] = t.underrun_events();
            }
        }
        for (b, _) in bridges.iter_mut() {
            for (x, y) in l.iter_mut().zip(r.iter_mut()) {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                *x = ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1;
                *y = *x;
            }
            b.process(&mut [&mut l[..], &mut r[..]], || 1.0, || 0.0);
        }
        let due = start + period * (k as u32 + 1);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let events: u64 = bridges.iter().enumerate().map(|(i, (_, t))| t.underrun_events() - base[i]).sum();
    let frames: u64 = bridges.iter().map(|(_, t)| t.underrun_frames()).sum();
    let rtf = bridges.iter().map(|(_, t)| t.worker_rtf()).fold(0.0f32, f32::max);
    (events, frames, rtf)
}

fn main() {
    let seconds: f64 = std::env::var("MANIFOLD_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let model = std::env::var("MANIFOLD_LOAD_MODEL")
        .ok()
        .and_then(|name| CleanModel::ALL.into_iter().find(|m| m.cli_name() == name))
        .unwrap_or(CleanModel::ALL[0]);
    println!("== Manifold Clean load: {model:?}, 48 kHz stereo, 128-sample blocks, {seconds:.0} s per count ==");
    println!("| instances | underrun events | worst worker RTF |");
    println!("|---|---|---|");
    let mut best = 0;
    for count in [1usize, 2, 3, 4, 6, 8, 12, 16, 24, 32] {
        let (events, _frames, rtf) = run(count, model, seconds);
        println!("| {count} | {events} | {rtf:.3} |");
        if events > 0 {
            break;
        }
        best = count;
    }
    println!("most instances with zero underruns: {best}");
}
