//! The `sessiongate` command line: run, check, keygen, demo, healthcheck.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// jemalloc: hyper takes a fresh 8 KB buffer per request and connection
/// side, which glibc's malloc serves slowly; jemalloc's size classes do not
/// (about 5% more requests per CPU-second, same memory at 1,000 connections).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use sessiongate::Error;
use sessiongate::config::{Config, LogConfig, LogFormat, Secrets};

#[derive(Parser)]
#[command(
    name = "sessiongate",
    version,
    about = "A reverse proxy that gives session-less backends real sessions"
)]
struct Cli {
    /// The configuration file.
    #[arg(short, long, env = "CONFIG", default_value = sessiongate::config::DEFAULT_CONFIG_PATH, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the configuration, including the secret rules, and exit.
    Check,
    /// Print a fresh random secret for SESSION_SECRET.
    Keygen,
    /// Run the gateway with the cookie store in front of a built-in echo backend.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin_listen: SocketAddr,
    },
    /// Run only the built-in echo backend (the demo's upstream), e.g. behind a gateway in docker compose.
    Echo {
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
    },
    /// Probe the admin /healthz endpoint and exit 0 when it answers 200 (for container health checks).
    Healthcheck {
        /// The URL to probe; by default the configuration's admin.listen.
        #[arg(long)]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check => check(&cli.config),
        Command::Keygen => keygen(),
        Command::Demo {
            listen,
            admin_listen,
        } => demo(listen, admin_listen),
        Command::Echo { listen } => echo(listen),
        Command::Healthcheck { url } => healthcheck(&cli.config, url),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sessiongate: {error}");
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads the configuration and its secrets. Logging starts in between, so
/// that a warning about a secret file reaches the log.
fn load(path: &Path) -> Result<(Config, Secrets), Error> {
    let config = Config::load(path)?;
    init_logging(&config.log);
    let secrets = config.secrets(&env)?;
    Ok((config, secrets))
}

/// The Tokio runtime. On one CPU (a pinned process, or a container limited
/// to one core) the current-thread scheduler does the same work about 20%
/// cheaper than a one-worker multi-thread scheduler (see BENCHMARKS.md).
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::config_message(format!("cannot start the runtime: {e}")))
}

fn run(path: &Path) -> Result<(), Error> {
    let source = sessiongate::app::reload::Source::new(path);
    let (config, hash) = source.read()?;
    init_logging(&config.log);
    let secrets = config.secrets(&env)?;
    install_crypto_provider();
    runtime()?.block_on(sessiongate::app::run(
        config,
        secrets,
        Some(sessiongate::app::Reload { source, hash }),
        sessiongate::server::shutdown::signal(),
    ))
}

fn check(path: &Path) -> Result<(), Error> {
    let (config, _) = load(path)?;
    if let Some(tls) = &config.tls {
        install_crypto_provider();
        sessiongate::server::tls::acceptor(tls)?;
    }
    config.admin_token(&env)?;
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    println!(
        "{}: configuration is valid (store: {})",
        path.display(),
        config.store.kind()
    );
    Ok(())
}

fn keygen() -> Result<(), Error> {
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::config_message(format!("the OS random generator failed: {e}")))?;
    println!("{}", sessiongate::session::b64::encode(&bytes));
    Ok(())
}

fn demo(listen: SocketAddr, admin_listen: SocketAddr) -> Result<(), Error> {
    let mut config = Config::parse(sessiongate::demo::CONFIG, &env)?;
    config.listen = listen;
    config.admin.listen = admin_listen;
    init_logging(&config.log);
    install_crypto_provider();
    let secrets = match config.secrets(&env) {
        Ok(secrets) => secrets,
        Err(_) => {
            let mut bytes = [0u8; 48];
            getrandom::fill(&mut bytes).map_err(|e| {
                Error::config_message(format!("the OS random generator failed: {e}"))
            })?;
            eprintln!(
                "sessiongate demo: WARNING: no SESSION_SECRET set; using a random secret for this run only."
            );
            eprintln!(
                "sessiongate demo: WARNING: sessions will not survive a restart. Never run production like this."
            );
            Secrets {
                current: sessiongate::session::b64::encode(&bytes),
                previous: Vec::new(),
            }
        }
    };
    runtime()?.block_on(async move {
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::config_message(format!("cannot start the echo backend: {e}")))?;
        let backend_addr = backend.local_addr().map_err(|e| Error::config_message(e.to_string()))?;
        config.upstream.url = format!("http://{backend_addr}");
        tokio::spawn(sessiongate::demo::serve(backend));
        eprintln!("sessiongate demo: open http://{listen}/ (echo backend on {backend_addr}; admin on {admin_listen})");
        eprintln!("sessiongate demo: try  curl -c jar -b jar 'http://{listen}/login?update=%7B%22user%22%3A%22ada%22%7D'");
        sessiongate::app::run(config, secrets, None, sessiongate::server::shutdown::signal()).await
    })
}

fn echo(listen: SocketAddr) -> Result<(), Error> {
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Error::config_message(format!("cannot listen on {listen}: {e}")))?;
        eprintln!("sessiongate echo: backend on http://{listen}/");
        tokio::select! {
            () = sessiongate::demo::serve(listener) => {}
            () = sessiongate::server::shutdown::signal() => {}
        }
        Ok(())
    })
}

fn healthcheck(path: &Path, url: Option<String>) -> Result<(), Error> {
    let url = match url {
        Some(url) => url,
        None => {
            let config = Config::load(path)?;
            let mut admin = config.admin.listen;
            if admin.ip().is_unspecified() {
                admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{admin}/healthz")
        }
    };
    runtime()?.block_on(sessiongate::admin::probe(&url, Duration::from_secs(3)))
}

/// Every rustls user in the tree (the upstream client, Redis, MySQL) finds
/// ring as the process default; nothing else is compiled in.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn init_logging(config: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
