use super::*;
use serde_json::{json, Value};

/// The default model's manifest, as in docs/model-contract.md.
fn default_json() -> Value {
    json!({
        "format_version": 1,
        "name": "demix-default",
        "sample_rate": 44100,
        "n_fft": 2048,
        "hop": 512,
        "window": "hann",
        "channels": 2,
        "sources": ["vocals", "drums", "bass", "other"],
        "input": {"name": "mix", "kind": "magnitude", "bins": 1025},
        "output": {"name": "masks", "kind": "mask"},
        "renormalize_masks": true,
        "streaming": {
            "style": "stateful",
            "lookahead_frames": 2,
            "state": [{"input": "state_in", "output": "state_out", "shape": [1, 1, 256]}]
        }
    })
}

/// An MDX-Net style manifest: complex in and out, cropped bins, windowed.
fn mdx_json() -> Value {
    json!({
        "format_version": 1,
        "name": "mdx",
        "sample_rate": 44100,
        "n_fft": 6144,
        "hop": 1024,
        "window": "hann",
        "channels": 2,
        "sources": ["vocals", "instrumental"],
        "input": {"name": "input", "kind": "complex", "bins": 2048},
        "output": {"name": "output", "kind": "complex", "residual": "instrumental", "scale": 1.021},
        "streaming": {"style": "windowed", "lookahead_frames": 64, "context_frames": 256, "step_frames": 128}
    })
}

fn parse(value: &Value) -> Result<Manifest, ManifestError> {
    Manifest::from_json(&value.to_string())
}

/// Applies `edit` to the default manifest and returns the validation error text.
fn error_after(edit: impl FnOnce(&mut Value)) -> String {
    let mut value = default_json();
    edit(&mut value);
    match parse(&value) {
        Ok(_) => panic!("manifest unexpectedly valid: {value}"),
        Err(e) => e.to_string(),
    }
}

fn assert_error(edit: impl FnOnce(&mut Value), expected: &str) {
    let text = error_after(edit);
    assert!(text.contains(expected), "expected {expected:?} in {text:?}");
}

#[test]
fn the_documented_default_manifest_parses_into_the_engine_spec() {
    let manifest = parse(&default_json()).unwrap();
    let spec = manifest.model_spec().unwrap();
    assert_eq!(spec.sample_rate, 44_100);
    assert_eq!((spec.n_fft, spec.hop, spec.bins), (2048, 512, 1025));
    assert_eq!(spec.window, WindowKind::Hann);
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sources, ["vocals", "drums", "bass", "other"]);
    assert_eq!(spec.features, FeatureKind::Magnitude);
    assert_eq!(spec.result, ResultKind::Mask);
    assert!(spec.renormalize_masks);
    assert_eq!(spec.fallback_source, 3);
    assert_eq!(spec.delay_frames, 2);
    assert_eq!(manifest.context_frames(), 1);
    assert_eq!(manifest.step_frames(), 1);
}

#[test]
fn the_toml_sidecar_form_gives_the_same_manifest() {
    let toml_text = r#"
format_version = 1
name = "demix-default"
sample_rate = 44100
n_fft = 2048
hop = 512
window = "hann"
channels = 2
sources = ["vocals", "drums", "bass", "other"]
renormalize_masks = true

[input]
name = "mix"
kind = "magnitude"
bins = 1025

[output]
name = "masks"
kind = "mask"

[streaming]
style = "stateful"
lookahead_frames = 2

[[streaming.state]]
input = "state_in"
output = "state_out"
shape = [1, 1, 256]
"#;
    let from_toml = Manifest::from_toml(toml_text).unwrap();
    assert_eq!(from_toml, parse(&default_json()).unwrap());
    // And the JSON form round-trips.
    assert_eq!(
        Manifest::from_json(&from_toml.to_json()).unwrap(),
        from_toml
    );
}

#[test]
fn mdx_manifests_give_spectrum_results_with_the_residual_and_windowed_delay() {
    let manifest = parse(&mdx_json()).unwrap();
    let spec = manifest.model_spec().unwrap();
    assert_eq!(spec.features, FeatureKind::Complex);
    assert_eq!(spec.result, ResultKind::Spectrum { residual: Some(1) });
    assert_eq!(spec.bins, 2048);
    // lookahead + step − 1
    assert_eq!(spec.delay_frames, 64 + 128 - 1);
    assert_eq!(manifest.output_scale(), 1.021);
    assert_eq!(manifest.estimated_sources(), [0]);
    assert_eq!(spec.fallback_source, 1);
}

#[test]
fn magnitude_outputs_become_masks_and_defaults_apply() {
    let mut value = default_json();
    value["output"]["kind"] = json!("magnitude");
    value["input"].as_object_mut().unwrap().remove("bins");
    value.as_object_mut().unwrap().remove("renormalize_masks");
    value["fallback_source"] = json!("drums");
    value["window"] = json!("sqrt_hann");
    let spec = parse(&value).unwrap().model_spec().unwrap();
    assert_eq!(spec.result, ResultKind::Mask);
    assert_eq!(spec.bins, 1025);
    assert!(spec.renormalize_masks);
    assert_eq!(spec.fallback_source, 1);
    assert_eq!(spec.window, WindowKind::SqrtHann);
}

#[test]
fn syntax_errors_and_unknown_keys_are_reported_with_their_place() {
    let text = Manifest::from_json("{\"format_version\": 1,")
        .unwrap_err()
        .0;
    assert!(text.starts_with("invalid JSON manifest"), "{text}");
    assert!(text.contains("line 1"), "{text}");
    assert_error(
        |v| v["window_size"] = json!(2048),
        "unknown field `window_size`",
    );
    assert_error(|v| v["input"]["bin"] = json!(10), "unknown field `bin`");
    assert_error(
        |v| v["input"]["kind"] = json!("waveform"),
        "unknown variant `waveform`, expected `magnitude` or `complex`",
    );
    assert_error(
        |v| {
            v.as_object_mut().unwrap().remove("hop");
        },
        "missing field `hop`",
    );
    let toml_error = Manifest::from_toml("name = 3").unwrap_err().0;
    assert!(
        toml_error.starts_with("invalid TOML manifest"),
        "{toml_error}"
    );
}

#[test]
fn each_rule_has_a_precise_message() {
    assert_error(
        |v| v["format_version"] = json!(2),
        "format_version 2 is not supported",
    );
    assert_error(|v| v["name"] = json!("  "), "name must not be empty");
    assert_error(
        |v| v["sample_rate"] = json!(10),
        "sample_rate 10 Hz is outside",
    );
    assert_error(|v| v["n_fft"] = json!(1), "n_fft 1 is outside 2..=65536");
    assert_error(
        |v| v["hop"] = json!(4096),
        "hop 4096 must be within 1..=n_fft (2048)",
    );
    assert_error(
        |v| v["window"] = json!("hamming"),
        "unknown window \"hamming\"",
    );
    // A periodic Hann window is zero at its first sample: no overlap at hop = n_fft.
    assert_error(
        |v| v["hop"] = json!(2048),
        "the hann window of n_fft 2048 cannot be overlap-added at hop 2048",
    );
    assert_error(
        |v| v["channels"] = json!(6),
        "channels must be 1 or 2, got 6",
    );
    assert_error(
        |v| v["sources"] = json!([]),
        "sources must name at least one source",
    );
    assert_error(
        |v| v["sources"] = json!(["a", "b", "a"]),
        "source \"a\" appears twice",
    );
    assert_error(
        |v| v["fallback_source"] = json!("guitar"),
        "fallback_source \"guitar\" is not one of the sources",
    );
    assert_error(
        |v| v["input"]["bins"] = json!(1026),
        "input.bins 1026 must be within 1..=1025 (n_fft 2048 has 1025 bins)",
    );
    assert_error(
        |v| v["input"]["bins"] = json!(0),
        "input.bins 0 must be within",
    );
    assert_error(
        |v| v["output"]["name"] = json!(""),
        "output.name must not be empty",
    );
    assert_error(
        |v| v["output"]["residual"] = json!("other"),
        "output.residual \"other\" only applies to complex outputs, but output.kind is \"mask\"",
    );
    assert_error(
        |v| v["output"]["scale"] = json!(2.0),
        "output.scale 2 only applies to complex outputs",
    );
}

#[test]
fn complex_output_rules() {
    let check = |edit: &dyn Fn(&mut Value), expected: &str| {
        let mut value = mdx_json();
        edit(&mut value);
        let text = parse(&value).unwrap_err().to_string();
        assert!(text.contains(expected), "expected {expected:?} in {text:?}");
    };
    check(
        &|v| v["output"]["residual"] = json!("piano"),
        "output.residual \"piano\" is not one of the sources",
    );
    check(
        &|v| {
            v["sources"] = json!(["instrumental"]);
        },
        "leaves no source for the model to estimate",
    );
    check(
        &|v| v["output"]["scale"] = json!(0.0),
        "output.scale 0 must be finite and non-zero",
    );
}

#[test]
fn streaming_rules() {
    assert_error(
        |v| {
            v["streaming"].as_object_mut().unwrap().remove("state");
        },
        "streaming.style \"stateful\" needs at least one streaming.state entry",
    );
    assert_error(
        |v| v["streaming"]["context_frames"] = json!(8),
        "only apply to windowed models",
    );
    assert_error(
        |v| v["streaming"]["state"][0]["shape"] = json!([1, 0, 256]),
        "streaming.state[0].shape [1, 0, 256] must have at least one dimension",
    );
    assert_error(
        |v| v["streaming"]["state"][0]["input"] = json!("mix"),
        "streaming.state[0].input \"mix\" is already used by another input",
    );
    assert_error(
        |v| v["streaming"]["state"][0]["shape"] = json!([4096, 4096, 4]),
        "holds 67108864 values",
    );
    assert_error(
        |v| v["streaming"]["lookahead_frames"] = json!(5000),
        "streaming.lookahead_frames 5000 is too large: the model would delay the output by 58.0 s",
    );
    let windowed = |v: &mut Value| {
        v["streaming"] = json!({"style": "windowed", "lookahead_frames": 1,
                                "context_frames": 8, "step_frames": 2});
    };
    let mut ok = default_json();
    windowed(&mut ok);
    assert_eq!(parse(&ok).unwrap().delay_frames(), 2);
    assert_error(
        |v| {
            windowed(v);
            v["streaming"]["lookahead_frames"] = json!(7);
        },
        "streaming.lookahead_frames 7 is too large: with step_frames 2 a window of context_frames 8 holds at most lookahead 6",
    );
    assert_error(
        |v| {
            windowed(v);
            v["streaming"]
                .as_object_mut()
                .unwrap()
                .remove("step_frames");
        },
        "needs streaming.step_frames",
    );
    assert_error(
        |v| {
            windowed(v);
            v["streaming"]
                .as_object_mut()
                .unwrap()
                .remove("context_frames");
        },
        "needs streaming.context_frames",
    );
    assert_error(
        |v| {
            windowed(v);
            v["streaming"]["step_frames"] = json!(0);
        },
        "must be at least 1",
    );
    assert_error(
        |v| {
            windowed(v);
            v["streaming"]["state"] = default_json()["streaming"]["state"].clone();
        },
        "streaming.state only applies to stateful models",
    );
    assert_error(
        |v| {
            windowed(v);
            v["streaming"]["context_frames"] = json!(100_000);
        },
        "streaming.context_frames 100000 spans 1161.0 s of audio",
    );
}

#[test]
fn stereo_wiener_reaches_the_spec_and_its_rules_have_precise_messages() {
    let mut value = default_json();
    value["stereo_wiener"] = json!({"time_constant_s": 5.8});
    let spec = parse(&value).unwrap().model_spec().unwrap();
    assert_eq!(spec.stereo_wiener_s, Some(5.8));
    assert_eq!(spec.stereo_wiener_em_steps, 0);
    value["stereo_wiener"] = json!({"time_constant_s": 2.3, "em_steps": 2});
    let spec = parse(&value).unwrap().model_spec().unwrap();
    assert_eq!(
        (spec.stereo_wiener_s, spec.stereo_wiener_em_steps),
        (Some(2.3), 2)
    );
    assert_error(
        |v| v["stereo_wiener"] = json!({"time_constant_s": 1.0, "em_steps": 9}),
        "stereo_wiener.em_steps 9 must be at most 8",
    );
    assert_error(
        |v| v["stereo_wiener"] = json!({"time_constant_s": 1.0, "em_steps": -1}),
        "integer `-1`, expected usize",
    );
    assert_eq!(
        parse(&default_json())
            .unwrap()
            .model_spec()
            .unwrap()
            .stereo_wiener_s,
        None
    );
    for bad in [0.0, -1.0, 601.0] {
        assert_error(
            |v| v["stereo_wiener"] = json!({"time_constant_s": bad}),
            "stereo_wiener.time_constant_s",
        );
    }
    assert_error(
        |v| v["stereo_wiener"] = json!({"time_constant_s": 1.0, "iterations": 2}),
        "unknown field `iterations`",
    );
    assert_error(
        |v| {
            v["stereo_wiener"] = json!({"time_constant_s": 1.0});
            v["channels"] = json!(1);
        },
        "stereo_wiener needs a stereo model",
    );
    let mut mdx = mdx_json();
    mdx["stereo_wiener"] = json!({"time_constant_s": 1.0});
    let text = parse(&mdx).unwrap_err().to_string();
    assert!(text.contains("not complex"), "{text}");
}
