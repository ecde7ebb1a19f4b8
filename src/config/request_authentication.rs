//! `security.istio.io` `RequestAuthentication` (istio/api
//! `security/v1beta1/request_authentication.proto`, served as v1 and v1beta1): the JWT rules a
//! gateway verifies tokens with, and which of them apply to this gateway.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::{Duration, LabelSelector, PolicyTargetReference};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    #[serde(default)]
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwks_uri: String,
    /// A JWKS document, inline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwks: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_payload_to_header: String,
    #[serde(default)]
    pub forward_original_token: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// How long a `jwksUri` fetch may take (istiod's default: 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    #[serde(default)]
    pub header: String,
    #[serde(default)]
    pub claim: String,
}

/// Whether a security policy applies to this gateway, and if not why (for `validate`'s warning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    Yes,
    /// Neither the root namespace nor the gateway's.
    OtherNamespace,
    /// Its selector asks for labels this gateway does not have.
    SelectorMismatch,
    /// It names Gateway API resources (`targetRef`/`targetRefs`), which an Istio `Gateway`
    /// deployment is not.
    TargetRef,
}

/// istiod's policy scoping for a workload (`PolicyApplier`, `getPolicyMatcher`): a policy in
/// the root namespace (`root`) applies mesh-wide, one in the gateway's namespace applies to
/// it; within either, a selector must be a subset of the gateway's `labels`. Meant for every
/// `security.istio.io` kind (AuthorizationPolicy applies the same rule).
pub fn applies(
    policy_ns: &str,
    selector: Option<&LabelSelector>,
    has_target_ref: bool,
    root: &str,
    gateway_ns: &str,
    labels: &BTreeMap<String, String>,
) -> Applies {
    if has_target_ref {
        return Applies::TargetRef;
    }
    if policy_ns != root && policy_ns != gateway_ns {
        return Applies::OtherNamespace;
    }
    match selector {
        Some(s) if !super::index::labels_subset(&s.match_labels, labels) => Applies::SelectorMismatch,
        _ => Applies::Yes,
    }
}

impl RequestAuthentication {
    pub fn has_target_ref(&self) -> bool {
        self.target_ref.is_some() || !self.target_refs.is_empty()
    }
}
