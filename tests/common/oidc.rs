//! A real OpenID Connect provider for tests: `node tests/oidc/provider.mjs` (npm `oidc-provider`
//! 9.x, pinned in package-lock.json) on a free loopback port, stopped when dropped; and a person
//! signing in at its login page over plain HTTP (no browser), cookies kept by hand.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "countersign-test";
pub const CLIENT_SECRET: &str = "countersign-test-secret-0123456789";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `node_modules` as `package-lock.json` pins it, installed with `npm ci` (under a lock) when
/// `oidc-provider` is missing. A missing node or npm fails the test naming what to install.
pub fn node_modules() -> PathBuf {
    let present = || root().join("node_modules/oidc-provider/package.json").exists();
    if !present() {
        std::fs::create_dir_all(root().join("target")).expect("target dir");
        let guard = std::fs::File::create(root().join("target/node-modules.lock")).expect("lock file");
        guard.lock().expect("lock node_modules");
        if !present() {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(root())
                .output()
                .unwrap_or_else(|e| panic!("npm ci: {e} (apt-get install nodejs npm)"));
            assert!(
                out.status.success(),
                "npm ci failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        drop(guard);
    }
    root().join("node_modules")
}

/// A person the provider knows: `login`/`password` at its page, and the claims it asserts.
pub fn account(login: &str, sub: &str, email: &str, verified: bool) -> (String, Value) {
    (
        login.to_owned(),
        json!({"password": "provider-pass", "sub": sub, "claims": {"email": email, "email_verified": verified, "name": login}}),
    )
}

pub struct Provider {
    child: Child,
    pub issuer: String,
    http: reqwest::Client,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Starts the provider with one client (redirecting to `redirect_uri`) and `accounts`.
    pub fn start(redirect_uri: &str, accounts: Vec<(String, Value)>) -> Self {
        node_modules();
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let accounts: serde_json::Map<String, Value> = accounts.into_iter().collect();
        let config = json!({
            "port": port,
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [redirect_uri]}],
            "accounts": accounts,
        });
        let mut child = Command::new("node")
            .arg(root().join("tests/oidc/provider.mjs"))
            .arg(config.to_string())
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("node tests/oidc/provider.mjs: {e} (apt-get install nodejs npm)"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("provider output");
        let issuer =
            line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("provider did not start: {line:?}")).to_owned();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Self { child, issuer, http }
    }

    /// Changes what the token endpoint hands out (see provider.mjs): `forge`, `aud`, `nonce`,
    /// `expired`, `rotate`, or `None` for tokens as issued.
    pub async fn mode(&self, mode: Option<&str>) {
        let r = self
            .http
            .post(format!("{}/__test/mode", self.issuer))
            .json(&json!({"mode": mode}))
            .send()
            .await
            .expect("mode");
        assert_eq!(r.status(), StatusCode::OK);
    }

    /// Follows `authorize_url` through the provider's login page as `login`, and returns the
    /// redirect back to us (the callback URL with `code` and `state`).
    pub async fn sign_in(&self, authorize_url: &str, login: &str, password: &str) -> url::Url {
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        let mut next = authorize_url.to_owned();
        let mut posted = false;
        for _ in 0..10 {
            let url = url::Url::parse(&next).expect("url");
            if !url.as_str().starts_with(&self.issuer) {
                return url;
            }
            let cookies = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let r = if url.path().starts_with("/interaction/") && !posted {
                posted = true;
                // The login page, then its form.
                let page = self.http.get(url.clone()).header("cookie", &cookies).send().await.expect("page");
                assert_eq!(page.status(), StatusCode::OK);
                keep(&mut jar, &page);
                let html = page.text().await.expect("html");
                assert!(html.contains("name=\"password\""), "{html}");
                let cookies = jar.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
                self.http
                    .post(format!("{}/login", url.as_str().trim_end_matches('/')))
                    .header("cookie", cookies)
                    .form(&[("login", login), ("password", password)])
                    .send()
                    .await
                    .expect("login")
            } else {
                self.http.get(url.clone()).header("cookie", &cookies).send().await.expect("get")
            };
            keep(&mut jar, &r);
            let Some(location) = r.headers().get("location").and_then(|v| v.to_str().ok()) else {
                panic!("provider answered {} without a redirect: {}", r.status(), r.text().await.unwrap_or_default());
            };
            next = url.join(location).expect("location").to_string();
        }
        panic!("too many redirects at the provider");
    }
}

fn keep(jar: &mut BTreeMap<String, String>, r: &reqwest::Response) {
    for c in r.headers().get_all("set-cookie") {
        let Ok(c) = c.to_str() else { continue };
        let pair = c.split(';').next().unwrap_or_default();
        if let Some((k, v)) = pair.split_once('=') {
            if v.is_empty() {
                jar.remove(k);
            } else {
                jar.insert(k.to_owned(), v.to_owned());
            }
        }
    }
}

/// `code` and `state` from the provider's redirect back.
pub fn code_and_state(back: &url::Url) -> (String, String) {
    let q: BTreeMap<String, String> = back.query_pairs().into_owned().collect();
    (q.get("code").cloned().unwrap_or_default(), q.get("state").cloned().unwrap_or_default())
}

/// Saves `issuer` (with [`CLIENT_ID`], [`CLIENT_SECRET`], the domain `acme.example`, the standard
/// claim names) as the organisation's provider on the settings page, as `admin`, an
/// administrator signed in with a browser, does.
pub async fn configure_on_settings_page(admin: &super::Client, issuer: &str) -> super::Answer {
    admin
        .post_form(
            "/settings/sso",
            &[
                ("preset", "generic"),
                ("issuer", issuer),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("domains", "acme.example"),
                ("email_claim", "email"),
                ("name_claim", "name"),
                ("groups_claim", "groups"),
                ("group_mapping", ""),
                ("break_glass", ""),
            ],
        )
        .await
}
