//! Errors of the numerical core. The Python binding maps them to exceptions.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The caller asked the computation to stop (Ctrl-C in Python).
    Cancelled,
    /// Arguments that do not describe a valid problem (shapes, depth, parameters).
    Invalid(String),
    /// A buffer the computation needs cannot be allocated.
    Memory(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled => write!(f, "computation cancelled"),
            Error::Invalid(msg) | Error::Memory(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Invalid(msg.into()))
}
