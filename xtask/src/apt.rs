//! Installing missing Debian/Ubuntu system packages through apt.

use crate::workspace;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};

/// Packages needed to build `demix`: the ALSA and JACK headers of its audio I/O, which the
/// `alsa-sys` and `jack-sys` build scripts find through pkg-config.
pub const BUILD_PACKAGES: &[&str] = &["libasound2-dev", "libjack-jackd2-dev", "pkg-config"];

/// Packages the test suite needs on top of [`BUILD_PACKAGES`]: a JACK server, whose dummy
/// driver stands in for a sound card in the live-mode tests.
pub const TEST_PACKAGES: &[&str] = &["jackd2"];

/// Makes sure every package in `packages` is installed. As root, installs the missing ones with
/// `apt-get install -y` (running `apt-get update` first when the package lists are empty, or when
/// the install fails on stale lists); otherwise fails with the exact `sudo` command to run.
pub fn ensure(packages: &[&str]) -> Result<()> {
    if !has_dpkg() {
        println!(
            "No dpkg on this machine: cannot check system packages. \
             Make sure the equivalents of these are installed: {}",
            packages.join(" ")
        );
        return Ok(());
    }
    let missing = missing(packages)?;
    if missing.is_empty() {
        println!("System packages present: {}", packages.join(" "));
        return Ok(());
    }
    if !is_root()? {
        bail!(
            "missing system packages: {}. Install them with:\n\n    {}\n\nthen run this command again",
            missing.join(" "),
            sudo_command(&missing)
        );
    }
    println!("Installing missing system packages: {}", missing.join(" "));
    let mut updated = false;
    if lists_are_empty(Path::new("/var/lib/apt/lists")) {
        apt_get_update()?;
        updated = true;
    }
    if let Err(err) = apt_get_install(&missing) {
        if updated {
            return Err(err);
        }
        println!("apt-get install failed ({err:#}); updating the package lists and retrying");
        apt_get_update()?;
        apt_get_install(&missing)?;
    }
    let still_missing = self::missing(packages)?;
    if !still_missing.is_empty() {
        bail!(
            "apt-get reported success but these packages are still not installed: {}",
            still_missing.join(" ")
        );
    }
    Ok(())
}

/// The command a non-root user should run to install `packages`.
pub fn sudo_command(packages: &[&str]) -> String {
    format!(
        "sudo apt-get update && sudo apt-get install -y {}",
        packages.join(" ")
    )
}

/// Whether `dpkg-query` output `${Status}` says a package is installed.
fn status_is_installed(status: &str) -> bool {
    status.trim().ends_with(" installed") && status.trim().starts_with("install ")
}

/// The packages of `packages` that dpkg does not report as installed, in the given order.
fn missing<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut missing = Vec::new();
    for &package in packages {
        let output = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", package])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("could not run dpkg-query")?;
        let status = String::from_utf8_lossy(&output.stdout);
        if !(output.status.success() && status_is_installed(&status)) {
            missing.push(package);
        }
    }
    Ok(missing)
}

fn has_dpkg() -> bool {
    Command::new("dpkg-query")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn is_root() -> Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .stdin(Stdio::null())
        .output()
        .context("could not run `id -u` to find out whether this is root")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Whether apt has no downloaded package lists yet (a fresh container), so `apt-get install`
/// cannot find anything before an `apt-get update`.
fn lists_are_empty(lists: &Path) -> bool {
    match std::fs::read_dir(lists) {
        Ok(entries) => !entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.ends_with("_Packages") || name.contains("_Packages.")
        }),
        Err(_) => true,
    }
}

fn apt_get(args: &[&str]) -> Command {
    let mut command = Command::new("apt-get");
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn apt_get_update() -> Result<()> {
    workspace::run(&mut apt_get(&["update"]))
}

fn apt_get_install(packages: &[&str]) -> Result<()> {
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    workspace::run(&mut apt_get(&args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_status_is_recognised() {
        assert!(status_is_installed("install ok installed"));
        assert!(!status_is_installed("deinstall ok config-files"));
        assert!(!status_is_installed("unknown ok not-installed"));
        assert!(!status_is_installed(""));
    }

    #[test]
    fn sudo_command_names_every_package() {
        assert_eq!(
            sudo_command(&["libasound2-dev", "pkg-config"]),
            "sudo apt-get update && sudo apt-get install -y libasound2-dev pkg-config"
        );
    }

    #[test]
    fn lists_without_package_indexes_count_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lists_are_empty(&dir.path().join("absent")));
        std::fs::create_dir(dir.path().join("partial")).unwrap();
        std::fs::write(dir.path().join("lock"), b"").unwrap();
        assert!(lists_are_empty(dir.path()));
        std::fs::write(
            dir.path()
                .join("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4"),
            b"",
        )
        .unwrap();
        assert!(!lists_are_empty(dir.path()));
    }

    #[test]
    fn dpkg_tells_installed_from_missing_packages() {
        if !has_dpkg() {
            return;
        }
        let missing = missing(&["dpkg", "demix-no-such-package-xyz"]).unwrap();
        assert_eq!(missing, ["demix-no-such-package-xyz"]);
    }
}
