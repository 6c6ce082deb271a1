//! Every authenticated request's span carries the organisation and the caller's id — a person's
//! `user_id` or an API key's `api_key_id` — recorded once by the authentication, so every log
//! line of the request can be attributed; and nothing a request logs carries an email address,
//! a password, a token or a key.
//!
//! One test in this file: it installs the process-wide subscriber (the server's tasks run on
//! other threads), which a second test in the same binary could not.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use common::{TestApp, member, org};
use identity::Role;
use reqwest::StatusCode;
use serde_json::json;
use store::testing::TestDb;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

type Fields = Vec<(String, String)>;

/// Collects every span's fields (as created and as recorded later) and every event's fields.
#[derive(Clone, Default)]
struct Collect {
    open: Arc<Mutex<HashMap<u64, (String, Fields)>>>,
    closed: Arc<Mutex<Vec<(String, Fields)>>>,
    events: Arc<Mutex<Vec<Fields>>>,
}

struct Visitor<'a>(&'a mut Fields);

impl Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: Subscriber> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.insert(id.into_u64(), (attrs.metadata().name().to_owned(), fields));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, fields)) = open.get_mut(&id.into_u64()) {
            values.record(&mut Visitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        // The access log line: kept with its request span as `access.<field>`.
        if fields.iter().any(|(k, v)| k == "message" && v == "access")
            && let Some(id) = ctx.current_span().id()
        {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, span)) = open.get_mut(&id.into_u64()) {
                span.extend(fields.iter().map(|(k, v)| (format!("access.{k}"), v.clone())));
            }
        }
        self.events.lock().unwrap_or_else(PoisonError::into_inner).push(fields);
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        let span = self.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&id.into_u64());
        if let Some(span) = span {
            self.closed.lock().unwrap_or_else(PoisonError::into_inner).push(span);
        }
    }
}

impl Collect {
    /// The fields of every request span for `method path`, open or closed.
    fn requests(&self, method: &str, path: &str) -> Vec<HashMap<String, String>> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        open.values()
            .chain(closed.iter())
            .filter(|(name, _)| name == "request")
            .map(|(_, fields)| fields.iter().cloned().collect::<HashMap<_, _>>())
            .filter(|f| f.get("method").map(String::as_str) == Some(method))
            .filter(|f| f.get("path").map(String::as_str) == Some(path))
            .collect()
    }

    /// Every value any span or event recorded.
    fn all_values(&self) -> Vec<String> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        let events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        open.values()
            .chain(closed.iter())
            .flat_map(|(_, f)| f.iter())
            .chain(events.iter().flatten())
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[tokio::test]
async fn authenticated_requests_carry_the_tenant_and_caller_on_their_span_and_log_no_secrets() {
    let collect = Collect::default();
    tracing::subscriber::set_global_default(Registry::default().with(collect.clone())).expect("the only subscriber");

    let db = TestDb::new().await;
    let acme = org(&db, "acme").await;
    common::with_password(&db, acme.users[0]).await;
    let staff = member(&db, acme.id, "acme", "staff", Role::Staff, Some(acme.department), true).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let person = app.sign_in("acme", "staff@acme.example").await;

    // A person: the organisation and the user, no key.
    let me = person.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK);
    let spans = collect.requests("GET", "/api/v1/me");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.get("tenant_id"), Some(&acme.id.to_string()), "{span:?}");
    assert_eq!(span.get("user_id"), Some(&staff.to_string()), "{span:?}");
    assert_eq!(span.get("api_key_id"), None, "{span:?}");
    // Its access log line: the route template, the status and the time taken, in the span.
    assert_eq!(span.get("route").map(String::as_str), Some("/api/v1/me"), "{span:?}");
    assert_eq!(span.get("access.status").map(String::as_str), Some("200"), "{span:?}");
    assert!(span.get("access.duration_ms").and_then(|d| d.parse::<f64>().ok()).is_some(), "{span:?}");

    // An API key: the organisation and the key, no user.
    let created =
        admin.post("/api/v1/api-keys", json!({"name": "reader", "role": "admin", "scopes": ["members:read"]})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (key_id, secret) = (created.body["id"].as_str().expect("id"), created.body["secret"].as_str().expect("secret"));
    let listed = app.bearer(secret).get("/api/v1/members").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let spans = collect.requests("GET", "/api/v1/members");
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.get("tenant_id"), Some(&acme.id.to_string()), "{span:?}");
    assert_eq!(span.get("api_key_id").map(String::as_str), Some(key_id), "{span:?}");
    assert_eq!(span.get("user_id"), None, "{span:?}");

    // Refused: no credential, a forged one — nothing is attributed.
    let anon = app.anonymous().get("/api/v1/departments").await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    let forged = app.bearer("eyJforged").get("/api/v1/departments").await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let spans = collect.requests("GET", "/api/v1/departments");
    assert_eq!(spans.len(), 2, "{spans:?}");
    for span in &spans {
        assert!(!span.contains_key("tenant_id") && !span.contains_key("user_id"), "{span:?}");
        assert_eq!(span.get("access.status").map(String::as_str), Some("401"), "{span:?}");
    }
    // A document's route is logged as its template, not with the id in it.
    let missing = format!("/api/v1/documents/{}", uuid::Uuid::now_v7());
    assert_eq!(person.get(&missing).await.status, StatusCode::NOT_FOUND);
    let spans = collect.requests("GET", &missing);
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0].get("route").map(String::as_str), Some("/api/v1/documents/{id}"), "{spans:?}");
    assert_eq!(spans[0].get("access.status").map(String::as_str), Some("404"), "{spans:?}");

    // Nothing logged carries who someone is or what lets them in.
    let values = collect.all_values();
    assert!(values.len() > 20, "the collector saw the requests: {}", values.len());
    for secret in [
        "user0@acme.example",
        "staff@acme.example",
        common::PASSWORD,
        admin.access_token(),
        person.access_token(),
        secret,
    ] {
        assert!(!values.iter().any(|v| v.contains(secret)), "logged: {secret}");
    }
}
