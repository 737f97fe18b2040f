//! The raw system calls of the microVM tier's host side, each wrapped once with its safety
//! argument.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A connected pair of stream sockets, both close-on-exec.
pub fn socketpair() -> io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}

/// Sends `fd` over a unix socket with SCM_RIGHTS, together with `data` (at least one byte).
pub fn send_with_fd(sock: &UnixStream, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    send_with_fds(sock, data, &[fd])
}

/// Most fds one message carries here (a pool hands over three).
const MAX_FDS: usize = 4;

fn fd_space(n: usize) -> (u32, usize) {
    let len = u32::try_from(n * std::mem::size_of::<RawFd>()).unwrap_or(16);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = usize::try_from(unsafe { libc::CMSG_SPACE(len) }).unwrap_or(64);
    (len, space)
}

/// Sends `fds` (at most four) over a unix socket with SCM_RIGHTS, together with `data` (at
/// least one byte).
pub fn send_with_fds(sock: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS || data.is_empty() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let (len, space) = fd_space(fds.len());
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid before the fields are set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, enough for one cmsg holding fds.len() fds;
    // CMSG_FIRSTHDR is therefore non-null and CMSG_DATA has room for every fd.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(len) as usize;
        let slots = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            std::ptr::write_unaligned(slots.add(i), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: msg describes valid buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            // The message is small: the stream socket takes it whole or not at all here.
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives up to `buf.len()` bytes and the fds (at most four) sent with them; the fds are
/// close-on-exec. Returns the byte count and the fds.
pub fn recv_with_fds(sock: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let (_, space) = fd_space(MAX_FDS);
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is valid before the fields are set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: msg describes valid, writable buffers for the duration of the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break usize::try_from(n).unwrap_or(0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs; the CMSG_*
    // macros walk them within that length. Every SCM_RIGHTS fd is new and owned by nobody else.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = data.offset_from(cmsg.cast::<u8>());
                let bytes = (*cmsg)
                    .cmsg_len
                    .saturating_sub(usize::try_from(header).unwrap_or(0));
                let count = bytes / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more fds than expected",
        ));
    }
    Ok((n, fds))
}

/// The uid of the process at the other end of a unix socket.
pub fn peer_uid(sock: &UnixStream) -> io::Result<u32> {
    // SAFETY: ucred is plain data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>()).unwrap_or(12);
    // SAFETY: cred and len are valid for writing; the option's size is len.
    check(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    })?;
    Ok(cred.uid)
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `signal` to the process a pidfd refers to (it need not be our child).
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: pidfd_send_signal with a null siginfo and no flags takes no other pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the nice value of every thread of process `pid` (a process's threads each have their
/// own; a new thread inherits its creator's).
pub fn renice_all_threads(pid: u32, nice: i32) -> io::Result<()> {
    let tasks = std::path::PathBuf::from(format!("/proc/{pid}/task"));
    for entry in std::fs::read_dir(&tasks)? {
        let Ok(tid) = entry?.file_name().to_string_lossy().parse::<libc::id_t>() else {
            continue;
        };
        // SAFETY: setpriority takes plain integers.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) };
        if r < 0 {
            let e = io::Error::last_os_error();
            // A thread that ended meanwhile is fine.
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: pidfd_open takes a pid and flags, no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: pidfd_open returned a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in signals {
            libc::sigaddset(&mut set, *s);
        }
    }
    set
}

/// pthread_sigmask(how, set); returns the previous mask.
pub fn sigmask(how: libc::c_int, set: &libc::sigset_t) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid sigset_t.
    let r = unsafe { libc::pthread_sigmask(how, set, &mut old) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(old)
}

pub fn signalfd(set: &libc::sigset_t) -> io::Result<OwnedFd> {
    // SAFETY: set is a valid sigset_t; -1 asks for a new fd.
    let fd = check(unsafe { libc::signalfd(-1, set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: signalfd returned a new fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal number from a non-blocking signalfd.
pub fn read_signal(fd: BorrowedFd<'_>) -> Option<i32> {
    let mut info = [0u8; 128];
    // SAFETY: info is writable for its 128 bytes (one signalfd_siginfo).
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) };
    if n != 128 {
        return None;
    }
    i32::try_from(u32::from_ne_bytes([info[0], info[1], info[2], info[3]])).ok()
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
    // SAFETY: pfds is a valid array of pollfd of the given length.
    let r = unsafe {
        libc::poll(
            pfds.as_mut_ptr(),
            libc::nfds_t::try_from(pfds.len()).unwrap_or(0),
            timeout_ms,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents).collect())
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Writes all of `data` to a blocking fd.
pub fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: data is readable for its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        match usize::try_from(n) {
            Ok(n) => data = &data[n..],
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller holds; no pointers.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let new = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, new) }).map(drop)
}

/// A copy of the file at `path` in a memfd sealed against every change (write, grow, shrink,
/// and further seal changes): whoever gets the fd, even opened read-write, can map it only
/// privately (copy-on-write) and never alter it. Holes in the file stay holes.
pub fn sealed_copy(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileExt;
    let src = std::fs::File::open(path)?;
    let len = src.metadata()?.len();
    // SAFETY: the name is a NUL-terminated literal; flags are plain integers.
    let fd = check(unsafe {
        libc::memfd_create(
            c"cordon-snapshot".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    })?;
    // SAFETY: memfd_create returned a new fd nobody else owns.
    let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
    let dst = std::fs::File::from(memfd);
    dst.set_len(len)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut pos: u64 = 0;
    while pos < len {
        let off =
            libc::off_t::try_from(pos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: lseek on an fd we hold; no pointers.
        let data = unsafe { libc::lseek(src.as_raw_fd(), off, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(src.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let (mut at, end) = (
            u64::try_from(data).unwrap_or(len),
            u64::try_from(hole).unwrap_or(len),
        );
        while at < end {
            let want = usize::try_from((end - at).min(buf.len() as u64)).unwrap_or(buf.len());
            let n = src.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            dst.write_all_at(&buf[..n], at)?;
            at += n as u64;
        }
        pos = end;
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: fcntl on an fd we hold; no pointers.
    check(unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(OwnedFd::from(dst))
}

/// Every file some process has open (the targets of `/proc/*/fd/*`), as far as this process
/// may look.
pub fn open_files() -> std::collections::HashSet<std::path::PathBuf> {
    let mut open = std::collections::HashSet::new();
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let fds = proc_entry.path().join("fd");
        for fd in std::fs::read_dir(&fds).into_iter().flatten().flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                open.insert(target);
            }
        }
    }
    open
}

/// Whether a process with this pid exists.
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What [`enter_pid_namespace`] needs, made before fork.
#[derive(Debug, Clone, Copy)]
pub struct PidNamespace {
    /// Write end of a pipe on which the VMM's pid (as the caller sees it) is reported.
    pub report: RawFd,
    /// A pidfd of the process that spawns the VMM: readable once it has exited.
    pub parent_pidfd: RawFd,
}

/// Leaves the calling (forked) process for a sibling that is PID 1 of a new PID namespace:
/// `clone(CLONE_NEWPID | CLONE_PARENT)` makes it a child of the same parent (which reaps it),
/// its pid is written to `ns.report` as 4 native-endian bytes, and the forked process exits.
/// Returns in the new process, after tying it to the parent's life (PDEATHSIG, and an exit if
/// the parent is already gone: its pid cannot be named from inside the namespace, so the
/// parent's pidfd tells).
///
/// # Safety
/// Must only be called in the child between fork and exec (from `Command::pre_exec`). The new
/// process is a raw clone: it must only make async-signal-safe calls until it execs.
pub unsafe fn enter_pid_namespace(ns: PidNamespace) -> io::Result<()> {
    let flags = libc::CLONE_NEWPID | libc::CLONE_PARENT | libc::SIGCHLD;
    // SAFETY: clone without CLONE_VM and with a null stack forks: the new process runs on a
    // copy of this stack. Both sides only make async-signal-safe calls from here on.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            libc::c_ulong::try_from(flags).unwrap_or(0),
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if r > 0 {
        let pid = i32::try_from(r).unwrap_or(0).to_ne_bytes();
        // SAFETY: write/_exit are async-signal-safe; pid is 4 readable bytes.
        unsafe {
            libc::write(ns.report, pid.as_ptr().cast(), pid.len());
            libc::_exit(0);
        }
    }
    // SAFETY: prctl takes no pointers; exit_if_gone only polls an fd.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        exit_if_gone(ns.parent_pidfd);
    }
    Ok(())
}

/// Exits at once if the process behind `pidfd` has exited.
///
/// # Safety
/// Must only be called in the child between fork and exec.
unsafe fn exit_if_gone(pidfd: RawFd) {
    let mut p = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll/_exit are async-signal-safe; p is one valid pollfd.
    unsafe {
        if libc::poll(&mut p, 1, 0) != 0 {
            libc::_exit(1);
        }
    }
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: fds is writable for two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new fds nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for child `pid` to exit; returns its raw wait status.
pub fn wait_pid(pid: u32) -> io::Result<i32> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut status = 0;
    loop {
        // SAFETY: status is a valid int to write.
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

/// Who the VMM runs as, set up by [`confine_vmm_child`].
#[derive(Debug, Clone, Copy)]
pub struct VmmIdentity {
    /// The VMM's uid is this plus the pid of the process forked for it: unique among live
    /// VMMs, so one VMM can neither signal, trace nor see another (its /proc shows only
    /// processes of its own uid), PID namespace aside.
    pub uid_base: u32,
    /// The VMM's gid (shared by every VMM; the files a VMM must open read-write belong to it).
    pub gid: u32,
    /// The one supplementary group, when the VMM needs /dev/kvm (that node's group).
    pub kvm_gid: Option<u32>,
}

/// Confines the VMM process between fork and exec: it dies with cordon (SIGKILL on parent
/// death, and at once if the parent is already gone), gets its own mount, network, IPC and UTS
/// namespaces, a root of its own ([`enter_vmm_root`]), finds its inputs at fds 3, 4, 5, ...
/// (`fds` in that order), and runs as `who` with no capabilities (bounding set empty) and
/// no_new_privs.
///
/// # Safety
/// Must only be called in the child between fork and exec (from `Command::pre_exec`).
pub unsafe fn confine_vmm_child(
    parent: libc::pid_t,
    fds: &[RawFd],
    who: VmmIdentity,
    pid_ns: Option<PidNamespace>,
) -> io::Result<()> {
    // SAFETY: prctl/getppid/getpid/unshare are async-signal-safe and take no pointers; the
    // callees share this function's contract.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        // The uid comes from this process's pid, unique while it lives (and, with a PID
        // namespace, this process is gone at once: the VMM's own pid there is 1).
        let uid = who
            .uid_base
            .wrapping_add(u32::try_from(libc::getpid()).unwrap_or(0));
        if let Some(ns) = pid_ns {
            enter_pid_namespace(ns)?;
        }
        check(libc::unshare(libc::CLONE_NEWNS))?;
        // Best effort: a host without these namespaces still runs the VMM.
        let _ = libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS);
        enter_vmm_root(who.kvm_gid.is_some())?;
        place_fds(fds)?;
        drop_to(who, uid)?;
        // A credential change clears the parent-death signal: set it again.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        match pid_ns {
            Some(ns) => exit_if_gone(ns.parent_pidfd),
            None if libc::getppid() != parent => libc::_exit(1),
            None => {}
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    Ok(())
}

fn mount(
    src: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let p = |c: Option<&std::ffi::CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    check(unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, p(data).cast()) })
        .map(drop)
}

/// Gives the calling process (alone in a new mount namespace) a root holding only what the
/// VMM needs: a read-only tmpfs with `/usr` bound read-only (binary, libraries, firmware and
/// data files), the merged-usr `bin`/`lib`/`lib64`/`sbin` links, `/dev` with `null`, `zero`,
/// `random`, `urandom` (and `kvm` when `kvm`), and a `/proc` that shows only processes of the
/// VMM's own uid and no system files (`hidepid=invisible,subset=pid`: the VMM names its
/// inputs `/proc/self/fd/N`). No /etc, /home, /root, /var, /tmp, /dev/shm or /sys. The
/// process ends up chrooted into that tree, one level below its namespace's root (an empty
/// read-only tmpfs), so it cannot create a user namespace (EPERM for a chrooted caller).
///
/// # Safety
/// Must only be called in the child between fork and exec, after `unshare(CLONE_NEWNS)`.
/// Allocates nothing (every path is a literal).
pub unsafe fn enter_vmm_root(kvm: bool) -> io::Result<()> {
    let nosuid = libc::MS_NOSUID;
    let ro_bind = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | nosuid;
    mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
    // /tmp is only the mount point of the new root in this namespace; the host's is hidden.
    mount(
        Some(c"cordon-vmm"),
        c"/tmp",
        Some(c"tmpfs"),
        nosuid,
        Some(c"size=64k,nr_inodes=64,mode=0755"),
    )?;
    // SAFETY: a NUL-terminated literal.
    check(unsafe { libc::mkdir(c"/tmp/jail".as_ptr(), 0o755) })?;
    // Its own mount, so the chroot below is a mount root (and can be read-only on its own).
    mount(Some(c"/tmp/jail"), c"/tmp/jail", None, libc::MS_BIND, None)?;
    // SAFETY: mkdir/symlink/mknod/umask/open/close/chdir/syscall are async-signal-safe; every
    // path is a NUL-terminated literal.
    unsafe {
        let old_mask = libc::umask(0);
        for d in [c"/tmp/jail/usr", c"/tmp/jail/dev", c"/tmp/jail/proc"] {
            check(libc::mkdir(d.as_ptr(), 0o755))?;
        }
        for (target, link) in [
            (c"usr/bin", c"/tmp/jail/bin"),
            (c"usr/sbin", c"/tmp/jail/sbin"),
            (c"usr/lib", c"/tmp/jail/lib"),
            (c"usr/lib64", c"/tmp/jail/lib64"),
        ] {
            check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
        }
        for (node, minor) in [
            (c"/tmp/jail/dev/null", 3),
            (c"/tmp/jail/dev/zero", 5),
            (c"/tmp/jail/dev/random", 8),
            (c"/tmp/jail/dev/urandom", 9),
        ] {
            let dev = libc::makedev(1, minor);
            check(libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, dev))?;
        }
        if kvm {
            let fd = check(libc::open(
                c"/tmp/jail/dev/kvm".as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            ))?;
            libc::close(fd);
        }
        libc::umask(old_mask);
        if kvm {
            // The host's node, with its owner, group and mode.
            mount(
                Some(c"/dev/kvm"),
                c"/tmp/jail/dev/kvm",
                None,
                libc::MS_BIND,
                None,
            )?;
        }
        mount(
            Some(c"/usr"),
            c"/tmp/jail/usr",
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        mount(None, c"/tmp/jail/usr", None, ro_bind | libc::MS_NODEV, None)?;
        mount(
            Some(c"proc"),
            c"/tmp/jail/proc",
            Some(c"proc"),
            nosuid | libc::MS_NODEV | libc::MS_NOEXEC,
            Some(c"hidepid=invisible,subset=pid"),
        )?;
        mount(None, c"/tmp/jail", None, ro_bind, None)?;
        mount(None, c"/tmp", None, ro_bind, None)?;
        check(libc::chdir(c"/tmp".as_ptr()))?;
        // pivot_root(".", "."): the old root ends up stacked under the new one, and is then
        // detached from this namespace.
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) < 0 {
            return Err(io::Error::last_os_error());
        }
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        // Chrooted below the namespace's root: the kernel refuses a chrooted process a new
        // user namespace (which would hand it capabilities over its own namespaces).
        check(libc::chroot(c"/jail".as_ptr()))?;
        check(libc::chdir(c"/".as_ptr()))?;
    }
    Ok(())
}

/// Drops to `who`: the capability bounding and ambient sets emptied, supplementary groups
/// set to none (or /dev/kvm's group), then gid and uid. A change from uid 0 to a non-zero
/// uid clears the permitted and effective capabilities.
///
/// # Safety
/// Must only be called in the child between fork and exec. Allocates nothing.
pub unsafe fn drop_to(who: VmmIdentity, uid: u32) -> io::Result<()> {
    // SAFETY: prctl/getpid/setgroups/setresgid/setresuid are async-signal-safe; setgroups
    // reads `groups` (a local array) for the given length.
    unsafe {
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 {
                let e = io::Error::last_os_error();
                // EINVAL: no such capability on this kernel.
                if e.raw_os_error() != Some(libc::EINVAL) {
                    return Err(e);
                }
            }
        }
        let _ = libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let groups = [who.kvm_gid.unwrap_or(0)];
        let n = usize::from(who.kvm_gid.is_some());
        check(libc::setgroups(n, groups.as_ptr()))?;
        check(libc::setresgid(who.gid, who.gid, who.gid))?;
        check(libc::setresuid(uid, uid, uid))?;
    }
    Ok(())
}

/// Most fds [`place_fds`] places.
pub const MAX_CHILD_FDS: usize = 16;

/// Puts `fds` (at most [`MAX_CHILD_FDS`]) at fds 3, 4, 5, ... in that order, without
/// close-on-exec.
///
/// # Safety
/// Must only be called in the child between fork and exec (from `Command::pre_exec`).
pub unsafe fn place_fds(fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_CHILD_FDS {
        return Err(io::Error::from_raw_os_error(libc::E2BIG));
    }
    // SAFETY: fcntl/dup2 are async-signal-safe and take no pointers.
    unsafe {
        // The fds may sit at the target numbers already; move them out of the way first
        // (above every target). A fixed array: nothing may allocate between fork and exec.
        let mut moved = [-1; MAX_CHILD_FDS];
        for (slot, &fd) in moved.iter_mut().zip(fds) {
            *slot = check(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64))?;
        }
        for (i, &fd) in moved.iter().take(fds.len()).enumerate() {
            let target = 3 + libc::c_int::try_from(i).unwrap_or(0);
            check(libc::dup2(fd, target))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A shell confined exactly as a VMM is tries what a VMM taken over by its guest might:
    /// every attempt fails.
    #[test]
    fn a_confined_vmm_reaches_nothing_of_the_host() {
        use std::os::unix::process::CommandExt;
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: a_confined_vmm_reaches_nothing_of_the_host: needs root");
            return;
        }
        // A root-only file handed over as fd 3, and one the VMM group may write as fd 4.
        let dir = std::env::temp_dir().join(format!("cordon-vmm-jail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "secret").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let shared = dir.join("shared");
        std::fs::write(&shared, "").unwrap();
        std::os::unix::fs::chown(&shared, None, Some(7_000_000)).unwrap();
        std::fs::set_permissions(&shared, std::os::unix::fs::PermissionsExt::from_mode(0o660))
            .unwrap();
        let fds = [
            std::fs::File::open(&secret).unwrap(),
            std::fs::File::open(&shared).unwrap(),
        ];
        let raw = [fds[0].as_raw_fd(), fds[1].as_raw_fd()];
        let parent = libc::pid_t::try_from(std::process::id()).unwrap();
        let who = VmmIdentity {
            uid_base: 7_000_000,
            gid: 7_000_000,
            kvm_gid: None,
        };
        let script = r#"
            try() { if eval "$1" >/dev/null 2>&1; then echo "ALLOWED: $1"; fi; }
            try 'cat /etc/passwd'
            try 'ls /root'
            try 'ls /home'
            try 'ls /sys/kernel'
            try 'ls /dev/shm'
            try 'cat /dev/vda'
            try 'cat /proc/self/fd/3'
            try 'echo x > /usr/cordon-probe'
            try 'echo x > /cordon-probe'
            try 'echo x > /proc/sys/kernel/hostname'
            try 'kill -0 $HOSTPID'
            try 'cat /proc/$HOSTPID/status'
            try 'cat /proc/meminfo'
            try 'mount -t tmpfs none /dev'
            try 'umount /proc'
            try 'unshare -U true'
            try 'unshare -m true'
            echo "pid: $$"
            try 'ls /jail'
            echo x > /proc/self/fd/4 && echo "shared: writable"
            echo "id: $(id -u) $(id -G)"
        "#;
        // This test process, by its pid on the host.
        let host_pid = std::process::id().to_string();
        let (pid_r, pid_w) = pipe().unwrap();
        let own_pidfd = pidfd_open(std::process::id()).unwrap();
        let ns = PidNamespace {
            report: pid_w.as_raw_fd(),
            parent_pidfd: own_pidfd.as_raw_fd(),
        };
        let mut cmd = std::process::Command::new("/usr/bin/sh");
        cmd.args(["-c", script])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOSTPID", &host_pid)
            .stdin(std::process::Stdio::null());
        // SAFETY: confine_vmm_child only makes async-signal-safe calls, on fds that stay open
        // here until the command has run.
        unsafe {
            cmd.pre_exec(move || confine_vmm_child(parent, &raw, who, Some(ns)));
        }
        // Returns once the shell (a child of this process, as the VMM is of cordon) has
        // closed its output; it is then reaped by the pid it reported.
        let out = cmd.output().unwrap();
        drop(pid_w);
        let mut buf = [0u8; 4];
        assert_eq!(read(pid_r.as_raw_fd(), &mut buf).unwrap(), 4);
        let shell = u32::try_from(i32::from_ne_bytes(buf)).unwrap();
        let shell_status = wait_pid(shell).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && shell_status == 0,
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("pid: 1\n"),
            "not PID 1 of its own namespace: {text}"
        );
        assert!(!text.contains("ALLOWED"), "{text}");
        assert!(text.contains("shared: writable"), "{text}");
        assert!(text.contains("id: 70"), "{text}");
        assert!(!text.contains("id: 0"), "{text}");
    }

    #[test]
    fn sealed_copy_keeps_holes_and_refuses_every_write() {
        let path = std::env::temp_dir().join(format!("cordon-sealed-{}", std::process::id()));
        {
            let f = std::fs::File::create(&path).unwrap();
            f.set_len(8 << 20).unwrap();
            use std::os::unix::fs::FileExt;
            f.write_all_at(b"pristine", 4 << 20).unwrap();
        }
        let sealed = sealed_copy(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        // Reopened read-write through /proc, as a VMM does with its mem-path.
        let proc_path = format!("/proc/self/fd/{}", sealed.as_raw_fd());
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&proc_path)
            .unwrap();
        assert_eq!(f.metadata().unwrap().len(), 8 << 20);
        // Only the written page was copied (512-byte blocks).
        use std::os::unix::fs::MetadataExt;
        assert!(f.metadata().unwrap().blocks() <= 16, "holes were filled");
        let err = f.write_all(b"tampered").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        assert!(f.set_len(1).is_err());
        let len = 8 << 20;
        // SAFETY: a fresh mapping of an fd we hold, unmapped below; no Rust object aliases it.
        unsafe {
            let shared = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_eq!(
                shared,
                libc::MAP_FAILED,
                "a shared writable mapping was allowed"
            );
            let private = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(private, libc::MAP_FAILED);
            let p = private.cast::<u8>().add(4 << 20);
            assert_eq!(std::slice::from_raw_parts(p, 8), b"pristine");
            std::ptr::copy_nonoverlapping(b"guest!!!".as_ptr(), p, 8);
            libc::munmap(private, len);
        }
        let mut back = vec![0u8; 8];
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(4 << 20)).unwrap();
        f.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"pristine");
    }
}
