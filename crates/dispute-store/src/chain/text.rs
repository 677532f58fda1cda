//! The canonical form written straight from stored JSON text, without building a
//! `serde_json::Value`: what reading the log for a check costs most.
//!
//! It writes exactly what parsing the text and writing the value canonically writes, and
//! declines (`None`) whatever it cannot vouch for cheaply: string escapes, numbers other than
//! plain integers, duplicate keys, deep nesting and text that is not JSON. The caller then
//! parses the text and takes the general path, which also reports the text that is not JSON.

use super::{HASH_KEY, PREVHASH_KEY, plain_len};

/// Nesting deeper than this declines (serde_json refuses beyond 128).
const MAX_DEPTH: usize = 64;

/// Buffers reused from one event to the next.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The canonical payload and metadata, `,` between them.
    pub(super) body: Vec<u8>,
    /// The members of the objects being written, innermost last.
    members: Vec<Member>,
    /// An object's members while they are put in key order.
    object: Vec<u8>,
}

/// One object member as written to `body`: `"key":value`.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// The key's bytes (inside the quotes).
    key: (usize, usize),
    start: usize,
    end: usize,
}

/// The chain's own keys of a metadata object, as stored.
#[derive(Debug, Default)]
pub(super) struct ChainKeys<'t> {
    pub(super) hash: Option<&'t str>,
    pub(super) prevhash: Option<&'t str>,
}

impl Scratch {
    /// Writes the canonical `payload`, `,` and the canonical `metadata` without its chain keys
    /// to `body`, and returns those keys.
    pub(super) fn write<'t>(&mut self, payload: &str, metadata: &'t str) -> Option<ChainKeys<'t>> {
        self.body.clear();
        self.members.clear();
        Writer { text: payload.as_bytes(), at: 0, scratch: self }.document(None)?;
        self.body.push(b',');
        let mut keys = KeyRanges::default();
        Writer { text: metadata.as_bytes(), at: 0, scratch: self }.document(Some(&mut keys))?;
        // `hash` and `prevhash` were read as plain strings: whole UTF-8 characters.
        let text = |range: Option<(usize, usize)>| range.map(|(s, e)| &metadata[s..e]);
        Some(ChainKeys { hash: text(keys.hash), prevhash: text(keys.prevhash) })
    }
}

/// Where the chain keys' values were found, as ranges of the metadata text.
#[derive(Debug, Default)]
struct KeyRanges {
    hash: Option<(usize, usize)>,
    prevhash: Option<(usize, usize)>,
}

struct Writer<'t, 's> {
    text: &'t [u8],
    at: usize,
    scratch: &'s mut Scratch,
}

impl Writer<'_, '_> {
    /// One whole document; `chain` when it is metadata, whose top-level object's chain keys
    /// are left out and noted.
    fn document(mut self, chain: Option<&mut KeyRanges>) -> Option<()> {
        self.space();
        match chain {
            Some(chain) => {
                if self.peek()? != b'{' {
                    return None;
                }
                self.object(1, Some(chain))?;
            }
            None => self.value(1)?,
        }
        self.space();
        (self.at == self.text.len()).then_some(())
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(depth, None),
            b'[' => self.array(depth),
            b'"' => {
                let (start, end) = self.string()?;
                let body = &mut self.scratch.body;
                body.push(b'"');
                body.extend_from_slice(&self.text[start..end]);
                body.push(b'"');
                Some(())
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.integer(),
        }
    }

    /// A string without escapes or control characters (as it is written canonically): the
    /// range of its content. `at` is on the opening quote.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at + 1;
        let end = start + plain_len(&self.text[start..]);
        if self.text.get(end) != Some(&b'"') {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if !self.text[self.at..].starts_with(word) {
            return None;
        }
        self.at += word.len();
        self.scratch.body.extend_from_slice(word);
        Some(())
    }

    /// An integer that serde_json keeps as one (an `i64` or `u64`) and writes back as it
    /// reads: no `-0`, no leading zero, no fraction or exponent.
    fn integer(&mut self) -> Option<()> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        let digits_start = start + usize::from(negative);
        let digits = self.text[digits_start..].iter().take_while(|b| b.is_ascii_digit()).count();
        let end = digits_start + digits;
        let first = *self.text.get(digits_start)?;
        let fits = if negative { digits <= 18 } else { digits <= 19 };
        if digits == 0 || !fits || (first == b'0' && (digits > 1 || negative)) {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.text.get(end) {
            return None;
        }
        self.at = end;
        self.scratch.body.extend_from_slice(&self.text[start..end]);
        Some(())
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        self.at += 1;
        self.scratch.body.push(b'[');
        self.space();
        if self.peek()? == b']' {
            self.at += 1;
            self.scratch.body.push(b']');
            return Some(());
        }
        loop {
            self.space();
            self.value(depth + 1)?;
            self.space();
            match self.peek()? {
                b',' => self.scratch.body.push(b','),
                b']' => break,
                _ => return None,
            }
            self.at += 1;
        }
        self.at += 1;
        self.scratch.body.push(b']');
        Some(())
    }

    /// An object, its members in key order; `chain` when it is metadata's top level.
    fn object(&mut self, depth: usize, mut chain: Option<&mut KeyRanges>) -> Option<()> {
        self.at += 1;
        self.scratch.body.push(b'{');
        let open = self.scratch.body.len();
        let base = self.scratch.members.len();
        self.space();
        if self.peek()? == b'}' {
            self.at += 1;
            self.scratch.body.push(b'}');
            return Some(());
        }
        loop {
            self.space();
            if self.peek()? != b'"' {
                return None;
            }
            let (key_start, key_end) = self.string()?;
            self.space();
            if self.peek()? != b':' {
                return None;
            }
            self.at += 1;
            self.space();
            let text = self.text;
            let key = &text[key_start..key_end];
            let chain_key = match chain.as_deref_mut() {
                Some(chain) if key == HASH_KEY.as_bytes() => Some(&mut chain.hash),
                Some(chain) if key == PREVHASH_KEY.as_bytes() => Some(&mut chain.prevhash),
                _ => None,
            };
            if let Some(slot) = chain_key {
                // Left out of the canonical form; linking needs it as a string.
                if slot.is_some() || self.peek()? != b'"' {
                    return None;
                }
                *slot = Some(self.string()?);
            } else {
                let body = &mut self.scratch.body;
                if self.scratch.members.len() > base {
                    body.push(b',');
                }
                let start = body.len();
                body.push(b'"');
                body.extend_from_slice(key);
                body.extend_from_slice(b"\":");
                let key = (start + 1, start + 1 + key.len());
                self.value(depth + 1)?;
                let end = self.scratch.body.len();
                self.scratch.members.push(Member { key, start, end });
            }
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => break,
                _ => return None,
            }
        }
        self.at += 1;
        self.order_members(open, base)?;
        self.scratch.members.truncate(base);
        self.scratch.body.push(b'}');
        Some(())
    }

    /// Puts the members written since `open` (those from `base` on) in key order; declines
    /// on a repeated key, which parsing would have collapsed.
    fn order_members(&mut self, open: usize, base: usize) -> Option<()> {
        let Scratch { body, members, object } = &mut *self.scratch;
        let members = &mut members[base..];
        let key = |m: &Member| &body[m.key.0..m.key.1];
        let ordered = members.windows(2).all(|pair| key(&pair[0]) < key(&pair[1]));
        if ordered {
            return Some(());
        }
        members.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        if members.windows(2).any(|pair| key(&pair[0]) == key(&pair[1])) {
            return None;
        }
        object.clear();
        object.extend_from_slice(&body[open..]);
        body.truncate(open);
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&object[member.start - open..member.end - open]);
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::chain::write_canonical;

    /// What the general path writes for the same texts: parsed, then written canonically.
    fn parsed(payload: &str, metadata: &str) -> Option<(Vec<u8>, Option<String>, Option<String>)> {
        let payload: Value = serde_json::from_str(payload).ok()?;
        let metadata: Value = serde_json::from_str(metadata).ok()?;
        let mut body = Vec::new();
        write_canonical(&mut body, &payload, &[]);
        body.push(b',');
        write_canonical(&mut body, &metadata, &[HASH_KEY, PREVHASH_KEY]);
        let key = |k: &str| metadata.get(k).and_then(Value::as_str).map(str::to_string);
        Some((body, key(HASH_KEY), key(PREVHASH_KEY)))
    }

    fn straight(payload: &str, metadata: &str) -> Option<(Vec<u8>, Option<String>, Option<String>)> {
        let mut scratch = Scratch::default();
        let keys = scratch.write(payload, metadata)?;
        let own = |text: Option<&str>| text.map(str::to_string);
        Some((scratch.body.clone(), own(keys.hash), own(keys.prevhash)))
    }

    /// `value` as PostgreSQL prints `jsonb`: keys by length then bytes, `", "` and `": "`.
    fn as_jsonb_prints(value: &Value) -> String {
        match value {
            Value::Array(items) => {
                format!("[{}]", items.iter().map(as_jsonb_prints).collect::<Vec<_>>().join(", "))
            }
            Value::Object(map) => {
                let mut members: Vec<_> = map.iter().collect();
                members.sort_by(|a, b| (a.0.len(), a.0).cmp(&(b.0.len(), b.0)));
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), as_jsonb_prints(v)))
                    .collect();
                format!("{{{}}}", members.join(", "))
            }
            other => other.to_string(),
        }
    }

    fn stored_metadata() -> Value {
        json!({
            "hash": "a1d65e6373fd52c069a984fff4ccef568cc40ff94ea18114f8987915aafa6a3a",
            "time": "2026-01-01T00:00:07.000000Z",
            "command": "register_order",
            "actor_id": "order-service",
            "prevhash": "0000000000000000000000000000000000000000000000000000000000000000",
            "actor_role": "system",
            "correlation_id": "corr-7-1"
        })
    }

    #[test]
    fn stored_events_are_written_straight_as_parsing_writes_them() {
        let payload = json!({ "RefundRequested": {
            "kind": "refund_only", "round": 1, "amount": { "currency": "CNY", "amount_minor": -1007 },
            "evidence": [{ "uri": "https://evidence.example/é/1.jpg", "note": null, "ok": true }, [], {}],
            "description": "the cover is torn", "due": "2026-01-03T01:00:07.000000Z"
        }});
        let metadata = stored_metadata();
        for (payload, metadata) in [
            (payload.to_string(), metadata.to_string()),
            (as_jsonb_prints(&payload), as_jsonb_prints(&metadata)),
            (
                serde_json::to_string_pretty(&payload).unwrap(),
                serde_json::to_string_pretty(&metadata).unwrap(),
            ),
        ] {
            let written = straight(&payload, &metadata);
            assert!(written.is_some(), "{payload} {metadata}");
            assert_eq!(written, parsed(&payload, &metadata));
        }
    }

    #[test]
    fn what_needs_parsing_is_declined() {
        let metadata = stored_metadata().to_string();
        for payload in [
            r#"{"a":"line\nbreak"}"#,
            r#"{"a":1.5}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":1,"a":2}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            r#"{"a":1,}"#,
            r#"[1,]"#,
            r#"{"a":1} x"#,
            r#"{"a":tru}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"unterminated}"#,
            "",
        ] {
            assert_eq!(straight(payload, &metadata), None, "{payload}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(straight(&deep, &metadata), None);
        for metadata in
            [r#"[]"#, r#"{"hash":1,"prevhash":"p"}"#, r#"{"hash":"h","hash":"h"}"#, r#"{"hash":"h\u0030"}"#]
        {
            assert_eq!(straight("{}", metadata), None, "{metadata}");
        }
    }

    /// Any JSON value: strings with and without escapes, integers and floats of any size.
    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
            "[a-c\"\\\\\u{1}\n é𝄞/]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-e\n\"]{0,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whenever the straight path writes, it writes what parsing writes, from any way of
        /// printing the JSON.
        #[test]
        fn the_straight_path_writes_what_parsing_writes(payload in any_value(), metadata in any_value()) {
            let metadata = match metadata {
                Value::Object(mut map) => {
                    map.insert(HASH_KEY.to_string(), json!("h"));
                    Value::Object(map)
                }
                other => other,
            };
            for (payload, metadata) in [
                (payload.to_string(), metadata.to_string()),
                (as_jsonb_prints(&payload), as_jsonb_prints(&metadata)),
                (serde_json::to_string_pretty(&payload).unwrap(), serde_json::to_string_pretty(&metadata).unwrap()),
            ] {
                if let Some(written) = straight(&payload, &metadata) {
                    prop_assert_eq!(Some(written), parsed(&payload, &metadata));
                }
            }
        }

        /// Text damaged anywhere is either refused by both paths or written alike.
        #[test]
        fn damaged_text_is_never_written_otherwise(payload in any_value(), at in any::<prop::sample::Index>(), byte in prop::sample::select(b"{}[],:\" 0-1.eatn\\".to_vec()), remove in any::<bool>()) {
            let mut text = as_jsonb_prints(&payload).into_bytes();
            let at = at.index(text.len() + 1);
            if remove && at < text.len() {
                text.remove(at);
            } else {
                text.insert(at, byte);
            }
            let Ok(text) = String::from_utf8(text) else { return Ok(()) };
            if let Some(written) = straight(&text, "{}") {
                prop_assert_eq!(Some(written), parsed(&text, "{}"));
            }
        }
    }
}
