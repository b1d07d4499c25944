//! Demix model runtime: the model contract ([`manifest`]), ONNX Runtime loading ([`runtime`])
//! and [`onnx::OnnxModel`], the [`SeparationModel`] the CLI and the plugin run.
//!
//! Everything here is set-up work or inference-worker work: nothing is real-time safe, and none
//! of it runs on the audio thread. [`load`] is the entry point:
//!
//! ```no_run
//! use demix_models::{load, LoadOptions, ModelChoice};
//! let loaded = load(&ModelChoice::EmbeddedDefault, &LoadOptions::default())?;
//! println!("{}", demix_models::describe(&loaded, 2));
//! # Ok::<(), demix_models::LoadError>(())
//! ```
//!
//! A model file's manifest comes from a sidecar `<stem>.demix.toml` or `<file name>.demix.toml`
//! next to it when one exists (the sidecar wins over a manifest embedded in the file, so a
//! third-party model can be described, or an embedded manifest corrected, without editing the
//! `.onnx`), otherwise from the file's `demix.manifest` metadata. Two sidecars for one model
//! are refused as ambiguous.

#![warn(missing_docs)]

pub mod manifest;
pub mod onnx;
pub mod onnx_file;
pub mod runtime;

use std::path::{Path, PathBuf};

use demix_dsp::SeparationModel;

pub use manifest::{Manifest, ManifestError};
pub use onnx::{GraphInfo, OnnxModel, TensorInfo};
pub use runtime::{OrtRuntime, RuntimeError};

/// The shipped default model (stereo, four sources, stateful), compiled into the binary.
pub static EMBEDDED_DEFAULT: &[u8] = include_bytes!("../default.onnx");

/// Which model to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// The model compiled into the binary ([`EMBEDDED_DEFAULT`]).
    EmbeddedDefault,
    /// An `.onnx` file (with an embedded manifest or a sidecar `.demix.toml`).
    File(PathBuf),
}

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// The ONNX Runtime library to use instead of searching for one (see [`runtime`]).
    pub ort_library: Option<PathBuf>,
    /// Threads ONNX Runtime may use inside one operator (at least 1; default 1, which keeps
    /// the inference worker on one core next to the audio thread).
    pub intra_op_threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            ort_library: None,
            intra_op_threads: 1,
        }
    }
}

/// A model ready to hand to `demix_dsp::Engine::new`, with what is known about it.
pub struct LoadedModel {
    /// The model, for the engine.
    pub model: Box<dyn SeparationModel>,
    /// Its manifest.
    pub manifest: Manifest,
    /// `"embedded default"` or the file's path.
    pub origin: String,
    /// Where the manifest came from: `"embedded metadata"` or the sidecar's path.
    pub manifest_origin: String,
    /// The graph's inputs and outputs as ONNX Runtime reports them.
    pub graph: GraphInfo,
    /// Number of weights (initializer elements) in the graph.
    pub parameters: u64,
    /// The ONNX Runtime library in use.
    pub runtime: OrtRuntime,
}

/// Why a model could not be loaded. Every message names the model (its path, or the embedded
/// default) and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// ONNX Runtime is not available.
    #[error("cannot run model {origin}: {source}")]
    Runtime {
        /// The model.
        origin: String,
        /// What went wrong while looking for ONNX Runtime.
        #[source]
        source: RuntimeError,
    },
    /// The model or its sidecar could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an ONNX model.
    #[error("{origin} is not an ONNX model: {reason}")]
    NotOnnx {
        /// The model.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// ONNX Runtime refused the graph (damaged file, unsupported operator or opset).
    #[error("ONNX Runtime cannot load model {origin}: {reason}")]
    Corrupt {
        /// The model.
        origin: String,
        /// ONNX Runtime's message.
        reason: String,
    },
    /// The manifest is missing or breaks a rule of the contract.
    #[error("model {origin}: {reason}")]
    Manifest {
        /// The model.
        origin: String,
        /// What is missing or wrong, naming the manifest's location and key.
        reason: String,
    },
    /// A graph tensor does not match what the manifest declares.
    #[error("model {origin}: tensor `{tensor}` does not match the manifest: expected {expected}, the graph has {actual}")]
    ShapeMismatch {
        /// The model.
        origin: String,
        /// The tensor's name.
        tensor: String,
        /// What the manifest implies.
        expected: String,
        /// What the graph has.
        actual: String,
    },
}

/// Loads a model: reads it, finds and validates its manifest, loads ONNX Runtime (once per
/// process), creates the session and checks the graph's tensors against the manifest.
/// Set-up only; never panics.
pub fn load(choice: &ModelChoice, options: &LoadOptions) -> Result<LoadedModel, LoadError> {
    let (bytes, origin, path) = match choice {
        ModelChoice::EmbeddedDefault => (
            std::borrow::Cow::Borrowed(EMBEDDED_DEFAULT),
            "embedded default".to_string(),
            None,
        ),
        ModelChoice::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            (
                std::borrow::Cow::Owned(bytes),
                path.display().to_string(),
                Some(path.as_path()),
            )
        }
    };
    let info = onnx_file::inspect(&bytes).map_err(|reason| LoadError::NotOnnx {
        origin: origin.clone(),
        reason,
    })?;
    let (manifest, manifest_origin) = find_manifest(&info, path, &origin)?;
    let runtime = runtime::initialise(options.ort_library.as_deref())
        .map_err(|source| LoadError::Runtime {
            origin: origin.clone(),
            source,
        })?
        .clone();
    let source = match path {
        Some(path) => onnx::GraphSource::File(path),
        None => onnx::GraphSource::Memory(&bytes),
    };
    let session = onnx::build_session(source, options.intra_op_threads).map_err(|reason| {
        LoadError::Corrupt {
            origin: origin.clone(),
            reason,
        }
    })?;
    let graph = GraphInfo::of(&session);
    let model = OnnxModel::new(session, &manifest).map_err(|e| match e {
        onnx::BuildError::Manifest(e) => LoadError::Manifest {
            origin: origin.clone(),
            reason: format!("manifest ({manifest_origin}): {e}"),
        },
        onnx::BuildError::Graph(m) => LoadError::ShapeMismatch {
            origin: origin.clone(),
            tensor: m.tensor,
            expected: m.expected,
            actual: m.actual,
        },
    })?;
    Ok(LoadedModel {
        model: Box::new(model),
        manifest,
        origin,
        manifest_origin,
        graph,
        parameters: info.parameters,
        runtime,
    })
}

/// The sidecar manifests a model file may have: `<stem>.demix.toml`, `<file name>.demix.toml`.
pub fn sidecar_paths(model: &Path) -> [PathBuf; 2] {
    let mut with_name = model.as_os_str().to_owned();
    with_name.push(".demix.toml");
    [model.with_extension("demix.toml"), PathBuf::from(with_name)]
}

/// Finds the manifest: a sidecar next to `path` first, then the embedded metadata.
fn find_manifest(
    info: &onnx_file::OnnxFileInfo,
    path: Option<&Path>,
    origin: &str,
) -> Result<(Manifest, String), LoadError> {
    let invalid = |reason: String| LoadError::Manifest {
        origin: origin.to_string(),
        reason,
    };
    let sidecars: Vec<PathBuf> = path
        .map(|p| {
            sidecar_paths(p)
                .into_iter()
                .filter(|s| s.is_file())
                .collect()
        })
        .unwrap_or_default();
    if let [first, second] = &sidecars[..] {
        return Err(invalid(format!(
            "two sidecar manifests, {} and {}; keep one",
            first.display(),
            second.display()
        )));
    }
    if let Some(sidecar) = sidecars.first() {
        let text = std::fs::read_to_string(sidecar).map_err(|source| LoadError::Io {
            path: sidecar.clone(),
            source,
        })?;
        let manifest = Manifest::from_toml(&text)
            .map_err(|e| invalid(format!("sidecar manifest {}: {e}", sidecar.display())))?;
        return Ok((manifest, sidecar.display().to_string()));
    }
    let Some(json) = info.metadata_value(manifest::METADATA_KEY) else {
        let sidecar_hint = path
            .map(|p| {
                let [stem, name] = sidecar_paths(p);
                format!(
                    " and there is no sidecar {} or {}",
                    stem.display(),
                    name.display()
                )
            })
            .unwrap_or_default();
        return Err(invalid(format!(
            "no manifest: the file has no `{}` metadata entry{sidecar_hint} (see docs/model-contract.md)",
            manifest::METADATA_KEY
        )));
    };
    let manifest = Manifest::from_json(json).map_err(|e| {
        invalid(format!(
            "embedded manifest (metadata `{}`): {e}",
            manifest::METADATA_KEY
        ))
    })?;
    Ok((manifest, "embedded metadata".to_string()))
}

/// A human-readable description of a loaded model: name, rate, STFT, channels, sources,
/// tensors, streaming style and the latency an engine with `compute_slack_hops` of slack has
/// (`n_fft − 1 + hop · (delay frames + slack)` samples at the model rate).
pub fn describe(loaded: &LoadedModel, compute_slack_hops: usize) -> String {
    let m = &loaded.manifest;
    let spec = loaded.model.spec();
    let delay = spec.delay_frames;
    let latency = spec.n_fft - 1 + spec.hop * (delay + compute_slack_hops);
    let latency_ms = latency as f64 * 1000.0 / f64::from(spec.sample_rate);
    let tensor = |list: &[TensorInfo], name: &str| {
        list.iter()
            .find(|t| t.name == name)
            .map_or_else(|| name.to_string(), |t| t.to_string())
    };
    let mut lines = vec![
        format!("Model:        {} ({})", m.name, loaded.origin),
        format!("Manifest:     {}", loaded.manifest_origin),
        format!("Sample rate:  {} Hz", m.sample_rate),
        format!(
            "STFT:         n_fft {}, hop {}, {} window",
            m.n_fft, m.hop, m.window
        ),
        format!(
            "Channels:     {} ({})",
            m.channels,
            if m.channels == 2 { "stereo" } else { "mono" }
        ),
        format!(
            "Sources:      {} (fallback: {})",
            m.sources.join(", "),
            m.sources[spec.fallback_source]
        ),
        format!(
            "Input:        {} {}, {} of {} bins",
            m.input.kind.name(),
            tensor(&loaded.graph.inputs, &m.input.name),
            spec.bins,
            spec.spectrum_bins()
        ),
    ];
    let mut output = format!(
        "Output:       {} {}",
        m.output.kind.name(),
        tensor(&loaded.graph.outputs, &m.output.name)
    );
    if let Some(residual) = &m.output.residual {
        output.push_str(&format!(", residual source {residual}"));
    }
    if let Some(scale) = m.output.scale {
        output.push_str(&format!(", scale {scale}"));
    }
    if m.output.kind == manifest::OutputKind::Magnitude {
        output.push_str(", turned into ratio masks");
    }
    lines.push(output);
    for state in &m.streaming.state {
        lines.push(format!(
            "State:        {} -> {} {}",
            state.input,
            state.output,
            onnx::shape_text(&state.shape.iter().map(|&d| d as i64).collect::<Vec<_>>())
        ));
    }
    lines.push(match m.streaming.style {
        manifest::StreamingStyle::Stateful => format!(
            "Streaming:    stateful, one frame per call, lookahead {} frames",
            m.streaming.lookahead_frames
        ),
        manifest::StreamingStyle::Windowed => format!(
            "Streaming:    windowed, context {} frames, step {}, lookahead {}",
            m.context_frames(),
            m.step_frames(),
            m.streaming.lookahead_frames
        ),
    });
    lines.push(format!(
        "Latency:      {latency} samples ({latency_ms:.1} ms) = n_fft - 1 + hop x ({delay} model delay + {compute_slack_hops} slack frames)"
    ));
    lines.push(format!("Parameters:   {}", loaded.parameters));
    lines.push(format!("Runtime:      {}", loaded.runtime));
    lines.join("\n")
}

#[cfg(test)]
#[path = "lib_tests.rs"]
mod tests;
