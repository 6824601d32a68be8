use std::time::{Duration, SystemTime};

use super::*;

fn entry(name: &str, seconds_ago: u64, clock: SystemTime) -> Entry {
    Entry { name: name.to_owned(), modified: clock - Duration::from_secs(seconds_ago) }
}

fn default_matchers() -> Matchers {
    Matchers::new(&FeedPatterns::default()).unwrap()
}

#[test]
fn customers_land_first_then_orders_interactions_and_redemptions_each_by_name() {
    let clock = SystemTime::now();
    let entries = vec![
        entry("redemptions.csv", 60, clock),
        entry("orders_2.csv", 60, clock),
        entry("interactions.csv", 60, clock),
        entry("orders_1.csv", 600, clock),
        entry("customers_b.csv", 60, clock),
        entry("customers_a.csv", 60, clock),
    ];
    let (taken, notes) = pick(entries, &default_matchers(), chrono::Duration::seconds(10), clock);
    let names: Vec<&str> = taken.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(
        names,
        ["customers_a.csv", "customers_b.csv", "orders_1.csv", "orders_2.csv", "interactions.csv", "redemptions.csv"]
    );
    assert!(notes.is_empty(), "{notes:?}");
}

#[test]
fn a_writers_temporary_name_is_never_taken() {
    for name in
        [".customers.csv", ".customers.csv.tmp", "customers.csv.tmp", "customers.csv.part", "customers.csv.PART"]
    {
        assert!(is_temporary(name), "{name}");
    }
    assert!(!is_temporary("customers.csv"));
    let clock = SystemTime::now();
    let patterns = FeedPatterns { customers: "*customers*".into(), ..FeedPatterns::default() };
    let entries = vec![entry(".customers.csv.tmp", 600, clock), entry("customers.csv.part", 600, clock)];
    let (taken, notes) = pick(entries, &Matchers::new(&patterns).unwrap(), chrono::Duration::seconds(10), clock);
    assert!(taken.is_empty() && notes.is_empty(), "{taken:?} {notes:?}");
}

#[test]
fn a_file_changed_within_the_settle_time_waits_with_a_note() {
    let clock = SystemTime::now();
    let settle = chrono::Duration::seconds(10);
    assert!(!settled(clock - Duration::from_secs(9), clock, settle));
    assert!(settled(clock - Duration::from_secs(10), clock, settle));
    assert!(!settled(clock + Duration::from_secs(5), clock, settle), "a time ahead of the clock is not settled");
    assert!(settled(clock, clock, chrono::Duration::zero()));
    let entries = vec![entry("customers.csv", 3, clock), entry("orders.csv", 30, clock)];
    let (taken, notes) = pick(entries, &default_matchers(), settle, clock);
    assert_eq!(taken, [(FileKind::Orders, "orders.csv".to_owned())]);
    assert_eq!(notes, ["customers.csv: changed less than 10s ago, may still be written; left for the next run"]);
}

#[test]
fn names_match_their_pattern_whatever_the_case_and_others_are_left_alone() {
    let matchers = default_matchers();
    assert_eq!(matchers.kind_of("Customers_2026-12-03.CSV"), Some(FileKind::Customers));
    assert_eq!(matchers.kind_of("orders.csv"), Some(FileKind::Orders));
    assert_eq!(matchers.kind_of("notes.txt"), None);
    assert_eq!(matchers.kind_of("my_orders.csv"), None);
    let overlapping = FeedPatterns { orders: "*.csv".into(), ..FeedPatterns::default() };
    let matchers = Matchers::new(&overlapping).unwrap();
    assert_eq!(matchers.kind_of("customers.csv"), Some(FileKind::Customers), "the first kind in landing order wins");
    let broken = FeedPatterns { orders: "orders[.csv".into(), ..FeedPatterns::default() };
    let error = Matchers::new(&broken).err().unwrap().to_string();
    assert_eq!(error, "patterns.orders `orders[.csv` is not a file name pattern");
}

#[test]
fn a_taken_name_gets_a_number_before_its_extension() {
    assert_eq!(numbered("orders.csv", 1), "orders.csv");
    assert_eq!(numbered("orders.csv", 2), "orders.2.csv");
    assert_eq!(numbered("orders", 3), "orders.3");
    assert_eq!(numbered(".orders", 2), ".orders.2");
}

#[test]
fn moving_never_replaces_a_file_already_there() {
    let folder = tempfile::tempdir().unwrap();
    let done = folder.path().join(DONE);
    for (round, contents) in ["first", "second", "third"].into_iter().enumerate() {
        let file = folder.path().join("orders.csv");
        fs::write(&file, contents).unwrap();
        let moved = move_into(&done, &file, "orders.csv").unwrap();
        assert_eq!(moved, numbered("orders.csv", round as u32 + 1));
        assert!(!file.exists());
    }
    assert_eq!(fs::read_to_string(done.join("orders.csv")).unwrap(), "first");
    assert_eq!(fs::read_to_string(done.join("orders.2.csv")).unwrap(), "second");
    assert_eq!(fs::read_to_string(done.join("orders.3.csv")).unwrap(), "third");
}

#[test]
fn the_digest_is_of_the_bytes_not_the_name() {
    let folder = tempfile::tempdir().unwrap();
    let (a, b) = (folder.path().join("orders.csv"), folder.path().join("orders_again.csv"));
    fs::write(&a, "order_id\n1\n").unwrap();
    fs::write(&b, "order_id\n1\n").unwrap();
    assert_eq!(digest(&a).unwrap(), digest(&b).unwrap());
    fs::write(&b, "order_id\n2\n").unwrap();
    assert_ne!(digest(&a).unwrap(), digest(&b).unwrap());
    assert_eq!(digest(&a).unwrap(), "f2af6579ba352cead5fe5c5355384a7f4ffd48dd8ae30b81b1c34e75030ea248");
}
