//! The child side of a container launch: the sandbox's PID 1 sets the sandbox up, reports
//! readiness, waits for `start`, then forks the workload and stays as a minimal init that
//! forwards signals and reports the workload's exit status.
//!
//! Messages to the parent go over the status pipe as `[tag][u32 length][payload]`, each in one
//! `write` below PIPE_BUF, so they are atomic.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use cordon_sandbox::Network;

use crate::rootfs::{self, Context, RootfsPlan, SetupError};
use crate::sys;

pub(crate) const MSG_READY: u8 = b'R';
pub(crate) const MSG_SETUP_ERROR: u8 = b'E';
pub(crate) const MSG_NOT_FOUND: u8 = b'N';
pub(crate) const MSG_NOT_EXECUTABLE: u8 = b'A';
pub(crate) const MSG_WAIT_STATUS: u8 = b'W';
/// The byte the parent sends to start the workload.
pub(crate) const START: u8 = b'g';

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
    pub rootfs: RootfsPlan<'a>,
    pub network: Network,
    pub argv: Vec<CString>,
    pub argv0: String,
    pub env: Vec<CString>,
    /// Candidate paths for argv[0] (one if it contains a '/', else one per PATH entry).
    pub exec_candidates: Vec<CString>,
    pub workdir: CString,
    pub uid: u32,
    pub gid: u32,
    pub userns: bool,
    pub host_uid: u32,
    pub host_gid: u32,
    /// Capabilities the workload keeps (bit mask).
    pub caps: u64,
    pub last_cap: u8,
    pub workload_filter: Vec<libc::sock_filter>,
    pub init_filter: Vec<libc::sock_filter>,
    /// v1 `tasks` files to write "0" to (empty on v2, where the clone placed us already).
    pub cgroup_tasks: Vec<OwnedFd>,
    pub status_w: OwnedFd,
    pub start_r: OwnedFd,
    pub life_r: OwnedFd,
}

pub(crate) fn send(fd: BorrowedFd<'_>, tag: u8, payload: &[u8]) {
    let payload = &payload[..payload.len().min(3000)];
    let mut msg = Vec::with_capacity(5 + payload.len());
    msg.push(tag);
    msg.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_le_bytes());
    msg.extend_from_slice(payload);
    let _ = sys::write_all(fd, &msg);
}

/// Entry point of the cloned child (PID 1 of the new PID namespace). Never returns.
pub(crate) fn child_main(cfg: ChildConfig<'_>) -> ! {
    if let Err(e) = setup(&cfg) {
        send(
            cfg.status_w.as_fd(),
            MSG_SETUP_ERROR,
            e.to_string().as_bytes(),
        );
        sys::exit_now(125);
    }
    send(cfg.status_w.as_fd(), MSG_READY, &[]);
    let mut go = [0u8; 1];
    match sys::read(cfg.start_r.as_fd(), &mut go) {
        Ok(1) if go[0] == START => {}
        _ => sys::exit_now(0), // the parent gave up before starting us
    }
    init_main(cfg)
}

fn setup(cfg: &ChildConfig<'_>) -> Result<(), SetupError> {
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
    // Neither the workload nor anything else in the sandbox may open this process's
    // /proc/1/{exe,mem,fd,root}: that would expose the runtime binary and host resources.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).step(|| "marking the init non-dumpable".into())?;
    if cfg.userns {
        write_id_maps(cfg)?;
    }
    for fd in &cfg.cgroup_tasks {
        sys::write_all(fd.as_fd(), b"0").step(|| "joining the sandbox cgroup".into())?;
    }
    sys::unshare(libc::CLONE_NEWCGROUP).step(|| "creating the cgroup namespace".into())?;
    rootfs::enter(&cfg.rootfs)?;
    sys::sethostname(cfg.rootfs.hostname).step(|| "setting the hostname".into())?;
    if cfg.network == Network::Loopback {
        sys::loopback_up().step(|| "bringing up lo".into())?;
    }
    Ok(())
}

fn write_id_maps(cfg: &ChildConfig<'_>) -> Result<(), SetupError> {
    let write =
        |file: &str, text: String| std::fs::write(file, text).step(|| format!("writing {file}"));
    write("/proc/self/setgroups", "deny".into())?;
    write(
        "/proc/self/uid_map",
        format!("{} {} 1\n", cfg.uid, cfg.host_uid),
    )?;
    write(
        "/proc/self/gid_map",
        format!("{} {} 1\n", cfg.gid, cfg.host_gid),
    )
}

/// Drops every capability not in `keep` from the bounding set, then sets the thread's sets.
fn drop_capabilities(keep: u64, last_cap: u8) -> std::io::Result<()> {
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

fn become_user(cfg: &ChildConfig<'_>, keep_caps: u64) -> std::io::Result<()> {
    drop_capabilities(keep_caps, cfg.last_cap)?;
    if keep_caps != 0 {
        sys::prctl(libc::PR_SET_KEEPCAPS, 1)?;
    }
    let groups: &[libc::gid_t] = if cfg.userns {
        &[]
    } else {
        std::slice::from_ref(&cfg.gid)
    };
    if !cfg.userns {
        sys::setgroups(groups)?;
    }
    sys::setresgid(cfg.gid)?;
    sys::setresuid(cfg.uid)?;
    sys::capset(keep_caps, keep_caps, keep_caps)?;
    sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
    )?;
    for cap in 0..=cfg.last_cap {
        if keep_caps & (1u64 << cap) != 0 {
            sys::prctl3(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
            )?;
        }
    }
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
}

fn init_main(cfg: ChildConfig<'_>) -> ! {
    let mut waited: Vec<libc::c_int> = FORWARDED.to_vec();
    waited.push(libc::SIGCHLD);
    let set = sys::sigset(&waited);
    for &s in FORWARDED {
        let _ = sys::set_handler(s, true);
    }
    if sys::sigprocmask(libc::SIG_BLOCK, &set).is_err() {
        sys::exit_now(125);
    }
    // SAFETY: the sandbox's init is single-threaded (a clone of the single-threaded parent).
    let pid = match unsafe { sys::fork() } {
        Ok(0) => workload_main(&cfg),
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
    // Confine the init itself before anything the workload does can reach it.
    let status_fd = cfg.status_w.as_raw_fd();
    let confined = become_user(&cfg, 0)
        .and_then(|()| sys::close_range(0, u32::try_from(status_fd).unwrap_or(3).saturating_sub(1)))
        .and_then(|()| sys::close_range(u32::try_from(status_fd).unwrap_or(0) + 1, u32::MAX))
        .and_then(|()| sys::seccomp_install(&cfg.init_filter));
    if let Err(e) = confined {
        let _ = sys::kill(pid, libc::SIGKILL);
        send(
            cfg.status_w.as_fd(),
            MSG_SETUP_ERROR,
            format!("confining the sandbox init: {e}").as_bytes(),
        );
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
                send(cfg.status_w.as_fd(), MSG_WAIT_STATUS, &status.to_le_bytes());
                // Exiting kills everything else left in the PID namespace.
                sys::exit_now(0);
            }
        }
    }
}

fn workload_main(cfg: &ChildConfig<'_>) -> ! {
    let fail = |what: &str, e: std::io::Error| -> ! {
        send(
            cfg.status_w.as_fd(),
            MSG_SETUP_ERROR,
            format!("{what}: {e}").as_bytes(),
        );
        sys::exit_now(125);
    };
    for &s in FORWARDED {
        let _ = sys::set_handler(s, false);
    }
    if let Err(e) = sys::sigprocmask(libc::SIG_SETMASK, &sys::sigset(&[])) {
        fail("resetting the signal mask", e);
    }
    if let Err(e) = sys::setrlimit(libc::RLIMIT_CORE, 0, 0) {
        fail("setting RLIMIT_CORE", e);
    }
    if let Err(e) = become_user(cfg, cfg.caps) {
        fail("dropping privileges", e);
    }
    // SAFETY: `workdir` is NUL-terminated.
    if unsafe { libc::chdir(cfg.workdir.as_ptr()) } != 0 {
        fail(
            &format!("changing to the workdir {:?}", cfg.workdir),
            std::io::Error::last_os_error(),
        );
    }
    if let Err(e) = sys::cloexec_from(3) {
        fail("closing inherited file descriptors", e);
    }
    if let Err(e) = sys::seccomp_install(&cfg.workload_filter) {
        fail("installing the seccomp filter", e);
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
            send(
                cfg.status_w.as_fd(),
                MSG_NOT_EXECUTABLE,
                format!("{}: {err}", path.display()).as_bytes(),
            );
            sys::exit_now(126)
        }
        None => {
            send(cfg.status_w.as_fd(), MSG_NOT_FOUND, cfg.argv0.as_bytes());
            sys::exit_now(127)
        }
    }
}
