//! The `gradcam` command line: explain what a CNN looks at, list a model's layers.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    if let Err(e) = cli::run(args) {
        // One clear line, non-zero exit.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
