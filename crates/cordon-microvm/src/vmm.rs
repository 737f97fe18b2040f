//! The VMM interface: what cordon needs from a virtual machine monitor, independent of which
//! one runs the guest. [`crate::qemu`] implements it with qemu's `microvm` machine; another
//! VMM (an in-process KVM one on hosts with hardware virtualisation) can be added behind the
//! same trait.

use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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
    /// snapshot was saved to, device state loaded from `state`. With `sealed_ram`, the RAM is
    /// that fd instead (a sealed memfd the VMM inherits and cannot write: see
    /// [`crate::pool`]).
    RestoreFrom {
        ram: PathBuf,
        state: PathBuf,
        sealed_ram: Option<std::os::fd::RawFd>,
    },
}

/// One guest's hardware and boot inputs.
#[derive(Debug, Clone)]
pub struct VmConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cmdline: String,
    /// Attached read-only as the first virtio-blk disk (`/dev/vda`).
    pub rootfs: PathBuf,
    /// The images in the read-only mount slots ([`crate::rootfs::MOUNT_SLOTS`] of them, the
    /// unused ones the empty placeholder): not part of a snapshot's identity.
    pub mount_disks: Vec<PathBuf>,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub accel: Accel,
    /// The guest CPU model under TCG (`max`: every feature qemu emulates).
    pub cpu_model: String,
    pub memory: GuestMemory,
    /// The VMM's nice value (a warm pool fills itself at a low priority, so refills do not
    /// slow the VMs it has lent out).
    pub nice: i32,
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

/// Who holds the VMM process.
#[derive(Debug)]
pub enum VmProcess {
    /// This process started it (as its child, PID 1 of a PID namespace of its own): it is
    /// killed and reaped here. `status` is its wait status once reaped.
    Child { pid: u32, status: Option<i32> },
    /// A warm pool ([`crate::pool`]) started it and lent it to this process over `lease`; the
    /// pool kills it as soon as `lease` closes, so it cannot outlive this process.
    Leased { lease: UnixStream },
}

/// A launched VM: its process, the agent's and the console's byte streams, and its control.
#[derive(Debug)]
pub struct Vm {
    pub process: VmProcess,
    /// Readable when the VMM process has exited.
    pub pidfd: OwnedFd,
    /// The agent's virtio-serial port.
    pub agent: UnixStream,
    /// The guest's serial console and the VMM's own stderr.
    pub console: UnixStream,
    pub control: Box<dyn VmControl>,
}

impl Vm {
    /// Kills the VMM (and reaps it, when it is our child). Idempotent.
    pub fn kill(&mut self) {
        match &mut self.process {
            VmProcess::Child { pid, status } => {
                if status.is_none() {
                    let _ = crate::sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
                    *status = crate::sys::wait_pid(*pid).ok();
                }
            }
            VmProcess::Leased { lease } => {
                let _ = crate::sys::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
                let _ = lease.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// How the VMM ended (waits for it when it is our child).
    pub fn status(&mut self) -> String {
        match &mut self.process {
            VmProcess::Child { pid, status } => {
                use std::os::unix::process::ExitStatusExt;
                if status.is_none() {
                    match crate::sys::wait_pid(*pid) {
                        Ok(st) => *status = Some(st),
                        Err(e) => return e.to_string(),
                    }
                }
                std::process::ExitStatus::from_raw(status.unwrap_or(0)).to_string()
            }
            VmProcess::Leased { .. } => "exited (a pooled VM: its pool reaped it)".to_string(),
        }
    }

    /// The VMM's process id.
    pub fn pid(&self) -> Option<u32> {
        match &self.process {
            VmProcess::Child { pid, .. } => Some(*pid),
            VmProcess::Leased { .. } => None,
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The control of a VM lent by a pool: its monitor stays with the pool.
#[derive(Debug)]
pub struct NoControl;

impl VmControl for NoControl {
    fn save(&mut self, _state: &File, _timeout: Duration) -> Result<(), VmmError> {
        Err(VmmError::Monitor(
            "a pooled VM's monitor stays with its pool".into(),
        ))
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
