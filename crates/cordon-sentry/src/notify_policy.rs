//! Which syscalls the supervisor performs on the workload's behalf.
//!
//! The workload carries two filters: the container tier's allowlist (unchanged) and this one,
//! whose trapped syscalls return `SECCOMP_RET_USER_NOTIF`. The kernel takes the most
//! restrictive answer of the two (ERRNO beats USER_NOTIF beats ALLOW), so a trapped syscall
//! still has to pass the allowlist first, and whatever the allowlist denies stays denied.

use cordon_container::seccomp_policy::{self, Action, Policy};

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
const EPERM: u16 = libc::EPERM as u16;

/// Trapped syscalls with their names (for the audit log). Every one of them is performed by
/// the supervisor itself on copied arguments, or refused; none is ever let through.
pub const TRAPPED: &[(i64, &str)] = &[
    (libc::SYS_open, "open"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_openat2, "openat2"),
    (libc::SYS_creat, "creat"),
    (libc::SYS_stat, "stat"),
    (libc::SYS_lstat, "lstat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_statfs, "statfs"),
    (libc::SYS_access, "access"),
    (libc::SYS_faccessat, "faccessat"),
    (libc::SYS_faccessat2, "faccessat2"),
    (libc::SYS_readlink, "readlink"),
    (libc::SYS_readlinkat, "readlinkat"),
    (libc::SYS_mkdir, "mkdir"),
    (libc::SYS_mkdirat, "mkdirat"),
    (libc::SYS_rmdir, "rmdir"),
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_rename, "rename"),
    (libc::SYS_renameat, "renameat"),
    (libc::SYS_renameat2, "renameat2"),
    (libc::SYS_link, "link"),
    (libc::SYS_linkat, "linkat"),
    (libc::SYS_symlink, "symlink"),
    (libc::SYS_symlinkat, "symlinkat"),
    (libc::SYS_chmod, "chmod"),
    (libc::SYS_fchmodat, "fchmodat"),
    (libc::SYS_fchmodat2, "fchmodat2"),
    (libc::SYS_chown, "chown"),
    (libc::SYS_lchown, "lchown"),
    (libc::SYS_fchownat, "fchownat"),
    (libc::SYS_truncate, "truncate"),
    (libc::SYS_utime, "utime"),
    (libc::SYS_utimes, "utimes"),
    (libc::SYS_utimensat, "utimensat"),
    (libc::SYS_futimesat, "futimesat"),
    (libc::SYS_mknod, "mknod"),
    (libc::SYS_mknodat, "mknodat"),
    (libc::SYS_getxattr, "getxattr"),
    (libc::SYS_lgetxattr, "lgetxattr"),
    (libc::SYS_setxattr, "setxattr"),
    (libc::SYS_lsetxattr, "lsetxattr"),
    (libc::SYS_listxattr, "listxattr"),
    (libc::SYS_llistxattr, "llistxattr"),
    (libc::SYS_removexattr, "removexattr"),
    (libc::SYS_lremovexattr, "lremovexattr"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_inotify_add_watch, "inotify_add_watch"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_bind, "bind"),
];

/// Syscalls the notify filter refuses outright (EPERM) because they would go around the
/// supervisor: io_uring performs opens and socket calls from the kernel's own workers, which
/// no seccomp filter sees; `open_by_handle_at` opens without a path to check; a
/// `userfaultfd` page can stall the supervisor's copy of an argument indefinitely. The
/// container tier's allowlist refuses them already; under the OCI front the config's own
/// profile may allow them (Docker 20.10's allows io_uring), and this filter still wins (the
/// kernel takes the most restrictive answer).
pub const REFUSED: &[(i64, &str)] = &[
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_userfaultfd, "userfaultfd"),
];

/// The name of a trapped syscall.
pub fn name(nr: i32) -> &'static str {
    TRAPPED
        .iter()
        .find(|(n, _)| *n == i64::from(nr))
        .map_or("?", |(_, s)| s)
}

/// The notify filter: trapped syscalls notify the supervisor, everything else is left to the
/// allowlist.
pub fn notify_policy() -> Policy {
    Policy {
        allow: Vec::new(),
        deny: TRAPPED
            .iter()
            .map(|&(n, _)| (n, Action::Notify))
            .chain(REFUSED.iter().map(|&(n, _)| (n, Action::Errno(EPERM))))
            .collect(),
        conditional: Vec::new(),
        matched: Vec::new(),
        default: Action::Allow,
    }
}

/// The syscall numbers that reach the host kernel straight from a sentry workload: what the
/// container tier's allowlist allows (unconditionally or after argument checks) minus what
/// the sentry traps.
pub fn direct_syscalls() -> Vec<i64> {
    let allow = seccomp_policy::workload_policy();
    let mut v: Vec<i64> = allow
        .allow
        .iter()
        .copied()
        .chain(allow.conditional.iter().map(|(n, _)| *n))
        .filter(|n| !TRAPPED.iter().any(|(t, _)| t == n))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_trapped_syscall_is_on_the_allowlist() {
        // A trapped call the allowlist denies would never reach the supervisor: a dead rule.
        let allow = seccomp_policy::workload_policy();
        for (n, name) in TRAPPED {
            let allowed = allow.allow.contains(n) || allow.conditional.iter().any(|(c, _)| c == n);
            assert!(allowed, "{name} is trapped but not on the allowlist");
        }
    }

    #[test]
    fn refused_calls_are_neither_trapped_nor_direct() {
        let direct = direct_syscalls();
        let policy = notify_policy();
        for (n, name) in REFUSED {
            assert!(
                !TRAPPED.iter().any(|(t, _)| t == n),
                "{name} both refused and trapped"
            );
            assert!(!direct.contains(n), "{name} reaches the kernel directly");
            assert!(
                policy.deny.contains(&(*n, Action::Errno(EPERM))),
                "{name} not refused by the notify filter"
            );
        }
    }

    #[test]
    fn direct_syscall_count() {
        let direct = direct_syscalls();
        println!("direct_syscalls={}", direct.len());
        assert!(direct.len() < 250);
        for n in [libc::SYS_openat, libc::SYS_connect, libc::SYS_socket] {
            assert!(!direct.contains(&n));
        }
    }
}
