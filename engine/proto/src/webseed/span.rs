//! A byte range of the torrent's concatenated data onto its files.

use std::ops::Range;

use crate::metainfo::Info;

/// Part of a range: bytes of one file, or zeros (a BEP 47 pad file, which
/// no server holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `len` bytes of file `file` from `offset` within it.
    File {
        /// Index into `info.files`.
        file: usize,
        /// First byte within the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// `len` zero bytes.
    Zeros(u64),
}

impl Segment {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Segment::File { len, .. } | Segment::Zeros(len) => *len,
        }
    }

    /// Whether it is empty (never returned by [`file_ranges`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The segments `range` (torrent offsets, clamped to the data) covers, in
/// order; empty files are skipped. The sum of their lengths is the
/// clamped range's length.
pub fn file_ranges(info: &Info, range: Range<u64>) -> Vec<Segment> {
    let end = range.end.min(info.total_length);
    let mut at = range.start;
    let mut out = Vec::new();
    if at >= end {
        return out;
    }
    // Files are in offset order: find the first that ends after `at`.
    let first = info
        .files
        .partition_point(|f| f.offset.saturating_add(f.length) <= at);
    for (index, f) in info.files.iter().enumerate().skip(first) {
        if at >= end {
            break;
        }
        let file_end = f.offset.saturating_add(f.length);
        if f.length == 0 || file_end <= at {
            continue;
        }
        let take_end = end.min(file_end);
        let len = take_end - at;
        out.push(if f.pad {
            Segment::Zeros(len)
        } else {
            Segment::File {
                file: index,
                offset: at - f.offset,
                len,
            }
        });
        at = take_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::FileEntry;

    fn info(lengths: &[(u64, bool)]) -> Info {
        let mut offset = 0;
        let files = lengths
            .iter()
            .enumerate()
            .map(|(i, (len, pad))| {
                let e = FileEntry {
                    path: vec!["t".into(), format!("f{i}")],
                    length: *len,
                    offset,
                    pad: *pad,
                };
                offset += len;
                e
            })
            .collect();
        Info {
            name: "t".into(),
            piece_length: 16384,
            piece_hashes: vec![[0; 20]; offset.div_ceil(16384) as usize],
            files,
            total_length: offset,
            private: false,
            notes: Vec::new(),
        }
    }

    fn total(s: &[Segment]) -> u64 {
        s.iter().map(Segment::len).sum()
    }

    #[test]
    fn a_piece_across_a_file_boundary_and_an_empty_file() {
        let i = info(&[(10_000, false), (0, false), (30_000, false)]);
        let piece0 = i.piece_range(0).unwrap();
        let s = file_ranges(&i, piece0);
        assert_eq!(
            s,
            vec![
                Segment::File {
                    file: 0,
                    offset: 0,
                    len: 10_000
                },
                Segment::File {
                    file: 2,
                    offset: 0,
                    len: 6384
                },
            ]
        );
        // The short last piece.
        let last = i.piece_range(i.piece_count() - 1).unwrap();
        let s = file_ranges(&i, last.clone());
        assert_eq!(
            s,
            vec![Segment::File {
                file: 2,
                offset: 22_768,
                len: 7232
            }]
        );
        assert_eq!(total(&s), last.end - last.start);
    }

    #[test]
    fn pad_files_are_zeros_and_ranges_are_clamped() {
        let i = info(&[(100, false), (16284, true), (16384, false)]);
        let s = file_ranges(&i, 50..20_000);
        assert_eq!(
            s,
            vec![
                Segment::File {
                    file: 0,
                    offset: 50,
                    len: 50
                },
                Segment::Zeros(16284),
                Segment::File {
                    file: 2,
                    offset: 0,
                    len: 3616
                },
            ]
        );
        assert_eq!(total(&file_ranges(&i, 0..u64::MAX)), i.total_length);
        assert!(file_ranges(&i, 40_000..50_000).is_empty());
    }

    #[test]
    fn every_range_is_covered_exactly() {
        let i = info(&[
            (1, false),
            (16383, false),
            (5, false),
            (0, false),
            (40_000, false),
        ]);
        for start in (0..i.total_length).step_by(997) {
            for len in [1, 16384, 30_000] {
                let s = file_ranges(&i, start..start + len);
                assert_eq!(total(&s), (start + len).min(i.total_length) - start);
                assert!(s.iter().all(|x| !x.is_empty()));
            }
        }
    }
}
