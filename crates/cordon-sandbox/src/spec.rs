//! The sandbox spec: one description of a workload that every tier accepts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::parse::ValueError;

/// Which isolation boundary runs the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierKind {
    /// Namespaces, cgroups, seccomp, capabilities, pivot_root (runc/crun class).
    Container,
    /// Syscall interception by a Rust supervisor (gVisor class).
    Sentry,
    /// A virtual machine per sandbox with its own kernel (Kata/Firecracker class).
    Microvm,
}

impl TierKind {
    pub const ALL: [TierKind; 3] = [TierKind::Container, TierKind::Sentry, TierKind::Microvm];

    pub fn name(self) -> &'static str {
        match self {
            TierKind::Container => "container",
            TierKind::Sentry => "sentry",
            TierKind::Microvm => "microvm",
        }
    }
}

impl fmt::Display for TierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TierKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        TierKind::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| SpecError::UnknownTier(s.to_string()))
    }
}

/// What the sandbox sees as `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// The host's system directories (/usr and the /bin, /lib*, /sbin links) read-only, with a
    /// minimal synthesized /etc. Needs no image.
    HostSystem,
    /// An unpacked root filesystem directory (e.g. made by debootstrap). The sandbox gets a
    /// writable, throw-away view of it; the directory itself is never modified.
    Dir(PathBuf),
}

/// Network exposure of the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// A fresh network namespace with only `lo`, left down: no network at all.
    #[default]
    None,
    /// A fresh network namespace with `lo` up: processes in the sandbox can talk to each other.
    Loopback,
}

impl FromStr for Network {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s {
            "none" => Ok(Network::None),
            "loopback" => Ok(Network::Loopback),
            other => Err(SpecError::UnknownNetwork(other.to_string())),
        }
    }
}

/// Whether to create a user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserNamespace {
    /// Only when cordon is not running as root.
    #[default]
    Auto,
    /// Always (root in the sandbox maps to the invoking user on the host).
    Always,
}

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub readonly: bool,
}

impl FromStr for BindMount {
    type Err = SpecError;
    /// `SRC:DST[:ro|:rw]`; both paths absolute.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| SpecError::Mount {
            mount: s.to_string(),
            why: why.to_string(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, readonly) = match parts.as_slice() {
            [src, dst] => (*src, *dst, false),
            [src, dst, "ro"] => (*src, *dst, true),
            [src, dst, "rw"] => (*src, *dst, false),
            [_, _, opt] => return Err(bad(&format!("unknown option {opt:?} (use ro or rw)"))),
            _ => return Err(bad("expected SRC:DST[:ro]")),
        };
        let (src, dst) = (Path::new(src), Path::new(dst));
        if !src.is_absolute() {
            return Err(bad("source must be an absolute path"));
        }
        if !dst.is_absolute() {
            return Err(bad("destination must be an absolute path"));
        }
        if dst
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(bad("destination must not contain '..'"));
        }
        if dst == Path::new("/") {
            return Err(bad("destination must not be /"));
        }
        Ok(BindMount {
            source: src.to_path_buf(),
            destination: dst.to_path_buf(),
            readonly,
        })
    }
}

/// Linux capabilities by name (`CAP_NET_BIND_SERVICE` or `net_bind_service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Capability(pub u8);

const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

impl Capability {
    pub fn name(self) -> String {
        format!("CAP_{}", CAP_NAMES[usize::from(self.0)].to_uppercase())
    }
}

impl FromStr for Capability {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let lower = s.to_ascii_lowercase();
        let bare = lower.strip_prefix("cap_").unwrap_or(&lower);
        CAP_NAMES
            .iter()
            .position(|n| *n == bare)
            .and_then(|i| u8::try_from(i).ok())
            .map(Capability)
            .ok_or_else(|| SpecError::UnknownCapability(s.to_string()))
    }
}

/// Resource limits. `None` means no limit of that kind beyond the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    /// CPU allowance in thousandths of a core.
    pub cpu_millis: Option<u32>,
    pub pids: Option<u64>,
    /// Size cap of the sandbox's private /tmp.
    pub tmp_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: Some(Limits::DEFAULT_MEMORY),
            cpu_millis: None,
            pids: Some(Limits::DEFAULT_PIDS),
            tmp_bytes: Limits::DEFAULT_TMP,
        }
    }
}

impl Limits {
    pub const DEFAULT_MEMORY: u64 = 1 << 30;
    pub const DEFAULT_PIDS: u64 = 1024;
    pub const DEFAULT_TMP: u64 = 512 << 20;
}

/// Everything a tier needs to run one workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxSpec {
    pub tier: TierKind,
    /// The command and its arguments; `argv[0]` is looked up in the sandbox's PATH.
    pub argv: Vec<String>,
    /// Extra environment (on top of a minimal default: PATH, HOME, TERM, LANG).
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub rootfs: RootfsSource,
    pub mounts: Vec<BindMount>,
    pub limits: Limits,
    pub timeout: Option<Duration>,
    pub network: Network,
    pub hostname: String,
    /// uid and gid the command runs as, inside the sandbox.
    pub uid: u32,
    pub gid: u32,
    pub cap_add: Vec<Capability>,
    pub user_namespace: UserNamespace,
}

impl SandboxSpec {
    /// A spec with cordon's defaults for `argv`.
    pub fn new(argv: Vec<String>) -> Self {
        SandboxSpec {
            tier: TierKind::Container,
            argv,
            env: Vec::new(),
            workdir: PathBuf::from("/"),
            rootfs: RootfsSource::HostSystem,
            mounts: Vec::new(),
            limits: Limits::default(),
            timeout: None,
            network: Network::None,
            hostname: "cordon".to_string(),
            uid: 0,
            gid: 0,
            cap_add: Vec::new(),
            user_namespace: UserNamespace::Auto,
        }
    }

    /// The environment the command starts with: defaults overridden by `env`.
    pub fn effective_env(&self) -> Vec<(String, String)> {
        let home = if self.uid == 0 { "/root" } else { "/tmp" };
        let mut out: Vec<(String, String)> = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("HOME".into(), home.into()),
            ("TERM".into(), "xterm".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("HOSTNAME".into(), self.hostname.clone()),
        ];
        for (k, v) in &self.env {
            match out.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => out.push((k.clone(), v.clone())),
            }
        }
        out
    }

    /// Checks what can be checked without touching the host's kernel interfaces.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(SpecError::NoCommand);
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(SpecError::NulByte("command".into()));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SpecError::Env(format!("{k}={v}")));
            }
        }
        if !self.workdir.is_absolute() {
            return Err(SpecError::Workdir(self.workdir.clone()));
        }
        let host = &self.hostname;
        if host.is_empty()
            || host.len() > 63
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(SpecError::Hostname(host.clone()));
        }
        if let RootfsSource::Dir(dir) = &self.rootfs {
            if !dir.is_absolute() {
                return Err(SpecError::Rootfs {
                    path: dir.clone(),
                    why: "must be an absolute path".into(),
                });
            }
        }
        for m in &self.mounts {
            if !m.source.is_absolute() || !m.destination.is_absolute() {
                return Err(SpecError::Mount {
                    mount: format!("{}:{}", m.source.display(), m.destination.display()),
                    why: "paths must be absolute".into(),
                });
            }
        }
        Ok(())
    }
}

/// A spec that cannot run, found before anything was set up.
#[derive(Debug, Error)]
pub enum SpecError {
    #[error("no command given (usage: cordon run [OPTIONS] -- CMD [ARGS...])")]
    NoCommand,
    #[error("{0} contains a NUL byte")]
    NulByte(String),
    #[error("unknown tier {0:?} (known: container, sentry, microvm)")]
    UnknownTier(String),
    #[error("unknown network mode {0:?} (use none or loopback)")]
    UnknownNetwork(String),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("invalid environment entry {0:?}: expected KEY=VALUE")]
    Env(String),
    #[error("invalid --user {0:?}: expected UID or UID:GID (numbers)")]
    User(String),
    #[error("workdir {0:?} must be an absolute path")]
    Workdir(PathBuf),
    #[error("invalid hostname {0:?}: 1-63 letters, digits, '-' or '.'")]
    Hostname(String),
    #[error("rootfs {path:?} {why}")]
    Rootfs { path: PathBuf, why: String },
    #[error("invalid mount {mount:?}: {why}")]
    Mount { mount: String, why: String },
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// Parses `UID` or `UID:GID`.
pub fn parse_user(text: &str) -> Result<(u32, u32), SpecError> {
    let bad = || SpecError::User(text.to_string());
    let (u, g) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    let uid: u32 = u.parse().map_err(|_| bad())?;
    let gid: u32 = match g {
        Some(g) => g.parse().map_err(|_| bad())?,
        None => uid,
    };
    Ok((uid, gid))
}

/// Parses `KEY=VALUE`.
pub fn parse_env(text: &str) -> Result<(String, String), SpecError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(SpecError::Env(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_mount_forms() {
        let m: BindMount = "/data:/mnt/data:ro".parse().unwrap();
        assert_eq!(m.source, PathBuf::from("/data"));
        assert_eq!(m.destination, PathBuf::from("/mnt/data"));
        assert!(m.readonly);
        assert!(!"/a:/b".parse::<BindMount>().unwrap().readonly);
        for bad in [
            "rel:/b",
            "/a:rel",
            "/a",
            "/a:/b:xx",
            "/a:/../etc",
            "/a:/",
            "/a:/b:ro:x",
        ] {
            assert!(
                bad.parse::<BindMount>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn capabilities_by_name() {
        assert_eq!("CAP_NET_RAW".parse::<Capability>().unwrap(), Capability(13));
        assert_eq!("sys_admin".parse::<Capability>().unwrap(), Capability(21));
        assert_eq!(Capability(21).name(), "CAP_SYS_ADMIN");
        assert!("cap_nonsense".parse::<Capability>().is_err());
    }

    #[test]
    fn users_and_env() {
        assert_eq!(parse_user("1000:100").unwrap(), (1000, 100));
        assert_eq!(parse_user("7").unwrap(), (7, 7));
        assert!(parse_user("bob").is_err());
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("novalue").is_err());
    }

    #[test]
    fn env_overrides_defaults() {
        let mut spec = SandboxSpec::new(vec!["true".into()]);
        spec.env.push(("PATH".into(), "/x".into()));
        spec.env.push(("FOO".into(), "1".into()));
        let env = spec.effective_env();
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert!(env.contains(&("PATH".into(), "/x".into())));
        assert!(env.contains(&("FOO".into(), "1".into())));
    }

    #[test]
    fn validation() {
        let mut spec = SandboxSpec::new(vec![]);
        assert!(matches!(spec.validate(), Err(SpecError::NoCommand)));
        spec.argv = vec!["true".into()];
        spec.validate().unwrap();
        spec.hostname = "bad host".into();
        assert!(matches!(spec.validate(), Err(SpecError::Hostname(_))));
        spec.hostname = "ok".into();
        spec.workdir = PathBuf::from("rel");
        assert!(matches!(spec.validate(), Err(SpecError::Workdir(_))));
    }
}
