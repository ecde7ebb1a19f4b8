//! HTTP/1.1 proxy path.
pub mod codec;
