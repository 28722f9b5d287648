//! User MDX-Net models: tiny generated ONNX models (xtask/py/make_mdx_fixtures.py,
//! a fixed complex gain per channel and bin) in a user models folder are
//! discovered, checked against their sidecars, and separate real signals in
//! the sliding-window pipeline at the model rate and at a 48 kHz host rate.
//!
//! Needs the project's Python environment (target/venv with numpy and onnx)
//! and the ONNX Runtime in target/manifold-data (`cargo xtask test` sets up
//! both); without them every test here says SKIPPED and passes.

use manifold::dsp::stft::{StreamingStft, Window};
use manifold::pipelines::separate_mdx::{discover_user_models, load, plan_for, MdxSidecar, UserModelEntry, USER_MODELS_ENV, ZEROED_LOW_BINS};
use manifold::pipelines::separate_window::WindowPlan;
use manifold::pipelines::stream::{HostRateStream, MAX_FRAMES_PER_CALL};
use manifold::pipelines::HopModel;
use manifold::runtime::onnx::{environment, Device};
use manifold::runtime::RuntimeError;
use realfft::num_complex::Complex32;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

static FIXTURES: OnceLock<Option<PathBuf>> = OnceLock::new();

/// Generates the fixtures once per run into the user models folder this
/// test binary uses; `None` (after saying why) when the tools are missing.
fn fixtures() -> Option<&'static Path> {
    FIXTURES
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mdx_user_models");
            // Before anything else runs in this process.
            std::env::set_var(USER_MODELS_ENV, &dir);
            let py = root.join("target/venv/bin/python");
            if !py.is_file() {
                eprintln!("SKIPPED: {} is missing; run `cargo xtask test` to create the Python environment", py.display());
                return None;
            }
            let tools = Command::new(&py).args(["-c", "import numpy, onnx"]).output();
            if !tools.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("SKIPPED: {} cannot import numpy and onnx; run `cargo xtask test`", py.display());
                return None;
            }
            if let Err(e) = environment() {
                eprintln!("SKIPPED: {e}");
                return None;
            }
            let _ = std::fs::remove_dir_all(&dir);
            let out = Command::new(&py).arg(root.join("xtask/py/make_mdx_fixtures.py")).arg(&dir).output().expect("python runs");
            assert!(out.status.success(), "make_mdx_fixtures.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
            Some(dir)
        })
        .as_deref()
}

macro_rules! fixtures_or_skip {
    () => {
        match fixtures() {
            Some(dir) => dir,
            None => return,
        }
    };
}

/// The fixtures' entries as discovery lists them (other user models on this
/// machine left out).
fn discovered(dir: &Path) -> Vec<UserModelEntry> {
    discover_user_models().into_iter().filter(|e| e.onnx.starts_with(dir)).collect()
}

fn entry(dir: &Path, file_stem: &str) -> UserModelEntry {
    discovered(dir).into_iter().find(|e| e.onnx.file_stem().unwrap() == file_stem).unwrap_or_else(|| panic!("{file_stem} not discovered"))
}

/// What the fixture net does: primary = compensate * gain[ch][bin] * mix for
/// ZEROED_LOW_BINS <= bin < dim_f, else 0.
struct Expect {
    sidecar: MdxSidecar,
    gains: [Vec<Complex32>; 2],
}

impl Expect {
    fn new(dir: &Path, e: &UserModelEntry) -> Self {
        let sidecar = e.sidecar.clone().unwrap();
        let file = dir.join("expected").join(format!("{}.json", e.onnx.file_stem().unwrap().to_string_lossy()));
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let plane = |key: &str, ch: usize| -> Vec<f32> { v[key][ch].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
        let gains = [0, 1].map(|ch| plane("gain_re", ch).into_iter().zip(plane("gain_im", ch)).map(|(re, im)| Complex32::new(re, im)).collect::<Vec<_>>());
        assert_eq!(gains[0].len(), sidecar.dim_f);
        Self { sidecar, gains }
    }

    /// The primary stem's complex gain at `bin` for net channel `ch`.
    fn gain(&self, ch: usize, bin: usize) -> Complex32 {
        if bin < ZEROED_LOW_BINS || bin >= self.sidecar.dim_f {
            Complex32::default()
        } else {
            self.gains[ch][bin] * self.sidecar.compensate
        }
    }

    /// The stems, computed independently of the pipeline's framing: one
    /// STFT per net channel, the gain per bin, overlap-add. Delay
    /// `n_fft - hop`. Returns `[stem][host channel]` signals.
    fn stems(&self, x: &[Vec<f32>]) -> [Vec<Vec<f32>>; 2] {
        let (n_fft, hop) = (self.sidecar.n_fft, self.sidecar.hop);
        let c = x.len();
        let n = x[0].len();
        let bins = n_fft / 2 + 1;
        let mut ana = StreamingStft::new(n_fft, hop, 2, Window::HannPeriodic);
        let mut syn = StreamingStft::new(n_fft, hop, 4, Window::HannPeriodic);
        let mut out = [vec![vec![0.0f32; n]; c], vec![vec![0.0f32; n]; c]];
        let (mut spec, mut p, mut o) = (vec![Complex32::default(); bins], vec![Complex32::default(); bins], vec![Complex32::default(); bins]);
        let mut hop_out = vec![0.0f32; hop];
        let share = if c == 1 { 0.5 } else { 1.0 };
        for start in (0..n - n % hop).step_by(hop) {
            for ch in 0..2 {
                let src = &x[ch.min(c - 1)][start..start + hop];
                ana.analyze(ch, src, &mut spec);
                for b in 0..bins {
                    p[b] = spec[b] * self.gain(ch, b);
                    o[b] = spec[b] - p[b];
                }
                for (s, stem) in [&mut p, &mut o].into_iter().enumerate() {
                    syn.synthesize(s * 2 + ch, stem, &mut hop_out);
                    for (i, y) in hop_out.iter().enumerate() {
                        out[s][ch.min(c - 1)][start + i] += y * share;
                    }
                }
            }
        }
        out
    }
}

/// Runs a hop model over planar `x` (one Vec per channel), hop by hop.
fn run_hops(model: &mut dyn HopModel, x: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let (c, hop) = (x.len(), model.hop());
    let n = x[0].len() - x[0].len() % hop;
    let oc = model.out_channels();
    let mut y = vec![vec![0.0f32; n]; oc];
    let mut inb = vec![0.0f32; c * hop];
    let mut outb = vec![0.0f32; oc * hop];
    for start in (0..n).step_by(hop) {
        for ch in 0..c {
            inb[ch * hop..(ch + 1) * hop].copy_from_slice(&x[ch][start..start + hop]);
        }
        model.process_hop(&inb, &mut outb);
        for o in 0..oc {
            y[o][start..start + hop].copy_from_slice(&outb[o * hop..(o + 1) * hop]);
        }
    }
    y
}

fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let white = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4;
            white + 0.2 * (i as f32 * 0.031).sin()
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn discovery_lists_the_fixtures_sorted_and_explains_unusable_ones() {
    let dir = fixtures_or_skip!();
    let found = discovered(dir);
    let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["nonsense", "orphan", "Tiny Instrumental", "tiny_broken", "tiny_vocals"]);

    let vocals = found[4].sidecar.as_ref().unwrap();
    assert_eq!((vocals.n_fft, vocals.dim_f, vocals.dim_t, vocals.hop, vocals.sample_rate), (2048, 256, 32, 1024, 44100));
    assert!((vocals.compensate - 1.05).abs() < 1e-6);
    assert_eq!(found[4].sidecar_path, dir.join("tiny_vocals.json"));
    let instr = found[2].sidecar.as_ref().unwrap();
    assert_eq!((instr.n_fft, instr.dim_f, instr.dim_t, instr.primary_stem.as_str()), (3072, 384, 16, "Instrumental"));
    assert_eq!(instr.license.as_deref(), Some("CC0-1.0"));
    assert!(found[3].is_usable(), "the broken model's sidecar is valid; only loading finds the mismatch");

    let nonsense = found[0].error().expect("dim_t = \"lots\" is refused");
    assert!(nonsense.contains("nonsense.toml") && nonsense.contains("key `dim_t`") && nonsense.contains("\"lots\""), "{nonsense}");
    let orphan = found[1].error().expect("a model without sidecar is refused");
    assert!(orphan.contains("orphan.json") && orphan.contains("orphan.toml"), "{orphan}");
    eprintln!("nonsense: {nonsense}\norphan: {orphan}");
}

#[test]
fn a_sidecar_that_does_not_match_the_graph_is_refused_naming_the_key() {
    let dir = fixtures_or_skip!();
    let err = load(&entry(dir, "tiny_broken"), |t| plan_for(t, 4, 2), 2, Device::Cpu, 1).err().expect("dim_f 512 vs a 256-bin graph must not load");
    assert!(matches!(err, RuntimeError::ModelSignature { .. }), "{err:?}");
    let m = err.to_string();
    for part in ["tiny_broken.onnx", "tiny_broken.json", "`mdx_dim_f_set` = 512", "256 frequency bins", "set `mdx_dim_f_set` = 256"] {
        assert!(m.contains(part), "missing {part:?} in: {m}");
    }
    eprintln!("{m}");
    // Unusable entries refuse to load with the discovery message.
    let orphan = entry(dir, "orphan");
    let err = load(&orphan, |t| plan_for(t, 1, 0), 2, Device::Cpu, 1).err().unwrap();
    assert_eq!(Some(err.to_string()), orphan.error());
    // A plan that cannot fit the model's window.
    let err = load(&entry(dir, "tiny_vocals"), |_| WindowPlan { window: 64, advance: 30, lookahead: 8, phase: 0 }, 2, Device::Cpu, 1).err().unwrap();
    assert!(err.to_string().contains("window of 32 frames"), "{err}");
}

/// Both models, several plans, stereo and mono: the stems equal the
/// independently computed expectation delayed by exactly `delay()`, and
/// add up to the delayed input.
#[test]
fn stems_are_the_gain_filtered_input_and_the_rest_delayed_by_delay() {
    let dir = fixtures_or_skip!();
    let forced = |_: usize| WindowPlan { window: 1000, advance: 2, lookahead: 5, phase: 3 };
    type PlanFn = Box<dyn Fn(usize) -> WindowPlan>;
    let cases: [(&str, PlanFn, usize, [&str; 2]); 5] = [
        ("tiny_vocals", Box::new(|t| plan_for(t, 4, 3)), 2, ["Vocals", "Instrumental"]),
        ("tiny_vocals", Box::new(WindowPlan::reference), 1, ["Vocals", "Instrumental"]),
        ("tiny_vocals", Box::new(forced), 2, ["Vocals", "Instrumental"]),
        ("tiny_instr", Box::new(WindowPlan::reference), 2, ["Instrumental", "Vocals"]),
        ("tiny_instr", Box::new(|t| plan_for(t, 1, 15)), 1, ["Instrumental", "Vocals"]),
    ];
    for (model, plan, channels, stems) in cases {
        let e = entry(dir, model);
        let expect = Expect::new(dir, &e);
        let mut sep = load(&e, plan, channels, Device::Cpu, 1).unwrap();
        let plan = sep.plan();
        assert_eq!(plan.window, expect.sidecar.dim_t, "the window is the model's dim_t");
        assert_eq!(sep.stem_names(), stems);
        let (n_fft, hop) = (expect.sidecar.n_fft, expect.sidecar.hop);
        let d = sep.delay();
        assert_eq!(d, plan.delay(n_fft, hop));

        let n = 150_000;
        let x: Vec<Vec<f32>> = (0..channels).map(|ch| noise(n, 17 + ch as u64)).collect();
        let y = run_hops(&mut sep, &x);
        assert_eq!(sep.faults(), 0, "{model}: the net failed");
        let m = y[0].len();
        let want = expect.stems(&x);
        // The reference has delay n_fft - hop; the pipeline must add exactly the rest.
        let shift = d - (n_fft - hop);
        for s in 0..2 {
            for ch in 0..channels {
                let got = &y[s * channels + ch][shift..m];
                let err = max_abs_diff(got, &want[s][ch][..m - shift]);
                assert!(err < 2e-4, "{model} {plan:?} {channels} ch: stem {} channel {ch} is off by {err}", stems[s]);
                let level = got.iter().map(|v| v.abs()).fold(0.0, f32::max);
                assert!(level > 0.05, "{model}: stem {} channel {ch} is (nearly) silent: {level}", stems[s]);
            }
        }
        for ch in 0..channels {
            let sum: Vec<f32> = (d..m).map(|i| y[ch][i] + y[channels + ch][i]).collect();
            let err = max_abs_diff(&sum, &x[ch][..m - d]);
            assert!(err < 1e-4, "{model}: the stems do not add up to the input delayed by {d}: {err}");
        }
        eprintln!("{model} {plan:?} {channels} ch: delay {d}, exact");
    }
}

/// At a 48 kHz host rate: sines in the middle of the gain bands come out
/// scaled and phase-shifted exactly as the model's gains say, delayed by the
/// stream's reported latency; the other stem is the rest of the mix.
#[test]
fn any_host_rate_works_through_the_stream() {
    let dir = fixtures_or_skip!();
    let e = entry(dir, "tiny_vocals");
    let expect = Expect::new(dir, &e);
    let sep = load(&e, |t| plan_for(t, 8, 4), 2, Device::Cpu, 1).unwrap();
    let host = 48000u32;
    let mut stream = HostRateStream::new(Box::new(sep), host).unwrap();
    assert_eq!(stream.out_channels(), 4);
    let lat = stream.latency().total;

    let (n_fft, rate) = (expect.sidecar.n_fft as f64, expect.sidecar.sample_rate as f64);
    // Bin centres in the middle of each band, and one above dim_f.
    let tones: Vec<(f64, usize)> = [32usize, 96, 160, 224, 400].iter().map(|&b| (b as f64 * rate / n_fft, b)).collect();
    let amp = [0.12f64, 0.1];
    let tone = |t: f64, ch: usize, k: usize, extra_phase: f64| amp[ch] * (2.0 * std::f64::consts::PI * tones[k].0 * t + 0.7 * k as f64 + extra_phase).sin();

    let n = host as usize * 3;
    let x: Vec<Vec<f32>> = (0..2).map(|ch| (0..n).map(|i| (0..tones.len()).map(|k| tone(i as f64 / host as f64, ch, k, 0.0)).sum::<f64>() as f32).collect()).collect();
    let mut y = vec![vec![0.0f32; n]; 4];
    let (mut inb, mut outb) = (vec![0.0f32; 2 * MAX_FRAMES_PER_CALL], vec![0.0f32; 4 * MAX_FRAMES_PER_CALL]);
    let mut pos = 0;
    let mut block = 1usize;
    while pos < n {
        block = (block * 7 + 300) % 1500 + 1;
        let b = block.min(n - pos);
        for ch in 0..2 {
            inb[ch * b..(ch + 1) * b].copy_from_slice(&x[ch][pos..pos + b]);
        }
        stream.process(&inb[..2 * b], &mut outb[..4 * b], b);
        for o in 0..4 {
            y[o][pos..pos + b].copy_from_slice(&outb[o * b..(o + 1) * b]);
        }
        pos += b;
    }
    assert_eq!(stream.model().faults(), 0);

    // Compare once everything has settled.
    let from = lat + 2 * host as usize / 10;
    for ch in 0..2 {
        let (mut err2, mut ref2, mut worst) = (0.0f64, 0.0f64, 0.0f64);
        for i in from..n {
            let t = (i - lat) as f64 / host as f64;
            let primary: f64 = (0..tones.len())
                .map(|k| {
                    let g = expect.gain(ch, tones[k].1);
                    g.norm() as f64 * tone(t, ch, k, g.arg() as f64)
                })
                .sum();
            let mix = x[ch][i - lat] as f64;
            for (got, want) in [(y[ch][i] as f64, primary), (y[2 + ch][i] as f64, mix - primary)] {
                err2 += (got - want).powi(2);
                ref2 += want.powi(2);
                worst = worst.max((got - want).abs());
            }
        }
        let rel = (err2 / ref2).sqrt();
        eprintln!("48 kHz channel {ch}: latency {lat}, relative error {rel:.2e}, worst sample {worst:.2e}");
        assert!(rel < 5e-3 && worst < 5e-3, "channel {ch}: stems differ from the expectation (relative {rel:.2e}, worst {worst:.2e})");
    }
}
