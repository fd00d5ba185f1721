//! Where credentials come from: the environment (read once, or given by
//! tests), a variable holding comma-separated secrets, or the file a
//! `VAR_FILE` variable names; and errors that name the variable without
//! ever printing a secret.

use std::collections::HashMap;
use std::fmt;

/// The environment a process starts in. Tests pass their own.
#[derive(Debug, Clone, Default)]
pub struct StartupEnv {
    vars: HashMap<String, String>,
}

impl StartupEnv {
    /// The process environment.
    pub fn from_process() -> Self {
        StartupEnv {
            vars: std::env::vars().collect(),
        }
    }

    /// An environment from pairs (for tests and tools).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        StartupEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Sets `name` to `value` unless it already has a non-empty value (as
    /// `${NAME:-value}` does in `dev.env`). Returns whether it set it.
    pub fn set_default(&mut self, name: &str, value: impl Into<String>) -> bool {
        if self.get(name).is_some() {
            return false;
        }
        self.vars.insert(name.to_owned(), value.into());
        true
    }

    /// Sets `name` to `value`, whatever it held.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.insert(name.to_owned(), value.into());
    }

    /// Every variable and its value, empty ones included, in no order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The secrets in a variable: comma-separated, so keys rotate without
/// downtime (old and new are both accepted until the old one is removed).
pub fn secrets(value: &str) -> Vec<Vec<u8>> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.as_bytes().to_vec())
        .collect()
}

/// Why a credential or setting from the environment cannot be used. The
/// gateway turns each into its `StartupError` of the same name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// A variable holding a secret is unset or empty. The variable is
    /// shown through [`VarName`]: a configured "name" that is really a
    /// pasted secret is never printed in full.
    MissingSecret {
        /// The variable.
        var: String,
        /// What it should hold.
        what: String,
    },
    /// A key file is unreadable or malformed.
    BadKey {
        /// The variable naming the file.
        var: String,
        /// What is wrong.
        why: String,
    },
    /// A setting is not acceptable.
    Config {
        /// The variable or spec field.
        var: String,
        /// What is wrong.
        why: String,
    },
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::MissingSecret { var, what } => {
                write!(f, "{}: {what} is not set", VarName(var))
            }
            EnvError::BadKey { var, why } => write!(f, "{}: {why}", VarName(var)),
            EnvError::Config { var, why } => write!(f, "{var}: {why}"),
        }
    }
}

impl std::error::Error for EnvError {}

/// Whether `name` reads as an environment variable name, so that printing
/// it cannot leak a secret: upper-case letters, digits and `_`, not
/// starting with a digit (the spec compiler's rule), and word-like. A part
/// between underscores that switches between letters and digits more than
/// twice (`S3CR3TVALUE123`) or runs longer than 24 characters
/// (`AKIAIOSFODNN7EXAMPLEKEY0123`) is far more likely a value pasted where
/// its variable's name belongs than a name anyone chose.
pub fn is_variable_name(name: &str) -> bool {
    let rule = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    rule && name.split('_').all(|part| {
        let switches = part
            .as_bytes()
            .windows(2)
            .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
            .count();
        switches <= 2 && part.len() <= 24
    })
}

/// Shows a configured variable name in messages and logs: in full when it
/// reads as a name ([`is_variable_name`]), else only its first two
/// characters and its length, since it is most likely a secret pasted
/// where the name belongs. `A (or A_FILE)` shows each name by this rule.
#[derive(Debug, Clone, Copy)]
pub struct VarName<'a>(pub &'a str);

impl fmt::Display for VarName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |f: &mut fmt::Formatter<'_>, name: &str| {
            if is_variable_name(name) {
                f.write_str(name)
            } else {
                let head: String = name.chars().take(2).collect();
                write!(
                    f,
                    "`{head}…` ({} characters, not a variable name: a value where a name belongs?)",
                    name.chars().count()
                )
            }
        };
        match self.0.strip_suffix(')').and_then(|s| s.split_once(" (or ")) {
            Some((a, b)) => {
                show(f, a)?;
                f.write_str(" (or ")?;
                show(f, b)?;
                f.write_str(")")
            }
            None => show(f, self.0),
        }
    }
}

/// The text of a secret from `var`, else from the file named by
/// `var_FILE` (trimmed).
///
/// # Errors
/// Neither is set ([`EnvError::MissingSecret`], `what` saying what it
/// should hold), or the file cannot be read.
pub fn secret_text(env: &StartupEnv, var: &str, what: &str) -> Result<String, EnvError> {
    let file_var = format!("{var}_FILE");
    match (env.get(var), env.get(&file_var)) {
        (Some(v), _) => Ok(v.to_owned()),
        (None, Some(path)) => read_file(&file_var, path).map(|t| t.trim().to_owned()),
        (None, None) => Err(EnvError::MissingSecret {
            var: format!("{var} (or {file_var})"),
            what: what.to_owned(),
        }),
    }
}

/// The text of a credential file; the error names `var`, the variable
/// naming the file.
pub(crate) fn read_file(var: &str, path: &str) -> Result<String, EnvError> {
    std::fs::read_to_string(path).map_err(|e| EnvError::BadKey {
        var: var.to_owned(),
        why: format!("cannot read `{path}`: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_comma_separated_and_trimmed() {
        assert_eq!(
            secrets(" a, b ,,c "),
            [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(secrets(" , ").is_empty());
    }

    #[test]
    fn a_secret_comes_from_the_variable_else_its_file() {
        let dir = std::env::temp_dir().join(format!("gw-svc-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        let path = path.to_str().unwrap();
        let both = StartupEnv::from_pairs([("S", "from-var"), ("S_FILE", path)]);
        assert_eq!(secret_text(&both, "S", "x").unwrap(), "from-var");
        let file = StartupEnv::from_pairs([("S_FILE", path)]);
        assert_eq!(secret_text(&file, "S", "x").unwrap(), "from-file");
        let e = secret_text(&StartupEnv::default(), "S", "the secret").unwrap_err();
        assert_eq!(e.to_string(), "S (or S_FILE): the secret is not set");
        let gone = StartupEnv::from_pairs([("S_FILE", "/nonexistent/gw-svc")]);
        let e = secret_text(&gone, "S", "x").unwrap_err().to_string();
        assert!(
            e.starts_with("S_FILE: cannot read `/nonexistent/gw-svc`"),
            "{e}"
        );
    }

    #[test]
    fn a_pasted_secret_is_never_printed_as_a_variable_name() {
        let e = EnvError::MissingSecret {
            var: "S3CR3TVALUE123".into(),
            what: "a key".into(),
        };
        let shown = e.to_string();
        assert!(!shown.contains("S3CR3TVALUE123"), "{shown}");
        assert!(shown.starts_with("`S3…` (14 characters"), "{shown}");
    }
}
