//! A real SAML 2.0 identity provider for tests: `tests/saml/idp.py` (PyPI `pysaml2`, pinned in
//! tests/requirements.txt, signing with Debian's `xmlsec1`) on a free loopback port, with a key
//! and certificate `openssl` makes for it now; stopped when dropped. And a browser's part of a
//! sign-in, over plain HTTP: start at the SP, follow the AuthnRequest to the IdP, read the form
//! the IdP answers with.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::app::{Answer, Client};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Idp {
    child: Child,
    pub base: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the IdP answered an AuthnRequest with: the form's action (the SP's ACS) and the
/// base64 `SAMLResponse`.
pub struct Posted {
    pub acs: String,
    pub response: String,
}

impl Posted {
    /// The response as XML.
    pub fn xml(&self) -> String {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.response).expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    }

    /// Another response: `xml`, encoded as the IdP would post it.
    #[must_use]
    pub fn with_xml(&self, xml: &str) -> Self {
        use base64::Engine as _;
        Self { acs: self.acs.clone(), response: base64::engine::general_purpose::STANDARD.encode(xml) }
    }
}

impl Idp {
    /// Starts the IdP knowing the service providers whose metadata documents are given.
    pub fn start(sp_metadata: &[String]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, cert) = (dir.path().join("idp.key"), dir.path().join("idp.crt"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-idp", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap_or_else(|e| panic!("openssl: {e} (apt-get install openssl)"));
        assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
        let mut cmd = Command::new(super::venv::bin("python"));
        cmd.arg(root().join("tests/saml/idp.py")).arg("--key").arg(&key).arg("--cert").arg(&cert);
        for (i, m) in sp_metadata.iter().enumerate() {
            let path = dir.path().join(format!("sp{i}.xml"));
            std::fs::write(&path, m).expect("sp metadata");
            cmd.arg("--sp-metadata").arg(path);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("tests/saml/idp.py: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("the IdP's first line");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the IdP did not start (said {line:?}); is xmlsec1 installed?"));
        Self { child, base: format!("http://127.0.0.1:{port}"), dir, http: reqwest::Client::new() }
    }

    /// The IdP's metadata document (its entity id, SSO URL and signing certificate).
    pub async fn metadata(&self) -> String {
        let r = self.http.get(format!("{}/metadata", self.base)).send().await.expect("IdP metadata");
        assert!(r.status().is_success(), "IdP metadata: {}", r.status());
        r.text().await.expect("metadata text")
    }

    /// The IdP's answer to `authn_request_url` (where the SP sent the browser), signing in
    /// `user` with `variant` (see tests/saml/idp.py) and `extra` query text.
    pub async fn respond(&self, authn_request_url: &str, user: &str, variant: &str, extra: &str) -> Posted {
        assert!(authn_request_url.starts_with(&self.base), "sent to {authn_request_url}, not this IdP");
        let url = format!(
            "{authn_request_url}&user={}&variant={variant}{extra}",
            url::form_urlencoded::byte_serialize(user.as_bytes()).collect::<String>()
        );
        let r = self.http.get(url).send().await.expect("IdP sso");
        let status = r.status();
        let page = r.text().await.expect("IdP page");
        assert!(status.is_success(), "IdP refused: {status} {page}");
        let between = |start: &str| {
            let from = page.find(start).unwrap_or_else(|| panic!("no {start} in {page}")) + start.len();
            page[from..].split('"').next().unwrap_or_default().replace("&amp;", "&")
        };
        Posted { acs: between("action=\""), response: between("name=\"SAMLResponse\" value=\"") }
    }

    /// Where the IdP keeps its files (its key and certificate).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A browser's SAML sign-in in flight: the cookie the SP set and where it sent the browser.
pub struct Started {
    pub cookie: String,
    pub authn_request_url: String,
}

/// `GET /sign-in/saml?organisation=…` as a browser (redirects not followed).
pub async fn start(browser: &Client, organisation: &str) -> Started {
    let r = browser.without_redirects().get(&format!("/sign-in/saml?organisation={organisation}")).await;
    assert!(r.status.is_redirection(), "start: {r}");
    let cookie = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("cs_saml="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
        .expect("the binding cookie");
    Started { cookie, authn_request_url: r.header("location").expect("location").to_owned() }
}

/// The IdP's form posted to the ACS by a browser holding `cookie` (a `Cookie:` header value).
pub async fn post(browser: &Client, cookie: &str, posted: &Posted) -> Answer {
    let path = posted.acs.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).expect("ACS path");
    browser
        .without_redirects()
        .browser(cookie, None)
        .post_form(path, &[("SAMLResponse", &posted.response), ("RelayState", "")])
        .await
}

/// Whether an answer opened a session (set the access cookie).
pub fn signed_in(a: &Answer) -> bool {
    a.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("cs_access=") && !c.starts_with("cs_access=;"))
}

/// The stable code a refusal page shows (`Code: <code>…</code>`), or "".
pub fn refusal_code(a: &Answer) -> String {
    a.text.split("Code: <code>").nth(1).and_then(|rest| rest.split("</code>").next()).unwrap_or_default().to_owned()
}
