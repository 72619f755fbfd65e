//! Compressors for tarballs and DEB members, behind one writer type.

use std::io::{self, Write};

use super::spec::{Algorithm, Compression};

/// A writer compressing into `W` with the chosen algorithm and level.
pub enum Encoder<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
    Xz(xz2::write::XzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(inner: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c.algorithm {
            // A fixed header (no name, mtime 0, Unix) keeps output reproducible, like gzip -n.
            Algorithm::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .operating_system(3)
                    .write(inner, flate2::Compression::new(c.level)),
            ),
            Algorithm::Zstd => {
                let mut e = zstd::Encoder::new(inner, c.level as i32)?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Algorithm::Xz => Encoder::Xz(xz2::write::XzEncoder::new(inner, c.level)),
        })
    }

    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
        }
    }
}

/// The file name extension of a compressed member (`data.tar.gz`).
pub fn extension(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Gzip => "gz",
        Algorithm::Zstd => "zst",
        Algorithm::Xz => "xz",
    }
}

/// Compresses a whole buffer.
pub fn compress(data: &[u8], c: Compression) -> io::Result<Vec<u8>> {
    let mut e = Encoder::new(Vec::with_capacity(data.len() / 2 + 64), c)?;
    e.write_all(data)?;
    e.finish()
}
