//! End-to-end tests of `cordon run --tier microvm`: real guests (qemu, Debian's cloud kernel,
//! cordon's agent), checked from inside and for leftovers afterwards.
//!
//! They need root, qemu and the guest kernel (`cordon microvm setup`, which the first test
//! runs; it is idempotent). Without them each test prints `SKIPPED: <reason>`. Under TCG every
//! guest starts from a snapshot (~0.3 s); the first run of each memory/CPU shape boots cold to
//! make it (~5 s). The tests run one at a time: the machine has two cores. Every test but
//! `warm_pool_lends_each_vm_once_and_leaves_nothing` keeps away from any warm pool
//! (`CORDON_MICROVM_POOL=off`), so a pool running on the host does not change what they see.

use std::fs;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cordon_testkit::{is_root, output_with_stdin};

const CORDON: &str = env!("CARGO_BIN_EXE_cordon");

static SERIAL: Mutex<()> = Mutex::new(());
static READY: OnceLock<Result<(), String>> = OnceLock::new();

/// Root, qemu and the assets, or why not.
fn prerequisites() -> Result<(), String> {
    READY
        .get_or_init(|| {
            if !is_root() {
                return Err("needs root".into());
            }
            let qemu = Command::new("qemu-system-x86_64")
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if !qemu {
                return Err("qemu-system-x86_64 is not installed (scripts/setup.sh)".into());
            }
            let out = Command::new(CORDON)
                .args(["microvm", "setup"])
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "cordon microvm setup failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(())
        })
        .clone()
}

/// Serialises the tests and checks the prerequisites; `None` (after printing why) to skip.
fn guard(test: &str) -> Option<MutexGuard<'static, ()>> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    match prerequisites() {
        Ok(()) => Some(g),
        Err(why) => {
            eprintln!("SKIPPED: {test}: {why}");
            None
        }
    }
}

/// qemu processes started by the cordon with this pid (qemu is named after its cordon).
fn vmms_of(pid: u32) -> Vec<u32> {
    let marker = format!("cordon-{pid}");
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args
            .first()
            .is_some_and(|a| a.ends_with(b"qemu-system-x86_64"))
            && args.contains(&marker.as_bytes())
        {
            found.push(p);
        }
    }
    found
}

fn assert_no_vmm(pid: u32) {
    let start = Instant::now();
    while !vmms_of(pid).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "qemu of cordon {pid} still running: {:?}",
            vmms_of(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(CORDON);
    cmd.env("CORDON_MICROVM_POOL", "off")
        .args(["run", "--tier", "microvm"])
        .args(args);
    let (pid, out) = output_with_stdin(&mut cmd, stdin);
    assert_no_vmm(pid);
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn python_prints_42() {
    let Some(_g) = guard("python_prints_42") else {
        return;
    };
    let out = run(&["--", "python3", "-c", "print(6*7)"], None);
    assert_eq!(text(&out.stdout), "42\n", "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn exit_codes_and_signals_pass_through() {
    let Some(_g) = guard("exit_codes_and_signals_pass_through") else {
        return;
    };
    let cases: [(&[&str], i32); 4] = [
        (&["sh", "-c", "exit 7"], 7),
        (&["sh", "-c", "kill -TERM $$"], 128 + 15),
        (&["no-such-command"], 127),
        (&["/etc/passwd"], 126),
    ];
    for (argv, code) in cases {
        let mut args = vec!["--"];
        args.extend_from_slice(argv);
        let out = run(&args, None);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{argv:?}: stderr {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn stdout_is_byte_exact_and_stderr_separate() {
    let Some(_g) = guard("stdout_is_byte_exact_and_stderr_separate") else {
        return;
    };
    // 3 MiB of every byte value, then a marker on stderr.
    let script = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 12288); \
                  sys.stdout.flush(); sys.stderr.write('done')";
    let out = run(&["--", "python3", "-c", script], None);
    let expected: Vec<u8> = (0..12288).flat_map(|_| 0..=255u8).collect();
    assert_eq!(out.stdout.len(), expected.len());
    assert!(out.stdout == expected, "stdout differs");
    assert_eq!(text(&out.stderr), "done");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn stdin_is_forwarded() {
    let Some(_g) = guard("stdin_is_forwarded") else {
        return;
    };
    let data: Vec<u8> = (0..(1u32 << 20))
        .map(|i| u8::try_from(i * 7 % 251).unwrap_or(0))
        .collect();
    let out = run(&["--", "cat"], Some(&data));
    assert!(
        out.stdout == data,
        "cat returned {} bytes",
        out.stdout.len()
    );
    let out = run(&["--", "sh", "-c", "read x; echo got:$x"], Some(b"hello\n"));
    assert_eq!(text(&out.stdout), "got:hello\n");
}

#[test]
fn env_workdir_user_hostname() {
    let Some(_g) = guard("env_workdir_user_hostname") else {
        return;
    };
    let out = run(
        &[
            "--env",
            "FOO=bar",
            "--workdir",
            "/tmp/work",
            "--user",
            "1000:1000",
            "--hostname",
            "vm17",
            "--",
            "sh",
            "-c",
            "echo $FOO $(pwd) $(id -u):$(id -g) $(hostname); touch /tmp/x && echo writable",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "bar /tmp/work 1000:1000 vm17\nwritable\n",
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn guest_has_its_own_kernel_and_no_host_files() {
    let Some(_g) = guard("guest_has_its_own_kernel_and_no_host_files") else {
        return;
    };
    let host = text(
        &Command::new("uname")
            .arg("-r")
            .output()
            .expect("uname")
            .stdout,
    );
    let out = run(&["--", "uname", "-r"], None);
    let guest = text(&out.stdout);
    assert!(!guest.trim().is_empty());
    assert_ne!(guest.trim(), host.trim(), "guest runs the host's kernel");
    // Nothing of the host beyond the root image: no /work, no cordon cache, no host home,
    // and the root is the read-only virtio disk.
    let out = run(
        &[
            "--",
            "sh",
            "-c",
            "test ! -e /work && test ! -e /var/cache/cordon && test ! -e /root/.cargo \
             && grep -q '^/dev/vda / ext4 ro' /proc/mounts && ! touch /usr/x 2>/dev/null && echo clean",
        ],
        None,
    );
    assert_eq!(
        text(&out.stdout),
        "clean\n",
        "stderr: {}",
        text(&out.stderr)
    );
}

#[test]
fn memory_and_cpus_size_the_guest() {
    let Some(_g) = guard("memory_and_cpus_size_the_guest") else {
        return;
    };
    let out = run(
        &[
            "--memory",
            "256M",
            "--cpus",
            "2",
            "--",
            "sh",
            "-c",
            "nproc; awk '/MemTotal/ {print $2}' /proc/meminfo",
        ],
        None,
    );
    let s = text(&out.stdout);
    let mut lines = s.lines();
    assert_eq!(lines.next(), Some("2"), "stderr: {}", text(&out.stderr));
    let kib: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(
        (150_000..=262_144).contains(&kib),
        "MemTotal {kib} KiB for a 256M guest"
    );
}

#[test]
fn timeout_kills_the_vm() {
    let Some(_g) = guard("timeout_kills_the_vm") else {
        return;
    };
    let start = Instant::now();
    let out = run(&["--timeout", "1s", "--", "sleep", "30"], None);
    assert_eq!(
        out.status.code(),
        Some(124),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn guest_panic_is_a_clear_error() {
    let Some(_g) = guard("guest_panic_is_a_clear_error") else {
        return;
    };
    let out = run(
        &[
            "--debug",
            "--cap-add",
            "sys_admin",
            "--",
            "sh",
            "-c",
            "echo c > /proc/sysrq-trigger; sleep 5",
        ],
        None,
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "stderr: {err}");
    assert!(err.contains("guest kernel panicked"), "stderr: {err}");
    assert!(err.contains("last guest console lines"), "stderr: {err}");
}

#[test]
fn kill_9_of_cordon_leaves_no_vm() {
    let Some(_g) = guard("kill_9_of_cordon_leaves_no_vm") else {
        return;
    };
    let mut child = Command::new(CORDON)
        .env("CORDON_MICROVM_POOL", "off")
        .args(["run", "--tier", "microvm", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning cordon");
    let pid = child.id();
    let start = Instant::now();
    while vmms_of(pid).is_empty() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!vmms_of(pid).is_empty(), "no qemu appeared");
    std::thread::sleep(Duration::from_millis(300));
    // The running VMM, as the host sees it: confined (see the next function).
    for qemu in vmms_of(pid) {
        assert_vmm_confined(qemu);
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_no_vmm(pid);
}

/// A field of /proc/<pid>/status.
fn status_field(pid: u32, name: &str) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status:\n{status}"))
}

/// The VMM `qemu` runs as a non-root uid/gid of its own with no capabilities at all,
/// no_new_privs and a seccomp filter, in namespaces of its own (mount, PID, net, ipc, uts), with a
/// root holding only /usr (read-only), a few device nodes and a /proc that shows it only
/// itself.
fn assert_vmm_confined(qemu: u32) {
    for field in ["Uid", "Gid"] {
        let ids = status_field(qemu, field);
        assert!(
            ids.split_whitespace().all(|id| id != "0"),
            "{field}: {ids} (qemu {qemu})"
        );
    }
    assert_eq!(status_field(qemu, "Groups"), "", "qemu {qemu}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            status_field(qemu, cap),
            "0000000000000000",
            "{cap} of qemu {qemu}"
        );
    }
    assert_eq!(status_field(qemu, "NoNewPrivs"), "1");
    assert_eq!(status_field(qemu, "Seccomp"), "2");
    // PID 1 of a PID namespace of its own.
    let nspid = status_field(qemu, "NSpid");
    assert_eq!(nspid.split_whitespace().last(), Some("1"), "NSpid: {nspid}");
    for ns in ["mnt", "net", "ipc", "uts", "pid"] {
        let theirs = fs::read_link(format!("/proc/{qemu}/ns/{ns}")).unwrap();
        let ours = fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(theirs, ours, "qemu {qemu} shares the {ns} namespace");
    }
    let root = format!("/proc/{qemu}/root");
    let mut entries: Vec<String> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["bin", "dev", "lib", "lib64", "proc", "sbin", "usr"],
        "the VMM's root"
    );
    let mut dev: Vec<String> = fs::read_dir(format!("{root}/dev"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dev.sort();
    assert_eq!(dev, ["null", "random", "urandom", "zero"], "the VMM's /dev");
    for gone in ["etc/shadow", "root", "home", "var", "tmp", "dev/shm", "sys"] {
        assert!(
            fs::symlink_metadata(format!("{root}/{gone}")).is_err(),
            "the VMM can reach /{gone}"
        );
    }
    // What the VMM mounted: its root and /usr read-only, /proc restricted to itself.
    let mounts = fs::read_to_string(format!("/proc/{qemu}/mountinfo")).unwrap();
    let options = |mnt: &str| {
        mounts
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some(mnt))
            .unwrap_or_else(|| panic!("no {mnt} in the VMM's mounts:\n{mounts}"))
            .to_string()
    };
    for ro in ["/", "/usr"] {
        let line = options(ro);
        assert!(
            line.split_whitespace().nth(5).unwrap().starts_with("ro"),
            "{line}"
        );
    }
    let proc_line = options("/proc");
    assert!(
        proc_line.contains("hidepid=invisible") && proc_line.contains("subset=pid"),
        "{proc_line}"
    );
    assert_eq!(mounts.lines().count(), 3, "the VMM's mounts:\n{mounts}");
}

#[test]
fn rootfs_dir_becomes_an_image() {
    let Some(_g) = guard("rootfs_dir_becomes_an_image") else {
        return;
    };
    let busybox = std::path::Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!("SKIPPED: rootfs_dir_becomes_an_image: no /bin/busybox (busybox-static)");
        return;
    }
    let dir =
        std::env::temp_dir().join(format!("cordon-microvm-test-rootfs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("bin")).expect("mkdir");
    fs::copy(busybox, dir.join("bin/busybox")).expect("copy busybox");
    fs::write(dir.join("marker"), "from-dir\n").expect("write marker");
    let root = dir.display().to_string();
    let out = run(
        &["--rootfs", &root, "--", "/bin/busybox", "cat", "/marker"],
        None,
    );
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(
        text(&out.stdout),
        "from-dir\n",
        "stderr: {}",
        text(&out.stderr)
    );
}

/// Waits until `path` holds `needle` (a log file written by a background process).
fn wait_for_text(path: &std::path::Path, needle: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Stops the pool when a test fails halfway.
struct PoolGuard(std::process::Child);

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn warm_pool_lends_each_vm_once_and_leaves_nothing() {
    let Some(_g) = guard("warm_pool_lends_each_vm_once_and_leaves_nothing") else {
        return;
    };
    let tag = format!("cordon-microvm-test-pool-{}", std::process::id());
    let socket = std::env::temp_dir().join(format!("{tag}.sock"));
    let log = std::env::temp_dir().join(format!("{tag}.log"));
    let log_file = fs::File::create(&log).expect("creating the pool log");
    let pool = Command::new(CORDON)
        .args(["microvm", "pool", "--debug", "--size", "1", "--socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawning the pool");
    let pool_pid = pool.id();
    let mut pool = PoolGuard(pool);
    let ready = wait_for_text(&log, "ready (1 warm VM(s))", Duration::from_secs(90));
    let pool_log = || fs::read_to_string(&log).unwrap_or_default();
    assert!(ready, "pool log: {}", pool_log());
    let warm = vmms_of(pool_pid);
    assert_eq!(warm.len(), 1, "pool log: {}", pool_log());
    // A pooled VMM (its RAM a sealed memfd) is confined like any other.
    assert_vmm_confined(warm[0]);

    // Another uid cannot even connect (the socket is 0600), let alone take the VM.
    {
        use std::os::unix::process::CommandExt;
        let probe = Command::new("python3")
            .args([
                "-c",
                "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ntry:\n s.connect(sys.argv[1])\nexcept PermissionError:\n print('refused')\nelse:\n print('connected')",
            ])
            .arg(&socket)
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .expect("python3 as nobody");
        assert_eq!(text(&probe.stdout).trim(), "refused");
        assert_eq!(vmms_of(pool_pid), warm, "the VM left the pool");
    }

    // A run takes the warm VM: the command's output and status, the host's clock.
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let out = Command::new(CORDON)
        .env("CORDON_MICROVM_POOL", &socket)
        .args(["run", "--debug", "--tier", "microvm", "--"])
        .args(["sh", "-c", "date +%s; exit 3"])
        .stdin(Stdio::null())
        .output()
        .expect("running cordon");
    let err = text(&out.stderr);
    assert!(
        err.contains("took a warm VM from the pool"),
        "stderr: {err}"
    );
    assert_eq!(out.status.code(), Some(3), "stderr: {err}");
    let guest_now: u64 = text(&out.stdout).trim().parse().expect("date +%s");
    assert!(
        guest_now.abs_diff(host_now) <= 5,
        "guest clock {guest_now}, host {host_now}"
    );
    // That VM is gone (used once), not back in the pool.
    let start = Instant::now();
    while vmms_of(pool_pid).contains(&warm[0]) && start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!vmms_of(pool_pid).contains(&warm[0]), "a used VM stayed");

    // kill -9 of a client: the pool kills the VM it lent (the refill, once warm).
    let start = Instant::now();
    while pool_log().matches(" warm (").count() < 2 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let idle = vmms_of(pool_pid);
    assert_eq!(idle.len(), 1, "pool log: {}", pool_log());
    let client_log = std::env::temp_dir().join(format!("{tag}.client"));
    let mut client = Command::new(CORDON)
        .env("CORDON_MICROVM_POOL", &socket)
        .args(["run", "--debug", "--tier", "microvm", "--", "sleep", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&client_log).expect("client log"))
        .spawn()
        .expect("spawning cordon");
    let took = wait_for_text(
        &client_log,
        "took a warm VM from the pool",
        Duration::from_secs(10),
    );
    let client_err = fs::read_to_string(&client_log).unwrap_or_default();
    let _ = fs::remove_file(&client_log);
    std::thread::sleep(Duration::from_millis(300));
    client.kill().expect("kill -9");
    let _ = client.wait();
    assert!(took, "client stderr: {client_err}");
    let start = Instant::now();
    while idle.iter().any(|p| vmms_of(pool_pid).contains(p))
        && start.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !idle.iter().any(|p| vmms_of(pool_pid).contains(p)),
        "the VM of a killed client survived"
    );

    // Stopping the pool stops every VM and removes its socket.
    let term = Command::new("kill")
        .args(["-TERM", &pool_pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = pool.0.wait().expect("waiting for the pool");
    assert!(status.success(), "pool log: {}", pool_log());
    assert_no_vmm(pool_pid);
    assert!(!socket.exists(), "the pool left its socket");
    let _ = fs::remove_file(&log);
}

#[test]
fn read_only_mounts_and_rw_refused() {
    let Some(_g) = guard("read_only_mounts_and_rw_refused") else {
        return;
    };
    let dir =
        std::env::temp_dir().join(format!("cordon-microvm-test-mount-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("sub")).expect("mkdir");
    fs::write(dir.join("sub/f.txt"), "from-host\n").expect("write");
    // The mount's image lands in the cache: the test removes the one it made.
    let images = || -> Vec<std::path::PathBuf> {
        fs::read_dir("/var/cache/cordon/microvm/rootfs")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("mnt-"))
            })
            .collect()
    };
    let before = images();
    let ro = format!("{}:/tmp/data:ro", dir.display());
    let out = run(
        &[
            "--mount",
            &ro,
            "--",
            "sh",
            "-c",
            "cat /tmp/data/sub/f.txt; touch /tmp/data/x 2>/dev/null && echo writable",
        ],
        None,
    );
    let rw = format!("{}:/tmp/data", dir.display());
    let refused = run(&["--mount", &rw, "--", "true"], None);
    let _ = fs::remove_dir_all(&dir);
    for img in images() {
        if !before.contains(&img) {
            let _ = fs::remove_file(img);
        }
    }
    assert_eq!(
        text(&out.stdout),
        "from-host\n",
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(refused.status.code(), Some(125));
    let err = text(&refused.stderr);
    assert!(err.contains("read-only only"), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "stderr: {err}");
}

#[test]
fn workload_runs_under_seccomp_and_no_new_privs() {
    let Some(_g) = guard("workload_runs_under_seccomp_and_no_new_privs") else {
        return;
    };
    // Even with CAP_SYS_ADMIN in the guest, the filter refuses namespace creation.
    let out = run(
        &[
            "--cap-add",
            "sys_admin",
            "--",
            "sh",
            "-c",
            "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -m true 2>/dev/null && echo unshared || echo refused",
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Seccomp:\t2"), "stdout: {stdout}");
    assert!(stdout.contains("NoNewPrivs:\t1"), "stdout: {stdout}");
    assert!(stdout.contains("refused"), "stdout: {stdout}");
}

/// Allocated bytes of the `ram` file of the most recently used snapshot.
fn newest_snapshot_ram() -> Option<(std::path::PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let root = std::path::Path::new(cordon_microvm::DEFAULT_SNAPSHOTS);
    let dir = fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max()?
        .1;
    let ram = dir.join("ram");
    let blocks = fs::metadata(&ram).ok()?.blocks();
    Some((ram, blocks * 512))
}

#[test]
fn guest_writes_leave_the_snapshot_as_saved() {
    let Some(_g) = guard("guest_writes_leave_the_snapshot_as_saved") else {
        return;
    };
    // Make sure this shape's snapshot exists, then note its size on the host.
    let out = run(&["--memory", "512M", "--", "/bin/true"], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (ram, before) = newest_snapshot_ram().expect("a snapshot after a run");
    // The guest writes 200 MiB into its /tmp (guest RAM): copy-on-write of the snapshot's
    // pages, which must not fill the snapshot file's holes on the host.
    let out = run(
        &[
            "--memory",
            "512M",
            "--",
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/fill bs=1M count=200 2>/dev/null && echo written",
        ],
        None,
    );
    assert_eq!(text(&out.stdout), "written\n", "{}", text(&out.stderr));
    let (same, after) = newest_snapshot_ram().expect("the snapshot after the second run");
    assert_eq!(same, ram, "the second run used another snapshot");
    assert!(
        after < before + (32 << 20),
        "{} grew from {before} to {after} bytes",
        ram.display()
    );
}
