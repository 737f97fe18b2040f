//! Snapshots of a booted guest whose agent waits for its command: boot once per (VMM build,
//! accelerator, kernel, initramfs, root image, memory, vCPUs, command line), then start every
//! sandbox from it.
//!
//! A snapshot is a directory under the snapshot root (default
//! `/var/cache/cordon/microvm-snapshots`, on disk: see [`crate::DEFAULT_SNAPSHOTS`] for why not
//! tmpfs; once read, restores come from the page cache) holding `ram` (the guest's memory,
//! saved through a `share=on` file mapping) and `state` (devices and CPUs, a few tens of KiB,
//! written by the VMM's migration with `x-ignore-shared`). A restore maps `ram` copy-on-write
//! (`share=off`): the file never changes after it is saved, whatever the guests do.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::assets::tmp_path;
use crate::session::{GuestError, Session};
use crate::vmm::{io, GuestMemory, VmConfig, Vmm, VmmError};

/// Where one snapshot lives.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
}

impl Snapshot {
    /// The snapshot for `config` (its memory field is ignored) under `root`.
    pub fn for_config(root: &Path, vmm: &dyn Vmm, config: &VmConfig) -> Self {
        let mut h = Sha256::new();
        for part in [
            vmm.name().to_string(),
            vmm.version(),
            config.accel.to_string(),
            config.cpu_model.clone(),
            config.kernel.display().to_string(),
            config.initramfs.display().to_string(),
            config.rootfs.display().to_string(),
            config.memory_mib.to_string(),
            config.vcpus.to_string(),
            config.cmdline.clone(),
            // The device set: the mount slots' count (their images may differ per restore).
            format!("mount-slots={}", config.mount_disks.len()),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let key: String = h
            .finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        Snapshot {
            dir: root.join(key),
        }
    }

    pub fn ram(&self) -> PathBuf {
        self.dir.join("ram")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn exists(&self) -> bool {
        self.ram().is_file() && self.state().is_file()
    }

    pub fn memory(&self) -> GuestMemory {
        GuestMemory::RestoreFrom {
            ram: self.ram(),
            state: self.state(),
            sealed_ram: None,
        }
    }

    /// Records a use (the directory's mtime), which [`evict`] goes by.
    pub fn mark_used(&self) {
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.set_modified(std::time::SystemTime::now());
        }
    }

    /// Boots a guest to agent-ready and saves it, unless another cordon did so meanwhile
    /// (builders serialise on an flock of the snapshot root, so no lock file is left behind).
    pub fn build(
        &self,
        vmm: &dyn Vmm,
        config: &VmConfig,
        boot_limit: Duration,
    ) -> Result<(), SnapshotError> {
        let root = self.dir.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(root)
            .map_err(|e| SnapshotError::Vmm(io(format!("creating {}", root.display()))(e)))?;
        let lock = File::open(root)
            .map_err(|e| SnapshotError::Vmm(io(format!("opening {}", root.display()))(e)))?;
        // SAFETY: flock on an fd we own; released when `lock` is closed.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        if self.exists() {
            return Ok(());
        }
        let work = tmp_path(&self.dir);
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work)
            .map_err(|e| SnapshotError::Vmm(io(format!("creating {}", work.display()))(e)))?;
        let result = save_into(&work, vmm, config, boot_limit);
        match result {
            Ok(()) => fs::rename(&work, &self.dir)
                .map_err(|e| SnapshotError::Vmm(io(format!("renaming {}", work.display()))(e))),
            Err(e) => {
                let _ = fs::remove_dir_all(&work);
                Err(e)
            }
        }
    }
}

/// Snapshots kept in the snapshot root (each holds the pages its guest touched, 100-200 MiB
/// of host RAM in a tmpfs): the least recently used beyond this go when a new one is made.
pub const KEEP: usize = 8;

/// Removes all but the `keep` most recently used snapshots under `root` (work in progress is
/// left to [`crate::assets::collect_garbage`]). A guest running from a removed snapshot keeps
/// its mapping; the next run of that shape makes the snapshot again.
pub fn evict(root: &Path, keep: usize) -> Vec<PathBuf> {
    let mut snaps: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().contains(".tmp-"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if !m.is_dir() {
                return None;
            }
            Some((m.modified().ok()?, e.path()))
        })
        .collect();
    snaps.sort_by_key(|s| std::cmp::Reverse(s.0));
    snaps
        .into_iter()
        .skip(keep)
        .filter(|(_, p)| fs::remove_dir_all(p).is_ok())
        .map(|(_, p)| p)
        .collect()
}

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("booting the guest to save it")]
    Boot(#[source] GuestError, Vec<String>),
    #[error(transparent)]
    Vmm(VmmError),
}

fn save_into(
    work: &Path,
    vmm: &dyn Vmm,
    config: &VmConfig,
    boot_limit: Duration,
) -> Result<(), SnapshotError> {
    let mut cfg = config.clone();
    cfg.memory = GuestMemory::SaveTo(work.join("ram"));
    let vm = vmm.launch(&cfg).map_err(SnapshotError::Vmm)?;
    let mut session = Session::new(vm);
    if let Err(e) = session.wait_ready(boot_limit) {
        return Err(SnapshotError::Boot(e, session.console.lines()));
    }
    let state_path = work.join("state");
    let state = File::create(&state_path)
        .map_err(|e| SnapshotError::Vmm(io(format!("creating {}", state_path.display()))(e)))?;
    session
        .vm
        .control
        .save(&state, Duration::from_secs(60))
        .map_err(SnapshotError::Vmm)?;
    state
        .sync_all()
        .map_err(|e| SnapshotError::Vmm(io(format!("writing {}", state_path.display()))(e)))?;
    session.vm.kill();
    Ok(())
}
