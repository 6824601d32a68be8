//! The `patron` command. All work happens in the library; this only maps the
//! outcome to an exit code: 0 ok, 1 runtime failure, 2 bad usage or input.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: an import allocates rows on the reader
/// thread and frees them on the writer, which glibc handles slowly (it cost a
/// third of the import time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    patron::db::sqlite_without_memory_count();
    let cli = patron::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(patron::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(patron::cli::exit_code(&error))
        }
    }
}
