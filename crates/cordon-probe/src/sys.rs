//! Checked wrappers over the raw kernel interfaces the probes attack.
//!
//! Every `unsafe` block of the crate lives here, each with the invariant it relies on. The
//! wrappers return `io::Result` (the errno is what a probe judges) and never panic, so they are
//! usable in forked children. Buffers handed to the kernel are sized here, never by callers.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_long(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor a successful syscall just returned.
fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(check_long(ret)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "descriptor out of range"))?;
    // SAFETY: the kernel just returned `fd` as a new descriptor of this process; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// What `fork` returned in this process.
#[derive(Debug)]
pub(crate) enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// `fork()`.
///
/// # Safety
/// The caller must be single-threaded: the child gets only the calling thread, so a lock held
/// by another thread (the allocator's, stdio's) would never be released in it.
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees there is no other thread; fork has no memory arguments.
    match check(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `waitpid`: (pid, wait status); pid 0 with `WNOHANG` when the child still runs.
pub(crate) fn waitpid(pid: libc::pid_t, flags: libc::c_int) -> io::Result<(libc::pid_t, i32)> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for the kernel to fill.
        match check(unsafe { libc::waitpid(pid, &mut status, flags) }) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(p) => return Ok((p, status)),
        }
    }
}

pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Leaves the process at once, without running destructors or flushing stdio (a forked child
/// must not flush buffers it inherited from its parent).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and takes no memory arguments.
    unsafe { libc::_exit(code) }
}

/// Sleeps until a signal kills the process.
pub(crate) fn pause_forever() -> ! {
    loop {
        // SAFETY: pause has no arguments.
        unsafe { libc::pause() };
    }
}

pub(crate) fn getpid() -> libc::pid_t {
    // SAFETY: getpid cannot fail and has no arguments.
    unsafe { libc::getpid() }
}

pub(crate) fn getppid() -> libc::pid_t {
    // SAFETY: getppid cannot fail and has no arguments.
    unsafe { libc::getppid() }
}

pub(crate) fn getuid() -> u32 {
    // SAFETY: getuid cannot fail and has no arguments.
    unsafe { libc::getuid() }
}

pub(crate) fn getgid() -> u32 {
    // SAFETY: getgid cannot fail and has no arguments.
    unsafe { libc::getgid() }
}

/// `prctl(PR_SET_PDEATHSIG, SIGKILL)`: die with the parent.
pub(crate) fn die_with_parent() -> io::Result<()> {
    let sig = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
    // SAFETY: PR_SET_PDEATHSIG takes a signal number, no memory.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) }).map(drop)
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(n) => return Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
            }
        }
    }
}

pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        match usize::try_from(n) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// `poll` on one descriptor for `events`; true when it is ready before `timeout_ms`.
pub(crate) fn poll_one(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd.
    let n = check(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(n > 0)
}

/// `open(2)` with exactly `flags` (no O_CLOEXEC added): for descriptors meant to be inherited.
pub(crate) fn open_raw(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is NUL-terminated; the mode argument is unused without O_CREAT.
    owned(libc::c_long::from(unsafe {
        libc::open(c.as_ptr(), flags, 0)
    }))
}

/// Whether `fd` is an open descriptor of this process (`fcntl(F_GETFD)` opens nothing).
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; an unused number gives EBADF.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The soft `RLIMIT_NOFILE`.
pub(crate) fn max_fds() -> u64 {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    }
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid stat buffer for the kernel to fill.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The filesystem magic number (`f_type`) of the filesystem holding `fd`.
pub(crate) fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid statfs buffer for the kernel to fill.
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type)
}

/// (total bytes, bytes available to unprivileged users) of the filesystem holding `path`.
pub(crate) fn fs_space(path: &Path) -> io::Result<(u64, u64)> {
    let c = cpath(path)?;
    // SAFETY: an all-zero statvfs is a valid value of this plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` a valid buffer for the kernel to fill.
    check(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    Ok((
        st.f_blocks.saturating_mul(st.f_frsize),
        st.f_bavail.saturating_mul(st.f_frsize),
    ))
}

pub(crate) fn ioctl_none(fd: BorrowedFd<'_>, request: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the requests used with this wrapper take no argument.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), request, 0) })
}

pub(crate) fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let nul = |_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte");
    let (src, fs, data) = (
        CString::new(source).map_err(nul)?,
        CString::new(fstype).map_err(nul)?,
        CString::new(data).map_err(nul)?,
    );
    let tgt = cpath(target)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })
    .map(drop)
}

pub(crate) fn umount_detach(target: &Path) -> io::Result<()> {
    let tgt = cpath(target)?;
    // SAFETY: `tgt` is NUL-terminated.
    check(unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes flags only.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub(crate) fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and flags only.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

pub(crate) fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is NUL-terminated.
    check(unsafe { libc::mknod(c.as_ptr(), mode, dev) }).map(drop)
}

pub(crate) fn makedev(major: u32, minor: u32) -> libc::dev_t {
    libc::makedev(major, minor)
}

/// `ptrace(request, pid, 0, 0)` for the attach requests (SEIZE, ATTACH), which take no memory.
pub(crate) fn ptrace_attach(request: libc::c_uint, pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: with null addr and data the attach requests read and write no memory of ours.
    check_long(unsafe {
        libc::ptrace(
            request,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    })
    .map(drop)
}

pub(crate) fn socket(
    domain: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only.
    owned(libc::c_long::from(unsafe {
        libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto)
    }))
}

/// `init_module(image, len, params)`.
pub(crate) fn init_module(image: &[u8], params: &CStr) -> io::Result<()> {
    // SAFETY: `image` is valid for `image.len()` bytes and `params` is NUL-terminated; the
    // kernel only reads them.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            image.as_ptr(),
            image.len(),
            params.as_ptr(),
        )
    })
    .map(drop)
}

pub(crate) fn finit_module(fd: BorrowedFd<'_>, params: &CStr) -> io::Result<()> {
    // SAFETY: `params` is NUL-terminated; the kernel only reads it.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            fd.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    })
    .map(drop)
}

/// `kexec_load(0, nr_segments, NULL, 0)`. With `nr_segments` above KEXEC_SEGMENT_MAX (16) the
/// kernel refuses with EINVAL right after its permission checks, before reading any segment
/// and without touching a loaded image.
pub(crate) fn kexec_load_invalid(nr_segments: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the segment pointer is null and is never read (the count is rejected first).
    check_long(unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0 as libc::c_ulong,
            nr_segments,
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_ulong,
        )
    })
    .map(drop)
}

/// `bpf(cmd, attr, attr.len())`; returns the new descriptor.
pub(crate) fn bpf(cmd: libc::c_int, attr: &[u8; 128]) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a valid 128-byte buffer; the commands used here only read it.
    owned(unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) })
}

/// `perf_event_open(attr, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC)`.
pub(crate) fn perf_event_open(attr: &[u8; 128], pid: libc::pid_t, cpu: i32) -> io::Result<OwnedFd> {
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    // SAFETY: `attr` is a valid buffer of at least the size recorded in it; the kernel reads
    // it (and may write back the size it supports, within those bytes).
    owned(unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            pid,
            cpu,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    })
}

pub(crate) fn userfaultfd(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: userfaultfd takes flags only.
    owned(unsafe { libc::syscall(libc::SYS_userfaultfd, flags) })
}

/// `add_key(type, description, payload, keyring)`; returns the key's serial number.
pub(crate) fn add_key(ty: &CStr, desc: &CStr, payload: &[u8], keyring: i32) -> io::Result<i32> {
    // SAFETY: the strings are NUL-terminated and `payload` is valid for its length; the kernel
    // only reads them.
    let id = check_long(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            ty.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            keyring,
        )
    })?;
    Ok(i32::try_from(id).unwrap_or(-1))
}

/// `keyctl(op, arg)` for operations taking one integer argument (INVALIDATE, UNLINK, ...).
pub(crate) fn keyctl(
    op: libc::c_int,
    arg2: libc::c_long,
    arg3: libc::c_long,
) -> io::Result<libc::c_long> {
    // SAFETY: the operations used with this wrapper take integers only.
    check_long(unsafe { libc::syscall(libc::SYS_keyctl, op, arg2, arg3) })
}

/// `io_uring_setup(entries, params)`; `params` is the kernel's 120-byte `io_uring_params`.
pub(crate) fn io_uring_setup(entries: u32, params: &mut [u8; 120]) -> io::Result<OwnedFd> {
    // SAFETY: `params` is a valid, writable 120-byte io_uring_params for the kernel to fill.
    owned(unsafe { libc::syscall(libc::SYS_io_uring_setup, entries, params.as_mut_ptr()) })
}

/// The kernel's `struct file_handle` with room for 128 bytes of handle.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileHandle {
    pub handle_bytes: u32,
    pub handle_type: i32,
    pub f_handle: [u8; 128],
}

/// `name_to_handle_at(fd, "", handle, mount_id, AT_EMPTY_PATH)`: the handle of `fd` itself.
pub(crate) fn name_to_handle(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    let mut h = FileHandle {
        handle_bytes: 128,
        handle_type: 0,
        f_handle: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: the path is an empty NUL-terminated string, `h` has room for `handle_bytes`
    // bytes of handle after its header, and `mount_id` is a valid int to fill.
    check_long(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut h as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            libc::AT_EMPTY_PATH,
        )
    })?;
    Ok(h)
}

pub(crate) fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: `handle` is a valid file_handle whose `handle_bytes` fits its buffer; the kernel
    // only reads it.
    owned(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            handle as *const FileHandle,
            flags | libc::O_CLOEXEC,
        )
    })
}

pub(crate) fn clock_gettime(clock: libc::clockid_t) -> io::Result<libc::timespec> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    check(unsafe { libc::clock_gettime(clock, &mut ts) })?;
    Ok(ts)
}

pub(crate) fn clock_settime(clock: libc::clockid_t, ts: &libc::timespec) -> io::Result<()> {
    // SAFETY: `ts` is a valid timespec the kernel only reads.
    check(unsafe { libc::clock_settime(clock, ts) }).map(drop)
}

/// `syslog(SYSLOG_ACTION_READ_ALL, buf, len)`: reads the kernel log ring without consuming it.
pub(crate) fn syslog_read_all(buf: &mut [u8]) -> io::Result<usize> {
    const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
    let len = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `buf` is valid for writes of `len` bytes.
    let n = check(unsafe { libc::klogctl(SYSLOG_ACTION_READ_ALL, buf.as_mut_ptr().cast(), len) })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `sched_setscheduler(0, SCHED_FIFO, priority)` for the calling process.
pub(crate) fn set_fifo_priority(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param the kernel only reads.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) }).map(drop)
}

/// `uname -r` and `uname -v` of the running kernel (uname(2): no filesystem involved, so a
/// runtime that hides /proc/sys cannot make it look like another kernel).
pub fn kernel_release_and_version() -> io::Result<String> {
    // SAFETY: utsname is plain data; all-zero is a valid value for the kernel to fill.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname that lives across the call.
    check(unsafe { libc::uname(&mut u) })?;
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c.to_ne_bytes()[0])
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(format!("{} {}", field(&u.release), field(&u.version)))
}
