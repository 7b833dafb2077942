//! Keys: the one-byte keyspace tags ([`Tag`]), the builders of every key shape, and the one
//! parser of the keys read back ([`Key::parse`]). What each shape holds is in the crate docs'
//! table; this module is the only place that knows the byte layout of a key.
//!
//! Integers are big-endian (sled's order is their order) and ids have a fixed length per kind,
//! so composite keys need no separator.

use crmhook_core::{EventId, RejectedId, SourceId, SubscriptionId, TargetId};

use crate::records::Final;
use crate::FINISHED_BLOCK;

/// The keyspace of a key: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Tag {
    /// `E` seq: a chunk of the event log.
    Event = b'E',
    /// `K` idempotency-key: a request's acknowledgement.
    Idempotency = b'K',
    /// `X` event key: an event's own idempotency key.
    External = b'X',
    /// `T` tgt_id: a target.
    Target = b'T',
    /// `S` sub_id: a subscription.
    Subscription = b'S',
    /// `Z` src_id: a source.
    Source = b'Z',
    /// `Q` rej_id: the quarantine.
    Rejected = b'Q',
    /// `C` tgt_id: a target's cursor.
    Cursor = b'C',
    /// `W` tgt_id: how far a target had matched.
    Scanned = b'W',
    /// `P` tgt_id seq: a pending delivery.
    Pending = b'P',
    /// `A` seq tgt_id n: an attempt that did not finish its delivery.
    Attempt = b'A',
    /// `D` tgt_id: a disabled target.
    Disabled = b'D',
    /// `L` tgt_id state block: a block of finished deliveries.
    Block = b'L',
    /// `F` tgt_id state seq: legacy, one finished delivery.
    Final = b'F',
    /// `O` at_ms n: an operator's request.
    Request = b'O',
    /// `U` at_ms n: an audit entry (an admin change, a failed authentication).
    Audit = b'U',
    /// `Y` len type seq: the type index.
    TypeIndex = b'Y',
    /// `R` bucket seq: the record-id index.
    RecordIndex = b'R',
    /// `G` len kanban seq: the kanban index.
    KanbanIndex = b'G',
    /// `N` len src_id seq: the source index.
    SourceIndex = b'N',
    /// `I` evt_id: legacy (format 1), event id → seq.
    LegacyId = b'I',
    /// `M` name: meta.
    Meta = b'M',
    /// `B` src_id rej_id: the quarantine by source.
    RejectedBySource = b'B',
    /// `H` src_id digest: the quarantine by bytes.
    RejectedByBytes = b'H',
    /// `V` key_id: an API key.
    ApiKey = b'V',
    /// `J` sha256: the hash of an API key's secret rotated away or revoked.
    Retired = b'J',
}

impl Tag {
    /// Every keyspace.
    pub(crate) const ALL: [Tag; 26] = [
        Tag::Event,
        Tag::Idempotency,
        Tag::External,
        Tag::Target,
        Tag::Subscription,
        Tag::Source,
        Tag::Rejected,
        Tag::Cursor,
        Tag::Scanned,
        Tag::Pending,
        Tag::Attempt,
        Tag::Disabled,
        Tag::Block,
        Tag::Final,
        Tag::Request,
        Tag::Audit,
        Tag::TypeIndex,
        Tag::RecordIndex,
        Tag::KanbanIndex,
        Tag::SourceIndex,
        Tag::LegacyId,
        Tag::Meta,
        Tag::RejectedBySource,
        Tag::RejectedByBytes,
        Tag::ApiKey,
        Tag::Retired,
    ];

    pub(crate) const fn byte(self) -> u8 {
        self as u8
    }

    /// The tag whose keyspace `byte` starts.
    pub(crate) fn of(byte: u8) -> Option<Tag> {
        Tag::ALL.into_iter().find(|t| t.byte() == byte)
    }

    /// The prefix of every key of this keyspace (the start of a range over it).
    pub(crate) fn prefix(self) -> Vec<u8> {
        vec![self.byte()]
    }

    /// The first key after this keyspace (the exclusive end of a range over it).
    pub(crate) fn end(self) -> Vec<u8> {
        vec![self.byte() + 1]
    }
}

/// `tag` followed by `parts`.
pub(crate) fn key(tag: Tag, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(tag.byte());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// `tag` id: a record keyed by its id alone (`T`, `S`, `Z`, `Q`, `D`, `C`, `W`, `K`, `X`,
/// `I`, `M`), or the prefix of a target's keys (`P`, `F`, `L`).
pub(crate) fn id_key(tag: Tag, id: &str) -> Vec<u8> {
    key(tag, &[id.as_bytes()])
}

/// `E` seq: the chunk keyed at `seq`.
pub(crate) fn chunk(seq: u64) -> Vec<u8> {
    key(Tag::Event, &[&seq.to_be_bytes()])
}

/// `M` name.
pub(crate) fn meta(name: &str) -> Vec<u8> {
    id_key(Tag::Meta, name)
}

/// `M head`: the last seq ever given.
pub(crate) fn head() -> Vec<u8> {
    meta("head")
}

/// `M indexed`: the last seq in the on-disk indexes.
pub(crate) fn indexed() -> Vec<u8> {
    meta("indexed")
}

/// [`single_write_rank`]'s rank of a chunk.
pub(crate) const CHUNK_RANK: u8 = 0;

/// Where a key may come in a group written as single writes rather than one sled batch
/// (`writer::apply`), or `None` if a group holding it must be one batch. sled recovers a prefix
/// of its log (it stops at the first torn message), so a group whose writes go in rank order
/// leaves a state after a crash that some earlier moment had too, or one that open repairs:
/// chunks first (the head is read back from the last chunk at open), then the events' own
/// deduplication keys (`X`: a crash between leaves logged events without theirs, which open
/// writes again from the events read back after `M indexed`, before any request is taken;
/// this group's events are all after `M indexed`, which comes later) and requests'
/// `Idempotency-Key` records (`K`, written again the same way from the key their chunk keeps,
/// when every event they name is in this group: else the writer keeps the group a batch), then
/// the index postings
/// (written again, the same, when the window fills again), `M indexed`, `M head`; of delivery
/// state, `W` before the blocks it covers (a `W` ahead of its records only makes a restart
/// check for records it will not find), the answers kept apart from the blocks (`A`, after
/// their entries: a crash between leaves an entry without its answer, never an attempt that
/// finished a delivery no block records) and the cursor `C` after them (it passes only what is
/// recorded); the charts' counts anywhere. Everything else (pending deliveries, configuration,
/// audit, removals) keeps a batch: a retry's `A` record goes with its pending entry.
pub(crate) fn single_write_rank(k: &[u8]) -> Option<u8> {
    match Tag::of(*k.first()?)? {
        Tag::Event => Some(CHUNK_RANK),
        Tag::External | Tag::Idempotency => Some(1),
        Tag::TypeIndex | Tag::RecordIndex | Tag::KanbanIndex | Tag::SourceIndex => Some(2),
        Tag::Meta if k == indexed() => Some(3),
        Tag::Meta if k == head() => Some(4),
        Tag::Scanned => Some(5),
        Tag::Block => Some(6),
        Tag::Attempt => Some(7),
        Tag::Cursor => Some(8),
        Tag::Meta if k[1..].starts_with(b"stats:") => Some(9),
        _ => None,
    }
}

/// `M format`: the log format.
pub(crate) fn format() -> Vec<u8> {
    meta("format")
}

/// `M migrated_through`: how far a migration from format 1 got.
pub(crate) fn migrated_through() -> Vec<u8> {
    meta("migrated_through")
}

/// `V` key_id: an API key.
pub(crate) fn api_key(id: &str) -> Vec<u8> {
    id_key(Tag::ApiKey, id)
}

/// `J` sha256: a retired secret's hash.
pub(crate) fn retired(hash: &[u8; 32]) -> Vec<u8> {
    key(Tag::Retired, &[hash])
}

/// `B` src_id rej_id: a quarantined piece under its source (`prefix`: all of a source's).
pub(crate) fn rejected_of(source: &SourceId, id: Option<&RejectedId>) -> Vec<u8> {
    key(Tag::RejectedBySource, &[source.as_str().as_bytes(), id.map_or(&[][..], |id| id.as_str().as_bytes())])
}

/// `H` src_id digest: the piece of a source that holds these bytes.
pub(crate) fn rejected_bytes(source: &SourceId, digest: &[u8; DIGEST_LEN]) -> Vec<u8> {
    key(Tag::RejectedByBytes, &[source.as_str().as_bytes(), digest])
}

/// The length of `H`'s digest: 128 bits of a SHA-256.
pub(crate) const DIGEST_LEN: usize = 16;

/// `P` tgt_id seq.
pub(crate) fn pending(target: &TargetId, seq: u64) -> Vec<u8> {
    key(Tag::Pending, &[target.as_str().as_bytes(), &seq.to_be_bytes()])
}

/// `A` seq tgt_id n.
pub(crate) fn attempt(target: &TargetId, seq: u64, n: u32) -> Vec<u8> {
    key(Tag::Attempt, &[&seq.to_be_bytes(), target.as_str().as_bytes(), &n.to_be_bytes()])
}

/// `A` seq: the prefix of the attempts at delivering `seq`.
pub(crate) fn attempts_of(seq: u64) -> Vec<u8> {
    key(Tag::Attempt, &[&seq.to_be_bytes()])
}

/// `A` seq tgt_id: the prefix of the attempts at delivering `seq` to `target`.
pub(crate) fn attempts_to(target: &TargetId, seq: u64) -> Vec<u8> {
    key(Tag::Attempt, &[&seq.to_be_bytes(), target.as_str().as_bytes()])
}

/// The byte of a final state in `F` and `L` keys.
fn state_byte(done: Final) -> u8 {
    match done {
        Final::Delivered => b'd',
        Final::Dead => b'x',
    }
}

fn state_of(byte: u8) -> Option<Final> {
    match byte {
        b'd' => Some(Final::Delivered),
        b'x' => Some(Final::Dead),
        _ => None,
    }
}

/// `F` tgt_id state: the prefix of a target's legacy finished deliveries in one state.
pub(crate) fn final_prefix(target: &TargetId, done: Final) -> Vec<u8> {
    key(Tag::Final, &[target.as_str().as_bytes(), &[state_byte(done)]])
}

/// `F` tgt_id state seq.
pub(crate) fn final_key(target: &TargetId, done: Final, seq: u64) -> Vec<u8> {
    key(Tag::Final, &[target.as_str().as_bytes(), &[state_byte(done)], &seq.to_be_bytes()])
}

/// `L` tgt_id state: the prefix of a target's blocks of finished deliveries in one state.
pub(crate) fn block_prefix(target: &TargetId, done: Final) -> Vec<u8> {
    key(Tag::Block, &[target.as_str().as_bytes(), &[state_byte(done)]])
}

/// `L` tgt_id state block: the block that holds `seq`.
pub(crate) fn block_key(target: &TargetId, done: Final, seq: u64) -> Vec<u8> {
    let block = seq / FINISHED_BLOCK;
    key(Tag::Block, &[target.as_str().as_bytes(), &[state_byte(done)], &block.to_be_bytes()])
}

/// `tag` at_ms n: a record numbered by the writer thread (`O`, `U`).
pub(crate) fn numbered(tag: Tag, at_ms: u64, n: u64) -> Vec<u8> {
    key(tag, &[&at_ms.to_be_bytes(), &n.to_be_bytes()])
}

/// `tag` len:u16 text: the prefix of a posting on a text field (`Y`, `G`, `N`; and format 1's
/// `R`).
pub(crate) fn text_prefix(tag: Tag, text: &str) -> Vec<u8> {
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    key(tag, &[&len.to_be_bytes(), text.as_bytes()])
}

/// `prefix` seq: the key at `seq` under `prefix` (a posting under the prefix of its value, a
/// format 1 index key, a delivery under its target and state).
pub(crate) fn at_seq(prefix: &[u8], seq: u64) -> Vec<u8> {
    [prefix, &seq.to_be_bytes()].concat()
}

/// `R` bucket: the prefix of one bucket of the record-id index.
pub(crate) fn record_prefix(bucket: u8) -> Vec<u8> {
    key(Tag::RecordIndex, &[&[bucket]])
}

/// `R` bucket seq.
pub(crate) fn record_key(bucket: u8, seq: u64) -> Vec<u8> {
    key(Tag::RecordIndex, &[&[bucket], &seq.to_be_bytes()])
}

/// `I` evt_id.
pub(crate) fn legacy_id(id: &EventId) -> Vec<u8> {
    id_key(Tag::LegacyId, id.as_str())
}

/// A key read back, by its shape (see the crate docs' table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Chunk {
        first: u64,
    },
    Idempotency(Vec<u8>),
    External(Vec<u8>),
    Target(TargetId),
    Subscription(SubscriptionId),
    Source(SourceId),
    Rejected(RejectedId),
    Cursor(TargetId),
    Scanned(TargetId),
    Pending {
        target: TargetId,
        seq: u64,
    },
    Attempt {
        seq: u64,
        target: TargetId,
        n: u32,
    },
    Disabled(TargetId),
    Block {
        target: TargetId,
        done: Final,
        block: u64,
    },
    Final {
        target: TargetId,
        done: Final,
        seq: u64,
    },
    Request {
        at_ms: u64,
        n: u64,
    },
    Audit {
        at_ms: u64,
        n: u64,
    },
    /// A `Y`, `G` or `N` posting: the value it indexes, and its first seq.
    Term {
        tag: Tag,
        value: String,
        first: u64,
    },
    /// A window's bucket of the record-id index (format 2).
    Records {
        bucket: u8,
        first: u64,
    },
    LegacyId(EventId),
    Meta(String),
    RejectedOf {
        source: SourceId,
        id: RejectedId,
    },
    RejectedBytes {
        source: SourceId,
        digest: [u8; DIGEST_LEN],
    },
    ApiKeyId(String),
    Retired([u8; 32]),
}

impl Key {
    /// The key `k` reads as, or `None` if it is not of its keyspace's shape (format 1's `R`
    /// keys, say).
    pub(crate) fn parse(k: &[u8]) -> Option<Key> {
        let (&tag, rest) = k.split_first()?;
        let mut r = Reader(rest);
        let key = match Tag::of(tag)? {
            Tag::Event => Key::Chunk { first: r.u64()? },
            Tag::Idempotency => Key::Idempotency(r.rest().to_vec()),
            Tag::External => Key::External(r.rest().to_vec()),
            Tag::Target => Key::Target(r.id(TargetId::LEN, TargetId::parse)?),
            Tag::Subscription => Key::Subscription(r.id(SubscriptionId::LEN, SubscriptionId::parse)?),
            Tag::Source => Key::Source(r.id(SourceId::LEN, SourceId::parse)?),
            Tag::Rejected => Key::Rejected(r.id(RejectedId::LEN, RejectedId::parse)?),
            Tag::Cursor => Key::Cursor(r.target()?),
            Tag::Scanned => Key::Scanned(r.target()?),
            Tag::Pending => Key::Pending { target: r.target()?, seq: r.u64()? },
            Tag::Attempt => Key::Attempt { seq: r.u64()?, target: r.target()?, n: r.u32()? },
            Tag::Disabled => Key::Disabled(r.target()?),
            Tag::Block => Key::Block { target: r.target()?, done: state_of(r.u8()?)?, block: r.u64()? },
            Tag::Final => Key::Final { target: r.target()?, done: state_of(r.u8()?)?, seq: r.u64()? },
            Tag::Request => Key::Request { at_ms: r.u64()?, n: r.u64()? },
            Tag::Audit => Key::Audit { at_ms: r.u64()?, n: r.u64()? },
            tag @ (Tag::TypeIndex | Tag::KanbanIndex | Tag::SourceIndex) => {
                let len = r.u16()?;
                let value = std::str::from_utf8(r.bytes(usize::from(len))?).ok()?.to_owned();
                Key::Term { tag, value, first: r.u64()? }
            }
            Tag::RecordIndex => Key::Records { bucket: r.u8()?, first: r.u64()? },
            Tag::LegacyId => Key::LegacyId(r.id(EventId::LEN, EventId::parse)?),
            Tag::Meta => Key::Meta(std::str::from_utf8(r.rest()).ok()?.to_owned()),
            Tag::RejectedBySource => Key::RejectedOf {
                source: r.id(SourceId::LEN, SourceId::parse)?,
                id: r.id(RejectedId::LEN, RejectedId::parse)?,
            },
            Tag::RejectedByBytes => Key::RejectedBytes {
                source: r.id(SourceId::LEN, SourceId::parse)?,
                digest: r.bytes(DIGEST_LEN)?.try_into().ok()?,
            },
            Tag::ApiKey => Key::ApiKeyId(std::str::from_utf8(r.rest()).ok()?.to_owned()),
            Tag::Retired => Key::Retired(r.bytes(32)?.try_into().ok()?),
        };
        r.0.is_empty().then_some(key)
    }

    /// The seq a key names: a chunk's or posting's first, a delivery's.
    pub(crate) fn seq(&self) -> Option<u64> {
        match self {
            Key::Chunk { first } | Key::Term { first, .. } | Key::Records { first, .. } => Some(*first),
            Key::Pending { seq, .. } | Key::Attempt { seq, .. } | Key::Final { seq, .. } => Some(*seq),
            _ => None,
        }
    }
}

/// Reads the parts of a key in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.bytes(2)?.try_into().ok().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)?.try_into().ok().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)?.try_into().ok().map(u64::from_be_bytes)
    }

    fn id<I>(&mut self, len: usize, parse: fn(&str) -> Option<I>) -> Option<I> {
        std::str::from_utf8(self.bytes(len)?).ok().and_then(parse)
    }

    fn target(&mut self) -> Option<TargetId> {
        self.id(TargetId::LEN, TargetId::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_writes_go_chunks_first_and_the_cursor_after_the_records_it_passes() {
        let target = TargetId::generate();
        let rank = |k: Vec<u8>| single_write_rank(&k);
        let chunk = rank(chunk(7)).expect("a chunk");
        let event_key = rank(id_key(Tag::External, "maia:00")).expect("an event's own key");
        let request_key = rank(id_key(Tag::Idempotency, "key")).expect("a request's key");
        let postings = rank(at_seq(&text_prefix(Tag::TypeIndex, "crm_field_update"), 7)).expect("a posting");
        let indexed = rank(indexed()).expect("indexed");
        let head = rank(head()).expect("the head");
        let scanned = rank(id_key(Tag::Scanned, target.as_str())).expect("W");
        let block = rank(block_key(&target, Final::Delivered, 7)).expect("a block");
        let answer = rank(attempt(&target, 7, 1)).expect("an answer kept apart");
        let cursor = rank(id_key(Tag::Cursor, target.as_str())).expect("C");
        assert!(chunk < event_key && event_key < postings && postings < indexed && indexed < head);
        assert!(chunk < request_key && request_key < indexed);
        assert!(scanned < block && block < answer && answer < cursor);
        assert!(rank(meta("stats:ingest")).is_some());
        // Whatever must stay atomic with the rest of its group keeps the group one batch (a
        // retry's attempt record goes with its pending entry).
        for k in [
            pending(&target, 7),
            id_key(Tag::Target, target.as_str()),
            id_key(Tag::Disabled, target.as_str()),
            format(),
            meta("replicated"),
            meta("token:admin"),
        ] {
            assert_eq!(rank(k.clone()), None, "{k:?}");
        }
    }

    #[test]
    fn the_tags_are_the_bytes_on_disk_and_each_is_one_keyspace() {
        let bytes: String = Tag::ALL.iter().map(|t| char::from(t.byte())).collect();
        assert_eq!(bytes, "EKXTSZQCWPADLFOUYRGNIMBHVJ");
        for tag in Tag::ALL {
            assert_eq!(Tag::of(tag.byte()), Some(tag));
        }
        assert_eq!(Tag::of(b'v'), None);
    }

    #[test]
    fn every_key_built_parses_back() {
        let t = TargetId::generate();
        let id = EventId::with_seq(1, 9);
        let cases = [
            (chunk(7), Key::Chunk { first: 7 }),
            (id_key(Tag::Idempotency, "key-1"), Key::Idempotency(b"key-1".to_vec())),
            (id_key(Tag::External, "mx"), Key::External(b"mx".to_vec())),
            (id_key(Tag::Target, t.as_str()), Key::Target(t.clone())),
            (id_key(Tag::Cursor, t.as_str()), Key::Cursor(t.clone())),
            (id_key(Tag::Scanned, t.as_str()), Key::Scanned(t.clone())),
            (id_key(Tag::Disabled, t.as_str()), Key::Disabled(t.clone())),
            (pending(&t, 5), Key::Pending { target: t.clone(), seq: 5 }),
            (attempt(&t, 5, 3), Key::Attempt { seq: 5, target: t.clone(), n: 3 }),
            (final_key(&t, Final::Dead, 70), Key::Final { target: t.clone(), done: Final::Dead, seq: 70 }),
            (block_key(&t, Final::Delivered, 130), Key::Block { target: t.clone(), done: Final::Delivered, block: 2 }),
            (numbered(Tag::Request, 100, 2), Key::Request { at_ms: 100, n: 2 }),
            (numbered(Tag::Audit, 100, 3), Key::Audit { at_ms: 100, n: 3 }),
            (
                at_seq(&text_prefix(Tag::TypeIndex, "crm_field_update"), 4),
                Key::Term { tag: Tag::TypeIndex, value: "crm_field_update".into(), first: 4 },
            ),
            (record_key(63, 4), Key::Records { bucket: 63, first: 4 }),
            (legacy_id(&id), Key::LegacyId(id.clone())),
            (head(), Key::Meta("head".into())),
            (api_key("key_1"), Key::ApiKeyId("key_1".into())),
            (retired(&[9; 32]), Key::Retired([9; 32])),
        ];
        for (k, want) in cases {
            assert_eq!(Key::parse(&k), Some(want), "{k:?}");
        }
        let s = SubscriptionId::generate();
        assert_eq!(Key::parse(&id_key(Tag::Subscription, s.as_str())), Some(Key::Subscription(s)));
        let z = SourceId::generate();
        assert_eq!(Key::parse(&id_key(Tag::Source, z.as_str())), Some(Key::Source(z.clone())));
        let q = RejectedId::generate();
        assert_eq!(Key::parse(&id_key(Tag::Rejected, q.as_str())), Some(Key::Rejected(q.clone())));
        assert_eq!(Key::parse(&rejected_of(&z, Some(&q))), Some(Key::RejectedOf { source: z.clone(), id: q.clone() }));
        assert!(rejected_of(&z, Some(&q)).starts_with(&rejected_of(&z, None)));
        assert_eq!(Key::parse(&rejected_of(&z, None)), None);
        let digest = [7; DIGEST_LEN];
        assert_eq!(Key::parse(&rejected_bytes(&z, &digest)), Some(Key::RejectedBytes { source: z, digest }));
    }

    #[test]
    fn prefixes_are_prefixes_and_other_shapes_do_not_parse() {
        let t = TargetId::generate();
        assert!(final_key(&t, Final::Delivered, 3).starts_with(&final_prefix(&t, Final::Delivered)));
        assert!(block_key(&t, Final::Dead, 3).starts_with(&block_prefix(&t, Final::Dead)));
        assert!(attempt(&t, 3, 1).starts_with(&attempts_to(&t, 3)));
        assert!(attempts_to(&t, 3).starts_with(&attempts_of(3)));
        assert!(record_key(5, 3).starts_with(&record_prefix(5)));
        // Format 1's record-id keys, a truncated key, a bad state, a prefix alone.
        assert_eq!(Key::parse(&at_seq(&text_prefix(Tag::RecordIndex, "r1"), 3)), None);
        assert_eq!(Key::parse(&chunk(3)[..5]), None);
        let mut bad = final_key(&t, Final::Dead, 3);
        bad[1 + TargetId::LEN] = b'q';
        assert_eq!(Key::parse(&bad), None);
        assert_eq!(Key::parse(&final_prefix(&t, Final::Dead)), None);
        assert_eq!(Key::parse(&[]), None);
    }
}
