//! Host-global kernel interfaces exposed as files: /proc/sysrq-trigger, /proc/kcore,
//! /proc/sys knobs, /sys/firmware, the kernel log. Knobs are opened for writing, never written.

use std::fs;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{clip, ename, open_proc_knob, refused};
use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

/// Opens /proc/sysrq-trigger for writing (a write could reboot or crash the host).
pub(crate) fn sysrq_trigger(ctx: &Context) -> Outcome {
    match open_proc_knob(ctx, "/proc/sysrq-trigger", true, "CONFIG_MAGIC_SYSRQ") {
        Ok(_) => Outcome::escaped("opened /proc/sysrq-trigger for writing (nothing written)"),
        Err(o) => o,
    }
}

/// Reads the ELF header of /proc/kcore (the host's physical memory as a core file).
pub(crate) fn kcore(ctx: &Context) -> Outcome {
    let mut f = match open_proc_knob(ctx, "/proc/kcore", false, "CONFIG_PROC_KCORE") {
        Ok(f) => f,
        Err(o) => return o,
    };
    let mut head = [0u8; 16];
    match f.read(&mut head) {
        Ok(n) if n >= 4 && head.starts_with(b"\x7fELF") => {
            Outcome::escaped("read the ELF header of /proc/kcore (host kernel memory)")
        }
        Ok(n) => Outcome::blocked(format!(
            "/proc/kcore opened but read gave {n} bytes, no ELF header"
        )),
        Err(e) => refused(ctx, "read(/proc/kcore)", &e),
    }
}

/// Opens /proc/sys/kernel/core_pattern for writing: a `|program` pattern makes the host
/// kernel run that program as root on the next crash.
pub(crate) fn core_pattern(ctx: &Context) -> Outcome {
    match open_proc_knob(ctx, "/proc/sys/kernel/core_pattern", true, "core dumps") {
        Ok(_) => Outcome::escaped(
            "opened /proc/sys/kernel/core_pattern for writing (nothing written): a `|prog` pattern runs prog as root of the initial namespaces",
        ),
        Err(o) => o,
    }
}

/// Global /proc/sys knobs, usermode-helper paths first (each makes the kernel run a program as
/// root), then plain global switches.
const KNOBS: &[&str] = &[
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/poweroff_cmd",
    "/proc/sys/kernel/hotplug",
    "/proc/sys/vm/drop_caches",
    "/proc/sys/kernel/panic",
];

/// Opens other host-global /proc/sys knobs for writing.
pub(crate) fn proc_sys_write(ctx: &Context) -> Outcome {
    let mut opened = Vec::new();
    let mut first_refusal = None;
    let mut present = 0;
    for knob in KNOBS {
        match open_proc_knob(ctx, knob, true, "this knob") {
            Ok(_) => {
                present += 1;
                opened.push(*knob);
            }
            Err(o) => {
                if o.verdict != crate::verdict::Verdict::Unsupported {
                    present += 1;
                    first_refusal.get_or_insert(o);
                }
            }
        }
    }
    if !opened.is_empty() {
        return Outcome::escaped(format!(
            "opened for writing (nothing written): {}",
            opened.join(", ")
        ));
    }
    match first_refusal {
        Some(o) => Outcome::new(
            o.verdict,
            format!(
                "{} of {} knobs refused; first: {}",
                present,
                KNOBS.len(),
                o.detail
            ),
        ),
        None => Outcome::unsupported(format!(
            "none of {} exists in this kernel",
            KNOBS.join(", ")
        )),
    }
}

/// Lists /sys/firmware and reads a file from it (ACPI tables, the firmware memory map).
pub(crate) fn sys_firmware(ctx: &Context) -> Outcome {
    let root = Path::new("/sys/firmware");
    let entries: Vec<String> = match fs::read_dir(root) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Outcome::blocked("/sys/firmware does not exist here (no sysfs, or hidden)")
        }
        Err(e) => return refused(ctx, "opendir(/sys/firmware)", &e),
    };
    if entries.is_empty() {
        return Outcome::blocked("/sys/firmware is empty (masked)");
    }
    let read = first_readable_file(root, 3)
        .map(|(p, n)| format!("; read {n} bytes of {}", p))
        .unwrap_or_else(|| "; no file in it was readable".to_string());
    Outcome::escaped(format!(
        "/sys/firmware lists {}{read}",
        clip(&entries.join(", "), 60)
    ))
}

/// Depth-first search for a regular file under `dir` that reads at least one byte.
fn first_readable_file(dir: &Path, depth: u32) -> Option<(String, usize)> {
    let mut entries: Vec<_> = fs::read_dir(dir).ok()?.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_file() {
            let mut buf = [0u8; 64];
            if let Ok(n) = fs::File::open(&path).and_then(|mut f| f.read(&mut buf)) {
                if n > 0 {
                    return Some((path.display().to_string(), n));
                }
            }
        } else if ft.is_dir() && depth > 0 {
            if let Some(found) = first_readable_file(&path, depth - 1) {
                return Some(found);
            }
        }
    }
    None
}

/// Reads the host's kernel log: `syslog(SYSLOG_ACTION_READ_ALL)` and /dev/kmsg (both leave
/// the log as it is; /proc/kmsg, which consumes it, is not touched).
pub(crate) fn kernel_log(ctx: &Context) -> Outcome {
    let mut buf = vec![0u8; 4096];
    let syslog = sys::syslog_read_all(&mut buf);
    if let Ok(n) = syslog {
        if n > 0 {
            return Outcome::escaped(format!(
                "syslog(SYSLOG_ACTION_READ_ALL) returned {n} bytes of the kernel log"
            ));
        }
    }
    let kmsg = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .and_then(|mut f| f.read(&mut buf));
    match (syslog, kmsg) {
        (_, Ok(n)) if n > 0 => Outcome::escaped(format!(
            "read a {n}-byte record of the kernel log from /dev/kmsg"
        )),
        (Err(e), Err(k)) => {
            let o = refused(ctx, "syslog(SYSLOG_ACTION_READ_ALL)", &e);
            Outcome::new(o.verdict, format!("{}; /dev/kmsg: {}", o.detail, ename(&k)))
        }
        (s, k) => Outcome::blocked(format!(
            "syslog: {}; /dev/kmsg: {}",
            s.map(|n| format!("{n} bytes"))
                .unwrap_or_else(|e| ename(&e)),
            k.map(|n| format!("{n} bytes"))
                .unwrap_or_else(|e| ename(&e)),
        )),
    }
}

/// Reads /proc/kallsyms: real addresses defeat KASLR, the first step of most kernel exploits.
pub(crate) fn kallsyms(ctx: &Context) -> Outcome {
    let mut f = match open_proc_knob(ctx, "/proc/kallsyms", false, "CONFIG_KALLSYMS") {
        Ok(f) => f,
        Err(o) => return o,
    };
    let mut head = vec![0u8; 4096];
    let n = match f.read(&mut head) {
        Ok(n) => n,
        Err(e) => return refused(ctx, "read(/proc/kallsyms)", &e),
    };
    let text = String::from_utf8_lossy(&head[..n]);
    let lines: Vec<&str> = text.lines().take(20).collect();
    let real = lines.iter().find(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|a| a.chars().any(|c| c != '0'))
    });
    match real {
        Some(line) => Outcome::escaped(format!(
            "/proc/kallsyms shows kernel addresses (KASLR defeated): {}",
            clip(line.trim(), 50)
        )),
        None if lines.is_empty() => Outcome::blocked("/proc/kallsyms is empty"),
        None => Outcome::blocked("/proc/kallsyms shows only zeroed addresses"),
    }
}
