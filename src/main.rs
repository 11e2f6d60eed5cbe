//! The `gradcam` command line: explain what a CNN looks at, list a model's layers.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        // A closed pipe (`gradcam layers | head`) is not an error.
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) {
            return;
        }
        // One clear line, non-zero exit.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
