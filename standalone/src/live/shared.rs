//! State shared between the audio callbacks and the control thread (TUI or status printer):
//! relaxed atomics only, so the callbacks never lock or wait for the display.

use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};

use demix_dsp::separator::MAX_SOURCES;

/// Counters, meters and gain targets of one live session. Every method is lock-free and
/// allocation-free, so both the audio callbacks and the control thread may call any of them.
#[derive(Debug)]
pub struct Shared {
    gains: [AtomicU32; MAX_SOURCES],
    stem_peaks: [AtomicU32; MAX_SOURCES],
    input_peak: AtomicU32,
    output_peak: AtomicU32,
    /// Output callbacks that found fewer input frames in the ring than they needed.
    pub ring_underruns: AtomicU64,
    /// Input callbacks that found the ring full and dropped their block.
    pub ring_overruns: AtomicU64,
    /// Output callbacks that took longer (wall-clock) than the audio they produced lasts. Not
    /// counted as xruns: the host reports those it could not absorb, and a preempted callback
    /// is late without demix being slow.
    pub late_callbacks: AtomicU64,
    /// Over- and underruns the audio backend reported (JACK or ALSA), whoever caused them.
    pub host_xruns: AtomicU64,
    /// Ring underruns explained by input cycles the host skipped (its xruns, not demix's).
    pub host_underruns: AtomicU64,
    /// Input frames the host skipped (gaps between input callback timestamps).
    pub input_lost_frames: AtomicU64,
    /// Frames the recorder could not take because its ring was full.
    pub recorder_dropped: AtomicU64,
    /// Frames written to the output device so far.
    pub output_frames: AtomicU64,
    /// Frames received from the input device so far.
    pub input_frames: AtomicU64,
    /// Frames in the input device's latest block.
    pub input_block: AtomicU64,
    /// Set by the input callback after an overrun: the output side drops the ring's contents
    /// and fills it again, so the delay through the ring returns to its target.
    pub resync: AtomicBool,
    /// Capture time of the latest input block's first frame.
    pub input_stamp: InputStamp,
    /// Measured delay from capture to playback of the samples played last, in frames.
    pub io_latency_frames: AtomicU64,
    /// Frames the output side keeps queued in the ring before it starts reading.
    pub ring_target_frames: AtomicU64,
    load: AtomicU32,
    /// Set when a device vanished or a stream failed; the session then stops.
    pub device_lost: AtomicBool,
}

impl Shared {
    /// Fresh state with every gain at unity.
    pub fn new() -> Self {
        Self {
            gains: std::array::from_fn(|_| AtomicU32::new(1.0f32.to_bits())),
            stem_peaks: std::array::from_fn(|_| AtomicU32::new(0)),
            input_peak: AtomicU32::new(0),
            output_peak: AtomicU32::new(0),
            ring_underruns: AtomicU64::new(0),
            ring_overruns: AtomicU64::new(0),
            late_callbacks: AtomicU64::new(0),
            host_xruns: AtomicU64::new(0),
            host_underruns: AtomicU64::new(0),
            input_lost_frames: AtomicU64::new(0),
            recorder_dropped: AtomicU64::new(0),
            output_frames: AtomicU64::new(0),
            input_frames: AtomicU64::new(0),
            input_block: AtomicU64::new(0),
            resync: AtomicBool::new(false),
            input_stamp: InputStamp::default(),
            io_latency_frames: AtomicU64::new(0),
            ring_target_frames: AtomicU64::new(0),
            load: AtomicU32::new(0),
            device_lost: AtomicBool::new(false),
        }
    }

    /// Sets the linear gain the output moves to (smoothly) for stem `index`.
    pub fn set_gain(&self, index: usize, gain: f32) {
        if let Some(slot) = self.gains.get(index) {
            slot.store(gain.max(0.0).to_bits(), Ordering::Relaxed);
        }
    }

    /// The linear gain target of stem `index`.
    pub fn gain(&self, index: usize) -> f32 {
        self.gains
            .get(index)
            .map_or(0.0, |g| f32::from_bits(g.load(Ordering::Relaxed)))
    }

    /// Raises stem `index`'s peak meter to `peak` (non-negative) if it is higher.
    pub fn raise_stem_peak(&self, index: usize, peak: f32) {
        if let Some(slot) = self.stem_peaks.get(index) {
            raise(slot, peak);
        }
    }

    /// Raises the input peak meter.
    pub fn raise_input_peak(&self, peak: f32) {
        raise(&self.input_peak, peak);
    }

    /// Raises the output peak meter.
    pub fn raise_output_peak(&self, peak: f32) {
        raise(&self.output_peak, peak);
    }

    /// Reads and clears stem `index`'s peak meter.
    pub fn take_stem_peak(&self, index: usize) -> f32 {
        self.stem_peaks.get(index).map_or(0.0, take)
    }

    /// Reads and clears the input peak meter.
    pub fn take_input_peak(&self) -> f32 {
        take(&self.input_peak)
    }

    /// Reads and clears the output peak meter.
    pub fn take_output_peak(&self) -> f32 {
        take(&self.output_peak)
    }

    /// Records an output callback's processing time as a fraction of the audio it produced.
    pub fn raise_load(&self, load: f32) {
        raise(&self.load, load);
    }

    /// Reads and clears the highest callback load since the last call.
    pub fn take_load(&self) -> f32 {
        take(&self.load)
    }

    /// Xruns demix itself caused: ring under- and overruns the host's skipped cycles do not
    /// explain.
    pub fn own_xruns(&self) -> u64 {
        self.ring_underruns.load(Ordering::Relaxed) + self.ring_overruns.load(Ordering::Relaxed)
    }
}

/// When one input frame was captured (nanoseconds on the backend's stream clock), published by
/// the input callback and read by the output callback through a sequence lock that never
/// waits: a read that overlaps a write just reports nothing.
#[derive(Debug, Default)]
pub struct InputStamp {
    sequence: AtomicU64,
    frame: AtomicU64,
    nanos: AtomicU64,
}

impl InputStamp {
    /// Records that input frame `frame` (counted from the stream's start) was captured at
    /// `nanos`. Only one thread may publish. Lock-free.
    pub fn publish(&self, frame: u64, nanos: u64) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        self.sequence.store(sequence + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.frame.store(frame, Ordering::Relaxed);
        self.nanos.store(nanos, Ordering::Relaxed);
        self.sequence.store(sequence + 2, Ordering::Release);
    }

    /// The latest `(frame, nanos)`, or `None` before the first one or during a write.
    /// Lock-free.
    pub fn read(&self) -> Option<(u64, u64)> {
        let before = self.sequence.load(Ordering::Acquire);
        if before == 0 || before % 2 == 1 {
            return None;
        }
        let frame = self.frame.load(Ordering::Relaxed);
        let nanos = self.nanos.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (self.sequence.load(Ordering::Relaxed) == before).then_some((frame, nanos))
    }
}

/// Non-negative finite floats order like their bit patterns, so `fetch_max` on the bits is a
/// lock-free float maximum.
fn raise(slot: &AtomicU32, value: f32) {
    if value.is_finite() && value > 0.0 {
        slot.fetch_max(value.to_bits(), Ordering::Relaxed);
    }
}

fn take(slot: &AtomicU32) -> f32 {
    f32::from_bits(slot.swap(0, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peaks_keep_the_maximum_until_read_and_ignore_nan() {
        let shared = Shared::new();
        shared.raise_stem_peak(1, 0.25);
        shared.raise_stem_peak(1, 0.5);
        shared.raise_stem_peak(1, 0.125);
        shared.raise_stem_peak(1, f32::NAN);
        shared.raise_stem_peak(MAX_SOURCES, 1.0);
        assert_eq!(shared.take_stem_peak(1), 0.5);
        assert_eq!(shared.take_stem_peak(1), 0.0);
        assert_eq!(shared.take_stem_peak(0), 0.0);
    }

    #[test]
    fn input_stamps_are_read_whole_and_only_after_the_first_one() {
        let stamp = InputStamp::default();
        assert_eq!(stamp.read(), None);
        stamp.publish(128, 5_000);
        stamp.publish(256, 7_666);
        assert_eq!(stamp.read(), Some((256, 7_666)));
    }

    #[test]
    fn gains_start_at_unity_and_clamp_negative_values() {
        let shared = Shared::new();
        assert_eq!(shared.gain(3), 1.0);
        shared.set_gain(3, -2.0);
        assert_eq!(shared.gain(3), 0.0);
        shared.set_gain(2, 1.5);
        assert_eq!(shared.gain(2), 1.5);
    }
}
