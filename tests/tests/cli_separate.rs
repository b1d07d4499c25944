//! End-to-end: `demix separate` on real files, with the identity fixture model (16 kHz,
//! stems `target` = the input and `rest` = silence) and with the default model.

mod cli_common;

use std::path::Path;

use cli_common::*;

const IDENTITY: &str = "identity_stateful.onnx";
const IDENTITY_RATE: u32 = 16_000;

/// Runs `demix separate INPUTS -o OUT --model FIXTURE --format f32 EXTRA…`.
fn separate_with(
    model: Option<&Path>,
    inputs: &[&Path],
    out: &Path,
    extra: &[&str],
) -> std::process::Output {
    separate_command(inputs, out, model)
        .args(["--format", "f32"])
        .args(extra)
        .output()
        .expect("demix runs")
}

/// Checks one stem's shape against the input's.
fn assert_shape(stem: &Wav, rate: u32, input: &[Vec<f32>]) {
    assert_eq!(stem.spec.sample_rate, rate, "sample rate");
    assert_eq!(stem.spec.channels as usize, input.len(), "channels");
    assert_eq!(stem.frames(), input[0].len(), "length in samples");
}

#[test]
fn identity_model_at_its_own_rate_returns_the_input_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let model = fixture(IDENTITY);
    let cases = [
        ("stereo_f32.wav", 2, Encoding::Float32, 40_000),
        ("mono_16.wav", 1, Encoding::Int16, 12_345),
        ("stereo_24.wav", 2, Encoding::Int24, 777),
    ];
    let mut inputs = Vec::new();
    let mut stored = Vec::new();
    for (name, channels, encoding, frames) in cases {
        let path = dir.path().join(name);
        let signal = test_signal(IDENTITY_RATE, channels, frames);
        stored.push(write_wav(&path, IDENTITY_RATE, encoding, &signal));
        inputs.push(path);
    }
    let input_refs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let output = separate_with(Some(&model), &input_refs, &out, &[]);
    assert_success(&output);
    for ((name, ..), input) in cases.iter().zip(&stored) {
        let track = out.join(Path::new(name).file_stem().unwrap());
        assert_eq!(names_in(&track), ["rest.wav", "target.wav"], "{name}");
        let target = read_wav(&track.join("target.wav"));
        let rest = read_wav(&track.join("rest.wav"));
        assert_shape(&target, IDENTITY_RATE, input);
        assert_shape(&rest, IDENTITY_RATE, input);
        assert_eq!(target.spec.sample_format, hound::SampleFormat::Float);
        let err = max_abs_diff(&target.channels, input);
        assert!(err < 1e-4, "{name}: target differs from the input by {err}");
        let silence: Vec<Vec<f32>> = input.iter().map(|c| vec![0.0; c.len()]).collect();
        let err = max_abs_diff(&rest.channels, &silence);
        assert!(err < 1e-4, "{name}: rest is not silent ({err})");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("target.wav"),
        "stdout does not say where the stems are:\n{stdout}"
    );
}

#[test]
fn flac_input_is_separated_like_wav() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("song.flac");
    let input = write_flac(
        &path,
        IDENTITY_RATE,
        &test_signal(IDENTITY_RATE, 2, 8 * FLAC_BLOCK),
    );
    let output = separate_with(Some(&fixture(IDENTITY)), &[&path], &out, &[]);
    assert_success(&output);
    let target = read_wav(&out.join("song").join("target.wav"));
    assert_shape(&target, IDENTITY_RATE, &input);
    let err = max_abs_diff(&target.channels, &input);
    assert!(err < 1e-4, "target differs from the FLAC input by {err}");
}

#[test]
fn other_rates_keep_their_rate_length_and_channels() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cases = [
        ("cd.wav", 44_100, 2, Encoding::Int16),
        ("dat.wav", 48_000, 1, Encoding::Int24),
    ];
    let mut inputs = Vec::new();
    let mut stored = Vec::new();
    for (name, rate, channels, encoding) in cases {
        let path = dir.path().join(name);
        let signal = test_signal(rate, channels, rate as usize + 321);
        stored.push(write_wav(&path, rate, encoding, &signal));
        inputs.push(path);
    }
    let input_refs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    let output = separate_with(Some(&fixture(IDENTITY)), &input_refs, &out, &[]);
    assert_success(&output);
    for ((name, rate, ..), input) in cases.iter().zip(&stored) {
        let track = out.join(Path::new(name).file_stem().unwrap());
        let target = read_wav(&track.join("target.wav"));
        let rest = read_wav(&track.join("rest.wav"));
        assert_shape(&target, *rate, input);
        assert_shape(&rest, *rate, input);
        // Through a 16 kHz model the content (all below 4 kHz, faded at both ends) survives
        // resampling both ways up to the resamplers' ripple, and is where it belongs in time.
        let err = max_abs_diff(&target.channels, input);
        assert!(err < 5e-3, "{name}: target differs from the input by {err}");
    }
}

#[test]
fn default_model_stems_sum_to_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("mix.wav");
    let input = write_wav(
        &path,
        44_100,
        Encoding::Float32,
        &test_signal(44_100, 2, 100_000),
    );
    let output = separate_with(None, &[&path], &out, &[]);
    assert_success(&output);
    let track = out.join("mix");
    let stems = names_in(&track);
    assert!(stems.len() >= 2, "expected several stems, got {stems:?}");
    let mut sum: Vec<Vec<f32>> = input.iter().map(|c| vec![0.0; c.len()]).collect();
    for name in &stems {
        assert!(name.ends_with(".wav"), "unexpected file {name}");
        let stem = read_wav(&track.join(name));
        assert_shape(&stem, 44_100, &input);
        for (acc, channel) in sum.iter_mut().zip(&stem.channels) {
            for (a, x) in acc.iter_mut().zip(channel) {
                *a += x;
            }
        }
    }
    let err = max_abs_diff(&sum, &input);
    assert!(err < 1e-4, "stems sum to the input up to {err}");
}

#[test]
fn stems_option_writes_only_the_chosen_stems() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("a.wav");
    write_wav(
        &path,
        IDENTITY_RATE,
        Encoding::Int16,
        &test_signal(IDENTITY_RATE, 2, 5_000),
    );
    let output = separate_with(
        Some(&fixture(IDENTITY)),
        &[&path],
        &out,
        &["--stems", "rest"],
    );
    assert_success(&output);
    assert_eq!(names_in(&out.join("a")), ["rest.wav"]);

    let output = separate_with(
        Some(&fixture(IDENTITY)),
        &[&path],
        &out,
        &["--stems", "vocals"],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("'vocals'") && text.contains("target, rest"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(names_in(&out.join("a")), ["rest.wav"]);
}

#[test]
fn existing_output_is_refused_without_force_and_replaced_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = dir.path().join("take.wav");
    let input = write_wav(
        &path,
        IDENTITY_RATE,
        Encoding::Float32,
        &test_signal(IDENTITY_RATE, 2, 8_000),
    );
    let track = out.join("take");
    std::fs::create_dir_all(&track).unwrap();
    let existing = track.join("target.wav");
    std::fs::write(&existing, b"my earlier work").unwrap();

    let output = separate_with(Some(&fixture(IDENTITY)), &[&path], &out, &[]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains(&existing.display().to_string()), "{text}");
    assert!(text.contains("--force"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"my earlier work");
    assert_eq!(
        names_in(&track),
        ["target.wav"],
        "nothing else may be written"
    );

    let output = separate_with(Some(&fixture(IDENTITY)), &[&path], &out, &["--force"]);
    assert_success(&output);
    assert_eq!(names_in(&track), ["rest.wav", "target.wav"]);
    let target = read_wav(&existing);
    assert!(max_abs_diff(&target.channels, &input) < 1e-4);
}
