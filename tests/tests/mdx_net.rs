//! UVR MDX-Net style models in `demix separate`: graphs with MDX-Net's exact signature
//! (`input` `[B, 4, dim_f, dim_t]`, planes L.re, L.im, R.re, R.im → `output` of the same shape,
//! the primary stem's spectrogram) are built here, described by a sidecar `.demix.toml` as
//! docs/bring-your-own-model.md explains, and their stems are compared with a reference
//! computed here in plain Rust (own STFT, model arithmetic and overlap-add; not the engine).
//! Also: manifests contradicting the graph are refused, naming the tensor and both shapes.

mod cli_common;

use std::path::{Path, PathBuf};

use cli_common::{
    assert_success, demix, read_wav, separate_command, stderr, write_wav, Encoding, Wav,
};
use realfft::num_complex::Complex;
use realfft::RealFftPlanner;

/// A protobuf message under construction (just the wire format ONNX files need).
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn int(mut self, field: u64, value: i64) -> Self {
        self.varint(field << 3);
        self.varint(value as u64);
        self
    }

    fn bytes(mut self, field: u64, bytes: &[u8]) -> Self {
        self.varint((field << 3) | 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn text(self, field: u64, text: &str) -> Self {
        self.bytes(field, text.as_bytes())
    }

    fn message(self, field: u64, message: Proto) -> Self {
        self.bytes(field, &message.0)
    }
}

/// One tensor dimension: fixed, or named (dynamic), like MDX-Net's batch axis.
#[derive(Clone, Copy)]
enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// ONNX `ValueInfoProto` of a float tensor.
fn value_info(name: &str, dims: &[Dim]) -> Proto {
    let shape = dims.iter().fold(Proto::default(), |shape, dim| {
        let d = match *dim {
            Dim::Fixed(n) => Proto::default().int(1, n),
            Dim::Named(s) => Proto::default().text(2, s),
        };
        shape.message(1, d)
    });
    let tensor_type = Proto::default().int(1, 1).message(2, shape);
    Proto::default()
        .text(1, name)
        .message(2, Proto::default().message(1, tensor_type))
}

/// ONNX `TensorProto` holding float data.
fn initializer(name: &str, dims: &[i64], data: &[f32]) -> Proto {
    assert_eq!(dims.iter().product::<i64>() as usize, data.len());
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = dims.iter().fold(Proto::default(), |t, &d| t.int(1, d));
    tensor.int(2, 1).text(8, name).bytes(9, &raw)
}

/// A node attribute: one integer or a list of them.
enum Attr {
    Int(i64),
    Ints(&'static [i64]),
}

/// ONNX `NodeProto`.
fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: &[(&str, Attr)]) -> Proto {
    let mut node = Proto::default();
    for input in inputs {
        node = node.text(1, input);
    }
    for output in outputs {
        node = node.text(2, output);
    }
    node = node.text(4, op);
    for (name, value) in attributes {
        let attribute = Proto::default().text(1, name);
        // AttributeProto: i = 3, ints = 8, type = 20 (INT = 2, INTS = 7).
        let attribute = match value {
            Attr::Int(v) => attribute.int(3, *v).int(20, 2),
            Attr::Ints(values) => values
                .iter()
                .fold(attribute, |a, &v| a.int(8, v))
                .int(20, 7),
        };
        node = node.message(5, attribute);
    }
    node
}

/// A complete ONNX model (IR 8, opset 17), with `demix.manifest` metadata when given.
fn onnx_model(
    nodes: Vec<Proto>,
    initializers: Vec<Proto>,
    inputs: Vec<Proto>,
    outputs: Vec<Proto>,
    manifest: Option<&str>,
) -> Vec<u8> {
    let mut graph = Proto::default();
    for n in nodes {
        graph = graph.message(1, n);
    }
    graph = graph.text(2, "mdx_like");
    for i in initializers {
        graph = graph.message(5, i);
    }
    for i in inputs {
        graph = graph.message(11, i);
    }
    for o in outputs {
        graph = graph.message(12, o);
    }
    let mut model = Proto::default()
        .int(1, 8)
        .text(2, "demix mdx_net test")
        .message(7, graph)
        .message(8, Proto::default().int(2, 17));
    if let Some(json) = manifest {
        model = model.message(14, Proto::default().text(1, "demix.manifest").text(2, json));
    }
    model.0
}

/// The known linear map the test graphs compute, per bin `f` and frame `t`, in complex terms:
/// `out_c = g_f · (Σ_d z[c][d] · in_d[t] + NEXT · in_c[t + 1])` for channels `c, d` (L, R),
/// with `in[t + 1]` zero past the window's end.
struct LinearMap {
    /// Channel-mixing complex matrix `z[out][in]` as (re, im).
    z: [[(f32, f32); 2]; 2],
    /// Per-bin real gain `g_f`, `dim_f` values.
    gain: Vec<f32>,
}

/// Weight of the next frame in [`LinearMap`].
const NEXT: f32 = 0.25;

impl LinearMap {
    fn new(dim_f: usize) -> Self {
        Self {
            z: [[(0.8, 0.3), (0.1, -0.2)], [(-0.15, 0.05), (0.6, -0.4)]],
            gain: (0..dim_f)
                .map(|f| 0.4 + 0.5 * (f as f32 * 0.013).sin().abs())
                .collect(),
        }
    }

    /// The Conv weight `[4, 4, 1, 2]` (planes L.re, L.im, R.re, R.im): tap 0 is the complex
    /// matrix as real 2×2 blocks, tap 1 is `NEXT` times the identity.
    fn conv_weight(&self) -> Vec<f32> {
        let mut w = vec![0.0; 4 * 4 * 2];
        let at = |o: usize, i: usize, tap: usize| (o * 4 + i) * 2 + tap;
        for c in 0..2 {
            for d in 0..2 {
                let (a, b) = self.z[c][d];
                w[at(2 * c, 2 * d, 0)] = a;
                w[at(2 * c, 2 * d + 1, 0)] = -b;
                w[at(2 * c + 1, 2 * d, 0)] = b;
                w[at(2 * c + 1, 2 * d + 1, 0)] = a;
            }
            w[at(2 * c, 2 * c, 1)] = NEXT;
            w[at(2 * c + 1, 2 * c + 1, 1)] = NEXT;
        }
        w
    }

    /// The map applied to one bin: `now` and `next` hold (L, R) of frames `t` and `t + 1`.
    fn apply(
        &self,
        f: usize,
        c: usize,
        now: [Complex<f64>; 2],
        next: [Complex<f64>; 2],
    ) -> Complex<f64> {
        let mut sum = next[c] * f64::from(NEXT);
        for (d, x) in now.iter().enumerate() {
            let (a, b) = self.z[c][d];
            sum += Complex::new(f64::from(a), f64::from(b)) * x;
        }
        sum * f64::from(self.gain[f])
    }

    /// An MDX-Net signature graph: `input [batch, 4, dim_f, dim_t]` → Conv (kernel 1×2, padded
    /// one frame at the end) → × `g_f` → `output`, same shape.
    fn graph(&self, dim_t: i64, batch: Dim) -> Vec<u8> {
        let dim_f = self.gain.len() as i64;
        let dims = [batch, Dim::Fixed(4), Dim::Fixed(dim_f), Dim::Fixed(dim_t)];
        onnx_model(
            vec![
                node(
                    "Conv",
                    &["input", "w"],
                    &["mixed"],
                    &[
                        ("kernel_shape", Attr::Ints(&[1, 2])),
                        ("pads", Attr::Ints(&[0, 0, 0, 1])),
                    ],
                ),
                node("Mul", &["mixed", "g"], &["output"], &[]),
            ],
            vec![
                initializer("w", &[4, 4, 1, 2], &self.conv_weight()),
                initializer("g", &[1, 1, dim_f, 1], &self.gain),
            ],
            vec![value_info("input", &dims)],
            vec![value_info("output", &dims)],
            None,
        )
    }
}

/// What a sidecar declares, and what the reference needs to know.
struct MdxConfig {
    n_fft: usize,
    hop: usize,
    dim_f: usize,
    dim_t: usize,
    step: usize,
    lookahead: usize,
    compensate: f32,
    /// Sources in manifest order; `primary` is the model's stem, the other the residual.
    sources: [&'static str; 2],
    primary: usize,
}

impl MdxConfig {
    fn sidecar(&self) -> String {
        let residual = self.sources[1 - self.primary];
        format!(
            r#"# A UVR MDX-Net model, as in docs/bring-your-own-model.md.
format_version = 1
name = "mdx-net test"
sample_rate = 44100
n_fft = {n_fft}
hop = {hop}
window = "hann"
channels = 2
sources = ["{s0}", "{s1}"]
fallback_source = "{residual}"

[input]
name = "input"
kind = "complex"
bins = {dim_f}

[output]
name = "output"
kind = "complex"
residual = "{residual}"
scale = {compensate}

[streaming]
style = "windowed"
context_frames = {dim_t}
step_frames = {step}
lookahead_frames = {lookahead}
"#,
            n_fft = self.n_fft,
            hop = self.hop,
            s0 = self.sources[0],
            s1 = self.sources[1],
            dim_f = self.dim_f,
            compensate = self.compensate,
            dim_t = self.dim_t,
            step = self.step,
            lookahead = self.lookahead,
        )
    }
}

/// A deterministic stereo test clip with content across the whole spectrum: tones, a chirp
/// and white noise from a fixed linear congruential generator, faded at both ends.
fn clip(rate: u32, frames: usize) -> Vec<Vec<f32>> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let fade = rate as usize / 100;
    let mut channels: Vec<Vec<f32>> = (0..2).map(|_| Vec::with_capacity(frames)).collect();
    for i in 0..frames {
        let t = i as f32 / rate as f32;
        let edge = (i.min(frames - 1 - i) as f32 / fade as f32).min(1.0);
        let tone = |f: f32| (std::f32::consts::TAU * f * t).sin();
        let chirp = (std::f32::consts::TAU * (200.0 * t + 4_000.0 * t * t)).sin();
        for (ch, samples) in channels.iter_mut().enumerate() {
            let x = 0.3 * tone(110.0 + 55.0 * ch as f32)
                + 0.15 * tone(2_500.0)
                + 0.1 * chirp
                + 0.08 * noise();
            samples.push(x * edge);
        }
    }
    channels
}

/// Demix's framing, computed independently: the periodic Hann STFT of `signal` preceded by
/// `n_fft − hop` zeros and followed by `tail` zeros, `[channel][frame][bin]`.
fn stft(signal: &[Vec<f32>], n_fft: usize, hop: usize, tail: usize) -> Vec<Vec<Vec<Complex<f64>>>> {
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let window = hann(n_fft);
    signal
        .iter()
        .map(|x| {
            let mut padded = vec![0.0f64; n_fft - hop];
            padded.extend(x.iter().map(|&v| f64::from(v)));
            padded.extend(std::iter::repeat_n(0.0, tail));
            (0..=(padded.len() - n_fft) / hop)
                .map(|m| {
                    let mut frame: Vec<f64> = padded[m * hop..m * hop + n_fft]
                        .iter()
                        .zip(&window)
                        .map(|(x, w)| x * w)
                        .collect();
                    let mut spectrum = fft.make_output_vec();
                    fft.process(&mut frame, &mut spectrum).expect("forward FFT");
                    spectrum
                })
                .collect()
        })
        .collect()
}

fn hann(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos())
        .collect()
}

/// Overlap-add of `frames` (`[frame][bin]`) with the synthesis window `w / Σ_k w(n − k·hop)²`,
/// trimmed by `n_fft − hop` so that it lines up with the input; `len` samples.
fn istft(frames: &[Vec<Complex<f64>>], n_fft: usize, hop: usize, len: usize) -> Vec<f32> {
    let ifft = RealFftPlanner::<f64>::new().plan_fft_inverse(n_fft);
    let window = hann(n_fft);
    let synthesis: Vec<f64> = (0..n_fft)
        .map(|n| {
            let power: f64 = window
                .iter()
                .skip(n % hop)
                .step_by(hop)
                .map(|w| w * w)
                .sum();
            window[n] / power
        })
        .collect();
    let mut out = vec![0.0f64; (frames.len() - 1) * hop + n_fft];
    let mut time = ifft.make_output_vec();
    for (m, frame) in frames.iter().enumerate() {
        let mut spectrum = frame.clone();
        spectrum[0].im = 0.0;
        spectrum[n_fft / 2].im = 0.0;
        ifft.process(&mut spectrum, &mut time).expect("inverse FFT");
        for (n, &x) in time.iter().enumerate() {
            out[m * hop + n] += x * synthesis[n] / n_fft as f64;
        }
    }
    out[n_fft - hop..n_fft - hop + len]
        .iter()
        .map(|&x| x as f32)
        .collect()
}

/// The stems Demix should produce, `[source][channel][sample]`: the primary stem is
/// `compensate ·` the map of the mixture STFT below `dim_f` and zero above; the residual is
/// the mixture minus the primary.
fn reference(signal: &[Vec<f32>], config: &MdxConfig, map: &LinearMap) -> Vec<Vec<Vec<f32>>> {
    let (n_fft, hop) = (config.n_fft, config.hop);
    let len = signal[0].len();
    let mix = stft(signal, n_fft, hop, n_fft + 4 * hop);
    let frames = mix[0].len() - 1;
    let scale = f64::from(config.compensate);
    let mut primary = vec![vec![vec![Complex::default(); n_fft / 2 + 1]; frames]; 2];
    let mut residual = primary.clone();
    for m in 0..frames {
        for c in 0..2 {
            for f in 0..=n_fft / 2 {
                let x = mix[c][m][f];
                let p = if f < config.dim_f {
                    let now = [mix[0][m][f], mix[1][m][f]];
                    let next = [mix[0][m + 1][f], mix[1][m + 1][f]];
                    map.apply(f, c, now, next) * scale
                } else {
                    Complex::default()
                };
                primary[c][m][f] = p;
                residual[c][m][f] = x - p;
            }
        }
    }
    let synth = |spectra: &[Vec<Vec<Complex<f64>>>]| -> Vec<Vec<f32>> {
        spectra
            .iter()
            .map(|ch| istft(ch, n_fft, hop, len))
            .collect()
    };
    let (p, r) = (synth(&primary), synth(&residual));
    if config.primary == 0 {
        vec![p, r]
    } else {
        vec![r, p]
    }
}

/// Writes the graph, its sidecar and a clip into `dir`, runs `demix separate`, and returns
/// the clip and the stems (in manifest order).
fn separate(dir: &Path, config: &MdxConfig, graph: &[u8]) -> (Vec<Vec<f32>>, Vec<Wav>) {
    let model = dir.join("UVR-MDX-NET-test.onnx");
    std::fs::write(&model, graph).expect("write model");
    std::fs::write(dir.join("UVR-MDX-NET-test.demix.toml"), config.sidecar())
        .expect("write sidecar");
    let input = dir.join("song.wav");
    let signal = write_wav(&input, 44_100, Encoding::Float32, &clip(44_100, 110_000));
    let out = dir.join("out");
    let output = separate_command(&[&input], &out, Some(&model))
        .args(["--format", "f32"])
        .output()
        .expect("demix runs");
    assert_success(&output);
    let stems = config
        .sources
        .iter()
        .map(|s| read_wav(&out.join("song").join(format!("{s}.wav"))))
        .collect();
    (signal, stems)
}

fn check_against_reference(config: &MdxConfig, batch: Dim) {
    let dir = tempfile::tempdir().expect("temp dir");
    let map = LinearMap::new(config.dim_f);
    let graph = map.graph(config.dim_t as i64, batch);
    let (signal, stems) = separate(dir.path(), config, &graph);
    let expected = reference(&signal, config, &map);
    for ((name, stem), want) in config.sources.iter().zip(&stems).zip(&expected) {
        assert_eq!(stem.frames(), signal[0].len(), "{name}: length");
        let error = cli_common::max_abs_diff(&stem.channels, want);
        let peak = want.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()));
        eprintln!("{name}: max abs error {error:.2e} (peak {peak:.3})");
        assert!(peak > 0.05, "{name}: the reference stem is nearly silent");
        assert!(
            error < 1e-4,
            "{name}: max abs error {error:e} against the reference"
        );
    }
}

/// The sidecar docs/bring-your-own-model.md recommends for a 6144-point MDX-Net model.
fn recommended() -> MdxConfig {
    MdxConfig {
        n_fft: 6144,
        hop: 1024,
        dim_f: 2048,
        dim_t: 256,
        step: 64,
        lookahead: 64,
        compensate: 1.035,
        sources: ["vocals", "instrumental"],
        primary: 0,
    }
}

#[test]
fn mdx_net_6144_with_dynamic_batch_matches_the_reference() {
    check_against_reference(&recommended(), Dim::Named("batch_size"));
}

#[test]
fn mdx_net_7680_with_residual_listed_first_matches_the_reference() {
    let config = MdxConfig {
        n_fft: 7680,
        hop: 1024,
        dim_f: 3072,
        dim_t: 256,
        step: 16,
        lookahead: 32,
        compensate: 1.022,
        sources: ["vocals", "instrumental"],
        primary: 1,
    };
    check_against_reference(&config, Dim::Fixed(1));
}

/// Runs `demix separate --model <model>` on a short clip in `dir`, expecting a clean refusal
/// that names every one of `needles` and writes nothing.
fn assert_refused(dir: &Path, model: &Path, needles: &[&str]) {
    let input = dir.join("song.wav");
    write_wav(&input, 44_100, Encoding::Float32, &clip(44_100, 4_410));
    let out = dir.join("out");
    let output = separate_command(&[&input], &out, Some(model))
        .output()
        .expect("demix runs");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    for needle in needles {
        assert!(
            text.contains(needle),
            "stderr does not name {needle}:\n{text}"
        );
    }
    assert!(!out.exists(), "a refused model must not create output");
}

#[test]
fn sidecar_declaring_other_bins_than_the_graph_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The sidecar says dim_f 2560; the graph takes 2048 bins.
    let config = MdxConfig {
        dim_f: 2560,
        ..recommended()
    };
    let graph = LinearMap::new(2048).graph(256, Dim::Named("batch_size"));
    let model: PathBuf = dir.path().join("model.onnx");
    std::fs::write(&model, graph).expect("write model");
    std::fs::write(dir.path().join("model.demix.toml"), config.sidecar()).expect("sidecar");
    assert_refused(
        dir.path(),
        &model,
        &["`input`", "[1, 4, 2560, 256]", "[?, 4, 2048, 256]"],
    );
}

#[test]
fn embedded_manifest_contradicting_the_output_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The manifest promises one estimated stem ([1, 4, F, T]); the graph outputs two.
    let manifest = r#"{"format_version": 1, "name": "two stems out", "sample_rate": 44100,
        "n_fft": 6144, "hop": 1024, "window": "hann", "channels": 2,
        "sources": ["vocals", "instrumental"],
        "input": {"name": "input", "kind": "complex", "bins": 2048},
        "output": {"name": "output", "kind": "complex", "residual": "instrumental"},
        "streaming": {"style": "windowed", "lookahead_frames": 64, "context_frames": 256,
                      "step_frames": 64}}"#;
    let batch = Dim::Named("batch_size");
    let (f, t) = (Dim::Fixed(2048), Dim::Fixed(256));
    let graph = onnx_model(
        vec![node(
            "Concat",
            &["input", "input"],
            &["output"],
            &[("axis", Attr::Int(1))],
        )],
        vec![],
        vec![value_info("input", &[batch, Dim::Fixed(4), f, t])],
        vec![value_info("output", &[batch, Dim::Fixed(8), f, t])],
        Some(manifest),
    );
    let model = dir.path().join("two_stems.onnx");
    std::fs::write(&model, graph).expect("write model");
    assert_refused(
        dir.path(),
        &model,
        &["`output`", "[1, 4, 2048, 256]", "[?, 8, 2048, 256]"],
    );
}

#[test]
fn inspect_reports_the_documented_latency() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = recommended();
    let model = dir.path().join("UVR-MDX-NET-vocals.onnx");
    let graph = LinearMap::new(config.dim_f).graph(config.dim_t as i64, Dim::Named("batch"));
    std::fs::write(&model, graph).expect("write model");
    std::fs::write(
        dir.path().join("UVR-MDX-NET-vocals.demix.toml"),
        config.sidecar(),
    )
    .expect("write sidecar");
    let output = demix()
        .args(["models", "inspect"])
        .arg(&model)
        .output()
        .expect("demix runs");
    assert_success(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    // docs/bring-your-own-model.md: n_fft − 1 + hop · (L + K − 1 + 2) = 138,239 samples, 3.13 s.
    let latency = config.n_fft - 1 + config.hop * (config.lookahead + config.step - 1 + 2);
    assert_eq!(latency, 138_239);
    for needle in [
        format!("{latency} samples"),
        "residual source instrumental, scale 1.035".to_string(),
    ] {
        assert!(
            text.contains(&needle),
            "inspect does not say {needle}:\n{text}"
        );
    }
}
