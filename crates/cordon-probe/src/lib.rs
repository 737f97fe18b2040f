//! cordon's escape-attempt suite.
//!
//! The `cordon-probe` binary (statically linked, so it runs in any root filesystem) is started
//! *inside* a sandbox and attempts real attacks: host kernel interfaces, privileged syscalls,
//! namespaces and mounts, host processes and the runtime's binary, leaked descriptors, the
//! network, a planted host secret, resource bombs. Each [`catalog::Probe`] reports a
//! [`verdict::Verdict`] with a one-line detail. The [`harness`] (`cordon probe`) plants the
//! bait on the host, runs the probe binary in every tier, under reference runtimes and bare on
//! the host, and prints the matrix.

pub mod catalog;
pub mod context;
pub mod harness;
pub mod matrix;
mod probes;
pub mod runner;
mod sys;
pub mod verdict;
mod words;
