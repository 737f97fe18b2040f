//! The [`Vmm`] implemented with `qemu-system-x86_64 -M microvm`: no PCI, no firmware, the
//! kernel entered through its PVH note, virtio-mmio devices described to the guest by ACPI.
//!
//! The VMM gets no files of ours to create: its three channels (agent port, monitor, console)
//! are socketpairs handed over as fds 3, 4, 5, so nothing is left on disk when it dies. It runs
//! with qemu's seccomp sandbox (`-sandbox on`, no spawning, no privilege changes), in its own
//! mount/network/IPC/UTS namespaces, with no_new_privs, and dies with cordon (PDEATHSIG).

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::qmp::Qmp;
use crate::sys;
use crate::vmm::{io, Accel, GuestMemory, Vm, VmConfig, VmControl, VmProcess, Vmm, VmmError};

/// qemu-system-x86_64 as the VMM.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub binary: PathBuf,
}

impl Qemu {
    /// Finds `qemu-system-x86_64` on PATH.
    pub fn locate() -> Result<Self, VmmError> {
        let name = "qemu-system-x86_64";
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
            .map(|binary| Qemu { binary })
            .ok_or_else(|| VmmError::Missing(name.into()))
    }

    /// The command line for `config`, with the agent port, monitor and console at fds 3, 4, 5
    /// and, for a restore, the snapshot's device state at fd 6.
    pub fn args(&self, config: &VmConfig) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        match config.accel {
            Accel::Tcg => push(&["-accel", "tcg", "-cpu", &config.cpu_model]),
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        }
        push(&[
            "-M",
            "microvm",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ]);
        push(&["-no-reboot", "-msg", "timestamp=off"]);
        // Names the VMM after its cordon process, so leftovers can be told apart.
        let name = format!("cordon-{}", std::process::id());
        push(&["-name", &name]);
        let mem = format!("{}M", config.memory_mib);
        push(&["-m", &mem, "-smp", &config.vcpus.to_string()]);
        let backend = |path: &Path, share: &str| {
            format!(
                "memory-backend-file,id=mem,size={mem},mem-path={},share={share}",
                path.display()
            )
        };
        match &config.memory {
            GuestMemory::Anonymous => {}
            // x-ignore-shared: the migration stream leaves out RAM that lives in a shared file
            // (it is in the file already), so a snapshot's state is tens of KiB.
            GuestMemory::SaveTo(ram) => {
                push(&[
                    "-object",
                    &backend(ram, "on"),
                    "-machine",
                    "memory-backend=mem",
                ]);
            }
            GuestMemory::RestoreFrom {
                ram, sealed_ram, ..
            } => {
                // A sealed copy arrives as fd 7 (after the state at fd 6).
                let ram = match sealed_ram {
                    Some(_) => Path::new("/proc/self/fd/7"),
                    None => ram.as_path(),
                };
                push(&[
                    "-object",
                    &backend(ram, "off"),
                    "-machine",
                    "memory-backend=mem",
                ]);
                push(&["-incoming", "defer"]);
            }
        }
        push(&["-kernel", &config.kernel.display().to_string()]);
        push(&["-initrd", &config.initramfs.display().to_string()]);
        push(&["-append", &config.cmdline]);
        let drive = format!(
            "id=root,file={},format=raw,if=none,readonly=on,cache=unsafe",
            config.rootfs.display()
        );
        push(&["-drive", &drive, "-device", "virtio-blk-device,drive=root"]);
        for (i, disk) in config.mount_disks.iter().enumerate() {
            let drive = format!(
                "id=m{i},file={},format=raw,if=none,readonly=on,cache=unsafe",
                disk.display()
            );
            let device = format!("virtio-blk-device,drive=m{i},serial={}", mount_serial(i));
            push(&["-drive", &drive, "-device", &device]);
        }
        push(&[
            "-chardev",
            "socket,id=agent,fd=3",
            "-device",
            "virtio-serial-device",
        ]);
        let port = format!(
            "virtserialport,chardev=agent,name={}",
            cordon_agent::protocol::PORT_NAME
        );
        push(&["-device", &port]);
        push(&[
            "-chardev",
            "socket,id=qmp,fd=4",
            "-mon",
            "chardev=qmp,mode=control",
        ]);
        push(&["-chardev", "socket,id=con,fd=5", "-serial", "chardev:con"]);
        push(&[
            "-sandbox",
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        ]);
        a
    }
}

/// The virtio serial of mount slot `i`, by which the agent finds its disk.
pub fn mount_serial(i: usize) -> String {
    format!("cordon-m{i}")
}

const MONITOR_TIMEOUT: Duration = Duration::from_secs(20);

impl Vmm for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn version(&self) -> String {
        // The binary's identity without running it (a `--version` would cost a process start
        // on every sandbox).
        match std::fs::metadata(&self.binary) {
            Ok(m) => format!(
                "{}:{}:{}:{}",
                self.binary.display(),
                m.ino(),
                m.size(),
                m.mtime()
            ),
            Err(_) => self.binary.display().to_string(),
        }
    }

    fn launch(&self, config: &VmConfig) -> Result<Vm, VmmError> {
        let (agent, agent_q) = sys::socketpair().map_err(io("creating the agent socketpair"))?;
        let (qmp, qmp_q) = sys::socketpair().map_err(io("creating the monitor socketpair"))?;
        let (console, console_q) =
            sys::socketpair().map_err(io("creating the console socketpair"))?;
        let console_out = console_q
            .try_clone()
            .map_err(io("duplicating the console socket"))?;
        let console_err = console_q
            .try_clone()
            .map_err(io("duplicating the console socket"))?;
        // A restore reads the device state from fd 6 while the VM loads: no monitor round
        // trips, and the guest runs as soon as it is loaded (it was saved running).
        let state = match &config.memory {
            GuestMemory::RestoreFrom { state, .. } => {
                Some(File::open(state).map_err(io(format!("opening {}", state.display())))?)
            }
            _ => None,
        };
        let mut child_fds = vec![
            agent_q.as_raw_fd(),
            qmp_q.as_raw_fd(),
            console_q.as_raw_fd(),
        ];
        child_fds.extend(state.as_ref().map(|f| f.as_raw_fd()));
        if let GuestMemory::RestoreFrom {
            sealed_ram: Some(fd),
            ..
        } = &config.memory
        {
            child_fds.push(*fd);
        }
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args(config))
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(console_out)))
            .stderr(Stdio::from(OwnedFd::from(console_err)))
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        // SAFETY: the closure only makes async-signal-safe calls (confine_vmm_child's contract)
        // on fds that stay open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || sys::confine_vmm_child(parent, &child_fds));
        }
        let nice = config.nice;
        // SAFETY: setpriority is async-signal-safe and takes plain integers.
        unsafe {
            cmd.pre_exec(move || {
                if nice != 0 {
                    let _ = libc::setpriority(libc::PRIO_PROCESS, 0, nice);
                }
                Ok(())
            });
        }
        let process = cmd
            .spawn()
            .map_err(io(format!("starting {}", self.binary.display())))?;
        drop((agent_q, qmp_q, console_q, state));
        let pidfd = sys::pidfd_open(process.id()).map_err(io("opening a pidfd for qemu"))?;
        let mut control = QemuControl {
            qmp: Qmp::new(qmp)?,
        };
        if matches!(config.memory, GuestMemory::RestoreFrom { .. }) {
            // Queued without waiting for answers: qemu runs them as soon as its monitor is
            // up. A load that fails makes qemu exit, which the session reports.
            control.qmp.send_unanswered(&[
                json!({"execute": "qmp_capabilities"}),
                ignore_shared(),
                json!({"execute": "migrate-incoming", "arguments": {"uri": "fd:6"}}),
            ])?;
        }
        Ok(Vm {
            process: VmProcess::Child(process),
            pidfd,
            agent,
            console,
            control: Box::new(control),
        })
    }
}

/// Pause/save/resume through QMP.
#[derive(Debug)]
pub struct QemuControl {
    qmp: Qmp,
}

/// x-ignore-shared: the migration stream leaves out RAM that lives in a shared file (it is in
/// the file already), so a snapshot's device state is tens of KiB.
fn ignore_shared() -> Value {
    json!({"execute": "migrate-set-capabilities",
           "arguments": {"capabilities": [{"capability": "x-ignore-shared", "state": true}]}})
}

impl VmControl for QemuControl {
    fn save(&mut self, state: &File, timeout: Duration) -> Result<(), VmmError> {
        // Saved without a `stop` first: the stream then records a running guest, and a
        // restore starts running by itself. (The guest is idle: its agent waits in a read.)
        let caps = ignore_shared();
        self.qmp.execute(
            "migrate-set-capabilities",
            caps["arguments"].clone(),
            MONITOR_TIMEOUT,
        )?;
        self.qmp.send_fd("state", state.as_fd(), MONITOR_TIMEOUT)?;
        self.qmp
            .execute("migrate", json!({"uri": "fd:state"}), MONITOR_TIMEOUT)?;
        self.qmp.wait_migration(timeout)
    }
}

impl Qemu {
    /// A restore with nothing of cordon around it, for `cordon bench`'s baseline: `config`
    /// (a [`GuestMemory::RestoreFrom`]) spawned as a plain child (no namespaces, seccomp
    /// sandbox flags aside, no pidfd), the three monitor lines and `frame` (an encoded
    /// [`cordon_agent::protocol::HostMsg::Run`]) written at once, then the agent's stream read
    /// until its exit report. Returns the time from spawn to the exit report; the VMM is
    /// killed and reaped before returning.
    pub fn bare_restore_run(
        &self,
        config: &VmConfig,
        frame: &[u8],
        limit: Duration,
    ) -> Result<Duration, VmmError> {
        use cordon_agent::protocol::{FrameBuffer, GuestMsg};
        use std::io::{Read, Write};
        let GuestMemory::RestoreFrom { state, .. } = &config.memory else {
            return Err(VmmError::Snapshot("a bare restore needs a snapshot".into()));
        };
        let (agent, agent_q) = sys::socketpair().map_err(io("creating the agent socketpair"))?;
        let (qmp, qmp_q) = sys::socketpair().map_err(io("creating the monitor socketpair"))?;
        let (console, console_q) =
            sys::socketpair().map_err(io("creating the console socketpair"))?;
        let state = File::open(state).map_err(io(format!("opening {}", state.display())))?;
        let child_fds = [
            agent_q.as_raw_fd(),
            qmp_q.as_raw_fd(),
            console_q.as_raw_fd(),
            state.as_raw_fd(),
        ];
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args(config))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: place_fds only makes async-signal-safe calls on fds that stay open in the
        // parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || sys::place_fds(&child_fds));
        }
        let t0 = std::time::Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(io(format!("starting {}", self.binary.display())))?;
        drop((agent_q, qmp_q, console_q, state));
        let result = (|| {
            let lines = [
                json!({"execute": "qmp_capabilities"}),
                ignore_shared(),
                json!({"execute": "migrate-incoming", "arguments": {"uri": "fd:6"}}),
            ];
            let mut text = String::new();
            for l in lines {
                text.push_str(&l.to_string());
                text.push('\n');
            }
            (&qmp)
                .write_all(text.as_bytes())
                .map_err(io("writing to the monitor"))?;
            (&agent)
                .write_all(frame)
                .map_err(io("writing to the agent"))?;
            agent
                .set_read_timeout(Some(limit))
                .map_err(io("configuring the agent socket"))?;
            let mut frames = FrameBuffer::default();
            let mut buf = vec![0u8; 64 << 10];
            loop {
                while let Some(m) = frames
                    .next_guest()
                    .map_err(|e| VmmError::Snapshot(format!("agent stream: {e}")))?
                {
                    if matches!(m, GuestMsg::Exit(_)) {
                        return Ok(t0.elapsed());
                    }
                }
                let n = (&agent).read(&mut buf).map_err(io("reading the agent"))?;
                if n == 0 {
                    return Err(VmmError::Snapshot(
                        "the guest went away before its exit report".into(),
                    ));
                }
                frames.push(&buf[..n]);
            }
        })();
        let _ = child.kill();
        let _ = child.wait();
        drop(console);
        result
    }
}
