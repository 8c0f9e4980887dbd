//! The `hookyard` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hookyard::config::Config;

#[derive(Parser)]
#[command(
    name = "hookyard",
    version,
    about = "A self-hosted webhook router with WebAssembly plugins"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive, store, route and deliver webhooks.
    Serve {
        /// The TOML config file.
        #[arg(short, long, env = "HOOKYARD_CONFIG", default_value = "hookyard.toml")]
        config: PathBuf,
    },
    /// A local webhook receiver that prints deliveries and checks signatures.
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
        /// The target's `whsec_` secret, to verify signatures.
        #[arg(long, env = "HOOKYARD_SINK_SECRET")]
        secret: Option<String>,
        /// HTTP status to answer with (e.g. 503 to watch retries).
        #[arg(long, default_value_t = 200)]
        status: u16,
    },
    /// Validate a config file (and that its plugins exist) without serving.
    Check {
        #[arg(short, long, env = "HOOKYARD_CONFIG", default_value = "hookyard.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKYARD_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve { config } => Config::load(&config).and_then(|config| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(hookyard::server::serve(config))
        }),
        Command::Sink {
            listen,
            secret,
            status,
        } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(hookyard::cli::sink::run(listen, secret, status))),
        Command::Check { config } => Config::load(&config).map(|c| {
            println!(
                "config ok: {} sources, {} targets",
                c.sources.len(),
                c.targets.len()
            );
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
