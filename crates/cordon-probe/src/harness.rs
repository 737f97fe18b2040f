//! `cordon probe`: runs the probe binary in every tier, under reference runtimes and bare on
//! the host, and prints the matrix.
//!
//! Before anything runs, the harness plants bait on the host: a secret file in a fresh
//! directory under /var/tmp, listeners on 127.0.0.1 and on an abstract UNIX socket, and an
//! open descriptor of the secret's directory that every launched command inherits, started in
//! that directory (a runtime must close the one and leave the other before the workload
//! starts, or the workload holds a handle on the host's filesystem). The probes get the
//! secret's path and the port on their command line.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Args;
use cordon_sandbox::parse::parse_duration;
use cordon_sandbox::TierKind;
use thiserror::Error;

use crate::catalog::Probe;
use crate::context::abstract_socket_name;
use crate::matrix::{Cell, Column, ColumnKind, Matrix, ProbeInfo};
use crate::runner;
use crate::sys;
use crate::verdict::{Report, Verdict};
use crate::words;

/// Limits the harness gives each cordon tier (what `cordon run` users are told to use for
/// untrusted code).
pub const TIER_PIDS: u64 = 256;
pub const TIER_MEMORY: &str = "512M";
/// Where the probe binary is mounted inside cordon's sandboxes.
pub const PROBE_IN_SANDBOX: &str = "/cordon-probe";
/// Where the bait directories are created.
const BAIT_PARENT: &str = "/var/tmp";
const BAIT_PREFIX: &str = "cordon-probe-";
const GREETING: &[u8] = b"cordon probe: host listener\n";

const EXIT_CODES: &str = "\
Exit status:
  0    no probe escaped a cordon tier, and every result is in
  1    a probe ESCAPED a cordon tier
  2    a result is missing or suspect: a probe ERROR or no result in a cordon tier, an
       explicitly requested tier that is not available, or (with --bare) a probe that did
       not escape the bare host although the host has the feature
  125  the harness itself could not run (probe binary missing, bad --runtime-cmd, ...)";

/// Options of `cordon probe`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ProbeArgs {
    /// Tier to attack (repeatable): container, sentry, microvm [default: container]
    #[arg(long = "tier", value_name = "TIER", value_parser = parse_tier)]
    pub tiers: Vec<TierKind>,
    /// Attack every tier cordon knows (tiers this build lacks are reported as not run)
    #[arg(long, conflicts_with = "tiers")]
    pub all: bool,
    /// Also run the probes under a reference runtime: `[NAME=]CMD`, a command line to which
    /// the probe's command is appended; `{probe}` in it stands for the probe binary's host
    /// path, e.g. 'bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --ro-bind
    /// {probe} {probe} --proc /proc --dev /dev --tmpfs /tmp'. NAME labels the column
    /// (default: the program's file name) (repeatable)
    #[arg(long = "runtime-cmd", value_name = "CMD")]
    pub runtime_cmds: Vec<String>,
    /// Also run the probes directly on the host, unconfined: every probe must ESCAPE there
    /// (or be UNSUPPORTED by the host), or it cannot detect its own attack
    #[arg(long)]
    pub bare: bool,
    /// Write the matrix as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the matrix as Markdown to FILE
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// The probe binary [default: cordon-probe next to the cordon binary]
    #[arg(long, value_name = "PATH")]
    pub probe_bin: Option<PathBuf>,
    /// The cordon binary that runs the tiers [default: the running cordon]
    #[arg(long, value_name = "PATH")]
    pub cordon_bin: Option<PathBuf>,
    /// Kill a column's command after this long
    #[arg(long, value_name = "DURATION", default_value = "600s", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    pub timeout: Duration,
    /// Probes to run [default: all; see cordon-probe list]
    #[arg(value_name = "PROBE")]
    pub probes: Vec<String>,
}

fn parse_tier(s: &str) -> Result<TierKind, String> {
    s.parse::<TierKind>().map_err(|e| e.to_string())
}

/// Failures of the harness itself (not of a sandbox).
#[derive(Debug, Error)]
pub enum HarnessError {
    #[error("unknown probe {0:?} (see cordon-probe list)")]
    UnknownProbe(String),
    #[error("locating the running cordon binary")]
    CurrentExe(#[source] io::Error),
    #[error("the probe binary {0} does not exist (build it with `cargo build -p cordon-probe`, or pass --probe-bin)")]
    ProbeMissing(PathBuf),
    #[error("the probe binary's path {0} contains ':', which --mount cannot carry")]
    ProbePath(PathBuf),
    #[error("--runtime-cmd {cmd:?}: {why}")]
    RuntimeCmd { cmd: String, why: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("starting the host listeners (127.0.0.1, abstract UNIX socket)")]
    Listener(#[source] io::Error),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> HarnessError {
    let path = path.to_path_buf();
    move |source| HarnessError::Io { op, path, source }
}

/// Runs `cordon probe`; returns the exit status (see `EXIT_CODES`).
pub fn run(args: ProbeArgs) -> i32 {
    match try_run(&args) {
        Ok(code) => code,
        Err(e) => {
            let mut line = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                line.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("cordon probe: {line}");
            125
        }
    }
}

fn try_run(args: &ProbeArgs) -> Result<i32, HarnessError> {
    let selected = runner::select(&args.probes).map_err(HarnessError::UnknownProbe)?;
    let cordon = match &args.cordon_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(HarnessError::CurrentExe)?,
    };
    let probe_bin = args
        .probe_bin
        .clone()
        .unwrap_or_else(|| cordon.with_file_name("cordon-probe"));
    if !probe_bin.is_file() {
        return Err(HarnessError::ProbeMissing(probe_bin));
    }
    let probe_bin = fs::canonicalize(&probe_bin).map_err(io_err("resolving", &probe_bin))?;
    collect_stale_bait();
    let bait = Bait::plant()?;
    let plans = plan_columns(args, &cordon, &probe_bin, &bait)?;
    let mut columns = Vec::new();
    for plan in plans {
        eprintln!(
            "cordon probe: running {} ({})",
            plan.name,
            plan.command.join(" ")
        );
        columns.push(run_column(plan, &selected, &bait.dir, args.timeout));
    }
    drop(bait);
    let matrix = Matrix {
        kernel: kernel_version(),
        probe_bin: probe_bin.display().to_string(),
        probes: selected
            .iter()
            .map(|p| ProbeInfo {
                name: p.name.to_string(),
                class: p.class.name().to_string(),
                reach: p.reach,
                description: p.description.to_string(),
            })
            .collect(),
        columns,
    };
    print!("{}", matrix.render_text());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&matrix).map_err(io::Error::other);
        text.and_then(|t| fs::write(path, t + "\n"))
            .map_err(io_err("writing", path))?;
    }
    if let Some(path) = &args.markdown {
        fs::write(path, matrix.render_markdown()).map_err(io_err("writing", path))?;
    }
    let requested: Vec<String> = args.tiers.iter().map(|t| t.name().to_string()).collect();
    let (code, problems) = judge(&matrix, &requested);
    for p in &problems {
        eprintln!("cordon probe: {p}");
    }
    Ok(code)
}

/// The exit status for `matrix` (see `EXIT_CODES`) and the reasons for it. `requested` are
/// the tiers named explicitly with --tier: their absence counts as a missing result.
pub fn judge(matrix: &Matrix, requested: &[String]) -> (i32, Vec<String>) {
    let mut escapes = Vec::new();
    let mut missing = Vec::new();
    for c in &matrix.columns {
        match (c.kind, &c.unavailable) {
            (ColumnKind::CordonTier, Some(why)) if requested.contains(&c.name) => {
                missing.push(format!("{}: not run: {why}", c.name));
            }
            (ColumnKind::CordonTier, None) => {
                for (probe, cell) in &c.results {
                    match cell.result {
                        // It escaped the guest's confinement; the tier's boundary is the VM.
                        Verdict::Escaped if matrix.inside_guest(c, probe) => {}
                        Verdict::Escaped => {
                            escapes.push(format!("{probe} ESCAPED {}: {}", c.name, cell.detail))
                        }
                        Verdict::Error => {
                            missing.push(format!("{probe} ERROR in {}: {}", c.name, cell.detail))
                        }
                        _ => {}
                    }
                }
            }
            (ColumnKind::Bare, None) => {
                for (probe, cell) in &c.results {
                    if matches!(cell.result, Verdict::Blocked | Verdict::Error) {
                        missing.push(format!(
                            "{probe} did not escape the bare host ({}: {}): the probe cannot detect its own attack here",
                            cell.result, cell.detail
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    let code = if !escapes.is_empty() {
        1
    } else if !missing.is_empty() {
        2
    } else {
        0
    };
    escapes.extend(missing);
    (code, escapes)
}

/// A column to run: its name, kind and full command line.
#[derive(Debug, Clone)]
struct ColumnPlan {
    name: String,
    kind: ColumnKind,
    command: Vec<String>,
    guest_kernel: bool,
}

/// Whether a tier runs the workload on a kernel of its own (a virtual machine's guest). Such a
/// tier cannot bind-mount a host file either: the probe travels in its root filesystem.
fn has_guest_kernel(tier: TierKind) -> bool {
    matches!(tier, TierKind::Microvm)
}

fn plan_columns(
    args: &ProbeArgs,
    cordon: &Path,
    probe_bin: &Path,
    bait: &Bait,
) -> Result<Vec<ColumnPlan>, HarnessError> {
    let probe_host = probe_bin.display().to_string();
    if probe_host.contains(':') {
        return Err(HarnessError::ProbePath(probe_bin.to_path_buf()));
    }
    let probe_args = |exe: &str| {
        let mut v = vec![
            exe.to_string(),
            "run".into(),
            "--json".into(),
            "--secret".into(),
            bait.secret.display().to_string(),
            "--host-port".into(),
            bait.listener.port.to_string(),
        ];
        // Probes are named only when chosen: the probe binary runs all of them by default.
        v.extend(args.probes.iter().cloned());
        v
    };
    let mut plans = Vec::new();
    if args.bare {
        plans.push(ColumnPlan {
            name: "bare".into(),
            kind: ColumnKind::Bare,
            command: probe_args(&probe_host),
            guest_kernel: false,
        });
    }
    let tiers: Vec<TierKind> = if args.all {
        TierKind::ALL.to_vec()
    } else if args.tiers.is_empty() {
        vec![TierKind::Container]
    } else {
        args.tiers.clone()
    };
    for tier in tiers {
        let guest_kernel = has_guest_kernel(tier);
        let delivery = if guest_kernel {
            let rootfs = bait.probe_rootfs(probe_bin)?;
            ["--rootfs".to_string(), rootfs.display().to_string()]
        } else {
            [
                "--mount".to_string(),
                format!("{probe_host}:{PROBE_IN_SANDBOX}:ro"),
            ]
        };
        let mut command: Vec<String> = vec![
            cordon.display().to_string(),
            "run".into(),
            "--tier".into(),
            tier.name().into(),
        ];
        command.extend(delivery);
        command.extend([
            "--pids".into(),
            TIER_PIDS.to_string(),
            "--memory".into(),
            TIER_MEMORY.into(),
            "--timeout".into(),
            format!("{}s", args.timeout.as_secs().max(1)),
            "--".into(),
        ]);
        command.extend(probe_args(PROBE_IN_SANDBOX));
        plans.push(ColumnPlan {
            name: tier.name().into(),
            kind: ColumnKind::CordonTier,
            command,
            guest_kernel,
        });
    }
    for given in &args.runtime_cmds {
        let (label, cmd) = column_label(given);
        let mut command: Vec<String> = words::split(cmd)
            .map_err(|why| HarnessError::RuntimeCmd {
                cmd: given.clone(),
                why,
            })?
            .into_iter()
            .map(|w| w.replace("{probe}", &probe_host))
            .collect();
        let Some(first) = command.first() else {
            return Err(HarnessError::RuntimeCmd {
                cmd: given.clone(),
                why: "empty command".into(),
            });
        };
        let base = label.map_or_else(
            || {
                Path::new(first)
                    .file_name()
                    .map_or_else(|| first.clone(), |n| n.to_string_lossy().into_owned())
            },
            str::to_string,
        );
        let taken = |n: &str| plans.iter().any(|p: &ColumnPlan| p.name == n);
        let mut name = base.clone();
        let mut i = 2;
        while taken(&name) {
            name = format!("{base}-{i}");
            i += 1;
        }
        command.extend(probe_args(&probe_host));
        plans.push(ColumnPlan {
            name,
            kind: ColumnKind::Reference,
            command,
            guest_kernel: false,
        });
    }
    Ok(plans)
}

/// Splits `NAME=CMD` into the column's label and its command; without a label (no `=` before
/// the first space, or characters other than letters, digits, `-`, `_`, `.` before it) the
/// whole text is the command.
fn column_label(given: &str) -> (Option<&str>, &str) {
    let first_word = given.split_whitespace().next().unwrap_or("");
    match first_word.split_once('=') {
        Some((label, _))
            if !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
        {
            let rest = given.trim_start();
            (Some(label), &rest[label.len() + 1..])
        }
        _ => (None, given),
    }
}

/// Runs one column's command, collects the JSON lines the probe printed, and fills in what is
/// missing.
fn run_column(plan: ColumnPlan, selected: &[&Probe], cwd: &Path, timeout: Duration) -> Column {
    let mut column = Column {
        name: plan.name,
        kind: plan.kind,
        command: plan.command,
        unavailable: None,
        status: String::new(),
        stderr: String::new(),
        results: BTreeMap::new(),
        guest_kernel: plan.guest_kernel,
    };
    // Started in the bait directory: a runtime that does not reset the working directory
    // hands the workload a directory outside its root (the CVE-2024-21626 shape).
    let spawned = Command::new(&column.command[0])
        .args(&column.command[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            column.status = format!("could not start: {e}");
            fill_missing(&mut column, selected);
            return column;
        }
    };
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        thread::spawn(move || {
            let reports: Vec<Report> = BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str(&l).ok())
                .collect();
            let _ = tx.send(Ok(reports));
        });
    }
    if let Some(mut err) = child.stderr.take() {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            let _ = tx.send(Err(String::from_utf8_lossy(&buf).into_owned()));
        });
    }
    let deadline = Instant::now() + timeout;
    let status: Option<ExitStatus> = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    // Both readers end when the last holder of the pipes exits; a runtime that leaves
    // processes behind after it was killed must not hang the harness.
    let mut reports = Vec::new();
    for _ in 0..2 {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(r)) => reports = r,
            Ok(Err(text)) => column.stderr = tail(&text, 2000),
            Err(_) => break,
        }
    }
    column.status = match status {
        None => format!("timed out after {} s (killed)", timeout.as_secs()),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => "ended".to_string(),
        },
    };
    if column.kind == ColumnKind::CordonTier
        && reports.is_empty()
        && status.and_then(|s| s.code()) == Some(125)
        && column.stderr.contains("is not available")
    {
        column.unavailable = Some(
            column
                .stderr
                .lines()
                .next()
                .unwrap_or("not available")
                .to_string(),
        );
        return column;
    }
    // A reference runtime whose probes ran on another kernel (a VM per container) is judged
    // like cordon's microvm tier: escapes into that kernel stay in the guest.
    if ran_on_other_kernel(&reports, &kernel_version()) {
        column.guest_kernel = true;
    }
    for r in reports {
        if selected.iter().any(|p| p.name == r.probe) {
            column.results.insert(
                r.probe,
                Cell {
                    result: r.result,
                    detail: r.detail,
                },
            );
        }
    }
    fill_missing(&mut column, selected);
    column
}

/// Whether the probes reported a kernel other than `host` (both known).
fn ran_on_other_kernel(reports: &[Report], host: &str) -> bool {
    host != "?"
        && reports
            .iter()
            .any(|r| r.kernel.as_deref().is_some_and(|k| k != host && k != "?"))
}

/// Marks every selected probe without a result as an ERROR naming how the command ended.
fn fill_missing(column: &mut Column, selected: &[&Probe]) {
    let why = match column.stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("{}; stderr: {}", column.status, line.trim()),
        None => column.status.clone(),
    };
    for p in selected {
        column.results.entry(p.name.to_string()).or_insert(Cell {
            result: Verdict::Error,
            detail: format!("no result: the command ended before the probe reported ({why})"),
        });
    }
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

/// `uname -r` and `uname -v` ("?" if uname fails).
pub fn kernel_version() -> String {
    crate::sys::kernel_release_and_version().unwrap_or_else(|_| "?".to_string())
}

/// What the harness plants on the host for the probes to reach for; removed on drop.
#[derive(Debug)]
pub struct Bait {
    pub dir: PathBuf,
    pub secret: PathBuf,
    /// The secret directory, open without close-on-exec: every command the harness starts
    /// inherits it.
    _leaked: OwnedFd,
    pub listener: HostListener,
}

impl Bait {
    pub fn plant() -> Result<Bait, HarnessError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            Path::new(BAIT_PARENT).join(format!("{BAIT_PREFIX}{}-{nanos:08x}", std::process::id()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("creating", &dir))?;
        // From here on, Drop removes the directory.
        let leaked = sys::open_raw(&dir, libc::O_RDONLY | libc::O_DIRECTORY);
        let bait = Bait {
            secret: dir.join("secret"),
            _leaked: leaked.map_err(io_err("opening", &dir))?,
            listener: HostListener::start().map_err(HarnessError::Listener)?,
            dir,
        };
        let mut token = [0u8; 16];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut token))
            .map_err(io_err("reading", Path::new("/dev/urandom")))?;
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&bait.secret)
            .and_then(|mut f| f.write_all(format!("cordon-probe secret {hex}\n").as_bytes()))
            .map_err(io_err("writing", &bait.secret))?;
        Ok(bait)
    }
}

impl Bait {
    /// A root filesystem holding only the (static) probe binary, for tiers that cannot
    /// bind-mount it; created once, inside the bait directory.
    fn probe_rootfs(&self, probe_bin: &Path) -> Result<PathBuf, HarnessError> {
        let root = self.dir.join("rootfs");
        let exe = root.join(PROBE_IN_SANDBOX.trim_start_matches('/'));
        if !exe.exists() {
            fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
            fs::copy(probe_bin, &exe).map_err(io_err("copying the probe to", &exe))?;
        }
        Ok(root)
    }
}

impl Drop for Bait {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Removes bait directories of harness runs that died before cleaning up (their pid is gone).
fn collect_stale_bait() {
    let Ok(entries) = fs::read_dir(BAIT_PARENT) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(BAIT_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// Listeners on the host that greet every connection: TCP on 127.0.0.1 and a UNIX socket in
/// the abstract namespace (scoped by network namespace, so only a sandbox sharing the host's
/// network namespace reaches it). Stopped on drop.
#[derive(Debug)]
pub struct HostListener {
    pub port: u16,
    abstract_name: String,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

/// Greets each connection until `stop` is set.
fn greet_all<S: Write>(conns: impl Iterator<Item = io::Result<S>>, stop: &AtomicBool) {
    for conn in conns {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if let Ok(mut s) = conn {
            let _ = s.write_all(GREETING);
        }
    }
}

impl HostListener {
    fn start() -> io::Result<HostListener> {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = tcp.local_addr()?.port();
        let abstract_name = abstract_socket_name(port);
        let unix = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&abstract_name)?)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (f1, f2) = (stop.clone(), stop.clone());
        let threads = vec![
            thread::spawn(move || greet_all(tcp.incoming(), &f1)),
            thread::spawn(move || greet_all(unix.incoming(), &f2)),
        ];
        Ok(HostListener {
            port,
            abstract_name,
            stop,
            threads,
        })
    }
}

impl Drop for HostListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loops so they see the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Ok(addr) = SocketAddr::from_abstract_name(&self.abstract_name) {
            let _ = UnixStream::connect_addr(&addr);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Reach;
    use crate::matrix::tests::column;

    #[test]
    fn other_kernel_only_when_both_are_known() {
        let report = |kernel: Option<&str>| Report {
            probe: "kcore".into(),
            class: "kernel-fs".into(),
            result: Verdict::Blocked,
            detail: String::new(),
            ms: 1,
            kernel: kernel.map(str::to_string),
        };
        let host = "6.18.44 #1 SMP";
        assert!(ran_on_other_kernel(&[report(Some("6.1.0 #1 SMP"))], host));
        assert!(!ran_on_other_kernel(&[report(Some(host))], host));
        assert!(!ran_on_other_kernel(&[report(None)], host));
        assert!(!ran_on_other_kernel(&[report(Some("?"))], host));
        assert!(!ran_on_other_kernel(&[report(Some("6.1.0"))], "?"));
    }

    #[test]
    fn runtime_cmd_labels() {
        assert_eq!(
            column_label("docker-runc=docker run --rm img"),
            (Some("docker-runc"), "docker run --rm img")
        );
        assert_eq!(
            column_label("bwrap --ro-bind a=b c"),
            (None, "bwrap --ro-bind a=b c")
        );
        assert_eq!(column_label("=x y"), (None, "=x y"));
        assert_eq!(column_label("a/b=c d"), (None, "a/b=c d"));
    }

    fn matrix(columns: Vec<Column>) -> Matrix {
        let probe = |name: &str, reach| ProbeInfo {
            name: name.into(),
            class: String::new(),
            reach,
            description: String::new(),
        };
        Matrix {
            kernel: String::new(),
            probe_bin: String::new(),
            probes: vec![probe("a", Reach::Kernel), probe("b", Reach::Host)],
            columns,
        }
    }

    #[test]
    fn escapes_in_a_tier_fail_the_run() {
        use Verdict::*;
        let bare = column(
            "bare",
            ColumnKind::Bare,
            &[("a", Escaped), ("b", Unsupported)],
        );
        let ok = column(
            "container",
            ColumnKind::CordonTier,
            &[("a", Blocked), ("b", Unsupported)],
        );
        assert_eq!(judge(&matrix(vec![bare.clone(), ok.clone()]), &[]).0, 0);
        // A reference runtime may escape: it is measured, not judged.
        let reference = column("bwrap", ColumnKind::Reference, &[("a", Escaped)]);
        assert_eq!(judge(&matrix(vec![ok.clone(), reference]), &[]).0, 0);
        let bad = column(
            "container",
            ColumnKind::CordonTier,
            &[("a", Escaped), ("b", Error)],
        );
        let (code, why) = judge(&matrix(vec![bare.clone(), bad]), &[]);
        assert_eq!(code, 1);
        assert!(why[0].starts_with("a ESCAPED container"), "{why:?}");
        let err = column("container", ColumnKind::CordonTier, &[("a", Error)]);
        assert_eq!(judge(&matrix(vec![err]), &[]).0, 2);
    }

    #[test]
    fn guest_kernel_escapes_count_only_when_they_reach_the_host() {
        use Verdict::*;
        let vm = |cells: &[(&str, Verdict)]| Column {
            guest_kernel: true,
            ..column("microvm", ColumnKind::CordonTier, cells)
        };
        assert_eq!(
            judge(&matrix(vec![vm(&[("a", Escaped), ("b", Blocked)])]), &[]).0,
            0
        );
        assert_eq!(
            judge(&matrix(vec![vm(&[("a", Blocked), ("b", Escaped)])]), &[]).0,
            1
        );
    }

    #[test]
    fn missing_tiers_and_broken_probes_are_incomplete() {
        use Verdict::*;
        let mut sentry = column("sentry", ColumnKind::CordonTier, &[]);
        sentry.unavailable = Some("the sentry tier is not available in this build".into());
        assert_eq!(judge(&matrix(vec![sentry.clone()]), &[]).0, 0);
        assert_eq!(judge(&matrix(vec![sentry]), &["sentry".into()]).0, 2);
        let bare = column("bare", ColumnKind::Bare, &[("a", Blocked)]);
        assert_eq!(judge(&matrix(vec![bare]), &[]).0, 2);
    }
}
