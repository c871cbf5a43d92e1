use super::auth::decode_hex;
use super::syslog::read_frame;
use super::*;
use tokio::io::BufReader;

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
    let got = frames(b"99999 x").await;
    assert!(matches!(&got[0], Err(e) if e.contains("over")), "{got:?}");
    let got = frames(&[b'7'; 70_000]).await;
    assert!(
        matches!(&got[0], Err(e) if e.contains("without a newline")),
        "a stream of digits is a line and bounded: {:?}",
        got[0].as_ref().map(|m| m.as_ref().map(Vec::len))
    );
}

#[tokio::test]
async fn syslog_tcp_lines_that_start_with_digits_are_lines() {
    let got = frames(b"2024-05-01T10:00:00Z host x\n1x2 abc\n999999 six digits\n").await;
    assert_eq!(
        got,
        vec![
            Ok(Some(b"2024-05-01T10:00:00Z host x\n".to_vec())),
            Ok(Some(b"1x2 abc\n".to_vec())),
            Ok(Some(b"999999 six digits\n".to_vec())),
            Ok(None),
        ]
    );
}

#[test]
fn quotes_are_bounded() {
    assert_eq!(quote("abc"), "\"abc\"");
    let long = "x".repeat(10_000);
    let q = quote(&long);
    assert!(q.len() < 120 && q.contains("10000 bytes"), "{q}");
}

#[test]
fn signed_message_covers_timestamp_key_and_body() {
    assert_eq!(signed_message("17", "k", b"body"), b"17\nk\nbody".to_vec());
    assert_ne!(
        signed_message("17", "", b"x"),
        signed_message("18", "", b"x")
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
fn config_debug_hides_secrets() {
    let c = IngestConfig {
        token: Some("tok-123456789012345".into()),
        hmac_secret: Some(b"hmac-123456789012".to_vec().into()),
        ..IngestConfig::default()
    };
    let d = format!("{c:?}");
    assert!(!d.contains("tok-") && !d.contains("hmac-"), "{d}");
}
