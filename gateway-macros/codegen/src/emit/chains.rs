//! The chains and the `Spec` impl: one chain per route, typed by its
//! policy group, dispatched with one match arm per group.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::auth;
use super::policy::Groups;
use crate::ir::Checked;

/// `Chain`, `Chains` and their builder: routes push their group's chain in
/// route order, so `by_route[route as usize]` is a route's chain.
pub(super) fn chains(c: &Checked, groups: &Groups<'_>) -> TokenStream {
    let variants = groups.chain_owners().map(|g| {
        let (v, (ty, _)) = (g.variant(), g.chain_paths());
        quote!(#v(#ty))
    });
    let builders = groups.chain_owners().map(|g| {
        let (v, (_, f)) = (g.variant(), g.chain_paths());
        let name = builder_name(g);
        quote! {
            fn #name(v: &Verifiers, env: &rt::StartupEnv) -> Built {
                Ok(Chain::#v(#f(v, env)?))
            }
        }
    });
    // Routes of the `default` policy (or, without one, of no policy) take
    // the catch-all arm; the others are listed.
    let common = groups.common_chain().map(|g| g.variant());
    let mut arms: Vec<TokenStream> = Vec::new();
    for (k, r) in c.routes.iter().enumerate() {
        let g = groups.chain_of(k);
        if Some(g.variant()) != common {
            let (v, name) = (format_ident!("{}", r.variant()), builder_name(g));
            arms.push(quote!(RouteId::#v => Chain::#name));
        }
    }
    if let Some(g) = groups
        .common_chain()
        .filter(|_| arms.len() < c.routes.len())
    {
        let name = builder_name(g);
        arms.push(quote!(_ => Chain::#name));
    }
    let (verifiers_decl, verifiers_init) = auth::verifiers(c);
    let (jwt_used, _) = auth::uses(c);
    let reload_body = if jwt_used {
        quote!(self.verifiers.jwt.reload())
    } else {
        quote!(Ok(()))
    };
    quote! {
        #verifiers_decl

        /// One route's chain, typed by the policy it shares with others.
        pub enum Chain {
            #(#variants,)*
        }

        impl Chain {
            #(#builders)*
        }

        /// A built chain, or why it could not be built.
        type Built = Result<Chain, rt::StartupError>;

        /// Builds one route's chain.
        type BuildChain = fn(&Verifiers, &rt::StartupEnv) -> Built;

        /// Each route's chain builder.
        fn chain_of(route: RouteId) -> BuildChain {
            match route {
                #(#arms,)*
            }
        }

        /// Each route's chain, built once at start-up.
        pub struct Chains {
            by_route: Vec<Chain>,
            verifiers: Verifiers,
        }

        impl Chains {
            /// Builds every chain, loading what the steps need.
            ///
            /// # Errors
            /// A step whose configuration cannot be loaded.
            pub fn build(env: &rt::StartupEnv) -> Result<Self, rt::StartupError> {
                let verifiers = #verifiers_init;
                let by_route = RouteId::ALL
                    .iter()
                    .map(|&route| chain_of(route)(&verifiers, env))
                    .collect::<Result<_, _>>()?;
                Ok(Chains { by_route, verifiers })
            }

            /// Re-reads what may change without a restart (SIGHUP).
            ///
            /// # Errors
            /// A file that cannot be read; the old state stays in force.
            pub fn reload(&self) -> Result<(), rt::StartupError> {
                #reload_body
            }
        }
    }
}

/// `Chain::<group>`: builds one route's chain of that group.
fn builder_name(g: &super::policy::Group<'_>) -> proc_macro2::Ident {
    let mut name = String::new();
    for (i, ch) in g.variant().to_string().chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(ch.to_ascii_lowercase());
    }
    format_ident!("{}", name)
}

/// The `rt::Spec` impl; `table` is the `ROUTE_TABLE` expression.
pub(super) fn spec_impl(c: &Checked, groups: &Groups<'_>, table: TokenStream) -> TokenStream {
    let arms = c.routes.iter().map(|r| {
        let v = format_ident!("{}", r.variant());
        let k = format_ident!("{}", r.const_name());
        quote!(RouteId::#v => &#k)
    });
    let variants: Vec<_> = groups.chain_owners().map(|g| g.variant()).collect();
    quote! {
        /// This spec, for the runtime.
        pub struct Spec;

        impl rt::Spec for Spec {
            type Route = RouteId;
            type Chains = Chains;

            const GATEWAY: &'static rt::GatewaySpec = &GATEWAY;
            const SERVICES: &'static [rt::ServiceSpec] = &SERVICES;
            const PATHS: &'static [(&'static str, &'static [RouteId])] = PATHS;
            const ROUTE_TABLE: &'static str = #table;

            fn route(route: RouteId) -> &'static rt::RouteSpec {
                match route {
                    #(#arms,)*
                }
            }

            fn build_chains(env: &rt::StartupEnv) -> Result<Chains, rt::StartupError> {
                Chains::build(env)
            }

            fn reload(chains: &Chains) -> Result<(), rt::StartupError> {
                chains.reload()
            }

            fn before_body(
                chains: &Chains,
                route: RouteId,
                ctx: &mut rt::RequestCtx,
                req: &rt::RequestParts,
            ) -> rt::Flow {
                match &chains.by_route[route as usize] {
                    #(Chain::#variants(c) => rt::Step::before_body(c, ctx, req),)*
                }
            }

            fn on_request(
                chains: &Chains,
                route: RouteId,
                ctx: &mut rt::RequestCtx,
                req: &mut rt::RequestParts,
            ) -> rt::Flow {
                match &chains.by_route[route as usize] {
                    #(Chain::#variants(c) => rt::Step::on_request(c, ctx, req),)*
                }
            }
        }
    }
}
