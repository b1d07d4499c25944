//! Finds and loads the ONNX Runtime shared library, once per process.
//!
//! Search order (the first usable library wins):
//! 1. an explicit path (when one is given, it is the only candidate),
//! 2. the `ORT_DYLIB_PATH` environment variable,
//! 3. the directory of the running executable,
//! 4. the directory of the shared library holding this code (the plugin bundle),
//! 5. `target/onnxruntime/lib` of this workspace, where `cargo xtask provision-ort` puts it,
//! 6. an installed Python `onnxruntime` package (`onnxruntime/capi/` in site-packages or
//!    dist-packages of the system, user, `$VIRTUAL_ENV` and pyenv Pythons; Python is not run).
//!
//! Every candidate is opened and checked here first (it must export `OrtGetApiBase` and report
//! version 1.22 or newer) before `ort` sees it, because `ort` panics on an unusable library.
//! Loading happens on a set-up thread, never on the audio thread.

use std::ffi::CStr;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Oldest ONNX Runtime minor version (`1.x`) the `ort` binding works with.
pub const MIN_MINOR_VERSION: u32 = ort::MINOR_VERSION;

/// Where `cargo xtask provision-ort` puts the library, fixed when this crate is compiled.
pub const PROVISIONED_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/onnxruntime/lib");

#[cfg(target_os = "macos")]
const LIBRARY_PATTERN: (&str, &str) = ("libonnxruntime", ".dylib");
#[cfg(windows)]
const LIBRARY_PATTERN: (&str, &str) = ("onnxruntime", ".dll");
#[cfg(not(any(target_os = "macos", windows)))]
const LIBRARY_PATTERN: (&str, &str) = ("libonnxruntime.so", "");

/// The ONNX Runtime library this process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtRuntime {
    /// The file that was loaded.
    pub library: PathBuf,
    /// Its version string, e.g. `1.22.1`.
    pub version: String,
}

/// One library (or directory) that was looked at and why it was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The file or directory.
    pub path: PathBuf,
    /// Which rule of the search order produced it.
    pub origin: &'static str,
    /// Why it was not used.
    pub reason: String,
}

/// ONNX Runtime could not be made available. Each message is one paragraph with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// No candidate was usable.
    #[error("{}", not_found_message(.0))]
    NotFound(Vec<Attempt>),
    /// A usable library passed the checks but `ort` failed to initialise it.
    #[error(
        "ONNX Runtime at {} passed the checks but could not be initialised: {reason}. ONNX Runtime can be loaded only once per process; restart after fixing it ({FIX}).",
        .library.display()
    )]
    InitFailed {
        /// The library.
        library: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The process already uses another library, and a library cannot be swapped.
    #[error(
        "ONNX Runtime is already loaded from {} in this process, so {} cannot be used; restart the program to switch libraries.",
        .loaded.display(), .requested.display()
    )]
    AlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The library asked for.
        requested: PathBuf,
    },
}

const FIX: &str = "run `cargo xtask provision-ort` in the Demix source tree, set ORT_DYLIB_PATH to a libonnxruntime shared library of version 1.22 or newer, or `pip install onnxruntime` (1.22 or newer)";

fn not_found_message(attempts: &[Attempt]) -> String {
    let tried = if attempts.is_empty() {
        "no candidate locations exist".to_string()
    } else {
        attempts
            .iter()
            .map(|a| format!("{} ({}): {}", a.path.display(), a.origin, a.reason))
            .collect::<Vec<_>>()
            .join("; ")
    };
    format!("ONNX Runtime could not be loaded. Tried {tried}. To fix this, {FIX}.")
}

impl fmt::Display for OrtRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ONNX Runtime {} from {}",
            self.version,
            self.library.display()
        )
    }
}

/// Set once `ort` was handed a library: that outcome is final for the process.
static RUNTIME: OnceLock<Result<OrtRuntime, RuntimeError>> = OnceLock::new();
/// Serialises the search so two threads never race to initialise `ort`.
static SEARCH: Mutex<()> = Mutex::new(());

/// The runtime in use, if one has been loaded.
pub fn loaded() -> Option<&'static OrtRuntime> {
    RUNTIME.get().and_then(|r| r.as_ref().ok())
}

/// Makes ONNX Runtime available, searching as described in the module docs, and returns the
/// library in use. Later calls return the same library. With `explicit`, only that file is
/// considered, and it must be the library already in use if one is loaded. Never panics.
pub fn initialise(explicit: Option<&Path>) -> Result<&'static OrtRuntime, RuntimeError> {
    let _guard = SEARCH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = explicit {
        let (handle, version) = open_checked(path).map_err(|reason| {
            RuntimeError::NotFound(vec![Attempt {
                path: path.to_path_buf(),
                origin: "explicit path",
                reason,
            }])
        })?;
        if let Some(outcome) = RUNTIME.get() {
            let runtime = outcome.as_ref().map_err(Clone::clone)?;
            if !same_file(&runtime.library, path) {
                return Err(RuntimeError::AlreadyLoaded {
                    loaded: runtime.library.clone(),
                    requested: path.to_path_buf(),
                });
            }
            return Ok(runtime);
        }
        return commit(path.to_path_buf(), version, handle);
    }
    if let Some(outcome) = RUNTIME.get() {
        return outcome.as_ref().map_err(Clone::clone);
    }
    let (path, version, handle) = select_open(&candidates())?;
    commit(path, version, handle)
}

/// Hands a checked library to `ort`, once per process. `handle` keeps the library loaded
/// until `ort` holds its own handle, so it is not unloaded and loaded again in between.
fn commit(
    library: PathBuf,
    version: String,
    handle: libloading::Library,
) -> Result<&'static OrtRuntime, RuntimeError> {
    let path_text = library.to_string_lossy().into_owned();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        ort::init_from(path_text).with_name("demix").commit()
    }));
    let result = match outcome {
        Ok(Ok(_)) => Ok(OrtRuntime {
            library: library.clone(),
            version,
        }),
        Ok(Err(e)) => Err(RuntimeError::InitFailed {
            library,
            reason: e.to_string(),
        }),
        Err(panic) => Err(RuntimeError::InitFailed {
            library,
            reason: panic_text(panic.as_ref()),
        }),
    };
    drop(handle);
    RUNTIME
        .get_or_init(|| result)
        .as_ref()
        .map_err(Clone::clone)
}

/// The text of a caught panic.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "it panicked".to_string())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// A place to look: a library file, or a directory to scan for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A library file named directly.
    File(PathBuf, &'static str),
    /// A directory that may hold `libonnxruntime.so*`.
    Dir(PathBuf, &'static str),
}

/// The search list after the explicit path, in order, without duplicates.
pub fn candidates() -> Vec<Candidate> {
    let mut list = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        list.push(Candidate::File(PathBuf::from(path), "ORT_DYLIB_PATH"));
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        list.push(Candidate::Dir(dir, "next to the executable"));
    }
    if let Some(dir) = own_library_dir() {
        list.push(Candidate::Dir(dir, "next to the Demix library"));
    }
    list.push(Candidate::Dir(
        PathBuf::from(PROVISIONED_DIR),
        "provisioned by cargo xtask",
    ));
    for dir in python_package_dirs() {
        list.push(Candidate::Dir(dir, "Python onnxruntime package"));
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|c| {
        let path = match c {
            Candidate::File(p, _) | Candidate::Dir(p, _) => p,
        };
        seen.insert(path.canonicalize().unwrap_or_else(|_| path.clone()))
    });
    list
}

/// Goes through `candidates` and returns the first library that passes [`probe`] and its
/// version, or every attempt and its reason. Opens libraries but never hands them to `ort`.
pub fn select(candidates: &[Candidate]) -> Result<(PathBuf, String), RuntimeError> {
    select_open(candidates).map(|(path, version, _)| (path, version))
}

/// [`select`], keeping the chosen library open.
fn select_open(
    candidates: &[Candidate],
) -> Result<(PathBuf, String, libloading::Library), RuntimeError> {
    let mut attempts = Vec::new();
    for candidate in candidates {
        let (files, origin) = match candidate {
            Candidate::File(path, origin) => (vec![path.clone()], *origin),
            Candidate::Dir(dir, origin) => {
                let files = libraries_in(dir);
                if files.is_empty() {
                    let pattern = format!("{}*{}", LIBRARY_PATTERN.0, LIBRARY_PATTERN.1);
                    attempts.push(Attempt {
                        path: dir.clone(),
                        origin,
                        reason: format!("no {pattern} there"),
                    });
                }
                (files, *origin)
            }
        };
        for path in files {
            match open_checked(&path) {
                Ok((handle, version)) => return Ok((path, version, handle)),
                Err(reason) => attempts.push(Attempt {
                    path,
                    origin,
                    reason,
                }),
            }
        }
    }
    Err(RuntimeError::NotFound(attempts))
}

/// Library files in `dir` matching the platform's name pattern, the plain name first, then
/// by descending name (newest version first).
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let (prefix, suffix) = LIBRARY_PATTERN;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .filter(|n| !n.contains("providers"))
        .collect();
    let plain = |n: &str| n.len() == prefix.len() + suffix.len();
    let version = |n: &str| -> Vec<u32> {
        n[prefix.len()..]
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    names.sort_by(|a, b| {
        plain(b)
            .cmp(&plain(a))
            .then_with(|| version(b).cmp(&version(a)))
    });
    names.into_iter().map(|n| dir.join(n)).collect()
}

/// Opens `path` and checks it is an ONNX Runtime of a usable version; returns the version
/// string or why it cannot be used. The library is closed again.
pub fn probe(path: &Path) -> Result<String, String> {
    open_checked(path).map(|(_, version)| version)
}

/// [`probe`], returning the open library with its version.
fn open_checked(path: &Path) -> Result<(libloading::Library, String), String> {
    if !path.exists() {
        return Err("no such file".into());
    }
    if path.is_dir() {
        return Err("is a directory, not a library file".into());
    }
    // SAFETY: loading a shared library runs its initialisers; an ONNX Runtime library (or any
    // well-formed library) has no harmful ones. Symbols are only used while `library` lives.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot be opened as a shared library ({e})"))?;
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
    let get_api_base = unsafe { library.get::<GetApiBase>(b"OrtGetApiBase\0") }
        .map_err(|_| "does not export OrtGetApiBase (not ONNX Runtime)".to_string())?;
    // SAFETY: the function takes no arguments and returns a pointer to a static struct.
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return Err("OrtGetApiBase returned null".into());
    }
    // SAFETY: `base` points at the library's static `OrtApiBase`, whose version string is a
    // static NUL-terminated string.
    let version = unsafe {
        let text = ((*base).GetVersionString)();
        if text.is_null() {
            return Err("GetVersionString returned null".into());
        }
        CStr::from_ptr(text).to_string_lossy().into_owned()
    };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().flatten(), parts.next().flatten());
    match (major, minor) {
        (Some(1), Some(minor)) if minor >= MIN_MINOR_VERSION => {}
        _ => {
            return Err(format!(
                "version {version} is too old or unknown (1.{MIN_MINOR_VERSION} or newer is needed)"
            ))
        }
    }
    // SAFETY: as above; `GetApi` returns null for API versions the library does not offer.
    let api = unsafe { ((*base).GetApi)(ort::sys::ORT_API_VERSION) };
    if api.is_null() {
        return Err(format!(
            "version {version} does not offer C API version {}",
            ort::sys::ORT_API_VERSION
        ));
    }
    Ok((library, version))
}

/// The directory of the shared object holding this code: the plugin bundle's library
/// directory when Demix runs as a plugin, the executable's directory otherwise.
#[cfg(unix)]
fn own_library_dir() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let address = own_library_dir as *const libc::c_void;
    // SAFETY: `dladdr` only reads the address and fills `info`; `dli_fname` is a NUL-terminated
    // string owned by the loader, valid while the object stays loaded (it holds this code).
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    path.parent().map(Path::to_path_buf)
}

#[cfg(not(unix))]
fn own_library_dir() -> Option<PathBuf> {
    None
}

/// The `onnxruntime/capi` directories of every Python installation found on disk.
fn python_package_dirs() -> Vec<PathBuf> {
    let mut lib_dirs: Vec<PathBuf> = vec!["/usr/lib".into(), "/usr/local/lib".into()];
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if let Some(home) = &home {
        lib_dirs.push(home.join(".local/lib"));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        lib_dirs.push(PathBuf::from(venv).join("lib"));
    }
    if let Some(home) = &home {
        for version in subdirs(&home.join(".pyenv/versions"), "") {
            lib_dirs.push(version.join("lib"));
        }
    }
    let mut out = Vec::new();
    for lib in lib_dirs {
        for python in subdirs(&lib, "python3") {
            for packages in ["site-packages", "dist-packages"] {
                let capi = python.join(packages).join("onnxruntime/capi");
                if capi.is_dir() {
                    out.push(capi);
                }
            }
        }
    }
    out
}

/// Subdirectories of `dir` whose names start with `prefix`, sorted by name.
fn subdirs(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_explicit_library_is_a_clean_error_naming_it_and_the_fix() {
        let path = Path::new("/nonexistent/libonnxruntime.so.1.22.1");
        let err = initialise(Some(path)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/libonnxruntime.so.1.22.1 (explicit path): no such file"),
            "{text}"
        );
        assert!(text.contains("cargo xtask provision-ort"), "{text}");
        assert!(text.contains("ORT_DYLIB_PATH"), "{text}");
        assert!(text.contains("pip install onnxruntime"), "{text}");
        assert!(!text.contains('\n'), "one paragraph: {text}");
    }

    #[test]
    fn libraries_that_are_not_onnx_runtime_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("libonnxruntime.so.1.22.0");
        std::fs::write(&fake, b"not a library").unwrap();
        let reason = probe(&fake).unwrap_err();
        assert!(
            reason.contains("cannot be opened as a shared library"),
            "{reason}"
        );
        assert!(probe(dir.path()).unwrap_err().contains("directory"));
        let err = select(&[
            Candidate::Dir(dir.path().join("empty"), "test dir"),
            Candidate::Dir(dir.path().to_path_buf(), "test dir"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("empty (test dir): no libonnxruntime.so* there"),
            "{text}"
        );
        assert!(
            text.contains("libonnxruntime.so.1.22.0 (test dir): cannot be opened"),
            "{text}"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_real_library_without_the_ort_entry_point_is_refused() {
        let libm = [
            "/lib/x86_64-linux-gnu/libm.so.6",
            "/usr/lib/x86_64-linux-gnu/libm.so.6",
            "/lib64/libm.so.6",
            "/usr/lib64/libm.so.6",
        ]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("libm.so.6 in a standard location");
        assert!(probe(libm)
            .unwrap_err()
            .contains("does not export OrtGetApiBase"));
    }

    #[test]
    fn directory_scan_prefers_the_plain_name_then_the_newest_version() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.22.1",
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so",
            "other.so",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<String> = libraries_in(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "libonnxruntime.so",
                "libonnxruntime.so.1.22.1",
                "libonnxruntime.so.1.9.0"
            ]
        );
    }

    #[test]
    fn the_provisioned_library_is_found_and_loaded() {
        let runtime = initialise(None).expect(
            "ONNX Runtime must be provisioned for the tests: run `cargo xtask provision-ort`",
        );
        assert!(runtime.version.starts_with("1."), "{}", runtime.version);
        assert_eq!(loaded(), Some(runtime));
        // Asking for the library in use again is fine; asking for another is refused cleanly.
        assert_eq!(initialise(Some(&runtime.library)).unwrap(), runtime);
    }
}
