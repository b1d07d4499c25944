//! `cargo xtask bundle`: VST3/CLAP bundles through nice-plug-xtask, with the ONNX Runtime library
//! copied next to the plugin binary so that the plugin loads it without any setup by the user.

use crate::{ort, workspace};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Builds and bundles the packages named in `args` (`<package>` or `-p <a> -p <b>`, then any
/// `cargo build` options such as `--release`) into `target/bundled/`, then copies the
/// provisioned `libonnxruntime.so` into each VST3 bundle and beside each CLAP file.
pub fn run(args: Vec<String>) -> Result<()> {
    let packages = packages(&args)?;
    let target_dir = workspace::target_dir();
    let runtime = ort::provision(&target_dir)?;
    nice_plug_xtask::main_with_args(
        "cargo xtask",
        std::iter::once("bundle".to_owned()).chain(args),
    )?;
    let bundler_toml = workspace::root().join("bundler.toml");
    let config = match std::fs::read_to_string(&bundler_toml) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(err) => {
            return Err(err).with_context(|| format!("could not read {}", bundler_toml.display()))
        }
    };
    for package in &packages {
        let name = bundle_name(&config, package)?;
        let copies = copy_runtime(&runtime, &target_dir.join("bundled"), &name)?;
        if copies.is_empty() {
            println!("No {name} plugin bundle was made, so no ONNX Runtime was copied");
        }
        for copy in copies {
            println!(
                "Copied ONNX Runtime {} to {}",
                ort::ORT_VERSION,
                copy.display()
            );
        }
    }
    Ok(())
}

/// The packages a `bundle` command line names: its first argument, or every `-p <package>` at
/// its start (the same rule as nice-plug-xtask).
fn packages(args: &[String]) -> Result<Vec<String>> {
    let mut packages = Vec::new();
    let mut rest = args;
    while let [flag, package, tail @ ..] = rest {
        if flag != "-p" {
            break;
        }
        packages.push(package.clone());
        rest = tail;
    }
    if packages.is_empty() {
        match args.first() {
            Some(first) if !first.starts_with('-') => packages.push(first.clone()),
            _ => bail!("usage: cargo xtask bundle <package> [--release] (or -p <package> ...)"),
        }
    }
    Ok(packages)
}

/// The bundle name of `package`: `name` under `[package]` in `bundler.toml` (text `config`),
/// else the package name, as nice-plug-xtask decides it.
fn bundle_name(config: &str, package: &str) -> Result<String> {
    let table: toml::Table = toml::from_str(config).context("could not parse bundler.toml")?;
    Ok(table
        .get(package)
        .and_then(|entry| entry.get("name"))
        .and_then(|name| name.as_str())
        .unwrap_or(package)
        .to_owned())
}

/// The VST3 architecture folder (`Contents/<arch>-linux`) of this machine.
fn vst3_arch_dir() -> String {
    let arch = match std::env::consts::ARCH {
        "x86" => "i386",
        other => other,
    };
    format!("{arch}-linux")
}

/// Copies `runtime` into `<bundled>/<name>.vst3/Contents/<arch>-linux/` and, when
/// `<bundled>/<name>.clap` exists, into `<bundled>/`; returns the copies made.
fn copy_runtime(runtime: &Path, bundled: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut folders = Vec::new();
    let vst3 = bundled
        .join(format!("{name}.vst3"))
        .join("Contents")
        .join(vst3_arch_dir());
    if vst3.is_dir() {
        folders.push(vst3);
    }
    if bundled.join(format!("{name}.clap")).is_file() {
        folders.push(bundled.to_path_buf());
    }
    let mut copies = Vec::new();
    for folder in folders {
        let destination = folder.join(ort::LIB_NAME);
        let mut temp = tempfile::NamedTempFile::new_in(&folder)
            .with_context(|| format!("could not write into {}", folder.display()))?;
        let mut source = std::fs::File::open(runtime)
            .with_context(|| format!("could not open {}", runtime.display()))?;
        std::io::copy(&mut source, temp.as_file_mut())
            .with_context(|| format!("could not copy {}", runtime.display()))?;
        workspace::persist(temp, &destination, 0o755)?;
        copies.push(destination);
    }
    Ok(copies)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn packages_are_read_like_nice_plug_xtask_reads_them() {
        assert_eq!(
            packages(&strings(&["demix-plugin", "--release"])).unwrap(),
            ["demix-plugin"]
        );
        assert_eq!(
            packages(&strings(&["-p", "a", "-p", "b", "--release"])).unwrap(),
            ["a", "b"]
        );
        assert!(packages(&strings(&[])).is_err());
        assert!(packages(&strings(&["--release"])).is_err());
    }

    #[test]
    fn bundle_names_come_from_bundler_toml() {
        let config = "[demix-plugin]\nname = \"Demix\"\n";
        assert_eq!(bundle_name(config, "demix-plugin").unwrap(), "Demix");
        assert_eq!(bundle_name(config, "other").unwrap(), "other");
        assert_eq!(bundle_name("", "other").unwrap(), "other");
        assert!(bundle_name("[broken", "other").is_err());
    }

    #[test]
    fn the_shipped_bundler_toml_names_the_plugin_demix() {
        let config = std::fs::read_to_string(workspace::root().join("bundler.toml")).unwrap();
        assert_eq!(bundle_name(&config, "demix-plugin").unwrap(), "Demix");
    }

    #[test]
    fn the_runtime_lands_beside_each_plugin_binary() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("libonnxruntime.so");
        std::fs::write(&runtime, b"runtime").unwrap();
        let bundled = dir.path().join("bundled");
        assert!(copy_runtime(&runtime, &bundled, "Demix")
            .unwrap()
            .is_empty());

        let vst3 = bundled.join("Demix.vst3/Contents").join(vst3_arch_dir());
        std::fs::create_dir_all(&vst3).unwrap();
        std::fs::write(vst3.join("Demix.so"), b"plugin").unwrap();
        std::fs::write(bundled.join("Demix.clap"), b"plugin").unwrap();
        let copies = copy_runtime(&runtime, &bundled, "Demix").unwrap();
        assert_eq!(
            copies,
            [
                vst3.join("libonnxruntime.so"),
                bundled.join("libonnxruntime.so")
            ]
        );
        for copy in copies {
            assert_eq!(std::fs::read(copy).unwrap(), b"runtime");
        }
    }
}
