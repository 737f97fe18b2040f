//! cordon's sentry tier: gVisor's idea on top of the container tier. The workload runs in a
//! container exactly as the container tier builds it (namespaces, cgroups, seccomp allowlist,
//! no capabilities), plus a second seccomp filter installed just before `execve` that hands
//! its filesystem and socket syscalls to a supervisor (seccomp user notification). The
//! supervisor, the `cordon` process itself outside the sandbox, confined before it reads the
//! first notification, copies the arguments out of the workload, resolves every path in the
//! sandbox's root with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, applies the policy
//! (hidden paths, read-only trees, socket families, no access upgrades through
//! `/proc/self/fd`), performs the call and returns its result, installing new fds with
//! `SECCOMP_IOCTL_NOTIF_ADDFD`. Refusals go to a rate-limited JSON audit log.
//!
//! Launch sequence:
//! 1. build the container tier's `ContainerConfig` for the spec and add the notify filter
//!    and the workload's Landlock rules ([`workload_landlock`]);
//! 2. create and start the container (its init reports ready once the root is pivoted);
//! 3. open the sandbox's root through `/proc/INIT/root` (classifying its mounts) and its
//!    network namespace;
//! 4. start the supervisor thread; each thread confines itself (network namespace,
//!    capabilities, seccomp) before any notification is read;
//! 5. the supervisor thread serves the listener, blocked in `SECCOMP_IOCTL_NOTIF_RECV`
//!    between calls, while the calling thread waits for the workload; teardown as usual.

pub mod audit;
pub mod confine;
pub mod notify_policy;
pub mod supervisor;
mod sys;
pub mod view;

/// The seccomp user-notification calls the supervisor is built on, for measuring the bare
/// mechanism with exactly these calls and none of the supervisor (`cordon bench`'s notify
/// floor).
pub mod notif {
    pub use crate::sys::{
        notif_addfd_send, notif_recv, notif_send, notif_sync_wakeup, openat, pidfd_getfd,
        pidfd_open, poll, read_remote, Notification,
    };
}

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use cordon_container::landlock::{self, LandlockRules};
use cordon_container::{sandbox_config, ContainerTier};
use cordon_sandbox::{ExitOutcome, RootfsSource, SandboxError, SandboxSpec, TierKind};
use thiserror::Error;

pub use crate::audit::{AuditLog, AuditSink};
use crate::supervisor::Supervisor;
use crate::view::View;

#[derive(Debug, Error)]
pub enum SentryError {
    #[error("opening the sandbox's root")]
    Root(#[source] std::io::Error),
    #[error("confining the supervisor")]
    Confine(#[from] confine::ConfineError),
    #[error("the sentry tier needs root")]
    NotRoot,
    #[error("starting the supervisor thread")]
    Thread(#[source] std::io::Error),
    #[error("installing the supervisor thread's wake-up handler")]
    WakeSignal(#[source] std::io::Error),
}

impl SentryError {
    /// Whether the error says the sandbox's init no longer exists (its /proc entries vanished).
    fn init_gone(&self) -> bool {
        let io = match self {
            SentryError::Root(e) => Some(e),
            SentryError::Confine(confine::ConfineError::Syscall { source, .. }) => Some(source),
            _ => None,
        };
        io.and_then(std::io::Error::raw_os_error) == Some(libc::ENOENT)
    }
}

fn tier_err(step: &str, e: SentryError) -> SandboxError {
    SandboxError::Tier {
        tier: TierKind::Sentry,
        step: step.to_string(),
        source: Box::new(e),
    }
}

/// The workload's Landlock rules: read and execute beneath its root, write but never
/// execute beneath /tmp (what the workload writes at run time cannot be run), every right
/// beneath the read-write bind mounts, and beneath the whole root when it is a writable copy
/// of an image.
pub fn workload_landlock(spec: &SandboxSpec) -> LandlockRules {
    let mut writable: Vec<PathBuf> = spec
        .mounts
        .iter()
        .filter(|m| !m.readonly)
        .map(|m| m.destination.clone())
        .collect();
    if matches!(spec.rootfs, RootfsSource::Dir(_)) {
        writable.push(PathBuf::from("/"));
    }
    LandlockRules {
        scratch: vec![PathBuf::from("/tmp")],
        writable,
    }
}

fn show_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// The sentry tier: the container tier it builds on, and where its audit log goes.
#[derive(Debug)]
pub struct SentryTier {
    pub container: ContainerTier,
    pub audit: AuditSink,
    /// Print the supervisor's confinement and a count of handled calls on stderr.
    pub debug: bool,
}

impl SentryTier {
    /// Runs `spec` to completion under supervision.
    ///
    /// This confines the calling process (its seccomp filter, capabilities and network
    /// namespace stay in force until it exits): call it from a process that runs one sandbox.
    pub fn run(self, spec: &SandboxSpec) -> Result<ExitOutcome, SandboxError> {
        spec.validate()?;
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid != 0 {
            return Err(tier_err("checking privileges", SentryError::NotRoot));
        }
        let mut cfg = sandbox_config(spec, uid, gid);
        cfg.process.notify = Some(notify_policy::notify_policy());
        let landlock_abi = landlock::abi();
        cfg.process.landlock = landlock_abi.map(|_| workload_landlock(spec));
        let deadline = spec.timeout.map(|t| Instant::now() + t);
        let running = self.container.create_started_config(&cfg)?;
        let pid = running.pid();
        let step = |e: SentryError| tier_err("starting the supervisor", e);
        let opened = View::open(pid)
            .map_err(SentryError::Root)
            .and_then(|v| Ok((v, confine::open_netns(pid)?)));
        let (view, netns) = match opened {
            Ok(v) => v,
            Err(e) if e.init_gone() => {
                // The init is already gone (its exec failed, or it exited at once): there is
                // nothing to supervise. A listener that still arrives is closed unserved, so
                // a trapped call could only fail (ENOSYS), never pass.
                return running.wait_handing_over(deadline, &mut drop);
            }
            Err(e) => return Err(step(e)),
        };
        // The supervisor thread, started before anything is confined (the confined threads
        // may not clone) and confining itself before it reads the first notification.
        let mut sup = Supervisor::new(view, spec.uid, spec.gid, AuditLog::new(self.audit));
        let (listener_tx, listener_rx) = mpsc::channel::<OwnedFd>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_worker = Arc::clone(&stop);
        let netns_main = netns
            .try_clone()
            .map_err(|e| step(SentryError::Thread(e)))?;
        let worker = std::thread::Builder::new()
            .name("cordon-sentry".into())
            .spawn(move || {
                let ready = sys::catch_wake_signal()
                    .map_err(SentryError::WakeSignal)
                    .and_then(|()| confine::confine_in(netns.as_fd()).map_err(SentryError::from));
                let confined = ready.is_ok();
                let _ = ready_tx.send(ready.map(|_| sys::gettid()));
                if confined {
                    if let Ok(listener) = listener_rx.recv() {
                        sys::notif_sync_wakeup(listener.as_fd());
                        sup.serve(listener.as_fd(), &stop_worker);
                    }
                }
                sup
            })
            .map_err(|e| step(SentryError::Thread(e)))?;
        // The waiting thread (teardown, signal forwarding) is confined the same way.
        let confinement = confine::confine_in(netns_main.as_fd()).map_err(|e| step(e.into()));
        let worker_tid = ready_rx
            .recv()
            .unwrap_or(Err(SentryError::Thread(
                std::io::ErrorKind::BrokenPipe.into(),
            )))
            .map_err(step);
        let (confinement, worker_tid) = match (confinement, worker_tid) {
            (Ok(c), Ok(t)) => (c, t),
            (Err(e), _) | (_, Err(e)) => {
                drop(listener_tx);
                let _ = worker.join();
                return Err(e);
            }
        };
        if self.debug {
            eprintln!(
                "cordon-sentry: supervisor confined; {}",
                confinement.landlock
            );
            match (&cfg.process.landlock, landlock_abi) {
                (Some(rules), Some(abi)) => eprintln!(
                    "cordon-sentry: workload: landlock ABI {abi} enforced before exec (read and execute beneath /; no execute beneath {}{})",
                    show_paths(&rules.scratch),
                    if rules.writable.is_empty() {
                        String::new()
                    } else {
                        format!("; every right beneath {}", show_paths(&rules.writable))
                    }
                ),
                _ => eprintln!("cordon-sentry: workload: landlock unavailable in this kernel, not enforced"),
            }
        }
        let outcome = running.wait_handing_over(deadline, &mut |listener| {
            let _ = listener_tx.send(listener);
        });
        // Every process under the filter is gone: stop the supervisor thread.
        drop(listener_tx);
        stop.store(true, Ordering::Release);
        while !worker.is_finished() {
            let _ = sys::wake_thread(worker_tid);
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut sup = worker.join().map_err(|_| {
            step(SentryError::Thread(std::io::Error::other(
                "the supervisor thread panicked",
            )))
        })?;
        sup.audit().finish();
        if self.debug {
            let denied = sup.audit().denied_total;
            eprintln!(
                "cordon-sentry: {} calls handled, {denied} denied",
                sup.handled
            );
        }
        outcome
    }
}

/// Serves the supervised syscalls of one process started by someone else: the OCI front's
/// `create` (the container's first process) and `exec` hand over the socket its seccomp
/// listener arrives on ([`cordon_container::DetachedContainer::notify_sock`],
/// [`cordon_container::exec::exec_in_supervised`]). `init_pid` is the container's init (its
/// root and network namespace are the sandbox's); `uid`/`gid` the process's identity.
///
/// As in [`SentryTier::run`], a supervisor thread confines itself and then waits in
/// `SECCOMP_IOCTL_NOTIF_RECV` (one wakeup per call); the calling thread, confined the same
/// way, waits until no process uses the filter any more (the listener hangs up) and returns
/// without stopping the supervisor thread: call this from a process of its own and exit right
/// after it returns.
pub fn serve_detached(
    init_pid: libc::pid_t,
    notify_sock: OwnedFd,
    uid: u32,
    gid: u32,
    audit: AuditSink,
) -> Result<(), SentryError> {
    let view = View::open(init_pid).map_err(SentryError::Root)?;
    let netns = confine::open_netns(init_pid)?;
    // EOF without a listener: the process died (or failed) before its exec.
    let Ok(Some(listener)) = cordon_container::recv_listener(notify_sock.as_fd()) else {
        return Ok(());
    };
    drop(notify_sock);
    let mut sup = Supervisor::new(view, uid, gid, AuditLog::new(audit));
    let worker_listener = listener.try_clone().map_err(SentryError::Thread)?;
    let worker_netns = netns.try_clone().map_err(SentryError::Thread)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("cordon-sentry".into())
        .spawn(move || {
            let ready = confine::confine_in(worker_netns.as_fd());
            let confined = ready.is_ok();
            let _ = ready_tx.send(ready);
            if confined {
                sys::notif_sync_wakeup(worker_listener.as_fd());
                sup.serve(worker_listener.as_fd(), &AtomicBool::new(false));
            }
        })
        .map_err(SentryError::Thread)?;
    confine::confine_in(netns.as_fd())?;
    ready_rx.recv().unwrap_or_else(|_| {
        Err(confine::ConfineError::Syscall {
            op: "starting the supervisor thread",
            source: std::io::ErrorKind::BrokenPipe.into(),
        })
    })?;
    // Notifications belong to the supervisor thread; this one only waits for the hang-up.
    while let Ok(revents) = sys::poll_hangup(listener.as_fd()) {
        if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            break;
        }
    }
    Ok(())
}
