//! Poisoned text everywhere the API takes text: the live OpenAPI description is walked, every
//! string field of every request body (through `$ref`s, arrays and nested objects) and every
//! query parameter gets a NUL, other control characters, a lone surrogate escape and a
//! 100,000-character string, on every operation. Nothing may answer 5xx; a NUL is refused with
//! 422 `invalid_text` naming the field.

mod common;

use common::{TestApp, org};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use store::testing::TestDb;

const MARK: &str = "__POISON__";

/// What replaces the marked string in the raw JSON text (so a lone surrogate escape, which no
/// JSON serialiser produces, can be sent too).
fn poisons() -> Vec<(&'static str, String)> {
    vec![
        ("nul", "\"a\\u0000b\"".to_owned()),
        ("control", "\"a\\u0001b\"".to_owned()),
        ("escape", "\"a\\u001bb\"".to_owned()),
        ("del_c1", "\"a\\u007f\\u0085b\"".to_owned()),
        ("lone_surrogate", "\"a\\ud800b\"".to_owned()),
        ("long", format!("\"{}\"", "x".repeat(100_000))),
    ]
}

/// The description, and values for fields whose plain sample would be refused before the
/// poisoned field is looked at (so the poison reaches as deep as real input can).
struct Spec(Value, Map<String, Value>);

impl Spec {
    fn resolve<'a>(&'a self, s: &'a Value) -> &'a Value {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.trim_start_matches("#/components/schemas/");
                let target = &self.0["components"]["schemas"][name];
                assert!(target.is_object(), "dangling $ref {r}");
                self.resolve(target)
            }
            None => s,
        }
    }

    /// A plausible value for `schema`, every optional property included (so it can be poisoned).
    fn sample(&self, schema: &Value, depth: usize) -> Value {
        self.sample_named(schema, depth, "")
    }

    fn sample_named(&self, schema: &Value, depth: usize, name: &str) -> Value {
        let s = self.resolve(schema);
        if depth > 8 {
            return Value::Null;
        }
        if let Some(v) = self.1.get(name) {
            return v.clone();
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = s.get(key).and_then(Value::as_array) {
                let pick = alts.iter().find(|a| self.resolve(a)["type"] != "null").or(alts.first());
                return pick.map_or(Value::Null, |a| self.sample(a, depth + 1));
            }
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for part in all {
                if let Value::Object(m) = self.sample(part, depth + 1) {
                    merged.extend(m);
                }
            }
            return Value::Object(merged);
        }
        if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            return first.clone();
        }
        let ty = match &s["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null").to_owned(),
            _ if s.get("properties").is_some() => "object".to_owned(),
            _ => "object".to_owned(),
        };
        match ty.as_str() {
            "object" => {
                let mut m = Map::new();
                if let Some(props) = s.get("properties").and_then(Value::as_object) {
                    for (k, v) in props {
                        m.insert(k.clone(), self.sample_named(v, depth + 1, k));
                    }
                }
                Value::Object(m)
            }
            "array" => json!([self.sample(&s["items"], depth + 1)]),
            "string" => match s["format"].as_str() {
                Some("uuid") => json!(uuid::Uuid::now_v7().to_string()),
                Some("date") => json!("2026-01-15"),
                Some("date-time") => json!("2026-01-15T10:00:00Z"),
                _ => json!("sample"),
            },
            "integer" | "number" => json!(1),
            "boolean" => json!(false),
            _ => Value::Null,
        }
    }
}

/// Every string in `v` as (path in `serde_path_to_error` form, JSON pointer).
fn string_fields(v: &Value, path: &str, pointer: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(_) => out.push((path.to_owned(), pointer.to_owned())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_fields(item, &format!("{path}[{i}]"), &format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(m) => {
            for (k, item) in m {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                string_fields(item, &p, &format!("{pointer}/{k}"), out);
            }
        }
        _ => {}
    }
}

fn percent(raw_json_string: &str) -> String {
    // The decoded text of the poison, percent-encoded byte by byte (a lone surrogate has no
    // UTF-8 form: its CESU-8 bytes are sent, which is not UTF-8 either).
    let text: String = match serde_json::from_str::<String>(raw_json_string) {
        Ok(s) => s,
        Err(_) => "a\u{FFFD}b".to_owned(),
    };
    let mut bytes = text.into_bytes();
    if raw_json_string.contains("\\ud800") {
        bytes = b"a\xed\xa0\x80b".to_vec();
    }
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poisoned_text_in_every_body_field_and_query_parameter_is_refused_without_a_server_error() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    let app = TestApp::setup(&db).roomy().start().await;
    let base = app.base.clone();
    let admin = app.sign_in("acme", "user0@acme.example").await;
    // Routes no admin may ever call (a partner disputing its commission) are attacked as a
    // partner person: the role guard refuses an admin before the body is read.
    let pat = common::partner_person(&db, a.id, a.partners[0], "pat@partner.example", authz::Role::PartnerAdmin).await;
    common::with_password(&db, pat).await;
    let partner = app.sign_in("acme", "pat@partner.example").await;
    // Portal routes (issue 16) admit only a vendor's or client's person: attacked as a vendor.
    common::member(&db, a.id, "acme", "vic", authz::Role::Vendor, None, true).await;
    let vendor = app.sign_in("acme", "vic@acme.example").await;
    // Raw request text (lone surrogate escapes, percent-encoded bytes) that the JSON client
    // would not send as written.
    let http = reqwest::Client::new();
    let spec: Value =
        http.get(format!("{base}/api/openapi.json")).send().await.expect("spec").json().await.expect("json");
    let known = json!({
        "organisation": "acme", "email": "user0@acme.example", "kind": "voucher", "currency": "EUR",
        "department_id": a.department.to_string(), "document_date": "2026-01-15", "starts_on": "2026-01-01",
        "ends_on": "2026-12-31", "transition": "submit", "role": "staff", "purpose": "login",
        "token_delivery": "body", "amount_minor": 1250, "media_type": "application/pdf",
        "reference": "files/invoice-1.pdf", "sha256": "ab".repeat(32),
    });
    let spec = Spec(spec, known.as_object().expect("object").clone());
    let paths = spec.0["paths"].as_object().expect("paths").clone();

    let mut failures = Vec::new();
    let (mut fields_tried, mut params_tried, mut requests) = (0usize, 0usize, 0usize);
    for (path, ops) in &paths {
        for (method, op) in ops.as_object().expect("ops") {
            let Ok(m) = Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            if !matches!(m, Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
                continue;
            }
            let url_path = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { uuid::Uuid::now_v7().to_string() } else { seg.to_owned() })
                .collect::<Vec<_>>()
                .join("/");
            let secured = op.get("security").is_some();
            // As the admin; a route whose role guard refuses every admin (a partner disputing its
            // commission, a vendor's portal) is sent again as a partner person, then as a vendor's
            // person. Poisoned requests never act, so sending again changes nothing.
            let send_as = |token: Option<&str>, body: Option<String>, query: Option<String>| {
                let mut url = format!("{base}{url_path}");
                if let Some(q) = query {
                    url = format!("{url}?{q}");
                }
                let mut req = http.request(m.clone(), url);
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                if let Some(b) = body {
                    req = req.header("content-type", "application/json").body(b);
                }
                async move {
                    let r = req.send().await.expect("request");
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (status, body)
                }
            };
            let send_as = &send_as;
            let tokens = [admin.access_token(), partner.access_token(), vendor.access_token()];
            let send = |body: Option<String>, query: Option<String>| async move {
                let mut answer = send_as(secured.then_some(tokens[0]), body.clone(), query.clone()).await;
                for next in &tokens[1..] {
                    if !(secured && answer.0 == StatusCode::FORBIDDEN && answer.1["error"]["code"] == "forbidden") {
                        break;
                    }
                    answer = send_as(Some(*next), body.clone(), query.clone()).await;
                }
                answer
            };
            let label = format!("{} {path}", m.as_str());

            if let Some(schema) = op.pointer("/requestBody/content/application~1json/schema") {
                let sample = spec.sample(schema, 0);
                let mut fields = Vec::new();
                string_fields(&sample, "", "", &mut fields);
                for (field, pointer) in fields {
                    fields_tried += 1;
                    let mut marked = sample.clone();
                    if let Some(slot) = marked.pointer_mut(&pointer) {
                        *slot = json!(MARK);
                    }
                    let text = marked.to_string();
                    for (name, raw) in poisons() {
                        requests += 1;
                        let (status, body) = send(Some(text.replacen(&format!("\"{MARK}\""), &raw, 1)), None).await;
                        if status.is_server_error() {
                            failures.push(format!("{label} body {field} {name}: {status} {body}"));
                        } else if name == "nul"
                            && (status != StatusCode::UNPROCESSABLE_ENTITY
                                || body["error"]["code"] != "invalid_text"
                                || body["error"]["details"]["field"] != field.as_str())
                        {
                            failures.push(format!(
                                "{label} body {field} nul: want 422 invalid_text naming it, got {status} {body}"
                            ));
                        }
                    }
                }
            }

            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] != "query" {
                    continue;
                }
                let name = p["name"].as_str().expect("name");
                params_tried += 1;
                for (poison, raw) in poisons() {
                    requests += 1;
                    // (A URI holds at most 64 KiB: the long value is 20,000 characters here.)
                    let value = if poison == "long" { "x".repeat(20_000) } else { percent(&raw) };
                    let (status, body) = send(None, Some(format!("{name}={value}"))).await;
                    if status.is_server_error() {
                        failures.push(format!("{label} query {name} {poison}: {status} {body}"));
                    } else if poison == "nul"
                        && (status != StatusCode::UNPROCESSABLE_ENTITY
                            || body["error"]["code"] != "invalid_text"
                            || body["error"]["details"]["field"] != name)
                    {
                        failures.push(format!(
                            "{label} query {name} nul: want 422 invalid_text naming it, got {status} {body}"
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {requests} poisoned requests failed:\n{}", failures.len(), failures.join("\n"));
    // The walk really reached the sign-in, document and organisation bodies.
    assert!(fields_tried >= 40, "only {fields_tried} body string fields found in the description");
    assert!(params_tried >= 10, "only {params_tried} query parameters found in the description");
    // The admin's session survived the walk (no poisoned request acted).
    let me = admin.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK);
}

/// One HTTP/1.1 exchange over a bare socket (for requests reqwest will not send as written);
/// returns the status, the headers (lower-case names) and the body as JSON.
async fn raw(base: &str, request: Vec<u8>) -> (u16, Vec<(String, String)>, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let first_line = String::from_utf8_lossy(request.split(|b| *b == b'\r').next().unwrap_or_default())
        .chars()
        .take(80)
        .collect::<String>();
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut s, mut w) = stream.into_split();
    // Written while the answer is read: a server may answer (and close) before it has read
    // everything, and a failed write is then expected.
    // The write half is kept open (returned) until the answer is in: a half-closed connection
    // is closed by the server before it answers.
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        w
    });
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n");
            if let Some(end) = head_end {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return end;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return head_end.unwrap_or_else(|| panic!("the server closed before answering {first_line}"));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), read).await.expect("answer in time");
    drop(writer.await);
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).expect("status");
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned())).collect();
    (status, headers, serde_json::from_slice(&buf[end + 4..]).unwrap_or(Value::Null))
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn post_raw(path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        r.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    r.push_str("\r\n");
    let mut r = r.into_bytes();
    r.extend_from_slice(body);
    r
}

#[tokio::test]
async fn oversized_uri_headers_and_bodies_get_the_json_error_shape_and_close() {
    let db = TestDb::new().await;
    let base = TestApp::new(&db).await.base;

    let long = format!("GET /api/v1/documents?view={} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(9000));
    let (s, h, b) = raw(&base, long.into_bytes()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (414, Some("uri_too_long")), "{b}");
    assert_eq!(header(&h, "content-type"), Some("application/json"));

    let mut many = "GET /healthz HTTP/1.1\r\nHost: t\r\n".to_owned();
    for i in 0..80 {
        many.push_str(&format!("X-Filler-{i}: x\r\n"));
    }
    many.push_str("\r\n");
    let (s, _, b) = raw(&base, many.into_bytes()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (431, Some("headers_too_large")), "{b}");
    let big = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(20_000));
    let (s, _, b) = raw(&base, big.into_bytes()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (431, Some("headers_too_large")), "{b}");

    // Declared too large: refused before reading (nothing of the body is even sent), and the
    // connection is not reused.
    let declared = b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n";
    let (s, h, b) = raw(&base, declared.to_vec()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("payload_too_large")), "{b}");
    assert_eq!(header(&h, "connection"), Some("close"));
    // Too large but chunked (no length announced): found out while reading.
    let mut chunked =
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&vec![b' '; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (s, _, b) = raw(&base, chunked).await;
    assert_eq!((s, b["error"]["code"].as_str()), (413, Some("payload_too_large")), "{b}");
}

/// Beyond what the edge layer reads, the transport itself refuses (hyper: more than 512 headers, a
/// head over 256 KiB, a target over 64 KiB, a head that is not HTTP) — and still answers the JSON
/// error shape, closing the connection (`web::transport::JsonRefusals`).
#[tokio::test]
async fn requests_the_transport_itself_refuses_still_get_the_json_error_shape() {
    let db = TestDb::new().await;
    let base = TestApp::new(&db).await.base;
    // Answered by the transport (no request id: it never reached the router), closing.
    let expect = |(s, h, b): (u16, Vec<(String, String)>, Value), status: u16, code: &str| {
        assert_eq!((s, b["error"]["code"].as_str()), (status, Some(code)), "{b}");
        assert_eq!(header(&h, "content-type"), Some("application/json"));
        assert_eq!((header(&h, "connection"), header(&h, "x-request-id")), (Some("close"), None), "{h:?}");
    };

    let mut many = "GET /healthz HTTP/1.1\r\nHost: t\r\n".to_owned();
    for i in 0..600 {
        many.push_str(&format!("X-Filler-{i}: x\r\n"));
    }
    many.push_str("\r\n");
    expect(raw(&base, many.into_bytes()).await, 431, "headers_too_large");

    // A head larger than the transport buffers: refused by whichever layer sees it first (the
    // transport, or the edge when it arrived whole), in the JSON shape either way.
    let huge = format!("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n", "b".repeat(1024 * 1024));
    let (s, h, b) = raw(&base, huge.into_bytes()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (431, Some("headers_too_large")), "{b}");
    assert_eq!(header(&h, "content-type"), Some("application/json"));

    let target = format!("GET /api/v1/documents?view={} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70 * 1024));
    expect(raw(&base, target.into_bytes()).await, 414, "uri_too_long");

    expect(raw(&base, b"NOT HTTP AT ALL\r\n\r\n".to_vec()).await, 400, "bad_request");
    expect(raw(&base, b"GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n".to_vec()).await, 400, "bad_request");

    // The server is still there, and an ordinary request is answered as ever.
    let (s, _, b) = raw(&base, b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_non_json_bodies_get_stable_codes() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    common::with_password(&db, a.users[0]).await;
    let base = TestApp::new(&db).await.base;

    let (s, h, b) = raw(&base, b"GET /api/v1/no-such-thing HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (404, Some("not_found")), "{b}");
    assert_eq!(header(&h, "content-type"), Some("application/json"));
    let (s, _, b) = raw(&base, b"DELETE /api/v1/me HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()).await;
    assert_eq!((s, b["error"]["code"].as_str()), (405, Some("method_not_allowed")), "{b}");

    // A JSON text sent as text/plain (what a cross-site form can send) is not parsed: 415,
    // before the body is read, so the connection closes. No content type at all is the same.
    let login = format!(
        r#"{{"organisation":"acme","email":"user0@acme.example","password":"{}","token_delivery":"body"}}"#,
        common::PASSWORD
    );
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let (s, h, b) = raw(&base, post_raw("/api/v1/auth/login", ct, login.as_bytes())).await;
        assert_eq!((s, b["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "{ct:?} {b}");
        assert_eq!(header(&h, "connection"), Some("close"), "{ct:?}");
    }
    let (s, _, b) =
        raw(&base, post_raw("/api/v1/auth/login", Some("application/json; charset=utf-8"), login.as_bytes())).await;
    assert_eq!(s, 200, "{b}");
    assert!(b["access_token"].is_string());

    // Refused before the handler read the body (no credential): the connection closes too.
    let doc = br#"{"title":"x"}"#;
    let (s, h, b) = raw(&base, post_raw("/api/v1/documents", Some("application/json"), doc)).await;
    assert_eq!((s, b["error"]["code"].as_str()), (401, Some("unauthenticated")), "{b}");
    assert_eq!(header(&h, "connection"), Some("close"));
    // A path the handler cannot parse gets the error shape, not axum's plain text.
    let (s, h, b) = raw(&base, b"GET /api/v1/documents/%FF HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()).await;
    assert!((400..500).contains(&s), "{s}");
    assert_eq!(header(&h, "content-type"), Some("application/json"), "{b}");
    assert!(b["error"]["code"].is_string());
}

#[tokio::test]
async fn every_answer_forbids_framing_scripts_and_browser_features() {
    let db = TestDb::new().await;
    let app = TestApp::new(&db).await;
    for path in ["/healthz", "/api/v1/no-such-thing", "/api/v1/me"] {
        let r = app.anonymous().get(path).await;
        let h = &r.headers;
        assert_eq!(
            h.get("content-security-policy").and_then(|v| v.to_str().ok()),
            Some("default-src 'none'; frame-ancestors 'none'"),
            "{path}"
        );
        let pp = h.get("permissions-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"] {
            assert!(pp.contains(feature), "{path}: {pp}");
        }
        // Plain HTTP, no proxy: no HSTS.
        assert!(h.get("strict-transport-security").is_none(), "{path}");
    }
}

#[tokio::test]
async fn hsts_is_sent_only_when_a_trusted_proxy_says_the_request_came_over_https() {
    let db = TestDb::new().await;
    let proxied = TestApp::setup(&db).behind_proxy().start().await;
    let direct = TestApp::new(&db).await;
    async fn hsts(app: &TestApp, proto: Option<&str>) -> Option<String> {
        let headers: Vec<(&str, &str)> = proto.map(|p| vec![("x-forwarded-proto", p)]).unwrap_or_default();
        let r = app.anonymous().request(Method::GET, "/healthz", None, &headers).await;
        r.header("strict-transport-security").map(str::to_owned)
    }
    let sent = hsts(&proxied, Some("https")).await.expect("HSTS behind a trusted proxy over HTTPS");
    assert!(sent.starts_with("max-age=31536000"), "{sent}");
    assert_eq!(hsts(&proxied, Some("http")).await, None);
    assert_eq!(hsts(&proxied, None).await, None);
    // The client forges the header; the peer is no trusted proxy.
    assert_eq!(hsts(&direct, Some("https")).await, None);
}
