//! The harness's result: probes by columns (the bare host, cordon's tiers, reference runtimes),
//! as data (JSON) and rendered as a text table and as Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

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

    fn any_unproven(&self) -> bool {
        self.probes.iter().any(|p| {
            self.columns
                .iter()
                .any(|c| self.cell_text(c, &p.name).ends_with(UNPROVEN))
        })
    }

    fn cell_text(&self, col: &Column, probe: &str) -> String {
        if col.unavailable.is_some() {
            return "n/a".to_string();
        }
        match col.results.get(probe) {
            None => "-".to_string(),
            Some(c) => {
                let mark = if col.kind != ColumnKind::Bare
                    && c.result != Verdict::Escaped
                    && self.unproven(probe)
                {
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
            .map(|c| c.name.len().max(12))
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
        if self.any_unproven() {
            let _ = writeln!(
                out,
                "{UNPROVEN} the probe did not escape the bare host either: this result proves no defence here"
            );
        }
        for c in &self.columns {
            let _ = writeln!(out, "{}: {}", c.name, Matrix::summary(c));
        }
        out
    }

    /// The matrix as Markdown: the columns and their commands, the matrix, then every detail.
    pub fn render_markdown(&self) -> String {
        let esc = |s: &str| s.replace('|', "\\|");
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
                let _ = write!(out, " {} |", self.cell_text(c, &p.name));
            }
            out.push('\n');
        }
        if self.any_unproven() {
            let _ = writeln!(
                out,
                "\n{UNPROVEN} the probe did not escape the bare host either (see its detail there): the result proves no defence on this host."
            );
        }
        out.push('\n');
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
mod tests {
    use super::*;

    fn column(name: &str, kind: ColumnKind, cells: &[(&str, Verdict)]) -> Column {
        Column {
            name: name.into(),
            kind,
            command: vec!["x".into(), "a|b".into()],
            unavailable: None,
            status: "exit 0".into(),
            stderr: String::new(),
            results: cells
                .iter()
                .map(|&(p, v)| {
                    (
                        p.to_string(),
                        Cell {
                            result: v,
                            detail: format!("{p} detail"),
                        },
                    )
                })
                .collect(),
        }
    }

    fn matrix() -> Matrix {
        use Verdict::*;
        let probe = |n: &str| ProbeInfo {
            name: n.into(),
            class: "c".into(),
            description: "d".into(),
        };
        Matrix {
            kernel: "6.18".into(),
            probe_bin: "/p".into(),
            probes: vec![probe("kcore"), probe("bpf")],
            columns: vec![
                column(
                    "bare",
                    ColumnKind::Bare,
                    &[("kcore", Unsupported), ("bpf", Escaped)],
                ),
                column(
                    "container",
                    ColumnKind::CordonTier,
                    &[("kcore", Blocked), ("bpf", Escaped)],
                ),
                Column {
                    unavailable: Some("the sentry tier is not available".into()),
                    ..column("sentry", ColumnKind::CordonTier, &[])
                },
            ],
        }
    }

    #[test]
    fn text_marks_unproven_results() {
        let t = matrix().render_text();
        let kcore = t.lines().find(|l| l.starts_with("kcore")).unwrap();
        assert!(
            kcore.contains("UNSUPPORTED") && kcore.contains("BLOCKED*") && kcore.contains("n/a")
        );
        assert!(t.contains("sentry: not run: the sentry tier is not available"));
        assert!(t.contains("container: 1 blocked, 1 escaped (exit 0)"));
    }

    #[test]
    fn markdown_escapes_pipes_and_has_details() {
        let m = matrix().render_markdown();
        assert!(m.contains("`x a\\|b`"));
        assert!(m.contains("| `kcore` | c | UNSUPPORTED | BLOCKED* | n/a |"));
        assert!(m.contains("## container"));
        assert!(!m.contains("## sentry"));
    }

    #[test]
    fn json_round_trip() {
        let m = matrix();
        let back: Matrix = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.columns.len(), 3);
        assert_eq!(
            back.column("container").unwrap().results["bpf"].result,
            Verdict::Escaped
        );
    }
}
