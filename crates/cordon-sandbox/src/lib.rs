//! The sandbox model shared by every cordon tier.
//!
//! A [`SandboxSpec`] says what to run and under which limits; a tier (container, sentry,
//! microvm) turns it into a running sandbox through the lifecycle traits in [`lifecycle`], and
//! reports how it ended as an [`ExitOutcome`], which maps onto cordon's documented exit codes.
//! Nothing here touches the kernel: raw interfaces stay inside the tier crates.

pub mod lifecycle;
pub mod outcome;
pub mod parse;
pub mod spec;
pub mod timestamp;

pub use lifecycle::{CreatedSandbox, RunningSandbox, SandboxError, Tier};
pub use outcome::{exit_code, ExecFailure, ExitOutcome, KillCause};
pub use spec::{
    BindMount, Capability, Limits, Network, RootfsSource, SandboxSpec, SpecError, TierKind,
    UserNamespace,
};
