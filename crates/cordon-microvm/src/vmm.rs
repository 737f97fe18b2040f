//! The VMM interface: what cordon needs from a virtual machine monitor, independent of which
//! one runs the guest. [`crate::qemu`] implements it with qemu's `microvm` machine; another
//! VMM (an in-process KVM one on hosts with hardware virtualisation) can be added behind the
//! same trait.

use std::fmt;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use thiserror::Error;

/// How guest instructions execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// qemu's binary translator (works everywhere, ~10-50x slower per guest instruction).
    Tcg,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        })
    }
}

/// Where guest RAM lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMemory {
    /// Private anonymous memory (a plain cold boot).
    Anonymous,
    /// A file shared with the VMM (`share=on`): after a pause it holds the guest's RAM, the
    /// memory half of a snapshot.
    SaveTo(PathBuf),
    /// Start from a snapshot: RAM mapped copy-on-write (`share=off`) from the file the
    /// snapshot was saved to, device state loaded from `state`.
    RestoreFrom { ram: PathBuf, state: PathBuf },
}

/// One guest's hardware and boot inputs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    /// Attached read-only as the first virtio-blk disk (`/dev/vda`).
    pub rootfs: PathBuf,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub accel: Accel,
    /// The guest CPU model under TCG (`max`: every feature qemu emulates).
    pub cpu_model: String,
    pub memory: GuestMemory,
}

#[derive(Debug, Error)]
pub enum VmmError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} not found (install it: scripts/setup.sh, package qemu-system-x86)")]
    Missing(String),
    #[error("qemu monitor: {0}")]
    Monitor(String),
    #[error("snapshot {0}")]
    Snapshot(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> VmmError {
    let what = what.into();
    move |source| VmmError::Io { what, source }
}

/// Control of a running VMM beyond its process.
pub trait VmControl: fmt::Debug + Send {
    /// Writes the guest's device state to `state` and leaves it paused (RAM stays in the
    /// shared memory file, see [`GuestMemory::SaveTo`]). A VM launched from that state starts
    /// running by itself.
    fn save(&mut self, state: &File, timeout: Duration) -> Result<(), VmmError>;
}

/// A launched VM: its process, the agent's and the console's byte streams, and its control.
#[derive(Debug)]
pub struct Vm {
    pub process: Child,
    /// Readable when the VMM process has exited.
    pub pidfd: OwnedFd,
    /// The agent's virtio-serial port.
    pub agent: UnixStream,
    /// The guest's serial console and the VMM's own stderr.
    pub console: UnixStream,
    pub control: Box<dyn VmControl>,
}

impl Vm {
    /// Kills the VMM and reaps it. Idempotent.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A virtual machine monitor.
pub trait Vmm: fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// Starts a guest (for [`GuestMemory::RestoreFrom`], from the snapshot).
    fn launch(&self, config: &VmConfig) -> Result<Vm, VmmError>;
    /// A string that changes when the VMM's build changes (snapshots are only valid for the
    /// build that saved them).
    fn version(&self) -> String;
}
