//! Users' RVC voice models (Retrieval-based Voice Conversion, exported to
//! ONNX) as a streaming [`HopModel`]. Discovery and loading: main/worker
//! threads; [`RvcVoice::process_hop`]: worker.
//!
//! # Files
//!
//! A user drops `<name>.onnx` (the voice model, as exported by RVC's
//! `infer/modules/onnx/export.py` or by w-okada's voice changer) into a user
//! models folder ([`user_model_dirs`], the same folders as user MDX-Net
//! models, searched the same way: the folder and its direct subfolders).
//! Discovery reads only the ONNX file's header (graph input names and
//! `metadata_props`, without loading the weights) and lists the files whose
//! graph looks like a voice model: an input `phone` or `feats` and an output
//! `audio`. Content encoders, pitch models and MDX-Net models in the same
//! folders are not listed.
//!
//! Settings come from, in this order: a sidecar `<name>.toml` or
//! `<name>.json` ([`RvcSidecar`]), w-okada's JSON in the ONNX metadata (key
//! `metadata`: `samplingRate`, `f0`, `embChannels`), and the graph itself
//! (feature width, whether it takes pitch). Only the sample rate cannot be
//! read off the graph. The content encoder is the sidecar's `encoder` file,
//! else the usual name for the feature width (`vec-768-layer-12.onnx` for
//! v2, `vec-256-layer-9.onnx` for v1), looked for next to the model, then in
//! every user models folder. An optional RMVPE pitch model (`pitch_model`,
//! default `rmvpe.onnx`, same search) can replace the built-in tracker.
//!
//! # What the models compute
//!
//! * Content encoder (HuBERT / ContentVec): 16 kHz waveform, `[1, 1, N]` or
//!   `[1, N]`, in; features at 50 Hz out, `[1, C, F]` or `[1, F, C]` (the
//!   layout is found at load by a trial run). Each 50 Hz frame is repeated
//!   twice to give the voice model 100 Hz frames (as RVC does); when the
//!   encoder returns one frame short (HuBERT's 400-sample window), the last
//!   frame is repeated.
//! * Voice model: `phone`/`feats` `[1, T, 256 | 768]`, `phone_lengths`/`p_len`
//!   `[1]` int64, `pitch` `[1, T]` int64 (RVC's coarse pitch: mel-scaled F0,
//!   1..=255, 1 when unvoiced), `pitchf` `[1, T]` (F0 in Hz, 0 unvoiced),
//!   `ds`/`sid` `[1]` int64 (speaker), `rnd` `[1, 192, T]` (noise; RVC's own
//!   export only) -> `audio` `[1, 1, T * rate / 100]`. Models without pitch
//!   have no `pitch`/`pitchf`. The noise is a fixed pseudo-random function of
//!   the absolute frame index, so overlapping windows see the same noise.
//! * RMVPE (w-okada's export): `waveform` `[1, N]` 16 kHz, `threshold` `[1]`
//!   -> `pitchf` `[1, ~N / 160]`, frame `j` at 16 kHz sample `160 j`.
//!
//! # Streaming
//!
//! The model rate `R` (the voice model's) is this `HopModel`'s rate; a
//! `HostRateStream` converts from and to the host rate. Stereo input is
//! converted as its mid (mean of the channels) and the converted mono voice
//! is written to every output channel.
//!
//! Every hop of `block` frames (10 ms each) the converter renders a window
//! of `W` frames that ends `L` frames before the newest input (`L` covers
//! the 16 kHz resampler's delay and the pitch tracker's delay), so the voice
//! model always sees `context` frames of left context. Of the window's
//! output, the last `S + X + hop` samples are used, `S` = SOLA search range
//! (10 ms, as RVC's realtime GUI), `X` = crossfade (40 ms by default, RVC
//! caps its SOLA buffer at 40 ms): the offset `o` in `0..=S` whose `X`
//! samples best match (normalised cross-correlation) the previous hop's
//! held-back tail is chosen, those `X` samples are crossfaded (sin² fades)
//! with the tail, `hop` samples are output and the next `X` are held back.
//!
//! Delay: `L · R/100 + X + S/2` samples, fixed. The content of a hop is
//! shifted by `o − S/2`, at most ±S/2 (±5 ms), from that nominal delay — the
//! price of SOLA's seamless joins; after silence (no tail to match) the
//! offset is exactly `S/2`.
//!
//! A hop whose inference fails or returns non-finite values plays the dry
//! mid, delayed by the same amount, counts a fault and restarts the
//! crossfade state.
//!
//! # Allocation
//!
//! Every buffer is allocated in `load`. Per hop, `ort` allocates: the input
//! list of `session.run` (a `Vec` of names and values), the output values
//! (ONNX Runtime's arena, reused between runs of equal shapes), and the
//! output name map. No other allocation happens per hop.

use super::separate_mdx::user_model_dirs;
use super::stream::ModelTiming;
use super::HopModel;
use crate::dsp::loudness::OutputLevel;
use crate::dsp::pitch::{PitchTracker, F0_MAX_HZ, F0_MIN_HZ};
use crate::dsp::resample::ChunkResampler;
use crate::dsp::sanitize::all_finite;
use crate::runtime::onnx::{open_session_with_threads, Device};
use crate::runtime::sidecar::{extension, invalid, is_onnx, sorted_dir, Fields, Raw};
use crate::runtime::RuntimeError;
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// The encoder's rate.
pub const ENCODER_RATE: u32 = 16_000;
/// Frames per second of the voice model (10 ms frames).
pub const FRAME_RATE: u32 = 100;
/// Rates RVC models are trained at.
pub const MODEL_RATES: [u32; 3] = [32_000, 40_000, 48_000];
/// Default content encoder file per feature width.
pub const DEFAULT_ENCODER_V1: &str = "vec-256-layer-9.onnx";
pub const DEFAULT_ENCODER_V2: &str = "vec-768-layer-12.onnx";
/// Default RMVPE file.
pub const DEFAULT_PITCH_MODEL: &str = "rmvpe.onnx";
/// RMVPE's voicing threshold (RVC's pipeline uses 0.03).
pub const RMVPE_THRESHOLD: f32 = 0.03;
const NOISE_CHANNELS: usize = 192;
const SAMPLES_16K_PER_FRAME: usize = (ENCODER_RATE / FRAME_RATE) as usize;

// ---------------------------------------------------------------------------
// Sidecar
// ---------------------------------------------------------------------------

/// The settings file next to a voice model: `<name>.toml` or `<name>.json`.
/// Every key is optional; what is missing is read from the ONNX metadata or
/// the graph.
///
/// | key            | meaning                                                  |
/// |----------------|----------------------------------------------------------|
/// | `sample_rate`  | the model's rate: 32000, 40000 or 48000                  |
/// | `version`      | `"v1"` (256 features) or `"v2"` (768 features)           |
/// | `emb_channels` | feature width, 256 or 768 (instead of `version`)         |
/// | `f0`           | `true` if the model takes pitch                          |
/// | `encoder`      | content encoder file name (next to the model or in a user models folder) |
/// | `pitch_model`  | RMVPE ONNX file name (optional)                          |
/// | `speakers`     | number of speakers (ids 0..speakers)                     |
/// | `name`, `license`, `source` | shown to the user                           |
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RvcSidecar {
    pub path: PathBuf,
    pub name: Option<String>,
    pub sample_rate: Option<u32>,
    /// Feature width from `version` or `emb_channels`, with the key it came from.
    pub emb_channels: Option<(usize, &'static str)>,
    pub f0: Option<bool>,
    pub encoder: Option<String>,
    pub pitch_model: Option<String>,
    pub speakers: Option<u32>,
    pub license: Option<String>,
    pub source: Option<String>,
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| p.display().to_string())
}

impl RvcSidecar {
    /// Reads a `.json` or `.toml` sidecar.
    pub fn read(path: &Path) -> Result<Self, RuntimeError> {
        let text = std::fs::read_to_string(path).map_err(|e| invalid(path, format!("cannot be read: {e}")))?;
        match extension(path).as_deref() {
            Some("json") => Self::parse_json(&text, path),
            Some("toml") => Self::parse_toml(&text, path),
            _ => Err(invalid(path, "a settings file must end in .json or .toml".into())),
        }
    }

    pub fn parse_json(text: &str, path: &Path) -> Result<Self, RuntimeError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| invalid(path, format!("is not valid JSON: {e}")))?;
        let serde_json::Value::Object(table) = value else {
            return Err(invalid(path, "must hold one JSON object, like { \"sample_rate\": 40000, \"version\": \"v2\" }".into()));
        };
        let map = table.iter().map(|(k, v)| (k.clone(), Raw::from_json(v))).collect();
        Self::from_fields(&map, path)
    }

    pub fn parse_toml(text: &str, path: &Path) -> Result<Self, RuntimeError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| invalid(path, format!("is not valid TOML: {}", e.message())))?;
        let map = table.iter().map(|(k, v)| (k.clone(), Raw::from_toml(v))).collect();
        Self::from_fields(&map, path)
    }

    fn from_fields(map: &BTreeMap<String, Raw>, path: &Path) -> Result<Self, RuntimeError> {
        let f = Fields { map, path };
        let sample_rate = match f.uint("sample_rate")? {
            Some(r) if !MODEL_RATES.contains(&(r as u32)) || r > u32::MAX as u64 => {
                return Err(f.bad("sample_rate", format!("= {r}: RVC models run at 32000, 40000 or 48000 Hz")));
            }
            r => r.map(|r| r as u32),
        };
        let from_version = match f.text("version")?.as_deref() {
            None => None,
            Some("v1" | "V1" | "1") => Some(256usize),
            Some("v2" | "V2" | "2") => Some(768),
            Some(other) => return Err(f.bad("version", format!("= {other:?}: must be \"v1\" (256 features) or \"v2\" (768 features)"))),
        };
        let from_channels = match f.uint("emb_channels")? {
            Some(c) if c != 256 && c != 768 => return Err(f.bad("emb_channels", format!("= {c}: RVC models take 256 (v1) or 768 (v2) features"))),
            c => c.map(|c| c as usize),
        };
        let emb_channels = match (from_version, from_channels) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(path, format!("keys `version` ({a} features) and `emb_channels` = {b} disagree; keep one of them")));
            }
            (Some(a), _) => Some((a, "version")),
            (None, Some(b)) => Some((b, "emb_channels")),
            (None, None) => None,
        };
        let speakers = match f.uint("speakers")? {
            Some(0) => return Err(f.bad("speakers", "= 0: a model has at least one speaker")),
            Some(n) => Some(n.min(u32::MAX as u64) as u32),
            None => None,
        };
        let file_key = |key: &str| -> Result<Option<String>, RuntimeError> {
            match f.text(key)? {
                Some(s) if s.is_empty() => Err(f.bad(key, "is empty; name a file, e.g. \"vec-768-layer-12.onnx\"")),
                other => Ok(other),
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            name: f.text("name")?.filter(|s| !s.is_empty()),
            sample_rate,
            emb_channels,
            f0: f.boolean("f0")?,
            encoder: file_key("encoder")?,
            pitch_model: file_key("pitch_model")?,
            speakers,
            license: f.text("license")?,
            source: f.text("source")?,
        })
    }
}

// ---------------------------------------------------------------------------
// ONNX header (without loading the weights)
// ---------------------------------------------------------------------------

/// What discovery reads from an ONNX file: graph input and output names and
/// the model's `metadata_props`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnnxHeader {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub metadata: Vec<(String, String)>,
}

struct Proto<R> {
    r: R,
    pos: u64,
}

impl<R: Read + Seek> Proto<R> {
    fn byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }
    fn varint(&mut self) -> std::io::Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad varint"))
    }
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        self.r.seek(std::io::SeekFrom::Current(n as i64))?;
        self.pos += n;
        Ok(())
    }
    fn bytes(&mut self, n: u64) -> std::io::Result<Vec<u8>> {
        if n > 16 << 20 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "field too long"));
        }
        let mut v = vec![0u8; n as usize];
        self.r.read_exact(&mut v)?;
        self.pos += n;
        Ok(v)
    }
    /// Calls `f(field, length)` for every length-delimited field up to `end`
    /// (`f` must consume exactly `length` bytes); skips the others.
    fn fields(&mut self, end: u64, f: &mut dyn FnMut(&mut Self, u64, u64) -> std::io::Result<()>) -> std::io::Result<()> {
        while self.pos < end {
            let key = self.varint()?;
            let (field, wire) = (key >> 3, key & 7);
            match wire {
                0 => {
                    self.varint()?;
                }
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let len = self.varint()?;
                    let stop = self.pos + len;
                    f(self, field, len)?;
                    if self.pos != stop {
                        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "field overrun"));
                    }
                }
                _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not an ONNX file")),
            }
        }
        Ok(())
    }
    /// Field 1 (a name) of the message of `len` bytes.
    fn name_of(&mut self, len: u64) -> std::io::Result<String> {
        let end = self.pos + len;
        let mut name = String::new();
        self.fields(end, &mut |p, field, len| {
            if field == 1 {
                name = String::from_utf8_lossy(&p.bytes(len)?).into_owned();
                Ok(())
            } else {
                p.skip(len)
            }
        })?;
        Ok(name)
    }
}

impl OnnxHeader {
    /// Reads the header of an ONNX file, seeking past weights.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let size = file.metadata()?.len();
        let mut p = Proto { r: BufReader::with_capacity(8192, file), pos: 0 };
        let mut h = OnnxHeader::default();
        p.fields(size, &mut |p, field, len| match field {
            // ModelProto.graph
            7 => {
                let end = p.pos + len;
                p.fields(end, &mut |p, field, len| match field {
                    11 => {
                        h.inputs.push(p.name_of(len)?);
                        Ok(())
                    }
                    12 => {
                        h.outputs.push(p.name_of(len)?);
                        Ok(())
                    }
                    _ => p.skip(len),
                })
            }
            // ModelProto.metadata_props: StringStringEntryProto { key = 1, value = 2 }
            14 => {
                let end = p.pos + len;
                let (mut k, mut v) = (String::new(), String::new());
                p.fields(end, &mut |p, field, len| {
                    let s = String::from_utf8_lossy(&p.bytes(len)?).into_owned();
                    match field {
                        1 => k = s,
                        2 => v = s,
                        _ => {}
                    }
                    Ok(())
                })?;
                h.metadata.push((k, v));
                Ok(())
            }
            _ => p.skip(len),
        })?;
        // Initializers listed as inputs (old exporters) are not inputs we feed.
        Ok(h)
    }

    /// Whether the graph looks like an RVC voice model.
    pub fn is_voice_model(&self) -> bool {
        self.inputs.iter().any(|n| n == "phone" || n == "feats") && self.outputs.iter().any(|n| n == "audio")
    }

    fn metadata_json(&self) -> Option<serde_json::Value> {
        self.metadata.iter().find(|(k, _)| k == "metadata").and_then(|(_, v)| serde_json::from_str(v).ok())
    }
}

// ---------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------

/// A voice model's settings, resolved from sidecar, metadata and graph.
#[derive(Debug, Clone, PartialEq)]
pub struct RvcSettings {
    pub sample_rate: u32,
    /// Feature width if the sidecar or metadata says (else read at load).
    pub emb_channels: Option<usize>,
    /// Whether the model takes pitch (from the graph's inputs).
    pub f0: bool,
    pub encoder: PathBuf,
    /// The RMVPE file, if one was found.
    pub pitch_model: Option<PathBuf>,
    pub speakers: Option<u32>,
    pub license: Option<String>,
    pub source: Option<String>,
    /// The sidecar that was read, if any.
    pub sidecar: Option<RvcSidecar>,
}

/// One voice model found in a user models folder.
#[derive(Debug, Clone)]
pub struct RvcModelEntry {
    /// The sidecar's `name`, else the file name without `.onnx`.
    pub name: String,
    pub onnx: PathBuf,
    /// The sidecar (read, or where one may be written: `<name>.toml`).
    pub sidecar_path: PathBuf,
    pub settings: Result<RvcSettings, RuntimeError>,
}

impl RvcModelEntry {
    pub fn is_usable(&self) -> bool {
        self.settings.is_ok()
    }
    /// Why this model cannot be used, for the user.
    pub fn error(&self) -> Option<String> {
        self.settings.as_ref().err().map(|e| e.to_string())
    }
    /// The converter's timing with `options`, before loading (main thread).
    pub fn timing(&self, options: RvcOptions) -> Result<ModelTiming, RuntimeError> {
        let s = self.settings.as_ref().map_err(Clone::clone)?;
        Plan::new(s.sample_rate, options).map(|p| p.timing())
    }
}

/// Every RVC voice model in the user models folders, sorted by name.
pub fn discover_voice_models() -> Vec<RvcModelEntry> {
    discover_voice_models_in(&user_model_dirs())
}

/// As [`discover_voice_models`], in the given folders (which are also where
/// encoders and pitch models are looked for).
pub fn discover_voice_models_in(dirs: &[PathBuf]) -> Vec<RvcModelEntry> {
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
    let mut out: Vec<RvcModelEntry> = files
        .iter()
        .filter_map(|p| {
            let header = OnnxHeader::read(p).ok()?;
            header.is_voice_model().then(|| entry_for(p, &header, dirs))
        })
        .collect();
    out.sort_by(|a, b| (a.name.to_lowercase(), &a.name, &a.onnx).cmp(&(b.name.to_lowercase(), &b.name, &b.onnx)));
    out
}

/// The entry for one voice model file (header already read).
pub fn entry_for(onnx: &Path, header: &OnnxHeader, dirs: &[PathBuf]) -> RvcModelEntry {
    let stem = onnx.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let (json, toml) = (onnx.with_extension("json"), onnx.with_extension("toml"));
    let sidecar: Result<Option<RvcSidecar>, RuntimeError> = match (json.is_file(), toml.is_file()) {
        (true, true) => Err(invalid(&json, format!("both {} and {} exist; keep one of them", file_name(&json), file_name(&toml)))),
        (true, false) => RvcSidecar::read(&json).map(Some),
        (false, true) => RvcSidecar::read(&toml).map(Some),
        (false, false) => Ok(None),
    };
    let sidecar_path = match &sidecar {
        Ok(Some(s)) => s.path.clone(),
        _ if json.is_file() => json.clone(),
        _ => toml.clone(),
    };
    let settings = sidecar.and_then(|sc| resolve(onnx, header, sc, &sidecar_path, dirs));
    let name = settings.as_ref().ok().and_then(|s| s.sidecar.as_ref()).and_then(|s| s.name.clone()).unwrap_or(stem);
    RvcModelEntry { name, onnx: onnx.to_path_buf(), sidecar_path, settings }
}

fn resolve(onnx: &Path, header: &OnnxHeader, sidecar: Option<RvcSidecar>, sidecar_path: &Path, dirs: &[PathBuf]) -> Result<RvcSettings, RuntimeError> {
    let meta = header.metadata_json();
    let meta_u = |k: &str| meta.as_ref().and_then(|m| m.get(k)).and_then(|v| v.as_u64());
    let sc = sidecar.clone().unwrap_or_default();
    let graph_f0 = header.inputs.iter().any(|n| n == "pitchf");
    let sample_rate = match (sc.sample_rate, meta_u("samplingRate")) {
        (Some(r), _) => r,
        (None, Some(r)) if MODEL_RATES.contains(&(r as u32)) => r as u32,
        (None, Some(r)) => {
            return Err(invalid(sidecar_path, format!("{}'s metadata says samplingRate = {r}, which RVC does not use; write `sample_rate` = 32000, 40000 or 48000 in {}", file_name(onnx), file_name(sidecar_path))));
        }
        (None, None) => {
            return Err(invalid(
                sidecar_path,
                format!(
                    "missing key `sample_rate`: {} does not say its sample rate; write `sample_rate = 40000` (or 32000, 48000: the rate the model was trained at) in {}",
                    file_name(onnx),
                    file_name(sidecar_path)
                ),
            ));
        }
    };
    let emb_channels = sc.emb_channels.map(|(c, _)| c).or_else(|| meta_u("embChannels").map(|c| c as usize));
    if let Some(f0) = sc.f0 {
        if f0 != graph_f0 {
            let has = if graph_f0 { "takes pitch (inputs pitch, pitchf)" } else { "takes no pitch" };
            return Err(invalid(sidecar_path, format!("key `f0` = {f0}, but {} {has}; set `f0 = {graph_f0}` or remove it", file_name(onnx))));
        }
    }
    let search: Vec<PathBuf> = onnx.parent().map(Path::to_path_buf).into_iter().chain(dirs.iter().cloned()).collect();
    let find = |name: &str| search.iter().map(|d| d.join(name)).find(|p| p.is_file());
    let searched = || search.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    let encoder = match &sc.encoder {
        Some(name) => find(name).ok_or_else(|| {
            invalid(sidecar_path, format!("key `encoder` = {name:?}: no such file (looked in {}); put the content encoder there or fix the name", searched()))
        })?,
        None => {
            let width = emb_channels.unwrap_or(768);
            let default = if width == 256 { DEFAULT_ENCODER_V1 } else { DEFAULT_ENCODER_V2 };
            find(default).ok_or_else(|| {
                invalid(
                    sidecar_path,
                    format!(
                        "{} needs a content encoder with {width} features: put {default} next to it or in a user models folder (looked in {}), or name yours with the key `encoder` in {}",
                        file_name(onnx),
                        searched(),
                        file_name(sidecar_path)
                    ),
                )
            })?
        }
    };
    let pitch_model = match &sc.pitch_model {
        Some(name) => Some(find(name).ok_or_else(|| invalid(sidecar_path, format!("key `pitch_model` = {name:?}: no such file (looked in {})", searched())))?),
        None => find(DEFAULT_PITCH_MODEL),
    };
    Ok(RvcSettings {
        sample_rate,
        emb_channels,
        f0: graph_f0,
        encoder,
        pitch_model: if graph_f0 { pitch_model } else { None },
        speakers: sc.speakers,
        license: sc.license.clone(),
        source: sc.source.clone(),
        sidecar,
    })
}

// ---------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------

/// Streaming settings, in 10 ms frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RvcOptions {
    /// Frames converted per hop (the hop is `block * rate / 100` samples).
    pub block: usize,
    /// Frames of left context the voice model sees before the new block.
    pub context: usize,
    /// Crossfade between blocks (RVC caps its SOLA buffer at 4 frames).
    pub crossfade: usize,
    /// The built-in pitch tracker's look-ahead in frames (0 to 3).
    pub pitch_lookahead: usize,
    /// Intra-op threads.
    pub threads: usize,
}

impl Default for RvcOptions {
    fn default() -> Self {
        Self { block: 10, context: 20, crossfade: 4, pitch_lookahead: 1, threads: 1 }
    }
}

/// Sizes derived from the rate and the options.
#[derive(Debug, Clone, Copy)]
struct Plan {
    rate: u32,
    /// Samples per 10 ms frame at the model rate.
    fr: usize,
    block: usize,
    hop: usize,
    /// Window in frames (even, so 50 Hz frames tile it).
    window: usize,
    /// Frames between the window end and the newest input.
    lookahead: usize,
    crossfade: usize,
    search: usize,
    resampler_delay: usize,
    pitch_delay: usize,
}

impl Plan {
    fn new(rate: u32, o: RvcOptions) -> Result<Self, RuntimeError> {
        if !MODEL_RATES.contains(&rate) {
            return Err(RuntimeError::Inference(format!("an RVC model at {rate} Hz; RVC models run at 32000, 40000 or 48000 Hz")));
        }
        if o.block < 2 || o.crossfade < 1 || o.crossfade >= o.block || o.pitch_lookahead > 3 {
            return Err(RuntimeError::Inference(format!("unusable RVC streaming options {o:?}: need block >= 2, 1 <= crossfade < block, pitch_lookahead <= 3")));
        }
        let fr = (rate / FRAME_RATE) as usize;
        let resampler = ChunkResampler::new(rate, ENCODER_RATE, fr, 1).map_err(|e| RuntimeError::Inference(e.to_string()))?;
        let resampler_delay = resampler.delay();
        let pitch_delay = PitchTracker::with_lookahead(rate, o.pitch_lookahead).delay_hops();
        let lookahead = pitch_delay.max(resampler_delay.div_ceil(SAMPLES_16K_PER_FRAME));
        let search = fr;
        let crossfade = o.crossfade * fr;
        let rendered = o.block + o.crossfade + 1;
        let mut window = o.context + rendered;
        window += window % 2;
        Ok(Self { rate, fr, block: o.block, hop: o.block * fr, window, lookahead, crossfade, search, resampler_delay, pitch_delay })
    }

    /// Samples of the window's output that are used: search + crossfade + hop.
    fn rendered(&self) -> usize {
        self.search + self.crossfade + self.hop
    }

    fn delay(&self) -> usize {
        self.lookahead * self.fr + self.crossfade + self.search / 2
    }

    /// The whole delay: conversion, then the output level stage.
    fn timing(&self) -> ModelTiming {
        ModelTiming { sample_rate: self.rate, hop: self.hop, delay: self.delay() + OutputLevel::delay_at(self.rate) }
    }
}

// ---------------------------------------------------------------------------
// The converter
// ---------------------------------------------------------------------------

/// Where F0 comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PitchSource {
    /// The project's streaming tracker (`dsp::pitch`).
    Tracker,
    /// The user's RMVPE ONNX model.
    Rmvpe,
}

struct VoiceNames {
    feats: String,
    lengths: String,
    sid: String,
    pitch: Option<(String, String)>,
    rnd: Option<String>,
}

struct Encoder {
    session: Session,
    rank3: bool,
    channels_first: bool,
}

struct Rmvpe {
    session: Session,
    input: String,
    threshold: Option<String>,
}

/// A user's RVC voice model, streaming. Worker thread.
pub struct RvcVoice {
    name: String,
    device_note: String,
    voice: Session,
    names: VoiceNames,
    encoder: Encoder,
    rmvpe: Option<Rmvpe>,
    plan: Plan,
    emb: usize,
    channels: usize,
    speakers: Option<u32>,
    // controls
    transpose: f32,
    speaker: i64,
    source: PitchSource,
    // streaming state
    down: ChunkResampler,
    tracker: PitchTracker,
    /// 16 kHz history, the newest sample last.
    hist16: Vec<f32>,
    /// Tracker F0 per frame, the newest frame last.
    f0_hist: Vec<f32>,
    /// Tracker F0 of the window's frames.
    f0_window: Vec<f32>,
    /// Dry (input) history per channel: `delay + hop` samples, planar.
    dry: Vec<f32>,
    /// True-peak limiter (last stage; the model's own level is kept).
    level: OutputLevel,
    tail: Vec<f32>,
    have_tail: bool,
    hops: u64,
    faults: u64,
    // per-hop buffers
    mid: Vec<f32>,
    chunk16: Vec<f32>,
    wave16: Vec<f32>,
    phone: Vec<f32>,
    pitch: Vec<i64>,
    pitchf: Vec<f32>,
    rnd: Vec<f32>,
    rendered: Vec<f32>,
    out: Vec<f32>,
    feat50: Vec<f32>,
    rmvpe_f0: Vec<f32>,
}

fn signature(path: &Path, reason: String) -> RuntimeError {
    RuntimeError::ModelSignature { path: path.to_path_buf(), reason }
}

fn tensor_shape(session: &Session, input: bool, name: &str) -> Option<(TensorElementType, Vec<i64>)> {
    let list = if input { session.inputs() } else { session.outputs() };
    list.iter().find(|o| o.name() == name).and_then(|o| match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.iter().copied().collect())),
        _ => None,
    })
}

impl RvcVoice {
    /// Opens the voice model, its encoder and (if found) the RMVPE model,
    /// checks their signatures against the settings, and proves with a
    /// silent trial run that they work together. `channels`: host channels.
    pub fn load(entry: &RvcModelEntry, options: RvcOptions, channels: usize, device: Device) -> Result<Self, RuntimeError> {
        let settings = entry.settings.as_ref().map_err(Clone::clone)?;
        let plan = Plan::new(settings.sample_rate, options)?;
        let threads = options.threads.max(1);
        let loaded = open_session_with_threads(&entry.onnx, device, threads)?;
        let voice = loaded.session;
        let (names, emb) = check_voice(&voice, &entry.onnx, settings, &entry.sidecar_path)?;
        let encoder = open_encoder(&settings.encoder, device, threads)?;
        let rmvpe = match (&settings.pitch_model, settings.f0) {
            (Some(p), true) => Some(open_rmvpe(p, device, threads)?),
            _ => None,
        };
        let w = plan.window;
        let hop16 = plan.block * SAMPLES_16K_PER_FRAME;
        let hist16_len = (plan.lookahead + plan.window) * SAMPLES_16K_PER_FRAME + hop16;
        let f0_len = plan.window + plan.lookahead + plan.block + 4;
        let delay = plan.delay();
        let mut s = Self {
            name: entry.name.clone(),
            device_note: loaded.device_note,
            voice,
            names,
            encoder,
            rmvpe,
            plan,
            emb,
            channels: channels.max(1),
            speakers: settings.speakers,
            transpose: 0.0,
            speaker: 0,
            source: PitchSource::Tracker,
            down: ChunkResampler::new(plan.rate, ENCODER_RATE, plan.fr, 1).map_err(|e| RuntimeError::Inference(e.to_string()))?,
            tracker: PitchTracker::with_lookahead(plan.rate, options.pitch_lookahead),
            hist16: vec![0.0; hist16_len],
            f0_hist: vec![0.0; f0_len],
            f0_window: vec![0.0; w],
            dry: vec![0.0; channels.max(1) * (delay + plan.hop)],
            level: OutputLevel::limiter_only(plan.rate, channels),
            tail: vec![0.0; plan.crossfade],
            have_tail: false,
            hops: 0,
            faults: 0,
            mid: vec![0.0; plan.hop],
            chunk16: vec![0.0; hop16],
            wave16: vec![0.0; w * SAMPLES_16K_PER_FRAME],
            phone: vec![0.0; w * emb],
            pitch: vec![1; w],
            pitchf: vec![0.0; w],
            rnd: vec![0.0; NOISE_CHANNELS * w],
            rendered: vec![0.0; plan.rendered()],
            out: vec![0.0; plan.hop],
            feat50: vec![0.0; (w / 2) * emb],
            rmvpe_f0: vec![0.0; w],
        };
        if s.down.chunk_in() == 0 || plan.hop % s.down.chunk_in() != 0 || s.down.chunk_out() * (plan.hop / s.down.chunk_in()) != hop16 {
            return Err(RuntimeError::Inference(format!(
                "the {} Hz -> 16 kHz resampler takes {} samples per chunk, which does not tile a hop of {}",
                plan.rate,
                s.down.chunk_in(),
                plan.hop
            )));
        }
        // A silent trial run: shapes, encoder layout, voice model output length.
        s.detect_encoder_layout().map_err(|e| signature(&settings.encoder, e))?;
        s.infer().map_err(|e| signature(&entry.onnx, format!("a trial run failed: {e}")))?;
        if s.rmvpe.is_some() {
            s.run_rmvpe().map_err(|e| signature(settings.pitch_model.as_deref().unwrap_or(Path::new("rmvpe.onnx")), format!("a trial run failed: {e}")))?;
        }
        s.reset();
        Ok(s)
    }

    /// Transposition in semitones (applied to F0 before the model).
    pub fn set_transpose(&mut self, semitones: f32) {
        self.transpose = if semitones.is_finite() { semitones.clamp(-48.0, 48.0) } else { 0.0 };
    }

    pub fn transpose(&self) -> f32 {
        self.transpose
    }

    /// Speaker id; refused when the sidecar's `speakers` says it does not exist.
    pub fn set_speaker(&mut self, id: u32) -> Result<(), String> {
        if let Some(n) = self.speakers {
            if id >= n {
                return Err(format!("{} has {n} speakers (ids 0 to {})", self.name, n - 1));
            }
        }
        self.speaker = id as i64;
        Ok(())
    }

    pub fn speaker(&self) -> u32 {
        self.speaker as u32
    }

    /// Pitch source; RMVPE needs a loaded RMVPE model.
    pub fn set_pitch_source(&mut self, source: PitchSource) -> Result<(), String> {
        if source == PitchSource::Rmvpe && self.rmvpe.is_none() {
            return Err(format!("{}: no RMVPE model loaded (put {DEFAULT_PITCH_MODEL} in a user models folder or name it with `pitch_model`)", self.name));
        }
        self.source = source;
        Ok(())
    }

    pub fn pitch_source(&self) -> PitchSource {
        self.source
    }

    pub fn has_rmvpe(&self) -> bool {
        self.rmvpe.is_some()
    }

    pub fn takes_pitch(&self) -> bool {
        self.names.pitch.is_some()
    }

    /// Features per frame (256 or 768).
    pub fn emb_channels(&self) -> usize {
        self.emb
    }

    /// SOLA search range and crossfade, in model samples.
    pub fn sola_search(&self) -> usize {
        self.plan.search
    }
    pub fn crossfade(&self) -> usize {
        self.plan.crossfade
    }
    /// Frames in each inference window.
    pub fn window_frames(&self) -> usize {
        self.plan.window
    }
    /// 16 kHz resampler delay (16 kHz samples) and pitch tracker delay (frames).
    pub fn front_end_delays(&self) -> (usize, usize) {
        (self.plan.resampler_delay, self.plan.pitch_delay)
    }

    fn detect_encoder_layout(&mut self) -> Result<(), String> {
        let n = self.wave16.len();
        let e = |e: ort::Error| e.to_string();
        let input: TensorRef<'_, f32> = if self.encoder.rank3 {
            TensorRef::from_array_view(([1usize, 1, n], &self.wave16[..])).map_err(e)?
        } else {
            TensorRef::from_array_view(([1usize, n], &self.wave16[..])).map_err(e)?
        };
        let outputs = self.encoder.session.run(ort::inputs![input]).map_err(e)?;
        let (shape, _) = outputs[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        let dims: Vec<i64> = shape.iter().copied().collect();
        let c = self.emb as i64;
        self.encoder.channels_first = match dims.as_slice() {
            [1, a, b] if *a == c && *b != c => true,
            [1, a, b] if *b == c && *a != c => false,
            [1, a, _] if *a == c => true,
            _ => return Err(format!("the content encoder returned shape {dims:?} for {n} samples; the voice model needs [1, {c}, frames] or [1, frames, {c}]")),
        };
        Ok(())
    }

    /// Runs the encoder on `wave16` into `feat50` (`window / 2` frames).
    fn run_encoder(&mut self) -> Result<(), String> {
        let n = self.wave16.len();
        let e = |e: ort::Error| e.to_string();
        let input: TensorRef<'_, f32> = if self.encoder.rank3 {
            TensorRef::from_array_view(([1usize, 1, n], &self.wave16[..])).map_err(e)?
        } else {
            TensorRef::from_array_view(([1usize, n], &self.wave16[..])).map_err(e)?
        };
        let outputs = self.encoder.session.run(ort::inputs![input]).map_err(e)?;
        let (shape, y) = outputs[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        let c = self.emb;
        let frames = if self.encoder.channels_first { shape.get(2) } else { shape.get(1) }.copied().unwrap_or(0).max(0) as usize;
        if frames == 0 || y.len() != frames * c {
            return Err(format!("the content encoder returned {} values in shape {:?}", y.len(), shape.iter().collect::<Vec<_>>()));
        }
        let want = self.plan.window / 2;
        for j in 0..want {
            let src = j.min(frames - 1);
            let dst = &mut self.feat50[j * c..(j + 1) * c];
            if self.encoder.channels_first {
                for (ch, d) in dst.iter_mut().enumerate() {
                    *d = y[ch * frames + src];
                }
            } else {
                dst.copy_from_slice(&y[src * c..(src + 1) * c]);
            }
        }
        if !all_finite(&self.feat50) {
            return Err("the content encoder returned non-finite values".into());
        }
        Ok(())
    }

    /// Runs RMVPE on `wave16` into `rmvpe_f0` (one value per window frame).
    fn run_rmvpe(&mut self) -> Result<(), String> {
        let Some(r) = self.rmvpe.as_mut() else { return Err("no RMVPE model".into()) };
        let n = self.wave16.len();
        let e = |e: ort::Error| e.to_string();
        let wave = TensorRef::from_array_view(([1usize, n], &self.wave16[..])).map_err(e)?;
        let thr = [RMVPE_THRESHOLD];
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = ort::inputs![r.input.as_str() => wave];
        if let Some(t) = &r.threshold {
            inputs.push((Cow::from(t.as_str()), SessionInputValue::from(TensorRef::from_array_view(([1usize], &thr[..])).map_err(e)?)));
        }
        let outputs = r.session.run(inputs).map_err(e)?;
        let (_, f0) = outputs[0].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        if f0.is_empty() || !all_finite(f0) {
            return Err("RMVPE returned no or non-finite values".into());
        }
        for (j, d) in self.rmvpe_f0.iter_mut().enumerate() {
            *d = f0[j.min(f0.len() - 1)].max(0.0);
        }
        Ok(())
    }

    /// Fills the voice model's inputs for the window and runs it into `rendered`.
    fn infer(&mut self) -> Result<(), String> {
        let (w, c) = (self.plan.window, self.emb);
        self.run_encoder()?;
        for i in 0..w {
            let src = &self.feat50[(i / 2) * c..(i / 2 + 1) * c];
            self.phone[i * c..(i + 1) * c].copy_from_slice(src);
        }
        if self.names.pitch.is_some() {
            let use_rmvpe = self.source == PitchSource::Rmvpe && self.rmvpe.is_some();
            if use_rmvpe {
                self.run_rmvpe()?;
            }
            let factor = 2f32.powf(self.transpose / 12.0);
            for i in 0..w {
                let f0 = if use_rmvpe { self.rmvpe_f0[i] } else { self.f0_window[i] };
                let f = if f0 > 0.0 { f0 * factor } else { 0.0 };
                self.pitchf[i] = f;
                self.pitch[i] = coarse_pitch(f);
            }
        }
        // Noise: a fixed function of the absolute frame index.
        let first = (self.hops as i64 + 1) * self.plan.block as i64 - self.plan.lookahead as i64 - w as i64;
        for ch in 0..NOISE_CHANNELS {
            for i in 0..w {
                self.rnd[ch * w + i] = noise(first + i as i64, ch as u64);
            }
        }
        let e = |e: ort::Error| e.to_string();
        let lengths = [w as i64];
        let sid = [self.speaker];
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = ort::inputs![
            self.names.feats.as_str() => TensorRef::from_array_view(([1usize, w, c], &self.phone[..])).map_err(e)?,
            self.names.lengths.as_str() => TensorRef::from_array_view(([1usize], &lengths[..])).map_err(e)?,
            self.names.sid.as_str() => TensorRef::from_array_view(([1usize], &sid[..])).map_err(e)?,
        ];
        if let Some((p, pf)) = &self.names.pitch {
            inputs.push((Cow::from(p.as_str()), SessionInputValue::from(TensorRef::from_array_view(([1usize, w], &self.pitch[..])).map_err(e)?)));
            inputs.push((Cow::from(pf.as_str()), SessionInputValue::from(TensorRef::from_array_view(([1usize, w], &self.pitchf[..])).map_err(e)?)));
        }
        if let Some(r) = &self.names.rnd {
            inputs.push((Cow::from(r.as_str()), SessionInputValue::from(TensorRef::from_array_view(([1usize, NOISE_CHANNELS, w], &self.rnd[..])).map_err(e)?)));
        }
        let outputs = self.voice.run(inputs).map_err(e)?;
        let (_, audio) = outputs["audio"].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        let expected = w * self.plan.fr;
        if audio.len() < expected {
            return Err(format!("the voice model returned {} samples for {w} frames; expected {expected} ({} per frame)", audio.len(), self.plan.fr));
        }
        let r = self.rendered.len();
        self.rendered.copy_from_slice(&audio[expected - r..expected]);
        if !all_finite(&self.rendered) {
            return Err("the voice model returned non-finite values".into());
        }
        Ok(())
    }

    /// Pushes the hop's mid into the 16 kHz history and the pitch tracker.
    fn push_front_end(&mut self) {
        let (ci, co) = (self.down.chunk_in(), self.down.chunk_out());
        for k in 0..self.plan.hop / ci {
            self.down.process(&self.mid[k * ci..(k + 1) * ci], &mut self.chunk16[k * co..(k + 1) * co]);
        }
        let n = self.chunk16.len();
        let len = self.hist16.len();
        self.hist16.copy_within(n.., 0);
        self.hist16[len - n..].copy_from_slice(&self.chunk16);
        let fr = self.plan.fr;
        let b = self.plan.block;
        let flen = self.f0_hist.len();
        self.f0_hist.copy_within(b.., 0);
        for k in 0..b {
            let frame = self.tracker.process_hop(&self.mid[k * fr..(k + 1) * fr]);
            self.f0_hist[flen - b + k] = if frame.voiced { frame.f0_hz } else { 0.0 };
        }
        // The window: 16 kHz samples [(E - W) 160 + d, E 160 + d), E = newest frame - L.
        let back = self.plan.lookahead * SAMPLES_16K_PER_FRAME - self.plan.resampler_delay;
        let end = len - back;
        let start = end - self.wave16.len();
        self.wave16.copy_from_slice(&self.hist16[start..end]);
        // The tracker's newest frame is `pitch_delay` frames old; the window ends `lookahead` frames back.
        let shift = self.plan.lookahead - self.plan.pitch_delay;
        let w = self.plan.window;
        self.f0_window.copy_from_slice(&self.f0_hist[flen - shift - w..flen - shift]);
    }

    fn sola_and_output(&mut self) {
        let (x, s, hop) = (self.plan.crossfade, self.plan.search, self.plan.hop);
        let y = &self.rendered;
        let tail_energy: f32 = self.tail.iter().map(|v| v * v).sum();
        let offset = if !self.have_tail || tail_energy < 1e-10 * x as f32 {
            s / 2
        } else {
            let mut energy: f32 = y[..x].iter().map(|v| v * v).sum();
            let (mut best, mut best_score) = (s / 2, f32::NEG_INFINITY);
            for o in 0..=s {
                if o > 0 {
                    energy += y[o + x - 1] * y[o + x - 1] - y[o - 1] * y[o - 1];
                }
                let num: f32 = y[o..o + x].iter().zip(&self.tail).map(|(a, b)| a * b).sum();
                let score = num / (energy.max(0.0) + 1e-8).sqrt();
                if score > best_score {
                    best_score = score;
                    best = o;
                }
            }
            best
        };
        self.out.copy_from_slice(&y[offset..offset + hop]);
        if self.have_tail {
            for i in 0..x {
                let w = (std::f32::consts::FRAC_PI_2 * (i as f32 + 0.5) / x as f32).sin().powi(2);
                self.out[i] = self.tail[i] * (1.0 - w) + self.out[i] * w;
            }
        } else {
            for i in 0..x {
                self.out[i] *= (std::f32::consts::FRAC_PI_2 * (i as f32 + 0.5) / x as f32).sin().powi(2);
            }
        }
        self.tail.copy_from_slice(&y[offset + hop..offset + hop + x]);
        self.have_tail = true;
    }
}

/// RVC's coarse pitch: the mel scale of F0 mapped from 50..1100 Hz onto
/// 1..255, rounded; 1 when unvoiced.
pub fn coarse_pitch(f0: f32) -> i64 {
    if f0 <= 0.0 {
        return 1;
    }
    let mel = |f: f32| 1127.0 * (1.0 + f / 700.0).ln();
    let (lo, hi) = (mel(F0_MIN_HZ), mel(F0_MAX_HZ));
    let m = (mel(f0) - lo) * 254.0 / (hi - lo) + 1.0;
    m.clamp(1.0, 255.0).round() as i64
}

/// Standard-normal-ish noise (sum of four uniforms) from a frame index and channel.
fn noise(frame: i64, channel: u64) -> f32 {
    let mut h = (frame as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ channel.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut sum = 0.0f32;
    for _ in 0..4 {
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 29;
        sum += (h >> 40) as f32 / (1u64 << 24) as f32;
    }
    (sum - 2.0) * 1.732
}

fn check_voice(session: &Session, path: &Path, settings: &RvcSettings, sidecar_path: &Path) -> Result<(VoiceNames, usize), RuntimeError> {
    let ins: Vec<String> = session.inputs().iter().map(|o| o.name().to_string()).collect();
    let has = |n: &str| ins.iter().any(|i| i == n);
    let pick = |a: &str, b: &str| if has(a) { Some(a.to_string()) } else if has(b) { Some(b.to_string()) } else { None };
    let listed = ins.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let (Some(feats), Some(lengths), Some(sid)) = (pick("phone", "feats"), pick("phone_lengths", "p_len"), pick("ds", "sid")) else {
        return Err(signature(path, format!("its inputs are {listed}; an RVC voice model takes phone (or feats), phone_lengths (or p_len), ds (or sid)")));
    };
    let pitch = match (has("pitch"), has("pitchf")) {
        (true, true) => Some(("pitch".to_string(), "pitchf".to_string())),
        (false, false) => None,
        _ => return Err(signature(path, format!("its inputs are {listed}: it has only one of pitch and pitchf"))),
    };
    let rnd = has("rnd").then(|| "rnd".to_string());
    let known = [&feats, &lengths, &sid].into_iter().cloned().chain(pitch.iter().flat_map(|(a, b)| [a.clone(), b.clone()])).chain(rnd.clone()).collect::<Vec<_>>();
    if let Some(extra) = ins.iter().find(|n| !known.contains(n)) {
        return Err(signature(path, format!("its inputs are {listed}; '{extra}' is not an input of RVC's or w-okada's export, so this converter cannot feed it")));
    }
    if !session.outputs().iter().any(|o| o.name() == "audio") {
        return Err(signature(path, "it has no output 'audio'".into()));
    }
    let Some((ty, shape)) = tensor_shape(session, true, &feats) else {
        return Err(signature(path, format!("its input '{feats}' is not a tensor")));
    };
    if ty != TensorElementType::Float32 || shape.len() != 3 {
        return Err(signature(path, format!("its input '{feats}' is {ty:?} of rank {}; RVC takes float32 [1, frames, 256 or 768] (float16 exports are not supported)", shape.len())));
    }
    let graph_c = shape[2];
    let emb = match (graph_c, settings.emb_channels) {
        (g, Some(s)) if g > 0 && g as usize != s => {
            let (key, written) = match settings.sidecar.as_ref().and_then(|s| s.emb_channels) {
                Some((_, "version")) => ("version", if s == 256 { "\"v1\" (256 features)".to_string() } else { "\"v2\" (768 features)".to_string() }),
                Some((_, k)) => (k, s.to_string()),
                None => ("emb_channels", format!("{s} (from its metadata)")),
            };
            let fix = if key == "version" { format!("`version = \"{}\"`", if g == 256 { "v1" } else { "v2" }) } else { format!("`emb_channels = {g}`") };
            return Err(signature(path, format!("its input '{feats}' takes {g} features per frame, but `{key}` = {written}; set {fix} in {}", file_name(sidecar_path))));
        }
        (g, _) if g > 0 => g as usize,
        (_, Some(s)) => s,
        _ => 768,
    };
    Ok((VoiceNames { feats, lengths, sid, pitch, rnd }, emb))
}

fn open_encoder(path: &Path, device: Device, threads: usize) -> Result<Encoder, RuntimeError> {
    let session = open_session_with_threads(path, device, threads)?.session;
    if session.inputs().len() != 1 || session.outputs().is_empty() {
        return Err(signature(path, format!("a content encoder has one input (16 kHz waveform) and an output; this has {} inputs", session.inputs().len())));
    }
    let name = session.inputs()[0].name().to_string();
    let rank = tensor_shape(&session, true, &name).map(|(_, s)| s.len()).unwrap_or(0);
    if rank != 2 && rank != 3 {
        return Err(signature(path, format!("its input '{name}' has rank {rank}; a content encoder takes [1, samples] or [1, 1, samples]")));
    }
    Ok(Encoder { session, rank3: rank == 3, channels_first: true })
}

fn open_rmvpe(path: &Path, device: Device, threads: usize) -> Result<Rmvpe, RuntimeError> {
    let session = open_session_with_threads(path, device, threads)?.session;
    let ins: Vec<String> = session.inputs().iter().map(|o| o.name().to_string()).collect();
    let Some(input) = ins.iter().find(|n| *n == "waveform").cloned() else {
        return Err(signature(
            path,
            format!("its inputs are {ins:?}; only RMVPE exports that take the 16 kHz waveform ('waveform' [1, samples], 'threshold' [1]) are supported (not log-mel ones)"),
        ));
    };
    let threshold = ins.iter().find(|n| *n == "threshold").cloned();
    Ok(Rmvpe { session, input, threshold })
}

impl HopModel for RvcVoice {
    fn name(&self) -> &str {
        &self.name
    }
    fn sample_rate(&self) -> u32 {
        self.plan.rate
    }
    fn hop(&self) -> usize {
        self.plan.hop
    }
    fn channels(&self) -> usize {
        self.channels
    }
    fn delay(&self) -> usize {
        self.plan.delay() + self.level.delay()
    }
    fn faults(&self) -> u64 {
        self.faults
    }
    fn device_note(&self) -> &str {
        &self.device_note
    }

    fn process_hop(&mut self, input: &[f32], output: &mut [f32]) {
        let (c, hop) = (self.channels, self.plan.hop);
        self.level.measure_input(input, hop);
        let inv = 1.0 / c as f32;
        for i in 0..hop {
            let mut m = 0.0;
            for ch in 0..c {
                m += input[ch * hop + i];
            }
            self.mid[i] = crate::dsp::sanitize::sanitize_sample(m * inv);
        }
        // Dry history per channel (for faults).
        let dl = self.dry.len() / c;
        for ch in 0..c {
            let d = &mut self.dry[ch * dl..(ch + 1) * dl];
            d.copy_within(hop.., 0);
            d[dl - hop..].copy_from_slice(&input[ch * hop..(ch + 1) * hop]);
        }
        self.push_front_end();
        let result = self.infer();
        self.hops += 1;
        match result {
            Ok(()) => {
                self.sola_and_output();
                for ch in 0..c {
                    output[ch * hop..(ch + 1) * hop].copy_from_slice(&self.out);
                }
            }
            Err(reason) => {
                self.faults += 1;
                if self.faults <= 3 {
                    log::warn!("RVC hop failed ({reason}); passing dry and resetting");
                }
                self.have_tail = false;
                self.tail.fill(0.0);
                for ch in 0..c {
                    output[ch * hop..(ch + 1) * hop].copy_from_slice(&self.dry[ch * dl..ch * dl + hop]);
                }
            }
        }
        self.level.process(output, hop);
    }

    /// Transpose and speaker id from the plugin or the CLI; an id the model
    /// does not have keeps the previous one. Strength does not apply (an RVC
    /// model is its own target).
    fn set_conversion(&mut self, controls: &super::ConversionControls) {
        self.set_transpose(controls.transpose_semitones);
        if controls.speaker_id >= 0 && controls.speaker_id != self.speaker {
            let _ = self.set_speaker(controls.speaker_id as u32);
        }
    }

    fn reset(&mut self) {
        self.down.reset();
        self.tracker.reset();
        self.hist16.fill(0.0);
        self.f0_hist.fill(0.0);
        self.f0_window.fill(0.0);
        self.dry.fill(0.0);
        self.tail.fill(0.0);
        self.have_tail = false;
        self.hops = 0;
        self.level.reset();
    }
}
