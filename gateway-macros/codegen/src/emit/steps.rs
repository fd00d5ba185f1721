//! A policy group's chain: its steps in contract order, as one tuple type
//! and one builder.

use proc_macro2::TokenStream;
use quote::quote;

use super::policy::Group;
use super::{auth, opt};
use crate::ir::{Checked, RouteIr};
use crate::spec::{Credential, RateKey};

fn credentials_mask(r: &RouteIr) -> TokenStream {
    let bits: Vec<TokenStream> = r
        .forward
        .iter()
        .map(|c| match c {
            Credential::Authorization => quote!(rt::credentials::AUTHORIZATION_HEADER),
            Credential::ServiceToken => quote!(rt::credentials::SERVICE_TOKEN),
            Credential::AuthCookie => quote!(rt::credentials::AUTH_COOKIE),
        })
        .collect();
    if bits.is_empty() {
        quote!(rt::credentials::NONE)
    } else {
        quote!(#(#bits)|*)
    }
}

/// A group's chain as (type, constructor) pairs: its steps in contract
/// order, credentials stripped last because the auth steps before it read
/// them.
pub(super) fn chain_steps(
    c: &Checked,
    r: &RouteIr,
    rate_limit: Option<TokenStream>,
) -> Vec<(TokenStream, TokenStream)> {
    let mut steps = auth::steps(r);
    if let (Some(rl), Some(spec)) = (&r.rate_limit, rate_limit) {
        let step = (quote!(rt::RateLimit), quote!(rt::RateLimit::new(#spec)));
        // A limit keyed on the caller needs the caller verified first
        // (contract §2); others protect the verifiers from floods.
        if matches!(rl.key, RateKey::Consumer | RateKey::Service) {
            let roles_at = steps
                .iter()
                .position(|(t, _)| t.to_string().contains("RequireRoles"));
            steps.insert(roles_at.unwrap_or(steps.len()), step);
        } else {
            steps.insert(0, step);
        }
    }
    let mask = credentials_mask(r);
    let cookie = opt(c
        .gateway
        .jwt
        .as_ref()
        .and_then(|j| j.cookie.as_ref())
        .map(|name| quote!(#name)));
    steps.push((
        quote!(rt::StripCredentials<{ #mask }>),
        quote!(rt::StripCredentials::new(#cookie)),
    ));
    steps
}

pub(super) fn chain_items(
    c: &Checked,
    g: &Group<'_>,
    what: &str,
    rl: Option<TokenStream>,
) -> TokenStream {
    let (ty, f) = g.chain_names();
    let (tys, ctors): (Vec<_>, Vec<_>) = chain_steps(c, g.rep, rl).into_iter().unzip();
    let (ty_doc, f_doc) = (
        format!("{what}: its steps, in contract order."),
        format!("{what}: builds one route's chain."),
    );
    quote! {
        #[doc = #ty_doc]
        pub type #ty = (#(#tys,)*);
        #[doc = #f_doc]
        pub fn #f(v: &Verifiers, env: &rt::StartupEnv) -> Result<#ty, rt::StartupError> {
            Ok((#(#ctors,)*))
        }
    }
}
