//! The `rdb` command line. The node is not built yet: today the binary only
//! reports its version, so that packaging and CI have a real target.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("rdb {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "rdb {}: the node (`rdb serve`, `rdb dev`) is not implemented yet; \
                 only the storage layer exists. Usage: rdb --version",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
