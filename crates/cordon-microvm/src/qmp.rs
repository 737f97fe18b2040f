//! A minimal client of the QEMU Machine Protocol (JSON lines over a socket): enough to pause,
//! save and restore a guest.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::sys;
use crate::vmm::VmmError;

#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeted: bool,
}

impl Qmp {
    pub fn new(sock: UnixStream) -> Result<Self, VmmError> {
        let writer = sock
            .try_clone()
            .map_err(|e| VmmError::Monitor(format!("cloning the monitor socket: {e}")))?;
        Ok(Qmp {
            reader: BufReader::new(sock),
            writer,
            greeted: false,
        })
    }

    fn read_value(&mut self, deadline: Instant) -> Result<Value, VmmError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(VmmError::Monitor("no answer in time".into()));
        }
        let _ = self.reader.get_ref().set_read_timeout(Some(left));
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(VmmError::Monitor(
                "qemu closed the monitor (it exited)".into(),
            )),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| VmmError::Monitor(format!("unparsable reply {line:?}: {e}"))),
            Err(e) => Err(VmmError::Monitor(format!("reading: {e}"))),
        }
    }

    /// Reads the greeting and enters command mode (once).
    fn handshake(&mut self, deadline: Instant) -> Result<(), VmmError> {
        if self.greeted {
            return Ok(());
        }
        loop {
            if self.read_value(deadline)?.get("QMP").is_some() {
                break;
            }
        }
        self.greeted = true;
        self.execute_raw(&json!({"execute": "qmp_capabilities"}), None, deadline)
            .map(drop)
    }

    fn execute_raw(
        &mut self,
        cmd: &Value,
        fd: Option<BorrowedFd<'_>>,
        deadline: Instant,
    ) -> Result<Value, VmmError> {
        let mut text = cmd.to_string();
        text.push('\n');
        match fd {
            Some(fd) => sys::send_with_fd(&self.writer, text.as_bytes(), fd),
            None => self.writer.write_all(text.as_bytes()),
        }
        .map_err(|e| VmmError::Monitor(format!("sending {}: {e}", cmd["execute"])))?;
        loop {
            let v = self.read_value(deadline)?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(VmmError::Monitor(format!(
                    "{}: {}",
                    cmd["execute"],
                    e.get("desc").and_then(Value::as_str).unwrap_or("error")
                )));
            }
            // An asynchronous event: not the answer.
        }
    }

    /// Queues commands without reading any answer (the monitor is not used afterwards).
    pub fn send_unanswered(&mut self, commands: &[Value]) -> Result<(), VmmError> {
        let mut text = String::new();
        for c in commands {
            text.push_str(&c.to_string());
            text.push('\n');
        }
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| VmmError::Monitor(format!("sending commands: {e}")))
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(
        &mut self,
        command: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value, VmmError> {
        let deadline = Instant::now() + timeout;
        self.handshake(deadline)?;
        let cmd = if args.is_null() {
            json!({"execute": command})
        } else {
            json!({"execute": command, "arguments": args})
        };
        self.execute_raw(&cmd, None, deadline)
    }

    /// Hands `fd` to qemu under `name` (`getfd` with SCM_RIGHTS).
    pub fn send_fd(
        &mut self,
        name: &str,
        fd: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<(), VmmError> {
        let deadline = Instant::now() + timeout;
        self.handshake(deadline)?;
        let cmd = json!({"execute": "getfd", "arguments": {"fdname": name}});
        self.execute_raw(&cmd, Some(fd), deadline).map(drop)
    }

    /// Polls `query-migrate` until the migration completes (or fails, or time runs out).
    pub fn wait_migration(&mut self, timeout: Duration) -> Result<(), VmmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.execute("query-migrate", Value::Null, left)?;
            match r.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => {
                    let why = r
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    return Err(VmmError::Snapshot(format!("migration failed: {why}")));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(VmmError::Snapshot(
                    "migration did not complete in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
