//! Where things are in the workspace, and running child processes with clear step headers.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The workspace root (the folder holding the top-level `Cargo.toml`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one folder below the workspace root")
        .to_path_buf()
}

/// Cargo's target folder: `$CARGO_TARGET_DIR` when set (relative to the current folder, as
/// cargo reads it), otherwise `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            std::path::absolute(&dir).unwrap_or_else(|_| root().join(dir))
        }
        _ => root().join("target"),
    }
}

/// Prints a step header such as `==> [2/4] ONNX Runtime`.
pub fn step(index: usize, count: usize, title: &str) {
    println!("\n==> [{index}/{count}] {title}");
}

/// A `cargo` command for this workspace, using the same cargo that started xtask.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root());
    command
}

/// Runs `command` to completion with no standard input, failing with its command line and exit
/// status when it does not succeed.
pub fn run(command: &mut Command) -> Result<()> {
    let line = describe(command);
    println!("$ {line}");
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Gives the finished temporary file `temp` the permissions `mode` and renames it to `path`, so
/// `path` is either its old content or the complete new one, never a partial write.
pub fn persist(temp: tempfile::NamedTempFile, path: &Path, mode: u32) -> Result<()> {
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set the permissions of {}", temp.path().display()))?;
    temp.persist(path)
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// The command line of `command` as a shell user would type it.
pub fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn run_reports_a_failing_command_with_its_line() {
        let err = run(Command::new("sh").args(["-c", "exit 3"])).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("sh -c exit 3"), "{message}");
        assert!(message.contains('3'), "{message}");
        run(Command::new("sh").args(["-c", "exit 0"])).unwrap();
    }
}
