//! cordon's microVM guest agent and the protocol it speaks with the host.
//!
//! The agent is PID 1 of every cordon microVM: it loads the virtio modules, mounts the root
//! filesystem, tells the host it is ready, then runs one command as the host asks, streaming
//! its output back as frames, and reports how it ended. The host side (crate `cordon-microvm`)
//! uses only [`protocol`]; [`guest`] runs inside the VM.

pub mod guest;
pub mod protocol;
