//! Which files the user wants, and how soon: file priorities onto piece
//! priorities, the picker's input. Pure arithmetic over file lengths.
//!
//! A piece shared by a skipped and a wanted file is wanted (the wanted file
//! cannot be completed without it); it takes the highest priority of the
//! files it touches. In sequential mode the first and last pieces of each
//! wanted file come first (players read a container's index from either
//! end), then pieces in order.

use std::fmt;
use std::str::FromStr;

/// How much a file (or piece) is wanted. Ordered: `Skip < Normal < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Priority {
    /// Not wanted: never asked for, and the file is not created on disk.
    Skip,
    /// Wanted, in the usual rarest-first order.
    #[default]
    Normal,
    /// Wanted before every `Normal` piece.
    High,
}

impl Priority {
    /// Whether the file or piece is to be downloaded at all.
    pub fn is_wanted(self) -> bool {
        self != Priority::Skip
    }

    /// The lowercase word used by the CLI, the API and the agent's database.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Skip => "skip",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that is not a priority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority {0:?} (expected skip, normal or high)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;
    fn from_str(s: &str) -> Result<Priority, UnknownPriority> {
        match s.trim().to_ascii_lowercase().as_str() {
            "skip" | "off" | "0" => Ok(Priority::Skip),
            "normal" | "1" => Ok(Priority::Normal),
            "high" | "2" => Ok(Priority::High),
            other => Err(UnknownPriority(other.to_string())),
        }
    }
}

/// The priority of each piece, from the files' lengths (in torrent order,
/// pad files included) and their priorities. Files missing from `files`
/// count as `Normal`; zero-length files touch no piece.
pub fn piece_priorities(
    piece_length: u64,
    file_lengths: &[u64],
    files: &[Priority],
    sequential: bool,
) -> Vec<Priority> {
    let total: u64 = file_lengths.iter().sum();
    let piece_length = piece_length.max(1);
    let count = total.div_ceil(piece_length) as usize;
    let mut out = vec![Priority::Skip; count];
    let mut at = 0u64;
    for (i, &len) in file_lengths.iter().enumerate() {
        let prio = files.get(i).copied().unwrap_or_default();
        if len > 0 {
            let first = (at / piece_length) as usize;
            let last = ((at + len - 1) / piece_length) as usize;
            for p in &mut out[first..=last.min(count - 1)] {
                *p = (*p).max(prio);
            }
            if sequential && prio.is_wanted() {
                out[first] = Priority::High;
                out[last.min(count - 1)] = Priority::High;
            }
        }
        at += len;
    }
    out
}

/// The pieces of each file: `first..=last` as a half-open range, empty for a
/// zero-length file.
pub fn file_piece_ranges(piece_length: u64, file_lengths: &[u64]) -> Vec<std::ops::Range<u32>> {
    let piece_length = piece_length.max(1);
    let mut at = 0u64;
    file_lengths
        .iter()
        .map(|&len| {
            let range = if len == 0 {
                0..0
            } else {
                (at / piece_length) as u32..((at + len - 1) / piece_length) as u32 + 1
            };
            at += len;
            range
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Priority::*;

    #[test]
    fn a_shared_piece_takes_the_higher_priority() {
        // Pieces of 10: file 0 = 0..15, file 1 = 15..30, file 2 = 30..40.
        let p = piece_priorities(10, &[15, 15, 10], &[Skip, Normal, Skip], false);
        assert_eq!(p, vec![Skip, Normal, Normal, Skip]);
        let p = piece_priorities(10, &[15, 15, 10], &[High, Skip, Skip], false);
        assert_eq!(p, vec![High, High, Skip, Skip]);
    }

    #[test]
    fn sequential_raises_each_wanted_files_ends() {
        let p = piece_priorities(10, &[50, 30], &[Normal, Skip], true);
        assert_eq!(
            p,
            vec![High, Normal, Normal, Normal, High, Skip, Skip, Skip]
        );
    }

    #[test]
    fn missing_entries_are_normal_and_empty_files_touch_nothing() {
        let p = piece_priorities(10, &[0, 20, 0], &[High], false);
        assert_eq!(p, vec![Normal, Normal]);
        assert_eq!(file_piece_ranges(10, &[0, 20, 5]), vec![0..0, 0..2, 2..3]);
    }

    #[test]
    fn words_parse_both_ways() {
        for p in [Skip, Normal, High] {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(p));
        }
        assert!("urgent".parse::<Priority>().is_err());
    }
}
