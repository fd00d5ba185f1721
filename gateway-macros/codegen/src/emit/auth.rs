//! Generated items of the identity layer: the `JWT` and `SERVICE_AUTH`
//! constants, and each route's authentication steps.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ir::auth::{JwtIr, ServiceAuthIr};
use crate::ir::{Checked, RouteIr};

fn opt_str(v: &Option<String>) -> TokenStream {
    match v {
        Some(s) => quote!(Some(#s)),
        None => quote!(None),
    }
}

/// `pub const JWT` and `pub const SERVICE_AUTH`, when configured.
pub fn consts(c: &Checked) -> TokenStream {
    let jwt = c.gateway.jwt.as_ref().map(jwt_const);
    let sa = c.gateway.service_auth.as_ref().map(service_auth_const);
    let jwt_spec = if c.gateway.jwt.is_some() {
        quote!(Some(&JWT))
    } else {
        quote!(None)
    };
    quote! {
        #jwt
        #sa
        /// The JWT settings, if any (for tools such as `gateway token`).
        pub const JWT_SPEC: Option<&rt::JwtSpec> = #jwt_spec;
    }
}

fn jwt_const(j: &JwtIr) -> TokenStream {
    let algs = j.algorithms.iter().map(|a| format_ident!("{}", a));
    let (secret, pem, jwks) = (
        opt_str(&j.secret_env),
        opt_str(&j.public_key_env),
        opt_str(&j.jwks_env),
    );
    let (iss, aud, cookie) = (opt_str(&j.issuer), opt_str(&j.audience), opt_str(&j.cookie));
    let (sub, roles, tenant) = (&j.subject_claim, &j.roles_claim, opt_str(&j.tenant_claim));
    let revocation = opt_str(&j.revocation_file);
    let leeway = super::int(j.leeway_s);
    quote! {
        /// `gateway.jwt`: how user tokens are verified.
        pub const JWT: rt::JwtSpec = rt::JwtSpec {
            algorithms: &[#(rt::JwtAlgorithm::#algs),*],
            secret_env: #secret,
            public_key_env: #pem,
            jwks_env: #jwks,
            issuer: #iss,
            audience: #aud,
            leeway: rt::Duration::from_secs(#leeway),
            cookie: #cookie,
            subject_claim: #sub,
            roles_claim: #roles,
            tenant_claim: #tenant,
            revocation_file: #revocation,
        };
    }
}

fn service_auth_const(s: &ServiceAuthIr) -> TokenStream {
    let window = super::int(s.window_s);
    let callers = s.callers.iter().map(|(n, e)| quote!((#n, #e)));
    let shared = opt_str(&s.shared_secret_env);
    let cache = super::int(s.nonce_cache);
    quote! {
        /// `gateway.service_auth`: HMAC service signing.
        pub const SERVICE_AUTH: rt::ServiceAuthSpec = rt::ServiceAuthSpec {
            window: rt::Duration::from_secs(#window),
            callers: &[#(#callers),*],
            shared_secret_env: #shared,
            nonce_cache: #cache,
        };
    }
}

/// Whether any route needs the JWT verifier / the HMAC verifier.
pub fn uses(c: &Checked) -> (bool, bool) {
    let jwt = c.routes.iter().any(|r| r.auth.jwt);
    let hmac = c.routes.iter().any(|r| r.auth.service.is_some());
    (jwt, hmac)
}

/// `Verifiers`, shared by every route's chain, and the expression that
/// builds them. A configured verifier is built even when no route uses it
/// yet, so a broken key or a missing secret stops start-up rather than
/// waiting for the first route that needs it.
pub fn verifiers(c: &Checked) -> (TokenStream, TokenStream) {
    let mut fields = Vec::new();
    let mut inits = Vec::new();
    if c.gateway.jwt.is_some() {
        fields.push(quote!(jwt: rt::Arc<rt::JwtVerifier>,));
        inits.push(quote!(jwt: rt::JwtVerifier::shared(&JWT, env)?,));
    }
    if c.gateway.service_auth.is_some() {
        fields.push(quote!(hmac: rt::Arc<rt::HmacVerifier>,));
        inits.push(quote!(hmac: rt::HmacVerifier::shared(&SERVICE_AUTH, env)?,));
    }
    let decl = quote! {
        /// The verifiers every chain shares, built once at start-up.
        pub struct Verifiers {
            #(#fields)*
        }
    };
    (decl, quote!(Verifiers { #(#inits)* }))
}

/// The authentication steps of one route, as (type, constructor) pairs in
/// contract order: service token, HMAC, JWT, roles.
pub fn steps(r: &RouteIr) -> Vec<(TokenStream, TokenStream)> {
    let mut out = Vec::new();
    if let Some(env) = &r.auth.service_token_env {
        out.push((
            quote!(rt::ServiceTokenAuth),
            quote!(rt::ServiceTokenAuth::from_env(#env, env)?),
        ));
    }
    if let Some(s) = &r.auth.service {
        let callers = &s.callers;
        let mut versions = Vec::new();
        if s.v1 {
            versions.push(quote!(rt::HmacVersions::V1));
        }
        if s.v2 {
            versions.push(quote!(rt::HmacVersions::V2));
        }
        let shared = s.shared_secret;
        let versions = if versions.is_empty() {
            quote!(rt::HmacVersions(0))
        } else {
            quote!(rt::HmacVersions(#(#versions.0)|*))
        };
        let mtls = s.mtls.then(|| quote!(.admit_mtls()));
        out.push((
            quote!(rt::HmacAuth),
            quote!(rt::HmacAuth::new(&v.hmac, &[#(#callers),*], #versions, #shared)#mtls),
        ));
    }
    if r.auth.jwt {
        out.push((quote!(rt::JwtAuth), quote!(rt::JwtAuth::new(&v.jwt))));
        if !r.auth.roles.is_empty() {
            let roles = &r.auth.roles;
            out.push((
                quote!(rt::RequireRoles),
                quote!(rt::RequireRoles(&[#(#roles),*])),
            ));
        }
    }
    out
}
