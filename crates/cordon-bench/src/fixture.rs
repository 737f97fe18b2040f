//! The temporary world a bench run measures in, and its removal.
//!
//! Under `$TMPDIR/cordon-bench.<pid>.<n>/`: a copy of the benchmark program (`bin/`), a root
//! filesystem skeleton for the OCI peers (`rootfs/`: the /bin, /lib*, /sbin links into usr, a
//! minimal /etc, empty mount points; the runtimes mount /usr and the rest themselves), the
//! same skeleton with host mounts for chroot (`chroot/`: /usr and the shared /etc entries bound
//! read-only, a 512 MiB tmpfs on /tmp that also serves native runs), one OCI bundle per
//! workload (`bundles/`), the OCI runtimes' state roots (`state/`) and cordon's seccomp filter
//! compiled for bwrap (`seccomp.bpf`).
//!
//! Dropping the [`Fixture`] deletes leftover containers, unmounts everything it mounted and
//! removes the directory; [`reap_stale`] does the same for fixtures of bench runs that died.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cordon_container::seccomp_policy::workload_policy;
use cordon_sandbox::Limits;
use serde_json::Value;
use thiserror::Error;

use crate::oci::{self, BundleSpec, BENCH_DIR_IN_SANDBOX};
use crate::runtime::Workload;
use crate::sys;

/// Building the fixture failed.
#[derive(Debug, Error)]
pub enum FixtureError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FixtureError {
    let path = path.to_path_buf();
    move |source| FixtureError::Io { op, path, source }
}

const PREFIX: &str = "cordon-bench.";
const ETC_FILES_COPIED: &[&str] = &[
    "ld.so.cache",
    "debian_version",
    "mime.types",
    "protocols",
    "services",
];
const ETC_DIRS_SHARED: &[&str] = &["alternatives", "ssl"];

/// An OCI runtime's state root, with what it takes to delete leftover containers in it.
#[derive(Debug, Clone)]
pub(crate) struct StateRoot {
    pub bin: PathBuf,
    pub root: PathBuf,
    /// Arguments before the subcommand besides `--root`.
    pub global_args: Vec<String>,
    /// Run the runtime in a mount namespace without this mount (crun on hybrid hosts).
    pub hide_mount: Option<PathBuf>,
}

impl StateRoot {
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root).args(&self.global_args);
        cmd.stdin(Stdio::null()).stderr(Stdio::null());
        if let Some(hide) = &self.hide_mount {
            let _ = sys::exec_without_mount(&mut cmd, hide);
        }
        cmd
    }

    /// Force-deletes every container the runtime still lists; returns their ids.
    pub(crate) fn reap(&self) -> Vec<String> {
        if !self.root.is_dir() {
            return Vec::new();
        }
        let Ok(out) = self.command().args(["list", "--quiet"]).output() else {
            return Vec::new();
        };
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "ID")
            .map(String::from)
            .collect();
        for id in &ids {
            let _ = self
                .command()
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .status();
        }
        ids
    }
}

/// Everything the runtimes share during a bench run; removed on drop.
#[derive(Debug)]
pub(crate) struct Fixture {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub chroot: PathBuf,
    /// Host directory holding the benchmark program; mounted at /opt/cordon-bench.
    pub bench_dir: PathBuf,
    /// The benchmark program on the host (for native runs).
    pub bench_host: PathBuf,
    /// A tmpfs on the host for native runs (the chroot's /tmp).
    pub native_tmp: PathBuf,
    /// Names under /etc shared read-only from the host, as cordon's default rootfs does.
    pub etc_shared: Vec<String>,
    /// cordon's workload seccomp filter as raw BPF, for `bwrap --seccomp`.
    pub seccomp_bpf: PathBuf,
    /// The cgroup2 mount crun has to be kept from seeing (hybrid hosts).
    pub cgroup2_hybrid: Option<PathBuf>,
    /// stdout and stderr of the current measured run.
    pub run_out: PathBuf,
    pub run_err: PathBuf,
    /// Where idle sandboxes' stderr goes.
    pub idle_log: PathBuf,
    bundles: Vec<(&'static str, PathBuf)>,
    mounts: Vec<PathBuf>,
    state_roots: Vec<StateRoot>,
    /// The cordon binary, when a cordon process had to be killed (what its sandbox leaves,
    /// cgroups or a microVM's work files, is then for `cordon gc` and `cordon microvm gc`).
    pub cordon_gc: Option<PathBuf>,
}

fn etc_shared_names() -> Vec<String> {
    let mut names: Vec<String> = ETC_DIRS_SHARED.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = fs::read_dir("/etc") {
        let mut py: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("python3"))
            .collect();
        py.sort();
        names.extend(py);
    }
    names
        .into_iter()
        .filter(|n| Path::new("/etc").join(n).is_dir())
        .collect()
}

/// A root skeleton: links into usr, /etc files, empty mount points.
fn skeleton(root: &Path, etc_shared: &[String]) -> Result<(), FixtureError> {
    let dirs = [
        "usr", "etc", "proc", "dev", "sys", "tmp", "root", "run", "var", "opt",
    ];
    for d in dirs {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    let bench = root.join(BENCH_DIR_IN_SANDBOX.trim_start_matches('/'));
    fs::create_dir_all(&bench).map_err(io_err("creating", &bench))?;
    let p = root.join("tmp");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", &p))?;
    for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(name);
        if let Ok(target) = fs::read_link(&host) {
            let p = root.join(name);
            symlink(&target, &p).map_err(io_err("linking", &p))?;
        }
    }
    let p = root.join("var/tmp");
    symlink("/tmp", &p).map_err(io_err("linking", &p))?;
    let etc = root.join("etc");
    let files: [(&str, &str); 6] = [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ("group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"),
        ("hostname", "cordon\n"),
        ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tcordon\n"),
        ("resolv.conf", ""),
        ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
    ];
    for (name, content) in files {
        let p = etc.join(name);
        fs::write(&p, content).map_err(io_err("writing", &p))?;
    }
    for name in ETC_FILES_COPIED {
        let host = Path::new("/etc").join(name);
        if host.is_file() {
            let p = etc.join(name);
            fs::copy(&host, &p).map_err(io_err("copying to", &p))?;
        }
    }
    for name in ["localtime", "os-release"] {
        if let Ok(target) = fs::read_link(Path::new("/etc").join(name)) {
            let p = etc.join(name);
            symlink(&target, &p).map_err(io_err("linking", &p))?;
        }
    }
    for name in etc_shared {
        let p = etc.join(name);
        fs::create_dir_all(&p).map_err(io_err("creating", &p))?;
    }
    Ok(())
}

/// The mount points under `dir` in this process's mount namespace, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(dir) && p != dir)
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(p: &str) -> String {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mount of a hybrid host (v1 controllers plus cgroup2 at .../unified).
pub(crate) fn hybrid_cgroup2() -> Option<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let point = pre.split(' ').nth(4)?;
        (post.starts_with("cgroup2 ") && point != "/sys/fs/cgroup")
            .then(|| PathBuf::from(unescape_mount_path(point)))
    })
}

impl Fixture {
    /// Builds the fixture for `workloads`, with `bench_src` copied in.
    pub(crate) fn new(bench_src: &Path, workloads: &[Workload]) -> Result<Fixture, FixtureError> {
        let base = std::env::temp_dir();
        let mut n = 0u32;
        let dir = loop {
            let d = base.join(format!("{PREFIX}{}.{n}", std::process::id()));
            match fs::create_dir(&d) {
                Ok(()) => break d,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(io_err("creating", &d)(e)),
            }
        };
        let mut fx = Fixture {
            rootfs: dir.join("rootfs"),
            chroot: dir.join("chroot"),
            bench_dir: dir.join("bin"),
            bench_host: dir.join("bin/cordon-syscall-bench"),
            native_tmp: dir.join("chroot/tmp"),
            etc_shared: etc_shared_names(),
            seccomp_bpf: dir.join("seccomp.bpf"),
            cgroup2_hybrid: hybrid_cgroup2(),
            run_out: dir.join("run.out"),
            run_err: dir.join("run.err"),
            idle_log: dir.join("idle.log"),
            bundles: Vec::new(),
            mounts: Vec::new(),
            state_roots: Vec::new(),
            cordon_gc: None,
            dir,
        };
        // From here on, dropping `fx` undoes whatever was done.
        fx.populate(bench_src, workloads)?;
        Ok(fx)
    }

    fn populate(&mut self, bench_src: &Path, workloads: &[Workload]) -> Result<(), FixtureError> {
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &self.dir))?;
        fs::create_dir_all(&self.bench_dir).map_err(io_err("creating", &self.bench_dir))?;
        fs::copy(bench_src, &self.bench_host).map_err(io_err("copying to", &self.bench_host))?;
        fs::write(&self.seccomp_bpf, workload_policy().compile_bytes())
            .map_err(io_err("writing", &self.seccomp_bpf))?;
        skeleton(&self.rootfs, &self.etc_shared)?;
        skeleton(&self.chroot, &self.etc_shared)?;
        // The chroot peer cannot mount anything itself: give its root the same view now.
        let mut binds: Vec<(PathBuf, PathBuf)> =
            vec![(PathBuf::from("/usr"), self.chroot.join("usr"))];
        for name in &self.etc_shared {
            binds.push((
                Path::new("/etc").join(name),
                self.chroot.join("etc").join(name),
            ));
        }
        binds.push((
            self.bench_dir.clone(),
            self.chroot
                .join(BENCH_DIR_IN_SANDBOX.trim_start_matches('/')),
        ));
        for (src, dst) in binds {
            sys::bind_mount_ro(&src, &dst).map_err(io_err("bind-mounting onto", &dst))?;
            self.mounts.push(dst);
        }
        let tmp = self.native_tmp.clone();
        sys::mount_tmpfs(&tmp, Limits::DEFAULT_TMP).map_err(io_err("mounting a tmpfs on", &tmp))?;
        self.mounts.push(tmp);

        let seccomp = oci::seccomp_profile();
        for w in workloads {
            let argv = w.argv(
                &format!("{BENCH_DIR_IN_SANDBOX}/cordon-syscall-bench"),
                "/tmp",
            );
            self.write_bundle(w.key(), &argv, Some(&seccomp))?;
        }
        Ok(())
    }

    fn write_bundle(
        &mut self,
        key: &'static str,
        argv: &[String],
        seccomp: Option<&Value>,
    ) -> Result<(), FixtureError> {
        let dir = self.dir.join("bundles").join(key);
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let config = oci::config(&BundleSpec {
            argv,
            rootfs: &self.rootfs,
            bench_dir: &self.bench_dir,
            etc_shared: &self.etc_shared,
            seccomp,
        });
        let path = dir.join("config.json");
        let text = serde_json::to_vec_pretty(&config).map_err(|e| FixtureError::Io {
            op: "serializing",
            path: path.clone(),
            source: e.into(),
        })?;
        fs::write(&path, text).map_err(io_err("writing", &path))?;
        self.bundles.push((key, dir));
        Ok(())
    }

    /// The OCI bundle directory of `workload`.
    pub(crate) fn bundle(&self, workload: &Workload) -> &Path {
        self.bundles
            .iter()
            .find(|(k, _)| *k == workload.key())
            .map(|(_, d)| d.as_path())
            .unwrap_or(&self.dir)
    }

    /// A fresh state root for an OCI runtime, reaped when the fixture goes; `root.root`
    /// names the directory under `state/`.
    pub(crate) fn add_state_root(&mut self, mut root: StateRoot) -> PathBuf {
        root.root = self.dir.join("state").join(&root.root);
        let _ = fs::create_dir_all(&root.root);
        let path = root.root.clone();
        self.state_roots.push(root);
        path
    }

    /// Deletes leftover containers now (the drop does it again).
    pub(crate) fn reap_containers(&self) -> Vec<String> {
        self.state_roots.iter().flat_map(StateRoot::reap).collect()
    }

    fn teardown(&mut self) -> Result<(), String> {
        let leftovers = self.reap_containers();
        if !leftovers.is_empty() {
            eprintln!(
                "cordon bench: deleted {} leftover container(s)",
                leftovers.len()
            );
        }
        if let Some(cordon) = self.cordon_gc.take() {
            for args in [&["gc"][..], &["microvm", "gc"][..]] {
                let _ = Command::new(&cordon)
                    .args(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        remove_tree(&self.dir, std::mem::take(&mut self.mounts))
    }
}

/// Unmounts `known` (in reverse) and anything else mounted under `dir`, then removes `dir`,
/// unless a mount is still there: never delete through a bind mount of the host.
fn remove_tree(dir: &Path, known: Vec<PathBuf>) -> Result<(), String> {
    for m in known.iter().rev() {
        let _ = sys::unmount(m);
    }
    for m in mounts_under(dir) {
        let _ = sys::unmount(&m);
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        return Err(format!(
            "{} is still mounted; not removing {}",
            left[0].display(),
            dir.display()
        ));
    }
    fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("cordon bench: cleanup: {e}");
        }
    }
}

/// Removes fixtures left by bench runs that no longer exist (killed with SIGKILL, say):
/// containers in their state roots (`runtimes` as for [`Fixture::add_state_root`]), their
/// mounts, their directories. Returns what it removed.
pub(crate) fn reap_stale(runtimes: &[StateRoot]) -> Vec<PathBuf> {
    let base = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let dir = e.path();
        for rt in runtimes {
            let mut stale = rt.clone();
            stale.root = dir.join("state").join(&rt.root);
            stale.reap();
        }
        if remove_tree(&dir, Vec::new()).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/x\\134"), "/x\\");
    }

    #[test]
    fn bpf_is_whole_instructions() {
        let b = workload_policy().compile_bytes();
        assert!(!b.is_empty());
        assert_eq!(b.len() % 8, 0);
    }
}
