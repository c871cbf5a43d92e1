//! Live updates: `/api/v1/events` and the stream of versions behind it. The stream's tests run
//! on paused time: it moves on only when every task waits, to the next timer.

use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::time::timeout;

use super::*;
use crate::web::dashboard::api::{EVENTS_MIN_GAP, EVENTS_SETTLE, versions};

const LIFETIME: Duration = Duration::from_secs(25);

#[tokio::test]
async fn events_announce_the_current_version_at_once_and_each_store_change() {
    let s = serve(config(Some(TOKEN), None)).await;
    let mut r = s.get_with_token("/api/v1/events").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut next = async || {
        let chunk = timeout(Duration::from_secs(5), r.chunk())
            .await
            .expect("an event within 5 s")
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&chunk).into_owned()
    };
    let text = next().await;
    assert!(text.contains("event: change"), "{text}");
    assert!(text.contains(&format!("{GENERATION:016x}")), "{text}");
    s.changes.send_modify(|g| *g += 1);
    let text = next().await;
    assert!(text.contains("event: change"), "{text}");
    assert!(text.contains(&format!("{:016x}", GENERATION + 1)), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_stream_wakes_on_a_store_event() {
    let (tx, rx) = watch::channel(7);
    let mut stream = std::pin::pin!(versions(rx, LIFETIME));
    assert_eq!(stream.next().await, Some(7), "the current version at once");
    tokio::time::sleep(Duration::from_secs(3)).await;
    tx.send_modify(|g| *g += 1);
    let woke = timeout(EVENTS_SETTLE + Duration::from_millis(10), stream.next()).await;
    assert_eq!(woke, Ok(Some(8)), "announced once the change settled");
}

#[tokio::test(start_paused = true)]
async fn the_stream_sends_nothing_while_nothing_changes() {
    let (tx, rx) = watch::channel(7);
    let mut stream = std::pin::pin!(versions(rx, LIFETIME));
    assert_eq!(stream.next().await, Some(7));
    // Setting the same value again is no change of the stores.
    tx.send_if_modified(|_| false);
    assert!(
        timeout(LIFETIME - Duration::from_secs(1), stream.next())
            .await
            .is_err(),
        "nothing sent"
    );
    assert_eq!(
        stream.next().await,
        None,
        "the stream ends after its lifetime"
    );
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_wave_of_events_sends_a_few_updates_with_the_latest_version() {
    let (tx, rx) = watch::channel(0);
    let mut stream = std::pin::pin!(versions(rx, LIFETIME));
    assert_eq!(stream.next().await, Some(0));
    // A thousand store events over two seconds.
    let wave = tokio::spawn(async move {
        for _ in 0..1_000 {
            tx.send_modify(|g| *g += 1);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tx
    });
    let mut sent = Vec::new();
    while let Ok(Some(v)) = timeout(Duration::from_secs(3), stream.next()).await {
        sent.push(v);
    }
    let _tx = wave.await.unwrap();
    let most = (2_000 / EVENTS_MIN_GAP.as_millis() + 2) as usize;
    assert!(
        (1..=most).contains(&sent.len()),
        "{} updates: {sent:?}",
        sent.len()
    );
    assert_eq!(sent.last(), Some(&1_000), "{sent:?}");
}
