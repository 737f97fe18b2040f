//! OCI bundle configs for the OCI peers (runc, crun, runsc), made to match what `cordon run`
//! sets up by default: the host's /usr read-only behind the usual top-level links, a minimal
//! /etc, private /tmp tmpfs, masked /proc entries, no capabilities, no_new_privs, memory and
//! pids limits, and cordon's own seccomp allowlist translated to syscall names.

use std::path::Path;

use cordon_container::seccomp_policy::{workload_policy, Action};
use cordon_sandbox::Limits;
use serde_json::{json, Value};

use crate::syscall_names::SYSCALLS;

/// Where the benchmark program's directory is mounted inside every sandbox.
pub(crate) const BENCH_DIR_IN_SANDBOX: &str = "/opt/cordon-bench";

/// /proc files and directories cordon hides, and the ones it makes read-only.
const MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/sysrq-trigger",
    "/proc/keys",
    "/proc/key-users",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
    "/proc/timer_stats",
    "/proc/kpagecount",
    "/proc/kpageflags",
    "/proc/kpagecgroup",
    "/proc/config.gz",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
    "/proc/driver",
    "/sys/firmware",
];
const READONLY: &[&str] = &["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"];

/// The environment `cordon run` gives a root workload.
pub(crate) const SANDBOX_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("TERM", "xterm"),
    ("LANG", "C.UTF-8"),
    ("HOSTNAME", "cordon"),
];

fn syscall_name(nr: i64) -> Option<&'static str> {
    SYSCALLS
        .iter()
        .find(|(n, _)| *n == nr)
        .map(|(_, name)| *name)
}

/// cordon's workload seccomp policy as an OCI `linux.seccomp` object. Argument checks are not
/// translated: those syscalls are allowed outright, so the OCI filter is slightly more
/// permissive than cordon's.
pub(crate) fn seccomp_profile() -> Value {
    let policy = workload_policy();
    let mut allow: Vec<&str> = policy
        .allow
        .iter()
        .chain(policy.conditional.iter().map(|(nr, _)| nr))
        .chain(policy.matched.iter().map(|(nr, _)| nr))
        .filter_map(|&nr| syscall_name(nr))
        .collect();
    allow.sort_unstable();
    allow.dedup();
    let mut rules = vec![json!({"names": allow, "action": "SCMP_ACT_ALLOW"})];
    let mut by_errno: Vec<(u16, Vec<&str>)> = Vec::new();
    for &(nr, action) in &policy.deny {
        let Some(name) = syscall_name(nr) else {
            continue;
        };
        let Action::Errno(errno) = action else {
            continue;
        };
        match by_errno.iter_mut().find(|(e, _)| *e == errno) {
            Some((_, names)) => names.push(name),
            None => by_errno.push((errno, vec![name])),
        }
    }
    for (errno, names) in by_errno {
        rules.push(json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno}));
    }
    let default_errno = match policy.default {
        Action::Errno(e) => e,
        _ => 38, // ENOSYS
    };
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": default_errno,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": rules,
    })
}

fn bind_ro(source: &Path, destination: &str) -> Value {
    json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["bind", "ro", "nosuid", "nodev"],
    })
}

/// The parts of a bundle's config.json.
#[derive(Debug)]
pub(crate) struct BundleSpec<'a> {
    pub argv: &'a [String],
    pub rootfs: &'a Path,
    pub bench_dir: &'a Path,
    /// Names under /etc shared read-only from the host (ssl, alternatives, python3...).
    pub etc_shared: &'a [String],
    pub seccomp: Option<&'a Value>,
}

/// A complete config.json for `spec`.
pub(crate) fn config(spec: &BundleSpec<'_>) -> Value {
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "noexec", "mode=755", "size=64k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "size=65536k"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777", format!("size={}", Limits::DEFAULT_TMP)]}),
        bind_ro(Path::new("/usr"), "/usr"),
    ];
    for name in spec.etc_shared {
        mounts.push(bind_ro(
            &Path::new("/etc").join(name),
            &format!("/etc/{name}"),
        ));
    }
    mounts.push(bind_ro(spec.bench_dir, BENCH_DIR_IN_SANDBOX));
    let env: Vec<String> = SANDBOX_ENV
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut linux = json!({
        "namespaces": [
            {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
            {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
        ],
        "resources": {
            "memory": {"limit": Limits::DEFAULT_MEMORY},
            "pids": {"limit": Limits::DEFAULT_PIDS},
        },
        "maskedPaths": MASKED,
        "readonlyPaths": READONLY,
    });
    if let Some(profile) = spec.seccomp {
        linux["seccomp"] = profile.clone();
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": spec.argv,
            "env": env,
            "cwd": "/",
            "capabilities": {
                "bounding": [], "effective": [], "permitted": [],
                "inheritable": [], "ambient": []
            },
            "noNewPrivileges": true,
        },
        "root": {"path": spec.rootfs, "readonly": true},
        "hostname": "cordon",
        "mounts": mounts,
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_profile_names_common_syscalls() {
        let p = seccomp_profile();
        let allowed = p["syscalls"][0]["names"].as_array().expect("names");
        for name in ["read", "write", "getppid", "openat", "close", "execve"] {
            assert!(
                allowed.iter().any(|n| n == name),
                "{name} missing from the allowlist"
            );
        }
        assert_eq!(p["defaultErrnoRet"], 38);
    }

    #[test]
    fn syscall_table_is_consistent() {
        assert_eq!(syscall_name(libc::SYS_getppid), Some("getppid"));
        assert_eq!(syscall_name(libc::SYS_openat), Some("openat"));
        assert_eq!(syscall_name(libc::SYS_clone3), Some("clone3"));
    }
}
