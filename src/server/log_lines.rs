//! Where the server's log lines go. At a terminal, each line at once; into a file or a
//! pipe, lines are gathered in memory and written in blocks of up to 64 KiB, at least
//! once a second (as nginx's `access_log ... buffer=64k flush=1s`): a line a request then
//! costs a copy, not a system call under the lock the workers queue on. Warnings and
//! errors are written at once, with whatever was gathered before them; a stopping server
//! writes the rest ([`flush`]).

use std::io::{self, Write};
use std::sync::Mutex;
use std::time::Duration;

use tracing::{Level, Metadata};

/// Gathered lines are written when they reach this size...
const BLOCK: usize = 64 << 10;
/// ...or this long after the last write, whichever comes first.
const EVERY: Duration = Duration::from_secs(1);

/// Lines not yet written, in the order they were logged.
static GATHERED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Appends `line`; writes out all gathered lines when `now` or when they fill a block.
/// The lock is held while writing, so blocks leave in order.
fn push(line: &[u8], now: bool, out: &mut dyn Write) -> io::Result<()> {
    let mut lines = GATHERED.lock().unwrap_or_else(|p| p.into_inner());
    lines.extend_from_slice(line);
    if now || lines.len() >= BLOCK {
        write_out(&mut lines, out)?;
    }
    Ok(())
}

fn write_out(lines: &mut Vec<u8>, out: &mut dyn Write) -> io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let r = out.write_all(lines);
    lines.clear();
    r
}

/// Writes the lines gathered so far.
pub fn flush() {
    let _ = push(&[], true, &mut io::stderr());
}

/// The `tracing` writer of the server's log: gathering (into a file or a pipe) or not
/// (at a terminal). A gathering one starts the thread that writes once a second.
#[derive(Clone, Copy)]
pub struct LogLines {
    gather: bool,
}

impl LogLines {
    pub fn new(gather: bool) -> LogLines {
        if gather {
            let _ = std::thread::Builder::new()
                .name("log-lines".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(EVERY);
                        flush();
                    }
                });
        }
        LogLines { gather }
    }
}

/// One event's line, as the formatter writes it.
pub struct Line {
    now: bool,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        push(buf, self.now, &mut io::stderr())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogLines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { now: !self.gather }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            now: at_once(self.gather, meta.level()),
        }
    }
}

/// Whether a line of `level` is written at once.
fn at_once(gather: bool, level: &Level) -> bool {
    // Levels order by verbosity: WARN and ERROR are the ones at or below WARN.
    !gather || *level <= Level::WARN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_leave_in_blocks_in_order_and_at_once_when_urgent() {
        let mut out = Vec::new();
        push(b"one\n", false, &mut out).unwrap();
        push(b"two\n", false, &mut out).unwrap();
        assert!(out.is_empty());
        push(b"warning\n", true, &mut out).unwrap();
        assert_eq!(out, b"one\ntwo\nwarning\n");
        out.clear();
        let line = vec![b'x'; 1000];
        let mut pushed = 0;
        while out.is_empty() {
            push(&line, false, &mut out).unwrap();
            pushed += line.len();
        }
        assert_eq!(out.len(), pushed);
        assert!(out.len() >= BLOCK && out.len() < BLOCK + line.len());
        assert!(GATHERED.lock().unwrap().is_empty());
    }

    #[test]
    fn warnings_and_errors_are_urgent() {
        assert!(!at_once(true, &Level::INFO));
        assert!(!at_once(true, &Level::DEBUG));
        assert!(at_once(true, &Level::WARN));
        assert!(at_once(true, &Level::ERROR));
        assert!(at_once(false, &Level::INFO));
    }
}
