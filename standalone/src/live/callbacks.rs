//! The two audio callbacks of a live session.
//!
//! The input callback only copies the device's samples into a lock-free ring. The output
//! callback does the work: it takes exactly as many frames from the ring as the device asks
//! for, runs the [`Separator`], mixes the stems with smoothed gains, writes the device's buffer
//! and hands input and stems to the recorder's ring. Running the separator on the output side
//! makes the output deadline the only one that matters.
//!
//! Latency: the delay through the ring is fixed when the output starts reading. It waits until
//! one input block plus one output block are queued (dropping anything older), then takes one
//! block per callback, so the queue never runs dry whatever order the backend runs the two
//! callbacks in (JACK may even run them in parallel), and the delay stays constant: a whole
//! number of blocks, one or two depending on that order. If the host skips output cycles the
//! surplus is dropped again. After an underrun the output waits for one more block than
//! before; after an overrun it drops the queue and fills it again. The capture-to-playback
//! delay is measured from the backend's timestamps and published for the display.
//!
//! Xruns: an underrun is demix's unless the host reported an xrun or skipped input cycles (a
//! gap in the input timestamps) within a few callbacks of it; overruns are always demix's.
//!
//! Both callbacks are real-time safe: no allocation, lock, I/O or wait (the load measurement
//! reads the monotonic clock, a vDSO call); every buffer is allocated when the session is
//! built.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use cpal::{FromSample, InputCallbackInfo, OutputCallbackInfo, Sample, StreamInstant};
use demix_dsp::separator::MAX_SOURCES;
use demix_dsp::Separator;
use rtrb::{Consumer, Producer};

use super::shared::Shared;

/// Largest block handed to the separator at once; longer callbacks are split.
pub const MAX_BLOCK: usize = 2048;
/// Output callbacks before an underrun within which trouble the host reports (an xrun, skipped
/// input cycles) explains it.
const ATTRIBUTION_CALLBACKS: usize = 8;
/// Seconds after an underrun within which trouble the host reports explains it (JACK's xrun
/// notifications come from a thread without real-time priority, so they can be late).
const ATTRIBUTION_SECONDS_AFTER: f64 = 0.5;
/// Gain changes glide with this time constant, in seconds, so they never click.
const GAIN_SMOOTHING_SECONDS: f32 = 0.01;

/// The input device's side: device samples → ring.
pub struct InputSide {
    producer: Producer<f32>,
    device_channels: usize,
    channels: usize,
    rate: f64,
    frames: u64,
    gaps: GapDetector,
    shared: Arc<Shared>,
}

impl InputSide {
    /// Takes the first `channels` of the device's `device_channels` channels into `producer`.
    pub fn new(
        producer: Producer<f32>,
        device_channels: usize,
        channels: usize,
        rate: u32,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            producer,
            device_channels,
            channels,
            rate: f64::from(rate),
            frames: 0,
            gaps: GapDetector::default(),
            shared,
        }
    }

    /// The input callback. Real-time safe.
    pub fn process<T>(&mut self, data: &[T], info: &InputCallbackInfo)
    where
        T: Sample,
        f32: FromSample<T>,
    {
        let frames = data.len() / self.device_channels.max(1);
        let capture = nanos(&info.timestamp().capture);
        let lost = self.gaps.lost_frames(capture, frames, self.rate);
        if lost > 0 {
            self.shared
                .input_lost_frames
                .fetch_add(lost, Ordering::Relaxed);
        }
        if let Some(capture) = capture.and_then(|c| u64::try_from(c).ok()) {
            self.shared.input_stamp.publish(self.frames, capture);
        }
        self.frames += frames as u64;
        self.shared
            .input_frames
            .store(self.frames, Ordering::Relaxed);
        self.shared
            .input_block
            .store(frames as u64, Ordering::Relaxed);
        let mut peak = 0.0f32;
        let samples = data
            .chunks_exact(self.device_channels)
            .flat_map(|frame| frame[..self.channels].iter())
            .map(|&s| {
                let x = f32::from_sample(s);
                peak = peak.max(x.abs());
                x
            });
        match self.producer.write_chunk_uninit(frames * self.channels) {
            Ok(chunk) => {
                chunk.fill_from_iter(samples);
            }
            Err(_) => {
                self.shared.ring_overruns.fetch_add(1, Ordering::Relaxed);
                self.shared.resync.store(true, Ordering::Relaxed);
            }
        }
        self.shared.raise_input_peak(peak);
    }
}

/// The output device's side: ring → separator → gains → device, and → recorder.
pub struct OutputSide {
    consumer: Consumer<f32>,
    separator: Separator,
    device_channels: usize,
    channels: usize,
    sources: usize,
    rate: f64,
    input: Vec<Vec<f32>>,
    stems: Vec<Vec<f32>>,
    mix: Vec<Vec<f32>>,
    gains: [f32; MAX_SOURCES],
    smoothing: f32,
    reading: bool,
    extra_frames: usize,
    max_extra_frames: usize,
    consumed: u64,
    gaps: GapDetector,
    output_lost: u64,
    /// [`Self::host_trouble`] at the start of each of the last callbacks (a ring).
    trouble_history: [u64; ATTRIBUTION_CALLBACKS],
    history_pos: usize,
    /// An underrun not yet attributed: the host trouble count from before it, and frames left
    /// to see the host report trouble that explains it.
    pending_underrun: Option<(u64, usize)>,
    recorder: Option<Producer<f32>>,
    shared: Arc<Shared>,
}

impl OutputSide {
    /// Builds the output side; allocates every buffer the callback uses. `channels` is the
    /// separator's channel count, `device_channels` the output device's; `recorder` receives
    /// interleaved frames of the input's channels followed by every stem's channels.
    pub fn new(
        consumer: Consumer<f32>,
        separator: Separator,
        device_channels: usize,
        recorder: Option<Producer<f32>>,
        shared: Arc<Shared>,
    ) -> Self {
        let channels = separator.channels();
        let sources = separator.sources();
        let rate = separator.host_rate();
        let mut gains = [0.0; MAX_SOURCES];
        for (index, gain) in gains.iter_mut().enumerate().take(sources) {
            *gain = shared.gain(index);
        }
        Self {
            consumer,
            device_channels,
            channels,
            sources,
            rate: f64::from(rate),
            input: vec![vec![0.0; MAX_BLOCK]; channels],
            stems: vec![vec![0.0; MAX_BLOCK]; channels * sources],
            mix: vec![vec![0.0; MAX_BLOCK]; channels],
            gains,
            smoothing: 1.0 - (-1.0 / (GAIN_SMOOTHING_SECONDS * rate as f32)).exp(),
            reading: false,
            extra_frames: 0,
            max_extra_frames: rate as usize / 2,
            consumed: 0,
            gaps: GapDetector::default(),
            output_lost: 0,
            trouble_history: [0; ATTRIBUTION_CALLBACKS],
            history_pos: 0,
            pending_underrun: None,
            recorder,
            separator,
            shared,
        }
    }

    /// Runs one block of silence through the separator, the mix and the recorder (not the
    /// ring or the device), so the first real callback does not pay for first-touch page
    /// faults and cold caches. Call it once, before the stream starts. Not real-time safe.
    pub fn prime(&mut self) {
        for channel in self.input.iter_mut() {
            channel.fill(0.0);
        }
        self.separate_and_mix(MAX_BLOCK);
        self.record(MAX_BLOCK);
        for lane in self.mix.iter_mut().chain(self.stems.iter_mut()) {
            lane.fill(0.0);
        }
    }

    /// The output callback. Real-time safe.
    pub fn process<T>(&mut self, data: &mut [T], info: &OutputCallbackInfo)
    where
        T: Sample + FromSample<f32>,
    {
        let started = Instant::now();
        let frames = data.len() / self.device_channels.max(1);
        let playback = nanos(&info.timestamp().playback);
        let lost = self.gaps.lost_frames(playback, frames, self.rate);
        self.output_lost += lost;
        self.update_ring_state(frames, lost > 0);
        if self.reading {
            self.publish_latency(info);
        }
        for block in data.chunks_mut(MAX_BLOCK * self.device_channels) {
            let n = block.len() / self.device_channels;
            self.fill_input(n);
            self.separate_and_mix(n);
            self.write_device(block, n);
            self.record(n);
        }
        let total = self.shared.output_frames.load(Ordering::Relaxed) + frames as u64;
        self.shared.output_frames.store(total, Ordering::Relaxed);
        if frames > 0 {
            let load = started.elapsed().as_secs_f64() * self.rate / frames as f64;
            if load > 1.0 {
                self.shared.late_callbacks.fetch_add(1, Ordering::Relaxed);
            }
            self.shared.raise_load(load as f32);
        }
    }

    /// Grows whenever the host reports an xrun or skips input or output cycles.
    fn host_trouble(&self) -> u64 {
        self.shared.input_lost_frames.load(Ordering::Relaxed)
            + self.output_lost
            + self.shared.host_xruns.load(Ordering::Relaxed)
    }

    /// Decides whether this callback reads from the ring (see the module documentation).
    /// `output_skipped`: the host skipped output cycles just before this one.
    fn update_ring_state(&mut self, frames: usize, output_skipped: bool) {
        let trouble = self.host_trouble();
        let trouble_before = self.trouble_history[self.history_pos];
        self.trouble_history[self.history_pos] = trouble;
        self.history_pos = (self.history_pos + 1) % ATTRIBUTION_CALLBACKS;
        if let Some((mark, left)) = self.pending_underrun {
            if trouble > mark {
                self.shared.host_underruns.fetch_add(1, Ordering::Relaxed);
                self.pending_underrun = None;
            } else if left <= frames {
                self.shared.ring_underruns.fetch_add(1, Ordering::Relaxed);
                self.pending_underrun = None;
            } else {
                self.pending_underrun = Some((mark, left - frames));
            }
        }
        if self.shared.resync.swap(false, Ordering::Relaxed) {
            let queued = self.consumer.slots();
            if let Ok(chunk) = self.consumer.read_chunk(queued) {
                chunk.commit_all();
            }
            self.consumed += (queued / self.channels) as u64;
            self.reading = false;
        }
        let queued = self.consumer.slots() / self.channels;
        let input_block = self.shared.input_block.load(Ordering::Relaxed) as usize;
        let target = input_block + frames + self.extra_frames;
        // Whatever queued up before the output started, or while the host skipped output
        // cycles, would only add latency.
        if (!self.reading || output_skipped) && input_block > 0 && queued >= target {
            let excess = queued - target;
            if let Ok(chunk) = self.consumer.read_chunk(excess * self.channels) {
                chunk.commit_all();
            }
            self.consumed += excess as u64;
            self.reading = true;
        }
        if self.reading && queued < frames {
            // Attributed within a few callbacks: to the host when it reported an xrun or
            // skipped input cycles shortly before or after, otherwise to demix.
            if self.pending_underrun.is_none() {
                let window = (ATTRIBUTION_SECONDS_AFTER * self.rate) as usize;
                self.pending_underrun = Some((trouble_before, window));
            } else {
                self.shared.ring_underruns.fetch_add(1, Ordering::Relaxed);
            }
            self.reading = false;
            self.extra_frames = (self.extra_frames + frames).min(self.max_extra_frames);
        }
        let target = input_block + frames + self.extra_frames;
        self.shared
            .ring_target_frames
            .store(target as u64, Ordering::Relaxed);
    }

    /// Publishes the capture-to-playback delay of the first frame this callback plays.
    /// The frame's capture time is extrapolated from the latest input block's timestamp, which
    /// is at most a few blocks newer, so cycles the host skipped long ago do not distort it.
    fn publish_latency(&self, info: &OutputCallbackInfo) {
        let (Some(playback), Some((frame, stamp))) = (
            nanos(&info.timestamp().playback),
            self.shared.input_stamp.read(),
        ) else {
            return;
        };
        let age = (frame as f64 - self.consumed as f64) / self.rate * 1e9;
        let captured = stamp as f64 - age;
        let delay = (playback as f64 - captured) * 1e-9 * self.rate;
        if delay >= 0.0 {
            self.shared
                .io_latency_frames
                .store(delay.round() as u64, Ordering::Relaxed);
        }
    }

    fn fill_input(&mut self, n: usize) {
        if !self.reading {
            for channel in self.input.iter_mut() {
                channel[..n].fill(0.0);
            }
            return;
        }
        let channels = self.channels;
        if let Ok(chunk) = self.consumer.read_chunk(n * channels) {
            let (first, second) = chunk.as_slices();
            for (i, &x) in first.iter().chain(second).enumerate() {
                self.input[i % channels][i / channels] = x;
            }
            chunk.commit_all();
        }
        self.consumed += n as u64;
    }

    fn separate_and_mix(&mut self, n: usize) {
        let mut peak = 0.0f32;
        for channel in &self.input {
            peak = channel[..n].iter().fold(peak, |m, x| m.max(x.abs()));
        }
        self.shared.raise_input_peak(peak);
        let mut inputs: [&[f32]; 2] = [&[], &[]];
        for (slot, channel) in inputs.iter_mut().zip(&self.input) {
            *slot = &channel[..n];
        }
        let lanes = self.stems.len();
        let mut outputs: [&mut [f32]; 2 * MAX_SOURCES] = Default::default();
        for (slot, lane) in outputs.iter_mut().zip(self.stems.iter_mut()) {
            *slot = &mut lane[..n];
        }
        self.separator
            .process(&inputs[..self.channels], &mut outputs[..lanes]);
        for source in 0..self.sources {
            let lanes = &self.stems[source * self.channels..(source + 1) * self.channels];
            let peak = lanes
                .iter()
                .flat_map(|lane| lane[..n].iter())
                .fold(0.0f32, |m, x| m.max(x.abs()));
            self.shared.raise_stem_peak(source, peak);
        }
        for channel in self.mix.iter_mut() {
            channel[..n].fill(0.0);
        }
        for source in 0..self.sources {
            let target = self.shared.gain(source);
            let mut gain = self.gains[source];
            let lanes = &self.stems[source * self.channels..(source + 1) * self.channels];
            for i in 0..n {
                gain += (target - gain) * self.smoothing;
                if (gain - target).abs() < 1e-6 {
                    gain = target;
                }
                for (mix, lane) in self.mix.iter_mut().zip(lanes) {
                    mix[i] += gain * lane[i];
                }
            }
            self.gains[source] = gain;
        }
    }

    fn write_device<T>(&mut self, block: &mut [T], n: usize)
    where
        T: Sample + FromSample<f32>,
    {
        let mut peak = 0.0f32;
        for (i, frame) in block.chunks_exact_mut(self.device_channels).enumerate() {
            for (c, out) in frame.iter_mut().enumerate() {
                let value = match (self.channels, self.device_channels) {
                    (1, _) => self.mix[0][i],
                    (_, 1) => 0.5 * (self.mix[0][i] + self.mix[1][i]),
                    _ if c < 2 => self.mix[c][i],
                    _ => 0.0,
                };
                let value = value.clamp(-1.0, 1.0);
                peak = peak.max(value.abs());
                *out = T::from_sample(value);
            }
        }
        debug_assert_eq!(block.len(), n * self.device_channels);
        self.shared.raise_output_peak(peak);
    }

    fn record(&mut self, n: usize) {
        let Some(producer) = self.recorder.as_mut() else {
            return;
        };
        let lanes = self.input.len() + self.stems.len();
        match producer.write_chunk_uninit(n * lanes) {
            Ok(chunk) => {
                let (input, stems) = (&self.input, &self.stems);
                chunk.fill_from_iter(
                    (0..n).flat_map(|i| input.iter().chain(stems.iter()).map(move |l| l[i])),
                );
            }
            Err(_) => {
                self.shared
                    .recorder_dropped
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for OutputSide {
    /// An underrun still waiting for attribution when the stream stops counts as demix's.
    fn drop(&mut self) {
        if self.pending_underrun.is_some() {
            self.shared.ring_underruns.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Finds cycles the host skipped from the gaps between a stream's callback timestamps.
#[derive(Debug, Default)]
struct GapDetector {
    last: Option<(i128, usize)>,
}

impl GapDetector {
    /// Frames skipped between the previous callback (at `now` minus the gap) and this one,
    /// which starts at `now` (nanoseconds) and lasts `frames`. Gaps under one and a half blocks
    /// are timing jitter.
    fn lost_frames(&mut self, now: Option<i128>, frames: usize, rate: f64) -> u64 {
        let Some(now) = now else {
            return 0;
        };
        let lost = match self.last {
            Some((before, block)) => {
                let gap = (now - before) as f64 * 1e-9 * rate;
                if gap > 1.5 * block as f64 {
                    (gap.round() as u64).saturating_sub(block as u64)
                } else {
                    0
                }
            }
            None => 0,
        };
        self.last = Some((now, frames));
        lost
    }
}

/// Writes and reads every slot of a fresh ring once, so the audio thread never takes the
/// first-touch page faults of its memory. Not real-time safe.
pub fn prefault(producer: &mut Producer<f32>, consumer: &mut Consumer<f32>) {
    let slots = producer.slots();
    if let Ok(chunk) = producer.write_chunk_uninit(slots) {
        chunk.fill_from_iter(std::iter::repeat(0.0));
    }
    if let Ok(chunk) = consumer.read_chunk(slots) {
        chunk.commit_all();
    }
}

/// A stream timestamp in nanoseconds since the backend's clock origin.
fn nanos(instant: &StreamInstant) -> Option<i128> {
    instant
        .duration_since(&StreamInstant::new(0, 0))
        .map(|d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpal::{InputStreamTimestamp, OutputStreamTimestamp};
    use demix_dsp::reference_models::{band_split, mask_spec};
    use demix_dsp::{DeadlinePolicy, EngineConfig};

    fn input_info(seconds: f64) -> InputCallbackInfo {
        let at = StreamInstant::new(seconds as i64, (seconds.fract() * 1e9) as u32);
        InputCallbackInfo::new(InputStreamTimestamp {
            callback: at,
            capture: at,
        })
    }

    fn output_info(seconds: f64) -> OutputCallbackInfo {
        let at = StreamInstant::new(seconds as i64, (seconds.fract() * 1e9) as u32);
        OutputCallbackInfo::new(OutputStreamTimestamp {
            callback: at,
            playback: at,
        })
    }

    /// A separator at 48 kHz (no resampling) around a two-band reference model.
    fn separator(channels: usize) -> Separator {
        let mut spec = mask_spec(&["low", "high"], 256, 64, 1);
        spec.sample_rate = 48_000;
        let config = EngineConfig {
            compute_slack_hops: 2,
            deadline: DeadlinePolicy::RealTime,
        };
        Separator::new(Box::new(band_split(spec)), config, 48_000, channels).unwrap()
    }

    #[test]
    fn output_is_the_input_delayed_by_the_ring_and_the_engine_whatever_the_callback_order() {
        const BLOCK: usize = 128;
        let rate = 48_000.0;
        let shared = Arc::new(Shared::new());
        let (producer, consumer) = rtrb::RingBuffer::new(48_000);
        let (rec_producer, mut rec_consumer) = rtrb::RingBuffer::new(1 << 20);
        let separator = separator(2);
        let engine_latency = separator.latency();
        let mut input = InputSide::new(producer, 3, 2, 48_000, shared.clone());
        let mut output =
            OutputSide::new(consumer, separator, 2, Some(rec_producer), shared.clone());
        let signal = |t: usize| ((t as f32) * 0.01).cos() * 0.5;
        let mut played = Vec::new();
        let cycles = 200;
        for cycle in 0..cycles {
            let time = (cycle * BLOCK) as f64 / rate;
            let block: Vec<f32> = (0..BLOCK)
                .flat_map(|i| {
                    let x = signal(cycle * BLOCK + i);
                    [x, -x, 9.0]
                })
                .collect();
            let mut out = vec![0.0f32; BLOCK * 2];
            // The backend may run the two callbacks in either order within a cycle.
            if cycle % 3 == 1 {
                output.process(&mut out, &output_info(1.0 + time + BLOCK as f64 / rate));
                input.process(&block, &input_info(1.0 + time));
            } else {
                input.process(&block, &input_info(1.0 + time));
                output.process(&mut out, &output_info(1.0 + time + BLOCK as f64 / rate));
            }
            played.extend(out.chunks_exact(2).map(|f| (f[0], f[1])));
        }
        assert_eq!(shared.own_xruns(), 0);
        // The delay that lines the played left channel up with the signal, over the last second.
        let late = played.len() - 24_000..played.len();
        let error = |delay: usize| -> f32 {
            late.clone()
                .map(|t| {
                    (played[t].0 - signal(t - delay)).abs()
                        + (played[t].1 + signal(t - delay)).abs()
                })
                .fold(0.0, f32::max)
        };
        let delay = (engine_latency..engine_latency + 4 * BLOCK)
            .min_by(|&a, &b| error(a).total_cmp(&error(b)))
            .unwrap();
        assert!(error(delay) < 1e-3, "error {}", error(delay));
        let ring_delay = delay - engine_latency;
        assert_eq!(ring_delay % BLOCK, 0, "the ring delays by whole blocks");
        assert!((BLOCK..=2 * BLOCK).contains(&ring_delay), "{ring_delay}");
        let measured = shared.io_latency_frames.load(Ordering::Relaxed) as usize;
        assert_eq!(measured, ring_delay + BLOCK, "capture-to-playback delay");
        // The recorder saw the separator's input and every stem, frame by frame.
        let lanes = 2 + 2 * 2;
        let recorded = rec_consumer.slots();
        assert_eq!(recorded, cycles * BLOCK * lanes);
        let chunk = rec_consumer.read_chunk(recorded).unwrap();
        let (a, b) = chunk.as_slices();
        let all: Vec<f32> = a.iter().chain(b).copied().collect();
        for (t, frame) in all.chunks_exact(lanes).enumerate() {
            let (l, _) = played[t];
            let stems_left = frame[2] + frame[4];
            assert!((stems_left - l).abs() < 1e-6, "t={t}");
        }
    }

    #[test]
    fn underruns_are_blamed_on_the_host_only_when_it_reported_trouble() {
        const BLOCK: usize = 64;
        let at = |cycle: usize| 1.0 + (cycle * BLOCK) as f64 / 48_000.0;
        let shared = Arc::new(Shared::new());
        let (producer, consumer) = rtrb::RingBuffer::new(4096);
        let mut input = InputSide::new(producer, 2, 2, 48_000, shared.clone());
        let mut output = OutputSide::new(consumer, separator(2), 2, None, shared.clone());
        let block = vec![0.25f32; BLOCK * 2];
        let mut out = vec![0.0f32; BLOCK * 2];
        let mut cycle = 0;
        let mut run = |cycles: usize, with_input: bool, input_cycle_offset: isize| {
            for _ in 0..cycles {
                if with_input {
                    let input_cycle = (cycle as isize + input_cycle_offset) as usize;
                    input.process(&block, &input_info(at(input_cycle)));
                }
                output.process(&mut out, &output_info(at(cycle)));
                cycle += 1;
            }
            out.clone()
        };
        run(4, true, 0);
        // The host skips two input cycles: its timestamps jump, the ring runs dry.
        run(2, false, 0);
        run(20, true, 0);
        assert_eq!(shared.host_underruns.load(Ordering::Relaxed), 1);
        assert_eq!(shared.ring_underruns.load(Ordering::Relaxed), 0);
        assert_eq!(
            shared.ring_target_frames.load(Ordering::Relaxed) as usize,
            3 * BLOCK,
            "reading resumes with one more block of margin"
        );
        // Input that arrives without any skipped cycle but too little: demix's own underrun
        // (the input timestamps run three cycles behind the output's from here on).
        run(3, false, 0);
        run(400, true, -3);
        assert_eq!(shared.ring_underruns.load(Ordering::Relaxed), 1);
        assert_eq!(shared.host_underruns.load(Ordering::Relaxed), 1);
        // The same, right after the host reported an xrun: the host's.
        shared.host_xruns.fetch_add(1, Ordering::Relaxed);
        run(4, false, 0);
        run(20, true, -7);
        assert_eq!(shared.ring_underruns.load(Ordering::Relaxed), 1);
        assert_eq!(shared.host_underruns.load(Ordering::Relaxed), 2);
        // Gains move smoothly: a mute takes effect over a few milliseconds.
        shared.set_gain(0, 0.0);
        shared.set_gain(1, 0.0);
        let out = run(100, true, -7);
        assert_eq!(shared.own_xruns(), 1);
        assert!(out.iter().all(|x| x.abs() < 1e-4), "muted output");
    }

    #[test]
    fn an_overrun_drops_the_block_and_refills_the_queue() {
        let shared = Arc::new(Shared::new());
        let (producer, consumer) = rtrb::RingBuffer::new(256);
        let mut input = InputSide::new(producer, 1, 1, 48_000, shared.clone());
        let mut output = OutputSide::new(consumer, separator(1), 1, None, shared.clone());
        let block = vec![0.1f32; 128];
        for _ in 0..3 {
            input.process(&block, &input_info(1.0));
        }
        assert_eq!(shared.ring_overruns.load(Ordering::Relaxed), 1);
        let mut out = vec![0.0f32; 128];
        output.process(&mut out, &output_info(1.0));
        assert!(!shared.resync.load(Ordering::Relaxed));
        assert_eq!(shared.ring_underruns.load(Ordering::Relaxed), 0);
    }
}
