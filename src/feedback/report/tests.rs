use super::*;

const RETURN_PATH: &str = "bounces+17-00112233445566778899@mail.shop.example";
const MESSAGE_ID: &str = "<17.3.abc.patron@mail.shop.example>";

fn sample(text: &str) -> Vec<u8> {
    text.replace("{{RETURN_PATH}}", RETURN_PATH)
        .replace("{{MESSAGE_ID}}", MESSAGE_ID)
        .replace("{{RECIPIENT}}", "ana@example.net")
        .replace('\n', "\r\n")
        .into_bytes()
}

macro_rules! sample {
    ($name:literal) => {
        sample(include_str!(concat!("../../../tests/data/feedback/", $name)))
    };
}

#[test]
fn a_postfix_bounce_is_a_permanent_failure_with_its_status_and_the_original_message_id() {
    let report = parse(&sample!("postfix-hard-bounce.eml"), None);
    let Kind::Bounces(bounces) = &report.kind else { panic!("{report:?}") };
    assert_eq!(bounces.len(), 1);
    assert_eq!(bounces[0].recipient.as_deref(), Some("ana@example.net"));
    assert_eq!(bounces[0].status, "5.1.1");
    assert!(bounces[0].permanent);
    let diagnostic = bounces[0].diagnostic.as_deref().unwrap();
    assert!(
        diagnostic.starts_with("550 5.1.1 <ana@example.net>: Recipient address rejected: User unknown"),
        "{diagnostic}"
    );
    assert_eq!(report.original_message_id.as_deref(), Some("17.3.abc.patron@mail.shop.example"));
    assert_eq!(report.return_addresses.first().map(String::as_str), Some(RETURN_PATH));
    assert_eq!(report.report_id.as_deref(), Some("20261201100002.4B1F52A0C41@mx1.shop.example"));
}

#[test]
fn a_delayed_message_is_a_soft_bounce() {
    let report = parse(&sample!("postfix-delayed.eml"), None);
    let Kind::Bounces(bounces) = &report.kind else { panic!("{report:?}") };
    assert_eq!((bounces[0].status.as_str(), bounces[0].permanent), ("4.4.1", false));
}

#[test]
fn an_exim_bounce_quotes_the_whole_original() {
    let report = parse(&sample!("exim-hard-bounce.eml"), None);
    let Kind::Bounces(bounces) = &report.kind else { panic!("{report:?}") };
    assert_eq!((bounces[0].status.as_str(), bounces[0].permanent), ("5.0.0", true));
    assert_eq!(bounces[0].recipient.as_deref(), Some("ana@example.net"));
    assert_eq!(report.original_message_id.as_deref(), Some("17.3.abc.patron@mail.shop.example"));
    assert!(report.return_addresses.iter().any(|a| a == RETURN_PATH), "{:?}", report.return_addresses);
}

#[test]
fn an_arf_report_is_a_complaint_tied_by_the_quoted_return_path_and_message_id() {
    let report = parse(&sample!("arf-complaint.eml"), None);
    assert_eq!(report.kind, Kind::Complaint { feedback_type: "abuse".into(), recipient: None });
    assert_eq!(report.original_message_id.as_deref(), Some("17.3.abc.patron@mail.shop.example"));
    assert!(report.return_addresses.iter().any(|a| a == RETURN_PATH), "{:?}", report.return_addresses);
}

#[test]
fn a_message_to_the_unsubscribe_address_is_a_request_and_anything_else_is_not_a_report() {
    let request = sample!("unsubscribe-request.eml");
    assert_eq!(
        parse(&request, Some("Unsubscribe@shop.example")).kind,
        Kind::UnsubscribeRequest { from: "ana@example.net".into() }
    );
    assert!(matches!(parse(&request, None).kind, Kind::NotAReport(_)));
    let Kind::NotAReport(reason) = parse(&sample!("not-a-report.eml"), Some("unsubscribe@shop.example")).kind else {
        panic!("an out-of-office reply is not a report")
    };
    assert_eq!(reason, "neither a delivery report, a feedback report nor an unsubscribe request");
    assert!(matches!(parse(b"", None).kind, Kind::NotAReport(_)));
    assert!(matches!(parse(b"\x00\xff garbage", None).kind, Kind::NotAReport(_)));
}

#[test]
fn a_report_that_reports_no_failure_is_not_used() {
    let delivered =
        String::from_utf8(sample!("postfix-hard-bounce.eml")).unwrap().replace("Action: failed", "Action: delivered");
    let Kind::NotAReport(reason) = parse(delivered.as_bytes(), None).kind else { panic!("a success is no bounce") };
    assert_eq!(reason, "a delivery report with no failed or delayed recipient");
}

#[test]
fn fields_unfold_and_status_codes_are_checked() {
    let groups = field_groups(
        b"Reporting-MTA: dns; a\r\n\r\nAction: failed\r\nDiagnostic-Code: smtp; 550\r\n  user unknown\r\n",
    );
    assert_eq!(groups.len(), 2);
    assert_eq!(field(&groups[1], "diagnostic-code"), Some("smtp; 550 user unknown"));
    assert_eq!(status_code("5.1.1 (bad mailbox)"), Some("5.1.1".into()));
    assert_eq!(status_code("550"), None);
    assert_eq!(status_code("6.1.1"), None);
}
