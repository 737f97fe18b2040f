//! Running cordon from a sealed in-memory copy of itself (the runc CVE-2019-5736 defence).
//!
//! A workload that gets a process of the sandbox to execute `/proc/self/exe` (for example by
//! naming it as a script interpreter) would reach the binary that runs cordon; if that were the
//! host file, the workload could try to rewrite it for the next root user to execute. Before a
//! container is set up, cordon re-executes itself from a memfd sealed against every write, so
//! `/proc/<pid>/exe` of every cordon process in or around a sandbox is that immutable copy.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use crate::sys;

const MEMFD_NAME: &std::ffi::CStr = c"cordon";

/// Whether this process already runs from the sealed copy.
pub fn is_sealed() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().starts_with("/memfd:cordon"))
        .unwrap_or(false)
}

/// Re-executes the current program from a sealed memfd with the same arguments and
/// environment. Returns only if that is impossible (the error says why); returns `Ok` at once
/// when already sealed.
pub fn reexec_sealed() -> io::Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let exe = sys::openat(None, Path::new("/proc/self/exe"), libc::O_RDONLY, 0)?;
    let len = sys::fstat(exe.as_fd())?.st_size;
    let memfd = sys::memfd_sealable(MEMFD_NAME)?;
    sys::sendfile_all(memfd.as_fd(), exe.as_fd(), u64::try_from(len).unwrap_or(0))?;
    sys::add_seals(
        memfd.as_fd(),
        libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE,
    )?;
    let to_c =
        |v: Vec<u8>| CString::new(v).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let argv = std::env::args_os()
        .map(|a| to_c(a.into_vec()))
        .collect::<io::Result<Vec<_>>>()?;
    let envp = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            to_c(kv)
        })
        .collect::<io::Result<Vec<_>>>()?;
    Err(sys::fexecve(memfd.as_fd(), &argv, &envp))
}
