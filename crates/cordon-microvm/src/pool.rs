//! A warm pool: a long-lived process (`cordon microvm pool`) that keeps a few guests restored
//! from the snapshot and warmed up, and lends each one, once, to a `cordon run` whose VM has
//! the same shape.
//!
//! Under TCG a restored guest's first fork and exec cost more than the restore itself: every
//! guest code path runs through the translator for the first time. A pooled guest has run a
//! fixed, cordon-owned warm-up command ([`HostMsg::Warm`], never a tenant's) before it is lent,
//! so the translations are in its VMM already.
//!
//! The exchange, over a unix socket (mode 0600, owner-only peers):
//! 1. the client connects and writes `take <shape>\n`, where the shape is the snapshot key of
//!    its VM configuration (VMM build, kernel, initramfs, root image, memory, vCPUs);
//! 2. the pool answers `1` with the VM's agent socket, console socket and pidfd attached
//!    (SCM_RIGHTS), or `0` when it has no idle VM of that shape (the client then restores one
//!    itself);
//! 3. the connection stays open as the lease: when it closes (the client ended, was killed or
//!    gave up), the pool kills the VM. A lent VM is never lent again.
//!
//! The client still sends the command with the clock and fresh entropy ([`HostMsg::Run`]) at
//! handoff. Every VMM is the pool's child with PDEATHSIG: nothing outlives the pool.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cordon_agent::protocol::HostMsg;
use cordon_sandbox::SandboxSpec;
use thiserror::Error;

use crate::session::Session;
use crate::snapshot::Snapshot;
use crate::sys;
use crate::vmm::{GuestMemory, NoControl, Vm, VmConfig, VmProcess, Vmm};
use crate::{MicrovmError, MicrovmTier};

/// Where `cordon microvm pool` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/cordon/microvm-pool.sock";
/// The warm-up command every pooled guest runs once (cordon's, never a tenant's).
pub const WARM_UP: &[&str] = &["/bin/true"];
/// The extra warm-up of `cordon microvm pool --warm-python` (it takes ~0.5 s off the
/// interpreter's next start under TCG); a root image without python3 reports it missing.
pub const WARM_UP_PYTHON: &[&str] = &["/usr/bin/python3", "-c", "pass"];
/// Nice value of the VMMs the pool is filling (raised to 0 when one is lent).
const FILL_NICE: i32 = 10;
/// How long a client waits for the pool's answer before restoring a VM itself.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A failure of the pool or of taking a VM from it.
#[derive(Debug, Error)]
pub enum PoolError {
    #[error("{what} {path}")]
    Socket {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a pool already listens on {0}")]
    AlreadyRunning(PathBuf),
    #[error("the pool needs snapshots (CORDON_MICROVM_SNAPSHOT=0 is set)")]
    NoSnapshots,
    #[error("the pool at {0} answered with a malformed message")]
    BadAnswer(PathBuf),
    #[error(transparent)]
    Microvm(Box<MicrovmError>),
}

fn socket_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> PoolError {
    let path = path.to_path_buf();
    move |source| PoolError::Socket { what, path, source }
}

/// The key a pool and its clients compare: the snapshot the configuration restores from.
pub fn shape_key(vmm: &dyn Vmm, config: &VmConfig) -> String {
    Snapshot::for_config(Path::new("/"), vmm, config)
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Asks the pool at `socket` for an idle VM of shape `key`. `Ok(None)` when no pool listens
/// there or it has none of that shape.
pub fn take(socket: &Path, key: &str) -> Result<Option<Vm>, PoolError> {
    let conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(socket_err("connecting to the pool at", socket)(e)),
    };
    let _ = conn.set_read_timeout(Some(ANSWER_TIMEOUT));
    let _ = conn.set_write_timeout(Some(ANSWER_TIMEOUT));
    (&conn)
        .write_all(format!("take {key}\n").as_bytes())
        .map_err(socket_err("asking the pool at", socket))?;
    let mut answer = [0u8; 1];
    let (n, fds) = sys::recv_with_fds(&conn, &mut answer)
        .map_err(socket_err("reading the pool at", socket))?;
    match (n, answer[0], fds.len()) {
        (1, b'0', 0) | (0, _, 0) => Ok(None),
        (1, b'1', 3) => {
            let mut fds = fds.into_iter();
            let (Some(agent), Some(console), Some(pidfd)) = (fds.next(), fds.next(), fds.next())
            else {
                return Err(PoolError::BadAnswer(socket.to_path_buf()));
            };
            let _ = conn.set_read_timeout(None);
            Ok(Some(Vm {
                process: VmProcess::Leased { lease: conn },
                pidfd,
                agent: UnixStream::from(agent),
                console: UnixStream::from(console),
                control: Box::new(NoControl),
            }))
        }
        _ => Err(PoolError::BadAnswer(socket.to_path_buf())),
    }
}

/// What `cordon microvm pool` was asked for.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub socket: PathBuf,
    /// Idle, warmed VMs to keep.
    pub size: usize,
    /// Also warm up `python3 -c pass` ([`WARM_UP_PYTHON`]): faster python starts, slower refills.
    pub warm_python: bool,
}

/// A VM lent to a client, killed when `conn` closes.
struct Lent {
    vm: Vm,
    conn: UnixStream,
}

/// Restores and warms VMs one after the other, on one thread that lives as long as the pool
/// (a VMM's PDEATHSIG fires when the thread that started it ends).
/// What the fill thread makes VMs from.
struct Filler {
    sealed: Arc<SealedSnapshot>,
    /// The warm-up commands, run one after the other.
    warm_specs: Vec<SandboxSpec>,
    vmm: Box<dyn Vmm>,
    config: VmConfig,
    /// Idle VMs to keep.
    size: usize,
    debug: bool,
}

fn fill(f: &Filler, idle: &Mutex<VecDeque<Vm>>, wanted: &mpsc::Receiver<()>) {
    let Filler {
        sealed,
        warm_specs,
        vmm,
        config,
        size,
        debug,
    } = f;
    let (vmm, size, debug) = (vmm.as_ref(), *size, *debug);
    let limit = MicrovmTier::boot_limit(config.accel);
    let mut announced = false;
    while wanted.recv().is_ok() {
        let mut failures = 0u32;
        loop {
            match warm_vm(sealed, warm_specs, vmm, config, limit) {
                Ok(vm) => {
                    if let Ok(mut q) = idle.lock() {
                        if debug {
                            eprintln!(
                                "cordon microvm pool: VM {} warm ({} idle)",
                                vm.pid().unwrap_or(0),
                                q.len() + 1
                            );
                        }
                        q.push_back(vm);
                        if !announced && q.len() >= size {
                            announced = true;
                            eprintln!("cordon microvm pool: ready ({size} warm VM(s))");
                        }
                    }
                    break;
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("cordon microvm pool: could not warm a VM: {e}");
                    // Back off: the snapshot may be rebuilding, or the host is short of memory.
                    std::thread::sleep(Duration::from_millis(500 * u64::from(failures.min(20))));
                }
            }
        }
    }
}

/// The pool's own copy of its snapshot, taken once at start: RAM and device state in memfds
/// sealed against writes. Every pooled VMM maps the RAM copy-on-write from an inherited fd, so
/// even a compromised VMM cannot alter what the next VMs start from, and the pool is immune
/// to the snapshot being evicted or rebuilt under it.
#[derive(Debug)]
pub struct SealedSnapshot {
    ram: OwnedFd,
    state: OwnedFd,
}

impl SealedSnapshot {
    fn copy(snap: &Snapshot) -> Result<Self, PoolError> {
        let ram = sys::sealed_copy(&snap.ram()).map_err(socket_err("copying", &snap.ram()))?;
        let state =
            sys::sealed_copy(&snap.state()).map_err(socket_err("copying", &snap.state()))?;
        Ok(SealedSnapshot { ram, state })
    }

    /// Guest memory restored from the sealed copies (the state reopened through /proc, so
    /// each VMM reads it from the start).
    fn memory(&self) -> GuestMemory {
        GuestMemory::RestoreFrom {
            ram: PathBuf::from(format!("/proc/self/fd/{}", self.ram.as_raw_fd())),
            state: PathBuf::from(format!("/proc/self/fd/{}", self.state.as_raw_fd())),
            sealed_ram: Some(self.ram.as_raw_fd()),
        }
    }
}

fn warm_vm(
    sealed: &SealedSnapshot,
    warm_specs: &[SandboxSpec],
    vmm: &dyn Vmm,
    config: &VmConfig,
    limit: Duration,
) -> Result<Vm, MicrovmError> {
    let mut cfg = config.clone();
    cfg.memory = sealed.memory();
    cfg.nice = FILL_NICE;
    let vm = vmm.launch(&cfg)?;
    let mut session = Session::new(vm);
    for spec in warm_specs {
        session.send(&HostMsg::Warm(crate::run_request(spec)))?;
        session.wait_ready(limit)?;
    }
    Ok(session.into_vm())
}

/// Binds `path`, replacing a stale socket no pool answers on.
fn bind(path: &Path) -> Result<UnixListener, PoolError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(socket_err("creating", dir))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(PoolError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(socket_err("removing the stale socket", path))?;
    }
    let listener = UnixListener::bind(path).map_err(socket_err("listening on", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(socket_err("restricting", path))?;
    listener
        .set_nonblocking(true)
        .map_err(socket_err("configuring", path))?;
    Ok(listener)
}

/// Reads `take <key>\n` from a new client (bounded in size and time).
fn read_request(conn: &UnixStream) -> Option<String> {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    let mut r = BufReader::new(io::Read::take(conn, 256));
    r.read_line(&mut line).ok()?;
    line.trim_end().strip_prefix("take ").map(str::to_string)
}

/// Hands `vm` to `conn`: nice back to 0, then the agent, console and pidfd.
fn lend(vm: &Vm, conn: &UnixStream) -> io::Result<()> {
    if let Some(pid) = vm.pid() {
        sys::renice_all_threads(pid, 0)?;
    }
    sys::send_with_fds(
        conn,
        b"1",
        &[vm.agent.as_fd(), vm.console.as_fd(), vm.pidfd.as_fd()],
    )
}

fn vm_exited(vm: &Vm) -> bool {
    sys::poll(&[(vm.pidfd.as_raw_fd(), libc::POLLIN)], 0).map_or(true, |r| r[0] != 0)
}

/// Runs the pool until SIGINT, SIGTERM or SIGHUP: keeps `opts.size` VMs shaped by `spec`
/// restored and warm, lends them out, kills each when its client goes.
pub fn serve(tier: &MicrovmTier, spec: &SandboxSpec, opts: &PoolOptions) -> Result<(), PoolError> {
    if !tier.snapshots {
        return Err(PoolError::NoSnapshots);
    }
    let micro = |e: MicrovmError| PoolError::Microvm(Box::new(e));
    let (vmm, config) = tier.vmm_and_config(spec).map_err(micro)?;
    // The snapshot is made (or found) before the socket exists, so clients never wait on it,
    // and copied into sealed memory the pool keeps.
    let snap = tier.ensure_snapshot(&vmm, &config, None).map_err(micro)?;
    let sealed = Arc::new(SealedSnapshot::copy(&snap)?);
    let key = shape_key(&vmm, &config);
    let stop_signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let set = sys::sigset(&stop_signals);
    sys::sigmask(libc::SIG_BLOCK, &set)
        .map_err(socket_err("blocking signals for", &opts.socket))?;
    let sigfd = sys::signalfd(&set).map_err(socket_err("watching signals for", &opts.socket))?;
    let listener = bind(&opts.socket)?;
    eprintln!(
        "cordon microvm pool: {} VM(s) of shape {key} ({} MiB, {} vCPU), listening on {}",
        opts.size,
        config.memory_mib,
        config.vcpus,
        opts.socket.display()
    );

    let idle: Arc<Mutex<VecDeque<Vm>>> = Arc::default();
    let (want, wanted) = mpsc::channel::<()>();
    for _ in 0..opts.size {
        let _ = want.send(());
    }
    {
        let mut commands = vec![WARM_UP];
        if opts.warm_python {
            commands.push(WARM_UP_PYTHON);
        }
        let warm_specs = commands
            .iter()
            .map(|argv| {
                let mut s = spec.clone();
                s.argv = argv.iter().map(|a| a.to_string()).collect();
                s
            })
            .collect();
        let filler = Filler {
            sealed: Arc::clone(&sealed),
            warm_specs,
            vmm: Box::new(vmm.clone()),
            config: config.clone(),
            size: opts.size,
            debug: tier.debug,
        };
        let idle = Arc::clone(&idle);
        std::thread::Builder::new()
            .name("pool-fill".into())
            .spawn(move || fill(&filler, &idle, &wanted))
            .map_err(socket_err("starting the fill thread of", &opts.socket))?;
    }

    let mut lent: Vec<Lent> = Vec::new();
    let mut served = 0u64;
    let started = Instant::now();
    loop {
        let mut fds = vec![
            (listener.as_raw_fd(), libc::POLLIN),
            (sigfd.as_raw_fd(), libc::POLLIN),
        ];
        fds.extend(lent.iter().map(|l| (l.conn.as_raw_fd(), libc::POLLIN)));
        let rev = sys::poll(&fds, 1000).map_err(socket_err("polling", &opts.socket))?;
        if rev[1] != 0 {
            break;
        }
        // Clients gone (or who wrote after the request, which they never do): kill their VMs.
        let mut i = lent.len();
        while i > 0 {
            i -= 1;
            if rev[2 + i] != 0 {
                let mut l = lent.swap_remove(i);
                l.vm.kill();
            }
        }
        // Idle VMs that died (a guest that crashed, a VMM killed by hand) are replaced.
        if let Ok(mut q) = idle.lock() {
            let before = q.len();
            q.retain(|vm| !vm_exited(vm));
            for _ in q.len()..before {
                let _ = want.send(());
            }
        }
        if rev[0] != 0 {
            while let Ok((conn, _)) = listener.accept() {
                let same_user = sys::peer_uid(&conn).is_ok_and(|uid| uid == sys::euid());
                let Some(asked) = read_request(&conn).filter(|_| same_user) else {
                    continue;
                };
                let vm = if asked == key {
                    idle.lock().ok().and_then(|mut q| q.pop_front())
                } else {
                    None
                };
                match vm {
                    Some(vm) => {
                        let _ = want.send(());
                        if lend(&vm, &conn).is_ok() {
                            served += 1;
                            lent.push(Lent { vm, conn });
                        }
                        // Not lent: dropping the VM kills it.
                    }
                    None => {
                        let _ = (&conn).write_all(b"0");
                    }
                }
            }
        }
    }
    // Stopping: every VM, lent or idle, dies with the pool (and would by PDEATHSIG anyway).
    for mut l in lent {
        l.vm.kill();
    }
    if let Ok(mut q) = idle.lock() {
        q.clear();
    }
    let _ = std::fs::remove_file(&opts.socket);
    eprintln!(
        "cordon microvm pool: stopped after lending {served} VM(s) in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
