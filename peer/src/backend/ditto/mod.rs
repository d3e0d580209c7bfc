//! The `ditto` backend: the peer's records synced by a Ditto small peer
//! (`dittolive-ditto`), behind the `ditto` cargo feature.
//!
//! Everything here but `sdk` is plain code, compiled and tested with or without the
//! feature:
//! - [`Secret`]: the licence token and database id, from the secret file the launcher
//!   copies into the container (never from the environment, an image or a log);
//! - [`TransportPlan`]: what the plan means for Ditto's transports: TCP listen on the
//!   peer's port, TCP connections to exactly the neighbours it dials (the lower index
//!   dials, as in the mesh backend), every other transport off;
//! - [`record_to_document`] / [`document_to_record`]: a record is one document in the
//!   [`COLLECTION`] collection, written with DQL;
//!
//! `sdk` (only with the feature) opens Ditto with that configuration, inserts records
//! with DQL, and turns every document from another origin that its observer sees into a
//! latency sample in the shared [`crate::metrics::Metrics`], as the mesh backend does.

#[cfg(feature = "ditto")]
pub mod sdk;

use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The collection every record goes into.
pub const COLLECTION: &str = "cmesh_records";

/// What the secret file holds.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The offline licence token.
    pub license_token: String,
    /// The Ditto app / database id.
    pub database_id: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token, even in a debug dump.
        f.debug_struct("Secret")
            .field("license_token", &"<redacted>")
            .field("database_id", &self.database_id)
            .finish()
    }
}

impl Secret {
    /// Reads the secret file; errors say what is wrong without echoing its content.
    pub fn read(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the secret file {}: {e}; pass it with `launcher spawn --backend ditto --secret-file F`",
                path.display()
            )
        })?;
        Secret::parse(&text).map_err(|e| format!("secret file {}: {e}", path.display()))
    }

    /// Parses `key = value` lines (`#` comments, blank lines, optional quotes):
    /// `license_token` and `database_id` (`app_id` is taken for the latter).
    pub fn parse(text: &str) -> Result<Secret, String> {
        if text.trim().is_empty() {
            return Err("it is empty; it needs license_token = … and database_id = …".into());
        }
        let mut values = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
            let key = match key.trim() {
                "app_id" => "database_id",
                k @ ("license_token" | "database_id") => k,
                other => {
                    return Err(format!(
                        "line {}: unknown key `{other}`; use license_token and database_id",
                        n + 1
                    ))
                }
            };
            let value = value.trim().trim_matches('"').trim();
            if value.is_empty() {
                return Err(format!("line {}: `{key}` is empty", n + 1));
            }
            if values.insert(key, value.to_owned()).is_some() {
                return Err(format!("line {}: `{key}` is given twice", n + 1));
            }
        }
        let mut take = |key: &str| {
            values
                .remove(key)
                .ok_or_else(|| format!("`{key}` is missing"))
        };
        Ok(Secret {
            license_token: take("license_token")?,
            database_id: take("database_id")?,
        })
    }
}

/// Ditto's transports for one peer, from the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportPlan {
    /// TCP listen on all interfaces at this port (the peer's advertised port).
    pub listen_port: u16,
    /// `host:port` of the neighbours this peer connects to.
    pub connect: BTreeSet<String>,
}

impl TransportPlan {
    /// For peer `me` with `neighbours`, every peer's advertised `host:port` in `addrs`.
    pub fn new(me: u32, addrs: &[String], neighbours: &[u32]) -> Result<TransportPlan, String> {
        let own = addrs
            .get(me as usize)
            .ok_or_else(|| format!("peer {me} is not in the plan's {} addresses", addrs.len()))?;
        let listen_port = own
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .ok_or_else(|| format!("the peer's address `{own}` has no port"))?;
        let connect = neighbours
            .iter()
            .filter(|&&n| n > me)
            .map(|&n| {
                addrs
                    .get(n as usize)
                    .cloned()
                    .ok_or_else(|| format!("neighbour {n} is not in the plan"))
            })
            .collect::<Result<_, _>>()?;
        Ok(TransportPlan {
            listen_port,
            connect,
        })
    }
}

/// A record as one document: `_id` is `origin:seq`, so a record is inserted once.
pub fn record_to_document(origin: u32, seq: u64, written_at_us: u64, payload: &[u8]) -> Value {
    json!({
        "_id": format!("{origin}:{seq}"),
        "origin": origin,
        "seq": seq,
        "written_at_us": written_at_us,
        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
    })
}

/// A record read back from a document: `(origin, seq, written_at_us, payload)`.
pub fn document_to_record(doc: &Value) -> Result<(u32, u64, u64, Vec<u8>), String> {
    let num = |key: &str| {
        doc.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("document has no number `{key}`: {doc}"))
    };
    let origin = u32::try_from(num("origin")?).map_err(|_| "origin out of range".to_owned())?;
    let payload = doc
        .get("payload")
        .and_then(Value::as_str)
        .ok_or_else(|| "document has no `payload`".to_owned())
        .and_then(|p| {
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("payload is not base64: {e}"))
        })?;
    Ok((origin, num("seq")?, num("written_at_us")?, payload))
}

/// The DQL that inserts one record document (given as the `doc` argument).
pub const INSERT: &str = "INSERT INTO cmesh_records DOCUMENTS (:doc) ON ID CONFLICT DO NOTHING";
/// The DQL every peer subscribes to and observes.
pub const SELECT_ALL: &str = "SELECT * FROM cmesh_records";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_with_clear_errors_that_never_echo_the_token() {
        let s = Secret::parse(
            "# from the portal\nlicense_token = \"o2d1c2VyX2lk\"\napp_id = 1d2c7e0a\n",
        )
        .unwrap();
        assert_eq!(s.license_token, "o2d1c2VyX2lk");
        assert_eq!(s.database_id, "1d2c7e0a");
        assert!(
            !format!("{s:?}").contains("o2d1c2VyX2lk"),
            "redacted in Debug"
        );
        for (text, want) in [
            ("", "it is empty"),
            ("  \n\n", "it is empty"),
            ("database_id = x\n", "`license_token` is missing"),
            ("license_token = t\n", "`database_id` is missing"),
            (
                "license_token =\ndatabase_id = x",
                "line 1: `license_token` is empty",
            ),
            ("license_token t", "line 1: expected key = value"),
            ("token = t", "unknown key `token`"),
            (
                "database_id = a\napp_id = b\nlicense_token = t",
                "given twice",
            ),
        ] {
            let e = Secret::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains("= t"), "no value echoed: {e}");
        }
        let e = Secret::read(Path::new("/nonexistent/secret")).unwrap_err();
        assert!(
            e.contains("cannot read the secret file /nonexistent/secret"),
            "{e}"
        );
        assert!(e.contains("--secret-file"), "{e}");
    }

    #[test]
    fn the_plan_becomes_tcp_listen_and_connections_to_higher_neighbours() {
        let addrs: Vec<String> = (0..4)
            .map(|i| format!("r-peer-000{}:7000", i + 1))
            .collect();
        let t = TransportPlan::new(1, &addrs, &[0, 2, 3]).unwrap();
        assert_eq!(t.listen_port, 7000);
        assert_eq!(
            t.connect,
            BTreeSet::from(["r-peer-0003:7000".to_owned(), "r-peer-0004:7000".to_owned()]),
            "peer 0 dials 1; 1 dials 2 and 3"
        );
        assert!(TransportPlan::new(3, &addrs, &[0, 1])
            .unwrap()
            .connect
            .is_empty());
        assert!(TransportPlan::new(9, &addrs, &[]).is_err());
        assert!(TransportPlan::new(0, &["nohost".into()], &[])
            .unwrap_err()
            .contains("no port"));
    }

    #[test]
    fn records_round_trip_through_documents() {
        let doc = record_to_document(3, 17, 1_700_000_000_000_000, b"\x00\x01hi");
        assert_eq!(doc["_id"], "3:17");
        assert_eq!(
            document_to_record(&doc).unwrap(),
            (3, 17, 1_700_000_000_000_000, b"\x00\x01hi".to_vec())
        );
        assert!(document_to_record(&json!({"origin": 1, "payload": ""}))
            .unwrap_err()
            .contains("`seq`"));
        let bad = json!({"origin": 1, "seq": 1, "written_at_us": 1, "payload": "%%"});
        assert!(document_to_record(&bad).unwrap_err().contains("base64"));
    }
}
