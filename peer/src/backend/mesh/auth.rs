//! The mesh handshake's proof that the other end holds the run token.
//!
//! Anyone on an attachable overlay can reach a peer's sync port, and the run id and plan
//! indexes are no secret. So each side of a link proves it holds the run's peers' token
//! before either takes the other's version vector or records:
//!
//! 1. each side sends `Hello` with a fresh random [`Nonce`];
//! 2. each side sends `Auth` with [`proof`]: HMAC-SHA256 keyed by the token over the run
//!    id, the sender's and the receiver's plan indexes, the *receiver's* nonce (the
//!    challenge) and its own;
//! 3. each side [`verify`]s the other's proof; a wrong one (or another frame in its
//!    place) closes the connection and is counted (`handshakes_refused` in the peer's
//!    report); a connection closed before its proof is not counted.
//!
//! The indexes in the proof bind it to one direction of one link, so a proof cannot be
//! reflected back or replayed on another link, and the fresh nonces stop replays of an
//! old handshake. What is authenticated is the link's ends: frames after the handshake
//! carry no MAC (an on-path attacker on the overlay is answered by `spawn
//! --encrypt-overlay`, docs/security.md).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A handshake challenge: 16 random bytes, fresh for every connection.
pub type Nonce = [u8; 16];
/// A [`proof`]: an HMAC-SHA256.
pub type Proof = [u8; 32];

/// The key the proofs are made with: the run's peers' token. Never printed.
#[derive(Clone)]
pub struct RunKey(Vec<u8>);

impl RunKey {
    pub fn new(token: &str) -> RunKey {
        RunKey(token.as_bytes().to_vec())
    }
}

impl std::fmt::Debug for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunKey(<redacted>)")
    }
}

/// A fresh challenge, from the operating system's random source.
pub fn nonce() -> std::io::Result<Nonce> {
    use rand::TryRngCore;
    let mut n = Nonce::default();
    rand::rngs::OsRng
        .try_fill_bytes(&mut n)
        .map_err(|e| std::io::Error::other(format!("no random challenge: {e}")))?;
    Ok(n)
}

fn mac(
    key: &RunKey,
    run_id: &str,
    from: u32,
    to: u32,
    challenge: &Nonce,
    own: &Nonce,
) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(b"cmesh mesh link v1\0");
    mac.update(&(run_id.len() as u64).to_be_bytes());
    mac.update(run_id.as_bytes());
    mac.update(&from.to_be_bytes());
    mac.update(&to.to_be_bytes());
    mac.update(challenge);
    mac.update(own);
    mac
}

/// The proof peer `from` sends to peer `to`: over `to`'s `challenge` and `from`'s own
/// nonce.
pub fn proof(
    key: &RunKey,
    run_id: &str,
    from: u32,
    to: u32,
    challenge: &Nonce,
    own: &Nonce,
) -> Proof {
    mac(key, run_id, from, to, challenge, own)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` came from a holder of `key`: peer `from` answering peer `to`'s
/// `challenge`, with its nonce `theirs`. Compared in constant time.
pub fn verify(
    key: &RunKey,
    run_id: &str,
    from: u32,
    to: u32,
    challenge: &Nonce,
    theirs: &Nonce,
    proof: &Proof,
) -> bool {
    mac(key, run_id, from, to, challenge, theirs)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_holder_for_this_link_and_challenge_verifies() {
        let key = RunKey::new("token");
        let (a, b) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(a, b, "fresh nonces");
        // Peer 1 answers peer 4's challenge `b`.
        let p = proof(&key, "run", 1, 4, &b, &a);
        assert!(verify(&key, "run", 1, 4, &b, &a, &p));
        // A stranger's key, another run, the other direction (a reflection), another
        // link, an old challenge: all refused.
        assert!(!verify(&RunKey::new("guess"), "run", 1, 4, &b, &a, &p));
        assert!(!verify(&key, "run2", 1, 4, &b, &a, &p));
        assert!(!verify(&key, "run", 4, 1, &b, &a, &p));
        assert!(!verify(&key, "run", 1, 5, &b, &a, &p));
        assert!(!verify(&key, "run", 1, 4, &nonce().unwrap(), &a, &p));
        assert!(!verify(&key, "run", 1, 4, &b, &a, &[0; 32]));
        assert_eq!(format!("{key:?}"), "RunKey(<redacted>)");
    }
}
