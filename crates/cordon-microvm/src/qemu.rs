//! The [`Vmm`] implemented with `qemu-system-x86_64 -M microvm`: no PCI, no firmware, the
//! kernel entered through its PVH note, virtio-mmio devices described to the guest by ACPI.
//!
//! The VMM gets no files of ours to create: its three channels (agent port, monitor, console)
//! are socketpairs handed over as fds 3, 4, 5, so nothing is left on disk when it dies; every
//! file it reads (kernel, initramfs, disk images, snapshot RAM and state) is opened here and
//! inherited as an fd it names `/proc/self/fd/N` or `/dev/fdset/N`. It runs with qemu's seccomp
//! sandbox (`-sandbox on`, no spawning, no privilege changes), in its own mount/network/IPC/UTS
//! namespaces, as PID 1 of a PID namespace of its own ([`sys::enter_pid_namespace`]), with a
//! root of its own (read-only `/usr`, a few device nodes, a `/proc` showing only itself:
//! [`sys::enter_vmm_root`]), as a uid of its own with no capabilities and no_new_privs
//! ([`VMM_UID_BASE`]), and dies with cordon (PDEATHSIG).

use std::ffi::OsString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::qmp::Qmp;
use crate::sys;
use crate::vmm::{io, Accel, GuestMemory, Vm, VmConfig, VmControl, VmProcess, Vmm, VmmError};

/// The VMM runs as uid `VMM_UID_BASE + pid`, the pid of the process forked for it (no passwd
/// entry; unique among live VMMs, so one VMM cannot signal, trace or see another even without
/// its PID namespace) ...
pub const VMM_UID_BASE: u32 = 2_000_000_000;
/// ... and gid `VMM_GID` (no group entry), the group of the snapshot RAM files it must open
/// read-write (qemu 7.2 opens a `memory-backend-file` read-write even for a private mapping).
pub const VMM_GID: u32 = 2_000_000_000;

/// The files a VMM reads, opened here and inherited at fds 6, 7, ...: the snapshot's state
/// (a restore), guest RAM (a snapshot's file or a sealed memfd), kernel, initramfs, root disk
/// and the mount slots' disks, in that order.
#[derive(Debug)]
struct VmmInputs {
    /// The fds in the order above (the borrowed sealed RAM included).
    raw: Vec<std::os::fd::RawFd>,
    _owned: Vec<File>,
}

impl VmmInputs {
    fn open(config: &VmConfig) -> Result<Self, VmmError> {
        let open = |p: &Path| File::open(p).map_err(io(format!("opening {}", p.display())));
        let mut owned = Vec::new();
        let mut raw = Vec::new();
        let mut push = |f: File, raw: &mut Vec<_>| {
            raw.push(f.as_raw_fd());
            owned.push(f);
        };
        match &config.memory {
            GuestMemory::Anonymous => {}
            GuestMemory::SaveTo(ram) => push(vmm_writable(ram, true)?, &mut raw),
            GuestMemory::RestoreFrom {
                ram,
                state,
                sealed_ram,
            } => {
                push(open(state)?, &mut raw);
                match sealed_ram {
                    Some(fd) => raw.push(*fd),
                    None => push(vmm_writable(ram, false)?, &mut raw),
                }
            }
        }
        push(open(&config.kernel)?, &mut raw);
        push(open(&config.initramfs)?, &mut raw);
        push(open(&config.rootfs)?, &mut raw);
        for d in &config.mount_disks {
            push(open(d)?, &mut raw);
        }
        Ok(VmmInputs { raw, _owned: owned })
    }
}

/// Our ends of the VMM's agent, monitor and console channels.
struct Channels {
    agent: UnixStream,
    qmp: UnixStream,
    console: UnixStream,
}

/// What the VMM is handed: its ends of the three channels (fds 3, 4, 5) and [`VmmInputs`]
/// (fd 6 on), in the order [`Qemu::args`] expects.
struct VmmSide {
    agent: UnixStream,
    qmp: UnixStream,
    console: UnixStream,
    inputs: VmmInputs,
}

impl VmmSide {
    /// The channels for `config`'s VMM and the files it reads.
    fn wire(config: &VmConfig) -> Result<(Channels, VmmSide), VmmError> {
        let (agent, vmm_agent) = sys::socketpair().map_err(io("creating the agent socketpair"))?;
        let (qmp, vmm_qmp) = sys::socketpair().map_err(io("creating the monitor socketpair"))?;
        let (console, vmm_console) =
            sys::socketpair().map_err(io("creating the console socketpair"))?;
        let side = VmmSide {
            agent: vmm_agent,
            qmp: vmm_qmp,
            console: vmm_console,
            inputs: VmmInputs::open(config)?,
        };
        Ok((
            Channels {
                agent,
                qmp,
                console,
            },
            side,
        ))
    }

    /// The fds to place at 3, 4, 5, ... in the VMM.
    fn fds(&self) -> Vec<std::os::fd::RawFd> {
        let mut fds = vec![
            self.agent.as_raw_fd(),
            self.qmp.as_raw_fd(),
            self.console.as_raw_fd(),
        ];
        fds.extend(&self.inputs.raw);
        fds
    }
}

/// A guest RAM file the VMM can open read-write through `/proc/self/fd`: created (`create`)
/// or given, owned by root with group [`VMM_GID`] and mode 0660.
fn vmm_writable(path: &Path, create: bool) -> Result<File, VmmError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(create)
        .create_new(create)
        .mode(0o660)
        .open(path)
        .map_err(io(format!("opening {}", path.display())))?;
    let m = f
        .metadata()
        .map_err(io(format!("reading the mode of {}", path.display())))?;
    if m.gid() != VMM_GID {
        std::os::unix::fs::fchown(&f, None, Some(VMM_GID))
            .map_err(io(format!("giving {} to the VMM group", path.display())))?;
    }
    if m.mode() & 0o7777 != 0o660 {
        f.set_permissions(std::fs::Permissions::from_mode(0o660))
            .map_err(io(format!("chmod 0660 {}", path.display())))?;
    }
    Ok(f)
}

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
    /// and the inputs of [`VmmInputs`] from fd 6 on (for a restore, the device state at 6).
    pub fn args(&self, config: &VmConfig) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut next_fd = 6;
        let mut take_fd = || {
            next_fd += 1;
            next_fd - 1
        };
        let state_fd = match config.memory {
            GuestMemory::RestoreFrom { .. } => Some(take_fd()),
            _ => None,
        };
        debug_assert!(state_fd.is_none_or(|fd| fd == 6));
        let ram_fd = match config.memory {
            GuestMemory::Anonymous => None,
            _ => Some(take_fd()),
        };
        let ram = ram_fd.map(|fd| PathBuf::from(format!("/proc/self/fd/{fd}")));
        let (kernel_fd, initrd_fd, root_fd) = (take_fd(), take_fd(), take_fd());
        let disk_fds: Vec<i32> = config.mount_disks.iter().map(|_| take_fd()).collect();
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
            GuestMemory::SaveTo(_) => {
                push(&[
                    "-object",
                    &backend(ram.as_deref().unwrap_or(Path::new("")), "on"),
                    "-machine",
                    "memory-backend=mem",
                ]);
            }
            GuestMemory::RestoreFrom { .. } => {
                push(&[
                    "-object",
                    &backend(ram.as_deref().unwrap_or(Path::new("")), "off"),
                    "-machine",
                    "memory-backend=mem",
                ]);
                push(&["-incoming", "defer"]);
            }
        }
        // qemu 7.2 reads the kernel and initramfs by path (the fd's file must be readable
        // by the VMM's uid: cordon's cache keeps them 0644); disks come from fd sets (qemu
        // duplicates the fd, no permission check).
        push(&["-kernel", &format!("/proc/self/fd/{kernel_fd}")]);
        push(&["-initrd", &format!("/proc/self/fd/{initrd_fd}")]);
        push(&["-append", &config.cmdline]);
        let mut fdset = |fd: i32| {
            push(&["-add-fd", &format!("fd={fd},set={fd}")]);
            format!("/dev/fdset/{fd}")
        };
        let root_path = fdset(root_fd);
        let disk_paths: Vec<String> = disk_fds.iter().map(|&fd| fdset(fd)).collect();
        let drive = format!("id=root,file={root_path},format=raw,if=none,readonly=on,cache=unsafe");
        push(&["-drive", &drive, "-device", "virtio-blk-device,drive=root"]);
        for (i, disk) in disk_paths.iter().enumerate() {
            let drive = format!("id=m{i},file={disk},format=raw,if=none,readonly=on,cache=unsafe");
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
        // A restore reads the device state from fd 6 while the VM loads: no monitor round
        // trips, and the guest runs as soon as it is loaded (it was saved running).
        let (
            Channels {
                agent,
                qmp,
                console,
            },
            vmm_side,
        ) = VmmSide::wire(config)?;
        let console_out = vmm_side
            .console
            .try_clone()
            .map_err(io("duplicating the console socket"))?;
        let console_err = vmm_side
            .console
            .try_clone()
            .map_err(io("duplicating the console socket"))?;
        let child_fds = vmm_side.fds();
        let kvm_gid = match config.accel {
            Accel::Kvm => Some(
                std::fs::metadata("/dev/kvm")
                    .map_err(io("reading the group of /dev/kvm"))?
                    .gid(),
            ),
            Accel::Tcg => None,
        };
        let who = sys::VmmIdentity {
            uid_base: VMM_UID_BASE,
            gid: VMM_GID,
            kvm_gid,
        };
        let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args(config))
            .stdin(Stdio::null())
            .stdout(Stdio::from(OwnedFd::from(console_out)))
            .stderr(Stdio::from(OwnedFd::from(console_err)))
            .env_clear()
            .env("PATH", "/usr/bin:/bin");
        // The VMM becomes PID 1 of a PID namespace of its own, a sibling of the forked
        // process (which reports its pid on this pipe and exits): a child of this process.
        let (pid_r, pid_w) = sys::pipe().map_err(io("creating the VMM's pid pipe"))?;
        let own_pidfd =
            sys::pidfd_open(std::process::id()).map_err(io("opening a pidfd for cordon"))?;
        let pid_ns = sys::PidNamespace {
            report: pid_w.as_raw_fd(),
            parent_pidfd: own_pidfd.as_raw_fd(),
        };
        // SAFETY: the closure only makes async-signal-safe calls (confine_vmm_child's contract)
        // on fds that stay open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || sys::confine_vmm_child(parent, &child_fds, who, Some(pid_ns)));
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
        let spawned = cmd.spawn();
        drop((vmm_side, pid_w, own_pidfd));
        // The forked process wrote the VMM's pid before exiting (nothing if it failed first).
        let mut buf = [0u8; 4];
        let vmm_pid = match sys::read(pid_r.as_raw_fd(), &mut buf) {
            Ok(4) => u32::try_from(i32::from_ne_bytes(buf)).ok(),
            _ => None,
        };
        let mut forked = match spawned {
            Ok(forked) => forked,
            Err(e) => {
                if let Some(pid) = vmm_pid {
                    let _ = sys::wait_pid(pid);
                }
                return Err(io(format!("starting {}", self.binary.display()))(e));
            }
        };
        let _ = forked.wait();
        let Some(vmm_pid) = vmm_pid else {
            return Err(VmmError::Monitor(
                "the VMM's pid was not reported (its PID namespace could not be made)".into(),
            ));
        };
        let pidfd = match sys::pidfd_open(vmm_pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = sys::wait_pid(vmm_pid);
                return Err(io("opening a pidfd for qemu")(e));
            }
        };
        let process = VmProcess::Child {
            pid: vmm_pid,
            status: None,
        };
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
            process,
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
        let GuestMemory::RestoreFrom { .. } = &config.memory else {
            return Err(VmmError::Snapshot("a bare restore needs a snapshot".into()));
        };
        let (
            Channels {
                agent,
                qmp,
                console,
            },
            vmm_side,
        ) = VmmSide::wire(config)?;
        let child_fds = vmm_side.fds();
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
        drop(vmm_side);
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
