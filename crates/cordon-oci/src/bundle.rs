//! Reading an OCI bundle and mapping its config.json onto the container tier's
//! [`ContainerConfig`].

use std::path::{Path, PathBuf};

use cordon_container::{
    CapSets, CgroupPlan, ContainerConfig, DeviceRule, IdMaps, LaunchMode, MountOp, Namespaces,
    ProcessConfig, RootPlan, RootSource,
};
use cordon_sandbox::{Capability, Limits};
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType, Spec};

use crate::seccomp;
use crate::OciError;

/// A loaded and validated bundle.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

/// Loads `dir/config.json`, checking what a runtime must refuse.
pub fn load(dir: &Path) -> Result<Bundle, OciError> {
    let dir = std::fs::canonicalize(dir)
        .map_err(|e| OciError::Bundle(format!("bundle {}: {e}", dir.display())))?;
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| OciError::Bundle(format!("reading {}: {e}", path.display())))?;
    let spec: Spec = serde_json::from_str(&text)
        .map_err(|e| OciError::Bundle(format!("parsing {}: {e}", path.display())))?;
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(OciError::Bundle(format!(
            "unsupported ociVersion {version:?} (cordon supports 1.x)"
        )));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| OciError::Bundle("config.json has no root".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    let rootfs = std::fs::canonicalize(&rootfs)
        .map_err(|e| OciError::Bundle(format!("root {}: {e}", rootfs.display())))?;
    if !root.path().is_absolute() && !rootfs.starts_with(&dir) {
        return Err(OciError::Bundle(format!(
            "relative root {} leaves the bundle",
            root.path().display()
        )));
    }
    if !rootfs.is_dir() {
        return Err(OciError::Bundle(format!(
            "root {} is not a directory",
            rootfs.display()
        )));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| OciError::Bundle("config.json has no process".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(OciError::Bundle("process.args is empty".into()));
    }
    Ok(Bundle { dir, spec, rootfs })
}

fn mount_flags(options: &[String]) -> (libc::c_ulong, u64, bool, bool, Vec<String>) {
    // (mount flags, MOUNT_ATTR_* for binds, is a bind, recursive, remaining data options)
    let (mut flags, mut attrs, mut bind, mut rec, mut data) = (0, 0u64, false, false, Vec::new());
    for o in options {
        match o.as_str() {
            "ro" => {
                flags |= libc::MS_RDONLY;
                attrs |= 0x1;
            }
            "nosuid" => {
                flags |= libc::MS_NOSUID;
                attrs |= 0x2;
            }
            "nodev" => {
                flags |= libc::MS_NODEV;
                attrs |= 0x4;
            }
            "noexec" => {
                flags |= libc::MS_NOEXEC;
                attrs |= 0x8;
            }
            "sync" => flags |= libc::MS_SYNCHRONOUS,
            "dirsync" => flags |= libc::MS_DIRSYNC,
            "noatime" => flags |= libc::MS_NOATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "relatime" => flags |= libc::MS_RELATIME,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "bind" => bind = true,
            "rbind" => {
                bind = true;
                rec = true;
            }
            "rw" | "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "private"
            | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" | "tmpcopyup" | "norelatime" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, attrs, bind, rec, data)
}

fn caps(set: &Option<oci_spec::runtime::Capabilities>) -> Result<u64, OciError> {
    let mut mask = 0u64;
    for c in set.iter().flatten() {
        let name = c.to_string();
        let cap: Capability = name
            .parse()
            .map_err(|_| OciError::Bundle(format!("unknown capability {name}")))?;
        mask |= 1u64 << cap.0;
    }
    Ok(mask)
}

fn rlimit_number(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Maps the process section (also used for `exec --process`).
pub fn process_config(
    p: &oci_spec::runtime::Process,
    seccomp: Option<cordon_container::seccomp_policy::Policy>,
) -> Result<ProcessConfig, OciError> {
    let c = p.capabilities().as_ref();
    let caps = CapSets {
        bounding: caps(&c.and_then(|c| c.bounding().clone()))?,
        effective: caps(&c.and_then(|c| c.effective().clone()))?,
        permitted: caps(&c.and_then(|c| c.permitted().clone()))?,
        inheritable: caps(&c.and_then(|c| c.inheritable().clone()))?,
        ambient: caps(&c.and_then(|c| c.ambient().clone()))?,
    };
    let mut rlimits = Vec::new();
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let n = rlimit_number(&name)
            .ok_or_else(|| OciError::Bundle(format!("unknown rlimit {name}")))?;
        rlimits.push((n, r.soft(), r.hard()));
    }
    Ok(ProcessConfig {
        argv: p.args().clone().unwrap_or_default(),
        env: p.env().clone().unwrap_or_default(),
        cwd: p.cwd().clone(),
        uid: p.user().uid(),
        gid: p.user().gid(),
        additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
        caps,
        rlimits,
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        seccomp,
        terminal: p.terminal().unwrap_or(false),
        oom_score_adj: p.oom_score_adj(),
        notify: None,
        landlock: None,
    })
}

/// The container's seccomp policy: the bundle's profile, or cordon's default without one.
pub fn seccomp_policy(spec: &Spec) -> Result<cordon_container::seccomp_policy::Policy, OciError> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => seccomp::from_oci(profile).map_err(OciError::Bundle),
        None => Ok(cordon_container::seccomp_policy::workload_policy()),
    }
}

/// The container's cgroup, relative to each hierarchy's root, from `linux.cgroupsPath`: a
/// path of plain components (no `..`, which would leave the cgroup filesystem), or the systemd
/// form `slice:prefix:name`, which cordon (driving cgroupfs itself) maps to
/// `cordon-oci/prefix-name`.
fn cgroup_path(p: &Path) -> Result<PathBuf, OciError> {
    let text = p.to_string_lossy();
    let bad = |why: &str| OciError::Bundle(format!("linux.cgroupsPath {text:?}: {why}"));
    let plain = |rel: &Path| {
        rel.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    };
    if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        let [_slice, prefix, name] = parts[..] else {
            return Err(bad("the systemd form is slice:prefix:name"));
        };
        let leaf = PathBuf::from(format!("{prefix}-{name}"));
        if name.is_empty() || !plain(&leaf) || leaf.components().count() != 1 {
            return Err(bad("prefix-name must be one path component"));
        }
        return Ok(PathBuf::from("cordon-oci").join(leaf));
    }
    let rel = p.strip_prefix("/").unwrap_or(p);
    if rel.as_os_str().is_empty() || !plain(rel) {
        return Err(bad(
            "must be a path of plain components (no '.', '..' or empty path)",
        ));
    }
    Ok(rel.to_path_buf())
}

/// Maps the bundle onto a detached container configuration.
pub fn container_config(
    b: &Bundle,
    id: &str,
    start_fifo: PathBuf,
    console: Option<PathBuf>,
) -> Result<ContainerConfig, OciError> {
    let spec = &b.spec;
    let linux = spec.linux().as_ref();
    let mut namespaces = Namespaces::default();
    let mut has_mount_ns = false;
    let mut has_pid_ns = false;
    for ns in linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        let flag = match ns.typ() {
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::User => libc::CLONE_NEWUSER,
            LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
            other => return Err(OciError::Bundle(format!("unsupported namespace {other:?}"))),
        };
        match ns.path() {
            Some(path) => {
                if matches!(
                    flag,
                    libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUSER
                ) {
                    return Err(OciError::Bundle(format!(
                        "joining an existing {:?} namespace is not supported by cordon",
                        ns.typ()
                    )));
                }
                namespaces.join.push((flag, path.clone()));
            }
            None => namespaces.create |= flag,
        }
        has_mount_ns |= flag == libc::CLONE_NEWNS;
        has_pid_ns |= flag == libc::CLONE_NEWPID;
    }
    if !has_mount_ns {
        return Err(OciError::Bundle("a mount namespace is required".into()));
    }
    if !has_pid_ns {
        return Err(OciError::Bundle(
            "sharing the host's PID namespace is not supported by cordon".into(),
        ));
    }
    let id_maps = (namespaces.create & libc::CLONE_NEWUSER != 0).then(|| IdMaps {
        uid: linux
            .and_then(|l| l.uid_mappings().as_ref())
            .into_iter()
            .flatten()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect(),
        gid: linux
            .and_then(|l| l.gid_mappings().as_ref())
            .into_iter()
            .flatten()
            .map(|m| (m.container_id(), m.host_id(), m.size()))
            .collect(),
    });

    let mut ops = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().clone();
        if !dest.is_absolute() {
            return Err(OciError::Bundle(format!(
                "mount destination {} is not absolute",
                dest.display()
            )));
        }
        let typ = m.typ().clone().unwrap_or_default();
        let options = m.options().clone().unwrap_or_default();
        let (flags, attrs, is_bind, rec, data) = mount_flags(&options);
        if typ == "bind" || is_bind {
            let src = m.source().clone().ok_or_else(|| {
                OciError::Bundle(format!("bind mount {} has no source", dest.display()))
            })?;
            let src = if src.is_absolute() {
                src
            } else {
                b.dir.join(src)
            };
            ops.push(MountOp::Bind {
                source: src,
                dest,
                recursive: rec,
                attrs,
            });
        } else if typ == "cgroup" || typ == "cgroup2" {
            // The container sees an empty, read-only /sys/fs/cgroup (see docs/design.md).
            ops.push(MountOp::Fs {
                fstype: "tmpfs".into(),
                source: "tmpfs".into(),
                dest,
                flags: libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: "mode=0755,size=4k".into(),
            });
        } else {
            let is_dev = dest == Path::new("/dev") && typ == "tmpfs";
            ops.push(MountOp::Fs {
                fstype: typ.clone(),
                source: m
                    .source()
                    .as_ref()
                    .map_or(typ.clone(), |s| s.to_string_lossy().into_owned()),
                dest,
                flags,
                data: data.join(","),
            });
            if is_dev {
                ops.push(MountOp::DefaultDevices);
            }
        }
    }
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => continue,
        };
        ops.push(MountOp::Device {
            dest: d.path().clone(),
            kind,
            major: u32::try_from(d.major()).unwrap_or(0),
            minor: u32::try_from(d.minor()).unwrap_or(0),
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        });
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        ops.push(MountOp::Mask(PathBuf::from(p)));
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        ops.push(MountOp::ReadOnly(PathBuf::from(p)));
    }
    let root = spec.root().as_ref().expect("checked by load");

    let res = linux.and_then(|l| l.resources().as_ref());
    let memory_bytes = res
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .and_then(|l| u64::try_from(l).ok())
        .filter(|l| *l > 0);
    let pids = res
        .and_then(|r| r.pids().as_ref())
        .and_then(|p| u64::try_from(p.limit()).ok())
        .filter(|l| *l > 0);
    let cpu_millis = res.and_then(|r| r.cpu().as_ref()).and_then(|c| {
        let quota = u64::try_from(c.quota()?).ok()?;
        let period = c.period().unwrap_or(100_000).max(1);
        u32::try_from(quota * 1000 / period).ok()
    });
    let devices = res.and_then(|r| r.devices().as_ref()).map(|rules| {
        // The default devices every container gets (runc allows them the same way):
        // null, zero, full, random, urandom, tty, console, ptmx, and the pts range.
        let defaults = [
            (1, Some(3)),
            (1, Some(5)),
            (1, Some(7)),
            (1, Some(8)),
            (1, Some(9)),
            (5, Some(0)),
            (5, Some(1)),
            (5, Some(2)),
            (136, None),
        ]
        .into_iter()
        .map(|(major, minor)| DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(major),
            minor,
            access: "rwm".into(),
        });
        rules
            .iter()
            .map(|d| DeviceRule {
                allow: d.allow(),
                kind: match d.typ() {
                    Some(LinuxDeviceType::C | LinuxDeviceType::U) => 'c',
                    Some(LinuxDeviceType::B) => 'b',
                    _ => 'a',
                },
                major: d.major().and_then(|m| u32::try_from(m).ok()),
                minor: d.minor().and_then(|m| u32::try_from(m).ok()),
                access: d.access().clone().unwrap_or_else(|| "rwm".into()),
            })
            .chain(defaults)
            .collect()
    });
    let cgroup_path = match linux.and_then(|l| l.cgroups_path().as_ref()) {
        Some(p) => cgroup_path(p)?,
        None => PathBuf::from("cordon-oci").join(id),
    };
    let seccomp = Some(seccomp_policy(spec)?);
    let process = process_config(spec.process().as_ref().expect("checked by load"), seccomp)?;
    Ok(ContainerConfig {
        namespaces,
        id_maps,
        root: RootPlan {
            source: RootSource::Bind(b.rootfs.clone()),
            scratch_bytes: 0,
            ops,
            readonly: root.readonly().unwrap_or(false),
        },
        hostname: spec.hostname().clone(),
        loopback_up: true,
        sysctls: linux
            .and_then(|l| l.sysctl().as_ref())
            .map(|m| {
                let mut v: Vec<(String, String)> =
                    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                v.sort();
                v
            })
            .unwrap_or_default(),
        process,
        cgroup: CgroupPlan {
            path: Some(cgroup_path),
            limits: Limits {
                memory_bytes,
                cpu_millis,
                pids,
                tmp_bytes: 0,
            },
            devices,
        },
        mode: LaunchMode::Detached {
            start_fifo,
            console,
        },
        hook_points: true,
    })
}

#[cfg(test)]
mod fuzz;
