//! The supervisor's view of the sandbox's file system: every path the workload names is
//! turned into an absolute path inside the sandbox and resolved with
//! `openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so neither `..`, nor an
//! absolute symlink, nor a `/proc/PID/fd` link can lead outside the sandbox's root. The
//! policy (hidden and read-only paths) is checked on the path of the object actually opened,
//! read back from the kernel, never on the string the workload passed.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sys;

/// A refusal or failure, as the errno the workload sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Self {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

pub type SysResult<T> = Result<T, Errno>;

/// Paths that do not exist for the workload (ENOENT), whatever the mounts say.
pub const HIDDEN: &[&str] = &[
    "/proc/kcore",
    "/proc/kallsyms",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/sysrq-trigger",
    "/proc/latency_stats",
    "/proc/modules",
    "/proc/vmallocinfo",
    "/proc/iomem",
    "/proc/ioports",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/config.gz",
    "/sys/firmware",
    "/sys/kernel/debug",
    "/sys/kernel/security",
    "/sys/kernel/tracing",
    "/sys/kernel/config",
    "/sys/module",
    "/sys/fs/bpf",
];

/// Trees the workload may read but never open for writing or change (EACCES).
pub const READ_ONLY: &[&str] = &["/proc", "/sys"];

/// The trees [`HIDDEN`] and [`READ_ONLY`] lie in.
const POLICED: &[&str] = &["/proc", "/sys"];

/// The mount points (field 5) of a `/proc/PID/mountinfo`, with its octal escapes undone.
fn mount_points(info: &[u8]) -> Vec<Vec<u8>> {
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| {
            let mut out = Vec::with_capacity(field.len());
            let mut i = 0;
            while i < field.len() {
                let esc = field.get(i + 1..i + 4).filter(|_| field[i] == b'\\');
                let code = esc
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| u8::from_str_radix(d, 8).ok());
                match code {
                    Some(c) => {
                        out.push(c);
                        i += 4;
                    }
                    None => {
                        out.push(field[i]);
                        i += 1;
                    }
                }
            }
            out
        })
        .collect()
}

/// Whether `path` is `prefix` or lies beneath it.
fn under(path: &[u8], prefix: &str) -> bool {
    let p = prefix.as_bytes();
    path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/')
}

/// What the policy says about an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Hidden,
    ReadOnly,
}

/// The policy on a canonical sandbox path; `write` when the call would change the object.
pub fn judge(path: &[u8], write: bool) -> Verdict {
    if HIDDEN.iter().any(|h| under(path, h)) {
        return Verdict::Hidden;
    }
    if write && READ_ONLY.iter().any(|r| under(path, r)) {
        return Verdict::ReadOnly;
    }
    Verdict::Allow
}

/// The sandbox's root, opened once from the host side.
#[derive(Debug)]
pub struct View {
    root: OwnedFd,
    /// Unique ids (`STATX_MNT_ID_UNIQUE`, never reused) of the mounts whose mount point lies
    /// outside `/proc` and `/sys`: no object on them can have a path the policy names, so
    /// checking one costs a `statx` instead of reading its path back.
    clean: Vec<u64>,
}

pub const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

fn cpath(bytes: &[u8]) -> SysResult<CString> {
    CString::new(bytes).map_err(|_| Errno(libc::EINVAL))
}

/// `/proc/self/fd/N` for one of the supervisor's own fds: a way to hand an object we resolved
/// safely to path-only syscalls (the kernel follows our own magic link to exactly that object).
pub fn self_fd_path(fd: BorrowedFd<'_>, tail: Option<&[u8]>) -> SysResult<CString> {
    let mut p = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(t) = tail {
        p.push(b'/');
        p.extend_from_slice(t);
    }
    cpath(&p)
}

/// The path of the object behind one of our fds, as seen from the sandbox's root.
pub fn canonical(fd: BorrowedFd<'_>) -> SysResult<Vec<u8>> {
    let link = self_fd_path(fd, None)?;
    Ok(sys::readlinkat(libc::AT_FDCWD, &link)?)
}

impl View {
    /// Opens the root of the sandbox whose init (or any member) is `pid`.
    pub fn open(pid: libc::pid_t) -> io::Result<View> {
        let path = CString::new(format!("/proc/{pid}/root")).expect("no NUL");
        let root = sys::openat(libc::AT_FDCWD, &path, libc::O_PATH | libc::O_DIRECTORY)?;
        let mut view = View {
            root,
            clean: Vec::new(),
        };
        let info = CString::new(format!("/proc/{pid}/mountinfo")).expect("no NUL");
        let info = sys::read_small_file(&info)?;
        view.clean = mount_points(&info)
            .iter()
            .filter(|m| !POLICED.iter().any(|p| under(m, p)))
            .filter_map(|m| view.mount_of(m))
            .collect();
        view.clean.sort_unstable();
        view.clean.dedup();
        Ok(view)
    }

    /// The unique id of the mount whose root is the sandbox path `point`; `None` when the path
    /// does not read back as itself (not a plain directory path, or something in the way).
    fn mount_of(&self, point: &[u8]) -> Option<u64> {
        let fd = self
            .resolve(point, libc::O_PATH | libc::O_NOFOLLOW, 0, 0)
            .ok()?;
        if canonical(fd.as_fd()).ok()? != point {
            return None;
        }
        sys::mount_id_unique(fd.as_fd()).ok().flatten()
    }

    /// Whether the policy may have something to say about the object behind `fd` (it lies on
    /// a mount under `/proc` or `/sys`, or on one the view does not know).
    pub fn needs_check(&self, fd: BorrowedFd<'_>) -> bool {
        match sys::mount_id_unique(fd) {
            Ok(Some(id)) => self.clean.binary_search(&id).is_err(),
            _ => true,
        }
    }

    pub fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Resolves a sandbox-absolute path.
    pub fn resolve(&self, abs: &[u8], flags: i32, mode: u32, extra: u64) -> SysResult<OwnedFd> {
        let p = cpath(abs)?;
        Ok(sys::openat2(
            self.root.as_fd(),
            &p,
            flags | libc::O_CLOEXEC,
            mode,
            RESOLVE | extra,
        )?)
    }

    /// Resolves the directory that holds the last component of `abs`; returns it with that
    /// component, which is a plain name (never empty, `.` or `..`, and without a slash).
    pub fn resolve_parent<'p>(&self, abs: &'p [u8]) -> SysResult<(OwnedFd, &'p [u8])> {
        let trimmed = trim_trailing_slashes(abs);
        let cut = trimmed
            .iter()
            .rposition(|&b| b == b'/')
            .ok_or(Errno(libc::ENOENT))?;
        let (dir, name) = (&trimmed[..=cut], &trimmed[cut + 1..]);
        if name.is_empty() {
            return Err(Errno(libc::EBUSY)); // the root itself
        }
        if name == b"." || name == b".." {
            return Err(Errno(libc::EINVAL));
        }
        let fd = self.resolve(dir, libc::O_PATH | libc::O_DIRECTORY, 0, 0)?;
        Ok((fd, name))
    }
}

fn trim_trailing_slashes(p: &[u8]) -> &[u8] {
    let mut end = p.len();
    while end > 1 && p[end - 1] == b'/' {
        end -= 1;
    }
    &p[..end]
}

/// Joins a base directory (sandbox-absolute) and a relative path.
pub fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    if !v.ends_with(b"/") {
        v.push(b'/');
    }
    v.extend_from_slice(rel);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert_eq!(judge(b"/proc/kcore", false), Verdict::Hidden);
        assert_eq!(judge(b"/proc/kcorex", false), Verdict::Allow);
        assert_eq!(judge(b"/sys/kernel/debug", false), Verdict::Hidden);
        assert_eq!(judge(b"/proc/self/status", false), Verdict::Allow);
        assert_eq!(judge(b"/proc/1/oom_score_adj", true), Verdict::ReadOnly);
        assert_eq!(judge(b"/tmp/x", true), Verdict::Allow);
        for h in HIDDEN.iter().chain(READ_ONLY) {
            assert!(POLICED.iter().any(|p| under(h.as_bytes(), p)), "{h}");
        }
    }

    #[test]
    fn mountinfo_points() {
        let info = b"22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                     23 22 0:22 / /proc rw - proc proc rw\n\
                     24 22 0:23 / /my\\040dir ro - tmpfs tmpfs ro\n";
        let points = mount_points(info);
        assert_eq!(
            points,
            vec![b"/".to_vec(), b"/proc".to_vec(), b"/my dir".to_vec()]
        );
    }

    #[test]
    fn joins() {
        assert_eq!(join(b"/", b"a"), b"/a");
        assert_eq!(join(b"/tmp", b"../a"), b"/tmp/../a");
        assert_eq!(trim_trailing_slashes(b"/a//"), b"/a");
        assert_eq!(trim_trailing_slashes(b"/"), b"/");
    }
}
