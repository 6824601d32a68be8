#!/usr/bin/env python3
"""Converts CDNOW_sample.txt into patron's import format (customers.csv,
orders.csv, interactions.csv). Deterministic: running it again gives the same
files. Purchases are real; names, emails, birthdays, consent, categories and
interactions are synthetic (see README.md)."""
import csv
import datetime as dt
import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
FIRST = ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ida", "Jonas",
         "Karin", "Leo", "Maria", "Noah", "Olivia", "Paul", "Rosa", "Samuel", "Tara", "Victor"]
LAST = ["Adams", "Berger", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen",
        "Keller", "Larsen", "Moreau", "Novak", "Olsen", "Peters", "Quinn", "Rossi", "Schmidt", "Weber"]
GENRES = ["rock", "pop", "jazz", "classical", "soundtracks"]
REGIONS = ["north", "south", "east", "west"]


def h(*parts):
    """A stable number from the parts."""
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def main():
    rows = []
    with open(os.path.join(HERE, "CDNOW_sample.txt")) as f:
        for line in f:
            cohort, sample, date, cds, dollars = line.split()
            rows.append((cohort, int(sample), dt.datetime.strptime(date, "%Y%m%d").date(), int(cds), dollars))
    first_purchase = {}
    for cohort, sample, date, _, _ in rows:
        first_purchase.setdefault(sample, (cohort, date))
        first_purchase[sample] = (cohort, min(date, first_purchase[sample][1]))

    with open(os.path.join(HERE, "customers.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "email", "first_name", "last_name", "birthday", "signed_up_at",
                    "marketing_consent", "cohort_id", "region"])
        for sample in sorted(first_purchase):
            cohort, first = first_purchase[sample]
            given = FIRST[h("first", sample) % len(FIRST)]
            family = LAST[h("last", sample) % len(LAST)]
            born = dt.date(1940 + h("year", sample) % 60, 1 + h("month", sample) % 12, 1 + h("day", sample) % 28)
            consent = "true" if h("consent", sample) % 100 < 92 else "false"
            w.writerow([f"C{sample:04d}", f"{given.lower()}.{family.lower()}.{sample:04d}@example.com", given,
                        family, born.isoformat(), first.isoformat(), consent, cohort,
                        REGIONS[h("region", sample) % len(REGIONS)]])

    with open(os.path.join(HERE, "orders.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["order_id", "customer_id", "ordered_at", "amount", "currency", "items", "category"])
        for n, (_, sample, date, cds, dollars) in enumerate(rows, start=1):
            favourite = h("genre", sample) % len(GENRES)
            genre = GENRES[favourite if h("order-genre", n) % 10 < 7 else h("other", n) % len(GENRES)]
            w.writerow([f"O{n:05d}", f"C{sample:04d}", date.isoformat(), dollars, "USD", cds, genre])

    end = dt.date(1998, 6, 30)
    with open(os.path.join(HERE, "interactions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["interaction_id", "customer_id", "kind", "status", "opened_at", "resolved_at", "channel",
                    "note"])
        n = 0
        for _, sample, date, _, _ in rows:
            draw = h("interaction", sample, date) % 1000
            kind = "complaint" if draw < 40 else "inquiry" if draw < 60 else "suggestion" if draw < 70 else None
            if kind is None:
                continue
            n += 1
            opened = min(date + dt.timedelta(days=1 + h("opened", n) % 10), end)
            resolved = opened + dt.timedelta(days=1 + h("resolved", n) % 14)
            done = resolved <= end and h("done", n) % 100 < 85
            w.writerow([f"I{n:04d}", f"C{sample:04d}", kind, "resolved" if done else "open", opened.isoformat(),
                        resolved.isoformat() if done else "", ["email", "phone", "chat"][h("channel", n) % 3], ""])


if __name__ == "__main__":
    main()
