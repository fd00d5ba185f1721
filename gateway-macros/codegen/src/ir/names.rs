//! Identifier mangling, shared by the validator (which rejects names that
//! would collide) and the emitter (which writes them): one function per
//! form, so the check and the code can never disagree.

/// `UPPER_SNAKE` constant name for a spec name or route id: ASCII letters
/// and digits upper-cased, anything else `_` (`knowledge-graph` ->
/// `KNOWLEDGE_GRAPH`).
pub fn upper_snake(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// `snake_case` module or field name for a spec name (`rule-editors` ->
/// `rule_editors`).
pub fn snake(name: &str) -> String {
    upper_snake(name).to_ascii_lowercase()
}

/// `CamelCase` type or variant name for a snake_case id
/// (`api_v1_agents_id` -> `ApiV1AgentsId`).
pub fn camel(id: &str) -> String {
    id.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
