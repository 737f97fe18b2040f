//! The image beneath an engine's container root, for the microvm tier. Docker and containerd
//! mount each container's root as an overlay of the image's layers, plus (Docker) an init layer
//! of per-container stubs (/etc/hostname, /etc/hosts, /etc/resolv.conf, /.dockerenv, mount
//! points), plus the container's own empty upper layer. Those stubs have fresh mtimes, so the
//! root's tree hash, and with it the VM image and its snapshot, would differ for every
//! container of the same image. While the container has written nothing yet, the keeper builds
//! the VM's image from the image layers alone (the guest makes its own hostname, hosts and
//! mount points): one cached image and snapshot per engine image.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};

/// Lower layers (as the mount names them, topmost first) of the overlay mounted at `root`,
/// without Docker's init layer, if the container's upper layer is still empty.
pub fn image_layers(root: &Path) -> Option<Vec<String>> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let root = root.to_str()?;
    // The last mount on the path is the one seen there.
    let line = info
        .lines()
        .rev()
        .find(|l| l.split(' ').nth(4) == Some(root))?;
    let (_, tail) = line.split_once(" - ")?;
    let mut fields = tail.split(' ');
    if fields.next()? != "overlay" {
        return None;
    }
    let options = fields.nth(1)?;
    let (mut lower, mut upper) = (None, None);
    for o in options.split(',') {
        if let Some(v) = o.strip_prefix("lowerdir=") {
            lower = Some(v);
        } else if let Some(v) = o.strip_prefix("upperdir=") {
            upper = Some(v);
        }
    }
    let upper = Path::new(upper?);
    if !upper.is_absolute() || fs::read_dir(upper).ok()?.next().is_some() {
        return None; // relative paths cannot be resolved here; written content must stay
    }
    let mut layers = Vec::new();
    for layer in lower?.split(':') {
        if !Path::new(layer).is_absolute() {
            return None;
        }
        let real = fs::canonicalize(layer).ok()?;
        let init = real.file_name().is_some_and(|n| n == "diff")
            && real
                .parent()
                .and_then(Path::file_name)
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with("-init"));
        if !init {
            layers.push(layer.to_string());
        }
    }
    (!layers.is_empty()).then_some(layers)
}

/// Mounts a read-only overlay of `layers` at a fresh directory under `run_dir`, in a mount
/// namespace of the calling process's own (which must be single-threaded), so that nobody
/// else sees it. Returns the directory; [`unmount`] removes both.
pub fn mount_private(layers: &[String], run_dir: &Path) -> std::io::Result<PathBuf> {
    let check = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let dir = run_dir.join(format!("oci-image-{}", std::process::id()));
    fs::create_dir_all(run_dir)?;
    fs::create_dir(&dir)?;
    let target = CString::new(dir.as_os_str().as_encoded_bytes())?;
    let data = CString::new(format!("lowerdir={}", layers.join(":")))?;
    // SAFETY: unshare and mount take NUL-terminated strings that outlive the calls.
    let mounted = unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))
            .and_then(|()| {
                check(libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ))
            })
            .and_then(|()| {
                check(libc::mount(
                    c"overlay".as_ptr(),
                    target.as_ptr(),
                    c"overlay".as_ptr(),
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                    data.as_ptr().cast(),
                ))
            })
    };
    if let Err(e) = mounted {
        let _ = fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(dir)
}

/// Unmounts and removes what [`mount_private`] made.
pub fn unmount(dir: &Path) {
    if let Ok(target) = CString::new(dir.as_os_str().as_encoded_bytes()) {
        // SAFETY: `target` is NUL-terminated.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = fs::remove_dir(dir);
}
