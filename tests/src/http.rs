//! HTTP helpers shared by the end-to-end tests: accounts, logins and error assertions.

use serde_json::{Value, json};

use crate::{TestApi, TestDatabase, spawn_api_with};

pub const ADMIN_EMAIL: &str = "root@example.com";
pub const ADMIN_PASSWORD: &str = "the admin passphrase";

pub const JWT_SECRET: &str = "test-jwt-secret-that-is-long-enough-for-hs256";
pub const PASSWORD: &str = "correct horse battery";

pub async fn api(db: &TestDatabase) -> TestApi {
    spawn_api_with(&db.url, &[("CREWGRAPH_JWT_SECRET", JWT_SECRET)]).await
}

pub async fn post(
    api: &TestApi,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut request = api.client.post(api.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("POST")
}

pub async fn get(api: &TestApi, path: &str, token: &str) -> reqwest::Response {
    api.client
        .get(api.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
}

pub async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let body = body(response).await;
    assert_eq!(actual, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body
}

pub async fn register(api: &TestApi, email: &str) -> Value {
    let response = post(
        api,
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 201);
    body(response).await
}

/// Logs in and returns (access token, refresh token).
pub async fn login(api: &TestApi, email: &str) -> (String, String) {
    let response = post(
        api,
        "/api/v1/auth/login",
        None,
        json!({"email": email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let tokens = body(response).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(
        tokens["expires_in"]
            .as_i64()
            .is_some_and(|s| s > 800 && s <= 900)
    );
    (
        tokens["access_token"].as_str().expect("access").to_string(),
        tokens["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_string(),
    )
}

/// Sends `method` with an optional JSON body and bearer token.
pub async fn send(
    api: &TestApi,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = api.client.request(method, api.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("request")
}

/// Registers `email` and returns its access token.
pub async fn signed_up(api: &TestApi, email: &str) -> String {
    register(api, email).await;
    login(api, email).await.0
}

/// An empty JSON object, for POSTs without a body.
pub fn empty() -> Value {
    json!({})
}

/// Starts the API with a bootstrap admin and returns the admin's access token.
pub async fn api_with_admin(db: &TestDatabase) -> (TestApi, String) {
    let api = spawn_api_with(
        &db.url,
        &[
            ("CREWGRAPH_JWT_SECRET", JWT_SECRET),
            ("CREWGRAPH_ADMIN_EMAIL", ADMIN_EMAIL),
            ("CREWGRAPH_ADMIN_PASSWORD", ADMIN_PASSWORD),
        ],
    )
    .await;
    for _ in 0..100 {
        let response = post(
            &api,
            "/api/v1/auth/login",
            None,
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
        if response.status() == 200 {
            let token = body(response).await["access_token"]
                .as_str()
                .expect("token")
                .to_string();
            return (api, token);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("bootstrap admin never appeared");
}

/// Creates a workspace and returns its id.
pub async fn workspace(api: &TestApi, token: &str, name: &str) -> String {
    let response = post(
        api,
        "/api/v1/workspaces",
        Some(token),
        json!({"name": name}),
    )
    .await;
    assert_eq!(response.status(), 201);
    body(response).await["id"]
        .as_str()
        .expect("workspace id")
        .to_string()
}
