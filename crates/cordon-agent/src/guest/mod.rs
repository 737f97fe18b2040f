//! The agent as PID 1 of the guest: boot steps, then one command.
//!
//! Boot, in order (each step's failure powers the VM off with a message on the console, which
//! the host reports):
//! 1. mount devtmpfs, proc and sysfs in the initramfs;
//! 2. load the kernel modules the host put in `/modules` (file names sort in dependency order);
//! 3. wait for the root disk (`/dev/vda`) and the agent's virtio-serial port;
//! 4. mount the root disk read-only at `/newroot` with a tmpfs `/tmp`, move `/dev`, mount
//!    `/proc` and `/sys` there, and make it `/` (the initramfs is hidden from then on);
//! 5. say [`GuestMsg::Ready`] and wait for [`HostMsg::Run`] (a snapshot of the VM is taken
//!    here, so everything after this point runs once per sandbox). A warm pool first sends
//!    [`HostMsg::Warm`]: a cordon-owned command run the same way, then Ready again.

mod command;
mod sys;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::protocol::{read_host_msg, GuestMsg, HostMsg, ProtocolError, PORT_NAME};

/// The agent's entry point (the `main` of `/init`).
pub fn main() -> ! {
    if std::process::id() != 1 {
        eprintln!("cordon-agent: must run as PID 1 of a cordon microVM");
        std::process::exit(2);
    }
    match boot().and_then(serve) {
        Ok(()) => {}
        Err(e) => console(&format!("cordon-agent: fatal: {e}")),
    }
    sys::power_off()
}

fn console(msg: &str) {
    // fd 2 is /dev/console (the serial port): the host keeps its last lines for error reports.
    let _ = writeln!(io::stderr(), "{msg}");
}

/// An agent step that failed, with what it was doing.
#[derive(Debug)]
pub struct AgentError {
    step: String,
    source: io::Error,
}

impl std::fmt::Display for AgentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

fn step<T>(what: impl FnOnce() -> String, r: io::Result<T>) -> Result<T, AgentError> {
    r.map_err(|source| AgentError {
        step: what(),
        source,
    })
}

fn mount_at(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), AgentError> {
    let _ = fs::create_dir_all(target);
    step(
        || format!("mounting {fstype} on {target}"),
        sys::mount(src, target, fstype, flags, data),
    )
}

/// Steps 1-4: returns with `/` being the root disk and the port open.
fn boot() -> Result<File, AgentError> {
    let nosuid = libc::MS_NOSUID | libc::MS_NOEXEC;
    mount_at("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755")?;
    mount_at("proc", "/proc", "proc", nosuid | libc::MS_NODEV, "")?;
    mount_at("sysfs", "/sys", "sysfs", nosuid | libc::MS_NODEV, "")?;

    load_modules(Path::new("/modules"))?;

    let disk = wait_for(Duration::from_secs(10), || {
        Path::new("/dev/vda").exists().then_some(())
    });
    step(|| "waiting for the root disk /dev/vda".into(), disk)?;
    let port_path = step(
        || format!("waiting for the virtio-serial port {PORT_NAME}"),
        wait_for(Duration::from_secs(10), find_port),
    )?;
    let port = step(
        || format!("opening {}", port_path.display()),
        OpenOptions::new().read(true).write(true).open(&port_path),
    )?;

    mount_at(
        "/dev/vda",
        "/newroot",
        "ext4",
        libc::MS_RDONLY | libc::MS_NODEV,
        "",
    )?;
    mount_at(
        "tmpfs",
        "/newroot/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        &format!("mode=1777,size={BOOT_TMP_BYTES}"),
    )?;
    mount_at("/dev", "/newroot/dev", "", libc::MS_MOVE, "")?;
    mount_at(
        "devpts",
        "/newroot/dev/pts",
        "devpts",
        nosuid,
        "mode=0620,ptmxmode=0666",
    )?;
    mount_at(
        "shm",
        "/newroot/dev/shm",
        "tmpfs",
        nosuid | libc::MS_NODEV,
        "mode=1777",
    )?;
    mount_at("proc", "/newroot/proc", "proc", nosuid | libc::MS_NODEV, "")?;
    mount_at("/sys", "/newroot/sys", "", libc::MS_MOVE, "")?;
    step(
        || "entering /newroot".into(),
        std::env::set_current_dir("/newroot"),
    )?;
    mount_at(".", "/", "", libc::MS_MOVE, "")?;
    step(|| "chroot to the root disk".into(), sys::chroot("."))?;
    step(|| "chdir /".into(), std::env::set_current_dir("/"))?;
    step(
        || "creating the command's cgroup".into(),
        command::prepare_cgroup(),
    )?;
    let _ = sys::sethostname(BOOT_HOSTNAME);
    warm_up();
    // The command's process is forked now, into the snapshot (a failure here only means the
    // command's start forks it).
    let _ = command::prepare_zygote();
    Ok(port)
}

/// The hostname set at boot (cordon's default).
pub(crate) const BOOT_HOSTNAME: &str = "cordon";

/// Size of /tmp as mounted at boot (cordon's default; a different size is a remount).
pub(crate) const BOOT_TMP_BYTES: u64 = 512 << 20;

/// Runs common commands once before the snapshot is taken, so that their files are in the
/// guest's page cache of every sandbox started from it (reading them through the emulated disk
/// costs far more than the run itself).
fn warm_up() {
    let candidates: [&[&str]; 2] = [&["/bin/true"], &["/usr/bin/python3", "-c", "pass"]];
    for argv in candidates {
        if !Path::new(argv[0]).exists() {
            continue;
        }
        let _ = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn load_modules(dir: &Path) -> Result<(), AgentError> {
    let mut names: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return step(|| format!("listing {}", dir.display()), Err(e)),
    };
    names.sort();
    for path in names {
        let f = step(|| format!("opening {}", path.display()), File::open(&path))?;
        match sys::finit_module(std::os::fd::AsFd::as_fd(&f)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return step(|| format!("loading module {}", path.display()), Err(e)),
        }
    }
    Ok(())
}

fn find_port() -> Option<PathBuf> {
    for e in fs::read_dir("/sys/class/virtio-ports").ok()?.flatten() {
        let name = fs::read_to_string(e.path().join("name")).unwrap_or_default();
        if name.trim() == PORT_NAME {
            let dev = Path::new("/dev").join(e.file_name());
            if dev.exists() {
                return Some(dev);
            }
        }
    }
    None
}

fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> io::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(io::Error::from(io::ErrorKind::TimedOut));
        }
        sleep(Duration::from_millis(5));
    }
}

/// Reads one host message; a port whose host side is not connected yet reads as end of file,
/// so that is retried rather than taken as the end.
fn next_host_msg(port: &mut File) -> Result<HostMsg, AgentError> {
    let mut r = RetryEof(port);
    read_host_msg(&mut r).map_err(|e| AgentError {
        step: "reading from the host".into(),
        source: match e {
            ProtocolError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        },
    })
}

struct RetryEof<'a>(&'a mut File);

impl Read for RetryEof<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Ok(0) if !buf.is_empty() => sleep(Duration::from_millis(2)),
                other => return other,
            }
        }
    }
}

/// Writes a whole frame; a port whose host side is away (EPIPE) is retried for a while.
pub(crate) fn send(port: &mut File, msg: &GuestMsg) -> io::Result<()> {
    let frame = msg.encode();
    let mut retries = 0;
    loop {
        match port.write_all(&frame) {
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) && retries < 2000 => {
                retries += 1;
                sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Step 5, then the command.
fn serve(mut port: File) -> Result<(), AgentError> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    step(
        || "saying ready".into(),
        send(
            &mut port,
            &GuestMsg::Ready {
                kernel_release: release.trim().to_string(),
            },
        ),
    )?;
    loop {
        match next_host_msg(&mut port)? {
            HostMsg::Run(req) => {
                // An immediate sign of life: the host times the restore by it.
                let _ = send(&mut port, &GuestMsg::Heartbeat);
                let report = command::run(&mut port, &req);
                return step(
                    || "reporting the exit".into(),
                    send(&mut port, &GuestMsg::Exit(report)),
                );
            }
            HostMsg::Warm(req) => {
                // A warm pool's VM: the same path as a command (so its code is translated),
                // output dropped by the host, then ready again for the one real command.
                let _ = command::run(&mut port, &req);
                command::rearm();
                step(
                    || "saying ready after the warm-up".into(),
                    send(
                        &mut port,
                        &GuestMsg::Ready {
                            kernel_release: release.trim().to_string(),
                        },
                    ),
                )?;
            }
            // Nothing runs yet: stdin and signals before Run have nobody to go to.
            HostMsg::Stdin(_) | HostMsg::StdinEof | HostMsg::Signal(_) => {}
            HostMsg::ExecStdin { .. }
            | HostMsg::ExecStdinEof { .. }
            | HostMsg::ExecSignal { .. } => {}
            // An exec needs the command's confinement, which arrives with Run.
            HostMsg::ExecStart { id, .. } => {
                let report = crate::protocol::ExitReport::SetupFailed(
                    "the container's process has not started".into(),
                );
                step(
                    || "refusing an exec".into(),
                    send(&mut port, &GuestMsg::ExecExit { id, report }),
                )?;
            }
        }
    }
}
