//! Throughput of `manifold batch` on a generated library, against a shell
//! loop over the single-file command, on 1 and 2 cores (taskset), and files
//! in parallel against intra-op threads. Each configuration's peak resident
//! memory is read from the kernel (wait4).
//!
//! usage: cargo build --release && cargo bench --bench batch
//! env: MANIFOLD_BATCH_SONGS (default 40), MANIFOLD_BATCH_TASK (stems or
//! clean; default stems), MANIFOLD_BATCH_CONFIGS (comma-separated names of
//! the rows below; default all), MANIFOLD_BATCH_LONG_MINUTES (adds one file
//! of that length to the library: the memory bound with a long file).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A synthetic band (bass, chords, vibrato lead, noise), 44.1 kHz stereo
/// 16-bit, `seconds` long, different per `seed`.
fn song(path: &Path, seconds: f64, seed: u64) {
    let rate = 44100u32;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec { channels: 2, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let hz = |midi: f64| 440.0 * 2f64.powf((midi - 69.0) / 12.0);
    let root_note = 40.0 + (seed % 12) as f64;
    let mut noise = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let (mut lead_phase, tau) = (0.0f64, std::f64::consts::TAU);
    for i in 0..(seconds * rate as f64) as usize {
        let t = i as f64 / rate as f64;
        // Chords change every 2 s through I-vi-IV-V.
        let step = [0.0, 9.0, 5.0, 7.0][(t / 2.0) as usize % 4];
        let bass = 0.3 * (tau * hz(root_note + step) * t).sin();
        let chord: f64 = [0.0, 4.0, 7.0].iter().map(|k| 0.08 * (tau * hz(root_note + 12.0 + step + k) * t).sin()).sum();
        let melody = [0.0, 2.0, 4.0, 7.0, 9.0, 7.0, 4.0, 2.0][(t * 2.0) as usize % 8];
        lead_phase += tau * hz(root_note + 24.0 + melody) * (1.0 + 0.01 * (tau * 5.0 * t).sin()) / rate as f64;
        let lead = 0.2 * lead_phase.sin() * (0.6 + 0.4 * (tau * 2.0 * t).sin());
        noise ^= noise << 13;
        noise ^= noise >> 7;
        noise ^= noise << 17;
        let n = (noise as f64 / u64::MAX as f64 - 0.5) * 0.02;
        for (c, g) in [(0, 1.0), (1, 0.8)] {
            let x = bass + g * chord + (2.0 - g) * lead * if c == 0 { 1.0 } else { 1.1 } + n;
            w.write_sample((x.clamp(-1.0, 1.0) * 0.7 * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Runs `cmd` and returns (wall seconds, peak resident MiB of the process
/// tree's largest process, exit code).
fn measure(cmd: &mut Command) -> (f64, f64, i32) {
    let started = Instant::now();
    let child = cmd.spawn().expect("start");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid.
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    // Linux reports the largest of the child and the descendants it waited
    // for: the shell loop's largest `manifold`.
    let peak = usage.ru_maxrss.max(0) as f64 / 1024.0;
    (wall, peak, libc::WEXITSTATUS(status))
}

fn main() {
    let songs: usize = std::env::var("MANIFOLD_BATCH_SONGS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let task = std::env::var("MANIFOLD_BATCH_TASK").unwrap_or_else(|_| "stems".into());
    let only: Option<Vec<String>> = std::env::var("MANIFOLD_BATCH_CONFIGS").ok().map(|s| s.split(',').map(String::from).collect());
    let exe = root().join("target/release/manifold");
    assert!(exe.is_file(), "build the CLI first: cargo build --release");
    let dir = root().join("target/bench/batch");
    let lib = dir.join(format!("library-{songs}"));
    let mut audio_seconds = 0.0;
    let mut inputs = Vec::new();
    for i in 0..songs {
        // 3 to 5 minutes, spread over the library.
        let seconds = 180.0 + ((i * 53) % 121) as f64;
        let path = lib.join(format!("album{:02}/track{:02}.wav", i / 10, i % 10));
        if !path.is_file() {
            song(&path, seconds, i as u64);
        }
        audio_seconds += seconds;
        inputs.push(path);
    }
    if let Some(minutes) = std::env::var("MANIFOLD_BATCH_LONG_MINUTES").ok().and_then(|s| s.parse::<f64>().ok()) {
        let path = lib.join("long.wav");
        if !path.is_file() {
            song(&path, minutes * 60.0, 99);
        }
        audio_seconds += minutes * 60.0;
        inputs.push(path);
    }
    let task_args: Vec<&str> = match task.as_str() {
        "stems" => vec!["--cpu"],
        "clean" => vec![],
        other => panic!("MANIFOLD_BATCH_TASK: stems or clean, not {other}"),
    };
    println!("\n## `manifold batch {task}`: {} files, {:.0} min of 44.1 kHz stereo", inputs.len(), audio_seconds / 60.0);
    println!("| configuration | cores | files at once × threads | wall | files per hour | × real time | peak resident memory |");
    println!("|---|---|---|---|---|---|---|");
    // (name, cores, files at once, threads per file).
    let configs: [(&str, usize, usize, usize); 5] = [
        ("loop-1core", 1, 0, 1),
        ("batch-1core", 1, 1, 1),
        ("loop-2cores", 2, 0, 2),
        ("batch-2cores-files", 2, 2, 1),
        ("batch-2cores-threads", 2, 1, 2),
    ];
    for (name, cores, jobs, threads) in configs {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        let out = dir.join(format!("out-{name}"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let cpus = if cores == 1 { "0" } else { "0-1" };
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpus]);
        let layout = if name.starts_with("loop") {
            // What a user writes today: one command per file.
            let mut script = String::from("set -e\n");
            for (i, input) in inputs.iter().enumerate() {
                let target = match task.as_str() {
                    "stems" => out.join(format!("{i}")),
                    _ => out.join(format!("{i}.wav")),
                };
                script.push_str(&format!("'{}' {task} -q {} '{}' -o '{}'\n", exe.display(), task_args.join(" "), input.display(), target.display()));
            }
            cmd.args(["bash", "-c", &script]);
            format!("1 × {threads}")
        } else {
            cmd.arg(&exe).args(["batch", &task, "-q"]).args(&task_args).arg(&lib).arg("-o").arg(&out);
            cmd.args(["--jobs", &jobs.to_string(), "--threads", &threads.to_string()]);
            format!("{jobs} × {threads}")
        };
        let (wall, peak, code) = measure(&mut cmd);
        assert!(code == 0, "{name}: exit status {code}");
        println!(
            "| {name} | {cores} | {layout} | {:.1} s | {:.0} | {:.1}× | {:.0} MiB |",
            wall,
            inputs.len() as f64 * 3600.0 / wall,
            audio_seconds / wall,
            peak
        );
    }
}
