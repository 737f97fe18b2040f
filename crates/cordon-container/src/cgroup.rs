//! Resource limits and process tracking through cgroups, v1 (including the hybrid layout) and
//! v2.
//!
//! Each sandbox gets `cordon/<id>` in every hierarchy it needs (v1: memory, pids and, with a
//! CPU limit, cpu; v2: one directory with those controllers enabled). The id names the cordon
//! process that owns it (`<pid>-<start time>-<n>`), so a later cordon can tell a stale sandbox
//! (owner gone) from a live one and clean it up ([`collect_garbage`]).

use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use cordon_sandbox::Limits;

use crate::config::DeviceRule;
use crate::device_filter;
use thiserror::Error;

use crate::sys;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no cgroup controller available under {root}: {why}")]
    Unavailable { root: PathBuf, why: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup path {0} is not a relative path of plain components")]
    BadPath(PathBuf),
    #[error("device rules for {dir}")]
    Devices {
        dir: PathBuf,
        #[source]
        source: device_filter::DeviceFilterError,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The directory under each hierarchy's root that holds `cordon run`'s sandboxes (what
/// `cordon gc` scans).
const SANDBOX_PARENT: &str = "cordon";

/// Which cgroup layout the host has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Unified hierarchy at the root.
    V2 { root: PathBuf },
    /// Per-controller v1 hierarchies (the cgroup2 mount of a hybrid host, if any, is unused).
    V1 {
        memory: Option<PathBuf>,
        pids: Option<PathBuf>,
        cpu: Option<PathBuf>,
        devices: Option<PathBuf>,
    },
}

impl Layout {
    /// Detects the layout under `root` (normally /sys/fs/cgroup).
    pub fn detect(root: &Path) -> Result<Layout, CgroupError> {
        let unavailable = |why: &str| CgroupError::Unavailable {
            root: root.to_path_buf(),
            why: why.to_string(),
        };
        let meta = fs::metadata(root).map_err(|e| unavailable(&e.to_string()))?;
        if !meta.is_dir() {
            return Err(unavailable("not a directory"));
        }
        if statfs_type(root) == Some(CGROUP2_SUPER_MAGIC) {
            return Ok(Layout::V2 {
                root: root.to_path_buf(),
            });
        }
        // Usual layout first (one statfs each); /proc/self/mountinfo only if that fails.
        let usual = |ctrl: &str| {
            let dir = root.join(ctrl);
            (statfs_type(&dir) == Some(CGROUP_SUPER_MAGIC) && dir.join("cgroup.procs").exists())
                .then_some(dir)
        };
        let mut mounts: Option<String> = None;
        let mut find = |ctrl: &str| {
            usual(ctrl).or_else(|| {
                let info = mounts.get_or_insert_with(|| {
                    fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
                });
                v1_mount_point(info, root, ctrl)
            })
        };
        let layout = Layout::V1 {
            memory: find("memory"),
            pids: find("pids"),
            cpu: find("cpu"),
            devices: find("devices"),
        };
        match &layout {
            Layout::V1 {
                memory: None,
                pids: None,
                ..
            } => Err(unavailable(
                "neither a cgroup2 mount nor v1 memory/pids hierarchies were found",
            )),
            _ => Ok(layout),
        }
    }

    /// The `cordon` parent directories of every hierarchy in this layout.
    fn cordon_dirs(&self) -> Vec<PathBuf> {
        match self {
            Layout::V2 { root } => vec![root.join(SANDBOX_PARENT)],
            Layout::V1 {
                memory,
                pids,
                cpu,
                devices,
            } => [memory, pids, cpu, devices]
                .into_iter()
                .flatten()
                .map(|d| d.join(SANDBOX_PARENT))
                .collect(),
        }
    }
}

/// Finds the mount point, under `root`, of the v1 hierarchy that has `ctrl` attached, from
/// /proc/self/mountinfo text.
fn v1_mount_point(mountinfo: &str, root: &Path, ctrl: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let mut post = post.split_whitespace();
        if post.next()? != "cgroup" {
            return None;
        }
        let options = post.nth(1)?;
        let point = PathBuf::from(pre.split_whitespace().nth(4)?);
        (options.split(',').any(|o| o == ctrl) && point.starts_with(root)).then_some(point)
    })
}

fn statfs_type(path: &Path) -> Option<i64> {
    let c = sys::cstr(path).ok()?;
    // SAFETY: an all-zero statfs is valid for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid out-pointer.
    let ret = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    (ret == 0).then_some(st.f_type)
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Io {
        op: "writing",
        path: path.to_path_buf(),
        source: io::Error::new(source.kind(), format!("{value:?}: {source}")),
    })
}

/// See [`SandboxCgroups::entry`].
#[derive(Debug)]
pub enum CgroupEntry {
    WriteSelf(Vec<OwnedFd>),
    CloneInto(OwnedFd),
}

/// The cgroups of one sandbox. Removed on drop (after its processes are gone).
#[derive(Debug)]
pub struct SandboxCgroups {
    dirs: Vec<PathBuf>,
    /// Where the OOM-kill counter lives: (file, key).
    oom_counter: Option<(PathBuf, &'static str)>,
    v2: bool,
}

impl SandboxCgroups {
    /// Where `cordon run`'s sandbox `id` lives in each hierarchy: `cordon/<id>` (the OCI front
    /// names its own paths).
    pub fn default_path(id: &str) -> PathBuf {
        Path::new(SANDBOX_PARENT).join(id)
    }

    /// Creates cgroups at `rel` (relative to each hierarchy's root; parents are created as
    /// needed) with `limits`, and the device rules (after denying every device): on v1 through
    /// the `devices` controller, on v2 as an eBPF program attached to the group.
    pub fn create_at(
        layout: &Layout,
        rel: &Path,
        limits: &Limits,
        devices: Option<&[DeviceRule]>,
    ) -> Result<SandboxCgroups, CgroupError> {
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        // Joined onto every hierarchy's root: a `..` would climb out of the cgroup filesystem.
        if rel.as_os_str().is_empty()
            || !rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return Err(CgroupError::BadPath(rel.to_path_buf()));
        }
        let mut cg = SandboxCgroups {
            dirs: Vec::new(),
            oom_counter: None,
            v2: matches!(layout, Layout::V2 { .. }),
        };
        match layout {
            Layout::V2 { root } => {
                cg.create_v2(root, rel, limits)?;
                if let Some(rules) = devices {
                    let dir = root.join(rel);
                    // BPF_PROG_ATTACH takes a real open file, not an O_PATH one.
                    let fd = sys::openat(None, &dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)
                        .map_err(io_err("opening", &dir))?;
                    device_filter::attach(fd.as_fd(), rules)
                        .map_err(|e| CgroupError::Devices { dir, source: e })?;
                }
            }
            Layout::V1 {
                memory,
                pids,
                cpu,
                devices: devices_root,
            } => {
                cg.create_v1(
                    memory.as_deref(),
                    pids.as_deref(),
                    cpu.as_deref(),
                    rel,
                    limits,
                )?;
                if let (Some(rules), Some(root)) = (devices, devices_root) {
                    let dir = cg.mkdir(root, rel)?;
                    write_file(&dir.join("devices.deny"), "a")?;
                    for r in rules {
                        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
                        let line =
                            format!("{} {}:{} {}", r.kind, num(r.major), num(r.minor), r.access);
                        let file = if r.allow {
                            "devices.allow"
                        } else {
                            "devices.deny"
                        };
                        write_file(&dir.join(file), &line)?;
                    }
                }
            }
        }
        Ok(cg)
    }

    fn mkdir(&mut self, parent: &Path, rel: &Path) -> Result<PathBuf, CgroupError> {
        let dir = parent.join(rel);
        if let Some(up) = dir.parent() {
            fs::create_dir_all(up).map_err(io_err("creating cgroup", up))?;
        }
        fs::create_dir(&dir).map_err(io_err("creating cgroup", &dir))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    fn create_v1(
        &mut self,
        memory: Option<&Path>,
        pids: Option<&Path>,
        cpu: Option<&Path>,
        id: &Path,
        limits: &Limits,
    ) -> Result<(), CgroupError> {
        let missing = |ctrl: &str| CgroupError::Unavailable {
            root: PathBuf::from("/sys/fs/cgroup"),
            why: format!(
                "a {ctrl} limit was requested but the v1 {ctrl} controller is not mounted"
            ),
        };
        match memory {
            Some(root) => {
                let dir = self.mkdir(root, id)?;
                if let Some(bytes) = limits.memory_bytes {
                    write_file(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write_file(&memsw, &bytes.to_string())?;
                    }
                }
                self.oom_counter = Some((dir.join("memory.oom_control"), "oom_kill"));
            }
            None if limits.memory_bytes.is_some() => return Err(missing("memory")),
            None => {}
        }
        match pids {
            Some(root) => {
                let dir = self.mkdir(root, id)?;
                if let Some(n) = limits.pids {
                    write_file(&dir.join("pids.max"), &n.to_string())?;
                }
            }
            None if limits.pids.is_some() => return Err(missing("pids")),
            None => {}
        }
        if let Some(millis) = limits.cpu_millis {
            let root = cpu.ok_or_else(|| missing("cpu"))?;
            let dir = self.mkdir(root, id)?;
            let period: u64 = 100_000;
            let quota = (u64::from(millis) * period / 1000).max(1000);
            write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
            write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
        }
        Ok(())
    }

    fn create_v2(&mut self, root: &Path, rel: &Path, limits: &Limits) -> Result<(), CgroupError> {
        let available = fs::read_to_string(root.join("cgroup.controllers"))
            .map_err(io_err("reading", &root.join("cgroup.controllers")))?;
        let wanted: Vec<&str> = ["memory", "pids", "cpu"]
            .into_iter()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .collect();
        for (ctrl, needed) in [
            ("memory", limits.memory_bytes.is_some()),
            ("pids", limits.pids.is_some()),
            ("cpu", limits.cpu_millis.is_some()),
        ] {
            if needed && !wanted.contains(&ctrl) {
                return Err(CgroupError::Unavailable {
                    root: root.to_path_buf(),
                    why: format!("the {ctrl} controller is not enabled in the cgroup2 root"),
                });
            }
        }
        let enable: String = wanted.iter().map(|c| format!("+{c} ")).collect();
        let enable = enable.trim_end();
        // Enable the controllers on every level above the new cgroup.
        let mut level = root.to_path_buf();
        for comp in rel.parent().into_iter().flat_map(|p| p.components()) {
            if !enable.is_empty() {
                write_file(&level.join("cgroup.subtree_control"), enable)?;
            }
            level.push(comp);
            match fs::create_dir(&level) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("creating cgroup", &level)(e)),
            }
        }
        if !enable.is_empty() {
            write_file(&level.join("cgroup.subtree_control"), enable)?;
        }
        let dir = root.join(rel);
        fs::create_dir(&dir).map_err(io_err("creating cgroup", &dir))?;
        self.dirs.push(dir.clone());
        if let Some(bytes) = limits.memory_bytes {
            write_file(&dir.join("memory.max"), &bytes.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write_file(&swap, "0")?;
            }
        }
        if let Some(n) = limits.pids {
            write_file(&dir.join("pids.max"), &n.to_string())?;
        }
        if let Some(millis) = limits.cpu_millis {
            let period: u64 = 100_000;
            let quota = (u64::from(millis) * period / 1000).max(1000);
            write_file(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
        }
        self.oom_counter = Some((dir.join("memory.events"), "oom_kill"));
        Ok(())
    }

    /// How the sandbox's first process gets into its cgroups: on v1, by writing "0" to each
    /// hierarchy's `tasks` file (files opened here); on v2, by `clone3(CLONE_INTO_CGROUP)` with
    /// the directory fd returned here.
    ///
    /// Writing the single-threaded child's own thread to `tasks` rather than its process to
    /// `cgroup.procs` lets the kernel skip the global threadgroup lock, whose RCU grace period
    /// otherwise costs ~10 ms per sandbox on a HZ=250 host.
    pub fn entry(&self) -> Result<CgroupEntry, CgroupError> {
        if self.v2 {
            let dir = &self.dirs[0];
            let fd = sys::openat(None, dir, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(io_err("opening", dir))?;
            return Ok(CgroupEntry::CloneInto(fd));
        }
        self.dirs
            .iter()
            .map(|d| {
                let p = d.join("tasks");
                sys::openat(None, &p, libc::O_WRONLY, 0).map_err(io_err("opening", &p))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(CgroupEntry::WriteSelf)
    }

    /// How many times the OOM killer acted inside the memory limit.
    pub fn oom_kills(&self) -> u64 {
        let Some((file, key)) = &self.oom_counter else {
            return 0;
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == *key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    /// Kills every process still in the sandbox's cgroups.
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            kill_cgroup(dir, self.v2);
        }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// No cgroups at all (a placeholder after [`SandboxCgroups::persist`]).
    pub fn empty() -> SandboxCgroups {
        SandboxCgroups {
            dirs: Vec::new(),
            oom_counter: None,
            v2: false,
        }
    }

    /// Keeps the cgroups after this value is dropped (for containers that outlive their
    /// creator); returns their directories. [`remove_dirs`] removes them later.
    pub fn persist(mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.dirs)
    }
}

/// Kills what is left in `dirs` and removes them (a persisted container's cgroups).
pub fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs.iter().rev() {
        let v2 = statfs_type(dir) == Some(CGROUP2_SUPER_MAGIC);
        kill_cgroup(dir, v2);
        remove_cgroup(dir, v2);
    }
}

/// The pids of every process in a cgroup directory.
pub fn processes(dir: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

impl Drop for SandboxCgroups {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            remove_cgroup(dir, self.v2);
        }
    }
}

fn kill_cgroup(dir: &Path, v2: bool) {
    if v2 && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in text
            .lines()
            .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
        {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    }
}

/// Removes an (emptied) cgroup, retrying briefly while killed processes finish exiting.
fn remove_cgroup(dir: &Path, v2: bool) {
    for attempt in 0..200 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(_) => {
                if attempt % 20 == 0 {
                    kill_cgroup(dir, v2);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
}

/// A sandbox id naming its owner: `<pid>-<start time in ticks>-<n>`.
pub fn sandbox_id(seq: u32) -> String {
    let pid = sys::getpid();
    format!("{pid}-{}-{seq}", process_start_time(pid).unwrap_or(0))
}

fn process_start_time(pid: libc::pid_t) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22; the command name (field 2) may hold spaces, so count after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn owner_alive(id: &str) -> bool {
    let mut parts = id.split('-');
    let (Some(pid), Some(start)) = (parts.next(), parts.next()) else {
        return true; // not ours to judge
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<libc::pid_t>(), start.parse::<u64>()) else {
        return true;
    };
    process_start_time(pid) == Some(start)
}

/// What [`collect_garbage`] found and removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<PathBuf>,
    pub failed: Vec<PathBuf>,
}

/// Removes the cgroups of sandboxes whose cordon process is gone, killing anything left in them.
pub fn collect_garbage(layout: &Layout) -> GcReport {
    let mut report = GcReport::default();
    let v2 = matches!(layout, Layout::V2 { .. });
    // One owner check per sandbox, however many hierarchies it spans.
    let mut alive: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for base in layout.cordon_dirs() {
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str() else { continue };
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if *alive
                .entry(id.to_string())
                .or_insert_with(|| owner_alive(id))
            {
                continue;
            }
            let dir = entry.path();
            kill_cgroup(&dir, v2);
            remove_cgroup(&dir, v2);
            if dir.exists() {
                report.failed.push(dir);
            } else {
                report.removed.push(dir);
            }
        }
    }
    report
}

/// Freezes or thaws every process in the cgroups `dirs` of one container (the OCI `pause` and
/// `resume`). On v2 through the group's `cgroup.freeze`. On v1 through a `freezer` cgroup at
/// the same relative path under `v1_root/freezer`, created on first use: it is frozen first,
/// then the container's processes are moved in (a task attached to a frozen group freezes), until
/// none is left outside. Returns the freezer directory when it was created, for the caller to
/// remove with the others.
pub fn set_frozen(
    v1_root: &Path,
    dirs: &[PathBuf],
    frozen: bool,
) -> Result<Option<PathBuf>, CgroupError> {
    let first = dirs.first().ok_or_else(|| CgroupError::Unavailable {
        root: v1_root.to_path_buf(),
        why: "the container has no cgroup".into(),
    })?;
    if statfs_type(first) == Some(CGROUP2_SUPER_MAGIC) {
        write_file(&first.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
        return Ok(None);
    }
    let rel = first
        .strip_prefix(v1_root)
        .ok()
        .and_then(|r| {
            r.iter()
                .nth(1)
                .map(|_| r.iter().skip(1).collect::<PathBuf>())
        })
        .ok_or_else(|| CgroupError::Unavailable {
            root: v1_root.to_path_buf(),
            why: format!("{} is not under a v1 hierarchy", first.display()),
        })?;
    let freezer = v1_root.join("freezer").join(&rel);
    let state = freezer.join("freezer.state");
    if !frozen {
        return write_file(&state, "THAWED").map(|()| None);
    }
    let created = !freezer.is_dir();
    if created {
        fs::create_dir_all(&freezer).map_err(io_err("creating cgroup", &freezer))?;
    }
    write_file(&state, "FROZEN")?;
    let procs = freezer.join("cgroup.procs");
    for _round in 0..1000 {
        let inside = processes(&freezer);
        let outside: Vec<libc::pid_t> = dirs
            .iter()
            .filter(|d| !d.starts_with(&freezer))
            .flat_map(|d| processes(d))
            .filter(|p| !inside.contains(p))
            .collect();
        if outside.is_empty() {
            return Ok(created.then_some(freezer));
        }
        for pid in outside {
            // A process that exited meanwhile is no error.
            let _ = fs::write(&procs, pid.to_string());
        }
    }
    Err(CgroupError::Unavailable {
        root: freezer,
        why: "processes kept appearing outside the freezer cgroup".into(),
    })
}

/// Whether the container with cgroups `dirs` is frozen (see [`set_frozen`]).
pub fn is_frozen(dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| {
        let read = |f: &str| fs::read_to_string(d.join(f)).unwrap_or_default();
        read("freezer.state").trim() == "FROZEN" || read("cgroup.events").contains("frozen 1")
    })
}

/// Changes the limits of existing cgroups (the OCI `update`): memory, pids and CPU, each only
/// when given. A controller whose cgroup was not created with the container cannot be added.
pub fn update_limits(dirs: &[PathBuf], limits: &Limits) -> Result<(), CgroupError> {
    let find = |file: &str| dirs.iter().map(|d| d.join(file)).find(|p| p.exists());
    let missing = |what: &str| CgroupError::Unavailable {
        root: dirs.first().cloned().unwrap_or_default(),
        why: format!("the container was created without a {what} cgroup"),
    };
    if let Some(bytes) = limits.memory_bytes {
        let bytes = bytes.to_string();
        if let Some(max) = find("memory.max") {
            write_file(&max, &bytes)?;
        } else {
            let limit = find("memory.limit_in_bytes").ok_or_else(|| missing("memory"))?;
            // memsw must stay >= the limit: raise it first when growing, lower it after.
            let memsw = find("memory.memsw.limit_in_bytes");
            if let Some(sw) = &memsw {
                let _ = fs::write(sw, &bytes);
            }
            write_file(&limit, &bytes)?;
            if let Some(sw) = &memsw {
                write_file(sw, &bytes)?;
            }
        }
    }
    if let Some(n) = limits.pids {
        write_file(
            &find("pids.max").ok_or_else(|| missing("pids"))?,
            &n.to_string(),
        )?;
    }
    if let Some(millis) = limits.cpu_millis {
        let period: u64 = 100_000;
        let quota = (u64::from(millis) * period / 1000).max(1000);
        if let Some(max) = find("cpu.max") {
            write_file(&max, &format!("{quota} {period}"))?;
        } else {
            let q = find("cpu.cfs_quota_us").ok_or_else(|| missing("cpu"))?;
            write_file(&q.with_file_name("cpu.cfs_period_us"), &period.to_string())?;
            write_file(&q, &quota.to_string())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_a_live_owner() {
        let id = sandbox_id(7);
        assert!(id.ends_with("-7"));
        assert!(owner_alive(&id));
        assert!(!owner_alive("999999999-1-0"));
        assert!(owner_alive("not-an-id"));
    }

    #[test]
    fn v1_mounts_from_mountinfo() {
        let info = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                    31 25 0:27 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                    32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            v1_mount_point(info, root, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            v1_mount_point(info, root, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(v1_mount_point(info, root, "memory"), None);
        assert_eq!(v1_mount_point(info, Path::new("/elsewhere"), "pids"), None);
    }

    #[test]
    fn paths_that_leave_the_hierarchy_are_refused() {
        let layout = Layout::V2 {
            root: PathBuf::from("/nonexistent-cgroup-root"),
        };
        for bad in ["../../etc", "a/../../b", "", "/", "./x"] {
            let err = SandboxCgroups::create_at(&layout, Path::new(bad), &Limits::default(), None)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(matches!(err, CgroupError::BadPath(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn detect_rejects_an_empty_dir() {
        let dir = std::env::temp_dir().join(format!("cordon-cg-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = Layout::detect(&dir).unwrap_err();
        assert!(matches!(err, CgroupError::Unavailable { .. }), "{err}");
        fs::remove_dir(&dir).unwrap();
    }
}
