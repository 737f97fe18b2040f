//! Runs probes, each in a forked process of its own: a probe may enter namespaces, crash, be
//! killed by a seccomp filter or a memory limit, or hang, without affecting the next one.
//! The child sends its verdict back over a pipe as one byte plus the detail.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::Instant;

use crate::catalog::Probe;
use crate::context::Context;
use crate::probes::ename;
use crate::sys;
use crate::verdict::{Outcome, Report, Verdict};

/// Runs `probe` in a child process and waits for its verdict (at most `probe.timeout()`).
///
/// # Safety
/// The caller must be single-threaded (see [`run_all`]).
unsafe fn run_one(probe: &Probe, ctx: &Context) -> Outcome {
    let (r, w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::error(format!("pipe: {}", ename(&e))),
    };
    // SAFETY: the caller is single-threaded (this function's contract).
    let pid = match unsafe { sys::fork() } {
        Ok(sys::Forked::Child) => {
            drop(r);
            let _ = sys::die_with_parent();
            let out = (probe.run)(ctx);
            let mut msg = vec![out.verdict.code()];
            msg.extend_from_slice(out.detail.as_bytes());
            let _ = sys::write_all(w.as_fd(), &msg);
            sys::exit_now(0)
        }
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(e) => return Outcome::error(format!("fork: {}", ename(&e))),
    };
    drop(w);
    let deadline = Instant::now() + probe.timeout();
    let mut msg = Vec::new();
    let mut timed_out = false;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        match sys::poll_one(r.as_fd(), libc::POLLIN, ms) {
            Ok(false) => {
                timed_out = true;
                let _ = sys::kill(pid, libc::SIGKILL);
                break;
            }
            Ok(true) => match sys::read(r.as_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => msg.extend_from_slice(&buf[..n]),
                Err(_) => break,
            },
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(_) => break,
        }
    }
    let status = sys::waitpid(pid, 0).map(|(_, s)| s).unwrap_or(0);
    if let Some((&code, detail)) = msg.split_first() {
        if let Some(verdict) = Verdict::from_code(code) {
            return Outcome::new(verdict, String::from_utf8_lossy(detail).into_owned());
        }
    }
    if timed_out {
        return Outcome::error(format!(
            "no verdict within {} s (killed)",
            probe.timeout().as_secs()
        ));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        if sig == libc::SIGSYS {
            return Outcome::blocked("the probe was killed by SIGSYS: a seccomp filter killed it");
        }
        return Outcome::error(format!("the probe's process was killed by signal {sig}"));
    }
    Outcome::error(format!(
        "the probe's process exited with status {} without a verdict",
        libc::WEXITSTATUS(status)
    ))
}

/// Runs `probes` in order, writing each result to `out` as soon as it is known (a JSON line
/// with `json`, else a table row), and returns them.
///
/// # Safety
/// The calling process must be single-threaded: each probe runs in a forked child, which gets
/// only the calling thread (a lock held by another thread would never be released in it), and
/// probes fork again.
pub unsafe fn run_all(
    probes: &[&Probe],
    ctx: &Context,
    json: bool,
    out: &mut dyn Write,
) -> io::Result<Vec<Report>> {
    let mut reports = Vec::with_capacity(probes.len());
    if !json {
        writeln!(
            out,
            "{:<12} {:<13} {:<21} DETAIL",
            "RESULT", "CLASS", "PROBE"
        )?;
    }
    let kernel = crate::sys::kernel_release_and_version().ok();
    for probe in probes {
        // Nothing may sit in a buffer when the probe's process is forked.
        out.flush()?;
        let start = Instant::now();
        // SAFETY: the caller is single-threaded (this function's contract).
        let outcome = unsafe { run_one(probe, ctx) };
        let report = Report {
            probe: probe.name.to_string(),
            class: probe.class.name().to_string(),
            result: outcome.verdict,
            detail: outcome.detail,
            ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            kernel: kernel.clone(),
        };
        if json {
            let line = serde_json::to_string(&report).map_err(io::Error::other)?;
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{:<12} {:<13} {:<21} {}",
                report.result, probe.class, report.probe, report.detail
            )?;
        }
        out.flush()?;
        reports.push(report);
    }
    Ok(reports)
}

/// The probes named in `names`, in table order (all of them when `names` is empty); the
/// first unknown name is the error.
pub fn select(names: &[String]) -> Result<Vec<&'static Probe>, String> {
    if let Some(bad) = names.iter().find(|n| crate::catalog::find(n).is_none()) {
        return Err(bad.clone());
    }
    Ok(crate::catalog::PROBES
        .iter()
        .filter(|p| names.is_empty() || names.iter().any(|n| n == p.name))
        .collect())
}
