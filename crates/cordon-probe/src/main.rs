//! `cordon-probe`: runs inside a sandbox and attempts real escapes, reporting each as
//! BLOCKED, ESCAPED, UNSUPPORTED (the host lacks the feature) or ERROR.
//!
//! Exit status: 0 nothing escaped, 1 at least one probe escaped, 2 bad usage or unwritable
//! output.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cordon_probe::catalog::PROBES;
use cordon_probe::context::{inherited_fds, Confinement, Context};
use cordon_probe::runner;
use cordon_probe::verdict::Verdict;

#[derive(Debug, Parser)]
#[command(
    name = "cordon-probe",
    version,
    about = "Attempt real sandbox escapes from inside and report what each one achieved"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the probes: name, class, what they reach for (the kernel they run on, or the
    /// host), what each attempts
    List {
        /// One JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Run the probes (all, or the ones named) and print one result per probe
    Run {
        /// One JSON object per line: probe, class, result, detail, ms
        #[arg(long)]
        json: bool,
        /// A file planted on the host that must stay unreadable
        #[arg(long, value_name = "PATH")]
        secret: Option<PathBuf>,
        /// A TCP port listening on the host's 127.0.0.1 that must stay unreachable
        #[arg(long, value_name = "N")]
        host_port: Option<u16>,
        /// Probes to run (default: all, in table order)
        #[arg(value_name = "PROBE")]
        probes: Vec<String>,
    },
}

fn main() -> ExitCode {
    // First, before anything opens a descriptor of its own.
    let inherited = inherited_fds();
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::List { json } => {
            for p in PROBES {
                let line = if json {
                    serde_json::json!({
                        "probe": p.name,
                        "class": p.class.name(),
                        "reach": p.reach.name(),
                        "description": p.description,
                    })
                    .to_string()
                } else {
                    let reach = p.reach.name();
                    format!(
                        "{:<21} {:<13} {reach:<7} {}",
                        p.name, p.class, p.description
                    )
                };
                if writeln!(out, "{line}").is_err() {
                    return ExitCode::from(2);
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            json,
            secret,
            host_port,
            probes,
        } => {
            let selected = match runner::select(&probes) {
                Ok(s) => s,
                Err(bad) => {
                    eprintln!("cordon-probe: unknown probe {bad:?} (see cordon-probe list)");
                    return ExitCode::from(2);
                }
            };
            let ctx = Context {
                secret,
                host_port,
                inherited_fds: inherited,
                confinement: Confinement::read(),
            };
            // SAFETY: this program starts no thread.
            match unsafe { runner::run_all(&selected, &ctx, json, &mut out) } {
                Ok(reports) if reports.iter().any(|r| r.result == Verdict::Escaped) => {
                    ExitCode::from(1)
                }
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cordon-probe: writing results: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
