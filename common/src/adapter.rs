//! The adapter protocol, version [`PROTOCOL_VERSION`]: how a cmesh peer drives any app
//! through a program of the user's (the *adapter*) that speaks newline-delimited JSON on
//! its standard input and output, in the spirit of Maelstrom's nodes.
//!
//! The peer owns the run: registration, the plan, timing, clocks, shaping, faults,
//! checkpoints and the report. The adapter owns the app: it starts it, hands it the
//! records the peer writes, and tells the peer when a record written elsewhere has
//! arrived. One JSON object per line, each with a `type`:
//!
//! ```text
//! peer ──► adapter  init ─ write* ─ neighbours* ─ published* ─ barrier_released* ─ stop
//! adapter ──► peer  ready ─ (written | seen | links | log | publish | subscribe | barrier)* ─ stopped
//! ```
//!
//! - [`ToAdapter`]: what the peer sends; [`FromAdapter`]: what it takes back. A line
//!   that does not parse, one longer than [`MAX_LINE_BYTES`], an `error`, or an adapter
//!   that exits or misses a deadline ends *that peer* with `failed` and the reason.
//! - [`RecordId`]: a record's id, `ORIGIN-SEQ-MICROS` (its origin's plan index, its
//!   sequence number from 1, and when it was written, in Unix microseconds on the
//!   origin's clock). The adapter treats it as an opaque string, safe as a file name;
//!   the peer reads the write time back out of it, so latency needs no other field.
//! - The sync service (`publish`, `subscribe`, `barrier`) goes through the peer to the
//!   coordinator: what apps must exchange before they connect (device ids, keys,
//!   addresses). Its bounds are [`SyncLimits`]. The adapter never sees the run's tokens.
//!
//! `docs/apps.md` is the user's guide and holds the JSON Schema of every message.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The protocol version in `init`; an adapter that speaks another should say so with an
/// `error` and exit.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side may send, newline excluded. A longer one from the
/// adapter ends the peer.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A record's id: who wrote it, which of theirs it is, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    /// The origin's index in the plan.
    pub origin: u32,
    /// The origin's sequence number, from 1.
    pub seq: u64,
    /// When the origin wrote it, Unix microseconds on the origin's clock.
    pub written_at_us: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.origin, self.seq, self.written_at_us)
    }
}

impl FromStr for RecordId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            let shown: String = s.chars().take(64).collect();
            format!("`{shown}` is not a record id (ORIGIN-SEQ-MICROS, as the peer wrote it)")
        };
        let mut parts = s.split('-');
        let mut number = || -> Result<u64, String> {
            let part = parts.next().ok_or_else(bad)?;
            if part.is_empty() || part.len() > 20 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        let origin = u32::try_from(number()?).map_err(|_| bad())?;
        let (seq, written_at_us) = (number()?, number()?);
        if parts.next().is_some() || seq == 0 {
            return Err(bad());
        }
        Ok(RecordId {
            origin,
            seq,
            written_at_us,
        })
    }
}

impl Serialize for RecordId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RecordId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A peer the app may connect to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Its peer (container) name, e.g. `r1-peer-0002`.
    pub peer: String,
    /// Its index in the plan.
    pub index: u32,
    /// The name or address its container is reached at (DNS on the run's network).
    pub host: String,
    /// `host:port` of the peer's own listen port, which its app may take over.
    pub addr: String,
}

/// What the peer tells the adapter once, first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Init {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    pub run: String,
    /// This peer's name and plan index.
    pub peer: String,
    pub index: u32,
    /// Peers in the run.
    pub peers: usize,
    /// An empty directory the app may keep its state in; kept with the peer's report.
    pub data_dir: String,
    /// The `ip:port` the peer was told to listen on, free for the app to bind.
    pub listen: String,
    /// This peer's `host:port` as the others reach it.
    pub advertise: String,
    /// The peers the plan connects this one to.
    pub neighbours: Vec<Neighbour>,
    /// How long the peers write, and how large each record's payload is.
    pub duration_ms: u64,
    pub payload_bytes: usize,
}

/// Whose publications a subscription delivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscribeFrom {
    /// The plan's neighbours of this peer (as drawn at the start).
    #[default]
    Neighbours,
    /// Every peer of the run, this one included.
    All,
}

/// A message from the peer to the adapter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAdapter {
    /// Start the app; answer `ready` within the init deadline.
    Init(Init),
    /// Write one record into the app; answer `written` once the app took it.
    Write { id: RecordId, payload: String },
    /// The graph was re-drawn (mobility): connect to these now, drop the others.
    Neighbours { neighbours: Vec<Neighbour> },
    /// A value published on a topic this adapter subscribed to.
    Published {
        topic: String,
        peer: String,
        index: u32,
        value: String,
    },
    /// Every peer arrived at the app barrier `name` (or ended).
    BarrierReleased { name: String },
    /// Stop the app, answer `stopped`, and exit.
    Stop,
}

/// How loud an adapter's `log` line is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

/// A message from the adapter to the peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromAdapter {
    /// The app is up and will take writes.
    Ready,
    /// The app accepted the write `id` (feeds availability).
    Written { id: RecordId },
    /// The record `id`, written by another peer, is now held by this app; `at_us`, the
    /// app's own time of arrival (Unix microseconds, this container's clock), if it
    /// knows it better than the moment this line arrives.
    Seen {
        id: RecordId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at_us: Option<u64>,
    },
    /// How many peers the app is connected to now.
    Links { count: u32 },
    /// A line for the peer's log.
    Log {
        #[serde(default)]
        level: LogLevel,
        message: String,
    },
    /// The app cannot go on: the peer fails with this message.
    Error { message: String },
    /// Publish `value` on `topic` (the sync service).
    Publish { topic: String, value: String },
    /// Deliver `topic`'s values, past and future, as `published`.
    Subscribe {
        topic: String,
        #[serde(default)]
        from: SubscribeFrom,
    },
    /// Arrive at the app barrier `name`; `barrier_released` follows when every peer has.
    Barrier { name: String },
    /// Answer to `stop`: the app has stopped.
    Stopped,
}

impl FromAdapter {
    /// Parses one line from the adapter.
    pub fn parse(line: &str) -> Result<FromAdapter, String> {
        serde_json::from_str(line).map_err(|e| {
            let shown: String = line.chars().take(120).collect();
            format!("the adapter sent a line that is not a protocol message ({e}): {shown}")
        })
    }
}

/// The sync service's bounds, for a run. An adapter past one gets a clear error and its
/// peer fails; nothing past a bound is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncLimits {
    /// Distinct topics in a run.
    pub topics: usize,
    /// Bytes of one value.
    pub value_bytes: usize,
    /// Values one peer may publish, over all topics.
    pub per_peer: usize,
    /// Bytes of every value of the run together.
    pub total_bytes: usize,
    /// Distinct app barriers one peer may arrive at.
    pub barriers_per_peer: usize,
}

/// The limits every run has.
pub const SYNC_LIMITS: SyncLimits = SyncLimits {
    topics: 64,
    value_bytes: 4096,
    per_peer: 64,
    total_bytes: 32 << 20,
    barriers_per_peer: 8,
};

/// Checks a topic or app barrier name: 1 to 64 of `a-z A-Z 0-9 - _`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        let shown: String = name.chars().take(64).collect();
        return Err(format!(
            "`{shown}` is not a {what} name: use 1 to 64 of a-z A-Z 0-9 - _"
        ));
    }
    Ok(())
}

/// The coordinator's barrier that stands for the app barrier `name`, apart from the
/// barriers the peer itself meets at.
pub fn app_barrier(name: &str) -> String {
    format!("app-{name}")
}

/// One value on a topic, as the coordinator keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// 1, 2, … per topic, in the order the coordinator took them.
    pub seq: u64,
    pub peer: String,
    pub value: String,
}

/// `POST /v1/sync/{topic}`: a peer publishes a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    pub peer: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_round_trip_and_refuse_anything_else() {
        let id = RecordId {
            origin: 3,
            seq: 17,
            written_at_us: 1_733_580_000_123_456,
        };
        assert_eq!(id.to_string(), "3-17-1733580000123456");
        assert_eq!("3-17-1733580000123456".parse::<RecordId>(), Ok(id));
        for bad in [
            "",
            "3-17",
            "3-17-1-1",
            "3-0-5",
            "-3-17-5",
            "3--5",
            "a-1-1",
            "3-17-+5",
            "4294967296-1-1",
            "1-99999999999999999999999-1",
        ] {
            let e = bad.parse::<RecordId>().unwrap_err();
            assert!(e.contains("is not a record id"), "{bad}: {e}");
        }
        let long = "9".repeat(10_000);
        assert!(long.parse::<RecordId>().unwrap_err().len() < 200);
    }

    #[test]
    fn messages_have_the_documented_shape() {
        let w = ToAdapter::Write {
            id: "0-1-5".parse().unwrap(),
            payload: "xx".into(),
        };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"type":"write","id":"0-1-5","payload":"xx"}"#
        );
        assert_eq!(
            serde_json::to_string(&ToAdapter::Stop).unwrap(),
            r#"{"type":"stop"}"#
        );
        assert_eq!(
            FromAdapter::parse(r#"{"type":"ready"}"#),
            Ok(FromAdapter::Ready)
        );
        assert_eq!(
            FromAdapter::parse(r#"{"type":"seen","id":"2-9-100","at_us":150}"#),
            Ok(FromAdapter::Seen {
                id: "2-9-100".parse().unwrap(),
                at_us: Some(150)
            })
        );
        assert_eq!(
            FromAdapter::parse(r#"{"type":"subscribe","topic":"device-id"}"#),
            Ok(FromAdapter::Subscribe {
                topic: "device-id".into(),
                from: SubscribeFrom::Neighbours
            })
        );
        assert_eq!(
            FromAdapter::parse(r#"{"type":"log","message":"up"}"#),
            Ok(FromAdapter::Log {
                level: LogLevel::Info,
                message: "up".into()
            })
        );
        for bad in [
            "",
            "garbage",
            "{}",
            r#"{"type":"launch"}"#,
            r#"{"type":"seen","id":"x"}"#,
            r#"{"type":"written"}"#,
        ] {
            let e = FromAdapter::parse(bad).unwrap_err();
            assert!(e.contains("not a protocol message"), "{bad}: {e}");
        }
    }

    /// The JSON Schema in docs/apps.md lists exactly the messages the types have.
    #[test]
    fn the_documented_schema_names_every_message() {
        let doc = include_str!("../../docs/apps.md");
        let start = doc.find("### JSON Schema").expect("a schema section");
        let block = &doc[start..];
        let open = block.find("```json\n").expect("a json block") + 8;
        let close = open + block[open..].find("```").expect("its end");
        let schema: serde_json::Value = serde_json::from_str(&block[open..close]).unwrap();
        let types = |side: &str| -> Vec<String> {
            schema["$defs"][side]["oneOf"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    m["properties"]["type"]["const"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        let id: RecordId = "0-1-1".parse().unwrap();
        let to = [
            ToAdapter::Init(Init {
                protocol: 1,
                run: "r".into(),
                peer: "p".into(),
                index: 0,
                peers: 1,
                data_dir: "/d".into(),
                listen: "l".into(),
                advertise: "a".into(),
                neighbours: vec![],
                duration_ms: 1,
                payload_bytes: 1,
            }),
            ToAdapter::Write {
                id,
                payload: String::new(),
            },
            ToAdapter::Neighbours { neighbours: vec![] },
            ToAdapter::Published {
                topic: "t".into(),
                peer: "p".into(),
                index: 0,
                value: String::new(),
            },
            ToAdapter::BarrierReleased { name: "b".into() },
            ToAdapter::Stop,
        ];
        let from = [
            FromAdapter::Ready,
            FromAdapter::Written { id },
            FromAdapter::Seen { id, at_us: None },
            FromAdapter::Links { count: 0 },
            FromAdapter::Log {
                level: LogLevel::Info,
                message: String::new(),
            },
            FromAdapter::Error {
                message: String::new(),
            },
            FromAdapter::Publish {
                topic: "t".into(),
                value: String::new(),
            },
            FromAdapter::Subscribe {
                topic: "t".into(),
                from: SubscribeFrom::All,
            },
            FromAdapter::Barrier { name: "b".into() },
            FromAdapter::Stopped,
        ];
        let names = |v: Vec<serde_json::Value>| -> Vec<String> {
            v.iter()
                .map(|m| m["type"].as_str().unwrap().to_owned())
                .collect()
        };
        let to: Vec<_> = to
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .collect();
        let from: Vec<_> = from
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .collect();
        // Every field a message has is in the schema's properties for it.
        for (side, messages) in [("to_adapter", &to), ("from_adapter", &from)] {
            for m in messages.iter() {
                let documented = schema["$defs"][side]["oneOf"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|d| d["properties"]["type"]["const"] == m["type"])
                    .unwrap_or_else(|| panic!("{side}: {} is not documented", m["type"]));
                for field in m.as_object().unwrap().keys() {
                    assert!(
                        documented["properties"].get(field).is_some(),
                        "{side} {}: field {field} is not documented",
                        m["type"]
                    );
                }
            }
        }
        assert_eq!(types("to_adapter"), names(to));
        assert_eq!(types("from_adapter"), names(from));
    }

    #[test]
    fn topic_and_barrier_names_are_bounded() {
        assert!(check_name("topic", "device-id_2").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            let e = check_name("topic", bad).unwrap_err();
            assert!(e.contains("is not a topic name"), "{e}");
        }
        assert_eq!(app_barrier("linked"), "app-linked");
    }
}
