//! The per-run token that authenticates peers and the launcher to the coordinator.
//!
//! The token travels only as a file (never an environment variable or a command-line
//! argument, which `docker inspect` and `ps` would show) and in the
//! [`HEADER`] HTTP header.

use std::path::{Path, PathBuf};

/// The HTTP header that carries the run token.
pub const HEADER: &str = "x-cmesh-token";

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot read the token file {path}: {source}. Pass --token-file with a file that holds the run token")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is empty. Write the run token into it (any non-empty line of printable characters)")]
    Empty { path: PathBuf },
    #[error("the token file {path} holds characters that cannot go in an HTTP header. Use printable ASCII only")]
    NotPrintable { path: PathBuf },
}

/// Reads a token file: its first line, trimmed. Fails if the file is missing, empty or
/// holds characters that cannot travel in a header.
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotPrintable {
            path: path.to_owned(),
        });
    }
    Ok(token)
}

/// Compares a presented token with the expected one in time that does not depend on
/// where they first differ.
pub fn token_matches(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_first_line_trimmed() {
        let dir = std::env::temp_dir().join(format!("cmesh-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "  s3cret \nignored\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(TokenError::Empty { .. })
        ));
        std::fs::write(&path, "a b").unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(TokenError::NotPrintable { .. })
        ));
        let missing = dir.join("missing");
        let err = read_token_file(&missing).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn compares_whole_tokens() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", ""));
    }
}
