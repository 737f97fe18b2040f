//! Mutation fuzzing of the bundle parser on stable Rust: config.json is untrusted input (any
//! engine user writes it), so [`load`] and the mapping after it ([`container_config`],
//! [`seccomp_policy`]) must turn every input into a configuration or an error, never a panic.
//!
//! A rich, valid config is mutated with a seeded xorshift generator: structured mutations of
//! the JSON tree (values swapped for other types, huge/negative numbers, path tricks, deleted
//! keys, duplicated array items) and byte-level ones (flips, truncation, splices). The default
//! run is 2,000 inputs (a few seconds); `CORDON_FUZZ_ITERS` and `CORDON_FUZZ_SEED` run longer
//! or elsewhere. A failure prints the seed and the input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use cordon_testkit::Xorshift as Rng;
use serde_json::{json, Value};

use super::{container_config, load, seccomp_policy};

fn seed_config() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 6]},
            "args": ["/bin/sh", "-c", "true"],
            "env": ["PATH=/bin", "A=b"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN"],
                "effective": ["CAP_KILL"],
                "permitted": ["CAP_KILL"],
                "inheritable": [],
                "ambient": []
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
            "oomScoreAdj": 100
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "fuzz",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/data", "type": "bind", "source": "/tmp",
             "options": ["rbind", "ro", "noexec"]}
        ],
        "hooks": {
            "prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}],
            "poststop": [{"path": "/bin/true"}]
        },
        "annotations": {"run.cordon.tier": "container"},
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "cgroupsPath": "/fuzz/cordon",
            "resources": {
                "memory": {"limit": 67108864, "swap": 67108864},
                "pids": {"limit": 64},
                "cpu": {"quota": 50000, "period": 100000},
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}
                ]
            },
            "sysctl": {"net.ipv4.ip_forward": "0"},
            "maskedPaths": ["/proc/kcore", "/sys/firmware"],
            "readonlyPaths": ["/proc/sys", "/proc/bus"],
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                     "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                     "args": [{"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}
                ]
            }
        }
    })
}

const ODD_STRINGS: &[&str] = &[
    "",
    "..",
    "../../../../etc",
    "/../../..",
    "a:b",
    ":",
    "a:b:c:d",
    "rootfs/../..",
    "\u{0}",
    "/proc/self/fd/3",
    "SCMP_ACT_KILL",
    "SCMP_CMP_MASKED_EQ",
    "CAP_SYS_ADMIN",
    "CAP_NOT_A_CAP",
    "RLIMIT_BOGUS",
    "x/y",
    "\u{202e}",
    "1.0.2",
    "2.0.0",
];

fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => json!(u64::MAX),
        3 => json!(i64::MIN),
        4 => json!(-1),
        5 => json!(1.5e300),
        6 => json!([]),
        7 => json!({}),
        8 => json!(u32::MAX),
        _ => json!(ODD_STRINGS[rng.below(ODD_STRINGS.len())]),
    }
}

/// Fields whose values reach the filesystem or the kernel: mutated directly a quarter of the
/// time, since a random walk rarely lands on them.
const HOT: &[&str] = &[
    "/linux/cgroupsPath",
    "/root/path",
    "/process/cwd",
    "/process/args/0",
    "/mounts/2/source",
    "/mounts/2/destination",
    "/mounts/1/options/3",
    "/linux/maskedPaths/0",
    "/linux/readonlyPaths/0",
    "/linux/namespaces/0/path",
    "/linux/resources/devices/1/access",
    "/linux/resources/devices/1/type",
    "/linux/seccomp/syscalls/2/args/0/op",
    "/linux/seccomp/syscalls/1/args/0/index",
    "/hooks/prestart/0/path",
    "/ociVersion",
];

/// Applies one structured mutation at a random node of `v`.
fn mutate(v: &mut Value, rng: &mut Rng, depth: usize) {
    let descend = depth < 8 && rng.below(4) != 0;
    match v {
        Value::Object(map) if !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = &keys[rng.below(keys.len())];
            if descend {
                if let Some(child) = map.get_mut(key) {
                    mutate(child, rng, depth + 1);
                }
            } else if rng.below(3) == 0 {
                map.remove(key);
            } else {
                map.insert(key.clone(), odd_value(rng));
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            if descend {
                mutate(&mut items[i], rng, depth + 1);
            } else {
                match rng.below(3) {
                    0 => {
                        items.remove(i);
                    }
                    1 => {
                        let copy = items[i].clone();
                        items.push(copy);
                    }
                    _ => items[i] = odd_value(rng),
                }
            }
        }
        _ => *v = odd_value(rng),
    }
}

fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) {
    match rng.below(3) {
        0 => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        _ => {
            let (a, b) = (rng.below(bytes.len()), rng.below(bytes.len()));
            let (lo, hi) = (a.min(b), a.max(b));
            let chunk = bytes[lo..hi].to_vec();
            let at = rng.below(bytes.len());
            bytes.splice(at..at, chunk);
        }
    }
}

/// Parses and maps one input; `Err` carries the panic message.
fn exercise(dir: &Path, config: &[u8]) -> Result<(), String> {
    std::fs::write(dir.join("config.json"), config).map_err(|e| e.to_string())?;
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(b) = load(dir) {
            let _ = seccomp_policy(&b.spec);
            let _ = container_config(&b, "fuzz", dir.join("fifo"), None);
        }
    }))
    .map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn mutated_configs_never_panic() {
    let iters: u64 = std::env::var("CORDON_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let seed: u64 = std::env::var("CORDON_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00c0_d0f0_0d5e_ed55);
    let dir = std::env::temp_dir().join(format!("cordon-oci-fuzz.{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rootfs")).expect("creating the fuzz bundle");
    let base = seed_config();
    // The seed itself must map: otherwise the mutations explore nothing but early errors.
    let seed_bytes = serde_json::to_vec(&base).expect("seed config");
    std::fs::write(dir.join("config.json"), &seed_bytes).expect("writing the seed");
    let b = load(&dir).expect("the seed config loads");
    container_config(&b, "fuzz", dir.join("fifo"), None).expect("the seed config maps");

    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng::new(seed);
    let mut failure = None;
    for i in 0..iters {
        let input = if rng.below(4) == 0 {
            let mut bytes = seed_bytes.clone();
            for _ in 0..=rng.below(3) {
                if !bytes.is_empty() {
                    mutate_bytes(&mut bytes, &mut rng);
                }
            }
            bytes
        } else {
            let mut v = base.clone();
            for _ in 0..=rng.below(4) {
                if rng.below(4) == 0 {
                    let target = HOT[rng.below(HOT.len())];
                    if let Some(slot) = v.pointer_mut(target) {
                        *slot = odd_value(&mut rng);
                    }
                } else {
                    mutate(&mut v, &mut rng, 0);
                }
            }
            serde_json::to_vec(&v).expect("serialising a mutated config")
        };
        if let Err(msg) = exercise(&dir, &input) {
            failure = Some((i, msg, input));
            break;
        }
    }
    std::panic::set_hook(hook);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((i, msg, input)) = failure {
        panic!(
            "input {i} (seed {seed:#x}) panicked: {msg}\n{}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// The two failures the fuzzer led to: a short systemd-style path panicked, and `..` climbed
/// out of the cgroup filesystem.
#[test]
fn cgroups_path_forms() {
    use super::cgroup_path;
    let ok = |p: &str| cgroup_path(Path::new(p)).map(|r| r.display().to_string());
    assert_eq!(ok("/a/b").ok().as_deref(), Some("a/b"));
    assert_eq!(
        ok("system.slice:docker:abc").ok().as_deref(),
        Some("cordon-oci/docker-abc")
    );
    for bad in [
        ":",
        "a:b",
        "a:b:c:d",
        "s:p:",
        "s:../..:x",
        "/../../etc",
        "a/../b",
        "/",
    ] {
        assert!(ok(bad).is_err(), "{bad:?} accepted");
    }
}
