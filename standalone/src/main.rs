//! `demix`: the Demix command line. One module per subcommand; every failure is reported as one
//! `error: …` paragraph on stderr with exit code 1 (usage errors: 2, from clap).

mod audio_in;
mod audio_out;
mod bench;
mod devices;
mod live;
mod model_args;
mod models;
mod separate;
mod signal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Real-time music source separation: split songs into stems (vocals, drums, bass, other).
#[derive(Debug, Parser)]
#[command(name = "demix", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Separate audio files into stems, written as WAV files.
    Separate(separate::Args),
    /// List the built-in model and the ONNX Runtime in use, or inspect a model file.
    Models(models::Args),
    /// Measure separation speed offline and per-block timing in simulated real time.
    Bench(bench::Args),
    /// Separate an audio input live and play the remixed stems (ALSA or JACK).
    Live(live::Args),
    /// List audio hosts, devices and the configurations they support.
    Devices(devices::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Separate(args) => separate::run(args),
        Command::Models(args) => models::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Live(args) => live::run(args),
        Command::Devices(args) => devices::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
