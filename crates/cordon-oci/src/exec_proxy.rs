//! `exec` into a microvm container. The guest's process is not a host process, so the host
//! process an engine gets (its pid file, its exit status) is an "exec proxy": it connects to
//! the keeper's exec socket (see `keeper`), asks the guest to start the process, and from
//! then on stands for it: its stdin goes to the process, the process's stdout and stderr come
//! out of its own, the signals it receives are passed on, and it ends with the process's
//! status (exit code, or death by the same signal). If the keeper goes away (the container's
//! process ended and the VM with it), the guest's process was killed: the proxy dies by
//! SIGKILL.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use cordon_agent::protocol::{ExecRequest, ExitReport, FrameBuffer, GuestMsg, HostMsg, CHUNK};

use crate::OciError;

/// The exec socket's name in the container's state directory.
pub const SOCKET: &str = "exec.sock";

/// Signals the proxy passes on to the guest's process: every catchable one but SIGCHLD
/// (the proxy has no children) and SIGPIPE (ignored: a closed stdout only drops output).
fn forwarded() -> Vec<i32> {
    (1..32)
        .filter(|&s| ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD, libc::SIGPIPE].contains(&s))
        .collect()
}

/// Connects to the keeper of the container in `state_dir` and asks for `req`.
pub fn connect(state_dir: &Path, req: ExecRequest) -> Result<UnixStream, OciError> {
    let mut s = cordon_microvm::exec::connect(state_dir, SOCKET)
        .map_err(|e| OciError::Runtime(crate::error_chain(&e)))?;
    s.write_all(&HostMsg::ExecStart { id: 0, req }.encode())
        .map_err(|e| OciError::Runtime(format!("sending the exec request to the keeper: {e}")))?;
    Ok(s)
}

/// How the relay ended.
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

fn write_fd(fd: i32, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: the slice is valid for reads of its length.
        let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        done += n.unsigned_abs();
    }
}

fn signalfd(signals: &[i32]) -> std::io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset; the calls take valid
    // pointers to it; signalfd returns a new fd nobody else owns.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// At most this much of stdin and signals waits for the keeper; stdin is not read beyond.
const PENDING_LIMIT: usize = 256 << 10;

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Relays between this process's stdio and signals and the guest's process until it ends.
/// The socket is non-blocking and what goes to the keeper is queued: the proxy keeps reading
/// the process's output while its input waits (blocking on either side would deadlock with a
/// keeper writing output to it).
pub fn relay(mut sock: UnixStream) -> Ending {
    // SAFETY: ignoring SIGPIPE in this process (writes to a closed stdout fail with EPIPE).
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let sigs = match signalfd(&forwarded()) {
        Ok(fd) => fd,
        Err(e) => {
            write_fd(2, format!("cordon: exec: signalfd: {e}\n").as_bytes());
            return Ending::Exited(255);
        }
    };
    if let Err(e) = sock.set_nonblocking(true) {
        write_fd(
            2,
            format!("cordon: exec: configuring the socket: {e}\n").as_bytes(),
        );
        return Ending::Exited(255);
    }
    let mut frames = FrameBuffer::default();
    let mut buf = vec![0u8; CHUNK];
    let mut stdin_open = true;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let mut sock_events = libc::POLLIN;
        if !pending.is_empty() {
            sock_events |= libc::POLLOUT;
        }
        let mut fds = vec![
            pollfd(sock.as_raw_fd(), sock_events),
            pollfd(sigs.as_raw_fd(), libc::POLLIN),
        ];
        let read_stdin = stdin_open && pending.len() < PENDING_LIMIT;
        if read_stdin {
            fds.push(pollfd(0, libc::POLLIN));
        }
        // SAFETY: `fds` is a valid array of pollfd of its length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            let mut info = [0u8; 128];
            // SAFETY: `info` is writable for one signalfd_siginfo.
            while unsafe { libc::read(sigs.as_fd().as_raw_fd(), info.as_mut_ptr().cast(), 128) }
                == 128
            {
                let signal = i32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                pending.extend(HostMsg::ExecSignal { id: 0, signal }.encode());
            }
        }
        if read_stdin && fds[2].revents != 0 {
            // SAFETY: `buf` is writable for its length.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let data = buf[..n.unsigned_abs()].to_vec();
                pending.extend(HostMsg::ExecStdin { id: 0, data }.encode());
            } else if n == 0
                || !matches!(
                    std::io::Error::last_os_error().kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                )
            {
                stdin_open = false;
                pending.extend(HostMsg::ExecStdinEof { id: 0 }.encode());
            }
        }
        while !pending.is_empty() {
            match sock.write(&pending) {
                Ok(n) if n > 0 => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // Full (WouldBlock) or gone (the read side below says so).
                _ => break,
            }
        }
        if fds[0].revents & !libc::POLLOUT != 0 {
            let n = match sock.read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                    ) =>
                {
                    continue
                }
                Err(_) => 0,
            };
            if n == 0 {
                // The keeper ended: the VM, and the process in it, are gone.
                return Ending::Signaled(libc::SIGKILL);
            }
            frames.push(&buf[..n]);
            loop {
                match frames.next_guest() {
                    Ok(Some(GuestMsg::ExecStdout { data, .. })) => write_fd(1, &data),
                    Ok(Some(GuestMsg::ExecStderr { data, .. })) => write_fd(2, &data),
                    Ok(Some(GuestMsg::ExecExit { report, .. })) => return ending(report),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        write_fd(
                            2,
                            format!("cordon: exec: from the keeper: {e}\n").as_bytes(),
                        );
                        return Ending::Exited(255);
                    }
                }
            }
        }
    }
}

/// The status for a report, with runc's messages and codes for a command that did not start.
fn ending(report: ExitReport) -> Ending {
    match report {
        ExitReport::Exited(code) => Ending::Exited(code),
        ExitReport::Signaled { signal, .. } => Ending::Signaled(signal),
        ExitReport::NotFound(what) => {
            write_fd(
                2,
                format!("cordon: exec {what:?}: executable file not found in $PATH\n").as_bytes(),
            );
            Ending::Exited(127)
        }
        ExitReport::NotExecutable(what) => {
            write_fd(2, format!("cordon: exec {what}\n").as_bytes());
            Ending::Exited(126)
        }
        ExitReport::SetupFailed(why) => {
            write_fd(2, format!("cordon: exec: {why}\n").as_bytes());
            Ending::Exited(126)
        }
    }
}

/// Ends this process with `ending`: its exit code, or death by its signal.
pub fn finish(ending: Ending) -> ! {
    match ending {
        Ending::Exited(code) => {
            // SAFETY: ending the process; nothing is buffered (every write went to an fd).
            unsafe { libc::_exit(code & 0xff) }
        }
        Ending::Signaled(signal) => crate::keeper::die_by(signal),
    }
}

/// Forks the detached proxy (own session, holding this process's stdio and `sock` only) and
/// returns its pid once it has its session and name; the child relays and never returns.
pub fn spawn_detached(sock: UnixStream) -> Result<libc::pid_t, OciError> {
    let err = |what: &str| {
        OciError::Runtime(format!(
            "{what} the exec proxy: {}",
            std::io::Error::last_os_error()
        ))
    };
    let mut ready = [0; 2];
    // SAFETY: `ready` is a valid array of two ints for the kernel to fill.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(err("a pipe for"));
    }
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    let (ready_r, ready_w) = unsafe {
        (
            OwnedFd::from_raw_fd(ready[0]),
            OwnedFd::from_raw_fd(ready[1]),
        )
    };
    // SAFETY: cordon-oci is single-threaded; the child relays and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(err("forking"));
    }
    if pid == 0 {
        drop(ready_r);
        let keep = sock.as_raw_fd();
        // SAFETY: leaving the runtime's session, naming the process for ps, saying so on the
        // pipe (then closed), and closing every fd but stdio and the socket (nothing in this
        // process uses them any more: the runtime's log file, if open, is not the exec's).
        unsafe {
            libc::setsid();
            libc::prctl(libc::PR_SET_NAME, c"cordon-exec".as_ptr());
            libc::write(ready_w.as_raw_fd(), b"r".as_ptr().cast(), 1);
            drop(ready_w);
            if keep > 3 {
                libc::close_range(3, (keep - 1).unsigned_abs(), 0);
            }
            libc::close_range((keep + 1).unsigned_abs(), u32::MAX, 0);
        }
        finish(relay(sock))
    }
    drop(ready_w);
    let mut b = [0u8; 1];
    // SAFETY: `b` is valid for one byte. A proxy that died first reads as end of file: its
    // pid still goes to the pid file, and the engine sees it gone.
    unsafe { libc::read(ready_r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
    Ok(pid)
}
