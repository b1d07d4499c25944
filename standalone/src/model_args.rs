//! Command-line options shared by every subcommand that runs a model (`separate`, `bench`,
//! `live`): which model file, which ONNX Runtime library, how many inference threads.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use demix_models::{LoadOptions, LoadedModel, ModelChoice};

/// Model selection options, flattened into a subcommand's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model file (.onnx with an embedded manifest or a sidecar <model>.demix.toml);
    /// default: the built-in model.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// ONNX Runtime shared library (libonnxruntime.so / .dylib / onnxruntime.dll) to load;
    /// default: the first usable one of $ORT_DYLIB_PATH, demix's own folder,
    /// target/onnxruntime/lib of the source tree and an installed Python onnxruntime.
    #[arg(long, value_name = "PATH")]
    pub ort_library: Option<PathBuf>,
    /// Threads ONNX Runtime may use within one inference call.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
}

impl ModelArgs {
    /// Loads the chosen model. Not real-time safe (reads files, loads a library).
    pub fn load(&self) -> Result<LoadedModel> {
        let choice = match &self.model {
            Some(path) => ModelChoice::File(path.clone()),
            None => ModelChoice::EmbeddedDefault,
        };
        let options = LoadOptions {
            ort_library: self.ort_library.clone(),
            intra_op_threads: usize::from(self.threads),
        };
        let loaded = demix_models::load(&choice, &options).map_err(|e| anyhow!("{e}"))?;
        if self.ort_library.is_none() {
            warn_if_env_library_skipped(&loaded.runtime.library);
        }
        Ok(loaded)
    }
}

/// The runtime search moves on when `ORT_DYLIB_PATH` names an unusable library; say so, since
/// the user asked for that library explicitly.
fn warn_if_env_library_skipped(used: &Path) {
    let Some(requested) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) else {
        return;
    };
    let requested = PathBuf::from(requested);
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if !same(&requested, used) {
        let reason = demix_models::runtime::probe(&requested)
            .err()
            .unwrap_or_else(|| "not chosen".into());
        eprintln!(
            "warning: ORT_DYLIB_PATH={} is not usable ({reason}); using {} instead",
            requested.display(),
            used.display()
        );
    }
}
