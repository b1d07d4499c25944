//! `cargo xtask test`: everything the test suite needs, then every test of the workspace in one
//! release build (the same profile as the demo and the plugin bundle, so nothing is built twice).

use crate::{apt, bundle, ort, workspace};
use anyhow::Result;

/// The plugin package; its bundle is made before the tests, which load it like a host does.
const PLUGIN_PACKAGE: &str = "demix-plugin";

/// Installs the system packages, provisions ONNX Runtime, bundles the plugin and runs
/// `cargo test --workspace --release` with `ORT_DYLIB_PATH` pointing at the provisioned library.
pub fn run() -> Result<()> {
    let target_dir = workspace::target_dir();
    const STEPS: usize = 4;

    workspace::step(1, STEPS, "System packages");
    let packages: Vec<&str> = apt::BUILD_PACKAGES
        .iter()
        .chain(apt::TEST_PACKAGES)
        .copied()
        .collect();
    apt::ensure(&packages)?;

    workspace::step(2, STEPS, "ONNX Runtime");
    let runtime = ort::provision(&target_dir)?;

    workspace::step(3, STEPS, "Plugin bundle");
    bundle::run(vec![PLUGIN_PACKAGE.to_owned(), "--release".to_owned()])?;

    workspace::step(4, STEPS, "Tests");
    workspace::run(
        workspace::cargo()
            .args(["test", "--workspace", "--release", "--no-fail-fast"])
            .env("ORT_DYLIB_PATH", &runtime),
    )
}
