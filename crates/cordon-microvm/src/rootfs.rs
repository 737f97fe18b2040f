//! Root filesystem images for the guest: read-only ext4 (built into the guest kernel, so no
//! module is needed), attached as a virtio-blk disk.
//!
//! - The default image holds busybox and python3 copied from a *subset* of the host's `/usr`
//!   (the interpreter, the shared libraries it and its extension modules need, its standard
//!   library without tests, IDLE, tkinter and the static libpython), a minimal `/etc` and the
//!   mount points the agent uses. Built once by `cordon microvm setup` (`mke2fs -d`).
//! - `--rootfs DIR` becomes an image cached under a hash of the tree (every path, type, mode,
//!   owner, size, mtime and link target), rebuilt when any of those change.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::assets::{
    io_err, run_tool, sha256_file, tmp_path, write_atomic, AssetError, Cache, Progress,
};

/// Directories of the host's python standard library that a sandbox does not need.
const PYTHON_SKIP: [&str; 9] = [
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "config-3.11-x86_64-linux-gnu",
    "__phello__",
];

/// Mount points the agent needs in every root image.
const MOUNT_POINTS: [&str; 4] = ["tmp", "proc", "sys", "dev"];

impl Cache {
    fn rootfs_dir(&self) -> Result<PathBuf, AssetError> {
        let d = self.root.join("rootfs");
        fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        Ok(d)
    }

    /// The default image, if setup built it.
    pub fn default_rootfs(&self) -> Result<PathBuf, AssetError> {
        let manifest = self.root.join("rootfs/default");
        let name =
            fs::read_to_string(&manifest).map_err(|_| AssetError::NoKernel(self.root.clone()))?;
        let path = self.root.join("rootfs").join(name.trim());
        if path.is_file() {
            Ok(path)
        } else {
            Err(AssetError::NoKernel(self.root.clone()))
        }
    }

    /// Builds the default image unless it exists.
    pub fn ensure_default_rootfs(&self, progress: Progress<'_>) -> Result<PathBuf, AssetError> {
        if let Ok(p) = self.default_rootfs() {
            progress(&format!("default root image {} already built", p.display()));
            return Ok(p);
        }
        let dir = self.rootfs_dir()?;
        let staging = tmp_path(&dir.join("default-tree"));
        let _ = fs::remove_dir_all(&staging);
        let result = (|| {
            progress("collecting busybox and python3 from the host into the default root image");
            stage_default_tree(&staging)?;
            let image = tmp_path(&dir.join("default.ext4"));
            progress("building the default root image (mke2fs -d)");
            make_ext4(&staging, &image)?;
            let hash = sha256_file(&image)?;
            let name = format!("{}.ext4", &hash[..24]);
            fs::rename(&image, dir.join(&name)).map_err(io_err("renaming", &image))?;
            write_atomic(&dir.join("default"), name.as_bytes())?;
            progress(&format!(
                "default root image rootfs/{name} ready (sha256 {hash})"
            ));
            Ok(dir.join(name))
        })();
        let _ = fs::remove_dir_all(&staging);
        result
    }

    /// Where [`Self::dir_rootfs`] keeps the image of `tree`, built or not (the OCI front's
    /// keeper removes an image that only its own container used).
    pub fn dir_rootfs_path(&self, tree: &Path) -> Result<PathBuf, AssetError> {
        let key = tree_hash(tree)?;
        Ok(self.rootfs_dir()?.join(format!("dir-{}.ext4", &key[..24])))
    }

    /// An image of `tree` (a `--rootfs DIR`), built on first use and cached by the tree's hash.
    pub fn dir_rootfs(&self, tree: &Path) -> Result<PathBuf, AssetError> {
        let key = tree_hash(tree)?;
        let dir = self.rootfs_dir()?;
        let path = dir.join(format!("dir-{}.ext4", &key[..24]));
        if path.is_file() {
            return Ok(path);
        }
        let image = tmp_path(&path);
        let built = make_ext4(tree, &image).and_then(|()| add_mount_points(&image));
        if let Err(e) = built {
            let _ = fs::remove_file(&image);
            return Err(e);
        }
        fs::rename(&image, &path).map_err(io_err("renaming", &image))?;
        Ok(path)
    }
}

/// Read-only disk slots every guest has besides its root (`--mount SRC:DST:ro`): a snapshot
/// holds the devices it was saved with, so the slots exist in every VM, attached to an empty
/// placeholder unless a mount fills them.
pub const MOUNT_SLOTS: usize = 4;
/// The size every slot's disk shows the guest (a restored guest keeps the capacity it saw at
/// boot): the placeholder and each mount image are sparse files of this size.
pub const MOUNT_SLOT_BYTES: u64 = 64 << 30;

impl Cache {
    /// The empty disk in unused mount slots (sparse, all zeros).
    pub fn empty_slot(&self) -> Result<PathBuf, AssetError> {
        let path = self.rootfs_dir()?.join("empty-slot.img");
        if fs::metadata(&path).is_ok_and(|m| m.len() == MOUNT_SLOT_BYTES) {
            return Ok(path);
        }
        let tmp = tmp_path(&path);
        let f = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.set_len(MOUNT_SLOT_BYTES)
            .map_err(io_err("sizing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
        Ok(path)
    }

    /// A read-only ext4 image of the host directory `tree` for a mount slot, built on first use
    /// and cached by the tree's hash (a copy as of then: later changes on the host make a new
    /// image on the next run, not a change in a running guest).
    pub fn mount_image(&self, tree: &Path) -> Result<PathBuf, AssetError> {
        let key = tree_hash(tree)?;
        let dir = self.rootfs_dir()?;
        let path = dir.join(format!("mnt-{}.ext4", &key[..24]));
        if path.is_file() {
            return Ok(path);
        }
        let image = tmp_path(&path);
        let built = make_ext4(tree, &image).and_then(|()| {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&image)
                .map_err(io_err("opening", &image))?;
            let len = f.metadata().map_err(io_err("reading", &image))?.len();
            if len > MOUNT_SLOT_BYTES {
                return Err(AssetError::Tool {
                    tool: "mke2fs".into(),
                    why: format!(
                        "{} needs an image of {len} bytes, more than a mount slot's {MOUNT_SLOT_BYTES}",
                        tree.display()
                    ),
                });
            }
            f.set_len(MOUNT_SLOT_BYTES).map_err(io_err("sizing", &image))
        });
        if let Err(e) = built {
            let _ = fs::remove_file(&image);
            return Err(e);
        }
        fs::rename(&image, &path).map_err(io_err("renaming", &image))?;
        Ok(path)
    }
}

/// A hash of a directory tree's metadata (not its file contents: reading a whole rootfs on
/// every run would cost more than the VM start). Symlinks are not followed.
fn tree_hash(root: &Path) -> Result<String, AssetError> {
    let meta = fs::symlink_metadata(root).map_err(io_err("reading", root))?;
    if !meta.is_dir() {
        return Err(AssetError::Io {
            op: "using as a root filesystem",
            path: root.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    let mut h = Sha256::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&abs)
            .map_err(io_err("listing", &abs))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let m = e.metadata().map_err(io_err("reading", &e.path()))?;
            let r = rel.join(e.file_name());
            h.update(r.as_os_str().as_encoded_bytes());
            h.update([0]);
            for v in [
                u64::from(m.mode()),
                u64::from(m.uid()),
                u64::from(m.gid()),
                m.size(),
                u64::try_from(m.mtime()).unwrap_or(0),
                u64::try_from(m.mtime_nsec()).unwrap_or(0),
            ] {
                h.update(v.to_le_bytes());
            }
            if m.file_type().is_symlink() {
                if let Ok(t) = fs::read_link(e.path()) {
                    h.update(t.as_os_str().as_encoded_bytes());
                }
            } else if m.is_dir() {
                stack.push(r);
            }
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn du(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            inodes += 1;
            if let Ok(m) = e.metadata() {
                bytes += m.len().div_ceil(4096) * 4096;
                if m.is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    (bytes, inodes)
}

/// `mke2fs -d`: an ext4 image holding `tree`, without a journal (it is attached read-only).
fn make_ext4(tree: &Path, image: &Path) -> Result<(), AssetError> {
    let (bytes, inodes) = du(tree);
    let size_kib = (bytes + bytes / 5 + (16 << 20)) / 1024;
    let _ = fs::remove_file(image);
    run_tool(
        Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-O",
                "^has_journal",
                "-m",
                "0",
                "-b",
                "4096",
            ])
            .args(["-L", "cordon-root", "-E", "root_owner=0:0"])
            .arg("-N")
            .arg((inodes + 1024).to_string())
            .arg("-d")
            .arg(tree)
            .arg(image)
            .arg(format!("{size_kib}k")),
    )?;
    Ok(())
}

/// Adds the agent's mount points to an image that lacks them (debugfs; DIR stays untouched).
fn add_mount_points(image: &Path) -> Result<(), AssetError> {
    let listing = run_tool(Command::new("debugfs").args(["-R", "ls -l /"]).arg(image))?;
    let present: BTreeSet<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    for m in MOUNT_POINTS {
        if !present.contains(m) {
            run_tool(
                Command::new("debugfs")
                    .args(["-w", "-R", &format!("mkdir /{m}")])
                    .arg(image),
            )?;
        }
    }
    Ok(())
}

/// Copies host paths into `staging`, reproducing the symlinks on the way (usrmerge: `/lib64`
/// → `usr/lib64`, `/bin` → `usr/bin`, ...), so that paths resolve inside the image as on the
/// host.
struct Stager<'a> {
    staging: &'a Path,
    done: BTreeSet<PathBuf>,
}

impl Stager<'_> {
    fn dest(&self, host: &Path) -> PathBuf {
        self.staging.join(host.strip_prefix("/").unwrap_or(host))
    }

    /// Creates `dir`'s chain in the staging tree: real directories as directories, symlinks
    /// as the same symlinks plus the chain of their targets. Nothing is ever written through a
    /// staged symlink (an absolute link target would point at the host).
    fn chain(&mut self, dir: &Path) -> Result<(), AssetError> {
        let mut prefix = PathBuf::from("/");
        for c in dir.components() {
            let Component::Normal(n) = c else {
                continue;
            };
            prefix.push(n);
            let m = fs::symlink_metadata(&prefix).map_err(io_err("reading", &prefix))?;
            let d = self.dest(&prefix);
            if m.file_type().is_symlink() {
                if fs::symlink_metadata(&d).is_err() {
                    let target = fs::read_link(&prefix).map_err(io_err("reading link", &prefix))?;
                    std::os::unix::fs::symlink(&target, &d).map_err(io_err("creating link", &d))?;
                }
                let resolved = fs::canonicalize(&prefix).map_err(io_err("resolving", &prefix))?;
                let rest = dir.strip_prefix(&prefix).unwrap_or(Path::new(""));
                return self.chain(&resolved.join(rest));
            }
            if fs::symlink_metadata(&d).is_err() {
                fs::create_dir(&d).map_err(io_err("creating", &d))?;
            }
        }
        Ok(())
    }

    /// Imports `host` (absolute): its parent chain, then the entry itself (a directory is
    /// copied recursively, skipping names in `skip`; a symlink is copied and so is its target).
    fn import(&mut self, host: &Path, skip: &[&str]) -> Result<(), AssetError> {
        if !self.done.insert(host.to_path_buf()) {
            return Ok(());
        }
        let parent = host.parent().unwrap_or(Path::new("/"));
        self.chain(parent)?;
        let real_parent = fs::canonicalize(parent).map_err(io_err("resolving", parent))?;
        let Some(name) = host.file_name() else {
            return Ok(());
        };
        let dest = self.dest(&real_parent).join(name);
        let m = fs::symlink_metadata(host).map_err(io_err("reading", host))?;
        if m.file_type().is_symlink() {
            let target = fs::read_link(host).map_err(io_err("reading link", host))?;
            if fs::symlink_metadata(&dest).is_err() {
                std::os::unix::fs::symlink(&target, &dest)
                    .map_err(io_err("creating link", &dest))?;
            }
            let abs = normalize(&real_parent.join(target));
            if fs::symlink_metadata(&abs).is_ok() {
                self.import(&abs, skip)?;
            }
        } else if m.is_dir() {
            if fs::symlink_metadata(&dest).is_err() {
                fs::create_dir(&dest).map_err(io_err("creating", &dest))?;
            }
            for e in fs::read_dir(host)
                .map_err(io_err("listing", host))?
                .flatten()
            {
                let child = e.file_name();
                if skip.iter().any(|s| child == *s) {
                    continue;
                }
                self.import(&real_parent.join(name).join(child), skip)?;
            }
        } else if m.is_file() {
            fs::copy(host, &dest).map_err(io_err("copying", host))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(io_err("chmod", &dest))?;
        }
        Ok(())
    }
}

/// Lexically removes `.` and `..` (for symlink targets; no filesystem access).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The shared libraries `elf` loads, by absolute path (`ldd`).
fn needed_libraries(elf: &Path) -> Vec<PathBuf> {
    let Ok(out) = run_tool(Command::new("ldd").arg(elf)) else {
        return Vec::new();
    };
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn stage_default_tree(staging: &Path) -> Result<(), AssetError> {
    fs::create_dir_all(staging).map_err(io_err("creating", staging))?;
    let mut s = Stager {
        staging,
        done: BTreeSet::new(),
    };
    // busybox (static) provides the shell and the usual tools.
    let busybox = Path::new("/bin/busybox");
    s.import(busybox, &[])?;
    let applets = run_tool(Command::new(busybox).arg("--list"))?;
    let bin = s.dest(&fs::canonicalize("/bin").map_err(io_err("resolving", Path::new("/bin")))?);
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains('/'))
    {
        let link = bin.join(applet);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("busybox", &link).map_err(io_err("creating link", &link))?;
        }
    }
    // python3: the interpreter, its libraries, the standard library and what its extension
    // modules link against.
    let python = fs::canonicalize("/usr/bin/python3")
        .map_err(io_err("resolving", Path::new("/usr/bin/python3")))?;
    s.import(Path::new("/usr/bin/python3"), &[])?;
    let version = python
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("python3")
        .to_string();
    let stdlib = Path::new("/usr/lib").join(&version);
    s.import(&stdlib, &PYTHON_SKIP)?;
    let mut elves = vec![python.clone()];
    let dynload = stdlib.join("lib-dynload");
    for e in fs::read_dir(&dynload).into_iter().flatten().flatten() {
        elves.push(e.path());
    }
    let mut libs = BTreeSet::new();
    for elf in &elves {
        libs.extend(needed_libraries(elf));
    }
    for lib in &libs {
        s.import(lib, &[])?;
    }
    for d in [
        "tmp", "proc", "sys", "dev", "root", "run", "var/tmp", "etc", "home",
    ] {
        let p = staging.join(d);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    for d in ["tmp", "var/tmp"] {
        let p = staging.join(d);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", &p))?;
    }
    let etc = staging.join("etc");
    let files: [(&str, &str); 5] = [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
        ("hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n",
        ),
        (
            "ld.so.conf",
            "/usr/local/lib\n/usr/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n",
        ),
    ];
    for (name, text) in files {
        let p = etc.join(name);
        fs::write(&p, text).map_err(io_err("writing", &p))?;
    }
    run_tool(Command::new("ldconfig").arg("-r").arg(staging))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        assert_eq!(
            normalize(Path::new("/usr/lib64/../lib/x")),
            PathBuf::from("/usr/lib/x")
        );
        assert_eq!(normalize(Path::new("/../a/./b")), PathBuf::from("/a/b"));
    }

    #[test]
    fn tree_hash_sees_changes() {
        let d =
            std::env::temp_dir().join(format!("cordon-microvm-treehash-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("sub/f"), b"a").unwrap();
        let h1 = tree_hash(&d).unwrap();
        assert_eq!(h1, tree_hash(&d).unwrap());
        fs::write(d.join("sub/f"), b"ab").unwrap();
        let h2 = tree_hash(&d).unwrap();
        assert_ne!(h1, h2);
        fs::remove_dir_all(&d).unwrap();
    }
}
