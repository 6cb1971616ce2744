//! Path patterns of webhook rules and response taps: `/hooks/notify/{user}`,
//! where `{name}` matches one path segment (percent-decoded). Parsed once at
//! config load, so validation and matching read the same form.

use std::collections::HashMap;

/// A path pattern like `/hooks/notify/{user}`: `{name}` matches one segment.
#[derive(Clone, Debug)]
pub struct PathPattern {
    segments: Vec<Segment>,
}

#[derive(Clone, Debug)]
enum Segment {
    Lit(String),
    Param(String),
}

impl PathPattern {
    pub fn new(path: &str) -> PathPattern {
        let segments = path
            .split('/')
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Lit(s.to_string()),
                },
            )
            .collect();
        PathPattern { segments }
    }

    pub fn params(&self) -> Vec<String> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Param(p) => Some(p.clone()),
                Segment::Lit(_) => None,
            })
            .collect()
    }

    pub fn matches(&self, path: &str) -> Option<HashMap<String, String>> {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut params = HashMap::new();
        for (seg, part) in self.segments.iter().zip(parts) {
            match seg {
                Segment::Lit(l) if l == part => {}
                Segment::Param(name) if !part.is_empty() => {
                    let value = percent_decode(part);
                    params.insert(name.clone(), value);
                }
                _ => return None,
            }
        }
        Some(params)
    }
}

/// `s` with its `%XX` escapes decoded (a path segment's value).
pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
