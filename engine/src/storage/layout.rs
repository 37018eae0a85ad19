//! Where a piece's bytes live: pure arithmetic from torrent ranges to file spans.

use std::ops::Range;

use crate::metainfo::Info;

/// A contiguous run of bytes inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index into the torrent's file list.
    pub file: usize,
    /// Byte offset within that file.
    pub offset: u64,
    /// Number of bytes; never zero.
    pub len: u64,
}

/// Why a layout could not be built or a range could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The piece length is zero or does not fit a block offset (`u32`).
    #[error("piece length {0} is unusable")]
    PieceLength(u64),
    /// A file does not start where the previous one ended.
    #[error("file {index} starts at {got}, expected {expected}")]
    FileOffset {
        /// Index of the file.
        index: usize,
        /// Where it should start.
        expected: u64,
        /// Where the torrent says it starts.
        got: u64,
    },
    /// The file lengths do not add up to the torrent's total length.
    #[error("files add up to {files} bytes, torrent says {total}")]
    TotalLength {
        /// Sum of file lengths.
        files: u64,
        /// The torrent's stated total.
        total: u64,
    },
    /// The number of piece hashes does not match the data length.
    #[error("{got} piece hashes for data needing {expected}")]
    PieceCount {
        /// Pieces the data needs.
        expected: u64,
        /// Hashes present.
        got: usize,
    },
    /// File offsets or lengths overflow 64 bits.
    #[error("file sizes overflow")]
    Overflow,
    /// A piece index past the last piece.
    #[error("piece {piece} out of range (torrent has {count})")]
    PieceOutOfRange {
        /// The piece asked for.
        piece: u32,
        /// Pieces in the torrent.
        count: u32,
    },
    /// A block that does not fit inside its piece.
    #[error("block {begin}+{len} outside piece {piece} of {piece_size} bytes")]
    BlockOutOfRange {
        /// The piece.
        piece: u32,
        /// Offset within the piece.
        begin: u32,
        /// Block length.
        len: u64,
        /// Actual size of that piece.
        piece_size: u64,
    },
    /// A byte range past the end of the torrent's data.
    #[error("range {start}+{len} outside {total} bytes of data")]
    RangeOutOfBounds {
        /// First byte.
        start: u64,
        /// Length.
        len: u64,
        /// The torrent's total length.
        total: u64,
    },
}

/// The shape of a torrent's data: piece size and where each file sits.
///
/// Built once from a validated [`Info`]; re-checks the invariants it relies on
/// so that arithmetic below can never overflow or index out of bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    piece_length: u64,
    total_length: u64,
    piece_count: u32,
    /// `(offset, length)` per file, contiguous and covering `0..total_length`.
    files: Vec<(u64, u64)>,
}

impl Layout {
    /// Checks that the files tile the data and the piece count matches.
    pub fn new(info: &Info) -> Result<Layout, LayoutError> {
        let piece_length = info.piece_length;
        if piece_length == 0 || piece_length > u64::from(u32::MAX) {
            return Err(LayoutError::PieceLength(piece_length));
        }
        let mut files = Vec::with_capacity(info.files.len());
        let mut at = 0u64;
        for (index, f) in info.files.iter().enumerate() {
            if f.offset != at {
                return Err(LayoutError::FileOffset {
                    index,
                    expected: at,
                    got: f.offset,
                });
            }
            files.push((at, f.length));
            at = at.checked_add(f.length).ok_or(LayoutError::Overflow)?;
        }
        if at != info.total_length {
            return Err(LayoutError::TotalLength {
                files: at,
                total: info.total_length,
            });
        }
        let expected = at.div_ceil(piece_length);
        let got = info.piece_hashes.len();
        if u64::try_from(got).ok() != Some(expected) {
            return Err(LayoutError::PieceCount { expected, got });
        }
        let piece_count =
            u32::try_from(got).map_err(|_| LayoutError::PieceCount { expected, got })?;
        Ok(Layout {
            piece_length,
            total_length: at,
            piece_count,
            files,
        })
    }

    /// Nominal piece length (every piece but the last).
    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    /// Total bytes of data.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Number of files, zero-length ones included.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Length of file `file`, if it exists.
    pub fn file_length(&self, file: usize) -> Option<u64> {
        self.files.get(file).map(|&(_, len)| len)
    }

    /// Where file `file` starts within the data, if it exists.
    pub fn file_offset(&self, file: usize) -> Option<u64> {
        self.files.get(file).map(|&(off, _)| off)
    }

    /// Byte range of piece `piece` within the data.
    pub fn piece_range(&self, piece: u32) -> Result<Range<u64>, LayoutError> {
        if piece >= self.piece_count {
            return Err(LayoutError::PieceOutOfRange {
                piece,
                count: self.piece_count,
            });
        }
        // piece < count = ceil(total / pl), so start < total: no overflow.
        let start = u64::from(piece) * self.piece_length;
        let end = start + (self.total_length - start).min(self.piece_length);
        Ok(start..end)
    }

    /// Size of piece `piece` (the last may be short).
    pub fn piece_size(&self, piece: u32) -> Result<u64, LayoutError> {
        self.piece_range(piece).map(|r| r.end - r.start)
    }

    /// Spans of `len` bytes at `begin` within `piece`, in data order.
    pub fn block_spans(&self, piece: u32, begin: u32, len: u32) -> Result<Vec<Span>, LayoutError> {
        Ok(self.block(piece, begin, u64::from(len))?.collect())
    }

    /// Spans of the whole of `piece`, in data order.
    pub fn piece_spans(&self, piece: u32) -> Result<Vec<Span>, LayoutError> {
        let r = self.piece_range(piece)?;
        Ok(self.spans(r.start, r.end - r.start)?.collect())
    }

    /// Iterator over the spans of a block, without allocating.
    pub fn block(&self, piece: u32, begin: u32, len: u64) -> Result<Spans<'_>, LayoutError> {
        let r = self.piece_range(piece)?;
        let size = r.end - r.start;
        let fits = u64::from(begin)
            .checked_add(len)
            .is_some_and(|end| end <= size);
        if !fits {
            return Err(LayoutError::BlockOutOfRange {
                piece,
                begin,
                len,
                piece_size: size,
            });
        }
        self.spans(r.start + u64::from(begin), len)
    }

    /// Iterator over the spans of `len` data bytes starting at `start`.
    pub fn spans(&self, start: u64, len: u64) -> Result<Spans<'_>, LayoutError> {
        let inside = start
            .checked_add(len)
            .is_some_and(|end| end <= self.total_length);
        if !inside {
            return Err(LayoutError::RangeOutOfBounds {
                start,
                len,
                total: self.total_length,
            });
        }
        // First file whose end lies past `start`; this skips zero-length files there.
        let file = self
            .files
            .partition_point(|&(off, flen)| off + flen <= start);
        Ok(Spans {
            files: &self.files,
            file,
            pos: start,
            remaining: len,
        })
    }

    /// Pieces holding at least one byte of file `file`: empty for a zero-length
    /// file, `None` when there is no such file.
    pub fn file_pieces(&self, file: usize) -> Option<Range<u32>> {
        let &(off, len) = self.files.get(file)?;
        if len == 0 {
            return Some(0..0);
        }
        // Both values are at most piece_count, which fits u32.
        let first = u32::try_from(off / self.piece_length).ok()?;
        let end = u32::try_from((off + len).div_ceil(self.piece_length)).ok()?;
        Some(first..end)
    }
}

/// Spans covering a byte range, in order; see [`Layout::spans`].
#[derive(Debug, Clone)]
pub struct Spans<'a> {
    files: &'a [(u64, u64)],
    file: usize,
    pos: u64,
    remaining: u64,
}

impl Iterator for Spans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        while self.remaining > 0 {
            let &(off, flen) = self.files.get(self.file)?;
            let index = self.file;
            self.file += 1;
            let end = off + flen;
            if end <= self.pos {
                continue; // zero-length file at this offset
            }
            let offset = self.pos - off;
            let len = self.remaining.min(end - self.pos);
            self.pos += len;
            self.remaining -= len;
            return Some(Span {
                file: index,
                offset,
                len,
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::FileEntry;
    use proptest::prelude::*;

    fn info(piece_length: u64, lengths: &[u64]) -> Info {
        let mut files = Vec::new();
        let mut offset = 0;
        for (i, &length) in lengths.iter().enumerate() {
            files.push(FileEntry {
                path: vec!["t".into(), format!("f{i}")],
                length,
                offset,
                pad: false,
            });
            offset += length;
        }
        let pieces = offset.div_ceil(piece_length) as usize;
        Info {
            name: "t".into(),
            piece_length,
            piece_hashes: vec![[0; 20]; pieces],
            files,
            total_length: offset,
            private: false,
            notes: Vec::new(),
        }
    }

    fn span(file: usize, offset: u64, len: u64) -> Span {
        Span { file, offset, len }
    }

    #[test]
    fn single_file() {
        let l = Layout::new(&info(16, &[40])).unwrap();
        assert_eq!(l.piece_count(), 3);
        assert_eq!(l.piece_size(2), Ok(8));
        assert_eq!(l.piece_spans(1).unwrap(), vec![span(0, 16, 16)]);
        assert_eq!(l.block_spans(2, 2, 6).unwrap(), vec![span(0, 34, 6)]);
        assert!(l.block_spans(2, 2, 7).is_err(), "past the short last piece");
        assert!(l.block_spans(3, 0, 1).is_err(), "no piece 3");
    }

    #[test]
    fn piece_across_three_files_and_empty_ones() {
        let l = Layout::new(&info(16, &[0, 5, 0, 3, 0, 20, 0])).unwrap();
        assert_eq!(
            l.piece_spans(0).unwrap(),
            vec![span(1, 0, 5), span(3, 0, 3), span(5, 0, 8)]
        );
        assert_eq!(l.piece_spans(1).unwrap(), vec![span(5, 8, 12)]);
        assert_eq!(
            l.block_spans(0, 5, 4).unwrap(),
            vec![span(3, 0, 3), span(5, 0, 1)]
        );
        assert_eq!(l.block_spans(0, 8, 0).unwrap(), vec![]);
        assert_eq!(l.file_pieces(0), Some(0..0));
        assert_eq!(l.file_pieces(5), Some(0..2));
        assert_eq!(l.file_pieces(3), Some(0..1));
        assert_eq!(l.file_pieces(7), None);
    }

    #[test]
    fn block_at_exact_file_boundary() {
        let l = Layout::new(&info(8, &[8, 8])).unwrap();
        assert_eq!(l.block_spans(1, 0, 8).unwrap(), vec![span(1, 0, 8)]);
        assert_eq!(l.file_pieces(0), Some(0..1));
        assert_eq!(l.file_pieces(1), Some(1..2));
    }

    #[test]
    fn extreme_requests_are_refused_not_overflowed() {
        let l = Layout::new(&info(16, &[40])).unwrap();
        assert!(l.block_spans(0, u32::MAX, u32::MAX).is_err());
        assert!(l.block(0, 1, u64::MAX).is_err());
        assert!(l.spans(u64::MAX, 2).is_err());
        assert!(l.piece_range(u32::MAX).is_err());
    }

    #[test]
    fn inconsistent_info_is_refused() {
        let mut i = info(16, &[10, 10]);
        i.files[1].offset = 11;
        assert!(matches!(
            Layout::new(&i),
            Err(LayoutError::FileOffset { index: 1, .. })
        ));
        let mut i = info(16, &[10, 10]);
        i.total_length = 21;
        assert!(matches!(
            Layout::new(&i),
            Err(LayoutError::TotalLength { .. })
        ));
        let mut i = info(16, &[10, 10]);
        i.piece_hashes.push([0; 20]);
        assert!(matches!(
            Layout::new(&i),
            Err(LayoutError::PieceCount { .. })
        ));
        let mut i = info(16, &[10]);
        i.piece_length = 0;
        assert!(matches!(Layout::new(&i), Err(LayoutError::PieceLength(0))));
        let mut i = info(16, &[10, 2]);
        i.files[0].length = u64::MAX;
        i.files[1].offset = u64::MAX;
        assert!(matches!(Layout::new(&i), Err(LayoutError::Overflow)));
    }

    #[test]
    fn empty_torrent_has_no_pieces() {
        let l = Layout::new(&info(16, &[0, 0])).unwrap();
        assert_eq!(l.piece_count(), 0);
        assert!(l.piece_spans(0).is_err());
    }

    proptest! {
        /// Spans cover exactly the requested bytes, in order, each inside its file.
        #[test]
        fn spans_cover_exactly(
            lengths in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50], 1..8),
            pl_exp in 0u32..6,
            a in any::<u64>(),
            b in any::<u64>(),
        ) {
            let i = info(1 << pl_exp, &lengths);
            let l = Layout::new(&i).unwrap();
            let total = l.total_length();
            let (start, end) = if total == 0 { (0, 0) } else {
                let (x, y) = (a % (total + 1), b % (total + 1));
                (x.min(y), x.max(y))
            };
            let mut pos = start;
            let mut last_file = None;
            for s in l.spans(start, end - start).unwrap() {
                prop_assert!(s.len > 0);
                let f = &i.files[s.file];
                prop_assert_eq!(f.offset + s.offset, pos, "contiguous in data order");
                prop_assert!(s.offset + s.len <= f.length, "inside the file");
                prop_assert!(last_file < Some(s.file), "files ascend");
                last_file = Some(s.file);
                pos += s.len;
            }
            prop_assert_eq!(pos, end);
            // Every piece is covered by its spans, and file_pieces agrees.
            for p in 0..l.piece_count() {
                let r = l.piece_range(p).unwrap();
                let spans = l.piece_spans(p).unwrap();
                prop_assert_eq!(spans.iter().map(|s| s.len).sum::<u64>(), r.end - r.start);
                for s in spans {
                    prop_assert!(l.file_pieces(s.file).unwrap().contains(&p));
                }
            }
        }
    }
}
