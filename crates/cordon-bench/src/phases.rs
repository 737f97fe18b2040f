//! The measurement phases. Each one interleaves the runtimes round-robin (the starting
//! runtime rotates every round) so that drift on the host hits all of them alike; density is
//! the exception, one runtime at a time, as its sandboxes accumulate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::fixture::Fixture;
use crate::measure::{mem_available_mib, parse_numbers, ProcTable, RunError, Runner};
use crate::report::{
    CpuResult, CpuShare, DensityCheckpoint, DensityResult, MemoryResult, Metrics, PhaseShare,
    RuntimeInfo,
};
use crate::runtime::{Launcher, Runtime, Workload};
use crate::stats::Summary;
use crate::Params;
use cordon_sandbox::TierKind;

const RUN_TIMEOUT: Duration = Duration::from_secs(60);
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A runtime that fails this many runs in a row is dropped from the rest of the run.
const MAX_CONSECUTIVE_ERRORS: u32 = 3;
/// How long an idle sandbox settles before its memory is read.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, PartialEq)]
enum Status {
    Active,
    Skipped(String),
    Failed(String),
}

/// A runtime's standing during the run.
#[derive(Debug)]
struct Track<'a> {
    rt: &'a Runtime,
    status: Status,
    consecutive: u32,
    errors: Vec<String>,
    /// What was not measured, and why.
    notes: Vec<String>,
}

impl Track<'_> {
    fn active(&self) -> bool {
        self.status == Status::Active
    }

    fn ok(&mut self) {
        self.consecutive = 0;
    }

    /// Records a note once.
    fn note(&mut self, text: String) {
        if !self.notes.contains(&text) {
            eprintln!("cordon bench: {}: {text}", self.rt.name);
            self.notes.push(text);
        }
    }

    /// True (with a note) when `w` cannot be measured in this runtime.
    fn skips(&mut self, metric: &str, w: &Workload) -> bool {
        match self.rt.cannot_run(w) {
            Some(why) => {
                self.note(format!("{metric}: not measured: {why}"));
                true
            }
            None => false,
        }
    }

    fn error(&mut self, phase: &str, e: &RunError) {
        let text = format!("{phase}: {e}");
        eprintln!("cordon bench: {}: {text}", self.rt.name);
        if self.errors.len() < 20 {
            self.errors.push(text.clone());
        }
        self.consecutive += 1;
        if self.consecutive >= MAX_CONSECUTIVE_ERRORS {
            self.status = Status::Failed(format!(
                "{MAX_CONSECUTIVE_ERRORS} failures in a row; last: {text}"
            ));
        }
    }
}

/// Prints a progress line at every tenth of a phase.
struct Progress {
    phase: &'static str,
    total: u32,
    shown: u32,
    start: Instant,
}

impl Progress {
    fn new(phase: &'static str, total: u32) -> Progress {
        eprintln!("cordon bench: {phase}: {total} round(s)");
        Progress {
            phase,
            total,
            shown: 0,
            start: Instant::now(),
        }
    }

    fn tick(&mut self, done: u32) {
        let tenth = done * 10 / self.total.max(1);
        if tenth > self.shown {
            self.shown = tenth;
            eprintln!(
                "cordon bench: {}: {done}/{} rounds, {:.1} s",
                self.phase,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

type Samples = BTreeMap<String, Vec<f64>>;

fn push(map: &mut Samples, rt: &Runtime, v: f64) {
    map.entry(rt.name.clone()).or_default().push(v);
}

fn summarise(map: Samples) -> BTreeMap<String, Summary> {
    map.into_iter()
        .filter_map(|(k, v)| Summary::of(&v).map(|s| (k, s)))
        .collect()
}

/// Calls `f` for every active runtime in every round, rotating the starting runtime.
fn rounds<'a>(
    runner: &Runner,
    tracks: &mut [Track<'a>],
    phase: &'static str,
    total: u32,
    mut f: impl FnMut(u32, &mut Track<'a>) -> Result<(), RunError>,
) {
    if runner.interrupted() {
        return;
    }
    let n = tracks.len();
    let mut progress = Progress::new(phase, total);
    for round in 0..total {
        for k in 0..n {
            if runner.interrupted() {
                return;
            }
            let t = &mut tracks[(round as usize + k) % n];
            if !t.active() {
                continue;
            }
            match f(round, t) {
                Ok(()) => t.ok(),
                Err(RunError::Interrupted) => return,
                Err(e) => t.error(phase, &e),
            }
        }
        progress.tick(round + 1);
    }
}

/// Runs every phase; fills `infos` with each runtime's standing.
pub(crate) fn run_all(
    runner: &Runner,
    fx: &mut Fixture,
    runtimes: &[Runtime],
    p: &Params,
    infos: &mut Vec<RuntimeInfo>,
) -> (Metrics, Vec<PhaseShare>) {
    let mut tracks: Vec<Track<'_>> = runtimes
        .iter()
        .map(|rt| Track {
            rt,
            status: Status::Active,
            consecutive: 0,
            errors: Vec::new(),
            notes: Vec::new(),
        })
        .collect();
    let mut m = Metrics::default();

    // Smoke test: a runtime that cannot run /bin/true here is skipped, with its error.
    for t in tracks.iter_mut() {
        if runner.interrupted() {
            break;
        }
        if let Err(e) = runner.run(t.rt, fx, &Workload::True, RUN_TIMEOUT) {
            eprintln!("cordon bench: skipping {}: {e}", t.rt.name);
            t.status = Status::Skipped(format!("cannot run /bin/true here: {e}"));
        }
    }
    let mut shares = Vec::new();
    let mut record = |phase: &str, since: CpuShare| {
        if let Some(percent) = since.percent() {
            shares.push(PhaseShare {
                phase: phase.to_string(),
                other_cpu_percent: percent,
            });
        }
    };
    let since = CpuShare::start();
    startup(runner, fx, &mut tracks, p, &mut m);
    record("startup_ms", since);
    let microvm_bin = tracks.iter().find_map(|t| match &t.rt.launcher {
        Launcher::Cordon {
            bin,
            tier: TierKind::Microvm,
        } if t.active() => Some(bin.clone()),
        _ => None,
    });
    if let (Some(bin), false) = (microvm_bin, runner.interrupted()) {
        let since = CpuShare::start();
        let cold_rounds = if p.runs <= 25 { 3 } else { 5 };
        m.microvm_start_ms = Some(crate::microvm::measure(
            runner,
            &bin,
            &fx.dir,
            p.warmup.min(2),
            p.runs.min(30),
            cold_rounds,
        ));
        record("microvm_start_ms", since);
    }
    let since = CpuShare::start();
    syscalls(runner, fx, &mut tracks, p, &mut m);
    record("syscall_ns", since);
    let since = CpuShare::start();
    cpu(runner, fx, &mut tracks, p, &mut m);
    record("cpu_ratio", since);
    let since = CpuShare::start();
    io(runner, fx, &mut tracks, p, &mut m);
    record("io_mib_s", since);
    let since = CpuShare::start();
    memory(runner, fx, &mut tracks, p, &mut m);
    record("host_mem_mib", since);
    if p.density_bound > 0 {
        let since = CpuShare::start();
        for t in tracks.iter_mut() {
            if t.active() && !runner.interrupted() {
                let d = density(runner, fx, t.rt, p);
                m.density.insert(t.rt.name.clone(), d);
            }
        }
        record("density", since);
    }
    for t in tracks {
        infos.push(RuntimeInfo::measured(
            t.rt,
            match t.status {
                Status::Active => None,
                Status::Skipped(r) => Some(("skipped", r)),
                Status::Failed(r) => Some(("failed", r)),
            },
            t.errors,
            t.notes,
        ));
    }
    (m, shares)
}

fn startup(runner: &Runner, fx: &Fixture, tracks: &mut [Track<'_>], p: &Params, m: &mut Metrics) {
    let workloads = [Workload::True, Workload::Python];
    let mut samples: Vec<Samples> = vec![Samples::new(); workloads.len()];
    let budget_ms = p.startup_budget_s as f64 * 1e3;
    rounds(
        runner,
        tracks,
        "startup_ms",
        p.warmup + p.runs,
        |round, t| {
            for (w, s) in workloads.iter().zip(samples.iter_mut()) {
                // A slow runtime stops once it has enough samples and has used its time.
                let taken = s.get(&t.rt.name).map(|v| (v.len(), v.iter().sum::<f64>()));
                if let Some((n, spent)) = taken {
                    if n >= p.startup_min_samples as usize && spent >= budget_ms {
                        t.note(format!(
                            "startup_ms {}: {n} samples (its {} s time budget was used up)",
                            w.key(),
                            p.startup_budget_s
                        ));
                        continue;
                    }
                }
                let out = runner.run(t.rt, fx, w, RUN_TIMEOUT)?;
                if round >= p.warmup {
                    push(s, t.rt, ms(out.elapsed));
                }
            }
            Ok(())
        },
    );
    for (w, s) in workloads.iter().zip(samples) {
        m.startup_ms.insert(w.key().to_string(), summarise(s));
    }
}

fn numbers(
    runner: &Runner,
    fx: &Fixture,
    rt: &Runtime,
    w: &Workload,
    keys: &[&str],
) -> Result<Vec<f64>, RunError> {
    let out = runner.run(rt, fx, w, RUN_TIMEOUT)?;
    let nums = parse_numbers(&out.stdout)?;
    keys.iter()
        .map(|k| {
            nums.get(*k)
                .copied()
                .ok_or_else(|| RunError::Output(out.stdout.trim().to_string()))
        })
        .collect()
}

fn syscalls(runner: &Runner, fx: &Fixture, tracks: &mut [Track<'_>], p: &Params, m: &mut Metrics) {
    let w = Workload::Syscalls {
        budget_ms: p.syscall_budget_ms,
    };
    let floor_w = Workload::NotifyFloor {
        budget_ms: p.syscall_budget_ms,
    };
    let want_floor = tracks.iter().any(|t| {
        matches!(
            t.rt.launcher,
            Launcher::Cordon {
                tier: TierKind::Sentry,
                ..
            }
        )
    });
    let (mut getppid, mut orc, mut floor) = (Samples::new(), Samples::new(), Samples::new());
    rounds(runner, tracks, "syscall_ns", p.syscall_reps, |_, t| {
        if t.skips("syscall_ns", &w) {
            return Ok(());
        }
        let v = numbers(runner, fx, t.rt, &w, &["getppid_ns", "open_read_close_ns"])?;
        push(&mut getppid, t.rt, v[0]);
        push(&mut orc, t.rt, v[1]);
        // The sentry mechanism's floor, in the same rounds as every runtime's figures.
        if want_floor && t.rt.cannot_run(&floor_w).is_none() {
            let v = numbers(runner, fx, t.rt, &floor_w, &["notify_floor_ns"])?;
            push(&mut floor, t.rt, v[0]);
        }
        Ok(())
    });
    m.syscall_ns.insert("getppid".into(), summarise(getppid));
    m.syscall_ns
        .insert("open_read_close".into(), summarise(orc));
    if !floor.is_empty() {
        m.syscall_ns.insert("notify_floor".into(), summarise(floor));
    }
}

fn cpu(runner: &Runner, fx: &Fixture, tracks: &mut [Track<'_>], p: &Params, m: &mut Metrics) {
    let w = Workload::Cpu { iters: p.cpu_iters };
    let mut samples = Samples::new();
    rounds(runner, tracks, "cpu_ratio", p.cpu_reps, |_, t| {
        if t.skips("cpu_ratio", &w) {
            return Ok(());
        }
        let v = numbers(runner, fx, t.rt, &w, &["cpu_ms"])?;
        push(&mut samples, t.rt, v[0]);
        Ok(())
    });
    let summaries = summarise(samples);
    let native = summaries.get("native").map(|s| (s.min, s.p50));
    for (name, s) in summaries {
        m.cpu_ratio.insert(
            name,
            CpuResult {
                ratio: native.map(|(best, _)| s.min / best),
                ratio_p50: native.map(|(_, p50)| s.p50 / p50),
                cpu_ms: s,
            },
        );
    }
}

fn io(runner: &Runner, fx: &Fixture, tracks: &mut [Track<'_>], p: &Params, m: &mut Metrics) {
    let w = Workload::Io { mib: p.io_mib };
    let (mut write, mut read) = (Samples::new(), Samples::new());
    rounds(runner, tracks, "io_mib_s", p.io_reps, |_, t| {
        if t.skips("io_mib_s", &w) {
            return Ok(());
        }
        let v = numbers(runner, fx, t.rt, &w, &["write_mib_s", "read_mib_s"])?;
        push(&mut write, t.rt, v[0]);
        push(&mut read, t.rt, v[1]);
        Ok(())
    });
    m.io_mib_s.insert("write".into(), summarise(write));
    m.io_mib_s.insert("read".into(), summarise(read));
}

/// Marks that a cordon process had to be killed, so its cgroups get collected.
fn note_killed(fx: &mut Fixture, rt: &Runtime) {
    if let Launcher::Cordon { bin, .. } = &rt.launcher {
        fx.cordon_gc = Some(bin.clone());
    }
}

fn memory(
    runner: &Runner,
    fx: &mut Fixture,
    tracks: &mut [Track<'_>],
    p: &Params,
    m: &mut Metrics,
) {
    let mut machinery = Samples::new();
    let mut payload = Samples::new();
    let mut processes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut killed: Vec<&Runtime> = Vec::new();
    rounds(runner, tracks, "host_mem_mib", p.mem_reps, |_, t| {
        let sandbox = runner.launch_idle(t.rt, fx, READY_TIMEOUT)?;
        std::thread::sleep(SETTLE);
        let mem = ProcTable::scan().memory(sandbox.pid(), t.rt.payload_separable());
        if !sandbox.finish(Instant::now() + Duration::from_secs(30)) {
            killed.push(t.rt);
        }
        push(&mut machinery, t.rt, mem.machinery_kib as f64 / 1024.0);
        push(&mut payload, t.rt, mem.payload_kib as f64 / 1024.0);
        processes.insert(t.rt.name.clone(), mem.processes);
        Ok(())
    });
    for rt in killed {
        note_killed(fx, rt);
    }
    let payload = summarise(payload);
    for (name, s) in summarise(machinery) {
        let rt = tracks.iter().find(|t| t.rt.name == name).map(|t| t.rt);
        let separable = rt.is_some_and(Runtime::payload_separable);
        m.host_mem_mib.insert(
            name.clone(),
            MemoryResult {
                machinery: s,
                payload_mib: if separable {
                    payload.get(&name).cloned()
                } else {
                    None
                },
                processes: processes.remove(&name).unwrap_or_default(),
                payload_included: !separable,
            },
        );
    }
}

/// Tasks (threads) on the host, and the most the kernel allows.
fn task_counts() -> Option<(u64, u64)> {
    let load = std::fs::read_to_string("/proc/loadavg").ok()?;
    let total = load
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    let max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some((total, max))
}

fn density(runner: &Runner, fx: &mut Fixture, rt: &Runtime, p: &Params) -> DensityResult {
    let bound = rt.density_cap(p.density_bound, p.density_vm_bound);
    eprintln!(
        "cordon bench: density: {} up to {bound} idle sandboxes",
        rt.name
    );
    let every = (bound / 10).max(1);
    let mut live = Vec::new();
    let mut ready_ms = Vec::new();
    let mut checkpoints = Vec::new();
    let mut stop_reason = None;
    let mut last_checkpoint = 0usize;
    for i in 1..=bound {
        if runner.interrupted() {
            stop_reason = Some("interrupted".to_string());
            break;
        }
        if let Some(avail) = mem_available_mib() {
            if avail < p.density_mem_floor_mib {
                stop_reason = Some(format!(
                    "host MemAvailable {avail} MiB fell below the {} MiB floor",
                    p.density_mem_floor_mib
                ));
                break;
            }
        }
        if let Some((tasks, max)) = task_counts() {
            if tasks * 2 > max {
                stop_reason = Some(format!(
                    "{tasks} tasks on the host, over half of pid_max {max}"
                ));
                break;
            }
        }
        match runner.launch_idle(rt, fx, READY_TIMEOUT) {
            Ok(sb) => {
                ready_ms.push(ms(sb.ready));
                live.push(sb);
            }
            Err(e) => {
                stop_reason = Some(format!("sandbox {i} failed: {e}"));
                break;
            }
        }
        if i % every == 0 || i == bound {
            let table = ProcTable::scan();
            let total_kib: u64 = live
                .iter()
                .map(|sb| table.memory(sb.pid(), rt.payload_separable()).machinery_kib)
                .sum();
            let window = Summary::of(&ready_ms[last_checkpoint..]);
            last_checkpoint = ready_ms.len();
            checkpoints.push(DensityCheckpoint {
                sandboxes: live.len(),
                pss_mib_per_sandbox: total_kib as f64 / 1024.0 / live.len() as f64,
                ready_ms_p50: window.map(|s| s.p50).unwrap_or(f64::NAN),
            });
            eprintln!(
                "cordon bench: density: {}: {} running, last ready in {:.1} ms",
                rt.name,
                live.len(),
                ready_ms.last().copied().unwrap_or(f64::NAN)
            );
        }
    }
    let reached = live.len();
    let t = Instant::now();
    for sb in live.iter_mut() {
        sb.release();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let killed = live
        .into_iter()
        .map(|sb| sb.finish(deadline))
        .filter(|exited| !exited)
        .count();
    if killed > 0 {
        note_killed(fx, rt);
    }
    let leftovers = fx.reap_containers();
    if !leftovers.is_empty() {
        eprintln!(
            "cordon bench: density: {}: deleted {} leftover container(s)",
            rt.name,
            leftovers.len()
        );
    }
    DensityResult {
        bound,
        reached,
        stop_reason,
        ready_ms,
        checkpoints,
        teardown_s: t.elapsed().as_secs_f64(),
        killed,
    }
}
