//! `patron generate`: synthetic customers, orders and interactions in the
//! import format, for scale tests and benchmarks.
//!
//! The buying process follows the customer-base models behind the CDNOW data
//! (Pareto/NBD): each customer buys at their own Poisson rate, drawn from a
//! gamma distribution, until an exponentially distributed lifetime ends, so
//! that a few customers buy often and most buy once or twice. The same seed
//! gives the same files.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use csv::Writer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Gamma, LogNormal, Normal};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub customers: u64,
    pub seed: u64,
    /// Customers join between `start` and `end`; nothing happens after `end`.
    pub start: NaiveDate,
    pub end: NaiveDate,
}

/// How many rows were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub customers: u64,
    pub orders: u64,
    pub interactions: u64,
}

const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ida", "Jonas", "Karin", "Leo", "Maria", "Noah",
    "Olivia", "Paul", "Rosa", "Samuel", "Tara", "Victor",
];
const LAST_NAMES: &[&str] = &[
    "Adams", "Berger", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Keller", "Larsen",
    "Moreau", "Novak", "Olsen", "Peters", "Quinn", "Rossi", "Schmidt", "Weber",
];
/// Categories, most popular first.
pub const CATEGORIES: &[&str] = &["music", "books", "film", "games", "electronics", "home"];
const REGIONS: &[&str] = &["north", "south", "east", "west"];
const CHANNELS: &[&str] = &["web", "store", "app"];

/// The distributions of one population, drawn once per customer.
struct Population {
    rate_per_day: Gamma<f64>,
    lifetime_days: Exp<f64>,
    mean_log_amount: Normal<f64>,
}

impl Population {
    fn new() -> Self {
        Population {
            // Mean 0.0085 orders a day (about 3 a year), very spread out.
            rate_per_day: Gamma::new(0.6, 0.0142).expect("valid gamma"),
            // Mean lifetime 400 days.
            lifetime_days: Exp::new(1.0 / 400.0).expect("valid exponential"),
            // Typical order value around 27, differing between customers.
            mean_log_amount: Normal::new(3.3, 0.45).expect("valid normal"),
        }
    }
}

/// Writes `customers.csv`, `orders.csv` and `interactions.csv` into `out`.
pub fn generate(spec: &Spec, out: &Path) -> anyhow::Result<Counts> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Files::create(out)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let population = Population::new();
    let mut counts = Counts { customers: 0, orders: 0, interactions: 0 };
    for index in 1..=spec.customers {
        write_customer(spec, &population, &mut rng, &mut files, &mut counts, index)?;
    }
    files.flush()?;
    Ok(counts)
}

struct Files {
    customers: Writer<BufWriter<File>>,
    orders: Writer<BufWriter<File>>,
    interactions: Writer<BufWriter<File>>,
}

impl Files {
    fn create(out: &Path) -> anyhow::Result<Self> {
        let open = |name: &str, header: &[&str]| -> anyhow::Result<Writer<BufWriter<File>>> {
            let path = out.join(name);
            let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
            let mut writer = Writer::from_writer(BufWriter::with_capacity(1 << 20, file));
            writer.write_record(header)?;
            Ok(writer)
        };
        Ok(Files {
            customers: open(
                "customers.csv",
                &[
                    "customer_id",
                    "email",
                    "first_name",
                    "last_name",
                    "birthday",
                    "signed_up_at",
                    "marketing_consent",
                    "region",
                    "channel",
                ],
            )?,
            orders: open(
                "orders.csv",
                &["order_id", "customer_id", "ordered_at", "amount", "currency", "items", "category"],
            )?,
            interactions: open(
                "interactions.csv",
                &["interaction_id", "customer_id", "kind", "status", "opened_at", "resolved_at", "channel", "note"],
            )?,
        })
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.customers.flush()?;
        self.orders.flush()?;
        self.interactions.flush()?;
        Ok(())
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// A category with popular ones more likely (weights 1/rank).
fn popular_category(rng: &mut ChaCha8Rng) -> &'static str {
    let total: f64 = (1..=CATEGORIES.len()).map(|r| 1.0 / r as f64).sum();
    let mut draw = rng.random::<f64>() * total;
    for (rank, category) in CATEGORIES.iter().enumerate() {
        draw -= 1.0 / (rank + 1) as f64;
        if draw <= 0.0 {
            return category;
        }
    }
    CATEGORIES[0]
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn write_customer(
    spec: &Spec,
    population: &Population,
    rng: &mut ChaCha8Rng,
    files: &mut Files,
    counts: &mut Counts,
    index: u64,
) -> anyhow::Result<()> {
    let start = spec.start.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let end = spec.end.and_hms_opt(23, 59, 59).expect("end of day").and_utc();
    let window_seconds = (end - start).num_seconds().max(1);
    let joined = start + Duration::seconds(rng.random_range(0..window_seconds));
    let id = format!("C{index:07}");
    let first = pick(rng, FIRST_NAMES);
    let last = pick(rng, LAST_NAMES);
    let birthday =
        NaiveDate::from_ymd_opt(rng.random_range(1950..2006), rng.random_range(1..=12), rng.random_range(1..=28))
            .expect("valid date");
    let consent = if rng.random::<f64>() < 0.9 { "true" } else { "false" };
    files.customers.write_record([
        id.as_str(),
        &format!("{}.{}.{index}@example.com", first.to_lowercase(), last.to_lowercase()),
        first,
        last,
        &birthday.to_string(),
        &timestamp(joined),
        consent,
        pick(rng, REGIONS),
        pick(rng, CHANNELS),
    ])?;
    counts.customers += 1;
    let order_times = purchase_times(population, rng, joined, end);
    write_orders(population, rng, files, counts, &id, &order_times)?;
    write_interactions(rng, files, counts, &id, &order_times, end)
}

/// The first purchase at joining, then a Poisson process until the customer's lifetime ends.
fn purchase_times(
    population: &Population,
    rng: &mut ChaCha8Rng,
    joined: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<DateTime<Utc>> {
    let rate = population.rate_per_day.sample(rng).max(1e-6);
    let alive_until = joined + Duration::seconds((population.lifetime_days.sample(rng) * 86_400.0) as i64);
    let stop = alive_until.min(end);
    let gaps = Exp::new(rate).expect("positive rate");
    let mut times = vec![joined];
    let mut t = joined;
    loop {
        let gap_days: f64 = gaps.sample(rng);
        if gap_days > 10_000.0 {
            break;
        }
        t += Duration::seconds((gap_days * 86_400.0) as i64);
        if t > stop {
            break;
        }
        times.push(t);
    }
    times
}

fn write_orders(
    population: &Population,
    rng: &mut ChaCha8Rng,
    files: &mut Files,
    counts: &mut Counts,
    customer: &str,
    times: &[DateTime<Utc>],
) -> anyhow::Result<()> {
    let favourite = popular_category(rng);
    let amounts = LogNormal::new(population.mean_log_amount.sample(rng), 0.6).expect("valid log-normal");
    for time in times {
        counts.orders += 1;
        let amount: f64 = amounts.sample(rng).min(5_000.0);
        let category = if rng.random::<f64>() < 0.7 { favourite } else { popular_category(rng) };
        let items = ((amount / 15.0).round() as i64).max(1);
        files.orders.write_record([
            format!("O{:09}", counts.orders).as_str(),
            customer,
            &timestamp(*time),
            &format!("{amount:.2}"),
            "USD",
            &items.to_string(),
            category,
        ])?;
    }
    Ok(())
}

/// A few customers complain, ask or suggest, some days after an order;
/// most matters are resolved within two weeks.
fn write_interactions(
    rng: &mut ChaCha8Rng,
    files: &mut Files,
    counts: &mut Counts,
    customer: &str,
    times: &[DateTime<Utc>],
    end: DateTime<Utc>,
) -> anyhow::Result<()> {
    let draw = rng.random::<f64>();
    let kind = match draw {
        d if d < 0.04 => "complaint",
        d if d < 0.06 => "inquiry",
        d if d < 0.07 => "suggestion",
        _ => return Ok(()),
    };
    let after = times[rng.random_range(0..times.len())];
    let opened = (after + Duration::hours(rng.random_range(12..24 * 10))).min(end);
    let resolved = opened + Duration::hours(rng.random_range(2..24 * 14));
    let (status, resolved_at) = if resolved <= end && rng.random::<f64>() < 0.85 {
        ("resolved", timestamp(resolved))
    } else {
        ("open", String::new())
    };
    counts.interactions += 1;
    files.interactions.write_record([
        format!("I{:08}", counts.interactions).as_str(),
        customer,
        kind,
        status,
        &timestamp(opened),
        &resolved_at,
        pick(rng, &["email", "phone", "chat"]),
        "",
    ])?;
    Ok(())
}
