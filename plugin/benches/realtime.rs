//! Drives the plugin's DSP core in simulated real time, as a host's audio thread would: 48 kHz,
//! 128-sample blocks, paced so each block starts at its due time (the inference worker really
//! runs concurrently), with the embedded default model and one inference thread. Prints deadline
//! misses, the audio thread's time per block (p50/p99/p99.9/max as a fraction of the 2.67 ms
//! block budget) and the worker's CPU use as a fraction of one core.
//!
//! `cargo bench -p demix-plugin --bench realtime [-- --seconds N]` (default 600 s of audio,
//! which takes 600 s). Input: the dev clip `../shared/eval/dev/d03_tracker_vocals/mixture.wav`
//! looped, or a generated signal when it is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use demix_plugin::loader::{build, BuildKey};
use demix_plugin::processor::hand_over_rings;
use demix_plugin::{default_model_factory, DemixProcessor, HostConfig, MixSettings, SLOTS};

const RATE: u32 = 48_000;
const BLOCK: usize = 128;
const WORKER_THREAD: &str = "demix-inference";

fn main() {
    let mut seconds = 600.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            seconds = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--seconds takes a number");
        }
    }
    let host = HostConfig {
        sample_rate: RATE,
        channels: 2,
        max_block: BLOCK,
        realtime: true,
    };
    let key = BuildKey {
        model_path: String::new(),
        slack_hops: 2,
    };
    let outcome = build(&default_model_factory(), &key, &host, 1);
    println!("{}", outcome.status);
    let stats = outcome
        .prepared
        .stats()
        .expect("the embedded default model must load for this benchmark");
    let settings = MixSettings::default();
    let (audio, _builder) = hand_over_rings();
    let mut processor = DemixProcessor::new(host, outcome.prepared, audio, &settings, 0);
    let clip = input_clip();

    let blocks = (seconds * f64::from(RATE) / BLOCK as f64).ceil() as usize;
    let budget = Duration::from_secs_f64(BLOCK as f64 / f64::from(RATE));
    let mut times = Vec::with_capacity(blocks);
    let mut cpu_times = Vec::with_capacity(blocks);
    let mut main = vec![vec![0.0f32; BLOCK]; 2];
    let mut aux = vec![vec![vec![0.0f32; BLOCK]; 2]; SLOTS];
    let worker_cpu_start = thread_cpu(WORKER_THREAD);
    let started = Instant::now();
    let mut late_starts = 0u64;
    for block in 0..blocks {
        let due = started + budget * block as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > budget {
            late_starts += 1;
        }
        let offset = block * BLOCK % clip[0].len().max(1);
        for (out, channel) in main.iter_mut().zip(&clip) {
            for (i, x) in out.iter_mut().enumerate() {
                *x = channel[(offset + i) % channel.len()];
            }
        }
        let mut main_refs: Vec<&mut [f32]> = main.iter_mut().map(|c| &mut c[..]).collect();
        let mut aux_blocks: Vec<Vec<&mut [f32]>> = aux
            .iter_mut()
            .map(|bus| bus.iter_mut().map(|c| &mut c[..]).collect())
            .collect();
        let mut aux_refs: Vec<&mut [&mut [f32]]> =
            aux_blocks.iter_mut().map(|b| &mut b[..]).collect();
        let cpu0 = this_thread_cpu();
        let t0 = Instant::now();
        processor.process(&mut main_refs, &mut aux_refs, &settings);
        times.push(t0.elapsed());
        cpu_times.push(this_thread_cpu() - cpu0);
    }
    let wall = started.elapsed().as_secs_f64();
    let worker_cpu = match (worker_cpu_start, thread_cpu(WORKER_THREAD)) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };

    times.sort();
    cpu_times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        let i = ((times.len() as f64 - 1.0) * p).round() as usize;
        times[i].as_secs_f64() / budget.as_secs_f64()
    };
    let cpu_pct = |p: f64| {
        let i = ((cpu_times.len() as f64 - 1.0) * p).round() as usize;
        cpu_times[i] / budget.as_secs_f64()
    };
    println!(
        "{seconds:.0} s of audio, {blocks} blocks of {BLOCK} at {RATE} Hz (budget {:.3} ms), \
         latency {} samples",
        budget.as_secs_f64() * 1e3,
        processor.latency()
    );
    println!(
        "deadline misses: {} of {} frames; model errors: {}; blocks started over a block late: \
         {late_starts}",
        stats.deadline_misses(),
        stats.frames(),
        stats.model_errors()
    );
    println!(
        "audio thread wall time per block (fraction of budget): p50 {:.4}  p99 {:.4}  p99.9 {:.4}  max {:.4}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    println!(
        "audio thread CPU per block (excludes preemption): p50 {:.4}  p99 {:.4}  p99.9 {:.4}  \
         max {:.4}",
        cpu_pct(0.5),
        cpu_pct(0.99),
        cpu_pct(0.999),
        cpu_pct(1.0)
    );
    println!(
        "worker: model time {:.3} of one core; thread CPU {}",
        stats.model_busy_seconds() / wall,
        worker_cpu.map_or("unavailable".to_string(), |c| format!("{c:.3} of one core"))
    );
}

/// The dev clip, or a generated two-tone signal when the shared data set is missing.
fn input_clip() -> Vec<Vec<f32>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/eval/dev/d03_tracker_vocals/mixture.wav");
    match hound::WavReader::open(&path) {
        Ok(mut reader) => {
            let spec = reader.spec();
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            let samples: Vec<f32> = match spec.sample_format {
                hound::SampleFormat::Float => {
                    reader.samples::<f32>().map(|s| s.unwrap_or(0.0)).collect()
                }
                hound::SampleFormat::Int => reader
                    .samples::<i32>()
                    .map(|s| s.unwrap_or(0) as f32 / scale)
                    .collect(),
            };
            let n = usize::from(spec.channels);
            (0..2)
                .map(|c| {
                    samples
                        .iter()
                        .skip(c.min(n - 1))
                        .step_by(n)
                        .copied()
                        .collect()
                })
                .collect()
        }
        Err(e) => {
            eprintln!(
                "WARNING: cannot read {} ({e}); using a generated signal",
                path.display()
            );
            (0..2)
                .map(|c| {
                    (0..RATE as usize * 10)
                        .map(|t| {
                            let t = t as f32 / RATE as f32;
                            0.3 * (std::f32::consts::TAU * (220.0 + 110.0 * c as f32) * t).sin()
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// CPU time, in seconds, used so far by this process's thread called `name` (Linux
/// `/proc/self/task/*/schedstat`); `None` where that is unavailable.
fn thread_cpu(name: &str) -> Option<f64> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
        if comm.trim() == name {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let nanos: f64 = stat.split_whitespace().next()?.parse().ok()?;
            return Some(nanos * 1e-9);
        }
    }
    None
}

/// CPU time used by the calling thread so far, in seconds (`CLOCK_THREAD_CPUTIME_ID`).
fn this_thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
