//! User-supplied MDX-Net separation models (the ONNX files Ultimate Vocal
//! Remover uses) as a [`SpectrogramNet`] in the sliding-window pipeline.
//! Discovery and loading: main/worker threads; [`MdxNet::separate`]: worker.
//!
//! A user drops `<name>.onnx` into a user models folder (see
//! [`user_model_dirs`]) together with a settings file next to it,
//! `<name>.json` or `<name>.toml` (see [`MdxSidecar`]), either directly in the
//! folder or in a subfolder of it.
//!
//! What an MDX-Net model computes, and what this module does around it:
//! * the STFT of the stereo mix at the model's rate (44.1 kHz unless the
//!   sidecar says otherwise): `n_fft` per model, hop 1024, periodic Hann,
//!   unnormalised, the same transform as `torch.stft(center=True)`;
//! * the net sees one tensor `[batch, 4, dim_f, dim_t]` float32: channels
//!   (left real, left imaginary, right real, right imaginary), the lowest
//!   `dim_f` bins (the lowest [`ZEROED_LOW_BINS`] set to zero, as UVR does),
//!   `dim_t` frames; the window of the sliding-window pipeline is `dim_t`;
//! * it returns the complex spectrogram of its primary stem in the same
//!   layout; bins from `dim_f` up are zero; the primary stem is multiplied by
//!   the sidecar's `compensate` gain;
//! * the second stem is the mix minus the (compensated) primary stem, in the
//!   spectral domain over all bins, so the two stems always add up to the mix.
//!
//! UVR's optional "denoise" trick (averaging the net on the mix and on the
//! negated mix) is not done.

use super::separate_window::{SpectrogramNet, WindowPlan, WindowedSeparator};
use super::stream::ModelTiming;
use crate::runtime::onnx::{open_session_with_threads, Device};
use crate::runtime::sidecar::{extension, invalid, is_onnx, sorted_dir, Fields, Raw};
use crate::runtime::{store, RuntimeError};
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};
use realfft::num_complex::Complex32;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Extra user models folders (a path list, like `PATH`), searched first.
pub const USER_MODELS_ENV: &str = "MANIFOLD_USER_MODELS";
/// The user models folder inside every Manifold data folder.
pub const USER_MODELS_DIR_NAME: &str = "user-models";
pub const DEFAULT_SAMPLE_RATE: u32 = 44100;
pub const DEFAULT_HOP: usize = 1024;
/// Lowest STFT bins set to zero before the net sees them (UVR 5.6 does this).
pub const ZEROED_LOW_BINS: usize = 3;
/// Net channels: left real, left imaginary, right real, right imaginary.
const NET_PLANES: usize = 4;

// ---------------------------------------------------------------------------
// Sidecar
// ---------------------------------------------------------------------------

/// The settings file next to a model: `<name>.json` or `<name>.toml`.
///
/// Keys may be written our way or UVR's way (its `model_data.json` entries,
/// copied as they are, even still wrapped in their hash key):
///
/// | meaning                          | ours           | UVR                       |
/// |----------------------------------|----------------|---------------------------|
/// | stem the model outputs           | `primary_stem` | `primary_stem`            |
/// | FFT size                         | `n_fft`        | `mdx_n_fft_scale_set`     |
/// | frequency bins the model sees    | `dim_f`        | `mdx_dim_f_set`           |
/// | frames per window                | `dim_t` (256)  | `mdx_dim_t_set` (8 = 2^8) |
/// | gain on the primary stem (1.0)   | `compensate`   | `compensate`              |
/// | sample rate (44100)              | `sample_rate`  |                           |
/// | hop (1024)                       | `hop`          |                           |
/// | shown name, license, origin      | `name`, `license`, `source` |              |
///
/// Other keys are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct MdxSidecar {
    /// The file it was read from.
    pub path: PathBuf,
    pub name: Option<String>,
    pub primary_stem: String,
    pub n_fft: usize,
    pub hop: usize,
    pub dim_f: usize,
    /// Frames per window (UVR's `2^mdx_dim_t_set`).
    pub dim_t: usize,
    pub compensate: f32,
    pub sample_rate: u32,
    pub license: Option<String>,
    pub source: Option<String>,
    /// Which key each shape value came from, for messages.
    pub keys: SidecarKeys,
}

/// The keys `n_fft`, `dim_f` and `dim_t` were read from (ours or UVR's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidecarKeys {
    pub n_fft: &'static str,
    pub dim_f: &'static str,
    pub dim_t: &'static str,
}

const KEY_N_FFT: (&str, &str) = ("n_fft", "mdx_n_fft_scale_set");
const KEY_DIM_F: (&str, &str) = ("dim_f", "mdx_dim_f_set");
const KEY_DIM_T: (&str, &str) = ("dim_t", "mdx_dim_t_set");
const KNOWN_KEYS: &[&str] = &[
    "primary_stem",
    "n_fft",
    "mdx_n_fft_scale_set",
    "dim_f",
    "mdx_dim_f_set",
    "dim_t",
    "mdx_dim_t_set",
    "compensate",
    "sample_rate",
    "hop",
    "name",
    "license",
    "source",
];
/// UVR's exponent for dim_t: 2^1 ..= 2^12 frames.
const MAX_DIM_T_EXPONENT: u64 = 12;
const MAX_DIM_T: u64 = 1 << MAX_DIM_T_EXPONENT;
const MAX_N_FFT: u64 = 65536;

impl MdxSidecar {
    /// Reads a `.json` or `.toml` sidecar.
    pub fn read(path: &Path) -> Result<Self, RuntimeError> {
        let text = std::fs::read_to_string(path).map_err(|e| invalid(path, format!("cannot be read: {e}")))?;
        match extension(path).as_deref() {
            Some("json") => Self::parse_json(&text, path),
            Some("toml") => Self::parse_toml(&text, path),
            _ => Err(invalid(path, "a settings file must end in .json or .toml".into())),
        }
    }

    /// Parses JSON text; `path` is only used in messages and kept in `path`.
    pub fn parse_json(text: &str, path: &Path) -> Result<Self, RuntimeError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(path, format!("is not valid JSON: {e}")))?;
        let serde_json::Value::Object(mut table) = value else {
            return Err(invalid(path, "must hold one JSON object, like { \"primary_stem\": \"Vocals\", \"mdx_dim_f_set\": 3072, ... }".into()));
        };
        // One entry of UVR's model_data.json, still under its hash key.
        if table.len() == 1 && !table.keys().any(|k| KNOWN_KEYS.contains(&k.as_str())) {
            if let Some(serde_json::Value::Object(inner)) = table.values().next() {
                table = inner.clone();
            }
        }
        let fields = table.iter().map(|(k, v)| (k.clone(), Raw::from_json(v))).collect();
        Self::from_fields(&fields, path)
    }

    /// Parses TOML text; `path` is only used in messages and kept in `path`.
    pub fn parse_toml(text: &str, path: &Path) -> Result<Self, RuntimeError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| invalid(path, format!("is not valid TOML: {}", e.message())))?;
        if table.len() == 1 && !table.keys().any(|k| KNOWN_KEYS.contains(&k.as_str())) {
            if let Some(toml::Value::Table(inner)) = table.values().next() {
                table = inner.clone();
            }
        }
        let fields = table.iter().map(|(k, v)| (k.clone(), Raw::from_toml(v))).collect();
        Self::from_fields(&fields, path)
    }

    fn from_fields(map: &BTreeMap<String, Raw>, path: &Path) -> Result<Self, RuntimeError> {
        let f = Fields { map, path };
        let primary_stem = f.text("primary_stem")?.ok_or_else(|| f.missing("`primary_stem`: the stem the model outputs, e.g. \"Vocals\" or \"Instrumental\""))?;
        if primary_stem.is_empty() {
            return Err(f.bad("primary_stem", "is empty; name the stem the model outputs, e.g. \"Vocals\""));
        }
        let (n_fft, n_fft_key) = f
            .either(KEY_N_FFT)?
            .ok_or_else(|| f.missing("`n_fft` (UVR: `mdx_n_fft_scale_set`): the model's FFT size, e.g. 7680"))?;
        let (dim_f, dim_f_key) = f
            .either(KEY_DIM_F)?
            .ok_or_else(|| f.missing("`dim_f` (UVR: `mdx_dim_f_set`): how many frequency bins the model sees, e.g. 3072"))?;
        let (dim_t, dim_t_key) = f.dim_t()?.ok_or_else(|| f.missing("`dim_t` (frames per window, e.g. 256) or UVR's `mdx_dim_t_set` (its power of two, e.g. 8)"))?;
        let hop = f.uint("hop")?.unwrap_or(DEFAULT_HOP as u64);
        let sample_rate = f.uint("sample_rate")?.unwrap_or(DEFAULT_SAMPLE_RATE as u64);
        let compensate = f.number("compensate")?.unwrap_or(1.0);

        if hop == 0 || hop > MAX_N_FFT {
            return Err(f.bad("hop", format!("= {hop}: the hop must be 1 to {MAX_N_FFT} samples (MDX-Net models use 1024)")));
        }
        if !(16..=MAX_N_FFT).contains(&n_fft) || n_fft % 2 != 0 {
            return Err(f.bad(n_fft_key, format!("= {n_fft}: the FFT size must be an even number from 16 to {MAX_N_FFT} (MDX-Net models use 5120 to 8192)")));
        }
        if n_fft < hop {
            return Err(f.bad(n_fft_key, format!("= {n_fft} is shorter than the hop ({hop} samples); the FFT size must be at least the hop")));
        }
        let bins = n_fft / 2 + 1;
        if dim_f == 0 || dim_f > bins {
            return Err(f.bad(dim_f_key, format!("= {dim_f}: an FFT of {n_fft} has {bins} bins; the model must see 1 to {bins} of them")));
        }
        if !(1000..=768_000).contains(&sample_rate) {
            return Err(f.bad("sample_rate", format!("= {sample_rate} Hz is not a usable sample rate (MDX-Net models use 44100)")));
        }
        if !compensate.is_finite() || compensate <= 0.0 || compensate > 10.0 {
            return Err(f.bad("compensate", format!("= {compensate}: the gain on the primary stem must be above 0 and at most 10 (usually about 1.0 to 1.1)")));
        }
        Ok(Self {
            path: path.to_path_buf(),
            name: f.text("name")?.filter(|s| !s.is_empty()),
            primary_stem,
            n_fft: n_fft as usize,
            hop: hop as usize,
            dim_f: dim_f as usize,
            dim_t: dim_t as usize,
            compensate: compensate as f32,
            sample_rate: sample_rate as u32,
            license: f.text("license")?,
            source: f.text("source")?,
            keys: SidecarKeys { n_fft: n_fft_key, dim_f: dim_f_key, dim_t: dim_t_key },
        })
    }

    /// STFT bins (`n_fft / 2 + 1`).
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// The second stem's name: what is left when the primary stem is taken out.
    pub fn other_stem(&self) -> String {
        other_stem_name(&self.primary_stem)
    }

    /// Timing of the separator this sidecar and `plan` give, before loading.
    pub fn timing(&self, plan: WindowPlan) -> ModelTiming {
        ModelTiming { sample_rate: self.sample_rate, hop: plan.advance * self.hop, delay: plan.delay(self.n_fft, self.hop) }
    }

    /// `dim_t` as the user wrote it, e.g. "`mdx_dim_t_set` = 8 (256 frames)".
    fn dim_t_written(&self) -> String {
        if self.keys.dim_t == KEY_DIM_T.1 {
            format!("`{}` = {} ({} frames)", self.keys.dim_t, self.dim_t.trailing_zeros(), self.dim_t)
        } else {
            format!("`{}` = {}", self.keys.dim_t, self.dim_t)
        }
    }

    fn file_name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string())
    }
}

/// The stem that is the mix minus `primary`.
pub fn other_stem_name(primary: &str) -> String {
    let p = primary.trim();
    match p.to_ascii_lowercase().as_str() {
        "vocals" | "vocal" | "voice" => "Instrumental".into(),
        "instrumental" | "instrument" | "instruments" | "accompaniment" => "Vocals".into(),
        _ => match p.strip_prefix("No ").or_else(|| p.strip_prefix("no ")) {
            Some(rest) if !rest.trim().is_empty() => rest.trim().to_string(),
            _ => format!("No {p}"),
        },
    }
}

impl Fields<'_> {
    /// A whole number that may be written our way or UVR's way.
    fn either(&self, (ours, uvr): (&'static str, &'static str)) -> Result<Option<(u64, &'static str)>, RuntimeError> {
        match (self.uint(ours)?, self.uint(uvr)?) {
            (Some(a), Some(b)) if a != b => Err(invalid(self.path, format!("keys `{ours}` = {a} and `{uvr}` = {b} disagree; keep one of them"))),
            (Some(a), _) => Ok(Some((a, ours))),
            (None, Some(b)) => Ok(Some((b, uvr))),
            (None, None) => Ok(None),
        }
    }

    /// Frames per window: ours directly, UVR's as a power of two.
    fn dim_t(&self) -> Result<Option<(u64, &'static str)>, RuntimeError> {
        let (ours, uvr) = KEY_DIM_T;
        let frames = match self.uint(ours)? {
            Some(t) if t == 0 || t > MAX_DIM_T => return Err(self.bad(ours, format!("= {t}: a window must be 1 to {MAX_DIM_T} frames (MDX-Net models use 256)"))),
            other => other,
        };
        let from_exponent = match self.uint(uvr)? {
            Some(e) if e == 0 || e > MAX_DIM_T_EXPONENT => {
                let hint = if e > MAX_DIM_T_EXPONENT { format!("; if {e} is the number of frames, write `dim_t = {e}` instead") } else { String::new() };
                return Err(self.bad(uvr, format!("= {e}: UVR stores dim_t as a power of two (8 means 2^8 = 256 frames), so it must be 1 to {MAX_DIM_T_EXPONENT}{hint}")));
            }
            other => other.map(|e| 1u64 << e),
        };
        match (frames, from_exponent) {
            (Some(a), Some(b)) if a != b => Err(invalid(self.path, format!("keys `{ours}` = {a} and `{uvr}` = {} ({b} frames) disagree; keep one of them", b.trailing_zeros()))),
            (Some(a), _) => Ok(Some((a, ours))),
            (None, Some(b)) => Ok(Some((b, uvr))),
            (None, None) => Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// One `.onnx` file found in a user models folder.
#[derive(Debug, Clone)]
pub struct UserModelEntry {
    /// The sidecar's `name`, else the file name without `.onnx`.
    pub name: String,
    pub onnx: PathBuf,
    /// The sidecar that was read (or that should exist, when it is missing).
    pub sidecar_path: PathBuf,
    /// The settings, or why the model cannot be used (missing or invalid
    /// sidecar); `to_string()` gives a message for the user.
    pub sidecar: Result<MdxSidecar, RuntimeError>,
}

impl UserModelEntry {
    /// Reads the sidecar next to `onnx`.
    pub fn from_onnx(onnx: &Path) -> Self {
        let stem = onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let (sidecar_path, sidecar) = read_sidecar_for(onnx);
        let name = sidecar.as_ref().ok().and_then(|s| s.name.clone()).unwrap_or(stem);
        Self { name, onnx: onnx.to_path_buf(), sidecar_path, sidecar }
    }

    pub fn is_usable(&self) -> bool {
        self.sidecar.is_ok()
    }

    /// Why this model cannot be used, for the user.
    pub fn error(&self) -> Option<String> {
        self.sidecar.as_ref().err().map(|e| e.to_string())
    }
}

/// Finds `<stem>.json` or `<stem>.toml` next to `onnx` and reads it.
fn read_sidecar_for(onnx: &Path) -> (PathBuf, Result<MdxSidecar, RuntimeError>) {
    let json = onnx.with_extension("json");
    let toml = onnx.with_extension("toml");
    let file = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match (json.is_file(), toml.is_file()) {
        (true, true) => {
            let why = format!("both {} and {} exist; keep one of them", file(&json), file(&toml));
            (json.clone(), Err(invalid(&json, why)))
        }
        (true, false) => (json.clone(), MdxSidecar::read(&json)),
        (false, true) => (toml.clone(), MdxSidecar::read(&toml)),
        (false, false) => {
            let why = format!(
                "is missing: put the model's settings next to it in {} (UVR's keys mdx_dim_f_set, mdx_dim_t_set, mdx_n_fft_scale_set, compensate, primary_stem) or {}",
                file(&json),
                file(&toml)
            );
            (json.clone(), Err(invalid(&json, why)))
        }
    }
}

/// The user models folders that exist, searched in this order:
/// every folder in `$MANIFOLD_USER_MODELS` (a path list), then
/// `<data folder>/user-models/` for every Manifold data folder
/// ([`store::data_dirs`]: `$MANIFOLD_DATA_DIR`, `manifold-data/` next to the
/// plugin, the per-user data folder).
pub fn user_model_dirs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(list) = std::env::var_os(USER_MODELS_ENV) {
        out.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
    }
    out.extend(store::data_dirs().into_iter().map(|d| d.join(USER_MODELS_DIR_NAME)));
    let mut seen: Vec<PathBuf> = Vec::new();
    out.retain(|d| {
        let key = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
        d.is_dir() && !seen.contains(&key) && {
            seen.push(key);
            true
        }
    });
    out
}

/// The folder to show or create for the user: the first entry of
/// `$MANIFOLD_USER_MODELS` if set, else `user-models/` in the per-user data
/// folder (`~/.local/share/manifold/user-models` on Linux). May not exist.
pub fn default_user_models_dir() -> Option<PathBuf> {
    if let Some(first) = std::env::var_os(USER_MODELS_ENV).and_then(|l| std::env::split_paths(&l).find(|p| !p.as_os_str().is_empty())) {
        return Some(first);
    }
    store::user_data_dir().map(|d| d.join(USER_MODELS_DIR_NAME))
}

/// Every `.onnx` file in the user models folders (and their direct
/// subfolders), with its sidecar or why it is unusable, sorted by name.
pub fn discover_user_models() -> Vec<UserModelEntry> {
    discover_in(&user_model_dirs())
}

/// As [`discover_user_models`], in the given folders.
pub fn discover_in(dirs: &[PathBuf]) -> Vec<UserModelEntry> {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        for path in sorted_dir(dir) {
            if path.is_dir() {
                files.extend(sorted_dir(&path).into_iter().filter(|p| is_onnx(p)));
            } else if is_onnx(&path) {
                files.push(path);
            }
        }
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    files.retain(|p| {
        let key = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        !seen.contains(&key) && {
            seen.push(key);
            true
        }
    });
    let mut entries: Vec<UserModelEntry> = files.iter().map(|p| UserModelEntry::from_onnx(p)).collect();
    entries.sort_by(|a, b| (a.name.to_lowercase(), &a.name, &a.onnx).cmp(&(b.name.to_lowercase(), &b.name, &b.onnx)));
    entries
}

// ---------------------------------------------------------------------------
// The net
// ---------------------------------------------------------------------------

/// An MDX-Net ONNX model. Worker thread.
pub struct MdxNet {
    session: Session,
    name: String,
    names: Vec<String>,
    device_note: String,
    sample_rate: u32,
    n_fft: usize,
    hop: usize,
    dim_f: usize,
    dim_t: usize,
    compensate: f32,
    /// `[1, 4, dim_f, dim_t]`.
    input: Vec<f32>,
}

impl MdxNet {
    /// Opens `onnx` and checks that its input and output are
    /// `[batch, 4, dim_f, dim_t]` float32 as `sidecar` says (dynamic
    /// dimensions accepted). `threads`: intra-op threads.
    pub fn load(onnx: &Path, sidecar: &MdxSidecar, name: &str, device: Device, threads: usize) -> Result<Self, RuntimeError> {
        let loaded = open_session_with_threads(onnx, device, threads)?;
        let session = loaded.session;
        check_signature(&session, sidecar).map_err(|reason| RuntimeError::ModelSignature { path: onnx.to_path_buf(), reason })?;
        Ok(Self {
            session,
            name: name.to_string(),
            names: vec![sidecar.primary_stem.clone(), sidecar.other_stem()],
            device_note: loaded.device_note,
            sample_rate: sidecar.sample_rate,
            n_fft: sidecar.n_fft,
            hop: sidecar.hop,
            dim_f: sidecar.dim_f,
            dim_t: sidecar.dim_t,
            compensate: sidecar.compensate,
            input: vec![0.0; NET_PLANES * sidecar.dim_f * sidecar.dim_t],
        })
    }

    pub fn dim_f(&self) -> usize {
        self.dim_f
    }

    pub fn dim_t(&self) -> usize {
        self.dim_t
    }
}

fn check_signature(session: &Session, sidecar: &MdxSidecar) -> Result<(), String> {
    let (inputs, outputs) = (session.inputs(), session.outputs());
    let listed = |o: &[Outlet]| o.iter().map(|o| format!("'{}'", o.name())).collect::<Vec<_>>().join(", ");
    if inputs.len() != 1 {
        return Err(format!("it has {} inputs ({}); an MDX-Net model has exactly one, [batch, 4, dim_f, dim_t]", inputs.len(), listed(inputs)));
    }
    if outputs.is_empty() {
        return Err("it has no outputs".into());
    }
    check_outlet("input", &inputs[0], sidecar)?;
    check_outlet("output", &outputs[0], sidecar)
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| if *d < 0 { "any".to_string() } else { d.to_string() }).collect();
    format!("[{}]", dims.join(", "))
}

fn check_outlet(role: &str, outlet: &Outlet, sc: &MdxSidecar) -> Result<(), String> {
    let name = outlet.name();
    let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
        return Err(format!("its {role} '{name}' is not a tensor; an MDX-Net model takes [batch, 4, dim_f, dim_t] float32"));
    };
    if *ty != TensorElementType::Float32 {
        return Err(format!("its {role} '{name}' holds {ty:?} values; MDX-Net models use float32"));
    }
    let shown = shape_text(shape);
    if shape.len() != 4 {
        return Err(format!("its {role} '{name}' has shape {shown}; MDX-Net models use [batch, 4, dim_f, dim_t]"));
    }
    let fits = |d: i64, want: usize| d < 0 || d as usize == want;
    if !fits(shape[0], 1) {
        return Err(format!("its {role} '{name}' has shape {shown}: a batch of {} (must be 1 or any)", shape[0]));
    }
    if !fits(shape[1], NET_PLANES) {
        return Err(format!(
            "its {role} '{name}' has shape {shown}: {} channels, where MDX-Net models have 4 (left and right, real and imaginary); this does not look like an MDX-Net model",
            shape[1]
        ));
    }
    let file = sc.file_name();
    if !fits(shape[2], sc.dim_f) {
        return Err(format!(
            "its {role} '{name}' has shape {shown}, {} frequency bins, but {file} says `{}` = {}; set `{}` = {} in {file}",
            shape[2], sc.keys.dim_f, sc.dim_f, sc.keys.dim_f, shape[2]
        ));
    }
    if !fits(shape[3], sc.dim_t) {
        let model = shape[3];
        let fix = if sc.keys.dim_t == KEY_DIM_T.1 && model > 0 && (model as u64).is_power_of_two() {
            format!("set `{}` = {} (2^{} = {model}) in {file}", sc.keys.dim_t, model.trailing_zeros(), model.trailing_zeros())
        } else {
            format!("set `dim_t` = {model} in {file}")
        };
        return Err(format!("its {role} '{name}' has shape {shown}, {model} frames, but {file} says {}; {fix}", sc.dim_t_written()));
    }
    Ok(())
}

impl SpectrogramNet for MdxNet {
    fn name(&self) -> &str {
        &self.name
    }
    fn stem_names(&self) -> &[String] {
        &self.names
    }
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }
    fn n_fft(&self) -> usize {
        self.n_fft
    }
    fn hop(&self) -> usize {
        self.hop
    }
    fn device_note(&self) -> &str {
        &self.device_note
    }

    fn separate(&mut self, spectra: &[Complex32], frames: usize, first: usize, count: usize, out: &mut [Complex32]) -> Result<(), String> {
        let (dim_f, dim_t, bins) = (self.dim_f, self.dim_t, self.n_fft / 2 + 1);
        if frames != dim_t {
            return Err(format!("a window of {frames} frames; this model takes {dim_t}"));
        }
        // [1, (channel, re/im), bin, frame]
        let plane = dim_f * dim_t;
        for ch in 0..2 {
            let (re, im) = (2 * ch * plane, (2 * ch + 1) * plane);
            for t in 0..frames {
                let row = &spectra[(ch * frames + t) * bins..(ch * frames + t) * bins + dim_f];
                for (b, x) in row.iter().enumerate() {
                    let x = if b < ZEROED_LOW_BINS { Complex32::default() } else { *x };
                    self.input[re + b * dim_t + t] = x.re;
                    self.input[im + b * dim_t + t] = x.im;
                }
            }
        }
        let e = |e: ort::Error| e.to_string();
        let input = TensorRef::from_array_view(([1usize, NET_PLANES, dim_f, dim_t], &self.input[..])).map_err(e)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(e)?;
        let (_, y) = outputs[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        if y.len() != NET_PLANES * plane {
            return Err(format!("the model returned {} values, expected {}", y.len(), NET_PLANES * plane));
        }
        let c = self.compensate;
        for ch in 0..2 {
            let (re, im) = (2 * ch * plane, (2 * ch + 1) * plane);
            for k in 0..count {
                let t = first + k;
                let mix = &spectra[(ch * frames + t) * bins..(ch * frames + t + 1) * bins];
                let p0 = (ch * count + k) * bins;
                let p1 = ((2 + ch) * count + k) * bins;
                for (b, m) in mix.iter().enumerate() {
                    let p = if b < dim_f { Complex32::new(y[re + b * dim_t + t], y[im + b * dim_t + t]) * c } else { Complex32::default() };
                    out[p0 + b] = p;
                    out[p1 + b] = m - p;
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

/// An MDX-Net model in the sliding-window pipeline.
pub type MdxSeparator = WindowedSeparator<MdxNet>;

/// A plan whose window is the model's `dim_t`: `advance` frames per hop
/// (clamped to 1..=dim_t), `lookahead` frames (clamped so they fit), no phase.
pub fn plan_for(dim_t: usize, advance: usize, lookahead: usize) -> WindowPlan {
    let window = dim_t.max(1);
    let advance = advance.clamp(1, window);
    WindowPlan { window, advance, lookahead: lookahead.min(window - advance), phase: 0 }
}

/// Loads a discovered model. `plan_for_dim_t` gets the model's `dim_t` and
/// returns the plan (e.g. `|t| plan_for(t, 16, 8)` or
/// [`WindowPlan::reference`]); its window is forced to `dim_t`.
/// `channels`: host channels (1 or 2); `threads`: intra-op threads.
pub fn load(entry: &UserModelEntry, plan_for_dim_t: impl FnOnce(usize) -> WindowPlan, channels: usize, device: Device, threads: usize) -> Result<MdxSeparator, RuntimeError> {
    let sidecar = entry.sidecar.as_ref().map_err(Clone::clone)?;
    let mut plan = plan_for_dim_t(sidecar.dim_t);
    plan.window = sidecar.dim_t;
    if !plan.is_valid() {
        return Err(RuntimeError::Inference(format!(
            "{}: the model's window of {} frames cannot hold {} frames per hop plus {} frames of lookahead",
            entry.name, sidecar.dim_t, plan.advance, plan.lookahead
        )));
    }
    let net = MdxNet::load(&entry.onnx, sidecar, &entry.name, device, threads)?;
    Ok(WindowedSeparator::new(net, plan, channels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<MdxSidecar, RuntimeError> {
        MdxSidecar::parse_json(text, Path::new("/models/Voc_FT.json"))
    }

    fn toml(text: &str) -> Result<MdxSidecar, RuntimeError> {
        MdxSidecar::parse_toml(text, Path::new("/models/Voc_FT.toml"))
    }

    /// The error's message; panics when parsing succeeded.
    fn message(r: Result<MdxSidecar, RuntimeError>) -> String {
        match r {
            Ok(s) => panic!("parsed although invalid: {s:?}"),
            Err(e @ RuntimeError::ManifestInvalid { .. }) => e.to_string(),
            Err(e) => panic!("wrong error kind: {e:?}"),
        }
    }

    const UVR: &str = r#"{"compensate": 1.021, "mdx_dim_f_set": 3072, "mdx_dim_t_set": 8, "mdx_n_fft_scale_set": 7680, "primary_stem": "Vocals"}"#;

    #[test]
    fn uvr_keys_in_json() {
        let s = json(UVR).unwrap();
        assert_eq!((s.n_fft, s.dim_f, s.dim_t, s.hop, s.sample_rate), (7680, 3072, 256, 1024, 44100));
        assert_eq!(s.primary_stem, "Vocals");
        assert!((s.compensate - 1.021).abs() < 1e-6);
        assert_eq!(s.keys, SidecarKeys { n_fft: "mdx_n_fft_scale_set", dim_f: "mdx_dim_f_set", dim_t: "mdx_dim_t_set" });
        assert_eq!(s.other_stem(), "Instrumental");
        assert_eq!(s.name, None);
        assert_eq!(s.path, Path::new("/models/Voc_FT.json"));
        // An entry of UVR's model_data.json copied with its hash key, extra keys ignored.
        let wrapped = format!(r#"{{"77d07b2667ddf05b9e3175941b4454a0": {}}}"#, UVR.replace('}', r#", "is_karaoke": false}"#));
        assert_eq!(json(&wrapped).unwrap(), s);
        // UVR's keys work in TOML as well.
        let t = MdxSidecar::parse_toml("compensate = 1.021\nmdx_dim_f_set = 3072\nmdx_dim_t_set = 8\nmdx_n_fft_scale_set = 7680\nprimary_stem = \"Vocals\"\n", Path::new("/models/Voc_FT.json")).unwrap();
        assert_eq!(t, s);
    }

    #[test]
    fn readable_keys_in_toml_with_defaults() {
        let s = toml(
            r#"
            name = "My Instrumental"
            primary_stem = "Instrumental"
            n_fft = 6144
            dim_f = 2048
            dim_t = 256
            license = "MIT"
            source = "https://example.org"
            "#,
        )
        .unwrap();
        assert_eq!((s.n_fft, s.dim_f, s.dim_t, s.hop, s.sample_rate, s.compensate), (6144, 2048, 256, 1024, 44100, 1.0));
        assert_eq!(s.name.as_deref(), Some("My Instrumental"));
        assert_eq!(s.license.as_deref(), Some("MIT"));
        assert_eq!(s.source.as_deref(), Some("https://example.org"));
        assert_eq!(s.other_stem(), "Vocals");
        assert_eq!(s.keys, SidecarKeys { n_fft: "n_fft", dim_f: "dim_f", dim_t: "dim_t" });
        let r = toml("primary_stem = \"Drums\"\nn_fft = 4096.0\ndim_f = 1024\ndim_t = 64\nhop = 512\nsample_rate = 48000\ncompensate = 2").unwrap();
        assert_eq!((r.n_fft, r.hop, r.sample_rate, r.compensate), (4096, 512, 48000, 2.0));
        assert_eq!(r.other_stem(), "No Drums");
        // Readable keys in JSON, and both spellings when they agree.
        let j = json(r#"{"primary_stem": "Bass", "n_fft": 4096, "dim_f": 1024, "dim_t": 128, "mdx_dim_t_set": 7}"#).unwrap();
        assert_eq!(j.dim_t, 128);
    }

    #[test]
    fn missing_keys_are_named() {
        for (key, text) in [
            ("primary_stem", r#"{"mdx_dim_f_set": 3072, "mdx_dim_t_set": 8, "mdx_n_fft_scale_set": 7680}"#),
            ("n_fft", r#"{"mdx_dim_f_set": 3072, "mdx_dim_t_set": 8, "primary_stem": "Vocals"}"#),
            ("dim_f", r#"{"mdx_dim_t_set": 8, "mdx_n_fft_scale_set": 7680, "primary_stem": "Vocals"}"#),
            ("dim_t", r#"{"mdx_dim_f_set": 3072, "mdx_n_fft_scale_set": 7680, "primary_stem": "Vocals"}"#),
        ] {
            let m = message(json(text));
            assert!(m.contains(&format!("missing key `{key}`")), "{m}");
            assert!(m.contains("Voc_FT.json"), "{m}");
        }
        assert!(message(toml("")).contains("missing key `primary_stem`"));
    }

    #[test]
    fn nonsense_values_are_explained() {
        let base = |key: &str, value: &str| {
            let mut v: serde_json::Value = serde_json::from_str(UVR).unwrap();
            v[key] = serde_json::from_str(value).unwrap();
            message(json(&v.to_string()))
        };
        let cases = [
            ("mdx_dim_f_set", r#""lots""#, "key `mdx_dim_f_set` must be a whole number without quotes, not \"lots\""),
            ("mdx_dim_f_set", "-3", "key `mdx_dim_f_set` must be a whole number"),
            ("mdx_dim_f_set", "5000", "key `mdx_dim_f_set` = 5000: an FFT of 7680 has 3841 bins"),
            ("mdx_dim_f_set", "0", "key `mdx_dim_f_set` = 0"),
            ("mdx_dim_f_set", "30.5", "key `mdx_dim_f_set` must be a whole number"),
            ("mdx_dim_t_set", "256", "if 256 is the number of frames, write `dim_t = 256`"),
            ("mdx_dim_t_set", "0", "key `mdx_dim_t_set` = 0"),
            ("mdx_n_fft_scale_set", "7681", "key `mdx_n_fft_scale_set` = 7681: the FFT size must be an even number"),
            ("mdx_n_fft_scale_set", "512", "key `mdx_n_fft_scale_set` = 512 is shorter than the hop (1024 samples)"),
            ("compensate", "0", "key `compensate` = 0"),
            ("compensate", "-1.1", "key `compensate` = -1.1"),
            ("compensate", r#""1.02""#, "key `compensate` must be a number without quotes"),
            ("primary_stem", "3", "key `primary_stem` must be text in quotes, not 3"),
            ("primary_stem", r#""  ""#, "key `primary_stem` is empty"),
            ("primary_stem", "null", "key `primary_stem` must be text in quotes, not null"),
        ];
        for (key, value, want) in cases {
            let m = base(key, value);
            assert!(m.contains(want), "{key} = {value}: {m}");
        }
        let m = message(toml("primary_stem = \"Vocals\"\nn_fft = 6144\ndim_f = 2048\ndim_t = 0"));
        assert!(m.contains("key `dim_t` = 0"), "{m}");
        let m = message(toml("primary_stem = \"Vocals\"\nn_fft = 6144\ndim_f = 2048\ndim_t = 256\nsample_rate = 0"));
        assert!(m.contains("key `sample_rate` = 0"), "{m}");
        let m = message(toml("primary_stem = \"Vocals\"\nn_fft = 6144\ndim_f = 2048\ndim_t = 256\nhop = [1]"));
        assert!(m.contains("key `hop` must be a whole number of at least 0, not a list"), "{m}");
        let m = message(json(r#"{"primary_stem": "Vocals", "n_fft": 6144, "mdx_n_fft_scale_set": 7680, "dim_f": 2048, "dim_t": 256}"#));
        assert!(m.contains("keys `n_fft` = 6144 and `mdx_n_fft_scale_set` = 7680 disagree"), "{m}");
        let m = message(json(r#"{"primary_stem": "Vocals", "n_fft": 6144, "dim_f": 2048, "dim_t": 256, "mdx_dim_t_set": 9}"#));
        assert!(m.contains("keys `dim_t` = 256 and `mdx_dim_t_set` = 9 (512 frames) disagree"), "{m}");
        // Not a sidecar at all.
        assert!(message(json("[1, 2]")).contains("must hold one JSON object"));
        assert!(message(json("{\"primary_stem\": ")).contains("is not valid JSON"));
        assert!(message(toml("primary_stem = ")).contains("is not valid TOML"));
        assert!(message(json(UVR.replace("Vocals", "Vocals\"").as_str())).contains("is not valid JSON"));
    }

    #[test]
    fn second_stem_names() {
        for (p, o) in [("Vocals", "Instrumental"), ("instrumental", "Vocals"), ("Other", "No Other"), ("No Noise", "Noise"), ("Reverb", "No Reverb")] {
            assert_eq!(other_stem_name(p), o);
        }
    }

    #[test]
    fn plans_fit_the_window() {
        assert_eq!(plan_for(256, 16, 8), WindowPlan { window: 256, advance: 16, lookahead: 8, phase: 0 });
        assert_eq!(plan_for(32, 40, 8), WindowPlan { window: 32, advance: 32, lookahead: 0, phase: 0 });
        assert_eq!(plan_for(32, 0, 100), WindowPlan { window: 32, advance: 1, lookahead: 31, phase: 0 });
        assert!(plan_for(1, 1, 1).is_valid());
    }

    #[test]
    fn discovery_reads_sidecars_and_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Discovery does not open the models, so any bytes will do.
        for f in ["b_uvr.onnx", "a_ours.onnx", "c_orphan.onnx", "d_both.onnx", "sub/e_nested.ONNX"] {
            std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
            std::fs::write(d.join(f), b"not a model").unwrap();
        }
        std::fs::write(d.join("b_uvr.json"), UVR).unwrap();
        std::fs::write(d.join("a_ours.toml"), "name = \"Zebra\"\nprimary_stem = \"Vocals\"\nn_fft = 6144\ndim_f = 2048\ndim_t = 256\n").unwrap();
        std::fs::write(d.join("d_both.json"), UVR).unwrap();
        std::fs::write(d.join("d_both.toml"), "").unwrap();
        std::fs::write(d.join("sub/e_nested.json"), UVR.replace("8,", "\"eight\",")).unwrap();
        std::fs::write(d.join("notes.json"), UVR).unwrap();
        let found = discover_in(&[d.to_path_buf(), d.to_path_buf()]);
        let names: Vec<&str> = found.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["b_uvr", "c_orphan", "d_both", "e_nested", "Zebra"]);
        assert!(found[0].is_usable() && found[4].is_usable());
        assert_eq!(found[0].sidecar.as_ref().unwrap().dim_t, 256);
        assert_eq!(found[4].sidecar_path, d.join("a_ours.toml"));
        let orphan = found[1].error().unwrap();
        assert!(orphan.contains("c_orphan.json") && orphan.contains("c_orphan.toml") && orphan.contains("is missing"), "{orphan}");
        assert!(found[2].error().unwrap().contains("keep one of them"));
        let nested = found[3].error().unwrap();
        assert!(nested.contains("key `mdx_dim_t_set`") && nested.contains("e_nested.json"), "{nested}");
        // An unusable entry refuses to load with the same message.
        let err = load(&found[1], |t| plan_for(t, 1, 0), 2, Device::Cpu, 1).err().unwrap();
        assert_eq!(err.to_string(), orphan);
    }
}
