//! The hash chain over each order's stream: the canonical bytes of an event, its hash, and
//! the check of a stream's chain. Pure: no I/O, so the same code runs on commit, in
//! `disputes audit verify` and in the tests. `docs/audit.md` describes the form for outside
//! auditors.
//!
//! An event's hash is `SHA-256(canonical JSON of [prevhash, order_id, sequence, event_type,
//! event_version, payload, metadata])` in lowercase hex, where `metadata` leaves out its own
//! `hash` and `prevhash` keys and `prevhash` is the hash of the stream's previous event
//! ([`GENESIS`] for the first). The canonical JSON has object keys sorted by their UTF-8
//! bytes, no whitespace, strings escaped as JSON requires (`\"`, `\\`, `\b`, `\f`, `\n`,
//! `\r`, `\t`, other control characters as `\u00xx`) and everything else verbatim UTF-8, and
//! integers in decimal.

use std::cell::RefCell;
use std::io::Write as _;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::EventMetadata;

mod text;

/// The `prevhash` of a stream's first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Metadata keys that carry the chain itself and so are not hashed.
pub const HASH_KEY: &str = "hash";
pub const PREVHASH_KEY: &str = "prevhash";

/// The fields of one stored event that the hash covers.
#[derive(Debug, Clone, Copy)]
pub struct Hashed<'a> {
    pub order_id: &'a str,
    pub sequence: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    /// The stored metadata; its `hash` and `prevhash` keys are skipped.
    pub metadata: &'a Value,
}

/// The canonical bytes the hash of `event` is computed over, given the previous hash.
pub fn canonical_bytes(prevhash: &str, event: &Hashed<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_head(&mut out, prevhash, event.order_id, event.sequence, event.event_type, event.event_version);
    write_canonical(&mut out, event.payload, &[]);
    out.push(b',');
    write_canonical(&mut out, event.metadata, &[HASH_KEY, PREVHASH_KEY]);
    out.push(b']');
    out
}

/// The canonical bytes before the payload: `[prevhash,order_id,sequence,event_type,event_version,`.
fn write_head(
    out: &mut Vec<u8>,
    prevhash: &str,
    order_id: &str,
    sequence: u64,
    event_type: &str,
    event_version: &str,
) {
    out.push(b'[');
    write_str(out, prevhash);
    out.push(b',');
    write_str(out, order_id);
    write!(out, ",{sequence},").expect("writing to a Vec");
    write_str(out, event_type);
    out.push(b',');
    write_str(out, event_version);
    out.push(b',');
}

/// The hash of `event` chained to `prevhash`, lowercase hex.
pub fn event_hash(prevhash: &str, event: &Hashed<'_>) -> String {
    hex(&Sha256::digest(canonical_bytes(prevhash, event)))
}

/// One stored event as read, its payload and metadata still the stored JSON text.
#[derive(Debug, Clone, Copy)]
pub struct HashedText<'a> {
    pub order_id: &'a str,
    pub sequence: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// What linking needs of one stored event: its stored hashes, and whether its content still
/// hashes to the stored `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked<'a> {
    pub hash: Option<&'a str>,
    pub prevhash: Option<&'a str>,
    pub content_intact: bool,
}

thread_local! {
    static SCRATCH: RefCell<(text::Scratch, Vec<u8>)> = RefCell::default();
}

impl<'a> HashedText<'a> {
    /// The event checked against its own stored hash straight from the text, as [`Link::of`]
    /// checks it parsed. `None` when the text needs parsing (see [`text`]).
    pub fn check(&self) -> Option<Checked<'a>> {
        SCRATCH.with_borrow_mut(|(scratch, head)| {
            let keys = scratch.write(self.payload, self.metadata)?;
            let content_intact = match (keys.hash, keys.prevhash) {
                (Some(hash), Some(prevhash)) => {
                    head.clear();
                    write_head(
                        head,
                        prevhash,
                        self.order_id,
                        self.sequence,
                        self.event_type,
                        self.event_version,
                    );
                    let digest =
                        Sha256::new().chain_update(&head).chain_update(&scratch.body).chain_update(b"]");
                    hex(&digest.finalize()) == hash
                }
                _ => false,
            };
            Some(Checked { hash: keys.hash, prevhash: keys.prevhash, content_intact })
        })
    }
}

/// An event about to be appended to its stream, before its place in the chain is known.
#[derive(Debug, Clone)]
pub struct Unlinked {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    /// Its `prevhash` and `hash` are set by [`link`].
    pub metadata: EventMetadata,
}

/// An event linked into its stream: numbered, and its metadata (the stored JSON) carrying its
/// `prevhash` and `hash`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linked {
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Links `events` after the stream's last event (`last_sequence` and `last_hash`; 0 and
/// [`GENESIS`] for a new stream): numbers them on, hashes each chained to the one before, and
/// adds `prevhash` and `hash` to its metadata. The one place the write path computes hashes.
pub fn link(
    order_id: &str,
    last_sequence: u64,
    last_hash: &str,
    events: impl IntoIterator<Item = Unlinked>,
) -> Vec<Linked> {
    let mut prevhash = last_hash.to_string();
    events
        .into_iter()
        .zip(last_sequence + 1..)
        .map(|(event, sequence)| {
            let Unlinked { event_type, event_version, payload, metadata } = event;
            let mut metadata = metadata.to_value();
            let hash = event_hash(
                &prevhash,
                &Hashed {
                    order_id,
                    sequence,
                    event_type: &event_type,
                    event_version: &event_version,
                    payload: &payload,
                    metadata: &metadata,
                },
            );
            metadata[PREVHASH_KEY] = Value::String(std::mem::replace(&mut prevhash, hash.clone()));
            metadata[HASH_KEY] = Value::String(hash);
            Linked { sequence, event_type, event_version, payload, metadata }
        })
        .collect()
}

/// Writes `value` canonically; `skip` names top-level object keys to leave out.
fn write_canonical(out: &mut Vec<u8>, value: &Value, skip: &[&str]) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item, &[]);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            let mut first = true;
            let mut member = |out: &mut Vec<u8>, key: &str, item: &Value| {
                if skip.contains(&key) {
                    return;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                write_str(out, key);
                out.push(b':');
                write_canonical(out, item, &[]);
            };
            // serde_json's map is ordered by key already unless its `preserve_order`
            // feature is on; sort only when it is not.
            if map.keys().is_sorted_by(|a, b| a.as_bytes() <= b.as_bytes()) {
                for (key, item) in map {
                    member(out, key, item);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                for (key, item) in entries {
                    member(out, key, item);
                }
            }
            out.push(b'}');
        }
    }
}

/// A JSON string: `"`, `\` and control characters escaped, everything else verbatim UTF-8.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if plain_len(bytes) == bytes.len() {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(DIGITS[(b >> 4) as usize]);
            out.push(DIGITS[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The length of the longest prefix of `bytes` without a control character, `"` or `\`:
/// eight bytes at a time.
fn plain_len(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `x` is below `n` (n <= 0x80).
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * n as u64) & !x & HIGHS != 0;
    let mut clean = 0;
    for chunk in bytes.chunks_exact(8) {
        let x = u64::from_ne_bytes(chunk.try_into().expect("eight bytes"));
        if below(x, 0x20) || below(x ^ (ONES * b'"' as u64), 1) || below(x ^ (ONES * b'\\' as u64), 1) {
            break;
        }
        clean += 8;
    }
    let rest = &bytes[clean..];
    clean + rest.iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').unwrap_or(rest.len())
}

/// `bytes` as lower-case hexadecimal, two digits a byte: how every digest here is written.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(DIGITS[(b >> 4) as usize] as char);
        text.push(DIGITS[(b & 0xf) as usize] as char);
    }
    text
}

/// Why a stream's chain is broken at one sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakKind {
    /// The event's content (payload, metadata, type, version, order or sequence) no longer
    /// matches its stored hash: altered, or moved to another place in the stream.
    Altered,
    /// The event's `prevhash` is not the previous event's hash: an event before it was removed
    /// or replaced, or events were reordered.
    Unlinked,
    /// Sequences before this one are missing (the stream must count 1, 2, 3, …).
    Missing { from: u64 },
    /// The event carries no `hash` or `prevhash`.
    Unhashed,
    /// The stream ends before a sequence on record elsewhere (published on JetStream, or in a
    /// saved heads file): its last events, from this sequence on, were removed.
    Truncated { recorded: u64 },
    /// The copy of this event on record elsewhere has another hash.
    DiffersFromRecord,
}

/// One place where a stream's chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub order_id: String,
    pub sequence: u64,
    pub kind: BreakKind,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (order, seq) = (&self.order_id, self.sequence);
        match &self.kind {
            BreakKind::Altered => write!(f, "{order} sequence {seq}: content does not match its hash"),
            BreakKind::Unlinked => {
                write!(f, "{order} sequence {seq}: prevhash is not the previous event's hash")
            }
            BreakKind::Missing { from } => {
                write!(f, "{order} sequence {seq}: sequences {from}..{} are missing", seq - 1)
            }
            BreakKind::Unhashed => write!(f, "{order} sequence {seq}: no hash stored"),
            BreakKind::Truncated { recorded } => write!(
                f,
                "{order} sequence {seq}: missing from the log (the stream ends at {}, sequence {recorded} is on record)",
                seq - 1
            ),
            BreakKind::DiffersFromRecord => {
                write!(f, "{order} sequence {seq}: hash differs from the one on record")
            }
        }
    }
}

/// One event reduced to what linking needs, its own hash already checked. Computing links
/// is the costly part of a check and may run in parallel; [`verify_links`] then runs in
/// stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub order_id: String,
    pub sequence: u64,
    /// The stored `hash` and `prevhash`; `None` when missing.
    pub hash: Option<String>,
    pub prevhash: Option<String>,
    /// The content still hashes to the stored `hash`.
    pub content_intact: bool,
}

impl Link {
    pub fn of(event: &Hashed<'_>) -> Self {
        let stored = |key: &str| event.metadata.get(key).and_then(Value::as_str);
        let (hash, prevhash) = (stored(HASH_KEY), stored(PREVHASH_KEY));
        let content_intact = match (hash, prevhash) {
            (Some(hash), Some(prevhash)) => event_hash(prevhash, event) == hash,
            _ => false,
        };
        Self {
            order_id: event.order_id.to_string(),
            sequence: event.sequence,
            hash: hash.map(str::to_string),
            prevhash: prevhash.map(str::to_string),
            content_intact,
        }
    }
}

/// Checks one stream's events, given in stored sequence order, and returns every break.
///
/// Each event is checked against its own stored hash and linked to the previous event's
/// stored hash, so one altered event is reported once, at its own sequence, and the events
/// after it are still checked.
pub fn verify_stream<'a>(events: impl IntoIterator<Item = Hashed<'a>>) -> Vec<ChainBreak> {
    let links: Vec<Link> = events.into_iter().map(|e| Link::of(&e)).collect();
    verify_links(&links)
}

/// [`verify_stream`] over links computed beforehand.
pub fn verify_links(links: &[Link]) -> Vec<ChainBreak> {
    let mut breaks = Vec::new();
    let mut expected_sequence = 1u64;
    let mut previous: Option<&str> = Some(GENESIS);
    for link in links {
        let at = |kind| ChainBreak { order_id: link.order_id.clone(), sequence: link.sequence, kind };
        if link.sequence != expected_sequence {
            breaks.push(at(if link.sequence > expected_sequence {
                BreakKind::Missing { from: expected_sequence }
            } else {
                BreakKind::Altered
            }));
        }
        expected_sequence = link.sequence.max(expected_sequence) + 1;
        let (Some(hash), Some(prevhash)) = (&link.hash, &link.prevhash) else {
            breaks.push(at(BreakKind::Unhashed));
            previous = None;
            continue;
        };
        if previous.is_some_and(|p| p != prevhash) {
            breaks.push(at(BreakKind::Unlinked));
        }
        if !link.content_intact {
            breaks.push(at(BreakKind::Altered));
        }
        previous = Some(hash);
    }
    breaks
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Event {
        order_id: String,
        sequence: u64,
        event_type: String,
        payload: Value,
        metadata: Value,
    }

    impl Event {
        fn hashed(&self) -> Hashed<'_> {
            Hashed {
                order_id: &self.order_id,
                sequence: self.sequence,
                event_type: &self.event_type,
                event_version: "1",
                payload: &self.payload,
                metadata: &self.metadata,
            }
        }
    }

    /// A stream of `n` chained events of order `o-1`.
    fn stream(n: u64) -> Vec<Event> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|sequence| {
                let mut event = Event {
                    order_id: "o-1".to_string(),
                    sequence,
                    event_type: "EvidenceSubmitted".to_string(),
                    payload: json!({ "EvidenceSubmitted": { "round": 1, "note": format!("item {sequence}") } }),
                    metadata: json!({ "actor_id": "b-1", "time": "2026-06-01T08:00:00.000000Z" }),
                };
                let hash = event_hash(&prev, &event.hashed());
                event.metadata["prevhash"] = json!(prev);
                event.metadata["hash"] = json!(hash);
                prev = hash;
                event
            })
            .collect()
    }

    fn verify(events: &[Event]) -> Vec<(u64, BreakKind)> {
        verify_stream(events.iter().map(Event::hashed)).into_iter().map(|b| (b.sequence, b.kind)).collect()
    }

    #[test]
    fn canonical_form_sorts_keys_drops_whitespace_and_skips_the_chain_keys() {
        let payload = json!({ "b": [1, {"z": null, "a": true}], "a": "é\"\n\u{1}" });
        let metadata = json!({ "time": "t", "hash": "h", "prevhash": "p", "actor_id": "x" });
        let event = Hashed {
            order_id: "o-1",
            sequence: 12,
            event_type: "T",
            event_version: "1",
            payload: &payload,
            metadata: &metadata,
        };
        let bytes = canonical_bytes(GENESIS, &event);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!(
                "[\"{GENESIS}\",\"o-1\",12,\"T\",\"1\",{{\"a\":\"é\\\"\\n\\u0001\",\"b\":[1,{{\"a\":true,\"z\":null}}]}},{{\"actor_id\":\"x\",\"time\":\"t\"}}]"
            )
        );
    }

    #[test]
    fn canonical_strings_match_serde_json_escaping() {
        for text in ["plain", "tab\there", "ctl\u{7}\u{1f}", "quote\"back\\slash", "ünï €𝄞", "del\u{7f}"]
        {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn the_escape_check_finds_the_first_byte_that_needs_one_at_any_position() {
        for len in 0..20 {
            let harmless = "é𝄞 ~/\u{7f}abcdefghijklmnop".as_bytes().get(..len).unwrap_or(b"");
            assert_eq!(plain_len(harmless), harmless.len());
            for at in 0..len {
                for special in [0x00u8, 0x1f, b'"', b'\\', b'\n'] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    assert_eq!(plain_len(&bytes), at, "{bytes:?}");
                    bytes[len - 1] = special;
                    assert_eq!(plain_len(&bytes), at, "{bytes:?}");
                }
                let mut bytes = vec![b'a'; len];
                for harmless in [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff] {
                    bytes[at] = harmless;
                    assert_eq!(plain_len(&bytes), len, "{bytes:?}");
                }
            }
        }
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_bytes() {
        let events = stream(1);
        let bytes = canonical_bytes(GENESIS, &events[0].hashed());
        assert_eq!(events[0].metadata["hash"], json!(hex(&Sha256::digest(&bytes))));
        assert_eq!(events[0].metadata["hash"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn the_stored_text_checks_as_the_parsed_event() {
        let mut events = stream(3);
        events[1].payload["EvidenceSubmitted"]["round"] = json!(2);
        events[2].payload["EvidenceSubmitted"]["note"] = json!("needs \"escapes\"");
        for event in &events {
            let (payload, metadata) = (event.payload.to_string(), event.metadata.to_string());
            let text = HashedText {
                order_id: &event.order_id,
                sequence: event.sequence,
                event_type: &event.event_type,
                event_version: "1",
                payload: &payload,
                metadata: &metadata,
            };
            let link = Link::of(&event.hashed());
            match text.check() {
                Some(checked) => {
                    assert_eq!(checked.hash, link.hash.as_deref());
                    assert_eq!(checked.prevhash, link.prevhash.as_deref());
                    assert_eq!(checked.content_intact, link.content_intact, "{}", event.sequence);
                }
                None => assert_eq!(event.sequence, 3, "only the escaped note needs parsing"),
            }
        }
        assert!(!Link::of(&events[1].hashed()).content_intact);
    }

    #[test]
    fn an_honest_stream_verifies() {
        assert_eq!(verify(&stream(5)), vec![]);
    }

    #[test]
    fn an_altered_payload_is_named_at_its_sequence() {
        let mut events = stream(5);
        events[2].payload["EvidenceSubmitted"]["round"] = json!(2);
        assert_eq!(verify(&events), vec![(3, BreakKind::Altered)]);
    }

    #[test]
    fn altered_metadata_is_named_at_its_sequence() {
        let mut events = stream(5);
        events[1].metadata["actor_id"] = json!("someone-else");
        assert_eq!(verify(&events), vec![(2, BreakKind::Altered)]);
    }

    #[test]
    fn a_rehashed_alteration_breaks_the_next_link() {
        let mut events = stream(5);
        events[1].payload["EvidenceSubmitted"]["round"] = json!(2);
        let prev = events[1].metadata["prevhash"].as_str().unwrap().to_string();
        let rehashed = event_hash(&prev, &events[1].hashed());
        events[1].metadata["hash"] = json!(rehashed);
        assert_eq!(verify(&events), vec![(3, BreakKind::Unlinked)]);
    }

    #[test]
    fn an_event_removed_from_the_middle_is_named() {
        let mut events = stream(5);
        events.remove(2);
        assert_eq!(verify(&events), vec![(4, BreakKind::Missing { from: 3 }), (4, BreakKind::Unlinked)]);
    }

    #[test]
    fn renumbered_events_after_a_removal_are_named() {
        let mut events = stream(5);
        events.remove(2);
        for event in &mut events[2..] {
            event.sequence -= 1;
        }
        assert_eq!(
            verify(&events),
            vec![(3, BreakKind::Unlinked), (3, BreakKind::Altered), (4, BreakKind::Altered)]
        );
    }

    #[test]
    fn reordered_events_are_named() {
        let mut events = stream(5);
        // Swap the contents of sequences 2 and 3, keeping the sequence numbers in place.
        let (a, b) = events.split_at_mut(2);
        std::mem::swap(&mut a[1].payload, &mut b[0].payload);
        std::mem::swap(&mut a[1].metadata, &mut b[0].metadata);
        assert_eq!(
            verify(&events),
            vec![
                (2, BreakKind::Unlinked),
                (2, BreakKind::Altered),
                (3, BreakKind::Unlinked),
                (3, BreakKind::Altered),
                (4, BreakKind::Unlinked)
            ]
        );
    }

    fn unlinked(note: &str) -> Unlinked {
        Unlinked {
            event_type: "EvidenceSubmitted".to_string(),
            event_version: "1".to_string(),
            payload: json!({ "EvidenceSubmitted": { "round": 1, "note": note } }),
            metadata: serde_json::from_value(json!({
                "actor_role": "buyer",
                "actor_id": "b-1",
                "command": "evidence",
                "time": "2026-06-01T08:00:00.000000Z",
                "correlation_id": "c-1",
            }))
            .unwrap(),
        }
    }

    fn as_events(linked: Vec<Linked>) -> Vec<Event> {
        linked
            .into_iter()
            .map(|l| Event {
                order_id: "o-1".to_string(),
                sequence: l.sequence,
                event_type: l.event_type,
                payload: l.payload,
                metadata: l.metadata,
            })
            .collect()
    }

    #[test]
    fn linked_events_verify_and_link_on_from_the_streams_last_hash() {
        let first = link("o-1", 0, GENESIS, [unlinked("a"), unlinked("b")]);
        let last_hash = first[1].metadata[HASH_KEY].as_str().unwrap().to_string();
        assert_eq!(first[0].metadata[PREVHASH_KEY], json!(GENESIS));
        assert_eq!(first[1].metadata[PREVHASH_KEY], first[0].metadata[HASH_KEY]);
        let then = link("o-1", 2, &last_hash, [unlinked("c")]);
        assert_eq!(then[0].sequence, 3);
        let at_once = link("o-1", 0, GENESIS, [unlinked("a"), unlinked("b"), unlinked("c")]);
        assert_eq!(first.iter().chain(&then).cloned().collect::<Vec<_>>(), at_once);
        assert_eq!(verify(&as_events(at_once)), vec![]);
    }

    #[test]
    fn an_unhashed_event_is_named() {
        let mut events = stream(2);
        events[0].metadata.as_object_mut().unwrap().remove("hash");
        assert_eq!(verify(&events), vec![(1, BreakKind::Unhashed)]);
    }
}
