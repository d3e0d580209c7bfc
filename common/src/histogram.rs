//! Latency histograms that merge exactly across peers.
//!
//! Each peer records every received record's latency (microseconds) into an HDR histogram
//! (3 significant digits, 1 µs to 1 h). The report carries the histogram serialized in the
//! HdrHistogram V2 format, deflated and base64-encoded, so the launcher can add the
//! histograms of all peers and compute exact merged percentiles, rather than averaging
//! per-peer percentiles (which is wrong). The many small per-window histograms (1
//! significant digit, [`LatencyHistogram::coarse`]) are V2 without deflate: deflate does
//! not make them smaller, and a compressor costs far more than the encoding (measured:
//! 118 µs against 0.5 µs a histogram, most of a peer's checkpoint). Both are standard V2
//! and decode alike.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency tracked: one hour. Larger values are clamped to it.
pub const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// A latency histogram in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

/// Percentiles of a histogram, as they appear in reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// Why a serialized histogram could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot decode latency histogram: {0}")]
pub struct DecodeError(String);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        LatencyHistogram {
            inner: Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    /// A histogram with 1 significant digit (values within about 6%): a few KiB instead
    /// of about 180 KiB, for the many per-window histograms. It encodes, decodes and
    /// merges like any other.
    pub fn coarse() -> Self {
        LatencyHistogram {
            inner: Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 1)
                .expect("static histogram bounds are valid"),
        }
    }

    /// An empty histogram of the same precision as this one (a coarse one stays a few
    /// KiB; a full one is about 180 KiB, so making full ones per window is what costs).
    pub fn empty_like(&self) -> Self {
        LatencyHistogram {
            inner: Histogram::new_from(&self.inner),
        }
    }

    /// Records one latency; 0 is recorded as 1 µs and values above an hour as an hour.
    pub fn record(&mut self, micros: u64) {
        self.inner
            .saturating_record(micros.clamp(1, MAX_TRACKABLE_US));
    }

    /// Adds every value of `other` (exact when `other` is no finer than this one).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both have cmesh's bounds (`decode` takes no others), so adding cannot fail.
        self.inner
            .add(&other.inner)
            .expect("histograms with equal bounds add");
    }

    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// Records `count` samples of one latency (clamped like [`LatencyHistogram::record`]).
    pub fn record_n(&mut self, micros: u64, count: u64) {
        self.inner
            .saturating_record_n(micros.clamp(1, MAX_TRACKABLE_US), count);
    }

    /// Every recorded value (the middle of its bucket) and its count.
    pub fn recorded(&self) -> Vec<(u64, u64)> {
        self.inner
            .iter_recorded()
            .map(|v| {
                (
                    self.inner.median_equivalent(v.value_iterated_to()),
                    v.count_at_value(),
                )
            })
            .collect()
    }

    /// The percentiles. An empty histogram gives all zeros.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.inner;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            mean_us: (h.mean() * 10.0).round() / 10.0,
        }
    }

    /// V2, deflated unless coarse, then base64: compact and exact.
    pub fn encode(&self) -> String {
        let mut plain = Vec::new();
        V2Serializer::new()
            .serialize(&self.inner, &mut plain)
            .expect("serializing into memory cannot fail");
        let bytes = if self.inner.sigfig() <= 1 {
            plain
        } else {
            deflated(&plain)
        };
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// Reads what [`encode`](Self::encode) wrote.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| DecodeError(format!("not base64: {e}")))?;
        // The deserializer sizes its buffer from the length the header claims: checked
        // here first, or a 4-byte header asks for gigabytes (found by fuzz/peer_report).
        check_claims(&bytes)?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| DecodeError(format!("{e:?}")))?;
        // Kept at its own precision (a coarse one is a few KiB, a full one about 180):
        // copying every window into a full histogram was most of analyze's time. Only
        // cmesh's bounds are taken, so that any two histograms add without failing.
        if decoded.low() != 1 || decoded.high() != MAX_TRACKABLE_US || decoded.sigfig() > 3 {
            return Err(DecodeError(format!(
                "bounds {}..{} µs with {} significant digits; cmesh writes 1..{MAX_TRACKABLE_US} with 1 to 3",
                decoded.low(),
                decoded.high(),
                decoded.sigfig()
            )));
        }
        Ok(LatencyHistogram { inner: decoded })
    }
}

/// The cookie of HdrHistogram's V2 format, as the `hdrhistogram` crate writes it.
const V2_COOKIE: u32 = 0x1c84_9303 | 0x10;
/// V2's header: cookie, payload length, normalizing offset, significant digits (4 bytes
/// each), lowest and highest trackable values and the conversion ratio (8 each).
const V2_HEADER: usize = 40;
/// The most counts bytes a histogram may claim: a full one of cmesh's (1 µs to an hour,
/// 3 digits) takes under 500 KiB in the worst case.
const MAX_PLAIN_BYTES: u64 = 1 << 20;

/// Checks that `bytes`' header claims no more than it can hold before the deserializer
/// sizes its buffer from it: a plain V2 histogram's payload must fit what follows its
/// header; a deflated one's compressed length must, and the plain histogram inside (its
/// first 8 bytes inflated to read) may claim at most [`MAX_PLAIN_BYTES`].
fn check_claims(bytes: &[u8]) -> Result<(), DecodeError> {
    let word = |b: &[u8], at: usize| -> Option<usize> {
        b.get(at..at + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
    };
    let (cookie, len) = (word(bytes, 0), word(bytes, 4).unwrap_or(usize::MAX));
    if cookie == Some(V2_COOKIE as usize) {
        if bytes.len() >= V2_HEADER && len <= bytes.len() - V2_HEADER {
            return Ok(());
        }
        return Err(DecodeError(format!(
            "its header claims {len} bytes of counts; {} follow it",
            bytes.len().saturating_sub(V2_HEADER)
        )));
    }
    if cookie != Some(V2_COMPRESSED_COOKIE as usize) {
        return Err(DecodeError("not a V2 histogram".into()));
    }
    let deflated = bytes.get(8..8usize.saturating_add(len)).ok_or_else(|| {
        DecodeError(format!(
            "its header claims {len} deflated bytes; {} follow it",
            bytes.len().saturating_sub(8)
        ))
    })?;
    let mut head = [0u8; 8];
    std::io::Read::read_exact(&mut flate2::read::ZlibDecoder::new(deflated), &mut head)
        .map_err(|e| DecodeError(format!("does not inflate: {e}")))?;
    match (word(&head, 0), word(&head, 4)) {
        (Some(c), Some(inner)) if c == V2_COOKIE as usize && inner as u64 <= MAX_PLAIN_BYTES => {
            Ok(())
        }
        (Some(c), Some(inner)) if c == V2_COOKIE as usize => Err(DecodeError(format!(
            "its header claims {inner} bytes of counts; a histogram of cmesh's holds at most {MAX_PLAIN_BYTES}"
        ))),
        _ => Err(DecodeError("not a V2 histogram inside".into())),
    }
}

/// The cookie of HdrHistogram's deflated V2 format (V2's with the compressed bit), which
/// the `hdrhistogram` crate keeps private; its deserializer reads what follows it.
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;

/// `plain` (a V2 histogram) in the deflated V2 format: the cookie, the compressed length,
/// then `plain` zlib-compressed. One compressor per thread, reset for each histogram: a
/// new one allocates and clears about 300 KiB, which cost 6x the compression itself.
fn deflated(plain: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress, Status};
    thread_local! {
        static DEFLATE: std::cell::RefCell<Compress> =
            std::cell::RefCell::new(Compress::new(Compression::default(), true));
    }
    let mut out = Vec::with_capacity(plain.len() / 2 + 64);
    out.extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    DEFLATE.with_borrow_mut(|c| {
        c.reset();
        loop {
            out.reserve(plain.len() / 2 + 64);
            let consumed = c.total_in() as usize;
            match c.compress_vec(&plain[consumed..], &mut out, FlushCompress::Finish) {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) => unreachable!("deflating into memory cannot fail: {e}"),
            }
        }
    });
    let len = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&len.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let mut h = LatencyHistogram::new();
        for v in [1u64, 5, 250, 1_000, 1_234, 99_999, 2_000_000, 5_000_000_000] {
            h.record(v);
        }
        let back = LatencyHistogram::decode(&h.encode()).unwrap();
        assert_eq!(back.summary(), h.summary());
        assert_eq!(back.count(), 8);
        assert_eq!(back.summary().max_us, h.summary().max_us);
        assert!(
            back.summary().max_us >= MAX_TRACKABLE_US,
            "clamped, not dropped"
        );
    }

    #[test]
    fn full_histograms_are_deflated_v2_and_coarse_ones_plain_v2() {
        use hdrhistogram::serialization::V2DeflateSerializer;
        let mut full = LatencyHistogram::new();
        let mut coarse = LatencyHistogram::coarse();
        for v in (1..5_000u64).map(|k| 50 + k * 397 % 2_000_000) {
            full.record(v);
            coarse.record(v);
        }
        let bytes = |h: &LatencyHistogram| {
            base64::engine::general_purpose::STANDARD
                .decode(h.encode())
                .unwrap()
        };
        // The deflated one starts as the crate's own deflate serializer's does.
        let mut reference = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&full.inner, &mut reference)
            .unwrap();
        assert_eq!(bytes(&full)[..4], reference[..4]);
        assert_eq!(bytes(&full).len(), reference.len(), "the same compression");
        let mut plain = Vec::new();
        V2Serializer::new()
            .serialize(&coarse.inner, &mut plain)
            .unwrap();
        assert_eq!(bytes(&coarse), plain);
        // Both read back exactly, again and again (the compressor is reused).
        for _ in 0..3 {
            assert_eq!(
                LatencyHistogram::decode(&full.encode()).unwrap().summary(),
                full.summary()
            );
            assert_eq!(
                LatencyHistogram::decode(&coarse.encode()).unwrap().count(),
                coarse.count()
            );
        }
    }

    #[test]
    fn a_header_that_claims_more_than_follows_is_refused_before_any_allocation() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut coarse = LatencyHistogram::coarse();
        coarse.record(250);
        let mut plain = base64::engine::general_purpose::STANDARD
            .decode(coarse.encode())
            .unwrap();
        // What fuzz/peer_report found: a payload length of 3.9 GB in a 60-byte histogram.
        plain[4..8].copy_from_slice(&0xEC00_0007u32.to_be_bytes());
        let err = LatencyHistogram::decode(&b64(&plain)).unwrap_err();
        assert!(err.0.contains("claims"), "{}", err.0);
        // The same inside a deflated one.
        let deflated = deflated(&plain);
        let err = LatencyHistogram::decode(&b64(&deflated)).unwrap_err();
        assert!(err.0.contains("claims"), "{}", err.0);
        // A deflated one whose length claims more than follows, and a zlib bomb.
        let mut short = deflated.clone();
        short[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(LatencyHistogram::decode(&b64(&short)).is_err());
        let mut huge = plain.clone();
        huge[4..8].copy_from_slice(&(4u32 << 20).to_be_bytes());
        huge.resize(40 + (4 << 20), 0);
        let err = LatencyHistogram::decode(&b64(&deflated_raw(&huge))).unwrap_err();
        assert!(err.0.contains("at most"), "{}", err.0);
        let err = LatencyHistogram::decode(&b64(&deflated_raw(&[0u8; 64]))).unwrap_err();
        assert!(err.0.contains("not a V2 histogram inside"), "{}", err.0);
        assert!(LatencyHistogram::decode(&b64(b"HIST")).is_err());
    }

    /// `bytes` zlib-compressed behind the deflated V2 cookie, whatever they are.
    fn deflated_raw(bytes: &[u8]) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, bytes).unwrap();
        let body = z.finish().unwrap();
        let mut out = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        for v in 1..=1000u64 {
            a.record(v * 10);
            all.record(v * 10);
        }
        for v in 1..=10u64 {
            b.record(v * 100_000);
            all.record(v * 100_000);
        }
        let mut merged = LatencyHistogram::decode(&a.encode()).unwrap();
        merged.merge(&LatencyHistogram::decode(&b.encode()).unwrap());
        assert_eq!(merged.summary(), all.summary());
        assert_eq!(merged.count(), 1010);
    }

    #[test]
    fn coarse_histograms_merge_into_full_ones_within_their_precision() {
        let mut c = LatencyHistogram::coarse();
        for v in 1..=100u64 {
            c.record(v * 1_000);
        }
        let mut full = LatencyHistogram::new();
        full.merge(&LatencyHistogram::decode(&c.encode()).unwrap());
        assert_eq!(full.count(), 100);
        let p50 = full.summary().p50_us as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.07, "{p50}");
    }

    #[test]
    fn decoding_keeps_the_precision_and_refuses_foreign_bounds() {
        let mut c = LatencyHistogram::coarse();
        c.record(400);
        let back = LatencyHistogram::decode(&c.encode()).unwrap();
        assert_eq!(back.inner.sigfig(), 1, "a coarse window stays coarse");
        assert_eq!(back.empty_like().inner.sigfig(), 1);
        // A full histogram merged into a decoded coarse one, and the other way: both add.
        let mut full = LatencyHistogram::new();
        full.record(3_000_000_000);
        let mut into_coarse = back.clone();
        into_coarse.merge(&full);
        assert_eq!(into_coarse.count(), 2);
        // Bounds cmesh never writes are refused: with them, a merge could fail.
        for (low, high, digits) in [
            (1, 1_000, 3),
            (1, u64::MAX / 4, 3),
            (1, MAX_TRACKABLE_US, 5),
        ] {
            let foreign = Histogram::<u64>::new_with_bounds(low, high, digits).unwrap();
            let mut plain = Vec::new();
            V2Serializer::new().serialize(&foreign, &mut plain).unwrap();
            let text = base64::engine::general_purpose::STANDARD.encode(plain);
            let e = LatencyHistogram::decode(&text).unwrap_err().to_string();
            assert!(e.contains("cmesh writes"), "{e}");
        }
    }

    #[test]
    fn empty_summary_is_zero_and_bad_input_is_an_error() {
        assert_eq!(LatencyHistogram::new().summary(), LatencySummary::default());
        assert!(LatencyHistogram::decode("not base64!").is_err());
        assert!(LatencyHistogram::decode("AAAA").is_err());
    }
}
