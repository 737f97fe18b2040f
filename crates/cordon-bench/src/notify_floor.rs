//! The cost floor of the sentry tier's mechanism, measured in the same run as everything else:
//! a child process traps `openat` with `SECCOMP_RET_USER_NOTIF` and runs a timed loop; this
//! process answers each notification with the least work any supervisor built on seccomp
//! user notification must do: copy the path out of the child (`process_vm_readv`), open it,
//! install the fd in the child and answer in one step (`SECCOMP_IOCTL_NOTIF_ADDFD` with
//! `SECCOMP_ADDFD_FLAG_SEND`, synchronous wake-ups on), close its own copy. No policy, no
//! path resolution in a sandbox's root, no validity re-check, no confinement.
//!
//! The sentry tier adds its policy on top of this floor; the bench reports both, so the share
//! of the sentry's open+read+close that is the kernel mechanism itself is visible next to
//! runsc's figure from the same run.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use cordon_container::seccomp_policy::{Action, Policy};
use cordon_sentry::notif;

use crate::sys;

/// What [`under_notify`] measured.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// What the timed closure returned (nanoseconds per iteration).
    pub ns: f64,
    /// How many trapped `openat` calls this process answered.
    pub answered: u64,
}

/// Runs `timed` in a child whose `openat` calls are trapped and answered by this process as
/// described in the module documentation. This process must be single-threaded (it forks)
/// and root or allowed to `pidfd_getfd` its child.
pub fn under_notify(timed: impl FnOnce() -> io::Result<f64>) -> io::Result<Floor> {
    let (parent_end, child_end) = sys::socketpair()?;
    let child = sys::fork()?;
    if child == 0 {
        drop(parent_end);
        let code = match child_main(&child_end, timed) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cordon-syscall-bench: notify-floor child: {e}");
                1
            }
        };
        // SAFETY: ends the forked child without running the parent's exit handlers twice.
        unsafe { libc::_exit(code) };
    }
    drop(child_end);
    let served = serve(child, &parent_end);
    // The child's answer (8 bytes) was sent before it exited; read it whatever happened.
    let result = sys::read_exact_f64(parent_end.as_fd());
    let status = sys::wait_pid(child)?;
    let answered = served?;
    if status != 0 {
        return Err(io::Error::other(format!(
            "the trapped child failed (wait status {status:#x})"
        )));
    }
    Ok(Floor {
        ns: result?,
        answered,
    })
}

/// The child: install the filter, tell the parent the listener's fd number, wait for the go,
/// run the timed loop and send the result.
fn child_main(sock: &OwnedFd, timed: impl FnOnce() -> io::Result<f64>) -> io::Result<()> {
    sys::no_new_privs()?;
    let trap_openat = Policy {
        allow: Vec::new(),
        deny: vec![(libc::SYS_openat, Action::Notify)],
        conditional: Vec::new(),
        matched: Vec::new(),
        default: Action::Allow,
    };
    let listener = sys::seccomp_with_listener(&mut trap_openat.compile())?;
    sys::write_all(sock.as_fd(), &listener.as_raw_fd().to_ne_bytes())?;
    let mut go = [0u8; 1];
    sys::read_exact(sock.as_fd(), &mut go)?;
    drop(listener);
    let ns = timed()?;
    sys::write_all(sock.as_fd(), &ns.to_ne_bytes())
}

/// The parent: take the child's listener, then answer every trapped `openat` until the child
/// is gone; how many were answered. The calls are the sentry's own ([`cordon_sentry::notif`]).
fn serve(child: libc::pid_t, sock: &OwnedFd) -> io::Result<u64> {
    let mut num = [0u8; 4];
    sys::read_exact(sock.as_fd(), &mut num)?;
    let pidfd = notif::pidfd_open(child.unsigned_abs())?;
    let listener = notif::pidfd_getfd(pidfd.as_fd(), i32::from_ne_bytes(num))?;
    notif::notif_sync_wakeup(listener.as_fd());
    sys::write_all(sock.as_fd(), b"g")?;
    let mut path = [0u8; 256];
    let mut answered = 0;
    loop {
        let n = match notif::notif_recv(listener.as_fd()) {
            Ok(n) => n,
            // The caller died before its notification was read, or no caller is left.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ENOENT)) => {
                if hung_up(listener.as_fd())? {
                    return Ok(answered);
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        answered += 1;
        let got = notif::read_remote(n.pid, n.args[1], &mut path).unwrap_or(0);
        let fd = match CStr::from_bytes_until_nul(&path[..got]) {
            Ok(p) => notif::openat(libc::AT_FDCWD, p, open_flags(n.args[2])),
            Err(_) => Err(io::Error::from_raw_os_error(libc::EFAULT)),
        };
        // A child gone meanwhile makes the answer fail; the next receive sees the hang-up.
        let _ = match fd {
            Ok(fd) => notif::notif_addfd_send(listener.as_fd(), n.id, fd.as_fd(), true).map(drop),
            Err(e) => notif::notif_send(
                listener.as_fd(),
                n.id,
                0,
                e.raw_os_error().unwrap_or(libc::EIO),
            ),
        };
    }
}

/// Whether no process uses the listener's filter any more.
fn hung_up(listener: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = [libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    notif::poll(&mut pfd, 0)?;
    Ok(pfd[0].revents & (libc::POLLHUP | libc::POLLERR) != 0)
}

/// The flags argument of `openat` (an int: the upper half of the register is ignored).
fn open_flags(arg: u64) -> libc::c_int {
    #[allow(clippy::cast_possible_truncation)]
    let low = arg as u32;
    libc::c_int::from_ne_bytes(low.to_ne_bytes())
}
