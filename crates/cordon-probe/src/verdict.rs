//! What a probe concludes, and the JSON line it is reported as.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The result of one attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// The attack was refused by something between the probe and the host.
    Blocked,
    /// The attack worked: the probe reached what a sandbox must keep out of reach.
    Escaped,
    /// The host itself lacks the feature (or refuses it even to unconfined root), so the
    /// attack cannot be tried here; the detail says which.
    Unsupported,
    /// The probe could not reach a conclusion.
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Blocked,
        Verdict::Escaped,
        Verdict::Unsupported,
        Verdict::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Blocked => "BLOCKED",
            Verdict::Escaped => "ESCAPED",
            Verdict::Unsupported => "UNSUPPORTED",
            Verdict::Error => "ERROR",
        }
    }

    /// One-byte encoding for the pipe between a probe's process and the runner.
    pub(crate) fn code(self) -> u8 {
        match self {
            Verdict::Blocked => b'B',
            Verdict::Escaped => b'X',
            Verdict::Unsupported => b'U',
            Verdict::Error => b'E',
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.code() == code)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A verdict with its one-line explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub detail: String,
}

impl Outcome {
    pub fn new(verdict: Verdict, detail: impl Into<String>) -> Outcome {
        let detail: String = detail.into();
        Outcome {
            verdict,
            // One line, whatever the kernel or a file said.
            detail: detail.replace(['\n', '\r'], " "),
        }
    }

    pub fn blocked(detail: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Blocked, detail)
    }

    pub fn escaped(detail: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Escaped, detail)
    }

    pub fn unsupported(detail: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Unsupported, detail)
    }

    pub fn error(detail: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Error, detail)
    }
}

/// One probe's result as printed by `cordon-probe run --json`, one JSON object per line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub probe: String,
    pub class: String,
    pub result: Verdict,
    pub detail: String,
    /// Wall time the probe took, in milliseconds.
    pub ms: u64,
    /// The release of the kernel the probe ran on (`uname -r`), so that a harness can tell
    /// a runtime with a guest kernel of its own from one sharing the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_code(v.code()), Some(v));
        }
        assert_eq!(Verdict::from_code(b'?'), None);
    }

    #[test]
    fn json_line_shape() {
        let r = Report {
            probe: "kcore".into(),
            class: "kernel-fs".into(),
            result: Verdict::Unsupported,
            detail: "x".into(),
            ms: 3,
            kernel: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"probe":"kcore","class":"kernel-fs","result":"UNSUPPORTED","detail":"x","ms":3}"#
        );
        assert_eq!(serde_json::from_str::<Report>(&line).unwrap(), r);
    }

    #[test]
    fn details_are_one_line() {
        assert_eq!(Outcome::blocked("a\nb").detail, "a b");
    }
}
