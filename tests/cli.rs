//! The binary: configuration errors name the setting; the embedded cluster starts, is reused,
//! and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn countersign() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_countersign"));
    c.env_remove("DATABASE_URL").env_remove("COUNTERSIGN_LISTEN").env("COUNTERSIGN_LOG_FORMAT", "json");
    c
}

#[test]
fn bad_configuration_names_the_setting_and_exits_nonzero() {
    for (args, env, needle) in [
        (vec!["serve", "--listen", "not-an-address"], None, "--listen"),
        (vec!["serve", "--trusted-proxies", "10.0.0.0/8,banana"], None, "banana"),
        (vec!["serve", "--db-max-connections", "0"], None, "--db-max-connections"),
        (vec!["serve", "--public-url", "approvals.example.com"], None, "--public-url"),
        (vec!["serve"], Some(("COUNTERSIGN_PUBLIC_URL", "https://approvals.example.com/login?next=/")), "public-url"),
        (vec!["serve", "--public-url", "https://user:pw@approvals.example.com"], None, "--public-url"),
        (vec!["migrate"], Some(("DATABASE_URL", "mysql://root:hunter2@localhost/x")), "DATABASE_URL"),
        (vec!["serve"], Some(("COUNTERSIGN_LOG_FORMAT", "xml")), "log-format"),
    ] {
        let mut c = countersign();
        c.args(&args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "a password was printed: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

fn wait_ready(base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(out) = Command::new("curl").args(["-sf", &format!("{base}/readyz")]).output()
            && out.status.success()
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn serve_once(data: &Path, port: u16) -> String {
    let mut child = countersign()
        .args(["serve", "--migrate", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_ready(&base);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    let mut log = String::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    assert!(ready, "server never became ready:\n{log}");
    assert!(status.success(), "SIGTERM should exit cleanly ({status}):\n{log}");
    log
}

#[test]
fn embedded_cluster_starts_is_reused_and_stops_on_sigterm() {
    if countersign_has_no_pg_binaries() {
        panic!("PostgreSQL server binaries are required for this test (apt-get install postgresql)");
    }
    let dir = std::env::temp_dir().join(format!("countersign-embedded-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");

    let first = serve_once(&dir, common::tools::free_port());
    assert!(first.contains("initialising embedded PostgreSQL cluster"), "{first}");
    assert!(first.contains("stopped embedded PostgreSQL"), "{first}");
    assert!(!dir.join("pg/cluster/postmaster.pid").exists(), "postgres still running after shutdown");

    let second = serve_once(&dir, common::tools::free_port());
    assert!(!second.contains("initialising"), "the cluster should be reused:\n{second}");
    assert!(second.contains("started embedded PostgreSQL"), "{second}");
    assert!(!dir.join("pg/cluster/postmaster.pid").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_embedded_cluster_left_by_a_killed_server_is_adopted_and_stopped_but_a_live_owners_is_left_alone() {
    if countersign_has_no_pg_binaries() {
        panic!("PostgreSQL server binaries are required for this test (apt-get install postgresql)");
    }
    let dir = std::env::temp_dir().join(format!("countersign-adopt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = common::tools::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = countersign()
        .args(["serve", "--migrate", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(&dir)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    assert!(wait_ready(&base), "server never became ready");

    // A command run beside the live server uses its cluster and leaves it running.
    let beside = countersign().args(["migrate", "--data-dir"]).arg(&dir).output().expect("migrate");
    let log = String::from_utf8_lossy(&beside.stderr);
    assert!(beside.status.success(), "{log}");
    assert!(log.contains("started by a running process"), "{log}");
    assert!(!log.contains("stopped embedded PostgreSQL"), "{log}");
    assert!(wait_ready(&base), "the server lost its database when the command beside it exited");

    // kill -9: the server cannot stop its cluster, which keeps running without an owner.
    let _ = Command::new("kill").args(["-KILL", &server.id().to_string()]).status();
    let _ = server.wait();
    assert!(dir.join("pg/cluster/postmaster.pid").exists(), "the cluster should outlive a killed server");

    // The next server adopts it and stops it when it shuts down.
    let next = serve_once(&dir, common::tools::free_port());
    assert!(next.contains("adopted embedded PostgreSQL left running by a process that is gone"), "{next}");
    assert!(next.contains("stopped embedded PostgreSQL"), "{next}");
    assert!(!dir.join("pg/cluster/postmaster.pid").exists(), "postgres still running after the adopter's shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `config check` shows what `serve` would run with: the command line over the environment over
/// the configuration file over the defaults, each value's source named and secrets redacted; a
/// secret read from `<ENV>_FILE` works for a real command; bad files are refused by name.
#[tokio::test]
async fn the_configuration_file_environment_and_secret_files_layer_and_config_check_redacts_secrets() {
    let db = store::testing::TestDb::new().await;
    let dir = temp_dir("config");
    let file = dir.join("countersign.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9101\"\nmax-upload-mib = 7\ntrusted-proxies = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n\
         db-max-connections = 33\nlog-format = \"pretty\"\napp-db-password-file = \"pw\"\ninsecure-cookies = true\n",
    )
    .expect("write");
    std::fs::write(dir.join("pw"), "hunter2-from-file\n").expect("write");
    let check = countersign()
        .current_dir(&dir)
        .args(["config", "check", "--config", "countersign.toml", "--max-upload-mib", "9"])
        .env("COUNTERSIGN_DB_MAX_CONNECTIONS", "44")
        .env("DATABASE_URL", "postgres://root:hunter2@db.example/x")
        .output()
        .expect("run");
    let said = String::from_utf8_lossy(&check.stdout).into_owned() + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{said}");
    for line in [
        "listen = \"127.0.0.1:9101\"  # configuration file",
        "max-upload-mib = \"9\"  # command line",
        "db-max-connections = \"44\"  # environment COUNTERSIGN_DB_MAX_CONNECTIONS",
        "trusted-proxies = [\"10.0.0.0/8\", \"192.168.0.0/16\"]  # configuration file",
        "database-url = (set, redacted)  # environment DATABASE_URL",
        "app-db-password = (set, redacted)  # secret file",
        "insecure-cookies = \"true\"  # configuration file",
        "head-timeout = \"20\"  # default",
        "smtp-url = (not set)  # not set",
    ] {
        assert!(said.lines().any(|l| l == line), "missing `{line}` in:\n{said}");
    }
    assert!(!said.contains("hunter2"), "a secret was printed:\n{said}");

    // A secret from a file, used for real: `migrate` reaches the database through DATABASE_URL_FILE.
    std::fs::write(dir.join("db-url"), format!("{}\n", db.url())).expect("write");
    let migrate = countersign()
        .current_dir(&dir)
        .args(["migrate", "--data-dir", "data"])
        .env("DATABASE_URL_FILE", dir.join("db-url"))
        .output()
        .expect("run");
    assert!(migrate.status.success(), "{}", output(&migrate));

    // Bad files and values are refused by name, with a non-zero exit and no secret printed.
    std::fs::write(dir.join("typo.toml"), "lisen = \"0.0.0.0:80\"\n").expect("write");
    std::fs::write(dir.join("range.toml"), "db-max-connections = 0\n").expect("write");
    for (args, env, needle) in [
        (vec!["config", "check", "--config", "typo.toml"], None, "unknown setting `lisen`"),
        (vec!["config", "check", "--config", "range.toml"], None, "--db-max-connections"),
        (vec!["config", "check", "--config", "missing.toml"], None, "missing.toml"),
        (vec!["migrate"], Some(("DATABASE_URL_FILE", "/nonexistent/db-url")), "DATABASE_URL_FILE"),
    ] {
        let mut c = countersign();
        c.current_dir(&dir).args(&args).env("DATABASE_URL", "postgres://root:hunter2@db.example/x");
        if let Some((k, v)) = env {
            c.env_remove("DATABASE_URL").env(k, v);
        }
        let o = c.output().expect("run");
        let said = output(&o);
        assert!(!o.status.success(), "{args:?} should fail: {said}");
        assert!(said.contains(needle), "{args:?}: {said}");
        assert!(!said.contains("hunter2") && !said.contains("panicked"), "{args:?}: {said}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn countersign_has_no_pg_binaries() -> bool {
    store::embedded::find_binaries().is_err()
}

#[test]
fn missing_postgres_binaries_give_an_install_hint() {
    let dir = std::env::temp_dir().join(format!("countersign-nobin-{}", std::process::id()));
    let out = countersign()
        .args(["migrate", "--data-dir"])
        .arg(&dir)
        .env("COUNTERSIGN_PG_BIN", "/nonexistent/bin")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("COUNTERSIGN_PG_BIN") && stderr.contains("no initdb"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

mod common;

use common::{operator_run, output};

fn temp_dir(what: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cs-{what}-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

/// `audit verify` from a directory that has no key: it writes none, recomputes the chains, and
/// says plainly that the checkpoints are signed by a key it does not hold (naming the key id),
/// with exit status 4 — not the tampering status 3. Given the public key, it verifies (0);
/// tampering still wins over an unknown key (3).
#[tokio::test]
async fn audit_verify_elsewhere_writes_no_key_and_names_the_key_it_does_not_hold() {
    let db = store::testing::TestDb::new().await;
    let a = common::org(&db, "alpha").await;
    let cwd = temp_dir("verify");
    let key_id = common::test_key().key_id().to_owned();

    let o = operator_run(&db, &cwd, &["audit", "verify"]);
    let out = output(&o);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(out.contains("UNVERIFIED alpha") && out.contains(&format!("signed by key {key_id}")), "{out}");
    assert!(out.contains("does not hold") && !out.contains("BROKEN"), "{out}");
    assert!(std::fs::read_dir(&cwd).expect("cwd").next().is_none(), "verify wrote into {}", cwd.display());

    let public = cwd.join("audit.pub");
    std::fs::write(&public, hex::encode(common::test_key().public().as_bytes())).expect("public key");
    let p = public.to_str().expect("path");
    let o = operator_run(&db, &cwd, &["audit", "verify", "--public-key", p]);
    assert!(o.status.success(), "{}", output(&o));
    assert!(output(&o).contains("ok      alpha"), "{}", output(&o));

    use sqlx::Executor;
    let mut admin = db.admin_conn().await;
    admin.execute("alter table audit_events disable trigger audit_events_append_only").await.expect("disable");
    sqlx::query("update audit_events set actor_id = 'mallory' where tenant_id = $1 and seq = 2")
        .bind(a.id.as_uuid())
        .execute(&mut admin)
        .await
        .expect("edit");
    let o = operator_run(&db, &cwd, &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(3), "{}", output(&o));
    assert!(output(&o).contains("BROKEN  alpha"), "{}", output(&o));
    std::fs::remove_dir_all(&cwd).ok();
}

/// A key path named explicitly that does not exist is an error naming the setting; nothing is
/// created (not the file, not its directories, not the default keys). Commands that only read
/// keys never generate one at the default path either.
#[tokio::test]
async fn a_missing_explicit_key_file_is_an_error_and_no_key_appears() {
    let db = store::testing::TestDb::new().await;
    let cwd = temp_dir("keys");
    let nowhere = cwd.join("nonexistent/dir/k.key");
    let n = nowhere.to_str().expect("path");
    for (args, setting) in [
        (vec!["serve", "--listen", "127.0.0.1:0", "--session-key-file", n], "--session-key-file"),
        (vec!["serve", "--listen", "127.0.0.1:0", "--audit-key-file", n], "--audit-key-file"),
        (vec!["demo", "--listen", "127.0.0.1:0", "--mfa-key-file", n], "--mfa-key-file"),
        (vec!["audit", "checkpoint", "--audit-key-file", n], "--audit-key-file"),
        (vec!["admin", "rotate-mfa-key", "--mfa-key-file", n], "--mfa-key-file"),
    ] {
        let o = operator_run(&db, &cwd, &args);
        let out = output(&o);
        assert!(!o.status.success(), "{args:?} should fail: {out}");
        assert!(out.contains(setting) && out.contains("must exist") && out.contains(n), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
        assert!(std::fs::read_dir(&cwd).expect("cwd").next().is_none(), "{args:?} created {:?}", cwd.read_dir());
    }
    // Default paths: only serve/demo generate; these commands refuse and write nothing.
    for args in [vec!["audit", "checkpoint"], vec!["audit", "public-key"], vec!["admin", "rotate-mfa-key"]] {
        let o = operator_run(&db, &cwd, &args);
        let out = output(&o);
        assert!(!o.status.success(), "{args:?} should fail: {out}");
        assert!(out.contains("no such key file") && out.contains("countersign serve"), "{args:?}: {out}");
        assert!(std::fs::read_dir(&cwd).expect("cwd").next().is_none(), "{args:?} created {:?}", cwd.read_dir());
    }
    std::fs::remove_dir_all(&cwd).ok();
}

/// The command line makes the same checks as the API: a scope the server does not enforce is
/// refused (exit non-zero, the message names it) and no key is created; a valid one works.
#[tokio::test]
async fn admin_api_key_create_refuses_an_unknown_scope_and_creates_nothing() {
    let db = store::testing::TestDb::new().await;
    let a = common::org(&db, "acme").await;
    let cwd = temp_dir("api-key");
    let keys = || async {
        let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
        let n: i64 = sqlx::query_scalar("select count(*) from api_keys").fetch_one(tx.conn()).await.expect("count");
        n
    };
    let before = keys().await;
    let base = ["admin", "api-key", "create", "--tenant", "acme", "--name", "ci", "--role", "auditor"];
    let o = operator_run(&db, &cwd, &[&base[..], &["--scope", "bogus:thing"]].concat());
    let out = output(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("unknown_scope") && out.contains("'bogus:thing' is not a scope"), "{out}");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("csk_"), "a key was printed: {out}");
    assert_eq!(keys().await, before, "nothing is created");
    let o = operator_run(&db, &cwd, &[&base[..], &["--scope", "audit:read"]].concat());
    assert!(o.status.success(), "{}", output(&o));
    assert!(String::from_utf8_lossy(&o.stdout).trim().starts_with("csk_"));
    assert_eq!(keys().await, before + 1);
    std::fs::remove_dir_all(&cwd).ok();
}

/// `admin create-organisation` creates the organisation and prints a one-time invitation whose
/// acceptance makes its first owner; bad input and a taken slug are refused with a clear message
/// and a non-zero exit, creating nothing.
#[tokio::test]
async fn admin_create_organisation_invites_its_owner_once_and_refuses_a_taken_slug() {
    use reqwest::StatusCode;
    let db = store::testing::TestDb::new().await;
    let cwd = temp_dir("create-org");
    let tenants = || async {
        let mut admin = db.admin_conn().await;
        let n: i64 = sqlx::query_scalar("select count(*) from tenants").fetch_one(&mut admin).await.expect("count");
        n
    };
    let create = ["admin", "create-organisation", "--name", "Nova Ltd", "--slug", "nova"];
    let o = operator_run(&db, &cwd, &[&create[..], &["--owner-email", "olive@nova.example"]].concat());
    assert!(o.status.success(), "{}", output(&o));
    let token = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(token.starts_with("csi_") && !token.contains('\n'), "{}", output(&o));
    assert!(output(&o).contains("owner invitation for olive@nova.example"), "{}", output(&o));
    assert_eq!(tenants().await, 1);

    let app = common::TestApp::new(&db).await;
    let anonymous = app.anonymous();
    let body = serde_json::json!({"token": token, "password": common::PASSWORD});
    let accept = || anonymous.post("/api/v1/invitations/accept", body.clone());
    let r = accept().await;
    assert!(r.status.is_success(), "{r}");
    let owner = app.sign_in("nova", "olive@nova.example").await;
    let me = owner.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["role"], "owner", "{}", me.body);
    assert_eq!(accept().await.status, StatusCode::GONE, "the invitation works once");

    for (args, needle) in [
        (vec!["--owner-email", "someone@else.example"], "already exists"),
        (vec!["--owner-email", "not-an-address"], "--owner-email"),
    ] {
        let o = operator_run(&db, &cwd, &[&create[..], &args[..]].concat());
        assert!(!o.status.success(), "{args:?}: {}", output(&o));
        assert!(output(&o).contains(needle), "{args:?}: {}", output(&o));
    }
    for (args, needle) in [
        (vec!["--name", "Bad", "--slug", "Bad Slug!", "--owner-email", "a@b.example"], "--slug"),
        (vec!["--name", " ", "--slug", "blank", "--owner-email", "a@b.example"], "--name"),
        (
            vec!["--name", "D", "--slug", "dom", "--owner-email", "a@b.example", "--allowed-domain", "@x"],
            "--allowed-domain",
        ),
    ] {
        let o = operator_run(&db, &cwd, &[&["admin", "create-organisation"][..], &args[..]].concat());
        assert!(!o.status.success(), "{args:?}: {}", output(&o));
        assert!(output(&o).contains(needle) && !output(&o).contains("panicked"), "{args:?}: {}", output(&o));
    }
    assert_eq!(tenants().await, 1, "refusals create nothing");
    std::fs::remove_dir_all(&cwd).ok();
}

/// `admin add-partner-member` makes a person a partner person of one partner company: they sign
/// in and the programme shows them that partner's leads only. A staff role, another
/// organisation's partner, an unknown organisation and a bad address are refused by name and
/// change nothing. `admin expire-deals` ends protections past their window, once.
#[tokio::test]
async fn admin_partner_commands_add_partner_people_and_expire_deals() {
    use reqwest::StatusCode;
    let db = store::testing::TestDb::new().await;
    let acme = common::org(&db, "acme").await;
    let beta = common::org(&db, "beta").await;
    let cwd = temp_dir("partners");
    let partner = acme.partners[0].to_string();
    let add = |partner: &str, email: &str, role: &str, tenant: &str| {
        operator_run(
            &db,
            &cwd,
            &[
                "admin",
                "add-partner-member",
                "--tenant",
                tenant,
                "--partner",
                partner,
                "--email",
                email,
                "--role",
                role,
            ],
        )
    };
    let partner_people = || async {
        let mut admin = db.admin_conn().await;
        let n: i64 = sqlx::query_scalar("select count(*) from memberships where partner_id is not null")
            .fetch_one(&mut admin)
            .await
            .expect("count");
        n
    };
    for (partner, email, role, tenant, needle) in [
        (partner.as_str(), "pat@partner.example", "staff", "acme", "--role"),
        (&beta.partners[0].to_string(), "pat@partner.example", "partner_agent", "acme", "--partner"),
        (partner.as_str(), "pat@partner.example", "partner_agent", "nowhere", "--tenant"),
        (partner.as_str(), "not an address", "partner_agent", "acme", "--email"),
    ] {
        let o = add(partner, email, role, tenant);
        assert!(!o.status.success(), "{role} {tenant}: {}", output(&o));
        assert!(output(&o).contains(needle) && !output(&o).contains("panicked"), "{needle}: {}", output(&o));
    }
    assert_eq!(partner_people().await, 0, "refusals add nobody");
    let accounts = {
        let mut admin = db.admin_conn().await;
        let n: i64 = sqlx::query_scalar("select count(*) from users where email = 'pat@partner.example'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
        n
    };
    assert_eq!(accounts, 0, "refusals create no account");

    let o = add(&partner, "pat@partner.example", "partner_agent", "acme");
    assert!(o.status.success(), "{}", output(&o));
    assert!(output(&o).contains("is now partner_agent of partner"), "{}", output(&o));
    assert_eq!(partner_people().await, 1);
    let pat: uuid::Uuid = {
        let mut admin = db.admin_conn().await;
        sqlx::query_scalar("select id from users where email = 'pat@partner.example'")
            .fetch_one(&mut admin)
            .await
            .expect("user")
    };
    common::with_password(&db, pat).await;
    let app = common::TestApp::new(&db).await;
    let leads = app.sign_in("acme", "pat@partner.example").await.get("/api/v1/leads").await;
    assert_eq!(leads.status, StatusCode::OK, "{leads}");
    let names: Vec<&str> =
        leads.body["items"].as_array().expect("items").iter().filter_map(|l| l["companyName"].as_str()).collect();
    assert_eq!(names, ["Lead of Fixture One"], "only their own partner's leads");

    let mut admin = db.admin_conn().await;
    sqlx::query(
        "update deal_registrations set status = 'approved', decided_at = now() - interval '100 days',
                decision_reason = 'fixture', protected_until = now() - interval '10 days'
          where tenant_id = $1 and partner_id = $2",
    )
    .bind(acme.id.as_uuid())
    .bind(acme.partners[0])
    .execute(&mut admin)
    .await
    .expect("a protection past its window");
    for expected in ["expired 1 deal registration(s)", "expired 0 deal registration(s)"] {
        let o = operator_run(&db, &cwd, &["admin", "expire-deals"]);
        assert!(o.status.success() && output(&o).contains(expected), "{expected}: {}", output(&o));
    }
    std::fs::remove_dir_all(&cwd).ok();
}

/// `admin attach-reference` moves an attachment made by reference to a stored file: streamed in
/// with the upload's checks (an executable renamed .pdf is refused and nothing is stored), sealed
/// under the organisation's key, audited (`file.uploaded`, `attachment.reference_stored` with the
/// old reference), and then served by the API byte for byte. An attachment that already holds a
/// file, or another organisation's, is refused.
#[tokio::test]
async fn admin_attach_reference_stores_the_file_of_a_by_reference_attachment() {
    use reqwest::StatusCode;
    let db = store::testing::TestDb::new().await;
    let acme = common::org(&db, "acme").await;
    common::org(&db, "beta").await;
    for u in &acme.users {
        common::with_password(&db, *u).await;
    }
    // The fixture's file rows name a data key no master key here opens: start without them.
    let mut admin = db.admin_conn().await;
    for sql in [
        "update document_attachments set blob_id = null",
        "delete from mdf_claim_proofs",
        "delete from blobs",
        "delete from blob_keys",
    ] {
        sqlx::query(sql).execute(&mut admin).await.expect(sql);
    }
    let cwd = temp_dir("attach-reference");
    let data = cwd.join("data");
    let files = files::Files {
        storage: files::Storage::local(&data.join("blobs")).expect("storage"),
        keys: files::Keyring::load_or_create(&data.join("keys").join("blob-master")).expect("keys"),
        links: files::LinkKey::ephemeral(),
        max_upload: files::DEFAULT_MAX_UPLOAD,
    };
    let app = common::TestApp::serve(common::TestApp::setup(&db).roomy().state().with_files(files)).await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let body = serde_json::json!({"kind": "voucher", "department_id": acme.department.to_string(), "title": "Chairs",
        "document_date": "2000-03-01", "currency": "EUR", "lines": [{"description": "chair", "amount_minor": 1000}],
        "attachments": [{"name": "Supplier statement.pdf", "reference": "dms://statements/2000/3"}]});
    let r = staff.post("/api/v1/documents", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    let doc = r.body["id"].as_str().expect("id").to_owned();
    let list = staff.get(&format!("/api/v1/documents/{doc}/attachments")).await;
    let id = list.body["items"][0]["id"].as_str().expect("attachment").to_owned();
    assert!(list.body["items"][0]["file"].is_null(), "{}", list.body);

    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    exe.resize(100_000, 0x90);
    let bad = cwd.join("statement.pdf.exe");
    std::fs::write(&bad, &exe).expect("write");
    let args = |file: &Path, tenant: &str| {
        ["admin", "attach-reference", "--tenant", tenant, "--attachment", id.as_str(), "--file"]
            .into_iter()
            .map(str::to_owned)
            .chain([file.to_str().expect("path").to_owned()])
            .collect::<Vec<String>>()
    };
    let run = |a: Vec<String>| operator_run(&db, &cwd, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let o = run(args(&bad, "acme"));
    assert!(!o.status.success(), "{}", output(&o));
    assert!(output(&o).contains("file type refused"), "{}", output(&o));
    let blobs: i64 = sqlx::query_scalar("select count(*) from blobs").fetch_one(&mut admin).await.expect("count");
    assert_eq!(blobs, 0, "nothing stored for a refused file");

    let mut statement = b"%PDF-1.7\n".to_vec();
    statement.resize(300_000, b'x');
    let good = cwd.join("statement.pdf");
    std::fs::write(&good, &statement).expect("write");
    // Another organisation does not have this attachment.
    let o = run(args(&good, "beta"));
    assert!(!o.status.success() && output(&o).contains("no attachment by reference"), "{}", output(&o));
    let o = run(args(&good, "acme"));
    assert!(o.status.success(), "{}", output(&o));
    assert!(output(&o).contains("now holds file") && output(&o).contains("dms://statements/2000/3"), "{}", output(&o));
    // Once stored, it is no longer a reference.
    let o = run(args(&good, "acme"));
    assert!(!o.status.success() && output(&o).contains("no attachment by reference"), "{}", output(&o));

    let list = staff.get(&format!("/api/v1/documents/{doc}/attachments")).await;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&statement));
    assert_eq!(list.body["items"][0]["file"]["sha256"], serde_json::json!(sha), "{}", list.body);
    let link = staff.post(&format!("/api/v1/attachments/{id}/links"), serde_json::json!({})).await;
    assert_eq!(link.status, StatusCode::CREATED, "{link}");
    let url = link.body["url"].as_str().expect("url");
    let got =
        reqwest::Client::new().get(app.url(url)).bearer_auth(staff.access_token()).send().await.expect("download");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body").to_vec(), statement);
    assert_eq!(common::audit_count(&db, acme.id, "attachment.reference_stored").await, 1);
    // The application's role sets a file once: it cannot take it away or repoint it.
    for sql in [
        "update document_attachments set blob_id = null where id = $1::uuid",
        "update document_attachments set reference = 'dms://elsewhere' where id = $1::uuid",
    ] {
        let mut tx = db.store.tenant_tx(acme.id).await.expect("tx");
        let e = sqlx::query(sql).bind(&id).execute(tx.conn()).await.expect_err(sql);
        assert!(e.to_string().contains("set once"), "{sql}: {e}");
    }
    assert_eq!(common::audit_count(&db, acme.id, "file.uploaded").await, 1);
    std::fs::remove_dir_all(&cwd).ok();
}

/// `countersign completions <shell>` prints a completion script that names the commands (bash's
/// parses: `bash -n`); an unknown shell is refused with the shells it knows; a reader that stops
/// early (`| head`) is not a crash.
#[test]
fn completions_are_printed_for_each_shell_and_an_unknown_shell_is_refused() {
    for (shell, needle) in
        [("bash", "_countersign()"), ("zsh", "#compdef countersign"), ("fish", "complete -c countersign")]
    {
        let o = countersign().args(["completions", shell]).output().expect("run");
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && script.contains(needle), "{shell}: {}", output(&o));
        for sub in ["rotate-blob-key", "purge-files", "security-docs", "verify"] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
        if shell == "bash" {
            let path = temp_dir("completions").join("countersign.bash");
            std::fs::write(&path, script.as_bytes()).expect("write");
            let check = std::process::Command::new("bash").arg("-n").arg(&path).output().expect("bash -n");
            assert!(check.status.success(), "bash -n: {}", output(&check));
        }
    }
    let o = countersign().args(["completions", "tcsh"]).output().expect("run");
    assert!(!o.status.success() && output(&o).contains("possible values: bash"), "{}", output(&o));

    let mut child = countersign()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take()); // the reader goes away before anything is read
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success() && !output(&o).contains("panicked"), "{}", output(&o));
}

/// `serve` with `env` (and no other COUNTERSIGN_ setting of the test's environment) against
/// `db`, until ready; then SIGTERM. Its log.
fn serve_with_env(db: &store::testing::TestDb, data: &Path, env: &[(&str, &str)]) -> String {
    let mut child = start_serve(db, data, env);
    stop_serve(&mut child)
}

fn start_serve(db: &store::testing::TestDb, data: &Path, env: &[(&str, &str)]) -> (std::process::Child, String) {
    let port = common::tools::free_port();
    let mut c = countersign();
    for (k, _) in std::env::vars() {
        if k.starts_with("COUNTERSIGN_") && k != "COUNTERSIGN_LOG_FORMAT" {
            c.env_remove(k);
        }
    }
    let child = c
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--checkpoint-interval", "3600", "--data-dir"])
        .arg(data)
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "info,sqlx=warn")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    (child, format!("http://127.0.0.1:{port}"))
}

fn stop_serve((child, base): &mut (std::process::Child, String)) -> String {
    let ready = wait_ready(base);
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().expect("wait");
    let mut log = String::new();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            log.push_str(&line);
            log.push('\n');
        }
    }
    assert!(ready, "server never became ready:\n{log}");
    assert!(status.success(), "SIGTERM should exit cleanly ({status}):\n{log}");
    log
}

async fn count(db: &store::testing::TestDb, sql: &str) -> i64 {
    let mut admin = db.admin_conn().await;
    sqlx::query_scalar(sql).fetch_one(&mut admin).await.expect(sql)
}

/// First start without the demo: `serve` with COUNTERSIGN_BOOTSTRAP_ORGANISATION and
/// COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL creates the organisation and mails its owner's invitation
/// (to the outbox here: no SMTP server), logging where it went but never the token; the next
/// start finds it and creates nothing (one organisation, one invitation, one mail); two nodes
/// starting at once create it once. The mailed invitation makes its owner.
#[tokio::test]
async fn serve_bootstraps_the_first_organisation_once_and_its_invitation_makes_the_owner() {
    use reqwest::StatusCode;
    let db = store::testing::TestDb::new().await;
    let data = temp_dir("bootstrap");
    let env = [
        ("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "nova"),
        ("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "Olive@Nova.example"),
        ("COUNTERSIGN_BOOTSTRAP_ORGANISATION_NAME", "Nova Ltd"),
    ];
    let first = serve_with_env(&db, &data, &env);
    assert!(first.contains("bootstrap organisation created"), "{first}");
    assert!(first.contains(r#""delivered_via":"outbox""#) && first.contains("olive@nova.example"), "{first}");
    assert!(!first.contains("csi_"), "the invitation token reached the log:\n{first}");
    let state = || async {
        (
            count(&db, "select count(*) from tenants where slug = 'nova' and name = 'Nova Ltd'").await,
            count(&db, "select count(*) from invitations where email = 'olive@nova.example' and role = 'owner'").await,
            count(&db, "select count(*) from mail_outbox where to_address = 'olive@nova.example'").await,
        )
    };
    assert_eq!(state().await, (1, 1, 1));

    let second = serve_with_env(&db, &data, &env);
    assert!(second.contains("bootstrap organisation exists"), "{second}");
    assert!(!second.contains("bootstrap organisation created"), "{second}");
    assert_eq!(state().await, (1, 1, 1), "the second start creates nothing");

    // Two nodes at once (each with its own data directory): one creates, the other finds it.
    let duo =
        [("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "duo"), ("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "dana@duo.example")];
    let (d1, d2) = (temp_dir("bootstrap-a"), temp_dir("bootstrap-b"));
    let (mut a, mut b) = (start_serve(&db, &d1, &duo), start_serve(&db, &d2, &duo));
    let logs = [stop_serve(&mut a), stop_serve(&mut b)];
    let created = logs.iter().filter(|l| l.contains("bootstrap organisation created")).count();
    let exists = logs.iter().filter(|l| l.contains("bootstrap organisation exists")).count();
    assert_eq!((created, exists), (1, 1), "{logs:?}");
    assert_eq!(count(&db, "select count(*) from tenants where slug = 'duo'").await, 1);
    assert_eq!(count(&db, "select count(*) from invitations where email = 'dana@duo.example'").await, 1);

    // The mail carries the token; accepting it makes the owner.
    let o = countersign()
        .args(["admin", "outbox", "--to", "olive@nova.example", "--data-dir"])
        .arg(&data)
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "warn")
        .output()
        .expect("outbox");
    let mail = output(&o);
    assert!(o.status.success() && mail.contains("invited to join Nova Ltd"), "{mail}");
    let token: String = mail
        .split("csi_")
        .nth(1)
        .map(|rest| format!("csi_{}", rest.split(|c: char| c.is_whitespace() || c == '&').next().unwrap_or_default()))
        .expect("a token in the mail");
    let app = common::TestApp::new(&db).await;
    let body = serde_json::json!({"token": token, "password": common::PASSWORD});
    let r = app.anonymous().post("/api/v1/invitations/accept", body).await;
    assert!(r.status.is_success(), "{r}");
    let me = app.sign_in("nova", "olive@nova.example").await.get("/api/v1/me").await;
    assert_eq!((me.status, me.body["role"].as_str()), (StatusCode::OK, Some("owner")), "{}", me.body);
    for d in [&data, &d1, &d2] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// The bootstrap settings come together and are checked before anything starts: one without the
/// other, a bad address or slug, exit 2 naming the flag; they may come from the configuration
/// file like every other setting.
#[test]
fn bootstrap_settings_are_refused_alone_or_malformed_naming_the_flag() {
    for (env, needle) in [
        (vec![("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "nova")], "--bootstrap-owner-email"),
        (vec![("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "olive@nova.example")], "--bootstrap-organisation"),
        (
            vec![
                ("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "nova"),
                ("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "not-an-address"),
            ],
            "--bootstrap-owner-email",
        ),
        (
            vec![
                ("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "Nova Ltd!"),
                ("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "o@nova.example"),
            ],
            "--bootstrap-organisation",
        ),
    ] {
        let o =
            countersign().args(["serve", "--listen", "127.0.0.1:0"]).envs(env.iter().copied()).output().expect("run");
        assert_eq!(o.status.code(), Some(2), "{env:?}: {}", output(&o));
        assert!(output(&o).contains(needle) && !output(&o).contains("panicked"), "{env:?}: {}", output(&o));
    }
    let dir = temp_dir("bootstrap-config");
    std::fs::write(
        dir.join("c.toml"),
        "bootstrap-organisation = \"nova\"\nbootstrap-owner-email = \"olive@nova.example\"\n",
    )
    .expect("write");
    let o = countersign().current_dir(&dir).args(["config", "check", "--config", "c.toml"]).output().expect("run");
    let said = output(&o);
    assert!(o.status.success(), "{said}");
    assert!(said.lines().any(|l| l == "bootstrap-organisation = \"nova\"  # configuration file"), "{said}");
    assert!(
        said.lines().any(|l| l == "bootstrap-owner-email = \"olive@nova.example\"  # configuration file"),
        "{said}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

const SMTP_SINK: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
class Sink:
    async def handle_DATA(self, server, session, envelope):
        sys.stdout.write('ENVELOPE %s\n' % ','.join(envelope.rcpt_tos))
        sys.stdout.write(envelope.content.decode('utf-8', 'replace'))
        sys.stdout.write('\n.END\n')
        sys.stdout.flush()
        return '250 OK'
controller = Controller(Sink(), hostname='127.0.0.1', port=int(sys.argv[1]))
controller.start()
print('READY', flush=True)
time.sleep(120)
controller.stop()
"#;

/// With `--smtp-url`, the bootstrap invitation goes out over SMTP (a real SMTP server on
/// loopback: `aiosmtpd` from the test virtualenv) and nothing waits in the outbox; when the SMTP
/// server refuses the connection, the invitation is queued in the outbox instead and the log
/// says so. Neither log holds the token.
#[tokio::test]
async fn bootstrap_mails_the_invitation_over_smtp_or_queues_it_when_smtp_is_down() {
    use std::io::Read;
    let db = store::testing::TestDb::new().await;
    let port = common::tools::free_port();
    let mut sink = Command::new(common::venv::bin("python"))
        .arg("-c")
        .arg(SMTP_SINK)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the virtualenv's python runs the SMTP sink");
    let mut out = BufReader::new(sink.stdout.take().expect("stdout"));
    let mut ready = String::new();
    out.read_line(&mut ready).expect("read");
    assert_eq!(ready.trim(), "READY");

    let data = temp_dir("bootstrap-smtp");
    let url = format!("smtp://127.0.0.1:{port}");
    let env = [
        ("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "mailed"),
        ("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "mo@mailed.example"),
        ("COUNTERSIGN_SMTP_URL", url.as_str()),
    ];
    let log = serve_with_env(&db, &data, &env);
    assert!(log.contains(r#""delivered_via":"smtp""#), "{log}");
    assert!(!log.contains("csi_"), "the token reached the log:\n{log}");
    let _ = sink.kill();
    let _ = sink.wait();
    let mut received = String::new();
    out.read_to_string(&mut received).expect("read");
    assert!(
        received.contains("ENVELOPE mo@mailed.example") && received.contains("invited to join mailed"),
        "{received}"
    );
    let queued = count(&db, "select count(*) from mail_outbox where to_address = 'mo@mailed.example'").await;
    assert_eq!(queued, 0, "sent over SMTP, not queued");

    // Nothing listens on this port: the mail waits in the outbox.
    let down = format!("smtp://127.0.0.1:{}", common::tools::free_port());
    let env = [
        ("COUNTERSIGN_BOOTSTRAP_ORGANISATION", "queued"),
        ("COUNTERSIGN_BOOTSTRAP_OWNER_EMAIL", "qi@queued.example"),
        ("COUNTERSIGN_SMTP_URL", down.as_str()),
    ];
    let log = serve_with_env(&db, &data, &env);
    assert!(log.contains("could not be sent over SMTP") && log.contains(r#""delivered_via":"outbox""#), "{log}");
    assert!(!log.contains("csi_"), "the token reached the log:\n{log}");
    let queued = count(&db, "select count(*) from mail_outbox where to_address = 'qi@queued.example'").await;
    assert_eq!(queued, 1, "queued in the outbox");
    std::fs::remove_dir_all(&data).ok();
}
