//! Key paths (`channels[2].subscribe`) and finding their line in the YAML text.
//!
//! Rather than re-implementing YAML indentation rules, the locator replays the text
//! through the real YAML parser with a visitor that walks the key path and stops with
//! an error at the target: the parser stamps that error with the position of the node
//! it was reading. So block mappings, `- ` sequences, flow mappings on one line,
//! anchors and multi-line scalars are all located exactly as the parser sees them.
//! When the key is absent (a default, or a missing required key) the nearest
//! ancestor that is present is reported instead.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One step in a key path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path into the document; empty is the document root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct KeyPath(pub(crate) Vec<Seg>);

impl KeyPath {
    pub(crate) fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a mapping key.
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    /// This path extended by a sequence index.
    pub(crate) fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    /// The last mapping key of the path, if the path ends in one.
    pub(crate) fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        })
    }

    pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut segs = Vec::new();
        for segment in path.iter() {
            match segment {
                Segment::Seq { index } => segs.push(Seg::Index(*index)),
                Segment::Map { key } => segs.push(Seg::Key(key.clone())),
                Segment::Enum { .. } => {}
                Segment::Unknown => break,
            }
        }
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

const FOUND: &str = "\u{1}pushgate-locate-found";
const MISSING: &str = "\u{1}pushgate-locate-missing";

/// The 1-based line of `path` in `text`, or of its nearest present ancestor.
pub(crate) fn line_of(text: &str, path: &KeyPath) -> usize {
    for len in (0..=path.0.len()).rev() {
        if let Some(line) = probe(text, &path.0[..len]) {
            return line;
        }
    }
    1
}

/// Where the parser stands when the walk reaches `segs`, or `None` if absent.
fn probe(text: &str, segs: &[Seg]) -> Option<usize> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    match (Walk { rest: segs }).deserialize(deserializer) {
        Ok(()) => None,
        Err(error) => {
            if error.to_string().contains(MISSING) {
                None
            } else {
                error.location().map(|l| l.line())
            }
        }
    }
}

/// Follows the remaining segments; errors with `FOUND` once they are used up.
struct Walk<'a> {
    rest: &'a [Seg],
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(key), rest)) = self.rest.split_first() else {
            return Err(found_or_missing(self.rest));
        };
        let probe = KeyProbe {
            key,
            last: rest.is_empty(),
        };
        while let Some(hit) = map.next_key_seed(probe.clone())? {
            if hit {
                map.next_value_seed(Walk { rest })?;
                return Err(de::Error::custom(MISSING));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(de::Error::custom(MISSING))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(index), rest)) = self.rest.split_first() else {
            return Err(found_or_missing(self.rest));
        };
        for _ in 0..*index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(de::Error::custom(MISSING));
            }
        }
        match seq.next_element_seed(Walk { rest })? {
            Some(()) | None => Err(de::Error::custom(MISSING)),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(found_or_missing(self.rest))
    }
}

/// At a node: it is the target if no segments remain, otherwise the path is absent.
fn found_or_missing<E: de::Error>(rest: &[Seg]) -> E {
    if rest.is_empty() {
        E::custom(FOUND)
    } else {
        E::custom(MISSING)
    }
}

/// Reads one mapping key: `Ok(true)` if it is the wanted one (and more path follows),
/// an error stamped with the key's position if it is the wanted last segment.
#[derive(Clone)]
struct KeyProbe<'a> {
    key: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        match (v == self.key, self.last) {
            (true, true) => Err(E::custom(FOUND)),
            (matched, _) => Ok(matched),
        }
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
listen:
  public: 0.0.0.0:8443
tls:
  cert: a
  sni:
    - { hosts: [a.example], cert: x, key: y }
    - hosts:
        - b.example
      cert: z
channels:
  - { pattern: \"a.*\", subscribe: anyone }   # 11
  - pattern: b
    subscribe: token
";

    fn p(segs: &[Seg]) -> KeyPath {
        KeyPath(segs.to_vec())
    }
    fn k(s: &str) -> Seg {
        Seg::Key(s.to_owned())
    }

    #[test]
    fn finds_block_flow_and_sequence_keys() {
        assert_eq!(line_of(DOC, &p(&[k("listen"), k("public")])), 2);
        assert_eq!(line_of(DOC, &p(&[k("tls")])), 3);
        assert_eq!(line_of(DOC, &p(&[k("tls"), k("sni"), Seg::Index(0)])), 6);
        assert_eq!(
            line_of(DOC, &p(&[k("tls"), k("sni"), Seg::Index(1), k("cert")])),
            9
        );
        assert_eq!(
            line_of(
                DOC,
                &p(&[k("tls"), k("sni"), Seg::Index(1), k("hosts"), Seg::Index(0)])
            ),
            8
        );
        assert_eq!(
            line_of(DOC, &p(&[k("channels"), Seg::Index(0), k("subscribe")])),
            11
        );
        assert_eq!(
            line_of(DOC, &p(&[k("channels"), Seg::Index(1), k("subscribe")])),
            13
        );
    }

    #[test]
    fn absent_keys_fall_back_to_the_nearest_ancestor() {
        assert_eq!(line_of(DOC, &p(&[k("listen"), k("admin")])), 1);
        assert_eq!(line_of(DOC, &p(&[k("tls"), k("key")])), 3);
        assert_eq!(line_of(DOC, &p(&[k("channels"), Seg::Index(7)])), 10);
        assert_eq!(line_of(DOC, &p(&[k("nope"), k("deeper")])), 1);
        assert_eq!(line_of("", &p(&[k("x")])), 1);
    }

    #[test]
    fn displays_dotted_paths() {
        let path = KeyPath::root().key("channels").index(2).key("subscribe");
        assert_eq!(path.to_string(), "channels[2].subscribe");
        assert_eq!(KeyPath::root().to_string(), "(top level)");
    }
}
