//! The raw kernel interfaces the sentry needs: seccomp user notifications, remote memory
//! access, `openat2`, pidfds, credentials and Landlock. Nothing else in the crate calls `libc`
//! with pointers.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn own(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(check(ret)?).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One suspended syscall, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    pub id: u64,
    /// The caller's thread id in the supervisor's PID namespace.
    pub pid: u32,
    pub nr: i32,
    pub args: [u64; 6],
}

/// Receives the next pending notification (`SECCOMP_IOCTL_NOTIF_RECV`).
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // SAFETY: seccomp_notif is plain data; all-zero is the required input state.
    let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: `n` is a valid seccomp_notif the kernel fills in.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut n as *mut libc::seccomp_notif,
        )
    };
    check(r.into())?;
    Ok(Notification {
        id: n.id,
        pid: n.pid,
        nr: n.data.nr,
        args: n.data.args,
    })
}

/// Whether the notification is still pending (its thread has not died or been interrupted):
/// memory read from the thread before this check belongs to the thread that made the call.
pub fn notif_id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64 from `id`.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        )
    };
    r == 0
}

/// Completes the syscall with `val` (when `error` is 0) or with `-error`.
pub fn notif_send(listener: BorrowedFd<'_>, id: u64, val: i64, error: i32) -> io::Result<()> {
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error: -error,
        flags: 0,
    };
    // SAFETY: the ioctl reads a seccomp_notif_resp from `resp`.
    check(
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &resp as *const libc::seccomp_notif_resp,
            )
        }
        .into(),
    )
    .map(drop)
}

/// Installs `fd` in the caller's fd table and completes the syscall with the new number, in
/// one step (`SECCOMP_ADDFD_FLAG_SEND`).
pub fn notif_addfd_send(
    listener: BorrowedFd<'_>,
    id: u64,
    fd: BorrowedFd<'_>,
    cloexec: bool,
) -> io::Result<i64> {
    let addfd = libc::seccomp_notif_addfd {
        id,
        flags: u32::try_from(libc::SECCOMP_ADDFD_FLAG_SEND).unwrap_or(0),
        srcfd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
        newfd: 0,
        newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
    };
    // SAFETY: the ioctl reads a seccomp_notif_addfd from `addfd`.
    check(
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ADDFD,
                &addfd as *const libc::seccomp_notif_addfd,
            )
        }
        .into(),
    )
}

/// Asks the kernel to switch straight to the supervisor and back (Linux >= 6.6); harmless to
/// miss.
pub fn notif_sync_wakeup(listener: BorrowedFd<'_>) -> bool {
    const SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: u64 = 1;
    // SAFETY: the ioctl takes its flags by value.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP,
        )
    };
    r == 0
}

/// Copies `buf.len()` bytes at `addr` out of process `pid`; returns how many it could read.
pub fn read_remote(pid: u32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: usize::try_from(addr).unwrap_or(usize::MAX) as *mut libc::c_void,
        iov_len: buf.len(),
    };
    #[allow(clippy::cast_possible_wrap)]
    // SAFETY: `local` describes `buf`, which we own mutably; `remote` is only an address in
    // the other process, which the kernel checks.
    let n = unsafe { libc::process_vm_readv(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    usize::try_from(check(n as libc::c_long)?).map_err(|_| io::Error::from_raw_os_error(libc::EIO))
}

/// Copies `buf` to `addr` in process `pid` (a syscall's result, e.g. a stat buffer).
pub fn write_remote(pid: u32, addr: u64, buf: &[u8]) -> io::Result<()> {
    let local = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: usize::try_from(addr).unwrap_or(usize::MAX) as *mut libc::c_void,
        iov_len: buf.len(),
    };
    #[allow(clippy::cast_possible_wrap)]
    // SAFETY: `local` describes `buf`, which the kernel only reads.
    let n = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    if usize::try_from(check(n as libc::c_long)?).ok() == Some(buf.len()) {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(libc::EFAULT))
    }
}

/// `openat2(dirfd, path, how)`.
pub fn openat2(
    dirfd: BorrowedFd<'_>,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    #[allow(clippy::cast_sign_loss)]
    let how: [u64; 3] = [u64::from(flags as u32), u64::from(mode), resolve];
    // SAFETY: `path` is NUL-terminated and `how` is a valid open_how of the given size.
    own(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            how.as_ptr(),
            std::mem::size_of_val(&how),
        )
    })
}

/// `openat(dirfd, path, flags)` with a path we built ourselves (never workload-controlled).
pub fn openat(dirfd: RawFd, path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated.
    own(unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, 0) }.into())
}

/// `readlinkat(dirfd, path)`.
pub fn readlinkat(dirfd: RawFd, path: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its whole length; `path` is NUL-terminated.
    let n = unsafe { libc::readlinkat(dirfd, path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = usize::try_from(check(n as libc::c_long)?).unwrap_or(0);
    buf.truncate(n);
    Ok(buf)
}

/// A `struct stat` of the object `fd` refers to (also an `O_PATH` fd, also a symlink).
pub fn fstat_empty(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable; the path is an empty C string.
    let r = unsafe { libc::fstatat(fd.as_raw_fd(), c"".as_ptr(), &mut st, libc::AT_EMPTY_PATH) };
    check(r.into())?;
    Ok(st)
}

/// `statx(fd, "", AT_EMPTY_PATH | sync, mask)` into a raw 256-byte buffer.
pub fn statx_empty(fd: BorrowedFd<'_>, sync: i32, mask: u32) -> io::Result<[u8; 256]> {
    let mut buf = [0u8; 256];
    // SAFETY: struct statx is 256 bytes and `buf` is that long and writable.
    check(unsafe {
        libc::syscall(
            libc::SYS_statx,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | sync,
            mask,
            buf.as_mut_ptr(),
        )
    })?;
    Ok(buf)
}

/// The unique id of the mount `fd` lies on (`STATX_MNT_ID_UNIQUE`, Linux >= 6.8: never
/// reused); `None` when the kernel does not offer it.
pub fn mount_id_unique(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
    const MNT_ID_OFFSET: usize = 0x90;
    let buf = statx_empty(fd, libc::AT_STATX_DONT_SYNC, STATX_MNT_ID_UNIQUE)?;
    let mask = u32::from_ne_bytes(buf[..4].try_into().expect("4 bytes"));
    if mask & STATX_MNT_ID_UNIQUE == 0 {
        return Ok(None);
    }
    let id = &buf[MNT_ID_OFFSET..MNT_ID_OFFSET + 8];
    Ok(Some(u64::from_ne_bytes(id.try_into().expect("8 bytes"))))
}

/// Reads a small file (a few pages, e.g. from /proc) whose path we built ourselves.
pub fn read_small_file(path: &CStr) -> io::Result<Vec<u8>> {
    let fd = openat(libc::AT_FDCWD, path, libc::O_RDONLY)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let n = usize::try_from(check(n as libc::c_long)?).unwrap_or(0);
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// The signal that interrupts the supervisor thread's blocking receive.
pub const WAKE_SIGNAL: i32 = libc::SIGUSR1;

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Makes [`WAKE_SIGNAL`] interrupt blocking calls (a handler that does nothing, without
/// `SA_RESTART`) instead of killing the process, and unblocks it on the calling thread.
pub fn catch_wake_signal() -> io::Result<()> {
    // SAFETY: sigaction is plain data; all-zero is an empty mask and no flags.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `sa` is a valid sigaction whose handler is async-signal-safe (it does nothing).
    check(unsafe { libc::sigaction(WAKE_SIGNAL, &sa, std::ptr::null_mut()) }.into())?;
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, WAKE_SIGNAL);
    }
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// This thread's id.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

/// Sends [`WAKE_SIGNAL`] to thread `tid` of this process.
pub fn wake_thread(tid: libc::pid_t) -> io::Result<()> {
    // SAFETY: tgkill takes plain integers.
    check(unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, WAKE_SIGNAL) }).map(drop)
}

/// Runs a path syscall that returns 0 or -1; `f` gets the C strings already checked.
pub fn path_call(f: impl FnOnce() -> libc::c_long) -> io::Result<i64> {
    check(f())
}

/// A pidfd for `pid`.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes plain integers.
    own(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// A duplicate of fd `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes plain integers.
    own(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// `socket(domain, type, protocol)`.
pub fn socket(domain: i32, ty: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes plain integers.
    own(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, protocol) }.into())
}

/// `connect` or `bind` of `fd` to the raw socket address `addr`.
pub fn sock_addr_call(fd: BorrowedFd<'_>, addr: &[u8], bind: bool) -> io::Result<i64> {
    let len = libc::socklen_t::try_from(addr.len()).unwrap_or(0);
    let ptr = addr.as_ptr().cast::<libc::sockaddr>();
    // SAFETY: `addr` is `len` readable bytes; the kernel validates the address itself.
    let r = unsafe {
        if bind {
            libc::bind(fd.as_raw_fd(), ptr, len)
        } else {
            libc::connect(fd.as_raw_fd(), ptr, len)
        }
    };
    check(r.into())
}

/// `connect` without blocking on a socket that may be blocking: `O_NONBLOCK` is set on the
/// open file description for the call and restored after it.
pub fn connect_nonblocking(fd: BorrowedFd<'_>, addr: &[u8]) -> io::Result<()> {
    let flags = getfl(fd)?;
    setfl(fd, flags | libc::O_NONBLOCK)?;
    let r = sock_addr_call(fd, addr, false);
    let restored = setfl(fd, flags);
    r?;
    restored
}

/// The pending error of a socket (`SO_ERROR`): 0, or the errno its connect ended with.
pub fn socket_error(fd: BorrowedFd<'_>) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4);
    // SAFETY: `err` and `len` are valid for the kernel to fill, `len` saying `err`'s size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&raw mut err).cast(),
            &mut len,
        )
    };
    check(r.into())?;
    Ok(err)
}

/// Polls `fds` for up to `timeout_ms`; false if interrupted by a signal.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<bool> {
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is `n` valid pollfds that live across the call.
    match check(unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) }.into()) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// The file status flags of `fd` (`F_GETFL`).
pub fn getfl(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no pointer.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }.into())
        .map(|v| i32::try_from(v).unwrap_or(0))
}

/// Sets the file status flags of `fd` (`F_SETFL`).
pub fn setfl(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }.into()).map(drop)
}

/// Sets this thread's filesystem uid and gid (used for permission checks of the calls the
/// supervisor performs); returns the previous pair. The kernel reports no failure (it keeps
/// the old ids without `CAP_SETUID`/`CAP_SETGID`), so the result is read back: an error means
/// the ids are not the ones asked for and nothing may be done on the caller's behalf.
pub fn set_fs_ids(uid: u32, gid: u32) -> io::Result<(u32, u32)> {
    // SAFETY: setfsuid/setfsgid take plain integers; -1 (u32::MAX) only queries.
    let (old, now) = unsafe {
        let old_gid = libc::setfsgid(gid);
        let old_uid = libc::setfsuid(uid);
        let now_gid = libc::setfsgid(u32::MAX);
        let now_uid = libc::setfsuid(u32::MAX);
        ((old_uid, old_gid), (now_uid, now_gid))
    };
    // The kernel returns the ids as full 32-bit values in an int.
    #[allow(clippy::cast_sign_loss)]
    let (old, now) = ((old.0 as u32, old.1 as u32), (now.0 as u32, now.1 as u32));
    if now == (uid, gid) {
        Ok(old)
    } else {
        Err(io::Error::from_raw_os_error(libc::EPERM))
    }
}

/// Enters the network namespace behind `fd` (this thread only).
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) }.into()).map(drop)
}

/// Clears the supplementary groups of this thread (raw syscall: libc would broadcast).
pub fn clear_groups() -> io::Result<()> {
    // SAFETY: a zero-length group list with a null pointer is valid.
    check(unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) })
        .map(drop)
}

/// Sets this thread's effective, permitted and inheritable capabilities to `keep`.
pub fn set_caps(keep: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (keep as u32, (keep >> 32) as u32);
    let header = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: `header` and `data` have the layout capset expects for version 3.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
        .map(drop)
}

/// Installs a seccomp filter on this thread (after setting no_new_privs).
pub fn seccomp_install(program: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seccomp program too long"))?,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())?;
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies it.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            1, /* SECCOMP_SET_MODE_FILTER */
            0,
            &prog as *const libc::sock_fprog,
        )
    })
    .map(drop)
}

/// Waits (without a timeout) until `fd` hangs up or fails (readability is not waited for);
/// returns its `revents`.
pub fn poll_hangup(fd: BorrowedFd<'_>) -> io::Result<i16> {
    let mut pfd = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    }];
    loop {
        // SAFETY: `pfd` is a valid array of one pollfd.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 1, -1) };
        if n >= 0 {
            return Ok(pfd[0].revents);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}
