"""Reference values for the customer-base model tests (src/model/lifetime/tests.rs).

An implementation independent of patron's: SciPy's gammaln and hyp2f1, the
formulas as printed in Fader, Hardie & Lee (2005), "Counting Your Customers
the Easy Way: An Alternative to the Pareto/NBD Model" (BG/NBD, equations 6
and 10) and "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis"
(Gamma-Gamma), and SciPy's Nelder-Mead for the fits on the CDNOW sample of
example-data/cdnow/orders.csv. Run from the repository root:
    python3 tests/data/lifetime/reference.py
"""
import csv
import datetime as dt

import numpy as np
from scipy.optimize import minimize
from scipy.special import gammaln, hyp2f1

# Purchase days (same-day orders merged) of the 39-week calibration period.
days = {}
for row in csv.DictReader(open("example-data/cdnow/orders.csv")):
    day = dt.date.fromisoformat(row["ordered_at"][:10])
    customer = days.setdefault(row["customer_id"], {})
    customer[day] = customer.get(day, 0.0) + float(row["amount"])
end = dt.date(1997, 9, 30)
x, t_x, T, m = [], [], [], []
for spend in days.values():
    seen = sorted(d for d in spend if d <= end)
    x.append(len(seen) - 1)
    t_x.append((seen[-1] - seen[0]).days / 7)
    T.append((end - seen[0]).days / 7)
    m.append(np.mean([spend[d] for d in seen[1:]]) if len(seen) > 1 else 0.0)
x, t_x, T, m = map(np.array, (x, t_x, T, m))


def bgnbd_ll(p, x, t_x, T):
    r, alpha, a, b = p
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(b + x - 1) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def p_alive(p, x, t_x, T):
    r, alpha, a, b = p
    return 1.0 if x == 0 else 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def expected(p, t, x, t_x, T):
    r, alpha, a, b = p
    f = hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    bought = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * f)
    return bought / (1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))


def gg_ll(p, m, x):
    P, q, g = p
    return (gammaln(P * x + q) - gammaln(P * x) - gammaln(q) + q * np.log(g) + (P * x - 1) * np.log(m)
            + P * x * np.log(x) - (P * x + q) * np.log(g + m * x))


def fit(objective, n):
    found = minimize(lambda q: -objective(np.exp(q)), np.zeros(n), method="Nelder-Mead",
                     options=dict(maxiter=10000, xatol=1e-10, fatol=1e-10))
    return np.exp(found.x), -found.fun


print("customers", len(x), "repeat buyers", (x > 0).sum(), "repeat purchases", x.sum())
fitted, ll = fit(lambda p: bgnbd_ll(p, x, t_x, T).sum(), 4)
print("BG/NBD fit (weeks)", fitted, ll)
# The 39-week holdout, 1997-10-01 to 1998-06-30: purchase days made, and expected by the fitted BG/NBD.
holdout = sum(1 for spend in days.values() for d in spend if dt.date(1997, 10, 1) <= d <= dt.date(1998, 6, 30))
print("holdout purchase days", holdout, "expected", repr(float(sum(expected(fitted, 39, *c) for c in zip(x, t_x, T)))))
print("Gamma-Gamma fit", *fit(lambda p: gg_ll(p, m[x > 0], x[x > 0]).sum(), 3))
published = (0.243, 4.414, 0.793, 2.426)
for case in [(0, 0, 0), (0, 0, 38.86), (2, 30.43, 38.86), (7, 35.0, 38.0), (1, 1.0, 38.86), (10, 10.0, 38.86)]:
    ll = bgnbd_ll(published, *map(np.array, ([case[0]], [case[1]], [case[2]])))[0]
    print("case", case, "ll", repr(float(ll)), "p_alive", repr(p_alive(published, *case)),
          "E39", repr(float(expected(published, 39, *case))), "E52", repr(float(expected(published, 52, *case))))
r, alpha, a, b = published
print("unconditional E78", repr(float((a + b - 1) / (a - 1) * (1 - (alpha / (alpha + 78)) ** r
                                                               * hyp2f1(r, b, a + b - 1, 78 / (alpha + 78))))))
for args in [(2.243, 4.426, 5.219, 0.5), (0.243, 2.426, 2.219, 0.9), (10.243, 12.426, 13.219, 0.95)]:
    print("hyp2f1", args, repr(float(hyp2f1(*args))))
P, q, g = 6.25, 3.74, 15.44
for mean, n in [(20.0, 1), (50.0, 4), (100.0, 10)]:
    print("gamma-gamma", mean, n, "ll", repr(float(gg_ll((P, q, g), mean, n))),
          "expected value", repr((g + mean * n) * P / (P * n + q - 1)))
print("base mean value", repr(P * g / (q - 1)))
