//! Spreading independent work over the machine's cores, keeping the results in order:
//! reading a tree's module files, checking and storing a publish's packages, compressing
//! and hashing index files side by side.

use std::any::Any;
use std::cell::Cell;

thread_local! {
    /// Set while this thread's work keeps to one core ([`on_one_core`]).
    static ONE_CORE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with [`map`] and [`both`] keeping to this thread: for work done beside
/// another that has the other cores (a publish renders its indexes on one core while
/// the store applies its batch on another).
pub fn on_one_core<T>(f: impl FnOnce() -> T) -> T {
    let was = ONE_CORE.replace(true);
    let out = f();
    ONE_CORE.set(was);
    out
}

/// `f` of each item, in the items' order, on every core when there are at least `min`
/// items (fewer are not worth a thread, nor asking for the core count, which reads
/// cgroup files). A thread that panics gives one `panicked(payload)` for its share.
pub fn map<T: Send, R: Send>(
    items: Vec<T>,
    min: usize,
    f: impl Fn(T) -> R + Sync,
    panicked: impl Fn(Box<dyn Any + Send>) -> R + Sync,
) -> Vec<R> {
    if items.len() < min.max(2) || ONE_CORE.get() {
        return items.into_iter().map(f).collect();
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads < 2 {
        return items.into_iter().map(f).collect();
    }
    let size = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(size).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let f = &f;
                s.spawn(move || chunk.into_iter().map(f).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| vec![panicked(p)]))
            .collect()
    })
}

/// Runs `a` on another thread and `b` on this one; both results. A panic in `a` goes on
/// in the caller.
pub fn both<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    if ONE_CORE.get() {
        return (a(), b());
    }
    std::thread::scope(|s| {
        let other = s.spawn(a);
        let mine = b();
        let theirs = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (theirs, mine)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u32> = (0..1000).collect();
        let doubled = super::map(items, 8, |i| i * 2, |_| u32::MAX);
        assert_eq!(doubled, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(super::map(vec![3], 8, |i| i + 1, |_| 0), [4]);
    }

    #[test]
    fn on_one_core_work_stays_on_this_thread() {
        let me = std::thread::current().id();
        let (a, b) = super::on_one_core(|| {
            super::both(
                || std::thread::current().id(),
                || std::thread::current().id(),
            )
        });
        assert_eq!((a, b), (me, me));
        let threads = super::on_one_core(|| {
            super::map(
                (0..100).collect(),
                2,
                |_| std::thread::current().id(),
                |_| me,
            )
        });
        assert!(threads.iter().all(|t| *t == me));
        // And only inside.
        let (a, _) = super::both(|| std::thread::current().id(), || ());
        assert_ne!(a, me);
    }
}
