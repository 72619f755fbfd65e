//! Compressors for tarballs and DEB members, behind one writer type.

use std::cell::RefCell;
use std::io::{self, Write};

use flate2::{Compress, Crc, FlushCompress, Status};

use super::spec::{Algorithm, Compression};

/// A writer compressing into `W` with the chosen algorithm and level.
pub enum Encoder<W: Write> {
    Gzip(Gzip<W>),
    Zstd(zstd::Encoder<'static, W>),
    Xz(xz2::write::XzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(inner: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c.algorithm {
            Algorithm::Gzip => Encoder::Gzip(Gzip::new(inner, c.level)?),
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

thread_local! {
    /// The last deflate state this thread used, kept for the next stream: a level-9
    /// state is ~300 KB that a fresh allocation has to fault in and zero, which costs
    /// more than deflating a small package's data.
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

/// A gzip member written like `gzip -n`: no name, mtime 0, OS Unix, so the same input
/// always gives the same bytes.
pub struct Gzip<W: Write> {
    inner: W,
    level: u32,
    z: Option<Compress>,
    crc: Crc,
    out: Vec<u8>,
}

const GZIP_CHUNK: usize = 64 * 1024;

impl<W: Write> Gzip<W> {
    fn new(mut inner: W, level: u32) -> io::Result<Gzip<W>> {
        let z = match DEFLATE.with(|d| d.borrow_mut().take()) {
            Some((l, mut z)) if l == level => {
                z.reset();
                z
            }
            _ => Compress::new(flate2::Compression::new(level), false),
        };
        // XFL says "maximum compression" at 9 and "fastest" at 1, as gzip sets it.
        let xfl = match level {
            9.. => 2,
            0 | 1 => 4,
            _ => 0,
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 3])?;
        Ok(Gzip {
            inner,
            level,
            z: Some(z),
            crc: Crc::new(),
            out: Vec::with_capacity(GZIP_CHUNK),
        })
    }

    fn deflate(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<()> {
        let Some(z) = self.z.as_mut() else {
            return Err(io::Error::other("gzip stream already finished"));
        };
        loop {
            if self.out.capacity() - self.out.len() < 1024 {
                self.inner.write_all(&self.out)?;
                self.out.clear();
            }
            let before = z.total_in();
            let status = z
                .compress_vec(input, &mut self.out, flush)
                .map_err(io::Error::other)?;
            input = &input[(z.total_in() - before) as usize..];
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => input.is_empty(),
            };
            if done {
                return Ok(());
            }
        }
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.deflate(&[], FlushCompress::Finish)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.extend_from_slice(&trailer);
        self.inner.write_all(&self.out)?;
        if let Some(z) = self.z.take() {
            let level = self.level;
            DEFLATE.with(|d| *d.borrow_mut() = Some((level, z)));
        }
        // `Gzip` has no Drop, so the writer can be moved out.
        Ok(self.inner)
    }
}

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.crc.update(buf);
        self.deflate(buf, FlushCompress::None)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.out)?;
        self.out.clear();
        self.inner.flush()
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

/// Compresses a whole buffer. Knowing the size up front lets xz and zstd size their
/// windows to it: the same output format, without allocating and clearing tens of
/// megabytes to compress a few kilobytes.
pub fn compress(data: &[u8], c: Compression) -> io::Result<Vec<u8>> {
    let out = Vec::with_capacity(data.len() / 2 + 64);
    let mut e = match c.algorithm {
        Algorithm::Gzip => Encoder::new(out, c)?,
        Algorithm::Zstd => {
            let mut z = zstd::Encoder::new(out, c.level as i32)?;
            z.include_checksum(true)?;
            z.set_pledged_src_size(Some(data.len() as u64))?;
            Encoder::Zstd(z)
        }
        Algorithm::Xz => {
            let mut opts =
                xz2::stream::LzmaOptions::new_preset(c.level).map_err(io::Error::other)?;
            // A dictionary larger than the input buys nothing; xz's own floor is 4 KiB.
            let fit = u32::try_from(data.len().next_power_of_two()).unwrap_or(u32::MAX);
            opts.dict_size(fit.clamp(4096, 8 << 20));
            let mut filters = xz2::stream::Filters::new();
            filters.lzma2(&opts);
            let stream =
                xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc64)
                    .map_err(io::Error::other)?;
            Encoder::Xz(xz2::write::XzEncoder::new_stream(out, stream))
        }
    };
    e.write_all(data)?;
    e.finish()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_round_trips_and_a_reused_state_gives_the_same_bytes() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} {}\n", i % 977, i % 13).into_bytes())
            .collect();
        let gz = |level| Compression {
            algorithm: Algorithm::Gzip,
            level,
        };
        // The first stream gets a fresh state, the second the reset one.
        let first = compress(&text, gz(9)).unwrap();
        let second = compress(&text, gz(9)).unwrap();
        assert_eq!(first, second);
        assert_eq!(gunzip(&first), text);
        assert_eq!(&first[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(first[9], 3, "OS must be Unix");
        // A different level in between does not leak into the next level-9 stream.
        let fast = compress(&text, gz(1)).unwrap();
        assert_eq!(gunzip(&fast), text);
        assert!(fast.len() > first.len());
        assert_eq!(compress(&text, gz(9)).unwrap(), first);
        assert_eq!(gunzip(&compress(b"", gz(6)).unwrap()), b"");
    }
}
