//! The examples, run as real servers on 127.0.0.1 and driven by real clients:
//! `examples/axum.rs`, `examples/tonic.rs` and `examples/hyper_proxy.rs`.

#[path = "../../examples/axum.rs"]
pub(crate) mod axum_example;
#[path = "../../examples/hyper_proxy.rs"]
mod proxy_example;
#[path = "../../examples/tonic.rs"]
mod tonic_example;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::support::data::sha256_hex;
use crate::support::{
    Rng, Server, Task, client_h2, fetch, get, grpc_channel, health_check, listener, send_with, spawn,
};

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

mod axum_app {
    use super::*;
    use axum_example::{ACME, ACME_SECRET, GLOBEX, acme_signature, globex_signature};

    async fn server() -> (Server, SocketAddr) {
        let server = Server::axum(axum_example::app(), Default::default()).await;
        let addr = server.addr;
        (server, addr)
    }

    fn chat(addr: SocketAddr, tenant: &str, body: Value) -> Request<Body> {
        Request::post(format!("http://{addr}/chat"))
            .header("x-app-id", tenant)
            .header("content-type", "application/json")
            .body(full(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    #[tokio::test]
    async fn required_route_with_tenants() {
        let (_server, addr) = server().await;
        let url = format!("http://{addr}/me");
        let acme = acme_signature("user-42");

        let a =
            fetch(get(&url, &[("x-app-id", ACME), ("x-user-id", "user-42"), ("x-identity-signature", &acme)])).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.json(), json!({"id": "user-42", "subject": "user_id", "tenant": ACME, "key_id": "acme-2026"}));

        // The other tenant signs emails with its own (hex) secret.
        let email = "jane@globex.example";
        let globex = globex_signature(email);
        let a =
            fetch(get(&url, &[("x-app-id", GLOBEX), ("x-user-email", email), ("x-identity-signature", &globex)])).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_eq!(a.json()["id"], email);
        assert_eq!(a.json()["tenant"], GLOBEX);

        // Acme's signature is worthless for an unknown tenant and without a tenant.
        for tenant in [Some("app_unknown"), None] {
            let mut headers = vec![("x-user-id", "user-42"), ("x-identity-signature", acme.as_str())];
            headers.extend(tenant.map(|t| ("x-app-id", t)));
            let a = fetch(get(&url, &headers)).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{tenant:?}");
            assert_eq!(a.code(), "signature_invalid", "{tenant:?}");
        }
        // Globex verifies emails, with its own secret: Acme's user-id signature
        // is refused there like any invalid signature (a tenant's schemes
        // cannot be probed), and an email signed with Acme's secret is invalid.
        let a =
            fetch(get(&url, &[("x-app-id", GLOBEX), ("x-user-id", "user-42"), ("x-identity-signature", &acme)])).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "signature_invalid".into()));
        let acme_email = acme_signature(email);
        let a =
            fetch(get(&url, &[("x-app-id", GLOBEX), ("x-user-email", email), ("x-identity-signature", &acme_email)]))
                .await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "signature_invalid".into()));

        // Forged: user 41's signature claiming user 42.
        let forged = acme_signature("user-41");
        let a =
            fetch(get(&url, &[("x-app-id", ACME), ("x-user-id", "user-42"), ("x-identity-signature", &forged)])).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "signature_invalid".into()));

        let a = fetch(get(&url, &[("x-app-id", ACME), ("x-user-id", "user-42")])).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "credential_missing".into()));
        let a = fetch(get(&url, &[])).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "credential_missing".into()));

        // The route without the layer.
        let a = fetch(get(&format!("http://{addr}/health"), &[])).await;
        assert_eq!((a.status, a.text()), (StatusCode::OK, "ok"));
    }

    #[tokio::test]
    async fn optional_route() {
        let (_server, addr) = server().await;
        let url = format!("http://{addr}/greeting");

        let a = fetch(get(&url, &[])).await;
        assert_eq!((a.status, a.text()), (StatusCode::OK, "Hello, stranger!\n"));

        let sig = acme_signature("user-42");
        let a = fetch(get(&url, &[("x-app-id", ACME), ("x-user-id", "user-42"), ("x-identity-signature", &sig)])).await;
        assert_eq!((a.status, a.text()), (StatusCode::OK, "Hello, user-42!\n"));

        // Optional is "validate if present": a bad signature is still refused.
        let a = fetch(get(&url, &[("x-app-id", ACME), ("x-user-id", "user-7"), ("x-identity-signature", &sig)])).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "signature_invalid".into()));
    }

    #[tokio::test]
    async fn identity_in_the_json_body() {
        let (_server, addr) = server().await;
        let body = json!({
            "user_id": "user-42",
            "user_hash": acme_signature("user-42"),
            "user_metadata": {"plan": "pro", "seats": 3},
            "text": "hello there",
        });
        let a = fetch(chat(addr, ACME, body.clone())).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        // `Json<ChatMessage>` parsed the same body the layer read.
        assert_eq!(
            a.json(),
            json!({"from": "user-42", "text": "hello there", "metadata": {"plan": "pro", "seats": 3}})
        );

        let mut forged = body.clone();
        forged["user_id"] = json!("user-41");
        let a = fetch(chat(addr, ACME, forged)).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "signature_invalid".into()));

        let mut unsigned = body.clone();
        unsigned.as_object_mut().unwrap().remove("user_hash");
        let a = fetch(chat(addr, ACME, unsigned)).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "credential_missing".into()));

        // The signature is bound to the tenant: Globex verifies emails with its own secret.
        let a = fetch(chat(addr, GLOBEX, body)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);

        // A signature made with the demo secret by hand matches the helper.
        let secret = tower_identity::Secret::text(ACME_SECRET).unwrap();
        assert_eq!(tower_identity::sign::hmac(&secret, "user-42"), acme_signature("user-42"));
    }
}

mod tonic_app {
    use super::*;
    use tonic::transport::Channel;
    use tonic_example::{WHOAMI_PREFIX, signature};
    use tonic_health::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    async fn server() -> (Task, SocketAddr, Channel) {
        let (l, addr) = listener().await;
        let task = spawn(async move { tonic_example::serve(l).await.unwrap() });
        let channel = grpc_channel(addr).await;
        (task, addr, channel)
    }

    #[tokio::test]
    async fn whoami_requires_a_signature() {
        let (_server, addr, channel) = server().await;
        let origin = format!("http://{addr}{WHOAMI_PREFIX}").parse().unwrap();
        let mut whoami = HealthClient::with_origin(channel, origin);

        // Its path, /whoami/grpc.health.v1.Health/Check, names the exempt
        // service but does not start with it: verified.
        let err = whoami.check(health_check("", &[])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "credential_missing");

        let forged = signature("user-41");
        let err = whoami
            .check(health_check("", &[("x-user-id", "user-42"), ("x-identity-signature", &forged)]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert_eq!(err.message(), "signature_invalid");

        let sig = signature("user-42");
        let res =
            whoami.check(health_check("", &[("x-user-id", "user-42"), ("x-identity-signature", &sig)])).await.unwrap();
        assert_eq!(res.get_ref().status, ServingStatus::Serving as i32);
        assert_eq!(res.metadata().get("x-whoami").unwrap(), "user-42");
    }

    #[tokio::test]
    async fn health_is_exempt() {
        let (_server, _addr, channel) = server().await;
        let mut health = HealthClient::new(channel);

        for service in ["", "whoami"] {
            let res = health.check(health_check(service, &[])).await.unwrap();
            assert_eq!(res.get_ref().status, ServingStatus::Serving as i32, "{service:?}");
        }
        // Exempt means not looked at at all: even a forged credential passes.
        let forged = signature("user-41");
        let res = health
            .check(health_check("", &[("x-user-id", "user-42"), ("x-identity-signature", &forged)]))
            .await
            .unwrap();
        assert_eq!(res.get_ref().status, ServingStatus::Serving as i32);
        let err = health.check(health_check("nope", &[])).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);

        // Streaming works through the exemption too.
        let mut stream = health.watch(health_check("", &[])).await.unwrap().into_inner();
        assert_eq!(stream.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);
    }
}

mod proxy {
    use super::*;
    use proxy_example::{run_proxy, signature};

    /// What the upstream received.
    #[derive(Clone, Debug)]
    struct Seen {
        headers: HeaderMap,
        len: usize,
        sha256: String,
    }

    /// A recording upstream: answers with the sha256 of the body it received,
    /// and a hop-by-hop header the proxy must not pass back.
    async fn upstream() -> (Task, SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let (l, addr) = listener().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = spawn(async move {
            loop {
                let (stream, _) = l.accept().await.unwrap();
                let record = record.clone();
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await?.to_bytes();
                        let sha256 = sha256_hex(&body);
                        record.lock().unwrap().push(Seen {
                            headers: parts.headers,
                            len: body.len(),
                            sha256: sha256.clone(),
                        });
                        let res = Response::builder()
                            .header("connection", "x-upstream-hop")
                            .header("x-upstream-hop", "1")
                            .header("keep-alive", "timeout=5")
                            .header("x-upstream", "yes")
                            .body(Full::new(Bytes::from(sha256)))
                            .unwrap();
                        Ok::<_, hyper::Error>(res)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (task, addr, seen)
    }

    async fn proxy_to(upstream: SocketAddr) -> (Task, SocketAddr) {
        let (l, addr) = listener().await;
        (spawn(async move { run_proxy(l, upstream).await.unwrap() }), addr)
    }

    /// Client-sent copies of the forwarded headers, in every spelling.
    const SPOOFS: [&str; 16] = [
        "x-verified-user-id",
        "x_verified_user_id",
        "x.verified.user.id",
        "X-Verified-User-Id",
        "x-verified_user.id",
        "x-verified-email",
        "x_verified_email",
        "x-verified-visitor-id",
        "x.verified.visitor.id",
        "x-verified-tenant",
        "x_verified_tenant",
        "x-verified-key-id",
        "x.verified.key.id",
        "x-identity-outcome",
        "x_identity_outcome",
        "X.Identity.Outcome",
    ];
    const SPOOFED: &str = "spoofed-admin";

    fn with_spoofs(mut b: http::request::Builder) -> http::request::Builder {
        for name in SPOOFS {
            b = b.header(name, SPOOFED);
        }
        // A repeated header too.
        b.header("x-verified-user-id", "spoofed-twice")
    }

    fn signed(b: http::request::Builder, user: &str) -> http::request::Builder {
        b.header("x-user-id", user).header("x-identity-signature", signature(user))
    }

    /// Normalises `_` and `.` to `-`, as the layer does when stripping.
    fn norm(name: &str) -> String {
        name.replace(['_', '.'], "-")
    }

    /// Asserts no spoofed value and no odd spelling reached the upstream, and
    /// that each identity header it got is there exactly once, with `expected`.
    fn assert_identity(seen: &Seen, expected: &[(&str, &str)]) {
        for (name, value) in &seen.headers {
            let v = value.to_str().unwrap_or("");
            assert!(!v.starts_with("spoofed"), "{name}: {v} reached the upstream");
            let n = norm(name.as_str());
            if n.starts_with("x-verified-") || n == "x-identity-outcome" {
                assert_eq!(n, name.as_str(), "an odd spelling reached the upstream: {name}");
                assert!(expected.iter().any(|(e, _)| *e == name.as_str()), "unexpected {name}: {v}");
            }
        }
        for (name, value) in expected {
            let all: Vec<_> = seen.headers.get_all(*name).iter().collect();
            assert_eq!(all, [*value], "{name}");
        }
        assert!(!seen.headers.contains_key("x-identity-signature"), "the credential reached the upstream");
    }

    #[tokio::test]
    async fn spoofed_identity_headers_never_reach_the_upstream() {
        let (_up, up_addr, seen) = upstream().await;
        let (_proxy, addr) = proxy_to(up_addr).await;
        let url = format!("http://{addr}/api/items?page=2");

        // Verified.
        let req = with_spoofs(signed(Request::get(&url), "user-42")).body(full(Bytes::new())).unwrap();
        let a = fetch(req).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        assert_identity(
            &seen.lock().unwrap()[0],
            &[
                ("x-verified-user-id", "user-42"),
                ("x-verified-key-id", "proxy-2026"),
                ("x-identity-outcome", "verified"),
            ],
        );
        assert!(
            seen.lock().unwrap()[0].headers.get("x-user-id").is_none(),
            "strip_credentials also removes the claimed identifiers"
        );

        // Anonymous.
        let a = fetch(with_spoofs(Request::get(&url)).body(full(Bytes::new())).unwrap()).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_identity(&seen.lock().unwrap()[1], &[("x-identity-outcome", "anonymous")]);

        // Forged: answered by the proxy, the upstream is never called.
        let req = with_spoofs(Request::get(&url))
            .header("x-user-id", "admin")
            .header("x-identity-signature", signature("user-42"))
            .body(full(Bytes::new()))
            .unwrap();
        let a = fetch(req).await;
        assert_eq!((a.status, a.code()), (StatusCode::UNAUTHORIZED, "signature_invalid".into()));
        assert_eq!(seen.lock().unwrap().len(), 2);

        // `Connection` may not name the identity headers away, and hop-by-hop
        // headers stop at the proxy, both ways.
        let req = signed(Request::get(&url), "user-42")
            .header("connection", "keep-alive, x-hop, x-verified-user-id, x-identity-outcome")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
            .header("te", "trailers")
            .body(full(Bytes::new()))
            .unwrap();
        let a = fetch(req).await;
        assert_eq!(a.status, StatusCode::OK);
        {
            let seen = &seen.lock().unwrap()[2];
            assert_identity(
                seen,
                &[
                    ("x-verified-user-id", "user-42"),
                    ("x-verified-key-id", "proxy-2026"),
                    ("x-identity-outcome", "verified"),
                ],
            );
            for name in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
                assert!(!seen.headers.contains_key(name), "{name} reached the upstream");
            }
            assert_eq!(seen.headers["host"], up_addr.to_string());
        }
        assert_eq!(a.headers["x-upstream"], "yes");
        for name in ["x-upstream-hop", "keep-alive"] {
            assert!(!a.headers.contains_key(name), "{name} came back from the upstream");
        }
    }

    #[tokio::test]
    async fn bodies_stream_through_byte_identical() {
        let (_up, up_addr, seen) = upstream().await;
        let (_proxy, addr) = proxy_to(up_addr).await;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let data = Bytes::from(rng.bytes(1024 * 1024));
        let digest = sha256_hex(&data);

        // Streamed in random chunks without a length (chunked), verified and anonymous.
        for (i, user) in [Some("user-42"), None].into_iter().enumerate() {
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < data.len() {
                let n = ((rng.next() % 40_000) as usize + 1).min(data.len() - at);
                chunks.push(Ok::<_, Infallible>(Frame::data(data.slice(at..at + n))));
                at += n;
            }
            let body = StreamBody::new(tokio_stream::iter(chunks)).boxed();
            let mut b =
                Request::post(format!("http://{addr}/upload")).header("content-type", "application/octet-stream");
            if let Some(user) = user {
                b = signed(b, user);
            }
            let a = fetch(b.body(body).unwrap()).await;
            assert_eq!((a.status, a.text()), (StatusCode::OK, digest.as_str()));
            let seen = seen.lock().unwrap()[i].clone();
            assert_eq!((seen.len, seen.sha256), (data.len(), digest.clone()));
            // Streamed on as chunks, not buffered into a known length.
            assert_eq!(seen.headers["transfer-encoding"], "chunked");
            assert!(!seen.headers.contains_key("content-length"));
        }

        // With a Content-Length, and as JSON: no body source is configured, so
        // the layer never buffers it.
        let req = signed(Request::put(format!("http://{addr}/doc")), "user-42")
            .header("content-type", "application/json")
            .body(full(data.clone()))
            .unwrap();
        let a = fetch(req).await;
        assert_eq!((a.status, a.text()), (StatusCode::OK, digest.as_str()));
        let seen = seen.lock().unwrap()[2].clone();
        assert_eq!(seen.headers["content-length"], data.len().to_string());
        assert_eq!(seen.sha256, digest);
    }

    #[tokio::test]
    async fn http2_clients() {
        let (_up, up_addr, seen) = upstream().await;
        let (_proxy, addr) = proxy_to(up_addr).await;
        let h2 = client_h2::<Body>();
        let req = with_spoofs(signed(Request::post(format!("http://{addr}/h2")), "user-42"))
            .body(full(&b"over h2c"[..]))
            .unwrap();
        let a = send_with(&h2, req).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
        let seen = seen.lock().unwrap()[0].clone();
        assert_identity(
            &seen,
            &[
                ("x-verified-user-id", "user-42"),
                ("x-verified-key-id", "proxy-2026"),
                ("x-identity-outcome", "verified"),
            ],
        );
        assert_eq!(seen.sha256, sha256_hex(b"over h2c"));
    }

    #[tokio::test]
    async fn upstream_down_is_a_json_502() {
        // A port nothing listens on any more.
        let (l, down) = listener().await;
        drop(l);
        let (_proxy, addr) = proxy_to(down).await;
        for user in [Some("user-42"), None] {
            let mut b = Request::post(format!("http://{addr}/"));
            if let Some(user) = user {
                b = signed(b, user);
            }
            let a = fetch(b.body(full(&b"lost"[..])).unwrap()).await;
            assert_eq!(a.status, StatusCode::BAD_GATEWAY);
            assert_eq!(a.headers["content-type"], "application/json");
            assert_eq!(a.code(), "bad_gateway");
        }
    }
}
