//! `cordon bench`: cordon's tiers and the peer runtimes installed on the host, measured side
//! by side in one run, with one report.
//!
//! A run builds a temporary [fixture](fixture) (a root filesystem skeleton that gives every
//! runtime the same view as cordon's default rootfs: the host's /usr read-only behind the
//! /bin, /lib*, /sbin links, a minimal /etc, a 512 MiB tmpfs on /tmp), then measures in
//! phases, each interleaving the runtimes round-robin so that drift hits all of them alike:
//!
//! 1. `startup_ms`: full lifecycle of `/bin/true` and of `python3 -c pass` (after warm-up);
//! 2. `syscall_ns`: getppid and open+read+close, by `cordon-syscall-bench` inside each sandbox;
//! 3. `cpu_ratio`: a fixed integer loop, against native;
//! 4. `io_mib_s`: writing then reading a 256 MiB file in the sandbox's /tmp;
//! 5. `host_mem_mib`: PSS of the runtime's own processes while the workload idles;
//! 6. `density`: idle sandboxes started one after another up to a bound, with the startup
//!    latency of each and PSS per sandbox along the way; all released afterwards;
//! 7. `microvm_start_ms` (with the microvm tier): cold boot, snapshot restore, warm pool and
//!    a bare qemu restore side by side ([`microvm`]).
//!
//! Results go to `bench-results.json` (machine, versions, raw samples, summaries),
//! `BENCHMARKS.md` and SVG charts under `bench/`. Everything the run created (containers,
//! mounts, the temporary directory) is removed at the end, on error and on Ctrl-C.

mod charts;
mod fixture;
mod markdown;
mod measure;
mod microvm;
pub mod notify_floor;
mod oci;
mod phases;
mod report;
mod runtime;
mod stats;
mod sys;
mod syscall_names;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use cordon_sandbox::{exit_code, TierKind};

pub use runtime::Peer;

use crate::fixture::Fixture;
use crate::measure::Runner;
use crate::report::{Machine, Results, RuntimeInfo};
use crate::runtime::{OciEngine, Workload};

const EXIT_STATUS: &str = "\
Exit status:
  0    every available runtime was measured (peers that are not installed are
       reported as skipped, with the reason)
  1    some runtime failed during the run (the report says which and why)
  125  the bench itself failed (bad option, not root, missing binary, cannot write)
  130  interrupted (Ctrl-C); everything created was removed";

/// Options of `cordon bench`.
#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_STATUS)]
pub struct BenchArgs {
    /// cordon tiers to measure, comma-separated: container, sentry, microvm (one that cannot
    /// run here is reported as skipped, with the reason)
    #[arg(long, value_delimiter = ',', default_value = "container,sentry,microvm", value_name = "TIER,...",
          value_parser = |s: &str| s.parse::<TierKind>().map_err(|e| e.to_string()))]
    pub tiers: Vec<TierKind>,
    /// Peer runtimes, comma-separated: native, chroot, bwrap, runc, crun, runsc, qemu
    /// (each is optional: one that is not installed is reported as skipped)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "native,chroot,bwrap,runc,crun,runsc,qemu",
        value_name = "PEER,..."
    )]
    pub peers: Vec<Peer>,
    /// Fewer samples, at most 20 sandboxes for density (5 microVMs): under 3 minutes
    #[arg(long)]
    pub quick: bool,
    /// Directory for bench-results.json, BENCHMARKS.md and bench/*.svg
    #[arg(long, default_value = "bench-out", value_name = "DIR")]
    pub out: PathBuf,
    /// Startup samples per runtime and workload, instead of the mode's (200 full, 25 quick);
    /// also caps the repetitions of the other phases (tests use 2 or 3)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: Option<u32>,
    /// Most idle sandboxes per runtime in the density phase, instead of the mode's
    /// (200 full, 20 quick; microVMs at most 30 and 5); 0 skips the phase
    #[arg(long, value_name = "N")]
    pub density: Option<u32>,
    /// The in-sandbox benchmark program [default: cordon-syscall-bench next to cordon]
    #[arg(long, value_name = "PATH")]
    pub bench_bin: Option<PathBuf>,
    /// The cordon binary whose tiers are measured [default: the running cordon]
    #[arg(long, value_name = "PATH")]
    pub cordon_bin: Option<PathBuf>,
}

/// Sample counts and sizes of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Params {
    pub warmup: u32,
    pub runs: u32,
    pub syscall_reps: u32,
    pub syscall_budget_ms: u64,
    pub cpu_reps: u32,
    pub cpu_iters: u64,
    pub io_reps: u32,
    pub io_mib: u64,
    pub mem_reps: u32,
    /// Startup samples stop for a runtime and workload once it has this many...
    pub startup_min_samples: u32,
    /// ...and has spent this long on them (a microVM takes seconds per run here).
    pub startup_budget_s: u64,
    pub density_bound: u32,
    /// Density bound for the microvm tier (each guest holds its memory).
    pub density_vm_bound: u32,
    /// Stop the density phase when MemAvailable drops below this.
    pub density_mem_floor_mib: u64,
}

impl Params {
    fn new(args: &BenchArgs) -> Params {
        let mut p = if args.quick {
            Params {
                warmup: 3,
                runs: 25,
                syscall_reps: 3,
                syscall_budget_ms: 150,
                cpu_reps: 3,
                cpu_iters: 150_000_000,
                io_reps: 2,
                io_mib: 256,
                mem_reps: 3,
                startup_min_samples: 5,
                startup_budget_s: 8,
                density_bound: 20,
                density_vm_bound: 5,
                density_mem_floor_mib: mem_floor_mib(),
            }
        } else {
            Params {
                warmup: 10,
                runs: 200,
                syscall_reps: 10,
                syscall_budget_ms: 300,
                cpu_reps: 7,
                cpu_iters: 300_000_000,
                io_reps: 5,
                io_mib: 256,
                mem_reps: 7,
                startup_min_samples: 20,
                startup_budget_s: 60,
                density_bound: 200,
                density_vm_bound: 30,
                density_mem_floor_mib: mem_floor_mib(),
            }
        };
        if let Some(n) = args.runs {
            p.runs = n;
            p.warmup = p.warmup.min(n.div_ceil(2));
            p.syscall_reps = p.syscall_reps.min(n);
            p.cpu_reps = p.cpu_reps.min(n);
            p.io_reps = p.io_reps.min(n);
            p.mem_reps = p.mem_reps.min(n);
            p.startup_min_samples = p.startup_min_samples.min(n);
        }
        if let Some(d) = args.density {
            p.density_bound = d;
            p.density_vm_bound = p.density_vm_bound.min(d);
        }
        p
    }

    pub(crate) fn workloads(&self) -> Vec<Workload> {
        vec![
            Workload::True,
            Workload::Python,
            Workload::Syscalls {
                budget_ms: self.syscall_budget_ms,
            },
            Workload::Cpu {
                iters: self.cpu_iters,
            },
            Workload::Io { mib: self.io_mib },
            Workload::Idle,
        ]
    }
}

/// The density phase stops when MemAvailable falls below 2 GiB or 15% of the host's memory,
/// whichever is more, leaving room for everything else on the machine.
fn mem_floor_mib() -> u64 {
    let total_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    (total_mib * 15 / 100).max(2048)
}

fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for &i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The command line as typed, with the binary shown as `cordon`.
fn command_line() -> String {
    let mut parts = vec!["cordon".to_string()];
    for a in std::env::args().skip(1) {
        if a.is_empty()
            || a.chars()
                .any(|c| !(c.is_ascii_alphanumeric() || "-_=,./:+".contains(c)))
        {
            parts.push(format!("'{}'", a.replace('\'', "'\\''")));
        } else {
            parts.push(a);
        }
    }
    parts.join(" ")
}

fn locate(args: &BenchArgs) -> Result<(PathBuf, PathBuf), String> {
    let cordon = match &args.cordon_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("finding the cordon binary: {e}"))?,
    };
    if !cordon.is_file() {
        return Err(format!("{} does not exist", cordon.display()));
    }
    let bench = match &args.bench_bin {
        Some(p) => p.clone(),
        None => cordon
            .parent()
            .unwrap_or(Path::new("."))
            .join("cordon-syscall-bench"),
    };
    if !bench.is_file() {
        return Err(format!(
            "{} does not exist (build it with `cargo build -p cordon-bench` or pass --bench-bin)",
            bench.display()
        ));
    }
    Ok((cordon, bench))
}

/// Runs the benchmark; returns the exit status (see `EXIT_STATUS`).
pub fn run(args: BenchArgs) -> i32 {
    let started = Instant::now();
    if !sys::is_root() {
        eprintln!("cordon bench: needs root (cordon's container tier, OCI runtimes and the chroot peer's mounts)");
        return exit_code::RUNTIME_FAILED;
    }
    let (cordon, bench_src) = match locate(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cordon bench: {e}");
            return exit_code::RUNTIME_FAILED;
        }
    };
    let tiers = dedup(&args.tiers);
    let peers = dedup(&args.peers);
    let params = Params::new(&args);

    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while cleaning up ends the process at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, interrupted.clone());
        let _ = signal_hook::flag::register(sig, interrupted.clone());
    }
    sys::raise_nofile_limit();
    let templates: Vec<_> = [
        (OciEngine::Runc, "runc"),
        (OciEngine::Crun, "crun"),
        (OciEngine::Runsc, "runsc"),
    ]
    .into_iter()
    .map(|(e, bin)| runtime::state_template(e, PathBuf::from(bin), fixture::hybrid_cgroup2()))
    .collect();
    for dir in fixture::reap_stale(&templates) {
        eprintln!(
            "cordon bench: removed {} left by an earlier run",
            dir.display()
        );
    }

    let machine_before = Machine::probe();
    let mut fx = match Fixture::new(&bench_src, &params.workloads()) {
        Ok(fx) => fx,
        Err(e) => {
            report_error(&e);
            return exit_code::RUNTIME_FAILED;
        }
    };
    let (runtimes, unavailable) = runtime::detect(&cordon, &tiers, &peers, &mut fx);
    for u in &unavailable {
        eprintln!("cordon bench: skipping {}: {}", u.name, u.reason);
    }
    let runner = Runner::new(interrupted.clone());
    let mut infos: Vec<RuntimeInfo> = Vec::new();
    let outcome = phases::run_all(&runner, &mut fx, &runtimes, &params, &mut infos);
    drop(runner);
    // Containers, mounts and the temporary directory go now, before writing the report.
    drop(fx);
    if interrupted.load(Ordering::Relaxed) {
        eprintln!("cordon bench: interrupted; everything it created has been removed");
        return 130;
    }
    for u in unavailable {
        infos.push(RuntimeInfo::skipped(u));
    }
    let mut machine = machine_before;
    machine.finish();
    if let Some(p) = machine
        .other_cpu_percent
        .filter(|p| *p > report::NOISY_PERCENT)
    {
        eprintln!("cordon bench: warning: other processes used {p:.0}% of the CPU time during the run; the figures are disturbed");
    }
    let results = Results::new(
        command_line(),
        args.quick,
        machine,
        params,
        started.elapsed().as_secs_f64(),
        infos,
        outcome,
    );
    match report::write_all(&results, &args.out) {
        Ok(paths) => {
            print!("{}", report::terminal_table(&results));
            for p in paths {
                eprintln!("cordon bench: wrote {}", p.display());
            }
        }
        Err(e) => {
            report_error(&e);
            return exit_code::RUNTIME_FAILED;
        }
    }
    if results.runtimes.iter().any(|r| r.status == "failed") {
        1
    } else {
        0
    }
}

fn report_error(err: &dyn std::error::Error) {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    eprintln!("cordon bench: {line}");
}
