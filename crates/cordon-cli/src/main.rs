//! `cordon`: a thin front over cordon's tiers. Parses options into a [`SandboxSpec`], drives
//! the tier's create/start/wait lifecycle, and maps the outcome onto documented exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use cordon_container::ContainerTier;
use cordon_sandbox::parse::{parse_cpus, parse_duration, parse_size};
use cordon_sandbox::spec::{parse_env, parse_user};
use cordon_sandbox::{
    exit_code, BindMount, Capability, Network, RootfsSource, RunningSandbox, SandboxError,
    SandboxSpec, TierKind, UserNamespace,
};

const EXIT_CODES: &str = "\
Exit status:
  0-123  the command's own exit code
  124    --timeout expired (the sandbox was killed)
  125    cordon itself failed (bad option, bad rootfs, setup error)
  126    the command was found but could not be executed
  127    the command was not found
  128+N  the command was killed by signal N (137 also when the memory limit
         was exceeded, 159 when the seccomp policy killed it; stderr says which)";

#[derive(Debug, Parser)]
#[command(
    name = "cordon",
    version,
    about = "Run untrusted code behind the isolation boundary it deserves",
    after_help = EXIT_CODES
)]
struct Cli {
    /// cgroup filesystem root
    #[arg(
        long,
        global = true,
        default_value = "/sys/fs/cgroup",
        value_name = "DIR"
    )]
    cgroup_root: PathBuf,
    /// cordon's runtime state directory
    #[arg(long, global = true, default_value = "/run/cordon", value_name = "DIR")]
    run_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a fresh sandbox, streaming its stdio, and exit with its exit code
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// Remove what sandboxes of killed cordon processes left behind (cgroups, processes)
    Gc,
    /// Attempt real escapes from inside every tier (and bare, and under reference runtimes)
    Probe(Box<cordon_probe::harness::ProbeArgs>),
    /// Measure cordon's tiers and peer runtimes side by side and write a report
    Bench(Box<cordon_bench::BenchArgs>),
    /// The microVM tier: `setup` fetches the guest kernel and builds the images, `gc` cleans up, `pool` keeps warm VMs
    #[command(subcommand)]
    Microvm(MicrovmCommand),
}

#[derive(Debug, Subcommand)]
enum MicrovmCommand {
    /// Fetch the guest kernel (Debian's cloud kernel) and build the root image and initramfs
    Setup,
    /// Remove snapshots, stale initramfs images, root and mount images no process has open, and work files of killed cordons
    Gc,
    /// Keep N VMs restored and warmed for `cordon run --tier microvm` (until SIGINT/SIGTERM)
    Pool(PoolArgs),
}

#[derive(Debug, Args)]
struct PoolArgs {
    /// Idle, warmed VMs to keep (each holds its guest's memory)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    size: u64,
    /// Unix socket to lend VMs on (clients: CORDON_MICROVM_POOL=PATH when not the default)
    #[arg(long, default_value = cordon_microvm::pool::DEFAULT_SOCKET, value_name = "PATH")]
    socket: PathBuf,
    /// The VMs' shape: memory, as `cordon run --memory` (runs with another size restore their own VM)
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| parse_size(s).map_err(|e| e.to_string()))]
    memory: Option<u64>,
    /// The VMs' shape: CPUs, as `cordon run --cpus`
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_cpus(s).map_err(|e| e.to_string()))]
    cpus: Option<u32>,
    /// The VMs' shape: root filesystem, as `cordon run --rootfs`
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Also warm each VM up with `python3 -c pass` (python starts then skip ~0.5 s of TCG translation; each refill takes that much longer)
    #[arg(long)]
    warm_python: bool,
    /// Print the guest console when a VM fails
    #[arg(long)]
    debug: bool,
}

fn serve_pool(args: PoolArgs) -> Result<(), SandboxError> {
    let mut spec = SandboxSpec::new(
        cordon_microvm::pool::WARM_UP
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    spec.tier = TierKind::Microvm;
    spec.rootfs = args
        .rootfs
        .map_or(RootfsSource::HostSystem, RootfsSource::Dir);
    if args.memory.is_some() {
        spec.limits.memory_bytes = args.memory;
    }
    if args.cpus.is_some() {
        spec.limits.cpu_millis = args.cpus;
    }
    let tier = cordon_microvm::MicrovmTier {
        debug: args.debug,
        ..Default::default()
    };
    let opts = cordon_microvm::pool::PoolOptions {
        socket: args.socket,
        size: usize::try_from(args.size).unwrap_or(2),
        warm_python: args.warm_python,
    };
    tier.serve_pool(&spec, &opts)
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Isolation tier: container (namespaces + cgroups + seccomp), sentry, microvm
    #[arg(long, default_value = "container", value_parser = |s: &str| s.parse::<TierKind>().map_err(|e| e.to_string()))]
    tier: TierKind,
    /// Unpacked root filesystem (default: the host's /usr read-only with a minimal /etc)
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Bind-mount a host path: SRC:DST[:ro] (absolute paths; repeatable)
    #[arg(long = "mount", value_name = "SRC:DST[:ro]", value_parser = |s: &str| s.parse::<BindMount>().map_err(|e| e.to_string()))]
    mounts: Vec<BindMount>,
    /// Set an environment variable: K=V (repeatable)
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = |s: &str| parse_env(s).map_err(|e| e.to_string()))]
    env: Vec<(String, String)>,
    /// Working directory inside the sandbox (created if missing)
    #[arg(long, short = 'w', default_value = "/", value_name = "DIR")]
    workdir: PathBuf,
    /// Memory limit, e.g. 256M (default 1G); the command is killed when it exceeds it
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| parse_size(s).map_err(|e| e.to_string()))]
    memory: Option<u64>,
    /// CPU limit in cores, e.g. 0.5
    #[arg(long, value_name = "N", value_parser = |s: &str| parse_cpus(s).map_err(|e| e.to_string()))]
    cpus: Option<u32>,
    /// Maximum number of processes and threads (default 1024)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pids: Option<u64>,
    /// Size cap of the private /tmp (default 512M)
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| parse_size(s).map_err(|e| e.to_string()))]
    tmp_size: Option<u64>,
    /// Kill the sandbox after this long, e.g. 10s, 500ms, 2m (exit status 124)
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| parse_duration(s).map_err(|e| e.to_string()))]
    timeout: Option<std::time::Duration>,
    /// none: no network at all; loopback: only lo, up
    #[arg(long, default_value = "none", value_parser = |s: &str| s.parse::<Network>().map_err(|e| e.to_string()))]
    network: Network,
    /// Hostname inside the sandbox
    #[arg(long, default_value = "cordon")]
    hostname: String,
    /// Run as UID[:GID] inside the sandbox (default 0:0, without capabilities)
    #[arg(long, short = 'u', value_name = "UID[:GID]", value_parser = |s: &str| parse_user(s).map_err(|e| e.to_string()))]
    user: Option<(u32, u32)>,
    /// Keep a capability, e.g. CAP_NET_BIND_SERVICE (repeatable; default: none)
    #[arg(long, value_name = "CAP", value_parser = |s: &str| s.parse::<Capability>().map_err(|e| e.to_string()))]
    cap_add: Vec<Capability>,
    /// Create a user namespace even when running as root
    #[arg(long)]
    userns: bool,
    /// Print diagnostics when a sandbox fails (microvm: the guest console's last lines)
    #[arg(long)]
    debug: bool,
    /// sentry: append the JSON audit log of refused syscalls to FILE (default: stderr, rate-limited)
    #[arg(long, value_name = "FILE")]
    audit_log: Option<PathBuf>,
    /// The command and its arguments
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

impl RunArgs {
    fn into_spec(self) -> SandboxSpec {
        let mut spec = SandboxSpec::new(self.command);
        spec.tier = self.tier;
        spec.rootfs = self
            .rootfs
            .map_or(RootfsSource::HostSystem, RootfsSource::Dir);
        spec.mounts = self.mounts;
        spec.env = self.env;
        spec.workdir = self.workdir;
        if let Some(m) = self.memory {
            spec.limits.memory_bytes = Some(m);
        }
        spec.limits.cpu_millis = self.cpus;
        if let Some(p) = self.pids {
            spec.limits.pids = Some(p);
        }
        if let Some(t) = self.tmp_size {
            spec.limits.tmp_bytes = t;
        }
        spec.timeout = self.timeout;
        spec.network = self.network;
        spec.hostname = self.hostname;
        if let Some((uid, gid)) = self.user {
            spec.uid = uid;
            spec.gid = gid;
        }
        spec.cap_add = self.cap_add;
        if self.userns {
            spec.user_namespace = UserNamespace::Always;
        }
        spec
    }
}

fn report(err: &dyn std::error::Error) {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    eprintln!("cordon: {line}");
}

fn run(tier: &ContainerTier, args: RunArgs) -> Result<i32, SandboxError> {
    let debug = args.debug;
    let audit_log = args.audit_log.clone();
    let spec = args.into_spec();
    spec.validate()?;
    if spec.tier == TierKind::Microvm {
        let microvm = cordon_microvm::MicrovmTier {
            debug,
            ..Default::default()
        };
        let outcome = microvm.run(&spec)?;
        if let Some(why) = outcome.explanation() {
            eprintln!("cordon: {why}");
        }
        return Ok(outcome.exit_code());
    }
    if spec.tier == TierKind::Sentry {
        return run_sentry(tier, &spec, audit_log, debug);
    }
    if spec.tier != TierKind::Container {
        return Err(SandboxError::TierUnavailable(spec.tier));
    }
    let deadline = spec.timeout.map(|t| Instant::now() + t);
    let outcome = tier.create_started(&spec)?.wait(deadline)?;
    if let Some(why) = outcome.explanation() {
        eprintln!("cordon: {why}");
    }
    Ok(outcome.exit_code())
}

fn run_sentry(
    tier: &ContainerTier,
    spec: &SandboxSpec,
    audit_log: Option<PathBuf>,
    debug: bool,
) -> Result<i32, SandboxError> {
    let audit = match audit_log {
        None => cordon_sentry::AuditSink::Stderr,
        Some(path) => cordon_sentry::AuditSink::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| SandboxError::Tier {
                    tier: TierKind::Sentry,
                    step: format!("opening the audit log {}", path.display()),
                    source: Box::new(e),
                })?,
        ),
    };
    let sentry = cordon_sentry::SentryTier {
        container: tier.clone(),
        audit,
        debug,
    };
    let outcome = sentry.run(spec)?;
    if let Some(why) = outcome.explanation() {
        eprintln!("cordon: {why}");
    }
    Ok(outcome.exit_code())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("cordon: {first} (see cordon --help)");
            return exit(exit_code::RUNTIME_FAILED);
        }
    };
    let tier = ContainerTier {
        cgroup_root: cli.cgroup_root,
        run_dir: cli.run_dir,
    };
    let code = match cli.command {
        Command::Run(args) => run(&tier, *args).unwrap_or_else(|e| {
            report(&e);
            exit_code::RUNTIME_FAILED
        }),
        Command::Bench(args) => cordon_bench::run(*args),
        Command::Microvm(MicrovmCommand::Setup) => {
            match cordon_microvm::MicrovmTier::default().setup() {
                Ok(()) => 0,
                Err(e) => {
                    report(&e);
                    exit_code::RUNTIME_FAILED
                }
            }
        }
        Command::Microvm(MicrovmCommand::Gc) => {
            for p in cordon_microvm::MicrovmTier::default().collect_all_garbage() {
                eprintln!("cordon microvm gc: removed {}", p.display());
            }
            0
        }
        Command::Microvm(MicrovmCommand::Pool(args)) => serve_pool(args).map_or_else(
            |e| {
                report(&e);
                exit_code::RUNTIME_FAILED
            },
            |()| 0,
        ),
        Command::Probe(args) => cordon_probe::harness::run(*args),
        Command::Gc => match tier.collect_garbage() {
            Ok(r) => {
                for d in &r.removed {
                    eprintln!("cordon gc: removed {}", d.display());
                }
                for d in &r.failed {
                    eprintln!("cordon gc: could not remove {}", d.display());
                }
                if r.failed.is_empty() {
                    0
                } else {
                    exit_code::RUNTIME_FAILED
                }
            }
            Err(e) => {
                report(&e);
                exit_code::RUNTIME_FAILED
            }
        },
    };
    exit(code)
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(255))
}
