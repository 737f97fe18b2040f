//! cordon's microVM tier: every sandbox is a virtual machine with its own Linux kernel.
//!
//! A sandbox's life (see docs/design.md, "microVM tier"):
//! 1. assets: the guest kernel (Debian's cloud kernel, fetched by `cordon microvm setup`), an
//!    initramfs holding the guest agent ([`cordon_agent`]) and the virtio modules, and a
//!    read-only ext4 root image ([`rootfs`]);
//! 2. a VMM ([`vmm::Vmm`], implemented by [`qemu::Qemu`]) starts the guest, on an accelerator
//!    chosen by [`accel`]: restored from a snapshot of a guest whose agent is ready
//!    ([`snapshot`]), or booted cold when snapshots are off or cannot be made;
//! 3. the host sends the command; the agent runs it and streams its output, the host forwards
//!    stdin and signals ([`session`]);
//! 4. the agent reports the exit status; the VM is killed. Nothing stays behind: the VMM dies
//!    with cordon, its channels are socketpairs, work files are `*.tmp-<pid>` (collected once
//!    their process is gone).

pub mod accel;
pub mod assets;
pub mod cpio;
pub mod exec;
pub mod kernel;
pub mod pool;
pub mod qemu;
pub mod qmp;
pub mod rootfs;
pub mod session;
pub mod snapshot;
mod sys;
pub mod vmm;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cordon_agent::protocol::{GuestMount, HostMsg, RunRequest};
use cordon_sandbox::{
    CreatedSandbox, ExitOutcome, Network, RootfsSource, RunningSandbox, SandboxError, SandboxSpec,
    Tier, TierKind,
};
use thiserror::Error;

use crate::assets::{AssetError, Cache};
use crate::qemu::Qemu;
use crate::session::{GuestError, Session};
use crate::snapshot::{Snapshot, SnapshotError};
use crate::vmm::{Accel, GuestMemory, VmConfig, Vmm, VmmError};

/// Signals cordon forwards to the command while it runs.
pub const FORWARDED_SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
pub const DEFAULT_CACHE: &str = "/var/cache/cordon/microvm";
/// On a disk-backed filesystem, not tmpfs: a restored guest maps `ram` copy-on-write, and its
/// first write to a page the snapshot never wrote (a hole) makes the kernel read that page of
/// the file. On tmpfs that read allocates the page in the file for good, charged to the
/// guest's cgroup: snapshots grew towards the guest's whole RAM with use (a guest writing 300
/// MB grew one from 110 to 411 MB) and a busy guest under the OCI front got qemu OOM-killed
/// by its own cgroup. On ext4 the hole reads as a clean, reclaimable page-cache page and the
/// file stays as saved; restores measured the same (hyperfine, 20 runs: 379 vs 403 ms).
pub const DEFAULT_SNAPSHOTS: &str = "/var/cache/cordon/microvm-snapshots";
/// Where snapshots lived before (tmpfs); `cordon microvm gc` removes it.
pub const LEGACY_SNAPSHOTS: &str = "/dev/shm/cordon-microvm";

const MIB: u64 = 1 << 20;
/// The smallest guest that boots comfortably.
const MIN_MEMORY_MIB: u64 = 128;

/// A failure of the microVM tier.
#[derive(Debug, Error)]
pub enum MicrovmError {
    #[error(transparent)]
    Assets(#[from] AssetError),
    #[error(transparent)]
    Vmm(#[from] VmmError),
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{0} is not supported by the microvm tier yet")]
    Unsupported(&'static str),
    #[error("--mount {0}")]
    Mount(String),
    #[error(transparent)]
    Pool(#[from] pool::PoolError),
}

/// The microVM tier.
#[derive(Debug, Clone)]
pub struct MicrovmTier {
    pub cache: Cache,
    /// Where snapshots live ([`DEFAULT_SNAPSHOTS`]); `CORDON_MICROVM_SNAPSHOTS=DIR` moves it.
    pub snapshot_root: PathBuf,
    /// Print the guest console's last lines when a guest fails, and the accelerator notice.
    pub debug: bool,
    /// Start sandboxes from snapshots (default); `CORDON_MICROVM_SNAPSHOT=0` turns it off.
    pub snapshots: bool,
    /// Take a warm VM from the pool listening here when it has one of the right shape
    /// ([`pool`]); `CORDON_MICROVM_POOL=PATH` moves it, `=off` turns it off.
    pub pool_socket: Option<PathBuf>,
}

impl Default for MicrovmTier {
    fn default() -> Self {
        MicrovmTier {
            cache: Cache::new(PathBuf::from(DEFAULT_CACHE)),
            snapshot_root: std::env::var_os("CORDON_MICROVM_SNAPSHOTS")
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(DEFAULT_SNAPSHOTS), PathBuf::from),
            debug: false,
            snapshots: std::env::var("CORDON_MICROVM_SNAPSHOT").map_or(true, |v| v != "0"),
            pool_socket: match std::env::var_os("CORDON_MICROVM_POOL") {
                None => Some(PathBuf::from(pool::DEFAULT_SOCKET)),
                Some(v) if v == "off" || v == "0" || v.is_empty() => None,
                Some(v) => Some(PathBuf::from(v)),
            },
        }
    }
}

fn tier_err(step: &str, e: MicrovmError) -> SandboxError {
    SandboxError::Tier {
        tier: TierKind::Microvm,
        step: step.to_string(),
        source: Box::new(e),
    }
}

/// The guest's TSC frequency in kHz, for `tsc_early_khz=` (microvm has no timer to calibrate
/// against, and guessing can hang the boot). Rounded to MHz so it stays stable across runs.
fn tsc_khz() -> u64 {
    if let Ok(s) = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/tsc_freq_khz") {
        if let Ok(k) = s.trim().parse::<u64>() {
            return k / 1000 * 1000;
        }
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))
        .and_then(|r| {
            r.trim_start_matches([' ', '\t', ':'])
                .split('.')
                .next()
                .map(str::to_string)
        })
        .and_then(|mhz| mhz.trim().parse::<u64>().ok())
        .map_or(2_000_000, |mhz| mhz * 1000)
}

fn capability_mask(spec: &SandboxSpec) -> u64 {
    spec.cap_add
        .iter()
        .filter(|c| c.0 < 64)
        .fold(0, |m, c| m | (1u64 << c.0))
}

fn random_seed() -> Vec<u8> {
    let mut seed = vec![0u8; 64];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut seed);
    }
    seed
}

/// The guest's RAM: `--memory` (default 1 GiB), at least [`MIN_MEMORY_MIB`].
fn guest_memory_mib(spec: &SandboxSpec) -> u64 {
    spec.limits
        .memory_bytes
        .map_or(1024, |b| b / MIB)
        .max(MIN_MEMORY_MIB)
}

pub(crate) fn run_request(spec: &SandboxSpec) -> RunRequest {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    RunRequest {
        argv: spec.argv.clone(),
        env: spec.effective_env(),
        workdir: spec.workdir.display().to_string(),
        uid: spec.uid,
        gid: spec.gid,
        hostname: spec.hostname.clone(),
        // The guest's /tmp is a tmpfs in guest RAM: capped at half of it, so filling /tmp
        // ends in ENOSPC rather than the guest's OOM killer taking the workload.
        tmp_bytes: spec.limits.tmp_bytes.min(guest_memory_mib(spec) * MIB / 2),
        loopback: spec.network == Network::Loopback,
        pids_max: spec.limits.pids.unwrap_or(0),
        capabilities: capability_mask(spec),
        realtime_secs: now.as_secs(),
        realtime_nanos: now.subsec_nanos(),
        seed: random_seed(),
        seccomp: workload_filter(),
        mounts: spec
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| GuestMount {
                serial: qemu::mount_serial(i),
                target: m.destination.display().to_string(),
            })
            .collect(),
    }
}

/// The container tier's workload seccomp policy, compiled, as the agent installs it before
/// the command's exec: the same allowlist in every tier, here narrowing what the workload can
/// ask of the guest kernel.
fn workload_filter() -> Vec<u8> {
    cordon_container::seccomp_policy::workload_policy().compile_bytes()
}

/// Why `spec`'s mounts cannot be given to a guest, if they cannot: read-only directories, at
/// most [`rootfs::MOUNT_SLOTS`].
fn check_mounts(spec: &SandboxSpec) -> Result<(), MicrovmError> {
    if spec.mounts.len() > rootfs::MOUNT_SLOTS {
        return Err(MicrovmError::Mount(format!(
            "takes at most {} host directories on the microvm tier ({} given)",
            rootfs::MOUNT_SLOTS,
            spec.mounts.len()
        )));
    }
    for m in &spec.mounts {
        if !m.readonly {
            return Err(MicrovmError::Mount(format!(
                "{}:{}: the microvm tier mounts host directories read-only only (add :ro; the guest sees a copy made at start)",
                m.source.display(),
                m.destination.display()
            )));
        }
        if !m.source.is_dir() {
            return Err(MicrovmError::Mount(format!(
                "{}: the microvm tier mounts directories only",
                m.source.display()
            )));
        }
    }
    Ok(())
}

impl MicrovmTier {
    fn say(&self, msg: &str) {
        eprintln!("cordon: microvm: {msg}");
    }

    fn print_console(&self, lines: &[String]) {
        if self.debug {
            eprintln!("cordon: microvm: last guest console lines:");
            for l in lines {
                eprintln!("  | {l}");
            }
        }
    }

    /// Fetches the guest kernel and builds the default root image and the initramfs (each
    /// only if missing), printing progress.
    pub fn setup(&self) -> Result<(), SandboxError> {
        let progress = |m: &str| eprintln!("cordon microvm setup: {m}");
        let kernel = self
            .cache
            .ensure_kernel(&progress)
            .map_err(|e| tier_err("setup", e.into()))?;
        self.cache
            .ensure_default_rootfs(&progress)
            .map_err(|e| tier_err("setup", e.into()))?;
        let initramfs = self
            .cache
            .initramfs(&kernel)
            .map_err(|e| tier_err("setup", e.into()))?;
        progress(&format!("initramfs {}", initramfs.display()));
        let (accel, notice) = accel::choose(&self.cache.root.join("kvm-unusable"));
        progress(&format!(
            "accelerator: {accel}{}",
            notice.map(|n| format!(" ({n})")).unwrap_or_default()
        ));
        Qemu::locate().map_err(|e| tier_err("setup", e.into()))?;
        progress("ok");
        Ok(())
    }

    /// Removes work files of cordon processes that are gone.
    pub fn collect_garbage(&self) -> Vec<PathBuf> {
        assets::collect_garbage(&[self.cache.root.clone(), self.snapshot_root.clone()])
    }

    /// [`Self::collect_garbage`], plus every snapshot (each is remade on its next use), every
    /// initramfs but the current one, and every root and mount image no process has open
    /// but the default root image: `cordon microvm gc`.
    pub fn collect_all_garbage(&self) -> Vec<PathBuf> {
        let mut removed = self.collect_garbage();
        let current = self
            .cache
            .kernel()
            .ok()
            .and_then(|k| self.cache.initramfs(&k).ok());
        let entries = |d: PathBuf| {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
        };
        let legacy = PathBuf::from(LEGACY_SNAPSHOTS);
        if legacy != self.snapshot_root && std::fs::remove_dir_all(&legacy).is_ok() {
            removed.push(legacy);
        }
        for snap in entries(self.snapshot_root.clone()) {
            if std::fs::remove_dir_all(&snap).is_ok() {
                removed.push(snap);
            }
        }
        for cpio in entries(self.cache.root.join("initramfs")) {
            if Some(&cpio) != current.as_ref() && std::fs::remove_file(&cpio).is_ok() {
                removed.push(cpio);
            }
        }
        let default = self.cache.default_rootfs().ok();
        let open = sys::open_files();
        for image in entries(self.cache.root.join("rootfs")) {
            let is_image = image.extension().is_some_and(|e| e == "ext4");
            if is_image
                && Some(&image) != default.as_ref()
                && !open.contains(&image)
                && std::fs::remove_file(&image).is_ok()
            {
                removed.push(image);
            }
        }
        removed
    }

    /// Runs `spec` to its end (create, start, wait), with the container tier's exit semantics.
    pub fn run(&self, spec: &SandboxSpec) -> Result<ExitOutcome, SandboxError> {
        let deadline = spec.timeout.map(|t| Instant::now() + t);
        let t0 = Instant::now();
        let created = self.create(spec)?;
        let vm_ms = t0.elapsed().as_secs_f64() * 1e3;
        let running = created.start()?;
        let timing = std::env::var_os("CORDON_MICROVM_TIMING").is_some();
        let (outcome, first_word) = running.wait_timed(deadline);
        if timing {
            // Where a sandbox's time goes: until cordon holds a VM (a VMM started, or one
            // taken from the pool), until the agent first answers (snapshot load) and from
            // then to the exit report (the command in the guest).
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let first = first_word.map_or(0.0, |f| ms(f - t0));
            eprintln!(
                "cordon: microvm: vm_ms={vm_ms:.1} first_word_ms={first:.1} total_ms={:.1}",
                ms(t0.elapsed())
            );
        }
        outcome
    }

    fn vm_config(&self, spec: &SandboxSpec, accel: Accel) -> Result<VmConfig, MicrovmError> {
        let kernel = self.cache.kernel()?;
        let initramfs = self.cache.initramfs(&kernel)?;
        let rootfs = match &spec.rootfs {
            RootfsSource::HostSystem => self.cache.default_rootfs()?,
            RootfsSource::Dir(dir) => self.cache.dir_rootfs(dir)?,
        };
        let empty = self.cache.empty_slot()?;
        let mut mount_disks = vec![empty; rootfs::MOUNT_SLOTS];
        for (slot, m) in mount_disks.iter_mut().zip(&spec.mounts) {
            *slot = self.cache.mount_image(&m.source)?;
        }
        let memory_mib = guest_memory_mib(spec);
        let vcpus = spec
            .limits
            .cpu_millis
            .map_or(1, |m| m.div_ceil(1000))
            .clamp(1, 64);
        let cmdline = format!(
            "console=ttyS0 quiet reboot=k panic=-1 tsc_early_khz={} rdinit=/init",
            tsc_khz()
        );
        Ok(VmConfig {
            kernel: kernel.vmlinux,
            initramfs,
            cmdline,
            rootfs,
            mount_disks,
            memory_mib,
            vcpus,
            accel,
            cpu_model: std::env::var("CORDON_MICROVM_CPU").unwrap_or_else(|_| "max".into()),
            memory: GuestMemory::Anonymous,
            nice: 0,
        })
    }

    pub(crate) fn boot_limit(accel: Accel) -> Duration {
        match accel {
            Accel::Kvm => Duration::from_secs(15),
            Accel::Tcg => Duration::from_secs(90),
        }
    }

    /// The VMM and the VM configuration for `spec` on the accelerator this host can use.
    pub fn vmm_and_config(&self, spec: &SandboxSpec) -> Result<(Qemu, VmConfig), MicrovmError> {
        let qemu = Qemu::locate()?;
        let (accel, _) = accel::choose(&self.cache.root.join("kvm-unusable"));
        let config = self.vm_config(spec, accel)?;
        Ok((qemu, config))
    }

    /// The encoded command frame cordon sends a guest for `spec` (clock and entropy as of
    /// now): what `cordon bench` hands a bare qemu restore so both do the same guest work.
    pub fn command_frame(spec: &SandboxSpec) -> Vec<u8> {
        HostMsg::Run(run_request(spec)).encode()
    }

    /// Serves a warm pool of VMs shaped by `spec` until SIGINT/SIGTERM ([`pool`]).
    pub fn serve_pool(
        &self,
        spec: &SandboxSpec,
        opts: &pool::PoolOptions,
    ) -> Result<(), SandboxError> {
        spec.validate()?;
        pool::serve(self, spec, opts).map_err(|e| tier_err("serving the warm pool", e.into()))
    }

    /// A guest whose agent waits for its command.
    fn ready_guest(&self, spec: &SandboxSpec) -> Result<Session, MicrovmError> {
        let t0 = Instant::now();
        let qemu = Qemu::locate()?;
        let verdict = self.cache.root.join("kvm-unusable");
        let (accel, notice) = accel::choose(&verdict);
        if self.debug {
            if let Some(n) = &notice {
                self.say(n);
            }
        }
        let config = self.vm_config(spec, accel)?;
        // A pool's VMs have empty mount slots: a run with mounts restores its own.
        let poolable = self.snapshots && spec.mounts.is_empty();
        if let (Some(socket), true) = (&self.pool_socket, poolable) {
            let key = pool::shape_key(&qemu, &config);
            match pool::take(socket, &key) {
                Ok(Some(vm)) => {
                    if self.debug {
                        self.say(&format!(
                            "took a warm VM from the pool at {} in {:.1} ms",
                            socket.display(),
                            t0.elapsed().as_secs_f64() * 1e3
                        ));
                    }
                    return Ok(Session::new(vm));
                }
                Ok(None) => {}
                Err(e) => self.say(&format!("{e}; restoring a VM instead")),
            }
        }
        let result = self.ready_guest_with(&qemu, &config, notice.as_deref());
        match (result, accel) {
            (Err(e), Accel::Kvm) => {
                // KVM that cannot boot a real guest: remember, and fall back to TCG.
                self.say(&format!(
                    "KVM could not boot the guest ({e}): using TCG emulation from now on"
                ));
                let _ = std::fs::write(&verdict, e.to_string());
                let config = self.vm_config(spec, Accel::Tcg)?;
                self.ready_guest_with(&qemu, &config, None)
            }
            (r, _) => r,
        }
    }

    /// The snapshot for `config`, booted and saved first if there is none yet.
    pub(crate) fn ensure_snapshot(
        &self,
        vmm: &dyn Vmm,
        config: &VmConfig,
        notice: Option<&str>,
    ) -> Result<Snapshot, MicrovmError> {
        let snap = Snapshot::for_config(&self.snapshot_root, vmm, config);
        if !snap.exists() {
            self.collect_garbage();
            snapshot::evict(&self.snapshot_root, snapshot::KEEP - 1);
            if let (Some(n), false) = (notice, self.debug) {
                self.say(n);
            }
            // Saved with every mount slot empty: the snapshot serves any mounts.
            let mut empty = config.clone();
            let placeholder = self.cache.empty_slot()?;
            for d in &mut empty.mount_disks {
                d.clone_from(&placeholder);
            }
            if let Err(e) = snap.build(vmm, &empty, Self::boot_limit(config.accel)) {
                if let SnapshotError::Boot(_, lines) = &e {
                    self.print_console(lines);
                }
                return Err(e.into());
            }
        }
        Ok(snap)
    }

    fn ready_guest_with(
        &self,
        vmm: &dyn Vmm,
        config: &VmConfig,
        notice: Option<&str>,
    ) -> Result<Session, MicrovmError> {
        let limit = Self::boot_limit(config.accel);
        if self.snapshots {
            let snap = self.ensure_snapshot(vmm, config, notice)?;
            let mut cfg = config.clone();
            cfg.memory = snap.memory();
            match vmm.launch(&cfg) {
                Ok(vm) => {
                    snap.mark_used();
                    return Ok(Session::new(vm));
                }
                Err(e) => {
                    // A snapshot that does not load is dropped; the next run rebuilds it.
                    self.say(&format!(
                        "snapshot {} did not load ({e}); booting cold",
                        snap.dir.display()
                    ));
                    let _ = std::fs::remove_dir_all(&snap.dir);
                }
            }
        }
        let vm = vmm.launch(config)?;
        let mut session = Session::new(vm);
        if let Err(e) = session.wait_ready(limit) {
            self.print_console(&session.console.lines());
            return Err(e.into());
        }
        Ok(session)
    }
}

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

impl Tier for MicrovmTier {
    type Created = CreatedVm;

    fn kind(&self) -> TierKind {
        TierKind::Microvm
    }

    fn create(&self, spec: &SandboxSpec) -> Result<CreatedVm, SandboxError> {
        spec.validate()?;
        check_mounts(spec).map_err(|e| tier_err("checking the spec", e))?;
        let session = self
            .ready_guest(spec)
            .map_err(|e| tier_err("starting the VM", e))?;
        let id = format!(
            "microvm-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        );
        Ok(CreatedVm {
            session,
            request: run_request(spec),
            debug: self.debug,
            id,
        })
    }
}

/// A guest whose agent waits for the command.
#[derive(Debug)]
pub struct CreatedVm {
    session: Session,
    request: RunRequest,
    debug: bool,
    id: String,
}

impl CreatedSandbox for CreatedVm {
    type Running = RunningVm;

    fn id(&self) -> &str {
        &self.id
    }

    fn start(mut self) -> Result<RunningVm, SandboxError> {
        let mut req = std::mem::take(&mut self.request);
        // The clock as of now, not as of create.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        req.realtime_secs = now.as_secs();
        req.realtime_nanos = now.subsec_nanos();
        self.session
            .send(&HostMsg::Run(req))
            .map_err(|e| tier_err("sending the command to the guest", e.into()))?;
        Ok(RunningVm {
            session: self.session,
            debug: self.debug,
            id: self.id,
        })
    }
}

/// A guest running its command.
#[derive(Debug)]
pub struct RunningVm {
    session: Session,
    debug: bool,
    id: String,
}

impl RunningSandbox for RunningVm {
    fn id(&self) -> &str {
        &self.id
    }

    fn signal(&self, signal: i32) -> Result<(), SandboxError> {
        (&self.session.vm.agent)
            .write_all(&HostMsg::Signal(signal).encode())
            .map_err(|e| tier_err("signalling the command", GuestError::Io(e).into()))
    }

    fn wait(self, deadline: Option<Instant>) -> Result<ExitOutcome, SandboxError> {
        self.wait_timed(deadline).0
    }
}

impl RunningVm {
    /// [`RunningSandbox::wait`], also saying when the agent first answered.
    pub fn wait_timed(
        self,
        deadline: Option<Instant>,
    ) -> (Result<ExitOutcome, SandboxError>, Option<Instant>) {
        self.wait_forwarding(deadline, &FORWARDED_SIGNALS)
    }

    /// [`Self::wait_timed`], forwarding `signals` (instead of [`FORWARDED_SIGNALS`]) to the
    /// command while it runs.
    pub fn wait_forwarding(
        self,
        deadline: Option<Instant>,
        signals: &[i32],
    ) -> (Result<ExitOutcome, SandboxError>, Option<Instant>) {
        self.wait_serving(deadline, signals, None)
    }

    /// [`Self::wait_forwarding`], also relaying the processes `execs`' clients start in the
    /// guest next to the command (see [`exec`]).
    pub fn wait_serving(
        mut self,
        deadline: Option<Instant>,
        signals: &[i32],
        execs: Option<&mut exec::ExecServer>,
    ) -> (Result<ExitOutcome, SandboxError>, Option<Instant>) {
        let result = self.session.pump_serving(deadline, signals, execs);
        let first = self.session.first_word;
        self.session.vm.kill();
        let result = result.map_err(|e| {
            if self.debug {
                eprintln!("cordon: microvm: last guest console lines:");
                for l in self.session.console.lines() {
                    eprintln!("  | {l}");
                }
            }
            tier_err("running the command", e.into())
        });
        (result, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn gc_keeps_the_default_image_and_images_in_use() {
        let root = std::env::temp_dir().join(format!("cordon-microvm-gc-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let cache = root.join("cache");
        let snaps = root.join("snapshots");
        fs::create_dir_all(cache.join("rootfs")).unwrap();
        fs::create_dir_all(snaps.join("0123")).unwrap();
        fs::write(snaps.join("0123/ram"), b"x").unwrap();
        let rootfs = cache.join("rootfs");
        fs::write(rootfs.join("default"), "aaaa.ext4").unwrap();
        for name in [
            "aaaa.ext4",
            "old.ext4",
            "dir-1.ext4",
            "mnt-2.ext4",
            "mnt-3.ext4",
        ] {
            fs::write(rootfs.join(name), b"img").unwrap();
        }
        fs::write(rootfs.join("empty-slot.img"), b"").unwrap();
        let held = fs::File::open(rootfs.join("mnt-3.ext4")).unwrap();
        let tier = MicrovmTier {
            cache: Cache::new(cache),
            snapshot_root: snaps.clone(),
            debug: false,
            snapshots: true,
            pool_socket: None,
        };
        let removed = tier.collect_all_garbage();
        drop(held);
        let left: Vec<String> = fs::read_dir(&rootfs)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let _ = fs::remove_dir_all(&root);
        assert!(removed.contains(&snaps.join("0123")), "{removed:?}");
        let mut left = left;
        left.sort();
        assert_eq!(
            left,
            ["aaaa.ext4", "default", "empty-slot.img", "mnt-3.ext4"],
            "removed {removed:?}"
        );
    }

    #[test]
    fn eviction_keeps_the_most_recently_used() {
        let root =
            std::env::temp_dir().join(format!("cordon-microvm-evict-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let now = std::time::SystemTime::now();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            let d = root.join(name);
            fs::create_dir_all(&d).unwrap();
            let age = Duration::from_secs(100 * (4 - i as u64));
            fs::File::open(&d).unwrap().set_modified(now - age).unwrap();
        }
        fs::create_dir_all(root.join("e.tmp-1")).unwrap();
        let mut removed = snapshot::evict(&root, 2);
        removed.sort();
        let _ = fs::remove_dir_all(&root);
        assert_eq!(removed, [root.join("a"), root.join("b")]);
    }
}
