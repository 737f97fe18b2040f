//! The sandbox's filesystem view, built in the child's private mount namespace and entered with
//! pivot_root.
//!
//! Every path inside the new root is resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` and mounted on through `/proc/self/fd/N`, so a symlink planted in a
//! user's rootfs (e.g. `/proc -> /etc`) can never redirect a mount onto the host.

use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use crate::sys::{
    self, fd_path, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
    RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS,
};

/// A failed step of the filesystem setup (reported from the child to the parent as text).
#[derive(Debug)]
pub struct SetupError {
    pub step: String,
    pub source: io::Error,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

pub(crate) trait Context<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, SetupError>;
}

impl<T> Context<T> for io::Result<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, SetupError> {
        self.map_err(|source| SetupError {
            step: step(),
            source,
        })
    }
}

/// /proc entries hidden behind a read-only /dev/null (files) or an empty read-only tmpfs (dirs).
const MASKED_PROC_FILES: &[&str] = &[
    "kcore",
    "kallsyms",
    "sysrq-trigger",
    "keys",
    "key-users",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "timer_stats",
    "kpagecount",
    "kpageflags",
    "kpagecgroup",
    "config.gz",
];
const MASKED_PROC_DIRS: &[&str] = &["acpi", "scsi", "asound", "driver"];
/// /proc subtrees left visible but read-only.
const READONLY_PROC: &[&str] = &["sys", "irq", "bus", "fs"];
/// Device nodes bound from the host into the sandbox's /dev.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Host /etc entries the default rootfs shares read-only (directories) or copies (files).
const ETC_SHARED_DIRS: &[&str] = &["alternatives", "ssl"];
const ETC_COPIED_FILES: &[&str] = &[
    "ld.so.cache",
    "debian_version",
    "mime.types",
    "protocols",
    "services",
];
/// Top-level host entries the default rootfs mirrors (symlinks copied, directories bound).
const HOST_TOP_LEVEL: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Where the container's root directory comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// An empty directory in the scratch tmpfs (filled by the mount operations).
    Scratch,
    /// An overlay: the directory is the read-only lower layer, writes go to the scratch tmpfs.
    Overlay(PathBuf),
    /// The directory itself, bound onto itself (the OCI bundle's rootfs).
    Bind(PathBuf),
}

/// One step of building the container's filesystem, applied in order. Destinations are paths
/// inside the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// cordon's default view of the host: /usr and the /bin, /lib*, /sbin links read-only, and a
    /// minimal synthesized /etc.
    HostSystem {
        uid: u32,
        gid: u32,
        hostname: String,
    },
    /// A fresh filesystem (tmpfs, proc, sysfs, devpts, mqueue, ...).
    Fs {
        fstype: String,
        source: String,
        dest: PathBuf,
        flags: libc::c_ulong,
        data: String,
    },
    /// A bind mount of a host path (opened inside the container's mount namespace), then
    /// `attrs` (MOUNT_ATTR_*) applied recursively.
    Bind {
        source: PathBuf,
        dest: PathBuf,
        recursive: bool,
        attrs: u64,
    },
    /// The standard device nodes (null zero full random urandom tty) and /dev links, in a /dev
    /// that is already mounted.
    DefaultDevices,
    /// A device node (`kind` is S_IFCHR, S_IFBLK or S_IFIFO).
    Device {
        dest: PathBuf,
        kind: libc::mode_t,
        major: u32,
        minor: u32,
        mode: libc::mode_t,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: PathBuf,
        dest: PathBuf,
    },
    /// Hide a path: a file behind a read-only /dev/null, a directory behind an empty read-only
    /// tmpfs. Missing paths are skipped.
    Mask(PathBuf),
    /// Make a path (and everything below it) read-only. Missing paths are skipped.
    ReadOnly(PathBuf),
    /// Create a directory (and its parents).
    Mkdir(PathBuf),
}

/// The whole filesystem recipe of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPlan {
    pub source: RootSource,
    /// Size of the scratch tmpfs (the overlay's upper layer, or the Scratch root).
    pub scratch_bytes: u64,
    pub ops: Vec<MountOp>,
    /// Remount the root read-only once every operation is done.
    pub readonly: bool,
}

impl RootPlan {
    /// cordon's standard /dev, /proc, /sys and /tmp, with the masks and read-only paths.
    pub fn standard_ops(tmp_bytes: u64) -> Vec<MountOp> {
        let fs = |fstype: &str, dest: &str, flags: libc::c_ulong, data: &str| MountOp::Fs {
            fstype: fstype.into(),
            source: fstype.into(),
            dest: dest.into(),
            flags,
            data: data.into(),
        };
        let nsd = libc::MS_NOSUID | libc::MS_NODEV;
        let mut ops = vec![
            fs(
                "tmpfs",
                "/dev",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                "mode=0755,size=64k",
            ),
            MountOp::DefaultDevices,
            fs(
                "devpts",
                "/dev/pts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620",
            ),
            fs(
                "tmpfs",
                "/dev/shm",
                nsd | libc::MS_NOEXEC,
                "mode=1777,size=65536k",
            ),
            fs("proc", "/proc", nsd | libc::MS_NOEXEC, ""),
        ];
        ops.extend(
            MASKED_PROC_FILES
                .iter()
                .chain(MASKED_PROC_DIRS)
                .map(|n| MountOp::Mask(Path::new("/proc").join(n))),
        );
        ops.extend(
            READONLY_PROC
                .iter()
                .map(|n| MountOp::ReadOnly(Path::new("/proc").join(n))),
        );
        ops.push(fs(
            "sysfs",
            "/sys",
            libc::MS_RDONLY | nsd | libc::MS_NOEXEC,
            "",
        ));
        ops.push(MountOp::Mask("/sys/firmware".into()));
        ops.push(fs(
            "tmpfs",
            "/tmp",
            nsd,
            &format!("mode=1777,size={tmp_bytes}"),
        ));
        ops
    }
}

fn flags_nosuid_nodev() -> libc::c_ulong {
    libc::MS_NOSUID | libc::MS_NODEV
}

/// Resolves `path` inside `root`, creating missing directories (never following a symlink out
/// of the root). Returns an O_PATH fd of the directory.
fn ensure_dir(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    // Fast paths: the directory exists, or only its last component is missing.
    match sys::openat2(root, rel, libc::O_PATH | libc::O_DIRECTORY, resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    if let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) {
        let parent_path = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        if let Ok(dir) = sys::openat2(root, parent_path, libc::O_PATH | libc::O_DIRECTORY, resolve)
        {
            match sys::mkdirat(dir.as_fd(), Path::new(name), 0o755) {
                Ok(()) => {
                    return sys::openat2(root, rel, libc::O_PATH | libc::O_DIRECTORY, resolve)
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let mut cur = sys::openat2(
        root,
        Path::new("."),
        libc::O_PATH | libc::O_DIRECTORY,
        resolve,
    )?;
    let mut so_far = PathBuf::new();
    for comp in rel.components() {
        so_far.push(comp);
        cur = match sys::openat2(root, &so_far, libc::O_PATH | libc::O_DIRECTORY, resolve) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                match sys::mkdirat(cur.as_fd(), Path::new(comp.as_os_str()), 0o755) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                sys::openat2(root, &so_far, libc::O_PATH | libc::O_DIRECTORY, resolve)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// Like [`ensure_dir`] for a file mount point: creates an empty file if nothing is there.
fn ensure_file(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    let resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    match sys::openat2(root, path, libc::O_PATH, resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let parent = ensure_dir(root, path.parent().unwrap_or(Path::new("/")))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mount point has no name"))?;
    drop(sys::openat(
        Some(parent.as_fd()),
        Path::new(name),
        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o644,
    )?);
    sys::openat2(root, path, libc::O_PATH, resolve)
}

fn reopen(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    sys::openat2(
        root,
        path,
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

struct Builder<'a> {
    root: OwnedFd,
    root_path: PathBuf,
    userns: bool,
    _plan: &'a RootPlan,
}

impl Builder<'_> {
    fn fs(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Mounts a fresh filesystem at `dst` inside the root.
    fn mount_fs(
        &self,
        fstype: &str,
        source: &str,
        dst: &Path,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), SetupError> {
        let target = ensure_dir(self.fs(), dst)
            .step(|| format!("creating mount point {}", dst.display()))?;
        sys::mount(
            Some(source),
            &fd_path(target.as_fd()),
            Some(fstype),
            flags,
            Some(data),
        )
        .step(|| format!("mounting {fstype} on {}", dst.display()))
    }

    /// Binds `src` (an open fd in this mount namespace) onto `dst`, then applies `attrs`.
    fn bind(
        &self,
        src: BorrowedFd<'_>,
        dst: &Path,
        is_dir: bool,
        recursive: bool,
        attrs: u64,
    ) -> Result<(), SetupError> {
        let target = if is_dir {
            ensure_dir(self.fs(), dst)
        } else {
            ensure_file(self.fs(), dst)
        }
        .step(|| format!("creating mount point {}", dst.display()))?;
        let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
        sys::mount(
            Some(&fd_path(src).to_string_lossy()),
            &fd_path(target.as_fd()),
            None,
            flags,
            None,
        )
        .step(|| format!("bind-mounting onto {}", dst.display()))?;
        if attrs != 0 {
            let top = reopen(self.fs(), dst).step(|| format!("reopening {}", dst.display()))?;
            sys::mount_setattr_recursive(top.as_fd(), attrs)
                .step(|| format!("restricting the mount at {}", dst.display()))?;
        }
        Ok(())
    }

    fn bind_host(
        &self,
        host: &Path,
        dst: &Path,
        recursive: bool,
        attrs: u64,
    ) -> Result<(), SetupError> {
        let src = sys::openat(None, host, libc::O_PATH, 0)
            .step(|| format!("opening {}", host.display()))?;
        let is_dir = sys::fstat(src.as_fd())
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .step(|| format!("inspecting {}", host.display()))?;
        self.bind(src.as_fd(), dst, is_dir, recursive, attrs)
    }

    fn apply(&self, op: &MountOp) -> Result<(), SetupError> {
        let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        match op {
            MountOp::HostSystem { uid, gid, hostname } => self.host_system(*uid, *gid, hostname),
            MountOp::Fs {
                fstype,
                source,
                dest,
                flags,
                data,
            } => {
                let mut data = data.clone();
                if fstype == "devpts" && !self.userns && !data.contains("gid=") {
                    data.push_str(",gid=5");
                }
                self.mount_fs(fstype, source, dest, *flags, &data)
            }
            MountOp::Bind {
                source,
                dest,
                recursive,
                attrs,
            } => self.bind_host(source, dest, *recursive, *attrs),
            MountOp::DefaultDevices => self.default_devices(),
            MountOp::Device {
                dest,
                kind,
                major,
                minor,
                mode,
                uid,
                gid,
            } => {
                let parent = ensure_dir(self.fs(), dest.parent().unwrap_or(Path::new("/")))
                    .step(|| format!("creating the directory of {}", dest.display()))?;
                let name = dest.file_name().map(Path::new).unwrap_or(Path::new("."));
                let path = fd_path(parent.as_fd()).join(name);
                sys::mknod(&path, (mode & 0o7777) | kind, libc::makedev(*major, *minor))
                    .step(|| format!("creating the device {}", dest.display()))?;
                std::os::unix::fs::chown(&path, Some(*uid), Some(*gid))
                    .step(|| format!("chowning {}", dest.display()))
            }
            MountOp::Symlink { target, dest } => {
                let parent = ensure_dir(self.fs(), dest.parent().unwrap_or(Path::new("/")))
                    .step(|| format!("creating the directory of {}", dest.display()))?;
                let name = dest.file_name().map(Path::new).unwrap_or(Path::new("."));
                match symlink(target, fd_path(parent.as_fd()).join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
                    _ => Ok(()),
                }
                .step(|| format!("linking {}", dest.display()))
            }
            MountOp::Mask(path) => {
                let Ok(fd) = reopen(self.fs(), path) else {
                    return Ok(());
                };
                let is_dir = sys::fstat(fd.as_fd())
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .unwrap_or(false);
                if is_dir {
                    self.mount_fs(
                        "tmpfs",
                        "tmpfs",
                        path,
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        "size=4k,mode=0555",
                    )
                } else {
                    let null = reopen(self.fs(), Path::new("/dev/null"))
                        .step(|| "opening the container's /dev/null".into())?;
                    self.bind(null.as_fd(), path, false, false, ro)
                }
            }
            MountOp::ReadOnly(path) => {
                let Ok(fd) = reopen(self.fs(), path) else {
                    return Ok(());
                };
                let is_dir = sys::fstat(fd.as_fd())
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .unwrap_or(false);
                self.bind(fd.as_fd(), path, is_dir, true, ro)
            }
            MountOp::Mkdir(path) => ensure_dir(self.fs(), path)
                .map(drop)
                .step(|| format!("creating {}", path.display())),
        }
    }

    fn default_devices(&self) -> Result<(), SetupError> {
        let dev = self.root_path.join("dev");
        for name in DEVICES {
            let host = Path::new("/dev").join(name);
            if self.userns {
                // mknod is not allowed in a user namespace; share the host's nodes instead.
                self.bind_host(&host, &host, false, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
            } else {
                let st = fs::metadata(&host).step(|| format!("inspecting {}", host.display()))?;
                sys::mknod(&dev.join(name), 0o666 | libc::S_IFCHR, st.rdev())
                    .step(|| format!("creating /dev/{name}"))?;
            }
        }
        for (name, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            match symlink(target, dev.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(e).step(|| format!("linking /dev/{name}"))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn host_system(&self, uid: u32, gid: u32, host: &str) -> Result<(), SetupError> {
        let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        let root = &self.root_path;
        self.bind_host(Path::new("/usr"), Path::new("/usr"), true, ro)?;
        for name in HOST_TOP_LEVEL {
            let host = Path::new("/").join(name);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target =
                        fs::read_link(&host).step(|| format!("reading {}", host.display()))?;
                    symlink(&target, root.join(name)).step(|| format!("linking /{name}"))?;
                }
                Ok(m) if m.is_dir() => {
                    self.bind_host(&host, &Path::new("/").join(name), true, ro)?
                }
                _ => {}
            }
        }
        let etc = root.join("etc");
        fs::create_dir_all(&etc).step(|| "creating /etc".into())?;
        let mut passwd = String::from(
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        );
        if uid != 0 && uid != 65534 {
            passwd.push_str(&format!("user:x:{uid}:{gid}:sandbox user:/tmp:/bin/sh\n"));
        }
        let mut group = String::from("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n");
        if gid != 0 && gid != 5 && gid != 65534 {
            group.push_str(&format!("user:x:{gid}:\n"));
        }
        let files: [(&str, String); 6] = [
            ("passwd", passwd),
            ("group", group),
            ("hostname", format!("{host}\n")),
            (
                "hosts",
                format!("127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t{host}\n"),
            ),
            ("resolv.conf", String::new()),
            (
                "nsswitch.conf",
                "passwd: files\ngroup: files\nhosts: files\n".into(),
            ),
        ];
        for (name, content) in files {
            fs::write(etc.join(name), content).step(|| format!("writing /etc/{name}"))?;
        }
        for name in ETC_COPIED_FILES {
            let host = Path::new("/etc").join(name);
            if host.is_file() {
                fs::copy(&host, etc.join(name)).step(|| format!("copying {}", host.display()))?;
            }
        }
        // Symlinks into /usr (localtime, os-release) keep working as they are.
        for name in ["localtime", "os-release"] {
            let host = Path::new("/etc").join(name);
            if let Ok(target) = fs::read_link(&host) {
                symlink(&target, etc.join(name)).step(|| format!("linking /etc/{name}"))?;
            }
        }
        let mut shared: Vec<String> = ETC_SHARED_DIRS.iter().map(|s| s.to_string()).collect();
        if let Ok(entries) = fs::read_dir("/etc") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("python3") {
                    shared.push(name);
                }
            }
        }
        for name in shared {
            let host = Path::new("/etc").join(&name);
            if host.is_dir() {
                self.bind_host(&host, &Path::new("/etc").join(&name), true, ro)?;
            }
        }
        for dir in ["root", "run", "var"] {
            fs::create_dir_all(root.join(dir)).step(|| format!("creating /{dir}"))?;
        }
        symlink("/tmp", root.join("var/tmp")).step(|| "linking /var/tmp".into())?;
        Ok(())
    }
}

/// Builds the container's root in a private mount namespace and pivots into it. On return the
/// process's `/` is the new root and the host's tree is unreachable.
///
/// `scratch` is a host directory the scratch tmpfs is mounted on (in this namespace only).
/// `before_pivot` runs once every mount is in place (the OCI createContainer hook point).
pub fn enter(
    plan: &RootPlan,
    scratch: &Path,
    userns: bool,
    before_pivot: &mut dyn FnMut() -> Result<(), SetupError>,
) -> Result<(), SetupError> {
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .step(|| "making the mount namespace private".into())?;
    let root_path = match &plan.source {
        RootSource::Bind(dir) => {
            sys::mount(
                Some(&dir.to_string_lossy()),
                dir,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .step(|| format!("binding the root {}", dir.display()))?;
            dir.clone()
        }
        source => {
            sys::mount(
                Some("tmpfs"),
                scratch,
                Some("tmpfs"),
                flags_nosuid_nodev(),
                Some(&format!("mode=0755,size={}", plan.scratch_bytes)),
            )
            .step(|| format!("mounting the scratch tmpfs on {}", scratch.display()))?;
            let root_path = scratch.join("root");
            fs::create_dir(&root_path).step(|| "creating the root directory".into())?;
            if let RootSource::Overlay(dir) = source {
                for d in ["upper", "work"] {
                    fs::create_dir(scratch.join(d))
                        .step(|| format!("creating the overlay {d} directory"))?;
                }
                // By path: fds opened by the parent belong to the host's mount namespace.
                // Characters that overlayfs's option parser treats specially are refused.
                let lower = dir.to_string_lossy();
                if lower.contains([',', ':', '\\']) {
                    return Err(SetupError {
                        step: format!("using {} as an overlay lower directory", dir.display()),
                        source: io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "path contains ',', ':' or '\\'",
                        ),
                    });
                }
                let mut data = format!(
                    "lowerdir={lower},upperdir={},workdir={}",
                    scratch.join("upper").display(),
                    scratch.join("work").display()
                );
                if userns {
                    data.push_str(",userxattr");
                }
                sys::mount(
                    Some("overlay"),
                    &root_path,
                    Some("overlay"),
                    libc::MS_NOSUID,
                    Some(&data),
                )
                .step(|| format!("mounting an overlay of {}", dir.display()))?;
            } else {
                sys::mount(
                    Some(&root_path.to_string_lossy()),
                    &root_path,
                    None,
                    libc::MS_BIND,
                    None,
                )
                .step(|| "binding the root directory".into())?;
            }
            root_path
        }
    };
    let root = sys::openat(None, &root_path, libc::O_PATH | libc::O_DIRECTORY, 0)
        .step(|| "opening the new root".into())?;
    let b = Builder {
        root,
        root_path: root_path.clone(),
        userns,
        _plan: plan,
    };
    for op in &plan.ops {
        b.apply(op)?;
    }
    before_pivot()?;
    if plan.readonly {
        sys::mount(
            None,
            &root_path,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags_nosuid_nodev(),
            None,
        )
        .step(|| "making the root read-only".into())?;
    }
    drop(b);
    std::env::set_current_dir(&root_path).step(|| "entering the new root".into())?;
    sys::pivot_root(Path::new("."), Path::new(".")).step(|| "pivot_root".into())?;
    sys::umount_detach(Path::new(".")).step(|| "detaching the old root".into())?;
    std::env::set_current_dir("/").step(|| "changing to /".into())?;
    Ok(())
}
