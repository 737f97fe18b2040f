//! End-to-end: `cordon bench --quick` against a few cheap peers writes a complete report and
//! leaves nothing behind. Checks the report's shape (metric names, statuses, files), not the
//! numbers.
//!
//! Needs root (cordon's container tier, mounts); without it the test prints why it is skipped.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use cordon_testkit::{require_root, workspace_binary};

const BENCH_BIN: &str = env!("CARGO_BIN_EXE_cordon-syscall-bench");

/// The `cordon` binary of this build (`cargo test -p cordon-bench` alone does not build it).
fn cordon_binary() -> PathBuf {
    workspace_binary(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "cordon-cli",
        "cordon",
    )
}

/// Entries of the temporary directory left by bench runs.
fn fixtures() -> BTreeSet<String> {
    fs::read_dir(std::env::temp_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("cordon-bench."))
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points of bench fixtures. Another bench running at the same time may hold its own,
/// so the test compares the sets before and after rather than expecting none.
fn fixture_mounts() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.contains("/cordon-bench."))
        .map(str::to_string)
        .collect()
}

fn payload_processes() -> Vec<String> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(comm) = fs::read_to_string(e.path().join("comm")) {
            if comm.starts_with("cordon-syscall") {
                found.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[test]
fn quick_bench_writes_a_complete_report_and_cleans_up() {
    require_root!("cordon's container tier, mounts");
    let cordon = cordon_binary();
    let before = fixtures();
    let mounts_before = fixture_mounts();
    let out = std::env::temp_dir().join(format!("cordon-bench-test-out.{}", std::process::id()));
    let _ = fs::remove_dir_all(&out);
    let result = Command::new(&cordon)
        .args(["bench", "--quick", "--tiers", "container"])
        .args([
            "--peers",
            "native,bwrap,crun,qemu",
            "--runs",
            "2",
            "--density",
            "3",
        ])
        .arg("--out")
        .arg(&out)
        .arg("--bench-bin")
        .arg(BENCH_BIN)
        .output()
        .expect("running cordon bench");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(
        result.status.code(),
        Some(0),
        "cordon bench failed:\n{stderr}"
    );

    let json = fs::read_to_string(out.join("bench-results.json")).expect("bench-results.json");
    let r: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    for key in ["cpu_model", "cores", "memory_mib", "kernel", "date_utc"] {
        assert!(!r["machine"][key].is_null(), "machine.{key} missing");
    }
    let m = &r["metrics"];
    for (metric, sub) in [
        ("startup_ms", Some("true")),
        ("startup_ms", Some("python")),
        ("syscall_ns", Some("getppid")),
        ("syscall_ns", Some("open_read_close")),
        ("io_mib_s", Some("write")),
        ("io_mib_s", Some("read")),
        ("host_mem_mib", None),
        ("cpu_ratio", None),
        ("density", None),
    ] {
        let by_runtime = match sub {
            Some(s) => &m[metric][s],
            None => &m[metric],
        };
        for rt in ["cordon-container", "native"] {
            assert!(
                by_runtime[rt].is_object(),
                "{metric}{} has no entry for {rt}",
                sub.map(|s| format!(".{s}")).unwrap_or_default()
            );
        }
    }
    let p50 = &m["startup_ms"]["true"]["cordon-container"]["p50"];
    assert!(p50.as_f64().is_some_and(|v| v > 0.0), "startup p50 {p50}");
    assert_eq!(
        m["startup_ms"]["true"]["native"]["samples"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let runtimes = r["runtimes"].as_array().expect("runtimes");
    let status = |name: &str| {
        runtimes.iter().find(|x| x["name"] == name).map(|x| {
            (
                x["status"].as_str().unwrap_or("").to_string(),
                x["reason"].clone(),
            )
        })
    };
    assert_eq!(
        status("cordon-container").map(|s| s.0),
        Some("measured".into())
    );
    assert_eq!(status("native").map(|s| s.0), Some("measured".into()));
    let (qemu, reason) = status("qemu").expect("qemu listed");
    assert_eq!(qemu, "skipped");
    assert!(
        reason.as_str().is_some_and(|r| !r.is_empty()),
        "skip without a reason"
    );
    assert!(
        status("bwrap").is_some(),
        "bwrap neither measured nor skipped"
    );

    let md = fs::read_to_string(out.join("BENCHMARKS.md")).expect("BENCHMARKS.md");
    assert!(
        md.contains("cordon bench --quick"),
        "command missing from the report"
    );
    assert!(md.contains("× native"), "ratios missing from the report");
    for svg in ["startup.svg", "syscall.svg", "memory.svg", "density.svg"] {
        let text = fs::read_to_string(out.join("bench").join(svg)).expect(svg);
        assert!(text.starts_with("<svg"), "{svg} is not an SVG");
    }
    let _ = fs::remove_dir_all(&out);

    // Nothing left: no fixture directory, no mount, no workload process.
    let new: Vec<String> = fixtures().difference(&before).cloned().collect();
    assert!(new.is_empty(), "left behind: {new:?}");
    let new_mounts: Vec<String> = fixture_mounts()
        .difference(&mounts_before)
        .cloned()
        .collect();
    assert!(new_mounts.is_empty(), "mounts left behind: {new_mounts:?}");
    assert!(
        payload_processes().is_empty(),
        "workload processes left behind"
    );
}

#[test]
fn unknown_peer_is_a_usage_error() {
    let cordon = cordon_binary();
    let result = Command::new(cordon)
        .args(["bench", "--peers", "native,nosuchpeer"])
        .output()
        .expect("running cordon bench");
    assert_eq!(result.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("unknown peer 'nosuchpeer'"),
        "stderr: {stderr}"
    );
}

#[test]
fn notify_floor_answers_every_trapped_open() {
    require_root!("pidfd_getfd of the child's seccomp listener");
    let dir = std::env::temp_dir().join(format!("cordon-floor-test.{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating the test directory");
    let out = Command::new(BENCH_BIN)
        .args(["notify-floor", "--budget-ms", "20", "--dir"])
        .arg(&dir)
        .output()
        .expect("running cordon-syscall-bench");
    let listing: Vec<_> = fs::read_dir(&dir).expect("listing").collect();
    let _ = fs::remove_dir(&dir);
    assert!(
        out.status.success(),
        "notify-floor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    // Each timed open got its fd from the parent (the child checks every read), so the parent
    // must have answered at least the 5 batches' worth the measurement always takes.
    let answered = v["answered_opens"].as_u64().expect("answered_opens");
    assert!(answered >= 5, "only {answered} opens answered: {v}");
    assert!(
        v["notify_floor_ns"].as_f64().is_some_and(|ns| ns > 0.0),
        "{v}"
    );
    assert!(listing.is_empty(), "file left behind: {listing:?}");
}
