//! Real-time benchmark for Manifold Clean (GTCRN). Not a test: it prints.
//!
//! 1. Worker throughput: the worker-side stream (resample + GTCRN +
//!    resample) as fast as it goes: real-time factor and time per model hop.
//! 2. Live: the plugin's bridge at 48 kHz / 128-sample blocks, stereo, paced
//!    like a sound card for `MANIFOLD_BENCH_SECONDS` (default 60) seconds:
//!    audio-thread cost per block as a share of the block's duration,
//!    underruns, the worker's real-time factor.
//!
//! Run: `cargo xtask bench` (or `cargo bench --bench realtime`).

use manifold::bridge::{Telemetry, WorkerState};
use manifold::pipelines::enhance_gtcrn::{GtcrnEnhancer, HOP};
use manifold::pipelines::stream::HostRateStream;
use manifold::plugins::clean::{build_bridge, CleanModel};
use manifold::runtime::onnx::Device;
use manifold::runtime::store;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn signal(n: usize, rate: f32) -> Vec<f32> {
    let mut s = 12345u32;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            let noise = ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.05;
            let t = i as f32 / rate;
            noise + 0.2 * (2.0 * std::f32::consts::PI * 180.0 * t).sin() * (0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin())
        })
        .collect()
}

/// CPU time of the calling thread (excludes time it was preempted).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    manifold::dsp::sanitize::flush_denormals_on_this_thread();
    let seconds: f64 = std::env::var("MANIFOLD_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60.0);
    let rate = 48000u32;
    let block = 128usize;

    // 1. Worker throughput
    let model = store::find_model("gtcrn").expect("run `cargo xtask models gtcrn` first");
    let gtcrn = GtcrnEnhancer::load(&model.file_path(), 1, Device::Cpu).expect("GTCRN loads");
    let mut stream = HostRateStream::new(Box::new(gtcrn), rate).unwrap();
    let n = (rate as f64 * seconds.min(30.0)) as usize;
    let x = signal(n, rate as f32);
    let mut y = vec![0.0f32; 1024];
    let t0 = Instant::now();
    for c in x.chunks(1024) {
        stream.process(c, &mut y[..c.len()], c.len());
    }
    let busy = t0.elapsed().as_secs_f64();
    let audio = n as f64 / rate as f64;
    let hops = (audio * 16000.0 / HOP as f64).floor();
    println!("== Manifold Clean (GTCRN) benchmark, 48 kHz ==");
    println!("worker throughput (mono, unpaced, {audio:.0} s): real-time factor {:.4} ({:.1}x real time), {:.3} ms per 16 ms model hop", busy / audio, audio / busy, busy * 1000.0 / hops);

    // 2. Live, paced
    let telemetry = Arc::new(Telemetry::default());
    let mut bridge = build_bridge(rate as f32, 2, block, false, CleanModel::Gtcrn, Device::Cpu, telemetry.clone()).unwrap();
    let plan = bridge.latency();
    let wait = Instant::now();
    while telemetry.state() == WorkerState::Loading && wait.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let blocks = (seconds * rate as f64 / block as f64) as usize;
    let src = signal(block * 64, rate as f32);
    let mut l = vec![0.0f32; block];
    let mut r = vec![0.0f32; block];
    let mut costs = Vec::with_capacity(blocks);
    let mut cpu_costs = Vec::with_capacity(blocks);
    let period = Duration::from_secs_f64(block as f64 / rate as f64);
    let start = Instant::now();
    for k in 0..blocks {
        let off = (k % 64) * block;
        l.copy_from_slice(&src[off..off + block]);
        r.copy_from_slice(&src[off..off + block]);
        let c0 = thread_cpu_seconds();
        let t = Instant::now();
        bridge.process(&mut [&mut l[..], &mut r[..]], || 1.0, || 0.0);
        costs.push(t.elapsed().as_secs_f64());
        cpu_costs.push(thread_cpu_seconds() - c0);
        let due = start + period * (k as u32 + 1);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let block_s = period.as_secs_f64();
    println!("live, stereo, {block}-sample blocks paced in real time for {seconds:.0} s ({blocks} blocks):");
    println!("  {}", plan.describe(rate as f32));
    for (what, v) in [("wall time (includes preemption)", &mut costs), ("thread CPU time", &mut cpu_costs)] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |x: f64| 100.0 * x / block_s;
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let (p99, max) = (v[v.len() * 99 / 100], v[v.len() - 1]);
        println!(
            "  audio-thread cost per block, {what}: mean {:.2} us ({:.3} % of the block), p99 {:.2} us ({:.3} %), max {:.2} us ({:.3} %)",
            mean * 1e6,
            pct(mean),
            p99 * 1e6,
            pct(p99),
            max * 1e6,
            pct(max)
        );
    }
    println!("  worker real-time factor (last 0.5 s window): {:.4}", telemetry.worker_rtf());
    println!("  underruns: {} events, {} frames dry", telemetry.underrun_events(), telemetry.underrun_frames());
    println!("  status: {}", telemetry.status_line());
}
