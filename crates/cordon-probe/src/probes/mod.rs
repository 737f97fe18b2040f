//! The attacks, one function per probe, grouped by what they attack. Each returns an
//! [`Outcome`]; the runner calls it in a forked process of its own, so a probe may change its
//! process's state (namespaces, mounts in a private namespace) without affecting the next one.
//!
//! Every probe is harmless to the host even when the attack succeeds: it opens kernel knobs
//! for writing but never writes, loads nothing, and bounds and undoes its resource bombs.

pub(crate) mod data;
pub(crate) mod devices;
pub(crate) mod kernel_entry;
pub(crate) mod kernel_fs;
pub(crate) mod namespaces;
pub(crate) mod network;
pub(crate) mod posture;
pub(crate) mod process;
pub(crate) mod resources;

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// The symbolic name of an errno value.
pub(crate) fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSUP => "EOPNOTSUPP",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EDQUOT => "EDQUOT",
        libc::EKEYREJECTED => "EKEYREJECTED",
        libc::EBADMSG => "EBADMSG",
        libc::ENOKEY => "ENOKEY",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

/// An io::Error as its errno name (or its text when it carries no errno).
pub(crate) fn ename(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None if e.kind() == io::ErrorKind::TimedOut => "timed out".to_string(),
        None => e.to_string(),
    }
}

/// The attack `what` was refused with `e`. Decides whose refusal it was:
/// - ENOSYS / EAFNOSUPPORT / EPROTONOSUPPORT without a seccomp filter: the kernel lacks the
///   feature (UNSUPPORTED); under a filter the filter may have said it (BLOCKED);
/// - EPERM / EACCES to an unconfined root: the host's own policy (UNSUPPORTED);
/// - anything else: BLOCKED.
pub(crate) fn refused(ctx: &Context, what: &str, e: &io::Error) -> Outcome {
    let c = &ctx.confinement;
    let name = ename(e);
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT) => {
            if c.no_seccomp() {
                Outcome::unsupported(format!("{what}: {name}: this kernel lacks it"))
            } else {
                Outcome::blocked(format!("{what}: {name} (under a seccomp filter)"))
            }
        }
        Some(libc::EPERM | libc::EACCES) if c.unconfined() => Outcome::unsupported(format!(
            "{what}: {name} even for unconfined root: the host's own policy"
        )),
        _ => Outcome::blocked(format!("{what}: {name}")),
    }
}

/// Whether a procfs is mounted at /proc (so a missing /proc entry is the kernel's doing).
pub(crate) fn procfs_mounted() -> bool {
    fs::File::open("/proc/self/stat")
        .ok()
        .and_then(|f| sys::fs_magic(f.as_fd()).ok())
        == Some(PROC_SUPER_MAGIC)
}

/// Whether `file` is a real procfs file (not a /dev/null or tmpfs mask bound over it).
pub(crate) fn is_proc_file(file: &fs::File) -> bool {
    let regular = sys::fstat(file.as_fd())
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        .unwrap_or(false);
    regular && sys::fs_magic(file.as_fd()).ok() == Some(PROC_SUPER_MAGIC)
}

/// What is at `file` instead of the procfs file: "the character device 1:3", "a regular file
/// on another filesystem".
pub(crate) fn describe_mask(file: &fs::File) -> String {
    match sys::fstat(file.as_fd()) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFCHR => format!(
            "a character device {}:{} is bound over it",
            libc::major(st.st_rdev),
            libc::minor(st.st_rdev)
        ),
        Ok(_) => "something other than the procfs file is mounted over it".to_string(),
        Err(e) => format!("masked (fstat: {})", ename(&e)),
    }
}

/// Opens a host kernel interface under /proc and classifies the common refusals: a missing
/// entry in a real procfs means the kernel lacks it (UNSUPPORTED), a missing procfs or a
/// mask over the entry is BLOCKED. `Ok` only for the real procfs file.
pub(crate) fn open_proc_knob(
    ctx: &Context,
    path: &str,
    write: bool,
    feature: &str,
) -> Result<fs::File, Outcome> {
    let how = if write { "O_WRONLY" } else { "O_RDONLY" };
    let what = format!("open({path}, {how})");
    match fs::OpenOptions::new().read(!write).write(write).open(path) {
        Ok(f) if is_proc_file(&f) => Ok(f),
        Ok(f) => Err(Outcome::blocked(format!(
            "{what} opened a stand-in: {}",
            describe_mask(&f)
        ))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Err(if procfs_mounted() {
            Outcome::unsupported(format!(
                "{path} does not exist in this procfs: the kernel is built without {feature}"
            ))
        } else {
            Outcome::blocked(format!("{what}: ENOENT (no procfs at /proc)"))
        }),
        Err(e) => Err(refused(ctx, &what, &e)),
    }
}

/// A fresh, empty directory for a probe to mount on or create a node in; removed on drop
/// (after a lazy unmount, in case a mount on it succeeded). The probe removes what it creates
/// in it.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    /// Creates `cordon-probe-<tag>-<pid>` in /tmp, else in /dev/shm.
    pub(crate) fn new(tag: &str) -> io::Result<ScratchDir> {
        let name = format!("cordon-probe-{tag}-{}", sys::getpid());
        let mut last = io::Error::from(io::ErrorKind::NotFound);
        for base in ["/tmp", "/dev/shm"] {
            let path = Path::new(base).join(&name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = sys::umount_detach(&self.path);
        // Never recursive: were a mount (say, a cgroup hierarchy) still there, a recursive
        // removal would delete the host's objects inside it.
        let _ = fs::remove_dir(&self.path);
    }
}

/// The numeric entries of /proc: every process this PID namespace shows.
pub(crate) fn visible_pids() -> Vec<libc::pid_t> {
    let mut pids: Vec<libc::pid_t> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// The parent of `pid`, from /proc/<pid>/stat (0 when unknown).
pub(crate) fn parent_of(pid: libc::pid_t) -> libc::pid_t {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// This process's ancestors as far as /proc shows them (nearest first).
pub(crate) fn ancestors() -> Vec<libc::pid_t> {
    let mut out = Vec::new();
    let mut pid = sys::getppid();
    while pid > 0 && !out.contains(&pid) && out.len() < 64 {
        out.push(pid);
        pid = parent_of(pid);
    }
    out
}

/// A process's command name (`comm`), or "?".
pub(crate) fn comm_of(pid: libc::pid_t) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// Shortens `s` to at most `max` characters for a one-line detail.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push_str("...");
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Confinement;

    fn ctx(unconfined: bool) -> Context {
        let status = if unconfined {
            "CapEff:\t000001ffffffffff\nSeccomp:\t0\n"
        } else {
            "CapEff:\t0000000000000000\nSeccomp:\t2\n"
        };
        Context {
            confinement: Confinement::parse(status, "0 0 4294967295"),
            ..Context::default()
        }
    }

    #[test]
    fn refusals_are_attributed() {
        use crate::verdict::Verdict::*;
        let e = |n| io::Error::from_raw_os_error(n);
        let v = |c: &Context, n| refused(c, "x", &e(n)).verdict;
        assert_eq!(v(&ctx(true), libc::ENOSYS), Unsupported);
        assert_eq!(v(&ctx(false), libc::ENOSYS), Blocked);
        assert_eq!(v(&ctx(true), libc::EPERM), Unsupported);
        assert_eq!(v(&ctx(false), libc::EPERM), Blocked);
        assert_eq!(v(&ctx(true), libc::EROFS), Blocked);
        assert_eq!(v(&ctx(true), libc::EAFNOSUPPORT), Unsupported);
    }

    #[test]
    fn parent_from_stat_with_odd_comm() {
        // The real parser is exercised on ourselves: our parent is known.
        assert_eq!(parent_of(sys::getpid()), sys::getppid());
    }

    #[test]
    fn names() {
        assert_eq!(errno_name(libc::EROFS), "EROFS");
        assert_eq!(errno_name(4242), "errno 4242");
        assert_eq!(clip("abcdef", 3), "abc...");
    }
}
