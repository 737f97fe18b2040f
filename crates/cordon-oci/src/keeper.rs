//! The microvm tier under the OCI front. The container's init pid is a "keeper" process forked
//! by `create`: it joins the container's cgroups, starts the VM (restored from a snapshot or
//! booted) with the bundle's root filesystem and waits, its agent ready, on the start FIFO like
//! a container's init. On `start` it confines itself (no capabilities, no_new_privs, a seccomp
//! allowlist), sends the process to the guest, relays its own stdio (the
//! container's stdio, as the engine passed it to `create`) to and from the guest, forwards the
//! signals it receives (`kill`) to the guest's process, and exits with that process's status:
//! its exit code, or death by the same signal.
//!
//! The VMM is the keeper's child and dies with it (parent-death signal), so `kill -9` of the
//! keeper or `delete --force` leaves no VM behind. The keeper and the VMM share the container's
//! cgroups; their memory limit is the guest's RAM (the config's memory limit) plus
//! [`VMM_HEADROOM`] for the VMM's own memory.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cordon_container::{cgroup, ContainerConfig, MountOp};
use cordon_sandbox::{
    BindMount, Capability, CreatedSandbox, ExecFailure, ExitOutcome, Limits, Network, RootfsSource,
    SandboxSpec, Tier, TierKind,
};

use crate::image_layers;
use crate::OciError;

const MIB: u64 = 1 << 20;
/// Memory the keeper's cgroup allows on top of the guest's RAM: qemu's own RSS (TCG code
/// buffer, device state, the keeper) measured at 120-210 MiB for a 256 MiB guest.
pub const VMM_HEADROOM: u64 = 256 * MIB;

/// Signals the keeper passes on to the guest's process (SIGKILL and SIGSTOP cannot be caught:
/// they stop the keeper, and with it the VM).
const FORWARDED: &[i32] = &[
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGALRM,
    libc::SIGCONT,
];

/// Where the keeper mounts the image layers it reads (a directory per keeper, in its own
/// mount namespace, removed once the VM's image is made).
const RUN_DIR: &str = "/run/cordon";

/// Files Docker bind-mounts into every container; the guest makes its own.
const ENGINE_FILES: &[&str] = &["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

/// The microvm tier's spec for a bundle, from the container tier's reading of it.
pub fn sandbox_spec(cfg: &ContainerConfig, rootfs: &Path) -> Result<SandboxSpec, OciError> {
    let p = &cfg.process;
    if p.terminal {
        return Err(OciError::Bundle(
            "process.terminal is not supported by the microvm tier (no guest terminal yet)".into(),
        ));
    }
    let mut mounts = Vec::new();
    for op in &cfg.root.ops {
        if let MountOp::Bind {
            source,
            dest,
            attrs,
            ..
        } = op
        {
            if ENGINE_FILES.iter().any(|f| dest == Path::new(f)) {
                continue;
            }
            mounts.push(BindMount {
                source: source.clone(),
                destination: dest.clone(),
                readonly: attrs & 0x1 != 0,
            });
        }
    }
    let limits = &cfg.cgroup.limits;
    let mut spec = SandboxSpec::new(p.argv.clone());
    spec.tier = TierKind::Microvm;
    spec.env = p
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    spec.workdir = p.cwd.clone();
    spec.rootfs = RootfsSource::Dir(rootfs.to_path_buf());
    spec.mounts = mounts;
    spec.limits = Limits {
        memory_bytes: Some(limits.memory_bytes.unwrap_or(Limits::DEFAULT_MEMORY)),
        cpu_millis: limits.cpu_millis,
        pids: limits.pids,
        tmp_bytes: Limits::DEFAULT_TMP,
    };
    // The guest has no network device: loopback only, whatever the config's namespace.
    spec.network = Network::Loopback;
    if let Some(h) = &cfg.hostname {
        spec.hostname = h.clone();
    }
    spec.uid = p.uid;
    spec.gid = p.gid;
    spec.cap_add = (0..64u8)
        .filter(|c| p.caps.effective & (1u64 << c) != 0)
        .map(Capability)
        .collect();
    spec.validate()
        .map_err(|e| OciError::Bundle(format!("for the microvm tier: {e}")))?;
    Ok(spec)
}

/// A keeper created by [`create`].
pub struct Keeper {
    pub pid: libc::pid_t,
    pub cgroup_dirs: Vec<PathBuf>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd), OciError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(OciError::Runtime(format!(
            "creating a pipe: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2 returned two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn read_all(fd: &OwnedFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            n if n > 0 => out.extend_from_slice(&buf[..n.unsigned_abs()]),
            n if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return out,
        }
    }
}

fn write_fd(fd: i32, data: &[u8]) {
    let mut done = 0;
    while done < data.len() {
        // SAFETY: the slice is valid for reads of its length.
        let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        if n <= 0 {
            return;
        }
        done += n.unsigned_abs();
    }
}

/// Creates the container's cgroups, forks the keeper into them and waits until its VM is ready
/// (or failed). The keeper keeps this process's stdio: the container's.
pub fn create(
    cgroup_root: &Path,
    cfg: &ContainerConfig,
    spec: SandboxSpec,
    fifo: &Path,
) -> Result<Keeper, OciError> {
    let layout = cgroup::Layout::detect(cgroup_root)
        .map_err(|e| OciError::Runtime(format!("detecting cgroups: {e}")))?;
    let limits = Limits {
        memory_bytes: spec.limits.memory_bytes.map(|m| m + VMM_HEADROOM),
        cpu_millis: spec.limits.cpu_millis,
        pids: None, // counted inside the guest; qemu's threads would count here
        tmp_bytes: 0,
    };
    let rel = cfg.cgroup.path.clone().unwrap_or_default();
    let dirs = cgroup::SandboxCgroups::create_at(&layout, &rel, &limits, None)
        .map_err(|e| OciError::Runtime(format!("creating cgroups: {}", crate::error_chain(&e))))?
        .persist();
    let fifo_c = CString::new(fifo.to_string_lossy().into_owned())
        .map_err(|_| OciError::State("a NUL in the state path".into()))?;
    let (go_r, go_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    // SAFETY: cordon-oci is single-threaded; the child runs the keeper to its end.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        cgroup::remove_dirs(&dirs);
        return Err(OciError::Runtime(format!(
            "forking the keeper: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(go_w);
        drop(status_r);
        keeper_main(&spec, &fifo_c, go_r, status_w);
    }
    drop(go_r);
    drop(status_w);
    let fail = |why: String| {
        // SAFETY: kill takes integers only; `pid` is our child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let mut st = 0;
        // SAFETY: `st` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        cgroup::remove_dirs(&dirs);
        Err(OciError::Runtime(why))
    };
    for dir in &dirs {
        let procs = dir.join("cgroup.procs");
        if let Err(e) = std::fs::write(&procs, pid.to_string()) {
            return fail(format!("moving the keeper into {}: {e}", procs.display()));
        }
    }
    write_fd(go_w.as_raw_fd(), b"g");
    drop(go_w);
    let reply = read_all(&status_r);
    match reply.split_first() {
        Some((b'R', _)) => Ok(Keeper {
            pid,
            cgroup_dirs: dirs.clone(),
        }),
        Some((b'E', why)) => fail(String::from_utf8_lossy(why).into_owned()),
        _ => fail("the keeper died before its VM was ready".into()),
    }
}

/// Puts `from` on fd `to` (close-on-exec: nothing the keeper runs may inherit it).
fn place(from: i32, to: i32) -> std::io::Result<()> {
    // SAFETY: fd syscalls on fds this process owns.
    let hi = unsafe { libc::fcntl(from, libc::F_DUPFD_CLOEXEC, 100) };
    // SAFETY: as above.
    if hi < 0 || unsafe { libc::dup3(hi, to, libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `hi` is our own duplicate.
    unsafe { libc::close(hi) };
    Ok(())
}

/// What the keeper may call once its VM runs: relaying frames and stdio, forwarding signals,
/// taking `exec` connections (accept4, and setsockopt for their write timeout),
/// waiting for and killing its VMM, exiting (by a signal too), memory management. Measured
/// with strace on a run; everything else (notably open, exec, socket, mount, ptrace) fails
/// with EPERM.
const KEEPER_ALLOW: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_accept4,
    libc::SYS_setsockopt,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_close,
    libc::SYS_fcntl,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_signalfd4,
    libc::SYS_sigaltstack,
    libc::SYS_kill,
    libc::SYS_tgkill,
    libc::SYS_pidfd_send_signal,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Confines the keeper before it talks to the guest: no capabilities, no_new_privs, and the
/// allowlist above (the guest's agent is not trusted; its frames are parsed here).
fn confine_keeper() -> std::io::Result<()> {
    let check = |r: libc::c_long| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let policy = cordon_container::seccomp_policy::Policy {
        allow: KEEPER_ALLOW.to_vec(),
        deny: Vec::new(),
        conditional: Vec::new(),
        matched: Vec::new(),
        default: cordon_container::seccomp_policy::Action::Errno(1),
    };
    let program = policy.compile();
    let prog = libc::sock_fprog {
        len: u16::try_from(program.len())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::E2BIG))?,
        filter: program.as_ptr().cast_mut(),
    };
    // _LINUX_CAPABILITY_VERSION_3 header (version, pid 0 = this thread) and two zeroed data
    // words: no effective, permitted or inheritable capability.
    let header: [u32; 2] = [0x2008_0522, 0];
    let data = [0u32; 6];
    // SAFETY: capset reads the header and data arrays above; prctl takes integers; seccomp
    // reads `prog`, whose filter points into `program`, alive for the call.
    unsafe {
        check(libc::syscall(
            libc::SYS_capset,
            header.as_ptr(),
            data.as_ptr(),
        ))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into())?;
        check(libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog,
        ))?;
    }
    Ok(())
}

/// Dies the way the guest's process died, so the engine sees the same status.
pub(crate) fn die_by(signal: i32) -> ! {
    // SAFETY: resetting a disposition and unblocking signals in this single-threaded process.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal)
    }
}

fn keeper_main(spec: &SandboxSpec, fifo: &CString, go: OwnedFd, status: OwnedFd) -> ! {
    // fds: 0-2 the container's stdio, 3 the go pipe, 4 the status pipe, nothing else.
    let placed = place(go.as_raw_fd(), 3).and_then(|()| place(status.as_raw_fd(), 4));
    std::mem::forget(go);
    std::mem::forget(status);
    // SAFETY: closing fds above 4 (nothing in this process owns them any more) and leaving
    // the caller's session; the name only shows in ps.
    unsafe {
        libc::close_range(5, u32::MAX, 0);
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"cordon-keeper".as_ptr());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // The keeper and the VMM need no network (the guest's channels are socketpairs): an empty
    // network namespace of their own, which is also what the engine's hooks get to see.
    // SAFETY: unshare takes flags only.
    let unshared = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
    if placed.is_err() || !unshared {
        // SAFETY: ending the forked child.
        unsafe { libc::_exit(125) };
    }
    let mut go = [0u8; 1];
    // SAFETY: `go` is valid for one byte; fd 3 is the go pipe.
    if unsafe { libc::read(3, go.as_mut_ptr().cast(), 1) } != 1 {
        // SAFETY: ending the forked child.
        unsafe { libc::_exit(125) };
    }
    // The tier's progress notices stay out of the container's stderr while the VM starts.
    // SAFETY: fd juggling on this process's own fds.
    let saved_err = unsafe {
        let saved = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 5);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if null >= 0 {
            libc::dup2(null, 2);
            libc::close(null);
        }
        saved
    };
    // The VMM must be the keeper's child, in the container's cgroup and dying with the keeper:
    // never a VM lent by a warm pool.
    let mut tier = cordon_microvm::MicrovmTier {
        pool_socket: None,
        ..Default::default()
    };
    // An engine's container root is an overlay of the image's layers: while the container
    // has written nothing, the VM's image is made from those layers alone, so every container
    // of one engine image shares one cached image and snapshot (see image_layers).
    let mut spec = spec.clone();
    let layers = match &spec.rootfs {
        RootfsSource::Dir(dir) => image_layers::image_layers(dir),
        RootfsSource::HostSystem => None,
    };
    // One layer is the image itself; several are stacked (an overlay needs two at least).
    let (view, mounted) = match layers.as_deref() {
        // (Docker names layers by symlinks: the tier wants the directory itself.)
        Some([one]) => (std::fs::canonicalize(one).ok(), None),
        Some(many) => match image_layers::mount_private(many, Path::new(RUN_DIR)) {
            Ok(dir) => (Some(dir.clone()), Some(dir)),
            Err(_) => (None, None),
        },
        None => (None, None),
    };
    if let Some(v) = &view {
        spec.rootfs = RootfsSource::Dir(v.clone());
    }
    // Otherwise a root whose image does not exist yet is this container's alone (Docker's
    // init layer has fresh mtimes): boot it without a snapshot (a snapshot is ~100 MiB in
    // /dev/shm per image) and remove the image once the VM has it open.
    let own_image = match (&spec.rootfs, &view) {
        (RootfsSource::Dir(dir), None) => tier
            .cache
            .dir_rootfs_path(dir)
            .ok()
            .filter(|image| !image.exists()),
        _ => None,
    };
    if own_image.is_some() {
        tier.snapshots = false;
    }
    let created = tier.create(&spec);
    if let Some(dir) = &mounted {
        image_layers::unmount(dir);
    }
    // SAFETY: restoring stderr from our own duplicate.
    unsafe {
        if saved_err >= 0 {
            libc::dup2(saved_err, 2);
            libc::close(saved_err);
        }
    }
    // `exec` reaches the guest through a socket next to the start FIFO (bound before the
    // keeper is confined; see exec_proxy).
    let state_dir = Path::new(std::ffi::OsStr::from_bytes(fifo.as_bytes()))
        .parent()
        .unwrap_or(Path::new("/"));
    let created = created.and_then(|c| {
        cordon_microvm::exec::ExecServer::bind(state_dir, crate::exec_proxy::SOCKET)
            .map(|server| (c, server))
            .map_err(|e| cordon_sandbox::SandboxError::Tier {
                tier: TierKind::Microvm,
                step: "listening for exec".into(),
                source: Box::new(e),
            })
    });
    let (created, mut exec_server) = match created {
        Ok(c) => {
            write_fd(4, b"R");
            c
        }
        Err(e) => {
            if let Some(image) = &own_image {
                let _ = std::fs::remove_file(image);
            }
            write_fd(4, format!("E{}", crate::error_chain(&e)).as_bytes());
            // SAFETY: ending the forked child.
            unsafe { libc::_exit(125) };
        }
    };
    // SAFETY: closing our own status pipe.
    unsafe { libc::close(4) };
    // Blocks until `start` opens the FIFO for reading.
    // SAFETY: `fifo` is NUL-terminated.
    let w = unsafe { libc::open(fifo.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    // The VMM has the image open from here on; the name can go.
    if let Some(image) = &own_image {
        let _ = std::fs::remove_file(image);
    }
    if w < 0 {
        // SAFETY: ending the forked child.
        unsafe { libc::_exit(125) };
    }
    write_fd(w, b"0");
    // SAFETY: closing our own fd.
    unsafe { libc::close(w) };
    if let Err(e) = confine_keeper() {
        write_fd(
            2,
            format!("cordon: microvm: confining the keeper: {e}\n").as_bytes(),
        );
        // SAFETY: ending the keeper (its VMM dies with it).
        unsafe { libc::_exit(125) };
    }
    let outcome = created.start().and_then(|running| {
        running
            .wait_serving(None, FORWARDED, Some(&mut exec_server))
            .0
    });
    let code = match outcome {
        Ok(ExitOutcome::Exited(code)) => code,
        Ok(ExitOutcome::Signaled { signal, .. }) => die_by(signal),
        Ok(ExitOutcome::ExecFailed(ExecFailure::NotFound(what))) => {
            write_fd(
                2,
                format!("cordon: exec {what:?}: executable file not found in $PATH\n").as_bytes(),
            );
            127
        }
        Ok(ExitOutcome::ExecFailed(ExecFailure::NotExecutable(what))) => {
            write_fd(2, format!("cordon: exec {what}\n").as_bytes());
            126
        }
        Ok(ExitOutcome::TimedOut) => 124,
        Err(e) => {
            write_fd(
                2,
                format!("cordon: microvm: {}\n", crate::error_chain(&e)).as_bytes(),
            );
            125
        }
    };
    // SAFETY: ending the keeper with the process's status.
    unsafe { libc::_exit(code) }
}
