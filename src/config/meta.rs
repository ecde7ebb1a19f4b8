//! Kubernetes object metadata and the small value types shared by every Istio kind.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `serde(skip_serializing_if)` helper: proto3 bools are omitted when false.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

/// Kubernetes `metadata`. Only `name`, `namespace`, `labels` and `annotations` mean anything
/// to Strait; the fields `kubectl get -o yaml` adds are accepted (so its output loads) and
/// kept opaque.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The loader sets this to `default` when the document leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_name: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_grace_period_seconds: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_fields: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_references: Option<serde_yaml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finalizers: Option<serde_yaml::Value>,
}

/// `istio.type.v1beta1.WorkloadSelector` (used by DestinationRule; ServiceEntry has its own
/// `workloadSelector` with a `labels` field instead).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// Istio's `Percent`: a fraction in `[0, 100]` (checked by validation, not here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Percent {
    #[serde(default)]
    pub value: f64,
}

/// A `google.protobuf.Duration` as Istio YAML writes it: Go duration syntax (`"1s"`, `"0.5s"`,
/// `"100ms"`, `"1m30s"`, `"2.5us"`). Serializes back to a canonical string (`"1m30s"`,
/// `"1.5s"`, `"100ms"`), which parses to the same value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

/// Why a duration string was refused; `Display` gives the whole message, input included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for DurationError {}

impl FromStr for Duration {
    type Err = DurationError;

    /// Go's `time.ParseDuration` grammar (what Kubernetes clients accept for Istio durations),
    /// less negative values, which no Istio duration field allows.
    fn from_str(input: &str) -> Result<Self, DurationError> {
        let err = |reason| DurationError { input: input.to_owned(), reason };
        let mut s = input.strip_prefix('+').unwrap_or(input);
        if s.starts_with('-') {
            return Err(err("negative durations are not allowed"));
        }
        if s == "0" {
            return Ok(Duration(std::time::Duration::ZERO));
        }
        if s.is_empty() {
            return Err(err("empty duration"));
        }
        let mut total: u128 = 0;
        while !s.is_empty() {
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_part, rest) = s.split_at(int_len);
            let (frac_part, rest) = match rest.strip_prefix('.') {
                Some(r) => r.split_at(r.bytes().take_while(u8::is_ascii_digit).count()),
                None => ("", rest),
            };
            if int_part.is_empty() && frac_part.is_empty() {
                return Err(err("expected a number"));
            }
            let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit() && *b != b'.').count();
            let (unit, rest) = rest.split_at(unit_len);
            let unit_nanos: u128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "" => return Err(err("missing unit (one of ns, us, ms, s, m, h)")),
                _ => return Err(err("unknown unit (expected one of ns, us, ms, s, m, h)")),
            };
            // u128 arithmetic: 39 digits of headroom before the u64-seconds range check below.
            let too_big = || err("duration out of range");
            let int: u128 = if int_part.is_empty() { 0 } else { int_part.parse().map_err(|_| too_big())? };
            let mut nanos = int.checked_mul(unit_nanos).ok_or_else(too_big)?;
            // Fractions beyond nanosecond precision are truncated, as Go does.
            let mut scale = unit_nanos;
            for d in frac_part.bytes() {
                scale /= 10;
                if scale == 0 {
                    break;
                }
                nanos += u128::from(d - b'0') * scale;
            }
            total = total.checked_add(nanos).ok_or_else(too_big)?;
            s = rest;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| err("duration out of range"))?;
        Ok(Duration(std::time::Duration::new(secs, (total % 1_000_000_000) as u32)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// `value / unit` as a decimal with trailing zeros trimmed: (1_500, 1_000) → "1.5".
        fn decimal(value: u128, unit: u128) -> String {
            let (int, frac) = (value / unit, value % unit);
            if frac == 0 {
                return int.to_string();
            }
            let width = unit.ilog10() as usize;
            let digits = format!("{frac:0width$}");
            format!("{int}.{}", digits.trim_end_matches('0'))
        }
        let n = self.0.as_nanos();
        const S: u128 = 1_000_000_000;
        if n == 0 {
            return f.write_str("0s");
        }
        if n < 1_000 {
            return write!(f, "{n}ns");
        }
        if n < 1_000_000 {
            return write!(f, "{}us", decimal(n, 1_000));
        }
        if n < S {
            return write!(f, "{}ms", decimal(n, 1_000_000));
        }
        let (h, m, rest) = (n / (3600 * S), n / (60 * S) % 60, n % (60 * S));
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if rest > 0 {
            write!(f, "{}s", decimal(rest, S))?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"1.5s\" or \"100ms\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Declares a proto enum that YAML spells as its SCREAMING_CASE name. Hand-rolled instead of
/// `#[derive(Deserialize)]` because a derived enum read through `serde_yaml::Value` reports a
/// wrong-typed value as "expected a Value::Tagged enum"; this one says which names are allowed.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every accepted spelling, in proto order.
            pub const VALUES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of {}", $name::VALUES.join(", "))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        match v {
                            $( $text => Ok($name::$variant), )+
                            _ => Err(E::unknown_variant(v, $name::VALUES)),
                        }
                    }
                }
                deserializer.deserialize_str(Visitor)
            }
        }
    };
}
pub(crate) use string_enum;

/// `istio.type.v1beta1.PolicyTargetReference`: the Gateway API resource a policy attaches to
/// (`targetRef`/`targetRefs` of AuthorizationPolicy, RequestAuthentication and EnvoyFilter).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}
