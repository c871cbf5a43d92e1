//! Routing of policy-API paths: a table of path templates matched by `matchit` (axum's
//! router), each giving the [`Route`] with its decoded parameters and the pattern the call
//! counters use. Query strings and form bodies are decoded with `form_urlencoded`, path
//! parameters with `percent-encoding`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::POLICY_PREFIX;

/// A parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/infra`.
    Infra,
    /// `/infra/domains`.
    Domains,
    /// `/infra/domains/{d}`.
    Domain(String),
    /// `/infra/domains/{d}/groups`.
    Groups(String),
    /// `/infra/domains/{d}/groups/{id}`.
    Group(String, String),
    /// `/infra/domains/{d}/groups/{id}/members/virtual-machines`.
    GroupVms(String, String),
    /// `/infra/domains/{d}/groups/{id}/members/ip-addresses`.
    GroupIps(String, String),
    /// `/infra/domains/{d}/security-policies`.
    Policies(String),
    /// `/infra/domains/{d}/security-policies/{id}`.
    Policy(String, String),
    /// `.../rules`.
    Rules(String, String),
    /// `.../rules/{id}`.
    Rule(String, String, String),
    /// `/infra/services`.
    Services,
    /// `/infra/services/{id}`.
    Service(String),
    /// `/infra/services/{id}/service-entries`.
    Entries(String),
    /// `/infra/services/{id}/service-entries/{e}`.
    Entry(String, String),
    /// `/infra/realized-state/realized-entities`.
    Realized,
    /// `/infra/realized-state/status`.
    RealizedStatus,
    /// `POST /api/session/create`.
    SessionCreate,
    /// `POST /api/session/destroy`.
    SessionDestroy,
    /// `GET /api/v1/node/version`.
    Version,
    /// Anything else.
    Unknown,
}

/// Builds a route from its decoded path parameters, in path order.
type Make = fn(&mut dyn Iterator<Item = String>) -> Route;

/// One entry of the table: the `matchit` template, the counter pattern, the constructor.
type Entry = (&'static str, &'static str, Make);

/// The next path parameter (the template guarantees there is one).
fn arg(params: &mut dyn Iterator<Item = String>) -> String {
    params.next().unwrap_or_default()
}

/// Every route. Templates name parameters as `matchit` requires (one name per position);
/// counter patterns are the simulator's published keys.
const ROUTES: &[Entry] = &[
    ("/api/session/create", "/api/session/create", |_| {
        Route::SessionCreate
    }),
    ("/api/session/destroy", "/api/session/destroy", |_| {
        Route::SessionDestroy
    }),
    ("/api/v1/node/version", "/api/v1/node/version", |_| {
        Route::Version
    }),
    ("/infra", "/infra", |_| Route::Infra),
    ("/infra/domains", "/infra/domains", |_| Route::Domains),
    ("/infra/domains/{d}", "/infra/domains/{d}", |p| {
        Route::Domain(arg(p))
    }),
    (
        "/infra/domains/{d}/groups",
        "/infra/domains/{d}/groups",
        |p| Route::Groups(arg(p)),
    ),
    (
        "/infra/domains/{d}/groups/{id}",
        "/infra/domains/{d}/groups/{id}",
        |p| Route::Group(arg(p), arg(p)),
    ),
    (
        "/infra/domains/{d}/groups/{id}/members/virtual-machines",
        "/infra/domains/{d}/groups/{id}/members/virtual-machines",
        |p| Route::GroupVms(arg(p), arg(p)),
    ),
    (
        "/infra/domains/{d}/groups/{id}/members/ip-addresses",
        "/infra/domains/{d}/groups/{id}/members/ip-addresses",
        |p| Route::GroupIps(arg(p), arg(p)),
    ),
    (
        "/infra/domains/{d}/security-policies",
        "/infra/domains/{d}/security-policies",
        |p| Route::Policies(arg(p)),
    ),
    (
        "/infra/domains/{d}/security-policies/{id}",
        "/infra/domains/{d}/security-policies/{id}",
        |p| Route::Policy(arg(p), arg(p)),
    ),
    (
        "/infra/domains/{d}/security-policies/{id}/rules",
        "/infra/domains/{d}/security-policies/{p}/rules",
        |p| Route::Rules(arg(p), arg(p)),
    ),
    (
        "/infra/domains/{d}/security-policies/{id}/rules/{rule}",
        "/infra/domains/{d}/security-policies/{p}/rules/{id}",
        |p| Route::Rule(arg(p), arg(p), arg(p)),
    ),
    ("/infra/services", "/infra/services", |_| Route::Services),
    ("/infra/services/{id}", "/infra/services/{id}", |p| {
        Route::Service(arg(p))
    }),
    (
        "/infra/services/{id}/service-entries",
        "/infra/services/{s}/service-entries",
        |p| Route::Entries(arg(p)),
    ),
    (
        "/infra/services/{id}/service-entries/{entry}",
        "/infra/services/{s}/service-entries/{id}",
        |p| Route::Entry(arg(p), arg(p)),
    ),
    (
        "/infra/realized-state/realized-entities",
        "/infra/realized-state/realized-entities",
        |_| Route::Realized,
    ),
    (
        "/infra/realized-state/status",
        "/infra/realized-state/status",
        |_| Route::RealizedStatus,
    ),
];

/// The routers: policy-API templates (after [`POLICY_PREFIX`]) and the manager's own paths.
struct Routers {
    policy: matchit::Router<usize>,
    manager: matchit::Router<usize>,
}

fn routers() -> &'static Routers {
    static ROUTERS: OnceLock<Routers> = OnceLock::new();
    ROUTERS.get_or_init(|| {
        let mut policy = matchit::Router::new();
        let mut manager = matchit::Router::new();
        for (i, (template, _, _)) in ROUTES.iter().enumerate() {
            let router = if template.starts_with("/api/") {
                &mut manager
            } else {
                &mut policy
            };
            // The templates are fixed and do not conflict (checked by a unit test).
            let _ = router.insert(*template, i);
        }
        Routers { policy, manager }
    })
}

/// Parses a request path into a route and its counter pattern (without the method).
pub fn route(path: &str) -> (Route, String) {
    let unknown = || (Route::Unknown, "unknown".to_string());
    let (router, rest) = match path.strip_prefix(POLICY_PREFIX) {
        Some(rest) => (&routers().policy, rest.trim_end_matches('/')),
        None => (&routers().manager, path),
    };
    let Ok(found) = router.at(rest) else {
        return unknown();
    };
    let Some((_, pattern, make)) = ROUTES.get(*found.value) else {
        return unknown();
    };
    let mut params = found.params.iter().map(|(_, v)| percent_decode_path(v));
    (make(&mut params), (*pattern).to_string())
}

/// Decodes `%XX` of a path segment (`+` stays `+`).
pub fn percent_decode_path(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Decodes an `application/x-www-form-urlencoded` text (a query string or a form body):
/// `%XX` and `+`; a key without `=` has an empty value.
pub fn form(s: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(s).into_owned().collect()
}

/// The query parameters of a request.
pub fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    form(uri.query().unwrap_or("").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_accepted_by_the_router() {
        let mut policy = matchit::Router::new();
        let mut manager = matchit::Router::new();
        for (template, _, _) in ROUTES {
            let router = if template.starts_with("/api/") {
                &mut manager
            } else {
                &mut policy
            };
            assert!(router.insert(*template, ()).is_ok(), "{template}");
        }
    }

    #[test]
    fn paths_route_with_decoded_parameters_and_counter_patterns() {
        let p = |rest: &str| route(&format!("{POLICY_PREFIX}{rest}"));
        assert_eq!(p("/infra"), (Route::Infra, "/infra".into()));
        assert_eq!(p("/infra/"), (Route::Infra, "/infra".into()));
        assert_eq!(
            p("/infra/domains/default/groups/web%20vms"),
            (
                Route::Group("default".into(), "web vms".into()),
                "/infra/domains/{d}/groups/{id}".into()
            )
        );
        assert_eq!(
            p("/infra/domains/d/security-policies/a%2Fb/rules/r+1"),
            (
                Route::Rule("d".into(), "a/b".into(), "r+1".into()),
                "/infra/domains/{d}/security-policies/{p}/rules/{id}".into()
            )
        );
        assert_eq!(
            p("/infra/services/HTTP/service-entries/e"),
            (
                Route::Entry("HTTP".into(), "e".into()),
                "/infra/services/{s}/service-entries/{id}".into()
            )
        );
        assert_eq!(
            route("/api/session/create"),
            (Route::SessionCreate, "/api/session/create".into())
        );
        assert_eq!(p("/infra/nothing"), (Route::Unknown, "unknown".into()));
        assert_eq!(
            route("/policy/api/v2/infra"),
            (Route::Unknown, "unknown".into())
        );
        assert_eq!(route(POLICY_PREFIX), (Route::Unknown, "unknown".into()));
    }

    #[test]
    fn query_strings_decode_plus_and_percent() {
        let q = form(b"filter=Type-Domain%7CGroup&a=b+c&flag");
        assert_eq!(q["filter"], "Type-Domain|Group");
        assert_eq!(q["a"], "b c");
        assert_eq!(q["flag"], "");
    }
}
