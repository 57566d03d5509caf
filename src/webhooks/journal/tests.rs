use super::*;
use proptest::prelude::*;

const DAY_MS: i64 = 24 * 3600 * 1000;
const LIMITS: Limits = Limits { max_bytes: 1024 * 1024, max_age_ms: 30 * DAY_MS };

fn head(id: &str) -> Head {
    Head {
        svix_id: id.into(),
        svix_timestamp: 1_700_000_000,
        path: "/api/webhooks/clerk".into(),
        content_type: Some("application/json".into()),
    }
}

fn event(kind: &str, id: &str, ts_ms: i64) -> Bytes {
    Bytes::from(format!(r#"{{"type":"{kind}","object":"event","data":{{"id":"{id}"}},"timestamp":{ts_ms}}}"#))
}

fn open(dir: &Path, limits: Limits, clock: &Clock) -> Journal {
    Journal::open(dir, limits, clock.clone()).expect("open").0
}

#[tokio::test]
async fn a_new_event_is_on_disk_when_record_returns_and_a_second_is_a_duplicate() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(1_000);
    let j = open(dir.path(), LIMITS, &clock);
    assert_eq!(j.record(head("msg_1"), event("user.created", "user_1", 5)).await, Ok(Recorded::New));
    let on_disk = std::fs::read_to_string(dir.path().join(FILE_NAME)).expect("read");
    assert!(on_disk.contains("\"svix_id\":\"msg_1\"") && on_disk.ends_with('\n'), "{on_disk}");
    assert_eq!(
        j.record(head("msg_1"), event("user.created", "user_1", 5)).await,
        Ok(Recorded::Duplicate(Delivery::InFlight))
    );
    j.mark("msg_1".into(), Outcome { status: Some(502), replay: false });
    j.settled().await;
    assert_eq!(j.record(head("msg_1"), event("user.created", "user_1", 5)).await, Ok(Recorded::Retry));
    j.mark("msg_1".into(), Outcome { status: Some(204), replay: false });
    j.settled().await;
    assert_eq!(
        j.record(head("msg_1"), event("user.created", "user_1", 5)).await,
        Ok(Recorded::Duplicate(Delivery::Delivered))
    );
    let s = &j.list(None, false, &["msg_1".into()])[0];
    assert_eq!((s.delivery, s.attempts, s.last_status), (Delivery::Delivered, 2, Some(204)));
    let stored = j.read("msg_1").expect("read").expect("there");
    assert_eq!(stored.body, event("user.created", "user_1", 5).to_vec());
    assert_eq!(stored.summary.event_type.as_deref(), Some("user.created"));
}

#[tokio::test]
async fn a_listing_after_settled_shows_every_outcome_noted_before_it() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(1_000);
    let j = open(dir.path(), LIMITS, &clock);
    let ids: Vec<String> = (0..200).map(|i| format!("msg_{i:03}")).collect();
    for id in &ids {
        assert_eq!(j.record(head(id), event("user.updated", "user_1", 5)).await, Ok(Recorded::New));
    }
    // Marks are queued, not waited for: each is a write and an fsync behind the others.
    for id in &ids {
        j.mark(id.clone(), Outcome { status: Some(500), replay: false });
    }
    j.settled().await;
    assert_eq!(j.list(None, true, &[]).len(), ids.len(), "an outcome noted before settled() is missing");
}

#[tokio::test]
async fn a_restart_reads_the_states_back_and_skips_a_torn_line() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(1_000);
    {
        let j = open(dir.path(), LIMITS, &clock);
        for id in ["msg_a", "msg_b", "msg_c"] {
            j.record(head(id), event("user.updated", "user_1", 1)).await.expect("record");
        }
        j.mark("msg_a".into(), Outcome { status: Some(200), replay: false });
        j.mark("msg_b".into(), Outcome { status: None, replay: false });
        j.settled().await;
    }
    let path = dir.path().join(FILE_NAME);
    let mut f = OpenOptions::new().append(true).open(&path).expect("open");
    f.write_all(b"{\"record\":\"received\",\"svix_id\":\"msg_torn").expect("write");
    drop(f);
    let (j, loaded) = Journal::open(dir.path(), LIMITS, clock.clone()).expect("open");
    assert_eq!(loaded, Loaded { events: 3, skipped: 1 });
    let state = |id: &str| j.list(None, false, &[id.to_string()])[0].delivery;
    assert_eq!(
        (state("msg_a"), state("msg_b"), state("msg_c")),
        (Delivery::Delivered, Delivery::Failed, Delivery::Interrupted)
    );
    let failed: Vec<String> = j.list(None, true, &[]).into_iter().map(|s| s.svix_id).collect();
    assert_eq!(failed, ["msg_b", "msg_c"], "b failed, c was interrupted");
    // The torn line was cut: the next event reads back after a restart.
    j.record(head("msg_d"), event("user.updated", "user_1", 1)).await.expect("record");
    drop(j);
    let (_, loaded) = Journal::open(dir.path(), LIMITS, clock).expect("open");
    assert_eq!(loaded, Loaded { events: 4, skipped: 0 });
}

#[tokio::test]
async fn the_list_is_in_event_time_order_and_filters() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(10_000);
    let j = open(dir.path(), LIMITS, &clock);
    j.record(head("msg_late"), event("user.updated", "u", 3_000)).await.expect("record");
    clock.advance_ms(1_000);
    j.record(head("msg_early"), event("user.updated", "u", 1_000)).await.expect("record");
    j.record(head("msg_mid"), event("user.updated", "u", 2_000)).await.expect("record");
    let ids = |v: Vec<Summary>| v.into_iter().map(|s| s.svix_id).collect::<Vec<_>>();
    assert_eq!(ids(j.list(None, false, &[])), ["msg_early", "msg_mid", "msg_late"]);
    assert_eq!(ids(j.list(Some(11_000), false, &[])), ["msg_early", "msg_mid"]);
    j.mark("msg_mid".into(), Outcome { status: Some(500), replay: false });
    j.mark("msg_early".into(), Outcome { status: Some(200), replay: false });
    j.mark("msg_late".into(), Outcome { status: Some(200), replay: false });
    j.settled().await;
    let failed = j.list(None, true, &[]);
    assert_eq!(ids(failed.into_iter().filter(|s| s.svix_id != "msg_settle").collect()), ["msg_mid"]);
}

#[tokio::test]
async fn events_that_end_sessions_are_fed_once() {
    let dir = tempfile::tempdir().expect("dir");
    let j = open(dir.path(), LIMITS, &Clock::manual(0));
    let mut feed = j.take_feed().expect("feed");
    assert!(j.take_feed().is_none(), "one taker");
    j.record(head("msg_1"), event("session.revoked", "sess_1", 1)).await.expect("record");
    j.record(head("msg_1"), event("session.revoked", "sess_1", 1)).await.expect("record");
    j.record(head("msg_2"), event("user.created", "user_2", 1)).await.expect("record");
    j.record(head("msg_3"), event("user.deleted", "user_3", 1)).await.expect("record");
    let first = feed.recv().await.expect("fed");
    assert_eq!((first.revoke, first.svix_id.as_str()), (Revoke::Session("sess_1".into()), "msg_1"));
    let second = feed.recv().await.expect("fed");
    assert_eq!((second.revoke, second.event_type.as_str()), (Revoke::User("user_3".into()), "user.deleted"));
    assert!(feed.try_recv().is_err(), "the duplicate and the user.created fed nothing");
}

#[tokio::test]
async fn the_journal_stays_within_its_size_and_age() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(0);
    let limits = Limits { max_bytes: 8 * 1024, max_age_ms: DAY_MS };
    let j = open(dir.path(), limits, &clock);
    let pad = "x".repeat(500);
    for i in 0..40 {
        let body = Bytes::from(format!(r#"{{"type":"user.updated","data":{{"id":"u"}},"pad":"{pad}"}}"#));
        j.record(head(&format!("msg_{i:02}")), body).await.expect("record");
        j.mark(format!("msg_{i:02}"), Outcome { status: Some(200), replay: false });
    }
    j.settled().await;
    let size = std::fs::metadata(dir.path().join(FILE_NAME)).expect("meta").len();
    assert!(size <= limits.max_bytes + 2 * 1024, "{size} bytes");
    let kept = j.list(None, false, &[]);
    assert!(kept.len() < 40 && kept.iter().any(|s| s.svix_id == "msg_39"), "the newest stay: {}", kept.len());
    assert!(!kept.iter().any(|s| s.svix_id == "msg_00"), "the oldest go");
    // A kept event still reads back with its state after the rewrite.
    assert_eq!(j.read("msg_39").expect("read").expect("kept").summary.delivery, Delivery::Delivered);
    drop(j);
    let (j, loaded) = Journal::open(dir.path(), limits, clock.clone()).expect("open");
    assert_eq!((loaded.events, loaded.skipped), (kept.len(), 0));
    clock.advance_ms(DAY_MS + 1);
    j.record(head("msg_new"), Bytes::from_static(b"{}")).await.expect("record");
    j.settled().await;
    let ids: Vec<String> = j.list(None, false, &[]).into_iter().map(|s| s.svix_id).collect();
    assert!(!ids.iter().any(|id| id.starts_with("msg_3")), "older than max_age: dropped: {ids:?}");
    assert!(ids.contains(&"msg_new".to_string()));
}

#[tokio::test]
async fn a_body_that_is_not_utf8_comes_back_byte_for_byte() {
    let dir = tempfile::tempdir().expect("dir");
    let j = open(dir.path(), LIMITS, &Clock::manual(0));
    let body = Bytes::from_static(b"\xff\x00{\"type\":1}\n");
    j.record(head("msg_bin"), body.clone()).await.expect("record");
    assert_eq!(j.read("msg_bin").expect("read").expect("there").body, body.to_vec());
    assert!(j.read("msg_none").expect("read").is_none());
}

proptest! {
    #[test]
    fn reading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (ids, loaded) = read_lines(&bytes);
        prop_assert!(ids.len() == loaded.events);
    }

    #[test]
    fn written_lines_read_back(ids in proptest::collection::btree_set("[a-z0-9_]{1,12}", 1..8), body in "\\PC{0,40}") {
        let mut buf = Vec::new();
        for id in &ids {
            push_line(&mut buf, &Line::Received {
                svix_id: id.clone(), svix_timestamp: 1, received_ms: 1, event_ms: None, event_type: None,
                instance_id: None, path: "/".into(), content_type: None, body: body.clone(), body_base64: false,
            });
        }
        let (read, loaded) = read_lines(&buf);
        prop_assert_eq!(read, ids.into_iter().collect::<Vec<_>>());
        prop_assert_eq!(loaded.skipped, 0);
    }
}

/// The facts triage reads: the last verified delivery survives a restart (it is the newest
/// event in the file); duplicates and refusals are counted since start.
#[tokio::test]
async fn facts_last_delivery_from_the_file_duplicates_and_refusals_since_start() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(DAY_MS);
    {
        let j = open(dir.path(), LIMITS, &clock);
        assert_eq!(j.facts(), Facts::default(), "nothing yet");
        j.record(head("msg_1"), event("user.created", "user_1", 5)).await.expect("record");
        clock.advance_ms(1_000);
        j.record(head("msg_2"), event("user.created", "user_2", 6)).await.expect("record");
        j.mark("msg_1".into(), Outcome { status: Some(200), replay: false });
        j.mark("msg_2".into(), Outcome { status: Some(502), replay: false });
        j.settled().await;
        clock.advance_ms(1_000);
        assert_eq!(
            j.record(head("msg_1"), event("user.created", "user_1", 5)).await,
            Ok(Recorded::Duplicate(Delivery::Delivered))
        );
        j.refused(DAY_MS + 5_000);
        j.refused(DAY_MS + 9_000);
        let f = j.facts();
        assert_eq!((f.events, f.delivered, f.pending_replay, f.duplicates), (2, 1, 1, 1), "msg_2 failed: {f:?}");
        assert_eq!(f.last_verified_ms, Some(DAY_MS + 2_000), "the duplicate was a verified delivery too");
        assert_eq!((f.refused, f.first_refused_ms, f.last_refused_ms), (2, Some(DAY_MS + 5_000), Some(DAY_MS + 9_000)));
    }
    clock.advance_ms(3_600_000);
    let j = open(dir.path(), LIMITS, &clock);
    let f = j.facts();
    assert_eq!(f.last_verified_ms, Some(DAY_MS + 1_000), "the newest event in the file (a duplicate is not written)");
    assert_eq!((f.duplicates, f.refused, f.first_refused_ms), (0, 0, None), "since start only");
}
