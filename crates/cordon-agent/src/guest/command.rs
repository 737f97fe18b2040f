//! Runs the one command of a sandbox: per-sandbox setup (clock, entropy, hostname, limits),
//! the request handed to a process forked ahead of time (the zygote), which sets up the
//! requested identity and execs, then the stdio pump until it ends.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{send, sys};
use crate::protocol::{
    ExecRequest, ExitReport, FrameBuffer, GuestMsg, HostMsg, RunRequest, CHUNK, HEARTBEAT_MS,
};

const CGROUP: &str = "/sys/fs/cgroup";

/// Runs `req` to its end and says how it ended.
pub fn run(port: &mut File, req: &RunRequest) -> ExitReport {
    match start(req) {
        Ok(started) => pump(port, started, req),
        Err(report) => report,
    }
}

struct Started {
    pid: libc::pid_t,
    sigchld: OwnedFd,
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn setup_failed(what: &str, e: impl std::fmt::Display) -> ExitReport {
    ExitReport::SetupFailed(format!("{what}: {e}"))
}

/// Per-sandbox state of a guest that may have been cloned from a snapshot.
fn prepare_guest(req: &RunRequest) -> Result<(), ExitReport> {
    sys::set_realtime(req.realtime_secs, req.realtime_nanos)
        .map_err(|e| setup_failed("setting the clock", e))?;
    if !req.seed.is_empty() {
        sys::add_entropy(&req.seed).map_err(|e| setup_failed("seeding the entropy pool", e))?;
    }
    // Every step skipped here saves tens of milliseconds in an emulated guest (each code
    // path runs for the first time in a restored VM), so what boot already set is kept.
    if req.hostname != super::BOOT_HOSTNAME {
        sys::sethostname(&req.hostname).map_err(|e| setup_failed("setting the hostname", e))?;
    }
    if req.tmp_bytes > 0 && req.tmp_bytes != super::BOOT_TMP_BYTES {
        sys::mount(
            "tmpfs",
            "/tmp",
            "tmpfs",
            libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV,
            &format!("size={},mode=1777", req.tmp_bytes),
        )
        .map_err(|e| setup_failed("sizing /tmp", e))?;
    }
    if req.loopback {
        sys::loopback_up().map_err(|e| setup_failed("bringing lo up", e))?;
    }
    for m in &req.mounts {
        mount_disk(m)?;
    }
    Ok(())
}

/// The block device whose virtio serial is `serial`.
fn disk_by_serial(serial: &str) -> Option<String> {
    fs::read_dir("/sys/block").ok()?.flatten().find_map(|e| {
        let s = fs::read_to_string(e.path().join("serial")).ok()?;
        (s.trim() == serial).then(|| format!("/dev/{}", e.file_name().to_string_lossy()))
    })
}

/// Mounts a read-only disk the host attached for `--mount SRC:DST:ro`.
fn mount_disk(m: &crate::protocol::GuestMount) -> Result<(), ExitReport> {
    let what = format!("mounting {}", m.target);
    let dev = disk_by_serial(&m.serial)
        .ok_or_else(|| setup_failed(&what, format!("no disk with serial {}", m.serial)))?;
    let f = File::open(&dev).map_err(|e| setup_failed(&what, format!("opening {dev}: {e}")))?;
    sys::flush_block_cache(&f).map_err(|e| setup_failed(&what, format!("flushing {dev}: {e}")))?;
    drop(f);
    if fs::metadata(&m.target).is_err() {
        fs::create_dir_all(&m.target).map_err(|e| {
            setup_failed(
                &what,
                format!("creating the mount point (the guest's root is read-only; use an existing directory or one below /tmp): {e}"),
            )
        })?;
    }
    sys::mount(
        &dev,
        &m.target,
        "ext4",
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        "",
    )
    .map_err(|e| setup_failed(&what, e))
}

/// Creates the cgroup the command will run in, with the pids controller enabled, and moves the
/// agent into it, so that the command is born there. Done at boot, so it is part of the
/// snapshot: moving a process between cgroups waits for an RCU grace period, which costs
/// 100+ ms in an emulated guest.
pub fn prepare_cgroup() -> io::Result<()> {
    sys::mount(
        "cgroup2",
        CGROUP,
        "cgroup2",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    fs::write(format!("{CGROUP}/cgroup.subtree_control"), "+pids")?;
    fs::create_dir(format!("{CGROUP}/{COMMAND_CGROUP}"))?;
    fs::write(
        format!("{CGROUP}/{COMMAND_CGROUP}/pids.max"),
        (BOOT_PIDS_MAX + AGENT_TASKS).to_string(),
    )?;
    fs::write(format!("{CGROUP}/{COMMAND_CGROUP}/cgroup.procs"), "0")?;
    OOM_AT_BOOT.store(oom_kills(), std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Puts the guest back as boot left it after a warm-up command: its OOM baseline taken anew
/// (the command's processes are gone: `pump` kills everything but the agent).
pub fn rearm() {
    OOM_AT_BOOT.store(oom_kills(), std::sync::atomic::Ordering::Relaxed);
    // The warm-up used the zygote; the command gets a fresh one (a failure here only means
    // the command's start forks it).
    let _ = prepare_zygote();
}

/// The pids limit set at boot (cordon's default).
const BOOT_PIDS_MAX: u64 = 1024;

/// The guest's OOM-kill count when it booted: a guest runs one command, so any kill since
/// then hit the command's processes.
static OOM_AT_BOOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const COMMAND_CGROUP: &str = "command";

/// Tasks of the agent in the command's cgroup: its main thread and the stdin writer.
const AGENT_TASKS: u64 = 2;

/// Sets the command's pids limit (the agent's own tasks are in the cgroup too).
fn limit_pids(max: u64) -> Result<(), ExitReport> {
    if max == BOOT_PIDS_MAX {
        return Ok(());
    }
    let max = if max == 0 {
        "max".to_string()
    } else {
        (max + AGENT_TASKS).to_string()
    };
    let path = format!("{CGROUP}/{COMMAND_CGROUP}/pids.max");
    fs::write(path, max).map_err(|e| setup_failed("limiting the command's processes", e))
}

fn oom_kills() -> u64 {
    fs::read_to_string("/proc/vmstat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The command's exec plan for `req` (everything but its fds), or why there is none.
fn plan_for(req: &RunRequest) -> Result<sys::ChildPlan, ExitReport> {
    let bad = |what: &str| ExitReport::SetupFailed(format!("{what} contains a NUL byte"));
    let argv: Vec<CString> = req
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("the command"))?;
    let env: Vec<CString> = req
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(|_| bad("the environment"))?;
    let Some(arg0) = req.argv.first() else {
        return Err(ExitReport::SetupFailed("no command".into()));
    };
    let candidates: Vec<CString> = if arg0.contains('/') {
        vec![CString::new(arg0.as_str()).map_err(|_| bad("the command"))?]
    } else {
        let path = req
            .env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map_or("/usr/local/bin:/usr/bin:/bin", |(_, v)| v.as_str());
        path.split(':')
            .map(|d| if d.is_empty() { "." } else { d })
            .filter_map(|d| CString::new(format!("{d}/{arg0}")).ok())
            .collect()
    };
    let workdir = CString::new(req.workdir.as_str()).map_err(|_| bad("the working directory"))?;
    let mut plan = sys::ChildPlan::new(argv, env, workdir);
    plan.uid = req.uid;
    plan.gid = req.gid;
    plan.capabilities = req.capabilities;
    plan.candidates = candidates;
    plan.seccomp = sys::decode_filter(&req.seccomp)
        .ok_or_else(|| ExitReport::SetupFailed("a malformed seccomp filter".into()))?;
    Ok(plan)
}

/// The command's process before it knows its command: forked when the guest is prepared (at
/// boot, so the fork is part of the snapshot and not of any sandbox's start; again after a
/// pool's warm-up), waiting on `go` for the request, then set up and exec'd by
/// [`sys::child_exec`]. Its stdio and report pipes exist from the fork on.
struct Zygote {
    pid: libc::pid_t,
    go: OwnedFd,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    report: OwnedFd,
    sigchld: OwnedFd,
}

static ZYGOTE: std::sync::Mutex<Option<Zygote>> = std::sync::Mutex::new(None);

/// Forks the next command's [`Zygote`] (in the command's cgroup, where the agent lives).
pub fn prepare_zygote() -> io::Result<()> {
    let z = fork_zygote()?;
    if let Ok(mut slot) = ZYGOTE.lock() {
        *slot = Some(z);
    }
    Ok(())
}

fn fork_zygote() -> io::Result<Zygote> {
    let sigchld = sys::sigchld_fd()?;
    let (in_r, in_w) = sys::pipe()?;
    let (out_r, out_w) = sys::pipe()?;
    let (err_r, err_w) = sys::pipe()?;
    let (rep_r, rep_w) = sys::pipe()?;
    let (go_r, go_w) = sys::pipe()?;
    let pid = sys::fork()?;
    if pid == 0 {
        // The agent's ends would keep the pipes open: only the zygote's own stay.
        drop((in_w, out_r, err_r, rep_r, go_w, sigchld));
        zygote_main(go_r, &in_r, &out_w, &err_w, &rep_w);
    }
    drop((in_r, out_w, err_w, rep_w, go_r));
    Ok(Zygote {
        pid,
        go: go_w,
        stdin: in_w,
        stdout: out_r,
        stderr: err_r,
        report: rep_r,
        sigchld,
    })
}

/// The zygote: waits for the request, then becomes the command. Never returns.
fn zygote_main(
    go: OwnedFd,
    stdin: &OwnedFd,
    stdout: &OwnedFd,
    stderr: &OwnedFd,
    report: &OwnedFd,
) -> ! {
    let req = match crate::protocol::read_host_msg(&mut File::from(go)) {
        Ok(HostMsg::Run(req)) => req,
        // The agent went away, or the guest powers off: nothing to run.
        // SAFETY: ending this process without running the agent's exit paths.
        _ => unsafe { libc::_exit(0) },
    };
    match plan_for(&req) {
        Ok(mut plan) => {
            plan.stdin = stdin.as_raw_fd();
            plan.stdout = stdout.as_raw_fd();
            plan.stderr = stderr.as_raw_fd();
            plan.report = report.as_raw_fd();
            plan.seal();
            sys::child_exec(&plan)
        }
        // The agent checked the plan before sending it; this cannot happen.
        // SAFETY: ending this process without running the agent's exit paths.
        Err(_) => unsafe { libc::_exit(127) },
    }
}

fn start(req: &RunRequest) -> Result<Started, ExitReport> {
    prepare_guest(req)?;
    limit_pids(req.pids_max)?;
    // Checked here, so that the zygote gets only requests it can turn into a plan.
    plan_for(req)?;
    let arg0 = req.argv.first().cloned().unwrap_or_default();
    // A missing working directory is created when it can be (the root disk is read-only, so
    // only below /tmp in practice); chdir in the child reports the rest.
    let _ = fs::create_dir_all(&req.workdir);

    let ready = ZYGOTE.lock().ok().and_then(|mut slot| slot.take());
    let z = match ready {
        Some(z) => z,
        None => fork_zygote().map_err(|e| setup_failed("starting the command", e))?,
    };
    let Zygote {
        pid,
        go,
        stdin,
        stdout,
        stderr,
        report,
        sigchld,
    } = z;
    let frame = HostMsg::Run(req.clone()).encode();
    File::from(go)
        .write_all(&frame)
        .map_err(|e| setup_failed("starting the command", e))?;
    check_exec(pid, &report, &arg0, &req.workdir)?;
    Ok(Started {
        pid,
        sigchld,
        stdin: Some(stdin),
        stdout,
        stderr,
    })
}

/// Waits on a forked child's report pipe: empty at EOF when exec succeeded, else errno +
/// stage (the child is then reaped and the failure said as a report).
fn check_exec(
    pid: libc::pid_t,
    report: &OwnedFd,
    arg0: &str,
    workdir: &str,
) -> Result<(), ExitReport> {
    let mut msg = [0u8; 5];
    let mut got = 0;
    while got < msg.len() {
        match sys::read(report.as_raw_fd(), &mut msg[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if got < msg.len() {
        return Ok(());
    }
    let _ = sys::waitpid_blocking(pid);
    let errno = i32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
    let err = io::Error::from_raw_os_error(errno);
    Err(match msg[4] {
        sys::stage::EXEC if errno == libc::ENOENT || errno == libc::ENOTDIR => {
            ExitReport::NotFound(arg0.to_string())
        }
        sys::stage::EXEC => ExitReport::NotExecutable(format!("{arg0}: {err}")),
        sys::stage::WORKDIR => setup_failed(&format!("working directory {workdir}"), err),
        sys::stage::CREDENTIALS => setup_failed("setting uid, gid and capabilities", err),
        sys::stage::SECCOMP => setup_failed("installing the seccomp filter", err),
        _ => setup_failed("preparing the command", err),
    })
}

/// A process started next to the command by [`HostMsg::ExecStart`].
struct ExecProc {
    id: u32,
    pid: libc::pid_t,
    stdin: Option<mpsc::Sender<Option<Vec<u8>>>>,
    outputs: Vec<(OwnedFd, bool)>,
}

/// Starts an exec'd process with the command's confinement (the capabilities and seccomp
/// filter of `base`, no_new_privs, its cgroup), forked straight from the agent.
fn exec_start(base: &RunRequest, id: u32, req: &ExecRequest) -> Result<ExecProc, ExitReport> {
    let full = RunRequest {
        argv: req.argv.clone(),
        env: req.env.clone(),
        workdir: req.workdir.clone(),
        uid: req.uid,
        gid: req.gid,
        capabilities: base.capabilities,
        seccomp: base.seccomp.clone(),
        ..RunRequest::default()
    };
    let mut plan = plan_for(&full)?;
    let arg0 = req.argv.first().cloned().unwrap_or_default();
    let _ = fs::create_dir_all(&req.workdir);
    let failed = |e: io::Error| setup_failed("starting the process", e);
    let (in_r, in_w) = sys::pipe().map_err(failed)?;
    let (out_r, out_w) = sys::pipe().map_err(failed)?;
    let (err_r, err_w) = sys::pipe().map_err(failed)?;
    let (rep_r, rep_w) = sys::pipe().map_err(failed)?;
    plan.stdin = in_r.as_raw_fd();
    plan.stdout = out_w.as_raw_fd();
    plan.stderr = err_w.as_raw_fd();
    plan.report = rep_w.as_raw_fd();
    plan.seal();
    let pid = sys::fork().map_err(failed)?;
    if pid == 0 {
        sys::child_exec(&plan)
    }
    drop((in_r, out_w, err_w, rep_w));
    check_exec(pid, &rep_r, &arg0, &req.workdir)?;
    Ok(ExecProc {
        id,
        pid,
        stdin: stdin_writer(in_w),
        outputs: vec![(out_r, true), (err_r, false)],
    })
}

/// Feeds the command's stdin from a thread, so a command that does not read its input cannot
/// stall the pump (and with it stdout, signals and the exit report).
/// No thread (the pids limit counts the agent's threads): the process's stdin is closed.
fn stdin_writer(fd: OwnedFd) -> Option<mpsc::Sender<Option<Vec<u8>>>> {
    let (tx, rx) = mpsc::channel::<Option<Vec<u8>>>();
    let spawned = std::thread::Builder::new().spawn(move || {
        let mut f = File::from(fd);
        while let Ok(Some(chunk)) = rx.recv() {
            if f.write_all(&chunk).is_err() {
                // The command closed its stdin: drop the rest.
                while let Ok(Some(_)) = rx.recv() {}
                break;
            }
        }
    });
    spawned.ok().map(|_| tx)
}

fn decode_status(status: libc::c_int, oom: bool) -> ExitReport {
    if libc::WIFEXITED(status) {
        ExitReport::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        ExitReport::Signaled {
            signal: libc::WTERMSIG(status),
            oom,
        }
    } else {
        ExitReport::Exited(255)
    }
}

/// Passes on one read of an exec'd process's stdout or stderr; false at its end.
fn forward_exec(
    port: &mut File,
    id: u32,
    fd: &OwnedFd,
    is_out: bool,
    buf: &mut [u8],
) -> io::Result<bool> {
    let n = sys::read(fd.as_raw_fd(), buf)?;
    if n == 0 {
        return Ok(false);
    }
    let data = buf[..n].to_vec();
    let msg = if is_out {
        GuestMsg::ExecStdout { id, data }
    } else {
        GuestMsg::ExecStderr { id, data }
    };
    send(port, &msg)?;
    Ok(true)
}

fn pump(port: &mut File, started: Started, base: &RunRequest) -> ExitReport {
    let Started {
        pid,
        sigchld,
        stdin,
        stdout,
        stderr,
    } = started;
    let mut stdin_tx = stdin.and_then(stdin_writer);
    let mut execs: Vec<ExecProc> = Vec::new();
    let mut frames = FrameBuffer::default();
    let mut outputs: Vec<(OwnedFd, bool)> = vec![(stdout, true), (stderr, false)];
    let mut status: Option<libc::c_int> = None;
    let mut buf = vec![0u8; CHUNK];
    let mut last_sent = Instant::now();
    let port_fd = port.as_raw_fd();

    let forward =
        |port: &mut File, fd: &OwnedFd, is_out: bool, buf: &mut [u8]| -> io::Result<bool> {
            let n = sys::read(fd.as_raw_fd(), buf)?;
            if n == 0 {
                return Ok(false);
            }
            let data = buf[..n].to_vec();
            let msg = if is_out {
                GuestMsg::Stdout(data)
            } else {
                GuestMsg::Stderr(data)
            };
            send(port, &msg)?;
            Ok(true)
        };

    while status.is_none() {
        let mut fds = vec![(port_fd, libc::POLLIN), (sigchld.as_raw_fd(), libc::POLLIN)];
        fds.extend(outputs.iter().map(|(fd, _)| (fd.as_raw_fd(), libc::POLLIN)));
        let exec_base = fds.len();
        for x in &execs {
            fds.extend(
                x.outputs
                    .iter()
                    .map(|(fd, _)| (fd.as_raw_fd(), libc::POLLIN)),
            );
        }
        let timeout = i32::try_from(HEARTBEAT_MS).unwrap_or(1000);
        let revents = match sys::poll(&fds, timeout) {
            Ok(r) => r,
            Err(e) => return setup_failed("polling", e),
        };
        if revents[0] != 0 {
            match sys::read(port_fd, &mut buf) {
                Ok(n) => frames.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return setup_failed("reading from the host", e),
            }
            loop {
                match frames.next_host() {
                    Ok(Some(HostMsg::Stdin(data))) => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(Some(data));
                        }
                    }
                    Ok(Some(HostMsg::StdinEof)) => {
                        if let Some(tx) = stdin_tx.take() {
                            let _ = tx.send(None);
                        }
                    }
                    Ok(Some(HostMsg::Signal(sig))) => {
                        let _ = sys::kill(pid, sig);
                    }
                    Ok(Some(HostMsg::ExecStart { id, req })) => {
                        let started = if execs.iter().any(|x| x.id == id) {
                            Err(ExitReport::SetupFailed(format!("exec id {id} is in use")))
                        } else {
                            exec_start(base, id, &req)
                        };
                        match started {
                            Ok(x) => execs.push(x),
                            Err(report) => {
                                if send(port, &GuestMsg::ExecExit { id, report }).is_err() {
                                    return setup_failed("writing to the host", "EPIPE");
                                }
                            }
                        }
                    }
                    Ok(Some(HostMsg::ExecStdin { id, data })) => {
                        if let Some(tx) = execs
                            .iter()
                            .find(|x| x.id == id)
                            .and_then(|x| x.stdin.as_ref())
                        {
                            let _ = tx.send(Some(data));
                        }
                    }
                    Ok(Some(HostMsg::ExecStdinEof { id })) => {
                        if let Some(tx) = execs
                            .iter_mut()
                            .find(|x| x.id == id)
                            .and_then(|x| x.stdin.take())
                        {
                            let _ = tx.send(None);
                        }
                    }
                    Ok(Some(HostMsg::ExecSignal { id, signal })) => {
                        if let Some(x) = execs.iter().find(|x| x.id == id) {
                            let _ = sys::kill(x.pid, signal);
                        }
                    }
                    Ok(Some(HostMsg::Run(_) | HostMsg::Warm(_))) => {}
                    Ok(None) => break,
                    Err(e) => return setup_failed("decoding a host frame", e),
                }
            }
        }
        let mut closed = Vec::new();
        for (i, (fd, is_out)) in outputs.iter().enumerate() {
            if revents[i + 2] != 0 {
                match forward(port, fd, *is_out, &mut buf) {
                    Ok(true) => last_sent = Instant::now(),
                    Ok(false) => closed.push(i),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => closed.push(i),
                }
            }
        }
        for i in closed.into_iter().rev() {
            outputs.remove(i);
        }
        let mut at = exec_base;
        for x in &mut execs {
            let mut closed = Vec::new();
            for (i, (fd, is_out)) in x.outputs.iter().enumerate() {
                if revents.get(at + i).copied().unwrap_or(0) != 0 {
                    match forward_exec(port, x.id, fd, *is_out, &mut buf) {
                        Ok(true) => last_sent = Instant::now(),
                        Ok(false) => closed.push(i),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => closed.push(i),
                    }
                }
            }
            at += x.outputs.len();
            for i in closed.into_iter().rev() {
                x.outputs.remove(i);
            }
        }
        if revents[1] != 0 {
            let mut info = [0u8; 128];
            while let Ok(128) = sys::read(sigchld.as_raw_fd(), &mut info) {}
        }
        while let Some((reaped, st)) = sys::reap_any() {
            if reaped == pid {
                status = Some(st);
            } else if let Some(i) = execs.iter().position(|x| x.pid == reaped) {
                let x = execs.swap_remove(i);
                // Its output so far, without waiting for descendants holding the pipes.
                for (fd, is_out) in &x.outputs {
                    if sys::set_nonblocking(fd.as_raw_fd()).is_ok() {
                        while let Ok(true) = forward_exec(port, x.id, fd, *is_out, &mut buf) {}
                    }
                }
                let report = decode_status(st, false);
                let _ = send(port, &GuestMsg::ExecExit { id: x.id, report });
                last_sent = Instant::now();
            }
        }
        if last_sent.elapsed() >= Duration::from_millis(HEARTBEAT_MS) {
            if send(port, &GuestMsg::Heartbeat).is_err() {
                break;
            }
            last_sent = Instant::now();
        }
    }
    // The command is gone: pass on what it wrote before it went (without waiting for
    // descendants that may hold the pipes open), then end everything else in the guest.
    for (fd, is_out) in &outputs {
        if sys::set_nonblocking(fd.as_raw_fd()).is_ok() {
            while let Ok(true) = forward(port, fd, *is_out, &mut buf) {}
        }
    }
    let _ = sys::kill(-1, libc::SIGKILL);
    let oom = oom_kills() > OOM_AT_BOOT.load(std::sync::atomic::Ordering::Relaxed);
    match status {
        Some(st) => decode_status(st, oom),
        None => ExitReport::SetupFailed("lost the host connection".into()),
    }
}
