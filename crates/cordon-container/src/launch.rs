//! The child side of a container launch: the container's PID 1 sets the container up, reports
//! readiness, waits for `start`, then forks the workload and stays as a minimal init that
//! forwards signals and reports the workload's exit status.
//!
//! Messages to the parent go over the status pipe as `[tag][u32 length][payload]`, each in one
//! `write` below PIPE_BUF, so they are atomic.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::{CapSets, ContainerConfig, LaunchMode, ProcessConfig};
use crate::rootfs::{self, Context, SetupError};
use crate::sys;

pub(crate) const MSG_READY: u8 = b'R';
pub(crate) const MSG_SETUP_ERROR: u8 = b'E';
pub(crate) const MSG_NOT_FOUND: u8 = b'N';
pub(crate) const MSG_NOT_EXECUTABLE: u8 = b'A';
pub(crate) const MSG_WAIT_STATUS: u8 = b'W';
/// The child paused at a hook point (payload: its name) and waits for [`HOOK_DONE`].
pub(crate) const MSG_HOOK_POINT: u8 = b'H';
/// The byte the parent sends to start the workload.
pub(crate) const START: u8 = b'g';
/// The byte the parent sends when the hooks of a hook point ran.
pub(crate) const HOOK_DONE: u8 = b'h';

/// Signals the init relays to the workload.
pub(crate) const FORWARDED: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
];

/// Everything the child needs, prepared by the parent before the clone so that the child does
/// no parsing and little allocation.
#[derive(Debug)]
pub(crate) struct ChildConfig<'a> {
    pub cfg: &'a ContainerConfig,
    pub scratch: &'a Path,
    pub userns: bool,
    pub argv: Vec<CString>,
    pub argv0: String,
    pub env: Vec<CString>,
    /// Candidate paths for argv[0] (one if it contains a '/', else one per PATH entry).
    pub exec_candidates: Vec<CString>,
    pub cwd: CString,
    pub last_cap: u8,
    pub workload_filter: Option<Vec<libc::sock_filter>>,
    /// The supervised-syscall filter and the socket its listener fd is sent over.
    pub notify_filter: Option<Vec<libc::sock_filter>>,
    pub notify_sock: Option<OwnedFd>,
    pub init_filter: Vec<libc::sock_filter>,
    /// v1 `tasks` files to write "0" to (empty on v2, where the clone placed us already).
    pub cgroup_tasks: Vec<OwnedFd>,
    /// Namespaces to join: (CLONE_NEW* type, fd).
    pub join: Vec<(libc::c_int, OwnedFd)>,
    pub status_w: OwnedFd,
    /// Start byte (attached mode) and hook acknowledgements from the parent.
    pub control_r: OwnedFd,
    pub life_r: OwnedFd,
    /// A connected socket to send a terminal's master to (detached mode with a terminal).
    pub console: Option<OwnedFd>,
}

pub(crate) fn send(fd: BorrowedFd<'_>, tag: u8, payload: &[u8]) {
    let payload = &payload[..payload.len().min(3000)];
    let mut msg = Vec::with_capacity(5 + payload.len());
    msg.push(tag);
    msg.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_le_bytes());
    msg.extend_from_slice(payload);
    let _ = sys::write_all(fd, &msg);
}

/// What the setup leaves for the init.
struct Prepared {
    /// The pty's child side, when the process has a terminal.
    tty: Option<OwnedFd>,
    /// The start FIFO (detached mode), opened before pivot_root.
    fifo: Option<OwnedFd>,
}

/// Entry point of the cloned child (PID 1 of the new PID namespace). Never returns.
pub(crate) fn child_main(cfg: ChildConfig<'_>) -> ! {
    let prepared = match setup(&cfg) {
        Ok(p) => p,
        Err(e) => {
            send(
                cfg.status_w.as_fd(),
                MSG_SETUP_ERROR,
                e.to_string().as_bytes(),
            );
            sys::exit_now(125);
        }
    };
    send(cfg.status_w.as_fd(), MSG_READY, &[]);
    match &prepared.fifo {
        None => {
            let mut go = [0u8; 1];
            match sys::read(cfg.control_r.as_fd(), &mut go) {
                Ok(1) if go[0] == START => {}
                _ => sys::exit_now(0), // the parent gave up before starting us
            }
        }
        Some(fifo) => {
            // Blocks until `start` opens the FIFO for reading.
            let opened = sys::openat(None, &sys::fd_path(fifo.as_fd()), libc::O_WRONLY, 0)
                .and_then(|w| sys::write_all(w.as_fd(), b"0"));
            if opened.is_err() {
                sys::exit_now(125);
            }
        }
    }
    init_main(cfg, prepared)
}

fn hook_point(cfg: &ChildConfig<'_>, name: &str) -> Result<(), SetupError> {
    if !cfg.cfg.hook_points {
        return Ok(());
    }
    send(cfg.status_w.as_fd(), MSG_HOOK_POINT, name.as_bytes());
    let mut ack = [0u8; 1];
    match sys::read(cfg.control_r.as_fd(), &mut ack) {
        Ok(1) if ack[0] == HOOK_DONE => Ok(()),
        _ => sys::exit_now(125), // a hook failed; the parent reports it
    }
}

fn setup(cfg: &ChildConfig<'_>) -> Result<Prepared, SetupError> {
    let c = cfg.cfg;
    if c.mode == LaunchMode::Attached {
        // Die with the parent; if it is already gone, the lifeline pipe has hung up.
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
            .step(|| "setting the parent-death signal".into())?;
        let mut pfd = [libc::pollfd {
            fd: cfg.life_r.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if sys::poll(&mut pfd, 0).is_ok() && pfd[0].revents & libc::POLLHUP != 0 {
            sys::exit_now(125);
        }
    }
    hide_command_line();
    // Nothing in the container may open this process's /proc/1/{exe,mem,fd,root}: that would
    // expose the runtime binary and host resources.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).step(|| "marking the init non-dumpable".into())?;
    if let Some(maps) = &c.id_maps {
        let fmt = |m: &[(u32, u32, u32)]| {
            m.iter()
                .map(|(i, o, n)| format!("{i} {o} {n}\n"))
                .collect::<String>()
        };
        let write = |file: &str, text: String| {
            std::fs::write(file, text).step(|| format!("writing {file}"))
        };
        write("/proc/self/setgroups", "deny".into())?;
        write("/proc/self/uid_map", fmt(&maps.uid))?;
        write("/proc/self/gid_map", fmt(&maps.gid))?;
    }
    for (kind, fd) in &cfg.join {
        sys::setns(fd.as_fd(), *kind).step(|| format!("joining namespace type {kind:#x}"))?;
    }
    for fd in &cfg.cgroup_tasks {
        sys::write_all(fd.as_fd(), b"0").step(|| "joining the container's cgroups".into())?;
    }
    if c.namespaces.create & libc::CLONE_NEWCGROUP != 0 {
        sys::unshare(libc::CLONE_NEWCGROUP).step(|| "creating the cgroup namespace".into())?;
    }
    hook_point(cfg, "namespaces")?;
    for (key, value) in &c.sysctls {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).step(|| format!("setting sysctl {key}"))?;
    }
    let fifo = match &c.mode {
        LaunchMode::Detached { start_fifo, .. } => Some(
            sys::openat(None, start_fifo, libc::O_PATH, 0)
                .step(|| format!("opening {}", start_fifo.display()))?,
        ),
        LaunchMode::Attached => None,
    };
    rootfs::enter(&c.root, cfg.scratch, cfg.userns, &mut || {
        hook_point(cfg, "mounts")
    })?;
    if let Some(name) = &c.hostname {
        sys::sethostname(name).step(|| "setting the hostname".into())?;
    }
    if c.loopback_up {
        sys::loopback_up().step(|| "bringing up lo".into())?;
    }
    let tty = if c.process.terminal {
        let (master, child) = sys::open_pty().step(|| "allocating a terminal".into())?;
        if let Some(sock) = &cfg.console {
            sys::send_fd(sock.as_fd(), master.as_fd())
                .step(|| "sending the terminal to the console socket".into())?;
        }
        Some(child)
    } else {
        None
    };
    if fifo.is_some() {
        // runc reports a missing executable at create time; so do we.
        resolve_executable(cfg).map_err(|why| SetupError {
            step: format!("exec: {:?}", cfg.argv0),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, why),
        })?;
    }
    Ok(Prepared { tty, fifo })
}

/// Overwrites this process's argument area (what /proc/PID/cmdline shows) with a neutral
/// name: the init is visible inside the container, and cordon's own command line names host
/// paths (mount sources, bundles). PR_SET_MM would move the area but needs CAP_SYS_RESOURCE.
fn hide_command_line() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    // Fields 48 and 49 (arg_start, arg_end); `rest` starts at field 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(start), Some(end)) = (
        fields.get(45).and_then(|f| f.parse::<usize>().ok()),
        fields.get(46).and_then(|f| f.parse::<usize>().ok()),
    ) else {
        return;
    };
    if end <= start || end - start > 1 << 20 {
        return;
    }
    let name = b"cordon-init";
    // SAFETY: [start, end) is this process's own argv area, mapped writable on its stack (the
    // kernel reports it for this very process); Rust copied the arguments at startup and
    // nothing refers to the original bytes any more. Only bytes inside the area are written.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        let n = name.len().min(area.len().saturating_sub(1));
        area[..n].copy_from_slice(&name[..n]);
    }
}

fn resolve_executable(cfg: &ChildConfig<'_>) -> Result<(), String> {
    for path in &cfg.exec_candidates {
        // SAFETY: `path` is NUL-terminated.
        if unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0 {
            return Ok(());
        }
    }
    Err("executable file not found in $PATH".into())
}

/// Drops every capability not in `keep` from the bounding set.
fn drop_bounding(keep: u64, last_cap: u8) -> std::io::Result<()> {
    for cap in 0..=last_cap {
        if keep & (1u64 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap)) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

fn become_user(cfg: &ChildConfig<'_>, caps: CapSets, no_new_privs: bool) -> std::io::Result<()> {
    assume_identity(
        &cfg.cfg.process,
        cfg.userns,
        cfg.last_cap,
        caps,
        no_new_privs,
    )
}

/// Takes on the process's identity and capability sets.
pub(crate) fn assume_identity(
    p: &ProcessConfig,
    userns: bool,
    last_cap: u8,
    caps: CapSets,
    no_new_privs: bool,
) -> std::io::Result<()> {
    drop_bounding(caps.bounding, last_cap)?;
    if caps.permitted != 0 {
        sys::prctl(libc::PR_SET_KEEPCAPS, 1)?;
    }
    if !userns {
        let mut groups = vec![p.gid];
        groups.extend(&p.additional_gids);
        sys::setgroups(&groups)?;
    }
    sys::setresgid(p.gid)?;
    sys::setresuid(p.uid)?;
    sys::capset(caps.effective, caps.permitted, caps.inheritable)?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )?;
    for cap in 0..=last_cap {
        if caps.ambient & (1u64 << cap) != 0 {
            sys::prctl3(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
            )?;
        }
    }
    if no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)?;
    }
    Ok(())
}

fn init_main(cfg: ChildConfig<'_>, prepared: Prepared) -> ! {
    let attached = cfg.cfg.mode == LaunchMode::Attached;
    let mut waited: Vec<libc::c_int> = FORWARDED.to_vec();
    waited.push(libc::SIGCHLD);
    let set = sys::sigset(&waited);
    for &s in FORWARDED {
        let _ = sys::set_handler(s, true);
    }
    if sys::sigprocmask(libc::SIG_BLOCK, &set).is_err() {
        sys::exit_now(125);
    }
    // SAFETY: the container's init is single-threaded (a clone of the single-threaded parent).
    let pid = match unsafe { sys::fork() } {
        Ok(0) => workload_main(&cfg, prepared.tty),
        Ok(pid) => pid,
        Err(e) => {
            send(
                cfg.status_w.as_fd(),
                MSG_SETUP_ERROR,
                format!("forking the workload: {e}").as_bytes(),
            );
            sys::exit_now(125);
        }
    };
    drop(prepared);
    // Confine the init itself before anything the workload does can reach it. In detached mode
    // nobody reads the status pipe any more; close it too.
    let keep = if attached {
        cfg.status_w.as_raw_fd()
    } else {
        -1
    };
    let keep = u32::try_from(keep).ok();
    let closed = match keep {
        Some(fd) => sys::close_range(0, fd.saturating_sub(1))
            .and_then(|()| sys::close_range(fd + 1, u32::MAX)),
        None => sys::close_range(0, u32::MAX),
    };
    let confined = become_user(&cfg, CapSets::default(), true)
        .and(closed)
        .and_then(|()| sys::seccomp_install(&cfg.init_filter));
    if let Err(e) = confined {
        let _ = sys::kill(pid, libc::SIGKILL);
        if attached {
            send(
                cfg.status_w.as_fd(),
                MSG_SETUP_ERROR,
                format!("confining the container's init: {e}").as_bytes(),
            );
        }
        sys::exit_now(125);
    }
    loop {
        let Ok((sig, _)) = sys::sigwaitinfo(&set) else {
            continue;
        };
        if sig != libc::SIGCHLD {
            let _ = sys::kill(pid, sig);
            continue;
        }
        while let Ok((reaped, status)) = sys::waitpid(-1, libc::WNOHANG) {
            if reaped <= 0 {
                break;
            }
            if reaped == pid {
                // Exiting kills everything else left in the PID namespace.
                if attached {
                    send(cfg.status_w.as_fd(), MSG_WAIT_STATUS, &status.to_le_bytes());
                    sys::exit_now(0);
                }
                sys::exit_now(if libc::WIFSIGNALED(status) {
                    128 + libc::WTERMSIG(status)
                } else {
                    libc::WEXITSTATUS(status)
                });
            }
        }
    }
}

/// The tail of starting a process in a container, shared with `exec`: terminal, rlimits,
/// identity, workdir, fds, seccomp, then execve over the PATH candidates. Failures go to
/// stderr (exit 125, 126 or 127).
#[allow(clippy::too_many_arguments)]
pub(crate) fn exec_process(
    p: &ProcessConfig,
    userns: bool,
    last_cap: u8,
    cwd: &CString,
    argv: &[CString],
    env: &[CString],
    candidates: &[CString],
    filter: Option<&[libc::sock_filter]>,
    notify: Option<(&[libc::sock_filter], BorrowedFd<'_>)>,
    tty: Option<OwnedFd>,
) -> ! {
    let fail = |what: &str, e: std::io::Error, code: i32| -> ! {
        // SAFETY: fd 2 is this process's stderr, open for the whole call.
        let stderr = unsafe { BorrowedFd::borrow_raw(2) };
        let _ = sys::write_all(stderr, format!("cordon: {what}: {e}\n").as_bytes());
        sys::exit_now(code);
    };
    if let Some(tty) = tty {
        if let Err(e) = sys::make_controlling_terminal(tty.as_fd()) {
            fail("setting up the terminal", e, 125);
        }
    }
    for &(resource, soft, hard) in &p.rlimits {
        if let Err(e) = sys::setrlimit(resource, soft, hard) {
            fail(&format!("setting rlimit {resource}"), e, 125);
        }
    }
    // Without no_new_privs a filter can only be installed while CAP_SYS_ADMIN is still held.
    let filter_early = !p.no_new_privileges;
    if filter_early {
        if let Some(filter) = filter {
            if let Err(e) = sys::seccomp_install(filter) {
                fail("installing the seccomp filter", e, 125);
            }
        }
    }
    if let Err(e) = assume_identity(p, userns, last_cap, p.caps, p.no_new_privileges) {
        fail("dropping privileges", e, 125);
    }
    // SAFETY: `cwd` is NUL-terminated.
    if unsafe { libc::chdir(cwd.as_ptr()) } != 0 {
        fail(
            &format!("changing to {cwd:?}"),
            std::io::Error::last_os_error(),
            125,
        );
    }
    if let Err(e) = sys::cloexec_from(3) {
        fail("closing inherited file descriptors", e, 125);
    }
    if !filter_early {
        if let Some(filter) = filter {
            if let Err(e) = sys::seccomp_install(filter) {
                fail("installing the seccomp filter", e, 125);
            }
        }
    }
    if let Some(rules) = &p.landlock {
        if let Err(e) = crate::landlock::restrict_self(rules) {
            fail("restricting the process with landlock", e.into_io(), 125);
        }
    }
    if let Some((notify_filter, sock)) = notify {
        // As for the container's first process: the supervised-syscall filter comes last and
        // its listener goes to the supervisor over `sock`.
        match sys::seccomp_install_listener(notify_filter) {
            Ok(listener) => {
                if let Err(e) = sys::send_fd(sock, listener.as_fd()) {
                    fail("handing the seccomp listener to the supervisor", e, 125);
                }
            }
            Err(e) => fail("installing the supervised-syscall filter", e, 125),
        }
    }
    let mut denied = None;
    for path in candidates {
        let err = sys::execve(path, argv, env);
        match err.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => {}
            _ => {
                denied.get_or_insert((path.clone(), err));
            }
        }
    }
    match denied {
        Some((path, err)) => fail(&format!("exec {path:?}"), err, 126),
        None => fail(
            &format!("exec {:?}", argv[0]),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "executable file not found in $PATH",
            ),
            127,
        ),
    }
}

/// Reports a workload failure: on the status pipe when attached, on stderr when detached
/// (the creator has exited; the engine collects the container's stderr).
fn report(cfg: &ChildConfig<'_>, tag: u8, text: &str) {
    if cfg.cfg.mode == LaunchMode::Attached {
        send(cfg.status_w.as_fd(), tag, text.as_bytes());
    } else {
        let what = if tag == MSG_NOT_FOUND {
            ": executable file not found"
        } else {
            ""
        };
        let _ = sys::write_all(
            // SAFETY: fd 2 is the container's stderr, open for the whole call.
            unsafe { BorrowedFd::borrow_raw(2) },
            format!("cordon: {text}{what}\n").as_bytes(),
        );
    }
}

fn workload_main(cfg: &ChildConfig<'_>, tty: Option<OwnedFd>) -> ! {
    let p = &cfg.cfg.process;
    let fail = |what: &str, e: std::io::Error| -> ! {
        report(cfg, MSG_SETUP_ERROR, &format!("{what}: {e}"));
        sys::exit_now(125);
    };
    for &s in FORWARDED {
        let _ = sys::set_handler(s, false);
    }
    if let Err(e) = sys::sigprocmask(libc::SIG_SETMASK, &sys::sigset(&[])) {
        fail("resetting the signal mask", e);
    }
    if let Some(tty) = tty {
        if let Err(e) = sys::make_controlling_terminal(tty.as_fd()) {
            fail("setting up the terminal", e);
        }
    }
    for &(resource, soft, hard) in &p.rlimits {
        if let Err(e) = sys::setrlimit(resource, soft, hard) {
            fail(&format!("setting rlimit {resource}"), e);
        }
    }
    if let Some(adj) = p.oom_score_adj {
        if let Err(e) = std::fs::write("/proc/self/oom_score_adj", adj.to_string()) {
            fail("setting oom_score_adj", e);
        }
    }
    // Without no_new_privs a filter can only be installed while CAP_SYS_ADMIN is still held.
    let filter_early = !p.no_new_privileges;
    if filter_early {
        if let Some(filter) = &cfg.workload_filter {
            if let Err(e) = sys::seccomp_install(filter) {
                fail("installing the seccomp filter", e);
            }
        }
    }
    if let Err(e) = become_user(cfg, p.caps, p.no_new_privileges) {
        fail("dropping privileges", e);
    }
    // SAFETY: `cwd` is NUL-terminated.
    if unsafe { libc::chdir(cfg.cwd.as_ptr()) } != 0 {
        fail(
            &format!("changing to the workdir {:?}", cfg.cwd),
            std::io::Error::last_os_error(),
        );
    }
    if let Err(e) = sys::cloexec_from(3) {
        fail("closing inherited file descriptors", e);
    }
    if !filter_early {
        if let Some(filter) = &cfg.workload_filter {
            if let Err(e) = sys::seccomp_install(filter) {
                fail("installing the seccomp filter", e);
            }
        }
    }
    if let Some(rules) = &p.landlock {
        if let Err(e) = crate::landlock::restrict_self(rules) {
            fail("restricting the workload with landlock", e.into_io());
        }
    }
    if let (Some(filter), Some(sock)) = (&cfg.notify_filter, &cfg.notify_sock) {
        // The last step before exec: from here on the supervised syscalls wait for the
        // supervisor, which gets the listener through the socket.
        match sys::seccomp_install_listener(filter) {
            Ok(listener) => {
                if let Err(e) = sys::send_fd(sock.as_fd(), listener.as_fd()) {
                    fail("handing the seccomp listener to the supervisor", e);
                }
            }
            Err(e) => fail("installing the supervised-syscall filter", e),
        }
    }
    let mut denied = None;
    for path in &cfg.exec_candidates {
        let err = sys::execve(path, &cfg.argv, &cfg.env);
        match err.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => {}
            Some(libc::EACCES | libc::ENOEXEC | libc::EISDIR | libc::EPERM) => {
                denied.get_or_insert((PathBuf::from(path.to_string_lossy().into_owned()), err));
            }
            _ => {
                denied = Some((PathBuf::from(path.to_string_lossy().into_owned()), err));
                break;
            }
        }
    }
    match denied {
        Some((path, err)) => {
            report(
                cfg,
                MSG_NOT_EXECUTABLE,
                &format!("{}: {err}", path.display()),
            );
            sys::exit_now(126)
        }
        None => {
            report(cfg, MSG_NOT_FOUND, &cfg.argv0);
            sys::exit_now(127)
        }
    }
}
