//! The escape suite end to end, as root on this machine: one harness run executes every probe
//! bare on the host and inside the container and sentry tiers; the checks are
//! - `container_tier_blocks_every_probe`: each probe is BLOCKED in the container tier, or
//!   UNSUPPORTED there only where the bare host is UNSUPPORTED too (the host lacks the
//!   feature, so there is nothing to block);
//! - `sentry_tier_blocks_every_probe`: the same for the sentry tier;
//! - `bare_host_validates_every_probe`: each probe ESCAPED the bare host, or is UNSUPPORTED
//!   with its reason (a probe that cannot detect its own attack is broken);
//! - `nothing_left_behind`: no process, mount, cgroup, bait or scratch file remains.
//!
//! This binary has its own `main` (`harness = false`) because it doubles as the `cordon run`
//! of the harness: invoked as `escape run ...` it runs the sandbox through the container (or
//! sentry) tier's library exactly as the CLI does, from a fresh single-threaded process (the container
//! tier forks and must not be driven from libtest's threads). The tiers under test are thus
//! always the tree's current code, whatever `cordon` binary may lie around.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cordon_container::ContainerTier;
use cordon_probe::harness::{self, ProbeArgs};
use cordon_probe::matrix::{Column, Matrix};
use cordon_probe::verdict::Verdict;
use cordon_sandbox::parse::{parse_duration, parse_size};
use cordon_sandbox::{RunningSandbox, SandboxSpec, TierKind};
use cordon_sentry::{AuditSink, SentryTier};
use cordon_testkit::is_root;

const PROBE_BIN: &str = env!("CARGO_BIN_EXE_cordon-probe");
/// Where the `cordon run` stand-in records its pid, so its cgroups can be checked.
const PIDS_ENV: &str = "CORDON_PROBE_TEST_PIDS";
const CHECKS: &[&str] = &[
    "container_tier_blocks_every_probe",
    "sentry_tier_blocks_every_probe",
    "bare_host_validates_every_probe",
    "nothing_left_behind",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run") {
        std::process::exit(cordon_run(&args[2..]));
    }
    if args.iter().any(|a| a == "--list") {
        for c in CHECKS {
            println!("{c}: test");
        }
        return;
    }
    if !wanted(&args[1..]) {
        println!("escape: filtered out");
        return;
    }
    if !is_root() {
        for c in CHECKS {
            println!(
                "SKIPPED: {c} needs root (namespaces, cgroups, and probes that attack the host)"
            );
        }
        return;
    }
    std::process::exit(run_checks());
}

/// libtest-style filtering: flags (and the values of those that take one) are ignored; any
/// other argument is a filter that must match a check's name.
fn wanted(args: &[String]) -> bool {
    let mut filters = Vec::new();
    let mut skip_value = false;
    for a in args {
        if skip_value {
            skip_value = false;
        } else if [
            "--test-threads",
            "--skip",
            "--color",
            "--format",
            "--logfile",
            "-Z",
        ]
        .contains(&a.as_str())
        {
            skip_value = true;
        } else if !a.starts_with('-') {
            filters.push(a.as_str());
        }
    }
    filters.is_empty() || CHECKS.iter().any(|c| filters.iter().any(|f| c.contains(f)))
}

/// The `cordon run` options the harness uses, turned into a sandbox of the container tier
/// exactly as cordon-cli's `run` does (spec, create_started, wait, exit code).
fn cordon_run(args: &[String]) -> i32 {
    let Some(dash) = args.iter().position(|a| a == "--") else {
        eprintln!("cordon: no command");
        return 125;
    };
    let mut spec = SandboxSpec::new(args[dash + 1..].to_vec());
    let mut opts = args[..dash].iter();
    while let Some(opt) = opts.next() {
        let Some(value) = opts.next() else {
            eprintln!("cordon: {opt} needs a value");
            return 125;
        };
        let parsed: Result<(), String> = match opt.as_str() {
            "--tier" => value
                .parse::<TierKind>()
                .map(|t| spec.tier = t)
                .map_err(|e| e.to_string()),
            "--mount" => value
                .parse()
                .map(|m| spec.mounts.push(m))
                .map_err(|e| format!("{e}")),
            "--pids" => value
                .parse()
                .map(|n| spec.limits.pids = Some(n))
                .map_err(|e| e.to_string()),
            "--memory" => parse_size(value)
                .map(|n| spec.limits.memory_bytes = Some(n))
                .map_err(|e| e.to_string()),
            "--timeout" => parse_duration(value)
                .map(|d| spec.timeout = Some(d))
                .map_err(|e| e.to_string()),
            other => Err(format!("the stand-in does not know {other}")),
        };
        if let Err(e) = parsed {
            eprintln!("cordon: {opt} {value}: {e}");
            return 125;
        }
    }
    if !matches!(spec.tier, TierKind::Container | TierKind::Sentry) {
        eprintln!(
            "cordon: the {} tier is not available in this build",
            spec.tier
        );
        return 125;
    }
    if let Ok(file) = std::env::var(PIDS_ENV) {
        if let Ok(mut f) = fs::OpenOptions::new().append(true).create(true).open(file) {
            let _ = writeln!(f, "{}", std::process::id());
        }
    }
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let outcome = if spec.tier == TierKind::Sentry {
        SentryTier {
            container: ContainerTier::default(),
            audit: AuditSink::Stderr,
            debug: false,
        }
        .run(&spec)
    } else {
        ContainerTier::default()
            .create_started(&spec)
            .and_then(|s| s.wait(deadline))
    };
    match outcome {
        Ok(o) => o.exit_code(),
        Err(e) => {
            eprintln!("cordon: {e}");
            125
        }
    }
}

/// What may be left behind, before and after.
#[derive(Debug, PartialEq, Eq)]
struct Traces {
    tmp: BTreeSet<String>,
    bait: BTreeSet<String>,
    mounts: Vec<String>,
}

fn names_with_prefix(dir: &str, prefix: &str) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn traces() -> Traces {
    Traces {
        tmp: names_with_prefix("/tmp", "cordon-probe-"),
        bait: names_with_prefix("/var/tmp", &format!("cordon-probe-{}-", std::process::id())),
        mounts: fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("cordon-probe"))
            .map(str::to_string)
            .collect(),
    }
}

fn processes_running(path: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != std::process::id())
                .filter_map(|p| {
                    let cmd = fs::read(format!("/proc/{p}/cmdline")).ok()?;
                    let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                    cmd.contains(path).then(|| format!("{p}: {cmd}"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cgroups_of(pids: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for ctrl in ["memory", "pids", "cpu", "unified", ""] {
        let base = Path::new("/sys/fs/cgroup").join(ctrl).join("cordon");
        for e in fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if pids.iter().any(|p| name.starts_with(&format!("{p}-"))) {
                found.push(e.path());
            }
        }
    }
    found
}

fn check(name: &str, failures: Vec<String>, notes: &[String]) -> bool {
    for n in notes {
        println!("    {n}");
    }
    if failures.is_empty() {
        println!("test {name} ... ok");
        true
    } else {
        println!("test {name} ... FAILED");
        for f in &failures {
            println!("    {f}");
        }
        false
    }
}

fn run_checks() -> i32 {
    let work = std::env::temp_dir().join(format!("cordon-escape-test-{}", std::process::id()));
    fs::create_dir_all(&work).expect("creating the test's directory");
    let json = work.join("matrix.json");
    let pids_file = work.join("stand-in-pids");
    std::env::set_var(PIDS_ENV, &pids_file);
    let before = traces();
    let started = Instant::now();
    let code = harness::run(ProbeArgs {
        tiers: vec![TierKind::Container, TierKind::Sentry],
        all: false,
        runtime_cmds: Vec::new(),
        bare: true,
        json: Some(json.clone()),
        markdown: None,
        probe_bin: Some(PathBuf::from(PROBE_BIN)),
        cordon_bin: Some(std::env::current_exe().expect("locating this test binary")),
        timeout: Duration::from_secs(600),
        probes: Vec::new(),
    });
    println!(
        "harness exit status {code} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let matrix: Option<Matrix> = fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let mut all_ok = true;

    let (container, sentry, bare) = match &matrix {
        Some(m) => (m.column("container"), m.column("sentry"), m.column("bare")),
        None => (None, None, None),
    };
    let result = |col: Option<&Column>, probe: &str| {
        col.and_then(|c| c.results.get(probe))
            .map(|c| (c.result, c.detail.clone()))
    };
    let probes: Vec<String> = cordon_probe::catalog::PROBES
        .iter()
        .map(|p| p.name.to_string())
        .collect();

    // The container and sentry tiers.
    for (check_name, tier, column) in [
        (CHECKS[0], "container", container),
        (CHECKS[1], "sentry", sentry),
    ] {
        let mut failures = Vec::new();
        let mut notes = Vec::new();
        if code != 0 {
            failures.push(format!("the harness exited with {code}, not 0"));
        }
        if column.is_none() {
            failures.push(format!("no {tier} column in the harness's JSON"));
        }
        for p in &probes {
            match (result(column, p), result(bare, p)) {
                (Some((Verdict::Blocked, _)), _) => {}
                (Some((Verdict::Unsupported, d)), Some((Verdict::Unsupported, _))) => {
                    notes.push(format!("{p}: UNSUPPORTED on this host: {d}"));
                }
                (Some((v, d)), _) => failures.push(format!("{p}: {v} in the {tier} tier: {d}")),
                (None, _) => failures.push(format!("{p}: no result in the {tier} tier")),
            }
        }
        all_ok &= check(check_name, failures, &notes);
    }

    // The bare host.
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for p in &probes {
        match result(bare, p) {
            Some((Verdict::Escaped, _)) => {}
            Some((Verdict::Unsupported, d)) if !d.trim().is_empty() => {
                notes.push(format!("{p}: UNSUPPORTED: {d}"));
            }
            Some((v, d)) => failures.push(format!(
                "{p}: {v} on the bare host ({d}): the probe cannot detect its own attack"
            )),
            None => failures.push(format!("{p}: no result on the bare host")),
        }
    }
    all_ok &= check(CHECKS[2], failures, &notes);

    // Leftovers: give killed processes a moment to be reaped.
    let mut failures = Vec::new();
    let stand_ins: Vec<String> = fs::read_to_string(&pids_file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    if stand_ins.is_empty() {
        failures.push("the cordon run stand-in never ran".to_string());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut left = processes_running(PROBE_BIN);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = processes_running(PROBE_BIN);
    }
    failures.extend(
        left.into_iter()
            .map(|p| format!("process left running: {p}")),
    );
    failures.extend(
        cgroups_of(&stand_ins)
            .into_iter()
            .map(|c| format!("cgroup left behind: {}", c.display())),
    );
    let after = traces();
    if after != before {
        failures.push(format!("left behind: before {before:?}, after {after:?}"));
    }
    all_ok &= check(CHECKS[3], failures, &[]);

    let _ = fs::remove_dir_all(&work);
    if all_ok {
        0
    } else {
        101
    }
}
