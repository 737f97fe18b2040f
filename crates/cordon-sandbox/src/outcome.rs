//! How a sandbox ended, and the exit code cordon reports for it.
//!
//! The codes follow the container ecosystem's convention (Docker, runc, GNU timeout):
//!
//! | code      | meaning                                                        |
//! |-----------|----------------------------------------------------------------|
//! | 0-123     | the command's own exit code, passed through                    |
//! | 124       | `--timeout` expired; the sandbox was killed                    |
//! | 125       | cordon itself failed (bad flag, bad rootfs, setup error)       |
//! | 126       | the command exists but could not be executed                   |
//! | 127       | the command was not found                                      |
//! | 128+N     | the command was killed by signal N                             |

use std::fmt;

/// The documented exit codes.
pub mod exit_code {
    pub const TIMEOUT: i32 = 124;
    pub const RUNTIME_FAILED: i32 = 125;
    pub const NOT_EXECUTABLE: i32 = 126;
    pub const NOT_FOUND: i32 = 127;
    pub const SIGNAL_BASE: i32 = 128;
}

/// Why the command was killed by a signal, when the tier can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillCause {
    /// The kernel's OOM killer acted inside the sandbox's memory limit.
    MemoryLimit,
    /// The seccomp policy killed the process (SIGSYS).
    Seccomp,
    /// Someone sent the signal (the workload itself, cordon forwarding one, ...).
    Signal,
}

/// Why the command could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecFailure {
    NotFound(String),
    NotExecutable(String),
}

/// The end of a sandbox's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    Exited(i32),
    Signaled { signal: i32, cause: KillCause },
    TimedOut,
    ExecFailed(ExecFailure),
}

impl ExitOutcome {
    /// The process exit code cordon reports.
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitOutcome::Exited(code) => *code,
            ExitOutcome::Signaled { signal, .. } => exit_code::SIGNAL_BASE + signal,
            ExitOutcome::TimedOut => exit_code::TIMEOUT,
            ExitOutcome::ExecFailed(ExecFailure::NotFound(_)) => exit_code::NOT_FOUND,
            ExitOutcome::ExecFailed(ExecFailure::NotExecutable(_)) => exit_code::NOT_EXECUTABLE,
        }
    }

    /// A one-line explanation for stderr, or `None` when the command simply exited.
    pub fn explanation(&self) -> Option<String> {
        match self {
            ExitOutcome::Exited(_) => None,
            ExitOutcome::Signaled { signal, cause } => Some(match cause {
                KillCause::MemoryLimit => {
                    format!("killed by signal {signal} (SIGKILL): the sandbox's memory limit was exceeded (OOM)")
                }
                KillCause::Seccomp => {
                    format!("killed by signal {signal} (SIGSYS): a system call was refused by the seccomp policy")
                }
                KillCause::Signal => format!("killed by signal {signal}"),
            }),
            ExitOutcome::TimedOut => Some("timeout expired; the sandbox was killed".to_string()),
            ExitOutcome::ExecFailed(f) => Some(f.to_string()),
        }
    }
}

impl fmt::Display for ExecFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecFailure::NotFound(what) => write!(f, "{what}: command not found"),
            ExecFailure::NotExecutable(what) => write!(f, "{what}: cannot execute"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(ExitOutcome::Exited(3).exit_code(), 3);
        assert_eq!(
            ExitOutcome::Signaled {
                signal: 9,
                cause: KillCause::MemoryLimit
            }
            .exit_code(),
            137
        );
        assert_eq!(ExitOutcome::TimedOut.exit_code(), 124);
        assert_eq!(
            ExitOutcome::ExecFailed(ExecFailure::NotFound("x".into())).exit_code(),
            127
        );
        assert!(ExitOutcome::Signaled {
            signal: 31,
            cause: KillCause::Seccomp
        }
        .explanation()
        .unwrap()
        .contains("seccomp"));
    }
}
