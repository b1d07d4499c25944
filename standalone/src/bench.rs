//! `demix bench`: how fast a model separates on this machine, with no input files.
//!
//! 1. Offline: the synthetic signal through a [`Separator`] with [`DeadlinePolicy::Wait`], in
//!    large blocks, as `demix separate` runs it: speed as a multiple of real time.
//! 2. Real time: the same signal in small blocks with [`DeadlinePolicy::RealTime`] and the
//!    default compute slack, paced like an audio callback (each block is processed at its due
//!    time, sleeping in between): the time each `process` call takes as a fraction of the
//!    block's duration, the deadline misses, and the worker's CPU use.
//!
//! Speed targets are checked with this command, never with timed assertions in tests.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use demix_dsp::{DeadlinePolicy, EngineConfig, Separator};

use crate::model_args::ModelArgs;
use crate::separate::OFFLINE_SLACK_HOPS;
use crate::signal::TestSignal;

/// Block size of the offline measurement (what `demix separate` uses at most).
const OFFLINE_BLOCK: usize = 4096;

/// Arguments of `demix bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seconds of synthetic audio for each measurement (the paced one takes this long).
    #[arg(long, default_value_t = 60.0, value_parser = positive_seconds)]
    seconds: f64,
    /// Block size of the real-time measurement, in samples.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=65536))]
    block: u32,
    /// Sample rate of the synthetic input, in Hz (the model's rate is reached by resampling).
    #[arg(long, default_value_t = 48_000, value_parser = clap::value_parser!(u32).range(8000..=384_000))]
    rate: u32,
    /// Compute slack of the real-time measurement, in hops (default: the engine's default).
    #[arg(long, value_name = "HOPS")]
    slack: Option<usize>,
    #[command(flatten)]
    model: ModelArgs,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 36_000.0 => Ok(s),
        _ => Err(format!(
            "'{text}' is not a duration in seconds between 0 and 36000"
        )),
    }
}

/// Runs `demix bench`.
pub fn run(args: Args) -> Result<()> {
    let frames = (args.seconds * f64::from(args.rate)).round() as usize;
    let audio_seconds = frames as f64 / f64::from(args.rate);
    let loaded = args.model.load()?;
    println!(
        "model: {} ({}), {} sources; input: {audio_seconds:.1} s of synthetic stereo at {} Hz",
        loaded.manifest.name,
        loaded.origin,
        loaded.model.spec().sources.len(),
        args.rate
    );
    let offline = EngineConfig {
        compute_slack_hops: OFFLINE_SLACK_HOPS,
        deadline: DeadlinePolicy::Wait,
    };
    let separator =
        Separator::new(loaded.model, offline, args.rate, 2).context("cannot build the engine")?;
    let offline_run = run_offline(separator, frames)?;
    println!();
    println!("offline: DeadlinePolicy::Wait, compute slack {OFFLINE_SLACK_HOPS} hops, {OFFLINE_BLOCK}-sample blocks");
    println!(
        "  {:<18} {:.2}x real time ({audio_seconds:.1} s of audio in {:.2} s)",
        "speed",
        audio_seconds / offline_run.elapsed,
        offline_run.elapsed
    );
    println!(
        "  {:<18} {:.3} of one core",
        "worker CPU",
        offline_run.busy_seconds / offline_run.elapsed
    );

    let realtime = EngineConfig {
        compute_slack_hops: args
            .slack
            .unwrap_or(EngineConfig::default().compute_slack_hops),
        deadline: DeadlinePolicy::RealTime,
    };
    let loaded = args.model.load()?;
    let separator =
        Separator::with_max_block(loaded.model, realtime, args.rate, 2, args.block as usize)
            .context("cannot build the engine")?;
    let latency = separator.latency();
    let report = run_paced(separator, frames, args.block as usize, args.rate)?;
    let block_ms = f64::from(args.block) / f64::from(args.rate) * 1e3;
    println!();
    println!(
        "real time: DeadlinePolicy::RealTime, compute slack {} hops, {}-sample blocks ({block_ms:.3} ms), paced",
        realtime.compute_slack_hops, args.block
    );
    println!(
        "  {:<18} {latency} samples = {:.1} ms",
        "latency",
        latency as f64 / f64::from(args.rate) * 1e3
    );
    println!(
        "  {:<18} {:>8} {:>8} {:>8} {:>8}   (fraction of the block duration)",
        "process() time", "p50", "p99", "p99.9", "max"
    );
    println!(
        "  {:<18} {:>8.4} {:>8.4} {:>8.4} {:>8.4}",
        "",
        report.percentile(0.5),
        report.percentile(0.99),
        report.percentile(0.999),
        report.percentile(1.0)
    );
    println!(
        "  {:<18} {} of {} (processed over one block after their due time)",
        "late blocks",
        report.late_blocks,
        report.fractions.len()
    );
    println!(
        "  {:<18} {} of {} frames",
        "deadline misses", report.misses, report.frames
    );
    println!(
        "  {:<18} {:.3} of one core (model time / audio time)",
        "worker CPU",
        report.busy_seconds / audio_seconds
    );
    if report.model_errors > 0 {
        println!("  {:<18} {}", "model errors", report.model_errors);
    }
    Ok(())
}

/// What the offline run measured.
struct OfflineRun {
    /// Wall time, in seconds.
    elapsed: f64,
    /// Time the worker spent in the model, in seconds.
    busy_seconds: f64,
}

/// Separates `frames` samples as fast as possible.
fn run_offline(mut separator: Separator, frames: usize) -> Result<OfflineRun> {
    let mut signal = TestSignal::new(separator.host_rate());
    let lanes = separator.sources() * 2;
    let (mut left, mut right) = (vec![0.0f32; OFFLINE_BLOCK], vec![0.0f32; OFFLINE_BLOCK]);
    let mut outputs = vec![vec![0.0f32; OFFLINE_BLOCK]; lanes];
    let total = frames + separator.latency();
    let started = Instant::now();
    let mut done = 0;
    while done < total {
        let n = (total - done).min(OFFLINE_BLOCK);
        let input_n = frames.saturating_sub(done).min(n);
        signal.fill(&mut left[..input_n], &mut right[..input_n]);
        left[input_n..n].fill(0.0);
        right[input_n..n].fill(0.0);
        let mut out: Vec<&mut [f32]> = outputs.iter_mut().map(|o| &mut o[..n]).collect();
        separator.process(&[&left[..n], &right[..n]], &mut out);
        done += n;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = separator.stats();
    if stats.model_errors() > 0 || stats.model_panicked() {
        bail!(
            "the model failed during the offline run ({} inference errors)",
            stats.model_errors()
        );
    }
    Ok(OfflineRun {
        elapsed,
        busy_seconds: stats.model_busy_seconds(),
    })
}

/// What the paced run measured.
struct PacedReport {
    /// `process` time of each block divided by the block's duration, sorted.
    fractions: Vec<f64>,
    late_blocks: u64,
    misses: u64,
    frames: u64,
    busy_seconds: f64,
    model_errors: u64,
}

impl PacedReport {
    fn percentile(&self, p: f64) -> f64 {
        if self.fractions.is_empty() {
            return 0.0;
        }
        let index = ((self.fractions.len() - 1) as f64 * p).round() as usize;
        self.fractions[index]
    }
}

/// Feeds `frames` samples in `block`-sized calls, each at its due time in simulated real time.
fn run_paced(
    mut separator: Separator,
    frames: usize,
    block: usize,
    rate: u32,
) -> Result<PacedReport> {
    let mut signal = TestSignal::new(rate);
    let lanes = separator.sources() * 2;
    let (mut left, mut right) = (vec![0.0f32; block], vec![0.0f32; block]);
    let mut outputs = vec![vec![0.0f32; block]; lanes];
    let blocks = frames.div_ceil(block);
    let block_seconds = block as f64 / f64::from(rate);
    let mut fractions = Vec::with_capacity(blocks);
    let mut late_blocks = 0;
    let started = Instant::now();
    for i in 0..blocks {
        let n = (frames - i * block).min(block);
        signal.fill(&mut left[..n], &mut right[..n]);
        let due = started + Duration::from_secs_f64(i as f64 * block_seconds);
        let now = Instant::now();
        if now < due {
            std::thread::sleep(due - now);
        } else if now - due > Duration::from_secs_f64(block_seconds) {
            late_blocks += 1;
        }
        let mut out: Vec<&mut [f32]> = outputs.iter_mut().map(|o| &mut o[..n]).collect();
        let t0 = Instant::now();
        separator.process(&[&left[..n], &right[..n]], &mut out);
        fractions.push(t0.elapsed().as_secs_f64() / block_seconds);
    }
    fractions.sort_by(f64::total_cmp);
    let stats = separator.stats();
    Ok(PacedReport {
        fractions,
        late_blocks,
        misses: stats.deadline_misses(),
        frames: stats.frames(),
        busy_seconds: stats.model_busy_seconds(),
        model_errors: stats.model_errors(),
    })
}
