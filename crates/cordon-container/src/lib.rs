//! cordon's container tier: Linux namespaces, cgroups (v1 and v2), seccomp-bpf, dropped
//! capabilities and pivot_root, in the runc/crun class.
//!
//! The launch sequence (see docs/design.md for the numbered steps):
//! the parent validates the spec, creates the sandbox's cgroups, opens every host path it will
//! need, compiles the seccomp filters and clones a child into new PID, mount, network, IPC, UTS
//! (and, when not root, user) namespaces. The child joins the cgroups, creates its cgroup
//! namespace, builds the root filesystem and pivots into it, reports ready, and on `start`
//! forks the workload, which drops privileges, installs its seccomp filter and executes the
//! command. The child stays as the sandbox's init: it forwards signals, reaps, and reports the
//! workload's status; when it exits the kernel kills everything left in the sandbox.

pub mod cgroup;
pub mod config;
pub mod device_filter;
pub mod exec;
pub mod landlock;
mod launch;
pub mod rootfs;
pub mod seccomp_policy;
pub mod selfexe;
mod sys;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use cordon_sandbox::{
    CreatedSandbox, ExecFailure, ExitOutcome, KillCause, Network, RootfsSource, RunningSandbox,
    SandboxError, SandboxSpec, SpecError, Tier, TierKind, UserNamespace,
};
use thiserror::Error;

use crate::cgroup::{CgroupEntry, CgroupError, Layout, SandboxCgroups};
pub use crate::config::{
    CapSets, CgroupPlan, ContainerConfig, DeviceRule, IdMaps, LaunchMode, Namespaces, ProcessConfig,
};
use crate::launch::{
    ChildConfig, HOOK_DONE, MSG_HOOK_POINT, MSG_NOT_EXECUTABLE, MSG_NOT_FOUND, MSG_READY,
    MSG_SETUP_ERROR, MSG_WAIT_STATUS, START,
};
pub use crate::rootfs::{MountOp, RootPlan, RootSource};

/// Failures of the container tier itself.
#[derive(Debug, Error)]
pub enum ContainerError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Syscall(&'static str, #[source] io::Error),
    #[error("sandbox setup failed: {0}")]
    Setup(String),
    #[error("the sandbox init exited unexpectedly ({0})")]
    InitDied(String),
    #[error("not running as root and user namespaces are unavailable: {0}")]
    NoUserNamespace(String),
}

fn tier_err(step: &str, e: ContainerError) -> SandboxError {
    SandboxError::Tier {
        tier: TierKind::Container,
        step: step.to_string(),
        source: Box::new(e),
    }
}

/// Where cordon keeps host-side state.
#[derive(Debug, Clone)]
pub struct ContainerTier {
    /// The cgroup filesystem root (normally /sys/fs/cgroup).
    pub cgroup_root: PathBuf,
    /// cordon's runtime directory (normally /run/cordon); holds the empty directory each
    /// sandbox mounts its scratch tmpfs on, inside its own mount namespace.
    pub run_dir: PathBuf,
}

impl Default for ContainerTier {
    fn default() -> Self {
        ContainerTier {
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            run_dir: PathBuf::from("/run/cordon"),
        }
    }
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Signals cordon forwards to the sandbox while it waits.
const PARENT_FORWARDED: &[libc::c_int] =
    &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

impl ContainerTier {
    /// Removes what sandboxes of dead cordon processes left behind.
    pub fn collect_garbage(&self) -> Result<cgroup::GcReport, SandboxError> {
        let layout = Layout::detect(&self.cgroup_root)
            .map_err(|e| tier_err("detecting cgroups", e.into()))?;
        Ok(cgroup::collect_garbage(&layout))
    }

    fn scratch_dir(&self) -> Result<PathBuf, ContainerError> {
        let dir = self.run_dir.join("rootfs");
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| ContainerError::Io {
                    op: "creating",
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(dir)
    }
}

fn open_path(path: &Path, directory: bool) -> io::Result<OwnedFd> {
    let flags = libc::O_PATH | if directory { libc::O_DIRECTORY } else { 0 };
    sys::openat(None, path, flags, 0)
}

fn last_cap() -> u8 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn exec_candidates(argv0: &str, env: &[(String, String)]) -> Result<Vec<CString>, SandboxError> {
    let nul = |_| SandboxError::Spec(SpecError::NulByte("command".into()));
    if argv0.contains('/') {
        return Ok(vec![CString::new(argv0).map_err(nul)?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/bin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| CString::new(format!("{}/{argv0}", d.trim_end_matches('/'))).map_err(nul))
        .collect()
}

/// Reads one framed message from the status pipe; `None` at end of file.
fn read_message(fd: &OwnedFd) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    let n = sys::read(fd.as_fd(), &mut header)?;
    if n == 0 {
        return Ok(None);
    }
    if n != 5 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short status message",
        ));
    }
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = sys::read(fd.as_fd(), &mut payload[got..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated status message",
            ));
        }
        got += n;
    }
    Ok(Some((header[0], payload)))
}

impl Tier for ContainerTier {
    type Created = ContainerSandbox;

    fn kind(&self) -> TierKind {
        TierKind::Container
    }

    fn create(&self, spec: &SandboxSpec) -> Result<ContainerSandbox, SandboxError> {
        self.launch_spec(spec, false)
    }
}

/// The container tier's recipe for a [`SandboxSpec`].
pub fn sandbox_config(spec: &SandboxSpec, host_uid: u32, host_gid: u32) -> ContainerConfig {
    let userns = host_uid != 0 || spec.user_namespace == UserNamespace::Always;
    let mut create = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP;
    if userns {
        create |= libc::CLONE_NEWUSER;
    }
    let (source, scratch_bytes, mut ops, readonly) = match &spec.rootfs {
        RootfsSource::HostSystem => (
            RootSource::Scratch,
            4 << 20,
            vec![MountOp::HostSystem {
                uid: spec.uid,
                gid: spec.gid,
                hostname: spec.hostname.clone(),
            }],
            true,
        ),
        RootfsSource::Dir(dir) => (
            RootSource::Overlay(dir.clone()),
            spec.limits.tmp_bytes,
            Vec::new(),
            false,
        ),
    };
    ops.extend(RootPlan::standard_ops(spec.limits.tmp_bytes));
    for m in &spec.mounts {
        let mut attrs = sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV;
        if m.readonly {
            attrs |= sys::MOUNT_ATTR_RDONLY;
        }
        ops.push(MountOp::Bind {
            source: m.source.clone(),
            dest: m.destination.clone(),
            recursive: true,
            attrs,
        });
    }
    ops.push(MountOp::Mkdir(spec.workdir.clone()));
    let caps = spec.cap_add.iter().fold(0u64, |m, c| m | (1u64 << c.0));
    ContainerConfig {
        namespaces: Namespaces {
            create,
            join: Vec::new(),
        },
        id_maps: userns.then(|| IdMaps {
            uid: vec![(spec.uid, host_uid, 1)],
            gid: vec![(spec.gid, host_gid, 1)],
        }),
        root: RootPlan {
            source,
            scratch_bytes,
            ops,
            readonly,
        },
        hostname: Some(spec.hostname.clone()),
        loopback_up: spec.network == Network::Loopback,
        sysctls: Vec::new(),
        process: ProcessConfig {
            argv: spec.argv.clone(),
            env: spec
                .effective_env()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            cwd: spec.workdir.clone(),
            uid: spec.uid,
            gid: spec.gid,
            additional_gids: Vec::new(),
            caps: CapSets::uniform(caps),
            // No core dumps; no real-time or raised scheduling priority whatever the caller had.
            rlimits: vec![
                (libc::RLIMIT_CORE, 0, 0),
                (libc::RLIMIT_RTPRIO, 0, 0),
                (libc::RLIMIT_NICE, 0, 0),
            ],
            no_new_privileges: true,
            seccomp: Some(seccomp_policy::workload_policy()),
            notify: None,
            landlock: None,
            terminal: false,
            oom_score_adj: None,
        },
        cgroup: CgroupPlan {
            path: None,
            limits: spec.limits.clone(),
            devices: None,
        },
        mode: LaunchMode::Attached,
        hook_points: false,
    }
}

/// A point in the launch where the front's hooks run: after the namespaces exist
/// ("namespaces") and once every mount is in place, before pivot_root ("mounts").
pub type HookRunner<'a> = &'a mut dyn FnMut(&str, libc::pid_t) -> Result<(), String>;

/// A container created in [`LaunchMode::Detached`]: its init waits on the start FIFO and
/// outlives this process. Its cgroups stay until [`cgroup::remove_dirs`].
#[derive(Debug)]
pub struct DetachedContainer {
    pub pid: libc::pid_t,
    pub cgroup_dirs: Vec<PathBuf>,
    /// With `process.notify`: the socket the workload sends its seccomp listener on once
    /// started (receive it with [`recv_listener`]); whoever holds it must serve the listener.
    pub notify_sock: Option<OwnedFd>,
}

/// Receives the seccomp listener a supervised process sends on `sock` (see
/// [`DetachedContainer::notify_sock`] and [`exec::exec_in_supervised`]); `None` when the other
/// end closed without sending one.
pub fn recv_listener(sock: std::os::fd::BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    sys::recv_fd(sock)
}

impl ContainerTier {
    /// Creates and starts a sandbox in one go: the start signal is sent right after the clone,
    /// so the sandbox's init goes from setup to the workload without waiting for a round trip.
    pub fn create_started(&self, spec: &SandboxSpec) -> Result<RunningContainer, SandboxError> {
        self.launch_spec(spec, true)
            .map(|inner| RunningContainer { inner })
    }

    fn launch_spec(
        &self,
        spec: &SandboxSpec,
        start_now: bool,
    ) -> Result<ContainerSandbox, SandboxError> {
        spec.validate()?;
        let host_uid = sys::geteuid();
        if host_uid != 0 {
            return Err(tier_err(
                "creating cgroups",
                CgroupError::Unavailable {
                    root: self.cgroup_root.clone(),
                    why: "cordon is not running as root and cgroup delegation to users is not supported yet".into(),
                }
                .into(),
            ));
        }
        // Check every host path now, so errors are reported before anything runs. (The child
        // opens them again: a bind mount's source must be in the caller's mount namespace.)
        if let RootfsSource::Dir(dir) = &spec.rootfs {
            open_path(dir, true).map_err(|e| SpecError::Rootfs {
                path: dir.clone(),
                why: match e.raw_os_error() {
                    Some(libc::ENOENT) => "does not exist".to_string(),
                    Some(libc::ENOTDIR) => "is not a directory".to_string(),
                    _ => format!("cannot be opened: {e}"),
                },
            })?;
        }
        for m in &spec.mounts {
            open_path(&m.source, false).map_err(|e| SpecError::Mount {
                mount: format!("{}:{}", m.source.display(), m.destination.display()),
                why: match e.raw_os_error() {
                    Some(libc::ENOENT) => "source does not exist".to_string(),
                    _ => format!("source cannot be opened: {e}"),
                },
            })?;
        }
        let cfg = sandbox_config(spec, host_uid, sys::getegid());
        let id = cgroup::sandbox_id(SEQUENCE.fetch_add(1, Ordering::Relaxed));
        self.spawn(&cfg, &id, start_now, &mut |_, _| Ok(()))
    }

    /// Creates and starts a container from a prepared configuration in
    /// [`LaunchMode::Attached`] (the sentry tier builds on this with `process.notify`).
    pub fn create_started_config(
        &self,
        cfg: &ContainerConfig,
    ) -> Result<RunningContainer, SandboxError> {
        let id = cgroup::sandbox_id(SEQUENCE.fetch_add(1, Ordering::Relaxed));
        self.spawn(cfg, &id, true, &mut |_, _| Ok(()))
            .map(|inner| RunningContainer { inner })
    }

    /// Creates a container in [`LaunchMode::Detached`] (the OCI front's `create`): returns once
    /// it is set up and waits on its start FIFO.
    pub fn create_detached(
        &self,
        cfg: &ContainerConfig,
        id: &str,
        hooks: HookRunner<'_>,
    ) -> Result<DetachedContainer, SandboxError> {
        let mut sandbox = self.spawn(cfg, id, false, hooks)?;
        sandbox.reaped = true; // it is no longer ours to kill
        let pid = sandbox.pid;
        let cgroups = std::mem::replace(&mut sandbox.cgroups, SandboxCgroups::empty());
        Ok(DetachedContainer {
            pid,
            cgroup_dirs: cgroups.persist(),
            notify_sock: sandbox.notify_sock.take(),
        })
    }

    /// Sets a container up from `cfg` and returns once its init reported ready (or failed).
    fn spawn(
        &self,
        cfg: &ContainerConfig,
        id: &str,
        start_now: bool,
        hooks: HookRunner<'_>,
    ) -> Result<ContainerSandbox, SandboxError> {
        let attached = cfg.mode == LaunchMode::Attached;
        let layout = Layout::detect(&self.cgroup_root)
            .map_err(|e| tier_err("detecting cgroups", e.into()))?;
        let scratch = self
            .scratch_dir()
            .map_err(|e| tier_err("preparing the run directory", e))?;
        let p = &cfg.process;
        if p.argv.is_empty() {
            return Err(SpecError::NoCommand.into());
        }
        let cstr = |s: &str| CString::new(s).map_err(|_| SpecError::NulByte(s.to_string()));
        let argv = p
            .argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = p
            .env
            .iter()
            .map(|e| cstr(e))
            .collect::<Result<Vec<_>, _>>()?;
        let env_pairs: Vec<(String, String)> = p
            .env
            .iter()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let exec_candidates = exec_candidates(&p.argv[0], &env_pairs)?;
        let cwd = cstr(&p.cwd.to_string_lossy())?;

        let rel = cfg
            .cgroup
            .path
            .clone()
            .unwrap_or_else(|| SandboxCgroups::default_path(id));
        let cgroups = SandboxCgroups::create_at(
            &layout,
            &rel,
            &cfg.cgroup.limits,
            cfg.cgroup.devices.as_deref(),
        )
        .map_err(|e| tier_err("creating cgroups", e.into()))?;
        let entry = cgroups
            .entry()
            .map_err(|e| tier_err("creating cgroups", e.into()))?;
        let (cgroup_tasks, clone_into) = match entry {
            CgroupEntry::WriteSelf(files) => (files, None),
            CgroupEntry::CloneInto(dir) => (Vec::new(), Some(dir)),
        };
        let mut join = Vec::new();
        for (kind, path) in &cfg.namespaces.join {
            let fd = sys::openat(None, path, libc::O_RDONLY, 0).map_err(|source| {
                tier_err(
                    "joining namespaces",
                    ContainerError::Io {
                        op: "opening",
                        path: path.clone(),
                        source,
                    },
                )
            })?;
            join.push((*kind, fd));
        }
        let console = match &cfg.mode {
            LaunchMode::Detached {
                console: Some(path),
                ..
            } if p.terminal => Some(sys::connect_unix(path).map_err(|source| {
                tier_err(
                    "connecting to the console socket",
                    ContainerError::Io {
                        op: "connecting to",
                        path: path.clone(),
                        source,
                    },
                )
            })?),
            _ => None,
        };

        let (notify_parent, notify_child) = match &p.notify {
            Some(_) => {
                let (a, b) = sys::socketpair().map_err(|e| {
                    tier_err(
                        "creating the supervisor socket",
                        ContainerError::Syscall("socketpair", e),
                    )
                })?;
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        let pipe = |what: &'static str| {
            sys::pipe().map_err(|e| tier_err(what, ContainerError::Syscall("pipe2", e)))
        };
        let (status_r, status_w) = pipe("creating the status pipe")?;
        let (control_r, control_w) = pipe("creating the control pipe")?;
        let (life_r, life_w) = pipe("creating the lifeline pipe")?;

        // Signals cordon forwards are taken through a signalfd from now on.
        let sigfd = if attached {
            let forward_set = sys::sigset(PARENT_FORWARDED);
            sys::sigprocmask(libc::SIG_BLOCK, &forward_set).map_err(|e| {
                tier_err(
                    "blocking signals",
                    ContainerError::Syscall("sigprocmask", e),
                )
            })?;
            Some(sys::signalfd(&forward_set).map_err(|e| {
                tier_err(
                    "creating a signalfd",
                    ContainerError::Syscall("signalfd", e),
                )
            })?)
        } else {
            None
        };
        let userns = cfg.namespaces.create & libc::CLONE_NEWUSER != 0;
        let flags = u64::try_from(cfg.namespaces.create & !libc::CLONE_NEWCGROUP).unwrap_or(0);
        let child_cfg = ChildConfig {
            cfg,
            scratch: &scratch,
            userns,
            argv,
            argv0: p.argv[0].clone(),
            env: envp,
            exec_candidates,
            cwd,
            last_cap: last_cap(),
            workload_filter: p.seccomp.as_ref().map(|pol| pol.compile()),
            notify_filter: p.notify.as_ref().map(|pol| pol.compile()),
            notify_sock: notify_child,
            init_filter: seccomp_policy::init_policy().compile(),
            cgroup_tasks,
            join,
            status_w,
            control_r,
            life_r,
            console,
        };
        // SAFETY: cordon drives containers from a single thread; the fronts start no others.
        let forked = unsafe { sys::clone3(flags, clone_into.as_ref().map(|f| f.as_fd())) };
        let (pid, pidfd) = match forked {
            Ok(sys::Forked::Child) => {
                // Close the parent's ends of the pipes in the child: holding them would keep
                // the lifeline and control pipes open after the parent dies.
                drop(status_r);
                drop(control_w);
                drop(life_w);
                drop(sigfd);
                drop(notify_parent);
                launch::child_main(child_cfg)
            }
            Ok(sys::Forked::Parent { pid, pidfd }) => (pid, pidfd),
            Err(e) => {
                let err = if userns
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EPERM | libc::ENOSPC | libc::EUSERS)
                    ) {
                    ContainerError::NoUserNamespace(e.to_string())
                } else {
                    ContainerError::Syscall("clone3", e)
                };
                return Err(tier_err("creating namespaces", err));
            }
        };
        drop(child_cfg);
        let mut sandbox = ContainerSandbox {
            id: id.to_string(),
            pid,
            pidfd,
            status_r,
            start_w: Some(control_w),
            _life_w: life_w,
            sigfd,
            notify_sock: notify_parent,
            cgroups,
            reaped: false,
        };
        if start_now {
            sandbox.send_control(START)?;
        }
        if attached {
            // Collect what killed cordons left behind while the child sets itself up: it reads
            // one /proc entry per live sandbox, so it stays off the launch's critical path.
            cgroup::collect_garbage(&layout);
        }
        loop {
            match read_message(&sandbox.status_r) {
                Ok(Some((MSG_READY, _))) => return Ok(sandbox),
                Ok(Some((MSG_HOOK_POINT, name))) => {
                    let name = String::from_utf8_lossy(&name).into_owned();
                    if let Err(why) = hooks(&name, pid) {
                        sandbox.reap();
                        return Err(tier_err(
                            &format!("running the {name} hooks"),
                            ContainerError::Setup(why),
                        ));
                    }
                    sandbox.send_control(HOOK_DONE)?;
                }
                Ok(Some((MSG_SETUP_ERROR, text))) => {
                    sandbox.reap();
                    return Err(tier_err(
                        "setting up the sandbox",
                        ContainerError::Setup(String::from_utf8_lossy(&text).into_owned()),
                    ));
                }
                other => {
                    let status = sandbox.reap();
                    return Err(tier_err(
                        "setting up the sandbox",
                        ContainerError::InitDied(format!("{other:?}, wait status {status:#x}")),
                    ));
                }
            }
        }
    }
}

/// A sandbox whose init is set up and waits for `start`.
#[derive(Debug)]
pub struct ContainerSandbox {
    id: String,
    pid: libc::pid_t,
    pidfd: OwnedFd,
    status_r: OwnedFd,
    start_w: Option<OwnedFd>,
    _life_w: OwnedFd,
    sigfd: Option<OwnedFd>,
    /// Receives the seccomp listener of a supervised workload.
    notify_sock: Option<OwnedFd>,
    cgroups: SandboxCgroups,
    reaped: bool,
}

impl ContainerSandbox {
    /// Host PID of the sandbox's init.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    fn send_control(&self, byte: u8) -> Result<(), SandboxError> {
        let w = self
            .start_w
            .as_ref()
            .expect("the control pipe is open until start");
        sys::write_all(w.as_fd(), &[byte]).map_err(|e| {
            tier_err(
                "signalling the sandbox's init",
                ContainerError::Syscall("write", e),
            )
        })
    }

    /// Kills the init (and so the whole PID namespace) and reaps it; returns its wait status.
    fn reap(&mut self) -> libc::c_int {
        if self.reaped {
            return 0;
        }
        let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        let status = sys::waitpid(self.pid, 0).map(|(_, s)| s).unwrap_or(0);
        self.reaped = true;
        status
    }
}

impl Drop for ContainerSandbox {
    fn drop(&mut self) {
        self.reap();
        self.cgroups.kill_all();
        // The cgroups are removed by their own Drop.
    }
}

impl CreatedSandbox for ContainerSandbox {
    type Running = RunningContainer;

    fn id(&self) -> &str {
        &self.id
    }

    fn start(self) -> Result<RunningContainer, SandboxError> {
        self.send_control(START)?;
        Ok(RunningContainer { inner: self })
    }
}

/// A sandbox whose command runs.
#[derive(Debug)]
pub struct RunningContainer {
    inner: ContainerSandbox,
}

impl RunningContainer {
    pub fn pid(&self) -> libc::pid_t {
        self.inner.pid
    }

    pub fn cgroup_dirs(&self) -> &[PathBuf] {
        self.inner.cgroups.dirs()
    }
}

#[derive(Default)]
struct Reported {
    wait_status: Option<libc::c_int>,
    exec_failure: Option<ExecFailure>,
    setup_error: Option<String>,
}

impl Reported {
    fn take(&mut self, tag: u8, payload: Vec<u8>) {
        let text = || String::from_utf8_lossy(&payload).into_owned();
        match tag {
            MSG_WAIT_STATUS if payload.len() == 4 => {
                self.wait_status = Some(libc::c_int::from_le_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
            }
            MSG_NOT_FOUND => self.exec_failure = Some(ExecFailure::NotFound(text())),
            MSG_NOT_EXECUTABLE => self.exec_failure = Some(ExecFailure::NotExecutable(text())),
            MSG_SETUP_ERROR => self.setup_error = Some(text()),
            _ => {}
        }
    }
}

impl RunningSandbox for RunningContainer {
    fn id(&self) -> &str {
        &self.inner.id
    }

    fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        sys::pidfd_send_signal(self.inner.pidfd.as_fd(), signal).map_err(|e| {
            tier_err(
                "signalling the sandbox",
                ContainerError::Syscall("pidfd_send_signal", e),
            )
        })
    }

    fn wait(self, deadline: Option<Instant>) -> Result<ExitOutcome, SandboxError> {
        self.wait_inner(deadline, None)
    }
}

/// Handles one pending seccomp notification on the listener fd (the sentry tier's supervisor).
pub type Supervisor<'a> = &'a mut dyn FnMut(std::os::fd::BorrowedFd<'_>);

/// What the wait loop does with the workload's seccomp listener.
enum ListenerUse<'a> {
    /// Poll it and call the supervisor for each pending notification.
    Serve(Supervisor<'a>),
    /// Give it away as soon as it arrives.
    HandOver(&'a mut dyn FnMut(OwnedFd)),
}

impl RunningContainer {
    /// Like [`RunningSandbox::wait`], and meanwhile receives the workload's seccomp listener
    /// (see `ProcessConfig::notify`) and calls `supervisor` whenever a notification is pending.
    pub fn wait_supervised(
        self,
        deadline: Option<Instant>,
        supervisor: Supervisor<'_>,
    ) -> Result<ExitOutcome, SandboxError> {
        self.wait_inner(deadline, Some(ListenerUse::Serve(supervisor)))
    }

    /// Like [`RunningSandbox::wait`], and hands the workload's seccomp listener (see
    /// `ProcessConfig::notify`) to `hand_over` as soon as it arrives: whoever takes it serves
    /// the notifications itself (e.g. on a thread blocked in `SECCOMP_IOCTL_NOTIF_RECV`), and
    /// this loop no longer polls it.
    pub fn wait_handing_over(
        self,
        deadline: Option<Instant>,
        hand_over: &mut dyn FnMut(OwnedFd),
    ) -> Result<ExitOutcome, SandboxError> {
        self.wait_inner(deadline, Some(ListenerUse::HandOver(hand_over)))
    }

    fn wait_inner(
        mut self,
        deadline: Option<Instant>,
        mut supervisor: Option<ListenerUse<'_>>,
    ) -> Result<ExitOutcome, SandboxError> {
        let s = &mut self.inner;
        let mut listener: Option<OwnedFd> = None;
        let mut reported = Reported::default();
        let mut timed_out = false;
        let mut status_open = true;
        let mut init_status = None;
        while init_status.is_none() || status_open {
            let timeout_ms = match (deadline, timed_out, init_status) {
                (_, _, Some(_)) => -1,
                (Some(d), false, None) => {
                    let left = d.saturating_duration_since(Instant::now());
                    i32::try_from(left.as_millis()).unwrap_or(i32::MAX)
                }
                _ => -1,
            };
            let mut fds = [
                libc::pollfd {
                    fd: s.pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: if status_open {
                        s.status_r.as_raw_fd()
                    } else {
                        -1
                    },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: s.sigfd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: s.notify_sock.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: listener.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if init_status.is_some() {
                fds[0].fd = -1;
            }
            let n = sys::poll(&mut fds, timeout_ms)
                .map_err(|e| tier_err("waiting", ContainerError::Syscall("poll", e)))?;
            if n == 0 && timeout_ms >= 0 && !timed_out && init_status.is_none() {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    timed_out = true;
                    let _ = sys::pidfd_send_signal(s.pidfd.as_fd(), libc::SIGKILL);
                }
                continue;
            }
            if fds[2].revents & libc::POLLIN != 0 {
                forward_signals(s);
            }
            if fds[3].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                if let Some(sock) = s.notify_sock.take() {
                    listener = sys::recv_fd(sock.as_fd()).ok().flatten();
                    if let (Some(ListenerUse::HandOver(hand_over)), Some(l)) =
                        (&mut supervisor, listener.take())
                    {
                        hand_over(l);
                    }
                }
            }
            if fds[4].revents & libc::POLLIN != 0 {
                match (&mut supervisor, &listener) {
                    (Some(ListenerUse::Serve(handle)), Some(l)) => handle(l.as_fd()),
                    _ => listener = None,
                }
            } else if fds[4].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                listener = None; // every process under the filter is gone
            }
            if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
                match read_message(&s.status_r) {
                    Ok(Some((tag, payload))) => reported.take(tag, payload),
                    Ok(None) | Err(_) => status_open = false,
                }
            }
            if fds[0].revents & libc::POLLIN != 0 {
                let status = sys::waitpid(s.pid, 0).map(|(_, st)| st).unwrap_or(0);
                s.reaped = true;
                init_status = Some(status);
            }
        }
        let oom = s.cgroups.oom_kills() > 0;
        drop(self);
        if timed_out {
            return Ok(ExitOutcome::TimedOut);
        }
        if let Some(e) = reported.exec_failure {
            return Ok(ExitOutcome::ExecFailed(e));
        }
        if let Some(text) = reported.setup_error {
            return Err(tier_err(
                "starting the workload",
                ContainerError::Setup(text),
            ));
        }
        let classify = |signal: i32| {
            let cause = if signal == libc::SIGKILL && oom {
                KillCause::MemoryLimit
            } else if signal == libc::SIGSYS {
                KillCause::Seccomp
            } else {
                KillCause::Signal
            };
            ExitOutcome::Signaled { signal, cause }
        };
        match reported.wait_status {
            Some(st) if libc::WIFEXITED(st) => Ok(ExitOutcome::Exited(libc::WEXITSTATUS(st))),
            Some(st) if libc::WIFSIGNALED(st) => Ok(classify(libc::WTERMSIG(st))),
            _ => {
                let st = init_status.unwrap_or(0);
                if oom {
                    Ok(classify(libc::SIGKILL))
                } else {
                    Err(tier_err(
                        "waiting for the workload",
                        ContainerError::InitDied(if libc::WIFSIGNALED(st) {
                            format!("killed by signal {}", libc::WTERMSIG(st))
                        } else {
                            format!("exit status {}", libc::WEXITSTATUS(st))
                        }),
                    ))
                }
            }
        }
    }
}

fn forward_signals(s: &ContainerSandbox) {
    // signalfd_siginfo is 128 bytes: ssi_signo (u32) at 0, ssi_code (i32) at 8.
    let mut buf = [0u8; 128];
    let Some(sigfd) = &s.sigfd else { return };
    while let Ok(128) = sys::read(sigfd.as_fd(), &mut buf) {
        let signo = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let code = i32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        // A terminal's ^C/^\ reaches the workload directly (same process group); forwarding it
        // again would deliver it twice.
        if code == libc::SI_KERNEL && (signo == libc::SIGINT || signo == libc::SIGQUIT) {
            continue;
        }
        let _ = sys::pidfd_send_signal(s.pidfd.as_fd(), signo);
    }
}
