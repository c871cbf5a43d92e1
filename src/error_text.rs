//! The text of an error with its causes, for messages a person reads (a condition, an event, a
//! log line): "error sending request: connection refused", a TLS failure in the source chain of
//! an HTTP client's error. A cause whose text the error already includes is not repeated.
//! Callers strip what must not be shown (URLs with credentials) before or after.

/// `e` and its sources, joined by ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1
                .as_deref()
                .map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn causes_are_joined_and_not_repeated() {
        let e = E(
            "error sending request",
            Some(Box::new(E(
                "client error (Connect): connection refused",
                Some(Box::new(E("connection refused", None))),
            ))),
        );
        assert_eq!(
            super::chain(&e),
            "error sending request: client error (Connect): connection refused"
        );
        assert_eq!(super::chain(&E("alone", None)), "alone");
    }
}
