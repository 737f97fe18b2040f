//! The wire protocol between cordon (host) and its guest agent, spoken over one virtio-serial
//! port: a byte stream of frames.
//!
//! A frame is `len: u32 LE` (kind byte + payload), `kind: u8`, then the payload. Integers are
//! little-endian; strings and byte strings are a `u32` length followed by the bytes. The guest
//! is untrusted: every decoder checks lengths and never allocates more than [`MAX_FRAME`].

use std::fmt;
use std::io::{self, Read, Write};

/// Largest frame either side accepts (kind byte + payload).
pub const MAX_FRAME: usize = 1 << 20;
/// Largest stdout/stderr/stdin chunk a sender puts in one frame.
pub const CHUNK: usize = 64 << 10;
/// Name of the virtio-serial port the agent talks on.
pub const PORT_NAME: &str = "cordon.agent";
/// How often an idle agent says it is alive while a command runs.
pub const HEARTBEAT_MS: u64 = 1000;

/// Host to guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMsg {
    Run(RunRequest),
    /// Run a cordon-owned warm-up command the way [`HostMsg::Run`] would, discard its output,
    /// and say [`GuestMsg::Ready`] again: a warm pool's VM has then translated the exec path
    /// (under TCG) before a tenant's command arrives. Never sent with a tenant's command.
    Warm(RunRequest),
    Stdin(Vec<u8>),
    StdinEof,
    Signal(i32),
    /// Start another process next to the command (`exec`), under the id the host chose; it
    /// gets the command's confinement (capabilities, no_new_privs, seccomp filter).
    ExecStart {
        id: u32,
        req: ExecRequest,
    },
    ExecStdin {
        id: u32,
        data: Vec<u8>,
    },
    ExecStdinEof {
        id: u32,
    },
    ExecSignal {
        id: u32,
        signal: i32,
    },
}

/// Guest to host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMsg {
    /// The agent is up and waits for [`HostMsg::Run`].
    Ready {
        kernel_release: String,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(ExitReport),
    Heartbeat,
    ExecStdout {
        id: u32,
        data: Vec<u8>,
    },
    ExecStderr {
        id: u32,
        data: Vec<u8>,
    },
    /// How the exec'd process `id` ended (or why it did not start).
    ExecExit {
        id: u32,
        report: ExitReport,
    },
}

/// A process to run next to the command ([`HostMsg::ExecStart`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
}

/// What the guest should run and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// Size cap of /tmp (tmpfs), bytes.
    pub tmp_bytes: u64,
    /// Bring `lo` up.
    pub loopback: bool,
    /// pids.max of the command's cgroup; 0 = no limit.
    pub pids_max: u64,
    /// Capabilities the command keeps (bit N = capability N); all others are dropped.
    pub capabilities: u64,
    /// The host's wall clock (the guest may come from a snapshot taken long ago).
    pub realtime_secs: u64,
    pub realtime_nanos: u32,
    /// Fresh randomness for the guest's entropy pool (every clone of a snapshot starts with the
    /// same pool state).
    pub seed: Vec<u8>,
    /// Read-only disks to mount before the command runs.
    pub mounts: Vec<GuestMount>,
    /// A classic BPF seccomp program for the command (8 bytes per instruction: code u16, jt,
    /// jf, k u32, native endian), installed after no_new_privs, right before exec; empty: none.
    pub seccomp: Vec<u8>,
}

/// A read-only disk (an ext4 image of a host directory) to mount in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestMount {
    /// The virtio-blk serial of the disk (`/sys/block/*/serial`).
    pub serial: String,
    /// Where it is mounted (created when missing and the parent is writable).
    pub target: String,
}

/// How the command ended, as the agent saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitReport {
    Exited(i32),
    /// Killed by `signal`; `oom` when the guest kernel's OOM killer acted meanwhile.
    Signaled {
        signal: i32,
        oom: bool,
    },
    NotFound(String),
    NotExecutable(String),
    /// The agent could not set the command up (message says what failed).
    SetupFailed(String),
}

/// A malformed frame.
#[derive(Debug)]
pub enum ProtocolError {
    Io(io::Error),
    TooLarge(usize),
    Truncated,
    UnknownKind(u8),
    BadUtf8,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Io(e) => write!(f, "{e}"),
            ProtocolError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME}"),
            ProtocolError::Truncated => f.write_str("truncated frame"),
            ProtocolError::UnknownKind(k) => write!(f, "unknown frame kind {k:#x}"),
            ProtocolError::BadUtf8 => f.write_str("string is not UTF-8"),
        }
    }
}

impl std::error::Error for ProtocolError {}

impl From<io::Error> for ProtocolError {
    fn from(e: io::Error) -> Self {
        ProtocolError::Io(e)
    }
}

mod kind {
    pub const RUN: u8 = 0x01;
    pub const STDIN: u8 = 0x02;
    pub const STDIN_EOF: u8 = 0x03;
    pub const SIGNAL: u8 = 0x04;
    pub const WARM: u8 = 0x05;
    pub const EXEC_START: u8 = 0x06;
    pub const EXEC_STDIN: u8 = 0x07;
    pub const EXEC_STDIN_EOF: u8 = 0x08;
    pub const EXEC_SIGNAL: u8 = 0x09;
    pub const READY: u8 = 0x81;
    pub const STDOUT: u8 = 0x82;
    pub const STDERR: u8 = 0x83;
    pub const EXIT: u8 = 0x84;
    pub const HEARTBEAT: u8 = 0x85;
    pub const EXEC_STDOUT: u8 = 0x86;
    pub const EXEC_STDERR: u8 = 0x87;
    pub const EXEC_EXIT: u8 = 0x88;
}

mod exit_kind {
    pub const EXITED: u8 = 0;
    pub const SIGNALED: u8 = 1;
    pub const NOT_FOUND: u8 = 2;
    pub const NOT_EXECUTABLE: u8 = 3;
    pub const SETUP_FAILED: u8 = 4;
}

/// Builds a payload.
struct Enc(Vec<u8>);

impl Enc {
    fn new(kind: u8) -> Self {
        // Room for the length, filled in by `finish`.
        Enc(vec![0, 0, 0, 0, kind])
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Callers keep every field far below 4 GiB (frames are capped at MAX_FRAME).
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn env(&mut self, env: &[(String, String)]) -> &mut Self {
        self.u32(u32::try_from(env.len() * 2).unwrap_or(0));
        for (k, v) in env {
            self.str(k).str(v);
        }
        self
    }
    fn list(&mut self, items: &[String]) -> &mut Self {
        self.u32(u32::try_from(items.len()).unwrap_or(0));
        for a in items {
            self.str(a);
        }
        self
    }
    fn report(&mut self, report: &ExitReport) -> &mut Self {
        match report {
            ExitReport::Exited(code) => self.u8(exit_kind::EXITED).i32(*code),
            ExitReport::Signaled { signal, oom } => {
                self.u8(exit_kind::SIGNALED).i32(*signal).u8(u8::from(*oom))
            }
            ExitReport::NotFound(w) => self.u8(exit_kind::NOT_FOUND).str(w),
            ExitReport::NotExecutable(w) => self.u8(exit_kind::NOT_EXECUTABLE).str(w),
            ExitReport::SetupFailed(w) => self.u8(exit_kind::SETUP_FAILED).str(w),
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.0.len() - 4).unwrap_or(u32::MAX);
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

/// Reads a payload.
struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.0.len() < n {
            return Err(ProtocolError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, ProtocolError> {
        let n = usize::try_from(self.u32()?).map_err(|_| ProtocolError::Truncated)?;
        Ok(self.take(n)?.to_vec())
    }
    fn str(&mut self) -> Result<String, ProtocolError> {
        String::from_utf8(self.bytes()?).map_err(|_| ProtocolError::BadUtf8)
    }
    fn list(&mut self) -> Result<Vec<String>, ProtocolError> {
        let n = self.u32()?;
        // Each entry takes at least 4 bytes: bound the count by what is there.
        if usize::try_from(n).map_or(true, |n| n > self.0.len() / 4) {
            return Err(ProtocolError::Truncated);
        }
        (0..n).map(|_| self.str()).collect()
    }
    fn env(&mut self) -> Result<Vec<(String, String)>, ProtocolError> {
        Ok(self
            .list()?
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect())
    }
    fn report(&mut self) -> Result<ExitReport, ProtocolError> {
        Ok(match self.u8()? {
            exit_kind::EXITED => ExitReport::Exited(self.i32()?),
            exit_kind::SIGNALED => ExitReport::Signaled {
                signal: self.i32()?,
                oom: self.u8()? != 0,
            },
            exit_kind::NOT_FOUND => ExitReport::NotFound(self.str()?),
            exit_kind::NOT_EXECUTABLE => ExitReport::NotExecutable(self.str()?),
            exit_kind::SETUP_FAILED => ExitReport::SetupFailed(self.str()?),
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
    /// The rest of the payload.
    fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0).to_vec()
    }
}

impl HostMsg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            HostMsg::Run(r) | HostMsg::Warm(r) => {
                let k = if matches!(self, HostMsg::Run(_)) {
                    kind::RUN
                } else {
                    kind::WARM
                };
                let mut e = Enc::new(k);
                e.list(&r.argv)
                    .env(&r.env)
                    .str(&r.workdir)
                    .u32(r.uid)
                    .u32(r.gid)
                    .str(&r.hostname)
                    .u64(r.tmp_bytes)
                    .u8(u8::from(r.loopback))
                    .u64(r.pids_max)
                    .u64(r.capabilities)
                    .u64(r.realtime_secs)
                    .u32(r.realtime_nanos)
                    .bytes(&r.seed);
                e.u32(u32::try_from(r.mounts.len() * 2).unwrap_or(0));
                for m in &r.mounts {
                    e.str(&m.serial).str(&m.target);
                }
                e.bytes(&r.seccomp);
                e.finish()
            }
            HostMsg::Stdin(data) => {
                let mut e = Enc::new(kind::STDIN);
                e.0.extend_from_slice(data);
                e.finish()
            }
            HostMsg::StdinEof => Enc::new(kind::STDIN_EOF).finish(),
            HostMsg::Signal(sig) => {
                let mut e = Enc::new(kind::SIGNAL);
                e.i32(*sig);
                e.finish()
            }
            HostMsg::ExecStart { id, req } => {
                let mut e = Enc::new(kind::EXEC_START);
                e.u32(*id)
                    .list(&req.argv)
                    .env(&req.env)
                    .str(&req.workdir)
                    .u32(req.uid)
                    .u32(req.gid);
                e.finish()
            }
            HostMsg::ExecStdin { id, data } => {
                let mut e = Enc::new(kind::EXEC_STDIN);
                e.u32(*id).0.extend_from_slice(data);
                e.finish()
            }
            HostMsg::ExecStdinEof { id } => {
                let mut e = Enc::new(kind::EXEC_STDIN_EOF);
                e.u32(*id);
                e.finish()
            }
            HostMsg::ExecSignal { id, signal } => {
                let mut e = Enc::new(kind::EXEC_SIGNAL);
                e.u32(*id).i32(*signal);
                e.finish()
            }
        }
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut d = Dec(payload);
        Ok(match kind {
            kind::RUN | kind::WARM => {
                let argv = d.list()?;
                let env = d.env()?;
                let req = RunRequest {
                    argv,
                    env,
                    workdir: d.str()?,
                    uid: d.u32()?,
                    gid: d.u32()?,
                    hostname: d.str()?,
                    tmp_bytes: d.u64()?,
                    loopback: d.u8()? != 0,
                    pids_max: d.u64()?,
                    capabilities: d.u64()?,
                    realtime_secs: d.u64()?,
                    realtime_nanos: d.u32()?,
                    seed: d.bytes()?,
                    mounts: d
                        .list()?
                        .chunks(2)
                        .filter(|c| c.len() == 2)
                        .map(|c| GuestMount {
                            serial: c[0].clone(),
                            target: c[1].clone(),
                        })
                        .collect(),
                    seccomp: d.bytes()?,
                };
                if kind == kind::RUN {
                    HostMsg::Run(req)
                } else {
                    HostMsg::Warm(req)
                }
            }
            kind::STDIN => HostMsg::Stdin(payload.to_vec()),
            kind::STDIN_EOF => HostMsg::StdinEof,
            kind::SIGNAL => HostMsg::Signal(d.i32()?),
            kind::EXEC_START => HostMsg::ExecStart {
                id: d.u32()?,
                req: ExecRequest {
                    argv: d.list()?,
                    env: d.env()?,
                    workdir: d.str()?,
                    uid: d.u32()?,
                    gid: d.u32()?,
                },
            },
            kind::EXEC_STDIN => HostMsg::ExecStdin {
                id: d.u32()?,
                data: d.rest(),
            },
            kind::EXEC_STDIN_EOF => HostMsg::ExecStdinEof { id: d.u32()? },
            kind::EXEC_SIGNAL => HostMsg::ExecSignal {
                id: d.u32()?,
                signal: d.i32()?,
            },
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

impl GuestMsg {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            GuestMsg::Ready { kernel_release } => {
                let mut e = Enc::new(kind::READY);
                e.str(kernel_release);
                e.finish()
            }
            GuestMsg::Stdout(data) | GuestMsg::Stderr(data) => {
                let k = if matches!(self, GuestMsg::Stdout(_)) {
                    kind::STDOUT
                } else {
                    kind::STDERR
                };
                let mut e = Enc::new(k);
                e.0.extend_from_slice(data);
                e.finish()
            }
            GuestMsg::Exit(report) => {
                let mut e = Enc::new(kind::EXIT);
                e.report(report);
                e.finish()
            }
            GuestMsg::Heartbeat => Enc::new(kind::HEARTBEAT).finish(),
            GuestMsg::ExecStdout { id, data } | GuestMsg::ExecStderr { id, data } => {
                let k = if matches!(self, GuestMsg::ExecStdout { .. }) {
                    kind::EXEC_STDOUT
                } else {
                    kind::EXEC_STDERR
                };
                let mut e = Enc::new(k);
                e.u32(*id).0.extend_from_slice(data);
                e.finish()
            }
            GuestMsg::ExecExit { id, report } => {
                let mut e = Enc::new(kind::EXEC_EXIT);
                e.u32(*id).report(report);
                e.finish()
            }
        }
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Self, ProtocolError> {
        let mut d = Dec(payload);
        Ok(match kind {
            kind::READY => GuestMsg::Ready {
                kernel_release: d.str()?,
            },
            kind::STDOUT => GuestMsg::Stdout(payload.to_vec()),
            kind::STDERR => GuestMsg::Stderr(payload.to_vec()),
            kind::EXIT => GuestMsg::Exit(d.report()?),
            kind::HEARTBEAT => GuestMsg::Heartbeat,
            kind::EXEC_STDOUT => GuestMsg::ExecStdout {
                id: d.u32()?,
                data: d.rest(),
            },
            kind::EXEC_STDERR => GuestMsg::ExecStderr {
                id: d.u32()?,
                data: d.rest(),
            },
            kind::EXEC_EXIT => GuestMsg::ExecExit {
                id: d.u32()?,
                report: d.report()?,
            },
            other => return Err(ProtocolError::UnknownKind(other)),
        })
    }
}

/// Splits a byte stream into frames. Feed it whatever arrives; take complete frames out.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    buf: Vec<u8>,
}

impl FrameBuffer {
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame as (kind, payload), if one has arrived.
    fn next_raw(&mut self) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&self.buf[..4]);
        let len = usize::try_from(u32::from_le_bytes(len_bytes)).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(ProtocolError::Truncated);
        }
        if len > MAX_FRAME {
            return Err(ProtocolError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let kind = self.buf[4];
        let payload = self.buf[5..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some((kind, payload)))
    }

    pub fn next_guest(&mut self) -> Result<Option<GuestMsg>, ProtocolError> {
        match self.next_raw()? {
            Some((k, p)) => GuestMsg::decode(k, &p).map(Some),
            None => Ok(None),
        }
    }

    pub fn next_host(&mut self) -> Result<Option<HostMsg>, ProtocolError> {
        match self.next_raw()? {
            Some((k, p)) => HostMsg::decode(k, &p).map(Some),
            None => Ok(None),
        }
    }
}

/// Reads exactly one host message from a blocking reader (the agent before a command runs).
pub fn read_host_msg(r: &mut impl Read) -> Result<HostMsg, ProtocolError> {
    let mut len_bytes = [0u8; 4];
    r.read_exact(&mut len_bytes)?;
    let len = usize::try_from(u32::from_le_bytes(len_bytes)).unwrap_or(usize::MAX);
    if len == 0 {
        return Err(ProtocolError::Truncated);
    }
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut frame = vec![0u8; len];
    r.read_exact(&mut frame)?;
    HostMsg::decode(frame[0], &frame[1..])
}

/// Writes one encoded frame.
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    w.write_all(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_host(m: HostMsg) {
        let mut fb = FrameBuffer::default();
        let bytes = m.encode();
        // Byte by byte: frames split anywhere must reassemble.
        for (i, b) in bytes.iter().enumerate() {
            assert!(fb.next_host().unwrap().is_none(), "early frame at {i}");
            fb.push(&[*b]);
        }
        assert_eq!(fb.next_host().unwrap(), Some(m.clone()));
        assert_eq!(read_host_msg(&mut &bytes[..]).unwrap(), m);
    }

    #[test]
    fn host_messages_roundtrip() {
        roundtrip_host(HostMsg::Warm(RunRequest {
            argv: vec!["/bin/true".into()],
            ..RunRequest::default()
        }));
        roundtrip_host(HostMsg::Run(RunRequest {
            argv: vec!["python3".into(), "-c".into(), "print(6*7)".into()],
            env: vec![("PATH".into(), "/bin".into()), ("A".into(), String::new())],
            workdir: "/tmp".into(),
            uid: 1000,
            gid: 100,
            hostname: "h".into(),
            tmp_bytes: 1 << 29,
            loopback: true,
            pids_max: 64,
            capabilities: 1 << 21,
            realtime_secs: 1_700_000_000,
            realtime_nanos: 5,
            seed: vec![7; 64],
            mounts: vec![GuestMount {
                serial: "cordon-m0".into(),
                target: "/data".into(),
            }],
            seccomp: vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f],
        }));
        roundtrip_host(HostMsg::Stdin(b"abc\0".to_vec()));
        roundtrip_host(HostMsg::StdinEof);
        roundtrip_host(HostMsg::Signal(15));
        roundtrip_host(HostMsg::ExecStart {
            id: 7,
            req: ExecRequest {
                argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
                env: vec![("A".into(), "b".into())],
                workdir: "/tmp".into(),
                uid: 1000,
                gid: 1000,
            },
        });
        roundtrip_host(HostMsg::ExecStdin {
            id: 7,
            data: b"in".to_vec(),
        });
        roundtrip_host(HostMsg::ExecStdin {
            id: 1,
            data: Vec::new(),
        });
        roundtrip_host(HostMsg::ExecStdinEof { id: 7 });
        roundtrip_host(HostMsg::ExecSignal { id: 7, signal: 9 });
    }

    #[test]
    fn guest_messages_roundtrip() {
        for m in [
            GuestMsg::Ready {
                kernel_release: "6.1.0".into(),
            },
            GuestMsg::Stdout(vec![1, 2, 3]),
            GuestMsg::Stderr(vec![]),
            GuestMsg::Heartbeat,
            GuestMsg::Exit(ExitReport::Exited(3)),
            GuestMsg::Exit(ExitReport::Signaled {
                signal: 9,
                oom: true,
            }),
            GuestMsg::Exit(ExitReport::NotFound("x".into())),
            GuestMsg::Exit(ExitReport::NotExecutable("y".into())),
            GuestMsg::Exit(ExitReport::SetupFailed("z".into())),
            GuestMsg::ExecStdout {
                id: 3,
                data: vec![4, 5],
            },
            GuestMsg::ExecStderr {
                id: u32::MAX,
                data: vec![],
            },
            GuestMsg::ExecExit {
                id: 3,
                report: ExitReport::Signaled {
                    signal: 15,
                    oom: false,
                },
            },
            GuestMsg::ExecExit {
                id: 4,
                report: ExitReport::NotFound("nope".into()),
            },
        ] {
            let mut fb = FrameBuffer::default();
            fb.push(&m.encode());
            fb.push(&GuestMsg::Heartbeat.encode());
            assert_eq!(fb.next_guest().unwrap(), Some(m));
            assert_eq!(fb.next_guest().unwrap(), Some(GuestMsg::Heartbeat));
            assert_eq!(fb.next_guest().unwrap(), None);
        }
    }

    #[test]
    fn hostile_frames_are_rejected() {
        let mut fb = FrameBuffer::default();
        fb.push(&u32::MAX.to_le_bytes());
        assert!(matches!(fb.next_guest(), Err(ProtocolError::TooLarge(_))));

        let mut fb = FrameBuffer::default();
        fb.push(&[0, 0, 0, 0]);
        assert!(fb.next_guest().is_err());

        // A Run whose argv count claims far more entries than the payload holds.
        let mut bad = vec![9, 0, 0, 0, kind::RUN];
        bad.extend_from_slice(&u32::MAX.to_le_bytes());
        bad.extend_from_slice(&[0; 4]);
        let mut fb = FrameBuffer::default();
        fb.push(&bad);
        assert!(matches!(fb.next_host(), Err(ProtocolError::Truncated)));

        // Exec frames too short for their id.
        for k in [kind::EXEC_STDOUT, kind::EXEC_STDERR, kind::EXEC_EXIT] {
            let mut fb = FrameBuffer::default();
            fb.push(&[3, 0, 0, 0, k, 1, 2]);
            assert!(matches!(fb.next_guest(), Err(ProtocolError::Truncated)));
        }
        let mut fb = FrameBuffer::default();
        fb.push(&[1, 0, 0, 0, 0x7f]);
        assert!(matches!(
            fb.next_guest(),
            Err(ProtocolError::UnknownKind(0x7f))
        ));
    }
}
