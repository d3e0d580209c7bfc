//! A host's reports archive, streamed to disk and split per container as it streams.
//!
//! The engine sends a tar of the reports volume (`reports/<container>/...`) or of one
//! container's report directory (`<container>/...`). [`split_to_disk`] reads it once, as
//! a stream: each entry goes straight into its container's `report.tar.gz` (laid out as
//! `report/...`, gzipped, hashed as it is written), so memory stays bounded by a few
//! buffers whatever the archive holds. The engine's tar walks directories in order, so a
//! container's entries come together and one output file is open at a time; an entry
//! that comes back to a container already closed is left out, and that container is
//! marked truncated.
//!
//! Byte caps ([`Caps`]) bound what a container can make the launcher write: per file,
//! per container and per host, counted on the tar stream (headers included). A file over
//! a cap keeps its first bytes up to it; later entries past a container's or the host's
//! cap are left out. Either way the container's [`Split::truncated`] says what and why,
//! and the rest of the archive is read on (skipped bytes are read and dropped, never
//! held), so the other containers are unaffected.

use anyhow::Context;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::PathBuf;

/// A file written by extract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

/// A tar header or padding block.
const BLOCK: u64 = 512;

/// Byte caps on what extract writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub file: u64,
    pub container: u64,
    pub host: u64,
}

/// The defaults of `extract --max-file-mib`, `--max-container-mib`, `--max-host-mib`.
pub const DEFAULT_FILE_MIB: u64 = 64;
pub const DEFAULT_CONTAINER_MIB: u64 = 256;
pub const DEFAULT_HOST_MIB: u64 = 16 * 1024;

impl Default for Caps {
    fn default() -> Self {
        Caps::mib(DEFAULT_FILE_MIB, DEFAULT_CONTAINER_MIB, DEFAULT_HOST_MIB)
    }
}

impl Caps {
    pub fn mib(file: u64, container: u64, host: u64) -> Caps {
        Caps {
            file: file.saturating_mul(1 << 20),
            container: container.saturating_mul(1 << 20),
            host: host.saturating_mul(1 << 20),
        }
    }
}

/// The files whose presence (whole, not truncated) extract reports.
pub const WATCHED: [&str; 3] = [
    "report/report.json",
    "report/coordinator.json",
    "report/checkpoint.json",
];

/// One container's part of the archive, as written to `<dir>/report.tar.gz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub file: FileEntry,
    /// Which of [`WATCHED`] it holds whole.
    pub whole: BTreeSet<&'static str>,
    /// What was cut or left out, and why.
    pub truncated: Option<String>,
}

/// sha256 and length of what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A gzipped file being written in place of `path`, hashed as it goes.
type GzFile = GzEncoder<Hashing<cmesh_common::fsutil::AtomicFile>>;

fn gz_file(path: &std::path::Path) -> anyhow::Result<GzFile> {
    let file = cmesh_common::fsutil::AtomicFile::create(path)?;
    Ok(GzEncoder::new(
        Hashing {
            inner: file,
            hash: Sha256::new(),
            bytes: 0,
        },
        flate2::Compression::fast(),
    ))
}

/// Finishes the gzip stream and puts the file in place; its checksum and size.
fn commit(gz: GzFile) -> anyhow::Result<FileEntry> {
    let hashing = gz.finish()?;
    let entry = FileEntry {
        sha256: hex::encode(hashing.hash.finalize()),
        bytes: hashing.bytes,
    };
    hashing.inner.commit()?;
    Ok(entry)
}

/// A gzipped file written in pieces (a container's logs, as they stream), in place of
/// `path` once finished, keeping at most `cap` bytes of what it is given.
pub struct CappedGz {
    gz: GzFile,
    left: u64,
    cut: bool,
}

impl CappedGz {
    pub fn create(path: &std::path::Path, cap: u64) -> anyhow::Result<CappedGz> {
        Ok(CappedGz {
            gz: gz_file(path)?,
            left: cap,
            cut: false,
        })
    }

    /// Adds `bytes`, up to the cap.
    pub fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let keep = bytes
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.gz.write_all(&bytes[..keep])?;
        self.left -= keep as u64;
        self.cut |= keep < bytes.len();
        Ok(())
    }

    /// True once more than the cap was given: the rest need not be read.
    pub fn is_full(&self) -> bool {
        self.cut
    }

    /// Puts the file in place: its entry, and whether anything was cut.
    pub fn finish(self) -> anyhow::Result<(FileEntry, bool)> {
        Ok((commit(self.gz)?, self.cut))
    }
}

type Out = tar::Builder<GzFile>;

/// The container being written.
struct Open {
    name: String,
    out: Out,
    bytes: u64,
    whole: BTreeSet<&'static str>,
    truncated: Vec<String>,
}

impl Open {
    fn new(name: &str, dir: &std::path::Path) -> anyhow::Result<Open> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Open {
            name: name.to_owned(),
            out: tar::Builder::new(gz_file(&dir.join("report.tar.gz"))?),
            bytes: 0,
            whole: BTreeSet::new(),
            truncated: Vec::new(),
        })
    }

    fn close(self) -> anyhow::Result<(String, Split)> {
        let file = commit(self.out.into_inner()?)?;
        let truncated = (!self.truncated.is_empty()).then(|| self.truncated.join("; "));
        Ok((
            self.name,
            Split {
                file,
                whole: self.whole,
                truncated,
            },
        ))
    }
}

/// The container an archive path belongs to, and the path inside its report directory
/// (`report/...`).
fn place(path: &std::path::Path) -> Option<(String, String)> {
    let mut parts = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let name = match parts.next() {
        Some(top) if top == "reports" => parts.next(),
        other => other,
    }?;
    let rest: Vec<String> = parts.collect();
    let inner = if rest.is_empty() {
        "report/".to_owned()
    } else {
        format!("report/{}", rest.join("/"))
    };
    Some((name, inner))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Reads the tar stream `archive` once and writes each container's part to
/// `dir_of(container)/report.tar.gz`; containers `dir_of` does not know are skipped.
/// Returns what each container came to. An error in the stream ends the split with that
/// error; containers closed before it are on disk, the one being written is not.
pub fn split_to_disk(
    archive: impl Read,
    caps: Caps,
    dir_of: impl Fn(&str) -> Option<PathBuf>,
) -> anyhow::Result<BTreeMap<String, Split>> {
    let mut done: BTreeMap<String, Split> = BTreeMap::new();
    let mut open: Option<Open> = None;
    let mut host_bytes = 0u64;
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries()? {
        let mut entry = entry?;
        let Some((name, inner)) = place(&entry.path()?) else {
            continue;
        };
        let Some(dir) = dir_of(&name) else {
            continue;
        };
        if open.as_ref().is_none_or(|o| o.name != name) {
            if let Some(o) = open.take() {
                let (n, split) = o.close()?;
                done.insert(n, split);
            }
            if let Some(split) = done.get_mut(&name) {
                // Not contiguous: the engine's tar does not do this.
                let why = format!("{inner}: left out (the archive came back to it out of order)");
                split.truncated = Some(match split.truncated.take() {
                    Some(t) => format!("{t}; {why}"),
                    None => why,
                });
                continue;
            }
            open = Some(Open::new(&name, &dir)?);
        }
        let o = open.as_mut().expect("opened above");
        let size = entry.header().size()?;
        let room_container = caps.container.saturating_sub(o.bytes + BLOCK);
        let room_host = caps.host.saturating_sub(host_bytes + BLOCK);
        if o.bytes + BLOCK > caps.container || host_bytes + BLOCK > caps.host {
            let why = if host_bytes + BLOCK > caps.host {
                format!(
                    "the host's archive reached its cap of {} (--max-host-mib)",
                    mib(caps.host)
                )
            } else {
                format!(
                    "the container reached its cap of {} (--max-container-mib)",
                    mib(caps.container)
                )
            };
            if !o.truncated.iter().any(|t| t.starts_with("entries from ")) {
                o.truncated
                    .push(format!("entries from {inner} on left out: {why}"));
            }
            continue;
        }
        let keep = size.min(caps.file).min(room_container).min(room_host);
        if keep < size {
            let (cap, flag) = if keep == caps.file {
                (caps.file, "--max-file-mib")
            } else if keep == room_container {
                (caps.container, "--max-container-mib")
            } else {
                (caps.host, "--max-host-mib")
            };
            o.truncated.push(format!(
                "{inner} is {size} bytes; kept the first {keep} (cap {}, {flag})",
                mib(cap)
            ));
        } else if let Some(w) = WATCHED.iter().find(|w| **w == inner) {
            o.whole.insert(w);
        }
        let mut header = entry.header().clone();
        header.set_size(keep);
        o.out
            .append_data(&mut header, &inner, (&mut entry).take(keep))
            .with_context(|| format!("writing {inner} of {name}"))?;
        let used = BLOCK + keep.div_ceil(BLOCK) * BLOCK;
        o.bytes += used;
        host_bytes += used;
        // What is left of a cut entry is read and dropped when the next one is read.
    }
    if let Some(o) = open.take() {
        let (n, split) = o.close()?;
        done.insert(n, split);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `files` (path, bytes).
    fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// `(path, size)` of every entry of a written `report.tar.gz`.
    fn listing(path: &std::path::Path) -> Vec<(String, u64)> {
        let f = std::fs::File::open(path).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.size())
            })
            .collect()
    }

    fn split(archive: &[u8], caps: Caps, dir: &std::path::Path) -> BTreeMap<String, Split> {
        split_to_disk(archive, caps, |n| (n != "stranger").then(|| dir.join(n))).unwrap()
    }

    #[test]
    fn splits_per_container_and_hashes_what_it_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_of(&[
            ("reports/a/report.json", b"{}".to_vec()),
            ("reports/a/events.jsonl", b"x\n".to_vec()),
            ("reports/b/checkpoint.json", b"{}".to_vec()),
            ("reports/stranger/report.json", b"{}".to_vec()),
        ]);
        let out = split(&archive, Caps::default(), dir.path());
        assert_eq!(out.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(out["a"].whole, BTreeSet::from(["report/report.json"]));
        assert_eq!(out["b"].whole, BTreeSet::from(["report/checkpoint.json"]));
        assert!(out["a"].truncated.is_none());
        let file = dir.path().join("a/report.tar.gz");
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(out["a"].file.bytes, bytes.len() as u64);
        assert_eq!(out["a"].file.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(
            listing(&file),
            [
                ("report/report.json".into(), 2),
                ("report/events.jsonl".into(), 2)
            ]
        );
        assert!(!dir.path().join("stranger").exists());
        // One container's own directory (`a/...`) works the same.
        let own = tar_of(&[("a/report.json", b"{}".to_vec())]);
        let out = split(&own, Caps::default(), dir.path());
        assert_eq!(out["a"].whole, BTreeSet::from(["report/report.json"]));
    }

    #[test]
    fn a_file_over_its_cap_is_cut_and_the_rest_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_of(&[
            ("reports/a/big.bin", vec![7u8; 10_000]),
            ("reports/a/report.json", b"{}".to_vec()),
            ("reports/b/report.json", b"{}".to_vec()),
        ]);
        let caps = Caps {
            file: 4_096,
            container: 1 << 20,
            host: 1 << 20,
        };
        let out = split(&archive, caps, dir.path());
        let why = out["a"].truncated.as_deref().unwrap();
        assert!(
            why.contains("report/big.bin is 10000 bytes; kept the first 4096"),
            "{why}"
        );
        assert!(why.contains("--max-file-mib"), "{why}");
        assert_eq!(out["a"].whole, BTreeSet::from(["report/report.json"]));
        assert_eq!(
            listing(&dir.path().join("a/report.tar.gz")),
            [
                ("report/big.bin".into(), 4_096),
                ("report/report.json".into(), 2)
            ]
        );
        assert!(out["b"].truncated.is_none());
        assert_eq!(out["b"].whole, BTreeSet::from(["report/report.json"]));
    }

    #[test]
    fn container_and_host_caps_leave_out_later_entries() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_of(&[
            ("reports/a/1.bin", vec![1u8; 3_000]),
            ("reports/a/report.json", b"{}".to_vec()),
            ("reports/b/report.json", b"{}".to_vec()),
            ("reports/c/report.json", b"{}".to_vec()),
        ]);
        // a: 512 + 3072 for 1.bin fills its 3.5 KiB; report.json is left out.
        let caps = Caps {
            file: 1 << 20,
            container: 3_584,
            host: 3_584 + 1_024,
        };
        let out = split(&archive, caps, dir.path());
        let why = out["a"].truncated.as_deref().unwrap();
        assert!(
            why.contains("entries from report/report.json on left out"),
            "{why}"
        );
        assert!(out["a"].whole.is_empty());
        // b fits in what the host has left (512 + 512); c does not.
        assert!(out["b"].truncated.is_none(), "{:?}", out["b"]);
        let why = out["c"].truncated.as_deref().unwrap();
        assert!(why.contains("--max-host-mib"), "{why}");
    }

    #[test]
    fn gzips_pieces_up_to_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs.txt.gz");
        let mut gz = CappedGz::create(&path, 4).unwrap();
        gz.write(b"012").unwrap();
        assert!(!gz.is_full());
        gz.write(b"3456789").unwrap();
        assert!(gz.is_full());
        assert!(!path.exists(), "in place only when finished");
        let (entry, more) = gz.finish().unwrap();
        assert!(more);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(entry.bytes, bytes.len() as u64);
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "0123");
        let mut gz = CappedGz::create(&path, 4).unwrap();
        gz.write(b"0123").unwrap();
        assert!(!gz.finish().unwrap().1, "exactly the cap is not over it");
    }

    #[test]
    fn a_broken_stream_keeps_what_was_closed_and_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tar_of(&[
            ("reports/a/report.json", b"{}".to_vec()),
            ("reports/b/report.json", vec![b' '; 5_000]),
        ]);
        let cut = &archive[..archive.len() - 3_000];
        let err = split_to_disk(cut, Caps::default(), |n| Some(dir.path().join(n)));
        assert!(err.is_err());
        assert!(dir.path().join("a/report.tar.gz").exists());
        assert!(!dir.path().join("b/report.tar.gz").exists());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("b")).unwrap().collect();
        assert!(left.is_empty(), "no temporary file left: {left:?}");
    }
}
