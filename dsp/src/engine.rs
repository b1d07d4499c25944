//! The separation engine: streaming STFT → model (on the worker) → masks → ISTFT → stems.
//! One engine type drives both the real-time paths (plugin, live) and the offline bounce.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::delay::DelayLine;
use crate::model::{FeatureKind, ModelSpec, ResultKind, SeparationModel};
use crate::wiener::{apply_filter, StereoWiener};
use crate::window::synthesis_window;
use crate::worker::{Job, WorkerHandle, WorkerStats};

/// Largest magnitude an input sample may have; beyond it (+80 dBFS) samples are clamped so no
/// arithmetic downstream can overflow.
pub const INPUT_LIMIT: f32 = 1.0e4;

/// What the engine does when a frame's result is not back from the worker by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlinePolicy {
    /// Real-time: never wait. Reuse the last mask (mask models) or route the mix to the fallback
    /// source (spectrum models), and count a miss.
    RealTime,
    /// Offline: wait for the worker, so every frame gets its own result.
    Wait,
}

/// How an engine is set up around a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Hops of time the worker gets between a frame's arrival and its deadline (`D`).
    pub compute_slack_hops: usize,
    /// Behaviour at a missed deadline.
    pub deadline: DeadlinePolicy,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            compute_slack_hops: 2,
            deadline: DeadlinePolicy::RealTime,
        }
    }
}

/// Why an engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model's spec is inconsistent.
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),
    /// The analysis window cannot be inverted at this hop.
    #[error("the {window} window of {n_fft} samples cannot be overlap-added at hop {hop}")]
    UninvertibleWindow {
        /// Window name.
        window: &'static str,
        /// Frame length.
        n_fft: usize,
        /// Hop.
        hop: usize,
    },
    /// The worker thread could not start.
    #[error("could not start the inference worker: {0}")]
    Worker(#[from] std::io::Error),
}

/// Counters the engine publishes for displays (GUI, CLI, tests); relaxed atomics, readable from
/// any thread while audio runs.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// STFT frames processed by the audio thread.
    pub frames: AtomicU64,
    /// Frames whose result was not there in time (or failed) and used the fallback.
    pub deadline_misses: AtomicU64,
}

/// A read-only view of an engine's counters, shareable with other threads.
#[derive(Debug, Clone)]
pub struct StatsHandle {
    engine: Arc<EngineStats>,
    worker: Arc<WorkerStats>,
}

impl StatsHandle {
    /// Frames whose result missed its deadline so far.
    pub fn deadline_misses(&self) -> u64 {
        self.engine.deadline_misses.load(Ordering::Relaxed)
    }
    /// Frames processed so far.
    pub fn frames(&self) -> u64 {
        self.engine.frames.load(Ordering::Relaxed)
    }
    /// Results discarded for NaN/Inf.
    pub fn invalid_results(&self) -> u64 {
        self.worker.invalid_results.load(Ordering::Relaxed)
    }
    /// Inference calls that failed.
    pub fn model_errors(&self) -> u64 {
        self.worker.errors.load(Ordering::Relaxed)
    }
    /// Whether the model panicked (the engine then stays in fallback).
    pub fn model_panicked(&self) -> bool {
        self.worker.panicked.load(Ordering::Relaxed)
    }
    /// Total time spent in the model (and the stereo Wiener post-filter it feeds), in seconds.
    pub fn model_busy_seconds(&self) -> f64 {
        self.worker.busy_nanos.load(Ordering::Relaxed) as f64 * 1e-9
    }
}

/// The streaming separation engine. Build it off the audio thread ([`Engine::new`] allocates
/// and spawns the worker); afterwards [`Engine::process`] and [`Engine::reset`] never allocate,
/// lock, make system calls or wait (with [`DeadlinePolicy::RealTime`]).
pub struct Engine {
    spec: ModelSpec,
    config: EngineConfig,
    /// Audio channels in and per stem out.
    channels: usize,
    sources: usize,
    n_fft: usize,
    hop: usize,
    full_bins: usize,
    delay_frames: usize,
    latency: usize,
    analysis_window: Vec<f32>,
    synthesis_window: Vec<f32>,
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    ifft_scratch: Vec<Complex<f32>>,
    time_frame: Vec<f32>,
    source_spectrum: Vec<Complex<f32>>,
    /// `[channel][n_fft]`: the newest `n_fft` input samples, filled up to `input_fill`.
    input_frames: Vec<f32>,
    input_fill: usize,
    /// Ring of `delay_frames + 1` spectra, each `[channel][full_bins]`.
    spectra: Vec<Complex<f32>>,
    /// `[source][channel][n_fft]` overlap-add accumulators.
    overlap: Vec<f32>,
    /// `[source][channel][hop]` finished samples and the read position in them.
    ready_samples: Vec<f32>,
    read_pos: usize,
    /// The job holding the mask in use (`[source][channel][bins]`, conditioned by the worker),
    /// kept for reuse at a missed deadline.
    mask_job: Option<Job>,
    /// Whether the worker refines each mask by the stereo Wiener post-filter (the model asks
    /// for it and both it and the audio are stereo); jobs then carry spectra and filters.
    wiener: bool,
    /// Jobs in the pool, wherever they are.
    pool: usize,
    /// The source that gets whatever the others do not (see [`Engine::residual_source`]).
    residual: Option<usize>,
    /// Per channel, the input delayed by the latency, for the residual source.
    input_delays: Vec<DelayLine>,
    /// Whether `process` fills the residual source's lanes (off when the caller makes that
    /// source itself, see [`Engine::leave_residual_to_caller`]).
    writes_residual: bool,
    /// The frame whose sources are being resynthesised during the current hop.
    synthesis: Synthesis,
    next_frame: u64,
    /// First frame index after the last reset; earlier frames are never synthesised.
    first_frame: u64,
    free_jobs: Vec<Job>,
    returned_jobs: VecDeque<Job>,
    worker: WorkerHandle,
    stats: Arc<EngineStats>,
}

/// The frame resynthesised during the current hop, its result, and how many source lanes are
/// done.
#[derive(Default)]
struct Synthesis {
    frame: Option<u64>,
    begun: bool,
    usable: bool,
    lanes_done: usize,
    job: Option<Job>,
}

impl Synthesis {
    /// Starts on `frame`: nothing taken, no lane done.
    fn open(&mut self, frame: u64) {
        *self = Self {
            frame: Some(frame),
            ..Self::default()
        };
    }

    /// Ends the current frame and hands back its job for reuse.
    fn close(&mut self) -> Option<Job> {
        std::mem::take(self).job
    }
}

impl Engine {
    /// Builds an engine around `model` with as many audio channels as the model has, and starts
    /// its inference worker. Allocates every buffer the audio thread will use. Not real-time safe.
    pub fn new(model: Box<dyn SeparationModel>, config: EngineConfig) -> Result<Self, EngineError> {
        let channels = model.spec().channels;
        Self::with_channels(model, config, channels)
    }

    /// Like [`Engine::new`] for `channels` audio channels (1 or 2) whatever the model's count:
    /// a mono model hears the stereo downmix and its masks apply to both channels; a stereo model
    /// hears a mono input on both channels and its two masks (or spectra) are averaged. A mono
    /// spectrum-output model cannot run on stereo audio.
    pub fn with_channels(
        model: Box<dyn SeparationModel>,
        config: EngineConfig,
        channels: usize,
    ) -> Result<Self, EngineError> {
        let spec = model.spec().clone();
        spec.validate().map_err(EngineError::InvalidSpec)?;
        if !(1..=2).contains(&channels) {
            return Err(EngineError::InvalidSpec(format!(
                "the engine handles 1 or 2 audio channels, not {channels}"
            )));
        }
        if channels > spec.channels && matches!(spec.result, ResultKind::Spectrum { .. }) {
            return Err(EngineError::InvalidSpec(format!(
                "this model outputs spectra for {} channel and cannot run on {channels}",
                spec.channels
            )));
        }
        let n_fft = spec.n_fft;
        let hop = spec.hop;
        let analysis_window = spec.window.coefficients(n_fft);
        let synthesis_window =
            synthesis_window(&analysis_window, hop).ok_or(EngineError::UninvertibleWindow {
                window: spec.window.name(),
                n_fft,
                hop,
            })?;
        let sources = spec.sources.len();
        let full_bins = spec.spectrum_bins();
        let delay_frames = spec.delay_frames + config.compute_slack_hops;
        let latency = n_fft - 1 + hop * delay_frames;
        let residual = match spec.result {
            ResultKind::Mask if spec.renormalize_masks => Some(spec.fallback_source),
            ResultKind::Spectrum {
                residual: Some(source),
            } if source == spec.fallback_source => Some(source),
            _ => None,
        };
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n_fft);
        let ifft = planner.plan_fft_inverse(n_fft);
        let fft_scratch = fft.make_scratch_vec();
        let ifft_scratch = ifft.make_scratch_vec();
        // Every frame in flight holds a job: the ones the model still needs for context, the
        // ones waiting for their deadline, and some headroom for a slow worker.
        let pool = delay_frames + 8;
        let feature_len = spec.feature_len();
        let result_len = spec.result_len();
        let wiener = spec
            .stereo_wiener_s
            // `validate` has checked that only mask models ask for it.
            .filter(|_| spec.channels == 2 && channels == 2)
            .map(|seconds| {
                let frames_per_second = f64::from(spec.sample_rate) / hop as f64;
                StereoWiener::new(
                    sources,
                    spec.bins,
                    seconds,
                    frames_per_second,
                    spec.stereo_wiener_em_steps,
                )
            });
        let (spectrum_len, filter_len) = wiener
            .as_ref()
            .map_or((0, 0), |w| (2 * spec.bins, w.filter_len()));
        let free_jobs = (0..pool)
            .map(|_| Job {
                frame: 0,
                features: vec![0.0; feature_len],
                result: vec![0.0; result_len],
                ok: false,
                spectrum: vec![Complex::default(); spectrum_len],
                filter: vec![Complex::default(); filter_len],
            })
            .collect();
        let uses_wiener = wiener.is_some();
        let worker = WorkerHandle::spawn(model, wiener, pool)?;
        let mut engine = Self {
            config,
            channels,
            sources,
            n_fft,
            hop,
            full_bins,
            delay_frames,
            latency,
            analysis_window,
            synthesis_window,
            fft,
            ifft,
            fft_scratch,
            ifft_scratch,
            time_frame: vec![0.0; n_fft],
            source_spectrum: vec![Complex::default(); full_bins],
            input_frames: vec![0.0; channels * n_fft],
            input_fill: 0,
            spectra: vec![Complex::default(); (delay_frames + 1) * channels * full_bins],
            overlap: vec![0.0; sources * channels * n_fft],
            ready_samples: vec![0.0; sources * channels * hop],
            read_pos: 0,
            mask_job: None,
            wiener: uses_wiener,
            pool,
            residual,
            input_delays: (0..channels).map(|_| DelayLine::new(latency)).collect(),
            writes_residual: true,
            synthesis: Synthesis::default(),
            next_frame: 0,
            first_frame: 0,
            free_jobs,
            returned_jobs: VecDeque::with_capacity(pool),
            worker,
            stats: Arc::new(EngineStats::default()),
            spec,
        };
        engine.clear_buffers();
        Ok(engine)
    }

    /// The model's spec (rates, STFT, sources).
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// How the engine was configured.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Exact delay, in samples at the model rate, between an input sample and the same sample
    /// in the stems: `n_fft − 1 + hop · (model delay frames + compute slack)`.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Channels expected on input (and produced per source).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Number of sources (stems).
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// The source that receives everything the other sources do not: with masks that sum to
    /// one (`renormalize_masks`), or a spectrum model's declared residual that is also its
    /// fallback. It is computed in the time domain as the input delayed by the latency minus
    /// the other stems, so the stems sum back to the input exactly, and it costs no inverse
    /// FFT. `None` when the model's stems need not sum to the input.
    pub fn residual_source(&self) -> Option<usize> {
        self.residual
    }

    /// Stops `process` from filling the residual source's lanes (they stay silent), for a
    /// caller that makes that source from its own delayed input, as the resampling
    /// [`crate::Separator`] does at the host rate. Set-up only.
    pub(crate) fn leave_residual_to_caller(&mut self) {
        self.writes_residual = false;
        self.input_delays = Vec::new();
    }

    /// A handle to the engine's counters for other threads.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle {
            engine: self.stats.clone(),
            worker: self.worker.stats.clone(),
        }
    }

    /// Forgets all audio history: the output restarts from silence with the same latency.
    /// Real-time safe. The model keeps its recurrent state; frames sent before the reset are
    /// discarded when they come back.
    pub fn reset(&mut self) {
        if let Some(job) = self.synthesis.close() {
            self.free_jobs.push(job);
        }
        self.drain_returned();
        while let Some(job) = self.returned_jobs.pop_front() {
            self.free_jobs.push(job);
        }
        self.clear_buffers();
    }

    fn clear_buffers(&mut self) {
        self.input_frames.fill(0.0);
        for delay in self.input_delays.iter_mut() {
            delay.reset();
        }
        // The stream starts as if `n_fft − hop` zeros preceded it, so frame `m` ends at sample
        // `m · hop + hop − 1`.
        self.input_fill = self.n_fft - self.hop;
        self.spectra.fill(Complex::default());
        self.overlap.fill(0.0);
        self.ready_samples.fill(0.0);
        self.read_pos = 1;
        if let Some(job) = self.mask_job.take() {
            self.free_jobs.push(job);
        }
        // Frame indices keep increasing across resets so stale results are recognised.
        self.next_frame += self.delay_frames as u64 + 1;
        self.first_frame = self.next_frame;
    }

    /// Separates one block. `input` holds `channels()` slices of equal length; `output` holds
    /// `sources() · channels()` slices (source-major: source 0's channels first) of the same
    /// length. Any block length works, including 0 and 1, and it may change between calls.
    /// Non-finite and subnormal input samples are read as 0.
    ///
    /// Real-time safe with [`DeadlinePolicy::RealTime`]: no allocation, lock, system call or
    /// wait. With [`DeadlinePolicy::Wait`] it waits for the worker.
    pub fn process(&mut self, input: &[&[f32]], output: &mut [&mut [f32]]) {
        let Some(len) = block_len(input, output, self.channels, self.sources * self.channels)
        else {
            return;
        };
        let mut pos = 0;
        while pos < len {
            let take = (len - pos).min(self.n_fft - self.input_fill);
            for (ch, samples) in input.iter().enumerate() {
                let frame = &mut self.input_frames[ch * self.n_fft..(ch + 1) * self.n_fft];
                for (dst, &x) in frame[self.input_fill..self.input_fill + take]
                    .iter_mut()
                    .zip(&samples[pos..pos + take])
                {
                    *dst = sanitize(x);
                }
            }
            self.input_fill += take;
            let completes_frame = self.input_fill == self.n_fft;
            // All samples of the chunk but the last read the current hop's samples; the sample
            // that completes a frame already reads the next hop's.
            let before = if completes_frame { take - 1 } else { take };
            self.emit(output, pos, before);
            if completes_frame {
                self.run_hop();
                self.emit(output, pos + before, 1);
            } else {
                self.synthesise_ahead();
            }
            pos += take;
        }
        if let (Some(residual), true) = (self.residual, self.writes_residual) {
            write_residual(residual, &mut self.input_delays, input, output);
        }
    }

    fn emit(&mut self, output: &mut [&mut [f32]], at: usize, count: usize) {
        if count == 0 {
            return;
        }
        for (lane, out) in output.iter_mut().enumerate() {
            let ready = &self.ready_samples[lane * self.hop..(lane + 1) * self.hop];
            out[at..at + count].copy_from_slice(&ready[self.read_pos..self.read_pos + count]);
        }
        self.read_pos += count;
    }

    /// The end of a hop: analyses the completed frame, finishes the resynthesis of the frame
    /// `delay_frames` earlier (whose deadline this is), and opens the next hop's resynthesis.
    fn run_hop(&mut self) {
        let frame = self.next_frame;
        self.next_frame += 1;
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.analyse(frame);
        let n_fft = self.n_fft;
        for ch in 0..self.channels {
            self.input_frames
                .copy_within(ch * n_fft + self.hop..(ch + 1) * n_fft, ch * n_fft);
        }
        self.input_fill = n_fft - self.hop;
        if let Some(due) = self.frame_due_at_end_of(frame) {
            if self.synthesis.frame != Some(due) {
                self.synthesis.open(due);
            }
            self.begin_synthesis();
            self.synthesise_lanes(self.sources * self.channels);
            if let Some(job) = self.synthesis.close() {
                self.free_jobs.push(job);
            }
        }
        self.shift_out_hop();
        if let Some(next) = self.frame_due_at_end_of(self.next_frame) {
            self.synthesis.open(next);
        }
    }

    /// The frame whose output is due when frame `frame` completes: `delay_frames` earlier, and
    /// none before the first frame since the last reset.
    fn frame_due_at_end_of(&self, frame: u64) -> Option<u64> {
        let delay = self.delay_frames as u64;
        (frame >= self.first_frame + delay).then(|| frame - delay)
    }

    /// Spreads the open frame's resynthesis over the hop in real time: once its result is back,
    /// each call resynthesises the share of the source lanes that the hop's progress calls for,
    /// so no single block pays for the whole hop. Offline (`Wait`) everything happens at the end
    /// of the hop, as the result may not exist before then.
    fn synthesise_ahead(&mut self) {
        if self.config.deadline != DeadlinePolicy::RealTime || self.synthesis.frame.is_none() {
            return;
        }
        if !self.synthesis.begun {
            let Some(frame) = self.synthesis.frame else {
                return;
            };
            if !self.result_is_back(frame) {
                return;
            }
            self.begin_synthesis();
        }
        // Every lane is done by three quarters of the hop, leaving the block that ends the hop
        // only the analysis.
        let progress = self.input_fill - (self.n_fft - self.hop);
        let lanes = self.sources * self.channels;
        self.synthesise_lanes((lanes * progress * 4 / (self.hop * 3)).min(lanes));
    }

    /// Whether the worker has returned `frame`'s result (without waiting).
    fn result_is_back(&mut self, frame: u64) -> bool {
        self.drain_returned();
        self.returned_jobs.iter().any(|job| job.frame >= frame)
    }

    /// STFT of the newest frame into the spectrum ring, and its features to the worker.
    fn analyse(&mut self, frame: u64) {
        let slot = self.slot(frame);
        for ch in 0..self.channels {
            let samples = &self.input_frames[ch * self.n_fft..(ch + 1) * self.n_fft];
            for ((dst, &x), &w) in self
                .time_frame
                .iter_mut()
                .zip(samples)
                .zip(&self.analysis_window)
            {
                *dst = x * w;
            }
            let spectrum = &mut self.spectra[slot + ch * self.full_bins..][..self.full_bins];
            // Lengths are fixed at construction, so the transform cannot fail.
            let _ = self.fft.process_with_scratch(
                &mut self.time_frame,
                spectrum,
                &mut self.fft_scratch,
            );
        }
        let Some(mut job) = self.free_jobs.pop() else {
            return;
        };
        let bins = self.spec.bins;
        let spectra = &self.spectra[slot..][..self.channels * self.full_bins];
        let io_channels = self.channels;
        // The model channel's view of the mix: the channel itself, the downmix for a mono model,
        // or the single channel repeated for a stereo model.
        let mix_bin = |model_ch: usize, bin: usize| -> Complex<f32> {
            if io_channels == self.spec.channels {
                spectra[model_ch * self.full_bins + bin]
            } else if io_channels == 2 {
                (spectra[bin] + spectra[self.full_bins + bin]) * 0.5
            } else {
                spectra[bin]
            }
        };
        for model_ch in 0..self.spec.channels {
            match self.spec.features {
                FeatureKind::Magnitude => {
                    let part = &mut job.features[model_ch * bins..(model_ch + 1) * bins];
                    for (bin, dst) in part.iter_mut().enumerate() {
                        let z = mix_bin(model_ch, bin);
                        *dst = (z.re * z.re + z.im * z.im).sqrt();
                    }
                }
                FeatureKind::Complex => {
                    let part = &mut job.features[model_ch * bins * 2..(model_ch + 1) * bins * 2];
                    for (bin, dst) in part.chunks_exact_mut(2).enumerate() {
                        let z = mix_bin(model_ch, bin);
                        dst[0] = z.re;
                        dst[1] = z.im;
                    }
                }
            }
        }
        if self.wiener {
            let (left, right) = job.spectrum.split_at_mut(bins);
            left.copy_from_slice(&spectra[..bins]);
            right.copy_from_slice(&spectra[self.full_bins..][..bins]);
        }
        job.frame = frame;
        job.ok = false;
        if let Err(rtrb::PushError::Full(job)) = self.worker.to_worker.push(job) {
            self.free_jobs.push(job);
        }
    }

    fn slot(&self, frame: u64) -> usize {
        (frame % (self.delay_frames as u64 + 1)) as usize * self.channels * self.full_bins
    }

    fn drain_returned(&mut self) {
        while let Ok(job) = self.worker.from_worker.pop() {
            self.returned_jobs.push_back(job);
        }
    }

    /// Finds the result for `frame`, recycling stale ones; waits for it under
    /// [`DeadlinePolicy::Wait`].
    fn take_result(&mut self, frame: u64) -> Option<Job> {
        loop {
            self.drain_returned();
            while let Some(job) = self.returned_jobs.pop_front() {
                if job.frame < frame {
                    self.free_jobs.push(job);
                    continue;
                }
                if job.frame == frame {
                    return Some(job);
                }
                self.returned_jobs.push_front(job);
                return None;
            }
            let held =
                usize::from(self.mask_job.is_some()) + usize::from(self.synthesis.job.is_some());
            let in_flight = self.free_jobs.len() + self.returned_jobs.len() + held < self.pool;
            if self.config.deadline == DeadlinePolicy::RealTime
                || self.worker.is_dead()
                || !in_flight
            {
                return None;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Takes the open frame's result (waiting for it under [`DeadlinePolicy::Wait`]), counts a
    /// miss when it is missing or invalid, and updates the mask in use.
    fn begin_synthesis(&mut self) {
        let Some(frame) = self.synthesis.frame else {
            return;
        };
        if self.synthesis.begun {
            return;
        }
        let mut job = self.take_result(frame);
        let usable = job.as_ref().is_some_and(|job| job.ok);
        if !usable {
            self.stats.deadline_misses.fetch_add(1, Ordering::Relaxed);
        }
        if usable && self.spec.result == ResultKind::Mask {
            // The new mask replaces the one in use; no copy.
            if let Some(old) = std::mem::replace(&mut self.mask_job, job.take()) {
                self.free_jobs.push(old);
            }
        }
        self.synthesis.begun = true;
        self.synthesis.usable = usable;
        self.synthesis.job = job;
    }

    /// Applies the open frame's result to its spectrum and overlap-adds source lanes (lane =
    /// source · channels + channel) until `until` of them are done.
    fn synthesise_lanes(&mut self, until: usize) {
        let Some(frame) = self.synthesis.frame else {
            return;
        };
        let slot = self.slot(frame);
        let job = self.synthesis.job.take();
        let result = job
            .as_ref()
            .filter(|_| self.synthesis.usable)
            .map(|j| &j.result[..]);
        while self.synthesis.lanes_done < until {
            let lane = self.synthesis.lanes_done;
            self.synthesis.lanes_done += 1;
            let (src, ch) = (lane / self.channels, lane % self.channels);
            if Some(src) == self.residual {
                continue;
            }
            self.source_spectrum_for(slot, ch, src, result);
            let spectrum = &mut self.source_spectrum;
            // A real inverse FFT needs real DC and Nyquist bins.
            spectrum[0].im = 0.0;
            spectrum[self.full_bins - 1].im = 0.0;
            let _ = self.ifft.process_with_scratch(
                spectrum,
                &mut self.time_frame,
                &mut self.ifft_scratch,
            );
            let scale = 1.0 / self.n_fft as f32;
            let acc = &mut self.overlap[lane * self.n_fft..(lane + 1) * self.n_fft];
            for ((a, &x), &w) in acc
                .iter_mut()
                .zip(&self.time_frame)
                .zip(&self.synthesis_window)
            {
                *a += x * w * scale;
            }
        }
        self.synthesis.job = job;
    }

    /// Writes source `src`'s spectrum for channel `ch` of the frame in `slot` into
    /// `source_spectrum`.
    fn source_spectrum_for(&mut self, slot: usize, ch: usize, src: usize, result: Option<&[f32]>) {
        let bins = self.spec.bins;
        let frame_spectra = &self.spectra[slot..][..self.channels * self.full_bins];
        let mix = &frame_spectra[ch * self.full_bins..][..self.full_bins];
        let out = &mut self.source_spectrum;
        let fallback = self.spec.fallback_source;
        let whole_mix_or_nothing = |out: &mut [Complex<f32>], mix: &[Complex<f32>]| {
            if src == fallback {
                out.copy_from_slice(mix);
            } else {
                out.fill(Complex::default());
            }
        };
        whole_mix_or_nothing(&mut out[bins..], &mix[bins..]);
        match self.spec.result {
            ResultKind::Mask => {
                if let Some(job) = self.mask_job.as_ref().filter(|_| self.wiener) {
                    let (left, right) = frame_spectra.split_at(self.full_bins);
                    apply_filter(&job.filter, src, ch, left, right, &mut out[..bins]);
                } else if let Some(mask) = self.mask_job.as_ref().map(|job| &job.result[..]) {
                    let model_channels = self.spec.channels;
                    let lane = |mc: usize| &mask[(src * model_channels + mc) * bins..][..bins];
                    if model_channels == self.channels || model_channels == 1 {
                        let mask = lane(if model_channels == 1 { 0 } else { ch });
                        for ((o, &x), &m) in out[..bins].iter_mut().zip(&mix[..bins]).zip(mask) {
                            *o = x * m;
                        }
                    } else {
                        let (left, right) = (lane(0), lane(1));
                        for (((o, &x), &l), &r) in out[..bins]
                            .iter_mut()
                            .zip(&mix[..bins])
                            .zip(left)
                            .zip(right)
                        {
                            *o = x * (0.5 * (l + r));
                        }
                    }
                } else {
                    whole_mix_or_nothing(&mut out[..bins], &mix[..bins]);
                }
            }
            ResultKind::Spectrum { residual } => match result {
                None => whole_mix_or_nothing(&mut out[..bins], &mix[..bins]),
                Some(result) => {
                    let model_channels = self.spec.channels;
                    let io_channels = self.channels;
                    // Source `s`'s estimate for this channel; a mono input hears the average of
                    // a stereo model's two channels.
                    let estimate = |s: usize, bin: usize| -> Complex<f32> {
                        let at = |mc: usize| {
                            let i = ((s * model_channels + mc) * bins + bin) * 2;
                            Complex::new(result[i], result[i + 1])
                        };
                        if model_channels == io_channels {
                            at(ch)
                        } else {
                            (at(0) + at(1)) * 0.5
                        }
                    };
                    if residual == Some(src) {
                        for (bin, o) in out[..bins].iter_mut().enumerate() {
                            *o = mix[bin];
                            for other in (0..self.sources).filter(|&s| s != src) {
                                *o -= estimate(other, bin);
                            }
                        }
                    } else {
                        for (bin, o) in out[..bins].iter_mut().enumerate() {
                            *o = estimate(src, bin);
                        }
                    }
                }
            },
        }
    }

    fn shift_out_hop(&mut self) {
        let (n_fft, hop) = (self.n_fft, self.hop);
        for lane in 0..self.sources * self.channels {
            if Some(lane / self.channels) == self.residual {
                // Its accumulator stays silent: `write_residual` makes this source.
                continue;
            }
            let acc = &mut self.overlap[lane * n_fft..(lane + 1) * n_fft];
            self.ready_samples[lane * hop..(lane + 1) * hop].copy_from_slice(&acc[..hop]);
            acc.copy_within(hop.., 0);
            acc[n_fft - hop..].fill(0.0);
        }
        self.read_pos = 0;
    }
}

/// The length of a block whose `input` has `channels` slices and `output` has `lanes` slices,
/// all of one length; for any other shape the output is silenced and `None` returned.
/// Real-time safe.
pub(crate) fn block_len(
    input: &[&[f32]],
    output: &mut [&mut [f32]],
    channels: usize,
    lanes: usize,
) -> Option<usize> {
    let len = input.first().map_or(0, |c| c.len());
    let usable = input.len() == channels
        && output.len() == lanes
        && input.iter().all(|c| c.len() == len)
        && output.iter().all(|c| c.len() == len);
    if !usable {
        for out in output.iter_mut() {
            out.fill(0.0);
        }
        return None;
    }
    Some(len)
}

/// Fills source `residual`'s lanes of `output` (source-major, one lane per input channel) with
/// the input delayed by `delays` (one per channel) minus the other sources' lanes. Real-time
/// safe.
pub(crate) fn write_residual(
    residual: usize,
    delays: &mut [DelayLine],
    input: &[&[f32]],
    output: &mut [&mut [f32]],
) {
    let channels = input.len();
    let sources = output.len() / channels.max(1);
    for (ch, (samples, delay)) in input.iter().zip(delays.iter_mut()).enumerate() {
        let index = residual * channels + ch;
        let lane = std::mem::take(&mut output[index]);
        for (o, &x) in lane.iter_mut().zip(samples.iter()) {
            *o = sanitize(x);
        }
        delay.process(lane);
        for source in (0..sources).filter(|&s| s != residual) {
            for (o, &x) in lane.iter_mut().zip(output[source * channels + ch].iter()) {
                *o -= x;
            }
        }
        output[index] = lane;
    }
}

/// Reads a host sample safely: NaN, ±Inf and subnormals become 0, absurd values are clamped to
/// ±[`INPUT_LIMIT`]. Real-time safe.
#[inline]
pub(crate) fn sanitize(x: f32) -> f32 {
    if x.is_normal() {
        x.clamp(-INPUT_LIMIT, INPUT_LIMIT)
    } else {
        0.0
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
