//! Robustness tests: random and truncated inputs must never panic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::parse;
use super::tests::{EXAMPLES, fields};

const TOKENS: &[&str] = &[
    "recency_days",
    "frequency",
    "first_name",
    "signed_up_at",
    "opted_in",
    "attributes.x",
    "attributes.",
    "and",
    "or",
    "not",
    "between",
    "in",
    "is",
    "null",
    "true",
    "false",
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "12",
    "-3",
    "0.5",
    "30d",
    "2w",
    "2026-01-01",
    "2026-02-30",
    "\"x\"",
    "\"a\\\"b\"",
    "\"",
    "\\",
    "\n",
    " ",
    "é",
    "!",
    ".",
    "-",
    "9999999999999999999999999999d",
];

fn random_input(rng: &mut StdRng) -> String {
    let len = rng.random_range(0..40);
    if rng.random_bool(0.3) {
        (0..len).filter_map(|_| char::from_u32(rng.random_range(0..0x250))).collect()
    } else {
        (0..len).map(|_| TOKENS[rng.random_range(0..TOKENS.len())]).collect::<Vec<_>>().join(" ")
    }
}

fn assert_well_formed(text: &str) {
    if let Err(errors) = parse(text, &fields()) {
        assert!(!errors.is_empty(), "{text:?}");
        for e in errors {
            assert!(e.offset <= text.len() && e.line >= 1 && e.column >= 1, "{text:?}: {e:?}");
        }
    }
}

#[test]
fn twenty_thousand_random_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5e9_e4e);
    for _ in 0..20_000 {
        assert_well_formed(&random_input(&mut rng));
    }
}

#[test]
fn every_prefix_of_every_example_never_panics() {
    for example in EXAMPLES {
        for (i, _) in example.char_indices() {
            assert_well_formed(&example[..i]);
        }
    }
}
