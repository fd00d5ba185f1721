//! Unit tests of certificate identities and validity.

use super::*;

static AUTH: ClientAuthSpec = ClientAuthSpec {
    ca_env: "CA",
    required: true,
    identities: &[
        ("spiffe://corp.example/ns/prod/sa/billing", "billing"),
        ("reporting.internal.example", "reporting"),
    ],
};

fn cert(sans: &[rcgen::SanType]) -> CertificateDer<'static> {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans.to_vec();
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().clone()
}

fn id(leaf: &CertificateDer<'_>) -> ClientIdentity {
    identify(&AUTH, leaf, UnixTime::now()).unwrap()
}

#[test]
fn identities_come_from_san_uris_and_dns_names() {
    use rcgen::SanType;
    let uri = |s: &str| SanType::URI(s.try_into().unwrap());
    let dns = |s: &str| SanType::DnsName(s.try_into().unwrap());
    let billing = cert(&[
        dns("ignored.example"),
        uri("spiffe://corp.example/ns/prod/sa/billing"),
    ]);
    assert_eq!(id(&billing), ClientIdentity::Known("billing"));
    let reporting = cert(&[dns("Reporting.Internal.Example")]);
    assert_eq!(id(&reporting), ClientIdentity::Known("reporting"));
    // URIs compare exactly: another trust domain is someone else.
    let other = cert(&[uri("spiffe://evil.example/ns/prod/sa/billing")]);
    assert_eq!(
        id(&other),
        ClientIdentity::Unknown("spiffe://evil.example/ns/prod/sa/billing".into())
    );
    assert_eq!(id(&cert(&[])), ClientIdentity::Unknown("(no SAN)".into()));
}

/// Issue 13 §6: a resumed session carries its certificate past its
/// expiry; the identity is refused outside the validity dates.
#[test]
fn an_identity_needs_a_certificate_valid_now() {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://corp.example/ns/prod/sa/billing"
            .try_into()
            .unwrap(),
    )];
    params.not_before = rcgen::date_time_ymd(2030, 1, 1);
    params.not_after = rcgen::date_time_ymd(2030, 1, 2);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.self_signed(&key).unwrap().der().clone();
    // 2030-01-01T00:00:00Z and 2030-01-02T00:00:00Z.
    let (from, to) = (1_893_456_000, 1_893_542_400);
    let at = |s: u64| {
        identify(
            &AUTH,
            &leaf,
            UnixTime::since_unix_epoch(Duration::from_secs(s)),
        )
    };
    let reason = |s: u64| failure_reason(&at(s).unwrap_err());
    assert_eq!(reason(from - 1), "client_certificate_not_yet_valid");
    assert_eq!(at(from), Ok(ClientIdentity::Known("billing")));
    assert_eq!(at(to), Ok(ClientIdentity::Known("billing")));
    assert_eq!(reason(to + 1), "client_certificate_expired");
}
