//! The load generator's error type: every way a subcommand can fail before or around a run.
//!
//! Failures *of invocations* during a run are not errors: they are counted in the report
//! (`stats.rs`). An error here means the run could not be set up or its result not written.

use std::path::PathBuf;

use shardhost::auth::antiforgery::AuthError;
use shardhost::auth::claims::ClaimsError;

#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("invalid {flag}: {reason}")]
    Arg { flag: &'static str, reason: String },
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("NATS {what} failed: {reason}")]
    Nats { what: String, reason: String },
    #[error("cannot sign invocations: {0}")]
    SignInvocation(#[from] AuthError),
    #[error("cannot sign the actor: {0}")]
    SignActor(#[from] ClaimsError),
    #[error("cannot compile the echo actor's WAT: {0}")]
    Wat(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot read CPU time from {path}: {reason}")]
    ProcStat { path: String, reason: String },
    #[error("no host answered {subject} within {wait_ms} ms")]
    NoHost { subject: String, wait_ms: u64 },
    #[error("the host refused the request: {0}")]
    Refused(String),
    #[error("the actor did not start: {0}")]
    StartFailed(String),
    #[error("timed out after {wait_ms} ms waiting for {what}")]
    Timeout { what: String, wait_ms: u64 },
    #[error("unexpected reply to {what}: {reason}")]
    BadReply { what: String, reason: String },
    #[error("cannot create a latency histogram: {0}")]
    Histogram(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl LoadtestError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LoadtestError::Io {
            path: path.into(),
            source,
        }
    }

    pub fn nats(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        LoadtestError::Nats {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
