//! OpenID Connect callback handling through a real `countersign serve` process (issue 18), with
//! the identity provider's own time taken out: the provider is a minimal OpenID Connect issuer run
//! by this benchmark on loopback (`Issuer`: discovery, JWKS, a token endpoint issuing Ed25519-signed
//! ID tokens after checking the code, the client's secret and PKCE), so the time its endpoints
//! spend is measured where it is spent.
//!
//! `--clients` browsers (default 8), each a member of the organisation signing in `--rounds` times:
//! `GET /sign-in/sso?organisation=…` (the server stores the flow — state, nonce, PKCE verifier — and
//! answers the provider's address and the binding cookie); the person "at the provider" (not
//! timed: that is the provider's login page) gets a code bound to the flow's nonce and PKCE
//! challenge; then `GET /sign-in/sso/callback?state=…&code=…` with the cookie, timed to the last
//! byte of its answer (200, session cookies set). The callback exchanges the code at the token
//! endpoint and verifies the ID token; the token endpoint's handling time for that code (and any
//! discovery/JWKS fetch meanwhile) is the IdP's time, subtracted per request. The server caches
//! the issuer's discovery document and keys (15 minutes per issuer, refetched once on an unknown
//! key), so after the first sign-in no callback fetches them; the run counts the fetches.
//! Each browser signs in once first, unmeasured (the person's account is linked then).
//! Target (issue 18): callback p99 <= 30 ms excluding the IdP's time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::Signer as _;
use identity::signin::oidc_config::{self, NewOidcConfig, Preset};
use identity::signin::secret_box::SecretBox;
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{ConnectOptions, Connection};
use store::testing::TestDb;
use uuid::Uuid;

use crate::fixture;
use crate::propagation::{Stats, ms, stats};
use crate::server::{self, Server, data_dir, load_average, verdict};

#[derive(clap::Parser)]
pub struct Args {
    /// Concurrent browsers, each a different member.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Measured sign-ins per browser (after one unmeasured).
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// The server binary (default: `countersign` next to this executable).
    #[arg(long)]
    server: Option<std::path::PathBuf>,
}

const TARGET_P99: Duration = Duration::from_millis(30);
const CLIENT_ID: &str = "countersign-bench";
const CLIENT_SECRET: &str = "countersign-bench-secret-0123456789";
const DOMAIN: &str = "bench.example";

/// A flow the provider has authenticated a person for: what the token endpoint checks and puts
/// in the ID token.
struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    subject: String,
    email: String,
}

/// The benchmark's identity provider.
#[derive(Clone)]
struct Issuer {
    url: String,
    key: Arc<ed25519_dalek::SigningKey>,
    grants: Arc<Mutex<HashMap<String, Grant>>>,
    /// Time the token endpoint spent per code it was asked about.
    spent: Arc<Mutex<HashMap<String, Duration>>>,
    /// Discovery and JWKS requests, and the time they took (µs).
    fetches: Arc<AtomicU64>,
    fetch_micros: Arc<AtomicU64>,
}

impl Issuer {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let issuer = Self {
            url,
            key: Arc::new(ed25519_dalek::SigningKey::from_bytes(&seed)),
            grants: Arc::default(),
            spent: Arc::default(),
            fetches: Arc::default(),
            fetch_micros: Arc::default(),
        };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(issuer.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(issuer)
    }

    /// The person signed in at the provider for the flow `authorize` names: a code for it.
    fn authenticate(&self, authorize: &str, subject: &str, email: &str) -> anyhow::Result<String> {
        let url = url::Url::parse(authorize)?;
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let param = |k: &str| q.get(k).cloned().with_context(|| format!("no {k} in {authorize}"));
        if param("client_id")? != CLIENT_ID || param("code_challenge_method")? != "S256" {
            bail!("unexpected authorisation request: {authorize}");
        }
        let code = Uuid::new_v4().simple().to_string();
        let grant = Grant {
            nonce: param("nonce")?,
            challenge: param("code_challenge")?,
            redirect_uri: param("redirect_uri")?,
            subject: subject.to_owned(),
            email: email.to_owned(),
        };
        self.grants.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(code.clone(), grant);
        Ok(code)
    }

    fn spent_on(&self, code: &str) -> Option<Duration> {
        self.spent.lock().ok()?.remove(code)
    }

    fn counted(&self, started: Instant) {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetch_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

async fn discovery(State(i): State<Issuer>) -> Response {
    let started = Instant::now();
    let body = axum::Json(json!({
        "issuer": i.url,
        "authorization_endpoint": format!("{}/authorize", i.url),
        "token_endpoint": format!("{}/token", i.url),
        "jwks_uri": format!("{}/jwks", i.url),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }))
    .into_response();
    i.counted(started);
    body
}

async fn jwks(State(i): State<Issuer>) -> Response {
    let started = Instant::now();
    let x = URL_SAFE_NO_PAD.encode(i.key.verifying_key().as_bytes());
    let body = axum::Json(json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench", "use": "sig", "alg": "EdDSA"}
    ]}))
    .into_response();
    i.counted(started);
    body
}

fn oauth_error(code: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": code}))).into_response()
}

/// The client authenticated by HTTP Basic (`client_secret_basic`) or in the form.
fn client_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let decode = |s: &str| url::form_urlencoded::parse(s.as_bytes()).map(|(k, _)| k.into_owned()).next();
    match basic.as_deref().and_then(|b| b.split_once(':')) {
        Some((id, secret)) => {
            decode(id).as_deref() == Some(CLIENT_ID) && decode(secret).as_deref() == Some(CLIENT_SECRET)
        }
        None => {
            form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
                && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
        }
    }
}

async fn token(State(i): State<Issuer>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let started = Instant::now();
    let code = form.get("code").cloned().unwrap_or_default();
    let answer = issue(&i, &headers, &form, &code);
    if let Ok(mut spent) = i.spent.lock() {
        spent.insert(code, started.elapsed());
    }
    answer
}

fn issue(i: &Issuer, headers: &HeaderMap, form: &HashMap<String, String>, code: &str) -> Response {
    if !client_ok(headers, form) {
        return oauth_error("invalid_client");
    }
    let Some(grant) = i.grants.lock().ok().and_then(|mut g| g.remove(code)) else {
        return oauth_error("invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || challenge != grant.challenge
        || form.get("redirect_uri") != Some(&grant.redirect_uri)
    {
        return oauth_error("invalid_grant");
    }
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"bench"}"#);
    let claims = json!({
        "iss": i.url, "sub": grant.subject, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
        "nonce": grant.nonce, "email": grant.email, "email_verified": true, "name": grant.subject,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(i.key.sign(signed.as_bytes()).to_bytes());
    axum::Json(json!({
        "access_token": Uuid::new_v4().simple().to_string(), "token_type": "Bearer", "expires_in": 300,
        "id_token": format!("{signed}.{signature}"),
    }))
    .into_response()
}

/// The organisation (`bench-1`, joining domain `bench.example`) and its members 1..=n
/// (`person<c>@bench.example`, staff), the provider configured with the server's MFA key.
async fn seed(db: &TestDb, issuer: &Issuer, keys: &SecretBox, n: usize) -> anyhow::Result<()> {
    let mut admin = db.admin_options().connect().await?;
    fixture::insert_tenants(&mut admin, 1).await?;
    let tenant = fixture::tenant_id(1)?;
    sqlx::query(
        "with people as (
           insert into users (id, email, display_name, email_verified_at)
           select gen_random_uuid(), 'person' || c || '@bench.example', 'Person ' || c, now() from generate_series(1, $2) c
           returning id)
         insert into memberships (tenant_id, id, user_id, role) select $1, gen_random_uuid(), id, 'staff' from people",
    )
    .bind(tenant.as_uuid())
    .bind(i64::try_from(n)?)
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    let who = audit::Who::system("bench:sso-callback");
    let permit = authz::Permit::operator(authz::Action::SettingsManage, tenant.as_uuid());
    let mut tx = db.store.tenant_tx(tenant).await?;
    identity::directory::tenants::set_joining(
        &mut tx,
        &who,
        &permit,
        &[DOMAIN.to_owned()],
        identity::JoinPolicy::AdminApproval,
    )
    .await?;
    let config = NewOidcConfig {
        preset: Preset::Generic,
        issuer: issuer.url.clone(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(secrecy::SecretString::from(CLIENT_SECRET)),
        allowed_domains: vec![DOMAIN.into()],
        email_claim: None,
        name_claim: None,
        groups_claim: None,
        group_mapping: Default::default(),
        mfa_acr_values: vec![],
        sso_only: false,
        break_glass_user: None,
        enabled: true,
    };
    oidc_config::put(&mut tx, &who, &permit, keys, &config).await?;
    tx.commit().await?;
    Ok(())
}

/// One sign-in as person `c`: the start (its time), the callback (its time) and the IdP's part
/// of the callback.
async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    issuer: &Issuer,
    c: usize,
) -> anyhow::Result<(Duration, Duration, Duration)> {
    let started = Instant::now();
    let r = http.get(format!("{base}/sign-in/sso?organisation=bench-1")).send().await?;
    let status = r.status();
    let authorize = r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let binding = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("cs_sso="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    r.bytes().await?;
    let start = started.elapsed();
    let (Some(authorize), Some(binding)) = (authorize.filter(|_| status == StatusCode::SEE_OTHER), binding) else {
        bail!("the start answered {status} without the provider's address and the binding cookie");
    };
    let code = issuer.authenticate(&authorize, &format!("sub-{c}"), &format!("person{c}@{DOMAIN}"))?;
    let state = url::Url::parse(&authorize)?
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .context("no state")?;
    let callback =
        url::Url::parse_with_params(&format!("{base}/sign-in/sso/callback"), [("state", &state), ("code", &code)])?;
    let sent = Instant::now();
    let r = http.get(callback).header("cookie", binding).send().await?;
    let status = r.status();
    let signed_in = r.headers().get_all("set-cookie").iter().any(|v| v.as_bytes().starts_with(b"cs_access="));
    let body = r.bytes().await?;
    let took = sent.elapsed();
    if status != StatusCode::OK || !signed_in {
        bail!(
            "the callback answered {status} without a session: {}",
            String::from_utf8_lossy(&body[..body.len().min(400)])
        );
    }
    let idp = issuer.spent_on(&code).context("the server never exchanged the code")?;
    Ok((start, took, idp))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let bin = server::binary(args.server.as_deref())?;
    let clients = args.clients.max(1);
    let rounds = args.rounds.max(1);
    println!("sso-callback: {clients} browsers × {rounds} sign-ins; load average {}", load_average());
    let db = TestDb::try_with_pool(4).await.context("creating the benchmark database")?;
    let issuer = Issuer::start().await?;
    let data = data_dir("sso-callback")?;
    let node = Server::start(&bin, "serve", &db, &data).await?;
    let result = async {
        let keys = SecretBox::load(&data.join("keys").join("mfa-aes256.key"), &[])?;
        seed(&db, &issuer, &keys, clients).await?;
        measure(&node, &issuer, clients, rounds).await
    }
    .await;
    node.stop().await?;
    let _ = std::fs::remove_dir_all(&data);
    result
}

async fn measure(node: &Server, issuer: &Issuer, clients: usize, rounds: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(clients * 2)
        .build()?;
    // One unmeasured sign-in each: links the person, warms the server's provider cache.
    for c in 1..=clients {
        sign_in(&http, &node.base, issuer, c).await?;
    }
    let fetches_before = issuer.fetches.load(Ordering::Relaxed);
    let fetch_micros_before = issuer.fetch_micros.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 1..=clients {
        let (http, base, issuer) = (http.clone(), node.base.clone(), issuer.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                out.push(sign_in(&http, &base, &issuer, c).await?);
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    let fetches = issuer.fetches.load(Ordering::Relaxed) - fetches_before;
    let fetch_time = Duration::from_micros(issuer.fetch_micros.load(Ordering::Relaxed) - fetch_micros_before);
    // Discovery/JWKS fetches during the run (none expected: cached) count as IdP time too,
    // spread over the callbacks.
    let fetch_share = fetch_time / u32::try_from(all.len().max(1))?;
    let starts = stats(all.iter().map(|a| a.0).collect());
    let raw = stats(all.iter().map(|a| a.1).collect());
    let idp = stats(all.iter().map(|a| a.2 + fetch_share).collect());
    let net = stats(all.iter().map(|a| a.1.saturating_sub(a.2 + fetch_share)).collect());
    let table: [(&str, &Stats); 4] = [
        ("start: GET /sign-in/sso", &starts),
        ("callback, raw (client-measured)", &raw),
        ("  of which: the IdP's token endpoint", &idp),
        ("callback excluding the IdP's time", &net),
    ];
    crate::propagation::print_table(&table);
    println!(
        "  {} sign-ins in {secs:.1} s ({:.0}/s); discovery/JWKS fetched {fetches} times during the run \
         (the server caches them per issuer for 15 min)",
        all.len(),
        all.len() as f64 / secs
    );
    println!(
        "  target callback p99 <= {} ms excluding the IdP: {} ({:.2} ms)",
        TARGET_P99.as_millis(),
        verdict(net.p99 <= TARGET_P99),
        ms(net.p99)
    );
    println!("  load average at the end: {}", load_average());
    Ok(())
}
