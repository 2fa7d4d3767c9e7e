//! `PostgresProvider` against a real PostgreSQL server on 127.0.0.1.
//!
//! The server's URL comes from `TOWER_IDENTITY_PG_URL` (`.ci/postgres.sh start`
//! prints one). Without it the tests are skipped, unless
//! `TOWER_IDENTITY_REQUIRE_POSTGRES=1` (set by `.ci/run`) or `CI` makes that a
//! failure. The TLS tests need the server `.ci/postgres.sh` starts (`ssl = on`,
//! its CA named by `ssl_ca_file`) and `openssl` to make a CA it does not know.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use tower::ServiceExt;
use tower_identity::provider::CacheOptions;
use tower_identity::provider::postgres::{PostgresProvider, listen_for_changes};

/// Whether a missing server (or a server without TLS) fails the tests.
fn required() -> bool {
    std::env::var("TOWER_IDENTITY_REQUIRE_POSTGRES").as_deref() == Ok("1") || std::env::var_os("CI").is_some()
}

fn url() -> Option<String> {
    match std::env::var("TOWER_IDENTITY_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(!required(), "TOWER_IDENTITY_PG_URL is not set but PostgreSQL is required");
            eprintln!("skipping: TOWER_IDENTITY_PG_URL is not set (bash .ci/postgres.sh start prints one)");
            None
        }
    }
}

static MIGRATED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A direct connection for the test's own SQL, after the migration ran once.
async fn admin(url: &str) -> tokio_postgres::Client {
    MIGRATED
        .get_or_init(|| async {
            PostgresProvider::connect(url, 1).unwrap().migrate().await.unwrap();
        })
        .await;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

async fn add_tenant(db: &tokio_postgres::Client, tenant: &str, mode: Option<&str>) {
    db.execute("DELETE FROM identity_tenants WHERE tenant_id = $1", &[&tenant]).await.unwrap();
    db.execute("INSERT INTO identity_tenants (tenant_id, mode) VALUES ($1, $2)", &[&tenant, &mode]).await.unwrap();
}

async fn add_key(db: &tokio_postgres::Client, tenant: &str, key_id: &str, secret: &str) {
    add_key_for(db, tenant, key_id, "hmac", secret).await;
}

async fn add_key_for(db: &tokio_postgres::Client, tenant: &str, key_id: &str, scheme: &str, secret: &str) {
    db.execute(
        "INSERT INTO identity_keys (tenant_id, key_id, scheme, over, secret) VALUES ($1, $2, $3, 'user_id', $4)",
        &[&tenant, &key_id, &scheme, &secret],
    )
    .await
    .unwrap();
}

async fn revoke(db: &tokio_postgres::Client, tenant: &str, key_id: &str) {
    db.execute(
        "UPDATE identity_keys SET not_after = now() - interval '1 second' WHERE tenant_id = $1 AND key_id = $2",
        &[&tenant, &key_id],
    )
    .await
    .unwrap();
}

const K1: &str = "pg-secret-one-0123456789";
const K2: &str = "pg-secret-two-0123456789";

#[tokio::test]
async fn lookup_and_rotation_with_overlap() {
    let Some(url) = url() else { return };
    let db = admin(&url).await;
    add_tenant(&db, "pg-rotation", None).await;
    add_key(&db, "pg-rotation", "k1", K1).await;
    let provider = PostgresProvider::connect(&url, 4).unwrap().cached(CacheOptions::default());
    let l = tenant_layer(provider.clone());

    let (a, rec) = send(&l, tenant_request("pg-rotation", K1)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(rec.last_identity().unwrap().key_id(), Some("k1"));
    let (a, rec) = send(&l, tenant_request("pg-unknown", K1)).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &["pg-unknown"]);

    // Rotation: a row insert; both keys verify during the overlap.
    add_key(&db, "pg-rotation", "k2", K2).await;
    provider.invalidate(Some("pg-rotation"));
    let (a, rec) = send(&l, tenant_request("pg-rotation", K2)).await;
    assert_eq!((a.status.as_u16(), rec.last_identity().unwrap().key_id()), (200, Some("k2")));
    assert_eq!(send(&l, tenant_request("pg-rotation", K1)).await.0.status, 200);
    // End of the overlap: not_after on the old key.
    revoke(&db, "pg-rotation", "k1").await;
    provider.invalidate(Some("pg-rotation"));
    let (a, rec) = send(&l, tenant_request("pg-rotation", K1)).await;
    assert_rejected(&a, &rec, 401, "signature_invalid", &[]);
    assert_eq!(send(&l, tenant_request("pg-rotation", K2)).await.0.status, 200);

    // The tenant's mode comes from the database too.
    add_tenant(&db, "pg-optional", Some("optional")).await;
    add_key(&db, "pg-optional", "k1", K1).await;
    let (a, rec) = send(&l, get("/", &[("x-tenant", "pg-optional")])).await;
    assert_eq!((a.status.as_u16(), rec.calls()), (200, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_is_seen_by_two_instances() {
    let Some(url) = url() else { return };
    let db = admin(&url).await;
    add_tenant(&db, "pg-revoke", None).await;
    add_key(&db, "pg-revoke", "k1", K1).await;
    add_key(&db, "pg-revoke", "k2", K2).await;
    let ttl = Duration::from_millis(500);
    // Instance A listens for NOTIFY; instance B relies on its TTL.
    let a = PostgresProvider::connect(&url, 2).unwrap().cached(CacheOptions::default().ttl(Duration::from_secs(3600)));
    let listener = listen_for_changes(&url, a.clone());
    let b = PostgresProvider::connect(&url, 2).unwrap().cached(CacheOptions::default().ttl(ttl));
    let (la, lb) = (tenant_layer(a), tenant_layer(b));
    tokio::time::sleep(Duration::from_millis(300)).await; // LISTEN is in place
    assert_eq!(send(&la, tenant_request("pg-revoke", K1)).await.0.status, 200);
    assert_eq!(send(&lb, tenant_request("pg-revoke", K1)).await.0.status, 200);

    revoke(&db, "pg-revoke", "k1").await;
    let started = Instant::now();
    let mut seen_by_a = None;
    while started.elapsed() < Duration::from_secs(5) {
        if send(&la, tenant_request("pg-revoke", K1)).await.0.status == 401 {
            seen_by_a = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Within the 5 s guard, while its TTL is an hour: only NOTIFY can explain it.
    let seen_by_a = seen_by_a.expect("instance A never saw the revocation");
    println!("revocation seen by the listening instance after {seen_by_a:?} (its TTL is an hour)");
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let (ans, rec) = send(&lb, tenant_request("pg-revoke", K1)).await;
    assert_rejected(&ans, &rec, 401, "signature_invalid", &[]);
    assert_eq!(send(&la, tenant_request("pg-revoke", K2)).await.0.status, 200);
    assert_eq!(send(&lb, tenant_request("pg-revoke", K2)).await.0.status, 200);
    listener.abort();
}

/// A TCP forwarder to the database that can be cut and restored.
struct Forwarder {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Forwarder {
    async fn start(target: SocketAddr) -> Forwarder {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = l.accept().await.unwrap();
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                conns2.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Forwarder { addr, up, conns }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_answers_503_then_recovers() {
    let Some(url) = url() else { return };
    let db = admin(&url).await;
    add_tenant(&db, "pg-down", None).await;
    add_key(&db, "pg-down", "k1", K1).await;
    let config: tokio_postgres::Config = url.parse().unwrap();
    let tokio_postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else { panic!("TCP host expected") };
    let target: SocketAddr = format!("{host}:{}", config.get_ports()[0]).parse().unwrap();
    let fwd = Forwarder::start(target).await;
    let via = url.replace(&format!("{host}:{}", config.get_ports()[0]), &fwd.addr.to_string());
    let provider = PostgresProvider::connect(&via, 2).unwrap();
    let l = tenant_layer(
        provider.cached(CacheOptions::default().ttl(Duration::from_millis(50)).lookup_timeout(Duration::from_secs(2))),
    );

    assert_eq!(send(&l, tenant_request("pg-down", K1)).await.0.status, 200);
    fwd.down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (a, rec) = send(&l, tenant_request("pg-down", K1)).await;
    assert_eq!((a.status.as_u16(), rec.calls()), (503, 0), "{}", a.body);
    assert_eq!(a.code(), "provider_unavailable");
    fwd.up();
    let mut recovered = false;
    for _ in 0..50 {
        if send(&l, tenant_request("pg-down", K1)).await.0.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "requests verify again once the database is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_cause_one_query() {
    let Some(url) = url() else { return };
    let db = admin(&url).await;
    add_tenant(&db, "pg-herd", None).await;
    add_key(&db, "pg-herd", "k1", K1).await;
    let provider = PostgresProvider::connect(&url, 8).unwrap();
    let counter = provider.clone();
    let svc = tower::ServiceBuilder::new()
        .layer(tenant_layer(provider.cached(CacheOptions::default())))
        .service(Recorder::default().service());
    let tasks: Vec<_> = (0..1000).map(|_| tokio::spawn(svc.clone().oneshot(tenant_request("pg-herd", K1)))).collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().status(), 200);
    }
    println!("1000 concurrent first requests: {} query(ies)", counter.queries());
    assert_eq!(counter.queries(), 1);
}

/// One secret, two schemes, two tenants: tenant "pg-plain"'s backend signs
/// the user id `bob-1999999999`, which is the timestamped signature of `bob`
/// for tenant "pg-stamped". Both tenants answer `misconfigured`.
#[tokio::test]
async fn tenants_sharing_a_secret_under_two_schemes_answer_misconfigured() {
    const SHARED: &str = "pg-shared-across-schemes-0123456789";
    const TS: u64 = 1_999_999_999;
    let Some(url) = url() else { return };
    let db = admin(&url).await;
    add_tenant(&db, "pg-plain", None).await;
    add_key_for(&db, "pg-plain", "p1", "hmac", SHARED).await;
    add_tenant(&db, "pg-stamped", None).await;
    add_key_for(&db, "pg-stamped", "s1", "timestamped_hmac", SHARED).await;
    add_tenant(&db, "pg-bystander", None).await;
    add_key(&db, "pg-bystander", "k1", K1).await;
    let l = tenant_layer(PostgresProvider::connect(&url, 2).unwrap().cached(CacheOptions::default())).clock(|| TS);

    let sig = tower_identity::sign::hmac(&tower_identity::Secret::text(SHARED).unwrap(), "bob-1999999999");
    let forged = [("x-tenant", "pg-stamped"), ("x-user-id", "bob"), ("x-identity-signature", &format!("{sig}-{TS}"))];
    let (a, rec) = send(&l, get("/", &forged)).await;
    assert_rejected(&a, &rec, 500, "misconfigured", &[SHARED, &sig]);
    let (a, rec) = send(&l, tenant_request("pg-plain", SHARED)).await;
    assert_rejected(&a, &rec, 500, "misconfigured", &[SHARED]);
    // Other tenants are not affected.
    assert_eq!(send(&l, tenant_request("pg-bystander", K1)).await.0.status, 200);
}

/// The CA of the server's certificate (`.ci/postgres.sh` names it in
/// `ssl_ca_file`), or `None` (a failure when required) without TLS.
async fn server_ca(db: &tokio_postgres::Client) -> Option<String> {
    let ssl: String = db.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    let ca: String = db.query_one("SHOW ssl_ca_file", &[]).await.unwrap().get(0);
    if ssl == "on" && !ca.is_empty() {
        return Some(ca);
    }
    assert!(!required(), "the PostgreSQL server has no TLS (start it with .ci/postgres.sh start)");
    eprintln!("skipping: the PostgreSQL server has no TLS (start it with .ci/postgres.sh start)");
    None
}

/// A CA the server's certificate was not issued by, made with openssl.
fn other_ca() -> Option<(tempdir::Dir, String)> {
    let dir = tempdir::Dir::new("pg-other-ca");
    let (key, crt) = (dir.path.join("ca.key"), dir.path.join("ca.crt"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=not the server's CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output();
    match made {
        Ok(out) if out.status.success() => Some((dir, crt.to_string_lossy().into_owned())),
        other => {
            assert!(!required(), "openssl cannot make a CA: {other:?}");
            eprintln!("skipping: openssl cannot make a CA: {other:?}");
            None
        }
    }
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir {
        pub path: std::path::PathBuf,
    }

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let path = std::env::temp_dir().join(format!("tower-identity-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `url` with `application_name` (to find its connection in
/// `pg_stat_ssl`) and the TLS settings.
fn with_settings(url: &str, name: &str, settings: &str) -> String {
    let glue = if url.contains('?') { '&' } else { '?' };
    format!("{url}{glue}application_name={name}{}{settings}", if settings.is_empty() { "" } else { "&" })
}

#[tokio::test]
async fn tls_as_the_url_asks_and_an_unknown_ca_is_refused() {
    let Some(url) = url() else { return };
    let db = admin(&url).await;
    let Some(ca) = server_ca(&db).await else { return };
    let Some((_dir, wrong)) = other_ca() else { return };
    add_tenant(&db, "pg-tls", None).await;
    add_key(&db, "pg-tls", "k1", K1).await;

    let connects = [
        ("tls_disable", "sslmode=disable".to_owned(), false),
        ("tls_default", String::new(), true), // prefer: TLS when the server offers it
        ("tls_require", "sslmode=require".to_owned(), true),
        ("tls_verify_ca", format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        ("tls_verify_full", format!("sslmode=verify-full&sslrootcert={ca}"), true),
    ];
    for (name, settings, encrypted) in connects {
        let provider = PostgresProvider::connect(&with_settings(&url, name, &settings), 1).unwrap();
        let (a, rec) = send(&tenant_layer(provider.clone()), tenant_request("pg-tls", K1)).await;
        assert_eq!((a.status.as_u16(), rec.calls()), (200, 1), "{name}: {}", a.body);
        // The pool keeps the connection open: the server says whether it is encrypted.
        let row = db
            .query_one(
                "SELECT bool_or(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.application_name = $1",
                &[&name],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Option<bool>>(0), Some(encrypted), "{name}");
    }

    for (name, mode) in
        [("tls_wrong_ca_full", "verify-full"), ("tls_wrong_ca", "verify-ca"), ("tls_wrong_req", "require")]
    {
        let settings = format!("sslmode={mode}&sslrootcert={wrong}");
        let provider = PostgresProvider::connect(&with_settings(&url, name, &settings), 1).unwrap();
        let (a, rec) = send(&tenant_layer(provider), tenant_request("pg-tls", K1)).await;
        assert_rejected(&a, &rec, 503, "provider_unavailable", &[K1]);
        let sessions: i64 = db
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sessions, 0, "{name}: no session with a server whose certificate the CA did not issue");
    }
}
