//! Hashing many pieces on several threads with large sequential reads.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha1::{Digest, Sha1};

use super::{is_absent, LayoutError, Storage};
use crate::bitfield::Bitfield;
use crate::Error;

/// Bytes each worker reads at a time: big enough that per-read overhead is
/// negligible, small enough that workers share the tail of the job evenly.
const BATCH_BYTES: u64 = 8 << 20;

impl Storage {
    /// Hashes every piece; set bits are pieces whose data matches. Missing or
    /// short files make their pieces absent, not an error.
    pub fn verify_all(&self, threads: usize) -> Result<Bitfield, Error> {
        let all: Vec<u32> = (0..self.layout.piece_count()).collect();
        self.verify_pieces(&all, threads)
    }

    /// Hashes the listed pieces (ascending order reads fastest); the result has
    /// a bit for every piece of the torrent, set only for listed pieces found good.
    pub fn verify_pieces(&self, pieces: &[u32], threads: usize) -> Result<Bitfield, Error> {
        let count = self.layout.piece_count();
        if let Some(&piece) = pieces.iter().find(|&&p| p >= count) {
            return Err(self.refuse(LayoutError::PieceOutOfRange { piece, count }.into()));
        }
        let per_batch = (BATCH_BYTES / self.layout.piece_length()).max(1);
        let per_batch = usize::try_from(per_batch).unwrap_or(usize::MAX);
        let batches = pieces.len().div_ceil(per_batch);
        let threads = threads.clamp(1, batches.max(1));

        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let work = || self.verify_worker(pieces, per_batch, &next, &stop);
        let results: Vec<Result<Vec<u32>, Error>> = if threads == 1 {
            vec![work()]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads).map(|_| s.spawn(work)).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            })
        };
        let mut have = Bitfield::new(count);
        for r in results {
            for p in r? {
                have.set(p);
            }
        }
        Ok(have)
    }

    /// Claims batches of `pieces` until none are left; returns the good ones.
    fn verify_worker(
        &self,
        pieces: &[u32],
        per_batch: usize,
        next: &AtomicUsize,
        stop: &AtomicBool,
    ) -> Result<Vec<u32>, Error> {
        let mut good = Vec::new();
        let mut buf = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let first = next.fetch_add(per_batch, Ordering::Relaxed);
            let Some(batch) = pieces.get(first..) else {
                break;
            };
            let batch = &batch[..batch.len().min(per_batch)];
            if batch.is_empty() {
                break;
            }
            for run in batch.chunk_by(|a, b| b.checked_sub(*a) == Some(1)) {
                if let Err(e) = self.verify_run(run, &mut buf, &mut good) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(good)
    }

    /// Verifies consecutive pieces with one read; falls back to piece by piece
    /// when some of the data is missing, to find which pieces survive.
    fn verify_run(&self, run: &[u32], buf: &mut Vec<u8>, good: &mut Vec<u32>) -> Result<(), Error> {
        let (Some(&first), Some(&last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let start = self.piece_start(first)?;
        let end = self
            .layout
            .piece_range(last)
            .map_err(|e| self.refuse(e.into()))?
            .end;
        let len = self.buf_len(end - start)?;
        buf.resize(len, 0);
        match self.read_range(start, &mut buf[..len]) {
            Ok(()) => {
                let mut at = 0usize;
                for &p in run {
                    let n = self.piece_len(p)?;
                    if Sha1::digest(&buf[at..at + n]).as_slice() == self.expected_hash(p)? {
                        good.push(p);
                    }
                    at += n;
                }
                Ok(())
            }
            Err(e) if is_absent(&e) && run.len() > 1 => {
                for &p in run {
                    self.verify_run(std::slice::from_ref(&p), buf, good)?;
                }
                Ok(())
            }
            Err(e) if is_absent(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn piece_start(&self, p: u32) -> Result<u64, Error> {
        Ok(self
            .layout
            .piece_range(p)
            .map_err(|e| self.refuse(e.into()))?
            .start)
    }

    fn buf_len(&self, n: u64) -> Result<usize, Error> {
        usize::try_from(n).map_err(|_| {
            self.refuse(
                LayoutError::RangeOutOfBounds {
                    start: 0,
                    len: n,
                    total: self.layout.total_length(),
                }
                .into(),
            )
        })
    }
}

impl Storage {
    /// Pieces that touch a file holding any data on disk. A file with no
    /// allocated blocks (new, or sparse and never written) cannot hold a
    /// verified piece, so a fresh download is not hashed at all.
    pub fn pieces_with_data(&self) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let mut pieces = Vec::new();
        for file in 0..self.layout.file_count() {
            let path = if self.is_parked(file) {
                self.parts_path()
            } else {
                self.file_path(file).map(Path::to_path_buf)
            };
            let has_data = path
                .and_then(|p| std::fs::symlink_metadata(p).ok())
                .is_some_and(|m| m.is_file() && m.blocks() > 0);
            if has_data {
                if let Some(range) = self.layout.file_pieces(file) {
                    pieces.extend(range);
                }
            }
        }
        pieces.sort_unstable();
        pieces.dedup();
        pieces
    }
}
