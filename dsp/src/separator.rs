//! The engine at the host's sample rate and channel count: resamples to the model's rate and
//! back around [`Engine`], keeping the total latency exact and constant. The plugin, live mode
//! and the offline bounce all run through it.

use rubato::{FftFixedInOut, Resampler};

use crate::delay::DelayLine;
use crate::engine::{
    block_len, sanitize, write_residual, Engine, EngineConfig, EngineError, StatsHandle,
};
use crate::model::{ModelSpec, SeparationModel};

/// Most sources a separator handles (its audio-thread buffers are fixed arrays).
pub const MAX_SOURCES: usize = 8;
const MAX_LANES: usize = MAX_SOURCES * 2;
/// Samples per resampling chunk, at least, on either side: larger chunks cost latency, smaller
/// ones CPU and filter quality.
const MIN_CHUNK: usize = 256;

/// Separates audio at any host rate. Build it off the audio thread; [`Separator::process`] and
/// [`Separator::reset`] are real-time safe under [`crate::DeadlinePolicy::RealTime`].
pub struct Separator {
    engine: Engine,
    host_rate: u32,
    latency: usize,
    conversion: Option<RateConversion>,
}

/// Fixed-size chunks through FFT resamplers: `chunk` host samples become `model_chunk` model
/// samples, are separated, and come back as `chunk` host samples per stem.
///
/// The work is pipelined over chunk periods so that every host block does an even share of it
/// and none pays for a whole chunk: while chunk `c` arrives, chunk `c − 1` (resampled when it
/// completed) is fed to the engine in step with the arriving samples, and the stems of chunk
/// `c − 2` are resampled back one lane at a time; they play while chunk `c + 1` arrives. This
/// costs two chunks of latency over resampling everything when a chunk completes.
struct RateConversion {
    chunk: usize,
    model_chunk: usize,
    to_model: FftFixedInOut<f32>,
    /// One resampler for every stem lane (one filter, one set of FFT plans, so a small cache
    /// footprint); each call resamples the lanes its channel mask selects, so lanes can be
    /// resampled in different blocks.
    to_host: FftFixedInOut<f32>,
    /// The mask selecting one lane of `to_host`.
    lane_mask: [bool; MAX_LANES],
    /// The chunk arriving now, filled up to `fill`.
    host_in: Vec<Vec<f32>>,
    fill: usize,
    /// The previous chunk at the model rate, fed to the engine up to `fed` (when `feeding`).
    model_in: Vec<Vec<f32>>,
    fed: usize,
    feeding: bool,
    /// The engine's stems for `model_in`.
    model_out: Vec<Vec<f32>>,
    /// The engine's stems for the chunk before, resampled lane by lane into `next_host_out`.
    model_done: Vec<Vec<f32>>,
    lanes_resampled: usize,
    /// Model-rate padding that makes the model-domain delay a whole number of host samples.
    pads: Vec<DelayLine>,
    next_host_out: Vec<Vec<f32>>,
    /// The stems playing now, read from `read_pos`.
    host_out: Vec<Vec<f32>>,
    read_pos: usize,
    /// For the engine's residual source, made at the host rate instead of resampled: the host
    /// input delayed by the latency (one line per channel), minus the other stems.
    input_delays: Vec<DelayLine>,
}

impl Separator {
    /// Builds the engine for `model` at `host_rate` Hz with `host_channels` (1 or 2) channels,
    /// for hosts whose blocks are no longer than the resampling chunk (see
    /// [`Separator::with_max_block`]). Allocates and starts the inference worker: never call it
    /// on the audio thread.
    pub fn new(
        model: Box<dyn SeparationModel>,
        config: EngineConfig,
        host_rate: u32,
        host_channels: usize,
    ) -> Result<Self, EngineError> {
        Self::with_max_block(model, config, host_rate, host_channels, 0)
    }

    /// Like [`Separator::new`] for a host that may call [`Separator::process`] with up to
    /// `max_block` samples at once. Every frame of one call is analysed in the same instant, so
    /// the worker's time only starts counting once the call returns: the engine's compute slack
    /// is raised by the hops one block plus one resampling chunk span, so that
    /// `config.compute_slack_hops` remains real time for the model. That keeps real-time
    /// operation free of deadline misses whatever the block size, at the cost of latency.
    pub fn with_max_block(
        model: Box<dyn SeparationModel>,
        config: EngineConfig,
        host_rate: u32,
        host_channels: usize,
        max_block: usize,
    ) -> Result<Self, EngineError> {
        let sources = model.spec().sources.len();
        if sources > MAX_SOURCES {
            return Err(EngineError::InvalidSpec(format!(
                "{sources} sources; at most {MAX_SOURCES} are supported"
            )));
        }
        if host_rate == 0 {
            return Err(EngineError::InvalidSpec("host sample rate 0".into()));
        }
        let (model_rate, hop) = (model.spec().sample_rate, model.spec().hop.max(1));
        let block_in_model = (max_block as u64 * model_rate as u64).div_ceil(host_rate as u64);
        let chunk_in_model = if model_rate == host_rate {
            0
        } else {
            chunk_sizes(host_rate as usize, model_rate as usize).1 as u64
        };
        // Frames wait for their resampling chunk to fill, then for the call that completes it.
        let span = (block_in_model + chunk_in_model) as usize;
        let config = EngineConfig {
            compute_slack_hops: config.compute_slack_hops + span.div_ceil(hop),
            ..config
        };
        let mut engine = Engine::with_channels(model, config, host_channels)?;
        let model_rate = engine.spec().sample_rate;
        if model_rate == host_rate {
            let latency = engine.latency();
            return Ok(Self {
                engine,
                host_rate,
                latency,
                conversion: None,
            });
        }
        let (host, model) = (host_rate as usize, model_rate as usize);
        let gcd = gcd(host, model);
        let (host_unit, model_unit) = (host / gcd, model / gcd);
        let (chunk, model_chunk) = chunk_sizes(host, model);
        let lanes = sources * host_channels;
        let resampler_error = |e: rubato::ResamplerConstructionError| {
            EngineError::InvalidSpec(format!("cannot resample {host} Hz <-> {model} Hz: {e}"))
        };
        let to_model =
            FftFixedInOut::new(host, model, chunk, host_channels).map_err(resampler_error)?;
        let to_host =
            FftFixedInOut::new(model, host, model_chunk, lanes).map_err(resampler_error)?;
        debug_assert_eq!(to_model.input_frames_next(), chunk);
        debug_assert_eq!(to_host.input_frames_next(), model_chunk);
        // Model-domain delay: the input resampler's, the engine's, and padding up to a multiple
        // of `model_unit`, which maps to a whole number of host samples.
        let model_delay = to_model.output_delay() + engine.latency();
        let pad = (model_unit - model_delay % model_unit) % model_unit;
        let model_delay_in_host = (model_delay + pad) / model_unit * host_unit;
        // A chunk fills (chunk − 1 samples of wait for its first sample), is separated during the
        // next chunk period, resampled back during the one after, and plays during the third.
        let latency = (chunk - 1) + 2 * chunk + model_delay_in_host + to_host.output_delay();
        // The residual source is made at the host rate (`write_residual`), not resampled.
        engine.leave_residual_to_caller();
        let mut conversion = RateConversion {
            chunk,
            model_chunk,
            host_in: vec![vec![0.0; chunk]; host_channels],
            fill: 0,
            model_in: vec![vec![0.0; model_chunk]; host_channels],
            fed: 0,
            feeding: false,
            model_out: vec![vec![0.0; model_chunk]; lanes],
            model_done: vec![vec![0.0; model_chunk]; lanes],
            lanes_resampled: 0,
            pads: (0..lanes).map(|_| DelayLine::new(pad)).collect(),
            next_host_out: vec![vec![0.0; chunk]; lanes],
            host_out: vec![vec![0.0; chunk]; lanes],
            read_pos: 0,
            input_delays: (0..host_channels)
                .map(|_| DelayLine::new(latency))
                .collect(),
            to_model,
            to_host,
            lane_mask: [false; MAX_LANES],
        };
        conversion.reset();
        Ok(Self {
            engine,
            host_rate,
            latency,
            conversion: Some(conversion),
        })
    }

    /// Exact delay in host samples between an input sample and the same sample in every stem.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// The host sample rate this separator was built for.
    pub fn host_rate(&self) -> u32 {
        self.host_rate
    }

    /// Audio channels in, and per stem out.
    pub fn channels(&self) -> usize {
        self.engine.channels()
    }

    /// Number of stems.
    pub fn sources(&self) -> usize {
        self.engine.sources()
    }

    /// Stem names, in output order.
    pub fn source_names(&self) -> &[String] {
        &self.engine.spec().sources
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        self.engine.spec()
    }

    /// Counters (deadline misses, model time) for other threads.
    pub fn stats(&self) -> StatsHandle {
        self.engine.stats()
    }

    /// Restarts from silence with the same latency. Real-time safe.
    pub fn reset(&mut self) {
        self.engine.reset();
        if let Some(conv) = self.conversion.as_mut() {
            conv.reset();
        }
    }

    /// Separates one block at the host rate: `input` has `channels()` slices, `output`
    /// `sources() · channels()` slices (source-major), all of one length, any length.
    /// Subnormal numbers are flushed to zero while it runs (whatever the caller's floating-point
    /// mode), so quiet passages cost no more than loud ones. Real-time safe under
    /// [`crate::DeadlinePolicy::RealTime`].
    pub fn process(&mut self, input: &[&[f32]], output: &mut [&mut [f32]]) {
        // SAFETY: the guard sets the thread's flush-to-zero / denormals-are-zero flags and
        // restores them before returning; nothing in here depends on subnormal arithmetic.
        unsafe { no_denormals::no_denormals(|| self.process_flushing_denormals(input, output)) }
    }

    fn process_flushing_denormals(&mut self, input: &[&[f32]], output: &mut [&mut [f32]]) {
        let Some(conv) = self.conversion.as_mut() else {
            self.engine.process(input, output);
            return;
        };
        let Some(len) = block_len(input, output, conv.host_in.len(), conv.host_out.len()) else {
            return;
        };
        let mut pos = 0;
        while pos < len {
            let take = (len - pos).min(conv.chunk - conv.fill);
            for (fifo, samples) in conv.host_in.iter_mut().zip(input) {
                fifo[conv.fill..conv.fill + take].copy_from_slice(&samples[pos..pos + take]);
            }
            conv.fill += take;
            let completes = conv.fill == conv.chunk;
            let before = if completes { take - 1 } else { take };
            conv.emit(output, pos, before);
            if completes {
                conv.finish_chunk(&mut self.engine);
                conv.emit(output, pos + before, 1);
            } else {
                conv.work_ahead(&mut self.engine);
            }
            pos += take;
        }
        if let Some(residual) = self.engine.residual_source() {
            write_residual(residual, &mut conv.input_delays, input, output);
        }
    }
}

impl RateConversion {
    fn emit(&mut self, output: &mut [&mut [f32]], at: usize, count: usize) {
        if count == 0 {
            return;
        }
        for (out, ready) in output.iter_mut().zip(&self.host_out) {
            out[at..at + count].copy_from_slice(&ready[self.read_pos..self.read_pos + count]);
        }
        self.read_pos += count;
    }

    /// Does the share of the pipelined work that the current chunk's progress calls for.
    fn work_ahead(&mut self, engine: &mut Engine) {
        self.feed_engine(engine, self.model_chunk * self.fill / self.chunk);
        let lanes = self.model_done.len();
        // All lanes are done by three quarters of the period, leaving the block that completes
        // the chunk little besides its own resampling.
        let until = (lanes * self.fill * 4 / (self.chunk * 3)).min(lanes);
        self.resample_lanes(until, engine.residual_source());
    }

    /// The current chunk is complete: finishes the pipelined work, puts the resampled stems on
    /// to play, and moves every stage on by one chunk.
    fn finish_chunk(&mut self, engine: &mut Engine) {
        self.feed_engine(engine, self.model_chunk);
        self.resample_lanes(self.model_done.len(), engine.residual_source());
        std::mem::swap(&mut self.host_out, &mut self.next_host_out);
        self.read_pos = 0;
        std::mem::swap(&mut self.model_done, &mut self.model_out);
        self.lanes_resampled = if self.feeding {
            0
        } else {
            self.model_done.len()
        };
        self.fill = 0;
        for fifo in self.host_in.iter_mut() {
            for x in fifo.iter_mut() {
                *x = sanitize(*x);
            }
        }
        // Buffer sizes are fixed at construction to the resamplers' chunk sizes.
        let _ = self
            .to_model
            .process_into_buffer(&self.host_in, &mut self.model_in, None);
        self.fed = 0;
        self.feeding = true;
    }

    /// Runs the engine over `model_in[fed..until]`.
    fn feed_engine(&mut self, engine: &mut Engine, until: usize) {
        if until <= self.fed {
            return;
        }
        let range = self.fed..until;
        let mut inputs: [&[f32]; 2] = [&[], &[]];
        for (slot, channel) in inputs.iter_mut().zip(&self.model_in) {
            *slot = &channel[range.clone()];
        }
        let lanes = self.model_out.len();
        let mut outputs: [&mut [f32]; MAX_LANES] = Default::default();
        for (slot, lane) in outputs.iter_mut().zip(self.model_out.iter_mut()) {
            *slot = &mut lane[range.clone()];
        }
        engine.process(&inputs[..self.model_in.len()], &mut outputs[..lanes]);
        self.fed = until;
    }

    /// Pads and resamples stem lanes of `model_done` until `until` of them are done (the
    /// residual source's lanes are made at the host rate instead).
    fn resample_lanes(&mut self, until: usize, residual: Option<usize>) {
        let channels = self.host_in.len();
        while self.lanes_resampled < until {
            let lane = self.lanes_resampled;
            self.lanes_resampled += 1;
            if Some(lane / channels) == residual {
                continue;
            }
            self.pads[lane].process(&mut self.model_done[lane]);
            let lanes = self.model_done.len();
            self.lane_mask[..lanes].fill(false);
            self.lane_mask[lane] = true;
            // Buffer sizes and the mask length are fixed at construction to the resampler's.
            let _ = self.to_host.process_into_buffer(
                &self.model_done,
                &mut self.next_host_out,
                Some(&self.lane_mask[..lanes]),
            );
        }
    }

    /// Back to silence: nothing to feed or resample until the first chunk is complete.
    fn reset(&mut self) {
        self.to_model.reset();
        self.to_host.reset();
        for buffer in self
            .host_in
            .iter_mut()
            .chain(self.model_in.iter_mut())
            .chain(self.model_out.iter_mut())
            .chain(self.model_done.iter_mut())
            .chain(self.next_host_out.iter_mut())
            .chain(self.host_out.iter_mut())
        {
            buffer.fill(0.0);
        }
        for delay in self.pads.iter_mut().chain(self.input_delays.iter_mut()) {
            delay.reset();
        }
        self.fill = 0;
        self.fed = self.model_chunk;
        self.feeding = false;
        self.lanes_resampled = self.model_done.len();
        self.read_pos = 1;
    }
}

/// Host and model samples per resampling chunk: an even number of the rates' smallest common
/// units (which keeps both resamplers' delays whole samples), at least [`MIN_CHUNK`] samples on
/// both sides (which keeps the anti-aliasing filters long enough to be flat in the pass band).
fn chunk_sizes(host: usize, model: usize) -> (usize, usize) {
    let gcd = gcd(host, model);
    let (host_unit, model_unit) = (host / gcd, model / gcd);
    let mut units = MIN_CHUNK
        .div_ceil(host_unit)
        .max(MIN_CHUNK.div_ceil(model_unit))
        .max(2);
    units += units % 2;
    (units * host_unit, units * model_unit)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
#[path = "separator_tests.rs"]
mod tests;
