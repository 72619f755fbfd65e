//! Progress of long work (packing, publishing): the library reports it through this
//! trait, the CLI draws a bar, everything else stays silent.

/// Reports progress; every method defaults to doing nothing.
pub trait Progress: Sync {
    /// A phase starts with `total` units (bytes) to go.
    fn start(&self, _phase: &str, _total: u64) {}
    /// The phase turns out to have `n` more units (a download's length, once known).
    fn grow(&self, _n: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
    /// Whether anyone sees the totals given to [`Progress::start`]: where working one out
    /// costs (a `stat` per file), a caller passes 0 when no one does.
    fn shown(&self) -> bool {
        false
    }
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}
