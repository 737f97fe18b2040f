//! Taking measurements: timed sandbox lifecycles under a watchdog, idle sandboxes (memory and
//! density), and the host-side memory (PSS) of a runtime's own processes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::fixture::Fixture;
use crate::runtime::{Runtime, Workload};
use crate::sys;

/// One run of a workload did not produce a measurement.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("starting {runtime}")]
    Spawn {
        runtime: String,
        #[source]
        source: io::Error,
    },
    #[error("no result after {0:?}; killed")]
    Timeout(Duration),
    #[error("{status}: {stderr}")]
    Failed { status: String, stderr: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("unexpected output {0:?}")]
    Output(String),
    #[error("interrupted")]
    Interrupted,
}

fn io_err(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> RunError {
    let path = path.display().to_string();
    move |source| RunError::Io { op, path, source }
}

/// The last few lines of a log, on one line.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(3);
    let joined = lines[start..].join(" | ");
    if joined.is_empty() {
        "(no error output)".to_string()
    } else {
        joined.chars().take(400).collect()
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

/// What a completed run gives back.
#[derive(Debug)]
pub(crate) struct RunOutput {
    pub elapsed: Duration,
    pub stdout: String,
}

/// The process group being waited for and its deadline.
type Armed = Option<(u32, Instant)>;

/// Runs workloads one at a time; a watchdog thread kills a run's process group when it
/// overstays its deadline, so a hung runtime cannot stall the bench.
#[derive(Debug)]
pub(crate) struct Runner {
    armed: Arc<Mutex<(Armed, bool)>>,
    stop: Arc<AtomicBool>,
    watchdog: Option<JoinHandle<()>>,
    pub interrupted: Arc<AtomicBool>,
}

impl Runner {
    pub(crate) fn new(interrupted: Arc<AtomicBool>) -> Runner {
        let armed: Arc<Mutex<(Armed, bool)>> = Arc::new(Mutex::new((None, false)));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, s) = (armed.clone(), stop.clone());
        let watchdog = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(25));
                let Ok(mut slot) = a.lock() else { return };
                if let (Some((pgid, deadline)), false) = (slot.0, slot.1) {
                    if Instant::now() >= deadline {
                        sys::kill_group(pgid, libc::SIGKILL);
                        slot.1 = true;
                    }
                }
            }
        });
        Runner {
            armed,
            stop,
            watchdog: Some(watchdog),
            interrupted,
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Relaxed)
    }

    fn arm(&self, pgid: u32, timeout: Duration) {
        if let Ok(mut slot) = self.armed.lock() {
            *slot = (Some((pgid, Instant::now() + timeout)), false);
        }
    }

    /// Disarms the watchdog; true if it fired.
    fn disarm(&self) -> bool {
        self.armed
            .lock()
            .map(|mut slot| std::mem::take(&mut *slot).1)
            .unwrap_or(false)
    }

    /// Runs `w` in a fresh sandbox of `rt` and times the whole lifecycle, from spawning the
    /// runtime to its exit. stdout and stderr go to files, stdin is an empty pipe.
    pub(crate) fn run(
        &self,
        rt: &Runtime,
        fx: &Fixture,
        w: &Workload,
        timeout: Duration,
    ) -> Result<RunOutput, RunError> {
        if self.interrupted() {
            return Err(RunError::Interrupted);
        }
        let mut p = rt.prepare(fx, w).map_err(|source| RunError::Spawn {
            runtime: rt.name.clone(),
            source,
        })?;
        let out = File::create(&fx.run_out).map_err(io_err("creating", &fx.run_out))?;
        let err = File::create(&fx.run_err).map_err(io_err("creating", &fx.run_err))?;
        p.cmd.stdin(Stdio::piped()).stdout(out).stderr(err);
        let t0 = Instant::now();
        let mut child = p.cmd.spawn().map_err(|source| RunError::Spawn {
            runtime: rt.name.clone(),
            source,
        })?;
        drop(child.stdin.take());
        self.arm(child.id(), timeout);
        let status = child.wait();
        let elapsed = t0.elapsed();
        let fired = self.disarm();
        drop(p.keep);
        let status = status.map_err(io_err("waiting for", std::path::Path::new(&rt.name)))?;
        if fired {
            return Err(RunError::Timeout(timeout));
        }
        if !status.success() {
            let stderr = fs::read_to_string(&fx.run_err).unwrap_or_default();
            return Err(RunError::Failed {
                status: describe(status),
                stderr: tail(&stderr),
            });
        }
        let stdout = fs::read_to_string(&fx.run_out).map_err(io_err("reading", &fx.run_out))?;
        Ok(RunOutput { elapsed, stdout })
    }

    /// Starts `rt` with the idle workload and waits until it prints `ready`.
    pub(crate) fn launch_idle(
        &self,
        rt: &Runtime,
        fx: &Fixture,
        timeout: Duration,
    ) -> Result<IdleSandbox, RunError> {
        let mut p = rt
            .prepare(fx, &Workload::Idle)
            .map_err(|source| RunError::Spawn {
                runtime: rt.name.clone(),
                source,
            })?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&fx.idle_log)
            .map_err(io_err("opening", &fx.idle_log))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        p.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log);
        let t0 = Instant::now();
        let mut child = p.cmd.spawn().map_err(|source| RunError::Spawn {
            runtime: rt.name.clone(),
            source,
        })?;
        drop(p.keep);
        let stdin = child.stdin.take();
        let Some(mut stdout) = child.stdout.take() else {
            return Err(RunError::Output("no stdout pipe".into()));
        };
        let mut seen = Vec::new();
        let outcome = loop {
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                break Err(RunError::Timeout(timeout));
            }
            if self.interrupted() {
                break Err(RunError::Interrupted);
            }
            match sys::wait_readable(stdout.as_fd(), left.min(Duration::from_millis(100))) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => break Err(io_err("polling", std::path::Path::new("stdout"))(e)),
            }
            let mut buf = [0u8; 64];
            match stdout.read(&mut buf) {
                Ok(0) => {
                    let log = fs::read(&fx.idle_log).unwrap_or_default();
                    let start = usize::try_from(log_start).unwrap_or(0).min(log.len());
                    break Err(RunError::Failed {
                        status: "exited before it was ready".into(),
                        stderr: tail(&String::from_utf8_lossy(&log[start..])),
                    });
                }
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(6).any(|w| w == b"ready\n") {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(io_err("reading", std::path::Path::new("stdout"))(e)),
            }
        };
        let ready = t0.elapsed();
        let sandbox = IdleSandbox {
            child,
            stdin,
            _stdout: stdout,
            ready,
        };
        match outcome {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.kill();
                Err(e)
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.watchdog.take() {
            let _ = t.join();
        }
    }
}

/// A sandbox whose workload waits for end of file on stdin.
#[derive(Debug)]
pub(crate) struct IdleSandbox {
    child: Child,
    stdin: Option<ChildStdin>,
    _stdout: ChildStdout,
    /// From spawning the runtime to reading `ready`.
    pub ready: Duration,
}

impl IdleSandbox {
    /// The runtime's top process (also its process group).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin so the workload exits and the runtime tears the sandbox down.
    pub(crate) fn release(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits until `deadline` for the runtime to exit after [`release`](Self::release);
    /// kills its process group if it does not. True if it exited by itself.
    pub(crate) fn finish(mut self, deadline: Instant) -> bool {
        self.release();
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                _ => {
                    self.kill();
                    return false;
                }
            }
        }
    }

    fn kill(mut self) {
        sys::kill_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A snapshot of /proc: who is whose child, and what each is called.
#[derive(Debug, Default)]
pub(crate) struct ProcTable {
    children: HashMap<u32, Vec<u32>>,
    comm: HashMap<u32, String>,
}

/// Host memory of one sandbox's processes.
#[derive(Debug, Clone, Default)]
pub(crate) struct SandboxMemory {
    /// PSS of the runtime's own processes, KiB.
    pub machinery_kib: u64,
    /// PSS of the workload, KiB (0 when it cannot be told apart).
    pub payload_kib: u64,
    /// The runtime's processes, by name.
    pub processes: Vec<String>,
}

/// The payload's name as /proc shows it (truncated to 15 bytes).
const PAYLOAD_COMM: &str = "cordon-syscall-";

impl ProcTable {
    pub(crate) fn scan() -> ProcTable {
        let mut t = ProcTable::default();
        let Ok(entries) = fs::read_dir("/proc") else {
            return t;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = stat[open + 1..close].to_string();
            let ppid = stat[close + 1..]
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            t.children.entry(ppid).or_default().push(pid);
            t.comm.insert(pid, comm);
        }
        t
    }

    /// `root` and all its descendants.
    pub(crate) fn tree(&self, root: u32) -> Vec<u32> {
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            if let Some(kids) = self.children.get(&out[i]) {
                out.extend(kids.iter().copied());
            }
            i += 1;
        }
        out
    }

    /// PSS of the sandbox rooted at the runtime process `root`.
    pub(crate) fn memory(&self, root: u32, payload_separable: bool) -> SandboxMemory {
        let mut m = SandboxMemory::default();
        for pid in self.tree(root) {
            let Some(kib) = pss_kib(pid) else { continue };
            let comm = self.comm.get(&pid).cloned().unwrap_or_default();
            if payload_separable && comm.starts_with(PAYLOAD_COMM) {
                m.payload_kib += kib;
            } else {
                m.machinery_kib += kib;
                m.processes.push(comm);
            }
        }
        m
    }
}

/// Proportional set size of `pid` in KiB (None for kernel threads and processes gone).
fn pss_kib(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// MemAvailable from /proc/meminfo, MiB.
pub(crate) fn mem_available_mib() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib / 1024)
}

/// Parses the flat JSON object the benchmark program prints into `key -> number`.
pub(crate) fn parse_numbers(stdout: &str) -> Result<HashMap<String, f64>, RunError> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    let value: serde_json::Value = line
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| RunError::Output(stdout.chars().take(200).collect()))?;
    let obj = value
        .as_object()
        .ok_or_else(|| RunError::Output(stdout.chars().take(200).collect()))?;
    Ok(obj
        .iter()
        .filter_map(|(k, v)| v.as_f64().map(|n| (k.clone(), n)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_includes_descendants() {
        let t = ProcTable::scan();
        let me = std::process::id();
        assert!(t.tree(me).contains(&me));
    }

    #[test]
    fn parses_bench_output() {
        let n = parse_numbers("noise\n{\"getppid_ns\":212.5,\"open_read_close_ns\":4100.0}\n")
            .expect("parse");
        assert_eq!(n["getppid_ns"], 212.5);
        assert!(parse_numbers("garbage").is_err());
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\n\nc\nd\n"), "b | c | d");
        assert_eq!(tail(""), "(no error output)");
    }
}
