//! Writing files so that a crash leaves the old file or the new one, never a torn one:
//! the one atomic write every cmesh program uses.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically and durably: into a temporary file beside it,
/// fsynced, renamed over `path`, then the directory fsynced (the rename alone can be lost
/// in a crash). A reader sees the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // A fixed name: a write killed part-way leaves this file, and the next write of the
    // same file replaces it (a per-process name would pile up).
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::new(
            e.kind(),
            format!("cannot write {}: {e}", path.display()),
        ));
    }
    // Make the rename durable. Some filesystems refuse to fsync a directory: the file
    // itself is then as durable as they allow.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
}
