//! Degrading gracefully (issue 19): with the database gone, readiness and API calls answer within
//! their bounds instead of hanging on the pool; the transport holds at most so many connections,
//! closes the ones that never finish their request head, and drains in-flight requests on
//! shutdown for a bounded time only.
//!
//! The database is taken away by a loopback proxy the test controls: it forwards to the real
//! server until it is switched to a black hole, which accepts connections and never answers
//! (the worst case: a connect that succeeds and a query that never returns).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TestApp, org};
use reqwest::StatusCode;
use store::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A loopback TCP proxy to the test database's server that can be cut.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    /// Forwarding tasks (aborted when the proxy is cut: the pool's connections see a reset)
    /// and black-holed sockets (held open, never answered).
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, l, h) = (cut.clone(), links.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    h.lock().await.push(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().await.push(link);
            }
        });
        Self { addr, cut, links, held }
    }

    /// The database is gone: open links are broken, new ones are accepted and never answered.
    async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    /// The database is back.
    async fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.held.lock().await.clear();
    }
}

/// A server whose app pool reaches the test database through `proxy` (migrations and the
/// process secret go direct), waiting at most `db_wait` for a connection.
async fn app_through(db: &TestDb, proxy: &Proxy, db_wait: Duration) -> TestApp {
    let admin = db.admin_options();
    let app = admin.clone().host("127.0.0.1").port(proxy.addr.port()).username("countersign_app").password("");
    let tuning = store::Tuning { db_wait, ..store::Tuning::new(4) };
    let store = store::Store::open_tuned(admin, app, None, tuning).await.expect("store through the proxy");
    TestApp::setup(db).store(store).roomy().start().await
}

fn database_server(db: &TestDb) -> SocketAddr {
    let o = db.admin_options();
    let host = o.get_host();
    assert!(!host.starts_with('/'), "this test needs the database over TCP, not a socket: {host}");
    let host = if host == "localhost" { "127.0.0.1" } else { host };
    format!("{host}:{}", o.get_port()).parse().expect("database address")
}

#[tokio::test]
async fn with_the_database_gone_readiness_and_requests_answer_within_their_bounds() {
    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    let proxy = Proxy::to(database_server(&db)).await;
    let app = app_through(&db, &proxy, store::DEFAULT_DB_WAIT).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    assert_eq!(admin.get("/api/v1/documents").await.status, StatusCode::OK);
    let probe = app.anonymous();
    assert_eq!(probe.get("/readyz").await.status, StatusCode::OK);

    proxy.cut().await;

    // Readiness: an answer (not ready) well inside a 1-5 s probe timeout, not the pool's wait.
    // Twice: the first meets the broken pooled connection, the second waits for a new one.
    let mut readiness_took = Duration::ZERO;
    for _ in 0..2 {
        let t = Instant::now();
        let ready = probe.get("/readyz").await;
        readiness_took = t.elapsed();
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
        assert_eq!(ready.body["checks"]["database"], false, "{}", ready.body);
        assert!(readiness_took < Duration::from_secs(3), "readiness took {readiness_took:?}");
    }
    assert_eq!(probe.get("/healthz").await.status, StatusCode::OK, "liveness does not need the database");

    // An API call: 503 `unavailable` with Retry-After, within the bound (2 s by default), never
    // the old 10 s pool wait. Twice: the first may meet a broken pooled connection, the second
    // waits for a new one.
    for _ in 0..2 {
        let t = Instant::now();
        let r = admin.get("/api/v1/documents").await;
        let took = t.elapsed();
        assert_eq!((r.status, r.code()), (StatusCode::SERVICE_UNAVAILABLE, "unavailable"), "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("2"), "{}", r.body);
        assert!(took < Duration::from_secs(6), "the refusal took {took:?}");
        println!("database down: readiness answered in {readiness_took:?}, an API call in {took:?}");
    }
    // Operators see it: the refused waits are counted on /metrics.
    let m = app.metrics().await;
    let timeouts = m
        .lines()
        .find_map(|l| l.strip_prefix("countersign_db_pool_timeouts_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(timeouts.is_some_and(|n| n >= 1), "{m}");

    // Back: the next requests succeed without a restart.
    proxy.restore().await;
    let back = Instant::now();
    loop {
        let r = admin.get("/api/v1/documents").await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "still failing after the database came back: {}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("first success {:?} after the database came back", back.elapsed());
    assert_eq!(probe.get("/readyz").await.status, StatusCode::OK);
}

/// Serves the application with `bounds` on a fresh loopback port; the returned sender stops it.
async fn serve_bounded(
    db: &TestDb,
    bounds: web::transport::Bounds,
    router: Option<axum::Router>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let state = TestApp::setup(db).state();
    let router = router.unwrap_or_else(|| web::router(state));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(web::serve_with(
        listener,
        router,
        async move {
            let _ = stopped.await;
        },
        bounds,
    ));
    (addr, stop, served)
}

/// Opens a connection that sends half a request head and then nothing.
async fn half_open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: countersign\r\nX-Slow: ").await.expect("write");
    s
}

/// One whole request on a new connection; the raw answer.
async fn whole_request(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: countersign\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut answer))
        .await
        .expect("answered within 10 s")
        .expect("read");
    answer
}

#[tokio::test]
async fn five_hundred_half_open_connections_do_not_keep_a_normal_client_out() {
    let db = TestDb::new().await;
    let (addr, _stop, _served) = serve_bounded(&db, web::transport::Bounds::default(), None).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        slow.push(half_open(addr).await);
    }
    for _ in 0..20 {
        let answer = whole_request(addr).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    }
    // The 500 are still open (nothing refused them): the server is merely not waiting on them.
    let mut buf = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(200), slow[0].read(&mut buf)).await.is_err();
    assert!(still_open, "a half-open connection was answered or closed early");
}

#[tokio::test]
async fn over_the_connection_limit_a_client_gets_503_and_half_sent_heads_are_cut_off() {
    let db = TestDb::new().await;
    let bounds = web::transport::Bounds {
        max_connections: 16,
        head_timeout: Duration::from_secs(2),
        shutdown_grace: Duration::from_secs(1),
        tls: None,
    };
    let (addr, _stop, _served) = serve_bounded(&db, bounds, None).await;
    let mut slow = Vec::new();
    for _ in 0..16 {
        slow.push(half_open(addr).await);
    }
    // Let the server take all sixteen before the seventeenth arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = whole_request(addr).await;
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("retry-after: 1\r\n"), "{refused}");
    assert!(
        refused.ends_with(
            r#""code":"too_many_connections","message":"the server has too many open connections; try again shortly"}}"#
        ),
        "{refused}"
    );

    // The half-sent heads are cut off after the head timeout, freeing their places.
    for s in &mut slow {
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a half-sent head was kept open past the head timeout");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = whole_request(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test]
async fn shutdown_waits_for_requests_in_flight_only_as_long_as_the_grace() {
    let db = TestDb::new().await;
    let state = TestApp::setup(&db).state();
    let slow: axum::Router<web::AppState> = axum::Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            "late"
        }),
    );
    let router = web::with_middleware(state, slow);
    let bounds = web::transport::Bounds { shutdown_grace: Duration::from_secs(1), ..web::transport::Bounds::default() };
    let (addr, stop, served) = serve_bounded(&db, bounds, Some(router)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: countersign\r\n\r\n").await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    stop.send(()).expect("stop");
    let ended = tokio::time::timeout(Duration::from_secs(15), served).await;
    assert!(ended.is_ok(), "shutdown did not end after its grace");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(900), "shutdown did not wait for the request in flight: {took:?}");
    println!("shutdown with a request in flight ended after {took:?} (grace 1 s)");
}
