//! The `[auth.audit]` table: one JSON line per tool call, resource read and prompt get, to a file of
//! its own or (without `file`) into the log; the servers whose call arguments are written.
//! Validated here into [`AuditSettings`]; `http::audit` writes the lines.

use std::path::PathBuf;

use serde::Deserialize;

/// The `[auth.audit]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditModel {
    /// A file the lines are appended to (its directory must exist).
    pub file: Option<PathBuf>,
    /// Servers whose tool and prompt arguments are written (`*` for all; default none).
    #[serde(default)]
    pub arguments: Vec<String>,
}

/// `[auth.audit]` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub file: Option<PathBuf>,
    pub arguments: Vec<String>,
}

impl AuditModel {
    /// `Err((key, reason))` names what is wrong.
    pub(crate) fn validate(self, servers: &[&str]) -> Result<AuditSettings, (String, String)> {
        for s in &self.arguments {
            if s != "*" && !servers.contains(&s.as_str()) {
                return Err(("auth.audit.arguments".into(), format!("no server named `{s}`")));
            }
        }
        if let Some(f) = &self.file {
            let dir = f.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                return Err(("auth.audit.file".into(), format!("{}: no such directory", dir.display())));
            }
        }
        Ok(AuditSettings { file: self.file, arguments: self.arguments })
    }
}

impl AuditSettings {
    /// Whether a call's arguments on `server` are written.
    pub fn arguments_for(&self, server: &str) -> bool {
        self.arguments.iter().any(|s| s == "*" || s == server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_validated() {
        let m: AuditModel = toml::from_str("arguments = [\"echo\"]").unwrap();
        let s = m.validate(&["echo", "other"]).unwrap();
        assert!(s.arguments_for("echo") && !s.arguments_for("other"));
        let m: AuditModel = toml::from_str("arguments = [\"nope\"]").unwrap();
        assert_eq!(m.validate(&["echo"]).err().map(|e| e.0).as_deref(), Some("auth.audit.arguments"));
        let m: AuditModel = toml::from_str("file = \"/nonexistent/dir/audit.jsonl\"").unwrap();
        assert_eq!(m.validate(&[]).err().map(|e| e.0).as_deref(), Some("auth.audit.file"));
    }
}
