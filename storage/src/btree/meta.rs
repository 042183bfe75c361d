//! The meta page: which snapshot is the state file's current one.

use super::page::{PageId, PAGE_BYTES};
use crate::le::{u32_at, u64_at};

/// Identifies a state file.
const META_MAGIC: [u8; 8] = *b"rdbSTATE";
/// The state-file format this code reads and writes.
const META_VERSION: u32 = 1;
/// Bytes of opaque metadata a commit carries (rdb: applied index and term).
pub const USER_META_BYTES: usize = 32;
/// Bytes covered by the checksum; the checksum follows them.
const META_CRC_AT: usize = 88;
/// The page size as stored in the meta page.
const PAGE_BYTES_U32: u32 = 4096;
const _: () = assert!(PAGE_BYTES_U32 as usize == PAGE_BYTES);

/// The root of one committed snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The commit's transaction id; higher is newer.
    pub(crate) txid: u64,
    /// Root of the catalog tree, or NONE when there are no trees.
    pub(crate) catalog: PageId,
    /// First page of the free-list run, or NONE.
    pub(crate) freelist: PageId,
    /// Pages in use; every run lies below.
    pub(crate) page_count: u64,
    /// Opaque metadata committed with the data.
    pub(crate) user: [u8; USER_META_BYTES],
}

impl Meta {
    /// The meta of a new, empty state file.
    pub(crate) fn empty() -> Self {
        Meta {
            txid: 0,
            catalog: PageId::NONE,
            freelist: PageId::NONE,
            page_count: PageId::FIRST_RUN.0,
            user: [0; USER_META_BYTES],
        }
    }

    /// The whole meta page.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut page = vec![0u8; PAGE_BYTES];
        page[0..8].copy_from_slice(&META_MAGIC);
        page[8..12].copy_from_slice(&META_VERSION.to_le_bytes());
        page[12..16].copy_from_slice(&PAGE_BYTES_U32.to_le_bytes());
        page[16..24].copy_from_slice(&self.txid.to_le_bytes());
        page[24..32].copy_from_slice(&self.catalog.0.to_le_bytes());
        page[32..40].copy_from_slice(&self.freelist.0.to_le_bytes());
        page[40..48].copy_from_slice(&self.page_count.to_le_bytes());
        page[56..88].copy_from_slice(&self.user);
        let crc = crc32fast::hash(&page[..META_CRC_AT]);
        page[META_CRC_AT..META_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        page
    }

    /// The meta in a page, or why it is not a valid one.
    pub(crate) fn decode(page: &[u8]) -> Result<Self, String> {
        if page.len() < META_CRC_AT + 4 || page[0..8] != META_MAGIC {
            return Err("no meta page magic".into());
        }
        if u32_at(page, META_CRC_AT) != crc32fast::hash(&page[..META_CRC_AT]) {
            return Err("meta page fails its checksum".into());
        }
        let (version, page_bytes) = (u32_at(page, 8), u32_at(page, 12));
        if version != META_VERSION || page_bytes != PAGE_BYTES_U32 {
            return Err(format!(
                "format version {version} with {page_bytes}-byte pages is not ours"
            ));
        }
        let meta = Meta {
            txid: u64_at(page, 16),
            catalog: PageId(u64_at(page, 24)),
            freelist: PageId(u64_at(page, 32)),
            page_count: u64_at(page, 40),
            user: page[56..88].try_into().expect("32 bytes"),
        };
        let roots_inside = [meta.catalog, meta.freelist]
            .iter()
            .all(|p| *p == PageId::NONE || (p.0 >= 2 && p.0 < meta.page_count));
        if meta.page_count < PageId::FIRST_RUN.0 || !roots_inside {
            return Err(format!("meta points outside its {} pages", meta.page_count));
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_every_checked_byte_matters() {
        let meta = Meta {
            txid: 9,
            catalog: PageId(5),
            freelist: PageId(7),
            page_count: 12,
            user: [3; 32],
        };
        let page = meta.encode();
        assert_eq!(Meta::decode(&page), Ok(meta));
        for at in 0..META_CRC_AT + 4 {
            let mut damaged = page.clone();
            damaged[at] ^= 0x40;
            assert!(Meta::decode(&damaged).is_err(), "flip at byte {at} went unnoticed");
        }
    }
}
