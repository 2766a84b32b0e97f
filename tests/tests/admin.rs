//! Admin user management: admins only, paginated search, deactivation that ends access
//! at once, role changes and deletion.

use crewgraph_tests::TestDatabase;
use crewgraph_tests::http::{
    ADMIN_EMAIL, api_with_admin, body, expect_error, get, login, post, send, signed_up,
};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn only_admins_manage_users() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let user = signed_up(&api, "plain@example.com").await;
    expect_error(
        get(&api, "/api/v1/admin/users", &user).await,
        403,
        "forbidden",
    )
    .await;
    let me = body(get(&api, "/api/v1/users/me", &admin).await).await;
    let admin_id = me["id"].as_str().expect("id");
    let attempt = send(
        &api,
        Method::PATCH,
        &format!("/api/v1/admin/users/{admin_id}"),
        &user,
        Some(json!({"role": "user"})),
    )
    .await;
    expect_error(attempt, 403, "forbidden").await;
    // Admins cannot lock themselves out.
    let own = send(
        &api,
        Method::PATCH,
        &format!("/api/v1/admin/users/{admin_id}"),
        &admin,
        Some(json!({"is_active": false})),
    )
    .await;
    expect_error(own, 409, "cannot_modify_self").await;
}

#[tokio::test]
async fn listing_paginates_and_searches_by_email() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    for name in ["anna", "bert", "anja"] {
        signed_up(&api, &format!("{name}@example.com")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/users?limit=2&cursor={c}"),
            None => "/api/v1/admin/users?limit=2".to_string(),
        };
        let page = body(get(&api, &path, &admin).await).await;
        let items = page["items"].as_array().expect("items").clone();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|u| u["email"].as_str().expect("email").to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec![
            ADMIN_EMAIL,
            "anna@example.com",
            "bert@example.com",
            "anja@example.com"
        ]
    );
    let found = body(get(&api, "/api/v1/admin/users?email=AN", &admin).await).await;
    let emails: Vec<&str> = found["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|u| u["email"].as_str().expect("email"))
        .collect();
    assert_eq!(emails, vec!["anna@example.com", "anja@example.com"]);
    expect_error(
        get(&api, "/api/v1/admin/users?limit=0", &admin).await,
        422,
        "invalid_limit",
    )
    .await;
    expect_error(
        get(&api, "/api/v1/admin/users?cursor=garbage", &admin).await,
        422,
        "invalid_cursor",
    )
    .await;
    expect_error(
        get(&api, "/api/v1/admin/users?limit=abc", &admin).await,
        400,
        "invalid_parameter",
    )
    .await;
}

#[tokio::test]
async fn deactivation_ends_access_at_once_and_roles_and_deletion_apply() {
    let db = TestDatabase::migrated().await;
    let (api, admin) = api_with_admin(&db).await;
    let user = signed_up(&api, "worker@example.com").await;
    let pat = body(
        post(
            &api,
            "/api/v1/tokens",
            Some(&user),
            json!({"name": "script"}),
        )
        .await,
    )
    .await;
    let pat = pat["token"].as_str().expect("token").to_string();
    let user_id = body(get(&api, "/api/v1/users/me", &user).await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let path = format!("/api/v1/admin/users/{user_id}");

    let off = send(
        &api,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(body(off).await["is_active"], false);
    expect_error(
        get(&api, "/api/v1/users/me", &user).await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        get(&api, "/api/v1/users/me", &pat).await,
        401,
        "unauthorized",
    )
    .await;
    let relogin = post(
        &api,
        "/api/v1/auth/login",
        None,
        json!({"email": "worker@example.com", "password": crewgraph_tests::http::PASSWORD}),
    )
    .await;
    expect_error(relogin, 401, "unauthorized").await;

    send(
        &api,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"is_active": true})),
    )
    .await;
    assert_eq!(
        get(&api, "/api/v1/users/me", &pat).await.status(),
        200,
        "PATs work again"
    );
    let promoted = body(
        send(
            &api,
            Method::PATCH,
            &path,
            &admin,
            Some(json!({"role": "admin"})),
        )
        .await,
    )
    .await;
    assert_eq!(promoted["role"], "admin");
    let (fresh, _) = login(&api, "worker@example.com").await;
    assert_eq!(
        get(&api, "/api/v1/admin/users", &fresh).await.status(),
        200,
        "the new admin can manage users"
    );

    assert_eq!(
        send(&api, Method::DELETE, &path, &admin, None)
            .await
            .status(),
        204
    );
    expect_error(
        get(&api, "/api/v1/users/me", &fresh).await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(
        send(&api, Method::DELETE, &path, &admin, None).await,
        404,
        "not_found",
    )
    .await;
    let role = send(
        &api,
        Method::PATCH,
        &path,
        &admin,
        Some(json!({"role": "superuser"})),
    )
    .await;
    assert_eq!(role.status(), 400, "unknown roles are refused");
}
