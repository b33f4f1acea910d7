//! The Block2 machine against a simulated repository: block sizes the server
//! picks, ETags that change, losses, resumes. A "file" is a Vec the test
//! writes as the steps say.

use super::*;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits {
        szx: 6,
        max_bytes: None,
        retries: 3,
        backoff: Duration::from_secs(1),
        max_restarts: 3,
    }
}

fn body(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(u32::from(seed)) as u8)
        .collect()
}

/// A repository: the resource's versions, the one served now, and how it
/// answers. Each version has its own ETag (its index) when `etags`.
struct Server {
    versions: Vec<Vec<u8>>,
    current: usize,
    /// The largest exponent the server uses (late negotiation when smaller
    /// than the client's).
    max_szx: u8,
    etags: bool,
    size2: bool,
    /// Answers a body that fits one block without Block2, as aiocoap does.
    omit_single_block: bool,
    served: usize,
}

impl Server {
    fn new(body: Vec<u8>) -> Self {
        Self {
            versions: vec![body],
            current: 0,
            max_szx: 6,
            etags: true,
            size2: true,
            omit_single_block: false,
            served: 0,
        }
    }

    fn etag(&self) -> Option<Vec<u8>> {
        self.etags.then(|| vec![self.current as u8, 0xE7])
    }

    /// Answers `req`: (code, block2, etag, size2, payload).
    fn answer(&mut self, req: BlockRequest) -> Answer {
        self.served += 1;
        let data = &self.versions[self.current];
        let szx = req.szx.min(self.max_szx);
        let size = 1usize << (szx + 4);
        let at = req.num as usize * (1usize << (req.szx + 4));
        let size2 = (self.size2 && req.ask_size).then_some(data.len() as u64);
        // Past the end (the resource shrank) an empty last block, as aiocoap
        // answers: its ETag tells the change.
        let start = at.min(data.len());
        let end = (at + size).min(data.len());
        let more = end < data.len();
        let block2 = if self.omit_single_block && at == 0 && !more {
            None
        } else {
            Some(Some(BlockOpt {
                num: (at / size) as u32,
                more,
                szx,
            }))
        };
        Answer {
            code: CONTENT,
            block2,
            etag: self.etag(),
            size2,
            payload: data[start..end].to_vec(),
        }
    }
}

struct Answer {
    code: u8,
    block2: Option<Option<BlockOpt>>,
    etag: Option<Vec<u8>>,
    size2: Option<u64>,
    payload: Vec<u8>,
}

impl Answer {
    fn response(&self) -> BlockResponse<'_> {
        BlockResponse {
            code: self.code,
            block2: self.block2,
            etag: self.etag.as_deref(),
            size2: self.size2,
            payload_len: self.payload.len(),
        }
    }
}

/// Applies a step to the file as the driver does.
fn apply(file: &mut Vec<u8>, step: Step, payload: &[u8]) {
    match step {
        Step::Write { at, .. } => {
            file.truncate(at as usize);
            assert_eq!(
                file.len(),
                at as usize,
                "the file is never extended with a hole"
            );
            file.extend_from_slice(payload);
        }
        Step::Restart => file.clear(),
        Step::Wait(_) => {}
    }
}

/// Runs to the end without losses; returns the file and the requests made.
fn run(d: &mut Block2Download, s: &mut Server, file: &mut Vec<u8>) -> Result<usize, FetchError> {
    file.truncate(d.offset() as usize);
    let mut requests = 0;
    while !d.is_done() {
        let req = d.next_request()?;
        requests += 1;
        let a = s.answer(req);
        let step = d.on_response(&a.response())?;
        apply(file, step, &a.payload);
        assert_eq!(file.len() as u64, d.offset());
        assert!(requests < 100_000, "runaway");
    }
    Ok(requests)
}

#[test]
fn a_fresh_download_asks_block_0_with_size2() {
    let d = Block2Download::new(limits());
    assert_eq!(
        d.next_request().unwrap(),
        BlockRequest {
            num: 0,
            szx: 6,
            ask_size: true
        }
    );
}

#[test]
fn whole_resource_in_1024_byte_blocks() {
    let data = body(2500, 1);
    let mut s = Server::new(data.clone());
    let mut d = Block2Download::new(limits());
    let mut f = Vec::new();
    assert_eq!(run(&mut d, &mut s, &mut f).unwrap(), 3);
    assert_eq!(f, data);
    assert_eq!(d.total(), Some(2500));
    assert_eq!(d.etag(), Some(&[0, 0xE7][..]));
}

#[test]
fn size2_is_asked_for_once_per_pass() {
    let mut s = Server::new(body(3000, 1));
    let mut d = Block2Download::new(limits());
    let r0 = d.next_request().unwrap();
    let a = s.answer(r0);
    d.on_response(&a.response()).unwrap();
    assert!(!d.next_request().unwrap().ask_size);
}

#[test]
fn the_server_lowers_the_block_size_at_the_first_block() {
    let data = body(2000, 2);
    let mut s = Server::new(data.clone());
    s.max_szx = 5;
    let mut d = Block2Download::new(limits());
    let mut f = Vec::new();
    let a = s.answer(d.next_request().unwrap());
    apply(&mut f, d.on_response(&a.response()).unwrap(), &a.payload);
    assert_eq!(
        d.next_request().unwrap(),
        BlockRequest {
            num: 1,
            szx: 5,
            ask_size: false
        },
        "block 1 of 512 bytes: byte 512"
    );
    assert_eq!(run(&mut d, &mut s, &mut f).unwrap(), 3);
    assert_eq!(f, data);
}

#[test]
fn the_server_lowers_the_block_size_mid_transfer() {
    let data = body(5000, 3);
    let mut s = Server::new(data.clone());
    let mut d = Block2Download::new(limits());
    let mut f = Vec::new();
    for _ in 0..2 {
        let a = s.answer(d.next_request().unwrap());
        apply(&mut f, d.on_response(&a.response()).unwrap(), &a.payload);
    }
    s.max_szx = 4; // 256 bytes from byte 2048: block 8
    let req = d.next_request().unwrap();
    assert_eq!((req.num, req.szx), (2, 6));
    let a = s.answer(req);
    assert_eq!(
        a.block2,
        Some(Some(BlockOpt {
            num: 8,
            more: true,
            szx: 4
        }))
    );
    apply(&mut f, d.on_response(&a.response()).unwrap(), &a.payload);
    assert_eq!(
        (d.next_request().unwrap().num, d.next_request().unwrap().szx),
        (9, 4)
    );
    run(&mut d, &mut s, &mut f).unwrap();
    assert_eq!(f, data);
    assert_eq!(d.block_size(), 256);
}

#[test]
fn a_larger_block_than_asked_for_is_taken_and_our_size_kept() {
    let mut d = Block2Download::new(Limits { szx: 4, ..limits() });
    let step = d
        .on_response(&BlockResponse {
            code: CONTENT,
            block2: Some(Some(BlockOpt {
                num: 0,
                more: true,
                szx: 6,
            })),
            etag: None,
            size2: None,
            payload_len: 1024,
        })
        .unwrap();
    assert_eq!(step, Step::Write { at: 0, last: false });
    assert_eq!(
        d.next_request().unwrap(),
        BlockRequest {
            num: 4,
            szx: 4,
            ask_size: false
        }
    );
}

fn resp(num: u32, more: bool, szx: u8, len: usize, etag: Option<&[u8]>) -> BlockResponse<'_> {
    BlockResponse {
        code: CONTENT,
        block2: Some(Some(BlockOpt { num, more, szx })),
        etag,
        size2: None,
        payload_len: len,
    }
}

#[test]
fn broken_block_sequences_are_protocol_errors() {
    let mut d = Block2Download::new(limits());
    assert!(matches!(
        d.on_response(&resp(1, true, 6, 1024, None)),
        Err(FetchError::Protocol(m)) if m.contains("byte 0 was asked")
    ));
    let mut d = Block2Download::new(limits());
    assert!(matches!(
        d.on_response(&resp(0, true, 6, 1000, None)),
        Err(FetchError::Protocol(m)) if m.contains("more follow")
    ));
    let mut d = Block2Download::new(limits());
    assert!(matches!(
        d.on_response(&resp(0, false, 6, 1025, None)),
        Err(FetchError::Protocol(_))
    ));
    let mut d = Block2Download::new(limits());
    let malformed = BlockResponse {
        block2: Some(None),
        ..resp(0, false, 6, 0, None)
    };
    assert!(matches!(
        d.on_response(&malformed),
        Err(FetchError::Protocol(m)) if m.contains("malformed")
    ));
    let mut d = Block2Download::new(limits());
    let changed = BlockResponse {
        code: 0x44,
        ..resp(0, false, 6, 0, None)
    };
    assert!(matches!(d.on_response(&changed), Err(FetchError::Protocol(m)) if m.contains("2.04")));
    let mut d = Block2Download::new(limits());
    d.on_response(&resp(0, false, 6, 10, None)).unwrap();
    assert!(d.is_done());
    assert!(d.on_response(&resp(0, false, 6, 10, None)).is_err());
}

#[test]
fn an_empty_last_block_ends_the_download() {
    let mut d = Block2Download::new(limits());
    d.on_response(&resp(0, true, 6, 1024, None)).unwrap();
    assert_eq!(
        d.on_response(&resp(1, false, 6, 0, None)).unwrap(),
        Step::Write {
            at: 1024,
            last: true
        }
    );
    assert_eq!(d.offset(), 1024);
}

#[test]
fn no_block2_is_the_whole_body_even_when_resuming() {
    let data = body(700, 4);
    let mut s = Server::new(data.clone());
    s.omit_single_block = true;
    let mut d = Block2Download::new(limits());
    let mut f = Vec::new();
    assert_eq!(run(&mut d, &mut s, &mut f).unwrap(), 1);
    assert_eq!(f, data);
    // A server ignoring Block2 answers a resumed request with everything.
    let r = Resume {
        uri: "coap://h/x".into(),
        etag: None,
        bytes: 5000,
        block_size: 1024,
    };
    let mut d = Block2Download::resume(limits(), "coap://h/x", &r, 5000);
    assert_eq!(d.offset(), 4096);
    let whole = BlockResponse {
        block2: None,
        ..resp(0, false, 6, 9000, None)
    };
    assert_eq!(
        d.on_response(&whole).unwrap(),
        Step::Write { at: 0, last: true }
    );
    assert_eq!(d.offset(), 9000);
}

#[test]
fn a_new_etag_mid_transfer_starts_over_and_ends_equal() {
    let mut s = Server::new(body(4000, 5));
    s.versions.push(body(3100, 6));
    let mut d = Block2Download::new(limits());
    let mut f = Vec::new();
    for _ in 0..2 {
        let a = s.answer(d.next_request().unwrap());
        apply(&mut f, d.on_response(&a.response()).unwrap(), &a.payload);
    }
    s.current = 1;
    let a = s.answer(d.next_request().unwrap());
    let step = d.on_response(&a.response()).unwrap();
    assert_eq!(step, Step::Restart);
    apply(&mut f, step, &a.payload);
    assert_eq!(
        d.next_request().unwrap(),
        BlockRequest {
            num: 0,
            szx: 6,
            ask_size: true
        }
    );
    run(&mut d, &mut s, &mut f).unwrap();
    assert_eq!(f, s.versions[1]);
    assert_eq!(d.restarts(), 1);
}

#[test]
fn an_etag_appearing_or_vanishing_counts_as_a_change() {
    let mut d = Block2Download::new(limits());
    d.on_response(&resp(0, true, 6, 1024, None)).unwrap();
    assert_eq!(
        d.on_response(&resp(1, true, 6, 1024, Some(b"e"))).unwrap(),
        Step::Restart
    );
    d.on_response(&resp(0, true, 6, 1024, Some(b"e"))).unwrap();
    assert_eq!(
        d.on_response(&resp(1, true, 6, 1024, None)).unwrap(),
        Step::Restart
    );
}

#[test]
fn a_resource_that_keeps_changing_gives_up() {
    let mut d = Block2Download::new(limits());
    for i in 0..=3u8 {
        d.on_response(&resp(0, true, 6, 1024, Some(&[i]))).unwrap();
        let r = d.on_response(&resp(1, true, 6, 1024, Some(&[i, 1])));
        if i < 3 {
            assert_eq!(r.unwrap(), Step::Restart);
        } else {
            assert_eq!(r.unwrap_err(), FetchError::Unstable(4));
        }
    }
}

fn stored(bytes: u64, block_size: usize, etag: Option<&[u8]>) -> Resume {
    Resume {
        uri: "coaps://repo/fw.bin".into(),
        etag: etag.map(<[u8]>::to_vec),
        bytes,
        block_size,
    }
}

#[test]
fn resume_starts_at_the_block_containing_the_byte() {
    let uri = "coaps://repo/fw.bin";
    let d = Block2Download::resume(limits(), uri, &stored(2500, 1024, Some(b"x")), 9999);
    assert_eq!(d.offset(), 2048);
    assert_eq!(
        d.next_request().unwrap(),
        BlockRequest {
            num: 2,
            szx: 6,
            ask_size: true
        }
    );
    assert_eq!(d.etag(), Some(&b"x"[..]));
    // At a block boundary the block before is fetched again.
    let d = Block2Download::resume(limits(), uri, &stored(3072, 1024, None), 3072);
    assert_eq!(d.offset(), 2048);
    // The file is shorter than the stored count: its length decides.
    let d = Block2Download::resume(limits(), uri, &stored(5000, 1024, None), 1500);
    assert_eq!(d.offset(), 1024);
    // The size the server settled on last time is kept.
    let d = Block2Download::resume(limits(), uri, &stored(1000, 256, None), 1000);
    assert_eq!((d.offset(), d.block_size()), (768, 256));
    // A smaller preferred size than stored: ours (the offset is a multiple).
    let small = Limits { szx: 2, ..limits() };
    let d = Block2Download::resume(small, uri, &stored(1000, 1024, None), 1000);
    assert_eq!((d.offset(), d.block_size()), (960, 64));
    // Nothing useful or another URI: from the start, without the ETag.
    let d = Block2Download::resume(limits(), uri, &stored(1000, 1024, Some(b"x")), 1000);
    assert_eq!((d.offset(), d.etag()), (0, None));
    let d = Block2Download::resume(limits(), "coap://other/x", &stored(5000, 1024, None), 5000);
    assert_eq!(d.offset(), 0);
    // An odd stored block size is rounded down to a power of two.
    let d = Block2Download::resume(limits(), uri, &stored(5000, 1000, None), 5000);
    assert_eq!(d.block_size(), 512);
}

#[test]
fn resume_with_the_same_etag_fetches_only_the_rest() {
    let data = body(10_000, 7);
    let mut s = Server::new(data.clone());
    let mut f = data[..6000].to_vec();
    let r = stored(6000, 1024, Some(&[0, 0xE7]));
    let mut d = Block2Download::resume(limits(), &r.uri, &r, f.len() as u64);
    assert_eq!(run(&mut d, &mut s, &mut f).unwrap(), 5, "blocks 5..=9");
    assert_eq!(f, data);
}

#[test]
fn resume_with_another_etag_starts_over() {
    let mut s = Server::new(body(10_000, 8));
    let mut f = body(6000, 9); // from an older version
    let r = stored(6000, 1024, Some(b"old"));
    let mut d = Block2Download::resume(limits(), &r.uri, &r, f.len() as u64);
    let n = run(&mut d, &mut s, &mut f).unwrap();
    assert_eq!(n, 1 + 10);
    assert_eq!(f, s.versions[0]);
    assert_eq!(d.restarts(), 1);
}

#[test]
fn the_snapshot_resumes_where_it_was_taken() {
    let data = body(9000, 10);
    let mut s = Server::new(data.clone());
    let uri = "coap://[::1]/fw";
    let mut d = Block2Download::new(limits());
    let mut f = Vec::new();
    for _ in 0..4 {
        let a = s.answer(d.next_request().unwrap());
        apply(&mut f, d.on_response(&a.response()).unwrap(), &a.payload);
    }
    let snap = d.snapshot(uri);
    assert_eq!((snap.bytes, snap.block_size), (4096, 1024));
    let json = serde_json::to_string(&snap).unwrap();
    let back: Resume = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snap);
    let mut d = Block2Download::resume(limits(), uri, &back, f.len() as u64);
    assert_eq!(d.offset(), 3072);
    assert_eq!(run(&mut d, &mut s, &mut f).unwrap(), 6);
    assert_eq!(f, data);
}

#[test]
fn size2_over_the_limit_stops_before_the_first_write() {
    let mut s = Server::new(body(5000, 11));
    let mut d = Block2Download::new(Limits {
        max_bytes: Some(4096),
        ..limits()
    });
    let a = s.answer(d.next_request().unwrap());
    assert_eq!(
        d.on_response(&a.response()),
        Err(FetchError::TooLarge {
            size: 5000,
            limit: 4096
        })
    );
}

#[test]
fn without_size2_the_limit_stops_at_the_block_past_it() {
    let mut s = Server::new(body(5000, 12));
    s.size2 = false;
    let mut d = Block2Download::new(Limits {
        max_bytes: Some(3000),
        ..limits()
    });
    let mut f = Vec::new();
    let e = run(&mut d, &mut s, &mut f).unwrap_err();
    assert_eq!(
        e,
        FetchError::TooLarge {
            size: 3072,
            limit: 3000
        }
    );
    assert_eq!(f.len(), 2048, "nothing past the limit was written");
}

#[test]
fn error_codes_end_the_download() {
    for code in [0x84u8, 0x83, 0x81, 0x80, 0xA0] {
        let mut d = Block2Download::new(limits());
        let r = BlockResponse {
            code,
            block2: None,
            etag: None,
            size2: None,
            payload_len: 0,
        };
        assert_eq!(d.on_response(&r), Err(FetchError::Server { code }));
    }
}

#[test]
fn busy_and_timeouts_back_off_then_give_up() {
    let mut d = Block2Download::new(limits());
    let busy = BlockResponse {
        code: 0xA3,
        block2: None,
        etag: None,
        size2: None,
        payload_len: 0,
    };
    assert_eq!(
        d.on_response(&busy).unwrap(),
        Step::Wait(Duration::from_secs(1))
    );
    assert_eq!(d.on_failed_attempt("timeout"), Ok(Duration::from_secs(2)));
    assert_eq!(d.on_failed_attempt("timeout"), Ok(Duration::from_secs(4)));
    assert!(matches!(
        d.on_failed_attempt("timeout"),
        Err(FetchError::ConnectionLost(m)) if m.contains("4 attempts")
    ));
}

#[test]
fn a_good_block_resets_the_retry_count() {
    let mut d = Block2Download::new(limits());
    for _ in 0..3 {
        d.on_failed_attempt("t").unwrap();
    }
    d.on_response(&resp(0, true, 6, 1024, None)).unwrap();
    for _ in 0..3 {
        d.on_failed_attempt("t").unwrap();
    }
    assert!(d.on_failed_attempt("t").is_err());
}

#[test]
fn block_numbers_past_20_bits_are_refused() {
    let r = stored(1 << 31, 1024, None);
    let d = Block2Download::resume(limits(), &r.uri, &r, 1 << 31);
    assert!(matches!(
        d.next_request(),
        Err(FetchError::TooLarge { limit, .. }) if limit == 1 << 30
    ));
}

#[test]
fn space_checks() {
    assert!(check_space(Some(1000), 0, 1024, 1000, 0).is_ok());
    assert_eq!(
        check_space(Some(1000), 0, 1024, 999, 0),
        Err(FetchError::NoSpace {
            needed: 1000,
            available: 999
        })
    );
    assert!(check_space(Some(1000), 600, 1024, 400, 0).is_ok());
    assert!(check_space(Some(1000), 600, 1024, 400, 1).is_err());
    assert!(check_space(None, 600, 1024, 1024, 0).is_ok());
    assert!(check_space(None, 600, 1024, 1023, 0).is_err());
    assert!(
        check_space(Some(10), 600, 1024, 0, 0).is_ok(),
        "estimate passed"
    );
}

/// What happens to one request in the property test.
#[derive(Debug, Clone)]
enum Fate {
    Answered,
    Lost,
    Busy,
    /// The resource is replaced before the request arrives.
    Changed(usize),
    /// The server's block size limit drops before the request arrives.
    Shrink(u8),
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        12 => Just(Fate::Answered),
        3 => Just(Fate::Lost),
        1 => Just(Fate::Busy),
        1 => (0usize..6000).prop_map(Fate::Changed),
        1 => (0u8..7).prop_map(Fate::Shrink),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any sequence of server block sizes, ETag changes, losses and resumes ends
    /// with the file equal to the resource or a clean error, and never writes
    /// past the file's end.
    #[test]
    fn any_server_behaviour_ends_equal_or_cleanly(
        len in 0usize..6000,
        fates in proptest::collection::vec(fate(), 0..60),
        szx in 0u8..7,
        server_szx in 0u8..7,
        etags: bool,
        size2: bool,
        omit_single_block: bool,
        max_bytes in proptest::option::of(0u64..8000),
        resume_at in proptest::option::of(0u64..7000),
    ) {
        let mut s = Server::new(body(len, 1));
        s.max_szx = server_szx;
        s.etags = etags;
        s.size2 = size2;
        s.omit_single_block = omit_single_block;
        let lim = Limits { szx, max_bytes, ..limits() };
        let uri = "coap://repo/fw";
        let (mut d, mut f) = match resume_at {
            Some(bytes) => {
                // A partial file of the current version, with its real ETag.
                let have = (bytes as usize).min(len);
                let f = s.versions[0][..have].to_vec();
                let r = Resume {
                    uri: uri.into(),
                    etag: s.etag(),
                    bytes,
                    block_size: 1 << (server_szx + 4),
                };
                (Block2Download::resume(lim, uri, &r, have as u64), f)
            }
            None => (Block2Download::new(lim), Vec::new()),
        };
        prop_assert!(d.offset() as usize <= f.len());
        f.truncate(d.offset() as usize);
        // What a resumed file held already may exceed a limit lowered since.
        let kept = d.offset();
        let mut fates = fates.into_iter();
        let mut steps = 0;
        let outcome = loop {
            steps += 1;
            prop_assert!(steps < 20_000, "runaway");
            if d.is_done() {
                break Ok(());
            }
            let req = match d.next_request() {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            match fates.next().unwrap_or(Fate::Answered) {
                Fate::Answered => {}
                Fate::Lost => {
                    if let Err(e) = d.on_failed_attempt("lost") {
                        break Err(e);
                    }
                    continue;
                }
                Fate::Busy => {
                    let busy = BlockResponse {
                        code: 0xA3, block2: None, etag: None, size2: None, payload_len: 0,
                    };
                    match d.on_response(&busy) {
                        Ok(Step::Wait(_)) => continue,
                        Ok(other) => prop_assert!(false, "{other:?}"),
                        Err(e) => break Err(e),
                    }
                }
                // Without ETags a change cannot be seen: the property needs them.
                Fate::Changed(n) if etags => {
                    let seed = s.versions.len() as u8 + 1;
                    s.versions.push(body(n, seed));
                    s.current = s.versions.len() - 1;
                }
                Fate::Changed(_) => {}
                Fate::Shrink(z) => s.max_szx = s.max_szx.min(z),
            }
            let a = s.answer(req);
            match d.on_response(&a.response()) {
                Ok(step) => apply(&mut f, step, &a.payload),
                Err(e) => break Err(e),
            }
            prop_assert_eq!(f.len() as u64, d.offset());
        };
        match outcome {
            Ok(()) => {
                prop_assert_eq!(&f, &s.versions[s.current]);
                if let Some(m) = max_bytes {
                    prop_assert!(f.len() as u64 <= m);
                }
            }
            Err(FetchError::ConnectionLost(_)) | Err(FetchError::Unstable(_)) => {}
            Err(FetchError::TooLarge { size, limit }) => {
                prop_assert_eq!(Some(limit), max_bytes);
                prop_assert!(size > limit);
                prop_assert!(f.len() as u64 <= limit.max(kept), "written past the limit");
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
