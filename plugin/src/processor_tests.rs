use std::time::Duration;

use assert_no_alloc::assert_no_alloc;
use demix_dsp::reference_models::{band_split, mask_spec, FixedMaskModel};
use demix_dsp::{
    DeadlinePolicy, EngineConfig, ModelError, ModelSpec, ResultSink, SeparationModel, Separator,
};

use super::*;

const SOURCES: [&str; 4] = ["vocals", "drums", "bass", "other"];

fn host(sample_rate: u32, channels: usize, max_block: usize, realtime: bool) -> HostConfig {
    HostConfig {
        sample_rate,
        channels,
        max_block,
        realtime,
    }
}

fn spec() -> ModelSpec {
    mask_spec(&SOURCES, 512, 128, 1)
}

/// Every source gets a quarter of every bin, so each stem is a quarter of the input.
fn quarter_model() -> FixedMaskModel {
    let spec = spec();
    let masks = vec![vec![0.25; spec.bins]; SOURCES.len()];
    FixedMaskModel::new(spec, masks)
}

/// A model that takes `delay` per frame: it misses real-time deadlines.
struct SlowModel {
    inner: FixedMaskModel,
    delay: Duration,
}

impl SeparationModel for SlowModel {
    fn spec(&self) -> &ModelSpec {
        self.inner.spec()
    }
    fn push_frame(
        &mut self,
        features: &[f32],
        sink: &mut dyn ResultSink,
    ) -> Result<(), ModelError> {
        std::thread::sleep(self.delay);
        self.inner.push_frame(features, sink)
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
}

fn prepared(model: Box<dyn SeparationModel>, host: &HostConfig, generation: u64) -> Box<Prepared> {
    let config = EngineConfig {
        compute_slack_hops: 2,
        deadline: if host.realtime {
            DeadlinePolicy::RealTime
        } else {
            DeadlinePolicy::Wait
        },
    };
    let separator = Separator::new(model, config, host.sample_rate, host.channels).unwrap();
    Box::new(Prepared::new(separator, host, generation).unwrap())
}

fn custom_all_unity() -> MixSettings {
    MixSettings {
        mode: Mode::Custom,
        ..MixSettings::default()
    }
}

/// Output of a processor run: main bus and four stereo auxiliary buses, each `[channel][t]`.
struct Run {
    main: Vec<Vec<f32>>,
    aux: Vec<Vec<Vec<f32>>>,
}

/// Feeds `input` (`[channel][t]`) through `processor` in blocks cycling through `blocks`.
fn run(
    processor: &mut DemixProcessor,
    input: &[Vec<f32>],
    blocks: &[usize],
    settings: &MixSettings,
) -> Run {
    let len = input[0].len();
    let mut main: Vec<Vec<f32>> = input.to_vec();
    let mut aux = vec![vec![vec![0.0f32; len]; 2]; SLOTS];
    let mut pos = 0;
    let mut b = 0;
    while pos < len {
        let n = blocks[b % blocks.len()].min(len - pos);
        b += 1;
        let mut main_blocks: Vec<&mut [f32]> =
            main.iter_mut().map(|c| &mut c[pos..pos + n]).collect();
        let mut aux_blocks: Vec<Vec<&mut [f32]>> = aux
            .iter_mut()
            .map(|bus| bus.iter_mut().map(|c| &mut c[pos..pos + n]).collect())
            .collect();
        let mut aux_refs: Vec<&mut [&mut [f32]]> =
            aux_blocks.iter_mut().map(|b| &mut b[..]).collect();
        processor.process(&mut main_blocks, &mut aux_refs, settings);
        pos += n;
    }
    Run { main, aux }
}

fn argmax_abs(x: &[f32]) -> usize {
    x.iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i)
        .unwrap()
}

fn impulse(channels: usize, len: usize, at: usize) -> Vec<Vec<f32>> {
    let mut input = vec![vec![0.0f32; len]; channels];
    for c in input.iter_mut() {
        c[at] = 1.0;
    }
    input
}

#[test]
fn impulse_lands_at_the_reported_latency_in_every_stem_and_the_bypass_path() {
    for rate in [44_100, 48_000, 88_200, 96_000] {
        let host = host(rate, 2, 256, false);
        let (audio, _builder) = hand_over_rings();
        let settings = custom_all_unity();
        let mut processor = DemixProcessor::new(
            host,
            prepared(Box::new(quarter_model()), &host, 1),
            audio,
            &settings,
            0,
        );
        let latency = processor.latency();
        assert_eq!(latency, processor.separator().unwrap().latency());
        let at = 1000;
        let input = impulse(2, at + latency + 3000, at);
        let out = run(&mut processor, &input, &[128, 1, 77, 256, 500], &settings);
        // Unity gains: the stems sum back to the input, so the main output is the impulse
        // itself, at every rate.
        for channel in &out.main {
            assert_eq!(argmax_abs(channel), at + latency, "main at {rate} Hz");
            let peak = channel[at + latency];
            assert!((peak - 1.0).abs() < 1e-4, "main peak {peak} at {rate} Hz");
        }
        // Above the model's rate, the model band-limits the separated stems to its Nyquist
        // frequency.
        let expected_peak = (44_100.0 / rate as f32).min(1.0);
        for (k, bus) in out.aux.iter().enumerate() {
            for channel in bus.iter() {
                assert_eq!(argmax_abs(channel), at + latency, "stem {k} at {rate} Hz");
            }
        }
        // Vocals, drums and bass each get a quarter of the (band-limited) impulse; "other" is
        // the residual, so the four stems add up to the main output exactly.
        for (k, bus) in out.aux.iter().enumerate().take(3) {
            for channel in bus.iter() {
                let peak = channel[at + latency];
                assert!(
                    (peak / (expected_peak / 4.0) - 1.0).abs() < 0.2,
                    "stem {k} peak {peak} at {rate} Hz"
                );
            }
        }
        for (c, main) in out.main.iter().enumerate() {
            let err = (0..main.len())
                .map(|t| (out.aux.iter().map(|bus| bus[c][t]).sum::<f32>() - main[t]).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-5, "stems vs main at {rate} Hz: {err}");
        }

        // The host's bypass: the dry input, delayed by exactly the same latency.
        processor.reset();
        let bypass = MixSettings {
            bypass: true,
            ..settings
        };
        let out = run(&mut processor, &input, &[128, 3, 1000], &bypass);
        for channel in &out.main {
            assert_eq!(argmax_abs(channel), at + latency, "bypass at {rate} Hz");
            assert_eq!(channel[at + latency], 1.0, "bypass at {rate} Hz");
        }
        for bus in &out.aux {
            assert!(
                bus.iter().flatten().all(|&x| x == 0.0),
                "stems silent in bypass"
            );
        }

        // A model that failed to load: the bypass keeps the latency the host was told.
        let (audio, _builder) = hand_over_rings();
        let mut failed = DemixProcessor::new(
            host,
            Box::new(Prepared::bypass(1)),
            audio,
            &settings,
            latency,
        );
        assert_eq!(failed.latency(), latency);
        let out = run(&mut failed, &input, &[64, 129], &settings);
        for channel in &out.main {
            assert_eq!(
                argmax_abs(channel),
                at + latency,
                "failed-model bypass at {rate} Hz"
            );
            assert_eq!(channel[at + latency], 1.0);
        }
    }
}

#[test]
fn mono_host_gets_mono_stems_on_every_aux_channel() {
    let host = host(48_000, 1, 128, false);
    let (audio, _builder) = hand_over_rings();
    let settings = custom_all_unity();
    let mut processor = DemixProcessor::new(
        host,
        prepared(Box::new(quarter_model()), &host, 1),
        audio,
        &settings,
        0,
    );
    let latency = processor.latency();
    let at = 300;
    let out = run(
        &mut processor,
        &impulse(1, at + latency + 1000, at),
        &[128],
        &settings,
    );
    assert_eq!(argmax_abs(&out.main[0]), at + latency);
    for bus in &out.aux {
        assert_eq!(argmax_abs(&bus[0]), at + latency);
        assert_eq!(bus[0], bus[1]);
    }
}

#[test]
fn blocks_larger_than_announced_are_processed_in_pieces() {
    let host = host(44_100, 2, 256, false);
    let settings = custom_all_unity();
    let input: Vec<Vec<f32>> = (0..2)
        .map(|c| {
            (0..20_000)
                .map(|t| ((t * (c + 3)) as f32 * 0.01).sin() * 0.5)
                .collect()
        })
        .collect();
    let mut outputs = Vec::new();
    for blocks in [&[64usize][..], &[256 * 3 + 5, 1, 4096]] {
        let (audio, _builder) = hand_over_rings();
        let model = Box::new(band_split(spec()));
        let mut processor =
            DemixProcessor::new(host, prepared(model, &host, 1), audio, &settings, 0);
        outputs.push(run(&mut processor, &input, blocks, &settings));
    }
    assert_eq!(outputs[0].main, outputs[1].main);
    assert_eq!(outputs[0].aux, outputs[1].aux);
    assert!(outputs[0].aux[0][0].iter().any(|&x| x.abs() > 0.01));
}

#[test]
fn non_finite_and_denormal_input_never_reaches_the_output() {
    let host = host(48_000, 2, 128, true);
    let settings = MixSettings {
        dry_wet: 0.5,
        ..custom_all_unity()
    };
    let (audio, _builder) = hand_over_rings();
    let mut processor = DemixProcessor::new(
        host,
        prepared(Box::new(quarter_model()), &host, 1),
        audio,
        &settings,
        0,
    );
    let bad = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        -1e-42,
        1e30,
        0.3,
    ];
    let input: Vec<Vec<f32>> = (0..2)
        .map(|c| (0..30_000).map(|t| bad[(t * 3 + c) % bad.len()]).collect())
        .collect();
    let out = run(&mut processor, &input, &[128, 31], &settings);
    for x in out.main.iter().chain(out.aux.iter().flatten()).flatten() {
        assert!(
            x.is_finite() && (*x == 0.0 || x.is_normal()),
            "bad output sample {x}"
        );
    }
    assert!(out.main[0].iter().any(|&x| x != 0.0));
}

#[test]
fn nothing_allocates_in_process_across_parameter_changes_swaps_and_deadline_misses() {
    let host = host(48_000, 2, 256, true);
    let settings = custom_all_unity();
    let (audio, mut builder) = hand_over_rings();
    let slow = SlowModel {
        inner: FixedMaskModel::identity(spec(), 0),
        delay: Duration::from_millis(8),
    };
    let first = prepared(Box::new(slow), &host, 7);
    let slow_stats = first.stats().unwrap();
    let mut processor = DemixProcessor::new(host, first, audio, &settings, 0);
    // Handed over in reverse order: another activation's (refused), a bypass, a separator.
    let mut pending = vec![
        prepared(Box::new(band_split(spec())), &host, 7),
        Box::new(Prepared::bypass(7)),
        prepared(Box::new(quarter_model()), &host, 6),
    ];
    let modes = [Mode::IsolateVocals, Mode::RemoveVocals, Mode::Custom];
    let mut main = vec![vec![0.0f32; 2048]; 2];
    let mut aux = vec![vec![vec![0.0f32; 2048]; 2]; SLOTS];
    let mut latencies = Vec::new();
    for block in 0..600usize {
        if block % 150 == 100 {
            if let Some(p) = pending.pop() {
                assert!(builder.send(p).is_ok());
            }
        }
        let len = [1, 128, 256, 700, 37, 2048][block % 6];
        for (c, channel) in main.iter_mut().enumerate() {
            for (t, x) in channel[..len].iter_mut().enumerate() {
                *x = (((block * 2048 + t) * (c + 1)) as f32 * 0.003).sin();
            }
        }
        let mut s = settings;
        s.mode = modes[block / 20 % 3];
        s.dry_wet = (block % 10) as f32 / 9.0;
        s.trim = 0.5 + (block % 4) as f32 * 0.25;
        s.bypass = block % 50 > 45;
        s.slots[block % SLOTS].gain = (block % 5) as f32;
        s.slots[(block + 1) % SLOTS].mute = block % 3 == 0;
        s.slots[(block + 2) % SLOTS].solo = block % 7 == 0;
        let mut main_blocks: [&mut [f32]; 2] = {
            let (l, r) = main.split_at_mut(1);
            [&mut l[0][..len], &mut r[0][..len]]
        };
        let mut aux_blocks: Vec<[&mut [f32]; 2]> = aux
            .iter_mut()
            .map(|bus| {
                let (l, r) = bus.split_at_mut(1);
                [&mut l[0][..len], &mut r[0][..len]]
            })
            .collect();
        let mut aux_refs: Vec<&mut [&mut [f32]]> =
            aux_blocks.iter_mut().map(|b| &mut b[..]).collect();
        assert_no_alloc(|| {
            processor.process(&mut main_blocks, &mut aux_refs, &s);
            if block == 333 {
                processor.reset();
            }
        });
        latencies.push(processor.latency());
        drop(builder.collect_retired());
        if block < 100 {
            // Let the slow worker fall behind so frames miss their deadline.
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    assert!(
        slow_stats.deadline_misses() > 0,
        "the slow model should miss deadlines"
    );
    assert!(pending.is_empty());
    // The separator of another activation (generation 6) was refused; the last one arrived.
    assert!(processor.separator().is_some());
    assert_eq!(processor.generation(), 7);
    assert!(latencies.iter().all(|&l| l == latencies[0]));
}

#[test]
fn swapping_separators_keeps_the_dry_path_and_the_latency_exact() {
    // At the model's rate nothing is resampled, so stems are bit-exact copies.
    let host = host(44_100, 2, 128, false);
    let settings = custom_all_unity();
    let (audio, mut builder) = hand_over_rings();
    let mut processor = DemixProcessor::new(
        host,
        prepared(Box::new(quarter_model()), &host, 3),
        audio,
        &settings,
        0,
    );
    let latency = processor.latency();
    let silence = vec![vec![0.0f32; 5000]; 2];
    run(&mut processor, &silence, &[128], &settings);
    assert!(builder
        .send(prepared(
            Box::new(FixedMaskModel::identity(spec(), 1)),
            &host,
            3
        ))
        .is_ok());
    // After warming up (latency, then the ramp) the new separator is heard: only drums pass.
    let at = latency + 1000;
    let out = run(
        &mut processor,
        &impulse(2, at + latency + 2000, at),
        &[128],
        &settings,
    );
    assert_eq!(processor.latency(), latency);
    assert_eq!(argmax_abs(&out.main[0]), at + latency);
    assert!((out.aux[1][0][at + latency] - 1.0).abs() < 1e-3);
    assert!(out.aux[0][0].iter().all(|x| x.abs() < 1e-3));
    assert_eq!(builder.collect_retired().len(), 1);
}

#[test]
fn presets_solo_and_mute_set_the_slot_gains() {
    let mut s = MixSettings::default();
    assert_eq!(s.slot_gains(), [1.0, 0.0, 0.0, 0.0]);
    s.mode = Mode::RemoveVocals;
    assert_eq!(s.slot_gains(), [0.0, 1.0, 1.0, 1.0]);
    s.mode = Mode::Custom;
    s.slots[1].gain = 2.0;
    s.slots[2].mute = true;
    assert_eq!(s.slot_gains(), [1.0, 2.0, 0.0, 1.0]);
    s.slots[3].solo = true;
    s.slots[2].solo = true;
    assert_eq!(s.slot_gains(), [0.0, 0.0, 0.0, 1.0]);
    s.slots[3].gain = f32::NAN;
    assert_eq!(s.slot_gains(), [0.0; 4]);
}

#[test]
fn sources_map_to_slots_by_name() {
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(slots_for(&names(&SOURCES)), vec![0, 1, 2, 3]);
    assert_eq!(slots_for(&names(&["Bass", "VOCALS"])), vec![2, 0]);
    assert_eq!(slots_for(&names(&["vocals", "accompaniment"])), vec![0, 3]);
    assert_eq!(
        slots_for(&names(&["speech", "music", "noise"])),
        vec![0, 3, 3]
    );
}
