//! Relaying a chunked upstream answer to an HTTP/1.0 client: only the data (shown to `seen`),
//! then close.

use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::body::{BodyError, STREAM_CHUNK};
use super::codec::ChunkedDecoder;
use crate::buf::ReadBuf;

pub async fn relay<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    rb: &mut ReadBuf,
    dst: &mut W,
    seen: &mut impl FnMut(&[u8]),
) -> Result<(), BodyError> {
    let mut dec = ChunkedDecoder::decoding();
    loop {
        if rb.is_empty() {
            match rb.fill(src, STREAM_CHUNK).await {
                Ok(0) => return Err(BodyError::Source(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(e) => return Err(BodyError::Source(e)),
            }
        }
        let progress = dec.feed(rb.data()).map_err(BodyError::Framing)?;
        // The data span is the tail of the consumed bytes: skip the framing before it.
        match progress.data {
            Some(span) => {
                seen(&rb.data()[span.clone()]);
                rb.consume(span.start);
                rb.write_to(dst, span.len()).await.map_err(BodyError::Sink)?;
            }
            None => rb.consume(progress.consumed),
        }
        if progress.done {
            return Ok(());
        }
    }
}
