//! The dashboard's HTML pages: the templates in `assets/` rendered with minijinja, which
//! escapes every value as HTML (the templates are named `*.html`).

use std::sync::LazyLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, context};

/// The page shell (`data-page` tells app.js what to draw).
pub(super) const SHELL_HTML: &str = include_str!("assets/shell.html");
/// The sign-in form.
pub(super) const LOGIN_HTML: &str = include_str!("assets/login.html");

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(Environment::new);

fn render(name: &str, source: &str, ctx: minijinja::Value, status: StatusCode) -> Response {
    match PAGES.render_named_str(name, source, ctx) {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(template = name, "dashboard page not rendered: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page: could not be rendered\n",
            )
                .into_response()
        }
    }
}

/// A page of the dashboard: the shell with its kind and title.
pub(super) fn shell(page: &str, title: &str) -> Response {
    render(
        "shell.html",
        SHELL_HTML,
        context! { page, title },
        StatusCode::OK,
    )
}

/// The sign-in form: a note, the error of the last attempt, where to go next, and whether a
/// token can be entered at all.
pub(super) fn login(
    note: &str,
    error: Option<&str>,
    next: &str,
    disabled: bool,
    status: StatusCode,
) -> Response {
    render(
        "login.html",
        LOGIN_HTML,
        context! { note, error, next, disabled },
        status,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, String) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn pages_fill_in_their_values_escaped() {
        let (status, page) = body(shell("alerts", "Alerts <&>")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(r#"<body data-page="alerts">"#), "{page}");
        assert!(
            page.contains("<title>Alerts &lt;&amp;&gt; · microseg</title>"),
            "{page}"
        );
        assert!(!page.contains("{{") && !page.contains("{%"), "{page}");

        let (status, form) = body(login(
            "Enter the token.",
            Some("token: <b>not</b> accepted"),
            r#"/ui/"><script>x</script>"#,
            false,
            StatusCode::UNAUTHORIZED,
        ))
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            form.contains(r#"id="login-error">token: &lt;b&gt;not&lt;&#x2f;b&gt; accepted</p>"#),
            "{form}"
        );
        assert!(!form.contains("<script>"), "{form}");
        assert!(form.contains("&quot;&gt;&lt;script&gt;"), "{form}");
        assert!(!form.contains("disabled"), "{form}");

        let (_, off) = body(login("Proxy only.", None, "/ui/", true, StatusCode::OK)).await;
        assert!(!off.contains("login-error"), "{off}");
        assert_eq!(off.matches(" disabled>").count(), 2, "{off}");
    }
}
