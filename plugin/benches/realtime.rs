//! Drives the plugin's DSP core in simulated real time, as a host's audio thread would: 48 kHz,
//! 128-sample blocks, paced so each block starts at its due time (the inference worker really
//! runs concurrently), with the embedded default model and one inference thread, the audio
//! thread at `SCHED_FIFO` priority where the system allows it (as hosts run theirs). Prints
//! deadline misses, the audio thread's time per block (p50/p99/p99.9/max as a fraction of the
//! 2.67 ms block budget) and the worker's CPU use as a fraction of one core.
//!
//! Side by side, a machine reference paced the same way in the same run: one 2048-point real FFT
//! and its inverse per block, the least work an STFT engine at the default model's frame size
//! does per block. Its tail shows what the machine itself adds (cold caches after each sleep,
//! virtualisation), and the ratio of the two p99.9 figures compares machines fairly.
//!
//! `cargo bench -p demix-plugin --bench realtime [-- --seconds N]` (default 600 s of audio,
//! which takes 600 s, plus a tenth of that, at most 60 s, for the reference). Input: the dev
//! clip `../shared/eval/dev/d03_tracker_vocals/mixture.wav` looped, or a generated signal when it
//! is missing.

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
    let priority = request_realtime_priority();
    let reference_blocks = (blocks / 10).clamp(1, 60 * RATE as usize / BLOCK);
    let reference = reference_pass(reference_blocks, budget);

    let mut main = vec![vec![0.0f32; BLOCK]; 2];
    let mut aux = vec![vec![vec![0.0f32; BLOCK]; 2]; SLOTS];
    // The host's buffers, set up once: nothing is allocated between blocks.
    let mut main_refs: Vec<&mut [f32]> = main.iter_mut().map(|c| &mut c[..]).collect();
    let mut aux_channels: Vec<Vec<&mut [f32]>> = aux
        .iter_mut()
        .map(|bus| bus.iter_mut().map(|c| &mut c[..]).collect())
        .collect();
    let mut aux_refs: Vec<&mut [&mut [f32]]> =
        aux_channels.iter_mut().map(|b| &mut b[..]).collect();
    let worker_cpu_start = thread_cpu(WORKER_THREAD);
    let started = Instant::now();
    let plugin = paced(blocks, budget, |block, stopwatch| {
        let offset = block * BLOCK % clip[0].len().max(1);
        for (out, channel) in main_refs.iter_mut().zip(&clip) {
            for (i, x) in out.iter_mut().enumerate() {
                *x = channel[(offset + i) % channel.len()];
            }
        }
        stopwatch.time(|| processor.process(&mut main_refs, &mut aux_refs, &settings));
    });
    let wall = started.elapsed().as_secs_f64();
    let worker_cpu = match (worker_cpu_start, thread_cpu(WORKER_THREAD)) {
        (Some(a), Some(b)) => Some((b - a) / wall),
        _ => None,
    };

    println!(
        "{seconds:.0} s of audio, {blocks} blocks of {BLOCK} at {RATE} Hz (budget {:.3} ms), \
         latency {} samples; audio thread {priority}",
        budget.as_secs_f64() * 1e3,
        processor.latency()
    );
    println!(
        "deadline misses: {} of {} frames; model errors: {}; blocks started over a block late: \
         {}",
        stats.deadline_misses(),
        stats.frames(),
        stats.model_errors(),
        plugin.late_starts
    );
    plugin.print("audio thread", budget);
    println!(
        "worker: model time {:.3} of one core; thread CPU {}",
        stats.model_busy_seconds() / wall,
        worker_cpu.map_or("unavailable".to_string(), |c| format!("{c:.3} of one core"))
    );
    println!(
        "machine reference, {reference_blocks} blocks paced the same way before the plugin ran, \
         each one {REFERENCE_FFT}-point real FFT and its inverse (the least an STFT engine at this \
         frame size does per block):"
    );
    reference.print("reference", budget);
    println!(
        "audio thread / reference at p99.9: wall {:.2}x, CPU {:.2}x",
        plugin.wall(0.999) / reference.wall(0.999),
        plugin.cpu(0.999) / reference.cpu(0.999)
    );
}

/// Frame size of the machine reference's transform (the default model's STFT size).
const REFERENCE_FFT: usize = 2048;

/// Per-block times of one paced pass, sorted.
struct PacedTimes {
    wall: Vec<f64>,
    cpu: Vec<f64>,
    late_starts: u64,
}

impl PacedTimes {
    fn quantile(sorted: &[f64], p: f64) -> f64 {
        sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
    }

    fn wall(&self, p: f64) -> f64 {
        Self::quantile(&self.wall, p)
    }

    fn cpu(&self, p: f64) -> f64 {
        Self::quantile(&self.cpu, p)
    }

    /// Prints wall and CPU time per block as fractions of `budget`.
    fn print(&self, what: &str, budget: Duration) {
        let b = budget.as_secs_f64();
        let row = |f: &dyn Fn(f64) -> f64| {
            format!(
                "p50 {:.4}  p99 {:.4}  p99.9 {:.4}  max {:.4}",
                f(0.5) / b,
                f(0.99) / b,
                f(0.999) / b,
                f(1.0) / b
            )
        };
        println!(
            "{what} wall time per block (fraction of budget): {}",
            row(&|p| self.wall(p))
        );
        println!(
            "{what} CPU per block (excludes preemption): {}",
            row(&|p| self.cpu(p))
        );
    }
}

/// Times the work of each block, in seconds of wall and thread CPU time.
struct Stopwatch {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

impl Stopwatch {
    /// Runs `work` and records how long it took.
    fn time(&mut self, work: impl FnOnce()) {
        let cpu0 = this_thread_cpu();
        let t0 = Instant::now();
        work();
        self.wall.push(t0.elapsed().as_secs_f64());
        self.cpu.push(this_thread_cpu() - cpu0);
    }
}

/// Runs `blocks` blocks paced like a host callback: block `i` starts at its due time (sleeping
/// until then) with `run_block(i, stopwatch)`, which times the block's work on the stopwatch.
fn paced(
    blocks: usize,
    budget: Duration,
    mut run_block: impl FnMut(usize, &mut Stopwatch),
) -> PacedTimes {
    let mut stopwatch = Stopwatch {
        wall: Vec::with_capacity(blocks),
        cpu: Vec::with_capacity(blocks),
    };
    let mut late_starts = 0u64;
    let started = Instant::now();
    for block in 0..blocks {
        let due = started + budget * block as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > budget {
            late_starts += 1;
        }
        run_block(block, &mut stopwatch);
    }
    let Stopwatch { mut wall, mut cpu } = stopwatch;
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    PacedTimes {
        wall,
        cpu,
        late_starts,
    }
}

/// The machine's floor for this pacing: one real FFT of [`REFERENCE_FFT`] points and its
/// inverse per block, on a signal that changes every block.
fn reference_pass(blocks: usize, budget: Duration) -> PacedTimes {
    let mut planner = realfft::RealFftPlanner::<f32>::new();
    let forward = planner.plan_fft_forward(REFERENCE_FFT);
    let inverse = planner.plan_fft_inverse(REFERENCE_FFT);
    let mut frame = forward.make_input_vec();
    let mut spectrum = forward.make_output_vec();
    let mut forward_scratch = forward.make_scratch_vec();
    let mut inverse_scratch = inverse.make_scratch_vec();
    let mut phase = 0.0f32;
    paced(blocks, budget, |_, stopwatch| {
        for x in frame.iter_mut() {
            phase += 0.0517;
            *x = phase.sin();
        }
        stopwatch.time(|| {
            // The buffers fit the plans, so neither transform can fail.
            let _ = forward.process_with_scratch(&mut frame, &mut spectrum, &mut forward_scratch);
            spectrum[0].im = 0.0;
            spectrum[REFERENCE_FFT / 2].im = 0.0;
            let _ = inverse.process_with_scratch(&mut spectrum, &mut frame, &mut inverse_scratch);
        });
    })
}

/// Asks for the real-time scheduling hosts give their audio threads (`SCHED_FIFO`, priority
/// 70) for the calling thread; says what it got.
fn request_realtime_priority() -> String {
    let param = libc::sched_param { sched_priority: 70 };
    // SAFETY: `param` is a valid sched_param; 0 names the calling thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        "at SCHED_FIFO priority 70, as hosts run it".to_string()
    } else {
        format!(
            "at normal priority (SCHED_FIFO refused: {})",
            std::io::Error::last_os_error()
        )
    }
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
