//! The sentry tier under the OCI front. `cordon run --tier sentry` supervises from the `cordon`
//! process itself, but `create` and `exec` exit while the container runs, so each supervised
//! process (the container's first one and every `exec`) gets a supervisor process of its own:
//! forked here, detached from the caller (new session, stdio on /dev/null, so an engine waiting
//! for EOF on the pipes it passed is not held up), owning the socket the process's seccomp
//! listener arrives on. It confines itself ([`cordon_sentry::serve_detached`]), serves until no
//! process uses the filter any more, and exits; the engine's shim (a child subreaper) reaps it.
//! It stays outside the container's cgroups, so `kill --all` and `ps` do not see it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use cordon_container::landlock::{self, LandlockRules};

use crate::OciError;

/// The audit log of one container's supervisors (removed with the container's state).
pub const AUDIT_LOG: &str = "sentry-audit.log";

/// Forks the supervisor of the process whose listener arrives on `sock`; returns its pid.
pub fn spawn(
    init_pid: libc::pid_t,
    sock: OwnedFd,
    uid: u32,
    gid: u32,
    audit_path: &Path,
) -> Result<libc::pid_t, OciError> {
    let audit = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(audit_path)
        .map_err(|e| OciError::Runtime(format!("opening {}: {e}", audit_path.display())))?;
    // SAFETY: cordon-oci is single-threaded; the child only calls async-signal-safe functions
    // until it has rearranged its fds, then runs the supervisor in a process of its own.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(OciError::Runtime(format!(
            "forking the sentry supervisor: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid > 0 {
        return Ok(pid);
    }
    // The child: fds 0-2 on /dev/null, the listener socket on 3, the audit log on 4, nothing
    // else (not the engine's pipes, not the --log file).
    let code = match detach(sock.as_raw_fd(), audit.as_raw_fd()) {
        Ok(()) => {
            std::mem::forget(sock);
            std::mem::forget(audit);
            // SAFETY: detach placed the socket on fd 3 and the audit log on fd 4, owned by
            // nobody else in this process.
            let (sock, audit) = unsafe { (OwnedFd::from_raw_fd(3), std::fs::File::from_raw_fd(4)) };
            match cordon_sentry::serve_detached(
                init_pid,
                sock,
                uid,
                gid,
                cordon_sentry::AuditSink::File(audit),
            ) {
                Ok(()) => 0,
                Err(_) => 1, // the workload's supervised calls then fail with ENOSYS
            }
        }
        Err(_) => 1,
    };
    // SAFETY: _exit ends this forked child without running the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

/// Rearranges the child's fds: /dev/null on 0-2, `sock` on 3, `audit` on 4, the rest closed;
/// and leaves the caller's session and process group.
fn detach(sock: i32, audit: i32) -> std::io::Result<()> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: plain fd syscalls on fds this process owns; the path and name are
    // NUL-terminated (the name only shows in ps).
    unsafe {
        check(libc::setsid())?;
        check(libc::prctl(libc::PR_SET_NAME, c"cordon-sentry".as_ptr()))?;
        // Move both out of the way of the targets first (either may already sit on 3 or 4).
        let sock_hi = check(libc::fcntl(sock, libc::F_DUPFD_CLOEXEC, 100))?;
        let audit_hi = check(libc::fcntl(audit, libc::F_DUPFD_CLOEXEC, 100))?;
        let null = check(libc::open(
            c"/dev/null".as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC,
        ))?;
        for fd in 0..3 {
            check(libc::dup2(null, fd))?;
        }
        check(libc::dup3(sock_hi, 3, libc::O_CLOEXEC))?;
        check(libc::dup3(audit_hi, 4, libc::O_CLOEXEC))?;
        check(libc::close_range(5, u32::MAX, 0))?;
    }
    Ok(())
}

/// The Landlock rules of a sentry container's processes, as `cordon run --tier sentry` sets
/// them (`cordon_sentry::workload_landlock`): read and execute beneath the root, write but not
/// execute beneath /tmp, every right beneath the writable root, read-write bind mounts of
/// directories and the config's tmpfs mounts (/dev among them). `None` when the kernel has no Landlock.
pub fn landlock_rules(spec: &oci_spec::runtime::Spec) -> Option<LandlockRules> {
    landlock::abi()?;
    let tmp = Path::new("/tmp");
    let mut writable: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| {
            let options = m.options().clone().unwrap_or_default();
            let read_only = options.iter().any(|o| o == "ro");
            let tmpfs = m.typ().as_deref() == Some("tmpfs");
            // Directory rules only: a rule on a bound file is refused (EINVAL) with directory
            // rights; a file stays writable when it lies beneath a writable tree.
            let bind_dir = (m.typ().as_deref() == Some("bind")
                || options.iter().any(|o| o == "bind" || o == "rbind"))
                && m.source().as_ref().is_some_and(|s| s.is_dir());
            (tmpfs || bind_dir) && !read_only && m.destination() != tmp
        })
        .map(|m| m.destination().clone())
        .collect();
    if spec
        .root()
        .as_ref()
        .is_none_or(|r| r.readonly() != Some(true))
    {
        writable.push(PathBuf::from("/"));
    }
    Some(LandlockRules {
        scratch: vec![tmp.to_path_buf()],
        writable,
    })
}
