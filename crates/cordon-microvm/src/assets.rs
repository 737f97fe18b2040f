//! cordon's microVM cache: the guest kernel (fetched from Debian, never installed), the
//! initramfs with the guest agent, and stale-file collection.
//!
//! Layout under the cache root (default `/var/cache/cordon/microvm`):
//! - `kernel/manifest`: package, version, sha256 of the .deb and of the vmlinux, release;
//! - `kernel/<release>/vmlinux` and `kernel/<release>/modules/` (the module tree);
//! - `initramfs/<key>.cpio`, keyed by the agent's and the kernel's hashes;
//! - `rootfs/…` (see [`crate::rootfs`]);
//! - `*.tmp-<pid>`: work in progress of process `<pid>`, removed by [`collect_garbage`] once
//!   that process is gone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::cpio::Archive;
use crate::kernel::{self, KernelError};
use crate::sys;

/// The guest agent, built by build.rs.
pub static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cordon-agent"));
pub const AGENT_SHA256: &str = env!("CORDON_AGENT_SHA256");

/// Modules the agent loads (their dependencies come along): virtio-mmio transport, the root
/// disk and the agent's serial port.
pub const GUEST_MODULES: [&str; 3] = ["virtio_mmio", "virtio_blk", "virtio_console"];

#[derive(Debug, Error)]
pub enum AssetError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("running {tool}: {why}")]
    Tool { tool: String, why: String },
    #[error("no guest kernel in the cache {0}: run `cordon microvm setup` first")]
    NoKernel(PathBuf),
    #[error("no Debian package linux-image-6.1.0-*-cloud-amd64-unsigned is known to apt")]
    NoKernelPackage,
    #[error("guest kernel")]
    Kernel(#[from] KernelError),
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AssetError {
    let path = path.to_path_buf();
    move |source| AssetError::Io { op, path, source }
}

/// Runs a host tool, returning its stdout; its stderr goes into the error.
pub(crate) fn run_tool(cmd: &mut Command) -> Result<String, AssetError> {
    let tool = format!("{:?}", cmd.get_program());
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| AssetError::Tool {
            tool: tool.clone(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(AssetError::Tool {
            tool,
            why: format!("{} ({last})", out.status),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut f = fs::File::open(path).map_err(io_err("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = io::Read::read(&mut f, &mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `data` to `path` through a temporary file and a rename: readers see all or nothing.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AssetError> {
    let tmp = tmp_path(path);
    fs::write(&tmp, data).map_err(io_err("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("renaming into place", path))
}

/// `path` with `.tmp-<pid>` appended: work in progress of this process.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// Reports progress of slow steps (setup prints them).
pub type Progress<'a> = &'a dyn Fn(&str);

/// The cache directory tree.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// The guest kernel as recorded in the cache.
#[derive(Debug, Clone)]
pub struct KernelAssets {
    pub package: String,
    pub version: String,
    pub release: String,
    pub deb_sha256: String,
    pub vmlinux_sha256: String,
    pub vmlinux: PathBuf,
    pub modules: PathBuf,
}

impl Cache {
    pub fn new(root: PathBuf) -> Self {
        Cache { root }
    }

    fn dir(&self, name: &str) -> Result<PathBuf, AssetError> {
        let d = self.root.join(name);
        fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        Ok(d)
    }

    fn kernel_manifest(&self) -> PathBuf {
        self.root.join("kernel/manifest")
    }

    /// The cached kernel, without touching the network (fast: reads one small file).
    pub fn kernel(&self) -> Result<KernelAssets, AssetError> {
        let manifest = self.kernel_manifest();
        let text =
            fs::read_to_string(&manifest).map_err(|_| AssetError::NoKernel(self.root.clone()))?;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .unwrap_or_default()
                .to_string()
        };
        let release = get("release");
        let dir = self.root.join("kernel").join(&release);
        let k = KernelAssets {
            package: get("package"),
            version: get("version"),
            deb_sha256: get("deb_sha256"),
            vmlinux_sha256: get("vmlinux_sha256"),
            vmlinux: dir.join("vmlinux"),
            modules: dir.join("modules"),
            release,
        };
        if k.release.is_empty() || !k.vmlinux.is_file() || !k.modules.is_dir() {
            return Err(AssetError::NoKernel(self.root.clone()));
        }
        Ok(k)
    }

    /// Fetches Debian's cloud kernel into the cache unless it is there already.
    pub fn ensure_kernel(&self, progress: Progress<'_>) -> Result<KernelAssets, AssetError> {
        if let Ok(k) = self.kernel() {
            progress(&format!(
                "guest kernel {} ({} {}) already cached",
                k.release, k.package, k.version
            ));
            return Ok(k);
        }
        let package = match std::env::var("CORDON_MICROVM_KERNEL_PACKAGE") {
            Ok(p) if !p.is_empty() => p,
            _ => newest_cloud_kernel(progress)?,
        };
        let kdir = self.dir("kernel")?;
        let work = tmp_path(&kdir.join("fetch"));
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).map_err(io_err("creating", &work))?;
        let result = self.fetch_kernel_into(&package, &work, &kdir, progress);
        let _ = fs::remove_dir_all(&work);
        result?;
        self.kernel()
    }

    fn fetch_kernel_into(
        &self,
        package: &str,
        work: &Path,
        kdir: &Path,
        progress: Progress<'_>,
    ) -> Result<(), AssetError> {
        progress(&format!("downloading {package} with apt-get download"));
        run_tool(Command::new("apt-get").current_dir(work).args([
            "download",
            "-q",
            "-o",
            "APT::Sandbox::User=root",
            package,
        ]))?;
        let deb = fs::read_dir(work)
            .map_err(io_err("listing", work))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| AssetError::Tool {
                tool: "apt-get download".into(),
                why: "no .deb file appeared".into(),
            })?;
        let deb_sha256 = sha256_file(&deb)?;
        let version = run_tool(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))?
            .trim()
            .to_string();
        progress(&format!("unpacking {} (dpkg -x)", deb.display()));
        let tree = work.join("tree");
        run_tool(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;
        let mods_root = tree.join("lib/modules");
        let release = fs::read_dir(&mods_root)
            .map_err(io_err("listing", &mods_root))?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .next()
            .ok_or(AssetError::Kernel(KernelError::MissingModule(
                "lib/modules/<release>".into(),
            )))?;
        let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
        progress(&format!("extracting vmlinux from {}", vmlinuz.display()));
        let bz = fs::read(&vmlinuz).map_err(io_err("reading", &vmlinuz))?;
        let vmlinux = kernel::extract_vmlinux(&bz)?;
        let vmlinux_sha256 = sha256_hex(&vmlinux);

        let dest = kdir.join(&release);
        let _ = fs::remove_dir_all(&dest);
        fs::create_dir_all(&dest).map_err(io_err("creating", &dest))?;
        write_atomic(&dest.join("vmlinux"), &vmlinux)?;
        let src_mods = mods_root.join(&release).join("kernel");
        fs::rename(&src_mods, dest.join("modules")).map_err(io_err("moving", &src_mods))?;
        let manifest = format!(
            "package={package}\nversion={version}\nrelease={release}\ndeb_sha256={deb_sha256}\nvmlinux_sha256={vmlinux_sha256}\n"
        );
        write_atomic(&self.kernel_manifest(), manifest.as_bytes())?;
        progress(&format!(
            "guest kernel {release} ready: vmlinux sha256 {vmlinux_sha256}, .deb sha256 {deb_sha256}"
        ));
        Ok(())
    }

    /// The initramfs for `kernel`: the agent as `/init`, `/dev/console`, the virtio modules.
    /// Cached under a name derived from the agent's and the kernel's hashes.
    pub fn initramfs(&self, kernel: &KernelAssets) -> Result<PathBuf, AssetError> {
        let key = sha256_hex(
            format!(
                "{AGENT_SHA256}\n{}\n{GUEST_MODULES:?}",
                kernel.vmlinux_sha256
            )
            .as_bytes(),
        );
        let path = self
            .root
            .join("initramfs")
            .join(format!("{}.cpio", &key[..24]));
        if path.is_file() {
            return Ok(path);
        }
        self.dir("initramfs")?;
        let index = kernel::index_modules(&kernel.modules)?;
        let order = kernel::load_order(&index, &GUEST_MODULES)?;
        let mut a = Archive::new();
        for d in ["dev", "proc", "sys", "newroot", "modules"] {
            a.dir(d, 0o755);
        }
        a.char_device("dev/console", 0o600, 5, 1);
        a.file("init", 0o755, AGENT);
        for (i, m) in order.iter().enumerate() {
            let data = fs::read(m).map_err(io_err("reading", m))?;
            let name = m.file_name().and_then(|n| n.to_str()).unwrap_or("m.ko");
            a.file(&format!("modules/{i:02}-{name}"), 0o644, &data);
        }
        write_atomic(&path, &a.finish())?;
        Ok(path)
    }
}

/// The newest `linux-image-6.1.0-N-cloud-amd64-unsigned` apt knows (after `apt-get update`
/// if it knows none).
fn newest_cloud_kernel(progress: Progress<'_>) -> Result<String, AssetError> {
    let search = || -> Result<Option<String>, AssetError> {
        let out = run_tool(Command::new("apt-cache").args([
            "search",
            "-n",
            r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
        ]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|name| {
                let n: u32 = name
                    .strip_prefix("linux-image-6.1.0-")?
                    .strip_suffix("-cloud-amd64-unsigned")?
                    .parse()
                    .ok()?;
                Some((n, name.to_string()))
            })
            .max()
            .map(|(_, name)| name))
    };
    if let Some(p) = search()? {
        return Ok(p);
    }
    progress("apt knows no cloud kernel yet: apt-get update");
    run_tool(Command::new("apt-get").args(["update", "-qq"]))?;
    search()?.ok_or(AssetError::NoKernelPackage)
}

/// Removes `*.tmp-<pid>` entries whose process is gone, under the cache root (two levels) and
/// under `extra` dirs. Returns what was removed.
pub fn collect_garbage(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut dirs: Vec<PathBuf> = roots.to_vec();
    for r in roots {
        if let Ok(entries) = fs::read_dir(r) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    for d in dirs {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.rsplit_once(".tmp-"))
                .and_then(|(_, pid)| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() || sys::process_alive(pid) {
                continue;
            }
            let p = e.path();
            let gone = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            if gone.is_ok() {
                removed.push(p);
            }
        }
    }
    removed
}
