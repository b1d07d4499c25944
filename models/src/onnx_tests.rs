//! Runs every fixture graph (models/fixtures, made by make_fixtures.py) through ONNX Runtime,
//! frame by frame and through `demix_dsp::Engine`, against references computed here in Rust.
//! ONNX Runtime must be provisioned (`cargo xtask provision-ort`); without it these tests fail.

use super::*;
use crate::{load, LoadOptions, ModelChoice};
use demix_dsp::{DeadlinePolicy, Engine, EngineConfig};
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

fn fixture(name: &str) -> ModelChoice {
    ModelChoice::File(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR")).into())
}

fn load_fixture(name: &str) -> (Box<dyn SeparationModel>, Manifest) {
    let loaded = load(&fixture(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading fixture {name}: {e}"));
    (loaded.model, loaded.manifest)
}

/// Collects emitted results and the push during which each came.
#[derive(Default)]
struct Collect {
    push: usize,
    results: Vec<(usize, Vec<f32>)>,
}

impl ResultSink for Collect {
    fn emit(&mut self, result: &[f32]) {
        self.results.push((self.push, result.to_vec()));
    }
}

/// Pushes `frames` and returns `(push index, result)` for every emitted result.
fn drive(model: &mut dyn SeparationModel, frames: &[Vec<f32>]) -> Vec<(usize, Vec<f32>)> {
    let mut sink = Collect::default();
    for (i, frame) in frames.iter().enumerate() {
        sink.push = i;
        model.push_frame(frame, &mut sink).unwrap();
    }
    sink.results
}

/// Random positive feature frames (magnitudes) or signed ones (complex parts).
fn random_frames(len: usize, count: usize, signed: bool, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            (0..len)
                .map(|_| {
                    if signed {
                        rng.gen_range(-1.0..1.0)
                    } else {
                        rng.gen_range(0.0..2.0)
                    }
                })
                .collect()
        })
        .collect()
}

fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= tolerance, "{what}: max abs error {worst}");
}

/// The masks of the lookahead_stateful fixture for frame `cur` followed by `next`:
/// source 0 = cur / (cur + next + 0.01), source 1 = 1 − source 0.
fn lookahead_masks(cur: &[f32], next: &[f32]) -> Vec<f32> {
    let m0: Vec<f32> = cur
        .iter()
        .zip(next)
        .map(|(&c, &n)| c / (c + n + 0.01))
        .collect();
    let m1 = m0.iter().map(|m| 1.0 - m);
    m0.iter().copied().chain(m1).collect()
}

/// The windowed fixture: source 0 = w_f · cur / (cur + next + 0.01), w_f = 1 below bin 16
/// and 0.5 above; source 1 = 1 − source 0.
fn windowed_masks(cur: &[f32], next: &[f32]) -> Vec<f32> {
    let bins = 33;
    let m0: Vec<f32> = cur
        .iter()
        .zip(next)
        .enumerate()
        .map(|(i, (&c, &n))| {
            let w = if i % bins < 16 { 1.0 } else { 0.5 };
            c / (c + n + 0.01) * w
        })
        .collect();
    let m1 = m0.iter().map(|m| 1.0 - m);
    m0.iter().copied().chain(m1).collect()
}

/// The magnitude_mono fixture after ratio masking: estimates x² and x · (0.1 + f/32); a bin
/// where both are 0 goes to the fallback (last) source.
fn magnitude_masks(cur: &[f32], _next: &[f32]) -> Vec<f32> {
    let e0: Vec<f32> = cur.iter().map(|x| x * x).collect();
    let e1: Vec<f32> = cur
        .iter()
        .enumerate()
        .map(|(f, x)| x * (0.1 + f as f32 / 32.0))
        .collect();
    let (mut m0, mut m1) = (Vec::new(), Vec::new());
    for (a, b) in e0.iter().zip(&e1) {
        let sum = a + b;
        if sum > 0.0 {
            m0.push(a / sum);
            m1.push(b / sum);
        } else {
            m0.push(0.0);
            m1.push(1.0);
        }
    }
    m0.into_iter().chain(m1).collect()
}

/// The mdx_complex fixture: vocals = 1.5 · (0.2 + 0.02 f) · X, the residual lane empty.
fn mdx_spectra(cur: &[f32], _next: &[f32]) -> Vec<f32> {
    let bins = 24;
    let vocals = cur
        .iter()
        .enumerate()
        .map(|(i, &x)| 1.5 * (0.2 + 0.02 * ((i / 2) % bins) as f32) * x);
    vocals.chain(cur.iter().map(|_| 0.0)).collect()
}

type Reference = fn(&[f32], &[f32]) -> Vec<f32>;

/// A pure-Rust model computing `reference(frame m, frame m + 1)` as soon as frame `m + 1`
/// arrives, with the same spec (and so the same latency) as the ONNX model it checks.
struct RustModel {
    spec: ModelSpec,
    reference: Reference,
    needs_next: bool,
    frames: VecDeque<Vec<f32>>,
}

impl SeparationModel for RustModel {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn push_frame(
        &mut self,
        features: &[f32],
        sink: &mut dyn ResultSink,
    ) -> Result<(), ModelError> {
        self.frames.push_back(features.to_vec());
        let wait = usize::from(self.needs_next);
        while self.frames.len() > wait {
            let cur = self.frames.pop_front().unwrap_or_default();
            let next = self.frames.front().cloned().unwrap_or_default();
            sink.emit(&(self.reference)(&cur, &next));
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.frames.clear();
    }
}

fn offline() -> EngineConfig {
    EngineConfig {
        compute_slack_hops: 2,
        deadline: DeadlinePolicy::Wait,
    }
}

/// Runs `input` (`[channel][sample]`) through an engine in blocks of varying size and returns
/// `[source · channels + channel][sample]`.
fn run_engine(engine: &mut Engine, input: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let len = input[0].len();
    let mut out = vec![vec![0.0f32; len]; engine.sources() * engine.channels()];
    let blocks = [1usize, 7, 64, 333, 16, 1000];
    let (mut pos, mut i) = (0, 0);
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

fn noise(channels: usize, len: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..channels)
        .map(|_| (0..len).map(|_| rng.gen_range(-0.5..0.5)).collect())
        .collect()
}

/// Runs the fixture and its Rust reference through identical engines and compares every stem.
fn engine_matches_reference(name: &str, reference: Reference, needs_next: bool) {
    let (model, _) = load_fixture(name);
    let spec = model.spec().clone();
    let input = noise(spec.channels, 6000, 3);
    let mut onnx_engine = Engine::new(model, offline()).unwrap();
    let rust = RustModel {
        spec,
        reference,
        needs_next,
        frames: VecDeque::new(),
    };
    let mut rust_engine = Engine::new(Box::new(rust), offline()).unwrap();
    assert_eq!(onnx_engine.latency(), rust_engine.latency());
    let got = run_engine(&mut onnx_engine, &input);
    let expected = run_engine(&mut rust_engine, &input);
    for (lane, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_close(g, e, 1e-5, &format!("{name} stem lane {lane}"));
    }
    // The stems differ from silence and from each other: the model's output matters.
    assert!(got[0].iter().map(|v| v.abs()).sum::<f32>() > 1.0);
    let stats = onnx_engine.stats();
    assert_eq!(stats.deadline_misses(), 0, "{name}");
    assert_eq!(stats.model_errors(), 0, "{name}");
}

#[test]
fn identity_fixture_is_a_pure_delay_of_the_engine_latency() {
    let (model, manifest) = load_fixture("identity_stateful.onnx");
    assert_eq!(model.spec().delay_frames, 2);
    let mut engine = Engine::new(model, offline()).unwrap();
    let latency = engine.latency();
    assert_eq!(latency, manifest.n_fft - 1 + manifest.hop * (2 + 2));
    let input = noise(2, 8000, 1);
    let out = run_engine(&mut engine, &input);
    for ch in 0..2 {
        let mut worst = 0.0f32;
        for t in 0..input[0].len() {
            let expected = if t >= latency {
                input[ch][t - latency]
            } else {
                0.0
            };
            worst = worst.max((out[ch][t] - expected).abs());
        }
        assert!(worst < 1e-5, "channel {ch}: max abs error {worst}");
        assert!(
            out[2 + ch].iter().all(|v| v.abs() < 1e-6),
            "source 1 is silent"
        );
    }
    assert_eq!(engine.stats().deadline_misses(), 0);
}

#[test]
fn stateful_results_align_with_their_frames() {
    let (mut model, _) = load_fixture("lookahead_stateful.onnx");
    let frames = random_frames(model.spec().feature_len(), 12, false, 5);
    let results = drive(model.as_mut(), &frames);
    // Lookahead 1: the result of frame m comes with the push of frame m + 1.
    assert_eq!(results.len(), frames.len() - 1);
    for (m, (push, result)) in results.iter().enumerate() {
        assert_eq!(*push, m + 1, "frame {m}");
        assert_close(
            result,
            &lookahead_masks(&frames[m], &frames[m + 1]),
            1e-6,
            "masks",
        );
    }
    // After a reset the state is zero again: the same frames give the same results.
    model.reset();
    assert_eq!(drive(model.as_mut(), &frames), results);
    engine_matches_reference("lookahead_stateful.onnx", lookahead_masks, true);
}

#[test]
fn windowed_results_follow_the_context_step_lookahead_schedule() {
    let (mut model, manifest) = load_fixture("windowed.onnx");
    assert_eq!(
        (
            manifest.context_frames(),
            manifest.step_frames(),
            manifest.delay_frames()
        ),
        (8, 2, 2)
    );
    let frames = random_frames(model.spec().feature_len(), 21, false, 6);
    let results = drive(model.as_mut(), &frames);
    // Every second push runs the window and emits the two frames ending one frame before
    // its end; frame −1 is dropped, so the pushes 1, 3, 5, … emit frames 0 | 1, 2 | 3, 4 | …
    let pushes: Vec<usize> = results.iter().map(|(p, _)| *p).collect();
    let mut expected_pushes = vec![1];
    for push in (3..21).step_by(2) {
        expected_pushes.extend([push, push]);
    }
    assert_eq!(pushes, expected_pushes);
    for (m, (push, result)) in results.iter().enumerate() {
        assert!(
            push - m <= manifest.delay_frames(),
            "frame {m} within its delay"
        );
        assert_close(
            result,
            &windowed_masks(&frames[m], &frames[m + 1]),
            1e-6,
            "masks",
        );
    }
    model.reset();
    assert_eq!(drive(model.as_mut(), &frames), results);
    engine_matches_reference("windowed.onnx", windowed_masks, true);
}

#[test]
fn magnitude_estimates_become_ratio_masks() {
    let (mut model, _) = load_fixture("magnitude_mono.onnx");
    assert_eq!(model.spec().channels, 1);
    assert_eq!(model.spec().result, demix_dsp::ResultKind::Mask);
    let mut frames = random_frames(model.spec().feature_len(), 5, false, 7);
    frames[2].fill(0.0);
    let results = drive(model.as_mut(), &frames);
    assert_eq!(results.len(), 5);
    for (m, (push, result)) in results.iter().enumerate() {
        assert_eq!(*push, m, "no lookahead: emitted at once");
        assert_close(
            result,
            &magnitude_masks(&frames[m], &[]),
            1e-6,
            "ratio masks",
        );
    }
    engine_matches_reference("magnitude_mono.onnx", magnitude_masks, false);
}

#[test]
fn mdx_complex_outputs_are_scaled_spectra_with_a_residual_source() {
    let (mut model, manifest) = load_fixture("mdx_complex.onnx");
    let spec = model.spec().clone();
    assert_eq!(spec.features, demix_dsp::FeatureKind::Complex);
    assert_eq!(
        spec.result,
        demix_dsp::ResultKind::Spectrum { residual: Some(1) }
    );
    assert_eq!((spec.bins, spec.delay_frames), (24, 2));
    assert_eq!(manifest.output_scale(), 1.5);
    let frames = random_frames(spec.feature_len(), 10, true, 8);
    let results = drive(model.as_mut(), &frames);
    assert_eq!(results.len(), 9);
    for (m, (_, result)) in results.iter().enumerate() {
        assert_close(result, &mdx_spectra(&frames[m], &[]), 1e-6, "spectra");
    }
    engine_matches_reference("mdx_complex.onnx", mdx_spectra, false);
}

#[test]
fn wrong_feature_lengths_are_errors_not_panics() {
    let (mut model, _) = load_fixture("windowed.onnx");
    let err = model
        .push_frame(&[0.0; 3], &mut Collect::default())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("expected 66 feature values, got 3"),
        "{err}"
    );
}

fn graph(inputs: &[(&str, &[i64])], outputs: &[(&str, &[i64])]) -> GraphInfo {
    let info = |list: &[(&str, &[i64])]| {
        list.iter()
            .map(|(name, shape)| TensorInfo {
                name: name.to_string(),
                element_type: "f32".into(),
                shape: shape.to_vec(),
            })
            .collect()
    };
    GraphInfo {
        inputs: info(inputs),
        outputs: info(outputs),
    }
}

fn stateful_manifest() -> Manifest {
    Manifest::from_json(
        r#"{"format_version": 1, "name": "t", "sample_rate": 44100, "n_fft": 2048, "hop": 512,
            "window": "hann", "channels": 2, "sources": ["a", "b", "c", "d"],
            "input": {"name": "mix", "kind": "magnitude"}, "output": {"name": "masks", "kind": "mask"},
            "streaming": {"style": "stateful", "lookahead_frames": 2,
                          "state": [{"input": "h", "output": "h_out", "shape": [1, 1, 256]}]}}"#,
    )
    .unwrap()
}

#[test]
fn graph_checks_accept_dynamic_dimensions_and_name_every_mismatch() {
    let manifest = stateful_manifest();
    let ok = graph(
        &[("mix", &[1, 2, 1025, -1]), ("h", &[1, 1, 256])],
        &[
            ("masks", &[-1, 4, 2, 1025, -1]),
            ("h_out", &[1, 1, 256]),
            ("extra", &[3]),
        ],
    );
    assert!(check_graph(&manifest, &ok).is_ok());
    let mismatch = |g: GraphInfo| check_graph(&manifest, &g).unwrap_err();
    let m = mismatch(graph(
        &[("mix", &[1, 2, 1024, 1]), ("h", &[1, 1, 256])],
        &[("masks", &[1, 4, 2, 1025, 1]), ("h_out", &[1, 1, 256])],
    ));
    assert_eq!(
        (m.tensor.as_str(), m.expected.as_str(), m.actual.as_str()),
        ("mix", "f32 [1, 2, 1025, 1]", "f32 [1, 2, 1024, 1]")
    );
    let m = mismatch(graph(
        &[("mix", &[1, 2, 1025, 1]), ("h", &[1, 1, 256])],
        &[("masks", &[1, 4, 2, 1025]), ("h_out", &[1, 1, 256])],
    ));
    assert_eq!(
        (m.tensor.as_str(), m.actual.as_str()),
        ("masks", "f32 [1, 4, 2, 1025]")
    );
    let m = mismatch(graph(
        &[("mix", &[1, 2, 1025, 1]), ("h", &[1, 2, 128])],
        &[("masks", &[1, 4, 2, 1025, 1]), ("h_out", &[1, 1, 256])],
    ));
    assert_eq!(
        (m.tensor.as_str(), m.expected.as_str()),
        ("h", "f32 [1, 1, 256]")
    );
    let m = mismatch(graph(
        &[("mix", &[1, 2, 1025, 1])],
        &[("masks", &[1, 4, 2, 1025, 1]), ("h_out", &[1, 1, 256])],
    ));
    assert_eq!(m.tensor, "h");
    assert!(
        m.actual
            .contains("no such input (the graph's inputs are mix)"),
        "{}",
        m.actual
    );
    let m = mismatch(graph(
        &[
            ("mix", &[1, 2, 1025, 1]),
            ("h", &[1, 1, 256]),
            ("gain", &[1]),
        ],
        &[("masks", &[1, 4, 2, 1025, 1]), ("h_out", &[1, 1, 256])],
    ));
    assert_eq!(m.tensor, "gain");
    assert!(
        m.expected.contains("the manifest declares inputs mix, h"),
        "{}",
        m.expected
    );
    let mut typed = ok.clone();
    typed.inputs[0].element_type = "f16".into();
    let m = mismatch(typed);
    assert_eq!(m.actual, "f16 [1, 2, 1025, ?]");
}

#[test]
fn complex_outputs_may_omit_the_source_axis_for_one_source() {
    let manifest = Manifest::from_json(
        r#"{"format_version": 1, "name": "mdx", "sample_rate": 44100, "n_fft": 6144, "hop": 1024,
            "window": "hann", "channels": 2, "sources": ["vocals", "instrumental"],
            "input": {"name": "input", "kind": "complex", "bins": 2048},
            "output": {"name": "output", "kind": "complex", "residual": "instrumental"},
            "streaming": {"style": "windowed", "lookahead_frames": 64, "context_frames": 256,
                          "step_frames": 128}}"#,
    )
    .unwrap();
    for output in [&[-1i64, 4, 2048, 256][..], &[1, 1, 4, 2048, 256]] {
        let layout = check_graph(
            &manifest,
            &graph(&[("input", &[-1, 4, 2048, 256])], &[("output", output)]),
        )
        .unwrap();
        let expected: Vec<i64> = output.iter().map(|&d| d.max(1)).collect();
        assert_eq!(layout.output_shape, expected);
    }
    let m = check_graph(
        &manifest,
        &graph(
            &[("input", &[1, 4, 2048, 256])],
            &[("output", &[1, 2, 4, 2048, 256])],
        ),
    )
    .unwrap_err();
    assert_eq!(m.expected, "f32 [1, 1, 4, 2048, 256]");
}

#[test]
fn several_source_complex_outputs_map_tensor_slots_to_sources() {
    // Three sources, the middle one residual: the tensor's two source slots are sources 0, 2.
    let manifest = Manifest::from_json(
        r#"{"format_version": 1, "name": "c", "sample_rate": 16000, "n_fft": 8, "hop": 2,
            "window": "hann", "channels": 1, "sources": ["a", "rest", "b"],
            "input": {"name": "x", "kind": "complex", "bins": 2},
            "output": {"name": "y", "kind": "complex", "residual": "rest", "scale": 2.0},
            "streaming": {"style": "windowed", "lookahead_frames": 0, "context_frames": 1,
                          "step_frames": 1}}"#,
    )
    .unwrap();
    let layout = Layout::new(&manifest);
    assert_eq!(layout.output_shape, [1, 2, 2, 2, 1]);
    // Output [slot][plane][bin]: slot 0 = a, slot 1 = b.
    let output = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let mut result = vec![f32::NAN; 3 * 2 * 2];
    layout.gather(&output, 0, &mut result);
    // [source][bin][re, im], scaled by 2; the residual source stays empty.
    assert_eq!(
        result,
        [2.0, 6.0, 4.0, 8.0, 0.0, 0.0, 0.0, 0.0, 10.0, 14.0, 12.0, 16.0]
    );
    let mut input = vec![0.0; 4];
    layout.scatter(&[1.0, 2.0, 3.0, 4.0], 0, &mut input);
    assert_eq!(input, [1.0, 3.0, 2.0, 4.0], "re plane, then im plane");
}

#[test]
fn non_finite_magnitude_estimates_poison_only_their_bin() {
    let mut manifest = stateful_manifest();
    manifest.output.kind = OutputKind::Magnitude;
    manifest.sources = vec!["a".into(), "b".into()];
    manifest.channels = 1;
    manifest.input.bins = Some(2);
    let layout = Layout::new(&manifest);
    let mut values = [f32::NAN, 1.0, 2.0, 3.0];
    layout.ratio_masks(&mut values);
    assert!(values[0].is_nan() && values[2].is_nan());
    assert_eq!((values[1], values[3]), (0.25, 0.75));
}
