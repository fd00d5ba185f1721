//! The revocation deny-list: token ids (`jti`) and subjects that are
//! refused even with a valid signature. Read at start-up and on SIGHUP;
//! requests read it without taking a lock.
//!
//! File format, one entry per line:
//!
//! ```text
//! # comments and blank lines are ignored
//! jti:5f0c2a7e-...        a token id
//! sub:alice               every token of a subject
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::StartupError;

#[derive(Debug, Default)]
struct Lists {
    jti: HashSet<String>,
    sub: HashSet<String>,
}

/// The current deny-list and the file it comes from.
#[derive(Debug)]
pub struct Revocations {
    path: &'static str,
    lists: ArcSwap<Lists>,
}

fn parse(path: &str, text: &str) -> Result<Lists, StartupError> {
    let mut lists = Lists::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some(("jti", v)) if !v.trim().is_empty() => {
                lists.jti.insert(v.trim().to_owned());
            }
            Some(("sub", v)) if !v.trim().is_empty() => {
                lists.sub.insert(v.trim().to_owned());
            }
            _ => {
                return Err(StartupError::Revocation {
                    path: path.to_owned(),
                    why: format!("line {}: expected `jti:<id>` or `sub:<subject>`", n + 1),
                })
            }
        }
    }
    Ok(lists)
}

fn read(path: &str) -> Result<Lists, StartupError> {
    let text = std::fs::read_to_string(path).map_err(|e| StartupError::Revocation {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    parse(path, &text)
}

impl Revocations {
    /// Reads the list.
    ///
    /// # Errors
    /// The file cannot be read or has a malformed line.
    pub fn load(path: &'static str) -> Result<Self, StartupError> {
        Ok(Revocations {
            path,
            lists: ArcSwap::from_pointee(read(path)?),
        })
    }

    /// Re-reads the list; on error the previous one stays in force.
    ///
    /// # Errors
    /// As [`Revocations::load`].
    pub fn reload(&self) -> Result<(), StartupError> {
        let lists = read(self.path)?;
        tracing::info!(
            target: "security",
            path = self.path,
            jti = lists.jti.len(),
            subjects = lists.sub.len(),
            "revocation list reloaded"
        );
        self.lists.store(Arc::new(lists));
        Ok(())
    }

    /// Whether a token with this id and subject is revoked.
    pub fn is_revoked(&self, jti: Option<&str>, subject: &str) -> bool {
        let lists = self.lists.load();
        jti.is_some_and(|j| lists.jti.contains(j)) || lists.sub.contains(subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_subjects() {
        let l = parse("r", "# x\n\njti:abc\nsub: alice \n").unwrap();
        assert!(l.jti.contains("abc") && l.sub.contains("alice"));
        let e = parse("r", "jti:abc\nbogus\n").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
