//! The inference runtime (ONNX Runtime through `ort`) and the model store.
//!
//! Main/worker threads only: nothing here may be called from the audio thread.

pub mod onnx;
pub mod sidecar;
pub mod store;

use std::path::PathBuf;

/// Everything that can stop a model from running, phrased for the user.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked in: {searched}); run `cargo xtask models` or set MANIFOLD_DATA_DIR")]
    LibraryMissing { searched: String },
    #[error("ONNX Runtime library at {path} could not be loaded: {reason}")]
    LibraryLoad { path: PathBuf, reason: String },
    #[error("model '{id}' is not installed (looked in: {searched}); run `cargo xtask models`")]
    ModelMissing { id: String, searched: String },
    #[error("model '{id}' manifest at {path} is unreadable: {reason}")]
    ManifestInvalid { id: String, path: PathBuf, reason: String },
    #[error("model file {path} is corrupt or unreadable: {reason}")]
    ModelCorrupt { path: PathBuf, reason: String },
    #[error("model file {path} does not have the expected inputs/outputs: {reason}")]
    ModelSignature { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
}
