//! The `packyard` binary: everything lives in the library; this only hands over.

use std::io::Write;
use std::process::ExitCode;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = packyard::cli::main();
    // Every value the command held is dropped by now (its store closed, its files
    // written); what is left is the allocator's exit-time sweep, which hands each freed
    // page back to the system one by one before the process goes: 35 ms after a publish
    // of 20,000 packages, for memory `exit` returns anyway. Stop without it.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let status = (0..=u8::MAX)
        .find(|&c| ExitCode::from(c) == code)
        .map_or(1, i32::from);
    // SAFETY: `_exit` ends the process; nothing runs after it, and nothing of ours
    // waits on an exit handler (the standard streams were flushed above).
    unsafe { libc::_exit(status) }
}
