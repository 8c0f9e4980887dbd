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
    /// Write and try plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Validate a config file (and that its plugins exist) without serving.
    Check {
        #[arg(short, long, env = "HOOKYARD_CONFIG", default_value = "hookyard.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin skeleton that builds as generated.
    New {
        /// Plugin name (lower-case, digits, '-'); also the .wasm file name.
        name: String,
        /// Language of the skeleton.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Directory to create the skeleton in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Run a plugin once on a sample event and print its decision and logs.
    Test {
        /// The plugin component (<name>.wasm).
        wasm: PathBuf,
        /// A raw body file, or a JSON event description
        /// ({"body": ..., "headers": {...}, "source": ..., ...}).
        #[arg(long)]
        event: Option<PathBuf>,
        /// Treat --event as a raw body even if it looks like a description.
        #[arg(long)]
        raw: bool,
        /// The source name the event pretends to come from.
        #[arg(long, default_value = "test")]
        source: String,
        /// Extra request header, 'name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Plugin config entry key=value (repeatable).
        #[arg(long = "config")]
        config: Vec<String>,
        /// Call time limit (default 1s).
        #[arg(long)]
        timeout: Option<String>,
        /// Memory limit (default 64MiB).
        #[arg(long)]
        memory: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `plugin test` prints the plugin's log lines itself.
    let default_filter = match cli.command {
        Command::Plugin(_) => "warn",
        _ => "info,wasmtime=warn,cranelift=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HOOKYARD_LOG")
                .unwrap_or_else(|_| default_filter.into()),
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
        Command::Plugin(PluginCommand::New { name, lang, dir }) => {
            hookyard::cli::plugin_new::run(&name, &lang, &dir).map(|root| {
                println!(
                    "created {} ({lang}); build it with {}/build.sh",
                    root.display(),
                    root.display()
                );
            })
        }
        Command::Plugin(PluginCommand::Test {
            wasm,
            event,
            raw,
            source,
            headers,
            config,
            timeout,
            memory,
            json,
        }) => {
            let run = hookyard::cli::plugin_test::TestRun {
                wasm,
                event,
                raw,
                source,
                headers,
                config,
                timeout,
                memory,
                json,
            };
            match hookyard::cli::plugin_test::run(run) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
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
