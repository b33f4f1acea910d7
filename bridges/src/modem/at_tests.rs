use super::*;
use proptest::prelude::*;

fn run(at: &mut At, bytes: &str) -> Vec<AtEvent> {
    at.push(bytes.as_bytes());
    std::iter::from_fn(|| at.poll()).collect()
}

fn texts(lines: &[ReplyLine]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

const PDU: &str =
    "0791447700090000040C914477000910320004523041010300000E44023A7FA1B2C3D4B13101300138";

#[test]
fn a_listing_with_a_cmti_in_the_middle() {
    let mut at = At::default();
    assert_eq!(at.start("AT+CMGL=4", false), b"AT+CMGL=4\r");
    let stream = format!(
        "\r\n+CMGL: 0,0,,33\r\n{PDU}\r\n+CMTI: \"SM\",2\r\n+CMGL: 1,1,,33\r\n{PDU}\r\n\r\nOK\r\n"
    );
    let ev = run(&mut at, &stream);
    assert_eq!(
        ev[0],
        AtEvent::Urc(Urc::Cmti {
            mem: "SM".into(),
            index: 2
        })
    );
    let AtEvent::Done(Ok(lines)) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(texts(lines), ["+CMGL: 0,0,,33", "+CMGL: 1,1,,33"]);
    assert!(lines.iter().all(|l| l.pdu.as_deref() == Some(PDU)));
    assert_eq!(
        lines
            .iter()
            .map(|l| cmgl_index(&l.text))
            .collect::<Vec<_>>(),
        [Some(0), Some(1)]
    );
    assert!(!at.busy());
}

#[test]
fn cmt_takes_its_pdu_line_even_inside_a_reply() {
    let mut at = At::default();
    at.start("AT+CSQ", false);
    let ev = run(
        &mut at,
        &format!("\r\n+CSQ: 20,99\r\n\r\n+CMT: ,33\r\n{PDU}\r\n\r\nOK\r\n"),
    );
    assert_eq!(
        ev[0],
        AtEvent::Urc(Urc::Cmt {
            header: "+CMT: ,33".into(),
            pdu: Some(PDU.into())
        })
    );
    let AtEvent::Done(Ok(lines)) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(texts(lines), ["+CSQ: 20,99"]);
    assert_eq!(parse_csq(lines), Some(-73));
}

#[test]
fn lines_of_other_commands_are_unsolicited() {
    let mut at = At::default();
    at.start("AT+COPS?", false);
    let ev = run(
        &mut at,
        "\r\nRING\r\n+CREG: 1\r\n^RSSI: 12\r\n+COPS: 0,0,\"Test, Net\",7\r\nOK\r\n",
    );
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert_eq!(ev[0], AtEvent::Urc(Urc::Other("RING".into())));
    assert_eq!(ev[1], AtEvent::Urc(Urc::Other("+CREG: 1".into())));
    let AtEvent::Done(Ok(lines)) = &ev[3] else {
        panic!()
    };
    assert_eq!(parse_cops(lines).as_deref(), Some("Test, Net"));
}

#[test]
fn echo_errors_and_stray_lines() {
    let mut at = At::default();
    // Before ATE0 the modem echoes.
    at.start("ATE0", false);
    assert_eq!(
        run(&mut at, "ATE0\r\r\nOK\r\n"),
        [AtEvent::Done(Ok(vec![]))]
    );
    at.start("AT+CPIN=\"1234\"", false);
    assert_eq!(
        run(&mut at, "\r\n+CME ERROR: 16\r\n"),
        [AtEvent::Done(Err(Final::Cme(16)))]
    );
    assert_eq!(
        Final::Cme(16).to_string(),
        "+CME ERROR: 16 (incorrect password)"
    );
    at.start("AT+CMGR=9", false);
    assert_eq!(
        run(&mut at, "\r\n+CMS ERROR: 321\r\n"),
        [AtEvent::Done(Err(Final::Cms(321)))]
    );
    at.start("AT+CNMI=2,1,0,0,0", false);
    assert_eq!(
        run(&mut at, "\r\nERROR\r\n"),
        [AtEvent::Done(Err(Final::Error))]
    );
    // A late OK of an abandoned command is nobody's.
    at.start("AT", false);
    at.abandon();
    assert!(run(&mut at, "\r\nOK\r\n").is_empty());
}

#[test]
fn the_submit_prompt() {
    let mut at = At::default();
    at.start("AT+CMGS=19", true);
    assert_eq!(run(&mut at, "\r\n> "), [AtEvent::Prompt]);
    assert_eq!(
        run(&mut at, "\r\n+CMGS: 7\r\n\r\nOK\r\n"),
        [AtEvent::Done(Ok(vec![ReplyLine {
            text: "+CMGS: 7".into(),
            pdu: None
        }]))]
    );
    let mut at = At::default();
    at.start("AT+CMGS=19", true);
    assert_eq!(
        run(&mut at, "\r\n+CMS ERROR: 330\r\n"),
        [AtEvent::Done(Err(Final::Cms(330)))]
    );
    // Not awaited, '>' is just the start of a line.
    let mut at = At::default();
    assert_eq!(
        run(&mut at, "> x\r\n"),
        [AtEvent::Urc(Urc::Other("> x".into()))]
    );
}

#[test]
fn overlong_lines_are_dropped() {
    let mut at = At::default();
    at.start("AT", false);
    let junk = "A".repeat(MAX_LINE * 3);
    let ev = run(&mut at, &format!("{junk}\r\nOK\r\n"));
    assert_eq!(ev, [AtEvent::Done(Ok(vec![]))]);
    assert_eq!(at.reader.overlong, 1);
}

#[test]
fn parsers() {
    let l = |t: &str| {
        vec![ReplyLine {
            text: t.into(),
            pdu: None,
        }]
    };
    assert_eq!(parse_cpin(&l("+CPIN: READY")), Some(SimState::Ready));
    assert_eq!(parse_cpin(&l("+CPIN: SIM PIN")), Some(SimState::Pin));
    assert_eq!(parse_cpin(&l("+CPIN: SIM PUK")), Some(SimState::Puk));
    assert_eq!(
        parse_cpin(&l("+CPIN: PH-SIM PIN")),
        Some(SimState::Other("PH-SIM PIN".into()))
    );
    assert_eq!(
        parse_cnum(&l("+CNUM: \"Own\",\"+447700900999\",145")).as_deref(),
        Some("+447700900999")
    );
    assert_eq!(parse_cnum(&l("+CNUM: ,\"\",129")), None);
    assert_eq!(parse_csq(&l("+CSQ: 99,99")), None);
    assert_eq!(parse_csq(&l("+CSQ: 0,0")), Some(-113));
    assert_eq!(parse_creg(&l("+CREG: 0,5")), Some(Registration::Roaming));
    assert_eq!(
        parse_creg(&l("+CREG: 2,1,\"1A2B\",\"01C3F20\",7")),
        Some(Registration::Home)
    );
    assert_eq!(parse_cops(&l("+COPS: 0")), None);
    assert_eq!(cmgs_reference(&l("+CMGS: 200")), Some(200));
    assert_eq!(
        parse_cmti("+CMTI: \"ME\",12"),
        Some(Urc::Cmti {
            mem: "ME".into(),
            index: 12
        })
    );
}

#[test]
fn the_pin_is_entered_once_and_never_after_a_refusal() {
    use PinStep::*;
    assert_eq!(pin_step(&SimState::Ready, false, false, false), Proceed);
    assert_eq!(pin_step(&SimState::Pin, true, false, false), Enter);
    assert!(
        matches!(pin_step(&SimState::Pin, true, true, false), Stop(r) if r.contains("not tried again"))
    );
    assert!(matches!(
        pin_step(&SimState::Pin, true, false, true),
        Stop(_)
    ));
    assert!(
        matches!(pin_step(&SimState::Pin, false, false, false), Stop(r) if r.contains("modem.pin"))
    );
    assert!(matches!(pin_step(&SimState::Puk, true, false, false), Stop(r) if r.contains("PUK")));
}

#[test]
fn setup_follows_the_delivery() {
    let s = setup_steps("SM", Delivery::Direct);
    let cmds: Vec<&str> = s.iter().map(|s| s.command.as_str()).collect();
    assert_eq!(
        cmds,
        [
            "AT+CMGF=0",
            "AT+CSMS=1",
            "AT+CPMS=\"SM\",\"SM\",\"SM\"",
            "AT+CNMI=2,2,0,0,0"
        ]
    );
    assert_eq!(
        setup_steps("ME", Delivery::Stored)[3].command,
        "AT+CNMI=2,1,0,0,0"
    );
}

proptest! {
    /// Unsolicited lines anywhere between the lines of a listing, and the bytes cut
    /// anywhere: the listing comes out whole and every `+CMTI` is seen.
    #[test]
    fn interleaving_and_chunking_lose_nothing(
        entries in 0usize..5,
        urcs in proptest::collection::vec((0usize..12, 0u32..50), 0..6),
        cuts in proptest::collection::vec(1usize..40, 0..20),
    ) {
        let mut lines: Vec<String> = Vec::new();
        for i in 0..entries {
            lines.push(format!("+CMGL: {i},0,,33"));
            lines.push(PDU.to_string());
        }
        // Insert URCs between, never between a header and its PDU line.
        let mut urc_at: Vec<(usize, u32)> = urcs
            .iter()
            .map(|(p, i)| ((p % (entries + 1)) * 2, *i))
            .collect();
        urc_at.sort();
        for (n, (pos, index)) in urc_at.iter().enumerate() {
            lines.insert(pos + n, format!("+CMTI: \"SM\",{index}"));
        }
        lines.push("OK".into());
        let stream: String = lines.iter().map(|l| format!("\r\n{l}\r\n")).collect();

        let mut at = At::default();
        at.start("AT+CMGL=4", false);
        let mut events = Vec::new();
        let bytes = stream.as_bytes();
        let mut pos = 0;
        for c in cuts.iter().chain(std::iter::repeat(&7)) {
            if pos >= bytes.len() { break; }
            let end = (pos + c).min(bytes.len());
            at.push(&bytes[pos..end]);
            pos = end;
            events.extend(std::iter::from_fn(|| at.poll()));
        }
        let seen: Vec<u32> = events.iter().filter_map(|e| match e {
            AtEvent::Urc(Urc::Cmti { index, .. }) => Some(*index),
            _ => None,
        }).collect();
        let mut want: Vec<u32> = urc_at.iter().map(|(_, i)| *i).collect();
        want.sort();
        let mut got = seen.clone();
        got.sort();
        prop_assert_eq!(got, want);
        let done: Vec<&AtEvent> = events.iter().filter(|e| matches!(e, AtEvent::Done(_))).collect();
        prop_assert_eq!(done.len(), 1);
        let AtEvent::Done(Ok(reply)) = done[0] else { panic!() };
        prop_assert_eq!(reply.len(), entries);
        prop_assert!(reply.iter().all(|l| l.pdu.as_deref() == Some(PDU)));
    }

    /// Whatever the modem sends, the reader neither panics nor holds more than a
    /// line's worth.
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4000), prompt in any::<bool>()) {
        let mut at = At::default();
        at.start("AT+CMGS=10", prompt);
        at.push(&bytes);
        while at.poll().is_some() {}
        prop_assert!(at.reader.buffered() <= MAX_LINE);
    }
}
