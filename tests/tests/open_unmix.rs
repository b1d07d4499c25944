//! Open-Unmix models exported by `models/export/export_open_unmix.py` run in `demix separate`
//! and reproduce PyTorch's own separation of the same clip. The fixtures in
//! `tests/fixtures/open_unmix/` (two randomly initialised models, the clip and PyTorch's stems)
//! are written by `models/export/make_open_unmix_fixture.py`; no Python runs here.

mod cli_common;

use std::path::{Path, PathBuf};

use cli_common::{assert_success, demix, read_wav, separate_command, stderr, workspace};

/// The model's targets, in manifest order.
const TARGETS: [&str; 4] = ["vocals", "drums", "bass", "other"];

/// The agreement the issue asks for between Demix and PyTorch.
const MIN_SDR_DB: f64 = 40.0;

fn fixtures() -> PathBuf {
    workspace()
        .join("tests")
        .join("fixtures")
        .join("open_unmix")
}

/// Global SDR of `estimate` against `reference` over all channels, in dB.
fn sdr(reference: &[Vec<f32>], estimate: &[Vec<f32>]) -> f64 {
    let mut signal = 0.0f64;
    let mut error = 0.0f64;
    for (r, e) in reference.iter().zip(estimate) {
        assert_eq!(r.len(), e.len(), "stem lengths differ");
        for (&x, &y) in r.iter().zip(e) {
            signal += f64::from(x).powi(2);
            error += (f64::from(x) - f64::from(y)).powi(2);
        }
    }
    10.0 * (signal / error.max(1e-30)).log10()
}

/// Runs `demix separate --model <model> --format f32` on the fixture clip and returns the
/// folder holding the stems.
fn separate(model: &Path, out: &Path) -> PathBuf {
    let clip = fixtures().join("clip.wav");
    let output = separate_command(&[&clip], out, Some(model))
        .args(["--format", "f32"])
        .output()
        .expect("demix runs");
    assert_success(&output);
    out.join("clip")
}

/// Separates the clip with `model` and compares every stem with PyTorch's in `reference`.
fn matches_pytorch(model: &str, reference: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let stems = separate(&fixtures().join(model), dir.path());
    let clip = read_wav(&fixtures().join("clip.wav"));
    let quarter: Vec<Vec<f32>> = clip
        .channels
        .iter()
        .map(|c| c.iter().map(|x| 0.25 * x).collect())
        .collect();
    for target in TARGETS {
        let ours = read_wav(&stems.join(format!("{target}.wav")));
        let theirs = read_wav(&fixtures().join(reference).join(format!("{target}.wav")));
        assert_eq!(
            ours.spec.sample_rate, clip.spec.sample_rate,
            "{target}: rate"
        );
        assert_eq!(ours.channels.len(), 2, "{target}: channels");
        assert_eq!(ours.frames(), clip.frames(), "{target}: length");
        // The reference is a real separation, far from an even split of the mix.
        let even = sdr(&theirs.channels, &quarter);
        assert!(
            even < 15.0,
            "{reference}/{target} is {even:.1} dB from mix/4"
        );
        let agreement = sdr(&theirs.channels, &ours.channels);
        eprintln!("{model} {target}: SDR {agreement:.1} dB against PyTorch");
        assert!(
            agreement >= MIN_SDR_DB,
            "{model} {target}: SDR {agreement:.1} dB against PyTorch, below {MIN_SDR_DB} dB"
        );
    }
}

#[test]
fn stateful_unidirectional_export_matches_pytorch() {
    matches_pytorch("umx_stateful.onnx", "reference_stateful");
}

#[test]
fn windowed_bidirectional_export_matches_pytorch() {
    matches_pytorch("umx_windowed.onnx", "reference_windowed");
}

#[test]
fn sidecar_contradicting_the_state_shape_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = dir.path().join("umx.onnx");
    std::fs::copy(fixtures().join("umx_stateful.onnx"), &model).expect("copy model");
    // The graph's LSTM state is [4, 3, 1, 8]; this sidecar claims hidden size 16.
    let sidecar = r#"
format_version = 1
name = "wrong state"
sample_rate = 44100
n_fft = 4096
hop = 1024
window = "hann"
channels = 2
sources = ["vocals", "drums", "bass", "other"]

[input]
name = "mix"
kind = "magnitude"

[output]
name = "estimates"
kind = "magnitude"

[streaming]
style = "stateful"
lookahead_frames = 0

[[streaming.state]]
input = "h_in"
output = "h_out"
shape = [4, 3, 1, 16]

[[streaming.state]]
input = "c_in"
output = "c_out"
shape = [4, 3, 1, 16]
"#;
    std::fs::write(dir.path().join("umx.demix.toml"), sidecar).expect("write sidecar");
    let out = dir.path().join("out");
    let output = separate_command(&[&fixtures().join("clip.wav")], &out, Some(&model))
        .output()
        .expect("demix runs");
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for needle in ["h_in", "[4, 3, 1, 16]", "[4, 3, 1, 8]"] {
        assert!(
            text.contains(needle),
            "stderr does not name {needle}:\n{text}"
        );
    }
    assert!(!out.exists(), "a refused model must not create output");
}

#[test]
fn inspect_reports_the_windowed_latency() {
    let output = demix()
        .args(["models", "inspect"])
        .arg(fixtures().join("umx_windowed.onnx"))
        .output()
        .expect("demix runs");
    assert_success(&output);
    let text = String::from_utf8_lossy(&output.stdout);
    // n_fft − 1 + hop · (L + K − 1 + default slack 2), with n_fft 4096, hop 1024, K = L = 4.
    let latency = 4096 - 1 + 1024 * (4 + 4 - 1 + 2);
    for needle in [
        "context 16 frames, step 4, lookahead 4".to_string(),
        format!("{latency} samples"),
        "turned into ratio masks".to_string(),
    ] {
        assert!(
            text.contains(&needle),
            "inspect does not say {needle}:\n{text}"
        );
    }
}
