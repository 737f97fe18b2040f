//! The container tier's own description of a container, independent of the front that asked
//! for it: `cordon run` builds one from a [`cordon_sandbox::SandboxSpec`], the OCI runtime
//! front from a bundle's `config.json`.

use std::path::PathBuf;

use cordon_sandbox::Limits;

use crate::rootfs::RootPlan;
use crate::seccomp_policy::Policy;

/// Namespaces to create, and existing ones to join (by a path such as /proc/PID/ns/net).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// `CLONE_NEW*` flags (CLONE_NEWCGROUP is created after joining the cgroups).
    pub create: libc::c_int,
    pub join: Vec<(libc::c_int, PathBuf)>,
}

/// User namespace id mappings: (id inside, id outside, count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: Vec<(u32, u32, u32)>,
    pub gid: Vec<(u32, u32, u32)>,
}

/// Capability sets as bit masks (bit N = capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    /// The same set everywhere (what `--cap-add` means).
    pub fn uniform(mask: u64) -> CapSets {
        CapSets {
            bounding: mask,
            effective: mask,
            permitted: mask,
            inheritable: mask,
            ambient: mask,
        }
    }
}

/// The process the container runs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries.
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub caps: CapSets,
    /// (RLIMIT_* resource, soft, hard).
    pub rlimits: Vec<(u32, u64, u64)>,
    pub no_new_privileges: bool,
    /// The seccomp policy; `None` runs without a filter (only if the front asked for that).
    pub seccomp: Option<Policy>,
    /// A second filter whose [`crate::seccomp_policy::Action::Notify`] syscalls are handed to
    /// a supervisor (the sentry tier); its listener fd reaches the parent, see
    /// [`crate::RunningContainer::wait_supervised`].
    pub notify: Option<Policy>,
    /// Landlock rules enforced just before `execve` (after the seccomp filters); launching
    /// fails if the kernel lacks Landlock.
    pub landlock: Option<crate::landlock::LandlockRules>,
    /// Give the process a new pseudo-terminal as its controlling terminal and stdio.
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
}

/// A cgroup v1 `devices` rule (`c 1:3 rwm`); `None` major/minor means any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

/// Where the container's cgroups live and what they limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPlan {
    /// Relative path under each hierarchy; `None` means cordon's own `cordon/<id>`.
    pub path: Option<PathBuf>,
    pub limits: Limits,
    /// Device access rules (v1 `devices` controller), in order, after denying everything.
    pub devices: Option<Vec<DeviceRule>>,
}

/// How the container's lifetime relates to the process that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LaunchMode {
    /// `cordon run`: the container dies with its creator (parent-death signal), starts on a
    /// pipe, and reports its outcome on the status pipe.
    Attached,
    /// The OCI runtime CLI: the container outlives `create`; `start` is a reader opening the
    /// FIFO at `start_fifo`; the outcome is the init's exit status (the command's code, or
    /// 128+N for a signal); `console` is a unix socket path to send a terminal's master to.
    Detached {
        start_fifo: PathBuf,
        console: Option<PathBuf>,
    },
}

/// Everything needed to create one container.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub namespaces: Namespaces,
    pub id_maps: Option<IdMaps>,
    pub root: RootPlan,
    pub hostname: Option<String>,
    pub loopback_up: bool,
    /// Written to /proc/sys inside the container's namespaces.
    pub sysctls: Vec<(String, String)>,
    pub process: ProcessConfig,
    pub cgroup: CgroupPlan,
    pub mode: LaunchMode,
    /// Pause after the namespaces exist and again before pivot_root, for the front's hooks.
    pub hook_points: bool,
}
