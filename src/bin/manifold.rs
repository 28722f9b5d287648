//! `manifold`: offline renders through the same pipelines as the plugins.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use manifold::offline::{self, RenderError};
use manifold::plugins::clean::CleanModel;
use manifold::plugins::stems::{LiveQuality, SeparationMode};
use manifold::plugins::voice::{ConversionMode, LiveVoice};
use manifold::runtime::onnx::Device;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "manifold", version, about = "Neural audio processing: offline renders with the Manifold plugins' pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Remove noise from speech (Manifold Clean).
    Clean {
        /// Input audio (WAV, FLAC, MP3, OGG).
        input: PathBuf,
        /// Output WAV (32-bit float), aligned to the input, same length.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        options: CleanOptions,
        /// No progress bar.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Separate music into stems (Manifold Stems; offline, full context
    /// unless --quality says otherwise): one WAV per stem in the output folder.
    Stems {
        /// Input audio (WAV, FLAC, MP3, OGG), mono or stereo, any length.
        input: PathBuf,
        /// Output folder (created if needed).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        options: StemsOptions,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Keep one speaker and remove the others (Manifold's own target-speaker
    /// model): the voice is enrolled from a recording of that person alone (3 s
    /// or more, 5-10 s best). Does not work yet on real voices the model was
    /// not trained on: SI-SDR change at 0 dB -0.6 dB on held-out real voices,
    /// +3.3 dB on held-out synthetic ones (see the README).
    Isolate {
        #[command(flatten)]
        options: IsolateOptions,
        /// Input audio (WAV, FLAC, MP3, OGG), mono or stereo.
        input: PathBuf,
        /// Output WAV (32-bit float): the target voice, aligned to the input.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Convert a voice to another (Manifold Voice; offline, full context
    /// unless --live).
    /// The default model converts to any voice given a recording of it; user
    /// RVC models (in the user models folder) are their own target.
    Convert {
        #[command(flatten)]
        options: ConvertOptions,
        /// Input audio (WAV, FLAC, MP3, OGG), mono or stereo.
        input: PathBuf,
        /// Output WAV (32-bit float), aligned to the input, same length.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Render a whole library with one task: folders (walked for WAV, FLAC,
    /// MP3, OGG) or manifests (.txt/.m3u: one path per line). Resumable: run
    /// the same command again and it skips what is done and retries what
    /// failed. Exit status 0 when every input is done, 3 when some failed
    /// (their reasons are printed and in the ledger).
    Batch {
        #[command(subcommand)]
        task: BatchCommand,
    },
    /// List the models Manifold can use: installed ones with their licence,
    /// and user models (with the reason when one cannot be used).
    Models,
    /// Speaker embeddings (d-vectors) of recordings, for training the
    /// isolation model (`cargo xtask train-isolation`): LIST names one audio
    /// file per line; OUTPUT gets 256 little-endian f32 per file, in order.
    #[command(hide = true)]
    SpeakerEmbeddings {
        list: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Copy synthesis, to measure what a vocoder alone costs: each file of
    /// LIST (one per line) → its log-mel and F0 → the vocoder → OUT_DIR/<k>.wav
    /// (22050 Hz), with no conversion in between.
    #[command(hide = true)]
    CopySynthesis {
        list: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// hifigan, light or source-filter.
        #[arg(long, default_value = "source-filter")]
        vocoder: String,
        /// Read each file's F0 from DIR/<k>.f0 (as `frame-pitch` writes it)
        /// instead of the pitch tracker: what another tracker's F0 is worth.
        #[arg(long, value_name = "DIR")]
        f0: Option<PathBuf>,
    },
    /// The F0 the converter's pitch tracker reads for each mel frame of each
    /// file of LIST (one per line) → OUT_DIR/<k>.f0 (little-endian f32 per
    /// frame, 0 = unvoiced): training data for the light vocoder.
    #[command(hide = true)]
    FramePitch {
        list: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print the latency Manifold Clean reports to a host, and where it comes from.
    Latency {
        #[arg(long, default_value_t = 48000)]
        rate: u32,
        /// The host's maximum block size.
        #[arg(long, default_value_t = 128)]
        block: usize,
        #[arg(long, default_value_t = 2)]
        channels: usize,
    },
}

/// What every `manifold batch` task takes besides its own settings.
#[derive(clap::Args)]
struct BatchArgs {
    /// Folders, manifests (.txt, .lst, .m3u) or audio files.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder: results keep the inputs' folder layout, and the ledger
    /// (manifold-ledger*.jsonl) lives here.
    #[arg(short, long)]
    output: PathBuf,
    /// Files rendered at once (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Threads each file's model uses (default: the cores divided by --jobs).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Only the inputs whose name falls in shard K of N (a cluster run: one
    /// shard per task, each with its own ledger file in the output folder).
    #[arg(long)]
    shard: Option<manifold::batch::Shard>,
    /// No progress bar and no line per input (the summary still prints).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum BatchCommand {
    /// `manifold clean` on every input: OUT/<name>.wav.
    Clean {
        #[command(flatten)]
        batch: BatchArgs,
        #[command(flatten)]
        options: CleanOptions,
    },
    /// `manifold stems` on every input: OUT/<name>/<stem>.wav.
    Stems {
        #[command(flatten)]
        batch: BatchArgs,
        #[command(flatten)]
        options: StemsOptions,
    },
    /// `manifold convert` on every input: OUT/<name>.wav.
    Convert {
        #[command(flatten)]
        batch: BatchArgs,
        #[command(flatten)]
        options: ConvertOptions,
    },
    /// `manifold isolate` on every input: OUT/<name>.wav (does not work yet on new voices, see `isolate`).
    Isolate {
        #[command(flatten)]
        batch: BatchArgs,
        #[command(flatten)]
        options: IsolateOptions,
    },
}

/// `clean`'s settings (one file or a batch).
#[derive(clap::Args)]
struct CleanOptions {
    /// Enhancement model: dfn3 (DeepFilterNet3), gtcrn, nsnet2 or rnnoise.
    #[arg(long, default_value = "dfn3", value_parser = parse_model)]
    model: CleanModel,
    /// Remove at most this much noise, in dB (100 = no limit).
    #[arg(long = "atten-lim", default_value_t = 100.0)]
    atten_lim: f32,
    /// Run the model on the GPU (CUDA) when available.
    #[arg(long)]
    gpu: bool,
}

impl CleanOptions {
    fn device(&self) -> Device {
        if self.gpu { Device::Cuda } else { Device::Cpu }
    }
}

/// `stems`' settings.
#[derive(clap::Args)]
struct StemsOptions {
    /// Separation model: spleeter (default) or the name of a user model.
    #[arg(long, default_value = "spleeter")]
    model: String,
    /// full: offline, full context (best). low, balanced, quality: the
    /// plugin's live plan of that name (its "Live quality" setting), as a
    /// host exports the plugin it activated in real time.
    #[arg(long, default_value = "full", value_parser = parse_quality)]
    quality: SeparationMode,
    /// Stay on the CPU. By default the model runs on the GPU through the
    /// CUDA provider when ONNX Runtime has one, else on the CPU (the
    /// status line says which, and why).
    #[arg(long)]
    cpu: bool,
}

/// `isolate`'s settings.
#[derive(clap::Args)]
struct IsolateOptions {
    /// Recording of the target speaker alone.
    #[arg(long)]
    voice: PathBuf,
    /// Stay on the CPU (default: GPU when available, as for `stems`).
    #[arg(long)]
    cpu: bool,
}

/// `convert`'s settings.
#[derive(clap::Args)]
struct ConvertOptions {
    /// Recording of the target voice alone (10 s to a few minutes).
    #[arg(long)]
    target: Option<PathBuf>,
    /// Voice model: default, or the name of a user RVC model.
    #[arg(long, default_value = "default")]
    model: String,
    /// 0 keeps every word (only the pitch range moves), 1 sounds most
    /// like the target.
    #[arg(long, default_value_t = manifold::pipelines::convert_voice::DEFAULT_STRENGTH)]
    strength: f32,
    /// Transpose, in semitones (on top of the target's pitch range).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    transpose: f32,
    /// Speaker id (multi-speaker RVC models).
    #[arg(long, default_value_t = 0)]
    speaker: i64,
    /// Dry/wet, 0 to 1.
    #[arg(long, default_value_t = 1.0)]
    mix: f32,
    /// Stay on the CPU (default: GPU when available, as for `stems`).
    #[arg(long)]
    cpu: bool,
    /// Render with the plugin's live (real-time) settings instead of the
    /// full-context offline ones, as a host exports the plugin it
    /// activated in real time: --live=low, --live=balanced (the plugin's
    /// default, and what --live alone means) or --live=quality.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "balanced", value_parser = LiveVoice::from_cli_name)]
    live: Option<LiveVoice>,
}

impl ConvertOptions {
    fn settings(self) -> offline::ConvertSettings {
        offline::ConvertSettings {
            model: self.model,
            target: self.target,
            controls: manifold::pipelines::ConversionControls { strength: self.strength.clamp(0.0, 1.0), transpose_semitones: self.transpose, speaker_id: self.speaker },
            wet: self.mix.clamp(0.0, 1.0),
            device: if self.cpu { Device::Cpu } else { Device::Cuda },
            mode: self.live.map_or(ConversionMode::Offline, ConversionMode::Live),
        }
    }
}

/// Printed by `isolate` until the target-speaker model separates voices it
/// was not trained on (issue 16).
const ISOLATION_WARNING: &str = "manifold isolate: warning: voice isolation does not work yet on real voices its model was not trained on (SI-SDR change at 0 dB: -0.6 dB on held-out real voices, +3.3 dB on held-out synthetic ones; see the README)";

fn find_stems_model(model: &str) -> Result<manifold::plugins::stems::StemsModel, RenderError> {
    let models = manifold::plugins::stems::StemsModel::available();
    models
        .iter()
        .find(|m| m.cli_name() == model)
        .cloned()
        .ok_or_else(|| RenderError::Setup(format!("unknown model '{model}' (choose from: {})", models.iter().map(|m| m.cli_name()).collect::<Vec<_>>().join(", "))))
}

/// `manifold batch`: exit status 0 when every input is done, 3 when some failed.
fn run_batch(command: BatchCommand) -> Result<ExitCode, RenderError> {
    use manifold::batch::{self, BatchTask};
    let (task, args) = match command {
        BatchCommand::Clean { batch, options } => (BatchTask::Clean { model: options.model, atten_limit_db: options.atten_lim, device: options.device() }, batch),
        BatchCommand::Stems { batch, options } => {
            (BatchTask::Stems { model: find_stems_model(&options.model)?, mode: options.quality, device: if options.cpu { Device::Cpu } else { Device::Cuda } }, batch)
        }
        BatchCommand::Convert { batch, options } => {
            let settings = options.settings();
            (BatchTask::Convert { prepared: Box::new(offline::PreparedConversion::new(&settings)?), settings }, batch)
        }
        BatchCommand::Isolate { batch, options } => {
            eprintln!("{ISOLATION_WARNING}");
            let device = if options.cpu { Device::Cpu } else { Device::Cuda };
            (BatchTask::Isolate { embedding: offline::enrol_voice(&options.voice, device)?, voice: options.voice, device }, batch)
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = batch::BatchOptions { out_dir: args.output, jobs: args.jobs.unwrap_or(cores), threads: args.threads, shard: args.shard, quiet: args.quiet };
    let summary = batch::run(&task, &args.inputs, &options).map_err(|e| RenderError::Setup(e.to_string()))?;
    eprintln!("manifold batch {}: {}", task.cli_name(), summary.describe());
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

fn print_models() {
    use manifold::runtime::store;
    println!("Installed models (data folders: {}):", store::data_dirs().iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "));
    for id in ["deepfilternet3", "gtcrn", "nsnet2_48k", "spleeter_2stems", "isolate_target", "voicefilter_lite", "hifigan_universal", "content_phones", "vocoder_light"] {
        match store::find_model(id) {
            Ok(m) => println!("  {id:<18} {} Hz, latency {} samples, licence {}, from {}", m.manifest.sample_rate, m.manifest.latency_samples, m.manifest.license, m.manifest.source),
            Err(e) => println!("  {id:<18} not installed: {e}"),
        }
    }
    println!("Stems models (use the name with `manifold stems --model`):");
    for m in manifold::plugins::stems::StemsModel::available() {
        println!("  {:<18} {} -> {} / {}", m.cli_name(), m.name, m.stems[0], m.stems[1]);
    }
    match manifold::pipelines::separate_mdx::default_user_models_dir() {
        Some(d) => println!("User models folder: {} (an MDX-Net .onnx plus a .json or .toml sidecar)", d.display()),
        None => println!("User models folder: set MANIFOLD_USER_MODELS"),
    }
    for p in manifold::plugins::stems::StemsModel::user_model_problems() {
        println!("  cannot use {p}");
    }
    println!("Voice models (use the name with `manifold convert --model`):");
    for m in manifold::plugins::voice::VoiceModel::available() {
        println!("  {:<18} {}", m.cli_name(), m.name);
    }
    for p in manifold::plugins::voice::VoiceModel::user_model_problems() {
        println!("  cannot use {p}");
    }
}

/// Feeds a render's progress (frames done, total if known) to `bar`.
fn show_progress(bar: &ProgressBar) -> impl FnMut(u64, Option<u64>) + '_ {
    move |done, total| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    }
}

fn progress_bar(quiet: bool) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {percent}% ({eta} left)").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn parse_quality(name: &str) -> Result<SeparationMode, String> {
    if name == "full" {
        return Ok(SeparationMode::Offline);
    }
    LiveQuality::ALL
        .into_iter()
        .find(|q| q.cli_name() == name)
        .map(SeparationMode::Live)
        .ok_or_else(|| format!("unknown quality '{name}' (choose from: full, {})", LiveQuality::ALL.map(|q| q.cli_name()).join(", ")))
}

fn parse_model(name: &str) -> Result<CleanModel, String> {
    CleanModel::ALL
        .into_iter()
        .find(|m| m.cli_name() == name)
        .ok_or_else(|| format!("unknown model '{name}' (choose from: {})", CleanModel::ALL.map(|m| m.cli_name()).join(", ")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // Its own exit status: some inputs can fail while the batch goes on.
        Command::Batch { task } => {
            return run_batch(task).unwrap_or_else(|e| {
                eprintln!("manifold batch: {e}");
                ExitCode::FAILURE
            })
        }
        other => other,
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("manifold: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), RenderError> {
    match command {
        Command::Clean { input, output, options, quiet } => {
            // Streamed from the file to the output: memory does not grow with its length.
            let header = offline::AudioReader::open(&input)?;
            let (rate, channels) = (header.sample_rate(), header.channels());
            drop(header);
            let bar = progress_bar(quiet);
            let report = offline::render_clean_file(&input, &output, options.model, options.atten_lim, options.device(), show_progress(&bar))?;
            bar.finish_and_clear();
            if !quiet {
                eprintln!("{}", report.status);
                eprintln!(
                    "{} Hz, {} ch, {:.1} s (offline {}; compensated, output aligned to input); real-time factor {:.3} ({:.1}x real time)",
                    rate,
                    channels,
                    report.audio_seconds,
                    report.latency.describe(rate as f32),
                    report.real_time_factor(),
                    1.0 / report.real_time_factor()
                );
            }
            Ok(())
        }
        Command::Stems { input, output, options, quiet } => {
            let chosen = find_stems_model(&options.model)?;
            let bar = progress_bar(quiet);
            let device = if options.cpu { Device::Cpu } else { Device::Cuda };
            let done = offline::render_stems_to_dir(&input, &output, chosen, options.quality, device, show_progress(&bar))?;
            bar.finish_and_clear();
            if !quiet {
                let r = &done.report;
                eprintln!("{}", r.status);
                eprintln!(
                    "{} Hz, {} ch, {:.1} s in {:.1} s ({:.1}x real time); offline {}",
                    done.sample_rate,
                    done.channels,
                    r.audio_seconds,
                    r.wall_seconds,
                    1.0 / r.real_time_factor(),
                    r.latency.describe(done.sample_rate as f32)
                );
                for f in &done.files {
                    eprintln!("wrote {}", f.display());
                }
            }
            Ok(())
        }
        Command::Isolate { options, input, output, quiet } => {
            eprintln!("{ISOLATION_WARNING}");
            let bar = progress_bar(quiet);
            let device = if options.cpu { Device::Cpu } else { Device::Cuda };
            let report = offline::render_isolated(&input, &options.voice, &output, device, show_progress(&bar))?;
            bar.finish_and_clear();
            if !quiet {
                eprintln!("{}", report.status);
                eprintln!("{:.1} s in {:.1} s ({:.1}x real time); wrote {}", report.audio_seconds, report.wall_seconds, 1.0 / report.real_time_factor(), output.display());
            }
            Ok(())
        }
        Command::Convert { options, input, output, quiet } => {
            let bar = progress_bar(quiet);
            let settings = options.settings();
            let report = offline::render_converted(&input, &output, &settings, show_progress(&bar))?;
            bar.finish_and_clear();
            if !quiet {
                eprintln!("{}", report.status);
                eprintln!("{:.1} s in {:.1} s ({:.1}x real time); wrote {}", report.audio_seconds, report.wall_seconds, 1.0 / report.real_time_factor(), output.display());
            }
            Ok(())
        }
        Command::Batch { task } => run_batch(task).map(|_| ()),
        Command::SpeakerEmbeddings { list, output } => offline::speaker_embeddings_of_list(&list, &output),
        Command::CopySynthesis { list, output, vocoder, f0 } => offline::copy_synthesis_of_list(&list, &output, &vocoder, f0.as_deref()),
        Command::FramePitch { list, output } => offline::frame_pitch_of_list(&list, &output),
        Command::Models => {
            print_models();
            Ok(())
        }
        Command::Latency { rate, block, channels } => {
            let plan = manifold::plugins::clean::latency_plan(rate as f32, channels, block).map_err(RenderError::Setup)?;
            println!("Manifold Clean (every model) at {rate} Hz, {block}-sample blocks: {}", plan.describe(rate as f32));
            use manifold::plugins::stems::{StemsModel, StemsSetup};
            for q in LiveQuality::ALL {
                let setup = StemsSetup {
                    sample_rate: rate as f32,
                    channels,
                    max_block: block,
                    mode: SeparationMode::Live(q),
                    models: StemsModel::available(),
                    initial_model: 0,
                    device: Device::Cpu,
                };
                let plan = setup.latency_plan().map_err(RenderError::Setup)?;
                println!("Manifold Stems, live {} ({:.2} s): {}", q.cli_name(), plan.total as f64 / rate as f64, plan.describe(rate as f32));
            }
            use manifold::plugins::voice::{VoiceModel, VoiceSetup};
            for live in LiveVoice::ALL {
                let setup = VoiceSetup {
                    sample_rate: rate as f32,
                    channels,
                    max_block: block,
                    mode: ConversionMode::Live(live),
                    models: VoiceModel::available(),
                    initial_model: 0,
                    device: Device::Cpu,
                };
                match setup.latency_plan() {
                    Ok(plan) => println!(
                        "Manifold Voice, live {} ({:.3} s): {}",
                        live.cli_name(),
                        plan.total as f64 / rate as f64,
                        plan.describe(rate as f32)
                    ),
                    Err(e) => println!("Manifold Voice: {e}"),
                }
            }
            Ok(())
        }
    }
}
