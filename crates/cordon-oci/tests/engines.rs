//! cordon-oci under real engines: a private containerd (`ctr run --runc-binary`) and a private
//! dockerd with cordon registered as a runtime, both from Debian's packages, started and
//! stopped by the test. Needs root; prints why it is skipped otherwise.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cordon_testkit::{is_root, workspace_binary};

const CORDON_OCI: &str = env!("CARGO_BIN_EXE_cordon-oci");
const IMAGE: &str = "docker.io/library/cordon-busybox:latest";
const NS: &str = "cordon-engine-test";

fn sh(script: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .expect("running sh")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A workload that exits 42 when it gets SIGUSR1.
const EXIT_42_ON_USR1: &str = "trap 'exit 42' USR1; while :; do sleep 0.1; done";

/// `docker run -d --runtime RUNTIME --network none OPTS... cordon-busybox CMD...`; the
/// container's id.
fn run_detached(
    docker: &dyn Fn(&[&str]) -> Output,
    runtime: &str,
    opts: &[&str],
    cmd: &[&str],
) -> String {
    let mut args = vec!["run", "-d", "--runtime", runtime, "--network", "none"];
    args.extend_from_slice(opts);
    args.push("cordon-busybox");
    args.extend_from_slice(cmd);
    let out = docker(&args);
    assert!(
        out.status.success(),
        "{runtime}: run -d: {}",
        text(&out.stderr)
    );
    let cid = text(&out.stdout).trim().to_string();
    assert!(!cid.is_empty(), "{runtime}: run -d printed no id");
    cid
}

/// `docker stop -t SECS` ends the container by SIGTERM alone (before SIGKILL would come): exit
/// status 143. Removes the container.
fn stop_exits_143(docker: &dyn Fn(&[&str]) -> Output, cid: &str, secs: u64, runtime: &str) {
    let started = Instant::now();
    assert!(docker(&["stop", "-t", &secs.to_string(), cid])
        .status
        .success());
    assert!(
        started.elapsed() < Duration::from_secs(secs),
        "{runtime}: docker stop needed SIGKILL"
    );
    assert_eq!(
        text(&docker(&["inspect", "-f", "{{.State.ExitCode}}", cid]).stdout).trim(),
        "143"
    );
    assert!(docker(&["rm", cid]).status.success());
}

/// `docker kill -s USR1` reaches the workload ([`EXIT_42_ON_USR1`]): it exits 42.
fn usr1_exits_42(docker: &dyn Fn(&[&str]) -> Output, cid: &str) {
    assert!(docker(&["kill", "-s", "USR1", cid]).status.success());
    assert_eq!(text(&docker(&["wait", cid]).stdout).trim(), "42");
}

/// A daemon started by the test; killed (TERM, then KILL) and reaped on drop.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill takes integers only.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop on SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up ({} missing)",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The temp directory with the daemons' state; cleaned up (mounts too) on drop.
struct Workdir(PathBuf);

impl Drop for Workdir {
    fn drop(&mut self) {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4))
            .filter(|p| p.starts_with(self.0.to_str().unwrap()))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
        let _ = fs::remove_dir_all(&self.0);
        let _ = fs::remove_dir_all(Path::new("/run/containerd/runc").join(NS));
        let _ = fs::remove_dir_all(Path::new("/run/containerd/runc").join(format!("{NS}-docker")));
        for ctrl in [
            "memory", "pids", "cpu", "devices", "cpuset", "blkio", "freezer", "cpuacct",
        ] {
            for leaf in [NS.to_string(), format!("{NS}-docker")] {
                let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(ctrl).join(leaf));
            }
        }
    }
}

/// Builds an OCI image layout of a busybox root filesystem (no registry is reachable here).
fn build_image(dir: &Path) -> PathBuf {
    let script = format!(
        r#"set -e
W={dir}
mkdir -p $W/rootfs/bin $W/layout/blobs/sha256
cp /bin/busybox $W/rootfs/bin/
for a in sh cat echo sleep ls id hostname ps true grep head tr; do ln -s busybox $W/rootfs/bin/$a; done
tar -C $W/rootfs -cf $W/layer.tar .
blob() {{ d=$(sha256sum "$1" | cut -d' ' -f1); cp "$1" $W/layout/blobs/sha256/$d; echo "$d $(stat -c %s "$1")"; }}
set -- $(blob $W/layer.tar); LD=$1; LS=$2
printf '{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:%s"]}}}}' $LD > $W/config.json
set -- $(blob $W/config.json); CD=$1; CS=$2
printf '{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}}]}}' $CD $CS $LD $LS > $W/manifest.json
set -- $(blob $W/manifest.json); MD=$1; MS=$2
echo '{{"imageLayoutVersion":"1.0.0"}}' > $W/layout/oci-layout
printf '{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{{"io.containerd.image.name":"{IMAGE}","org.opencontainers.image.ref.name":"latest"}}}}]}}' $MD $MS > $W/layout/index.json
tar -C $W/layout -cf $W/image.tar .
"#,
        dir = dir.display()
    );
    let out = sh(&script);
    assert!(
        out.status.success(),
        "building the image: {}",
        text(&out.stderr)
    );
    dir.join("image.tar")
}

fn start_containerd(dir: &Path) -> Daemon {
    let config = format!(
        "version = 2\nroot = \"{d}/ctd-root\"\nstate = \"{d}/ctd-state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
         [grpc]\n  address = \"{d}/containerd.sock\"\n[ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\
         [debug]\n  address = \"{d}/debug.sock\"\n",
        d = dir.display()
    );
    fs::write(dir.join("containerd.toml"), config).unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(dir.join("containerd.toml"))
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("containerd.log")).unwrap())
        .stderr(fs::File::create(dir.join("containerd.err")).unwrap())
        .spawn()
        .expect("starting containerd");
    let d = Daemon {
        name: "containerd",
        child,
    };
    wait_for(&dir.join("containerd.sock"), "containerd");
    d
}

fn ctr(dir: &Path, args: &[&str]) -> Output {
    Command::new("ctr")
        .arg("-a")
        .arg(dir.join("containerd.sock"))
        .args(["-n", NS])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running ctr")
}

fn missing_tools() -> Option<String> {
    for tool in [
        "containerd",
        "ctr",
        "dockerd",
        "/usr/bin/docker",
        "script",
        "/bin/busybox",
        "sha256sum",
        "tar",
    ] {
        let found = if tool.starts_with('/') {
            Path::new(tool).exists()
        } else {
            sh(&format!("command -v {tool}")).status.success()
        };
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/setup.sh installs it)"
            ));
        }
    }
    None
}

#[test]
fn containerd_and_docker_run_containers_through_cordon() {
    if !is_root() {
        eprintln!("SKIPPED: engine tests need root");
        return;
    }
    if let Some(why) = missing_tools() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let work = Workdir(std::env::temp_dir().join(format!("cordon-engines-{}", std::process::id())));
    fs::create_dir_all(&work.0).unwrap();
    let dir = work.0.as_path();
    let image = build_image(dir);
    let containerd = start_containerd(dir);

    // containerd: import, run (output, exit code, --rm), exec, kill.
    let out = ctr(dir, &["images", "import", image.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let out = ctr(
        dir,
        &[
            "run",
            "--rm",
            "--runc-binary",
            CORDON_OCI,
            IMAGE,
            "c1",
            "sh",
            "-c",
            "echo hello from cordon; exit 3",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "hello from cordon\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&ctr(dir, &["containers", "ls", "-q"]).stdout)
            .trim()
            .is_empty(),
        "--rm left a container"
    );
    let out = ctr(
        dir,
        &[
            "run",
            "-d",
            "--runc-binary",
            CORDON_OCI,
            IMAGE,
            "c2",
            "sleep",
            "100",
        ],
    );
    assert!(out.status.success(), "run -d: {}", text(&out.stderr));
    let state = Path::new("/run/containerd/runc")
        .join(NS)
        .join("c2/state.json");
    assert!(
        state.exists(),
        "the task was not created by cordon-oci ({} missing)",
        state.display()
    );
    let out = ctr(
        dir,
        &[
            "task",
            "exec",
            "--exec-id",
            "e1",
            "c2",
            "sh",
            "-c",
            "echo exec-ok; exit 5",
        ],
    );
    assert_eq!(text(&out.stdout), "exec-ok\n", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(5));
    assert!(ctr(dir, &["task", "kill", "-s", "SIGKILL", "c2"])
        .status
        .success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&ctr(dir, &["task", "ls"]).stdout).contains("STOPPED") {
        assert!(Instant::now() < deadline, "c2 did not stop after kill");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ctr(dir, &["task", "delete", "c2"]).status.success());
    assert!(ctr(dir, &["containers", "delete", "c2"]).status.success());
    assert!(!state.exists(), "cordon-oci state left after delete");

    // The annotation run.cordon.tier picks the tier. /proc/kallsyms is not among the masked
    // paths of ctr's default spec (it exists in a container); the sentry's policy hides it.
    for (tier, want) in [
        ("container", "kallsyms-present"),
        ("sentry", "kallsyms-absent"),
    ] {
        let out = ctr(
            dir,
            &[
                "run",
                "--rm",
                "--runc-binary",
                CORDON_OCI,
                "--annotation",
                &format!("run.cordon.tier={tier}"),
                IMAGE,
                &format!("a-{tier}"),
                "sh",
                "-c",
                "test -e /proc/kallsyms && echo kallsyms-present || echo kallsyms-absent",
            ],
        );
        assert_eq!(
            text(&out.stdout).trim(),
            want,
            "ctr --annotation run.cordon.tier={tier}: {}",
            text(&out.stderr)
        );
    }
    // containerd's runc shim takes a binary per runtime but no arguments: a symlink named
    // cordon-oci-<tier> picks the tier.
    let link = dir.join("cordon-oci-sentry");
    std::os::unix::fs::symlink(CORDON_OCI, &link).unwrap();
    let out = ctr(
        dir,
        &[
            "run",
            "--rm",
            "--runc-binary",
            link.to_str().unwrap(),
            IMAGE,
            "by-name",
            "sh",
            "-c",
            "test -e /proc/kallsyms && echo kallsyms-present || echo kallsyms-absent",
        ],
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "kallsyms-absent",
        "ctr --runc-binary cordon-oci-sentry: {}",
        text(&out.stderr)
    );

    // Docker on the same containerd, cordon registered as a runtime.
    let daemon_json = format!(
        r#"{{"runtimes": {{"cordon": {{"path": "{CORDON_OCI}"}}, "cordon-container": {{"path": "{CORDON_OCI}", "runtimeArgs": ["--tier=container"]}}, "cordon-sentry": {{"path": "{CORDON_OCI}", "runtimeArgs": ["--tier=sentry"]}}, "cordon-microvm": {{"path": "{CORDON_OCI}", "runtimeArgs": ["--tier=microvm"]}}}}}}"#
    );
    fs::write(dir.join("daemon.json"), daemon_json).unwrap();
    let sock = dir.join("docker.sock");
    let dockerd = Daemon {
        name: "dockerd",
        child: Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("docker-data"))
            .arg("--exec-root")
            .arg(dir.join("docker-exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--containerd")
            .arg(dir.join("containerd.sock"))
            .args(["--containerd-namespace", &format!("{NS}-docker")])
            .args(["--cgroup-parent", &format!("{NS}-docker")])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("dockerd.log")).unwrap())
            .stderr(fs::File::create(dir.join("dockerd.err")).unwrap())
            .spawn()
            .expect("starting dockerd"),
    };
    wait_for(&sock, "dockerd");
    let docker = |args: &[&str]| -> Output {
        Command::new("/usr/bin/docker")
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running docker")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !docker(&["version"]).status.success() {
        assert!(Instant::now() < deadline, "dockerd did not answer");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = docker(&[
        "import",
        dir.join("layer.tar").to_str().unwrap(),
        "cordon-busybox",
    ]);
    assert!(out.status.success(), "docker import: {}", text(&out.stderr));
    for runtime in ["cordon", "cordon-container"] {
        let out = docker(&[
            "run", "--rm", "--runtime", runtime, "--network", "none", "-e", "FOO=bar", "-w", "/tmp", "-u", "1000:1000",
            "--memory", "64m", "--pids-limit", "20", "cordon-busybox", "sh", "-c",
            "echo $FOO; pwd; id -u; grep -E '^(CapEff|Seccomp):' /proc/self/status; ls /sys/class/net; exit 7",
        ]);
        assert_eq!(
            out.status.code(),
            Some(7),
            "{runtime}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            text(&out.stdout),
            "bar\n/tmp\n1000\nCapEff:\t0000000000000000\nSeccomp:\t2\nlo\n",
            "{runtime}"
        );
    }
    // The memory and pids limits reach the container.
    memory_limit_enforced(&docker, "cordon");
    pids_limit_enforced(&docker, "cordon");
    // exec, stop (SIGTERM reaches the workload), kill -s.
    let cid = run_detached(
        &docker,
        "cordon",
        &["--pids-limit", "10"],
        &["sleep", "100"],
    );
    let pids_max = Path::new("/sys/fs/cgroup/pids")
        .join(format!("{NS}-docker"))
        .join(&cid)
        .join("pids.max");
    if Path::new("/sys/fs/cgroup/pids").exists() {
        assert_eq!(
            fs::read_to_string(&pids_max).unwrap_or_default().trim(),
            "10",
            "{}",
            pids_max.display()
        );
    }
    let out = docker(&["exec", &cid, "sh", "-c", "echo exec-ok; exit 9"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(9), "exec-ok\n".to_string()),
        "{}",
        text(&out.stderr)
    );
    stop_exits_143(&docker, &cid, 5, "cordon");
    let cid = run_detached(&docker, "cordon", &[], &["sh", "-c", EXIT_42_ON_USR1]);
    std::thread::sleep(Duration::from_millis(500));
    usr1_exits_42(&docker, &cid);
    assert!(docker(&["rm", &cid]).status.success());
    // docker run -t: the terminal comes through the console socket (the engine waits for the
    // end of create's output before it starts the container). `script` gives docker a tty.
    for runtime in ["cordon", "cordon-sentry"] {
        let cmd = format!(
            "/usr/bin/docker -H unix://{} run --rm -t --network none --runtime {runtime} cordon-busybox sh -c 'tty; echo $((6*7))'",
            sock.display()
        );
        let out = Command::new("timeout")
            .args(["60", "script", "-qec", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("running script");
        let got = text(&out.stdout).replace('\r', "");
        assert_eq!(
            got.lines().collect::<Vec<_>>(),
            ["/dev/pts/0", "42"],
            "{runtime} -t: {}",
            text(&out.stderr)
        );
    }
    sentry_under_docker(&docker);
    match microvm_missing() {
        Some(why) => eprintln!("SKIPPED (microvm half): {why}"),
        None => microvm_under_engines(&docker, dir),
    }
    drop(dockerd);
    drop(containerd);
    drop(work);
    let left =
        sh("pgrep -f 'cordon-engine[s]-'; pgrep -x cordon-keeper; pgrep -x cordon-exec; true");
    assert!(
        text(&left.stdout).trim().is_empty(),
        "processes left: {}",
        text(&left.stdout)
    );
}

/// `--pids-limit 10` under `runtime`: a shell starting 30 background sleeps must hit the
/// limit (the shell reports a failed fork) rather than finish them all.
/// `--memory 32m`: a shell holding 100 MB is killed by the memory cgroup (137).
fn memory_limit_enforced(docker: &dyn Fn(&[&str]) -> Output, runtime: &str) {
    let out = docker(&[
        "run",
        "--rm",
        "--runtime",
        runtime,
        "--network",
        "none",
        "--memory",
        "32m",
        "cordon-busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "{runtime}: memory limit: {}",
        text(&out.stdout)
    );
}

fn pids_limit_enforced(docker: &dyn Fn(&[&str]) -> Output, runtime: &str) {
    let out = docker(&[
        "run",
        "--rm",
        "--runtime",
        runtime,
        "--network",
        "none",
        "--pids-limit",
        "10",
        "cordon-busybox",
        "sh",
        "-c",
        "for i in $(seq 30); do sleep 2 & done; wait; echo done",
    ]);
    assert!(
        text(&out.stderr).contains("fork"),
        "{runtime}: pids limit not enforced: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The sentry tier as a Docker runtime (`runtimeArgs: ["--tier=sentry"]`).
/// The escape probe for io_uring, whose operations no seccomp filter sees, through Docker's
/// default seccomp profile (which allows io_uring): runc lets it through, the sentry must not.
fn sentry_refuses_bypasses_docker_allows(docker: &dyn Fn(&[&str]) -> Output) {
    let probe = workspace_binary(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "cordon-probe",
        "cordon-probe",
    );
    let mount = format!("{}:/cordon-probe:ro", probe.display());
    let verdict = |runtime: &str| {
        let out = docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--runtime",
            runtime,
            "-v",
            &mount,
            "cordon-busybox",
            "/cordon-probe",
            "run",
            "--json",
            "io-uring",
        ]);
        let line = text(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("{runtime}: {e}: {line:?} {}", text(&out.stderr)));
        (
            v["result"].as_str().unwrap_or("").to_string(),
            v["detail"].to_string(),
        )
    };
    // runc shows that Docker's profile really allows the call here (else nothing is tested).
    let (runc, detail) = verdict("runc");
    assert_eq!(runc, "ESCAPED", "runc: {detail}");
    let (sentry, detail) = verdict("cordon-sentry");
    assert_eq!(sentry, "BLOCKED", "cordon-sentry: {detail}");
}

fn sentry_under_docker(docker: &dyn Fn(&[&str]) -> Output) {
    let out = docker(&[
        "run",
        "--rm",
        "--runtime",
        "cordon-sentry",
        "--network",
        "none",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "--memory",
        "64m",
        "cordon-busybox",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; grep -E '^Seccomp_filters:' /proc/self/status; \
         test -e /proc/kallsyms && echo kallsyms-present || echo kallsyms-absent; exit 7",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(7),
            "bar\n/tmp\n1000\nSeccomp_filters:\t2\nkallsyms-absent\n".to_string()
        ),
        "sentry: {}",
        text(&out.stderr)
    );
    memory_limit_enforced(docker, "cordon-sentry");
    pids_limit_enforced(docker, "cordon-sentry");
    sentry_refuses_bypasses_docker_allows(docker);
    // docker exec runs under the same supervision; stop and kill -s reach the workload.
    let cid = run_detached(docker, "cordon-sentry", &[], &["sh", "-c", EXIT_42_ON_USR1]);
    let out = docker(&[
        "exec", "-u", "1000", &cid, "sh", "-c",
        "grep -E '^Seccomp_filters:' /proc/self/status; test -e /proc/kallsyms || echo kallsyms-absent; id -u; exit 9",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(9),
            "Seccomp_filters:\t2\nkallsyms-absent\n1000\n".to_string()
        ),
        "sentry exec: {}",
        text(&out.stderr)
    );
    // pause/unpause (the v1 freezer here) and update (the memory cgroup).
    assert!(docker(&["pause", &cid]).status.success(), "docker pause");
    assert_eq!(
        text(&docker(&["inspect", "-f", "{{.State.Status}}", &cid]).stdout).trim(),
        "paused"
    );
    assert!(
        docker(&["unpause", &cid]).status.success(),
        "docker unpause"
    );
    let out = docker(&["update", "--memory", "96m", "--memory-swap", "96m", &cid]);
    assert!(out.status.success(), "docker update: {}", text(&out.stderr));
    let limit = Path::new("/sys/fs/cgroup/memory")
        .join(format!("{NS}-docker"))
        .join(&cid)
        .join("memory.limit_in_bytes");
    if Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(
            fs::read_to_string(&limit).unwrap_or_default().trim(),
            (96u64 << 20).to_string(),
            "{}",
            limit.display()
        );
    }
    usr1_exits_42(docker, &cid);
    assert!(docker(&["rm", &cid]).status.success());
    let cid = run_detached(docker, "cordon-sentry", &[], &["sleep", "100"]);
    stop_exits_143(docker, &cid, 5, "cordon-sentry");
}

/// Why the microvm tier cannot run here, if it cannot. Its guest kernel and images come from
/// `cordon microvm setup` (idempotent; fetched here on first use, as the cordon CLI's tests do).
fn microvm_missing() -> Option<String> {
    if !sh("command -v qemu-system-x86_64").status.success() {
        return Some("qemu-system-x86_64 is not installed (scripts/setup.sh installs it)".into());
    }
    cordon_microvm::MicrovmTier::default()
        .setup()
        .err()
        .map(|e| format!("cordon microvm setup failed: {e}"))
}

/// `docker exec` into the running microvm container `cid`: the process runs in the guest next
/// to the container's, with its stdio, exit status, -e/-u/-w and the container's confinement;
/// no exec proxy is left once it ended.
fn microvm_exec(docker: &dyn Fn(&[&str]) -> Output, dir: &Path, cid: &str) {
    let out = docker(&[
        "exec",
        cid,
        "sh",
        "-c",
        "echo exec-ok; echo exec-err >&2; uname -r; exit 9",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(9),
        "microvm exec: {stdout} {}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"exec-ok"), "microvm exec: {stdout}");
    assert_ne!(
        lines.get(1).copied(),
        Some(text(&sh("uname -r").stdout).trim()),
        "microvm exec ran on the host's kernel"
    );
    assert_eq!(text(&out.stderr), "exec-err\n");
    let out = docker(&[
        "exec",
        "-e",
        "EXEC_VAR=v1",
        "-u",
        "1000:1001",
        "-w",
        "/tmp",
        cid,
        "sh",
        "-c",
        "echo $EXEC_VAR; id -u; id -g; pwd; grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status",
    ]);
    assert_eq!(
        text(&out.stdout),
        "v1\n1000\n1001\n/tmp\nNoNewPrivs:\t1\nSeccomp:\t2\n",
        "microvm exec -e -u -w: {}",
        text(&out.stderr)
    );
    // stdin reaches the process; its end is the process's end of input.
    let out = sh(&format!(
        "printf 'line1\\nline2\\n' | docker -H unix://{} exec -i {cid} cat",
        dir.join("docker.sock").display()
    ));
    assert_eq!(
        text(&out.stdout),
        "line1\nline2\n",
        "microvm exec -i: {}",
        text(&out.stderr)
    );
    assert!(out.status.success());
    let out = docker(&["exec", cid, "no-such-command"]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "microvm exec of a missing command: {} {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A process killed in the guest: the exec's status is that signal's.
    let out = docker(&["exec", cid, "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
    // A terminal is refused with a reason.
    let out = docker(&["exec", "-t", cid, "true"]);
    assert!(!out.status.success(), "microvm exec -t should be refused");
    // Every exec proxy is gone once its process ended.
    let left = text(&sh("pgrep -x cordon-exec; true").stdout);
    assert!(left.trim().is_empty(), "exec proxies left: {left}");
    // A detached exec outlives nothing: when the container's process ends, it and its proxy
    // go (checked with the other processes at the end of the test).
    let out = docker(&["exec", "-d", cid, "sleep", "1000"]);
    assert!(out.status.success(), "exec -d: {}", text(&out.stderr));
    let proxies = text(&sh("pgrep -x cordon-exec; true").stdout);
    assert!(!proxies.trim().is_empty(), "exec -d: no exec proxy running");
}

/// The microvm tier as a Docker runtime and through ctr's annotation.
fn microvm_under_engines(docker: &dyn Fn(&[&str]) -> Output, dir: &Path) {
    let host_release = text(&sh("uname -r").stdout).trim().to_string();
    let out = docker(&[
        "run",
        "--rm",
        "--runtime",
        "cordon-microvm",
        "--network",
        "none",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "cordon-busybox",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; uname -r; ls /sys/class/net; exit 7",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "microvm: {stdout} {}",
        text(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "microvm: {stdout}");
    assert_eq!(&lines[..3], ["bar", "/tmp", "1000"], "microvm: {stdout}");
    assert_ne!(
        lines[3], host_release,
        "microvm: the guest runs the host's kernel"
    );
    assert_eq!(lines[4], "lo", "microvm: network devices: {stdout}");
    // The limit is the guest's pids cgroup (the VMM's threads are not counted on the host).
    pids_limit_enforced(docker, "cordon-microvm");
    // A detached VM: --memory sizes the guest and the cgroup (plus the VMM's headroom), `docker
    // top` lists the keeper and the VMM, exec runs in the guest, kill -s and stop reach it.
    let cid = run_detached(
        docker,
        "cordon-microvm",
        &["--memory", "256m"],
        &[
            "sh",
            "-c",
            &format!("grep MemTotal /proc/meminfo; {EXIT_42_ON_USR1}"),
        ],
    );
    let limit = Path::new("/sys/fs/cgroup/memory")
        .join(format!("{NS}-docker"))
        .join(&cid)
        .join("memory.limit_in_bytes");
    if Path::new("/sys/fs/cgroup/memory").exists() {
        assert_eq!(
            fs::read_to_string(&limit).unwrap_or_default().trim(),
            (512u64 << 20).to_string(),
            "{}: {} {}",
            limit.display(),
            text(
                &docker(&[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    &cid
                ])
                .stdout
            ),
            text(&docker(&["logs", &cid]).stderr)
        );
    }
    let top = text(&docker(&["top", &cid]).stdout);
    assert!(
        top.contains("cordon-oci") || top.contains("cordon-keeper"),
        "docker top: {top}"
    );
    assert!(top.contains("qemu"), "docker top: {top}");
    microvm_exec(docker, dir, &cid);
    std::thread::sleep(Duration::from_millis(500));
    usr1_exits_42(docker, &cid);
    // The detached exec's proxy went with the container's process.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = text(&sh("pgrep -x cordon-exec; true").stdout);
        if left.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exec proxies outlived the container: {left}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = text(&docker(&["logs", &cid]).stdout);
    let kib: u64 = logs
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse().ok())
        .unwrap_or(0);
    assert!(
        (150_000..=262_144).contains(&kib),
        "guest MemTotal with --memory 256m: {logs}"
    );
    assert!(docker(&["rm", &cid]).status.success());
    let cid = run_detached(docker, "cordon-microvm", &[], &["sleep", "100"]);
    std::thread::sleep(Duration::from_millis(500));
    stop_exits_143(docker, &cid, 10, "cordon-microvm");
    // ctr with the annotation: the guest's kernel answers.
    let out = ctr(
        dir,
        &[
            "run",
            "--rm",
            "--runc-binary",
            CORDON_OCI,
            "--annotation",
            "run.cordon.tier=microvm",
            IMAGE,
            "a-microvm",
            "sh",
            "-c",
            "uname -r; exit 4",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(4),
        "ctr microvm: {}",
        text(&out.stderr)
    );
    let release = text(&out.stdout).trim().to_string();
    assert!(
        !release.is_empty() && release != host_release,
        "ctr microvm: {release:?}"
    );
}
