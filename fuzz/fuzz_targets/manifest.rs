//! Model manifests from untrusted files: the first byte picks the embedded JSON form, the TOML
//! sidecar form or a whole `.onnx` file (read with `onnx_file::inspect`, whose embedded manifest
//! is then parsed). Parsing never panics, and an accepted manifest always converts to a
//! consistent `ModelSpec`, survives a JSON round trip, and builds an engine or reports why not.
#![no_main]

use demix_dsp::reference_models::FixedMaskModel;
use demix_dsp::{DeadlinePolicy, Engine, EngineConfig, ResultKind};
use demix_models::manifest::METADATA_KEY;
use demix_models::{onnx_file, Manifest};
use libfuzzer_sys::fuzz_target;

/// Result values per frame above which the harness skips building an engine: large but valid
/// models (many sources at the largest FFT) are legal and only cost memory, not correctness.
const MAX_ENGINE_VALUES: usize = 1 << 18;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let parsed = match mode % 3 {
        0 => Manifest::from_json(&String::from_utf8_lossy(bytes)),
        1 => Manifest::from_toml(&String::from_utf8_lossy(bytes)),
        _ => {
            let Ok(info) = onnx_file::inspect(bytes) else {
                return;
            };
            let Some(json) = info.metadata_value(METADATA_KEY) else {
                return;
            };
            Manifest::from_json(json)
        }
    };
    let Ok(manifest) = parsed else {
        return;
    };
    let spec = manifest
        .model_spec()
        .expect("a manifest that validates must convert to a ModelSpec");
    spec.validate()
        .expect("the ModelSpec of a valid manifest must itself be valid");
    let again = Manifest::from_json(&manifest.to_json())
        .expect("a valid manifest must parse again from its own JSON");
    assert_eq!(again, manifest, "JSON round trip changed the manifest");
    // `FixedMaskModel` emits masks, so only mask models are driven through an engine.
    if spec.result == ResultKind::Mask && spec.result_len() <= MAX_ENGINE_VALUES {
        let model = FixedMaskModel::identity(spec.clone(), spec.fallback_source);
        let config = EngineConfig {
            compute_slack_hops: 2,
            deadline: DeadlinePolicy::Wait,
        };
        if let Ok(mut engine) = Engine::new(Box::new(model), config) {
            let input = vec![0.25f32; spec.hop * 2];
            let inputs: Vec<&[f32]> = (0..engine.channels()).map(|_| &input[..]).collect();
            let mut outs = vec![vec![0.0f32; input.len()]; engine.channels() * engine.sources()];
            let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
            engine.process(&inputs, &mut out_refs);
            assert!(outs.iter().flatten().all(|x| x.is_finite()));
        }
    }
});
