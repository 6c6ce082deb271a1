//! How a long operator command ends: as text, or with `--json` as exactly one JSON object on
//! standard output (`{"command", "ok", "seconds", …counts, "error": {"code", "message"}}`) and
//! nothing else there. Either way the exit status is the same and an error is printed once.

use std::fmt::Display;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Map, Value};

/// How a command that ran to its end came out.
pub enum Verdict {
    /// Everything checked out or was done (exit 0).
    Done,
    /// It ran, and found something an operator must act on (tampering: 3; unverifiable: 4).
    Failed { status: u8, code: &'static str, message: String },
}

/// A refusal of the operator's input, with a stable code for `--json` (the message names the
/// flag).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: &'static str,
    pub message: String,
}

impl Refused {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { code: "not_found", message: message.into() }
    }
}

/// What one command reports, gathered as it runs and printed once at the end.
pub struct Summary {
    command: &'static str,
    json: bool,
    started: Instant,
    fields: Map<String, Value>,
}

impl Summary {
    pub fn new(command: &'static str, json: bool) -> Self {
        Self { command, json, started: Instant::now(), fields: Map::new() }
    }

    /// A count or name for the JSON object.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.fields.insert(key.to_owned(), value.into());
    }

    /// A line of the text outcome on standard output (the JSON object replaces it with `--json`).
    pub fn say(&self, line: impl Display) {
        if !self.json {
            println!("{line}");
        }
    }

    /// A line of the text outcome on standard error (as [`Summary::say`]).
    pub fn tell(&self, line: impl Display) {
        if !self.json {
            eprintln!("{line}");
        }
    }

    /// Prints the outcome and gives the exit status. Without `--json` an error is handed back
    /// for `main` to print (once); with it, the error is the JSON object's and is not printed
    /// again.
    ///
    /// # Errors
    /// The command's error, without `--json`.
    pub fn finish(self, outcome: anyhow::Result<Verdict>) -> anyhow::Result<ExitCode> {
        let seconds = (self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        let (status, error) = match outcome {
            Ok(Verdict::Done) => (0, None),
            Ok(Verdict::Failed { status, code, message }) => {
                if !self.json {
                    eprintln!("{message}");
                }
                (status, Some((code, message)))
            }
            Err(e) if !self.json => return Err(e),
            Err(e) => (1, Some((error_code(&e), format!("{e:#}")))),
        };
        if self.json {
            let mut out = Map::new();
            out.insert("command".into(), self.command.into());
            out.insert("ok".into(), (status == 0).into());
            out.insert("exit_status".into(), status.into());
            out.insert("seconds".into(), seconds.into());
            out.extend(self.fields);
            if let Some((code, message)) = error {
                out.insert("error".into(), serde_json::json!({"code": code, "message": message}));
            }
            println!("{}", Value::Object(out));
        }
        Ok(ExitCode::from(status))
    }
}

/// A stable code for an error, from the first cause in its chain that has one.
pub fn error_code(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(r) = cause.downcast_ref::<Refused>() {
            return r.code;
        }
        if let Some(a) = cause.downcast_ref::<audit::AuditError>() {
            return match a {
                audit::AuditError::Invalid { .. } => "invalid_argument",
                audit::AuditError::NotFound => "not_found",
                audit::AuditError::Key(_) => "key",
                audit::AuditError::Io(_) => "io",
                audit::AuditError::Malformed(_) => "malformed_ledger",
                audit::AuditError::Store(s) => store_code(s),
            };
        }
        if let Some(i) = cause.downcast_ref::<identity::IdentityError>() {
            match i {
                identity::IdentityError::Invalid { .. } => return "invalid_argument",
                identity::IdentityError::NotFound => return "not_found",
                identity::IdentityError::Duplicate(_) => return "conflict",
                identity::IdentityError::Store(s) => return store_code(s),
                // The cause below says more.
                identity::IdentityError::Audit(_) => {}
                _ => return "refused",
            }
        }
        if let Some(f) = cause.downcast_ref::<files::FilesError>() {
            match f {
                files::FilesError::Invalid { .. } => return "invalid_argument",
                files::FilesError::NotFound => return "not_found",
                files::FilesError::Key(_) => return "key",
                files::FilesError::Storage(_) => return "storage",
                files::FilesError::Integrity(_) => return "integrity",
                files::FilesError::Store(s) => return store_code(s),
                files::FilesError::Database(_) => return "database",
                files::FilesError::Audit(_) => {}
                _ => return "refused",
            }
        }
        if let Some(s) = cause.downcast_ref::<store::StoreError>() {
            return store_code(s);
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return "io";
        }
    }
    "failed"
}

fn store_code(e: &store::StoreError) -> &'static str {
    use store::StoreError as S;
    match e {
        S::Embedded(_) => "embedded_postgres",
        S::Migration(_) => "migration",
        S::Config(_) => "configuration",
        S::BypassRefused(_) => "bypass_refused",
        S::NotFound => "not_found",
        S::Conflict { .. } => "conflict",
        _ => "database",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_coded_by_the_first_cause_that_has_a_code() {
        let refused = anyhow::Error::new(Refused::not_found("--tenant x: no such organisation"));
        assert_eq!(error_code(&refused), "not_found");
        let wrapped = anyhow::Error::new(audit::AuditError::NotFound).context("--tenant");
        assert_eq!(error_code(&wrapped), "not_found");
        let io = anyhow::Error::new(std::io::Error::other("disk")).context("--out x");
        assert_eq!(error_code(&io), "io");
        assert_eq!(error_code(&anyhow::anyhow!("anything else")), "failed");
    }
}
