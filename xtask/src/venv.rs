//! The project's Python environment (`target/venv`): model preparation
//! (graph rewrites with `onnx`), the speech-set generator, the pedalboard
//! and dawdreamer host tests and the quality bench. Pinned packages from PyPI only.

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

const PACKAGES: &[&str] = &[
    "numpy==2.4.6",
    "scipy==1.17.1",
    "onnx==1.23.2",
    "pedalboard==0.9.26",
    // A second JUCE host, which renders flat out (tests/dawdreamer_host.py).
    "dawdreamer==0.9.0",
    "espeakng-loader==0.2.4",
    "pesq==0.0.4",
    "pystoi==0.4.1",
    // Voice: the ASR half of the conversion bench, and training the
    // content (phone posterior) model.
    "pocketsphinx==5.1.1",
    "scikit-learn==1.9.1",
    // `manifold batch` across machines (cluster/ray_batch.py) and its test.
    "ray==2.60.0",
];

/// Creates `target/venv` with the pinned packages (idempotent) and returns
/// its python.
pub fn python(root: &Path) -> Result<PathBuf> {
    let dir = root.join("target/venv");
    let py = dir.join("bin/python");
    let stamp = dir.join(".manifold-packages");
    let want = PACKAGES.join(" ");
    if py.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) {
        return Ok(py);
    }
    crate::run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    crate::run(Command::new(&py).args(["-m", "pip", "install", "-q", "--disable-pip-version-check"]).args(PACKAGES))?;
    std::fs::write(&stamp, want)?;
    Ok(py)
}
