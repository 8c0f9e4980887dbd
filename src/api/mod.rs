//! What the HTTP listeners and the CLI agree on: the error shape
//! ([`error`]) and extractors whose rejections keep that shape
//! ([`extract`]).

pub mod error;
pub mod extract;

pub use error::{ApiError, ErrorBody};
