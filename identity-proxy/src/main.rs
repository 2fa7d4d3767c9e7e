//! `identity-proxy`: identity verification in front of any HTTP service,
//! configured without code. See `examples/identity-proxy.toml` in the
//! repository, and the README's sidecar section.
#![forbid(unsafe_code)]

mod admin;
mod authz;
mod config;
mod connection;
mod cors;
mod live;
mod logging;
mod reload;
mod revocation;
mod routes;
mod server;
mod timed_body;
mod tools;
mod tunnel;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Verifies signed identities (HMAC, timestamped HMAC, HS256 JWT) before
/// requests reach the upstream, and forwards the verified identity as headers.
#[derive(Parser, Debug)]
#[command(name = "identity-proxy", version, about)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, short, env = "IDENTITY_PROXY_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Overrides `listen` (e.g. 127.0.0.1:8080).
    #[arg(long, env = "IDENTITY_PROXY_LISTEN")]
    listen: Option<String>,
    /// Overrides `upstream` (e.g. http://127.0.0.1:3000).
    #[arg(long, env = "IDENTITY_PROXY_UPSTREAM")]
    upstream: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints a valid signature or token for an identifier, made with a key of the configuration.
    Sign {
        #[command(flatten)]
        target: Target,
        /// The key id (default: the tenant's first key valid now).
        #[arg(long)]
        key: Option<String>,
        /// The `name` claim of a JWT.
        #[arg(long)]
        name: Option<String>,
        /// The lifetime of a JWT, in seconds.
        #[arg(long, default_value_t = 600)]
        lifetime: u64,
    },
    /// Validates the configuration and, given a signature or token, explains the verdict.
    Check {
        #[command(flatten)]
        target: Target,
        /// The signature to check (`<hex>` or `<hex>-<unix_ts>`).
        #[arg(long)]
        signature: Option<String>,
        /// The JWT to check.
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Args, Debug)]
struct Target {
    /// The tenant (default: the tenant without an id).
    #[arg(long)]
    tenant: Option<String>,
    #[arg(long)]
    user_id: Option<String>,
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    visitor_id: Option<String>,
    /// The time to sign or check at, in unix seconds (default: now).
    #[arg(long)]
    now: Option<u64>,
}

impl Target {
    fn ids(&self) -> tools::Ids {
        tools::Ids { user_id: self.user_id.clone(), email: self.email.clone(), visitor_id: self.visitor_id.clone() }
    }

    fn now(&self) -> u64 {
        self.now.unwrap_or_else(|| tower_identity::clock::Clock::now(&tower_identity::clock::SystemClock))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(path) = cli.config.clone() else {
        eprintln!("error: --config FILE (or IDENTITY_PROXY_CONFIG) is required");
        return ExitCode::from(2);
    };
    let origin = reload::Origin { path, listen: cli.listen, upstream: cli.upstream };
    let settings = match origin.load() {
        Ok(s) => s,
        Err(error) => {
            eprintln!("error: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    logging::init(settings.log_format);
    match cli.command {
        None => serve(settings, origin),
        Some(Command::Sign { target, key, name, lifetime }) => {
            let ids = target.ids();
            let signed = tools::sign_cmd(
                &settings,
                target.tenant.as_deref(),
                key.as_deref(),
                &ids,
                name.as_deref(),
                target.now(),
                lifetime,
            );
            match signed {
                Ok(value) => {
                    println!("{value}");
                    ExitCode::SUCCESS
                }
                Err(e) => usage_error(&e),
            }
        }
        Some(Command::Check { target, signature, token }) => {
            check(&settings, &target, signature.as_deref(), token.as_deref())
        }
    }
}

fn usage_error(error: &str) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(2)
}

/// Runs the proxy on a multi-threaded runtime until it shuts down.
fn serve(settings: config::Settings, origin: reload::Origin) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(settings, origin)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `check`: the configuration alone, or a signature or token against it.
fn check(settings: &config::Settings, target: &Target, signature: Option<&str>, token: Option<&str>) -> ExitCode {
    if signature.is_none() && token.is_none() {
        println!("configuration OK: {} tenants, {} keys", settings.tenant_count, settings.key_count);
        return ExitCode::SUCCESS;
    }
    let mut out = std::io::stdout();
    let ids = target.ids();
    match tools::check_cmd(settings, target.tenant.as_deref(), &ids, signature, token, target.now(), &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => usage_error(&e),
    }
}
