//! The `rdb` command line: parses flags and hands over to [`rdb::cli`].

use std::process::ExitCode;

use clap::Parser;
use rdb::cli::logging::LogFormat;
use rdb::cli::{Cli, Cmd, DevOptions};

/// mimalloc instead of the system allocator: a node's threads hand buffers
/// to one another (HTTP task -> event loop -> apply thread -> HTTP task),
/// and glibc's malloc spent ~11% of a loaded 3-node cluster's CPU on it
/// (perf, `benches/cluster/compare.sh` put load); see docs/PERFORMANCE.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    rdb::cli::logging::init(log_format);
    let client_command = match &cli.command {
        Cmd::Member { command, client } => Some(rdb::cli::member::member(command, client)),
        Cmd::Leader { command, client } => Some(rdb::cli::member::leader(command, client)),
        Cmd::Status { client } => Some(rdb::cli::status::status(client)),
        Cmd::Inspect(args) => Some(rdb::cli::inspect::inspect(args)),
        Cmd::Snapshot { command } => Some(rdb::cli::snapshot::snapshot(command)),
        Cmd::Bench(args) => Some(rdb::cli::bench::bench(args)),
        Cmd::Kv(command) => Some(rdb::cli::kv::run(command)),
        _ => None,
    };
    if let Some(outcome) = client_command {
        return match outcome {
            Ok(out) => {
                // Nothing found prints nothing (not an empty line), as ls does.
                // A reader that went away (`| head`) is no error of ours.
                if !out.is_empty() {
                    use std::io::Write as _;
                    let _ = writeln!(std::io::stdout(), "{out}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("rdb: {}", error.message());
                ExitCode::from(error.exit_code())
            }
        };
    }
    let result = match cli.command {
        Cmd::Serve(args) => args.resolve().and_then(|config| rdb::cli::serve(&config)),
        Cmd::Dev(args) => rdb::cli::dev(&DevOptions {
            nodes: args.nodes,
            data_dir: args.data_dir,
            http_port: args.http_port,
            raft_port: args.raft_port,
            tls: args.tls,
            haproxy_port: args.haproxy.then_some(args.haproxy_port),
            log_format: cli.log_format,
        }),
        Cmd::Member { .. }
        | Cmd::Leader { .. }
        | Cmd::Status { .. }
        | Cmd::Inspect(_)
        | Cmd::Snapshot { .. }
        | Cmd::Bench(_)
        | Cmd::Kv(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            // A log shipper reading JSON lines gets the reason as one too.
            let lines = std::iter::once(why.to_string()).chain(why.hint().map(String::from));
            for line in lines {
                match log_format {
                    LogFormat::Json => log::error!("{line}"),
                    LogFormat::Text => eprintln!("rdb: {line}"),
                }
            }
            ExitCode::from(2)
        }
    }
}
