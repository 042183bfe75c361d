//! Byte layouts of WAL segments and records, as FORMAT.md specifies them.
//!
//! Encoding and decoding live here and nowhere else, so that offsets are
//! derived from one set of constants.

use crate::le::{u32_at, u64_at};

/// Identifies a segment file; the first bytes of every segment.
const SEGMENT_MAGIC: [u8; 8] = *b"rdbWALsg";
/// The segment and record format this code reads and writes.
const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header, at offset 0 of every segment.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
/// Bytes of a record header: len, crc, index, term.
pub(crate) const RECORD_HEADER_BYTES: usize = 24;
/// The largest payload a record may carry. A bigger `len` read from disk is
/// damage, never an allocation.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 16 << 20;

/// The file name of the segment whose first index is `first_index`.
pub(crate) fn segment_name(first_index: u64) -> String {
    format!("{first_index:020}.wal")
}

/// The first index named by a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment header for a segment starting at `first_index`.
pub(crate) fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The first index stored in a segment header, or why the header is bad.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<u64, String> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
        return Err(format!("segment is {} bytes, shorter than its header", bytes.len()));
    };
    if header[0..8] != SEGMENT_MAGIC {
        return Err("segment header has the wrong magic".into());
    }
    if u32_at(header, 28) != crc32fast::hash(&header[0..28]) {
        return Err("segment header fails its checksum".into());
    }
    let version = u32_at(header, 8);
    if version != FORMAT_VERSION {
        return Err(format!("segment format version {version} is not {FORMAT_VERSION}"));
    }
    Ok(u64_at(header, 16))
}

/// Appends one encoded record to `out`.
pub(crate) fn encode_record(out: &mut Vec<u8>, index: u64, term: u64, payload: &[u8]) {
    assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX, "payload size is checked by the caller");
    let len = u32::try_from(payload.len()).expect("payload limit fits in u32");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = record_crc(&out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum of an encoded record: every byte but the crc field itself.
fn record_crc(record: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&record[0..4]);
    hasher.update(&record[8..]);
    hasher.finalize()
}

/// One record decoded in place from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    /// The record's log index.
    pub(crate) index: u64,
    /// The term the entry was created in.
    pub(crate) term: u64,
    /// The entry's bytes.
    pub(crate) payload: &'a [u8],
}

impl RecordView<'_> {
    /// Bytes the record takes on disk.
    pub(crate) fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

/// Why no record could be decoded at some offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRecord {
    /// The buffer ends inside the record (a torn or cut write).
    Incomplete,
    /// The length field or checksum is wrong (torn, zero-filled or damaged).
    Damaged(String),
}

/// Decodes the record at the start of `bytes`, checking length and checksum.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<RecordView<'_>, BadRecord> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Err(BadRecord::Incomplete);
    };
    let len = u32_at(header, 0) as usize;
    if len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(BadRecord::Damaged(format!("record length {len} exceeds the maximum")));
    }
    let Some(record) = bytes.get(..RECORD_HEADER_BYTES + len) else {
        return Err(BadRecord::Incomplete);
    };
    if u32_at(header, 4) != record_crc(record) {
        return Err(BadRecord::Damaged("record fails its checksum".into()));
    }
    Ok(RecordView {
        index: u64_at(header, 8),
        term: u64_at(header, 16),
        payload: &record[RECORD_HEADER_BYTES..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_every_flipped_byte_is_caught() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, 3, b"hello");
        let view = decode_record(&buf).unwrap();
        assert_eq!((view.index, view.term, view.payload), (7, 3, &b"hello"[..]));
        assert_eq!(view.encoded_len(), buf.len());
        for at in 0..buf.len() {
            let mut damaged = buf.clone();
            damaged[at] ^= 0x01;
            assert!(decode_record(&damaged).is_err(), "flip at byte {at} went unnoticed");
        }
    }

    #[test]
    fn zeros_and_short_buffers_are_not_records() {
        assert!(matches!(decode_record(&[0; 64]), Err(BadRecord::Damaged(_))));
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, 1, b"abc");
        assert_eq!(decode_record(&buf[..buf.len() - 1]), Err(BadRecord::Incomplete));
        assert_eq!(decode_record(&buf[..10]), Err(BadRecord::Incomplete));
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), Ok(42));
        for at in 0..header.len() {
            let mut damaged = header;
            damaged[at] ^= 1;
            assert!(decode_segment_header(&damaged).is_err(), "flip at byte {at} went unnoticed");
        }
        assert!(decode_segment_header(&header[..31]).is_err());
    }

    #[test]
    fn segment_names_sort_by_index_and_parse_back() {
        assert_eq!(segment_name(1), "00000000000000000001.wal");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("1.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000001.wal.tmp"), None);
        assert!(segment_name(9) < segment_name(10));
    }
}
