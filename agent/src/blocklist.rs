//! Loads the configured IP blocklists (`blocklist = "path"` or a list):
//! gzip or plain, parsed by `capwise_proto::blocklist`; bad lines are
//! counted and logged, a missing or unreadable file stops the start (a
//! list the user asked for is not silently dropped).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use capwise_engine::blocklist::Blocklist;

/// The most a list may take unpacked: the largest public lists are a few
/// tens of megabytes; a gzip bomb stops here.
const MAX_BYTES: u64 = 256 * 1024 * 1024;

/// The union of the lists at `paths`.
pub fn load(paths: &[PathBuf]) -> Result<Blocklist> {
    let mut all = Blocklist::default();
    for path in paths {
        let bytes = read(path)?;
        let parsed = Blocklist::parse(&bytes);
        if parsed.bad_lines > 0 {
            tracing::warn!(
                path = %path.display(),
                bad_lines = parsed.bad_lines,
                first = parsed.first_bad_line,
                "blocklist lines not understood were skipped"
            );
        }
        tracing::info!(
            path = %path.display(),
            ranges = parsed.list.ranges().len(),
            addresses = parsed.list.addresses(),
            "blocklist loaded"
        );
        all = all.union(&parsed.list);
    }
    Ok(all)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the blocklist {}", path.display()))?;
    let mut raw = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut raw)
        .with_context(|| format!("cannot read the blocklist {}", path.display()))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .take(MAX_BYTES + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("the blocklist {} is not valid gzip", path.display()))?;
        out
    } else {
        raw
    };
    if bytes.len() as u64 > MAX_BYTES {
        bail!(
            "the blocklist {} is over {} MiB unpacked",
            path.display(),
            MAX_BYTES >> 20
        );
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn loads_plain_and_gzip_lists_together() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("a.p2p");
        std::fs::write(&plain, "x:1.2.3.0-1.2.3.255\nnot a line\n").unwrap();
        let packed = dir.path().join("b.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"10.0.0.0/8\n").unwrap();
        std::fs::write(&packed, gz.finish().unwrap()).unwrap();
        let list = load(&[plain, packed]).unwrap();
        assert!(list.contains("1.2.3.9".parse().unwrap()));
        assert!(list.contains("10.9.9.9".parse().unwrap()));
        assert!(!list.contains("11.0.0.0".parse().unwrap()));
        let missing = load(&[dir.path().join("nope")]).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot open the blocklist"));
    }

    #[test]
    fn the_config_takes_one_path_or_several() {
        let one =
            crate::config::parse("blocklist = \"/a.p2p\"\n[net]\nport_mapping = false\n").unwrap();
        assert!(one.config.warnings.is_empty(), "{:?}", one.config.warnings);
        assert_eq!(
            one.config.blocklist.as_ref().unwrap().as_slice(),
            [PathBuf::from("/a.p2p")]
        );
        assert!(!one.config.port_mapping_enabled());
        let many = crate::config::parse("blocklist = [\"/a\", \"/b.gz\"]\n").unwrap();
        assert_eq!(many.config.blocklist.as_ref().unwrap().as_slice().len(), 2);
        assert!(many.config.port_mapping_enabled());
    }
}
