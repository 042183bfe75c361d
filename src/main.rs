//! The `rdb` command line: parses flags and hands over to [`rdb::cli`].

use std::process::ExitCode;

use clap::Parser;
use rdb::cli::{Cli, Cmd, DevOptions};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(args) => args.resolve().and_then(|config| rdb::cli::serve(&config)),
        Cmd::Dev(args) => rdb::cli::dev(&DevOptions {
            nodes: args.nodes,
            data_dir: args.data_dir,
            http_port: args.http_port,
            raft_port: args.raft_port,
            tls: args.tls,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("rdb: {why}");
            ExitCode::from(2)
        }
    }
}
