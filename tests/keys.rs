//! `countersign keygen` and key rotation (issue 19): a new key file is private and never
//! overwrites one; after rotating the session key, tokens of the old key are accepted until they
//! expire while new ones carry the new key id, and a key that is neither current nor previous is
//! refused (401); after rotating the audit key, checkpoints of the old key still verify and new
//! ones carry the new key id.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use identity::signin::tokens::{Claims, TokenKey};
use serde_json::{Value, json};
use store::testing::TestDb;

fn countersign(db: Option<&TestDb>, data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_countersign"));
    c.env_remove("DATABASE_URL")
        .env_remove("COUNTERSIGN_LISTEN")
        .env_remove("COUNTERSIGN_SESSION_KEY_FILE")
        .env_remove("COUNTERSIGN_AUDIT_KEY_FILE")
        .env_remove("COUNTERSIGN_PREVIOUS_SESSION_KEY_FILES")
        .env_remove("COUNTERSIGN_PREVIOUS_AUDIT_KEY_FILES")
        .env("COUNTERSIGN_LOG_FORMAT", "json")
        .arg("--data-dir")
        .arg(data);
    if let Some(db) = db {
        c.env("DATABASE_URL", db.url());
    }
    c
}

fn data_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("countersign-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn keygen(data: &Path, kind: &str, out: &Path) -> Output {
    countersign(None, data).args(["keygen", kind, "--out"]).arg(out).output().expect("keygen")
}

/// `keygen` that must succeed: the key id it prints.
fn new_key(data: &Path, kind: &str, out: &Path) -> String {
    let o = keygen(data, kind, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[test]
fn keygen_writes_a_private_key_file_prints_its_id_and_never_overwrites() {
    let data = data_dir();
    for kind in ["session", "audit"] {
        let path = data.join(format!("new/{kind}.key"));
        let id = new_key(&data, kind, &path);
        let seed = audit::load_seed(&path).expect("a seed");
        let expected = match kind {
            "session" => TokenKey::from_seed(seed).kid().to_owned(),
            _ => audit::CheckpointKey::from_seed(seed).key_id().to_owned(),
        };
        assert_eq!(id, expected, "the printed key id is the key's");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{kind} key file mode");

        // A second keygen to the same path is refused and leaves the key as it was.
        let before = std::fs::read(&path).expect("read");
        let o = keygen(&data, kind, &path);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "overwrote {kind} key");
        assert!(stderr.contains("already exists") && stderr.contains(&path.display().to_string()), "{stderr}");
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }
    // An unknown kind is refused by the parser, naming the choices.
    let o = keygen(&data, "mfa", &data.join("x.key"));
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("session"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!data.join("x.key").exists());
    let _ = std::fs::remove_dir_all(&data);
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(db: &TestDb, data: &Path, keys: &[&str]) -> Self {
        let port = common::tools::free_port();
        let child = countersign(Some(db), data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--login-limit", "1000/15m"])
            .args(["--insecure-cookies", "--checkpoint-interval", "3600"])
            .args(keys)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut s = Self { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", s.base)).await
                && r.status() == 200
            {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("the server exited ({status}):\n{}", s.log());
            }
            assert!(Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM; the server signs a final checkpoint of what it wrote.
    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "SIGTERM should exit cleanly ({status}):\n{}", self.log());
    }

    fn log(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    async fn login(&self, email: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"organisation": "acme", "email": email, "password": common::PASSWORD, "token_delivery": "body"}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "sign in {email}");
        let body: Value = r.json().await.expect("json");
        body["access_token"].as_str().expect("access token").to_owned()
    }

    /// `GET /api/v1/me` with `token`: (status, body).
    async fn me(&self, token: &str) -> (u16, Value) {
        let r =
            reqwest::Client::new().get(format!("{}/api/v1/me", self.base)).bearer_auth(token).send().await.expect("me");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn kid(token: &str) -> String {
    let header: Value =
        serde_json::from_slice(&B64.decode(token.split('.').next().expect("header")).expect("b64")).expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

fn claims(token: &str) -> Claims {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).expect("claims")).expect("b64")).expect("json")
}

fn unauthorised(r: &(u16, Value), what: &str) {
    assert_eq!(r.0, 401, "{what}: {}", r.1);
    assert!(r.1["error"]["code"].is_string(), "{what}: a JSON error code: {}", r.1);
}

/// The key ids of the organisation's signed checkpoints, oldest first (read as the superuser).
async fn checkpoint_key_ids(db: &TestDb) -> Vec<String> {
    let mut c = db.admin_conn().await;
    sqlx::query_scalar("select key_id from audit_checkpoints order by seq")
        .fetch_all(&mut c)
        .await
        .expect("checkpoints")
}

fn audit_verify(db: &TestDb, data: &Path, keys: &[&str]) -> Output {
    countersign(Some(db), data).args(["audit", "verify"]).args(keys).output().expect("verify")
}

#[tokio::test]
async fn rotating_the_session_and_audit_keys_keeps_old_tokens_and_checkpoints_valid() {
    let db = TestDb::new().await;
    let org = common::org(&db, "acme").await;
    common::with_password(&db, org.users[0]).await;
    let email = "user0@acme.example";
    let data = data_dir();
    let (old_session, new_session) = (data.join("session-1.key"), data.join("session-2.key"));
    let (old_audit, new_audit) = (data.join("audit-1.key"), data.join("audit-2.key"));
    let old_sid = new_key(&data, "session", &old_session);
    let new_sid = new_key(&data, "session", &new_session);
    let old_aid = new_key(&data, "audit", &old_audit);
    let new_aid = new_key(&data, "audit", &new_audit);
    let path = |p: &PathBuf| p.display().to_string();

    // Before the rotation: the old keys sign. (The fixture signed checkpoints with the test key.)
    let initial = checkpoint_key_ids(&db).await.len();
    let (os, oa, ns, na) = (path(&old_session), path(&old_audit), path(&new_session), path(&new_audit));
    let server = Server::start(&db, &data, &["--session-key-file", &os, "--audit-key-file", &oa]).await;
    let old_token = server.login(email).await;
    assert_eq!(kid(&old_token), old_sid);
    assert_eq!(server.me(&old_token).await.0, 200);
    server.stop();
    let before = checkpoint_key_ids(&db).await;
    assert!(before.len() > initial && before[initial..].iter().all(|k| *k == old_aid), "{before:?}");

    // Rotation: new keys current, old keys previous.
    let rotated = [
        "--session-key-file",
        &ns,
        "--previous-session-key-file",
        &os,
        "--audit-key-file",
        &na,
        "--previous-audit-key-file",
        &oa,
    ];
    let server = Server::start(&db, &data, &rotated).await;
    // A token of the old key is still accepted until it expires...
    let (status, me) = server.me(&old_token).await;
    assert_eq!(status, 200, "{me}");
    // ...but not once expired (same key, same session, exp in the past).
    let old_key = TokenKey::load(&old_session).expect("old key");
    let now = chrono::Utc::now().timestamp();
    let expired = Claims { iat: now - 700, exp: now - 100, ..claims(&old_token) };
    unauthorised(&server.me(&old_key.sign(&expired)).await, "an expired token of the previous key");
    // New tokens carry the new key id.
    let new_token = server.login(email).await;
    assert_eq!(kid(&new_token), new_sid);
    assert_eq!(server.me(&new_token).await.0, 200);
    // A key that is neither current nor previous: refused, however valid the claims.
    let stranger = TokenKey::from_seed([77; 32]);
    unauthorised(&server.me(&stranger.sign(&claims(&new_token))).await, "a token of an unknown key");
    // The stranger's key id in the header of an old-key token: refused too.
    let mut parts: Vec<String> = old_token.split('.').map(str::to_owned).collect();
    parts[0] = B64.encode(format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, stranger.kid()));
    unauthorised(&server.me(&parts.join(".")).await, "an old signature under a stranger's key id");
    server.stop();

    // Without the previous key, the old token is refused: the window closes when it is removed.
    let server = Server::start(&db, &data, &["--session-key-file", &ns, "--audit-key-file", &na]).await;
    unauthorised(&server.me(&old_token).await, "a token of a key no longer listed");
    assert_eq!(server.me(&new_token).await.0, 200);
    server.stop();

    // Checkpoints: the old ones keep the old key id, the new ones carry the new key id.
    let after = checkpoint_key_ids(&db).await;
    assert!(after.len() > before.len(), "new checkpoints were signed: {after:?}");
    assert_eq!(after[..before.len()], before[..]);
    assert!(after[before.len()..].iter().all(|k| *k == new_aid), "{after:?}");

    // `audit verify` with the previous key: every checkpoint verifies, exit 0. (The fixture's
    // checkpoints are the test key's: a deployment whose first key was that one, rotated twice.)
    let fixture = data.join("fixture.key");
    std::fs::write(&fixture, format!("{}\n", hex::encode([42u8; 32]))).expect("fixture key");
    let fx = path(&fixture);
    assert_eq!(common::test_key().key_id(), audit::CheckpointKey::load(&fixture).expect("load").key_id());
    let previous = ["--previous-audit-key-file", &oa, "--previous-audit-key-file", &fx];
    let o = audit_verify(&db, &data, &[&["--audit-key-file", &na][..], &previous[..]].concat());
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    // Without it, the old checkpoints cannot be checked, and verify says so (not exit 0).
    let o = audit_verify(&db, &data, &["--audit-key-file", &na]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_ne!(o.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&old_aid), "names the key it does not hold: {stdout}");
    let _ = std::fs::remove_dir_all(&data);
}
