//! Raw host devices: the disk, /dev/kvm, /dev/mem. Opened for reading (kvm: read-write, to
//! ask its API version), never written. Whether the kernel has the device at all is read
//! from sysfs, which shows the kernel's devices even where /dev does not.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::namespaces::host_disk;
use super::{ename, refused};
use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

fn open_device(path: &str, write: bool) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Judges the failure to open a device node the kernel has (per sysfs).
fn device_refused(ctx: &Context, path: &str, e: &std::io::Error) -> Outcome {
    if e.raw_os_error() == Some(libc::ENOENT) {
        Outcome::blocked(format!(
            "{path}: ENOENT (the kernel has the device; this /dev does not)"
        ))
    } else {
        refused(ctx, &format!("open({path})"), e)
    }
}

/// Opens a whole disk (the first non-loop block device in /sys/block) for reading.
pub(crate) fn dev_disk(ctx: &Context) -> Outcome {
    let (name, maj, min) = host_disk();
    let Some(name) = name else {
        if Path::new("/sys/block").exists() {
            return Outcome::unsupported("/sys/block lists no disk: the kernel has none to attack");
        }
        return match open_device("/dev/sda", false) {
            Ok(_) => Outcome::escaped("opened /dev/sda for reading"),
            Err(e) => Outcome::blocked(format!("no sysfs to find a disk; /dev/sda: {}", ename(&e))),
        };
    };
    let path = format!("/dev/{name}");
    match open_device(&path, false) {
        Ok(f) => {
            let mut buf = [0u8; 512];
            let read = sys::read(f.as_fd(), &mut buf)
                .map(|n| format!("read {n} bytes of it"))
                .unwrap_or_else(|e| format!("read: {}", ename(&e)));
            Outcome::escaped(format!(
                "opened {path} ({maj}:{min}, a whole disk) for reading; {read}"
            ))
        }
        Err(e) => device_refused(ctx, &path, &e),
    }
}

/// Opens /dev/kvm and asks its API version (a sandbox with KVM can run its own VMs, and the
/// KVM code is a large kernel attack surface).
pub(crate) fn dev_kvm(ctx: &Context) -> Outcome {
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
    let host_has_it =
        Path::new("/sys/class/misc/kvm").exists() || Path::new("/sys/module/kvm").exists();
    match open_device("/dev/kvm", true) {
        Ok(f) => {
            let version = sys::ioctl_none(f.as_fd(), KVM_GET_API_VERSION)
                .map(|v| format!("API version {v}"))
                .unwrap_or_else(|e| format!("KVM_GET_API_VERSION: {}", ename(&e)));
            Outcome::escaped(format!("opened /dev/kvm read-write ({version})"))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !host_has_it => {
            if Path::new("/sys/class/misc").exists() {
                Outcome::unsupported("the kernel has no KVM (/sys/class/misc/kvm is absent)")
            } else {
                Outcome::blocked(
                    "/dev/kvm: ENOENT (and no sysfs to tell whether the kernel has KVM)",
                )
            }
        }
        Err(e) => device_refused(ctx, "/dev/kvm", &e),
    }
}

/// Opens /dev/mem and /dev/port (physical memory and I/O ports) for reading.
pub(crate) fn dev_mem(ctx: &Context) -> Outcome {
    let mut notes = Vec::new();
    let mut host_has_any = false;
    for (path, sysfs) in [
        ("/dev/mem", "/sys/dev/char/1:1"),
        ("/dev/port", "/sys/dev/char/1:4"),
    ] {
        let exists = Path::new(sysfs).exists();
        host_has_any |= exists;
        match open_device(path, false) {
            Ok(_) => return Outcome::escaped(format!("opened {path} for reading")),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !exists => {
                notes.push(format!("{path}: absent from the kernel ({sysfs} missing)"));
            }
            Err(e) => {
                let o = device_refused(ctx, path, &e);
                notes.push(o.detail);
            }
        }
    }
    if !host_has_any && Path::new("/sys/dev/char").exists() {
        Outcome::unsupported(format!(
            "the kernel has neither /dev/mem nor /dev/port (CONFIG_DEVMEM/CONFIG_DEVPORT off): {}",
            notes.join("; ")
        ))
    } else if ctx.confinement.unconfined() && host_has_any {
        Outcome::unsupported(format!(
            "refused even to unconfined root: {}",
            notes.join("; ")
        ))
    } else {
        Outcome::blocked(notes.join("; "))
    }
}
