use super::*;
use crate::engine::DeadlinePolicy;
use crate::reference_models::{band_split, mask_spec, FixedMaskModel};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SOURCES: [&str; 4] = ["vocals", "drums", "bass", "other"];
const RATES: [u32; 4] = [44_100, 48_000, 88_200, 96_000];

fn offline() -> EngineConfig {
    EngineConfig {
        compute_slack_hops: 2,
        deadline: DeadlinePolicy::Wait,
    }
}

fn run(sep: &mut Separator, input: &[Vec<f32>], block: usize) -> Vec<Vec<f32>> {
    let len = input[0].len();
    let mut out = vec![vec![0.0f32; len]; sep.sources() * sep.channels()];
    for start in (0..len).step_by(block) {
        let end = (start + block).min(len);
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[start..end]).collect();
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|c| &mut c[start..end]).collect();
        sep.process(&ins, &mut outs);
    }
    out
}

#[test]
fn impulse_lands_on_the_reported_latency_at_every_host_rate() {
    for rate in RATES {
        for passing in [0, 3] {
            let model = FixedMaskModel::identity(mask_spec(&SOURCES, 2048, 512, 2), passing);
            let mut sep = Separator::new(Box::new(model), offline(), rate, 2).unwrap();
            let latency = sep.latency();
            let len = latency + 8192;
            let mut input = vec![vec![0.0f32; len]; 2];
            input[0][100] = 1.0;
            input[1][100] = 1.0;
            let out = run(&mut sep, &input, 128);
            for ch in 0..2 {
                let lane = &out[passing * 2 + ch];
                let peak = (0..len)
                    .max_by(|&a, &b| lane[a].abs().total_cmp(&lane[b].abs()))
                    .unwrap();
                assert_eq!(peak, 100 + latency, "rate {rate} source {passing}");
                // Down-sampling keeps only the model's band: the impulse's peak shrinks with it.
                let expected = (44_100.0 / rate as f32).min(1.0);
                assert!(
                    lane[peak] > 0.8 * expected,
                    "rate {rate}: peak {}",
                    lane[peak]
                );
            }
        }
    }
}

#[test]
fn stems_sum_to_the_delayed_input_at_every_host_rate() {
    for rate in RATES {
        let len = rate as usize;
        // Content well below every Nyquist frequency involved, so resampling is transparent.
        let tone =
            |f: f32, t: usize| (2.0 * std::f32::consts::PI * f * t as f32 / rate as f32).sin();
        let input: Vec<Vec<f32>> = (0..2)
            .map(|ch| {
                (0..len)
                    .map(|t| 0.3 * tone(220.0 + ch as f32 * 3.0, t) + 0.2 * tone(5_000.0, t))
                    .collect()
            })
            .collect();
        let model = band_split(mask_spec(&SOURCES, 2048, 512, 1));
        let mut sep = Separator::new(Box::new(model), offline(), rate, 2).unwrap();
        let latency = sep.latency();
        let out = run(&mut sep, &input, 441);
        // The residual source ("other") is made at the host rate from the delayed input, so
        // the sum is exact at every rate, from the first sample, whatever the resamplers do.
        let mut max_err = 0.0f32;
        for ch in 0..2 {
            for t in 0..len {
                let sum: f32 = (0..4).map(|s| out[s * 2 + ch][t]).sum();
                let expected = if t >= latency {
                    input[ch][t - latency]
                } else {
                    0.0
                };
                max_err = max_err.max((sum - expected).abs());
            }
        }
        assert!(max_err < 1e-5, "rate {rate}: max error {max_err}");
        // The other stems still carry the separated content: the low tone is in source 0.
        let low: f32 = out[0][latency + 4096..].iter().map(|v| v * v).sum();
        assert!(low > 1.0, "rate {rate}: source 0 energy {low}");
    }
}

#[test]
fn mono_host_gets_mono_stems() {
    let model = FixedMaskModel::identity(mask_spec(&SOURCES, 1024, 256, 0), 0);
    let mut sep = Separator::new(Box::new(model), offline(), 48_000, 1).unwrap();
    assert_eq!((sep.channels(), sep.sources()), (1, 4));
    let latency = sep.latency();
    let mut input = vec![vec![0.0f32; latency + 4096]];
    input[0][10] = 1.0;
    let out = run(&mut sep, &input, 64);
    let peak = (0..out[0].len())
        .max_by(|&a, &b| out[0][a].abs().total_cmp(&out[0][b].abs()))
        .unwrap();
    assert_eq!(peak, 10 + latency);
}

/// A model that computes only while its gate is open. The tests shut the gate for the length of
/// every `process()` call, so a frame the audio thread needs in the same call that analysed it can
/// never be ready, however fast or slow the build, and open it between calls for the worker to
/// catch up.
struct GatedModel {
    model: FixedMaskModel,
    open: Arc<AtomicBool>,
}

impl SeparationModel for GatedModel {
    fn spec(&self) -> &crate::model::ModelSpec {
        self.model.spec()
    }
    fn push_frame(
        &mut self,
        features: &[f32],
        sink: &mut dyn crate::model::ResultSink,
    ) -> Result<(), crate::model::ModelError> {
        while !self.open.load(Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        self.model.push_frame(features, sink)
    }
    fn reset(&mut self) {
        self.model.reset()
    }
}

/// Feeds `blocks` blocks of `block` samples with the gate shut during each call and open for a
/// block's duration after it (as a host's period), and returns the deadline misses.
fn gated_misses(
    sep: &mut Separator,
    open: &AtomicBool,
    rate: u32,
    block: usize,
    blocks: usize,
) -> u64 {
    let input = vec![vec![0.1f32; block]; 2];
    let mut out = vec![vec![0.0f32; block]; 8];
    let period = std::time::Duration::from_secs_f64(block as f64 / rate as f64);
    for _ in 0..blocks {
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[..]).collect();
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|c| &mut c[..]).collect();
        open.store(false, Ordering::Release);
        sep.process(&ins, &mut outs);
        open.store(true, Ordering::Release);
        std::thread::sleep(period);
    }
    sep.stats().deadline_misses()
}

#[test]
fn slack_covers_the_host_block_so_large_blocks_do_not_miss() {
    // Sixteen hops (43 ms) of compute slack: an 8192-sample block (171 ms, 59 frames) needs more,
    // which only the block-aware constructor adds. Without it, the frames that the end of a
    // block needs are analysed in the same call, while the worker is shut out.
    let realtime = EngineConfig {
        compute_slack_hops: 16,
        deadline: DeadlinePolicy::RealTime,
    };
    let gated = || {
        let open = Arc::new(AtomicBool::new(true));
        let model = GatedModel {
            model: band_split(mask_spec(&SOURCES, 512, 128, 0)),
            open: open.clone(),
        };
        (Box::new(model), open)
    };
    let (model, sized_gate) = gated();
    let mut sized = Separator::with_max_block(model, realtime, 48_000, 2, 8192).unwrap();
    let (model, unsized_gate) = gated();
    let mut unsized_ = Separator::new(model, realtime, 48_000, 2).unwrap();
    assert!(sized.latency() > unsized_.latency());
    assert_eq!(gated_misses(&mut sized, &sized_gate, 48_000, 8192, 12), 0);
    assert!(gated_misses(&mut unsized_, &unsized_gate, 48_000, 8192, 12) > 0);
}

#[test]
fn huge_and_non_finite_samples_at_a_resampled_rate_stay_finite() {
    let model = band_split(mask_spec(&SOURCES, 1024, 256, 0));
    let mut sep = Separator::new(Box::new(model), offline(), 48_000, 2).unwrap();
    let mut input = vec![vec![0.0f32; 20_000]; 2];
    for (i, v) in [1e30f32, -1e30, f32::NAN, f32::INFINITY, 1e-42, f32::MAX]
        .iter()
        .cycle()
        .take(600)
        .enumerate()
    {
        input[i % 2][i * 31] = *v;
    }
    let out = run(&mut sep, &input, 500);
    assert!(out.iter().flatten().all(|v| v.is_finite()));
}

#[test]
fn extreme_rate_ratios_keep_the_pass_band_flat() {
    for (host, model_rate) in [(192_000u32, 16_000u32), (8_000, 16_000), (22_050, 44_100)] {
        let mut spec = mask_spec(&SOURCES, 512, 128, 0);
        spec.sample_rate = model_rate;
        let mut sep = Separator::new(
            Box::new(FixedMaskModel::identity(spec, 0)),
            offline(),
            host,
            2,
        )
        .unwrap();
        let latency = sep.latency();
        let len = host as usize;
        let tone: Vec<f32> = (0..len)
            .map(|t| 0.5 * (2.0 * std::f32::consts::PI * 1_000.0 * t as f32 / host as f32).sin())
            .collect();
        let out = run(&mut sep, &[tone.clone(), tone.clone()], 1000);
        let err = (latency + host as usize / 10..len)
            .map(|t| (out[0][t] - tone[t - latency]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            err < 5e-3,
            "{host} Hz host, {model_rate} Hz model: error {err}"
        );
    }
}

#[test]
fn quiet_input_never_yields_subnormal_stems() {
    // Noise just above the smallest normal float: windowing, masking and resampling take part of it
    // into the subnormal range, which the separator must flush to zero.
    let mut rng_state = 1u32;
    let mut noise = || {
        rng_state = rng_state
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        (rng_state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    for rate in [44_100, 48_000] {
        let model = band_split(mask_spec(&SOURCES, 2048, 512, 2));
        let mut sep = Separator::new(Box::new(model), offline(), rate, 2).unwrap();
        let len = sep.latency() + 8192;
        let input: Vec<Vec<f32>> = (0..2)
            .map(|_| (0..len).map(|_| noise() * 1e-34).collect())
            .collect();
        let out = run(&mut sep, &input, 128);
        for (lane, samples) in out.iter().enumerate() {
            let subnormal = samples.iter().filter(|x| x.is_subnormal()).count();
            assert_eq!(subnormal, 0, "rate {rate} lane {lane}");
            assert!(
                samples.iter().any(|&x| x != 0.0),
                "rate {rate} lane {lane} is silent"
            );
        }
    }
}
