//! The plugin's DSP core, independent of any plugin API: the separator, the dry path delayed by
//! the reported latency, stem gains, dry/wet, trim and bypass, plus the lock-free hand-over of
//! freshly built separators. [`DemixProcessor::process`] is what the host's audio callback runs.

use demix_dsp::separator::MAX_SOURCES;
use demix_dsp::{Separator, StatsHandle};

use crate::loader::BuildKey;

/// Number of source slots the plugin exposes (parameters and auxiliary outputs):
/// vocals, drums, bass, other.
pub const SLOTS: usize = 4;
/// Slot names, lower case, in parameter and auxiliary-output order.
pub const SLOT_NAMES: [&str; SLOTS] = ["vocals", "drums", "bass", "other"];
/// Most host channels on the main bus.
pub const MAX_CHANNELS: usize = 2;
/// Longest latency the dry path can follow, in seconds at the host rate.
pub const MAX_LATENCY_SECONDS: usize = 5;
/// Duration of every gain ramp (parameter changes, mode switches, bypass), in seconds.
pub const RAMP_SECONDS: f32 = 0.010;

const MAX_LANES: usize = MAX_SOURCES * MAX_CHANNELS;

/// What the host gave the plugin at activation: everything the audio buffers are sized for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostConfig {
    /// Host sample rate in Hz.
    pub sample_rate: u32,
    /// Main-bus channels (1 or 2).
    pub channels: usize,
    /// Largest block the host announced; larger blocks are processed in pieces of this size.
    pub max_block: usize,
    /// Real-time processing (deadline misses fall back) rather than an offline render (the
    /// engine waits for every frame's result).
    pub realtime: bool,
}

impl HostConfig {
    /// Longest latency, in samples, the dry path can be delayed by.
    pub fn max_latency(&self) -> usize {
        self.sample_rate as usize * MAX_LATENCY_SECONDS
    }
}

/// A separator ready for the audio thread, with every buffer it needs, or the bypass that
/// replaces it when a model failed to load. Built off the audio thread; moved into the processor
/// through a lock-free ring and sent back the same way to be dropped off the audio thread.
pub struct Prepared {
    separator: Option<Separator>,
    latency: Option<usize>,
    generation: u64,
    /// `[source][channel][max_block]` stem scratch.
    stems: Vec<f32>,
    /// The slot (parameter set and auxiliary output) of each source.
    slot_of_source: Vec<usize>,
    /// The model and preset this was built from, when known.
    key: Option<BuildKey>,
}

impl Prepared {
    /// Wraps `separator` for the host in `host`; `generation` ties it to one activation.
    /// Allocates. Fails when the separator's latency exceeds what the dry path can follow or its
    /// channel count does not match the host.
    pub fn new(separator: Separator, host: &HostConfig, generation: u64) -> Result<Self, String> {
        if separator.latency() > host.max_latency() {
            return Err(format!(
                "latency of {} samples exceeds the {} s the plugin supports",
                separator.latency(),
                MAX_LATENCY_SECONDS
            ));
        }
        if separator.channels() != host.channels {
            return Err(format!(
                "separator built for {} channels, host has {}",
                separator.channels(),
                host.channels
            ));
        }
        let slot_of_source = slots_for(separator.source_names());
        Ok(Self {
            stems: vec![0.0; separator.sources() * host.channels * host.max_block.max(1)],
            latency: Some(separator.latency()),
            separator: Some(separator),
            generation,
            slot_of_source,
            key: None,
        })
    }

    /// The stand-in for a model that could not be loaded: the plugin passes the dry signal,
    /// delayed by the latency it already reports, so the host's compensation stays right.
    pub fn bypass(generation: u64) -> Self {
        Self {
            separator: None,
            latency: None,
            generation,
            stems: Vec::new(),
            slot_of_source: Vec::new(),
            key: None,
        }
    }

    /// Records the model and preset this was built from, so a re-activation can tell whether
    /// it is still what the parameters ask for.
    pub fn built_from(mut self, key: BuildKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The separator, if a model is loaded.
    pub fn separator(&self) -> Option<&Separator> {
        self.separator.as_ref()
    }

    /// The separator's counters, if a model is loaded.
    pub fn stats(&self) -> Option<StatsHandle> {
        self.separator.as_ref().map(Separator::stats)
    }
}

/// Maps model sources to slots by name; a first source with an unknown name counts as the lead
/// ("vocals") slot when no source is called that, every other unknown one as "other".
fn slots_for(names: &[String]) -> Vec<usize> {
    let named: Vec<Option<usize>> = names
        .iter()
        .map(|n| SLOT_NAMES.iter().position(|s| s.eq_ignore_ascii_case(n)))
        .collect();
    let has_vocals = named.contains(&Some(0));
    named
        .iter()
        .enumerate()
        .map(|(s, slot)| match slot {
            Some(slot) => *slot,
            None if s == 0 && !has_vocals => 0,
            None => SLOTS - 1,
        })
        .collect()
}

/// The mode preset: which stems reach the main output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only the vocals stem, at unity gain.
    IsolateVocals,
    /// Everything but the vocals stem, at unity gain.
    RemoveVocals,
    /// Per-source gain, mute and solo decide.
    Custom,
}

/// One slot's mixer strip, used in [`Mode::Custom`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotSettings {
    /// Linear gain (0 = −inf dB).
    pub gain: f32,
    /// Silences the slot.
    pub mute: bool,
    /// When any slot is soloed, only soloed (and unmuted) slots are heard.
    pub solo: bool,
}

/// Everything the mix depends on, read from the parameters once per host block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixSettings {
    /// Mode preset.
    pub mode: Mode,
    /// Per-slot strips (custom mode).
    pub slots: [SlotSettings; SLOTS],
    /// 0 = dry only (delayed), 1 = separated mix only.
    pub dry_wet: f32,
    /// Linear output gain of the main bus.
    pub trim: f32,
    /// Host bypass: the dry signal, delayed by the reported latency.
    pub bypass: bool,
}

impl Default for MixSettings {
    fn default() -> Self {
        Self {
            mode: Mode::IsolateVocals,
            slots: [SlotSettings {
                gain: 1.0,
                mute: false,
                solo: false,
            }; SLOTS],
            dry_wet: 1.0,
            trim: 1.0,
            bypass: false,
        }
    }
}

impl MixSettings {
    /// The gain each slot gets under these settings.
    pub fn slot_gains(&self) -> [f32; SLOTS] {
        let any_solo = self.slots.iter().any(|s| s.solo);
        std::array::from_fn(|k| match self.mode {
            Mode::IsolateVocals => f32::from(k == 0),
            Mode::RemoveVocals => f32::from(k != 0),
            Mode::Custom => {
                let s = &self.slots[k];
                let audible = !s.mute && (!any_solo || s.solo);
                if audible && s.gain.is_finite() {
                    s.gain.max(0.0)
                } else {
                    0.0
                }
            }
        })
    }
}

/// A linear ramp towards a target over a fixed number of samples, for click-free changes.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    current: f32,
    target: f32,
    step: f32,
    remaining: u32,
    length: u32,
}

impl Ramp {
    fn new(value: f32, length: u32) -> Self {
        Self {
            current: value,
            target: value,
            step: 0.0,
            remaining: 0,
            length: length.max(1),
        }
    }

    fn set_target(&mut self, target: f32) {
        if target != self.target {
            self.target = target;
            self.remaining = self.length;
            self.step = (target - self.current) / self.length as f32;
        }
    }

    fn snap(&mut self, value: f32) {
        self.current = value;
        self.target = value;
        self.remaining = 0;
    }

    #[inline]
    fn next(&mut self) -> f32 {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.current = if self.remaining == 0 {
                self.target
            } else {
                self.current + self.step
            };
        }
        self.current
    }

    /// Writes the next `out.len()` values; a settled ramp writes a constant.
    fn fill(&mut self, out: &mut [f32]) {
        if self.remaining == 0 {
            out.fill(self.current);
            return;
        }
        for v in out.iter_mut() {
            *v = self.next();
        }
    }
}

/// Delays the dry signal by a latency that may change at a separator swap, up to a fixed
/// capacity: the history is kept, so the dry path never drops out.
struct DryDelay {
    /// `[channel][capacity]`.
    buffer: Vec<f32>,
    capacity: usize,
    write: usize,
    delay: usize,
}

impl DryDelay {
    fn new(channels: usize, max_delay: usize) -> Self {
        let capacity = max_delay + 1;
        Self {
            buffer: vec![0.0; channels * capacity],
            capacity,
            write: 0,
            delay: 0,
        }
    }

    /// Writes `len` samples per channel from `input` (`[channel][stride]`) and reads the delayed
    /// ones into `output` (same layout).
    fn process(&mut self, input: &[f32], output: &mut [f32], stride: usize, len: usize) {
        let channels = self.buffer.len() / self.capacity;
        let start = self.write;
        for ch in 0..channels {
            let line = &mut self.buffer[ch * self.capacity..(ch + 1) * self.capacity];
            let mut write = start;
            for i in 0..len {
                line[write] = input[ch * stride + i];
                let read = (write + self.capacity - self.delay) % self.capacity;
                output[ch * stride + i] = line[read];
                write += 1;
                if write == self.capacity {
                    write = 0;
                }
            }
        }
        self.write = (start + len) % self.capacity;
    }

    fn reset(&mut self) {
        self.buffer.fill(0.0);
    }
}

/// The audio-thread ends of the hand-over rings: separators arrive on one, replaced ones leave
/// on the other to be dropped off the audio thread.
pub struct AudioLink {
    incoming: rtrb::Consumer<Box<Prepared>>,
    retired: rtrb::Producer<Box<Prepared>>,
}

/// The builder-side ends of the hand-over rings (see [`AudioLink`]).
pub struct BuilderLink {
    outgoing: rtrb::Producer<Box<Prepared>>,
    retired: rtrb::Consumer<Box<Prepared>>,
}

impl BuilderLink {
    /// Offers a separator to the audio thread; gives it back when the ring is full.
    pub fn send(&mut self, prepared: Box<Prepared>) -> Result<(), Box<Prepared>> {
        self.outgoing.push(prepared).map_err(|e| match e {
            rtrb::PushError::Full(p) => p,
        })
    }

    /// Takes back the separators the audio thread replaced, so the caller drops them.
    pub fn collect_retired(&mut self) -> Vec<Box<Prepared>> {
        let mut retired = Vec::new();
        while let Ok(p) = self.retired.pop() {
            retired.push(p);
        }
        retired
    }
}

/// Creates the pair of hand-over rings between a builder and one processor.
pub fn hand_over_rings() -> (AudioLink, BuilderLink) {
    const IN_FLIGHT: usize = 4;
    let (outgoing, incoming) = rtrb::RingBuffer::new(IN_FLIGHT);
    // Room for everything that can arrive plus the one in use, so retiring never fails.
    let (retired, retired_out) = rtrb::RingBuffer::new(IN_FLIGHT + 2);
    (
        AudioLink { incoming, retired },
        BuilderLink {
            outgoing,
            retired: retired_out,
        },
    )
}

/// The DSP core of one plugin instance. Created (allocating) at activation; afterwards
/// [`DemixProcessor::process`] and [`DemixProcessor::reset`] never allocate, lock, wait, log or
/// make system calls (under a real-time [`HostConfig`]).
pub struct DemixProcessor {
    host: HostConfig,
    current: Box<Prepared>,
    link: AudioLink,
    latency: usize,
    /// `[channel][max_block]` sanitised input and delayed dry signal.
    input: Vec<f32>,
    dry: Vec<f32>,
    delay: DryDelay,
    gains: [Ramp; SLOTS],
    wet: Ramp,
    trim: Ramp,
    /// 1 while the stems are valid, 0 in bypass and while a new separator warms up.
    engine_on: Ramp,
    warmup: usize,
    /// Per-sample curves of the current chunk: `[slot][max_block]` gains, then the engine-on
    /// factor, the wet factor (already times engine-on), the trim, and the stem mix.
    gain_curves: Vec<f32>,
    on_curve: Vec<f32>,
    wet_curve: Vec<f32>,
    trim_curve: Vec<f32>,
    mix: Vec<f32>,
}

impl DemixProcessor {
    /// Builds the processor around `prepared` for `host`, starting from `settings` without a
    /// ramp. A bypass `prepared` starts with latency `fallback_latency`. Allocates: call at
    /// activation, not on the audio thread.
    pub fn new(
        host: HostConfig,
        prepared: Box<Prepared>,
        link: AudioLink,
        settings: &MixSettings,
        fallback_latency: usize,
    ) -> Self {
        let channels = host.channels.clamp(1, MAX_CHANNELS);
        let host = HostConfig {
            channels,
            max_block: host.max_block.max(1),
            ..host
        };
        let ramp = (host.sample_rate as f32 * RAMP_SECONDS).round() as u32;
        let latency = prepared
            .latency
            .unwrap_or(fallback_latency)
            .min(host.max_latency());
        let mut delay = DryDelay::new(channels, host.max_latency());
        delay.delay = latency;
        let gains = settings.slot_gains();
        let engine_on = f32::from(prepared.separator.is_some() && !settings.bypass);
        Self {
            current: prepared,
            link,
            latency,
            input: vec![0.0; channels * host.max_block],
            dry: vec![0.0; channels * host.max_block],
            delay,
            gains: gains.map(|g| Ramp::new(g, ramp)),
            wet: Ramp::new(settings.dry_wet.clamp(0.0, 1.0), ramp),
            trim: Ramp::new(settings.trim.max(0.0), ramp),
            engine_on: Ramp::new(engine_on, ramp),
            warmup: 0,
            gain_curves: vec![0.0; SLOTS * host.max_block],
            on_curve: vec![0.0; host.max_block],
            wet_curve: vec![0.0; host.max_block],
            trim_curve: vec![0.0; host.max_block],
            mix: vec![0.0; host.max_block],
            host,
        }
    }

    /// The host configuration the buffers are sized for.
    pub fn host(&self) -> &HostConfig {
        &self.host
    }

    /// The exact latency of every output, in host samples. Changes only at a separator swap.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// The separator in use (`None` in bypass after a failed load).
    pub fn separator(&self) -> Option<&Separator> {
        self.current.separator()
    }

    /// The model and preset of the separator (or bypass) in use, when known.
    pub fn built_from(&self) -> Option<&BuildKey> {
        self.current.key.as_ref()
    }

    /// The activation generation whose separators this processor accepts.
    pub fn generation(&self) -> u64 {
        self.current.generation
    }

    /// Forgets all audio history; the latency stays. Real-time safe.
    pub fn reset(&mut self) {
        if let Some(separator) = self.current.separator.as_mut() {
            separator.reset();
        }
        self.delay.reset();
        self.warmup = 0;
        for g in self.gains.iter_mut() {
            g.snap(g.target);
        }
        self.wet.snap(self.wet.target);
        self.trim.snap(self.trim.target);
        self.engine_on.snap(self.engine_on.target);
    }

    /// Processes one host block in place. `main` holds the main bus (input on entry, output on
    /// return; `host().channels` slices), `aux` the auxiliary outputs, one per slot (any channel
    /// count; mono stems are copied to every channel). Blocks longer than `max_block` are split.
    /// Takes a separator handed over since the last call. Buffers of the wrong channel count or
    /// unequal lengths are answered with silence. Real-time safe: no allocation, lock, wait or
    /// system call.
    pub fn process(
        &mut self,
        main: &mut [&mut [f32]],
        aux: &mut [&mut [&mut [f32]]],
        settings: &MixSettings,
    ) {
        self.accept_handed_over();
        let len = main.first().map_or(0, |c| c.len());
        let lengths_match = main.iter().all(|c| c.len() == len)
            && aux.iter().all(|bus| bus.iter().all(|c| c.len() == len));
        if main.len() != self.host.channels || !lengths_match {
            for channel in main.iter_mut() {
                channel.fill(0.0);
            }
            for bus in aux.iter_mut() {
                for channel in bus.iter_mut() {
                    channel.fill(0.0);
                }
            }
            return;
        }
        let gains = settings.slot_gains();
        for (ramp, gain) in self.gains.iter_mut().zip(gains) {
            ramp.set_target(gain);
        }
        self.wet.set_target(settings.dry_wet.clamp(0.0, 1.0));
        self.trim.set_target(if settings.trim.is_finite() {
            settings.trim.max(0.0)
        } else {
            0.0
        });
        let mut offset = 0;
        while offset < len {
            let chunk = (len - offset).min(self.host.max_block);
            self.process_chunk(main, aux, offset, chunk, settings.bypass);
            offset += chunk;
        }
    }

    /// Installs the separators handed over since the last call (the last one wins) and sends
    /// the replaced ones back. [`DemixProcessor::process`] does this first; call it directly
    /// before inspecting the processor outside processing. Real-time safe.
    pub fn accept_handed_over(&mut self) {
        // Every arrival retires exactly one box, and the retired ring has room for all of them.
        while self.link.retired.slots() > 0 {
            let Ok(mut arrived) = self.link.incoming.pop() else {
                return;
            };
            if arrived.generation == self.current.generation {
                std::mem::swap(&mut self.current, &mut arrived);
                if let Some(latency) = self.current.latency {
                    self.latency = latency.min(self.host.max_latency());
                    self.delay.delay = self.latency;
                }
                // The new separator starts from silence: the dry path covers until its output
                // is valid.
                self.engine_on.snap(0.0);
                self.warmup = self.latency;
            }
            let _ = self.link.retired.push(arrived);
        }
    }

    fn process_chunk(
        &mut self,
        main: &mut [&mut [f32]],
        aux: &mut [&mut [&mut [f32]]],
        offset: usize,
        len: usize,
        bypass: bool,
    ) {
        let channels = self.host.channels;
        let stride = self.host.max_block;
        for (ch, samples) in main.iter().enumerate() {
            let dst = &mut self.input[ch * stride..ch * stride + len];
            for (d, &x) in dst.iter_mut().zip(&samples[offset..offset + len]) {
                *d = sanitize(x);
            }
        }
        self.delay.process(&self.input, &mut self.dry, stride, len);

        let prepared = &mut *self.current;
        let lanes = prepared.stems.len() / stride;
        if let Some(separator) = prepared.separator.as_mut() {
            let mut inputs: [&[f32]; MAX_CHANNELS] = [&[]; MAX_CHANNELS];
            for (ch, slot) in inputs.iter_mut().enumerate().take(channels) {
                *slot = &self.input[ch * stride..ch * stride + len];
            }
            let mut outputs: [&mut [f32]; MAX_LANES] = Default::default();
            for (slot, lane) in outputs.iter_mut().zip(prepared.stems.chunks_mut(stride)) {
                *slot = &mut lane[..len];
            }
            separator.process(&inputs[..channels], &mut outputs[..lanes]);
        }

        // Parameter curves first, then whole-chunk loops over the stems (they vectorise).
        let running = prepared.separator.is_some();
        let on = &mut self.on_curve[..len];
        for v in on.iter_mut() {
            let on_target = if running && !bypass && self.warmup == 0 {
                1.0
            } else {
                0.0
            };
            self.warmup = self.warmup.saturating_sub(1);
            self.engine_on.set_target(on_target);
            *v = self.engine_on.next();
        }
        for (ramp, curve) in self
            .gains
            .iter_mut()
            .zip(self.gain_curves.chunks_mut(stride))
        {
            ramp.fill(&mut curve[..len]);
        }
        let wet = &mut self.wet_curve[..len];
        self.wet.fill(wet);
        for (w, &o) in wet.iter_mut().zip(on.iter()) {
            *w *= o;
        }
        let trim = &mut self.trim_curve[..len];
        self.trim.fill(trim);
        let stem = |s: usize, ch: usize| &prepared.stems[(s * channels + ch) * stride..][..len];
        let gain = |slot: usize| &self.gain_curves[slot * stride..][..len];
        let mix = &mut self.mix[..len];
        for (ch, out) in main.iter_mut().enumerate() {
            mix.fill(0.0);
            for (s, &slot) in prepared.slot_of_source.iter().enumerate() {
                for ((m, &x), &g) in mix.iter_mut().zip(stem(s, ch)).zip(gain(slot)) {
                    *m += g * x;
                }
            }
            let dry = &self.dry[ch * stride..][..len];
            for ((((o, &m), &d), &w), &t) in out[offset..offset + len]
                .iter_mut()
                .zip(mix.iter())
                .zip(dry)
                .zip(wet.iter())
                .zip(trim.iter())
            {
                *o = flush(t * (d + w * (m - d)));
            }
        }
        for (k, bus) in aux.iter_mut().enumerate().take(SLOTS) {
            for (out_ch, out) in bus.iter_mut().enumerate() {
                let ch = out_ch.min(channels - 1);
                let out = &mut out[offset..offset + len];
                out.fill(0.0);
                for (s, _) in prepared
                    .slot_of_source
                    .iter()
                    .enumerate()
                    .filter(|(_, &slot)| slot == k)
                {
                    for (o, &x) in out.iter_mut().zip(stem(s, ch)) {
                        *o += x;
                    }
                }
                for ((o, &g), &e) in out.iter_mut().zip(gain(k)).zip(on.iter()) {
                    *o = flush(*o * (g * e));
                }
            }
        }
        for bus in aux.iter_mut().skip(SLOTS) {
            for out in bus.iter_mut() {
                out[offset..offset + len].fill(0.0);
            }
        }
    }
}

/// A host sample made safe: NaN, ±Inf and subnormals become 0, huge values are clamped.
#[inline]
fn sanitize(x: f32) -> f32 {
    if x.is_normal() {
        x.clamp(
            -demix_dsp::engine::INPUT_LIMIT,
            demix_dsp::engine::INPUT_LIMIT,
        )
    } else {
        0.0
    }
}

/// Flushes subnormal output to zero.
#[inline]
fn flush(x: f32) -> f32 {
    if x.is_normal() {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
#[path = "processor_tests.rs"]
mod tests;
