//! Where Manifold finds its runtime library and models, and what a model's
//! manifest says. Main/worker threads.
//!
//! Search order for every item (the first folder that has it wins):
//! 1. `$MANIFOLD_DATA_DIR`
//! 2. a `manifold-data` folder next to the loaded plugin bundle or binary
//!    (any ancestor of the shared library / executable, or its `Resources/`)
//! 3. the per-user data folder (`~/.local/share/manifold` on Linux)
//!
//! Layout of a data folder:
//! ```text
//! runtime/libonnxruntime.so.1.31.1
//! models/<id>/manifest.toml   models/<id>/<model files>
//! ```

use super::RuntimeError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DATA_DIR_ENV: &str = "MANIFOLD_DATA_DIR";
pub const DATA_DIR_NAME: &str = "manifold-data";
pub const RUNTIME_LIB_NAME: &str = "libonnxruntime.so.1.31.1";

/// What `cargo xtask models` writes next to every model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelManifest {
    pub id: String,
    /// "enhance", "separate" or "convert".
    pub task: String,
    /// The main model file, relative to the manifest.
    pub file: String,
    pub sample_rate: u32,
    pub hop: usize,
    pub n_fft: usize,
    /// Algorithmic latency at the model's rate, in samples.
    pub latency_samples: usize,
    pub license: String,
    pub license_file: Option<String>,
    /// Where the model came from (package, version, wheel).
    pub source: String,
    /// sha256 of `file`.
    pub sha256: String,
}

/// A model found in a data folder.
#[derive(Debug, Clone)]
pub struct InstalledModel {
    pub manifest: ModelManifest,
    pub dir: PathBuf,
}

impl InstalledModel {
    pub fn file_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.file)
    }
}

/// The folders searched, in order. Only existing folders are returned.
pub fn data_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os(DATA_DIR_ENV) {
        out.push(PathBuf::from(dir));
    }
    if let Some(lib) = this_binary_path() {
        for anc in lib.ancestors().skip(1).take(5) {
            out.push(anc.join(DATA_DIR_NAME));
            out.push(anc.join("Resources").join(DATA_DIR_NAME));
        }
    }
    if let Some(user) = user_data_dir() {
        out.push(user);
    }
    let mut seen = Vec::new();
    out.retain(|d| d.is_dir() && !seen.contains(d) && {
        seen.push(d.clone());
        true
    });
    out
}

/// `~/.local/share/manifold` (or the platform's equivalent).
pub fn user_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("manifold"))
}

fn searched(dirs: &[PathBuf]) -> String {
    if dirs.is_empty() {
        format!("${DATA_DIR_ENV}, {DATA_DIR_NAME}/ next to the plugin, {}", user_data_dir().map(|d| d.display().to_string()).unwrap_or_default())
    } else {
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// Finds the ONNX Runtime shared library.
pub fn find_runtime_library() -> Result<PathBuf, RuntimeError> {
    let dirs = data_dirs();
    dirs.iter()
        .map(|d| d.join("runtime").join(RUNTIME_LIB_NAME))
        .find(|p| p.is_file())
        .ok_or_else(|| RuntimeError::LibraryMissing { searched: searched(&dirs) })
}

/// Finds and reads the manifest of model `id`.
pub fn find_model(id: &str) -> Result<InstalledModel, RuntimeError> {
    let dirs = data_dirs();
    let dir = dirs
        .iter()
        .map(|d| d.join("models").join(id))
        .find(|p| p.join("manifest.toml").is_file())
        .ok_or_else(|| RuntimeError::ModelMissing { id: id.to_string(), searched: searched(&dirs) })?;
    read_manifest(id, &dir)
}

pub fn read_manifest(id: &str, dir: &Path) -> Result<InstalledModel, RuntimeError> {
    let path = dir.join("manifest.toml");
    let bad = |reason: String| RuntimeError::ManifestInvalid { id: id.to_string(), path: path.clone(), reason };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let manifest: ModelManifest = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    Ok(InstalledModel { manifest, dir: dir.to_path_buf() })
}

/// Path of the shared object (plugin) or executable this code was linked into.
fn this_binary_path() -> Option<PathBuf> {
    #[cfg(unix)]
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let addr = this_binary_path as *const () as *const libc::c_void;
        if libc::dladdr(addr, &mut info) != 0 && !info.dli_fname.is_null() {
            let name = std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned();
            let p = PathBuf::from(name);
            return std::fs::canonicalize(&p).ok().or(Some(p));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let m = ModelManifest {
            id: "gtcrn".into(),
            task: "enhance".into(),
            file: "gtcrn_simple.onnx".into(),
            sample_rate: 16000,
            hop: 256,
            n_fft: 512,
            latency_samples: 256,
            license: "MIT".into(),
            license_file: Some("LICENSE.GTCRN".into()),
            source: "PyPI".into(),
            sha256: "00".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.toml"), toml::to_string(&m).unwrap()).unwrap();
        let got = read_manifest("gtcrn", dir.path()).unwrap();
        assert_eq!(got.manifest, m);
        std::fs::write(dir.path().join("manifest.toml"), "id = 3").unwrap();
        assert!(matches!(read_manifest("gtcrn", dir.path()), Err(RuntimeError::ManifestInvalid { .. })));
    }
}
