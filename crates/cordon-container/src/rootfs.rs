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

use cordon_sandbox::RootfsSource;

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

/// Inputs of the filesystem setup, all resolved by the parent before the clone.
#[derive(Debug)]
pub struct RootfsPlan<'a> {
    /// Host directory the scratch tmpfs is mounted on (in the child's namespace only).
    pub scratch: &'a Path,
    pub source: &'a RootfsSource,
    /// User bind mounts (sources checked by the parent).
    pub mounts: &'a [cordon_sandbox::BindMount],
    pub tmp_bytes: u64,
    pub hostname: &'a str,
    pub uid: u32,
    pub gid: u32,
    pub workdir: &'a Path,
    pub userns: bool,
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
    plan: &'a RootfsPlan<'a>,
}

impl Builder<'_> {
    fn fs(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// Mounts a fresh filesystem at `dst` inside the root.
    fn mount_fs(
        &self,
        fstype: &str,
        dst: &str,
        flags: libc::c_ulong,
        data: &str,
    ) -> Result<(), SetupError> {
        let target =
            ensure_dir(self.fs(), Path::new(dst)).step(|| format!("creating mount point {dst}"))?;
        sys::mount(
            Some(fstype),
            &fd_path(target.as_fd()),
            Some(fstype),
            flags,
            Some(data),
        )
        .step(|| format!("mounting {fstype} on {dst}"))
    }

    /// Binds `src` (an open fd outside or inside the root) onto `dst`, then applies `attrs`.
    fn bind(
        &self,
        src: BorrowedFd<'_>,
        dst: &Path,
        is_dir: bool,
        attrs: u64,
    ) -> Result<(), SetupError> {
        let target = if is_dir {
            ensure_dir(self.fs(), dst)
        } else {
            ensure_file(self.fs(), dst)
        }
        .step(|| format!("creating mount point {}", dst.display()))?;
        sys::mount(
            Some(&fd_path(src).to_string_lossy()),
            &fd_path(target.as_fd()),
            None,
            libc::MS_BIND | libc::MS_REC,
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

    fn bind_host(&self, host: &Path, dst: &Path, attrs: u64) -> Result<(), SetupError> {
        let src = sys::openat(None, host, libc::O_PATH, 0)
            .step(|| format!("opening {}", host.display()))?;
        let is_dir = sys::fstat(src.as_fd())
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .step(|| format!("inspecting {}", host.display()))?;
        self.bind(src.as_fd(), dst, is_dir, attrs)
    }

    fn host_system(&self) -> Result<(), SetupError> {
        let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        let root = &self.root_path;
        self.bind_host(Path::new("/usr"), Path::new("/usr"), ro)?;
        for name in HOST_TOP_LEVEL {
            let host = Path::new("/").join(name);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target =
                        fs::read_link(&host).step(|| format!("reading {}", host.display()))?;
                    symlink(&target, root.join(name)).step(|| format!("linking /{name}"))?;
                }
                Ok(m) if m.is_dir() => self.bind_host(&host, &Path::new("/").join(name), ro)?,
                _ => {}
            }
        }
        let etc = root.join("etc");
        fs::create_dir_all(&etc).step(|| "creating /etc".into())?;
        let (uid, gid, host) = (self.plan.uid, self.plan.gid, self.plan.hostname);
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
                self.bind_host(&host, &Path::new("/etc").join(&name), ro)?;
            }
        }
        for dir in ["root", "run", "var"] {
            fs::create_dir_all(root.join(dir)).step(|| format!("creating /{dir}"))?;
        }
        symlink("/tmp", root.join("var/tmp")).step(|| "linking /var/tmp".into())?;
        Ok(())
    }

    fn dev(&self) -> Result<(), SetupError> {
        self.mount_fs(
            "tmpfs",
            "/dev",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "mode=0755,size=64k",
        )?;
        let dev = self.root_path.join("dev");
        for name in DEVICES {
            let host = Path::new("/dev").join(name);
            if self.plan.userns {
                // mknod is not allowed in a user namespace; share the host's nodes instead.
                self.bind_host(&host, &host, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)?;
            } else {
                let st = fs::metadata(&host).step(|| format!("inspecting {}", host.display()))?;
                sys::mknod(&dev.join(name), 0o666 | libc::S_IFCHR, st.rdev())
                    .step(|| format!("creating /dev/{name}"))?;
            }
        }
        let pts_opts = if self.plan.userns {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        };
        self.mount_fs(
            "devpts",
            "/dev/pts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            pts_opts,
        )?;
        self.mount_fs(
            "tmpfs",
            "/dev/shm",
            flags_nosuid_nodev() | libc::MS_NOEXEC,
            "mode=1777,size=65536k",
        )?;
        for (name, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            symlink(target, dev.join(name)).step(|| format!("linking /dev/{name}"))?;
        }
        Ok(())
    }

    fn proc_and_sys(&self) -> Result<(), SetupError> {
        self.mount_fs("proc", "/proc", flags_nosuid_nodev() | libc::MS_NOEXEC, "")?;
        let null = reopen(self.fs(), Path::new("/dev/null"))
            .step(|| "opening the sandbox's /dev/null".into())?;
        let ro = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
        for name in MASKED_PROC_FILES {
            let path = Path::new("/proc").join(name);
            if reopen(self.fs(), &path).is_ok() {
                self.bind(null.as_fd(), &path, false, ro)?;
            }
        }
        for name in MASKED_PROC_DIRS {
            let path = format!("/proc/{name}");
            if reopen(self.fs(), Path::new(&path)).is_ok() {
                self.mount_fs(
                    "tmpfs",
                    &path,
                    libc::MS_RDONLY | flags_nosuid_nodev() | libc::MS_NOEXEC,
                    "size=4k,mode=0555",
                )?;
            }
        }
        for name in READONLY_PROC {
            let path = Path::new("/proc").join(name);
            if let Ok(fd) = reopen(self.fs(), &path) {
                self.bind(fd.as_fd(), &path, true, ro)?;
            }
        }
        self.mount_fs(
            "sysfs",
            "/sys",
            libc::MS_RDONLY | flags_nosuid_nodev() | libc::MS_NOEXEC,
            "",
        )?;
        if reopen(self.fs(), Path::new("/sys/firmware")).is_ok() {
            self.mount_fs(
                "tmpfs",
                "/sys/firmware",
                libc::MS_RDONLY | flags_nosuid_nodev() | libc::MS_NOEXEC,
                "size=4k,mode=0555",
            )?;
        }
        Ok(())
    }

    fn tmp(&self) -> Result<(), SetupError> {
        let data = format!("mode=1777,size={}", self.plan.tmp_bytes);
        self.mount_fs("tmpfs", "/tmp", flags_nosuid_nodev(), &data)
    }

    fn user_mounts(&self) -> Result<(), SetupError> {
        // Sources are opened again here, inside the new mount namespace: a bind mount's source
        // must belong to the caller's namespace, and fds the parent opened belong to the host's.
        for m in self.plan.mounts {
            let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
            if m.readonly {
                attrs |= MOUNT_ATTR_RDONLY;
            }
            self.bind_host(&m.source, &m.destination, attrs)?;
        }
        Ok(())
    }
}

/// Builds the sandbox's root and pivots into it. On return the process's `/` is the sandbox
/// root and the host's tree is unreachable.
pub fn enter(plan: &RootfsPlan<'_>) -> Result<(), SetupError> {
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .step(|| "making the mount namespace private".into())?;
    let scratch_size = match plan.source {
        RootfsSource::HostSystem => 4 << 20,
        RootfsSource::Dir(_) => plan.tmp_bytes,
    };
    sys::mount(
        Some("tmpfs"),
        plan.scratch,
        Some("tmpfs"),
        flags_nosuid_nodev(),
        Some(&format!("mode=0755,size={scratch_size}")),
    )
    .step(|| format!("mounting the scratch tmpfs on {}", plan.scratch.display()))?;
    let root_path = plan.scratch.join("root");
    fs::create_dir(&root_path).step(|| "creating the root directory".into())?;
    match plan.source {
        RootfsSource::Dir(dir) => {
            for d in ["upper", "work"] {
                fs::create_dir(plan.scratch.join(d))
                    .step(|| format!("creating the overlay {d} directory"))?;
            }
            // By path: fds the parent opened belong to the host's mount namespace. Characters
            // that overlayfs's option parser treats specially are refused up front.
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
                plan.scratch.join("upper").display(),
                plan.scratch.join("work").display()
            );
            if plan.userns {
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
        }
        _ => sys::mount(
            Some(&root_path.to_string_lossy()),
            &root_path,
            None,
            libc::MS_BIND,
            None,
        )
        .step(|| "binding the root directory".into())?,
    }
    let root = sys::openat(None, &root_path, libc::O_PATH | libc::O_DIRECTORY, 0)
        .step(|| "opening the new root".into())?;
    let b = Builder {
        root,
        root_path: root_path.clone(),
        plan,
    };
    if matches!(plan.source, RootfsSource::HostSystem) {
        b.host_system()?;
    }
    b.dev()?;
    b.proc_and_sys()?;
    b.tmp()?;
    b.user_mounts()?;
    ensure_dir(b.fs(), plan.workdir)
        .step(|| format!("creating the workdir {}", plan.workdir.display()))?;
    if matches!(plan.source, RootfsSource::HostSystem) {
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
