//! The runtimes a bench run compares: cordon's tiers and the peers installed on the host, how
//! each is found, its version, and the command line that runs a workload in it.

use std::env;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use cordon_sandbox::TierKind;

use crate::fixture::{Fixture, StateRoot};
use crate::oci::{BENCH_DIR_IN_SANDBOX, SANDBOX_ENV};
use crate::sys;

/// A runtime cordon is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Plain fork+exec on the host: the floor.
    Native,
    /// chroot(8) into the same root: no isolation beyond the filesystem view.
    Chroot,
    /// bubblewrap with `--unshare-all`.
    Bwrap,
    /// runc with an OCI bundle.
    Runc,
    /// crun with the same bundle.
    Crun,
    /// gVisor's runsc, ptrace platform, no network.
    Runsc,
    /// A qemu microvm (not wired in yet: always skipped).
    Qemu,
}

impl Peer {
    pub const ALL: [Peer; 7] = [
        Peer::Native,
        Peer::Chroot,
        Peer::Bwrap,
        Peer::Runc,
        Peer::Crun,
        Peer::Runsc,
        Peer::Qemu,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Peer::Native => "native",
            Peer::Chroot => "chroot",
            Peer::Bwrap => "bwrap",
            Peer::Runc => "runc",
            Peer::Crun => "crun",
            Peer::Runsc => "runsc",
            Peer::Qemu => "qemu",
        }
    }

    fn binary(self) -> Option<&'static str> {
        match self {
            Peer::Native => None,
            Peer::Chroot => Some("chroot"),
            Peer::Bwrap => Some("bwrap"),
            Peer::Runc => Some("runc"),
            Peer::Crun => Some("crun"),
            Peer::Runsc => Some("runsc"),
            Peer::Qemu => Some("qemu-system-x86_64"),
        }
    }

    fn package(self) -> &'static str {
        match self {
            Peer::Native | Peer::Chroot => "coreutils",
            Peer::Bwrap => "bubblewrap",
            Peer::Runc => "runc",
            Peer::Crun => "crun",
            Peer::Runsc => "runsc",
            Peer::Qemu => "qemu-system-x86",
        }
    }

    fn isolation(self) -> &'static str {
        match self {
            Peer::Native => "none (host process)",
            Peer::Chroot => "filesystem root only",
            Peer::Bwrap => "namespaces + cordon's seccomp filter, no cgroups",
            Peer::Runc | Peer::Crun => {
                "namespaces + cgroups + seccomp (cordon's allowlist by name) + no capabilities"
            }
            Peer::Runsc => "gVisor Sentry (ptrace platform) + gofer, no network",
            Peer::Qemu => "virtual machine",
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Peer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Peer::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Peer::ALL.iter().map(|p| p.name()).collect();
                format!("unknown peer '{s}' (known: {})", known.join(", "))
            })
    }
}

/// What runs inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Workload {
    True,
    Python,
    Syscalls {
        budget_ms: u64,
    },
    /// The sentry mechanism's floor (`cordon_bench::notify_floor`): native only.
    NotifyFloor {
        budget_ms: u64,
    },
    Cpu {
        iters: u64,
    },
    Io {
        mib: u64,
    },
    Idle,
}

impl Workload {
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Workload::True => "true",
            Workload::Python => "python",
            Workload::Syscalls { .. } => "syscalls",
            Workload::NotifyFloor { .. } => "notify-floor",
            Workload::Cpu { .. } => "cpu",
            Workload::Io { .. } => "io",
            Workload::Idle => "idle",
        }
    }

    /// The command line, given where the benchmark program and a tmpfs are.
    pub(crate) fn argv(&self, bench: &str, tmp: &str) -> Vec<String> {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        match self {
            Workload::True => v(&["/bin/true"]),
            Workload::Python => v(&["/usr/bin/python3", "-c", "pass"]),
            Workload::Syscalls { budget_ms } => {
                let b = budget_ms.to_string();
                v(&[bench, "syscalls", "--dir", tmp, "--budget-ms", &b])
            }
            Workload::NotifyFloor { budget_ms } => {
                let b = budget_ms.to_string();
                v(&[bench, "notify-floor", "--dir", tmp, "--budget-ms", &b])
            }
            Workload::Cpu { iters } => v(&[bench, "cpu", "--iters", &iters.to_string()]),
            Workload::Io { mib } => v(&[bench, "io", "--dir", tmp, "--mib", &mib.to_string()]),
            Workload::Idle => v(&[bench, "idle"]),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OciEngine {
    Runc,
    Crun,
    Runsc,
}

/// How a runtime is started.
#[derive(Debug, Clone)]
pub(crate) enum Launcher {
    Cordon {
        bin: PathBuf,
        tier: TierKind,
    },
    Native,
    Chroot {
        bin: PathBuf,
    },
    Bwrap {
        bin: PathBuf,
    },
    Oci {
        engine: OciEngine,
        bin: PathBuf,
        state: StateRoot,
    },
}

/// One runtime under test.
#[derive(Debug, Clone)]
pub(crate) struct Runtime {
    /// `cordon-container`, `native`, `runc`, ...
    pub name: String,
    pub is_tier: bool,
    pub launcher: Launcher,
    pub version: String,
    pub isolation: &'static str,
}

/// A runtime that is not measured, and why.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable {
    pub name: String,
    pub is_tier: bool,
    pub reason: String,
}

/// A command ready to spawn, with the files it needs open until then.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub cmd: Command,
    pub keep: Vec<File>,
}

static CONTAINER_SEQ: AtomicU64 = AtomicU64::new(0);

fn container_id() -> String {
    format!(
        "cbench-{}-{}",
        std::process::id(),
        CONTAINER_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl Runtime {
    /// Whether the workload is a host process of its own that memory accounting can leave
    /// out (runsc runs it inside the Sentry).
    pub(crate) fn payload_separable(&self) -> bool {
        !matches!(
            self.launcher,
            Launcher::Oci {
                engine: OciEngine::Runsc,
                ..
            } | Launcher::Cordon {
                tier: TierKind::Microvm,
                ..
            }
        )
    }

    fn is_microvm(&self) -> bool {
        matches!(
            self.launcher,
            Launcher::Cordon {
                tier: TierKind::Microvm,
                ..
            }
        )
    }

    /// Why `w` cannot be measured in this runtime, if it cannot.
    pub(crate) fn cannot_run(&self, w: &Workload) -> Option<&'static str> {
        if matches!(w, Workload::NotifyFloor { .. }) && !matches!(self.launcher, Launcher::Native) {
            return Some("the mechanism floor is measured natively only");
        }
        let needs_program = matches!(
            w,
            Workload::Syscalls { .. } | Workload::Cpu { .. } | Workload::Io { .. }
        );
        (self.is_microvm() && needs_program).then_some(
            "the benchmark program is not brought into the guest (/opt/cordon-bench does not exist in its read-only root image)",
        )
    }

    /// The most idle sandboxes worth starting for density: a microVM holds a guest's memory.
    pub(crate) fn density_cap(&self, bound: u32, vm_bound: u32) -> u32 {
        if self.is_microvm() {
            bound.min(vm_bound)
        } else {
            bound
        }
    }

    /// The command that runs `w` in a fresh sandbox and returns when it is gone.
    pub(crate) fn prepare(&self, fx: &Fixture, w: &Workload) -> io::Result<Prepared> {
        let in_sandbox = format!("{BENCH_DIR_IN_SANDBOX}/cordon-syscall-bench");
        let argv = w.argv(&in_sandbox, "/tmp");
        let mut keep = Vec::new();
        let mut cmd = match &self.launcher {
            Launcher::Cordon {
                bin,
                tier: TierKind::Microvm,
            } => {
                // No host mounts in a VM: the idle workload is the shell's equivalent.
                let argv = match w {
                    Workload::Idle => vec![
                        "/bin/sh".to_string(),
                        "-c".to_string(),
                        "echo ready; exec cat >/dev/null".to_string(),
                    ],
                    _ => argv,
                };
                let mut c = Command::new(bin);
                // Restored from the snapshot: a warm pool on the host would change the mode
                // (microvm_start_ms measures the pool on its own).
                c.env("CORDON_MICROVM_POOL", "off");
                c.args(["run", "--tier", "microvm", "--"]).args(&argv);
                c
            }
            Launcher::Cordon { bin, tier } => {
                let mut c = Command::new(bin);
                c.arg("run")
                    .arg("--tier")
                    .arg(tier.name())
                    .arg("--mount")
                    .arg(format!(
                        "{}:{BENCH_DIR_IN_SANDBOX}:ro",
                        fx.bench_dir.display()
                    ))
                    .arg("--")
                    .args(&argv);
                c
            }
            Launcher::Native => {
                let host_tmp = fx.native_tmp.to_string_lossy().into_owned();
                let argv = w.argv(&fx.bench_host.to_string_lossy(), &host_tmp);
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            Launcher::Chroot { bin } => {
                let mut c = Command::new(bin);
                c.arg(&fx.chroot).args(&argv);
                c
            }
            Launcher::Bwrap { bin } => {
                let mut c = Command::new(bin);
                c.args(["--unshare-all", "--die-with-parent", "--cap-drop", "ALL"])
                    .args(["--hostname", "cordon"])
                    .args(["--ro-bind", "/usr", "/usr"]);
                for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
                    if let Ok(target) = std::fs::read_link(Path::new("/").join(name)) {
                        c.arg("--symlink").arg(target).arg(format!("/{name}"));
                    }
                }
                c.arg("--ro-bind").arg(fx.rootfs.join("etc")).arg("/etc");
                for name in &fx.etc_shared {
                    let host = Path::new("/etc").join(name);
                    c.arg("--ro-bind").arg(&host).arg(&host);
                }
                c.args([
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--ro-bind",
                    "/sys",
                    "/sys",
                ])
                .arg("--size")
                .arg(cordon_sandbox::Limits::DEFAULT_TMP.to_string())
                .args(["--tmpfs", "/tmp"])
                .arg("--ro-bind")
                .arg(&fx.bench_dir)
                .arg(BENCH_DIR_IN_SANDBOX);
                // bwrap reads the filter to its end: a fresh open file per run, inherited as
                // it is (no pre-exec hook, so the spawn stays a posix_spawn like the others').
                let filter = File::open(&fx.seccomp_bpf)?;
                sys::set_inheritable(filter.as_fd())?;
                c.arg("--seccomp")
                    .arg(filter.as_raw_fd().to_string())
                    .args(["--chdir", "/", "--"])
                    .args(&argv);
                keep.push(filter);
                c
            }
            Launcher::Oci { bin, state, .. } => {
                let mut c = Command::new(bin);
                c.arg("--root").arg(&state.root).args(&state.global_args);
                c.arg("run")
                    .arg("--bundle")
                    .arg(fx.bundle(w))
                    .arg(container_id());
                if let Some(hide) = &state.hide_mount {
                    sys::exec_without_mount(&mut c, hide)?;
                }
                c
            }
        };
        cmd.env_clear()
            .envs(SANDBOX_ENV.iter().copied())
            .process_group(0);
        Ok(Prepared { cmd, keep })
    }
}

/// Finds `name` on PATH or in the sbin directories.
fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The first line of `bin --version`.
fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The OCI state root template of `engine` (directory name under the fixture's `state/`).
pub(crate) fn state_template(engine: OciEngine, bin: PathBuf, hide: Option<PathBuf>) -> StateRoot {
    let (name, global_args, hide_mount) = match engine {
        OciEngine::Runc => ("runc", vec![], None),
        OciEngine::Crun => ("crun", vec![], hide),
        OciEngine::Runsc => (
            "runsc",
            vec![
                "--platform=ptrace".to_string(),
                "--network=none".to_string(),
            ],
            None,
        ),
    };
    StateRoot {
        bin,
        root: PathBuf::from(name),
        global_args,
        hide_mount,
    }
}

/// Resolves the requested tiers and peers into runtimes to measure and ones to skip.
/// OCI runtimes get their state roots in `fx`.
pub(crate) fn detect(
    cordon: &Path,
    tiers: &[TierKind],
    peers: &[Peer],
    fx: &mut Fixture,
) -> (Vec<Runtime>, Vec<Unavailable>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    let cordon_version = version_of(cordon);
    for &tier in tiers {
        found.push(Runtime {
            name: format!("cordon-{}", tier.name()),
            is_tier: true,
            launcher: Launcher::Cordon {
                bin: cordon.to_path_buf(),
                tier,
            },
            version: cordon_version.clone(),
            isolation: match tier {
                TierKind::Container => {
                    "namespaces + cgroups + seccomp allowlist + no capabilities + pivot_root"
                }
                TierKind::Sentry => {
                    "the container tier + a supervisor performing path and socket syscalls for the workload (seccomp user notification)"
                }
                TierKind::Microvm => {
                    "a virtual machine per sandbox (qemu microvm) with its own kernel"
                }
            },
        });
    }
    for &peer in peers {
        let skip = |reason: String| Unavailable {
            name: peer.name().to_string(),
            is_tier: false,
            reason,
        };
        if peer == Peer::Qemu {
            skipped.push(skip(
                "not wired into cordon bench yet (a later peer: with no usable KVM here a qemu microvm boots under TCG in about 2.2 s)".into(),
            ));
            continue;
        }
        let bin = match peer.binary() {
            None => None,
            Some(b) => match which(b) {
                Some(p) => Some(p),
                None => {
                    skipped.push(skip(format!(
                        "{b} not found on PATH (Debian package {}; scripts/setup.sh installs it)",
                        peer.package()
                    )));
                    continue;
                }
            },
        };
        let version = match &bin {
            Some(b) => version_of(b),
            None => format!(
                "Linux {}",
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            ),
        };
        let oci = |engine: OciEngine, bin: PathBuf, fx: &mut Fixture| {
            let hide = fx.cgroup2_hybrid.clone();
            let mut state = state_template(engine, bin.clone(), hide);
            state.root = fx.add_state_root(state.clone());
            Launcher::Oci { engine, bin, state }
        };
        let launcher = match (peer, bin) {
            (Peer::Native, _) => Launcher::Native,
            (Peer::Chroot, Some(bin)) => Launcher::Chroot { bin },
            (Peer::Bwrap, Some(bin)) => Launcher::Bwrap { bin },
            (Peer::Runc, Some(bin)) => oci(OciEngine::Runc, bin, fx),
            (Peer::Crun, Some(bin)) => oci(OciEngine::Crun, bin, fx),
            (Peer::Runsc, Some(bin)) => oci(OciEngine::Runsc, bin, fx),
            _ => continue,
        };
        found.push(Runtime {
            name: peer.name().to_string(),
            is_tier: false,
            launcher,
            version,
            isolation: peer.isolation(),
        });
    }
    (found, skipped)
}
