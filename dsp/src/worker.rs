//! The inference worker: one thread per engine that owns the model. Frames travel to it and
//! results back in preallocated [`Job`] slots through two lock-free SPSC rings, so the audio
//! thread never allocates, locks or waits.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use realfft::num_complex::Complex;

use crate::model::{ModelSpec, ResultKind, ResultSink, SeparationModel};
use crate::wiener::StereoWiener;

/// One frame's round trip: features out to the worker, the model's result back.
/// Allocated once at set-up and recycled forever.
#[derive(Debug)]
pub struct Job {
    /// Index of the STFT frame the job belongs to.
    pub frame: u64,
    /// The frame's features (`spec.feature_len()` values).
    pub features: Vec<f32>,
    /// The model's result (`spec.result_len()` values), valid when `ok`; masks come back
    /// clamped to 0..1 and, when the spec asks for it, renormalised to sum to one per bin.
    pub result: Vec<f32>,
    /// Whether the model produced a finite result for this frame.
    pub ok: bool,
    /// With the stereo Wiener post-filter: the frame's mix spectrum over the model's bins,
    /// `[left bins][right bins]`, written by the audio thread. Empty otherwise.
    pub spectrum: Vec<Complex<f32>>,
    /// With the stereo Wiener post-filter: the frame's filter, written by the worker with the
    /// result (layout in [`crate::wiener::apply_filter`]). Empty otherwise.
    pub filter: Vec<Complex<f32>>,
}

/// Counters the worker publishes; read them from any thread (relaxed atomics).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Frames the model processed.
    pub frames: AtomicU64,
    /// Inference calls that returned an error.
    pub errors: AtomicU64,
    /// Results that contained NaN/Inf and were discarded.
    pub invalid_results: AtomicU64,
    /// Nanoseconds spent inside the model, including the stereo Wiener post-filter of its results.
    pub busy_nanos: AtomicU64,
    /// Set when the model panicked; the worker then stops and every later frame falls back.
    pub panicked: AtomicBool,
    /// Set at the first inference error; the worker logs that error to stderr once.
    pub failed_once: AtomicBool,
}

/// The audio-thread side of the worker: rings to and from the worker, and the thread handle.
pub struct WorkerHandle {
    /// Jobs on their way to the worker.
    pub to_worker: rtrb::Producer<Job>,
    /// Jobs coming back with results.
    pub from_worker: rtrb::Consumer<Job>,
    /// Shared counters.
    pub stats: Arc<WorkerStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts the worker thread owning `model` (and `wiener`, the stereo Wiener post-filter it
    /// applies to each mask, if any), with rings of `capacity` jobs each. Set-up only: allocates
    /// and spawns.
    pub fn spawn(
        model: Box<dyn SeparationModel>,
        wiener: Option<StereoWiener>,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let (to_worker, worker_in) = rtrb::RingBuffer::new(capacity);
        let (worker_out, from_worker) = rtrb::RingBuffer::new(capacity);
        let stats = Arc::new(WorkerStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stats = stats.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("demix-inference".into())
                .spawn(move || run_worker(model, wiener, worker_in, worker_out, &stats, &stop))?
        };
        Ok(Self {
            to_worker,
            from_worker,
            stats,
            stop,
            thread: Some(thread),
        })
    }

    /// Whether the worker thread has ended (model panic or shutdown).
    pub fn is_dead(&self) -> bool {
        self.from_worker.is_abandoned() || self.stats.panicked.load(Ordering::Relaxed)
    }
}

impl Drop for WorkerHandle {
    /// Stops the worker and joins it. Blocks briefly: drop engines off the audio thread.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Matches emitted results to the oldest pending jobs, checks and conditions them, and sends
/// them back.
struct Pending<'a> {
    waiting: &'a mut VecDeque<Job>,
    done: &'a mut VecDeque<Job>,
    conditioning: &'a mut Conditioning,
    stats: &'a WorkerStats,
}

impl ResultSink for Pending<'_> {
    fn emit(&mut self, result: &[f32]) {
        if let Some(mut job) = self.waiting.pop_front() {
            let mut ok = result.len() == job.result.len();
            if ok {
                job.result.copy_from_slice(result);
                ok = self.conditioning.apply(&mut job.result);
                if !ok {
                    self.stats.invalid_results.fetch_add(1, Ordering::Relaxed);
                }
            }
            if ok {
                self.conditioning.refine(&mut job);
            }
            job.ok = ok;
            self.done.push_back(job);
        }
    }
}

/// What the worker does to a result before the audio thread sees it, so the audio thread only
/// applies it: rejects non-finite values and, for masks, clamps them to 0..1, renormalises and
/// derives the stereo Wiener filter.
struct Conditioning {
    masks: bool,
    renormalize: bool,
    fallback_source: usize,
    sources: usize,
    /// Per model channel and bin: the sum of the sources' masks.
    sums: Vec<f32>,
    wiener: Option<StereoWiener>,
}

impl Conditioning {
    fn new(spec: &ModelSpec, wiener: Option<StereoWiener>) -> Self {
        Self {
            wiener,
            masks: spec.result == ResultKind::Mask,
            renormalize: spec.renormalize_masks,
            fallback_source: spec.fallback_source,
            sources: spec.sources.len(),
            sums: vec![0.0; spec.channels * spec.bins],
        }
    }

    /// With the stereo Wiener post-filter, feeds it the job's spectrum and conditioned masks
    /// (frames arrive in order) and writes the job's filter.
    fn refine(&mut self, job: &mut Job) {
        if let Some(wiener) = self.wiener.as_mut() {
            let (left, right) = job.spectrum.split_at(job.spectrum.len() / 2);
            wiener.update(left, right, &job.result, &mut job.filter);
        }
    }

    /// Forgets the post-filter's history, with the model's.
    fn reset(&mut self) {
        if let Some(wiener) = self.wiener.as_mut() {
            wiener.reset();
        }
    }

    /// Conditions `result` in place; false when it holds NaN or Inf (it is then unusable).
    fn apply(&mut self, result: &mut [f32]) -> bool {
        if !result.iter().all(|v| v.is_finite()) {
            return false;
        }
        if self.masks {
            normalise_masks(
                result,
                &mut self.sums,
                self.sources,
                self.renormalize,
                self.fallback_source,
            );
        }
        true
    }
}

/// Clamps `masks` (`[source][lane]`, `sums.len()` lanes per source) to 0..1 and, with
/// `renormalize`, divides them by their sum per lane; a lane no source claims goes to
/// `fallback_source`.
fn normalise_masks(
    masks: &mut [f32],
    sums: &mut [f32],
    sources: usize,
    renormalize: bool,
    fallback_source: usize,
) {
    for v in masks.iter_mut() {
        *v = v.clamp(0.0, 1.0);
    }
    if !renormalize || sources == 0 {
        return;
    }
    let lanes = sums.len();
    sums.fill(0.0);
    for source in masks.chunks_exact(lanes) {
        for (sum, &m) in sums.iter_mut().zip(source) {
            *sum += m;
        }
    }
    for (s, source) in masks.chunks_exact_mut(lanes).enumerate() {
        let unclaimed = if s == fallback_source { 1.0 } else { 0.0 };
        for (m, &sum) in source.iter_mut().zip(sums.iter()) {
            *m = if sum > 1e-8 { *m / sum } else { unclaimed };
        }
    }
}

fn run_worker(
    mut model: Box<dyn SeparationModel>,
    wiener: Option<StereoWiener>,
    mut input: rtrb::Consumer<Job>,
    mut output: rtrb::Producer<Job>,
    stats: &WorkerStats,
    stop: &AtomicBool,
) {
    let mut conditioning = Conditioning::new(model.spec(), wiener);
    let mut features = vec![0.0f32; model.spec().feature_len()];
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut done: VecDeque<Job> = VecDeque::new();
    let mut idle_polls = 0u32;
    while !stop.load(Ordering::Acquire) {
        // Return finished jobs first; the ring has room for every job in the pool.
        while let Some(job) = done.pop_front() {
            if let Err(rtrb::PushError::Full(job)) = output.push(job) {
                done.push_front(job);
                break;
            }
        }
        let Ok(job) = input.pop() else {
            if input.is_abandoned() {
                return;
            }
            // Poll instead of being woken, so the audio thread never makes a syscall.
            idle_polls = idle_polls.saturating_add(1);
            match idle_poll_pause(idle_polls) {
                None => std::thread::yield_now(),
                Some(pause) => std::thread::sleep(pause),
            }
            continue;
        };
        idle_polls = 0;
        features.copy_from_slice(&job.features);
        waiting.push_back(job);
        let started = std::time::Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut sink = Pending {
                waiting: &mut waiting,
                done: &mut done,
                conditioning: &mut conditioning,
                stats,
            };
            model.push_frame(&features, &mut sink)
        }));
        stats
            .busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.frames.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                if !stats.failed_once.swap(true, Ordering::Relaxed) {
                    eprintln!("demix: inference failed, frames fall back until it recovers: {err}");
                }
                // Results can no longer be matched to frames: fail what is pending and restart.
                fail_all(&mut waiting, &mut done);
                model.reset();
                conditioning.reset();
            }
            Err(_) => {
                stats.panicked.store(true, Ordering::Release);
                fail_all(&mut waiting, &mut done);
                while let Some(job) = done.pop_front() {
                    let _ = output.push(job);
                }
                return;
            }
        }
    }
}

/// Polls that only yield the core before the worker starts sleeping between polls.
const YIELDING_POLLS: u32 = 64;
/// The first sleep between idle polls; each further idle poll doubles it up to
/// [`MAX_IDLE_PAUSE`].
const FIRST_IDLE_PAUSE: Duration = Duration::from_micros(100);
/// The longest sleep between idle polls: how late, at most, the worker notices a frame that
/// arrives after a long idle stretch. Real-time frames arrive once per hop (11.6 ms for a
/// 512-sample hop at 44.1 kHz) and the compute slack is whole hops, so this costs no deadline;
/// it spares the core next to the audio thread about 4,000 wake-ups a second against a fixed
/// 200 µs poll.
const MAX_IDLE_PAUSE: Duration = Duration::from_millis(1);

/// What the worker does after its `idle_polls`-th empty poll in a row: yield (`None`) for the
/// first [`YIELDING_POLLS`], then sleep, twice as long each time, up to [`MAX_IDLE_PAUSE`].
fn idle_poll_pause(idle_polls: u32) -> Option<Duration> {
    let sleeps = idle_polls.checked_sub(YIELDING_POLLS)?;
    let doubled = FIRST_IDLE_PAUSE.saturating_mul(1u32 << sleeps.min(16));
    Some(doubled.min(MAX_IDLE_PAUSE))
}

fn fail_all(waiting: &mut VecDeque<Job>, done: &mut VecDeque<Job>) {
    while let Some(mut job) = waiting.pop_front() {
        job.ok = false;
        done.push_back(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_polls_yield_first_then_sleep_longer_and_longer_up_to_the_cap() {
        for polls in 1..YIELDING_POLLS {
            assert_eq!(idle_poll_pause(polls), None, "poll {polls}");
        }
        let pauses: Vec<u128> = (YIELDING_POLLS..YIELDING_POLLS + 6)
            .map(|polls| idle_poll_pause(polls).unwrap().as_micros())
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(idle_poll_pause(u32::MAX), Some(MAX_IDLE_PAUSE));
    }
}
