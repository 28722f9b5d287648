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
    #[error("{channels} channels: Manifold takes mono or stereo files")]
    Channels { channels: usize },
}

/// Streams WAV/FLAC/MP3/OGG as planar f32, a packet at a time, so a file of
/// any length is decoded in bounded memory. Main (render) thread.
pub struct AudioReader {
    path: String,
    format: Box<dyn symphonia::core::formats::FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::Decoder>,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    total_frames: Option<u64>,
    /// Decoded frames not handed out yet: `[channel][frame]`.
    pending: Vec<Vec<f32>>,
    pending_pos: usize,
    sample_buf: Option<SampleBuffer<f32>>,
    done: bool,
}

impl AudioReader {
    pub fn open(path: &Path) -> Result<Self, AudioError> {
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
        let format = probed.format;
        let track = format
            .default_track()
            .ok_or_else(|| AudioError::Unreadable { path: p.clone(), reason: "no audio track".into() })?;
        let track_id = track.id;
        let params = track.codec_params.clone();
        let decoder = symphonia::default::get_codecs().make(&params, &DecoderOptions::default()).map_err(unreadable)?;
        let mut reader = Self {
            path: p,
            format,
            decoder,
            track_id,
            sample_rate: params.sample_rate.unwrap_or(0),
            channels: params.channels.map_or(0, |c| c.count()),
            total_frames: params.n_frames,
            pending: Vec::new(),
            pending_pos: 0,
            sample_buf: None,
            done: false,
        };
        // Decode the first packet so rate and channels are known for sure.
        reader.refill()?;
        if reader.channels == 0 || reader.sample_rate == 0 || reader.pending.first().map_or(true, |c| c.is_empty()) {
            return Err(AudioError::Empty { path: reader.path });
        }
        Ok(reader)
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frames in the file, when the container says.
    pub fn total_frames(&self) -> Option<u64> {
        self.total_frames
    }

    /// Decodes packets until some frames are pending or the file ends.
    fn refill(&mut self) -> Result<(), AudioError> {
        while !self.done && self.pending_pos >= self.pending.first().map_or(0, |c| c.len()) {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.done = true;
                    break;
                }
                Err(SymError::ResetRequired) => {
                    self.done = true;
                    break;
                }
                Err(e) => return Err(AudioError::Unreadable { path: self.path.clone(), reason: e.to_string() }),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                Err(SymError::DecodeError(_)) => continue,
                Err(e) => return Err(AudioError::Unreadable { path: self.path.clone(), reason: e.to_string() }),
            };
            let spec = *decoded.spec();
            self.sample_rate = spec.rate;
            let n_ch = spec.channels.count();
            self.channels = n_ch;
            let needed = decoded.capacity() as u64;
            if self.sample_buf.as_ref().map_or(true, |b| (b.capacity() as u64) < needed * n_ch as u64) {
                self.sample_buf = Some(SampleBuffer::<f32>::new(needed, spec));
            }
            let buf = self.sample_buf.as_mut().expect("just created");
            buf.copy_interleaved_ref(decoded);
            self.pending.resize(n_ch, Vec::new());
            for c in self.pending.iter_mut() {
                c.clear();
            }
            self.pending_pos = 0;
            for (i, x) in buf.samples().iter().enumerate() {
                self.pending[i % n_ch].push(*x);
            }
        }
        Ok(())
    }

    /// Reads up to `max` frames into `out[channel][..]`; returns how many
    /// (0 at the end of the file).
    pub fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize, AudioError> {
        let mut filled = 0;
        while filled < max {
            self.refill()?;
            let avail = self.pending.first().map_or(0, |c| c.len()).saturating_sub(self.pending_pos);
            if avail == 0 {
                break;
            }
            let n = avail.min(max - filled);
            for (ch, o) in out.iter_mut().enumerate() {
                let src = &self.pending[ch.min(self.channels - 1)];
                o[filled..filled + n].copy_from_slice(&src[self.pending_pos..self.pending_pos + n]);
            }
            self.pending_pos += n;
            filled += n;
        }
        Ok(filled)
    }
}

/// Decodes a whole WAV/FLAC/MP3/OGG file into planar f32 (for short files
/// and tests; renders stream with [`AudioReader`]).
pub fn read_audio(path: &Path) -> Result<AudioData, AudioError> {
    let mut reader = AudioReader::open(path)?;
    let c = reader.channels();
    let mut channels: Vec<Vec<f32>> = vec![Vec::new(); c];
    let mut block = vec![vec![0.0f32; OFFLINE_BLOCK]; c];
    loop {
        let n = reader.read(&mut block, OFFLINE_BLOCK)?;
        if n == 0 {
            break;
        }
        for (dst, src) in channels.iter_mut().zip(&block) {
            dst.extend_from_slice(&src[..n]);
        }
    }
    Ok(AudioData { sample_rate: reader.sample_rate(), channels })
}

/// A 32-bit float WAV file written block by block. Main (render) thread.
pub struct WavSink {
    path: String,
    writer: hound::WavWriter<std::io::BufWriter<std::fs::File>>,
}

impl WavSink {
    pub fn create(path: &Path, channels: usize, sample_rate: u32) -> Result<Self, AudioError> {
        let p = path.display().to_string();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| AudioError::Write { path: p.clone(), reason: e.to_string() })?;
            }
        }
        let spec = hound::WavSpec { channels: channels as u16, sample_rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
        let writer = hound::WavWriter::create(path, spec).map_err(|e| AudioError::Write { path: p.clone(), reason: e.to_string() })?;
        Ok(Self { path: p, writer })
    }

    /// `planar[channel][..n]`.
    pub fn write(&mut self, planar: &[&[f32]], n: usize) -> Result<(), AudioError> {
        for i in 0..n {
            for ch in planar {
                self.writer.write_sample(ch[i]).map_err(|e| AudioError::Write { path: self.path.clone(), reason: e.to_string() })?;
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), AudioError> {
        let p = self.path;
        self.writer.finalize().map_err(|e| AudioError::Write { path: p, reason: e.to_string() })
    }
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

/// The share of wet signal for a mix of 1 and an attenuation limit in dB
/// (the same formula the plugin uses).
pub fn wet_share(atten_limit_db: f32) -> f32 {
    1.0 - 10f32.powf(-atten_limit_db / 20.0)
}

/// Where a render reads its input, block by block.
pub trait RenderSource {
    fn sample_rate(&self) -> u32;
    fn channels(&self) -> usize;
    /// Frames in the whole input, when known (for the progress bar).
    fn total_frames(&self) -> Option<u64>;
    /// Up to `max` frames into `out[channel]`; 0 at the end.
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize, AudioError>;
}

impl RenderSource for AudioReader {
    fn sample_rate(&self) -> u32 {
        AudioReader::sample_rate(self)
    }
    fn channels(&self) -> usize {
        AudioReader::channels(self)
    }
    fn total_frames(&self) -> Option<u64> {
        AudioReader::total_frames(self)
    }
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize, AudioError> {
        AudioReader::read(self, out, max)
    }
}

/// Audio already in memory as a render source.
pub struct MemorySource<'a> {
    audio: &'a AudioData,
    pos: usize,
}

impl<'a> MemorySource<'a> {
    pub fn new(audio: &'a AudioData) -> Self {
        Self { audio, pos: 0 }
    }
}

impl RenderSource for MemorySource<'_> {
    fn sample_rate(&self) -> u32 {
        self.audio.sample_rate
    }
    fn channels(&self) -> usize {
        self.audio.channels.len()
    }
    fn total_frames(&self) -> Option<u64> {
        Some(self.audio.frames() as u64)
    }
    fn read(&mut self, out: &mut [Vec<f32>], max: usize) -> Result<usize, AudioError> {
        let n = max.min(self.audio.frames() - self.pos);
        for (o, c) in out.iter_mut().zip(&self.audio.channels) {
            o[..n].copy_from_slice(&c[self.pos..self.pos + n]);
        }
        self.pos += n;
        Ok(n)
    }
}

/// Drives `bridge` (built in offline mode) over `source` in bounded memory:
/// feeds the input and then `latency` frames of silence, and hands `emit`
/// only the output that lines up with the input (same length, aligned).
/// `step(bridge, input, n, outputs)` runs one block; `emit(outputs, from, n)`
/// receives frames `from..from + n` of each output block.
fn drive(
    bridge: &mut RealtimeBridge,
    source: &mut dyn RenderSource,
    output_channels: usize,
    mut step: impl FnMut(&mut RealtimeBridge, &[Vec<f32>], usize, &mut [Vec<f32>]),
    mut emit: impl FnMut(&[Vec<f32>], usize, usize) -> Result<(), AudioError>,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<RenderReport, RenderError> {
    let telemetry = bridge.telemetry().clone();
    let latency = bridge.latency();
    let skip = latency.total as u64;
    let c = source.channels();
    let mut input = vec![vec![0.0f32; OFFLINE_BLOCK]; c];
    let mut outputs = vec![vec![0.0f32; OFFLINE_BLOCK]; output_channels];
    let started = Instant::now();
    let (mut read, mut fed, mut flushed) = (0u64, 0u64, 0u64);
    let mut ended = false;
    loop {
        let mut n = 0;
        if !ended {
            n = source.read(&mut input, OFFLINE_BLOCK)?;
            ended = n == 0;
            read += n as u64;
        }
        if ended {
            if flushed >= skip {
                break;
            }
            n = ((skip - flushed) as usize).min(OFFLINE_BLOCK);
            for ch in input.iter_mut() {
                ch[..n].fill(0.0);
            }
            flushed += n as u64;
        }
        step(bridge, &input, n, &mut outputs);
        if fed == 0 && telemetry.state() != WorkerState::Running {
            return Err(RenderError::Model(telemetry.status_line()));
        }
        // Output frame t (counted from the first) carries input frame t - skip.
        let first_valid = skip.saturating_sub(fed).min(n as u64) as usize;
        let last = (read + skip).saturating_sub(fed).min(n as u64) as usize;
        if last > first_valid {
            emit(&outputs, first_valid, last - first_valid)?;
        }
        fed += n as u64;
        progress(fed.saturating_sub(skip).min(read), source.total_frames());
    }
    let sample_rate = source.sample_rate();
    Ok(RenderReport {
        latency,
        audio_seconds: read as f64 / sample_rate as f64,
        wall_seconds: started.elapsed().as_secs_f64(),
        status: telemetry.status_line(),
        underruns: telemetry.underrun_events(),
        model_faults: telemetry.model_faults(),
    })
}

/// Runs an effect bridge over `source`; `emit` gets the aligned output.
pub fn render_effect(
    mut bridge: RealtimeBridge,
    source: &mut dyn RenderSource,
    wet: f32,
    mut emit: impl FnMut(&[&[f32]], usize) -> Result<(), AudioError>,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<RenderReport, RenderError> {
    let c = source.channels();
    drive(
        &mut bridge,
        source,
        c,
        |b, input, n, out| {
            for (o, i) in out.iter_mut().zip(input) {
                o[..n].copy_from_slice(&i[..n]);
            }
            let mut slices: [&mut [f32]; crate::bridge::realtime::MAX_CHANNELS] = Default::default();
            for (s, o) in slices.iter_mut().zip(out.iter_mut()) {
                *s = &mut o[..n];
            }
            b.process(&mut slices[..c], || wet, || 0.0);
        },
        |out, from, n| {
            let mut planar: [&[f32]; crate::bridge::realtime::MAX_CHANNELS] = Default::default();
            for (p, o) in planar.iter_mut().zip(out) {
                *p = &o[from..from + n];
            }
            emit(&planar[..c], n)
        },
        progress,
    )
}

/// Runs a separator bridge over `source`; `emit` gets the aligned stems
/// (stem-major planes, `stems * channels`) and the aligned dry input.
pub fn render_stems(
    mut bridge: RealtimeBridge,
    source: &mut dyn RenderSource,
    mut emit: impl FnMut(&[&[f32]], &[&[f32]], usize) -> Result<(), AudioError>,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<RenderReport, RenderError> {
    let c = source.channels();
    let oc = bridge.out_channels();
    drive(
        &mut bridge,
        source,
        oc + c,
        |b, input, n, out| {
            let mut ins: [&[f32]; crate::bridge::realtime::MAX_CHANNELS] = Default::default();
            for (s, i) in ins.iter_mut().zip(input) {
                *s = &i[..n];
            }
            let (stems, dry) = out.split_at_mut(oc);
            let mut stem_slices: [&mut [f32]; crate::bridge::realtime::MAX_CHANNELS] = Default::default();
            for (s, o) in stem_slices.iter_mut().zip(stems.iter_mut()) {
                *s = &mut o[..n];
            }
            let mut dry_slices: [&mut [f32]; crate::bridge::realtime::MAX_CHANNELS] = Default::default();
            for (s, o) in dry_slices.iter_mut().zip(dry.iter_mut()) {
                *s = &mut o[..n];
            }
            b.process_stems(&ins[..c], &mut stem_slices[..oc], &mut dry_slices[..c]);
        },
        |out, from, n| {
            let mut planar: [&[f32]; 2 * crate::bridge::realtime::MAX_CHANNELS] = Default::default();
            for (p, o) in planar.iter_mut().zip(out) {
                *p = &o[from..from + n];
            }
            emit(&planar[..oc], &planar[oc..oc + c], n)
        },
        progress,
    )
}

/// Runs `input` through an effect bridge and returns the output, aligned to
/// the input and of the same length.
pub fn render_with_bridge(bridge: RealtimeBridge, input: &AudioData, wet: f32, mut progress: impl FnMut(usize, usize)) -> Result<(AudioData, RenderReport), RenderError> {
    let frames = input.frames();
    let mut out: Vec<Vec<f32>> = vec![Vec::with_capacity(frames); input.channels.len()];
    let report = render_effect(
        bridge,
        &mut MemorySource::new(input),
        wet,
        |block, n| {
            for (o, b) in out.iter_mut().zip(block) {
                o.extend_from_slice(&b[..n]);
            }
            Ok(())
        },
        |done, total| progress(done as usize, total.unwrap_or(0) as usize),
    )?;
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

/// Clean over a file of any length, streamed from `input` to a WAV at
/// `output` (bounded memory; the same bridge and output as [`render_clean`]).
pub fn render_clean_file(input: &Path, output: &Path, model: crate::plugins::clean::CleanModel, atten_limit_db: f32, device: Device, progress: impl FnMut(u64, Option<u64>)) -> Result<RenderReport, RenderError> {
    let mut reader = AudioReader::open(input)?;
    let c = reader.channels();
    if !(1..=2).contains(&c) {
        return Err(RenderError::Channels { channels: c });
    }
    let rate = reader.sample_rate();
    let telemetry = Arc::new(Telemetry::default());
    let bridge = crate::plugins::clean::build_bridge(rate as f32, c, OFFLINE_BLOCK, true, model, device, telemetry).map_err(RenderError::Setup)?;
    let mut sink = WavSink::create(output, c, rate)?;
    let rendered = render_effect(bridge, &mut reader, wet_share(atten_limit_db), |block, n| sink.write(block, n), progress);
    finish_or_remove(output, sink, rendered)
}

/// Finishes `sink` after a render; when the render or the finish failed,
/// removes the file, so a failed render leaves no output behind.
fn finish_or_remove(output: &Path, sink: WavSink, rendered: Result<RenderReport, RenderError>) -> Result<RenderReport, RenderError> {
    let finished = rendered.and_then(|report| sink.finish().map(|_| report).map_err(RenderError::from));
    if finished.is_err() {
        let _ = std::fs::remove_file(output);
    }
    finished
}

/// What `manifold stems` wrote.
#[derive(Debug, Clone)]
pub struct StemFiles {
    pub files: Vec<std::path::PathBuf>,
    pub report: RenderReport,
    pub sample_rate: u32,
    pub channels: usize,
}

/// Opens `input` for streaming and builds Stems' bridge for `model` at the
/// file's rate and channel count (mono or stereo). `mode`: `Offline` (full
/// context), or a live setting: the plan the plugin uses when a host
/// activates it in real time, waited for on every block like a host's
/// offline render (so the output equals what such a host exports).
fn open_separation(input: &Path, model: crate::plugins::stems::StemsModel, mode: crate::plugins::stems::SeparationMode, device: Device) -> Result<(AudioReader, RealtimeBridge), RenderError> {
    use crate::plugins::stems::{SeparationMode, StemsSetup};
    let reader = AudioReader::open(input)?;
    let c = reader.channels();
    if !(1..=2).contains(&c) {
        return Err(RenderError::Channels { channels: c });
    }
    let setup = StemsSetup {
        sample_rate: reader.sample_rate() as f32,
        channels: c,
        max_block: OFFLINE_BLOCK,
        mode,
        models: vec![model],
        initial_model: 0,
        device,
    };
    let mut bridge = setup.build_bridge(Arc::new(Telemetry::default())).map_err(RenderError::Setup)?;
    if mode != SeparationMode::Offline {
        bridge.set_host_state(true, true);
    }
    Ok((reader, bridge))
}

/// The file a stem is written to in a stems folder: "Target voice" ->
/// `target_voice.wav`.
pub fn stem_file_name(stem: &str) -> String {
    format!("{}.wav", stem.to_lowercase().replace(' ', "_"))
}

/// `manifold stems`: separates a file of any length into one WAV per stem in
/// `out_dir`, streaming (bounded memory), through Stems' bridge: offline
/// (full context, `SeparationMode::Offline`) or with a live setting's plan.
pub fn render_stems_to_dir(
    input: &Path,
    out_dir: &Path,
    model: crate::plugins::stems::StemsModel,
    mode: crate::plugins::stems::SeparationMode,
    device: Device,
    progress: impl FnMut(u64, Option<u64>),
) -> Result<StemFiles, RenderError> {
    use crate::plugins::stems::STEM_COUNT;
    let (mut reader, bridge) = open_separation(input, model.clone(), mode, device)?;
    let (c, rate) = (reader.channels(), reader.sample_rate());
    let mut files = Vec::new();
    let mut sinks = Vec::new();
    for name in &model.stems {
        let path = out_dir.join(stem_file_name(name));
        sinks.push(WavSink::create(&path, c, rate)?);
        files.push(path);
    }
    let report = render_stems(
        bridge,
        &mut reader,
        |stems, _dry, n| {
            for (s, sink) in sinks.iter_mut().enumerate().take(STEM_COUNT) {
                sink.write(&stems[s * c..(s + 1) * c], n)?;
            }
            Ok(())
        },
        progress,
    )?;
    for sink in sinks {
        sink.finish()?;
    }
    Ok(StemFiles { files, report, sample_rate: rate, channels: c })
}

/// `manifold isolate`: keeps one speaker (enrolled from `voice`, a recording
/// of that person alone) and writes it to `output`, aligned to the input.
pub fn render_isolated(input: &Path, voice: &Path, output: &Path, device: Device, progress: impl FnMut(u64, Option<u64>)) -> Result<RenderReport, RenderError> {
    let embedding = enrol_voice(voice, device)?;
    render_isolated_with(input, &embedding, output, device, progress)
}

/// The speaker embedding of `voice`, a recording of the target speaker alone
/// (done once for a whole batch). Main thread.
pub fn enrol_voice(voice: &Path, device: Device) -> Result<Vec<f32>, RenderError> {
    use crate::pipelines::speaker_embedder::{speaker_embedding, EMBEDDER_MODEL_ID};
    let reference = read_audio(voice)?;
    let mono: Vec<f32> = (0..reference.frames())
        .map(|i| reference.channels.iter().map(|c| c[i]).sum::<f32>() / reference.channels.len() as f32)
        .collect();
    crate::runtime::onnx::environment().map_err(|e| RenderError::Model(e.to_string()))?;
    let installed = crate::runtime::store::find_model(EMBEDDER_MODEL_ID).map_err(|e| RenderError::Model(e.to_string()))?;
    speaker_embedding(&installed.dir, device, &mono, reference.sample_rate).map_err(|e| RenderError::Model(format!("enrolling {}: {e}", voice.display())))
}

/// The speaker embedding of every file named in `list` (one path per line,
/// relative to the list's folder unless absolute), written to `output` as
/// 256 little-endian f32 per file, in order (mono mix of each file). For
/// the isolation model's training data; CPU, one embedder load.
pub fn speaker_embeddings_of_list(list: &Path, output: &Path) -> Result<(), RenderError> {
    use crate::pipelines::speaker_embedder::{SpeakerEmbedder, EMBEDDER_MODEL_ID};
    use std::io::Write;
    let text = std::fs::read_to_string(list).map_err(|e| RenderError::Model(format!("{}: {e}", list.display())))?;
    let base = list.parent().unwrap_or(Path::new("."));
    crate::runtime::onnx::environment().map_err(|e| RenderError::Model(e.to_string()))?;
    let installed = crate::runtime::store::find_model(EMBEDDER_MODEL_ID).map_err(|e| RenderError::Model(e.to_string()))?;
    let mut embedder = SpeakerEmbedder::load(&installed.dir, Device::Cpu).map_err(|e| RenderError::Model(e.to_string()))?;
    let mut bytes = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = base.join(line);
        let audio = read_audio(&path)?;
        let mono: Vec<f32> =
            (0..audio.frames()).map(|i| audio.channels.iter().map(|c| c[i]).sum::<f32>() / audio.channels.len() as f32).collect();
        let e = embedder.embed(&mono, audio.sample_rate).map_err(|e| RenderError::Model(format!("{}: {e}", path.display())))?;
        bytes.extend(e.iter().flat_map(|v| v.to_le_bytes()));
    }
    let mut f = std::fs::File::create(output).map_err(|e| RenderError::Model(format!("{}: {e}", output.display())))?;
    f.write_all(&bytes).map_err(|e| RenderError::Model(format!("{}: {e}", output.display())))
}

/// Copy synthesis of each file in `list` (one path per line, relative to the
/// list's folder): its log-mel frames and per-frame F0 straight into a
/// vocoder (`"hifigan"` whole-file, `"light"` or `"source-filter"`), written as
/// `output/<k>.wav` at 22050 Hz. What a vocoder alone does to speech, apart
/// from conversion (`xtask/py/vocoder_copy_wer.py` scores it). With `f0_dir`,
/// file `k`'s F0 per frame comes from `f0_dir/<k>.f0` (little-endian f32,
/// 0 = unvoiced; missing frames unvoiced) instead of the pitch tracker.
pub fn copy_synthesis_of_list(list: &Path, output: &Path, vocoder: &str, f0_dir: Option<&Path>) -> Result<(), RenderError> {
    use crate::dsp::mel::{self, HOP, SAMPLE_RATE};
    use crate::pipelines::vocoder_light::LightVocoder;
    use crate::pipelines::vocoder_source_filter::SourceFilterVocoder;
    let model = |e: &dyn std::fmt::Display| RenderError::Model(e.to_string());
    let text = std::fs::read_to_string(list).map_err(|e| model(&format!("{}: {e}", list.display())))?;
    let base = list.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(output).map_err(|e| model(&format!("{}: {e}", output.display())))?;
    let installed = |id: &str| -> Result<std::path::PathBuf, RenderError> {
        crate::runtime::onnx::environment().map_err(|e| model(&e))?;
        Ok(crate::runtime::store::find_model(id).map_err(|e| model(&e))?.dir)
    };
    let (mut hifigan, mut light) = match vocoder {
        "hifigan" => {
            let dir = installed(crate::pipelines::vocoder_hifigan::MODEL_ID)?;
            (Some(crate::pipelines::vocoder_hifigan::HifiGan::load(&dir, Device::Cpu).map_err(|e| model(&e))?), None)
        }
        "light" => {
            let dir = installed(crate::pipelines::vocoder_light::MODEL_ID)?;
            (None, Some(LightVocoder::load(&dir, Device::Cpu, 1).map_err(|e| model(&e))?))
        }
        "source-filter" => (None, None),
        other => return Err(model(&format!("--vocoder {other}? (hifigan, light, source-filter)"))),
    };
    for (k, line) in text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        let audio = read_audio(&base.join(line))?;
        let mono: Vec<f32> =
            (0..audio.frames()).map(|i| audio.channels.iter().map(|c| c[i]).sum::<f32>() / audio.channels.len() as f32).collect();
        let x = crate::dsp::resample::resample_whole(&mono, audio.sample_rate, SAMPLE_RATE).map_err(|e| model(&e))?;
        let frames = mel::log_mel(&x);
        let Some(&last) = frames.last() else {
            return Err(model(&format!("{line}: too short for one mel frame")));
        };
        let y = if let Some(net) = hifigan.as_mut() {
            net.vocode(&frames).map_err(|e| model(&e))?
        } else {
            // Streaming vocoders, one frame per call; the frames after the
            // last repeat it until its delay has come out.
            let f0 = match f0_dir {
                None => crate::pipelines::convert_voice::frame_pitch(&x, frames.len()),
                Some(dir) => {
                    let path = dir.join(format!("{k}.f0"));
                    let bytes = std::fs::read(&path).map_err(|e| model(&format!("{}: {e}", path.display())))?;
                    let given: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                    (0..frames.len()).map(|j| given.get(j).copied().unwrap_or(0.0)).collect()
                }
            };
            let mut sf = SourceFilterVocoder::default();
            if let Some(v) = light.as_mut() {
                v.reset();
            }
            let delay = light.as_ref().map_or(sf.delay_samples(), |_| crate::pipelines::vocoder_light::DELAY_SAMPLES);
            let mut y = vec![0.0; (frames.len() + delay.div_ceil(HOP)) * HOP];
            for (j, chunk) in y.chunks_exact_mut(HOP).enumerate() {
                let (frame, f) = frames.get(j).map_or((last, 0.0), |m| (*m, f0[j]));
                match light.as_mut() {
                    Some(v) => v.process(std::slice::from_ref(&frame), &[f], chunk).map_err(|e| model(&e))?,
                    None => sf.process_frame(&frame, f, chunk),
                }
            }
            y.drain(..delay);
            y.truncate(frames.len() * HOP);
            y
        };
        write_wav(&output.join(format!("{k}.wav")), &AudioData { sample_rate: SAMPLE_RATE, channels: vec![y] })?;
    }
    Ok(())
}

/// The converter's per-frame F0 (what the vocoder is given) of each file in
/// `list` (one path per line, relative to the list's folder, 22050 Hz), as
/// `output/<k>.f0`: little-endian f32 per mel frame, 0 = unvoiced.
pub fn frame_pitch_of_list(list: &Path, output: &Path) -> Result<(), RenderError> {
    use crate::dsp::mel::{self, SAMPLE_RATE};
    let model = |e: &dyn std::fmt::Display| RenderError::Model(e.to_string());
    let text = std::fs::read_to_string(list).map_err(|e| model(&format!("{}: {e}", list.display())))?;
    let base = list.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(output).map_err(|e| model(&format!("{}: {e}", output.display())))?;
    for (k, line) in text.lines().map(str::trim).filter(|l| !l.is_empty()).enumerate() {
        let audio = read_audio(&base.join(line))?;
        if audio.sample_rate != SAMPLE_RATE || audio.channels.len() != 1 {
            return Err(model(&format!("{line}: needs mono {SAMPLE_RATE} Hz")));
        }
        let x = &audio.channels[0];
        let f0 = crate::pipelines::convert_voice::frame_pitch(x, mel::log_mel(x).len());
        let bytes: Vec<u8> = f0.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(output.join(format!("{k}.f0")), bytes).map_err(|e| model(&format!("{}: {e}", output.display())))?;
    }
    Ok(())
}

/// [`render_isolated`] with the target speaker's embedding already made.
pub fn render_isolated_with(input: &Path, embedding: &[f32], output: &Path, device: Device, progress: impl FnMut(u64, Option<u64>)) -> Result<RenderReport, RenderError> {
    use crate::plugins::stems::StemsModel;
    let (mut reader, bridge) = open_separation(input, StemsModel::voice_isolation(), crate::plugins::stems::SeparationMode::Offline, device)?;
    let (c, rate) = (reader.channels(), reader.sample_rate());
    // Before the first block: the worker applies it before it reads any audio.
    bridge.shared().set_target_embedding(embedding.to_vec());
    let mut sink = WavSink::create(output, c, rate)?;
    let rendered = render_stems(bridge, &mut reader, |stems, _dry, n| sink.write(&stems[..c], n), progress);
    finish_or_remove(output, sink, rendered)
}

/// What `manifold convert` does besides the input and output.
#[derive(Debug, Clone)]
pub struct ConvertSettings {
    /// Voice model: "default" (any voice from `target`) or a user RVC model.
    pub model: String,
    /// Reference recording of the target voice (the default model needs it).
    pub target: Option<std::path::PathBuf>,
    pub controls: crate::pipelines::ConversionControls,
    /// Dry/wet, 0..1.
    pub wet: f32,
    pub device: Device,
    /// `Offline` (full-context vocoder blocks), or `Live`: the plugin's
    /// real-time settings, waited for on every block like a host's offline
    /// render of a plugin it activated in real time.
    pub mode: crate::plugins::voice::ConversionMode,
}

/// `manifold convert`: voice conversion of a whole file through Voice's
/// bridge (offline: full-context vocoder blocks, deterministic), streamed
/// from `input` to a WAV at `output`, aligned, same length.
pub fn render_converted(input: &Path, output: &Path, settings: &ConvertSettings, progress: impl FnMut(u64, Option<u64>)) -> Result<RenderReport, RenderError> {
    render_converted_with(input, output, &PreparedConversion::new(settings)?, progress)
}

/// A conversion's model and learned target voice, made once for a batch.
#[derive(Clone)]
pub struct PreparedConversion {
    settings: ConvertSettings,
    model: crate::plugins::voice::VoiceModel,
    target: Option<Arc<crate::pipelines::convert_voice::TargetVoice>>,
}

impl PreparedConversion {
    /// Finds the model and learns the target voice. Main thread.
    pub fn new(settings: &ConvertSettings) -> Result<Self, RenderError> {
        use crate::plugins::voice::VoiceModel;
        let models = VoiceModel::available();
        let chosen = models.iter().find(|m| m.cli_name() == settings.model).cloned().ok_or_else(|| {
            let names: Vec<String> = models.iter().map(|m| m.cli_name()).collect();
            RenderError::Setup(format!("unknown voice model '{}' (choose from: {})", settings.model, names.join(", ")))
        })?;
        let target = match (&settings.target, chosen.needs_target()) {
            (Some(path), _) => {
                let reference = read_audio(path)?;
                let mono: Vec<f32> = (0..reference.frames())
                    .map(|i| reference.channels.iter().map(|c| c[i]).sum::<f32>() / reference.channels.len() as f32)
                    .collect();
                Some(crate::plugins::voice::learn_target(&mono, reference.sample_rate).map_err(|e| RenderError::Model(format!("target voice {}: {e}", path.display())))?)
            }
            (None, true) => return Err(RenderError::Setup("the default voice model needs a target voice: --target REFERENCE.wav (10 s or more of that voice)".into())),
            (None, false) => None,
        };
        Ok(Self { settings: settings.clone(), model: chosen, target })
    }

    /// The files the conversion's output depends on (see `VoiceModel::files`).
    pub fn model_files(&self) -> Vec<std::path::PathBuf> {
        self.model.files()
    }
}

/// [`render_converted`] with the model found and the target learned.
pub fn render_converted_with(input: &Path, output: &Path, prepared: &PreparedConversion, progress: impl FnMut(u64, Option<u64>)) -> Result<RenderReport, RenderError> {
    use crate::plugins::voice::{ConversionMode, VoiceSetup};
    let settings = &prepared.settings;
    let mut reader = AudioReader::open(input)?;
    let c = reader.channels();
    if !(1..=2).contains(&c) {
        return Err(RenderError::Channels { channels: c });
    }
    let rate = reader.sample_rate();
    let setup = VoiceSetup { sample_rate: rate as f32, channels: c, max_block: OFFLINE_BLOCK, mode: settings.mode, models: vec![prepared.model.clone()], initial_model: 0, device: settings.device };
    let telemetry = Arc::new(Telemetry::default());
    telemetry.set_conversion(settings.controls);
    let mut bridge = setup.build_bridge(telemetry).map_err(RenderError::Setup)?;
    if matches!(settings.mode, ConversionMode::Live(_)) {
        bridge.set_host_state(true, true);
    }
    // Before the first block: the worker applies it before it reads any audio.
    if prepared.target.is_some() {
        bridge.shared().set_target_voice(prepared.target.clone());
    }
    let mut sink = WavSink::create(output, c, rate)?;
    let rendered = render_effect(bridge, &mut reader, settings.wet, |block, n| sink.write(block, n), progress);
    finish_or_remove(output, sink, rendered)
}
