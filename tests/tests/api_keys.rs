//! Provider API keys: encrypted at rest, masked in every response, scoped to their owner,
//! and re-encrypted by `crewgraph-api rotate-keys`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use crewgraph_core::auth::provider_keys::KeyChoice::{ById, NewestFor};
use crewgraph_core::auth::provider_keys::reveal;
use crewgraph_core::config::{Component, Config, Lookup};
use crewgraph_tests::http::{JWT_SECRET, body, expect_error, get, post, send, signed_up};
use crewgraph_tests::{TestDatabase, spawn_api_with};
use reqwest::Method;
use secrecy::ExposeSecret as _;
use serde_json::json;
use uuid::Uuid;

const SECRET: &str = "sk-proj-THIS-IS-THE-PLAINTEXT-0123456789";

fn key_spec(entries: &[(u32, u8)]) -> String {
    entries
        .iter()
        .map(|(version, byte)| format!("v{version}:{}", STANDARD.encode([*byte; 32])))
        .collect::<Vec<_>>()
        .join(",")
}

fn encryption_keys(spec: &str) -> crewgraph_core::config::EncryptionKeys {
    let spec = spec.to_string();
    Config::from_lookup(Component::Worker, move |name| match name {
        "CREWGRAPH_ENCRYPTION_KEYS" => Lookup::Value(spec.clone()),
        _ => Lookup::Missing,
    })
    .expect("config")
    .encryption_keys
}

async fn connection(db: &TestDatabase) -> sea_orm::DatabaseConnection {
    sea_orm::Database::connect(&db.url).await.expect("connect")
}

#[tokio::test]
async fn keys_are_encrypted_masked_and_scoped_to_their_owner() {
    let db = TestDatabase::migrated().await;
    let spec = key_spec(&[(1, 7)]);
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_ENCRYPTION_KEYS", &spec),
        ],
    )
    .await;
    let alice = signed_up(&api, "alice@example.com").await;
    let bob = signed_up(&api, "bob@example.com").await;

    let created = post(
        &api,
        "/api/v1/api-keys",
        Some(&alice),
        json!({"name": "OpenAI", "provider": "openai", "secret": SECRET}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created = body(created).await;
    assert_eq!(created["secret_hint"], "sk-…6789");
    let id = created["id"].as_str().expect("id").to_string();
    let listed = body(get(&api, "/api/v1/api-keys", &alice).await).await;
    let fetched = body(get(&api, &format!("/api/v1/api-keys/{id}"), &alice).await).await;
    for response in [&created, &listed, &fetched] {
        assert!(
            !response.to_string().contains("THIS-IS-THE-PLAINTEXT"),
            "{response}"
        );
    }
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));

    // Bob sees none of it, and cannot touch it: 404, never 403.
    assert_eq!(
        body(get(&api, "/api/v1/api-keys", &bob).await).await["items"],
        json!([])
    );
    expect_error(
        get(&api, &format!("/api/v1/api-keys/{id}"), &bob).await,
        404,
        "not_found",
    )
    .await;
    let patch = send(
        &api,
        Method::PATCH,
        &format!("/api/v1/api-keys/{id}"),
        &bob,
        Some(json!({"name": "mine"})),
    )
    .await;
    expect_error(patch, 404, "not_found").await;
    expect_error(
        send(
            &api,
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            &bob,
            None,
        )
        .await,
        404,
        "not_found",
    )
    .await;

    // The stored column never holds the plaintext.
    let mut conn = db.connect().await;
    let dump: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT ciphertext, secret_hint FROM provider_api_keys")
            .fetch_all(&mut conn)
            .await
            .expect("select");
    for (ciphertext, hint) in &dump {
        assert!(!String::from_utf8_lossy(ciphertext).contains("PLAINTEXT"));
        assert!(!hint.contains("PLAINTEXT"));
    }

    // Only core's reveal gets the plaintext back, for the owner only.
    let keys = encryption_keys(&spec);
    let sea = connection(&db).await;
    let alice_id: Uuid =
        sqlx::query_scalar("SELECT id FROM users WHERE email = 'alice@example.com'")
            .fetch_one(&mut conn)
            .await
            .expect("alice");
    let bob_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'bob@example.com'")
        .fetch_one(&mut conn)
        .await
        .expect("bob");
    let key_id = Uuid::parse_str(&id).expect("uuid");
    let revealed = reveal(&sea, &keys, alice_id, ById(key_id))
        .await
        .expect("reveal")
        .expect("alice's key");
    assert_eq!(revealed.secret.expose_secret(), SECRET);
    let newest = reveal(&sea, &keys, alice_id, NewestFor("openai"))
        .await
        .expect("reveal")
        .expect("alice's newest openai key");
    assert_eq!(newest.secret.expose_secret(), SECRET);
    assert!(
        reveal(&sea, &keys, bob_id, ById(key_id))
            .await
            .expect("query")
            .is_none(),
        "Bob cannot open Alice's key"
    );

    // A ciphertext copied onto another user's row does not decrypt (owner id is the AAD).
    let bobs = post(
        &api,
        "/api/v1/api-keys",
        Some(&bob),
        json!({"name": "B", "provider": "anthropic", "secret": "sk-ant-bobs-own-secret-000"}),
    )
    .await;
    let bob_key = Uuid::parse_str(body(bobs).await["id"].as_str().expect("id")).expect("uuid");
    sqlx::query(
        "UPDATE provider_api_keys b SET ciphertext = a.ciphertext, nonce = a.nonce, key_version = a.key_version \
         FROM provider_api_keys a WHERE a.id = $1 AND b.id = $2",
    )
    .bind(key_id)
    .bind(bob_key)
    .execute(&mut conn)
    .await
    .expect("copy");
    assert!(reveal(&sea, &keys, bob_id, ById(bob_key)).await.is_err());
}

#[tokio::test]
async fn updates_validation_and_deletion() {
    let db = TestDatabase::migrated().await;
    let api = spawn_api_with(&db.url, &[("CREWGRAPH_JWT_SECRET", JWT_SECRET)]).await;
    let token = signed_up(&api, "carol@example.com").await;
    let bad = [
        (
            json!({"name": "x", "provider": "cohere", "secret": "s"}),
            "invalid_provider",
        ),
        (
            json!({"name": "x", "provider": "openai-compatible", "secret": "s"}),
            "base_url_required",
        ),
        (
            json!({"name": "x", "provider": "openai", "secret": "s", "base_url": "ftp://x"}),
            "invalid_base_url",
        ),
        (
            json!({"name": " ", "provider": "openai", "secret": "s"}),
            "invalid_name",
        ),
        (
            json!({"name": "x", "provider": "openai", "secret": "  "}),
            "invalid_secret",
        ),
    ];
    for (request, code) in bad {
        expect_error(
            post(&api, "/api/v1/api-keys", Some(&token), request).await,
            422,
            code,
        )
        .await;
    }
    let created = body(post(&api, "/api/v1/api-keys", Some(&token), json!({"name": "Local", "provider": "openai-compatible", "secret": "sk-local-000000000000", "base_url": "http://127.0.0.1:9999/v1"})).await).await;
    let id = created["id"].as_str().expect("id");
    let duplicate = post(
        &api,
        "/api/v1/api-keys",
        Some(&token),
        json!({"name": "LOCAL", "provider": "openai", "secret": "s"}),
    )
    .await;
    expect_error(duplicate, 409, "name_taken").await;

    let updated = send(
        &api,
        Method::PATCH,
        &format!("/api/v1/api-keys/{id}"),
        &token,
        Some(json!({"name": "Renamed", "secret": "sk-new-secret-abcdefWXYZ"})),
    )
    .await;
    let updated = body(updated).await;
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(updated["secret_hint"], "sk-…WXYZ");
    assert_eq!(updated["base_url"], "http://127.0.0.1:9999/v1");
    let cleared = send(
        &api,
        Method::PATCH,
        &format!("/api/v1/api-keys/{id}"),
        &token,
        Some(json!({"base_url": null})),
    )
    .await;
    expect_error(cleared, 422, "base_url_required").await;

    assert_eq!(
        send(
            &api,
            Method::DELETE,
            &format!("/api/v1/api-keys/{id}"),
            &token,
            None
        )
        .await
        .status(),
        204
    );
    expect_error(
        get(&api, &format!("/api/v1/api-keys/{id}"), &token).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn rotate_keys_re_encrypts_every_row_with_the_newest_key() {
    let db = TestDatabase::migrated().await;
    let old = key_spec(&[(1, 1)]);
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_ENCRYPTION_KEYS", &old),
        ],
    )
    .await;
    let token = signed_up(&api, "dave@example.com").await;
    for n in 0..3 {
        let response = post(&api, "/api/v1/api-keys", Some(&token), json!({"name": format!("k{n}"), "provider": "openai", "secret": format!("sk-secret-number-{n}-abcdef")})).await;
        assert_eq!(response.status(), 201);
    }
    let rotated = key_spec(&[(2, 2), (1, 1)]);
    let output = tokio::process::Command::new(crewgraph_tests::app::binary_path("crewgraph-api"))
        .arg("rotate-keys")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", &db.url)
        .env("CREWGRAPH_ENCRYPTION_KEYS", &rotated)
        .env("CREWGRAPH_LOG_FORMAT", "json")
        .output()
        .await
        .expect("run rotate-keys");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("\"rotated\":3"), "{stdout}");

    let mut conn = db.connect().await;
    let versions: Vec<i32> = sqlx::query_scalar("SELECT key_version FROM provider_api_keys")
        .fetch_all(&mut conn)
        .await
        .expect("versions");
    assert_eq!(versions, vec![2, 2, 2]);
    // The old key can now be dropped: every row opens with v2 alone.
    let only_new = encryption_keys(&key_spec(&[(2, 2)]));
    let sea = connection(&db).await;
    let rows: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, user_id FROM provider_api_keys ORDER BY name")
            .fetch_all(&mut conn)
            .await
            .expect("rows");
    for (n, (id, owner)) in rows.into_iter().enumerate() {
        let secret = reveal(&sea, &only_new, owner, ById(id))
            .await
            .expect("opens with v2")
            .expect("key exists")
            .secret;
        assert_eq!(
            secret.expose_secret(),
            format!("sk-secret-number-{n}-abcdef")
        );
    }
}
