//! Identities in JSON and form bodies, over a real axum server on 127.0.0.1:
//! exact bytes handed on in any chunking, limits, conflicts, type confusion.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use http::{Request, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_identity::{
    Identifier, IdentityOutcome, IdentityVerificationLayer, Key, KeySet, Mode, Role, Sources, VerifiedIdentity, sign,
};

use crate::support::data::sha256_hex;
use crate::support::{Rng, Server, client, fetch, secret};

const LIMIT: usize = 4096;

fn sources() -> Sources {
    Sources::new()
        .json(Role::UserId, "/user_id")
        .json(Role::Signature, "/user_hash")
        .json(Role::Metadata, "/user_metadata")
        .form(Role::UserId, "user_id")
        .form(Role::Signature, "user_hash")
        .body_limit(LIMIT)
}

/// An axum app whose handler answers the sha256 of the body it received and
/// the identity it saw.
async fn server(mode: Mode) -> Server {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = Router::new()
        .route(
            "/chat",
            post(move |identity: Option<VerifiedIdentity>, outcome: IdentityOutcome, body: Bytes| {
                let calls = counted.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let meta = identity.as_ref().and_then(|i| i.unsigned().metadata().map(str::to_owned));
                    format!(
                        "{} {} {} {}",
                        sha256_hex(&body),
                        body.len(),
                        identity.map_or_else(|| format!("<{}>", outcome.as_str()), |i| i.id().to_owned()),
                        meta.unwrap_or_default()
                    )
                }
            }),
        )
        .route(
            "/typed",
            post(|identity: VerifiedIdentity, axum::Json(msg): axum::Json<serde_json::Value>| async move {
                format!("{} says {}", identity.id(), msg["text"].as_str().unwrap_or("?"))
            }),
        )
        .route_layer(
            IdentityVerificationLayer::new(KeySet::single(Key::hmac(Identifier::UserId, secret())))
                .mode(mode)
                .sources(sources()),
        );
    Server::axum(app, calls).await
}

/// Sends `body` split into chunks of random sizes (1-byte chunks when `ones`),
/// with or without a Content-Length.
#[allow(clippy::too_many_arguments)]
async fn send_chunked(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: &[u8],
    rng: &mut Rng,
    ones: bool,
    with_length: bool,
    extra: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut chunks = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = if ones { 1 } else { (rng.next() % 700 + 1) as usize }.min(rest.len());
        chunks.push(Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(&rest[..n]))));
        rest = &rest[n..];
    }
    let stream = StreamBody::new(futures_stream(chunks));
    let mut b = Request::post(format!("http://{addr}{path}")).header("content-type", content_type);
    if with_length {
        b = b.header("content-length", body.len());
    }
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let a = fetch(b.body(stream).unwrap()).await;
    (a.status, a.body)
}

/// A stream that yields each chunk after a yield point, so chunks travel separately.
fn futures_stream<T: Send + 'static>(items: Vec<T>) -> impl tokio_stream::Stream<Item = T> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for item in items {
            if tx.send(item).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A JSON body of exactly `len` bytes carrying a valid identity (when it fits).
fn json_body(len: usize, user: &str) -> Vec<u8> {
    let sig = sign::hmac(&secret(), user);
    let head = format!(r#"{{"user_id":"{user}","user_hash":"{sig}","user_metadata":{{"plan":"pro"}},"pad":""#);
    let tail = r#""}"#;
    assert!(len >= head.len() + tail.len());
    let mut body = head.into_bytes();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail.as_bytes());
    body
}

fn form_body(len: usize, user: &str) -> Vec<u8> {
    let mut body = format!("user_id={user}&user_hash={}&pad=", sign::hmac(&secret(), user)).into_bytes();
    body.resize(len, b'y');
    body
}

#[tokio::test]
async fn bodies_of_every_size_in_any_chunking_arrive_byte_identical() {
    let s = server(Mode::Optional).await;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut expected_calls = 0;
    for (content_type, make) in [
        ("application/json", json_body as fn(usize, &str) -> Vec<u8>),
        ("application/x-www-form-urlencoded", form_body),
    ] {
        for len in [0, 1, LIMIT, LIMIT + 1] {
            let body = match len {
                0 => Vec::new(),
                1 => b" ".to_vec(),
                n => make(n, "u7"),
            };
            assert_eq!(body.len(), len);
            for (ones, with_length) in [(false, true), (false, false), (true, true), (true, false)] {
                let (status, text) =
                    send_chunked(s.addr, "/chat", content_type, &body, &mut rng, ones, with_length, &[]).await;
                let ctx = format!("{content_type} len {len} ones {ones} length {with_length}");
                if len > LIMIT {
                    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{ctx}: {text}");
                    assert!(text.contains("body_too_large"));
                    assert_eq!(s.calls.load(Ordering::SeqCst), expected_calls, "{ctx}: handler must not run");
                    continue;
                }
                expected_calls += 1;
                assert_eq!(status, StatusCode::OK, "{ctx}: {text}");
                let mut parts = text.split(' ');
                assert_eq!(parts.next(), Some(sha256_hex(&body).as_str()), "{ctx}: the handler saw other bytes");
                assert_eq!(parts.next(), Some(len.to_string().as_str()), "{ctx}");
                let who = parts.next().unwrap();
                if len == LIMIT {
                    assert_eq!(who, "u7", "{ctx}");
                    if content_type == "application/json" {
                        assert_eq!(parts.next(), Some(r#"{"plan":"pro"}"#), "metadata is carried, unsigned");
                    }
                } else {
                    assert_eq!(who, "<anonymous>", "{ctx}");
                }
            }
        }
    }
    assert_eq!(s.calls.load(Ordering::SeqCst), expected_calls);
}

async fn post_json(addr: SocketAddr, path: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut b = Request::post(format!("http://{addr}{path}")).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let a = fetch(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap()).await;
    (a.status, a.body)
}

#[tokio::test]
async fn conflicts_and_type_confusion_are_rejected() {
    let s = server(Mode::Required).await;
    let sig = sign::hmac(&secret(), "42");
    let cases = [
        (format!(r#"{{"user_id":"42","user_id":"42","user_hash":"{sig}"}}"#), vec![], "conflicting_values"),
        (format!(r#"{{"user_id":"42","user_id":"43","user_hash":"{sig}"}}"#), vec![], "conflicting_values"),
        (format!(r#"{{"user_id":"42","user_hash":"{sig}","user_hash":"{sig}"}}"#), vec![], "conflicting_values"),
        (format!(r#"{{"user_id":42,"user_hash":"{sig}"}}"#), vec![], "credential_malformed"),
        (format!(r#"{{"user_id":["42"],"user_hash":"{sig}"}}"#), vec![], "credential_malformed"),
        (r#"{"user_id":"42","user_hash":null}"#.to_owned(), vec![], "credential_malformed"),
        (format!(r#"{{"user_id":"42","user_hash":"{sig}""#), vec![], "credential_malformed"),
        (format!(r#"{{"user_id":"42","user_hash":"{sig}"}}"#), vec![("x-user-id", "43")], "conflicting_values"),
        (r#"{"user_id":"42"}"#.to_owned(), vec![("x-identity-signature", sig.as_str())], "ok"),
        (format!(r#"{{"user_id":"42","user_hash":"{sig}"}}"#), vec![("x-user-id", "42")], "ok"),
    ];
    let mut calls = 0;
    for (body, headers, expected) in &cases {
        let (status, text) = post_json(s.addr, "/chat", body, headers).await;
        if *expected == "ok" {
            calls += 1;
            assert_eq!(status, StatusCode::OK, "{body}: {text}");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}: {text}");
            assert!(text.contains(expected), "{body}: {text}");
            assert!(!text.contains(&sig) && !text.contains("42"), "no echo: {text}");
        }
        assert_eq!(s.calls.load(Ordering::SeqCst), calls, "{body}");
    }
    // The identity in a body under the wrong content type is not read.
    let client = client();
    let body = format!(r#"{{"user_id":"42","user_hash":"{sig}"}}"#);
    let res = client
        .request(
            Request::post(format!("http://{}/chat", s.addr))
                .header("content-type", "text/plain")
                .body(Full::new(Bytes::from(body.clone())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A compressed body cannot carry the identity: 415, nothing forwarded.
    let res = client
        .request(
            Request::post(format!("http://{}/chat", s.addr))
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(s.calls.load(Ordering::SeqCst), calls);
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_before_reading() {
    let s = server(Mode::Optional).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "POST /chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{{",
        1_000_000_000_000_000_000u64
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_that_ends_early_is_not_forwarded() {
    let s = server(Mode::Optional).await;
    let mut stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"POST /chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user_id\":")
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
    let head = String::from_utf8_lossy(&buf);
    assert!(head.is_empty() || head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(s.calls.load(Ordering::SeqCst), 0, "nothing forwarded");
}

#[tokio::test]
async fn axum_json_extractor_still_parses_the_body() {
    let s = server(Mode::Required).await;
    let sig = sign::hmac(&secret(), "ann");
    let (status, text) =
        post_json(s.addr, "/typed", &format!(r#"{{"user_id":"ann","user_hash":"{sig}","text":"hi there"}}"#), &[])
            .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "ann says hi there"));
}

/// Sends `body` to `/chat` as JSON declared gzip-encoded, with a Content-Length.
async fn send_gzipped_json(addr: SocketAddr, body: &[u8], rng: &mut Rng) -> (StatusCode, String) {
    send_chunked(addr, "/chat", "application/json", body, rng, false, true, &[("content-encoding", "gzip")]).await
}

#[tokio::test]
async fn report_only_never_breaks_large_or_encoded_bodies() {
    let s = server(Mode::ReportOnly).await;
    let mut rng = Rng(7);
    let big = json_body(LIMIT * 3, "u9");
    // Over the limit while reading (no Content-Length), and declared over the limit.
    for (ones, with_length) in [(false, false), (false, true)] {
        let (status, text) =
            send_chunked(s.addr, "/chat", "application/json", &big, &mut rng, ones, with_length, &[]).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let mut parts = text.split(' ');
        assert_eq!(parts.next(), Some(sha256_hex(&big).as_str()), "the replayed body arrives whole");
        assert_eq!(parts.nth(1), Some("<unverified>"));
    }
    // A compressed body streams through untouched.
    let body = json_body(200, "u9");
    let (status, text) = send_gzipped_json(s.addr, &body, &mut rng).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.starts_with(&sha256_hex(&body)));
    // Enforcing modes refuse the same requests without calling the handler.
    let s = server(Mode::Required).await;
    let (status, text) = send_chunked(s.addr, "/chat", "application/json", &big, &mut rng, false, false, &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    let (status, _) = send_gzipped_json(s.addr, &body, &mut rng).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(s.calls.load(Ordering::SeqCst), 0);
}
