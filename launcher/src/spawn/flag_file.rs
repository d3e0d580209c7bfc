//! Files that flags name (`--secret-file`, `--adapter`): read whole, bounded, and
//! checked before anything is created.

use cmesh_common::exit::bad_input;
use std::path::Path;

/// The file a flag names, whole: bad input, naming the flag and the file, if it is not a
/// regular file (a FIFO would hold spawn forever), cannot be read, is over `max` bytes,
/// or holds only white space (`empty`: what it should hold instead).
pub fn read_flag_file(flag: &str, path: &Path, empty: &str, max: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let unreadable =
        |e: std::io::Error| bad_input(format!("{flag} {}: cannot read it: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(bad_input(format!(
            "{flag} {}: not a regular file; name a file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > max {
        return Err(bad_input(format!(
            "{flag} {} is over {max} bytes, the most it may hold",
            path.display()
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_input(format!(
            "{flag} {} is empty; {empty}",
            path.display()
        )));
    }
    Ok(bytes)
}
