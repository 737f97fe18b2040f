//! Processes: seeing the host's, tracing them, reaching the runtime's binary through
//! /proc/<pid>/exe (runc CVE-2019-5736), and descriptors or a working directory leaked in from
//! the host (runc CVE-2024-21626).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::{ancestors, clip, comm_of, ename, refused, visible_pids};
use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

/// Whether the PID namespace shows processes outside this process's own line of descent
/// (kernel threads, the host's daemons).
pub(crate) fn host_pid_ns(_ctx: &Context) -> Outcome {
    let pids = visible_pids();
    if pids.is_empty() {
        return Outcome::blocked("/proc shows no process (no procfs)");
    }
    let me = sys::getpid();
    let family = ancestors();
    let foreign: Vec<libc::pid_t> = pids
        .iter()
        .copied()
        .filter(|&p| p != me && !family.contains(&p) && super::parent_of(p) != me)
        .collect();
    let exe1 = fs::read_link("/proc/1/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| ename(&e));
    let init = format!("PID 1 is {} (exe: {exe1})", comm_of(1));
    if foreign.is_empty() {
        return Outcome::blocked(format!(
            "only this process and its {} ancestors are visible; {init}",
            family.len()
        ));
    }
    let kthreadd = if foreign.iter().any(|&p| comm_of(p) == "kthreadd") {
        " incl. kthreadd (kernel threads: the initial PID namespace)"
    } else {
        ""
    };
    let sample: Vec<String> = foreign
        .iter()
        .take(4)
        .map(|&p| format!("{p} {}", comm_of(p)))
        .collect();
    Outcome::escaped(format!(
        "{} processes outside this process's line are visible{kthreadd}, e.g. {}; {init}",
        foreign.len(),
        sample.join(", ")
    ))
}

/// PTRACE_SEIZE (then PTRACE_ATTACH) of a child forked for the purpose.
pub(crate) fn ptrace(ctx: &Context) -> Outcome {
    // SAFETY: the probe process is single-threaded (the runner forks it from a
    // single-threaded process and it starts no threads).
    let target = match unsafe { sys::fork() } {
        Ok(sys::Forked::Child) => {
            let _ = sys::die_with_parent();
            sys::pause_forever()
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => return Outcome::error(format!("fork: {}", ename(&e))),
    };
    let seize = sys::ptrace_attach(libc::PTRACE_SEIZE, target);
    let result = match seize {
        Ok(()) => Outcome::escaped(format!("PTRACE_SEIZE of process {target} succeeded")),
        Err(e) => match sys::ptrace_attach(libc::PTRACE_ATTACH, target) {
            Ok(()) => Outcome::escaped(format!(
                "PTRACE_ATTACH of process {target} succeeded (PTRACE_SEIZE: {})",
                ename(&e)
            )),
            Err(_) => refused(ctx, "ptrace(PTRACE_SEIZE/ATTACH)", &e),
        },
    };
    let _ = sys::kill(target, libc::SIGKILL);
    let _ = sys::waitpid(target, 0);
    result
}

/// How opening a binary for writing went: `Some(text)` when the binary was reached.
fn try_write_open(path: &str) -> Result<String, std::io::Error> {
    // O_WRONLY without O_TRUNC: nothing changes, and the descriptor is closed at once.
    match fs::OpenOptions::new().write(true).open(path) {
        Ok(_) => Ok("opened for writing (nothing written)".to_string()),
        Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => Ok(
            "write refused only while it runs (ETXTBSY): a handle kept until it exits can rewrite it"
                .to_string(),
        ),
        Err(e) => Err(e),
    }
}

/// readlink and an O_WRONLY open of /proc/1/exe.
pub(crate) fn proc1_exe(ctx: &Context) -> Outcome {
    let link = fs::read_link("/proc/1/exe")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("readlink: {}", ename(&e)));
    let mine = fs::metadata("/proc/self/exe").ok();
    let theirs = fs::metadata("/proc/1/exe").ok();
    if let (Some(a), Some(b)) = (&mine, &theirs) {
        if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
            return Outcome::blocked(format!("PID 1 runs this probe's own binary ({link})"));
        }
    }
    match try_write_open("/proc/1/exe") {
        Ok(how) => Outcome::escaped(format!("/proc/1/exe ({link}): {how}")),
        Err(e) => {
            let o = refused(ctx, "open(/proc/1/exe, O_WRONLY)", &e);
            Outcome::new(o.verdict, format!("{} ({link})", o.detail))
        }
    }
}

/// For every visible process whose executable is not this probe's: an O_PATH handle of
/// /proc/<pid>/exe, then a write re-open through /proc/self/fd (the CVE-2019-5736 steps).
pub(crate) fn foreign_exe(ctx: &Context) -> Outcome {
    let mine = fs::metadata("/proc/self/exe")
        .map(|m| (m.dev(), m.ino()))
        .ok();
    let me = sys::getpid();
    let mut tried = 0;
    let mut first_refusal: Option<(libc::pid_t, std::io::Error)> = None;
    // Ancestors first: the runtime that started the sandbox is the CVE's target.
    let family = ancestors();
    let mut pids: Vec<libc::pid_t> = family.clone();
    pids.extend(visible_pids().into_iter().filter(|p| !family.contains(p)));
    for pid in pids {
        if pid == me {
            continue;
        }
        let exe = format!("/proc/{pid}/exe");
        let handle = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&exe)
        {
            Ok(h) => h,
            Err(e) => {
                // Kernel threads have no executable; anything else is a refusal.
                if e.raw_os_error() != Some(libc::ENOENT) {
                    tried += 1;
                    first_refusal.get_or_insert((pid, e));
                }
                continue;
            }
        };
        let id = fs::metadata(format!("/proc/self/fd/{}", handle.as_raw_fd()))
            .map(|m| (m.dev(), m.ino()))
            .ok();
        if id.is_some() && id == mine {
            continue;
        }
        tried += 1;
        let target = fs::read_link(&exe)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".to_string());
        match try_write_open(&format!("/proc/self/fd/{}", handle.as_raw_fd())) {
            Ok(how) => {
                return Outcome::escaped(format!(
                    "O_PATH handle on the binary of pid {pid} ({}, {target}); re-open: {how}",
                    comm_of(pid)
                ))
            }
            Err(e) => {
                first_refusal.get_or_insert((pid, e));
            }
        }
    }
    match first_refusal {
        None => Outcome::blocked("no other process's executable is visible"),
        Some((pid, e)) => {
            let o = refused(ctx, &format!("/proc/{pid}/exe ({})", comm_of(pid)), &e);
            Outcome::new(
                o.verdict,
                format!(
                    "no executable of the {tried} other processes tried is reachable; first: {}",
                    o.detail
                ),
            )
        }
    }
}

/// Whether the directory `dir` lies outside this process's root: walking `..` up from it
/// never meets the root (`..` stops at the process's root only on the way through it).
fn outside_root(dir: &Path) -> Option<bool> {
    let root = fs::metadata("/").ok()?;
    let root_id = (root.dev(), root.ino());
    let mut cur = dir.to_path_buf();
    for _ in 0..256 {
        let m = fs::metadata(&cur).ok()?;
        let id = (m.dev(), m.ino());
        if id == root_id {
            return Some(false);
        }
        let up = cur.join("..");
        let pm = fs::metadata(&up).ok()?;
        if (pm.dev(), pm.ino()) == id {
            // The top of a tree that is not our root.
            return Some(true);
        }
        cur = up;
    }
    None
}

/// Descriptors beyond stdio inherited at start (any is a leak; one naming a directory outside
/// the root is the CVE-2024-21626 escape), and a working directory outside the root.
pub(crate) fn leaked_fds(ctx: &Context) -> Outcome {
    let mut leaks = Vec::new();
    for &fd in &ctx.inherited_fds {
        let link = format!("/proc/self/fd/{fd}");
        let target = fs::read_link(&link)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "?".to_string());
        let is_dir = fs::metadata(&link).map(|m| m.is_dir()).unwrap_or(false);
        let where_ = if is_dir {
            match outside_root(Path::new(&link)) {
                Some(true) => " (a directory outside the sandbox's root)",
                Some(false) => " (a directory)",
                None => "",
            }
        } else {
            ""
        };
        leaks.push(format!("fd {fd} -> {}{where_}", clip(&target, 60)));
    }
    let cwd = fs::read_link("/proc/self/cwd")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "?".to_string());
    if outside_root(Path::new(".")) == Some(true) {
        leaks.push(format!("cwd {cwd} is outside the root"));
    }
    if leaks.is_empty() {
        return Outcome::blocked(format!(
            "no descriptor beyond stdio was inherited; cwd ({cwd}) is inside the root"
        ));
    }
    Outcome::escaped(format!("inherited from the host: {}", leaks.join("; ")))
}
