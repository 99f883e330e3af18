//! The clone stream's wire format: the backup tool's bytes in data frames,
//! then one end frame saying whether the backup succeeded. The verdict comes
//! after the data, so a receiver can never mistake a truncated or failed
//! stream for a good one: no end frame, or an end frame that says failure or
//! disagrees with the byte count, and the copy is rejected.
//!
//! Frame: one tag byte (`D` data, `E` end), a big-endian u32 length, payload.
//! The end frame's payload is a JSON [`Trailer`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

const TAG_DATA: u8 = b'D';
const TAG_END: u8 = b'E';
const HEADER_LEN: usize = 5;
/// Frames larger than this are refused: a corrupt length must not make the
/// receiver buffer gigabytes.
pub const MAX_FRAME: usize = 16 << 20;

/// The verdict sent after the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trailer {
    /// The backup tool exited successfully.
    pub ok: bool,
    /// Data bytes sent before this trailer.
    pub bytes: u64,
    /// Why the backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why a stream was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The stream ended before the end frame.
    #[error("failed to receive the clone: stream cut after {0} bytes, before the donor's verdict")]
    Truncated(u64),
    /// The donor said the backup failed.
    #[error("failed to receive the clone: donor's backup failed: {0}")]
    DonorFailed(String),
    /// The donor's count and ours differ.
    #[error("failed to receive the clone: donor sent {sent} bytes, received {received}")]
    LengthMismatch {
        /// What the donor says it sent.
        sent: u64,
        /// What arrived.
        received: u64,
    },
    /// Not a frame we know.
    #[error("failed to decode the clone stream: {0}")]
    Malformed(String),
}

/// Encodes a data frame.
pub fn data_frame(payload: &[u8]) -> Bytes {
    frame(TAG_DATA, payload)
}

/// The header of a data frame of `len` bytes; send the payload after it as
/// is, so large payloads are never copied into a frame buffer.
pub fn data_header(len: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN);
    buf.put_u8(TAG_DATA);
    buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    buf.freeze()
}

/// Encodes the end frame.
pub fn end_frame(trailer: &Trailer) -> Bytes {
    // Serialising a struct of plain fields cannot fail.
    let json = serde_json::to_vec(trailer).unwrap_or_default();
    frame(TAG_END, &json)
}

fn frame(tag: u8, payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
    buf.put_u8(tag);
    buf.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    buf.put_slice(payload);
    buf.freeze()
}

/// What the decoder found in the bytes fed so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// Backup bytes to hand to the extractor.
    Data(Bytes),
    /// The donor's verdict agreed with what arrived: the copy is complete.
    Complete(u64),
}

/// Incremental decoder: feed it network chunks, take out items.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    received: u64,
    done: bool,
}

impl Decoder {
    /// Adds bytes from the network.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete item, `Ok(None)` when more bytes are needed.
    pub fn next_item(&mut self) -> Result<Option<Item>, Error> {
        if self.done {
            return if self.buf.is_empty() {
                Ok(None)
            } else {
                Err(Error::Malformed("bytes after the end frame".to_owned()))
            };
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME {
            return Err(Error::Malformed(format!("frame of {len} bytes")));
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(len).freeze();
        match tag {
            TAG_DATA => {
                self.received += payload.len() as u64;
                Ok(Some(Item::Data(payload)))
            }
            TAG_END => {
                self.done = true;
                let trailer: Trailer = serde_json::from_slice(&payload)
                    .map_err(|e| Error::Malformed(format!("end frame: {e}")))?;
                if !trailer.ok {
                    return Err(Error::DonorFailed(
                        trailer
                            .error
                            .unwrap_or_else(|| "no reason given".to_owned()),
                    ));
                }
                if trailer.bytes != self.received {
                    return Err(Error::LengthMismatch {
                        sent: trailer.bytes,
                        received: self.received,
                    });
                }
                Ok(Some(Item::Complete(self.received)))
            }
            other => Err(Error::Malformed(format!("unknown frame tag {other:#04x}"))),
        }
    }

    /// Call when the connection ends: an error unless the end frame arrived.
    pub fn finish(&self) -> Result<u64, Error> {
        if self.done {
            Ok(self.received)
        } else {
            Err(Error::Truncated(self.received))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(stream: &[u8], chunk: usize) -> (Vec<u8>, Result<u64, Error>) {
        let mut decoder = Decoder::default();
        let mut data = Vec::new();
        for piece in stream.chunks(chunk.max(1)) {
            decoder.feed(piece);
            loop {
                match decoder.next_item() {
                    Ok(Some(Item::Data(bytes))) => data.extend_from_slice(&bytes),
                    Ok(Some(Item::Complete(_))) => {}
                    Ok(None) => break,
                    Err(e) => return (data, Err(e)),
                }
            }
        }
        let result = decoder.finish();
        (data, result)
    }

    #[test]
    fn header_then_payload_is_a_data_frame() {
        let mut split = data_header(5).to_vec();
        split.extend_from_slice(b"hello");
        assert_eq!(split, data_frame(b"hello").to_vec());
    }

    fn good_stream() -> Vec<u8> {
        let mut s = Vec::new();
        s.extend_from_slice(&data_frame(b"hello "));
        s.extend_from_slice(&data_frame(b"world"));
        s.extend_from_slice(&end_frame(&Trailer {
            ok: true,
            bytes: 11,
            error: None,
        }));
        s
    }

    #[test]
    fn complete_stream_is_accepted_whatever_the_chunking() {
        let stream = good_stream();
        for chunk in [1, 2, 3, 7, 64] {
            let (data, result) = decode_all(&stream, chunk);
            assert_eq!(data, b"hello world");
            assert_eq!(result, Ok(11), "chunk {chunk}");
        }
    }

    #[test]
    fn stream_cut_anywhere_before_the_trailer_is_truncated() {
        let stream = good_stream();
        let end_starts = stream.len()
            - end_frame(&Trailer {
                ok: true,
                bytes: 11,
                error: None,
            })
            .len();
        for cut in 0..stream.len() {
            let (_, result) = decode_all(&stream[..cut], 4);
            assert!(
                matches!(result, Err(Error::Truncated(_))),
                "cut at {cut} (end frame at {end_starts}): {result:?}"
            );
        }
    }

    #[test]
    fn failed_backup_verdict_is_rejected() {
        let mut s = data_frame(b"partial").to_vec();
        s.extend_from_slice(&end_frame(&Trailer {
            ok: false,
            bytes: 7,
            error: Some("disk error".to_owned()),
        }));
        let (_, result) = decode_all(&s, 100);
        assert_eq!(result, Err(Error::DonorFailed("disk error".to_owned())));
    }

    #[test]
    fn byte_count_mismatch_is_rejected() {
        let mut s = data_frame(b"abc").to_vec();
        s.extend_from_slice(&end_frame(&Trailer {
            ok: true,
            bytes: 4,
            error: None,
        }));
        assert_eq!(
            decode_all(&s, 100).1,
            Err(Error::LengthMismatch {
                sent: 4,
                received: 3
            })
        );
    }

    #[test]
    fn garbage_and_oversized_frames_are_malformed() {
        assert!(matches!(
            decode_all(b"Xaaaaaaaa", 100).1,
            Err(Error::Malformed(_))
        ));
        let mut huge = vec![TAG_DATA];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode_all(&huge, 100).1, Err(Error::Malformed(_))));
    }
}
