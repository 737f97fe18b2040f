//! End-to-end tests of `cordon run --tier sentry`: ordinary workloads must run unchanged, and
//! the supervisor must hold against races, path tricks and fd reopening, with the refusals in
//! the audit log. They need root (namespaces, cgroups); without it each prints SKIPPED.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cordon_testkit::{require_root, workspace_binary};

/// The `cordon` binary of this build's profile, built on first use (this crate's tests do not
/// build cordon-cli's binary by themselves).
fn cordon_binary() -> PathBuf {
    workspace_binary(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "cordon-cli",
        "cordon",
    )
}

fn workloads() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads")
}

fn run(tier: &str, extra: &[&str], cmd: &[&str]) -> Output {
    let mount = format!("{}:/w:ro", workloads().display());
    let out = Command::new(cordon_binary())
        .args([
            "run",
            "--tier",
            tier,
            "--timeout",
            "120s",
            "--mount",
            &mount,
        ])
        .args(extra)
        .arg("--")
        .args(cmd)
        .output()
        .expect("running cordon");
    if !out.status.success() {
        eprintln!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A compiled workload; the binary (and its directory, once empty) is removed on drop.
struct Compiled(PathBuf);

impl Drop for Compiled {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        if let Some(dir) = self.0.parent() {
            let _ = fs::remove_dir(dir); // fails while another test's binary is still there
        }
    }
}

/// Compiles a workload C file statically into a temporary directory.
fn compile(name: &str) -> Option<Compiled> {
    compile_as(name, name)
}

/// Compiles workloads/`name`.c to `out` in a directory of its own (tests run in parallel).
fn compile_as(name: &str, out: &str) -> Option<Compiled> {
    let out_dir =
        std::env::temp_dir().join(format!("cordon-sentry-test-{}-{out}", std::process::id()));
    fs::create_dir_all(&out_dir).ok()?;
    let bin = out_dir.join(name);
    let ok = Command::new("gcc")
        .args(["-O2", "-pthread", "-static", "-o"])
        .arg(&bin)
        .arg(workloads().join(format!("{name}.c")))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(Compiled(bin))
}

#[test]
fn python_compat_without_network() {
    require_root!();
    let o = run("sentry", &[], &["python3", "/w/compat.py"]);
    assert!(o.status.success());
    assert!(stdout(&o).ends_with("all ok\n"), "{}", stdout(&o));
}

#[test]
fn python_compat_with_loopback() {
    require_root!();
    let o = run(
        "sentry",
        &["--network", "loopback", "-e", "NET=loopback"],
        &["python3", "/w/compat.py"],
    );
    assert!(o.status.success());
    assert!(stdout(&o).contains("ok tcp-loopback"), "{}", stdout(&o));
}

#[test]
fn shell_pipelines_dash_and_busybox() {
    require_root!();
    for shell in [&["sh"][..], &["busybox", "sh"][..]] {
        if shell[0] == "busybox" && !Path::new("/bin/busybox").exists() {
            eprintln!("SKIPPED: busybox pipeline: /bin/busybox is not installed");
            continue;
        }
        let mut cmd = shell.to_vec();
        cmd.push("/w/pipeline.sh");
        let o = run("sentry", &[], &cmd);
        assert!(o.status.success(), "{shell:?}");
        assert!(stdout(&o).ends_with("pipeline ok\n"), "{}", stdout(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains("to-stderr"));
    }
}

#[test]
fn compiled_c_program() {
    require_root!();
    let Some(bin) = compile("prog") else {
        eprintln!("SKIPPED: compiled_c_program: gcc could not build a static program");
        return;
    };
    let m = format!("{}:/prog:ro", bin.0.display());
    let o = run("sentry", &["--mount", &m], &["/prog"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "c ok\n");
}

#[test]
fn exit_codes_pass_through() {
    require_root!();
    let o = run("sentry", &[], &["sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = run("sentry", &[], &["/no/such/program"]);
    assert_eq!(o.status.code(), Some(127));
}

#[test]
fn racing_path_flips_never_open_a_hidden_file() {
    require_root!();
    let Some(bin) = compile("race") else {
        eprintln!("SKIPPED: racing_path_flips: gcc could not build a static program");
        return;
    };
    let m = format!("{}:/race:ro", bin.0.display());
    let audit =
        std::env::temp_dir().join(format!("cordon-sentry-race-{}.jsonl", std::process::id()));
    let a = format!("{}", audit.display());
    let o = run("sentry", &["--mount", &m, "--audit-log", &a], &["/race"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    // Both states of the buffer were seen: some opens read the hidden path and were refused.
    let counts: Vec<u64> = text
        .trim()
        .strip_prefix("race ok ")
        .expect("race summary")
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(counts[0] > 0 && counts[1] > 0, "{text}");
    let log = fs::read_to_string(&audit).unwrap_or_default();
    let _ = fs::remove_file(&audit);
    assert!(log.lines().any(|l| l.contains("\"path\":\"/proc/iomem\"")));
    // The log is rate-limited: far fewer lines than refusals.
    assert!(
        (log.lines().count() as u64) < counts[1],
        "{} lines",
        log.lines().count()
    );
}

#[test]
fn path_tricks_stay_inside_and_are_audited() {
    require_root!();
    let name = format!("cordon-sentry-secret-{}", std::process::id());
    let secret = std::env::temp_dir().join(&name);
    fs::write(&secret, "host secret\n").unwrap();
    let audit = std::env::temp_dir().join(format!("{name}.jsonl"));
    let a = format!("{}", audit.display());
    let o = run(
        "sentry",
        &["--audit-log", &a],
        &["python3", "/w/escape.py", &name],
    );
    let _ = fs::remove_file(&secret);
    let text = stdout(&o);
    assert!(o.status.success());
    assert!(!text.contains("FAIL"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        16,
        "{text}"
    );
    let log = fs::read_to_string(&audit).unwrap_or_default();
    let _ = fs::remove_file(&audit);
    for reason in [
        "hidden path",
        "reopening an fd with more access",
        "read-only path",
    ] {
        assert!(
            log.contains(reason),
            "no {reason:?} in the audit log:\n{log}"
        );
    }
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(v["event"], "denied");
        assert!(v["syscall"].is_string() && v["errno"].is_string());
    }
}

/// Landlock, enforced on the workload before exec, stops what reaches the kernel without
/// passing the supervisor: executing a file the workload wrote to /tmp (execve is not a
/// supervised call). The container tier, without Landlock, runs it: the refusal is
/// Landlock's alone.
#[test]
fn landlock_forbids_executing_what_was_written_to_tmp() {
    require_root!();
    let script = "cp /bin/true /tmp/payload && /tmp/payload && echo ran";
    let o = run("container", &[], &["sh", "-c", script]);
    assert_eq!(stdout(&o), "ran\n", "the container tier runs it");
    let o = run("sentry", &["--debug"], &["sh", "-c", script]);
    assert!(!o.status.success());
    assert_eq!(stdout(&o), "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/tmp/payload: Permission denied"), "{err}");
    assert!(
        err.contains("workload: landlock ABI") && err.contains("enforced before exec"),
        "{err}"
    );
    // What is not written at run time still runs.
    let o = run("sentry", &[], &["sh", "-c", "/bin/true && echo ran"]);
    assert_eq!(stdout(&o), "ran\n");
}

/// A single bind-mounted file, writable: its Landlock rule may carry only file rights (the
/// kernel refuses directory rights on a file with EINVAL, which failed the run with 125).
#[test]
fn a_writable_file_mount_keeps_working_under_landlock() {
    require_root!();
    let file = std::env::temp_dir().join(format!("cordon-sentry-file-{}", std::process::id()));
    fs::write(&file, "one\n").expect("writing the file");
    let mount = format!("{}:/data/f", file.display());
    let o = run(
        "sentry",
        &["--mount", &mount],
        &["sh", "-c", "echo two >> /data/f && cat /data/f"],
    );
    let on_host = fs::read_to_string(&file).unwrap_or_default();
    let _ = fs::remove_file(&file);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "one\ntwo\n");
    assert_eq!(on_host, "one\ntwo\n");
}

/// With `--user`, the supervisor acts with the workload's file-system identity: a root-only
/// file stays closed to it (also through a symlink), and what it creates is its own.
#[test]
fn user_identity_applies_to_supervised_calls() {
    require_root!();
    let dir = std::env::temp_dir().join(format!("cordon-sentry-user-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("creating the test directory");
    let secret = dir.join("secret");
    fs::write(&secret, "top secret\n").expect("writing the secret");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).expect("chmod 600");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let mount = format!("{}:/sec:ro", dir.display());
    let script = "id -u; cat /sec/secret; ln -s /sec/secret /tmp/l; cat /tmp/l; \
                  touch /tmp/mine && mkdir /tmp/d && stat -c %u:%g /tmp/mine /tmp/d";
    let o = run(
        "sentry",
        &["--user", "1000:1000", "--mount", &mount],
        &["sh", "-c", script],
    );
    let _ = fs::remove_dir_all(&dir);
    let out = stdout(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(out, "1000\n1000:1000\n1000:1000\n", "stderr: {err}");
    assert!(!out.contains("top secret"));
    assert!(err.contains("/sec/secret: Permission denied"), "{err}");
    assert!(err.contains("/tmp/l: Permission denied"), "{err}");
}

#[test]
fn a_waiting_connect_does_not_stall_other_calls() {
    require_root!("namespaces and cgroups");
    // Under 40 s whatever happens: a supervisor stuck in the connect deadlocks the script.
    let mount = format!("{}:/w:ro", workloads().display());
    let out = Command::new(cordon_binary())
        .args(["run", "--tier", "sentry", "--timeout", "40s", "--network"])
        .args(["loopback", "--mount", &mount, "--"])
        .args(["python3", "/w/waiting_connect.py"])
        .output()
        .expect("running cordon");
    let text = stdout(&out);
    assert!(
        out.status.success() && text == "unix: ok\ntcp: ok\n",
        "exit {:?}\nstdout:\n{text}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// runsc (2022) leaves its cgroups, named after the container id, under every hierarchy's root
/// after `delete`: remove them (they are empty once the sandbox is gone).
fn remove_runsc_cgroups(id: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(id)];
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        dirs.push(entry.path().join(id));
    }
    for dir in dirs {
        if dir.is_dir() {
            let _ = fs::remove_dir(&dir);
            assert!(!dir.exists(), "{} could not be removed", dir.display());
        }
    }
}

/// The compatibility set (workloads/compat-set.sh: python3 files, json, sqlite3, subprocess,
/// threads, signals, unix and loopback TCP/UDP sockets; a shell pipeline under dash and under
/// busybox; a static C program with threads) under the container tier, the sentry tier and
/// gVisor's runsc (ptrace platform, from an OCI bundle that mirrors `cordon run`'s default
/// root) in one run. Prints the pass counts; the sentry tier must pass everything the
/// container tier passes. runsc is a reference: its count is reported, not asserted, and a
/// missing runsc is a printed skip of that column only.
#[test]
fn compat_pass_counts_container_sentry_runsc() {
    require_root!();
    let Some(prog) = compile_as("prog", "compat") else {
        eprintln!("SKIPPED: compat_pass_counts: gcc could not build a static program");
        return;
    };
    let prog_dir = prog.0.parent().expect("a directory").to_path_buf();
    let prog_mount = format!("{}:/prog:ro", prog_dir.display());
    let cmd = ["sh", "/w/compat-set.sh"];

    let mut rows = Vec::new();
    for tier in ["container", "sentry"] {
        let o = run(
            tier,
            &["--network", "loopback", "--mount", &prog_mount],
            &cmd,
        );
        rows.push((tier.to_string(), stdout(&o)));
    }
    match run_runsc(&prog_dir, &cmd) {
        Ok(out) => rows.push(("runsc".to_string(), out)),
        Err(why) => eprintln!("SKIPPED: the runsc column: {why}"),
    }
    let count = |out: &str| out.lines().filter(|l| l.starts_with("pass ")).count();
    let total = stdout_items(&rows[0].1);
    println!("compatibility set: {total} items");
    for (name, out) in &rows {
        println!("compat_pass_count {name}: {} of {total}", count(out));
        for l in out.lines().filter(|l| l.starts_with("FAIL")) {
            println!("    {name}: {l}");
        }
    }
    assert_eq!(total, 11, "the set has 11 items: {}", rows[0].1);
    let container: Vec<&str> = rows[0]
        .1
        .lines()
        .filter(|l| l.starts_with("pass "))
        .collect();
    for item in &container {
        assert!(
            rows[1].1.lines().any(|l| l == *item),
            "{item} in the container tier but not in the sentry tier:\n{}",
            rows[1].1
        );
    }
    assert_eq!(count(&rows[1].1), total, "{}", rows[1].1);
}

fn stdout_items(out: &str) -> usize {
    out.lines()
        .filter(|l| l.starts_with("pass ") || l.starts_with("FAIL "))
        .count()
}

/// Runs `cmd` under `runsc --platform=ptrace --network=none` from a throw-away OCI bundle: the
/// host's /usr read-only behind the usual top-level links, a few /etc entries, private /tmp,
/// /w and /prog bound read-only. Returns its stdout.
fn run_runsc(prog_dir: &Path, cmd: &[&str]) -> Result<String, String> {
    let runsc = ["/usr/bin/runsc", "/usr/local/bin/runsc"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .ok_or("runsc is not installed")?;
    let dir = std::env::temp_dir().join(format!("cordon-sentry-runsc-{}", std::process::id()));
    let result = run_runsc_in(runsc, &dir, prog_dir, cmd);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn run_runsc_in(runsc: &Path, dir: &Path, prog_dir: &Path, cmd: &[&str]) -> Result<String, String> {
    let err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let root = dir.join("rootfs");
    for d in [
        "usr", "etc", "tmp", "proc", "dev", "sys", "w", "prog", "root",
    ] {
        fs::create_dir_all(root.join(d)).map_err(|e| err("creating the bundle", e))?;
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, root.join(link)).map_err(|e| err("linking", e))?;
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .and_then(|()| fs::write(root.join("etc/group"), "root:x:0:\n"))
        .map_err(|e| err("writing /etc", e))?;
    let bind = |src: &Path, dst: &str| {
        serde_json::json!({"destination": dst, "type": "bind", "source": src,
                           "options": ["bind", "ro", "nosuid", "nodev"]})
    };
    let mut mounts = vec![
        serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        serde_json::json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "noexec", "mode=755"]}),
        serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", "mode=1777"]}),
        bind(Path::new("/usr"), "/usr"),
        bind(&workloads(), "/w"),
        bind(prog_dir, "/prog"),
    ];
    for name in ["alternatives", "ld.so.cache", "python3", "python3.11"] {
        let src = Path::new("/etc").join(name);
        if !src.exists() {
            continue;
        }
        let dst = root.join("etc").join(name);
        let made = if src.is_dir() {
            fs::create_dir_all(&dst)
        } else {
            fs::write(&dst, b"")
        };
        made.map_err(|e| err("making a mount point", e))?;
        mounts.push(bind(&src, &format!("/etc/{name}")));
    }
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": cmd,
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "HOME=/root", "LANG=C.UTF-8"],
            "cwd": "/",
            "capabilities": {"bounding": [], "effective": [], "permitted": [],
                             "inheritable": [], "ambient": []},
            "noNewPrivileges": true
        },
        "root": {"path": root, "readonly": true},
        "hostname": "cordon",
        "mounts": mounts,
        "linux": {"namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                                 {"type": "uts"}, {"type": "mount"}]}
    });
    fs::write(dir.join("config.json"), config.to_string()).map_err(|e| err("config.json", e))?;
    let state = dir.join("state");
    // runsc changes the owner of its stdio: hand it files of its own, never a shared one.
    let stdin = fs::File::create(dir.join("stdin")).map_err(|e| err("stdin", e))?;
    let stdout = fs::File::create(dir.join("stdout")).map_err(|e| err("stdout", e))?;
    let stderr = fs::File::create(dir.join("stderr")).map_err(|e| err("stderr", e))?;
    let id = format!("cordon-compat-{}", std::process::id());
    let status = Command::new(runsc)
        .arg("--root")
        .arg(&state)
        .args(["--platform=ptrace", "--network=none", "run", "--bundle"])
        .arg(dir)
        .arg(&id)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .status()
        .map_err(|e| err("running runsc", e))?;
    let _ = Command::new(runsc)
        .arg("--root")
        .arg(&state)
        .args(["delete", "--force", &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    remove_runsc_cgroups(&id);
    let out = fs::read_to_string(dir.join("stdout")).unwrap_or_default();
    if stdout_items(&out) == 0 {
        let e = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
        return Err(format!("runsc ran nothing ({status}): {e}"));
    }
    Ok(out)
}
