//! A WebSocket client for the tests (tokio-tungstenite): connect with
//! offered protocols, echo a message, read until the close.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Connects to `url`, offering `protocols` (comma-separated) when given; the
/// socket and the protocol the server selected.
pub async fn connect(url: &str, protocols: Option<&str>) -> Result<(Client, Option<String>), WsError> {
    let mut req = url.into_client_request().unwrap();
    if let Some(p) = protocols {
        req.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    let (ws, res) =
        tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(req)).await.unwrap()?;
    let chosen = res.headers().get("sec-websocket-protocol").map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, chosen))
}

/// The HTTP status of a refused upgrade.
pub fn status(result: Result<(Client, Option<String>), WsError>) -> u16 {
    match result {
        Err(WsError::Http(res)) => res.status().as_u16(),
        Err(other) => panic!("expected an HTTP answer, got {other}"),
        Ok(_) => panic!("expected a refused upgrade"),
    }
}

/// Sends `text` and returns the text answer.
pub async fn echo(ws: &mut Client, text: &str) -> String {
    ws.send(Message::text(text)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
        other => panic!("expected a text echo, got {other:?}"),
    }
}

/// Reads until the server closes: the close code, or `None` when the
/// connection ended without a close frame.
pub async fn close_code(ws: &mut Client) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("the socket was not closed") {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Asserts that the socket is closed with 1008 no later than `deadline`
/// (unix seconds, inclusive) and not before `not_before`.
pub async fn assert_closed_1008(ws: &mut Client, not_before: u64, deadline: u64) {
    assert_eq!(close_code(ws).await, Some(CloseCode::Policy));
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(at <= Duration::from_secs(deadline), "closed at {at:?}, after {deadline}");
    assert!(at >= Duration::from_secs(not_before), "closed at {at:?}, before {not_before}");
}
