//! Faults a user can run into, through the real `manifold` binary: a missing
//! ONNX Runtime library, a truncated model file, unreadable input. Each must
//! end in a clear message, never a crash. And one thing that must not happen
//! behind the user's back: the runtime's usage telemetry.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn installed_data() -> PathBuf {
    let d = workspace().join("target/manifold-data");
    assert!(d.join("models/gtcrn/manifest.toml").is_file(), "no installed models: run `cargo xtask models gtcrn` (or `cargo xtask test`)");
    d
}

/// The CLI copied into an empty folder, with the per-user data folder
/// pointed at an empty place, so the only data it can find is what a test
/// puts in `MANIFOLD_DATA_DIR`.
struct Sandbox {
    dir: tempfile::TempDir,
    exe: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("bin/manifold");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_manifold"), &exe).unwrap();
        Self { dir, exe }
    }
    fn run(&self, data: Option<&Path>, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).env("XDG_DATA_HOME", self.dir.path().join("xdg")).env("XDG_CACHE_HOME", self.dir.path().join("cache")).env("HOME", self.dir.path());
        // As a user's shell: no telemetry opt-out of their own, and none of
        // the CI markers with which ONNX Runtime silences itself.
        for var in ["ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD"] {
            cmd.env_remove(var);
        }
        match data {
            Some(d) => cmd.env("MANIFOLD_DATA_DIR", d),
            None => cmd.env_remove("MANIFOLD_DATA_DIR"),
        };
        // Every test copies the binary; a test thread that forks while
        // another's copy is still open for writing gives that child the
        // write handle until it execs, and an exec of the copy meanwhile
        // fails with ETXTBSY ("Text file busy"). That is a race of the
        // test harness, not of Manifold: try again until the other child
        // has exec'd.
        let mut tries = 0;
        let out = loop {
            match cmd.output() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
}

fn write_noise_wav(path: &Path, seconds: f32) {
    let spec = hound::WavSpec { channels: 1, sample_rate: 48000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut s = 1u32;
    for _ in 0..(seconds * 48000.0) as usize {
        s = s.wrapping_mul(1664525).wrapping_add(1013904223);
        w.write_sample(((s >> 16) as i16) / 8).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn missing_runtime_library_is_reported_clearly() {
    let sb = Sandbox::new();
    // The model is there, the runtime library is not.
    let empty = sb.path("data-without-runtime");
    std::fs::create_dir_all(empty.join("models/gtcrn")).unwrap();
    for f in ["manifest.toml", "gtcrn_simple.onnx"] {
        std::fs::copy(installed_data().join("models/gtcrn").join(f), empty.join("models/gtcrn").join(f)).unwrap();
    }
    let input = sb.path("in.wav");
    write_noise_wav(&input, 0.5);
    let (ok, err) = sb.run(Some(&empty), &["clean", "--model", "gtcrn", input.to_str().unwrap(), "-o", sb.path("out.wav").to_str().unwrap()]);
    assert!(!ok, "must fail without a runtime");
    assert!(err.contains("ONNX Runtime library not found"), "{err}");
    assert!(err.contains("cargo xtask models"), "the message says what to do: {err}");
}

#[test]
fn truncated_model_file_is_reported_clearly() {
    let sb = Sandbox::new();
    let real = installed_data();
    let data = sb.path("data");
    std::fs::create_dir_all(data.join("runtime")).unwrap();
    std::fs::create_dir_all(data.join("models/gtcrn")).unwrap();
    let lib = "libonnxruntime.so.1.31.1";
    std::fs::copy(real.join("runtime").join(lib), data.join("runtime").join(lib)).unwrap();
    std::fs::copy(real.join("models/gtcrn/manifest.toml"), data.join("models/gtcrn/manifest.toml")).unwrap();
    let bytes = std::fs::read(real.join("models/gtcrn/gtcrn_simple.onnx")).unwrap();
    std::fs::write(data.join("models/gtcrn/gtcrn_simple.onnx"), &bytes[..bytes.len() / 3]).unwrap();
    let input = sb.path("in.wav");
    write_noise_wav(&input, 0.5);
    let (ok, err) = sb.run(Some(&data), &["clean", "--model", "gtcrn", input.to_str().unwrap(), "-o", sb.path("out.wav").to_str().unwrap()]);
    assert!(!ok, "a truncated model must not run");
    assert!(err.contains("corrupt or unreadable"), "{err}");
    assert!(!sb.path("out.wav").exists());
}

#[test]
fn unreadable_input_is_reported_clearly() {
    let sb = Sandbox::new();
    let bogus = sb.path("not-audio.wav");
    std::fs::write(&bogus, b"this is not a wav file at all").unwrap();
    let (ok, err) = sb.run(Some(&installed_data()), &["clean", bogus.to_str().unwrap(), "-o", sb.path("o.wav").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("not a readable audio file"), "{err}");
    let (ok, err) = sb.run(Some(&installed_data()), &["clean", sb.path("missing.wav").to_str().unwrap(), "-o", sb.path("o.wav").to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("cannot open"), "{err}");
}

#[test]
fn cli_output_is_aligned_and_same_length() {
    let sb = Sandbox::new();
    let input = sb.path("in.wav");
    write_noise_wav(&input, 1.3);
    let out = sb.path("out.wav");
    let (ok, err) = sb.run(Some(&installed_data()), &["clean", "-q", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let a = hound::WavReader::open(&input).unwrap();
    let b = hound::WavReader::open(&out).unwrap();
    assert_eq!(a.duration(), b.duration());
    assert_eq!(b.spec().sample_rate, 48000);
    let samples: Vec<f32> = b.into_samples::<f32>().map(|s| s.unwrap()).collect();
    assert!(samples.iter().all(|x| x.is_finite()));
}

/// `manifold stems` on a mono 48 kHz file: two stems, same length, the
/// device choice (GPU attempt, CPU fallback) is stated; a missing model says
/// what to do; a user model with a broken sidecar is listed with the reason.
#[test]
fn stems_cli_writes_every_stem_and_explains_problems() {
    let sb = Sandbox::new();
    let input = sb.path("in.wav");
    write_noise_wav(&input, 2.0);
    let out = sb.path("stems");
    let (ok, err) = sb.run(Some(&installed_data()), &["stems", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(err.contains("Spleeter 2-stem on"), "the status names model and device: {err}");
    let a = hound::WavReader::open(&input).unwrap();
    for stem in ["vocals.wav", "accompaniment.wav"] {
        let b = hound::WavReader::open(out.join(stem)).unwrap();
        assert_eq!(a.duration(), b.duration(), "{stem}");
        assert_eq!((b.spec().channels, b.spec().sample_rate), (1, 48000));
    }

    // Only the runtime: the model is missing.
    let data = sb.path("runtime-only");
    std::fs::create_dir_all(data.join("runtime")).unwrap();
    let lib = "libonnxruntime.so.1.31.1";
    std::fs::copy(installed_data().join("runtime").join(lib), data.join("runtime").join(lib)).unwrap();
    let (ok, err) = sb.run(Some(&data), &["stems", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("'spleeter_2stems' is not installed") && err.contains("cargo xtask models"), "{err}");

    // A user model whose sidecar is nonsense is refused with the reason.
    let user = sb.path("user-models");
    std::fs::create_dir_all(&user).unwrap();
    std::fs::write(user.join("broken.onnx"), b"not a model").unwrap();
    std::fs::write(user.join("broken.toml"), "primary_stem = \"Vocals\"\nn_fft = 6144\ndim_f = 2048\ndim_t = \"lots\"\n").unwrap();
    let out = Command::new(&sb.exe)
        .arg("models")
        .env("MANIFOLD_DATA_DIR", installed_data())
        .env("MANIFOLD_USER_MODELS", &user)
        .env("HOME", sb.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cannot use broken") && text.contains("dim_t"), "{text}");
    assert!(text.contains("spleeter_2stems") && text.contains("MIT"), "{text}");
}

/// Every file and folder under `dir`, relative to it.
fn everything_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    found
}

#[test]
fn a_render_leaves_no_runtime_telemetry_behind() {
    // ONNX Runtime 1.31's Linux build, left alone, writes a device id and an
    // upload cache under ~/.cache/Microsoft/DeveloperTools/.onnxruntime and
    // keeps an uploader thread running.
    let sb = Sandbox::new();
    let input = sb.path("in.wav");
    write_noise_wav(&input, 1.0);
    let (ok, err) = sb.run(Some(&installed_data()), &["clean", "-q", "--model", "gtcrn", input.to_str().unwrap(), "-o", sb.path("out.wav").to_str().unwrap()]);
    assert!(ok, "{err}");
    let traces: Vec<_> = everything_under(sb.dir.path())
        .into_iter()
        .filter(|p| p.components().any(|c| ["Microsoft", ".onnxruntime", "deviceid", "onnxruntime.db"].contains(&c.as_os_str().to_str().unwrap_or(""))))
        .collect();
    assert!(traces.is_empty(), "the runtime left telemetry files: {traces:?}");
}

#[test]
fn convert_cli_needs_a_usable_target_and_says_why() {
    let sb = Sandbox::new();
    let input = sb.path("in.wav");
    write_noise_wav(&input, 1.0);
    let out = sb.path("out.wav");
    // No target for the built-in converter.
    let (ok, err) = sb.run(Some(&installed_data()), &["convert", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("--target"), "{err}");
    // A target of noise has no voice in it; a 1 s one is too short.
    let (ok, err) = sb.run(Some(&installed_data()), &["convert", "--target", input.to_str().unwrap(), input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("at least 3 s"), "{err}");
    let long = sb.path("noise.wav");
    write_noise_wav(&long, 5.0);
    let (ok, err) = sb.run(Some(&installed_data()), &["convert", "--target", long.to_str().unwrap(), input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("too little voiced speech"), "{err}");
    // An unknown model lists the ones there are.
    let (ok, err) = sb.run(Some(&installed_data()), &["convert", "--model", "nobody", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("unknown voice model 'nobody'") && err.contains("default"), "{err}");
}
