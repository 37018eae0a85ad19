//! Pieces onto files: reads and writes across file boundaries, verification,
//! resume data. Never touches a path outside the download directory.
