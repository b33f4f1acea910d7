//! Errors of LwM2M operations, each with its response code (spec 8.5).

use crate::coap::message::codes;
use crate::codec::CodecError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
    #[error("unsupported content format {0}")]
    UnsupportedFormat(u16),
    #[error("bad option {0}")]
    BadOption(u16),
    #[error("request entity incomplete")]
    Incomplete,
    #[error("request entity too large")]
    TooLarge,
    #[error("internal error: {0}")]
    Internal(String),
    /// An end device that cannot be reached now (its bridge says why).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// An end device refused or failed an operation.
    #[error("{0}")]
    DeviceFailed(String),
}

impl OpError {
    pub fn code(&self) -> u8 {
        match self {
            OpError::BadRequest(_) => codes::BAD_REQUEST,
            OpError::Unauthorized => codes::UNAUTHORIZED,
            OpError::NotFound => codes::NOT_FOUND,
            OpError::MethodNotAllowed => codes::METHOD_NOT_ALLOWED,
            OpError::NotAcceptable(_) => codes::NOT_ACCEPTABLE,
            OpError::UnsupportedFormat(_) => codes::UNSUPPORTED_CONTENT_FORMAT,
            OpError::BadOption(_) => codes::BAD_OPTION,
            OpError::Incomplete => codes::REQUEST_ENTITY_INCOMPLETE,
            OpError::TooLarge => codes::REQUEST_ENTITY_TOO_LARGE,
            OpError::Internal(_) | OpError::DeviceFailed(_) => codes::INTERNAL_SERVER_ERROR,
            OpError::Unavailable(_) => codes::SERVICE_UNAVAILABLE,
        }
    }

    /// For a write: a payload that does not decode or fit is 4.00.
    pub fn from_decode(e: CodecError) -> Self {
        match e {
            CodecError::Malformed(m) => OpError::BadRequest(m),
            CodecError::Unsupported(m) => OpError::BadRequest(m),
        }
    }

    /// For a read: content the requested format cannot carry is 4.06.
    pub fn from_encode(e: CodecError) -> Self {
        match e {
            CodecError::Unsupported(m) => OpError::NotAcceptable(m),
            CodecError::Malformed(m) => OpError::Internal(m),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;
