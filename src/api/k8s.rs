//! The Kubernetes types microseg uses, in one place (a facade over k8s-openapi).

pub use k8s_openapi::api::core::v1::ObjectReference;
pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
pub use k8s_openapi::jiff::{SignedDuration, Timestamp};
