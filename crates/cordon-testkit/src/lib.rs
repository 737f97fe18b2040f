//! What cordon's end-to-end test suites share (dev-dependency only; never in a shipped binary).
//!
//! - [`is_root`] and [`require_root!`]: tests that need root print `SKIPPED: <test> needs root
//!   (<why>)` and return, never pass silently;
//! - [`workspace_binary`]: a binary of another workspace crate, built on first use with the
//!   calling test's profile (`cargo test -p X` only builds X's own binaries);
//! - [`output_with_stdin`]: run a child with piped stdio, feeding stdin from a thread so a
//!   child that never reads it cannot deadlock the test;
//! - [`cgroup2_mount`]: the host's cgroup2 hierarchy (pure v2 or the unified mount of a hybrid
//!   host), or why there is none;
//! - [`Xorshift`]: the seeded generator of the fuzz-style tests (reproducible, no dependency).

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

/// The cgroup2 hierarchy to test on: /sys/fs/cgroup on a pure v2 host, /sys/fs/cgroup/unified
/// on a hybrid one; `Err` says why there is none.
pub fn cgroup2_mount() -> Result<PathBuf, String> {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    let is_cgroup2 = |path: &Path| {
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
            return false;
        };
        // SAFETY: statfs is plain old data; the kernel fills it on success.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
        let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
        rc == 0 && st.f_type == CGROUP2_SUPER_MAGIC
    };
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| is_cgroup2(p))
        .ok_or_else(|| "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified".into())
}

/// xorshift64*: a small seeded generator, so a fuzz-style test's failing input can be
/// regenerated from its seed.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator from `seed` (0 is replaced: the sequence would stay at zero).
    pub fn new(seed: u64) -> Self {
        Xorshift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if n64 == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64().to_le_bytes()[0]).collect()
    }

    /// Fewer than `max` random bytes.
    pub fn blob(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
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
    fn xorshift_is_reproducible_and_bounded() {
        let (mut a, mut b) = (Xorshift::new(7), Xorshift::new(7));
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_eq!(Xorshift::new(0).below(0), 0);
        assert_ne!(Xorshift::new(0).next_u64(), 0);
    }

    #[test]
    fn a_child_that_ignores_stdin_does_not_hang() {
        let big = vec![b'x'; 1 << 20];
        let (_, out) = output_with_stdin(&mut Command::new("true"), Some(&big));
        assert!(out.status.success());
    }
}
