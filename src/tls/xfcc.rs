//! `x-forwarded-client-cert` for a verified client certificate, as an Istio gateway sets it:
//! Envoy's `forward_client_cert_details: SANITIZE_SET` with `set_current_client_cert_details`
//! `{subject, uri, dns}`, whose elements come in Envoy's order (`By`, `Hash`, `Subject`, `URI`,
//! `DNS`), joined by `;`.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt::Write;

use ring::digest::{digest, SHA256};
use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::asn1_rs::{Any, BmpString, Oid, Tag, ToDer, UniversalString};
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    MS_JURISDICTION_COUNTRY, MS_JURISDICTION_LOCALITY, MS_JURISDICTION_STATE_OR_PROVINCE, OID_DOMAIN_COMPONENT,
    OID_PKCS9_EMAIL_ADDRESS, OID_USERID, OID_X509_BUSINESS_CATEGORY, OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME,
    OID_X509_DESCRIPTION, OID_X509_DN_QUALIFIER, OID_X509_GENERATION_QUALIFIER, OID_X509_GIVEN_NAME, OID_X509_INITIALS,
    OID_X509_LOCALITY_NAME, OID_X509_NAME, OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME,
    OID_X509_POSTAL_ADDRESS, OID_X509_POSTAL_CODE, OID_X509_SERIALNUMBER, OID_X509_STATE_OR_PROVINCE_NAME,
    OID_X509_STREET_ADDRESS, OID_X509_SURNAME, OID_X509_TITLE, OID_X509_UNIQUE_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// The header value for a connection whose client presented `client_chain_leaf_der`, served
/// with a certificate whose first URI SAN is `by` ([`crate::snapshot::ServerTls::uri_san`]). A
/// client certificate x509-parser cannot read still gets its `Hash`.
pub fn value(client_chain_leaf_der: &[u8], by: Option<&str>) -> String {
    let mut elements = Vec::new();
    if let Some(by) = by {
        elements.push(format!("By={by}"));
    }
    elements.push(format!("Hash={}", hex(digest(&SHA256, client_chain_leaf_der).as_ref())));
    if let Ok((_, cert)) = X509Certificate::from_der(client_chain_leaf_der) {
        elements.push(format!("Subject=\"{}\"", rfc2253(cert.subject())));
        let start = elements.len();
        elements.extend(uris(&cert).map(|uri| format!("URI={uri}")));
        // Envoy keeps the key when the certificate has no URI SAN.
        if elements.len() == start {
            elements.push("URI=".to_string());
        }
        elements.extend(sans(&cert).filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(format!("DNS={dns}")),
            _ => None,
        }));
    }
    elements.join(";")
}

/// The certificate's first URI SAN: its SPIFFE ID in a mesh, which Envoy's RBAC
/// `authenticated` principal is matched against.
pub fn first_uri(client_chain_leaf_der: &[u8]) -> Option<Box<str>> {
    let (_, cert) = X509Certificate::from_der(client_chain_leaf_der).ok()?;
    let uri = uris(&cert).next().map(Box::from);
    uri
}

fn sans<'c, 'a>(cert: &'c X509Certificate<'a>) -> impl Iterator<Item = &'c GeneralName<'a>> {
    let names = cert.subject_alternative_name().ok().flatten().map(|ext| ext.value.general_names.as_slice());
    names.unwrap_or_default().iter()
}

fn uris<'c>(cert: &'c X509Certificate<'_>) -> impl Iterator<Item = &'c str> {
    sans(cert).filter_map(|name| match name {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    })
}

/// The attribute types OpenSSL prints by a short name; any other is printed as its dotted OID
/// with its value dumped.
const SHORT_NAMES: [(Oid<'static>, &str); 26] = [
    (OID_X509_COMMON_NAME, "CN"),
    (OID_X509_SURNAME, "SN"),
    (OID_X509_SERIALNUMBER, "serialNumber"),
    (OID_X509_COUNTRY_NAME, "C"),
    (OID_X509_LOCALITY_NAME, "L"),
    (OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
    (OID_X509_STREET_ADDRESS, "street"),
    (OID_X509_ORGANIZATION_NAME, "O"),
    (OID_X509_ORGANIZATIONAL_UNIT, "OU"),
    (OID_X509_TITLE, "title"),
    (OID_X509_DESCRIPTION, "description"),
    (OID_X509_BUSINESS_CATEGORY, "businessCategory"),
    (OID_X509_POSTAL_ADDRESS, "postalAddress"),
    (OID_X509_POSTAL_CODE, "postalCode"),
    (OID_X509_NAME, "name"),
    (OID_X509_GIVEN_NAME, "GN"),
    (OID_X509_INITIALS, "initials"),
    (OID_X509_GENERATION_QUALIFIER, "generationQualifier"),
    (OID_X509_UNIQUE_IDENTIFIER, "x500UniqueIdentifier"),
    (OID_X509_DN_QUALIFIER, "dnQualifier"),
    (OID_USERID, "UID"),
    (OID_DOMAIN_COMPONENT, "DC"),
    (OID_PKCS9_EMAIL_ADDRESS, "emailAddress"),
    (MS_JURISDICTION_LOCALITY, "jurisdictionL"),
    (MS_JURISDICTION_STATE_OR_PROVINCE, "jurisdictionST"),
    (MS_JURISDICTION_COUNTRY, "jurisdictionC"),
];

/// `name` as Envoy prints a subject (`X509_NAME_print_ex` with `XN_FLAG_RFC2253`): attributes
/// last to first, `,` between RDNs and `+` inside one, no spaces.
fn rfc2253(name: &X509Name<'_>) -> String {
    let attributes: Vec<_> =
        name.iter().enumerate().flat_map(|(rdn, set)| set.iter().map(move |attribute| (rdn, attribute))).collect();
    let mut out = String::new();
    let mut previous = None;
    for (rdn, attribute) in attributes.into_iter().rev() {
        match previous {
            Some(p) if p == rdn => out.push('+'),
            Some(_) => out.push(','),
            None => {}
        }
        previous = Some(rdn);
        let value = attribute.attr_value();
        match SHORT_NAMES.iter().find(|(oid, _)| oid == attribute.attr_type()) {
            Some((_, short)) => {
                out.push_str(short);
                out.push('=');
                match text(value) {
                    Some(bytes) => escape(&bytes, &mut out),
                    None => dump(value, &mut out),
                }
            }
            None => {
                out.push_str(&attribute.attr_type().to_id_string());
                out.push('=');
                dump(value, &mut out);
            }
        }
    }
    out
}

/// A string value's bytes as OpenSSL escapes them: UTF8String as it is, the other string types
/// converted to UTF-8 (the single-byte ones read as Latin-1, as OpenSSL does). `None` for a
/// value that is not a string.
fn text<'v>(value: &'v Any<'_>) -> Option<Cow<'v, [u8]>> {
    let converted = match value.tag() {
        Tag::Utf8String => return Some(Cow::Borrowed(value.data)),
        Tag::NumericString | Tag::PrintableString | Tag::T61String | Tag::Ia5String => {
            value.data.iter().map(|&b| char::from(b)).collect()
        }
        Tag::BmpString => BmpString::try_from(value.clone()).ok()?.string(),
        Tag::UniversalString => UniversalString::try_from(value.clone()).ok()?.string(),
        _ => return None,
    };
    Some(Cow::Owned(converted.into_bytes()))
}

/// RFC 2253 escaping with OpenSSL's `ASN1_STRFLGS_RFC2253`: bytes outside printable ASCII as
/// `\XX`, the specials with a backslash.
fn escape(bytes: &[u8], out: &mut String) {
    let last = bytes.len().saturating_sub(1);
    for (i, &b) in bytes.iter().enumerate() {
        let special = matches!(b, b'\\' | b'"' | b',' | b'+' | b'<' | b'>' | b';')
            || (i == 0 && matches!(b, b' ' | b'#'))
            || (i == last && b == b' ');
        if !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\{b:02X}");
        } else {
            if special {
                out.push('\\');
            }
            out.push(char::from(b));
        }
    }
}

/// `#` and the value's DER in hex, as RFC 2253 writes a value it cannot show as a string.
fn dump(value: &Any<'_>, out: &mut String) {
    out.push('#');
    out.push_str(&hex(&value.to_der_vec().unwrap_or_default()).to_ascii_uppercase());
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
