//! `cargo xtask`: Demix's developer entry points.
//!
//! - `cargo xtask demo`: set the machine up, build `demix` and separate a short generated clip
//!   with the embedded default model.
//! - `cargo xtask test`: set the machine up, bundle the plugin and run every test of the
//!   workspace.
//! - `cargo xtask provision-ort`: fetch the ONNX Runtime library from PyPI into
//!   `target/onnxruntime/lib/`.
//! - `cargo xtask bundle <package> [--release]`: build VST3/CLAP bundles into `target/bundled/`
//!   with the ONNX Runtime library beside the plugin.
//!
//! None of this runs on an audio thread; it is build tooling and may block, allocate and print.

mod apt;
mod bundle;
mod clip;
mod demo;
mod ort;
mod suite;
mod workspace;

use std::process::ExitCode;

const USAGE: &str = "\
Usage:
  cargo xtask demo                          separate a short generated clip with the default model
  cargo xtask test                          install what the tests need and run all of them
  cargo xtask provision-ort                 fetch the ONNX Runtime library into target/onnxruntime/lib
  cargo xtask bundle <package> [--release]  build plugin bundles into target/bundled
                                            (any other `cargo build` option is passed on)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("demo") if rest.is_empty() => demo::run(),
        Some("test") if rest.is_empty() => suite::run(),
        Some("provision-ort") if rest.is_empty() => {
            ort::provision(&workspace::target_dir()).map(|lib| {
                println!("ONNX Runtime library: {}", lib.display());
                println!("Use it with: export ORT_DYLIB_PATH={}", lib.display());
            })
        }
        Some("bundle") => bundle::run(rest),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown command or arguments: `{}`\n\n{USAGE}",
            std::iter::once(other.to_owned())
                .chain(rest)
                .collect::<Vec<_>>()
                .join(" ")
        )),
        None => Err(anyhow::anyhow!("no command given\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nxtask failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}
