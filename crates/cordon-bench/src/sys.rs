//! The few raw kernel calls `cordon bench` needs, each behind a safe function: host mounts for
//! the chroot peer's root, a private mount namespace for crun, handing bwrap its seccomp
//! filter by fd, waiting on a pipe with a timeout and signalling process groups.
//!
//! Only crun's namespace needs a pre-exec hook, which makes std fork instead of posix_spawn
//! (about 0.3 ms more per start here); nothing else may add one, and commands get no working
//! directory for the same reason (std cannot posix_spawn with one from a static binary).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Bind-mounts `src` on `dst`, read-only, nosuid, nodev.
pub(crate) fn bind_mount_ro(src: &Path, dst: &Path) -> io::Result<()> {
    let (s, d) = (cstring(src)?, cstring(dst)?);
    // SAFETY: both strings are NUL-terminated and live across the call; a bind mount takes
    // no filesystem type and no data, so null pointers are allowed there.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })?;
    let flags =
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    // SAFETY: as above; the remount only changes the flags of the bind mount just made.
    let remount = check(unsafe {
        libc::mount(
            std::ptr::null(),
            d.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    });
    if remount.is_err() {
        let _ = unmount(dst);
    }
    remount
}

/// Mounts a tmpfs of at most `size` bytes on `dst`.
pub(crate) fn mount_tmpfs(dst: &Path, size: u64) -> io::Result<()> {
    let d = cstring(dst)?;
    let data = CString::new(format!("mode=1777,size={size}")).map_err(io::Error::other)?;
    // SAFETY: every pointer is a NUL-terminated string that lives across the call.
    check(unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            d.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    })
}

/// Detaches the mount at `path` (lazy unmount: it goes once nothing uses it).
pub(crate) fn unmount(path: &Path) -> io::Result<()> {
    let p = cstring(path)?;
    // SAFETY: `p` is NUL-terminated and lives across the call.
    check(unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) })
}

/// Makes `cmd`'s child enter a private mount namespace and unmount `hide` there before it
/// executes: crun refuses hybrid cgroup hosts while the cgroup2 mount is visible.
pub(crate) fn exec_without_mount(cmd: &mut Command, hide: &Path) -> io::Result<()> {
    let target = cstring(hide)?;
    let hook = move || -> io::Result<()> {
        // SAFETY: unshare takes no pointers; it only affects this (forked) child.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
        // SAFETY: the path is a static NUL-terminated string; the other pointers may be null
        // for a propagation change.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })?;
        // SAFETY: `target` was built before the fork and outlives this call.
        check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
    };
    // SAFETY: the hook runs between fork and exec and only makes raw syscalls on memory
    // prepared before the fork: it takes no locks and does not allocate.
    unsafe { cmd.pre_exec(hook) };
    Ok(())
}

/// Clears close-on-exec on `fd`, so that children spawned while it is open inherit it under
/// the same number. Only the bench's main thread spawns processes.
pub(crate) fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl F_GETFD on an fd the caller keeps open; no pointers.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
    check(flags)?;
    // SAFETY: fcntl F_SETFD on the same fd with an integer argument.
    check(unsafe { libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })
}

/// Waits until `fd` is readable or hung up; `false` after `timeout`.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `pfd` is one valid pollfd that lives across the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(n > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends `signal` to every process of the process group `pgid`.
pub(crate) fn kill_group(pgid: u32, signal: libc::c_int) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        if pgid > 1 {
            // SAFETY: kill takes plain integers; a negative pid names a process group.
            unsafe { libc::kill(-pgid, signal) };
        }
    }
}

/// Whether this process runs with effective uid 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Raises the soft limit on open files to the hard limit (density keeps pipes per sandbox).
pub(crate) fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read just above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}
