//! The supervisor: receives each trapped syscall, copies its arguments out of the workload,
//! resolves its paths in the sandbox's view, applies the policy, performs the call itself
//! and answers with the result (or installs the new fd in the workload and answers in one
//! step with `SECCOMP_ADDFD_FLAG_SEND`). Nothing is ever let through with
//! `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: a decision on memory the workload can still change
//! would be a time-of-check/time-of-use hole.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::audit::{AuditLog, Denial};
use crate::notify_policy;
use crate::sys::{self, Notification};
use crate::view::{self, canonical, join, judge, self_fd_path, Errno, SysResult, Verdict, View};

const PAGE: u64 = 4096;

/// What the workload gets back.
enum Reply {
    Val(i64),
    Fd(OwnedFd, bool),
    /// Nothing yet: a connect under way (see [`Connecting`]).
    Later(Connecting),
}

/// A `connect` on a blocking socket that could not complete at once (a TCP handshake, a unix
/// listener's full backlog). The supervisor started it without blocking and keeps serving the
/// sandbox's other calls; the caller stays suspended in its trapped call until the connect
/// completes, fails or the caller goes away. Performing it blocking would stall every trapped
/// call of the sandbox, and deadlock one whose listener needs a trapped call before it accepts.
#[derive(Debug)]
struct Connecting {
    id: u64,
    pid: u32,
    /// The caller's socket (same open file description).
    sock: OwnedFd,
    addr: Vec<u8>,
    /// The `O_PATH` fd a unix address's `/proc/self/fd/N` names, kept for retries.
    _holder: Option<OwnedFd>,
    /// A unix connect that met a full backlog: tried again (unix sockets do not report room
    /// in a listener's backlog); otherwise completion shows as writability.
    retry: bool,
}

/// How often a unix connect that met a full backlog is tried again.
const CONNECT_RETRY_MS: i32 = 5;
/// How often, with only handshakes under way, their callers are checked for being gone.
const CONNECT_CHECK_MS: i32 = 1000;

/// Runs `f` with the workload's filesystem ids unless it runs as root, so that permission
/// checks of what the supervisor does on its behalf are the workload's; if the switch fails,
/// `f` is not run.
fn with_fs_ids<T>(uid: u32, gid: u32, f: impl FnOnce() -> SysResult<T>) -> SysResult<T> {
    let switched = (uid != 0 || gid != 0).then(|| sys::set_fs_ids(uid, gid));
    let result = match &switched {
        Some(Err(_)) => Err(Errno(libc::EACCES)),
        _ => f(),
    };
    if let Some(Ok((u, g))) = switched {
        let _ = sys::set_fs_ids(u, g);
    }
    result
}

/// One trapped call and what has been learnt about its caller.
struct Call<'l> {
    n: Notification,
    listener: BorrowedFd<'l>,
    status: Option<Status>,
    pidfd: Option<OwnedFd>,
}

/// From /proc/TID/status.
#[derive(Clone, Copy)]
struct Status {
    tgid: u32,
    ns_tgid: u32,
    ns_tid: u32,
    umask: u32,
}

impl Call<'_> {
    fn arg(&self, i: usize) -> u64 {
        self.n.args[i]
    }

    #[allow(clippy::cast_possible_truncation)]
    fn arg_i32(&self, i: usize) -> i32 {
        self.n.args[i] as i32
    }

    /// Fails with ENOENT-like EINTR when the caller is gone (the data may be another
    /// process's); checked after every copy from the workload.
    fn still_valid(&self) -> SysResult<()> {
        if sys::notif_id_valid(self.listener, self.n.id) {
            Ok(())
        } else {
            Err(Errno(libc::EINTR))
        }
    }

    /// Copies a NUL-terminated string (at most PATH_MAX bytes) out of the caller.
    fn cstr(&self, addr: u64) -> SysResult<Vec<u8>> {
        if addr == 0 {
            return Err(Errno(libc::EFAULT));
        }
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < libc::PATH_MAX as usize {
            let chunk = usize::try_from(PAGE - at % PAGE).unwrap_or(1);
            let start = out.len();
            out.resize(start + chunk, 0);
            let got = sys::read_remote(self.n.pid, at, &mut out[start..])
                .map_err(|_| Errno(libc::EFAULT))?;
            out.truncate(start + got);
            if let Some(nul) = out[start..].iter().position(|&b| b == 0) {
                out.truncate(start + nul);
                self.still_valid()?;
                return Ok(out);
            }
            if got < chunk {
                return Err(Errno(libc::EFAULT));
            }
            at += chunk as u64;
        }
        Err(Errno(libc::ENAMETOOLONG))
    }

    /// Copies `len` bytes out of the caller.
    fn bytes(&self, addr: u64, len: usize) -> SysResult<Vec<u8>> {
        let mut buf = vec![0u8; len];
        if len > 0 {
            let got =
                sys::read_remote(self.n.pid, addr, &mut buf).map_err(|_| Errno(libc::EFAULT))?;
            if got != len {
                return Err(Errno(libc::EFAULT));
            }
        }
        self.still_valid()?;
        Ok(buf)
    }

    fn write(&self, addr: u64, data: &[u8]) -> SysResult<()> {
        sys::write_remote(self.n.pid, addr, data).map_err(|_| Errno(libc::EFAULT))
    }

    fn status(&mut self) -> SysResult<Status> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.n.pid))
            .map_err(|_| Errno(libc::ESRCH))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let last = |v: Vec<&str>| v.last().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        let umask = field("Umask:")
            .first()
            .and_then(|s| u32::from_str_radix(s, 8).ok())
            .unwrap_or(0o022);
        let s = Status {
            tgid: last(field("Tgid:")),
            ns_tgid: last(field("NStgid:")),
            ns_tid: last(field("NSpid:")),
            umask,
        };
        self.status = Some(s);
        Ok(s)
    }

    /// A pidfd for the caller's thread group.
    fn pidfd(&mut self) -> SysResult<BorrowedFd<'_>> {
        if self.pidfd.is_none() {
            let tgid = self.status()?.tgid;
            self.pidfd = Some(sys::pidfd_open(tgid)?);
        }
        Ok(self.pidfd.as_ref().expect("just set").as_fd())
    }

    /// A duplicate of the caller's fd `fd`.
    fn their_fd(&mut self, fd: i32) -> SysResult<OwnedFd> {
        let pidfd = self.pidfd()?;
        sys::pidfd_getfd(pidfd, fd).map_err(|_| Errno(libc::EBADF))
    }

    /// Applies the caller's umask to what the supervisor creates for it.
    fn use_umask(&mut self) -> SysResult<()> {
        let mask = self.status()?.umask;
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask) };
        Ok(())
    }

    /// A sandbox-absolute path for `path` relative to `dirfd` (AT_FDCWD or the caller's fd).
    fn absolute(&mut self, dirfd: i32, path: &[u8]) -> SysResult<Vec<u8>> {
        if path.is_empty() {
            return Err(Errno(libc::ENOENT));
        }
        if path[0] == b'/' {
            return self.rewrite_self(path);
        }
        let link = if dirfd == libc::AT_FDCWD {
            format!("/proc/{}/cwd", self.n.pid)
        } else {
            format!("/proc/{}/fd/{dirfd}", self.n.pid)
        };
        let link = CString::new(link).expect("no NUL");
        let base = sys::readlinkat(libc::AT_FDCWD, &link).map_err(|_| Errno(libc::EBADF))?;
        if base.first() != Some(&b'/') {
            return Err(Errno(libc::ENOTDIR));
        }
        if base.ends_with(b" (deleted)") {
            return Err(Errno(libc::ENOENT));
        }
        Ok(join(&base, path))
    }

    /// `/proc/self`, `/proc/thread-self` and the `/dev/std*` and `/dev/fd` links name the
    /// caller, which the supervisor (outside the sandbox's PID namespace) is not.
    fn rewrite_self(&mut self, path: &[u8]) -> SysResult<Vec<u8>> {
        let prefixed = |p: &[u8], pre: &[u8]| {
            p.starts_with(pre) && (p.len() == pre.len() || p[pre.len()] == b'/')
        };
        let fixed: &[(&[u8], &str)] = &[
            (b"/dev/stdin", "fd/0"),
            (b"/dev/stdout", "fd/1"),
            (b"/dev/stderr", "fd/2"),
        ];
        for (name, tail) in fixed {
            if path == *name {
                let s = self.status()?;
                return Ok(format!("/proc/{}/{tail}", s.ns_tgid).into_bytes());
            }
        }
        let swaps: &[(&[u8], bool)] = &[
            (b"/proc/self", false),
            (b"/proc/thread-self", true),
            (b"/dev/fd", false),
        ];
        for &(pre, thread) in swaps {
            if prefixed(path, pre) {
                let s = self.status()?;
                let mut out = if thread {
                    format!("/proc/{}/task/{}", s.ns_tgid, s.ns_tid)
                } else {
                    format!("/proc/{}", s.ns_tgid)
                }
                .into_bytes();
                if pre == b"/dev/fd" {
                    out.extend_from_slice(b"/fd");
                }
                out.extend_from_slice(&path[pre.len()..]);
                return Ok(out);
            }
        }
        Ok(path.to_vec())
    }

    /// Whether `path` (canonical) is one of the few /proc files by which a process tunes
    /// itself and which an unprivileged process may write: its own `oom_score_adj` (the
    /// kernel still refuses a lower score without `CAP_SYS_RESOURCE`, checked on the write)
    /// and its own `comm`. The rest of /proc stays read-only.
    fn own_tunable(&mut self, path: &[u8]) -> SysResult<bool> {
        if !path.starts_with(b"/proc/") {
            return Ok(false);
        }
        let s = self.status()?;
        let own = [
            format!("/proc/{}/oom_score_adj", s.ns_tgid),
            format!("/proc/{}/comm", s.ns_tgid),
            format!("/proc/{}/task/{}/comm", s.ns_tgid, s.ns_tid),
        ];
        Ok(own.iter().any(|o| o.as_bytes() == path))
    }

    /// Whether `abs` names the caller's own executable (`/proc/self/exe` after rewriting).
    fn own_exe(&mut self, abs: &[u8]) -> SysResult<bool> {
        if !abs.starts_with(b"/proc/") || !abs.ends_with(b"/exe") {
            return Ok(false);
        }
        let s = self.status()?;
        let own = format!("/proc/{}/exe", s.ns_tgid);
        let thread = format!("/proc/{}/task/{}/exe", s.ns_tgid, s.ns_tid);
        Ok(abs == own.as_bytes() || abs == thread.as_bytes())
    }

    /// A read-only fd of the caller's executable, opened through the host's /proc (the
    /// sandbox's /proc/PID/exe is a magic link the view never follows). The executable is a
    /// file the caller itself could execute, so it lies in its tree; the policy still applies
    /// to it. Checked afterwards that the caller still waits, so the tid was not reused.
    fn exe(&mut self) -> SysResult<OwnedFd> {
        let link = CString::new(format!("/proc/{}/exe", self.n.pid)).expect("no NUL");
        let fd = sys::openat(libc::AT_FDCWD, &link, libc::O_RDONLY | libc::O_NONBLOCK)
            .map_err(|_| Errno(libc::ENOENT))?;
        self.still_valid()?;
        sys::setfl(fd.as_fd(), 0)?;
        Ok(fd)
    }

    /// The fd number when `abs` names one of the caller's own fds through /proc.
    fn own_fd(&mut self, abs: &[u8]) -> SysResult<Option<i32>> {
        if !abs.starts_with(b"/proc/") {
            return Ok(None);
        }
        let s = self.status()?;
        let text = String::from_utf8_lossy(abs);
        let mut parts = text.trim_end_matches('/').split('/').skip(2);
        if parts.next() != Some(&s.ns_tgid.to_string()) {
            return Ok(None);
        }
        let rest: Vec<&str> = parts.collect();
        let n = match rest.as_slice() {
            ["fd", n] => n,
            ["task", _, "fd", n] => n,
            _ => return Ok(None),
        };
        Ok(n.parse().ok())
    }
}

/// `SECCOMP_IOCTL_NOTIF_ADDFD` cannot install `O_PATH` files (the kernel takes the source
/// with `fget`, which skips them), so an `O_PATH` open is answered with a read-only fd of the
/// same directory or regular file; other objects (symlinks, devices, FIFOs, sockets) cannot
/// be handed over this way and fail (ELOOP for a symlink, ENXIO otherwise).
fn path_substitute(fd: OwnedFd) -> SysResult<OwnedFd> {
    let st = sys::fstat_empty(fd.as_fd())?;
    let flags = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => libc::O_RDONLY | libc::O_DIRECTORY,
        libc::S_IFREG => libc::O_RDONLY | libc::O_NONBLOCK,
        libc::S_IFLNK => return Err(Errno(libc::ELOOP)),
        _ => return Err(Errno(libc::ENXIO)),
    };
    Ok(sys::openat(
        libc::AT_FDCWD,
        &self_fd_path(fd.as_fd(), None)?,
        flags,
    )?)
}

/// The supervisor of one sandbox.
#[derive(Debug)]
pub struct Supervisor {
    view: View,
    uid: u32,
    gid: u32,
    audit: AuditLog,
    pub handled: u64,
    /// Print every handled call on stderr (`CORDON_SENTRY_TRACE=1`).
    pub trace: bool,
    /// Connects under way, answered by [`Supervisor::serve`] as they complete.
    connecting: Vec<Connecting>,
}

fn cstring(b: &[u8]) -> SysResult<CString> {
    CString::new(b).map_err(|_| Errno(libc::EINVAL))
}

fn ret(r: libc::c_long) -> SysResult<i64> {
    sys::path_call(|| r).map_err(Errno::from)
}

fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: any initialised value can be viewed as bytes for its size.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

impl Supervisor {
    pub fn new(view: View, uid: u32, gid: u32, audit: AuditLog) -> Self {
        Supervisor {
            view,
            uid,
            gid,
            audit,
            handled: 0,
            trace: std::env::var_os("CORDON_SENTRY_TRACE").is_some(),
            connecting: Vec::new(),
        }
    }

    pub fn audit(&mut self) -> &mut AuditLog {
        &mut self.audit
    }

    /// Serves `listener` on the calling thread, which waits in `SECCOMP_IOCTL_NOTIF_RECV`
    /// between calls (no poll: one wakeup per call) unless connects are under way, until
    /// `stop` is set and the thread is interrupted with `SIGUSR1` (whose handler must do
    /// nothing and not restart calls).
    pub fn serve(&mut self, listener: BorrowedFd<'_>, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            if !self.connecting.is_empty() {
                match self.wait_connecting(listener) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => return,
                }
            }
            match sys::notif_recv(listener) {
                Ok(n) => self.answer(listener, n),
                // interrupted, or the caller died between the wakeup and the receive
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::ENOENT)) => {}
                Err(_) => return,
            }
        }
    }

    /// With connects under way: waits until the listener has a notification (true), or
    /// answers the connects that completed, failed or lost their caller (false).
    fn wait_connecting(&mut self, listener: BorrowedFd<'_>) -> std::io::Result<bool> {
        let retry = self.connecting.iter().any(|p| p.retry);
        let mut fds: Vec<libc::pollfd> = std::iter::once((listener.as_raw_fd(), libc::POLLIN))
            .chain(self.connecting.iter().map(|p| {
                let events = if p.retry { 0 } else { libc::POLLOUT };
                (p.sock.as_raw_fd(), events)
            }))
            .map(|(fd, events)| libc::pollfd {
                fd,
                events,
                revents: 0,
            })
            .collect();
        let timeout = if retry {
            CONNECT_RETRY_MS
        } else {
            CONNECT_CHECK_MS
        };
        if !sys::poll(&mut fds, timeout)? {
            return Ok(false); // interrupted: let the caller look at its stop flag
        }
        let (uid, gid) = (self.uid, self.gid);
        for (p, fd) in std::mem::take(&mut self.connecting)
            .into_iter()
            .zip(&fds[1..])
        {
            // A caller that died or was interrupted by a signal has no notification left.
            if !sys::notif_id_valid(listener, p.id) {
                continue;
            }
            let outcome = if p.retry {
                match with_fs_ids(uid, gid, || {
                    sys::connect_nonblocking(p.sock.as_fd(), &p.addr).map_err(Errno::from)
                }) {
                    Err(Errno(libc::EAGAIN)) => None,
                    Err(Errno(libc::EISCONN)) => Some(Ok(0)),
                    r => Some(r.map(|()| 0)),
                }
            } else if fd.revents != 0 {
                Some(match sys::socket_error(p.sock.as_fd()) {
                    Ok(0) => Ok(0),
                    Ok(e) => Err(Errno(e)),
                    Err(e) => Err(Errno::from(e)),
                })
            } else {
                None
            };
            match outcome {
                None => self.connecting.push(p),
                Some(result) => {
                    if self.trace {
                        eprintln!("cordon-sentry: [{}] connect completed {result:?}", p.pid);
                    }
                    let _ = match result {
                        Ok(v) => sys::notif_send(listener, p.id, v, 0),
                        Err(Errno(e)) => sys::notif_send(listener, p.id, 0, e),
                    };
                }
            }
        }
        Ok(fds[0].revents != 0)
    }

    /// Performs or refuses the call `n` and answers it.
    fn answer(&mut self, listener: BorrowedFd<'_>, n: Notification) {
        self.handled += 1;
        let mut call = Call {
            n,
            listener,
            status: None,
            pidfd: None,
        };
        // The calls are performed with the workload's identity; if the switch fails, none is.
        let (uid, gid) = (self.uid, self.gid);
        let result = with_fs_ids(uid, gid, || self.dispatch(&mut call));
        if self.trace {
            let shown = match &result {
                Ok(Reply::Val(v)) => format!("= {v}"),
                Ok(Reply::Fd(fd, _)) => format!("= fd ({:?})", canonical(fd.as_fd())),
                Ok(Reply::Later(_)) => "= (connect under way)".to_string(),
                Err(Errno(e)) => format!("= -{e}"),
            };
            eprintln!(
                "cordon-sentry: [{}] {}({:#x}, {:#x}, {:#x}, {:#x}) {shown}",
                n.pid,
                notify_policy::name(n.nr),
                n.args[0],
                n.args[1],
                n.args[2],
                n.args[3]
            );
        }
        let sent = match result {
            Ok(Reply::Val(v)) => sys::notif_send(listener, n.id, v, 0),
            Ok(Reply::Fd(fd, cloexec)) => {
                sys::notif_addfd_send(listener, n.id, fd.as_fd(), cloexec).map(drop)
            }
            Ok(Reply::Later(p)) => {
                self.connecting.push(p);
                Ok(())
            }
            Err(Errno(e)) => sys::notif_send(listener, n.id, 0, e),
        };
        if let Err(e) = sent {
            // The caller is gone (ENOENT), or installing the fd failed (EMFILE, ...): answer
            // with the error if it still waits, never leave it suspended.
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            if errno != libc::ENOENT {
                let _ = sys::notif_send(listener, n.id, 0, errno);
            }
        }
    }

    fn deny(
        &mut self,
        call: &Call<'_>,
        path: Option<&[u8]>,
        errno: i32,
        reason: &'static str,
    ) -> Errno {
        self.audit.record(&Denial {
            pid: call.n.pid,
            syscall: notify_policy::name(call.n.nr),
            path,
            detail: None,
            errno,
            reason,
        });
        Errno(errno)
    }

    /// Checks the policy on the object behind `fd`.
    fn check(&mut self, call: &Call<'_>, fd: BorrowedFd<'_>, write: bool) -> SysResult<()> {
        if !self.view.needs_check(fd) {
            return Ok(());
        }
        let path = canonical(fd)?;
        self.check_path(call, &path, write)
    }

    fn check_path(&mut self, call: &Call<'_>, path: &[u8], write: bool) -> SysResult<()> {
        match judge(path, write) {
            Verdict::Allow => Ok(()),
            Verdict::Hidden => Err(self.deny(call, Some(path), libc::ENOENT, "hidden path")),
            Verdict::ReadOnly => Err(self.deny(call, Some(path), libc::EACCES, "read-only path")),
        }
    }

    /// The parent directory of a path the call will create, remove or rename, checked for
    /// writing.
    fn parent(
        &mut self,
        call: &mut Call<'_>,
        dirfd: i32,
        path: &[u8],
    ) -> SysResult<(OwnedFd, Vec<u8>)> {
        let abs = call.absolute(dirfd, path)?;
        let (pfd, name) = self.view.resolve_parent(&abs)?;
        let name = name.to_vec();
        let full = join(&canonical(pfd.as_fd())?, &name);
        self.check_path(call, &full, true)?;
        Ok((pfd, name))
    }

    /// [`Self::target`] with `nofollow` and `empty` taken from a call's `AT_SYMLINK_NOFOLLOW`
    /// and `AT_EMPTY_PATH` flags.
    fn target_at(
        &mut self,
        call: &mut Call<'_>,
        dirfd: i32,
        path: &[u8],
        at_flags: i32,
        write: bool,
    ) -> SysResult<OwnedFd> {
        self.target(
            call,
            dirfd,
            path,
            at_flags & libc::AT_SYMLINK_NOFOLLOW != 0,
            at_flags & libc::AT_EMPTY_PATH != 0,
            write,
        )
    }

    /// An `O_PATH` fd for the object a stat-like call names (following the last symlink
    /// unless `nofollow`; `empty` allows the empty path for the dirfd itself).
    fn target(
        &mut self,
        call: &mut Call<'_>,
        dirfd: i32,
        path: &[u8],
        nofollow: bool,
        empty: bool,
        write: bool,
    ) -> SysResult<OwnedFd> {
        if path.is_empty() {
            if !empty {
                return Err(Errno(libc::ENOENT));
            }
            return if dirfd == libc::AT_FDCWD {
                let cwd = CString::new(format!("/proc/{}/cwd", call.n.pid)).expect("no NUL");
                Ok(sys::openat(libc::AT_FDCWD, &cwd, libc::O_PATH)?)
            } else {
                call.their_fd(dirfd)
            };
        }
        let abs = call.absolute(dirfd, path)?;
        if !nofollow {
            if let Some(n) = call.own_fd(&abs)? {
                return call.their_fd(n);
            }
        }
        let flags = libc::O_PATH | if nofollow { libc::O_NOFOLLOW } else { 0 };
        let fd = self.view.resolve(&abs, flags, 0, 0)?;
        self.check(call, fd.as_fd(), write)?;
        Ok(fd)
    }

    fn dispatch(&mut self, c: &mut Call<'_>) -> SysResult<Reply> {
        let nr = i64::from(c.n.nr);
        let at = libc::AT_FDCWD;
        let val = |v: i64| Ok(Reply::Val(v));
        match nr {
            libc::SYS_open => self.open(c, at, c.arg(0), c.arg_i32(1), c.arg(2), 0),
            libc::SYS_creat => self.open(
                c,
                at,
                c.arg(0),
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                c.arg(1),
                0,
            ),
            libc::SYS_openat => self.open(c, c.arg_i32(0), c.arg(1), c.arg_i32(2), c.arg(3), 0),
            libc::SYS_openat2 => {
                let size = usize::try_from(c.arg(3)).unwrap_or(usize::MAX);
                if size < 24 {
                    return Err(Errno(libc::EINVAL));
                }
                if size > 4096 {
                    return Err(Errno(libc::E2BIG));
                }
                let how = c.bytes(c.arg(2), size)?;
                if how[24..].iter().any(|&b| b != 0) {
                    return Err(Errno(libc::E2BIG));
                }
                let word = |i: usize| {
                    u64::from_ne_bytes(how[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
                };
                let flags = i32::try_from(word(0)).map_err(|_| Errno(libc::EINVAL))?;
                self.open(c, c.arg_i32(0), c.arg(1), flags, word(1), word(2))
            }
            libc::SYS_stat => self.stat(c, at, c.arg(0), c.arg(1), 0),
            libc::SYS_lstat => self.stat(c, at, c.arg(0), c.arg(1), libc::AT_SYMLINK_NOFOLLOW),
            libc::SYS_newfstatat => self.stat(c, c.arg_i32(0), c.arg(1), c.arg(2), c.arg_i32(3)),
            libc::SYS_statx => {
                let path = c.cstr(c.arg(1))?;
                let flags = c.arg_i32(2);
                let fd = self.target_at(c, c.arg_i32(0), &path, flags, false)?;
                #[allow(clippy::cast_possible_truncation)]
                let buf = sys::statx_empty(
                    fd.as_fd(),
                    flags & libc::AT_STATX_SYNC_TYPE,
                    c.arg(3) as u32,
                )?;
                c.write(c.arg(4), &buf)?;
                val(0)
            }
            libc::SYS_statfs => {
                let path = c.cstr(c.arg(0))?;
                let fd = self.target(c, at, &path, false, false, false)?;
                // SAFETY: statfs is plain data.
                let mut st: libc::statfs = unsafe { std::mem::zeroed() };
                // SAFETY: `st` is writable; fstatfs accepts O_PATH fds.
                ret(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) }.into())?;
                c.write(c.arg(1), as_bytes(&st))?;
                val(0)
            }
            libc::SYS_access => self.access(c, at, c.arg(0), c.arg_i32(1), 0),
            libc::SYS_faccessat => self.access(c, c.arg_i32(0), c.arg(1), c.arg_i32(2), 0),
            libc::SYS_faccessat2 => {
                self.access(c, c.arg_i32(0), c.arg(1), c.arg_i32(2), c.arg_i32(3))
            }
            libc::SYS_readlink => self.readlink(c, at, c.arg(0), c.arg(1), c.arg(2)),
            libc::SYS_readlinkat => self.readlink(c, c.arg_i32(0), c.arg(1), c.arg(2), c.arg(3)),
            libc::SYS_mkdir => self.mknod(c, at, c.arg(0), c.arg(1), None),
            libc::SYS_mkdirat => self.mknod(c, c.arg_i32(0), c.arg(1), c.arg(2), None),
            libc::SYS_mknod => self.mknod(c, at, c.arg(0), c.arg(1), Some(c.arg(2))),
            libc::SYS_mknodat => self.mknod(c, c.arg_i32(0), c.arg(1), c.arg(2), Some(c.arg(3))),
            libc::SYS_unlink => self.unlink(c, at, c.arg(0), 0),
            libc::SYS_rmdir => self.unlink(c, at, c.arg(0), libc::AT_REMOVEDIR),
            libc::SYS_unlinkat => self.unlink(c, c.arg_i32(0), c.arg(1), c.arg_i32(2)),
            libc::SYS_rename => self.rename(c, at, c.arg(0), at, c.arg(1), 0),
            libc::SYS_renameat => self.rename(c, c.arg_i32(0), c.arg(1), c.arg_i32(2), c.arg(3), 0),
            libc::SYS_renameat2 => {
                self.rename(c, c.arg_i32(0), c.arg(1), c.arg_i32(2), c.arg(3), c.arg(4))
            }
            libc::SYS_link => self.link(c, at, c.arg(0), at, c.arg(1), 0),
            libc::SYS_linkat => self.link(
                c,
                c.arg_i32(0),
                c.arg(1),
                c.arg_i32(2),
                c.arg(3),
                c.arg_i32(4),
            ),
            libc::SYS_symlink => self.symlink(c, c.arg(0), at, c.arg(1)),
            libc::SYS_symlinkat => self.symlink(c, c.arg(0), c.arg_i32(1), c.arg(2)),
            libc::SYS_chmod => self.chmod(c, at, c.arg(0), c.arg(1), 0),
            libc::SYS_fchmodat => self.chmod(c, c.arg_i32(0), c.arg(1), c.arg(2), 0),
            libc::SYS_fchmodat2 => self.chmod(c, c.arg_i32(0), c.arg(1), c.arg(2), c.arg_i32(3)),
            libc::SYS_chown => self.chown(c, at, c.arg(0), c.arg(1), c.arg(2), 0),
            libc::SYS_lchown => self.chown(
                c,
                at,
                c.arg(0),
                c.arg(1),
                c.arg(2),
                libc::AT_SYMLINK_NOFOLLOW,
            ),
            libc::SYS_fchownat => {
                self.chown(c, c.arg_i32(0), c.arg(1), c.arg(2), c.arg(3), c.arg_i32(4))
            }
            libc::SYS_truncate => {
                let path = c.cstr(c.arg(0))?;
                let fd = self.target(c, at, &path, false, false, true)?;
                let file = sys::openat(
                    libc::AT_FDCWD,
                    &self_fd_path(fd.as_fd(), None)?,
                    libc::O_WRONLY | libc::O_NONBLOCK,
                )?;
                #[allow(clippy::cast_possible_wrap)]
                // SAFETY: plain integers.
                ret(unsafe { libc::ftruncate(file.as_raw_fd(), c.arg(1) as i64) }.into())?;
                val(0)
            }
            libc::SYS_utimensat => {
                let times = if c.arg(2) == 0 {
                    None
                } else {
                    Some(c.bytes(c.arg(2), 32)?)
                };
                self.utimens(c, c.arg_i32(0), c.arg(1), times, c.arg_i32(3))
            }
            libc::SYS_utime | libc::SYS_utimes | libc::SYS_futimesat => {
                let (dirfd, path, tp) = if nr == libc::SYS_futimesat {
                    (c.arg_i32(0), c.arg(1), c.arg(2))
                } else {
                    (at, c.arg(0), c.arg(1))
                };
                let times = if tp == 0 {
                    None
                } else {
                    let raw = c.bytes(tp, if nr == libc::SYS_utime { 16 } else { 32 })?;
                    let w = |i: usize| {
                        i64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
                    };
                    let ts: [i64; 4] = if nr == libc::SYS_utime {
                        [w(0), 0, w(1), 0]
                    } else {
                        [w(0), w(1) * 1000, w(2), w(3) * 1000]
                    };
                    Some(ts.iter().flat_map(|v| v.to_ne_bytes()).collect())
                };
                if path == 0 {
                    return Err(Errno(libc::EFAULT));
                }
                self.utimens(c, dirfd, path, times, 0)
            }
            libc::SYS_getxattr
            | libc::SYS_lgetxattr
            | libc::SYS_listxattr
            | libc::SYS_llistxattr
            | libc::SYS_setxattr
            | libc::SYS_lsetxattr
            | libc::SYS_removexattr
            | libc::SYS_lremovexattr => self.xattr(c, nr),
            libc::SYS_name_to_handle_at => Err(Errno(libc::EOPNOTSUPP)),
            libc::SYS_inotify_add_watch => {
                let path = c.cstr(c.arg(1))?;
                #[allow(clippy::cast_possible_truncation)]
                let mask = c.arg(2) as u32;
                let fd =
                    self.target(c, at, &path, mask & libc::IN_DONT_FOLLOW != 0, false, false)?;
                let inotify = c.their_fd(c.arg_i32(0))?;
                let p = self_fd_path(fd.as_fd(), None)?;
                // SAFETY: `p` is NUL-terminated.
                val(ret(unsafe {
                    libc::inotify_add_watch(inotify.as_raw_fd(), p.as_ptr(), mask)
                }
                .into())?)
            }
            libc::SYS_socket => self.socket(c),
            libc::SYS_connect => self.sock_addr(c, false),
            libc::SYS_bind => self.sock_addr(c, true),
            _ => Err(Errno(libc::ENOSYS)),
        }
    }

    fn open(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        flags: i32,
        mode: u64,
        resolve: u64,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let cloexec = flags & libc::O_CLOEXEC != 0;
        let flags = flags & !libc::O_CLOEXEC;
        #[allow(clippy::cast_possible_truncation)]
        let mode = (mode & 0o7777) as u32;
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY
            || flags & (libc::O_CREAT | libc::O_TRUNC) != 0;
        if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
            c.use_umask()?;
        }
        let is_path = flags & libc::O_PATH != 0;
        // Open without blocking (a FIFO would stall the supervisor), then restore the flags.
        let added_nonblock = !is_path && flags & libc::O_NONBLOCK == 0;
        let open_flags = if added_nonblock {
            flags | libc::O_NONBLOCK
        } else {
            flags
        };
        let confined = resolve & (libc::RESOLVE_BENEATH | libc::RESOLVE_IN_ROOT) != 0;
        let fd = if confined {
            // The caller confines the walk to its own dirfd, which lies inside the sandbox.
            let base = if dirfd == libc::AT_FDCWD {
                let cwd = CString::new(format!("/proc/{}/cwd", c.n.pid)).expect("no NUL");
                sys::openat(libc::AT_FDCWD, &cwd, libc::O_PATH | libc::O_DIRECTORY)?
            } else {
                c.their_fd(dirfd)?
            };
            sys::openat2(
                base.as_fd(),
                &cstring(&path)?,
                open_flags | libc::O_CLOEXEC,
                mode,
                resolve | libc::RESOLVE_NO_MAGICLINKS,
            )?
        } else {
            let abs = c.absolute(dirfd, &path)?;
            if let Some(n) = c.own_fd(&abs)? {
                return self.reopen(c, n, flags, cloexec, &abs);
            }
            if c.own_exe(&abs)? {
                if write {
                    return Err(self.deny(c, Some(&abs), libc::ETXTBSY, "writing its executable"));
                }
                let fd = c.exe()?;
                self.check(c, fd.as_fd(), false)?;
                if is_path {
                    return Ok(Reply::Fd(path_substitute(fd)?, cloexec));
                }
                return Ok(Reply::Fd(fd, cloexec));
            }
            let extra = resolve
                & (libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV | libc::RESOLVE_CACHED);
            self.view.resolve(&abs, open_flags, mode, extra)?
        };
        if write && self.view.needs_check(fd.as_fd()) {
            let path = canonical(fd.as_fd())?;
            if !c.own_tunable(&path)? {
                self.check_path(c, &path, true)?;
            }
        } else {
            self.check(c, fd.as_fd(), write)?;
        }
        if is_path {
            return Ok(Reply::Fd(path_substitute(fd)?, cloexec));
        }
        if added_nonblock {
            sys::setfl(
                fd.as_fd(),
                flags & (libc::O_APPEND | libc::O_DIRECT | libc::O_NOATIME),
            )?;
        }
        Ok(Reply::Fd(fd, cloexec))
    }

    /// Opening /proc/self/fd/N again: allowed only without gaining access the fd lacks.
    fn reopen(
        &mut self,
        c: &mut Call<'_>,
        n: i32,
        flags: i32,
        cloexec: bool,
        abs: &[u8],
    ) -> SysResult<Reply> {
        let theirs = c.their_fd(n).map_err(|_| Errno(libc::ENOENT))?;
        let had = sys::getfl(theirs.as_fd())?;
        let want = flags & libc::O_ACCMODE;
        let had_mode = had & libc::O_ACCMODE;
        let gains_read =
            (want == libc::O_RDONLY || want == libc::O_RDWR) && had_mode == libc::O_WRONLY;
        let gains_write =
            (want == libc::O_WRONLY || want == libc::O_RDWR) && had_mode == libc::O_RDONLY;
        let from_path = had & libc::O_PATH != 0 && flags & libc::O_PATH == 0;
        if gains_read || gains_write || from_path {
            return Err(self.deny(
                c,
                Some(abs),
                libc::EACCES,
                "reopening an fd with more access",
            ));
        }
        let p = self_fd_path(theirs.as_fd(), None)?;
        let fd = sys::openat(
            libc::AT_FDCWD,
            &p,
            (flags & !libc::O_CREAT) | libc::O_NONBLOCK,
        )?;
        if flags & libc::O_NONBLOCK == 0 {
            sys::setfl(
                fd.as_fd(),
                flags & (libc::O_APPEND | libc::O_DIRECT | libc::O_NOATIME),
            )?;
        }
        Ok(Reply::Fd(fd, cloexec))
    }

    fn stat(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        buf: u64,
        flags: i32,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let fd = self.target_at(c, dirfd, &path, flags, false)?;
        let st = sys::fstat_empty(fd.as_fd())?;
        c.write(buf, as_bytes(&st))?;
        Ok(Reply::Val(0))
    }

    fn access(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        mode: i32,
        flags: i32,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let fd = self.target_at(c, dirfd, &path, flags, false)?;
        // SAFETY: the path is an empty C string; AT_EMPTY_PATH applies the check to `fd`.
        ret(unsafe {
            libc::syscall(
                libc::SYS_faccessat2,
                fd.as_raw_fd(),
                c"".as_ptr(),
                mode,
                libc::AT_EMPTY_PATH | libc::AT_EACCESS,
            )
        })?;
        Ok(Reply::Val(0))
    }

    fn readlink(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        buf: u64,
        size: u64,
    ) -> SysResult<Reply> {
        let size = usize::try_from(size).map_err(|_| Errno(libc::EINVAL))?;
        if size == 0 || size > i32::MAX as usize {
            return Err(Errno(libc::EINVAL));
        }
        let path = c.cstr(path_ptr)?;
        let fd = self.target(c, dirfd, &path, true, true, false)?;
        let target = sys::readlinkat(fd.as_raw_fd(), c"")?;
        let n = target.len().min(size);
        c.write(buf, &target[..n])?;
        Ok(Reply::Val(i64::try_from(n).unwrap_or(0)))
    }

    fn mknod(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        mode: u64,
        dev: Option<u64>,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let (pfd, name) = self.parent(c, dirfd, &path)?;
        let name = cstring(&name)?;
        c.use_umask()?;
        #[allow(clippy::cast_possible_truncation)]
        let mode = mode as libc::mode_t;
        // SAFETY: `name` is NUL-terminated; the rest are integers.
        let r = unsafe {
            match dev {
                None => libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), mode),
                Some(dev) => libc::mknodat(pfd.as_raw_fd(), name.as_ptr(), mode, dev),
            }
        };
        Ok(Reply::Val(ret(r.into())?))
    }

    fn unlink(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        flags: i32,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let (pfd, name) = self.parent(c, dirfd, &path)?;
        let name = cstring(&name)?;
        // SAFETY: `name` is NUL-terminated.
        Ok(Reply::Val(ret(unsafe {
            libc::unlinkat(pfd.as_raw_fd(), name.as_ptr(), flags)
        }
        .into())?))
    }

    fn rename(
        &mut self,
        c: &mut Call<'_>,
        od: i32,
        op: u64,
        nd: i32,
        np: u64,
        flags: u64,
    ) -> SysResult<Reply> {
        let (old, new) = (c.cstr(op)?, c.cstr(np)?);
        let (ofd, oname) = self.parent(c, od, &old)?;
        let (nfd, nname) = self.parent(c, nd, &new)?;
        let (oname, nname) = (cstring(&oname)?, cstring(&nname)?);
        // SAFETY: the names are NUL-terminated.
        Ok(Reply::Val(ret(unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                ofd.as_raw_fd(),
                oname.as_ptr(),
                nfd.as_raw_fd(),
                nname.as_ptr(),
                flags,
            )
        })?))
    }

    fn link(
        &mut self,
        c: &mut Call<'_>,
        od: i32,
        op: u64,
        nd: i32,
        np: u64,
        flags: i32,
    ) -> SysResult<Reply> {
        let (old, new) = (c.cstr(op)?, c.cstr(np)?);
        if flags & libc::AT_EMPTY_PATH != 0 {
            return Err(Errno(libc::ENOENT)); // needs CAP_DAC_READ_SEARCH, which the workload lacks
        }
        let (nfd, nname) = self.parent(c, nd, &new)?;
        let nname = cstring(&nname)?;
        if flags & libc::AT_SYMLINK_FOLLOW != 0 {
            let fd = self.target(c, od, &old, false, false, true)?;
            let p = self_fd_path(fd.as_fd(), None)?;
            // SAFETY: the paths are NUL-terminated.
            return Ok(Reply::Val(ret(unsafe {
                libc::linkat(
                    libc::AT_FDCWD,
                    p.as_ptr(),
                    nfd.as_raw_fd(),
                    nname.as_ptr(),
                    libc::AT_SYMLINK_FOLLOW,
                )
            }
            .into())?));
        }
        let (ofd, oname) = self.parent(c, od, &old)?;
        let oname = cstring(&oname)?;
        // SAFETY: the names are NUL-terminated.
        Ok(Reply::Val(ret(unsafe {
            libc::linkat(
                ofd.as_raw_fd(),
                oname.as_ptr(),
                nfd.as_raw_fd(),
                nname.as_ptr(),
                0,
            )
        }
        .into())?))
    }

    fn symlink(
        &mut self,
        c: &mut Call<'_>,
        tp: u64,
        dirfd: i32,
        path_ptr: u64,
    ) -> SysResult<Reply> {
        let target = cstring(&c.cstr(tp)?)?;
        let path = c.cstr(path_ptr)?;
        let (pfd, name) = self.parent(c, dirfd, &path)?;
        let name = cstring(&name)?;
        // SAFETY: both strings are NUL-terminated. The target is stored, never resolved here.
        Ok(Reply::Val(ret(unsafe {
            libc::symlinkat(target.as_ptr(), pfd.as_raw_fd(), name.as_ptr())
        }
        .into())?))
    }

    fn chmod(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        mode: u64,
        flags: i32,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let nofollow = flags & libc::AT_SYMLINK_NOFOLLOW != 0;
        let fd = self.target(
            c,
            dirfd,
            &path,
            nofollow,
            flags & libc::AT_EMPTY_PATH != 0,
            true,
        )?;
        if nofollow && sys::fstat_empty(fd.as_fd())?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(Errno(libc::EOPNOTSUPP));
        }
        let p = self_fd_path(fd.as_fd(), None)?;
        #[allow(clippy::cast_possible_truncation)]
        // SAFETY: `p` is NUL-terminated.
        Ok(Reply::Val(ret(unsafe {
            libc::fchmodat(libc::AT_FDCWD, p.as_ptr(), mode as libc::mode_t, 0)
        }
        .into())?))
    }

    fn chown(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        uid: u64,
        gid: u64,
        flags: i32,
    ) -> SysResult<Reply> {
        let path = c.cstr(path_ptr)?;
        let fd = self.target_at(c, dirfd, &path, flags, true)?;
        #[allow(clippy::cast_possible_truncation)]
        // SAFETY: the path is an empty C string; AT_EMPTY_PATH applies the call to `fd`.
        Ok(Reply::Val(ret(unsafe {
            libc::fchownat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                uid as u32,
                gid as u32,
                libc::AT_EMPTY_PATH,
            )
        }
        .into())?))
    }

    fn utimens(
        &mut self,
        c: &mut Call<'_>,
        dirfd: i32,
        path_ptr: u64,
        times: Option<Vec<u8>>,
        flags: i32,
    ) -> SysResult<Reply> {
        let tp = times
            .as_ref()
            .map_or(std::ptr::null(), |t| t.as_ptr().cast::<libc::timespec>());
        if path_ptr == 0 {
            // utimensat(fd, NULL, ...): the caller's own fd.
            let fd = c.their_fd(dirfd)?;
            // SAFETY: `tp` is null or points at two timespecs we own.
            return Ok(Reply::Val(ret(unsafe {
                libc::syscall(
                    libc::SYS_utimensat,
                    fd.as_raw_fd(),
                    std::ptr::null::<libc::c_char>(),
                    tp,
                    0,
                )
            })?));
        }
        let path = c.cstr(path_ptr)?;
        let r = if flags & libc::AT_SYMLINK_NOFOLLOW != 0 {
            let (pfd, name) = self.parent(c, dirfd, &path)?;
            let name = cstring(&name)?;
            // SAFETY: `name` is NUL-terminated; `tp` is null or two timespecs.
            unsafe {
                libc::utimensat(
                    pfd.as_raw_fd(),
                    name.as_ptr(),
                    tp,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            }
        } else {
            let fd = self.target(
                c,
                dirfd,
                &path,
                false,
                flags & libc::AT_EMPTY_PATH != 0,
                true,
            )?;
            let p = self_fd_path(fd.as_fd(), None)?;
            // SAFETY: `p` is NUL-terminated; `tp` is null or two timespecs.
            unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), tp, 0) }
        };
        Ok(Reply::Val(ret(r.into())?))
    }

    fn xattr(&mut self, c: &mut Call<'_>, nr: i64) -> SysResult<Reply> {
        let nofollow = matches!(
            nr,
            libc::SYS_lgetxattr
                | libc::SYS_llistxattr
                | libc::SYS_lsetxattr
                | libc::SYS_lremovexattr
        );
        let write = matches!(
            nr,
            libc::SYS_setxattr
                | libc::SYS_lsetxattr
                | libc::SYS_removexattr
                | libc::SYS_lremovexattr
        );
        let path = c.cstr(c.arg(0))?;
        // The object: for the l* calls its parent and name, with a path that stops at it.
        let (holder, p) = if nofollow {
            let (pfd, name) = if write {
                self.parent(c, libc::AT_FDCWD, &path)?
            } else {
                let abs = c.absolute(libc::AT_FDCWD, &path)?;
                let (pfd, name) = self.view.resolve_parent(&abs)?;
                let name = name.to_vec();
                self.check_path(c, &join(&canonical(pfd.as_fd())?, &name), false)?;
                (pfd, name)
            };
            let p = self_fd_path(pfd.as_fd(), Some(&name))?;
            (pfd, p)
        } else {
            let fd = self.target(c, libc::AT_FDCWD, &path, false, false, write)?;
            let p = self_fd_path(fd.as_fd(), None)?;
            (fd, p)
        };
        let _keep = holder;
        let is_list = matches!(nr, libc::SYS_listxattr | libc::SYS_llistxattr);
        let name = if is_list {
            None
        } else {
            Some(cstring(&c.cstr(c.arg(1))?)?)
        };
        let np = name
            .as_ref()
            .map_or(std::ptr::null(), |n: &CString| n.as_ptr());
        let pp: &CStr = &p;
        match nr {
            libc::SYS_getxattr
            | libc::SYS_lgetxattr
            | libc::SYS_listxattr
            | libc::SYS_llistxattr => {
                let (addr, size) = if is_list {
                    (c.arg(1), c.arg(2))
                } else {
                    (c.arg(2), c.arg(3))
                };
                let size = usize::try_from(size).unwrap_or(usize::MAX).min(1 << 16);
                let mut buf = vec![0u8; size];
                let bp = if size == 0 {
                    std::ptr::null_mut()
                } else {
                    buf.as_mut_ptr().cast()
                };
                // SAFETY: `buf` is writable for `size` bytes; the strings are NUL-terminated.
                let r = unsafe {
                    match nr {
                        libc::SYS_getxattr => libc::getxattr(pp.as_ptr(), np, bp, size),
                        libc::SYS_lgetxattr => libc::lgetxattr(pp.as_ptr(), np, bp, size),
                        libc::SYS_listxattr => libc::listxattr(pp.as_ptr(), bp.cast(), size),
                        _ => libc::llistxattr(pp.as_ptr(), bp.cast(), size),
                    }
                };
                let n = ret(r as libc::c_long)?;
                if size > 0 {
                    c.write(addr, &buf[..usize::try_from(n).unwrap_or(0)])?;
                }
                Ok(Reply::Val(n))
            }
            libc::SYS_setxattr | libc::SYS_lsetxattr => {
                let size = usize::try_from(c.arg(3)).unwrap_or(usize::MAX);
                if size > 1 << 16 {
                    return Err(Errno(libc::E2BIG));
                }
                let value = c.bytes(c.arg(2), size)?;
                #[allow(clippy::cast_possible_truncation)]
                let flags = c.arg(4) as i32;
                // SAFETY: `value` holds `size` bytes; the strings are NUL-terminated.
                let r = unsafe {
                    if nr == libc::SYS_setxattr {
                        libc::setxattr(pp.as_ptr(), np, value.as_ptr().cast(), size, flags)
                    } else {
                        libc::lsetxattr(pp.as_ptr(), np, value.as_ptr().cast(), size, flags)
                    }
                };
                Ok(Reply::Val(ret(r.into())?))
            }
            _ => {
                // SAFETY: the strings are NUL-terminated.
                let r = unsafe {
                    if nr == libc::SYS_removexattr {
                        libc::removexattr(pp.as_ptr(), np)
                    } else {
                        libc::lremovexattr(pp.as_ptr(), np)
                    }
                };
                Ok(Reply::Val(ret(r.into())?))
            }
        }
    }

    fn socket(&mut self, c: &mut Call<'_>) -> SysResult<Reply> {
        let (domain, ty, proto) = (c.arg_i32(0), c.arg_i32(1), c.arg_i32(2));
        let allowed = match domain {
            libc::AF_UNIX | libc::AF_INET | libc::AF_INET6 => true,
            libc::AF_NETLINK => proto == libc::NETLINK_ROUTE,
            _ => false,
        };
        if !allowed {
            let e = self.deny(c, None, libc::EAFNOSUPPORT, "socket family not allowed");
            return Err(e);
        }
        let fd = sys::socket(domain, ty & !libc::SOCK_CLOEXEC, proto)?;
        Ok(Reply::Fd(fd, ty & libc::SOCK_CLOEXEC != 0))
    }

    fn sock_addr(&mut self, c: &mut Call<'_>, bind: bool) -> SysResult<Reply> {
        let len = usize::try_from(c.arg(2)).unwrap_or(usize::MAX);
        if len > std::mem::size_of::<libc::sockaddr_storage>() {
            return Err(Errno(libc::EINVAL));
        }
        let mut addr = c.bytes(c.arg(1), len)?;
        let sock = c.their_fd(c.arg_i32(0))?;
        let family = if len >= 2 {
            i32::from(u16::from_ne_bytes([addr[0], addr[1]]))
        } else {
            libc::AF_UNSPEC
        };
        let holder: Option<OwnedFd>;
        match family {
            libc::AF_UNIX if len > 2 && addr[2] != 0 => {
                let end = addr[2..]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(len, |p| p + 2);
                let path = addr[2..end].to_vec();
                let (fd, magic) = if bind {
                    c.use_umask()?;
                    let (pfd, name) = self.parent(c, libc::AT_FDCWD, &path)?;
                    let p = self_fd_path(pfd.as_fd(), Some(&name))?;
                    (pfd, p)
                } else {
                    let fd = self.target(c, libc::AT_FDCWD, &path, false, false, true)?;
                    let p = self_fd_path(fd.as_fd(), None)?;
                    (fd, p)
                };
                holder = Some(fd);
                let bytes = magic.as_bytes_with_nul();
                if bytes.len() > 108 {
                    return Err(Errno(libc::ENAMETOOLONG));
                }
                addr.truncate(2);
                addr.extend_from_slice(bytes);
            }
            libc::AF_UNIX | libc::AF_INET | libc::AF_INET6 | libc::AF_NETLINK | libc::AF_UNSPEC => {
                holder = None;
            }
            _ => {
                let e = self.deny(c, None, libc::EAFNOSUPPORT, "address family not allowed");
                return Err(e);
            }
        }
        if !bind && sys::getfl(sock.as_fd())? & libc::O_NONBLOCK == 0 {
            return Self::connect_blocking(c, sock, addr, holder, family == libc::AF_UNIX);
        }
        let r = sys::sock_addr_call(sock.as_fd(), &addr, bind)?;
        drop(holder);
        Ok(Reply::Val(r))
    }

    /// `connect` on a blocking socket: tried without blocking, answered later if it cannot
    /// complete at once ([`Connecting`]).
    fn connect_blocking(
        c: &Call<'_>,
        sock: OwnedFd,
        addr: Vec<u8>,
        holder: Option<OwnedFd>,
        unix: bool,
    ) -> SysResult<Reply> {
        let retry = match sys::connect_nonblocking(sock.as_fd(), &addr) {
            Ok(()) => return Ok(Reply::Val(0)),
            // EALREADY: a restarted call (after a signal) finds its handshake still going.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINPROGRESS | libc::EALREADY)) => false,
            Err(e) if unix && e.raw_os_error() == Some(libc::EAGAIN) => true,
            Err(e) => return Err(Errno::from(e)),
        };
        Ok(Reply::Later(Connecting {
            id: c.n.id,
            pid: c.n.pid,
            sock,
            addr,
            _holder: holder,
            retry,
        }))
    }
}

/// The supervisor's own view helpers, re-exported for the tier.
pub use view::READ_ONLY as READ_ONLY_PATHS;
