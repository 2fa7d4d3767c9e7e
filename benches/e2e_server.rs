//! The server `benches/e2e.sh` puts under load: an axum "hello" service,
//! bare or behind `IdentityVerificationLayer`.
//!
//! ```text
//! e2e_server bare  <port>   # GET / answers "hello"
//! e2e_server layer <port>   # the same, with the layer (header HMAC over x-user-id)
//! e2e_server signature      # prints the x-identity-signature value for USER
//! e2e_server user           # prints USER
//! ```
//!
//! It is a `harness = false` bench target so that it builds with the bench
//! profile; run without a mode (as `cargo bench` does, passing `--bench`) it
//! prints its usage and exits at once. Listens on 127.0.0.1 only, on a
//! multi-thread tokio runtime with one worker.

use axum::Router;
use axum::routing::get;
use tower_identity::{Identifier, IdentityVerificationLayer, Key, KeySet, Secret, sign};

const SECRET: &str = "e2e-secret-0123456789abcdef";
const USER: &str = "user-42";

fn secret() -> Secret {
    Secret::text(SECRET).expect("valid secret")
}

async fn hello() -> &'static str {
    "hello"
}

fn app(with_layer: bool) -> Router {
    let app = Router::new().route("/", get(hello));
    if with_layer {
        app.route_layer(IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret()))))
    } else {
        app
    }
}

fn serve(with_layer: bool, port: u16) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {} ({})", listener.local_addr()?, if with_layer { "layer" } else { "bare" });
        // Serve on the worker thread; this thread only waits.
        tokio::spawn(async move { axum::serve(listener, app(with_layer)).await })
            .await
            .map_err(std::io::Error::other)?
    })
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [mode @ ("bare" | "layer"), port] => {
            let port = port.parse().map_err(|_| std::io::Error::other(format!("bad port {port:?}")))?;
            serve(*mode == "layer", port)
        }
        ["signature"] => {
            println!("{}", sign::hmac(&secret(), USER));
            Ok(())
        }
        ["user"] => {
            println!("{USER}");
            Ok(())
        }
        _ => {
            eprintln!("e2e_server: usage: e2e_server (bare|layer) <port> | signature | user  (run by benches/e2e.sh)");
            Ok(())
        }
    }
}
