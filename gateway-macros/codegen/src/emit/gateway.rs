//! The `gateway:` section and the services, as constants.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use super::{doc, int, ms};
use crate::ir::auth::TlsIr;
use crate::ir::{BreakerIr, Checked};
use crate::spec::IdentityKind;

pub(super) fn gateway_const(c: &Checked) -> TokenStream {
    let g = &c.gateway;
    let (name, listen) = (&g.name, &g.listen);
    let proxies = &g.trusted_proxies;
    let (connect, upstream, drain, header) = (
        ms(g.connect_ms),
        ms(g.upstream_ms),
        ms(g.drain_ms),
        ms(g.header_read_ms),
    );
    let (max_head, max_headers) = (int(g.limits.max_head), int(g.limits.max_headers.into()));
    let body = ms(g.body_ms);
    let (rate, buffer, per_client) = (
        int(g.limits.min_body_rate),
        int(g.limits.body_buffer),
        int(g.limits.body_buffer_per_client),
    );
    let (tls_ref, tls_const) = match &g.tls {
        Some(t) => (quote!(Some(&TLS)), tls_const(t)),
        None => (quote!(None), quote!()),
    };
    quote! {
        /// The `gateway:` section.
        pub const GATEWAY: rt::GatewaySpec = rt::GatewaySpec {
            name: #name,
            listen: #listen,
            trusted_proxies: &[#(#proxies),*],
            connect_timeout: #connect,
            upstream_timeout: #upstream,
            drain_timeout: #drain,
            header_read_timeout: #header,
            body_timeout: #body,
            limits: rt::LimitsSpec {
                max_head: #max_head,
                max_headers: #max_headers,
                min_body_rate: #rate,
                body_buffer: #buffer,
                body_buffer_per_client: #per_client,
            },
            tls: #tls_ref,
        };
        #tls_const
    }
}

fn tls_const(t: &TlsIr) -> TokenStream {
    let (cert, key) = (&t.cert_env, &t.key_env);
    let client = match &t.client_auth {
        Some(c) => {
            let ca = &c.ca_env;
            let required = c.required;
            let ids = c
                .identities
                .iter()
                .map(|(id, caller)| quote!((#id, #caller)));
            quote!(Some(rt::ClientAuthSpec { ca_env: #ca, required: #required, identities: &[#(#ids),*] }))
        }
        None => quote!(None),
    };
    quote! {
        /// `gateway.tls`: TLS termination.
        pub const TLS: rt::TlsSpec = rt::TlsSpec {
            cert_env: #cert,
            key_env: #key,
            client_auth: #client,
        };
    }
}

pub(super) fn service_ident(name: &str) -> Ident {
    Ident::new(&crate::ir::names::upper_snake(name), Span::call_site())
}

fn breaker_value(b: &BreakerIr) -> TokenStream {
    let (failures, probes, open) = (int(b.failures.into()), int(b.probes.into()), ms(b.open_ms));
    let rate = match &b.rate {
        Some(r) => {
            let (percent, min, window) = (
                int(r.percent.into()),
                int(r.min_requests.into()),
                ms(r.window_ms),
            );
            quote!(Some(rt::FailureRate { percent: #percent, window: #window, min_requests: #min }))
        }
        None => quote!(None),
    };
    quote!(rt::BreakerSpec { failures: #failures, open_for: #open, probes: #probes, rate: #rate })
}

pub(super) fn services_const(c: &Checked) -> TokenStream {
    let n = int(c.services.len() as u64);
    let items = c.services.iter().map(|s| {
        let (name, env, url) = (&s.name, &s.env, &s.default_url);
        let secret = s.identity.secret_env.as_deref().unwrap_or("");
        let identity = match s.identity.kind {
            IdentityKind::Hmac => quote!(rt::OutboundIdentity::Hmac { secret_env: #secret }),
            IdentityKind::HmacV1 => quote!(rt::OutboundIdentity::HmacV1 { secret_env: #secret }),
            IdentityKind::Jwt => {
                let ttl = ms(s.identity.ttl_s * 1000);
                quote!(rt::OutboundIdentity::Jwt { secret_env: #secret, ttl: #ttl })
            }
            IdentityKind::None => quote!(rt::OutboundIdentity::Unsigned),
        };
        let plaintext = s.allow_plaintext;
        let breaker = match &s.breaker {
            Some(b) if *b == BreakerIr::DEFAULT => quote!(Some(BREAKER_DEFAULTS)),
            Some(b) => {
                let b = breaker_value(b);
                quote!(Some(#b))
            }
            None => quote!(None),
        };
        let connect = match s.connect_ms {
            Some(n) => {
                let d = ms(n);
                quote!(Some(#d))
            }
            None => quote!(None),
        };
        let ca = match &s.tls_ca_env {
            Some(e) => quote!(Some(#e)),
            None => quote!(None),
        };
        let client_cert = match &s.tls_client_cert {
            Some(c) => {
                let (cert, key) = (&c.cert_env, &c.key_env);
                quote!(Some(rt::ClientCertSpec { cert_env: #cert, key_env: #key }))
            }
            None => quote!(None),
        };
        let client_headers = &s.allow_client_headers;
        quote! {
            rt::ServiceSpec {
                name: #name,
                url_env: #env,
                default_url: #url,
                identity: #identity,
                allow_plaintext: #plaintext,
                breaker: #breaker,
                tls_ca_env: #ca,
                tls_client_cert: #client_cert,
                connect_timeout: #connect,
                allow_client_headers: &[#(#client_headers),*],
            }
        }
    });
    let idx = c.services.iter().enumerate().map(|(i, s)| {
        let id = service_ident(&s.name);
        let doc = doc(format!(
            "Index of `{}` in [`SERVICES`](super::SERVICES).",
            s.name
        ));
        let i = int(i as u64);
        quote! { #[doc = #doc] pub const #id: usize = #i; }
    });
    let defaults = c
        .services
        .iter()
        .any(|s| s.breaker == Some(BreakerIr::DEFAULT))
        .then(|| {
            let b = breaker_value(&BreakerIr::DEFAULT);
            quote! {
                /// The breaker of a service that configures none.
                pub const BREAKER_DEFAULTS: rt::BreakerSpec = #b;
            }
        });
    quote! {
        #defaults

        /// Upstream services, in name order.
        pub const SERVICES: [rt::ServiceSpec; #n] = [#(#items),*];

        /// Service indexes by name.
        pub mod service {
            #(#idx)*
        }
    }
}
