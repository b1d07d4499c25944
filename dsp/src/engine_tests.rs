use super::*;
use crate::model::{ModelError, ResultSink};
use crate::reference_models::{band_split, mask_spec, FixedMaskModel};
use rand::{Rng, SeedableRng};

const SOURCES: [&str; 4] = ["vocals", "drums", "bass", "other"];

fn noise(len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..2)
        .map(|_| (0..len).map(|_| rng.gen_range(-0.5..0.5)).collect())
        .collect()
}

/// Runs `input` through `engine` in blocks of the given sizes (cycled) and returns the stems,
/// `[source * channels + channel][sample]`.
fn run(engine: &mut Engine, input: &[Vec<f32>], blocks: &[usize]) -> Vec<Vec<f32>> {
    let len = input[0].len();
    let lanes = engine.sources() * engine.channels();
    let mut out = vec![vec![0.0f32; len]; lanes];
    let mut pos = 0;
    let mut i = 0;
    while pos < len {
        let n = blocks[i % blocks.len()].min(len - pos);
        i += 1;
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[pos..pos + n]).collect();
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|c| &mut c[pos..pos + n]).collect();
        engine.process(&ins, &mut outs);
        pos += n;
    }
    out
}

fn offline() -> EngineConfig {
    EngineConfig {
        compute_slack_hops: 2,
        deadline: DeadlinePolicy::Wait,
    }
}

fn random_blocks(seed: u64) -> Vec<usize> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..64).map(|_| rng.gen_range(1..=8192)).collect()
}

#[test]
fn identity_mask_is_a_pure_delay_of_the_reported_latency() {
    let input = noise(44_100 * 2, 1);
    for blocks in [vec![1], vec![64], vec![511], vec![4096], random_blocks(7)] {
        let model = FixedMaskModel::identity(mask_spec(&SOURCES, 2048, 512, 2), 0);
        let mut engine = Engine::new(Box::new(model), offline()).unwrap();
        let latency = engine.latency();
        assert_eq!(latency, 2047 + 512 * 4);
        let out = run(&mut engine, &input, &blocks);
        for ch in 0..2 {
            let mut max_err = 0.0f32;
            for t in 0..input[0].len() {
                let expected = if t >= latency {
                    input[ch][t - latency]
                } else {
                    0.0
                };
                max_err = max_err.max((out[ch][t] - expected).abs());
            }
            assert!(
                max_err < 1e-5,
                "blocks {:?}: max error {max_err}",
                &blocks[..1]
            );
            for src in 1..4 {
                assert!(out[src * 2 + ch].iter().all(|&v| v.abs() < 1e-6));
            }
        }
        assert_eq!(engine.stats().deadline_misses(), 0);
    }
}

#[test]
fn impulse_appears_at_exactly_the_latency_in_every_stem() {
    for (n_fft, hop, delay) in [(2048, 512, 0), (1024, 256, 3), (4096, 1024, 1), (16, 4, 2)] {
        for src in 0..4 {
            let model = FixedMaskModel::identity(mask_spec(&SOURCES, n_fft, hop, delay), src);
            let mut engine = Engine::new(Box::new(model), offline()).unwrap();
            let latency = engine.latency();
            assert_eq!(latency, n_fft - 1 + hop * (delay + 2));
            let len = latency + 3 * n_fft;
            let mut input = vec![vec![0.0f32; len]; 2];
            input[0][5] = 1.0;
            input[1][5] = -0.5;
            let out = run(&mut engine, &input, &[37]);
            let lane = src * 2;
            let peak = (0..len)
                .max_by(|&a, &b| out[lane][a].abs().total_cmp(&out[lane][b].abs()))
                .unwrap();
            assert_eq!(peak, 5 + latency, "n_fft {n_fft} hop {hop} source {src}");
            assert!((out[lane][peak] - 1.0).abs() < 1e-5);
            assert!((out[lane + 1][peak] + 0.5).abs() < 1e-5);
        }
    }
}

#[test]
fn stems_sum_to_the_delayed_input() {
    let input = noise(44_100, 3);
    let model = band_split(mask_spec(&SOURCES, 2048, 512, 1));
    let mut engine = Engine::new(Box::new(model), offline()).unwrap();
    let latency = engine.latency();
    let out = run(&mut engine, &input, &random_blocks(9));
    for ch in 0..2 {
        for t in latency..input[0].len() {
            let sum: f32 = (0..4).map(|s| out[s * 2 + ch][t]).sum();
            assert!((sum - input[ch][t - latency]).abs() < 1e-5, "t {t}");
        }
    }
    // Band splitting really splits: every stem carries a share of the noise.
    for (lane, samples) in out.iter().enumerate() {
        let energy: f32 = samples.iter().map(|v| v * v).sum();
        assert!(energy > 1.0, "lane {lane} energy {energy}");
    }
}

#[test]
fn band_split_sends_a_low_sine_to_the_first_source() {
    let len = 44_100;
    let sine: Vec<f32> = (0..len)
        .map(|t| (2.0 * std::f32::consts::PI * 440.0 * t as f32 / 44_100.0).sin() * 0.5)
        .collect();
    let input = vec![sine.clone(), sine];
    let model = band_split(mask_spec(&SOURCES, 2048, 512, 0));
    let mut engine = Engine::new(Box::new(model), offline()).unwrap();
    let out = run(&mut engine, &input, &[256]);
    let energy = |lane: usize| out[lane][10_000..].iter().map(|v| v * v).sum::<f32>();
    assert!(energy(0) > 1000.0 * (energy(2) + energy(4) + energy(6)));
}

#[test]
fn non_finite_and_subnormal_input_never_reaches_the_output() {
    let mut input = noise(20_000, 4);
    for (i, v) in [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        1e30,
        -1e30,
    ]
    .iter()
    .enumerate()
    {
        input[0][1000 + i * 997] = *v;
        input[1][3000 + i * 13] = *v;
    }
    let model = band_split(mask_spec(&SOURCES, 2048, 512, 2));
    let mut engine = Engine::new(Box::new(model), offline()).unwrap();
    let out = run(&mut engine, &input, &[100]);
    for lane in &out {
        assert!(lane
            .iter()
            .all(|v| v.is_finite() && v.abs() <= INPUT_LIMIT * 2.0));
    }
}

/// A model that is too slow for real time on some frames.
struct SlowModel {
    inner: FixedMaskModel,
    frames: usize,
}

impl SeparationModel for SlowModel {
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn push_frame(&mut self, f: &[f32], sink: &mut dyn ResultSink) -> Result<(), ModelError> {
        self.frames += 1;
        if self.frames.is_multiple_of(10) {
            std::thread::sleep(Duration::from_millis(30));
        }
        self.inner.push_frame(f, sink)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}

#[test]
fn missed_deadlines_keep_output_continuous_and_summing_to_the_input() {
    for stereo_wiener_s in [None, Some(1.0)] {
        missed_deadlines_keep_the_sum(ModelSpec {
            stereo_wiener_s,
            ..mask_spec(&SOURCES, 1024, 256, 0)
        });
    }
}

fn missed_deadlines_keep_the_sum(spec: ModelSpec) {
    let model = SlowModel {
        inner: band_split(spec),
        frames: 0,
    };
    let config = EngineConfig {
        compute_slack_hops: 1,
        deadline: DeadlinePolicy::RealTime,
    };
    let mut engine = Engine::new(Box::new(model), config).unwrap();
    let latency = engine.latency();
    let input = noise(44_100, 5);
    // Paced roughly like a host: 256-sample blocks, with a short pause between some of them.
    let mut out = vec![vec![0.0f32; input[0].len()]; 8];
    for (i, start) in (0..input[0].len()).step_by(256).enumerate() {
        let end = (start + 256).min(input[0].len());
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[start..end]).collect();
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|c| &mut c[start..end]).collect();
        engine.process(&ins, &mut outs);
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(
        engine.stats().deadline_misses() > 0,
        "the slow model should miss"
    );
    for ch in 0..2 {
        for t in latency..input[0].len() {
            let sum: f32 = (0..4).map(|s| out[s * 2 + ch][t]).sum();
            assert!((sum - input[ch][t - latency]).abs() < 1e-5);
        }
    }
}

#[test]
fn reset_restarts_from_silence_with_the_same_latency() {
    let model = FixedMaskModel::identity(mask_spec(&SOURCES, 2048, 512, 2), 1);
    let mut engine = Engine::new(Box::new(model), offline()).unwrap();
    let latency = engine.latency();
    let _ = run(&mut engine, &noise(30_000, 6), &[333]);
    engine.reset();
    let mut input = vec![vec![0.0f32; latency + 4096]; 2];
    input[0][0] = 1.0;
    input[1][0] = 1.0;
    let out = run(&mut engine, &input, &[333]);
    let lane = 2;
    for (t, v) in out[lane].iter().enumerate() {
        let expected = if t == latency { 1.0 } else { 0.0 };
        assert!((v - expected).abs() < 1e-5, "t {t}: {v}");
    }
}

#[test]
fn wrong_channel_count_gives_silence_not_a_panic() {
    let model = FixedMaskModel::identity(mask_spec(&SOURCES, 2048, 512, 0), 0);
    let mut engine = Engine::new(Box::new(model), offline()).unwrap();
    let mono = vec![0.5f32; 64];
    let mut out = vec![vec![1.0f32; 64]; 8];
    let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|c| &mut c[..]).collect();
    engine.process(&[&mono], &mut outs);
    assert!(out.iter().flatten().all(|&v| v == 0.0));
}

#[test]
fn stereo_model_on_mono_audio_and_mono_model_on_stereo_audio_keep_the_sum() {
    let stereo = noise(20_000, 8);
    let mono = vec![stereo[0].clone()];
    let mut mono_spec = mask_spec(&SOURCES, 1024, 256, 1);
    mono_spec.channels = 1;
    for (model_spec, input) in [
        (mask_spec(&SOURCES, 1024, 256, 1), &mono),
        (mono_spec, &stereo),
    ] {
        let channels = input.len();
        let mut engine =
            Engine::with_channels(Box::new(band_split(model_spec)), offline(), channels).unwrap();
        let latency = engine.latency();
        let out = run(&mut engine, input, &[300]);
        assert_eq!(out.len(), 4 * channels);
        for ch in 0..channels {
            for t in latency..input[0].len() {
                let sum: f32 = (0..4).map(|s| out[s * channels + ch][t]).sum();
                assert!((sum - input[ch][t - latency]).abs() < 1e-5);
            }
        }
    }
}

/// Fails (or panics) from a given frame on, to inject faults into the worker.
struct FaultyModel {
    inner: FixedMaskModel,
    frames: usize,
    fail_from: usize,
    panic: bool,
}

impl SeparationModel for FaultyModel {
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn push_frame(&mut self, f: &[f32], sink: &mut dyn ResultSink) -> Result<(), ModelError> {
        self.frames += 1;
        if self.frames >= self.fail_from {
            if self.panic {
                panic!("injected model panic");
            }
            return Err(ModelError("injected failure".into()));
        }
        self.inner.push_frame(f, sink)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}

#[test]
fn a_failing_or_panicking_model_leaves_aligned_continuous_output() {
    for panic in [false, true] {
        let model = FaultyModel {
            inner: band_split(mask_spec(&SOURCES, 1024, 256, 1)),
            frames: 0,
            fail_from: 40,
            panic,
        };
        let mut engine = Engine::new(Box::new(model), offline()).unwrap();
        let latency = engine.latency();
        let input = noise(44_100, 10);
        let out = run(&mut engine, &input, &[512]);
        let stats = engine.stats();
        assert!(stats.deadline_misses() > 0);
        assert_eq!(stats.model_panicked(), panic);
        assert_eq!(stats.model_errors() > 0, !panic);
        for ch in 0..2 {
            for t in latency..input[0].len() {
                let sum: f32 = (0..4).map(|s| out[s * 2 + ch][t]).sum();
                assert!(
                    (sum - input[ch][t - latency]).abs() < 1e-5,
                    "panic {panic} t {t}"
                );
            }
        }
    }
}

/// Returns the mix spectrum scaled by 0.5 for every source but the residual (the last one).
struct HalfSpectrum(ModelSpec);

impl SeparationModel for HalfSpectrum {
    fn spec(&self) -> &ModelSpec {
        &self.0
    }
    fn push_frame(&mut self, f: &[f32], sink: &mut dyn ResultSink) -> Result<(), ModelError> {
        let sources = self.0.sources.len();
        let mut out = Vec::with_capacity(f.len() * sources);
        for s in 0..sources {
            let gain = if s + 1 == sources { 0.0 } else { 0.5 };
            out.extend(f.iter().map(|v| v * gain));
        }
        sink.emit(&out);
        Ok(())
    }
    fn reset(&mut self) {}
}

#[test]
fn stereo_spectrum_model_on_mono_audio_averages_its_channels() {
    let mut spec = mask_spec(&["vocals", "instrumental"], 1024, 256, 0);
    spec.features = FeatureKind::Complex;
    spec.result = ResultKind::Spectrum { residual: Some(1) };
    let mut engine =
        Engine::with_channels(Box::new(HalfSpectrum(spec.clone())), offline(), 1).unwrap();
    let latency = engine.latency();
    let input = vec![noise(20_000, 11).remove(0)];
    let out = run(&mut engine, &input, &[128]);
    for t in latency..input[0].len() {
        let expected = input[0][t - latency];
        assert!((out[0][t] - 0.5 * expected).abs() < 1e-5, "t {t}");
        assert!((out[1][t] - 0.5 * expected).abs() < 1e-5, "t {t}");
    }
    spec.channels = 1;
    assert!(Engine::with_channels(Box::new(HalfSpectrum(spec)), offline(), 2).is_err());
}

#[test]
fn real_time_resynthesis_is_spread_over_the_hop_and_matches_offline() {
    let input = noise(44_100, 11);
    let spec = mask_spec(&SOURCES, 2048, 512, 1);
    let mut offline_engine = Engine::new(Box::new(band_split(spec.clone())), offline()).unwrap();
    let expected = run(&mut offline_engine, &input, &[64]);
    let config = EngineConfig {
        deadline: DeadlinePolicy::RealTime,
        ..offline()
    };
    let mut engine = Engine::new(Box::new(band_split(spec)), config).unwrap();
    let lanes = engine.sources() * engine.channels();
    let mut out = vec![vec![0.0f32; input[0].len()]; lanes];
    let mut lanes_done_before_hop_end = Vec::new();
    for start in (0..input[0].len()).step_by(64) {
        let end = (start + 64).min(input[0].len());
        let ins: Vec<&[f32]> = input.iter().map(|c| &c[start..end]).collect();
        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|c| &mut c[start..end]).collect();
        engine.process(&ins, &mut outs);
        lanes_done_before_hop_end.push(engine.synthesis.lanes_done);
        // Like a host whose worker keeps up: every frame sent is back before the next block.
        while engine.worker.stats.frames.load(Ordering::Relaxed) < engine.stats().frames() {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    assert_eq!(engine.stats().deadline_misses(), 0);
    for (lane, (got, want)) in out.iter().zip(&expected).enumerate() {
        let err = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-6, "lane {lane}: max difference {err}");
    }
    // With 8 blocks per hop, blocks inside the hop resynthesise a few lanes each, and all lanes
    // are done before the block that ends the hop.
    let steps: Vec<usize> = lanes_done_before_hop_end[200..208].to_vec();
    assert!(steps.contains(&lanes), "lanes done per block: {steps:?}");
    assert!(
        steps.iter().filter(|&&n| n > 0 && n < lanes).count() >= 4,
        "lanes done per block: {steps:?}"
    );
}

/// A stereo mask spec whose model asks for the stereo Wiener post-filter, with EM steps.
fn wiener_spec(delay_frames: usize) -> ModelSpec {
    ModelSpec {
        stereo_wiener_s: Some(1.0),
        stereo_wiener_em_steps: 2,
        ..mask_spec(&SOURCES, 2048, 512, delay_frames)
    }
}

#[test]
fn stereo_wiener_keeps_the_exact_latency_and_the_sum() {
    // Identity masks: the filter must hand the whole (delayed) mix to source 0 unchanged, which
    // only happens when it filters each frame's own spectrum.
    let input = noise(44_100, 21);
    let model = FixedMaskModel::identity(wiener_spec(2), 0);
    let mut engine = Engine::new(Box::new(model), offline()).unwrap();
    let latency = engine.latency();
    assert_eq!(latency, 2047 + 512 * 4);
    let out = run(&mut engine, &input, &random_blocks(22));
    for ch in 0..2 {
        for t in latency..input[0].len() {
            assert!(
                (out[ch][t] - input[ch][t - latency]).abs() < 1e-4,
                "channel {ch} t {t}: {} against {}",
                out[ch][t],
                input[ch][t - latency]
            );
        }
    }
    // Masks from the channel balance (a model that hears placement only through levels) on a
    // mix whose right channel comes and goes: the filter changes the stems (it is active), and
    // they still sum to the delayed input.
    let mut input = noise(44_100, 23);
    for t in 0..input[0].len() {
        input[1][t] *= if (t / 4410) % 2 == 0 { 0.0 } else { 1.0 };
    }
    let stems = |wiener: bool| {
        let spec = if wiener {
            wiener_spec(0)
        } else {
            mask_spec(&SOURCES, 2048, 512, 0)
        };
        let mut engine = Engine::new(Box::new(BalanceModel(spec)), offline()).unwrap();
        run(&mut engine, &input, &[300])
    };
    let (filtered, plain) = (stems(true), stems(false));
    let latency = 2047 + 512 * 2;
    for ch in 0..2 {
        for t in latency..input[0].len() {
            let sum: f32 = (0..4).map(|s| filtered[s * 2 + ch][t]).sum();
            assert!((sum - input[ch][t - latency]).abs() < 1e-4, "t {t}");
        }
    }
    let difference: f32 = filtered
        .iter()
        .flatten()
        .zip(plain.iter().flatten())
        .map(|(a, b)| (a - b).powi(2))
        .sum();
    assert!(difference > 1.0, "the filter changed nothing: {difference}");
    assert!(filtered.iter().flatten().all(|v| v.is_finite()));
}

/// A stereo mask model without delay: per bin, source 0 gets the left channel's share of the
/// magnitude, the last source the rest, on both channels.
struct BalanceModel(ModelSpec);

impl SeparationModel for BalanceModel {
    fn spec(&self) -> &ModelSpec {
        &self.0
    }
    fn push_frame(&mut self, f: &[f32], sink: &mut dyn ResultSink) -> Result<(), ModelError> {
        let bins = self.0.bins;
        let sources = self.0.sources.len();
        let mut masks = vec![0.0; sources * 2 * bins];
        for bin in 0..bins {
            let (l, r) = (f[bin], f[bins + bin]);
            let share = if l + r > 0.0 { l / (l + r) } else { 0.5 };
            for ch in 0..2 {
                masks[ch * bins + bin] = share;
                masks[((sources - 1) * 2 + ch) * bins + bin] = 1.0 - share;
            }
        }
        sink.emit(&masks);
        Ok(())
    }
    fn reset(&mut self) {}
}
