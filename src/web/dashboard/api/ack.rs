//! Acknowledging alerts: the request, who is recorded, and whether a proxy-named user may (a
//! LocalSubjectAccessReview of the verb `acknowledge`).

use super::*;

/// Body of `POST /api/v1/alerts/acknowledge`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AckRequest {
    /// Namespace of the policy.
    #[serde(default)]
    pub namespace: String,
    /// Policy name.
    #[serde(default)]
    pub name: String,
    /// Flow ids to acknowledge.
    #[serde(default)]
    pub flow_ids: Vec<String>,
    /// Acknowledge every open flow of the policy (and its overflow).
    #[serde(default)]
    pub all: bool,
    /// Why (required).
    #[serde(default)]
    pub comment: String,
    /// Who, for token users (ignored when an authenticating proxy names the user).
    #[serde(default)]
    pub by: Option<String>,
}

/// Checks a request; returns the target or the field and reason.
pub fn validate(r: &AckRequest) -> Result<AckTarget, String> {
    if r.namespace.trim().is_empty() {
        return Err("namespace: required".into());
    }
    if r.name.trim().is_empty() {
        return Err("name: required".into());
    }
    if r.comment.trim().is_empty() {
        return Err(
            "comment: required (why the flow is acceptable, or what will be done about it)".into(),
        );
    }
    if r.comment.chars().count() > COMMENT_MAX {
        return Err(format!("comment: longer than {COMMENT_MAX} characters"));
    }
    if r.by.as_ref().is_some_and(|b| b.chars().count() > BY_MAX) {
        return Err(format!("by: longer than {BY_MAX} characters"));
    }
    match (r.all, r.flow_ids.is_empty()) {
        (true, true) => Ok(AckTarget::All),
        (true, false) => Err("flowIds: give flow ids or all: true, not both".into()),
        (false, true) => Err("flowIds: required (or all: true)".into()),
        (false, false) => Ok(AckTarget::Flows(r.flow_ids.clone())),
    }
}

/// Who is recorded as `by`: the proxy's user, else the name a token user gave, else "dashboard".
pub fn recorded_by(user: &User, r: &AckRequest) -> String {
    match &user.name {
        Some(n) => n.clone(),
        None => {
            r.by.as_deref()
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map_or_else(
                    || "dashboard".to_string(),
                    |b| format!("{b} (dashboard token)"),
                )
        }
    }
}

/// `POST /api/v1/alerts/acknowledge`.
pub async fn acknowledge(
    State(s): State<Arc<Shared>>,
    axum::Extension(user): axum::Extension<User>,
    body: Result<Json<AckRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {}", e.body_text())),
    };
    let target = match validate(&req) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    if find_policy(&s, &req.namespace, &req.name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "segmentationpolicy {}/{}: not found",
                req.namespace, req.name
            ),
        );
    }
    if let Some(name) = &user.name
        && let Err(r) = may_acknowledge(&s, name, &user.groups, &req.namespace, &req.name).await
    {
        return r;
    }
    let Some(recorder) = s.state.recorder.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "acknowledge: this replica records no monitor data (no recorder)",
        );
    };
    let by = recorded_by(&user, &req);
    let key = PolicyKey {
        namespace: req.namespace.clone(),
        name: req.name.clone(),
    };
    match recorder
        .acknowledge(key, target, by.clone(), req.comment.trim().to_string())
        .await
    {
        Ok(n) => {
            tracing::info!(policy = %format!("{}/{}", req.namespace, req.name), by = %by, acknowledged = n, "Acknowledged alerts");
            Json(serde_json::json!({ "acknowledged": n, "by": by })).into_response()
        }
        Err(e @ (AckError::PolicyNotFound(_) | AckError::UnknownFlows { .. })) => {
            error(StatusCode::NOT_FOUND, format!("flowIds: {e}"))
        }
        Err(e @ AckError::TooLarge { .. }) => error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        Err(e @ AckError::Write(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The verb a proxy-named user needs on `segmentationpolicies` (group `microseg.io`) in the
/// policy's namespace to acknowledge its alerts.
pub const ACKNOWLEDGE_VERB: &str = "acknowledge";

/// Asks the API server (a LocalSubjectAccessReview) whether `user` may acknowledge the alerts
/// of `namespace/name`; the answer is a 403 naming what is missing, or 503 when it cannot ask.
pub(super) async fn may_acknowledge(
    s: &Shared,
    user: &str,
    groups: &[String],
    namespace: &str,
    name: &str,
) -> Result<(), Response> {
    use k8s_openapi::api::authorization::v1::{
        LocalSubjectAccessReview, ResourceAttributes, SubjectAccessReviewSpec,
    };
    let Some(client) = s.state.client.clone() else {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "acknowledge: this replica cannot check a user's permission (no API client)",
        ));
    };
    let review = LocalSubjectAccessReview {
        metadata: kube::api::ObjectMeta {
            namespace: Some(namespace.to_string()),
            ..Default::default()
        },
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_string()),
            groups: (!groups.is_empty()).then(|| groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_string()),
                verb: Some(ACKNOWLEDGE_VERB.into()),
                group: Some(crate::api::GROUP.into()),
                resource: Some("segmentationpolicies".into()),
                name: Some(name.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        status: None,
    };
    let api: kube::Api<LocalSubjectAccessReview> = kube::Api::namespaced(client, namespace);
    match api.create(&kube::api::PostParams::default(), &review).await {
        Ok(r) if r.status.as_ref().is_some_and(|st| st.allowed) => Ok(()),
        Ok(_) => {
            tracing::info!(
                user,
                namespace,
                name,
                "acknowledgement refused: not allowed"
            );
            Err(error(
                StatusCode::FORBIDDEN,
                format!(
                    "namespace: {user} may not acknowledge alerts in {namespace}; an RBAC Role \
                     there must allow verb {ACKNOWLEDGE_VERB:?} on segmentationpolicies.{}",
                    crate::api::GROUP
                ),
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "acknowledge: LocalSubjectAccessReview failed");
            Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "acknowledge: the API server could not be asked whether you may; retry",
            ))
        }
    }
}
