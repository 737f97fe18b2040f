//! The few raw kernel calls `cordon bench` needs, each behind a safe function: host mounts for
//! the chroot peer's root, a private mount namespace for crun, handing bwrap its seccomp
//! filter by fd, waiting on a pipe with a timeout and signalling process groups; and for
//! `notify_floor`, a forked child under a seccomp notify filter (the parent answers it with
//! the sentry's own calls, `cordon_sentry::notif`).
//!
//! Only crun's namespace needs a pre-exec hook, which makes std fork instead of posix_spawn
//! (about 0.3 ms more per start here); nothing else may add one, and commands get no working
//! directory for the same reason (std cannot posix_spawn with one from a static binary).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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

// The calls below serve `notify_floor`: the fork, the child's filter, the socket between them.

fn fd_result(ret: libc::c_int) -> io::Result<OwnedFd> {
    check(ret)?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// A connected pair of close-on-exec unix stream sockets.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two fds the kernel writes.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks; 0 in the child. The caller must be single-threaded.
pub(crate) fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the caller is single-threaded, so the child inherits no lock held by another
    // thread and may run ordinary code.
    let pid = unsafe { libc::fork() };
    check(pid)?;
    Ok(pid)
}

/// Waits for the child `pid`; its raw wait status.
pub(crate) fn wait_pid(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for the kernel to fill.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub(crate) fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is valid for reads of its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        data = &data[usize::try_from(n).unwrap_or(0)..];
    }
    Ok(())
}

pub(crate) fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let rest = &mut buf[at..];
        // SAFETY: `rest` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        match n {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => at += usize::try_from(n).unwrap_or(0),
        }
    }
    Ok(())
}

pub(crate) fn read_exact_f64(fd: BorrowedFd<'_>) -> io::Result<f64> {
    let mut b = [0u8; 8];
    read_exact(fd, &mut b)?;
    Ok(f64::from_ne_bytes(b))
}

pub(crate) fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

/// Installs `prog` on this thread with a new listener for its notifications (returned).
pub(crate) fn seccomp_with_listener(prog: &mut [libc::sock_filter]) -> io::Result<OwnedFd> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, both alive across the call; the kernel copies them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &raw const fprog,
        )
    };
    fd_result(libc::c_int::try_from(ret).unwrap_or(-1))
}
