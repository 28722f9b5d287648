//! `manifold batch`: a whole folder in one command, with a ledger that makes
//! it resumable. Bad inputs are recorded with their reason and never stop the
//! batch; a second run skips what is done and retries what failed; a changed
//! setting, input or output renders again; a batch killed at random points
//! and resumed ends with the same bytes as one that ran through, and never
//! leaves a partial file under a final name.

use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn manifold() -> Command {
    Command::new(env!("CARGO_BIN_EXE_manifold"))
}

/// Runs `manifold batch ARGS`; (exit code, stderr).
fn batch(args: &[&str]) -> (i32, String) {
    let out = manifold().arg("batch").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A speech-like test signal: a gliding harmonic tone in noise, `seconds`
/// long, seeded.
fn write_wav(path: &Path, seconds: f32, rate: u32, channels: u16, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let spec = hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let f0 = 110.0 + 20.0 * seed as f32;
    let mut phase = 0.0f32;
    for i in 0..(seconds * rate as f32) as usize {
        let t = i as f32 / rate as f32;
        phase += std::f32::consts::TAU * f0 * (1.0 + 0.2 * (t * 1.3).sin()) / rate as f32;
        let voiced: f32 = (1..8).map(|h| (phase * h as f32).sin() / h as f32).sum::<f32>() * 0.2 * (0.5 + 0.5 * (t * 3.0).sin()).max(0.0);
        for _ in 0..channels {
            let x = voiced + rng.gen_range(-0.05..0.05);
            w.write_sample((x.clamp(-1.0, 1.0) * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// sha256 of every file under `dir` (relative paths), ledgers and hidden files left out.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if !name.starts_with("manifold-ledger") {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), manifold::batch::ledger::sha256_file(&p).unwrap());
            }
        }
    }
    out
}

/// Files whose name marks them as temporary (hidden, `.manifold-tmp-`).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy().contains(".manifold-tmp-") {
                out.push(e.path());
            } else if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out
}

fn ledger(dir: &Path) -> BTreeMap<String, manifold::batch::Record> {
    manifold::batch::ledger::read_all(dir).into_iter().collect()
}

#[test]
fn bad_inputs_are_recorded_and_a_second_run_skips_what_is_done() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("library");
    write_wav(&lib.join("talk/one.wav"), 3.0, 48000, 1, 1);
    write_wav(&lib.join("talk/two.wav"), 2.5, 44100, 2, 2);
    write_wav(&lib.join("three.wav"), 2.0, 16000, 1, 3);
    // Bad inputs, each of its own kind.
    std::fs::write(lib.join("empty.wav"), b"").unwrap();
    std::fs::write(lib.join("not_audio.mp3"), b"this is text, not MPEG audio").unwrap();
    let whole = std::fs::read(lib.join("three.wav")).unwrap();
    std::fs::write(lib.join("truncated.wav"), &whole[..whole.len() / 4]).unwrap();
    write_wav(&lib.join("six_channels.wav"), 0.5, 16000, 6, 4);
    std::os::unix::fs::symlink(lib.join("gone.wav"), lib.join("broken_link.wav")).unwrap();
    std::fs::write(lib.join("notes.txt.bak"), b"not an audio extension: not an input").unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let l = lib.to_str().unwrap();

    let (code, err) = batch(&["clean", "--model", "rnnoise", "-q", l, "-o", o]);
    assert_eq!(code, 3, "some inputs failed: exit status 3\n{err}");
    assert!(err.contains("3 rendered, 0 skipped (already done), 5 failed"), "{err}");
    let records = ledger(&out);
    assert_eq!(records.len(), 8, "{records:?}");
    let reason = |name: &str| records[name].error.clone().unwrap_or_default();
    for name in ["talk/one", "talk/two", "three"] {
        assert_eq!(records[name].status, manifold::batch::Status::Done, "{name}: {}", reason(name));
    }
    assert!(reason("empty").contains("empty"), "{}", reason("empty"));
    assert!(reason("not_audio").contains("not a readable audio file"), "{}", reason("not_audio"));
    assert!(reason("truncated").contains("ends early"), "{}", reason("truncated"));
    assert!(reason("six_channels").contains("6 channels"), "{}", reason("six_channels"));
    assert!(reason("broken_link").contains("cannot read"), "{}", reason("broken_link"));
    // Only complete outputs, under the inputs' layout; failures leave nothing.
    let files = tree(&out);
    assert_eq!(files.keys().map(String::as_str).collect::<Vec<_>>(), ["talk/one.wav", "talk/two.wav", "three.wav"]);
    assert!(temporaries(&out).is_empty());

    // Each output equals the single-file command's.
    let single = tmp.path().join("single.wav");
    let status = manifold().args(["clean", "--model", "rnnoise", "-q"]).arg(lib.join("talk/two.wav")).arg("-o").arg(&single).status().unwrap();
    assert!(status.success());
    assert_eq!(files["talk/two.wav"], manifold::batch::ledger::sha256_file(&single).unwrap());
    assert_eq!(records["talk/two"].outputs[0].sha256, files["talk/two.wav"]);

    // Again: what is done is skipped, what failed is tried again.
    let (code, err) = batch(&["clean", "--model", "rnnoise", "-q", l, "-o", o]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("0 rendered, 3 skipped (already done), 5 failed"), "{err}");
    assert_eq!(tree(&out), files);

    // The user repairs one input, damages one output and removes another:
    // exactly those render again.
    write_wav(&lib.join("truncated.wav"), 1.0, 16000, 1, 5);
    std::fs::write(out.join("talk/one.wav"), b"damaged").unwrap();
    std::fs::remove_file(out.join("three.wav")).unwrap();
    let (code, err) = batch(&["clean", "--model", "rnnoise", "-q", l, "-o", o]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("3 rendered, 1 skipped (already done), 4 failed"), "{err}");
    assert_eq!(tree(&out)["talk/one.wav"], files["talk/one.wav"], "re-rendered the same");
    assert_eq!(tree(&out)["three.wav"], files["three.wav"]);

    // A changed setting renders everything again; a changed input renders it again.
    std::fs::remove_file(lib.join("empty.wav")).unwrap();
    std::fs::remove_file(lib.join("not_audio.mp3")).unwrap();
    std::fs::remove_file(lib.join("six_channels.wav")).unwrap();
    std::fs::remove_file(lib.join("broken_link.wav")).unwrap();
    let (code, err) = batch(&["clean", "--model", "rnnoise", "--atten-lim", "12", "-q", l, "-o", o]);
    assert_eq!(code, 0, "every input done: exit status 0\n{err}");
    assert!(err.contains("4 rendered, 0 skipped (already done), 0 failed"), "{err}");
    assert_ne!(tree(&out)["talk/one.wav"], files["talk/one.wav"], "a 12 dB limit changes the output");
    write_wav(&lib.join("three.wav"), 2.0, 16000, 1, 9);
    let (code, err) = batch(&["clean", "--model", "rnnoise", "--atten-lim", "12", "-q", l, "-o", o]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 rendered, 3 skipped (already done), 0 failed"), "{err}");
}

#[test]
fn a_batch_killed_at_random_points_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = tmp.path().join("library");
    for i in 0..6u64 {
        write_wav(&lib.join(format!("disc{}/track{i}.wav", i % 2)), 6.0 + i as f32, 44100, 2, i);
    }
    // Stems: several files per input, written through a temporary folder.
    let reference = tmp.path().join("reference");
    let (code, err) = batch(&["stems", "--cpu", "-q", "--jobs", "1", lib.to_str().unwrap(), "-o", reference.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let want = tree(&reference);
    assert_eq!(want.len(), 12, "{want:?}");

    let out = tmp.path().join("out");
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut killed_mid_run = 0;
    for round in 0..6 {
        let mut child = manifold()
            .args(["batch", "stems", "--cpu", "-q", "--jobs", "2"])
            .arg(&lib)
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..1500)));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().ok(); // SIGKILL: no chance to clean up
        child.wait().unwrap();
        // Whatever is under a final name is complete and right.
        for (path, hash) in tree(&out) {
            if !path.contains(".manifold-tmp-") {
                assert_eq!(want.get(&path), Some(&hash), "round {round}: {path} is under its final name but is not the complete render");
            }
        }
    }
    let (code, err) = batch(&["stems", "--cpu", "-q", "--jobs", "2", lib.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(tree(&out), want, "after kills and a resume, the same files and bytes as a run that went through");
    assert!(temporaries(&out).is_empty(), "temporary files left: {:?}", temporaries(&out));
    let records = ledger(&out);
    assert_eq!(records.len(), 6);
    assert!(records.values().all(|r| r.status == manifold::batch::Status::Done));
    // The first kill comes before the model has even loaded on any machine.
    assert!(killed_mid_run >= 1, "no kill landed while the batch was running");
    eprintln!("{killed_mid_run} of 6 kills landed while the batch was running");
}
