//! The routes: the `RouteId` enum, one constant per route, and the router
//! paths. A route constant writes only what is its own (path, methods,
//! upstream, canary, versions); everything its policy decides comes from
//! the policy's constant (`..policy::DEFAULT_ROUTE`), so a policy edit
//! changes one place.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::gateway::service_ident;
use super::policy::{cors_value, Groups};
use super::{int, methods_expr, opt};
use crate::ir::pattern::Part;
use crate::ir::traffic::VersionsIr;
use crate::ir::{dates::imf_fixdate, methods, Checked, RouteIr};
use crate::spec::IdentityKind;

pub(super) fn route_enum(c: &Checked) -> TokenStream {
    let variants = c.routes.iter().map(|r| format_ident!("{}", r.variant()));
    let all = c.routes.iter().map(|r| format_ident!("{}", r.variant()));
    quote! {
        /// Every route, named after its path (its constant says the rest).
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub enum RouteId {
            #(#variants,)*
        }

        /// A route's id; a derived `Debug` costs rustc gigabytes on a large spec.
        impl std::fmt::Debug for RouteId {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(<Spec as rt::Spec>::route(*self).id)
            }
        }

        impl RouteId {
            /// All routes in file order.
            pub const ALL: &'static [RouteId] = &[#(RouteId::#all),*];
        }
    }
}

/// Whether the route's body is read before it is proxied: a v2
/// signature covers the body's hash, inbound or outbound.
pub(super) fn buffers_body(c: &Checked, r: &RouteIr) -> bool {
    let inbound_v2 = r.auth.service.as_ref().is_some_and(|s| s.v2);
    let signs_body = |i: usize| c.services[i].identity.kind == IdentityKind::Hmac;
    inbound_v2
        || signs_body(r.service)
        || r.canary.as_ref().is_some_and(|c| signs_body(c.service))
        || r.versions
            .as_ref()
            .is_some_and(|v| v.live.iter().any(|x| signs_body(x.service)))
}

/// One route's constant: its own fields, then its policy's.
pub(super) fn route_const(c: &Checked, r: &RouteIr, groups: &Groups<'_>, k: usize) -> TokenStream {
    let group = groups.of(k);
    let name = format_ident!("{}", r.const_name());
    let variant = format_ident!("{}", r.variant());
    let (id, pattern) = (&r.id, &r.pattern_text);
    let service = service_ident(&c.services[r.service].name);
    let parts = template_parts(&r.template);
    let mut own = Vec::new();
    if r.methods != methods::ALL {
        let m = methods_expr(r.methods);
        own.push(quote!(methods: #m,));
    }
    if let Some(n) = r.rest_segment {
        let n = int(n as u64);
        own.push(quote!(rest_segment: Some(#n),));
    }
    if buffers_body(c, r) && !group.buffers_all() {
        let buffer = groups.body_buffer(groups.index_of(k));
        own.push(quote!(buffer_body: Some(#buffer),));
    }
    if let Some(cors) = &r.cors {
        if cors.methods.is_none() && r.methods != methods::ALL {
            let base = group.item("CORS");
            let methods = cors_value(cors, r.methods).1;
            own.push(quote!(cors: Some(&rt::CorsSpec { methods: #methods, ..#base }),));
        }
    }
    if let Some(canary) = &r.canary {
        let svc = service_ident(&c.services[canary.service].name);
        let (bp, header) = (int(canary.basis_points.into()), &canary.header);
        let (force_canary, force_stable) = (&canary.force_canary, &canary.force_stable);
        own.push(quote!(canary: Some(rt::CanarySpec {
            service: service::#svc,
            basis_points: #bp,
            header: #header,
            force_canary: #force_canary,
            force_stable: #force_stable,
        }),));
    }
    if let Some(v) = &r.versions {
        let v = versions_expr(c, v);
        own.push(quote!(versions: #v,));
    }
    let base = group.item("ROUTE");
    quote! {
        pub const #name: rt::RouteSpec = rt::RouteSpec {
            id: #id,
            pattern: #pattern,
            service: service::#service,
            upstream: &[#(#parts),*],
            #(#own)*
            index: RouteId::#variant as usize,
            ..#base
        };
    }
}

/// Every route's constant, each against its policy group.
pub(super) fn route_consts(c: &Checked, groups: &Groups<'_>) -> TokenStream {
    let consts = c
        .routes
        .iter()
        .enumerate()
        .map(|(k, r)| route_const(c, r, groups, k));
    quote!(#(#consts)*)
}

pub(super) fn template_parts(template: &[Part]) -> Vec<TokenStream> {
    template
        .iter()
        .map(|p| match p {
            Part::Lit(l) => quote!(rt::Part::Lit(#l)),
            Part::Param(i) => {
                let i = int(*i as u64);
                quote!(rt::Part::Param(#i))
            }
            Part::Rest => quote!(rt::Part::Rest),
            Part::Suffix => quote!(rt::Part::Suffix),
        })
        .collect()
}

/// A route's versions, with deprecation header values computed here so
/// the hot path only copies static strings.
fn versions_expr(c: &Checked, v: &VersionsIr) -> TokenStream {
    let vendor = &v.vendor;
    let default = int(v.default as u64);
    let names = v.live.iter().map(|x| &x.name);
    let live = v.live.iter().map(|x| {
        let name = &x.name;
        let svc = service_ident(&c.services[x.service].name);
        let parts = template_parts(&x.template);
        let deprecated = match &x.deprecated {
            Some(d) => {
                let deprecation = format!("@{}", d.since);
                let sunset = opt(d.sunset.map(imf_fixdate).as_ref().map(|s| quote!(#s)));
                let sunset_unix = opt(d.sunset.map(|s| int(s as u64)).map(|s| quote!(#s)));
                let link = opt(d.link.as_ref().map(|l| {
                    let l = format!("<{l}>; rel=\"deprecation\"");
                    quote!(#l)
                }));
                let gone = d.gone_after_sunset;
                quote!(Some(rt::DeprecatedSpec {
                    deprecation: #deprecation,
                    sunset: #sunset,
                    sunset_unix: #sunset_unix,
                    link: #link,
                    gone_after_sunset: #gone,
                }))
            }
            None => quote!(None),
        };
        quote!(rt::VersionSpec {
            name: #name,
            service: service::#svc,
            upstream: &[#(#parts),*],
            deprecated: #deprecated,
        })
    });
    quote!(Some(&rt::VersionSet {
        vendor: #vendor,
        default: #default,
        live: &[#(#live),*],
        names: &[#(#names),*],
    }))
}

pub(super) fn paths_const(c: &Checked) -> TokenStream {
    let entries = c.paths.iter().map(|(p, routes)| {
        let vs = routes
            .iter()
            .map(|&k| format_ident!("{}", c.routes[k].variant()));
        quote!((#p, &[#(RouteId::#vs),*]))
    });
    quote! {
        /// Router paths (parameters renamed by position) and the routes
        /// that share each one.
        pub const PATHS: &[(&str, &[RouteId])] = &[#(#entries),*];
    }
}
