use super::*;

async fn frames(input: &[u8]) -> Vec<Result<Option<Vec<u8>>, String>> {
    let mut r = BufReader::new(input);
    let mut out = Vec::new();
    loop {
        let f = read_frame(&mut r).await;
        let end = !matches!(f, Ok(Some(_)));
        out.push(f);
        if end {
            return out;
        }
    }
}

#[tokio::test]
async fn syslog_tcp_framing_octet_counted_and_newline() {
    let got = frames(b"5 hello11 hello\nworld<13>x\nlast").await;
    assert_eq!(
        got,
        vec![
            Ok(Some(b"hello".to_vec())),
            Ok(Some(b"hello\nworld".to_vec())),
            Ok(Some(b"<13>x\n".to_vec())),
            Ok(Some(b"last".to_vec())),
            Ok(None),
        ]
    );
}

#[tokio::test]
async fn syslog_tcp_framing_errors_name_the_problem() {
    let got = frames(b"12 short").await;
    assert!(
        matches!(&got[0], Err(e) if e.contains("truncated")),
        "{got:?}"
    );
    let got = frames(b"99999999 x").await;
    assert!(matches!(&got[0], Err(e) if e.contains("over")), "{got:?}");
    let got = frames(b"1x2 abc").await;
    assert!(
        matches!(&got[0], Err(e) if e.contains("not a number")),
        "{got:?}"
    );
}

#[test]
fn hex_and_keys() {
    assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
    assert_eq!(decode_hex("0"), None);
    assert_eq!(decode_hex("zz"), None);
    let mut h = HeaderMap::new();
    assert!(batch_key(&h, b"abc").unwrap().starts_with("sha256:"));
    assert_eq!(
        batch_key(&h, b"abc").unwrap(),
        batch_key(&h, b"abc").unwrap()
    );
    h.insert(IDEMPOTENCY_HEADER, HeaderValue::from_static("batch-42"));
    assert_eq!(batch_key(&h, b"abc").unwrap(), "key:batch-42");
    h.insert(IDEMPOTENCY_HEADER, HeaderValue::from_static("has space"));
    assert_eq!(
        batch_key(&h, b"abc").unwrap_err().status(),
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn tokens_compare_whole() {
    assert!(constant_time_eq(b"secret-token", b"secret-token"));
    assert!(!constant_time_eq(b"secret-token", b"secret-toke"));
    assert!(!constant_time_eq(b"", b"x"));
}

#[test]
fn config_debug_hides_secrets() {
    let c = IngestConfig {
        token: Some("tok-123456789012345".into()),
        hmac_secret: Some(b"hmac-123456789012".to_vec()),
        max_body_bytes: 1,
        rate_lines_per_second: 1,
        burst_lines: 1,
        commit_timeout: Duration::from_secs(1),
        index_per_batch: false,
    };
    let d = format!("{c:?}");
    assert!(!d.contains("tok-") && !d.contains("hmac-"), "{d}");
}
