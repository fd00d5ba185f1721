//! Positions of spec values, found with the same parser that read them.
//!
//! serde_yaml keeps no spans, but it stamps the position of the current
//! event onto any error raised while deserializing. To locate `routes[3].service`
//! we walk the document with a seed that raises an error exactly at that
//! value and read the position off the error. Diagnostics are rare, so one
//! extra pass per diagnostic is cheap, and there is no second YAML parser.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One step of a path into the spec document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
    /// The key itself rather than its value (last segment only).
    KeyName(String),
}

/// A path into the spec document, such as `routes[3].service`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecPath(pub Vec<PathSeg>);

impl SpecPath {
    /// The document root.
    pub fn root() -> Self {
        SpecPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Key(k.to_owned()));
        p
    }

    /// The position of the key `k` itself, for messages about a name.
    pub fn key_name(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::KeyName(k.to_owned()));
        p
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(PathSeg::Index(i));
        p
    }
}

impl fmt::Display for SpecPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                PathSeg::Key(k) | PathSeg::KeyName(k) if i == 0 => write!(f, "{k}")?,
                PathSeg::Key(k) | PathSeg::KeyName(k) => write!(f, ".{k}")?,
                PathSeg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

const PROBE: &str = "gateway-codegen position probe";

/// Line and column (1-based) of the value at `path`, falling back to the
/// closest ancestor present in the text, and to 1:1 for the root.
pub fn locate(text: &str, path: &SpecPath) -> (usize, usize) {
    for len in (0..=path.0.len()).rev() {
        let seed = Probe {
            path: &path.0[..len],
            skip: 0,
        };
        let de = serde_yaml::Deserializer::from_str(text);
        if let Err(e) = seed.deserialize(de) {
            if e.to_string().contains(PROBE) {
                if let Some(loc) = e.location() {
                    return (loc.line(), loc.column());
                }
            }
        }
    }
    (1, 1)
}

/// Line and column of the second `key` in the mapping at `path`: a key
/// written twice, which serde reports at the start of the mapping. `None`
/// when the path or a second such key is not in the text.
pub fn locate_repeated_key(text: &str, path: &SpecPath, key: &str) -> Option<(usize, usize)> {
    let mut segs = path.0.clone();
    segs.push(PathSeg::KeyName(key.to_owned()));
    let de = serde_yaml::Deserializer::from_str(text);
    let err = Probe {
        path: &segs,
        skip: 1,
    }
    .deserialize(de)
    .err()?;
    let loc = err.location().filter(|_| err.to_string().contains(PROBE))?;
    Some((loc.line(), loc.column()))
}

/// Walks to the value at the path and fails there; at a key name, after
/// passing `skip` keys of that name.
struct Probe<'p> {
    path: &'p [PathSeg],
    skip: usize,
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(PROBE));
        };
        if let PathSeg::KeyName(k) = first {
            let skip = Cell::new(self.skip);
            while map.next_key_seed(KeyProbe(k, &skip))?.is_some() {
                map.next_value::<IgnoredAny>()?;
            }
            return Ok(());
        }
        while let Some(key) = map.next_key::<serde_yaml::Value>()? {
            let hit =
                matches!((first, &key), (PathSeg::Key(k), serde_yaml::Value::String(s)) if k == s);
            if hit {
                return map.next_value_seed(Probe {
                    path: rest,
                    skip: self.skip,
                });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else {
            return Err(de::Error::custom(PROBE));
        };
        let mut i = 0;
        loop {
            if matches!(first, PathSeg::Index(n) if *n == i) {
                let next = Probe {
                    path: rest,
                    skip: self.skip,
                };
                return seq.next_element_seed(next).map(|_| ());
            }
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

/// Reads a mapping key and fails on it when it is the one sought (and
/// `.1` earlier ones have been passed), so the error carries the key's
/// position.
struct KeyProbe<'k>(&'k str, &'k Cell<usize>);

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // The error must come from inside the visitor: only then does
        // serde_yaml stamp it with the key scalar's own position.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v != self.0 {
            Ok(())
        } else if self.1.get() == 0 {
            Err(E::custom(PROBE))
        } else {
            self.1.set(self.1.get() - 1);
            Ok(())
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

impl Probe<'_> {
    /// A scalar is the target when the path ends here; otherwise the path
    /// does not exist below it.
    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() {
            Err(E::custom(PROBE))
        } else {
            Ok(())
        }
    }
}
