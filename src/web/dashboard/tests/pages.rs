//! Signing in (the login form, sessions, the limit on failed sign-ins), the authenticating
//! proxy, and the pages' assets.

use reqwest::StatusCode;

use super::*;
use crate::web::dashboard::api::{self, AckRequest};
use crate::web::dashboard::pages::{LOGIN_HTML, SHELL_HTML};

#[tokio::test]
async fn login_form_sets_an_httponly_strict_cookie_that_is_not_the_token() {
    let s = serve(config(Some(TOKEN), None)).await;
    let r = s.login("nope", "/ui/alerts").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("token: not accepted"));

    let r = s.login(TOKEN, "/ui/alerts").await;
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/ui/alerts");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Secure")
            && cookie.contains("Max-Age="),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN));
    let pair = session_pair(&r);
    let r = s.get("/api/v1/alerts", &[("cookie", &pair)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/ui/", &[("cookie", &pair)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("data-page=\"programme\"") && page.contains("/ui/assets/app.js"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no CDN"
    );

    // No open redirect.
    let r = s.login(TOKEN, "//evil.example.com/").await;
    assert_eq!(r.headers()["location"], "/ui/");
    // A forged cookie does not pass.
    let forged = format!("{SESSION_COOKIE}={TOKEN}");
    let r = s.get("/api/v1/alerts", &[("cookie", &forged)]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_are_random_end_at_logout_and_failed_sign_ins_are_limited() {
    let s = serve(config(Some(TOKEN), None)).await;
    let (a, b) = (s.sign_in().await, s.sign_in().await);
    assert_ne!(a, b, "each sign-in gets its own session");
    let alerts = async |cookie: String| {
        s.get("/api/v1/alerts", &[("cookie", &cookie)])
            .await
            .status()
    };
    assert_eq!(alerts(a.clone()).await, StatusCode::OK);
    let r = s.post("/ui/logout", &[("cookie", &a)], None).await;
    assert!(r.status().is_redirection());
    let removal = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        removal.starts_with(&format!("{SESSION_COOKIE}=;"))
            && removal.contains("Max-Age=0")
            && removal.contains("HttpOnly"),
        "the browser drops the cookie: {removal}"
    );
    assert_eq!(
        alerts(a).await,
        StatusCode::UNAUTHORIZED,
        "a signed-out session is gone"
    );
    assert_eq!(alerts(b).await, StatusCode::OK, "other sessions stay");

    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = s.login("wrong-token-0123456789", "/ui/").await;
        codes.push(r.status().as_u16());
    }
    assert_eq!(&codes[..10], &[401; 10], "{codes:?}");
    assert_eq!(codes[11], 429, "{codes:?}");
    // Blocked even with the right token until the minute is over.
    let r = s.login(TOKEN, "/ui/").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_proxy_user_header_is_accepted_when_configured_only() {
    let with = serve(config(None, Some("X-Forwarded-User"))).await;
    let alice = ("x-forwarded-user", "alice@example.com");
    let r = with
        .get(
            "/api/v1/alerts",
            &[alice, (PROXY_SECRET_HEADER, PROXY_SECRET)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Without the proxy's secret (or with a wrong one) the header is anyone's: ignored.
    for secret in [None, Some("wrong-secret-0123456789")] {
        let headers: Vec<_> = [alice]
            .into_iter()
            .chain(secret.map(|x| (PROXY_SECRET_HEADER, x)))
            .collect();
        let r = with.get("/api/v1/alerts", &headers).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "secret {secret:?}");
    }
    let r = with.get("/api/v1/alerts", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let without = serve(config(Some(TOKEN), None)).await;
    let r = without.get("/api/v1/alerts", &[alice]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The proxy's user is recorded; a token user's own name is marked as such.
    let req = AckRequest {
        by: Some("mallory".into()),
        ..Default::default()
    };
    let proxy = User {
        name: Some("alice@example.com".into()),
        ..User::default()
    };
    assert_eq!(api::recorded_by(&proxy, &req), "alice@example.com");
    assert_eq!(
        api::recorded_by(&User::default(), &req),
        "mallory (dashboard token)"
    );
    assert_eq!(
        api::recorded_by(&User::default(), &AckRequest::default()),
        "dashboard"
    );
}

#[test]
fn a_proxy_proves_itself_by_every_proof_configured() {
    let shared = |secret: Option<&str>, cidrs: &[&str]| Shared {
        state: state(DashboardConfig {
            user_header: Some("X-Forwarded-User".into()),
            proxy_secret: secret.map(SecretString::from),
            proxy_sources: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
            ..DashboardConfig::default()
        }),
        sessions: std::sync::Mutex::default(),
        failures: std::sync::Mutex::default(),
    };
    let mut with_secret = HeaderMap::new();
    with_secret.insert("x-forwarded-user", HeaderValue::from_static("alice"));
    with_secret.insert(
        PROXY_SECRET_HEADER,
        HeaderValue::from_static("s3cret-0123456789"),
    );
    let mut bare = HeaderMap::new();
    bare.insert("x-forwarded-user", HeaderValue::from_static("alice"));
    let proxy: Option<std::net::IpAddr> = Some("10.9.1.2".parse().unwrap());
    let other: Option<std::net::IpAddr> = Some("10.8.1.2".parse().unwrap());
    let alice = Some(User {
        name: Some("alice".into()),
        ..User::default()
    });

    let s = shared(None, &[]);
    assert_eq!(
        s.identify(&with_secret, proxy),
        None,
        "no proof configured: never"
    );
    let s = shared(Some("s3cret-0123456789"), &[]);
    assert_eq!(s.identify(&with_secret, other), alice);
    assert_eq!(s.identify(&bare, proxy), None);
    let s = shared(None, &["10.9.0.0/16"]);
    assert_eq!(s.identify(&bare, proxy), alice);
    assert_eq!(s.identify(&bare, other), None);
    assert_eq!(s.identify(&bare, None), None);
    let s = shared(Some("s3cret-0123456789"), &["10.9.0.0/16"]);
    assert_eq!(s.identify(&with_secret, proxy), alice);
    assert_eq!(
        s.identify(&with_secret, other),
        None,
        "both proofs must hold"
    );
    assert_eq!(s.identify(&bare, proxy), None, "both proofs must hold");
    let mut long = with_secret.clone();
    long.insert(
        "x-forwarded-user",
        HeaderValue::from_str(&"u".repeat(254)).unwrap(),
    );
    assert_eq!(
        s.identify(&long, proxy),
        None,
        "over the CRD's 253 characters"
    );
}

#[test]
fn session_values_are_random_and_the_config_hides_its_secrets() {
    let v = new_session_id();
    assert_eq!(v.len(), 64);
    assert_ne!(v, new_session_id());
    assert!(!format!("{:?}", config(Some(TOKEN), None)).contains(TOKEN));
}

#[test]
fn assets_are_self_contained() {
    for (name, text) in [
        ("shell.html", SHELL_HTML),
        ("login.html", LOGIN_HTML),
        ("app.js", APP_JS),
        ("style.css", STYLE_CSS),
    ] {
        for remote in ["http://", "https://", "//cdn", "@import"] {
            let allowed = name == "app.js" && text.contains("http://www.w3.org/2000/svg");
            let hits = text.matches(remote).count() - usize::from(allowed && remote == "http://");
            assert_eq!(hits, 0, "{name} loads {remote}");
        }
        assert!(!text.contains("<script>"), "{name}: inline script");
    }
    assert!(SHELL_HTML.contains("lang=\"en\"") && LOGIN_HTML.contains("<label for=\"token\">"));
}
