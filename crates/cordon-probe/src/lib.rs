//! cordon's escape-attempt suite.
//!
//! The `cordon-probe` binary (statically linked, so it runs in any root filesystem) is started
//! *inside* a sandbox and attempts real attacks: host kernel interfaces, privileged syscalls,
//! namespaces and mounts, host processes and the runtime's binary, leaked descriptors, the
//! network, a planted host secret, resource bombs. Each [`catalog::Probe`] reports a
//! [`verdict::Verdict`] with a one-line detail.

pub mod catalog;
pub mod context;
mod probes;
pub mod runner;
mod sys;
pub mod verdict;
