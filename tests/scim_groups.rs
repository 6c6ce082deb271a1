//! SCIM 2.0 Groups (issue 18), attacked: one organisation's token reaching for another's groups
//! or people, filters carrying SQL, mappings that would make an owner; and the mapping itself: a
//! person added to a mapped group (Entra's PATCH) holds its role and department, their session
//! under the old role ends, and leaving the group (Okta's PATCH, DELETE) gives back what they held.

mod common;

use common::{Answer, Client, TestApp, org, scim_token, with_password};
use identity::DepartmentCode;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::TestDb;
use uuid::Uuid;

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn user(name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": name,
        "emails": [{"value": name, "type": "work", "primary": true}],
        "active": true,
    })
}

fn group(name: &str, members: &[&str]) -> Value {
    json!({
        "schemas": [GROUP],
        "displayName": name,
        "members": members.iter().map(|m| json!({"value": m})).collect::<Vec<_>>(),
    })
}

fn assert_scim_error(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{a}");
    assert_eq!(a.header("content-type"), Some("application/scim+json"), "{a}");
    assert_eq!(a.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]), "{a}");
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

async fn create(idp: &Client, path: &str, body: Value) -> Value {
    let a = idp.post(path, body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{a}");
    assert_eq!(a.header("content-type"), Some("application/scim+json"), "{a}");
    a.body
}

async fn patch(idp: &Client, group: &str, ops: Value, headers: &[(&str, &str)]) -> Answer {
    idp.request(
        Method::PATCH,
        &format!("/scim/v2/Groups/{group}"),
        Some(json!({"schemas": [PATCH_OP], "Operations": ops})),
        headers,
    )
    .await
}

fn member_ids(g: &Value) -> Vec<String> {
    g["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x["value"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `who` until its session is refused (the revocation reaches the node's cache through
/// LISTEN/NOTIFY); fails after a second.
async fn refused_soon(who: &Client, what: &str) {
    let start = std::time::Instant::now();
    while who.get("/api/v1/me").await.status != StatusCode::UNAUTHORIZED {
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "{what}: the session is still accepted");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The role and department of `user` as the members API lists them.
async fn membership(admin: &Client, user: Uuid) -> (String, Option<String>) {
    let list = admin.get("/api/v1/members?limit=200").await;
    assert_eq!(list.status, StatusCode::OK, "{list}");
    let m = list.body["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["user_id"] == user.to_string()))
        .unwrap_or_else(|| panic!("{user} not listed: {list}"))
        .clone();
    (m["role"].as_str().expect("role").to_owned(), m["department_id"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn organisation_a_token_gets_404_for_organisation_b_groups_and_cannot_add_its_people() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let b = org(&db, "globex").await;
    let app = TestApp::new(&db).await;
    let idp_a = app.bearer(&scim_token(&db, a.id, "Okta A").await.1);
    let idp_b = app.bearer(&scim_token(&db, b.id, "Okta B").await.1);
    let zed = id(&create(&idp_b, "/scim/v2/Users", user("zed@globex.example")).await);
    let theirs = create(&idp_b, "/scim/v2/Groups", group("Globex Finance", &[&zed])).await;
    let path = format!("/scim/v2/Groups/{}", id(&theirs));

    // Another organisation's group is not there: read, replace, patch, delete.
    assert_scim_error(&idp_a.get(&path).await, StatusCode::NOT_FOUND);
    assert_scim_error(&idp_a.put(&path, group("Mine now", &[])).await, StatusCode::NOT_FOUND);
    let p = patch(&idp_a, &id(&theirs), json!([{"op": "replace", "path": "members", "value": []}]), &[]).await;
    assert_scim_error(&p, StatusCode::NOT_FOUND);
    assert_scim_error(&idp_a.delete(&path).await, StatusCode::NOT_FOUND);
    // Nor found by filter, by name or by member.
    for f in [r#"displayName eq "Globex Finance""#.to_owned(), format!(r#"members[value eq "{zed}"]"#)] {
        let r = idp_a.get(&format!("/scim/v2/Groups?filter={}", urlencode(&f))).await;
        assert_eq!((r.status, r.body["totalResults"].clone()), (StatusCode::OK, json!(0)), "{f}: {r}");
    }
    // B's person cannot be put in A's group, at creation or by PATCH: 400, nothing stored.
    let r = idp_a.post("/scim/v2/Groups", group("Acme Finance", &[&zed])).await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["scimType"], "invalidValue", "{r}");
    let mine = create(&idp_a, "/scim/v2/Groups", group("Acme Finance", &[])).await;
    for ops in [
        json!([{"op": "Add", "path": "members", "value": [{"value": zed}]}]),
        json!([{"op": "replace", "path": "members", "value": [{"value": zed}]}]),
        json!([{"op": "add", "path": "members", "value": [{"value": "not-an-id"}]}]),
        json!([{"op": "add", "path": "members", "value": [{"value": id(&theirs)}]}]),
    ] {
        let r = patch(&idp_a, &id(&mine), ops.clone(), &[]).await;
        assert_scim_error(&r, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["scimType"], "invalidValue", "{ops}: {r}");
    }
    let unchanged = idp_a.get(&format!("/scim/v2/Groups/{}", id(&mine))).await;
    assert_eq!((unchanged.body.get("members"), unchanged.header("etag")), (None, Some("W/\"1\"")), "{unchanged}");
    // B's group is untouched.
    let still = idp_b.get(&path).await;
    assert_eq!((member_ids(&still.body), still.header("etag")), (vec![zed.clone()], Some("W/\"1\"")), "{still}");
    // A's administrators cannot remove B's mappings either.
    let mut tx = db.store.tenant_tx(b.id).await.expect("tx");
    let b_mapping: Uuid =
        sqlx::query_scalar("select id from scim_group_mappings").fetch_one(tx.conn()).await.expect("fixture mapping");
    drop(tx);
    with_password(&db, a.users[0]).await;
    let admin_a = app.sign_in("acme", "user0@acme.example").await;
    let r = admin_a.delete(&format!("/api/v1/settings/scim-group-mappings/{b_mapping}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r}");
    assert_eq!(common::audit_count(&db, b.id, "scim.group_created").await, 1);
}

#[tokio::test]
async fn group_filter_injection_is_refused_or_matches_nothing() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    let app = TestApp::new(&db).await;
    let idp = app.bearer(&scim_token(&db, a.id, "Okta").await.1);
    let ann = id(&create(&idp, "/scim/v2/Users", user("ann@acme.example")).await);
    let finance = create(&idp, "/scim/v2/Groups", group("Finance", &[&ann])).await;
    create(&idp, "/scim/v2/Groups", group("Sales", &[])).await;
    let q = |f: &str| format!("/scim/v2/Groups?filter={}", urlencode(f));
    // Quotes and SQL stay inside the bound value: they match nothing.
    for f in [
        r#"displayName eq "x\" or 1=1""#,
        r#"displayName eq "x' or '1'='1""#,
        r#"displayName co "%""#,
        r#"displayName sw "_""#,
        r#"externalId eq "x'); delete from scim_groups; --""#,
        r#"members[value eq "x\" or true or \""]"#,
    ] {
        let r = idp.get(&q(f)).await;
        assert_eq!((r.status, r.body["totalResults"].clone()), (StatusCode::OK, json!(0)), "{f}: {r}");
    }
    // Outside the grammar, or naming a User attribute: 400 invalidFilter.
    for f in [
        r#"displayName eq "x" or 1=1"#,
        r#"userName eq "ann@acme.example""#,
        r#"members[value eq "x""#,
        "displayName eq \"a\"; select 1",
        r#"members[value eq "x"] or members[value"#,
    ] {
        let r = idp.get(&q(f)).await;
        assert_scim_error(&r, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["scimType"], "invalidFilter", "{f}: {r}");
    }
    // Real filters find exactly what they name (the fixture's own group is there too).
    for (f, n) in [
        (r#"displayName eq "FINANCE""#.to_owned(), 1),
        (format!(r#"members[value eq "{ann}"]"#), 1),
        (format!(r#"members.value eq "{ann}""#), 1),
        (format!(r#"id eq "{}""#, id(&finance)), 1),
        (r#"displayName sw "Fin" or displayName eq "Sales""#.to_owned(), 2),
    ] {
        let r = idp.get(&q(&f)).await;
        assert_eq!(r.body["totalResults"], n, "{f}: {r}");
    }
    let listed = idp.get(&q(r#"displayName eq "Finance""#)).await;
    assert_eq!(member_ids(&listed.body["Resources"][0]), vec![ann.clone()], "{listed}");
    let member = &listed.body["Resources"][0]["members"][0];
    assert_eq!(
        (
            member["type"].clone(),
            member["$ref"].as_str().is_some_and(|r| r.ends_with(&format!("/scim/v2/Users/{ann}")))
        ),
        (json!("User"), true)
    );
    // A name taken (case-insensitively) is 409 uniqueness.
    let dup = idp.post("/scim/v2/Groups", group("finance", &[])).await;
    assert_scim_error(&dup, StatusCode::CONFLICT);
    assert_eq!(dup.body["scimType"], "uniqueness", "{dup}");
}

#[tokio::test]
async fn mapping_a_group_to_owner_or_a_partner_role_is_refused_everywhere() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, a.users[1]).await;
    let app = TestApp::new(&db).await;
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let staff = app.sign_in("acme", "user1@acme.example").await;
    let url = "/api/v1/settings/scim-group-mappings";
    for role in ["owner", "partner_admin", "partner_agent"] {
        let r = admin.post(url, json!({"match_on": "display_name", "group": "Everyone", "role": role})).await;
        assert_eq!((r.status, r.code()), (StatusCode::FORBIDDEN, "role_not_mappable"), "{role}: {r}");
    }
    for (body, code) in [
        (json!({"match_on": "display_name", "group": "Everyone"}), "invalid_field"),
        (json!({"match_on": "display_name", "group": "Everyone", "department": "NOPE"}), "invalid_field"),
        (json!({"match_on": "display_name", "group": " ", "role": "staff"}), "invalid_field"),
        (json!({"match_on": "name", "group": "Everyone", "role": "staff"}), "invalid_body"),
        (json!({"match_on": "display_name", "group": "Everyone", "role": "emperor"}), "invalid_body"),
    ] {
        let r = admin.post(url, body.clone()).await;
        assert_eq!((r.status, r.code()), (StatusCode::UNPROCESSABLE_ENTITY, code), "{body}: {r}");
    }
    // Staff cannot map at all.
    let r = staff.post(url, json!({"match_on": "display_name", "group": "Everyone", "role": "admin"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(common::audit_count(&db, a.id, "scim_group_mapping.created").await, 0);
    // The table refuses it too, whatever code would write it.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let e = sqlx::query(
        "insert into scim_group_mappings (tenant_id, id, match_on, group_key, role, created_by)
         values ($1, gen_random_uuid(), 'display_name', 'Everyone', 'owner', 'test')",
    )
    .bind(a.id.as_uuid())
    .execute(tx.conn())
    .await
    .expect_err("owner is refused by the CHECK");
    assert_eq!(common::sqlstate(&e).as_deref(), Some("23514"), "{e}");
    drop(tx);
    // A real mapping is made, listed, and the same group cannot be mapped twice.
    let ok =
        admin.post(url, json!({"match_on": "external_id", "group": "00g1", "role": "hod", "department": "OPS"})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{ok}");
    let again = admin.post(url, json!({"match_on": "external_id", "group": "00g1", "role": "md"})).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again}");
    let listed = admin.get(url).await;
    let groups: Vec<&str> =
        listed.body["items"].as_array().expect("items").iter().filter_map(|m| m["group"].as_str()).collect();
    assert!(groups.contains(&"00g1"), "{listed}");
    assert_eq!(common::audit_count(&db, a.id, "scim_group_mapping.created").await, 1);
}

#[tokio::test]
async fn joining_a_mapped_group_gives_its_role_and_department_and_leaving_gives_them_back() {
    let db = TestDb::new().await;
    let a = org(&db, "acme").await;
    with_password(&db, a.users[0]).await;
    with_password(&db, a.users[1]).await;
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let fin = identity::directory::departments::create(
        &mut tx,
        &common::who(),
        &DepartmentCode::parse("FIN").expect("code"),
        "Finance",
    )
    .await
    .expect("department")
    .id;
    tx.commit().await.expect("commit");
    let app = TestApp::new(&db).await;
    let (token_id, token) = scim_token(&db, a.id, "Entra").await;
    let idp = app.bearer(&token);
    let admin = app.sign_in("acme", "user0@acme.example").await;
    let mapped = admin
        .post(
            "/api/v1/settings/scim-group-mappings",
            json!({"match_on": "display_name", "group": "Finance Approvers", "role": "finance", "department": "FIN"}),
        )
        .await;
    assert_eq!(mapped.status, StatusCode::CREATED, "{mapped}");

    // The identity provider takes over user1 (staff in OPS), who is signed in.
    let staff = a.users[1];
    let person = id(&create(&idp, "/scim/v2/Users", user("user1@acme.example")).await);
    assert_eq!(person, staff.to_string());
    let before = app.sign_in("acme", "user1@acme.example").await;
    assert_eq!(before.get("/api/v1/me").await.body["role"], "staff");
    let ops = (String::from("staff"), Some(a.department.to_string()));
    assert_eq!(membership(&admin, staff).await, ops);

    // Entra: the group (named in another case), then a capitalised Add of the member.
    let g = create(&idp, "/scim/v2/Groups", group("finance approvers", &[])).await;
    let r = patch(&idp, &id(&g), json!([{"op": "Add", "path": "members", "value": [{"value": person}]}]), &[]).await;
    assert_eq!((r.status, member_ids(&r.body)), (StatusCode::OK, vec![person.clone()]), "{r}");
    assert_eq!(membership(&admin, staff).await, (String::from("finance"), Some(fin.to_string())));
    // The session issued under the old role is over; a new one carries the new role.
    refused_soon(&before, "role raised by the group").await;
    let after = app.sign_in("acme", "user1@acme.example").await;
    let me = after.get("/api/v1/me").await;
    assert_eq!(
        (me.body["role"].clone(), me.body["departments"][0]["code"].clone()),
        (json!("finance"), json!("FIN")),
        "{me}"
    );
    // Recorded with the identity provider as the actor.
    let mut tx = db.store.tenant_tx(a.id).await.expect("tx");
    let actors: Vec<(String, String)> = sqlx::query_as(
        "select distinct actor_kind, actor_id from audit_events
          where action in ('membership.role_changed', 'membership.department_changed', 'scim.group_updated')",
    )
    .fetch_all(tx.conn())
    .await
    .expect("events");
    assert_eq!(actors, vec![("identity_provider".to_owned(), token_id.to_string())]);
    drop(tx);

    // A stale ETag changes nothing.
    let stale =
        patch(&idp, &id(&g), json!([{"op": "replace", "path": "members", "value": []}]), &[("if-match", "W/\"1\"")])
            .await;
    assert_scim_error(&stale, StatusCode::PRECONDITION_FAILED);
    assert_eq!(membership(&admin, staff).await.0, "finance");

    // Okta: replace with the full member list, now empty: what they held comes back.
    let r = patch(&idp, &id(&g), json!([{"op": "replace", "path": "members", "value": []}]), &[]).await;
    assert_eq!((r.status, r.body.get("members")), (StatusCode::OK, None), "{r}");
    assert_eq!(membership(&admin, staff).await, ops);
    refused_soon(&after, "the role dropped with the group").await;

    // PUT puts them back in; DELETE of the group gives back again.
    let mut body = group("Finance Approvers", &[&person]);
    body["externalId"] = "00gFIN".into();
    let r = idp.put(&format!("/scim/v2/Groups/{}", id(&g)), body).await;
    assert_eq!((r.status, member_ids(&r.body)), (StatusCode::OK, vec![person.clone()]), "{r}");
    assert_eq!(membership(&admin, staff).await.0, "finance");
    let r = idp.delete(&format!("/scim/v2/Groups/{}", id(&g))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    assert_eq!(membership(&admin, staff).await, ops);
    assert_scim_error(&idp.get(&format!("/scim/v2/Groups/{}", id(&g))).await, StatusCode::NOT_FOUND);

    // A mapping made while people are already in the group applies at once; removing it gives back.
    let g2 = create(&idp, "/scim/v2/Groups", group("Auditors", &[&person])).await;
    assert_eq!(membership(&admin, staff).await.0, "staff", "no mapping names it yet");
    let m = admin
        .post(
            "/api/v1/settings/scim-group-mappings",
            json!({"match_on": "display_name", "group": "Auditors", "role": "auditor"}),
        )
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{m}");
    assert_eq!(membership(&admin, staff).await.0, "auditor");
    let r = admin.delete(&format!("/api/v1/settings/scim-group-mappings/{}", m.body["id"].as_str().expect("id"))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
    assert_eq!(membership(&admin, staff).await, ops);
    // Deprovisioning the person takes them out of every group.
    assert_eq!(idp.delete(&format!("/scim/v2/Users/{person}")).await.status, StatusCode::NO_CONTENT);
    let g2 = idp.get(&format!("/scim/v2/Groups/{}", id(&g2))).await;
    assert_eq!((g2.body.get("members"), g2.header("etag")), (None, Some("W/\"2\"")), "{g2}");
}
