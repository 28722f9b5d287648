//! Manifold Stems benchmarks (`cargo bench --bench stems`, or
//! `cargo xtask bench stems`):
//!
//! 1. SDR per stem on a generated multitrack set with ground truth
//!    (xtask/py/make_multitrack.py), offline and for every live setting, with
//!    each setting's latency at 44.1 kHz.
//! 2. Live worker load: real-time factor of each live setting (one thread,
//!    48 kHz stereo, unpaced).
//! 3. Offline speed and peak memory: `manifold stems` on a long file
//!    (default 60 minutes; `MANIFOLD_BENCH_MINUTES` changes it), as a
//!    child process, peak resident memory from getrusage.
//!
//! Needs `cargo xtask models` and the project venv (target/venv).

use manifold::offline::{read_audio, render_stems, AudioData, MemorySource};
use manifold::pipelines::stream::HostRateStream;
use manifold::plugins::stems::{LiveQuality, SeparationMode, StemsModel, StemsSetup};
use manifold::runtime::onnx::Device;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sdr_db(truth: &[f32], estimate: &[f32]) -> f64 {
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for (t, y) in truth.iter().zip(estimate) {
        s += (*t as f64).powi(2);
        e += (*t as f64 - *y as f64).powi(2);
    }
    10.0 * (s / e.max(1e-20)).log10()
}

/// Stems `[stem][channel]` of `mix`, aligned and of the same length.
fn separate(mix: &AudioData, mode: SeparationMode) -> (Vec<Vec<Vec<f32>>>, usize) {
    let c = mix.channels.len();
    let frames = mix.frames();
    match mode {
        SeparationMode::Offline => {
            let setup = StemsSetup { sample_rate: mix.sample_rate as f32, channels: c, max_block: 4096, mode, models: vec![StemsModel::spleeter()], initial_model: 0, device: Device::Cpu };
            let bridge = setup.build_bridge(Arc::new(Default::default())).expect("bridge");
            let latency = bridge.latency().total;
            let mut stems = vec![vec![Vec::with_capacity(frames); c]; 2];
            render_stems(
                bridge,
                &mut MemorySource::new(mix),
                |out, _, n| {
                    for s in 0..2 {
                        for ch in 0..c {
                            stems[s][ch].extend_from_slice(&out[s * c + ch][..n]);
                        }
                    }
                    Ok(())
                },
                |_, _| {},
            )
            .expect("render");
            (stems, latency)
        }
        SeparationMode::Live(_) => {
            // The live model through the same stream the worker runs; the
            // bridge adds only a fixed block + margin on top.
            let model = StemsModel::spleeter().load(mode, c, Device::Cpu).expect("load");
            let mut stream = HostRateStream::new(model, mix.sample_rate).expect("stream");
            let d = stream.latency().total;
            let total = frames + d;
            let block = 512;
            let mut out = vec![vec![0.0f32; total]; 2 * c];
            let mut inb = vec![0.0f32; c * block];
            let mut outb = vec![0.0f32; 2 * c * block];
            let mut pos = 0;
            while pos < total {
                let n = block.min(total - pos);
                for ch in 0..c {
                    for i in 0..n {
                        inb[ch * n + i] = mix.channels[ch].get(pos + i).copied().unwrap_or(0.0);
                    }
                }
                stream.process(&inb[..c * n], &mut outb[..2 * c * n], n);
                for o in 0..2 * c {
                    out[o][pos..pos + n].copy_from_slice(&outb[o * n..(o + 1) * n]);
                }
                pos += n;
            }
            let stems = (0..2).map(|s| (0..c).map(|ch| out[s * c + ch][d..d + frames].to_vec()).collect()).collect();
            (stems, d)
        }
    }
}

fn sdr_table(dir: &Path) {
    let index: Vec<usize> = (0..).take_while(|i| dir.join(format!("mix_{i}.wav")).is_file()).collect();
    println!("\n## SDR per stem (dB), {} generated tracks of synthesised band + eSpeak vocal line", index.len());
    println!("| setting | stream latency at 44.1 kHz | vocals SDR | accompaniment SDR |");
    println!("|---|---|---|---|");
    let mut modes = vec![SeparationMode::Offline];
    modes.extend(LiveQuality::ALL.iter().map(|q| SeparationMode::Live(*q)));
    for mode in modes {
        let (mut v, mut a) = (0.0, 0.0);
        let mut latency = 0;
        for i in &index {
            let mix = read_audio(&dir.join(format!("mix_{i}.wav"))).unwrap();
            let voc = read_audio(&dir.join(format!("vocals_{i}.wav"))).unwrap();
            let acc = read_audio(&dir.join(format!("accompaniment_{i}.wav"))).unwrap();
            let (stems, d) = separate(&mix, mode);
            latency = d;
            let both = |truth: &AudioData, s: usize| -> f64 {
                let t: Vec<f32> = truth.channels.concat();
                let e: Vec<f32> = stems[s].concat();
                sdr_db(&t, &e)
            };
            v += both(&voc, 0);
            a += both(&acc, 1);
        }
        let n = index.len().max(1) as f64;
        let label = match mode {
            SeparationMode::Offline => "offline (full context, = reference)".to_string(),
            SeparationMode::Live(q) => format!("live {}", q.cli_name()),
        };
        println!("| {label} | {latency} samples ({:.2} s) | {:.2} | {:.2} |", latency as f64 / 44100.0, v / n, a / n);
    }
}

fn live_load(mix: &AudioData) {
    println!("\n## Live worker load, 48 kHz stereo, one ONNX Runtime thread, unpaced");
    println!("| setting | real-time factor | per model hop |");
    println!("|---|---|---|");
    for q in LiveQuality::ALL {
        let mode = SeparationMode::Live(q);
        let model = StemsModel::spleeter().load(mode, 2, Device::Cpu).expect("load");
        let hop_seconds = model.hop() as f64 / model.sample_rate() as f64;
        let mut stream = HostRateStream::new(model, 48000).expect("stream");
        let block = 128;
        let frames = mix.frames().min(48000 * 20);
        let mut inb = vec![0.0f32; 2 * block];
        let mut outb = vec![0.0f32; 4 * block];
        let started = Instant::now();
        let mut pos = 0;
        while pos + block <= frames {
            for ch in 0..2 {
                inb[ch * block..(ch + 1) * block].copy_from_slice(&mix.channels[ch][pos..pos + block]);
            }
            stream.process(&inb, &mut outb, block);
            pos += block;
        }
        let rtf = started.elapsed().as_secs_f64() / (pos as f64 / 48000.0);
        println!("| live {} | {:.3} | {:.1} ms per {:.0} ms hop |", q.cli_name(), rtf, rtf * hop_seconds * 1000.0, hop_seconds * 1000.0);
    }
}

/// Writes a `minutes`-long 16-bit stereo WAV by looping `source`.
fn long_file(source: &AudioData, minutes: f64, path: &Path) {
    let spec = hound::WavSpec { channels: 2, sample_rate: source.sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let total = (minutes * 60.0 * source.sample_rate as f64) as usize;
    let n = source.frames();
    for i in 0..total {
        for ch in 0..2 {
            let x = source.channels[ch.min(source.channels.len() - 1)][i % n];
            w.write_sample((x.clamp(-1.0, 1.0) * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

fn offline_speed(source: &AudioData, minutes: f64) {
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join(format!("long_{minutes}min.wav"));
    if !input.is_file() {
        long_file(source, minutes, &input);
    }
    let exe = root().join("target/release/manifold");
    assert!(exe.is_file(), "build the CLI first: cargo build --release");
    let started = Instant::now();
    let status = Command::new(&exe).args(["stems", "-q"]).arg(&input).arg("-o").arg(dir.join("long_stems")).status().expect("run manifold stems");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success());
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let peak_mib = usage.ru_maxrss as f64 / 1024.0;
    let audio = minutes * 60.0;
    println!("\n## Offline speed and memory: `manifold stems` on {minutes} min of 44.1 kHz stereo");
    println!("| audio | wall | speed | peak resident memory | cores |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.0} s | {:.1} s | {:.1}x real time | {:.0} MiB | {} |",
        audio,
        wall,
        audio / wall,
        peak_mib,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

fn main() {
    let py = root().join("target/venv/bin/python");
    let set = root().join("target/bench/multitrack");
    if !set.join("index.json").is_file() {
        let ok = Command::new(&py)
            .arg(root().join("xtask/py/make_multitrack.py"))
            .arg(&set)
            .args(["--count", "6", "--seconds", "20"])
            .current_dir(root().join("xtask/py"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not generate the multitrack set (needs target/venv: cargo xtask test makes it)");
    }
    sdr_table(&set);
    let mix = read_audio(&set.join("mix_0.wav")).unwrap();
    live_load(&mix);
    let minutes: f64 = std::env::var("MANIFOLD_BENCH_MINUTES").ok().and_then(|v| v.parse().ok()).unwrap_or(60.0);
    offline_speed(&mix, minutes);
}
