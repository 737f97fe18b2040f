//! End-to-end tests of `cordon run` with the container tier: real sandboxes, checked from
//! inside, and checked for leftovers (processes, cgroups, mounts) afterwards.
//!
//! They need root (namespaces, cgroups); without it each test prints why it is skipped.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cordon_testkit::{output_with_stdin, require_root};

const CORDON: &str = env!("CARGO_BIN_EXE_cordon");

fn cordon(args: &[&str]) -> Command {
    let mut c = Command::new(CORDON);
    c.args(args);
    c
}

/// Runs cordon to completion, then checks that it left nothing behind.
fn run_clean(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let (pid, out) = output_with_stdin(&mut cordon(args), stdin);
    assert_no_leftovers(pid, None);
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cgroup_dirs_of(pid: u32) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for ctrl in ["memory", "pids", "cpu", "unified"] {
        let base = Path::new("/sys/fs/cgroup").join(ctrl).join("cordon");
        if let Ok(entries) = fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{pid}-"))
                {
                    found.push(e.path());
                }
            }
        }
    }
    found
}

fn processes_with(marker: &str) -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| p != me)
        .filter(|p| {
            fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| text(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// No cgroup of cordon process `pid` remains, no host mount mentions cordon's run directory,
/// and no process carries `marker`.
fn assert_no_leftovers(pid: u32, marker: Option<&str>) {
    let dirs = cgroup_dirs_of(pid);
    assert!(dirs.is_empty(), "cgroups left behind: {dirs:?}");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("/run/cordon"),
        "a sandbox mount leaked into the host namespace"
    );
    if let Some(m) = marker {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = processes_with(m);
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "processes left behind: {left:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn marker() -> String {
    format!(
        "cordon-test-marker-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ u128::from(rand_u32())
    )
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u32::from_ne_bytes(b)
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cordon-test-{tag}-{}-{}",
        std::process::id(),
        rand_u32()
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn python_prints_42() {
    require_root!();
    let out = run_clean(&["run", "--", "python3", "-c", "print(6*7)"], None);
    assert_eq!(text(&out.stdout), "42\n", "stderr: {}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}

const POSTURE: &str = r#"
import json, os, socket
st = dict(l.split(':\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\t' in l)
def can_write(p):
    try:
        open(p, 'w').close(); return True
    except OSError:
        return False
print(json.dumps({
    'pid1_cmdline': open('/proc/1/cmdline').read(),
    'pids': sorted(int(x) for x in os.listdir('/proc') if x.isdigit()),
    'hostname': socket.gethostname(),
    'ifaces': sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]),
    'capeff': st['CapEff'].strip(), 'capbnd': st['CapBnd'].strip(),
    'nnp': st['NoNewPrivs'].strip(), 'seccomp': st['Seccomp'].strip(),
    'sysrq_writable': can_write('/proc/sysrq-trigger'),
    'core_pattern_writable': can_write('/proc/sys/kernel/core_pattern'),
    'root_entries': sorted(os.listdir('/')),
    'tmp_entries': sorted(os.listdir('/tmp')),
    'secret_visible': os.path.exists(os.environ['SECRET']),
    'home_visible': os.path.exists('/home') or os.path.exists('/var/lib'),
    'root_writable': can_write('/cordon-write-test'),
    'tmp_writable': can_write('/tmp/x'),
    'fds': sorted(int(x) for x in os.listdir('/proc/self/fd')),
}))
"#;

#[test]
fn isolation_posture_seen_from_inside() {
    require_root!();
    let secret = std::env::temp_dir().join(format!("cordon-secret-{}", std::process::id()));
    fs::write(&secret, "do not read").unwrap();
    let host_pid1 = fs::read_to_string("/proc/1/cmdline").unwrap();
    let host_name = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let env = format!("SECRET={}", secret.display());
    let out = run_clean(
        &["run", "--env", &env, "--", "python3", "-c", POSTURE],
        None,
    );
    fs::remove_file(&secret).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let get = |key: &str| -> String {
        let i = stdout
            .find(&format!("\"{key}\": "))
            .unwrap_or_else(|| panic!("{key} missing in {stdout}"));
        let rest = &stdout[i + key.len() + 4..];
        let end = rest.find(", \"").unwrap_or(rest.len() - 2);
        rest[..end].trim().to_string()
    };
    assert_ne!(
        get("pid1_cmdline").trim_matches('"'),
        host_pid1,
        "PID 1 is the host's"
    );
    let pids = get("pids");
    assert!(
        pids.starts_with("[1, 2"),
        "sandbox sees host processes: {pids}"
    );
    assert_eq!(get("hostname"), "\"cordon\"");
    assert_ne!(host_name.trim(), "cordon");
    assert_eq!(get("ifaces"), "[\"lo\"]");
    assert_eq!(get("capeff"), "\"0000000000000000\"");
    assert_eq!(get("capbnd"), "\"0000000000000000\"");
    assert_eq!(get("nnp"), "\"1\"");
    assert_eq!(get("seccomp"), "\"2\"");
    assert_eq!(get("sysrq_writable"), "false");
    assert_eq!(get("core_pattern_writable"), "false");
    assert_eq!(get("secret_visible"), "false");
    assert_eq!(get("home_visible"), "false");
    assert_eq!(get("root_writable"), "false");
    assert_eq!(get("tmp_writable"), "true");
    assert_eq!(get("tmp_entries"), "[]", "the host's /tmp leaked in");
    // Only stdio (and the fd listing itself) are open: every inherited fd was closed.
    assert_eq!(get("fds"), "[0, 1, 2, 3]");
    let root = get("root_entries");
    for must_not in ["home", "boot", "srv", "work", "opt"] {
        assert!(
            !root.contains(&format!("\"{must_not}\"")),
            "/{must_not} visible: {root}"
        );
    }
}

#[test]
fn memory_limit_kills_and_is_reported() {
    require_root!();
    let hog = "b = bytearray(300 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')";
    let out = run_clean(
        &["run", "--memory", "128M", "--", "python3", "-c", hog],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("memory limit"),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("survived"));
}

#[test]
fn fork_loop_stops_at_pids_limit() {
    require_root!();
    let forker = "import os, time\nn = 0\nfor i in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    n += 1\nprint(n)";
    let m = marker();
    let out = run_clean(
        &[
            "run",
            "--pids",
            "32",
            "--env",
            &format!("M={m}"),
            "--",
            "python3",
            "-c",
            forker,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let n: u32 = text(&out.stdout).trim().parse().unwrap();
    assert!(n > 0 && n < 32, "forked {n} children under --pids 32");
}

#[test]
fn timeout_returns_124_quickly_and_kills_everything() {
    require_root!();
    let m = marker();
    let started = Instant::now();
    let out = run_clean(
        &[
            "run",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            &format!("sleep 10 & sleep 10; : {m}"),
        ],
        None,
    );
    let took = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(124),
        "stderr: {}",
        text(&out.stderr)
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_no_leftovers(0, Some(&m));
}

#[test]
fn exit_codes_and_signals_pass_through() {
    require_root!();
    for (script, code) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("exit 123", 123),
        ("kill -TERM $$", 143),
        ("kill -KILL $$", 137),
        ("kill -SEGV $$", 139),
    ] {
        let out = run_clean(&["run", "--", "sh", "-c", script], None);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{script}: stderr {}",
            text(&out.stderr)
        );
        if code > 128 {
            let sig = code - 128;
            assert!(
                text(&out.stderr).contains(&format!("killed by signal {sig}")),
                "{script}: {}",
                text(&out.stderr)
            );
            assert!(!text(&out.stderr).contains("memory limit"));
        }
    }
}

#[test]
fn stdout_and_stderr_stay_separate_and_exact() {
    require_root!();
    let dir = temp_dir("bigout");
    let data_path = dir.join("data");
    // 100 MiB of deterministic, incompressible-looking bytes.
    let mut data = vec![0u8; 100 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(&data_path, &data).unwrap();
    let mount = format!("{}:/data:ro", data_path.display());
    let out = run_clean(
        &[
            "run",
            "--mount",
            &mount,
            "--",
            "sh",
            "-c",
            "cat /data; echo to-stderr >&2",
        ],
        None,
    );
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "stdout differs from the source bytes");
    assert_eq!(text(&out.stderr), "to-stderr\n");
}

#[test]
fn stdin_is_forwarded() {
    require_root!();
    let input: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let out = run_clean(&["run", "--", "cat"], Some(&input));
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout == input, "stdin did not arrive unchanged");
}

#[test]
fn missing_and_unexecutable_commands() {
    require_root!();
    let out = run_clean(&["run", "--", "no-such-command-xyz"], None);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).contains("no-such-command-xyz: command not found"),
        "{}",
        text(&out.stderr)
    );
    let dir = temp_dir("noexec");
    let f = dir.join("script");
    fs::write(&f, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let mount = format!("{}:/work", dir.display());
    let out = run_clean(&["run", "--mount", &mount, "--", "/work/script"], None);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.code(),
        Some(126),
        "stderr: {}",
        text(&out.stderr)
    );
}

fn assert_runtime_error(args: &[&str], needle: &str) {
    let out = run_clean(args, None);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: expected one line, got {err}"
    );
    assert!(err.starts_with("cordon: "), "{err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_a_one_line_125() {
    require_root!();
    assert_runtime_error(
        &["run", "--rootfs", "/nonexistent/rootfs", "--", "true"],
        "does not exist",
    );
    assert_runtime_error(
        &["run", "--rootfs", "/etc/hostname", "--", "true"],
        "is not a directory",
    );
    assert_runtime_error(&["run", "--mount", "relative:/x", "--", "true"], "absolute");
    assert_runtime_error(
        &["run", "--mount", "/nonexistent-src:/x", "--", "true"],
        "does not exist",
    );
    assert_runtime_error(&["run", "--memory", "abc", "--", "true"], "invalid size");
    assert_runtime_error(
        &["run", "--timeout", "soon", "--", "true"],
        "invalid duration",
    );
    assert_runtime_error(&["run", "--network", "host", "--", "true"], "network");
    assert_runtime_error(&["run", "--tier", "nonsense", "--", "true"], "unknown tier");
    assert_runtime_error(&["run", "--bogus-flag", "--", "true"], "--bogus-flag");
    assert_runtime_error(&["run", "--hostname", "bad host", "--", "true"], "hostname");
    let empty = temp_dir("nocg");
    assert_runtime_error(
        &[
            "--cgroup-root",
            empty.to_str().unwrap(),
            "run",
            "--",
            "true",
        ],
        "no cgroup controller available",
    );
    fs::remove_dir(&empty).unwrap();
}

#[test]
fn not_root_is_a_clear_125() {
    require_root!();
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("SKIPPED: setpriv (util-linux) not installed");
        return;
    }
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            CORDON,
            "run",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("not running as root"), "{err}");
}

fn spawn_ready(args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = cordon(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, reader)
}

#[test]
fn kill_9_of_cordon_leaves_nothing_after_gc() {
    require_root!();
    let m = marker();
    let script = format!("echo ready; sleep 100 & sleep 100; : {m}");
    let (mut child, _out) = spawn_ready(&[
        "run", "--cpus", "0.5", "--memory", "64M", "--pids", "16", "--", "sh", "-c", &script,
    ]);
    let pid = child.id();
    // While it runs, the limits are in the sandbox's cgroups.
    let dirs = cgroup_dirs_of(pid);
    let read = |ctrl: &str, file: &str| {
        dirs.iter()
            .find(|d| d.starts_with(Path::new("/sys/fs/cgroup").join(ctrl)))
            .map(|d| fs::read_to_string(d.join(file)).unwrap().trim().to_string())
    };
    if Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(
            read("memory", "memory.limit_in_bytes").as_deref(),
            Some("67108864")
        );
        assert_eq!(read("pids", "pids.max").as_deref(), Some("16"));
        assert_eq!(read("cpu", "cpu.cfs_quota_us").as_deref(), Some("50000"));
    }
    assert!(!processes_with(&m).is_empty());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The sandbox dies with its cordon (parent-death signal on its init).
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_with(&m).is_empty() {
        assert!(
            Instant::now() < deadline,
            "sandbox outlived kill -9 of cordon"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Its cgroups are stale now; `cordon gc` removes them.
    let out = cordon(&["gc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_no_leftovers(pid, Some(&m));
}

#[test]
fn killing_the_workload_from_outside_is_reported() {
    require_root!();
    let m = marker();
    let (mut child, _out) = spawn_ready(&[
        "run",
        "--",
        "sh",
        "-c",
        &format!("echo ready; sleep 100; : {m}"),
    ]);
    let pid = child.id();
    // SIGTERM to cordon is forwarded to the workload (sh as PID 2 dies of it).
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert_no_leftovers(pid, Some(&m));
}

#[test]
fn rootfs_dir_is_used_and_left_unmodified() {
    require_root!();
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        eprintln!("SKIPPED: busybox-static is not installed (scripts/setup.sh installs it)");
        return;
    }
    let root = temp_dir("rootfs");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let before: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let out = run_clean(
        &[
            "run",
            "--rootfs",
            root.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "echo hi > /new; /bin/busybox cat /new; /bin/busybox ls /",
        ],
        None,
    );
    let after: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    fs::remove_dir_all(&root).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("hi\n"), "{stdout}");
    for entry in ["bin", "dev", "new", "proc", "sys", "tmp"] {
        assert!(
            stdout.lines().any(|l| l == entry),
            "/{entry} missing: {stdout}"
        );
    }
    assert!(
        !stdout.lines().any(|l| l == "usr"),
        "host /usr leaked into --rootfs: {stdout}"
    );
    assert_eq!(before, after, "the rootfs directory was modified");
}

#[test]
fn mounts_env_workdir_user_hostname() {
    require_root!();
    let dir = temp_dir("mounts");
    fs::write(dir.join("in.txt"), "from host").unwrap();
    // The workload runs as uid 1000: let it write into the shared directory.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let rw = format!("{}:/data", dir.display());
    let ro = format!("{}:/ro:ro", dir.display());
    let script = "cat /data/in.txt; echo; echo written > /data/out.txt; echo x > /ro/fail.txt 2>/dev/null || echo ro-refused; pwd; echo $FOO; hostname; id -u; id -g";
    let out = run_clean(
        &[
            "run",
            "--mount",
            &rw,
            "--mount",
            &ro,
            "--env",
            "FOO=bar baz",
            "--workdir",
            "/work/dir",
            "--hostname",
            "box1",
            "--user",
            "1000:1001",
            "--",
            "sh",
            "-c",
            script,
        ],
        None,
    );
    let written = fs::read_to_string(dir.join("out.txt"));
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "from host\nro-refused\n/work/dir\nbar baz\nbox1\n1000\n1001\n"
    );
    assert_eq!(written.unwrap(), "written\n");
}

#[test]
fn network_none_and_loopback() {
    require_root!();
    let client = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n    print('connected')\nexcept OSError as e:\n    print('refused' if e.errno == 111 else 'unreachable')";
    let out = run_clean(&["run", "--", "python3", "-c", client], None);
    assert_eq!(text(&out.stdout), "unreachable\n", "{}", text(&out.stderr));
    let echo = "import socket, threading\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)\ndef serve():\n    c, _ = s.accept(); c.sendall(c.recv(10)); c.close()\nthreading.Thread(target=serve).start()\nc = socket.create_connection(s.getsockname()); c.sendall(b'ping'); print(c.recv(10).decode())";
    let out = run_clean(
        &["run", "--network", "loopback", "--", "python3", "-c", echo],
        None,
    );
    assert_eq!(text(&out.stdout), "ping\n", "{}", text(&out.stderr));
}

#[test]
fn runtime_binary_cannot_be_reached_from_inside() {
    require_root!();
    // The init (PID 1) runs cordon's code: its exe, root and fds must be out of reach, and a
    // script whose interpreter is /proc/self/exe must not give write access to the binary.
    let dir = temp_dir("selfexe");
    fs::write(dir.join("evil"), "#!/proc/self/exe\n").unwrap();
    fs::set_permissions(dir.join("evil"), fs::Permissions::from_mode(0o755)).unwrap();
    let check = r#"
import os
for p in ['/proc/1/exe', '/proc/1/root/etc/hostname', '/proc/1/fd/0', '/proc/1/mem']:
    try:
        os.open(p, os.O_RDONLY if 'exe' not in p else os.O_WRONLY); print('opened', p)
    except OSError as e:
        print('refused', p)
try:
    print('readlink', os.readlink('/proc/1/exe'))
except OSError:
    print('readlink refused')
"#;
    let mount = format!("{}:/x:ro", dir.display());
    let out = run_clean(
        &["run", "--mount", &mount, "--", "python3", "-c", check],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("opened"), "{stdout}");
    assert!(stdout.contains("readlink refused"), "{stdout}");
    // Executing /proc/self/exe as the first command runs cordon itself, harmlessly: it has no
    // capabilities and cannot create namespaces, so it fails with 125.
    let out = cordon(&["run", "--mount", &mount, "--", "/x/evil"])
        .output()
        .unwrap();
    fs::remove_dir_all(&dir).unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn user_namespace_mode_maps_root_to_the_caller() {
    require_root!();
    let out = run_clean(
        &[
            "run",
            "--userns",
            "--",
            "sh",
            "-c",
            "cat /proc/self/uid_map; id -u",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let fields: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(fields, ["0", "0", "1"], "{stdout}");
    assert!(stdout.ends_with("0\n"));
}

#[test]
fn stale_sandbox_is_collected_by_the_next_run() {
    require_root!();
    let m = marker();
    let (mut child, _out) = spawn_ready(&[
        "run",
        "--",
        "sh",
        "-c",
        &format!("echo ready; sleep 100; : {m}"),
    ]);
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let out = run_clean(&["run", "--", "true"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_no_leftovers(pid, Some(&m));
}
