//! Offline rendering of files: decoding, encoding and running a plugin's
//! bridge in offline mode (the same code the plugin runs, synchronously,
//! deterministic, no underruns). Main thread.

use crate::bridge::{LatencyPlan, RealtimeBridge, Telemetry, WorkerState};
use crate::runtime::onnx::Device;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Planar audio in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioData {
    pub sample_rate: u32,
    /// `channels[c][i]`
    pub channels: Vec<Vec<f32>>,
}

impl AudioData {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, |c| c.len())
    }
    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / self.sample_rate as f64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("{path} is not a readable audio file (WAV, FLAC, MP3, OGG): {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} holds no audio")]
    Empty { path: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("{0}")]
    Setup(String),
    #[error("the model could not run: {0}")]
    Model(String),
    #[error("{channels} channels: Manifold Clean takes mono or stereo")]
    Channels { channels: usize },
}

/// Decodes WAV/FLAC/MP3/OGG into planar f32.
pub fn read_audio(path: &Path) -> Result<AudioData, AudioError> {
    let p = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| AudioError::Open { path: p.clone(), reason: e.to_string() })?;
    let unreadable = |e: SymError| AudioError::Unreadable { path: p.clone(), reason: e.to_string() };
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(unreadable)?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| AudioError::Unreadable { path: p.clone(), reason: "no audio track".into() })?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs().make(&track.codec_params, &DecoderOptions::default()).map_err(unreadable)?;
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels: Vec<Vec<f32>> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(unreadable(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(_)) => continue,
            Err(e) => return Err(unreadable(e)),
        };
        let spec = *decoded.spec();
        sample_rate = spec.rate;
        let n_ch = spec.channels.count();
        if channels.is_empty() {
            channels = vec![Vec::new(); n_ch];
        }
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for (i, x) in buf.samples().iter().enumerate() {
            channels[i % n_ch].push(*x);
        }
    }
    if channels.is_empty() || channels[0].is_empty() || sample_rate == 0 {
        return Err(AudioError::Empty { path: p });
    }
    Ok(AudioData { sample_rate, channels })
}

/// Writes 32-bit float WAV (no clipping, no dither decisions).
pub fn write_wav(path: &Path, audio: &AudioData) -> Result<(), AudioError> {
    let p = path.display().to_string();
    let err = |e: hound::Error| AudioError::Write { path: p.clone(), reason: e.to_string() };
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| AudioError::Write { path: p.clone(), reason: e.to_string() })?;
        }
    }
    let spec = hound::WavSpec {
        channels: audio.channels.len() as u16,
        sample_rate: audio.sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for i in 0..audio.frames() {
        for ch in &audio.channels {
            w.write_sample(ch[i]).map_err(err)?;
        }
    }
    w.finalize().map_err(err)
}

/// What a render measured.
#[derive(Debug, Clone)]
pub struct RenderReport {
    pub latency: LatencyPlan,
    pub audio_seconds: f64,
    pub wall_seconds: f64,
    pub status: String,
    pub underruns: u64,
    pub model_faults: u64,
}

impl RenderReport {
    /// Processing time over audio time (below 1 is faster than real time).
    pub fn real_time_factor(&self) -> f64 {
        self.wall_seconds / self.audio_seconds.max(1e-9)
    }
}

/// Block size used for offline renders.
pub const OFFLINE_BLOCK: usize = 4096;

/// Runs `input` through `bridge` (already built in offline mode) and returns
/// output aligned to the input and of the same length.
/// The share of wet signal for a mix of 1 and an attenuation limit in dB
/// (the same formula the plugin uses).
pub fn wet_share(atten_limit_db: f32) -> f32 {
    1.0 - 10f32.powf(-atten_limit_db / 20.0)
}

pub fn render_with_bridge(mut bridge: RealtimeBridge, input: &AudioData, wet: f32, mut progress: impl FnMut(usize, usize)) -> Result<(AudioData, RenderReport), RenderError> {
    let telemetry = bridge.telemetry().clone();
    let latency = bridge.latency();
    let skip = latency.total;
    let frames = input.frames();
    let c = input.channels.len();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(frames); c];
    let mut block: Vec<Vec<f32>> = vec![vec![0.0; OFFLINE_BLOCK]; c];
    let started = Instant::now();
    let total = frames + skip;
    let mut pos = 0;
    while pos < total {
        let n = OFFLINE_BLOCK.min(total - pos);
        for (ch, b) in block.iter_mut().enumerate() {
            for (i, x) in b[..n].iter_mut().enumerate() {
                *x = input.channels[ch].get(pos + i).copied().unwrap_or(0.0);
            }
        }
        {
            let mut slices: Vec<&mut [f32]> = block.iter_mut().map(|b| &mut b[..n]).collect();
            bridge.process(&mut slices, || wet, || 0.0);
        }
        if pos == 0 && telemetry.state() != WorkerState::Running {
            return Err(RenderError::Model(telemetry.status_line()));
        }
        for (ch, b) in block.iter().enumerate() {
            for (i, x) in b[..n].iter().enumerate() {
                let t = pos + i;
                if t >= skip && t < skip + frames {
                    out[ch].push(*x);
                }
            }
        }
        pos += n;
        progress(pos.min(frames), frames);
    }
    let report = RenderReport {
        latency,
        audio_seconds: input.seconds(),
        wall_seconds: started.elapsed().as_secs_f64(),
        status: telemetry.status_line(),
        underruns: telemetry.underrun_events(),
        model_faults: telemetry.model_faults(),
    };
    Ok((AudioData { sample_rate: input.sample_rate, channels: out }, report))
}

/// `manifold clean`: speech enhancement of a whole file through Clean's bridge.
pub fn render_clean(input: &AudioData, model: crate::plugins::clean::CleanModel, atten_limit_db: f32, device: Device, progress: impl FnMut(usize, usize)) -> Result<(AudioData, RenderReport), RenderError> {
    let c = input.channels.len();
    if !(1..=2).contains(&c) {
        return Err(RenderError::Channels { channels: c });
    }
    let telemetry = Arc::new(Telemetry::default());
    let bridge = crate::plugins::clean::build_bridge(input.sample_rate as f32, c, OFFLINE_BLOCK, true, model, device, telemetry).map_err(RenderError::Setup)?;
    render_with_bridge(bridge, input, wet_share(atten_limit_db), progress)
}
