//! `demix models`: shows the built-in model and the ONNX Runtime library in use;
//! `demix models inspect FILE` describes any model file: what it expects, what the engine will
//! do around it, and the latency it gives.

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use demix_dsp::{EngineConfig, ResultKind};
use demix_models::{LoadOptions, LoadedModel, ModelChoice};

use crate::separate::OFFLINE_SLACK_HOPS;

/// Arguments of `demix models`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// ONNX Runtime shared library to load (default: $ORT_DYLIB_PATH, then the usual places).
    #[arg(long, value_name = "PATH", global = true)]
    ort_library: Option<PathBuf>,
    /// Compute slack, in hops, for the real-time latency shown (default: the engine's default).
    #[arg(long, value_name = "HOPS", global = true)]
    slack: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Describe a model file (.onnx with an embedded or sidecar manifest).
    Inspect {
        /// The model file.
        file: PathBuf,
    },
}

/// Runs `demix models`.
pub fn run(args: Args) -> Result<()> {
    let options = LoadOptions {
        ort_library: args.ort_library.clone(),
        intra_op_threads: 1,
    };
    let slack = args
        .slack
        .unwrap_or(EngineConfig::default().compute_slack_hops);
    match &args.action {
        Some(Action::Inspect { file }) => {
            let loaded = demix_models::load(&ModelChoice::File(file.clone()), &options)
                .map_err(|e| anyhow!("{e}"))?;
            print_model(&loaded, slack);
            Ok(())
        }
        None => {
            println!("Built-in model (used when no --model is given):");
            match demix_models::load(&ModelChoice::EmbeddedDefault, &options) {
                Ok(loaded) => {
                    print_model(&loaded, slack);
                    Ok(())
                }
                Err(e) => Err(anyhow!("{e}")),
            }
        }
    }
}

/// Prints the model's description and how the engine runs it.
fn print_model(loaded: &LoadedModel, slack: usize) {
    println!("{}", demix_models::describe(loaded, slack));
    let spec = loaded.model.spec();
    println!(
        "Engine:       audio at other rates is resampled to {} Hz and back (the resampler \
         delay adds to the latency); {}",
        spec.sample_rate,
        match (spec.result, spec.channels) {
            (ResultKind::Spectrum { .. }, 1) => "it takes mono input only",
            (ResultKind::Spectrum { .. }, _) => "it takes stereo input only",
            (ResultKind::Mask, 1) => {
                "stereo input is downmixed for the model and its masks apply to both channels"
            }
            (ResultKind::Mask, _) => {
                "mono input is fed to both model channels and the masks are averaged"
            }
        }
    );
    if let Some(seconds) = spec.stereo_wiener_s {
        println!(
            "Post-filter:  stereo Wiener filter on stereo input (spatial covariances over \
             {seconds} s, {} EM steps per frame); none on mono input",
            spec.stereo_wiener_em_steps
        );
    }
    println!(
        "Slack:        {slack} hops in real time (--slack), {OFFLINE_SLACK_HOPS} hops in \
         `demix separate` (whose output is trimmed, so latency does not matter there)"
    );
}
