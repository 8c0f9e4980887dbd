//! What the HTTP listeners and the CLI agree on: the error shape
//! ([`error`]), extractors whose rejections keep that shape ([`extract`]),
//! and the admin API's answers as records ([`types`]): the handlers
//! serialize them and the operator commands deserialize them, so a renamed
//! field breaks the build, not a command at runtime.

pub mod error;
pub mod extract;
pub mod json;
pub mod types;

pub use error::{ApiError, ErrorBody};
