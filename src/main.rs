//! `pinetd`: the daemon and its client subcommands.

use std::process::ExitCode;

use clap::Parser;
use pinetd::cli::{Cli, Command};
use pinetd::config::Config;
use pinetd::{client, logging, process};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => daemon(cli.config),
        Some(Command::Check { config }) => check(&config),
        Some(Command::GenerateAssets { out_dir }) => match pinetd::cli::generate_assets(&out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pinetd: cannot write to {}: {e}", out_dir.display());
                ExitCode::FAILURE
            }
        },
        Some(Command::Status { config, json }) => {
            logging::init("warn");
            client_runtime(async move { client::status::main(config, json).await })
        }
        Some(Command::Doctor { config, host, lan }) => {
            logging::init("warn");
            let side = pinetd::doctor::side(config, host, lan, pinetd::doctor::looks_like_a_pi);
            client_runtime(pinetd::doctor::main(side))
        }
        Some(Command::Chat { host, port, name }) => {
            logging::init("warn");
            client_runtime(async move { client::chat::main(&host, port, name).await })
        }
        Some(Command::Json { host, port, count }) => {
            logging::init("warn");
            client_runtime(async move { client::json::main(&host, port, count).await })
        }
        Some(Command::Listen { port, json, count }) => {
            logging::init("warn");
            client_runtime(async move { client::listen::main(port, json, count).await })
        }
        Some(Command::Discover {
            port,
            timeout,
            to,
            json,
            require,
        }) => {
            logging::init("warn");
            client_runtime(
                async move { client::discover::main(to, port, timeout, json, require).await },
            )
        }
        Some(Command::Udp {
            host,
            port,
            message,
            timeout,
        }) => {
            logging::init("warn");
            client_runtime(async move { client::udp::main(&host, port, &message, timeout).await })
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(mut config) => {
            if let Some(warning) = config.fit_open_files(process::open_files_limit()) {
                eprintln!("{}: warning: {warning}", path.display());
            }
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: {} problem(s)", path.display(), e.problems.len());
            ExitCode::FAILURE
        }
    }
}

fn daemon(path: Option<std::path::PathBuf>) -> ExitCode {
    let config = match &path {
        Some(path) => match Config::load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    let log = logging::init(&config.daemon.log);
    // One thread, like Redis: the services are bound by system calls, which
    // batching cuts; a second worker only burns a core polling epoll for
    // readiness the busy one already has (UDP echo: 290 k/s on one thread,
    // 180 k/s on two, measured with examples/udp_load).
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(process::run(path, config, log)),
        Err(e) => {
            eprintln!("pinetd: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command on a small runtime; its error is the exit message.
fn client_runtime<E: std::fmt::Display>(
    work: impl std::future::Future<Output = Result<(), E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pinetd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(work);
    // A read of stdin may still be blocked in its thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinetd: {e}");
            ExitCode::FAILURE
        }
    }
}
