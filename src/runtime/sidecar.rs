//! User-model sidecars (the TOML or JSON file next to a user's `.onnx`):
//! values of either format, typed field access with errors that name the
//! key to fix, and the folder scan. Main/loader threads.

use super::RuntimeError;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

pub(crate) fn invalid(path: &Path, reason: String) -> RuntimeError {
    let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    RuntimeError::ManifestInvalid { id, path: path.to_path_buf(), reason }
}

pub(crate) fn extension(path: &Path) -> Option<String> {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// One sidecar value, whatever the file format.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Other(&'static str),
}

impl Raw {
    pub(crate) fn from_json(v: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match v {
            J::Number(n) => n.as_i64().map(Raw::Int).unwrap_or_else(|| Raw::Float(n.as_f64().unwrap_or(f64::NAN))),
            J::String(s) => Raw::Text(s.clone()),
            J::Bool(b) => Raw::Bool(*b),
            J::Null => Raw::Other("null"),
            J::Array(_) => Raw::Other("a list"),
            J::Object(_) => Raw::Other("a table"),
        }
    }

    pub(crate) fn from_toml(v: &toml::Value) -> Self {
        use toml::Value as T;
        match v {
            T::Integer(i) => Raw::Int(*i),
            T::Float(f) => Raw::Float(*f),
            T::String(s) => Raw::Text(s.clone()),
            T::Boolean(b) => Raw::Bool(*b),
            T::Datetime(_) => Raw::Other("a date"),
            T::Array(_) => Raw::Other("a list"),
            T::Table(_) => Raw::Other("a table"),
        }
    }

    pub(crate) fn shown(&self) -> String {
        match self {
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Text(s) => format!("{s:?}"),
            Raw::Bool(b) => b.to_string(),
            Raw::Other(what) => (*what).to_string(),
        }
    }
}

pub(crate) struct Fields<'a> {
    pub map: &'a BTreeMap<String, Raw>,
    pub path: &'a Path,
}

impl Fields<'_> {
    pub(crate) fn bad(&self, key: &str, why: impl Display) -> RuntimeError {
        invalid(self.path, format!("key `{key}` {why}"))
    }

    pub(crate) fn missing(&self, what: &str) -> RuntimeError {
        invalid(self.path, format!("missing key {what}"))
    }

    pub(crate) fn uint(&self, key: &str) -> Result<Option<u64>, RuntimeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Raw::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(Raw::Float(f)) if f.fract() == 0.0 && *f >= 0.0 && *f < 1e12 => Ok(Some(*f as u64)),
            Some(v @ Raw::Text(_)) => Err(self.bad(key, format!("must be a whole number without quotes, not {}", v.shown()))),
            Some(v) => Err(self.bad(key, format!("must be a whole number of at least 0, not {}", v.shown()))),
        }
    }

    pub(crate) fn number(&self, key: &str) -> Result<Option<f64>, RuntimeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Raw::Int(i)) => Ok(Some(*i as f64)),
            Some(Raw::Float(f)) => Ok(Some(*f)),
            Some(v @ Raw::Text(_)) => Err(self.bad(key, format!("must be a number without quotes, not {}", v.shown()))),
            Some(v) => Err(self.bad(key, format!("must be a number, not {}", v.shown()))),
        }
    }

    pub(crate) fn text(&self, key: &str) -> Result<Option<String>, RuntimeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Raw::Text(s)) => Ok(Some(s.trim().to_string())),
            Some(v) => Err(self.bad(key, format!("must be text in quotes, not {}", v.shown()))),
        }
    }


    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, RuntimeError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Raw::Bool(b)) => Ok(Some(*b)),
            Some(Raw::Int(0)) => Ok(Some(false)),
            Some(Raw::Int(1)) => Ok(Some(true)),
            Some(v) => Err(self.bad(key, format!("must be true or false (without quotes), not {}", v.shown()))),
        }
    }
}

/// A folder's entries, sorted (empty if it cannot be read).
pub(crate) fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

pub(crate) fn is_onnx(p: &Path) -> bool {
    p.is_file() && extension(p).as_deref() == Some("onnx")
}
