//! Provisioning the ONNX Runtime shared library from PyPI's `onnxruntime` wheel.
//!
//! The `ort` crate is built with `load-dynamic`, so Demix needs `libonnxruntime.so` at run time.
//! The only place it can come from here is a package registry: PyPI's `onnxruntime` wheel ships
//! the library in `onnxruntime/capi/`. `pip download` fetches the wheel (without installing
//! anything) and the library is extracted to `target/onnxruntime/lib/libonnxruntime.so`, next to a
//! stamp file holding the version, so later runs skip all of it.

use crate::{apt, workspace};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The ONNX Runtime release Demix runs on. It must match the `ort` crate of `demix-models`
/// (`=2.0.0-rc.10`, built for ONNX Runtime 1.22).
pub const ORT_VERSION: &str = "1.22.1";

/// File name of the provisioned library (and of its copies inside plugin bundles).
pub const LIB_NAME: &str = "libonnxruntime.so";

const STAMP_NAME: &str = "onnxruntime.version";

/// Where the wheel and the extracted library live below the target folder.
struct Layout {
    wheel_dir: PathBuf,
    lib_dir: PathBuf,
}

impl Layout {
    fn new(target_dir: &Path) -> Self {
        let root = target_dir.join("onnxruntime");
        Layout {
            wheel_dir: root.join("wheel"),
            lib_dir: root.join("lib"),
        }
    }

    fn lib(&self) -> PathBuf {
        self.lib_dir.join(LIB_NAME)
    }

    fn stamp(&self) -> PathBuf {
        self.lib_dir.join(STAMP_NAME)
    }
}

/// Makes sure `<target_dir>/onnxruntime/lib/libonnxruntime.so` holds ONNX Runtime
/// [`ORT_VERSION`], downloading and extracting it when missing or of another version, and
/// returns its absolute path (the value for `ORT_DYLIB_PATH`).
pub fn provision(target_dir: &Path) -> Result<PathBuf> {
    let layout = Layout::new(target_dir);
    if is_current(&layout) {
        println!(
            "ONNX Runtime {ORT_VERSION} already provisioned: {}",
            layout.lib().display()
        );
        return Ok(layout.lib());
    }
    if std::env::consts::OS != "linux" {
        bail!(
            "provisioning ONNX Runtime is only automated on Linux; install ONNX Runtime \
             {ORT_VERSION} yourself and point ORT_DYLIB_PATH at its library"
        );
    }
    let wheel = match find_wheel(&layout.wheel_dir)? {
        Some(wheel) => wheel,
        None => download_wheel(&layout.wheel_dir)?,
    };
    if let Err(err) = install_from_wheel(&wheel, &layout) {
        println!(
            "Could not use {} ({err:#}); downloading it again",
            wheel.display()
        );
        std::fs::remove_file(&wheel)
            .with_context(|| format!("could not remove {}", wheel.display()))?;
        let wheel = download_wheel(&layout.wheel_dir)?;
        install_from_wheel(&wheel, &layout)?;
    }
    println!(
        "ONNX Runtime {ORT_VERSION} provisioned: {}",
        layout.lib().display()
    );
    Ok(layout.lib())
}

/// Whether the library is present and the stamp names [`ORT_VERSION`].
fn is_current(layout: &Layout) -> bool {
    layout.lib().is_file()
        && std::fs::read_to_string(layout.stamp()).is_ok_and(|stamp| stamp.trim() == ORT_VERSION)
}

/// The manylinux platform tag of this machine's wheels; pip also accepts older manylinux tags.
fn platform_tag() -> Result<String> {
    match std::env::consts::ARCH {
        arch @ ("x86_64" | "aarch64") => Ok(format!("manylinux_2_28_{arch}")),
        arch => bail!("PyPI has no ONNX Runtime wheel for the {arch} architecture"),
    }
}

/// A wheel of [`ORT_VERSION`] for this architecture already in `wheel_dir`, if any.
fn find_wheel(wheel_dir: &Path) -> Result<Option<PathBuf>> {
    let entries = match std::fs::read_dir(wheel_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).context(format!("could not list {}", wheel_dir.display())),
    };
    let mut names: Vec<String> = entries
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| is_wheel_for(name, ORT_VERSION, std::env::consts::ARCH))
        .collect();
    names.sort();
    Ok(names.first().map(|name| wheel_dir.join(name)))
}

/// Whether `file_name` is an `onnxruntime` wheel of `version` for `arch`.
fn is_wheel_for(file_name: &str, version: &str, arch: &str) -> bool {
    file_name.starts_with(&format!("onnxruntime-{version}-"))
        && file_name.ends_with(&format!("_{arch}.whl"))
}

/// Runs `pip download` for the `onnxruntime` wheel and returns the downloaded file.
fn download_wheel(wheel_dir: &Path) -> Result<PathBuf> {
    ensure_pip()?;
    std::fs::create_dir_all(wheel_dir)
        .with_context(|| format!("could not create {}", wheel_dir.display()))?;
    let mut command = Command::new("python3");
    command
        .args(["-m", "pip", "download"])
        .arg(format!("onnxruntime=={ORT_VERSION}"))
        .args(["--no-deps", "--only-binary=:all:", "--no-input"])
        .args(["--python-version", "311", "--implementation", "cp"])
        .arg("--platform")
        .arg(platform_tag()?)
        .arg("-d")
        .arg(wheel_dir)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    workspace::run(&mut command)?;
    find_wheel(wheel_dir)?.with_context(|| {
        format!(
            "pip finished but no onnxruntime {ORT_VERSION} wheel is in {}",
            wheel_dir.display()
        )
    })
}

/// Makes `python3 -m pip` usable, installing Debian's `python3-pip` when it is not.
fn ensure_pip() -> Result<()> {
    if pip_works() {
        return Ok(());
    }
    println!("`python3 -m pip` is not available; it is needed to fetch ONNX Runtime from PyPI");
    apt::ensure(&["python3-pip"])?;
    if !pip_works() {
        bail!("`python3 -m pip` still does not work after installing python3-pip");
    }
    Ok(())
}

fn pip_works() -> bool {
    Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Extracts the library from `wheel` into the layout's lib folder and writes the stamp, each
/// through a temporary file and a rename so that an interrupted run leaves nothing half-written.
fn install_from_wheel(wheel: &Path, layout: &Layout) -> Result<()> {
    std::fs::create_dir_all(&layout.lib_dir)
        .with_context(|| format!("could not create {}", layout.lib_dir.display()))?;
    let file = File::open(wheel).with_context(|| format!("could not open {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a readable wheel (zip)", wheel.display()))?;
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|name| name.ok().map(|name| name.into_owned()))
        .collect();
    let entry = library_entry(&names, ORT_VERSION)
        .with_context(|| format!("{} holds no onnxruntime/capi/{LIB_NAME}*", wheel.display()))?
        .to_owned();
    let mut temp = tempfile::NamedTempFile::new_in(&layout.lib_dir)?;
    let mut source = archive
        .by_name(&entry)
        .with_context(|| format!("could not read {entry} from {}", wheel.display()))?;
    std::io::copy(&mut source, temp.as_file_mut())
        .with_context(|| format!("could not extract {entry} from {}", wheel.display()))?;
    drop(source);
    check_elf(temp.path())?;
    workspace::persist(temp, &layout.lib(), 0o755)?;

    let mut stamp = tempfile::NamedTempFile::new_in(&layout.lib_dir)?;
    writeln!(stamp, "{ORT_VERSION}")?;
    workspace::persist(stamp, &layout.stamp(), 0o644)
}

/// The wheel entry holding the main library: `onnxruntime/capi/libonnxruntime.so.<version>`,
/// or failing that any `onnxruntime/capi/libonnxruntime.so*` (never the providers library).
fn library_entry<'a>(names: &'a [String], version: &str) -> Option<&'a str> {
    let prefix = format!("onnxruntime/capi/{LIB_NAME}");
    let exact = format!("{prefix}.{version}");
    names
        .iter()
        .find(|name| **name == exact)
        .or_else(|| names.iter().find(|name| name.starts_with(&prefix)))
        .map(String::as_str)
}

/// Fails unless `path` starts with the ELF magic number.
fn check_elf(path: &Path) -> Result<()> {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .with_context(|| format!("could not read {}", path.display()))?;
    if magic != *b"\x7fELF" {
        bail!("the extracted {LIB_NAME} is not an ELF shared library");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    const FAKE_LIB: &[u8] = b"\x7fELF fake onnxruntime";

    fn write_wheel(path: &Path, entries: &[(&str, &[u8])]) {
        let mut writer = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, data) in entries {
            writer
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
    }

    #[test]
    fn the_versioned_library_is_preferred_over_other_capi_files() {
        let names: Vec<String> = [
            "onnxruntime/capi/libonnxruntime_providers_shared.so",
            "onnxruntime/capi/onnxruntime_pybind11_state.cpython-311-x86_64-linux-gnu.so",
            "onnxruntime/capi/libonnxruntime.so.1.22.1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            library_entry(&names, "1.22.1"),
            Some("onnxruntime/capi/libonnxruntime.so.1.22.1")
        );
        assert_eq!(
            library_entry(&names[..2], "1.22.1"),
            None,
            "the providers library is not the runtime"
        );
        let unversioned = vec!["onnxruntime/capi/libonnxruntime.so".to_owned()];
        assert_eq!(
            library_entry(&unversioned, "1.22.1"),
            Some("onnxruntime/capi/libonnxruntime.so")
        );
    }

    #[test]
    fn wheel_names_match_version_and_architecture() {
        let name = "onnxruntime-1.22.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl";
        assert!(is_wheel_for(name, "1.22.1", "x86_64"));
        assert!(!is_wheel_for(name, "1.22.0", "x86_64"));
        assert!(!is_wheel_for(name, "1.22.1", "aarch64"));
        assert!(!is_wheel_for(
            "onnxruntime_gpu-1.22.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "1.22.1",
            "x86_64"
        ));
    }

    #[test]
    fn install_extracts_the_library_and_stamps_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let wheel = dir.path().join("onnxruntime.whl");
        write_wheel(
            &wheel,
            &[
                ("onnxruntime/__init__.py", b"".as_slice()),
                (
                    "onnxruntime/capi/libonnxruntime_providers_shared.so",
                    b"\x7fELF providers",
                ),
                ("onnxruntime/capi/libonnxruntime.so.1.22.1", FAKE_LIB),
            ],
        );
        assert!(!is_current(&layout));
        install_from_wheel(&wheel, &layout).unwrap();
        assert_eq!(std::fs::read(layout.lib()).unwrap(), FAKE_LIB);
        assert!(is_current(&layout));

        std::fs::write(layout.stamp(), "1.21.0\n").unwrap();
        assert!(!is_current(&layout), "a stamp of another version is stale");
    }

    #[test]
    fn a_wheel_without_the_library_or_with_a_non_elf_library_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let wheel = dir.path().join("empty.whl");
        write_wheel(&wheel, &[("onnxruntime/__init__.py", b"".as_slice())]);
        let err = install_from_wheel(&wheel, &layout).unwrap_err();
        assert!(format!("{err:#}").contains("holds no"), "{err:#}");

        write_wheel(
            &wheel,
            &[(
                "onnxruntime/capi/libonnxruntime.so.1.22.1",
                b"not a library".as_slice(),
            )],
        );
        let err = install_from_wheel(&wheel, &layout).unwrap_err();
        assert!(format!("{err:#}").contains("not an ELF"), "{err:#}");
        assert!(
            !layout.lib().exists(),
            "nothing half-written is left behind"
        );
        assert!(!is_current(&layout));

        std::fs::write(&wheel, b"truncated download").unwrap();
        let err = install_from_wheel(&wheel, &layout).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a readable wheel"),
            "{err:#}"
        );
    }

    #[test]
    fn an_existing_wheel_of_the_pinned_version_is_found() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_wheel(&dir.path().join("absent")).unwrap(), None);
        let arch = std::env::consts::ARCH;
        let other = format!("onnxruntime-1.19.2-cp311-cp311-manylinux_2_27_{arch}.whl");
        std::fs::write(dir.path().join(&other), b"").unwrap();
        assert_eq!(find_wheel(dir.path()).unwrap(), None);
        let pinned = format!("onnxruntime-{ORT_VERSION}-cp311-cp311-manylinux_2_27_{arch}.whl");
        std::fs::write(dir.path().join(&pinned), b"").unwrap();
        assert_eq!(
            find_wheel(dir.path()).unwrap(),
            Some(dir.path().join(pinned))
        );
    }
}
