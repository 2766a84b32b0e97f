//! Identity through real HTTP: accounts, sessions with rotating refresh tokens, personal
//! access tokens, rate limits, and the attacks each of them must withstand.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use crewgraph_tests::{TestDatabase, spawn_api_with};
use serde_json::{Value, json};

use crewgraph_tests::http::{
    JWT_SECRET, PASSWORD, api, body, expect_error, get, login, post, register,
};

async fn user_count(db: &TestDatabase) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let user = register(&api, "Ada@Example.com").await;
    assert_eq!(user["email"], "Ada@Example.com");
    assert_eq!(user["role"], "user");
    assert!(user.get("password_hash").is_none());

    // Emails are unique whatever their case; login is case-insensitive.
    let again = post(
        &api,
        "/api/v1/auth/register",
        None,
        json!({"email": "ada@EXAMPLE.com", "password": PASSWORD}),
    )
    .await;
    expect_error(again, 409, "email_taken").await;
    let (access, refresh) = login(&api, "ADA@example.com").await;

    let me = body(get(&api, "/api/v1/users/me", &access).await).await;
    assert_eq!(me["id"], user["id"]);

    let patched = api
        .client
        .patch(api.url("/api/v1/users/me"))
        .bearer_auth(&access)
        .json(&json!({"display_name": "Ada L."}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(body(patched).await["display_name"], "Ada L.");

    let refreshed = post(
        &api,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(refreshed.status(), 200);
    let refreshed = body(refreshed).await;
    let new_access = refreshed["access_token"]
        .as_str()
        .expect("access")
        .to_string();
    let new_refresh = refreshed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_ne!(new_refresh, refresh, "refresh tokens rotate");
    assert_eq!(
        get(&api, "/api/v1/users/me", &new_access).await.status(),
        200
    );

    let logout = post(&api, "/api/v1/auth/logout", Some(&new_access), json!({})).await;
    assert_eq!(logout.status(), 204);
    // Logout ends the session at once: both access tokens of the session and its refresh token.
    expect_error(
        get(&api, "/api/v1/users/me", &new_access).await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        get(&api, "/api/v1/users/me", &access).await,
        401,
        "unauthorized",
    )
    .await;
    let after = post(
        &api,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": new_refresh}),
    )
    .await;
    expect_error(after, 401, "unauthorized").await;
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_whole_family() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    register(&api, "victim@example.com").await;
    let (_, stolen) = login(&api, "victim@example.com").await;
    let (other_session_access, _) = login(&api, "victim@example.com").await;

    let legit = body(
        post(
            &api,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": stolen}),
        )
        .await,
    )
    .await;
    let legit_access = legit["access_token"].as_str().expect("access").to_string();
    let legit_refresh = legit["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();

    // The thief replays the old token: refused, and the family is revoked.
    let replay = post(
        &api,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": stolen}),
    )
    .await;
    expect_error(replay, 401, "unauthorized").await;
    let next = post(
        &api,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": legit_refresh}),
    )
    .await;
    expect_error(next, 401, "unauthorized").await;
    expect_error(
        get(&api, "/api/v1/users/me", &legit_access).await,
        401,
        "unauthorized",
    )
    .await;
    // Other sessions of the same user are not affected.
    assert_eq!(
        get(&api, "/api/v1/users/me", &other_session_access)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    register(&api, "known@example.com").await;
    let attempt = |email: &'static str| {
        let api = &api;
        async move {
            let started = Instant::now();
            let response = post(
                api,
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": "not the password"}),
            )
            .await;
            let elapsed = started.elapsed();
            (response.status().as_u16(), body(response).await, elapsed)
        }
    };
    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    for _ in 0..3 {
        let (status_a, body_a, time_a) = attempt("known@example.com").await;
        let (status_b, body_b, time_b) = attempt("nobody@example.com").await;
        assert_eq!((status_a, status_b), (401, 401));
        assert_eq!(body_a, body_b, "identical bodies");
        wrong_times.push(time_a);
        unknown_times.push(time_b);
    }
    wrong_times.sort();
    unknown_times.sort();
    let (wrong, unknown) = (wrong_times[1], unknown_times[1]);
    // The unknown email must also pay for a full password hash: without the dummy hash
    // it would answer many times faster than a wrong password.
    assert!(
        unknown * 2 >= wrong && wrong * 2 >= unknown,
        "median wrong password {wrong:?} vs unknown email {unknown:?}"
    );
}

fn forge(header: Value, claims: Value, key: &[u8], alg: jsonwebtoken::Algorithm) -> String {
    let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string());
    let claims_b64 = URL_SAFE_NO_PAD.encode(claims.to_string());
    if header["alg"] == "none" {
        return format!("{header_b64}.{claims_b64}.");
    }
    let mut jwt_header = jsonwebtoken::Header::new(alg);
    jwt_header.typ = Some("JWT".into());
    jsonwebtoken::encode(
        &jwt_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .expect("encode")
}

#[tokio::test]
async fn forged_expired_and_foreign_tokens_are_rejected() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    register(&api, "target@example.com").await;
    let (access, _) = login(&api, "target@example.com").await;
    let payload = access.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims");
    let now = chrono::Utc::now().timestamp();
    let with = |changes: Value| {
        let mut c = claims.clone();
        for (k, v) in changes.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let hs256 = jsonwebtoken::Algorithm::HS256;
    let secret = JWT_SECRET.as_bytes();
    let cases = [
        (
            "genuine copy",
            forge(json!({"alg":"HS256"}), claims.clone(), secret, hs256),
            200,
        ),
        (
            "expired",
            forge(
                json!({"alg":"HS256"}),
                with(json!({"exp": now - 600, "nbf": now - 1200, "iat": now - 1200})),
                secret,
                hs256,
            ),
            401,
        ),
        (
            "not yet valid",
            forge(
                json!({"alg":"HS256"}),
                with(json!({"nbf": now + 600})),
                secret,
                hs256,
            ),
            401,
        ),
        (
            "wrong audience",
            forge(
                json!({"alg":"HS256"}),
                with(json!({"aud": "someone-else"})),
                secret,
                hs256,
            ),
            401,
        ),
        (
            "wrong issuer",
            forge(
                json!({"alg":"HS256"}),
                with(json!({"iss": "evil"})),
                secret,
                hs256,
            ),
            401,
        ),
        (
            "alg none",
            forge(
                json!({"alg":"none","typ":"JWT"}),
                claims.clone(),
                secret,
                hs256,
            ),
            401,
        ),
        (
            "HS512",
            forge(
                json!({"alg":"HS512"}),
                claims.clone(),
                secret,
                jsonwebtoken::Algorithm::HS512,
            ),
            401,
        ),
        (
            "other secret",
            forge(
                json!({"alg":"HS256"}),
                claims.clone(),
                b"another-secret-another-secret-another",
                hs256,
            ),
            401,
        ),
        (
            "escalated role",
            forge(
                json!({"alg":"HS256"}),
                with(json!({"role": "admin"})),
                b"x-wrong-key-x-wrong-key-x-wrong-key",
                hs256,
            ),
            401,
        ),
    ];
    for (name, token, expected) in cases {
        let response = get(&api, "/api/v1/users/me", &token).await;
        assert_eq!(response.status().as_u16(), expected, "{name}");
        if expected == 401 {
            expect_error(response, 401, "unauthorized").await;
        }
    }
    let mut tampered = access.clone();
    tampered.insert(access.len() / 2, 'x');
    expect_error(
        get(&api, "/api/v1/users/me", &tampered).await,
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn personal_access_tokens_work_in_both_headers_until_revoked() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    register(&api, "scripter@example.com").await;
    register(&api, "other@example.com").await;
    let (access, _) = login(&api, "scripter@example.com").await;
    let (other_access, _) = login(&api, "other@example.com").await;

    let created = post(
        &api,
        "/api/v1/tokens",
        Some(&access),
        json!({"name": "CI", "expires_in_days": 30}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created = body(created).await;
    let secret = created["token"].as_str().expect("token").to_string();
    assert!(secret.starts_with("cgp_"));
    assert!(secret.starts_with(created["prefix"].as_str().expect("prefix")));
    let secret_bits = URL_SAFE_NO_PAD.decode(&secret[4..]).expect("base64").len() * 8;
    assert!(secret_bits >= 256, "{secret_bits} bits");

    assert_eq!(get(&api, "/api/v1/users/me", &secret).await.status(), 200);
    let via_header = api
        .client
        .get(api.url("/api/v1/users/me"))
        .header("x-api-key", &secret)
        .send()
        .await
        .expect("GET");
    assert_eq!(via_header.status(), 200);

    let listed = body(get(&api, "/api/v1/tokens", &access).await).await;
    let items = listed["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert!(items[0]["last_used_at"].is_string(), "{listed}");
    assert!(
        items[0].get("token").is_none(),
        "the secret is never listed"
    );
    assert!(!listed.to_string().contains(&secret));

    // Someone else's token is not found, never forbidden.
    let id = created["id"].as_str().expect("id");
    let foreign = api
        .client
        .delete(api.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&other_access)
        .send()
        .await
        .expect("DELETE");
    expect_error(foreign, 404, "not_found").await;

    let revoked = api
        .client
        .delete(api.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&access)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(revoked.status(), 204);
    expect_error(
        get(&api, "/api/v1/users/me", &secret).await,
        401,
        "unauthorized",
    )
    .await;

    // The database holds only hashes.
    let mut conn = db.connect().await;
    let rows: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT token_hash, prefix FROM personal_access_tokens")
            .fetch_all(&mut conn)
            .await
            .expect("select");
    for (hash, prefix) in rows {
        assert!(!String::from_utf8_lossy(&hash).contains(&secret[4..]));
        assert!(secret.len() > prefix.len());
    }
}

#[tokio::test]
async fn changing_the_password_signs_out_every_other_session() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    register(&api, "mover@example.com").await;
    let (current, _) = login(&api, "mover@example.com").await;
    let (other, other_refresh) = login(&api, "mover@example.com").await;

    let wrong = post(
        &api,
        "/api/v1/users/me/password",
        Some(&current),
        json!({"current_password": "not it", "new_password": "a brand new passphrase"}),
    )
    .await;
    expect_error(wrong, 422, "wrong_password").await;

    let changed = post(
        &api,
        "/api/v1/users/me/password",
        Some(&current),
        json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
    )
    .await;
    assert_eq!(changed.status(), 204);
    assert_eq!(get(&api, "/api/v1/users/me", &current).await.status(), 200);
    expect_error(
        get(&api, "/api/v1/users/me", &other).await,
        401,
        "unauthorized",
    )
    .await;
    let refresh = post(
        &api,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": other_refresh}),
    )
    .await;
    expect_error(refresh, 401, "unauthorized").await;
    let old = post(
        &api,
        "/api/v1/auth/login",
        None,
        json!({"email": "mover@example.com", "password": PASSWORD}),
    )
    .await;
    expect_error(old, 401, "unauthorized").await;
}

#[tokio::test]
async fn login_rate_limit_holds_across_replicas() {
    let db = TestDatabase::migrated().await;
    let first = api(&db).await;
    let second = api(&db).await;
    register(&first, "limited@example.com").await;
    let wrong = json!({"email": "limited@example.com", "password": "guess"});
    // The per-account budget is 10 per 5 minutes, shared by both replicas.
    for attempt in 0..10 {
        let replica = if attempt % 2 == 0 { &first } else { &second };
        let response = post(replica, "/api/v1/auth/login", None, wrong.clone()).await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let limited = post(&second, "/api/v1/auth/login", None, wrong.clone()).await;
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=300).contains(&retry_after), "{retry_after}");
    expect_error(limited, 429, "rate_limited").await;
    // Even the right password waits: the limit is per account.
    let right = post(
        &first,
        "/api/v1/auth/login",
        None,
        json!({"email": "limited@example.com", "password": PASSWORD}),
    )
    .await;
    expect_error(right, 429, "rate_limited").await;
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused_and_nothing_is_stored() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_MAX_BODY_BYTES", "4096"),
        ],
    )
    .await;
    let url = api.url("/api/v1/auth/register");
    let send = |content_type: &'static str, body: Vec<u8>| {
        let request = api
            .client
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        async move { request.send().await.expect("POST") }
    };
    expect_error(
        send("application/json", b"{\"email\": ".to_vec()).await,
        400,
        "malformed_body",
    )
    .await;
    expect_error(
        send("application/json", b"[1, 2]".to_vec()).await,
        400,
        "malformed_body",
    )
    .await;
    // Readable JSON with a field of the wrong type: 422 naming the field.
    let wrong_type = expect_error(
        send(
            "application/json",
            br#"{"email": {"nested": true}, "password": "x"}"#.to_vec(),
        )
        .await,
        422,
        "invalid_type",
    )
    .await;
    assert_eq!(wrong_type["error"]["details"]["field"], "email");
    expect_error(
        send("text/plain", b"email=a".to_vec()).await,
        415,
        "unsupported_media_type",
    )
    .await;
    let huge = json!({"email": "big@example.com", "password": "x".repeat(10_000)}).to_string();
    expect_error(
        send("application/json", huge.into_bytes()).await,
        413,
        "payload_too_large",
    )
    .await;
    let short = post(
        &api,
        "/api/v1/auth/register",
        None,
        json!({"email": "a@example.com", "password": "short"}),
    )
    .await;
    let error = expect_error(short, 422, "password_too_short").await;
    assert_eq!(error["error"]["details"]["field"], "password");
    let bad_email = post(
        &api,
        "/api/v1/auth/register",
        None,
        json!({"email": "not-an-email", "password": PASSWORD}),
    )
    .await;
    expect_error(bad_email, 422, "invalid_email").await;
    assert_eq!(user_count(&db).await, 0, "nothing was stored");

    // A path parameter that does not parse is a 400 with the JSON body.
    register(&api, "param@example.com").await;
    let (access, _) = login(&api, "param@example.com").await;
    let response = api
        .client
        .delete(api.url("/api/v1/tokens/not-a-uuid"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("DELETE");
    let error = expect_error(response, 400, "invalid_parameter").await;
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("id")),
        "{error}"
    );
}

#[tokio::test]
async fn registration_can_be_switched_off_and_the_bootstrap_admin_still_exists() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_ALLOW_REGISTRATION", "false"),
            ("CREWGRAPH_ADMIN_EMAIL", "root@example.com"),
            ("CREWGRAPH_ADMIN_PASSWORD", "a long admin passphrase"),
        ],
    )
    .await;
    let response = post(
        &api,
        "/api/v1/auth/register",
        None,
        json!({"email": "x@example.com", "password": PASSWORD}),
    )
    .await;
    expect_error(response, 403, "registration_disabled").await;

    let mut token = None;
    for _ in 0..50 {
        let response = post(
            &api,
            "/api/v1/auth/login",
            None,
            json!({"email": "root@example.com", "password": "a long admin passphrase"}),
        )
        .await;
        if response.status() == 200 {
            token = body(response).await["access_token"]
                .as_str()
                .map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = token.expect("the bootstrap admin can log in");
    assert_eq!(
        body(get(&api, "/api/v1/users/me", &token).await).await["role"],
        "admin"
    );
}

#[tokio::test]
async fn no_password_or_token_ever_reaches_the_logs() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api_with(
        &db.url,
        &[("CREWGRAPH_JWT_SECRET", JWT_SECRET), ("RUST_LOG", "debug")],
    )
    .await;
    register(&api, "quiet@example.com").await;
    let (access, refresh) = login(&api, "quiet@example.com").await;
    let refreshed = body(
        post(
            &api,
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": refresh}),
        )
        .await,
    )
    .await;
    let pat = body(post(&api, "/api/v1/tokens", Some(&access), json!({"name": "x"})).await).await;
    let pat = pat["token"].as_str().expect("token").to_string();
    get(&api, "/api/v1/users/me", &pat).await;
    let provider_secret = "sk-provider-secret-never-logged-9876";
    let key = post(
        &api,
        "/api/v1/api-keys",
        Some(&pat),
        json!({"name": "k", "provider": "openai", "secret": provider_secret}),
    )
    .await;
    assert_eq!(key.status(), 201);
    post(
        &api,
        "/api/v1/auth/login",
        None,
        json!({"email": "quiet@example.com", "password": "wrong-secret-guess"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = api.logs().join("\n");
    assert!(logs.contains("request completed"), "logs were captured");
    for secret in [
        PASSWORD,
        "wrong-secret-guess",
        JWT_SECRET,
        access.as_str(),
        refresh.as_str(),
        refreshed["access_token"].as_str().expect("a"),
        refreshed["refresh_token"].as_str().expect("r"),
        pat.as_str(),
        provider_secret,
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

#[tokio::test]
async fn pre_registering_the_admin_email_gains_nothing() {
    let db = TestDatabase::migrated().await;
    let squatter_api = api(&db).await;
    register(&squatter_api, "root@example.com").await;
    let (squatter_access, squatter_refresh) = login(&squatter_api, "root@example.com").await;
    drop(squatter_api);

    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_ADMIN_EMAIL", "root@example.com"),
            ("CREWGRAPH_ADMIN_PASSWORD", "the operator's passphrase"),
        ],
    )
    .await;
    let mut promoted = false;
    for _ in 0..100 {
        let response = post(
            &api,
            "/api/v1/auth/login",
            None,
            json!({"email": "root@example.com", "password": "the operator's passphrase"}),
        )
        .await;
        if response.status() == 200 {
            promoted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(promoted, "the operator's password works");
    expect_error(
        get(&api, "/api/v1/users/me", &squatter_access).await,
        401,
        "unauthorized",
    )
    .await;
    let refresh = post(
        &api,
        "/api/v1/auth/refresh",
        None,
        json!({"refresh_token": squatter_refresh}),
    )
    .await;
    expect_error(refresh, 401, "unauthorized").await;
    let old_password = post(
        &api,
        "/api/v1/auth/login",
        None,
        json!({"email": "root@example.com", "password": PASSWORD}),
    )
    .await;
    expect_error(old_password, 401, "unauthorized").await;
}

#[tokio::test]
async fn nul_characters_are_a_client_error_not_a_500() {
    let db = TestDatabase::migrated().await;
    let api = api(&db).await;
    let register = post(
        &api,
        "/api/v1/auth/register",
        None,
        json!({"email": "a\u{0}@example.com", "password": PASSWORD}),
    )
    .await;
    expect_error(register, 422, "invalid_email").await;
    let token = {
        crewgraph_tests::http::register(&api, "nul@example.com").await;
        login(&api, "nul@example.com").await.0
    };
    let workspace = post(
        &api,
        "/api/v1/workspaces",
        Some(&token),
        json!({"name": "bad\u{0}name"}),
    )
    .await;
    expect_error(workspace, 400, "invalid_text").await;
}
