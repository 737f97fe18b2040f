//! Privileged kernel entry points. Each call is made so that it changes nothing even when it
//! gets through: a garbage module image, a kexec segment count the kernel rejects right after
//! its permission checks, maps and rings that are closed at once, a key in the probe's own
//! process keyring, the clock set to the time it already shows.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::{clip, ename, refused};
use crate::context::Context;
use crate::sys;
use crate::verdict::Outcome;

/// Refusals that say the entry point itself was not reached.
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::ENOSYS)
    )
}

/// For calls whose harmless form must fail: any failure other than a refusal means the call
/// got past the privilege checks into the subsystem.
fn reached(ctx: &Context, what: &str, res: io::Result<()>, subsystem: &str) -> Outcome {
    match res {
        Ok(()) => Outcome::escaped(format!("{what} succeeded")),
        Err(e) if is_refusal(&e) => refused(ctx, what, &e),
        Err(e) => Outcome::escaped(format!(
            "{what}: {} after the privilege checks: the {subsystem} is reachable",
            ename(&e)
        )),
    }
}

/// For calls that succeed when allowed: success is an escape, a refusal is judged, anything
/// else is an error of the probe.
fn opened<T>(ctx: &Context, what: &str, res: io::Result<T>, escaped: &str) -> Outcome {
    match res {
        Ok(_) => Outcome::escaped(format!("{what} succeeded: {escaped}")),
        Err(e) if is_refusal(&e) || e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            refused(ctx, what, &e)
        }
        Err(e) => Outcome::error(format!("{what}: unexpected {}", ename(&e))),
    }
}

/// init_module with a garbage image, then finit_module on the probe's own (non-module)
/// executable: either is rejected as "not a module" once CAP_SYS_MODULE is granted.
pub(crate) fn module_load(ctx: &Context) -> Outcome {
    let first = reached(
        ctx,
        "init_module(garbage)",
        sys::init_module(b"cordon-probe: not a kernel module", c""),
        "module loader",
    );
    if first.verdict == crate::verdict::Verdict::Escaped {
        return first;
    }
    let exe = match fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => {
            return Outcome::new(
                first.verdict,
                format!(
                    "{}; finit_module not tried (open /proc/self/exe: {})",
                    first.detail,
                    ename(&e)
                ),
            )
        }
    };
    let second = reached(
        ctx,
        "finit_module(non-module ELF)",
        sys::finit_module(exe.as_fd(), c""),
        "module loader",
    );
    if second.verdict == crate::verdict::Verdict::Escaped {
        return second;
    }
    Outcome::new(
        first.verdict,
        format!("{}; {}", first.detail, second.detail),
    )
}

/// kexec_load with 17 segments (KEXEC_SEGMENT_MAX is 16): EINVAL means CAP_SYS_BOOT passed.
pub(crate) fn kexec_load(ctx: &Context) -> Outcome {
    reached(
        ctx,
        "kexec_load(17 segments)",
        sys::kexec_load_invalid(17),
        "kexec loader",
    )
}

/// bpf(BPF_MAP_CREATE) of a one-entry array map.
pub(crate) fn bpf(ctx: &Context) -> Outcome {
    const BPF_MAP_CREATE: libc::c_int = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let mut attr = [0u8; 128];
    for (i, v) in [BPF_MAP_TYPE_ARRAY, 4, 4, 1].into_iter().enumerate() {
        attr[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
    }
    opened(
        ctx,
        "bpf(BPF_MAP_CREATE)",
        sys::bpf(BPF_MAP_CREATE, &attr),
        "created a BPF array map (the verifier and JIT are reachable)",
    )
}

/// perf_event_open of a disabled software counter on the probe itself.
pub(crate) fn perf_event_open(ctx: &Context) -> Outcome {
    const PERF_TYPE_SOFTWARE: u32 = 1;
    const PERF_ATTR_SIZE_VER0: u32 = 64;
    // disabled | exclude_kernel | exclude_hv
    const FLAGS: u64 = 1 | (1 << 5) | (1 << 6);
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&PERF_TYPE_SOFTWARE.to_ne_bytes());
    attr[4..8].copy_from_slice(&PERF_ATTR_SIZE_VER0.to_ne_bytes());
    // config (offset 8) = PERF_COUNT_SW_CPU_CLOCK = 0
    attr[40..48].copy_from_slice(&FLAGS.to_ne_bytes());
    match sys::perf_event_open(&attr, 0, -1) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => refused(
            ctx,
            "perf_event_open(software clock)",
            &io::Error::from_raw_os_error(libc::ENOSYS),
        ),
        res => opened(
            ctx,
            "perf_event_open(software clock)",
            res,
            "the perf subsystem is reachable",
        ),
    }
}

/// userfaultfd(O_CLOEXEC): a descriptor that can stall kernel accesses to user memory (the
/// classic race-widening primitive of kernel exploits).
pub(crate) fn userfaultfd(ctx: &Context) -> Outcome {
    opened(
        ctx,
        "userfaultfd(O_CLOEXEC)",
        sys::userfaultfd(libc::O_CLOEXEC | libc::O_NONBLOCK),
        "got a userfaultfd",
    )
}

/// add_key of a user key into the probe's own process keyring (keyrings are not namespaced:
/// the same kernel code serves every container on the host); the key is invalidated at once.
pub(crate) fn keyctl(ctx: &Context) -> Outcome {
    const KEY_SPEC_PROCESS_KEYRING: i32 = -2;
    const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
    const KEYCTL_GET_KEYRING_ID: libc::c_int = 0;
    const KEYCTL_INVALIDATE: libc::c_int = 21;
    match sys::add_key(c"user", c"cordon-probe", b"x", KEY_SPEC_PROCESS_KEYRING) {
        Ok(id) => {
            let _ = sys::keyctl(KEYCTL_INVALIDATE, libc::c_long::from(id), 0);
            Outcome::escaped(format!(
                "add_key(\"user\") created key {id} in the kernel keyring (invalidated again)"
            ))
        }
        Err(e) if is_refusal(&e) => {
            let add = refused(ctx, "add_key(\"user\")", &e);
            match sys::keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0) {
                Ok(id) => Outcome::escaped(format!(
                    "{}, but keyctl(KEYCTL_GET_KEYRING_ID) reached the user keyring {id}",
                    add.detail
                )),
                Err(k) => Outcome::new(
                    add.verdict,
                    format!(
                        "{}; keyctl(KEYCTL_GET_KEYRING_ID): {}",
                        add.detail,
                        ename(&k)
                    ),
                ),
            }
        }
        Err(e) => Outcome::error(format!("add_key: unexpected {}", ename(&e))),
    }
}

/// io_uring_setup(1): a ring whose operations bypass the syscall boundary (and seccomp).
pub(crate) fn io_uring(ctx: &Context) -> Outcome {
    let mut params = [0u8; 120];
    opened(
        ctx,
        "io_uring_setup(1)",
        sys::io_uring_setup(1, &mut params),
        "got an io_uring (its operations bypass seccomp)",
    )
}

/// The "shocker" attack: open_by_handle_at on the filesystem behind the probe's own
/// executable (on the host's disk when the probe is bind-mounted in), first with a forged
/// handle of that filesystem's root directory (inode 2, generation 0 for ext4's
/// FILEID_INO32_GEN), then with the executable's genuine handle.
pub(crate) fn open_by_handle(ctx: &Context) -> Outcome {
    const FILEID_INO32_GEN: i32 = 1;
    let exe = match fs::File::open("/proc/self/exe") {
        Ok(f) => f,
        Err(e) => return Outcome::error(format!("open /proc/self/exe: {}", ename(&e))),
    };
    let genuine = sys::name_to_handle(exe.as_fd());
    let mut forged = sys::FileHandle {
        handle_bytes: 8,
        handle_type: FILEID_INO32_GEN,
        f_handle: [0; 128],
    };
    forged.f_handle[0..4].copy_from_slice(&2u32.to_ne_bytes());
    let what = "open_by_handle_at(forged root handle)";
    let forged_res = sys::open_by_handle(exe.as_fd(), &forged, libc::O_RDONLY | libc::O_DIRECTORY);
    match forged_res {
        Ok(dir) => {
            let listing = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                .map(|d| {
                    let mut names: Vec<String> = d
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    clip(&names.join(" "), 60)
                })
                .unwrap_or_else(|e| format!("(not listable: {})", ename(&e)));
            return Outcome::escaped(format!(
                "{what} opened the root directory of the filesystem behind the probe binary: {listing}"
            ));
        }
        Err(e) if is_refusal(&e) => return refused(ctx, what, &e),
        Err(_) => {}
    }
    // The forged handle did not fit this filesystem; the genuine one shows whether the call
    // itself is allowed.
    let handle = match genuine {
        Ok(h) => h,
        Err(e) => {
            return Outcome::blocked(format!(
                "{what}: {}; name_to_handle_at: {}",
                forged_res.err().map(|e| ename(&e)).unwrap_or_default(),
                ename(&e)
            ))
        }
    };
    match sys::open_by_handle(exe.as_fd(), &handle, libc::O_RDONLY) {
        Ok(_) => Outcome::escaped(
            "open_by_handle_at reopened the probe binary from its handle (CAP_DAC_READ_SEARCH is effective: any inode of that filesystem is reachable)",
        ),
        Err(e) => refused(ctx, "open_by_handle_at(genuine handle)", &e),
    }
}

/// clock_settime(CLOCK_REALTIME) to the time just read: needs CAP_SYS_TIME, and the clock is
/// not namespaced, so success means the sandbox could set the host's time.
pub(crate) fn clock_settime(ctx: &Context) -> Outcome {
    let res = sys::clock_gettime(libc::CLOCK_REALTIME)
        .and_then(|now| sys::clock_settime(libc::CLOCK_REALTIME, &now));
    match res {
        Ok(()) => Outcome::escaped(
            "clock_settime(CLOCK_REALTIME) succeeded (set to the time it showed): the host clock is settable",
        ),
        Err(e) => refused(ctx, "clock_settime(CLOCK_REALTIME)", &e),
    }
}
