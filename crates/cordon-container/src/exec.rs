//! Running one more process inside an existing container (the OCI runtime's `exec`).
//!
//! The calling process becomes a child subreaper and forks a helper that joins the container's
//! cgroups and namespaces and forks the new process (the first process in the container's PID
//! namespace can only be created by a fork after `setns`); when the helper exits, the new
//! process is reparented to the caller. The new process takes on the given identity,
//! capabilities, rlimits and seccomp policy, closes every inherited fd and executes.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::config::ProcessConfig;
use crate::launch;
use crate::sys;

/// Namespace files of /proc/PID/ns joined by `exec`, in the order they are entered (the mount
/// namespace last: after it, host paths are gone).
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

/// What went wrong before the new process could run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syscall(&'static str, #[source] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

fn same_namespace(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino() && a.dev() == b.dev()
        }
        _ => false,
    }
}

/// Starts `process` inside the container whose init is `pid`, joining `cgroup_dirs`. Returns
/// the new process's host pid; it is the caller's child. `console`: a connected unix socket to
/// send a new terminal's master to (for `process.terminal`).
pub fn exec_in(
    pid: libc::pid_t,
    cgroup_dirs: &[PathBuf],
    process: &ProcessConfig,
    console: Option<&Path>,
) -> Result<libc::pid_t, ExecError> {
    exec_in_supervised(pid, cgroup_dirs, process, console).map(|(pid, _)| pid)
}

/// [`exec_in`] for a process with `process.notify` (the sentry tier): also returns the socket
/// on which the new process sends its seccomp listener, for the supervisor to receive with
/// [`crate::recv_listener`]. Its supervised syscalls wait until a supervisor serves them.
pub fn exec_in_supervised(
    pid: libc::pid_t,
    cgroup_dirs: &[PathBuf],
    process: &ProcessConfig,
    console: Option<&Path>,
) -> Result<(libc::pid_t, Option<OwnedFd>), ExecError> {
    let cstr = |s: &str| {
        CString::new(s).map_err(|_| ExecError::Invalid(format!("{s:?} contains a NUL byte")))
    };
    let argv = process
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    if argv.is_empty() {
        return Err(ExecError::Invalid("no command to execute".into()));
    }
    let env = process
        .env
        .iter()
        .map(|e| cstr(e))
        .collect::<Result<Vec<_>, _>>()?;
    let path_var = process
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let candidates: Vec<CString> = if process.argv[0].contains('/') {
        vec![cstr(&process.argv[0])?]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(&format!("{}/{}", d.trim_end_matches('/'), process.argv[0])))
            .collect::<Result<_, _>>()?
    };
    let cwd = cstr(&process.cwd.to_string_lossy())?;
    let filter = process.seccomp.as_ref().map(|p| p.compile());
    let notify_filter = process.notify.as_ref().map(|p| p.compile());
    let (notify_parent, notify_child) = match notify_filter {
        Some(_) => {
            let (a, b) = sys::socketpair().map_err(|e| ExecError::Syscall("socketpair", e))?;
            (Some(a), Some(b))
        }
        None => (None, None),
    };
    let mut joins: Vec<(libc::c_int, OwnedFd)> = Vec::new();
    let mut userns = false;
    for (name, kind) in NAMESPACES {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        if same_namespace(&theirs, &ours) {
            continue;
        }
        if *kind == libc::CLONE_NEWUSER {
            userns = true;
        }
        let fd = sys::openat(None, &theirs, libc::O_RDONLY, 0).map_err(|source| ExecError::Io {
            op: "opening",
            path: theirs.clone(),
            source,
        })?;
        joins.push((*kind, fd));
    }
    let mut tasks = Vec::new();
    for dir in cgroup_dirs {
        let file = if dir.join("tasks").exists() {
            dir.join("tasks")
        } else {
            dir.join("cgroup.procs")
        };
        tasks.push(
            sys::openat(None, &file, libc::O_WRONLY, 0).map_err(|source| ExecError::Io {
                op: "opening",
                path: file.clone(),
                source,
            })?,
        );
    }
    let console = console
        .map(|p| {
            sys::connect_unix(p).map_err(|source| ExecError::Io {
                op: "connecting to",
                path: p.to_path_buf(),
                source,
            })
        })
        .transpose()?;
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let (report_r, report_w) = sys::pipe().map_err(|e| ExecError::Syscall("pipe2", e))?;
    // The new process is the helper's child; when the helper exits it is reparented to us.
    sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1).map_err(|e| ExecError::Syscall("prctl", e))?;

    // SAFETY: the fronts are single-threaded.
    match unsafe { sys::fork() }.map_err(|e| ExecError::Syscall("fork", e))? {
        0 => {
            drop(report_r);
            drop(notify_parent);
            let fail = |what: &str, e: std::io::Error| -> ! {
                let _ = sys::write_all(report_w.as_fd(), format!("E{what}: {e}").as_bytes());
                sys::exit_now(125);
            };
            // Nothing in the container may open this helper's /proc entries.
            if let Err(e) = sys::prctl(libc::PR_SET_DUMPABLE, 0) {
                fail("marking the helper non-dumpable", e);
            }
            for fd in &tasks {
                if let Err(e) = sys::write_all(fd.as_fd(), b"0") {
                    fail("joining the container's cgroups", e);
                }
            }
            for (kind, fd) in &joins {
                if let Err(e) = sys::setns(fd.as_fd(), *kind) {
                    fail(&format!("joining namespace type {kind:#x}"), e);
                }
            }
            // SAFETY: the helper is single-threaded.
            match unsafe { sys::fork() } {
                Ok(0) => {}
                Ok(child) => {
                    let _ = sys::write_all(report_w.as_fd(), format!("P{child}").as_bytes());
                    sys::exit_now(0);
                }
                Err(e) => fail("creating the process", e),
            }
            drop(report_w);
            let tty = if process.terminal {
                match sys::open_pty() {
                    Ok((master, child)) => {
                        if let Some(sock) = &console {
                            if let Err(e) = sys::send_fd(sock.as_fd(), master.as_fd()) {
                                eprintln!("cordon: sending the terminal: {e}");
                                sys::exit_now(125);
                            }
                        }
                        Some(child)
                    }
                    Err(e) => {
                        eprintln!("cordon: allocating a terminal: {e}");
                        sys::exit_now(125);
                    }
                }
            } else {
                None
            };
            launch::exec_process(
                process,
                userns,
                last_cap,
                &cwd,
                &argv,
                &env,
                &candidates,
                filter.as_deref(),
                notify_filter
                    .as_deref()
                    .zip(notify_child.as_ref().map(|s| s.as_fd())),
                tty,
            )
        }
        helper => {
            drop(report_w);
            drop(notify_child);
            let mut buf = [0u8; 512];
            let n = sys::read(report_r.as_fd(), &mut buf).unwrap_or(0);
            let _ = sys::waitpid(helper, 0);
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            match msg
                .strip_prefix('P')
                .and_then(|p| p.parse::<libc::pid_t>().ok())
            {
                Some(child) => Ok((child, notify_parent)),
                None => Err(ExecError::Invalid(
                    msg.strip_prefix('E')
                        .unwrap_or("the exec helper died")
                        .to_string(),
                )),
            }
        }
    }
}
