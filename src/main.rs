//! The `hookyard` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use hookyard::config::Config;
use hookyard::store::sled::engine::Engine;

/// mimalloc instead of glibc malloc: the router allocates and frees many
/// small buffers per event (sled's copy-on-write nodes, JSON, HTTP), and
/// glibc's malloc/free/consolidate took ~14 % of the router's CPU in the
/// end-to-end benchmark.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hookyard",
    version,
    about = "A self-hosted webhook router with WebAssembly plugins"
)]
struct Cli {
    /// Log line format on stderr: text for people, json (one object per
    /// line) for log collectors.
    #[arg(
        long,
        env = "HOOKYARD_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// POST a body signed as a provider signs it (github, stripe,
    /// standard-webhooks, shopify, slack, hmac, basic, token).
    Send {
        /// Where to send, e.g. http://127.0.0.1:8080/hooks/github
        url: String,
        /// Provider signature scheme; omit to send unsigned.
        #[arg(long)]
        scheme: Option<String>,
        /// The shared secret (or env:NAME).
        #[arg(long, env = "HOOKYARD_SEND_SECRET")]
        secret: Option<String>,
        /// Body from a file.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Body inline.
        #[arg(long, short = 'd')]
        data: Option<String>,
        /// Extra header 'name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// hmac: signature header; token: the header carrying the token.
        #[arg(long)]
        signature_header: Option<String>,
        /// hmac: sha256 | sha1 | sha512.
        #[arg(long)]
        algorithm: Option<String>,
        /// hmac: hex | base64.
        #[arg(long)]
        encoding: Option<String>,
        /// hmac: text before the signature, e.g. "sha256=".
        #[arg(long)]
        prefix: Option<String>,
        /// basic: the user name (the secret is the password).
        #[arg(long)]
        username: Option<String>,
        /// Delivery id (standard-webhooks webhook-id, x-github-delivery, ...).
        #[arg(long)]
        id: Option<String>,
    },
    /// Write and try plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Validate a config file (and that its plugins exist) without serving.
    Check {
        #[arg(short, long, env = "HOOKYARD_CONFIG", default_value = "hookyard.toml")]
        config: PathBuf,
    },
    /// Work on the embedded store while hookyard is stopped.
    #[command(subcommand)]
    Store(StoreCommand),
    #[command(flatten)]
    Ops(hookyard::cli::ops::OpsCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Move the embedded store to another engine (sled or fjall), then
    /// set `[store] backend` to it. hookyard must be stopped; an
    /// interrupted run is safe to run again.
    Migrate {
        #[arg(short, long, env = "HOOKYARD_CONFIG", default_value = "hookyard.toml")]
        config: PathBuf,
        /// The engine to move to: sled or fjall.
        #[arg(long, value_parser = engine)]
        to: Engine,
    },
}

fn engine(name: &str) -> Result<Engine, String> {
    Engine::named(name).ok_or_else(|| {
        let known: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
        format!("not an embedded engine; one of {}", known.join(", "))
    })
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
    Test(hookyard::cli::plugin_test::TestRun),
    /// Install a component on a running hookyard: into its plugin
    /// directory, or in cluster mode into the database for every node.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// Plugin name (default: the file name without .wasm).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        conn: hookyard::cli::ops::Conn,
    },
    /// Compile a component read on stdin into a compiled cache: what
    /// `serve` runs in a child so the compiler's memory is not its own.
    #[command(name = hookyard::plugin::compile::SUBCOMMAND, hide = true)]
    CompileIntoCache {
        #[arg(long)]
        cache: PathBuf,
        #[arg(long)]
        fuel: bool,
    },
}

fn main() -> ExitCode {
    hookyard::memory::keep_heap_in_small_pages();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve { .. } | Command::Sink { .. }) {
        // A command whose output is piped into `head` ends when the pipe
        // closes, as other Unix tools do, instead of panicking in
        // `println!`. The servers keep SIGPIPE ignored. Sockets are not
        // affected: their writes never raise it (MSG_NOSIGNAL).
        // SAFETY: resetting a signal's disposition before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // `plugin test` prints the plugin's log lines itself, the admin
    // commands' output is their stdout, and `store migrate` prints its own
    // progress (the engines' info lines would bury it).
    let default_filter = match cli.command {
        Command::Plugin(_) | Command::Ops(_) | Command::Store(_) => "warn",
        _ => "info,wasmtime=warn,cranelift=warn",
    };
    init_logs(cli.log_format, default_filter);
    let result = match cli.command {
        Command::Serve { config } => Config::load(&config).and_then(|config| {
            if let Ok(exe) = std::env::current_exe() {
                hookyard::plugin::compile::compile_in_children(exe);
            }
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let served = rt.block_on(hookyard::server::serve(config));
            // A plugin call still running on a blocking thread (up to its
            // time limit) must not hold the exit: its event keeps its mark.
            rt.shutdown_timeout(std::time::Duration::from_millis(100));
            served
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
        Command::Send {
            url,
            scheme,
            secret,
            file,
            data,
            headers,
            signature_header,
            algorithm,
            encoding,
            prefix,
            username,
            id,
        } => {
            let send = hookyard::cli::send::Send {
                url,
                scheme,
                secret,
                file,
                data,
                headers,
                options: hookyard::source::verify::SignOptions {
                    header: signature_header,
                    algorithm,
                    encoding,
                    prefix,
                    username,
                    msg_id: id,
                },
            };
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(hookyard::cli::send::run(send)));
            match outcome {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::from(1),
                Err(e) => Err(e),
            }
        }
        Command::Plugin(PluginCommand::New { name, lang, dir }) => {
            hookyard::cli::plugin_new::run(&name, &lang, &dir).map(|root| {
                println!(
                    "created {} ({lang}); build it with {}/build.sh",
                    root.display(),
                    root.display()
                );
            })
        }
        Command::Plugin(PluginCommand::Push { file, name, conn }) => {
            hookyard::cli::ops::push_plugin(&file, name.as_deref(), &conn)
        }
        Command::Plugin(PluginCommand::CompileIntoCache { cache, fuel }) => {
            hookyard::plugin::compile::run_child(&cache, fuel)
        }
        Command::Plugin(PluginCommand::Test(run)) => match hookyard::cli::plugin_test::run(run) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Check { config } => Config::load(&config).and_then(|c| {
            // `serve` starts without a plugin (its events wait); a check
            // before a deploy says so up front.
            let missing = c.missing_plugins();
            if !missing.is_empty() {
                anyhow::bail!("{}", missing.join("\n"));
            }
            println!(
                "config ok: {} sources, {} targets",
                c.sources.len(),
                c.targets.len()
            );
            Ok(())
        }),
        Command::Store(StoreCommand::Migrate { config, to }) => {
            hookyard::cli::store_migrate::run(&config, to)
        }
        Command::Ops(op) => hookyard::cli::ops::run(op),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr so stdout stays the command's output. JSON puts each
/// event's fields at the top level of its object, next to the span it ran
/// in, which is what log collectors index.
fn init_logs(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOKYARD_LOG")
        .unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // When stderr cannot be written (a log file on a full disk), the
        // line is lost; reporting that would `eprintln!`, which panics on
        // the same error and took request handlers and the store's
        // recovery down with it.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
