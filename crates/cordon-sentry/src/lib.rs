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
//! 1. build the container tier's [`ContainerConfig`] for the spec and add the notify filter;
//! 2. create and start the container (its init reports ready once the root is pivoted);
//! 3. open the sandbox's root through `/proc/INIT/root`;
//! 4. confine the supervisor (network namespace, capabilities, seccomp);
//! 5. wait for the workload, handling each notification as it arrives; teardown as usual.

pub mod audit;
pub mod confine;
pub mod notify_policy;
pub mod supervisor;
mod sys;
pub mod view;

use std::time::Instant;

use cordon_container::{sandbox_config, ContainerTier};
use cordon_sandbox::{ExitOutcome, SandboxError, SandboxSpec, TierKind};
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
}

fn tier_err(step: &str, e: SentryError) -> SandboxError {
    SandboxError::Tier {
        tier: TierKind::Sentry,
        step: step.to_string(),
        source: Box::new(e),
    }
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
        let deadline = spec.timeout.map(|t| Instant::now() + t);
        let running = self.container.create_started_config(&cfg)?;
        let view = View::open(running.pid())
            .map_err(|e| tier_err("starting the supervisor", SentryError::Root(e)))?;
        let confinement = confine::confine(running.pid())
            .map_err(|e| tier_err("starting the supervisor", e.into()))?;
        if self.debug {
            eprintln!(
                "cordon-sentry: supervisor confined; {}",
                confinement.landlock
            );
        }
        let mut sup = Supervisor::new(view, spec.uid, spec.gid, AuditLog::new(self.audit));
        let mut synced = false;
        let outcome = running.wait_supervised(deadline, &mut |listener| {
            if !synced {
                synced = true;
                sys::notif_sync_wakeup(listener);
            }
            sup.handle(listener);
        });
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
