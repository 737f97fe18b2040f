//! The harness's result: probes by columns (the bare host, cordon's tiers, reference runtimes),
//! as data (JSON) and rendered as a text table and as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::catalog::Reach;
use crate::verdict::Verdict;

/// What ran the probes of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColumnKind {
    /// Directly on the host, no sandbox: validates the probes.
    Bare,
    /// One of cordon's tiers: an escape here fails the run.
    CordonTier,
    /// A reference runtime given with `--runtime-cmd`.
    Reference,
}

/// One probe's result in one column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub result: Verdict,
    pub detail: String,
}

/// One way of running the probes, and what it gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub kind: ColumnKind,
    /// The command line the harness ran.
    pub command: Vec<String>,
    /// Why the column could not run at all (a tier this build does not have).
    pub unavailable: Option<String>,
    /// How the command ended: "exit 0", "killed by signal 9", "timed out after 300 s".
    pub status: String,
    /// The last lines the command wrote to stderr.
    pub stderr: String,
    /// Probe name -> result.
    pub results: BTreeMap<String, Cell>,
    /// The probes ran on the sandbox's own kernel (a virtual machine's guest): what a
    /// kernel-reach probe escapes there is the guest's confinement, not the host's.
    #[serde(default)]
    pub guest_kernel: bool,
}

impl Column {
    pub fn count(&self, v: Verdict) -> usize {
        self.results.values().filter(|c| c.result == v).count()
    }
}

/// A probe as listed in the matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeInfo {
    pub name: String,
    pub class: String,
    pub reach: Reach,
    pub description: String,
}

/// Everything one harness run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Matrix {
    /// `uname -r` and `uname -v` of the host.
    pub kernel: String,
    pub probe_bin: String,
    pub probes: Vec<ProbeInfo>,
    pub columns: Vec<Column>,
}

/// Marks a tier's result that proves nothing on this host (see [`Matrix::unproven`]).
const UNPROVEN: &str = "*";
/// Marks an escape that stayed inside a guest kernel (see [`Matrix::inside_guest`]).
const GUEST: &str = "(guest)";

impl Matrix {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn bare(&self) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.kind == ColumnKind::Bare && c.unavailable.is_none())
    }

    /// Whether a non-escape of `probe` in a sandbox proves nothing here, because the probe did
    /// not escape on the bare host either (the host lacks the feature, or the probe failed).
    pub fn unproven(&self, probe: &str) -> bool {
        self.bare()
            .and_then(|b| b.results.get(probe))
            .is_some_and(|c| c.result != Verdict::Escaped)
    }

    /// Whether an escape of `probe` in `col` stayed inside the sandbox's own guest kernel:
    /// the probe attacks the kernel it runs on, and that kernel is not the host's.
    pub fn inside_guest(&self, col: &Column, probe: &str) -> bool {
        col.guest_kernel
            && self
                .probes
                .iter()
                .any(|p| p.name == probe && p.reach == Reach::Kernel)
    }

    fn any_marked(&self, mark: &str) -> bool {
        self.probes.iter().any(|p| {
            self.columns
                .iter()
                .any(|c| self.cell_text(c, &p.name).ends_with(mark))
        })
    }

    fn footnotes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.any_marked(UNPROVEN) {
            notes.push(format!(
                "{UNPROVEN} the probe did not escape the bare host either: this result proves no defence here"
            ));
        }
        if self.any_marked(GUEST) {
            notes.push(format!(
                "{GUEST} escaped its confinement inside the sandbox's own guest kernel, not the host: not an escape of the tier"
            ));
        }
        notes
    }

    fn cell_text(&self, col: &Column, probe: &str) -> String {
        if col.unavailable.is_some() {
            return "n/a".to_string();
        }
        match col.results.get(probe) {
            None => "-".to_string(),
            Some(c) => {
                let mark = if col.kind == ColumnKind::Bare {
                    ""
                } else if c.result == Verdict::Escaped {
                    if self.inside_guest(col, probe) {
                        GUEST
                    } else {
                        ""
                    }
                } else if self.unproven(probe) {
                    UNPROVEN
                } else {
                    ""
                };
                format!("{}{mark}", c.result)
            }
        }
    }

    fn summary(col: &Column) -> String {
        if let Some(why) = &col.unavailable {
            return format!("not run: {why}");
        }
        let counts: Vec<String> = Verdict::ALL
            .iter()
            .map(|&v| (v, col.count(v)))
            .filter(|&(_, n)| n > 0)
            .map(|(v, n)| format!("{n} {}", v.name().to_lowercase()))
            .collect();
        format!("{} ({})", counts.join(", "), col.status)
    }

    /// The matrix as a fixed-width table with a summary per column (the harness reports the
    /// details that decide its exit status separately).
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "kernel: {}", self.kernel);
        let _ = writeln!(out, "probe binary: {}\n", self.probe_bin);
        let width = self
            .columns
            .iter()
            .map(|c| {
                self.probes
                    .iter()
                    .map(|p| self.cell_text(c, &p.name).len())
                    .fold(c.name.len().max(11), usize::max)
            })
            .collect::<Vec<_>>();
        let _ = write!(out, "{:<21} {:<13}", "PROBE", "CLASS");
        for (c, w) in self.columns.iter().zip(&width) {
            let _ = write!(out, " {:<w$}", c.name);
        }
        out.push('\n');
        for p in &self.probes {
            let _ = write!(out, "{:<21} {:<13}", p.name, p.class);
            for (c, w) in self.columns.iter().zip(&width) {
                let _ = write!(out, " {:<w$}", self.cell_text(c, &p.name));
            }
            out.push('\n');
        }
        out.push('\n');
        for note in self.footnotes() {
            let _ = writeln!(out, "{note}");
        }
        for c in &self.columns {
            let _ = writeln!(out, "{}: {}", c.name, Matrix::summary(c));
        }
        out
    }

    /// The matrix as Markdown: the columns and their commands, the matrix, then every detail.
    pub fn render_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|").replace('*', "\\*");
        let mut out = String::from("# cordon escape probes\n\n");
        let _ = writeln!(out, "- host kernel: `{}`", self.kernel);
        let _ = writeln!(out, "- probe binary: `{}`\n", self.probe_bin);
        out.push_str("| column | kind | command | result |\n|---|---|---|---|\n");
        for c in &self.columns {
            let kind = match c.kind {
                ColumnKind::Bare => "bare host",
                ColumnKind::CordonTier => "cordon tier",
                ColumnKind::Reference => "reference",
            };
            let _ = writeln!(
                out,
                "| {} | {kind} | `{}` | {} |",
                c.name,
                esc(&c.command.join(" ")),
                esc(&Matrix::summary(c))
            );
        }
        out.push_str("\n| probe | class |");
        for c in &self.columns {
            let _ = write!(out, " {} |", c.name);
        }
        out.push_str("\n|---|---|");
        for _ in &self.columns {
            out.push_str("---|");
        }
        out.push('\n');
        for p in &self.probes {
            let _ = write!(out, "| `{}` | {} |", p.name, p.class);
            for c in &self.columns {
                let _ = write!(out, " {} |", esc(&self.cell_text(c, &p.name)));
            }
            out.push('\n');
        }
        out.push('\n');
        for note in self.footnotes() {
            let _ = writeln!(out, "{}\n", esc(&note));
        }
        for c in self.columns.iter().filter(|c| c.unavailable.is_none()) {
            let _ = writeln!(
                out,
                "## {}\n\n| probe | result | detail |\n|---|---|---|",
                c.name
            );
            for p in &self.probes {
                if let Some(cell) = c.results.get(&p.name) {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | {} |",
                        p.name,
                        cell.result,
                        esc(&cell.detail)
                    );
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A column with `cells`, each detailed as "<probe> detail".
    pub(crate) fn column(name: &str, kind: ColumnKind, cells: &[(&str, Verdict)]) -> Column {
        Column {
            name: name.into(),
            kind,
            command: vec!["x".into(), "a|b".into()],
            unavailable: None,
            status: "exit 0".into(),
            stderr: String::new(),
            results: cells
                .iter()
                .map(|&(p, result)| {
                    let detail = format!("{p} detail");
                    (p.to_string(), Cell { result, detail })
                })
                .collect(),
            guest_kernel: false,
        }
    }

    pub(crate) fn matrix() -> Matrix {
        use Verdict::*;
        let probe = |n: &str, reach| ProbeInfo {
            name: n.into(),
            class: "c".into(),
            reach,
            description: "d".into(),
        };
        Matrix {
            kernel: "6.18".into(),
            probe_bin: "/p".into(),
            probes: vec![
                probe("kcore", Reach::Kernel),
                probe("bpf", Reach::Kernel),
                probe("secret", Reach::Host),
            ],
            columns: vec![
                column(
                    "bare",
                    ColumnKind::Bare,
                    &[
                        ("kcore", Unsupported),
                        ("bpf", Escaped),
                        ("secret", Escaped),
                    ],
                ),
                column(
                    "container",
                    ColumnKind::CordonTier,
                    &[("kcore", Blocked), ("bpf", Escaped), ("secret", Blocked)],
                ),
                Column {
                    unavailable: Some("the sentry tier is not available".into()),
                    ..column("sentry", ColumnKind::CordonTier, &[])
                },
                Column {
                    guest_kernel: true,
                    ..column(
                        "microvm",
                        ColumnKind::CordonTier,
                        &[("kcore", Escaped), ("bpf", Blocked), ("secret", Escaped)],
                    )
                },
            ],
        }
    }

    #[test]
    fn text_marks_unproven_and_guest_results() {
        let t = matrix().render_text();
        let kcore = t.lines().find(|l| l.starts_with("kcore")).unwrap();
        assert!(
            kcore.contains("UNSUPPORTED") && kcore.contains("BLOCKED*"),
            "{kcore}"
        );
        assert!(
            kcore.contains("n/a") && kcore.contains("ESCAPED(guest)"),
            "{kcore}"
        );
        // A host-reach escape is never excused as a guest's.
        let secret = t.lines().find(|l| l.starts_with("secret")).unwrap();
        assert!(!secret.contains("(guest)"), "{secret}");
        assert!(t.contains("* the probe did not escape the bare host either"));
        assert!(t.contains("(guest) escaped its confinement inside"));
        assert!(t.contains("sentry: not run: the sentry tier is not available"));
        assert!(t.contains("container: 2 blocked, 1 escaped (exit 0)"));
    }

    #[test]
    fn markdown_escapes_pipes_and_stars_and_has_details() {
        let m = matrix().render_markdown();
        assert!(m.contains("`x a\\|b`"));
        assert!(m.contains("| `kcore` | c | UNSUPPORTED | BLOCKED\\* | n/a | ESCAPED(guest) |"));
        assert!(m.contains("\\* the probe did not escape"));
        assert!(m.contains("## container"));
        assert!(!m.contains("## sentry"));
    }

    #[test]
    fn json_round_trip() {
        let m = matrix();
        let back: Matrix = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.columns.len(), 4);
        assert_eq!(
            back.column("container").unwrap().results["bpf"].result,
            Verdict::Escaped
        );
        assert!(back.column("microvm").unwrap().guest_kernel);
        assert_eq!(back.probes[2].reach, Reach::Host);
    }
}
