//! The URL a file of a torrent is fetched from (BEP 19).
//!
//! Single-file torrent: the web seed's URL is the file, unless it ends in
//! `/`, in which case the torrent's name is appended. Multi-file torrent: the
//! URL is a directory; the name and then the file's path are appended, each
//! component percent-encoded (a `/` is added first when the URL lacks it,
//! as libtorrent does).

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::metainfo::Info;

/// Escaped in a path component: everything RFC 3986 does not allow in a
/// segment unescaped, and `/`, `?`, `#`, `%` so a name cannot change the URL's shape.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// The URL of file `file` (an index into `info.files`) on the web seed at
/// `base`; `None` for an index out of range.
///
/// The path is the one the torrent names after loading (`FileEntry::path`,
/// whose first component is the torrent's name); for a torrent whose names
/// were made safe on load ([`Info::notes`]) that may differ from the name on
/// the server, and the seed then fails for that file.
pub fn file_url(base: &str, info: &Info, file: usize) -> Option<String> {
    let entry = info.files.get(file)?;
    let mut url = base.to_owned();
    if !info.is_multi_file() {
        if url.ends_with('/') {
            url.push_str(&encode(&info.name));
        }
        return Some(url);
    }
    if !url.ends_with('/') {
        url.push('/');
    }
    let parts: Vec<String> = entry.path.iter().map(|c| encode(c)).collect();
    url.push_str(&parts.join("/"));
    Some(url)
}

fn encode(component: &str) -> String {
    utf8_percent_encode(component, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::FileEntry;

    fn info(files: &[(&[&str], u64)]) -> Info {
        let mut offset = 0;
        let files = files
            .iter()
            .map(|(p, len)| {
                let e = FileEntry {
                    path: p.iter().map(|s| s.to_string()).collect(),
                    length: *len,
                    offset,
                    pad: false,
                };
                offset += len;
                e
            })
            .collect();
        Info {
            name: "top dir".into(),
            piece_length: 16384,
            piece_hashes: vec![[0; 20]],
            files,
            total_length: offset,
            private: false,
            notes: Vec::new(),
        }
    }

    #[test]
    fn single_file_is_the_url_or_url_plus_name() {
        let mut i = info(&[(&["top dir"], 10)]);
        i.name = "a b#?.iso".into();
        i.files[0].path = vec![i.name.clone()];
        assert_eq!(file_url("http://h/x.iso", &i, 0).unwrap(), "http://h/x.iso");
        assert_eq!(
            file_url("http://h/pub/", &i, 0).unwrap(),
            "http://h/pub/a%20b%23%3F.iso"
        );
        assert_eq!(file_url("http://h/pub/", &i, 1), None);
    }

    #[test]
    fn multi_file_appends_name_and_path() {
        let i = info(&[
            (&["top dir", "sub", "f 1%.bin"], 10),
            (&["top dir", "g"], 5),
        ]);
        assert_eq!(
            file_url("http://h/pub/", &i, 0).unwrap(),
            "http://h/pub/top%20dir/sub/f%201%25.bin"
        );
        assert_eq!(
            file_url("https://h/pub", &i, 1).unwrap(),
            "https://h/pub/top%20dir/g"
        );
    }
}
