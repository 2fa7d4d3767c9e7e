//! The runner page (`runner.html`): cases for `fetch`, served from a
//! 127.0.0.1 origin, and what the page could read once Chromium ran it.

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::chromium::{Chromium, text_of};

/// A server task, aborted when dropped.
pub struct Server(JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A listener on a free 127.0.0.1 port and its origin (`http://127.0.0.1:N`).
pub async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    (listener, origin)
}

/// Serves `app` on `listener` until dropped.
pub fn serve(listener: tokio::net::TcpListener, app: Router) -> Server {
    Server(tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }))
}

impl From<JoinHandle<()>> for Server {
    fn from(task: JoinHandle<()>) -> Server {
        Server(task)
    }
}

/// Serves the runner page with these cases on `listener`.
pub fn serve_runner(listener: tokio::net::TcpListener, cases: &Value) -> Server {
    let page = include_str!("runner.html").replace("__CASES__", &cases.to_string());
    serve(listener, Router::new().route("/", get(move || async move { Html(page) })))
}

/// A site serving the runner page with these cases, and its origin.
pub async fn runner_site(cases: &Value) -> (Server, String) {
    let (listener, origin) = bind().await;
    (serve_runner(listener, cases), origin)
}

/// Loads the runner page of `site` and returns its results by case name.
pub async fn run_page(browser: &Chromium, site: &str) -> serde_json::Map<String, Value> {
    let dom = browser.dump_dom(&format!("{site}/")).await;
    let results: Vec<Value> = serde_json::from_str(&text_of(&dom, "results"))
        .unwrap_or_else(|e| panic!("the page wrote no results ({e}):\n{dom}"));
    results.into_iter().map(|r| (r["name"].as_str().unwrap().to_owned(), r)).collect()
}

/// One fetch for the runner page.
pub fn case(name: &str, method: &str, url: &str, headers: Value, body: Option<Value>) -> Value {
    json!({ "name": name, "method": method, "url": url, "headers": headers, "body": body.map(|b| b.to_string()) })
}

/// Asserts what the page read: a status and the `error` field.
pub fn assert_read(results: &serde_json::Map<String, Value>, name: &str, status: u16, error: Option<&str>) {
    let r = &results[name];
    assert_eq!(r["status"], status, "{name}: {r}");
    assert_eq!(r["error"].as_str(), error, "{name}: {r}");
    if let Some(code) = error {
        let challenge = r["challenge"].as_str().unwrap_or_else(|| panic!("{name}: challenge not exposed: {r}"));
        assert!(challenge.contains(code), "{name}: {r}");
    }
}

/// Asserts the page's fetch failed (the browser refused the answer).
pub fn assert_blocked(results: &serde_json::Map<String, Value>, name: &str) {
    assert_eq!(results[name]["exception"], "TypeError", "{name}: {}", results[name]);
}

/// The valid, forged, missing and JSON-body cases against `api` (`/me` and
/// `/chat`, each followed by `query`).
pub fn identity_cases(api: &str, query: &str, valid: &str, forged: &str) -> Value {
    let (me, chat_url) = (format!("{api}/me{query}"), format!("{api}/chat{query}"));
    let chat =
        |user: &str| json!({ "user_id": user, "user_hash": valid, "user_metadata": { "plan": "pro" }, "text": "hi" });
    json!([
        case("valid", "GET", &me, json!({ "x-user-id": "42", "x-identity-signature": valid }), None),
        case("forged", "GET", &me, json!({ "x-user-id": "42", "x-identity-signature": forged }), None),
        case("none", "GET", &me, json!({}), None),
        case("json", "POST", &chat_url, json!({ "content-type": "application/json" }), Some(chat("42"))),
        case("json_forged", "POST", &chat_url, json!({ "content-type": "application/json" }), Some(chat("41"))),
    ])
}
