//! `microvm_start_ms`: the microVM tier's ways to start a sandbox, side by side in one run,
//! with the bare VMM under them (the tier's own peer):
//!
//! - `cold_boot`: `cordon run --tier microvm -- /bin/true` with snapshots off (boot to the
//!   agent, then the command);
//! - `snapshot`: the same, restored from the snapshot (the default without a pool);
//! - `pool`: the same, taking a VM from a warm pool (`cordon microvm pool --size 1`) that has
//!   a warm VM idle when the sample starts (the bench waits for the refill between samples:
//!   back-to-back starts faster than the refill fall back to `snapshot`);
//! - `qemu_restore`: no cordon process at all: the same qemu command line and snapshot,
//!   spawned by the bench as a plain child, the monitor lines and cordon's command frame for
//!   the same spec written at once, until the agent's exit report ([`cordon_microvm::qemu::Qemu::bare_restore_run`]).
//!
//! `snapshot - qemu_restore` is cordon's own overhead on a restore. Samples interleave
//! round-robin like the other phases.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cordon_microvm::snapshot::Snapshot;
use cordon_microvm::MicrovmTier;
use cordon_sandbox::SandboxSpec;
use serde::Serialize;

use crate::measure::Runner;
use crate::stats::Summary;

/// What the phase measured, and what it could not.
#[derive(Debug, Default, Serialize)]
pub(crate) struct MicrovmStarts {
    /// mode (`cold_boot`, `snapshot`, `pool`, `qemu_restore`) -> milliseconds.
    pub modes: BTreeMap<String, Summary>,
    /// p50(snapshot) - p50(qemu_restore).
    pub cordon_overhead_ms: Option<f64>,
    /// Pool samples that found no warm VM and restored instead (left out of `pool`).
    pub pool_misses: u32,
    pub notes: Vec<String>,
}

const LIMIT: Duration = Duration::from_secs(120);

/// Stops the pool (and with it every VM it holds) however the phase ends.
struct Pool {
    child: Child,
    log: PathBuf,
    socket: PathBuf,
}

impl Pool {
    fn start(cordon: &Path, dir: &Path) -> Result<Pool, String> {
        let log = dir.join("microvm-pool.log");
        let socket = dir.join("microvm-pool.sock");
        let log_file =
            File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new(cordon)
            .args(["microvm", "pool", "--debug", "--size", "1", "--socket"])
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting cordon microvm pool: {e}"))?;
        Ok(Pool { child, log, socket })
    }

    fn warm_count(&self) -> usize {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(" warm (")
            .count()
    }

    /// Waits until the pool has warmed `n` VMs since it started.
    fn wait_warm(&mut self, n: usize, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if self.warm_count() >= n {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill takes plain integers; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.socket);
    }
}

/// One `cordon run --tier microvm -- /bin/true`, timed; `Ok(false)` when `expect_pool` was
/// set and the run did not get a pooled VM.
fn cordon_true(
    cordon: &Path,
    env: &[(&str, &str)],
    err_path: &Path,
    expect_pool: bool,
) -> Result<(Duration, bool), String> {
    let err =
        File::create(err_path).map_err(|e| format!("creating {}: {e}", err_path.display()))?;
    let mut cmd = Command::new(cordon);
    cmd.envs(env.iter().copied())
        .args(["run", "--tier", "microvm"])
        .args(expect_pool.then_some("--debug"))
        .args(["--", "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    let t0 = Instant::now();
    let status = cmd
        .status()
        .map_err(|e| format!("running {}: {e}", cordon.display()))?;
    let elapsed = t0.elapsed();
    let stderr = fs::read_to_string(err_path).unwrap_or_default();
    if !status.success() {
        return Err(format!("{status}: {}", stderr.trim()));
    }
    Ok((
        elapsed,
        !expect_pool || stderr.contains("took a warm VM from the pool"),
    ))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the phase: `rounds` interleaved rounds (cold boots at most `cold_rounds`), the first
/// `warmup` of them not recorded.
pub(crate) fn measure(
    runner: &Runner,
    cordon: &Path,
    dir: &Path,
    warmup: u32,
    rounds: u32,
    cold_rounds: u32,
) -> MicrovmStarts {
    let mut out = MicrovmStarts::default();
    let tier = MicrovmTier::default();
    let spec = SandboxSpec::new(vec!["/bin/true".to_string()]);
    let bare = tier.vmm_and_config(&spec).map(|(qemu, mut config)| {
        let snap = Snapshot::for_config(&tier.snapshot_root, &qemu, &config);
        config.memory = snap.memory();
        (qemu, config, snap)
    });
    let mut pool = match Pool::start(cordon, dir) {
        Ok(p) => Some(p),
        Err(e) => {
            out.notes.push(format!("pool: not measured: {e}"));
            None
        }
    };
    let err_path = dir.join("microvm-run.err");
    let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut record = |mode: &'static str, round: u32, v: f64| {
        if round >= warmup {
            samples.entry(mode).or_default().push(v);
        }
    };
    let off = [("CORDON_MICROVM_POOL", "off")];
    let cold = [
        ("CORDON_MICROVM_POOL", "off"),
        ("CORDON_MICROVM_SNAPSHOT", "0"),
    ];
    let mut failed: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut lent = 0usize;
    let mut cold_done = 0u32;
    for round in 0..warmup + rounds {
        if runner.interrupted() {
            break;
        }
        // Rotating start, as in the other phases.
        let order = ["snapshot", "qemu_restore", "pool", "cold_boot"];
        for k in 0..order.len() {
            let mode = order[(k + usize::try_from(round).unwrap_or(0)) % order.len()];
            if failed.contains_key(mode) || runner.interrupted() {
                continue;
            }
            let r: Result<Option<f64>, String> = match mode {
                "snapshot" => cordon_true(cordon, &off, &err_path, false).map(|(d, _)| Some(ms(d))),
                // A cold boot has nothing to warm up: a few, after the warm-up rounds.
                "cold_boot" if round >= warmup && cold_done < cold_rounds => {
                    cold_done += 1;
                    cordon_true(cordon, &cold, &err_path, false).map(|(d, _)| Some(ms(d)))
                }
                "cold_boot" => Ok(None),
                "qemu_restore" => match &bare {
                    Ok((qemu, config, snap)) if snap.exists() => qemu
                        .bare_restore_run(config, &MicrovmTier::command_frame(&spec), LIMIT)
                        .map(|d| Some(ms(d)))
                        .map_err(|e| e.to_string()),
                    Ok((_, _, snap)) => Err(format!("no snapshot at {}", snap.dir.display())),
                    Err(e) => Err(e.to_string()),
                },
                _ => match pool.as_mut() {
                    None => Ok(None),
                    Some(p) => {
                        if !p.wait_warm(lent + 1, LIMIT) {
                            Err(format!(
                                "the pool warmed no VM in {} s: {}",
                                LIMIT.as_secs(),
                                fs::read_to_string(&p.log).unwrap_or_default().trim()
                            ))
                        } else {
                            let socket = p.socket.display().to_string();
                            let env = [("CORDON_MICROVM_POOL", socket.as_str())];
                            match cordon_true(cordon, &env, &err_path, true) {
                                Ok((d, true)) => {
                                    lent += 1;
                                    Ok(Some(ms(d)))
                                }
                                Ok((_, false)) => {
                                    out.pool_misses += 1;
                                    Ok(None)
                                }
                                Err(e) => Err(e),
                            }
                        }
                    }
                },
            };
            match r {
                Ok(Some(v)) => record(mode, round, v),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("cordon bench: microvm_start_ms {mode}: {e}");
                    out.notes.push(format!("{mode}: stopped: {e}"));
                    failed.insert(mode, e);
                }
            }
        }
    }
    drop(pool);
    let _ = fs::remove_file(&err_path);
    for (mode, v) in samples {
        if let Some(s) = Summary::of(&v) {
            out.modes.insert(mode.to_string(), s);
        }
    }
    if let (Some(s), Some(q)) = (out.modes.get("snapshot"), out.modes.get("qemu_restore")) {
        out.cordon_overhead_ms = Some(s.p50 - q.p50);
    }
    out
}
