//! The run's two tokens, and how the coordinator tells them apart.
//!
//! - The **peers' token** (`runs/ID/token`) is in every container: it lets a peer
//!   register, beat, meet at barriers, read the plan and the chaos log, and it keys the
//!   mesh handshake.
//! - The **admin token** (`runs/ID/admin-token`) stays with the launcher. The coordinator
//!   holds only its SHA-256 digest ([`digest`]), so no container has it, and only it may
//!   change the run (`POST /v1/chaos`). It is also accepted wherever the peers' token is.
//!
//! Tokens travel only as files (never an environment variable or a command-line
//! argument, which `docker inspect` and `ps` would show) and in the [`HEADER`] HTTP
//! header; they are compared in time that does not depend on where they differ.

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
    #[error("{path} does not hold a SHA-256 digest (64 hex digits). The launcher writes it from runs/ID/admin-token")]
    NotDigest { path: PathBuf },
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

/// A new random token: 24 bytes from the operating system, in hex (48 characters).
pub fn random_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The SHA-256 digest of a token, in hex: what the coordinator holds of the admin token.
pub fn digest(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// The SHA-256 of `bytes`, in hex (also a report's digest).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Whether `s` spells a SHA-256 in hex: 64 hex digits, either case.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a file holding a token's [`digest`] (64 hex digits on its first line).
pub fn read_digest_file(path: &Path) -> Result<String, TokenError> {
    let digest = read_token_file(path)?;
    if !is_sha256_hex(&digest) {
        return Err(TokenError::NotDigest {
            path: path.to_owned(),
        });
    }
    Ok(digest.to_ascii_lowercase())
}

/// What a request's token lets it do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// The peers' token: take part in the run.
    Peer,
    /// The admin token: also change the run.
    Admin,
}

/// The tokens a coordinator accepts.
#[derive(Clone, Debug)]
pub struct Tokens {
    pub peers: String,
    /// The admin token's [`digest`]; without it no request is [`Role::Admin`].
    pub admin_digest: Option<String>,
}

impl Tokens {
    /// The role `presented` gives, or `None` for a wrong or missing token.
    pub fn role(&self, presented: &str) -> Option<Role> {
        if token_matches(&self.peers, presented) {
            return Some(Role::Peer);
        }
        let admin = self.admin_digest.as_deref()?;
        token_matches(admin, &digest(presented)).then_some(Role::Admin)
    }
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
    fn the_admin_token_is_known_by_its_digest_only() {
        let tokens = Tokens {
            peers: "peer-token".into(),
            admin_digest: Some(digest("admin-token")),
        };
        assert_eq!(tokens.role("peer-token"), Some(Role::Peer));
        assert_eq!(tokens.role("admin-token"), Some(Role::Admin));
        assert_eq!(tokens.role(&digest("admin-token")), None);
        assert_eq!(tokens.role(""), None);
        let no_admin = Tokens {
            admin_digest: None,
            ..tokens
        };
        assert_eq!(no_admin.role("admin-token"), None);
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn digest_files_hold_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sha256");
        std::fs::write(&path, format!("{}\n", digest("x").to_uppercase())).unwrap();
        assert_eq!(read_digest_file(&path).unwrap(), digest("x"));
        std::fs::write(&path, "abc\n").unwrap();
        let err = read_digest_file(&path).unwrap_err();
        assert!(matches!(err, TokenError::NotDigest { .. }), "{err}");
    }

    #[test]
    fn compares_whole_tokens() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("abc", ""));
    }
}
