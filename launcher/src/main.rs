use clap::Parser;

/// cmesh launcher: runs a mesh of peer containers and merges their reports.
#[derive(Parser)]
#[command(name = "launcher", version)]
struct Args {}

fn main() {
    Args::parse();
}
