//! The supervisor confines itself before it reads the first notification: it moves into the
//! sandbox's network namespace (so the sockets it creates for the workload live there, and it
//! has no host network itself), drops every capability except `CAP_SYS_PTRACE` (needed to read
//! the workload's memory and fds) and `CAP_SETUID`/`CAP_SETGID` (for `setfsuid`/`setfsgid`
//! only: the calls are performed with the workload's file-system identity), and installs its
//! own seccomp allowlist. The same process still tears the sandbox down afterwards, so the
//! allowlist also covers cgroup removal.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use cordon_container::seccomp_policy::{Action, ArgRule, Policy};
use thiserror::Error;

use crate::sys;

#[derive(Debug, Error)]
pub enum ConfineError {
    #[error("{op}")]
    Syscall {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn step(op: &'static str) -> impl FnOnce(io::Error) -> ConfineError {
    move |source| ConfineError::Syscall { op, source }
}

const EPERM: u16 = 1;
const CAP_SYS_PTRACE: u64 = 1 << 19;
/// For `setfsuid`/`setfsgid` only (the filter allows no other identity change): the calls
/// are performed with the workload's file-system identity.
const CAP_SETUID: u64 = 1 << 7;
const CAP_SETGID: u64 = 1 << 6;

#[allow(clippy::cast_possible_truncation)]
const SECCOMP_IOCTLS: &[u32] = &[
    libc::SECCOMP_IOCTL_NOTIF_RECV as u32,
    libc::SECCOMP_IOCTL_NOTIF_SEND as u32,
    libc::SECCOMP_IOCTL_NOTIF_ID_VALID as u32,
    libc::SECCOMP_IOCTL_NOTIF_ADDFD as u32,
    libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS as u32,
];

/// What the supervisor itself may call: its notification loop, the calls it performs on the
/// workload's behalf, the container tier's wait loop and teardown (signals, cgroup removal),
/// and memory management.
pub const SUPERVISOR_ALLOW: &[i64] = &[
    // notification loop and wait loop
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_recvmsg,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_getfd,
    libc::SYS_pidfd_send_signal,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_kill,
    // calls performed on the workload's behalf
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_readlinkat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_faccessat2,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_fchmodat,
    libc::SYS_fchownat,
    libc::SYS_ftruncate,
    libc::SYS_utimensat,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_inotify_add_watch,
    libc::SYS_socket,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_getsockopt,
    libc::SYS_fcntl,
    libc::SYS_umask,
    libc::SYS_setfsuid,
    libc::SYS_setfsgid,
    // teardown: cgroup files and directories
    libc::SYS_rmdir,
    libc::SYS_lseek,
    libc::SYS_getdents64,
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    // the process itself
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_clock_gettime,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_getrandom,
    libc::SYS_sched_yield,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The supervisor's own seccomp policy: the list above, seccomp-notify ioctls only, and EPERM
/// for everything else (notably execve, ptrace, mount, setns, unshare, capset, chroot).
pub fn supervisor_policy() -> Policy {
    Policy {
        allow: SUPERVISOR_ALLOW.to_vec(),
        deny: Vec::new(),
        conditional: vec![(
            libc::SYS_ioctl,
            vec![ArgRule::OneOf {
                arg: 1,
                values: SECCOMP_IOCTLS,
                deny: Action::Errno(EPERM),
            }],
        )],
        matched: Vec::new(),
        default: Action::Errno(EPERM),
    }
}

/// What confinement achieved.
#[derive(Debug)]
pub struct Confinement {
    pub landlock: String,
}

/// Confines the calling (only) thread of the supervisor; `pid` is the sandbox's init.
pub fn confine(pid: libc::pid_t) -> Result<Confinement, ConfineError> {
    let netns = open_netns(pid)?;
    confine_in(netns.as_fd())
}

/// The network namespace of the sandbox whose init is `pid`.
pub fn open_netns(pid: libc::pid_t) -> Result<OwnedFd, ConfineError> {
    let ns = CString::new(format!("/proc/{pid}/ns/net")).expect("no NUL");
    sys::openat(libc::AT_FDCWD, &ns, libc::O_RDONLY)
        .map_err(step("opening the sandbox's network namespace"))
}

/// Confines the calling thread; `netns` is the sandbox's network namespace (see
/// [`open_netns`]). Each thread of the supervisor confines itself this way.
pub fn confine_in(netns: BorrowedFd<'_>) -> Result<Confinement, ConfineError> {
    sys::setns_net(netns).map_err(step("entering the sandbox's network namespace"))?;
    sys::clear_groups().map_err(step("clearing supplementary groups"))?;
    sys::set_caps(CAP_SYS_PTRACE | CAP_SETUID | CAP_SETGID)
        .map_err(step("dropping capabilities"))?;
    // Landlock would be the next layer, but a Landlock-restricted thread may not ptrace-access
    // (process_vm_readv, pidfd_getfd, /proc/PID/cwd) a process outside its domain, and the
    // workload is outside it; see docs/design.md. The ABI is reported so the gap is visible.
    let landlock = match cordon_container::landlock::abi() {
        Some(abi) => format!("landlock ABI {abi} available; not applied to the supervisor itself (it would deny it ptrace access to the workload), enforced on the workload"),
        None => "landlock unavailable".to_string(),
    };
    sys::seccomp_install(&supervisor_policy().compile())
        .map_err(step("installing the supervisor's seccomp filter"))?;
    Ok(Confinement { landlock })
}
