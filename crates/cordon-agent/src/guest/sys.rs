//! The raw system calls the guest agent makes, each wrapped once with its safety argument.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (s, t, f, d) = (cstr(source)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: all four pointers are NUL-terminated strings that outlive the call.
    check(unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            d.as_ptr().cast::<libc::c_void>(),
        )
    })
    .map(drop)
}

pub fn chroot(path: &str) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: p is a NUL-terminated string.
    check(unsafe { libc::chroot(p.as_ptr()) }).map(drop)
}

/// Loads a kernel module from an open file.
pub fn finit_module(fd: BorrowedFd<'_>) -> io::Result<()> {
    let params = c"";
    // SAFETY: finit_module takes an fd, a NUL-terminated parameter string and flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            fd.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot only returns on failure.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_POWER_OFF);
    }
    // Still here (not PID 1, or no permission): exiting PID 1 panics the guest, which the host
    // reports as well.
    std::process::exit(1)
}

/// Drops the cached blocks of a block device (BLKFLSBUF): a disk whose image the host swapped
/// under a restored guest must not be read through what the snapshot cached of the old one.
pub fn flush_block_cache(dev: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // BLKFLSBUF = _IO(0x12, 97).
    const BLKFLSBUF: libc::c_ulong = 0x1261;
    // SAFETY: BLKFLSBUF takes no argument; the fd is an open block device.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), BLKFLSBUF, 0) }).map(drop)
}

pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub fn set_realtime(secs: u64, nanos: u32) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(secs).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(nanos),
    };
    // SAFETY: ts is a valid timespec.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) }).map(drop)
}

/// Mixes `seed` into the kernel's entropy pool, credits it, and forces a reseed of the CRNG so
/// that clones of one snapshot do not share random streams.
pub fn add_entropy(seed: &[u8]) -> io::Result<()> {
    const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
    const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    let n = seed.len().min(256);
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = vec![0u8; 8 + n];
    let bits = i32::try_from(n * 8).unwrap_or(0);
    info[..4].copy_from_slice(&bits.to_ne_bytes());
    info[4..8].copy_from_slice(&i32::try_from(n).unwrap_or(0).to_ne_bytes());
    info[8..].copy_from_slice(&seed[..n]);
    // SAFETY: info holds a rand_pool_info header followed by buf_size bytes.
    check(unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG, 0) }).map(drop)
}

/// Brings the loopback interface up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let s =
        check(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: socket returned a new fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::from_ne_bytes([*src]);
    }
    // SAFETY: req is a valid ifreq naming "lo".
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::c_short::try_from(libc::IFF_UP).unwrap_or(1);
    }
    // SAFETY: req is a valid ifreq with the new flags.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }).map(drop)
}

/// Blocks SIGCHLD and returns a non-blocking signalfd that becomes readable when a child
/// changes state (the pump polls it next to the pipes).
pub fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the old mask is not needed.
    unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: set is a valid sigset_t; -1 asks for a new fd.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: signalfd returned a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new fds nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller owns; no pointers.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// poll(2) over (fd, events) pairs; returns the revents in the same order.
pub fn poll(fds: &[(RawFd, libc::c_short)], timeout_ms: i32) -> io::Result<Vec<libc::c_short>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: pfds is a valid array of pollfd of the given length.
        let r = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                libc::nfds_t::try_from(pfds.len()).unwrap_or(0),
                timeout_ms,
            )
        };
        if r >= 0 {
            return Ok(pfds.iter().map(|p| p.revents).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// waitpid(-1, WNOHANG): Some((pid, status)) for one reaped child.
pub fn reap_any() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

pub fn waitpid_blocking(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes no pointers.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the agent is single-threaded when it forks (the stdin writer thread starts
    // afterwards), and the child only makes async-signal-safe calls before exec.
    check(unsafe { libc::fork() })
}

/// What the forked child does before exec. Every string is prepared before the fork: the
/// child allocates nothing and only makes async-signal-safe calls.
pub struct ChildPlan {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// The CLOEXEC pipe the child reports a failure on (errno, then a stage byte).
    pub report: RawFd,
    pub workdir: CString,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    pub capabilities: u64,
    /// Candidate paths for argv[0], in PATH order.
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// The command's seccomp filter (empty: none).
    pub seccomp: Vec<libc::sock_filter>,
    /// NULL-terminated pointer tables into `argv` and `env` (a CString's bytes do not move
    /// when the vector holding it does).
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
}

impl ChildPlan {
    /// Fills the exec pointer tables; call once the plan is complete, before the fork.
    pub fn seal(&mut self) {
        self.argv_ptrs = self.argv.iter().map(|a| a.as_ptr()).collect();
        self.argv_ptrs.push(std::ptr::null());
        self.env_ptrs = self.env.iter().map(|a| a.as_ptr()).collect();
        self.env_ptrs.push(std::ptr::null());
    }

    pub fn new(argv: Vec<CString>, env: Vec<CString>, workdir: CString) -> Self {
        ChildPlan {
            stdin: -1,
            stdout: -1,
            stderr: -1,
            report: -1,
            workdir,
            uid: 0,
            gid: 0,
            capabilities: 0,
            candidates: Vec::new(),
            argv,
            env,
            seccomp: Vec::new(),
            argv_ptrs: Vec::new(),
            env_ptrs: Vec::new(),
        }
    }
}

/// Stages at which the child can fail, reported with errno.
pub mod stage {
    pub const SETUP: u8 = 1;
    pub const WORKDIR: u8 = 2;
    pub const CREDENTIALS: u8 = 3;
    pub const EXEC: u8 = 4;
    pub const SECCOMP: u8 = 5;
}

/// Decodes a seccomp program sent by the host (see `RunRequest::seccomp`); `None` if it is
/// malformed or longer than the kernel accepts (BPF_MAXINSNS).
pub fn decode_filter(bytes: &[u8]) -> Option<Vec<libc::sock_filter>> {
    if !bytes.len().is_multiple_of(8) || bytes.len() / 8 > 4096 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

const LAST_CAP: u32 = 63;

/// Runs in the forked child; never returns.
pub fn child_exec(plan: &ChildPlan) -> ! {
    let fail = |stage: u8, errno: i32| -> ! {
        let mut msg = [0u8; 5];
        msg[..4].copy_from_slice(&errno.to_ne_bytes());
        msg[4] = stage;
        // SAFETY: write and _exit are async-signal-safe; msg is valid for 5 bytes.
        unsafe {
            libc::write(plan.report, msg.as_ptr().cast(), msg.len());
            libc::_exit(127)
        }
    };
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: from here on only async-signal-safe system calls on prepared, NUL-terminated
    // strings and valid fds, in the child of a single-threaded fork.
    unsafe {
        if libc::setsid() < 0
            || libc::dup2(plan.stdin, 0) < 0
            || libc::dup2(plan.stdout, 1) < 0
            || libc::dup2(plan.stderr, 2) < 0
        {
            fail(stage::SETUP, errno());
        }
        // Everything but stdio and the CLOEXEC report pipe goes (the report pipe closes at
        // exec by itself).
        let report = u32::try_from(plan.report).unwrap_or(3);
        if report > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, report - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, report + 1, u32::MAX, 0u32);
        for sig in [libc::SIGPIPE, libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_DFL);
        }
        // The agent blocks SIGCHLD (it reads it from a signalfd); the command starts clean.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if libc::chdir(plan.workdir.as_ptr()) < 0 {
            fail(stage::WORKDIR, errno());
        }
        // Capabilities: drop everything outside the kept set from the bounding set, then
        // from the effective, permitted and inheritable sets.
        for cap in 0..=LAST_CAP {
            if plan.capabilities & (1u64 << cap) == 0 {
                let r = libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0);
                if r < 0 && errno() == libc::EINVAL {
                    break;
                }
            }
        }
        if libc::setgroups(0, std::ptr::null()) < 0
            || libc::setresgid(plan.gid, plan.gid, plan.gid) < 0
            || libc::setresuid(plan.uid, plan.uid, plan.uid) < 0
        {
            fail(stage::CREDENTIALS, errno());
        }
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let keep = if plan.uid == 0 { plan.capabilities } else { 0 };
        let lo = u32::try_from(keep & 0xffff_ffff).unwrap_or(0);
        let hi = u32::try_from(keep >> 32).unwrap_or(0);
        let header = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            CapData {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            CapData {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) < 0
            || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
        {
            fail(stage::CREDENTIALS, errno());
        }
        if !plan.seccomp.is_empty() {
            let prog = libc::sock_fprog {
                len: libc::c_ushort::try_from(plan.seccomp.len()).unwrap_or(0),
                filter: plan.seccomp.as_ptr().cast_mut(),
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                std::ptr::addr_of!(prog),
            ) < 0
            {
                fail(stage::SECCOMP, errno());
            }
        }
        let mut last = libc::ENOENT;
        for path in &plan.candidates {
            libc::execve(
                path.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.env_ptrs.as_ptr(),
            );
            let e = errno();
            // ENOENT/ENOTDIR: try the next PATH entry; anything else is the answer unless a
            // later entry works.
            if e != libc::ENOENT && e != libc::ENOTDIR {
                last = e;
            }
        }
        fail(stage::EXEC, last)
    }
}
