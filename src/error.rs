//! The core's error: what went wrong with a call, in terms a transport can map to its own
//! status codes without guessing.

use crate::domain::Refusal;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: `field` names what, `problem` says why.
    #[error("{field}: {problem}")]
    InvalidArgument { field: String, problem: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The order is well formed, but its segment's rules and the stock there is allow no
    /// plan: which rule refused it and why, as data (boxed, as it is much the largest).
    #[error("{0}")]
    Refused(Box<Refusal>),
    /// The request is well formed but the state of things refuses it (an expired hold, a
    /// released reservation).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Concurrent requests kept taking the stock a plan needed; retrying may succeed.
    #[error("{0}")]
    Aborted(String),
    /// A position past what is kept (an event cursor older than the log's retention).
    #[error("{0}")]
    OutOfRange(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        Error::Refused(Box::new(r))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Error::NotFound(e.to_string()),
            StoreError::InvalidState { .. } => Error::FailedPrecondition(e.to_string()),
            StoreError::UnknownLine { .. } => Error::invalid("line_ids", e.to_string()),
            StoreError::Unavailable(_) | StoreError::InFlight(_) => {
                Error::Unavailable(e.to_string())
            }
            StoreError::Corrupt(_) => Error::Internal(e.to_string()),
            StoreError::Cursor(c @ crate::events::CursorError::Trimmed { .. }) => {
                Error::OutOfRange(c.to_string())
            }
            StoreError::Cursor(c @ crate::events::CursorError::Future { .. }) => {
                Error::InvalidArgument {
                    field: "after".into(),
                    problem: c.to_string().trim_start_matches("after: ").to_owned(),
                }
            }
        }
    }
}
