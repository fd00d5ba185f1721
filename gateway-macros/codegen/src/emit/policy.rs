//! Policies, each emitted once and referenced by its routes.
//!
//! Routes fall into groups that share every policy-derived setting: the
//! routes of one named policy (`default` included), each route with an
//! inline policy on its own, and the routes with no policy at all. A
//! group's settings are one `RouteSpec` constant that its routes extend
//! (`..policy::DEFAULT_ROUTE`), its CORS and rate limit one constant each,
//! and its chain one type with one builder. A group other than `default`
//! extends `default`'s constants and writes only what it changes, as the
//! spec's own overlay does; so editing a policy changes one place.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::routes::buffers_body;
use super::steps::{chain_items, chain_steps};
use super::{int, ms, opt};
use crate::ir::names::{camel, snake, upper_snake};
use crate::ir::traffic::{CorsIr, RateLimitIr};
use crate::ir::{methods, Checked, RouteIr};
use crate::spec::RateKey;

/// Where a group's settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind<'c> {
    /// A policy under `policies:` (or `default`, for routes naming none).
    Named(&'c str),
    /// One route's inline policy.
    Inline,
    /// No policy at all: the gateway's defaults.
    Plain,
}

/// Routes sharing every policy-derived setting.
pub(super) struct Group<'c> {
    pub kind: Kind<'c>,
    /// The first route of the group: its policy fields are the group's.
    pub rep: &'c RouteIr,
    /// Some route of the group reads its body before proxying.
    pub buffers: bool,
    /// The group whose chain type and builder this group uses: the first
    /// with the same steps.
    chain_owner: usize,
}

/// Every route's group.
pub(super) struct Groups<'c> {
    pub list: Vec<Group<'c>>,
    of_route: Vec<usize>,
}

impl<'c> Groups<'c> {
    pub fn new(c: &'c Checked) -> Self {
        let mut list: Vec<Group<'c>> = Vec::new();
        let mut of_route = Vec::with_capacity(c.routes.len());
        for r in &c.routes {
            let kind = match (&r.policy_name, r.inline_policy) {
                (Some(n), _) => Kind::Named(n),
                (None, true) => Kind::Inline,
                (None, false) => Kind::Plain,
            };
            let found = (kind != Kind::Inline)
                .then(|| list.iter().position(|g| g.kind == kind))
                .flatten();
            let k = found.unwrap_or_else(|| {
                list.push(Group {
                    kind,
                    rep: r,
                    buffers: false,
                    chain_owner: list.len(),
                });
                list.len() - 1
            });
            list[k].buffers |= buffers_body(c, r);
            of_route.push(k);
        }
        let mut groups = Groups { list, of_route };
        let ctors: Vec<String> = (0..groups.list.len())
            .map(|k| {
                let steps = chain_steps(c, groups.list[k].rep, groups.rate_limit(k));
                let (tys, ctors): (Vec<_>, Vec<_>) = steps.into_iter().unzip();
                quote!((#(#tys,)*) (#(#ctors,)*)).to_string()
            })
            .collect();
        for k in 0..groups.list.len() {
            groups.list[k].chain_owner = ctors.iter().position(|x| *x == ctors[k]).unwrap_or(k);
        }
        groups
    }

    /// The rate limit group `k`'s chain uses: `default`'s when equal.
    fn rate_limit(&self, k: usize) -> Option<TokenStream> {
        let g = &self.list[k];
        let own = g.rep.rate_limit.as_ref().map(rate_limit_value)?;
        let base = self.default().filter(|d| d.kind != g.kind);
        match base.and_then(|d| {
            d.rep
                .rate_limit
                .as_ref()
                .map(|rl| (d, rate_limit_value(rl)))
        }) {
            Some((d, base)) if base.to_string() == own.to_string() => Some(d.item("RATE_LIMIT")),
            _ => Some(g.item("RATE_LIMIT")),
        }
    }

    /// Group `k`'s body buffer constant: `default`'s when equal.
    pub fn body_buffer(&self, k: usize) -> TokenStream {
        let g = &self.list[k];
        match self.default().filter(|d| d.kind != g.kind && d.buffers) {
            Some(d) if d.rep.body_limit == g.rep.body_limit => d.item("BODY_BUFFER"),
            _ => g.item("BODY_BUFFER"),
        }
    }

    /// The group of route `k`.
    pub fn of(&self, k: usize) -> &Group<'c> {
        &self.list[self.of_route[k]]
    }

    /// The index of route `k`'s group.
    pub fn index_of(&self, k: usize) -> usize {
        self.of_route[k]
    }

    /// The group whose chain route `k` uses.
    pub fn chain_of(&self, k: usize) -> &Group<'c> {
        &self.list[self.of(k).chain_owner]
    }

    /// The groups that own a chain type, each once.
    pub fn chain_owners(&self) -> impl Iterator<Item = &Group<'c>> {
        self.list
            .iter()
            .enumerate()
            .filter(|(k, g)| g.chain_owner == *k)
            .map(|(_, g)| g)
    }

    /// The chain most routes are expected to share: `default`'s, or,
    /// without a `default` policy, that of the routes with no policy.
    pub fn common_chain(&self) -> Option<&Group<'c>> {
        let g = self
            .default()
            .or_else(|| self.list.iter().find(|g| g.kind == Kind::Plain))?;
        Some(&self.list[g.chain_owner])
    }

    fn default(&self) -> Option<&Group<'c>> {
        self.list.iter().find(|g| g.kind == Kind::Named("default"))
    }
}

impl Group<'_> {
    fn prefix(&self) -> String {
        match self.kind {
            Kind::Named(n) => upper_snake(n),
            Kind::Inline => self.rep.const_name(),
            Kind::Plain => "ROUTE_DEFAULTS".into(),
        }
    }

    fn module(&self) -> TokenStream {
        match self.kind {
            Kind::Named(_) => quote!(policy::),
            Kind::Inline => quote!(route_policy::),
            Kind::Plain => quote!(),
        }
    }

    /// The path of one of the group's constants (`policy::DEFAULT_CORS`).
    pub fn item(&self, what: &str) -> TokenStream {
        let (m, name) = (self.module(), self.item_ident(what));
        quote!(#m #name)
    }

    pub(super) fn item_ident(&self, what: &str) -> Ident {
        match (self.kind, what) {
            (Kind::Plain, "ROUTE") => format_ident!("ROUTE_DEFAULTS"),
            _ => format_ident!("{}_{}", self.prefix(), what),
        }
    }

    /// The `Chains` enum variant holding this group's chains.
    pub fn variant(&self) -> Ident {
        match self.kind {
            Kind::Named(n) => format_ident!("Policy{}", camel(&snake(n))),
            Kind::Inline => format_ident!("Route{}", self.rep.variant()),
            Kind::Plain => format_ident!("Defaults"),
        }
    }

    pub(super) fn chain_names(&self) -> (Ident, Ident) {
        match self.kind {
            Kind::Named(n) => (
                format_ident!("{}Chain", camel(&snake(n))),
                format_ident!("{}_chain", snake(n)),
            ),
            Kind::Inline => (
                format_ident!("{}Chain", self.rep.variant()),
                format_ident!("{}_chain", self.rep.id),
            ),
            Kind::Plain => (
                format_ident!("DefaultsChain"),
                format_ident!("defaults_chain"),
            ),
        }
    }

    /// The path of the group's chain type and of its builder.
    pub fn chain_paths(&self) -> (TokenStream, TokenStream) {
        let (m, (ty, f)) = (self.module(), self.chain_names());
        (quote!(#m #ty), quote!(#m #f))
    }

    /// Every route of the group reads its body first (an inbound v2
    /// signature is the policy's).
    pub fn buffers_all(&self) -> bool {
        self.rep.auth.service.as_ref().is_some_and(|s| s.v2)
    }
}

/// `CorsSpec` literal and its `Access-Control-Allow-Methods` value: the
/// policy's methods, or the route's when the policy lists none.
pub(super) fn cors_value(c: &CorsIr, route_methods: u16) -> (TokenStream, String) {
    let methods = c
        .methods
        .clone()
        .unwrap_or_else(|| methods::names(route_methods).map(str::to_owned).collect())
        .join(", ");
    let origins = &c.origins;
    let (any, credentials, max_age) = (c.any, c.credentials, int(c.max_age_s));
    let (headers, expose) = (c.headers.join(", "), c.expose.join(", "));
    let lit = quote!(rt::CorsSpec {
        origins: &[#(#origins),*],
        any: #any,
        methods: #methods,
        headers: #headers,
        expose: #expose,
        credentials: #credentials,
        max_age: #max_age,
    });
    (lit, methods)
}

/// Two limits that differ in their header name at most.
fn same_but_name(a: &RateLimitIr, b: &RateLimitIr) -> bool {
    (a.count, a.window_s, a.burst, a.key) == (b.count, b.window_s, b.burst, b.key)
}

fn rate_limit_value(rl: &RateLimitIr) -> TokenStream {
    let (name, count, burst) = (&rl.name, int(rl.count.into()), int(rl.burst.into()));
    let window = ms(rl.window_s * 1000);
    let key = match rl.key {
        RateKey::Consumer => quote!(Consumer),
        RateKey::Service => quote!(Service),
        RateKey::Ip => quote!(Ip),
        RateKey::Route => quote!(Route),
    };
    quote!(rt::RateLimitSpec {
        name: #name,
        count: #count,
        window: #window,
        burst: #burst,
        key: rt::RateKeyKind::#key,
    })
}

fn retries_value(r: &RouteIr) -> TokenStream {
    opt(r.retries.as_ref().map(|rt| {
        let (attempts, budget) = (int(rt.attempts.into()), int(rt.budget.into()));
        let (floor, non_idem) = (int(rt.min_per_second.into()), rt.non_idempotent);
        let on = rt.on.iter().map(|s| int((*s).into()));
        let per_try = opt(rt.per_try_ms.map(ms));
        let (backoff, max_backoff) = (ms(rt.backoff_ms), ms(rt.max_backoff_ms));
        quote!(rt::RetrySpec {
            attempts: #attempts,
            on: &[#(#on),*],
            per_try_timeout: #per_try,
            backoff: #backoff,
            max_backoff: #max_backoff,
            budget_percent: #budget,
            min_per_second: #floor,
            non_idempotent: #non_idem,
        })
    }))
}

/// What a group decides, as values: compared with its base's so that
/// only the differences are written.
struct Values {
    fields: Vec<(&'static str, String, TokenStream)>,
    cors: Option<TokenStream>,
}

fn values(g: &Group<'_>) -> Values {
    let r = g.rep;
    let buffer = g.item("BODY_BUFFER");
    let cors_ref = g.item("CORS");
    let cors = r.cors.as_ref().map(|x| cors_value(x, methods::ALL).0);
    let buffer_body = if g.buffers_all() {
        quote!(Some(#buffer))
    } else {
        quote!(None)
    };
    let fields = vec![
        ("timeout", ms(r.timeout_ms)),
        ("body_timeout", ms(r.body_timeout_ms)),
        ("policy", opt(r.policy_name.as_ref().map(|p| quote!(#p)))),
        ("buffer_body", buffer_body),
        ("body_limit", {
            let n = int(r.body_limit.unwrap_or(10 << 20));
            quote!(#n)
        }),
        ("retries", retries_value(r)),
    ];
    let mut fields: Vec<_> = fields
        .into_iter()
        .map(|(k, v)| (k, v.to_string(), v))
        .collect();
    let cors_field = opt(cors.as_ref().map(|_| quote!(&#cors_ref)));
    fields.push((
        "cors",
        cors.as_ref().map(ToString::to_string).unwrap_or_default(),
        cors_field,
    ));
    Values { fields, cors }
}

/// The gateway's defaults for a route, which every group extends.
fn route_defaults(c: &Checked) -> Values {
    let g = &c.gateway;
    let fields = vec![
        ("timeout", ms(g.upstream_ms)),
        ("body_timeout", ms(g.body_ms)),
        ("policy", quote!(None)),
        ("buffer_body", quote!(None)),
        ("body_limit", {
            let n = int(10 << 20);
            quote!(#n)
        }),
        ("retries", quote!(None)),
    ];
    let mut fields: Vec<_> = fields
        .into_iter()
        .map(|(k, v)| (k, v.to_string(), v))
        .collect();
    fields.push(("cors", String::new(), quote!(None)));
    Values { fields, cors: None }
}

/// `ROUTE_DEFAULTS`: what a route gets when no policy says otherwise.
/// The fields each route writes itself are blank here.
pub(super) fn route_defaults_const(c: &Checked) -> TokenStream {
    let fields = route_defaults(c).fields.into_iter().map(|(k, _, v)| {
        let k = format_ident!("{}", k);
        quote!(#k: #v,)
    });
    quote! {
        /// What a route gets when no policy says otherwise; each route
        /// constant fills in its own id, path, service and upstream.
        pub const ROUTE_DEFAULTS: rt::RouteSpec = rt::RouteSpec {
            id: "",
            pattern: "",
            methods: rt::Methods::ANY,
            service: 0,
            upstream: &[],
            rest_segment: None,
            #(#fields)*
            canary: None,
            versions: None,
            index: 0,
        };
    }
}

/// One group's constants, chain type and chain builder: only what differs
/// from its base (`default`'s, or the gateway's defaults).
fn group_items(c: &Checked, groups: &Groups<'_>, k: usize) -> TokenStream {
    let g = &groups.list[k];
    let own = values(g);
    let base_group = groups.default().filter(|d| d.kind != g.kind);
    let base = base_group.map_or_else(|| route_defaults(c), values);
    let base_path = base_group.map_or_else(|| quote!(ROUTE_DEFAULTS), |d| d.item("ROUTE"));
    let what = match g.kind {
        Kind::Named(n) => format!(" Policy `{n}`"),
        Kind::Inline => format!(" The inline policy of route `{}`", g.rep.pattern_text),
        Kind::Plain => " Routes without a policy".into(),
    };
    let mut items = Vec::new();
    let cors_differs =
        own.cors.as_ref().map(ToString::to_string) != base.cors.as_ref().map(ToString::to_string);
    let mut fields = Vec::new();
    for ((key, text, v), (_, base_text, _)) in own.fields.iter().zip(&base.fields) {
        let differs = if *key == "cors" {
            cors_differs
        } else {
            text != base_text
        };
        if differs {
            let key = format_ident!("{}", key);
            fields.push(quote!(#key: #v,));
        }
    }
    if g.kind != Kind::Plain {
        let name = g.item_ident("ROUTE");
        let doc = format!("{what}: the route settings its routes share.");
        items.push(quote! {
            #[doc = #doc]
            pub const #name: rt::RouteSpec = rt::RouteSpec { #(#fields)* ..#base_path };
        });
    }
    if let (Some(cors), true) = (&own.cors, cors_differs) {
        let name = g.item_ident("CORS");
        let doc = format!("{what}: CORS.");
        items.push(quote! { #[doc = #doc] pub const #name: rt::CorsSpec = #cors; });
    }
    let own_path = |what: &str| g.item(what).to_string();
    if let (Some(rl), Some(path)) = (&g.rep.rate_limit, groups.rate_limit(k)) {
        if path.to_string() == own_path("RATE_LIMIT") {
            let name = g.item_ident("RATE_LIMIT");
            // A policy that inherits `default`'s limit still names it after
            // itself: write the name and take the rest from `default`.
            let base = groups.default().filter(|d| d.kind != g.kind);
            let value = match base.and_then(|d| d.rep.rate_limit.as_ref().map(|b| (d, b))) {
                Some((d, b)) if same_but_name(b, rl) => {
                    let (rl_name, base) = (&rl.name, d.item("RATE_LIMIT"));
                    quote!(rt::RateLimitSpec { name: #rl_name, ..#base })
                }
                _ => rate_limit_value(rl),
            };
            let doc = format!("{what}: rate limit.");
            items.push(quote! { #[doc = #doc] pub const #name: rt::RateLimitSpec = #value; });
        }
    }
    if g.buffers && groups.body_buffer(k).to_string() == own_path("BODY_BUFFER") {
        let name = g.item_ident("BODY_BUFFER");
        let n = int(g.rep.body_limit.unwrap_or(1 << 20));
        let doc = format!("{what}: the most body bytes read before proxying (413 beyond).");
        items.push(quote! { #[doc = #doc] pub const #name: usize = #n; });
    }
    if g.chain_owner == k {
        items.push(chain_items(c, g, &what, groups.rate_limit(k)));
    }
    quote!(#(#items)*)
}

/// Every group's items: named policies in `mod policy`, inline ones in
/// `mod route_policy`, the policy-less group beside `ROUTE_DEFAULTS`.
pub(super) fn policies(c: &Checked, groups: &Groups<'_>) -> TokenStream {
    let of = |k: fn(&Kind<'_>) -> bool| {
        let items = groups
            .list
            .iter()
            .enumerate()
            .filter(|(_, g)| k(&g.kind))
            .map(|(i, _)| group_items(c, groups, i));
        quote!(#(#items)*)
    };
    let named = of(|k| matches!(k, Kind::Named(_)));
    let inline = of(|k| *k == Kind::Inline);
    let plain = of(|k| *k == Kind::Plain);
    let defaults = route_defaults_const(c);
    let named = (!named.is_empty()).then(|| {
        quote! {
            /// The named policies, each written once.
            pub mod policy {
                use super::*;
                #named
            }
        }
    });
    let inline = (!inline.is_empty()).then(|| {
        quote! {
            /// Policies written inline on one route.
            pub mod route_policy {
                use super::*;
                #inline
            }
        }
    });
    quote!(#defaults #plain #named #inline)
}
