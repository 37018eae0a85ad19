//! Building .torrent files from a file or directory, hashing on all cores.
