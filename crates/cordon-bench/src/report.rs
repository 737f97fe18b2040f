//! The results of a run and their three renderings: `bench-results.json` (everything, raw
//! samples included), `BENCHMARKS.md` (tables of ratios with the charts) and the terminal
//! table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cordon_sandbox::timestamp::{now_rfc3339, Precision};
use serde::Serialize;
use thiserror::Error;

use crate::charts;
use crate::markdown;
use crate::runtime::{Runtime, Unavailable};
use crate::stats::Summary;
use crate::Params;

/// Writing the report failed.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("drawing {path}: {why}")]
    Chart { path: PathBuf, why: String },
}

/// The host the numbers come from.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub os: String,
    pub virtualized: bool,
    pub date_utc: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    /// CPU time that processes other than the bench and its runtimes used during the run,
    /// in percent of all cores' time: how much the numbers may have been disturbed.
    pub other_cpu_percent: Option<f64>,
    #[serde(skip)]
    share: CpuShare,
}

/// Measures the share of CPU time that processes other than this one and its waited-for
/// descendants use from `start` on: other engineers' builds, say. Kernel work done
/// asynchronously for the sandboxes (network namespace and cgroup teardown in kworkers)
/// counts as other, so even a quiet run shows a few percent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuShare(Option<(u64, u64)>);

impl CpuShare {
    pub(crate) fn start() -> CpuShare {
        CpuShare(
            cpu_ticks()
                .zip(own_ticks())
                .map(|((busy, total), own)| (busy.saturating_sub(own), total)),
        )
    }

    /// Percent of all cores' time used by other processes since `start`.
    pub(crate) fn percent(&self) -> Option<f64> {
        let (busy0, total0) = self.0?;
        let ((busy1, total1), own) = cpu_ticks().zip(own_ticks())?;
        let other = busy1.saturating_sub(own).saturating_sub(busy0) as f64;
        let total = total1.saturating_sub(total0).max(1) as f64;
        Some((other / total * 100.0).clamp(0.0, 100.0))
    }
}

/// The share of CPU time other processes used during one phase.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PhaseShare {
    pub phase: String,
    pub other_cpu_percent: f64,
}

/// (busy ticks of all CPUs, total ticks of all CPUs) from /proc/stat.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = read("/proc/stat");
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// CPU ticks used by this process and its waited-for descendants.
fn own_ticks() -> Option<u64> {
    let stat = read("/proc/self/stat");
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields 14-17 (utime, stime, cutime, cstime) are the 12th-15th after the comm.
    let v: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|x| x.parse().ok())
        .collect();
    (v.len() == 4).then(|| v.iter().sum())
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Machine {
    pub(crate) fn probe() -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        Machine {
            cpu_model: field("model name"),
            cores: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            memory_mib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            virtualized: field("flags").split(' ').any(|f| f == "hypervisor"),
            date_utc: now_rfc3339(Precision::Seconds),
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
            other_cpu_percent: None,
            share: CpuShare::start(),
        }
    }

    pub(crate) fn finish(&mut self) {
        self.loadavg_end = loadavg();
        self.other_cpu_percent = self.share.percent();
    }
}

/// One runtime's standing in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RuntimeInfo {
    pub name: String,
    /// `tier` (cordon's own) or `peer`.
    pub kind: &'static str,
    /// `measured`, `skipped` (not installed, or cannot run here) or `failed` (broke mid-run).
    pub status: &'static str,
    pub reason: Option<String>,
    pub version: Option<String>,
    pub isolation: Option<String>,
    pub errors: Vec<String>,
    /// What was not measured for this runtime, and why.
    pub notes: Vec<String>,
}

impl RuntimeInfo {
    pub(crate) fn measured(
        rt: &Runtime,
        status: Option<(&'static str, String)>,
        errors: Vec<String>,
        notes: Vec<String>,
    ) -> RuntimeInfo {
        let (status, reason) = match status {
            None => ("measured", None),
            Some((s, r)) => (s, Some(r)),
        };
        RuntimeInfo {
            name: rt.name.clone(),
            kind: if rt.is_tier { "tier" } else { "peer" },
            status,
            reason,
            version: Some(rt.version.clone()),
            isolation: Some(rt.isolation.to_string()),
            errors,
            notes,
        }
    }

    pub(crate) fn skipped(u: Unavailable) -> RuntimeInfo {
        RuntimeInfo {
            name: u.name,
            kind: if u.is_tier { "tier" } else { "peer" },
            status: "skipped",
            reason: Some(u.reason),
            version: None,
            isolation: None,
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemoryResult {
    /// PSS of the runtime's own processes, MiB.
    #[serde(flatten)]
    pub machinery: Summary,
    /// PSS of the workload, MiB, when it is a separate host process.
    pub payload_mib: Option<Summary>,
    /// The processes counted as the runtime's.
    pub processes: Vec<String>,
    /// True when the workload cannot be told apart and is included (runsc).
    pub payload_included: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuResult {
    /// Best `cpu_ms` over native's best (None without a native run): the best of several
    /// runs of fixed work is the one least disturbed by other load on the host.
    pub ratio: Option<f64>,
    /// The same with medians.
    pub ratio_p50: Option<f64>,
    pub cpu_ms: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DensityCheckpoint {
    pub sandboxes: usize,
    pub pss_mib_per_sandbox: f64,
    /// Median time-to-ready of the sandboxes started since the previous checkpoint.
    pub ready_ms_p50: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DensityResult {
    pub bound: u32,
    pub reached: usize,
    pub stop_reason: Option<String>,
    /// Time from spawning the runtime to the workload's `ready`, in start order.
    pub ready_ms: Vec<f64>,
    pub checkpoints: Vec<DensityCheckpoint>,
    pub teardown_s: f64,
    /// Sandboxes that did not exit after their stdin closed and had to be killed.
    pub killed: usize,
}

/// Every metric, by name (units in the names), then by runtime.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Metrics {
    /// workload (`true`, `python`) -> runtime -> lifecycle milliseconds.
    pub startup_ms: BTreeMap<String, BTreeMap<String, Summary>>,
    pub host_mem_mib: BTreeMap<String, MemoryResult>,
    /// `getppid`, `open_read_close` -> runtime -> ns per call.
    pub syscall_ns: BTreeMap<String, BTreeMap<String, Summary>>,
    pub cpu_ratio: BTreeMap<String, CpuResult>,
    /// `write`, `read` -> runtime -> MiB/s.
    pub io_mib_s: BTreeMap<String, BTreeMap<String, Summary>>,
    pub density: BTreeMap<String, DensityResult>,
    /// The microvm tier's start modes and the bare VMM (when the tier was measured).
    pub microvm_start_ms: Option<crate::microvm::MicrovmStarts>,
}

/// Above this share of CPU time used by other processes, the report warns.
pub(crate) const NOISY_PERCENT: f64 = 10.0;

/// A whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Results {
    pub schema: u32,
    pub command: String,
    pub mode: &'static str,
    pub machine: Machine,
    pub params: Params,
    pub duration_s: f64,
    pub runtimes: Vec<RuntimeInfo>,
    pub metrics: Metrics,
    /// Other processes' share of the CPU time during each phase.
    pub other_cpu_by_phase: Vec<PhaseShare>,
    pub method: Vec<&'static str>,
}

const METHOD: &[&str] = &[
    "startup_ms: wall time from spawning the runtime's command to its exit (create, start, wait, delete), stdin an empty pipe, stdout and stderr to files; warm-up rounds excluded; runtimes interleaved round-robin, the first one rotating every round.",
    "Every runtime sees the same filesystem: the host's /usr read-only behind the /bin, /lib*, /sbin links, a minimal /etc with /etc/ssl, /etc/alternatives and /etc/python3* bound read-only, a 512 MiB tmpfs on /tmp, the benchmark program at /opt/cordon-bench. OCI peers get a bundle doing these mounts themselves; bwrap gets the same binds; chroot gets a root prepared on the host.",
    "Confinement is matched where the peer allows it: runc and crun get cordon's seccomp allowlist by syscall name (argument checks not translated), no capabilities, no_new_privs, memory 1 GiB and pids 1024 limits, cordon's masked and read-only /proc paths; bwrap loads cordon's compiled filter with --seccomp and drops all capabilities (no cgroups); runsc ignores the OCI seccomp section (its Sentry is the boundary).",
    "crun runs in a private mount namespace without /sys/fs/cgroup/unified (it refuses hybrid cgroup hosts); the extra unshare and umount happen in the forked child before exec. That hook makes Rust's std fork instead of posix_spawn, about 0.3 ms more per start here; every other runtime is spawned with posix_spawn.",
    "runsc runs with --platform=ptrace --network=none; its stdio are an empty pipe and files, never the shared /dev/null (it chowns them).",
    "host_mem_mib: PSS from /proc/PID/smaps_rollup summed over the runtime's processes (the spawned command and its descendants) while the workload idles, the workload's own process left out; for runsc the workload runs inside the Sentry and is included.",
    "syscall_ns: cordon-syscall-bench (static) inside each sandbox: median of ~2 ms batches of getppid, and of open+read+close of a 64-byte file in /tmp, over the budget. Runs fall into two modes on this VM (about 250 and 350 ns for a filtered getppid, whatever the runtime), so the headline compares best runs; the tables show both.",
    "cpu_ratio: a fixed multiply-xorshift loop in cordon-syscall-bench; the best run's time over native's best (the p50 ratio is shown too).",
    "io_mib_s: 256 MiB written in 1 MiB chunks to /tmp (tmpfs everywhere; native uses a tmpfs of the same size), fsync, then read back.",
    "The sentry tier is the container tier plus a supervisor: the workload's path and socket syscalls (open, stat, connect...) stop in seccomp user notification and the supervisor performs them, so open+read+close pays the round trip and getppid does not.",
    "syscall_ns notify_floor (only when the sentry tier is measured): `cordon-syscall-bench notify-floor` run natively in the same rounds; a forked child times open+read+close with `openat` trapped by seccomp user notification, and the parent answers with the least work possible (copy the path, open, ADDFD|SEND, close). It is the kernel mechanism's cost on this host, which the sentry cannot go below.",
    "The microvm tier is not given the benchmark program (its read-only mounts need a mount point that exists in the guest's root image or lies below /tmp, and /opt/cordon-bench does not): it runs /bin/true and python3 from its own root image, idles with `sh -c 'echo ready; exec cat >/dev/null'` instead of the benchmark program, and the phases that need the program (syscall_ns, cpu_ratio, io_mib_s) skip it, saying so. Its density bound is lower (each guest holds its memory).",
    "microvm_start_ms: `cordon run --tier microvm -- /bin/true` booted cold (CORDON_MICROVM_SNAPSHOT=0), restored from the snapshot (CORDON_MICROVM_POOL=off; the cordon-microvm row of startup_ms is this mode too), and taken from a warm pool the bench starts (`cordon microvm pool --size 1`; each pool sample waits until the refill is warm, so it is the start with a warm VM idle, not the rate of back-to-back starts: those fall back to a restore once the pool is empty); and qemu_restore: the same qemu command line and snapshot spawned by the bench as a plain child, monitor lines and the command frame written at once, until the agent's exit report (no cordon process). cordon_overhead_ms = p50(snapshot) - p50(qemu_restore). The pool's refill (nice 10) overlaps the other modes' samples.",
    "A slow runtime stops taking startup samples once it has the minimum count and has spent its time budget (params.startup_min_samples, params.startup_budget_s); n in each table says how many it got.",
    "other_cpu_by_phase: CPU time of everything but the bench and the processes it waited for, as a share of both cores, per phase; it includes kernel work done asynchronously for the sandboxes (namespace and cgroup teardown), so a quiet run shows a few percent.",
    "density: idle sandboxes (the workload prints ready and waits for end of file on stdin) started one after another; ready time per sandbox and PSS per sandbox at checkpoints; stops early on failure, low MemAvailable or too many tasks; all released by closing their stdin, leftovers killed and deleted.",
];

impl Results {
    pub(crate) fn new(
        command: String,
        quick: bool,
        machine: Machine,
        params: Params,
        duration_s: f64,
        runtimes: Vec<RuntimeInfo>,
        (metrics, other_cpu_by_phase): (Metrics, Vec<PhaseShare>),
    ) -> Results {
        Results {
            schema: 1,
            command,
            mode: if quick { "quick" } else { "full" },
            machine,
            params,
            duration_s,
            runtimes,
            metrics,
            other_cpu_by_phase,
            method: METHOD.to_vec(),
        }
    }

    /// Runtime names with data, in report order (tiers first, then peers as requested).
    pub(crate) fn names(&self) -> Vec<&str> {
        self.runtimes
            .iter()
            .filter(|r| r.status != "skipped")
            .map(|r| r.name.as_str())
            .collect()
    }

    pub(crate) fn tiers(&self) -> Vec<&str> {
        self.runtimes
            .iter()
            .filter(|r| r.kind == "tier" && r.status != "skipped")
            .map(|r| r.name.as_str())
            .collect()
    }
}

pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "–".to_string()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub(crate) fn fmt_ratio(v: f64) -> String {
    if !v.is_finite() {
        "–".to_string()
    } else if v >= 100.0 {
        format!("{v:.0}×")
    } else if v >= 10.0 {
        format!("{v:.1}×")
    } else {
        format!("{v:.2}×")
    }
}

pub(crate) fn fmt_ns(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} µs", fmt_num(v / 1000.0))
    } else {
        format!("{v:.0} ns")
    }
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => fmt_ratio(a / b),
        _ => "–".to_string(),
    }
}

pub(crate) fn p50(map: Option<&BTreeMap<String, Summary>>, name: &str) -> Option<f64> {
    map.and_then(|m| m.get(name)).map(|s| s.p50)
}

/// The summary printed at the end of a run.
pub(crate) fn terminal_table(r: &Results) -> String {
    let m = &r.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<17} {:>9} {:>9} {:>8} {:>9} {:>9} {:>6} {:>8} {:>8} {:>9}",
        "runtime",
        "true ms",
        "py ms",
        "PSS MiB",
        "getppid",
        "o+r+c",
        "cpu×",
        "wr MiB/s",
        "rd MiB/s",
        "density"
    );
    let cell = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "–".into());
    for rt in &r.runtimes {
        if rt.status == "skipped" {
            let _ = writeln!(
                out,
                "{:<17} skipped: {}",
                rt.name,
                rt.reason.as_deref().unwrap_or("")
            );
            continue;
        }
        let n = rt.name.as_str();
        let density = m
            .density
            .get(n)
            .map(|d| format!("{}/{}", d.reached, d.bound))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "{:<17} {:>9} {:>9} {:>8} {:>9} {:>9} {:>6} {:>8} {:>8} {:>9}{}",
            n,
            cell(p50(m.startup_ms.get("true"), n)),
            cell(p50(m.startup_ms.get("python"), n)),
            cell(m.host_mem_mib.get(n).map(|x| x.machinery.p50)),
            p50(m.syscall_ns.get("getppid"), n)
                .map(fmt_ns)
                .unwrap_or_else(|| "–".into()),
            p50(m.syscall_ns.get("open_read_close"), n)
                .map(fmt_ns)
                .unwrap_or_else(|| "–".into()),
            cell(m.cpu_ratio.get(n).and_then(|c| c.ratio)),
            cell(p50(m.io_mib_s.get("write"), n)),
            cell(p50(m.io_mib_s.get("read"), n)),
            density,
            if rt.status == "failed" {
                "  (failed)"
            } else {
                ""
            }
        );
    }
    out
}

/// Writes bench-results.json, the charts and BENCHMARKS.md under `out`; returns the paths.
pub(crate) fn write_all(r: &Results, out: &Path) -> Result<Vec<PathBuf>, ReportError> {
    let chart_dir = out.join("bench");
    fs::create_dir_all(&chart_dir).map_err(|source| ReportError::Io {
        op: "creating",
        path: chart_dir.clone(),
        source,
    })?;
    let json_path = out.join("bench-results.json");
    let json = serde_json::to_string_pretty(r).map_err(|e| ReportError::Io {
        op: "serializing",
        path: json_path.clone(),
        source: e.into(),
    })?;
    fs::write(&json_path, json + "\n").map_err(|source| ReportError::Io {
        op: "writing",
        path: json_path.clone(),
        source,
    })?;
    let charts = charts::render_all(r, &chart_dir)?;
    let md_path = out.join("BENCHMARKS.md");
    fs::write(&md_path, markdown::render(r, &charts)).map_err(|source| ReportError::Io {
        op: "writing",
        path: md_path.clone(),
        source,
    })?;
    let mut paths = vec![json_path, md_path];
    paths.extend(charts);
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(fmt_num(0.554), "0.55");
        assert_eq!(fmt_num(14.84), "14.8");
        assert_eq!(fmt_num(151.2), "151");
        assert_eq!(fmt_ratio(27.0), "27.0×");
        assert_eq!(fmt_ns(220.4), "220 ns");
        assert_eq!(fmt_ns(23_400.0), "23.4 µs");
    }
}
