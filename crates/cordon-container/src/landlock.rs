//! Landlock for the workload: the last step before `execve` may restrict the process to a
//! set of file trees (a kernel-enforced backstop under the seccomp filters). The sentry tier
//! uses it for every file-system access that reaches the kernel from the workload directly
//! rather than through its supervisor (`execve` and the loading of its interpreter, and any
//! path a filter might miss): read and execute beneath the root, write but not execute
//! beneath its scratch space (/tmp), every right beneath the writable mounts, nothing
//! anywhere else.

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use thiserror::Error;

use crate::sys;

/// Which trees the process keeps access to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LandlockRules {
    /// Read files, list directories and execute beneath every entry of the root, except the
    /// top-level directories in `scratch`.
    /// Every right but execute beneath each of these top-level directories (what is written
    /// there at run time cannot be executed).
    pub scratch: Vec<PathBuf>,
    /// Every file-system right Landlock knows beneath each of these (paths that do not exist
    /// are skipped).
    pub writable: Vec<PathBuf>,
}

#[derive(Debug, Error)]
pub enum LandlockError {
    #[error("landlock is not available in this kernel")]
    Unavailable,
    #[error("{op} {path}")]
    Path {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{op}")]
    Syscall {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
/// The rights that apply to a file itself; a rule on a file (a bind-mounted file, say) may
/// carry no others, or the kernel refuses it with EINVAL.
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

/// Every file-system access right of Landlock ABI `abi` (1: 13 rights, 2: + REFER,
/// 3: + TRUNCATE, 5: + IOCTL_DEV).
pub fn fs_rights(abi: i64) -> u64 {
    let mut rights = (1u64 << 13) - 1;
    if abi >= 2 {
        rights |= 1 << 13;
    }
    if abi >= 3 {
        rights |= 1 << 14;
    }
    if abi >= 5 {
        rights |= 1 << 15;
    }
    rights
}

/// The Landlock ABI version of the running kernel, if it has Landlock.
pub fn abi() -> Option<i64> {
    sys::landlock_abi()
}

/// Restricts the calling thread (and what it executes) to `rules`. Needs no_new_privs.
/// Returns the ABI enforced.
pub fn restrict_self(rules: &LandlockRules) -> Result<i64, LandlockError> {
    let abi = abi().ok_or(LandlockError::Unavailable)?;
    let all = fs_rights(abi);
    let ruleset = sys::landlock_create_ruleset(all).map_err(|source| LandlockError::Syscall {
        op: "creating the landlock ruleset",
        source,
    })?;
    let mut trees: Vec<(PathBuf, u64)> = Vec::new();
    let root = std::fs::read_dir("/").map_err(|source| LandlockError::Path {
        op: "listing",
        path: "/".into(),
        source,
    })?;
    for entry in root.flatten() {
        let path = entry.path();
        let dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let access = if rules.scratch.contains(&path) {
            all & !EXECUTE
        } else if dir || std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            EXECUTE | READ_FILE | READ_DIR
        } else {
            EXECUTE | READ_FILE
        };
        trees.push((path, access));
    }
    trees.extend(rules.writable.iter().map(|p| (p.clone(), all)));
    for (path, access) in &trees {
        let shown = || path.display().to_string();
        let c =
            CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| LandlockError::Path {
                op: "naming",
                path: shown(),
                source: io::ErrorKind::InvalidInput.into(),
            })?;
        let dir = match sys::open_path(&c) {
            Ok(fd) => fd,
            // a dangling link at the top, or an optional writable path
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(source) => {
                return Err(LandlockError::Path {
                    op: "opening",
                    path: shown(),
                    source,
                })
            }
        };
        let is_dir = sys::fstat(dir.as_fd())
            .map_err(|source| LandlockError::Path {
                op: "inspecting",
                path: shown(),
                source,
            })?
            .st_mode
            & libc::S_IFMT
            == libc::S_IFDIR;
        let access = if is_dir {
            *access
        } else {
            *access & FILE_RIGHTS
        };
        sys::landlock_add_path_rule(ruleset.as_fd(), dir.as_fd(), access).map_err(|source| {
            LandlockError::Path {
                op: "adding a landlock rule for",
                path: shown(),
                source,
            }
        })?;
    }
    sys::landlock_restrict_self(ruleset.as_fd()).map_err(|source| LandlockError::Syscall {
        op: "enforcing the landlock ruleset",
        source,
    })?;
    Ok(abi)
}

impl LandlockError {
    /// The error as the launch path reports it (one line, with its cause).
    pub(crate) fn into_io(self) -> io::Error {
        let text = match std::error::Error::source(&self) {
            Some(cause) => format!("{self}: {cause}"),
            None => self.to_string(),
        };
        io::Error::other(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(fs_rights(1).count_ones(), 13);
        assert_eq!(fs_rights(3).count_ones(), 15);
        assert_eq!(fs_rights(4), fs_rights(3));
        assert_eq!(fs_rights(7).count_ones(), 16);
    }
}
