//! XFCC tests on rcgen-made certificates; the expected subjects are what
//! `openssl x509 -noout -subject -nameopt RFC2253` prints for the same certificates.

use rcgen::{BmpString, DistinguishedName, DnType, DnValue, PrintableString};
use ring::digest::{digest, SHA256};
use strait_test_support::tls::{hex, Ca};

use super::value;

/// A certificate's DER with `subject` (in certificate order) and SANs.
fn cert(subject: Vec<(DnType, DnValue)>, dns: &[&str], uris: &[&str]) -> Vec<u8> {
    Ca::new("ca")
        .leaf(dns, uris, |params| {
            params.distinguished_name = DistinguishedName::new();
            for (ty, v) in subject {
                params.distinguished_name.push(ty, v);
            }
        })
        .der
}

fn hash(der: &[u8]) -> String {
    hex(digest(&SHA256, der).as_ref())
}

fn utf8(ty: DnType, v: &str) -> (DnType, DnValue) {
    (ty, DnValue::Utf8String(v.to_string()))
}

#[test]
fn every_element_in_envoys_order() {
    let client = cert(
        vec![
            utf8(DnType::CountryName, "US"),
            utf8(DnType::OrganizationName, "Example"),
            utf8(DnType::OrganizationalUnitName, "eng"),
            utf8(DnType::CommonName, "client"),
        ],
        &["client.example", "c2.example"],
        &["spiffe://td/ns/a/sa/client", "urn:x"],
    );
    assert_eq!(
        value(&client, Some("spiffe://td/ns/gw/sa/gateway")),
        format!(
            "By=spiffe://td/ns/gw/sa/gateway;Hash={};Subject=\"CN=client,OU=eng,O=Example,C=US\";\
             URI=spiffe://td/ns/a/sa/client;URI=urn:x;DNS=client.example;DNS=c2.example",
            hash(&client)
        )
    );
}

#[test]
fn no_by_without_a_local_uri_and_uri_stays_when_empty() {
    let client = cert(vec![utf8(DnType::CommonName, "client")], &[], &[]);
    let expected = format!("Hash={};Subject=\"CN=client\";URI=", hash(&client));
    assert_eq!(value(&client, None), expected);
    let empty = cert(Vec::new(), &[], &[]);
    assert_eq!(value(&empty, None), format!("Hash={};Subject=\"\";URI=", hash(&empty)));
}

#[test]
fn subject_is_escaped_as_rfc2253() {
    let client = cert(
        vec![
            (DnType::CountryName, DnValue::PrintableString(PrintableString::try_from("DE").unwrap())),
            (DnType::LocalityName, DnValue::BmpString(BmpString::try_from("Köln").unwrap())),
            utf8(DnType::OrganizationName, "A, B + \"C\" <d>; e\\f"),
            utf8(DnType::OrganizationalUnitName, "#lead and trail "),
            utf8(DnType::CommonName, "Zoë\t"),
            (
                DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                DnValue::Ia5String("a@b.example".try_into().unwrap()),
            ),
            utf8(DnType::CustomDnType(vec![1, 2, 3, 4]), "abc"),
        ],
        &[],
        &[],
    );
    let subject = "1.2.3.4=#0C03616263,emailAddress=a@b.example,CN=Zo\\C3\\AB\\09,OU=\\#lead and trail\\ ,\
                   O=A\\, B \\+ \\\"C\\\" \\<d\\>\\; e\\\\f,L=K\\C3\\B6ln,C=DE";
    assert_eq!(value(&client, None), format!("Hash={};Subject=\"{subject}\";URI=", hash(&client)));
}

#[test]
fn unreadable_certificate_gets_its_hash_only() {
    assert_eq!(value(b"not a certificate", None), format!("Hash={}", hash(b"not a certificate")));
}
