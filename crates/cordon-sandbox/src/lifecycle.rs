//! The lifecycle every tier implements: create, then start, then wait (or kill).
//!
//! The states are types: a [`CreatedSandbox`] can only be started, a [`RunningSandbox`] can be
//! signalled and waited for, and waiting consumes it. Dropping a sandbox in any state tears it
//! down (kills what runs, removes what was set up).

use std::time::Instant;

use thiserror::Error;

use crate::outcome::ExitOutcome;
use crate::spec::{SandboxSpec, SpecError, TierKind};

/// A failure of cordon itself (exit code 125), as opposed to the workload's.
#[derive(Debug, Error)]
pub enum SandboxError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("the {0} tier is not available in this build")]
    TierUnavailable(TierKind),
    #[error("{tier} tier: {step}")]
    Tier {
        tier: TierKind,
        step: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An isolation tier.
pub trait Tier {
    type Created: CreatedSandbox;
    fn kind(&self) -> TierKind;
    /// Sets the sandbox up (namespaces, cgroups, filesystem, ...) without running the command.
    fn create(&self, spec: &SandboxSpec) -> Result<Self::Created, SandboxError>;
}

/// A sandbox that is set up and waits to run its command.
pub trait CreatedSandbox {
    type Running: RunningSandbox;
    fn id(&self) -> &str;
    fn start(self) -> Result<Self::Running, SandboxError>;
}

/// A sandbox whose command runs.
pub trait RunningSandbox {
    fn id(&self) -> &str;
    /// Delivers `signal` to the command.
    fn signal(&self, signal: i32) -> Result<(), SandboxError>;
    /// Waits until the command ends or `deadline` passes (then the sandbox is killed and the
    /// outcome is [`ExitOutcome::TimedOut`]). Signals cordon receives meanwhile (INT, TERM, HUP,
    /// QUIT) are forwarded to the command. Everything is torn down before this returns.
    fn wait(self, deadline: Option<Instant>) -> Result<ExitOutcome, SandboxError>;
}
