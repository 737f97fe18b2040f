//! Processes run next to a guest's command (`exec`): a unix socket whose clients each start
//! one process in the guest and exchange its streams with the session that owns the VM.
//!
//! A client speaks the agent's own frames: it sends [`HostMsg::ExecStart`] first, then
//! [`HostMsg::ExecStdin`], [`HostMsg::ExecStdinEof`] and [`HostMsg::ExecSignal`]; it receives
//! [`GuestMsg::ExecStdout`], [`GuestMsg::ExecStderr`] and finally [`GuestMsg::ExecExit`], after
//! which the server closes the connection. The ids a client puts in its frames are ignored:
//! the server gives each connection its own id towards the guest, so a client reaches only its
//! own process. A client that goes away before the exit report takes its process with it
//! (SIGKILL), and so does any frame the server does not expect from a client.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cordon_agent::protocol::{FrameBuffer, GuestMsg, HostMsg, CHUNK};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ExecError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The path `bind`/`connect` get for `dir/name`: through an open descriptor of `dir`, so a
/// long state directory does not exceed a socket address's 108 bytes.
fn short_path(dir: &fs::File, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
}

fn open_dir(dir: &Path) -> Result<fs::File, ExecError> {
    fs::File::open(dir).map_err(|source| ExecError::Io {
        op: "opening",
        path: dir.to_path_buf(),
        source,
    })
}

/// Connects to the exec socket `name` in `dir`.
pub fn connect(dir: &Path, name: &str) -> Result<UnixStream, ExecError> {
    let d = open_dir(dir)?;
    UnixStream::connect(short_path(&d, name)).map_err(|source| ExecError::Io {
        op: "connecting to",
        path: dir.join(name),
        source,
    })
}

/// How long a write to a client may block.
pub const CLIENT_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// One client: a connection and the guest-side id of its process.
#[derive(Debug)]
struct Client {
    stream: UnixStream,
    id: u32,
    frames: FrameBuffer,
    started: bool,
}

/// The listening socket and its clients.
#[derive(Debug)]
pub struct ExecServer {
    listener: UnixListener,
    clients: Vec<Client>,
    next_id: u32,
    buf: Vec<u8>,
}

impl ExecServer {
    /// Listens on `dir/name`, mode 0600 (only the owner, root for an engine, may connect).
    pub fn bind(dir: &Path, name: &str) -> Result<Self, ExecError> {
        let d = open_dir(dir)?;
        let path = dir.join(name);
        let err = |op, source| ExecError::Io {
            op,
            path: path.clone(),
            source,
        };
        let listener = UnixListener::bind(short_path(&d, name)).map_err(|e| err("binding", e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| err("restricting", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| err("configuring", e))?;
        Ok(ExecServer {
            listener,
            clients: Vec::new(),
            next_id: 1,
            buf: vec![0; CHUNK],
        })
    }

    /// The descriptors to poll for [`Self::readable`].
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.listener.as_raw_fd()];
        fds.extend(self.clients.iter().map(|c| c.stream.as_raw_fd()));
        fds
    }

    /// Handles a readable descriptor from [`Self::fds`]; `to_guest` sends a frame to the agent.
    pub fn readable(
        &mut self,
        fd: RawFd,
        to_guest: &mut dyn FnMut(&HostMsg) -> io::Result<()>,
    ) -> io::Result<()> {
        if fd == self.listener.as_raw_fd() {
            while let Ok((stream, _)) = self.listener.accept() {
                // A client that stops reading stalls the session for this long at most per
                // frame, then loses its process (see `from_guest`).
                let _ = stream.set_write_timeout(Some(CLIENT_WRITE_LIMIT));
                let id = self.next_id;
                self.next_id = self.next_id.wrapping_add(1).max(1);
                self.clients.push(Client {
                    stream,
                    id,
                    frames: FrameBuffer::default(),
                    started: false,
                });
            }
            return Ok(());
        }
        let Some(i) = self.clients.iter().position(|c| c.stream.as_raw_fd() == fd) else {
            return Ok(());
        };
        let c = &mut self.clients[i];
        let n = match c.stream.read(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(_) => 0,
        };
        let mut drop_client = n == 0;
        c.frames.push(&self.buf[..n]);
        while !drop_client {
            let msg = match c.frames.next_host() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(_) => {
                    drop_client = true;
                    break;
                }
            };
            let id = c.id;
            let out = match msg {
                HostMsg::ExecStart { req, .. } if !c.started => {
                    c.started = true;
                    HostMsg::ExecStart { id, req }
                }
                HostMsg::ExecStdin { data, .. } if c.started => HostMsg::ExecStdin { id, data },
                HostMsg::ExecStdinEof { .. } if c.started => HostMsg::ExecStdinEof { id },
                HostMsg::ExecSignal { signal, .. } if c.started => {
                    HostMsg::ExecSignal { id, signal }
                }
                _ => {
                    drop_client = true;
                    break;
                }
            };
            to_guest(&out)?;
        }
        if drop_client {
            let c = self.clients.swap_remove(i);
            if c.started {
                to_guest(&HostMsg::ExecSignal {
                    id: c.id,
                    signal: libc::SIGKILL,
                })?;
            }
        }
        Ok(())
    }

    /// Passes an exec frame from the guest to its client (the connection closes after the exit
    /// report). A client that cannot take it loses its process.
    pub fn from_guest(
        &mut self,
        msg: GuestMsg,
        to_guest: &mut dyn FnMut(&HostMsg) -> io::Result<()>,
    ) -> io::Result<()> {
        let (id, done) = match &msg {
            GuestMsg::ExecStdout { id, .. } | GuestMsg::ExecStderr { id, .. } => (*id, false),
            GuestMsg::ExecExit { id, .. } => (*id, true),
            _ => return Ok(()),
        };
        let Some(i) = self.clients.iter().position(|c| c.id == id) else {
            return Ok(());
        };
        let sent = self.clients[i].stream.write_all(&msg.encode());
        if done {
            self.clients.swap_remove(i);
        } else if sent.is_err() {
            self.clients.swap_remove(i);
            to_guest(&HostMsg::ExecSignal {
                id,
                signal: libc::SIGKILL,
            })?;
        }
        Ok(())
    }
}
