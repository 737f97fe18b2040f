//! `cordon-oci`: the OCI runtime command line (the interface of runc), so that containerd's
//! runc shim and Docker can use cordon as a drop-in runtime.
//!
//! Register it with Docker (`daemon.json` "runtimes") or point containerd's runc shim at it
//! (`BinaryName`, or `ctr run --runc-binary`). The tier comes from `--tier` (engines pass it
//! through "runtimeArgs") or the bundle annotation `run.cordon.tier`.

mod bundle;
mod exec_proxy;
mod hooks;
mod image_layers;
mod keeper;
mod seccomp;
mod state;
mod supervisor;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use cordon_container::{cgroup, ContainerTier};
use thiserror::Error;

use crate::state::{Record, Status};

/// Errors of the OCI front; each becomes one line on stderr (and in `--log`) and exit 1.
#[derive(Debug, Error)]
pub enum OciError {
    #[error("{0}")]
    Usage(String),
    #[error("invalid bundle: {0}")]
    Bundle(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container with id {0} already exists")]
    Exists(String),
    #[error("{0}")]
    State(String),
    #[error("{0}")]
    Runtime(String),
}

const ANNOTATION_TIER: &str = "run.cordon.tier";

#[derive(Debug, Parser)]
#[command(
    name = "cordon-oci",
    version,
    about = "cordon's OCI runtime (runc-compatible command line) for Docker and containerd"
)]
struct Cli {
    /// Directory for container state
    #[arg(long, global = true, default_value = "/run/cordon-oci")]
    root: PathBuf,
    /// Log file for errors (containerd and Docker pass one)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    /// Accepted for compatibility; cordon manages cgroupfs directly
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility
    #[arg(long, global = true)]
    debug: bool,
    /// Isolation tier: container, sentry or microvm. Overrides the run.cordon.tier annotation;
    /// without it, a program name cordon-oci-<tier> (a symlink) picks the tier
    #[arg(long, global = true)]
    tier: Option<String>,
    /// cgroup filesystem root
    #[arg(long, global = true, default_value = "/sys/fs/cgroup", hide = true)]
    cgroup_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Path to the bundle (the directory holding config.json)
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    /// Write the container's init pid to this file
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pseudo-terminal's master to (process.terminal)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Accepted for compatibility (cordon always uses pivot_root)
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for compatibility
    #[arg(long)]
    no_new_keyring: bool,
    /// Extra fds to pass (only 0 is supported: cordon closes every inherited fd)
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; it waits for `start`
    Create(CreateArgs),
    /// Run the created container's process
    Start { id: String },
    /// Print the container's state as JSON
    State { id: String },
    /// Send a signal to the container's init (default SIGTERM)
    Kill {
        /// Signal every process of the container
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a stopped container (with --force, kill it first)
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create and start a container; without --detach, wait for it and delete it
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
    },
    /// Run another process in a running container
    Exec(ExecArgs),
    /// List the container's processes
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
    },
    /// Freeze every process of a running container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Change a running container's cgroup limits
    Update(UpdateArgs),
    /// Print the runtime's features as JSON
    Features,
    /// Write a starter config.json into the bundle directory
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// A JSON file (or - for stdin) with OCI linux.resources (what Docker passes)
    #[arg(long, short = 'r')]
    resources: Option<PathBuf>,
    /// Memory limit in bytes
    #[arg(long, short = 'm')]
    memory: Option<i64>,
    /// Maximum number of tasks
    #[arg(long)]
    pids_limit: Option<i64>,
    /// CPU CFS quota in microseconds per period
    #[arg(long)]
    cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    cpu_period: Option<u64>,
    id: String,
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// A JSON file with the OCI process to run
    #[arg(long, short = 'p')]
    process: Option<PathBuf>,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long, short = 'd')]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    #[arg(long, short = 't')]
    tty: bool,
    #[arg(long)]
    cwd: Option<PathBuf>,
    #[arg(long, short = 'e')]
    env: Vec<String>,
    /// UID[:GID]
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Accepted for compatibility
    #[arg(long)]
    preserve_fds: Option<u32>,
    id: String,
    /// The command (when no --process is given)
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
}

struct Ctx {
    root: PathBuf,
    tier: ContainerTier,
    tier_flag: Option<String>,
}

fn write_pid_file(path: &Path, pid: i32) -> Result<(), OciError> {
    let tmp = path.with_extension("cordon-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| OciError::Runtime(format!("writing pid file {}: {e}", path.display())))
}

/// The tier a program name `cordon-oci-<tier>` asks for: containerd's runc shim takes a binary
/// per runtime handler but no extra arguments, so a symlink per tier selects it there.
fn tier_from_program_name() -> Option<String> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?.to_str()?.to_string();
    name.strip_prefix("cordon-oci-").map(String::from)
}

fn check_tier(
    ctx: &Ctx,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<String, OciError> {
    let tier = ctx
        .tier_flag
        .clone()
        .or_else(tier_from_program_name)
        .or_else(|| annotations.get(ANNOTATION_TIER).cloned())
        .unwrap_or_else(|| "container".into());
    match tier.as_str() {
        "container" | "sentry" | "microvm" => Ok(tier),
        other => Err(OciError::Usage(format!(
            "unknown tier {other:?} (known: container, sentry, microvm)"
        ))),
    }
}

/// A process of a sentry container: supervised syscalls go to the supervisor. It always runs
/// with no_new_privileges: the supervised-syscall filter is installed after the process has
/// dropped to its own identity (the supervisor must not see the runtime's own setup calls), and
/// without privileges that is only allowed under no_new_privileges. Landlock as in `cordon run`.
fn sentry_process(p: &mut cordon_container::ProcessConfig, spec: &oci_spec::runtime::Spec) {
    p.notify = Some(cordon_sentry::notify_policy::notify_policy());
    p.no_new_privileges = true;
    p.landlock = supervisor::landlock_rules(spec);
}

fn create(ctx: &Ctx, a: &CreateArgs) -> Result<Record, OciError> {
    state::validate_id(&a.id)?;
    if a.preserve_fds > 0 {
        return Err(OciError::Usage(
            "--preserve-fds is not supported by cordon".into(),
        ));
    }
    let b = bundle::load(&a.bundle)?;
    let annotations: std::collections::BTreeMap<String, String> = b
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let tier = check_tier(ctx, &annotations)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(&ctx.root)
        .map_err(|e| OciError::State(format!("creating {}: {e}", ctx.root.display())))?;
    let dir = state::dir(&ctx.root, &a.id);
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(OciError::Exists(a.id.clone()))
        }
        Err(e) => return Err(OciError::State(format!("creating {}: {e}", dir.display()))),
    }
    let result = create_in(ctx, a, &b, annotations, tier);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn create_in(
    ctx: &Ctx,
    a: &CreateArgs,
    b: &bundle::Bundle,
    annotations: std::collections::BTreeMap<String, String>,
    tier: String,
) -> Result<Record, OciError> {
    let fifo = state::fifo(&ctx.root, &a.id);
    let c = std::ffi::CString::new(fifo.to_string_lossy().into_owned())
        .expect("no NUL in a state path");
    // SAFETY: `c` is NUL-terminated.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(OciError::State(format!(
            "creating {}: {}",
            fifo.display(),
            std::io::Error::last_os_error()
        )));
    }
    let mut cfg = bundle::container_config(b, &a.id, fifo, a.console_socket.clone())?;
    let sentry = tier == "sentry";
    let tier_name = tier.clone();
    if sentry {
        sentry_process(&mut cfg.process, &b.spec);
    }
    let mut record = Record {
        id: a.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: b.dir.clone(),
        rootfs: b.rootfs.clone(),
        created: state::now_rfc3339(),
        annotations,
        cgroup_dirs: Vec::new(),
        tier,
    };
    let hooks = b.spec.hooks().clone().unwrap_or_default();
    let mut run_hooks = |point: &str, pid: i32| -> Result<(), String> {
        let mut r = record.clone();
        r.pid = pid;
        let st = r.oci_state(Status::Created);
        let mut st = st;
        st["status"] = "creating".into();
        match point {
            "namespaces" => {
                hooks::run(hooks.prestart().as_deref().unwrap_or_default(), &st)?;
                hooks::run(hooks.create_runtime().as_deref().unwrap_or_default(), &st)
            }
            "mounts" => hooks::run(hooks.create_container().as_deref().unwrap_or_default(), &st),
            _ => Ok(()),
        }
    };
    if tier_name == "microvm" {
        let spec = keeper::sandbox_spec(&cfg, &b.rootfs)?;
        let kept = keeper::create(
            &ctx.tier.cgroup_root,
            &cfg,
            spec,
            &state::fifo(&ctx.root, &a.id),
        )?;
        // The VM has no namespaces of the container's to run hooks in; prestart and
        // createRuntime see the keeper's pid (its network namespace is its own, empty).
        let hooked = run_hooks("namespaces", kept.pid).map_err(OciError::Runtime);
        record.pid = kept.pid;
        record.pid_start = state::start_time(kept.pid).unwrap_or(0);
        record.cgroup_dirs = kept.cgroup_dirs;
        return persist_or_undo(ctx, record, a.pid_file.as_deref(), hooked);
    }
    if cfg.process.terminal {
        // With a terminal the engine gives `create` a pipe for its output and reads it to the
        // end (containerd's runc shim does) before it calls `start`; the container's init,
        // which inherits this process's stdio and waits for `start`, must not hold it open.
        // Errors still reach the --log file.
        stdio_to_null()?;
    }
    let created = ctx
        .tier
        .create_detached(&cfg, &a.id, &mut run_hooks)
        .map_err(|e| OciError::Runtime(error_chain(&e)))?;
    record.pid = created.pid;
    record.pid_start = state::start_time(created.pid).unwrap_or(0);
    record.cgroup_dirs = created.cgroup_dirs;
    let supervised = match created.notify_sock {
        Some(sock) => supervisor::spawn(
            created.pid,
            sock,
            cfg.process.uid,
            cfg.process.gid,
            &state::dir(&ctx.root, &a.id).join(supervisor::AUDIT_LOG),
        )
        .map(|_| ()),
        None if sentry => Err(OciError::Runtime(
            "the container tier returned no seccomp listener socket".into(),
        )),
        None => Ok(()),
    };
    persist_or_undo(ctx, record, a.pid_file.as_deref(), supervised)
}

/// Puts /dev/null on this process's fds 0, 1 and 2.
fn stdio_to_null() -> Result<(), OciError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| OciError::Runtime(format!("opening /dev/null: {e}")))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto this process's standard fds; `null` stays open for the call.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(OciError::Runtime(format!(
                "redirecting fd {fd} to /dev/null: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

fn start(ctx: &Ctx, id: &str) -> Result<(), OciError> {
    let record = Record::load(&ctx.root, id)?;
    match record.status(&ctx.root) {
        Status::Created => {}
        other => {
            return Err(OciError::State(format!(
                "cannot start a container that is {}",
                other.as_str()
            )))
        }
    }
    let fifo = state::fifo(&ctx.root, id);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .map_err(|e| OciError::State(format!("opening {}: {e}", fifo.display())))?;
    // The init opens the FIFO for writing and writes one byte; wait for it (or its death).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pfd = [libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: `pfd` is a valid array of one pollfd.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 1, 50) };
        if n > 0 && pfd[0].revents & libc::POLLIN != 0 {
            break;
        }
        if !record.alive() {
            return Err(OciError::Runtime(
                "the container's init exited before start".into(),
            ));
        }
        if Instant::now() >= deadline {
            return Err(OciError::Runtime(
                "the container's init did not answer start".into(),
            ));
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&fifo);
    let b = bundle::load(&record.bundle)?;
    let hooks = b.spec.hooks().clone().unwrap_or_default();
    let st = record.oci_state(Status::Running);
    if let Err(e) = hooks::run(hooks.start_container().as_deref().unwrap_or_default(), &st)
        .and_then(|()| hooks::run(hooks.poststart().as_deref().unwrap_or_default(), &st))
    {
        let _ = kill_and_wait(&record, libc::SIGKILL);
        return Err(OciError::Runtime(e));
    }
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

fn parse_signal(s: &str) -> Result<i32, OciError> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    let sig = match name.as_str() {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "TERM" => libc::SIGTERM,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "WINCH" => libc::SIGWINCH,
        "ALRM" => libc::SIGALRM,
        "PIPE" => libc::SIGPIPE,
        _ => return Err(OciError::Usage(format!("unknown signal {s:?}"))),
    };
    Ok(sig)
}

/// After `create` set the container up and `prior` (its last step) ran: saves the state and
/// the pid file, or, if anything failed, kills the container and removes its cgroups so a
/// failed `create` leaves nothing behind.
fn persist_or_undo(
    ctx: &Ctx,
    record: Record,
    pid_file: Option<&Path>,
    prior: Result<(), OciError>,
) -> Result<Record, OciError> {
    let saved = prior
        .and_then(|()| record.save(&ctx.root))
        .and_then(|()| match pid_file {
            Some(p) => write_pid_file(p, record.pid),
            None => Ok(()),
        });
    if let Err(e) = saved {
        let _ = kill_and_wait(&record, libc::SIGKILL);
        cgroup::remove_dirs(&record.cgroup_dirs);
        return Err(e);
    }
    Ok(record)
}

fn kill_and_wait(record: &Record, sig: i32) -> bool {
    // SAFETY: kill takes integers only.
    unsafe { libc::kill(record.pid, sig) };
    // Generous: a thawed v1 freezer group on a loaded host can take seconds to run its tasks
    // into their SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(15);
    while record.alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn kill(ctx: &Ctx, id: &str, all: bool, signal: Option<&str>) -> Result<(), OciError> {
    let record = Record::load(&ctx.root, id)?;
    let sig = parse_signal(signal.unwrap_or("SIGTERM"))?;
    if record.status(&ctx.root) == Status::Stopped {
        return Err(OciError::State(format!("container {id} is not running")));
    }
    // The keeper of a microvm container forwards signals to the guest; the VMM beside it in the
    // cgroup would take them as its own (SIGTERM stops qemu), so only SIGKILL reaches it.
    if all && (record.tier != "microvm" || sig == libc::SIGKILL) {
        for dir in &record.cgroup_dirs {
            for pid in cgroup::processes(dir) {
                // SAFETY: kill takes integers only.
                unsafe { libc::kill(pid, sig) };
            }
        }
        return Ok(());
    }
    // SAFETY: kill takes integers only.
    if unsafe { libc::kill(record.pid, sig) } != 0 {
        return Err(OciError::Runtime(format!(
            "signalling {id}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<(), OciError> {
    let record = match Record::load(&ctx.root, id) {
        Ok(r) => r,
        Err(OciError::NotFound(_)) if force => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = record.status(&ctx.root);
    if status != Status::Stopped {
        if !force {
            return Err(OciError::State(format!(
                "cannot delete container {id} that is not stopped: {}",
                status.as_str()
            )));
        }
        if status == Status::Paused {
            // A frozen v1 task takes SIGKILL only once thawed.
            // SAFETY: kill takes integers only.
            unsafe { libc::kill(record.pid, libc::SIGKILL) };
            let _ = cgroup::set_frozen(&ctx.tier.cgroup_root, &record.cgroup_dirs, false);
        }
        if !kill_and_wait(&record, libc::SIGKILL) {
            return Err(OciError::Runtime(format!("container {id} did not die")));
        }
    }
    cgroup::remove_dirs(&record.cgroup_dirs);
    let hooks_result = bundle::load(&record.bundle)
        .ok()
        .and_then(|b| b.spec.hooks().clone())
        .map(|h| {
            hooks::run(
                h.poststop().as_deref().unwrap_or_default(),
                &record.oci_state(Status::Stopped),
            )
        });
    std::fs::remove_dir_all(state::dir(&ctx.root, id))
        .map_err(|e| OciError::State(format!("removing the state of {id}: {e}")))?;
    if let Some(Err(e)) = hooks_result {
        // Poststop failures are logged, not fatal (runtime spec).
        log_line(None, "text", &format!("warning: {e}"));
    }
    Ok(())
}

fn pause(ctx: &Ctx, id: &str, freeze: bool) -> Result<(), OciError> {
    let mut record = Record::load(&ctx.root, id)?;
    let (want, verb) = if freeze {
        (Status::Running, "pause")
    } else {
        (Status::Paused, "resume")
    };
    let status = record.status(&ctx.root);
    if status != want {
        return Err(OciError::State(format!(
            "cannot {verb} container {id} that is {}",
            status.as_str()
        )));
    }
    let created = cgroup::set_frozen(&ctx.tier.cgroup_root, &record.cgroup_dirs, freeze)
        .map_err(|e| OciError::Runtime(format!("{verb} {id}: {}", error_chain(&e))))?;
    if let Some(dir) = created {
        // Removed with the others by delete.
        record.cgroup_dirs.push(dir);
        record.save(&ctx.root)?;
    }
    Ok(())
}

fn update(ctx: &Ctx, a: &UpdateArgs) -> Result<(), OciError> {
    let record = Record::load(&ctx.root, &a.id)?;
    if record.status(&ctx.root) == Status::Stopped {
        return Err(OciError::State(format!(
            "container {} is not running",
            a.id
        )));
    }
    if record.tier == "microvm" {
        return Err(OciError::Runtime(format!(
            "update is not supported by the microvm tier: the guest's memory and CPUs of container {} are fixed when its VM starts",
            a.id
        )));
    }
    let mut memory = a.memory;
    let mut pids = a.pids_limit;
    let (mut quota, mut period) = (a.cpu_quota, a.cpu_period);
    if let Some(path) = &a.resources {
        let text = if path == Path::new("-") {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut t)
                .map_err(|e| OciError::Usage(format!("reading resources from stdin: {e}")))?;
            t
        } else {
            std::fs::read_to_string(path)
                .map_err(|e| OciError::Usage(format!("reading {}: {e}", path.display())))?
        };
        let r: oci_spec::runtime::LinuxResources = serde_json::from_str(&text)
            .map_err(|e| OciError::Usage(format!("parsing the resources: {e}")))?;
        memory = memory.or(r.memory().as_ref().and_then(|m| m.limit()));
        pids = pids.or(r.pids().as_ref().map(|p| p.limit()));
        quota = quota.or(r.cpu().as_ref().and_then(|c| c.quota()));
        period = period.or(r.cpu().as_ref().and_then(|c| c.period()));
    }
    let positive = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0);
    let limits = cordon_sandbox::Limits {
        memory_bytes: positive(memory),
        pids: positive(pids),
        cpu_millis: positive(quota)
            .and_then(|q| u32::try_from(q * 1000 / period.unwrap_or(100_000).max(1)).ok()),
        tmp_bytes: 0,
    };
    cgroup::update_limits(&record.cgroup_dirs, &limits)
        .map_err(|e| OciError::Runtime(format!("update {}: {}", a.id, error_chain(&e))))
}

fn state_cmd(ctx: &Ctx, id: &str) -> Result<(), OciError> {
    let record = Record::load(&ctx.root, id)?;
    let st = record.oci_state(record.status(&ctx.root));
    println!(
        "{}",
        serde_json::to_string_pretty(&st).expect("state serializes")
    );
    Ok(())
}

fn ps(ctx: &Ctx, id: &str, format: &str) -> Result<(), OciError> {
    let record = Record::load(&ctx.root, id)?;
    let mut pids: Vec<i32> = record
        .cgroup_dirs
        .first()
        .map(|d| cgroup::processes(d))
        .unwrap_or_default();
    pids.sort_unstable();
    match format {
        "json" => println!("{}", serde_json::to_string(&pids).expect("pids serialize")),
        "table" => {
            println!("PID CMD");
            for p in pids {
                let cmd = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                println!("{p} {}", cmd.trim());
            }
        }
        other => {
            return Err(OciError::Usage(format!(
                "unknown format {other:?} (table or json)"
            )))
        }
    }
    Ok(())
}

fn wait_exit(pid: i32) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

fn exec(ctx: &Ctx, a: &ExecArgs) -> Result<i32, OciError> {
    let record = Record::load(&ctx.root, &a.id)?;
    if record.status(&ctx.root) != Status::Running {
        return Err(OciError::State(format!(
            "cannot exec in container {} that is not running",
            a.id
        )));
    }
    let b = bundle::load(&record.bundle)?;
    let policy = bundle::seccomp_policy(&b.spec)?;
    let mut process = match &a.process {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| OciError::Usage(format!("reading {}: {e}", path.display())))?;
            let p: oci_spec::runtime::Process = serde_json::from_str(&text)
                .map_err(|e| OciError::Usage(format!("parsing {}: {e}", path.display())))?;
            bundle::process_config(&p, Some(policy))?
        }
        None => {
            let base = b.spec.process().as_ref().expect("checked by load");
            let mut p = bundle::process_config(base, Some(policy))?;
            if a.command.is_empty() {
                return Err(OciError::Usage("exec needs --process or a command".into()));
            }
            p.argv = a.command.clone();
            p.terminal = a.tty;
            p
        }
    };
    if let Some(cwd) = &a.cwd {
        process.cwd = cwd.clone();
    }
    process.env.extend(a.env.iter().cloned());
    if let Some(user) = &a.user {
        let (uid, gid) =
            cordon_sandbox::spec::parse_user(user).map_err(|e| OciError::Usage(e.to_string()))?;
        process.uid = uid;
        process.gid = gid;
    }
    if record.tier == "microvm" {
        return exec_microvm(ctx, a, &process);
    }
    if record.tier == "sentry" {
        sentry_process(&mut process, &b.spec);
    }
    let (pid, notify_sock) = cordon_container::exec::exec_in_supervised(
        record.pid,
        &record.cgroup_dirs,
        &process,
        a.console_socket.as_deref(),
    )
    .map_err(|e| OciError::Runtime(error_chain(&e)))?;
    if let Some(sock) = notify_sock {
        if let Err(e) = supervisor::spawn(
            record.pid,
            sock,
            process.uid,
            process.gid,
            &state::dir(&ctx.root, &a.id).join(supervisor::AUDIT_LOG),
        ) {
            // SAFETY: kill takes integers only; the process is our child, reaped below.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_exit(pid);
            return Err(e);
        }
    }
    if let Some(p) = &a.pid_file {
        write_pid_file(p, pid)?;
    }
    if a.detach {
        return Ok(0);
    }
    Ok(wait_exit(pid))
}

/// `exec` into a microvm container: the process runs in the guest, next to the container's;
/// the host process engines see is an exec proxy (see [`exec_proxy`]).
fn exec_microvm(
    ctx: &Ctx,
    a: &ExecArgs,
    process: &cordon_container::ProcessConfig,
) -> Result<i32, OciError> {
    if a.tty || process.terminal {
        return Err(OciError::Usage(
            "exec with a terminal is not supported by the microvm tier (no guest terminal yet)"
                .into(),
        ));
    }
    if a.preserve_fds.unwrap_or(0) > 0 {
        return Err(OciError::Usage(
            "--preserve-fds is not supported by the microvm tier (the process runs in the guest)"
                .into(),
        ));
    }
    let req = cordon_agent::protocol::ExecRequest {
        argv: process.argv.clone(),
        env: process
            .env
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        workdir: process.cwd.to_string_lossy().into_owned(),
        uid: process.uid,
        gid: process.gid,
    };
    let sock = exec_proxy::connect(&state::dir(&ctx.root, &a.id), req)?;
    if a.detach {
        let pid = exec_proxy::spawn_detached(sock)?;
        if let Some(p) = &a.pid_file {
            write_pid_file(p, pid)?;
        }
        return Ok(0);
    }
    if let Some(p) = &a.pid_file {
        // SAFETY: getpid has no preconditions.
        write_pid_file(p, unsafe { libc::getpid() })?;
    }
    exec_proxy::finish(exec_proxy::relay(sock))
}

fn features() {
    let f = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "bind", "rbind",
            "sync", "dirsync", "noatime", "nodiratime", "relatime", "strictatime"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": (0..41u8).map(|c| cordon_sandbox::Capability(c).name()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRAP", "SCMP_ACT_TRACE"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_GT",
                    "SCMP_CMP_GE", "SCMP_CMP_MASKED_EQ"],
                "archs": ["SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"run.cordon.tier": "container, sentry or microvm"}
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&f).expect("features serialize")
    );
}

fn spec_cmd(bundle: &Path, rootless: bool) -> Result<(), OciError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(OciError::Usage(format!(
            "{} already exists",
            path.display()
        )));
    }
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    let mut namespaces = vec![
        serde_json::json!({"type": "pid"}),
        serde_json::json!({"type": "network"}),
        serde_json::json!({"type": "ipc"}),
        serde_json::json!({"type": "uts"}),
        serde_json::json!({"type": "mount"}),
        serde_json::json!({"type": "cgroup"}),
    ];
    if rootless {
        namespaces.push(serde_json::json!({"type": "user"}));
    }
    let spec = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "cordon",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": namespaces,
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&spec).expect("spec serializes"),
    )
    .map_err(|e| OciError::Runtime(format!("writing {}: {e}", path.display())))
}

fn log_line(log: Option<&Path>, format: &str, msg: &str) {
    eprintln!("cordon-oci: {msg}");
    let Some(path) = log else { return };
    let line = if format == "json" {
        serde_json::json!({"level": "error", "msg": msg, "time": state::now_rfc3339()}).to_string()
    } else {
        format!("{} error: {msg}", state::now_rfc3339())
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<i32, OciError> {
    match command {
        Command::Create(a) => create(ctx, &a).map(|_| 0),
        Command::Start { id } => start(ctx, &id).map(|()| 0),
        Command::State { id } => state_cmd(ctx, &id).map(|()| 0),
        Command::Kill { all, id, signal } => kill(ctx, &id, all, signal.as_deref()).map(|()| 0),
        Command::Delete { force, id } => delete(ctx, &id, force).map(|()| 0),
        Command::Run { create: a, detach } => {
            let record = create(ctx, &a)?;
            if let Err(e) = start(ctx, &a.id) {
                let _ = delete(ctx, &a.id, true);
                return Err(e);
            }
            if detach {
                return Ok(0);
            }
            let code = wait_exit(record.pid);
            delete(ctx, &a.id, true)?;
            Ok(code)
        }
        Command::Exec(a) => exec(ctx, &a),
        Command::Pause { id } => pause(ctx, &id, true).map(|()| 0),
        Command::Resume { id } => pause(ctx, &id, false).map(|()| 0),
        Command::Update(a) => update(ctx, &a).map(|()| 0),
        Command::Ps { format, id } => ps(ctx, &id, &format).map(|()| 0),
        Command::Features => {
            features();
            Ok(0)
        }
        Command::Spec { bundle, rootless } => spec_cmd(&bundle, rootless).map(|()| 0),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    // Runtime processes of this front exit while the container keeps running, so they must
    // not run from a file the container could reach and rewrite (runc CVE-2019-5736).
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run { .. } | Command::Exec(_)
    ) {
        if let Err(e) = cordon_container::selfexe::reexec_sealed() {
            log_line(
                cli.log.as_deref(),
                &cli.log_format,
                &format!("re-executing from a sealed copy: {e}"),
            );
            return ExitCode::from(1);
        }
    }
    let ctx = Ctx {
        root: cli.root.clone(),
        tier: ContainerTier {
            cgroup_root: cli.cgroup_root.clone(),
            run_dir: PathBuf::from("/run/cordon"),
        },
        tier_flag: cli.tier.clone(),
    };
    match dispatch(&ctx, cli.command) {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        Err(e) => {
            log_line(cli.log.as_deref(), &cli.log_format, &e.to_string());
            ExitCode::from(1)
        }
    }
}
