//! The host side of one guest's life: waiting for the agent, then pumping stdio, signals and
//! the exit report between cordon's own stdio and the agent's port, with the deadlines that
//! keep a broken guest from hanging cordon.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use cordon_agent::protocol::{ExitReport, FrameBuffer, GuestMsg, HostMsg, ProtocolError, CHUNK};
use cordon_sandbox::{ExecFailure, ExitOutcome, KillCause};
use thiserror::Error;

use crate::exec::ExecServer;
use crate::sys;
use crate::vmm::Vm;

/// With no frame at all from a running agent for this long, the guest is declared hung (the
/// agent says it is alive every second).
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// How a guest failed (cordon's exit code 125).
#[derive(Debug, Error)]
pub enum GuestError {
    #[error("the guest kernel panicked: {0}")]
    Panic(String),
    #[error("the guest agent failed: {0}")]
    Agent(String),
    #[error("the VM stopped unexpectedly ({0})")]
    Exited(String),
    #[error("the guest did not become ready within {0:?}")]
    BootTimeout(Duration),
    #[error("the guest stopped responding (no word from its agent for {0:?})")]
    Hung(Duration),
    #[error("the guest agent sent a bad frame")]
    Protocol(#[source] ProtocolError),
    #[error("talking to the guest agent")]
    Io(#[source] std::io::Error),
}

/// The last lines of the guest's serial console (and the VMM's stderr).
#[derive(Debug, Default)]
pub struct ConsoleLog {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    /// The first panic or agent failure line, kept even when the tail has moved past it
    /// (a panic's stack trace is longer than the tail).
    cause: Option<String>,
}

const CONSOLE_LINES: usize = 40;

impl ConsoleLog {
    pub fn push(&mut self, data: &[u8]) {
        for &b in data {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial)
                    .trim_end()
                    .to_string();
                self.partial.clear();
                if self.cause.is_none()
                    && (line.contains("Kernel panic") || line.contains("cordon-agent: fatal:"))
                {
                    self.cause = Some(line.clone());
                }
                if self.lines.len() == CONSOLE_LINES {
                    self.lines.pop_front();
                }
                self.lines.push_back(line);
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            out.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        out
    }

    /// Explains a VM that stopped without an exit report, from what it printed last.
    pub fn diagnose(&self, status: &str) -> GuestError {
        let mut lines = self.lines();
        lines.extend(self.cause.clone());
        if let Some(l) = lines.iter().find(|l| l.contains("Kernel panic")) {
            let why = l.split("Kernel panic - not syncing:").nth(1).unwrap_or(l);
            return GuestError::Panic(why.trim().to_string());
        }
        if let Some(l) = lines.iter().find(|l| l.contains("cordon-agent: fatal:")) {
            let why = l.split("cordon-agent: fatal:").nth(1).unwrap_or(l);
            return GuestError::Agent(why.trim().to_string());
        }
        if let Some(l) = lines.iter().rev().find(|l| l.contains("qemu-system")) {
            return GuestError::Exited(format!("{status}: {}", l.trim()));
        }
        GuestError::Exited(status.to_string())
    }
}

/// One guest, from launch to exit report.
#[derive(Debug)]
pub struct Session {
    pub vm: Vm,
    pub console: ConsoleLog,
    frames: FrameBuffer,
    buf: Vec<u8>,
    /// When the agent first spoke after the command was sent (restore timing).
    pub first_word: Option<Instant>,
}

enum Event {
    Frame(GuestMsg),
    VmExited,
    Signal(i32),
    StdinData(usize),
    StdinEof,
    /// One of the exec server's descriptors is readable.
    Exec(i32),
    Idle,
}

impl Session {
    pub fn new(vm: Vm) -> Self {
        Session {
            vm,
            console: ConsoleLog::default(),
            frames: FrameBuffer::default(),
            buf: vec![0; CHUNK],
            first_word: None,
        }
    }

    fn vm_status(&mut self) -> String {
        self.vm.status()
    }

    /// The VM back, with the agent waiting (after [`Self::wait_ready`]).
    pub fn into_vm(self) -> Vm {
        self.vm
    }

    fn drain_console(&mut self) {
        let fd = self.vm.console.as_raw_fd();
        let _ = sys::set_nonblocking(fd, true);
        while let Ok(n) = sys::read(fd, &mut self.buf) {
            if n == 0 {
                break;
            }
            self.console.push(&self.buf[..n]);
        }
    }

    /// Waits up to `timeout` for one event. `stdin` and `signals` are polled when given.
    fn next_event(
        &mut self,
        timeout: Duration,
        stdin: Option<i32>,
        signals: Option<i32>,
        extra: &[i32],
    ) -> Result<Event, GuestError> {
        if let Some(m) = self.frames.next_guest().map_err(GuestError::Protocol)? {
            return Ok(Event::Frame(m));
        }
        let agent = self.vm.agent.as_raw_fd();
        let console = self.vm.console.as_raw_fd();
        let pidfd = self.vm.pidfd.as_raw_fd();
        let mut fds = vec![
            (agent, libc::POLLIN),
            (console, libc::POLLIN),
            (pidfd, libc::POLLIN),
        ];
        fds.extend(stdin.map(|fd| (fd, libc::POLLIN)));
        fds.extend(signals.map(|fd| (fd, libc::POLLIN)));
        let extra_at = fds.len();
        fds.extend(extra.iter().map(|&fd| (fd, libc::POLLIN)));
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let rev = sys::poll(&fds, ms).map_err(GuestError::Io)?;
        if rev[1] != 0 {
            match sys::read(console, &mut self.buf) {
                Ok(n) => self.console.push(&self.buf[..n]),
                Err(e) => return Err(GuestError::Io(e)),
            }
        }
        if rev[0] != 0 {
            let n = sys::read(agent, &mut self.buf).map_err(GuestError::Io)?;
            if n > 0 {
                self.frames.push(&self.buf[..n]);
                if let Some(m) = self.frames.next_guest().map_err(GuestError::Protocol)? {
                    return Ok(Event::Frame(m));
                }
                return Ok(Event::Idle);
            }
            // Agent channel closed: qemu is going away; the pidfd says so shortly.
        }
        let mut i = 3;
        if stdin.is_some() {
            if rev[i] != 0 {
                let fd = stdin.unwrap_or(0);
                return Ok(match sys::read(fd, &mut self.buf) {
                    Ok(0) | Err(_) => Event::StdinEof,
                    Ok(n) => Event::StdinData(n),
                });
            }
            i += 1;
        }
        if let Some(sfd) = signals {
            if rev[i] != 0 {
                // SAFETY: sfd is the live signalfd the caller passed in.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(sfd) };
                if let Some(sig) = sys::read_signal(fd) {
                    return Ok(Event::Signal(sig));
                }
            }
        }
        if let Some(k) = rev[extra_at..].iter().position(|&r| r != 0) {
            return Ok(Event::Exec(extra[k]));
        }
        if rev[2] != 0
            || (rev[0] & (libc::POLLHUP | libc::POLLERR)) != 0 && rev[0] & libc::POLLIN == 0
        {
            return Ok(Event::VmExited);
        }
        Ok(Event::Idle)
    }

    fn vm_gone(&mut self) -> GuestError {
        let status = self.vm_status();
        self.drain_console();
        self.console.diagnose(&status)
    }

    /// Waits for the agent's Ready; returns the guest's kernel release.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<String, GuestError> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.drain_console();
                return Err(GuestError::BootTimeout(limit));
            }
            match self.next_event(left, None, None, &[])? {
                Event::Frame(GuestMsg::Ready { kernel_release }) => return Ok(kernel_release),
                Event::VmExited => return Err(self.vm_gone()),
                _ => {}
            }
        }
    }

    pub fn send(&mut self, msg: &HostMsg) -> Result<(), GuestError> {
        (&self.vm.agent)
            .write_all(&msg.encode())
            .map_err(GuestError::Io)
    }

    /// Runs the command to its end: forwards stdin and `signals` to the guest, its output to
    /// cordon's stdout/stderr, until the exit report, the deadline (the VM is killed and the
    /// outcome is a timeout), or a failure of the guest.
    pub fn pump(&mut self, deadline: Option<Instant>) -> Result<ExitOutcome, GuestError> {
        self.pump_signals(deadline, &crate::FORWARDED_SIGNALS)
    }

    /// [`Self::pump`] forwarding `signals` (the OCI front's keeper forwards every signal an
    /// engine may send with `kill`).
    pub fn pump_signals(
        &mut self,
        deadline: Option<Instant>,
        signals: &[i32],
    ) -> Result<ExitOutcome, GuestError> {
        self.pump_serving(deadline, signals, None)
    }

    /// [`Self::pump_signals`], also relaying the processes that `execs`' clients start next
    /// to the command.
    pub fn pump_serving(
        &mut self,
        deadline: Option<Instant>,
        signals: &[i32],
        execs: Option<&mut ExecServer>,
    ) -> Result<ExitOutcome, GuestError> {
        let forward = sys::sigset(signals);
        let old_mask = sys::sigmask(libc::SIG_BLOCK, &forward).map_err(GuestError::Io)?;
        let sigfd = sys::signalfd(&forward).map_err(GuestError::Io);
        let result = match sigfd {
            Ok(fd) => self.pump_with(deadline, fd.as_fd().as_raw_fd(), execs),
            Err(e) => Err(e),
        };
        let _ = sys::sigmask(libc::SIG_SETMASK, &old_mask);
        result
    }

    fn pump_with(
        &mut self,
        deadline: Option<Instant>,
        sigfd: i32,
        mut execs: Option<&mut ExecServer>,
    ) -> Result<ExitOutcome, GuestError> {
        let mut stdin = Some(0);
        let mut last_word = Instant::now();
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                self.vm.kill();
                return Ok(ExitOutcome::TimedOut);
            }
            if now.duration_since(last_word) > HANG_LIMIT {
                self.drain_console();
                self.vm.kill();
                return Err(GuestError::Hung(HANG_LIMIT));
            }
            let mut wait = Duration::from_millis(500);
            if let Some(d) = deadline {
                wait = wait.min(d.saturating_duration_since(now));
            }
            let extra = execs.as_ref().map(|x| x.fds()).unwrap_or_default();
            match self.next_event(wait, stdin, Some(sigfd), &extra)? {
                Event::Frame(m) => {
                    last_word = Instant::now();
                    self.first_word.get_or_insert(last_word);
                    match m {
                        GuestMsg::Stdout(data) => {
                            let _ = sys::write_all(1, &data);
                        }
                        GuestMsg::Stderr(data) => {
                            let _ = sys::write_all(2, &data);
                        }
                        GuestMsg::Exit(report) => return outcome(report),
                        GuestMsg::Heartbeat | GuestMsg::Ready { .. } => {}
                        m @ (GuestMsg::ExecStdout { .. }
                        | GuestMsg::ExecStderr { .. }
                        | GuestMsg::ExecExit { .. }) => {
                            if let Some(x) = execs.as_deref_mut() {
                                let mut agent = &self.vm.agent;
                                x.from_guest(m, &mut |h| agent.write_all(&h.encode()))
                                    .map_err(GuestError::Io)?;
                            }
                        }
                    }
                }
                Event::Exec(fd) => {
                    if let Some(x) = execs.as_deref_mut() {
                        let mut agent = &self.vm.agent;
                        x.readable(fd, &mut |h| agent.write_all(&h.encode()))
                            .map_err(GuestError::Io)?;
                    }
                }
                Event::StdinData(n) => {
                    let data = self.buf[..n].to_vec();
                    self.send(&HostMsg::Stdin(data))?;
                }
                Event::StdinEof => {
                    stdin = None;
                    self.send(&HostMsg::StdinEof)?;
                }
                Event::Signal(sig) => self.send(&HostMsg::Signal(sig))?,
                Event::VmExited => return Err(self.vm_gone()),
                Event::Idle => {}
            }
        }
    }
}

fn outcome(report: ExitReport) -> Result<ExitOutcome, GuestError> {
    Ok(match report {
        ExitReport::Exited(code) => ExitOutcome::Exited(code),
        ExitReport::Signaled { signal, oom } => ExitOutcome::Signaled {
            signal,
            cause: if oom {
                KillCause::MemoryLimit
            } else {
                KillCause::Signal
            },
        },
        ExitReport::NotFound(w) => ExitOutcome::ExecFailed(ExecFailure::NotFound(w)),
        ExitReport::NotExecutable(w) => ExitOutcome::ExecFailed(ExecFailure::NotExecutable(w)),
        ExitReport::SetupFailed(why) => return Err(GuestError::Agent(why)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_keeps_the_tail_and_finds_panics() {
        let mut log = ConsoleLog::default();
        for i in 0..100 {
            log.push(format!("line {i}\n").as_bytes());
        }
        log.push(b"[ 1.0] Kernel panic - not syncing: sysrq triggered crash\r\n");
        for i in 0..100 {
            log.push(format!("trace {i}\n").as_bytes());
        }
        log.push(b"partial");
        let lines = log.lines();
        assert_eq!(lines.len(), CONSOLE_LINES + 1);
        assert_eq!(lines.last().unwrap(), "partial");
        match log.diagnose("exit status: 0") {
            GuestError::Panic(why) => assert_eq!(why, "sysrq triggered crash"),
            other => panic!("{other:?}"),
        }
        let mut log = ConsoleLog::default();
        log.push(b"cordon-agent: fatal: mounting ext4 on /newroot: EINVAL\n");
        assert!(matches!(log.diagnose("x"), GuestError::Agent(_)));
    }
}
