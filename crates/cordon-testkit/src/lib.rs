//! What cordon's end-to-end test suites share (dev-dependency only; never in a shipped binary).
//!
//! - [`is_root`] and [`require_root!`]: tests that need root print `SKIPPED: <test> needs root
//!   (<why>)` and return, never pass silently;
//! - [`workspace_binary`]: a binary of another workspace crate, built on first use with the
//!   calling test's profile (`cargo test -p X` only builds X's own binaries);
//! - [`output_with_stdin`]: run a child with piped stdio, feeding stdin from a thread so a
//!   child that never reads it cannot deadlock the test.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// Whether this process runs with effective uid 0 (from the kernel's view in /proc).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Returns from the calling test, after printing why, unless it runs as root.
/// `require_root!()` says "namespaces and cgroups"; `require_root!("mounts")` names the need.
#[macro_export]
macro_rules! require_root {
    () => {
        $crate::require_root!("namespaces and cgroups")
    };
    ($why:expr) => {
        if !$crate::is_root() {
            eprintln!("SKIPPED: {} needs root ({})", module_path!(), $why);
            return;
        }
    };
}

/// The path of binary `bin` from workspace package `package`, built (once per test process)
/// into the same target directory and profile as the running test executable.
///
/// `workspace_root` is the directory holding the workspace's Cargo.toml; callers pass
/// `concat!(env!("CARGO_MANIFEST_DIR"), "/../..")`.
pub fn workspace_binary(workspace_root: &str, package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    // Test executables live in <target>/<triple>/<profile>/deps/.
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("profile directory")
        .to_path_buf();
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(Path::new(workspace_root).join("Cargo.toml"))
        .status()
        .unwrap_or_else(|e| panic!("running cargo build -p {package}: {e}"));
    assert!(
        status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    let path = dir.join(bin);
    assert!(path.is_file(), "{} was not built", path.display());
    built.insert(bin.to_string(), path.clone());
    path
}

/// Runs `cmd` to completion with stdout and stderr captured and `stdin` (or /dev/null) as its
/// input; returns the child's pid with its output, so callers can look for leftovers by pid.
pub fn output_with_stdin(cmd: &mut Command, stdin: Option<&[u8]>) -> (u32, Output) {
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {:?}: {e}", cmd.get_program()));
    let pid = child.id();
    let feeder = stdin.map(|data| {
        let mut w = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            // A child that exits without reading all of it closes the pipe: not an error here.
            let _ = w.write_all(&data);
        })
    });
    let out = child.wait_with_output().expect("waiting for the child");
    if let Some(f) = feeder {
        let _ = f.join();
    }
    (pid, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_reaches_the_child_and_output_comes_back() {
        let (pid, out) = output_with_stdin(&mut Command::new("cat"), Some(b"hello\n"));
        assert!(pid > 0);
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello\n");
    }

    #[test]
    fn a_child_that_ignores_stdin_does_not_hang() {
        let big = vec![b'x'; 1 << 20];
        let (_, out) = output_with_stdin(&mut Command::new("true"), Some(&big));
        assert!(out.status.success());
    }
}
