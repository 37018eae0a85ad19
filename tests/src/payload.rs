//! Test payloads: seeded random files/trees, SHA-1 digests, byte-for-byte tree comparison.

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const CHUNK: usize = 1 << 20;

/// Writes `len` pseudo-random bytes (deterministic for `seed`) to `path`, creating parents.
pub fn write_random_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Creates a directory `root` holding `files` (relative path, length); returns the total size.
pub fn make_tree(root: &Path, files: &[(&str, u64)], seed: u64) -> Result<u64> {
    let mut total = 0;
    for (i, (rel, len)) in files.iter().enumerate() {
        write_random_file(&root.join(rel), *len, seed.wrapping_add(i as u64))?;
        total += len;
    }
    Ok(total)
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-1 (hex) and length of a file.
pub fn sha1_file(path: &Path) -> Result<(String, u64)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha1::new();
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(&h.finalize()), len))
}

/// Every regular file under `root` (or `root` itself if it is a file): relative path -> (sha1, len).
pub fn tree_digest(root: &Path) -> Result<BTreeMap<PathBuf, (String, u64)>> {
    let mut out = BTreeMap::new();
    let meta = std::fs::metadata(root).with_context(|| format!("stat {}", root.display()))?;
    if meta.is_file() {
        out.insert(PathBuf::new(), sha1_file(root)?);
        return Ok(out);
    }
    let mut stack = vec![root.to_path_buf()];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 100_000 {
            bail!("too many directories under {}", root.display());
        }
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let ft = e.file_type()?;
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let rel = p.strip_prefix(root)?.to_path_buf();
                out.insert(rel, sha1_file(&p)?);
            }
        }
    }
    Ok(out)
}

/// Errors unless `got` holds exactly the files of `want`, with identical bytes.
pub fn assert_same_tree(want: &Path, got: &Path) -> Result<()> {
    let a = tree_digest(want)?;
    let b = tree_digest(got).with_context(|| format!("downloaded tree {}", got.display()))?;
    if a.is_empty() {
        bail!("reference tree {} is empty", want.display());
    }
    let mut problems = Vec::new();
    for (rel, (sha, len)) in &a {
        match b.get(rel) {
            None => problems.push(format!("missing {}", rel.display())),
            Some((s2, l2)) if s2 != sha || l2 != len => problems.push(format!(
                "{}: want sha1 {sha} len {len}, got sha1 {s2} len {l2}",
                rel.display()
            )),
            Some(_) => {}
        }
    }
    for rel in b.keys() {
        if !a.contains_key(rel) {
            problems.push(format!("unexpected file {}", rel.display()));
        }
    }
    if !problems.is_empty() {
        bail!(
            "{} differs from {}:\n  {}",
            got.display(),
            want.display(),
            problems.join("\n  ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_diff_detected() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("b");
        make_tree(&a, &[("x", 3_000_000), ("sub/y", 17)], 7).unwrap();
        make_tree(&b, &[("x", 3_000_000), ("sub/y", 17)], 7).unwrap();
        assert_same_tree(&a, &b).unwrap();
        // Flip one byte in the middle: must be detected.
        let p = b.join("x");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[1_500_000] ^= 1;
        std::fs::write(&p, bytes).unwrap();
        assert!(assert_same_tree(&a, &b).is_err());
        // A missing file too.
        std::fs::remove_file(b.join("sub/y")).unwrap();
        assert!(assert_same_tree(&a, &b).is_err());
    }

    #[test]
    fn sha1_of_known_input() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha1_file(&p).unwrap(),
            ("a9993e364706816aba3e25717850c26c9cd0d89d".to_string(), 3)
        );
    }
}
