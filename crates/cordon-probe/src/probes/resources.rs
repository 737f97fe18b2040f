//! Resource exhaustion: processes, memory, disk. Each bomb is bounded (the host survives it
//! even with no limit at all), runs in children that die with the probe, and is undone before
//! the probe returns: processes killed and reaped, memory freed by the bomb's exit, the file
//! removed. A bomb that reaches its bound is ESCAPED: nothing stopped it.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::ename;
use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

/// Processes the fork bomb tries to create.
pub(crate) const FORK_BOMB_PROCESSES: usize = 5000;
/// Memory the memory bomb allocates and touches.
pub(crate) const MEMORY_BOMB_BYTES: u64 = 4 << 30;
/// Bytes the disk bomb writes to /tmp.
pub(crate) const DISK_BOMB_BYTES: u64 = 2 << 30;
/// Free memory or disk the host must keep beyond a bomb for it to run at all.
const HOST_MARGIN: u64 = 1 << 30;
/// Progress is reported per chunk of this size.
const CHUNK: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

/// Makes this process the one the OOM killer picks first (raising the score needs no
/// privilege), so a memory limit kills the bomb and not the probe around it.
fn prefer_oom_kill() {
    let _ = fs::write("/proc/self/oom_score_adj", "1000");
}

/// sched_setscheduler(SCHED_FIFO): a real-time busy loop starves every normal task on its CPU.
/// The policy dies with the probe's process.
pub(crate) fn sched_fifo(ctx: &Context) -> Outcome {
    match sys::set_fifo_priority(1) {
        Ok(()) => Outcome::escaped(
            "sched_setscheduler(SCHED_FIFO, 1) succeeded: a busy loop would starve the host's tasks",
        ),
        Err(e) => super::refused(ctx, "sched_setscheduler(SCHED_FIFO, 1)", &e),
    }
}

/// Forks up to [`FORK_BOMB_PROCESSES`] children that sleep, then kills them all.
pub(crate) fn fork_bomb(_ctx: &Context) -> Outcome {
    let leader = sys::getpid();
    let mut children = Vec::with_capacity(FORK_BOMB_PROCESSES);
    let mut failure = None;
    while children.len() < FORK_BOMB_PROCESSES {
        // SAFETY: the probe process is single-threaded.
        match unsafe { sys::fork() } {
            Ok(sys::Forked::Child) => {
                if sys::die_with_parent().is_err() || sys::getppid() != leader {
                    sys::exit_now(0);
                }
                sys::pause_forever()
            }
            Ok(sys::Forked::Parent(pid)) => children.push(pid),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    for &pid in &children {
        let _ = sys::kill(pid, libc::SIGKILL);
    }
    for &pid in &children {
        let _ = sys::waitpid(pid, 0);
    }
    match failure {
        None => Outcome::escaped(format!(
            "created {FORK_BOMB_PROCESSES} sleeping processes; no limit stopped it (all killed again)"
        )),
        Some(e) => Outcome::blocked(format!(
            "fork failed with {} after {} processes (all killed again)",
            ename(&e),
            children.len()
        )),
    }
}

/// How a bomb child ended: chunks it reported done, the errno it reported, its wait status.
struct Detonation {
    chunks: u64,
    errno: Option<i32>,
    status: i32,
}

/// Runs `body` in a child that dies with the probe and is the OOM killer's first choice.
/// `body` reports each finished chunk by writing `b'M'` to the pipe it is given and returns an
/// errno on failure (sent as `E<errno>`) or `None` when it reached its bound.
fn detonate(body: impl FnOnce(&OwnedFd) -> Option<i32>) -> Result<Detonation, Outcome> {
    let (r, w) = sys::pipe().map_err(|e| Outcome::error(format!("pipe: {}", ename(&e))))?;
    // SAFETY: the probe process is single-threaded.
    let pid = match unsafe { sys::fork() } {
        Ok(sys::Forked::Child) => {
            drop(r);
            let _ = sys::die_with_parent();
            prefer_oom_kill();
            let code = match body(&w) {
                None => 0,
                Some(errno) => {
                    let _ = sys::write_all(w.as_fd(), format!("E{errno}").as_bytes());
                    1
                }
            };
            sys::exit_now(code)
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => return Err(Outcome::error(format!("fork: {}", ename(&e)))),
    };
    drop(w);
    let mut report = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = sys::read(r.as_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        report.extend_from_slice(&buf[..n]);
    }
    let status = sys::waitpid(pid, 0).map(|(_, s)| s).unwrap_or(0);
    let chunks = report.iter().filter(|&&b| b == b'M').count() as u64;
    let errno = report
        .iter()
        .position(|&b| b == b'E')
        .and_then(|i| std::str::from_utf8(&report[i + 1..]).ok()?.parse().ok());
    Ok(Detonation {
        chunks,
        errno,
        status,
    })
}

impl Detonation {
    /// ESCAPED with `reached` when the bomb reached its bound (exit 0), else how it was
    /// stopped.
    fn verdict(&self, reached: String) -> Outcome {
        let done_mib = self.chunks * CHUNK / MIB;
        if libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0 {
            return Outcome::escaped(reached);
        }
        if libc::WIFSIGNALED(self.status) {
            let sig = libc::WTERMSIG(self.status);
            let why = if sig == libc::SIGKILL {
                " (an OOM kill: a memory limit, or all of the kernel's memory)"
            } else {
                ""
            };
            return Outcome::blocked(format!("killed by signal {sig}{why} after ~{done_mib} MiB"));
        }
        match self.errno {
            Some(e) => Outcome::blocked(format!(
                "refused with {} after ~{done_mib} MiB",
                super::errno_name(e)
            )),
            None => Outcome::error(format!(
                "the bomb ended with wait status {:#x} after ~{done_mib} MiB",
                self.status
            )),
        }
    }
}

fn mem_available() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Allocates and touches [`MEMORY_BOMB_BYTES`] in a child.
pub(crate) fn memory_bomb(ctx: &Context) -> Outcome {
    let target = MEMORY_BOMB_BYTES;
    // Unconfined on a small host, nothing but the host's own OOM killer would stop the bomb.
    // Confined, a small kernel is the sandbox's (a VM's memory), or a host the sandbox must
    // protect with its memory limit: that is what the bomb tests.
    match mem_available() {
        Some(avail) if avail < target + HOST_MARGIN && ctx.confinement.unconfined() => {
            return Outcome::unsupported(format!(
                "not run: the host has {} MiB available, under the bomb's {} MiB plus a 1 GiB margin",
                avail / MIB,
                target / MIB
            ));
        }
        _ => {}
    }
    let Ok(len) = usize::try_from(target) else {
        return Outcome::error("the bomb does not fit the address space");
    };
    let d = match detonate(|w| {
        let mut mem: Vec<u8> = Vec::new();
        if mem.try_reserve_exact(len).is_err() {
            return Some(libc::ENOMEM);
        }
        let chunk = usize::try_from(CHUNK).unwrap_or(usize::MAX);
        for (i, part) in mem.spare_capacity_mut().chunks_mut(chunk).enumerate() {
            for page in part.iter_mut().step_by(4096) {
                page.write(u8::try_from(i & 0xff).unwrap_or(0));
            }
            if sys::write_all(w.as_fd(), b"M").is_err() {
                return Some(libc::EPIPE);
            }
        }
        None
    }) {
        Ok(d) => d,
        Err(o) => return o,
    };
    d.verdict(format!(
        "allocated and touched {} MiB; no limit stopped it (freed again)",
        target / MIB
    ))
}

/// Writes up to [`DISK_BOMB_BYTES`] to a file in /tmp from a child, then removes the file.
pub(crate) fn disk_fill(_ctx: &Context) -> Outcome {
    let target = DISK_BOMB_BYTES;
    let dir = Path::new("/tmp");
    match sys::fs_space(dir) {
        Ok((total, avail)) if total > 2 * target && avail < target + HOST_MARGIN => {
            return Outcome::error(format!(
                "not run: /tmp has {} MiB free of {} MiB; filling it could hurt the host",
                avail / MIB,
                total / MIB
            ))
        }
        Ok(_) => {}
        Err(e) => return Outcome::error(format!("statvfs(/tmp): {}", ename(&e))),
    }
    let path = dir.join(format!("cordon-probe-fill-{}", sys::getpid()));
    let d = detonate(|w| {
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => return Some(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        let block = vec![0x5au8; 1 << 20];
        let (mut written, mut unreported) = (0u64, 0u64);
        while written < target {
            if let Err(e) = file.write_all(&block) {
                return Some(e.raw_os_error().unwrap_or(libc::EIO));
            }
            written += block.len() as u64;
            unreported += block.len() as u64;
            if unreported >= CHUNK {
                unreported = 0;
                if sys::write_all(w.as_fd(), b"M").is_err() {
                    return Some(libc::EPIPE);
                }
            }
        }
        None
    });
    let _ = fs::remove_file(&path);
    let d = match d {
        Ok(d) => d,
        Err(o) => return o,
    };
    d.verdict(format!(
        "wrote {} MiB to /tmp; no quota stopped it (removed again)",
        target / MIB
    ))
}
