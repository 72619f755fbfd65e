//! The `packyard` binary: everything lives in the library; this only hands over.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    packyard::cli::main()
}
