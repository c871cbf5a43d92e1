//! A caller's guess compared with a secret in constant time ([`subtle`]): the ingestion token,
//! the dashboard's token and proxy secret, the notification settings' secrets.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `given` is `expected`, in constant time: the SHA-256 digests are compared, so the
/// lengths leak nothing either.
pub fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn only_the_whole_secret_compares_equal() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-toke"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
