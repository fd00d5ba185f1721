//! Located spec diagnostics: `gateway.yaml:LINE:COL: error: ...`, an excerpt
//! of the line, and a `help:` that says the fix.

use std::fmt;

use crate::spec::Source;

/// What is wrong with one value, and the fix: a [`Diagnostic`] before it
/// is given a position. Validation rules return these; the caller locates
/// them at the spec path of the value at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// One sentence saying what is wrong.
    pub message: String,
    /// What to do about it.
    pub help: String,
}

impl Problem {
    /// A problem with its fix.
    pub fn new(message: impl Into<String>, help: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            help: help.into(),
        }
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The spec is rejected.
    Error,
    /// The spec compiles, but something is probably wrong.
    Warning,
}

/// One located message about the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The spec file name.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// One sentence saying what is wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// The offending line of the spec, for the excerpt.
    excerpt: String,
}

impl Diagnostic {
    /// An error at a line and column of `src`.
    pub fn at(src: &Source<'_>, line: usize, column: usize, message: impl Into<String>) -> Self {
        let excerpt = src
            .text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .to_owned();
        Diagnostic {
            severity: Severity::Error,
            file: src.file.to_owned(),
            line,
            column,
            message: message.into(),
            help: None,
            excerpt,
        }
    }

    /// Adds the `help:` line.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The diagnostic on one line, without the excerpt:
    /// `FILE:LINE:COL: warning: message (help: ...)`, for outputs that take
    /// one line per message, such as cargo's `cargo::warning=`.
    pub fn one_line(&self) -> String {
        let mut line = self.to_string().lines().next().unwrap_or("").to_owned();
        if let Some(help) = &self.help {
            line.push_str(&format!(" (help: {help})"));
        }
        line
    }

    /// Turns the error into a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(
            f,
            "{}:{}:{}: {level}: {}",
            self.file, self.line, self.column, self.message
        )?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.excerpt)?;
        let pad: String = self
            .excerpt
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        writeln!(f, "{:gutter$} | {pad}^", "")?;
        if let Some(help) = &self.help {
            writeln!(f, "{:gutter$} = help: {help}", "")?;
        }
        Ok(())
    }
}

/// Every diagnostic found in one pass: validation reports them all at once
/// rather than one per rebuild.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// A list of one.
    pub fn one(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// Only the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// All diagnostics rendered as text, followed by a count of errors.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.to_string());
            out.push('\n');
        }
        let errors = self
            .0
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        if errors > 0 {
            let s = if errors == 1 { "" } else { "s" };
            out.push_str(&format!("{errors} error{s} in the gateway spec\n"));
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for Diagnostics {}
