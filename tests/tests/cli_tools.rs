//! End-to-end: `demix models`, `demix models inspect` and `demix bench` run, say what they
//! should, and fail cleanly on a bad model. (Bench numbers are reported, never asserted.)

mod cli_common;

use cli_common::*;

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn models_lists_the_built_in_model_and_the_runtime() {
    let output = demix().arg("models").output().unwrap();
    assert_success(&output);
    let text = stdout(&output);
    for needle in [
        "Built-in model",
        "embedded default",
        "Sources:",
        "Latency:",
        "ONNX Runtime",
        "Post-filter:  stereo Wiener filter",
    ] {
        assert!(text.contains(needle), "'{needle}' missing:\n{text}");
    }
}

#[test]
fn models_inspect_describes_a_fixture() {
    let output = demix()
        .args(["models", "inspect"])
        .arg(fixture("identity_stateful.onnx"))
        .output()
        .unwrap();
    assert_success(&output);
    let text = stdout(&output);
    // 16 kHz, n_fft 64, hop 16, lookahead 2, slack 2: 63 + 16 · 4 = 127 samples.
    for needle in [
        "16000 Hz",
        "target, rest",
        "stateful",
        "127 samples",
        "resampled",
    ] {
        assert!(text.contains(needle), "'{needle}' missing:\n{text}");
    }
}

#[test]
fn models_inspect_rejects_a_contradictory_model() {
    let output = demix()
        .args(["models", "inspect"])
        .arg(fixture("bad_bins.onnx"))
        .output()
        .unwrap();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("bad_bins.onnx") && text.contains("`mix`"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn bench_prints_both_measurements() {
    let output = demix()
        .args(["bench", "--seconds", "0.5", "--model"])
        .arg(fixture("identity_stateful.onnx"))
        .output()
        .unwrap();
    assert_success(&output);
    let text = stdout(&output);
    for needle in [
        "x real time",
        "p50",
        "p99.9",
        "max",
        "deadline misses",
        "worker CPU",
        "latency",
    ] {
        assert!(text.contains(needle), "'{needle}' missing:\n{text}");
    }
}
