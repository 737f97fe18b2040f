//! The container tier on a cgroup2 hierarchy: the sandbox is cloned straight into its own
//! group (`CLONE_INTO_CGROUP`), a timeout kills the whole group, and the group is removed.
//!
//! On a pure v2 host this uses /sys/fs/cgroup; on a hybrid host (v1 controllers, cgroup2 at
//! /sys/fs/cgroup/unified) it uses the unified hierarchy, which has no memory/pids/cpu
//! controllers there, so the specs below ask for no limits and the limit writes themselves are
//! not exercised (a second test checks that asking for one is a clear error instead). Device
//! rules, which v2 enforces with an eBPF program rather than a controller, are tested for real.

use std::fs;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cordon_container::{sandbox_config, ContainerTier, DeviceRule};
use cordon_sandbox::{ExitOutcome, RunningSandbox, SandboxSpec};
use cordon_testkit::{cgroup2_mount, require_root};

/// The cgroup2 mount to test on; without one the test prints why it is skipped and returns.
macro_rules! cgroup2_or_skip {
    () => {
        match cgroup2_mount() {
            Ok(root) => root,
            Err(why) => {
                eprintln!("SKIPPED: {}: {why}", module_path!());
                return;
            }
        }
    };
}

/// The tests look at the set of groups under cordon/: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tier(root: &Path) -> ContainerTier {
    ContainerTier {
        cgroup_root: root.to_path_buf(),
        ..ContainerTier::default()
    }
}

fn unlimited(argv: &[&str]) -> SandboxSpec {
    let mut spec = SandboxSpec::new(argv.iter().map(|s| s.to_string()).collect());
    spec.limits.memory_bytes = None;
    spec.limits.pids = None;
    spec.limits.cpu_millis = None;
    spec
}

fn sandbox_groups(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("cordon"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sandbox_runs_in_its_own_group_and_a_timeout_kills_the_group() {
    require_root!();
    let root = cgroup2_or_skip!();
    let _one_at_a_time = serial();
    // A parent that forks a grandchild: killing the group must take both.
    let spec = unlimited(&["/bin/sh", "-c", "sleep 60 & sleep 60; wait"]);
    let running = tier(&root)
        .create_started(&spec)
        .expect("creating the sandbox");
    let dirs = running.cgroup_dirs().to_vec();
    assert_eq!(dirs.len(), 1, "one cgroup2 group expected: {dirs:?}");
    let group = dirs[0].clone();
    assert!(
        group.starts_with(root.join("cordon")),
        "{} is not under {}/cordon",
        group.display(),
        root.display()
    );
    // The init was cloned into the group: it is there from its first instruction.
    let procs = fs::read_to_string(group.join("cgroup.procs")).expect("reading cgroup.procs");
    let init = running.pid().to_string();
    assert!(
        procs.lines().any(|l| l == init),
        "init {init} not in {}: {procs:?}",
        group.display()
    );
    // Wait until both sleeps run inside the group, so the kill has something to take.
    let until = Instant::now() + Duration::from_secs(10);
    let mut members = Vec::new();
    while Instant::now() < until {
        members = fs::read_to_string(group.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if members.len() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        members.len() >= 4,
        "init, sh and two sleeps expected: {members:?}"
    );
    let started = Instant::now();
    let outcome = running
        .wait(Some(Instant::now() + Duration::from_millis(300)))
        .expect("waiting");
    assert!(
        matches!(outcome, ExitOutcome::TimedOut),
        "outcome {outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout took {:?}",
        started.elapsed()
    );
    for pid in &members {
        assert!(
            !Path::new("/proc").join(pid).exists()
                || fs::read_to_string(Path::new("/proc").join(pid).join("stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "process {pid} of the group outlived the sandbox"
        );
    }
    assert!(!group.exists(), "{} left behind", group.display());
}

#[test]
fn asking_for_a_missing_controller_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    let root = cgroup2_or_skip!();
    let _one_at_a_time = serial();
    let controllers = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "pids") {
        eprintln!(
            "SKIPPED: {}: {} has the pids controller (pure v2 host): nothing is missing",
            module_path!(),
            root.display()
        );
        return;
    }
    let before = sandbox_groups(&root);
    let mut spec = unlimited(&["/bin/true"]);
    spec.limits.pids = Some(64);
    let err = match tier(&root).create_started(&spec) {
        Ok(_) => panic!("a pids limit without the pids controller was accepted"),
        Err(e) => e,
    };
    let chain = {
        let mut s = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(e) = src {
            s.push_str(": ");
            s.push_str(&e.to_string());
            src = e.source();
        }
        s
    };
    assert!(
        chain.contains("pids controller is not enabled"),
        "unclear error: {chain}"
    );
    assert_eq!(sandbox_groups(&root), before, "a group was left behind");
}

/// Device rules on cgroup2 are an eBPF program on the group: with only /dev/null readable and
/// writable (and mknod of character devices, which the sandbox's /dev setup needs), the
/// sandbox can write /dev/null but not read /dev/zero (both nodes exist in its /dev); without
/// rules the same script reads /dev/zero, so the denial is the program's doing.
#[test]
fn device_rules_become_an_ebpf_program_that_denies_other_devices() {
    require_root!();
    let root = cgroup2_or_skip!();
    let _one_at_a_time = serial();
    let script =
        "echo x > /dev/null || exit 3; head -c1 /dev/zero >/dev/null 2>/dev/null && exit 4; exit 0";
    let spec = unlimited(&["/bin/sh", "-c", script]);
    let run = |devices: Option<Vec<DeviceRule>>| {
        let mut cfg = sandbox_config(&spec, 0, 0);
        cfg.cgroup.devices = devices;
        let running = tier(&root)
            .create_started_config(&cfg)
            .expect("creating the sandbox");
        let group = running.cgroup_dirs()[0].clone();
        let outcome = running
            .wait(Some(Instant::now() + Duration::from_secs(30)))
            .expect("waiting");
        assert!(!group.exists(), "{} left behind", group.display());
        outcome
    };
    // mknod of any character device (the sandbox creates its /dev nodes), read/write /dev/null.
    let null_only = vec![
        DeviceRule {
            allow: true,
            kind: 'c',
            major: None,
            minor: None,
            access: "m".into(),
        },
        DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(1),
            minor: Some(3),
            access: "rwm".into(),
        },
    ];
    let filtered = run(Some(null_only));
    assert!(
        matches!(filtered, ExitOutcome::Exited(0)),
        "with only /dev/null allowed: {filtered:?} (3: /dev/null denied, 4: /dev/zero readable)"
    );
    let open = run(None);
    assert!(
        matches!(open, ExitOutcome::Exited(4)),
        "without device rules /dev/zero should be readable: {open:?}"
    );
}
