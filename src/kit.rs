//! The part of the gateway that tools built beside it use (`strait-bench`, the load generator
//! and backend): listening sockets, the I/O driver choice and runtimes, the verifier behind
//! `-k`, and the HTTP/1.1 pieces its backend reads requests with. One place, so that the
//! gateway's modules can move without the tools reaching into them.

pub use crate::buf::ReadBuf;
pub use crate::control::listen;
pub use crate::http::codec::ChunkedDecoder;
pub use crate::snapshot::SkipVerify;
pub use crate::worker::driver::{self, Driver, DriverChoice};
