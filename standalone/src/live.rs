//! `demix live`: separates an audio input in real time and plays the remixed stems, through cpal
//! (ALSA or JACK).
//!
//! Threads: the input callback queues samples in a lock-free ring; the output callback takes
//! them, runs the same [`Separator`] as the plugin, mixes the stems with gains the user changes
//! while it runs, and feeds the optional recorder (see [`callbacks`] for the latency design).
//! The main thread builds everything, then runs the terminal display (or prints a status line
//! per second with `--no-tui`) until the duration ends, the user quits, or a device fails; it
//! then stops the streams, finishes the recording and prints a one-line summary.

mod callbacks;
mod mixer;
mod recorder;
mod shared;
mod tui;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, SampleFormat, SampleRate, StreamConfig, StreamError, SupportedBufferSize,
    SupportedStreamConfigRange,
};
use demix_dsp::{DeadlinePolicy, EngineConfig, Separator, StatsHandle};

use crate::devices::{open_host, HostChoice};
use crate::model_args::ModelArgs;
use callbacks::{prefault, InputSide, OutputSide};
use mixer::{Mixer, Preset};
use recorder::Recorder;
use shared::Shared;

/// Set by Ctrl-C or SIGTERM: the session ends cleanly.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long the output may go without a callback before the session gives up on it.
const STALL_LIMIT: Duration = Duration::from_secs(3);

/// Arguments of `demix live`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input device (a name from `demix devices`, or a unique part of one); default: the host's
    /// default input.
    #[arg(long, value_name = "DEVICE")]
    input: Option<String>,
    /// Output device; default: the host's default output.
    #[arg(long, value_name = "DEVICE")]
    output: Option<String>,
    /// Audio host; default: the platform's default (ALSA on Linux).
    #[arg(long, value_enum)]
    host: Option<HostChoice>,
    /// Device buffer size in frames (JACK: must be the server's); default: the device's.
    #[arg(long, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(16..=8192))]
    buffer: Option<u32>,
    #[command(flatten)]
    model: ModelArgs,
    /// Play only this stem (e.g. vocals).
    #[arg(long, value_name = "STEM", conflicts_with = "remove")]
    isolate: Option<String>,
    /// Play everything but this stem (e.g. vocals).
    #[arg(long, value_name = "STEM")]
    remove: Option<String>,
    /// Stem gains in dB, applied after --isolate/--remove, e.g. vocals=-inf,drums=+3.
    #[arg(
        long,
        value_name = "STEM=DB",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    gain: Vec<String>,
    /// Time (in model hops) the inference worker gets per frame: more survives slower
    /// machines, at the cost of latency.
    #[arg(long, value_name = "HOPS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(0..=64))]
    slack: u16,
    /// Record every stem and the input as WAV files into this folder.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Stop after this many seconds of audio.
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Print a status line per second on stderr instead of the terminal display.
    #[arg(long)]
    no_tui: bool,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// `--duration` reached.
    Duration,
    /// The user quit (key, Ctrl-C, SIGTERM).
    User,
    /// A device or stream failed; the message says which and how.
    Failed(String),
}

/// What the control thread shows about a running session.
pub struct Status {
    /// Seconds of audio played.
    pub seconds: f64,
    /// Separator latency, frames.
    pub engine_latency: usize,
    /// Measured capture-to-playback delay outside the separator, frames (0: not measured yet).
    pub io_latency: u64,
    /// Frames the output keeps queued in the ring.
    pub ring_target: u64,
    /// Host sample rate.
    pub rate: u32,
    /// Ring underruns, overruns and late output callbacks: xruns demix caused.
    pub own_xruns: u64,
    /// Xruns the backend reported.
    pub host_xruns: u64,
    /// Separator frames whose mask was late.
    pub deadline_misses: u64,
    /// Highest output-callback load (processing time / audio time) since the last status.
    pub load: f32,
    /// Input peak since the last status.
    pub input_peak: f32,
    /// Output peak since the last status.
    pub output_peak: f32,
    /// Per-stem peaks since the last status.
    pub stem_peaks: Vec<f32>,
    /// Frames the recorder had to drop.
    pub recorder_dropped: u64,
}

impl Status {
    /// Total input-to-output latency in milliseconds: separator plus measured I/O delay (or,
    /// before a measurement exists, the ring's target).
    pub fn latency_ms(&self) -> f64 {
        let io = if self.io_latency > 0 {
            self.io_latency
        } else {
            self.ring_target
        };
        (self.engine_latency as f64 + io as f64) * 1000.0 / f64::from(self.rate)
    }
}

/// A running session as the control thread sees it.
pub struct Session {
    shared: Arc<Shared>,
    stats: StatsHandle,
    rate: u32,
    engine_latency: usize,
    names: Vec<String>,
    target_frames: Option<u64>,
    errors: mpsc::Receiver<String>,
    recorder: Option<Recorder>,
    started: Instant,
    last_progress: (u64, Instant),
    last_input: (u64, Instant),
}

impl Session {
    /// Stem names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The shared state (gains are published through it).
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// A snapshot of counters and meters; reading the meters clears them.
    pub fn status(&self) -> Status {
        let shared = &self.shared;
        Status {
            seconds: shared.output_frames.load(Ordering::Relaxed) as f64 / f64::from(self.rate),
            engine_latency: self.engine_latency,
            io_latency: shared.io_latency_frames.load(Ordering::Relaxed),
            ring_target: shared.ring_target_frames.load(Ordering::Relaxed),
            rate: self.rate,
            own_xruns: shared.own_xruns(),
            host_xruns: shared.host_xruns.load(Ordering::Relaxed),
            deadline_misses: self.stats.deadline_misses(),
            load: shared.take_load(),
            input_peak: shared.take_input_peak(),
            output_peak: shared.take_output_peak(),
            stem_peaks: (0..self.names.len())
                .map(|i| shared.take_stem_peak(i))
                .collect(),
            recorder_dropped: shared.recorder_dropped.load(Ordering::Relaxed),
        }
    }

    /// Messages from the stream error callbacks since the last call.
    pub fn messages(&self) -> Vec<String> {
        self.errors.try_iter().collect()
    }

    /// Whether the session must end now, and why. Call it a few times per second.
    pub fn check(&mut self) -> Option<Ending> {
        if INTERRUPTED.load(Ordering::Relaxed) {
            return Some(Ending::User);
        }
        if self.shared.device_lost.load(Ordering::Relaxed) {
            return Some(Ending::Failed(
                "an audio device disappeared or its stream failed".into(),
            ));
        }
        if self.recorder.as_ref().is_some_and(Recorder::has_failed) {
            return Some(Ending::Failed("recording failed".into()));
        }
        let now = Instant::now();
        let played = self.shared.output_frames.load(Ordering::Relaxed);
        if self.target_frames.is_some_and(|target| played >= target) {
            return Some(Ending::Duration);
        }
        if played != self.last_progress.0 {
            self.last_progress = (played, now);
        } else if now - self.last_progress.1 > STALL_LIMIT {
            return Some(Ending::Failed(if played == 0 {
                "the output device never asked for audio".into()
            } else {
                "the output device stopped asking for audio".into()
            }));
        }
        let captured = self.shared.input_frames.load(Ordering::Relaxed);
        if captured != self.last_input.0 {
            self.last_input = (captured, now);
        } else if now - self.last_input.1 > STALL_LIMIT {
            return Some(Ending::Failed(if captured == 0 {
                "the input device never delivered audio".into()
            } else {
                "the input device stopped delivering audio".into()
            }));
        }
        None
    }

    /// Seconds since the streams started.
    pub fn wall_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// One side of the duplex connection, as negotiated.
struct Endpoint {
    device: cpal::Device,
    name: String,
    channels: u16,
    format: SampleFormat,
}

/// Runs `demix live`.
pub fn run(args: Args) -> Result<()> {
    let gains = args
        .gain
        .iter()
        .map(|g| mixer::parse_gain(g))
        .collect::<Result<Vec<_>>>()?;
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0) {
            bail!("--duration must be a positive number of seconds, not {d}");
        }
    }
    let host = open_host(args.host)?;
    let host_name = host.id().name();
    let input = find_device(&host, args.input.as_deref(), Direction::Input)?;
    let output = find_device(&host, args.output.as_deref(), Direction::Output)?;
    let (input, output, rate) = negotiate(input, output)?;
    let buffer = match args.buffer {
        Some(frames) => {
            check_buffer(&input, frames, rate)?;
            check_buffer(&output, frames, rate)?;
            BufferSize::Fixed(frames)
        }
        None => BufferSize::Default,
    };

    // Before the model and the separator start their threads, which inherit the priority.
    if !raise_priority() {
        eprintln!("note: no permission to raise demix's priority; under heavy load, --slack helps");
    }
    let loaded = args.model.load()?;
    let names = loaded.model.spec().sources.clone();
    let mut mixer = Mixer::new(&names);
    let preset = match (&args.isolate, &args.remove) {
        (Some(stem), _) => Preset::Isolate(stem.clone()),
        (_, Some(stem)) => Preset::Remove(stem.clone()),
        _ => Preset::All,
    };
    mixer.apply_preset(&preset)?;
    for (stem, db) in &gains {
        mixer.set_gain_db(stem, *db)?;
    }
    let channels = usize::from(input.channels.min(2));
    let config = EngineConfig {
        compute_slack_hops: usize::from(args.slack),
        deadline: DeadlinePolicy::RealTime,
    };
    let model_name = format!("{} ({})", loaded.manifest.name, loaded.origin);
    // The compute slack must also cover one device buffer, which the engine processes at once.
    let max_block = match buffer {
        BufferSize::Fixed(frames) => frames as usize,
        BufferSize::Default => 0,
    };
    let separator = Separator::with_max_block(loaded.model, config, rate, channels, max_block)
        .map_err(|e| anyhow!("cannot start the separation engine: {e}"))?;
    let engine_latency = separator.latency();
    let stats = separator.stats();

    let shared = Arc::new(Shared::new());
    mixer.publish(&shared);
    let (mut ring_in, mut ring_out) = rtrb::RingBuffer::new(rate as usize * channels);
    prefault(&mut ring_in, &mut ring_out);
    let (recorder, recorder_ring) = match &args.record {
        Some(dir) => {
            let lanes = channels * (names.len() + 1);
            let (mut producer, mut consumer) =
                rtrb::RingBuffer::new(rate as usize * recorder::RING_SECONDS * lanes);
            prefault(&mut producer, &mut consumer);
            let recorder = Recorder::start(dir, &names, channels, rate, consumer)?;
            (Some(recorder), Some(producer))
        }
        None => (None, None),
    };
    let input_side = InputSide::new(
        ring_in,
        usize::from(input.channels),
        channels,
        rate,
        shared.clone(),
    );
    let mut output_side = OutputSide::new(
        ring_out,
        separator,
        usize::from(output.channels),
        recorder_ring,
        shared.clone(),
    );
    output_side.prime();
    let (error_tx, error_rx) = mpsc::sync_channel(64);
    let config_for = |endpoint: &Endpoint| StreamConfig {
        channels: endpoint.channels,
        sample_rate: SampleRate(rate),
        buffer_size: buffer,
    };
    let in_stream = build_input(
        &input,
        &config_for(&input),
        input_side,
        on_error(shared.clone(), error_tx.clone(), "input"),
    )?;
    let out_stream = build_output(
        &output,
        &config_for(&output),
        output_side,
        on_error(shared.clone(), error_tx, "output"),
    )?;
    if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
        eprintln!("warning: Ctrl-C handler unavailable ({e}); quit with q");
    }
    out_stream
        .play()
        .with_context(|| format!("cannot start output {}", output.name))?;
    in_stream
        .play()
        .with_context(|| format!("cannot start input {}", input.name))?;
    let buffer_text = match buffer {
        BufferSize::Fixed(n) => format!("{n}-frame buffers"),
        BufferSize::Default => "default buffers".into(),
    };
    let header = format!(
        "{host_name}: {} -> {}, {rate} Hz, {channels} channel(s), {buffer_text}; model {model_name}; engine latency {engine_latency} frames ({:.1} ms)",
        input.name,
        output.name,
        engine_latency as f64 * 1000.0 / f64::from(rate)
    );
    let now = Instant::now();
    let mut session = Session {
        shared,
        stats,
        rate,
        engine_latency,
        names,
        target_frames: args.duration.map(|d| (d * f64::from(rate)).round() as u64),
        errors: error_rx,
        recorder,
        started: now,
        last_progress: (0, now),
        last_input: (0, now),
    };
    let use_tui = !args.no_tui && tui::available();
    let ending = if use_tui {
        tui::run(&header, &mut session, &mut mixer)?
    } else {
        eprintln!("{header}");
        if !args.no_tui {
            eprintln!("(not a terminal: printing a status line per second; Ctrl-C stops)");
        }
        print_status_lines(&mut session)
    };
    // The output first: without input it would count the missing blocks as underruns.
    drop(out_stream);
    drop(in_stream);
    let status = session.status();
    for message in session.messages() {
        eprintln!("{message}");
    }
    let recorded = session.recorder.take().map(Recorder::finish);
    print_summary(&session, &status);
    if let Some(result) = recorded {
        let files = result?;
        if let Some(first) = files.first() {
            let dir = first.parent().unwrap_or(first.as_path());
            eprintln!("recorded {} file(s) in {}", files.len(), dir.display());
        }
        if status.recorder_dropped > 0 {
            eprintln!(
                "warning: the recording misses {} frames (the disk did not keep up)",
                status.recorder_dropped
            );
        }
    }
    match ending {
        Ending::Failed(reason) => bail!("{reason}"),
        Ending::Duration | Ending::User => Ok(()),
    }
}

/// Asks the OS to favour this thread and the threads it starts from now on (the inference
/// worker, the recorder, ALSA's stream threads) over ordinary processes: nice -10, where
/// permitted (root, CAP_SYS_NICE or an rtprio/nice limit). Returns whether it worked.
#[cfg(unix)]
fn raise_priority() -> bool {
    // SAFETY: setpriority only changes the calling thread's nice value.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) == 0 }
}

/// Priorities are left alone off Unix.
#[cfg(not(unix))]
fn raise_priority() -> bool {
    true
}

/// The status-line loop of `--no-tui`.
fn print_status_lines(session: &mut Session) -> Ending {
    let mut next = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some(ending) = session.check() {
            return ending;
        }
        for message in session.messages() {
            eprintln!("{message}");
        }
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            let status = session.status();
            let stems: Vec<String> = session
                .names()
                .iter()
                .zip(&status.stem_peaks)
                .map(|(name, &peak)| format!("{name} {}", db_text(peak)))
                .collect();
            eprintln!(
                "{:6.1} s | latency {:.1} ms | xruns {} (host {}) | deadline misses {} | load {:.0}% | in {} | {}",
                status.seconds,
                status.latency_ms(),
                status.own_xruns,
                status.host_xruns,
                status.deadline_misses,
                status.load * 100.0,
                db_text(status.input_peak),
                stems.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The final, machine-readable summary line (tests parse it).
fn print_summary(session: &Session, status: &Status) {
    let shared = session.shared();
    eprintln!(
        "summary: seconds={:.2} wall_seconds={:.2} xruns={} ring_underruns={} ring_overruns={} late_callbacks={} host_xruns={} host_underruns={} deadline_misses={} model_errors={} model_busy_seconds={:.2} recorder_dropped={} engine_latency_frames={} io_latency_frames={} latency_ms={:.2}",
        status.seconds,
        session.wall_seconds(),
        status.own_xruns,
        shared.ring_underruns.load(Ordering::Relaxed),
        shared.ring_overruns.load(Ordering::Relaxed),
        shared.late_callbacks.load(Ordering::Relaxed),
        status.host_xruns,
        shared.host_underruns.load(Ordering::Relaxed),
        status.deadline_misses,
        session.stats.model_errors(),
        session.stats.model_busy_seconds(),
        status.recorder_dropped,
        status.engine_latency,
        status.io_latency,
        status.latency_ms()
    );
}

/// A peak as dBFS text.
pub fn db_text(peak: f32) -> String {
    if peak <= 1e-6 {
        "-inf dB".into()
    } else {
        format!("{:.0} dB", 20.0 * peak.log10())
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Input,
    Output,
}

/// The device called `wanted` (exactly, or the only one containing it, ignoring case), or the
/// host's default.
fn find_device(
    host: &cpal::Host,
    wanted: Option<&str>,
    direction: Direction,
) -> Result<cpal::Device> {
    let kind = match direction {
        Direction::Input => "input",
        Direction::Output => "output",
    };
    let Some(wanted) = wanted else {
        let default = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default.ok_or_else(|| {
            anyhow!(
                "the {} host has no default {kind} device (no sound card?); see `demix devices`",
                host.id().name()
            )
        });
    };
    let devices = match direction {
        Direction::Input => host.input_devices(),
        Direction::Output => host.output_devices(),
    }
    .map_err(|e| anyhow!("cannot list {kind} devices: {e}"))?;
    let named: Vec<(String, cpal::Device)> = devices
        .filter_map(|d| d.name().ok().map(|n| (n, d)))
        .collect();
    if let Some((_, device)) = named.iter().find(|(n, _)| n == wanted) {
        return Ok(device.clone());
    }
    let lower = wanted.to_lowercase();
    let matches: Vec<&(String, cpal::Device)> = named
        .iter()
        .filter(|(n, _)| n.to_lowercase().contains(&lower))
        .collect();
    match matches.as_slice() {
        [(_, device)] => Ok(device.clone()),
        [] => bail!(
            "no {kind} device matches `{wanted}`; {kind} devices: {}",
            list_or_none(named.iter().map(|(n, _)| n.as_str()))
        ),
        several => bail!(
            "`{wanted}` matches several {kind} devices: {}; give the full name",
            list_or_none(several.iter().map(|(n, _)| n.as_str()))
        ),
    }
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Picks one sample rate both devices support (the output's default first), and for each device
/// the configuration at that rate with the best channel count and sample format.
fn negotiate(input: cpal::Device, output: cpal::Device) -> Result<(Endpoint, Endpoint, u32)> {
    let name = |d: &cpal::Device| d.name().unwrap_or_else(|_| "<unnamed>".into());
    let (in_name, out_name) = (name(&input), name(&output));
    let in_configs: Vec<SupportedStreamConfigRange> = input
        .supported_input_configs()
        .map_err(|e| anyhow!("cannot use input {in_name}: {e} (see `demix devices`)"))?
        .collect();
    let out_configs: Vec<SupportedStreamConfigRange> = output
        .supported_output_configs()
        .map_err(|e| anyhow!("cannot use output {out_name}: {e} (see `demix devices`)"))?
        .collect();
    let default_rate =
        |d: Result<cpal::SupportedStreamConfig, _>| d.ok().map(|c| c.sample_rate().0);
    let candidates = [
        default_rate(output.default_output_config()),
        default_rate(input.default_input_config()),
        Some(48_000),
        Some(44_100),
    ];
    let rate = candidates.into_iter().flatten().find(|&rate| {
        best_config(&in_configs, rate).is_some() && best_config(&out_configs, rate).is_some()
    });
    let Some(rate) = rate else {
        bail!(
            "input {in_name} ({}) and output {out_name} ({}) share no sample rate and usable sample format; choose devices that do (see `demix devices`)",
            rates_text(&in_configs),
            rates_text(&out_configs)
        );
    };
    let endpoint = |device, name, configs: &[SupportedStreamConfigRange]| {
        let config = best_config(configs, rate).expect("checked above");
        Endpoint {
            device,
            name,
            channels: config.channels(),
            format: config.sample_format(),
        }
    };
    let input = endpoint(input, in_name, &in_configs);
    let output = endpoint(output, out_name, &out_configs);
    Ok((input, output, rate))
}

fn rates_text(configs: &[SupportedStreamConfigRange]) -> String {
    let mut rates: Vec<String> = configs
        .iter()
        .filter(|c| supported_format(c.sample_format()))
        .map(|c| {
            if c.min_sample_rate() == c.max_sample_rate() {
                format!("{} Hz", c.min_sample_rate().0)
            } else {
                format!("{}-{} Hz", c.min_sample_rate().0, c.max_sample_rate().0)
            }
        })
        .collect();
    rates.sort();
    rates.dedup();
    if rates.is_empty() {
        "no usable configuration".into()
    } else {
        rates.join(", ")
    }
}

/// The configuration at `rate` demix prefers: stereo, then more channels, then mono; float,
/// then 32-bit, then 16-bit integers, then the rest.
fn best_config(
    configs: &[SupportedStreamConfigRange],
    rate: u32,
) -> Option<&SupportedStreamConfigRange> {
    configs
        .iter()
        .filter(|c| {
            c.channels() > 0
                && supported_format(c.sample_format())
                && c.min_sample_rate().0 <= rate
                && rate <= c.max_sample_rate().0
        })
        .min_by_key(|c| {
            let channels = match c.channels() {
                2 => 0,
                n if n > 2 => 1,
                _ => 2,
            };
            let format = match c.sample_format() {
                SampleFormat::F32 => 0,
                SampleFormat::I32 => 1,
                SampleFormat::I16 => 2,
                _ => 3,
            };
            (channels, format, c.channels())
        })
}

fn supported_format(format: SampleFormat) -> bool {
    matches!(
        format,
        SampleFormat::F32
            | SampleFormat::F64
            | SampleFormat::I8
            | SampleFormat::I16
            | SampleFormat::I32
            | SampleFormat::U8
            | SampleFormat::U16
            | SampleFormat::U32
    )
}

/// Refuses a `--buffer` the device cannot do, saying what it can.
fn check_buffer(endpoint: &Endpoint, frames: u32, rate: u32) -> Result<()> {
    let configs: Vec<SupportedStreamConfigRange> = endpoint
        .device
        .supported_input_configs()
        .into_iter()
        .flatten()
        .chain(
            endpoint
                .device
                .supported_output_configs()
                .into_iter()
                .flatten(),
        )
        .filter(|c| {
            c.channels() == endpoint.channels
                && c.sample_format() == endpoint.format
                && c.min_sample_rate().0 <= rate
                && rate <= c.max_sample_rate().0
        })
        .collect();
    for config in &configs {
        match *config.buffer_size() {
            SupportedBufferSize::Unknown => return Ok(()),
            SupportedBufferSize::Range { min, max } if (min..=max).contains(&frames) => {
                return Ok(())
            }
            SupportedBufferSize::Range { .. } => {}
        }
    }
    let ranges: Vec<String> = configs
        .iter()
        .filter_map(|c| match *c.buffer_size() {
            SupportedBufferSize::Range { min, max } if min == max => Some(format!("{min}")),
            SupportedBufferSize::Range { min, max } => Some(format!("{min}-{max}")),
            SupportedBufferSize::Unknown => None,
        })
        .collect();
    bail!(
        "{} cannot use {frames}-frame buffers (it supports {} frames){}",
        endpoint.name,
        list_or_none(ranges.iter().map(String::as_str)),
        if endpoint.name.starts_with("cpal_client") {
            "; the JACK server sets the buffer size: restart it with -p N, or leave --buffer out"
        } else {
            ""
        }
    )
}

/// The stream error callback: counts xruns, flags lost devices, forwards other messages to
/// the control thread without blocking.
fn on_error(
    shared: Arc<Shared>,
    messages: mpsc::SyncSender<String>,
    which: &'static str,
) -> impl FnMut(StreamError) + Send + 'static {
    move |error| match error {
        StreamError::DeviceNotAvailable => {
            shared.device_lost.store(true, Ordering::Relaxed);
            let _ = messages.try_send(format!("the {which} device is no longer available"));
        }
        StreamError::BackendSpecific { err } => {
            let text = err.description;
            if text.contains("xrun") {
                shared.host_xruns.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if text.contains("shut down") {
                shared.device_lost.store(true, Ordering::Relaxed);
            }
            let _ = messages.try_send(format!("{which} stream: {text}"));
        }
    }
}

macro_rules! build_stream {
    ($method:ident, $endpoint:expr, $config:expr, $side:expr, $error:expr, $($format:ident => $ty:ty),*) => {
        match $endpoint.format {
            $(SampleFormat::$format => {
                let mut side = $side;
                $endpoint.device.$method::<$ty, _, _>(
                    $config,
                    move |data, info| side.process(data, info),
                    $error,
                    None,
                )
            })*
            other => bail!("{}: sample format {other} is not supported", $endpoint.name),
        }
    };
}

fn build_input(
    endpoint: &Endpoint,
    config: &StreamConfig,
    side: InputSide,
    error: impl FnMut(StreamError) + Send + 'static,
) -> Result<cpal::Stream> {
    let stream = build_stream!(build_input_stream, endpoint, config, side, error,
        F32 => f32, F64 => f64, I8 => i8, I16 => i16, I32 => i32, U8 => u8, U16 => u16, U32 => u32);
    stream.map_err(|e| {
        anyhow!(
            "cannot open input {} ({} channel(s), {} Hz, {}): {e}",
            endpoint.name,
            config.channels,
            config.sample_rate.0,
            endpoint.format
        )
    })
}

fn build_output(
    endpoint: &Endpoint,
    config: &StreamConfig,
    side: OutputSide,
    error: impl FnMut(StreamError) + Send + 'static,
) -> Result<cpal::Stream> {
    let stream = build_stream!(build_output_stream, endpoint, config, side, error,
        F32 => f32, F64 => f64, I8 => i8, I16 => i16, I32 => i32, U8 => u8, U16 => u16, U32 => u32);
    stream.map_err(|e| {
        anyhow!(
            "cannot open output {} ({} channel(s), {} Hz, {}): {e}",
            endpoint.name,
            config.channels,
            config.sample_rate.0,
            endpoint.format
        )
    })
}
