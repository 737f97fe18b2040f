//! Container state kept under `--root`, so that `create`, `start`, `kill` and `delete` can be
//! separate processes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cordon_sandbox::timestamp::{self, Precision};
use serde::{Deserialize, Serialize};

use crate::OciError;

/// What cordon remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: i32,
    /// The init's start time in clock ticks: tells it apart from a later process with its pid.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_dirs: Vec<PathBuf>,
    pub tier: String,
}

/// The OCI status of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// The directory of one container under the state root.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

pub fn fifo(root: &Path, id: &str) -> PathBuf {
    dir(root, id).join("exec.fifo")
}

/// Checks an id the way runc does: non-empty, no path separators or dots-only names.
pub fn validate_id(id: &str) -> Result<(), OciError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(OciError::Usage(format!("invalid container id {id:?}")))
    }
}

pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None; // a zombie has finished running
    }
    fields.nth(18)?.parse().ok()
}

impl Record {
    pub fn load(root: &Path, id: &str) -> Result<Record, OciError> {
        validate_id(id)?;
        let path = dir(root, id).join("state.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                OciError::NotFound(id.to_string())
            } else {
                OciError::State(format!("reading {}: {e}", path.display()))
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| OciError::State(format!("parsing {}: {e}", path.display())))
    }

    pub fn save(&self, root: &Path) -> Result<(), OciError> {
        let d = dir(root, &self.id);
        let tmp = d.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a record serializes");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, d.join("state.json")))
            .map_err(|e| OciError::State(format!("writing {}: {e}", d.display())))
    }

    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.pid_start)
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if fifo(root, &self.id).exists() {
            Status::Created
        } else if cordon_container::cgroup::is_frozen(&self.cgroup_dirs) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    /// The state JSON of the OCI runtime spec (also what hooks read on stdin).
    pub fn oci_state(&self, status: Status) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.id,
            "status": status.as_str(),
            "pid": if status == Status::Stopped { 0 } else { self.pid },
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": "",
            "annotations": self.annotations,
        })
    }
}

/// The current time as RFC 3339 UTC with nanoseconds, as the state file and logs carry it.
pub fn now_rfc3339() -> String {
    timestamp::now_rfc3339(Precision::Nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_look_like_rfc3339() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 30, "{t}");
        assert!(
            t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
}
