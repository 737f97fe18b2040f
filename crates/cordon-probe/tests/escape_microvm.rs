//! The escape suite against the microvm tier, end to end through the real `cordon probe`
//! harness and `cordon run --tier microvm` (qemu, Debian's cloud kernel, cordon's agent).
//!
//! In a VM the workload is root of its own guest kernel, so a probe that escapes the guest's
//! confinement (writes the guest's core_pattern, opens the guest's disk...) has not left the
//! tier: the harness marks it ESCAPED(guest) and does not count it. What must hold is that
//! nothing reaches the host: every probe whose target is on the host (the planted secret, the
//! host's loopback and abstract-socket listeners, descriptors leaked from the host, the
//! metadata address) is BLOCKED or UNSUPPORTED, every probe reports a result (no ERROR: the
//! resource bombs end inside the guest), the harness exits 0, and no qemu or bait is left.
//!
//! Needs root, qemu and the guest kernel (`cordon microvm setup`, run first; idempotent);
//! without them the test prints `SKIPPED: <reason>`. One guest, ~20 s under TCG.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cordon_testkit::{require_root, workspace_binary};
use serde_json::Value;

const PROBE_BIN: &str = env!("CARGO_BIN_EXE_cordon-probe");

fn cordon() -> PathBuf {
    workspace_binary(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "cordon-cli",
        "cordon",
    )
}

fn qemu_processes() -> BTreeSet<String> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            fs::read_to_string(e.path().join("comm"))
                .is_ok_and(|c| c.trim_end().starts_with("qemu-system"))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn bait_dirs() -> BTreeSet<String> {
    fs::read_dir("/var/tmp")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cordon-probe-"))
        .collect()
}

#[test]
fn microvm_tier_lets_no_probe_reach_the_host() {
    require_root!("probes that attack the host, qemu");
    let cordon = cordon();
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !qemu {
        eprintln!(
            "SKIPPED: {}: qemu-system-x86_64 is not installed (scripts/setup.sh)",
            module_path!()
        );
        return;
    }
    let setup = Command::new(&cordon)
        .args(["microvm", "setup"])
        .stdin(Stdio::null())
        .output()
        .expect("running cordon microvm setup");
    assert!(
        setup.status.success(),
        "cordon microvm setup failed: {}",
        String::from_utf8_lossy(&setup.stderr)
    );

    let qemu_before = qemu_processes();
    let bait_before = bait_dirs();
    let json =
        std::env::temp_dir().join(format!("cordon-probe-microvm.{}.json", std::process::id()));
    let out = Command::new(&cordon)
        .args(["probe", "--tier", "microvm", "--probe-bin", PROBE_BIN])
        .arg("--json")
        .arg(&json)
        .env("CORDON_MICROVM_POOL", "off")
        .stdin(Stdio::null())
        .output()
        .expect("running cordon probe");
    let report = fs::read_to_string(&json).unwrap_or_default();
    let _ = fs::remove_file(&json);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cordon probe --tier microvm failed:\n{stdout}\n{stderr}"
    );
    let m: Value = serde_json::from_str(&report).expect("the --json report");
    let column = m["columns"]
        .as_array()
        .and_then(|cols| cols.iter().find(|c| c["name"] == "microvm"))
        .expect("a microvm column");
    assert_eq!(column["guest_kernel"], Value::Bool(true));
    let probes = m["probes"].as_array().expect("probe list");
    assert!(probes.len() > 40, "only {} probes listed", probes.len());
    let mut host_probes = 0;
    for p in probes {
        let name = p["name"].as_str().expect("probe name");
        let result = column["results"][name]["result"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no result in the microvm tier\n{stdout}"));
        let detail = column["results"][name]["detail"].as_str().unwrap_or("");
        assert_ne!(result, "ERROR", "{name}: {detail}");
        if p["reach"] == "host" {
            host_probes += 1;
            assert!(
                result == "BLOCKED" || result == "UNSUPPORTED",
                "{name} reached the host from the microvm tier: {result}: {detail}"
            );
        }
    }
    assert!(host_probes >= 5, "only {host_probes} host-reaching probes");

    let qemu_left: Vec<_> = qemu_processes().difference(&qemu_before).cloned().collect();
    assert!(qemu_left.is_empty(), "qemu left running: {qemu_left:?}");
    let bait_left: Vec<_> = bait_dirs().difference(&bait_before).cloned().collect();
    assert!(bait_left.is_empty(), "bait left in /var/tmp: {bait_left:?}");
}
