//! Files deleted under a running torrent. An open descriptor keeps a deleted
//! file's data readable (and its disk space used) for as long as we hold it,
//! so a deletion shows only as a link count of zero: we notice it, let the
//! session forget the file's pieces, and start a new, empty file in its place.

use std::os::unix::fs::MetadataExt;
use std::sync::PoisonError;

use super::open::{self, Access};
use super::{read_slot, Allocation, Storage, StorageError};
use crate::Error;

impl Storage {
    /// Files whose directory entry is gone (deleted or renamed away) while
    /// we still hold them open.
    pub fn unlinked_files(&self) -> Vec<usize> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                read_slot(slot)
                    .as_ref()
                    .and_then(|f| f.metadata().ok())
                    .is_some_and(|m| m.nlink() == 0)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Replaces file `file` by a new empty one at its path, releasing the old
    /// descriptor (and with it a deleted file's space). The new file is not
    /// grown: until pieces are written again, reads past its end fail rather
    /// than return zeros. Forget the file's pieces before calling this.
    pub fn recreate_file(&self, file: usize) -> Result<(), Error> {
        if !self.writable {
            return Err(self.refuse(StorageError::ReadOnly));
        }
        let (Some(slot), Some(components)) = (self.files.get(file), self.components.get(file))
        else {
            return Err(self.file_err(file, StorageError::Missing.into()));
        };
        let root = open::open_root(&self.root, Access::Create)?;
        let fresh = open::open_file(
            &root,
            &self.root,
            components,
            0,
            Access::Create,
            Allocation::Sparse,
            &mut false,
        )?;
        *slot.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}
