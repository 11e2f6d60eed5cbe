//! The `gradcam` command line: explain what a CNN looks at, list a model's layers.

mod cli;

use clap::Parser;

fn main() {
    // Many passes of megabyte buffers: reuse freed memory instead of page-faulting fresh maps every layer.
    gradcam_kernels::memory::keep_freed_memory();
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        // A closed pipe (`gradcam layers | head`) is not an error.
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return;
        }
        // One clear line, non-zero exit: the chain of causes, each said once (a typed error that already quotes
        // its source is not followed by the source again).
        eprintln!("error: {}", cli::one_line(&e));
        std::process::exit(1);
    }
}
