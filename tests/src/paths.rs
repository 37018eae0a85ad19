//! Where things are: workspace root, helper scripts, the capwise binary, the system python.

use std::path::PathBuf;

/// Debian's python with python3-libtorrent (not a pyenv `python3` that may be first on PATH).
pub const PYTHON: &str = "/usr/bin/python3";

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// A helper script under `tests/interop/`.
pub fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(name)
}

/// The release `capwise` binary: `$CAPWISE_BIN`, else `$CARGO_TARGET_DIR/release/capwise`,
/// else `target/release/capwise` under the workspace root.
pub fn capwise_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CAPWISE_BIN") {
        return PathBuf::from(p);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => {
            let t = PathBuf::from(t);
            if t.is_absolute() {
                t
            } else {
                workspace_root().join(t)
            }
        }
        None => workspace_root().join("target"),
    };
    target.join("release").join("capwise")
}
