//! Writing files so that a crash leaves the old file or the new one, never a torn one:
//! the one atomic write every cmesh program uses.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably: into a temporary file beside it,
/// fsynced, renamed over `path`, then the directory fsynced (the rename alone can be lost
/// in a crash). A reader sees the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes).map_err(|e| f.context(e))?;
    f.commit()
}

/// A file written as a stream and then put in place as [`write_atomic`] does: nothing
/// appears at `path` until [`AtomicFile::commit`]; dropped without a commit, it leaves
/// nothing (a process killed part-way leaves the temporary file, which the next write of
/// the same file replaces).
pub struct AtomicFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::fs::File>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        // A fixed name: a write killed part-way leaves this file, and the next write of
        // the same file replaces it (a per-process name would pile up).
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = AtomicFile {
            path: path.to_owned(),
            tmp,
            file: None,
        };
        f.file = Some(std::fs::File::create(&f.tmp).map_err(|e| f.context(e))?);
        Ok(f)
    }

    fn context(&self, e: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", self.path.display()),
        )
    }

    /// fsyncs the file, renames it over the path, fsyncs the directory.
    pub fn commit(mut self) -> std::io::Result<()> {
        let file = self.file.take().expect("an uncommitted file is open");
        let done = file
            .sync_all()
            .and_then(|()| std::fs::rename(&self.tmp, &self.path));
        if let Err(e) = done {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(self.context(e));
        }
        // Make the rename durable. Some filesystems refuse to fsync a directory: the
        // file itself is then as durable as they allow.
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("open until committed").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("open until committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new and longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new and longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("report.json")]);
        // A temporary file a killed writer left is replaced by the next write.
        std::fs::write(dir.path().join(".report.json.tmp"), b"half").unwrap();
        write_atomic(&path, b"again").unwrap();
        assert!(!dir.path().join(".report.json.tmp").exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"again");
        let e = write_atomic(&dir.path().join("no/such/dir/x"), b"x").unwrap_err();
        assert!(e.to_string().contains("no/such/dir/x"), "{e}");
    }

    #[test]
    fn a_streamed_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.tar.gz");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"part one, ").unwrap();
        assert!(!path.exists(), "nothing in place before the commit");
        f.write_all(b"part two").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"part one, part two");
        // Dropped without a commit: the old file stays, no temporary is left.
        let mut g = AtomicFile::create(&path).unwrap();
        g.write_all(b"abandoned").unwrap();
        drop(g);
        assert_eq!(std::fs::read(&path).unwrap(), b"part one, part two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
