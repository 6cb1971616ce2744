//! `${NAME}` environment interpolation. It runs on the parsed YAML tree, inside
//! string scalars only, never on the raw text: a value holding `: `, `#`, quotes or a
//! leading `*` therefore cannot change the document's structure, comments are never
//! expanded, and line numbers stay those of the file. `${NAME:-default}` uses the
//! default when NAME is unset or empty; `$${` is a literal `${`. Each substitution is
//! recorded so that later error messages can hide the value it produced.

use super::locate::KeyPath;
use serde_yaml::Value;

/// A scalar whose text changed through interpolation.
#[derive(Clone, Debug)]
pub(crate) struct Substitution {
    pub key: KeyPath,
    /// The scalar as written in the file (`${SECRET}`).
    pub template: String,
    /// What it became; must never be shown.
    pub value: String,
}

/// A problem with one `${...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    Unset { var: String },
    Malformed { message: String },
}

/// Environment lookup; `None` when the variable is unset.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands every string scalar under `value` (mapping values and sequence items; keys
/// are left alone). Returns the substitutions made and the problems found, each with
/// the key path of its scalar.
pub(crate) fn interpolate(
    value: &mut Value,
    env: Env<'_>,
) -> (Vec<Substitution>, Vec<(KeyPath, Problem)>) {
    let mut subs = Vec::new();
    let mut problems = Vec::new();
    walk(value, &KeyPath::root(), env, &mut subs, &mut problems);
    (subs, problems)
}

fn walk(
    value: &mut Value,
    key: &KeyPath,
    env: Env<'_>,
    subs: &mut Vec<Substitution>,
    problems: &mut Vec<(KeyPath, Problem)>,
) {
    match value {
        Value::String(text) => match expand(text, env) {
            Ok(Some(expanded)) => {
                let template = std::mem::replace(text, expanded.clone());
                // Only `${...}` makes a value worth hiding; `$${` alone is file text.
                if template.replace("$${", "").contains("${") {
                    subs.push(Substitution {
                        key: key.clone(),
                        template,
                        value: expanded,
                    });
                }
            }
            Ok(None) => {}
            Err(found) => problems.extend(found.into_iter().map(|p| (key.clone(), p))),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &key.index(i), env, subs, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let child = match k {
                    Value::String(name) => key.key(name),
                    _ => key.key("?"),
                };
                walk(v, &child, env, subs, problems);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, key, env, subs, problems),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Expands one string. `Ok(None)` when it holds nothing to expand.
pub(crate) fn expand(input: &str, env: Env<'_>) -> Result<Option<String>, Vec<Problem>> {
    if !input.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(input.len());
    let mut problems = Vec::new();
    let mut changed = false;
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            changed = true;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let Some(end) = body_and_tail.find('}') else {
                problems.push(Problem::Malformed {
                    message: "unterminated `${` (write `$${` for a literal `${`)".to_owned(),
                });
                rest = "";
                break;
            };
            let body = &body_and_tail[..end];
            rest = &body_and_tail[end + 1..];
            changed = true;
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if !is_var_name(name) {
                problems.push(Problem::Malformed {
                    message: format!(
                        "invalid variable name {name:?} in `${{...}}`: use letters, digits and `_` \
                         (write `$${{` for a literal `${{`)"
                    ),
                });
                continue;
            }
            match (env(name), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => problems.push(Problem::Unset {
                    var: name.to_owned(),
                }),
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(changed.then_some(out))
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Hides a substituted value in an error message about `key`, showing the template
/// it came from instead. Falls back to a generic message if the value still shows.
pub(crate) fn redact(message: String, key: &KeyPath, subs: &[Substitution]) -> String {
    let Some(sub) = subs.iter().find(|s| &s.key == key) else {
        return message;
    };
    if sub.value.is_empty() {
        return message;
    }
    let mut message = message
        .replace(&format!("{:?}", sub.value), &format!("{:?}", sub.template))
        .replace(&format!("`{}`", sub.value), &format!("`{}`", sub.template));
    if sub.value.len() >= 3 && message.contains(&sub.value) {
        message = format!(
            "invalid value from `{}` (value not shown)",
            sub.template.replace('`', "'")
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            "TRICKY" => Some("a: b # c \"d\" *e".into()),
            _ => None,
        }
    }

    fn ex(s: &str) -> Result<Option<String>, Vec<Problem>> {
        expand(s, &env)
    }

    #[test]
    fn expands_variables_and_defaults() {
        assert_eq!(ex("plain"), Ok(None));
        assert_eq!(ex("${HOST}"), Ok(Some("example.com".into())));
        assert_eq!(
            ex("https://${HOST}:8443/x"),
            Ok(Some("https://example.com:8443/x".into()))
        );
        assert_eq!(ex("${NOPE:-fallback}"), Ok(Some("fallback".into())));
        assert_eq!(ex("${NOPE:-}"), Ok(Some(String::new())));
        assert_eq!(ex("${EMPTY:-d}"), Ok(Some("d".into())));
        assert_eq!(ex("${EMPTY}"), Ok(Some(String::new())));
        assert_eq!(ex("${HOST:-d}"), Ok(Some("example.com".into())));
        assert_eq!(ex("${NOPE:-a:b-c}"), Ok(Some("a:b-c".into())));
    }

    #[test]
    fn dollar_escapes_and_lone_dollars() {
        assert_eq!(ex("$${HOST}"), Ok(Some("${HOST}".into())));
        assert_eq!(ex("cost $5 and $$"), Ok(None));
        assert_eq!(ex("a$"), Ok(None));
    }

    #[test]
    fn reports_unset_and_malformed() {
        assert_eq!(
            ex("${A}-${HOST}-${B}"),
            Err(vec![
                Problem::Unset { var: "A".into() },
                Problem::Unset { var: "B".into() }
            ])
        );
        assert!(matches!(
            ex("${HOST").unwrap_err()[0],
            Problem::Malformed { .. }
        ));
        assert!(matches!(
            ex("${1X}").unwrap_err()[0],
            Problem::Malformed { .. }
        ));
        assert!(matches!(
            ex("${}").unwrap_err()[0],
            Problem::Malformed { .. }
        ));
    }

    #[test]
    fn yaml_special_values_stay_one_scalar() {
        let mut doc: Value =
            serde_yaml::from_str("a:\n  b: ${TRICKY}\n  c: [\"${HOST}\", x]\n").unwrap();
        let (subs, problems) = interpolate(&mut doc, &env);
        assert!(problems.is_empty());
        assert_eq!(subs.len(), 2);
        assert_eq!(doc["a"]["b"].as_str(), Some("a: b # c \"d\" *e"));
        assert_eq!(doc["a"]["c"][0].as_str(), Some("example.com"));
        assert_eq!(subs[1].key.to_string(), "a.c[0]");
    }

    #[test]
    fn comments_are_not_expanded() {
        let mut doc: Value = serde_yaml::from_str("a: 1 # ${UNSET}\n").unwrap();
        let (_, problems) = interpolate(&mut doc, &env);
        assert!(problems.is_empty());
    }

    #[test]
    fn redacts_substituted_values() {
        let key = KeyPath::root().key("x");
        let subs = vec![Substitution {
            key: key.clone(),
            template: "${S}".into(),
            value: "hunter2".into(),
        }];
        let msg = redact(
            "unknown variant `hunter2`, expected one".into(),
            &key,
            &subs,
        );
        assert_eq!(msg, "unknown variant `${S}`, expected one");
        let msg = redact("bad hunter2 here".into(), &key, &subs);
        assert!(!msg.contains("hunter2"));
        let other = KeyPath::root().key("y");
        assert_eq!(redact("m".into(), &other, &subs), "m");
    }
}
