//! The mesh backend's wire format: length-prefixed frames over TCP.
//!
//! Each frame is a big-endian `u32` length followed by a postcard-encoded [`Frame`]. The
//! first two frames each side sends on a connection are the handshake ([`super::auth`]):
//! `Hello` with a challenge, then `Auth` with the proof of the run token and its version
//! vector. After them: `Records` (pushed), `Repair` (a catch-up or a graft's answer), and
//! the dissemination's control frames, `IHave`, `Graft` and `Prune` ([`super::gossip`]).
//! The writer of a link batches the records queued for it into one `Records` frame.

use super::auth::{Nonce, Proof};
use super::store::Record;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The wire protocol version, checked in `Hello`.
pub const WIRE_VERSION: u32 = 3;
/// Frames larger than this are refused (a corrupt or hostile length).
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Hello {
        wire_version: u32,
        run_id: String,
        /// The sender's index in the plan.
        from: u32,
        /// The sender's challenge to the other side.
        nonce: Nonce,
    },
    /// The sender's answer to the other's challenge, and what it holds.
    Auth {
        proof: Proof,
        /// The sender's version vector, by origin index.
        versions: Vec<u64>,
    },
    /// Records pushed as they came.
    Records(Vec<Record>),
    /// Records sent to catch a link up (on connect, or for a graft): their duplicates
    /// prune nothing.
    Repair(Vec<Record>),
    /// Per origin, the highest sequence the sender newly holds (to a lazy link).
    IHave(Vec<(u32, u64)>),
    /// Send what you hold of `origin` after `after`, and push to me again.
    Graft { origin: u32, after: u64 },
    /// Stop pushing `origin`'s records to me: the link is lazy for it.
    Prune { origin: u32 },
}

/// Encodes a frame with its length prefix.
pub fn encode(frame: &Frame) -> Bytes {
    let body = postcard::to_stdvec(frame).expect("frames serialize");
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// Reads one frame; returns it and the bytes it took on the wire, or `None` at a clean EOF.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(Frame, usize)>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME} limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(Some((decode(&body)?, len + 4)))
}

/// Decodes a frame's body (what follows its length prefix).
pub fn decode(body: &[u8]) -> std::io::Result<Frame> {
    postcard::from_bytes(body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let frames = vec![
            Frame::Hello {
                wire_version: WIRE_VERSION,
                run_id: "r".into(),
                from: 3,
                nonce: [7; 16],
            },
            Frame::Auth {
                proof: [9; 32],
                versions: vec![1, 2, 3],
            },
            Frame::Records(vec![Record {
                origin: 1,
                seq: 9,
                written_at_us: 123,
                payload: Bytes::from_static(b"hello"),
            }]),
            Frame::Repair(Vec::new()),
            Frame::IHave(vec![(1, 9), (4, 2)]),
            Frame::Graft {
                origin: 1,
                after: 3,
            },
            Frame::Prune { origin: 4 },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&encode(f));
        }
        let mut r = wire.as_slice();
        for f in &frames {
            let (got, n) = read(&mut r).await.unwrap().unwrap();
            assert_eq!(&got, f);
            assert_eq!(n, encode(f).len());
        }
        assert!(read(&mut r).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_oversized_frames() {
        let wire = (MAX_FRAME as u32 + 1).to_be_bytes();
        let err = read(&mut wire.as_slice()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
