//! Secrets of the HTTP side: the ingestion token and HMAC key, the dashboard token and the
//! proxy's shared secret are held in [`secrecy`] types (zeroed when dropped, `[REDACTED]` in
//! `Debug`), and a caller's guess is compared with them in constant time ([`subtle`]).

pub use secrecy::{ExposeSecret, SecretSlice, SecretString};

pub use crate::secret::constant_time_eq;
