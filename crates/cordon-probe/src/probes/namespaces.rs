//! Namespaces and mounts: mounting, creating and entering namespaces, the cgroup v1
//! `release_agent` escape, device nodes. Each probe runs in its own process, so namespaces it
//! enters die with it; mounts it makes in the current namespace are undone before it returns.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{ancestors, ename, refused, ScratchDir};
use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

const SCRATCH_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// mount(tmpfs) on a fresh directory in the current mount namespace, unmounted at once.
pub(crate) fn mount_tmpfs(ctx: &Context) -> Outcome {
    let dir = match ScratchDir::new("mnt") {
        Ok(d) => d,
        Err(e) => {
            return Outcome::error(format!(
                "no writable directory to mount on (/tmp, /dev/shm): {}",
                ename(&e)
            ))
        }
    };
    let what = format!("mount(tmpfs, {})", dir.path.display());
    match sys::mount("cordon-probe", &dir.path, "tmpfs", SCRATCH_FLAGS, "size=4k") {
        Ok(()) => {
            let _ = sys::umount_detach(&dir.path);
            Outcome::escaped(format!("{what} succeeded (unmounted again)"))
        }
        Err(e) => refused(ctx, &what, &e),
    }
}

/// unshare(CLONE_NEWUSER) to become root of a new user namespace, then a mount namespace and
/// a tmpfs mount in it (the path to most unprivileged kernel attack surface).
pub(crate) fn userns_mount(ctx: &Context) -> Outcome {
    let (uid, gid) = (sys::getuid(), sys::getgid());
    if let Err(e) = sys::unshare(libc::CLONE_NEWUSER) {
        return refused(ctx, "unshare(CLONE_NEWUSER)", &e);
    }
    let maps = fs::write("/proc/self/setgroups", "deny")
        .and_then(|()| fs::write("/proc/self/uid_map", format!("0 {uid} 1")))
        .and_then(|()| fs::write("/proc/self/gid_map", format!("0 {gid} 1")));
    let maps = match maps {
        Ok(()) => "mapped to root".to_string(),
        Err(e) => format!("id maps not written ({})", ename(&e)),
    };
    if let Err(e) = sys::unshare(libc::CLONE_NEWNS) {
        return Outcome::escaped(format!(
            "created a user namespace ({maps}); unshare(CLONE_NEWNS) then failed: {}",
            ename(&e)
        ));
    }
    // Mounts in a mount namespace owned by a new user namespace never propagate back.
    let target = Path::new("/tmp");
    match sys::mount("cordon-probe", target, "tmpfs", SCRATCH_FLAGS, "size=4k") {
        Ok(()) => Outcome::escaped(format!(
            "unshare(CLONE_NEWUSER|CLONE_NEWNS) ({maps}) then mount(tmpfs, /tmp) in it succeeded"
        )),
        Err(e) => Outcome::escaped(format!(
            "created user and mount namespaces ({maps}); mount(tmpfs) in them: {}",
            ename(&e)
        )),
    }
}

const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("mnt", libc::CLONE_NEWNS),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", 0x80), // CLONE_NEWTIME
];

/// unshare of every namespace type but user, one at a time.
pub(crate) fn unshare_ns(ctx: &Context) -> Outcome {
    let mut created = Vec::new();
    let mut first_err = None;
    for &(name, flag) in NAMESPACES {
        match sys::unshare(flag) {
            Ok(()) => created.push(name),
            Err(e) => {
                first_err.get_or_insert((name, e));
            }
        }
    }
    match (created.is_empty(), first_err) {
        (false, err) => Outcome::escaped(format!(
            "unshare created new {} namespaces{}",
            created.join(", "),
            err.map(|(n, e)| format!(" ({n}: {})", ename(&e)))
                .unwrap_or_default()
        )),
        (true, Some((name, e))) => {
            let o = refused(ctx, &format!("unshare({name})"), &e);
            Outcome::new(o.verdict, format!("{} (and every other type)", o.detail))
        }
        (true, None) => Outcome::error("no namespace type tried"),
    }
}

/// setns into PID 1's namespaces (the host's init when the PID namespace is shared), or, when
/// those cannot be opened, into the nearest ancestor's or this process's own: the permission
/// check and the seccomp rule are the same.
pub(crate) fn setns(ctx: &Context) -> Outcome {
    let mut candidates: Vec<String> = Vec::new();
    let pids = std::iter::once(1).chain(ancestors()).map(|p| p.to_string());
    for who in pids.chain(std::iter::once("self".to_string())) {
        if !candidates.contains(&who) {
            candidates.push(who);
        }
    }
    let mut notes = Vec::new();
    for who in candidates {
        let mut fds = Vec::new();
        for &(name, flag) in NAMESPACES.iter().filter(|(n, _)| *n != "time") {
            match fs::File::open(format!("/proc/{who}/ns/{name}")) {
                Ok(f) => fds.push((name, flag, f)),
                Err(e) => {
                    notes.push(format!("/proc/{who}/ns/{name}: {}", ename(&e)));
                    break;
                }
            }
        }
        if fds.is_empty() {
            continue;
        }
        let mut entered = Vec::new();
        let mut first_err = None;
        for (name, flag, f) in &fds {
            match sys::setns(f.as_fd(), *flag) {
                Ok(()) => entered.push(*name),
                Err(e) => {
                    first_err.get_or_insert((*name, e));
                }
            }
        }
        let same = if who == "self" {
            " (its own namespaces)".to_string()
        } else {
            String::new()
        };
        if !entered.is_empty() {
            return Outcome::escaped(format!(
                "setns into {} of /proc/{who}{same} succeeded{}",
                entered.join(", "),
                notes.first().map(|n| format!("; {n}")).unwrap_or_default()
            ));
        }
        let (name, e) = first_err.expect("at least one namespace was opened");
        let o = refused(ctx, &format!("setns(/proc/{who}/ns/{name}){same}"), &e);
        let note = notes.first().map(|n| format!("; {n}")).unwrap_or_default();
        return Outcome::new(o.verdict, format!("{}{note}", o.detail));
    }
    Outcome::blocked(format!(
        "no namespace file could be opened: {}",
        notes.join("; ")
    ))
}

/// The cgroup v1 `release_agent` escape: a writable release_agent makes the host kernel run a
/// program as root. First any cgroup v1 hierarchy already mounted, then a fresh mount of one.
/// release_agent is opened for writing, never written.
pub(crate) fn cgroup_release_agent(ctx: &Context) -> Outcome {
    // The kernel checks release_agent writes against the opener's credentials: from a user
    // namespace, kernels with the CVE-2022-0492 fix (5.17+) refuse the write itself.
    let caveat = if ctx.confinement.initial_userns {
        ""
    } else {
        " (from a user namespace: kernels since 5.17 refuse the write itself)"
    };
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut refusals = Vec::new();
    for line in mountinfo.lines() {
        // "... mountpoint opts [optional] - fstype source superopts"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup") {
            continue;
        }
        let Some(mnt) = left.split_whitespace().nth(4) else {
            continue;
        };
        let agent = Path::new(mnt).join("release_agent");
        match fs::OpenOptions::new().write(true).open(&agent) {
            Ok(_) => {
                return Outcome::escaped(format!(
                "opened {} for writing (nothing written): the kernel runs it as root of the initial namespaces{caveat}",
                agent.display()
            ))
            }
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
                refusals.push(format!("{}: {}", agent.display(), ename(&e)));
            }
            Err(_) => {}
        }
    }
    let controller = fs::read_to_string("/proc/cgroups")
        .ok()
        .and_then(|t| {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.len() >= 4 && f[1] != "0" && f[3] == "1")
                .map(|f| f[0].to_string())
        })
        .unwrap_or_else(|| "memory".to_string());
    let dir = match ScratchDir::new("cgroup") {
        Ok(d) => d,
        Err(e) => return Outcome::error(format!("no directory to mount on: {}", ename(&e))),
    };
    let what = format!("mount(cgroup, -o {controller})");
    match sys::mount("cgroup", &dir.path, "cgroup", SCRATCH_FLAGS, &controller) {
        Ok(()) => {
            let agent = dir.path.join("release_agent");
            let writable = fs::OpenOptions::new()
                .write(true)
                .open(&agent)
                .map(|_| "opened for writing (nothing written)".to_string())
                .unwrap_or_else(|e| ename(&e));
            let _ = sys::umount_detach(&dir.path);
            Outcome::escaped(format!(
                "{what} succeeded (unmounted again); its release_agent: {writable}{caveat}"
            ))
        }
        Err(e) => {
            let o = refused(ctx, &what, &e);
            let seen = if refusals.is_empty() {
                "no cgroup v1 hierarchy mounted here".to_string()
            } else {
                refusals.join(", ")
            };
            Outcome::new(o.verdict, format!("{}; {seen}", o.detail))
        }
    }
}

/// The kernel's first whole disk as (name, major, minor), from /sys/block (loop, ram and zram devices
/// are skipped); (None, 8, 0) = sda when sysfs does not tell.
pub(crate) fn host_disk() -> (Option<String>, u32, u32) {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !["loop", "ram", "zram"].iter().any(|p| n.starts_with(p)))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        let dev = fs::read_to_string(format!("/sys/block/{name}/dev")).unwrap_or_default();
        if let Some((maj, min)) = dev.trim().split_once(':') {
            if let (Ok(maj), Ok(min)) = (maj.parse(), min.parse()) {
                return (Some(name), maj, min);
            }
        }
    }
    (None, 8, 0)
}

/// mknod of a block device node for the host's disk, then an open of it for reading.
pub(crate) fn mknod_block(ctx: &Context) -> Outcome {
    let (name, maj, min) = host_disk();
    let label = name.unwrap_or_else(|| "sda".to_string());
    let dir = match ScratchDir::new("mknod") {
        Ok(d) => d,
        Err(e) => return Outcome::error(format!("no writable directory: {}", ename(&e))),
    };
    let node = dir.path.join("disk");
    let what = format!("mknod(b {maj}:{min} = {label})");
    match sys::mknod(&node, libc::S_IFBLK | 0o600, sys::makedev(maj, min)) {
        Ok(()) => {
            let open = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&node)
                .map(|f| {
                    let _ = sys::fstat(f.as_fd());
                    "opened it for reading".to_string()
                })
                .unwrap_or_else(|e| format!("open: {}", ename(&e)));
            let _ = fs::remove_file(&node);
            Outcome::escaped(format!("{what} created the node (removed again); {open}"))
        }
        Err(e) => refused(ctx, &what, &e),
    }
}
