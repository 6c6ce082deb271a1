//! One way for tests to talk HTTP to the application (after crates.io's `TestApp`): start a
//! server, sign people in, send requests and read what came back. A transport error (no server,
//! a broken connection) panics naming the request; every HTTP answer, refusals and 5xx included,
//! is returned as an [`Answer`] for the test to judge.
//!
//! ```ignore
//! let app = TestApp::setup(&db).behind_proxy().start().await;
//! let admin = app.sign_in("acme", "user0@acme.example").await;
//! let r = admin.from("198.51.100.1").get("/api/v1/members").await;
//! assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "ip_not_allowed"));
//! ```

use identity::signin::secret_box::SecretBox;
use identity::signin::tokens::TokenKey;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::TestDb;
use web::limits::Limits;

use super::PASSWORD;

/// Every test server signs tokens with this key, so two apps on one database act as two nodes of
/// one deployment (a token from one is valid on the other).
pub fn token_key() -> TokenKey {
    TokenKey::from_seed([9; 32])
}

/// Default limits but a per-address sign-in budget (1000 per 15 minutes) that fits tests signing
/// in many times from one address, so the limit under test is what answers.
pub fn roomy_limits() -> Limits {
    Limits { login: "1000/15m".parse().expect("limit"), ..Limits::default() }
}

/// How a [`TestApp`] is configured before it starts.
pub struct Setup {
    store: store::Store,
    proxies: web::TrustedProxies,
    limits: Option<Limits>,
    mfa_keys: Option<SecretBox>,
    dev_outbox: bool,
}

impl Setup {
    /// Believes `X-Forwarded-For` from loopback (as behind a reverse proxy): clients choose their
    /// address with [`Client::from`].
    #[must_use]
    pub fn behind_proxy(mut self) -> Self {
        self.proxies = web::TrustedProxies::new(vec!["127.0.0.0/8".parse().expect("cidr")]);
        self
    }

    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// [`roomy_limits`].
    #[must_use]
    pub fn roomy(self) -> Self {
        self.limits(roomy_limits())
    }

    #[must_use]
    pub fn mfa_keys(mut self, keys: SecretBox) -> Self {
        self.mfa_keys = Some(keys);
        self
    }

    /// Serves with `store` instead of the test database's own (e.g. one reaching the database
    /// through a proxy the test can cut).
    #[must_use]
    pub fn store(mut self, store: store::Store) -> Self {
        self.store = store;
        self
    }

    /// Routes `/api/v1/dev/outbox`.
    #[must_use]
    pub fn dev_outbox(mut self) -> Self {
        self.dev_outbox = true;
        self
    }

    /// The state the server would run with (for tests that serve their own router with it).
    pub fn state(self) -> web::AppState {
        let mut state = web::AppState::new(self.store, self.proxies, token_key()).expect("state");
        if let Some(limits) = self.limits {
            state = state.with_limits(limits);
        }
        if let Some(keys) = self.mfa_keys {
            state = state.with_mfa_keys(keys);
        }
        // Bundles are signed with the key the tests verify checkpoints with.
        state.with_dev_outbox(self.dev_outbox).with_audit_key(std::sync::Arc::new(super::test_key()))
    }

    pub async fn start(self) -> TestApp {
        TestApp::serve(self.state()).await
    }
}

/// A server on a free loopback port, and the state it runs with.
#[derive(Clone)]
pub struct TestApp {
    pub base: String,
    pub state: web::AppState,
}

impl TestApp {
    /// A server with the defaults: no trusted proxy, default limits.
    pub async fn new(db: &TestDb) -> Self {
        Self::setup(db).start().await
    }

    pub fn setup(db: &TestDb) -> Setup {
        Setup {
            store: db.store.clone(),
            proxies: web::TrustedProxies::default(),
            limits: None,
            mfa_keys: None,
            dev_outbox: false,
        }
    }

    /// Serves the application's router for a prepared state.
    pub async fn serve(state: web::AppState) -> Self {
        Self::serve_router(state.clone(), web::router(state)).await
    }

    /// Serves `router` (built with `state`), as the application's own would be served.
    pub async fn serve_router(state: web::AppState, router: axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(web::serve(listener, router, std::future::pending()));
        Self { base: format!("http://{addr}"), state }
    }

    /// The URL of `path` (from the server's root, e.g. `/api/v1/me`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client without a credential.
    pub fn anonymous(&self) -> Client {
        Client { base: self.base.clone(), http: reqwest::Client::new(), auth: Auth::None, from: None, refresh: None }
    }

    /// A client presenting `token` (an API key, or an access token) as a bearer credential.
    pub fn bearer(&self, token: &str) -> Client {
        Client { auth: Auth::Bearer(token.to_owned()), ..self.anonymous() }
    }

    /// Signs in with [`PASSWORD`] (tokens in the body); see [`Client::sign_in`].
    pub async fn sign_in(&self, org: &str, email: &str) -> Client {
        self.anonymous().sign_in(org, email).await
    }

    /// The text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.anonymous().get("/metrics").await.text
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Bearer(String),
    /// A browser's cookie header, and the CSRF token it echoes on writes (when it knows it).
    Browser {
        cookies: String,
        csrf: Option<String>,
    },
}

/// Someone talking to a [`TestApp`]: anonymous, with a bearer credential, or a browser holding
/// session cookies; optionally from a chosen address (behind a trusted proxy).
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    auth: Auth,
    from: Option<String>,
    refresh: Option<String>,
}

impl Client {
    /// The same client, its requests saying (in `X-Forwarded-For`) they come from `address`.
    #[must_use]
    pub fn from(&self, address: &str) -> Self {
        Self { from: Some(address.to_owned()), ..self.clone() }
    }

    /// The same credential, talking to another node.
    #[must_use]
    pub fn on(&self, app: &TestApp) -> Self {
        Self { base: app.base.clone(), ..self.clone() }
    }

    /// The same client, not following redirects (to see a page's `303` itself).
    #[must_use]
    pub fn without_redirects(&self) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { http, ..self.clone() }
    }

    /// A browser holding `cookies` (a `Cookie:` header value) and knowing `csrf` (its `cs_csrf`).
    #[must_use]
    pub fn browser(&self, cookies: &str, csrf: Option<&str>) -> Self {
        Self { auth: Auth::Browser { cookies: cookies.to_owned(), csrf: csrf.map(str::to_owned) }, ..self.clone() }
    }

    /// The CSRF token a browser client holds (its `cs_csrf` cookie).
    pub fn csrf(&self) -> Option<&str> {
        match &self.auth {
            Auth::Browser { csrf, .. } => csrf.as_deref(),
            _ => None,
        }
    }

    /// A page's form post (`application/x-www-form-urlencoded`), as a browser sends it without
    /// script: a browser client puts its CSRF token in the form field `csrf_token` (never the
    /// header), unless `fields` names one itself.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut pairs: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf().map(str::to_owned);
        if let Some(c) = csrf.as_deref()
            && !fields.iter().any(|(k, _)| *k == "csrf_token")
        {
            pairs.push(("csrf_token", c));
        }
        let body =
            pairs.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        let without_header = match &self.auth {
            Auth::Browser { cookies, .. } => {
                Self { auth: Auth::Browser { cookies: cookies.clone(), csrf: None }, ..self.clone() }
            }
            _ => self.clone(),
        };
        without_header.send(Method::POST, path, Payload::Form(body), &[]).await
    }

    /// A page's file upload form (`multipart/form-data` with `boundary`, the body as built by the
    /// caller, CSRF token included or not), as a browser sends it: never the `X-CSRF-Token`
    /// header. `headers` are added (the upload script's `X-Upload`).
    pub async fn post_multipart(&self, path: &str, boundary: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Answer {
        let without_header = match &self.auth {
            Auth::Browser { cookies, .. } => {
                Self { auth: Auth::Browser { cookies: cookies.clone(), csrf: None }, ..self.clone() }
            }
            _ => self.clone(),
        };
        let ct = format!("multipart/form-data; boundary={boundary}");
        without_header.send(Method::POST, path, Payload::Raw(ct, body), headers).await
    }

    /// Bytes of `path` (a file): status, headers, body.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Browser { cookies, .. } => req = req.header("cookie", cookies),
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let (status, headers) = (r.status(), r.headers().clone());
        let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        (status, headers, body)
    }

    /// A browser client sending `csrf` (or none) as its `X-CSRF-Token` on writes.
    #[must_use]
    pub fn with_csrf(&self, csrf: Option<&str>) -> Self {
        let Auth::Browser { cookies, .. } = &self.auth else { panic!("with_csrf: not a browser client") };
        Self { auth: Auth::Browser { cookies: cookies.clone(), csrf: csrf.map(str::to_owned) }, ..self.clone() }
    }

    /// The bearer credential this client presents.
    pub fn access_token(&self) -> &str {
        match &self.auth {
            Auth::Bearer(t) => t,
            _ => panic!("access_token: not a bearer client"),
        }
    }

    /// The refresh token its sign-in returned.
    pub fn refresh_token(&self) -> &str {
        self.refresh.as_deref().expect("refresh_token: not signed in with a password")
    }

    /// One password attempt (tokens asked for in the body), answered as it is.
    pub async fn login(&self, org: &str, email: &str, password: &str) -> Answer {
        let body = json!({"organisation": org, "email": email, "password": password, "token_delivery": "body"});
        self.post("/api/v1/auth/login", body).await
    }

    /// Signs in with [`PASSWORD`] from this client's address; panics unless that gives tokens.
    pub async fn sign_in(&self, org: &str, email: &str) -> Client {
        let r = self.login(org, email, PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "sign in {email} at {org}: {}", r.body);
        let access = r.body["access_token"].as_str().unwrap_or_else(|| panic!("no access token: {}", r.body));
        let refresh = r.body["refresh_token"].as_str().map(str::to_owned);
        Self { auth: Auth::Bearer(access.to_owned()), refresh, ..self.clone() }
    }

    /// Signs in as a browser does (tokens in cookies); returns the browser, which sends the CSRF
    /// token on writes, and the sign-in answer.
    pub async fn sign_in_browser(&self, org: &str, email: &str) -> (Client, Answer) {
        let body = json!({"organisation": org, "email": email, "password": PASSWORD});
        let r = self.post("/api/v1/auth/login", body).await;
        assert_eq!(r.status, StatusCode::OK, "sign in {email} at {org}: {}", r.body);
        let set: Vec<&str> = r.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
        let pair = |c: &&str| c.split(';').next().unwrap_or_default().to_owned();
        let cookies = set.iter().map(pair).collect::<Vec<_>>().join("; ");
        let csrf = set.iter().map(pair).find_map(|c| c.strip_prefix("cs_csrf=").map(str::to_owned));
        let browser = Self { auth: Auth::Browser { cookies, csrf }, ..self.clone() };
        (browser, r)
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.request(Method::DELETE, path, None, &[]).await
    }

    /// `body` is a JSON value, or `()` for a request without one.
    pub async fn post(&self, path: &str, body: impl Body) -> Answer {
        self.request(Method::POST, path, body.json(), &[]).await
    }

    pub async fn put(&self, path: &str, body: impl Body) -> Answer {
        self.request(Method::PUT, path, body.json(), &[]).await
    }

    pub async fn patch(&self, path: &str, body: impl Body) -> Answer {
        self.request(Method::PATCH, path, body.json(), &[]).await
    }

    /// Any request: `path` from the server's root, an optional JSON body, extra headers.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Answer {
        self.send(method, path, body.map_or(Payload::None, Payload::Json), headers).await
    }

    async fn send(&self, method: Method, path: &str, body: Payload, headers: &[(&str, &str)]) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(from) = &self.from {
            req = req.header("x-forwarded-for", from);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Browser { cookies, csrf } => {
                req = req.header("cookie", cookies);
                if let Some(c) = csrf.as_deref().filter(|_| !matches!(method, Method::GET | Method::HEAD)) {
                    req = req.header("x-csrf-token", c);
                }
            }
        }
        match body {
            Payload::None => {}
            Payload::Json(b) => req = req.json(&b),
            Payload::Form(f) => req = req.header("content-type", "application/x-www-form-urlencoded").body(f),
            Payload::Raw(ct, b) => req = req.header("content-type", ct).body(b),
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let (status, headers, final_url) = (r.status(), r.headers().clone(), r.url().to_string());
        let text = r.text().await.unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        let path = final_url.strip_prefix(&self.base).unwrap_or(&final_url).to_owned();
        Answer { status, headers, body, text, path }
    }
}

/// What a request sends.
enum Payload {
    None,
    Json(Value),
    Form(String),
    /// A content type and the bytes.
    Raw(String, Vec<u8>),
}

/// Percent-encodes a form component.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A request body: a JSON value, or `()` for none.
pub trait Body {
    fn json(self) -> Option<Value>;
}

impl Body for Value {
    fn json(self) -> Option<Value> {
        Some(self)
    }
}

impl Body for () {
    fn json(self) -> Option<Value> {
        None
    }
}

/// What one request answered: status, headers, and the body as JSON (`Null` when it is not JSON)
/// and as text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
    /// Where the answer came from (after redirects), from the server's root: `/sign-in?next=%2F`.
    pub path: String,
}

impl Answer {
    /// The error code of a refusal (empty when there is none).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// For assertion messages: the status and the body.
impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}
