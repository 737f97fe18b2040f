//! The audit log of refused syscalls: one JSON object per line, rate-limited so that a
//! workload cannot flood the host's disk or terminal (a token bucket; what it drops is counted
//! and reported on the next line that passes).

use std::fs::File;
use std::io::Write;
use std::time::Instant;

/// Lines per second kept on average, and the burst allowed above it.
const RATE_PER_SEC: f64 = 50.0;
const BURST: f64 = 200.0;

/// Where the lines go.
#[derive(Debug)]
pub enum AuditSink {
    Stderr,
    File(File),
}

/// One refused syscall.
#[derive(Debug)]
pub struct Denial<'a> {
    pub pid: u32,
    pub syscall: &'static str,
    pub path: Option<&'a [u8]>,
    pub detail: Option<String>,
    pub errno: i32,
    pub reason: &'static str,
}

/// The rate-limited writer.
#[derive(Debug)]
pub struct AuditLog {
    sink: AuditSink,
    tokens: f64,
    last: Instant,
    dropped: u64,
    pub denied_total: u64,
}

impl AuditLog {
    pub fn new(sink: AuditSink) -> Self {
        AuditLog {
            sink,
            tokens: BURST,
            last: Instant::now(),
            dropped: 0,
            denied_total: 0,
        }
    }

    pub fn record(&mut self, d: &Denial<'_>) {
        self.denied_total += 1;
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * RATE_PER_SEC;
        self.tokens = (self.tokens + refill).min(BURST);
        self.last = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return;
        }
        self.tokens -= 1.0;
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut line = serde_json::json!({
            "ts": secs,
            "event": "denied",
            "pid": d.pid,
            "syscall": d.syscall,
            "errno": errno_name(d.errno),
            "reason": d.reason,
        });
        if let Some(p) = d.path {
            line["path"] = serde_json::Value::String(String::from_utf8_lossy(p).into_owned());
        }
        if let Some(detail) = &d.detail {
            line["detail"] = serde_json::Value::String(detail.clone());
        }
        if self.dropped > 0 {
            line["suppressed_before"] = serde_json::Value::from(self.dropped);
            self.dropped = 0;
        }
        let text = format!("{line}\n");
        let _ = match &mut self.sink {
            AuditSink::Stderr => {
                std::io::stderr().write_all(format!("cordon-sentry: {text}").as_bytes())
            }
            AuditSink::File(f) => f.write_all(text.as_bytes()),
        };
    }

    /// Reports what the rate limit swallowed at the end of a run.
    pub fn finish(&mut self) {
        if self.dropped > 0 {
            let line = serde_json::json!({"event": "suppressed", "count": self.dropped});
            let _ = match &mut self.sink {
                AuditSink::Stderr => {
                    std::io::stderr().write_all(format!("cordon-sentry: {line}\n").as_bytes())
                }
                AuditSink::File(f) => f.write_all(format!("{line}\n").as_bytes()),
            };
            self.dropped = 0;
        }
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::EROFS => "EROFS",
        libc::ELOOP => "ELOOP",
        libc::EXDEV => "EXDEV",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EINVAL => "EINVAL",
        libc::ENOTSUP => "ENOTSUP",
        _ => "other",
    }
}
